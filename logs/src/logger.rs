//! The logger process: `drayd` (or `dray-logger`) started by the containerd shim through a
//! `binary://` stdio URI, one process per container task.
//!
//! Owns reading the container's stdout/stderr pipes (fd 3 and fd 4), signalling readiness (fd 5),
//! splitting into lines, timestamping, and appending records to the process's rotated files
//! (see the crate docs for the verified shim protocol). It must never block the container: whatever
//! happens to the disk, the pipes keep being drained until EOF (lines that cannot be written are
//! counted and reported in a `system` record once writing works again). It must never talk to the
//! agent, containerd or the network, and never exit before both pipes reach EOF unless the shim sends
//! SIGTERM.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::format::{encode_record, format_time, Stream};
use crate::rotate::{RotatingFile, Rotation};
use crate::LogError;

/// The query key (and so the argv word) that marks a `drayd` invocation as logger mode. Its value is
/// the record format version, currently `1`. See [`is_logger_invocation`].
pub const LOGGER_ARG: &str = "dray-logger";
/// Default maximum length of one line in bytes; longer lines are split into several records.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;
/// Smallest accepted `max-line`.
const MIN_MAX_LINE: usize = 16;
/// Largest accepted `max-line` (readers give up on records over 4 MiB; 512 KiB of control
/// characters encodes to about 3 MiB).
const MAX_MAX_LINE: u64 = 512 * 1024;
/// How much is read from one pipe at a time.
const READ_CHUNK: usize = 64 * 1024;
/// After a disk error, how long to drop lines before trying to open the file again.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// After SIGTERM, the longest time spent draining what is already in the pipes (the shim SIGKILLs
/// after 12 s).
const TERM_DRAIN_LIMIT: Duration = Duration::from_secs(5);
/// The shim's descriptors.
const STDOUT_FD: i32 = 3;
const STDERR_FD: i32 = 4;
const READY_FD: i32 = 5;

/// Configuration of one logger process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggerConfig {
    /// The process's log directory (created if missing).
    pub dir: PathBuf,
    /// Rotation limits.
    pub rotation: Rotation,
    /// Maximum bytes per record message; longer lines are split (at a UTF-8 boundary when possible).
    pub max_line: usize,
    /// `CONTAINER_ID` from the shim's environment, if any.
    pub container_id: Option<String>,
    /// `CONTAINER_NAMESPACE` from the shim's environment, if any.
    pub namespace: Option<String>,
    /// Problems found while parsing that did not prevent logging (unknown keys, ...); the logger
    /// writes each one as a `system` record when it starts.
    pub warnings: Vec<String>,
}

