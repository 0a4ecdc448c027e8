//! The validation rules of reference §3.8 (Convox's `pkg/manifest/validate.go`), with Convox's message
//! text, plus a few Dray checks that Convox leaves to Kubernetes (cron syntax, timer commands,
//! balancer protocol mixing).
//!
//! Every finding gets the position of the key it is about and a hint. This module owns cross-section
//! rules (references between services, resources, timers, balancers and configs). It must never change
//! the manifest.

use crate::cron::Cron;
use crate::decode::Dec;
use crate::diag::Pos;
use crate::model::*;
use crate::names::{fix_name, suggest, valid_name, RESOURCE_TYPES};

const NAME_RULE: &str = "must contain only lowercase alphanumeric and dashes";

struct V<'a, 'b> {
    dec: &'a mut Dec<'b>,
}

impl V<'_, '_> {
    /// The position of the first of `paths` that was written.
    fn at(&self, paths: &[String]) -> Pos {
        paths
            .iter()
            .find_map(|p| self.dec.positions.get(p).copied())
            .unwrap_or_default()
    }

    fn err(&mut self, pos: Pos, msg: impl Into<String>, hint: impl Into<Option<String>>) {
        self.dec.d.error(pos, msg, hint.into());
    }

    fn warn(&mut self, pos: Pos, msg: impl Into<String>, hint: impl Into<Option<String>>) {
        self.dec.d.warn(pos, msg, hint.into());
    }
}

fn did_you_mean<'a>(word: &str, names: impl IntoIterator<Item = &'a String>) -> Option<String> {
    suggest(word, names.into_iter().map(String::as_str)).map(|s| format!("did you mean `{s}`?"))
}

/// Go's `net.ParseCIDR`: an IPv4 or IPv6 address, `/`, and a prefix length that fits.
pub(crate) fn valid_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    if bits.to_string() != s.split_once('/').map(|x| x.1).unwrap_or("") {
        return false;
    }
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => bits <= 32,
        Ok(std::net::IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

/// Go's `time.ParseDuration`, in seconds.
pub(crate) fn go_duration(s: &str) -> Option<f64> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0.0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += num * scale;
        rest = &rest[unit_len..];
    }
    Some(if neg { -total } else { total })
}

/// Kubernetes quantity in GiB (`100Gi`, `1Ti`, `107374182400`).
fn quantity_gib(s: &str) -> Option<f64> {
    let units = [
        ("Ki", 1024f64.powi(-2)),
        ("Mi", 1.0 / 1024.0),
        ("Gi", 1.0),
        ("Ti", 1024.0),
        ("Pi", 1024.0 * 1024.0),
        ("K", 1e3 / 1024f64.powi(3)),
        ("M", 1e6 / 1024f64.powi(3)),
        ("G", 1e9 / 1024f64.powi(3)),
        ("T", 1e12 / 1024f64.powi(3)),
    ];
    for (suffix, factor) in units {
        if let Some(n) = s.strip_suffix(suffix) {
            return n.parse::<f64>().ok().map(|v| v * factor);
        }
    }
    s.parse::<f64>().ok().map(|v| v / 1024f64.powi(3))
}

pub(crate) fn validate(m: &Manifest, dec: &mut Dec) {
    let mut v = V { dec };
    configs(m, &mut v);
    balancers(m, &mut v);
    budget(m, &mut v);
    resources(m, &mut v);
    services(m, &mut v);
    timers(m, &mut v);
}

fn configs(m: &Manifest, v: &mut V) {
    for (i, c) in m.configs.iter().enumerate() {
        if c.id.is_empty() {
            let pos = v.at(&[format!("configs[{i}]"), "configs".into()]);
            v.err(
                pos,
                "configs[*].id is required",
                Some("add `id: <name>` to the entry".to_string()),
            );
            break;
        }
    }
}

