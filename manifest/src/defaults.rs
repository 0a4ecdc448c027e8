//! Defaults (reference §3.3), including the ones that depend on which keys were *written* rather than
//! on their values, the env merge (§3.1 step 6) and the label merge (§3.1 step 7).
//!
//! This module owns Convox's `ApplyDefaults`, `CombineEnv` and `CombineLabels`. The decoder tells it
//! what was written through [`Written`]. It must never read YAML and never reject anything except the
//! load-time rules Convox has here (limits below requests, reserved label keys).

use crate::decode::Dec;
use crate::diag::Pos;
use crate::model::*;

/// Which presence-sensitive keys a service wrote (Convox's attribute set, §3.1 step 3).
#[derive(Debug, Default)]
pub(crate) struct Written {
    pub deployment_minimum: bool,
    pub deployment_maximum: bool,
    pub init: bool,
    pub termination_grace: bool,
    pub tls_redirect: bool,
    /// `scale` was written at all.
    pub scale: bool,
    /// `scale` is a map with at least one key.
    pub scale_subkeys: bool,
    /// `scale` is null or an empty map.
    pub scale_empty: bool,
    pub scale_count: bool,
    pub scale_min: bool,
    pub scale_max: bool,
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub autoscale_written: bool,
}

/// Reserved label keys (set by the rack).
pub(crate) const RESERVED_LABELS: [&str; 7] = [
    "system", "rack", "app", "name", "service", "release", "type",
];

/// Apply one service's defaults. `path` is `services.<name>`.
pub(crate) fn service(s: &mut Service, w: &Written, path: &str, dec: &mut Dec) {
    // build: `.` when there is neither build nor image; Dockerfile by default.
    match (&mut s.build, &s.image) {
        (None, None) => {
            s.build = Some(Build {
                path: ".".into(),
                manifest: "Dockerfile".into(),
                args: Vec::new(),
            })
        }
        (Some(b), None) if b.path.is_empty() => b.path = ".".into(),
        (Some(b), Some(_)) if b.path.is_empty() => s.build = None,
        _ => {}
    }
    if let Some(b) = &mut s.build {
        if b.manifest.is_empty() {
            b.manifest = "Dockerfile".into();
        }
    }

    // deployment: 50/200, or 0/100 for agents and singletons, unless written.
    let one_at_a_time = s.agent || s.singleton;
    if !w.deployment_maximum {
        s.deployment.maximum = if one_at_a_time { 100 } else { 200 };
    }
    if !w.deployment_minimum {
        s.deployment.minimum = if one_at_a_time { 0 } else { 50 };
    }

    // health: path `/`, interval 5, grace = interval, timeout = interval - 1 (each when 0).
    if s.health.path.is_empty() {
        s.health.path = "/".into();
    }
    if s.health.interval == 0 {
        s.health.interval = 5;
    }
    if s.health.grace == 0 {
        s.health.grace = s.health.interval;
    }
    if s.health.timeout == 0 {
        s.health.timeout = s.health.interval - 1;
    }
    if let Some(p) = &mut s.health.port {
        if p.scheme.is_empty() {
            p.scheme = "http".into();
        }
    }

    // liveness: only with a path; grace 10, interval 5, timeout 5, success 1, failure 3.
    if let Some(l) = &mut s.liveness {
        if l.grace == 0 {
            l.grace = 10;
        }
        if l.interval == 0 {
            l.interval = 5;
        }
        if l.timeout == 0 {
            l.timeout = 5;
        }
        if l.success_threshold == 0 {
            l.success_threshold = 1;
        }
        if l.failure_threshold == 0 {
            l.failure_threshold = 3;
        }
        if let Some(p) = &mut l.port {
            if p.scheme.is_empty() {
                p.scheme = "http".into();
            }
        }
    }

    // init: true unless written.
    if !w.init {
        s.init = true;
    }

    // port scheme: http once a port is set.
    if let Some(p) = &mut s.port {
        if p.scheme.is_empty() {
            p.scheme = "http".into();
        }
    }

    scale(s, w, path, dec);

    if !w.termination_grace {
        s.termination.grace = 30;
    }
    if s.timeout == 0 {
        s.timeout = 60;
    }
    if !w.tls_redirect {
        s.tls.redirect = true;
    }
    if let Some(c) = &mut s.certificate {
        if c.duration.is_empty() {
            c.duration = "2160h".into();
        }
    }

    // startupProbe: missing values come from liveness; GPU services get a TCP probe on the port.
    let gpu = s.scale.gpu.as_ref().map(|g| g.count).unwrap_or(0);
    if let Some(sp) = &mut s.startup_probe {
        if let Some(l) = &s.liveness {
            sp.grace.get_or_insert(l.grace);
            sp.interval.get_or_insert(l.interval);
            sp.timeout.get_or_insert(l.timeout);
            sp.success_threshold.get_or_insert(l.success_threshold);
            sp.failure_threshold.get_or_insert(l.failure_threshold);
        }
    } else if gpu > 0 {
        if let Some(p) = &s.port {
            s.startup_probe = Some(StartupProbe {
                path: None,
                tcp_socket_port: Some(p.port.to_string()),
                grace: Some(300),
                interval: Some(10),
                timeout: None,
                success_threshold: None,
                failure_threshold: Some(180),
            });
        }
    }
}

