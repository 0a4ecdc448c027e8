//! Controllers: the rules of apps, builds and releases.
//!
//! Every API call that changes state goes through here. A controller reads typed records from
//! [`crate::repo`], decides, and writes back with compare-and-swap transactions so concurrent
//! calls never lose an update. Controllers own validation and the exact error messages users
//! see; they must never speak HTTP (that is [`crate::api`]) or touch storage bytes directly.

mod apps;
mod env;
mod objects;
mod plugins;
mod processes;
mod releases;
mod resources;

use std::collections::HashMap;
use std::sync::Arc;

use dray_store::Store;

use crate::app::ReleaseCache;
use crate::config::Config;
use crate::repo::{Repo, RepoError};

pub use apps::validate_app_name;
pub use env::{env_diff, parse_env_text};
pub use plugins::{parse_dir_grant, plugin_wire, MAX_PLUGIN_BYTES};
pub use processes::{PromoteOptions, RunOptions, ScaleOptions};
pub use releases::ReleaseOptions;
pub use resources::data_op as resource_data_op;

/// How many times a compare-and-swap loop retries before giving up with a conflict.
const CAS_RETRIES: usize = 50;

/// What went wrong, in words a user can act on. The API maps each kind to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is wrong (400).
    #[error("{0}")]
    BadRequest(String),
    /// The thing named does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// The request is well-formed but cannot be carried out (422).
    #[error("{0}")]
    Unprocessable(String),
    /// The agent failed (500).
    #[error("{0}")]
    Internal(String),
}

impl From<RepoError> for Error {
    fn from(e: RepoError) -> Self {
        Error::Internal(e.to_string())
    }
}

impl From<dray_store::StoreError> for Error {
    fn from(e: dray_store::StoreError) -> Self {
        Error::Internal(e.to_string())
    }
}

/// The controllers, sharing one repository and the agent's configuration.
#[derive(Clone)]
pub struct Controllers {
    repo: Repo,
    /// Releases parsed once, shared with the resources reconciler (and, later, the node and the
    /// deployer).
    releases: ReleaseCache,
    config: Arc<Config>,
    app_locks: AppLocks,
    objects: crate::objects::Objects,
    node: Option<Arc<crate::node::Node>>,
    /// The plugin host (possibly still loading), or why there is none.
    plugins: crate::plugins::PluginSlot,
    /// The resource reconciler (absent without containerd).
    resources: Option<Arc<crate::resources::Resources>>,
}

/// One async mutex per app, so this agent's writes to one app queue instead of colliding in
/// compare-and-swap retries. The store's revisions still guard correctness across agents.
#[derive(Clone, Default)]
struct AppLocks(Arc<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>);

impl AppLocks {
    async fn lock(&self, app: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            // A poisoned map only means another thread panicked while inserting; the map
            // itself is still usable.
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() > 10_000 {
                map.retain(|_, m| Arc::strong_count(m) > 1);
            }
            map.entry(app.to_string()).or_default().clone()
        };
        m.lock_owned().await
    }
}

impl Controllers {
    pub fn new(store: Arc<dyn Store>, config: Config) -> Self {
        let repo = Repo::new(store);
        Controllers {
            releases: ReleaseCache::new(repo.clone()),
            repo,
            objects: crate::objects::Objects::new(config.data_dir.join("objects")),
            config: Arc::new(config),
            app_locks: AppLocks::default(),
            node: None,
            plugins: crate::plugins::PluginSlot::unavailable(
                "this agent runs without a plugin host",
            ),
            resources: None,
        }
    }

    /// The cache of parsed releases these controllers read through (hand the same one to the
    /// resources reconciler, the node and the deployer, so each release is parsed once per agent).
    pub fn releases_cache(&self) -> &ReleaseCache {
        &self.releases
    }

    /// Attach the resource reconciler.
    pub fn with_resources(mut self, resources: Arc<crate::resources::Resources>) -> Self {
        self.resources = Some(resources);
        self
    }

    /// The resource reconciler, or an error naming what is missing.
    pub(crate) fn resources_runner(&self) -> Result<&Arc<crate::resources::Resources>, Error> {
        self.resources
            .as_ref()
            .ok_or_else(|| Error::Internal("this agent runs without containerd".into()))
    }

    /// Attach the plugin host.
    pub fn with_plugins(mut self, plugins: crate::plugins::PluginSlot) -> Self {
        self.plugins = plugins;
        self
    }

    /// Attach this instance's node executor (without one, process calls fail with a clear
    /// error).
    pub fn with_node(mut self, node: Arc<crate::node::Node>) -> Self {
        self.node = Some(node);
        self
    }

    /// The node executor, or an error naming what is missing.
    pub(crate) fn node(&self) -> Result<&Arc<crate::node::Node>, Error> {
        self.node
            .as_ref()
            .ok_or_else(|| Error::Internal("this agent runs without containerd".into()))
    }

    /// The agent's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// `GET /system`.
    pub fn system(&self) -> dray_sdk::System {
        dray_sdk::System {
            name: self.config.rack.clone(),
            domain: self.config.domain.clone(),
            provider: "dray".into(),
            status: "running".into(),
            version: crate::VERSION.into(),
            count: 1,
            region: String::new(),
            kind: "single-node".into(),
            parameters: Default::default(),
            outputs: Default::default(),
        }
    }

    /// A build of an app.
    pub async fn build(&self, app: &str, id: &str) -> Result<dray_sdk::Build, Error> {
        self.app_record(app).await?;
        self.repo
            .build(app, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("build not found: {id}")))
    }

    /// An app's builds, newest first, at most `limit` (default 10).
    pub async fn builds(
        &self,
        app: &str,
        limit: Option<usize>,
    ) -> Result<Vec<dray_sdk::Build>, Error> {
        self.app_record(app).await?;
        let mut builds = self.repo.builds(app).await?;
        builds.truncate(limit.unwrap_or(10));
        Ok(builds)
    }
}
