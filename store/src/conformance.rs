//! The backend-independent conformance suite for [`Store`].
//!
//! This module owns the executable definition of what a [`Store`] must do; every backend runs it
//! from its own tests. It must never depend on a particular backend, assume it has the store to
//! itself, or rely on timing: each case writes only under its own [`unique_prefix`], compares
//! revisions relative to the ones it was given (another writer may bump the global revision, as
//! happens on a shared etcd), never lists more than its prefix except to check that `""` covers
//! it, and checks "nothing else happened" by writing a sentinel and expecting it next rather than
//! by waiting.
//!
//! The cases panic on failure (they are test assertions). Run them all with [`run_all`]:
//!
//! ```no_run
//! # async fn example() {
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use dray_store::{conformance, sqlite::SqliteStore};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let next = AtomicUsize::new(0);
//! conformance::run_all(|| {
//!     let path = dir.path().join(format!("{}.db", next.fetch_add(1, Ordering::Relaxed)));
//!     async move { SqliteStore::open(&path).unwrap() }
//! })
//! .await;
//! # }
//! ```
//!
//! or one at a time through [`cases`] or the individual `pub async fn`s. Running the suite needs
//! a Tokio runtime with the time driver (`#[tokio::test]` has it); the whole suite takes well
//! under five seconds on the SQLite backend.
//!
//! Compaction note: [`compaction`] compacts the store (on a shared etcd: the whole cluster) up to
//! a revision the case itself wrote; it only checks watches clearly below that revision, so it
//! holds for both "history `<= rev` is gone" and etcd's "the revision `rev` itself is kept".

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::timeout;

use crate::{
    Compare, Event, EventKind, KeyValue, Op, Revision, Store, StoreError, Txn, TxnResponse, Watch,
};

/// A boxed conformance case future.
pub type CaseFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// One conformance case: takes a store and panics if it misbehaves.
pub type Case = fn(Arc<dyn Store>) -> CaseFuture;

/// How long a case waits for one expected watch event before failing.
const EVENT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one case may take in total.
const CASE_TIMEOUT: Duration = Duration::from_secs(30);

/// Every conformance case, by name, in the order [`run_all`] runs them.
pub fn cases() -> Vec<(&'static str, Case)> {
    vec![
        ("put_get", |s| Box::pin(put_get(s))),
        ("delete", |s| Box::pin(delete(s))),
        ("range_prefix", |s| Box::pin(range_prefix(s))),
        ("txn_mod_revision", |s| Box::pin(txn_mod_revision(s))),
        ("txn_value", |s| Box::pin(txn_value(s))),
        ("txn_delete_prefix", |s| Box::pin(txn_delete_prefix(s))),
        ("txn_shared_revision", |s| Box::pin(txn_shared_revision(s))),
        ("watch_replay_then_live", |s| {
            Box::pin(watch_replay_then_live(s))
        }),
        ("watch_no_gap_under_load", |s| {
            Box::pin(watch_no_gap_under_load(s))
        }),
        ("watch_from_current", |s| Box::pin(watch_from_current(s))),
        ("watch_prefix_filter", |s| Box::pin(watch_prefix_filter(s))),
        ("watch_delete_events", |s| Box::pin(watch_delete_events(s))),
        ("compaction", |s| Box::pin(compaction(s))),
        ("concurrent_cas", |s| Box::pin(concurrent_cas(s))),
        ("revisions_monotonic", |s| Box::pin(revisions_monotonic(s))),
        ("large_value", |s| Box::pin(large_value(s))),
    ]
}

/// Run every case, each on a fresh store from `new_store` (which may also hand out the same
/// shared backend every time: cases use disjoint keys). Panics with the case's name on the first
/// failure.
pub async fn run_all<S, F, Fut>(mut new_store: F)
where
    S: Store,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    for (name, case) in cases() {
        let store: Arc<dyn Store> = Arc::new(new_store().await);
        run_case(name, case, store).await;
    }
}