fn balancers(m: &Manifest, v: &mut V) {
    for (name, b) in &m.balancers {
        let base = format!("balancers.{name}");
        let pos = v.at(std::slice::from_ref(&base));
        if b.ports.is_empty() {
            let p = v.at(&[format!("{base}.ports"), base.clone()]);
            v.err(
                p,
                format!("balancer {name} has no ports"),
                Some("add `ports:` mapping a listen port to a service port, for example `5000: 3000`".to_string()),
            );
        }
        if b.service.is_empty() {
            v.err(
                pos,
                format!("balancer {name} has blank service"),
                Some("add `service: <service name>`".to_string()),
            );
        } else if !m.services.contains_key(&b.service) {
            let p = v.at(&[format!("{base}.service"), base.clone()]);
            let hint = did_you_mean(&b.service, m.services.keys())
                .unwrap_or_else(|| "name a service declared under `services:`".into());
            v.err(
                p,
                format!("balancer {name} refers to unknown service {}", b.service),
                Some(hint),
            );
        }
        for (i, w) in b.whitelist.iter().enumerate() {
            if !valid_cidr(w) {
                let p = v.at(&[
                    format!("{base}.whitelist[{i}]"),
                    format!("{base}.whitelist"),
                ]);
                v.err(
                    p,
                    format!("balancer {name} whitelist {w} is not a valid cidr range"),
                    Some(
                        "write an address with a prefix length, for example `10.0.0.0/8`"
                            .to_string(),
                    ),
                );
            }
        }
        let tcp = b.ports.values().any(|p| p.protocol == Protocol::Tcp);
        let udp = b.ports.values().any(|p| p.protocol == Protocol::Udp);
        if tcp && udp {
            let p = v.at(&[format!("{base}.ports"), base.clone()]);
            v.err(
                p,
                format!("balancer {name} mixes TCP and UDP ports"),
                Some(
                    "use one balancer for the TCP ports and another for the UDP ports".to_string(),
                ),
            );
        }
        if let Some(s) = m.services.get(&b.service) {
            for (listen, t) in &b.ports {
                let declared =
                    s.main_port() == Some(t.port) || s.ports.iter().any(|p| p.port == t.port);
                if !declared {
                    let p = v.at(&[format!("{base}.ports.{listen}"), base.clone()]);
                    v.warn(
                        p,
                        format!(
                            "balancer {name} sends port {listen} to port {} of service {}, which the service does not declare",
                            t.port, b.service
                        ),
                        Some(format!(
                            "add `- {}{}` to the `ports:` of service {}",
                            t.port,
                            if t.protocol == Protocol::Udp { "/udp" } else { "" },
                            b.service
                        )),
                    );
                }
            }
        }
    }
}

