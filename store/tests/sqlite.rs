//! Tests of the SQLite backend: the conformance suite, plus what only an embedded store has
//! (reopening, schema versions, crash durability, lagging watchers, closing).
//!
//! The crash test re-executes this test binary as a child process running [`crash_child`],
//! which is a no-op unless `DRAY_STORE_CRASH_CHILD_DB` is set.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dray_store::sqlite::{SqliteOptions, SqliteStore, SCHEMA_VERSION};
use dray_store::{conformance, EventKind, Op, Store, StoreError, Txn};
use tokio::time::timeout;

const CHILD_ENV: &str = "DRAY_STORE_CRASH_CHILD_DB";

fn open(path: &Path) -> SqliteStore {
    match SqliteStore::open(path) {
        Ok(store) => store,
        Err(e) => panic!("open {}: {e}", path.display()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let next = AtomicUsize::new(0);
    conformance::run_all(|| {
        let path = dir
            .path()
            .join(format!("{}.db", next.fetch_add(1, Ordering::Relaxed)));
        async move { open(&path) }
    })
    .await;
}

/// The suite again on a single-threaded runtime with every knob at its smallest useful value.
#[tokio::test(flavor = "current_thread")]
async fn conformance_suite_small_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let next = AtomicUsize::new(0);
    conformance::run_all(|| {
        let path = dir
            .path()
            .join(format!("{}.db", next.fetch_add(1, Ordering::Relaxed)));
        let options = SqliteOptions {
            read_connections: 1,
            max_batch: 1,
            watch_buffer: 64,
            history_revisions: 1000,
            ..SqliteOptions::default()
        };
        async move { SqliteStore::open_with(&path, options).expect("open") }
    })
    .await;
}

#[tokio::test]
async fn reopen_keeps_data_and_revision() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The parent directories do not exist yet.
    let path = dir.path().join("nested/dir/store.db");
    let (r1, r2, r4) = {
        let store = open(&path);
        let r1 = store.put("a", b"1".to_vec()).await.expect("put a");
        let r2 = store.put("b", b"2".to_vec()).await.expect("put b");
        let r3 = store
            .txn(Txn {
                compare: vec![],
                success: vec![Op::Put("c".into(), b"3".to_vec())],
                failure: vec![],
            })
            .await
            .expect("txn")
            .revision;
        let r4 = store.delete("b").await.expect("delete").expect("b existed");
        assert_eq!((r1, r2, r3, r4), (1, 2, 3, 4));
        store.compact(r2).await.expect("compact");
        (r1, r2, r4)
    };

    let store = open(&path);
    // The revision is the delete's, although no key carries it any more.
    assert_eq!(store.revision().await.expect("revision"), r4);
    assert_eq!(
        store.get("a").await.expect("get").expect("a").mod_revision,
        r1
    );
    assert_eq!(store.get("b").await.expect("get"), None);
    assert_eq!(store.get("c").await.expect("get").expect("c").value, b"3");
    // The compaction survived too.
    assert!(matches!(
        store.watch("", r1).await,
        Err(StoreError::Compacted {
            requested: 1,
            compacted: 2
        })
    ));
    let mut w = store.watch("", r2).await.expect("watch");
    let event = w.recv().await.expect("event").expect("ok");
    assert_eq!(
        (event.kind, event.kv.key.as_str(), event.kv.mod_revision),
        (EventKind::Put, "c", 3)
    );
    let event = w.recv().await.expect("event").expect("ok");
    assert_eq!(
        (event.kind, event.kv.key.as_str(), event.kv.mod_revision),
        (EventKind::Delete, "b", 4)
    );

    // Compacting everything and reopening still never moves the revision back.
    store.compact(r4).await.expect("compact all");
    drop(w);
    drop(store);
    let store = open(&path);
    assert_eq!(store.revision().await.expect("revision"), r4);
    assert_eq!(store.put("d", Vec::new()).await.expect("put"), r4 + 1);
}

fn user_version(path: &Path) -> i64 {
    let conn = rusqlite::Connection::open(path).expect("open raw");
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
        .expect("user_version")
}

