//! The embedded [`Store`] backend: one SQLite file, opened by exactly one Dray process.
//!
//! This module owns the on-disk format of the embedded store (the schema below and its
//! migrations), the single writer thread that serialises every write, the pool of read
//! connections, and the fan-out of change events to live watches. It must never acknowledge a
//! write before the SQLite transaction holding it has been committed with `synchronous=FULL`
//! (so an acknowledged write survives `kill -9` and power loss), never block the writer on a slow
//! watcher, and never know what the keys and values mean.
//!
//! # Schema (version 1)
//!
//! The schema version lives in `PRAGMA user_version` (0 = empty file). [`MIGRATIONS`] is the
//! ordered list of steps; at open, every step past the file's version runs inside one
//! `BEGIN IMMEDIATE` transaction together with the bump of `user_version`, so a crash mid-upgrade
//! leaves the old version intact. A file whose version is newer than this build knows is refused
//! with [`StoreError::SchemaTooNew`] before anything is written to it.
//!
//! ```sql
//! -- Current state: one row per live key. Keys are stored as BLOBs (their UTF-8 bytes) so that
//! -- ordering and prefix ranges are plain byte comparisons (memcmp), like etcd.
//! CREATE TABLE kv (
//!     key             BLOB PRIMARY KEY NOT NULL,
//!     value           BLOB NOT NULL,
//!     create_revision INTEGER NOT NULL,  -- revision that created this incarnation of the key
//!     mod_revision    INTEGER NOT NULL,  -- revision of the last write
//!     version         INTEGER NOT NULL   -- writes since creation (1 after the first put)
//! ) WITHOUT ROWID;
//!
//! -- Change history, replayed by watches that start in the past. One row per changed key; a
//! -- transaction that changes several keys writes several rows with the same revision, ordered
//! -- by seq (the order of its operations).
//! CREATE TABLE log (
//!     revision        INTEGER NOT NULL,
//!     seq             INTEGER NOT NULL,
//!     key             BLOB NOT NULL,
//!     kind            INTEGER NOT NULL,  -- 0 = put, 1 = delete
//!     value           BLOB NOT NULL,     -- empty for deletes
//!     create_revision INTEGER NOT NULL,  -- 0 for deletes
//!     version         INTEGER NOT NULL,  -- 0 for deletes
//!     PRIMARY KEY (revision, seq)
//! ) WITHOUT ROWID;
//!
//! -- Store-wide counters:
//! --   'revision'  = the highest revision ever written (never goes backwards, even when the
//! --                 key that carried it is deleted or its log row is compacted);
//! --   'compacted' = log rows at or below this revision have been deleted.
//! CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID;
//! ```
//!
//! # Writes: one thread, group commit
//!
//! Every write ([`Store::put`], [`Store::delete`], [`Store::txn`], [`Store::compact`]) is sent
//! over a bounded channel to the writer thread, which owns the only write connection. It takes
//! whatever is queued (up to [`SqliteOptions::max_batch`]) and applies it in **one** SQLite
//! transaction, so many concurrent writers share one fsync. Inside the batch each request runs in
//! its own savepoint and gets its own revision; a request that fails is rolled back to its
//! savepoint without touching the others, and later requests (for example a [`Txn`]'s compares)
//! see the effects of earlier ones. Only after `COMMIT` returns are the callers acknowledged and
//! the events published to watches. If the commit itself fails, every request of the batch gets
//! the error and nothing of it is visible.
//!
//! # Reads
//!
//! Reads run on a small pool of `query_only` connections inside `spawn_blocking`, so they never
//! wait for the writer: in WAL mode readers see the last committed state, and since writes are
//! acknowledged only after commit, reads are linearizable with acknowledged writes.
//!
//! # Watches
//!
//! A watch first registers a live subscription, then reads the history `> after` from `log` in
//! one read transaction (which also yields the snapshot revision `S`), then forwards the history
//! followed by live events with revision `> S`: no gap (everything committed after the snapshot
//! was published after the subscription existed) and no duplicate (live events `<= S` are
//! dropped). The writer hands live events to each watcher with a non-blocking `try_send`; a
//! watcher whose buffer is full is cut off and its stream ends with
//! [`StoreError::WatchLagged`]. The log is compacted automatically to keep the last
//! [`SqliteOptions::history_revisions`] revisions.
//!
//! Only one process may use a store file at a time (the writer's revision bookkeeping is
//! transactional, but watches only see writes made through the same [`SqliteStore`]).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::Type;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::{
    Compare, Event, EventKind, KeyValue, Op, RangeResponse, Revision, Store, StoreError, Txn,
    TxnResponse, Watch,
};

