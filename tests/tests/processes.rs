//! Releases run through a real containerd: import-image, promote, ps, scale, ps stop, crash
//! restarts with backoff, automatic rollback, logs, and live restore across `kill -9` of drayd.

use std::time::Duration;

use dray_runtime::testing::parent_pid;
use dray_tests::{busybox_archive, eventually, stderr_fail, stdout_ok, Rack};

const WEB_MANIFEST: &str = r#"
environment:
  - GREETING=hello
services:
  web:
    command: sh -c 'mkdir -p /tmp/www && echo "$GREETING from $SERVICE" > /tmp/www/index.html && exec httpd -f -p $PORT -h /tmp/www'
    port: 3000
    health:
      path: /index.html
      grace: 0
      interval: 2
      timeout: 1
    scale:
      count: 2
      memory: 64
    termination:
      grace: 2
  worker:
    command: sh -c 'echo "env APP=$APP SERVICE=$SERVICE RELEASE=$RELEASE RACK=$RACK"; while true; do echo tick; sleep 0.3; done'
    scale:
      memory: 32
    termination:
      grace: 2
"#;

async fn http_get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    Some(out)
}

/// Import the busybox image as a build of `app` with `manifest`; returns the release id.
fn import(rack: &Rack, app: &str, manifest: &str) -> String {
    rack.import_build(app, &busybox_archive(rack.dir.path()), manifest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_runs_services_with_ports_env_logs_and_scale() {
    let rack = Rack::start().await;
    stdout_ok(&rack.dray(&["apps", "create", "shop"]));
    let release = import(&rack, "shop", WEB_MANIFEST);
    let out = stdout_ok(&rack.dray(&["releases", "promote", &release, "-a", "shop"]));
    assert_eq!(out, format!("Promoting {release}... OK\n"));
    let app = rack.client().app("shop").await.unwrap();
    assert_eq!(app.release, release);
    assert_eq!(app.status, "running");
    assert_eq!(app.router, "web.shop.localhost");

    // ps: 2 web + 1 worker, all running, web processes on their own ports.
    let procs = rack.client().processes("shop", None).await.unwrap();
    assert_eq!(procs.len(), 3, "{procs:?}");
    assert!(
        procs
            .iter()
            .all(|p| p.status == "running" && p.release == release),
        "{procs:?}"
    );
    let webs: Vec<_> = procs.iter().filter(|p| p.service == "web").collect();
    assert_eq!(webs.len(), 2);
    assert_ne!(webs[0].ports, webs[1].ports);
    for w in &webs {
        assert!(w.id.starts_with("web-") && w.id.len() == 9, "{}", w.id);
        let port: u16 = w.ports[0].parse().unwrap();
        let body = http_get(port, "/index.html").await.expect("web answers");
        assert!(body.contains("hello from web"), "{body}");
    }
    let ps = stdout_ok(&rack.dray(&["ps", "-a", "shop"]));
    let header: Vec<&str> = ps.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "SERVICE", "STATUS", "RELEASE", "STARTED", "COMMAND"]
    );
    assert_eq!(ps.lines().count(), 4, "{ps}");

    // Logs: process output with system env, and platform events.
    let logs = eventually(
        "the worker's first lines",
        Duration::from_secs(10),
        || async {
            let out = rack.dray(&["logs", "-a", "shop", "--no-follow"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.contains("tick").then_some(text)
        },
    )
    .await;
    let env_line = logs
        .lines()
        .find(|l| l.contains(" env APP="))
        .unwrap_or_else(|| panic!("no env line in:\n{logs}"));
    let parts: Vec<&str> = env_line.splitn(3, ' ').collect();
    assert!(
        parts[0].ends_with('Z') && parts[0].len() == 20,
        "{env_line}"
    );
    assert!(parts[1].starts_with("service/worker/worker-"), "{env_line}");
    assert_eq!(
        parts[2],
        format!("env APP=shop SERVICE=worker RELEASE={release} RACK=dray")
    );
    assert!(
        logs.contains("system/dray/shop promoting release"),
        "{logs}"
    );
    assert!(
        logs.contains(&format!("system/dray/shop release {release} is active")),
        "{logs}"
    );
    let only_web = stdout_ok(&rack.dray(&[
        "logs",
        "-a",
        "shop",
        "--no-follow",
        "-s",
        "worker",
        "--filter",
        "tick",
        "--tail",
        "2",
    ]));
    assert_eq!(
        only_web.lines().filter(|l| l.contains("tick")).count(),
        2,
        "{only_web}"
    );

    // Scale up: the live count wins and survives; the table shows it.
    assert_eq!(
        stdout_ok(&rack.dray(&["scale", "web", "--count", "3", "-a", "shop"])),
        "Scaling web... OK\n"
    );
    eventually(
        "3 running web processes",
        Duration::from_secs(20),
        || async {
            let procs = rack.client().processes("shop", Some("web")).await.ok()?;
            (procs.iter().filter(|p| p.status == "running").count() == 3).then_some(())
        },
    )
    .await;
    let table = stdout_ok(&rack.dray(&["scale", "-a", "shop"]));
    let web_row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("web"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(web_row, ["web", "3", "3", "250", "64"]);
    // New limits replace the processes (new ones first, then the old ones go).
    stdout_ok(&rack.dray(&[
        "scale", "web", "--memory", "48", "--cpu", "100", "-a", "shop",
    ]));
    eventually(
        "3 web processes with the new limits",
        Duration::from_secs(60),
        || async {
            let procs = rack.client().processes("shop", Some("web")).await.ok()?;
            (procs.len() == 3
                && procs
                    .iter()
                    .all(|p| p.status == "running" && p.memory == 48.0 && p.cpu == 0.1))
            .then_some(())
        },
    )
    .await;
    let services = stdout_ok(&rack.dray(&["services", "-a", "shop"]));
    assert!(
        services.contains("web.shop.localhost") && services.contains("443:3000"),
        "{services}"
    );

    // ps stop: the process goes, a new one takes its place.
    let victim = rack.client().processes("shop", Some("web")).await.unwrap()[0]
        .id
        .clone();
    assert_eq!(
        stdout_ok(&rack.dray(&["ps", "stop", &victim, "-a", "shop"])),
        format!("Stopping {victim}... OK\n")
    );
    eventually(
        "the stopped process to be replaced",
        Duration::from_secs(40),
        || async {
            let procs = rack.client().processes("shop", Some("web")).await.ok()?;
            let running = procs.iter().filter(|p| p.status == "running").count();
            (!procs.iter().any(|p| p.id == victim) && running == 3).then_some(())
        },
    )
    .await;
    let err = stderr_fail(&rack.dray(&["ps", "stop", "web-nopes", "-a", "shop"]));
    assert_eq!(err, "ERROR: process not found: web-nopes\n");
    let err = stderr_fail(&rack.dray(&["scale", "nope", "--count", "1", "-a", "shop"]));
    assert_eq!(err, "ERROR: service not found: nope\n");

    // Scale down to zero stops every worker.
    stdout_ok(&rack.dray(&["scale", "worker", "--count", "0", "-a", "shop"]));
    eventually("no worker processes", Duration::from_secs(20), || async {
        let procs = rack.client().processes("shop", Some("worker")).await.ok()?;
        procs.is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_restart_with_backoff_and_bad_releases_roll_back() {
    let rack = Rack::start_with(&["--crash-backoff-ms", "300"]).await;
    stdout_ok(&rack.dray(&["apps", "create", "flaky"]));
    let good = import(
        &rack,
        "flaky",
        "services:\n  worker:\n    command: sh -c 'echo up; sleep 1; echo bye; exit 3'\n",
    );
    stdout_ok(&rack.dray(&["releases", "promote", &good, "-a", "flaky"]));
    let p = eventually("a crash restart", Duration::from_secs(30), || async {
        let procs = rack.client().processes("flaky", None).await.ok()?;
        procs.into_iter().find(|p| p.restarts >= 2)
    })
    .await;
    assert_eq!(p.exit_code, Some(3));
    let logs = stdout_ok(&rack.dray(&["logs", "-a", "flaky", "--no-follow"]));
    assert!(
        logs.contains(&format!(
            "process {} crashed with exit code 3; restarting in",
            p.id
        )),
        "{logs}"
    );
    assert!(
        logs.contains(&format!("process {} restarted", p.id)),
        "{logs}"
    );

    // A release whose web never comes up is rolled back; the good one stays active.
    let bad = import(
        &rack,
        "flaky",
        "services:\n  web:\n    command: sh -c 'exit 7'\n    port: 3000\n",
    );
    let out = rack.dray(&["releases", "promote", &bad, "-a", "flaky"]);
    let err = stderr_fail(&out);
    assert!(
        err.contains(&format!("rollback: release {bad} was not deployed")),
        "{err}"
    );
    assert!(err.contains("keeps crashing (exit code 7)"), "{err}");
    let app = rack.client().app("flaky").await.unwrap();
    assert_eq!(app.release, good);
    assert_eq!(app.status, "running");
    eventually(
        "the bad release's processes to be gone",
        Duration::from_secs(30),
        || async {
            let procs = rack.client().processes("flaky", None).await.ok()?;
            procs.iter().all(|p| p.release == good).then_some(())
        },
    )
    .await;

    // Rollback copies an old release forward and promotes the copy; the original is then
    // older than the active release and cannot be promoted itself.
    let out = stdout_ok(&rack.dray(&["releases", "rollback", &good, "-a", "flaky"]));
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], format!("Rolling back to {good}... OK"), "{out}");
    let copy = l[1]
        .strip_prefix("Promoting ")
        .and_then(|r| r.strip_suffix("... OK"))
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    assert_ne!(copy, good);
    assert_eq!(rack.client().app("flaky").await.unwrap().release, copy);
    let err = stderr_fail(&rack.dray(&["releases", "promote", &good, "-a", "flaky"]));
    assert!(
        err.contains("can not promote an older release, try rollback"),
        "{err}"
    );

    // A deploy that never gets healthy can be cancelled: it rolls back at once.
    let stuck = import(
        &rack,
        "flaky",
        "services:\n  web:\n    command: sh -c 'mkdir -p /tmp/w && exec httpd -f -p $PORT -h /tmp/w'\n    port: 3000\n    health: /never\n    termination:\n      grace: 1\n",
    );
    let out = stdout_ok(&rack.dray(&["releases", "promote", &stuck, "--force", "-a", "flaky"]));
    assert!(out.ends_with("OK (not waiting)\n"), "{out}");
    assert_eq!(rack.client().app("flaky").await.unwrap().status, "updating");
    let err = stderr_fail(&rack.dray(&["releases", "promote", &stuck, "-a", "flaky"]));
    assert!(err.contains("app is currently updating"), "{err}");
    assert_eq!(
        stdout_ok(&rack.dray(&["apps", "cancel", "flaky"])),
        "Cancelling deployment of flaky... OK\n"
    );
    let app = eventually(
        "the cancelled deploy to roll back",
        Duration::from_secs(20),
        || async {
            let a = rack.client().app("flaky").await.ok()?;
            (a.status == "running").then_some(a)
        },
    )
    .await;
    assert_eq!(app.release, copy);
    assert_eq!(app.deploy_error, "the deployment was cancelled");

    // A release without a manifest (env only) cannot be promoted.
    stdout_ok(&rack.dray(&["apps", "create", "bare"]));
    stdout_ok(&rack.dray(&["env", "set", "A=1", "-a", "bare"]));
    let err = stderr_fail(&rack.dray(&["releases", "promote", "-a", "bare"]));
    assert!(
        err.contains("can not promote a release with an empty manifest"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_survive_kill9_of_the_agent_and_are_readopted() {
    let mut rack = Rack::start().await;
    stdout_ok(&rack.dray(&["apps", "create", "steady"]));
    let release = import(
        &rack,
        "steady",
        "services:\n  worker:\n    command: sh -c 'i=0; while true; do i=$((i+1)); echo line $i; sleep 0.1; done'\n    scale:\n      count: 10\n      memory: 16\n",
    );
    stdout_ok(&rack.dray(&["releases", "promote", &release, "-a", "steady"]));
    let before = rack.client().processes("steady", None).await.unwrap();
    assert_eq!(before.len(), 10);
    for round in 0..20 {
        rack.kill9();
        tokio::time::sleep(Duration::from_millis(300)).await;
        rack.spawn();
        let t0 = std::time::Instant::now();
        rack.wait_ready().await;
        let after = rack.client().processes("steady", None).await.unwrap();
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "round {round}: took {:?}",
            t0.elapsed()
        );
        let mut a: Vec<_> = after.iter().map(|p| (p.id.clone(), p.started)).collect();
        let mut b: Vec<_> = before.iter().map(|p| (p.id.clone(), p.started)).collect();
        a.sort();
        b.sort();
        assert_eq!(
            a, b,
            "round {round}: processes were not re-adopted as they were"
        );
        assert!(
            after
                .iter()
                .all(|p| p.status == "running" && p.restarts == 0),
            "{after:?}"
        );
    }
    // containerd itself restarts: the shims keep the processes running, the agent reconnects.
    rack.containerd.restart().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rack.client().processes("steady", None).await.unwrap();
    assert_eq!(after.len(), 10);
    assert!(
        after
            .iter()
            .all(|p| p.status == "running" && p.restarts == 0),
        "{after:?}"
    );
    // ... and still drives containerd: scaling up starts an 11th process.
    stdout_ok(&rack.dray(&["scale", "worker", "--count", "11", "-a", "steady"]));
    eventually(
        "an 11th process after the containerd restart",
        Duration::from_secs(30),
        || async {
            let procs = rack.client().processes("steady", None).await.ok()?;
            (procs.iter().filter(|p| p.status == "running").count() == 11).then_some(())
        },
    )
    .await;

    // No line was lost while the agent was down: each process's counter has no gaps.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let logs = stdout_ok(&rack.dray(&["logs", "-a", "steady", "--no-follow", "--since", "10m"]));
    for p in &before {
        let nums: Vec<u64> = logs
            .lines()
            .filter(|l| l.contains(&format!("service/worker/{} line ", p.id)))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        assert!(nums.len() > 20, "{}: {} lines", p.id, nums.len());
        for w in nums.windows(2) {
            assert_eq!(w[1], w[0] + 1, "{}: a gap in its log", p.id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_and_exec_stream_io_and_exit_codes() {
    let rack = Rack::start().await;
    stdout_ok(&rack.dray(&["apps", "create", "ops"]));
    let release = import(&rack, "ops", WEB_MANIFEST);
    stdout_ok(&rack.dray(&["releases", "promote", &release, "-a", "ops"]));

    // Attached, no TTY: output, stderr, exit code, env and extra env.
    let out = rack.dray(&[
        "run",
        "worker",
        "-a",
        "ops",
        "-e",
        "FOO=bar",
        "sh",
        "-c",
        "echo $FOO $APP $SERVICE; echo oops >&2; exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4), "{out:?}\n{}", rack.log());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "bar ops worker\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    // stdin reaches the process.
    let out = rack.dray_stdin(
        &["run", "worker", "-a", "ops", "cat"],
        "line one\nline two\n",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "line one\nline two\n");
    assert_eq!(out.status.code(), Some(0));
    // The one-off processes are removed afterwards.
    eventually(
        "one-off processes to be gone",
        Duration::from_secs(30),
        || async {
            let procs = rack.client().processes("ops", None).await.ok()?;
            procs.iter().all(|p| p.kind == "service").then_some(())
        },
    )
    .await;

    // Detached: prints the process id; ps shows it with its command.
    let id = stdout_ok(&rack.dray(&["run", "-d", "worker", "-a", "ops", "sleep", "30"]));
    let id = id.trim().to_string();
    assert!(id.starts_with("worker-") && id.len() == 12, "{id}");
    let p = rack.client().process("ops", &id).await.unwrap();
    assert_eq!(p.command, "sleep 30");
    assert_eq!(p.kind, "process");

    // The one-off runs under the shim of the service's running process (no shim of its own);
    // when that process is stopped, the one-off keeps running and the service is replaced.
    let rt = rack.containerd.runtime().await;
    let host_pid = |id: String| {
        let rt = &rt;
        async move {
            rt.task(&format!("ops.{id}"))
                .await
                .unwrap()
                .map(|t| t.pid)
                .unwrap_or_else(|| panic!("no task for {id}"))
        }
    };
    let worker = rack
        .client()
        .processes("ops", Some("worker"))
        .await
        .unwrap();
    let worker = worker
        .iter()
        .find(|p| p.kind == "service")
        .unwrap()
        .id
        .clone();
    let (one_off_pid, worker_pid) = (host_pid(id.clone()).await, host_pid(worker.clone()).await);
    assert_eq!(parent_pid(one_off_pid), parent_pid(worker_pid));
    stdout_ok(&rack.dray(&["ps", "stop", &worker, "-a", "ops"]));
    eventually(
        "the stopped worker to be replaced",
        Duration::from_secs(30),
        || async {
            let procs = rack.client().processes("ops", Some("worker")).await.ok()?;
            procs
                .iter()
                .any(|p| p.kind == "service" && p.id != worker && p.status == "running")
                .then_some(())
        },
    )
    .await;
    let out = stdout_ok(&rack.dray(&["exec", &id, "-a", "ops", "echo", "still-here"]));
    assert_eq!(out, "still-here\n");
    assert_eq!(host_pid(id.clone()).await, one_off_pid);
    stdout_ok(&rack.dray(&["ps", "stop", &id, "-a", "ops"]));
    // New one-offs still start and finish normally.
    let out = rack.dray(&["run", "worker", "-a", "ops", "sh", "-c", "exit 6"]);
    assert_eq!(out.status.code(), Some(6), "{out:?}\n{}", rack.log());

    // exec by process id and by service name.
    let web = rack.client().processes("ops", Some("web")).await.unwrap()[0]
        .id
        .clone();
    let out = stdout_ok(&rack.dray(&[
        "exec",
        &web,
        "-a",
        "ops",
        "sh",
        "-c",
        "echo in $SERVICE on $PORT",
    ]));
    assert!(out.starts_with("in web on "), "{out}");
    let out = rack.dray(&["exec", "web", "-a", "ops", "sh", "-c", "exit 9"]);
    assert_eq!(out.status.code(), Some(9));

    // With a TTY (script(1) gives dray a terminal): the remote side sees a terminal.
    let script = std::process::Command::new("script")
        .args([
            "-qec",
            &format!(
                "{} exec {web} -a ops tty",
                dray_tests::bin("dray").display()
            ),
            "/dev/null",
        ])
        .env("DRAY_HOST", rack.url())
        .env("DRAY_TOKEN", &rack.token)
        .env("DRAY_CONFIG", rack.config_dir())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script(1) from util-linux");
    let text = String::from_utf8_lossy(&script.stdout);
    assert!(text.contains("/dev/pts/"), "{text}");

    // Bad names fail before anything starts, with one clear line.
    let err = stderr_fail(&rack.dray(&["run", "nope", "-a", "ops", "true"]));
    assert_eq!(err, "ERROR: service not found: nope\n");
    let err = stderr_fail(&rack.dray(&["exec", "web-zzzzz", "-a", "ops", "true"]));
    assert_eq!(
        err,
        "ERROR: no running process or service named web-zzzzz in app ops\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_delivers_new_lines_and_survives_agent_restarts() {
    use std::io::BufRead;
    let mut rack = Rack::start().await;
    stdout_ok(&rack.dray(&["apps", "create", "chatty"]));
    let release = import(
        &rack,
        "chatty",
        "services:\n  worker:\n    command: sleep 100000\n    termination:\n      grace: 1\n",
    );
    stdout_ok(&rack.dray(&["releases", "promote", &release, "-a", "chatty"]));
    let pid = rack.client().processes("chatty", None).await.unwrap()[0]
        .id
        .clone();

    let mut follower = rack
        .dray_cmd(rack.dir.path(), &["logs", "-a", "chatty", "-s", "worker"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let wait_for = |mark: &str| -> Duration {
        let t0 = std::time::Instant::now();
        loop {
            let left = Duration::from_secs(10).saturating_sub(t0.elapsed());
            match rx.recv_timeout(left) {
                Ok(l) if l.contains(mark) => return t0.elapsed(),
                Ok(_) => {}
                Err(_) => panic!("{mark} never reached dray logs"),
            }
        }
    };
    // A line written by the process (to PID 1's stdout, which the shim's logger owns).
    tokio::time::sleep(Duration::from_millis(500)).await;
    stdout_ok(&rack.dray(&[
        "exec",
        &pid,
        "-a",
        "chatty",
        "sh",
        "-c",
        "echo MARK-ONE > /proc/1/fd/1",
    ]));
    let latency = wait_for("MARK-ONE");
    eprintln!("follow latency: {latency:?}");
    assert!(latency < Duration::from_secs(5), "{latency:?}");

    // The agent dies and comes back; the same `dray logs` reconnects and keeps going.
    rack.kill9();
    rack.spawn();
    rack.wait_ready().await;
    stdout_ok(&rack.dray(&[
        "exec",
        &pid,
        "-a",
        "chatty",
        "sh",
        "-c",
        "echo MARK-TWO > /proc/1/fd/1",
    ]));
    wait_for("MARK-TWO");
    let _ = follower.kill();
    let _ = follower.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_import_restart_and_process_metrics() {
    let rack = Rack::start().await;
    let archive = busybox_archive(rack.dir.path());
    let out = stdout_ok(&rack.dray(&[
        "images",
        "import",
        archive.to_str().unwrap(),
        "--name",
        "docker.io/library/tools:1",
    ]));
    assert!(out.ends_with("Image: docker.io/library/tools:1\n"), "{out}");
    let list = stdout_ok(&rack.dray(&["images"]));
    assert!(
        list.lines()
            .any(|l| l.starts_with("docker.io/library/tools:1 ")),
        "{list}"
    );

    // A service with `image:` runs an image imported this way.
    stdout_ok(&rack.dray(&["apps", "create", "imgapp"]));
    let release = import(
        &rack,
        "imgapp",
        "services:\n  tool:\n    image: docker.io/library/tools:1\n    command: sleep 100000\n    termination:\n      grace: 1\n",
    );
    stdout_ok(&rack.dray(&["releases", "promote", &release, "-a", "imgapp"]));
    let p = rack.client().processes("imgapp", None).await.unwrap();
    assert_eq!(p[0].image, "docker.io/library/tools:1");

    // services restart and restart replace the processes.
    assert_eq!(
        stdout_ok(&rack.dray(&["services", "restart", "tool", "-a", "imgapp"])),
        "Restarting tool... OK\n"
    );
    eventually("a replaced process", Duration::from_secs(30), || async {
        let now = rack.client().processes("imgapp", None).await.ok()?;
        (now.len() == 1 && now[0].id != p[0].id && now[0].status == "running").then_some(())
    })
    .await;
    assert_eq!(
        stdout_ok(&rack.dray(&["restart", "-a", "imgapp"])),
        "Restarting imgapp... OK\n"
    );

    // Metrics: processes by status, start latency, API latency.
    let body = reqwest_get(&rack, "/metrics").await;
    assert!(
        body.contains("dray_processes{app=\"imgapp\",status=\"running\"}"),
        "{body}"
    );
    assert!(
        body.contains("dray_container_start_seconds_count"),
        "{body}"
    );
    assert!(
        body.contains("dray_process_restarts_total")
            || body.contains("# TYPE dray_process_restarts_total counter"),
        "{body}"
    );
}

async fn reqwest_get(rack: &Rack, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", rack.port))
        .await
        .unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        rack.token
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// A rolling deploy in progress when the agent is killed carries on where it was after the
/// restart (its state is the app record, the planner's assignments and the nodes' process
/// records), within its bounds, and commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_deploy_carries_on_across_kill9_of_the_agent() {
    let mut rack = Rack::start().await;
    stdout_ok(&rack.dray(&["apps", "create", "roll"]));
    let manifest = |greeting: &str| {
        format!(
            r#"
services:
  web:
    command: sh -c 'mkdir -p /tmp/www && echo {greeting} > /tmp/www/index.html && sleep 2 && exec httpd -f -p $PORT -h /tmp/www'
    port: 3000
    health:
      path: /index.html
      grace: 0
      interval: 1
      timeout: 1
    scale:
      count: 4
      memory: 32
    termination:
      grace: 1
"#
        )
    };
    let r1 = import(&rack, "roll", &manifest("one"));
    stdout_ok(&rack.dray(&["releases", "promote", &r1, "-a", "roll"]));
    let r2 = import(&rack, "roll", &manifest("two"));
    let out = stdout_ok(&rack.dray(&["releases", "promote", &r2, "--force", "-a", "roll"]));
    assert!(out.ends_with("OK (not waiting)\n"), "{out}");
    // Kill the agent once the new release's processes run but before they are ready (their
    // server starts 2 s after the process). Not in the middle of creating a task: a kill -9
    // inside containerd's Tasks.Create can leave an orphaned shim behind (a containerd-level
    // leak), which is not what this test is about.
    eventually(
        "the new release's processes running, not ready",
        Duration::from_secs(20),
        || async {
            let procs = rack.client().processes("roll", Some("web")).await.ok()?;
            let new: Vec<_> = procs.iter().filter(|p| p.release == r2).collect();
            (new.len() == 4 && new.iter().all(|p| p.status == "starting")).then_some(())
        },
    )
    .await;
    rack.kill9();
    rack.spawn();
    rack.wait_ready().await;
    let app = eventually(
        "the deploy to commit after the restart",
        Duration::from_secs(60),
        || async {
            let a = rack.client().app("roll").await.ok()?;
            (a.status == "running").then_some(a)
        },
    )
    .await;
    assert_eq!(
        app.release,
        r2,
        "{}\nagent log:\n{}",
        app.deploy_error,
        rack.log()
    );
    eventually(
        "4 running web processes of the new release",
        Duration::from_secs(30),
        || async {
            let procs = rack.client().processes("roll", Some("web")).await.ok()?;
            (procs.len() == 4
                && procs
                    .iter()
                    .all(|p| p.release == r2 && p.status == "running"))
            .then_some(())
        },
    )
    .await;
    let progress = rack.client().app("roll").await.unwrap().progress;
    let web = progress
        .iter()
        .find(|p| p.service == "web")
        .expect("web progress");
    assert_eq!(
        (web.desired, web.updated, web.healthy),
        (4, 4, 4),
        "{progress:?}"
    );
    // The endpoints feed lists exactly the 4 processes, healthy.
    let endpoints = rack.client().endpoints("roll").await.unwrap();
    assert_eq!(endpoints.len(), 4, "{endpoints:?}");
    assert!(endpoints
        .iter()
        .all(|e| e.healthy && !e.draining && e.release == r2 && e.port > 0));
}

/// The store reads counted in `GET /metrics` (every operation).
async fn store_reads(rack: &Rack) -> f64 {
    let body = reqwest_get(rack, "/metrics").await;
    body.lines()
        .filter(|l| l.starts_with("dray_store_reads_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// An idle rack does no periodic store scans: with a deployed app (a web service with a
/// health check and a worker) settled, nothing reads the store. Counted, not timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_rack_reads_nothing_from_the_store() {
    let rack = Rack::start().await;
    stdout_ok(&rack.dray(&["apps", "create", "calm"]));
    let release = import(&rack, "calm", WEB_MANIFEST);
    stdout_ok(&rack.dray(&["releases", "promote", &release, "-a", "calm"]));
    // Settled: the progress says no old process is left, and the reads stop growing.
    eventually("the deploy to settle", Duration::from_secs(30), || async {
        let a = rack.client().app("calm").await.ok()?;
        a.progress
            .iter()
            .all(|p| p.old == 0 && p.healthy == p.desired)
            .then_some(())
    })
    .await;
    let mut before = store_reads(&rack).await;
    let mut quiet = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = store_reads(&rack).await;
        quiet = if now == before { quiet + 1 } else { 0 };
        before = now;
        if quiet >= 10 {
            break;
        }
    }
    assert!(
        quiet >= 10,
        "the store kept being read while the rack was idle"
    );
    // Three health-check intervals (2 s) later, still nothing (probes never touch the store).
    let start = store_reads(&rack).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        store_reads(&rack).await,
        start,
        "an idle rack read the store"
    );
}