#[tokio::test]
async fn migrations_are_idempotent_on_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    {
        let store = open(&path);
        store.put("k", b"v".to_vec()).await.expect("put");
    }
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    for _ in 0..3 {
        let store = open(&path);
        assert_eq!(store.get("k").await.expect("get").expect("k").value, b"v");
        assert_eq!(store.revision().await.expect("revision"), 1);
        drop(store);
        assert_eq!(user_version(&path), SCHEMA_VERSION);
    }
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    drop(open(&path));
    {
        let conn = rusqlite::Connection::open(&path).expect("open raw");
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .expect("set user_version");
    }
    match SqliteStore::open(&path) {
        Err(StoreError::SchemaTooNew { found, supported }) => {
            assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    // Refusing did not touch the file.
    assert_eq!(user_version(&path), SCHEMA_VERSION + 1);
}

#[tokio::test]
async fn not_a_database_is_a_backend_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    std::fs::write(
        &path,
        b"this is not an sqlite database, just some text......",
    )
    .expect("write");
    assert!(matches!(
        SqliteStore::open(&path),
        Err(StoreError::Backend(_))
    ));
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    let store = open(&path);
    store.put("secret", b"x".to_vec()).await.expect("put");
    for file in ["store.db", "store.db-wal"] {
        let mode = std::fs::metadata(dir.path().join(file))
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file} has mode {mode:o}");
    }
}

#[tokio::test]
async fn compaction_boundaries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir.path().join("store.db"));
    for i in 0..5 {
        store.put(&format!("k{i}"), Vec::new()).await.expect("put");
    }
    // History at or below the compacted revision is gone: `after = 2` needs revision 3.
    store.compact(3).await.expect("compact");
    match store.watch("", 2).await {
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            assert_eq!((requested, compacted), (2, 3));
        }
        other => panic!("expected Compacted, got {:?}", other.map(|_| ())),
    }
    let mut w = store
        .watch("", 3)
        .await
        .expect("watch at the compacted revision");
    assert_eq!(
        w.recv().await.expect("event").expect("ok").kv.mod_revision,
        4
    );
    // Compacting backwards is a no-op; compacting the future is refused.
    store.compact(1).await.expect("compact backwards");
    assert!(matches!(
        store.compact(6).await,
        Err(StoreError::Backend(_))
    ));
    assert!(store.watch("", 3).await.is_ok());
}

#[tokio::test]
async fn history_is_compacted_automatically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    let options = SqliteOptions {
        history_revisions: 10,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open_with(&path, options).expect("open");
    let mut last = 0;
    for i in 0..50 {
        last = store.put(&format!("k{i}"), Vec::new()).await.expect("put");
    }
    assert!(matches!(
        store.watch("", 0).await,
        Err(StoreError::Compacted { .. })
    ));
    let mut w = store
        .watch("", last - 10)
        .await
        .expect("watch within history");
    for rev in last - 9..=last {
        assert_eq!(
            w.recv().await.expect("event").expect("ok").kv.mod_revision,
            rev
        );
    }
    let conn = rusqlite::Connection::open(&path).expect("open raw");
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM log", [], |row| row.get(0))
        .expect("count");
    assert_eq!(rows, 10, "the log keeps only the configured history");
    assert_eq!(store.range("").await.expect("range").kvs.len(), 50);
}

#[tokio::test]
async fn a_lagging_watcher_is_cut_off_and_can_resume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = SqliteOptions {
        watch_buffer: 2,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open_with(&dir.path().join("store.db"), options).expect("open");
    let start = store.put("other", Vec::new()).await.expect("put");
    let mut w = store.watch("/k/", start).await.expect("watch");
    let mut revisions = Vec::new();
    for i in 0..50 {
        revisions.push(
            store
                .put(&format!("/k/{i:02}"), Vec::new())
                .await
                .expect("put"),
        );
    }
    // Nobody read the watch while 50 revisions went by: it holds what fitted, then the error.
    let mut seen = Vec::new();
    let last_seen = loop {
        match timeout(Duration::from_secs(5), w.recv()).await {
            Ok(Some(Ok(event))) => seen.push(event.kv.mod_revision),
            Ok(Some(Err(StoreError::WatchLagged { last_seen }))) => break last_seen,
            other => panic!("expected events then WatchLagged, got {other:?}"),
        }
    };
    assert!(
        seen.len() < revisions.len(),
        "the watcher should have lagged"
    );
    assert_eq!(
        seen,
        revisions[..seen.len()],
        "events before the cut are complete"
    );
    assert_eq!(last_seen, seen.last().copied().unwrap_or(start));
    assert!(
        w.recv().await.is_none(),
        "the stream ends after WatchLagged"
    );

    // Watching again from last_seen delivers the rest, without gap or duplicate.
    let mut w = store.watch("/k/", last_seen).await.expect("re-watch");
    for revision in &revisions[seen.len()..] {
        let event = timeout(Duration::from_secs(5), w.recv())
            .await
            .expect("in time")
            .expect("open")
            .expect("ok");
        assert_eq!(event.kv.mod_revision, *revision);
    }
}

