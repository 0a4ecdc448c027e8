//! `dray api get PATH`

use clap::Subcommand;

use super::Globals;
use crate::output;

#[derive(Debug, Subcommand)]
pub enum ApiCommand {
    /// GET a path and print the JSON reply.
    Get { path: String },
}

pub async fn run(g: &Globals, cmd: ApiCommand) -> anyhow::Result<()> {
    match cmd {
        ApiCommand::Get { path } => output::json(&g.client()?.get_json(&path).await?),
    }
}
