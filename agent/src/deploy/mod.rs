//! Deployments: the planner (a pure function from desired and observed state to actions,
//! [`planner`]) and the loop that feeds it from the store and writes its decisions back
//! ([`Deployer`]).
//!
//! The loop watches the store (`/dray/` from the revision it last saw) and plans an app again
//! when anything of it changes: its record (promote, cancel, restart), its live scale, its
//! resources, its assignments, or the process records its nodes write. Decisions become data:
//! a start is an assignment written under `/dray/assignments/<instance>/<app>/<id>` for the
//! node of that instance; a stop is the assignment's deletion; a commit, a rollback and the
//! deploy progress are compare-and-swap writes of the app record. An idle rack does nothing:
//! no timer, no scan, only a wake-up at a deployment's deadline.
//!
//! On one machine the loop runs in the same `drayd` as the node executor; in a cluster it runs
//! on the elected leader. It must never speak containerd (the node does) and never decide
//! anything itself (the planner does).

pub mod planner;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dray_sdk::{AppStatus, ProcessStatus};
use dray_store::{Op, Txn};
use tokio::sync::Notify;

use crate::config::Config;
use crate::repo::{self, AppRecord, Assignment, ProcessKind, Repo};
use planner::{Action, Deploy, Desired, Links, Observed, Scale, ServiceSpec, Target};

/// Why planning an app failed (it is planned again on the next change).
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("store: {0}")]
    Repo(#[from] crate::repo::RepoError),
    #[error("store: {0}")]
    Store(#[from] dray_store::StoreError),
}

/// The planner's loop, shared by the API (nothing but [`Deployer::wake`]) and its own task.
pub struct Deployer {
    repo: Repo,
    /// Releases parsed once, shared with the API and the node.
    releases: crate::app::ReleaseCache,
    config: Arc<Config>,
    wake: Notify,
    /// The last "waiting" message said per deployment (said once, not on every pass).
    said: Mutex<HashMap<String, String>>,
}

/// The app a store key belongs to, when it is one the planner cares about.
fn app_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("/dray/")?;
    let (kind, rest) = rest.split_once('/')?;
    let app = match kind {
        "apps" | "scale" => rest,
        "processes" | "resources" => rest.split('/').next()?,
        // /dray/assignments/<instance>/<app>/<process>
        "assignments" => rest.split('/').nth(1)?,
        _ => return None,
    };
    (!app.is_empty()).then_some(app)
}

impl Deployer {
    pub fn new(
        repo: Repo,
        releases: crate::app::ReleaseCache,
        config: Arc<Config>,
    ) -> Arc<Deployer> {
        Arc::new(Deployer {
            repo,
            releases,
            config,
            wake: Notify::new(),
            said: Mutex::new(HashMap::new()),
        })
    }

