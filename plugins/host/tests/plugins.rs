//! End-to-end tests of the plugin host with real components: the project's
//! plugins and deliberately bad ones (`tests/bad/`), built for
//! `wasm32-wasip2` by the tests themselves.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::wasm;
use dray_plugins::types::{
    Backend, BalancerConfig, Connection, DataOpKind, DesiredObject, Endpoint, KeyValue, Realized,
    ResourceSpec,
};
use dray_plugins::{
    CallError, EnsureOutcome, FileState, Limits, MemoryState, PluginError, PluginHost, PluginKind,
    PluginState, PluginStatus,
};

fn spec(type_name: &str, options: &[(&str, &str)]) -> ResourceSpec {
    ResourceSpec {
        app: "shop".into(),
        name: "database".into(),
        type_name: type_name.into(),
        options: options
            .iter()
            .map(|(k, v)| KeyValue {
                key: (*k).into(),
                value: (*v).into(),
            })
            .collect(),
        image: None,
        port: 15432,
    }
}

fn host_in(dir: &std::path::Path, limits: Limits, state: Arc<dyn PluginState>) -> PluginHost {
    PluginHost::new(dir.to_path_buf(), limits, state).unwrap()
}

fn test_limits() -> Limits {
    Limits {
        call_timeout: Duration::from_secs(1),
        ..Limits::default()
    }
}

fn env_of(plan: &dray_plugins::types::ResourcePlan, key: &str) -> String {
    let DesiredObject::Container(c) = &plan.objects[0] else {
        panic!("not a container")
    };
    c.env
        .iter()
        .find(|e| e.key == key)
        .unwrap_or_else(|| panic!("no {key}"))
        .value
        .clone()
}

#[tokio::test]
async fn install_list_upgrade_remove() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_in(dir.path(), Limits::default(), Arc::new(MemoryState::new()));
    for name in ["postgres", "redis", "balancer", "memcached"] {
        host.install(&wasm(name)).unwrap();
    }
    let list = host.list();
    let names: Vec<_> = list.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["balancer", "memcached", "postgres", "redis"]);
    let pg = host.info("postgres").unwrap();
    assert_eq!(pg.kind, PluginKind::Resource);
    assert_eq!(pg.types, ["postgres", "rds-postgres"]);
    assert_eq!(pg.contract, "dray:plugin@0.1.0");
    assert_eq!(pg.status, PluginStatus::Ok);
    assert_eq!(host.info("balancer").unwrap().kind, PluginKind::Balancer);

    let err = host.install(&wasm("postgres")).unwrap_err();
    assert!(matches!(err, PluginError::AlreadyInstalled { .. }));
    assert!(err.to_string().contains("use upgrade"), "{err}");

    let upgraded = host.upgrade(&wasm("postgres")).unwrap();
    assert_eq!(upgraded.name, "postgres");
    assert_eq!(
        host.upgrade_named("postgres", &wasm("postgres"))
            .unwrap()
            .name,
        "postgres"
    );
    let err = host.upgrade_named("redis", &wasm("postgres")).unwrap_err();
    assert!(matches!(err, PluginError::NameMismatch { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "this component is plugin postgres, not redis; upgrade postgres instead, or install it"
    );
    assert!(matches!(
        host.upgrade_named("nosuch", &wasm("postgres")),
        Err(PluginError::NotInstalled(n)) if n == "nosuch"
    ));
    assert!(
        matches!(host.upgrade(&wasm("chaos")), Err(PluginError::NotInstalled(n)) if n == "chaos")
    );
    assert_eq!(
        host.ensure_installed(&wasm("redis")).unwrap().1,
        EnsureOutcome::Unchanged
    );

    let err = host.remove_unless_used("postgres", |info| {
        assert!(info.types.contains(&"postgres".to_string()));
        vec!["shop".into(), "blog".into(), "shop".into()]
    });
    let err = err.unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin postgres is used by resources in apps: blog, shop; delete those resources first"
    );
    assert!(host.resource_plugin_for("postgres").is_ok());

    host.remove("memcached").unwrap();
    assert!(matches!(
        host.resource_plugin_for("memcached"),
        Err(PluginError::NoPluginForType(_))
    ));
    assert!(!dir.path().join("installed/memcached.wasm").exists());
    assert_eq!(host.list().len(), 3);
    // Takes effect at once: install it again and use it.
    host.install(&wasm("memcached")).unwrap();
    let plan = host
        .resource_plugin_for("memcached")
        .unwrap()
        .plan(spec("memcached", &[]), vec![])
        .await
        .unwrap();
    assert_eq!(plan.objects.len(), 1);
}

