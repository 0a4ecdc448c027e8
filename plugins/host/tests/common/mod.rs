//! Test support: builds the real plugins (and the deliberately bad ones
//! under `tests/bad/`) for `wasm32-wasip2`, once per test run, and hands
//! out their bytes. Never commits or caches `.wasm` outside the target dir.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root (`/work/main`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `<cargo target dir>/wasm-build`, derived from this test binary's path
/// (`<target>/debug/deps/<test>`), so the nested cargo never contends for
/// the lock of the outer build.
fn wasm_target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    target.join("wasm-build")
}

fn cargo_build(args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(wasm_target_dir())
        .args(args)
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "s")
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .status()
        .expect("running cargo");
    assert!(status.success(), "cargo build {args:?} failed");
}

fn build_all() -> PathBuf {
    cargo_build(&[
        "-p",
        "dray-plugin-postgres",
        "-p",
        "dray-plugin-redis",
        "-p",
        "dray-plugin-balancer",
        "-p",
        "dray-plugin-memcached",
    ]);
    cargo_build(&["--manifest-path", "plugins/host/tests/bad/Cargo.toml"]);
    wasm_target_dir().join("wasm32-wasip2/release")
}

/// The bytes of a built plugin: `postgres`, `redis`, `balancer`,
/// `memcached`, or a bad one: `chaos`, `v1`.
pub fn wasm(name: &str) -> Vec<u8> {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(build_all);
    let file = match name {
        "chaos" | "v1" => format!("dray_test_{name}.wasm"),
        other => format!("dray_plugin_{other}.wasm"),
    };
    std::fs::read(dir.join(&file)).unwrap_or_else(|e| panic!("reading {file}: {e}"))
}
