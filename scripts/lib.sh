# Shared shell helpers for the project's scripts (sourced, not run).

# The cargo target dir lives outside the clone so CI and later runs build incrementally.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dray/target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ensure_packages PKG...: apt-get install whatever is missing (apt-get update first, once).
ensure_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "missing packages ${missing[*]}: run as root or apt-get install them"
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_rust: cargo >= 1.95 must be on PATH (Debian's packaged rustc is too old).
ensure_rust() {
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
  command -v cargo >/dev/null || die "cargo is missing: install Rust 1.95 with rustup (https://rustup.rs), then run this again"
  local v; v=$(rustc --version | awk '{print $2}')
  local minor; minor=$(echo "$v" | cut -d. -f2)
  [ "$(echo "$v" | cut -d. -f1)" -ge 1 ] && [ "$minor" -ge 95 ] || die "rustc $v is too old: Dray needs 1.95 (rustup update)"
  if command -v rustup >/dev/null; then
    for c in rustfmt clippy; do
      rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c" >/dev/null 2>&1 || true
    done
    # Plugins are WebAssembly components built for wasm32-wasip2.
    rustup target list --installed 2>/dev/null | grep -q '^wasm32-wasip2$' || {
      log "adding the wasm32-wasip2 target"
      rustup target add wasm32-wasip2 >/dev/null
    }
  fi
}

# The system packages Dray builds and runs with.
# containerd + runc run the apps; protoc builds containerd-client; busybox-static makes the test
# images; wrk drives the benchmarks.
DRAY_PACKAGES=(ca-certificates curl pkg-config protobuf-compiler containerd runc busybox-static wrk)
