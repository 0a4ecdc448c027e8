//! # dray-plugins: the WebAssembly plugin host of the Dray agent
//!
//! Resource primitives (postgres, redis, rds-postgres, ...) and the TCP
//! balancer's backend choice ship as WebAssembly components implementing the
//! WIT contract in `wit/` (`package dray:plugin@0.1.0`). This crate hosts
//! them with wasmtime:
//!
//! * one [`wasmtime::Engine`] with epoch interruption (a ticker thread
//!   advances the epoch every 10 ms; a call running past
//!   [`Limits::call_timeout`], 5 s by default, is stopped), a per-store
//!   memory limit ([`Limits::memory_bytes`], 64 MiB by default) and optional
//!   fuel;
//! * WASI p2 with no filesystem and no network unless the installation's
//!   [`Grants`] say so;
//! * each component precompiled once and cached on disk as
//!   `cache/<sha256>-<engine compatibility hash>.cwasm`, so a restarted agent
//!   loads plugins without compiling;
//! * one long-lived instance per plugin on its own thread, serving calls in
//!   order, dropped after a trap/timeout/out-of-memory and re-created on the
//!   next call;
//! * the contract version embedded in the component (its interface names
//!   carry `@0.1.0`) checked at install against [`SUPPORTED_VERSIONS`];
//! * host-side validation of everything a plugin returns (a malformed plan
//!   is refused with a clear message before the agent acts on it).
//!
//! The agent uses [`PluginHost`]: `install`/`upgrade`/`remove`/`list` (all
//! effective immediately), `load_installed` at start, and
//! [`PluginHost::resource_plugin_for`] / [`PluginHost::balancer`] to call
//! plugins.
//!
//! This is the only crate of the project that depends on wasmtime. It must
//! never carry out a plan (the agent does) nor let a plugin reach anything
//! but the `host` interface and what its grants allow.

#![warn(missing_docs)]

mod actor;
mod bindings;
mod contract;
mod runtime;
mod state;
#[cfg(feature = "testing")]
pub mod testing;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use actor::{Actor, Env, Health, Job, Pre};
use bindings::balancer::BalancerPluginPre;
use bindings::resource::ResourcePluginPre;

pub use contract::{compatible, supported_range, PACKAGE, SUPPORTED_VERSIONS};
pub use runtime::{random_secret, Grants, Limits, Preopen};
pub use state::{FileState, MemoryState, PluginState, StateError, MAX_KEY_BYTES, MAX_VALUE_BYTES};

/// The data types of the contract (`dray:plugin/types` and the balancer
/// records), as plain Rust values with serde support.
pub mod types {
    pub use crate::bindings::balancer::exports::dray::plugin::balancer::{
        Backend, BalancerConfig, Connection,
    };
    pub use crate::bindings::resource::dray::plugin::types::*;
}

use types::{
    Backend, BalancerConfig, Connection, DataCommand, DataOpKind, Diagnostic, ObservedObject,
    Output, PluginDescription, Realized, ResourcePlan, ResourceSpec,
};

/// Which world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    /// `resource-plugin`: serves resource types.
    Resource,
    /// `balancer-plugin`: chooses backends for TCP connections.
    Balancer,
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PluginKind::Resource => "resource",
            PluginKind::Balancer => "balancer",
        })
    }
}

/// Whether a plugin is serving.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginStatus {
    /// Loaded; the last call (if any) succeeded.
    #[default]
    Ok,
    /// Failed to load, or the last call trapped/timed out/ran out of memory
    /// (the instance is re-created on the next call).
    Failed(String),
}

impl fmt::Display for PluginStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginStatus::Ok => f.write_str("ok"),
            PluginStatus::Failed(reason) => write!(f, "failed: {reason}"),
        }
    }
}

/// One installed plugin, as `dray plugins` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    /// The plugin's name (unique).
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// Resource or balancer.
    pub kind: PluginKind,
    /// Resource types served (empty for balancers).
    pub types: Vec<String>,
    /// Serving or failed (with the reason).
    pub status: PluginStatus,
    /// The contract it was built for (`dray:plugin@0.1.0`).
    pub contract: String,
    /// One sentence from the plugin.
    pub summary: String,
    /// sha256 of the installed `.wasm`.
    pub sha256: String,
    /// How many times its instance was dropped after a failure.
    pub restarts: u32,
    /// Capabilities granted at install.
    pub grants: Grants,
}