    /// Plan every app again now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The loop: plan every app once, then each app whose data changed, until the process
    /// exits. A lost watch (compaction, lag) starts over with every app.
    pub async fn run(self: Arc<Self>) {
        loop {
            let rev = match self.repo.store().revision().await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "planner: cannot read the store revision; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut watch = match self.repo.store().watch("/dray/", rev).await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "planner: cannot watch the store; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut dirty = self.every_app().await;
            let mut wakes: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
            'watching: loop {
                while let Some(app) = dirty.pop_first() {
                    match self.plan_app(&app).await {
                        Ok(Some(at)) => {
                            wakes.insert(app, at);
                        }
                        Ok(None) => {
                            wakes.remove(&app);
                        }
                        Err(e) => {
                            tracing::warn!(%app, error = %e, "cannot plan app; retrying");
                            wakes.insert(app, Utc::now() + chrono::Duration::seconds(1));
                        }
                    }
                }
                let next = wakes.values().min().copied();
                let sleep = next
                    .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                    .unwrap_or(Duration::from_secs(3600));
                tokio::select! {
                    ev = watch.recv() => match ev {
                        Some(Ok(ev)) => {
                            if let Some(app) = app_of(&ev.kv.key) {
                                dirty.insert(app.to_string());
                            }
                            // Take whatever else is queued: one pass per app for a burst.
                            while let Ok(Ok(ev)) = watch.try_recv() {
                                if let Some(app) = app_of(&ev.kv.key) {
                                    dirty.insert(app.to_string());
                                }
                            }
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "planner watch failed; planning every app again");
                            break 'watching;
                        }
                        None => break 'watching,
                    },
                    _ = tokio::time::sleep(sleep) => {
                        let now = Utc::now();
                        let due: Vec<String> = wakes.iter().filter(|(_, t)| **t <= now).map(|(a, _)| a.clone()).collect();
                        for a in due {
                            wakes.remove(&a);
                            dirty.insert(a);
                        }
                    }
                    _ = self.wake.notified() => {
                        dirty.extend(self.every_app().await);
                    }
                }
            }
        }
    }

    /// Every app, and every app that still has assignments or process records (a deleted
    /// app's leftovers).
    async fn every_app(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for prefix in [repo::APPS_PREFIX, "/dray/assignments/", "/dray/processes/"] {
            match self.repo.store().range(prefix).await {
                Ok(r) => out.extend(
                    r.kvs
                        .iter()
                        .filter_map(|kv| app_of(&kv.key).map(str::to_string)),
                ),
                Err(e) => tracing::warn!(error = %e, "planner: cannot list {prefix}"),
            }
        }
        out
    }

    /// What a release asks for, as the planner sees it.
    async fn target(
        &self,
        app: &str,
        release_id: &str,
        resources: &mut Option<Vec<crate::repo::ResourceRecord>>,
    ) -> Result<Target, DeployError> {
        let fail = |e: String| Target {
            release: release_id.to_string(),
            services: Err(e),
            links: Links::Ready,
        };
        let Some(parsed) = self.releases.get(app, release_id).await? else {
            return Ok(fail(format!("release not found: {release_id}")));
        };
        let release = &parsed.release;
        let manifest = match parsed.manifest() {
            Ok(m) => m,
            Err(e) => return Ok(fail(e.trim().replace('\n', "; "))),
        };
        let build = if release.build.is_empty() {
            None
        } else {
            self.repo.build(app, &release.build).await?
        };
        let mut services = Vec::new();
        for (name, svc) in &manifest.services {
            let has_image = svc.image.as_ref().is_some_and(|i| !i.is_empty())
                || build.as_ref().is_some_and(|b| !b.image.is_empty());
            if !has_image {
                return Ok(fail(format!(
                    "service {name} has no image: release {release_id} has no build with an image and the service sets no `image:`"
                )));
            }
            services.push(ServiceSpec {
                name: name.clone(),
                count: svc.count_range().0.max(0) as u32,
                agent: svc.agent,
                minimum: svc.deployment.minimum.clamp(0, 100) as u32,
                maximum: svc.deployment.maximum.clamp(100, 200) as u32,
                cpu: svc.scale.cpu.max(0) as u64,
                memory: svc.scale.memory.max(0) as u64,
            });
        }
        let links = if manifest.resources.is_empty()
            || manifest.services.values().all(|s| s.resources.is_empty())
        {
            Links::Ready
        } else {
            if resources.is_none() {
                *resources = Some(self.repo.resources(Some(app)).await?);
            }
            crate::app::links_state(
                manifest,
                &parsed.env,
                resources.as_deref().unwrap_or_default(),
            )
        };
        Ok(Target {
            release: release_id.to_string(),
            services: Ok(services),
            links,
        })
    }

    /// Plan one app and carry the plan out; returns when to plan it again by itself.
    async fn plan_app(&self, app: &str) -> Result<Option<DateTime<Utc>>, DeployError> {
        let instance = self.config.instance.clone();
        // This app's assignments on every instance (one instance on a single-node rack).
        let mut assignments: Vec<Assignment> = Vec::new();
        for i in std::slice::from_ref(&instance) {
            assignments.extend(self.repo.app_assignments(i, app).await?);
        }
        let Some(current) = self.repo.app(app).await? else {
            // A deleted app: its assignments go (the nodes stop what ran).
            if !assignments.is_empty() {
                let ops = assignments
                    .iter()
                    .map(|a| Op::Delete(repo::assignment_key(&a.instance, app, &a.process)))
                    .collect();
                self.repo
                    .store()
                    .txn(Txn {
                        compare: vec![],
                        success: ops,
                        failure: vec![],
                    })
                    .await?;
            }
            return Ok(None);
        };
        let rec = current.value;
        let scale = self.repo.scale(app).await?;
        let mut resources = None;
        let active = if rec.release.is_empty() {
            None
        } else {
            Some(self.target(app, &rec.release, &mut resources).await?)
        };
        let deploy = if rec.deploying.is_empty() {
            None
        } else {
            Some(Deploy {
                target: self.target(app, &rec.deploying, &mut resources).await?,
                started: rec.deploy_started,
                timeout: rec.deploy_timeout,
                cancel_requested: rec.cancel_requested,
            })
        };
        let desired = Desired {
            app: app.to_string(),
            active,
            deploy,
            scale: scale
                .iter()
                .map(|(k, s)| {
                    (
                        k.clone(),
                        Scale {
                            count: s.count,
                            cpu: s.cpu,
                            memory: s.memory,
                        },
                    )
                })
                .collect(),
            restarts: rec.restarts.clone(),
        };
        let observed = observe(&assignments, &self.repo.processes(Some(app)).await?);
        let plan = planner::plan(
            &desired,
            &observed,
            std::slice::from_ref(&instance),
            Utc::now(),
        );

        // Processes: one transaction for every start and stop of the pass.
        let mut ops = Vec::new();
        for a in &plan.actions {
            match a {
                Action::Start {
                    service,
                    release,
                    instance,
                    cpu,
                    memory,
                } => {
                    let process = crate::ids::process_id(service);
                    let assignment = Assignment {
                        app: app.to_string(),
                        service: service.clone(),
                        release: release.clone(),
                        process: process.clone(),
                        instance: instance.clone(),
                        cpu: *cpu,
                        memory: *memory,
                        created: Utc::now(),
                    };
                    ops.push(Op::Put(
                        repo::assignment_key(instance, app, &process),
                        repo::encode(&assignment),
                    ));
                }
                Action::Stop { process, reason } => {
                    if let Some(a) = assignments.iter().find(|a| &a.process == process) {
                        tracing::debug!(app, process, reason = reason.as_str(), "stopping");
                        ops.push(Op::Delete(repo::assignment_key(&a.instance, app, process)));
                    }
                }
                _ => {}
            }
        }
        // The app record: the outcome of the deployment and its progress, written in the same
        // transaction as the pass's starts and stops when it changes (one commit per pass).
        let outcome = plan.actions.iter().find_map(|a| match a {
            Action::Commit { release } => Some((release.clone(), None)),
            Action::RollBack { release, reason } => Some((release.clone(), Some(reason.clone()))),
            _ => None,
        });
        let progress = plan.progress.clone();
        let change = |r: &mut AppRecord| {
            let mut changed = false;
            if let Some((release, failure)) = &outcome {
                if r.deploying != *release {
                    return false;
                }
                if failure.is_none() && r.cancel_requested {
                    // Cancelled since this pass read the app: the next pass rolls back.
                    return false;
                }
                match failure {
                    None => {
                        r.release = release.clone();
                        r.last_deploy_error.clear();
                    }
                    Some(reason) => r.last_deploy_error = reason.clone(),
                }
                r.deploying.clear();
                r.cancel_requested = false;
                r.status = AppStatus::Running;
                changed = true;
            }
            if outcome.as_ref().is_none_or(|(_, f)| f.is_none())
                && r.progress != progress
                && !progress.is_empty()
            {
                r.progress = progress.clone();
                changed = true;
            }
            changed
        };
        let updated = self
            .repo
            .update(
                &repo::app_key(app),
                |current: Option<repo::Versioned<AppRecord>>| {
                    std::future::ready(Ok::<_, std::convert::Infallible>(match current {
                        Some(current) => {
                            let mut r = current.value;
                            if change(&mut r) {
                                repo::Update::put(r).also(ops.clone())
                            } else {
                                repo::Update::keep()
                            }
                        }
                        None => repo::Update::keep(),
                    }))
                },
            )
            .await
            .map_err(repo::UpdateError::into_repo)?;
        let changed = updated.written;
        if !changed && !ops.is_empty() {
            self.repo
                .store()
                .txn(Txn {
                    compare: vec![],
                    success: ops,
                    failure: vec![],
                })
                .await?;
        }
        if let (true, Some((release, failure))) = (changed, &outcome) {
            let msg = match failure {
                None => format!("release {release} is active"),
                Some(reason) => format!("rolled back from release {release}: {reason}"),
            };
            crate::logs::system(&self.config, app, &msg);
            tracing::info!(app, release = %release, ok = failure.is_none(), "deployment finished");
        }
        self.say_waiting(&rec, plan.waiting.as_deref());
        Ok(plan.wake_at)
    }

    /// Say once per deployment what it waits for.
    fn say_waiting(&self, rec: &AppRecord, waiting: Option<&str>) {
        let key = format!("{}/{}", rec.name, rec.deploying);
        let mut said = self.said.lock().unwrap_or_else(|p| p.into_inner());
        match waiting {
            Some(reason) if said.get(&key).map(String::as_str) != Some(reason) => {
                said.insert(key, reason.to_string());
                drop(said);
                crate::logs::system(&self.config, &rec.name, &format!("waiting: {reason}"));
            }
            Some(_) => {}
            None => {
                said.remove(&key);
            }
        }
    }
}

