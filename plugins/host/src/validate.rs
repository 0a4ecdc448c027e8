//! Host-side checks of what plugins return: descriptions, plans, outputs and
//! data commands.
//!
//! A plugin is untrusted: the agent must never act on a plan it has not
//! checked here. This module owns those checks and nothing else; it must
//! never modify what it checks.

use std::collections::HashSet;

use crate::types::{DataCommand, DesiredObject, Output, PluginDescription, Probe, ResourcePlan};

const MAX_OBJECTS: usize = 32;
const MAX_LIST: usize = 256;
const MAX_STRING: usize = 64 * 1024;

/// `[a-z][a-z0-9-]*`, at most 63 characters, not ending in `-`.
pub(crate) fn is_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && !s.ends_with('-')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn check_str(what: &str, s: &str) -> Result<(), String> {
    if s.len() > MAX_STRING {
        return Err(format!(
            "{what} is {} bytes long (limit {MAX_STRING})",
            s.len()
        ));
    }
    if s.contains('\0') {
        return Err(format!("{what} contains a NUL byte"));
    }
    Ok(())
}

/// Check a plugin's self-description.
pub(crate) fn description(d: &PluginDescription, resource: bool) -> Result<(), String> {
    if !is_name(&d.name) {
        return Err(format!(
            "plugin name {:?} must match [a-z][a-z0-9-]* (at most 63 characters)",
            d.name
        ));
    }
    if d.version.is_empty() || d.version.len() > 64 || d.version.contains(char::is_whitespace) {
        return Err(format!("plugin version {:?} is not a version", d.version));
    }
    check_str("summary", &d.summary)?;
    if resource && d.types.is_empty() {
        return Err("a resource plugin must serve at least one resource type".into());
    }
    if !resource && !d.types.is_empty() {
        return Err("a balancer plugin serves no resource types".into());
    }
    let mut seen = HashSet::new();
    for t in &d.types {
        if !is_name(&t.name) {
            return Err(format!(
                "resource type name {:?} must match [a-z][a-z0-9-]*",
                t.name
            ));
        }
        if !seen.insert(t.name.as_str()) {
            return Err(format!("resource type {} is listed twice", t.name));
        }
        let mut options = HashSet::new();
        for o in &t.options {
            if o.name.is_empty() || !options.insert(o.name.as_str()) {
                return Err(format!(
                    "type {}: option {:?} is empty or listed twice",
                    t.name, o.name
                ));
            }
        }
    }
    Ok(())
}

/// Check a plan before the agent acts on it.
pub(crate) fn plan(p: &ResourcePlan) -> Result<(), String> {
    if p.objects.is_empty() {
        return Err("the plan has no objects".into());
    }
    if p.objects.len() > MAX_OBJECTS {
        return Err(format!(
            "the plan has {} objects (limit {MAX_OBJECTS})",
            p.objects.len()
        ));
    }
    let mut names = HashSet::new();
    for object in &p.objects {
        let name = match object {
            DesiredObject::Container(c) => &c.name,
            DesiredObject::CloudDatabase(d) => &d.name,
        };
        if !is_name(name) {
            return Err(format!("object name {name:?} must match [a-z][a-z0-9-]*"));
        }
        if !names.insert(name.as_str()) {
            return Err(format!("object name {name:?} is used twice"));
        }
        match object {
            DesiredObject::Container(c) => {
                let what = |field: &str| format!("container {}: {field}", c.name);
                if c.image.trim().is_empty() {
                    return Err(what("empty image"));
                }
                if c.image.contains(char::is_whitespace) {
                    return Err(what(&format!("image {:?} contains whitespace", c.image)));
                }
                check_str(&what("image"), &c.image)?;
                if let Some(ep) = &c.entrypoint {
                    if ep.is_empty() || ep[0].is_empty() {
                        return Err(what("empty entrypoint"));
                    }
                }
                for (list, len) in [
                    ("command", c.command.len()),
                    ("env", c.env.len()),
                    ("ports", c.ports.len()),
                    ("volumes", c.volumes.len()),
                ] {
                    if len > MAX_LIST {
                        return Err(what(&format!(
                            "{list} has {len} entries (limit {MAX_LIST})"
                        )));
                    }
                }
                for a in c.command.iter().chain(c.entrypoint.iter().flatten()) {
                    check_str(&what("argument"), a)?;
                }
                let mut env = HashSet::new();
                for e in &c.env {
                    if e.key.is_empty() || e.key.contains('=') || e.key.contains('\0') {
                        return Err(what(&format!(
                            "invalid environment variable name {:?}",
                            e.key
                        )));
                    }
                    if !env.insert(e.key.as_str()) {
                        return Err(what(&format!(
                            "environment variable {} is set twice",
                            e.key
                        )));
                    }
                    check_str(&what(&format!("env {}", e.key)), &e.value)?;
                }
                let mut ports = HashSet::new();
                for port in &c.ports {
                    if port.number == 0 {
                        return Err(what(&format!("port {:?} is 0", port.name)));
                    }
                    if !ports.insert((port.number, port.protocol == crate::types::Protocol::Tcp)) {
                        return Err(what(&format!("port {} is listed twice", port.number)));
                    }
                }
                let mut volumes = HashSet::new();
                let mut paths = HashSet::new();
                for v in &c.volumes {
                    if !is_name(&v.name) || !volumes.insert(v.name.as_str()) {
                        return Err(what(&format!(
                            "volume name {:?} is invalid or used twice",
                            v.name
                        )));
                    }
                    if !v.path.starts_with('/')
                        || v.path.split('/').any(|s| s == "..")
                        || !paths.insert(v.path.as_str())
                    {
                        return Err(what(&format!(
                            "volume path {:?} must be absolute, without .., and unique",
                            v.path
                        )));
                    }
                }
                if let Some(h) = &c.health {
                    match &h.probe {
                        Probe::Exec(cmd) if cmd.is_empty() || cmd[0].is_empty() => {
                            return Err(what("empty health check command"))
                        }
                        Probe::Tcp(0) => return Err(what("health check port is 0")),
                        Probe::Http(p) if p.port == 0 || !p.path.starts_with('/') => {
                            return Err(what("health check needs a port and an absolute path"))
                        }
                        _ => {}
                    }
                    if h.interval_ms == 0 || h.timeout_ms == 0 {
                        return Err(what("health check interval and timeout must be positive"));
                    }
                }
                if c.memory_mb == Some(0) || c.cpu_shares == Some(0) {
                    return Err(what("memory and cpu limits must be positive when set"));
                }
            }
            DesiredObject::CloudDatabase(d) => {
                let what = |field: &str| format!("cloud database {}: {field}", d.name);
                for (field, value) in [
                    ("engine", &d.engine),
                    ("engine version", &d.engine_version),
                    ("instance class", &d.instance_class),
                    ("username", &d.username),
                    ("password", &d.password),
                    ("database", &d.database),
                ] {
                    if value.trim().is_empty() {
                        return Err(what(&format!("empty {field}")));
                    }
                    check_str(&what(field), value)?;
                }
                if d.port == 0 {
                    return Err(what("port is 0"));
                }
                if d.storage_gb == 0 {
                    return Err(what("storage is 0 GB"));
                }
            }
        }
    }
    Ok(())
}

