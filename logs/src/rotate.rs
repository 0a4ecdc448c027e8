//! File layout and rotation of one log directory.
//!
//! Owns the naming scheme and the rename-based rotation:
//!
//! ```text
//! <dir>/current.log       newest records, the only file ever appended to
//! <dir>/current.log.1     the previous current.log
//! ...
//! <dir>/current.log.N     oldest kept file, N = max_files - 1
//! ```
//!
//! `max_files` counts every file, `current.log` included. A file is rotated *before* a record that
//! would make it exceed `max_size`, so files hold whole records and stay at or under `max_size`
//! (unless a single record is larger). Rotation renames `.N-1 → .N` … `.1 → .2`, `current.log → .1`
//! (each rename atomically replaces the target, which drops the oldest file) and then creates a new
//! `current.log`. Every byte is written before the rename that moves its file away, which is what
//! lets followers finish a rotated file through their open descriptor (see [`crate::reader`]).
//!
//! Exactly one writer per directory at a time (one logger per process directory, the agent alone for
//! a system directory). This module must never read records or interpret their content.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::LogError;

/// Name of the file being appended to.
pub const CURRENT_FILE: &str = "current.log";
/// Default maximum size of one file: 10 MB.
pub const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024;
/// Default number of files kept, `current.log` included.
pub const DEFAULT_MAX_FILES: usize = 10;

/// Rotation limits of one log directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Maximum size in bytes of one file (at least 1).
    pub max_size: u64,
    /// Maximum number of files, `current.log` included (at least 1; 1 means "truncate on rotation").
    pub max_files: usize,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_size: DEFAULT_MAX_SIZE,
            max_files: DEFAULT_MAX_FILES,
        }
    }
}

/// Path of file number `n` in `dir`: 0 is `current.log`, `n > 0` is `current.log.<n>`.
pub fn log_file_path(dir: &Path, n: usize) -> PathBuf {
    if n == 0 {
        dir.join(CURRENT_FILE)
    } else {
        dir.join(format!("{CURRENT_FILE}.{n}"))
    }
}

/// Parses a file name of the layout: `current.log` → 0, `current.log.<n>` → n.
pub(crate) fn parse_file_name(name: &str) -> Option<usize> {
    if name == CURRENT_FILE {
        return Some(0);
    }
    let rest = name.strip_prefix(CURRENT_FILE)?.strip_prefix('.')?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) || rest.starts_with('0') {
        return None;
    }
    rest.parse().ok()
}

/// The numbers of the log files present in `dir`, newest first (0 = `current.log` first).
/// A missing directory has no files.
pub fn list_log_files(dir: &Path) -> Result<Vec<usize>, LogError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LogError::io("read directory", dir, e)),
    };
    let mut nums = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io("read directory", dir, e))?;
        if let Some(n) = entry.file_name().to_str().and_then(parse_file_name) {
            nums.push(n);
        }
    }
    nums.sort_unstable();
    Ok(nums)
}

/// The append end of a log directory: `current.log` open for appending, plus its size.
#[derive(Debug)]
pub(crate) struct RotatingFile {
    dir: PathBuf,
    rotation: Rotation,
    file: File,
    size: u64,
}

impl RotatingFile {
    /// Creates `dir` if needed, opens `current.log` for appending, removes files beyond
    /// `max_files` (left by an earlier, larger setting) and, if the file ends with a torn record
    /// (a crash mid-write), appends a `\n` so the next record starts on its own line.
    pub(crate) fn open(dir: &Path, rotation: Rotation) -> Result<Self, LogError> {
        let rotation = Rotation {
            max_size: rotation.max_size.max(1),
            max_files: rotation.max_files.max(1),
        };
        fs::create_dir_all(dir).map_err(|e| LogError::io("create directory", dir, e))?;
        let path = log_file_path(dir, 0);
        let file = open_append(&path)?;
        let mut size = file
            .metadata()
            .map_err(|e| LogError::io("stat", &path, e))?
            .len();
        if size > 0 {
            let mut last = [0u8; 1];
            file.read_exact_at(&mut last, size - 1)
                .map_err(|e| LogError::io("read", &path, e))?;
            if last[0] != b'\n' {
                (&file)
                    .write_all(b"\n")
                    .map_err(|e| LogError::io("write", &path, e))?;
                size += 1;
            }
        }
        for n in list_log_files(dir)? {
            if n >= rotation.max_files {
                let p = log_file_path(dir, n);
                if let Err(e) = fs::remove_file(&p) {
                    if e.kind() != io::ErrorKind::NotFound {
                        return Err(LogError::io("remove", p, e));
                    }
                }
            }
        }
        Ok(RotatingFile {
            dir: dir.to_path_buf(),
            rotation,
            file,
            size,
        })
    }