fn budget(m: &Manifest, v: &mut V) {
    let Some(b) = &m.budget else {
        return;
    };
    let at = |v: &V, key: &str| v.at(&[format!("budget.{key}"), "budget".into()]);
    let action = b.at_cap_action.clone().unwrap_or_default();
    let cap = b.monthly_cap_usd.unwrap_or(0.0);
    let webhook = b.at_cap_webhook_url.clone().unwrap_or_default();
    let order = b.shutdown_order.clone().unwrap_or_default();
    let grace = b.shutdown_grace_period.clone().unwrap_or_default();
    let recovery = b.recovery_mode.clone().unwrap_or_default();
    let notify = b.notify_before_minutes.unwrap_or(0);
    if action.is_empty()
        && cap == 0.0
        && webhook.is_empty()
        && b.never_auto_shutdown.is_empty()
        && order.is_empty()
        && notify == 0
        && grace.is_empty()
        && recovery.is_empty()
    {
        return;
    }
    if !action.is_empty()
        && !matches!(
            action.as_str(),
            "alert-only" | "block-new-deploys" | "auto-shutdown"
        )
    {
        let p = at(v, "atCapAction");
        v.err(
            p,
            format!(
                "budget.atCapAction must be one of {:?}, {:?}, {:?}; got {:?}",
                "alert-only", "block-new-deploys", "auto-shutdown", action
            ),
            Some(
                "write `atCapAction: alert-only`, `block-new-deploys` or `auto-shutdown`"
                    .to_string(),
            ),
        );
    }
    let auto = action == "auto-shutdown";
    if auto && webhook.trim().is_empty() {
        let p = at(v, "atCapAction");
        v.err(p, format!("budget.atCapAction {:?} requires budget.atCapWebhookUrl to be set; auto-shutdown silently killing services without notification is rejected by design", "auto-shutdown"), Some("add `atCapWebhookUrl: https://…`".to_string()));
    }
    if auto && cap <= 0.0 {
        let p = at(v, "monthlyCapUsd");
        v.err(p, format!("budget.atCapAction {:?} requires budget.monthlyCapUsd > 0; cannot shut down on cap breach without a cap", "auto-shutdown"), Some("add `monthlyCapUsd: <dollars>`".to_string()));
    }
    for (i, name) in b.never_auto_shutdown.iter().enumerate() {
        if !m.services.contains_key(name) {
            let p = v.at(&[format!("budget.neverAutoShutdown[{i}]"), "budget".into()]);
            v.warn(
                p,
                format!("budget.neverAutoShutdown contains {name:?} which is not a service in this manifest; ignoring at runtime"),
                did_you_mean(name, m.services.keys()),
            );
        }
    }
    if notify != 0 && !(5..=1440).contains(&notify) {
        let p = at(v, "notifyBeforeMinutes");
        v.err(
            p,
            format!("budget.notifyBeforeMinutes must be between 5 and 1440; got {notify}"),
            Some(
                "write a number of minutes from 5 to 1440, for example `notifyBeforeMinutes: 30`"
                    .to_string(),
            ),
        );
    }
    if !grace.trim().is_empty() {
        match go_duration(&grace) {
            None => {
                let p = at(v, "shutdownGracePeriod");
                v.err(p, format!("budget.shutdownGracePeriod must be a Go duration string (e.g. {:?}, {:?}); got {:?}", "5m", "30s", grace), Some("write a duration like `5m` or `30s`".to_string()));
            }
            Some(d) if !(0.0..=3600.0).contains(&d) => {
                let p = at(v, "shutdownGracePeriod");
                v.err(
                    p,
                    format!("budget.shutdownGracePeriod must be between 0s and 1h; got {grace}"),
                    Some("write a duration up to `1h`, for example `5m`".to_string()),
                );
            }
            Some(_) => {}
        }
    }
    match order.as_str() {
        "" | "largest-cost" | "newest" => {}
        "priority-annotation" => {
            let p = at(v, "shutdownOrder");
            v.err(
                p,
                format!(
                    "budget.shutdownOrder {:?} reserved for 3.24.7; use {:?} or {:?}",
                    "priority-annotation", "largest-cost", "newest"
                ),
                Some("write `shutdownOrder: largest-cost` or `shutdownOrder: newest`".to_string()),
            );
        }
        _ => {
            let p = at(v, "shutdownOrder");
            v.err(
                p,
                format!(
                    "budget.shutdownOrder must be one of {:?}, {:?}; got {:?}",
                    "largest-cost", "newest", order
                ),
                Some("write `shutdownOrder: largest-cost` or `shutdownOrder: newest`".to_string()),
            );
        }
    }
    match recovery.as_str() {
        "" | "auto-on-reset" | "manual" => {}
        "scheduled" => {
            let p = at(v, "recoveryMode");
            v.err(
                p,
                format!(
                    "budget.recoveryMode {:?} reserved for 3.25.0; use {:?} or {:?}",
                    "scheduled", "auto-on-reset", "manual"
                ),
                Some("write `recoveryMode: auto-on-reset` or `recoveryMode: manual`".to_string()),
            );
        }
        _ => {
            let p = at(v, "recoveryMode");
            v.err(
                p,
                format!(
                    "budget.recoveryMode must be one of {:?}, {:?}; got {:?}",
                    "auto-on-reset", "manual", recovery
                ),
                Some("write `recoveryMode: auto-on-reset` or `recoveryMode: manual`".to_string()),
            );
        }
    }
    if auto {
        let p = at(v, "atCapAction");
        if m.services.is_empty() {
            v.err(p, format!("budget.atCapAction {:?} requires at least one service in the services block; timer-only apps cannot be auto-shut. Use {:?} or remove auto-shutdown.", "auto-shutdown", "block-new-deploys"), Some("write `atCapAction: block-new-deploys`".to_string()));
        } else if m.services.keys().all(|s| b.never_auto_shutdown.contains(s)) {
            v.err(p, format!("budget.atCapAction {:?} with all services listed in neverAutoShutdown leaves no services eligible; either remove a service from neverAutoShutdown or use atCapAction {:?}", "auto-shutdown", "block-new-deploys"), Some("remove one service from `neverAutoShutdown`, or write `atCapAction: block-new-deploys`".to_string()));
        }
    }
}

