//! RDS lifecycle against the real moto server mode (no SDK mocks), one private moto per test.
//!
//! moto makes every state final at once (`available` right after create), so the polling tests
//! put `dray_cloud::testing::SlowStandIn` in front of it, a small HTTP proxy that rewrites
//! `DBInstanceStatus` in the first N DescribeDBInstances answers: the "slower stand-in" for a
//! real RDS that takes minutes.

use std::time::{Duration, Instant};

use dray_cloud::testing::{rds_config, Moto, SlowStandIn};
use dray_cloud::{identifier, CloudError, DatabaseSpec, Rds};

fn spec(identifier: &str) -> DatabaseSpec {
    DatabaseSpec {
        identifier: identifier.to_string(),
        engine: "postgres".into(),
        engine_version: "16.3".into(),
        instance_class: "db.t3.micro".into(),
        storage_gb: 20,
        port: 5432,
        username: "app".into(),
        password: "correct-horse-battery".into(),
        database: "app".into(),
        encrypted: true,
        multi_az: false,
        backup_retention_days: 1,
        deletion_protection: false,
        tags: vec![
            ("dray:rack".into(), "test".into()),
            ("dray:app".into(), "shop".into()),
        ],
    }
}

/// The raw SDK against moto, to check what the crate did from the outside.
async fn sdk(moto: &Moto) -> aws_sdk_rds::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_rds::config::Region::new("us-east-1"))
        .endpoint_url(moto.endpoint())
        .credentials_provider(aws_sdk_rds::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    aws_sdk_rds::Client::new(&conf)
}

#[tokio::test]
async fn create_is_idempotent_describe_and_delete() {
    let moto = Moto::start();
    let rds = Rds::new(&moto.rds_config()).await;
    let id = identifier("test", "shop", "database");

    assert_eq!(rds.describe(&id).await.expect("describe missing"), None);

    let created = rds.ensure(&spec(&id)).await.expect("ensure creates");
    assert_eq!(created.identifier, id);
    assert!(created.is_available(), "moto is final at once: {created:?}");
    assert_eq!(created.engine_version.as_deref(), Some("16.3"));

    let again = rds.ensure(&spec(&id)).await.expect("second ensure");
    assert_eq!(again, created, "second ensure returns the same state");

    let raw = sdk(&moto).await;
    let all = raw
        .describe_db_instances()
        .send()
        .await
        .expect("list instances");
    assert_eq!(
        all.db_instances().len(),
        1,
        "exactly one instance after two ensures"
    );
    let inst = &all.db_instances()[0];
    assert_eq!(inst.storage_encrypted(), Some(true));
    assert_eq!(inst.allocated_storage(), Some(20));
    let tags: Vec<(&str, &str)> = inst
        .tag_list()
        .iter()
        .map(|t| (t.key().unwrap_or(""), t.value().unwrap_or("")))
        .collect();
    assert!(tags.contains(&("dray:app", "shop")), "{tags:?}");

    let described = rds
        .describe(&id)
        .await
        .expect("describe")
        .expect("instance exists");
    let (host, port) = described.endpoint.clone().expect("endpoint assigned");
    assert!(host.starts_with(&id), "{host}");
    assert_eq!(port, 5432);
    assert_eq!(described.status, "available");

    rds.delete(&id).await.expect("delete");
    assert_eq!(
        rds.describe(&id).await.expect("describe after delete"),
        None
    );
    rds.delete(&id).await.expect("delete again is Ok");
    rds.delete(&identifier("test", "shop", "never-created"))
        .await
        .expect("delete of a never-created instance is Ok");
}

#[tokio::test]
async fn errors_name_the_database_and_the_aws_code() {
    let moto = Moto::start();
    let rds = Rds::new(&moto.rds_config()).await;
    let id = identifier("test", "shop", "bad");

    let err = rds
        .wait_available(&id, Duration::from_millis(10), Duration::from_secs(5))
        .await
        .expect_err("waiting for a missing instance");
    assert!(
        matches!(&err, CloudError::NotFound { identifier } if *identifier == id),
        "{err:?}"
    );

    let mut bad = spec(&id);
    bad.engine = "no-such-engine".into();
    let err = rds.ensure(&bad).await.expect_err("unknown engine");
    let msg = err.to_string();
    assert!(msg.contains(&id), "{msg}");
    assert!(err.code().is_some(), "AWS error code expected: {err:?}");
    assert!(msg.contains(err.code().unwrap_or("?")), "{msg}");

    let err = rds
        .describe("not_valid")
        .await
        .expect_err("invalid identifier");
    assert!(
        matches!(err, CloudError::InvalidSpec { .. }),
        "rejected before AWS: {err:?}"
    );

    // Nothing listening: a transport error that still names the database.
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let dead = Rds::new(&rds_config(&format!("http://{unused}"))).await;
    let err = dead.describe(&id).await.expect_err("no server");
    assert!(matches!(err, CloudError::Transport { .. }), "{err:?}");
    assert!(err.to_string().contains(&id), "{err}");
}

