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
# images; postgresql, redis-server and memcached give the binaries of the resource test images (never
# downloaded images); wrk drives the benchmarks.
DRAY_PACKAGES=(ca-certificates curl pkg-config protobuf-compiler containerd runc busybox-static wrk postgresql redis-server memcached)

# build_plugins DIR: build the plugins installed by default (postgres, redis, balancer) as
# wasm32-wasip2 components, small (opt-level s, LTO, stripped), in their own target dir
# ($CARGO_TARGET_DIR/wasm, so the host build is never blocked), and copy the .wasm files into DIR.
# drayd installs (or upgrades) every .wasm of its plugins directory at start.
DRAY_BUNDLED_PLUGINS=(postgres redis balancer)
build_plugins() {
  local dest=$1 args=() p
  for p in "${DRAY_BUNDLED_PLUGINS[@]}"; do args+=(-p "dray-plugin-$p"); done
  CARGO_PROFILE_RELEASE_OPT_LEVEL=s CARGO_PROFILE_RELEASE_LTO=true \
  CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_STRIP=true \
    cargo build --release --target wasm32-wasip2 --target-dir "$CARGO_TARGET_DIR/wasm" "${args[@]}"
  mkdir -p "$dest"
  for p in "${DRAY_BUNDLED_PLUGINS[@]}"; do
    install -m 0644 "$CARGO_TARGET_DIR/wasm/wasm32-wasip2/release/dray_plugin_$p.wasm" "$dest/"
  done
}

# ensure_moto: a Python venv with moto's server mode (`moto[server]`, the stand-in for the AWS
# RDS/EC2 APIs that dray-cloud's tests run against) at $DRAY_MOTO_VENV, default
# ~/.cache/dray/moto-venv (the same default the test harness dray_cloud::testing uses).
# A venv because Debian's system python is PEP 668 managed (needs python3-venv).
ensure_moto() {
  local venv=${DRAY_MOTO_VENV:-$HOME/.cache/dray/moto-venv}
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import moto.server' 2>/dev/null; then
    return 0
  fi
  ensure_packages python3 python3-venv
  if [ ! -x "$venv/bin/pip" ]; then
    log "creating the moto venv at $venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv --clear "$venv" || die "python3 -m venv $venv failed (Debian: apt-get install python3-venv)"
  fi
  log "installing moto[server] into $venv"
  "$venv/bin/pip" install -q 'moto[server]>=5,<6' || die "pip install 'moto[server]' into $venv failed"
  "$venv/bin/python" -c 'import moto.server' || die "moto is still not importable from $venv"
}
