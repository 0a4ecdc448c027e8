//! Integration tests of the runtime against a real, private containerd (no mocks): images,
//! lifecycle, stdio, limits, security defaults, networking, events, exec, re-adoption.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{read_all, setup, spec};
use dray_runtime::testing::{
    busybox_docker_archive, busybox_image, parent_pid, TestContainerd, BUSYBOX_DOCKER_IMAGE,
    BUSYBOX_IMAGE,
};
use dray_runtime::{ExecSpec, Log, Mount, Runtime, RuntimeError, TaskEvent, TaskStatus};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn connect_error_names_the_socket() {
    let err = Runtime::connect(std::path::Path::new("/nonexistent/containerd.sock"), "dray")
        .await
        .expect_err("must fail");
    let text = err.to_string();
    assert!(
        text.starts_with("containerd is not running at /nonexistent/containerd.sock: "),
        "{text}"
    );
}

#[tokio::test]
async fn import_is_idempotent_and_config_reads_back() {
    let ctd = TestContainerd::start().await;
    let rt = ctd.runtime().await;
    let tmp = tempfile::tempdir().unwrap();
    let archive = busybox_image(tmp.path());

    let t = Instant::now();
    let first = rt.import_archive(&archive, None).await.expect("import");
    println!("first import: {:?}", t.elapsed());
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].name, BUSYBOX_IMAGE);
    assert!(first[0].digest.starts_with("sha256:"));

    let t = Instant::now();
    let again = rt.import_archive(&archive, None).await.expect("re-import");
    println!("re-import: {:?}", t.elapsed());
    assert_eq!(again[0].digest, first[0].digest);

    let images = rt.images().await.unwrap();
    let img = images
        .iter()
        .find(|i| i.name == BUSYBOX_IMAGE)
        .expect("listed");
    assert_eq!(img.digest, first[0].digest);
    assert!(img.size > 500_000, "size {}", img.size);
    assert!(img.created.is_some());

    let cfg = rt.image_config(BUSYBOX_IMAGE).await.unwrap();
    assert_eq!(cfg.cmd, vec!["/bin/sh"]);
    assert!(cfg.entrypoint.is_empty());
    assert!(cfg.env.contains(&("PATH".into(), "/bin".into())));
    assert_eq!(cfg.exposed_ports, vec!["8080/tcp"]);
    assert_eq!(cfg.working_dir.as_deref(), Some("/"));
    assert_eq!(
        cfg.labels.get("org.example.test").map(String::as_str),
        Some("yes")
    );

    // ctr agrees the image is complete and unpacked.
    let out = ctd.ctr().args(["images", "check"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(BUSYBOX_IMAGE) && text.contains("complete"),
        "{text}"
    );

    // Name override, and the docker-save layout.
    let named = rt
        .import_archive(&archive, Some("localhost/other:v1"))
        .await
        .unwrap();
    assert_eq!(named[0].name, "localhost/other:v1");
    let docker = rt
        .import_archive(&busybox_docker_archive(tmp.path()), None)
        .await
        .unwrap();
    assert_eq!(docker[0].name, BUSYBOX_DOCKER_IMAGE);
    let mut s = common::spec("from-docker", &["sh", "-c", "exit 4"]);
    s.image = BUSYBOX_DOCKER_IMAGE.into();
    rt.run(&s).await.unwrap();
    assert_eq!(rt.wait("from-docker").await.unwrap(), 4);
    rt.remove("from-docker").await.unwrap();

    rt.remove_image("localhost/other:v1").await.unwrap();
    rt.remove_image("localhost/other:v1").await.unwrap();
    assert!(!rt
        .images()
        .await
        .unwrap()
        .iter()
        .any(|i| i.name == "localhost/other:v1"));
    assert!(rt
        .image_config("localhost/other:v1")
        .await
        .unwrap_err()
        .is_not_found());
}

