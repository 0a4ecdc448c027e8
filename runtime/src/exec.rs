//! Exec into running containers, and the FIFO plumbing shared with attached tasks.
//!
//! Owns: creating the per-process FIFO directory, opening the read ends *before*
//! `Tasks.Create` / `Tasks.Exec` + `Tasks.Start` (the shim opens the write ends with a blocking
//! `open(O_WRONLY)`, so a missing reader hangs the call until its deadline), the process spec of
//! an exec (inherited from the container's spec: capabilities, seccomp-free process part, env),
//! TTY size and resize, and reaping the exec (`Wait` + `DeleteProcess`).
//!
//! Must never: be used for long-running service output (FIFO output blocks when the reader is
//! gone and is lost across agent restarts; services log through `binary://` or files).

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    DeleteProcessRequest, ExecProcessRequest, GetContainerRequest, StartRequest,
};
use containerd_client::tonic::Code;
use tokio::net::unix::pipe;

use crate::container::{read_user_db, TaskStatus};
use crate::spec::{self, User};
use crate::{Runtime, RuntimeError};

/// stdio of an attached process: write to `stdin`, read `stdout` / `stderr` (a TTY merges
/// both into `stdout`). Reads return EOF once the process and the shim closed their ends.
#[derive(Debug, Default)]
pub struct ProcessIo {
    /// The process's stdin (drop it, or call `close_stdin`, for EOF).
    pub stdin: Option<pipe::Sender>,
    /// The process's stdout (or the TTY).
    pub stdout: Option<pipe::Receiver>,
    /// The process's stderr (None with a TTY).
    pub stderr: Option<pipe::Receiver>,
}

pub(crate) struct FifoPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
}

fn mkfifo(path: &Path) -> Result<(), RuntimeError> {
    let c = std::ffi::CString::new(path.to_string_lossy().as_bytes()).map_err(|e| {
        RuntimeError::io(
            "fifo path",
            std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        )
    })?;
    // SAFETY: valid NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(RuntimeError::io(
            format!("mkfifo {}", path.display()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Creates FIFOs `<dir>/<prefix>-{stdin,stdout,stderr}` and opens our ends: the read ends of
/// stdout/stderr (non-blocking, before the shim opens its write ends) and stdin read-write (so
/// opening never blocks and the shim sees EOF when we drop it).
pub(crate) fn open_fifos(
    dir: &Path,
    prefix: &str,
    stdin: bool,
    stdout: bool,
    stderr: bool,
) -> Result<(FifoPaths, ProcessIo), RuntimeError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| RuntimeError::io(format!("create {}", dir.display()), e))?;
    let mut paths = FifoPaths {
        stdin: String::new(),
        stdout: String::new(),
        stderr: String::new(),
    };
    let mut io = ProcessIo::default();
    if stdin {
        let p = dir.join(format!("{prefix}-stdin"));
        mkfifo(&p)?;
        io.stdin = Some(
            pipe::OpenOptions::new()
                .read_write(true)
                .open_sender(&p)
                .map_err(|e| RuntimeError::io(format!("open {}", p.display()), e))?,
        );
        paths.stdin = p.to_string_lossy().into_owned();
    }
    for (want, name, slot, path) in [
        (stdout, "stdout", &mut io.stdout, &mut paths.stdout),
        (stderr, "stderr", &mut io.stderr, &mut paths.stderr),
    ] {
        if want {
            let p = dir.join(format!("{prefix}-{name}"));
            mkfifo(&p)?;
            *slot = Some(
                pipe::OpenOptions::new()
                    .open_receiver(&p)
                    .map_err(|e| RuntimeError::io(format!("open {}", p.display()), e))?,
            );
            *path = p.to_string_lossy().into_owned();
        }
    }
    Ok((paths, io))
}

/// A process to start inside a running container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecSpec {
    /// Command line (required).
    pub args: Vec<String>,
    /// Added to (and overriding) the container's environment.
    pub env: Vec<(String, String)>,
    /// Working directory (default: the container's).
    pub cwd: Option<String>,
    /// User (default: the container's). Names are looked up in the container's /etc/passwd.
    pub user: Option<String>,
    /// Allocate a TTY.
    pub tty: bool,
    /// Give the process a stdin.
    pub stdin: bool,
    /// Initial TTY size `(width, height)` in characters.
    pub size: Option<(u32, u32)>,
}