fn resources(m: &Manifest, v: &mut V) {
    for (name, r) in &m.resources {
        let base = format!("resources.{name}");
        let pos = v.at(std::slice::from_ref(&base));
        if !valid_name(name) {
            v.err(
                pos,
                format!("resource name {name} invalid, {NAME_RULE}"),
                Some(format!("rename it, for example to `{}`", fix_name(name))),
            );
        }
        let kind = r.kind.trim();
        if kind.is_empty() {
            v.err(
                pos,
                format!("resource {name:?} has blank type"),
                Some("add `type: postgres` (or mysql, mariadb, redis, memcached, …)".to_string()),
            );
            continue;
        }
        let tpos = v.at(&[format!("{base}.type"), base.clone()]);
        if kind.starts_with("rds-") || kind.starts_with("elasticache-") {
            let mut chars = name.chars();
            let ok = matches!(chars.next(), Some('a'..='z'))
                && name
                    .chars()
                    .all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'))
                && !name.ends_with('-')
                && name.chars().count() <= 20;
            if !ok {
                v.err(
                    pos,
                    format!("resource name {name} invalid for type {kind}, must start with a letter, end with a letter or digit, and be at most 20 characters"),
                    Some(format!("rename it, for example to `{}`", fix_name(name).chars().take(20).collect::<String>().trim_end_matches('-'))),
                );
            }
        }
        if kind == "efs" {
            v.warn(
                tpos,
                format!("resource {name} has type efs, a Convox v2 (AWS) type that Dray does not provide"),
                Some("for files shared between processes use `volumes:` on the service".to_string()),
            );
        } else if !RESOURCE_TYPES.contains(&kind) {
            let hint = suggest(kind, RESOURCE_TYPES.iter().copied())
                .map(|s| format!("did you mean `{s}`?"))
                .unwrap_or_else(|| format!("built-in types: {}", RESOURCE_TYPES.join(", ")));
            v.warn(
                tpos,
                format!("resource {name} has type {kind}, which is not a built-in type; a resource plugin must provide it"),
                Some(hint),
            );
        }
        if matches!(kind, "postgres" | "postgis" | "mysql" | "mariadb")
            && r.options.contains_key("class")
        {
            let p = v.at(&[format!("{base}.options.class"), base.clone()]);
            v.warn(
                p,
                format!("resource {name}: option `class` is an RDS option; the containerized {kind} ignores it"),
                Some(format!("use `type: rds-{}` for a managed database, or remove the option", if kind == "postgis" { "postgres" } else { kind })),
            );
        }
    }
}

fn volume_option(vo: &VolumeOption) -> Vec<String> {
    let modes = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce"];
    let mut errs = Vec::new();
    match vo {
        VolumeOption::EmptyDir(e) => {
            if e.id.is_empty() {
                errs.push("emptyDir.id is required".to_string());
            } else if e.mount_path.is_empty() {
                errs.push("emptyDir.mountPath is required".to_string());
            } else if e
                .medium
                .as_deref()
                .is_some_and(|m| !m.is_empty() && m != "Memory")
            {
                errs.push("emptyDir.medium's allowed values: Memory".to_string());
            }
        }
        VolumeOption::AwsEfs(s) | VolumeOption::AzureFiles(s) => {
            let kind = if matches!(vo, VolumeOption::AwsEfs(_)) {
                "awsEfs"
            } else {
                "azureFiles"
            };
            if s.id.is_empty() {
                errs.push(format!("{kind}.id is required"));
            } else if s.mount_path.is_empty() {
                errs.push(format!("{kind}.mountPath is required"));
            } else if !modes.contains(&s.access_mode.as_deref().unwrap_or("")) {
                errs.push(format!(
                    "{kind}.accessMode must be one of these values: {}",
                    modes.join(", ")
                ));
            } else if kind == "azureFiles" {
                if let Some(size) = s.extra.get("shareSize") {
                    let text = size
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| size.to_string());
                    if quantity_gib(&text).is_none_or(|g| g < 100.0) {
                        errs.push("azureFiles.shareSize must be at least 100Gi".to_string());
                    }
                }
            }
        }
    }
    errs
}