impl LoggerConfig {
    /// A configuration with default limits for `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LoggerConfig {
            dir: dir.into(),
            rotation: Rotation::default(),
            max_line: DEFAULT_MAX_LINE,
            container_id: None,
            namespace: None,
            warnings: Vec::new(),
        }
    }

    /// Parses the logger's argv (without the program name) and environment as the containerd shim
    /// passes them.
    ///
    /// The shim turns `binary:///path/drayd?k1=v1&k2=v2` into `argv = [/path/drayd, k1, v1, k2, v2]`
    /// in **unspecified order** (a Go map iteration), every key followed by its first value (empty for
    /// `?k`), values already percent-decoded, and sets the environment to just `CONTAINER_ID` and
    /// `CONTAINER_NAMESPACE`. Keys:
    ///
    /// * `dir` (required): the log directory;
    /// * `max-size`: bytes per file, plain or with a `k`/`m`/`g` suffix (×1024), default 10 MiB;
    /// * `max-files` (or `max-file`): files kept including `current.log`, default 10;
    /// * `max-line`: bytes per record message, default 64 KiB, clamped to 16 B ..= 512 KiB;
    /// * [`LOGGER_ARG`]: the logger-mode marker, ignored here.
    ///
    /// Unknown keys are kept as [`LoggerConfig::warnings`] rather than rejected, so an older logger
    /// binary still logs with a newer URI.
    pub fn from_args<A, S, E, K, V>(args: A, env: E) -> Result<Self, LogError>
    where
        A: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
        E: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        if !args.len().is_multiple_of(2) {
            return Err(LogError::InvalidArgs(format!(
                "expected key/value pairs, got {} arguments",
                args.len()
            )));
        }
        let mut dir = None;
        let mut config = LoggerConfig::new(PathBuf::new());
        for pair in args.chunks(2) {
            let (key, value) = (&pair[0], &pair[1]);
            let Some(key) = key.to_str() else {
                config
                    .warnings
                    .push(format!("ignored non-UTF-8 argument {key:?}"));
                continue;
            };
            let text = || {
                value.to_str().ok_or_else(|| {
                    LogError::InvalidArgs(format!("{key}: value is not UTF-8: {value:?}"))
                })
            };
            match key {
                "dir" => {
                    if value.is_empty() {
                        return Err(LogError::InvalidArgs("dir is empty".into()));
                    }
                    dir = Some(PathBuf::from(value));
                }
                "max-size" => config.rotation.max_size = parse_size(key, text()?)?.max(1),
                "max-files" | "max-file" => {
                    config.rotation.max_files = parse_size(key, text()?)?.clamp(1, 10_000) as usize
                }
                "max-line" => {
                    config.max_line =
                        (parse_size(key, text()?)?.min(MAX_MAX_LINE) as usize).max(MIN_MAX_LINE)
                }
                LOGGER_ARG => {}
                other => config
                    .warnings
                    .push(format!("ignored unknown logger argument {other:?}")),
            }
        }
        config.dir = dir.ok_or_else(|| {
            LogError::InvalidArgs("missing dir (binary:// URI query key `dir`)".into())
        })?;
        for (k, v) in env {
            match k.as_ref().to_str() {
                Some("CONTAINER_ID") => {
                    config.container_id = Some(v.as_ref().to_string_lossy().into_owned())
                }
                Some("CONTAINER_NAMESPACE") => {
                    config.namespace = Some(v.as_ref().to_string_lossy().into_owned())
                }
                _ => {}
            }
        }
        Ok(config)
    }

    /// The stdio URI to give containerd (`Tasks.Create` `stdout` and `stderr`, both the same URI) so
    /// that the shim starts `exe` as this logger, e.g.
    /// `binary:///usr/bin/drayd?dray-logger=1&dir=%2Fvar%2Flib%2Fdray%2Flogs%2Fapp%2Fweb-1&max-size=10485760&max-files=10&max-line=65536`.
    /// Path and values are percent-encoded; the shim decodes them before exec.
    pub fn to_uri(&self, exe: &Path) -> String {
        let mut uri = String::from("binary://");
        percent_encode(&mut uri, exe.as_os_str().as_bytes(), true);
        uri.push('?');
        uri.push_str(LOGGER_ARG);
        uri.push_str("=1&dir=");
        percent_encode(&mut uri, self.dir.as_os_str().as_bytes(), false);
        uri.push_str(&format!(
            "&max-size={}&max-files={}&max-line={}",
            self.rotation.max_size, self.rotation.max_files, self.max_line
        ));
        uri
    }
}

/// Whether argv (without the program name) is a logger invocation, i.e. one of its keys (even
/// positions: the shim passes key/value pairs in unspecified order) is [`LOGGER_ARG`]. `drayd`
/// checks this before its normal argument parsing.
pub fn is_logger_invocation<S: AsRef<OsStr>>(args: &[S]) -> bool {
    args.len().is_multiple_of(2) && args.chunks(2).any(|pair| pair[0].as_ref() == LOGGER_ARG)
}

fn parse_size(key: &str, value: &str) -> Result<u64, LogError> {
    let v = value.trim();
    let (digits, mult) = match v.as_bytes().last().map(u8::to_ascii_lowercase) {
        Some(b'k') => (&v[..v.len() - 1], 1u64 << 10),
        Some(b'm') => (&v[..v.len() - 1], 1 << 20),
        Some(b'g') => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| LogError::InvalidArgs(format!("{key}: not a size: {value:?}")))
}

fn percent_encode(out: &mut String, bytes: &[u8], keep_slash: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        }
    }
}

/// Counters of one logger run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoggerStats {
    /// Records written (lines and pieces of split lines, plus the logger's own notices).
    pub lines: u64,
    /// Bytes written to the files.
    pub bytes: u64,
    /// Records dropped because the files could not be written.
    pub dropped: u64,
    /// Disk errors seen (open, write, rotate).
    pub errors: u64,
}