#[tokio::test]
async fn postgres_through_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(MemoryState::new());
    let host = host_in(dir.path(), Limits::default(), state.clone());
    host.install(&wasm("postgres")).unwrap();
    let pg = host.resource_plugin_for("postgres").unwrap();
    assert_eq!(pg.name(), "postgres");

    let s = spec("postgres", &[("version", "15"), ("storage", "10")]);
    assert!(pg.validate(s.clone()).await.unwrap().is_empty());
    let plan = pg.plan(s.clone(), vec![]).await.unwrap();
    let DesiredObject::Container(c) = &plan.objects[0] else {
        panic!()
    };
    assert_eq!(c.image, "postgres:15");
    assert_eq!(env_of(&plan, "PGPORT"), "15432");
    let pass = env_of(&plan, "POSTGRES_PASSWORD");
    assert_eq!(pass.len(), 32);
    assert!(pass.chars().all(|c| c.is_ascii_alphanumeric()));
    // Generated once, kept in plugin state.
    let again = pg.plan(s.clone(), vec![]).await.unwrap();
    assert_eq!(env_of(&again, "POSTGRES_PASSWORD"), pass);
    assert_eq!(
        state.dump("postgres").get("shop/database/password"),
        Some(&pass)
    );

    let realized = Realized {
        endpoints: vec![Endpoint {
            name: "postgres".into(),
            host: "10.1.2.3".into(),
            port: 15432,
        }],
    };
    let outputs = pg.outputs(s.clone(), realized.clone()).await.unwrap();
    let url = &outputs.iter().find(|o| o.key == "URL").unwrap().value;
    assert_eq!(
        url,
        &format!("postgres://app:{pass}@10.1.2.3:15432/app?sslmode=disable")
    );
    let export = pg
        .data_op(s.clone(), realized, DataOpKind::Export)
        .await
        .unwrap();
    assert_eq!(export.command[0], "pg_dump");

    // The plugin's own errors come back typed.
    let err = pg
        .plan(spec("postgres", &[("storage", "lots")]), vec![])
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Plugin { .. }), "{err}");
    assert!(err.to_string().contains("options.storage"), "{err}");

    let rds = pg
        .plan(
            spec(
                "rds-postgres",
                &[("class", "db.t3.micro"), ("version", "16")],
            ),
            vec![],
        )
        .await
        .unwrap();
    assert!(matches!(rds.objects[0], DesiredObject::CloudDatabase(_)));
}