/// Run one case on `store` in its own task, with a time limit, re-raising a failure with the
/// case's name.
pub async fn run_case(name: &str, case: Case, store: Arc<dyn Store>) {
    let task = tokio::spawn(case(store));
    match timeout(CASE_TIMEOUT, task).await {
        Err(_) => panic!("conformance case `{name}` timed out after {CASE_TIMEOUT:?}"),
        Ok(Err(e)) if e.is_panic() => {
            let payload = e.into_panic();
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("(non-string panic)");
            panic!("conformance case `{name}` failed: {message}");
        }
        Ok(Err(e)) => panic!("conformance case `{name}` was cancelled: {e}"),
        Ok(Ok(())) => {}
    }
}

/// A key prefix no other run or case uses: `/dray-conformance/<pid>-<time>-<n>/<name>/`.
pub fn unique_prefix(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "/dray-conformance/{}-{nanos}-{}/{name}/",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn ok<T>(result: Result<T, StoreError>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("{what}: unexpected error: {e}"),
    }
}

async fn get(store: &dyn Store, key: &str) -> KeyValue {
    match ok(store.get(key).await, &format!("get {key}")) {
        Some(kv) => kv,
        None => panic!("get {key}: expected the key to exist"),
    }
}

async fn put(store: &dyn Store, key: &str, value: &str) -> Revision {
    ok(
        store.put(key, value.as_bytes().to_vec()).await,
        &format!("put {key}"),
    )
}

async fn txn(store: &dyn Store, txn: Txn) -> TxnResponse {
    ok(store.txn(txn).await, "txn")
}

async fn watch(store: &dyn Store, prefix: &str, after: Revision) -> Watch {
    ok(
        store.watch(prefix, after).await,
        &format!("watch {prefix} after {after}"),
    )
}

async fn next_event(watch: &mut Watch) -> Event {
    match timeout(EVENT_TIMEOUT, watch.recv()).await {
        Err(_) => panic!("no watch event within {EVENT_TIMEOUT:?}"),
        Ok(None) => panic!("the watch ended unexpectedly"),
        Ok(Some(Err(e))) => panic!("the watch failed: {e}"),
        Ok(Some(Ok(event))) => event,
    }
}

/// Expect a put event of `key` = `value` at `revision`.
fn assert_put(event: &Event, key: &str, value: &str, revision: Revision) {
    assert_eq!(
        (
            event.kind,
            event.kv.key.as_str(),
            event.kv.value.as_slice(),
            event.kv.mod_revision
        ),
        (EventKind::Put, key, value.as_bytes(), revision),
        "expected put {key}={value} at revision {revision}, got {event:?}"
    );
}

/// Expect a delete event of `key` at `revision`.
fn assert_delete(event: &Event, key: &str, revision: Revision) {
    assert_eq!(
        (event.kind, event.kv.key.as_str(), event.kv.mod_revision),
        (EventKind::Delete, key, revision),
        "expected delete {key} at revision {revision}, got {event:?}"
    );
    assert!(
        event.kv.value.is_empty(),
        "a delete event carries no value: {event:?}"
    );
}

fn put_op(key: &str, value: &str) -> Op {
    Op::Put(key.to_owned(), value.as_bytes().to_vec())
}

// ---------------------------------------------------------------------------------------------
// Cases

/// Put, get and overwrite: values, `create_revision`, `mod_revision` and `version`.
pub async fn put_get(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let p = unique_prefix("put_get");
    let key = format!("{p}key");
    assert_eq!(ok(store.get(&key).await, "get missing"), None);
    let start = ok(store.revision().await, "revision");

    let r1 = put(store, &key, "v1").await;
    assert!(
        r1 > start,
        "a put moves the revision forward ({r1} after {start})"
    );
    let kv = get(store, &key).await;
    assert_eq!(
        kv,
        KeyValue {
            key: key.clone(),
            value: b"v1".to_vec(),
            create_revision: r1,
            mod_revision: r1,
            version: 1,
        }
    );

    let r2 = put(store, &key, "v2").await;
    assert!(r2 > r1);
    let kv = get(store, &key).await;
    assert_eq!(
        (
            kv.value.as_slice(),
            kv.create_revision,
            kv.mod_revision,
            kv.version
        ),
        (&b"v2"[..], r1, r2, 2)
    );

    // An empty value is a value, not a delete.
    let r3 = put(store, &key, "").await;
    assert!(r3 > r2);
    let kv = get(store, &key).await;
    assert_eq!(
        (
            kv.value.len(),
            kv.create_revision,
            kv.mod_revision,
            kv.version
        ),
        (0, r1, r3, 3)
    );

    // Another key is independent.
    let other = format!("{p}other");
    let r4 = put(store, &other, "x").await;
    let kv = get(store, &other).await;
    assert_eq!((kv.create_revision, kv.version), (r4, 1));
    assert_eq!(get(store, &key).await.mod_revision, r3);

    let now = ok(store.revision().await, "revision");
    assert!(
        now >= r4,
        "revision() {now} is behind an acknowledged write {r4}"
    );
}

