//! Apps: create, list, get, lock/unlock, cancel, delete.

use std::future::ready;

use chrono::Utc;
use dray_sdk::{App, AppStatus};
use dray_store::Op;

use super::{Controllers, Error};
use crate::repo::{self, AppRecord, Update, Versioned};

const RESERVED: &[&str] = &["rack", "system"];
const MAX_NAME: usize = 40;

/// Check an app name: `^[a-z][a-z0-9-]*$`, at most 40 characters, not reserved.
pub fn validate_app_name(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::BadRequest("app name is required".into()));
    }
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase());
    if !first_ok
        || !bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        || name.len() > MAX_NAME
    {
        return Err(Error::BadRequest(format!(
            "invalid app name {name:?}: use a lowercase letter followed by lowercase letters, digits or dashes (at most {MAX_NAME} characters), for example my-app"
        )));
    }
    if RESERVED.contains(&name) {
        return Err(Error::BadRequest(format!(
            "app name {name:?} is reserved; choose another name"
        )));
    }
    Ok(())
}

impl Controllers {
    pub(super) async fn app_record(&self, name: &str) -> Result<Versioned<AppRecord>, Error> {
        self.repo
            .app(name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("app not found: {name}")))
    }

    async fn app_view(&self, rec: AppRecord) -> App {
        let router = self.router_host(&rec).await;
        App {
            name: rec.name,
            status: rec.status,
            release: rec.release,
            locked: rec.locked,
            router,
            generation: "3".into(),
            parameters: Default::default(),
            created: rec.created,
            deploy_error: rec.last_deploy_error,
            deploying: rec.deploying,
            progress: rec.progress,
        }
    }

    /// The router host of an app: `<service>.<app>.<rack domain>` for the first routable
    /// service (a `port`, not `internal`) of the active release, or of the newest release before
    /// the first promote. Empty when there is no such service.
    async fn router_host(&self, rec: &AppRecord) -> String {
        let id = if rec.release.is_empty() {
            &rec.latest_release
        } else {
            &rec.release
        };
        if id.is_empty() {
            return String::new();
        }
        // Parsed once per release (`crate::app::ReleaseCache`): this runs on every app read.
        let Ok(Some(release)) = self.releases.get(&rec.name, id).await else {
            return String::new();
        };
        release
            .router_service()
            .map(|name| format!("{name}.{}.{}", rec.name, self.config.domain))
            .unwrap_or_default()
    }

    /// Create an app (status `running`: there is nothing to provision before the first deploy).
    pub async fn app_create(&self, name: &str) -> Result<App, Error> {
        validate_app_name(name)?;
        let rec = AppRecord {
            name: name.to_string(),
            status: AppStatus::Running,
            release: String::new(),
            latest_release: String::new(),
            locked: false,
            cancel_requested: false,
            created: Utc::now(),
            deploying: String::new(),
            deploy_started: Utc::now(),
            deploy_timeout: 0,
            last_deploy_error: String::new(),
            progress: Vec::new(),
            restarts: Default::default(),
        };
        self.repo
            .update(
                &repo::app_key(name),
                |current: Option<Versioned<AppRecord>>| {
                    ready(match current {
                        Some(_) => Err(Error::Conflict(format!("app already exists: {name}"))),
                        None => Ok(Update::put(rec.clone())),
                    })
                },
            )
            .await?;
        tracing::info!(target: "audit", app = name, "app created");
        Ok(self.app_view(rec).await)
    }

    /// One app.
    pub async fn app(&self, name: &str) -> Result<App, Error> {
        Ok(self.app_view(self.app_record(name).await?.value).await)
    }

    /// Every app, by name.
    pub async fn apps(&self) -> Result<Vec<App>, Error> {
        let mut apps = Vec::new();
        for rec in self.repo.apps().await? {
            apps.push(self.app_view(rec).await);
        }
        Ok(apps)
    }

    /// Apply `change` to an app record with [`repo::Repo::update`] (compare-and-swap, retried
    /// on concurrent writes). `change` returns `Ok(false)` to leave the record as it is.
    pub(super) async fn update_app<F>(&self, name: &str, mut change: F) -> Result<AppRecord, Error>
    where
        F: FnMut(&mut AppRecord) -> Result<bool, Error>,
    {
        let _guard = self.app_locks.lock(name).await;
        let updated = self
            .repo
            .update(
                &repo::app_key(name),
                |current: Option<Versioned<AppRecord>>| {
                    ready(match current {
                        None => Err(Error::NotFound(format!("app not found: {name}"))),
                        Some(current) => {
                            let mut rec = current.value;
                            match change(&mut rec) {
                                Ok(true) => Ok(Update::put(rec)),
                                Ok(false) => Ok(Update::keep()),
                                Err(e) => Err(e),
                            }
                        }
                    })
                },
            )
            .await?;
        updated
            .value
            .ok_or_else(|| Error::NotFound(format!("app not found: {name}")))
    }

    /// Lock (termination protection) or unlock an app.
    pub async fn app_lock(&self, name: &str, lock: bool) -> Result<App, Error> {
        let rec = self
            .update_app(name, |rec| {
                let changed = rec.locked != lock;
                rec.locked = lock;
                Ok(changed)
            })
            .await?;
        tracing::info!(target: "audit", app = name, lock, "app lock changed");
        Ok(self.app_view(rec).await)
    }

    /// Ask the deployment in progress to stop and roll back.
    pub async fn app_cancel(&self, name: &str) -> Result<(), Error> {
        self.update_app(name, |rec| {
            if rec.status != AppStatus::Updating {
                return Err(Error::Conflict(format!(
                    "nothing to cancel: app {name} is not deploying (status {})",
                    rec.status
                )));
            }
            rec.cancel_requested = true;
            Ok(true)
        })
        .await?;
        tracing::info!(target: "audit", app = name, "deployment cancel requested");
        Ok(())
    }

    /// Delete an app with its builds and releases. Refused while the app is locked.
    pub async fn app_delete(&self, name: &str) -> Result<(), Error> {
        let _guard = self.app_locks.lock(name).await;
        self.repo
            .update(
                &repo::app_key(name),
                |current: Option<Versioned<AppRecord>>| {
                    ready(match current {
                        None => Err(Error::NotFound(format!("app not found: {name}"))),
                        Some(c) if c.value.locked => {
                            Err(Error::Conflict(format!("app is locked: {name}")))
                        }
                        Some(_) => Ok(Update::delete().also([
                            Op::DeletePrefix(repo::releases_prefix(name)),
                            Op::DeletePrefix(repo::builds_prefix(name)),
                            Op::Delete(repo::scale_key(name)),
                        ])),
                    })
                },
            )
            .await?;
        self.releases.forget_app(name);
        if let Err(e) = self.objects.delete_app(name).await {
            tracing::warn!(app = name, error = %e, "cannot remove the app's objects");
        }
        tracing::info!(target: "audit", app = name, "app deleted");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names() {
        assert!(validate_app_name("myapp").is_ok());
        assert!(validate_app_name("a-1").is_ok());
        for bad in ["", "MyApp", "1app", "-a", "my_app", "a.b", "rack", "system"] {
            assert!(validate_app_name(bad).is_err(), "{bad}");
        }
        assert!(validate_app_name(&"a".repeat(41)).is_err());
    }
}