#[tokio::test]
async fn run_wait_exit_code_and_remove_is_idempotent() {
    let env = setup().await;
    let rt = &env.rt;
    let started = rt
        .run(&spec("exit3", &["sh", "-c", "exit 3"]))
        .await
        .unwrap();
    assert!(started.pid > 0);
    assert_eq!(rt.wait("exit3").await.unwrap(), 3);
    // A real exit status of 255 is reported as such (the 255 re-check sees STOPPED).
    rt.run(&spec("exit255", &["sh", "-c", "exit 255"]))
        .await
        .unwrap();
    assert_eq!(rt.wait("exit255").await.unwrap(), 255);
    let info = rt.task("exit3").await.unwrap().unwrap();
    assert_eq!(info.status, TaskStatus::Stopped);
    assert_eq!(info.exit_status, Some(3));
    for id in ["exit3", "exit255"] {
        rt.remove(id).await.unwrap();
        rt.remove(id).await.unwrap();
    }
    assert!(rt.list(&[]).await.unwrap().is_empty());
    assert!(rt.task("exit3").await.unwrap().is_none());
    // The id can be reused.
    rt.run(&spec("exit3", &["true"])).await.unwrap();
    assert_eq!(rt.wait("exit3").await.unwrap(), 0);
    // Unknown image: a clean NotFound, nothing left behind.
    let mut bad = spec("bad", &["true"]);
    bad.image = "docker.io/library/nope:latest".into();
    assert!(rt.run(&bad).await.unwrap_err().is_not_found());
    // A command that does not exist fails at start and leaves nothing behind.
    let err = rt.run(&spec("nocmd", &["/nonexistent"])).await.unwrap_err();
    println!("missing binary: {err}");
    assert!(rt.list(&[]).await.unwrap().iter().all(|c| c.id != "nocmd"));
    rt.run(&spec("nocmd", &["true"]))
        .await
        .expect("id reusable after a failed run");
    // The per-run leases (dropped in the background once the container holds its snapshot)
    // are all gone.
    let leases = || {
        let out = env.ctd.ctr().args(["leases", "ls", "-q"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("dray-run"))
            .count()
    };
    assert!(
        common::eventually(|| leases() == 0).await,
        "leases left: {}",
        leases()
    );
}

#[tokio::test]
async fn stdout_and_stderr_go_to_separate_files_with_env_and_args() {
    let env = setup().await;
    let rt = &env.rt;
    let out = env.tmp.path().join("logs/out.log");
    let err = env.tmp.path().join("logs/err.log");
    let mut s = spec(
        "stdio",
        &[
            "sh",
            "-c",
            "echo out-$FOO-$1; echo err-$DRAY_IMAGE >&2; pwd; id -u",
            "sh",
            "arg1",
        ],
    );
    s.env = vec![("FOO".into(), "bar".into())];
    s.cwd = Some("/tmp".into());
    s.log = Log::Files {
        stdout: out.clone(),
        stderr: err.clone(),
    };
    rt.run(&s).await.unwrap();
    assert_eq!(rt.wait("stdio").await.unwrap(), 0);
    rt.remove("stdio").await.unwrap();
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "out-bar-arg1\n/tmp\n0\n"
    );
    assert_eq!(std::fs::read_to_string(&err).unwrap(), "err-busybox\n");
}

#[tokio::test]
async fn user_names_resolve_from_the_image() {
    let env = setup().await;
    let rt = &env.rt;
    let out = env.tmp.path().join("user.log");
    let mut s = spec("user", &["sh", "-c", "id -u; id -g"]);
    s.user = Some("nobody".into());
    s.log = Log::Files {
        stdout: out.clone(),
        stderr: out.clone(),
    };
    rt.run(&s).await.unwrap();
    assert_eq!(rt.wait("user").await.unwrap(), 0);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "65534\n65534\n");
    let mut s = spec("user2", &["true"]);
    s.user = Some("nosuchuser".into());
    assert!(matches!(
        rt.run(&s).await,
        Err(RuntimeError::InvalidSpec(_))
    ));
}

