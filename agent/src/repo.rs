//! Typed repositories: apps, builds and releases as JSON records in the [`Store`].
//!
//! Key layout (one prefix per kind, so a range read lists one kind of one app):
//!
//! | key | value |
//! |---|---|
//! | `/dray/apps/<app>` | [`AppRecord`] |
//! | `/dray/builds/<app>/<id>` | [`Build`] |
//! | `/dray/releases/<app>/<id>` | [`Release`] |
//! | `/dray/plugin-state/<plugin>/<key>` | a plugin's own state value (opaque text) |
//! | `/dray/resources/<app>/<name>` | [`ResourceRecord`] (written only by `crate::resources`) |
//!
//! This module owns the key layout and (de)serialisation, and hands out the store revisions
//! that callers need for compare-and-swap. It must never decide business rules (who may write
//! what): that is the controllers' job.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use dray_sdk::{Build, Release};
use dray_store::{KeyValue, Revision, Store, StoreError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Why a repository call failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("corrupt record at {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

/// An app as stored. The API's `App` is derived from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    pub name: String,
    pub status: String,
    /// The active (promoted) release.
    #[serde(default)]
    pub release: String,
    /// The newest release, promoted or not: the default parent of the next release.
    #[serde(default)]
    pub latest_release: String,
    #[serde(default)]
    pub locked: bool,
    #[serde(default)]
    pub cancel_requested: bool,
    pub created: DateTime<Utc>,
    /// The release being deployed (empty when no deployment is in progress).
    #[serde(default)]
    pub deploying: String,
    /// When the deployment started.
    #[serde(default = "epoch")]
    pub deploy_started: DateTime<Utc>,
    /// Seconds the deployment may take before it is rolled back.
    #[serde(default)]
    pub deploy_timeout: u64,
    /// Why the last deployment was rolled back (empty after a success).
    #[serde(default)]
    pub last_deploy_error: String,
    /// Per-service progress of the deployment in progress, or of the last one (written by the
    /// planner when it changes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub progress: Vec<dray_sdk::ServiceProgress>,
    /// Rolling restarts asked for (`dray restart`, `services restart`): service -> when. A
    /// service process started before its time is replaced within the deployment bounds; the
    /// key `*` stands for every service.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub restarts: std::collections::BTreeMap<String, DateTime<Utc>>,
}

fn epoch() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH
}

/// A service's live scale (`dray scale`), which wins over the manifest's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
}

/// Key of an app's live scale (service name -> [`ScaleRecord`]).
pub fn scale_key(app: &str) -> String {
    format!("/dray/scale/{app}")
}

/// A value read together with the revision needed to update it safely.
#[derive(Clone, Debug)]
pub struct Versioned<T> {
    pub value: T,
    pub mod_revision: Revision,
    pub create_revision: Revision,
}

/// Key of an app record.
pub fn app_key(app: &str) -> String {
    format!("/dray/apps/{app}")
}

/// Prefix of every app record.
pub const APPS_PREFIX: &str = "/dray/apps/";

/// Key of a build.
pub fn build_key(app: &str, id: &str) -> String {
    format!("/dray/builds/{app}/{id}")
}

/// Prefix of an app's builds.
pub fn builds_prefix(app: &str) -> String {
    format!("/dray/builds/{app}/")
}

/// Key of a release.
pub fn release_key(app: &str, id: &str) -> String {
    format!("/dray/releases/{app}/{id}")
}

/// Prefix of an app's releases.
pub fn releases_prefix(app: &str) -> String {
    format!("/dray/releases/{app}/")
}

/// Key of one value of a plugin's persistent state (`key` is the plugin's, may hold `/`).
pub fn plugin_state_key(plugin: &str, key: &str) -> String {
    format!("/dray/plugin-state/{plugin}/{key}")
}

/// Prefix of a plugin's persistent state.
pub fn plugin_state_prefix(plugin: &str) -> String {
    format!("/dray/plugin-state/{plugin}/")
}

/// Key of an app's resource.
pub fn resource_key(app: &str, name: &str) -> String {
    format!("/dray/resources/{app}/{name}")
}

