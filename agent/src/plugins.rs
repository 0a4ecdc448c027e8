//! The agent's WebAssembly plugins: it owns the one [`PluginHost`] of the agent.
//!
//! * The host keeps installed plugins in `DATA_DIR/plugins` (`installed/`, the `.cwasm` cache in
//!   `cache/`) and their persistent state in the agent's store, under
//!   `/dray/plugin-state/<plugin>/<key>` ([`StoreState`]).
//! * At start it loads what is installed, then installs or upgrades the **bundled** plugins: every
//!   `.wasm` in the `--plugins-dir` directory (the postgres, redis and balancer plugins built with
//!   the project). A bundled file that is refused is logged and skipped, never fatal. A bundled
//!   plugin the operator upgraded by hand (its installed build is not the one this agent last
//!   installed from the bundle, as recorded in `DATA_DIR/plugins/bundled.json`) is left alone.
//! * Install, upgrade and remove take effect at once in the running agent.
//! * Loading runs in the background ([`PluginSlot::start`]): the API serves every other request
//!   at once, and plugin requests wait until the host is ready.
//!
//! The host's lifecycle calls block (they compile with Cranelift and take a lock), so every one
//! runs on `spawn_blocking`; this module must never block the async runtime, never decide who
//! may use a plugin (the controllers do) and never speak wasmtime itself (only `dray-plugins`
//! does).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dray_plugins::{
    Limits, PluginError, PluginHost, PluginInfo, PluginState, PluginStatus, StateError,
};
use dray_store::{Op, Store, StoreError, Txn};

use crate::repo::{plugin_state_key, plugin_state_prefix};

/// How long a plugin's state call waits for the store before failing as unavailable.
const STATE_TIMEOUT: Duration = Duration::from_secs(10);

/// The plugin host once it has started, or why it could not. Cheap to clone.
#[derive(Clone)]
pub struct PluginSlot(tokio::sync::watch::Receiver<Option<Result<Plugins, Arc<str>>>>);

impl PluginSlot {
    /// Start the host in the background (see [`Plugins::start`]).
    pub fn start(data_dir: PathBuf, bundled: Option<PathBuf>, store: Arc<dyn Store>) -> Self {
        let (tx, rx) = tokio::sync::watch::channel(None);
        tokio::spawn(async move {
            let result = Plugins::start(&data_dir, bundled, store)
                .await
                .map_err(|e| {
                    tracing::error!("plugins are unavailable: {e}");
                    Arc::from(format!("plugins are unavailable: {e}"))
                });
            let _ = tx.send(Some(result));
        });
        PluginSlot(rx)
    }

    /// A slot with no host, for `reason`.
    pub fn unavailable(reason: &str) -> Self {
        let (_tx, rx) = tokio::sync::watch::channel(Some(Err(Arc::from(reason))));
        PluginSlot(rx)
    }

    /// The host, once loaded (waits while it is starting).
    pub async fn get(&self) -> Result<Plugins, Arc<str>> {
        let mut rx = self.0.clone();
        let ready = rx.wait_for(Option::is_some).await;
        match ready.as_deref() {
            Ok(Some(result)) => result.clone(),
            _ => Err(Arc::from("the plugin host stopped while starting")),
        }
    }
}

/// The agent's plugin host. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Plugins {
    host: PluginHost,
}

impl Plugins {
    /// Open the host on `DATA_DIR/plugins` with its state in `store`, load the installed plugins
    /// (one that fails to load is listed as failed), then install or upgrade the bundled ones
    /// from `bundled` (each outcome is logged; a bad file is skipped). Fails only when the host
    /// itself cannot start (engine or plugin directory).
    pub async fn start(
        data_dir: &Path,
        bundled: Option<PathBuf>,
        store: Arc<dyn Store>,
    ) -> Result<Plugins, PluginError> {
        let dir = data_dir.join("plugins");
        let state: Arc<dyn PluginState> = Arc::new(StoreState {
            store,
            handle: tokio::runtime::Handle::current(),
        });
        blocking(move || {
            let host = PluginHost::new(dir, Limits::default(), state)?;
            for info in host.load_installed()? {
                match &info.status {
                    PluginStatus::Ok => {
                        tracing::info!(plugin = %info.name, version = %info.version, "plugin loaded")
                    }
                    PluginStatus::Failed(reason) => {
                        tracing::error!(plugin = %info.name, "plugin failed to load: {reason}")
                    }
                }
            }
            if let Some(bundled) = bundled {
                install_bundled(&host, &bundled);
            }
            Ok(Plugins { host })
        })
        .await
    }