/// The ordered schema migrations; step `i` upgrades a file from version `i` to `i + 1`.
/// Append new steps at the end; never edit a released one.
pub const MIGRATIONS: &[&str] = &[
    // Version 1: the initial schema (see the module documentation).
    "CREATE TABLE kv (
         key             BLOB PRIMARY KEY NOT NULL,
         value           BLOB NOT NULL,
         create_revision INTEGER NOT NULL,
         mod_revision    INTEGER NOT NULL,
         version         INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE log (
         revision        INTEGER NOT NULL,
         seq             INTEGER NOT NULL,
         key             BLOB NOT NULL,
         kind            INTEGER NOT NULL,
         value           BLOB NOT NULL,
         create_revision INTEGER NOT NULL,
         version         INTEGER NOT NULL,
         PRIMARY KEY (revision, seq)
     ) WITHOUT ROWID;
     CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID;
     INSERT INTO meta (key, value) VALUES ('revision', 0), ('compacted', 0);",
];

/// The schema version this build writes and the newest it can open.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

const KIND_PUT: i64 = 0;
const KIND_DELETE: i64 = 1;

/// Tuning knobs of a [`SqliteStore`]. `SqliteOptions::default()` is what `drayd` uses.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// How many revisions of change history to keep for watches that start in the past; older
    /// history is compacted automatically (in chunks of about 1/16 of this). `0` turns automatic
    /// compaction off (only [`Store::compact`] then removes history). Default: 10 000.
    pub history_revisions: i64,
    /// Maximum number of read connections (and so of concurrent reads). Default: 4.
    pub read_connections: usize,
    /// Per-watch buffer, in revisions (live events waiting to be forwarded) and in events (the
    /// channel returned to the caller). A watcher that falls further behind is cut off with
    /// [`StoreError::WatchLagged`]. Default: 1024.
    pub watch_buffer: usize,
    /// Maximum number of write requests committed in one SQLite transaction. Default: 512.
    pub max_batch: usize,
    /// How long a connection waits for a lock held by another connection. Default: 5 s.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            history_revisions: 10_000,
            read_connections: 4,
            watch_buffer: 1024,
            max_batch: 512,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// The embedded SQLite [`Store`]. See the module documentation for how it works.
///
/// Dropping it (or calling [`SqliteStore::close`]) stops the writer thread: requests still
/// queued get [`StoreError::Closed`], and every watch stream ends.
pub struct SqliteStore {
    path: PathBuf,
    writes: mpsc::Sender<Message>,
    closed: Arc<AtomicBool>,
    readers: Arc<ReadPool>,
    watchers: Arc<Mutex<Watchers>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    watch_buffer: usize,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("closed", &self.closed.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Open (creating it, and its parent directory, if missing) the store at `path` with the
    /// default [`SqliteOptions`]. This blocks while it migrates the schema; it does not need a
    /// Tokio runtime, but the returned store's methods do.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, SqliteOptions::default())
    }

    /// [`SqliteStore::open`] with explicit options.
    pub fn open_with(path: &Path, options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        create_private_file(path)?;
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::Backend(format!("sqlite: open {}: {e}", path.display())))?;
        configure_writer(&conn, options.busy_timeout)?;
        migrate(&mut conn, MIGRATIONS)?;

