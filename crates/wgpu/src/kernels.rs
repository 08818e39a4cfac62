//! WGSL sources, the compute pipelines built from them (once per device), and [`Rec`],
//! which records a sequence of dispatches and copies and submits them as one command
//! buffer.
//!
//! A shader module is `shaders/common.wgsl` + one generated `dot4` line + a stage file.
//! `dot4` is `dot4I8Packed` where the instance supports the WGSL language extension
//! `packed_4x8_integer_dot_product` (naga lowers it to SPIR-V `OpSDot` or a polyfill),
//! else a portable sign-extend-and-multiply; both are exact.

use super::gpu::{Buf, Gpu};
use super::params::{Params, Scan};
use silica_core::error::{Error, Result};
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex};

const COMMON: &str = include_str!("../../../shaders/common.wgsl");

/// Stage shader files, by stage name.
pub const STAGES: [(&str, &str); 7] = [
    ("probe", include_str!("../../../shaders/probe.wgsl")),
    ("filter", include_str!("../../../shaders/filter.wgsl")),
    ("scan", include_str!("../../../shaders/scan.wgsl")),
    ("rerank", include_str!("../../../shaders/rerank.wgsl")),
    ("select", include_str!("../../../shaders/select.wgsl")),
    ("topk", include_str!("../../../shaders/topk.wgsl")),
    ("update", include_str!("../../../shaders/update.wgsl")),
];

/// Row widths (vec4<u32> per row) the shader test compiles the scan stage for.
#[cfg(test)]
pub const TEST_D16: [u32; 5] = [1, 8, 32, 33, 128];

/// The full WGSL source of stage `stage` (`probe`, `filter`, ...), with the packed
/// dot-product builtin or the portable fallback. The scan stage is specialized for rows
/// of `d16` vec4<u32> (D16_VALUE in scan.wgsl); other stages ignore `d16`.
pub fn compose(stage: &str, packed_dot: bool, d16: u32) -> Option<String> {
    let body = STAGES.iter().find(|(n, _)| *n == stage)?.1.replace("D16_VALUE", &format!("{d16}u"));
    let dot = if packed_dot {
        "fn dot4(a: u32, b: u32) -> i32 { return dot4I8Packed(a, b); }"
    } else {
        "fn dot4(a: u32, b: u32) -> i32 { return dot4_portable(a, b); }"
    };
    Some(format!("{COMMON}\n{dot}\n\n{body}"))
}

/// Every composed shader: `(stage, label, source)` for each stage and both dot variants
/// (the shader test validates them all with naga and translates them to MSL and HLSL;
/// the params test checks each one's uniform layout).
#[cfg(test)]
pub fn all_sources() -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    for (name, _) in STAGES {
        for packed in [true, false] {
            let widths: &[u32] = if name == "scan" { &TEST_D16 } else { &[8] };
            for &d16 in widths {
                let label = format!("{name}.wgsl ({}, d16 {d16})", if packed { "dot4I8Packed" } else { "portable dot" });
                out.push((name, label, compose(name, packed, d16).expect("known stage")));
            }
        }
    }
    out
}

/// Every compute entry point: (stage file, entry point name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    ProbeScores,
    FilterPairs,
    FilterWords,
    FilterCount,
    ScanInvertCount,
    ScanInvertScan,
    ScanInvertFill,
    ScanActiveInit,
    ScanActive,
    ScanScore,
    ScanHist,
    ScanEmit,
    RerankScale,
    RerankRefine,
    RerankModel,
    SelectGather,
    TopkClear,
    TopkHist,
    TopkPick,
    TopkEmit,
    SortLocal,
    SortGlobal,
    TopkPack,
    ScatterU32,
}

impl Kernel {
    pub const ALL: [Kernel; 24] = [
        Kernel::ProbeScores,
        Kernel::FilterPairs,
        Kernel::FilterWords,
        Kernel::FilterCount,
        Kernel::ScanInvertCount,
        Kernel::ScanInvertScan,
        Kernel::ScanInvertFill,
        Kernel::ScanActiveInit,
        Kernel::ScanActive,
        Kernel::ScanScore,
        Kernel::ScanHist,
        Kernel::ScanEmit,
        Kernel::RerankScale,
        Kernel::RerankRefine,
        Kernel::RerankModel,
        Kernel::SelectGather,
        Kernel::TopkClear,
        Kernel::TopkHist,
        Kernel::TopkPick,
        Kernel::TopkEmit,
        Kernel::SortLocal,
        Kernel::SortGlobal,
        Kernel::TopkPack,
        Kernel::ScatterU32,
    ];

