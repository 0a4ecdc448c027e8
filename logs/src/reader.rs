//! Reading one log directory: a one-shot [`read`] and a live [`follow`].
//!
//! Owns the reading side of the layout described in [`crate::rotate`]. Only `\n`-terminated,
//! well-formed records are returned; a torn or foreign line is skipped, a partial last line is left
//! for a later poll. It must never write, rename or delete anything in the directory.
//!
//! Following survives rotation without loss or duplicates by tracking file *identity* (device and
//! inode) rather than names: the follower keeps the file it is reading open, so a rename does not
//! disturb it. When `current.log` is no longer that file, the follower first reads its open file to
//! the end (the writer finishes a file before renaming it), then opens the next newer file by
//! identity, and so on until it reaches `current.log`. Lines are lost only if the follower falls more
//! than `max_files` rotations behind, since those files are deleted before it could open them.

use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::format::{parse_record, LogLine};
use crate::rotate::{list_log_files, log_file_path};
use crate::LogError;

/// Default polling interval of [`follow`].
pub const DEFAULT_FOLLOW_INTERVAL: Duration = Duration::from_millis(100);
/// Capacity of the channel returned by [`follow`]; the follower waits when it is full.
const FOLLOW_CHANNEL: usize = 4096;
/// Longest line considered a record (a 64 KiB message of control characters encodes to ~390 KiB).
const MAX_RECORD: usize = 4 << 20;
/// Read size while catching up on a file.
const READ_CHUNK: usize = 256 * 1024;

/// Which lines to return.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Only lines at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only the last `n` matching existing lines (`Some(0)`: none; with [`follow`], only new lines).
    pub tail: Option<usize>,
    /// Only lines whose message contains this string (case-sensitive substring match).
    pub filter: Option<String>,
}

impl ReadOptions {
    /// Whether `line` passes `since` and `filter`.
    pub fn matches(&self, line: &LogLine) -> bool {
        if let Some(since) = self.since {
            if line.time < since {
                return false;
            }
        }
        match &self.filter {
            Some(f) => line.message.contains(f.as_str()),
            None => true,
        }
    }
}

/// A process's (or an app system log's) log directory, for reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogReader {
    dir: PathBuf,
}

impl LogReader {
    /// A reader of `dir`. The directory need not exist yet.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LogReader { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// See [`read`].
    pub fn read(&self, opts: &ReadOptions) -> Result<Vec<LogLine>, LogError> {
        read(&self.dir, opts)
    }

    /// A synchronous follower, see [`Follower`].
    pub fn follower(&self, opts: ReadOptions) -> Follower {
        Follower::new(&self.dir, opts)
    }

    /// See [`follow`].
    pub fn follow(&self, opts: ReadOptions) -> Result<mpsc::Receiver<LogLine>, LogError> {
        follow(&self.dir, opts)
    }
}

/// Reads the matching lines of `dir` across its rotated files, oldest first. A missing directory has
/// no lines. `tail` is applied after `since` and `filter`. Rotated files whose modification time is
/// before `since` are not read, and with `tail` older files are read only while more lines are needed.
pub fn read(dir: &Path, opts: &ReadOptions) -> Result<Vec<LogLine>, LogError> {
    let files = open_snapshot(dir)?;
    let (lines, _) = read_snapshot(files, opts)?;
    Ok(lines)
}

/// Follows `dir`: the returned channel yields the existing lines selected by `opts`, then every new
/// matching line as it is appended, polling every [`DEFAULT_FOLLOW_INTERVAL`]. The directory may not
/// exist yet. Following stops when the receiver is dropped. Runs on its own thread, so no tokio
/// runtime is needed (use `blocking_recv` outside one).
pub fn follow(dir: &Path, opts: ReadOptions) -> Result<mpsc::Receiver<LogLine>, LogError> {
    follow_with(dir, opts, DEFAULT_FOLLOW_INTERVAL)
}

/// [`follow`] with an explicit polling interval.
pub fn follow_with(
    dir: &Path,
    opts: ReadOptions,
    interval: Duration,
) -> Result<mpsc::Receiver<LogLine>, LogError> {
    let (tx, rx) = mpsc::channel(FOLLOW_CHANNEL);
    let mut follower = Follower::new(dir, opts);
    std::thread::Builder::new()
        .name("dray-logs-follow".into())
        .spawn(move || loop {
            if tx.is_closed() {
                return;
            }
            // Errors are transient (a file vanishing mid-rotation, a directory not created yet):
            // try again next tick.
            let lines = follower.poll().unwrap_or_default();
            let got = !lines.is_empty();
            for line in lines {
                if tx.blocking_send(line).is_err() {
                    return;
                }
            }
            if !got {
                std::thread::sleep(interval);
            }
        })
        .map_err(|e| LogError::io("spawn follower for", dir, e))?;
    Ok(rx)
}

