//! `dray-cloud`: the only part of Dray that speaks AWS.
//!
//! Owns: the AWS SDK clients and their configuration (region, optional endpoint override such
//! as a local moto server, credentials from the usual environment/profile/instance chain or
//! given explicitly), and the lifecycle of the RDS database instances behind `rds-*` resources:
//! idempotent create ([`Rds::ensure`]), inspect ([`Rds::describe`]), idempotent delete
//! ([`Rds::delete`]) and polling until available ([`Rds::wait_available`]); the deterministic
//! naming of those instances ([`identifier`]); and the translation of AWS errors into
//! [`CloudError`]s that name the database and the AWS error code.
//!
//! Must never: block a caller waiting for availability unless it asked to
//! ([`Rds::wait_available`] is the only waiting call, always bounded by a timeout); retry a
//! create or delete on its own beyond the SDK's standard retries; delete anything it was not
//! asked to by identifier; take a final snapshot or change an instance's deletion protection
//! to make a delete succeed; log or `Debug`-print passwords or secret keys; or panic on
//! anything that came from the network. Deciding *what* to create is the resource plugins'
//! job and deciding *when* is the agent's: this crate only carries the call out.
//!
//! Verified against moto's server mode (`moto[server]` 5.x), which makes every state final at
//! once; the tests put a status-rewriting proxy in front of it to exercise the polling.

#[cfg(feature = "testing")]
pub mod testing;

use std::fmt;
use std::time::{Duration, Instant};

use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_rds::config::{Credentials, Region};
use aws_sdk_rds::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_rds::types::{DbInstance, Tag};

/// Longest RDS DB instance identifier AWS accepts.
pub const MAX_IDENTIFIER_LEN: usize = 63;

/// Where and how to reach the RDS API.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RdsConfig {
    /// Endpoint URL override (a moto server, `http://127.0.0.1:5000`); `None` = real AWS.
    pub endpoint: Option<String>,
    /// AWS region (`us-east-1`); empty = from the usual chain (`AWS_REGION`, profile, IMDS).
    pub region: String,
    /// Static `(access key id, secret access key)`; `None` = the usual credentials chain
    /// (environment, profile, web identity, ECS/EC2 instance roles).
    pub credentials: Option<(String, String)>,
}

impl fmt::Debug for RdsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RdsConfig")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(id, _)| (id, "<redacted>")),
            )
            .finish()
    }
}

/// The database instance Dray wants: what a `rds-*` resource plugin plans.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseSpec {
    /// DB instance identifier (see [`identifier`]); must be a valid RDS identifier.
    pub identifier: String,
    /// RDS engine (`postgres`, `mysql`, `mariadb`, ...).
    pub engine: String,
    /// Engine version (`16.3`); empty = the engine's default version.
    pub engine_version: String,
    /// Instance class (`db.t3.micro`).
    pub instance_class: String,
    /// Allocated storage in GiB (> 0).
    pub storage_gb: u32,
    /// Port the database listens on; 0 = the engine's default.
    pub port: u16,
    /// Master user name.
    pub username: String,
    /// Master user password (never logged).
    pub password: String,
    /// Name of the database created in the instance; empty = none (engine default).
    pub database: String,
    /// Encrypt the storage (default KMS key).
    pub encrypted: bool,
    /// Multi-AZ deployment.
    pub multi_az: bool,
    /// Days of automated backups (0 disables them).
    pub backup_retention_days: u32,
    /// Protect the instance from deletion (then [`Rds::delete`] fails until it is turned off).
    pub deletion_protection: bool,
    /// Tags set on the instance at creation.
    pub tags: Vec<(String, String)>,
}

impl fmt::Debug for DatabaseSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSpec")
            .field("identifier", &self.identifier)
            .field("engine", &self.engine)
            .field("engine_version", &self.engine_version)
            .field("instance_class", &self.instance_class)
            .field("storage_gb", &self.storage_gb)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("database", &self.database)
            .field("encrypted", &self.encrypted)
            .field("multi_az", &self.multi_az)
            .field("backup_retention_days", &self.backup_retention_days)
            .field("deletion_protection", &self.deletion_protection)
            .field("tags", &self.tags)
            .finish()
    }
}

