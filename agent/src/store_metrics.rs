//! A [`Store`] that counts what it is asked (`dray_store_reads_total`,
//! `dray_store_writes_total`, `dray_store_watches_total` by operation), so an operator (and the
//! idle benchmark) can see that an idle rack reads nothing.
//!
//! It owns nothing but the counting; it must never change what the store it wraps answers.

use std::sync::Arc;

use async_trait::async_trait;
use dray_store::{KeyValue, RangeResponse, Revision, Store, StoreError, Txn, TxnResponse, Watch};

use crate::metrics::{Metric, Registry};

/// Counts the calls to the store it wraps.
pub struct CountingStore {
    inner: Arc<dyn Store>,
    reads: Metric,
    writes: Metric,
    watches: Metric,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn Store>, registry: &Registry) -> CountingStore {
        CountingStore {
            inner,
            reads: registry.counter(
                "dray_store_reads_total",
                "Reads of the store, by operation.",
                &["op"],
            ),
            writes: registry.counter(
                "dray_store_writes_total",
                "Writes to the store, by operation.",
                &["op"],
            ),
            watches: registry.counter(
                "dray_store_watches_total",
                "Watches opened on the store.",
                &[],
            ),
        }
    }
}

#[async_trait]
impl Store for CountingStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.reads.inc(&["get"]);
        self.inner.get(key).await
    }

    async fn range(&self, prefix: &str) -> Result<RangeResponse, StoreError> {
        self.reads.inc(&["range"]);
        self.inner.range(prefix).await
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        self.writes.inc(&["put"]);
        self.inner.put(key, value).await
    }

    async fn delete(&self, key: &str) -> Result<Option<Revision>, StoreError> {
        self.writes.inc(&["delete"]);
        self.inner.delete(key).await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        self.writes.inc(&["txn"]);
        self.inner.txn(txn).await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<Watch, StoreError> {
        self.watches.inc(&[]);
        self.inner.watch(prefix, after).await
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        self.reads.inc(&["revision"]);
        self.inner.revision().await
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.writes.inc(&["compact"]);
        self.inner.compact(revision).await
    }
}
