//! The JSON shapes of the API (Convox-compatible field names).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An application: a named collection of services, builds and releases.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    pub name: String,
    /// `creating`, `running`, `updating`, `rollback` or `deleting`.
    pub status: String,
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
}
