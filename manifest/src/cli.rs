//! The body of `dray manifest [-f FILE] [--json]`: load a manifest and print the normalized result
//! (like `docker compose config`) or the diagnostics, with the exit code to use.
//!
//! The CLI crate parses flags and calls [`command`] (or [`command_file`], the only function of this
//! crate that touches the filesystem). This module must never print or exit by itself.

use crate::{load_with, LoadOptions};
use std::collections::BTreeMap;
use std::path::Path;

/// What to print and how to exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// For stdout: the normalized manifest (YAML or JSON), or with `--json` on failure a JSON
    /// object `{"errors": […], "warnings": […]}`.
    pub stdout: String,
    /// For stderr: warnings, and the errors on failure (one `file:line:col: …` line each, plus hints).
    pub stderr: String,
    /// 0 on success, 1 when the manifest has errors, 2 when the file cannot be read.
    pub code: i32,
}

/// Run `dray manifest` on `text`. `env` interpolates `${VAR}`; with `require_env`, declared
/// variables missing from `env` are errors (use it when `env` is a release env), otherwise warnings.
pub fn command(
    file: &str,
    text: &str,
    env: &BTreeMap<String, String>,
    json: bool,
    require_env: bool,
) -> CommandOutput {
    let opts = LoadOptions { require_env };
    let lines = |ds: &[crate::Diagnostic]| ds.iter().map(|d| format!("{d}\n")).collect::<String>();
    match load_with(file, text, env, &opts) {
        Ok(loaded) => CommandOutput {
            stdout: if json {
                format!("{}\n", loaded.manifest.to_json())
            } else {
                loaded.manifest.to_yaml()
            },
            stderr: lines(&loaded.warnings),
            code: 0,
        },
        Err(errs) => {
            let stdout = if json {
                format!(
                    "{}\n",
                    serde_json::to_string_pretty(&errs).unwrap_or_else(|_| "{}".into())
                )
            } else {
                String::new()
            };
            let mut stderr = lines(&errs.errors);
            stderr.push_str(&lines(&errs.warnings));
            CommandOutput {
                stdout,
                stderr,
                code: 1,
            }
        }
    }
}

/// [`command`] on a file (default name in messages: the path as given). A missing or unreadable
/// file gives exit code 2 and a message saying which file.
pub fn command_file(
    path: &Path,
    env: &BTreeMap<String, String>,
    json: bool,
    require_env: bool,
) -> CommandOutput {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => command(&name, &text, env, json, require_env),
        Err(e) => CommandOutput {
            stdout: String::new(),
            stderr: format!(
                "error: cannot read {name}: {e}\n  hint: run in the app directory or pass -f <path to convox.yml>\n"
            ),
            code: 2,
        },
    }
}
