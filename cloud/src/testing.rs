//! Test harness (feature `testing`): a private moto server (`moto[server]`, the AWS API
//! stand-in) per test, for this crate's tests and the workspace's end-to-end tests.
//!
//! Owns: starting `moto_server` on a free 127.0.0.1 port in its own temporary directory,
//! waiting until it answers HTTP, handing out an [`RdsConfig`] with fake static credentials
//! for it, and killing it (and deleting its directory) on drop.
//!
//! Must never: reach real AWS, touch the process environment (credentials go into the client
//! config only), or skip silently: a missing moto is a loud panic naming the install command.
//!
//! moto lives in a Python venv at `$DRAY_MOTO_VENV`, default `~/.cache/dray/moto-venv`; the
//! project's `scripts/lib.sh` function `ensure_moto` creates it (`scripts/test.sh` calls it).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::RdsConfig;

/// Environment variable naming the moto venv.
pub const MOTO_VENV_ENV: &str = "DRAY_MOTO_VENV";
/// Region the test configs use.
pub const REGION: &str = "us-east-1";
/// Access key id and secret of the test configs (moto accepts any).
pub const ACCESS_KEY: &str = "testing";

/// How long moto may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The moto venv: `$DRAY_MOTO_VENV`, else `$HOME/.cache/dray/moto-venv`.
pub fn moto_venv() -> PathBuf {
    if let Some(v) = std::env::var_os(MOTO_VENV_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(v);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".cache/dray/moto-venv")
}

/// The command that installs moto into `venv`.
pub fn install_hint(venv: &Path) -> String {
    let v = venv.display();
    format!(
        "`. scripts/lib.sh && ensure_moto` from the repository root, or by hand: \
         `python3 -m venv {v} && {v}/bin/pip install 'moto[server]'` \
         (Debian: apt-get install python3-venv; set {MOTO_VENV_ENV} to use another venv)"
    )
}

/// An [`RdsConfig`] for a moto (or a proxy in front of one) at `endpoint`.
pub fn rds_config(endpoint: &str) -> RdsConfig {
    RdsConfig {
        endpoint: Some(endpoint.to_string()),
        region: REGION.to_string(),
        credentials: Some((ACCESS_KEY.to_string(), ACCESS_KEY.to_string())),
    }
}

/// A running moto server, killed on drop.
pub struct Moto {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Moto {
    /// Start moto on a free loopback port and wait until it answers (blocks up to a minute,
    /// normally 1-2 s). Panics, with the install command, if moto is not installed.
    pub fn start() -> Moto {
        let venv = moto_venv();
        let (program, args): (PathBuf, Vec<&str>) = if venv.join("bin/moto_server").is_file() {
            (venv.join("bin/moto_server"), vec![])
        } else if venv.join("bin/python").is_file() {
            (venv.join("bin/python"), vec!["-m", "moto.server"])
        } else {
            panic!(
                "moto server mode is not installed (no {}/bin/moto_server): install it with {}",
                venv.display(),
                install_hint(&venv)
            );
        };
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let dir = tempfile::Builder::new()
                .prefix("dray-moto-")
                .tempdir()
                .unwrap_or_else(|e| panic!("cannot create a temp dir for moto: {e}"));
            let port = free_port();
            let log_path = dir.path().join("moto.log");
            let log = std::fs::File::create(&log_path)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
            let log_err = log
                .try_clone()
                .unwrap_or_else(|e| panic!("cannot clone the moto log handle: {e}"));
            let child = Command::new(&program)
                .args(&args)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_err)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot run {}: {e}; install moto with {}",
                        program.display(),
                        install_hint(&venv)
                    )
                });
            let mut moto = Moto { child, port, dir };
            match moto.wait_ready() {
                Ok(()) => return moto,
                Err(log) if log.contains("Address already in use") => last_log = log,
                Err(log) => {
                    let hint = if log.contains("No module named") {
                        format!("; reinstall moto with {}", install_hint(&venv))
                    } else {
                        String::new()
                    };
                    panic!(
                        "moto ({}) did not start on 127.0.0.1:{port}{hint}; its output:\n{log}",
                        program.display()
                    );
                }
            }
        }
        panic!("moto could not find a free port; its last output:\n{last_log}");
    }

    /// Poll until moto answers HTTP; `Err(log)` if it exits or does not answer in time.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("(exited with {status})\n{}", self.log()));
            }
            if answers_http(self.addr()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "(no answer after {START_TIMEOUT:?})\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The port moto listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// moto's socket address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// moto's endpoint URL (`http://127.0.0.1:<port>`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An [`RdsConfig`] pointing at this moto with fake static credentials.
    pub fn rds_config(&self) -> RdsConfig {
        rds_config(&self.endpoint())
    }

    /// What moto printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free loopback port: {e}"))
}

fn answers_http(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 5];
    s.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}
