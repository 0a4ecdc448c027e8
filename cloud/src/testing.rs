//! Test harness (feature `testing`): a private moto server (`moto[server]`, the AWS API
//! stand-in) per test, for this crate's tests and the workspace's end-to-end tests, and
//! [`SlowStandIn`], a proxy in front of it for an RDS that takes its time.
//!
//! Owns: starting `moto_server` on a free 127.0.0.1 port in its own temporary directory,
//! waiting until it answers HTTP, handing out an [`RdsConfig`] with fake static credentials
//! for it, and killing it (and deleting its directory) on drop; the slower stand-in's loopback
//! HTTP proxy, on its own thread and runtime, stopped on drop.
//!
//! Must never: reach real AWS, touch the process environment (credentials go into the client
//! config only), or skip silently: a missing moto is a loud panic naming the install command.
//!
//! moto lives in a Python venv at `$DRAY_MOTO_VENV`, default `~/.cache/dray/moto-venv`; the
//! project's `scripts/lib.sh` function `ensure_moto` creates it (`scripts/test.sh` calls it).

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

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

/// The "slower stand-in" for a real RDS: an HTTP proxy in front of a moto (which makes every
/// state final at once) that answers `<DBInstanceStatus>{status}</DBInstanceStatus>` instead of
/// `available` in the first `rewrites` DescribeDBInstances answers that say `available`, as a
/// real RDS says `creating` for minutes. A CreateDBInstance answer through it always says
/// `creating`, as real RDS's does. Everything else passes through unchanged.
///
/// It runs on its own thread with its own runtime (usable from sync and async tests alike) and
/// stops on drop.
pub struct SlowStandIn {
    addr: SocketAddr,
    counts: Arc<Counts>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Counts {
    describes: AtomicUsize,
    rewritten: AtomicUsize,
}

/// What the proxy rewrites.
struct Rewrite {
    upstream: SocketAddr,
    status: String,
    rewrites: usize,
}

impl SlowStandIn {
    /// A stand-in in front of the moto at `moto_endpoint` (`http://127.0.0.1:<port>`) whose
    /// instances say `creating` in their first `creating_for` DescribeDBInstances answers
    /// (`usize::MAX`: never available).
    pub fn start(moto_endpoint: &str, creating_for: usize) -> SlowStandIn {
        Self::start_with_status(moto_endpoint, "creating", creating_for)
    }

    /// A stand-in whose DescribeDBInstances answers say `status` (e.g. a failed one,
    /// `incompatible-parameters`) instead of `available` the first `rewrites` times.
    pub fn start_with_status(moto_endpoint: &str, status: &str, rewrites: usize) -> SlowStandIn {
        let hostport = moto_endpoint
            .strip_prefix("http://")
            .unwrap_or(moto_endpoint)
            .trim_end_matches('/');
        let upstream = hostport
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .unwrap_or_else(|| panic!("not an http://HOST:PORT endpoint: {moto_endpoint:?}"));
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("cannot bind the slower stand-in: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("the slower stand-in has no address: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("cannot make the stand-in's listener non-blocking: {e}"));
        let counts = Arc::new(Counts::default());
        let rewrite = Arc::new(Rewrite {
            upstream,
            status: status.to_string(),
            rewrites,
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let c = counts.clone();
        let thread = std::thread::Builder::new()
            .name("dray-slow-stand-in".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap_or_else(|e| panic!("cannot build the stand-in's runtime: {e}"));
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .unwrap_or_else(|e| panic!("cannot register the stand-in's listener: {e}"));
                    tokio::spawn(serve(listener, rewrite, c));
                    // Sent or dropped: either way, stop (dropping the runtime ends every task).
                    let _ = stopped.await;
                });
            })
            .unwrap_or_else(|e| panic!("cannot start the stand-in's thread: {e}"));
        SlowStandIn {
            addr,
            counts,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The stand-in's socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The stand-in's endpoint URL (`http://127.0.0.1:<port>`), for `--aws-endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// An [`RdsConfig`] pointing at the stand-in with fake static credentials.
    pub fn rds_config(&self) -> RdsConfig {
        rds_config(&self.endpoint())
    }

    /// How many DescribeDBInstances requests it has answered (rewritten or not).
    pub fn describes(&self) -> usize {
        self.counts.describes.load(Ordering::SeqCst)
    }

    /// How many DescribeDBInstances answers it has rewritten.
    pub fn rewritten(&self) -> usize {
        self.counts.rewritten.load(Ordering::SeqCst)
    }
}

impl Drop for SlowStandIn {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(listener: tokio::net::TcpListener, rewrite: Arc<Rewrite>, counts: Arc<Counts>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of descriptors or the like: try again shortly, never spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let (rewrite, counts) = (rewrite.clone(), counts.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                forward(req, rewrite.clone(), counts.clone())
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn forward(
    req: Request<Incoming>,
    rewrite: Arc<Rewrite>,
    counts: Arc<Counts>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    match try_forward(req, &rewrite, &counts).await {
        Ok(resp) => Ok(resp),
        Err(e) => {
            let mut resp = Response::new(Full::new(Bytes::from(format!(
                "slower stand-in: cannot reach moto: {e}"
            ))));
            *resp.status_mut() = StatusCode::BAD_GATEWAY;
            Ok(resp)
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn try_forward(
    req: Request<Incoming>,
    rewrite: &Rewrite,
    counts: &Counts,
) -> Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let is_describe = contains(&body, b"Action=DescribeDBInstances");
    let is_create =
        contains(&body, b"Action=CreateDBInstance&") || body.ends_with(b"Action=CreateDBInstance");

    let stream = tokio::net::TcpStream::connect(rewrite.upstream).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let resp = sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await?;
    let (mut parts, body) = resp.into_parts();
    let mut body = body.collect().await?.to_bytes();

    const AVAILABLE: &str = "<DBInstanceStatus>available</DBInstanceStatus>";
    let text = String::from_utf8_lossy(&body);
    if is_describe {
        counts.describes.fetch_add(1, Ordering::SeqCst);
        if text.contains(AVAILABLE) && counts.rewritten.load(Ordering::SeqCst) < rewrite.rewrites {
            counts.rewritten.fetch_add(1, Ordering::SeqCst);
            let to = format!("<DBInstanceStatus>{}</DBInstanceStatus>", rewrite.status);
            body = Bytes::from(text.replace(AVAILABLE, &to));
        }
    } else if is_create && text.contains(AVAILABLE) {
        body =
            Bytes::from(text.replace(AVAILABLE, "<DBInstanceStatus>creating</DBInstanceStatus>"));
    }
    // hyper sets the length of the (possibly rewritten) body itself.
    parts.headers.remove(hyper::header::CONTENT_LENGTH);
    parts.headers.remove(hyper::header::TRANSFER_ENCODING);
    Ok(Response::from_parts(parts, Full::new(body)))
}