/// Why a lifecycle operation (install, upgrade, remove, lookup) failed.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The bytes are not WebAssembly at all.
    #[error("not a WebAssembly file (missing the \\0asm header); expected a component built with `cargo build --target wasm32-wasip2`")]
    NotWasm,
    /// A core module instead of a component.
    #[error("this is a core WebAssembly module, not a component; build the plugin with `cargo build --release --target wasm32-wasip2`")]
    CoreModule,
    /// The component does not compile or link.
    #[error("invalid component: {0}")]
    InvalidComponent(String),
    /// The component implements no Dray world.
    #[error("not a Dray plugin: the component exports neither {expected}")]
    NotAPlugin {
        /// What was expected.
        expected: String,
    },
    /// Built for an incompatible contract version.
    #[error("plugin was built for contract {found} (interface {interface}), but this agent supports {supported}; rebuild the plugin against a compatible dray-pdk")]
    ContractMismatch {
        /// The plugin's contract (`dray:plugin@1.0.0`).
        found: String,
        /// What this agent supports (`dray:plugin@0.1.x`).
        supported: String,
        /// The interface that carried the version.
        interface: String,
    },
    /// The component imports something the agent does not provide.
    #[error("plugin imports something this agent does not provide: {0}")]
    MissingImports(String),
    /// `describe` failed.
    #[error("describe failed: {0}")]
    Describe(#[source] CallError),
    /// `describe` returned nonsense.
    #[error("invalid plugin description: {0}")]
    InvalidDescription(String),
    /// Install of a name that exists.
    #[error("plugin {name} is already installed (version {version}); use upgrade")]
    AlreadyInstalled {
        /// The plugin.
        name: String,
        /// The installed version.
        version: String,
    },
    /// Upgrade/remove of an unknown plugin.
    #[error("plugin {0} is not installed")]
    NotInstalled(String),
    /// An upgrade of one plugin with another plugin's component.
    #[error(
        "this component is plugin {found}, not {expected}; upgrade {found} instead, or install it"
    )]
    NameMismatch {
        /// The plugin being upgraded.
        expected: String,
        /// The name the component gives itself.
        found: String,
    },
    /// The upgrade changes the plugin's kind.
    #[error("cannot upgrade {name}: the installed plugin is a {installed} plugin, the new one a {new} plugin")]
    KindChanged {
        /// The plugin.
        name: String,
        /// Installed kind.
        installed: PluginKind,
        /// New kind.
        new: PluginKind,
    },
    /// Two plugins would serve one type.
    #[error("resource type {type_name} is already served by plugin {plugin}")]
    TypeConflict {
        /// The type.
        type_name: String,
        /// The plugin already serving it.
        plugin: String,
    },
    /// Removal refused because resources use the plugin.
    #[error("plugin {plugin} is used by resources in apps: {}; delete those resources first", apps.join(", "))]
    InUse {
        /// The plugin.
        plugin: String,
        /// The apps with resources of its types.
        apps: Vec<String>,
    },
    /// No plugin serves the type.
    #[error("no installed plugin serves resource type {0:?}")]
    NoPluginForType(String),
    /// No balancer plugin.
    #[error("no balancer plugin is installed")]
    NoBalancer,
    /// The plugin is installed but failed to load.
    #[error("plugin {name} is not loaded: {reason}")]
    NotLoaded {
        /// The plugin.
        name: String,
        /// Why.
        reason: String,
    },
    /// Filesystem trouble in the plugin directory.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Engine setup failed.
    #[error("engine: {0}")]
    Engine(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> PluginError {
    let context = context.into();
    move |source| PluginError::Io { context, source }
}

/// Why a call into a plugin failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The plugin answered with an error (invalid spec, unsupported, ...).
    #[error("plugin {plugin}: {}", plugin_error_text(error))]
    Plugin {
        /// The plugin.
        plugin: String,
        /// Its error.
        error: types::Error,
    },
    /// Stopped at the deadline.
    #[error("plugin {plugin} was stopped: the call ran past its {timeout:?} deadline")]
    Timeout {
        /// The plugin.
        plugin: String,
        /// The deadline.
        timeout: Duration,
    },
    /// Stopped by the memory limit.
    #[error("plugin {plugin} was stopped: memory limit of {limit} bytes exceeded (it asked for {requested} bytes)")]
    OutOfMemory {
        /// The plugin.
        plugin: String,
        /// The limit.
        limit: usize,
        /// What it asked for.
        requested: usize,
    },
    /// Stopped by the fuel limit.
    #[error("plugin {plugin} was stopped: it used up its fuel ({fuel} units per call)")]
    OutOfFuel {
        /// The plugin.
        plugin: String,
        /// The per-call fuel.
        fuel: u64,
    },
    /// Trapped (a panic, an unreachable, ...).
    #[error("plugin {plugin} trapped: {reason}")]
    Trap {
        /// The plugin.
        plugin: String,
        /// The trap and the plugin's last output.
        reason: String,
    },
    /// Returned something the host refuses to act on.
    #[error("plugin {plugin} returned a malformed {what}: {reason}")]
    Malformed {
        /// The plugin.
        plugin: String,
        /// `plan`, `outputs`, ...
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The plugin is gone (removed, upgraded away) or cannot start.
    #[error("plugin {plugin} is unavailable: {reason}")]
    Unavailable {
        /// The plugin.
        plugin: String,
        /// Why.
        reason: String,
    },
}

/// A readable rendering of a plugin's WIT error.
pub fn plugin_error_text(e: &types::Error) -> String {
    match e {
        types::Error::InvalidSpec(diags) => {
            let parts: Vec<String> = diags
                .iter()
                .map(|d| match &d.field {
                    Some(f) => format!("{f}: {}", d.message),
                    None => d.message.clone(),
                })
                .collect();
            format!("invalid spec: {}", parts.join("; "))
        }
        types::Error::Unsupported(m) => format!("unsupported: {m}"),
        types::Error::NotReady(m) => format!("not ready: {m}"),
        types::Error::Other(m) => m.clone(),
    }
}

/// Counters for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostStats {
    /// Components compiled with Cranelift (cache misses).
    pub compilations: u64,
    /// Components loaded from the `.cwasm` cache.
    pub cache_loads: u64,
}

