//! The supervisor: keeps each app's processes converged on its active release and scale, the
//! way Nomad's alloc/task runners and the kubelet do, and carries out deployments.
//!
//! * State lives in two places only: the store (what should run: the app's active or deploying
//!   release, the live scale) and containerd (what runs: containers labelled with app, service,
//!   release, process id, type and port). The in-memory table is a cache of containerd plus
//!   restart bookkeeping, rebuilt from container labels when the agent starts, so the agent can
//!   be killed at any moment and re-adopt every running task without restarting it.
//! * One loop ([`Supervisor::run`]) reconciles every app on each wake-up: a task event, a change
//!   through the API, or a one-second tick (restarts that are due, health checks, deadlines).
//! * Crashed processes restart in place (same process id and port) after [`backoff`] delays.
//! * A deploy starts the new release's processes next to the old ones, waits until every one is
//!   healthy, then makes the release active and stops the old processes; a deadline, a crash
//!   loop or `apps cancel` rolls it back instead.
//!
//! The supervisor decides what should run; only `dray-runtime` speaks containerd. It must never
//! block its loop on a slow operation (stops with a grace period run in their own tasks).

pub mod backoff;
mod health;
pub mod ports;
mod spec;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use dray_runtime::{ContainerInfo, Runtime, TaskEvent, TaskStatus};
use rand::Rng;
use tokio::sync::Notify;

use crate::config::Config;
use crate::metrics::{Metric, Registry};
use crate::repo::{AppRecord, Repo};
use backoff::{Backoff, BackoffPolicy};
use ports::PortAllocator;

pub use health::check as health_check;
pub use spec::{release_manifest, ProcessPlan};

/// Container labels (the agent's only memory of a container across restarts).
pub mod labels {
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
    /// The id of the rack that made the container (`Config::rack_id`).
    pub const RACK: &str = "dray.rack";
}

/// What kind of process a container is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One of a service's `count` processes.
    Service,
    /// A one-off `dray run`.
    Process,
    /// A timer run.
    Timer,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Service => "service",
            Kind::Process => "process",
            Kind::Timer => "timer",
        }
    }

    fn parse(s: &str) -> Kind {
        match s {
            "process" => Kind::Process,
            "timer" => Kind::Timer,
            _ => Kind::Service,
        }
    }
}

/// Where a process is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Waiting to be (re)started.
    Pending,
    /// Running, not yet passing its health check.
    Starting,
    /// Running (and healthy, when it has a health check).
    Running,
    /// Running but failing its health check.
    Unhealthy,
    /// Exited unexpectedly; restarts after a backoff delay.
    Crashed,
    /// A one-off process that exited 0.
    Complete,
    /// A one-off process that exited non-zero.
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Unhealthy => "unhealthy",
            Status::Crashed => "crashed",
            Status::Complete => "complete",
            Status::Failed => "failed",
        }
    }

    /// Counts toward a service's desired processes.
    fn is_live(self) -> bool {
        !matches!(self, Status::Complete | Status::Failed)
    }
}

/// One process the supervisor knows about.
#[derive(Clone, Debug)]
pub struct Proc {
    /// containerd container id: `<app>.<process id>`.
    pub container: String,
    /// The process id users see: `<service>-<5 letters>`.
    pub id: String,
    pub app: String,
    pub service: String,
    pub release: String,
    pub kind: Kind,
    pub port: Option<u16>,
    pub image: String,
    pub command: String,
    pub cpu: u64,
    pub memory: u64,
    pub started: DateTime<Utc>,
    pub status: Status,
    pub exit_code: Option<u32>,
    pub restarts: u32,
    /// Being stopped (SIGTERM sent, waiting for the grace period).
    pub stopping: bool,
    backoff: Backoff,
    started_at: Instant,
    restart_at: Option<Instant>,
    finished_at: Option<Instant>,
    health_failures: u32,
    plan: Option<Arc<ProcessPlan>>,
}

