//! drayd, the Dray rack agent, as a library.
//!
//! The binary (`main.rs`) only parses flags and calls [`Agent::start`]; everything else lives
//! here so the end-to-end tests and benchmarks can run the same code.
//!
//! Data flows one way: [`api`] (HTTP, auth) → [`controllers`] (the rules of apps, builds and
//! releases) → [`repo`] (typed records) → `dray_store::Store` (bytes and revisions). See
//! ARCHITECTURE.md at the repository root for the bird's-eye view.

pub mod api;
pub mod app;
pub mod config;
pub mod controllers;
pub mod deploy;
pub mod ids;
pub mod logging;
pub mod logs;
pub mod metrics;
pub mod node;
pub mod objects;
pub mod plugins;
pub mod repo;
pub mod resources;
pub mod store_metrics;

use std::net::SocketAddr;
use std::sync::Arc;

use dray_store::sqlite::SqliteStore;
use dray_store::Store;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use config::Config;

/// The agent's version, reported by `GET /system`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open the store at {path}: {source}")]
    Store {
        path: String,
        source: dray_store::StoreError,
    },
    #[error("cannot read or write the API token file {path}: {source}")]
    Token {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Runtime(#[from] dray_runtime::RuntimeError),
    #[error("cannot re-adopt running processes: {0}")]
    Adopt(String),
    #[error("cannot read or create the rack id in the store: {0}")]
    RackId(repo::RepoError),
    /// The containerd namespace is another agent's (its containers carry another rack id).
    #[error("containerd namespace {namespace:?} holds the containers of another rack (id {rack}): give this agent its own namespace with --containerd-namespace NAME (or DRAY_CONTAINERD_NAMESPACE)")]
    ForeignRack { namespace: String, rack: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// A running agent: its API server and the state it shares with the handlers.
pub struct Agent {
    addr: SocketAddr,
    token: String,
    generated_token: bool,
    server: JoinHandle<std::io::Result<()>>,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl Agent {
    /// Open the store, settle the rack id and the API token, check that the containerd
    /// namespace is this rack's, and start serving on `config.listen`.
    pub async fn start(mut config: Config) -> Result<Agent, StartError> {
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|source| StartError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        restrict_dir(&data_dir);

        let db = data_dir.join("state.db");
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&db).map_err(|source| StartError::Store {
                path: db.display().to_string(),
                source,
            })?);

        // The rack id, before anything else reads the config: generated on the first start,
        // created with a compare-and-swap so agents sharing a store agree on one.
        let repo = repo::Repo::new(store.clone());
        config.rack_id = repo
            .rack_id(&ids::rack_id())
            .await
            .map_err(StartError::RackId)?;

        let (token, generated_token) = config::settle_token(&config)?;

        let listener =
            TcpListener::bind(&config.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: config.listen.clone(),
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: config.listen.clone(),
            source,
        })?;

        let runtime =
            dray_runtime::Runtime::connect(&config.containerd_socket, &config.containerd_namespace)
                .await?
                .with_fifo_dir(data_dir.join("fifo"));
        check_namespace(&runtime, &config).await?;
        let registry = metrics::Registry::default();
        let store: Arc<dyn Store> = Arc::new(store_metrics::CountingStore::new(store, &registry));
        let repo = repo::Repo::new(store.clone());
        // The controllers own the cache of parsed releases; the resources reconciler reads
        // through the same one, so each release's manifest is parsed once per agent.
        let controllers = controllers::Controllers::new(store.clone(), config.clone());
        let releases = controllers.releases_cache().clone();
        let options = node::Options {
            policy: node::backoff::BackoffPolicy {
                initial: config.crash_backoff,
                ..Default::default()
            },
            ..Default::default()
        };
        let node = node::Node::new(
            runtime.clone(),
            repo.clone(),
            releases.clone(),
            Arc::new(config.clone()),
            &registry,
            options.clone(),
        );
        let adopted = node
            .adopt()
            .await
            .map_err(|e| StartError::Adopt(e.to_string()))?;
        // Plugins load in the background: the API serves at once, plugin requests wait for
        // them, and a host that cannot start leaves the rack running without plugins (the
        // reason is logged and every plugin request answers with it).
        let plugins =
            plugins::PluginSlot::start(data_dir.clone(), config.plugins_dir.clone(), store.clone());
        // Resources: the plugins plan, this reconciler carries the plans out. Their ports are
        // taken before any process starts.
        let resources = resources::Resources::new(
            runtime,
            releases.clone(),
            Arc::new(config.clone()),
            plugins.clone(),
            node.clone(),
            options.logger_path,
            options.policy,
        );
        if let Err(e) = resources.reserve_ports().await {
            tracing::warn!(error = %e, "cannot read the resources' ports");
        }
        tokio::spawn(node.clone().run());
        tracing::info!(adopted, instance = %config.instance, "node running");
        let deployer = deploy::Deployer::new(repo, releases.clone(), Arc::new(config.clone()));
        tokio::spawn(deployer.clone().run());
        tokio::spawn(resources.clone().run());
        let controllers = controllers
            .with_node(node)
            .with_plugins(plugins)
            .with_resources(resources);
        let app = api::router(api::ApiState::new(controllers, token.clone(), registry));
        let (shutdown, mut rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                })
                .await
        });
        tracing::info!(%addr, rack = %config.rack, rack_id = %config.rack_id, data_dir = %data_dir.display(), "drayd listening");
        Ok(Agent {
            addr,
            token,
            generated_token,
            server,
            shutdown,
        })
    }

    /// The address the API listens on (useful with `--listen 127.0.0.1:0`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API token in force.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Whether the token was generated by this start (first start without `--token`).
    pub fn generated_token(&self) -> bool {
        self.generated_token
    }

    /// Stop accepting requests, finish the ones in flight, and return.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.shutdown.send(true);
        match self.server.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }

    /// Serve until the server stops by itself (it does not, unless it fails).
    pub async fn wait(self) -> std::io::Result<()> {
        match self.server.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// Refuse a containerd namespace that holds another rack's containers: two agents on one
/// namespace would stop each other's containers as orphans. Before anything is adopted.
///
/// A container with `dray.app` and no `dray.rack` label was made by a Dray version before rack
/// ids: it is adopted as this rack's (and carries no label until it is replaced).
async fn check_namespace(
    runtime: &dray_runtime::Runtime,
    config: &Config,
) -> Result<(), StartError> {
    let foreign = runtime
        .list(&[])
        .await?
        .into_iter()
        .filter(|c| c.labels.contains_key(node::labels::APP))
        .find_map(|c| {
            c.labels
                .get(node::labels::RACK)
                .filter(|rack| **rack != config.rack_id)
                .cloned()
        });
    match foreign {
        Some(rack) => Err(StartError::ForeignRack {
            namespace: config.containerd_namespace.clone(),
            rack,
        }),
        None => Ok(()),
    }
}

#[cfg(unix)]
fn restrict_dir(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)) {
        tracing::warn!(path = %path.display(), error = %e, "cannot restrict the data directory to its owner");
    }
}

#[cfg(not(unix))]
fn restrict_dir(_path: &std::path::Path) {}
