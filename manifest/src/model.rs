//! The normalized manifest: public types for every key of convox.yml (reference §3), after
//! shorthands are expanded, defaults applied, env combined and labels merged.
//!
//! Serializing a [`Manifest`] (JSON or [`Manifest::to_yaml`]) gives a valid convox.yml that loads back
//! to the same value: field names are the convox.yml keys, and values use forms Convox accepts
//! (`ports` as `"5000/udp"`, `scale.count` as an integer or `{min, max}`, annotations as `"k=v"`).
//! Declaration order of services, resources, timers, balancers and balancer ports is kept.
//!
//! This module owns the data shapes and small read-only helpers the agent needs (main port, command
//! split, domains, resource links, env merging lives in `env.rs`). It must never parse text or decide
//! defaults; `decode.rs` and `defaults.rs` do that.

use crate::diag::Pos;
use indexmap::IndexMap;
use serde::{Serialize, Serializer};
use std::collections::HashMap;

/// A raw JSON value kept for keys Dray parses loosely (cloud-only blocks, unknown keys).
pub type Raw = serde_json::Value;

fn is_false(b: &bool) -> bool {
    !*b
}

/// Serialize a key/value map as Convox's list form `["k=v", …]`.
fn ser_kv_list<S: Serializer>(m: &IndexMap<String, String>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(m.iter().map(|(k, v)| format!("{k}={v}")))
}

/// A loaded convox.yml.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Top-level `environment` declarations (`KEY` or `KEY=default`, `*`), as written. Each service's
    /// [`Service::environment`] already starts with these, so the normalized output does not repeat
    /// them at the top (it would merge them twice when loaded again).
    #[serde(skip)]
    pub environment: Vec<String>,
    /// `params`: v2 CloudFormation parameters; parsed, unused by v3 and by Dray.
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub params: IndexMap<String, String>,
    /// Top-level `labels` (already copied into every service that does not set the same key).
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub labels: IndexMap<String, String>,
    /// `resources`, in declaration order.
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub resources: IndexMap<String, Resource>,
    /// `services`, in declaration order.
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub services: IndexMap<String, Service>,
    /// `timers`, in declaration order.
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub timers: IndexMap<String, Timer>,
    /// `balancers` (custom L4 balancers), in declaration order.
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub balancers: IndexMap<String, Balancer>,
    /// `configs`: named config blobs mounted with `configMounts`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<Config>,
    /// `appSettings` (AWS CloudWatch retention; cloud-only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_settings: Option<AppSettings>,
    /// `budget` (cost caps; cloud-only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// Unknown top-level keys, kept as written (each was warned about).
    #[serde(flatten, skip_serializing_if = "IndexMap::is_empty")]
    pub extra: IndexMap<String, Raw>,
    /// Where each key was written: dotted path (`services.web.port`, `services.web.environment[1]`)
    /// to the position of the key (or list item) in the original file.
    #[serde(skip)]
    pub(crate) positions: HashMap<String, Pos>,
}

impl Manifest {
    /// Where `path` (for example `services.web.port` or `timers.cleanup`) was written in the file.
    pub fn position(&self, path: &str) -> Option<Pos> {
        self.positions.get(path).copied()
    }

    /// The service called `name`.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.get(name)
    }

    /// The resource called `name`.
    pub fn resource(&self, name: &str) -> Option<&Resource> {
        self.resources.get(name)
    }

    /// Names of the services that run one process per node (`agent: true`).
    pub fn agents(&self) -> Vec<&str> {
        self.services
            .values()
            .filter(|s| s.agent)
            .map(|s| s.name.as_str())
            .collect()
    }
}

/// `build`: the build context and Dockerfile. The shorthand `build: path` sets `path`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Build {
    /// Build context relative to convox.yml; `.` when the service has neither `build` nor `image`.
    pub path: String,
    /// Dockerfile name inside the context; default `Dockerfile`.
    pub manifest: String,
    /// `args`: parsed and hashed by Convox but passed to no builder; build args come from the app env.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

/// The main port (`port:`): `3000`, `"https:3000"` or `{port, scheme}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Port {
    /// Container port.
    pub port: u16,
    /// Backend protocol the router speaks to the container: `http` (default), `https` or `GRPC`.
    pub scheme: String,
}