/// Runs the logger as the containerd shim starts it: takes ownership of fd 3 (stdout reader), fd 4
/// (stderr reader) and fd 5 (ready pipe), installs a SIGTERM handler, signals ready once the log file
/// is open (or has failed to open: the container must not wait on a broken disk), and returns when
/// both pipes reach EOF, or shortly after SIGTERM once what is already buffered in the pipes has been
/// written.
///
/// Errors only before ready: when fd 3, 4 or 5 is not open (not started by a shim).
pub fn run_logger(config: LoggerConfig) -> Result<(), LogError> {
    let (stdout, stderr, ready) = take_shim_fds()?;
    install_sigterm_handler();
    run_logger_with(config, stdout, stderr, Some(ready)).map(|_| ())
}

/// The whole logger-mode `main`: parses argv/environment ([`LoggerConfig::from_args`]) and runs
/// [`run_logger`]. If the arguments are invalid it still signals ready and drains the pipes
/// (discarding), because a logger that exits early would leave the container writing into a pipe
/// nobody reads. Returns the process exit code. `drayd` does:
///
/// ```no_run
/// let args: Vec<_> = std::env::args_os().skip(1).collect();
/// if dray_logs::is_logger_invocation(&args) {
///     std::process::exit(dray_logs::logger_main());
/// }
/// ```
pub fn logger_main() -> i32 {
    match LoggerConfig::from_args(std::env::args_os().skip(1), std::env::vars_os()) {
        Ok(config) => match run_logger(config) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("dray logger: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("dray logger: {e}; discarding output");
            match take_shim_fds() {
                Ok((stdout, stderr, ready)) => {
                    install_sigterm_handler();
                    signal_ready(ready);
                    pump([stdout, stderr], &mut Discard);
                    2
                }
                Err(e) => {
                    eprintln!("dray logger: {e}");
                    1
                }
            }
        }
    }
}

/// Runs the logger on explicit descriptors (tests, benchmarks, in-process use). `ready`, if given,
/// gets one `0` byte and is closed once the log file is open. Returns when both `stdout` and `stderr`
/// reach EOF (or after SIGTERM if [`run_logger`] installed the handler in this process).
pub fn run_logger_with(
    config: LoggerConfig,
    stdout: File,
    stderr: File,
    ready: Option<File>,
) -> Result<LoggerStats, LogError> {
    let mut sink = Sink::new(&config);
    let now = Utc::now();
    for w in &config.warnings {
        sink.push_line(Stream::System, now, format!("dray-logs: {w}").as_bytes());
    }
    sink.flush();
    if let Some(ready) = ready {
        signal_ready(ready);
    }
    let mut handler = Splitting {
        splitters: [
            Splitter::new(Stream::Stdout, config.max_line),
            Splitter::new(Stream::Stderr, config.max_line),
        ],
        sink,
    };
    pump([stdout, stderr], &mut handler);
    let Splitting {
        mut splitters,
        mut sink,
    } = handler;
    for s in &mut splitters {
        s.finish(&mut sink);
    }
    sink.flush();
    Ok(sink.stats)
}

fn take_shim_fds() -> Result<(File, File, File), LogError> {
    for fd in [STDOUT_FD, STDERR_FD, READY_FD] {
        // SAFETY: F_GETFD only queries the descriptor flags; it touches no memory.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            return Err(LogError::MissingFd { fd });
        }
    }
    // SAFETY: fds 3, 4 and 5 are the shim's `cmd.ExtraFiles` (stdout read end, stderr read end, ready
    // write end), inherited across exec and checked open above. Nothing else in this process owns
    // them: logger mode is entered before anything else opens files, so taking ownership (and
    // closing them on drop) is sound. Called at most once per process.
    unsafe {
        Ok((
            File::from_raw_fd(STDOUT_FD),
            File::from_raw_fd(STDERR_FD),
            File::from_raw_fd(READY_FD),
        ))
    }
}

/// Ready = one byte then close, as containerd's own Go helper does
/// (`runtime/v2/logging/logging_unix.go`); the shim accepts the byte or EOF.
fn signal_ready(mut ready: File) {
    // Errors are ignored: if the shim is gone there is nobody to tell.
    let _ = ready.write_all(&[0]);
    drop(ready);
}

static TERM: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigterm(_: libc::c_int) {
    TERM.store(true, Ordering::SeqCst);
}

