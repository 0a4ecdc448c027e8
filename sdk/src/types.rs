//! The JSON shapes of the API (Convox-compatible field names).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An application: a named collection of services, builds and releases.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    pub name: String,
    /// `creating`, `running`, `updating`, `rollback` or `deleting`.
    pub status: AppStatus,
    /// The active (last successfully promoted) release; empty before the first promote.
    #[serde(default)]
    pub release: String,
    /// Whether termination protection is on (`apps lock`): a locked app cannot be deleted.
    #[serde(default)]
    pub locked: bool,
    /// The app's router host for its main web service, when it has one.
    #[serde(default)]
    pub router: String,
    /// Always `"3"` (Convox generation 3 semantics).
    #[serde(default)]
    pub generation: String,
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// When the app was created.
    #[serde(default = "epoch")]
    pub created: DateTime<Utc>,
    /// Why the last deployment was rolled back (empty after a successful one).
    #[serde(
        default,
        rename = "deploy-error",
        skip_serializing_if = "String::is_empty"
    )]
    pub deploy_error: String,
    /// The release being deployed (empty when no deployment is in progress).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub deploying: String,
    /// Per-service progress of the deployment in progress (or of the last one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub progress: Vec<ServiceProgress>,
}

/// A build: one image per service, made from source or imported.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    pub id: String,
    pub app: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub entrypoint: String,
    #[serde(default, rename = "git-sha")]
    pub git_sha: String,
    #[serde(default)]
    pub logs: String,
    /// The raw convox.yml the build was made from.
    #[serde(default)]
    pub manifest: String,
    #[serde(default)]
    pub process: String,
    /// The release the build created, once complete.
    #[serde(default)]
    pub release: String,
    #[serde(default)]
    pub reason: String,
    /// `created`, `running`, `complete` or `failed`.
    pub status: String,
    #[serde(default = "epoch")]
    pub started: DateTime<Utc>,
    #[serde(default)]
    pub ended: Option<DateTime<Utc>>,
    /// The image the build's services run (services with `image:` use their own).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
}

/// An immutable pairing of a build and an environment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub id: String,
    pub app: String,
    #[serde(default)]
    pub build: String,
    /// Sorted `KEY=VALUE` lines.
    #[serde(default)]
    pub env: String,
    /// The raw convox.yml of the release's build (not interpolated).
    #[serde(default)]
    pub manifest: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "epoch")]
    pub created: DateTime<Utc>,
}

/// The rack itself (`GET /system`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct System {
    pub name: String,
    #[serde(default)]
    pub domain: String,
    #[serde(default)]
    pub provider: String,
    pub status: String,
    pub version: String,
    #[serde(default)]
    pub count: u32,
    #[serde(default)]
    pub region: String,
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
}

/// A process: one container of a service, a one-off `run`, or a timer run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Process {
    pub id: String,
    pub app: String,
    #[serde(default)]
    pub command: String,
    /// CPU request in cores (millicores / 1000).
    #[serde(default)]
    pub cpu: f64,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub instance: String,
    /// Memory request in MB.
    #[serde(default)]
    pub memory: f64,
    /// The service name (Convox's `name`).
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub ports: Vec<String>,
    #[serde(default)]
    pub release: String,
    #[serde(default = "epoch")]
    pub started: DateTime<Utc>,
    /// `pending`, `starting`, `running`, `unhealthy`, `crashed`, `stopping`, `complete` or
    /// `failed`.
    pub status: ProcessStatus,
    #[serde(default)]
    pub service: String,
    /// `service`, `process` (one-off) or `timer`.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// Times this process was restarted after crashing.
    #[serde(default)]
    pub restarts: u32,
    /// Exit code of the last exit, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// A service of an app's active release with its live scale.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    #[serde(default)]
    pub count: u32,
    /// Processes of the active release that are running.
    #[serde(default)]
    pub running: u32,
    /// CPU request in millicores.
    #[serde(default)]
    pub cpu: u64,
    /// Memory request in MB.
    #[serde(default)]
    pub memory: u64,
    #[serde(default)]
    pub domain: String,
    #[serde(default)]
    pub ports: Vec<ServicePort>,
}

/// A port of a service: `balancer` is the router's port, `container` the service's `port`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePort {
    #[serde(default)]
    pub balancer: u16,
    #[serde(default)]
    pub container: u16,
}

/// An image held by the rack.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub name: String,
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub created: Option<DateTime<Utc>>,
}