/// The planner's view of an app's processes: what the nodes report, joined with the
/// assignments. An assignment no node reports yet is `pending`; a service process whose
/// assignment is gone is `stopping` (its node drains it).
pub fn observe(assignments: &[Assignment], records: &[repo::ProcessRecord]) -> Vec<Observed> {
    let mut out = Vec::new();
    for r in records {
        let assigned = assignments.iter().any(|a| a.process == r.process);
        let service = r.kind == ProcessKind::Service;
        if !r.status.is_live() {
            continue;
        }
        out.push(Observed {
            id: r.process.clone(),
            service: r.service.clone(),
            release: r.release.clone(),
            instance: r.instance.clone(),
            cpu: r.cpu,
            memory: r.memory,
            status: if service && !assigned {
                ProcessStatus::Stopping
            } else {
                r.status
            },
            crashes: r.crashes,
            exit_code: r.exit_code,
            started: r.started,
            one_off: !service,
        });
    }
    for a in assignments {
        if records.iter().any(|r| r.process == a.process) {
            continue;
        }
        out.push(Observed {
            id: a.process.clone(),
            service: a.service.clone(),
            release: a.release.clone(),
            instance: a.instance.clone(),
            cpu: a.cpu,
            memory: a.memory,
            status: ProcessStatus::Pending,
            crashes: 0,
            exit_code: None,
            started: a.created,
            one_off: false,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(process: &str, kind: ProcessKind, status: ProcessStatus) -> repo::ProcessRecord {
        repo::ProcessRecord {
            app: "a".into(),
            service: "web".into(),
            release: "R1".into(),
            process: process.into(),
            kind,
            instance: "local".into(),
            host: "127.0.0.1".into(),
            status,
            port: Some(20000),
            image: String::new(),
            command: String::new(),
            cpu: 250,
            memory: 512,
            started: Utc::now(),
            restarts: 0,
            crashes: 1,
            exit_code: None,
        }
    }

    fn assignment(process: &str) -> Assignment {
        Assignment {
            app: "a".into(),
            service: "web".into(),
            release: "R1".into(),
            process: process.into(),
            instance: "local".into(),
            cpu: 250,
            memory: 512,
            created: Utc::now(),
        }
    }

    #[test]
    fn observed_state_joins_assignments_and_records() {
        let records = vec![
            record("web-run", ProcessKind::Service, ProcessStatus::Running),
            record("web-old", ProcessKind::Service, ProcessStatus::Running),
            record("web-one", ProcessKind::Process, ProcessStatus::Running),
            record("web-done", ProcessKind::Process, ProcessStatus::Complete),
        ];
        let assignments = vec![assignment("web-run"), assignment("web-new")];
        let obs = observe(&assignments, &records);
        let by = |id: &str| obs.iter().find(|o| o.id == id).cloned();
        // Assigned and reported: as reported.
        let run = by("web-run").unwrap();
        assert_eq!(
            (run.status, run.crashes, run.one_off),
            (ProcessStatus::Running, 1, false)
        );
        // Reported but no longer assigned: its node is draining it.
        assert_eq!(by("web-old").unwrap().status, ProcessStatus::Stopping);
        // Assigned, not reported yet: pending.
        assert_eq!(by("web-new").unwrap().status, ProcessStatus::Pending);
        // One-offs are passed through as such (the planner ignores them); finished ones are not.
        assert!(by("web-one").unwrap().one_off);
        assert!(by("web-done").is_none());
    }

    #[test]
    fn keys_map_to_their_app() {
        assert_eq!(app_of("/dray/apps/shop"), Some("shop"));
        assert_eq!(app_of("/dray/scale/shop"), Some("shop"));
        assert_eq!(app_of("/dray/processes/shop/web-abcde"), Some("shop"));
        assert_eq!(app_of("/dray/resources/shop/db"), Some("shop"));
        assert_eq!(
            app_of("/dray/assignments/local/shop/web-abcde"),
            Some("shop")
        );
        assert_eq!(app_of("/dray/releases/shop/RABCDEFGHIJ"), None);
        assert_eq!(app_of("/dray/plugin-state/postgres/x"), None);
        assert_eq!(app_of("/dray/apps/"), None);
    }
}