/// An extra container port (`ports:` entry, `5001` or `"5001/udp"`).
#[derive(Debug, Clone, PartialEq)]
pub struct PortProtocol {
    /// Container port.
    pub port: u16,
    /// `tcp` (default) or `udp`.
    pub protocol: String,
}

impl Serialize for PortProtocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}/{}", self.port, self.protocol))
    }
}

/// `health`: the readiness check. The shorthand `health: /path` sets `path`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    /// HTTP path; default `/`.
    pub path: String,
    /// Seconds before the first check; default = `interval`.
    pub grace: i64,
    /// Seconds between checks; default 5.
    pub interval: i64,
    /// Seconds per check; default `interval - 1`.
    pub timeout: i64,
    /// `disable: true` removes the check.
    #[serde(skip_serializing_if = "is_false")]
    pub disable: bool,
    /// Check this port instead of the main port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            path: "/".into(),
            grace: 5,
            interval: 5,
            timeout: 4,
            disable: false,
            port: None,
        }
    }
}

/// `liveness`: restarts the container when it fails. Only present when `path` is set.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Liveness {
    /// HTTP path.
    pub path: String,
    /// Default 10.
    pub grace: i64,
    /// Default 5.
    pub interval: i64,
    /// Default 5.
    pub timeout: i64,
    /// Default 1.
    pub success_threshold: i64,
    /// Default 3.
    pub failure_threshold: i64,
    /// Check this port instead of the main port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
}

/// `startupProbe`: HTTP `path` or TCP `tcpSocketPort`; missing values come from `liveness`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StartupProbe {
    /// HTTP path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// TCP port to connect to (Convox keeps it as a string).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_socket_port: Option<String>,
    /// Seconds before the first probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace: Option<i64>,
    /// Seconds between probes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    /// Seconds per probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// Successes needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<i64>,
    /// Failures tolerated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<i64>,
}

/// `scale.count`: replicas, or autoscaling bounds when `min != max`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScaleCount {
    /// Lower bound (the count when not autoscaling).
    pub min: i64,
    /// Upper bound.
    pub max: i64,
}

impl Serialize for ScaleCount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        if self.min == self.max {
            s.serialize_i64(self.min)
        } else {
            let mut m = s.serialize_map(Some(2))?;
            m.serialize_entry("min", &self.min)?;
            m.serialize_entry("max", &self.max)?;
            m.end()
        }
    }
}

/// `scale.limit`: resource limits (must be ≥ the requests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Limit {
    /// CPU limit in millicores (0 = none).
    #[serde(skip_serializing_if = "is_zero")]
    pub cpu: i64,
    /// Memory limit in MB (0 = none).
    #[serde(skip_serializing_if = "is_zero")]
    pub memory: i64,
}

fn is_zero(i: &i64) -> bool {
    *i == 0
}

/// `scale.gpu`: `2` or `{count, vendor}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gpu {
    /// GPUs requested.
    pub count: i64,
    /// Default `nvidia`.
    pub vendor: String,
}

/// One CloudWatch metric target (`scale.targets.custom["AWS/SQS/Name"]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CustomMetric {
    /// `max`, `min`, `avg`, …
    #[serde(skip_serializing_if = "String::is_empty")]
    pub aggregate: String,
    /// Target value.
    pub value: f64,
    /// Metric dimensions.
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub dimensions: IndexMap<String, String>,
}

/// `scale.targets`: HPA targets (autoscaling needs `count.min != count.max`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Targets {
    /// CPU utilisation percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<i64>,
    /// Memory utilisation percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
    /// Requests per minute per process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<i64>,
    /// CloudWatch metrics keyed `Namespace/Name`.
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub custom: IndexMap<String, CustomMetric>,
    /// External metrics (`[{name, matchLabels, averageValue, value}]`), kept as written.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external: Vec<Raw>,
}

/// One threshold trigger of `scale.autoscale` (`cpu`, `memory`, `gpuUtilization`, `queueDepth`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AutoscaleTrigger {
    /// Percent (cpu, memory, gpuUtilization) or queue length (queueDepth).
    pub threshold: f64,
    /// Other keys (`mode`, `prometheusUrl`, `metricName`, `queueUrl`, …), kept as written.
    #[serde(flatten)]
    pub extra: IndexMap<String, Raw>,
}

