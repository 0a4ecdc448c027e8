//! Deploys as the planner + node executor carry them out: rolling deploys and restarts within
//! `deployment.minimum`/`maximum`, process statuses (`pending`, `starting`, `running`,
//! `stopping`, ...), agent services, liveness restarts, `GET /apps/{app}/endpoints`, deploy
//! progress on the app, and health checks that never hold anything else up.
//!
//! Every test samples what the API reports while something changes (a background task reads
//! `GET /apps/{app}/processes` every ~50 ms) and checks the bounds on every sample.
//!
//! The tests of this file run one at a time (the [`SERIAL`] lock): `health_checks_never_block`
//! compares timings against a baseline, and each test starts 10-20 processes on a small machine,
//! so parallel racks would only add noise.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dray_sdk::{Client, Process};
use dray_tests::{busybox_archive, eventually, stderr_fail, stdout_ok, Rack};

/// One test at a time (see the module docs). A tokio mutex: it does not poison when a test
/// fails, and may be held across awaits.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A busybox httpd web service with a fast readiness check, `count` processes and `extra`
/// (more keys of the `web` service, indented by 4 spaces).
fn web_manifest(count: u32, extra: &str) -> String {
    format!(
        r#"
services:
  web:
    command: sh -c 'mkdir -p /tmp/www && echo ok > /tmp/www/index.html && exec httpd -f -p $PORT -h /tmp/www'
    port: 3000
    health:
      path: /index.html
      grace: 0
      interval: 1
      timeout: 1
    scale:
      count: {count}
      memory: 16
    termination:
      grace: 1
{extra}"#
    )
}

/// Import the busybox image as a build of `app` with `manifest`; returns the release id.
fn import(rack: &Rack, app: &str, manifest: &str) -> String {
    rack.import_build(app, &busybox_archive(rack.dir.path()), manifest)
}

/// `dray releases promote RELEASE -a APP`, waiting until it is active.
fn promote(rack: &Rack, app: &str, release: &str) {
    let out = stdout_ok(&rack.dray(&["releases", "promote", release, "-a", app]));
    assert_eq!(out, format!("Promoting {release}... OK\n"));
}

/// `dray env set KV -a APP`: a new release forked from the newest one; returns its id.
fn env_release(rack: &Rack, app: &str, kv: &str) -> String {
    let out = stdout_ok(&rack.dray(&["env", "set", kv, "-a", app]));
    out.lines()
        .find_map(|l| l.strip_prefix("Release: "))
        .unwrap_or_else(|| panic!("no release line in {out:?}"))
        .to_string()
}

/// Wait until `service` of `app` has exactly `count` processes, all running, all of `release`
/// (when given), and nothing else (no stopping process left).
async fn settled(
    client: &Client,
    app: &str,
    service: &str,
    release: Option<&str>,
    count: usize,
    timeout: Duration,
) -> Vec<Process> {
    eventually(
        &format!("{count} running {service} processes of {app} ({release:?}) and nothing else"),
        timeout,
        || async {
            let procs = client.processes(app, Some(service)).await.ok()?;
            (procs.len() == count
                && procs
                    .iter()
                    .all(|p| p.status == "running" && release.is_none_or(|r| p.release == r)))
            .then_some(procs)
        },
    )
    .await
}

/// What one read of `GET /apps/{app}/processes?service=S` said.
#[derive(Debug)]
struct Sample {
    /// Since the sampler started.
    at: Duration,
    /// (id, status, release) of every process listed.
    procs: Vec<(String, String, String)>,
}

impl Sample {
    fn running(&self) -> usize {
        self.procs.iter().filter(|p| p.1 == "running").count()
    }
}

/// A background task reading a service's processes every ~50 ms until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    /// Samples taken so far.
    taken: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<(Vec<Sample>, Vec<String>)>,
}