/// What AWS says about an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseState {
    /// DB instance identifier.
    pub identifier: String,
    /// AWS `DBInstanceStatus` (`creating`, `available`, `modifying`, `deleting`, `failed`, ...).
    pub status: String,
    /// `(address, port)` once AWS has assigned one (usually not while `creating`).
    pub endpoint: Option<(String, u16)>,
    /// Engine version actually running.
    pub engine_version: Option<String>,
}

impl DatabaseState {
    /// The instance is ready for connections.
    pub fn is_available(&self) -> bool {
        self.status == "available"
    }

    /// The instance is in a failed state that needs an operator (or a re-create): `failed`,
    /// `incompatible-*`, `inaccessible-encryption-credentials*`, `insufficient-capacity`,
    /// `restore-error`, `storage-full`.
    pub fn is_failed(&self) -> bool {
        let s = self.status.as_str();
        matches!(
            s,
            "failed" | "insufficient-capacity" | "restore-error" | "storage-full"
        ) || s.starts_with("incompatible-")
            || s.starts_with("inaccessible-encryption-credentials")
    }

    /// The instance will not become available on its own: failed ([`Self::is_failed`]),
    /// being deleted, or stopped / stopping.
    pub fn is_terminal(&self) -> bool {
        self.is_failed()
            || matches!(
                self.status.as_str(),
                "deleting" | "delete-precheck" | "stopped" | "stopping"
            )
    }

    fn from_instance(fallback_identifier: &str, db: &DbInstance) -> DatabaseState {
        let endpoint = db.endpoint().and_then(|e| {
            let address = e.address().filter(|a| !a.is_empty())?;
            let port = e.port().and_then(|p| u16::try_from(p).ok())?;
            Some((address.to_string(), port))
        });
        DatabaseState {
            identifier: db
                .db_instance_identifier()
                .unwrap_or(fallback_identifier)
                .to_string(),
            status: db.db_instance_status().unwrap_or("unknown").to_string(),
            endpoint,
            engine_version: db.engine_version().map(str::to_string),
        }
    }
}

/// Everything that can go wrong talking to AWS about a database.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// The spec was rejected before any call to AWS.
    #[error("invalid RDS database spec for {identifier:?}: {reason}")]
    InvalidSpec { identifier: String, reason: String },
    /// AWS answered with an error (code as AWS names it, e.g. `InvalidParameterValue`).
    #[error("RDS {operation} for database {identifier:?} failed: {code}: {message}")]
    Aws {
        operation: &'static str,
        identifier: String,
        code: String,
        message: String,
    },
    /// No usable answer from AWS: connect/TLS failure, timeout, unreadable response.
    #[error("RDS {operation} for database {identifier:?}: no usable answer from AWS: {message}")]
    Transport {
        operation: &'static str,
        identifier: String,
        message: String,
    },
    /// The instance does not exist (while waiting for it to become available).
    #[error("RDS database {identifier:?} does not exist")]
    NotFound { identifier: String },
    /// The instance reached a status from which it will not become available on its own.
    #[error("RDS database {identifier:?} is {status:?} and will not become available")]
    Failed { identifier: String, status: String },
    /// The instance was still not available when the wait timed out.
    #[error(
        "RDS database {identifier:?} not available after {waited:?}: last status {last_status:?}"
    )]
    Timeout {
        identifier: String,
        waited: Duration,
        last_status: String,
    },
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl CloudError {
    /// The catch-all error.
    pub fn other(message: impl fmt::Display) -> CloudError {
        CloudError::Other(message.to_string())
    }

    /// The AWS error code, when AWS answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            CloudError::Aws { code, .. } => Some(code),
            _ => None,
        }
    }

    fn from_sdk<E, R>(operation: &'static str, identifier: &str, err: SdkError<E, R>) -> CloudError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: fmt::Debug,
    {
        match err.code() {
            Some(code) => CloudError::Aws {
                operation,
                identifier: identifier.to_string(),
                code: code.to_string(),
                message: err.message().unwrap_or("(no message)").to_string(),
            },
            None => CloudError::Transport {
                operation,
                identifier: identifier.to_string(),
                message: error_chain(&err),
            },
        }
    }
}