        let closed = Arc::new(AtomicBool::new(false));
        let readers = Arc::new(ReadPool {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(options.read_connections.max(1))),
            busy_timeout: options.busy_timeout,
            closed: Arc::clone(&closed),
        });
        // Open one reader now so that a file readers cannot use fails at open, not later.
        let first_reader = open_reader(path, options.busy_timeout)?;
        readers.put_back(first_reader);

        let watchers = Arc::new(Mutex::new(Watchers::default()));
        let (writes, requests) = mpsc::channel(options.max_batch.max(1) * 2);
        let writer = Writer {
            conn,
            requests,
            closed: Arc::clone(&closed),
            watchers: Arc::clone(&watchers),
            history_revisions: options.history_revisions,
            max_batch: options.max_batch.max(1),
        };
        let handle = std::thread::Builder::new()
            .name("dray-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Backend(format!("spawn the store writer thread: {e}")))?;
        tracing::debug!(path = %path.display(), schema = SCHEMA_VERSION, "opened sqlite store");
        Ok(SqliteStore {
            path: path.to_path_buf(),
            writes,
            closed,
            readers,
            watchers,
            writer: Mutex::new(Some(handle)),
            watch_buffer: options.watch_buffer.max(1),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stop the store: the batch being committed finishes, every request still queued and every
    /// later call gets [`StoreError::Closed`], and every watch stream ends. Blocks until the
    /// writer thread has exited (at most one batch commit). Idempotent; also done on drop.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.readers.permits.close();
        // Wake the writer if it is idle; if the queue is full it is busy and will see the flag.
        let _ = self.writes.try_send(Message::Shutdown);
        let handle = lock(&self.writer).take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                tracing::error!(path = %self.path.display(), "the store writer thread panicked");
            }
        }
    }

    async fn write(&self, op: WriteOp) -> Result<WriteResult, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let (reply, answer) = oneshot::channel();
        self.writes
            .send(Message::Write(WriteRequest { op, reply }))
            .await
            .map_err(|_| StoreError::Closed)?;
        // A dropped reply sender means the writer stopped (or died) before answering.
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let key = key.to_owned();
        self.readers.read(move |conn| get_kv(conn, &key)).await
    }

    async fn range(&self, prefix: &str) -> Result<RangeResponse, StoreError> {
        let prefix = prefix.to_owned();
        self.readers
            .read(move |conn| {
                let tx = conn.transaction().map_err(backend("begin read"))?;
                let kvs = range_kvs(&tx, &prefix)?;
                let revision = read_meta(&tx, "revision")?;
                Ok(RangeResponse { kvs, revision })
            })
            .await
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        match self.write(WriteOp::Put(key.to_owned(), value)).await? {
            WriteResult::Put(revision) => Ok(revision),
            other => Err(unexpected(other)),
        }
    }

    async fn delete(&self, key: &str) -> Result<Option<Revision>, StoreError> {
        match self.write(WriteOp::Delete(key.to_owned())).await? {
            WriteResult::Delete(revision) => Ok(revision),
            other => Err(unexpected(other)),
        }
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        match self.write(WriteOp::Txn(txn)).await? {
            WriteResult::Txn(response) => Ok(response),
            other => Err(unexpected(other)),
        }
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<Watch, StoreError> {
        let after = after.max(0);
        let (live_tx, live_rx) = mpsc::channel(self.watch_buffer);
        let lagged = Arc::new(AtomicBool::new(false));
        {
            // Subscribe to live events *before* reading history (see the module docs).
            let mut watchers = lock(&self.watchers);
            if watchers.closed {
                return Err(StoreError::Closed);
            }
            watchers.list.push(LiveWatcher {
                prefix: prefix.to_owned(),
                tx: live_tx,
                lagged: Arc::clone(&lagged),
            });
        }
        // On error the subscription is dropped with `live_rx` and pruned at the next publish.
        let owned_prefix = prefix.to_owned();
        let history = self
            .readers
            .read(move |conn| read_history(conn, &owned_prefix, after))
            .await?;
        let (tx, rx) = mpsc::channel(self.watch_buffer);
        tokio::spawn(forward(history, after, live_rx, lagged, tx));
        Ok(rx)
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        self.readers.read(|conn| read_meta(conn, "revision")).await
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        match self.write(WriteOp::Compact(revision)).await? {
            WriteResult::Compact => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(result: WriteResult) -> StoreError {
    StoreError::Backend(format!(
        "internal: the writer answered with the wrong kind of result: {result:?}"
    ))
}

/// Lock a mutex, recovering from poisoning: every critical section here leaves the data
/// consistent even if it panics half-way (they only push/retain list entries or take an option).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Map a rusqlite error to [`StoreError::Backend`] with what was being done.
fn backend(context: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| StoreError::Backend(format!("sqlite: {context}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Opening and migrating

/// Create the parent directory and an empty database file readable only by its owner (the store
/// holds secrets such as app environments; SQLite gives its `-wal`/`-shm` files the same mode).
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let io = |what: &str, e: std::io::Error| {
        StoreError::Backend(format!("{what} {}: {e}", path.display()))
    };
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        std::fs::create_dir_all(parent).map_err(|e| io("create the directory of", e))?;
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(file) => {
            file.sync_all().map_err(|e| io("sync", e))?;
            // Make the new directory entry durable too.
            #[cfg(unix)]
            if let Some(parent) = parent {
                std::fs::File::open(parent)
                    .and_then(|dir| dir.sync_all())
                    .map_err(|e| io("sync the directory of", e))?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io("create", e)),
    }
}

fn configure_writer(conn: &Connection, busy_timeout: Duration) -> Result<(), StoreError> {
    conn.busy_timeout(busy_timeout)
        .map_err(backend("set busy_timeout"))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
        .map_err(backend("enable WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!(
            "sqlite: could not enable WAL mode (journal mode is {mode:?})"
        )));
    }
    // FULL: with WAL, fsync the log on every commit, so an acknowledged write is durable.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(backend("set synchronous=FULL"))?;
    // Truncate the WAL file back to 64 MiB after checkpoints instead of letting it stay large.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
        .map_err(backend("set journal_size_limit"))?;
    Ok(())
}

fn open_reader(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Backend(format!("sqlite: open reader {}: {e}", path.display())))?;
    conn.busy_timeout(busy_timeout)
        .map_err(backend("set busy_timeout"))?;
    conn.pragma_update(None, "query_only", true)
        .map_err(backend("set query_only"))?;
    Ok(conn)
}

/// Bring the schema to `steps.len()`, applying the missing steps and the new `user_version` in
/// one transaction. Returns the version found before migrating.
fn migrate(conn: &mut Connection, steps: &[&str]) -> Result<i64, StoreError> {
    let supported = steps.len() as i64;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend("begin migration"))?;
    let found: i64 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(backend("read the schema version"))?;
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    let done = usize::try_from(found)
        .map_err(|_| StoreError::Backend(format!("sqlite: invalid schema version {found}")))?;
    for (index, step) in steps.iter().enumerate().skip(done) {
        tx.execute_batch(step).map_err(|e| {
            StoreError::Backend(format!(
                "sqlite: migrate the schema to version {}: {e}",
                index + 1
            ))
        })?;
    }
    if found < supported {
        tx.pragma_update(None, "user_version", supported)
            .map_err(backend("write the schema version"))?;
        tracing::info!(from = found, to = supported, "migrated the store schema");
    }
    tx.commit().map_err(backend("commit migration"))?;
    Ok(found)
}

// ---------------------------------------------------------------------------------------------
// Queries shared by readers and the writer

fn read_meta(conn: &Connection, key: &str) -> Result<i64, StoreError> {
    conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")
        .and_then(|mut stmt| stmt.query_row([key], |row| row.get(0)))
        .map_err(|e| StoreError::Backend(format!("sqlite: read meta {key}: {e}")))
}

fn write_meta(conn: &Connection, key: &str, value: i64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE meta SET value = ?2 WHERE key = ?1")
        .and_then(|mut stmt| stmt.execute(params![key, value]))
        .map_err(|e| StoreError::Backend(format!("sqlite: write meta {key}: {e}")))?;
    Ok(())
}

fn key_from_blob(index: usize, bytes: Vec<u8>) -> rusqlite::Result<String> {
    String::from_utf8(bytes)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(index, Type::Blob, Box::new(e)))
}

