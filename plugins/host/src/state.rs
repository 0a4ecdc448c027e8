//! Persistent per-plugin key/value state, as seen by the host.
//!
//! Owns the [`PluginState`] trait the agent implements (backed by its store)
//! plus two simple implementations: [`MemoryState`] and [`FileState`]. It
//! must never interpret values: they are opaque strings owned by plugins.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Largest key a plugin may use, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Largest value a plugin may store, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Why a state operation failed (mapped onto the WIT `state-error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The key or value is too large.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The backing store cannot be reached right now.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// Persistent key/value state, namespaced by plugin name. Provided by the
/// agent (its store); must be durable once `set`/`delete` return. Called from
/// plugin threads, so implementations must be cheap and thread-safe.
pub trait PluginState: Send + Sync + 'static {
    /// Read `key` of `plugin`.
    fn get(&self, plugin: &str, key: &str) -> Result<Option<String>, StateError>;
    /// Write `key` of `plugin`.
    fn set(&self, plugin: &str, key: &str, value: &str) -> Result<(), StateError>;
    /// Delete `key` of `plugin` (absent keys are fine).
    fn delete(&self, plugin: &str, key: &str) -> Result<(), StateError>;
    /// Delete every key of `plugin` (called when the plugin is removed).
    fn clear(&self, plugin: &str) -> Result<(), StateError>;
}

/// In-memory state (tests, benchmarks). Lost when dropped.
#[derive(Debug, Default)]
pub struct MemoryState {
    map: Mutex<BTreeMap<(String, String), String>>,
}

impl MemoryState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every key/value of `plugin`.
    pub fn dump(&self, plugin: &str) -> BTreeMap<String, String> {
        self.map
            .lock()
            .expect("state lock")
            .iter()
            .filter(|((p, _), _)| p == plugin)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl PluginState for MemoryState {
    fn get(&self, plugin: &str, key: &str) -> Result<Option<String>, StateError> {
        let map = self.map.lock().expect("state lock");
        Ok(map.get(&(plugin.to_string(), key.to_string())).cloned())
    }

    fn set(&self, plugin: &str, key: &str, value: &str) -> Result<(), StateError> {
        let mut map = self.map.lock().expect("state lock");
        map.insert((plugin.to_string(), key.to_string()), value.to_string());
        Ok(())
    }

    fn delete(&self, plugin: &str, key: &str) -> Result<(), StateError> {
        let mut map = self.map.lock().expect("state lock");
        map.remove(&(plugin.to_string(), key.to_string()));
        Ok(())
    }

    fn clear(&self, plugin: &str) -> Result<(), StateError> {
        let mut map = self.map.lock().expect("state lock");
        map.retain(|(p, _), _| p != plugin);
        Ok(())
    }
}

/// File-backed state: one JSON object per plugin in `dir/<plugin>.json`,
/// rewritten atomically (temp file, fsync, rename) on every change. Fine for
/// tests and small single-node setups; the agent uses its own store.
#[derive(Debug)]
pub struct FileState {
    dir: PathBuf,
    lock: Mutex<()>,
}

impl FileState {
    /// State kept under `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            lock: Mutex::new(()),
        })
    }

    fn path(&self, plugin: &str) -> PathBuf {
        self.dir.join(format!("{plugin}.json"))
    }

    fn load(&self, plugin: &str) -> Result<BTreeMap<String, String>, StateError> {
        match std::fs::read(self.path(plugin)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| StateError::Other(format!("corrupt state file: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(StateError::Unavailable(e.to_string())),
        }
    }

    fn save(&self, plugin: &str, map: &BTreeMap<String, String>) -> Result<(), StateError> {
        let bytes = serde_json::to_vec_pretty(map).map_err(|e| StateError::Other(e.to_string()))?;
        write_atomic(&self.path(plugin), &bytes).map_err(|e| StateError::Unavailable(e.to_string()))
    }
}

/// Write `bytes` to `path` atomically: temp file in the same directory,
/// fsync, rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

impl PluginState for FileState {
    fn get(&self, plugin: &str, key: &str) -> Result<Option<String>, StateError> {
        let _guard = self.lock.lock().expect("state lock");
        Ok(self.load(plugin)?.get(key).cloned())
    }

    fn set(&self, plugin: &str, key: &str, value: &str) -> Result<(), StateError> {
        let _guard = self.lock.lock().expect("state lock");
        let mut map = self.load(plugin)?;
        map.insert(key.to_string(), value.to_string());
        self.save(plugin, &map)
    }

    fn delete(&self, plugin: &str, key: &str) -> Result<(), StateError> {
        let _guard = self.lock.lock().expect("state lock");
        let mut map = self.load(plugin)?;
        if map.remove(key).is_some() {
            self.save(plugin, &map)?;
        }
        Ok(())
    }

    fn clear(&self, plugin: &str) -> Result<(), StateError> {
        let _guard = self.lock.lock().expect("state lock");
        match std::fs::remove_file(self.path(plugin)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StateError::Unavailable(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(state: &dyn PluginState) {
        assert_eq!(state.get("p", "k").unwrap(), None);
        state.set("p", "k", "v").unwrap();
        state.set("q", "k", "other").unwrap();
        assert_eq!(state.get("p", "k").unwrap().as_deref(), Some("v"));
        state.delete("p", "k").unwrap();
        state.delete("p", "missing").unwrap();
        assert_eq!(state.get("p", "k").unwrap(), None);
        state.clear("q").unwrap();
        assert_eq!(state.get("q", "k").unwrap(), None);
    }

    #[test]
    fn memory_state() {
        exercise(&MemoryState::new());
    }

    #[test]
    fn file_state_persists() {
        let dir = tempfile::tempdir().unwrap();
        exercise(&FileState::new(dir.path()).unwrap());
        FileState::new(dir.path())
            .unwrap()
            .set("p", "a", "1")
            .unwrap();
        let again = FileState::new(dir.path()).unwrap();
        assert_eq!(again.get("p", "a").unwrap().as_deref(), Some("1"));
    }
}
