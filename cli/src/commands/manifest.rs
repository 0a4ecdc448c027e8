//! `dray manifest` (being written)
use super::Globals;
use clap::Args;
#[derive(Debug, Args)]
pub struct ManifestArgs {}
pub fn run(_g: &Globals, _a: ManifestArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