/// Delete: `None` for a missing key, a new revision otherwise; re-creating starts a new
/// incarnation.
pub async fn delete(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let p = unique_prefix("delete");
    let key = format!("{p}key");
    assert_eq!(ok(store.delete(&key).await, "delete missing"), None);

    let r1 = put(store, &key, "v").await;
    put(store, &key, "v2").await;
    let r2 = match ok(store.delete(&key).await, "delete") {
        Some(r) => r,
        None => panic!("deleting an existing key must return its revision"),
    };
    assert!(r2 > r1);
    assert_eq!(ok(store.get(&key).await, "get deleted"), None);
    assert_eq!(ok(store.delete(&key).await, "delete twice"), None);
    let now = ok(store.revision().await, "revision");
    assert!(now >= r2, "revision() {now} went behind the delete at {r2}");

    let r3 = put(store, &key, "again").await;
    assert!(r3 > r2);
    let kv = get(store, &key).await;
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r3, r3, 1),
        "a re-created key starts over"
    );
}

/// Prefix ranges: sorted by bytes, exact prefix semantics, `""` means everything.
pub async fn range_prefix(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let p = unique_prefix("range");
    // Inserted out of order; includes keys that extend others and a non-ASCII key.
    let keys = ["b/c", "a", "é", "bc", "b", "c", "z", "b/"];
    let mut last = 0;
    for key in keys {
        last = put(store, &format!("{p}{key}"), key).await;
    }
    // A sibling whose name starts like the prefix without its trailing slash.
    let sibling = format!("{}x/k", p.trim_end_matches('/'));
    put(store, &sibling, "sibling").await;

    let names = |kvs: &[KeyValue]| -> Vec<String> {
        kvs.iter()
            .map(|kv| kv.key.strip_prefix(&p).unwrap_or(&kv.key).to_owned())
            .collect()
    };

    let all = ok(store.range(&p).await, "range prefix");
    // Byte order: '/' (0x2f) < 'c' (0x63) < 'z' (0x7a) < 'é' (0xc3 0xa9).
    assert_eq!(
        names(&all.kvs),
        ["a", "b", "b/", "b/c", "bc", "c", "z", "é"]
    );
    assert!(
        all.revision >= last,
        "range revision {} < last write {last}",
        all.revision
    );
    for kv in &all.kvs {
        let name = kv.key.strip_prefix(&p).unwrap_or(&kv.key);
        assert_eq!(kv.value, name.as_bytes(), "value of {}", kv.key);
        assert_eq!(kv.version, 1);
    }

    let b = ok(store.range(&format!("{p}b")).await, "range b");
    assert_eq!(names(&b.kvs), ["b", "b/", "b/c", "bc"]);
    let b_slash = ok(store.range(&format!("{p}b/")).await, "range b/");
    assert_eq!(names(&b_slash.kvs), ["b/", "b/c"]);
    let exact = ok(store.range(&format!("{p}z")).await, "range z");
    assert_eq!(names(&exact.kvs), ["z"]);
    let none = ok(store.range(&format!("{p}nothing")).await, "range nothing");
    assert!(none.kvs.is_empty());
    assert!(none.revision >= last);

    let everything = ok(store.range("").await, "range everything");
    let ours: Vec<String> = everything
        .kvs
        .iter()
        .filter(|kv| kv.key.starts_with(&p))
        .map(|kv| kv.key.clone())
        .collect();
    assert_eq!(ours.len(), keys.len(), "range(\"\") must include every key");
    assert!(everything.kvs.iter().any(|kv| kv.key == sibling));
    assert!(
        everything
            .kvs
            .windows(2)
            .all(|w| w[0].key.as_bytes() < w[1].key.as_bytes()),
        "range(\"\") must be sorted by key bytes"
    );
}

