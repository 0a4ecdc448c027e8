//! The contract check: which `dray:plugin` version and world a component was
//! built for, and whether this agent can host it.
//!
//! Owns the reading of a component's import/export names (they carry the
//! package version, e.g. `dray:plugin/resource-provider@0.1.0`) and the
//! semver compatibility rule. It must never instantiate or run anything.

use wasmtime::component::Component;
use wasmtime::Engine;

use crate::{PluginError, PluginKind};

/// The contract package name.
pub const PACKAGE: &str = "dray:plugin";
/// The contract versions this host was built against (bindgen'd), newest
/// first. A plugin is accepted if its contract is compatible with one.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.1.0"];

/// A parsed `major.minor.patch[-pre]` version.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Version {
    major: u64,
    minor: u64,
    patch: u64,
    pre: Option<String>,
}

fn parse(v: &str) -> Option<Version> {
    let (core, pre) = match v.split_once('-') {
        Some((c, p)) => (c, Some(p.to_string())),
        None => (v, None),
    };
    let mut parts = core.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some(Version {
        major,
        minor,
        patch,
        pre,
    })
}

/// The component-model semver rule (as wasmtime resolves names): prerelease
/// and `0.0.x` versions match only exactly; `0.x` matches the same minor;
/// `>= 1` matches the same major.
pub fn compatible(host: &str, plugin: &str) -> bool {
    let (Some(h), Some(p)) = (parse(host), parse(plugin)) else {
        return false;
    };
    if h.pre.is_some() || p.pre.is_some() || (h.major == 0 && h.minor == 0) {
        return h == p;
    }
    if h.major == 0 {
        p.major == 0 && p.minor == h.minor
    } else {
        p.major == h.major
    }
}

/// How the supported range is shown to users (`0.1.x`).
pub fn supported_range() -> String {
    SUPPORTED_VERSIONS
        .iter()
        .map(|v| match parse(v) {
            Some(p) if p.major == 0 => format!("{PACKAGE}@0.{}.x", p.minor),
            Some(p) => format!("{PACKAGE}@{}.x", p.major),
            None => format!("{PACKAGE}@{v}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the contract check found.
#[derive(Debug, Clone)]
pub(crate) struct ContractInfo {
    pub(crate) kind: PluginKind,
    /// The plugin's contract version (e.g. `0.1.0`).
    pub(crate) version: String,
}

/// Check the component's `dray:plugin` imports/exports against the
/// supported versions and find which world it targets.
pub(crate) fn check(engine: &Engine, component: &Component) -> Result<ContractInfo, PluginError> {
    let ty = component.component_type();
    let mut versions: Vec<(String, String)> = Vec::new();
    let mut kind = None;
    let mut consider = |name: &str, exported: bool| -> Result<(), PluginError> {
        let Some(rest) = name.strip_prefix(PACKAGE).and_then(|r| r.strip_prefix('/')) else {
            return Ok(());
        };
        let (iface, version) = rest.split_once('@').unwrap_or((rest, ""));
        versions.push((name.to_string(), version.to_string()));
        if exported {
            let this = match iface {
                "resource-provider" => PluginKind::Resource,
                "balancer" => PluginKind::Balancer,
                _ => return Ok(()),
            };
            match kind {
                Some(k) if k != this => {
                    return Err(PluginError::InvalidComponent(
                        "the component exports both resource-provider and balancer; a plugin targets one world".into(),
                    ))
                }
                _ => kind = Some(this),
            }
        }
        Ok(())
    };
    for (name, _) in ty.imports(engine) {
        consider(name, false)?;
    }
    for (name, _) in ty.exports(engine) {
        consider(name, true)?;
    }
    // Version first: a plugin built for another major exports differently
    // named interfaces and must get the version error, not "not a plugin".
    for (name, version) in &versions {
        if !SUPPORTED_VERSIONS.iter().any(|s| compatible(s, version)) {
            return Err(PluginError::ContractMismatch {
                found: format!("{PACKAGE}@{version}"),
                supported: supported_range(),
                interface: name.clone(),
            });
        }
    }
    let Some(kind) = kind else {
        return Err(PluginError::NotAPlugin {
            expected: format!(
                "{PACKAGE}/resource-provider or {PACKAGE}/balancer (contract {})",
                supported_range()
            ),
        });
    };
    let version = versions
        .iter()
        .map(|(_, v)| v.clone())
        .next()
        .unwrap_or_default();
    Ok(ContractInfo { kind, version })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_rules() {
        assert!(compatible("0.1.0", "0.1.0"));
        assert!(compatible("0.1.0", "0.1.7"));
        assert!(compatible("0.1.3", "0.1.0"));
        assert!(!compatible("0.1.0", "0.2.0"));
        assert!(!compatible("0.1.0", "1.0.0"));
        assert!(compatible("1.2.0", "1.0.5"));
        assert!(!compatible("1.2.0", "2.0.0"));
        assert!(!compatible("0.0.1", "0.0.2"));
        assert!(compatible("0.0.1", "0.0.1"));
        assert!(!compatible("0.1.0", "0.1.0-draft"));
        assert!(!compatible("0.1.0", ""));
        assert_eq!(supported_range(), "dray:plugin@0.1.x");
    }
}
