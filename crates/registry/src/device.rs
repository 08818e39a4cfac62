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
    /// The backend name used by [`crate::open`] (`cpu`, `wgpu`, `cuda`).
    pub fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Wgpu => "wgpu",
            Device::Cuda => "cuda",
        }
    }

    /// Parse a backend name. `auto` resolves through [`Device::auto`].
    pub fn parse(name: &str) -> silica_core::Result<Device> {
        match name.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            "wgpu" => Ok(Device::Wgpu),
            "cuda" => Ok(Device::Cuda),
            "auto" | "" => Ok(Device::auto()),
            other => Err(silica_core::Error::param("device", format!("unknown device `{other}`; expected cpu, wgpu, cuda or auto"))),
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

/// A `--devices` list: one kind of device, one entry per shard, in shard order
/// (`cpu,cpu,cpu`, `cuda:0,cuda:1`, `wgpu:0`; `cuda` means `cuda:0`, `wgpu` the adapter
/// `--backend wgpu` picks). Rules: every entry is of one kind (a shard's stages must be
/// the same backend code; CPU, wgpu and CUDA answers are bit-identical anyway, so there is
/// nothing to gain from mixing); a device may appear more than once (several shards on one
/// device: a lane each, which is how `cuda:0,cuda:0` exercises the sharded CUDA path on one
/// GPU); `auto` only alone. Whether a named GPU exists is checked when it is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceList {
    pub kind: Device,
    /// Per shard: the GPU ordinal or wgpu adapter index (`None`: cpu, or wgpu's default adapter).
    pub ordinals: Vec<Option<usize>>,
}

impl DeviceList {
    /// Parse a comma-separated list. Errors: `Error::Param` naming `devices` for an empty
    /// list or entry, an unknown name, a bad ordinal, `auto` in a list, or mixed kinds.
    pub fn parse(list: &str) -> silica_core::Result<DeviceList> {
        let bad = |reason: String| silica_core::Error::param("devices", reason);
        let names: Vec<&str> = list.split(',').map(str::trim).collect();
        if names.iter().any(|n| n.is_empty()) {
            return Err(bad(format!("`{list}`: empty device name (expected e.g. cpu,cpu or cuda:0,cuda:1)")));
        }
        let mut kinds = Vec::new();
        let mut ordinals = Vec::new();
        for name in &names {
            let lower = name.to_ascii_lowercase();
            let (kind, ord) = lower.split_once(':').map_or((lower.as_str(), None), |(k, o)| (k, Some(o)));
            let kind = match kind {
                "cpu" if ord.is_none() => Device::Cpu,
                "cuda" => Device::Cuda,
                "wgpu" => Device::Wgpu,
                "auto" if names.len() == 1 && ord.is_none() => Device::auto(),
                "auto" => return Err(bad(format!("`{list}`: `auto` cannot be part of a list; name each device"))),
                _ => {
                    return Err(bad(format!(
                        "unknown device `{name}`; expected cpu, cuda, cuda:N, wgpu or wgpu:N (`silica devices` lists them)"
                    )));
                }
            };
            let ord = match ord {
                None if kind == Device::Cuda => Some(0),
                None => None,
                Some(o) => Some(o.parse::<usize>().map_err(|_| bad(format!("`{name}`: `{o}` is not a device ordinal (0, 1, ...)")))?),
            };
            kinds.push(kind);
            ordinals.push(ord);
        }
        if let Some(k) = kinds.iter().find(|&&k| k != kinds[0]) {
            return Err(bad(format!(
                "`{list}` mixes {} and {} devices; every device of a list must be of one kind",
                kinds[0].name(),
                k.name()
            )));
        }
        Ok(DeviceList { kind: kinds[0], ordinals })
    }

    /// Number of devices (shards).
    pub fn len(&self) -> usize {
        self.ordinals.len()
    }
    /// Never true for a parsed list.
    pub fn is_empty(&self) -> bool {
        self.ordinals.is_empty()
    }
    /// Entry `i` as a backend name (`cpu`, `cuda:1`, `wgpu`, `wgpu:0`).
    pub fn name(&self, i: usize) -> String {
        match self.ordinals[i] {
            Some(o) => format!("{}:{o}", self.kind.name()),
            None => self.kind.name().to_string(),
        }
    }
    /// The list written back (`cuda:0,cuda:1`).
    pub fn spec(&self) -> String {
        (0..self.len()).map(|i| self.name(i)).collect::<Vec<_>>().join(",")
    }
    /// `replicas` groups of `len / replicas` consecutive devices (replica `r` gets devices
    /// `r*S .. (r+1)*S`). Errors: `Error::Param` naming `replicas` when it is 0 or does not
    /// divide the number of devices.
    pub fn replicas(&self, replicas: usize) -> silica_core::Result<Vec<DeviceList>> {
        if replicas == 0 || !self.len().is_multiple_of(replicas) {
            return Err(silica_core::Error::param(
                "replicas",
                format!(
                    "{replicas} replicas of {} devices ({}): the devices must split into equal groups of shards",
                    self.len(),
                    self.spec()
                ),
            ));
        }
        let s = self.len() / replicas;
        Ok(self.ordinals.chunks(s).map(|c| DeviceList { kind: self.kind, ordinals: c.to_vec() }).collect())
    }
}