fn services(m: &Manifest, v: &mut V) {
    let config_ids: Vec<&str> = m.configs.iter().map(|c| c.id.as_str()).collect();
    for (name, s) in &m.services {
        let base = format!("services.{name}");
        let pos = v.at(std::slice::from_ref(&base));
        if !valid_name(name) {
            v.err(
                pos,
                format!("service name {name} invalid, {NAME_RULE}"),
                Some(format!("rename it, for example to `{}`", fix_name(name))),
            );
        }
        let dmin = v.at(&[
            format!("{base}.deployment.minimum"),
            format!("{base}.deployment"),
            base.clone(),
        ]);
        let dmax = v.at(&[
            format!("{base}.deployment.maximum"),
            format!("{base}.deployment"),
            base.clone(),
        ]);
        if s.deployment.minimum < 0 {
            v.err(
                dmin,
                format!("service {name} deployment minimum can not be less than 0"),
                Some("write a percentage between 0 and 100".to_string()),
            );
        }
        if s.deployment.minimum > 100 {
            v.err(
                dmin,
                format!("service {name} deployment minimum can not be greater than 100"),
                Some("write a percentage between 0 and 100".to_string()),
            );
        }
        if s.deployment.maximum < 100 {
            v.err(
                dmax,
                format!("service {name} deployment maximum can not be less than 100"),
                Some("write a percentage between 100 and 200".to_string()),
            );
        }
        if s.deployment.maximum > 200 {
            v.err(
                dmax,
                format!("service {name} deployment maximum can not be greater than 200"),
                Some("write a percentage between 100 and 200".to_string()),
            );
        }
        if s.internal && s.internal_router {
            let p = v.at(&[format!("{base}.internalRouter"), base.clone()]);
            v.err(
                p,
                format!("service {name} can not have both internal and internalRouter set as true"),
                Some("keep `internal: true` (reachable only inside the rack) or `internalRouter: true` (internal router), not both".to_string()),
            );
        }
        for (i, r) in s.resource_names().iter().enumerate() {
            if !m.resources.contains_key(*r) {
                let p = v.at(&[format!("{base}.resources[{i}]"), base.clone()]);
                let hint = did_you_mean(r, m.resources.keys()).unwrap_or_else(|| {
                    format!("declare it under `resources:` (for example `{r}: {{type: postgres}}`)")
                });
                v.err(
                    p,
                    format!("service {name} references a resource that does not exist: {r}"),
                    Some(hint),
                );
            }
        }
        let mut vos: Vec<(String, &VolumeOption)> = s
            .volume_options
            .iter()
            .enumerate()
            .map(|(i, vo)| (format!("{base}.volumeOptions[{i}]"), vo))
            .collect();
        if let Some(ic) = &s.init_container {
            vos.extend(
                ic.volume_options
                    .iter()
                    .enumerate()
                    .map(|(i, vo)| (format!("{base}.initContainer.volumeOptions[{i}]"), vo)),
            );
        }
        for (p, vo) in vos {
            for e in volume_option(vo) {
                let pos = v.at(&[p.clone(), base.clone()]);
                let hint = if e.starts_with("emptyDir") {
                    "write `- emptyDir: {id: cache, mountPath: /cache}` (medium: Memory is optional)"
                } else {
                    "write `- awsEfs: {id: data, mountPath: /data, accessMode: ReadWriteMany}`"
                };
                v.err(pos, e, Some(hint.to_string()));
            }
        }
        if let Some(sc) = &s.security_context {
            security_context(name, &base, sc, v);
        }
        let mut seen: Vec<(String, usize)> = Vec::new();
        for (i, ps) in s.image_pull_secrets.iter().enumerate() {
            let p = v.at(&[format!("{base}.imagePullSecrets[{i}]"), base.clone()]);
            if let Some(e) = pull_secret_error(ps) {
                v.err(
                    p,
                    format!("service {name} imagePullSecrets[{i}]: {e}"),
                    Some(
                        "write `- {registry: ghcr.io, username: me, passwordEnv: GHCR_TOKEN}`"
                            .to_string(),
                    ),
                );
                continue;
            }
            let reg = ps.registry.to_lowercase();
            if let Some((_, prev)) = seen.iter().find(|(r, _)| *r == reg) {
                v.err(p, format!("service {name} imagePullSecrets[{i}]: duplicate registry {:?} (also declared at index {prev}); each registry may be declared at most once per service", ps.registry), Some("merge the two entries".to_string()));
                continue;
            }
            seen.push((reg, i));
        }
        let mut mounts: Vec<(String, &ConfigMount)> = s
            .config_mounts
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("{base}.configMounts[{i}]"), c))
            .collect();
        if let Some(ic) = &s.init_container {
            mounts.extend(
                ic.config_mounts
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (format!("{base}.initContainer.configMounts[{i}]"), c)),
            );
        }
        for (p, cm) in mounts {
            let pos = v.at(&[p, base.clone()]);
            for (field, val) in [("id", &cm.id), ("dir", &cm.dir), ("filename", &cm.filename)] {
                if val.is_empty() {
                    v.err(
                        pos,
                        format!("configMounts[*].{field} is required"),
                        Some(format!("add `{field}:` to the entry")),
                    );
                    break;
                }
            }
            if !config_ids.contains(&cm.id.as_str()) {
                let hint = if config_ids.is_empty() {
                    format!(
                        "declare it under the top-level `configs:` (`- id: {}`)",
                        cm.id
                    )
                } else {
                    format!("known config ids: {}", config_ids.join(", "))
                };
                v.err(pos, format!("config id: '{}' not found", cm.id), Some(hint));
            }
        }
        scale(name, &base, s, v);

        // Dray checks Convox leaves to Kubernetes or the router.
        if let Some(w) = &s.whitelist {
            for cidr in s.whitelist_cidrs() {
                if !valid_cidr(&cidr) {
                    let p = v.at(&[format!("{base}.whitelist"), base.clone()]);
                    v.warn(
                        p,
                        format!("service {name} whitelist entry {cidr} is not a valid cidr range, ignored"),
                        Some(format!("write CIDRs separated by commas, for example `10.0.0.0/8,{}`", w.split(',').next().unwrap_or("192.168.0.0/16").trim())),
                    );
                }
            }
        }
        if let Some(p) = &s.port {
            if !matches!(p.scheme.as_str(), "http" | "https" | "GRPC") {
                let pos = v.at(&[format!("{base}.port"), base.clone()]);
                v.warn(
                    pos,
                    format!("service {name} port scheme `{}` is not http, https or grpc; the router speaks http to it", p.scheme),
                    Some(format!("write `port: {}` or `port: https:{}`", p.port, p.port)),
                );
            }
        }
    }
}