/// The first key after every key that starts with `prefix` (the etcd "range end"), or `None`
/// when there is no upper bound (empty prefix, or only 0xff bytes).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn get_kv(conn: &Connection, key: &str) -> Result<Option<KeyValue>, StoreError> {
    conn.prepare_cached(
        "SELECT value, create_revision, mod_revision, version FROM kv WHERE key = ?1",
    )
    .and_then(|mut stmt| {
        stmt.query_row([key.as_bytes()], |row| {
            Ok(KeyValue {
                key: key.to_owned(),
                value: row.get(0)?,
                create_revision: row.get(1)?,
                mod_revision: row.get(2)?,
                version: row.get(3)?,
            })
        })
        .optional()
    })
    .map_err(backend("get"))
}

fn range_kvs(conn: &Connection, prefix: &str) -> Result<Vec<KeyValue>, StoreError> {
    let map = |row: &rusqlite::Row<'_>| {
        Ok(KeyValue {
            key: key_from_blob(0, row.get(0)?)?,
            value: row.get(1)?,
            create_revision: row.get(2)?,
            mod_revision: row.get(3)?,
            version: row.get(4)?,
        })
    };
    let start = prefix.as_bytes();
    let result = match prefix_end(start) {
        Some(end) => conn
            .prepare_cached(
                "SELECT key, value, create_revision, mod_revision, version FROM kv
                 WHERE key >= ?1 AND key < ?2 ORDER BY key",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![start, end], map)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            }),
        None => conn
            .prepare_cached(
                "SELECT key, value, create_revision, mod_revision, version FROM kv
                 WHERE key >= ?1 ORDER BY key",
            )
            .and_then(|mut stmt| {
                stmt.query_map([start], map)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            }),
    };
    result.map_err(backend("range"))
}

/// History for a new watch: every logged change under `prefix` with a revision `> after`, as of
/// one snapshot, and the store revision of that snapshot.
struct History {
    events: Vec<Event>,
    revision: Revision,
}

fn read_history(
    conn: &mut Connection,
    prefix: &str,
    after: Revision,
) -> Result<History, StoreError> {
    let tx = conn.transaction().map_err(backend("begin read"))?;
    let revision = read_meta(&tx, "revision")?;
    let compacted = read_meta(&tx, "compacted")?;
    if after < compacted {
        return Err(StoreError::Compacted {
            requested: after,
            compacted,
        });
    }
    if after >= revision {
        return Ok(History {
            events: Vec::new(),
            revision,
        });
    }
    let map = |row: &rusqlite::Row<'_>| {
        let revision: i64 = row.get(0)?;
        let kind: i64 = row.get(2)?;
        Ok(Event {
            kind: if kind == KIND_DELETE {
                EventKind::Delete
            } else {
                EventKind::Put
            },
            kv: KeyValue {
                key: key_from_blob(1, row.get(1)?)?,
                value: row.get(3)?,
                create_revision: row.get(4)?,
                mod_revision: revision,
                version: row.get(5)?,
            },
        })
    };
    let start = prefix.as_bytes();
    let events = match prefix_end(start) {
        Some(end) => tx
            .prepare_cached(
                "SELECT revision, key, kind, value, create_revision, version FROM log
                 WHERE revision > ?1 AND key >= ?2 AND key < ?3 ORDER BY revision, seq",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![after, start, end], map)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            }),
        None => tx
            .prepare_cached(
                "SELECT revision, key, kind, value, create_revision, version FROM log
                 WHERE revision > ?1 AND key >= ?2 ORDER BY revision, seq",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![after, start], map)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            }),
    }
    .map_err(backend("read history"))?;
    Ok(History { events, revision })
}

// ---------------------------------------------------------------------------------------------
// Read pool

/// Idle read connections, at most `permits` in use at once; each read runs in `spawn_blocking`.
struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    busy_timeout: Duration,
    closed: Arc<AtomicBool>,
}

