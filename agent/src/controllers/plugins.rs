//! Plugins: list, install, upgrade and remove WebAssembly plugins in the running agent.
//!
//! The rules here: what counts as "in use" (a resource of a type the plugin serves in any app's
//! active or newest release), how the host's refusals map onto error kinds, and the wire shape.
//! The host itself lives in [`crate::plugins`]; this module must never call it from the async
//! runtime directly for lifecycle work (those calls block) nor carry out plans.

use std::collections::BTreeMap;

use dray_plugins::{PluginError, PluginInfo, PluginStatus};

use super::{Controllers, Error};
use crate::plugins::Plugins;

/// Largest `.wasm` accepted for install or upgrade.
pub const MAX_PLUGIN_BYTES: usize = 64 * 1024 * 1024;

impl From<PluginError> for Error {
    fn from(e: PluginError) -> Self {
        let message = e.to_string();
        match e {
            PluginError::NotWasm | PluginError::CoreModule => Error::BadRequest(message),
            PluginError::NotInstalled(_) => Error::NotFound(message),
            PluginError::AlreadyInstalled { .. }
            | PluginError::TypeConflict { .. }
            | PluginError::InUse { .. }
            | PluginError::NameMismatch { .. }
            | PluginError::KindChanged { .. } => Error::Conflict(message),
            PluginError::Io { .. } | PluginError::Engine(_) => Error::Internal(message),
            _ => Error::Unprocessable(message),
        }
    }
}

/// Parse a directory grant `HOST:GUEST[:ro]`.
pub fn parse_dir_grant(spec: &str) -> Result<dray_plugins::Preopen, Error> {
    let bad = |why: &str| {
        Error::BadRequest(format!(
            "invalid directory grant {spec:?}: {why} (expected HOST_DIR:GUEST_DIR[:ro], both absolute)"
        ))
    };
    let mut parts: Vec<&str> = spec.split(':').collect();
    let read_only = match parts.last() {
        Some(&"ro") if parts.len() == 3 => {
            parts.pop();
            true
        }
        Some(&"rw") if parts.len() == 3 => {
            parts.pop();
            false
        }
        _ => false,
    };
    let [host, guest] = parts[..] else {
        return Err(bad("wrong number of parts"));
    };
    if !host.starts_with('/') || !guest.starts_with('/') {
        return Err(bad("paths must be absolute"));
    }
    Ok(dray_plugins::Preopen {
        host_path: host.into(),
        guest_path: guest.to_string(),
        read_only,
    })
}

fn check_grants(grants: &dray_plugins::Grants) -> Result<(), Error> {
    for p in &grants.preopens {
        if !p.host_path.is_dir() {
            return Err(Error::BadRequest(format!(
                "cannot grant {}: it is not a directory on the rack",
                p.host_path.display()
            )));
        }
    }
    Ok(())
}

/// What an installation grants, in words (`network`, `dir /srv/x:/data (ro)`).
fn grants_wire(g: &dray_plugins::Grants) -> Vec<String> {
    let mut out = Vec::new();
    if g.network {
        out.push("network".to_string());
    }
    for p in &g.preopens {
        out.push(format!(
            "dir {}:{}{}",
            p.host_path.display(),
            p.guest_path,
            if p.read_only { " (ro)" } else { "" }
        ));
    }
    out
}

/// The wire shape of a plugin.
pub fn plugin_wire(info: PluginInfo) -> dray_sdk::Plugin {
    let (status, reason) = match info.status {
        PluginStatus::Ok => ("ok".to_string(), String::new()),
        PluginStatus::Failed(reason) => ("failed".to_string(), reason),
    };
    // A plugin that failed to load has no contract: what it is is unknown.
    let kind = if info.contract.is_empty() {
        String::new()
    } else {
        info.kind.to_string()
    };
    dray_sdk::Plugin {
        name: info.name,
        version: info.version,
        kind,
        types: info.types,
        status,
        reason,
        contract: info.contract,
        summary: info.summary,
        sha256: info.sha256,
        restarts: info.restarts,
        grants: grants_wire(&info.grants),
    }
}

impl Controllers {
    /// The plugin host (waiting while it loads at start), or why this agent has none.
    pub async fn plugin_host(&self) -> Result<Plugins, Error> {
        self.plugins
            .get()
            .await
            .map_err(|reason| Error::Internal(reason.to_string()))
    }

