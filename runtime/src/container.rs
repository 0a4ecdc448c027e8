//! Containers and their tasks: run, kill, stop, wait, remove, list.
//!
//! Owns the lifecycle order that containerd needs (lease -> `Snapshots.Prepare` ->
//! `Containers.Create` -> `Tasks.Create` with the snapshot mounts as rootfs -> `Tasks.Start`,
//! lease deleted afterwards), cleanup of half-created containers, the SIGTERM -> grace ->
//! SIGKILL stop sequence, and reading task state back for re-adoption after an agent restart.
//!
//! Must never: treat an interrupted `Tasks.Wait` (exit status 255 with the task still alive)
//! as an exit, leave a snapshot or container record behind when `run` fails, or create
//! anything outside this runtime's namespace.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{PrepareSnapshotRequest, RemoveSnapshotRequest};
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    container::Runtime as CtrRuntime, CloseIoRequest, Container, CreateContainerRequest,
    CreateTaskRequest, DeleteContainerRequest, DeleteTaskRequest, GetContainerRequest, GetRequest,
    KillRequest, ListContainersRequest, ListTasksRequest, ResizePtyRequest, StartRequest,
    WaitRequest,
};
use containerd_client::tonic::Code;
use containerd_client::types::v1::{Process, Status};
use containerd_client::types::Mount as CtrMount;

use crate::exec::{self, ProcessIo};
use crate::image::Resolved;
use crate::spec::{self, User};
use crate::{to_system_time, Runtime, RuntimeError, RUNC_RUNTIME, SNAPSHOTTER};

/// A bind mount into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Host path.
    pub source: PathBuf,
    /// Path inside the container.
    pub destination: String,
    /// Mount read-only.
    pub read_only: bool,
}

/// Where a container's stdout/stderr go. Written by containerd's shim, never by the agent, so
/// output is not lost while the agent restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Log {
    /// Discarded.
    #[default]
    Null,
    /// Appended to regular files (created if missing; may be the same file). The shim opens
    /// them `O_WRONLY|O_APPEND` (plain paths, not `file://`, which would merge stderr into the
    /// stdout file).
    Files {
        /// stdout file.
        stdout: PathBuf,
        /// stderr file (ignored with a TTY: the terminal merges both).
        stderr: PathBuf,
    },
    /// A `binary://` logger the shim starts and owns (see [`crate::logger`] for the protocol).
    Binary {
        /// Absolute path of the logger executable.
        path: PathBuf,
        /// Passed to the logger as argv pairs `key value` (order not preserved).
        args: Vec<(String, String)>,
    },
    /// FIFOs created by the runtime and handed back in [`Started::io`] (attached one-off
    /// processes). Output blocks when nobody reads, and is lost if the reader dies.
    Fifo,
}

