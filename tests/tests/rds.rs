//! `rds-postgres` resources end to end: a real drayd (built with `aws`) creates, links and
//! deletes an RDS instance through moto's server mode; and a cloud database that takes its time:
//! moto behind `SlowStandIn`, which says `creating` for the first describes as a real RDS does
//! for minutes. A deploy whose service links it waits (the resource `provisioning`, the app
//! `updating`, `dray releases promote` still running) and goes live once the instance is
//! available; an instance that never becomes available rolls the deploy back at its
//! `--timeout`, naming the resource, and the previous release keeps running.

use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use dray_cloud::testing::{Moto, SlowStandIn, ACCESS_KEY, REGION};
use dray_tests::{busybox_archive, eventually, stdout_ok, Rack};

/// A service linking an RDS postgres.
const WITH_LEDGER: &str = r#"
resources:
  ledger:
    type: rds-postgres
    options:
      class: db.t3.micro
      version: "16"
      storage: 20
services:
  app:
    command: sh -c 'exec sleep 100000'
    resources:
      - ledger
    termination:
      grace: 1
"#;

/// The same service without the database.
const PLAIN: &str = r#"
services:
  app:
    command: sh -c 'exec sleep 100000'
    termination:
      grace: 1
"#;

/// A rack whose AWS endpoint is `standin`.
async fn rack_behind(standin: &SlowStandIn) -> Rack {
    Rack::start_with_env(
        &[
            "--aws-endpoint",
            &standin.endpoint(),
            "--aws-region",
            REGION,
        ],
        &[
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", ACCESS_KEY),
        ],
    )
    .await
}

