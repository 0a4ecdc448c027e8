//! `dray images`, `images import`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::Globals;
use crate::output;

#[derive(Debug, Args)]
pub struct ImagesArgs {
    #[command(subcommand)]
    command: Option<ImagesCommand>,
}

#[derive(Debug, Subcommand)]
enum ImagesCommand {
    /// Load an OCI image archive into the rack (as `buildah push IMAGE oci-archive:FILE` or
    /// `skopeo copy` write it); services refer to it with `image:`.
    Import {
        file: PathBuf,
        /// Name to give the image (default: the name recorded in the archive).
        #[arg(long)]
        name: Option<String>,
    },
}

pub async fn run(g: &Globals, args: ImagesArgs) -> anyhow::Result<()> {
    let client = g.client()?;
    match args.command {
        None => {
            let images = client.images().await?;
            if g.json {
                return output::json(&images);
            }
            let rows: Vec<Vec<String>> = images
                .into_iter()
                .map(|i| {
                    vec![
                        i.name,
                        i.digest.chars().take(19).collect(),
                        format!("{:.1} MB", i.size as f64 / 1e6),
                        i.created.map(output::ago).unwrap_or_default(),
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(&["NAME", "DIGEST", "SIZE", "CREATED"], &rows)
            );
        }
        Some(ImagesCommand::Import { file, name }) => {
            if !file.is_file() {
                anyhow::bail!("cannot read {}: no such file", file.display());
            }
            if !g.json {
                output::start(&format!("Importing {}", file.display()));
            }
            let images = client.images_import(&file, name.as_deref()).await?;
            if g.json {
                return output::json(&images);
            }
            output::ok();
            for i in images {
                println!("Image: {}", i.name);
            }
        }
    }
    Ok(())
}