/// Txn with `ModRevision` compares, including 0 = absent, and both branches.
pub async fn txn_mod_revision(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let p = unique_prefix("txn_mod_revision");
    let key = format!("{p}key");
    let marker = format!("{p}marker");

    // Create-if-absent succeeds once.
    let create = |value: &str| Txn {
        compare: vec![Compare::ModRevision(key.clone(), 0)],
        success: vec![put_op(&key, value)],
        failure: vec![put_op(&marker, value)],
    };
    let first = txn(store, create("first")).await;
    assert!(first.succeeded);
    let kv = get(store, &key).await;
    assert_eq!(
        (kv.value.as_slice(), kv.mod_revision),
        (&b"first"[..], first.revision)
    );

    // The second create fails and runs the failure branch instead.
    let second = txn(store, create("second")).await;
    assert!(!second.succeeded);
    assert!(second.revision > first.revision, "the failure branch wrote");
    assert_eq!(get(store, &key).await.value, b"first");
    assert_eq!(get(store, &marker).await.mod_revision, second.revision);

    // Compare-and-swap on the current mod_revision.
    let swap = txn(
        store,
        Txn {
            compare: vec![Compare::ModRevision(key.clone(), first.revision)],
            success: vec![put_op(&key, "swapped")],
            failure: vec![],
        },
    )
    .await;
    assert!(swap.succeeded);
    let kv = get(store, &key).await;
    assert_eq!(
        (kv.value.as_slice(), kv.mod_revision, kv.version),
        (&b"swapped"[..], swap.revision, 2)
    );

    // A stale mod_revision fails; with an empty failure branch nothing is written.
    let stale = txn(
        store,
        Txn {
            compare: vec![Compare::ModRevision(key.clone(), first.revision)],
            success: vec![put_op(&key, "stale")],
            failure: vec![],
        },
    )
    .await;
    assert!(!stale.succeeded);
    assert!(stale.revision >= swap.revision);
    let kv = get(store, &key).await;
    assert_eq!(
        (kv.value.as_slice(), kv.mod_revision),
        (&b"swapped"[..], swap.revision)
    );

    // Every compare must hold.
    let mixed = txn(
        store,
        Txn {
            compare: vec![
                Compare::ModRevision(key.clone(), swap.revision),
                Compare::ModRevision(marker.clone(), 0),
            ],
            success: vec![put_op(&key, "mixed")],
            failure: vec![],
        },
    )
    .await;
    assert!(!mixed.succeeded);
    assert_eq!(get(store, &key).await.value, b"swapped");

    // After a delete, ModRevision 0 holds again.
    ok(store.delete(&key).await, "delete");
    let recreate = txn(store, create("recreated")).await;
    assert!(recreate.succeeded);
    let kv = get(store, &key).await;
    assert_eq!((kv.create_revision, kv.version), (recreate.revision, 1));

    // An empty transaction succeeds and writes nothing.
    let empty = txn(store, Txn::default()).await;
    assert!(empty.succeeded);
    assert!(empty.revision >= recreate.revision);
}