fn install_sigterm_handler() {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the handler only stores to
    // an atomic, which is async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigterm as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
    }
}

/// What the pump does with the bytes.
trait Handler {
    fn data(&mut self, stream: usize, bytes: &[u8], now: DateTime<Utc>);
    fn eof(&mut self, stream: usize);
    fn round_done(&mut self);
}

/// Reads both pipes until both reach EOF (or SIGTERM + drained), one chunk per readable pipe per
/// round, calling `round_done` after each round.
fn pump(files: [File; 2], handler: &mut dyn Handler) {
    let mut files = files.map(Some);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut term_since: Option<Instant> = None;
    loop {
        if files.iter().all(Option::is_none) {
            return;
        }
        if term_since.is_none() && TERM.load(Ordering::SeqCst) {
            term_since = Some(Instant::now());
        }
        if let Some(t) = term_since {
            if t.elapsed() > TERM_DRAIN_LIMIT {
                return;
            }
        }
        let mut fds = [0, 1].map(|i| libc::pollfd {
            fd: files[i].as_ref().map_or(-1, |f| f.as_raw_fd()),
            events: libc::POLLIN,
            revents: 0,
        });
        let timeout = if term_since.is_some() { 0 } else { 1000 };
        // SAFETY: `fds` is a valid array of 2 pollfd for the duration of the call.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                // EAGAIN/ENOMEM are transient; nothing else is expected with valid fds.
                std::thread::sleep(Duration::from_millis(10));
            }
            continue;
        }
        if rc == 0 {
            if term_since.is_some() {
                return;
            }
            continue;
        }
        for i in 0..2 {
            let revents = fds[i].revents;
            if revents == 0 {
                continue;
            }
            let Some(file) = files[i].as_mut() else {
                continue;
            };
            if revents & libc::POLLNVAL != 0 {
                files[i] = None;
                handler.eof(i);
                continue;
            }
            match file.read(&mut buf) {
                Ok(0) => {
                    files[i] = None;
                    handler.eof(i);
                }
                Ok(n) => handler.data(i, &buf[..n], Utc::now()),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                    ) => {}
                Err(_) => {
                    files[i] = None;
                    handler.eof(i);
                }
            }
        }
        handler.round_done();
    }
}

/// Drain-only handler used when the arguments are unusable.
struct Discard;

impl Handler for Discard {
    fn data(&mut self, _: usize, _: &[u8], _: DateTime<Utc>) {}
    fn eof(&mut self, _: usize) {}
    fn round_done(&mut self) {}
}

struct Splitting {
    splitters: [Splitter; 2],
    sink: Sink,
}

impl Handler for Splitting {
    fn data(&mut self, stream: usize, bytes: &[u8], now: DateTime<Utc>) {
        self.splitters[stream].push(bytes, now, &mut self.sink);
    }
    fn eof(&mut self, stream: usize) {
        self.splitters[stream].finish(&mut self.sink);
    }
    fn round_done(&mut self) {
        self.sink.flush();
    }
}

/// Cuts one stream into lines of at most `max_line` bytes.
struct Splitter {
    stream: Stream,
    max_line: usize,
    pending: Vec<u8>,
    /// When the first byte of `pending` was read.
    pending_time: Option<DateTime<Utc>>,
}

impl Splitter {
    fn new(stream: Stream, max_line: usize) -> Self {
        Splitter {
            stream,
            max_line: max_line.clamp(MIN_MAX_LINE, MAX_MAX_LINE as usize),
            pending: Vec::new(),
            pending_time: None,
        }
    }

    fn push(&mut self, mut data: &[u8], now: DateTime<Utc>, sink: &mut Sink) {
        while !data.is_empty() {
            if self.pending.is_empty() {
                self.pending_time = Some(now);
            }
            match memchr::memchr(b'\n', data) {
                Some(i) => {
                    let line = &data[..i];
                    if self.pending.is_empty() && line.len() <= self.max_line {
                        sink.push_line(self.stream, now, line);
                    } else {
                        self.pending.extend_from_slice(line);
                        self.emit_full(sink, now);
                        let t = self.pending_time.take().unwrap_or(now);
                        sink.push_line(self.stream, t, &self.pending);
                        self.pending.clear();
                    }
                    data = &data[i + 1..];
                }
                None => {
                    self.pending.extend_from_slice(data);
                    self.emit_full(sink, now);
                    data = &[];
                }
            }
        }
    }

