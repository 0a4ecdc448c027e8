//! The planner: which service processes an app should have, as a pure function.
//!
//! [`plan`] takes what should run (the app's active release, the release being deployed, the
//! live scale, the deployment bounds, rolling-restart requests, the instances) and what runs
//! (the app's service processes with their health), and returns [`Action`]s: start a process,
//! stop (drain) one, commit the deployment, roll it back. It does no I/O and reads no clock:
//! `now` is an input. Everything it needs is in the store or in container labels, so after an
//! agent restart the same inputs give the same decisions.
//!
//! Rolling updates follow Kubernetes' Deployment controller: with `N` desired processes,
//! `deployment.maximum` M % and `deployment.minimum` m %,
//!
//! * at most `N + ceil(N * (M - 100) / 100)` processes of a service exist at any moment (the
//!   surge; processes being stopped count, so the bound holds for what `dray ps` shows);
//! * at least `N - floor(N * (100 - m) / 100)` of them are ready (the minimum available);
//! * when both the surge and the unavailable share round to 0 (`100/100`), one process may be
//!   unavailable, or nothing could ever move (Kubernetes' rule).
//!
//! New processes are started within the surge. Old ones (another release, other limits, or
//! started before a rolling restart was asked for) that are not ready are stopped at once (they
//! serve nothing); a ready one is stopped when a new ready process replaces it, or, when the
//! surge leaves no room for the new processes, as far as the minimum allows, oldest first. So
//! with room to surge, capacity never drops below the count. A deploy commits
//! when every service of the new release has its `N` ready processes; the old processes are
//! stopped by the passes after it. It rolls back on cancel, on its deadline, on a release
//! that cannot run, and on a crash loop (a new process that crashed 3 times in a row).
//!
//! Agent services (`agent: true`) run one process per instance. One-off processes (`dray
//! run`) and timer runs are never touched.
//!
//! This module must never do I/O or read a clock, so it can be table-tested like Nomad's
//! `scheduler/reconcile.go`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use dray_sdk::{ProcessStatus, ServiceProgress};

/// A new process that crashes this many times in a row rolls its deployment back.
pub const CRASH_LOOP: u32 = 3;

/// What a release asks of one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: String,
    /// `scale.count` of the manifest (the lower bound when autoscaled), before the live scale.
    pub count: u32,
    /// One process per instance.
    pub agent: bool,
    /// `deployment.minimum`, percent.
    pub minimum: u32,
    /// `deployment.maximum`, percent.
    pub maximum: u32,
    /// `scale.cpu` (millicores) of the manifest, before the live scale.
    pub cpu: u64,
    /// `scale.memory` (MB) of the manifest, before the live scale.
    pub memory: u64,
}

/// Whether a release's linked resources are ready for its processes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Links {
    Ready,
    /// A linked resource is still being provisioned (why).
    Waiting(String),
    /// A linked resource failed (why).
    Failed(String),
}

/// A release the planner may run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub release: String,
    /// Its services, or why it cannot run (its manifest does not load, a service has no image).
    pub services: Result<Vec<ServiceSpec>, String>,
    pub links: Links,
}

/// The deployment in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deploy {
    pub target: Target,
    pub started: DateTime<Utc>,
    /// Seconds it may take before it is rolled back.
    pub timeout: u64,
    pub cancel_requested: bool,
}

/// A service's live scale (`dray scale`), which wins over the manifest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scale {
    pub count: Option<u32>,
    pub cpu: Option<u64>,
    pub memory: Option<u64>,
}

/// What should run for one app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub app: String,
    /// The active release (`None` before the first promote).
    pub active: Option<Target>,
    pub deploy: Option<Deploy>,
    pub scale: BTreeMap<String, Scale>,
    /// Rolling restarts: service (or `*` for all) -> processes started before this are
    /// replaced.
    pub restarts: BTreeMap<String, DateTime<Utc>>,
}