    pub fn source(self) -> (&'static str, &'static str) {
        match self {
            Kernel::ProbeScores => ("probe", "probe_scores"),
            Kernel::FilterPairs => ("filter", "filter_pairs"),
            Kernel::FilterWords => ("filter", "filter_words"),
            Kernel::FilterCount => ("filter", "filter_count"),
            Kernel::ScanInvertCount => ("scan", "scan_invert_count"),
            Kernel::ScanInvertScan => ("scan", "scan_invert_scan"),
            Kernel::ScanInvertFill => ("scan", "scan_invert_fill"),
            Kernel::ScanActiveInit => ("scan", "scan_active_init"),
            Kernel::ScanActive => ("scan", "scan_active"),
            Kernel::ScanScore => ("scan", "scan_score"),
            Kernel::ScanHist => ("scan", "scan_hist"),
            Kernel::ScanEmit => ("scan", "scan_emit"),
            Kernel::RerankScale => ("rerank", "rerank_scale"),
            Kernel::RerankRefine => ("rerank", "rerank_refine"),
            Kernel::RerankModel => ("rerank", "rerank_model"),
            Kernel::SelectGather => ("select", "select_gather"),
            Kernel::TopkClear => ("topk", "topk_clear"),
            Kernel::TopkHist => ("topk", "topk_hist"),
            Kernel::TopkPick => ("topk", "topk_pick"),
            Kernel::TopkEmit => ("topk", "topk_emit"),
            Kernel::SortLocal => ("topk", "sort_local"),
            Kernel::SortGlobal => ("topk", "sort_global"),
            Kernel::TopkPack => ("topk", "topk_pack"),
            Kernel::ScatterU32 => ("update", "scatter_u32"),
        }
    }
}

/// A compute pipeline and its (shader-derived) bind group layout.
pub struct Pipe {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

type StagePipes = std::collections::HashMap<Kernel, Arc<Pipe>>;

/// Pipelines, compiled once per device: every stage at creation, the scan stage once per
/// row width (D16) the first time an index of that width is uploaded.
pub struct Pipelines {
    device: wgpu::Device,
    packed_dot: bool,
    fixed: StagePipes,
    scan: Mutex<std::collections::HashMap<u32, Arc<StagePipes>>>,
}

fn build(device: &wgpu::Device, stage: &str, packed_dot: bool, d16: u32) -> Result<StagePipes> {
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let src = compose(stage, packed_dot, d16).expect("known stage");
    let module =
        device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some(stage), source: wgpu::ShaderSource::Wgsl(src.into()) });
    let mut out = StagePipes::new();
    for k in Kernel::ALL.iter().filter(|k| k.source().0 == stage) {
        let entry = k.source().1;
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        });
        let layout = pipeline.get_bind_group_layout(0);
        out.insert(*k, Arc::new(Pipe { pipeline, layout }));
    }
    if let Some(e) = pollster::block_on(scope.pop()) {
        return Err(Error::backend("wgpu", format!("{stage}.wgsl failed to compile: {e}")));
    }
    Ok(out)
}

impl Pipelines {
    /// Compile every stage but the scan.
    pub fn new(device: &wgpu::Device, packed_dot: bool) -> Result<Pipelines> {
        let mut fixed = StagePipes::new();
        for (name, _) in STAGES.iter().filter(|(n, _)| *n != "scan") {
            fixed.extend(build(device, name, packed_dot, 1)?);
        }
        Ok(Pipelines { device: device.clone(), packed_dot, fixed, scan: Mutex::new(Default::default()) })
    }

    /// The scan stage for rows of `d16` vec4s (compiled on first use).
    pub fn scan(&self, d16: u32) -> Result<Arc<StagePipes>> {
        let mut m = self.scan.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = m.get(&d16) {
            return Ok(p.clone());
        }
        let p = Arc::new(build(&self.device, "scan", self.packed_dot, d16)?);
        m.insert(d16, p.clone());
        Ok(p)
    }

    fn get(&self, k: Kernel) -> Arc<Pipe> {
        self.fixed.get(&k).cloned().unwrap_or_else(|| panic!("{k:?} is a scan kernel: use Rec::dispatch_scan"))
    }
}

/// A buffer handle plus the byte length to bind (pooled buffers may be larger).
#[derive(Clone, Debug)]
pub struct View {
    pub buf: wgpu::Buffer,
    pub len: u64,
}