/// Txn with `Value` compares.
pub async fn txn_value(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let p = unique_prefix("txn_value");
    let key = format!("{p}key");
    let missing = format!("{p}missing");
    put(store, &key, "v1").await;

    let set_if = |expected: &str, value: &str| Txn {
        compare: vec![Compare::Value(key.clone(), expected.as_bytes().to_vec())],
        success: vec![put_op(&key, value)],
        failure: vec![],
    };
    assert!(txn(store, set_if("v1", "v2")).await.succeeded);
    assert_eq!(get(store, &key).await.value, b"v2");
    assert!(!txn(store, set_if("v1", "v3")).await.succeeded);
    assert!(
        !txn(store, set_if("v", "v3")).await.succeeded,
        "no prefix matching"
    );
    assert_eq!(get(store, &key).await.value, b"v2");

    // A missing key has no value, not even an empty one.
    let on_missing = txn(
        store,
        Txn {
            compare: vec![Compare::Value(missing.clone(), Vec::new())],
            success: vec![put_op(&missing, "created")],
            failure: vec![],
        },
    )
    .await;
    assert!(!on_missing.succeeded);
    assert_eq!(ok(store.get(&missing).await, "get missing"), None);

    // An empty value compares equal to an empty value.
    put(store, &missing, "").await;
    let on_empty = txn(
        store,
        Txn {
            compare: vec![Compare::Value(missing.clone(), Vec::new())],
            success: vec![put_op(&missing, "filled")],
            failure: vec![],
        },
    )
    .await;
    assert!(on_empty.succeeded);
    assert_eq!(get(store, &missing).await.value, b"filled");
}

/// `Op::DeletePrefix` deletes exactly the keys under the prefix.
pub async fn txn_delete_prefix(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let p = unique_prefix("txn_delete_prefix");
    for key in ["a", "b", "b/1", "bb", "c"] {
        put(store, &format!("{p}{key}"), key).await;
    }
    let response = txn(
        store,
        Txn {
            compare: vec![],
            success: vec![Op::DeletePrefix(format!("{p}b"))],
            failure: vec![],
        },
    )
    .await;
    assert!(response.succeeded);
    let left: Vec<String> = ok(store.range(&p).await, "range")
        .kvs
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(left, [format!("{p}a"), format!("{p}c")]);

    // Deleting a prefix with nothing under it writes nothing.
    let before = ok(store.range(&p).await, "range").revision;
    let nothing = txn(
        store,
        Txn {
            compare: vec![],
            success: vec![Op::DeletePrefix(format!("{p}nothing/"))],
            failure: vec![],
        },
    )
    .await;
    assert!(nothing.revision >= before);
    assert_eq!(ok(store.range(&p).await, "range").kvs.len(), 2);
}

/// Every write of one transaction carries the same, new revision, and a watch sees them all at
/// that revision, in operation order.
pub async fn txn_shared_revision(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let p = unique_prefix("txn_shared_revision");
    let (a, b, c) = (format!("{p}a"), format!("{p}b"), format!("{p}c"));
    let r0 = put(store, &c, "old").await;
    let response = txn(
        store,
        Txn {
            compare: vec![Compare::ModRevision(c.clone(), r0)],
            success: vec![put_op(&a, "1"), put_op(&b, "2"), Op::Delete(c.clone())],
            failure: vec![],
        },
    )
    .await;
    assert!(response.succeeded);
    let rev = response.revision;
    assert!(rev > r0);
    assert_eq!(get(store, &a).await.mod_revision, rev);
    assert_eq!(get(store, &b).await.mod_revision, rev);
    assert_eq!(ok(store.get(&c).await, "get c"), None);

    let mut w = watch(store, &p, r0).await;
    assert_put(&next_event(&mut w).await, &a, "1", rev);
    assert_put(&next_event(&mut w).await, &b, "2", rev);
    assert_delete(&next_event(&mut w).await, &c, rev);
}

/// A watch from a past revision replays the history after it, then continues with live events.
pub async fn watch_replay_then_live(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let p = unique_prefix("watch_replay");
    let (a, b, c) = (format!("{p}a"), format!("{p}b"), format!("{p}c"));
    let r1 = put(store, &a, "1").await;
    let r2 = put(store, &b, "1").await;
    let r3 = match ok(store.delete(&a).await, "delete a") {
        Some(r) => r,
        None => panic!("delete a: the key existed"),
    };

    let mut w = watch(store, &p, r1 - 1).await;
    let first = next_event(&mut w).await;
    assert_put(&first, &a, "1", r1);
    assert_eq!((first.kv.create_revision, first.kv.version), (r1, 1));
    assert_put(&next_event(&mut w).await, &b, "1", r2);
    assert_delete(&next_event(&mut w).await, &a, r3);

    let r4 = put(store, &c, "1").await;
    assert_put(&next_event(&mut w).await, &c, "1", r4);
    let r5 = put(store, &b, "2").await;
    let event = next_event(&mut w).await;
    assert_put(&event, &b, "2", r5);
    assert_eq!((event.kv.create_revision, event.kv.version), (r2, 2));

    // A second watch from the middle sees only what came after.
    let mut w2 = watch(store, &p, r2).await;
    assert_delete(&next_event(&mut w2).await, &a, r3);
    assert_put(&next_event(&mut w2).await, &c, "1", r4);
    assert_put(&next_event(&mut w2).await, &b, "2", r5);
}