/// An installed WebAssembly plugin (`GET /plugins`). Dray's own shape: Convox has no plugins.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plugin {
    pub name: String,
    /// The plugin's own version (empty when it failed to load).
    #[serde(default)]
    pub version: String,
    /// `resource` or `balancer`.
    #[serde(default)]
    pub kind: String,
    /// Resource types it serves (empty for a balancer).
    #[serde(default)]
    pub types: Vec<String>,
    /// `ok` or `failed`.
    pub status: String,
    /// Why it failed (empty when `ok`).
    #[serde(default)]
    pub reason: String,
    /// The contract it was built for, such as `dray:plugin@0.1.0`.
    #[serde(default)]
    pub contract: String,
    /// One sentence from the plugin.
    #[serde(default)]
    pub summary: String,
    /// sha256 of the installed `.wasm`.
    #[serde(default)]
    pub sha256: String,
    /// How many times its instance was re-created after a failure.
    #[serde(default)]
    pub restarts: u32,
    /// What its installation grants beyond the host interface (`network`,
    /// `dir HOST:GUEST (ro)`); empty: nothing, the default.
    #[serde(default)]
    pub grants: Vec<String>,
}

impl Plugin {
    /// `ok`, or `failed: reason`, as `dray plugins` shows it.
    pub fn status_line(&self) -> String {
        if self.reason.is_empty() {
            self.status.clone()
        } else {
            format!("{}: {}", self.status, self.reason)
        }
    }
}

/// The body of every error reply: `{"error": "message"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

fn epoch() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH
}

/// An environment: the parsed form of a release's `KEY=VALUE` lines.
///
/// Parsing follows Convox: each line is split at the first `=`, the key is trimmed, and lines
/// without `=` are ignored. Values may contain `=`; they can never contain a newline.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Environment(pub BTreeMap<String, String>);

impl Environment {
    /// Parse `KEY=VALUE` lines.
    pub fn parse(text: &str) -> Self {
        let mut env = BTreeMap::new();
        for line in text.lines() {
            if let Some((k, v)) = line.split_once('=') {
                let k = k.trim();
                if !k.is_empty() {
                    env.insert(k.to_string(), v.to_string());
                }
            }
        }
        Environment(env)
    }

    /// Render as sorted `KEY=VALUE` lines joined by `\n` (no trailing newline).
    pub fn render(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl std::str::FromStr for Environment {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Environment::parse(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_round_trip_keeps_equals_in_values() {
        let env = Environment::parse("B=2\nA=x=y\n\nnoequals\n C =3");
        assert_eq!(env.0.get("A").map(String::as_str), Some("x=y"));
        assert_eq!(env.0.get("C").map(String::as_str), Some("3"));
        assert_eq!(env.render(), "A=x=y\nB=2\nC=3");
    }

    #[test]
    fn statuses_keep_their_wire_strings() {
        let p: Process =
            serde_json::from_str(r#"{"id":"web-abcde","app":"a","status":"running"}"#).unwrap();
        assert_eq!(p.status, ProcessStatus::Running);
        assert!(p.status == "running");
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["status"], "running");
        let r: Resource =
            serde_json::from_str(r#"{"name":"db","type":"postgres","status":"deleting"}"#).unwrap();
        assert_eq!(r.status, ResourceStatus::Deleting);
        assert_eq!(App::default().status, AppStatus::Running);
        assert!(serde_json::from_str::<Resource>(
            r#"{"name":"db","type":"postgres","status":"bogus"}"#
        )
        .is_err());
    }
}

/// A resource of an app (`GET /apps/{app}/resources`), Convox's shape (`name`, `type`, `status`,
/// `url`) plus what Dray knows about how it runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// `pending`, `provisioning`, `running`, `unhealthy`, `failed`, `overridden` (its
    /// `<NAME>_URL` is set in the app's env), `declared` (in the manifest of a release that
    /// was not promoted yet) or `deleting` (no release declares it any more; its objects are
    /// being removed). See [`ResourceStatus`].
    pub status: ResourceStatus,
    /// The `URL` it links (empty until it runs).
    #[serde(default)]
    pub url: String,
    /// Why it is failed or waiting.
    #[serde(default)]
    pub reason: String,
    /// The plugin serving its type.
    #[serde(default)]
    pub plugin: String,
    /// Its host port.
    #[serde(default)]
    pub port: u16,
    /// Every value it links (`URL`, `USER`, `PASS`, `HOST`, `PORT`, `NAME`, ...), in order.
    #[serde(default)]
    pub outputs: Vec<ResourceOutput>,
    /// The objects it is made of.
    #[serde(default)]
    pub objects: Vec<ResourceObject>,
    /// The services that link it, and the variables they get.
    #[serde(default)]
    pub links: Vec<String>,
}

/// One value a resource links (`DATABASE_URL` is output `URL` of resource `database`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceOutput {
    pub key: String,
    pub value: String,
    /// A secret value (password, URL with a password).
    #[serde(default)]
    pub secret: bool,
}

/// One object of a resource: a container on the rack, or a cloud database.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceObject {
    pub name: String,
    /// `container` or `cloud-database`.
    pub kind: String,
    /// The containerd container id, or the cloud identifier.
    pub id: String,
    /// The image, or the engine version.
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub port: u16,
}

/// Defines a status enum whose wire form is a lowercase word (serde, `Display`, `FromStr`); one
/// variant carries `#[default]`.
macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $wire)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire string.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($wire => Ok($name::$variant),)+
                    other => Err(format!(
                        "unknown {} {other:?}: expected one of {}",
                        stringify!($name),
                        [$($wire),+].join(", ")
                    )),
                }
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

