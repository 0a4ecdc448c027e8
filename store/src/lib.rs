//! Dray's key/value store.
//!
//! This crate owns the one storage abstraction every other part of Dray goes through: a small
//! key/value interface with revisions, prefix ranges, compare-and-swap transactions and watches,
//! the shape of the Kubernetes apiserver's storage layer and of etcd's v3 API.
//!
//! * [`Store`] is the trait. Every write bumps one global, monotonically increasing
//!   [`Revision`]; each key remembers the revision that created it and the one that last changed
//!   it, so callers can do optimistic concurrency with [`Txn`] (compare `mod_revision`, then write).
//! * [`sqlite::SqliteStore`] is the embedded backend (WAL, fsync on every commit, versioned
//!   schema with migrations). An etcd backend implements the same trait for clusters.
//! * [`conformance`] is the backend-independent test suite: every backend must pass it.
//!
//! This crate must never know about apps, releases or any other Dray type: values are bytes and
//! keys are strings. Typed repositories live in the agent, on top of this trait.

pub mod conformance;
pub mod sqlite;

use async_trait::async_trait;
use tokio::sync::mpsc;

/// A store-wide, monotonically increasing revision number. The first write is revision 1;
/// 0 means "never written" (for example the `mod_revision` of an absent key in a [`Compare`]).
pub type Revision = i64;

/// One key with its value and bookkeeping, as read from the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created this key (the key's current incarnation).
    pub create_revision: Revision,
    /// Revision of the last write to this key.
    pub mod_revision: Revision,
    /// Number of writes to this key since it was created (1 after the first put).
    pub version: i64,
}

/// The answer to a prefix [`Store::range`] read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResponse {
    /// Matching keys, sorted by key (byte order).
    pub kvs: Vec<KeyValue>,
    /// The store revision the read was served at.
    pub revision: Revision,
}

/// A condition checked at the start of a [`Txn`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compare {
    /// The key's `mod_revision` equals the given revision; `0` means "the key does not exist".
    ModRevision(String, Revision),
    /// The key exists and holds exactly these bytes.
    Value(String, Vec<u8>),
}

/// A write inside a [`Txn`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put(String, Vec<u8>),
    Delete(String),
    /// Delete every key that starts with the prefix.
    DeletePrefix(String),
}

/// An atomic compare-and-swap transaction: if every comparison holds, apply `success`,
/// otherwise apply `failure`. All writes of one transaction share one new revision.
///
/// Operations are applied in order. Do not write the same key twice in one branch: the SQLite
/// backend applies both writes, but etcd rejects such a transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    pub compare: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

/// The result of a [`Txn`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether every comparison held (and so `success` was applied).
    pub succeeded: bool,
    /// The store revision after the transaction (unchanged when it wrote nothing).
    pub revision: Revision,
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change seen by a watch. For a delete, `kv.value` is empty and `kv.mod_revision` is the
/// revision of the delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
}

/// A stream of events for a watch, in revision order. The sender side is dropped when the store
/// closes; an `Err` item ends the stream (for example when the watcher fell too far behind).
pub type Watch = mpsc::Receiver<Result<Event, StoreError>>;

/// Errors of every backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A watch asked for history older than what the store keeps.
    #[error("the history after revision {requested} has been compacted (history is kept only after revision {compacted})")]
    Compacted {
        /// The `after` revision the watch asked for.
        requested: Revision,
        /// The compacted revision: changes at or below it are forgotten, so a watch needs
        /// `after >= compacted`.
        compacted: Revision,
    },
    /// A watch consumer fell so far behind that events had to be dropped; watch again from the
    /// last revision it saw.
    #[error("watch fell behind and was cancelled; re-watch from revision {last_seen}")]
    WatchLagged { last_seen: Revision },
    /// The store was written by a newer version of Dray than this one.
    #[error("the store's schema version {found} is newer than this build supports ({supported}); upgrade drayd")]
    SchemaTooNew { found: i64, supported: i64 },
    /// The store is shut down.
    #[error("store is closed")]
    Closed,
    /// The backend failed (disk, database, network).
    #[error("store backend error: {0}")]
    Backend(String),
}

/// The storage interface. Implementations must be linearizable: a write acknowledged to one
/// caller is visible to every read that starts after it, and it survives a crash of the process
/// (for the embedded backend: it is fsynced before the call returns).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Read one key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Read every key that starts with `prefix` (all keys for `""`), sorted by key.
    async fn range(&self, prefix: &str) -> Result<RangeResponse, StoreError>;

    /// Write one key; returns the new store revision.
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError>;

    /// Delete one key; returns the new revision, or `None` when the key did not exist (nothing
    /// is written then).
    async fn delete(&self, key: &str) -> Result<Option<Revision>, StoreError>;

    /// Run a compare-and-swap transaction atomically.
    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError>;

    /// Watch every key under `prefix` for changes with a revision **greater than** `after`.
    /// Pass the `revision` of a [`RangeResponse`] to see exactly what happened after that read;
    /// pass [`Store::revision`] to see only new changes. When the history after `after` has been
    /// compacted, the answer is [`StoreError::Compacted`], either from this call or (on backends
    /// that only learn it later, like etcd) as the first item of the stream.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<Watch, StoreError>;

    /// The current store revision.
    async fn revision(&self) -> Result<Revision, StoreError>;

    /// Forget the change history at or below `revision` (watches from before it then fail with
    /// [`StoreError::Compacted`]). Current values are never affected.
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;
}
