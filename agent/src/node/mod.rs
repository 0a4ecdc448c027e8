//! The node executor: owns the containers of this instance, as Nomad's client and the kubelet
//! do.
//!
//! * **Input: assignments.** The planner ([`crate::deploy`]) writes the service processes this
//!   instance must run under `/dray/assignments/<instance>/`; the node watches that prefix
//!   ([`dray_store::Store::watch`]) and keeps the assignments in memory. It starts a process for
//!   every assignment it does not run, and drains and stops (SIGTERM, grace, SIGKILL) every
//!   service process whose assignment is gone. One-off processes (`dray run`) are started by the
//!   API directly and never assigned.
//! * **Output: process records.** What runs, with its port and health, is written back to
//!   `/dray/processes/<app>/<id>` whenever it changes (one writer task, coalescing): the source
//!   of `dray ps`, the endpoints feed and the planner's observed state.
//! * **Containers are the memory.** Every container is labelled with rack, app, service,
//!   release, process id, type, port, limits, grace and start time, so after an agent restart
//!   the table is rebuilt from containerd and running tasks are adopted as they are.
//! * **Crashes** restart in place (same id and port) after [`backoff`] delays. **Probes** run on
//!   a task per process ([`probe`]): readiness makes a process `running` (ready), 3 failures in
//!   a row make it `unhealthy`; a liveness check that fails its threshold restarts it.
//! * Nothing here polls: the loop wakes on an assignment change, a containerd event, a probe
//!   result, or the next restart that is due.
//!
//! The node decides nothing about what should run (the planner does). It is the only caller of
//! `dray-runtime` for long-running service processes and must never block its loop on a slow
//! operation: starts and stops run on their own tasks.

pub mod backoff;
pub mod ports;
pub mod probe;
mod spec;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use dray_runtime::{ContainerInfo, Runtime, TaskEvent, TaskStatus};
use dray_sdk::ProcessStatus;
use dray_store::EventKind;
use rand::Rng;
use tokio::sync::{mpsc, Notify, Semaphore};

use crate::config::Config;
use crate::metrics::{Metric, Registry};
use crate::repo::{self, Assignment, ProcessKind, ProcessRecord, Repo};
use backoff::{Backoff, BackoffPolicy};
use ports::PortAllocator;
use probe::{ProbeKind, ProbeResult};

pub use spec::{
    base_spec, container_spec, liveness, logger_for, plan_parsed, readiness, release_manifest,
    HealthPlan, ProcessPlan,
};

/// Container labels (the agent's only memory of a container across restarts).
pub mod labels {
    /// The rack's id: an agent only ever touches containers with its own.
    pub const RACK: &str = "dray.rack";
    pub const APP: &str = "dray.app";
    pub const SERVICE: &str = "dray.service";
    pub const RELEASE: &str = "dray.release";
    pub const PROCESS: &str = "dray.process";
    pub const TYPE: &str = "dray.type";
    pub const PORT: &str = "dray.port";
    pub const COMMAND: &str = "dray.command";
    pub const CPU: &str = "dray.cpu";
    pub const MEMORY: &str = "dray.memory";
    pub const STARTED: &str = "dray.started";
    /// Seconds between SIGTERM and SIGKILL.
    pub const GRACE: &str = "dray.grace";
}

/// How many processes start at once.
const START_CONCURRENCY: usize = 4;

/// How long a finished one-off process stays listed.
const KEEP_FINISHED: Duration = Duration::from_secs(600);

/// Readiness failures in a row that make a running process unhealthy.
const UNHEALTHY_AFTER: u32 = 3;

/// One process this node knows about.
#[derive(Clone, Debug)]
pub struct Proc {
    /// containerd container id: `<app>.<process id>`.
    pub container: String,
    /// The process id users see: `<service>-<5 letters>`.
    pub id: String,
    pub app: String,
    pub service: String,
    pub release: String,
    pub kind: ProcessKind,
    pub port: Option<u16>,
    pub image: String,
    pub command: String,
    pub cpu: u64,
    pub memory: u64,
    pub started: DateTime<Utc>,
    pub status: ProcessStatus,
    pub exit_code: Option<u32>,
    pub restarts: u32,
    /// SIGTERM to SIGKILL.
    pub grace: Duration,
    backoff: Backoff,
    started_at: Instant,
    restart_at: Option<Instant>,
    finished_at: Option<Instant>,
    /// A start (or restart) task is under way.
    starting: bool,
    /// Readiness failures in a row.
    failures: u32,
    /// Liveness failures in a row.
    live_failures: u32,
    /// Killed because its liveness check failed: its exit is a crash, not a stop.
    liveness_kill: bool,
    /// Bumped on every start; probe results of an earlier start are ignored.
    incarnation: u64,
    probes: Vec<tokio::task::AbortHandle>,
    plan: Option<Arc<ProcessPlan>>,
    /// Looking up the plan of an adopted process is under way.
    attaching: bool,
    /// The host pid of its task (0: unknown). An exit event of another pid is of an earlier
    /// task of the same container id (a restart in place removes the old one, whose exit
    /// arrives after the new one runs) and is ignored.
    pid: u32,
    /// It exited (pid, code) while its start task was still recording the start.
    exited_while_starting: Option<(u32, u32)>,
    /// A stop asked for while its start task ran (with its grace): the start task stops it.
    stop_requested: Option<Duration>,
}

impl Proc {
    fn is_live(&self) -> bool {
        !matches!(self.status, ProcessStatus::Complete | ProcessStatus::Failed)
    }

    fn stop_probes(&mut self) {
        for p in self.probes.drain(..) {
            p.abort();
        }
    }

    /// The record this node publishes for it.
    fn record(&self, instance: &str) -> ProcessRecord {
        ProcessRecord {
            app: self.app.clone(),
            service: self.service.clone(),
            release: self.release.clone(),
            process: self.id.clone(),
            kind: self.kind,
            instance: instance.to_string(),
            host: INSTANCE_IP.to_string(),
            status: self.status,
            port: self.port,
            image: self.image.clone(),
            command: self.command.clone(),
            cpu: self.cpu,
            memory: self.memory,
            started: self.started,
            restarts: self.restarts,
            crashes: self.backoff.crashes,
            exit_code: self.exit_code,
        }
    }

