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
use crate::repo::{Repo, RepoError, UpdateError};

pub use apps::validate_app_name;
pub use env::{env_diff, parse_env_text};
pub use plugins::{parse_dir_grant, plugin_wire, MAX_PLUGIN_BYTES};
pub use processes::{PromoteOptions, RunOptions, ScaleOptions};
pub use releases::ReleaseOptions;
pub use resources::data_op as resource_data_op;

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
        match e {
            // Other writers won every attempt: the request may succeed when repeated.
            RepoError::Conflict { .. } => Error::Conflict(e.to_string()),
            RepoError::Corrupt { .. } => Error::Internal(format!(
                "{e}; the agent left it untouched: repair or delete that key in the store \
                 (state.db in the data directory), or restore the store from a backup"
            )),
            RepoError::Store(_) => Error::Internal(e.to_string()),
        }
    }
}

impl From<UpdateError<Error>> for Error {
    fn from(e: UpdateError<Error>) -> Self {
        match e {
            UpdateError::Rejected(e) => e,
            UpdateError::Repo(e) => e.into(),
        }
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

#[cfg(test)]
mod tests {
    use dray_sdk::Build;
    use dray_store::sqlite::SqliteStore;

    use super::*;
    use crate::repo;

    fn store(dir: &std::path::Path) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(&dir.join("state.db")).unwrap())
    }

    #[tokio::test]
    async fn running_out_of_attempts_is_a_conflict_naming_the_app() {
        let dir = tempfile::tempdir().unwrap();
        let inner = store(dir.path());
        let c = Controllers::new(inner.clone(), Config::for_data_dir(dir.path()));
        c.app_create("myapp").await.unwrap();
        // Another writer rewrites the app record before every compare-and-swap.
        let contended = Controllers::new(
            Arc::new(repo::testing::ContendedStore {
                inner,
                key: repo::app_key("myapp"),
            }),
            Config::for_data_dir(dir.path()),
        );
        let err = contended.app_lock("myapp", true).await.unwrap_err();
        let Error::Conflict(m) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(
            m,
            "app myapp kept changing while this request tried to update it (50 attempts): try again"
        );
        let err = contended.app_delete("myapp").await.unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "{err:?}");
        assert!(!c.app("myapp").await.unwrap().locked);
    }

    #[tokio::test]
    async fn a_corrupt_scale_record_is_reported_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let c = Controllers::new(store(dir.path()), Config::for_data_dir(dir.path()));
        c.app_create("myapp").await.unwrap();
        let build = Build {
            id: "BABCDEFGHIJ".into(),
            app: "myapp".into(),
            manifest: "services:\n  web:\n    port: 3000\n  worker:\n    command: work\n".into(),
            status: "complete".into(),
            ..Default::default()
        };
        c.repo
            .store()
            .put(&repo::build_key("myapp", &build.id), repo::encode(&build))
            .await
            .unwrap();
        let release = c
            .release_create(
                "myapp",
                ReleaseOptions {
                    build: Some(build.id.clone()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        c.repo
            .update_app("myapp", |r| {
                r.release = release.id.clone();
                true
            })
            .await
            .unwrap();
        let scale = |count| ScaleOptions {
            count: Some(count),
            ..Default::default()
        };
        c.scale("myapp", "worker", scale(3)).await.unwrap();
        let key = repo::scale_key("myapp");
        let mut bytes = c.repo.store().get(&key).await.unwrap().unwrap().value;
        bytes.truncate(bytes.len() - 1); // a torn write
        c.repo.store().put(&key, bytes.clone()).await.unwrap();

        let err = c.scale("myapp", "web", scale(2)).await.unwrap_err();
        let Error::Internal(m) = &err else {
            panic!("{err:?}")
        };
        assert!(m.starts_with(&format!("corrupt record at {key}: ")), "{m}");
        assert!(m.contains("EOF while parsing"), "{m}");
        assert!(m.contains("left it untouched"), "{m}");
        assert_eq!(
            c.repo.store().get(&key).await.unwrap().unwrap().value,
            bytes,
            "the record is not overwritten"
        );
        // Reading the services reports it too, instead of showing the manifest's scale.
        assert!(matches!(c.services("myapp").await, Err(Error::Internal(_))));
    }
}
