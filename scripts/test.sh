#!/usr/bin/env bash
# Runs every check and test: formatting, clippy (all features, warnings are errors), then the
# unit, conformance and end-to-end suites against real components on private ports and dirs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_packages "${DRAY_PACKAGES[@]}"
ensure_rust
# moto server mode stands in for the AWS APIs in dray-cloud's tests.
ensure_moto

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings
log "cargo build (binaries used by the end-to-end tests)"
cargo build --workspace --bins --all-features
log "cargo test"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
set +e
cargo test --workspace --all-features --no-fail-fast 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
set -e
# One closing line for the whole run (cargo prints one per test binary, the last often "0 passed").
passed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^passed/) s += $i } END { print s + 0 }' "$out")
failed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^failed/) s += $i } END { print s + 0 }' "$out")
echo
echo "tests: ${passed:-0} passed, ${failed:-0} failed"
exit "$rc"