/// `scale.autoscale` (v3 KEDA-based autoscaling; needs rack features Dray does not have).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Autoscale {
    /// CPU trigger.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<AutoscaleTrigger>,
    /// Memory trigger.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<AutoscaleTrigger>,
    /// GPU utilisation trigger.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_utilization: Option<AutoscaleTrigger>,
    /// Queue depth trigger.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_depth: Option<AutoscaleTrigger>,
    /// Custom KEDA triggers, kept as written.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub custom: Vec<Raw>,
    /// Other keys (`cooldownPeriod`, `pollingInterval`, …), kept as written.
    #[serde(flatten)]
    pub extra: IndexMap<String, Raw>,
}

impl Autoscale {
    /// True when at least one trigger is configured.
    pub fn is_enabled(&self) -> bool {
        self.cpu.is_some()
            || self.memory.is_some()
            || self.gpu_utilization.is_some()
            || self.queue_depth.is_some()
            || !self.custom.is_empty()
    }
}

/// `scale`: `2`, `"1-3"` or a map.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scale {
    /// Replicas (min = max) or autoscaling bounds. `scale.min`/`scale.max` are folded in here.
    pub count: ScaleCount,
    /// CPU request in millicores; default 250 (not defaulted when a GPU is requested).
    pub cpu: i64,
    /// Memory request in MB; default 512 (not defaulted when a GPU is requested).
    pub memory: i64,
    /// Limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<Limit>,
    /// GPU request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu: Option<Gpu>,
    /// HPA targets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<Targets>,
    /// KEDA autoscaling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autoscale: Option<Autoscale>,
    /// Raw KEDA ScaledObject settings (cloud-only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keda: Option<Raw>,
    /// Raw vertical pod autoscaler settings (cloud-only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpa: Option<Raw>,
    /// v2 `cooldown {down, up}`, kept as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Raw>,
}

impl Default for Scale {
    fn default() -> Self {
        Scale {
            count: ScaleCount { min: 1, max: 1 },
            cpu: 250,
            memory: 512,
            limit: None,
            gpu: None,
            targets: None,
            autoscale: None,
            keda: None,
            vpa: None,
            cooldown: None,
        }
    }
}

impl Scale {
    /// True when the service autoscales (Convox's `Autoscale()`: bounds differ and a target is set,
    /// or `scale.autoscale` has a trigger).
    pub fn autoscales(&self) -> bool {
        if self.autoscale.as_ref().is_some_and(Autoscale::is_enabled) {
            return true;
        }
        if self.count.min == self.count.max {
            return false;
        }
        self.targets.as_ref().is_some_and(|t| {
            t.cpu.unwrap_or(0) > 0
                || t.memory.unwrap_or(0) > 0
                || t.requests.unwrap_or(0) > 0
                || !t.custom.is_empty()
                || !t.external.is_empty()
        })
    }
}

/// `deployment`: rolling-update bounds in percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Deployment {
    /// Percent of processes kept running during a deploy (0..100); default 50, agent/singleton 0.
    pub minimum: i64,
    /// Percent of processes allowed during a deploy (100..200); default 200, agent/singleton 100.
    pub maximum: i64,
}

impl Default for Deployment {
    fn default() -> Self {
        Deployment {
            minimum: 50,
            maximum: 200,
        }
    }
}

/// `termination`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Termination {
    /// Seconds between SIGTERM and SIGKILL; default 30.
    pub grace: i64,
}

impl Default for Termination {
    fn default() -> Self {
        Termination { grace: 30 }
    }
}

/// `tls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tls {
    /// HTTP→HTTPS redirect; default true.
    pub redirect: bool,
}

impl Default for Tls {
    fn default() -> Self {
        Tls { redirect: true }
    }
}

/// `lifecycle` hooks.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lifecycle {
    /// Command run before the container is stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_stop: Option<String>,
    /// Command run after the container starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_start: Option<String>,
}

