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
//! Resource records are written only with compare-and-swap ([`Repo::save_resource`]): a pass
//! remembers the revision of the record it read, and when the record changed meanwhile (a
//! promote's [`Resources::retry_failed`]) the pass's write is dropped and the resource is redone
//! from fresh state on the next pass, so a stale pass never undoes a newer write.
//!
//! The reconciler only touches containers of its own rack (label `dray.rack`, or none: made by
//! a Dray version before rack ids).
//!
//! This module decides nothing about what a resource looks like (the plugin does), never speaks
//! containerd or wasmtime itself (`dray-runtime` and `dray-plugins` do) and is the only writer of
//! resource records.

mod cloud;
mod containers;
mod queries;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::node::probe::ProbeResult;
use chrono::Utc;
use dray_plugins::types::{
    self, ContainerSpec as PlannedContainer, DataOpKind, DesiredObject, Endpoint, KeyValue,
    ObjectState, ObservedObject, Probe, Realized, ResourcePlan, ResourceSpec,
};
use dray_plugins::ResourcePluginHandle;
use dray_runtime::{ContainerInfo, ExecSpec, Mount, Runtime, TaskStatus};
use dray_sdk::ResourceStatus;
use dray_store::Revision;
use rand::Rng;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::app::ReleaseCache;
use crate::config::Config;
use crate::node::backoff::{Backoff, BackoffPolicy};
use crate::node::ports::PortAllocator;
use crate::node::Node;
use crate::plugins::PluginSlot;
use crate::repo::{
    AppRecord, Repo, RepoError, ResourceObject, ResourceOutput, ResourceRecord, Update, Versioned,
};

/// Container labels of resource objects.
pub mod labels {
    pub use crate::node::labels::{APP, PORT, RACK, TYPE};
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
    /// The probe task of this start of the container (`None`: none yet, or no health check).
    probe: Option<tokio::task::AbortHandle>,
    /// Bumped on every start; results of an earlier start's probe are ignored.
    incarnation: u64,
    /// The health check's rules, for the results of its task.
    health: Option<types::HealthCheck>,
    /// App and resource, for log lines.
    owner: (String, String, String),
    backoff: Backoff,
    restart_at: Option<Instant>,
    exit_code: Option<u32>,
    /// The last failure to start the container and when to try again (with the crash backoff,
    /// so a missing image is not asked for every second).
    start_error: Option<(Instant, String)>,
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(p) = self.probe.take() {
            p.abort();
        }
    }
}

impl Live {
    fn new(started_at: Instant) -> Live {
        Live {
            started_at,
            healthy: false,
            failures: 0,
            probe: None,
            incarnation: 0,
            health: None,
            owner: Default::default(),
            backoff: Backoff::default(),
            restart_at: None,
            exit_code: None,
            start_error: None,
        }
    }
}

/// Why a pass could not carry a resource out.
#[derive(Debug)]
enum CarryOut {
    /// The resource failed for this reason.
    Failed(String),
    /// Its record changed since the pass read it: redo it from fresh state.
    Stale,
}

impl From<String> for CarryOut {
    fn from(reason: String) -> Self {
        CarryOut::Failed(reason)
    }
}

impl From<&str> for CarryOut {
    fn from(reason: &str) -> Self {
        CarryOut::Failed(reason.to_string())
    }
}

/// Give every failed resource of `app` a fresh try: `failed` becomes `pending` with no reason,
/// each with a compare-and-swap (a record the reconciler rewrites meanwhile is read again).
/// Returns how many were reset.
pub async fn reset_failed(repo: &Repo, app: &str) -> Result<usize, RepoError> {
    let mut reset = 0;
    for v in repo.resource_records(Some(app)).await? {
        let key = crate::repo::resource_key(&v.value.app, &v.value.name);
        let updated = repo
            .update(&key, |current: Option<Versioned<ResourceRecord>>| {
                std::future::ready(Ok::<_, std::convert::Infallible>(match current {
                    Some(c) if c.value.status == ResourceStatus::Failed => {
                        let mut rec = c.value;
                        rec.status = ResourceStatus::Pending;
                        rec.reason.clear();
                        rec.updated = Utc::now();
                        Update::put(rec)
                    }
                    _ => Update::keep(),
                }))
            })
            .await
            .map_err(crate::repo::UpdateError::into_repo)?;
        if updated.written {
            reset += 1;
        }
    }
    Ok(reset)
}

