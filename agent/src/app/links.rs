//! A service's resource links (`resources: [db]` gives `DB_URL`, `DB_USER`, ...): filling them
//! in from the resources' records, and whether a release's links are ready at all. Pure: the
//! records are read by the callers (the node when it starts a process, the planner when it
//! plans a release). It must never read the store or decide what a resource looks like.

use std::collections::BTreeMap;

/// Whether the resources a release's services link are ready: the planner starts nothing of
/// a release that waits, and rolls back a deployment whose resource failed.
pub fn links_state(
    manifest: &dray_manifest::Manifest,
    release_env: &BTreeMap<String, String>,
    resources: &[crate::repo::ResourceRecord],
) -> crate::deploy::planner::Links {
    use crate::deploy::planner::Links;
    let mut waiting = None;
    for (name, svc) in &manifest.services {
        let mut penv = BTreeMap::new();
        match link_resources(&mut penv, release_env, svc, resources) {
            Ok(()) => {}
            Err(LinkError::Failed(e)) => return Links::Failed(format!("service {name}: {e}")),
            Err(LinkError::Waiting(e)) => {
                waiting.get_or_insert(format!("service {name}: {e}"));
            }
        }
    }
    match waiting {
        Some(w) => Links::Waiting(w),
        None => Links::Ready,
    }
}

/// Why a service's resource links cannot be filled in.
#[derive(Debug)]
pub enum LinkError {
    /// A linked resource is still being provisioned.
    Waiting(String),
    /// A linked resource failed (no plugin, spec refused, image missing, ...).
    Failed(String),
}

/// Add the variables of a service's resource links (`DATABASE_URL`, ...) to its env, from the
/// resources' records. A variable the app's env sets wins; a resource replaced by its
/// `<NAME>_URL` in the env links that URL and empty values. Err names a linked resource that
/// has not been realized yet, or that failed before it ever was.
pub fn link_resources(
    penv: &mut BTreeMap<String, String>,
    release_env: &BTreeMap<String, String>,
    svc: &dray_manifest::Service,
    resources: &[crate::repo::ResourceRecord],
) -> Result<(), LinkError> {
    for link in svc.resource_links() {
        if release_env.contains_key(&link.env) {
            continue;
        }
        let prefix = dray_manifest::env_prefix(&link.resource);
        let value = if let Some(url) = release_env.get(&format!("{prefix}_URL")) {
            if link.key == "URL" {
                url.clone()
            } else {
                String::new()
            }
        } else {
            let r = resources
                .iter()
                .find(|r| r.name == link.resource)
                .filter(|r| !r.outputs.is_empty() && r.status != "overridden")
                .ok_or_else(
                    || match resources.iter().find(|r| r.name == link.resource) {
                        Some(r) if r.status == "failed" => LinkError::Failed(format!(
                            "resource {} failed: {}",
                            link.resource, r.reason
                        )),
                        Some(r) => LinkError::Waiting(format!(
                            "resource {} is not ready yet ({})",
                            link.resource,
                            r.status_line()
                        )),
                        None => LinkError::Waiting(format!(
                            "resource {} is not ready yet (pending)",
                            link.resource
                        )),
                    },
                )?;
            r.outputs
                .iter()
                .find(|o| o.key == link.key)
                .map(|o| o.value.clone())
                .unwrap_or_default()
        };
        penv.insert(link.env, value);
    }
    Ok(())
}