/// One process of the app as it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub id: String,
    pub service: String,
    pub release: String,
    pub instance: String,
    pub cpu: u64,
    pub memory: u64,
    /// `Running` means running and ready; `Stopping` means being drained and stopped.
    pub status: ProcessStatus,
    /// Crashes in a row (reset when it has run long enough).
    pub crashes: u32,
    pub exit_code: Option<u32>,
    pub started: DateTime<Utc>,
    /// A one-off (`dray run`) or timer process: never touched by the planner.
    pub one_off: bool,
}

impl Observed {
    fn ready(&self) -> bool {
        self.status == ProcessStatus::Running
    }
}

/// Why a process is stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// Replaced by a process of the new release (or with the new limits, or restarted).
    Replaced,
    /// More processes than the service's count.
    ScaledDown,
    /// Its service is not in the release that runs.
    Removed,
    /// The app has no release to run.
    NoRelease,
}

impl StopReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            StopReason::Replaced => "replaced",
            StopReason::ScaledDown => "scaled down",
            StopReason::Removed => "its service is not in the release",
            StopReason::NoRelease => "the app has no release to run",
        }
    }
}

/// One decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start a new process of a service of a release on an instance, with these limits.
    Start {
        service: String,
        release: String,
        instance: String,
        cpu: u64,
        memory: u64,
    },
    /// Drain and stop a process (SIGTERM, grace, SIGKILL).
    Stop { process: String, reason: StopReason },
    /// The deployment succeeded: make its release active.
    Commit { release: String },
    /// The deployment failed: keep the active release, say why.
    RollBack { release: String, reason: String },
}

/// What the planner decided for one app.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Per-service progress of the release that should run.
    pub progress: Vec<ServiceProgress>,
    /// Why the deployment (or the app) waits, when it does.
    pub waiting: Option<String>,
    /// Plan again at this time even if nothing changes (a deployment's deadline).
    pub wake_at: Option<DateTime<Utc>>,
}

impl Plan {
    /// The starts, as `(service, release)` pairs.
    pub fn starts(&self) -> impl Iterator<Item = (&str, &str)> {
        self.actions.iter().filter_map(|a| match a {
            Action::Start {
                service, release, ..
            } => Some((service.as_str(), release.as_str())),
            _ => None,
        })
    }

    /// The ids of the processes to stop.
    pub fn stops(&self) -> impl Iterator<Item = &str> {
        self.actions.iter().filter_map(|a| match a {
            Action::Stop { process, .. } => Some(process.as_str()),
            _ => None,
        })
    }
}

/// The rolling-update bounds of a service with `n` desired processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// At most this many processes may exist.
    pub max_total: usize,
    /// At least this many must be ready.
    pub min_ready: usize,
}

/// The bounds for `n` processes with `deployment.minimum`/`maximum` percentages.
pub fn bounds(n: usize, minimum: u32, maximum: u32) -> Bounds {
    let minimum = minimum.min(100) as usize;
    let maximum = maximum.clamp(100, 200) as usize;
    let surge = (n * (maximum - 100)).div_ceil(100);
    let mut unavailable = n * (100 - minimum) / 100;
    if surge == 0 && unavailable == 0 && n > 0 {
        unavailable = 1;
    }
    Bounds {
        max_total: n + surge,
        min_ready: n - unavailable.min(n),
    }
}