/// `configMounts` entry: mount config `id` as `dir/filename`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ConfigMount {
    /// A `configs[].id`.
    pub id: String,
    /// Directory in the container.
    pub dir: String,
    /// File name in `dir`.
    pub filename: String,
}

/// `volumeOptions` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum VolumeOption {
    /// `{emptyDir: {id, mountPath, medium, sizeLimit}}`.
    EmptyDir(EmptyDir),
    /// `{awsEfs: {id, mountPath, accessMode, storageClass, volumeHandle}}`.
    AwsEfs(SharedVolume),
    /// `{azureFiles: {id, mountPath, accessMode, shareSize}}`.
    AzureFiles(SharedVolume),
}

/// An `emptyDir` volume.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EmptyDir {
    /// Volume id.
    pub id: String,
    /// Path in the container.
    pub mount_path: String,
    /// `Memory` for a tmpfs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    /// Size limit (k8s quantity, for example `1Gi`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<String>,
}

/// An `awsEfs` or `azureFiles` volume (cloud-only).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SharedVolume {
    /// Volume id.
    pub id: String,
    /// Path in the container.
    pub mount_path: String,
    /// `ReadWriteOnce`, `ReadOnlyMany` or `ReadWriteMany`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_mode: Option<String>,
    /// Other keys (`storageClass`, `volumeHandle`, `shareSize`), kept as written.
    #[serde(flatten)]
    pub extra: IndexMap<String, Raw>,
}

/// `initContainer`: runs before the main container with the same env and resources.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InitContainer {
    /// Image; default the service's own image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Command (shell-split like `command`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Volumes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volume_options: Vec<VolumeOption>,
    /// Config mounts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub config_mounts: Vec<ConfigMount>,
}

/// `securityContext.capabilities`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Capabilities {
    /// Capabilities to add (names without `CAP_`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    /// Capabilities to drop (names without `CAP_`, or `ALL`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
}

/// `securityContext`: container security settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContext {
    /// Refuse to run as root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    /// User id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
    /// Group id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<i64>,
    /// Read-only root filesystem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,
    /// `no_new_privs` when false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_privilege_escalation: Option<bool>,
    /// Capabilities.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    /// `RuntimeDefault` or `Unconfined`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<String>,
}

/// `imagePullSecrets` entry: credentials for pulling from a private registry.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImagePullSecret {
    /// Registry host (lowercase, no scheme or path).
    pub registry: String,
    /// User name.
    pub username: String,
    /// Password, when given inline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Name of the app env var holding the password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
}

/// `nodeAffinityLabels` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Affinity {
    /// Node label key.
    pub label: String,
    /// Node label value.
    pub value: String,
    /// Preference weight (0 = required).
    #[serde(skip_serializing_if = "is_zero")]
    pub weight: i64,
}

/// `dnsConfig`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DnsConfig {
    /// resolv.conf `ndots`.
    pub ndots: i64,
}

/// `certificate`: reuse a generated certificate.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Certificate {
    /// Certificate id.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Validity; default `2160h`.
    pub duration: String,
}

