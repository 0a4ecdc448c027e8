//! The agent's configuration: flags, `DRAY_*` environment variables and a TOML file.
//!
//! Precedence, highest first: command-line flag, environment variable, config file, default.
//! This module owns reading and merging those sources and the API token file; it must never
//! start anything.

use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;

use crate::logging::LogFormat;
use crate::StartError;

/// Default API address. Loopback only: expose it deliberately with `--listen 0.0.0.0:5443`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5443";
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/dray";
/// Default rack name.
pub const DEFAULT_RACK: &str = "dray";
/// Default rack domain: `*.localhost` resolves to loopback with no DNS set-up.
pub const DEFAULT_DOMAIN: &str = "localhost";

/// `drayd` command-line flags. Every flag can also be set with its `DRAY_*` variable or in the
/// config file (same name, with dashes).
#[derive(Debug, Default, Parser)]
#[command(name = "drayd", version, about = "The Dray rack agent", long_about = None)]
pub struct Flags {
    /// TOML config file (keys: data-dir, listen, token, rack, domain, log-format, log-level,
    /// plugins-dir, ...: every flag, with dashes).
    #[arg(long, env = "DRAY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the agent keeps its state (store, token).
    #[arg(long, env = "DRAY_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the HTTP API [default: 127.0.0.1:5443].
    #[arg(long, env = "DRAY_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// API token; generated on first start (and kept in DATA_DIR/token) when not given.
    #[arg(long, env = "DRAY_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Rack name [default: dray].
    #[arg(long, env = "DRAY_RACK", value_name = "NAME")]
    pub rack: Option<String>,
    /// Rack domain: services are routed at <service>.<app>.<domain> [default: localhost].
    #[arg(long, env = "DRAY_DOMAIN", value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Log format.
    #[arg(long, env = "DRAY_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log level or filter (RUST_LOG syntax) [default: info].
    #[arg(long, env = "DRAY_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,
    /// containerd's socket [default: /run/containerd/containerd.sock].
    #[arg(long, env = "DRAY_CONTAINERD_SOCKET", value_name = "PATH")]
    pub containerd_socket: Option<PathBuf>,
    /// containerd namespace holding the rack's containers and images [default: dray].
    #[arg(long, env = "DRAY_CONTAINERD_NAMESPACE", value_name = "NAME")]
    pub containerd_namespace: Option<String>,
    /// Host ports handed to processes as PORT, as FIRST-LAST [default: 20000-29999].
    #[arg(long, env = "DRAY_PORT_RANGE", value_name = "FIRST-LAST")]
    pub port_range: Option<String>,
    /// Rotate a process's log file at this many bytes [default: 10485760].
    #[arg(long, env = "DRAY_LOG_MAX_SIZE", value_name = "BYTES")]
    pub log_max_size: Option<u64>,
    /// Keep this many log files per process [default: 10].
    #[arg(long, env = "DRAY_LOG_MAX_FILES", value_name = "N")]
    pub log_max_files: Option<u32>,
    /// First crash-restart delay in milliseconds; it doubles up to 5 minutes [default: 10000].
    #[arg(long, env = "DRAY_CRASH_BACKOFF_MS", value_name = "MS", hide = true)]
    pub crash_backoff_ms: Option<u64>,
    /// Bundled plugins: every .wasm here is installed (or upgraded) at start [default: plugins/
    /// next to drayd, else ../lib/dray/plugins from drayd's directory, when it exists].
    #[arg(long, env = "DRAY_PLUGINS_DIR", value_name = "DIR")]
    pub plugins_dir: Option<PathBuf>,
    /// AWS API endpoint for cloud resources (rds-*), such as a moto server [default: AWS].
    #[arg(long, env = "DRAY_AWS_ENDPOINT", value_name = "URL")]
    pub aws_endpoint: Option<String>,
    /// AWS region for cloud resources [default: us-east-1].
    #[arg(long, env = "DRAY_AWS_REGION", value_name = "REGION")]
    pub aws_region: Option<String>,
}

/// The config file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub token: Option<String>,
    pub rack: Option<String>,
    pub domain: Option<String>,
    pub log_format: Option<LogFormat>,
    pub log_level: Option<String>,
    pub containerd_socket: Option<PathBuf>,
    pub containerd_namespace: Option<String>,
    pub port_range: Option<String>,
    pub log_max_size: Option<u64>,
    pub log_max_files: Option<u32>,
    pub crash_backoff_ms: Option<u64>,
    pub plugins_dir: Option<PathBuf>,
    pub aws_endpoint: Option<String>,
    pub aws_region: Option<String>,
}

