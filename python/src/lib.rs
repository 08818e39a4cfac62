//! `silica._silica`: the native half of the Python package (PyO3, abi3 for Python >= 3.10).
//!
//! The Python half (`python/silica/*.py`) turns numpy arrays, torch tensors, lists of dicts,
//! pandas and pyarrow tables into the plain inputs this module takes (contiguous f32 arrays,
//! JSON text) and gives the answers their shapes. Everything that decides anything (the
//! builder, the executor, filters, the serving store of `silica serve` for updates) is the
//! silica crate itself: nothing is re-implemented here.
//!
//! Errors become the typed exceptions of `silica._errors` (one class per [`silica::Error`]
//! variant, plus `UpdateError` for the server's update checks), with the CLI's messages and
//! the offending field in `.field`.

mod dlpack;
mod index;
mod view;

use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The exception of `silica._errors` for `e`, with its message and attributes.
pub(crate) fn error(e: silica::Error) -> PyErr {
    use silica::Error as E;
    let msg = e.to_string();
    let (class, attrs): (&str, Vec<(&str, String)>) = match &e {
        E::Io { path, .. } => ("SilicaIOError", vec![("path", path.display().to_string())]),
        E::Npy { path, .. } => ("FormatError", vec![("path", path.display().to_string())]),
        E::NonFinite { what, row, col, .. } => {
            ("NonFiniteError", vec![("field", what.clone()), ("row", row.to_string()), ("col", col.to_string())])
        }
        E::OutOfRange { what, row, col, .. } => {
            let mut a = vec![("field", what.clone()), ("row", row.to_string())];
            if let Some(c) = col {
                a.push(("col", c.to_string()));
            }
            ("OutOfRangeError", a)
        }
        E::Dimension { what, .. } => ("DimensionError", vec![("field", what.clone())]),
        // Attributes given as Python objects are parsed as JSON Lines named `attributes`:
        // name the list element (0-based) rather than a line of a file nobody wrote.
        E::Jsonl { path, line, reason } if path.as_os_str() == "attributes" => {
            return raise(
                "AttributesError",
                format!("attributes[{}]: {reason}", line - 1),
                &[("field", format!("attributes[{}]", line - 1)), ("row", (line - 1).to_string())],
            );
        }
        E::Jsonl { path, line, .. } => ("AttributesError", vec![("path", path.display().to_string()), ("row", (line - 1).to_string())]),
        E::CountMismatch { what, .. } => ("CountMismatchError", vec![("field", what.clone())]),
        E::Filter(f) => {
            let col = match f {
                silica::FilterError::Syntax { column, .. }
                | silica::FilterError::UnknownField { column, .. }
                | silica::FilterError::Type { column, .. } => *column,
            };
            ("FilterError", vec![("field", "filter".to_string()), ("column", col.to_string())])
        }
        E::Param { name, .. } => ("InvalidParameter", vec![("field", name.clone())]),
        E::Format { path, .. } => ("FormatError", vec![("path", path.display().to_string())]),
        E::WalCorrupt { path, .. } => ("WalCorruptError", vec![("path", path.display().to_string())]),
        E::Backend { backend, .. } => ("BackendError", vec![("backend", backend.clone())]),
    };
    raise(class, msg, &attrs)
}

/// An update refused by the server's checks (`items[2].vector[7]`, `id`, ...).
pub(crate) fn api_error(e: silica::serve::error::ApiError) -> PyErr {
    let class = if e.code == "not_found" { "ItemNotFound" } else { "UpdateError" };
    let mut attrs = vec![("code", e.code.to_string()), ("status", e.status.as_u16().to_string())];
    if let Some(f) = &e.field {
        attrs.push(("field", f.clone()));
    }
    let msg = match &e.field {
        Some(f) => format!("{f}: {}", e.message),
        None => e.message.clone(),
    };
    raise(class, msg, &attrs)
}

/// `silica._errors.<class>(msg)` with `attrs` set (numbers as ints).
pub(crate) fn raise(class: &str, msg: String, attrs: &[(&str, String)]) -> PyErr {
    Python::attach(|py| {
        let build = || -> PyResult<PyErr> {
            let cls = py.import("silica._errors")?.getattr(class)?;
            let kw = PyDict::new(py);
            for (k, v) in attrs {
                match v.parse::<i64>() {
                    Ok(n) if !matches!(*k, "field" | "path" | "code" | "backend") => kw.set_item(k, n)?,
                    _ => kw.set_item(k, v)?,
                }
            }
            let exc = cls.call((msg.clone(),), Some(&kw))?;
            Ok(PyErr::from_value(exc))
        };
        build().unwrap_or_else(|e| e)
    })
}

/// Logging: `RUST_LOG` when set; else warnings, and info during builds with `progress=True`
/// (the progress lines of a build whose stderr is not a terminal, e.g. Jupyter).
fn init_logging() {
    let explicit = std::env::var_os("RUST_LOG").is_some();
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).try_init();
    if !explicit {
        log::set_max_level(log::LevelFilter::Warn);
    }
    index::LOG_EXPLICIT.store(explicit, std::sync::atomic::Ordering::Relaxed);
}

#[pymodule]
fn _silica(m: &Bound<'_, PyModule>) -> PyResult<()> {
    init_logging();
    m.add_class::<index::Core>()?;
    m.add_function(wrap_pyfunction!(index::devices, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
