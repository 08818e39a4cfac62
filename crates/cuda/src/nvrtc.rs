//! Run-time compilation of the kernels in `cuda/*.cu` with NVRTC (loaded dynamically).
//!
//! The sources are embedded in the binary. `#include "x.cuh"` lines are spliced in by
//! [`expand`] (each header once, like `#pragma once`), so NVRTC needs no include path
//! and no CUDA toolkit headers. PTX is compiled for the device's compute capability
//! (`compute_90` on an H200) and cached per process.

use silica_core::error::{Error, Result};
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::sync::{Mutex, OnceLock};

/// Kernel sources `(file name, text)`, headers included.
pub const SOURCES: &[(&str, &str)] = &[
    ("common.cuh", include_str!("../../../cuda/common.cuh")),
    ("select.cuh", include_str!("../../../cuda/select.cuh")),
    ("probe.cu", include_str!("../../../cuda/probe.cu")),
    ("filter.cu", include_str!("../../../cuda/filter.cu")),
    ("scan.cu", include_str!("../../../cuda/scan.cu")),
    ("select.cu", include_str!("../../../cuda/select.cu")),
    ("rerank.cu", include_str!("../../../cuda/rerank.cu")),
    ("bench.cu", include_str!("../../../cuda/bench.cu")),
    ("update.cu", include_str!("../../../cuda/update.cu")),
    ("kmeans.cu", include_str!("../../../cuda/kmeans.cu")),
    ("query.cu", include_str!("../../../cuda/query.cu")),
];

/// The stage files (modules), in load order.
pub const MODULES: &[&str] =
    &["probe.cu", "filter.cu", "scan.cu", "select.cu", "rerank.cu", "bench.cu", "update.cu", "kmeans.cu", "query.cu"];

/// The stage files a search loads ([`MODULES`] less the build stage `kmeans.cu`, which
/// only `silica build --backend cuda` loads).
pub const SEARCH_MODULES: &[&str] = &["probe.cu", "filter.cu", "scan.cu", "select.cu", "rerank.cu", "bench.cu", "update.cu", "query.cu"];

/// Embedded source of `name`.
pub fn source(name: &str) -> Option<&'static str> {
    SOURCES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// Splice `#include "header"` lines of `src` with the header text from `lookup`,
/// recursively, each header once. Other lines are kept as they are.
pub fn expand(src: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    fn go(src: &str, lookup: &dyn Fn(&str) -> Option<String>, seen: &mut Vec<String>, out: &mut String) -> Result<()> {
        for line in src.lines() {
            let t = line.trim();
            if let Some(rest) = t.strip_prefix("#include") {
                let name = rest.trim().trim_matches('"');
                if rest.trim().starts_with('"') {
                    if !seen.iter().any(|s| s == name) {
                        seen.push(name.to_string());
                        let text = lookup(name).ok_or_else(|| Error::backend("cuda", format!("kernel header `{name}` not found")))?;
                        go(&text, lookup, seen, out)?;
                    }
                    continue;
                }
            }
            if t == "#pragma once" {
                continue;
            }
            out.push_str(line);
            out.push('\n');
        }
        Ok(())
    }
    let mut out = String::new();
    go(src, lookup, &mut Vec::new(), &mut out)?;
    Ok(out)
}

/// NVRTC output: PTX text and the compiler log (warnings; empty when clean).
#[derive(Clone, Debug)]
pub struct Compiled {
    pub ptx: String,
    pub log: String,
}

/// True when libnvrtc can be loaded.
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library.
    std::panic::catch_unwind(|| unsafe { cudarc::nvrtc::sys::is_culib_present() }).unwrap_or(false)
}

/// Compile one expanded source for `arch` (e.g. `compute_90`). Errors carry the log.
pub fn compile(name: &str, src: &str, arch: &str) -> Result<Compiled> {
    use cudarc::nvrtc::result as nv;
    if !nvrtc_present() {
        return Err(Error::backend(
            "cuda",
            "libnvrtc cannot be loaded (install nvidia-cuda-nvrtc-cu12 and add its lib folder to LD_LIBRARY_PATH)",
        ));
    }
    let csrc = CString::new(src).map_err(|_| Error::backend("cuda", format!("{name}: NUL byte in source")))?;
    let cname = CString::new(name).expect("file names have no NUL");
    let prog = nv::create_program(&csrc, Some(&cname)).map_err(|e| Error::backend("cuda", format!("{name}: nvrtcCreateProgram: {e:?}")))?;
    let opts = [format!("--gpu-architecture={arch}"), "--std=c++17".to_string(), "--generate-line-info".to_string()];
    // SAFETY: `prog` was created above and is destroyed once, below.
    let compiled = unsafe { nv::compile_program(prog, &opts) };
    let log = unsafe { nv::get_program_log(prog) }
        .map(|raw| unsafe { CStr::from_ptr(raw.as_ptr()) }.to_string_lossy().trim().to_string())
        .unwrap_or_default();
    let ptx = compiled.and_then(|_| unsafe { nv::get_ptx(prog) });
    let _ = unsafe { nv::destroy_program(prog) };
    match ptx {
        Ok(raw) => Ok(Compiled { ptx: unsafe { CStr::from_ptr(raw.as_ptr()) }.to_string_lossy().into_owned(), log }),
        Err(e) => Err(Error::backend("cuda", format!("{name}: NVRTC compile failed ({e:?}) for {arch}:\n{log}"))),
    }
}

