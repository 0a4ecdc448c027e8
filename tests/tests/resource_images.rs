//! The resource images built from Debian's packages (`dray_tests::images`) keep the official
//! images' contracts the postgres, redis and memcached plugins plan with: run in a private
//! containerd with host networking, a free port, the plugins' env/entrypoint/command and a
//! bind-mounted data volume; data survives a stop and a new container on the same volume, which
//! does not initialize again; the plugins' exec commands (health, export, import) work inside.

use std::path::Path;
use std::time::{Duration, Instant};

use dray_runtime::testing::TestContainerd;
use dray_runtime::{ContainerSpec, ExecSpec, Log, Mount, Runtime};
use dray_tests::free_port;
use dray_tests::images::{
    memcached_image, postgres_image, redis_image, MEMCACHED_IMAGE, MEMCACHED_UID, POSTGRES_IMAGE,
    POSTGRES_UID, REDIS_IMAGE, REDIS_UID,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|a| a.to_string()).collect()
}

fn env(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Runs a command inside the container; returns (exit status, stdout, stderr).
async fn exec(
    rt: &Runtime,
    id: &str,
    args: &[&str],
    vars: &[(&str, &str)],
    stdin: Option<&str>,
) -> (u32, Vec<u8>, String) {
    let spec = ExecSpec {
        args: s(args),
        env: env(vars),
        stdin: stdin.is_some(),
        ..Default::default()
    };
    let mut h = rt.exec(id, &spec).await.expect("exec starts");
    if let Some(input) = stdin {
        let mut w = h.stdin.take().expect("exec stdin");
        w.write_all(input.as_bytes()).await.expect("write stdin");
        drop(w);
        let _ = h.close_stdin().await;
    }
    let mut out_pipe = h.stdout.take().expect("exec stdout");
    let mut err_pipe = h.stderr.take().expect("exec stderr");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (a, b) = tokio::join!(
        out_pipe.read_to_end(&mut out),
        err_pipe.read_to_end(&mut err)
    );
    a.expect("read stdout");
    b.expect("read stderr");
    let status = tokio::time::timeout(Duration::from_secs(30), h.wait())
        .await
        .expect("exec exits within 30 s")
        .expect("exec wait");
    (status, out, String::from_utf8_lossy(&err).into_owned())
}

/// A host command; Ok(stdout) when it succeeds, Err(stderr) otherwise.
async fn host(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new(cmd)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("{cmd} runs: {e}"));
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Polls `host(cmd, args)` until it prints `want` (at most 30 s), else panics with the log.
async fn wait_for(cmd: &str, args: &[&str], want: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = host(cmd, args).await;
        if got.as_deref() == Ok(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{cmd} {args:?} still gives {got:?} after 30 s; container log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The real uid of a host process.
fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .expect("Uid line")
}

fn owner(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .uid()
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_image_initializes_once_keeps_data_and_serves_the_plugin_commands() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let archive = postgres_image(dir.path());
    eprintln!("postgres image ready in {:?}", started.elapsed());
    let ctd = TestContainerd::start().await;
    let rt = ctd.runtime().await;
    let images = rt.import_archive(&archive, None).await.unwrap();
    assert!(
        images.iter().any(|i| i.name == POSTGRES_IMAGE),
        "{images:?}"
    );

    // What the postgres plugin plans (plugins/postgres: plan_container).
    let port = free_port().to_string();
    let volume = dir.path().join("volume");
    std::fs::create_dir(&volume).unwrap();
    let log = dir.path().join("postgres.log");
    let mut spec = ContainerSpec::new("postgres", POSTGRES_IMAGE);
    spec.entrypoint = Some(s(&["docker-entrypoint.sh"]));
    spec.args = s(&["postgres", "-p", &port]);
    spec.env = env(&[
        ("POSTGRES_USER", "app"),
        ("POSTGRES_PASSWORD", "secret"),
        ("POSTGRES_DB", "app"),
        ("PGDATA", "/var/lib/postgresql/data/pgdata"),
        ("PGPORT", &port),
    ]);
    spec.mounts = vec![Mount {
        source: volume.clone(),
        destination: "/var/lib/postgresql/data".into(),
        read_only: false,
    }];
    spec.log = Log::Files {
        stdout: log.clone(),
        stderr: log.clone(),
    };
    let url = format!("postgres://app:secret@127.0.0.1:{port}/app?sslmode=disable");
    let psql = |sql: &'static str| {
        let url = url.clone();
        async move {
            host(
                "psql",
                &["-X", "-qAt", "-v", "ON_ERROR_STOP=1", &url, "-c", sql],
            )
            .await
        }
    };

    let t = Instant::now();
    let first = rt.run(&spec).await.unwrap();
    wait_for(
        "psql",
        &["-X", "-qAt", &url, "-c", "select current_user"],
        "app",
        &log,
    )
    .await;
    eprintln!("postgres initialized and answering in {:?}", t.elapsed());
    // Runs as postgres (uid from the image's /etc/passwd), which owns the data.
    assert_eq!(uid_of(first.pid), POSTGRES_UID);
    assert_eq!(owner(&volume.join("pgdata/PG_VERSION")), POSTGRES_UID);
    // The user is the superuser, its database exists, and TCP needs the password.
    assert_eq!(
        psql("select rolsuper from pg_roles where rolname = 'app'")
            .await
            .unwrap(),
        "t"
    );
    let wrong = format!("postgres://app:wrong@127.0.0.1:{port}/app?sslmode=disable");
    let refused = host("psql", &["-X", "-qAt", &wrong, "-c", "select 1"]).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("password authentication failed")),
        "{refused:?}"
    );
    psql("create table items (id int primary key, name text); insert into items values (1, 'one')")
        .await
        .unwrap();
    assert_eq!(psql("select name from items").await.unwrap(), "one");

    // The plugin's health check, export and import, inside the container.
    let pgpass = [("PGPASSWORD", "secret")];
    let conn = ["-h", "127.0.0.1", "-p", port.as_str(), "-U", "app"];
    let health: Vec<&str> = ["pg_isready"]
        .into_iter()
        .chain(conn)
        .chain(["-d", "app"])
        .collect();
    let (status, out, err) = exec(&rt, "postgres", &health, &[], None).await;
    assert_eq!(
        status,
        0,
        "pg_isready: {}{err}",
        String::from_utf8_lossy(&out)
    );
    let export: Vec<&str> = ["pg_dump", "--no-acl", "--no-owner"]
        .into_iter()
        .chain(conn)
        .chain(["app"])
        .collect();
    let (status, dump, err) = exec(&rt, "postgres", &export, &pgpass, None).await;
    let dump = String::from_utf8_lossy(&dump).into_owned();
    assert_eq!(status, 0, "pg_dump: {err}");
    assert!(dump.contains("CREATE TABLE public.items"), "{dump}");
    assert!(dump.contains("1\tone"), "{dump}");
    let import: Vec<&str> = ["psql", "-v", "ON_ERROR_STOP=1", "--quiet"]
        .into_iter()
        .chain(conn)
        .chain(["-d", "app"])
        .collect();
    let (status, _, err) = exec(
        &rt,
        "postgres",
        &import,
        &pgpass,
        Some("insert into items values (2, 'two');\n"),
    )
    .await;
    assert_eq!(status, 0, "psql import: {err}");

    // Stop, remove, and start a new container on the same volume: no new initdb, data kept.
    let status = rt.stop("postgres", Duration::from_secs(20)).await.unwrap();
    assert_eq!(status, 0, "postgres stops cleanly on SIGTERM");
    rt.remove("postgres").await.unwrap();
    let pg_version_mtime = std::fs::metadata(volume.join("pgdata/PG_VERSION"))
        .unwrap()
        .modified()
        .unwrap();
    let t = Instant::now();
    let second = rt.run(&spec).await.unwrap();
    wait_for(
        "psql",
        &[
            "-X",
            "-qAt",
            &url,
            "-c",
            "select string_agg(name, ',' order by id) from items",
        ],
        "one,two",
        &log,
    )
    .await;
    eprintln!("postgres restarted in {:?}", t.elapsed());
    assert_eq!(uid_of(second.pid), POSTGRES_UID);
    let text = std::fs::read_to_string(&log).unwrap();
    // As the official image: every address (host networking: the instance's too).
    assert!(
        text.contains("listening on IPv4 address \"0.0.0.0\""),
        "{text}"
    );
    assert!(!text.contains("no usable system locales"), "{text}");
    assert_eq!(
        count(&text, "PostgreSQL init process complete"),
        1,
        "{text}"
    );
    assert_eq!(
        count(
            &text,
            "appears to contain a database; Skipping initialization"
        ),
        1,
        "{text}"
    );
    assert_eq!(
        std::fs::metadata(volume.join("pgdata/PG_VERSION"))
            .unwrap()
            .modified()
            .unwrap(),
        pg_version_mtime
    );
    rt.stop("postgres", Duration::from_secs(20)).await.unwrap();
    rt.remove("postgres").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_image_serves_the_plugin_arguments_and_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let archive = redis_image(dir.path());
    eprintln!("redis image ready in {:?}", started.elapsed());
    let ctd = TestContainerd::start().await;
    let rt = ctd.runtime().await;
    let images = rt.import_archive(&archive, None).await.unwrap();
    assert!(images.iter().any(|i| i.name == REDIS_IMAGE), "{images:?}");

    // What the redis plugin plans: the image's entrypoint, redis-server arguments only.
    let port = free_port().to_string();
    let volume = dir.path().join("volume");
    std::fs::create_dir(&volume).unwrap();
    let log = dir.path().join("redis.log");
    let mut spec = ContainerSpec::new("redis", REDIS_IMAGE);
    spec.args = s(&[
        "redis-server",
        "--port",
        &port,
        "--requirepass",
        "pw",
        "--appendonly",
        "yes",
        "--dir",
        "/data",
    ]);
    spec.env = env(&[("REDISCLI_AUTH", "pw")]);
    spec.mounts = vec![Mount {
        source: volume.clone(),
        destination: "/data".into(),
        read_only: false,
    }];
    spec.log = Log::Files {
        stdout: log.clone(),
        stderr: log.clone(),
    };
    let cli = |args: &[&str]| -> Vec<String> {
        s(&["-p", &port, "-a", "pw", "--no-auth-warning"])
            .into_iter()
            .chain(s(args))
            .collect()
    };

    let first = rt.run(&spec).await.unwrap();
    let ping = cli(&["ping"]);
    let ping: Vec<&str> = ping.iter().map(String::as_str).collect();
    wait_for("redis-cli", &ping, "PONG", &log).await;
    assert_eq!(uid_of(first.pid), REDIS_UID);
    // The password is required.
    let noauth = host("redis-cli", &["-p", &port, "get", "k"]).await;
    assert!(
        noauth.as_ref().is_ok_and(|o| o.contains("NOAUTH")),
        "{noauth:?}"
    );
    let set = cli(&["set", "k", "v"]);
    let set: Vec<&str> = set.iter().map(String::as_str).collect();
    assert_eq!(host("redis-cli", &set).await.unwrap(), "OK");

    // The plugin's health check and export, inside the container (REDISCLI_AUTH from the env).
    let (status, out, err) =
        exec(&rt, "redis", &["redis-cli", "-p", &port, "ping"], &[], None).await;
    assert_eq!(
        (status, String::from_utf8_lossy(&out).trim()),
        (0, "PONG"),
        "{err}"
    );
    let (status, rdb, err) = exec(
        &rt,
        "redis",
        &["redis-cli", "-p", &port, "--rdb", "-"],
        &[("REDISCLI_AUTH", "pw")],
        None,
    )
    .await;
    assert_eq!(status, 0, "{err}");
    assert!(
        rdb.starts_with(b"REDIS"),
        "an RDB file: {:?}",
        &rdb[..rdb.len().min(16)]
    );

    // Append-only persistence on the volume, owned by redis; kept across a new container.
    rt.stop("redis", Duration::from_secs(20)).await.unwrap();
    rt.remove("redis").await.unwrap();
    assert!(volume.join("appendonlydir").is_dir());
    assert_eq!(owner(&volume.join("appendonlydir")), REDIS_UID);
    rt.run(&spec).await.unwrap();
    let get = cli(&["get", "k"]);
    let get: Vec<&str> = get.iter().map(String::as_str).collect();
    wait_for("redis-cli", &get, "v", &log).await;
    rt.stop("redis", Duration::from_secs(20)).await.unwrap();
    rt.remove("redis").await.unwrap();
}