#[tokio::test]
async fn close_refuses_requests_and_ends_watches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir.path().join("store.db"));
    let mut w = store.watch("", 0).await.expect("watch");
    store.put("a", Vec::new()).await.expect("put");
    store.close();
    store.close(); // idempotent
    assert!(matches!(
        store.put("b", Vec::new()).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(store.get("a").await, Err(StoreError::Closed)));
    assert!(matches!(store.watch("", 0).await, Err(StoreError::Closed)));
    let mut events = 0;
    loop {
        match timeout(Duration::from_secs(5), w.recv()).await {
            Ok(Some(Ok(_))) => events += 1,
            Ok(None) => break,
            other => panic!("expected the watch to end, got {other:?}"),
        }
    }
    assert!(events <= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_each_get_their_own_revision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(open(&dir.path().join("store.db")));
    let mut tasks = Vec::new();
    for t in 0..64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut revisions = Vec::new();
            for i in 0..5 {
                revisions.push(
                    store
                        .put(&format!("t{t}/{i}"), vec![t as u8])
                        .await
                        .expect("put"),
                );
            }
            revisions
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("task"));
    }
    all.sort_unstable();
    assert_eq!(all, (1..=320).collect::<Vec<i64>>());
    assert_eq!(store.range("").await.expect("range").kvs.len(), 320);
}

// ---------------------------------------------------------------------------------------------
// Crash durability

fn random_below(n: u64) -> u64 {
    RandomState::new().hash_one(Instant::now()) % n
}

/// The child side of [`acknowledged_writes_survive_sigkill`]: writes keys from 8 tasks forever,
/// printing `ACK <key> <revision>` after each acknowledged put. Does nothing in a normal run.
#[test]
fn crash_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let store = Arc::new(open(Path::new(&path)));
        let pid = std::process::id();
        let mut tasks = Vec::new();
        for w in 0..8 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                for i in 0u64.. {
                    let key = format!("/crash/{pid}/w{w}/{i:08}");
                    let revision = store.put(&key, key.as_bytes().to_vec()).await.expect("put");
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {key} {revision}").expect("stdout");
                    out.flush().expect("flush");
                }
            }));
        }
        for task in tasks {
            task.await.expect("writer");
        }
    });
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("crash.db");
    let exe = std::env::current_exe().expect("current_exe");
    // Two rounds: the second one recovers the first one's killed database, then is killed too.
    for round in 0..2 {
        let stderr_path = dir.path().join(format!("child-{round}.stderr"));
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &db)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(ack) = line.strip_prefix("ACK ") {
                    if lines_tx.send(ack.to_owned()).is_err() {
                        break;
                    }
                }
            }
        });

        // Kill after a random number of acknowledgements plus a random delay, so the kill lands
        // at an arbitrary point of the write path. Waiting for acknowledgements (not for time)
        // keeps this independent of how fast the machine is.
        let wanted = 100 + random_below(200) as usize;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut acked = Vec::new();
        while acked.len() < wanted {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => acked.push(line),
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                    panic!(
                        "child acknowledged only {} writes; its stderr:\n{log}",
                        acked.len()
                    );
                }
            }
        }
        std::thread::sleep(Duration::from_millis(random_below(50)));
        child.kill().expect("SIGKILL the child");
        let status = child.wait().expect("wait");
        assert!(
            !status.success(),
            "the child must have been killed, not exit: {status}"
        );
        reader.join().expect("reader");
        acked.extend(lines.try_iter());

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let store = open(&db);
            let mut highest = 0;
            for line in &acked {
                let (key, revision) = line.rsplit_once(' ').expect("ACK <key> <revision>");
                let revision: i64 = revision.parse().expect("revision");
                highest = highest.max(revision);
                let kv = store
                    .get(key)
                    .await
                    .expect("get")
                    .unwrap_or_else(|| panic!("acknowledged write {key}@{revision} was lost"));
                assert_eq!(kv.value, key.as_bytes());
                assert_eq!(kv.mod_revision, revision);
            }
            assert!(store.revision().await.expect("revision") >= highest);
            // The recovered store still works.
            assert!(store.put("/after-crash", Vec::new()).await.expect("put") > highest);
        });
        eprintln!(
            "round {round}: {} acknowledged writes survived SIGKILL",
            acked.len()
        );
    }
}
