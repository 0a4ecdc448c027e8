#!/usr/bin/env bash
# Runs every check and test: formatting, clippy (all features, warnings are errors), then the
# unit, conformance and end-to-end suites against real components on private ports and dirs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_packages "${DRAY_PACKAGES[@]}"
ensure_rust

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings
log "cargo build (binaries used by the end-to-end tests)"
cargo build --workspace --bins --all-features
log "cargo test"
cargo test --workspace --all-features