/// A watch started while writes are streaming in sees every write exactly once, in order: the
/// switch from history to live events has no gap and no duplicate.
pub async fn watch_no_gap_under_load(store: Arc<dyn Store>) {
    const WRITES: usize = 60;
    let p = unique_prefix("watch_no_gap");
    let start = put(store.as_ref(), &format!("{p}start"), "").await;
    let writer = {
        let store = Arc::clone(&store);
        let p = p.clone();
        tokio::spawn(async move {
            let mut revisions = Vec::with_capacity(WRITES);
            for i in 0..WRITES {
                revisions.push(put(store.as_ref(), &format!("{p}k{i:03}"), &i.to_string()).await);
            }
            revisions
        })
    };
    // Start several watches while the writes stream in, each racing with the writer at a
    // different point; every one must see the same complete sequence.
    let mut watches = Vec::new();
    for _ in 0..5 {
        tokio::task::yield_now().await;
        watches.push(watch(store.as_ref(), &p, start).await);
    }
    let revisions = match writer.await {
        Ok(revisions) => revisions,
        Err(e) => panic!("writer task failed: {e}"),
    };
    let sentinel = put(store.as_ref(), &format!("{p}sentinel"), "s").await;
    for w in &mut watches {
        for (i, revision) in revisions.iter().enumerate() {
            let event = next_event(w).await;
            assert_put(&event, &format!("{p}k{i:03}"), &i.to_string(), *revision);
        }
        // Nothing else (no duplicate) comes before the next write.
        assert_put(&next_event(w).await, &format!("{p}sentinel"), "s", sentinel);
    }
}

/// A watch from the current revision sees only new events; dropping a watch is harmless.
pub async fn watch_from_current(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let p = unique_prefix("watch_current");
    put(store, &format!("{p}old"), "old").await;
    let now = ok(store.revision().await, "revision");
    let mut w = watch(store, &p, now).await;
    let dropped = watch(store, &p, now).await;
    drop(dropped);
    let r = put(store, &format!("{p}new"), "new").await;
    assert_put(&next_event(&mut w).await, &format!("{p}new"), "new", r);

    // Range then watch from the range's revision: exactly what happened after the read.
    let read = ok(store.range(&p).await, "range");
    assert_eq!(read.kvs.len(), 2);
    let mut w2 = watch(store, &p, read.revision).await;
    let r2 = put(store, &format!("{p}newer"), "newer").await;
    assert_put(
        &next_event(&mut w2).await,
        &format!("{p}newer"),
        "newer",
        r2,
    );
    assert_put(&next_event(&mut w).await, &format!("{p}newer"), "newer", r2);
}

/// A watch only sees keys under its prefix (byte prefix, like ranges).
pub async fn watch_prefix_filter(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let p = unique_prefix("watch_prefix");
    let start = ok(store.revision().await, "revision");
    let wanted = format!("{p}a/");
    let mut w = watch(store, &wanted, start).await;
    let mut all = watch(store, &p, start).await;

    let r1 = put(store, &format!("{p}a/1"), "1").await;
    let r2 = put(store, &format!("{p}b/1"), "2").await;
    let r3 = put(store, &format!("{p}a2"), "3").await;
    let r4 = put(store, &format!("{p}a"), "4").await;
    let r5 = put(store, &format!("{p}a/2"), "5").await;
    assert_put(&next_event(&mut w).await, &format!("{p}a/1"), "1", r1);
    assert_put(&next_event(&mut w).await, &format!("{p}a/2"), "5", r5);

    assert_put(&next_event(&mut all).await, &format!("{p}a/1"), "1", r1);
    assert_put(&next_event(&mut all).await, &format!("{p}b/1"), "2", r2);
    assert_put(&next_event(&mut all).await, &format!("{p}a2"), "3", r3);
    assert_put(&next_event(&mut all).await, &format!("{p}a"), "4", r4);
    assert_put(&next_event(&mut all).await, &format!("{p}a/2"), "5", r5);
}