impl Proc {
    /// The API view.
    pub fn view(&self) -> dray_sdk::Process {
        dray_sdk::Process {
            id: self.id.clone(),
            app: self.app.clone(),
            command: self.command.clone(),
            cpu: self.cpu as f64 / 1000.0,
            host: "127.0.0.1".into(),
            image: self.image.clone(),
            instance: "local".into(),
            memory: self.memory as f64,
            name: self.service.clone(),
            ports: self.port.map(|p| vec![p.to_string()]).unwrap_or_default(),
            release: self.release.clone(),
            started: self.started,
            status: match self.status {
                Status::Pending => dray_sdk::ProcessStatus::Pending,
                Status::Starting => dray_sdk::ProcessStatus::Starting,
                Status::Running => dray_sdk::ProcessStatus::Running,
                Status::Unhealthy => dray_sdk::ProcessStatus::Unhealthy,
                Status::Crashed => dray_sdk::ProcessStatus::Crashed,
                Status::Complete => dray_sdk::ProcessStatus::Complete,
                Status::Failed => dray_sdk::ProcessStatus::Failed,
            },
            service: self.service.clone(),
            kind: self.kind.as_str().into(),
            restarts: self.restarts,
            exit_code: self.exit_code.map(|c| c as i32),
        }
    }
}

/// Why a supervisor call failed.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
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
    restarts: Metric,
    start_latency: Metric,
    processes: Metric,
}

/// Knobs of the supervisor.
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

/// The supervisor, shared by the API (queries, wake-ups) and its own loop.
pub struct Supervisor {
    runtime: Runtime,
    repo: Repo,
    config: Arc<Config>,
    ports: PortAllocator,
    procs: Mutex<BTreeMap<String, Proc>>,
    wake: Notify,
    policy: BackoffPolicy,
    metrics: Metrics,
    logger_path: PathBuf,
    /// The last "waiting for resources" message said per deploy (said once, not every tick).
    waiting_said: Mutex<HashMap<String, String>>,
    weak: std::sync::Weak<Supervisor>,
}

