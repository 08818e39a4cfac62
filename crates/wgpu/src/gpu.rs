//! The wgpu device: adapter choice, limits, the buffer pool, uploads and readbacks.

use super::kernels::{Pipelines, View};
use silica_core::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Options of the wgpu backend.
#[derive(Clone, Debug, Default)]
pub struct WgpuOptions {
    /// Cap on one storage binding, in bytes (`None`: the adapter's
    /// `max_storage_buffer_binding_size` / `max_buffer_size`). Smaller values split the
    /// index into more row chunks (the conformance suite uses this to test chunking).
    pub max_binding: Option<u64>,
    /// Use the portable int8 dot even where `dot4I8Packed` is available.
    pub portable_dot: bool,
    /// Fill every scratch and output buffer with a poison pattern when it is handed out
    /// (tests: proves every element that is read was written).
    pub poison: bool,
    /// Refuse software adapters (lavapipe, WARP): `silica_registry::Device::auto` sets it.
    pub hardware_only: bool,
    /// Testing knob: at most this many rows per index chunk (rounded down to a multiple
    /// of 64, at least 64), to exercise chunking on small indexes.
    pub chunk_rows: Option<usize>,
    /// Testing knob: at most this many queries per scratch group.
    pub group_queries: Option<usize>,
    /// Open the adapter at this index of [`adapters`] (`wgpu:N`, as `silica devices`
    /// numbers them) instead of the best one; `WGPU_ADAPTER_NAME` and `hardware_only` do
    /// not apply then.
    pub adapter: Option<usize>,
}

/// What `silica devices` shows for one wgpu adapter.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    pub details: String,
    /// Not a software rasterizer.
    pub hardware: bool,
    /// Matches `WGPU_ADAPTER_NAME` (always true when it is unset).
    pub selected_by_env: bool,
}

fn instance() -> wgpu::Instance {
    // Honours WGPU_BACKEND (and WGPU_DEBUG/validation flags).
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

fn name_filter() -> Option<String> {
    std::env::var("WGPU_ADAPTER_NAME").ok().map(|s| s.to_lowercase()).filter(|s| !s.is_empty())
}

fn rank(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// All adapters wgpu finds (Vulkan, Metal, DX12), best first.
pub fn adapters() -> Vec<AdapterSummary> {
    let inst = instance();
    let want = name_filter();
    let lang = inst.wgsl_language_features();
    let mut list = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()));
    list.sort_by_key(|a| rank(a.get_info().device_type));
    list.iter()
        .map(|a| {
            let i = a.get_info();
            let l = a.limits();
            let f = a.features();
            AdapterSummary {
                name: i.name.clone(),
                details: format!(
                    "{:?} {:?}, driver {} {}; max binding {} MiB, max buffer {} MiB; dot4I8Packed {}; subgroups {}",
                    i.backend,
                    i.device_type,
                    i.driver,
                    i.driver_info,
                    l.max_storage_buffer_binding_size >> 20,
                    l.max_buffer_size >> 20,
                    if lang.contains(wgpu::WgslLanguageFeatures::Packed4x8IntegerDotProduct) { "yes" } else { "no" },
                    if f.contains(wgpu::Features::SUBGROUP) { "yes" } else { "no" },
                ),
                hardware: i.device_type != wgpu::DeviceType::Cpu,
                selected_by_env: want.as_ref().is_none_or(|w| i.name.to_lowercase().contains(w)),
            }
        })
        .collect()
}

type FreeList = HashMap<(u32, u64), Vec<wgpu::Buffer>>;

/// Free buffers kept for reuse (bytes above this are released instead).
const POOL_BUDGET: u64 = 4 << 30;

struct Pool {
    free: Mutex<(FreeList, u64)>,
}

/// A device buffer; pooled buffers return to the pool when dropped.
pub struct Buf {
    pub buf: wgpu::Buffer,
    /// Bytes asked for (the binding size; the buffer may be larger).
    pub len: u64,
    home: Option<(Arc<Pool>, (u32, u64))>,
}

impl Buf {
    pub fn view(&self) -> View {
        View { buf: self.buf.clone(), len: self.len }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        if let Some((pool, key)) = self.home.take() {
            let mut g = pool.free.lock().unwrap_or_else(|e| e.into_inner());
            if g.1 + key.1 <= POOL_BUDGET {
                g.1 += key.1;
                g.0.entry(key).or_default().push(self.buf.clone());
            }
        }
    }
}

