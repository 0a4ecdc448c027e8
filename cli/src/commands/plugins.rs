//! `dray plugins`, `plugins install|upgrade|remove|info`: the rack's WebAssembly plugins.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::Globals;
use crate::output;

#[derive(Debug, Args)]
pub struct PluginsArgs {
    #[command(subcommand)]
    command: Option<PluginsCommand>,
}

#[derive(Debug, Subcommand)]
enum PluginsCommand {
    /// Install a plugin (a .wasm component built for wasm32-wasip2); effective at once. A plugin
    /// gets no filesystem and no network unless granted here.
    Install {
        file: PathBuf,
        /// Grant outbound network access.
        #[arg(long)]
        allow_network: bool,
        /// Grant a directory of the rack: HOST_DIR:GUEST_DIR[:ro] (repeatable).
        #[arg(long = "allow-dir", value_name = "HOST:GUEST[:ro]")]
        allow_dir: Vec<String>,
    },
    /// Replace an installed plugin with a new build of it (same name; its state is kept).
    Upgrade { file: PathBuf },
    /// Remove a plugin (refused while an app has a resource of a type it serves).
    Remove { name: String },
    /// Show one plugin.
    Info { name: String },
}

pub async fn run(g: &Globals, args: PluginsArgs) -> anyhow::Result<()> {
    let client = g.client()?;
    match args.command {
        None => {
            let plugins = client.plugins().await?;
            if g.json {
                return output::json(&plugins);
            }
            let rows: Vec<Vec<String>> = plugins
                .iter()
                .map(|p| {
                    vec![
                        p.name.clone(),
                        p.version.clone(),
                        p.kind.clone(),
                        p.types.join(","),
                        p.status_line(),
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(&["NAME", "VERSION", "KIND", "TYPES", "STATUS"], &rows)
            );
        }
        Some(PluginsCommand::Install {
            file,
            allow_network,
            allow_dir,
        }) => {
            let wasm = read(&file)?;
            if !g.json {
                output::start(&format!("Installing {}", file.display()));
            }
            let plugin = client
                .plugin_install_with(wasm, allow_network, &allow_dir)
                .await?;
            if g.json {
                return output::json(&plugin);
            }
            output::ok();
            println!("Plugin: {} {}", plugin.name, plugin.version);
        }
        Some(PluginsCommand::Upgrade { file }) => {
            let wasm = read(&file)?;
            if !g.json {
                output::start(&format!("Upgrading {}", file.display()));
            }
            let plugin = client.plugin_upgrade(wasm).await?;
            if g.json {
                return output::json(&plugin);
            }
            output::ok();
            println!("Plugin: {} {}", plugin.name, plugin.version);
        }
        Some(PluginsCommand::Remove { name }) => {
            if !g.json {
                output::start(&format!("Removing {name}"));
            }
            let plugin = client.plugin_remove(&name).await?;
            if g.json {
                return output::json(&plugin);
            }
            output::ok();
        }
        Some(PluginsCommand::Info { name }) => {
            let p = client.plugin(&name).await?;
            if g.json {
                return output::json(&p);
            }
            print!(
                "{}",
                output::info(&[
                    ("Name", p.name.clone()),
                    ("Version", p.version.clone()),
                    ("Kind", p.kind.clone()),
                    ("Types", p.types.join(",")),
                    ("Status", p.status_line()),
                    ("Summary", p.summary.clone()),
                    ("Contract", p.contract.clone()),
                    ("Sha256", p.sha256.clone()),
                    ("Restarts", p.restarts.to_string()),
                    (
                        "Grants",
                        if p.grants.is_empty() {
                            "none".to_string()
                        } else {
                            p.grants.join(", ")
                        },
                    ),
                ])
            );
        }
    }
    Ok(())
}

fn read(file: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))
}
