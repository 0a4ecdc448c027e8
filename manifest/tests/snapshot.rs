//! Snapshot checks of `dray manifest` output (normalized YAML or JSON on stdout, diagnostics on
//! stderr) for a few manifests. The expected files were written by hand-checking the output; run
//! with `UPDATE_SNAPSHOTS=1` to rewrite them after an intended change, then review the diff.

mod common;
use common::env;
use std::path::Path;

fn snapshot(fixture: &str, vars: &[(&str, &str)], json: bool, require_env: bool, code: i32) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let text = std::fs::read_to_string(dir.join(format!("{fixture}.yml"))).unwrap();
    let out = dray_manifest::command("convox.yml", &text, &env(vars), json, require_env);
    assert_eq!(out.code, code, "{}", out.stderr);
    let ext = if json { "json" } else { "yml" };
    for (name, got) in [
        (format!("{fixture}.expected.{ext}"), &out.stdout),
        (format!("{fixture}.expected.stderr"), &out.stderr),
    ] {
        let path = dir.join(&name);
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&path, got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            *got == want,
            "{name} differs (UPDATE_SNAPSHOTS=1 rewrites it):\n--- want\n{want}\n--- got\n{got}"
        );
    }
}

#[test]
fn minimal_yaml() {
    snapshot(
        "minimal",
        &[("HOST", "app.example.org"), ("SECRET_KEY", "s3cret")],
        false,
        true,
        0,
    );
}

#[test]
fn minimal_json() {
    snapshot(
        "minimal",
        &[("HOST", "app.example.org"), ("SECRET_KEY", "s3cret")],
        true,
        true,
        0,
    );
}

#[test]
fn full_yaml() {
    snapshot(
        "full",
        &[("SECRET", "shh"), ("OTHERGLOBAL", "x"), ("BAR", "")],
        false,
        true,
        0,
    );
}

#[test]
fn cloud_yaml() {
    snapshot("cloud", &[], false, true, 0);
}

#[test]
fn edge_cases_yaml() {
    snapshot("edge", &[], false, false, 0);
}

#[test]
fn invalid_stderr() {
    snapshot("invalid", &[], false, true, 1);
}

#[test]
fn normalized_output_is_a_fixed_point() {
    for (fixture, vars) in [
        (
            "minimal",
            vec![("HOST", "app.example.org"), ("SECRET_KEY", "s")],
        ),
        (
            "full",
            vec![("SECRET", "shh"), ("OTHERGLOBAL", "x"), ("BAR", "")],
        ),
        ("cloud", vec![]),
    ] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let text = std::fs::read_to_string(dir.join(format!("{fixture}.yml"))).unwrap();
        let e = env(&vars);
        let once = dray_manifest::load("convox.yml", &text, &e)
            .unwrap()
            .manifest;
        let twice = dray_manifest::load("normalized.yml", &once.to_yaml(), &e)
            .unwrap()
            .manifest;
        assert_eq!(once.to_yaml(), twice.to_yaml(), "{fixture}");
        assert_eq!(once.to_json(), twice.to_json(), "{fixture}");
    }
}

#[test]
fn missing_file_is_exit_code_2() {
    let out = dray_manifest::command_file(
        Path::new("/nonexistent/convox.yml"),
        &env(&[]),
        false,
        false,
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .starts_with("error: cannot read /nonexistent/convox.yml: "),
        "{}",
        out.stderr
    );
}