#[tokio::test]
async fn wait_available_polls_until_available() {
    const N: usize = 4;
    let moto = Moto::start();
    let direct = Rds::new(&moto.rds_config()).await;
    let id = identifier("test", "shop", "slow");
    direct.ensure(&spec(&id)).await.expect("create");

    let proxy = SlowStandIn::start(&moto.endpoint(), N);
    let slow = Rds::new(&rds_config(&proxy.endpoint())).await;

    // ensure never waits: an existing, still-creating instance is reported as it is.
    let state = slow.ensure(&spec(&id)).await.expect("ensure through proxy");
    assert_eq!(state.status, "creating");
    assert!(!state.is_available() && !state.is_failed());
    assert_eq!((proxy.describes(), proxy.rewritten()), (1, 1));

    let interval = Duration::from_millis(50);
    let start = Instant::now();
    let ready = slow
        .wait_available(&id, interval, Duration::from_secs(20))
        .await
        .expect("becomes available");
    let elapsed = start.elapsed();
    assert!(ready.is_available(), "{ready:?}");
    assert!(ready.endpoint.is_some(), "{ready:?}");
    // N-1 more "creating" polls, then the "available" one.
    assert_eq!(proxy.rewritten(), N);
    assert_eq!(proxy.describes(), 1 + N, "polled exactly until available");
    let sleeps = u32::try_from(N - 1).expect("small");
    assert!(
        elapsed >= interval * sleeps,
        "returned after {elapsed:?}, before {sleeps} intervals"
    );
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[tokio::test]
async fn wait_available_times_out_naming_the_last_status() {
    let moto = Moto::start();
    let direct = Rds::new(&moto.rds_config()).await;
    let id = identifier("test", "shop", "stuck");
    direct.ensure(&spec(&id)).await.expect("create");

    let proxy = SlowStandIn::start(&moto.endpoint(), usize::MAX);
    let slow = Rds::new(&rds_config(&proxy.endpoint())).await;
    let timeout = Duration::from_millis(400);
    let start = Instant::now();
    let err = slow
        .wait_available(&id, Duration::from_millis(50), timeout)
        .await
        .expect_err("never available");
    let elapsed = start.elapsed();
    match &err {
        CloudError::Timeout {
            identifier,
            last_status,
            waited,
        } => {
            assert_eq!(identifier, &id);
            assert_eq!(last_status, "creating");
            assert!(*waited >= timeout, "{waited:?}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&id) && msg.contains("\"creating\""), "{msg}");
    assert!(
        elapsed >= timeout && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    assert!(proxy.describes() >= 5, "polled: {}", proxy.describes());
}

#[tokio::test]
async fn wait_available_stops_at_a_failed_status() {
    let moto = Moto::start();
    let direct = Rds::new(&moto.rds_config()).await;
    let id = identifier("test", "shop", "broken");
    direct.ensure(&spec(&id)).await.expect("create");

    let proxy =
        SlowStandIn::start_with_status(&moto.endpoint(), "incompatible-parameters", usize::MAX);
    let slow = Rds::new(&rds_config(&proxy.endpoint())).await;
    let err = slow
        .wait_available(&id, Duration::from_millis(50), Duration::from_secs(20))
        .await
        .expect_err("failed");
    assert!(
        matches!(&err, CloudError::Failed { identifier, status }
            if *identifier == id && status == "incompatible-parameters"),
        "{err:?}"
    );
    assert_eq!(proxy.describes(), 1, "gives up at the first failed status");
}

#[tokio::test]
async fn the_slower_stand_in_says_creating_from_the_create_on() {
    let moto = Moto::start();
    let standin = SlowStandIn::start(&moto.endpoint(), 2);
    let slow = Rds::new(&standin.rds_config()).await;
    let id = identifier("test", "shop", "fresh");

    // A create through it says `creating`, as real RDS does (moto says `available` at once).
    let created = slow
        .ensure(&spec(&id))
        .await
        .expect("create through the stand-in");
    assert_eq!(created.status, "creating", "{created:?}");
    // One describe (not found yet), nothing to rewrite.
    assert_eq!((standin.describes(), standin.rewritten()), (1, 0));

    let states = [
        slow.ensure(&spec(&id)).await.expect("ensure").status,
        slow.ensure(&spec(&id)).await.expect("ensure").status,
        slow.ensure(&spec(&id)).await.expect("ensure").status,
    ];
    assert_eq!(states, ["creating", "creating", "available"]);
    assert_eq!((standin.describes(), standin.rewritten()), (4, 2));
    // moto itself was final all along.
    let direct = Rds::new(&moto.rds_config()).await;
    let state = direct
        .describe(&id)
        .await
        .expect("describe")
        .expect("exists");
    assert_eq!(state.status, "available");
    let addr = standin.addr();
    drop(standin);
    // Stopped on drop: nothing listens on its port any more.
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "{addr} still answers"
    );
}
