//! Environment semantics (reference §3.6): which variables a service gets from its declarations and
//! the release env, and which required ones are missing.
//!
//! Declarations are each service's combined list (top-level `environment` first, then the service's):
//! `KEY` is required, `KEY=default` has a default the release env overrides, `KEY=` is optional and
//! empty, and `*` pulls in every release variable. This module owns that arithmetic; it must never
//! add system variables (`APP`, `RACK`, `PORT`, …) or resource variables — the agent does that.

use crate::model::Manifest;
use std::collections::BTreeMap;
use std::fmt;

/// Required variables missing from the release env. `Display` is Convox's text:
/// `required env: A, B` (sorted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingEnv {
    /// The service whose declarations require them (empty when the service does not exist).
    pub service: String,
    /// The missing keys, sorted and unique.
    pub keys: Vec<String>,
}

impl fmt::Display for MissingEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.keys.is_empty() {
            return write!(f, "no such service: {}", self.service);
        }
        write!(f, "required env: {}", self.keys.join(", "))
    }
}

impl std::error::Error for MissingEnv {}

impl Manifest {
    /// The keys a service requires (`- KEY` without a default), sorted and unique.
    pub fn required_env(&self, service: &str) -> Vec<String> {
        let Some(s) = self.services.get(service) else {
            return Vec::new();
        };
        let mut keys: Vec<String> = s
            .environment
            .iter()
            .filter(|e| !e.contains('=') && e.as_str() != "*")
            .cloned()
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Convox's `ServiceEnvironment`: the declared variables of `service` with their values.
    ///
    /// Declarations are applied in order (later ones win): `*` copies every release variable, `KEY`
    /// takes the release value (missing → error), `KEY=default` takes the release value or the
    /// default. Only declared keys are returned (plus everything when `*` is declared). This is what
    /// the build checks and what v2 passes to a process.
    pub fn service_env(
        &self,
        service: &str,
        release_env: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, MissingEnv> {
        let Some(s) = self.services.get(service) else {
            return Err(MissingEnv {
                service: service.to_string(),
                keys: Vec::new(),
            });
        };
        let mut env = BTreeMap::new();
        let mut missing = Vec::new();
        for decl in &s.environment {
            match decl.split_once('=') {
                None if decl == "*" => {
                    env.extend(release_env.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                None => match release_env.get(decl) {
                    Some(v) => {
                        env.insert(decl.clone(), v.clone());
                    }
                    None => {
                        missing.push(decl.clone());
                        env.insert(decl.clone(), String::new());
                    }
                },
                Some((k, default)) => {
                    let v = release_env
                        .get(k)
                        .cloned()
                        .unwrap_or_else(|| default.to_string());
                    env.insert(k.to_string(), v);
                }
            }
        }
        if !missing.is_empty() {
            missing.sort();
            missing.dedup();
            return Err(MissingEnv {
                service: service.to_string(),
                keys: missing,
            });
        }
        Ok(env)
    }

    /// What Convox v3 actually injects into a service's containers (besides system and resource
    /// variables): the manifest defaults (`KEY=default`), then **every** release variable on top.
    /// Missing required variables are still an error.
    pub fn runtime_env(
        &self,
        service: &str,
        release_env: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, MissingEnv> {
        self.service_env(service, release_env)?;
        let mut env: BTreeMap<String, String> = self
            .services
            .get(service)
            .map(|s| s.environment_defaults().into_iter().collect())
            .unwrap_or_default();
        env.extend(release_env.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(env)
    }
}
