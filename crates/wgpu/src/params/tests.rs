//! Each composed shader's `struct Params`, as naga lays it out, must be the Rust struct
//! of params.rs: same member names in the same order, same byte offsets, same types
//! (u32) and the same size. A drifted field would otherwise bind silently shifted values.

use super::{Filter, Params, Probe, Rerank, Scan, Select, Topk, Update};
use crate::kernels::{STAGES, all_sources};

/// One struct member: name, byte offset, type.
#[derive(Clone, Debug, PartialEq)]
struct Member {
    name: String,
    offset: usize,
    ty: String,
}

/// A struct's members in declaration order and its size (naga's span) in bytes.
#[derive(Clone, Debug, PartialEq)]
struct Layout {
    members: Vec<Member>,
    size: usize,
}

fn rust_layout<P: Params>() -> (&'static str, Layout) {
    let members = P::FIELDS.iter().map(|&(name, offset)| Member { name: name.into(), offset, ty: "u32".into() }).collect();
    (P::STAGE, Layout { members, size: size_of::<P>() })
}

/// Every Rust `Params` struct, by stage file.
fn rust_layouts() -> Vec<(&'static str, Layout)> {
    vec![
        rust_layout::<Probe>(),
        rust_layout::<Filter>(),
        rust_layout::<Scan>(),
        rust_layout::<Rerank>(),
        rust_layout::<Select>(),
        rust_layout::<Topk>(),
        rust_layout::<Update>(),
    ]
}

/// The layout of the struct type named `Params` in WGSL source `src`.
fn wgsl_layout(src: &str) -> Result<Layout, String> {
    let module = naga::front::wgsl::parse_str(src).map_err(|e| format!("WGSL parse error:\n{}", e.emit_to_string(src)))?;
    let (_, ty) = module.types.iter().find(|(_, t)| t.name.as_deref() == Some("Params")).ok_or("no struct Params")?;
    let naga::TypeInner::Struct { members, span } = &ty.inner else {
        return Err(format!("Params is not a struct: {:?}", ty.inner));
    };
    let members = members
        .iter()
        .map(|m| Member {
            name: m.name.clone().unwrap_or_default(),
            offset: m.offset as usize,
            ty: match module.types[m.ty].inner {
                naga::TypeInner::Scalar(naga::Scalar::U32) => "u32".into(),
                ref other => format!("{other:?}"),
            },
        })
        .collect();
    Ok(Layout { members, size: *span as usize })
}

/// Every difference between the shader's layout and the Rust struct's, one per line.
fn check(wgsl: &Layout, rust: &Layout) -> Result<(), String> {
    let mut errs = Vec::new();
    for i in 0..wgsl.members.len().max(rust.members.len()) {
        match (wgsl.members.get(i), rust.members.get(i)) {
            (Some(w), Some(r)) if w == r => {}
            (Some(w), Some(r)) => errs.push(format!(
                "member {i}: WGSL `{}: {}` at byte {}, Rust `{}: {}` at byte {}",
                w.name, w.ty, w.offset, r.name, r.ty, r.offset
            )),
            (Some(w), None) => errs.push(format!("member {i}: WGSL `{}` at byte {} has no Rust field", w.name, w.offset)),
            (None, Some(r)) => errs.push(format!("member {i}: Rust `{}` at byte {} has no WGSL member", r.name, r.offset)),
            (None, None) => unreachable!(),
        }
    }
    if wgsl.size != rust.size {
        errs.push(format!("size: WGSL span {} bytes, Rust size_of {} bytes", wgsl.size, rust.size));
    }
    if !rust.size.is_multiple_of(16) {
        errs.push(format!("size: {} bytes is not a multiple of 16 (uniform layout)", rust.size));
    }
    if errs.is_empty() { Ok(()) } else { Err(errs.join("\n")) }
}

#[test]
fn every_shader_params_matches_its_rust_struct() {
    let rust = rust_layouts();
    for (name, _) in STAGES {
        assert_eq!(rust.iter().filter(|(s, _)| *s == name).count(), 1, "{name}.wgsl needs exactly one Rust Params struct");
    }
    assert_eq!(rust.len(), STAGES.len(), "a Rust Params struct names a stage file that does not exist");
    for (stage, label, src) in all_sources() {
        let want = &rust.iter().find(|(s, _)| *s == stage).expect("checked above").1;
        let got = wgsl_layout(&src).unwrap_or_else(|e| panic!("{label}: {e}"));
        if let Err(e) = check(&got, want) {
            panic!("{label}: struct Params does not match crates/wgpu/src/params.rs:\n{e}");
        }
    }
}

#[test]
fn a_wrong_layout_is_caught() {
    let (_, scan) = rust_layout::<Scan>();
    check(&scan, &scan).expect("a layout matches itself");
    let mutate = |f: &dyn Fn(&mut Layout)| {
        let mut l = scan.clone();
        f(&mut l);
        check(&l, &scan)
    };
    let cases: [(&str, &dyn Fn(&mut Layout), &str); 5] = [
        ("shifted offset", &|l| l.members[9].offset += 4, "member 9"),
        ("renamed member", &|l| l.members[12].name = "k0".into(), "member 12"),
        ("f32 member", &|l| l.members[3].ty = "f32".into(), "member 3"),
        ("missing member", &|l| drop(l.members.pop()), "has no WGSL member"),
        ("other size", &|l| l.size += 16, "size"),
    ];
    for (what, f, expect) in cases {
        let e = mutate(f).expect_err(what);
        assert!(e.contains(expect), "{what}: message {e:?} should mention {expect:?}");
    }
    // WGSL's own alignment: a vec3<u32> after one u32 sits at byte 16 (span 32), which a
    // struct of four u32 does not match.
    let src = "struct Params { n: u32, v: vec3<u32> }\n@group(0) @binding(0) var<uniform> P: Params;\n\
               @compute @workgroup_size(1) fn main() { _ = P.n; }";
    let got = wgsl_layout(src).expect("valid WGSL");
    assert_eq!((got.members[1].offset, got.size), (16, 32));
    let e = check(&got, &rust_layout::<Update>().1).expect_err("vec3 layout");
    assert!(e.contains("member 1") && e.contains("size"), "{e}");
}