/// Size classes: powers of two up to 1 MiB, then multiples of 1 MiB.
fn class(bytes: u64) -> u64 {
    let b = bytes.max(16);
    if b <= 1 << 20 { b.next_power_of_two() } else { b.next_multiple_of(1 << 20) }
}

/// Poison word: a NaN as f32, an out-of-range row as u32.
pub const POISON: u32 = 0x7fc0_dead;

/// One wgpu device with its pipelines and buffer pool.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// Largest storage binding used (bytes, multiple of 256).
    pub max_binding: u64,
    pub packed_dot: bool,
    pub poison: bool,
    pub chunk_rows: Option<usize>,
    pub group_queries: Option<usize>,
    pub pipelines: Pipelines,
    pool: Arc<Pool>,
    /// Timestamp queries (adapter feature `TIMESTAMP_QUERY`), for `Backend::timed`.
    timestamps: Option<wgpu::QuerySet>,
    /// Slots written so far while a `timed` call runs (`None`: not timing).
    timing: Mutex<Option<u32>>,
    /// `SILICA_WGPU_PROFILE=1`: every dispatch in its own timestamped pass; per-kernel
    /// device time, printed to stderr when the device is dropped (diagnostics only).
    pub profile: Option<Profile>,
}

/// Per-kernel device time (see [`Gpu::profile`]).
pub struct Profile {
    pub queries: wgpu::QuerySet,
    pub totals: Mutex<HashMap<&'static str, (u64, f64)>>,
}

/// Dispatches timed per submission in profile mode.
pub const PROFILE_SLOTS: u32 = 4096;

impl Drop for Gpu {
    fn drop(&mut self) {
        if let Some(p) = &self.profile {
            let t = p.totals.lock().unwrap_or_else(|e| e.into_inner());
            let mut v: Vec<_> = t.iter().collect();
            v.sort_by(|a, b| b.1.1.total_cmp(&a.1.1));
            eprintln!("wgpu profile (device time per kernel): kernel, dispatches, total ms, mean us");
            for (k, (n, s)) in v {
                eprintln!("  {k:<20} {n:>8} {:>10.3} {:>10.2}", s * 1e3, s * 1e6 / *n as f64);
            }
        }
    }
}

/// Timestamp slots per timed call (two per submission).
const TIMESTAMP_SLOTS: u32 = 256;

