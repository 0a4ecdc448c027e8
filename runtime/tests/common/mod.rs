//! Shared setup for the runtime's integration tests: a private containerd, a connected
//! runtime, the busybox test image imported. Must never talk to the system containerd.
#![allow(dead_code)]

use std::time::Duration;

use dray_runtime::testing::{busybox_image, TestContainerd, BUSYBOX_IMAGE};
use dray_runtime::{ContainerSpec, Runtime};
use tokio::io::AsyncReadExt;

pub struct Env {
    pub rt: Runtime,
    pub ctd: TestContainerd,
    pub tmp: tempfile::TempDir,
}

pub async fn setup() -> Env {
    let ctd = TestContainerd::start().await;
    let rt = ctd.runtime().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let archive = busybox_image(tmp.path());
    rt.import_archive(&archive, None)
        .await
        .expect("import busybox");
    Env { rt, ctd, tmp }
}

pub fn spec(id: &str, args: &[&str]) -> ContainerSpec {
    let mut s = ContainerSpec::new(id, BUSYBOX_IMAGE);
    s.args = args.iter().map(|a| a.to_string()).collect();
    s
}

pub async fn read_all(rx: Option<tokio::net::unix::pipe::Receiver>) -> String {
    let mut rx = rx.expect("pipe");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), rx.read_to_end(&mut buf))
        .await
        .expect("read timed out")
        .expect("read");
    String::from_utf8_lossy(&buf).into_owned()
}

/// Waits until `f` returns true (polling every 20 ms, up to 10 s).
pub async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
