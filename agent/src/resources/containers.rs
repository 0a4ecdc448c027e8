//! Resource containers: make a planned container exist, run and be healthy (replaced when its
//! plan hash changes, restarted with the node's crash backoff, replaced when stuck before
//! running), and stop or remove one. Containers are built with the node's `base_spec`; this
//! module never decides what a container looks like (the plugin's plan does).

use super::*;

impl Resources {
    /// Make one planned container exist, run and be healthy. Returns its object and whether it
    /// is ready; Err when it cannot be started at all.
    pub(super) async fn ensure_container(
        &self,
        d: &Declared,
        rec: &ResourceRecord,
        c: &PlannedContainer,
        containers: &HashMap<String, ContainerInfo>,
    ) -> Result<(ResourceObject, bool), String> {
        // Host networking: the only port that is the resource's is the one allocated for it.
        if let Some(p) = c.ports.iter().find(|p| p.number != rec.port) {
            return Err(format!(
                "plugin {} planned port {} ({}) for container {}, but a resource listens only on \
                 the port the agent allocated for it ({})",
                rec.plugin, p.number, p.name, c.name, rec.port
            ));
        }
        let id = container_id(&d.app, &d.name, &c.name);
        let hash = plan_hash(c);
        let port = c.ports.first().map(|p| p.number).unwrap_or(rec.port);
        let object = ResourceObject {
            name: c.name.clone(),
            kind: "container".into(),
            id: id.clone(),
            version: c.image.clone(),
            hash: hash.clone(),
            host: INSTANCE_IP.into(),
            port,
        };
        let mut existing = containers.get(&id);
        if let Some(ex) = existing {
            if ex.labels.get(labels::HASH) != Some(&hash) {
                // Keep the running container until its replacement can start at all.
                if let Err(e) = self.runtime.image_config(&c.image).await {
                    return Err(format!(
                        "cannot replace container {} (kept running): image {}: {e}; load it with \
                         `dray images import FILE.tar`",
                        c.name, c.image
                    ));
                }
                crate::logs::system(
                    &self.config,
                    &d.app,
                    &format!(
                        "resource {}: replacing container {} (its plan changed)",
                        d.name, c.name
                    ),
                );
                self.stop_container(&id).await;
                existing = None;
            }
        }
        let now = Instant::now();
        match existing.and_then(|c| c.task.as_ref()).map(|t| t.status) {
            Some(TaskStatus::Running) => {
                self.live().entry(id.clone()).or_insert_with(|| {
                    // Adopted after an agent restart: past its start period.
                    Live::new(now - Duration::from_secs(3600))
                });
                self.ensure_probe(d, &id, c);
                let healthy = self.live().get(&id).is_some_and(|l| l.healthy);
                Ok((object, healthy))
            }
            Some(TaskStatus::Created) | Some(TaskStatus::Paused) | Some(TaskStatus::Unknown) => {
                // Normally a moment between create and start; one stuck there (the agent died
                // in between) is replaced after a minute.
                let stuck = {
                    let mut live = self.live();
                    let l = live.entry(id.clone()).or_insert_with(|| Live::new(now));
                    l.started_at.elapsed() > STUCK_AFTER
                };
                if stuck {
                    tracing::warn!(container = %id, "resource container stuck before running; replacing it");
                    self.stop_container(&id).await;
                    self.start_container(d, rec, c, &id, &hash).await?;
                }
                Ok((object, false))
            }
            Some(TaskStatus::Stopped) | None if existing.is_some() => {
                // It exited: restart it after its backoff delay.
                let code = existing
                    .and_then(|c| c.task.as_ref())
                    .and_then(|t| t.exit_status);
                let due = {
                    let mut live = self.live();
                    let l = live.entry(id.clone()).or_insert_with(|| Live::new(now));
                    match l.restart_at {
                        Some(t) => t <= now,
                        None => {
                            let delay = l.backoff.crashed(
                                &self.policy,
                                l.started_at,
                                now,
                                rand::rng().random::<f64>(),
                            );
                            l.restart_at = Some(now + delay);
                            l.exit_code = code;
                            l.healthy = false;
                            crate::logs::system(
                                &self.config,
                                &d.app,
                                &format!(
                                    "resource {}: container {} exited with code {}; restarting in {}s",
                                    d.name,
                                    c.name,
                                    code.map(|c| c.to_string()).unwrap_or_else(|| "?".into()),
                                    delay.as_secs()
                                ),
                            );
                            delay.is_zero()
                        }
                    }
                };
                if due {
                    if let Err(e) = self.runtime.remove(&id).await {
                        tracing::warn!(container = %id, error = %e, "cannot remove an exited resource container");
                    }
                    self.start_container(d, rec, c, &id, &hash).await?;
                }
                Ok((object, false))
            }
            _ => {
                self.start_container(d, rec, c, &id, &hash).await?;
                Ok((object, false))
            }
        }
    }