enum Step {
    Dispatch { pipe: Arc<Pipe>, label: &'static str, params: Vec<u8>, binds: Vec<(u32, View)>, groups: Groups },
    Copy { src: View, src_off: u64, dst: View, dst_off: u64, len: u64 },
    Clear { dst: View },
}

/// Records dispatches, copies and clears for one submission. Temporary buffers taken
/// with [`Rec::temp`] live until the work is submitted, then return to the pool (later
/// submissions are ordered after this one on the queue, so reuse is safe).
pub struct Rec<'g> {
    g: &'g Gpu,
    steps: Vec<Step>,
    keep: Vec<Buf>,
}

/// A dispatch size: fixed, or read at execution time from a buffer of three u32.
#[derive(Clone)]
pub enum Groups {
    Fixed([u32; 3]),
    Indirect(View),
}

impl Groups {
    fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        match self {
            Groups::Fixed(g) => pass.dispatch_workgroups(g[0], g[1], g[2]),
            Groups::Indirect(v) => pass.dispatch_workgroups_indirect(&v.buf, 0),
        }
    }
}

/// Workgroups for a grid-stride loop over `n` items, `per` items per workgroup.
pub fn groups_for(n: u64, per: u64) -> u32 {
    n.div_ceil(per).clamp(1, 65535) as u32
}

impl<'g> Rec<'g> {
    pub fn new(g: &'g Gpu) -> Self {
        Rec { g, steps: Vec::new(), keep: Vec::new() }
    }

    /// A scratch storage buffer of at least `bytes` bytes (contents undefined: poisoned
    /// in test mode), kept alive until submission.
    pub fn temp(&mut self, bytes: u64) -> Result<View> {
        let b = self.g.storage(bytes)?;
        let v = b.view();
        self.keep.push(b);
        Ok(v)
    }

    /// Record one dispatch. `params` is the kernel's uniform block (binding 0): the
    /// [`Params`] struct of its stage file; `binds` are the other bindings the entry point
    /// uses, by binding number.
    pub fn dispatch<P: Params>(&mut self, k: Kernel, params: &P, binds: &[(u32, &View)], groups: [u32; 3]) {
        let pipe = self.g.pipelines.get(k);
        self.push(pipe, k, params, binds, groups);
    }

    /// Record a dispatch of a scan-stage kernel compiled for rows of `d16` vec4s.
    pub fn dispatch_scan(&mut self, k: Kernel, d16: u32, params: &Scan, binds: &[(u32, &View)], groups: [u32; 3]) -> Result<()> {
        self.dispatch_scan_with(k, d16, params, binds, Groups::Fixed(groups))
    }

    /// [`Rec::dispatch_scan`] with a fixed or indirect dispatch size.
    pub fn dispatch_scan_with(&mut self, k: Kernel, d16: u32, params: &Scan, binds: &[(u32, &View)], groups: Groups) -> Result<()> {
        let pipe =
            self.g.pipelines.scan(d16)?.get(&k).cloned().ok_or_else(|| Error::backend("wgpu", format!("{k:?} is not a scan kernel")))?;
        self.push_with(pipe, k, params, binds, groups);
        Ok(())
    }

    fn push<P: Params>(&mut self, pipe: Arc<Pipe>, k: Kernel, params: &P, binds: &[(u32, &View)], groups: [u32; 3]) {
        if groups.contains(&0) {
            return;
        }
        self.push_with(pipe, k, params, binds, Groups::Fixed(groups));
    }

    fn push_with<P: Params>(&mut self, pipe: Arc<Pipe>, k: Kernel, params: &P, binds: &[(u32, &View)], groups: Groups) {
        // A struct of another stage would bind bytes the shader reads as other fields.
        assert_eq!(k.source().0, P::STAGE, "{k:?} takes the Params of {}.wgsl", k.source().0);
        self.steps.push(Step::Dispatch {
            pipe,
            label: k.source().1,
            params: bytemuck::bytes_of(params).to_vec(),
            binds: binds.iter().map(|(i, v)| (*i, (*v).clone())).collect(),
            groups,
        });
    }

    pub fn copy(&mut self, src: &View, src_off: u64, dst: &View, dst_off: u64, len: u64) {
        if len > 0 {
            self.steps.push(Step::Copy { src: src.clone(), src_off, dst: dst.clone(), dst_off, len });
        }
    }

    /// Zero a whole buffer.
    pub fn clear(&mut self, dst: &View) {
        self.steps.push(Step::Clear { dst: dst.clone() });
    }

