//! From a release to processes: what each service runs ([`ProcessPlan`]), whether its linked
//! resources are ready, and the one container spec builder of this instance's processes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dray_runtime::{ContainerSpec, Log};

use super::{labels, NodeError};
use crate::app::ParsedRelease;
use crate::app::{link_resources, LinkError};
use crate::config::Config;
use crate::repo::{ProcessKind, Repo};

/// A service's HTTP check (readiness or liveness) on a port of the process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthPlan {
    pub path: String,
    /// The port checked: `health.port` / `liveness.port`, else the process's port.
    pub port: Option<u16>,
    pub grace: Duration,
    pub interval: Duration,
    pub timeout: Duration,
    /// Failures in a row that make it fail (readiness: 3, as Convox; liveness: its
    /// `failureThreshold`).
    pub failure_threshold: u32,
}

/// Everything needed to run the processes of one service of one release.
#[derive(Clone, Debug)]
pub struct ProcessPlan {
    pub app: String,
    pub service: String,
    pub release: String,
    pub build: String,
    pub image: String,
    /// `command:` shell-split; empty = the image's CMD.
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub count: u32,
    pub cpu: u64,
    pub memory: u64,
    pub privileged: bool,
    pub needs_port: bool,
    /// Readiness: the process serves once it passes (services with a port, unless disabled).
    pub health: Option<HealthPlan>,
    /// Liveness: the process is restarted when it fails (only with `liveness.path`).
    pub liveness: Option<HealthPlan>,
    /// SIGTERM to SIGKILL (`termination.grace`).
    pub grace: Duration,
    pub agent: bool,
}

impl ProcessPlan {
    /// The command as `ps` shows it.
    pub fn command_line(&self) -> String {
        shell_words::join(&self.args)
    }
}

/// A release's manifest, interpolated with its env (moved to [`crate::app`], which parses each
/// release once; re-exported here for the node's callers).
pub use crate::app::release_manifest;

/// Plans for every service of a release, parsed once (`cache.get(app, id)` of the agent's
/// [`crate::app::ReleaseCache`]); services with `scale.count` 0 included: they run nothing until
/// scaled.
pub async fn plan_parsed(
    repo: &Repo,
    config: &Config,
    app: &str,
    parsed: &ParsedRelease,
) -> Result<Vec<Arc<ProcessPlan>>, NodeError> {
    let release = &parsed.release;
    let release_id = release.id.as_str();
    let build = if release.build.is_empty() {
        None
    } else {
        repo.build(app, &release.build).await?
    };
    let env = &parsed.env;
    let m = parsed
        .manifest()
        .map_err(|e| NodeError::Plan(e.to_string()))?;
    let resources = if m.resources.is_empty() {
        Vec::new()
    } else {
        repo.resources(Some(app)).await?
    };
    let rec_name = app;
    let mut plans = Vec::new();
    for (name, svc) in &m.services {
        let image = match (&svc.image, &build) {
            (Some(image), _) if !image.is_empty() => image.clone(),
            (_, Some(b)) if !b.image.is_empty() => b.image.clone(),
            _ => {
                return Err(NodeError::Plan(format!(
                    "service {name} has no image: release {release_id} has no build with an image and the service sets no `image:`"
                )))
            }
        };
        let mut penv = m
            .runtime_env(name, env)
            .map_err(|e| NodeError::Plan(format!("service {name}: {e}")))?;
        link_resources(&mut penv, env, svc, &resources).map_err(|e| match e {
            LinkError::Waiting(e) => NodeError::Waiting(format!("service {name}: {e}")),
            LinkError::Failed(e) => NodeError::Plan(format!("service {name}: {e}")),
        })?;
        penv.insert("APP".into(), rec_name.to_string());
        penv.insert("BUILD".into(), release.build.clone());
        penv.insert("RELEASE".into(), release.id.clone());
        penv.insert("SERVICE".into(), name.clone());
        penv.insert("RACK".into(), config.rack.clone());
        penv.insert("INSTANCE_IP".into(), "127.0.0.1".into());
        let health = readiness(svc);
        let liveness = liveness(svc);
        plans.push(Arc::new(ProcessPlan {
            app: rec_name.to_string(),
            service: name.clone(),
            release: release.id.clone(),
            build: release.build.clone(),
            image,
            args: svc.command_args().unwrap_or_default(),
            env: penv,
            count: svc.count_range().0.max(0) as u32,
            cpu: svc.scale.cpu.max(0) as u64,
            memory: svc.scale.memory.max(0) as u64,
            privileged: svc.privileged,
            needs_port: svc.main_port().is_some(),
            health,
            liveness,
            grace: Duration::from_secs(svc.termination.grace.max(0) as u64),
            agent: svc.agent,
        }));
    }
    Ok(plans)
}

