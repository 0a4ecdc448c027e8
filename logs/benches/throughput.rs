//! Benchmark of the logger process and the readers: lines/s and MB/s through a real `dray-logger`
//! (spawned like the containerd shim does, default rotation 10 x 10 MB), full-directory read speed,
//! and the latency from a write into the container's stdout pipe to the line arriving through
//! `dray_logs::follow` (median and p90).
//!
//! Run with `cargo bench -p dray-logs`. It owns only a temporary directory and its child processes.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use dray_logs::{read, ReadOptions};
use support::spawn_logger;

fn throughput(label: &str, line_len: usize, total_bytes: usize) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("p");
    let mut logger = spawn_logger(&["dir", dir.to_str().expect("utf-8 path")]);
    logger.wait_ready();
    let mut line = "x".repeat(line_len - 1);
    line.push('\n');
    let per_chunk = (256 * 1024 / line_len).max(1);
    let chunk = line.repeat(per_chunk);
    let chunks = total_bytes / chunk.len();
    let lines = (chunks * per_chunk) as f64;
    let bytes = (chunks * chunk.len()) as f64;
    let start = Instant::now();
    for _ in 0..chunks {
        logger.out().write_all(chunk.as_bytes()).expect("write");
    }
    let status = logger.finish();
    let secs = start.elapsed().as_secs_f64();
    assert!(status.success());
    println!(
        "logger {label:<22} {:>10.0} lines/s {:>8.1} MB/s  ({} lines, {:.0} MB in {:.2} s)",
        lines / secs,
        bytes / secs / 1e6,
        lines as u64,
        bytes / 1e6,
        secs
    );

    let start = Instant::now();
    let all = read(&dir, &ReadOptions::default()).expect("read");
    let secs = start.elapsed().as_secs_f64();
    println!(
        "read   {label:<22} {:>10.0} lines/s  ({} lines kept after rotation, {:.3} s)",
        all.len() as f64 / secs,
        all.len(),
        secs
    );
    let start = Instant::now();
    let tail = read(
        &dir,
        &ReadOptions {
            tail: Some(100),
            ..Default::default()
        },
    )
    .expect("read");
    assert_eq!(tail.len(), 100);
    println!(
        "read   {label:<22} tail=100 in {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
}

fn follow_latency(samples: usize) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("p");
    let mut logger = spawn_logger(&["dir", dir.to_str().expect("utf-8 path")]);
    logger.wait_ready();
    let mut rx = dray_logs::follow(&dir, ReadOptions::default()).expect("follow");
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples {
        // Desynchronise from the follower's 100 ms poll.
        std::thread::sleep(Duration::from_millis(17 + (i as u64 * 37) % 100));
        let msg = format!("ping {i}");
        let start = Instant::now();
        logger
            .out()
            .write_all(format!("{msg}\n").as_bytes())
            .expect("write");
        loop {
            match rx.try_recv() {
                Ok(l) if l.message == msg => break,
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_micros(200)),
            }
            assert!(start.elapsed() < Duration::from_secs(5), "line not seen");
        }
        lat.push(start.elapsed());
    }
    drop(rx);
    assert!(logger.finish().success());
    lat.sort();
    println!(
        "follow latency (poll {} ms, {samples} samples): median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        dray_logs::DEFAULT_FOLLOW_INTERVAL.as_millis(),
        lat[samples / 2].as_secs_f64() * 1e3,
        lat[samples * 9 / 10].as_secs_f64() * 1e3,
        lat[samples - 1].as_secs_f64() * 1e3
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing useful: keep it quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let mb = if quick { 4_000_000 } else { 200_000_000 };
    throughput("100-byte lines", 100, mb);
    throughput("1 KiB lines", 1024, mb);
    follow_latency(if quick { 5 } else { 40 });
}
