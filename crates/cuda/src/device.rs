//! Device plumbing on cudarc 0.19 (driver API, loaded at run time): one context per
//! backend and one stream per search lane ([`Dev::fork`]), typed buffers with their raw device pointers, kernel handles
//! (NVRTC-compiled once per process) and raw launches.

use super::args::KernelArgs;
use super::kernels::KernelId;
use super::nvrtc;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DeviceRepr, sys};
use silica_core::error::{Error, Result};
use std::ffi::c_void;
use std::sync::Arc;

pub(crate) fn drv(e: cudarc::driver::DriverError) -> Error {
    Error::backend("cuda", format!("CUDA driver: {e:?}"))
}

/// A device buffer: a cudarc allocation and its raw pointer.
pub struct DBuf<T> {
    slice: CudaSlice<T>,
    ptr: u64,
    len: usize,
}

impl<T> DBuf<T> {
    /// Raw device pointer (kernel argument).
    pub fn ptr(&self) -> u64 {
        self.ptr
    }
    /// Elements requested at allocation (the allocation holds at least one).
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Bytes of each pinned staging buffer of [`Dev::upload_staged`] (two are used): 64 MiB,
/// or `SILICA_CUDA_STAGE_BYTES` (tests set it small so that every upload takes many chunks).
pub(crate) fn stage_bytes() -> usize {
    static B: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *B.get_or_init(|| std::env::var("SILICA_CUDA_STAGE_BYTES").ok().and_then(|v| v.parse().ok()).filter(|&b| b > 0).unwrap_or(64 << 20))
}

/// Device address of `b`, or 0 (a null pointer argument) when absent.
pub(crate) fn ptr_or_null<T>(b: Option<&DBuf<T>>) -> u64 {
    b.map_or(0, |b| b.ptr())
}

/// Grid, block and dynamic shared memory of one launch; `pdl`: programmatic dependent
/// launch (the kernel may start while its predecessor drains; it waits before reading).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Launch {
    pub grid: (u32, u32, u32),
    pub block: u32,
    pub smem: u32,
    pub pdl: bool,
}

impl Launch {
    /// `blocks` x `block` threads with `smem` bytes, no PDL.
    pub(crate) fn new(blocks: u32, block: u32, smem: u32) -> Launch {
        Launch { grid: (blocks, 1, 1), block, smem, pdl: false }
    }
    /// A 2-D grid.
    pub(crate) fn grid2(x: u32, y: u32, block: u32, smem: u32) -> Launch {
        Launch { grid: (x, y, 1), block, smem, pdl: false }
    }
    /// The same launch with PDL allowed when `on`.
    pub(crate) fn pdl(self, on: bool) -> Launch {
        Launch { pdl: on, ..self }
    }
}

/// Context, stream, kernels.
pub struct Dev {
    pub(crate) ctx: Arc<CudaContext>,
    pub(crate) stream: Arc<CudaStream>,
    /// Indexed by [`KernelId`]; `None` for kernels of stage files not loaded.
    funcs: Vec<Option<CudaFunction>>,
    _modules: Vec<Arc<CudaModule>>,
    pub(crate) sms: u32,
    pub(crate) arch: String,
    /// Compute capability major version (programmatic dependent launch needs 9).
    pub(crate) cc_major: i32,
}

impl Dev {
    /// GPU `ordinal` with the search kernels ([`nvrtc::SEARCH_MODULES`]).
    pub(crate) fn new(ordinal: usize) -> Result<Dev> {
        Self::open(ordinal, nvrtc::SEARCH_MODULES)
    }

