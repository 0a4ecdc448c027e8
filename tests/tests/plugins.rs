//! WebAssembly plugins in a real drayd: the bundled ones at start, install/upgrade/remove of
//! the memcached example into the running agent, and bad plugins refused or stopped with a
//! clear reason while the agent keeps serving.

use std::time::Duration;

use dray_tests::{busybox_archive, plugin_wasm, stderr_fail, stdout_ok, Rack};

/// `dray plugins` as (name, status) pairs.
async fn statuses(rack: &Rack) -> Vec<(String, String)> {
    rack.client()
        .plugins()
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.name.clone(), p.status_line()))
        .collect()
}

async fn apps_still_answer(rack: &Rack) {
    tokio::time::timeout(Duration::from_secs(5), rack.client().apps())
        .await
        .expect("GET /apps answers within 5 s")
        .expect("GET /apps succeeds");
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundled_plugins_are_installed_and_memcached_installs_upgrades_and_removes_live() {
    let rack = Rack::start().await;
    // The bundled plugins are there, serving, right after start.
    assert_eq!(
        stdout_ok(&rack.dray(&["plugins"])),
        "NAME      VERSION  KIND      TYPES                  STATUS\n\
         balancer  0.1.0    balancer                         ok\n\
         postgres  0.1.0    resource  postgres,rds-postgres  ok\n\
         redis     0.1.0    resource  redis                  ok\n"
    );
    let log = rack.log();
    assert!(log.contains("bundled plugin installed"), "{log}");

    // Install the example into the running agent: listed at once, with its types.
    let memcached = plugin_wasm("memcached");
    let out = stdout_ok(&rack.dray(&["plugins", "install", memcached.to_str().unwrap()]));
    assert_eq!(
        out,
        format!(
            "Installing {}... OK\nPlugin: memcached 0.1.0\n",
            memcached.display()
        )
    );
    let p = rack.client().plugin("memcached").await.unwrap();
    assert_eq!(p.types, ["memcached"]);
    assert_eq!(p.kind, "resource");
    assert_eq!(p.status, "ok");
    assert_eq!(p.contract, "dray:plugin@0.1.0");
    assert_eq!(p.sha256.len(), 64);
    let info = stdout_ok(&rack.dray(&["plugins", "info", "memcached"]));
    assert!(
        info.starts_with(
            "Name     memcached\nVersion  0.1.0\nKind     resource\nTypes    memcached\nStatus   ok\n"
        ),
        "{info}"
    );
    apps_still_answer(&rack).await;

    // Installing it again says to upgrade.
    let err = stderr_fail(&rack.dray(&["plugins", "install", memcached.to_str().unwrap()]));
    assert!(
        err.contains("plugin memcached is already installed (version 0.1.0); use upgrade"),
        "{err}"
    );

    // Upgrade (same build: still a full replacement of the instance).
    let out = stdout_ok(&rack.dray(&["plugins", "upgrade", memcached.to_str().unwrap()]));
    assert_eq!(
        out,
        format!(
            "Upgrading {}... OK\nPlugin: memcached 0.1.0\n",
            memcached.display()
        )
    );
    // PUT /plugins/{name} refuses another plugin's component.
    let err = rack
        .client()
        .plugin_upgrade_named("redis", std::fs::read(&memcached).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(409));
    assert!(
        err.to_string()
            .contains("this component is plugin memcached, not redis"),
        "{err}"
    );
    let json = stdout_ok(&rack.dray(&["plugins", "--json"]));
    let list: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 4, "{json}");

    // Remove: gone at once.
    assert_eq!(
        stdout_ok(&rack.dray(&["plugins", "remove", "memcached"])),
        "Removing memcached... OK\n"
    );
    let err = rack.client().plugin("memcached").await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    let err = stderr_fail(&rack.dray(&["plugins", "remove", "memcached"]));
    assert!(err.contains("plugin memcached is not installed"), "{err}");
    assert_eq!(statuses(&rack).await.len(), 3);
    apps_still_answer(&rack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_plugins_are_refused_with_a_clear_reason() {
    let rack = Rack::start().await;

    // Not WebAssembly.
    let text = rack.dir.path().join("notes.wasm");
    std::fs::write(&text, "#!/bin/sh\necho hello\n").unwrap();
    let out = rack.dray(&["plugins", "install", text.to_str().unwrap()]);
    let err = stderr_fail(&out);
    assert!(
        err.contains("not a WebAssembly file (missing the \\0asm header)"),
        "{err}"
    );
    let err = rack
        .client()
        .plugin_install(std::fs::read(&text).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    apps_still_answer(&rack).await;

    // Built for contract 1.0.0: refused naming both versions.
    let v1 = plugin_wasm("v1");
    let err = stderr_fail(&rack.dray(&["plugins", "install", v1.to_str().unwrap()]));
    assert!(err.contains("dray:plugin@1.0.0"), "{err}");
    assert!(err.contains("dray:plugin@0.1.x"), "{err}");
    let err = rack
        .client()
        .plugin_install(std::fs::read(&v1).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(422));

    // A truncated component, an empty upload, a missing file.
    let mut truncated = std::fs::read(plugin_wasm("memcached")).unwrap();
    truncated.truncate(truncated.len() / 2);
    let err = rack.client().plugin_install(truncated).await.unwrap_err();
    assert_eq!(err.status(), Some(422));
    assert!(err.to_string().starts_with("invalid component:"), "{err}");
    let err = rack.client().plugin_install(Vec::new()).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.to_string().contains("request body is empty"), "{err}");
    let err = stderr_fail(&rack.dray(&["plugins", "install", "/nonexistent/x.wasm"]));
    assert!(err.contains("cannot read /nonexistent/x.wasm"), "{err}");

    // Upgrading what is not installed, a type another plugin serves.
    let chaos = plugin_wasm("chaos");
    let err = stderr_fail(&rack.dray(&["plugins", "upgrade", chaos.to_str().unwrap()]));
    assert!(err.contains("plugin chaos is not installed"), "{err}");

    // Nothing of that was installed; the agent serves everything else.
    assert_eq!(
        statuses(&rack).await,
        pairs(&[("balancer", "ok"), ("postgres", "ok"), ("redis", "ok")])
    );
    apps_still_answer(&rack).await;
    assert!(rack.client().system().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_is_refused_while_an_apps_release_uses_the_type() {
    let rack = Rack::start().await;
    for app in ["shop", "blog"] {
        stdout_ok(&rack.dray(&["apps", "create", app]));
    }
    // Newest (not promoted) releases with a postgres resource.
    let archive = busybox_archive(rack.dir.path());
    let manifest = rack.dir.path().join("convox.yml");
    std::fs::write(
        &manifest,
        "resources:\n  db:\n    type: postgres\nservices:\n  web:\n    command: sleep 1000\n    resources: [db]\n",
    )
    .unwrap();
    for app in ["shop", "blog"] {
        let out = stdout_ok(&rack.dray(&[
            "builds",
            "import-image",
            archive.to_str().unwrap(),
            "-m",
            manifest.to_str().unwrap(),
            "-a",
            app,
        ]));
        assert!(out.contains("Release: R"), "{out}");
    }
    let err = stderr_fail(&rack.dray(&["plugins", "remove", "postgres"]));
    assert!(
        err.contains(
            "plugin postgres is used by resources in apps: blog, shop; delete those resources first"
        ),
        "{err}"
    );
    let err = rack.client().plugin_remove("postgres").await.unwrap_err();
    assert_eq!(err.status(), Some(409));
    assert_eq!(rack.client().plugin("postgres").await.unwrap().status, "ok");
    // redis is used by no one: removed at once.
    assert_eq!(
        stdout_ok(&rack.dray(&["plugins", "remove", "redis"])),
        "Removing redis... OK\n"
    );
    assert_eq!(
        statuses(&rack).await,
        pairs(&[("balancer", "ok"), ("postgres", "ok")])
    );
    apps_still_answer(&rack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bundled_files_are_skipped_and_a_broken_install_is_listed_failed() {
    // A bundled directory with the good plugins, a text file and a contract-1.0 component.
    let dir = tempfile::tempdir().unwrap();
    let bundled = dray_tests::bundled_plugins_dir(&dir.path().join("bundled"));
    std::fs::write(bundled.join("broken.wasm"), "not wasm at all").unwrap();
    std::fs::copy(plugin_wasm("v1"), bundled.join("future.wasm")).unwrap();
    let mut rack = Rack::start_with(&["--plugins-dir", bundled.to_str().unwrap()]).await;
    assert_eq!(
        statuses(&rack).await,
        pairs(&[("balancer", "ok"), ("postgres", "ok"), ("redis", "ok")])
    );
    let log = rack.log();
    assert!(
        log.contains("bundled plugin skipped") && log.contains("broken.wasm"),
        "{log}"
    );
    assert!(log.contains("not a WebAssembly file"), "{log}");
    assert!(
        log.contains("future.wasm") && log.contains("dray:plugin@1.0.0"),
        "{log}"
    );

    // Install memcached, then corrupt its installed file: after a restart it is listed as
    // failed with the reason, the others load and the agent serves.
    let memcached = plugin_wasm("memcached");
    stdout_ok(&rack.dray(&["plugins", "install", memcached.to_str().unwrap()]));
    let installed = rack.data_dir().join("plugins/installed/memcached.wasm");
    std::fs::write(&installed, b"\0asm garbage").unwrap();
    rack.kill9();
    rack.spawn();
    rack.wait_ready().await;
    let table = stdout_ok(&rack.dray(&["plugins"]));
    let line = table
        .lines()
        .find(|l| l.starts_with("memcached "))
        .unwrap_or_else(|| panic!("{table}"));
    assert_eq!(
        line["memcached".len()..].trim_start(),
        "failed: its .wasm does not match the recorded sha256",
        "{table}"
    );
    let p = rack.client().plugin("memcached").await.unwrap();
    assert_eq!((p.status.as_str(), p.kind.as_str()), ("failed", ""));
    let log = rack.log();
    assert!(log.contains("plugin failed to load"), "{log}");
    apps_still_answer(&rack).await;
    // Restarts keep the bundled ones unchanged (no recompile, no reinstall).
    assert!(log.contains("bundled plugin unchanged"), "{log}");
    // An upgrade repairs it.
    stdout_ok(&rack.dray(&["plugins", "upgrade", memcached.to_str().unwrap()]));
    assert_eq!(
        rack.client()
            .plugin("memcached")
            .await
            .unwrap()
            .status_line(),
        "ok"
    );
}

/// Another build of the same plugin: the component with a custom section appended.
fn rebuilt(wasm: &std::path::Path) -> Vec<u8> {
    let mut bytes = std::fs::read(wasm).unwrap();
    bytes.extend_from_slice(&[0x00, 0x05, 0x04, b'n', b'o', b't', b'e']);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_upgrade_of_a_bundled_plugin_survives_restarts() {
    let mut rack = Rack::start().await;
    let bundled = rack.client().plugin("redis").await.unwrap();
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(rack.data_dir().join("plugins/bundled.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["redis"], bundled.sha256.as_str());

    // The operator upgrades redis to their own build.
    let custom = rack.dir.path().join("redis-custom.wasm");
    std::fs::write(&custom, rebuilt(&plugin_wasm("redis"))).unwrap();
    stdout_ok(&rack.dray(&["plugins", "upgrade", custom.to_str().unwrap()]));
    let theirs = rack.client().plugin("redis").await.unwrap();
    assert_ne!(theirs.sha256, bundled.sha256);

    // A restart keeps their build (and says so), and the others unchanged.
    rack.kill9();
    rack.spawn();
    rack.wait_ready().await;
    assert_eq!(
        rack.client().plugin("redis").await.unwrap().sha256,
        theirs.sha256
    );
    let log = rack.log();
    assert!(
        log.contains(
            "bundled plugin not applied: the installed build was upgraded by the operator"
        ),
        "{log}"
    );
    assert!(log.contains("bundled plugin unchanged"), "{log}");

    // A removed bundled plugin comes back at the next start (installed by default).
    stdout_ok(&rack.dray(&["plugins", "remove", "balancer"]));
    rack.kill9();
    rack.spawn();
    rack.wait_ready().await;
    assert_eq!(rack.client().plugin("balancer").await.unwrap().status, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_grants_nothing_unless_asked_and_shows_what_it_granted() {
    let rack = Rack::start().await;
    let chaos = plugin_wasm("chaos");
    let chaos = chaos.to_str().unwrap();
    // A directory that is not there, a relative path, a bad flag value: refused, nothing installed.
    let err = stderr_fail(&rack.dray(&[
        "plugins",
        "install",
        chaos,
        "--allow-dir",
        "/nonexistent/dir:/data",
    ]));
    assert!(
        err.contains("cannot grant /nonexistent/dir: it is not a directory on the rack"),
        "{err}"
    );
    let err = stderr_fail(&rack.dray(&["plugins", "install", chaos, "--allow-dir", "data:/data"]));
    assert!(err.contains("paths must be absolute"), "{err}");
    assert!(rack.client().plugin("chaos").await.is_err());

    let dir = rack.dir.path().join("shared");
    std::fs::create_dir_all(&dir).unwrap();
    let grant = format!("{}:/data:ro", dir.display());
    stdout_ok(&rack.dray(&[
        "plugins",
        "install",
        chaos,
        "--allow-network",
        "--allow-dir",
        &grant,
    ]));
    let p = rack.client().plugin("chaos").await.unwrap();
    assert_eq!(
        p.grants,
        vec![
            "network".to_string(),
            format!("dir {}:/data (ro)", dir.display())
        ]
    );
    let info = stdout_ok(&rack.dray(&["plugins", "info", "chaos"]));
    assert!(info.contains("Grants   network, dir "), "{info}");
    // The bundled ones were installed with nothing.
    let pg = rack.client().plugin("postgres").await.unwrap();
    assert!(pg.grants.is_empty(), "{pg:?}");
    let info = stdout_ok(&rack.dray(&["plugins", "info", "postgres"]));
    assert!(info.contains("Grants   none"), "{info}");
}