/// Decide. Pure: the same inputs always give the same plan.
pub fn plan(
    desired: &Desired,
    observed: &[Observed],
    instances: &[String],
    now: DateTime<Utc>,
) -> Plan {
    let mut out = Plan::default();
    let mut procs: Vec<&Observed> = observed.iter().filter(|p| !p.one_off).collect();
    procs.sort_by(|a, b| (&a.service, a.started, &a.id).cmp(&(&b.service, b.started, &b.id)));

    // The deployment first: does it end now, and what does it wait for?
    let mut target = desired.active.as_ref();
    let mut deploying = false;
    if let Some(d) = &desired.deploy {
        let deadline = d.started + chrono::Duration::seconds(d.timeout.min(i64::MAX as u64) as i64);
        let release = &d.target.release;
        let waiting = match &d.target.links {
            Links::Waiting(w) => Some(w.as_str()),
            _ => None,
        };
        let end = if d.cancel_requested {
            Some("the deployment was cancelled".to_string())
        } else if now > deadline {
            Some(format!(
                "release {release} did not become healthy within {}s{}",
                d.timeout,
                waiting.map(|w| format!(": {w}")).unwrap_or_default()
            ))
        } else if let Err(e) = &d.target.services {
            Some(format!("cannot run release {release}: {e}"))
        } else if let Links::Failed(e) = &d.target.links {
            Some(format!("cannot run release {release}: {e}"))
        } else {
            procs
                .iter()
                .find(|p| {
                    &p.release == release
                        && p.status != ProcessStatus::Stopping
                        && p.crashes >= CRASH_LOOP
                })
                .map(|p| {
                    format!(
                        "process {} of release {release} keeps crashing (exit code {})",
                        p.id,
                        p.exit_code
                            .map(|c| c.to_string())
                            .unwrap_or_else(|| "?".into())
                    )
                })
        };
        if let Some(reason) = end {
            out.actions.push(Action::RollBack {
                release: release.clone(),
                reason,
            });
            return out;
        }
        out.wake_at = Some(deadline);
        match waiting {
            // Its resources are not ready: the active release keeps running as it is.
            Some(w) => out.waiting = Some(w.to_string()),
            None => {
                target = Some(&d.target);
                deploying = true;
            }
        }
    }

    let Some(target) = target else {
        // Nothing to run (no release promoted yet): no service process should exist.
        if out.waiting.is_none() {
            for p in procs.iter().filter(|p| p.status != ProcessStatus::Stopping) {
                out.actions.push(Action::Stop {
                    process: p.id.clone(),
                    reason: StopReason::NoRelease,
                });
            }
        }
        return out;
    };
    let services = match &target.services {
        Ok(s) => s,
        Err(e) => {
            // The active release cannot be planned (it could when it was promoted): keep what
            // runs rather than tear the app down.
            out.waiting = Some(format!("cannot plan release {}: {e}", target.release));
            return out;
        }
    };
    let mut by_service: BTreeMap<&str, Vec<&Observed>> = BTreeMap::new();
    for p in &procs {
        by_service.entry(p.service.as_str()).or_default().push(p);
    }
    let mut all_ready = true;
    for svc in services {
        let mine = by_service
            .get(svc.name.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        let ready = plan_service(desired, target, svc, mine, instances, &mut out);
        all_ready &= ready;
    }
    let known: std::collections::BTreeSet<&str> =
        services.iter().map(|s| s.name.as_str()).collect();

    // Services the release does not have: their processes go, except those of the active
    // release while a deployment may still roll back to it.
    for p in &procs {
        if p.status == ProcessStatus::Stopping || known.contains(p.service.as_str()) {
            continue;
        }
        let keep = deploying
            && desired.active.as_ref().is_some_and(|a| {
                a.release == p.release
                    && a.services
                        .as_ref()
                        .is_ok_and(|s| s.iter().any(|s| s.name == p.service))
            });
        if !keep {
            out.actions.push(Action::Stop {
                process: p.id.clone(),
                reason: StopReason::Removed,
            });
        }
    }

    if deploying && all_ready {
        out.actions.push(Action::Commit {
            release: target.release.clone(),
        });
    }
    out
}

/// Plan one service of the target release; returns whether it has all its ready processes.
fn plan_service(
    desired: &Desired,
    target: &Target,
    svc: &ServiceSpec,
    procs: &[&Observed],
    instances: &[String],
    out: &mut Plan,
) -> bool {
    let live = desired.scale.get(&svc.name).copied().unwrap_or_default();
    let cpu = live.cpu.unwrap_or(svc.cpu);
    let memory = live.memory.unwrap_or(svc.memory);
    let n = if svc.agent {
        instances.len()
    } else {
        live.count.unwrap_or(svc.count) as usize
    };
    let restart = desired
        .restarts
        .get(&svc.name)
        .max(desired.restarts.get("*"))
        .copied();
    let is_current = |p: &Observed| {
        p.release == target.release
            && p.cpu == cpu
            && p.memory == memory
            && restart.is_none_or(|t| p.started >= t)
    };
    let stopping = procs
        .iter()
        .filter(|p| p.status == ProcessStatus::Stopping)
        .count();
    let (current, old): (Vec<&Observed>, Vec<&Observed>) = procs
        .iter()
        .copied()
        .filter(|p| p.status != ProcessStatus::Stopping)
        .partition(|p| is_current(p));
    let b = bounds(n, svc.minimum, svc.maximum);
    let ready_current = current.iter().filter(|p| p.ready()).count();
    let ready_old = old.iter().filter(|p| p.ready()).count();

    out.progress.push(ServiceProgress {
        service: svc.name.clone(),
        release: target.release.clone(),
        desired: n as u32,
        updated: current.len() as u32,
        healthy: ready_current as u32,
        old: (old.len() + stopping) as u32,
    });

    let stop = |out: &mut Plan, p: &Observed, reason: StopReason| {
        out.actions.push(Action::Stop {
            process: p.id.clone(),
            reason,
        })
    };

    // The new side: scale down beyond the count (not-ready first, then the newest), or start
    // within the surge.
    let want = n.saturating_sub(current.len());
    let mut starts = 0;
    if current.len() > n {
        let mut extra = current.clone();
        extra.sort_by(|a, b| {
            (a.ready(), std::cmp::Reverse(a.started), &a.id).cmp(&(
                b.ready(),
                std::cmp::Reverse(b.started),
                &b.id,
            ))
        });
        for p in extra.iter().take(current.len() - n) {
            stop(out, p, StopReason::ScaledDown);
        }
    } else {
        let total = current.len() + old.len() + stopping;
        starts = want.min(b.max_total.saturating_sub(total));
        let mut load: BTreeMap<&str, usize> = instances.iter().map(|i| (i.as_str(), 0)).collect();
        for p in &current {
            if let Some(n) = load.get_mut(p.instance.as_str()) {
                *n += 1;
            }
        }
        for _ in 0..starts {
            let instance = place(&mut load);
            out.actions.push(Action::Start {
                service: svc.name.clone(),
                release: target.release.clone(),
                instance,
                cpu,
                memory,
            });
        }
    }

    // The old side. Those that serve nothing go at once. Ready ones go when new ready ones
    // replace them (surge first: capacity stays at the count while the surge allows), or, when
    // the surge leaves no room for the new processes, as far as the minimum allows; the oldest
    // first.
    let unready_old: Vec<&&Observed> = old.iter().filter(|p| !p.ready()).collect();
    for p in &unready_old {
        stop(out, p, StopReason::Replaced);
    }
    let freeing = stopping + unready_old.len();
    let need_room = (want - starts).saturating_sub(freeing);
    let ready_total = ready_current.min(n) + ready_old;
    let excess = ready_total.saturating_sub(n);
    let allowed = ready_total.saturating_sub(b.min_ready);
    let k = excess.max(need_room).min(allowed).min(ready_old);
    for p in old.iter().filter(|p| p.ready()).take(k) {
        stop(out, p, StopReason::Replaced);
    }

    ready_current >= n && current.len() == n
}

/// The instance a new process goes to: the one with the fewest processes of its service (by
/// name on a tie), counting the starts already planned in this pass; for an agent service that
/// is an instance that has none yet. Placement by capacity is the cluster planner's.
fn place(load: &mut BTreeMap<&str, usize>) -> String {
    let Some((instance, _)) = load.iter().min_by_key(|(i, n)| (**n, **i)) else {
        return crate::config::DEFAULT_INSTANCE.to_string();
    };
    let instance = instance.to_string();
    if let Some(n) = load.get_mut(instance.as_str()) {
        *n += 1;
    }
    instance
}

#[cfg(test)]
#[path = "planner_tests.rs"]
mod tests;
