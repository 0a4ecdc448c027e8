//! `dray-runtime`: the only part of Dray that speaks containerd.
//!
//! Owns: the gRPC connection to containerd (namespace and lease headers on every call), image
//! import from OCI / docker archives without a registry (Content + Diff + Snapshots + Images,
//! since containerd 1.6 has no Transfer service), OCI runtime spec generation (secure defaults,
//! cgroup limits, host networking), the container/task lifecycle (run, kill, stop, wait, remove,
//! list for re-adoption after an agent restart), task events and exec with FIFOs and TTYs.
//!
//! Must never: hold a long-running container's stdout pipe for logging (logs go through the
//! shim's `binary://` logger or files, so they survive agent restarts), touch containerd's
//! namespaces other than its own, or interpret an interrupted `Tasks.Wait` (exit status 255)
//! as an exit without re-checking the task.
//!
//! Verified against containerd 1.6.20 + runc 1.1.5 (Debian 12) with `containerd-client` 0.9.

mod container;
mod error;
mod events;
mod exec;
mod image;
pub mod logger;
mod spec;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::version_client::VersionClient;
use containerd_client::services::v1::{
    CreateRequest as CreateLeaseRequest, DeleteRequest as DeleteLeaseRequest,
};
use containerd_client::tonic::metadata::{AsciiMetadataValue, MetadataValue};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::Request;

pub use container::binary_log_uri;
pub use container::{ContainerInfo, ContainerSpec, Log, Mount, Started, TaskInfo, TaskStatus};
pub use error::RuntimeError;
pub use events::TaskEvent;
pub use exec::{ExecHandle, ExecSpec, ProcessIo};
pub use image::{Image, ImageConfig};
pub use spec::{
    default_capability_mask, default_seccomp, DEFAULT_CAPABILITIES, SHIM_GROUP_ANNOTATION,
};

/// Snapshotter used for every image and container.
pub const SNAPSHOTTER: &str = "overlayfs";
/// containerd runtime (shim) used for every task.
pub const RUNC_RUNTIME: &str = "io.containerd.runc.v2";
/// Default directory under which per-container FIFO directories are created.
pub const DEFAULT_FIFO_DIR: &str = "/run/dray/fifo";

/// A connection to containerd, bound to one containerd namespace.
///
/// Cheap to clone (the gRPC channel is shared). All containers, images and events are scoped to
/// the namespace given to [`Runtime::connect`].
#[derive(Clone)]
pub struct Runtime {
    channel: Channel,
    namespace: String,
    ns_header: AsciiMetadataValue,
    socket: PathBuf,
    fifo_dir: PathBuf,
    images: Arc<Mutex<image::Cache>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("socket", &self.socket)
            .field("namespace", &self.namespace)
            .finish()
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A process-unique token for lease ids, ingest refs, exec ids.
pub(crate) fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos:x}-{n}", std::process::id())
}

/// Converts a protobuf timestamp to `SystemTime` (None for unset or the zero time).
pub(crate) fn to_system_time(ts: Option<&prost_types::Timestamp>) -> Option<SystemTime> {
    let ts = ts?;
    if ts.seconds <= 0 {
        return None;
    }
    Some(SystemTime::UNIX_EPOCH + Duration::new(ts.seconds as u64, ts.nanos.max(0) as u32))
}

/// containerd's namespace name rule (`namespaces.Validate`).
fn valid_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= 76
        && ns
            .split(['.', '_', '-'])
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric()))
}

