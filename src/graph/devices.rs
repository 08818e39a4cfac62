//! Searchers over a device list (`--devices`): one device as before, several as one
//! [`Sharded`] backend under the same [`Executor`] (which stays the only sequencer), and
//! replicas of those ([`super::replicas`]).
//!
//! Spec strings, as [`super::open`] takes them: `cpu`, `cuda:1`, `wgpu:0` (one device);
//! `cpu,cpu,cpu` or `cuda:0,cuda:1` (shards, [`DeviceList`] rules); `cuda:0,cuda:1|cuda:2,cuda:3`
//! (replicas separated by `|`, what `silica serve --devices ... --replicas R` builds).

use super::{Executor, Planner, Search};
use crate::backend::shard::Sharded;
use crate::backend::{cpu::Cpu, Backend};
use crate::device::{Device, DeviceList};
use crate::error::{Error, Result};
use crate::model::Index;
use std::sync::Arc;

/// A searcher for `spec` (module docs). Errors: `Error::Param` naming `devices` or
/// `replicas` for a bad list, `Error::Backend` naming the device for one that cannot open.
pub fn open(spec: &str, index: Arc<Index>, planner: Planner) -> Result<Box<dyn Search>> {
    if spec.contains('|') {
        return super::replicas::open(spec, index, planner);
    }
    let list = DeviceList::parse(spec)?;
    let n = list.len();
    match list.kind {
        Device::Cpu if n == 1 => executor(Cpu, index, planner),
        Device::Cpu => executor(Sharded::new(vec![Cpu; n])?, index, planner),
        Device::Cuda => cuda(&list, index, planner),
        Device::Wgpu => wgpu(&list, index, planner),
    }
}

fn executor<B: Backend>(b: B, index: Arc<Index>, planner: Planner) -> Result<Box<dyn Search>> {
    Ok(Box::new(Executor::new(b, index)?.with_planner(planner)))
}

/// One handle per entry: each distinct device opened once, its repeats lanes of it.
fn handles<B: Backend>(list: &DeviceList, open: impl Fn(Option<usize>) -> Result<B>) -> Result<Vec<B>> {
    let mut opened: Vec<(Option<usize>, B)> = Vec::new();
    let mut out = Vec::with_capacity(list.len());
    for &o in &list.ordinals {
        match opened.iter().find(|(k, _)| *k == o) {
            Some((_, b)) => out.push(b.lane()?),
            None => {
                let b = open(o)?;
                opened.push((o, b.clone()));
                out.push(b);
            }
        }
    }
    Ok(out)
}

/// One CUDA handle per entry of `list` (repeats are lanes). Errors: `Error::Backend`
/// naming `cuda:N` when CUDA is unavailable or there is no GPU N.
#[cfg(feature = "cuda")]
pub fn cuda_handles(list: &DeviceList) -> Result<Vec<crate::backend::cuda::Cuda>> {
    use crate::backend::cuda::Cuda;
    let open = |o: Option<usize>| -> Result<Cuda> {
        let o = o.unwrap_or(0);
        let name = format!("cuda:{o}");
        let n = crate::backend::cuda::devices().len();
        if n == 0 {
            return Err(Error::backend(&name, "CUDA is not available here: no driver or no GPU (`silica devices` lists what is)"));
        }
        if o >= n {
            return Err(Error::backend(&name, format!("no such GPU: the driver reports {n} CUDA device(s), cuda:0..cuda:{} (`silica devices`)", n - 1)));
        }
        Cuda::with_ordinal(o)
    };
    handles(list, open)
}

#[cfg(feature = "cuda")]
fn cuda(list: &DeviceList, index: Arc<Index>, planner: Planner) -> Result<Box<dyn Search>> {
    let mut hs = cuda_handles(list)?;
    if hs.len() == 1 {
        return executor(hs.remove(0), index, planner);
    }
    executor(Sharded::new(hs)?, index, planner)
}

#[cfg(not(feature = "cuda"))]
fn cuda(_: &DeviceList, _: Arc<Index>, _: Planner) -> Result<Box<dyn Search>> {
    Err(Error::backend("cuda", "this silica was built without the `cuda` feature"))
}

/// One wgpu handle per entry of `list` (repeats share the adapter).
#[cfg(feature = "wgpu")]
pub fn wgpu_handles(list: &DeviceList) -> Result<Vec<crate::backend::wgpu::Wgpu>> {
    use crate::backend::wgpu::{Wgpu, WgpuOptions};
    handles(list, |adapter| Wgpu::new(WgpuOptions { adapter, ..Default::default() }))
}

#[cfg(feature = "wgpu")]
fn wgpu(list: &DeviceList, index: Arc<Index>, planner: Planner) -> Result<Box<dyn Search>> {
    let mut hs = wgpu_handles(list)?;
    if hs.len() == 1 {
        return executor(hs.remove(0), index, planner);
    }
    executor(Sharded::new(hs)?, index, planner)
}

#[cfg(not(feature = "wgpu"))]
fn wgpu(_: &DeviceList, _: Arc<Index>, _: Planner) -> Result<Box<dyn Search>> {
    Err(Error::backend("wgpu", "this silica was built without the `wgpu` feature"))
}
