//! `dray manifest` (being written)
use clap::Args;
use super::Globals;
#[derive(Debug, Args)]
pub struct ManifestArgs {}
pub fn run(_g: &Globals, _a: ManifestArgs) -> anyhow::Result<()> { anyhow::bail!("not yet") }
