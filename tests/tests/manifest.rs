//! `dray manifest` on real files: normalized output, JSON, and positioned errors.

use dray_tests::{bin, stdout_ok};
use std::process::Command;

fn dray_manifest(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(bin("dray"))
        .arg("manifest")
        .args(args)
        .current_dir(dir)
        .env_remove("DRAY_HOST")
        .output()
        .expect("dray runs")
}

#[test]
fn prints_the_normalized_manifest_with_defaults() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("convox.yml"),
        "services:\n  web:\n    build: .\n    port: 3000\n    domain: ${HOST}\n",
    )
    .unwrap();
    let mut cmd = Command::new(bin("dray"));
    cmd.args(["manifest"])
        .current_dir(dir.path())
        .env("HOST", "app.example.org");
    let out = stdout_ok(&cmd.output().unwrap());
    assert!(
        out.contains("    port:\n      port: 3000\n      scheme: http\n"),
        "{out}"
    );
    assert!(out.contains("      - app.example.org\n"), "{out}");
    assert!(
        out.contains("    scale:\n      count: 1\n      cpu: 250\n      memory: 512\n"),
        "{out}"
    );

    let out = dray_manifest(dir.path(), &["--json", "-e", "HOST=x.example"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["services"]["web"]["port"]["port"], 3000);
    assert_eq!(v["services"]["web"]["domain"][0], "x.example");
}

#[test]
fn the_example_app_manifest_is_valid() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello");
    stdout_ok(&dray_manifest(&example, &[]));
}

#[test]
fn errors_name_file_line_and_column_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yml"),
        "services:\n  web:\n    port: [1, 2]\n  Bad_Name:\n    image: x\n",
    )
    .unwrap();
    let out = dray_manifest(dir.path(), &["-f", "bad.yml"]);
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yml:3:"), "{err}");
    assert!(err.contains("bad.yml:4:"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    let out = dray_manifest(dir.path(), &["-f", "missing.yml"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.yml"));
}
