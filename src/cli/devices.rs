//! `silica devices`: what this build can run on, and what `--backend auto` would pick.

use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct DevicesArgs {
    /// Print one JSON object per device.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: DevicesArgs) -> Result<()> {
    let list = silica::device::report();
    if a.json {
        for d in &list {
            println!("{}", serde_json::to_string(d)?);
        }
        return Ok(());
    }
    println!("{:<2} {:<5} {:<40} details", "", "kind", "name");
    for d in &list {
        println!("{:<2} {:<5} {:<40} {}", if d.auto { "*" } else { "" }, d.backend, d.name, d.details);
    }
    println!("\n* = what --backend auto uses (override: SILICA_DEVICE=cpu|wgpu|cuda; wgpu: WGPU_BACKEND, WGPU_ADAPTER_NAME)");
    Ok(())
}
