//! Errors of the `dray-logs` crate.
//!
//! Owns the single error type returned by every fallible public function. It must never carry
//! log *content* (messages are app data); only paths, operations and OS errors.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while writing or reading log files.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The logger's arguments (the `binary://` URI query, passed as argv pairs) are invalid.
    #[error("invalid logger arguments: {0}")]
    InvalidArgs(String),

    /// A file descriptor the shim must hand to the logger (3 = stdout, 4 = stderr, 5 = ready)
    /// is not open in this process.
    #[error(
        "file descriptor {fd} is not open: the logger must be started by the containerd shim \
         (binary:// stdio URI) with fd 3 = stdout, fd 4 = stderr, fd 5 = ready pipe"
    )]
    MissingFd {
        /// The missing descriptor number.
        fd: i32,
    },

    /// A filesystem or pipe operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`"open"`, `"rename"`, `"read"`, ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl LogError {
    /// Builds an [`LogError::Io`] for `op` on `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        LogError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