/// Check outputs: keys are `[A-Z0-9_]+`, unique.
pub(crate) fn outputs(outputs: &[Output]) -> Result<(), String> {
    if outputs.len() > MAX_LIST {
        return Err(format!("{} outputs (limit {MAX_LIST})", outputs.len()));
    }
    let mut keys = HashSet::new();
    for o in outputs {
        if o.key.is_empty()
            || !o
                .key
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(format!("output key {:?} must match [A-Z0-9_]+", o.key));
        }
        if !keys.insert(o.key.as_str()) {
            return Err(format!("output {} is listed twice", o.key));
        }
        check_str(&format!("output {}", o.key), &o.value)?;
    }
    Ok(())
}

/// Check a data command.
pub(crate) fn data_command(c: &DataCommand) -> Result<(), String> {
    if !is_name(&c.object) {
        return Err(format!("object {:?} is not a valid object name", c.object));
    }
    if c.command.is_empty() || c.command[0].is_empty() {
        return Err("empty command".into());
    }
    for a in &c.command {
        check_str("argument", a)?;
    }
    for e in &c.env {
        if e.key.is_empty() || e.key.contains('=') {
            return Err(format!("invalid environment variable name {:?}", e.key));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ContainerSpec, KeyValue, Port, Protocol};

    fn container(name: &str, image: &str, port: u16) -> DesiredObject {
        DesiredObject::Container(ContainerSpec {
            name: name.into(),
            image: image.into(),
            entrypoint: None,
            command: vec![],
            env: vec![KeyValue {
                key: "A".into(),
                value: "1".into(),
            }],
            ports: vec![Port {
                name: "p".into(),
                number: port,
                protocol: Protocol::Tcp,
            }],
            volumes: vec![],
            health: None,
            memory_mb: None,
            cpu_shares: None,
        })
    }

    fn plan_of(objects: Vec<DesiredObject>) -> ResourcePlan {
        ResourcePlan {
            objects,
            diagnostics: vec![],
        }
    }

    #[test]
    fn rejects_malformed_plans() {
        assert!(plan(&plan_of(vec![container("pg", "postgres:16", 5432)])).is_ok());
        assert!(plan(&plan_of(vec![])).unwrap_err().contains("no objects"));
        assert!(plan(&plan_of(vec![container("pg", "", 5432)]))
            .unwrap_err()
            .contains("empty image"));
        assert!(plan(&plan_of(vec![container("pg", "x", 0)]))
            .unwrap_err()
            .contains("is 0"));
        assert!(plan(&plan_of(vec![
            container("pg", "x", 1),
            container("pg", "y", 2)
        ]))
        .unwrap_err()
        .contains("used twice"));
        assert!(plan(&plan_of(vec![container("Bad_Name", "x", 1)])).is_err());
    }

    #[test]
    fn names() {
        assert!(is_name("postgres"));
        assert!(is_name("rds-postgres2"));
        assert!(!is_name("Postgres"));
        assert!(!is_name("-x"));
        assert!(!is_name("x-"));
        assert!(!is_name(""));
    }

    #[test]
    fn output_keys() {
        let o = |k: &str| Output {
            key: k.into(),
            value: "v".into(),
            secret: false,
        };
        assert!(outputs(&[o("URL"), o("PORT")]).is_ok());
        assert!(outputs(&[o("url")]).is_err());
        assert!(outputs(&[o("URL"), o("URL")]).is_err());
    }
}