    /// The API view.
    pub fn view(&self) -> dray_sdk::Process {
        self.record(crate::config::DEFAULT_INSTANCE).view()
    }
}

/// The address processes of this instance are reached at (host networking).
pub const INSTANCE_IP: &str = "127.0.0.1";

/// Why a node call failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("process not found: {0}")]
    NotFound(String),
    #[error("{0}")]
    Plan(String),
    /// The release links resources that are not ready yet.
    #[error("{0}")]
    Waiting(String),
    #[error("containerd: {0}")]
    Runtime(#[from] dray_runtime::RuntimeError),
    #[error("store: {0}")]
    Repo(#[from] crate::repo::RepoError),
}

struct Metrics {
    /// From the planner writing an assignment to this node seeing it (the watch latency).
    assignment_latency: Metric,
    restarts: Metric,
    start_latency: Metric,
    processes: Metric,
}

/// Knobs of the node.
#[derive(Clone, Debug)]
pub struct Options {
    /// Crash-restart backoff.
    pub policy: BackoffPolicy,
    /// The `binary://` logger the containerd shim runs for each process (see [`logger_path`]).
    pub logger_path: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            policy: BackoffPolicy::default(),
            logger_path: logger_path(),
        }
    }
}

/// The logger the shim starts for each process: `dray-logger` next to the drayd executable when
/// it is there (the logger alone: a small binary that starts fast, which every container start
/// waits for), else drayd itself, which runs the same logger when the shim invokes it.
pub fn logger_path() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("drayd"));
    let small = exe.with_file_name("dray-logger");
    if small.is_file() {
        small
    } else {
        exe
    }
}

/// The container id of a process of an app.
pub fn container_id(app: &str, process: &str) -> String {
    format!("{app}.{process}")
}

/// The node executor of this instance, shared by the API (queries, one-offs, exec) and its
/// own loop.
pub struct Node {
    runtime: Runtime,
    repo: Repo,
    /// Releases parsed once, shared with the API and the planner.
    releases: crate::app::ReleaseCache,
    config: Arc<Config>,
    ports: PortAllocator,
    procs: Mutex<BTreeMap<String, Proc>>,
    /// This instance's assignments by container id.
    assigned: Mutex<BTreeMap<String, Assignment>>,
    /// Apps deleted while this node ran: their assignments (deleted by the planner right
    /// after) start nothing.
    deleted: Mutex<BTreeSet<String>>,
    wake: Notify,
    policy: BackoffPolicy,
    metrics: Metrics,
    logger_path: PathBuf,
    starts: Arc<Semaphore>,
    probe_tx: mpsc::UnboundedSender<ProbeResult>,
    probe_rx: Mutex<Option<mpsc::UnboundedReceiver<ProbeResult>>>,
    /// Containers whose record must be written, and what was last written for each.
    dirty: Mutex<BTreeSet<String>>,
    published: Mutex<HashMap<String, ProcessRecord>>,
    publish: Notify,
    /// One flush at a time (the publisher's and `run_once`'s), so records are written in order.
    flushing: tokio::sync::Mutex<()>,
    weak: std::sync::Weak<Node>,
}

impl Node {
    /// A node over `runtime`; call [`Node::adopt`], then spawn [`Node::run`].
    pub fn new(
        runtime: Runtime,
        repo: Repo,
        releases: crate::app::ReleaseCache,
        config: Arc<Config>,
        registry: &Registry,
        options: Options,
    ) -> Arc<Self> {
        let (probe_tx, probe_rx) = mpsc::unbounded_channel();
        Arc::new_cyclic(|weak| Node {
            runtime,
            repo,
            releases,
            ports: PortAllocator::new(config.port_range.0..=config.port_range.1),
            config,
            procs: Mutex::new(BTreeMap::new()),
            assigned: Mutex::new(BTreeMap::new()),
            deleted: Mutex::new(BTreeSet::new()),
            wake: Notify::new(),
            policy: options.policy,
            metrics: Metrics {
                assignment_latency: registry.histogram(
                    "dray_assignment_latency_seconds",
                    "Time from the planner's assignment to the node seeing it (watch latency).",
                    &[],
                    crate::metrics::LATENCY_BUCKETS,
                ),
                restarts: registry.counter(
                    "dray_process_restarts_total",
                    "Crash restarts of processes, by app and service.",
                    &["app", "service"],
                ),
                start_latency: registry.histogram(
                    "dray_container_start_seconds",
                    "Time to create and start a container.",
                    &[],
                    crate::metrics::LATENCY_BUCKETS,
                ),
                processes: registry.gauge(
                    "dray_processes",
                    "Processes by app and status.",
                    &["app", "status"],
                ),
            },
            logger_path: options.logger_path,
            starts: Arc::new(Semaphore::new(START_CONCURRENCY)),
            probe_tx,
            probe_rx: Mutex::new(Some(probe_rx)),
            dirty: Mutex::new(BTreeSet::new()),
            published: Mutex::new(HashMap::new()),
            publish: Notify::new(),
            flushing: tokio::sync::Mutex::new(()),
            weak: weak.clone(),
        })
    }

    /// The containerd runtime (for exec and image operations by the controllers).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The host ports of this instance (resources take theirs from the same range).
    pub fn ports(&self) -> &PortAllocator {
        &self.ports
    }

    /// This instance's name.
    pub fn instance(&self) -> &str {
        &self.config.instance
    }