/// Prefix of an app's resources (every app's with `None`).
pub fn resources_prefix(app: Option<&str>) -> String {
    match app {
        Some(app) => format!("/dray/resources/{app}/"),
        None => "/dray/resources/".to_string(),
    }
}

/// A resource as the agent carried it out: what the plugin planned, what runs, what it links.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceRecord {
    pub app: String,
    pub name: String,
    /// The `type:` of convox.yml.
    #[serde(rename = "type")]
    pub kind: String,
    /// The plugin that planned it.
    #[serde(default)]
    pub plugin: String,
    /// The host port allocated for it (kept for its whole life).
    #[serde(default)]
    pub port: u16,
    /// `pending`, `provisioning`, `running`, `unhealthy`, `failed`, `overridden`.
    pub status: String,
    /// Why it is failed or waiting (empty when running).
    #[serde(default)]
    pub reason: String,
    /// The values it links into services (`URL`, `USER`, ...); empty until first realized.
    #[serde(default)]
    pub outputs: Vec<ResourceOutput>,
    /// The objects carried out, by plan name.
    #[serde(default)]
    pub objects: Vec<ResourceObject>,
    /// The last plan carried out, as the plugin returned it (for `resources info` and audits).
    #[serde(default)]
    pub plan: serde_json::Value,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

impl ResourceRecord {
    /// `status`, or `status: reason` when there is a reason (for messages).
    pub fn status_line(&self) -> String {
        if self.reason.is_empty() {
            self.status.clone()
        } else {
            format!("{}: {}", self.status, self.reason)
        }
    }
}

/// One linked value of a resource (stored in its wire shape).
pub use dray_sdk::ResourceOutput;

/// One object of a resource as realized.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceObject {
    /// The name in the plan.
    pub name: String,
    /// `container` or `cloud-database`.
    pub kind: String,
    /// The containerd container id, or the cloud identifier.
    pub id: String,
    /// The image (containers) or engine version (databases).
    #[serde(default)]
    pub version: String,
    /// Hash of the planned object: a different hash means the object is replaced.
    #[serde(default)]
    pub hash: String,
    /// Where it is reached, once realized.
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub port: u16,
}

/// Serialise a record.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain structs to JSON cannot fail (string keys, no custom impls).
    serde_json::to_vec(value).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(kv: KeyValue) -> Result<Versioned<T>, RepoError> {
    let value = serde_json::from_slice(&kv.value).map_err(|e| RepoError::Corrupt {
        key: kv.key.clone(),
        reason: e.to_string(),
    })?;
    Ok(Versioned {
        value,
        mod_revision: kv.mod_revision,
        create_revision: kv.create_revision,
    })
}

/// Typed access to the store.
#[derive(Clone)]
pub struct Repo {
    store: Arc<dyn Store>,
}