    /// Encode everything into one command buffer and submit it.
    pub fn submit(self) -> Result<()> {
        if self.steps.is_empty() {
            return Ok(());
        }
        let g = self.g;
        let align = g.limits.min_uniform_buffer_offset_alignment.max(16) as usize;
        // All dispatches' parameters in one uniform buffer, each at an aligned offset.
        let mut blob: Vec<u8> = Vec::new();
        let mut offsets = Vec::new();
        for s in &self.steps {
            if let Step::Dispatch { params, .. } = s {
                let off = blob.len().div_ceil(align) * align;
                blob.resize(off, 0);
                offsets.push(off as u64);
                // Params structs are 16-byte multiples (params.rs asserts it).
                blob.extend_from_slice(params);
            }
        }
        let pbuf = if blob.is_empty() { None } else { Some(g.uniform(&blob)?) };
        let mut bind_groups = Vec::new();
        let mut di = 0;
        for s in &self.steps {
            if let Step::Dispatch { pipe, label, params, binds, .. } = s {
                let layout = &pipe.layout;
                let psize = params.len() as u64;
                let pb = pbuf.as_ref().expect("params present");
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &pb.buf,
                        offset: offsets[di],
                        size: NonZeroU64::new(psize),
                    }),
                }];
                for (i, v) in binds {
                    entries.push(wgpu::BindGroupEntry {
                        binding: *i,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &v.buf,
                            offset: 0,
                            size: NonZeroU64::new(v.len.max(4).next_multiple_of(4)),
                        }),
                    });
                }
                bind_groups.push(g.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(label), layout, entries: &entries }));
                di += 1;
            }
        }
        let mut enc = g.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("silica") });
        // Timing (Backend::timed): stamp the start of the first pass and the end of the last.
        let passes = self
            .steps
            .iter()
            .enumerate()
            .filter(|(i, s)| matches!(s, Step::Dispatch { .. }) && (*i == 0 || !matches!(self.steps[i - 1], Step::Dispatch { .. })))
            .count();
        let stamps = if passes > 0 { g.timestamp_slots() } else { None };
        let mut pass_no = 0;
        let mut i = 0;
        let mut bi = 0;
        let mut profiled: Vec<&'static str> = Vec::new();
        while i < self.steps.len() {
            match &self.steps[i] {
                Step::Dispatch { .. } => {
                    if let Some(p) = &g.profile {
                        // Diagnostics: one timestamped pass per dispatch.
                        while let Some(Step::Dispatch { pipe, groups, label, .. }) = self.steps.get(i) {
                            let at = 2 * profiled.len() as u32;
                            let tw = (at + 1 < super::gpu::PROFILE_SLOTS).then_some(wgpu::ComputePassTimestampWrites {
                                query_set: &p.queries,
                                beginning_of_pass_write_index: Some(at),
                                end_of_pass_write_index: Some(at + 1),
                            });
                            if tw.is_some() {
                                profiled.push(label);
                            }
                            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: tw });
                            pass.set_pipeline(&pipe.pipeline);
                            pass.set_bind_group(0, &bind_groups[bi], &[]);
                            groups.encode(&mut pass);
                            bi += 1;
                            i += 1;
                        }
                        continue;
                    }
                    let timestamp_writes = stamps.map(|(qs, at)| wgpu::ComputePassTimestampWrites {
                        query_set: qs,
                        beginning_of_pass_write_index: (pass_no == 0).then_some(at),
                        end_of_pass_write_index: (pass_no + 1 == passes).then_some(at + 1),
                    });
                    pass_no += 1;
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes });
                    while let Some(Step::Dispatch { pipe, groups, .. }) = self.steps.get(i) {
                        pass.set_pipeline(&pipe.pipeline);
                        pass.set_bind_group(0, &bind_groups[bi], &[]);
                        groups.encode(&mut pass);
                        bi += 1;
                        i += 1;
                    }
                }
                Step::Copy { src, src_off, dst, dst_off, len } => {
                    enc.copy_buffer_to_buffer(&src.buf, *src_off, &dst.buf, *dst_off, *len);
                    i += 1;
                }
                Step::Clear { dst } => {
                    enc.clear_buffer(&dst.buf, 0, None);
                    i += 1;
                }
            }
        }
        g.queue.submit([enc.finish()]);
        drop(pbuf);
        drop(self.keep);
        g.record_profile(&profiled)
    }
}

#[cfg(test)]
mod translate;