impl Runtime {
    /// Connects to the containerd socket and checks the daemon answers (`Version`).
    ///
    /// When it does not, the error reads
    /// `containerd is not running at /run/containerd/containerd.sock: <cause>`.
    pub async fn connect(socket: &Path, namespace: &str) -> Result<Runtime, RuntimeError> {
        if !valid_namespace(namespace) {
            return Err(RuntimeError::InvalidSpec(format!(
                "invalid containerd namespace {namespace:?}"
            )));
        }
        let not_running = |cause: String| RuntimeError::NotRunning {
            socket: socket.to_path_buf(),
            cause,
        };
        if let Err(e) = std::fs::metadata(socket) {
            return Err(not_running(e.to_string()));
        }
        let channel =
            tokio::time::timeout(Duration::from_secs(5), containerd_client::connect(socket))
                .await
                .map_err(|_| not_running("connect timed out after 5s".into()))?
                .map_err(|e| not_running(error_chain(&e)))?;
        let version = tokio::time::timeout(
            Duration::from_secs(5),
            VersionClient::new(channel.clone()).version(()),
        )
        .await
        .map_err(|_| not_running("Version timed out after 5s".into()))?
        .map_err(|s| not_running(format!("{:?}: {}", s.code(), s.message())))?
        .into_inner();
        tracing::debug!(socket = %socket.display(), version = %version.version, namespace, "connected to containerd");
        let ns_header: AsciiMetadataValue = MetadataValue::try_from(namespace).map_err(|_| {
            RuntimeError::InvalidSpec(format!("invalid containerd namespace {namespace:?}"))
        })?;
        Ok(Runtime {
            channel,
            namespace: namespace.to_string(),
            ns_header,
            socket: socket.to_path_buf(),
            fifo_dir: PathBuf::from(DEFAULT_FIFO_DIR).join(namespace),
            images: Arc::new(Mutex::new(image::Cache::default())),
        })
    }

    /// Uses `dir` (instead of `/run/dray/fifo/<namespace>`) for the FIFOs of attached tasks and
    /// execs. The directory must be on the same host as containerd (the shim opens the FIFOs).
    pub fn with_fifo_dir(mut self, dir: impl Into<PathBuf>) -> Runtime {
        self.fifo_dir = dir.into();
        self
    }

    /// The containerd namespace this runtime works in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The containerd socket this runtime is connected to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// containerd's version string.
    pub async fn version(&self) -> Result<String, RuntimeError> {
        let v = VersionClient::new(self.channel.clone())
            .version(())
            .await
            .map_err(|s| RuntimeError::grpc("Version", "version", s))?;
        Ok(v.into_inner().version)
    }

    /// A request carrying the namespace header.
    pub(crate) fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        r.metadata_mut()
            .insert("containerd-namespace", self.ns_header.clone());
        r
    }

    /// A request carrying the namespace and lease headers.
    pub(crate) fn req_lease<T>(&self, msg: T, lease: &str) -> Request<T> {
        let mut r = self.req(msg);
        if let Ok(v) = MetadataValue::try_from(lease) {
            r.metadata_mut().insert("containerd-lease", v);
        }
        r
    }

    /// Creates a lease that protects everything created under it from GC; it expires by itself
    /// after an hour (so a crashed agent does not pin resources forever).
    pub(crate) async fn create_lease(&self, purpose: &str) -> Result<String, RuntimeError> {
        let id = unique(&format!("dray-{purpose}"));
        let expire = (chrono::Utc::now() + chrono::Duration::hours(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let labels = BTreeMap::from([("containerd.io/gc.expire".to_string(), expire)]);
        LeasesClient::new(self.channel.clone())
            .create(self.req(CreateLeaseRequest {
                id: id.clone(),
                labels: labels.into_iter().collect(),
            }))
            .await
            .map_err(|s| RuntimeError::grpc("Leases.Create", &id, s))?;
        Ok(id)
    }

    /// Deletes a lease (best effort: a leftover lease expires by itself).
    pub(crate) async fn delete_lease(&self, id: &str) {
        if let Err(s) = LeasesClient::new(self.channel.clone())
            .delete(self.req(DeleteLeaseRequest {
                id: id.to_string(),
                sync: false,
            }))
            .await
        {
            tracing::warn!(lease = id, error = %s.message(), "could not delete containerd lease");
        }
    }
}

/// Formats an error with its sources (`a: b: c`).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let cs = c.to_string();
        if !s.contains(&cs) {
            s.push_str(": ");
            s.push_str(&cs);
        }
        cur = c.source();
    }
    s
}