    /// `GET /plugins`.
    pub async fn plugins(&self) -> Result<Vec<dray_sdk::Plugin>, Error> {
        Ok(self
            .plugin_host()
            .await?
            .list()
            .into_iter()
            .map(plugin_wire)
            .collect())
    }

    /// `GET /plugins/{name}`.
    pub async fn plugin(&self, name: &str) -> Result<dray_sdk::Plugin, Error> {
        self.plugin_host()
            .await?
            .info(name)
            .map(plugin_wire)
            .ok_or_else(|| PluginError::NotInstalled(name.to_string()).into())
    }

    /// `POST /plugins`: install from the `.wasm` bytes; effective at once.
    pub async fn plugin_install(
        &self,
        wasm: Vec<u8>,
        grants: dray_plugins::Grants,
    ) -> Result<dray_sdk::Plugin, Error> {
        check_upload(&wasm)?;
        check_grants(&grants)?;
        let info = self.plugin_host().await?.install(wasm, grants).await?;
        tracing::info!(target: "audit", plugin = %info.name, grants = ?info.grants, "plugin installed");
        self.wake_resources();
        Ok(plugin_wire(info))
    }

    /// `PUT /plugins/{name}` (and `PUT /plugins` with no name): upgrade the plugin to these
    /// bytes, which must be a build of it; effective at once, state kept.
    pub async fn plugin_upgrade(
        &self,
        name: Option<&str>,
        wasm: Vec<u8>,
    ) -> Result<dray_sdk::Plugin, Error> {
        let host = self.plugin_host().await?;
        if let Some(name) = name {
            if host.info(name).is_none() {
                return Err(PluginError::NotInstalled(name.to_string()).into());
            }
        }
        check_upload(&wasm)?;
        let info = host.upgrade(name.map(str::to_string), wasm).await?;
        self.wake_resources();
        Ok(plugin_wire(info))
    }

    /// A plugin change may unblock (or change) resources: let the reconciler look now.
    fn wake_resources(&self) {
        if let Some(r) = &self.resources {
            r.wake();
        }
    }

    /// `DELETE /plugins/{name}`: remove it, refused (naming the apps) while a resource of a
    /// type it serves is in an app's active or newest release.
    pub async fn plugin_remove(&self, name: &str) -> Result<dray_sdk::Plugin, Error> {
        let host = self.plugin_host().await?;
        if host.info(name).is_none() {
            return Err(PluginError::NotInstalled(name.to_string()).into());
        }
        let users = self.resource_type_users().await?;
        let info = host.remove(name.to_string(), users).await?;
        Ok(plugin_wire(info))
    }

    /// Which apps use each resource type: the `resources:` of every app's active and newest
    /// release.
    async fn resource_type_users(&self) -> Result<BTreeMap<String, Vec<String>>, Error> {
        let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for app in self.repo.apps().await? {
            let mut ids = vec![app.release.clone(), app.latest_release.clone()];
            ids.retain(|id| !id.is_empty());
            ids.dedup();
            for id in ids {
                let Some(release) = self.repo.release(&app.name, &id).await? else {
                    continue;
                };
                let env = dray_sdk::Environment::parse(&release.env).0;
                let manifest = match dray_manifest::load_with(
                    "convox.yml",
                    &release.manifest,
                    &env,
                    &dray_manifest::LoadOptions { require_env: false },
                ) {
                    Ok(loaded) => loaded.manifest,
                    Err(e) => {
                        tracing::warn!(app = %app.name, release = %id, "cannot read the release's manifest for plugin use: {e}");
                        continue;
                    }
                };
                for resource in manifest.resources.values() {
                    let apps = users.entry(resource.kind.clone()).or_default();
                    if !apps.contains(&app.name) {
                        apps.push(app.name.clone());
                    }
                }
            }
        }
        Ok(users)
    }
}

/// Refuse an empty or oversized upload before it reaches the host.
fn check_upload(wasm: &[u8]) -> Result<(), Error> {
    if wasm.is_empty() {
        return Err(Error::BadRequest(
            "the request body is empty: send the plugin's .wasm file".into(),
        ));
    }
    if wasm.len() > MAX_PLUGIN_BYTES {
        return Err(Error::BadRequest(format!(
            "the plugin is {} bytes; the limit is {MAX_PLUGIN_BYTES}",
            wasm.len()
        )));
    }
    Ok(())
}
