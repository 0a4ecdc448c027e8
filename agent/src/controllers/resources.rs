//! Resources: list, info, plan (dry-run) and the data operations (export, import, console).
//!
//! The rules here: which release's manifest a request reads (the active one, else the newest),
//! how a record becomes the wire shape, and which checks come before a data operation starts.
//! Carrying plans out is [`crate::resources`]'s job; this module never creates or removes
//! objects.

use std::sync::Arc;

use dray_plugins::types::DataOpKind;
use dray_sdk::ResourceStatus;

use super::{Controllers, Error};
use crate::app::{Declared, ParsedRelease};
use crate::repo::ResourceRecord;
use crate::resources::ResourceError;

impl From<ResourceError> for Error {
    fn from(e: ResourceError) -> Self {
        let m = e.to_string();
        match e {
            ResourceError::NotFound(_) => Error::NotFound(m),
            ResourceError::NotReady(_) => Error::Conflict(m),
            ResourceError::Invalid(_) | ResourceError::Unavailable(_) => Error::Unprocessable(m),
            ResourceError::Runtime(r) if r.is_not_found() => Error::NotFound(m),
            // A conflict stays a 409, a corrupt record keeps its hint.
            ResourceError::Repo(e) => e.into(),
            _ => Error::Internal(m),
        }
    }
}

/// A data operation by its wire name.
pub fn data_op(name: &str) -> Result<DataOpKind, Error> {
    match name {
        "export" => Ok(DataOpKind::Export),
        "import" => Ok(DataOpKind::Import),
        "console" => Ok(DataOpKind::Console),
        other => Err(Error::BadRequest(format!(
            "unknown data operation {other:?}: use export, import or console"
        ))),
    }
}

fn wire(d: &Declared, rec: Option<&ResourceRecord>, links: Vec<String>) -> dray_sdk::Resource {
    let Some(rec) = rec else {
        return dray_sdk::Resource {
            name: d.name.clone(),
            kind: d.kind.clone(),
            status: if d.override_url.is_some() {
                ResourceStatus::Overridden
            } else {
                ResourceStatus::Pending
            },
            url: d.override_url.clone().unwrap_or_default(),
            links,
            ..Default::default()
        };
    };
    dray_sdk::Resource {
        name: rec.name.clone(),
        kind: rec.kind.clone(),
        status: rec.status,
        url: rec
            .outputs
            .iter()
            .find(|o| o.key == "URL")
            .map(|o| o.value.clone())
            .unwrap_or_default(),
        reason: rec.reason.clone(),
        plugin: rec.plugin.clone(),
        port: rec.port,
        outputs: rec.outputs.clone(),
        objects: rec
            .objects
            .iter()
            .map(|o| dray_sdk::ResourceObject {
                name: o.name.clone(),
                kind: o.kind.clone(),
                id: o.id.clone(),
                version: o.version.clone(),
                host: o.host.clone(),
                port: o.port,
            })
            .collect(),
        links,
    }
}