/// One service (a long-running process type).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// The key under `services:`.
    #[serde(skip)]
    pub name: String,
    /// Build settings; absent when the service uses `image` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
    /// External image instead of a build.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Command (v3: a string, shell-split into args; the image ENTRYPOINT is kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Env declarations: the top-level `environment` followed by the service's own.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub environment: Vec<String>,
    /// Main port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    /// Extra ports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortProtocol>,
    /// Custom hostnames (first = primary).
    #[serde(rename = "domain", skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// Readiness check.
    pub health: Health,
    /// Liveness check (only when a path is set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness: Option<Liveness>,
    /// Startup probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<StartupProbe>,
    /// gRPC readiness and liveness probes on the main port.
    #[serde(skip_serializing_if = "is_false")]
    pub grpc_health_enabled: bool,
    /// Replicas and resources.
    pub scale: Scale,
    /// Rolling-update bounds.
    pub deployment: Deployment,
    /// Stop grace.
    pub termination: Termination,
    /// Deprecated v2 ALB drain seconds (use `termination.grace`); kept only when written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain: Option<i64>,
    /// No public route.
    #[serde(skip_serializing_if = "is_false")]
    pub internal: bool,
    /// Routed through the internal router.
    #[serde(skip_serializing_if = "is_false")]
    pub internal_router: bool,
    /// One process per node.
    #[serde(skip_serializing_if = "is_false")]
    pub agent: bool,
    /// No surge during deploys.
    #[serde(skip_serializing_if = "is_false")]
    pub singleton: bool,
    /// Cookie affinity.
    #[serde(skip_serializing_if = "is_false")]
    pub sticky: bool,
    /// Proxy timeout in seconds; default 60.
    pub timeout: i64,
    /// TLS settings.
    pub tls: Tls,
    /// Comma-separated CIDRs allowed to reach the service (see [`Service::whitelist_cidrs`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whitelist: Option<String>,
    /// Share the PID namespace / run an init as PID 1; default true unless written.
    pub init: bool,
    /// Privileged container.
    #[serde(skip_serializing_if = "is_false")]
    pub privileged: bool,
    /// Resource links: `name` or `name:ENV_VAR`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Volumes: `path` or `from:to`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// Explicit volumes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volume_options: Vec<VolumeOption>,
    /// Pod annotations.
    #[serde(
        skip_serializing_if = "IndexMap::is_empty",
        serialize_with = "ser_kv_list"
    )]
    pub annotations: IndexMap<String, String>,
    /// Ingress annotations.
    #[serde(
        skip_serializing_if = "IndexMap::is_empty",
        serialize_with = "ser_kv_list"
    )]
    pub ingress_annotations: IndexMap<String, String>,
    /// Labels: the service's own plus the top-level ones it does not override.
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub labels: IndexMap<String, String>,
    /// Lifecycle hooks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
    /// Init container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_container: Option<InitContainer>,
    /// Config mounts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub config_mounts: Vec<ConfigMount>,
    /// Security settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// Registry credentials.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<ImagePullSecret>,
    /// Node selector (cluster placement).
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub node_selector_labels: IndexMap<String, String>,
    /// Node affinity (cluster placement).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub node_affinity_labels: Vec<Affinity>,
    /// DNS settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_config: Option<DnsConfig>,
    /// User namespaces off.
    #[serde(skip_serializing_if = "is_false")]
    pub disable_host_users: bool,
    /// IAM settings (cloud-only), kept as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_control: Option<Raw>,
    /// Certificate reuse.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<Certificate>,
    /// Command run by `convox test`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    /// Unknown and v2-only keys, kept as written (each was warned about).
    #[serde(flatten, skip_serializing_if = "IndexMap::is_empty")]
    pub extra: IndexMap<String, Raw>,
    /// Position of each entry of `environment` (parallel list).
    #[serde(skip)]
    pub(crate) env_pos: Vec<Pos>,
}

impl Default for Service {
    fn default() -> Self {
        Service {
            name: String::new(),
            build: None,
            image: None,
            command: None,
            environment: Vec::new(),
            port: None,
            ports: Vec::new(),
            domains: Vec::new(),
            health: Health::default(),
            liveness: None,
            startup_probe: None,
            grpc_health_enabled: false,
            scale: Scale::default(),
            deployment: Deployment::default(),
            termination: Termination::default(),
            drain: None,
            internal: false,
            internal_router: false,
            agent: false,
            singleton: false,
            sticky: false,
            timeout: 60,
            tls: Tls::default(),
            whitelist: None,
            init: true,
            privileged: false,
            resources: Vec::new(),
            volumes: Vec::new(),
            volume_options: Vec::new(),
            annotations: IndexMap::new(),
            ingress_annotations: IndexMap::new(),
            labels: IndexMap::new(),
            lifecycle: None,
            init_container: None,
            config_mounts: Vec::new(),
            security_context: None,
            image_pull_secrets: Vec::new(),
            node_selector_labels: IndexMap::new(),
            node_affinity_labels: Vec::new(),
            dns_config: None,
            disable_host_users: false,
            access_control: None,
            certificate: None,
            test: None,
            extra: IndexMap::new(),
            env_pos: Vec::new(),
        }
    }
}