/// The merged configuration the agent runs with.
#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: String,
    /// `None`: use (or generate) the token in `data_dir/token`.
    pub token: Option<String>,
    pub rack: String,
    pub domain: String,
    pub log_format: LogFormat,
    pub log_level: String,
    pub containerd_socket: PathBuf,
    pub containerd_namespace: String,
    /// First and last host port for processes.
    pub port_range: (u16, u16),
    /// pids limit of every process.
    pub pids_limit: i64,
    pub log_max_size: u64,
    pub log_max_files: u32,
    /// First crash-restart delay.
    pub crash_backoff: std::time::Duration,
    /// The bundled plugins' directory (`None`: install none).
    pub plugins_dir: Option<PathBuf>,
    /// AWS endpoint for cloud resources (`None`: the real AWS).
    pub aws_endpoint: Option<String>,
    /// AWS region for cloud resources.
    pub aws_region: String,
    /// The rack's id: not configured but kept in the store (`/dray/rack/id`, generated on the
    /// first start); [`crate::Agent::start`] fills it in before anything else reads the config.
    /// Every container the agent makes carries it as label `dray.rack`. Empty until then.
    pub rack_id: String,
    /// This instance's name (`local` on a single-node rack).
    pub instance: String,
}

/// The instance name of a single-node rack.
pub const DEFAULT_INSTANCE: &str = "local";

/// Default AWS region for cloud resources.
pub const DEFAULT_AWS_REGION: &str = "us-east-1";

/// Default containerd socket.
pub const DEFAULT_CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";

/// A config problem, reported before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid {key} {value:?}: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: String,
    },
}

impl Config {
    /// Merge flags (and their env variables) over the config file over the defaults.
    pub fn load(flags: Flags) -> Result<Config, ConfigError> {
        let file = match &flags.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let config = Config {
            data_dir: flags
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            listen: flags
                .listen
                .or(file.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.to_string()),
            token: flags.token.or(file.token).filter(|t| !t.is_empty()),
            rack: flags
                .rack
                .or(file.rack)
                .unwrap_or_else(|| DEFAULT_RACK.to_string()),
            domain: flags
                .domain
                .or(file.domain)
                .unwrap_or_else(|| DEFAULT_DOMAIN.to_string()),
            log_format: flags.log_format.or(file.log_format).unwrap_or_default(),
            log_level: flags
                .log_level
                .or(file.log_level)
                .unwrap_or_else(|| "info".to_string()),
            containerd_socket: flags
                .containerd_socket
                .or(file.containerd_socket)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTAINERD_SOCKET)),
            containerd_namespace: flags
                .containerd_namespace
                .or(file.containerd_namespace)
                .unwrap_or_else(|| "dray".to_string()),
            port_range: parse_port_range(
                flags
                    .port_range
                    .or(file.port_range)
                    .as_deref()
                    .unwrap_or("20000-29999"),
            )?,
            pids_limit: 4096,
            log_max_size: flags
                .log_max_size
                .or(file.log_max_size)
                .unwrap_or(10 * 1024 * 1024),
            log_max_files: flags.log_max_files.or(file.log_max_files).unwrap_or(10),
            crash_backoff: std::time::Duration::from_millis(
                flags
                    .crash_backoff_ms
                    .or(file.crash_backoff_ms)
                    .unwrap_or(10_000)
                    .max(1),
            ),
            plugins_dir: flags
                .plugins_dir
                .or(file.plugins_dir)
                .or_else(default_plugins_dir),
            aws_endpoint: flags
                .aws_endpoint
                .or(file.aws_endpoint)
                .filter(|e| !e.trim().is_empty()),
            aws_region: flags
                .aws_region
                .or(file.aws_region)
                .unwrap_or_else(|| DEFAULT_AWS_REGION.to_string()),
            rack_id: String::new(),
            instance: DEFAULT_INSTANCE.to_string(),
        };
        config.validate()?;
        Ok(config)
    }

    /// A config for tests and embedding: everything default but the data dir and a free port.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            listen: "127.0.0.1:0".to_string(),
            token: None,
            rack: DEFAULT_RACK.to_string(),
            domain: DEFAULT_DOMAIN.to_string(),
            log_format: LogFormat::Text,
            log_level: "info".to_string(),
            containerd_socket: PathBuf::from(DEFAULT_CONTAINERD_SOCKET),
            containerd_namespace: "dray".to_string(),
            port_range: (20000, 29999),
            pids_limit: 4096,
            log_max_size: 10 * 1024 * 1024,
            log_max_files: 10,
            crash_backoff: std::time::Duration::from_secs(10),
            plugins_dir: None,
            aws_endpoint: None,
            aws_region: DEFAULT_AWS_REGION.to_string(),
            rack_id: String::new(),
            instance: DEFAULT_INSTANCE.to_string(),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::Invalid {
                key: "listen",
                value: self.listen.clone(),
                reason: "expected IP:PORT, for example 127.0.0.1:5443 or 0.0.0.0:5443".into(),
            });
        }
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        };
        if !name_ok(&self.rack) || self.rack.contains('.') {
            return Err(ConfigError::Invalid {
                key: "rack",
                value: self.rack.clone(),
                reason: "use letters, digits and dashes".into(),
            });
        }
        if !name_ok(&self.domain) {
            return Err(ConfigError::Invalid {
                key: "domain",
                value: self.domain.clone(),
                reason: "expected a DNS name such as localhost or rack.example.com".into(),
            });
        }
        if let Some(t) = &self.token {
            if t.len() < 8 || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ConfigError::Invalid {
                    key: "token",
                    value: "<hidden>".into(),
                    reason: "use at least 8 characters with no spaces".into(),
                });
            }
        }
        Ok(())
    }
}