/// Seconds from a manifest field, at most an hour (a probe's grace, interval or timeout).
fn secs(n: i64) -> Duration {
    Duration::from_secs(n.clamp(0, 3600) as u64)
}

/// A service's readiness check: `health` on its main port (or `health.port`), for services with
/// a port whose check is not disabled. Fails after 3 failures in a row (Convox's threshold).
pub fn readiness(svc: &dray_manifest::Service) -> Option<HealthPlan> {
    let h = &svc.health;
    (svc.main_port().is_some() && !h.disable).then(|| HealthPlan {
        path: if h.path.is_empty() {
            "/".into()
        } else {
            h.path.clone()
        },
        port: h.port.as_ref().map(|p| p.port),
        grace: secs(h.grace),
        interval: secs(h.interval).max(Duration::from_secs(1)),
        timeout: secs(h.timeout).max(Duration::from_secs(1)),
        failure_threshold: 3,
    })
}

/// A service's liveness check (only with `liveness.path`).
pub fn liveness(svc: &dray_manifest::Service) -> Option<HealthPlan> {
    let l = svc.liveness.as_ref().filter(|l| !l.path.is_empty())?;
    Some(HealthPlan {
        path: l.path.clone(),
        port: l.port.as_ref().map(|p| p.port).or(svc.main_port()),
        grace: secs(l.grace),
        interval: secs(l.interval).max(Duration::from_secs(1)),
        timeout: secs(l.timeout).max(Duration::from_secs(1)),
        failure_threshold: l.failure_threshold.max(1) as u32,
    })
}

/// The container spec of one process of a plan.
#[allow(clippy::too_many_arguments)]
pub fn container_spec(
    config: &Config,
    plan: &ProcessPlan,
    kind: ProcessKind,
    id: &str,
    container: &str,
    port: Option<u16>,
    started: DateTime<Utc>,
    logger: &Path,
) -> ContainerSpec {
    let dir = crate::logs::process_dir(config, &plan.app, id);
    let mut spec = base_spec(
        config,
        logger,
        container,
        &plan.image,
        &plan.app,
        kind.as_str(),
        &dir,
    );
    spec.args = plan.args.clone();
    let mut env = plan.env.clone();
    if let Some(p) = port {
        env.insert("PORT".into(), p.to_string());
    }
    spec.env = env.into_iter().collect();
    spec.cpu_millicores = (plan.cpu > 0).then_some(plan.cpu);
    spec.memory_mb = (plan.memory > 0).then_some(plan.memory);
    spec.privileged = plan.privileged;
    let l = &mut spec.labels;
    l.insert(labels::SERVICE.into(), plan.service.clone());
    l.insert(labels::RELEASE.into(), plan.release.clone());
    l.insert(labels::PROCESS.into(), id.to_string());
    l.insert(labels::GRACE.into(), plan.grace.as_secs().to_string());
    l.insert(labels::COMMAND.into(), plan.command_line());
    l.insert(labels::CPU.into(), plan.cpu.to_string());
    l.insert(labels::MEMORY.into(), plan.memory.to_string());
    l.insert(labels::STARTED.into(), started.to_rfc3339());
    if let Some(p) = port {
        l.insert(labels::PORT.into(), p.to_string());
    }
    spec
}

/// What every container of this instance starts from (service and one-off processes, resource
/// containers): the image, the pids limit, host networking, the rack, app and type labels, and
/// the `binary://` logger writing into `log_dir`. Callers add their command, env, limits, mounts
/// and labels.
pub fn base_spec(
    config: &Config,
    logger: &Path,
    container: &str,
    image: &str,
    app: &str,
    kind: &str,
    log_dir: &Path,
) -> ContainerSpec {
    let mut spec = ContainerSpec::new(container, image.to_string());
    spec.pids_limit = Some(config.pids_limit);
    spec.host_network = true;
    spec.log = logger_for(config, logger, log_dir);
    let l = &mut spec.labels;
    l.insert(labels::APP.into(), app.to_string());
    l.insert(labels::TYPE.into(), kind.to_string());
    if !config.rack_id.is_empty() {
        l.insert(labels::RACK.into(), config.rack_id.clone());
    }
    spec
}

/// The `binary://` logger of a process whose logs go to `dir` (rotated as configured).
pub fn logger_for(config: &Config, logger: &Path, dir: &Path) -> Log {
    Log::Binary {
        path: logger.to_path_buf(),
        args: vec![
            (dray_logs::LOGGER_ARG.to_string(), "1".to_string()),
            ("dir".to_string(), dir.display().to_string()),
            ("max-size".to_string(), config.log_max_size.to_string()),
            ("max-files".to_string(), config.log_max_files.to_string()),
        ],
    }
}
