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
//! | `/dray/scale/<app>` | service name -> [`ScaleRecord`] |
//! | `/dray/rack/id` | the rack's id (a JSON string, created once) |
//!
//! This module owns the key layout and (de)serialisation, and the one compare-and-swap helper,
//! [`Repo::update`], through which every read-modify-write of a record goes. It must never
//! decide business rules (who may write what): that is the controllers' job.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use dray_sdk::{AppStatus, Build, Release, ResourceStatus};
use dray_store::{Compare, KeyValue, Op, Revision, Store, StoreError, Txn};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// How many times [`Repo::update`] tries before giving up with [`RepoError::Conflict`].
pub const UPDATE_ATTEMPTS: usize = 50;

/// Why a repository call failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A record that does not decode. It is reported, never overwritten.
    #[error("corrupt record at {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// The record changed under every attempt of a compare-and-swap.
    #[error("{} kept changing while this request tried to update it ({attempts} attempts): try again", describe_key(.key))]
    Conflict { key: String, attempts: usize },
}

/// A record's key in words, for messages: `/dray/apps/web` is "app web".
pub fn describe_key(key: &str) -> String {
    let parts: Vec<&str> = key
        .strip_prefix("/dray/")
        .unwrap_or(key)
        .split('/')
        .collect();
    match parts.as_slice() {
        ["apps", app] => format!("app {app}"),
        ["scale", app] => format!("the scale of app {app}"),
        ["resources", app, name] => format!("resource {name} of app {app}"),
        ["releases", app, id] => format!("release {id} of app {app}"),
        ["builds", app, id] => format!("build {id} of app {app}"),
        ["rack", "id"] => "the rack id".to_string(),
        _ => format!("record {key}"),
    }
}

/// What the closure of [`Repo::update`] decided for the record, and what else the same
/// transaction writes.
#[derive(Debug)]
pub struct Update<T> {
    action: Action<T>,
    also: Vec<Op>,
}

#[derive(Debug)]
enum Action<T> {
    Keep,
    Put(T),
    Delete,
}

impl<T> Update<T> {
    /// Leave the record as it is: nothing is written (not even [`Update::also`]'s operations).
    pub fn keep() -> Update<T> {
        Update {
            action: Action::Keep,
            also: Vec::new(),
        }
    }

    /// Write this value.
    pub fn put(value: T) -> Update<T> {
        Update {
            action: Action::Put(value),
            also: Vec::new(),
        }
    }

    /// Delete the record.
    pub fn delete() -> Update<T> {
        Update {
            action: Action::Delete,
            also: Vec::new(),
        }
    }

    /// Apply these operations in the same transaction as the put or delete (never to the
    /// record's own key: a key must not be written twice in one transaction).
    pub fn also(mut self, ops: impl IntoIterator<Item = Op>) -> Update<T> {
        self.also.extend(ops);
        self
    }
}

/// The outcome of a [`Repo::update`].
#[derive(Clone, Debug)]
pub struct Updated<T> {
    /// The record as it is now: the value written, or the current one when the closure kept
    /// it; `None` when it was deleted or is absent.
    pub value: Option<T>,
    /// Whether the transaction wrote (false for [`Update::keep`]).
    pub written: bool,
    /// The record's `mod_revision` now (0: absent).
    pub mod_revision: Revision,
}

/// Why a [`Repo::update`] failed: the closure refused, or the store did.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError<E> {
    /// The closure's own error, returned as it is.
    #[error("{0}")]
    Rejected(E),
    #[error(transparent)]
    Repo(#[from] RepoError),
}

impl<E> From<StoreError> for UpdateError<E> {
    fn from(e: StoreError) -> Self {
        UpdateError::Repo(RepoError::Store(e))
    }
}

impl UpdateError<std::convert::Infallible> {
    /// The store's error (a closure that cannot fail).
    pub fn into_repo(self) -> RepoError {
        match self {
            UpdateError::Repo(e) => e,
            UpdateError::Rejected(never) => match never {},
        }
    }
}

/// An app as stored. The API's `App` is derived from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    pub name: String,
    pub status: AppStatus,
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