/// RDS database instances. Cheap to clone (the SDK client is shared).
#[derive(Clone, Debug)]
pub struct Rds {
    client: aws_sdk_rds::Client,
}

impl Rds {
    /// A client for `cfg`. Loads credentials lazily (nothing is contacted here).
    pub async fn new(cfg: &RdsConfig) -> Rds {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(Duration::from_secs(30))
            .operation_timeout(Duration::from_secs(90))
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts);
        if !cfg.region.is_empty() {
            loader = loader.region(Region::new(cfg.region.clone()));
        }
        if let Some(endpoint) = &cfg.endpoint {
            loader = loader.endpoint_url(endpoint.clone());
        }
        if let Some((id, secret)) = &cfg.credentials {
            loader = loader.credentials_provider(Credentials::new(
                id.clone(),
                secret.clone(),
                None,
                None,
                "dray-static",
            ));
        }
        let sdk = loader.load().await;
        tracing::debug!(
            region = ?sdk.region(),
            endpoint = cfg.endpoint.as_deref().unwrap_or("aws"),
            "RDS client configured"
        );
        Rds {
            client: aws_sdk_rds::Client::new(&sdk),
        }
    }

    /// Idempotent: create the instance if it does not exist (identifier given), else return
    /// its current state (whatever it is, `deleting` included; an existing instance is never
    /// modified to match `db`). Never blocks waiting for availability.
    pub async fn ensure(&self, db: &DatabaseSpec) -> Result<DatabaseState, CloudError> {
        validate_spec(db)?;
        if let Some(state) = self.describe(&db.identifier).await? {
            tracing::debug!(identifier = %db.identifier, status = %state.status, "RDS database exists");
            return Ok(state);
        }
        let int = |what: &str, v: u32| {
            i32::try_from(v).map_err(|_| CloudError::InvalidSpec {
                identifier: db.identifier.clone(),
                reason: format!("{what} {v} is out of range"),
            })
        };
        let mut req = self
            .client
            .create_db_instance()
            .db_instance_identifier(&db.identifier)
            .engine(&db.engine)
            .db_instance_class(&db.instance_class)
            .allocated_storage(int("storage_gb", db.storage_gb)?)
            .master_username(&db.username)
            .master_user_password(&db.password)
            .storage_encrypted(db.encrypted)
            .multi_az(db.multi_az)
            .backup_retention_period(int("backup_retention_days", db.backup_retention_days)?)
            .deletion_protection(db.deletion_protection)
            .set_tags(Some(
                db.tags
                    .iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect(),
            ));
        if !db.engine_version.is_empty() {
            req = req.engine_version(&db.engine_version);
        }
        if db.port != 0 {
            req = req.port(i32::from(db.port));
        }
        if !db.database.is_empty() {
            req = req.db_name(&db.database);
        }
        tracing::info!(
            identifier = %db.identifier,
            engine = %db.engine,
            engine_version = %db.engine_version,
            instance_class = %db.instance_class,
            storage_gb = db.storage_gb,
            "creating RDS database"
        );
        match req.send().await {
            Ok(out) => match out.db_instance() {
                Some(instance) => Ok(DatabaseState::from_instance(&db.identifier, instance)),
                None => self.describe(&db.identifier).await?.ok_or_else(|| {
                    CloudError::other(format!(
                        "RDS created database {:?} but does not describe it",
                        db.identifier
                    ))
                }),
            },
            // Lost a race with another creator (or a retried create that had succeeded).
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_db_instance_already_exists_fault()) =>
            {
                tracing::debug!(identifier = %db.identifier, "RDS database created concurrently");
                self.describe(&db.identifier).await?.ok_or_else(|| {
                    CloudError::other(format!(
                        "RDS says database {:?} already exists but does not describe it",
                        db.identifier
                    ))
                })
            }
            Err(err) => Err(CloudError::from_sdk(
                "CreateDBInstance",
                &db.identifier,
                err,
            )),
        }
    }

    /// The instance's current state, `None` if it does not exist.
    pub async fn describe(&self, identifier: &str) -> Result<Option<DatabaseState>, CloudError> {
        validate_identifier(identifier)?;
        let res = self
            .client
            .describe_db_instances()
            .db_instance_identifier(identifier)
            .send()
            .await;
        match res {
            Ok(out) => Ok(out
                .db_instances()
                .iter()
                .find(|i| {
                    i.db_instance_identifier()
                        .is_none_or(|id| id.eq_ignore_ascii_case(identifier))
                })
                .map(|i| DatabaseState::from_instance(identifier, i))),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_db_instance_not_found_fault()) =>
            {
                Ok(None)
            }
            Err(err) => Err(CloudError::from_sdk("DescribeDBInstances", identifier, err)),
        }
    }

    /// Idempotent delete, with a final snapshot ([`final_snapshot_name`]); Ok if already gone or
    /// already being deleted.
    /// Returns as soon as AWS accepted the delete (the instance is then `deleting`).
    pub async fn delete(&self, identifier: &str) -> Result<(), CloudError> {
        validate_identifier(identifier)?;
        tracing::info!(%identifier, "deleting RDS database");
        let res = self
            .client
            .delete_db_instance()
            .db_instance_identifier(identifier)
            // The data outlives the instance: a final snapshot, named after it and the time.
            .skip_final_snapshot(false)
            .final_db_snapshot_identifier(final_snapshot_name(identifier))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_db_instance_not_found_fault()) =>
            {
                tracing::debug!(%identifier, "RDS database already gone");
                Ok(())
            }
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_invalid_db_instance_state_fault()) =>
            {
                // "already being deleted" is success; any other state conflict is not.
                match self.describe(identifier).await? {
                    None => Ok(()),
                    Some(s) if s.status == "deleting" || s.status == "delete-precheck" => Ok(()),
                    Some(_) => Err(CloudError::from_sdk("DeleteDBInstance", identifier, err)),
                }
            }
            Err(err) => Err(CloudError::from_sdk("DeleteDBInstance", identifier, err)),
        }
    }

    /// Poll describe every `interval` until status is "available" (Ok(state)), a failed or
    /// terminal status (Err [`CloudError::Failed`]), the instance is gone
    /// ([`CloudError::NotFound`]), or `timeout` ([`CloudError::Timeout`] with the last status).
    pub async fn wait_available(
        &self,
        identifier: &str,
        interval: Duration,
        timeout: Duration,
    ) -> Result<DatabaseState, CloudError> {
        let start = Instant::now();
        let deadline = start + timeout;
        let mut polls = 0u32;
        loop {
            polls += 1;
            let state = self
                .describe(identifier)
                .await?
                .ok_or_else(|| CloudError::NotFound {
                    identifier: identifier.to_string(),
                })?;
            tracing::debug!(%identifier, status = %state.status, polls, "waiting for RDS database");
            if state.is_available() {
                tracing::info!(%identifier, polls, waited = ?start.elapsed(), "RDS database available");
                return Ok(state);
            }
            if state.is_terminal() {
                return Err(CloudError::Failed {
                    identifier: identifier.to_string(),
                    status: state.status,
                });
            }
            let now = Instant::now();
            if now >= deadline {
                let waited = now - start;
                return Err(CloudError::Timeout {
                    identifier: identifier.to_string(),
                    // Whole milliseconds read better in the message.
                    waited: Duration::from_millis(
                        u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                    ),
                    last_status: state.status,
                });
            }
            tokio::time::sleep(interval.min(deadline - now)).await;
        }
    }
}