impl Repo {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Repo { store }
    }

    /// The underlying store, for transactions that span several records.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<Versioned<T>>, RepoError> {
        match self.store.get(key).await? {
            Some(kv) => Ok(Some(decode(kv)?)),
            None => Ok(None),
        }
    }

    /// Every record under a prefix, newest first (by creation revision).
    async fn list<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<Versioned<T>>, RepoError> {
        let mut out = self
            .store
            .range(prefix)
            .await?
            .kvs
            .into_iter()
            .map(decode)
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|v| std::cmp::Reverse(v.create_revision));
        Ok(out)
    }

    /// An app's live scale by service (empty when never scaled).
    pub async fn scale(
        &self,
        app: &str,
    ) -> Result<std::collections::BTreeMap<String, ScaleRecord>, RepoError> {
        Ok(self
            .get(&scale_key(app))
            .await?
            .map(|v| v.value)
            .unwrap_or_default())
    }

    /// Change an app record with compare-and-swap, retrying on concurrent writes. `change`
    /// returns false to leave it unchanged. Returns whether a change was written (false also
    /// when the app is gone).
    pub async fn update_app<F>(&self, name: &str, mut change: F) -> Result<bool, RepoError>
    where
        F: FnMut(&mut AppRecord) -> bool,
    {
        for _ in 0..50 {
            let Some(current) = self.app(name).await? else {
                return Ok(false);
            };
            let mut rec = current.value.clone();
            if !change(&mut rec) {
                return Ok(false);
            }
            let key = app_key(name);
            let resp = self
                .store
                .txn(dray_store::Txn {
                    compare: vec![dray_store::Compare::ModRevision(
                        key.clone(),
                        current.mod_revision,
                    )],
                    success: vec![dray_store::Op::Put(key, encode(&rec))],
                    failure: vec![],
                })
                .await?;
            if resp.succeeded {
                return Ok(true);
            }
        }
        Err(RepoError::Store(StoreError::Backend(format!(
            "app {name} kept changing under 50 attempts to update it"
        ))))
    }

    pub async fn app(&self, name: &str) -> Result<Option<Versioned<AppRecord>>, RepoError> {
        self.get(&app_key(name)).await
    }

    /// Every app, sorted by name.
    pub async fn apps(&self) -> Result<Vec<AppRecord>, RepoError> {
        let mut apps: Vec<AppRecord> = self
            .list(APPS_PREFIX)
            .await?
            .into_iter()
            .map(|v: Versioned<AppRecord>| v.value)
            .collect();
        apps.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(apps)
    }

    pub async fn release(&self, app: &str, id: &str) -> Result<Option<Release>, RepoError> {
        Ok(self.get(&release_key(app, id)).await?.map(|v| v.value))
    }

    /// An app's releases, newest first.
    pub async fn releases(&self, app: &str) -> Result<Vec<Release>, RepoError> {
        Ok(self
            .list(&releases_prefix(app))
            .await?
            .into_iter()
            .map(|v: Versioned<Release>| v.value)
            .collect())
    }

    pub async fn build(&self, app: &str, id: &str) -> Result<Option<Build>, RepoError> {
        Ok(self.get(&build_key(app, id)).await?.map(|v| v.value))
    }

    /// One resource of an app.
    pub async fn resource(
        &self,
        app: &str,
        name: &str,
    ) -> Result<Option<ResourceRecord>, RepoError> {
        Ok(self.get(&resource_key(app, name)).await?.map(|v| v.value))
    }

    /// An app's resources (every app's with `None`), sorted by app and name.
    pub async fn resources(&self, app: Option<&str>) -> Result<Vec<ResourceRecord>, RepoError> {
        let mut out: Vec<ResourceRecord> = self
            .list(&resources_prefix(app))
            .await?
            .into_iter()
            .map(|v: Versioned<ResourceRecord>| v.value)
            .collect();
        out.sort_by(|a, b| (&a.app, &a.name).cmp(&(&b.app, &b.name)));
        Ok(out)
    }

    /// Write a resource record (its only writer is the resource reconciler).
    pub async fn put_resource(&self, rec: &ResourceRecord) -> Result<(), RepoError> {
        self.store
            .put(&resource_key(&rec.app, &rec.name), encode(rec))
            .await?;
        Ok(())
    }

    /// Forget a resource.
    pub async fn delete_resource(&self, app: &str, name: &str) -> Result<(), RepoError> {
        self.store.delete(&resource_key(app, name)).await?;
        Ok(())
    }

    /// An app's builds, newest first.
    pub async fn builds(&self, app: &str) -> Result<Vec<Build>, RepoError> {
        Ok(self
            .list(&builds_prefix(app))
            .await?
            .into_iter()
            .map(|v: Versioned<Build>| v.value)
            .collect())
    }
}

/// Key of a process the planner assigned to an instance.
pub fn assignment_key(instance: &str, app: &str, process: &str) -> String {
    format!("/dray/assignments/{instance}/{app}/{process}")
}

/// Prefix of an instance's assignments (every instance's with `None`).
pub fn assignments_prefix(instance: Option<&str>) -> String {
    match instance {
        Some(i) => format!("/dray/assignments/{i}/"),
        None => "/dray/assignments/".to_string(),
    }
}

/// Key of a process as its node reports it.
pub fn process_key(app: &str, process: &str) -> String {
    format!("/dray/processes/{app}/{process}")
}

/// Prefix of an app's processes (every app's with `None`).
pub fn processes_prefix(app: Option<&str>) -> String {
    match app {
        Some(a) => format!("/dray/processes/{a}/"),
        None => "/dray/processes/".to_string(),
    }
}

