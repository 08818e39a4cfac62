//! DLPack (v0, `DLManagedTensor` in a capsule named `dltensor`): reading a producer's
//! query tensor in place, and exporting the device results of a CUDA search as capsules
//! that `torch.from_dlpack` (or any consumer) takes without a copy.
//!
//! Input capsules are borrowed, not consumed: the caller keeps the capsule (and with it
//! the tensor) alive for the search, and the producer's own capsule destructor frees it.
//! Output capsules own one reference to the [`DeviceResults`]; their deleter drops it,
//! which frees the device buffer behind the consumer stream's work.

use crate::error;
use pyo3::ffi;
use pyo3::prelude::*;
use silica::Error;
use std::ffi::{CStr, c_char, c_void};

const NAME: &CStr = c"dltensor";
/// `DLDeviceType`.
pub const KDL_CPU: i32 = 1;
pub const KDL_CUDA: i32 = 2;
pub const KDL_CUDA_HOST: i32 = 3;
pub const KDL_CUDA_MANAGED: i32 = 13;
/// `DLDataTypeCode`.
const KDL_INT: u8 = 0;
const KDL_FLOAT: u8 = 2;
const KDL_BFLOAT: u8 = 4;

#[repr(C)]
#[derive(Clone, Copy)]
struct DLDevice {
    device_type: i32,
    device_id: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct DLDataType {
    code: u8,
    bits: u8,
    lanes: u16,
}

#[repr(C)]
struct DLTensor {
    data: *mut c_void,
    device: DLDevice,
    ndim: i32,
    dtype: DLDataType,
    shape: *mut i64,
    strides: *mut i64,
    byte_offset: u64,
}

#[repr(C)]
struct DLManagedTensor {
    dl_tensor: DLTensor,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DLManagedTensor)>,
}

/// Element type of a query tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    F32,
    F16,
    BF16,
}

/// A validated `[rows, dim]` C-contiguous float tensor described by a DLPack capsule.
#[derive(Clone, Copy, Debug)]
pub struct View {
    /// Address of element `[0, 0]` (data + byte_offset).
    pub ptr: u64,
    pub rows: usize,
    pub dim: usize,
    pub elem: Elem,
    /// `DLDeviceType` and id.
    pub device_type: i32,
    pub device_id: i32,
}

fn bad(msg: impl Into<String>) -> PyErr {
    error(Error::param("queries", msg))
}

/// The tensor in `capsule` (an unconsumed `dltensor` capsule), checked: 1-D `[D]` (one
/// query) or 2-D `[B, D]`; f32, f16 or bf16, one lane; C-contiguous (strides absent or
/// row-major; a dimension of extent 1 may have any stride).
///
/// # Errors
/// `InvalidParameter` (field `queries`) for a capsule that is not an unconsumed DLPack
/// tensor, another dtype, or non-contiguous strides; `DimensionError` for other ranks.
pub fn view(capsule: &Bound<'_, PyAny>) -> PyResult<View> {
    // SAFETY: PyCapsule_IsValid accepts any object; the pointer is a DLManagedTensor by the
    // DLPack protocol for a capsule of this name, alive while the capsule is.
    let t = unsafe {
        if ffi::PyCapsule_IsValid(capsule.as_ptr(), NAME.as_ptr()) != 1 {
            return Err(bad("expected a DLPack capsule named \"dltensor\" (from __dlpack__(), not yet consumed)"));
        }
        let m = ffi::PyCapsule_GetPointer(capsule.as_ptr(), NAME.as_ptr()) as *const DLManagedTensor;
        if m.is_null() {
            return Err(PyErr::fetch(capsule.py()));
        }
        &(*m).dl_tensor
    };
    let dt = t.dtype;
    let elem = match (dt.code, dt.bits, dt.lanes) {
        (KDL_FLOAT, 32, 1) => Elem::F32,
        (KDL_FLOAT, 16, 1) => Elem::F16,
        (KDL_BFLOAT, 16, 1) => Elem::BF16,
        (code, bits, lanes) => {
            let kind = match code {
                KDL_INT => "int",
                1 => "uint",
                KDL_FLOAT => "float",
                KDL_BFLOAT => "bfloat",
                5 => "complex",
                6 => "bool",
                _ => "an unknown type",
            };
            let lanes = if lanes == 1 { String::new() } else { format!(" x{lanes}") };
            return Err(bad(format!("expected float32, float16 or bfloat16 elements, got {kind}{bits}{lanes} (convert with .float())")));
        }
    };
    if !(1..=2).contains(&t.ndim) {
        return Err(crate::raise(
            "DimensionError",
            format!("queries: expected a 2-D tensor [B, D] (or one query [D]), got {} dimensions", t.ndim),
            &[("field", "queries".to_string())],
        ));
    }
    // SAFETY: shape holds ndim entries, strides ndim entries or null (DLPack).
    let shape: Vec<i64> = unsafe { std::slice::from_raw_parts(t.shape, t.ndim as usize).to_vec() };
    let strides: Option<Vec<i64>> =
        (!t.strides.is_null()).then(|| unsafe { std::slice::from_raw_parts(t.strides, t.ndim as usize).to_vec() });
    if shape.iter().any(|&s| s < 0) {
        return Err(bad(format!("negative extent in shape {shape:?}")));
    }
    let (rows, dim) = if t.ndim == 1 { (1, shape[0] as usize) } else { (shape[0] as usize, shape[1] as usize) };
    // An empty tensor's strides mean nothing (producers write 0 or anything).
    if let Some(st) = strides.as_ref().filter(|_| rows * dim > 0) {
        // Element strides of a row-major [rows, dim] tensor; extents of 1 do not move.
        let want: Vec<i64> = if t.ndim == 1 { vec![1] } else { vec![dim as i64, 1] };
        let ok = shape.iter().zip(st).zip(&want).all(|((&n, &s), &w)| n <= 1 || s == w);
        if !ok {
            return Err(bad(format!("must be C-contiguous (shape {shape:?}, strides {st:?} in elements); call .contiguous() first")));
        }
    }
    if t.data.is_null() && rows * dim > 0 {
        return Err(bad("null data pointer"));
    }
    Ok(View { ptr: t.data as u64 + t.byte_offset, rows, dim, elem, device_type: t.device.device_type, device_id: t.device.device_id })
}

