//! Releases as the agent reads them: loaded from the store and parsed once, then shared.
//!
//! [`ReleaseCache::get`] answers `(app, release id)` with an `Arc<`[`ParsedRelease`]`>`: the
//! release, its env as a map, the result of parsing its convox.yml interpolated with that env
//! ([`release_manifest`]'s exact parse, kept even when it fails, with its message), and what
//! callers derive from it on every read (the router's service, the declared resources). A release
//! never changes once written, so an entry stays right until its app is deleted; the cache holds
//! at most its capacity of entries and evicts the least recently used.
//!
//! Readers never queue behind a parse: the map is behind a std `RwLock` held only to look up or
//! insert an entry, and each entry loads and parses under its own once-cell, so concurrent
//! readers of one release wait for that one parse and readers of others go on.
//!
//! This module must never write to the store, remember a release the store does not have (a
//! miss that finds nothing is not cached), or hold a lock across a store read or a parse.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use dray_sdk::Release;
use tokio::sync::OnceCell;

use crate::repo::{Repo, RepoError};

/// How many parsed releases a cache holds by default (a few per app are read: the active, the
/// deploying and the newest).
pub const DEFAULT_CAPACITY: usize = 4096;

/// A release's manifest, interpolated with its env. Missing required env is not an error here
/// (it is checked when the release is promoted).
pub fn release_manifest(
    release: &Release,
) -> Result<dray_manifest::Manifest, dray_manifest::Errors> {
    let env = dray_sdk::Environment::parse(&release.env).0;
    load_manifest(&release.manifest, &env)
}

fn load_manifest(
    text: &str,
    env: &BTreeMap<String, String>,
) -> Result<dray_manifest::Manifest, dray_manifest::Errors> {
    dray_manifest::load_with(
        "convox.yml",
        text,
        env,
        &dray_manifest::LoadOptions { require_env: false },
    )
    .map(|l| l.manifest)
}

/// A resource as one release's manifest declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Declared {
    pub app: String,
    pub name: String,
    pub kind: String,
    pub image: Option<String>,
    pub options: Vec<(String, String)>,
    /// The `<NAME>_URL` the app's env sets, which replaces the resource.
    pub override_url: Option<String>,
}

/// A release with its manifest parsed once, and what is derived from it.
#[derive(Debug)]
pub struct ParsedRelease {
    /// The release as stored.
    pub release: Release,
    /// Its env, `KEY=VALUE` lines as a map.
    pub env: BTreeMap<String, String>,
    manifest: Result<dray_manifest::Manifest, String>,
    router_service: Option<String>,
    declared: Vec<Declared>,
}

impl ParsedRelease {
    /// Parse a release's manifest with its env (an empty manifest is no manifest: no services,
    /// no resources, and not an error).
    pub fn parse(release: Release) -> ParsedRelease {
        let env = dray_sdk::Environment::parse(&release.env).0;
        let manifest = if release.manifest.trim().is_empty() {
            Ok(dray_manifest::Manifest::default())
        } else {
            load_manifest(&release.manifest, &env).map_err(|e| e.to_string())
        };
        let (router_service, declared) = match &manifest {
            Ok(m) => (
                m.services
                    .iter()
                    .find(|(_, svc)| svc.is_routable())
                    .map(|(name, _)| name.clone()),
                m.resources
                    .iter()
                    .map(|(name, r)| Declared {
                        app: release.app.clone(),
                        name: name.clone(),
                        kind: r.kind.trim().to_string(),
                        image: r.image.clone().filter(|i| !i.trim().is_empty()),
                        options: r
                            .options
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                        override_url: env.get(&format!("{}_URL", r.env_prefix())).cloned(),
                    })
                    .collect(),
            ),
            Err(_) => (None, Vec::new()),
        };
        ParsedRelease {
            release,
            env,
            manifest,
            router_service,
            declared,
        }
    }

    /// Whether the release has a manifest at all (releases made before the first build do not).
    pub fn has_manifest(&self) -> bool {
        !self.release.manifest.trim().is_empty()
    }

