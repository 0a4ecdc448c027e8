//! Processes, services, endpoints, scale, restart, promote, and images: the controller side of
//! the planner and the node. Promote, scale and restart only write records (the planner reacts
//! to them); process listings read the records the nodes write.

use std::collections::BTreeMap;
use std::future::ready;

use chrono::Utc;
use dray_sdk::{AppStatus, Build, Image, Process, Release, Service, ServicePort};

use super::{Controllers, Error};
use crate::node::NodeError;
use crate::repo::{self, AppRecord, ProcessKind, ScaleRecord, Update, Versioned};

impl From<NodeError> for Error {
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::NotFound(_) => Error::NotFound(e.to_string()),
            NodeError::Plan(m) => Error::Unprocessable(m),
            NodeError::Waiting(m) => Error::Conflict(m),
            NodeError::Runtime(r) if r.is_not_found() => Error::NotFound(r.to_string()),
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<dray_runtime::RuntimeError> for Error {
    fn from(e: dray_runtime::RuntimeError) -> Self {
        if e.is_not_found() {
            Error::NotFound(e.to_string())
        } else {
            Error::Unprocessable(e.to_string())
        }
    }
}

/// Options of a promote.
#[derive(Clone, Debug, Default)]
pub struct PromoteOptions {
    /// Promote even while another deployment is in progress (it is replaced).
    pub force: bool,
    /// Seconds before an unhealthy deployment is rolled back (default 600).
    pub timeout: Option<u64>,
}

/// A scale change.
#[derive(Clone, Debug, Default)]
pub struct ScaleOptions {
    pub count: Option<u32>,
    pub cpu: Option<u64>,
    pub memory: Option<u64>,
}

impl Controllers {
    /// Start deploying a release: the planner rolls it out next to the active one within the
    /// deployment bounds and makes it active once every process is healthy (the app is
    /// `updating` until then).
    pub async fn promote(&self, app: &str, id: &str, opts: PromoteOptions) -> Result<(), Error> {
        self.node()?;
        self.app_record(app).await?;
        let parsed = self
            .releases
            .get(app, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("release not found: {id}")))?;
        let release = &parsed.release;
        if release.manifest.trim().is_empty() {
            return Err(Error::BadRequest(
                "can not promote a release with an empty manifest: create a build first (dray builds import-image)".into(),
            ));
        }
        // The strict load (required env is an error here), unlike the cached parse.
        if let Err(errors) = dray_manifest::load("convox.yml", &release.manifest, &parsed.env) {
            return Err(Error::Unprocessable(format!(
                "release {id} cannot run: {}",
                errors.to_string().trim().replace('\n', "; ")
            )));
        }
        self.check_resources(&parsed).await?;
        if let Some(r) = &self.resources {
            r.retry_failed(app).await?;
        }
        let _guard = self.app_locks.lock(app).await;
        // "can not promote an older release": releases are ordered by their creation revision.
        let releases = self.repo.releases(app).await?;
        self.repo
            .update(
                &repo::app_key(app),
                |current: Option<Versioned<AppRecord>>| {
                    ready(start_deploy(app, id, current, &releases, &opts))
                },
            )
            .await?;
        crate::logs::system(&self.config, app, &format!("promoting release {id}"));
        tracing::info!(target: "audit", app, release = id, "promote started");
        if let Some(r) = &self.resources {
            r.wake();
        }
        Ok(())
    }

    /// Processes of an app, optionally of one service or release (as their nodes report them).
    pub async fn processes(
        &self,
        app: &str,
        service: Option<&str>,
        release: Option<&str>,
    ) -> Result<Vec<Process>, Error> {
        self.app_record(app).await?;
        Ok(self
            .repo
            .processes(Some(app))
            .await?
            .into_iter()
            .filter(|p| service.is_none_or(|s| p.service == s))
            .filter(|p| release.is_none_or(|r| p.release == r))
            .map(|p| p.view())
            .collect())
    }

    /// One process of an app.
    pub async fn process(&self, app: &str, pid: &str) -> Result<Process, Error> {
        self.app_record(app).await?;
        self.repo
            .process(app, pid)
            .await?
            .map(|p| p.view())
            .ok_or_else(|| Error::NotFound(format!("process not found: {pid}")))
    }

    /// Stop a process. A service process's assignment is removed: its node drains and stops it
    /// and the planner assigns a replacement. A one-off process is stopped by its node.
    pub async fn process_stop(&self, app: &str, pid: &str) -> Result<(), Error> {
        self.app_record(app).await?;
        let not_found = || Error::NotFound(format!("process not found: {pid}"));
        let rec = self.repo.process(app, pid).await?.ok_or_else(not_found)?;
        match rec.kind {
            ProcessKind::Service => {
                let key = repo::assignment_key(&rec.instance, app, pid);
                if self.repo.store().delete(&key).await?.is_none() {
                    // Not assigned (any more): it is already being stopped, or its node has
                    // not caught up; stop it there directly.
                    if let Ok(node) = self.node() {
                        let _ = node.stop_process(app, pid);
                    }
                }
            }
            ProcessKind::Process | ProcessKind::Timer => {
                self.node()?
                    .stop_process(app, pid)
                    .map_err(|_| not_found())?;
            }
        }
        tracing::info!(target: "audit", app, process = pid, "process stopped");
        Ok(())
    }

