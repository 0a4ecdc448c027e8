//! Choosing the rack and the app, and the saved logins.
//!
//! Rack: `--rack` (or `DRAY_HOST`) naming a URL or a saved rack, else the current rack saved by
//! `dray login`. Token: `DRAY_TOKEN`, else the password in the URL, else the saved token.
//! App: `--app`/`-a` (or `DRAY_APP`), else `.dray/app` or `.convox/app` in the current
//! directory, else the directory's name: exactly as `convox` does.
//!
//! Settings live in `$DRAY_CONFIG`, else `$XDG_CONFIG_HOME/dray`, else `~/.config/dray`, in
//! `config.json` (mode 0600).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};

/// One saved rack.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SavedRack {
    pub token: String,
}

/// The settings file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Settings {
    /// URL of the current rack.
    #[serde(default)]
    pub current: String,
    /// Saved racks by URL.
    #[serde(default)]
    pub racks: BTreeMap<String, SavedRack>,
}

/// The settings directory.
pub fn config_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("DRAY_CONFIG").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("dray"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".config").join("dray")),
        None => bail!("cannot find a settings directory: set DRAY_CONFIG or HOME"),
    }
}

impl Settings {
    fn path() -> anyhow::Result<PathBuf> {
        Ok(config_dir()?.join("config.json"))
    }

    /// Read the settings; a missing file is empty settings.
    pub fn load() -> anyhow::Result<Settings> {
        let path = Self::path()?;
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "cannot parse {}: fix or delete it and run `dray login` again",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Write the settings, readable only by the user.
    pub fn save(&self) -> anyhow::Result<()> {
        let path = Self::path()?;
        let dir = path.parent().unwrap_or(Path::new("."));
        create_private_dir(dir)?;
        let tmp = path.with_extension("json.tmp");
        {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts
                .open(&tmp)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            f.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    /// Find a saved rack by exact URL or unique substring.
    pub fn find(&self, name: &str) -> anyhow::Result<Option<String>> {
        if self.racks.contains_key(name) {
            return Ok(Some(name.to_string()));
        }
        let matches: Vec<&String> = self.racks.keys().filter(|k| k.contains(name)).collect();
        match matches.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some((*one).clone())),
            many => bail!(
                "rack {name:?} is ambiguous: it matches {}",
                many.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

/// Normalise a rack URL: add `http://` when no scheme is given, drop a trailing slash.
pub fn normalize_url(url: &str) -> String {
    let u = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    u.trim_end_matches('/').to_string()
}

/// The client for the selected rack.
pub fn client(rack: Option<&str>) -> anyhow::Result<dray_sdk::Client> {
    let settings = Settings::load()?;
    let env_token = std::env::var("DRAY_TOKEN").ok().filter(|t| !t.is_empty());
    let (url, saved_token) = match rack.filter(|r| !r.is_empty()) {
        Some(r) => match settings.find(r)? {
            Some(url) => {
                let token = settings.racks.get(&url).map(|s| s.token.clone());
                (url, token)
            }
            None if r.contains(':') || r.contains('/') || r.contains('.') || r == "localhost" => {
                let url = normalize_url(r);
                let token = settings.racks.get(&url).map(|s| s.token.clone());
                (url, token)
            }
            None => bail!(
                "no saved rack matches {r:?}: pass a URL such as http://127.0.0.1:5443, or log in with `dray login URL --token TOKEN`"
            ),
        },
        None if !settings.current.is_empty() => {
            let token = settings
                .racks
                .get(&settings.current)
                .map(|s| s.token.clone());
            (settings.current.clone(), token)
        }
        None => bail!(
            "no rack selected: run `dray login http://HOST:5443 --token TOKEN`, or set DRAY_HOST and DRAY_TOKEN"
        ),
    };
    Ok(dray_sdk::Client::new(&url, env_token.or(saved_token))?)
}

/// The app to act on: the flag, then `.dray/app` / `.convox/app`, then the directory name.
pub fn app(flag: Option<&str>) -> anyhow::Result<String> {
    if let Some(a) = flag.filter(|a| !a.is_empty()) {
        return Ok(a.to_string());
    }
    for file in [".dray/app", ".convox/app"] {
        if let Ok(text) = std::fs::read_to_string(file) {
            let name = text.trim();
            if !name.is_empty() {
                return Ok(name.to_string());
            }
        }
    }
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    cwd.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| anyhow!("cannot tell which app: pass --app NAME"))
}