    /// Emits max_line-sized pieces while more than max_line bytes are pending.
    fn emit_full(&mut self, sink: &mut Sink, now: DateTime<Utc>) {
        let t = self.pending_time.unwrap_or(now);
        let mut start = 0;
        while self.pending.len() - start > self.max_line {
            let cut = start + utf8_cut(&self.pending[start..], self.max_line);
            sink.push_line(self.stream, t, &self.pending[start..cut]);
            start = cut;
        }
        if start > 0 {
            self.pending.drain(..start);
        }
    }

    /// EOF: the partial last line (no trailing newline) becomes a record.
    fn finish(&mut self, sink: &mut Sink) {
        if self.pending.is_empty() {
            return;
        }
        let now = Utc::now();
        self.emit_full(sink, now);
        let t = self.pending_time.take().unwrap_or(now);
        sink.push_line(self.stream, t, &self.pending);
        self.pending.clear();
    }
}

/// Where to cut `b` (longer than `max`) so that a UTF-8 sequence is not split, if it can be done by
/// backing up at most 3 bytes; otherwise exactly `max`.
fn utf8_cut(b: &[u8], max: usize) -> usize {
    let mut cut = max;
    for _ in 0..3 {
        if cut > 0 && b[cut] & 0xC0 == 0x80 {
            cut -= 1;
        } else {
            break;
        }
    }
    if cut == 0 {
        max
    } else {
        cut
    }
}

/// Batches records per read round and appends them, surviving disk errors.
struct Sink {
    dir: PathBuf,
    rotation: Rotation,
    file: Option<RotatingFile>,
    batch: Vec<u8>,
    batch_records: u64,
    /// While `file` is `None`: no reopen before this instant.
    retry_at: Option<Instant>,
    /// After a failed rotation: no rotation before this instant.
    rotate_after: Option<Instant>,
    unreported_drops: u64,
    last_error: Option<String>,
    cache_time: Option<DateTime<Utc>>,
    cache_str: String,
    stats: LoggerStats,
}

impl Sink {
    fn new(config: &LoggerConfig) -> Self {
        let mut sink = Sink {
            dir: config.dir.clone(),
            rotation: config.rotation,
            file: None,
            batch: Vec::with_capacity(2 * READ_CHUNK),
            batch_records: 0,
            retry_at: None,
            rotate_after: None,
            unreported_drops: 0,
            last_error: None,
            cache_time: None,
            cache_str: String::new(),
            stats: LoggerStats::default(),
        };
        sink.reopen();
        sink
    }

    fn reopen(&mut self) -> bool {
        match RotatingFile::open(&self.dir, self.rotation) {
            Ok(f) => {
                self.file = Some(f);
                self.retry_at = None;
                true
            }
            Err(e) => {
                self.fail(e);
                false
            }
        }
    }

    fn fail(&mut self, e: LogError) {
        self.last_error = Some(e.to_string());
        self.file = None;
        self.retry_at = Some(Instant::now() + RETRY_INTERVAL);
        self.stats.errors += 1;
    }

    fn retry_due(&self) -> bool {
        self.retry_at.is_none_or(|t| Instant::now() >= t)
    }

    fn drop_records(&mut self, n: u64) {
        self.unreported_drops += n;
        self.stats.dropped += n;
    }

    fn push_line(&mut self, stream: Stream, time: DateTime<Utc>, msg: &[u8]) {
        if self.file.is_none() && !self.retry_due() {
            self.drop_records(1);
            return;
        }
        if self.cache_time != Some(time) {
            self.cache_str = format_time(time);
            self.cache_time = Some(time);
        }
        let before = self.batch.len();
        encode_record(&mut self.batch, &self.cache_str, stream, msg);
        let rec_len = (self.batch.len() - before) as u64;
        if let Some(f) = &self.file {
            let at = f.size() + before as u64;
            let rotation_allowed = self.rotate_after.is_none_or(|t| Instant::now() >= t);
            if at > 0 && at + rec_len > f.rotation().max_size && rotation_allowed {
                let record = self.batch.split_off(before);
                self.flush();
                if let Some(f) = self.file.as_mut() {
                    if let Err(e) = f.rotate() {
                        self.fail(e);
                        // Reopen at once (appending to current.log); retry rotating later.
                        self.retry_at = None;
                        self.rotate_after = Some(Instant::now() + RETRY_INTERVAL);
                    }
                }
                self.batch = record;
            }
        }
        self.batch_records += 1;
    }

