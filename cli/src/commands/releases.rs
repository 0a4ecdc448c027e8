//! `dray releases`, `releases info`, `releases manifest`.

use clap::{Args, Subcommand};

use super::Globals;
use crate::output;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ReleasesArgs {
    /// Show at most this many releases.
    #[arg(long, short = 'l', default_value_t = 10)]
    limit: u32,
    #[command(subcommand)]
    command: Option<ReleasesCommand>,
}

#[derive(Debug, Subcommand)]
enum ReleasesCommand {
    /// Show a release.
    Info { release: String },
    /// Print a release's convox.yml.
    Manifest { release: String },
}

pub async fn run(g: &Globals, args: ReleasesArgs) -> anyhow::Result<()> {
    let client = g.client()?;
    let app = g.app(None)?;
    match args.command {
        None => {
            let active = client.app(&app).await?.release;
            let releases = client.releases(&app, Some(args.limit)).await?;
            if g.json {
                return output::json(&releases);
            }
            let rows: Vec<Vec<String>> = releases
                .into_iter()
                .map(|r| {
                    let status = if r.id == active { "active" } else { "" };
                    vec![
                        r.id,
                        status.to_string(),
                        r.build,
                        output::ago(r.created),
                        r.description,
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(&["ID", "STATUS", "BUILD", "CREATED", "DESCRIPTION"], &rows)
            );
        }
        Some(ReleasesCommand::Info { release }) => {
            let r = client.release(&app, &release).await?;
            if g.json {
                return output::json(&r);
            }
            print!(
                "{}",
                output::info(&[
                    ("Id", r.id),
                    ("Build", r.build),
                    (
                        "Created",
                        r.created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                    ("Description", r.description),
                    ("Env", r.env),
                ])
            );
        }
        Some(ReleasesCommand::Manifest { release }) => {
            let r = client.release(&app, &release).await?;
            if g.json {
                return output::json(&serde_json::json!({ "manifest": r.manifest }));
            }
            print!("{}", r.manifest);
            if !r.manifest.is_empty() && !r.manifest.ends_with('\n') {
                println!();
            }
        }
    }
    Ok(())
}