/// The result of [`PluginHost::ensure_installed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnsureOutcome {
    /// It was not installed; now it is.
    Installed,
    /// Another build was installed; it was upgraded.
    Upgraded,
    /// The same bytes were already installed.
    Unchanged,
}

/// What is persisted next to each installed `.wasm`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct InstallRecord {
    name: String,
    sha256: String,
    #[serde(default)]
    grants: Grants,
}

struct Entry {
    name: String,
    kind: PluginKind,
    description: PluginDescription,
    contract: String,
    sha256: String,
    grants: Grants,
    tx: Option<Mutex<mpsc::Sender<Job>>>,
    load_error: Option<String>,
    health: Arc<Health>,
}

impl Entry {
    fn info(&self) -> PluginInfo {
        let status = match &self.load_error {
            Some(reason) => PluginStatus::Failed(reason.clone()),
            None => self.health.status.lock().expect("status lock").clone(),
        };
        PluginInfo {
            name: self.name.clone(),
            version: self.description.version.clone(),
            kind: self.kind,
            types: self
                .description
                .types
                .iter()
                .map(|t| t.name.clone())
                .collect(),
            status,
            contract: self.contract.clone(),
            summary: self.description.summary.clone(),
            sha256: self.sha256.clone(),
            restarts: self.health.restarts.load(Ordering::Relaxed),
            grants: self.grants.clone(),
        }
    }

    /// Run `f` on the plugin's actor and wait for the answer.
    async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Actor) -> Result<R, CallError> + Send + 'static,
    ) -> Result<R, CallError> {
        let unavailable = |reason: &str| CallError::Unavailable {
            plugin: self.name.clone(),
            reason: reason.to_string(),
        };
        let Some(tx) = &self.tx else {
            return Err(unavailable(
                self.load_error.as_deref().unwrap_or("not loaded"),
            ));
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |actor| {
            let _ = reply.send(f(actor));
        });
        tx.lock()
            .expect("sender lock")
            .send(job)
            .map_err(|_| unavailable("its instance thread has stopped"))?;
        answer
            .await
            .map_err(|_| unavailable("its instance thread has stopped"))?
    }
}

struct Inner {
    env: Arc<Env>,
    linkers: runtime::Linkers,
    dir: PathBuf,
    compat: String,
    plugins: RwLock<BTreeMap<String, Arc<Entry>>>,
    lifecycle: Mutex<()>,
    compilations: AtomicU64,
    cache_loads: AtomicU64,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// The plugin host. Cheap to clone (shared). Lifecycle methods (`install`,
/// `upgrade`, `remove`, `load_installed`) block while compiling: call them
/// from `tokio::task::spawn_blocking` in async code. Plugin calls are async.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<Inner>,
}

impl fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginHost")
            .field("dir", &self.inner.dir)
            .field("limits", &self.inner.env.limits)
            .finish_non_exhaustive()
    }
}