    /// The host, for calling plugins.
    pub fn host(&self) -> &PluginHost {
        &self.host
    }

    /// Every installed plugin, by name.
    pub fn list(&self) -> Vec<PluginInfo> {
        self.host.list()
    }

    /// One installed plugin.
    pub fn info(&self, name: &str) -> Option<PluginInfo> {
        self.host.info(name)
    }

    /// Install a plugin from its `.wasm` bytes (refused if its name is installed).
    pub async fn install(
        &self,
        wasm: Vec<u8>,
        grants: dray_plugins::Grants,
    ) -> Result<PluginInfo, PluginError> {
        let host = self.host.clone();
        blocking(move || host.install_with(&wasm, grants)).await
    }

    /// Replace the installed plugin these bytes are a build of; with `name`, refused unless
    /// they are a build of plugin `name`.
    pub async fn upgrade(
        &self,
        name: Option<String>,
        wasm: Vec<u8>,
    ) -> Result<PluginInfo, PluginError> {
        let host = self.host.clone();
        blocking(move || match name {
            Some(name) => host.upgrade_named(&name, &wasm),
            None => host.upgrade(&wasm),
        })
        .await
    }

    /// Remove plugin `name` unless one of the resource types it serves is used: `users` maps a
    /// resource type to the apps using it.
    pub async fn remove(
        &self,
        name: String,
        users: BTreeMap<String, Vec<String>>,
    ) -> Result<PluginInfo, PluginError> {
        let host = self.host.clone();
        blocking(move || {
            host.remove_unless_used(&name, |info| {
                info.types
                    .iter()
                    .filter_map(|t| users.get(t))
                    .flatten()
                    .cloned()
                    .collect()
            })
        })
        .await
    }
}

/// Run a blocking host call off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, PluginError> + Send + 'static,
) -> Result<T, PluginError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(PluginError::Engine(format!("the plugin host failed: {e}"))))
}

/// The sha256 of what this agent last installed from the bundle, by plugin name.
type BundledRecord = BTreeMap<String, String>;

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Install or upgrade every `.wasm` file of `dir`. Logs one line per file; never fails.
fn install_bundled(host: &PluginHost, dir: &Path) {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("wasm"))
            .collect(),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), "cannot read the bundled plugins directory: {e}");
            return;
        }
    };
    files.sort();
    if files.is_empty() {
        tracing::warn!(dir = %dir.display(), "no bundled plugins (.wasm files) in the plugins directory");
        return;
    }
    let record_path = host.dir().join("bundled.json");
    let mut record: BundledRecord = std::fs::read(&record_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let before = record.clone();
    for file in &files {
        let shown = file.display().to_string();
        let wasm = match std::fs::read(file) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(file = %shown, "bundled plugin skipped: cannot read it: {e}");
                continue;
            }
        };
        let sha = sha256_hex(&wasm);
        if let Some(same) = host
            .list()
            .into_iter()
            .find(|p| p.sha256 == sha && p.status == PluginStatus::Ok)
        {
            tracing::info!(plugin = %same.name, version = %same.version, file = %shown, "bundled plugin unchanged");
            continue;
        }
        match host.install(&wasm) {
            Ok(info) => {
                tracing::info!(plugin = %info.name, version = %info.version, file = %shown, "bundled plugin installed");
                record.insert(info.name, sha);
            }
            Err(PluginError::AlreadyInstalled { name, version }) => {
                let installed = host.info(&name).map(|i| i.sha256).unwrap_or_default();
                if record.get(&name).is_some_and(|last| *last != installed) {
                    tracing::warn!(
                        plugin = %name, installed = %version, file = %shown,
                        "bundled plugin not applied: the installed build was upgraded by the operator (use `dray plugins upgrade` to change it)"
                    );
                    continue;
                }
                match host.upgrade(&wasm) {
                    Ok(info) => {
                        tracing::info!(plugin = %info.name, from = %version, to = %info.version, file = %shown, "bundled plugin upgraded");
                        record.insert(info.name, sha);
                    }
                    Err(e) => {
                        tracing::error!(plugin = %name, file = %shown, "bundled plugin skipped: {e}")
                    }
                }
            }
            Err(e) => tracing::error!(file = %shown, "bundled plugin skipped: {e}"),
        }
    }
    if record != before {
        let bytes = serde_json::to_vec_pretty(&record).unwrap_or_default();
        if let Err(e) = std::fs::write(&record_path, bytes) {
            tracing::warn!(path = %record_path.display(), "cannot record the bundled plugins: {e}");
        }
    }
}

