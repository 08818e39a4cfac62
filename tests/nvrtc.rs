//! CI check of the CUDA kernels without a GPU: every `cuda/*.cu` compiles with NVRTC for
//! sm_90 (compute_90 PTX) with no error and no warning. NVRTC comes from the PyPI wheel
//! `nvidia-cuda-nvrtc-cu12` (LD_LIBRARY_PATH=<site-packages>/nvidia/cuda_nvrtc/lib).
//! Skips, saying why, only when libnvrtc cannot be loaded.
#![cfg(feature = "cuda")]

use silica::backend::cuda::nvrtc;
use std::path::Path;

#[test]
fn every_kernel_file_compiles_cleanly_for_sm90() {
    if !nvrtc::nvrtc_present() {
        eprintln!("SKIP: libnvrtc cannot be loaded; install nvidia-cuda-nvrtc-cu12 and put its nvidia/cuda_nvrtc/lib on LD_LIBRARY_PATH");
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("cuda");
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "cu")).collect();
    files.sort();
    assert!(files.len() >= 5, "expected the stage files in {}", dir.display());
    let lookup = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let mut failures = Vec::new();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        // The embedded copy must be the file on disk (the binary compiles the embedded one).
        assert_eq!(nvrtc::source(&name), Some(std::fs::read_to_string(f).unwrap().as_str()), "{name} not embedded in nvrtc::SOURCES");
        let src = nvrtc::expand(&std::fs::read_to_string(f).unwrap(), &lookup).unwrap();
        match nvrtc::compile(&name, &src, "compute_90") {
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
