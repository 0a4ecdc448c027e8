//! `dray env`, `env get`, `env set`, `env unset`.
//!
//! Each change reads the environment of the newest release (or `--release`), edits it and asks
//! the rack for a new release forked from that one, as `convox env set` does.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use dray_sdk::{Client, Environment, ReleaseCreate};

use super::Globals;
use crate::output;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EnvArgs {
    /// Read the environment of this release instead of the newest one.
    #[arg(long, global = true, value_name = "RELEASE")]
    release: Option<String>,
    #[command(subcommand)]
    command: Option<EnvCommand>,
}

#[derive(Debug, Subcommand)]
enum EnvCommand {
    /// Print one variable's value.
    Get { key: String },
    /// Set variables: `dray env set A=1 B=2`, or KEY=VALUE lines on stdin (`dray env set < .env`).
    Set {
        /// KEY=VALUE pairs; `-` reads more from stdin.
        pairs: Vec<String>,
        /// Start from an empty environment instead of the current one.
        #[arg(long)]
        replace: bool,
    },
    /// Remove variables.
    Unset {
        #[arg(required = true)]
        keys: Vec<String>,
    },
}

async fn base_release(
    client: &Client,
    app: &str,
    release: Option<&str>,
) -> anyhow::Result<Option<dray_sdk::Release>> {
    match release {
        Some(r) => Ok(Some(client.release(app, r).await?)),
        None => Ok(client.releases(app, Some(1)).await?.into_iter().next()),
    }
}

pub async fn run(g: &Globals, args: EnvArgs) -> anyhow::Result<()> {
    let client = g.client()?;
    let app = g.app(None)?;
    let base = base_release(&client, &app, args.release.as_deref()).await?;
    let env = base
        .as_ref()
        .map(|r| Environment::parse(&r.env))
        .unwrap_or_default();
    match args.command {
        None => {
            if g.json {
                return output::json(&env.0);
            }
            for (k, v) in &env.0 {
                println!("{k}={v}");
            }
        }
        Some(EnvCommand::Get { key }) => match env.0.get(&key) {
            Some(v) if g.json => output::json(v)?,
            Some(v) => println!("{v}"),
            None => bail!("env not found: {key}"),
        },
        Some(EnvCommand::Set { pairs, replace }) => {
            let mut set = BTreeMap::new();
            let read_stdin = pairs.iter().any(|p| p == "-")
                || (pairs.is_empty() && !std::io::stdin().is_terminal());
            if read_stdin {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text)?;
                set.extend(parse_env_lines(&text)?);
            }
            for p in pairs.iter().filter(|p| *p != "-") {
                let (k, v) = parse_pair(p)?;
                set.insert(k, v);
            }
            if set.is_empty() {
                bail!("nothing to set: pass KEY=VALUE pairs or KEY=VALUE lines on stdin");
            }
            let mut new = if replace { Environment::default() } else { env };
            let keys: Vec<String> = set.keys().cloned().collect();
            new.0.extend(set);
            if !g.json {
                output::start(&format!("Setting {}", keys.join(", ")));
            }
            create(g, &client, &app, base.as_ref(), new).await?;
        }
        Some(EnvCommand::Unset { keys }) => {
            let mut new = env;
            for k in &keys {
                if new.0.remove(k).is_none() {
                    bail!("env not found: {k}");
                }
            }
            if !g.json {
                output::start(&format!("Unsetting {}", keys.join(", ")));
            }
            create(g, &client, &app, base.as_ref(), new).await?;
        }
    }
    Ok(())
}

async fn create(
    g: &Globals,
    client: &Client,
    app: &str,
    base: Option<&dray_sdk::Release>,
    env: Environment,
) -> anyhow::Result<()> {
    let release = client
        .release_create(
            app,
            &ReleaseCreate {
                env: Some(env.render()),
                parent_release: base.map(|r| r.id.clone()),
                ..ReleaseCreate::default()
            },
        )
        .await?;
    if g.json {
        return output::json(&release);
    }
    output::ok();
    println!("Release: {}", release.id);
    Ok(())
}

/// One `KEY=VALUE` argument. Values may contain `=`; a newline is refused.
fn parse_pair(p: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = p
        .split_once('=')
        .ok_or_else(|| anyhow!("invalid argument {p:?}: expected KEY=VALUE"))?;
    let k = k.trim();
    if k.is_empty() {
        bail!("invalid argument {p:?}: the key is empty");
    }
    if v.contains('\n') || v.contains('\r') {
        bail!("the value of {k} contains a newline: env values must be a single line");
    }
    Ok((k.to_string(), v.to_string()))
}

/// `KEY=VALUE` lines as in a .env file: blank lines and `#` comments are skipped, a leading
/// `export ` is dropped, and matching surrounding quotes are removed.
fn parse_env_lines(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (k, v) = parse_pair(line).map_err(|e| anyhow!("stdin line {}: {e}", n + 1))?;
        let v = ['"', '\'']
            .iter()
            .find_map(|q| {
                v.strip_prefix(*q)
                    .and_then(|s| s.strip_suffix(*q))
                    .map(str::to_string)
            })
            .unwrap_or(v);
        out.insert(k, v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_keep_equals_and_refuse_newlines() {
        assert_eq!(parse_pair("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert!(parse_pair("A").is_err());
        assert!(parse_pair("=x").is_err());
        assert!(parse_pair("A=x\ny")
            .unwrap_err()
            .to_string()
            .contains("newline"));
    }

    #[test]
    fn env_files_are_read_like_dotenv() {
        let m = parse_env_lines("# c\n\nexport A=1\nB=\"two words\"\nC='x'\n").unwrap();
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "two words");
        assert_eq!(m["C"], "x");
        assert!(parse_env_lines("nope")
            .unwrap_err()
            .to_string()
            .contains("line 1"));
    }
}