impl Sampler {
    fn start(client: Client, app: &str, service: &str) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let (app, service, flag) = (app.to_string(), service.to_string(), stop.clone());
        let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = taken.clone();
        let task = tokio::spawn(async move {
            let t0 = Instant::now();
            let (mut samples, mut errors) = (Vec::new(), Vec::new());
            while !flag.load(Ordering::SeqCst) {
                match client.processes(&app, Some(&service)).await {
                    Ok(procs) => samples.push(Sample {
                        at: t0.elapsed(),
                        procs: procs
                            .into_iter()
                            .map(|p| (p.id, p.status.to_string(), p.release))
                            .collect(),
                    }),
                    Err(e) => errors.push(format!("{:?}: {e}", t0.elapsed())),
                }
                count.fetch_add(1, Ordering::SeqCst);
                // The sampling interval (what is sampled is the point, not a wait for a state).
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (samples, errors)
        });
        Sampler { stop, taken, task }
    }

    /// Wait (with a deadline) until `n` more samples were taken.
    async fn more(&self, n: usize) {
        let want = self.taken.load(Ordering::SeqCst) + n;
        eventually(
            "the sampler's next samples",
            Duration::from_secs(10),
            || async { (self.taken.load(Ordering::SeqCst) >= want).then_some(()) },
        )
        .await;
    }

    /// Stop sampling; every sample (the API must have answered every read).
    async fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::SeqCst);
        let (samples, errors) = self.task.await.expect("the sampler task");
        assert!(
            errors.is_empty(),
            "reads of the processes failed: {errors:?}"
        );
        assert!(samples.len() >= 10, "only {} samples", samples.len());
        samples
    }
}

/// Print the range of what the samples saw and check `min_running <= running` and
/// `total <= max_total` on every one.
fn check_bounds(what: &str, samples: &[Sample], min_running: usize, max_total: usize) {
    let lo = samples.iter().map(Sample::running).min().unwrap_or(0);
    let hi = samples.iter().map(|s| s.procs.len()).max().unwrap_or(0);
    let statuses: std::collections::BTreeSet<&str> = samples
        .iter()
        .flat_map(|s| s.procs.iter().map(|p| p.1.as_str()))
        .collect();
    println!(
        "{what}: {} samples over {:?}: running min {lo}, processes max {hi}, statuses seen {statuses:?}",
        samples.len(),
        samples.last().map(|s| s.at).unwrap_or_default()
    );
    for s in samples {
        assert!(
            s.running() >= min_running,
            "{what}: {} running at {:?} (minimum {min_running}): {:?}",
            s.running(),
            s.at,
            s.procs
        );
        assert!(
            s.procs.len() <= max_total,
            "{what}: {} processes at {:?} (maximum {max_total}): {:?}",
            s.procs.len(),
            s.at,
            s.procs
        );
    }
}