/// Everything needed to run one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Container id (also the task id and snapshot key): `[A-Za-z0-9][A-Za-z0-9._-]*`, ≤ 76.
    pub id: String,
    /// Image name, as imported.
    pub image: String,
    /// Replaces the image's ENTRYPOINT when set (`Some(vec![])` clears it).
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's CMD when non-empty (Docker's `run IMAGE args...`).
    pub args: Vec<String>,
    /// Added to (and overriding) the image's ENV.
    pub env: Vec<(String, String)>,
    /// Working directory (default: the image's WORKDIR, else `/`).
    pub cwd: Option<String>,
    /// User (`name`, `uid`, `uid:gid`, `name:group`; default: the image's USER, else root).
    /// Names are looked up in the image's `/etc/passwd` and `/etc/group`.
    pub user: Option<String>,
    /// containerd labels; the agent finds its containers again by these after a restart.
    pub labels: BTreeMap<String, String>,
    /// stdout/stderr destination.
    pub log: Log,
    /// Allocate a TTY (output arrives on stdout only).
    pub tty: bool,
    /// Give the process a stdin FIFO (returned in [`Started::io`]).
    pub stdin: bool,
    /// CPU weight: `cpu.shares = millicores * 1024 / 1000`.
    pub cpu_millicores: Option<u64>,
    /// Hard CPU cap (CFS quota over a 100 ms period).
    pub cpu_limit_millicores: Option<u64>,
    /// Memory limit in MiB (the kernel OOM-kills above it).
    pub memory_mb: Option<u64>,
    /// Maximum number of processes/threads.
    pub pids_limit: Option<i64>,
    /// All capabilities of the host's bounding set, no seccomp, no masked paths, all devices
    /// allowed, `/sys` writable. Default false.
    pub privileged: bool,
    /// Share the host's network (and UTS) namespace, with the host's `/etc/resolv.conf` and
    /// `/etc/hosts` mounted read-only. Dray's default (true); false gives a loopback-only
    /// network namespace.
    pub host_network: bool,
    /// Bind mounts (persistent volumes).
    pub mounts: Vec<Mount>,
    /// Run under the `containerd-shim-runc-v2` process of the container with this id instead of
    /// a new shim (the runc shim's `io.containerd.runc.v2.group` annotation, the mechanism CRI
    /// uses for the containers of a pod). Joining a live shim skips the shim's spawn (~7 ms of a
    /// ~60 ms start on the 2-core machine) and its ~15 MB of memory; if that shim is gone, a new
    /// one is started for the group as usual. A shim that dies takes every container it hosts
    /// with it, so only short-lived containers should join another's shim. `None`: a shim of its
    /// own.
    pub shim_of: Option<String>,
}

impl ContainerSpec {
    /// A spec with Dray's defaults: host networking, non-privileged, output discarded.
    pub fn new(id: impl Into<String>, image: impl Into<String>) -> ContainerSpec {
        ContainerSpec {
            id: id.into(),
            image: image.into(),
            entrypoint: None,
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            user: None,
            labels: BTreeMap::new(),
            log: Log::Null,
            tty: false,
            stdin: false,
            cpu_millicores: None,
            cpu_limit_millicores: None,
            memory_mb: None,
            pids_limit: None,
            privileged: false,
            host_network: true,
            mounts: Vec::new(),
            shim_of: None,
        }
    }
}

/// A started container task.
#[derive(Debug)]
pub struct Started {
    /// Host pid of the container's init process.
    pub pid: u32,
    /// stdio FIFOs, when [`Log::Fifo`] or `stdin` was asked for.
    pub io: Option<ProcessIo>,
}

/// State of a task as containerd reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    /// Created, not started.
    Created,
    /// Running.
    Running,
    /// Exited (not yet deleted).
    Stopped,
    /// Paused or pausing.
    Paused,
    /// containerd cannot tell (e.g. the shim is unreachable).
    Unknown,
}

/// A container's task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    /// Status.
    pub status: TaskStatus,
    /// Host pid of the init process (0 when unknown).
    pub pid: u32,
    /// Exit status, when stopped.
    pub exit_status: Option<u32>,
    /// When it exited.
    pub exited_at: Option<SystemTime>,
}

/// A container with its labels and (if any) task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Container id.
    pub id: String,
    /// Image name it was created from.
    pub image: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// When the container record was created.
    pub created: Option<SystemTime>,
    /// Its task, if one exists.
    pub task: Option<TaskInfo>,
}

fn task_info(p: &Process) -> TaskInfo {
    let status = match Status::try_from(p.status).unwrap_or(Status::Unknown) {
        Status::Created => TaskStatus::Created,
        Status::Running => TaskStatus::Running,
        Status::Stopped => TaskStatus::Stopped,
        Status::Paused | Status::Pausing => TaskStatus::Paused,
        Status::Unknown => TaskStatus::Unknown,
    };
    TaskInfo {
        status,
        pid: p.pid,
        exit_status: (status == TaskStatus::Stopped).then_some(p.exit_status),
        exited_at: to_system_time(p.exited_at.as_ref()),
    }
}