    /// The parsed manifest, or why it does not load (the diagnostics, one per line).
    pub fn manifest(&self) -> Result<&dray_manifest::Manifest, &str> {
        self.manifest.as_ref().map_err(|e| e.as_str())
    }

    /// The service the router host names: the first routable one (a `port`, not `internal`), in
    /// manifest order. `None` without one, or when the manifest does not load.
    pub fn router_service(&self) -> Option<&str> {
        self.router_service.as_deref()
    }

    /// The resources the manifest declares, in manifest order, or why the manifest does not load.
    pub fn declared(&self) -> Result<&[Declared], &str> {
        self.manifest()?;
        Ok(&self.declared)
    }
}

/// Parsed releases by `(app, id)`, shared by every clone of the handle.
#[derive(Clone)]
pub struct ReleaseCache {
    inner: Arc<Inner>,
}

struct Inner {
    repo: Repo,
    capacity: usize,
    /// Ticks on every use, so entries can be ordered by their last one.
    clock: AtomicU64,
    /// Releases read from the store and parsed (for tests and diagnostics).
    loads: AtomicU64,
    slots: RwLock<Slots>,
}

#[derive(Default)]
struct Slots {
    apps: HashMap<String, HashMap<String, Arc<Slot>>>,
    len: usize,
}

struct Slot {
    value: OnceCell<Arc<ParsedRelease>>,
    used: AtomicU64,
}

/// Why a load filled no entry.
enum Miss {
    Absent,
    Repo(RepoError),
}

impl ReleaseCache {
    /// A cache over `repo` holding at most [`DEFAULT_CAPACITY`] releases.
    pub fn new(repo: Repo) -> ReleaseCache {
        ReleaseCache::with_capacity(repo, DEFAULT_CAPACITY)
    }

    /// A cache over `repo` holding at most `capacity` releases (at least one).
    pub fn with_capacity(repo: Repo, capacity: usize) -> ReleaseCache {
        ReleaseCache {
            inner: Arc::new(Inner {
                repo,
                capacity: capacity.max(1),
                clock: AtomicU64::new(0),
                loads: AtomicU64::new(0),
                slots: RwLock::new(Slots::default()),
            }),
        }
    }

    /// A release of an app, parsed; loaded from the store on a miss. `None` when the store has no
    /// such release (not remembered: it may be written later).
    pub async fn get(&self, app: &str, id: &str) -> Result<Option<Arc<ParsedRelease>>, RepoError> {
        let slot = match self.lookup(app, id) {
            Some(slot) => slot,
            None => self.insert(app, id),
        };
        slot.used.store(self.tick(), Ordering::Relaxed);
        if let Some(parsed) = slot.value.get() {
            return Ok(Some(parsed.clone()));
        }
        let loaded = slot
            .value
            .get_or_try_init(|| async {
                match self.inner.repo.release(app, id).await {
                    Ok(Some(release)) => {
                        self.inner.loads.fetch_add(1, Ordering::Relaxed);
                        Ok(Arc::new(ParsedRelease::parse(release)))
                    }
                    Ok(None) => Err(Miss::Absent),
                    Err(e) => Err(Miss::Repo(e)),
                }
            })
            .await;
        match loaded {
            Ok(parsed) => Ok(Some(parsed.clone())),
            Err(miss) => {
                self.remove_empty(app, id, &slot);
                match miss {
                    Miss::Absent => Ok(None),
                    Miss::Repo(e) => Err(e),
                }
            }
        }
    }

    /// Drop every entry of an app (called when the app is deleted). An entry a read in flight
    /// puts back afterwards is harmless: release ids are never reused.
    pub fn forget_app(&self, app: &str) {
        let mut slots = self.write();
        if let Some(gone) = slots.apps.remove(app) {
            slots.len -= gone.len();
        }
    }

    /// The repository releases are loaded from.
    pub fn repo(&self) -> &Repo {
        &self.inner.repo
    }

