//! The end-to-end test harness: a real `drayd` on a private data dir and loopback port, driven
//! through the real `dray` binary and the SDK client.
//!
//! The binaries come from the same cargo target dir as the test executable (build them first:
//! `cargo build --workspace --bins`), or from `DRAY_BIN_DIR`. A missing binary fails the test
//! loudly; nothing here is ever skipped silently.
//!
//! Every rack gets the bundled plugins (postgres, redis, balancer) through `--plugins-dir`, as an
//! installed rack does: they are built for `wasm32-wasip2` once per test binary
//! ([`plugin_wasm`]), into `<target>/wasm-build`, never into the source tree.

pub mod images;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where the built binaries are.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DRAY_BIN_DIR") {
        return PathBuf::from(d);
    }
    // target/<profile>/deps/<test-binary> -> target/<profile>
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let mut dir = exe
        .parent()
        .expect("test binary has a directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// The path of a built binary; panics with a clear message when it is missing.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (or set DRAY_BIN_DIR)",
        path.display()
    );
    path
}

/// The plugins built with the project and installed by default.
pub const BUNDLED_PLUGINS: &[&str] = &["postgres", "redis", "balancer"];

pub use dray_plugins::testing::plugin_wasm;

/// Fill `dir` with the bundled plugins, as `scripts/setup.sh` fills /usr/local/lib/dray/plugins.
pub fn bundled_plugins_dir(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("bundled plugins dir");
    for name in BUNDLED_PLUGINS {
        std::fs::copy(
            plugin_wasm(name),
            dir.join(format!("dray_plugin_{name}.wasm")),
        )
        .expect("copy a bundled plugin");
    }
    dir.to_path_buf()
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A running drayd on a temp data dir, with its own private containerd.
pub struct Rack {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub token: String,
    extra_args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
    /// The rack's private containerd (dropped after drayd is killed).
    pub containerd: dray_runtime::testing::TestContainerd,
}

impl Rack {
    /// Start a rack with a generated token, and wait until it answers.
    pub async fn start() -> Rack {
        Self::start_with(&[]).await
    }

    /// Start a rack with extra `drayd` flags.
    pub async fn start_with(extra: &[&str]) -> Rack {
        Self::start_with_env(extra, &[]).await
    }

    /// Start a rack with extra `drayd` flags and environment variables.
    pub async fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Rack {
        let dir = tempfile::tempdir().expect("a temp dir");
        let containerd = dray_runtime::testing::TestContainerd::start().await;
        // A private slice of host ports per rack, so racks in parallel tests never collide.
        let base = 30000 + (free_port() % 300) * 100;
        let mut extra_args: Vec<String> = vec![
            "--containerd-socket".into(),
            containerd.socket().display().to_string(),
            "--containerd-namespace".into(),
            containerd.namespace().to_string(),
            "--port-range".into(),
            format!("{base}-{}", base + 99),
        ];
        if !extra.contains(&"--plugins-dir") {
            let bundled = bundled_plugins_dir(&dir.path().join("bundled-plugins"));
            extra_args.push("--plugins-dir".into());
            extra_args.push(bundled.display().to_string());
        }
        extra_args.extend(extra.iter().map(|s| s.to_string()));
        let mut rack = Rack {
            dir,
            port: free_port(),
            token: String::new(),
            extra_args,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            containerd,
        };
        rack.spawn();
        rack.wait_ready().await;
        rack.token = std::fs::read_to_string(rack.data_dir().join("token"))
            .map(|t| t.trim().to_string())
            .unwrap_or_default();
        rack
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The CLI's settings dir for this rack's tests.
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("cli-config")
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Start the drayd process (after [`Rack::kill9`] or [`Rack::stop`]).
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("drayd.log"))
            .expect("drayd log file");
        let child = Command::new(bin("drayd"))
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(&self.extra_args)
            .env_remove("DRAY_TOKEN")
            .env_remove("DRAY_CONFIG")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("drayd starts");
        self.child = Some(child);
    }

    /// Wait until `GET /health` answers (at most 20 s).
    pub async fn wait_ready(&mut self) {
        let client = dray_sdk::Client::new(&self.url(), None).expect("client");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if client.health().await.is_ok() {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("drayd exited with {status}; log:\n{}", self.log());
                }
            }
            assert!(
                Instant::now() < deadline,
                "drayd did not answer within 20 s; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("drayd.log")).unwrap_or_default()
    }

    /// SIGKILL the agent and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL on Unix
            let _ = child.wait();
        }
    }

    /// SIGTERM the agent and wait for it to exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("drayd is running");
        // SAFETY: kill(2) with a pid we own; no memory is touched.
        unsafe {
            libc_kill(child.id() as i32, 15);
        }
        child.wait().expect("drayd exits")
    }

    /// An SDK client with the rack's token.
    pub fn client(&self) -> dray_sdk::Client {
        dray_sdk::Client::new(&self.url(), Some(self.token.clone())).expect("client")
    }

    /// Run `dray ARGS` against this rack, in `cwd` (default: the rack's temp dir), with no
    /// stdin.
    pub fn dray_in(&self, cwd: &Path, args: &[&str]) -> Output {
        self.dray_cmd(cwd, args)
            .stdin(Stdio::null())
            .output()
            .expect("dray runs")
    }

    /// Run `dray ARGS` in the rack's temp dir.
    pub fn dray(&self, args: &[&str]) -> Output {
        self.dray_in(self.dir.path(), args)
    }

    /// Run `dray ARGS` with `input` on stdin.
    pub fn dray_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .dray_cmd(self.dir.path(), args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dray runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("dray exits")
    }

    /// The `dray` command with this rack selected through the environment.
    /// `dray builds import-image ARCHIVE -m MANIFEST -a APP` with `manifest` written to a temp
    /// file; returns the new release's id.
    pub fn import_build(&self, app: &str, archive: &Path, manifest: &str) -> String {
        let mpath = self
            .dir
            .path()
            .join(format!("{app}-{}.yml", rand::random::<u32>()));
        std::fs::write(&mpath, manifest).expect("write the manifest");
        let out = stdout_ok(&self.dray(&[
            "builds",
            "import-image",
            &archive.display().to_string(),
            "-m",
            &mpath.display().to_string(),
            "-a",
            app,
        ]));
        assert!(out.contains("Build: B"), "{out}");
        out.lines()
            .find_map(|l| l.strip_prefix("Release: "))
            .expect("a release line")
            .to_string()
    }

    pub fn dray_cmd(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("dray"));
        cmd.args(args)
            .current_dir(cwd)
            .env("DRAY_HOST", self.url())
            .env("DRAY_TOKEN", &self.token)
            .env("DRAY_CONFIG", self.config_dir())
            .env_remove("DRAY_APP");
        cmd
    }
}

impl Drop for Rack {
    fn drop(&mut self) {
        self.kill9();
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// stdout of a command that must succeed.
pub fn stdout_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr of a command that must fail with exit code 1.
pub fn stderr_fail(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit code 1:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Build the test image (busybox from Debian's busybox-static, as an OCI archive) in `dir`.
pub fn busybox_archive(dir: &Path) -> PathBuf {
    dray_runtime::testing::busybox_image(dir)
}

/// Poll `check` every 100 ms until it returns `Some`, or panic with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