/// A file identity: (device, inode).
type FileId = (u64, u64);

fn file_id(m: &Metadata) -> FileId {
    (m.dev(), m.ino())
}

/// One open file and how far it has been consumed.
struct Cursor {
    file: File,
    id: FileId,
    path: PathBuf,
    mtime: Option<SystemTime>,
    /// Bytes read so far.
    offset: u64,
    /// Read bytes after the last `\n`.
    partial: Vec<u8>,
    /// The unfinished line exceeded [`MAX_RECORD`] and is being skipped up to its `\n`.
    oversized: bool,
}

impl Cursor {
    fn open(path: PathBuf) -> io::Result<Cursor> {
        let file = File::open(&path)?;
        let meta = file.metadata()?;
        Ok(Cursor {
            file,
            id: file_id(&meta),
            path,
            mtime: meta.modified().ok(),
            offset: 0,
            partial: Vec::new(),
            oversized: false,
        })
    }

    /// Reads everything appended since the last call and returns the complete records matching
    /// `opts` (since/filter only).
    fn read_new(&mut self, opts: &ReadOptions, out: &mut Vec<LogLine>) -> Result<(), LogError> {
        let len = self
            .file
            .metadata()
            .map_err(|e| LogError::io("stat", &self.path, e))?
            .len();
        if len < self.offset {
            // Truncated by someone else: start over.
            self.offset = 0;
            self.partial.clear();
            self.oversized = false;
        }
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = match self.file.read_at(&mut buf, self.offset) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LogError::io("read", &self.path, e)),
            };
            self.offset += n as u64;
            let mut rest = &buf[..n];
            if !self.partial.is_empty() {
                let Some(i) = memchr::memchr(b'\n', rest) else {
                    self.extend_partial(rest);
                    continue;
                };
                self.extend_partial(&rest[..i]);
                if !self.oversized {
                    push_parsed(&self.partial, opts, out);
                }
                self.partial.clear();
                self.oversized = false;
                rest = &rest[i + 1..];
            }
            match memchr::memrchr(b'\n', rest) {
                None => self.extend_partial(rest),
                Some(last) => {
                    for line in rest[..last].split(|&b| b == b'\n') {
                        push_parsed(line, opts, out);
                    }
                    self.extend_partial(&rest[last + 1..]);
                }
            }
        }
    }
}

impl Cursor {
    /// Buffers the start of an unfinished line, giving up on lines longer than any record can be.
    fn extend_partial(&mut self, bytes: &[u8]) {
        if self.oversized {
            return;
        }
        if self.partial.len() + bytes.len() > MAX_RECORD {
            self.partial.clear();
            self.oversized = true;
            return;
        }
        self.partial.extend_from_slice(bytes);
    }
}

fn push_parsed(line: &[u8], opts: &ReadOptions, out: &mut Vec<LogLine>) {
    if let Some(l) = parse_record(line) {
        if opts.matches(&l) {
            out.push(l);
        }
    }
}