    /// Bytes in `current.log` as far as this writer knows.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The effective limits.
    pub(crate) fn rotation(&self) -> Rotation {
        self.rotation
    }

    /// Whether appending `incoming` more bytes needs a rotation first.
    pub(crate) fn needs_rotation(&self, incoming: u64) -> bool {
        self.size > 0 && self.size.saturating_add(incoming) > self.rotation.max_size
    }

    /// Appends `buf` (whole records). On error some prefix of `buf` may have been written; the
    /// caller should drop this writer and [`RotatingFile::open`] again, which repairs a torn tail.
    pub(crate) fn write_all(&mut self, buf: &[u8]) -> Result<(), LogError> {
        let mut written = 0;
        while written < buf.len() {
            match (&self.file).write(&buf[written..]) {
                Ok(0) => {
                    self.size += written as u64;
                    return Err(LogError::io(
                        "write",
                        log_file_path(&self.dir, 0),
                        io::Error::new(io::ErrorKind::WriteZero, "wrote 0 bytes"),
                    ));
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.size += written as u64;
                    return Err(LogError::io("write", log_file_path(&self.dir, 0), e));
                }
            }
        }
        self.size += buf.len() as u64;
        Ok(())
    }

    /// Rotates by rename and opens a fresh `current.log`. On error the writer should be dropped
    /// and re-opened (it may still point at the old file).
    pub(crate) fn rotate(&mut self) -> Result<(), LogError> {
        let current = log_file_path(&self.dir, 0);
        if self.rotation.max_files <= 1 {
            fs::remove_file(&current).map_err(|e| LogError::io("remove", &current, e))?;
        } else {
            for n in (1..self.rotation.max_files - 1).rev() {
                let from = log_file_path(&self.dir, n);
                let to = log_file_path(&self.dir, n + 1);
                match fs::rename(&from, &to) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(LogError::io("rename", from, e)),
                }
            }
            let to = log_file_path(&self.dir, 1);
            fs::rename(&current, &to).map_err(|e| LogError::io("rename", &current, e))?;
        }
        self.file = open_append(&current)?;
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| LogError::io("open", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse_file_name("current.log"), Some(0));
        assert_eq!(parse_file_name("current.log.1"), Some(1));
        assert_eq!(parse_file_name("current.log.12"), Some(12));
        assert_eq!(parse_file_name("current.log.01"), None);
        assert_eq!(parse_file_name("current.log."), None);
        assert_eq!(parse_file_name("current.log.x"), None);
        assert_eq!(parse_file_name("other.log"), None);
        assert_eq!(
            log_file_path(Path::new("/d"), 3),
            PathBuf::from("/d/current.log.3")
        );
    }

    #[test]
    fn rotation_keeps_max_files_and_repairs_torn_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("current.log"), b"{\"torn").expect("write");
        fs::write(dir.path().join("current.log.7"), b"stale\n").expect("write");
        let rot = Rotation {
            max_size: 10,
            max_files: 3,
        };
        let mut f = RotatingFile::open(dir.path(), rot).expect("open");
        assert_eq!(f.size(), 7);
        assert!(!dir.path().join("current.log.7").exists());
        for i in 0..5 {
            if f.needs_rotation(6) {
                f.rotate().expect("rotate");
            }
            f.write_all(format!("line{i}\n").as_bytes()).expect("write");
        }
        assert_eq!(list_log_files(dir.path()).expect("list"), vec![0, 1, 2]);
        assert_eq!(
            fs::read_to_string(dir.path().join("current.log")).expect("read"),
            "line4\n"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("current.log.2")).expect("read"),
            "line2\n"
        );
        let mut one = RotatingFile::open(
            dir.path(),
            Rotation {
                max_size: 10,
                max_files: 1,
            },
        )
        .expect("open");
        assert_eq!(list_log_files(dir.path()).expect("list"), vec![0]);
        one.rotate().expect("rotate");
        assert_eq!(one.size(), 0);
        assert_eq!(list_log_files(dir.path()).expect("list"), vec![0]);
    }
}