/// Plugin state in the agent's store. The host calls it from plugin threads (never from the
/// async runtime): each call is spawned onto the runtime and waited for.
struct StoreState {
    store: Arc<dyn Store>,
    handle: tokio::runtime::Handle,
}

impl StoreState {
    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StateError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        match rx.recv_timeout(STATE_TIMEOUT) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StateError::Unavailable(e.to_string())),
            Err(_) => Err(StateError::Unavailable(format!(
                "the agent's store did not answer within {STATE_TIMEOUT:?}"
            ))),
        }
    }
}

impl PluginState for StoreState {
    fn get(&self, plugin: &str, key: &str) -> Result<Option<String>, StateError> {
        let store = self.store.clone();
        let key = plugin_state_key(plugin, key);
        let value = self.run(async move { store.get(&key).await })?;
        value
            .map(|kv| {
                String::from_utf8(kv.value)
                    .map_err(|_| StateError::Other("stored value is not UTF-8".into()))
            })
            .transpose()
    }

    fn set(&self, plugin: &str, key: &str, value: &str) -> Result<(), StateError> {
        let store = self.store.clone();
        let key = plugin_state_key(plugin, key);
        let value = value.as_bytes().to_vec();
        self.run(async move { store.put(&key, value).await })
            .map(|_| ())
    }

    fn delete(&self, plugin: &str, key: &str) -> Result<(), StateError> {
        let store = self.store.clone();
        let key = plugin_state_key(plugin, key);
        self.run(async move { store.delete(&key).await })
            .map(|_| ())
    }

    fn clear(&self, plugin: &str) -> Result<(), StateError> {
        let store = self.store.clone();
        let txn = Txn {
            compare: Vec::new(),
            success: vec![Op::DeletePrefix(plugin_state_prefix(plugin))],
            failure: Vec::new(),
        };
        self.run(async move { store.txn(txn).await }).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unavailable_slot_answers_with_its_reason() {
        let slot = PluginSlot::unavailable("no host here");
        assert_eq!(slot.get().await.unwrap_err().as_ref(), "no host here");
        assert_eq!(
            slot.clone().get().await.unwrap_err().as_ref(),
            "no host here"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn state_lives_in_the_store_under_the_plugin_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(dray_store::sqlite::SqliteStore::open(&dir.path().join("s.db")).unwrap());
        let state = StoreState {
            store: store.clone(),
            handle: tokio::runtime::Handle::current(),
        };
        tokio::task::spawn_blocking(move || {
            assert_eq!(state.get("pg", "shop/db/password").unwrap(), None);
            state.set("pg", "shop/db/password", "s3cret").unwrap();
            state.set("redis", "k", "v").unwrap();
            assert_eq!(
                state.get("pg", "shop/db/password").unwrap().as_deref(),
                Some("s3cret")
            );
            state.delete("pg", "missing").unwrap();
            state.clear("pg").unwrap();
            assert_eq!(state.get("pg", "shop/db/password").unwrap(), None);
            assert_eq!(state.get("redis", "k").unwrap().as_deref(), Some("v"));
        })
        .await
        .unwrap();
        let kv = store
            .get("/dray/plugin-state/redis/k")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(kv.value, b"v");
    }
}