/// `dray releases promote RELEASE -a APP --timeout SECS`, started and not waited for.
fn spawn_promote(rack: &Rack, app: &str, release: &str, timeout_secs: u64) -> Child {
    rack.dray_cmd(
        rack.dir.path(),
        &[
            "releases",
            "promote",
            release,
            "-a",
            app,
            "--timeout",
            &timeout_secs.to_string(),
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("dray runs")
}

/// Wait (without blocking the runtime) for `child` to exit within `within`; its output.
async fn wait_exit(rack: &Rack, mut child: Child, within: Duration) -> Output {
    let deadline = Instant::now() + within;
    loop {
        if child.try_wait().expect("dray can be waited for").is_some() {
            // It has exited: its (small) output is all in the pipes.
            return child.wait_with_output().expect("dray's output");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("dray's output");
            panic!(
                "the promote did not exit within {within:?}:\nstdout: {}\nstderr: {}\ndrayd log:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                rack.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn output_text(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn host_of(r: &dray_sdk::Resource) -> String {
    r.outputs
        .iter()
        .find(|o| o.key == "HOST")
        .map(|o| o.value.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_waits_while_its_rds_instance_is_creating_then_goes_live() {
    const CREATING_FOR: usize = 6;
    let moto = Moto::start();
    let standin = SlowStandIn::start(&moto.endpoint(), CREATING_FOR);
    let rack = rack_behind(&standin).await;
    let busybox = busybox_archive(rack.dir.path());
    stdout_ok(&rack.dray(&["apps", "create", "billing"]));
    let release = rack.import_build("billing", &busybox, WITH_LEDGER);

    let started = Instant::now();
    let mut promote = spawn_promote(&rack, "billing", &release, 120);
    let client = rack.client();

    // While the instance says `creating`: the resource provisions, the deploy waits.
    let (r, app) = eventually(
        "the resource provisioning while the app updates",
        Duration::from_secs(20),
        || {
            let client = client.clone();
            async move {
                let r = client.resource("billing", "ledger").await.ok()?;
                let app = client.app("billing").await.ok()?;
                (r.status == "provisioning" && app.status == "updating").then_some((r, app))
            }
        },
    )
    .await;
    assert_eq!(host_of(&r), "", "no address while creating: {r:?}");
    assert!(app.release.is_empty(), "nothing active yet: {app:?}");
    assert!(
        promote.try_wait().expect("try_wait").is_none(),
        "the promote returned while the database was still creating"
    );
    // A moment later (a reconcile pass or two), it still waits.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = client.resource("billing", "ledger").await.unwrap();
    assert_eq!(r.status, "provisioning", "{r:?}");
    assert_eq!(client.app("billing").await.unwrap().status, "updating");
    assert!(
        promote.try_wait().expect("try_wait").is_none(),
        "the promote returned while the database was still creating"
    );
    // The instance becomes available: the deploy goes through.
    let out = wait_exit(&rack, promote, Duration::from_secs(60)).await;
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("Promoting {release}... OK\n")
    );
    let waited = started.elapsed();
    let r = client.resource("billing", "ledger").await.unwrap();
    assert_eq!(r.status, "running", "{r:?}");
    let host = host_of(&r);
    assert!(!host.is_empty(), "{r:?}");
    assert!(r.url.ends_with("/app?sslmode=require"), "{}", r.url);
    let app = client.app("billing").await.unwrap();
    assert_eq!(
        (app.status.as_str(), app.release.as_str()),
        ("running", release.as_str())
    );
    assert_eq!(standin.rewritten(), CREATING_FOR);
    assert!(
        standin.describes() >= CREATING_FOR,
        "the agent asked {} times",
        standin.describes()
    );
    // The agent polls about once a second: the creating answers took that long.
    assert!(
        waited >= Duration::from_secs(3),
        "went live after {waited:?}"
    );
    let log = rack.log();
    assert!(
        !log.contains("did not become healthy"),
        "the deploy timed out: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_whose_rds_instance_never_becomes_available_rolls_back_at_its_timeout() {
    let moto = Moto::start();
    let standin = SlowStandIn::start(&moto.endpoint(), usize::MAX);
    let rack = rack_behind(&standin).await;
    let busybox = busybox_archive(rack.dir.path());
    stdout_ok(&rack.dray(&["apps", "create", "billing"]));
    // A first release without the database goes live.
    let first = rack.import_build("billing", &busybox, PLAIN);
    stdout_ok(&rack.dray(&[
        "releases",
        "promote",
        &first,
        "-a",
        "billing",
        "--timeout",
        "60",
    ]));

    let second = rack.import_build("billing", &busybox, WITH_LEDGER);
    let started = Instant::now();
    let promote = spawn_promote(&rack, "billing", &second, 8);
    let out = wait_exit(&rack, promote, Duration::from_secs(40)).await;
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "release {second} did not become healthy within 8s"
        )) && err.contains("ledger"),
        "{err}"
    );
    assert!(
        elapsed >= Duration::from_secs(8),
        "failed after {elapsed:?}"
    );

    // Rolled back: the first release is still the active one, and it still runs.
    let client = rack.client();
    let app = client.app("billing").await.unwrap();
    assert_eq!(app.status, "running", "{app:?}");
    assert_eq!(app.release, first, "{app:?}");
    let procs = client.processes("billing", None).await.unwrap();
    assert!(
        procs.iter().any(|p| p.release == first),
        "the first release's process is gone: {procs:?}"
    );
    assert!(
        procs.iter().all(|p| p.release != second),
        "a process of the rolled-back release: {procs:?}"
    );
    assert!(standin.describes() >= 2, "polled: {}", standin.describes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rds_postgres_is_created_linked_and_deleted_through_the_aws_api() {
    let moto = Moto::start();
    let endpoint = moto.endpoint();
    let rack = Rack::start_with_env(
        &["--aws-endpoint", &endpoint, "--aws-region", REGION],
        &[
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", ACCESS_KEY),
        ],
    )
    .await;
    let busybox = busybox_archive(rack.dir.path());
    stdout_ok(&rack.dray(&["apps", "create", "billing"]));
    let release = rack.import_build("billing", &busybox, WITH_LEDGER);
    // The plan asks for a cloud database, not a container.
    let plan = stdout_ok(&rack.dray(&["resources", "plan", "ledger", "-a", "billing"]));
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let db = &plan["plan"]["objects"][0]["CloudDatabase"];
    assert_eq!(db["engine"], "postgres", "{plan}");
    assert_eq!(db["instance_class"], "db.t3.micro", "{plan}");
    stdout_ok(&rack.dray(&[
        "releases",
        "promote",
        &release,
        "-a",
        "billing",
        "--timeout",
        "120",
    ]));
    let r = rack.client().resource("billing", "ledger").await.unwrap();
    assert_eq!(r.status, "running", "{r:?}");
    assert_eq!(r.objects[0].kind, "cloud-database");
    let id = r.objects[0].id.clone();
    assert!(id.starts_with("dray-"), "{id}");
    let host = r
        .outputs
        .iter()
        .find(|o| o.key == "HOST")
        .unwrap()
        .value
        .clone();
    assert!(!host.is_empty());
    assert!(r.url.ends_with("/app?sslmode=require"), "{}", r.url);
    // The instance exists in the AWS API, and the app got its address.
    let rds = dray_cloud::Rds::new(&moto.rds_config()).await;
    let state = rds
        .describe(&id)
        .await
        .unwrap()
        .expect("the instance exists");
    assert_eq!(
        state.endpoint.as_ref().map(|e| e.0.clone()),
        Some(host.clone())
    );
    let env = stdout_ok(&rack.dray(&[
        "exec",
        "app",
        "-a",
        "billing",
        "sh",
        "-c",
        "echo $LEDGER_HOST $LEDGER_USER",
    ]));
    assert_eq!(env, format!("{host} app\n"));

    // The resource leaves the manifest: the instance is deleted.
    let release2 = rack.import_build("billing", &busybox, PLAIN);
    stdout_ok(&rack.dray(&[
        "releases",
        "promote",
        &release2,
        "-a",
        "billing",
        "--timeout",
        "120",
    ]));
    eventually(
        "the instance to be deleted",
        Duration::from_secs(30),
        || {
            let rds = rds.clone();
            let id = id.clone();
            async move {
                match rds.describe(&id).await {
                    Ok(None) => Some(()),
                    Ok(Some(s)) if s.status == "deleting" => Some(()),
                    _ => None,
                }
            }
        },
    )
    .await;
}
