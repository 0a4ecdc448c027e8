//! Per-process log files of Dray.
//!
//! This crate owns the log files and nothing else: it must never talk to containerd, the agent's API
//! or the network. Process output never flows through the agent: the containerd shim hands the
//! container's stdout/stderr pipes to a logger process (`drayd` in logger mode, see
//! [`logger_main`]), which appends them to rotated files; the agent only reads those files
//! ([`read`], [`follow`], [`merge_follow`]) and appends platform events to a per-app system log
//! ([`append_system`]). So no line is lost while the agent is down or restarting.
//!
//! # The containerd `binary://` logger protocol (containerd 1.6, runc shim v2)
//!
//! Verified in containerd's source (`pkg/process/io.go` `NewBinaryIO` and `binaryIO`,
//! `pkg/process/utils.go` `NewBinaryCmd`, `runtime/v2/logging/logging_unix.go` `Run`, as used by
//! `containerd-shim-runc-v2`) and against containerd 1.6.20 on Debian 12 with
//! `ctr run --log-uri 'binary:///…/dray-logger?…'` (argv, environment and descriptors dumped by a
//! wrapper script, then the real logger: rotation, stderr separation, partial last line):
//!
//! * `Tasks.Create` with `stdout`/`stderr` = `binary:///abs/path?k1=v1&k2=v2` makes the shim create
//!   two pipes (stdout, stderr) and a third "ready" pipe, and start `/abs/path` with
//!   `cmd.ExtraFiles = [stdout read end, stderr read end, ready write end]`, i.e. **fd 3 = stdout,
//!   fd 4 = stderr, fd 5 = ready**. Stdin is not given to the logger; the logger's own
//!   stdin/stdout/stderr are `/dev/null`.
//! * **argv** is `[/abs/path, k1, v1, k2, v2, …]`: for each query key, the key then its *first*
//!   value (`""` for `?k`), percent-decoded, in **unspecified order** (Go map iteration over
//!   `url.Query()`). Hence [`LoggerConfig::from_args`] parses pairs in any order and
//!   [`is_logger_invocation`] looks for the [`LOGGER_ARG`] key among the pairs.
//! * **environment**: `cmd.Env = append(cmd.Env, "CONTAINER_ID=…", "CONTAINER_NAMESPACE=…")` on an
//!   empty `cmd.Env`, so the logger gets *only* those two variables (no `PATH`, no `HOME`).
//! * **ready**: the shim closes its copy of the ready pipe's write end and blocks in a 1-byte `Read`
//!   of the read end; a byte *or* EOF means ready (any other read error fails the task create).
//!   containerd's Go helper writes one `0` byte and closes; so does [`run_logger`], after the log
//!   file is open (or has failed to open: the container must not wait on a broken disk). Note that a
//!   logger that exits before being ready also unblocks the shim (EOF), and the container then
//!   writes into pipes nobody drains; [`logger_main`] therefore drains even on bad arguments.
//! * **lifetime and shutdown**: the shim keeps its own copies of the pipes' write ends, so the logger
//!   sees EOF only when the task is *deleted*, not when the container exits (observed: after
//!   `ctr task kill` the logger keeps running until `ctr task delete`). On delete the shim closes
//!   the pipes, sends `SIGTERM`, waits up to 12 s (`binaryIOProcTermTimeout`) and then `SIGKILL`s.
//!   The logger exits on EOF of both pipes, or on `SIGTERM` after writing what is already buffered
//!   (at most 5 s). One logger per task: a restarted process (a new task) gets a new logger, which
//!   appends to the same directory only if given the same `dir`.
//! * containerd 2.x additionally turns query keys prefixed `env.` into environment variables; Dray's
//!   keys never use that prefix.
//!
//! `scripts/containerd-e2e.sh` in this crate repeats the check against a private containerd.
//!
//! # Files
//!
//! A log directory (one per process, e.g. `/var/lib/dray/logs/<app>/<process-id>/`, and one per app
//! for system events) holds `current.log`, `current.log.1`, … (see [`rotate`]), each a sequence of
//! JSON records, one per line (see [`mod@format`]):
//!
//! ```text
//! {"t":"2026-01-15T14:30:00.123456789Z","s":"stdout","m":"GET / 200"}
//! ```
//!
//! `dray logs` renders a line as `2026-01-15T14:30:00Z service/web/web-zyxwv GET / 200`
//! ([`LogLine::to_convox`]).

pub mod error;
pub mod format;
pub mod logger;
pub mod merge;
pub mod reader;
pub mod rotate;
pub mod system;

pub use error::LogError;
pub use format::{format_time, parse_record, LogLine, Stream};
pub use logger::{
    is_logger_invocation, logger_main, run_logger, run_logger_with, LoggerConfig, LoggerStats,
    DEFAULT_MAX_LINE, LOGGER_ARG,
};
pub use merge::{merge_follow, merge_sorted, DEFAULT_MERGE_WINDOW};
pub use reader::{
    follow, follow_with, read, Follower, LogReader, ReadOptions, DEFAULT_FOLLOW_INTERVAL,
};
pub use rotate::{
    list_log_files, log_file_path, Rotation, CURRENT_FILE, DEFAULT_MAX_FILES, DEFAULT_MAX_SIZE,
};
pub use system::{append_system, append_system_with};
