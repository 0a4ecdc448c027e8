//! `dray resources`, `resources info|url|plan|export|import|console`: an app's resources.
//!
//! Export writes the dump to a temporary file beside the target and renames it only when the
//! remote command succeeded, so a failed export never leaves a truncated dump behind. Every check
//! that can fail (app, resource, state) happens before the terminal or a file is touched.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};

use super::run::{session, terminal, Input};
use super::Globals;
use crate::output;

#[derive(Debug, Args)]
pub struct ResourcesArgs {
    #[command(subcommand)]
    command: Option<ResourcesCommand>,
}

#[derive(Debug, Subcommand)]
enum ResourcesCommand {
    /// Show one resource: status, URL, linked values and what it runs.
    Info { name: String },
    /// Print a resource's URL.
    Url { name: String },
    /// Print what the resource's plugin plans now, as JSON (nothing is changed).
    Plan { name: String },
    /// Dump a resource's data (pg_dump for postgres) into a file.
    Export {
        name: String,
        /// The file to write (default: stdout).
        #[arg(long, short = 'f')]
        file: Option<PathBuf>,
    },
    /// Load data into a resource (psql for postgres) from a file.
    Import {
        name: String,
        /// The file to read (default: stdin).
        #[arg(long, short = 'f')]
        file: Option<PathBuf>,
    },
    /// Open an interactive console on a resource (psql, redis-cli).
    Console { name: String },
}

pub async fn run(g: &Globals, args: ResourcesArgs) -> anyhow::Result<i32> {
    let client = g.client()?;
    let app = g.app(None)?;
    match args.command {
        None => {
            let resources = client.resources(&app).await?;
            if g.json {
                output::json(&resources)?;
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = resources
                .iter()
                .map(|r| {
                    vec![
                        r.name.clone(),
                        r.kind.clone(),
                        r.url.clone(),
                        r.status.to_string(),
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(&["NAME", "TYPE", "URL", "STATUS"], &rows)
            );
        }
        Some(ResourcesCommand::Info { name }) => {
            let r = client.resource(&app, &name).await?;
            if g.json {
                output::json(&r)?;
                return Ok(0);
            }
            let mut pairs = vec![
                ("Name", r.name.clone()),
                ("Type", r.kind.clone()),
                ("Status", r.status.to_string()),
                ("URL", r.url.clone()),
            ];
            if !r.reason.is_empty() {
                pairs.push(("Reason", r.reason.clone()));
            }
            pairs.push(("Plugin", r.plugin.clone()));
            pairs.push((
                "Port",
                if r.port == 0 {
                    String::new()
                } else {
                    r.port.to_string()
                },
            ));
            pairs.push(("Links", r.links.join(", ")));
            let objects: Vec<String> = r
                .objects
                .iter()
                .map(|o| format!("{} {} {} {}:{}", o.kind, o.name, o.version, o.host, o.port))
                .collect();
            pairs.push(("Objects", objects.join(", ")));
            print!("{}", output::info(&pairs));
        }
        Some(ResourcesCommand::Url { name }) => {
            let r = client.resource(&app, &name).await?;
            if r.url.is_empty() {
                bail!(
                    "resource {name} has no URL yet (status {}{})",
                    r.status,
                    if r.reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", r.reason)
                    }
                );
            }
            println!("{}", r.url);
        }
        Some(ResourcesCommand::Plan { name }) => {
            let plan = client.resource_plan(&app, &name).await?;
            println!("{}", serde_json::to_string_pretty(&plan)?);
        }
        Some(ResourcesCommand::Export { name, file }) => {
            let socket = client
                .resource_socket(&app, &name, "export", false, None)
                .await?;
            let Some(file) = file else {
                return session(socket, false, Input::Nothing, &mut std::io::stdout()).await;
            };
            let tmp = temp_beside(&file);
            let mut out = std::io::BufWriter::new(
                std::fs::File::create(&tmp)
                    .map_err(|e| anyhow!("cannot write {}: {e}", tmp.display()))?,
            );
            if !g.json {
                output::start(&format!("Exporting data from {name}"));
            }
            let code = session(socket, false, Input::Nothing, &mut out).await;
            let flushed = std::io::Write::flush(&mut out);
            drop(out);
            match (code, flushed) {
                (Ok(0), Ok(())) => {
                    std::fs::rename(&tmp, &file)
                        .map_err(|e| anyhow!("cannot write {}: {e}", file.display()))?;
                    if !g.json {
                        output::ok();
                    }
                }
                (Ok(0), Err(e)) => {
                    let _ = std::fs::remove_file(&tmp);
                    bail!("cannot write {}: {e}", tmp.display());
                }
                (Ok(code), _) => {
                    let _ = std::fs::remove_file(&tmp);
                    bail!("export failed: the dump command exited with code {code}; {} was not written", file.display());
                }
                (Err(e), _) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
            }
        }
        Some(ResourcesCommand::Import { name, file }) => {
            let input = match &file {
                Some(f) => Input::File(
                    tokio::fs::File::open(f)
                        .await
                        .map_err(|e| anyhow!("cannot read {}: {e}", f.display()))?,
                ),
                None if std::io::stdin().is_terminal() => {
                    bail!("give the dump to import with -f FILE (or on stdin)")
                }
                None => Input::Stdin,
            };
            let socket = client
                .resource_socket(&app, &name, "import", false, None)
                .await?;
            if !g.json {
                output::start(&format!("Importing data into {name}"));
            }
            // The load command's stdout (psql's row counts) is not data: drop it; its errors
            // arrive on stderr.
            let code = session(socket, false, input, &mut std::io::sink()).await?;
            if code != 0 {
                bail!("import failed: the load command exited with code {code}");
            }
            if !g.json {
                output::ok();
            }
        }
        Some(ResourcesCommand::Console { name }) => {
            let (tty, size) = terminal();
            let socket = client
                .resource_socket(&app, &name, "console", tty, size)
                .await?;
            return session(socket, tty, Input::Stdin, &mut std::io::stdout()).await;
        }
    }
    Ok(0)
}

/// `DIR/.NAME.partial-PID` beside `file`.
fn temp_beside(file: &std::path::Path) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".into());
    file.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}
