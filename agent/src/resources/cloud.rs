//! Cloud databases of resource plans (`rds-*`), through `dray-cloud` (cargo feature `aws`):
//! ensure one exists and is available, delete it. Without the feature a plan that asks for one
//! fails with how to get it. This module never speaks AWS itself (`dray-cloud` does).

use super::*;

impl Resources {
    #[cfg(feature = "aws")]
    pub(super) async fn rds(&self) -> &dray_cloud::Rds {
        self.rds
            .get_or_init(|| async {
                dray_cloud::Rds::new(&dray_cloud::RdsConfig {
                    endpoint: self.config.aws_endpoint.clone(),
                    region: self.config.aws_region.clone(),
                    credentials: None,
                })
                .await
            })
            .await
    }

    /// Make one planned cloud database exist; ready once it is available.
    #[cfg(feature = "aws")]
    pub(super) async fn ensure_cloud(
        &self,
        d: &Declared,
        db: &types::CloudDatabaseSpec,
    ) -> Result<(ResourceObject, bool), String> {
        let identifier = dray_cloud::identifier(&self.config.rack, &d.app, &d.name);
        let spec = dray_cloud::DatabaseSpec {
            identifier: identifier.clone(),
            engine: db.engine.clone(),
            engine_version: db.engine_version.clone(),
            instance_class: db.instance_class.clone(),
            storage_gb: db.storage_gb,
            port: db.port,
            username: db.username.clone(),
            password: db.password.clone(),
            database: db.database.clone(),
            encrypted: db.encrypted,
            multi_az: db.multi_az,
            backup_retention_days: db.backup_retention_days,
            deletion_protection: db.deletion_protection,
            tags: vec![
                ("dray:rack".into(), self.config.rack.clone()),
                ("dray:app".into(), d.app.clone()),
                ("dray:resource".into(), d.name.clone()),
            ],
        };
        let state = match self.rds().await.ensure(&spec).await {
            Ok(state) => state,
            // A spec AWS refuses will not get better; anything else (throttling, the network,
            // a 5xx) is retried on the next pass while the deploy's deadline runs.
            Err(e @ dray_cloud::CloudError::InvalidSpec { .. }) => return Err(e.to_string()),
            Err(e) if e.code().is_some_and(|c| c.starts_with("InvalidParameter")) => {
                return Err(e.to_string())
            }
            Err(e) => {
                tracing::warn!(app = %d.app, resource = %d.name, error = %e, "cloud database not ready; retrying");
                return Ok((
                    ResourceObject {
                        name: db.name.clone(),
                        kind: "cloud-database".into(),
                        id: identifier,
                        version: db.engine_version.clone(),
                        ..Default::default()
                    },
                    false,
                ));
            }
        };
        if state.is_failed() {
            return Err(format!("cloud database {identifier} is {}", state.status));
        }
        let (host, port) = match (&state.endpoint, state.is_available()) {
            (Some((h, p)), true) => (h.clone(), *p),
            _ => (String::new(), 0),
        };
        let ready = !host.is_empty();
        Ok((
            ResourceObject {
                name: db.name.clone(),
                kind: "cloud-database".into(),
                id: identifier,
                version: state
                    .engine_version
                    .clone()
                    .unwrap_or_else(|| db.engine_version.clone()),
                hash: String::new(),
                host,
                port,
            },
            ready,
        ))
    }

    #[cfg(not(feature = "aws"))]
    pub(super) async fn ensure_cloud(
        &self,
        _d: &Declared,
        db: &types::CloudDatabaseSpec,
    ) -> Result<(ResourceObject, bool), String> {
        Err(format!(
            "the plan asks for a cloud database ({} {}), but this drayd was built without AWS \
             support: rebuild it with `cargo build --features aws`",
            db.engine, db.engine_version
        ))
    }

    /// Remove one object; Err (for cloud databases) means it is still there and the removal
    /// must be retried.
    pub(super) async fn remove_object(&self, o: &ResourceObject) -> Result<(), String> {
        match o.kind.as_str() {
            "container" => {
                self.stop_container(&o.id).await;
                Ok(())
            }
            #[cfg(feature = "aws")]
            "cloud-database" => self.rds().await.delete(&o.id).await.map_err(|e| {
                tracing::warn!(identifier = %o.id, error = %e, "cannot delete a cloud database");
                e.to_string()
            }),
            #[cfg(not(feature = "aws"))]
            "cloud-database" => Err(format!(
                "cannot delete cloud database {}: this drayd was built without AWS support",
                o.id
            )),
            _ => Ok(()),
        }
    }
}
