//! Every WGSL shader must parse, validate, and translate to MSL (Metal) and HLSL (DX12)
//! with naga, the translator wgpu itself uses: a shader that would not build on a Mac or
//! under Windows fails here, on any machine, without a GPU.

use naga::back::{hlsl, msl};
use naga::valid::{Capabilities, ValidationFlags, Validator};

fn validate(label: &str, src: &str) -> (naga::Module, naga::valid::ModuleInfo) {
    let module = naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{label}: WGSL parse error:\n{}", e.emit_to_string(src)));
    // No optional capabilities: the shaders must run on any WebGPU-class adapter.
    let info = Validator::new(ValidationFlags::all(), Capabilities::empty())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{label}: validation error:\n{}", e.emit_to_string(src)));
    (module, info)
}

#[test]
fn every_shader_validates_and_translates_to_msl_and_hlsl() {
    let sources = super::all_sources();
    let scan_widths = super::TEST_D16.len();
    let files = super::STAGES.len();
    assert!(files >= 7, "probe, filter, scan, rerank, select, topk, update");
    assert_eq!(sources.len(), 2 * (files - 1 + scan_widths), "every stage file x 2 dot variants, the scan at several widths");
    for (_, label, src) in &sources {
        let (module, info) = validate(label, src);
        assert!(!module.entry_points.is_empty(), "{label}: no entry points");
        for lang_version in [(2, 0), (3, 0)] {
            let opts = msl::Options { lang_version, ..Default::default() };
            let (out, _) = msl::write_string(&module, &info, &opts, &msl::PipelineOptions::default())
                .unwrap_or_else(|e| panic!("{label}: MSL {lang_version:?} translation failed: {e}"));
            assert!(out.contains("kernel"), "{label}: MSL output has no kernel functions");
        }
        for shader_model in [hlsl::ShaderModel::V5_1, hlsl::ShaderModel::V6_0] {
            let opts = hlsl::Options { shader_model, ..Default::default() };
            let mut out = String::new();
            hlsl::Writer::new(&mut out, &opts, &hlsl::PipelineOptions::default())
                .write(&module, &info, None)
                .unwrap_or_else(|e| panic!("{label}: HLSL {shader_model:?} translation failed: {e}"));
            assert!(out.contains("numthreads"), "{label}: HLSL output has no compute entry points");
        }
    }
}

#[test]
fn a_broken_shader_is_caught() {
    // The check above must be able to fail: an undefined identifier, a type error.
    for bad in ["fn f() -> u32 { return undefined_thing; }", "fn f() -> u32 { let x: f32 = 1u; return 0u; }"] {
        let parsed = naga::front::wgsl::parse_str(bad);
        let failed = match parsed {
            Err(_) => true,
            Ok(m) => Validator::new(ValidationFlags::all(), Capabilities::empty()).validate(&m).is_err(),
        };
        assert!(failed, "naga accepted {bad:?}");
    }
}

#[test]
fn every_entry_point_the_backend_uses_exists() {
    use super::{Kernel, compose};
    for k in Kernel::ALL {
        let (file, entry) = k.source();
        let src = compose(file, true, 8).expect("stage exists");
        let (module, _) = validate(file, &src);
        assert!(module.entry_points.iter().any(|e| e.name == entry), "{file}.wgsl has no entry point {entry}");
    }
}