/// Connects to 127.0.0.1:`port` (the plugin's TCP health check), retrying for at most 30 s,
/// else panics with the log.
async fn connect(port: &str, log: &Path) -> tokio::net::TcpStream {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::net::TcpStream::connect(format!("127.0.0.1:{port}")).await {
            Ok(c) => return c,
            Err(e) => assert!(
                Instant::now() < deadline,
                "no connection to port {port} after 30 s ({e}); container log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `request` and reads until the reply ends with `end` (at most 10 s).
async fn memcached_request(conn: &mut tokio::net::TcpStream, request: &str, end: &str) -> String {
    conn.write_all(request.as_bytes()).await.expect("send");
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(10), async {
        while !reply.ends_with(end.as_bytes()) {
            let n = conn.read(&mut buf).await.expect("read reply");
            assert!(n > 0, "connection closed after {reply:?}");
            reply.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {end:?} after {request:?}: {reply:?}"));
    String::from_utf8_lossy(&reply).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_image_serves_the_plugin_command_as_memcache_even_from_root() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let archive = memcached_image(dir.path());
    eprintln!("memcached image ready in {:?}", started.elapsed());
    let ctd = TestContainerd::start().await;
    let rt = ctd.runtime().await;
    let images = rt.import_archive(&archive, None).await.unwrap();
    assert!(
        images.iter().any(|i| i.name == MEMCACHED_IMAGE),
        "{images:?}"
    );

    // What the memcached plugin plans (plugins/examples/memcached): the image's entrypoint and
    // user, command `memcached -p PORT -m MB`, host networking; then the same as root (which
    // memcached itself refuses without `-u`), and the official entrypoint's `-p ...` form.
    for (id, user, command) in [
        (
            "memcached",
            None,
            &["memcached", "-p", "PORT", "-m", "64"][..],
        ),
        (
            "memcached-root",
            Some("root"),
            &["memcached", "-p", "PORT", "-m", "64"][..],
        ),
        (
            "memcached-flags",
            Some("0"),
            &["-p", "PORT", "-m", "16"][..],
        ),
    ] {
        let port = free_port().to_string();
        let log = dir.path().join(format!("{id}.log"));
        let mut spec = ContainerSpec::new(id, MEMCACHED_IMAGE);
        assert!(spec.host_network, "Dray's default");
        spec.args = command
            .iter()
            .map(|a| {
                if *a == "PORT" {
                    port.clone()
                } else {
                    a.to_string()
                }
            })
            .collect();
        spec.user = user.map(str::to_string);
        spec.log = Log::Files {
            stdout: log.clone(),
            stderr: log.clone(),
        };
        let started = rt.run(&spec).await.unwrap();
        let mut conn = connect(&port, &log).await;
        let stored = memcached_request(&mut conn, "set k 0 0 5\r\nhello\r\n", "\r\n").await;
        assert_eq!(stored, "STORED\r\n", "{id}");
        let got = memcached_request(&mut conn, "get k\r\n", "END\r\n").await;
        assert_eq!(got, "VALUE k 0 5\r\nhello\r\nEND\r\n", "{id}");
        assert_eq!(uid_of(started.pid), MEMCACHED_UID, "{id}");
        drop(conn);
        rt.stop(id, Duration::from_secs(20)).await.unwrap();
        rt.remove(id).await.unwrap();
    }
}