/// A service process the planner wants an instance to run (written by the planner only; the
/// node of that instance starts it, and stops it when the assignment is deleted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub app: String,
    pub service: String,
    pub release: String,
    /// The process id users see: `<service>-<5 letters>`.
    pub process: String,
    pub instance: String,
    /// CPU (millicores) and memory (MB) limits (the live scale wins over the manifest).
    pub cpu: u64,
    pub memory: u64,
    pub created: DateTime<Utc>,
}

/// What kind of process a container is (the `dray.type` label and `Process.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessKind {
    /// One of a service's `count` processes.
    Service,
    /// A one-off `dray run`.
    Process,
    /// A timer run.
    Timer,
}

impl ProcessKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessKind::Service => "service",
            ProcessKind::Process => "process",
            ProcessKind::Timer => "timer",
        }
    }

    /// From a `dray.type` label (anything unknown is a service, as before the label existed).
    pub fn parse(s: &str) -> ProcessKind {
        match s {
            "process" => ProcessKind::Process,
            "timer" => ProcessKind::Timer,
            _ => ProcessKind::Service,
        }
    }
}

/// A process as its node reports it (written by the node that runs it, only when it changes):
/// the source of `dray ps`, the endpoints feed and the planner's observed state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub app: String,
    pub service: String,
    pub release: String,
    pub process: String,
    pub kind: ProcessKind,
    pub instance: String,
    /// The address it is reached at.
    #[serde(default)]
    pub host: String,
    pub status: dray_sdk::ProcessStatus,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub command: String,
    pub cpu: u64,
    pub memory: u64,
    pub started: DateTime<Utc>,
    /// Restarts after crashes (or failed liveness checks).
    #[serde(default)]
    pub restarts: u32,
    /// Crashes in a row (reset after it ran long enough).
    #[serde(default)]
    pub crashes: u32,
    #[serde(default)]
    pub exit_code: Option<u32>,
}

impl ProcessRecord {
    /// The API view.
    pub fn view(&self) -> dray_sdk::Process {
        dray_sdk::Process {
            id: self.process.clone(),
            app: self.app.clone(),
            command: self.command.clone(),
            cpu: self.cpu as f64 / 1000.0,
            host: self.host.clone(),
            image: self.image.clone(),
            instance: self.instance.clone(),
            memory: self.memory as f64,
            name: self.service.clone(),
            ports: self.port.map(|p| vec![p.to_string()]).unwrap_or_default(),
            release: self.release.clone(),
            started: self.started,
            status: self.status.as_str().into(),
            service: self.service.clone(),
            kind: self.kind.as_str().into(),
            restarts: self.restarts,
            exit_code: self.exit_code.map(|c| c as i32),
        }
    }
}

impl Repo {
    /// An instance's assignments (every instance's with `None`), with the store revision they
    /// were read at (to watch from).
    pub async fn assignments(
        &self,
        instance: Option<&str>,
    ) -> Result<(Vec<Assignment>, Revision), RepoError> {
        let r = self.store.range(&assignments_prefix(instance)).await?;
        let rev = r.revision;
        let list = r
            .kvs
            .into_iter()
            .map(|kv| decode(kv).map(|v: Versioned<Assignment>| v.value))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((list, rev))
    }

    /// An app's processes as their nodes report them (every app's with `None`), by id.
    pub async fn processes(&self, app: Option<&str>) -> Result<Vec<ProcessRecord>, RepoError> {
        let mut out = self
            .store
            .range(&processes_prefix(app))
            .await?
            .kvs
            .into_iter()
            .map(|kv| decode(kv).map(|v: Versioned<ProcessRecord>| v.value))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| (&a.app, &a.service, &a.process).cmp(&(&b.app, &b.service, &b.process)));
        Ok(out)
    }

    /// One process of an app.
    pub async fn process(&self, app: &str, id: &str) -> Result<Option<ProcessRecord>, RepoError> {
        Ok(self.get(&process_key(app, id)).await?.map(|v| v.value))
    }
}

/// Decode a raw store value of type `T` (for watch events), naming the key when it is corrupt.
pub fn decode_value<T: DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, RepoError> {
    serde_json::from_slice(value).map_err(|e| RepoError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}