/// `err: source: source ...`, skipping sources whose text the previous one already showed.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn validate_spec(db: &DatabaseSpec) -> Result<(), CloudError> {
    validate_identifier(&db.identifier)?;
    let invalid = |reason: &str| {
        Err(CloudError::InvalidSpec {
            identifier: db.identifier.clone(),
            reason: reason.to_string(),
        })
    };
    if db.engine.is_empty() {
        return invalid("engine is empty");
    }
    if db.instance_class.is_empty() {
        return invalid("instance_class is empty");
    }
    if db.storage_gb == 0 {
        return invalid("storage_gb is 0");
    }
    if db.username.is_empty() {
        return invalid("username is empty");
    }
    if db.password.is_empty() {
        return invalid("password is empty");
    }
    Ok(())
}

fn validate_identifier(identifier: &str) -> Result<(), CloudError> {
    match identifier_problem(identifier) {
        None => Ok(()),
        Some(reason) => Err(CloudError::InvalidSpec {
            identifier: identifier.to_string(),
            reason: format!("not a valid RDS DB instance identifier: {reason}"),
        }),
    }
}

fn identifier_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        Some("empty")
    } else if s.len() > MAX_IDENTIFIER_LEN {
        Some("longer than 63 characters")
    } else if !s.starts_with(|c: char| c.is_ascii_alphabetic()) {
        Some("does not start with a letter")
    } else if !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        Some("has characters other than letters, digits and hyphens")
    } else if s.contains("--") {
        Some("has two consecutive hyphens")
    } else if s.ends_with('-') {
        Some("ends with a hyphen")
    } else {
        None
    }
}

