//! Container lifecycle benchmark against a private containerd (harness = false):
//! create+start and the full lifecycle (create, start, wait, delete) through `dray-runtime`,
//! with and without a `binary://` logger, with a shim of its own and joining the running shim
//! of another container (as the agent's one-off processes do), side by side with `ctr run --rm`
//! of the same image and command on the same daemon.
//! Prints medians; asserts nothing (target: create+start <= 60 ms on the 2-core machine).

use std::time::{Duration, Instant};

use dray_runtime::testing::{busybox_image, TestContainerd, BUSYBOX_IMAGE};
use dray_runtime::ContainerSpec;

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let n = v.len();
    println!(
        "{name:<44} n={n:<3} median {:>6.1} ms   p90 {:>6.1} ms   min {:>6.1} ms   max {:>6.1} ms",
        ms(v[n / 2]),
        ms(v[(n * 9 / 10).min(n - 1)]),
        ms(v[0]),
        ms(v[n - 1])
    );
}

fn main() {
    let n: usize = std::env::var("DRAY_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(25);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(async {
        let ctd = TestContainerd::start().await;
        let r = ctd.runtime().await;
        let tmp = tempfile::tempdir().expect("tempdir");
        let archive = busybox_image(tmp.path());
        let t = Instant::now();
        r.import_archive(&archive, None).await.expect("import");
        println!(
            "import of the busybox OCI archive (fresh namespace): {:.1} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
        let t = Instant::now();
        r.import_archive(&archive, None).await.expect("re-import");
        println!(
            "re-import (no-op): {:.1} ms",
            t.elapsed().as_secs_f64() * 1e3
        );

        let spec = |id: String| {
            let mut s = ContainerSpec::new(id, BUSYBOX_IMAGE);
            s.args = vec!["/bin/true".into()];
            s
        };
        for i in 0..3 {
            let id = format!("warm-{i}");
            r.run(&spec(id.clone())).await.expect("run");
            r.wait(&id).await.expect("wait");
            r.remove(&id).await.expect("remove");
        }
        let mut create_start = Vec::new();
        let mut full = Vec::new();
        for i in 0..n {
            let id = format!("bench-{i}");
            let t = Instant::now();
            r.run(&spec(id.clone())).await.expect("run");
            create_start.push(t.elapsed());
            assert_eq!(r.wait(&id).await.expect("wait"), 0);
            r.remove(&id).await.expect("remove");
            full.push(t.elapsed());
        }
        // The same with output through a `binary://` logger started by the shim (what every
        // Dray process has): the difference is the logger's start, which tasks.create waits for.
        let logger = std::path::PathBuf::from(env!("CARGO_BIN_EXE_dray-test-logger"));
        let log_file = tmp.path().join("bench-logger.log");
        let mut with_logger = Vec::new();
        for i in 0..n {
            let id = format!("bench-log-{i}");
            let mut s = spec(id.clone());
            s.log = dray_runtime::Log::Binary {
                path: logger.clone(),
                args: vec![("file".into(), log_file.display().to_string())],
            };
            let t = Instant::now();
            r.run(&s).await.expect("run with a logger");
            with_logger.push(t.elapsed());
            r.wait(&id).await.expect("wait");
            r.remove(&id).await.expect("remove");
        }
        // Joining a running shim (`shim_of`, as a one-off joins its service's process), against a
        // shim of its own, interleaved so both see the same machine; both with the logger.
        let mut host = spec("shim-host".into());
        host.args = vec!["/bin/sleep".into(), "3600".into()];
        r.run(&host).await.expect("run the shim's host");
        let mut own = Vec::new();
        let mut joined = Vec::new();
        for i in 0..2 * n {
            let id = format!("bench-shim-{i}");
            let mut s = spec(id.clone());
            s.log = dray_runtime::Log::Binary {
                path: logger.clone(),
                args: vec![("file".into(), log_file.display().to_string())],
            };
            if i % 2 == 1 {
                s.shim_of = Some("shim-host".into());
            }
            let t = Instant::now();
            r.run(&s).await.expect("run");
            let v = if i % 2 == 1 { &mut joined } else { &mut own };
            v.push(t.elapsed());
            assert_eq!(r.wait(&id).await.expect("wait"), 0);
            r.remove(&id).await.expect("remove");
        }
        r.stop("shim-host", Duration::from_millis(100))
            .await
            .expect("stop the shim's host");
        r.remove("shim-host").await.expect("remove the shim's host");
        let mut ctr = Vec::new();
        for i in 0..n {
            let t = Instant::now();
            let status = ctd
                .ctr()
                .args([
                    "run",
                    "--rm",
                    BUSYBOX_IMAGE,
                    &format!("ctr-{i}"),
                    "/bin/true",
                ])
                .status()
                .expect("ctr");
            ctr.push(t.elapsed());
            assert!(status.success(), "ctr run failed");
        }
        println!();
        stats("dray-runtime create+start (run)", create_start);
        stats("dray-runtime full lifecycle (run+wait+remove)", full);
        stats("dray-runtime create+start, binary:// logger", with_logger);
        stats("create+start, logger, own shim (interleaved)", own);
        stats("create+start, logger, joining a running shim", joined);
        stats("ctr run --rm (process wall, full lifecycle)", ctr);
    });
}