fn pull_secret_error(ps: &ImagePullSecret) -> Option<String> {
    let r = ps.registry.trim();
    if r.is_empty() {
        return Some("registry is required".into());
    }
    if r.contains("://") {
        return Some(format!(
            "registry {r:?} must be a host without a scheme (drop the `{}://`)",
            r.split("://").next().unwrap_or("")
        ));
    }
    if r.contains('/') {
        return Some(format!("registry {r:?} must be a host without a path"));
    }
    if r != r.to_lowercase() {
        return Some(format!("registry {r:?} must be lowercase"));
    }
    if ps.username.trim().is_empty() {
        return Some("username is required".into());
    }
    let has_pw = ps.password.as_deref().is_some_and(|p| !p.is_empty());
    let has_env = ps.password_env.as_deref().is_some_and(|p| !p.is_empty());
    if has_pw == has_env {
        return Some("exactly one of password or passwordEnv is required".into());
    }
    None
}

fn security_context(name: &str, base: &str, sc: &SecurityContext, v: &mut V) {
    let at = |v: &V, key: &str| {
        v.at(&[
            format!("{base}.securityContext.{key}"),
            format!("{base}.securityContext"),
        ])
    };
    if let Some(p) = &sc.seccomp_profile {
        if p != "RuntimeDefault" && p != "Unconfined" {
            let pos = at(v, "seccompProfile");
            v.err(
                pos,
                format!("service {name}: securityContext.seccompProfile must be one of RuntimeDefault, Unconfined; got {p:?}"),
                Some("write `seccompProfile: RuntimeDefault`".to_string()),
            );
        }
    }
    if let Some(c) = &sc.capabilities {
        for (list, names) in [("add", &c.add), ("drop", &c.drop)] {
            for cap in names {
                if let Some(bare) = cap.strip_prefix("CAP_") {
                    let pos = at(v, "capabilities");
                    v.err(
                        pos,
                        format!("service {name}: securityContext.capabilities.{list}: capability names must not have the CAP_ prefix: {cap}"),
                        Some(format!("write `{bare}`")),
                    );
                }
            }
        }
    }
    if sc.run_as_non_root == Some(true) && sc.run_as_user == Some(0) {
        let pos = at(v, "runAsUser");
        v.err(
            pos,
            format!(
                "service {name}: securityContext.runAsNonRoot is true but runAsUser is 0 (root)"
            ),
            Some("set `runAsUser` to a non-zero uid, or drop `runAsNonRoot`".to_string()),
        );
    }
}