/// The host rows of a CPU view as f32 (f16 / bf16 converted exactly).
///
/// # Safety
/// `v` describes live host memory (a kDLCPU / kDLCUDAHost tensor whose capsule is alive).
pub unsafe fn host_f32(v: &View) -> Vec<f32> {
    let n = v.rows * v.dim;
    if n == 0 {
        return Vec::new();
    }
    unsafe {
        match v.elem {
            Elem::F32 => std::slice::from_raw_parts(v.ptr as *const f32, n).to_vec(),
            Elem::F16 => std::slice::from_raw_parts(v.ptr as *const u16, n).iter().map(|&b| half::f16::from_bits(b).to_f32()).collect(),
            Elem::BF16 => std::slice::from_raw_parts(v.ptr as *const u16, n).iter().map(|&b| f32::from_bits((b as u32) << 16)).collect(),
        }
    }
}

/// Owner of an exported tensor: the results (shared by both capsules) and the shape.
struct Owner {
    _keep: std::sync::Arc<dyn Send + Sync>,
    shape: [i64; 2],
}

unsafe extern "C" fn deleter(m: *mut DLManagedTensor) {
    if m.is_null() {
        return;
    }
    // SAFETY: `m` and its context were made by `export` with Box::into_raw.
    unsafe {
        drop(Box::from_raw((*m).manager_ctx as *mut Owner));
        drop(Box::from_raw(m));
    }
}

/// Frees the tensor of a capsule nobody consumed (a consumer renames it `used_dltensor`
/// and calls the deleter itself).
unsafe extern "C" fn capsule_destructor(cap: *mut ffi::PyObject) {
    // SAFETY: called by Python with the capsule; only an unconsumed one is ours to free.
    unsafe {
        if ffi::PyCapsule_IsValid(cap, NAME.as_ptr()) == 1 {
            let m = ffi::PyCapsule_GetPointer(cap, NAME.as_ptr()) as *mut DLManagedTensor;
            if let Some(d) = m.as_ref().and_then(|m| m.deleter) {
                d(m);
            }
        } else {
            ffi::PyErr_Clear();
        }
    }
}

/// A `dltensor` capsule for the `[rows, cols]` row-major tensor at device address `ptr`
/// (`code`/`bits`: its DLPack dtype) on CUDA device `device`, kept alive by `keep`.
#[allow(clippy::too_many_arguments)]
pub fn export<'py>(
    py: Python<'py>,
    keep: std::sync::Arc<dyn Send + Sync>,
    ptr: u64,
    rows: usize,
    cols: usize,
    float: bool,
    bits: u8,
    device: i32,
) -> PyResult<Bound<'py, PyAny>> {
    let owner = Box::into_raw(Box::new(Owner { _keep: keep, shape: [rows as i64, cols as i64] }));
    // SAFETY: `owner` is a fresh box; `shape` lives as long as the managed tensor.
    let m = Box::into_raw(Box::new(DLManagedTensor {
        dl_tensor: DLTensor {
            data: ptr as *mut c_void,
            device: DLDevice { device_type: KDL_CUDA, device_id: device },
            ndim: 2,
            dtype: DLDataType { code: if float { KDL_FLOAT } else { KDL_INT }, bits, lanes: 1 },
            shape: unsafe { (*owner).shape.as_mut_ptr() },
            strides: std::ptr::null_mut(),
            byte_offset: 0,
        },
        manager_ctx: owner as *mut c_void,
        deleter: Some(deleter),
    }));
    // SAFETY: the capsule takes `m`; its destructor frees it unless a consumer does.
    unsafe {
        let cap = ffi::PyCapsule_New(m as *mut c_void, NAME.as_ptr() as *const c_char, Some(capsule_destructor));
        if cap.is_null() {
            deleter(m);
            return Err(PyErr::fetch(py));
        }
        Ok(Bound::from_owned_ptr(py, cap))
    }
}
