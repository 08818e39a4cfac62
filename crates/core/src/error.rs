//! Typed errors. Every entry point validates its input and returns one of these,
//! naming the offending field, line or column; nothing is half-written on error.

use std::path::PathBuf;

/// Result alias used across silica.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in silica, each variant naming what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// I/O failure on a named path.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A `.npy` file that is truncated, not npy, or of an unsupported dtype/layout.
    #[error("{path}: invalid .npy file: {reason}")]
    Npy { path: PathBuf, reason: String },

    /// A vector contains NaN or ±Inf.
    #[error("{what}: row {row}, column {col} is not finite ({value})")]
    NonFinite { what: String, row: usize, col: usize, value: f32 },

    /// A finite vector that silica cannot store or score in finite arithmetic (a value
    /// beyond f16, a sum of squares beyond f32); `col` is `None` when the whole row is at fault.
    #[error("{what}: row {row}{}: {reason}", col.map(|c| format!(", column {c}")).unwrap_or_default())]
    OutOfRange { what: String, row: usize, col: Option<usize>, reason: String },

    /// A tensor's dimension disagrees with the index.
    #[error("{what}: dimension {got} does not match the index dimension {expected}")]
    Dimension { what: String, expected: usize, got: usize },

    /// Malformed JSON Lines input (1-based line number).
    #[error("{path}:{line}: {reason}")]
    Jsonl { path: PathBuf, line: usize, reason: String },

    /// Two inputs disagree in length (e.g. attributes vs vectors).
    #[error("{what}: {left_name} has {left} rows but {right_name} has {right}")]
    CountMismatch { what: String, left_name: String, left: usize, right_name: String, right: usize },

    /// A filter that does not parse or names an unknown field.
    #[error(transparent)]
    Filter(#[from] crate::filter::FilterError),

    /// A request parameter out of range (k = 0, nprobe > nlist, ...).
    #[error("invalid parameter `{name}`: {reason}")]
    Param { name: String, reason: String },

    /// A broken or incompatible index artifact.
    #[error("index artifact {path}: {reason}")]
    Format { path: PathBuf, reason: String },

    /// A write-ahead log damaged before its final record: replaying only the records
    /// before `offset` would silently drop the `after` intact records behind it.
    #[error(
        "write-ahead log {path}: damaged record at byte offset {offset}, followed by {after} intact records \
         ({before} records before it); refusing to start, since replaying would drop acknowledged updates. \
         Restore the log from a backup, or restart with --wal-recover to move it aside (to {path}.damaged-{offset}) \
         and start from the {before} records before the damage"
    )]
    WalCorrupt { path: PathBuf, offset: u64, before: usize, after: usize },

    /// A backend (device) failure or an unavailable device.
    #[error("backend {backend}: {reason}")]
    Backend { backend: String, reason: String },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    pub fn param(name: &str, reason: impl Into<String>) -> Self {
        Error::Param { name: name.to_string(), reason: reason.into() }
    }
    pub fn backend(backend: &str, reason: impl Into<String>) -> Self {
        Error::Backend { backend: backend.to_string(), reason: reason.into() }
    }
}
