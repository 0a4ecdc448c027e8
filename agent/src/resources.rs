//! Resources: the agent carries out what resource plugins plan.
//!
//! For every `resources:` entry of an app's active or deploying release, the reconciler
//! ([`Resources::run`]) asks the plugin serving its `type` for a plan, then acts on it
//! idempotently:
//!
//! * containers are created from the plan (host networking, the resource's allocated port,
//!   persistent volumes bound from `DATA_DIR/volumes/<app>/<resource>/<volume>`, the pids limit,
//!   output through the `binary://` logger into `DATA_DIR/logs/<app>/resource.<name>.<object>/`),
//!   labelled so they are found again after an agent restart, replaced when the plan for them
//!   changes (the label `dray.hash`), restarted with backoff when they exit, and removed when
//!   the plan no longer lists them;
//! * cloud databases are created, polled and deleted through `dray-cloud` (cargo feature `aws`);
//! * once every object runs and passes its health check, the plugin's `outputs` (`URL`, `USER`,
//!   `PASS`, ...) are written to the resource's record in the store, where the planner and the node pick
//!   them up for the services that link the resource.
//!
//! A resource whose `<NAME>_URL` the user set in the app's env is not run at all (Convox's
//! override): it links that URL. A resource that leaves the manifest has its objects removed;
//! its volumes stay until the app is deleted, so data is never lost by a manifest edit.
//!
//! This module decides nothing about what a resource looks like (the plugin does), never speaks
//! containerd or wasmtime itself (`dray-runtime` and `dray-plugins` do) and is the only writer of
//! resource records.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use dray_plugins::types::{
    self, ContainerSpec as PlannedContainer, DataOpKind, DesiredObject, Endpoint, KeyValue,
    ObjectState, ObservedObject, Probe, Realized, ResourcePlan, ResourceSpec,
};
use dray_plugins::ResourcePluginHandle;
use dray_runtime::{ContainerInfo, ContainerSpec, ExecSpec, Log, Mount, Runtime, TaskStatus};
use rand::Rng;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;

use crate::app::ReleaseCache;
use crate::config::Config;
use crate::node::backoff::{Backoff, BackoffPolicy};
use crate::node::Node;
use crate::plugins::PluginSlot;
use crate::repo::{AppRecord, Repo, ResourceObject, ResourceOutput, ResourceRecord};

/// Container labels of resource objects.
pub mod labels {
    pub use crate::node::labels::{APP, PORT, TYPE};
    /// The resource name.
    pub const RESOURCE: &str = "dray.resource";
    /// The object's name in the plan.
    pub const OBJECT: &str = "dray.object";
    /// Hash of the planned object.
    pub const HASH: &str = "dray.hash";
    /// The value of [`TYPE`] on resource containers.
    pub const TYPE_RESOURCE: &str = "resource";
}

/// The address services use to reach resources (host networking on one node).
pub const INSTANCE_IP: &str = "127.0.0.1";

/// How long a replaced or removed resource container gets between its stop signal and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// The stop signal of resource containers: SIGINT, the official postgres image's STOPSIGNAL
/// (a "fast" shutdown: SIGTERM would wait for every client to disconnect); redis and memcached
/// shut down cleanly on it too.
const STOP_SIGNAL: u32 = 2;

/// How long a resource container may stay created-but-not-running before it is replaced.
const STUCK_AFTER: Duration = Duration::from_secs(60);

