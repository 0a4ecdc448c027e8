//! Resources end to end: a real drayd and containerd, the bundled postgres and redis plugins
//! and the memcached example installed live, resource images built from Debian's packages.
//! An app process reaches the provisioned database through the injected URL and reads back what
//! it wrote, across an agent restart and a re-deploy; export, import, plan, url, the override
//! by `<NAME>_URL`, and removal of a plugin in use.

use std::time::Duration;

use dray_tests::images::{memcached_image, postgres_image, redis_image};
use dray_tests::{busybox_archive, eventually, plugin_wasm, stderr_fail, stdout_ok, Rack};

fn images_import(rack: &Rack, archive: &std::path::Path) {
    stdout_ok(&rack.dray(&["images", "import", archive.to_str().unwrap()]));
}

/// `dray exec SERVICE sh -c SCRIPT -a APP`, stdout.
fn exec_sh(rack: &Rack, app: &str, service: &str, script: &str) -> String {
    stdout_ok(&rack.dray(&["exec", service, "-a", app, "sh", "-c", script]))
}

const SHOP: &str = r#"
resources:
  database:
    type: postgres
    image: postgres:dray-test
    options:
      storage: 1
services:
  worker:
    command: sh -c 'psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -c "CREATE TABLE IF NOT EXISTS notes (v text)" && echo ready && exec sleep 100000'
    resources:
      - database
    termination:
      grace: 1
"#;