/// Deletes (single and by prefix) show up as delete events at the delete's revision.
pub async fn watch_delete_events(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let p = unique_prefix("watch_delete");
    let (a, b1, b2) = (format!("{p}a"), format!("{p}b/1"), format!("{p}b/2"));
    for key in [&a, &b1, &b2] {
        put(store, key, "v").await;
    }
    let start = ok(store.revision().await, "revision");
    let mut w = watch(store, &p, start).await;

    let r1 = match ok(store.delete(&a).await, "delete") {
        Some(r) => r,
        None => panic!("delete: the key existed"),
    };
    assert_eq!(ok(store.delete(&a).await, "delete again"), None);
    let r2 = txn(
        store,
        Txn {
            compare: vec![],
            success: vec![Op::DeletePrefix(format!("{p}b/"))],
            failure: vec![],
        },
    )
    .await
    .revision;
    assert!(r2 > r1);
    assert_delete(&next_event(&mut w).await, &a, r1);
    let mut deleted = [next_event(&mut w).await, next_event(&mut w).await];
    deleted.sort_by(|x, y| x.kv.key.cmp(&y.kv.key));
    assert_delete(&deleted[0], &b1, r2);
    assert_delete(&deleted[1], &b2, r2);

    let r3 = put(store, &a, "back").await;
    let event = next_event(&mut w).await;
    assert_put(&event, &a, "back", r3);
    assert_eq!((event.kv.create_revision, event.kv.version), (r3, 1));
}

/// After `compact(rev)`, a watch needing older history fails with [`StoreError::Compacted`]
/// (from `watch` itself or as the stream's first item); newer history and current values stay.
pub async fn compaction(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let p = unique_prefix("compaction");
    let mut revisions = Vec::new();
    for i in 1..=4 {
        revisions.push(put(store, &format!("{p}k{i}"), &i.to_string()).await);
    }
    let (r1, r3, r4) = (revisions[0], revisions[2], revisions[3]);
    ok(store.compact(r3).await, "compact");

    match store.watch(&p, r1 - 1).await {
        Err(StoreError::Compacted { .. }) => {}
        Err(e) => panic!("watch below the compaction: expected Compacted, got {e}"),
        Ok(mut w) => match timeout(EVENT_TIMEOUT, w.recv()).await {
            Ok(Some(Err(StoreError::Compacted { .. }))) => {}
            other => panic!("watch below the compaction: expected Compacted, got {other:?}"),
        },
    }

    let mut w = watch(store, &p, r3).await;
    assert_put(&next_event(&mut w).await, &format!("{p}k4"), "4", r4);

    let kvs = ok(store.range(&p).await, "range").kvs;
    assert_eq!(kvs.len(), 4, "compaction never touches current values");
    assert_eq!(kvs[0].value, b"1");
    assert_eq!(kvs[0].mod_revision, r1);

    // Compacting again at or below the same revision is harmless.
    ok(store.compact(r3).await, "compact again");
    let r5 = put(store, &format!("{p}k5"), "5").await;
    assert!(r5 > r4);
    assert_put(&next_event(&mut w).await, &format!("{p}k5"), "5", r5);
}