/// A validated, compiled component ready to become an [`Entry`].
struct Prepared {
    sha256: String,
    kind: PluginKind,
    contract: String,
    pre: Pre,
    description: PluginDescription,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl PluginHost {
    /// A host keeping installed plugins in `dir/installed` and compiled
    /// components in `dir/cache`. Starts the epoch ticker. Call
    /// [`PluginHost::load_installed`] next.
    pub fn new(
        dir: PathBuf,
        limits: Limits,
        state: Arc<dyn PluginState>,
    ) -> Result<Self, PluginError> {
        std::fs::create_dir_all(dir.join("installed"))
            .map_err(io(format!("creating {}", dir.display())))?;
        std::fs::create_dir_all(dir.join("cache"))
            .map_err(io(format!("creating {}", dir.display())))?;
        let engine = runtime::engine(&limits).map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        let linkers =
            runtime::linkers(&engine).map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        let mut hasher = ShaHasher(Sha256::new());
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
        let compat = hex::encode(&hasher.0.finalize()[..8]);
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let ticker_stop = stop.clone();
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || loop {
                std::thread::sleep(runtime::EPOCH_TICK);
                if ticker_stop.load(Ordering::Relaxed) {
                    break;
                }
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            })
            .map_err(io("starting the epoch ticker"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                env: Arc::new(Env {
                    engine,
                    limits,
                    state,
                }),
                linkers,
                dir,
                compat,
                plugins: RwLock::new(BTreeMap::new()),
                lifecycle: Mutex::new(()),
                compilations: AtomicU64::new(0),
                cache_loads: AtomicU64::new(0),
                ticker_stop: stop,
            }),
        })
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> Limits {
        self.inner.env.limits
    }

    /// The plugin directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Compile/cache counters.
    pub fn stats(&self) -> HostStats {
        HostStats {
            compilations: self.inner.compilations.load(Ordering::Relaxed),
            cache_loads: self.inner.cache_loads.load(Ordering::Relaxed),
        }
    }

    fn cache_path(&self, sha256: &str) -> PathBuf {
        self.inner
            .dir
            .join("cache")
            .join(format!("{sha256}-{}.cwasm", self.inner.compat))
    }

    /// Load the compiled component for `wasm` from the cache, compiling and
    /// caching it on a miss.
    fn component(&self, wasm: &[u8], sha256: &str) -> Result<Component, PluginError> {
        let engine = &self.inner.env.engine;
        let path = self.cache_path(sha256);
        if path.exists() {
            // SAFETY: files in `cache/` are written only by this host, from
            // `Engine::precompile_component`, atomically, under a name that
            // includes the engine's compatibility hash.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => {
                    self.inner.cache_loads.fetch_add(1, Ordering::Relaxed);
                    return Ok(c);
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), "unusable cached component, recompiling: {e:#}")
                }
            }
        }
        let compiled = engine
            .precompile_component(wasm)
            .map_err(|e| PluginError::InvalidComponent(format!("{e:#}")))?;
        self.inner.compilations.fetch_add(1, Ordering::Relaxed);
        state::write_atomic(&path, &compiled).map_err(io(format!("writing {}", path.display())))?;
        // SAFETY: these bytes were produced by `precompile_component` above.
        unsafe { Component::deserialize(engine, &compiled) }
            .map_err(|e| PluginError::InvalidComponent(format!("{e:#}")))
    }

    /// Check, compile (or load from cache), link and describe a component.
    fn prepare(&self, wasm: &[u8], grants: &Grants) -> Result<Prepared, PluginError> {
        if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
            return Err(PluginError::NotWasm);
        }
        if wasm[4..8] == [1, 0, 0, 0] {
            return Err(PluginError::CoreModule);
        }
        let sha256 = sha256_hex(wasm);
        let component = self.component(wasm, &sha256)?;
        let contract = contract::check(&self.inner.env.engine, &component)?;
        let pre = match contract.kind {
            PluginKind::Resource => self
                .inner
                .linkers
                .resource
                .instantiate_pre(&component)
                .and_then(ResourcePluginPre::new)
                .map(Pre::Resource),
            PluginKind::Balancer => self
                .inner
                .linkers
                .balancer
                .instantiate_pre(&component)
                .and_then(BalancerPluginPre::new)
                .map(Pre::Balancer),
        }
        .map_err(|e| PluginError::MissingImports(format!("{e:#}")))?;
        let mut probe = Actor::new(
            "",
            grants.clone(),
            pre.clone(),
            self.inner.env.clone(),
            Arc::default(),
        );
        let description = probe.describe().map_err(PluginError::Describe)?;
        validate::description(&description, contract.kind == PluginKind::Resource)
            .map_err(PluginError::InvalidDescription)?;
        Ok(Prepared {
            sha256,
            kind: contract.kind,
            contract: format!("{PACKAGE}@{}", contract.version),
            pre,
            description,
        })
    }

    fn check_types(&self, prepared: &Prepared, except: Option<&str>) -> Result<(), PluginError> {
        let plugins = self.inner.plugins.read().expect("plugins lock");
        for t in &prepared.description.types {
            for entry in plugins.values() {
                if Some(entry.name.as_str()) == except || entry.name == prepared.description.name {
                    continue;
                }
                if entry.description.types.iter().any(|o| o.name == t.name) {
                    return Err(PluginError::TypeConflict {
                        type_name: t.name.clone(),
                        plugin: entry.name.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    fn activate(&self, prepared: Prepared, grants: Grants) -> Result<PluginInfo, PluginError> {
        let name = prepared.description.name.clone();
        let health = Arc::new(Health::default());
        let actor = Actor::new(
            &name,
            grants.clone(),
            prepared.pre,
            self.inner.env.clone(),
            health.clone(),
        );
        let tx = actor
            .spawn()
            .map_err(io(format!("starting the thread of plugin {name}")))?;
        let entry = Arc::new(Entry {
            name: name.clone(),
            kind: prepared.kind,
            description: prepared.description,
            contract: prepared.contract,
            sha256: prepared.sha256,
            grants,
            tx: Some(Mutex::new(tx)),
            load_error: None,
            health,
        });
        let info = entry.info();
        self.inner
            .plugins
            .write()
            .expect("plugins lock")
            .insert(name, entry);
        Ok(info)
    }

    fn persist(&self, name: &str, wasm: &[u8], record: &InstallRecord) -> Result<(), PluginError> {
        let installed = self.inner.dir.join("installed");
        let wasm_path = installed.join(format!("{name}.wasm"));
        state::write_atomic(&wasm_path, wasm)
            .map_err(io(format!("writing {}", wasm_path.display())))?;
        let json = serde_json::to_vec_pretty(record).expect("record serializes");
        let record_path = installed.join(format!("{name}.json"));
        state::write_atomic(&record_path, &json)
            .map_err(io(format!("writing {}", record_path.display())))
    }

    /// Install a plugin from its `.wasm` bytes, with no extra grants.
    /// Refused if a plugin of the same name is installed ("use upgrade").
    /// Effective immediately.
    pub fn install(&self, wasm: &[u8]) -> Result<PluginInfo, PluginError> {
        self.install_with(wasm, Grants::default())
    }

    /// [`PluginHost::install`] with capabilities (filesystem, network).
    pub fn install_with(&self, wasm: &[u8], grants: Grants) -> Result<PluginInfo, PluginError> {
        let _lifecycle = self.inner.lifecycle.lock().expect("lifecycle lock");
        let prepared = self.prepare(wasm, &grants)?;
        let name = prepared.description.name.clone();
        if let Some(existing) = self.inner.plugins.read().expect("plugins lock").get(&name) {
            return Err(PluginError::AlreadyInstalled {
                name,
                version: existing.description.version.clone(),
            });
        }
        self.check_types(&prepared, None)?;
        let record = InstallRecord {
            name: name.clone(),
            sha256: prepared.sha256.clone(),
            grants: grants.clone(),
        };
        self.persist(&name, wasm, &record)?;
        let info = self.activate(prepared, grants)?;
        tracing::info!(plugin = %info.name, version = %info.version, kind = %info.kind, "plugin installed");
        Ok(info)
    }

    /// Replace an installed plugin (same name, same kind) with new bytes,
    /// keeping its grants and state. New calls go to the new version at
    /// once; a call already running finishes on the old one.
    pub fn upgrade(&self, wasm: &[u8]) -> Result<PluginInfo, PluginError> {
        self.upgrade_checked(None, wasm)
    }

    /// [`PluginHost::upgrade`], refused with [`PluginError::NameMismatch`]
    /// unless the component calls itself `name` (for `PUT /plugins/{name}`).
    pub fn upgrade_named(&self, name: &str, wasm: &[u8]) -> Result<PluginInfo, PluginError> {
        self.upgrade_checked(Some(name), wasm)
    }

    fn upgrade_checked(
        &self,
        expected: Option<&str>,
        wasm: &[u8],
    ) -> Result<PluginInfo, PluginError> {
        let _lifecycle = self.inner.lifecycle.lock().expect("lifecycle lock");
        if let Some(expected) = expected {
            if !self
                .inner
                .plugins
                .read()
                .expect("plugins lock")
                .contains_key(expected)
            {
                return Err(PluginError::NotInstalled(expected.to_string()));
            }
        }
        // Describe with no grants first to learn the name, then keep the
        // installed grants.
        let probe = self.prepare(wasm, &Grants::default())?;
        let name = probe.description.name.clone();
        if let Some(expected) = expected {
            if name != expected {
                return Err(PluginError::NameMismatch {
                    expected: expected.to_string(),
                    found: name,
                });
            }
        }
        let existing = self
            .inner
            .plugins
            .read()
            .expect("plugins lock")
            .get(&name)
            .cloned()
            .ok_or_else(|| PluginError::NotInstalled(name.clone()))?;
        if existing.load_error.is_none() && existing.kind != probe.kind {
            return Err(PluginError::KindChanged {
                name,
                installed: existing.kind,
                new: probe.kind,
            });
        }
        self.check_types(&probe, Some(&name))?;
        let grants = existing.grants.clone();
        let record = InstallRecord {
            name: name.clone(),
            sha256: probe.sha256.clone(),
            grants: grants.clone(),
        };
        self.persist(&name, wasm, &record)?;
        let info = self.activate(probe, grants)?;
        tracing::info!(plugin = %info.name, from = %existing.description.version, to = %info.version, "plugin upgraded");
        Ok(info)
    }

    /// Install `wasm` if its plugin is absent, upgrade it if another build is
    /// installed, do nothing if these exact bytes are. For the plugins built
    /// with the project and installed by default.
    pub fn ensure_installed(
        &self,
        wasm: &[u8],
    ) -> Result<(PluginInfo, EnsureOutcome), PluginError> {
        let sha256 = sha256_hex(wasm);
        let same = self
            .inner
            .plugins
            .read()
            .expect("plugins lock")
            .values()
            .find(|e| e.sha256 == sha256 && e.load_error.is_none())
            .map(|e| e.info());
        if let Some(info) = same {
            return Ok((info, EnsureOutcome::Unchanged));
        }
        match self.install(wasm) {
            Ok(info) => Ok((info, EnsureOutcome::Installed)),
            Err(PluginError::AlreadyInstalled { .. }) => {
                Ok((self.upgrade(wasm)?, EnsureOutcome::Upgraded))
            }
            Err(e) => Err(e),
        }
    }

    /// Remove a plugin unconditionally: its files, its state and its
    /// instance. The agent should prefer [`PluginHost::remove_unless_used`].
    pub fn remove(&self, name: &str) -> Result<PluginInfo, PluginError> {
        self.remove_unless_used(name, |_| Vec::new())
    }

    /// Remove a plugin unless `apps_using` (given the plugin's info, whose
    /// `types` say what it serves) names apps with resources of its types;
    /// then refuse with [`PluginError::InUse`] naming them.
    pub fn remove_unless_used(
        &self,
        name: &str,
        apps_using: impl FnOnce(&PluginInfo) -> Vec<String>,
    ) -> Result<PluginInfo, PluginError> {
        let _lifecycle = self.inner.lifecycle.lock().expect("lifecycle lock");
        let entry = self
            .inner
            .plugins
            .read()
            .expect("plugins lock")
            .get(name)
            .cloned()
            .ok_or_else(|| PluginError::NotInstalled(name.to_string()))?;
        let info = entry.info();
        let mut apps = apps_using(&info);
        if !apps.is_empty() {
            apps.sort();
            apps.dedup();
            return Err(PluginError::InUse {
                plugin: name.to_string(),
                apps,
            });
        }
        self.inner
            .plugins
            .write()
            .expect("plugins lock")
            .remove(name);
        let installed = self.inner.dir.join("installed");
        for ext in ["wasm", "json"] {
            let path = installed.join(format!("{name}.{ext}"));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(format!("removing {}", path.display()))(e)),
            }
        }
        if let Err(e) = self.inner.env.state.clear(name) {
            tracing::warn!(plugin = name, "could not clear plugin state: {e}");
        }
        tracing::info!(plugin = name, "plugin removed");
        Ok(info)
    }

    /// Load every plugin installed in the directory (at agent start). Uses
    /// the compiled cache, so nothing is recompiled unless the engine
    /// changed. A plugin that fails to load is listed with status `failed`
    /// and the others still load.
    pub fn load_installed(&self) -> Result<Vec<PluginInfo>, PluginError> {
        let _lifecycle = self.inner.lifecycle.lock().expect("lifecycle lock");
        let installed = self.inner.dir.join("installed");
        let mut records = Vec::new();
        for entry in
            std::fs::read_dir(&installed).map_err(io(format!("reading {}", installed.display())))?
        {
            let path = entry.map_err(io("reading the plugin directory"))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let record: InstallRecord = match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(path = %path.display(), "skipping unreadable install record: {e}");
                    continue;
                }
            };
            records.push(record);
        }
        records.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out = Vec::new();
        for record in records {
            let loaded = std::fs::read(installed.join(format!("{}.wasm", record.name)))
                .map_err(|e| format!("cannot read its .wasm: {e}"))
                .and_then(|wasm| {
                    if sha256_hex(&wasm) != record.sha256 {
                        return Err("its .wasm does not match the recorded sha256".to_string());
                    }
                    self.prepare(&wasm, &record.grants)
                        .map_err(|e| e.to_string())
                })
                .and_then(|p| {
                    if p.description.name != record.name {
                        Err(format!("it now calls itself {:?}", p.description.name))
                    } else {
                        Ok(p)
                    }
                });
            let info = match loaded {
                Ok(prepared) => self.activate(prepared, record.grants.clone())?,
                Err(reason) => {
                    tracing::error!(plugin = %record.name, "plugin failed to load: {reason}");
                    let entry = Arc::new(Entry {
                        name: record.name.clone(),
                        kind: PluginKind::Resource,
                        description: PluginDescription {
                            name: record.name.clone(),
                            version: String::new(),
                            summary: String::new(),
                            types: Vec::new(),
                        },
                        contract: String::new(),
                        sha256: record.sha256.clone(),
                        grants: record.grants.clone(),
                        tx: None,
                        load_error: Some(reason),
                        health: Arc::default(),
                    });
                    let info = entry.info();
                    self.inner
                        .plugins
                        .write()
                        .expect("plugins lock")
                        .insert(record.name.clone(), entry);
                    info
                }
            };
            out.push(info);
        }
        Ok(out)
    }

    /// Every installed plugin, by name.
    pub fn list(&self) -> Vec<PluginInfo> {
        self.inner
            .plugins
            .read()
            .expect("plugins lock")
            .values()
            .map(|e| e.info())
            .collect()
    }

    /// One installed plugin.
    pub fn info(&self, name: &str) -> Option<PluginInfo> {
        self.inner
            .plugins
            .read()
            .expect("plugins lock")
            .get(name)
            .map(|e| e.info())
    }

    /// The plugin serving resource type `type_name`.
    pub fn resource_plugin_for(
        &self,
        type_name: &str,
    ) -> Result<ResourcePluginHandle, PluginError> {
        let plugins = self.inner.plugins.read().expect("plugins lock");
        let entry = plugins
            .values()
            .find(|e| {
                e.kind == PluginKind::Resource
                    && e.description.types.iter().any(|t| t.name == type_name)
            })
            .ok_or_else(|| PluginError::NoPluginForType(type_name.to_string()))?;
        Ok(ResourcePluginHandle {
            entry: entry.clone(),
        })
    }

    /// The resource types served, with their plugin and option schema.
    pub fn resource_types(&self) -> Vec<(String, types::ResourceType)> {
        let plugins = self.inner.plugins.read().expect("plugins lock");
        plugins
            .values()
            .flat_map(|e| {
                e.description
                    .types
                    .iter()
                    .map(|t| (e.name.clone(), t.clone()))
            })
            .collect()
    }

    /// The balancer plugin named `name`, or the first installed one.
    pub fn balancer(&self, name: Option<&str>) -> Result<BalancerPluginHandle, PluginError> {
        let plugins = self.inner.plugins.read().expect("plugins lock");
        let entry = plugins
            .values()
            .find(|e| {
                e.kind == PluginKind::Balancer
                    && name.is_none_or(|n| n == e.name)
                    && e.load_error.is_none()
            })
            .ok_or(PluginError::NoBalancer)?;
        Ok(BalancerPluginHandle {
            entry: entry.clone(),
        })
    }
}

fn plugin_err(plugin: &str) -> impl FnOnce(types::Error) -> CallError + '_ {
    move |error| CallError::Plugin {
        plugin: plugin.to_string(),
        error,
    }
}