impl ReadPool {
    async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let idle = lock(&pool.idle).pop();
            let mut conn = match idle {
                Some(conn) => conn,
                None => open_reader(&pool.path, pool.busy_timeout)?,
            };
            let result = f(&mut conn);
            pool.put_back(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Backend(format!("store read task failed: {e}")))?
    }

    fn put_back(&self, conn: Connection) {
        // A connection left inside a transaction (a bug or a failed rollback) is not reused.
        if conn.is_autocommit() {
            lock(&self.idle).push(conn);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Watches

#[derive(Default)]
struct Watchers {
    /// Set by the writer when it stops; no new watch may register after that.
    closed: bool,
    list: Vec<LiveWatcher>,
}

struct LiveWatcher {
    prefix: String,
    /// One item per revision: the events of that revision under `prefix`.
    tx: mpsc::Sender<Vec<Event>>,
    /// Set when the writer cut this watcher off because `tx` was full.
    lagged: Arc<AtomicBool>,
}

/// Send `events` (in revision order) to every live watcher, dropping watchers that are gone or
/// full. Never blocks.
fn publish(watchers: &Mutex<Watchers>, events: &[Event]) {
    let mut watchers = lock(watchers);
    watchers.list.retain(|watcher| {
        if watcher.tx.is_closed() {
            return false;
        }
        for revision in events.chunk_by(|a, b| a.kv.mod_revision == b.kv.mod_revision) {
            let matching: Vec<Event> = revision
                .iter()
                .filter(|event| event.kv.key.starts_with(&watcher.prefix))
                .cloned()
                .collect();
            if matching.is_empty() {
                continue;
            }
            match watcher.tx.try_send(matching) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    watcher.lagged.store(true, Ordering::Release);
                    tracing::warn!(prefix = %watcher.prefix, "store watcher fell behind; cutting it off");
                    return false;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
        true
    });
}

/// The task behind one watch: history first, then live events newer than the history snapshot.
async fn forward(
    history: History,
    after: Revision,
    mut live: mpsc::Receiver<Vec<Event>>,
    lagged: Arc<AtomicBool>,
    tx: mpsc::Sender<Result<Event, StoreError>>,
) {
    // Every change `<= progress` under the prefix has been delivered.
    let mut progress = after.max(history.revision);
    for event in history.events {
        if tx.send(Ok(event)).await.is_err() {
            return;
        }
    }
    loop {
        let batch = tokio::select! {
            biased;
            _ = tx.closed() => return,
            batch = live.recv() => batch,
        };
        let Some(events) = batch else {
            if lagged.load(Ordering::Acquire) {
                let _ = tx
                    .send(Err(StoreError::WatchLagged {
                        last_seen: progress,
                    }))
                    .await;
            }
            return;
        };
        let revision = events.first().map_or(0, |event| event.kv.mod_revision);
        if revision <= progress {
            continue; // Already part of the history snapshot.
        }
        for event in events {
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
        progress = revision;
    }
}

// ---------------------------------------------------------------------------------------------
// The writer

enum Message {
    Write(WriteRequest),
    /// Wakes the writer so it notices the store was closed.
    Shutdown,
}

struct WriteRequest {
    op: WriteOp,
    reply: oneshot::Sender<Result<WriteResult, StoreError>>,
}

#[derive(Debug)]
enum WriteOp {
    Put(String, Vec<u8>),
    Delete(String),
    Txn(Txn),
    Compact(Revision),
}

#[derive(Debug)]
enum WriteResult {
    Put(Revision),
    Delete(Option<Revision>),
    Txn(TxnResponse),
    Compact,
}

struct Writer {
    conn: Connection,
    requests: mpsc::Receiver<Message>,
    closed: Arc<AtomicBool>,
    watchers: Arc<Mutex<Watchers>>,
    history_revisions: i64,
    max_batch: usize,
}

impl Writer {
    fn run(mut self) {
        let mut batch = Vec::with_capacity(self.max_batch);
        while let Some(message) = self.requests.blocking_recv() {
            if self.closed.load(Ordering::Acquire) {
                if let Message::Write(request) = message {
                    let _ = request.reply.send(Err(StoreError::Closed));
                }
                break;
            }
            if let Message::Write(request) = message {
                batch.push(request);
            }
            while batch.len() < self.max_batch {
                match self.requests.try_recv() {
                    Ok(Message::Write(request)) => batch.push(request),
                    Ok(Message::Shutdown) => {}
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.process(std::mem::take(&mut batch));
            }
        }
        // Dropping `self` refuses what is still queued and ends every watch.
    }

    fn process(&mut self, batch: Vec<WriteRequest>) {
        let (ops, replies): (Vec<WriteOp>, Vec<_>) = batch
            .into_iter()
            .map(|request| (request.op, request.reply))
            .unzip();
        match commit_batch(&mut self.conn, ops, self.history_revisions) {
            Ok(committed) => {
                for (reply, result) in replies.into_iter().zip(committed.results) {
                    let _ = reply.send(result);
                }
                if !committed.events.is_empty() {
                    publish(&self.watchers, &committed.events);
                }
            }
            Err(e) => {
                let message = match e {
                    StoreError::Backend(message) => message,
                    other => other.to_string(),
                };
                tracing::error!(error = %message, requests = replies.len(), "store write batch failed");
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Backend(message.clone())));
                }
            }
        }
    }
}

impl Drop for Writer {
    /// Runs when the writer stops, normally or by a panic: refuse everything still queued, then
    /// end every watch stream.
    fn drop(&mut self) {
        self.requests.close();
        while let Ok(message) = self.requests.try_recv() {
            if let Message::Write(request) = message {
                let _ = request.reply.send(Err(StoreError::Closed));
            }
        }
        let mut watchers = lock(&self.watchers);
        watchers.closed = true;
        watchers.list.clear();
    }
}

/// The outcome of one committed batch: one result per request, in order, and every change event
/// in revision order.
struct Committed {
    results: Vec<Result<WriteResult, StoreError>>,
    events: Vec<Event>,
}

/// The store counters, as seen inside the write transaction.
#[derive(Clone, Copy)]
struct Counters {
    revision: Revision,
    compacted: Revision,
}

/// Apply `ops` in order inside one write transaction, one savepoint each, and commit.
fn commit_batch(
    conn: &mut Connection,
    ops: Vec<WriteOp>,
    history_revisions: i64,
) -> Result<Committed, StoreError> {
    if !conn.is_autocommit() {
        // A previous batch failed so badly that even its rollback failed; start clean.
        conn.execute_batch("ROLLBACK")
            .map_err(backend("roll back a leftover transaction"))?;
    }
    let mut tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend("begin write"))?;
    let before = Counters {
        revision: read_meta(&tx, "revision")?,
        compacted: read_meta(&tx, "compacted")?,
    };
    let mut counters = before;
    let mut results = Vec::with_capacity(ops.len());
    let mut events = Vec::new();
    for op in ops {
        let mut savepoint = tx.savepoint().map_err(backend("savepoint"))?;
        let mut local = counters;
        let mut local_events = Vec::new();
        match apply(&savepoint, &mut local, &mut local_events, op) {
            Ok(result) => {
                savepoint.commit().map_err(backend("release savepoint"))?;
                counters = local;
                events.append(&mut local_events);
                results.push(Ok(result));
            }
            Err(e) => {
                savepoint
                    .rollback()
                    .map_err(backend("roll back to savepoint"))?;
                savepoint.commit().map_err(backend("release savepoint"))?;
                results.push(Err(e));
            }
        }
    }
    if history_revisions > 0 {
        let target = counters.revision - history_revisions;
        let step = (history_revisions / 16).max(1);
        if target >= counters.compacted + step {
            delete_log_through(&tx, target)?;
            counters.compacted = target;
        }
    }
    if counters.revision != before.revision {
        write_meta(&tx, "revision", counters.revision)?;
    }
    if counters.compacted != before.compacted {
        write_meta(&tx, "compacted", counters.compacted)?;
    }
    tx.commit().map_err(backend("commit"))?;
    Ok(Committed { results, events })
}

fn delete_log_through(conn: &Connection, revision: Revision) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM log WHERE revision <= ?1")
        .and_then(|mut stmt| stmt.execute([revision]))
        .map_err(backend("compact the log"))?;
    Ok(())
}