#[tokio::test]
async fn redis_and_balancer_through_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_in(dir.path(), Limits::default(), Arc::new(MemoryState::new()));
    host.install(&wasm("redis")).unwrap();
    host.install(&wasm("balancer")).unwrap();
    let redis = host.resource_plugin_for("redis").unwrap();
    let plan = redis.plan(spec("redis", &[]), vec![]).await.unwrap();
    let DesiredObject::Container(c) = &plan.objects[0] else {
        panic!()
    };
    assert_eq!(c.image, "redis:7");
    assert_eq!(c.command[..3], ["redis-server", "--port", "15432"]);

    let balancer = host.balancer(None).unwrap();
    balancer
        .configure(BalancerConfig {
            app: "shop".into(),
            name: "tcp".into(),
            options: vec![],
        })
        .await
        .unwrap();
    let backend = |id: &str, healthy, open| Backend {
        id: id.into(),
        address: "127.0.0.1".into(),
        port: 1,
        healthy,
        weight: 1,
        open_connections: open,
    };
    let conn = Connection {
        app: "shop".into(),
        balancer: "tcp".into(),
        client_address: "10.0.0.1".into(),
        client_port: 40000,
        listener_port: 9000,
    };
    let picked = balancer
        .pick(
            conn.clone(),
            vec![
                backend("a", true, 3),
                backend("b", false, 0),
                backend("c", true, 1),
            ],
        )
        .await
        .unwrap();
    assert_eq!(picked, Some(2));
    assert_eq!(
        balancer
            .pick(conn, vec![backend("a", false, 0)])
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn second_host_loads_from_cache_without_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let state: Arc<dyn PluginState> = Arc::new(FileState::new(dir.path().join("state")).unwrap());
    {
        let host = host_in(dir.path(), Limits::default(), state.clone());
        host.install(&wasm("postgres")).unwrap();
        host.install(&wasm("balancer")).unwrap();
        assert_eq!(host.stats().compilations, 2);
    }
    let host = host_in(dir.path(), Limits::default(), state);
    let loaded = host.load_installed().unwrap();
    assert_eq!(loaded.len(), 2);
    assert!(
        loaded.iter().all(|p| p.status == PluginStatus::Ok),
        "{loaded:?}"
    );
    let stats = host.stats();
    assert_eq!(stats.compilations, 0, "loaded without compiling: {stats:?}");
    assert_eq!(stats.cache_loads, 2);
    let plan = host
        .resource_plugin_for("postgres")
        .unwrap()
        .plan(spec("postgres", &[]), vec![])
        .await
        .unwrap();
    assert_eq!(plan.objects.len(), 1);

    // A corrupted install is reported, the others still load.
    std::fs::write(dir.path().join("installed/balancer.wasm"), b"garbage").unwrap();
    let host = host_in(dir.path(), Limits::default(), Arc::new(MemoryState::new()));
    let loaded = host.load_installed().unwrap();
    let balancer = loaded.iter().find(|p| p.name == "balancer").unwrap();
    assert!(
        matches!(&balancer.status, PluginStatus::Failed(r) if r.contains("sha256")),
        "{balancer:?}"
    );
    assert_eq!(
        loaded.iter().find(|p| p.name == "postgres").unwrap().status,
        PluginStatus::Ok
    );
}

#[test]
fn refuses_what_is_not_a_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_in(dir.path(), Limits::default(), Arc::new(MemoryState::new()));
    let err = host.install(b"#!/bin/sh\necho not wasm\n").unwrap_err();
    assert!(matches!(err, PluginError::NotWasm), "{err}");
    let err = host.install(b"\0asm\x01\0\0\0").unwrap_err();
    assert!(matches!(err, PluginError::CoreModule), "{err}");
    let mut truncated = wasm("postgres");
    truncated.truncate(truncated.len() / 2);
    let err = host.install(&truncated).unwrap_err();
    assert!(matches!(err, PluginError::InvalidComponent(_)), "{err}");
    assert!(host.list().is_empty());
}

#[test]
fn refuses_another_contract_major_version() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_in(dir.path(), Limits::default(), Arc::new(MemoryState::new()));
    let err = host.install(&wasm("v1")).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, PluginError::ContractMismatch { .. }),
        "{text}"
    );
    assert!(text.contains("dray:plugin@1.0.0"), "{text}");
    assert!(text.contains("dray:plugin@0.1.x"), "{text}");
    assert!(host.list().is_empty());
}