async fn resource(rack: &Rack, app: &str, name: &str) -> dray_sdk::Resource {
    rack.client().resource(app, name).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_resource_is_provisioned_linked_and_keeps_data_across_restart_and_redeploy() {
    let mut rack = Rack::start().await;
    let pg = postgres_image(rack.dir.path());
    stdout_ok(&rack.dray(&["apps", "create", "shop"]));
    // The app's own image is the postgres test image too: it has psql.
    let release = rack.import_build("shop", &pg, SHOP);
    // A resource image not in the rack: the deploy fails at once, naming the image.
    let err = stderr_fail(&rack.dray(&["releases", "promote", &release, "-a", "shop"]));
    assert!(
        err.contains("resource database failed")
            && err.contains("image postgres:dray-test")
            && err.contains("dray images import"),
        "{err}"
    );
    images_import(&rack, &pg);
    stdout_ok(&rack.dray(&["env", "set", "A=1", "-a", "shop"]));
    let release = rack.client().releases("shop", Some(1)).await.unwrap()[0]
        .id
        .clone();

    // Dry-run before anything exists: the plan, nothing created.
    let plan = stdout_ok(&rack.dray(&["resources", "plan", "database", "-a", "shop"]));
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    assert_eq!(plan["type"], "postgres");
    let container = &plan["plan"]["objects"][0]["Container"];
    assert_eq!(container["image"], "postgres:dray-test", "{plan}");
    assert_eq!(container["entrypoint"][0], "docker-entrypoint.sh");
    assert!(
        rack.client()
            .resource("shop", "database")
            .await
            .unwrap()
            .status
            == "pending"
    );

    let out = stdout_ok(&rack.dray(&[
        "releases",
        "promote",
        &release,
        "-a",
        "shop",
        "--timeout",
        "180",
    ]));
    assert_eq!(out, format!("Promoting {release}... OK\n"));
    let r = resource(&rack, "shop", "database").await;
    assert_eq!(r.status, "running", "{r:?}");
    assert_eq!(r.plugin, "postgres");
    assert!(r.port > 0);
    let pass = r
        .outputs
        .iter()
        .find(|o| o.key == "PASS")
        .map(|o| o.value.clone())
        .unwrap();
    assert_eq!(pass.len(), 32);
    let url = format!(
        "postgres://app:{pass}@127.0.0.1:{}/app?sslmode=disable",
        r.port
    );
    assert_eq!(r.url, url);
    assert_eq!(
        stdout_ok(&rack.dray(&["resources", "url", "database", "-a", "shop"])),
        format!("{url}\n")
    );
    assert_eq!(
        stdout_ok(&rack.dray(&["resources", "-a", "shop"])),
        format!(
            "NAME      TYPE      URL{}  STATUS\ndatabase  postgres  {url}  running\n",
            " ".repeat(url.len() - 3)
        )
    );
    let info = stdout_ok(&rack.dray(&["resources", "info", "database", "-a", "shop"]));
    assert!(info.contains("worker:DATABASE_URL"), "{info}");
    assert!(info.contains("Status  running"), "{info}");

    // The worker got every variable and reaches the database with them.
    let env = exec_sh(
        &rack,
        "shop",
        "worker",
        "echo $DATABASE_USER $DATABASE_NAME $DATABASE_HOST $DATABASE_PORT $DATABASE_PASS",
    );
    assert_eq!(env, format!("app app 127.0.0.1 {} {pass}\n", r.port));
    let psql = |sql: &str| format!("psql \"$DATABASE_URL\" -v ON_ERROR_STOP=1 -Atc \"{sql}\"");
    exec_sh(
        &rack,
        "shop",
        "worker",
        &psql("INSERT INTO notes VALUES ('first')"),
    );
    assert_eq!(
        exec_sh(&rack, "shop", "worker", &psql("SELECT v FROM notes")),
        "first\n"
    );
    // The password is required on 127.0.0.1 (host networking exposes it to the host).
    let anon = rack.dray(&[
        "exec",
        "worker",
        "-a",
        "shop",
        "sh",
        "-c",
        &format!(
            "psql -h 127.0.0.1 -p {} -U app -w -Atc 'select 1' app",
            r.port
        ),
    ]);
    assert!(
        !anon.status.success(),
        "a connection without password was accepted"
    );

    // The agent restarts: the database keeps running (same container), the data is there.
    rack.kill9();
    rack.spawn();
    rack.wait_ready().await;
    assert_eq!(
        exec_sh(&rack, "shop", "worker", &psql("SELECT v FROM notes")),
        "first\n"
    );
    let after = eventually(
        "the resource after restart",
        Duration::from_secs(20),
        || async {
            let r = resource(&rack, "shop", "database").await;
            (r.status == "running").then_some(r)
        },
    )
    .await;
    assert_eq!(after.url, url, "same port and password after a restart");
    let log = rack.log();
    assert!(
        !log.contains("restarted container postgres"),
        "the database was restarted: {log}"
    );

    // A re-deploy (new release, new worker process): same database, same data.
    stdout_ok(&rack.dray(&["env", "set", "FOO=bar", "-a", "shop"]));
    let releases = rack.client().releases("shop", Some(1)).await.unwrap();
    stdout_ok(&rack.dray(&[
        "releases",
        "promote",
        &releases[0].id,
        "-a",
        "shop",
        "--timeout",
        "120",
    ]));
    assert_eq!(
        exec_sh(&rack, "shop", "worker", &psql("SELECT v FROM notes")),
        "first\n"
    );
    assert_eq!(resource(&rack, "shop", "database").await.url, url);

    // Export to a file, lose the table, import it back.
    let dump = rack.dir.path().join("dump.sql");
    let out = stdout_ok(&rack.dray(&[
        "resources",
        "export",
        "database",
        "-a",
        "shop",
        "-f",
        dump.to_str().unwrap(),
    ]));
    assert_eq!(out, "Exporting data from database... OK\n");
    let sql = std::fs::read_to_string(&dump).unwrap();
    assert!(sql.contains("CREATE TABLE public.notes"), "{sql}");
    assert!(sql.contains("first"), "{sql}");
    exec_sh(&rack, "shop", "worker", &psql("DROP TABLE notes"));
    let out = stdout_ok(&rack.dray(&[
        "resources",
        "import",
        "database",
        "-a",
        "shop",
        "-f",
        dump.to_str().unwrap(),
    ]));
    assert_eq!(out, "Importing data into database... OK\n");
    assert_eq!(
        exec_sh(&rack, "shop", "worker", &psql("SELECT v FROM notes")),
        "first\n"
    );
    // A bad dump fails with the remote error and a non-zero exit.
    let bad = rack.dir.path().join("bad.sql");
    std::fs::write(&bad, "THIS IS NOT SQL;\n").unwrap();
    let err = stderr_fail(&rack.dray(&[
        "resources",
        "import",
        "database",
        "-a",
        "shop",
        "-f",
        bad.to_str().unwrap(),
    ]));
    assert!(err.contains("syntax error"), "{err}");
    assert!(err.contains("import failed"), "{err}");

    // The console: psql attached (with a TTY on the rack's side).
    let out = rack.dray_stdin(
        &["resources", "console", "database", "-a", "shop"],
        "SELECT 40 + 2 AS answer;\n\\q\n",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("42"), "{text}");

    // With a terminal (script(1) gives dray one), psql runs interactively on a TTY.
    let mut script = std::process::Command::new("script")
        .args([
            "-qec",
            &format!(
                "{} resources console database -a shop",
                dray_tests::bin("dray").display()
            ),
            "/dev/null",
        ])
        .env("DRAY_HOST", rack.url())
        .env("DRAY_TOKEN", &rack.token)
        .env("DRAY_CONFIG", rack.config_dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux");
    // Type once psql is up (a terminal user would), then leave.
    tokio::time::sleep(Duration::from_secs(2)).await;
    {
        use std::io::Write;
        let mut stdin = script.stdin.take().unwrap();
        stdin.write_all(b"SELECT 6 * 7 AS answer;\n").unwrap();
        std::thread::sleep(Duration::from_millis(500));
        stdin.write_all(b"\\q\n").unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
    let script = tokio::task::spawn_blocking(move || script.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&script.stdout);
    assert!(
        text.contains("psql (") && text.contains("42"),
        "an interactive psql: {text:?} / {:?}",
        String::from_utf8_lossy(&script.stderr)
    );

    // The data is on a volume under the data dir.
    let volume = rack.data_dir().join("volumes/shop/database/data/pgdata");
    assert!(volume.join("PG_VERSION").exists(), "{}", volume.display());

    // The plugin is in use: remove is refused, naming the app.
    let err = stderr_fail(&rack.dray(&["plugins", "remove", "postgres"]));
    assert!(err.contains("shop"), "{err}");

    // Unknown resources and bad requests are clear.
    let err = stderr_fail(&rack.dray(&["resources", "info", "nope", "-a", "shop"]));
    assert!(err.contains("resource not found: nope"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_resource_override_and_a_plugin_installed_into_the_running_agent() {
    let rack = Rack::start().await;
    images_import(&rack, &redis_image(rack.dir.path()));
    images_import(&rack, &memcached_image(rack.dir.path()));
    let busybox = busybox_archive(rack.dir.path());
    stdout_ok(&rack.dray(&["apps", "create", "cache"]));

    // memcached is not served until its plugin is installed: promote says so, clearly.
    let manifest = r#"
resources:
  cache:
    type: redis
    image: redis:dray-test
  sessions:
    type: memcached
    image: memcached:dray-test
  legacy:
    type: postgres
services:
  app:
    command: sh -c 'exec sleep 100000'
    resources:
      - cache
      - sessions:SESSIONS
      - legacy
    termination:
      grace: 1
"#;
    stdout_ok(&rack.dray(&[
        "env",
        "set",
        "LEGACY_URL=postgres://u:p@db.example:5432/x",
        "-a",
        "cache",
    ]));
    let release = rack.import_build("cache", &busybox, manifest);
    let err = stderr_fail(&rack.dray(&["releases", "promote", &release, "-a", "cache"]));
    assert!(
        err.contains("resource sessions (memcached)") && err.contains("memcached"),
        "{err}"
    );

    // Install the example plugin into the running agent; promote works at once.
    let wasm = plugin_wasm("memcached");
    stdout_ok(&rack.dray(&["plugins", "install", wasm.to_str().unwrap()]));
    stdout_ok(&rack.dray(&[
        "releases",
        "promote",
        &release,
        "-a",
        "cache",
        "--timeout",
        "120",
    ]));

    let list = stdout_ok(&rack.dray(&["resources", "-a", "cache"]));
    let rows: Vec<Vec<&str>> = list
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 3, "{list}");
    assert_eq!(rows[0][0], "cache");
    assert_eq!(rows[0][3], "running", "{list}");
    assert_eq!(rows[1][0], "sessions");
    assert_eq!(rows[1][3], "running", "{list}");
    assert_eq!(rows[2][0], "legacy");
    assert_eq!(rows[2][2], "postgres://u:p@db.example:5432/x");
    assert_eq!(rows[2][3], "overridden");

    // The app reaches redis and memcached with what was injected.
    let env = exec_sh(
        &rack,
        "cache",
        "app",
        "echo $CACHE_URL; echo $SESSIONS; echo \"[$LEGACY_URL][$LEGACY_HOST]\"",
    );
    let lines: Vec<&str> = env.lines().collect();
    assert!(lines[0].starts_with("redis://:"), "{env}");
    assert!(lines[1].starts_with("memcached://127.0.0.1:"), "{env}");
    assert_eq!(lines[2], "[postgres://u:p@db.example:5432/x][]");
    let mc = lines[1].trim_start_matches("memcached://").to_string();
    let (host, port) = mc.split_once(':').unwrap();
    let got = exec_sh(
        &rack,
        "cache",
        "app",
        &format!("printf 'set k 0 0 5\\r\\nhello\\r\\nget k\\r\\nquit\\r\\n' | nc {host} {port}"),
    );
    assert!(got.contains("STORED") && got.contains("hello"), "{got}");
    let redis = resource(&rack, "cache", "cache").await;
    let (rhost, rport) = (
        redis
            .outputs
            .iter()
            .find(|o| o.key == "HOST")
            .unwrap()
            .value
            .clone(),
        redis
            .outputs
            .iter()
            .find(|o| o.key == "PORT")
            .unwrap()
            .value
            .clone(),
    );
    let pass = redis
        .outputs
        .iter()
        .find(|o| o.key == "PASS")
        .unwrap()
        .value
        .clone();
    let got = exec_sh(
        &rack,
        "cache",
        "app",
        &format!(
            "printf 'AUTH {pass}\\r\\nSET k v1\\r\\nGET k\\r\\nQUIT\\r\\n' | nc {rhost} {rport}"
        ),
    );
    assert!(got.contains("+OK") && got.contains("v1"), "{got}");

    // memcached has no data operations: a clear refusal before anything starts.
    let err = stderr_fail(&rack.dray(&["resources", "export", "sessions", "-a", "cache"]));
    assert!(err.contains("memcached does not support this"), "{err}");

    // A resource leaving the manifest goes; its container is removed.
    let manifest2 = r#"
resources:
  cache:
    type: redis
    image: redis:dray-test
services:
  app:
    command: sh -c 'exec sleep 100000'
    resources:
      - cache
    termination:
      grace: 1
"#;
    let release2 = rack.import_build("cache", &busybox, manifest2);
    stdout_ok(&rack.dray(&[
        "releases",
        "promote",
        &release2,
        "-a",
        "cache",
        "--timeout",
        "120",
    ]));
    let client = rack.client();
    eventually(
        "the sessions container to go",
        Duration::from_secs(30),
        || {
            let client = client.clone();
            async move {
                let c = client.resources("cache").await.ok()?;
                (c.len() == 1 && c[0].name == "cache").then_some(())
            }
        },
    )
    .await;
    eventually(
        "the sessions container to be removed",
        Duration::from_secs(30),
        || {
            let out = rack
                .containerd
                .ctr()
                .args(["containers", "ls", "-q"])
                .output()
                .unwrap();
            let ids = String::from_utf8_lossy(&out.stdout).to_string();
            async move { (!ids.contains("cache.resource.sessions.memcached")).then_some(()) }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_resource_plugin_fails_the_deploy_with_its_reason_and_the_agent_keeps_serving(
) {
    let rack = Rack::start().await;
    let chaos = plugin_wasm("chaos");
    stdout_ok(&rack.dray(&["plugins", "install", chaos.to_str().unwrap()]));
    stdout_ok(&rack.dray(&["apps", "create", "lab"]));
    let busybox = busybox_archive(rack.dir.path());
    let manifest = r#"
resources:
  thing:
    type: chaos
    options:
      mode: ${MODE}
services:
  app:
    command: sh -c 'exec sleep 100000'
    resources:
      - thing
    termination:
      grace: 1
"#;
    stdout_ok(&rack.dray(&["env", "set", "MODE=trap", "-a", "lab"]));
    rack.import_build("lab", &busybox, manifest);
    for (mode, reason) in [
        ("trap", "plugin chaos trapped"),
        (
            "loop",
            "plugin chaos was stopped: the call ran past its 5s deadline",
        ),
        ("alloc", "plugin chaos was stopped: memory limit"),
        ("malformed", "plugin chaos returned a malformed plan"),
    ] {
        stdout_ok(&rack.dray(&["env", "set", &format!("MODE={mode}"), "-a", "lab"]));
        let release = rack.client().releases("lab", Some(1)).await.unwrap()[0]
            .id
            .clone();
        let promote = rack
            .dray_cmd(
                rack.dir.path(),
                &[
                    "releases",
                    "promote",
                    &release,
                    "-a",
                    "lab",
                    "--timeout",
                    "60",
                ],
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // While the plugin misbehaves, the agent answers everything else at once.
        for _ in 0..5 {
            tokio::time::timeout(Duration::from_secs(1), rack.client().apps())
                .await
                .expect("the API answers within 1 s")
                .unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let out = tokio::task::spawn_blocking(move || promote.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "mode {mode}: the promote succeeded");
        assert!(err.contains(reason), "mode {mode}: {err}");
        assert!(
            rack.log().contains(reason),
            "mode {mode}: not in the agent log"
        );
        let app = rack.client().app("lab").await.unwrap();
        assert_eq!(app.status, "running", "mode {mode}");
        // A plugin stopped mid-call is listed as failed, with the reason, until it serves again.
        if mode != "malformed" {
            let list = stdout_ok(&rack.dray(&["plugins"]));
            let row = list.lines().find(|l| l.starts_with("chaos")).unwrap_or("");
            assert!(
                row.contains(&format!("failed: {reason}")),
                "mode {mode}: {list}"
            );
        }
    }
    // The plugin is still listed, with its instance recycled after the failures.
    let p = rack.client().plugin("chaos").await.unwrap();
    assert_eq!(p.status, "ok");
    assert!(p.restarts >= 3, "{p:?}");
}
