//! Releases: create (forked from a parent), list, get.

use chrono::Utc;
use dray_sdk::{Environment, Release};
use dray_store::Op;

use super::env::{env_diff, parse_env_text};
use super::{Controllers, Error};
use crate::ids;
use crate::repo::{self, AppRecord, Update, Versioned};

/// What a new release changes relative to its parent. Unset fields are copied from the parent:
/// `parent_release` when given, otherwise the app's newest release.
#[derive(Clone, Debug, Default)]
pub struct ReleaseOptions {
    pub build: Option<String>,
    pub env: Option<String>,
    pub description: Option<String>,
    pub parent_release: Option<String>,
}

/// Most releases one list call returns.
const MAX_LIST: usize = 1000;

impl Controllers {
    /// One release of an app.
    pub async fn release(&self, app: &str, id: &str) -> Result<Release, Error> {
        self.app_record(app).await?;
        self.repo
            .release(app, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("release not found: {id}")))
    }

    /// An app's releases, newest first, at most `limit` (default 10).
    pub async fn releases(&self, app: &str, limit: Option<usize>) -> Result<Vec<Release>, Error> {
        self.app_record(app).await?;
        let mut releases = self.repo.releases(app).await?;
        releases.truncate(limit.unwrap_or(10).min(MAX_LIST));
        Ok(releases)
    }

    /// Create a release forked from its parent. The app record's newest-release pointer moves in
    /// the same transaction, so concurrent creations are serialised per app.
    pub async fn release_create(&self, app: &str, opts: ReleaseOptions) -> Result<Release, Error> {
        let env = match &opts.env {
            Some(text) => Some(parse_env_text(text)?),
            None => None,
        };
        let build = match opts.build.as_deref().filter(|b| !b.is_empty()) {
            Some(id) => Some(
                self.repo
                    .build(app, id)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("build not found: {id}")))?,
            ),
            None => None,
        };
        let _guard = self.app_locks.lock(app).await;
        let (opts, env, build) = (&opts, &env, &build);
        // The release is made in the update's closure: it forks from the newest release of the
        // app record read, which a concurrent creation may have moved. The last one made is the
        // one written.
        let made: std::sync::Mutex<Option<Release>> = std::sync::Mutex::new(None);
        let made_ref = &made;
        self.repo
            .update(
                &repo::app_key(app),
                |current: Option<Versioned<AppRecord>>| async move {
                    let Some(current) = current else {
                        return Err(Error::NotFound(format!("app not found: {app}")));
                    };
                    let release = self.fork(app, &current.value, opts, env, build).await?;
                    let mut rec = current.value;
                    rec.latest_release = release.id.clone();
                    let put = Op::Put(repo::release_key(app, &release.id), repo::encode(&release));
                    *made_ref.lock().unwrap_or_else(|p| p.into_inner()) = Some(release);
                    Ok(Update::put(rec).also([put]))
                },
            )
            .await?;
        let release = made
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .ok_or_else(|| Error::Internal("the release was not made".into()))?;
        tracing::info!(target: "audit", app, release = %release.id, description = %release.description, "release created");
        Ok(release)
    }

    /// A new release of `app` forked from its parent: `opts.parent_release`, or the newest
    /// release of `rec`.
    async fn fork(
        &self,
        app: &str,
        rec: &AppRecord,
        opts: &ReleaseOptions,
        env: &Option<Environment>,
        build: &Option<dray_sdk::Build>,
    ) -> Result<Release, Error> {
        let parent_id = opts
            .parent_release
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| rec.latest_release.clone());
        let parent = if parent_id.is_empty() {
            None
        } else {
            Some(
                self.repo
                    .release(app, &parent_id)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("release not found: {parent_id}")))?,
            )
        };
        let parent_env = parent
            .as_ref()
            .map(|p| Environment::parse(&p.env))
            .unwrap_or_default();

        let mut release = Release {
            id: ids::release_id(),
            app: app.to_string(),
            build: parent.as_ref().map(|p| p.build.clone()).unwrap_or_default(),
            env: parent_env.render(),
            manifest: parent
                .as_ref()
                .map(|p| p.manifest.clone())
                .unwrap_or_default(),
            description: parent
                .as_ref()
                .map(|p| p.description.clone())
                .unwrap_or_default(),
            created: Utc::now(),
        };
        if let Some(b) = build {
            release.build = b.id.clone();
            release.manifest = b.manifest.clone();
            release.description = b.description.clone();
        }
        if let Some(env) = env {
            release.env = env.render();
            release.description = env_diff(&parent_env, env);
        }
        if let Some(d) = &opts.description {
            release.description = d.clone();
        }
        Ok(release)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use dray_sdk::Build;
    use dray_store::sqlite::SqliteStore;

    use super::*;
    use crate::config::Config;

    async fn controllers(dir: &std::path::Path) -> Controllers {
        let store = Arc::new(SqliteStore::open(&dir.join("state.db")).unwrap());
        Controllers::new(store, Config::for_data_dir(dir))
    }

    #[tokio::test]
    async fn a_release_from_a_build_takes_its_manifest_and_the_router_follows() {
        let dir = tempfile::tempdir().unwrap();
        let c = controllers(dir.path()).await;
        c.app_create("myapp").await.unwrap();
        let first = c
            .release_create(
                "myapp",
                ReleaseOptions {
                    env: Some("A=1".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(c.app("myapp").await.unwrap().router, "");

        let build = Build {
            id: "BABCDEFGHIJ".into(),
            app: "myapp".into(),
            description: "build 0a1b2c3 initial".into(),
            manifest: "services:\n  worker:\n    command: work\n  web:\n    port: 3000\n".into(),
            status: "complete".into(),
            ..Default::default()
        };
        c.repo
            .store()
            .put(&repo::build_key("myapp", &build.id), repo::encode(&build))
            .await
            .unwrap();
        let r = c
            .release_create(
                "myapp",
                ReleaseOptions {
                    build: Some(build.id.clone()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(r.build, build.id);
        assert_eq!(r.manifest, build.manifest);
        assert_eq!(r.description, build.description);
        assert_eq!(r.env, "A=1", "the env is forked from the newest release");
        assert_ne!(r.id, first.id);
        assert_eq!(c.app("myapp").await.unwrap().router, "web.myapp.localhost");
        // Later reads share the parse of the release's manifest.
        let loads = c.releases_cache().loads();
        for _ in 0..5 {
            assert_eq!(c.app("myapp").await.unwrap().router, "web.myapp.localhost");
        }
        assert_eq!(c.releases_cache().loads(), loads);
        // Newest first.
        let list = c.releases("myapp", None).await.unwrap();
        assert_eq!(list[0].id, r.id);
        assert_eq!(list[1].id, first.id);
        // Deleting the app removes its builds and releases too.
        c.app_delete("myapp").await.unwrap();
        assert!(
            c.releases_cache().is_empty(),
            "the app's parsed releases are forgotten"
        );
        assert!(c.repo.releases("myapp").await.unwrap().is_empty());
        assert!(c.repo.builds("myapp").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn concurrent_env_changes_each_fork_from_the_previous_release() {
        let dir = tempfile::tempdir().unwrap();
        let c = controllers(dir.path()).await;
        c.app_create("busy").await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..20 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                c.release_create(
                    "busy",
                    ReleaseOptions {
                        env: Some(format!("N={i}")),
                        ..Default::default()
                    },
                )
                .await
                .unwrap()
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let list = c.releases("busy", Some(100)).await.unwrap();
        assert_eq!(list.len(), 20);
        let rec = c.app_record("busy").await.unwrap().value;
        assert_eq!(rec.latest_release, list[0].id);
    }
}
