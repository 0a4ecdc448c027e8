//! Helpers shared by the manifest tests.
#![allow(dead_code)]

use dray_manifest::{load, load_with, Diagnostic, Errors, LoadOptions, Loaded, Manifest};
use std::collections::BTreeMap;

pub fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Load with an env; panic with the diagnostics when it fails.
pub fn ok_env(text: &str, e: &[(&str, &str)]) -> Loaded {
    match load("convox.yml", text, &env(e)) {
        Ok(l) => l,
        Err(errs) => panic!("expected {text:?} to load, got:\n{errs}"),
    }
}

pub fn ok(text: &str) -> Loaded {
    ok_env(text, &[])
}

pub fn manifest(text: &str) -> Manifest {
    ok(text).manifest
}

/// Load without requiring env; return the errors.
pub fn errs_env(text: &str, e: &[(&str, &str)]) -> Errors {
    match load("convox.yml", text, &env(e)) {
        Ok(l) => panic!(
            "expected {text:?} to fail, it loaded:\n{}",
            l.manifest.to_yaml()
        ),
        Err(errs) => errs,
    }
}

pub fn errs(text: &str) -> Errors {
    errs_env(text, &[])
}

/// `line:col: message` for each diagnostic.
pub fn short(ds: &[Diagnostic]) -> Vec<String> {
    ds.iter()
        .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
        .collect()
}

pub fn warnings(text: &str) -> Vec<String> {
    let l = load_with(
        "convox.yml",
        text,
        &BTreeMap::new(),
        &LoadOptions { require_env: false },
    )
    .unwrap_or_else(|e| panic!("expected {text:?} to load, got:\n{e}"));
    short(&l.warnings)
}
