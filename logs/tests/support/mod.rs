//! Shared test/bench support: spawning the `dray-logger` binary the way the containerd shim does
//! (argv key/value pairs, fd 3 = stdout pipe, fd 4 = stderr pipe, fd 5 = ready pipe, environment
//! only `CONTAINER_ID`/`CONTAINER_NAMESPACE`). It must never be used outside tests and benches.

#![allow(dead_code)]

use std::io::{self, Read};
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

/// The logger binary built by Cargo for this test or bench.
pub const LOGGER: &str = env!("CARGO_BIN_EXE_dray-logger");

/// A logger child with the parent's ends of its three pipes.
pub struct Logger {
    pub child: Child,
    pub stdout: Option<io::PipeWriter>,
    pub stderr: Option<io::PipeWriter>,
    pub ready: Option<io::PipeReader>,
}

pub fn spawn_logger(args: &[&str]) -> Logger {
    let (out_r, out_w) = io::pipe().expect("pipe");
    let (err_r, err_w) = io::pipe().expect("pipe");
    let (ready_r, ready_w) = io::pipe().expect("pipe");
    let sources: [RawFd; 3] = [out_r.as_raw_fd(), err_r.as_raw_fd(), ready_w.as_raw_fd()];
    let mut cmd = Command::new(LOGGER);
    cmd.args(args)
        .env_clear()
        .env("CONTAINER_ID", "test-container")
        .env("CONTAINER_NAMESPACE", "dray-test")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Move the sources out of the way first so that dup2 onto 3..5 cannot clobber one.
            let mut high = [0; 3];
            for (i, fd) in sources.iter().enumerate() {
                high[i] = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 100);
                if high[i] < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            for (i, fd) in high.iter().enumerate() {
                if libc::dup2(*fd, 3 + i as RawFd) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn logger");
    drop((out_r, err_r, ready_w));
    Logger {
        child,
        stdout: Some(out_w),
        stderr: Some(err_w),
        ready: Some(ready_r),
    }
}

impl Logger {
    /// Waits for the ready signal (one byte or EOF) and returns what was read.
    pub fn wait_ready(&mut self) -> Vec<u8> {
        let mut ready = self.ready.take().expect("ready pipe");
        let (tx, rx) = std_mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let r = ready.read_to_end(&mut buf).map(|_| buf);
            let _ = tx.send(r);
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("logger signalled ready in time")
            .expect("read ready pipe")
    }

    pub fn out(&mut self) -> &mut io::PipeWriter {
        self.stdout.as_mut().expect("stdout open")
    }

    pub fn err(&mut self) -> &mut io::PipeWriter {
        self.stderr.as_mut().expect("stderr open")
    }

    /// Closes both pipes and waits for the logger to exit.
    pub fn finish(mut self) -> ExitStatus {
        self.stdout = None;
        self.stderr = None;
        wait_exit(&mut self.child, Duration::from_secs(5))
    }
}

pub fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("logger did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