impl Gpu {
    /// Open the best adapter (see `silica_registry::device` for the order and the environment
    /// overrides) and compile every pipeline.
    pub fn new(opts: &WgpuOptions) -> Result<Gpu> {
        let inst = instance();
        let want = name_filter();
        let mut list = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()));
        list.sort_by_key(|a| rank(a.get_info().device_type));
        if let Some(i) = opts.adapter {
            let found = list.len();
            list = list.into_iter().skip(i).take(1).collect();
            if list.is_empty() {
                return Err(Error::backend(
                    &format!("wgpu:{i}"),
                    format!("no such adapter: wgpu finds {found} (`silica devices` lists them as wgpu:0..)"),
                ));
            }
        }
        list.retain(|a| {
            let i = a.get_info();
            opts.adapter.is_some()
                || (want.as_ref().is_none_or(|w| i.name.to_lowercase().contains(w))
                    && (!opts.hardware_only || i.device_type != wgpu::DeviceType::Cpu))
        });
        let adapter = list.into_iter().next().ok_or_else(|| {
            Error::backend(
                "wgpu",
                match &want {
                    Some(w) => format!("no adapter matches WGPU_ADAPTER_NAME={w:?} (see `silica devices`)"),
                    None => {
                        "no Vulkan, Metal or DX12 adapter found (on Linux without a GPU: apt-get install mesa-vulkan-drivers libvulkan1)"
                            .into()
                    }
                },
            )
        })?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let features = adapter.features() & wgpu::Features::TIMESTAMP_QUERY;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("silica"),
            required_features: features,
            required_limits: limits.clone(),
            memory_hints: wgpu::MemoryHints::Performance,
            ..Default::default()
        }))
        .map_err(|e| Error::backend("wgpu", format!("{}: {e}", info.name)))?;
        let packed_dot =
            !opts.portable_dot && inst.wgsl_language_features().contains(wgpu::WgslLanguageFeatures::Packed4x8IntegerDotProduct);
        let pipelines = Pipelines::new(&device, packed_dot)?;
        let timestamps = features.contains(wgpu::Features::TIMESTAMP_QUERY).then(|| {
            device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("silica timing"),
                ty: wgpu::QueryType::Timestamp,
                count: TIMESTAMP_SLOTS,
            })
        });
        let adapter_max = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        let max_binding = opts.max_binding.map_or(adapter_max, |m| m.min(adapter_max)) / 256 * 256;
        let profile = match (&timestamps, std::env::var("SILICA_WGPU_PROFILE").as_deref()) {
            (Some(_), Ok("1")) => Some(Profile {
                queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("silica profile"),
                    ty: wgpu::QueryType::Timestamp,
                    count: PROFILE_SLOTS,
                }),
                totals: Mutex::new(HashMap::new()),
            }),
            _ => None,
        };
        Ok(Gpu {
            device,
            queue,
            info,
            limits,
            max_binding: max_binding.max(256),
            packed_dot,
            poison: opts.poison,
            chunk_rows: opts.chunk_rows.map(|r| (r / 64 * 64).max(64)),
            group_queries: opts.group_queries.map(|g| g.max(1)),
            pipelines,
            pool: Arc::new(Pool { free: Mutex::new((HashMap::new(), 0)) }),
            timestamps,
            timing: Mutex::new(None),
            profile,
        })
    }

    fn acquire(&self, usage: wgpu::BufferUsages, bytes: u64) -> Buf {
        let key = (usage.bits(), class(bytes));
        let reused = {
            let mut g = self.pool.free.lock().unwrap_or_else(|e| e.into_inner());
            let b = g.0.get_mut(&key).and_then(|v| v.pop());
            if b.is_some() {
                g.1 -= key.1;
            }
            b
        };
        let buf = reused.unwrap_or_else(|| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("silica pooled"),
                size: key.1,
                usage,
                mapped_at_creation: false,
            })
        });
        Buf { buf, len: bytes.max(4).next_multiple_of(4), home: Some((self.pool.clone(), key)) }
    }

    /// A pooled storage buffer of at least `bytes` (poisoned in test mode). Errors when
    /// it exceeds the largest binding.
    pub fn storage(&self, bytes: u64) -> Result<Buf> {
        if bytes > self.max_binding {
            return Err(Error::backend(
                "wgpu",
                format!(
                    "a {bytes}-byte working buffer exceeds this adapter's largest storage binding ({} bytes); use smaller batches or k",
                    self.max_binding
                ),
            ));
        }
        // INDIRECT too: a kernel may write another's dispatch size (scan.wgsl's `args`).
        let b = self.acquire(
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::INDIRECT,
            bytes,
        );
        if self.poison {
            let words = (b.len / 4) as usize;
            self.queue.write_buffer(&b.buf, 0, bytemuck::cast_slice(&vec![POISON; words]));
        }
        Ok(b)
    }

    /// A pooled storage buffer holding `data` (padded to at least 16 bytes).
    pub fn upload(&self, data: &[u8]) -> Result<Buf> {
        let b = self.storage(data.len().max(16) as u64)?;
        self.queue.write_buffer(&b.buf, 0, &padded(data));
        Ok(b)
    }

    /// A pooled uniform buffer holding `data`.
    pub fn uniform(&self, data: &[u8]) -> Result<Buf> {
        let b = self.acquire(wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST, data.len() as u64);
        self.queue.write_buffer(&b.buf, 0, data);
        Ok(b)
    }

    /// A dedicated (not pooled) storage buffer for index tensors, holding `data` (zero-padded
    /// to [`padded_len`]). Uploaded in [`UPLOAD_CHUNK`] pieces with at most two in flight, so
    /// a multi-GB (mapped) tensor costs two chunks of staging memory, not a copy of itself.
    pub fn resident(&self, label: &str, data: &[u8]) -> Result<Buf> {
        self.resident_in(label, data, UPLOAD_CHUNK)
    }

    /// [`Gpu::resident`] in pieces of `chunk` bytes (a multiple of 4).
    fn resident_in(&self, label: &str, data: &[u8], chunk: usize) -> Result<Buf> {
        debug_assert!(chunk > 0 && chunk.is_multiple_of(4));
        let len = padded_len(data.len());
        let b = self.dedicated(label, "uploading", len, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: len,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        // Whole chunks straight from `data`; the tail (< one chunk) padded by copy.
        let whole = data.len() / chunk * chunk;
        let mut tail = data[whole..].to_vec();
        tail.resize(len as usize - whole, 0);
        let has_tail = !tail.is_empty();
        let pieces = data[..whole].chunks(chunk).chain(has_tail.then_some(&tail[..]));
        for (i, piece) in pieces.enumerate() {
            self.queue.write_buffer(&b.buf, (i * chunk) as u64, piece);
            self.queue.submit(std::iter::empty());
            if i % 2 == 1 {
                self.device
                    .poll(wgpu::PollType::wait_indefinitely())
                    .map_err(|e| Error::backend("wgpu", format!("uploading {label}: device poll: {e}")))?;
            }
        }
        Ok(b)
    }

    /// An uninitialized resident buffer of `bytes` (STORAGE | COPY_SRC | COPY_DST), the
    /// target of a device-side copy (`silica serve` snapshots).
    pub fn resident_empty(&self, label: &str, bytes: u64) -> Result<Buf> {
        let size = padded_len(bytes as usize);
        self.dedicated(label, "allocating", size, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })
    }

    /// A dedicated buffer of `len` bytes made by `create`: within the largest binding, and
    /// out-of-memory reported as an error naming the tensor (`what`: the operation).
    fn dedicated(&self, label: &str, what: &str, len: u64, create: impl FnOnce() -> wgpu::Buffer) -> Result<Buf> {
        if len > self.max_binding {
            return Err(Error::backend("wgpu", format!("tensor {label} ({len} bytes) exceeds the largest binding {}", self.max_binding)));
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buf = create();
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::backend("wgpu", format!("{what} {label} ({len} bytes): {e}")));
        }
        Ok(Buf { buf, len, home: None })
    }

    /// Copy byte ranges `(view, offset, len)` of device buffers to the host (one
    /// submission, one wait). Offsets and lengths are multiples of 4.
    pub fn read(&self, parts: &[(&View, u64, u64)]) -> Result<Vec<Vec<u8>>> {
        let total: u64 = parts.iter().map(|p| p.2).sum();
        if total == 0 {
            return Ok(parts.iter().map(|_| Vec::new()).collect());
        }
        let staging = self.acquire(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST, total);
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("silica readback") });
        let mut off = 0;
        for (v, o, len) in parts {
            if *len > 0 {
                enc.copy_buffer_to_buffer(&v.buf, *o, &staging.buf, off, *len);
            }
            off += len;
        }
        self.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.buf.map_async(wgpu::MapMode::Read, 0..total, move |r| {
            let _ = tx.send(r);
        });
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::backend("wgpu", format!("device poll: {e}")))?;
        rx.recv()
            .map_err(|_| Error::backend("wgpu", "map callback dropped"))?
            .map_err(|e| Error::backend("wgpu", format!("mapping a readback buffer: {e}")))?;
        let out = {
            let data = staging.buf.get_mapped_range(0..total).map_err(|e| Error::backend("wgpu", format!("mapped range: {e}")))?;
            let mut out = Vec::with_capacity(parts.len());
            let mut off = 0usize;
            for p in parts {
                out.push(data[off..off + p.2 as usize].to_vec());
                off += p.2 as usize;
            }
            out
        };
        staging.buf.unmap();
        Ok(out)
    }

    /// While a timed call runs: two timestamp slots (start of the first pass, end of the
    /// last) for a submission, and the query set to write them to.
    pub fn timestamp_slots(&self) -> Option<(&wgpu::QuerySet, u32)> {
        if self.profile.is_some() {
            return None;
        }
        let qs = self.timestamps.as_ref()?;
        let mut t = self.timing.lock().unwrap_or_else(|e| e.into_inner());
        let used = t.as_mut()?;
        if *used + 2 > TIMESTAMP_SLOTS {
            return None;
        }
        *used += 2;
        Some((qs, *used - 2))
    }

    /// Run `f` with timestamps on every submission it makes; the device seconds from the
    /// start of its first pass to the end of its last (`None`: no timestamp support, a
    /// nested call, or no passes submitted).
    pub fn timed<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<(T, Option<f64>)> {
        let Some(qs) = &self.timestamps else { return Ok((f()?, None)) };
        {
            let mut t = self.timing.lock().unwrap_or_else(|e| e.into_inner());
            if t.is_some() {
                drop(t);
                return Ok((f()?, None));
            }
            *t = Some(0);
        }
        let r = f();
        let used = self.timing.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or(0);
        let v = r?;
        if used == 0 {
            return Ok((v, None));
        }
        let resolve = self.acquire(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC, used as u64 * 8);
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("silica timing") });
        enc.resolve_query_set(qs, 0..used, &resolve.buf, 0);
        self.queue.submit([enc.finish()]);
        let got = self.read(&[(&resolve.view(), 0, used as u64 * 8)])?;
        let ticks: Vec<u64> = got[0].chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
        let (first, last) = (ticks[0], ticks[used as usize - 1]);
        let secs = last.saturating_sub(first) as f64 * self.queue.get_timestamp_period() as f64 * 1e-9;
        Ok((v, Some(secs)))
    }

    /// Profile mode: add per-dispatch timestamps (pairs of slots, `labels[i]` for pair i)
    /// to the per-kernel totals. Waits for the device.
    pub fn record_profile(&self, labels: &[&'static str]) -> Result<()> {
        let Some(p) = &self.profile else { return Ok(()) };
        if labels.is_empty() {
            return Ok(());
        }
        let n = 2 * labels.len() as u32;
        let resolve = self.acquire(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC, n as u64 * 8);
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("silica profile") });
        enc.resolve_query_set(&p.queries, 0..n, &resolve.buf, 0);
        self.queue.submit([enc.finish()]);
        let got = self.read(&[(&resolve.view(), 0, n as u64 * 8)])?;
        let ticks: Vec<u64> = got[0].chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
        let period = self.queue.get_timestamp_period() as f64 * 1e-9;
        let mut t = p.totals.lock().unwrap_or_else(|e| e.into_inner());
        for (i, l) in labels.iter().enumerate() {
            let e = t.entry(l).or_insert((0, 0.0));
            e.0 += 1;
            e.1 += ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period;
        }
        Ok(())
    }

    /// Wait for all submitted work.
    pub fn wait(&self) -> Result<()> {
        self.device.poll(wgpu::PollType::wait_indefinitely()).map(|_| ()).map_err(|e| Error::backend("wgpu", format!("device poll: {e}")))
    }
}