/// A resource plugin, ready to call. Keeps working on the version it was
/// obtained from; look it up again after an upgrade.
#[derive(Clone)]
pub struct ResourcePluginHandle {
    entry: Arc<Entry>,
}

impl fmt::Debug for ResourcePluginHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourcePluginHandle")
            .field("plugin", &self.entry.name)
            .finish()
    }
}

impl ResourcePluginHandle {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.entry.name
    }

    /// The plugin's description (from install time).
    pub fn description(&self) -> &PluginDescription {
        &self.entry.description
    }

    /// `validate(spec)`: warnings, or the plugin's error.
    pub async fn validate(&self, spec: ResourceSpec) -> Result<Vec<Diagnostic>, CallError> {
        let name = self.entry.name.clone();
        self.entry
            .run(move |a| {
                a.resource("validate", |s, p| {
                    p.dray_plugin_resource_provider().call_validate(s, &spec)
                })
            })
            .await?
            .map_err(plugin_err(&name))
    }

    /// `plan(spec, observed)`, checked by the host before it is returned.
    pub async fn plan(
        &self,
        spec: ResourceSpec,
        observed: Vec<ObservedObject>,
    ) -> Result<ResourcePlan, CallError> {
        let name = self.entry.name.clone();
        let plan = self
            .entry
            .run(move |a| {
                a.resource("plan", |s, p| {
                    p.dray_plugin_resource_provider()
                        .call_plan(s, &spec, &observed)
                })
            })
            .await?
            .map_err(plugin_err(&name))?;
        validate::plan(&plan).map_err(|reason| CallError::Malformed {
            plugin: name,
            what: "plan",
            reason,
        })?;
        Ok(plan)
    }

    /// `outputs(spec, realized)`, checked by the host.
    pub async fn outputs(
        &self,
        spec: ResourceSpec,
        realized: Realized,
    ) -> Result<Vec<Output>, CallError> {
        let name = self.entry.name.clone();
        let outputs = self
            .entry
            .run(move |a| {
                a.resource("outputs", |s, p| {
                    p.dray_plugin_resource_provider()
                        .call_outputs(s, &spec, &realized)
                })
            })
            .await?
            .map_err(plugin_err(&name))?;
        validate::outputs(&outputs).map_err(|reason| CallError::Malformed {
            plugin: name,
            what: "outputs",
            reason,
        })?;
        Ok(outputs)
    }

    /// `data-op(spec, realized, op)`: where and what to run for export,
    /// import or console.
    pub async fn data_op(
        &self,
        spec: ResourceSpec,
        realized: Realized,
        op: DataOpKind,
    ) -> Result<DataCommand, CallError> {
        let name = self.entry.name.clone();
        let command = self
            .entry
            .run(move |a| {
                a.resource("data-op", |s, p| {
                    p.dray_plugin_resource_provider()
                        .call_data_op(s, &spec, &realized, op)
                })
            })
            .await?
            .map_err(plugin_err(&name))?;
        validate::data_command(&command).map_err(|reason| CallError::Malformed {
            plugin: name,
            what: "data command",
            reason,
        })?;
        Ok(command)
    }
}