#[tokio::test]
async fn labels_round_trip_through_list() {
    let env = setup().await;
    let rt = &env.rt;
    let mut s = spec("web-1", &["sleep", "100"]);
    s.labels = BTreeMap::from([
        ("dray.app".to_string(), "shop".to_string()),
        ("dray.service".to_string(), "web".to_string()),
        ("dray.release".to_string(), "RABCDEFGHIJ".to_string()),
    ]);
    let pid = rt.run(&s).await.unwrap().pid;
    let mut other = spec("other-1", &["sleep", "100"]);
    other.labels.insert("dray.app".into(), "blog".into());
    rt.run(&other).await.unwrap();

    let shop = rt.list(&[("dray.app", "shop")]).await.unwrap();
    assert_eq!(shop.len(), 1);
    let c = &shop[0];
    assert_eq!(c.id, "web-1");
    assert_eq!(c.image, BUSYBOX_IMAGE);
    assert_eq!(
        c.labels.get("dray.service").map(String::as_str),
        Some("web")
    );
    assert_eq!(
        c.labels.get("dray.release").map(String::as_str),
        Some("RABCDEFGHIJ")
    );
    let task = c.task.as_ref().expect("task");
    assert_eq!(task.status, TaskStatus::Running);
    assert_eq!(task.pid, pid);
    assert!(rt
        .list(&[("dray.app", "shop"), ("dray.service", "worker")])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(rt.list(&[]).await.unwrap().len(), 2);

    assert_eq!(
        rt.stop("web-1", Duration::from_millis(300)).await.unwrap(),
        137
    );
    let c = rt.list(&[("dray.app", "shop")]).await.unwrap().remove(0);
    let task = c.task.unwrap();
    assert_eq!(task.status, TaskStatus::Stopped);
    assert_eq!(task.exit_status, Some(137));
    assert!(task.exited_at.is_some());
}

#[tokio::test]
async fn stop_kills_after_grace_and_honours_term_handlers() {
    let env = setup().await;
    let rt = &env.rt;
    // busybox sleep installs no SIGTERM handler: as PID 1 it ignores SIGTERM.
    rt.run(&spec("stubborn", &["sleep", "100"])).await.unwrap();
    let t = Instant::now();
    assert_eq!(
        rt.stop("stubborn", Duration::from_secs(1)).await.unwrap(),
        137
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );

    rt.run(&spec(
        "polite",
        &["sh", "-c", "trap 'exit 143' TERM; sleep 100 & wait"],
    ))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    assert_eq!(
        rt.stop("polite", Duration::from_secs(10)).await.unwrap(),
        143
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // Stopping a stopped task returns its status again.
    assert_eq!(
        rt.stop("polite", Duration::from_secs(1)).await.unwrap(),
        143
    );
    assert!(rt
        .stop("missing", Duration::from_secs(1))
        .await
        .unwrap_err()
        .is_not_found());
}

fn cgroup_file(ctrl: &str, ns: &str, id: &str, file: &str) -> String {
    let v1 = format!("/sys/fs/cgroup/{ctrl}/{ns}/{id}/{file}");
    std::fs::read_to_string(&v1)
        .unwrap_or_else(|e| panic!("{v1}: {e}"))
        .trim()
        .to_string()
}

#[tokio::test]
async fn cgroup_limits_are_applied() {
    let env = setup().await;
    let rt = &env.rt;
    let ns = rt.namespace().to_string();
    let out = env.tmp.path().join("cg.log");
    let mut s = spec("limited", &["sh", "-c", "cat /proc/self/cgroup; sleep 100"]);
    s.memory_mb = Some(64);
    s.pids_limit = Some(50);
    s.cpu_millicores = Some(500);
    s.cpu_limit_millicores = Some(250);
    s.log = Log::Files {
        stdout: out.clone(),
        stderr: out.clone(),
    };
    rt.run(&s).await.unwrap();
    assert!(
        common::eventually(|| std::fs::read_to_string(&out)
            .unwrap_or_default()
            .contains("memory"))
        .await
    );
    let inside = std::fs::read_to_string(&out).unwrap();
    assert!(inside.contains(&format!("/{ns}/limited")), "{inside}");
    assert_eq!(
        cgroup_file("memory", &ns, "limited", "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(cgroup_file("pids", &ns, "limited", "pids.max"), "50");
    assert_eq!(cgroup_file("cpu", &ns, "limited", "cpu.shares"), "512");
    assert_eq!(
        cgroup_file("cpu", &ns, "limited", "cpu.cfs_quota_us"),
        "25000"
    );
    assert_eq!(
        cgroup_file("cpu", &ns, "limited", "cpu.cfs_period_us"),
        "100000"
    );

    // The pids limit bites: a fork bomb-ish loop cannot exceed it.
    let mut h = rt
        .exec(
            "limited",
            &ExecSpec {
                args: vec![
                    "sh".into(),
                    "-c".into(),
                    "for i in $(seq 1 80); do sleep 5 & done 2>/dev/null; echo spawned; ps | wc -l"
                        .into(),
                ],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let text = read_all(h.stdout.take()).await;
    h.wait().await.unwrap();
    let procs: usize = text
        .lines()
        .last()
        .unwrap_or("0")
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(procs <= 52, "{text}");
    rt.remove("limited").await.unwrap();
}

#[tokio::test]
async fn non_privileged_defaults_and_privileged_opt_in() {
    let env = setup().await;
    let rt = &env.rt;
    let out = env.tmp.path().join("sec.log");
    let mut s = spec(
        "secure",
        &["sh", "-c", "grep -E '^(NoNewPrivs|CapEff|Seccomp):' /proc/self/status; unshare -m true && echo unshare-ok || echo unshare-denied; cat /proc/kcore | wc -c; echo x > /proc/sys/kernel/hostname && echo procsys-rw || echo procsys-ro"],
    );
    s.log = Log::Files {
        stdout: out.clone(),
        stderr: env.tmp.path().join("sec.err"),
    };
    rt.run(&s).await.unwrap();
    assert_eq!(rt.wait("secure").await.unwrap(), 0);
    let text = std::fs::read_to_string(&out).unwrap();
    println!("{text}");
    assert!(text.contains("NoNewPrivs:\t1"), "{text}");
    assert!(
        text.contains(&format!(
            "CapEff:\t{:016x}",
            dray_runtime::default_capability_mask()
        )),
        "{text}"
    );
    assert!(text.contains("Seccomp:\t2"), "{text}");
    assert!(text.contains("unshare-denied"), "{text}");
    assert!(text.contains("\n0\n"), "/proc/kcore must be masked: {text}");
    assert!(text.contains("procsys-ro"), "{text}");

    let out2 = env.tmp.path().join("priv.log");
    let mut p = spec(
        "privileged",
        &[
            "sh",
            "-c",
            "grep -E '^(NoNewPrivs|CapEff|Seccomp):' /proc/self/status",
        ],
    );
    p.privileged = true;
    p.log = Log::Files {
        stdout: out2.clone(),
        stderr: out2.clone(),
    };
    rt.run(&p).await.unwrap();
    assert_eq!(rt.wait("privileged").await.unwrap(), 0);
    let text = std::fs::read_to_string(&out2).unwrap();
    assert!(
        text.contains("NoNewPrivs:\t0") && text.contains("Seccomp:\t0"),
        "{text}"
    );
    assert!(
        !text.contains(&format!(
            "CapEff:\t{:016x}",
            dray_runtime::default_capability_mask()
        )),
        "{text}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn host_network_serves_on_loopback_and_isolated_network_does_not() {
    let env = setup().await;
    let rt = &env.rt;
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let mut s = spec("httpd", &["httpd", "-f", "-p", &bind, "-h", "/www"]);
    s.env = vec![("PORT".into(), port.to_string())];
    s.mounts = vec![Mount {
        source: env.tmp.path().to_path_buf(),
        destination: "/data".into(),
        read_only: true,
    }];
    rt.run(&s).await.unwrap();
    let mut body = String::new();
    for _ in 0..250 {
        if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            c.write_all(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
                .unwrap();
            c.read_to_string(&mut body).unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(body.contains("hello from dray-busybox"), "{body}");

    // The container sees the host's interfaces; an isolated one sees only loopback.
    let host_ifaces: Vec<String> = std::fs::read_to_string("/proc/net/dev")
        .unwrap()
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|s| s.trim().to_string()))
        .collect();
    let mut h = rt
        .exec(
            "httpd",
            &ExecSpec {
                args: vec![
                    "cat".into(),
                    "/proc/net/dev".into(),
                    "/etc/resolv.conf".into(),
                ],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let seen = read_all(h.stdout.take()).await;
    assert_eq!(h.wait().await.unwrap(), 0);
    for i in &host_ifaces {
        assert!(seen.contains(&format!("{i}:")), "missing {i} in {seen}");
    }
    let out = env.tmp.path().join("iso.log");
    let mut iso = spec(
        "isolated",
        &[
            "sh",
            "-c",
            "tail -n +3 /proc/net/dev | cut -d: -f1; hostname",
        ],
    );
    iso.host_network = false;
    iso.log = Log::Files {
        stdout: out.clone(),
        stderr: out.clone(),
    };
    rt.run(&iso).await.unwrap();
    assert_eq!(rt.wait("isolated").await.unwrap(), 0);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        text.split_whitespace().collect::<Vec<_>>(),
        vec!["lo", "isolated"],
        "{text}"
    );
    rt.stop("httpd", Duration::from_millis(200)).await.unwrap();
}

#[tokio::test]
async fn events_deliver_start_exit_and_delete() {
    let env = setup().await;
    let rt = &env.rt;
    let mut events = rt.events().await.unwrap();
    rt.run(&spec("ev", &["sh", "-c", "exit 7"])).await.unwrap();
    assert_eq!(rt.wait("ev").await.unwrap(), 7);
    rt.remove("ev").await.unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(1), events.recv()).await {
            Ok(Some(e)) => {
                let done = matches!(&e, TaskEvent::Deleted { id, .. } if id == "ev");
                seen.push(e);
                if done {
                    break;
                }
            }
            _ => continue,
        }
    }
    println!("{seen:#?}");
    assert!(seen
        .iter()
        .any(|e| matches!(e, TaskEvent::Created { id, .. } if id == "ev")));
    assert!(seen
        .iter()
        .any(|e| matches!(e, TaskEvent::Started { id, pid } if id == "ev" && *pid > 0)));
    assert!(seen.iter().any(|e| matches!(e, TaskEvent::Exited { id, exec_id: None, exit_status: 7, exited_at: Some(_), .. } if id == "ev")));
    assert!(seen
        .iter()
        .any(|e| matches!(e, TaskEvent::Deleted { id, exit_status: 7, .. } if id == "ev")));
}

#[tokio::test]
async fn exec_without_tty_streams_and_returns_exit_code() {
    let env = setup().await;
    let rt = &env.rt;
    let mut s = spec("box", &["sleep", "100"]);
    s.env = vec![("FROM_CONTAINER".into(), "yes".into())];
    rt.run(&s).await.unwrap();
    let mut h = rt
        .exec(
            "box",
            &ExecSpec {
                args: vec![
                    "sh".into(),
                    "-c".into(),
                    "echo hi-$FROM_CONTAINER-$EXTRA; echo err >&2; pwd; exit 5".into(),
                ],
                env: vec![("EXTRA".into(), "x".into())],
                cwd: Some("/tmp".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(h.pid() > 0);
    let (out, err) = tokio::join!(read_all(h.stdout.take()), read_all(h.stderr.take()));
    assert_eq!(out, "hi-yes-x\n/tmp\n");
    assert_eq!(err, "err\n");
    assert_eq!(h.wait().await.unwrap(), 5);

    // stdin: cat echoes what we write, then exits on EOF.
    let mut h = rt
        .exec(
            "box",
            &ExecSpec {
                args: vec!["cat".into()],
                stdin: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let stdout = h.stdout.take();
    let reader = tokio::spawn(read_all(stdout));
    h.stdin
        .as_mut()
        .unwrap()
        .write_all(b"hello stdin\n")
        .await
        .unwrap();
    drop(h.stdin.take());
    h.close_stdin().await.unwrap();
    assert_eq!(reader.await.unwrap(), "hello stdin\n");
    assert_eq!(h.wait().await.unwrap(), 0);

    // As another user, by name.
    let mut h = rt
        .exec(
            "box",
            &ExecSpec {
                args: vec!["id".into(), "-u".into()],
                user: Some("nobody".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(read_all(h.stdout.take()).await, "65534\n");
    assert_eq!(h.wait().await.unwrap(), 0);

    // Killing an exec.
    let h = rt
        .exec(
            "box",
            &ExecSpec {
                args: vec!["sleep".into(), "100".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    h.kill(9).await.unwrap();
    assert_eq!(h.wait().await.unwrap(), 137);
    assert!(rt
        .exec(
            "nope",
            &ExecSpec {
                args: vec!["true".into()],
                ..Default::default()
            }
        )
        .await
        .unwrap_err()
        .is_not_found());
}

#[tokio::test]
async fn exec_with_tty_and_resize() {
    let env = setup().await;
    let rt = &env.rt;
    rt.run(&spec("ttybox", &["sleep", "100"])).await.unwrap();
    let mut h = rt
        .exec(
            "ttybox",
            &ExecSpec {
                args: vec![
                    "sh".into(),
                    "-c".into(),
                    "stty size; tty; sleep 0.5; stty size; echo tty-ok".into(),
                ],
                tty: true,
                stdin: true,
                size: Some((80, 24)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(h.stderr.is_none());
    let reader = tokio::spawn(read_all(h.stdout.take()));
    tokio::time::sleep(Duration::from_millis(150)).await;
    h.resize(120, 40).await.expect("resize");
    assert_eq!(h.wait().await.unwrap(), 0);
    let out = reader.await.unwrap();
    println!("{out:?}");
    assert!(out.contains("24 80"), "{out:?}");
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert!(out.contains("40 120"), "{out:?}");
    assert!(out.contains("tty-ok"), "{out:?}");
}

#[tokio::test]
async fn attached_task_with_fifos_and_stdin() {
    let env = setup().await;
    let rt = &env.rt;
    let mut s = spec(
        "attached",
        &["sh", "-c", "read line; echo got-$line; echo to-err >&2"],
    );
    s.log = Log::Fifo;
    s.stdin = true;
    let mut started = rt.run(&s).await.unwrap();
    let mut io = started.io.take().expect("io");
    let out = tokio::spawn(read_all(io.stdout.take()));
    let err = tokio::spawn(read_all(io.stderr.take()));
    io.stdin
        .as_mut()
        .unwrap()
        .write_all(b"ping\n")
        .await
        .unwrap();
    assert_eq!(rt.wait("attached").await.unwrap(), 0);
    assert_eq!(out.await.unwrap(), "got-ping\n");
    assert_eq!(err.await.unwrap(), "to-err\n");
    rt.remove("attached").await.unwrap();
}

#[tokio::test]
async fn a_restarted_agent_readopts_running_tasks() {
    let env = setup().await;
    let mut s = spec("survivor", &["sleep", "100"]);
    s.labels.insert("dray.app".into(), "shop".into());
    let pid = {
        let first = env.ctd.runtime().await;
        first.run(&s).await.unwrap().pid
        // `first` (the "agent") goes away here.
    };
    let second = Runtime::connect(env.ctd.socket(), env.ctd.namespace())
        .await
        .unwrap();
    let found = second.list(&[("dray.app", "shop")]).await.unwrap();
    assert_eq!(found.len(), 1);
    let task = found[0].task.clone().unwrap();
    assert_eq!((task.status, task.pid), (TaskStatus::Running, pid));
    assert_eq!(
        second
            .stop("survivor", Duration::from_millis(300))
            .await
            .unwrap(),
        137
    );
    second.remove("survivor").await.unwrap();
    assert!(second.list(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn create_start_latency_is_printed() {
    let env = setup().await;
    let rt = &env.rt;
    let mut samples = Vec::new();
    for i in 0..10 {
        let id = format!("lat-{i}");
        let t = Instant::now();
        rt.run(&spec(&id, &["true"])).await.unwrap();
        samples.push(t.elapsed());
        assert_eq!(rt.wait(&id).await.unwrap(), 0);
        rt.remove(&id).await.unwrap();
    }
    samples.sort();
    println!(
        "create+start latency (debug build, n=10): median {:.1} ms, min {:.1} ms, max {:.1} ms",
        samples[5].as_secs_f64() * 1e3,
        samples[0].as_secs_f64() * 1e3,
        samples[9].as_secs_f64() * 1e3
    );
}

/// Shim processes serving this test's containerd.
fn shims(ctd: &TestContainerd) -> Vec<u32> {
    let sock = ctd.socket().to_string_lossy().into_owned();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("containerd-shim-runc-v2") && cmd.contains(&sock) {
            out.push(pid);
        }
    }
    out
}

#[tokio::test]
async fn a_container_can_join_another_containers_shim() {
    let mut env = setup().await;
    let rt = &env.rt;
    let host = rt.run(&spec("host", &["sleep", "100"])).await.unwrap();
    let mut g = spec("guest", &["sleep", "100"]);
    g.shim_of = Some("host".into());
    let guest = rt.run(&g).await.unwrap();
    let shim = parent_pid(host.pid).unwrap();
    assert_eq!(
        parent_pid(guest.pid).unwrap(),
        shim,
        "the guest runs under the host's shim"
    );
    assert_eq!(shims(&env.ctd), vec![shim], "no second shim was spawned");
    // Exec works in a guest.
    let mut h = rt
        .exec(
            "guest",
            &ExecSpec {
                args: vec!["echo".into(), "in-guest".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let out = read_all(h.stdout.take()).await;
    assert_eq!((out.as_str(), h.wait().await.unwrap()), ("in-guest\n", 0));

    // containerd restarts: both tasks are found again through the one shim.
    env.ctd.restart().await;
    let rt = env.ctd.runtime().await;
    for (id, pid) in [("host", host.pid), ("guest", guest.pid)] {
        let t = rt.task(id).await.unwrap().unwrap();
        assert_eq!((t.status, t.pid), (TaskStatus::Running, pid), "{id}");
    }

    // The host goes first (its bundle, the shim's working directory, is deleted): the guest
    // keeps running under the shim and is stopped and removed normally.
    assert_eq!(
        rt.stop("host", Duration::from_millis(300)).await.unwrap(),
        137
    );
    rt.remove("host").await.unwrap();
    let t = rt.task("guest").await.unwrap().unwrap();
    assert_eq!((t.status, t.pid), (TaskStatus::Running, guest.pid));
    assert_eq!(parent_pid(guest.pid).unwrap(), shim);
    assert_eq!(
        rt.stop("guest", Duration::from_millis(300)).await.unwrap(),
        137
    );
    rt.remove("guest").await.unwrap();
    // With nothing left to serve, the shim exits.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !shims(&env.ctd).is_empty() {
        assert!(Instant::now() < deadline, "the shared shim did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Joining a container that is gone starts a shim for the group as usual, and a second
    // guest joins that one.
    let mut g = spec("late", &["sleep", "100"]);
    g.shim_of = Some("host".into());
    let late = rt.run(&g).await.unwrap();
    let mut g2 = spec("late2", &["true"]);
    g2.shim_of = Some("host".into());
    let late2 = rt.run(&g2).await.unwrap();
    assert_eq!(shims(&env.ctd), vec![parent_pid(late.pid).unwrap()]);
    assert!(late2.pid > 0);
    assert_eq!(rt.wait("late2").await.unwrap(), 0);
    rt.remove("late2").await.unwrap();
    assert_eq!(
        rt.stop("late", Duration::from_millis(300)).await.unwrap(),
        137
    );
    rt.remove("late").await.unwrap();

    // A bad group is refused before anything is created.
    let mut bad = spec("bad-group", &["true"]);
    bad.shim_of = Some("../x".into());
    assert!(matches!(
        rt.run(&bad).await.unwrap_err(),
        RuntimeError::InvalidSpec(_)
    ));
    assert!(rt.list(&[]).await.unwrap().is_empty());
}
