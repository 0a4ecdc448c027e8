//! What the API asks of resources without changing anything: whether a plugin accepts a
//! declared resource, the plan it would carry out now (`dray resources plan`), and the command
//! of a data operation (export, import, console) on a running resource. It must never create or
//! remove objects.

use super::*;

impl Resources {
    pub(super) fn config_port_range(&self) -> std::ops::RangeInclusive<u16> {
        self.config.port_range.0..=self.config.port_range.1
    }

    /// Whether a plugin serves the resource's type and accepts its spec (warnings are fine).
    pub async fn validate(&self, d: &Declared) -> Result<(), ResourceError> {
        let handle = self
            .plugin_for(&d.kind)
            .await
            .map_err(ResourceError::Invalid)?;
        let port = match self.repo.resource(&d.app, &d.name).await? {
            Some(r) if r.port != 0 => r.port,
            // validate looks at options, not at the port; any valid number does.
            _ => *self.config_port_range().start(),
        };
        handle
            .validate(Self::spec(d, port))
            .await
            .map_err(|e| ResourceError::Invalid(e.to_string()))?;
        Ok(())
    }

    /// What the plugin would do for a declared resource now (nothing is changed).
    pub async fn plan_preview(&self, d: &Declared) -> Result<ResourcePlan, ResourceError> {
        let handle = self
            .plugin_for(&d.kind)
            .await
            .map_err(ResourceError::Unavailable)?;
        let rec = self.repo.resource(&d.app, &d.name).await?;
        let containers = self.containers(&[(labels::APP, d.app.as_str())]).await?;
        let (port, observed, tentative) = match &rec {
            Some(r) if r.port != 0 => (r.port, self.observe(r, &containers), false),
            // Not allocated yet: plan with a free port, given back at once (the real one is
            // allocated when a promote creates the resource).
            _ => {
                let port = self.node.ports().allocate().ok_or_else(|| {
                    ResourceError::Unavailable("no free host port left in the port range".into())
                })?;
                (port, Vec::new(), true)
            }
        };
        let plan = handle.plan(Self::spec(d, port), observed).await;
        if tentative {
            self.node.ports().release(port);
        }
        plan.map_err(|e| ResourceError::Invalid(e.to_string()))
    }

    /// The container and command of a data operation (export, import, console) on a running
    /// resource.
    pub async fn data_command(
        &self,
        d: &Declared,
        op: DataOpKind,
    ) -> Result<(String, ExecSpec), ResourceError> {
        let rec = self.repo.resource(&d.app, &d.name).await?.ok_or_else(|| {
            ResourceError::NotReady(format!(
                "resource {} has not been created yet: promote a release that declares it",
                d.name
            ))
        })?;
        if rec.status == ResourceStatus::Overridden {
            return Err(ResourceError::Invalid(format!(
                "resource {} is replaced by {}_URL in the app's env; run the command against that database instead",
                d.name,
                dray_manifest::env_prefix(&d.name)
            )));
        }
        if rec.status != ResourceStatus::Running {
            return Err(ResourceError::NotReady(format!(
                "resource {} is {}",
                d.name,
                rec.status_line()
            )));
        }
        let handle = self
            .plugin_for(&d.kind)
            .await
            .map_err(ResourceError::Unavailable)?;
        let cmd = handle
            .data_op(Self::spec(d, rec.port), realized(&rec), op)
            .await
            .map_err(|e| match &e {
                dray_plugins::CallError::Plugin {
                    error: types::Error::Unsupported(m),
                    ..
                } => ResourceError::Invalid(format!("{} does not support this: {m}", d.kind)),
                _ => ResourceError::Unavailable(e.to_string()),
            })?;
        let object = rec
            .objects
            .iter()
            .find(|o| o.name == cmd.object && o.kind == "container")
            .ok_or_else(|| {
                ResourceError::Invalid(format!(
                    "the plugin named object {:?} for this, which is not a container of resource {}",
                    cmd.object, d.name
                ))
            })?;
        Ok((
            object.id.clone(),
            ExecSpec {
                args: cmd.command,
                env: cmd.env.into_iter().map(|kv| (kv.key, kv.value)).collect(),
                tty: cmd.tty,
                stdin: true,
                ..Default::default()
            },
        ))
    }
}
