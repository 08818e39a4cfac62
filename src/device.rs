//! Device selection: which backend runs the pipeline.
//!
//! [`Device::auto`] picks, in order: CUDA when an NVIDIA driver is usable (cargo feature
//! `cuda`), else a hardware wgpu adapter (Vulkan, Metal, DX12; feature `wgpu`), else the
//! CPU. Overrides:
//! * `SILICA_DEVICE=cpu|wgpu|cuda` forces a backend (an unavailable one is an error at
//!   open time, never a silent fallback);
//! * wgpu's own `WGPU_BACKEND` (e.g. `vulkan`) restricts the graphics APIs it tries, and
//!   `WGPU_ADAPTER_NAME` (a case-insensitive substring) picks one adapter by name.
//!
//! Software adapters (Mesa lavapipe, WARP) count as wgpu devices only when asked for
//! explicitly (`--backend wgpu`), never under `auto`: the CPU backend is faster there.

use serde::Serialize;

/// A compute device kind, as chosen by [`Device::auto`] or named by the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    Cpu,
    Wgpu,
    Cuda,
}

impl Device {
    /// The backend name used by [`crate::graph::open`] (`cpu`, `wgpu`, `cuda`).
    pub fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Wgpu => "wgpu",
            Device::Cuda => "cuda",
        }
    }

    /// Parse a backend name. `auto` resolves through [`Device::auto`].
    pub fn parse(name: &str) -> crate::Result<Device> {
        match name.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            "wgpu" => Ok(Device::Wgpu),
            "cuda" => Ok(Device::Cuda),
            "auto" | "" => Ok(Device::auto()),
            other => Err(crate::Error::param("device", format!("unknown device `{other}`; expected cpu, wgpu, cuda or auto"))),
        }
    }

    /// The best device present: `SILICA_DEVICE` when set (and not `auto`), else CUDA,
    /// else a hardware wgpu adapter, else the CPU.
    pub fn auto() -> Device {
        if let Ok(v) = std::env::var("SILICA_DEVICE") {
            match v.trim().to_ascii_lowercase().as_str() {
                "cpu" => return Device::Cpu,
                "wgpu" => return Device::Wgpu,
                "cuda" => return Device::Cuda,
                _ => {}
            }
        }
        if cuda_available() {
            Device::Cuda
        } else if wgpu_hardware_available() {
            Device::Wgpu
        } else {
            Device::Cpu
        }
    }
}

/// True when the CUDA backend can run here (driver loadable, at least one GPU).
/// Always false in builds without the `cuda` feature (which the CUDA backend adds).
#[allow(unexpected_cfgs)]
pub fn cuda_available() -> bool {
    #[cfg(feature = "cuda")]
    {
        crate::backend::cuda::available()
    }
    #[cfg(not(feature = "cuda"))]
    {
        false
    }
}

/// True when wgpu finds a hardware adapter (not a software rasterizer), honouring
/// `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`. Always false without the `wgpu` feature.
pub fn wgpu_hardware_available() -> bool {
    #[cfg(feature = "wgpu")]
    {
        crate::backend::wgpu::adapters().iter().any(|a| a.selected_by_env && a.hardware)
    }
    #[cfg(not(feature = "wgpu"))]
    {
        false
    }
}

/// One line of `silica devices`.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceReport {
    /// Backend name (`cpu`, `wgpu`, `cuda`).
    pub backend: &'static str,
    /// Human-readable device name.
    pub name: String,
    /// Details (graphics API, driver, features, limits).
    pub details: String,
    /// True for the device [`Device::auto`] would use.
    pub auto: bool,
}

/// Everything this build can find: the CPU, each wgpu adapter, CUDA.
#[allow(unexpected_cfgs)]
pub fn report() -> Vec<DeviceReport> {
    let auto = Device::auto();
    let mut out = vec![DeviceReport {
        backend: "cpu",
        name: "host CPU".into(),
        details: format!("{} threads (rayon)", rayon::current_num_threads()),
        auto: auto == Device::Cpu,
    }];
    #[cfg(feature = "wgpu")]
    {
        let mut first = true;
        for a in crate::backend::wgpu::adapters() {
            let pick = auto == Device::Wgpu && a.selected_by_env && a.hardware && first;
            if a.selected_by_env && a.hardware {
                first = false;
            }
            out.push(DeviceReport { backend: "wgpu", name: a.name.clone(), details: a.details.clone(), auto: pick });
        }
    }
    #[cfg(not(feature = "wgpu"))]
    out.push(DeviceReport { backend: "wgpu", name: "(not built)".into(), details: "rebuild with --features wgpu".into(), auto: false });
    out.push(DeviceReport {
        backend: "cuda",
        name: if cuda_available() { "CUDA device 0".into() } else { "(none)".into() },
        details: if cfg!(feature = "cuda") { "feature cuda built in".into() } else { "not built (cargo feature `cuda`)".into() },
        auto: auto == Device::Cuda,
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names_and_reject_unknown() {
        assert_eq!(Device::parse("CPU").unwrap(), Device::Cpu);
        assert_eq!(Device::parse("wgpu").unwrap(), Device::Wgpu);
        assert_eq!(Device::parse("cuda").unwrap(), Device::Cuda);
        let e = Device::parse("tpu").unwrap_err().to_string();
        assert!(e.contains("tpu") && e.contains("device"), "{e}");
    }

    #[test]
    #[allow(unexpected_cfgs)]
    fn cuda_hook_is_false_without_the_feature() {
        if !cfg!(feature = "cuda") {
            assert!(!cuda_available());
        }
    }
}