/// Whether `s` is a valid RDS DB instance identifier: 1 to 63 letters, digits and hyphens,
/// starting with a letter, no two consecutive hyphens, not ending with a hyphen.
pub fn is_valid_identifier(s: &str) -> bool {
    identifier_problem(s).is_none()
}

/// The name of the final snapshot taken when `identifier` is deleted: `<identifier>-final-<unix
/// seconds>` (a valid snapshot identifier whenever `identifier` is a valid instance identifier).
pub fn final_snapshot_name(identifier: &str) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!("{identifier}-final-{secs}")
}

/// The RDS DB instance identifier of resource `resource` of app `app` in rack `rack`:
/// `dray-<rack>-<app>-<resource>-<hash>`, lowercase, each name reduced to letters, digits and
/// single hyphens, the names truncated to fit 63 characters, and `<hash>` 8 hex digits of a
/// stable hash (FNV-1a) of the three exact names, so names that sanitize or truncate alike
/// still get distinct identifiers.
///
/// Deterministic across processes, machines and releases: changing this function orphans
/// every database created with it.
pub fn identifier(rack: &str, app: &str, resource: &str) -> String {
    const PREFIX: &str = "dray-";
    const HASH_LEN: usize = 8;
    let mut hash: u32 = 0x811c_9dc5;
    for part in [rack, app, resource] {
        // Length-prefixed so ("a-b", "c") and ("a", "b-c") hash differently.
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        for b in len.to_le_bytes().iter().chain(part.as_bytes()) {
            hash ^= u32::from(*b);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    }
    let names: Vec<String> = [rack, app, resource].iter().map(|p| sanitize(p)).collect();
    let mut body = names
        .iter()
        .filter(|n| !n.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join("-");
    let room = MAX_IDENTIFIER_LEN - PREFIX.len() - 1 - HASH_LEN;
    body.truncate(room); // ASCII only, so any index is a char boundary
    let body = body.trim_end_matches('-');
    if body.is_empty() {
        format!("{PREFIX}{hash:08x}")
    } else {
        format!("{PREFIX}{body}-{hash:08x}")
    }
}

/// Lowercase ASCII letters and digits, every other run of characters one hyphen, no hyphen at
/// either end.
fn sanitize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_is_readable_and_deterministic() {
        let id = identifier("prod", "myapp", "database");
        assert!(id.starts_with("dray-prod-myapp-database-"), "{id}");
        assert_eq!(id.len(), "dray-prod-myapp-database-".len() + 8);
        assert!(is_valid_identifier(&id), "{id}");
        assert_eq!(id, identifier("prod", "myapp", "database"));
        // Pinned: a change here orphans existing databases.
        assert_eq!(id, "dray-prod-myapp-database-2cfec593");
    }

    #[test]
    fn identifier_distinguishes_names_that_sanitize_alike() {
        let a = identifier("a-b", "c", "db");
        let b = identifier("a", "b-c", "db");
        let c = identifier("A_B", "c", "db");
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert!(a.starts_with("dray-a-b-c-db-") && c.starts_with("dray-a-b-c-db-"));
        assert_ne!(identifier("r", "app", "db1"), identifier("r", "app", "db2"));
    }

    #[test]
    fn identifier_is_always_valid() {
        let long = "x".repeat(200);
        let cases: &[(&str, &str, &str)] = &[
            ("", "", ""),
            ("--", "__", ".."),
            ("9rack", "1app", "0db"),
            ("Rack.With.Dots", "app__name", "db--main-"),
            ("ünïcödé", "名前", "база"),
            (&long, &long, &long),
            ("r", &long, "db"),
            ("rack-", "-app-", "-"),
            ("a", "b", &"-x".repeat(40)),
        ];
        for (r, a, d) in cases {
            let id = identifier(r, a, d);
            assert!(is_valid_identifier(&id), "{r:?}/{a:?}/{d:?} -> {id:?}");
            assert!(id.len() <= MAX_IDENTIFIER_LEN, "{id}");
            assert_eq!(id, identifier(r, a, d));
        }
        assert_eq!(identifier(&long, &long, &long).len(), MAX_IDENTIFIER_LEN);
    }

    #[test]
    fn identifier_validation() {
        for good in ["a", "db1", "dray-a-b", &"a".repeat(63)] {
            assert!(is_valid_identifier(good), "{good}");
        }
        for bad in [
            "",
            "1db",
            "-db",
            "db-",
            "db--x",
            "db_x",
            "db.x",
            "dé",
            &"a".repeat(64),
        ] {
            assert!(!is_valid_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn status_classes() {
        let s = |status: &str| DatabaseState {
            identifier: "db".into(),
            status: status.into(),
            endpoint: None,
            engine_version: None,
        };
        assert!(s("available").is_available());
        assert!(!s("creating").is_available());
        for failed in [
            "failed",
            "incompatible-parameters",
            "incompatible-network",
            "inaccessible-encryption-credentials",
            "storage-full",
            "restore-error",
            "insufficient-capacity",
        ] {
            assert!(s(failed).is_failed(), "{failed}");
            assert!(s(failed).is_terminal(), "{failed}");
        }
        for ongoing in [
            "creating",
            "backing-up",
            "modifying",
            "rebooting",
            "available",
        ] {
            assert!(!s(ongoing).is_failed(), "{ongoing}");
            assert!(!s(ongoing).is_terminal(), "{ongoing}");
        }
        assert!(s("deleting").is_terminal() && !s("deleting").is_failed());
        assert!(s("stopped").is_terminal());
    }

    #[test]
    fn errors_name_the_database_and_secrets_stay_out_of_debug() {
        let spec = DatabaseSpec {
            identifier: "bad_id".into(),
            engine: "postgres".into(),
            engine_version: String::new(),
            instance_class: "db.t3.micro".into(),
            storage_gb: 20,
            port: 0,
            username: "app".into(),
            password: "hunter2-secret".into(),
            database: String::new(),
            encrypted: false,
            multi_az: false,
            backup_retention_days: 0,
            deletion_protection: false,
            tags: vec![],
        };
        let err = validate_spec(&spec).unwrap_err();
        assert!(err.to_string().contains("\"bad_id\""), "{err}");
        assert!(!format!("{spec:?}").contains("hunter2"));
        let cfg = RdsConfig {
            endpoint: None,
            region: "us-east-1".into(),
            credentials: Some(("AKID".into(), "s3cr3t".into())),
        };
        assert!(!format!("{cfg:?}").contains("s3cr3t"));
        let t = CloudError::Timeout {
            identifier: "db1".into(),
            waited: Duration::from_secs(2),
            last_status: "creating".into(),
        };
        assert_eq!(
            t.to_string(),
            "RDS database \"db1\" not available after 2s: last status \"creating\""
        );
    }
}