/// containerd's identifier rule.
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 76
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Quotes a containerd filter value.
fn quote(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Mounts containerd mounts at `target` (root only; used to read /etc/passwd of an image).
fn mount_at(mounts: &[CtrMount], target: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    for m in mounts {
        let mut flags: libc::c_ulong = 0;
        let mut data: Vec<&str> = Vec::new();
        for o in &m.options {
            match o.as_str() {
                "ro" => flags |= libc::MS_RDONLY,
                "rw" => {}
                "bind" => flags |= libc::MS_BIND,
                "rbind" => flags |= libc::MS_BIND | libc::MS_REC,
                "nosuid" => flags |= libc::MS_NOSUID,
                "nodev" => flags |= libc::MS_NODEV,
                "noexec" => flags |= libc::MS_NOEXEC,
                other => data.push(other),
            }
        }
        let cstr = |s: &str| {
            CString::new(s).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
        };
        let source = cstr(&m.source)?;
        let fstype = cstr(if m.r#type.is_empty() {
            "none"
        } else {
            &m.r#type
        })?;
        let tgt = cstr(&target.to_string_lossy())?;
        let data = cstr(&data.join(","))?;
        // SAFETY: all pointers are valid NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                tgt.as_ptr(),
                fstype.as_ptr(),
                flags,
                data.as_ptr() as *const libc::c_void,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn unmount(target: &Path) {
    if let Ok(t) = std::ffi::CString::new(target.to_string_lossy().as_bytes()) {
        // SAFETY: valid NUL-terminated path.
        unsafe {
            libc::umount2(t.as_ptr(), libc::MNT_DETACH);
        }
    }
}

/// Reads `/etc/passwd` and `/etc/group` under `root`, refusing symlinks (they could point at
/// the host's files).
pub(crate) fn read_user_db(root: &Path) -> (String, String) {
    let read = |rel: &str| -> String {
        let etc = root.join("etc");
        let path = etc.join(rel);
        let safe = [&etc, &path].iter().all(|p| {
            std::fs::symlink_metadata(p)
                .map(|m| !m.file_type().is_symlink())
                .unwrap_or(false)
        });
        if !safe {
            return String::new();
        }
        std::fs::read_to_string(path).unwrap_or_default()
    };
    (read("passwd"), read("group"))
}

/// Resolves a user string for a container whose rootfs is given by `mounts`.
async fn resolve_user_in(
    user: &str,
    mounts: &[CtrMount],
    scratch: &Path,
) -> Result<User, RuntimeError> {
    if user.is_empty() {
        return Ok(User::default());
    }
    if let Some(u) = spec::numeric_user(user) {
        return Ok(u);
    }
    let mounts = mounts.to_vec();
    let dir = scratch.join(crate::unique("userdb"));
    let user = user.to_string();
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)
            .map_err(|e| RuntimeError::io(format!("create {}", dir.display()), e))?;
        let res = mount_at(&mounts, &dir)
            .map_err(|e| RuntimeError::io("mount the image to read /etc/passwd", e))
            .map(|()| {
                let db = read_user_db(&dir);
                unmount(&dir);
                db
            });
        let _ = std::fs::remove_dir(&dir);
        let (passwd, group) = res?;
        spec::resolve_user(&user, &passwd, &group).map_err(RuntimeError::InvalidSpec)
    })
    .await
    .map_err(|e| RuntimeError::io("user lookup", std::io::Error::other(e.to_string())))?
}

/// Percent-encodes a URI component (RFC 3986 unreserved characters stay).
pub(crate) fn pct(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `binary://` stdio URI for a logger.
pub fn binary_log_uri(path: &Path, args: &[(String, String)]) -> String {
    let mut uri = format!("binary://{}", pct(&path.to_string_lossy(), true));
    if !args.is_empty() {
        uri.push('?');
        uri.push_str(
            &args
                .iter()
                .map(|(k, v)| format!("{}={}", pct(k, false), pct(v, false)))
                .collect::<Vec<_>>()
                .join("&"),
        );
    }
    uri
}

struct Stdio {
    stdin: String,
    stdout: String,
    stderr: String,
}

fn open_log_file(p: &Path) -> Result<(), RuntimeError> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| RuntimeError::io(format!("create {}", parent.display()), e))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(p)
        .map_err(|e| RuntimeError::io(format!("create log file {}", p.display()), e))?;
    Ok(())
}