/// A resource link of a service (`resources: [database]` or `["database:MY_DB"]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceLink {
    /// The resource name.
    pub resource: String,
    /// Env var name to inject.
    pub env: String,
    /// Which of the resource's values the variable carries: `URL`, `USER`, `PASS`, `HOST`, `PORT` or
    /// `NAME` (Convox's `GetConfigMapKey`).
    pub key: String,
}

/// The six values a resource exports.
pub const RESOURCE_KEYS: [&str; 6] = ["URL", "USER", "PASS", "HOST", "PORT", "NAME"];

impl Service {
    /// The main container port, if the service has one.
    pub fn main_port(&self) -> Option<u16> {
        self.port.as_ref().map(|p| p.port)
    }

    /// Extra ports, without the ones equal to the main port over TCP (Convox drops those).
    pub fn extra_ports(&self) -> Vec<PortProtocol> {
        self.ports
            .iter()
            .filter(|p| !(Some(p.port) == self.main_port() && p.protocol == "tcp"))
            .cloned()
            .collect()
    }

    /// `command` split like a shell would (quotes, escapes), as Convox does with shellquote.
    /// `None` when there is no command (the image CMD runs). Load has already rejected commands that
    /// do not split.
    pub fn command_args(&self) -> Option<Vec<String>> {
        let c = self.command.as_deref()?;
        shell_words::split(c).ok()
    }

    /// The custom domains (first = primary).
    pub fn domains(&self) -> &[String] {
        &self.domains
    }

    /// The primary custom domain.
    pub fn domain(&self) -> Option<&str> {
        self.domains.first().map(String::as_str)
    }

    /// `scale.count` bounds: `(min, max)`.
    pub fn count_range(&self) -> (i64, i64) {
        (self.scale.count.min, self.scale.count.max)
    }

    /// The `whitelist` CIDRs, split on commas and trimmed.
    pub fn whitelist_cidrs(&self) -> Vec<String> {
        self.whitelist
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// True when the service gets a route (it has a port and is not `internal`).
    pub fn is_routable(&self) -> bool {
        self.port.is_some() && !self.internal
    }

    /// The env vars its resource links inject (Convox's `ResourceMap`): `resources: [db]` gives
    /// `DB_URL`, `DB_USER`, `DB_PASS`, `DB_HOST`, `DB_PORT`, `DB_NAME`; `db:MY_DB` gives only `MY_DB`.
    pub fn resource_links(&self) -> Vec<ResourceLink> {
        let mut out = Vec::new();
        for r in &self.resources {
            match r.split_once(':') {
                None => {
                    let prefix = env_prefix(r);
                    for k in RESOURCE_KEYS {
                        out.push(ResourceLink {
                            resource: r.clone(),
                            env: format!("{prefix}_{k}"),
                            key: k.to_string(),
                        });
                    }
                }
                Some((name, env)) => {
                    let env = env.trim().to_string();
                    let last = env.rsplit('_').next().unwrap_or("");
                    let key = if RESOURCE_KEYS.contains(&last) {
                        last.to_string()
                    } else {
                        "URL".to_string()
                    };
                    out.push(ResourceLink {
                        resource: name.to_string(),
                        env,
                        key,
                    });
                }
            }
        }
        out
    }

    /// Names of the linked resources.
    pub fn resource_names(&self) -> Vec<&str> {
        self.resources
            .iter()
            .map(|r| r.split_once(':').map(|(n, _)| n).unwrap_or(r))
            .collect()
    }

    /// `KEY=default` declarations as a map (Convox's `EnvironmentDefaults`).
    pub fn environment_defaults(&self) -> IndexMap<String, String> {
        self.environment
            .iter()
            .filter_map(|e| e.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Declared env keys, sorted and unique (Convox's `EnvironmentKeys`).
    pub fn environment_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .environment
            .iter()
            .map(|e| e.split_once('=').map(|(k, _)| k).unwrap_or(e).to_string())
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

/// `NAME` upper-cased with `-` as `_` (the prefix of a resource's variables).
pub fn env_prefix(resource: &str) -> String {
    resource.to_uppercase().replace('-', "_")
}

/// One backing resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Resource {
    /// The key under `resources:`.
    #[serde(skip)]
    pub name: String,
    /// `postgres`, `redis`, `rds-postgres`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// Custom image (overrides `options.version`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Options; every value is a string as in Convox (`storage: 20` becomes `"20"`).
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub options: IndexMap<String, String>,
    /// Unknown keys, kept as written.
    #[serde(flatten, skip_serializing_if = "IndexMap::is_empty")]
    pub extra: IndexMap<String, Raw>,
}

impl Resource {
    /// The env var prefix of this resource (`my-db` → `MY_DB`).
    pub fn env_prefix(&self) -> String {
        env_prefix(&self.name)
    }
}

/// Overlap policy of a timer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum Concurrency {
    /// Overlapping runs may happen (default).
    #[default]
    Allow,
    /// Skip a run while the previous one is active.
    Forbid,
    /// Kill the running one and start the new one.
    Replace,
}

/// One timer (a cron job running a process from a service's image).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timer {
    /// The key under `timers:`.
    #[serde(skip)]
    pub name: String,
    /// 5-field UTC cron (after the compatibility rewrite: at most 5 fields, `?` → `*`).
    pub schedule: String,
    /// Command to run.
    pub command: String,
    /// Service whose image, env, resources and scale are used.
    pub service: String,
    /// Overlap policy.
    pub concurrency: Concurrency,
    /// Indexed runs (`TIMER_INDEX` 0..N-1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel_count: Option<i64>,
    /// Annotations.
    #[serde(
        skip_serializing_if = "IndexMap::is_empty",
        serialize_with = "ser_kv_list"
    )]
    pub annotations: IndexMap<String, String>,
    /// Unknown and v2-only keys, kept as written.
    #[serde(flatten, skip_serializing_if = "IndexMap::is_empty")]
    pub extra: IndexMap<String, Raw>,
}