fn scale(s: &mut Service, w: &Written, path: &str, dec: &mut Dec) {
    let sc = &mut s.scale;
    // No scale key at all: count 1. Scale keys but no count: count 1. (`scale:` alone or `scale: {}`
    // keeps the parsed 0, as in Convox.)
    if !w.scale || (!w.scale_count && w.scale_subkeys) {
        sc.count = ScaleCount { min: 1, max: 1 };
    }
    if w.scale_empty {
        let pos = dec
            .positions
            .get(&format!("{path}.scale"))
            .copied()
            .unwrap_or_default();
        dec.d.warn(
            pos,
            format!("{path}.scale: an empty `scale` gives a count of 0 (as in Convox)"),
            Some("write `scale: 1`, or remove `scale:` for the default of 1".into()),
        );
    }
    // scale.min / scale.max fold into count.
    if w.scale_min || w.scale_max {
        let auto = sc.autoscale.as_ref().is_some_and(Autoscale::is_enabled);
        match (w.min, w.max) {
            (Some(a), Some(b)) => sc.count = ScaleCount { min: a, max: b },
            (Some(a), None) => {
                sc.count = ScaleCount {
                    min: a,
                    max: if auto { 10 } else { a },
                }
            }
            (None, Some(b)) => {
                sc.count = ScaleCount {
                    min: if auto { sc.count.min } else { b },
                    max: b,
                }
            }
            (None, None) => {}
        }
    }
    if sc.gpu.as_ref().is_some_and(|g| g.count == 0) {
        sc.gpu = None;
    }
    if let Some(g) = &mut sc.gpu {
        if g.vendor.is_empty() {
            g.vendor = "nvidia".into();
        }
    }
    let limit = sc.limit.unwrap_or_default();
    if sc.gpu.is_none() {
        if sc.cpu == 0 {
            sc.cpu = if limit.cpu > 0 { limit.cpu } else { 250 };
        }
        if sc.memory == 0 {
            sc.memory = if limit.memory > 0 { limit.memory } else { 512 };
        }
    }
    let at = |dec: &Dec, key: &str| {
        dec.positions
            .get(&format!("{path}.scale.limit.{key}"))
            .or_else(|| dec.positions.get(&format!("{path}.scale")))
            .copied()
            .unwrap_or_default()
    };
    if limit.cpu > 0 && limit.cpu < sc.cpu {
        let pos = at(dec, "cpu");
        dec.d.error(
            pos,
            "cpu limit can not be less cpu request",
            Some(format!(
                "raise `scale.limit.cpu` to at least {} or lower `scale.cpu`",
                sc.cpu
            )),
        );
    }
    if limit.memory > 0 && limit.memory < sc.memory {
        let pos = at(dec, "memory");
        dec.d.error(
            pos,
            "memory limit can not be less memory request",
            Some(format!(
                "raise `scale.limit.memory` to at least {} or lower `scale.memory`",
                sc.memory
            )),
        );
    }
}

/// Manifest-wide steps after every section is decoded: env merge and label merge.
pub(crate) fn manifest(m: &mut Manifest, top_env_pos: &[Pos], dec: &mut Dec) {
    // CombineEnv: top-level environment, then the service's own.
    for s in m.services.values_mut() {
        let mut env = m.environment.clone();
        env.append(&mut s.environment);
        s.environment = env;
        let mut pos = top_env_pos.to_vec();
        pos.append(&mut s.env_pos);
        s.env_pos = pos;
    }

    // CombineLabels: reserved keys are rejected; top-level labels fill in for each service.
    let reserved_hint = || {
        Some(format!(
            "rename the label; {} are set by the rack",
            RESERVED_LABELS.join(", ")
        ))
    };
    for k in m.labels.keys() {
        if RESERVED_LABELS.contains(&k.as_str()) {
            let pos = dec
                .positions
                .get(&format!("labels.{k}"))
                .copied()
                .unwrap_or_default();
            dec.d.error(
                pos,
                format!("reserved label key '{k}' is not allowed"),
                reserved_hint(),
            );
        }
    }
    for s in m.services.values_mut() {
        for k in s.labels.keys() {
            if RESERVED_LABELS.contains(&k.as_str()) {
                let pos = dec
                    .positions
                    .get(&format!("services.{}.labels.{k}", s.name))
                    .copied()
                    .unwrap_or_default();
                dec.d.error(
                    pos,
                    format!("reserved label key '{k}' is not allowed"),
                    reserved_hint(),
                );
            }
        }
        for (k, v) in &m.labels {
            if !s.labels.contains_key(k) {
                s.labels.insert(k.clone(), v.clone());
            }
        }
    }
}