wire_enum! {
    /// Where a process is in its life (`dray ps` STATUS).
    ProcessStatus {
        /// Assigned, not started yet (or waiting for its image).
        #[default]
        Pending => "pending",
        /// Running, not yet passing its readiness check.
        Starting => "starting",
        /// Running (and ready, when it has a readiness check).
        Running => "running",
        /// Running but failing its readiness check.
        Unhealthy => "unhealthy",
        /// Exited unexpectedly; restarts after its backoff delay.
        Crashed => "crashed",
        /// Being stopped (drained, SIGTERM sent, waiting for its grace period).
        Stopping => "stopping",
        /// A one-off or timer process that exited 0.
        Complete => "complete",
        /// A one-off or timer process that exited non-zero.
        Failed => "failed",
    }
}

impl ProcessStatus {
    /// Whether the process still runs, or will again (not a finished one-off).
    pub fn is_live(self) -> bool {
        !matches!(self, ProcessStatus::Complete | ProcessStatus::Failed)
    }
}

wire_enum! {
    /// The state of a resource (`dray resources` STATUS). A resource no release declares any
    /// more is `deleting` until its objects are gone (then its record goes too).
    ResourceStatus {
        /// Declared, nothing carried out yet.
        #[default]
        Pending => "pending",
        /// Its objects are being created and have not been healthy yet.
        Provisioning => "provisioning",
        /// Every object runs and is healthy; its outputs are linked.
        Running => "running",
        /// It ran before, and an object is now down or failing its health check.
        Unhealthy => "unhealthy",
        /// It cannot be carried out (see the reason).
        Failed => "failed",
        /// Replaced by `<NAME>_URL` in the app's env: nothing runs.
        Overridden => "overridden",
        /// In the manifest of a release that was not promoted yet.
        Declared => "declared",
        /// No release declares it any more; its objects are being removed.
        Deleting => "deleting",
    }
}

wire_enum! {
    /// The state of an app (`dray apps` STATUS).
    AppStatus {
        /// Being created.
        Creating => "creating",
        /// Running its active release (no deployment in progress).
        #[default]
        Running => "running",
        /// A deployment is in progress.
        Updating => "updating",
        /// A deployment failed and is being rolled back.
        Rollback => "rollback",
        /// Being deleted.
        Deleting => "deleting",
    }
}

/// Deploy progress of one service (on [`App::progress`] while a deployment runs, and after it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceProgress {
    pub service: String,
    /// The release these counts are of (the one being deployed, or the active one).
    #[serde(default)]
    pub release: String,
    /// Processes the service should have.
    pub desired: u32,
    /// Processes of the release being deployed (with the current limits).
    pub updated: u32,
    /// Of those, the ones that pass their readiness check.
    pub healthy: u32,
    /// Processes of older releases (or with old limits) still running or stopping.
    pub old: u32,
}

/// One process of a service as the router and balancers see it (`GET /apps/{app}/endpoints`,
/// the shape of a Kubernetes EndpointSlice entry).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub app: String,
    pub service: String,
    /// The process id (`web-abcde`).
    pub process: String,
    pub release: String,
    /// The instance the process runs on.
    pub instance: String,
    /// Where it is reached.
    pub address: String,
    /// Its port (the one it listens on; empty services have none and no endpoint).
    pub port: u16,
    /// Passing its readiness check: may receive new requests.
    pub healthy: bool,
    /// Being stopped: finish what it has, receive nothing new.
    pub draining: bool,
}