    /// Every service process of an app with its address, port, health and draining state (the
    /// endpoints feed the router and balancers consume).
    pub async fn endpoints(&self, app: &str) -> Result<Vec<dray_sdk::Endpoint>, Error> {
        self.app_record(app).await?;
        Ok(self
            .repo
            .processes(Some(app))
            .await?
            .into_iter()
            .filter(|p| p.kind == ProcessKind::Service && p.status.is_live())
            .filter_map(|p| {
                let port = p.port?;
                Some(dray_sdk::Endpoint {
                    healthy: p.status == dray_sdk::ProcessStatus::Running,
                    draining: p.status == dray_sdk::ProcessStatus::Stopping,
                    app: p.app,
                    service: p.service,
                    process: p.process,
                    release: p.release,
                    instance: p.instance,
                    address: p.host,
                    port,
                })
            })
            .collect())
    }

    /// The services of the active release with their live scale.
    pub async fn services(&self, app: &str) -> Result<Vec<Service>, Error> {
        let rec = self.app_record(app).await?.value;
        let id = if rec.release.is_empty() {
            return Ok(Vec::new());
        } else {
            rec.release.clone()
        };
        let release = self
            .releases
            .get(app, &id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("release not found: {id}")))?;
        let manifest = release
            .manifest()
            .map_err(|e| Error::Internal(format!("the active release's manifest: {e}")))?;
        let scale = self.repo.scale(app).await?;
        let endpoints = self.endpoints(app).await?;
        let procs = self.repo.processes(Some(app)).await?;
        let mut out = Vec::new();
        for (name, svc) in &manifest.services {
            let live = scale.get(name).cloned().unwrap_or_default();
            // Ready processes of the active release: the healthy endpoints, or (services
            // without a port have none) the running processes.
            let running = if svc.main_port().is_some() {
                endpoints
                    .iter()
                    .filter(|e| e.service == *name && e.release == id && e.healthy)
                    .count() as u32
            } else {
                procs
                    .iter()
                    .filter(|p| {
                        p.service == *name
                            && p.kind == ProcessKind::Service
                            && p.release == id
                            && p.status == dray_sdk::ProcessStatus::Running
                    })
                    .count() as u32
            };
            let domain = if svc.is_routable() {
                format!("{name}.{app}.{}", self.config.domain)
            } else {
                String::new()
            };
            out.push(Service {
                name: name.clone(),
                count: if svc.agent {
                    1
                } else {
                    live.count.unwrap_or(svc.count_range().0.max(0) as u32)
                },
                running,
                cpu: live.cpu.unwrap_or(svc.scale.cpu.max(0) as u64),
                memory: live.memory.unwrap_or(svc.scale.memory.max(0) as u64),
                domain,
                ports: svc
                    .main_port()
                    .map(|p| {
                        vec![ServicePort {
                            balancer: if svc.internal { 0 } else { 443 },
                            container: p,
                        }]
                    })
                    .unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// Change a service's live scale (it wins over the manifest and survives promotes).
    pub async fn scale(
        &self,
        app: &str,
        service: &str,
        opts: ScaleOptions,
    ) -> Result<Service, Error> {
        if opts.count.is_none() && opts.cpu.is_none() && opts.memory.is_none() {
            return Err(Error::BadRequest(
                "nothing to change: pass count, cpu or memory".into(),
            ));
        }
        if opts.count.is_some_and(|c| c > 100) {
            return Err(Error::BadRequest(
                "count must be between 0 and 100 on a single-node rack".into(),
            ));
        }
        if opts.memory.is_some_and(|m| m < 4) {
            return Err(Error::BadRequest("memory must be at least 4 (MB)".into()));
        }
        let services = self.services(app).await?;
        if !services.iter().any(|s| s.name == service) {
            return Err(Error::NotFound(format!("service not found: {service}")));
        }
        if opts.count.is_some() && self.is_agent(app, service).await? {
            return Err(Error::BadRequest(format!(
                "service {service} is an agent (agent: true): it runs one process per instance, so its count cannot be set; change --cpu or --memory, or remove `agent: true` from convox.yml"
            )));
        }
        let _guard = self.app_locks.lock(app).await;
        // A scale record that does not decode fails the update (RepoError::Corrupt): it is
        // reported, never replaced by an empty one (which would reset every service's scale).
        self.repo
            .update(
                &repo::scale_key(app),
                |current: Option<Versioned<BTreeMap<String, ScaleRecord>>>| {
                    let mut map = current.map(|c| c.value).unwrap_or_default();
                    let entry = map.entry(service.to_string()).or_default();
                    if let Some(c) = opts.count {
                        entry.count = Some(c);
                    }
                    if let Some(c) = opts.cpu {
                        entry.cpu = Some(c);
                    }
                    if let Some(m) = opts.memory {
                        entry.memory = Some(m);
                    }
                    ready(Ok::<_, Error>(Update::put(map)))
                },
            )
            .await?;
        tracing::info!(target: "audit", app, service, count = ?opts.count, cpu = ?opts.cpu, memory = ?opts.memory, "service scaled");
        {}
        drop(_guard);
        self.services(app)
            .await?
            .into_iter()
            .find(|s| s.name == service)
            .ok_or_else(|| Error::NotFound(format!("service not found: {service}")))
    }

    /// Whether a service of the app's active release is an agent (`agent: true`).
    async fn is_agent(&self, app: &str, service: &str) -> Result<bool, Error> {
        let rec = self.app_record(app).await?.value;
        if rec.release.is_empty() {
            return Ok(false);
        }
        let release = self
            .releases
            .get(app, &rec.release)
            .await?
            .ok_or_else(|| Error::NotFound(format!("release not found: {}", rec.release)))?;
        Ok(release
            .manifest()
            .ok()
            .and_then(|m| m.services.get(service).map(|s| s.agent))
            .unwrap_or(false))
    }

    /// Replace the processes of one service (or every service) with a rolling restart within
    /// the deployment bounds: the planner replaces every process started before now. Returns
    /// how many processes will be replaced.
    pub async fn restart(&self, app: &str, service: Option<&str>) -> Result<usize, Error> {
        self.app_record(app).await?;
        if let Some(s) = service {
            if !self.services(app).await?.iter().any(|x| x.name == s) {
                return Err(Error::NotFound(format!("service not found: {s}")));
            }
        }
        let now = Utc::now();
        self.update_app(app, |rec| {
            rec.restarts.insert(service.unwrap_or("*").to_string(), now);
            Ok(true)
        })
        .await?;
        let n = self
            .repo
            .processes(Some(app))
            .await?
            .iter()
            .filter(|p| {
                p.kind == ProcessKind::Service
                    && p.status.is_live()
                    && service.is_none_or(|s| p.service == s)
            })
            .count();
        crate::logs::system(
            &self.config,
            app,
            &format!(
                "restarting {} ({n} processes, rolling)",
                service
                    .map(|s| format!("service {s}"))
                    .unwrap_or_else(|| "every service".into())
            ),
        );
        tracing::info!(target: "audit", app, service, processes = n, "restart");
        Ok(n)
    }

    /// Import an OCI image archive as a new build of an app (and a release using it).
    pub async fn build_import_image(
        &self,
        app: &str,
        archive: &std::path::Path,
        manifest: &str,
        description: Option<String>,
    ) -> Result<(Build, Release), Error> {
        self.app_record(app).await?;
        if manifest.trim().is_empty() {
            return Err(Error::BadRequest(
                "a manifest is required: pass the app's convox.yml (dray builds import-image FILE -m convox.yml)".into(),
            ));
        }
        // The build's manifest must load (required env is checked at promote time).
        if let Err(errors) = dray_manifest::load_with(
            "convox.yml",
            manifest,
            &BTreeMap::new(),
            &dray_manifest::LoadOptions { require_env: false },
        ) {
            return Err(Error::Unprocessable(format!(
                "invalid convox.yml: {}",
                errors.to_string().trim().replace('\n', "; ")
            )));
        }
        let id = crate::ids::build_id();
        let image_name = format!("dray.local/{app}:{}", id.to_lowercase());
        let started = Utc::now();
        let images = self
            .node()?
            .runtime()
            .import_archive(archive, Some(&image_name))
            .await
            .map_err(|e| Error::Unprocessable(format!("cannot import the image archive: {e}")))?;
        let image = images.first().map(|i| i.name.clone()).unwrap_or(image_name);
        let build = Build {
            id: id.clone(),
            app: app.to_string(),
            description: description.unwrap_or_else(|| "image import".into()),
            manifest: manifest.to_string(),
            status: "complete".into(),
            started,
            ended: Some(Utc::now()),
            image,
            ..Build::default()
        };
        self.repo
            .store()
            .put(&repo::build_key(app, &id), repo::encode(&build))
            .await?;
        let release = self
            .release_create(
                app,
                super::ReleaseOptions {
                    build: Some(id.clone()),
                    ..Default::default()
                },
            )
            .await?;
        let mut build = build;
        build.release = release.id.clone();
        self.repo
            .store()
            .put(&repo::build_key(app, &id), repo::encode(&build))
            .await?;
        tracing::info!(target: "audit", app, build = %id, release = %release.id, "build imported");
        Ok((build, release))
    }

    /// Import an OCI image archive into the rack (no build).
    pub async fn images_import(
        &self,
        archive: &std::path::Path,
        name: Option<&str>,
    ) -> Result<Vec<Image>, Error> {
        let images = self
            .node()?
            .runtime()
            .import_archive(archive, name)
            .await
            .map_err(|e| Error::Unprocessable(format!("cannot import the image archive: {e}")))?;
        Ok(images.into_iter().map(image_view).collect())
    }

    /// Images the rack holds.
    pub async fn images(&self) -> Result<Vec<Image>, Error> {
        let images = self.node()?.runtime().images().await?;
        Ok(images.into_iter().map(image_view).collect())
    }
}

fn image_view(i: dray_runtime::Image) -> Image {
    Image {
        name: i.name,
        digest: i.digest,
        size: i.size,
        created: i.created.map(chrono::DateTime::<Utc>::from),
    }
}

/// The app record of a promote: `id` is being deployed. Refused while another deployment runs
/// (without `force`) and for a release older than the active one (`releases` newest first).
fn start_deploy(
    app: &str,
    id: &str,
    current: Option<Versioned<AppRecord>>,
    releases: &[Release],
    opts: &PromoteOptions,
) -> Result<Update<AppRecord>, Error> {
    let rec = current
        .ok_or_else(|| Error::NotFound(format!("app not found: {app}")))?
        .value;
    if rec.status != AppStatus::Running && !opts.force {
        return Err(Error::Conflict(format!(
            "app is currently updating (deploying {}): wait, cancel it with dray apps cancel, or pass --force",
            rec.deploying
        )));
    }
    if !rec.release.is_empty() {
        let pos = |r: &str| releases.iter().position(|x: &Release| x.id == r);
        if let (Some(new), Some(active)) = (pos(id), pos(&rec.release)) {
            if new > active {
                return Err(Error::BadRequest(format!(
                    "can not promote an older release, try rollback: dray releases rollback {id}"
                )));
            }
        }
    }
    let mut next = rec;
    next.status = AppStatus::Updating;
    next.deploying = id.to_string();
    next.deploy_started = Utc::now();
    next.deploy_timeout = opts.timeout.unwrap_or(600).clamp(5, 86_400);
    next.cancel_requested = false;
    // The progress of the last deploy stays until the planner writes this one's (each entry
    // names its release).
    Ok(Update::put(next))
}

/// A one-off process request from the API.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Shell-split command (empty: the service's command).
    pub command: Option<String>,
    pub release: Option<String>,
    pub env: BTreeMap<String, String>,
}

impl Controllers {
    /// Start a one-off process of a service.
    pub async fn run(&self, app: &str, service: &str, opts: RunOptions) -> Result<Process, Error> {
        self.app_record(app).await?;
        let args = match opts
            .command
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
        {
            Some(c) => shell_words::split(c)
                .map_err(|e| Error::BadRequest(format!("cannot parse the command {c:?}: {e}")))?,
            None => Vec::new(),
        };
        let p = self
            .node()?
            .run_once(crate::node::RunRequest {
                app: app.to_string(),
                service: service.to_string(),
                release: opts.release.filter(|r| !r.is_empty()),
                args,
                env: opts.env,
            })
            .await
            .map_err(|e| match e {
                NodeError::NotFound(what) if what.starts_with("service") => {
                    Error::NotFound(format!("service not found: {service}"))
                }
                other => other.into(),
            })?;
        tracing::info!(target: "audit", app, service, process = %p.id, "one-off process started");
        Ok(p.view())
    }

    /// Start a command inside a running process (by id, or a running process of a service).
    pub async fn exec(
        &self,
        app: &str,
        pid_or_service: &str,
        command: &str,
        tty: bool,
        size: Option<(u32, u32)>,
    ) -> Result<dray_runtime::ExecHandle, Error> {
        self.app_record(app).await?;
        let args = shell_words::split(command)
            .map_err(|e| Error::BadRequest(format!("cannot parse the command {command:?}: {e}")))?;
        if args.is_empty() {
            return Err(Error::BadRequest("a command is required".into()));
        }
        let sup = self.node()?;
        let container = sup.resolve(app, pid_or_service).ok_or_else(|| {
            Error::NotFound(format!(
                "no running process or service named {pid_or_service} in app {app}"
            ))
        })?;
        tracing::info!(target: "audit", app, process = pid_or_service, command, "exec");
        Ok(sup
            .runtime()
            .exec(
                &container,
                &dray_runtime::ExecSpec {
                    args,
                    tty,
                    stdin: true,
                    size,
                    ..Default::default()
                },
            )
            .await?)
    }
}
