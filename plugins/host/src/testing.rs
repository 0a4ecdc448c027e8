//! Test support (feature `testing`): builds the real plugins and the deliberately bad ones under
//! `plugins/host/tests/bad/` for `wasm32-wasip2`, once per test binary, and hands out their
//! paths. Shared by this crate's tests and bench and by the end-to-end harness (`dray-tests`),
//! so they all use one build.
//!
//! Must never write outside `<cargo target dir>/wasm-build` (no `.wasm` in the source tree).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// `<cargo target dir>/wasm-build`, derived from the running test or bench binary's path
/// (`<target>/<profile>/deps/<binary>`). A separate target dir: the nested cargo never waits
/// for the lock of the outer build.
fn wasm_target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    exe.ancestors()
        .nth(3)
        .expect("test binary under <target>/<profile>/deps")
        .join("wasm-build")
}

fn cargo_wasm_build(args: &[&str]) {
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
        .expect("running cargo for the wasm plugins");
    assert!(
        status.success(),
        "cargo build {args:?} for wasm32-wasip2 failed (is the target installed? rustup target add wasm32-wasip2)"
    );
}

/// The path of a built plugin: `postgres`, `redis`, `balancer`, `memcached` (the example), or a
/// bad one: `chaos`, `v1` (built for contract 1.0.0). Builds them all on first use in this
/// binary (cargo's own lock serialises concurrent test binaries).
pub fn plugin_wasm(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        cargo_wasm_build(&[
            "-p",
            "dray-plugin-postgres",
            "-p",
            "dray-plugin-redis",
            "-p",
            "dray-plugin-balancer",
            "-p",
            "dray-plugin-memcached",
        ]);
        cargo_wasm_build(&["--manifest-path", "plugins/host/tests/bad/Cargo.toml"]);
        wasm_target_dir().join("wasm32-wasip2/release")
    });
    let file = match name {
        "chaos" | "v1" => format!("dray_test_{name}.wasm"),
        other => format!("dray_plugin_{other}.wasm"),
    };
    let path = dir.join(&file);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}