/// Apply one request. All changes it makes carry revision `counters.revision + 1`, which is
/// claimed only if something changed.
fn apply(
    conn: &Connection,
    counters: &mut Counters,
    events: &mut Vec<Event>,
    op: WriteOp,
) -> Result<WriteResult, StoreError> {
    let revision = counters.revision + 1;
    match op {
        WriteOp::Put(key, value) => {
            put_kv(conn, revision, events, key, value)?;
            counters.revision = revision;
            Ok(WriteResult::Put(revision))
        }
        WriteOp::Delete(key) => {
            if delete_kv(conn, revision, events, key)? {
                counters.revision = revision;
                Ok(WriteResult::Delete(Some(revision)))
            } else {
                Ok(WriteResult::Delete(None))
            }
        }
        WriteOp::Txn(txn) => {
            let succeeded = compares_hold(conn, &txn.compare)?;
            let ops = if succeeded { txn.success } else { txn.failure };
            let mut changed = false;
            for op in ops {
                changed |= match op {
                    Op::Put(key, value) => {
                        put_kv(conn, revision, events, key, value)?;
                        true
                    }
                    Op::Delete(key) => delete_kv(conn, revision, events, key)?,
                    Op::DeletePrefix(prefix) => delete_prefix(conn, revision, events, &prefix)?,
                };
            }
            if changed {
                counters.revision = revision;
            }
            Ok(WriteResult::Txn(TxnResponse {
                succeeded,
                revision: counters.revision,
            }))
        }
        WriteOp::Compact(target) => {
            if target > counters.revision {
                return Err(StoreError::Backend(format!(
                    "cannot compact to revision {target}: the store is only at revision {}",
                    counters.revision
                )));
            }
            if target > counters.compacted {
                delete_log_through(conn, target)?;
                counters.compacted = target;
            }
            Ok(WriteResult::Compact)
        }
    }
}

