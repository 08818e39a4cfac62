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
        /// The file or directory the operation was on.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A `.npy` file that is truncated, not npy, or of an unsupported dtype/layout.
    #[error("{path}: invalid .npy file: {reason}")]
    Npy {
        /// The `.npy` file.
        path: PathBuf,
        /// What is wrong with it (header, dtype, layout, length).
        reason: String,
    },

    /// A vector contains NaN or ±Inf.
    #[error("{what}: row {row}, column {col} is not finite ({value})")]
    NonFinite {
        /// Which input (e.g. `vectors`, `queries`).
        what: String,
        /// 0-based row of the offending value.
        row: usize,
        /// 0-based column of the offending value.
        col: usize,
        /// The value itself (NaN, inf or -inf).
        value: f32,
    },

    /// A finite vector that silica cannot store or score in finite arithmetic (a value
    /// beyond f16, a sum of squares beyond f32); `col` is `None` when the whole row is at fault.
    #[error("{what}: row {row}{}: {reason}", col.map(|c| format!(", column {c}")).unwrap_or_default())]
    OutOfRange {
        /// Which input (e.g. `vectors`, `queries`).
        what: String,
        /// 0-based row at fault.
        row: usize,
        /// 0-based column at fault, or `None` for the whole row.
        col: Option<usize>,
        /// Which limit the value exceeds.
        reason: String,
    },

    /// A tensor's dimension disagrees with the index.
    #[error("{what}: dimension {got} does not match the index dimension {expected}")]
    Dimension {
        /// Which input (e.g. `queries`, `vectors`).
        what: String,
        /// The index dimension D.
        expected: usize,
        /// The dimension of the input.
        got: usize,
    },

    /// Malformed JSON Lines input (1-based line number).
    #[error("{path}:{line}: {reason}")]
    Jsonl {
        /// The JSON Lines file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong on that line.
        reason: String,
    },

    /// Two inputs disagree in length (e.g. attributes vs vectors).
    #[error("{what}: {left_name} has {left} rows but {right_name} has {right}")]
    CountMismatch {
        /// The operation that found the mismatch.
        what: String,
        /// Name of the first input.
        left_name: String,
        /// Row count of the first input.
        left: usize,
        /// Name of the second input.
        right_name: String,
        /// Row count of the second input.
        right: usize,
    },

    /// A filter that does not parse or names an unknown field.
    #[error(transparent)]
    Filter(#[from] crate::filter::FilterError),

    /// A request parameter out of range (k = 0, nprobe > nlist, ...).
    #[error("invalid parameter `{name}`: {reason}")]
    Param {
        /// The parameter's name as the user spells it (e.g. `k`, `nprobe`).
        name: String,
        /// Why the value is rejected.
        reason: String,
    },

    /// A broken or incompatible index artifact.
    #[error("index artifact {path}: {reason}")]
    Format {
        /// The artifact file (or the name given to in-memory bytes).
        path: PathBuf,
        /// What is broken or incompatible.
        reason: String,
    },

    /// A write-ahead log damaged before its final record: replaying only the records
    /// before `offset` would silently drop the `after` intact records behind it.
    #[error(
        "write-ahead log {path}: damaged record at byte offset {offset}, followed by {after} intact records \
         ({before} records before it); refusing to start, since replaying would drop acknowledged updates. \
         Restore the log from a backup, or restart with --wal-recover to move it aside (to {path}.damaged-{offset}) \
         and start from the {before} records before the damage"
    )]
    WalCorrupt {
        /// The log file.
        path: PathBuf,
        /// Byte offset of the damaged record.
        offset: u64,
        /// Intact records before the damage.
        before: usize,
        /// Intact records after the damage.
        after: usize,
    },

    /// A backend (device) failure or an unavailable device.
    #[error("backend {backend}: {reason}")]
    Backend {
        /// The backend's name (`cpu`, `wgpu`, `cuda`, ...).
        backend: String,
        /// What failed.
        reason: String,
    },
}

impl Error {
    /// An [`Error::Io`] on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    /// An [`Error::Param`] naming parameter `name`.
    pub fn param(name: &str, reason: impl Into<String>) -> Self {
        Error::Param { name: name.to_string(), reason: reason.into() }
    }
    /// An [`Error::Backend`] from backend `backend`.
    pub fn backend(backend: &str, reason: impl Into<String>) -> Self {
        Error::Backend { backend: backend.to_string(), reason: reason.into() }
    }
}