/// PTX of stage file `name` for `arch`, compiled once per process.
pub fn ptx_for(name: &str, arch: &str) -> Result<String> {
    static CACHE: OnceLock<Mutex<HashMap<(String, String), String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (name.to_string(), arch.to_string());
    if let Some(p) = cache.lock().expect("ptx cache").get(&key) {
        return Ok(p.clone());
    }
    // Fallback for machines whose libnvrtc cannot be loaded: PTX files compiled elsewhere
    // (`tests/nvrtc.rs` writes them with SILICA_PTX_DIR), named like the stage files.
    if let (false, Ok(dir)) = (nvrtc_present(), std::env::var("SILICA_CUDA_PTX_DIR")) {
        let path = std::path::Path::new(&dir).join(name.replace(".cu", ".ptx"));
        let ptx = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        log::warn!("libnvrtc not found: using precompiled {}", path.display());
        return Ok(ptx);
    }
    let src = source(name).ok_or_else(|| Error::backend("cuda", format!("no kernel file `{name}`")))?;
    let text = expand(src, &|h| source(h).map(str::to_string))?;
    let c = compile(name, &text, arch)?;
    if !c.log.is_empty() {
        log::warn!("NVRTC {name}: {}", c.log);
    }
    cache.lock().expect("ptx cache").insert(key, c.ptx.clone());
    Ok(c.ptx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn expand_splices_each_header_once() {
        let lookup = |n: &str| match n {
            "a.cuh" => Some("#pragma once\nint a;\n".to_string()),
            "b.cuh" => Some("#pragma once\n#include \"a.cuh\"\nint b;\n".to_string()),
            _ => None,
        };
        let out = expand("#include \"a.cuh\"\n#include \"b.cuh\"\nint main;\n", &lookup).unwrap();
        assert_eq!(out, "int a;\nint b;\nint main;\n");
        assert!(expand("#include \"zzz.cuh\"\n", &lookup).is_err());
    }

    #[test]
    fn every_module_expands() {
        for m in MODULES {
            let text = expand(source(m).unwrap(), &|h| source(h).map(str::to_string)).unwrap();
            assert!(!text.lines().any(|l| l.trim_start().starts_with("#include")), "{m}");
            assert!(text.contains("fkey"), "{m} lacks common.cuh");
        }
    }

    // CI check of the kernels without a GPU: every `cuda/*.cu` compiles with NVRTC for
    // sm_90 (compute_90 PTX) with no error and no warning. NVRTC comes from the PyPI wheel
    // `nvidia-cuda-nvrtc-cu12` (LD_LIBRARY_PATH=<site-packages>/nvidia/cuda_nvrtc/lib).
    // Skips, saying why, only when libnvrtc cannot be loaded.
    #[test]
    fn every_kernel_file_compiles_cleanly_for_sm90() {
        if !nvrtc_present() {
            eprintln!(
                "SKIP: libnvrtc cannot be loaded; install nvidia-cuda-nvrtc-cu12 and put its nvidia/cuda_nvrtc/lib on LD_LIBRARY_PATH"
            );
            return;
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../cuda");
        let mut files: Vec<_> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "cu")).collect();
        files.sort();
        assert!(files.len() >= 5, "expected the stage files in {}", dir.display());
        let lookup = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
        let mut failures = Vec::new();
        for f in &files {
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            // The embedded copy must be the file on disk (the binary compiles the embedded one).
            assert_eq!(source(&name), Some(std::fs::read_to_string(f).unwrap().as_str()), "{name} not embedded in SOURCES");
            let src = expand(&std::fs::read_to_string(f).unwrap(), &lookup).unwrap();
            match compile(&name, &src, "compute_90") {
                Ok(c) if c.log.is_empty() => {
                    assert!(c.ptx.contains(".target sm_90"), "{name}: PTX not for sm_90");
                    eprintln!("{name}: OK ({} bytes of PTX)", c.ptx.len());
                    // Optional: keep the PTX (e.g. for `ptxas -arch=sm_90 -v`).
                    if let Ok(out) = std::env::var("SILICA_PTX_DIR") {
                        std::fs::write(Path::new(&out).join(name.replace(".cu", ".ptx")), &c.ptx).unwrap();
                    }
                }
                Ok(c) => failures.push(format!("{name}: warnings:\n{}", c.log)),
                Err(e) => failures.push(format!("{name}: {e}")),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    }
}