/// A balancer plugin, ready to call.
#[derive(Clone)]
pub struct BalancerPluginHandle {
    entry: Arc<Entry>,
}

impl fmt::Debug for BalancerPluginHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BalancerPluginHandle")
            .field("plugin", &self.entry.name)
            .finish()
    }
}

impl BalancerPluginHandle {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.entry.name
    }

    /// `configure(config)`.
    pub async fn configure(&self, config: BalancerConfig) -> Result<(), CallError> {
        let name = self.entry.name.clone();
        self.entry
            .run(move |a| {
                a.balancer("configure", |s, b| {
                    b.dray_plugin_balancer().call_configure(s, &config)
                })
            })
            .await?
            .map_err(plugin_err(&name))
    }

    /// `pick(conn, backends)`: the index of the chosen backend, or `None` to
    /// refuse the connection. An index out of range is reported as
    /// malformed.
    pub async fn pick(
        &self,
        conn: Connection,
        backends: Vec<Backend>,
    ) -> Result<Option<usize>, CallError> {
        let name = self.entry.name.clone();
        let count = backends.len();
        let pick = self
            .entry
            .run(move |a| {
                a.balancer("pick", |s, b| {
                    b.dray_plugin_balancer().call_pick(s, &conn, &backends)
                })
            })
            .await?;
        match pick {
            Some(i) if (i as usize) < count => Ok(Some(i as usize)),
            Some(i) => Err(CallError::Malformed {
                plugin: name,
                what: "pick",
                reason: format!("backend index {i} out of range (0..{count})"),
            }),
            None => Ok(None),
        }
    }
}

