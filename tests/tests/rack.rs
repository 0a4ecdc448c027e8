//! The rack's identity: two agents on one containerd namespace.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dray_tests::{bin, busybox_archive, free_port, Rack};

/// The rack id drayd logged at start (`rack_id=<12 letters and digits>`).
fn logged_rack_id(log: &str) -> String {
    let at = log
        .find("rack_id=")
        .unwrap_or_else(|| panic!("no rack_id in the log:\n{log}"));
    log[at + "rack_id=".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect()
}

/// A second drayd (own data dir) on the containerd namespace of a running rack refuses to
/// start, in one line naming the namespace and the flag, instead of stopping the rack's
/// containers as orphans.
#[tokio::test]
async fn a_second_agent_on_the_namespace_of_another_rack_refuses_to_start() {
    let rack = Rack::start().await;
    let rack_id = logged_rack_id(&rack.log());
    assert_eq!(rack_id.len(), 12, "{rack_id:?}");

    // A container of the first rack, as its agent labels them (`dray.app`, `dray.rack`). It has
    // no `dray.process` or `dray.type`, so the first rack's own loops leave it alone.
    let rt = rack.containerd.runtime().await;
    let image = rt
        .import_archive(
            &busybox_archive(rack.dir.path()),
            Some("dray.local/rack-test:1"),
        )
        .await
        .expect("import busybox")
        .first()
        .map(|i| i.name.clone())
        .expect("an image");
    let mut spec = dray_runtime::ContainerSpec::new("web.rack-test", image);
    spec.args = vec!["sleep".into(), "600".into()];
    spec.labels.insert("dray.app".into(), "web".into());
    spec.labels.insert("dray.rack".into(), rack_id.clone());
    rt.run(&spec).await.expect("run the rack's container");

    let other = tempfile::tempdir().expect("a temp dir");
    let mut child = Command::new(bin("drayd"))
        .arg("--data-dir")
        .arg(other.path().join("data"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--containerd-socket")
        .arg(rack.containerd.socket())
        .arg("--containerd-namespace")
        .arg(rack.containerd.namespace())
        .env_remove("DRAY_TOKEN")
        .env_remove("DRAY_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("drayd starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for drayd") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the second drayd did not exit within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let out = child.wait_with_output().expect("drayd's stderr");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "{status}: {stderr}");
    let expected = format!(
        "drayd: containerd namespace {:?} holds the containers of another rack (id {rack_id}): give this agent its own namespace with --containerd-namespace NAME (or DRAY_CONTAINERD_NAMESPACE)",
        rack.containerd.namespace()
    );
    assert!(
        stderr.lines().any(|l| l == expected),
        "expected the line\n{expected}\nin\n{stderr}"
    );

    // The first rack did not notice: its container runs on.
    let task = rt
        .task("web.rack-test")
        .await
        .expect("task")
        .expect("running");
    assert_eq!(task.status, dray_runtime::TaskStatus::Running);
}