/// Bytes a binding of `n` data bytes takes: at least 16, a multiple of 4.
/// Bytes per piece of a resident upload ([`Gpu::resident`]): a multiple of 4.
pub const UPLOAD_CHUNK: usize = 64 << 20;

fn padded_len(n: usize) -> u64 {
    n.max(16).next_multiple_of(4) as u64
}

/// `data` zero-padded to [`padded_len`] (borrowed when it already is).
fn padded(data: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let len = padded_len(data.len()) as usize;
    if len == data.len() {
        std::borrow::Cow::Borrowed(data)
    } else {
        let mut v = data.to_vec();
        v.resize(len, 0);
        std::borrow::Cow::Owned(v)
    }
}

/// Reinterpret little-endian bytes as u32 / f32.
pub fn u32s(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}
pub fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Chunked resident uploads hold exactly the data, zero-padded, at edge sizes: empty,
    /// under 16 bytes, not a multiple of 4, exact multiples of the chunk, and many chunks.
    #[test]
    fn chunked_resident_upload_round_trips() {
        let Ok(g) = Gpu::new(&WgpuOptions::default()) else {
            eprintln!("no wgpu adapter: skipped");
            return;
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for (len, chunk) in
            [(0usize, 64usize), (5, 64), (64, 64), (256, 64), (1001, 64), (4096 + 7, 256), (rng.random_range(10_000..40_000), 1024)]
        {
            let data: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let b = g.resident_in("test", &data, chunk).unwrap();
            let want_len = padded_len(len);
            assert_eq!(b.len, want_len);
            let got = g.read(&[(&b.view(), 0, want_len)]).unwrap().remove(0);
            assert_eq!(&got[..len], &data[..], "len {len} chunk {chunk}");
            assert!(got[len..].iter().all(|&x| x == 0), "padding of len {len}");
        }
    }
}
