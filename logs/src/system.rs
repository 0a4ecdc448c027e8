//! The per-app system log: platform events written by the agent (process started, crashed with exit
//! code, restarted, stopped, promote progress) into their own log directory, in the same record
//! format and rotation as process logs, so [`crate::read`] and [`crate::follow`] read it too
//! (records have stream `system`).
//!
//! Owns appending one event. Appends from one agent process are serialized by a process-wide lock,
//! and the agent must be the only writer of a system directory. It must never be used for process
//! output (that goes through the logger) and never block for long: each call is an open, at most one
//! rotation, one `write` and a close.

use std::path::Path;
use std::sync::Mutex;

use chrono::Utc;

use crate::format::{encode_record, format_time, Stream};
use crate::rotate::{RotatingFile, Rotation};
use crate::LogError;

static APPEND_LOCK: Mutex<()> = Mutex::new(());

/// Appends a `system` record with the current time to the log directory `dir` (created if missing),
/// with the default rotation (10 files of 10 MB).
pub fn append_system(dir: &Path, message: &str) -> Result<(), LogError> {
    append_system_with(dir, message, Rotation::default())
}

/// [`append_system`] with explicit rotation limits.
pub fn append_system_with(dir: &Path, message: &str, rotation: Rotation) -> Result<(), LogError> {
    let mut record = Vec::with_capacity(message.len() + 64);
    encode_record(
        &mut record,
        &format_time(Utc::now()),
        Stream::System,
        message.as_bytes(),
    );
    // A poisoned lock only means another append panicked; the files are still consistent.
    let _guard = APPEND_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut file = RotatingFile::open(dir, rotation)?;
    if file.needs_rotation(record.len() as u64) {
        file.rotate()?;
    }
    file.write_all(&record)
}