/// 20 tasks incrementing one counter with a get + compare-and-swap retry loop end at exactly 20.
pub async fn concurrent_cas(store: Arc<dyn Store>) {
    const TASKS: usize = 20;
    let p = unique_prefix("concurrent_cas");
    let key = format!("{p}counter");
    let mut tasks = Vec::with_capacity(TASKS);
    for _ in 0..TASKS {
        let store = Arc::clone(&store);
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            for _attempt in 0..1000 {
                let current = ok(store.get(&key).await, "get counter");
                let (n, revision) = match current {
                    Some(kv) => {
                        let text = String::from_utf8_lossy(&kv.value).into_owned();
                        match text.parse::<u64>() {
                            Ok(n) => (n, kv.mod_revision),
                            Err(_) => panic!("counter holds {text:?}"),
                        }
                    }
                    None => (0, 0),
                };
                let response = txn(
                    store.as_ref(),
                    Txn {
                        compare: vec![Compare::ModRevision(key.clone(), revision)],
                        success: vec![put_op(&key, &(n + 1).to_string())],
                        failure: vec![],
                    },
                )
                .await;
                if response.succeeded {
                    return response.revision;
                }
            }
            panic!("no compare-and-swap succeeded in 1000 attempts");
        }));
    }
    let mut revisions = Vec::with_capacity(TASKS);
    for task in tasks {
        match task.await {
            Ok(revision) => revisions.push(revision),
            Err(e) => panic!("increment task failed: {e}"),
        }
    }
    let kv = get(store.as_ref(), &key).await;
    assert_eq!(
        kv.value,
        TASKS.to_string().as_bytes(),
        "lost or duplicated increments"
    );
    assert_eq!(kv.version, TASKS as i64);
    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(
        revisions.len(),
        TASKS,
        "every successful swap has its own revision"
    );
    assert_eq!(kv.mod_revision, revisions[TASKS - 1]);
}

/// Revisions never go backwards: per writer, across writers, and as read by `revision()`.
pub async fn revisions_monotonic(store: Arc<dyn Store>) {
    const TASKS: usize = 4;
    const WRITES: usize = 10;
    let p = unique_prefix("monotonic");
    let mut tasks = Vec::with_capacity(TASKS);
    for t in 0..TASKS {
        let store = Arc::clone(&store);
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let store = store.as_ref();
            let mut last = 0;
            let mut seen = 0;
            for i in 0..WRITES {
                let key = format!("{p}t{t}/k{}", i % 3);
                let revision = match i % 3 {
                    0 => put(store, &key, "v").await,
                    1 => {
                        txn(
                            store,
                            Txn {
                                compare: vec![Compare::ModRevision(key.clone(), 0)],
                                success: vec![put_op(&key, "t")],
                                failure: vec![Op::Delete(key.clone())],
                            },
                        )
                        .await
                        .revision
                    }
                    _ => {
                        put(store, &key, "d").await;
                        match ok(store.delete(&key).await, "delete") {
                            Some(r) => r,
                            None => panic!("delete {key}: the key existed"),
                        }
                    }
                };
                assert!(
                    revision > last,
                    "write revision went from {last} to {revision}"
                );
                last = revision;
                let read = ok(store.revision().await, "revision");
                assert!(
                    read >= last,
                    "revision() {read} is behind acknowledged write {last}"
                );
                assert!(read >= seen, "revision() went from {seen} back to {read}");
                seen = read;
            }
            last
        }));
    }
    let mut highest = 0;
    for task in tasks {
        match task.await {
            Ok(last) => highest = highest.max(last),
            Err(e) => panic!("writer task failed: {e}"),
        }
    }
    let now = ok(store.revision().await, "revision");
    assert!(now >= highest);
    // A write that changes nothing leaves the revision where it was.
    let nothing = ok(
        store.delete(&format!("{p}never-written")).await,
        "delete missing",
    );
    assert_eq!(nothing, None);
    assert!(ok(store.revision().await, "revision") >= now);
}

/// A 256 KiB value round-trips through put, get, range and watch.
pub async fn large_value(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let p = unique_prefix("large_value");
    let key = format!("{p}big");
    let value: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    let start = ok(store.revision().await, "revision");
    let mut w = watch(store, &p, start).await;
    let r = ok(store.put(&key, value.clone()).await, "put big");
    assert_eq!(get(store, &key).await.value, value);
    let kvs = ok(store.range(&p).await, "range").kvs;
    assert_eq!(kvs.len(), 1);
    assert_eq!(kvs[0].value, value);
    let event = next_event(&mut w).await;
    assert_eq!(
        (event.kv.mod_revision, event.kv.value.len()),
        (r, value.len())
    );
    assert!(event.kv.value == value);
}