impl Controllers {
    /// The releases whose manifests resource requests read, as the reconciler does: the active
    /// one and the one being deployed (which wins for a name both declare); with neither, the
    /// newest (so a resource can be planned before its first promote).
    async fn resource_releases(&self, app: &str) -> Result<Vec<Arc<ParsedRelease>>, Error> {
        let rec = self.app_record(app).await?.value;
        let mut ids: Vec<&String> = [&rec.release, &rec.deploying]
            .into_iter()
            .filter(|id| !id.is_empty())
            .collect();
        if ids.is_empty() && !rec.latest_release.is_empty() {
            ids.push(&rec.latest_release);
        }
        let mut out = Vec::new();
        for id in ids {
            if let Some(r) = self.releases.get(app, id).await? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The resources an app's releases declare, with the services linking each.
    async fn declared(&self, app: &str) -> Result<Vec<(Declared, Vec<String>)>, Error> {
        let mut out: Vec<(Declared, Vec<String>)> = Vec::new();
        for release in self.resource_releases(app).await? {
            let manifest = release
                .manifest()
                .map_err(|e| Error::Unprocessable(e.to_string()))?;
            for d in release
                .declared()
                .map_err(|e| Error::Unprocessable(e.to_string()))?
            {
                let links = manifest
                    .services
                    .iter()
                    .flat_map(|(svc, s)| {
                        s.resource_links()
                            .into_iter()
                            .filter(|l| l.resource == d.name)
                            .map(move |l| format!("{svc}:{}", l.env))
                    })
                    .collect();
                match out.iter_mut().find(|(x, _)| x.name == d.name) {
                    Some(slot) => *slot = (d.clone(), links),
                    None => out.push((d.clone(), links)),
                }
            }
        }
        Ok(out)
    }

    async fn declared_one(&self, app: &str, name: &str) -> Result<(Declared, Vec<String>), Error> {
        self.declared(app)
            .await?
            .into_iter()
            .find(|(d, _)| d.name == name)
            .ok_or_else(|| Error::NotFound(format!("resource not found: {name}")))
    }

    /// `GET /apps/{app}/resources`.
    pub async fn resources(&self, app: &str) -> Result<Vec<dray_sdk::Resource>, Error> {
        let declared = self.declared(app).await?;
        let records = self.repo.resources(Some(app)).await?;
        Ok(declared
            .iter()
            .map(|(d, links)| wire(d, records.iter().find(|r| r.name == d.name), links.clone()))
            .collect())
    }

    /// `GET /apps/{app}/resources/{name}`.
    pub async fn resource(&self, app: &str, name: &str) -> Result<dray_sdk::Resource, Error> {
        let (d, links) = self.declared_one(app, name).await?;
        let rec = self.repo.resource(app, name).await?;
        Ok(wire(&d, rec.as_ref(), links))
    }

    /// `GET /apps/{app}/resources/{name}/plan`: the plugin's plan as JSON; nothing changes.
    pub async fn resource_plan(&self, app: &str, name: &str) -> Result<serde_json::Value, Error> {
        let (d, _) = self.declared_one(app, name).await?;
        let plan = self.resources_runner()?.plan_preview(&d).await?;
        Ok(serde_json::json!({
            "resource": d.name,
            "type": d.kind,
            "plan": plan,
        }))
    }

    /// Start a data operation: the exec handle whose stdio the API wires to the client.
    pub async fn resource_data(
        &self,
        app: &str,
        name: &str,
        op: DataOpKind,
        tty: Option<bool>,
        size: Option<(u32, u32)>,
    ) -> Result<dray_runtime::ExecHandle, Error> {
        let (d, _) = self.declared_one(app, name).await?;
        let (container, mut spec) = self.resources_runner()?.data_command(&d, op).await?;
        // A client without a terminal (input piped in) asks for no TTY.
        if tty == Some(false) {
            spec.tty = false;
        }
        if spec.tty {
            spec.size = size;
        }
        tracing::info!(target: "audit", app, resource = name, op = ?op, "resource data operation");
        Ok(self.node()?.runtime().exec(&container, &spec).await?)
    }

    /// Check a release's resources before it is promoted: each type has a plugin and the
    /// plugin accepts the spec.
    pub(super) async fn check_resources(&self, release: &ParsedRelease) -> Result<(), Error> {
        let declared = release
            .declared()
            .map_err(|e| Error::Unprocessable(e.to_string()))?;
        if declared.iter().all(|d| d.override_url.is_some()) {
            return Ok(());
        }
        let runner = self.resources_runner()?;
        for d in declared.iter().filter(|d| d.override_url.is_none()) {
            runner.validate(d).await.map_err(|e| {
                Error::Unprocessable(format!("resource {} ({}): {e}", d.name, d.kind))
            })?;
        }
        Ok(())
    }
}