/// The bundled plugins installed with drayd: `plugins/` next to the executable, else
/// `../lib/dray/plugins` from its directory (`/usr/local/lib/dray/plugins` for
/// `/usr/local/bin/drayd`, where `scripts/setup.sh` puts them), when one exists.
pub fn default_plugins_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?;
    [
        bin.join("plugins"),
        bin.join("..").join("lib").join("dray").join("plugins"),
    ]
    .into_iter()
    .find(|d| d.is_dir())
}

fn parse_port_range(s: &str) -> Result<(u16, u16), ConfigError> {
    let bad = || ConfigError::Invalid {
        key: "port-range",
        value: s.to_string(),
        reason: "expected FIRST-LAST with 1024 < FIRST <= LAST <= 65535, for example 20000-29999"
            .into(),
    };
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let a: u16 = a.trim().parse().map_err(|_| bad())?;
    let b: u16 = b.trim().parse().map_err(|_| bad())?;
    if a <= 1024 || a > b {
        return Err(bad());
    }
    Ok((a, b))
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.display().to_string(),
        message: e.to_string().trim().replace('\n', " "),
    })
}

/// The API token in force and whether it was generated now: the configured one, else the one
/// saved in `data_dir/token`, else a new one saved there with mode 0600.
pub(crate) fn settle_token(config: &Config) -> Result<(String, bool), StartError> {
    if let Some(t) = &config.token {
        return Ok((t.clone(), false));
    }
    let path = config.data_dir.join("token");
    let err = |source| StartError::Token {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok((t.trim().to_string(), false)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let token = crate::ids::token();
    write_private(&path, token.as_bytes()).map_err(err)?;
    Ok((token, true))
}

/// Write a file readable only by its owner, atomically (temp file + rename + fsync).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("drayd.toml");
        std::fs::write(&file, "rack = \"filerack\"\ndomain = \"example.com\"\n").unwrap();
        let flags = Flags {
            config: Some(file),
            rack: Some("flagrack".into()),
            ..Flags::default()
        };
        let c = Config::load(flags).unwrap();
        assert_eq!(c.rack, "flagrack");
        assert_eq!(c.domain, "example.com");
        assert_eq!(c.listen, DEFAULT_LISTEN);
    }

    #[test]
    fn unknown_config_keys_are_refused_with_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("drayd.toml");
        std::fs::write(&file, "lisen = \"1.2.3.4:5\"\n").unwrap();
        let err = Config::load(Flags {
            config: Some(file.clone()),
            ..Flags::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains(&file.display().to_string()), "{err}");
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn bad_listen_address_is_refused() {
        let err = Config::load(Flags {
            listen: Some("nope".into()),
            ..Flags::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("IP:PORT"), "{err}");
    }

    #[test]
    fn token_is_generated_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::for_data_dir(dir.path());
        let (t1, generated) = settle_token(&config).unwrap();
        assert!(generated);
        let (t2, generated) = settle_token(&config).unwrap();
        assert!(!generated);
        assert_eq!(t1, t2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("token"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
