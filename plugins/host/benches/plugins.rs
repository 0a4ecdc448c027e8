//! Plugin host benchmarks (harness = false): load from the compiled cache,
//! instantiate, and a `plan` call (raw, and through the host's actor with
//! validation). Prints median and p99 of each.
//!
//! Builds the postgres plugin for wasm32-wasip2 first (like the tests).
//! Run: `cargo bench -p dray-plugins --bench plugins`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use dray_plugins::__bench::Probe;
use dray_plugins::types::{KeyValue, ResourceSpec};
use dray_plugins::{Limits, MemoryState, PluginHost};

fn measure(name: &str, iterations: usize, target: Option<Duration>, mut f: impl FnMut()) {
    for _ in 0..iterations.min(20) {
        f();
    }
    let mut samples: Vec<Duration> = (0..iterations)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    samples.sort();
    let median = samples[samples.len() / 2];
    let p99 = samples[(samples.len() * 99 / 100).min(samples.len() - 1)];
    let verdict = match target {
        Some(t) if median <= t => format!("target <= {t:?}: met"),
        Some(t) => format!("target <= {t:?}: MISSED"),
        None => String::new(),
    };
    println!("{name:<40} n={iterations:<6} median={median:>10.2?} p99={p99:>10.2?} {verdict}");
}

fn main() {
    let wasm = common::wasm("postgres");
    let dir = tempfile::tempdir().unwrap();
    let host = PluginHost::new(
        dir.path().to_path_buf(),
        Limits::default(),
        Arc::new(MemoryState::new()),
    )
    .unwrap();
    let t = Instant::now();
    let mut probe = Probe::new(&host, &wasm).unwrap();
    println!(
        "postgres.wasm: {} bytes; first compile + describe: {:.2?}",
        wasm.len(),
        t.elapsed()
    );

    let spec = ResourceSpec {
        app: "shop".into(),
        name: "database".into(),
        type_name: "postgres".into(),
        options: vec![KeyValue {
            key: "version".into(),
            value: "16".into(),
        }],
        image: None,
        port: 15432,
    };

    measure(
        "load from cache (deserialize+link)",
        200,
        Some(Duration::from_millis(5)),
        || probe.load_from_cache(),
    );
    measure(
        "instantiate (store + instance + describe)",
        500,
        None,
        || probe.instantiate(),
    );
    probe.instantiate();
    measure(
        "plan call (raw, live instance)",
        5000,
        Some(Duration::from_micros(50)),
        || {
            std::hint::black_box(probe.plan(&spec));
        },
    );

    host.install(&wasm).unwrap();
    let handle = host.resource_plugin_for("postgres").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    measure(
        "plan call (host: actor + validation)",
        5000,
        Some(Duration::from_micros(50)),
        || {
            std::hint::black_box(rt.block_on(handle.plan(spec.clone(), vec![])).unwrap());
        },
    );
}