impl Runtime {
    fn task_fifo_dir(&self, id: &str) -> PathBuf {
        self.fifo_dir.join(id)
    }

    /// Creates and starts a container: lease, snapshot, container record, task, start.
    ///
    /// Labels are stored on the container so [`Runtime::list`] can find it again after an
    /// agent restart. On any failure the task, container record, snapshot and FIFOs created so
    /// far are removed again.
    pub async fn run(&self, spec: &ContainerSpec) -> Result<Started, RuntimeError> {
        if !valid_id(&spec.id) {
            return Err(RuntimeError::InvalidSpec(format!(
                "invalid container id {:?}",
                spec.id
            )));
        }
        if let Some(group) = spec.shim_of.as_deref().filter(|g| !valid_id(g)) {
            return Err(RuntimeError::InvalidSpec(format!(
                "invalid shim group (a container id) {group:?}"
            )));
        }
        if let Log::Binary { path, .. } = &spec.log {
            if !path.is_absolute() {
                return Err(RuntimeError::InvalidSpec(format!(
                    "logger path {} is not absolute",
                    path.display()
                )));
            }
        }
        let started = Instant::now();
        // The lease and the image lookup are independent round trips: overlap them. The lease
        // is dropped in the background (it has done its job once the container record holds the
        // snapshot; a lease left behind by a crash expires by itself).
        let (image, lease) =
            tokio::join!(self.resolve_image(&spec.image), self.create_lease("run"));
        let result = match (image, lease) {
            (Ok(image), Ok(lease)) => {
                let result = self.run_leased(spec, &image, &lease).await;
                let rt = self.clone();
                tokio::spawn(async move { rt.delete_lease(&lease).await });
                result
            }
            (Err(e), Ok(lease)) => {
                self.delete_lease(&lease).await;
                Err(e)
            }
            (Err(e), Err(_)) | (Ok(_), Err(e)) => Err(e),
        };
        match &result {
            Ok(s) => {
                tracing::info!(id = %spec.id, image = %spec.image, pid = s.pid, elapsed_ms = started.elapsed().as_secs_f64() * 1000.0, "container started")
            }
            Err(e) => {
                tracing::warn!(id = %spec.id, image = %spec.image, error = %e, "container failed to start")
            }
        }
        result
    }