    /// GPU `ordinal` with the kernels of the stage files `files` (of [`nvrtc::MODULES`]).
    pub(crate) fn open(ordinal: usize, files: &[&str]) -> Result<Dev> {
        if !super::available() {
            return Err(Error::backend("cuda", "no CUDA device (libcuda cannot be loaded or no GPU is present)"));
        }
        let ctx = CudaContext::new(ordinal).map_err(drv)?;
        // One stream, ordered: no cross-stream events needed (and none recorded per launch).
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(drv)?;
        let (maj, min) = ctx.compute_capability().map_err(drv)?;
        let arch = format!("compute_{maj}{min}");
        let sms = ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT).map_err(drv)? as u32;
        // Keep freed stream-ordered memory in the pool (the default threshold 0 returns it
        // to the OS at every synchronization, making each search re-map its buffers).
        unsafe {
            let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
            if sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) == sys::CUresult::CUDA_SUCCESS {
                let mut thr: u64 = u64::MAX;
                let _ = sys::cuMemPoolSetAttribute(
                    pool,
                    sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                    &mut thr as *mut u64 as *mut c_void,
                );
            }
        }
        let mut funcs = vec![None; KernelId::ALL.len()];
        let mut modules = Vec::new();
        for file in nvrtc::MODULES.iter().filter(|f| files.contains(f)) {
            let ptx = nvrtc::ptx_for(file, &arch)?;
            let m = ctx.load_module(cudarc::nvrtc::Ptx::from_src(ptx)).map_err(drv)?;
            for k in KernelId::in_file(file) {
                funcs[k as usize] = Some(m.load_function(k.name()).map_err(drv)?);
            }
            modules.push(m);
        }
        Ok(Dev { ctx, stream, funcs, _modules: modules, sms, arch, cc_major: maj })
    }

    /// The same context and kernels on a new stream (a search lane: its work is ordered
    /// only with itself, so it may overlap other lanes' kernels and copies). Buffers are
    /// allocated and freed on the stream of the `Dev` that allocated them.
    pub(crate) fn fork(&self) -> Result<Dev> {
        let stream = self.ctx.new_stream().map_err(drv)?;
        Ok(Dev {
            ctx: self.ctx.clone(),
            stream,
            funcs: self.funcs.clone(),
            _modules: self._modules.clone(),
            sms: self.sms,
            arch: self.arch.clone(),
            cc_major: self.cc_major,
        })
    }

    /// The NVRTC target the kernels were compiled for (`compute_90` on an H200).
    pub fn arch(&self) -> &str {
        &self.arch
    }
    /// Device name (e.g. "NVIDIA H200").
    pub fn name(&self) -> String {
        self.ctx.name().unwrap_or_default()
    }
    /// Multiprocessors.
    pub fn sms(&self) -> u32 {
        self.sms
    }

    /// The loaded kernel `k` (panics when its stage file was not loaded: a programming error).
    pub(crate) fn func(&self, k: KernelId) -> &CudaFunction {
        self.funcs[k as usize].as_ref().unwrap_or_else(|| panic!("kernel {} ({}) not loaded", k.name(), k.file()))
    }

    /// `(name, registers, local bytes per thread, static shared bytes)` of every kernel.
    pub fn kernel_info(&self) -> Vec<(String, i32, i32, i32)> {
        let mut v: Vec<_> = self
            .funcs
            .iter()
            .zip(KernelId::ALL)
            .filter_map(|(f, k)| Some((k, f.as_ref()?)))
            .map(|(k, f)| {
                (k.name().to_string(), f.num_regs().unwrap_or(-1), f.local_size_bytes().unwrap_or(-1), f.shared_size_bytes().unwrap_or(-1))
            })
            .collect();
        v.sort();
        v
    }

    /// Uninitialized buffer of `len` elements (at least one is allocated).
    pub(crate) fn alloc<T: DeviceRepr>(&self, len: usize) -> Result<DBuf<T>> {
        // SAFETY: every buffer is written by a kernel or a copy before it is read.
        let slice = unsafe { self.stream.alloc::<T>(len.max(1)) }.map_err(drv)?;
        let ptr = {
            let (p, _g) = slice.device_ptr(&self.stream);
            p
        };
        Ok(DBuf { slice, ptr, len })
    }

    pub(crate) fn upload<T: DeviceRepr>(&self, host: &[T]) -> Result<DBuf<T>> {
        let mut b = self.alloc::<T>(host.len())?;
        if !host.is_empty() {
            self.stream.memcpy_htod(host, &mut b.slice).map_err(drv)?;
        }
        Ok(b)
    }

    /// A buffer of `len` elements filled through two pinned staging buffers of
    /// [`stage_bytes`]: `fill(first, dst)` writes elements `first..first + dst.len()` into a
    /// staging buffer (chunks are multiples of `unit` elements) while the previous chunk is
    /// copied to the device, so a large tensor (e.g. a view into the mapped artifact, or a
    /// re-layout of one) uploads at copy-engine speed without a full host copy. Small
    /// buffers take one pageable copy.
    pub(crate) fn upload_staged<T: DeviceRepr + cudarc::driver::ValidAsZeroBits + Copy + Default>(
        &self,
        len: usize,
        unit: usize,
        fill: impl Fn(usize, &mut [T]),
    ) -> Result<DBuf<T>> {
        let size = std::mem::size_of::<T>().max(1);
        let chunk = (stage_bytes() / size / unit.max(1)).max(1) * unit.max(1);
        if len <= chunk {
            let mut host = vec![T::default(); len];
            fill(0, &mut host);
            return self.upload(&host);
        }
        let b = self.alloc::<T>(len)?;
        self.ctx.bind_to_thread().map_err(drv)?;
        // SAFETY: page-locked allocations; each is written by the host only after the event
        // recorded behind its previous copy has completed.
        let mut stage = unsafe { [self.ctx.alloc_pinned::<T>(chunk).map_err(drv)?, self.ctx.alloc_pinned::<T>(chunk).map_err(drv)?] };
        let done = [self.ctx.new_event(None).map_err(drv)?, self.ctx.new_event(None).map_err(drv)?];
        let mut used = [false; 2];
        for (i, first) in (0..len).step_by(chunk).enumerate() {
            let k = i % 2;
            let m = chunk.min(len - first);
            if used[k] {
                done[k].synchronize().map_err(drv)?;
            }
            let host = stage[k].as_mut_slice().map_err(drv)?;
            fill(first, &mut host[..m]);
            // SAFETY: `b` holds `len` elements; the source is pinned, so the copy is
            // asynchronous and `host` is not touched again until `done[k]` has fired.
            unsafe {
                cudarc::driver::result::memcpy_htod_async(b.ptr + (first * size) as u64, &host[..m], self.stream.cu_stream())
                    .map_err(drv)?;
            }
            done[k].record(&self.stream).map_err(drv)?;
            used[k] = true;
        }
        // The staging buffers are freed on return: wait for the last copies.
        for (k, e) in done.iter().enumerate() {
            if used[k] {
                e.synchronize().map_err(drv)?;
            }
        }
        Ok(b)
    }

    /// [`Dev::upload_staged`] of a host slice (copied into the staging buffers in parallel).
    pub(crate) fn upload_large<T: DeviceRepr + cudarc::driver::ValidAsZeroBits + Copy + Default + Send + Sync>(
        &self,
        host: &[T],
    ) -> Result<DBuf<T>> {
        use rayon::prelude::*;
        self.upload_staged(host.len(), 1, |first, dst| {
            let src = &host[first..first + dst.len()];
            dst.par_chunks_mut(1 << 18).zip(src.par_chunks(1 << 18)).for_each(|(d, s)| d.copy_from_slice(s));
        })
    }

    /// Copy `host` into the start of `b` (stream-ordered; the host buffer is staged).
    pub(crate) fn write<T: DeviceRepr>(&self, b: &DBuf<T>, host: &[T]) -> Result<()> {
        assert!(host.len() <= b.slice.len());
        if !host.is_empty() {
            self.ctx.bind_to_thread().map_err(drv)?;
            // SAFETY: `b` holds at least host.len() elements; pageable copies are staged
            // before this returns, so `host` may be dropped afterwards.
            unsafe {
                cudarc::driver::result::memcpy_htod_async(b.ptr, host, self.stream.cu_stream()).map_err(drv)?;
            }
        }
        Ok(())
    }

    /// `len` elements of `b` from element `at` (waits for the stream).
    pub(crate) fn download_at<T: DeviceRepr + Default + Clone>(&self, b: &DBuf<T>, at: usize, len: usize) -> Result<Vec<T>> {
        let mut out = vec![T::default(); len];
        if len > 0 {
            let v = b.slice.slice(at..at + len);
            self.stream.memcpy_dtoh(&v, &mut out).map_err(drv)?;
        }
        self.wait_here()?;
        Ok(out)
    }

    /// The first `len` elements of `b` (waits for the stream).
    pub(crate) fn download<T: DeviceRepr + Default + Clone>(&self, b: &DBuf<T>, len: usize) -> Result<Vec<T>> {
        let mut out = vec![T::default(); len];
        if len > 0 {
            let v = b.slice.slice(0..len);
            self.stream.memcpy_dtoh(&v, &mut out).map_err(drv)?;
        }
        self.wait_here()?;
        Ok(out)
    }

    /// Wait for the work enqueued on the stream so far, not for work other threads enqueue
    /// behind it (a stream synchronize would): with several search workers sharing the
    /// stream, a read-back waits only for its own batch.
    fn wait_here(&self) -> Result<()> {
        let e = self.stream.record_event(Some(sys::CUevent_flags::CU_EVENT_DISABLE_TIMING)).map_err(drv)?;
        e.synchronize().map_err(drv)
    }

    /// Fill `count` u32 words at `ptr` with `value` (stream-ordered).
    pub(crate) fn fill_u32(&self, ptr: u64, value: u32, count: usize) -> Result<()> {
        if count == 0 {
            return Ok(());
        }
        self.ctx.bind_to_thread().map_err(drv)?;
        unsafe { sys::cuMemsetD32Async(ptr, value, count, self.stream.cu_stream()) }.result().map_err(drv)
    }

    /// Launch kernel `k` with arguments `args` (its [`KernelArgs`] struct) on the stream.
    /// Empty grids are skipped. With `l.pdl` (programmatic dependent launch) the kernel may
    /// start while its predecessor on the stream runs; it must call `pdl_wait()` before
    /// touching memory (every kernel launched this way does so first).
    pub(crate) fn launch<T: KernelArgs>(&self, k: KernelId, l: Launch, args: &T) -> Result<()> {
        assert!(T::KERNELS.contains(&k), "{} does not take {}", k.name(), std::any::type_name::<T>());
        let (grid, block, smem) = (l.grid, l.block, l.smem);
        if grid.0 == 0 || grid.1 == 0 || grid.2 == 0 {
            return Ok(());
        }
        let f = self.func(k);
        // Any thread may call a stage: make this context current on it.
        self.ctx.bind_to_thread().map_err(drv)?;
        // One pointer per parameter, into `args` (alive for the call; the driver copies the
        // values at launch). Sizes and order are the kernel's (args.rs layout checks).
        let mut params = args.param_ptrs();
        let name = k.name();
        if l.pdl {
            // SAFETY: plain C structs filled field by field; `params` point into `args`.
            let r = unsafe {
                let mut attr: sys::CUlaunchAttribute = std::mem::zeroed();
                attr.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
                attr.value.programmaticStreamSerializationAllowed = 1;
                let cfg = sys::CUlaunchConfig {
                    gridDimX: grid.0,
                    gridDimY: grid.1,
                    gridDimZ: grid.2,
                    blockDimX: block,
                    blockDimY: 1,
                    blockDimZ: 1,
                    sharedMemBytes: smem,
                    hStream: self.stream.cu_stream(),
                    attrs: &mut attr,
                    numAttrs: 1,
                };
                sys::cuLaunchKernelEx(&cfg, f.cu_function(), params.as_mut_ptr(), std::ptr::null_mut())
            };
            return r.result().map_err(|e| Error::backend("cuda", format!("launch {name}: {e:?}")));
        }
        // SAFETY: `params` point into `args`, alive for the call; their count and sizes are
        // the kernel's parameters (checked under NVRTC by the args.rs tests).
        unsafe { cudarc::driver::result::launch_kernel(f.cu_function(), grid, (block, 1, 1), smem, self.stream.cu_stream(), &mut params) }
            .map_err(|e| Error::backend("cuda", format!("launch {name}: {e:?}")))
    }

    /// Raise a kernel's dynamic shared memory limit.
    pub(crate) fn set_dyn_smem(&self, k: KernelId, bytes: u32) -> Result<()> {
        self.func(k).set_attribute(sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes as i32).map_err(drv)
    }

    /// Blocks of `k` (with `block` threads) resident per multiprocessor.
    pub(crate) fn occupancy(&self, k: KernelId, block: u32, smem: usize) -> u32 {
        self.func(k).occupancy_max_active_blocks_per_multiprocessor(block, smem, None).unwrap_or(1).max(1)
    }

    pub(crate) fn sync(&self) -> Result<()> {
        self.stream.synchronize().map_err(drv)
    }
}