impl Timer {
    /// The parsed schedule. Always `Ok` for a timer of a loaded manifest.
    pub fn cron(&self) -> Result<crate::cron::Cron, crate::cron::CronError> {
        crate::cron::Cron::parse(&self.schedule)
    }

    /// `command` shell-split.
    pub fn command_args(&self) -> Option<Vec<String>> {
        shell_words::split(&self.command).ok()
    }
}

/// Transport of a balancer port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum Protocol {
    /// TCP (default).
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
}

/// The target of one balancer listen port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BalancerPort {
    /// Service container port.
    pub port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

/// A custom L4 balancer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Balancer {
    /// The key under `balancers:`.
    #[serde(skip)]
    pub name: String,
    /// Target service.
    pub service: String,
    /// Listen port → target, in declaration order.
    pub ports: IndexMap<u16, BalancerPort>,
    /// Allowed source CIDRs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub whitelist: Vec<String>,
    /// Annotations.
    #[serde(
        skip_serializing_if = "IndexMap::is_empty",
        serialize_with = "ser_kv_list"
    )]
    pub annotations: IndexMap<String, String>,
    /// Unknown keys, kept as written.
    #[serde(flatten, skip_serializing_if = "IndexMap::is_empty")]
    pub extra: IndexMap<String, Raw>,
}

/// `configs` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Config {
    /// Id referenced by `configMounts`.
    pub id: String,
    /// Name of the secret to create.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// `appSettings.awsLogs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsLogs {
    /// CloudWatch retention in days.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cw_retention: Option<i64>,
    /// Keep logs forever.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable_retention: Option<bool>,
}

/// `appSettings` (cloud-only).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppSettings {
    /// CloudWatch settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_logs: Option<AwsLogs>,
}

/// `budget` (cloud-only cost caps).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    /// Monthly cap in USD.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly_cap_usd: Option<f64>,
    /// Alert threshold percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_threshold_percent: Option<f64>,
    /// `alert-only`, `block-new-deploys` or `auto-shutdown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_cap_action: Option<String>,
    /// Webhook called at the cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_cap_webhook_url: Option<String>,
    /// Pricing multiplier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pricing_adjustment: Option<f64>,
    /// Services never shut down.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub never_auto_shutdown: Vec<String>,
    /// `largest-cost` or `newest`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_order: Option<String>,
    /// Minutes of notice before a shutdown (5..1440).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_before_minutes: Option<i64>,
    /// Go duration (0s..1h).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_grace_period: Option<String>,
    /// `auto-on-reset` or `manual`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_mode: Option<String>,
}
