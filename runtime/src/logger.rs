//! The containerd shim's `binary://` logger protocol, for programs that act as a logger
//! (drayd's logger mode, the test logger).
//!
//! Protocol as implemented by containerd 1.6 (`pkg/process/io.go` `NewBinaryIO`,
//! `pkg/process/utils.go` `NewBinaryCmd`) and verified here with `runtime/tests/logger.rs`:
//! - The task's stdout (and stderr) URI is `binary:///abs/path/to/logger?k1=v1&k2=v2`
//!   (see [`crate::binary_log_uri`]). The shim takes the scheme from the *stdout* URI.
//! - The shim (not containerd, not the agent) starts `path` once per task with argv
//!   `k1 v1 k2 v2` built from the query. Go iterates the query as a map, so **pair order is
//!   random**; parse them as pairs ([`LoggerIo::args`]). Only the first value of a key is used.
//! - Environment: **only** `CONTAINER_ID=<id>` and `CONTAINER_NAMESPACE=<ns>` (no PATH, HOME).
//!   stdin/stdout/stderr of the logger are /dev/null; its cwd is the shim's (the bundle dir).
//! - fd 3: read end of the container's stdout pipe; fd 4: read end of its stderr pipe (kept
//!   separate); fd 5: write end of a "ready" pipe. `Tasks.Create` blocks until the logger
//!   closes fd 5 (or writes to it), so close it as soon as the logger can read.
//! - EOF on fd 3/4 comes when the shim closes the process's IO (task delete); then the shim
//!   sends SIGTERM and SIGKILLs the logger 12 s later if it has not exited.
//! - The logger belongs to the shim: it keeps running (and logging) while containerd or the
//!   agent restart.
//!
//! Must never: be called twice in one process (it takes ownership of fds 3-5).

use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

pub use crate::container::binary_log_uri;

/// What the shim hands a `binary://` logger.
#[derive(Debug)]
pub struct LoggerIo {
    /// `CONTAINER_ID`.
    pub container_id: String,
    /// `CONTAINER_NAMESPACE`.
    pub namespace: String,
    /// The URI's query as `(key, value)` pairs (order not preserved by the shim).
    pub args: Vec<(String, String)>,
    /// The container's stdout (fd 3).
    pub stdout: File,
    /// The container's stderr (fd 4).
    pub stderr: File,
    ready: Option<File>,
}

static TAKEN: AtomicBool = AtomicBool::new(false);

fn fd_is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD on any integer is harmless.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

impl LoggerIo {
    /// Takes fds 3, 4, 5, the env and argv (`std::env::args`) of a logger started by the shim.
    pub fn from_env() -> std::io::Result<LoggerIo> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        Self::from_parts(&args)
    }

    /// Like [`LoggerIo::from_env`] with explicit argv (without the program name).
    pub fn from_parts(argv: &[String]) -> std::io::Result<LoggerIo> {
        let err = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, m.to_string());
        let container_id = std::env::var("CONTAINER_ID")
            .map_err(|_| err("CONTAINER_ID is not set: not started by a containerd shim"))?;
        let namespace = std::env::var("CONTAINER_NAMESPACE").unwrap_or_default();
        if !(fd_is_open(3) && fd_is_open(4) && fd_is_open(5)) {
            return Err(err(
                "fds 3, 4 and 5 are not all open: not started by a containerd shim",
            ));
        }
        if TAKEN.swap(true, Ordering::SeqCst) {
            return Err(err("the logger fds were already taken"));
        }
        // SAFETY: fds 3-5 are open (checked), were passed to us by the shim for exactly this
        // purpose, and TAKEN guarantees they are wrapped only once in this process.
        let (stdout, stderr, ready) = unsafe {
            (
                File::from(OwnedFd::from_raw_fd(3)),
                File::from(OwnedFd::from_raw_fd(4)),
                File::from(OwnedFd::from_raw_fd(5)),
            )
        };
        Ok(LoggerIo {
            container_id,
            namespace,
            args: argv
                .chunks(2)
                .map(|c| (c[0].clone(), c.get(1).cloned().unwrap_or_default()))
                .collect(),
            stdout,
            stderr,
            ready: Some(ready),
        })
    }

    /// The value of query key `key`.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Tells the shim the logger is ready (closes fd 5); `Tasks.Create` returns after this.
    pub fn ready(&mut self) {
        self.ready.take();
    }
}