    pub(super) async fn start_container(
        &self,
        d: &Declared,
        rec: &ResourceRecord,
        c: &PlannedContainer,
        id: &str,
        hash: &str,
    ) -> Result<(), String> {
        let log_dir = crate::logs::process_dir(
            &self.config,
            &d.app,
            &format!("resource.{}.{}", d.name, c.name),
        );
        let mut spec = crate::node::base_spec(
            &self.config,
            &self.logger_path,
            id,
            &c.image,
            &d.app,
            labels::TYPE_RESOURCE,
            &log_dir,
        );
        spec.entrypoint = c.entrypoint.clone();
        spec.args = c.command.clone();
        spec.env = c
            .env
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect();
        spec.memory_mb = c.memory_mb.map(u64::from);
        spec.cpu_millicores = c.cpu_shares.map(|s| u64::from(s) * 1000 / 1024);
        for v in &c.volumes {
            let dir = volume_dir(&self.config, &d.app, &d.name, &v.name);
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create the volume {}: {e}", dir.display()))?;
            spec.mounts.push(Mount {
                source: dir,
                destination: v.path.clone(),
                read_only: false,
            });
        }
        let l = &mut spec.labels;
        l.insert(labels::RESOURCE.into(), d.name.clone());
        l.insert(labels::OBJECT.into(), c.name.clone());
        l.insert(labels::HASH.into(), hash.to_string());
        l.insert(labels::PORT.into(), rec.port.to_string());
        let restarted = {
            let live = self.live();
            if let Some((retry_at, why)) = live.get(id).and_then(|l| l.start_error.as_ref()) {
                if *retry_at > Instant::now() {
                    return Err(why.clone());
                }
            }
            live.get(id).is_some_and(|l| l.restart_at.is_some())
        };
        match self.runtime.run(&spec).await {
            Ok(_) => {
                let now = Instant::now();
                let mut live = self.live();
                let l = live.entry(id.to_string()).or_insert_with(|| Live::new(now));
                l.started_at = now;
                l.healthy = false;
                l.failures = 0;
                if let Some(p) = l.probe.take() {
                    p.abort();
                }
                l.incarnation += 1;
                l.restart_at = None;
                l.start_error = None;
                drop(live);
                crate::logs::system(
                    &self.config,
                    &d.app,
                    &format!(
                        "resource {}: {} container {} ({}, port {})",
                        d.name,
                        if restarted { "restarted" } else { "started" },
                        c.name,
                        c.image,
                        rec.port
                    ),
                );
                Ok(())
            }
            Err(e) => {
                let hint = if e.is_not_found() {
                    "; load it with `dray images import FILE.tar` or set `image:` on the resource"
                        .to_string()
                } else {
                    String::new()
                };
                let why = format!(
                    "cannot start container {} from image {}: {e}{hint}",
                    c.name, c.image
                );
                let now = Instant::now();
                let mut live = self.live();
                let l = live.entry(id.to_string()).or_insert_with(|| Live::new(now));
                let delay = l
                    .backoff
                    .crashed(&self.policy, now, now, rand::rng().random::<f64>());
                l.start_error = Some((now + delay, why.clone()));
                Err(why)
            }
        }
    }

    pub(super) async fn stop_container(&self, id: &str) {
        match self
            .runtime
            .stop_with_signal(id, STOP_SIGNAL, STOP_GRACE)
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "cannot stop a resource container")
            }
        }
        self.remove_container(id).await;
    }

    pub(super) async fn remove_container(&self, id: &str) {
        if let Err(e) = self.runtime.remove(id).await {
            if !e.is_not_found() {
                tracing::warn!(container = %id, error = %e, "cannot remove a resource container");
            }
        }
        self.live().remove(id);
    }
}