/// Opens every log file of `dir`, newest first, skipping files that vanish meanwhile and files
/// already opened under another name (a rotation between two opens).
fn open_snapshot(dir: &Path) -> Result<Vec<Cursor>, LogError> {
    let mut files: Vec<Cursor> = Vec::new();
    for n in list_log_files(dir)? {
        let path = log_file_path(dir, n);
        match Cursor::open(path.clone()) {
            Ok(c) => {
                if !files.iter().any(|f| f.id == c.id) {
                    files.push(c);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::io("open", path, e)),
        }
    }
    Ok(files)
}

/// Reads a snapshot (newest first) per `opts`; returns the lines oldest first and the cursor of the
/// newest file, positioned at its end.
fn read_snapshot(
    files: Vec<Cursor>,
    opts: &ReadOptions,
) -> Result<(Vec<LogLine>, Option<Cursor>), LogError> {
    let mut chunks: Vec<Vec<LogLine>> = Vec::new();
    let mut count = 0usize;
    let mut newest = None;
    for (i, mut file) in files.into_iter().enumerate() {
        if i > 0 {
            if let Some(tail) = opts.tail {
                if count >= tail {
                    break;
                }
            }
            // Records are timestamped before they are written, so a file last modified before
            // `since` holds only older records, and so do all older files.
            if let (Some(since), Some(mtime)) = (opts.since, file.mtime) {
                if DateTime::<Utc>::from(mtime) < since {
                    break;
                }
            }
        }
        let mut lines = Vec::new();
        file.read_new(opts, &mut lines)?;
        count += lines.len();
        chunks.push(lines);
        if i == 0 {
            newest = Some(file);
        }
    }
    let mut lines: Vec<LogLine> = chunks.into_iter().rev().flatten().collect();
    if let Some(tail) = opts.tail {
        if lines.len() > tail {
            lines.drain(..lines.len() - tail);
        }
    }
    Ok((lines, newest))
}

/// A synchronous, pollable follower of one directory (what [`follow`] runs on its thread). The first
/// [`Follower::poll`] returns the existing lines selected by the options; every later call returns
/// the lines appended since, across rotations.
pub struct Follower {
    dir: PathBuf,
    opts: ReadOptions,
    started: bool,
    cur: Option<Cursor>,
}

impl Follower {
    /// A follower of `dir` (which need not exist yet).
    pub fn new(dir: impl Into<PathBuf>, opts: ReadOptions) -> Self {
        Follower {
            dir: dir.into(),
            opts,
            started: false,
            cur: None,
        }
    }

    /// Returns the lines that appeared since the previous call (on the first call: the existing lines
    /// selected by `since`/`tail`/`filter`).
    pub fn poll(&mut self) -> Result<Vec<LogLine>, LogError> {
        let mut out = Vec::new();
        if !self.started {
            let files = open_snapshot(&self.dir)?;
            let (lines, newest) = read_snapshot(files, &self.opts)?;
            out = lines;
            self.cur = newest;
            self.started = true;
        }
        let Some(cur) = self.cur.as_mut() else {
            // Nothing existed yet, so everything that exists now is new (no `tail`), including
            // files the writer may already have rotated.
            let opts = ReadOptions {
                tail: None,
                ..self.opts.clone()
            };
            let (lines, newest) = read_snapshot(open_snapshot(&self.dir)?, &opts)?;
            out.extend(lines);
            self.cur = newest;
            return self.poll_cur(out);
        };
        cur.read_new(&self.opts, &mut out)?;
        self.poll_cur(out)
    }

    /// Reads the current file and moves through rotated files up to `current.log`.
    fn poll_cur(&mut self, mut out: Vec<LogLine>) -> Result<Vec<LogLine>, LogError> {
        // Each iteration moves to a strictly newer file; the bound only guards against a writer
        // rotating faster than we can open files.
        for _ in 0..64 {
            let Some(cur) = self.cur.as_mut() else {
                return Ok(out);
            };
            cur.read_new(&self.opts, &mut out)?;
            let current = log_file_path(&self.dir, 0);
            match fs::metadata(&current) {
                Ok(m) if file_id(&m) == cur.id => return Ok(out),
                Ok(_) => {}
                // Mid-rotation (renamed, not yet recreated) or directory removed: look for newer
                // rotated files below, else wait.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io("stat", current, e)),
            }
            // Our file is no longer current.log, and the writer finished it before the rename:
            // read it to the end.
            cur.read_new(&self.opts, &mut out)?;
            let cur_id = cur.id;
            let Some((n, id)) = next_newer(&self.dir, cur_id)? else {
                return Ok(out);
            };
            match Cursor::open(log_file_path(&self.dir, n)) {
                Ok(c) if c.id == id => {
                    // Any partial line of the old file was torn; it is dropped with the cursor.
                    self.cur = Some(c);
                }
                // Renamed again between the listing and the open: list again.
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io("open", log_file_path(&self.dir, n), e)),
            }
        }
        Ok(out)
    }
}

/// The file (number, identity) that comes right after `id` in age order: the oldest file newer than
/// `id`, or the oldest file of all when `id` is gone (deleted by rotation).
fn next_newer(dir: &Path, id: FileId) -> Result<Option<(usize, FileId)>, LogError> {
    // Ascending numbers = newest first.
    let mut ids = Vec::new();
    for n in list_log_files(dir)? {
        match fs::metadata(log_file_path(dir, n)) {
            Ok(m) => ids.push((n, file_id(&m))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::io("stat", log_file_path(dir, n), e)),
        }
    }
    Ok(match ids.iter().position(|&(_, i)| i == id) {
        Some(0) => None,
        Some(pos) => Some(ids[pos - 1]),
        None => ids.last().copied(),
    })
}