/// Convox's `validateServiceScale`.
fn scale(name: &str, base: &str, s: &Service, v: &mut V) {
    let pos = v.at(&[format!("{base}.scale"), base.to_string()]);
    let auto = s.scale.autoscale.as_ref().filter(|a| a.is_enabled());
    if s.agent && (auto.is_some() || s.scale.keda.is_some()) {
        v.err(pos, format!("service {name}: agent services render as DaemonSet and cannot use scale.autoscale or scale.keda"), Some("remove `agent: true` or the autoscale settings".to_string()));
    }
    let (min, max) = (s.scale.count.min, s.scale.count.max);
    if min < 0 {
        v.err(
            pos,
            format!("service {name}: scale.min must be >= 0"),
            Some("write a count of 0 or more".to_string()),
        );
    }
    if max < 0 {
        v.err(
            pos,
            format!("service {name}: scale.max must be >= 0"),
            Some("write a count of 0 or more".to_string()),
        );
    }
    if max < min {
        v.err(
            pos,
            format!("service {name}: scale.max must be >= scale.min"),
            Some(format!("write `count: {max}-{min}`")),
        );
    }
    let Some(a) = auto else {
        return;
    };
    if max < 1 {
        v.err(
            pos,
            format!("service {name}: scale.max must be >= 1 when autoscale is enabled"),
            Some("raise the upper bound, for example `count: 1-5`".to_string()),
        );
    }
    if max == min && max >= 1 {
        v.err(pos, format!("service {name}: scale.max must be > scale.min when autoscale is enabled (ScaledObject would be a no-op)"), Some("write a range, for example `count: 1-5`".to_string()));
    }
    let bad_pct = |t: f64| t.is_nan() || t <= 0.0 || t > 100.0;
    if a.cpu.as_ref().is_some_and(|t| bad_pct(t.threshold)) {
        v.err(
            pos,
            format!("service {name}: scale.autoscale.cpu.threshold must be between 1 and 100"),
            Some("write a percentage, for example `cpu: {threshold: 70}`".to_string()),
        );
    }
    if a.memory.as_ref().is_some_and(|t| bad_pct(t.threshold)) {
        v.err(
            pos,
            format!("service {name}: scale.autoscale.memory.threshold must be between 1 and 100"),
            Some("write a percentage, for example `memory: {threshold: 80}`".to_string()),
        );
    }
    if let Some(g) = &a.gpu_utilization {
        if bad_pct(g.threshold) {
            v.err(pos, format!("service {name}: scale.autoscale.gpuUtilization.threshold must be > 0 and <= 100"), Some("write a percentage, for example `gpuUtilization: {threshold: 70}`".to_string()));
        }
        if s.scale.gpu.is_none() {
            v.err(
                pos,
                format!(
                    "service {name}: scale.autoscale.gpuUtilization requires scale.gpu.count >= 1"
                ),
                Some("add `gpu: 1` under `scale:`, or remove `gpuUtilization`".to_string()),
            );
        }
    }
    if let Some(q) = &a.queue_depth {
        if q.threshold.is_nan() || q.threshold <= 0.0 {
            v.err(
                pos,
                format!("service {name}: scale.autoscale.queueDepth.threshold must be > 0"),
                Some("write a queue length, for example `queueDepth: {threshold: 10}`".to_string()),
            );
        }
    }
    for (i, trig) in a.custom.iter().enumerate() {
        let tname = trig.get("name").and_then(|n| n.as_str()).unwrap_or("");
        if !tname.is_empty() && !valid_name(tname) {
            v.err(pos, format!("service {name}: scale.autoscale.custom[{i}].name {tname:?} invalid, {NAME_RULE}"), Some("use lowercase letters, digits and dashes".to_string()));
        }
        if tname.to_lowercase().starts_with("convox-") {
            v.err(pos, format!("service {name}: scale.autoscale.custom[{i}].name: {tname:?} uses reserved prefix 'convox-'"), Some("rename the trigger without the `convox-` prefix".to_string()));
        }
        if trig
            .pointer("/authenticationRef/kind")
            .and_then(|k| k.as_str())
            == Some("ClusterTriggerAuthentication")
        {
            v.err(pos, format!("service {name}: scale.autoscale.custom[{i}].authenticationRef.kind: ClusterTriggerAuthentication is not permitted"), Some("use a namespaced `TriggerAuthentication`".to_string()));
        }
    }
    let scales_to_zero = a.gpu_utilization.is_some()
        || a.queue_depth.is_some()
        || a.custom.iter().any(|t| {
            let ty = t
                .get("type")
                .and_then(|x| x.as_str())
                .unwrap_or("")
                .to_lowercase();
            ty != "cpu" && ty != "memory" && ty != "cron"
        });
    if min == 0 && !scales_to_zero {
        v.err(pos, format!("service {name}: scale.min: 0 combined with only always-active autoscale triggers (cpu/memory/cron) will never scale to zero; KEDA's cpu/memory/cron scalers are always active. Add scale.autoscale.queueDepth, scale.autoscale.gpuUtilization, or a scale.autoscale.custom[] prometheus/external trigger, or raise scale.min to 1."), Some("add a queueDepth or gpuUtilization trigger, or write `min: 1`".to_string()));
    }
}