    /// Writes the batch. Called once per read round, so readers see lines without delay.
    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let records = std::mem::take(&mut self.batch_records);
        if self.file.is_none() && !(self.retry_due() && self.reopen()) {
            self.drop_records(records);
            self.batch.clear();
            return;
        }
        let Some(file) = self.file.as_mut() else {
            self.drop_records(records);
            self.batch.clear();
            return;
        };
        if self.unreported_drops > 0 {
            let mut notice = Vec::new();
            let msg = format!(
                "dray-logs: dropped {} lines: {}",
                self.unreported_drops,
                self.last_error.as_deref().unwrap_or("unknown error")
            );
            encode_record(
                &mut notice,
                &format_time(Utc::now()),
                Stream::System,
                msg.as_bytes(),
            );
            match file.write_all(&notice) {
                Ok(()) => {
                    self.unreported_drops = 0;
                    self.stats.lines += 1;
                    self.stats.bytes += notice.len() as u64;
                }
                Err(e) => {
                    self.fail(e);
                    self.drop_records(records);
                    self.batch.clear();
                    return;
                }
            }
        }
        match file.write_all(&self.batch) {
            Ok(()) => {
                self.stats.lines += records;
                self.stats.bytes += self.batch.len() as u64;
            }
            Err(e) => {
                self.fail(e);
                self.drop_records(records);
            }
        }
        self.batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_in_any_order() {
        let env = [
            ("CONTAINER_ID", "c1"),
            ("CONTAINER_NAMESPACE", "dray"),
            ("PATH", "/bin"),
        ];
        let a = LoggerConfig::from_args(
            [
                "max-files",
                "3",
                "dray-logger",
                "1",
                "dir",
                "/var/lib/dray/logs/a/p",
                "max-size",
                "64k",
            ],
            env,
        )
        .expect("parse");
        assert_eq!(a.dir, PathBuf::from("/var/lib/dray/logs/a/p"));
        assert_eq!(
            a.rotation,
            Rotation {
                max_size: 65536,
                max_files: 3
            }
        );
        assert_eq!(a.max_line, DEFAULT_MAX_LINE);
        assert_eq!(a.container_id.as_deref(), Some("c1"));
        assert_eq!(a.namespace.as_deref(), Some("dray"));
        assert!(a.warnings.is_empty());

        let b = LoggerConfig::from_args(["dir", "/d", "bogus", ""], env).expect("parse");
        assert_eq!(b.rotation, Rotation::default());
        assert_eq!(b.warnings.len(), 1);

        assert!(LoggerConfig::from_args(["dir"], env).is_err());
        assert!(LoggerConfig::from_args(["max-size", "1"], env).is_err());
        assert!(LoggerConfig::from_args(["dir", "/d", "max-size", "ten"], env).is_err());
        assert!(is_logger_invocation(&["dir", "/d", "dray-logger", "1"]));
        assert!(!is_logger_invocation(&["dir", "dray-logger"]));
        assert!(!is_logger_invocation(&["logs", "-a", "x"]));
    }

    #[test]
    fn uri_round_trip() {
        let mut c = LoggerConfig::new("/var/lib/dray/logs/my app/web&1=2%");
        c.rotation.max_files = 4;
        let uri = c.to_uri(Path::new("/usr/bin/drayd"));
        assert_eq!(
            uri,
            "binary:///usr/bin/drayd?dray-logger=1&dir=%2Fvar%2Flib%2Fdray%2Flogs%2Fmy%20app%2Fweb%261%3D2%25\
             &max-size=10485760&max-files=4&max-line=65536"
        );
    }

    #[test]
    fn utf8_cuts() {
        let s = "aé".as_bytes(); // 61 c3 a9
        assert_eq!(utf8_cut(s, 2), 1);
        assert_eq!(utf8_cut(b"abcd", 2), 2);
        assert_eq!(utf8_cut(&[0x80, 0x80, 0x80, 0x80, 0x80], 3), 3);
    }
}