/// Benchmark hooks: the steps of loading and calling a plugin, timed
/// separately by `benches/plugins.rs`. Not a stable API.
#[doc(hidden)]
pub mod __bench {
    use super::*;

    /// One plugin's compiled component and pre-linked instance factory.
    pub struct Probe {
        host: PluginHost,
        sha256: String,
        pre: Pre,
        actor: Actor,
    }

    impl Probe {
        /// Install-time preparation (compiles or loads from cache).
        pub fn new(host: &PluginHost, wasm: &[u8]) -> Result<Self, PluginError> {
            let prepared = host.prepare(wasm, &Grants::default())?;
            let actor = Actor::new(
                &prepared.description.name,
                Grants::default(),
                prepared.pre.clone(),
                host.inner.env.clone(),
                Arc::default(),
            );
            Ok(Self {
                host: host.clone(),
                sha256: prepared.sha256,
                pre: prepared.pre,
                actor,
            })
        }

        /// Load from the `.cwasm` cache: deserialize (mmap), contract check,
        /// link (`instantiate_pre`). What `load_installed` does per plugin
        /// before `describe`.
        pub fn load_from_cache(&self) {
            let engine = &self.host.inner.env.engine;
            // SAFETY: the cache file was written by this host.
            let component =
                unsafe { Component::deserialize_file(engine, self.host.cache_path(&self.sha256)) }
                    .expect("cached");
            let info = contract::check(engine, &component).expect("contract");
            assert_eq!(info.kind, PluginKind::Resource);
            let pre = self
                .host
                .inner
                .linkers
                .resource
                .instantiate_pre(&component)
                .expect("link");
            ResourcePluginPre::new(pre).expect("typed");
        }

        /// A fresh store and instance (what a recycle costs).
        pub fn instantiate(&mut self) {
            self.actor = Actor::new(
                "bench",
                Grants::default(),
                self.pre.clone(),
                self.host.inner.env.clone(),
                Arc::default(),
            );
            self.actor.describe().expect("describe");
        }

        /// One raw `plan` call on the live instance (no thread hop, no host
        /// validation).
        pub fn plan(&mut self, spec: &ResourceSpec) -> ResourcePlan {
            self.actor
                .resource("plan", |s, p| {
                    p.dray_plugin_resource_provider().call_plan(s, spec, &[])
                })
                .expect("call")
                .expect("plan")
        }
    }
}