/// The longest a health probe may take, whatever the plan says (probes run one after another).
const MAX_PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a resource request failed.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    NotReady(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("store: {0}")]
    Repo(#[from] crate::repo::RepoError),
    #[error("{0}")]
    Runtime(#[from] dray_runtime::RuntimeError),
}

/// What the reconciler remembers about a resource container between passes (rebuilt after a
/// restart: an adopted container counts as past its start period).
#[derive(Debug)]
struct Live {
    started_at: Instant,
    healthy: bool,
    failures: u32,
    last_probe: Option<Instant>,
    backoff: Backoff,
    restart_at: Option<Instant>,
    exit_code: Option<u32>,
    /// The last failure to start the container and when to try again (with the crash backoff,
    /// so a missing image is not asked for every second).
    start_error: Option<(Instant, String)>,
}

impl Live {
    fn new(started_at: Instant) -> Live {
        Live {
            started_at,
            healthy: false,
            failures: 0,
            last_probe: None,
            backoff: Backoff::default(),
            restart_at: None,
            exit_code: None,
            start_error: None,
        }
    }
}

/// A resource as one release's manifest declares it (parsed once, in [`crate::app`]).
pub use crate::app::Declared;

/// The resource reconciler, shared by the API and its own loop.
pub struct Resources {
    runtime: Runtime,
    repo: Repo,
    config: Arc<Config>,
    plugins: PluginSlot,
    node: Arc<Node>,
    /// Releases parsed once (the controllers' cache: the same `Arc`s).
    releases: ReleaseCache,
    logger_path: PathBuf,
    policy: BackoffPolicy,
    wake: Notify,
    live: Mutex<HashMap<String, Live>>,
    #[cfg(feature = "aws")]
    rds: tokio::sync::OnceCell<dray_cloud::Rds>,
}

impl Resources {
    /// The reconciler. It reads releases through `releases` (the agent's one cache, so a
    /// manifest is parsed once) and reads and writes resource records through its repo.
    pub fn new(
        runtime: Runtime,
        releases: ReleaseCache,
        config: Arc<Config>,
        plugins: PluginSlot,
        node: Arc<Node>,
        logger_path: PathBuf,
        policy: BackoffPolicy,
    ) -> Arc<Resources> {
        Arc::new(Resources {
            runtime,
            repo: releases.repo().clone(),
            config,
            plugins,
            node,
            releases,
            logger_path,
            policy,
            wake: Notify::new(),
            live: Mutex::new(HashMap::new()),
            #[cfg(feature = "aws")]
            rds: tokio::sync::OnceCell::new(),
        })
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Before a promote: failed resources of the app get a fresh try (their failure may have
    /// been fixed since: an image imported, a plugin installed), so the deploy does not fail on
    /// a stale reason. Then wake the loop.
    pub async fn retry_failed(&self, app: &str) -> Result<(), ResourceError> {
        let prefix = format!("{app}.resource.");
        for (id, l) in self.live().iter_mut() {
            if id.starts_with(&prefix) {
                l.start_error = None;
            }
        }
        for mut rec in self.repo.resources(Some(app)).await? {
            if rec.status == "failed" {
                rec.status = "pending".into();
                rec.reason.clear();
                rec.updated = Utc::now();
                self.repo.put_resource(&rec).await?;
            }
        }
        self.wake();
        Ok(())
    }

    /// Ask the loop to reconcile now (a promote, a plugin install).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Mark the ports of existing resources as taken (before any process is started: a resource
    /// whose container is down must get its port back).
    pub async fn reserve_ports(&self) -> Result<(), ResourceError> {
        for r in self
            .repo
            .resources(None)
            .await?
            .iter()
            .filter(|r| r.port != 0)
        {
            self.node.ports().reserve(r.port);
        }
        Ok(())
    }

    /// The loop: a pass on every wake-up and every second, until the process exits.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tick.tick() => {}
            }
            if let Err(e) = self.reconcile_all().await {
                tracing::warn!(error = %e, "resource reconcile failed; retrying");
            }
        }
    }

    /// The resources an app's active and deploying releases declare, by name (`None` when a
    /// release cannot be read: then nothing of the app is torn down).
    async fn declared(&self, app: &AppRecord) -> Option<BTreeMap<String, Declared>> {
        let mut out = BTreeMap::new();
        for id in [&app.release, &app.deploying] {
            if id.is_empty() {
                continue;
            }
            let release = match self.releases.get(&app.name, id).await {
                Ok(Some(r)) => r,
                _ => return None,
            };
            for d in release.declared().ok()? {
                out.insert(d.name.clone(), d.clone());
            }
        }
        Some(out)
    }

    async fn reconcile_all(&self) -> Result<(), ResourceError> {
        let apps = self.repo.apps().await?;
        let records = self.repo.resources(None).await?;
        let mut records: BTreeMap<(String, String), ResourceRecord> = records
            .into_iter()
            .map(|r| ((r.app.clone(), r.name.clone()), r))
            .collect();
        let containers: HashMap<String, ContainerInfo> = self
            .runtime
            .list(&[(labels::TYPE, labels::TYPE_RESOURCE)])
            .await?
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        let mut keep: BTreeSet<(String, String)> = BTreeSet::new();
        let app_names: BTreeSet<&str> = apps.iter().map(|a| a.name.as_str()).collect();
        let mut work = Vec::new();
        for app in &apps {
            let Some(declared) = self.declared(app).await else {
                keep.extend(
                    records
                        .keys()
                        .filter(|(a, _)| a == &app.name)
                        .cloned()
                        .collect::<Vec<_>>(),
                );
                continue;
            };
            for (name, d) in declared {
                let key = (app.name.clone(), name);
                let rec = records.remove(&key);
                keep.insert(key);
                work.push((d, rec));
            }
        }
        // A few at a time: a plugin call that runs to its deadline or a slow probe holds up only
        // its own resource.
        {
            use futures::StreamExt;
            let containers = &containers;
            futures::stream::iter(work)
                .for_each_concurrent(4, |(d, rec)| async move {
                    self.reconcile_one(&d, rec, containers).await;
                })
                .await;
        }
        // Resources no release declares any more: remove their objects, keep their data.
        for ((app, _), rec) in records {
            if keep.contains(&(rec.app.clone(), rec.name.clone())) {
                continue;
            }
            self.teardown(&rec, &containers).await;
            if !app_names.contains(app.as_str()) {
                self.delete_volumes(&app);
            }
        }
        // Containers of resources that have no record (a crash between create and write).
        for c in containers.values() {
            let app = c.labels.get(labels::APP).cloned().unwrap_or_default();
            let name = c.labels.get(labels::RESOURCE).cloned().unwrap_or_default();
            if !keep.contains(&(app.clone(), name)) && !self.is_known(&c.id) {
                tracing::info!(container = %c.id, "removing a resource container nothing declares");
                self.remove_container(&c.id).await;
                if !app_names.contains(app.as_str()) {
                    self.delete_volumes(&app);
                }
            }
        }
        Ok(())
    }

    fn is_known(&self, container: &str) -> bool {
        self.live().contains_key(container)
    }

    /// Carry out one resource and save its record when it changed.
    async fn reconcile_one(
        &self,
        d: &Declared,
        rec: Option<ResourceRecord>,
        containers: &HashMap<String, ContainerInfo>,
    ) {
        let now = Utc::now();
        let before = rec.clone();
        let mut rec = rec.unwrap_or_else(|| ResourceRecord {
            app: d.app.clone(),
            name: d.name.clone(),
            kind: d.kind.clone(),
            status: "pending".into(),
            created: now,
            updated: now,
            ..Default::default()
        });
        rec.kind = d.kind.clone();
        if let Some(url) = &d.override_url {
            if !rec.objects.is_empty() && self.teardown_objects(&rec, containers).await.is_ok() {
                rec.objects.clear();
            }
            rec.status = "overridden".into();
            rec.reason = format!(
                "{}_URL is set in the app's env",
                dray_manifest::env_prefix(&d.name)
            );
            rec.outputs = ["URL", "USER", "PASS", "HOST", "PORT", "NAME"]
                .iter()
                .map(|k| ResourceOutput {
                    key: k.to_string(),
                    value: if *k == "URL" {
                        url.clone()
                    } else {
                        String::new()
                    },
                    secret: *k == "URL",
                })
                .collect();
        } else if rec.status == "overridden" {
            // `<NAME>_URL` was unset: the override's values must not be linked any more.
            rec.outputs.clear();
            rec.status = "pending".into();
            rec.reason.clear();
        } else if let Err(reason) = self.carry_out(d, &mut rec, containers).await {
            if rec.status != "failed" || rec.reason != reason {
                crate::logs::system(
                    &self.config,
                    &d.app,
                    &format!("resource {} failed: {reason}", d.name),
                );
            }
            rec.status = "failed".into();
            rec.reason = reason;
        }
        let changed = before.as_ref().is_none_or(|b| {
            let mut b = b.clone();
            b.updated = rec.updated;
            b != rec
        });
        if changed {
            let was = before.as_ref().map(|b| b.status.as_str()).unwrap_or("");
            if was != rec.status && rec.status == "running" {
                let url = rec
                    .outputs
                    .iter()
                    .find(|o| o.key == "HOST")
                    .map(|h| h.value.clone())
                    .unwrap_or_default();
                let port = rec.port;
                crate::logs::system(
                    &self.config,
                    &d.app,
                    &format!(
                        "resource {} ({}) is running at {url}:{port}",
                        d.name, d.kind
                    ),
                );
            }
            rec.updated = now;
            if let Err(e) = self.repo.put_resource(&rec).await {
                tracing::warn!(app = %d.app, resource = %d.name, error = %e, "cannot save the resource record");
            }
        }
    }

    /// The spec a plugin sees for a declared resource.
    fn spec(d: &Declared, port: u16) -> ResourceSpec {
        ResourceSpec {
            app: d.app.clone(),
            name: d.name.clone(),
            type_name: d.kind.clone(),
            options: d
                .options
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            image: d.image.clone(),
            port,
        }
    }

    async fn plugin_for(&self, kind: &str) -> Result<ResourcePluginHandle, String> {
        let plugins = self.plugins.get().await.map_err(|e| e.to_string())?;
        plugins.host().resource_plugin_for(kind).map_err(|e| {
            format!("{e}; install a plugin that serves it with `dray plugins install FILE.wasm`")
        })
    }

    /// Plan and act; Err is the reason the resource failed.
    async fn carry_out(
        &self,
        d: &Declared,
        rec: &mut ResourceRecord,
        containers: &HashMap<String, ContainerInfo>,
    ) -> Result<(), String> {
        let handle = self.plugin_for(&d.kind).await?;
        rec.plugin = handle.name().to_string();
        if rec.port == 0 {
            rec.port = self
                .node
                .ports()
                .allocate()
                .ok_or("no free host port left in the port range")?;
            // Keep the port before anything uses it.
            rec.status = "provisioning".into();
            rec.updated = Utc::now();
            self.repo
                .put_resource(rec)
                .await
                .map_err(|e| format!("cannot save the resource record: {e}"))?;
        }
        let spec = Self::spec(d, rec.port);
        let observed = self.observe(rec, containers);
        let plan = handle
            .plan(spec.clone(), observed)
            .await
            .map_err(|e| e.to_string())?;
        rec.plan = serde_json::to_value(&plan).unwrap_or_default();
        let mut objects = Vec::new();
        let mut ready = true;
        let mut waiting = Vec::new();
        for object in &plan.objects {
            let (o, ok) = match object {
                DesiredObject::Container(c) => self.ensure_container(d, rec, c, containers).await?,
                DesiredObject::CloudDatabase(db) => self.ensure_cloud(d, db).await?,
            };
            if !ok {
                ready = false;
                waiting.push(o.name.clone());
            }
            objects.push(o);
        }
        // Objects the plan no longer lists (kept in the record until they are really gone).
        for old in &rec.objects {
            if !objects.iter().any(|o| o.id == old.id) && self.remove_object(old).await.is_err() {
                objects.push(old.clone());
            }
        }
        rec.objects = objects;
        if !ready {
            rec.status = if rec.outputs.is_empty() {
                "provisioning".into()
            } else {
                "unhealthy".into()
            };
            rec.reason = {
                let live = self.live();
                let parts: Vec<String> = waiting
                    .iter()
                    .map(|name| {
                        let id = container_id(&d.app, &d.name, name);
                        match live.get(&id) {
                            Some(l) if l.restart_at.is_some() => format!(
                                "{name} exited with code {}; restarting in {}s",
                                l.exit_code
                                    .map(|c| c.to_string())
                                    .unwrap_or_else(|| "?".into()),
                                l.restart_at
                                    .map(|t| t.saturating_duration_since(Instant::now()).as_secs())
                                    .unwrap_or(0)
                            ),
                            Some(l) if l.failures > 0 => {
                                format!("{name} failed {} health checks", l.failures)
                            }
                            _ => format!("{name} is starting"),
                        }
                    })
                    .collect();
                format!("waiting: {}", parts.join(", "))
            };
            return Ok(());
        }
        let realized = realized(rec);
        let outputs = handle
            .outputs(spec, realized)
            .await
            .map_err(|e| e.to_string())?;
        rec.outputs = outputs
            .into_iter()
            .map(|o| ResourceOutput {
                key: o.key,
                value: o.value,
                secret: o.secret,
            })
            .collect();
        rec.status = "running".into();
        rec.reason.clear();
        Ok(())
    }

    fn observe(
        &self,
        rec: &ResourceRecord,
        containers: &HashMap<String, ContainerInfo>,
    ) -> Vec<ObservedObject> {
        let live = self.live();
        rec.objects
            .iter()
            .map(|o| {
                if o.kind != "container" {
                    return ObservedObject {
                        name: o.name.clone(),
                        state: if o.host.is_empty() {
                            ObjectState::Pending
                        } else {
                            ObjectState::Running
                        },
                        healthy: !o.host.is_empty(),
                        version: Some(o.version.clone()).filter(|v| !v.is_empty()),
                        detail: None,
                    };
                }
                let c = containers.get(&o.id);
                let task = c.and_then(|c| c.task.as_ref());
                let state = match task.map(|t| t.status) {
                    None if c.is_none() => ObjectState::Missing,
                    Some(TaskStatus::Running) => ObjectState::Running,
                    Some(TaskStatus::Stopped) => ObjectState::Stopped,
                    _ => ObjectState::Pending,
                };
                ObservedObject {
                    name: o.name.clone(),
                    state,
                    healthy: live.get(&o.id).is_some_and(|l| l.healthy),
                    version: c.map(|c| c.image.clone()),
                    detail: task
                        .and_then(|t| t.exit_status)
                        .map(|code| format!("exit code {code}")),
                }
            })
            .collect()
    }

    /// Make one planned container exist, run and be healthy. Returns its object and whether it
    /// is ready; Err when it cannot be started at all.
    async fn ensure_container(
        &self,
        d: &Declared,
        rec: &ResourceRecord,
        c: &PlannedContainer,
        containers: &HashMap<String, ContainerInfo>,
    ) -> Result<(ResourceObject, bool), String> {
        // Host networking: the only port that is the resource's is the one allocated for it.
        if let Some(p) = c.ports.iter().find(|p| p.number != rec.port) {
            return Err(format!(
                "plugin {} planned port {} ({}) for container {}, but a resource listens only on \
                 the port the agent allocated for it ({})",
                rec.plugin, p.number, p.name, c.name, rec.port
            ));
        }
        let id = container_id(&d.app, &d.name, &c.name);
        let hash = plan_hash(c);
        let port = c.ports.first().map(|p| p.number).unwrap_or(rec.port);
        let object = ResourceObject {
            name: c.name.clone(),
            kind: "container".into(),
            id: id.clone(),
            version: c.image.clone(),
            hash: hash.clone(),
            host: INSTANCE_IP.into(),
            port,
        };
        let mut existing = containers.get(&id);
        if let Some(ex) = existing {
            if ex.labels.get(labels::HASH) != Some(&hash) {
                // Keep the running container until its replacement can start at all.
                if let Err(e) = self.runtime.image_config(&c.image).await {
                    return Err(format!(
                        "cannot replace container {} (kept running): image {}: {e}; load it with \
                         `dray images import FILE.tar`",
                        c.name, c.image
                    ));
                }
                crate::logs::system(
                    &self.config,
                    &d.app,
                    &format!(
                        "resource {}: replacing container {} (its plan changed)",
                        d.name, c.name
                    ),
                );
                self.stop_container(&id).await;
                existing = None;
            }
        }
        let now = Instant::now();
        match existing.and_then(|c| c.task.as_ref()).map(|t| t.status) {
            Some(TaskStatus::Running) => {
                let probe = {
                    let mut live = self.live();
                    let l = live.entry(id.clone()).or_insert_with(|| {
                        // Adopted after an agent restart: past its start period.
                        Live::new(now - Duration::from_secs(3600))
                    });
                    let interval = c
                        .health
                        .as_ref()
                        .map(|h| Duration::from_millis(u64::from(h.interval_ms.max(200))))
                        .unwrap_or(Duration::from_secs(2));
                    l.last_probe.is_none_or(|t| t.elapsed() >= interval) || !l.healthy
                };
                if probe {
                    self.probe(d, &id, c).await;
                }
                let healthy = self.live().get(&id).is_some_and(|l| l.healthy);
                Ok((object, healthy))
            }
            Some(TaskStatus::Created) | Some(TaskStatus::Paused) | Some(TaskStatus::Unknown) => {
                // Normally a moment between create and start; one stuck there (the agent died
                // in between) is replaced after a minute.
                let stuck = {
                    let mut live = self.live();
                    let l = live.entry(id.clone()).or_insert_with(|| Live::new(now));
                    l.started_at.elapsed() > STUCK_AFTER
                };
                if stuck {
                    tracing::warn!(container = %id, "resource container stuck before running; replacing it");
                    self.stop_container(&id).await;
                    self.start_container(d, rec, c, &id, &hash).await?;
                }
                Ok((object, false))
            }
            Some(TaskStatus::Stopped) | None if existing.is_some() => {
                // It exited: restart it after its backoff delay.
                let code = existing
                    .and_then(|c| c.task.as_ref())
                    .and_then(|t| t.exit_status);
                let due = {
                    let mut live = self.live();
                    let l = live.entry(id.clone()).or_insert_with(|| Live::new(now));
                    match l.restart_at {
                        Some(t) => t <= now,
                        None => {
                            let delay = l.backoff.crashed(
                                &self.policy,
                                l.started_at,
                                now,
                                rand::rng().random::<f64>(),
                            );
                            l.restart_at = Some(now + delay);
                            l.exit_code = code;
                            l.healthy = false;
                            crate::logs::system(
                                &self.config,
                                &d.app,
                                &format!(
                                    "resource {}: container {} exited with code {}; restarting in {}s",
                                    d.name,
                                    c.name,
                                    code.map(|c| c.to_string()).unwrap_or_else(|| "?".into()),
                                    delay.as_secs()
                                ),
                            );
                            delay.is_zero()
                        }
                    }
                };
                if due {
                    if let Err(e) = self.runtime.remove(&id).await {
                        tracing::warn!(container = %id, error = %e, "cannot remove an exited resource container");
                    }
                    self.start_container(d, rec, c, &id, &hash).await?;
                }
                Ok((object, false))
            }
            _ => {
                self.start_container(d, rec, c, &id, &hash).await?;
                Ok((object, false))
            }
        }
    }

    async fn start_container(
        &self,
        d: &Declared,
        rec: &ResourceRecord,
        c: &PlannedContainer,
        id: &str,
        hash: &str,
    ) -> Result<(), String> {
        let mut spec = ContainerSpec::new(id, c.image.clone());
        spec.entrypoint = c.entrypoint.clone();
        spec.args = c.command.clone();
        spec.env = c
            .env
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect();
        spec.memory_mb = c.memory_mb.map(u64::from);
        spec.cpu_millicores = c.cpu_shares.map(|s| u64::from(s) * 1000 / 1024);
        spec.pids_limit = Some(self.config.pids_limit);
        spec.host_network = true;
        for v in &c.volumes {
            let dir = volume_dir(&self.config, &d.app, &d.name, &v.name);
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create the volume {}: {e}", dir.display()))?;
            spec.mounts.push(Mount {
                source: dir,
                destination: v.path.clone(),
                read_only: false,
            });
        }
        let log_dir = crate::logs::process_dir(
            &self.config,
            &d.app,
            &format!("resource.{}.{}", d.name, c.name),
        );
        spec.log = Log::Binary {
            path: self.logger_path.clone(),
            args: vec![
                (dray_logs::LOGGER_ARG.to_string(), "1".to_string()),
                ("dir".to_string(), log_dir.display().to_string()),
                ("max-size".to_string(), self.config.log_max_size.to_string()),
                (
                    "max-files".to_string(),
                    self.config.log_max_files.to_string(),
                ),
            ],
        };
        let l = &mut spec.labels;
        l.insert(labels::APP.into(), d.app.clone());
        l.insert(labels::TYPE.into(), labels::TYPE_RESOURCE.into());
        l.insert(labels::RESOURCE.into(), d.name.clone());
        l.insert(labels::OBJECT.into(), c.name.clone());
        l.insert(labels::HASH.into(), hash.to_string());
        l.insert(labels::PORT.into(), rec.port.to_string());
        let restarted = {
            let live = self.live();
            if let Some((retry_at, why)) = live.get(id).and_then(|l| l.start_error.as_ref()) {
                if *retry_at > Instant::now() {
                    return Err(why.clone());
                }
            }
            live.get(id).is_some_and(|l| l.restart_at.is_some())
        };
        match self.runtime.run(&spec).await {
            Ok(_) => {
                let now = Instant::now();
                let mut live = self.live();
                let l = live.entry(id.to_string()).or_insert_with(|| Live::new(now));
                l.started_at = now;
                l.healthy = false;
                l.failures = 0;
                l.last_probe = None;
                l.restart_at = None;
                l.start_error = None;
                drop(live);
                crate::logs::system(
                    &self.config,
                    &d.app,
                    &format!(
                        "resource {}: {} container {} ({}, port {})",
                        d.name,
                        if restarted { "restarted" } else { "started" },
                        c.name,
                        c.image,
                        rec.port
                    ),
                );
                Ok(())
            }
            Err(e) => {
                let hint = if e.is_not_found() {
                    "; load it with `dray images import FILE.tar` or set `image:` on the resource"
                        .to_string()
                } else {
                    String::new()
                };
                let why = format!(
                    "cannot start container {} from image {}: {e}{hint}",
                    c.name, c.image
                );
                let now = Instant::now();
                let mut live = self.live();
                let l = live.entry(id.to_string()).or_insert_with(|| Live::new(now));
                let delay = l
                    .backoff
                    .crashed(&self.policy, now, now, rand::rng().random::<f64>());
                l.start_error = Some((now + delay, why.clone()));
                Err(why)
            }
        }
    }

    /// Run a container's health check once and record the result.
    async fn probe(&self, d: &Declared, id: &str, c: &PlannedContainer) {
        let (ok, counts) = match &c.health {
            None => (true, true),
            Some(h) => {
                let timeout =
                    Duration::from_millis(u64::from(h.timeout_ms.max(100))).min(MAX_PROBE_TIMEOUT);
                let ok = match &h.probe {
                    Probe::Exec(args) => self.exec_probe(id, args, timeout).await,
                    Probe::Tcp(port) => tokio::time::timeout(
                        timeout,
                        tokio::net::TcpStream::connect((INSTANCE_IP, *port)),
                    )
                    .await
                    .is_ok_and(|r| r.is_ok()),
                    Probe::Http(p) => crate::node::probe::http_ok(p.port, &p.path, timeout).await,
                };
                let started = self.live().get(id).map(|l| l.started_at);
                let in_grace = started.is_some_and(|t| {
                    t.elapsed() < Duration::from_millis(u64::from(h.start_period_ms))
                });
                (ok, !in_grace)
            }
        };
        let retries = c.health.as_ref().map(|h| h.retries.max(1)).unwrap_or(1);
        let mut live = self.live();
        let l = live
            .entry(id.to_string())
            .or_insert_with(|| Live::new(Instant::now()));
        l.last_probe = Some(Instant::now());
        if ok {
            l.failures = 0;
            l.healthy = true;
        } else if counts {
            l.failures += 1;
            if l.failures >= retries && l.healthy {
                l.healthy = false;
                drop(live);
                crate::logs::system(
                    &self.config,
                    &d.app,
                    &format!(
                        "resource {}: container {} is unhealthy ({retries} failed checks)",
                        d.name, c.name
                    ),
                );
            }
        }
    }

    async fn exec_probe(&self, id: &str, args: &[String], timeout: Duration) -> bool {
        let spec = ExecSpec {
            args: args.to_vec(),
            ..Default::default()
        };
        let run = async {
            let mut handle = self.runtime.exec(id, &spec).await.ok()?;
            for pipe in [handle.stdout.take(), handle.stderr.take()]
                .into_iter()
                .flatten()
            {
                let mut pipe = pipe;
                tokio::spawn(async move {
                    let mut sink = vec![0u8; 4096];
                    while matches!(pipe.read(&mut sink).await, Ok(n) if n > 0) {}
                });
            }
            handle.wait().await.ok()
        };
        matches!(tokio::time::timeout(timeout, run).await, Ok(Some(0)))
    }

    #[cfg(feature = "aws")]
    async fn rds(&self) -> &dray_cloud::Rds {
        self.rds
            .get_or_init(|| async {
                dray_cloud::Rds::new(&dray_cloud::RdsConfig {
                    endpoint: self.config.aws_endpoint.clone(),
                    region: self.config.aws_region.clone(),
                    credentials: None,
                })
                .await
            })
            .await
    }

    /// Make one planned cloud database exist; ready once it is available.
    #[cfg(feature = "aws")]
    async fn ensure_cloud(
        &self,
        d: &Declared,
        db: &types::CloudDatabaseSpec,
    ) -> Result<(ResourceObject, bool), String> {
        let identifier = dray_cloud::identifier(&self.config.rack, &d.app, &d.name);
        let spec = dray_cloud::DatabaseSpec {
            identifier: identifier.clone(),
            engine: db.engine.clone(),
            engine_version: db.engine_version.clone(),
            instance_class: db.instance_class.clone(),
            storage_gb: db.storage_gb,
            port: db.port,
            username: db.username.clone(),
            password: db.password.clone(),
            database: db.database.clone(),
            encrypted: db.encrypted,
            multi_az: db.multi_az,
            backup_retention_days: db.backup_retention_days,
            deletion_protection: db.deletion_protection,
            tags: vec![
                ("dray:rack".into(), self.config.rack.clone()),
                ("dray:app".into(), d.app.clone()),
                ("dray:resource".into(), d.name.clone()),
            ],
        };
        let state = match self.rds().await.ensure(&spec).await {
            Ok(state) => state,
            // A spec AWS refuses will not get better; anything else (throttling, the network,
            // a 5xx) is retried on the next pass while the deploy's deadline runs.
            Err(e @ dray_cloud::CloudError::InvalidSpec { .. }) => return Err(e.to_string()),
            Err(e) if e.code().is_some_and(|c| c.starts_with("InvalidParameter")) => {
                return Err(e.to_string())
            }
            Err(e) => {
                tracing::warn!(app = %d.app, resource = %d.name, error = %e, "cloud database not ready; retrying");
                return Ok((
                    ResourceObject {
                        name: db.name.clone(),
                        kind: "cloud-database".into(),
                        id: identifier,
                        version: db.engine_version.clone(),
                        ..Default::default()
                    },
                    false,
                ));
            }
        };
        if state.is_failed() {
            return Err(format!("cloud database {identifier} is {}", state.status));
        }
        let (host, port) = match (&state.endpoint, state.is_available()) {
            (Some((h, p)), true) => (h.clone(), *p),
            _ => (String::new(), 0),
        };
        let ready = !host.is_empty();
        Ok((
            ResourceObject {
                name: db.name.clone(),
                kind: "cloud-database".into(),
                id: identifier,
                version: state
                    .engine_version
                    .clone()
                    .unwrap_or_else(|| db.engine_version.clone()),
                hash: String::new(),
                host,
                port,
            },
            ready,
        ))
    }

    #[cfg(not(feature = "aws"))]
    async fn ensure_cloud(
        &self,
        _d: &Declared,
        db: &types::CloudDatabaseSpec,
    ) -> Result<(ResourceObject, bool), String> {
        Err(format!(
            "the plan asks for a cloud database ({} {}), but this drayd was built without AWS \
             support: rebuild it with `cargo build --features aws`",
            db.engine, db.engine_version
        ))
    }

    /// Remove one object; Err (for cloud databases) means it is still there and the removal
    /// must be retried.
    async fn remove_object(&self, o: &ResourceObject) -> Result<(), String> {
        match o.kind.as_str() {
            "container" => {
                self.stop_container(&o.id).await;
                Ok(())
            }
            #[cfg(feature = "aws")]
            "cloud-database" => self.rds().await.delete(&o.id).await.map_err(|e| {
                tracing::warn!(identifier = %o.id, error = %e, "cannot delete a cloud database");
                e.to_string()
            }),
            #[cfg(not(feature = "aws"))]
            "cloud-database" => Err(format!(
                "cannot delete cloud database {}: this drayd was built without AWS support",
                o.id
            )),
            _ => Ok(()),
        }
    }

    async fn stop_container(&self, id: &str) {
        match self
            .runtime
            .stop_with_signal(id, STOP_SIGNAL, STOP_GRACE)
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "cannot stop a resource container")
            }
        }
        self.remove_container(id).await;
    }

    async fn remove_container(&self, id: &str) {
        if let Err(e) = self.runtime.remove(id).await {
            if !e.is_not_found() {
                tracing::warn!(container = %id, error = %e, "cannot remove a resource container");
            }
        }
        self.live().remove(id);
    }

    /// Remove every object of a resource; Err names what is still there.
    async fn teardown_objects(
        &self,
        rec: &ResourceRecord,
        containers: &HashMap<String, ContainerInfo>,
    ) -> Result<(), String> {
        let mut left = Vec::new();
        for o in &rec.objects {
            if let Err(e) = self.remove_object(o).await {
                left.push(e);
            }
        }
        // Containers of the resource the record does not list.
        for c in containers.values() {
            if c.labels.get(labels::APP) == Some(&rec.app)
                && c.labels.get(labels::RESOURCE) == Some(&rec.name)
                && !rec.objects.iter().any(|o| o.id == c.id)
            {
                self.stop_container(&c.id).await;
            }
        }
        if left.is_empty() {
            Ok(())
        } else {
            Err(left.join("; "))
        }
    }

    /// Remove a resource no release declares: its objects go, its record goes, its volumes stay.
    async fn teardown(&self, rec: &ResourceRecord, containers: &HashMap<String, ContainerInfo>) {
        if let Err(reason) = self.teardown_objects(rec, containers).await {
            // Keep the record (and so the retry) until the objects are really gone.
            if rec.reason != reason {
                let mut r = rec.clone();
                r.status = "deleting".into();
                r.reason = reason;
                r.updated = Utc::now();
                if let Err(e) = self.repo.put_resource(&r).await {
                    tracing::warn!(app = %rec.app, resource = %rec.name, error = %e, "cannot save the resource record");
                }
            }
            return;
        }
        if rec.port != 0 {
            self.node.ports().release(rec.port);
        }
        if let Err(e) = self.repo.delete_resource(&rec.app, &rec.name).await {
            tracing::warn!(app = %rec.app, resource = %rec.name, error = %e, "cannot delete the resource record");
            return;
        }
        crate::logs::system(
            &self.config,
            &rec.app,
            &format!(
                "resource {} removed (no release declares it); its data stays in {}",
                rec.name,
                volume_root(&self.config, &rec.app)
                    .join(&rec.name)
                    .display()
            ),
        );
    }

    fn delete_volumes(&self, app: &str) {
        if app.is_empty() || app.contains('/') || app.starts_with('.') {
            return;
        }
        let dir = volume_root(&self.config, app);
        if dir.exists() {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => tracing::info!(app, "deleted the volumes of a deleted app"),
                Err(e) => {
                    tracing::warn!(app, error = %e, "cannot delete the volumes of a deleted app")
                }
            }
        }
    }

    fn config_port_range(&self) -> std::ops::RangeInclusive<u16> {
        self.config.port_range.0..=self.config.port_range.1
    }

    /// Whether a plugin serves the resource's type and accepts its spec (warnings are fine).
    pub async fn validate(&self, d: &Declared) -> Result<(), ResourceError> {
        let handle = self
            .plugin_for(&d.kind)
            .await
            .map_err(ResourceError::Invalid)?;
        let port = match self.repo.resource(&d.app, &d.name).await? {
            Some(r) if r.port != 0 => r.port,
            // validate looks at options, not at the port; any valid number does.
            _ => *self.config_port_range().start(),
        };
        handle
            .validate(Self::spec(d, port))
            .await
            .map_err(|e| ResourceError::Invalid(e.to_string()))?;
        Ok(())
    }

    /// What the plugin would do for a declared resource now (nothing is changed).
    pub async fn plan_preview(&self, d: &Declared) -> Result<ResourcePlan, ResourceError> {
        let handle = self
            .plugin_for(&d.kind)
            .await
            .map_err(ResourceError::Unavailable)?;
        let rec = self.repo.resource(&d.app, &d.name).await?;
        let containers: HashMap<String, ContainerInfo> = self
            .runtime
            .list(&[
                (labels::TYPE, labels::TYPE_RESOURCE),
                (labels::APP, d.app.as_str()),
            ])
            .await?
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        let (port, observed, tentative) = match &rec {
            Some(r) if r.port != 0 => (r.port, self.observe(r, &containers), false),
            // Not allocated yet: plan with a free port, given back at once (the real one is
            // allocated when a promote creates the resource).
            _ => {
                let port = self.node.ports().allocate().ok_or_else(|| {
                    ResourceError::Unavailable("no free host port left in the port range".into())
                })?;
                (port, Vec::new(), true)
            }
        };
        let plan = handle.plan(Self::spec(d, port), observed).await;
        if tentative {
            self.node.ports().release(port);
        }
        plan.map_err(|e| ResourceError::Invalid(e.to_string()))
    }

    /// The container and command of a data operation (export, import, console) on a running
    /// resource.
    pub async fn data_command(
        &self,
        d: &Declared,
        op: DataOpKind,
    ) -> Result<(String, ExecSpec), ResourceError> {
        let rec = self.repo.resource(&d.app, &d.name).await?.ok_or_else(|| {
            ResourceError::NotReady(format!(
                "resource {} has not been created yet: promote a release that declares it",
                d.name
            ))
        })?;
        if rec.status == "overridden" {
            return Err(ResourceError::Invalid(format!(
                "resource {} is replaced by {}_URL in the app's env; run the command against that database instead",
                d.name,
                dray_manifest::env_prefix(&d.name)
            )));
        }
        if rec.status != "running" {
            return Err(ResourceError::NotReady(format!(
                "resource {} is {}",
                d.name,
                rec.status_line()
            )));
        }
        let handle = self
            .plugin_for(&d.kind)
            .await
            .map_err(ResourceError::Unavailable)?;
        let cmd = handle
            .data_op(Self::spec(d, rec.port), realized(&rec), op)
            .await
            .map_err(|e| match &e {
                dray_plugins::CallError::Plugin {
                    error: types::Error::Unsupported(m),
                    ..
                } => ResourceError::Invalid(format!("{} does not support this: {m}", d.kind)),
                _ => ResourceError::Unavailable(e.to_string()),
            })?;
        let object = rec
            .objects
            .iter()
            .find(|o| o.name == cmd.object && o.kind == "container")
            .ok_or_else(|| {
                ResourceError::Invalid(format!(
                    "the plugin named object {:?} for this, which is not a container of resource {}",
                    cmd.object, d.name
                ))
            })?;
        Ok((
            object.id.clone(),
            ExecSpec {
                args: cmd.command,
                env: cmd.env.into_iter().map(|kv| (kv.key, kv.value)).collect(),
                tty: cmd.tty,
                stdin: true,
                ..Default::default()
            },
        ))
    }
}

/// The endpoints of a record's realized objects.
fn realized(rec: &ResourceRecord) -> Realized {
    Realized {
        endpoints: rec
            .objects
            .iter()
            .filter(|o| !o.host.is_empty())
            .map(|o| Endpoint {
                name: o.name.clone(),
                host: o.host.clone(),
                port: o.port,
            })
            .collect(),
    }
}

/// The containerd id of a resource container: `<app>.resource.<name>.<object>`.
pub fn container_id(app: &str, resource: &str, object: &str) -> String {
    format!("{app}.resource.{resource}.{object}")
}

/// Where an app's resource volumes live.
pub fn volume_root(config: &Config, app: &str) -> PathBuf {
    config.data_dir.join("volumes").join(app)
}

/// The host directory of one volume of a resource.
pub fn volume_dir(config: &Config, app: &str, resource: &str, volume: &str) -> PathBuf {
    volume_root(config, app).join(resource).join(volume)
}

/// A short, stable hash of a planned container: when it changes, the container is replaced.
fn plan_hash(c: &PlannedContainer) -> String {
    let json = serde_json::to_vec(c).unwrap_or_default();
    hex::encode(&Sha256::digest(&json)[..8])
}