/// Key of the rack's id.
pub const RACK_ID_KEY: &str = "/dray/rack/id";

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
    /// `pending`, `provisioning`, `running`, `unhealthy`, `failed`, `overridden`, or
    /// `deleting` (no release declares it; its objects are being removed).
    pub status: ResourceStatus,
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
            self.status.to_string()
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

    /// An app's live scale by service (empty when never scaled; a record that does not decode
    /// is an error, never an empty scale).
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

    /// The one compare-and-swap of a record: read it with its `mod_revision`, let `change`
    /// decide ([`Update::keep`], [`Update::put`], [`Update::delete`], plus other operations for
    /// the same transaction with [`Update::also`]), and write in a [`Txn`] that compares the
    /// revision read (0 for an absent record). When another writer got there first, read again
    /// and call `change` again, at most [`UPDATE_ATTEMPTS`] times, then fail with
    /// [`RepoError::Conflict`]. A record that does not decode fails with
    /// [`RepoError::Corrupt`] before `change` is called: it is never overwritten.
    ///
    /// `change` gets the current record (owned, with its revisions) and returns a future, so it
    /// may read other records before deciding; synchronous callers return
    /// `std::future::ready(..)`. Its error ends the update as [`UpdateError::Rejected`].
    pub async fn update<T, E, F, Fut>(
        &self,
        key: &str,
        mut change: F,
    ) -> Result<Updated<T>, UpdateError<E>>
    where
        T: Serialize + DeserializeOwned + Clone,
        F: FnMut(Option<Versioned<T>>) -> Fut,
        Fut: Future<Output = Result<Update<T>, E>>,
    {
        for _ in 0..UPDATE_ATTEMPTS {
            let current: Option<Versioned<T>> = self.get(key).await?;
            let read = current.as_ref().map(|c| c.mod_revision).unwrap_or(0);
            let kept = current.as_ref().map(|c| c.value.clone());
            let update = change(current).await.map_err(UpdateError::Rejected)?;
            let (op, value) = match update.action {
                Action::Keep => {
                    return Ok(Updated {
                        value: kept,
                        written: false,
                        mod_revision: read,
                    })
                }
                Action::Put(v) => (Op::Put(key.to_string(), encode(&v)), Some(v)),
                Action::Delete => (Op::Delete(key.to_string()), None),
            };
            let mut success = vec![op];
            success.extend(update.also);
            let resp = self
                .store
                .txn(Txn {
                    compare: vec![Compare::ModRevision(key.to_string(), read)],
                    success,
                    failure: vec![],
                })
                .await?;
            if resp.succeeded {
                return Ok(Updated {
                    mod_revision: if value.is_some() { resp.revision } else { 0 },
                    value,
                    written: true,
                });
            }
        }
        Err(UpdateError::Repo(RepoError::Conflict {
            key: key.to_string(),
            attempts: UPDATE_ATTEMPTS,
        }))
    }

    /// Change an app record with [`Repo::update`]. `change` returns false to leave it
    /// unchanged. Returns whether a change was written (false also when the app is gone).
    pub async fn update_app<F>(&self, name: &str, mut change: F) -> Result<bool, RepoError>
    where
        F: FnMut(&mut AppRecord) -> bool,
    {
        let updated = self
            .update(&app_key(name), |current: Option<Versioned<AppRecord>>| {
                std::future::ready(Ok::<_, std::convert::Infallible>(match current {
                    Some(current) => {
                        let mut rec = current.value;
                        if change(&mut rec) {
                            Update::put(rec)
                        } else {
                            Update::keep()
                        }
                    }
                    None => Update::keep(),
                }))
            })
            .await
            .map_err(UpdateError::into_repo)?;
        Ok(updated.written)
    }

    /// The rack's id: the one in the store, or `fresh` stored as it when there is none yet
    /// (created with a compare-and-swap, so agents sharing a store agree on one).
    pub async fn rack_id(&self, fresh: &str) -> Result<String, RepoError> {
        let updated = self
            .update(RACK_ID_KEY, |current: Option<Versioned<String>>| {
                std::future::ready(Ok::<_, std::convert::Infallible>(match current {
                    Some(_) => Update::keep(),
                    None => Update::put(fresh.to_string()),
                }))
            })
            .await
            .map_err(UpdateError::into_repo)?;
        Ok(updated.value.unwrap_or_else(|| fresh.to_string()))
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

    /// An app's resource records (every app's with `None`) with their revisions, sorted by app
    /// and name.
    pub async fn resource_records(
        &self,
        app: Option<&str>,
    ) -> Result<Vec<Versioned<ResourceRecord>>, RepoError> {
        let mut out: Vec<Versioned<ResourceRecord>> = self.list(&resources_prefix(app)).await?;
        out.sort_by(|a, b| (&a.value.app, &a.value.name).cmp(&(&b.value.app, &b.value.name)));
        Ok(out)
    }

    /// Write a resource record read at `read` (0: it was absent), only if nobody wrote it since:
    /// `Some(new mod_revision)` when written, `None` when the record changed meanwhile (or, for
    /// `read` 0, exists now) and the caller's view is stale. Goes through [`Repo::update`].
    pub async fn save_resource(
        &self,
        rec: &ResourceRecord,
        read: Revision,
    ) -> Result<Option<Revision>, RepoError> {
        self.write_resource_if(&rec.app, &rec.name, read, Some(rec))
            .await
    }

    /// Forget a resource read at `read`, only if nobody wrote it since (false: it changed).
    pub async fn delete_resource(
        &self,
        app: &str,
        name: &str,
        read: Revision,
    ) -> Result<bool, RepoError> {
        Ok(self
            .write_resource_if(app, name, read, None)
            .await?
            .is_some())
    }

    async fn write_resource_if(
        &self,
        app: &str,
        name: &str,
        read: Revision,
        rec: Option<&ResourceRecord>,
    ) -> Result<Option<Revision>, RepoError> {
        let updated = self
            .update(
                &resource_key(app, name),
                |current: Option<Versioned<ResourceRecord>>| {
                    let now = current.map(|c| c.mod_revision).unwrap_or(0);
                    std::future::ready(Ok::<_, std::convert::Infallible>(if now != read {
                        Update::keep()
                    } else {
                        match rec {
                            Some(rec) => Update::put(rec.clone()),
                            None => Update::delete(),
                        }
                    }))
                },
            )
            .await
            .map_err(UpdateError::into_repo)?;
        Ok(updated.written.then_some(updated.mod_revision))
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
            status: self.status,
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

    /// The assignments of one app on one instance.
    pub async fn app_assignments(
        &self,
        instance: &str,
        app: &str,
    ) -> Result<Vec<Assignment>, RepoError> {
        self.store
            .range(&format!("{}{app}/", assignments_prefix(Some(instance))))
            .await?
            .kvs
            .into_iter()
            .map(|kv| decode(kv).map(|v: Versioned<Assignment>| v.value))
            .collect()
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

/// Test helpers: a store whose records keep changing.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use async_trait::async_trait;
    use dray_store::{
        Compare, KeyValue, RangeResponse, Revision, Store, StoreError, Txn, TxnResponse, Watch,
    };

    /// A store where another writer rewrites `key` (with the value it holds) just before every
    /// transaction that compares it, so every compare-and-swap on an existing `key` conflicts.
    pub struct ContendedStore {
        pub inner: Arc<dyn Store>,
        pub key: String,
    }

    #[async_trait]
    impl Store for ContendedStore {
        async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
            self.inner.get(key).await
        }
        async fn range(&self, prefix: &str) -> Result<RangeResponse, StoreError> {
            self.inner.range(prefix).await
        }
        async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
            self.inner.put(key, value).await
        }
        async fn delete(&self, key: &str) -> Result<Option<Revision>, StoreError> {
            self.inner.delete(key).await
        }
        async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
            let contended = txn
                .compare
                .iter()
                .any(|c| matches!(c, Compare::ModRevision(k, _) if *k == self.key));
            if contended {
                let value = self.inner.get(&self.key).await?.map(|kv| kv.value);
                if let Some(value) = value {
                    self.inner.put(&self.key, value).await?;
                }
            }
            self.inner.txn(txn).await
        }
        async fn watch(&self, prefix: &str, after: Revision) -> Result<Watch, StoreError> {
            self.inner.watch(prefix, after).await
        }
        async fn revision(&self) -> Result<Revision, StoreError> {
            self.inner.revision().await
        }
        async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
            self.inner.compact(revision).await
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::future::ready;

    use dray_store::sqlite::SqliteStore;

    use super::*;

    fn repo(dir: &std::path::Path) -> Repo {
        Repo::new(Arc::new(SqliteStore::open(&dir.join("state.db")).unwrap()))
    }

    #[tokio::test]
    async fn update_creates_keeps_puts_with_extra_ops_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let r = repo(dir.path());
        let created = r
            .update("/dray/x", |cur: Option<Versioned<u32>>| {
                assert!(cur.is_none());
                ready(Ok::<_, Infallible>(Update::put(1)))
            })
            .await
            .unwrap();
        assert!(created.written);
        assert_eq!(created.value, Some(1));
        let kept = r
            .update("/dray/x", |_: Option<Versioned<u32>>| {
                ready(Ok::<_, Infallible>(
                    Update::keep().also([Op::Put("/dray/y".into(), b"1".to_vec())]),
                ))
            })
            .await
            .unwrap();
        assert!(!kept.written);
        assert_eq!(kept.value, Some(1));
        assert_eq!(kept.mod_revision, created.mod_revision);
        assert!(
            r.store().get("/dray/y").await.unwrap().is_none(),
            "a kept record writes nothing"
        );
        let put = r
            .update("/dray/x", |cur: Option<Versioned<u32>>| {
                let n = cur.map(|c| c.value).unwrap_or(0);
                ready(Ok::<_, Infallible>(
                    Update::put(n + 1).also([Op::Put("/dray/y".into(), b"2".to_vec())]),
                ))
            })
            .await
            .unwrap();
        assert_eq!(put.value, Some(2));
        let y = r.store().get("/dray/y").await.unwrap().unwrap();
        assert_eq!(y.mod_revision, put.mod_revision, "one transaction");
        let refused = r
            .update("/dray/x", |_: Option<Versioned<u32>>| ready(Err("no")))
            .await
            .unwrap_err();
        assert!(matches!(refused, UpdateError::Rejected("no")));
        let deleted = r
            .update("/dray/x", |_: Option<Versioned<u32>>| {
                ready(Ok::<_, Infallible>(Update::delete()))
            })
            .await
            .unwrap();
        assert!(deleted.written && deleted.value.is_none());
        assert!(r.store().get("/dray/x").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_record_that_keeps_changing_is_a_conflict_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let inner = repo(dir.path());
        let rack = inner.rack_id("abc").await.unwrap();
        assert_eq!(rack, "abc");
        assert_eq!(inner.rack_id("other").await.unwrap(), "abc", "created once");
        let contended = Repo::new(Arc::new(testing::ContendedStore {
            inner: inner.store().clone(),
            key: app_key("myapp"),
        }));
        inner
            .store()
            .put(&app_key("myapp"), b"0".to_vec())
            .await
            .unwrap();
        let mut calls: usize = 0;
        let err = contended
            .update(&app_key("myapp"), |_: Option<Versioned<usize>>| {
                calls += 1;
                ready(Ok::<_, Infallible>(Update::put(calls)))
            })
            .await
            .unwrap_err();
        assert_eq!(calls, UPDATE_ATTEMPTS);
        let UpdateError::Repo(e @ RepoError::Conflict { .. }) = &err else {
            panic!("{err:?}");
        };
        assert_eq!(
            e.to_string(),
            "app myapp kept changing while this request tried to update it (50 attempts): try again"
        );
    }

    #[tokio::test]
    async fn a_corrupt_record_is_reported_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let r = repo(dir.path());
        let key = scale_key("web");
        r.store().put(&key, b"{not json".to_vec()).await.unwrap();
        let err = r.scale("web").await.unwrap_err();
        assert!(
            matches!(&err, RepoError::Corrupt { key: k, .. } if *k == key),
            "{err}"
        );
        let err = r
            .update(
                &key,
                |_: Option<Versioned<std::collections::BTreeMap<String, ScaleRecord>>>| {
                    ready(Ok::<_, Infallible>(Update::put(Default::default())))
                },
            )
            .await
            .unwrap_err()
            .into_repo();
        assert!(
            err.to_string()
                .starts_with(&format!("corrupt record at {key}: ")),
            "{err}"
        );
        assert_eq!(
            r.store().get(&key).await.unwrap().unwrap().value,
            b"{not json".to_vec()
        );
    }

    #[tokio::test]
    async fn a_stale_resource_write_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let r = repo(dir.path());
        let rec = ResourceRecord {
            app: "a".into(),
            name: "db".into(),
            port: 20001,
            ..Default::default()
        };
        let first = r.save_resource(&rec, 0).await.unwrap().unwrap();
        assert_eq!(
            r.save_resource(&rec, 0).await.unwrap(),
            None,
            "created only if absent"
        );
        let second = r.save_resource(&rec, first).await.unwrap().unwrap();
        assert!(second > first);
        assert_eq!(r.save_resource(&rec, first).await.unwrap(), None);
        assert!(!r.delete_resource("a", "db", first).await.unwrap());
        assert!(r.delete_resource("a", "db", second).await.unwrap());
        assert!(r.resource("a", "db").await.unwrap().is_none());
    }

    #[test]
    fn keys_in_words() {
        assert_eq!(describe_key(&app_key("web")), "app web");
        assert_eq!(describe_key(&scale_key("web")), "the scale of app web");
        assert_eq!(
            describe_key(&resource_key("web", "db")),
            "resource db of app web"
        );
        assert_eq!(describe_key("/other"), "record /other");
    }
}