/// Promote `next` over an app whose web runs `count` processes, sampling web the whole time,
/// until `next` is active and its `count` processes are all that is left; returns the samples.
async fn sampled_deploy(rack: &Rack, app: &str, next: &str, count: usize) -> Vec<Sample> {
    let client = rack.client();
    let sampler = Sampler::start(client.clone(), app, "web");
    sampler.more(2).await;
    promote(rack, app, next);
    settled(
        &client,
        app,
        "web",
        Some(next),
        count,
        Duration::from_secs(60),
    )
    .await;
    sampler.more(2).await;
    sampler.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_deploys_stay_within_minimum_and_maximum() {
    let _serial = SERIAL.lock().await;
    let rack = Rack::start().await;
    let client = rack.client();

    // Defaults 50/200 at count 10: at most 20 web processes (any status, stopping included),
    // at least 5 running (ready) at every moment.
    stdout_ok(&rack.dray(&["apps", "create", "roll"]));
    let r1 = import(&rack, "roll", &web_manifest(10, ""));
    promote(&rack, "roll", &r1);
    settled(
        &client,
        "roll",
        "web",
        Some(&r1),
        10,
        Duration::from_secs(60),
    )
    .await;
    let r2 = env_release(&rack, "roll", "X=2");
    let samples = sampled_deploy(&rack, "roll", &r2, 10).await;
    check_bounds("50/200, count 10", &samples, 5, 20);
    // The deploy really rolled: both releases ran side by side at some point.
    assert!(
        samples
            .iter()
            .any(|s| { s.procs.iter().any(|p| p.2 == r1) && s.procs.iter().any(|p| p.2 == r2) }),
        "no sample saw both releases"
    );
    let app = client.app("roll").await.unwrap();
    assert_eq!(app.release, r2);
    assert_eq!(app.status, "running");

    // 100/200: never fewer than all 10 running.
    stdout_ok(&rack.dray(&["apps", "create", "strict"]));
    let deployment = "    deployment:\n      minimum: 100\n      maximum: 200\n";
    let s1 = import(&rack, "strict", &web_manifest(10, deployment));
    promote(&rack, "strict", &s1);
    settled(
        &client,
        "strict",
        "web",
        Some(&s1),
        10,
        Duration::from_secs(60),
    )
    .await;
    let s2 = env_release(&rack, "strict", "X=2");
    let samples = sampled_deploy(&rack, "strict", &s2, 10).await;
    check_bounds("100/200, count 10", &samples, 10, 20);
    assert_eq!(client.app("strict").await.unwrap().release, s2);
}

/// Restart with `args`, sampling web until `count` new processes run and none of `old` is left.
async fn sampled_restart(rack: &Rack, args: &[&str], old: &[String], count: usize) {
    let client = rack.client();
    let sampler = Sampler::start(client.clone(), "bounce", "web");
    sampler.more(2).await;
    stdout_ok(&rack.dray(args));
    let after = eventually(
        &format!("`dray {}` to replace every process", args.join(" ")),
        Duration::from_secs(60),
        || async {
            let procs = client.processes("bounce", Some("web")).await.ok()?;
            (procs.len() == count
                && procs
                    .iter()
                    .all(|p| p.status == "running" && !old.contains(&p.id)))
            .then_some(procs)
        },
    )
    .await;
    sampler.more(2).await;
    let samples = sampler.finish().await;
    check_bounds(
        &format!("dray {}", args.join(" ")),
        &samples,
        count / 2,
        2 * count,
    );
    assert_eq!(after.len(), count);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_roll_and_replace_every_process() {
    let _serial = SERIAL.lock().await;
    let rack = Rack::start().await;
    let client = rack.client();
    stdout_ok(&rack.dray(&["apps", "create", "bounce"]));
    let r1 = import(&rack, "bounce", &web_manifest(4, ""));
    promote(&rack, "bounce", &r1);
    let before: Vec<String> = settled(
        &client,
        "bounce",
        "web",
        Some(&r1),
        4,
        Duration::from_secs(60),
    )
    .await
    .into_iter()
    .map(|p| p.id)
    .collect();

    // `dray restart`: every process of every service is replaced, at least 2 of 4 (50 %)
    // running throughout.
    sampled_restart(&rack, &["restart", "-a", "bounce"], &before, 4).await;
    let middle: Vec<String> = client
        .processes("bounce", Some("web"))
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert!(middle.iter().all(|id| !before.contains(id)), "{middle:?}");

    // `dray services restart web`: the same for one service.
    sampled_restart(
        &rack,
        &["services", "restart", "web", "-a", "bounce"],
        &middle,
        4,
    )
    .await;
    let app = client.app("bounce").await.unwrap();
    assert_eq!(app.release, r1, "a restart is no new release");
    assert_eq!(app.status, "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_services_run_one_process_per_instance_and_refuse_scale() {
    let _serial = SERIAL.lock().await;
    let rack = Rack::start().await;
    let client = rack.client();
    stdout_ok(&rack.dray(&["apps", "create", "watch"]));
    let manifest = web_manifest(
        1,
        r#"  mon:
    agent: true
    command: sh -c 'while true; do echo watching; sleep 1; done'
    scale:
      memory: 16
    termination:
      grace: 1
"#,
    );
    let r1 = import(&rack, "watch", &manifest);
    promote(&rack, "watch", &r1);
    let mon = settled(
        &client,
        "watch",
        "mon",
        Some(&r1),
        1,
        Duration::from_secs(30),
    )
    .await;

    // Refused, with an error that says why; nothing changes.
    let err = stderr_fail(&rack.dray(&["scale", "mon", "--count", "3", "-a", "watch"]));
    assert!(err.starts_with("ERROR: "), "{err}");
    assert!(err.contains("agent"), "{err}");
    // Still exactly one, the same one, for a while (an agent service is never scaled).
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let procs = client.processes("watch", Some("mon")).await.unwrap();
        assert_eq!(procs.len(), 1, "{procs:?}");
        assert_eq!(procs[0].id, mon[0].id);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let services = stdout_ok(&rack.dray(&["services", "-a", "watch"]));
    assert!(
        services
            .lines()
            .any(|l| l.split_whitespace().next() == Some("mon")),
        "{services}"
    );
    assert!(
        services
            .lines()
            .any(|l| l.split_whitespace().next() == Some("web")),
        "{services}"
    );
    // The web service next to it scales as usual.
    stdout_ok(&rack.dray(&["scale", "web", "--count", "2", "-a", "watch"]));
    settled(&client, "watch", "web", None, 2, Duration::from_secs(30)).await;
    assert_eq!(
        client.processes("watch", Some("mon")).await.unwrap().len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_liveness_restarts_the_process_and_says_why() {
    let _serial = SERIAL.lock().await;
    let rack = Rack::start_with(&["--crash-backoff-ms", "300"]).await;
    let client = rack.client();
    stdout_ok(&rack.dray(&["apps", "create", "alive"]));
    // /alive disappears 3 s after start; the readiness path stays.
    let manifest = r#"
services:
  web:
    command: sh -c 'mkdir -p /tmp/www; echo ok > /tmp/www/index.html; echo yes > /tmp/www/alive; (sleep 3; rm /tmp/www/alive) & exec httpd -f -p $PORT -h /tmp/www'
    port: 3000
    health:
      path: /index.html
      grace: 0
      interval: 1
      timeout: 1
    liveness:
      path: /alive
      grace: 1
      interval: 1
      timeout: 1
      successThreshold: 1
      failureThreshold: 2
    scale:
      memory: 16
    termination:
      grace: 1
"#;
    let r1 = import(&rack, "alive", manifest);
    promote(&rack, "alive", &r1);
    let p = eventually(
        "a restart after the liveness check failed",
        Duration::from_secs(40),
        || async {
            let procs = client.processes("alive", Some("web")).await.ok()?;
            procs.into_iter().find(|p| p.restarts >= 1)
        },
    )
    .await;
    let line = eventually(
        "a system line about the failed liveness check",
        Duration::from_secs(10),
        || async {
            let out = rack.dray(&["logs", "-a", "alive", "--no-follow"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.lines()
                .find(|l| {
                    l.contains("system/dray/alive") && l.contains(&p.id) && l.contains("liveness")
                })
                .map(str::to_string)
        },
    )
    .await;
    println!("liveness log line: {line}");
    // The reason is given (the check's result: a status code, a timeout, a refused connection).
    let reason = line
        .split_once("liveness")
        .map(|(_, rest)| rest.trim())
        .unwrap_or_default();
    assert!(reason.len() > 3, "no reason in {line:?}");
    // It keeps its id (a restart in place), and runs again.
    settled(
        &client,
        "alive",
        "web",
        Some(&r1),
        1,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(client.app("alive").await.unwrap().release, r1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_list_ready_service_processes_with_ports() {
    let _serial = SERIAL.lock().await;
    let rack = Rack::start().await;
    let client = rack.client();
    stdout_ok(&rack.dray(&["apps", "create", "ends"]));
    let manifest = web_manifest(
        2,
        r#"  worker:
    command: sh -c 'while true; do sleep 1; done'
    scale:
      memory: 16
    termination:
      grace: 1
"#,
    );
    let r1 = import(&rack, "ends", &manifest);
    promote(&rack, "ends", &r1);
    let webs = settled(
        &client,
        "ends",
        "web",
        Some(&r1),
        2,
        Duration::from_secs(30),
    )
    .await;
    settled(
        &client,
        "ends",
        "worker",
        Some(&r1),
        1,
        Duration::from_secs(30),
    )
    .await;
    // A one-off process of web is no endpoint.
    let oneoff = stdout_ok(&rack.dray(&["run", "-a", "ends", "-d", "web", "sleep", "60"]));
    let oneoff = oneoff.trim().to_string();

    let mut eps = client
        .endpoints("ends")
        .await
        .expect("GET /apps/ends/endpoints");
    eps.sort_by(|a, b| a.process.cmp(&b.process));
    let mut webs = webs;
    webs.sort_by(|a, b| a.id.cmp(&b.id));
    println!("endpoints: {eps:#?}");
    assert_eq!(eps.len(), 2, "{eps:?}");
    for (e, p) in eps.iter().zip(&webs) {
        assert_eq!(e.app, "ends");
        assert_eq!(e.service, "web");
        assert_eq!(e.process, p.id);
        assert_eq!(e.release, r1);
        assert_eq!(e.address, "127.0.0.1");
        assert_eq!(e.port.to_string(), p.ports[0], "{p:?}");
        assert!(!e.instance.is_empty(), "{e:?}");
        if !p.instance.is_empty() {
            assert_eq!(e.instance, p.instance);
        }
        assert!(e.healthy && !e.draining, "{e:?}");
    }
    assert!(eps
        .iter()
        .all(|e| e.process != oneoff && e.service != "worker"));

    // An app that does not exist.
    let err = client.endpoints("nope").await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err:?}");
    // ... because the app is missing, not the route.
    assert!(!err.to_string().contains("no such route"), "{err:?}");
    let err = client.get_json("/apps/nope/endpoints").await.unwrap_err();
    assert!(Client::is_not_found(&err), "{err:?}");
}

/// Promote `release` through the API and poll the app every 50 ms until it is running it;
/// returns how long that took.
async fn timed_promote(client: &Client, app: &str, release: &str) -> Duration {
    let t0 = Instant::now();
    client.promote(app, release, false, None).await.unwrap();
    loop {
        let a = client.app(app).await.unwrap();
        if a.status == "running" {
            assert_eq!(a.release, release, "{app} rolled back: {}", a.deploy_error);
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{app}: {release} was not deployed within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Promote `release` (which never gets healthy) without waiting, then [`timed_cancel_started`].
async fn timed_cancel(rack: &Rack, app: &str, release: &str, active: &str) -> Duration {
    rack.client()
        .promote(app, release, true, None)
        .await
        .unwrap();
    timed_cancel_started(rack, app, release, active).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_never_block_other_deploys() {
    let _serial = SERIAL.lock().await;
    let rack = Rack::start_with(&["--crash-backoff-ms", "300"]).await;
    let client = rack.client();
    let stuck_never = r#"
services:
  web:
    command: sh -c 'mkdir -p /tmp/www && exec httpd -f -p $PORT -h /tmp/www'
    port: 3000
    health:
      path: /never
      grace: 0
      interval: 1
      timeout: 1
    scale:
      memory: 16
    termination:
      grace: 1
"#;
    for app in ["ok", "stuck"] {
        stdout_ok(&rack.dray(&["apps", "create", app]));
    }
    let ok1 = import(&rack, "ok", &web_manifest(2, ""));
    promote(&rack, "ok", &ok1);
    let stuck1 = import(&rack, "stuck", &web_manifest(1, ""));
    promote(&rack, "stuck", &stuck1);

    // Baseline: nothing else on the rack.
    let ok2 = env_release(&rack, "ok", "X=2");
    let deploy_base = timed_promote(&client, "ok", &ok2).await;
    let stuck2 = import(&rack, "stuck", stuck_never);
    let cancel_base = timed_cancel(&rack, "stuck", &stuck2, &stuck1).await;
    settled(
        &client,
        "stuck",
        "web",
        Some(&stuck1),
        1,
        Duration::from_secs(30),
    )
    .await;

    // The bad apps: 10 processes that accept connections and never answer (each probe runs
    // into its 3 s timeout), a crash loop, and a deploy that never gets healthy.
    for app in ["slow", "loop"] {
        stdout_ok(&rack.dray(&["apps", "create", app]));
    }
    let looping = import(
        &rack,
        "loop",
        r#"
services:
  worker:
    command: sh -c 'sleep 2; exit 1'
    scale:
      count: 3
      memory: 16
    termination:
      grace: 1
"#,
    );
    // (Promoted first, while its processes are still up: a crash loop during its own deploy
    // would roll it back.)
    promote(&rack, "loop", &looping);
    let slow = import(
        &rack,
        "slow",
        r#"
services:
  web:
    command: sh -c 'exec nc -ll -p $PORT -e sleep 30'
    port: 3000
    health:
      path: /
      grace: 0
      interval: 1
      timeout: 3
    scale:
      count: 10
      memory: 16
    termination:
      grace: 1
"#,
    );
    client.promote("slow", &slow, true, None).await.unwrap();
    eventually(
        "slow's 10 processes started and loop crashing",
        Duration::from_secs(60),
        || async {
            let slow = client.processes("slow", Some("web")).await.ok()?;
            let looping = client.processes("loop", None).await.ok()?;
            (slow.len() == 10
                && slow
                    .iter()
                    .all(|p| p.status == "starting" || p.status == "unhealthy")
                && looping.iter().any(|p| p.restarts >= 1))
            .then_some(())
        },
    )
    .await;
    // Probes of slow are now hanging; give them a round.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // With them: the stuck deploy in progress while ok deploys, then cancelled.
    let stuck3 = import(&rack, "stuck", stuck_never);
    client.promote("stuck", &stuck3, true, None).await.unwrap();
    let ok3 = env_release(&rack, "ok", "X=3");
    let deploy_loaded = timed_promote(&client, "ok", &ok3).await;
    let cancel_loaded = timed_cancel_started(&rack, "stuck", &stuck3, &stuck1).await;
    println!(
        "ok deploy: baseline {deploy_base:?}, with the bad apps {deploy_loaded:?}; \
         cancel: baseline {cancel_base:?}, with the bad apps {cancel_loaded:?}"
    );
    // The rule: within 1 s of the baseline (absolute, which covers the noise of one health
    // interval of 1 s). A health check that holds up anything else costs seconds here: 10
    // probes of 3 s each in a row are 30 s.
    let slack = Duration::from_secs(1);
    assert!(
        deploy_loaded <= deploy_base + slack,
        "the ok deploy took {deploy_loaded:?} next to the bad apps, {deploy_base:?} alone"
    );
    assert!(
        cancel_loaded <= cancel_base + slack,
        "the cancel took {cancel_loaded:?} next to the bad apps, {cancel_base:?} alone"
    );
    // The bad apps are still what they were: slow still deploying, loop still looping.
    assert_eq!(client.app("slow").await.unwrap().status, "updating");
    assert!(client
        .processes("loop", None)
        .await
        .unwrap()
        .iter()
        .any(|p| p.restarts >= 2));
}

/// For a deploy of `release` that was promoted and never gets healthy: wait until its processes
/// run, then `dray apps cancel` and poll every 50 ms until the app is back on `active`; returns
/// how long the cancel took.
async fn timed_cancel_started(rack: &Rack, app: &str, release: &str, active: &str) -> Duration {
    let client = rack.client();
    eventually(
        &format!("{release} of {app} to be deploying with running processes"),
        Duration::from_secs(30),
        || async {
            let a = client.app(app).await.ok()?;
            let procs = client.processes(app, Some("web")).await.ok()?;
            (a.status == "updating"
                && procs
                    .iter()
                    .any(|p| p.release == release && p.status != "pending"))
            .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t0 = Instant::now();
    assert_eq!(
        stdout_ok(&rack.dray(&["apps", "cancel", app])),
        format!("Cancelling deployment of {app}... OK\n")
    );
    loop {
        let a = client.app(app).await.unwrap();
        if a.status == "running" {
            assert_eq!(a.release, active);
            assert_eq!(a.deploy_error, "the deployment was cancelled");
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{app}: the cancel did not roll back within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_progress_reports_the_deploy() {
    let _serial = SERIAL.lock().await;
    let rack = Rack::start().await;
    let client = rack.client();
    stdout_ok(&rack.dray(&["apps", "create", "prog"]));
    let r1 = import(&rack, "prog", &web_manifest(3, ""));
    promote(&rack, "prog", &r1);
    let web = |a: &dray_sdk::App| {
        a.progress
            .iter()
            .find(|p| p.service == "web")
            .cloned()
            .unwrap_or_else(|| panic!("no web in the progress of {a:?}"))
    };
    let a = client.app("prog").await.unwrap();
    assert_eq!(a.deploying, "", "{a:?}");
    let p = web(&a);
    assert_eq!((p.desired, p.updated, p.healthy), (3, 3, 3), "{a:?}");
    eventually("old processes gone", Duration::from_secs(30), || async {
        let a = client.app("prog").await.ok()?;
        (web(&a).old == 0).then_some(())
    })
    .await;

    // While a deploy runs, the app names the release being deployed.
    let r2 = env_release(&rack, "prog", "X=2");
    client.promote("prog", &r2, true, None).await.unwrap();
    let seen_updating = std::cell::Cell::new(false);
    let a = eventually("r2 active", Duration::from_secs(60), || {
        let (client, r2, seen) = (&client, &r2, &seen_updating);
        async move {
            let a = client.app("prog").await.ok()?;
            if a.status == "updating" {
                seen.set(true);
                assert_eq!(&a.deploying, r2, "{a:?}");
                let p = web(&a);
                assert_eq!(p.desired, 3, "{a:?}");
                assert!(p.updated <= 3 && p.healthy <= p.updated, "{a:?}");
            }
            (a.status == "running").then_some(a)
        }
    })
    .await;
    assert!(seen_updating.get(), "the deploy was never seen in progress");
    assert_eq!(a.release, r2);

    // `dray releases promote --json` prints the app, progress included.
    let r3 = env_release(&rack, "prog", "X=3");
    let out = stdout_ok(&rack.dray(&["releases", "promote", &r3, "-a", "prog", "--json"]));
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    assert_eq!(v["name"], "prog", "{v}");
    assert_eq!(v["release"], r3.as_str(), "{v}");
    assert_eq!(v["status"], "running", "{v}");
    let web_json = v["progress"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["service"] == "web"))
        .unwrap_or_else(|| panic!("no web progress in {v}"));
    assert_eq!(web_json["desired"], 3, "{v}");
    assert_eq!(web_json["updated"], 3, "{v}");
    assert_eq!(web_json["healthy"], 3, "{v}");
    eventually(
        "old processes gone after r3",
        Duration::from_secs(30),
        || async {
            let a = client.app("prog").await.ok()?;
            let p = web(&a);
            (p.old == 0 && (p.desired, p.updated, p.healthy) == (3, 3, 3)).then_some(())
        },
    )
    .await;
}
