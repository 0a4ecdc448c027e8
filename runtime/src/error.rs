//! Errors of the runtime crate.
//!
//! Owns the one error type every public function returns. It must never leak raw `tonic` types
//! in a way that forces callers to depend on tonic: callers match on the variants
//! ([`RuntimeError::NotFound`], [`RuntimeError::NotRunning`], ...) and print the rest.

use std::path::PathBuf;

/// Everything that can go wrong while talking to containerd or preparing its inputs.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The containerd socket does not answer (not started, wrong path, permission).
    #[error("containerd is not running at {}: {cause}", socket.display())]
    NotRunning {
        /// Socket that was tried.
        socket: PathBuf,
        /// Why the connection or the Version call failed.
        cause: String,
    },
    /// The named object (image, container, task, process, content) does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The object already exists (for example a container with the same id).
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// A containerd RPC failed.
    #[error("containerd {op} failed: {code:?}: {message}")]
    Grpc {
        /// The RPC, e.g. `Tasks.Create`.
        op: &'static str,
        /// gRPC status code.
        code: containerd_client::tonic::Code,
        /// Message from containerd.
        message: String,
    },
    /// An image archive is malformed or uses something this importer does not support.
    #[error("invalid image archive {}: {reason}", path.display())]
    InvalidArchive {
        /// The archive.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An image in the content store is malformed or unsupported (e.g. no linux manifest).
    #[error("invalid image {name}: {reason}")]
    InvalidImage {
        /// Image name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The requested container or exec spec cannot be honoured.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// A local file-system operation failed (FIFOs, log files, archives, mounts).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A deadline passed (e.g. waiting for a task to exit).
    #[error("timed out: {0}")]
    Timeout(String),
}

impl RuntimeError {
    /// Maps a gRPC status from the RPC `op` (about `what`) to an error, keeping NotFound and
    /// AlreadyExists distinguishable.
    pub(crate) fn grpc(
        op: &'static str,
        what: &str,
        status: containerd_client::tonic::Status,
    ) -> Self {
        use containerd_client::tonic::Code;
        match status.code() {
            Code::NotFound => {
                RuntimeError::NotFound(format!("{what} ({op}: {})", status.message()))
            }
            Code::AlreadyExists => {
                RuntimeError::AlreadyExists(format!("{what} ({op}: {})", status.message()))
            }
            code => RuntimeError::Grpc {
                op,
                code,
                message: format!("{what}: {}", status.message()),
            },
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        RuntimeError::Io {
            context: context.into(),
            source,
        }
    }

    /// True for [`RuntimeError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, RuntimeError::NotFound(_))
    }
}
