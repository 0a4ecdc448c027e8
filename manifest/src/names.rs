//! Known key names, "did you mean" suggestions, and Convox's name rule.
//!
//! This module owns the lists of keys each section accepts (v3 keys, plus the v2-only keys Dray
//! recognises so it can say so), the edit-distance suggestion, and `^[a-z][a-z0-9-]*$`. It must never
//! look at a YAML node.

/// Top-level keys.
pub(crate) const TOP_KEYS: &[&str] = &[
    "environment",
    "params",
    "labels",
    "resources",
    "services",
    "timers",
    "balancers",
    "configs",
    "appSettings",
    "budget",
];

/// Service keys (v3).
pub(crate) const SERVICE_KEYS: &[&str] = &[
    "accessControl",
    "agent",
    "annotations",
    "build",
    "certificate",
    "command",
    "configMounts",
    "deployment",
    "disableHostUsers",
    "dnsConfig",
    "domain",
    "drain",
    "environment",
    "grpcHealthEnabled",
    "health",
    "image",
    "imagePullSecrets",
    "ingressAnnotations",
    "init",
    "initContainer",
    "internal",
    "internalRouter",
    "labels",
    "lifecycle",
    "liveness",
    "nodeAffinityLabels",
    "nodeSelectorLabels",
    "port",
    "ports",
    "privileged",
    "resources",
    "scale",
    "securityContext",
    "singleton",
    "startupProbe",
    "sticky",
    "termination",
    "test",
    "timeout",
    "tls",
    "volumeOptions",
    "volumes",
    "whitelist",
];

/// Service keys that only Convox v2 (the AWS rack) understands, with what to write instead.
pub(crate) const SERVICE_V2_KEYS: &[(&str, &str)] = &[
    ("links", "link services through env vars you set yourself, or use service discovery (`http://<service>.<app>.convox.local:<port>`)"),
    ("nlb", "use a `balancers:` entry for TCP load balancing"),
    ("policies", "IAM policies are not used by Dray; remove the key"),
    ("tags", "use `labels:` (a map)"),
    ("internalAndExternal", "use `internal: true` or `internalRouter: true`"),
];

/// Keys people write by habit from other tools, with the convox.yml key they mean.
pub(crate) const SERVICE_ALIASES: &[(&str, &str)] = &[
    ("env", "environment"),
    ("env_file", "environment"),
    ("dockerfile", "build: {manifest: <Dockerfile>}"),
    ("context", "build: {path: <dir>}"),
    ("cmd", "command"),
    ("entrypoint", "command"),
    ("replicas", "scale: {count: N}"),
    ("count", "scale: {count: N}"),
    ("cpu", "scale: {cpu: N}"),
    ("memory", "scale: {memory: N}"),
    ("healthcheck", "health"),
    ("health_check", "health"),
    ("domains", "domain"),
    ("hostname", "domain"),
    ("links", "links"),
    ("depends_on", "resources"),
    ("expose", "ports"),
];

pub(crate) const BUILD_KEYS: &[&str] = &["path", "manifest", "args"];
pub(crate) const HEALTH_KEYS: &[&str] =
    &["path", "grace", "interval", "timeout", "disable", "port"];
pub(crate) const LIVENESS_KEYS: &[&str] = &[
    "path",
    "grace",
    "interval",
    "timeout",
    "successThreshold",
    "failureThreshold",
    "port",
];
pub(crate) const STARTUP_KEYS: &[&str] = &[
    "path",
    "tcpSocketPort",
    "grace",
    "interval",
    "timeout",
    "successThreshold",
    "failureThreshold",
];
pub(crate) const PORT_KEYS: &[&str] = &["port", "scheme"];
pub(crate) const SCALE_KEYS: &[&str] = &[
    "count",
    "cpu",
    "memory",
    "gpu",
    "limit",
    "targets",
    "min",
    "max",
    "autoscale",
    "keda",
    "vpa",
    "cooldown",
];
pub(crate) const COUNT_KEYS: &[&str] = &["min", "max"];
pub(crate) const LIMIT_KEYS: &[&str] = &["cpu", "memory"];
pub(crate) const GPU_KEYS: &[&str] = &["count", "vendor"];
pub(crate) const TARGET_KEYS: &[&str] = &["cpu", "memory", "requests", "custom", "external"];
pub(crate) const METRIC_KEYS: &[&str] = &["aggregate", "value", "dimensions"];
pub(crate) const DEPLOYMENT_KEYS: &[&str] = &["minimum", "maximum"];
pub(crate) const TERMINATION_KEYS: &[&str] = &["grace"];
pub(crate) const TLS_KEYS: &[&str] = &["redirect"];
pub(crate) const LIFECYCLE_KEYS: &[&str] = &["preStop", "postStart"];
pub(crate) const INIT_CONTAINER_KEYS: &[&str] =
    &["image", "command", "volumeOptions", "configMounts"];
