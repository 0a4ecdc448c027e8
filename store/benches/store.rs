//! Throughput of the SQLite store with fsync on (`synchronous=FULL`), as a small table.
//!
//! Run with `cargo bench -p dray-store`. Set `DRAY_BENCH_DIR` to put the database on a
//! particular disk (default: the system temp dir; a tmpfs there makes fsync free and the write
//! numbers meaningless). Each measurement runs for a fixed time, so the whole bench takes about
//! ten seconds. This file must never assert anything about the numbers: it only reports them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dray_store::sqlite::SqliteStore;
use dray_store::Store;

const PHASE: Duration = Duration::from_secs(2);

struct Row {
    name: &'static str,
    ops: u64,
    elapsed: Duration,
}

fn main() {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            std::process::exit(1);
        }
    };
    let base = std::env::var_os("DRAY_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = match tempfile::tempdir_in(&base) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("cannot create a directory in {}: {e}", base.display());
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(dir.path())) {
        eprintln!("bench failed: {e}");
        std::process::exit(1);
    }
}

async fn run(dir: &std::path::Path) -> Result<(), dray_store::StoreError> {
    let store = Arc::new(SqliteStore::open(&dir.join("bench.db"))?);
    let value = vec![b'x'; 256];
    let mut rows = Vec::new();

    // Sequential puts: one writer, so one commit (one fsync) per put.
    let start = Instant::now();
    let mut ops = 0;
    while start.elapsed() < PHASE {
        store.put(&format!("/seq/{ops:08}"), value.clone()).await?;
        ops += 1;
    }
    rows.push(Row {
        name: "sequential puts (1 writer)",
        ops,
        elapsed: start.elapsed(),
    });

    // Concurrent puts: 64 writers; the writer thread group-commits whatever is queued.
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..64 {
        let store = Arc::clone(&store);
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mut ops = 0u64;
            while start.elapsed() < PHASE {
                store
                    .put(&format!("/conc/{w:02}/{ops:08}"), value.clone())
                    .await?;
                ops += 1;
            }
            Ok::<u64, dray_store::StoreError>(ops)
        }));
    }
    let mut ops = 0;
    for task in tasks {
        ops += task
            .await
            .map_err(|e| dray_store::StoreError::Backend(e.to_string()))??;
    }
    rows.push(Row {
        name: "concurrent puts (64 writers)",
        ops,
        elapsed: start.elapsed(),
    });

    // Point reads of existing keys, from 8 tasks.
    let keys = store.range("/seq/").await?.kvs.len().max(1) as u64;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for r in 0..8u64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut ops = 0u64;
            while start.elapsed() < PHASE {
                let key = format!("/seq/{:08}", (ops * 8 + r) % keys);
                if store.get(&key).await?.is_none() {
                    return Err(dray_store::StoreError::Backend(format!("{key} missing")));
                }
                ops += 1;
            }
            Ok(ops)
        }));
    }
    let mut ops = 0;
    for task in tasks {
        ops += task
            .await
            .map_err(|e| dray_store::StoreError::Backend(e.to_string()))??;
    }
    rows.push(Row {
        name: "gets (8 readers)",
        ops,
        elapsed: start.elapsed(),
    });

    // Ranges of 100 keys, from 8 tasks.
    for i in 0..100 {
        store.put(&format!("/range/{i:03}"), value.clone()).await?;
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut ops = 0u64;
            while start.elapsed() < PHASE {
                let n = store.range("/range/").await?.kvs.len();
                if n != 100 {
                    return Err(dray_store::StoreError::Backend(format!(
                        "range returned {n}"
                    )));
                }
                ops += 1;
            }
            Ok(ops)
        }));
    }
    let mut ops = 0;
    for task in tasks {
        ops += task
            .await
            .map_err(|e| dray_store::StoreError::Backend(e.to_string()))??;
    }
    rows.push(Row {
        name: "ranges of 100 keys (8 readers)",
        ops,
        elapsed: start.elapsed(),
    });

    println!(
        "dray-store SQLite backend, synchronous=FULL, 256-byte values, {}",
        dir.display()
    );
    println!(
        "{:<32} {:>10} {:>12} {:>12}",
        "operation", "ops", "ops/s", "µs/op"
    );
    for row in rows {
        let secs = row.elapsed.as_secs_f64();
        let per_sec = row.ops as f64 / secs;
        println!(
            "{:<32} {:>10} {:>12.0} {:>12.1}",
            row.name,
            row.ops,
            per_sec,
            1e6 / per_sec
        );
    }
    Ok(())
}