impl Supervisor {
    /// A supervisor over `runtime`; call [`Supervisor::adopt`] then spawn [`Supervisor::run`].
    pub fn new(
        runtime: Runtime,
        repo: Repo,
        config: Arc<Config>,
        registry: &Registry,
        options: Options,
    ) -> Arc<Self> {
        Arc::new_cyclic(|weak| Supervisor {
            runtime,
            repo,
            ports: PortAllocator::new(config.port_range.0..=config.port_range.1),
            config,
            procs: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
            policy: options.policy,
            weak: weak.clone(),
            metrics: Metrics {
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
            waiting_said: Mutex::new(HashMap::new()),
        })
    }

    /// The containerd runtime (for exec and image operations by the controllers).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The host ports of the rack (resources take theirs from the same range).
    pub fn ports(&self) -> &PortAllocator {
        &self.ports
    }

    fn procs(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Proc>> {
        // A poisoned lock means a panic elsewhere; the table itself is still consistent
        // (every update is a single insert/remove/field write).
        self.procs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ask the loop to reconcile now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Processes of an app (all apps with `None`), by process id.
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
        self.procs()
            .values()
            .find(|p| p.app == app && p.id == id)
            .cloned()
    }

    /// Rebuild the process table from containerd after a (re)start: running tasks are adopted
    /// as they are; tasks that exited while the agent was away are treated as crashes.
    pub async fn adopt(&self) -> Result<usize, SupervisorError> {
        let containers = self.runtime.list(&[]).await?;
        let mut adopted = 0;
        let mut table = BTreeMap::new();
        for c in containers {
            let Some(p) = self.proc_from_container(&c) else {
                continue;
            };
            if let Some(port) = p.port {
                self.ports.reserve(port);
            }
            adopted += 1;
            table.insert(p.container.clone(), p);
        }
        *self.procs() = table;
        tracing::info!(adopted, "re-adopted processes from containerd");
        self.wake();
        Ok(adopted)
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
        let kind = Kind::parse(l.get(labels::TYPE).map(String::as_str).unwrap_or("service"));
        let (status, exit_code) = match &c.task {
            // It was running before the agent went away: keep it in service; the health
            // checks take over once the reconcile loop attaches its plan.
            Some(t) if t.status == TaskStatus::Running => (Status::Running, None),
            Some(t) if t.status == TaskStatus::Stopped => {
                let code = t.exit_status;
                match kind {
                    Kind::Service => (Status::Crashed, code),
                    _ if code == Some(0) => (Status::Complete, code),
                    _ => (Status::Failed, code),
                }
            }
            Some(_) => (Status::Starting, None),
            None => (Status::Pending, None),
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
            stopping: false,
            backoff: Backoff::default(),
            started_at: now,
            restart_at: matches!(status, Status::Crashed | Status::Pending).then_some(now),
            finished_at: matches!(status, Status::Complete | Status::Failed).then_some(now),
            health_failures: 0,
            plan: None,
        })
    }

    /// The loop: task events, wake-ups and a one-second tick, until the process exits.
    pub async fn run(self: Arc<Self>) {
        let mut events = self.subscribe().await;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
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
                _ = self.wake.notified() => {}
                _ = tick.tick() => {}
            }
            if let Err(e) = self.reconcile_all().await {
                tracing::warn!(error = %e, "reconcile failed; retrying");
            }
        }
    }

    async fn subscribe(&self) -> tokio::sync::mpsc::Receiver<TaskEvent> {
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
    async fn resync(&self) -> Result<(), SupervisorError> {
        let containers = self.runtime.list(&[]).await?;
        let by_id: HashMap<&str, &ContainerInfo> =
            containers.iter().map(|c| (c.id.as_str(), c)).collect();
        let mut exited = Vec::new();
        for p in self.procs().values() {
            let running = by_id
                .get(p.container.as_str())
                .and_then(|c| c.task.as_ref())
                .is_some_and(|t| t.status == TaskStatus::Running);
            if !running
                && matches!(
                    p.status,
                    Status::Running | Status::Starting | Status::Unhealthy
                )
            {
                let code = by_id
                    .get(p.container.as_str())
                    .and_then(|c| c.task.as_ref())
                    .and_then(|t| t.exit_status)
                    .unwrap_or(255);
                exited.push((p.container.clone(), code));
            }
        }
        for (container, code) in exited {
            self.on_exit(&container, code).await;
        }
        Ok(())
    }

    async fn on_event(&self, ev: TaskEvent) {
        match ev {
            TaskEvent::Exited {
                id,
                exec_id: None,
                exit_status,
                ..
            } => self.on_exit(&id, exit_status).await,
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

    async fn on_exit(&self, container: &str, code: u32) {
        let mut remove = false;
        let msg = {
            let mut procs = self.procs();
            let Some(p) = procs.get_mut(container) else {
                return;
            };
            if p.stopping {
                return;
            }
            if !matches!(
                p.status,
                Status::Running | Status::Starting | Status::Unhealthy
            ) {
                return;
            }
            p.exit_code = Some(code);
            match p.kind {
                Kind::Service => {
                    p.status = Status::Crashed;
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
                Kind::Process | Kind::Timer => {
                    p.status = if code == 0 {
                        Status::Complete
                    } else {
                        Status::Failed
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
        crate::logs::system(&self.config, &msg.0, &msg.1);
        if remove {
            if let Err(e) = self.runtime.remove(container).await {
                tracing::warn!(container, error = %e, "cannot remove an exited container");
            }
            if let Some(port) = self.procs().get(container).and_then(|p| p.port) {
                self.ports.release(port);
            }
        }
        self.wake();
    }

    async fn reconcile_all(&self) -> Result<(), SupervisorError> {
        let apps = self.repo.apps().await?;
        let names: std::collections::HashSet<String> =
            apps.iter().map(|a| a.name.clone()).collect();
        for app in apps {
            if let Err(e) = self.reconcile_app(&app).await {
                tracing::warn!(app = %app.name, error = %e, "cannot reconcile app");
            }
        }
        // Processes of deleted apps go away.
        let orphans: Vec<String> = self
            .procs()
            .values()
            .filter(|p| !names.contains(&p.app) && !p.stopping)
            .map(|p| p.container.clone())
            .collect();
        for c in orphans {
            self.stop(&c, Duration::from_secs(10));
        }
        self.forget_finished();
        self.update_gauges();
        Ok(())
    }

    fn forget_finished(&self) {
        let keep = Duration::from_secs(600);
        self.procs()
            .retain(|_, p| p.finished_at.is_none_or(|t| t.elapsed() < keep));
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

    /// Converge one app.
    async fn reconcile_app(&self, rec: &AppRecord) -> Result<(), SupervisorError> {
        let target = if rec.deploying.is_empty() {
            rec.release.clone()
        } else {
            rec.deploying.clone()
        };
        let plans = if target.is_empty() {
            Vec::new()
        } else {
            match spec::plan_release(&self.repo, &self.config, rec, &target).await {
                Ok(p) => p,
                Err(SupervisorError::Waiting(reason)) => {
                    // Its resources are not ready yet: nothing starts or stops, the running
                    // processes keep their health checks, and a deploy still honours its
                    // deadline and `apps cancel`.
                    self.check_health(&rec.name).await;
                    if !rec.deploying.is_empty() {
                        self.deploy_waiting(rec, &reason).await?;
                    }
                    return Ok(());
                }
                Err(e) => {
                    if !rec.deploying.is_empty() {
                        self.finish_deploy(rec, Some(format!("cannot run release {target}: {e}")))
                            .await?;
                    }
                    return Err(e);
                }
            }
        };
        let scale = crate::repo::Repo::scale(&self.repo, &rec.name).await?;
        // `dray scale --cpu/--memory` wins over the manifest.
        let plans: Vec<Arc<ProcessPlan>> = plans
            .into_iter()
            .map(|p| match scale.get(&p.service) {
                Some(s)
                    if s.cpu.is_some_and(|c| c != p.cpu)
                        || s.memory.is_some_and(|m| m != p.memory) =>
                {
                    let mut q = (*p).clone();
                    q.cpu = s.cpu.unwrap_or(q.cpu);
                    q.memory = s.memory.unwrap_or(q.memory);
                    Arc::new(q)
                }
                _ => p,
            })
            .collect();

        let mut starts: Vec<(Arc<ProcessPlan>, Option<Proc>)> = Vec::new();
        let mut stops: Vec<String> = Vec::new();
        let now = Instant::now();
        {
            let mut procs = self.procs();
            // Re-adopted processes get their plan back (for health checks and restarts).
            for p in procs.values_mut() {
                if p.plan.is_none() && p.app == rec.name && p.kind == Kind::Service {
                    p.plan = plans
                        .iter()
                        .find(|pl| pl.service == p.service && pl.release == p.release)
                        .cloned();
                }
            }
            let procs = &*procs;
            for plan in &plans {
                let want = desired(&scale, plan);
                let current: Vec<&Proc> = service_procs(procs, &rec.name, &plan.service, &target)
                    .filter(|p| p.status.is_live())
                    .collect();
                // Processes with other limits (after `dray scale --cpu/--memory`) are replaced:
                // they stay until enough processes with the new limits run.
                let (mine, stale): (Vec<&Proc>, Vec<&Proc>) = current
                    .into_iter()
                    .partition(|p| p.cpu == plan.cpu && p.memory == plan.memory);
                let running = mine.iter().filter(|p| p.status == Status::Running).count();
                if running >= want {
                    stops.extend(stale.iter().map(|p| p.container.clone()));
                }
                // Crashed processes whose backoff is over restart in place.
                for p in &mine {
                    if matches!(p.status, Status::Crashed | Status::Pending)
                        && p.restart_at.is_some_and(|t| t <= now)
                    {
                        starts.push((plan.clone(), Some((*p).clone())));
                    }
                }
                if mine.len() < want {
                    for _ in mine.len()..want {
                        starts.push((plan.clone(), None));
                    }
                } else if mine.len() > want {
                    let mut extra: Vec<&&Proc> = mine.iter().collect();
                    extra.sort_by_key(|p| std::cmp::Reverse(p.started));
                    for p in extra.into_iter().take(mine.len() - want) {
                        stops.push(p.container.clone());
                    }
                }
            }
            // Processes of other releases: kept during a deploy (the old release), stopped
            // otherwise; processes of services the release no longer has are stopped.
            for p in procs.values() {
                if p.app != rec.name || p.kind != Kind::Service || p.stopping {
                    continue;
                }
                let service_known = plans.iter().any(|pl| pl.service == p.service);
                let keep_old = !rec.deploying.is_empty() && p.release == rec.release;
                if (p.release != target && !keep_old) || (p.release == target && !service_known) {
                    stops.push(p.container.clone());
                }
            }
        }
        for c in stops {
            self.stop(&c, self.grace_of(&c, &plans));
        }
        self.start_all(starts).await;
        self.check_health(&rec.name).await;
        if !rec.deploying.is_empty() {
            self.advance_deploy(rec, &plans, &scale).await?;
        }
        Ok(())
    }

    fn grace_of(&self, container: &str, plans: &[Arc<ProcessPlan>]) -> Duration {
        let service = self
            .procs()
            .get(container)
            .map(|p| p.service.clone())
            .unwrap_or_default();
        plans
            .iter()
            .find(|p| p.service == service)
            .map(|p| p.grace)
            .unwrap_or(Duration::from_secs(30))
    }

    /// Start (or restart in place) processes, a few at a time.
    async fn start_all(&self, starts: Vec<(Arc<ProcessPlan>, Option<Proc>)>) {
        use futures::StreamExt;
        futures::stream::iter(starts)
            .for_each_concurrent(4, |(plan, existing)| async move {
                if let Err(e) = self.start(plan.clone(), existing).await {
                    tracing::warn!(app = %plan.app, service = %plan.service, error = %e, "cannot start process");
                    crate::logs::system(
                        &self.config,
                        &plan.app,
                        &format!("cannot start a {} process: {e}", plan.service),
                    );
                }
            })
            .await;
    }

    async fn start(
        &self,
        plan: Arc<ProcessPlan>,
        existing: Option<Proc>,
    ) -> Result<(), SupervisorError> {
        let (id, port, restarts, backoff, exit_code) = match &existing {
            Some(p) => (
                p.id.clone(),
                p.port,
                p.restarts + 1,
                p.backoff.clone(),
                p.exit_code,
            ),
            None => {
                let port = if plan.needs_port {
                    Some(self.ports.allocate().ok_or_else(|| {
                        SupervisorError::Plan("no free host port left in the port range".into())
                    })?)
                } else {
                    None
                };
                (
                    spec::process_id(&plan.service),
                    port,
                    0,
                    Backoff::default(),
                    None,
                )
            }
        };
        let container = format!("{}.{}", plan.app, id);
        if let Some(p) = &existing {
            // Restart in place: the old task is gone; remove its container record first.
            if let Err(e) = self.runtime.remove(&p.container).await {
                tracing::warn!(container = %p.container, error = %e, "cannot remove a crashed container");
            }
            self.metrics.restarts.inc(&[&plan.app, &plan.service]);
        }
        let started = Utc::now();
        let container_spec = spec::container_spec(
            &self.config,
            &plan,
            &id,
            &container,
            port,
            started,
            &self.logger_path,
        );
        {
            let mut procs = self.procs();
            procs.insert(
                container.clone(),
                Proc {
                    container: container.clone(),
                    id: id.clone(),
                    app: plan.app.clone(),
                    service: plan.service.clone(),
                    release: plan.release.clone(),
                    kind: Kind::Service,
                    port,
                    image: plan.image.clone(),
                    command: plan.command_line(),
                    cpu: plan.cpu,
                    memory: plan.memory,
                    started,
                    status: Status::Pending,
                    exit_code,
                    restarts,
                    stopping: false,
                    backoff,
                    started_at: Instant::now(),
                    restart_at: None,
                    finished_at: None,
                    health_failures: 0,
                    plan: Some(plan.clone()),
                },
            );
        }
        let t0 = Instant::now();
        match self.runtime.run(&container_spec).await {
            Ok(_) => {
                self.metrics
                    .start_latency
                    .observe(&[], t0.elapsed().as_secs_f64());
                let healthy_now = plan.health.is_none();
                if let Some(p) = self.procs().get_mut(&container) {
                    p.status = if healthy_now {
                        Status::Running
                    } else {
                        Status::Starting
                    };
                    p.started_at = Instant::now();
                }
                let verb = if restarts > 0 { "restarted" } else { "started" };
                crate::logs::system(
                    &self.config,
                    &plan.app,
                    &format!(
                        "process {id} {verb} (service {}, release {}{})",
                        plan.service,
                        plan.release,
                        port.map(|p| format!(", port {p}")).unwrap_or_default()
                    ),
                );
                Ok(())
            }
            Err(e) => {
                if let Some(p) = self.procs().get_mut(&container) {
                    p.status = Status::Crashed;
                    let delay = p.backoff.crashed(
                        &self.policy,
                        Instant::now(),
                        Instant::now(),
                        rand::rng().random::<f64>(),
                    );
                    p.restart_at = Some(Instant::now() + delay);
                }
                Err(e.into())
            }
        }
    }

    /// SIGTERM a process, SIGKILL after `grace`, then remove it (in the background).
    pub fn stop(&self, container: &str, grace: Duration) {
        let (id, app, port) = {
            let mut procs = self.procs();
            let Some(p) = procs.get_mut(container) else {
                return;
            };
            if p.stopping {
                return;
            }
            p.stopping = true;
            (p.id.clone(), p.app.clone(), p.port)
        };
        crate::logs::system(&self.config, &app, &format!("stopping process {id}"));
        let runtime = self.runtime.clone();
        let container = container.to_string();
        let me = self.self_ref();
        tokio::spawn(async move {
            match runtime.stop(&container, grace).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => tracing::warn!(%container, error = %e, "cannot stop process"),
            }
            if let Err(e) = runtime.remove(&container).await {
                tracing::warn!(%container, error = %e, "cannot remove container");
            }
            if let Some(sup) = me.upgrade() {
                sup.procs().remove(&container);
                if let Some(port) = port {
                    sup.ports.release(port);
                }
                crate::logs::system(&sup.config, &app, &format!("process {id} stopped"));
                sup.wake();
            }
        });
    }

    fn self_ref(&self) -> std::sync::Weak<Supervisor> {
        self.weak.clone()
    }

    /// Stop one process of an app (`ps stop`); a service process is replaced by the loop.
    pub fn stop_process(&self, app: &str, id: &str) -> Result<(), SupervisorError> {
        let (container, grace) = {
            let procs = self.procs();
            let p = procs
                .values()
                .find(|p| p.app == app && p.id == id)
                .ok_or_else(|| SupervisorError::NotFound(id.to_string()))?;
            let grace = p
                .plan
                .as_ref()
                .map(|pl| pl.grace)
                .unwrap_or(Duration::from_secs(30));
            (p.container.clone(), grace)
        };
        self.stop(&container, grace);
        self.wake();
        Ok(())
    }

    /// Replace every process of a service (or of the whole app), one at a time in the
    /// background: start-before-stop is left to the loop, which refills the count.
    pub fn restart(&self, app: &str, service: Option<&str>) -> usize {
        let targets: Vec<(String, Duration)> = self
            .procs()
            .values()
            .filter(|p| {
                p.app == app
                    && p.kind == Kind::Service
                    && !p.stopping
                    && service.is_none_or(|s| p.service == s)
            })
            .map(|p| {
                (
                    p.container.clone(),
                    p.plan
                        .as_ref()
                        .map(|pl| pl.grace)
                        .unwrap_or(Duration::from_secs(30)),
                )
            })
            .collect();
        let n = targets.len();
        for (c, grace) in targets {
            self.stop(&c, grace);
        }
        self.wake();
        n
    }

    /// Run the health check of every starting or running process of an app that has one.
    async fn check_health(&self, app: &str) {
        let checks: Vec<(String, u16, Arc<ProcessPlan>, Instant, Status)> = self
            .procs()
            .values()
            .filter(|p| {
                p.app == app
                    && !p.stopping
                    && matches!(
                        p.status,
                        Status::Starting | Status::Running | Status::Unhealthy
                    )
            })
            .filter_map(|p| {
                let plan = p.plan.clone()?;
                plan.health.as_ref()?;
                Some((p.container.clone(), p.port?, plan, p.started_at, p.status))
            })
            .collect();
        for (container, port, plan, started_at, status) in checks {
            let Some(h) = plan.health.as_ref() else {
                continue;
            };
            if started_at.elapsed() < h.grace && status == Status::Starting {
                continue;
            }
            let ok = health::check(port, &h.path, h.timeout).await;
            let mut procs = self.procs();
            let Some(p) = procs.get_mut(&container) else {
                continue;
            };
            if p.stopping
                || !matches!(
                    p.status,
                    Status::Starting | Status::Running | Status::Unhealthy
                )
            {
                continue;
            }
            if ok {
                p.health_failures = 0;
                p.status = Status::Running;
            } else {
                p.health_failures += 1;
                if p.status != Status::Starting && p.health_failures >= 3 {
                    p.status = Status::Unhealthy;
                }
            }
        }
    }

    /// Move a deployment forward: commit it when every process of the new release is running
    /// and healthy; roll it back on cancel, deadline or crash loop.
    async fn advance_deploy(
        &self,
        rec: &AppRecord,
        plans: &[Arc<ProcessPlan>],
        scale: &BTreeMap<String, crate::repo::ScaleRecord>,
    ) -> Result<(), SupervisorError> {
        if let Some(reason) = deploy_ended(rec, None) {
            return self.finish_deploy(rec, Some(reason)).await;
        }
        let (ready, crash_loop) = {
            let procs = self.procs();
            let mut ready = true;
            let mut crash_loop = None;
            for plan in plans {
                let want = desired(scale, plan);
                let mine: Vec<&Proc> =
                    service_procs(&procs, &rec.name, &plan.service, &rec.deploying).collect();
                let running = mine.iter().filter(|p| p.status == Status::Running).count();
                if running < want {
                    ready = false;
                }
                if let Some(p) = mine.iter().find(|p| p.backoff.crashes >= 3) {
                    crash_loop = Some(format!(
                        "process {} of release {} keeps crashing (exit code {})",
                        p.id,
                        rec.deploying,
                        p.exit_code
                            .map(|c| c.to_string())
                            .unwrap_or_else(|| "?".into())
                    ));
                }
            }
            (ready, crash_loop)
        };
        if let Some(reason) = crash_loop {
            return self.finish_deploy(rec, Some(reason)).await;
        }
        if ready {
            self.finish_deploy(rec, None).await?;
        }
        Ok(())
    }

    /// A deploy whose release waits for its resources: roll it back on cancel or deadline, and
    /// say once what it waits for.
    async fn deploy_waiting(&self, rec: &AppRecord, reason: &str) -> Result<(), SupervisorError> {
        if let Some(reason) = deploy_ended(rec, Some(reason)) {
            return self.finish_deploy(rec, Some(reason)).await;
        }
        let mut said = self.waiting_said.lock().unwrap_or_else(|p| p.into_inner());
        let key = format!("{}/{}", rec.name, rec.deploying);
        if said.get(&key).map(String::as_str) != Some(reason) {
            said.insert(key, reason.to_string());
            drop(said);
            crate::logs::system(&self.config, &rec.name, &format!("waiting: {reason}"));
        }
        Ok(())
    }

    /// End a deployment: `failure` None makes the release active, Some rolls back.
    async fn finish_deploy(
        &self,
        rec: &AppRecord,
        failure: Option<String>,
    ) -> Result<(), SupervisorError> {
        let target = rec.deploying.clone();
        let result = self
            .repo
            .update_app(&rec.name, |r| {
                if r.deploying != target {
                    return false;
                }
                if failure.is_none() {
                    r.release = target.clone();
                    r.last_deploy_error.clear();
                } else {
                    r.last_deploy_error = failure.clone().unwrap_or_default();
                }
                r.deploying.clear();
                r.cancel_requested = false;
                r.status = dray_sdk::AppStatus::Running;
                true
            })
            .await?;
        if result {
            let msg = match &failure {
                None => format!("release {target} is active"),
                Some(reason) => format!("rolled back from release {target}: {reason}"),
            };
            crate::logs::system(&self.config, &rec.name, &msg);
            tracing::info!(app = %rec.name, release = %target, ok = failure.is_none(), "deployment finished");
        }
        self.wake();
        Ok(())
    }
}

/// Why a deployment must roll back now regardless of its processes (cancelled, or past its
/// deadline, with what it was `waiting` for), or `None`.
fn deploy_ended(rec: &AppRecord, waiting: Option<&str>) -> Option<String> {
    if rec.cancel_requested {
        return Some("the deployment was cancelled".into());
    }
    let deadline = rec.deploy_started + chrono::Duration::seconds(rec.deploy_timeout as i64);
    (Utc::now() > deadline).then(|| {
        format!(
            "release {} did not become healthy within {}s{}",
            rec.deploying,
            rec.deploy_timeout,
            waiting.map(|w| format!(": {w}")).unwrap_or_default()
        )
    })
}

/// How many processes of a plan's service should run: the live scale, else the manifest's.
fn desired(scale: &BTreeMap<String, crate::repo::ScaleRecord>, plan: &ProcessPlan) -> usize {
    scale
        .get(&plan.service)
        .and_then(|s| s.count)
        .unwrap_or(plan.count) as usize
}

/// The live service processes of one service and release of an app.
fn service_procs<'a>(
    procs: &'a BTreeMap<String, Proc>,
    app: &'a str,
    service: &'a str,
    release: &'a str,
) -> impl Iterator<Item = &'a Proc> + 'a {
    procs.values().filter(move |p| {
        p.app == app
            && p.kind == Kind::Service
            && p.service == service
            && p.release == release
            && !p.stopping
    })
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

impl Supervisor {
    /// Start a one-off process from a service's definition. It is never restarted; its logs go
    /// where the service's do.
    pub async fn run_once(&self, req: RunRequest) -> Result<Proc, SupervisorError> {
        let rec = self
            .repo
            .app(&req.app)
            .await?
            .ok_or_else(|| SupervisorError::NotFound(format!("app {}", req.app)))?
            .value;
        let release = req.release.clone().unwrap_or_else(|| rec.release.clone());
        if release.is_empty() {
            return Err(SupervisorError::Plan(format!(
                "app {} has no active release: promote one first (dray releases promote)",
                req.app
            )));
        }
        let plans = spec::plan_release(&self.repo, &self.config, &rec, &release).await?;
        let base = plans
            .iter()
            .find(|p| p.service == req.service)
            .ok_or_else(|| SupervisorError::NotFound(format!("service {}", req.service)))?;
        let mut plan = (**base).clone();
        if !req.args.is_empty() {
            plan.args = req.args.clone();
        }
        plan.env.extend(req.env.clone());
        plan.health = None;
        let plan = Arc::new(plan);
        let port = if plan.needs_port {
            Some(self.ports.allocate().ok_or_else(|| {
                SupervisorError::Plan("no free host port left in the port range".into())
            })?)
        } else {
            None
        };
        let id = spec::process_id(&plan.service);
        let container = format!("{}.{}", plan.app, id);
        let started = Utc::now();
        let mut cspec = spec::container_spec(
            &self.config,
            &plan,
            &id,
            &container,
            port,
            started,
            &self.logger_path,
        );
        cspec
            .labels
            .insert(labels::TYPE.into(), Kind::Process.as_str().into());
        cspec.shim_of = self.shim_host(&plan.app, &plan.service);
        let proc = Proc {
            container: container.clone(),
            id: id.clone(),
            app: plan.app.clone(),
            service: plan.service.clone(),
            release: plan.release.clone(),
            kind: Kind::Process,
            port,
            image: plan.image.clone(),
            command: plan.command_line(),
            cpu: plan.cpu,
            memory: plan.memory,
            started,
            status: Status::Starting,
            exit_code: None,
            restarts: 0,
            stopping: false,
            backoff: Backoff::default(),
            started_at: Instant::now(),
            restart_at: None,
            finished_at: None,
            health_failures: 0,
            plan: Some(plan.clone()),
        };
        self.procs().insert(container.clone(), proc);
        let t0 = Instant::now();
        match self.runtime.run(&cspec).await {
            Ok(_) => {
                self.metrics
                    .start_latency
                    .observe(&[], t0.elapsed().as_secs_f64());
                let mut procs = self.procs();
                let p = procs
                    .get_mut(&container)
                    .ok_or_else(|| SupervisorError::NotFound(id.clone()))?;
                if p.status == Status::Starting {
                    p.status = Status::Running;
                }
                let view = p.clone();
                drop(procs);
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
                    && p.kind == Kind::Service
                    && p.status == Status::Running
                    && !p.stopping
            })
            .min_by_key(|p| p.started)
            .map(|p| p.container.clone())
    }

    /// The containerd container id of a process of an app, given its id or a service name (a
    /// running process of the service is picked).
    pub fn resolve(&self, app: &str, pid_or_service: &str) -> Option<String> {
        let procs = self.procs();
        if let Some(p) = procs
            .values()
            .find(|p| p.app == app && p.id == pid_or_service && !p.stopping)
        {
            return Some(p.container.clone());
        }
        let candidates: Vec<&Proc> = procs
            .values()
            .filter(|p| {
                p.app == app
                    && p.service == pid_or_service
                    && p.status == Status::Running
                    && !p.stopping
            })
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let i = rand::rng().random_range(0..candidates.len());
        Some(candidates[i].container.clone())
    }
}