pub(crate) const CONFIG_MOUNT_KEYS: &[&str] = &["id", "dir", "filename"];
pub(crate) const VOLUME_KINDS: &[&str] = &["emptyDir", "awsEfs", "azureFiles"];
pub(crate) const EMPTY_DIR_KEYS: &[&str] = &["id", "mountPath", "medium", "sizeLimit"];
pub(crate) const SECURITY_KEYS: &[&str] = &[
    "runAsNonRoot",
    "runAsUser",
    "runAsGroup",
    "readOnlyRootFilesystem",
    "allowPrivilegeEscalation",
    "capabilities",
    "seccompProfile",
];
pub(crate) const CAPABILITY_KEYS: &[&str] = &["add", "drop"];
pub(crate) const PULL_SECRET_KEYS: &[&str] = &["registry", "username", "password", "passwordEnv"];
pub(crate) const AFFINITY_KEYS: &[&str] = &["label", "value", "weight"];
pub(crate) const DNS_KEYS: &[&str] = &["ndots"];
pub(crate) const CERTIFICATE_KEYS: &[&str] = &["id", "duration"];
pub(crate) const RESOURCE_FIELDS: &[&str] = &["type", "image", "options"];
pub(crate) const TIMER_KEYS: &[&str] = &[
    "schedule",
    "command",
    "service",
    "concurrency",
    "parallelCount",
    "annotations",
];
pub(crate) const BALANCER_KEYS: &[&str] = &["service", "ports", "whitelist", "annotations"];
pub(crate) const BALANCER_PORT_KEYS: &[&str] = &["port", "protocol"];
pub(crate) const CONFIG_KEYS: &[&str] = &["id", "name", "value"];
pub(crate) const APP_SETTINGS_KEYS: &[&str] = &["awsLogs"];
pub(crate) const AWS_LOGS_KEYS: &[&str] = &["cwRetention", "disableRetention"];
pub(crate) const BUDGET_KEYS: &[&str] = &[
    "monthlyCapUsd",
    "alertThresholdPercent",
    "atCapAction",
    "atCapWebhookUrl",
    "pricingAdjustment",
    "neverAutoShutdown",
    "shutdownOrder",
    "notifyBeforeMinutes",
    "shutdownGracePeriod",
    "recoveryMode",
];

/// Resource types Convox knows (containerized and AWS managed).
pub(crate) const RESOURCE_TYPES: &[&str] = &[
    "postgres",
    "postgis",
    "mysql",
    "mariadb",
    "redis",
    "memcached",
    "rds-postgres",
    "rds-mysql",
    "rds-mariadb",
    "elasticache-redis",
    "elasticache-memcached",
];

/// Edit distance with adjacent transpositions (optimal string alignment), case-insensitive.
pub(crate) fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let (n, m) = (a.len(), b.len());
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=n {
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[n][m]
}

/// The closest candidate, when it is close enough to be a likely typo.
pub(crate) fn suggest<'a, I>(word: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    let limit = match word.chars().count() {
        0..=3 => 1,
        4..=6 => 2,
        _ => 3,
    };
    candidates
        .into_iter()
        .map(|c| (distance(word, c), c))
        .filter(|(d, c)| *d <= limit && *c != word)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

/// Convox's name rule `^[a-z][a-z0-9-]*$`.
pub(crate) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'))
}

/// A name that passes the rule and looks like `name` (`timer_1` → `timer-1`, `serviceF` → `servicef`).
pub(crate) fn fix_name(name: &str) -> String {
    let lowered: String = name
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = lowered.trim_start_matches(|c: char| !c.is_ascii_lowercase());
    let mut out = String::new();
    for c in trimmed.chars() {
        if c == '-' && out.ends_with('-') {
            continue;
        }
        out.push(c);
    }
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "app".to_string()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("web-2"));
        assert!(!valid_name("2web"));
        assert!(!valid_name("Web"));
        assert!(!valid_name("timer_1"));
        assert!(!valid_name(""));
        assert_eq!(fix_name("timer_1"), "timer-1");
        assert_eq!(fix_name("serviceF"), "servicef");
        assert_eq!(fix_name("1resource"), "resource");
        assert_eq!(fix_name("__"), "app");
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            suggest("enviroment", SERVICE_KEYS.iter().copied()),
            Some("environment".into())
        );
        assert_eq!(
            suggest("domians", SERVICE_KEYS.iter().copied()),
            Some("domain".into())
        );
        assert_eq!(suggest("xyz", SERVICE_KEYS.iter().copied()), None);
        assert_eq!(
            suggest("servics", TOP_KEYS.iter().copied()),
            Some("services".into())
        );
    }
}
