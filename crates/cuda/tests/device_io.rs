//! `Executor<Cuda>::search_device` (queries read from device memory, results written to
//! device memory: the Python package's zero-copy DLPack path) gives the same rows and
//! scores as `Search::search` of the same values: f32 / f16 / bf16 queries, ip / cosine /
//! l2, unfiltered and filtered batches (the planner's candidate routes and the probe path,
//! so sub-batches are gathered on the device), B = 1, 37, 300, k beyond the passing items;
//! refused rows are typed errors naming row and column. Skips without a CUDA device.

use cudarc::driver::{CudaContext, result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use silica_core::Error;
use silica_core::filter::Filter;
use silica_core::graph::{Executor, RerankMode, Search, SearchParams, SearchRequest};
use silica_core::model::build::BuildParams;
use silica_core::model::npy::Matrix;
use silica_core::model::source::VectorSource;
use silica_core::model::{IndexBuilder, Metric, attributes, format};
use silica_cuda::{self as cuda, Cuda, DType, DeviceQueries, DeviceResults, SearchDevice};
use std::path::Path;
use std::sync::Arc;

fn executor(metric: Metric, n: usize, d: usize, seed: u64) -> Option<Executor<Cuda>> {
    if !cuda::available() {
        eprintln!("SKIP: no CUDA device (libcuda cannot be loaded or no GPU)");
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let data: Vec<f32> = (0..n * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let colors = ["red", "green", "blue", "rare"];
    let jsonl: String = (0..n)
        .map(|i| {
            let c = if i % 97 == 0 { "rare" } else { colors[rng.random_range(0..3)] };
            format!("{{\"id\":\"i{i}\",\"color\":\"{c}\",\"tags\":[\"t{}\"]}}\n", i % 5)
        })
        .collect();
    let table = attributes::parse_jsonl(std::io::Cursor::new(jsonl), Path::new("attributes"), &[]).unwrap();
    let src = VectorSource::from_matrix(Matrix { rows: n, dim: d, data, was_f16: false });
    let p = BuildParams { nlist: Some(16), metric, ..Default::default() };
    let path = Path::new("<test>");
    let (bytes, _) = IndexBuilder::new(p).write(&src, &table, &silica_core::model::compute::CpuCompute, None, Vec::new(), path).unwrap();
    let index = format::from_bytes_with(&bytes, path, format::Verify::Skip).unwrap();
    Some(Executor::new(Cuda::new().unwrap(), Arc::new(index)).unwrap())
}

/// `host` (`[b, d]` f32, exactly representable in `dtype`) as `dtype` bytes on GPU 0.
fn upload(ctx: &Arc<CudaContext>, host: &[f32], dtype: DType) -> cudarc::driver::CudaSlice<u8> {
    let bytes: Vec<u8> = match dtype {
        DType::F32 => host.iter().flat_map(|x| x.to_le_bytes()).collect(),
        DType::F16 => host.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect(),
        DType::BF16 => host.iter().flat_map(|&x| ((x.to_bits() >> 16) as u16).to_le_bytes()).collect(),
    };
    ctx.default_stream().clone_htod(&bytes).unwrap()
}

/// Values as `dtype` holds them (f16 rounds; bf16 here truncates, which `upload` matches).
fn representable(host: &[f32], dtype: DType) -> Vec<f32> {
    match dtype {
        DType::F32 => host.to_vec(),
        DType::F16 => host.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect(),
        DType::BF16 => host.iter().map(|&x| f32::from_bits(x.to_bits() & 0xffff_0000)).collect(),
    }
}

fn read(ctx: &Arc<CudaContext>, r: &DeviceResults) -> (Vec<f32>, Vec<i64>) {
    ctx.synchronize().unwrap();
    let mut s = vec![0f32; r.b * r.k];
    let mut rows = vec![0i64; r.b * r.k];
    // SAFETY: the result buffers hold b * k elements each.
    unsafe {
        result::memcpy_dtoh_sync(&mut s, r.scores).unwrap();
        result::memcpy_dtoh_sync(&mut rows, r.rows).unwrap();
    }
    (s, rows)
}

fn ptr(ctx: &Arc<CudaContext>, b: &cudarc::driver::CudaSlice<u8>) -> u64 {
    use cudarc::driver::DevicePtr;
    let stream = ctx.default_stream();
    let (p, _g) = b.device_ptr(&stream);
    p
}

#[test]
fn device_search_equals_host_search() {
    for (m, metric) in [Metric::Ip, Metric::Cosine, Metric::L2].into_iter().enumerate() {
        let Some(exec) = executor(metric, 2000 + 37 * m, 40, 7 + m as u64) else { return };
        let ix = exec.index().clone();
        let ctx = CudaContext::new(0).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(100 + m as u64);
        let texts = ["", "color = \"red\"", "color = \"rare\"", "tags = \"t1\" AND NOT color = \"blue\"", "color = \"none-such\""];
        for &b in &[1usize, 37, 300] {
            let q: Vec<f32> = (0..b * ix.dim).map(|_| rng.random_range(-2.0f32..2.0)).collect();
            let filters: Vec<Filter> =
                (0..b).map(|i| Filter::compile(texts[i % texts.len()], &ix.attrs.schema, &ix.bloom.params).unwrap()).collect();
            for dtype in [DType::F32, DType::F16, DType::BF16] {
                for (filtered, k, rerank) in [(false, 10, RerankMode::Auto), (true, 10, RerankMode::None), (true, 200, RerankMode::Auto)] {
                    let fl: &[Filter] = if filtered { &filters } else { &[] };
                    let params = SearchParams { k, rerank, ..Default::default() };
                    let host = representable(&q, dtype);
                    let want = exec.search(&SearchRequest { queries: &host, filters: fl, params: params.clone() }).unwrap();
                    let dq = upload(&ctx, &q, dtype);
                    let got =
                        exec.search_device(&DeviceQueries { ptr: ptr(&ctx, &dq), rows: b, dim: ix.dim, dtype }, 0, fl, &params, 0).unwrap();
                    let (s, rows) = read(&ctx, &got);
                    for (i, w) in want.iter().enumerate() {
                        let label = format!("{metric:?} b {b} {dtype:?} filtered {filtered} k {k} query {i}");
                        let n = w.rows.len();
                        let gr: Vec<i64> = rows[i * k..i * k + n].to_vec();
                        assert_eq!(gr, w.rows.iter().map(|&r| r as i64).collect::<Vec<_>>(), "{label}: rows");
                        assert_eq!(
                            s[i * k..i * k + n].iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                            w.scores.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                            "{label}: scores"
                        );
                        assert!(rows[i * k + n..(i + 1) * k].iter().all(|&r| r == -1), "{label}: padding rows");
                        assert!(s[i * k + n..(i + 1) * k].iter().all(|x| *x == f32::NEG_INFINITY), "{label}: padding scores");
                    }
                }
            }
        }
    }
}

#[test]
fn device_search_refuses_bad_queries() {
    let Some(exec) = executor(Metric::Ip, 500, 24, 3) else { return };
    let ctx = CudaContext::new(0).unwrap();
    let p = SearchParams::default();
    let mut q: Vec<f32> = vec![0.5; 5 * 24];
    q[3 * 24 + 7] = f32::NAN;
    let dq = upload(&ctx, &q, DType::F32);
    let at = |rows, dim| DeviceQueries { ptr: ptr(&ctx, &dq), rows, dim, dtype: DType::F32 };
    match exec.search_device(&at(5, 24), 0, &[], &p, 0) {
        Err(Error::NonFinite { row: 3, col: 7, .. }) => {}
        other => panic!("want NonFinite at row 3 col 7, got {:?}", other.err()),
    }
    q[3 * 24 + 7] = 3.0e19; // finite, but the sum of squares overflows f32
    let dq = upload(&ctx, &q, DType::F32);
    match exec.search_device(&DeviceQueries { ptr: ptr(&ctx, &dq), rows: 5, dim: 24, dtype: DType::F32 }, 0, &[], &p, 0) {
        Err(Error::OutOfRange { row: 3, col: None, .. }) => {}
        other => panic!("want OutOfRange at row 3, got {:?}", other.err()),
    }
    assert!(matches!(exec.search_device(&at(2, 12), 0, &[], &p, 0), Err(Error::Dimension { .. })));
    assert!(matches!(exec.search_device(&at(2, 24), 5, &[], &p, 0), Err(Error::Param { .. })));
    assert!(matches!(exec.search_device(&at(2, 24), 0, &[], &SearchParams { k: 0, ..Default::default() }, 0), Err(Error::Param { .. })));
    let empty = exec.search_device(&at(0, 24), 0, &[], &p, 0).unwrap();
    assert_eq!((empty.b, empty.k), (0, 10));
}
