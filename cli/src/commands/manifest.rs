//! `dray manifest`: check a convox.yml and print it normalized (like `docker compose config`),
//! or its errors with `file:line:column` and a hint.
//!
//! `${VAR}` is interpolated from this shell's environment plus `--env K=V`; required variables
//! that are missing are reported as warnings (a release's env supplies them at deploy time)
//! unless `--require-env` is given.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;

use super::Globals;

#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// The manifest to check.
    #[arg(long, short = 'f', default_value = "convox.yml", value_name = "FILE")]
    file: PathBuf,
    /// Extra variables for `${VAR}` interpolation (repeatable).
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Treat missing required env (`- KEY` with no value) as errors.
    #[arg(long)]
    require_env: bool,
}

pub fn run(g: &Globals, args: ManifestArgs) -> anyhow::Result<()> {
    let mut env: BTreeMap<String, String> = std::env::vars().collect();
    for pair in &args.env {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| anyhow!("invalid --env {pair:?}: expected KEY=VALUE"))?;
        env.insert(k.to_string(), v.to_string());
    }
    let out = dray_manifest::command_file(&args.file, &env, g.json, args.require_env);
    print!("{}", out.stdout);
    eprint!("{}", out.stderr);
    let _ = std::io::stdout().flush();
    if out.code != 0 {
        std::process::exit(out.code);
    }
    Ok(())
}