    /// How many entries the cache holds (loaded or being loaded).
    pub fn len(&self) -> usize {
        self.read().len
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many releases were read from the store and parsed since the cache was made.
    pub fn loads(&self) -> u64 {
        self.inner.loads.load(Ordering::Relaxed)
    }

    fn tick(&self) -> u64 {
        self.inner.clock.fetch_add(1, Ordering::Relaxed) + 1
    }

    // A poisoned lock only means a thread panicked while holding it; every change to the map
    // is a single insert or remove, so the map is still consistent.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Slots> {
        self.inner.slots.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Slots> {
        self.inner.slots.write().unwrap_or_else(|p| p.into_inner())
    }

    fn lookup(&self, app: &str, id: &str) -> Option<Arc<Slot>> {
        self.read().apps.get(app)?.get(id).cloned()
    }

    /// The entry of `(app, id)`, made (and the least recently used one evicted when full) if
    /// another reader did not make it meanwhile.
    fn insert(&self, app: &str, id: &str) -> Arc<Slot> {
        let mut slots = self.write();
        if let Some(slot) = slots.apps.get(app).and_then(|ids| ids.get(id)) {
            return slot.clone();
        }
        while slots.len >= self.inner.capacity {
            let oldest = slots
                .apps
                .iter()
                .flat_map(|(a, ids)| {
                    ids.iter()
                        .map(move |(i, s)| (s.used.load(Ordering::Relaxed), a, i))
                })
                .min_by_key(|(used, _, _)| *used)
                .map(|(_, a, i)| (a.clone(), i.clone()));
            let Some((a, i)) = oldest else { break };
            remove(&mut slots, &a, &i);
        }
        let slot = Arc::new(Slot {
            value: OnceCell::new(),
            used: AtomicU64::new(0),
        });
        slots
            .apps
            .entry(app.to_string())
            .or_default()
            .insert(id.to_string(), slot.clone());
        slots.len += 1;
        slot
    }

    /// Remove the entry of `(app, id)` if it is still `slot` and still empty (its load failed).
    fn remove_empty(&self, app: &str, id: &str, slot: &Arc<Slot>) {
        let mut slots = self.write();
        let same = slots
            .apps
            .get(app)
            .and_then(|ids| ids.get(id))
            .is_some_and(|s| Arc::ptr_eq(s, slot) && s.value.get().is_none());
        if same {
            remove(&mut slots, app, id);
        }
    }
}

fn remove(slots: &mut Slots, app: &str, id: &str) {
    let Some(ids) = slots.apps.get_mut(app) else {
        return;
    };
    if ids.remove(id).is_some() {
        slots.len -= 1;
    }
    if ids.is_empty() {
        slots.apps.remove(app);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use async_trait::async_trait;
    use dray_store::sqlite::SqliteStore;
    use dray_store::{
        KeyValue, RangeResponse, Revision, Store, StoreError, Txn, TxnResponse, Watch,
    };

    use super::*;
    use crate::repo;

    /// A store that counts the reads of release records.
    struct Counting {
        inner: SqliteStore,
        release_gets: AtomicUsize,
    }

    #[async_trait]
    impl Store for Counting {
        async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
            if key.starts_with("/dray/releases/") {
                self.release_gets.fetch_add(1, Ordering::SeqCst);
            }
            self.inner.get(key).await
        }
        async fn range(&self, prefix: &str) -> Result<RangeResponse, StoreError> {
            self.inner.range(prefix).await
        }
        async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
            self.inner.put(key, value).await
        }
        async fn delete(&self, key: &str) -> Result<Option<Revision>, StoreError> {
            self.inner.delete(key).await
        }
        async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
            self.inner.txn(txn).await
        }
        async fn watch(&self, prefix: &str, after: Revision) -> Result<Watch, StoreError> {
            self.inner.watch(prefix, after).await
        }
        async fn revision(&self) -> Result<Revision, StoreError> {
            self.inner.revision().await
        }
        async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
            self.inner.compact(revision).await
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<Counting>,
        repo: Repo,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let store = Arc::new(Counting {
                inner: SqliteStore::open(&dir.path().join("state.db")).unwrap(),
                release_gets: AtomicUsize::new(0),
            });
            let repo = Repo::new(store.clone());
            Fixture {
                _dir: dir,
                store,
                repo,
            }
        }

        async fn put(&self, app: &str, id: &str, env: &str, manifest: &str) {
            let release = Release {
                id: id.into(),
                app: app.into(),
                env: env.into(),
                manifest: manifest.into(),
                ..Default::default()
            };
            self.repo
                .store()
                .put(&repo::release_key(app, id), repo::encode(&release))
                .await
                .unwrap();
        }

        fn release_gets(&self) -> usize {
            self.store.release_gets.load(Ordering::SeqCst)
        }
    }

    const MANIFEST: &str = "services:\n  worker:\n    command: work\n  admin:\n    port: 4000\n    internal: true\n  web:\n    port: ${WEB_PORT}\n    resources:\n      - db\nresources:\n  db:\n    type: postgres\n    options:\n      version: \"16\"\n";

    #[tokio::test]
    async fn a_release_is_loaded_and_parsed_once() {
        let f = Fixture::new();
        f.put("app", "R1", "WEB_PORT=3000\nDB_URL=postgres://x", MANIFEST)
            .await;
        let cache = ReleaseCache::new(f.repo.clone());
        let first = cache.get("app", "R1").await.unwrap().unwrap();
        for _ in 0..10 {
            let again = cache.clone().get("app", "R1").await.unwrap().unwrap();
            assert!(Arc::ptr_eq(&first, &again));
        }
        assert_eq!(f.release_gets(), 1, "one store read");
        assert_eq!(cache.loads(), 1, "one parse");

        assert_eq!(first.release.id, "R1");
        assert_eq!(first.env.get("WEB_PORT").map(String::as_str), Some("3000"));
        let m = first.manifest().unwrap();
        assert_eq!(m.services.len(), 3);
        assert_eq!(
            m.services["web"].main_port(),
            Some(3000),
            "interpolated with the release env"
        );
        assert_eq!(first.router_service(), Some("web"), "admin is internal");
        let declared = first.declared().unwrap();
        assert_eq!(declared.len(), 1);
        assert_eq!(declared[0].app, "app");
        assert_eq!(declared[0].name, "db");
        assert_eq!(declared[0].kind, "postgres");
        assert_eq!(
            declared[0].options,
            vec![("version".to_string(), "16".to_string())]
        );
        assert_eq!(declared[0].override_url.as_deref(), Some("postgres://x"));
        // The same parse as release_manifest's.
        assert_eq!(&release_manifest(&first.release).unwrap(), m);
    }

    #[tokio::test]
    async fn a_bad_manifest_is_cached_with_its_error() {
        let f = Fixture::new();
        f.put("app", "BAD", "", "services:\n  web:\n    port: [1\n")
            .await;
        let cache = ReleaseCache::new(f.repo.clone());
        for _ in 0..3 {
            let p = cache.get("app", "BAD").await.unwrap().unwrap();
            let err = p.manifest().unwrap_err();
            assert!(err.contains("convox.yml"), "{err}");
            assert_eq!(p.declared().unwrap_err(), err);
            assert_eq!(p.router_service(), None);
            assert!(p.has_manifest());
            assert_eq!(
                err,
                release_manifest(&p.release).unwrap_err().to_string(),
                "the message release_manifest gives"
            );
        }
        assert_eq!(f.release_gets(), 1);
        assert_eq!(cache.loads(), 1);
    }

    #[tokio::test]
    async fn an_empty_manifest_is_no_manifest() {
        let f = Fixture::new();
        f.put("app", "EMPTY", "A=1", "  \n").await;
        let cache = ReleaseCache::new(f.repo.clone());
        let p = cache.get("app", "EMPTY").await.unwrap().unwrap();
        assert!(!p.has_manifest());
        assert!(p.manifest().unwrap().services.is_empty());
        assert!(p.declared().unwrap().is_empty());
        assert_eq!(p.router_service(), None);
    }

    #[tokio::test]
    async fn a_missing_release_is_not_remembered() {
        let f = Fixture::new();
        let cache = ReleaseCache::new(f.repo.clone());
        assert!(cache.get("app", "LATER").await.unwrap().is_none());
        assert!(cache.is_empty());
        f.put("app", "LATER", "", MANIFEST).await;
        assert!(cache.get("app", "LATER").await.unwrap().is_some());
        assert_eq!(cache.len(), 1);
        assert_eq!(f.release_gets(), 2);
    }

    #[tokio::test]
    async fn entries_are_bounded_and_the_least_recently_used_goes() {
        let f = Fixture::new();
        for id in ["R1", "R2", "R3", "R4"] {
            f.put("app", id, "WEB_PORT=1", MANIFEST).await;
        }
        let cache = ReleaseCache::with_capacity(f.repo.clone(), 3);
        for id in ["R1", "R2", "R3", "R1"] {
            cache.get("app", id).await.unwrap().unwrap();
        }
        assert_eq!(cache.loads(), 3);
        cache.get("app", "R4").await.unwrap().unwrap();
        assert_eq!(cache.len(), 3, "never more than the capacity");
        // R2 was the least recently used: R1, R3 and R4 are still there.
        for id in ["R1", "R3", "R4"] {
            cache.get("app", id).await.unwrap().unwrap();
        }
        assert_eq!(cache.loads(), 4);
        cache.get("app", "R2").await.unwrap().unwrap();
        assert_eq!(cache.loads(), 5, "R2 was evicted and is loaded again");
        assert_eq!(cache.len(), 3);

        // Many more releases than the capacity: the bound holds.
        let small = ReleaseCache::with_capacity(f.repo.clone(), 2);
        for round in 0..5 {
            for id in ["R1", "R2", "R3", "R4"] {
                small.get("app", id).await.unwrap().unwrap();
                assert!(small.len() <= 2, "round {round}: {}", small.len());
            }
        }
    }

    #[tokio::test]
    async fn forgetting_an_app_drops_its_releases_only() {
        let f = Fixture::new();
        f.put("one", "R1", "WEB_PORT=1", MANIFEST).await;
        f.put("two", "R2", "WEB_PORT=1", MANIFEST).await;
        let cache = ReleaseCache::new(f.repo.clone());
        cache.get("one", "R1").await.unwrap().unwrap();
        cache.get("two", "R2").await.unwrap().unwrap();
        cache.forget_app("one");
        assert_eq!(cache.len(), 1);
        cache.get("two", "R2").await.unwrap().unwrap();
        assert_eq!(cache.loads(), 2, "two's release stayed");
        cache.get("one", "R1").await.unwrap().unwrap();
        assert_eq!(cache.loads(), 3, "one's release is read again");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_readers_share_one_parse() {
        let f = Fixture::new();
        for i in 0..8 {
            f.put("app", &format!("R{i}"), "WEB_PORT=1", MANIFEST).await;
        }
        let cache = ReleaseCache::new(f.repo.clone());
        let start = Arc::new(tokio::sync::Barrier::new(64));
        let mut tasks = Vec::new();
        for t in 0..64 {
            let cache = cache.clone();
            let start = start.clone();
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                let id = format!("R{}", t % 8);
                let mut got = Vec::new();
                for _ in 0..20 {
                    got.push(cache.get("app", &id).await.unwrap().unwrap());
                }
                (id, got)
            }));
        }
        let mut by_id: HashMap<String, Arc<ParsedRelease>> = HashMap::new();
        for t in tasks {
            let (id, got) = tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("readers finish")
                .unwrap();
            for p in got {
                assert_eq!(p.release.id, id);
                let first = by_id.entry(id.clone()).or_insert_with(|| p.clone());
                assert!(Arc::ptr_eq(first, &p), "one shared parse per release");
            }
        }
        assert_eq!(by_id.len(), 8);
        assert_eq!(cache.loads(), 8, "each release parsed once");
        assert_eq!(f.release_gets(), 8, "each release read once");
    }
}