fn compares_hold(conn: &Connection, compares: &[Compare]) -> Result<bool, StoreError> {
    for compare in compares {
        let holds = match compare {
            Compare::ModRevision(key, expected) => {
                let current = get_kv(conn, key)?.map_or(0, |kv| kv.mod_revision);
                current == *expected
            }
            Compare::Value(key, expected) => {
                get_kv(conn, key)?.is_some_and(|kv| kv.value == *expected)
            }
        };
        if !holds {
            return Ok(false);
        }
    }
    Ok(true)
}

fn log_change(
    conn: &Connection,
    seq: usize,
    kind: EventKind,
    kv: &KeyValue,
) -> Result<(), StoreError> {
    let kind = match kind {
        EventKind::Put => KIND_PUT,
        EventKind::Delete => KIND_DELETE,
    };
    conn.prepare_cached(
        "INSERT INTO log (revision, seq, key, kind, value, create_revision, version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            kv.mod_revision,
            seq as i64,
            kv.key.as_bytes(),
            kind,
            kv.value,
            kv.create_revision,
            kv.version
        ])
    })
    .map_err(backend("append to the log"))?;
    Ok(())
}

fn put_kv(
    conn: &Connection,
    revision: Revision,
    events: &mut Vec<Event>,
    key: String,
    value: Vec<u8>,
) -> Result<(), StoreError> {
    let (create_revision, version): (i64, i64) = conn
        .prepare_cached(
            "INSERT INTO kv (key, value, create_revision, mod_revision, version)
             VALUES (?1, ?2, ?3, ?3, 1)
             ON CONFLICT (key) DO UPDATE SET
                 value = excluded.value,
                 mod_revision = excluded.mod_revision,
                 version = kv.version + 1
             RETURNING create_revision, version",
        )
        .and_then(|mut stmt| {
            stmt.query_row(params![key.as_bytes(), value, revision], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
        })
        .map_err(backend("put"))?;
    let kv = KeyValue {
        key,
        value,
        create_revision,
        mod_revision: revision,
        version,
    };
    log_change(conn, events.len(), EventKind::Put, &kv)?;
    events.push(Event {
        kind: EventKind::Put,
        kv,
    });
    Ok(())
}

fn deleted_event(
    conn: &Connection,
    revision: Revision,
    events: &mut Vec<Event>,
    key: String,
) -> Result<(), StoreError> {
    let kv = KeyValue {
        key,
        value: Vec::new(),
        create_revision: 0,
        mod_revision: revision,
        version: 0,
    };
    log_change(conn, events.len(), EventKind::Delete, &kv)?;
    events.push(Event {
        kind: EventKind::Delete,
        kv,
    });
    Ok(())
}

/// Delete one key; returns whether it existed.
fn delete_kv(
    conn: &Connection,
    revision: Revision,
    events: &mut Vec<Event>,
    key: String,
) -> Result<bool, StoreError> {
    let deleted = conn
        .prepare_cached("DELETE FROM kv WHERE key = ?1")
        .and_then(|mut stmt| stmt.execute([key.as_bytes()]))
        .map_err(backend("delete"))?;
    if deleted == 0 {
        return Ok(false);
    }
    deleted_event(conn, revision, events, key)?;
    Ok(true)
}

/// Delete every key under `prefix`; returns whether any existed.
fn delete_prefix(
    conn: &Connection,
    revision: Revision,
    events: &mut Vec<Event>,
    prefix: &str,
) -> Result<bool, StoreError> {
    let start = prefix.as_bytes();
    let map = |row: &rusqlite::Row<'_>| key_from_blob(0, row.get(0)?);
    let mut keys = match prefix_end(start) {
        Some(end) => conn
            .prepare_cached("DELETE FROM kv WHERE key >= ?1 AND key < ?2 RETURNING key")
            .and_then(|mut stmt| {
                stmt.query_map(params![start, end], map)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            }),
        None => conn
            .prepare_cached("DELETE FROM kv WHERE key >= ?1 RETURNING key")
            .and_then(|mut stmt| {
                stmt.query_map([start], map)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            }),
    }
    .map_err(backend("delete prefix"))?;
    // RETURNING order is unspecified; events are reported in key order.
    keys.sort_unstable();
    let any = !keys.is_empty();
    for key in keys {
        deleted_event(conn, revision, events, key)?;
    }
    Ok(any)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = Connection::open(dir.path().join("t.db")).expect("open");
        configure_writer(&conn, Duration::from_secs(1)).expect("configure");
        (dir, conn)
    }

    fn user_version(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA user_version", [], |row| row.get(0))
            .expect("user_version")
    }

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b""), None);
        assert_eq!(prefix_end(b"a/"), Some(b"a0".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }

    #[test]
    fn migrations_apply_only_missing_steps() {
        let (_dir, mut conn) = scratch();
        let one = ["CREATE TABLE a (x INTEGER)"];
        let two = ["CREATE TABLE a (x INTEGER)", "CREATE TABLE b (y INTEGER)"];
        assert_eq!(migrate(&mut conn, &one).expect("migrate to 1"), 0);
        assert_eq!(user_version(&conn), 1);
        // Step 1 would fail if it ran again ("table a already exists").
        assert_eq!(migrate(&mut conn, &two).expect("migrate to 2"), 1);
        assert_eq!(user_version(&conn), 2);
        assert_eq!(migrate(&mut conn, &two).expect("reopen at 2"), 2);
        match migrate(&mut conn, &one) {
            Err(StoreError::SchemaTooNew {
                found: 2,
                supported: 1,
            }) => {}
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }

    #[test]
    fn a_failed_migration_changes_nothing() {
        let (_dir, mut conn) = scratch();
        let steps = ["CREATE TABLE a (x INTEGER)", "CREATE TABLE b (", "unused"];
        assert!(matches!(
            migrate(&mut conn, &steps),
            Err(StoreError::Backend(_))
        ));
        assert_eq!(user_version(&conn), 0);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'a'",
                [],
                |row| row.get(0),
            )
            .expect("count");
        assert_eq!(tables, 0, "step 1 must be rolled back with step 2");
    }

    #[test]
    fn a_batch_applies_requests_in_order_and_isolates_failures() {
        let (_dir, mut conn) = scratch();
        migrate(&mut conn, MIGRATIONS).expect("migrate");
        let ops = vec![
            WriteOp::Put("a".into(), b"1".to_vec()),
            // Fails: revision 5 does not exist yet. Must not undo the put before it.
            WriteOp::Compact(5),
            // Sees the put of the same batch.
            WriteOp::Txn(Txn {
                compare: vec![Compare::ModRevision("a".into(), 1)],
                success: vec![Op::Put("b".into(), b"2".to_vec()), Op::Delete("a".into())],
                failure: vec![],
            }),
            WriteOp::Delete("missing".into()),
            WriteOp::Put("a".into(), b"3".to_vec()),
        ];
        let committed = commit_batch(&mut conn, ops, 0).expect("commit");
        let results: Vec<String> = committed
            .results
            .iter()
            .map(|result| match result {
                Ok(result) => format!("{result:?}"),
                Err(_) => "error".to_owned(),
            })
            .collect();
        assert_eq!(
            results,
            [
                "Put(1)",
                "error",
                "Txn(TxnResponse { succeeded: true, revision: 2 })",
                "Delete(None)",
                "Put(3)"
            ]
        );
        let summary: Vec<(EventKind, String, Revision)> = committed
            .events
            .iter()
            .map(|event| (event.kind, event.kv.key.clone(), event.kv.mod_revision))
            .collect();
        assert_eq!(
            summary,
            [
                (EventKind::Put, "a".to_owned(), 1),
                (EventKind::Put, "b".to_owned(), 2),
                (EventKind::Delete, "a".to_owned(), 2),
                (EventKind::Put, "a".to_owned(), 3),
            ]
        );
        assert_eq!(read_meta(&conn, "revision").expect("revision"), 3);
        let a = get_kv(&conn, "a").expect("get").expect("a exists");
        assert_eq!((a.create_revision, a.mod_revision, a.version), (3, 3, 1));
        let logged: i64 = conn
            .query_row("SELECT count(*) FROM log", [], |row| row.get(0))
            .expect("count");
        assert_eq!(logged, 4);
    }

    #[test]
    fn automatic_compaction_keeps_the_configured_history() {
        let (_dir, mut conn) = scratch();
        migrate(&mut conn, MIGRATIONS).expect("migrate");
        for i in 0..100 {
            let ops = vec![WriteOp::Put(format!("k{i}"), Vec::new())];
            commit_batch(&mut conn, ops, 32).expect("commit");
        }
        let compacted = read_meta(&conn, "compacted").expect("compacted");
        // Compaction runs in steps of 32 / 16 = 2 revisions.
        assert!((66..=68).contains(&compacted), "compacted = {compacted}");
        let oldest: i64 = conn
            .query_row("SELECT min(revision) FROM log", [], |row| row.get(0))
            .expect("min");
        assert_eq!(oldest, compacted + 1);
    }
}