    fn procs(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Proc>> {
        // A poisoned lock means a panic elsewhere; the table itself is still consistent
        // (every update is a single insert/remove/field write).
        self.procs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn assigned(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Assignment>> {
        self.assigned.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn me(&self) -> Option<Arc<Node>> {
        self.weak.upgrade()
    }

    /// Ask the loop to look again now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Processes of an app (all apps with `None`), by service and id.
    pub fn processes(&self, app: Option<&str>) -> Vec<Proc> {
        let mut v: Vec<Proc> = self
            .procs()
            .values()
            .filter(|p| app.is_none_or(|a| p.app == a))
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            (a.service.as_str(), a.id.as_str()).cmp(&(b.service.as_str(), b.id.as_str()))
        });
        v
    }

    /// One process of an app.
    pub fn process(&self, app: &str, id: &str) -> Option<Proc> {
        self.procs().get(&container_id(app, id)).cloned()
    }

    /// The process plans of a release, from the parsed-once release.
    async fn plans(&self, app: &str, release: &str) -> Result<Vec<Arc<ProcessPlan>>, NodeError> {
        let parsed = self
            .releases
            .get(app, release)
            .await?
            .ok_or_else(|| NodeError::Plan(format!("release not found: {release}")))?;
        spec::plan_parsed(&self.repo, &self.config, app, &parsed).await
    }

    /// Whether a container is ours: labelled with this rack's id, or made before racks had ids.
    fn ours(&self, c: &ContainerInfo) -> bool {
        match c.labels.get(labels::RACK) {
            Some(id) => self.config.rack_id.is_empty() || *id == self.config.rack_id,
            // Containers of older versions carry no rack id; the agent refuses to start on a
            // namespace holding another rack's containers, so unlabelled ones are ours.
            None => true,
        }
    }

    /// Rebuild the process table from containerd after a (re)start: running tasks are adopted
    /// as they are; tasks that exited while the agent was away are treated as crashes. Then
    /// read this instance's assignments.
    pub async fn adopt(&self) -> Result<usize, NodeError> {
        let containers = self.runtime.list(&[]).await?;
        let mut table = BTreeMap::new();
        for c in containers.iter().filter(|c| self.ours(c)) {
            if c.labels.get(labels::TYPE).map(String::as_str) == Some("resource") {
                continue;
            }
            let Some(p) = self.proc_from_container(c) else {
                continue;
            };
            if let Some(port) = p.port {
                self.ports.reserve(port);
            }
            table.insert(p.container.clone(), p);
        }
        let adopted = table.len();
        let keys: Vec<String> = table.keys().cloned().collect();
        *self.procs() = table;
        for k in keys {
            self.mark_dirty(&k);
        }
        // Records of processes that are gone (removed while the agent was away).
        for r in self.repo.processes(None).await? {
            if r.instance == self.config.instance {
                let c = container_id(&r.app, &r.process);
                if !self.procs().contains_key(&c) {
                    self.published().insert(c.clone(), r);
                    self.mark_dirty(&c);
                }
            }
        }
        tracing::info!(adopted, "re-adopted processes from containerd");
        self.wake();
        Ok(adopted)
    }

    fn published(&self) -> std::sync::MutexGuard<'_, HashMap<String, ProcessRecord>> {
        self.published.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn proc_from_container(&self, c: &ContainerInfo) -> Option<Proc> {
        let l = &c.labels;
        let app = l.get(labels::APP)?.clone();
        let id = l.get(labels::PROCESS)?.clone();
        let started = l
            .get(labels::STARTED)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_else(Utc::now);
        let kind = ProcessKind::parse(l.get(labels::TYPE).map(String::as_str).unwrap_or("service"));
        let (status, exit_code) = match &c.task {
            // It was running before the agent went away: keep it in service; the probes take
            // over once its plan is attached.
            Some(t) if t.status == TaskStatus::Running => (ProcessStatus::Running, None),
            Some(t) if t.status == TaskStatus::Stopped => {
                let code = t.exit_status;
                match kind {
                    ProcessKind::Service => (ProcessStatus::Crashed, code),
                    _ if code == Some(0) => (ProcessStatus::Complete, code),
                    _ => (ProcessStatus::Failed, code),
                }
            }
            // Created but never started (the agent died between create and start), paused, or
            // unknown: it is created and started again.
            Some(_) | None => (ProcessStatus::Pending, None),
        };
        let now = Instant::now();
        Some(Proc {
            container: c.id.clone(),
            id,
            app,
            service: l.get(labels::SERVICE).cloned().unwrap_or_default(),
            release: l.get(labels::RELEASE).cloned().unwrap_or_default(),
            kind,
            port: l.get(labels::PORT).and_then(|p| p.parse().ok()),
            image: c.image.clone(),
            command: l.get(labels::COMMAND).cloned().unwrap_or_default(),
            cpu: l.get(labels::CPU).and_then(|v| v.parse().ok()).unwrap_or(0),
            memory: l
                .get(labels::MEMORY)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            started,
            status,
            exit_code,
            restarts: 0,
            grace: Duration::from_secs(
                l.get(labels::GRACE)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(30),
            ),
            backoff: Backoff::default(),
            started_at: now,
            restart_at: matches!(status, ProcessStatus::Crashed | ProcessStatus::Pending)
                .then_some(now),
            finished_at: matches!(status, ProcessStatus::Complete | ProcessStatus::Failed)
                .then_some(now),
            starting: false,
            failures: 0,
            live_failures: 0,
            liveness_kill: false,
            incarnation: 0,
            probes: Vec::new(),
            plan: None,
            attaching: false,
            exited_while_starting: None,
            pid: c.task.as_ref().map(|t| t.pid).unwrap_or(0),
            stop_requested: None,
        })
    }

    /// The loop: assignment changes, containerd events, probe results and the next restart that
    /// is due; never a periodic scan.
    pub async fn run(self: Arc<Self>) {
        let Some(mut probes) = self
            .probe_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            tracing::error!("the node loop is already running");
            return;
        };
        tokio::spawn(self.clone().publisher());
        let mut events = self.subscribe().await;
        // An exit between `adopt` and the subscription would be lost: look once more.
        if let Err(e) = self.resync().await {
            tracing::warn!(error = %e, "cannot resync with containerd");
        }
        let mut assignments = self.watch_assignments().await;
        let mut apps = self.watch_apps().await;
        loop {
            self.converge();
            let due = self.next_due();
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => self.on_event(ev).await,
                    None => {
                        tracing::warn!("containerd event stream ended; reconnecting");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        events = self.subscribe().await;
                        if let Err(e) = self.resync().await {
                            tracing::warn!(error = %e, "cannot resync with containerd");
                        }
                    }
                },
                ev = assignments.recv() => match ev {
                    Some(Ok(ev)) => self.on_assignment(ev),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "assignment watch failed; reading them again");
                        assignments = self.watch_assignments().await;
                    }
                    None => {
                        tracing::warn!("assignment watch closed; reading them again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        assignments = self.watch_assignments().await;
                    }
                },
                ev = apps.recv() => match ev {
                    Some(Ok(ev)) if ev.kind == EventKind::Delete => {
                        if let Some(app) = ev.kv.key.strip_prefix(repo::APPS_PREFIX) {
                            self.app_deleted(app);
                        }
                    }
                    Some(Ok(ev)) => {
                        // An app (re)created under a deleted app's name runs again.
                        if let Some(app) = ev.kv.key.strip_prefix(repo::APPS_PREFIX) {
                            self.deleted.lock().unwrap_or_else(|p| p.into_inner()).remove(app);
                        }
                    }
                    Some(Err(_)) | None => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        apps = self.watch_apps().await;
                    }
                },
                Some(r) = probes.recv() => self.on_probe(r),
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep_until(due.into()) => {}
            }
        }
    }

    /// Read this instance's assignments and watch them from there (retrying until the store
    /// answers).
    async fn watch_assignments(&self) -> dray_store::Watch {
        loop {
            match self.repo.assignments(Some(&self.config.instance)).await {
                Ok((list, rev)) => match self
                    .repo
                    .store()
                    .watch(&repo::assignments_prefix(Some(&self.config.instance)), rev)
                    .await
                {
                    Ok(w) => {
                        *self.assigned() = list
                            .into_iter()
                            .map(|a| (container_id(&a.app, &a.process), a))
                            .collect();
                        return w;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot watch the assignments; retrying"),
                },
                Err(e) => tracing::warn!(error = %e, "cannot read the assignments; retrying"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn watch_apps(&self) -> dray_store::Watch {
        loop {
            let w = match self.repo.store().revision().await {
                Ok(rev) => self.repo.store().watch(repo::APPS_PREFIX, rev).await,
                Err(e) => Err(e),
            };
            match w {
                Ok(w) => return w,
                Err(e) => tracing::warn!(error = %e, "cannot watch the apps; retrying"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    fn on_assignment(&self, ev: dray_store::Event) {
        let Some(rest) = ev
            .kv
            .key
            .strip_prefix(&repo::assignments_prefix(Some(&self.config.instance)))
        else {
            return;
        };
        let Some((app, process)) = rest.split_once('/') else {
            return;
        };
        let container = container_id(app, process);
        match ev.kind {
            EventKind::Put => match repo::decode_value::<Assignment>(&ev.kv.key, &ev.kv.value) {
                Ok(a) => {
                    let latency = (Utc::now() - a.created).to_std().unwrap_or_default();
                    self.metrics
                        .assignment_latency
                        .observe(&[], latency.as_secs_f64());
                    tracing::debug!(process = %a.process, latency_ms = latency.as_millis() as u64, "assigned");
                    self.assigned().insert(container, a);
                }
                Err(e) => tracing::warn!(error = %e, "ignoring an assignment"),
            },
            EventKind::Delete => {
                self.assigned().remove(&container);
            }
        }
    }

    /// An app was deleted: every process of it goes, one-offs included.
    fn app_deleted(&self, app: &str) {
        self.deleted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(app.to_string());
        let victims: Vec<(String, Duration)> = self
            .procs()
            .values()
            .filter(|p| p.app == app && p.status != ProcessStatus::Stopping)
            .map(|p| (p.container.clone(), p.grace.min(Duration::from_secs(10))))
            .collect();
        for (c, grace) in victims {
            self.stop(&c, grace);
        }
    }

    /// When the loop must look again by itself: the next crash restart or finished process to
    /// forget (far in the future when there is none).
    fn next_due(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        self.procs()
            .values()
            .filter_map(|p| {
                if p.status == ProcessStatus::Crashed && !p.starting {
                    p.restart_at
                } else {
                    p.finished_at.map(|t| t + KEEP_FINISHED)
                }
            })
            .min()
            .unwrap_or(far)
            .min(far)
    }

    /// Converge the table on the assignments, in memory only (no store reads): start what is
    /// assigned and missing, restart crashed processes that are due, stop service processes no
    /// assignment wants, forget finished one-offs.
    fn converge(&self) {
        let now = Instant::now();
        let mut starts = Vec::new();
        let mut stops = Vec::new();
        let mut attach = Vec::new();
        {
            let deleted = self
                .deleted
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let assigned = self.assigned();
            let mut procs = self.procs();
            for (c, a) in assigned.iter() {
                if procs.contains_key(c) || deleted.contains(&a.app) {
                    continue;
                }
                procs.insert(c.clone(), pending_proc(c, a));
                self.mark_dirty(c);
                starts.push(c.clone());
            }
            for p in procs.values_mut() {
                if p.kind != ProcessKind::Service || p.status == ProcessStatus::Stopping {
                    continue;
                }
                if !assigned.contains_key(&p.container) {
                    // One being started is stopped by its start task once it runs (stopping it
                    // now could race the create and leave a container behind).
                    if !p.starting {
                        stops.push((p.container.clone(), p.grace));
                    }
                    continue;
                }
                if matches!(p.status, ProcessStatus::Crashed | ProcessStatus::Pending)
                    && !p.starting
                    && p.restart_at.is_some_and(|t| t <= now)
                {
                    starts.push(p.container.clone());
                } else if p.plan.is_none() && !p.attaching && p.status == ProcessStatus::Running {
                    p.attaching = true;
                    attach.push(p.container.clone());
                }
            }
            let forget: Vec<String> = procs
                .values()
                .filter(|p| p.finished_at.is_some_and(|t| t.elapsed() >= KEEP_FINISHED))
                .map(|p| p.container.clone())
                .collect();
            for c in forget {
                procs.remove(&c);
                self.mark_dirty(&c);
            }
        }
        for (c, grace) in stops {
            self.stop(&c, grace);
        }
        for c in starts {
            if let Some(p) = self.procs().get_mut(&c) {
                if p.starting {
                    continue;
                }
                p.starting = true;
            }
            if let Some(me) = self.me() {
                tokio::spawn(async move { me.start(c).await });
            }
        }
        for c in attach {
            if let Some(me) = self.me() {
                tokio::spawn(async move { me.attach(c).await });
            }
        }
    }

    /// Find the plan of an adopted process and start its probes.
    async fn attach(self: Arc<Self>, container: String) {
        let Some((app, release, service)) = self
            .procs()
            .get(&container)
            .map(|p| (p.app.clone(), p.release.clone(), p.service.clone()))
        else {
            return;
        };
        let plan = match self.plans(&app, &release).await {
            Ok(plans) => plans.into_iter().find(|p| p.service == service),
            Err(e) => {
                tracing::debug!(%container, error = %e, "no plan for an adopted process");
                None
            }
        };
        let mut procs = self.procs();
        if let Some(p) = procs.get_mut(&container) {
            p.attaching = false;
            if let Some(plan) = plan {
                p.grace = plan.grace;
                p.plan = Some(plan.clone());
                if p.status == ProcessStatus::Running && p.probes.is_empty() {
                    self.start_probes(p, &plan);
                }
            }
        }
    }

    async fn subscribe(&self) -> mpsc::Receiver<TaskEvent> {
        loop {
            match self.runtime.events().await {
                Ok(rx) => return rx,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot subscribe to containerd events; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// After losing events (containerd restarted): compare the table with containerd.
    async fn resync(&self) -> Result<(), NodeError> {
        let containers = self.runtime.list(&[]).await?;
        let by_id: HashMap<&str, &ContainerInfo> =
            containers.iter().map(|c| (c.id.as_str(), c)).collect();
        let mut exited = Vec::new();
        for p in self.procs().values() {
            let task = by_id
                .get(p.container.as_str())
                .and_then(|c| c.task.as_ref());
            let running = task.is_some_and(|t| t.status == TaskStatus::Running);
            if !running
                && matches!(
                    p.status,
                    ProcessStatus::Running | ProcessStatus::Starting | ProcessStatus::Unhealthy
                )
                && !p.starting
            {
                exited.push((
                    p.container.clone(),
                    task.and_then(|t| t.exit_status).unwrap_or(255),
                ));
            }
        }
        for (container, code) in exited {
            self.on_exit(&container, 0, code).await;
        }
        Ok(())
    }

    async fn on_event(&self, ev: TaskEvent) {
        match ev {
            TaskEvent::Exited {
                id,
                exec_id: None,
                exit_status,
                pid,
                ..
            } => self.on_exit(&id, pid, exit_status).await,
            TaskEvent::Oom { id } => {
                if let Some(p) = self.procs().get(&id) {
                    crate::logs::system(
                        &self.config,
                        &p.app,
                        &format!("process {} ran out of memory ({} MB)", p.id, p.memory),
                    );
                }
            }
            _ => {}
        }
    }

    /// The init process of a container exited (`pid` 0: unknown, as after a resync).
    async fn on_exit(&self, container: &str, pid: u32, code: u32) {
        let mut remove = false;
        let msg = {
            let mut procs = self.procs();
            let Some(p) = procs.get_mut(container) else {
                return;
            };
            if p.starting {
                // Its start task is between `run` and recording it: it handles the exit.
                p.exited_while_starting = Some((pid, code));
                return;
            }
            if pid != 0 && p.pid != 0 && pid != p.pid {
                // The exit of an earlier task of this container id.
                return;
            }
            if p.status == ProcessStatus::Stopping
                || !matches!(
                    p.status,
                    ProcessStatus::Running | ProcessStatus::Starting | ProcessStatus::Unhealthy
                )
            {
                return;
            }
            p.stop_probes();
            p.exit_code = Some(code);
            match p.kind {
                ProcessKind::Service => {
                    p.status = ProcessStatus::Crashed;
                    p.liveness_kill = false;
                    let delay = p.backoff.crashed(
                        &self.policy,
                        p.started_at,
                        Instant::now(),
                        rand::rng().random::<f64>(),
                    );
                    p.restart_at = Some(Instant::now() + delay);
                    (
                        p.app.clone(),
                        format!(
                            "process {} crashed with exit code {code}; restarting in {}s",
                            p.id,
                            delay.as_secs()
                        ),
                    )
                }
                ProcessKind::Process | ProcessKind::Timer => {
                    p.status = if code == 0 {
                        ProcessStatus::Complete
                    } else {
                        ProcessStatus::Failed
                    };
                    p.finished_at = Some(Instant::now());
                    remove = true;
                    (
                        p.app.clone(),
                        format!("process {} exited with code {code}", p.id),
                    )
                }
            }
        };
        self.mark_dirty(container);
        crate::logs::system(&self.config, &msg.0, &msg.1);
        if remove {
            if let Err(e) = self.runtime.remove(container).await {
                tracing::warn!(container, error = %e, "cannot remove an exited container");
            }
            let port = self.procs().get_mut(container).and_then(|p| p.port.take());
            if let Some(port) = port {
                self.ports.release(port);
            }
        }
        self.wake();
    }

    fn on_probe(&self, r: ProbeResult) {
        let mut line = None;
        let mut kill = None;
        {
            let mut procs = self.procs();
            let Some(p) = procs.get_mut(&r.container) else {
                return;
            };
            if p.incarnation != r.incarnation
                || !matches!(
                    p.status,
                    ProcessStatus::Starting | ProcessStatus::Running | ProcessStatus::Unhealthy
                )
            {
                return;
            }
            let threshold = |h: Option<&HealthPlan>| h.map(|h| h.failure_threshold).unwrap_or(3);
            match (r.kind, r.result) {
                (ProbeKind::Readiness, Ok(())) => {
                    p.failures = 0;
                    if p.status != ProcessStatus::Running {
                        if p.status == ProcessStatus::Unhealthy {
                            line =
                                Some((p.app.clone(), format!("process {} is healthy again", p.id)));
                        }
                        p.status = ProcessStatus::Running;
                        self.mark_dirty(&r.container);
                    }
                }
                (ProbeKind::Readiness, Err(why)) => {
                    p.failures += 1;
                    if p.status == ProcessStatus::Running && p.failures >= UNHEALTHY_AFTER {
                        p.status = ProcessStatus::Unhealthy;
                        self.mark_dirty(&r.container);
                        line = Some((
                            p.app.clone(),
                            format!(
                                "process {} is unhealthy ({} failed checks: {why})",
                                p.id, p.failures
                            ),
                        ));
                    }
                }
                (ProbeKind::Liveness, Ok(())) => p.live_failures = 0,
                (ProbeKind::Liveness, Err(why)) => {
                    p.live_failures += 1;
                    let n = threshold(p.plan.as_ref().and_then(|pl| pl.liveness.as_ref()));
                    if p.live_failures >= n && !p.liveness_kill {
                        p.liveness_kill = true;
                        p.stop_probes();
                        line = Some((
                            p.app.clone(),
                            format!(
                                "process {} failed its liveness check {} times in a row ({why}); restarting it",
                                p.id, p.live_failures
                            ),
                        ));
                        kill = Some((p.container.clone(), p.grace));
                    }
                }
            }
        }
        if let Some((app, msg)) = line {
            crate::logs::system(&self.config, &app, &msg);
        }
        if let Some((container, grace)) = kill {
            // Its exit then takes the crash path: a restart in place with the backoff.
            let runtime = self.runtime.clone();
            let me = self.weak.clone();
            tokio::spawn(async move {
                if let Err(e) = runtime.stop(&container, grace).await {
                    if e.is_not_found() {
                        return;
                    }
                    tracing::warn!(%container, error = %e, "cannot stop a process that failed its liveness check; checking it again");
                    // Arm its probes again: the next failed threshold tries once more.
                    if let Some(node) = me.upgrade() {
                        let mut procs = node.procs();
                        if let Some(p) = procs.get_mut(&container) {
                            p.liveness_kill = false;
                            p.live_failures = 0;
                            if let Some(plan) = p.plan.clone() {
                                node.start_probes(p, &plan);
                            }
                        }
                    }
                }
            });
        }
    }

    fn start_probes(&self, p: &mut Proc, plan: &ProcessPlan) {
        p.stop_probes();
        let Some(port) = p.port else {
            return;
        };
        for (kind, h) in [
            (ProbeKind::Readiness, plan.health.as_ref()),
            (ProbeKind::Liveness, plan.liveness.as_ref()),
        ] {
            let Some(h) = h else { continue };
            let probe = probe::Probe {
                check: probe::Check::Http {
                    host: INSTANCE_IP.into(),
                    port: h.port.unwrap_or(port),
                    path: h.path.clone(),
                },
                grace: h.grace,
                interval: h.interval,
                timeout: h.timeout,
            };
            p.probes.push(probe::spawn(
                None,
                probe,
                p.container.clone(),
                p.incarnation,
                kind,
                self.probe_tx.clone(),
            ));
        }
    }

    /// Start (or restart in place) the process of a container of the table.
    async fn start(self: Arc<Self>, container: String) {
        let _permit = self.starts.clone().acquire_owned().await;
        if let Err((app, service, e)) = self.try_start(&container).await {
            tracing::warn!(%app, %service, error = %e, "cannot start process");
            crate::logs::system(
                &self.config,
                &app,
                &format!("cannot start a {service} process: {e}"),
            );
            let mut procs = self.procs();
            if let Some(p) = procs.get_mut(&container) {
                p.starting = false;
                p.exited_while_starting = None;
                p.pid = 0;
                if p.stop_requested.take().is_some() {
                    // Stopped while a start that failed ran: nothing runs, forget it.
                    if let Some(port) = p.port.take() {
                        self.ports.release(port);
                    }
                    procs.remove(&container);
                    drop(procs);
                    self.mark_dirty(&container);
                    self.wake();
                    return;
                }
                p.status = ProcessStatus::Crashed;
                let now = Instant::now();
                let delay = p
                    .backoff
                    .crashed(&self.policy, now, now, rand::rng().random::<f64>());
                p.restart_at = Some(now + delay);
            }
            drop(procs);
            self.mark_dirty(&container);
        }
        self.wake();
    }

    async fn try_start(&self, container: &str) -> Result<(), (String, String, NodeError)> {
        let Some(p) = self.procs().get(container).cloned() else {
            return Ok(());
        };
        let fail = |e: NodeError| (p.app.clone(), p.service.clone(), e);
        let plans = self.plans(&p.app, &p.release).await.map_err(fail)?;
        let base = plans
            .iter()
            .find(|pl| pl.service == p.service)
            .ok_or_else(|| {
                fail(NodeError::Plan(format!(
                    "release {} has no service {}",
                    p.release, p.service
                )))
            })?;
        let mut plan = (**base).clone();
        plan.cpu = p.cpu;
        plan.memory = p.memory;
        let plan = Arc::new(plan);
        let port = match p.port {
            Some(port) => Some(port),
            None if plan.needs_port => Some(self.ports.allocate().ok_or_else(|| {
                fail(NodeError::Plan(
                    "no free host port left in the port range".into(),
                ))
            })?),
            None => None,
        };
        let restart = p.restart_at.is_some() && p.exit_code.is_some();
        // A container of this id may exist: a crashed one restarts in place, an adopted one
        // that never ran is created again. A fresh assignment has none (and no image yet).
        if restart || p.status == ProcessStatus::Crashed || !p.image.is_empty() {
            // Restart in place: the old task is gone; remove its container record first.
            if let Err(e) = self.runtime.remove(container).await {
                if !e.is_not_found() {
                    tracing::warn!(%container, error = %e, "cannot remove a crashed container");
                }
            }
            self.metrics.restarts.inc(&[&p.app, &p.service]);
        }
        let started = Utc::now();
        let cspec = container_spec(
            &self.config,
            &plan,
            ProcessKind::Service,
            &p.id,
            container,
            port,
            started,
            &self.logger_path,
        );
        {
            let mut procs = self.procs();
            let Some(q) = procs.get_mut(container) else {
                if let Some(port) = port {
                    self.ports.release(port);
                }
                return Ok(());
            };
            q.port = port;
            q.image = plan.image.clone();
            q.command = plan.command_line();
            q.grace = plan.grace;
            q.plan = Some(plan.clone());
        }
        let t0 = Instant::now();
        let result = self.runtime.run(&cspec).await;
        let new_pid = result.as_ref().map(|s| s.pid).unwrap_or(0);
        let verb = if p.restarts > 0 || restart || p.exit_code.is_some() {
            "restarted"
        } else {
            "started"
        };
        match result {
            Ok(_) => {
                self.metrics
                    .start_latency
                    .observe(&[], t0.elapsed().as_secs_f64());
                let mut stop_now = None;
                let mut exited = None;
                // Lock order everywhere: `assigned` before `procs` (never both the other way).
                let still_assigned = self.assigned().contains_key(container);
                {
                    let mut procs = self.procs();
                    if let Some(q) = procs.get_mut(container) {
                        q.starting = false;
                        q.pid = new_pid;
                        exited = q
                            .exited_while_starting
                            .take()
                            .filter(|(pid, _)| *pid == 0 || *pid == new_pid)
                            .map(|(_, code)| code);
                        let stop_requested = q.stop_requested.take();
                        q.started = started;
                        q.started_at = Instant::now();
                        q.restart_at = None;
                        q.failures = 0;
                        q.live_failures = 0;
                        q.liveness_kill = false;
                        q.incarnation += 1;
                        if verb == "restarted" {
                            q.restarts += 1;
                        }
                        q.status = if plan.health.is_none() {
                            ProcessStatus::Running
                        } else {
                            ProcessStatus::Starting
                        };
                        self.start_probes(q, &plan);
                        if let Some(grace) = stop_requested {
                            // Stopped while it started: it goes now.
                            stop_now = Some(grace);
                        } else if q.kind == ProcessKind::Service && !still_assigned {
                            // Unassigned while it started: it goes again.
                            stop_now = Some(q.grace);
                        }
                    }
                }
                self.mark_dirty(container);
                crate::logs::system(
                    &self.config,
                    &p.app,
                    &format!(
                        "process {} {verb} (service {}, release {}{})",
                        p.id,
                        p.service,
                        p.release,
                        port.map(|p| format!(", port {p}")).unwrap_or_default()
                    ),
                );
                if let Some(grace) = stop_now {
                    self.stop(container, grace);
                } else if let Some(code) = exited {
                    self.on_exit(container, new_pid, code).await;
                }
                Ok(())
            }
            Err(e) => Err(fail(e.into())),
        }
    }

    /// Drain a process (its record says `stopping`), SIGTERM it, SIGKILL after `grace`, then
    /// remove it, in the background.
    pub fn stop(&self, container: &str, grace: Duration) {
        let (id, app, port) = {
            let mut procs = self.procs();
            let Some(p) = procs.get_mut(container) else {
                return;
            };
            if p.status == ProcessStatus::Stopping {
                return;
            }
            if p.starting {
                // Its start task stops it once the container exists (stopping it now could
                // race the create and leave a container running untracked).
                p.stop_requested = Some(grace);
                return;
            }
            p.stop_probes();
            let was_finished = !p.is_live();
            p.status = ProcessStatus::Stopping;
            if was_finished {
                // A finished one-off: nothing runs, just forget it.
                let port = p.port.take();
                procs.remove(container);
                drop(procs);
                if let Some(port) = port {
                    self.ports.release(port);
                }
                self.mark_dirty(container);
                return;
            }
            (p.id.clone(), p.app.clone(), p.port)
        };
        self.mark_dirty(container);
        crate::logs::system(&self.config, &app, &format!("stopping process {id}"));
        let runtime = self.runtime.clone();
        let container = container.to_string();
        let me = self.weak.clone();
        tokio::spawn(async move {
            // Until it is really gone (containerd may be restarting): the process stays
            // `stopping` in the table, its port taken, and the stop is retried with a backoff.
            let mut delay = Duration::from_millis(500);
            loop {
                // No task (never started, or gone) is fine: the container record still goes.
                let result = match runtime.stop(&container, grace).await {
                    Ok(_) => runtime.remove(&container).await,
                    Err(e) if e.is_not_found() => runtime.remove(&container).await,
                    Err(e) => Err(e),
                };
                match result {
                    Ok(()) => break,
                    Err(e) if e.is_not_found() => break,
                    Err(e) => {
                        tracing::warn!(%container, error = %e, retry_ms = delay.as_millis() as u64, "cannot stop or remove a process; retrying");
                        if me.strong_count() == 0 {
                            return;
                        }
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(30));
                    }
                }
            }
            if let Some(node) = me.upgrade() {
                node.procs().remove(&container);
                if let Some(port) = port {
                    node.ports.release(port);
                }
                node.mark_dirty(&container);
                crate::logs::system(&node.config, &app, &format!("process {id} stopped"));
                node.wake();
            }
        });
    }

    /// Stop a one-off process (`ps stop`). Service processes are stopped by removing their
    /// assignment (the planner replaces them).
    pub fn stop_process(&self, app: &str, id: &str) -> Result<(), NodeError> {
        let c = container_id(app, id);
        let grace = self
            .procs()
            .get(&c)
            .map(|p| p.grace)
            .ok_or_else(|| NodeError::NotFound(id.to_string()))?;
        self.stop(&c, grace);
        self.wake();
        Ok(())
    }

    fn mark_dirty(&self, container: &str) {
        self.dirty
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(container.to_string());
        self.publish.notify_one();
    }

    /// The one writer of this node's process records: writes what changed, in order, coalesced.
    async fn publisher(self: Arc<Self>) {
        loop {
            self.publish.notified().await;
            self.flush().await;
        }
    }

    /// Write every dirty record now.
    async fn flush(&self) {
        let _one = self.flushing.lock().await;
        loop {
            let batch: Vec<String> =
                std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|p| p.into_inner()))
                    .into_iter()
                    .collect();
            if batch.is_empty() {
                break;
            }
            let mut ops = Vec::new();
            let mut written = Vec::new();
            {
                let procs = self.procs();
                let published = self.published();
                for c in &batch {
                    let now = procs.get(c).map(|p| p.record(&self.config.instance));
                    let before = published.get(c);
                    if now.as_ref() == before {
                        continue;
                    }
                    match &now {
                        Some(r) => ops.push(dray_store::Op::Put(
                            repo::process_key(&r.app, &r.process),
                            repo::encode(r),
                        )),
                        None => {
                            if let Some(b) = before {
                                ops.push(dray_store::Op::Delete(repo::process_key(
                                    &b.app, &b.process,
                                )));
                            }
                        }
                    }
                    written.push((c.clone(), now));
                }
            }
            if ops.is_empty() {
                continue;
            }
            let txn = dray_store::Txn {
                compare: vec![],
                success: ops,
                failure: vec![],
            };
            match self.repo.store().txn(txn).await {
                Ok(_) => {
                    let mut published = self.published();
                    for (c, r) in written {
                        match r {
                            Some(r) => published.insert(c, r),
                            None => published.remove(&c),
                        };
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot write process records; retrying");
                    self.dirty
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .extend(batch);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        self.update_gauges();
    }

    fn update_gauges(&self) {
        let mut counts: BTreeMap<(String, &'static str), f64> = BTreeMap::new();
        for p in self.procs().values() {
            *counts
                .entry((p.app.clone(), p.status.as_str()))
                .or_default() += 1.0;
        }
        self.metrics.processes.replace_all(
            counts
                .into_iter()
                .map(|((app, status), n)| (vec![app, status.to_string()], n)),
        );
    }
}

/// The table entry of an assigned process that does not run yet (and the base of a one-off
/// process's entry).
fn pending_proc(container: &str, a: &Assignment) -> Proc {
    Proc {
        container: container.to_string(),
        id: a.process.clone(),
        app: a.app.clone(),
        service: a.service.clone(),
        release: a.release.clone(),
        kind: ProcessKind::Service,
        port: None,
        image: String::new(),
        command: String::new(),
        cpu: a.cpu,
        memory: a.memory,
        started: a.created,
        status: ProcessStatus::Pending,
        exit_code: None,
        restarts: 0,
        grace: Duration::from_secs(30),
        backoff: Backoff::default(),
        started_at: Instant::now(),
        restart_at: None,
        finished_at: None,
        starting: false,
        failures: 0,
        live_failures: 0,
        liveness_kill: false,
        incarnation: 0,
        probes: Vec::new(),
        plan: None,
        attaching: false,
        exited_while_starting: None,
        pid: 0,
        stop_requested: None,
    }
}

/// A one-off process request (`dray run`).
#[derive(Clone, Debug, Default)]
pub struct RunRequest {
    pub app: String,
    pub service: String,
    /// The release to run (default: the active one).
    pub release: Option<String>,
    /// The command; empty = the service's command.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
}

impl Node {
    /// Start a one-off process from a service's definition. It is never restarted; its logs go
    /// where the service's do.
    pub async fn run_once(&self, req: RunRequest) -> Result<Proc, NodeError> {
        let rec = self
            .repo
            .app(&req.app)
            .await?
            .ok_or_else(|| NodeError::NotFound(format!("app {}", req.app)))?
            .value;
        let release = req.release.clone().unwrap_or_else(|| rec.release.clone());
        if release.is_empty() {
            return Err(NodeError::Plan(format!(
                "app {} has no active release: promote one first (dray releases promote)",
                req.app
            )));
        }
        let plans = self.plans(&req.app, &release).await?;
        let base = plans
            .iter()
            .find(|p| p.service == req.service)
            .ok_or_else(|| NodeError::NotFound(format!("service {}", req.service)))?;
        let mut plan = (**base).clone();
        if !req.args.is_empty() {
            plan.args = req.args.clone();
        }
        plan.env.extend(req.env.clone());
        plan.health = None;
        plan.liveness = None;
        let plan = Arc::new(plan);
        let port = if plan.needs_port {
            Some(self.ports.allocate().ok_or_else(|| {
                NodeError::Plan("no free host port left in the port range".into())
            })?)
        } else {
            None
        };
        let id = crate::ids::process_id(&plan.service);
        let container = container_id(&plan.app, &id);
        let started = Utc::now();
        let mut cspec = container_spec(
            &self.config,
            &plan,
            ProcessKind::Process,
            &id,
            &container,
            port,
            started,
            &self.logger_path,
        );
        cspec.shim_of = self.shim_host(&plan.app, &plan.service);
        let proc = Proc {
            kind: ProcessKind::Process,
            port,
            image: plan.image.clone(),
            command: plan.command_line(),
            cpu: plan.cpu,
            memory: plan.memory,
            started,
            status: ProcessStatus::Starting,
            grace: plan.grace,
            incarnation: 1,
            plan: Some(plan.clone()),
            ..pending_proc(
                &container,
                &Assignment {
                    app: plan.app.clone(),
                    service: plan.service.clone(),
                    release: plan.release.clone(),
                    process: id.clone(),
                    instance: self.config.instance.clone(),
                    cpu: plan.cpu,
                    memory: plan.memory,
                    created: started,
                },
            )
        };
        self.procs().insert(container.clone(), proc);
        let t0 = Instant::now();
        match self.runtime.run(&cspec).await {
            Ok(started) => {
                self.metrics
                    .start_latency
                    .observe(&[], t0.elapsed().as_secs_f64());
                let view = {
                    let mut procs = self.procs();
                    let p = procs
                        .get_mut(&container)
                        .ok_or_else(|| NodeError::NotFound(id.clone()))?;
                    p.pid = started.pid;
                    if p.status == ProcessStatus::Starting {
                        p.status = ProcessStatus::Running;
                    }
                    p.clone()
                };
                self.mark_dirty(&container);
                self.flush().await;
                crate::logs::system(
                    &self.config,
                    &plan.app,
                    &format!("one-off process {id} started: {}", plan.command_line()),
                );
                Ok(view)
            }
            Err(e) => {
                self.procs().remove(&container);
                if let Some(p) = port {
                    self.ports.release(p);
                }
                Err(e.into())
            }
        }
    }

    /// The container whose shim a one-off of `service` joins: the longest-running live process
    /// of the service, if any. A one-off is short-lived, so sharing costs the service process
    /// nothing, and the one-off starts without spawning a shim of its own (see
    /// [`dray_runtime::ContainerSpec::shim_of`]).
    fn shim_host(&self, app: &str, service: &str) -> Option<String> {
        self.procs()
            .values()
            .filter(|p| {
                p.app == app
                    && p.service == service
                    && p.kind == ProcessKind::Service
                    && p.status == ProcessStatus::Running
            })
            .min_by_key(|p| p.started)
            .map(|p| p.container.clone())
    }

    /// The containerd container id of a process of an app, given its id or a service name (a
    /// running process of the service is picked).
    pub fn resolve(&self, app: &str, pid_or_service: &str) -> Option<String> {
        let procs = self.procs();
        if let Some(p) = procs
            .get(&container_id(app, pid_or_service))
            .filter(|p| p.status != ProcessStatus::Stopping)
        {
            return Some(p.container.clone());
        }
        let candidates: Vec<&Proc> = procs
            .values()
            .filter(|p| {
                p.app == app && p.service == pid_or_service && p.status == ProcessStatus::Running
            })
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let i = rand::rng().random_range(0..candidates.len());
        Some(candidates[i].container.clone())
    }
}
