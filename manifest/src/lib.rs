//! # dray-manifest: convox.yml for Dray
//!
//! Loads a `convox.yml` exactly as Convox does (reference `convox.md` §3) and reports every problem
//! with file, line, column and a hint saying what to write instead:
//!
//! 1. `${VAR}` interpolation over the raw text, from the release env (unset → empty) ([`interpolate`]);
//! 2. YAML parsing into a positioned node tree (anchors, aliases, `<<` merges, declaration order,
//!    YAML 1.1 scalars like yaml.v2);
//! 3. decoding every key of §3 with its shorthand forms; unknown keys warn with "did you mean";
//! 4. defaults, including those that depend on which keys were written; timer schedule
//!    compatibility; env merge; label merge;
//! 5. the validation rules of §3.8 with Convox's messages, and the required-env check.
//!
//! ```
//! use std::collections::BTreeMap;
//! let text = "services:\n  web:\n    build: .\n    port: 3000\n    scale: 2\n";
//! let loaded = dray_manifest::load("convox.yml", text, &BTreeMap::new()).unwrap();
//! let web = loaded.manifest.service("web").unwrap();
//! assert_eq!(web.main_port(), Some(3000));
//! assert_eq!(web.count_range(), (2, 2));
//! ```
//!
//! This crate owns the meaning of convox.yml. It must never touch the network, run processes or
//! read files (except [`command_file`] for the CLI), and must never panic on any input.

#![warn(missing_docs)]

mod cli;
mod cron;
mod decode;
mod defaults;
mod diag;
mod env;
mod interpolate;
mod model;
mod names;
mod render;
mod validate;
mod yaml;

pub use cli::{command, command_file, CommandOutput};
pub use cron::{Cron, CronError};
pub use diag::{Diagnostic, Errors, Pos, Severity};
pub use env::MissingEnv;
pub use interpolate::interpolate;
pub use model::*;

use std::collections::BTreeMap;

/// A successfully loaded manifest and the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The normalized manifest.
    pub manifest: Manifest,
    /// Warnings (unknown keys, deprecated or ignored keys, …), in file order.
    pub warnings: Vec<Diagnostic>,
}

/// How strict [`load_with`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Declared variables (`- KEY`) missing from the env are errors (`required env: …`) when true,
    /// warnings when false. Convox fails the load (and so the build) on them; use `false` where the
    /// env at hand is not the release env (for example `dray manifest` on a laptop).
    pub require_env: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { require_env: true }
    }
}

/// Load a manifest: interpolate `${VAR}` from `env`, parse, apply defaults, merge env and labels,
/// validate. `file` is the name used in messages (for example `convox.yml`). Missing required env
/// is an error, as in a Convox build.
pub fn load(file: &str, text: &str, env: &BTreeMap<String, String>) -> Result<Loaded, Errors> {
    load_with(file, text, env, &LoadOptions::default())
}

/// [`load`] with options.
pub fn load_with(
    file: &str,
    text: &str,
    env: &BTreeMap<String, String>,
    opts: &LoadOptions,
) -> Result<Loaded, Errors> {
    let mut diags = diag::Diags::new(file);
    let (interpolated, map) = interpolate::interpolate_mapped(text, env);
    for (at, name) in &map.unset {
        diags.warn(
            map.orig_pos(*at),
            format!("${{{name}}} is not set, so it is replaced by an empty string"),
            Some(if name.contains(":-") {
                format!("convox.yml has no `${{VAR:-default}}` syntax; the whole `{name}` is looked up as a name. Set `{}` and write `${{{}}}`", name.split(":-").next().unwrap_or(name), name.split(":-").next().unwrap_or(name))
            } else {
                format!("set it with `dray env set {name}=…` (interpolation uses the app's env)")
            }),
        );
    }
    let Ok(root) = yaml::parse(&interpolated, &map, &mut diags) else {
        return Err(diags.into_errors());
    };
    let mut dec = decode::Dec::new(&mut diags);
    let mut manifest = decode::manifest(root.as_ref(), &mut dec);
    validate::validate(&manifest, &mut dec);
    check_env(&manifest, env, opts, &mut dec);
    manifest.positions = std::mem::take(&mut dec.positions);
    if manifest.services.is_empty() && !diags.has_errors() {
        diags.warn(
            Pos::START,
            "the manifest has no services",
            Some("add `services:` with at least one service, for example `web: {build: ., port: 3000}`".into()),
        );
    }
    if diags.has_errors() {
        return Err(diags.into_errors());
    }
    diags.sort();
    Ok(Loaded {
        manifest,
        warnings: diags.warnings,
    })
}

/// The required-env check (Convox's `validateEnv`), positioned at the first missing declaration.
fn check_env(
    m: &Manifest,
    env: &BTreeMap<String, String>,
    opts: &LoadOptions,
    dec: &mut decode::Dec,
) {
    for (name, s) in &m.services {
        let Err(missing) = m.service_env(name, env) else {
            continue;
        };
        let Some(first) = missing.keys.first() else {
            continue;
        };
        let pos = s
            .environment
            .iter()
            .position(|e| e == first)
            .and_then(|i| s.env_pos.get(i).copied())
            .unwrap_or_default();
        let sets: Vec<String> = missing.keys.iter().map(|k| format!("{k}=…")).collect();
        let hint = Some(format!(
            "set {} with `dray env set {}` before deploying, or give a default in convox.yml (`- {}=value`)",
            if missing.keys.len() == 1 { "it" } else { "them" },
            sets.join(" "),
            first
        ));
        if opts.require_env {
            dec.d.error(pos, missing.to_string(), hint);
        } else {
            dec.d.warn(pos, missing.to_string(), hint);
        }
    }
}