fn timers(m: &Manifest, v: &mut V) {
    for (name, t) in &m.timers {
        let base = format!("timers.{name}");
        let pos = v.at(std::slice::from_ref(&base));
        if !valid_name(name) {
            v.err(
                pos,
                format!("timer name {name} invalid, {NAME_RULE}"),
                Some(format!("rename it, for example to `{}`", fix_name(name))),
            );
        }
        if !m.services.contains_key(&t.service) {
            let p = v.at(&[format!("{base}.service"), base.clone()]);
            let hint = if t.service.is_empty() {
                "add `service: <name>` naming the service whose image and env the timer uses"
                    .to_string()
            } else {
                did_you_mean(&t.service, m.services.keys()).unwrap_or_else(|| {
                    "name a service declared under `services:` (it may have `scale: 0`)".into()
                })
            };
            v.err(
                p,
                format!(
                    "timer {name} references a service that does not exist: {}",
                    t.service
                ),
                Some(hint),
            );
        }
        let spos = v.at(&[format!("{base}.schedule"), base.clone()]);
        if t.schedule.contains('?') {
            v.err(
                spos,
                format!("timer {name} invalid, schedule cannot contain ?"),
                Some("write `*` instead of `?`".to_string()),
            );
        } else if t.schedule.is_empty() {
            v.err(
                pos,
                format!("timer {name} has no schedule"),
                Some("add `schedule: \"0 3 * * *\"` (5 fields, UTC)".to_string()),
            );
        } else if let Err(e) = Cron::parse(&t.schedule) {
            v.err(
                spos,
                format!("timer {name} schedule {:?} is invalid: {e}", t.schedule),
                Some("write 5 fields: minute hour day-of-month month day-of-week, for example \"*/15 * * * *\"".to_string()),
            );
        }
        if t.command.trim().is_empty() {
            v.err(
                pos,
                format!("timer {name} has no command"),
                Some("add `command: bin/task`".to_string()),
            );
        } else if shell_words::split(&t.command).is_err() {
            let p = v.at(&[format!("{base}.command"), base.clone()]);
            v.err(
                p,
                format!("timer {name} command cannot be split into arguments (unbalanced quote)"),
                Some("close the quote, or escape it with a backslash".to_string()),
            );
        }
        if t.parallel_count.is_some_and(|n| n < 1) {
            let p = v.at(&[format!("{base}.parallelCount"), base.clone()]);
            v.err(
                p,
                format!("timer {name} parallelCount must be at least 1"),
                Some("write `parallelCount: 1` or more, or remove it".to_string()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        assert!(valid_cidr("10.0.0.0/8"));
        assert!(valid_cidr("::1/128"));
        assert!(!valid_cidr("10.0.0.0"));
        assert!(!valid_cidr("10.0.0.0/33"));
        assert!(!valid_cidr("10.0.0/8"));
        assert!(!valid_cidr("10.0.0.0/+8"));
    }

    #[test]
    fn durations() {
        assert_eq!(go_duration("5m"), Some(300.0));
        assert_eq!(go_duration("1h30m"), Some(5400.0));
        assert_eq!(go_duration("1.5s"), Some(1.5));
        assert_eq!(go_duration("0"), Some(0.0));
        assert_eq!(go_duration("5"), None);
        assert_eq!(go_duration("5x"), None);
        assert_eq!(go_duration(""), None);
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity_gib("100Gi"), Some(100.0));
        assert_eq!(quantity_gib("1Ti"), Some(1024.0));
        assert!(quantity_gib("99Gi").unwrap() < 100.0);
    }
}