/// Give a record that has no port one, and keep it in the store before anything uses it: with a
/// compare-and-swap on the revision `read` (moved on when written; 0 creates the record only if
/// still absent). A port whose write did not happen goes back to the allocator.
async fn keep_new_port(
    repo: &Repo,
    ports: &PortAllocator,
    rec: &mut ResourceRecord,
    read: &mut Revision,
) -> Result<(), CarryOut> {
    let port = ports
        .allocate()
        .ok_or("no free host port left in the port range")?;
    rec.port = port;
    rec.status = ResourceStatus::Provisioning;
    rec.updated = Utc::now();
    let failed = match repo.save_resource(rec, *read).await {
        Ok(Some(rev)) => {
            *read = rev;
            return Ok(());
        }
        Ok(None) => CarryOut::Stale,
        Err(e) => CarryOut::Failed(format!("cannot save the resource record: {e}")),
    };
    ports.release(port);
    rec.port = 0;
    Err(failed)
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
    probe_tx: tokio::sync::mpsc::UnboundedSender<ProbeResult>,
    probe_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<ProbeResult>>>,
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
        let (probe_tx, probe_rx) = tokio::sync::mpsc::unbounded_channel();
        Arc::new(Resources {
            probe_tx,
            probe_rx: Mutex::new(Some(probe_rx)),
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
        reset_failed(&self.repo, app).await?;
        self.wake();
        Ok(())
    }

    /// Ask the loop to reconcile now (a promote, a plugin install).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// A pass's write was dropped because the record changed since it was read: redo the
    /// resource from fresh state on the next pass (which starts at once).
    fn stale(&self, app: &str, name: &str) {
        tracing::debug!(
            app,
            resource = name,
            "the resource record changed during the pass; redoing it from fresh state"
        );
        self.wake();
    }

    /// Whether a container is this rack's: labelled with its id, or with no rack label at all
    /// (made by a version before rack ids, adopted as ours until it is replaced). Filtered
    /// here rather than in `runtime.list`, whose label filter cannot match a missing label.
    fn mine(&self, c: &ContainerInfo) -> bool {
        c.labels
            .get(labels::RACK)
            .is_none_or(|r| *r == self.config.rack_id)
    }

    /// This rack's resource containers matching the label filter (plus `dray.type=resource`).
    async fn containers(
        &self,
        filter: &[(&str, &str)],
    ) -> Result<HashMap<String, ContainerInfo>, ResourceError> {
        let mut all = vec![(labels::TYPE, labels::TYPE_RESOURCE)];
        all.extend_from_slice(filter);
        Ok(self
            .runtime
            .list(&all)
            .await?
            .into_iter()
            .filter(|c| self.mine(c))
            .map(|c| (c.id.clone(), c))
            .collect())
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

    /// The loop: a pass when anything of a resource changes (an app record or a resource
    /// record in the store, a resource container's exit, a health change, a wake-up from a
    /// plugin install), and every second only while a resource is still on its way (being
    /// provisioned, restarting, failing its checks): an idle rack does no periodic scans.
    pub async fn run(self: Arc<Self>) {
        let Some(mut probes) = self
            .probe_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        let mut watch = self.watch().await;
        let mut events = self.runtime.events().await.ok();
        loop {
            let busy = match self.reconcile_all().await {
                Ok(busy) => busy,
                Err(e) => {
                    tracing::warn!(error = %e, "resource reconcile failed; retrying");
                    true
                }
            };
            // Without an event stream, exits go unseen: look every second until it is back.
            let idle = if busy || events.is_none() {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(3600)
            };
            let deadline = tokio::time::Instant::now() + idle;
            // Wait for something that calls for a pass (events that do not are skipped here,
            // without one).
            loop {
                tokio::select! {
                    _ = self.wake.notified() => break,
                    _ = tokio::time::sleep_until(deadline) => {
                        if events.is_none() {
                            events = self.runtime.events().await.ok();
                        }
                        break;
                    }
                    ev = watch.recv() => match ev {
                        Some(Ok(_)) => {
                            // Take whatever else is queued: one pass for a burst of writes.
                            while let Ok(Ok(_)) = watch.try_recv() {}
                            break;
                        }
                        _ => {
                            watch = self.watch().await;
                            break;
                        }
                    },
                    ev = async {
                        match events.as_mut() {
                            Some(rx) => rx.recv().await,
                            None => std::future::pending().await,
                        }
                    } => match ev {
                        Some(dray_runtime::TaskEvent::Exited { id, exec_id: None, .. })
                            if id.contains(".resource.") => break,
                        Some(_) => {}
                        None => {
                            events = None;
                            break;
                        }
                    },
                    Some(r) = probes.recv() => {
                        if self.on_probe(r) {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Watch the records a resource pass reads (apps for promotes and deletions, resources for
    /// the promote path's resets), from now.
    async fn watch(&self) -> dray_store::Watch {
        loop {
            let w = match self.repo.store().revision().await {
                Ok(rev) => self.repo.store().watch("/dray/apps/", rev).await,
                Err(e) => Err(e),
            };
            match w {
                Ok(w) => return w,
                Err(e) => tracing::warn!(error = %e, "resources: cannot watch the store; retrying"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// A probe result: returns whether the container's health changed (then a pass follows).
    fn on_probe(&self, r: ProbeResult) -> bool {
        let mut live = self.live();
        let Some(l) = live.get_mut(&r.container) else {
            return false;
        };
        if l.incarnation != r.incarnation {
            return false;
        }
        let Some(h) = l.health.clone() else {
            return false;
        };
        let in_start_period =
            l.started_at.elapsed() < Duration::from_millis(u64::from(h.start_period_ms));
        let retries = h.retries.max(1);
        match r.result {
            Ok(()) => {
                l.failures = 0;
                let changed = !l.healthy;
                l.healthy = true;
                changed
            }
            Err(_) if in_start_period => false,
            Err(why) => {
                l.failures += 1;
                if l.failures >= retries && l.healthy {
                    l.healthy = false;
                    let (app, resource, object) = l.owner.clone();
                    drop(live);
                    crate::logs::system(
                        &self.config,
                        &app,
                        &format!(
                            "resource {resource}: container {object} is unhealthy ({retries} failed checks: {why})"
                        ),
                    );
                    return true;
                }
                false
            }
        }
    }

    /// Start the probe task of a running container once per start (a container with no health
    /// check is healthy as soon as it runs).
    fn ensure_probe(&self, d: &Declared, id: &str, c: &PlannedContainer) {
        let mut live = self.live();
        let Some(l) = live.get_mut(id) else {
            return;
        };
        let Some(h) = &c.health else {
            l.healthy = true;
            return;
        };
        if l.probe.is_some() {
            return;
        }
        let check = match &h.probe {
            Probe::Exec(args) => crate::node::probe::Check::Exec {
                container: id.to_string(),
                args: args.clone(),
            },
            Probe::Tcp(port) => crate::node::probe::Check::Tcp {
                host: INSTANCE_IP.into(),
                port: *port,
            },
            Probe::Http(p) => crate::node::probe::Check::Http {
                host: INSTANCE_IP.into(),
                port: p.port,
                path: p.path.clone(),
            },
        };
        l.health = Some(h.clone());
        l.owner = (d.app.clone(), d.name.clone(), c.name.clone());
        l.probe = Some(crate::node::probe::spawn(
            Some(self.runtime.clone()),
            crate::node::probe::Probe {
                check,
                grace: Duration::ZERO,
                interval: Duration::from_millis(u64::from(h.interval_ms.max(200))),
                timeout: Duration::from_millis(u64::from(h.timeout_ms.max(100)))
                    .min(MAX_PROBE_TIMEOUT),
            },
            id.to_string(),
            l.incarnation,
            crate::node::probe::ProbeKind::Readiness,
            self.probe_tx.clone(),
        ));
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

    /// One pass over every declared resource; returns whether something is still on its way
    /// (then the loop looks again in a second).
    async fn reconcile_all(&self) -> Result<bool, ResourceError> {
        let apps = self.repo.apps().await?;
        let records = self.repo.resource_records(None).await?;
        let mut records: BTreeMap<(String, String), Versioned<ResourceRecord>> = records
            .into_iter()
            .map(|r| ((r.value.app.clone(), r.value.name.clone()), r))
            .collect();
        let containers = self.containers(&[]).await?;
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
        let busy = std::sync::atomic::AtomicBool::new(false);
        {
            use futures::StreamExt;
            let containers = &containers;
            let busy = &busy;
            futures::stream::iter(work)
                .for_each_concurrent(4, |(d, rec)| async move {
                    if self.reconcile_one(&d, rec, containers).await {
                        busy.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                })
                .await;
        }
        let mut busy = busy.into_inner();
        // Resources no release declares any more: remove their objects, keep their data.
        for ((app, _), rec) in records {
            if keep.contains(&(rec.value.app.clone(), rec.value.name.clone())) {
                continue;
            }
            busy |= !self.teardown(&rec, &containers).await;
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
        busy |= self
            .live()
            .values()
            .any(|l| l.restart_at.is_some() || l.start_error.is_some());
        Ok(busy)
    }

    fn is_known(&self, container: &str) -> bool {
        self.live().contains_key(container)
    }

    /// Carry out one resource and save its record when it changed (only if nobody wrote it
    /// since it was read: otherwise the pass's view is stale and the resource is redone).
    /// Returns whether it is still on its way (pending, provisioning, unhealthy, or redone).
    async fn reconcile_one(
        &self,
        d: &Declared,
        rec: Option<Versioned<ResourceRecord>>,
        containers: &HashMap<String, ContainerInfo>,
    ) -> bool {
        let now = Utc::now();
        // The revision the record was read at (0: absent, so it is created only if still absent).
        let mut read = rec.as_ref().map(|r| r.mod_revision).unwrap_or(0);
        let before = rec.map(|r| r.value);
        let mut rec = before.clone().unwrap_or_else(|| ResourceRecord {
            app: d.app.clone(),
            name: d.name.clone(),
            kind: d.kind.clone(),
            status: ResourceStatus::Pending,
            created: now,
            updated: now,
            ..Default::default()
        });
        rec.kind = d.kind.clone();
        if let Some(url) = &d.override_url {
            if !rec.objects.is_empty() && self.teardown_objects(&rec, containers).await.is_ok() {
                rec.objects.clear();
            }
            rec.status = ResourceStatus::Overridden;
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
        } else if rec.status == ResourceStatus::Overridden {
            // `<NAME>_URL` was unset: the override's values must not be linked any more.
            rec.outputs.clear();
            rec.status = ResourceStatus::Pending;
            rec.reason.clear();
        } else {
            match self.carry_out(d, &mut rec, &mut read, containers).await {
                Ok(()) => {}
                Err(CarryOut::Stale) => {
                    self.stale(&d.app, &d.name);
                    return true;
                }
                Err(CarryOut::Failed(reason)) => {
                    if rec.status != ResourceStatus::Failed || rec.reason != reason {
                        crate::logs::system(
                            &self.config,
                            &d.app,
                            &format!("resource {} failed: {reason}", d.name),
                        );
                    }
                    rec.status = ResourceStatus::Failed;
                    rec.reason = reason;
                }
            }
        }
        let changed = before.as_ref().is_none_or(|b| {
            let mut b = b.clone();
            b.updated = rec.updated;
            b != rec
        });
        if changed {
            rec.updated = now;
            match self.repo.save_resource(&rec, read).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    self.stale(&d.app, &d.name);
                    return true;
                }
                Err(e) => {
                    tracing::warn!(app = %d.app, resource = %d.name, error = %e, "cannot save the resource record");
                    return true;
                }
            }
            let was = before.as_ref().map(|b| b.status);
            if was != Some(rec.status) && rec.status == ResourceStatus::Running {
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
        }
        matches!(
            rec.status,
            ResourceStatus::Pending
                | ResourceStatus::Provisioning
                | ResourceStatus::Unhealthy
                | ResourceStatus::Deleting
        )
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

    /// Plan and act. `read` is the revision the record was read at, moved on by the write that
    /// keeps a newly allocated port.
    async fn carry_out(
        &self,
        d: &Declared,
        rec: &mut ResourceRecord,
        read: &mut Revision,
        containers: &HashMap<String, ContainerInfo>,
    ) -> Result<(), CarryOut> {
        let handle = self.plugin_for(&d.kind).await?;
        rec.plugin = handle.name().to_string();
        if rec.port == 0 {
            keep_new_port(&self.repo, self.node.ports(), rec, read).await?;
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
                ResourceStatus::Provisioning
            } else {
                ResourceStatus::Unhealthy
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
        rec.status = ResourceStatus::Running;
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
    /// Returns whether it is gone (false: the removal must be retried).
    async fn teardown(
        &self,
        read: &Versioned<ResourceRecord>,
        containers: &HashMap<String, ContainerInfo>,
    ) -> bool {
        let rec = &read.value;
        if let Err(reason) = self.teardown_objects(rec, containers).await {
            // Keep the record (and so the retry) until the objects are really gone.
            if rec.reason != reason {
                let mut r = rec.clone();
                r.status = ResourceStatus::Deleting;
                r.reason = reason;
                r.updated = Utc::now();
                match self.repo.save_resource(&r, read.mod_revision).await {
                    Ok(Some(_)) => {}
                    Ok(None) => self.stale(&rec.app, &rec.name),
                    Err(e) => {
                        tracing::warn!(app = %rec.app, resource = %rec.name, error = %e, "cannot save the resource record")
                    }
                }
            }
            return false;
        }
        match self
            .repo
            .delete_resource(&rec.app, &rec.name, read.mod_revision)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                self.stale(&rec.app, &rec.name);
                return false;
            }
            Err(e) => {
                tracing::warn!(app = %rec.app, resource = %rec.name, error = %e, "cannot delete the resource record");
                return false;
            }
        }
        // Only once the record is gone: a record that stays keeps its port.
        if rec.port != 0 {
            self.node.ports().release(rec.port);
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
        true
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

#[cfg(test)]
mod tests {
    use dray_store::sqlite::SqliteStore;

    use super::*;

    /// A pass reads a failed record, a promote resets it meanwhile, then the pass writes its
    /// (stale) result back: the write the reconciler uses must drop it, keeping the reset.
    #[tokio::test]
    async fn a_stale_pass_cannot_undo_a_concurrent_reset() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::new(Arc::new(
            SqliteStore::open(&dir.path().join("state.db")).unwrap(),
        ));
        let now = Utc::now();
        let failed = ResourceRecord {
            app: "shop".into(),
            name: "db".into(),
            kind: "postgres".into(),
            port: 20001,
            status: ResourceStatus::Failed,
            reason: "image missing".into(),
            created: now,
            updated: now,
            ..Default::default()
        };
        repo.save_resource(&failed, 0).await.unwrap().unwrap();

        // The pass reads the record...
        let read = repo.resource_records(Some("shop")).await.unwrap().remove(0);
        // ...a promote gives it a fresh try...
        assert_eq!(reset_failed(&repo, "shop").await.unwrap(), 1);
        // ...and the pass, still believing it failed, writes back what it computed.
        let mut stale = read.value.clone();
        stale.reason = "image still missing".into();
        assert_eq!(
            repo.save_resource(&stale, read.mod_revision).await.unwrap(),
            None,
            "the stale write is dropped"
        );
        let now = repo.resource("shop", "db").await.unwrap().unwrap();
        assert_eq!(now.status, ResourceStatus::Pending);
        assert_eq!(now.reason, "");
        assert_eq!(now.port, 20001);

        // Nothing failed any more: nothing to reset.
        assert_eq!(reset_failed(&repo, "shop").await.unwrap(), 0);
        // A pass that read the fresh record writes fine.
        let fresh = repo.resource_records(Some("shop")).await.unwrap().remove(0);
        let mut next = fresh.value.clone();
        next.status = ResourceStatus::Provisioning;
        assert!(repo
            .save_resource(&next, fresh.mod_revision)
            .await
            .unwrap()
            .is_some());
    }

    /// The port allocated for a new record goes back when the record appeared meanwhile (the
    /// write that keeps it is dropped), and is kept when the write happens.
    #[tokio::test]
    async fn a_port_whose_write_is_dropped_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::new(Arc::new(
            SqliteStore::open(&dir.path().join("state.db")).unwrap(),
        ));
        let ports = PortAllocator::new(41700..=41799);
        let new = ResourceRecord {
            app: "shop".into(),
            name: "cache".into(),
            ..Default::default()
        };
        // Another writer created the record after this pass saw it absent.
        repo.save_resource(&new, 0).await.unwrap().unwrap();
        let mut rec = new.clone();
        let mut read = 0;
        let err = keep_new_port(&repo, &ports, &mut rec, &mut read)
            .await
            .unwrap_err();
        assert!(matches!(err, CarryOut::Stale), "{err:?}");
        assert_eq!((rec.port, read, ports.in_use()), (0, 0, 0), "released");

        let fresh = repo.resource_records(Some("shop")).await.unwrap().remove(0);
        let (mut rec, mut read) = (fresh.value, fresh.mod_revision);
        keep_new_port(&repo, &ports, &mut rec, &mut read)
            .await
            .unwrap();
        assert_ne!(rec.port, 0);
        assert_eq!(ports.in_use(), 1);
        let stored = repo.resource_records(Some("shop")).await.unwrap().remove(0);
        assert_eq!(
            stored.mod_revision, read,
            "the pass goes on from its own write"
        );
        assert_eq!(stored.value.port, rec.port);
        assert_eq!(stored.value.status, ResourceStatus::Provisioning);
    }

    /// Old records (written with status strings) still decode, into the enum.
    #[test]
    fn old_records_decode() {
        let rec: ResourceRecord = serde_json::from_str(
            r#"{"app":"a","name":"db","type":"redis","status":"deleting","created":"2026-01-01T00:00:00Z","updated":"2026-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(rec.status, ResourceStatus::Deleting);
        assert!(serde_json::to_string(&rec)
            .unwrap()
            .contains(r#""status":"deleting""#));
    }
}