/// A started exec process. Read its output from the pub fields, then [`ExecHandle::wait`].
/// Dropping the handle without waiting SIGKILLs the process and reaps it in the background.
#[derive(Debug)]
pub struct ExecHandle {
    /// stdin (when asked for).
    pub stdin: Option<pipe::Sender>,
    /// stdout, or the TTY.
    pub stdout: Option<pipe::Receiver>,
    /// stderr (None with a TTY).
    pub stderr: Option<pipe::Receiver>,
    rt: Runtime,
    container_id: String,
    exec_id: String,
    pid: u32,
    dir: PathBuf,
    done: AtomicBool,
}

impl ExecHandle {
    /// containerd's exec id.
    pub fn exec_id(&self) -> &str {
        &self.exec_id
    }

    /// Host pid of the exec'd process.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Resizes the TTY (`ResizePty`).
    pub async fn resize(&self, width: u32, height: u32) -> Result<(), RuntimeError> {
        self.rt
            .resize_process(&self.container_id, &self.exec_id, width, height)
            .await
    }

    /// Sends a signal to the exec'd process.
    pub async fn kill(&self, signal: u32) -> Result<(), RuntimeError> {
        self.rt
            .kill_process(&self.container_id, &self.exec_id, signal, false)
            .await
    }

    /// Closes stdin: asks the shim to close the process's end (`CloseIO`). Take or drop
    /// [`ExecHandle::stdin`] first so our end is closed too.
    pub async fn close_stdin(&self) -> Result<(), RuntimeError> {
        self.rt
            .close_stdin_process(&self.container_id, &self.exec_id)
            .await
    }

    /// Waits for the process to exit, returns its exit status and reaps it
    /// (`DeleteProcess`, FIFOs removed). Same 255 handling as [`Runtime::wait`].
    pub async fn wait(&self) -> Result<u32, RuntimeError> {
        let status = self
            .rt
            .wait_process(&self.container_id, &self.exec_id)
            .await?;
        self.reap().await;
        Ok(status)
    }

    async fn reap(&self) {
        if self.done.swap(true, Ordering::SeqCst) {
            return;
        }
        reap(&self.rt, &self.container_id, &self.exec_id, &self.dir).await;
    }
}

