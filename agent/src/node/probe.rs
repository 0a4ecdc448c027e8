//! Health probes: one implementation of HTTP, TCP and exec checks for every container of this
//! instance (service readiness and liveness, resource health), each process's probes on a task
//! of their own so a slow or hanging check never delays anything else.
//!
//! * HTTP: `GET <path>` on the port, healthy on 200-399 within the timeout.
//! * TCP: the port accepts a connection within the timeout.
//! * Exec: the command, run inside the container with the container's environment, exits 0
//!   within the timeout.
//!
//! A probe task sleeps the grace period, then checks every interval (the interval is counted
//! from the start of one check to the start of the next, so a 2 s interval is 2 s whatever the
//! check takes, unless a check takes longer than the interval) and sends each result to its
//! owner. This module only runs checks and reports; it must never decide what a result means.

use std::time::Duration;

use dray_runtime::{ExecSpec, Runtime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// What a probe checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// `GET path` on `host:port`.
    Http {
        host: String,
        port: u16,
        path: String,
    },
    /// A connection to `host:port`.
    Tcp { host: String, port: u16 },
    /// A command inside a container (with the container's env).
    Exec {
        container: String,
        args: Vec<String>,
    },
}

/// A probe: what, when and how often.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub check: Check,
    /// Wait this long after the start before the first check.
    pub grace: Duration,
    pub interval: Duration,
    pub timeout: Duration,
}

/// The longest one check may take, whatever a manifest or plan asks.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// Run one check: Ok, or Err with why it failed (for the log line).
pub async fn check(
    runtime: Option<&Runtime>,
    check: &Check,
    timeout: Duration,
) -> Result<(), String> {
    let timeout = timeout.clamp(Duration::from_millis(100), MAX_TIMEOUT);
    let run = async {
        match check {
            Check::Http { host, port, path } => http(host, *port, path).await,
            Check::Tcp { host, port } => tokio::net::TcpStream::connect((host.as_str(), *port))
                .await
                .map(|_| ())
                .map_err(|e| format!("cannot connect to {host}:{port}: {e}")),
            Check::Exec { container, args } => match runtime {
                Some(rt) => exec(rt, container, args).await,
                None => Err("exec checks need the container runtime".into()),
            },
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// Whether `http://127.0.0.1:<port><path>` answers 200-399 within `timeout`.
pub async fn http_ok(port: u16, path: &str, timeout: Duration) -> bool {
    check(
        None,
        &Check::Http {
            host: "127.0.0.1".into(),
            port,
            path: path.to_string(),
        },
        timeout,
    )
    .await
    .is_ok()
}

async fn http(host: &str, port: u16, path: &str) -> Result<(), String> {
    let mut s = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: dray-health\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut buf[got..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    let head = String::from_utf8_lossy(&buf[..got]);
    match head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
    {
        Some(c) if (200..400).contains(&c) => Ok(()),
        Some(c) => Err(format!("GET {path} answered {c}")),
        None if got == 0 => Err(format!(
            "GET {path}: the connection closed without an answer"
        )),
        None => Err(format!("GET {path}: not an HTTP answer")),
    }
}

async fn exec(runtime: &Runtime, container: &str, args: &[String]) -> Result<(), String> {
    let spec = ExecSpec {
        args: args.to_vec(),
        ..Default::default()
    };
    let mut handle = runtime
        .exec(container, &spec)
        .await
        .map_err(|e| format!("cannot run {}: {e}", shell_words::join(args)))?;
    for mut pipe in [handle.stdout.take(), handle.stderr.take()]
        .into_iter()
        .flatten()
    {
        tokio::spawn(async move {
            let mut sink = vec![0u8; 4096];
            while matches!(pipe.read(&mut sink).await, Ok(n) if n > 0) {}
        });
    }
    match handle.wait().await {
        Ok(0) => Ok(()),
        Ok(code) => Err(format!(
            "{} exited with code {code}",
            shell_words::join(args)
        )),
        Err(e) => Err(format!("{}: {e}", shell_words::join(args))),
    }
}

/// Which of a process's probes a result belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    Readiness,
    Liveness,
}

/// One result, sent to the probe's owner.
#[derive(Debug)]
pub struct ProbeResult {
    /// The container checked.
    pub container: String,
    /// Which start of the container it checked (results of an earlier start are stale).
    pub incarnation: u64,
    pub kind: ProbeKind,
    pub result: Result<(), String>,
}

/// Start a probe task; it runs until aborted (or until its owner's channel closes).
pub fn spawn(
    runtime: Option<Runtime>,
    probe: Probe,
    container: String,
    incarnation: u64,
    kind: ProbeKind,
    tx: mpsc::UnboundedSender<ProbeResult>,
) -> tokio::task::AbortHandle {
    tokio::spawn(async move {
        tokio::time::sleep(probe.grace).await;
        let mut tick = tokio::time::interval(probe.interval.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let result = check(runtime.as_ref(), &probe.check, probe.timeout).await;
            let sent = tx.send(ProbeResult {
                container: container.clone(),
                incarnation,
                kind,
                result,
            });
            if sent.is_err() {
                return;
            }
        }
    })
    .abort_handle()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn http_healthy_on_2xx_unhealthy_on_5xx_or_nothing() {
        for (reply, want) in [
            ("HTTP/1.1 200 OK\r\n\r\n", true),
            ("HTTP/1.1 503 No\r\n\r\n", false),
        ] {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = l.local_addr().unwrap().port();
            tokio::spawn(async move {
                let (mut s, _) = l.accept().await.unwrap();
                let mut b = [0u8; 256];
                let _ = s.read(&mut b).await;
                let _ = s.write_all(reply.as_bytes()).await;
            });
            assert_eq!(http_ok(port, "/", Duration::from_secs(2)).await, want);
        }
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        assert!(!http_ok(port, "/", Duration::from_secs(1)).await);
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out_with_a_reason() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
        let c = Check::Http {
            host: "127.0.0.1".into(),
            port,
            path: "/".into(),
        };
        let err = check(None, &c, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(err.contains("no answer within 300 ms"), "{err}");
        let tcp = Check::Tcp {
            host: "127.0.0.1".into(),
            port,
        };
        assert!(check(None, &tcp, Duration::from_secs(1)).await.is_ok());
    }

    #[tokio::test]
    async fn a_probe_task_honours_grace_and_interval() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move { while l.accept().await.is_ok() {} });
        let (tx, mut rx) = mpsc::unbounded_channel();
        let t0 = tokio::time::Instant::now();
        let h = spawn(
            None,
            Probe {
                check: Check::Tcp {
                    host: "127.0.0.1".into(),
                    port,
                },
                grace: Duration::from_millis(200),
                interval: Duration::from_millis(300),
                timeout: Duration::from_secs(1),
            },
            "c".into(),
            7,
            ProbeKind::Readiness,
            tx,
        );
        let mut at = Vec::new();
        for _ in 0..3 {
            let r = rx.recv().await.unwrap();
            assert_eq!(
                (r.incarnation, r.kind, r.result.is_ok()),
                (7, ProbeKind::Readiness, true)
            );
            at.push(t0.elapsed());
        }
        h.abort();
        assert!(at[0] >= Duration::from_millis(200), "{at:?}");
        for w in at.windows(2) {
            let gap = w[1] - w[0];
            assert!(
                gap >= Duration::from_millis(250) && gap < Duration::from_millis(600),
                "{at:?}"
            );
        }
    }
}