    async fn run_leased(
        &self,
        spec: &ContainerSpec,
        image: &Resolved,
        lease: &str,
    ) -> Result<Started, RuntimeError> {
        let mut snaps = SnapshotsClient::new(self.channel.clone());
        let prepare = PrepareSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            key: spec.id.clone(),
            parent: image.chain_id.clone(),
            labels: Default::default(),
        };
        let mounts = match snaps.prepare(self.req_lease(prepare.clone(), lease)).await {
            Ok(r) => r.into_inner().mounts,
            Err(s) if s.code() == Code::AlreadyExists => {
                // A snapshot without a container is debris of a crashed run: reclaim it.
                if self.container_exists(&spec.id).await? {
                    return Err(RuntimeError::AlreadyExists(format!(
                        "container {}",
                        spec.id
                    )));
                }
                tracing::warn!(id = %spec.id, "removing a leftover snapshot");
                self.remove_snapshot(&spec.id).await?;
                snaps
                    .prepare(self.req_lease(prepare, lease))
                    .await
                    .map_err(|s| RuntimeError::grpc("Snapshots.Prepare", &spec.id, s))?
                    .into_inner()
                    .mounts
            }
            Err(s) => return Err(RuntimeError::grpc("Snapshots.Prepare", &spec.id, s)),
        };
        let result = self.create_and_start(spec, image, lease, mounts).await;
        if result.is_err() {
            let _ = self.remove_snapshot(&spec.id).await;
            let _ = std::fs::remove_dir_all(self.task_fifo_dir(&spec.id));
        }
        result
    }

    async fn create_and_start(
        &self,
        spec: &ContainerSpec,
        image: &Resolved,
        lease: &str,
        mounts: Vec<CtrMount>,
    ) -> Result<Started, RuntimeError> {
        let user_str = spec
            .user
            .clone()
            .or_else(|| image.config.user.clone())
            .unwrap_or_default();
        let user = resolve_user_in(&user_str, &mounts, &self.fifo_dir).await?;
        let oci = spec::build(spec, &image.config, &user, &self.namespace);
        let oci = serde_json::to_vec(&oci).map_err(|e| RuntimeError::InvalidSpec(e.to_string()))?;
        let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
        labels.insert("dray.image.digest".into(), image.manifest_digest.clone());
        let container = Container {
            id: spec.id.clone(),
            labels,
            image: spec.image.clone(),
            runtime: Some(CtrRuntime {
                name: RUNC_RUNTIME.into(),
                options: None,
            }),
            spec: Some(prost_types::Any {
                type_url: spec::SPEC_TYPE_URL.into(),
                value: oci,
            }),
            snapshotter: SNAPSHOTTER.into(),
            snapshot_key: spec.id.clone(),
            ..Default::default()
        };
        ContainersClient::new(self.channel.clone())
            .create(self.req_lease(
                CreateContainerRequest {
                    container: Some(container),
                },
                lease,
            ))
            .await
            .map_err(|s| {
                RuntimeError::grpc("Containers.Create", &format!("container {}", spec.id), s)
            })?;
        let result = self.create_task(spec, mounts).await;
        if result.is_err() {
            let _ = ContainersClient::new(self.channel.clone())
                .delete(self.req(DeleteContainerRequest {
                    id: spec.id.clone(),
                }))
                .await;
        }
        result
    }

    async fn create_task(
        &self,
        spec: &ContainerSpec,
        rootfs: Vec<CtrMount>,
    ) -> Result<Started, RuntimeError> {
        let (stdio, io) = self.stdio_for(spec)?;
        let mut tasks = TasksClient::new(self.channel.clone());
        tasks
            .create(self.req(CreateTaskRequest {
                container_id: spec.id.clone(),
                rootfs,
                stdin: stdio.stdin,
                stdout: stdio.stdout,
                stderr: stdio.stderr,
                terminal: spec.tty,
                ..Default::default()
            }))
            .await
            .map_err(|s| RuntimeError::grpc("Tasks.Create", &format!("task {}", spec.id), s))?;
        match tasks
            .start(self.req(StartRequest {
                container_id: spec.id.clone(),
                exec_id: String::new(),
            }))
            .await
        {
            Ok(r) => Ok(Started {
                pid: r.into_inner().pid,
                io,
            }),
            Err(s) => {
                let _ = tasks
                    .delete(self.req(DeleteTaskRequest {
                        container_id: spec.id.clone(),
                    }))
                    .await;
                Err(RuntimeError::grpc(
                    "Tasks.Start",
                    &format!("task {}", spec.id),
                    s,
                ))
            }
        }
    }

    fn stdio_for(&self, spec: &ContainerSpec) -> Result<(Stdio, Option<ProcessIo>), RuntimeError> {
        let mut stdio = Stdio {
            stdin: String::new(),
            stdout: String::new(),
            stderr: String::new(),
        };
        let want_fifo_out = spec.log == Log::Fifo;
        let io = if want_fifo_out || spec.stdin {
            let dir = self.task_fifo_dir(&spec.id);
            let _ = std::fs::remove_dir_all(&dir);
            let (paths, io) = exec::open_fifos(
                &dir,
                "task",
                spec.stdin,
                want_fifo_out,
                want_fifo_out && !spec.tty,
            )?;
            stdio.stdin = paths.stdin;
            stdio.stdout = paths.stdout;
            stdio.stderr = paths.stderr;
            Some(io)
        } else {
            None
        };
        match &spec.log {
            Log::Null | Log::Fifo => {}
            Log::Files { stdout, stderr } => {
                open_log_file(stdout)?;
                stdio.stdout = stdout.to_string_lossy().into_owned();
                if !spec.tty {
                    open_log_file(stderr)?;
                    stdio.stderr = stderr.to_string_lossy().into_owned();
                }
            }
            Log::Binary { path, args } => {
                let uri = binary_log_uri(path, args);
                stdio.stdout = uri.clone();
                stdio.stderr = uri;
            }
        }
        Ok((stdio, io))
    }

    async fn container_exists(&self, id: &str) -> Result<bool, RuntimeError> {
        match ContainersClient::new(self.channel.clone())
            .get(self.req(GetContainerRequest { id: id.to_string() }))
            .await
        {
            Ok(_) => Ok(true),
            Err(s) if s.code() == Code::NotFound => Ok(false),
            Err(s) => Err(RuntimeError::grpc("Containers.Get", id, s)),
        }
    }

    async fn remove_snapshot(&self, key: &str) -> Result<(), RuntimeError> {
        match SnapshotsClient::new(self.channel.clone())
            .remove(self.req(RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: key.to_string(),
            }))
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(RuntimeError::grpc("Snapshots.Remove", key, s)),
        }
    }

    /// Sends `signal` to the container's init process (`all`: to every process in it).
    pub async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), RuntimeError> {
        self.kill_process(id, "", signal, all).await
    }

    pub(crate) async fn kill_process(
        &self,
        id: &str,
        exec_id: &str,
        signal: u32,
        all: bool,
    ) -> Result<(), RuntimeError> {
        TasksClient::new(self.channel.clone())
            .kill(self.req(KillRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                signal,
                all,
            }))
            .await
            .map_err(|s| RuntimeError::grpc("Tasks.Kill", &format!("task {id}"), s))?;
        Ok(())
    }

    /// The container's task, or None when it has none.
    pub async fn task(&self, id: &str) -> Result<Option<TaskInfo>, RuntimeError> {
        self.process_info(id, "").await
    }

    pub(crate) async fn process_info(
        &self,
        id: &str,
        exec_id: &str,
    ) -> Result<Option<TaskInfo>, RuntimeError> {
        match TasksClient::new(self.channel.clone())
            .get(self.req(GetRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            }))
            .await
        {
            Ok(r) => Ok(r.into_inner().process.as_ref().map(task_info)),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(RuntimeError::grpc("Tasks.Get", &format!("task {id}"), s)),
        }
    }

    /// Stops the task with SIGTERM: [`Runtime::stop_with_signal`] with `SIGTERM`.
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<u32, RuntimeError> {
        self.stop_with_signal(id, libc::SIGTERM as u32, grace).await
    }

    /// Sends `signal` to the init process, waits up to `grace`, then SIGKILLs every process of
    /// the container; returns the exit status (137 after SIGKILL). A task that has already
    /// exited just returns its status. Does not delete anything ([`Runtime::remove`] does).
    ///
    /// Note: PID 1 in a pid namespace ignores signals it installed no handler for, so a
    /// program without a SIGTERM handler always takes the full grace period.
    pub async fn stop_with_signal(
        &self,
        id: &str,
        signal: u32,
        grace: Duration,
    ) -> Result<u32, RuntimeError> {
        let info = self
            .task(id)
            .await?
            .ok_or_else(|| RuntimeError::NotFound(format!("task {id}")))?;
        if info.status == TaskStatus::Stopped {
            return Ok(info.exit_status.unwrap_or_default());
        }
        let wait = self.wait(id);
        tokio::pin!(wait);
        // The Wait RPC must be registered before the signal, or a fast exit could race it; give
        // it a moment by polling it once through select with the kill.
        let kill = async {
            tokio::task::yield_now().await;
            self.kill(id, signal, false).await
        };
        tokio::select! {
            biased;
            status = &mut wait => return status,
            r = kill => match r {
                Ok(()) | Err(RuntimeError::NotFound(_)) => {}
                Err(e) => return Err(e),
            },
        }
        if let Ok(status) = tokio::time::timeout(grace, &mut wait).await {
            return status;
        }
        tracing::info!(
            id,
            grace_ms = grace.as_millis() as u64,
            "grace period over, sending SIGKILL"
        );
        match self.kill(id, libc::SIGKILL as u32, true).await {
            Ok(()) | Err(RuntimeError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        tokio::time::timeout(Duration::from_secs(30), &mut wait)
            .await
            .map_err(|_| {
                RuntimeError::Timeout(format!("task {id} did not exit 30s after SIGKILL"))
            })?
    }

    /// Waits for the task to exit and returns its exit status.
    ///
    /// Pitfall handled here: containerd answers an *interrupted* `Tasks.Wait` (containerd or
    /// shim connection restarting) with exit status 255 (`UnknownExitStatus`) although the task
    /// may still be running (siderolabs/talos#13864). A 255 or a transport error is therefore
    /// re-checked with `Tasks.Get`: only a STOPPED task's status is returned; a live one is
    /// waited for again. Transport errors are retried for up to 60 s.
    pub async fn wait(&self, id: &str) -> Result<u32, RuntimeError> {
        self.wait_process(id, "").await
    }

    pub(crate) async fn wait_process(&self, id: &str, exec_id: &str) -> Result<u32, RuntimeError> {
        let mut failing_since: Option<Instant> = None;
        loop {
            let res = TasksClient::new(self.channel.clone())
                .wait(self.req(WaitRequest {
                    container_id: id.to_string(),
                    exec_id: exec_id.to_string(),
                }))
                .await;
            match res {
                Ok(r) => {
                    let status = r.into_inner().exit_status;
                    if status != 255 {
                        return Ok(status);
                    }
                    match self.process_info(id, exec_id).await {
                        Ok(Some(p)) if p.status == TaskStatus::Stopped => {
                            return Ok(p.exit_status.unwrap_or(status))
                        }
                        Ok(Some(p)) => {
                            tracing::warn!(id, exec_id, status = ?p.status, "Tasks.Wait returned 255 but the process is alive; waiting again");
                        }
                        Ok(None) => return Ok(status),
                        Err(e) => {
                            tracing::warn!(id, error = %e, "cannot re-check task after Wait returned 255")
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(s) if s.code() == Code::NotFound => {
                    return Err(RuntimeError::NotFound(format!("task {id} {exec_id}")));
                }
                Err(s)
                    if matches!(
                        s.code(),
                        Code::Unavailable
                            | Code::Cancelled
                            | Code::Unknown
                            | Code::Aborted
                            | Code::DeadlineExceeded
                            | Code::Internal
                    ) =>
                {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_secs(60) {
                        return Err(RuntimeError::grpc("Tasks.Wait", &format!("task {id}"), s));
                    }
                    tracing::warn!(id, code = ?s.code(), error = %s.message(), "Tasks.Wait interrupted; re-checking");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if let Ok(Some(p)) = self.process_info(id, exec_id).await {
                        if p.status == TaskStatus::Stopped {
                            return Ok(p.exit_status.unwrap_or(255));
                        }
                    }
                }
                Err(s) => return Err(RuntimeError::grpc("Tasks.Wait", &format!("task {id}"), s)),
            }
        }
    }

    /// Resizes the TTY of a task started with `tty: true`.
    pub async fn resize(&self, id: &str, width: u32, height: u32) -> Result<(), RuntimeError> {
        self.resize_process(id, "", width, height).await
    }

    pub(crate) async fn resize_process(
        &self,
        id: &str,
        exec_id: &str,
        width: u32,
        height: u32,
    ) -> Result<(), RuntimeError> {
        TasksClient::new(self.channel.clone())
            .resize_pty(self.req(ResizePtyRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                width,
                height,
            }))
            .await
            .map_err(|s| RuntimeError::grpc("Tasks.ResizePty", &format!("task {id}"), s))?;
        Ok(())
    }

    /// Closes the task's stdin (EOF for the process).
    pub async fn close_stdin(&self, id: &str) -> Result<(), RuntimeError> {
        self.close_stdin_process(id, "").await
    }

    pub(crate) async fn close_stdin_process(
        &self,
        id: &str,
        exec_id: &str,
    ) -> Result<(), RuntimeError> {
        TasksClient::new(self.channel.clone())
            .close_io(self.req(CloseIoRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                stdin: true,
            }))
            .await
            .map_err(|s| RuntimeError::grpc("Tasks.CloseIO", &format!("task {id}"), s))?;
        Ok(())
    }

    /// Deletes the task (SIGKILLing it first if it still runs), the container record and its
    /// snapshot, and the runtime's FIFOs for it. Idempotent: missing pieces are fine.
    pub async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let mut tasks = TasksClient::new(self.channel.clone());
        if let Some(info) = self.task(id).await? {
            if info.status != TaskStatus::Stopped {
                tracing::info!(id, status = ?info.status, "removing a live task: SIGKILL");
                match self.kill(id, libc::SIGKILL as u32, true).await {
                    Ok(()) | Err(RuntimeError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
                if info.status != TaskStatus::Created {
                    let _ = tokio::time::timeout(Duration::from_secs(10), self.wait(id)).await;
                }
            }
            match tasks
                .delete(self.req(DeleteTaskRequest {
                    container_id: id.to_string(),
                }))
                .await
            {
                Ok(_) => {}
                Err(s) if s.code() == Code::NotFound => {}
                Err(s) => return Err(RuntimeError::grpc("Tasks.Delete", &format!("task {id}"), s)),
            }
        }
        let mut containers = ContainersClient::new(self.channel.clone());
        let snapshot_key = match containers
            .get(self.req(GetContainerRequest { id: id.to_string() }))
            .await
        {
            Ok(r) => r
                .into_inner()
                .container
                .map(|c| c.snapshot_key)
                .filter(|k| !k.is_empty()),
            Err(s) if s.code() == Code::NotFound => None,
            Err(s) => return Err(RuntimeError::grpc("Containers.Get", id, s)),
        };
        match containers
            .delete(self.req(DeleteContainerRequest { id: id.to_string() }))
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == Code::NotFound => {}
            Err(s) => return Err(RuntimeError::grpc("Containers.Delete", id, s)),
        }
        self.remove_snapshot(snapshot_key.as_deref().unwrap_or(id))
            .await?;
        let _ = std::fs::remove_dir_all(self.task_fifo_dir(id));
        Ok(())
    }

    /// Containers of this namespace whose labels match all of `label_filter`, with their task
    /// state: what the agent re-adopts after a restart.
    pub async fn list(
        &self,
        label_filter: &[(&str, &str)],
    ) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let filters = if label_filter.is_empty() {
            vec![]
        } else {
            vec![label_filter
                .iter()
                .map(|(k, v)| format!("labels.{}=={}", quote(k), quote(v)))
                .collect::<Vec<_>>()
                .join(",")]
        };
        let containers = ContainersClient::new(self.channel.clone())
            .list(self.req(ListContainersRequest { filters }))
            .await
            .map_err(|s| RuntimeError::grpc("Containers.List", "containers", s))?
            .into_inner()
            .containers;
        let tasks = TasksClient::new(self.channel.clone())
            .list(self.req(ListTasksRequest {
                filter: String::new(),
            }))
            .await
            .map_err(|s| RuntimeError::grpc("Tasks.List", "tasks", s))?
            .into_inner()
            .tasks;
        // Tasks.List fills `id` (the task id = container id), not `container_id`.
        let by_id: HashMap<&str, &Process> = tasks
            .iter()
            .map(|t| {
                (
                    if t.container_id.is_empty() {
                        t.id.as_str()
                    } else {
                        t.container_id.as_str()
                    },
                    t,
                )
            })
            .collect();
        let mut out: Vec<ContainerInfo> = containers
            .iter()
            .map(|c| ContainerInfo {
                id: c.id.clone(),
                image: c.image.clone(),
                labels: c.labels.clone().into_iter().collect(),
                created: to_system_time(c.created_at.as_ref()),
                task: by_id.get(c.id.as_str()).map(|p| task_info(p)),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_uris() {
        assert!(valid_id("web-1.abc_2"));
        assert!(!valid_id("-x"));
        assert!(!valid_id("a/b"));
        assert_eq!(
            binary_log_uri(
                Path::new("/usr/bin/drayd"),
                &[("log".into(), "/var/log/a b".into())]
            ),
            "binary:///usr/bin/drayd?log=%2Fvar%2Flog%2Fa%20b"
        );
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
    }
}