async fn reap(rt: &Runtime, container_id: &str, exec_id: &str, dir: &Path) {
    match TasksClient::new(rt.channel.clone())
        .delete_process(rt.req(DeleteProcessRequest {
            container_id: container_id.to_string(),
            exec_id: exec_id.to_string(),
        }))
        .await
    {
        Ok(_) => {}
        Err(s) if s.code() == Code::NotFound => {}
        Err(s) => {
            tracing::warn!(container_id, exec_id, error = %s.message(), "DeleteProcess failed")
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

impl Drop for ExecHandle {
    fn drop(&mut self) {
        if self.done.swap(true, Ordering::SeqCst) {
            return;
        }
        let (rt, cid, eid, dir) = (
            self.rt.clone(),
            self.container_id.clone(),
            self.exec_id.clone(),
            self.dir.clone(),
        );
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = rt
                    .kill_process(&cid, &eid, libc::SIGKILL as u32, false)
                    .await;
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    rt.wait_process(&cid, &eid),
                )
                .await;
                reap(&rt, &cid, &eid, &dir).await;
            });
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Runtime {
    /// Starts a process in a running container, with stdio over FIFOs this runtime creates.
    ///
    /// The process inherits the container's process spec (capabilities, no_new_privileges,
    /// rlimits, env, cwd, user) with `spec`'s overrides.
    pub async fn exec(&self, id: &str, spec: &ExecSpec) -> Result<ExecHandle, RuntimeError> {
        if spec.args.is_empty() {
            return Err(RuntimeError::InvalidSpec("exec needs a command".into()));
        }
        let task = self
            .task(id)
            .await?
            .ok_or_else(|| RuntimeError::NotFound(format!("task {id}")))?;
        if task.status != TaskStatus::Running {
            return Err(RuntimeError::InvalidSpec(format!(
                "task {id} is {:?}, not running",
                task.status
            )));
        }
        let container = ContainersClient::new(self.channel.clone())
            .get(self.req(GetContainerRequest { id: id.to_string() }))
            .await
            .map_err(|s| RuntimeError::grpc("Containers.Get", id, s))?
            .into_inner()
            .container
            .ok_or_else(|| RuntimeError::NotFound(format!("container {id}")))?;
        let oci: serde_json::Value = container
            .spec
            .as_ref()
            .and_then(|a| serde_json::from_slice(&a.value).ok())
            .ok_or_else(|| {
                RuntimeError::InvalidSpec(format!("container {id} has no readable spec"))
            })?;
        let mut process = oci
            .get("process")
            .cloned()
            .unwrap_or_else(|| serde_json::json!({}));
        let base_env: Vec<(String, String)> = process
            .get("env")
            .and_then(|e| e.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str())
                    .map(|kv| match kv.split_once('=') {
                        Some((k, v)) => (k.to_string(), v.to_string()),
                        None => (kv.to_string(), String::new()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        process["args"] = serde_json::json!(spec.args);
        process["env"] = serde_json::json!(spec::merge_env(&base_env, &spec.env));
        process["terminal"] = serde_json::json!(spec.tty);
        if let Some(cwd) = &spec.cwd {
            process["cwd"] = serde_json::json!(cwd);
        }
        if let Some(user) = &spec.user {
            let u: User = match spec::numeric_user(user) {
                Some(u) => u,
                None => {
                    let root = PathBuf::from(format!("/proc/{}/root", task.pid));
                    let (passwd, group) = read_user_db(&root);
                    spec::resolve_user(user, &passwd, &group).map_err(RuntimeError::InvalidSpec)?
                }
            };
            process["user"] = u.to_json();
        }
        if let (true, Some((w, h))) = (spec.tty, spec.size) {
            process["consoleSize"] = serde_json::json!({"width": w, "height": h});
        }
        let exec_id = crate::unique("exec");
        let dir = self.fifo_dir.join(id).join(&exec_id);
        let (paths, io) = open_fifos(&dir, "exec", spec.stdin, true, !spec.tty)?;
        let value =
            serde_json::to_vec(&process).map_err(|e| RuntimeError::InvalidSpec(e.to_string()))?;
        let mut tasks = TasksClient::new(self.channel.clone());
        let started = async {
            tasks
                .exec(self.req(ExecProcessRequest {
                    container_id: id.to_string(),
                    stdin: paths.stdin.clone(),
                    stdout: paths.stdout.clone(),
                    stderr: paths.stderr.clone(),
                    terminal: spec.tty,
                    spec: Some(prost_types::Any {
                        type_url: spec::PROCESS_TYPE_URL.into(),
                        value,
                    }),
                    exec_id: exec_id.clone(),
                }))
                .await
                .map_err(|s| RuntimeError::grpc("Tasks.Exec", &format!("task {id}"), s))?;
            let pid = tasks
                .start(self.req(StartRequest {
                    container_id: id.to_string(),
                    exec_id: exec_id.clone(),
                }))
                .await
                .map_err(|s| RuntimeError::grpc("Tasks.Start", &format!("exec {exec_id}"), s))?
                .into_inner()
                .pid;
            Ok::<u32, RuntimeError>(pid)
        }
        .await;
        let pid = match started {
            Ok(pid) => pid,
            Err(e) => {
                reap(self, id, &exec_id, &dir).await;
                return Err(e);
            }
        };
        tracing::debug!(id, exec_id, pid, tty = spec.tty, "exec started");
        Ok(ExecHandle {
            stdin: io.stdin,
            stdout: io.stdout,
            stderr: io.stderr,
            rt: self.clone(),
            container_id: id.to_string(),
            exec_id,
            pid,
            dir,
            done: AtomicBool::new(false),
        })
    }
}
