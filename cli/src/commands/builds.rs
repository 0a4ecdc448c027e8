//! `dray builds`, `builds info`.

use chrono::Utc;
use clap::{Args, Subcommand};

use super::Globals;
use crate::output;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BuildsArgs {
    /// Show at most this many builds.
    #[arg(long, short = 'l', default_value_t = 10)]
    limit: u32,
    #[command(subcommand)]
    command: Option<BuildsCommand>,
}

#[derive(Debug, Subcommand)]
enum BuildsCommand {
    /// Show a build.
    Info { build: String },
    /// Create a build (and a release) from an OCI image archive, as `buildah push IMAGE
    /// oci-archive:FILE` or `skopeo copy` write it. Services with `build:` run this image.
    ImportImage {
        file: std::path::PathBuf,
        /// The app's convox.yml.
        #[arg(long, short = 'm', default_value = "convox.yml")]
        manifest: std::path::PathBuf,
        /// Build description.
        #[arg(long, short = 'd')]
        description: Option<String>,
    },
}

fn elapsed(b: &dray_sdk::Build) -> String {
    let end = b.ended.unwrap_or_else(Utc::now);
    let secs = (end - b.started).num_seconds().max(0);
    format!("{}s", secs)
}

pub async fn run(g: &Globals, args: BuildsArgs) -> anyhow::Result<()> {
    let client = g.client()?;
    let app = g.app(None)?;
    match args.command {
        None => {
            let builds = client.builds(&app, Some(args.limit)).await?;
            if g.json {
                return output::json(&builds);
            }
            let rows: Vec<Vec<String>> = builds
                .iter()
                .map(|b| {
                    vec![
                        b.id.clone(),
                        b.status.clone(),
                        b.release.clone(),
                        output::ago(b.started),
                        elapsed(b),
                        b.description.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(
                    &[
                        "ID",
                        "STATUS",
                        "RELEASE",
                        "STARTED",
                        "ELAPSED",
                        "DESCRIPTION"
                    ],
                    &rows
                )
            );
        }
        Some(BuildsCommand::ImportImage {
            file,
            manifest,
            description,
        }) => {
            if !file.is_file() {
                anyhow::bail!("cannot read {}: no such file", file.display());
            }
            let text = std::fs::read_to_string(&manifest).map_err(|e| {
                anyhow::anyhow!(
                    "cannot read the manifest {}: {e} (pass it with -m FILE)",
                    manifest.display()
                )
            })?;
            if !g.json {
                output::start(&format!("Importing {}", file.display()));
            }
            let (build, release) = client
                .build_import_image(&app, &file, &text, description.as_deref())
                .await?;
            if g.json {
                return output::json(&serde_json::json!({ "build": build, "release": release }));
            }
            output::ok();
            println!("Build: {}", build.id);
            println!("Release: {}", release.id);
        }
        Some(BuildsCommand::Info { build }) => {
            let b = client.build(&app, &build).await?;
            if g.json {
                return output::json(&b);
            }
            let el = elapsed(&b);
            print!(
                "{}",
                output::info(&[
                    ("Id", b.id),
                    ("Status", b.status),
                    ("Release", b.release),
                    ("Description", b.description),
                    ("Started", output::ago(b.started)),
                    ("Elapsed", el),
                ])
            );
        }
    }
    Ok(())
}