/// One CUDA device as `silica devices` shows it.
pub use silica_core::backend::GpuInfo as CudaDevice;

/// Every CUDA device the driver reports (empty without the `cuda` feature or a driver).
pub fn cuda_devices() -> Vec<CudaDevice> {
    crate::backends::cuda::devices()
}

/// True when the CUDA backend can run here (driver loadable, at least one GPU).
/// Always false in builds without the `cuda` feature.
pub fn cuda_available() -> bool {
    crate::backends::cuda::available()
}

/// True when wgpu finds a hardware adapter (not a software rasterizer), honouring
/// `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`. Always false without the `wgpu` feature.
pub fn wgpu_hardware_available() -> bool {
    crate::backends::wgpu::adapters().iter().any(|a| a.selected_by_env && a.hardware)
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
pub fn report() -> Vec<DeviceReport> {
    let auto = Device::auto();
    let mut out = vec![DeviceReport {
        backend: "cpu",
        name: "host CPU".into(),
        details: format!("{} threads (rayon)", rayon::current_num_threads()),
        auto: auto == Device::Cpu,
    }];
    if crate::backends::wgpu::BUILT {
        let mut first = true;
        for (i, a) in crate::backends::wgpu::adapters().into_iter().enumerate() {
            let pick = auto == Device::Wgpu && a.selected_by_env && a.hardware && first;
            if a.selected_by_env && a.hardware {
                first = false;
            }
            out.push(DeviceReport { backend: "wgpu", name: format!("wgpu:{i} {}", a.name), details: a.details.clone(), auto: pick });
        }
    } else {
        out.push(DeviceReport { backend: "wgpu", name: "(not built)".into(), details: "rebuild with --features wgpu".into(), auto: false });
    }
    let gpus = cuda_devices();
    for g in &gpus {
        out.push(DeviceReport {
            backend: "cuda",
            name: format!("cuda:{} {}", g.ordinal, g.name),
            details: format!("{:.1} GiB", g.memory as f64 / (1u64 << 30) as f64),
            auto: auto == Device::Cuda && g.ordinal == 0,
        });
    }
    if gpus.is_empty() {
        out.push(DeviceReport {
            backend: "cuda",
            name: "(none)".into(),
            details: if crate::backends::cuda::BUILT {
                "feature cuda built in; no driver or no GPU".into()
            } else {
                "not built (cargo feature `cuda`)".into()
            },
            auto: false,
        });
    }
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
    fn device_lists_parse_and_refuse_mixing() {
        let l = DeviceList::parse("cpu, cpu,CPU").unwrap();
        assert_eq!((l.kind, l.len(), l.spec()), (Device::Cpu, 3, "cpu,cpu,cpu".to_string()));
        let l = DeviceList::parse("cuda:1,cuda,cuda:1").unwrap();
        assert_eq!(l.ordinals, vec![Some(1), Some(0), Some(1)]);
        assert_eq!(DeviceList::parse("wgpu:2").unwrap().name(0), "wgpu:2");
        for (bad, says) in [
            ("cpu,cuda:0", "mixes cpu and cuda"),
            ("cpu,", "empty device"),
            ("tpu:0", "unknown device `tpu:0`"),
            ("cuda:x", "not a device ordinal"),
            ("auto,cpu", "auto"),
            ("cpu:0", "unknown device"),
        ] {
            let e = DeviceList::parse(bad).unwrap_err();
            assert!(matches!(&e, silica_core::Error::Param { name, .. } if name == "devices"), "{bad}: {e}");
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
        let four = DeviceList::parse("cpu,cpu,cpu,cpu").unwrap();
        assert_eq!(four.replicas(2).unwrap().iter().map(|r| r.len()).collect::<Vec<_>>(), vec![2, 2]);
        for r in [0, 3, 5] {
            let e = four.replicas(r).unwrap_err();
            assert!(matches!(&e, silica_core::Error::Param { name, .. } if name == "replicas"), "{e}");
        }
        let c = DeviceList::parse("cuda:0,cuda:1,cuda:2,cuda:3").unwrap().replicas(2).unwrap();
        assert_eq!((c[0].spec(), c[1].spec()), ("cuda:0,cuda:1".to_string(), "cuda:2,cuda:3".to_string()));
    }

    #[test]
    fn cuda_hook_is_false_without_the_feature() {
        if !crate::backends::cuda::BUILT {
            assert!(!cuda_available());
        }
    }
}