#[tokio::test]
async fn a_trap_recycles_the_instance_and_state_survives() {
    let dir = tempfile::tempdir().unwrap();
    let state: Arc<dyn PluginState> = Arc::new(FileState::new(dir.path().join("state")).unwrap());
    let host = host_in(dir.path(), test_limits(), state.clone());
    host.install(&wasm("chaos")).unwrap();
    let chaos = host.resource_plugin_for("chaos").unwrap();
    let count = || chaos.plan(spec("chaos", &[("mode", "count")]), vec![]);
    assert_eq!(env_of(&count().await.unwrap(), "COUNT"), "1");
    assert_eq!(env_of(&count().await.unwrap(), "COUNT"), "2");

    let err = chaos
        .plan(spec("chaos", &[("mode", "trap")]), vec![])
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Trap { .. }), "{err}");
    assert!(err.to_string().contains("chaos: deliberate panic"), "{err}");
    let info = host.info("chaos").unwrap();
    assert!(
        matches!(&info.status, PluginStatus::Failed(r) if r.contains("deliberate panic")),
        "{info:?}"
    );
    assert_eq!(info.restarts, 1);

    // A fresh instance, the same state.
    assert_eq!(env_of(&count().await.unwrap(), "COUNT"), "3");
    assert_eq!(host.info("chaos").unwrap().status, PluginStatus::Ok);
    drop(host);
    // And across hosts (agent restarts).
    let host = host_in(dir.path(), test_limits(), state);
    host.load_installed().unwrap();
    let chaos = host.resource_plugin_for("chaos").unwrap();
    let plan = chaos
        .plan(spec("chaos", &[("mode", "count")]), vec![])
        .await
        .unwrap();
    assert_eq!(env_of(&plan, "COUNT"), "4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_is_stopped_and_others_keep_serving() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_in(dir.path(), test_limits(), Arc::new(MemoryState::new()));
    host.install(&wasm("chaos")).unwrap();
    host.install(&wasm("postgres")).unwrap();
    let chaos = host.resource_plugin_for("chaos").unwrap();
    let pg = host.resource_plugin_for("postgres").unwrap();

    let started = Instant::now();
    let looping =
        tokio::spawn(async move { chaos.plan(spec("chaos", &[("mode", "loop")]), vec![]).await });
    // While it spins, postgres answers promptly.
    let mut served = 0;
    while !looping.is_finished() {
        let t = Instant::now();
        pg.plan(spec("postgres", &[]), vec![]).await.unwrap();
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "postgres stalled: {:?}",
            t.elapsed()
        );
        served += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = looping.await.unwrap().unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, CallError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("deadline"), "{err}");
    assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
    assert!(
        elapsed <= Duration::from_secs(2),
        "stopped within deadline + 1 s: {elapsed:?}"
    );
    assert!(served >= 5, "postgres served {served} calls meanwhile");
    // The chaos plugin recovers.
    let chaos = host.resource_plugin_for("chaos").unwrap();
    chaos.plan(spec("chaos", &[]), vec![]).await.unwrap();
}

#[tokio::test]
async fn unbounded_allocation_is_stopped_by_the_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_in(dir.path(), test_limits(), Arc::new(MemoryState::new()));
    host.install(&wasm("chaos")).unwrap();
    let chaos = host.resource_plugin_for("chaos").unwrap();
    let started = Instant::now();
    let err = chaos
        .plan(spec("chaos", &[("mode", "alloc")]), vec![])
        .await
        .unwrap_err();
    assert!(
        matches!(err, CallError::OutOfMemory { limit, .. } if limit == 64 * 1024 * 1024),
        "{err}"
    );
    assert!(err.to_string().contains("memory limit"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    chaos.plan(spec("chaos", &[]), vec![]).await.unwrap();
}

#[tokio::test]
async fn a_malformed_plan_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_in(dir.path(), test_limits(), Arc::new(MemoryState::new()));
    host.install(&wasm("chaos")).unwrap();
    let chaos = host.resource_plugin_for("chaos").unwrap();
    let err = chaos
        .plan(spec("chaos", &[("mode", "malformed")]), vec![])
        .await
        .unwrap_err();
    assert!(
        matches!(err, CallError::Malformed { what: "plan", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("empty image"), "{err}");
    // Not a trap: the instance stays.
    assert_eq!(host.info("chaos").unwrap().restarts, 0);
}

#[tokio::test]
async fn secrets_are_random() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_in(dir.path(), test_limits(), Arc::new(MemoryState::new()));
    host.install(&wasm("chaos")).unwrap();
    let chaos = host.resource_plugin_for("chaos").unwrap();
    let a = env_of(
        &chaos
            .plan(spec("chaos", &[("mode", "secret")]), vec![])
            .await
            .unwrap(),
        "SECRET",
    );
    let b = env_of(
        &chaos
            .plan(spec("chaos", &[("mode", "secret")]), vec![])
            .await
            .unwrap(),
        "SECRET",
    );
    assert_eq!(a.len(), 32);
    assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_ne!(a, b);
}

#[tokio::test]
async fn fuel_limits_cpu_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        fuel: Some(50_000_000),
        ..test_limits()
    };
    let host = host_in(dir.path(), limits, Arc::new(MemoryState::new()));
    host.install(&wasm("chaos")).unwrap();
    let chaos = host.resource_plugin_for("chaos").unwrap();
    let err = chaos
        .plan(spec("chaos", &[("mode", "loop")]), vec![])
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::OutOfFuel { .. }), "{err}");
    chaos.plan(spec("chaos", &[]), vec![]).await.unwrap();
}
