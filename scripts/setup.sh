#!/usr/bin/env bash
# One command from a fresh Debian 12 (as root) to a running single-node rack:
# installs what is missing, builds everything in release mode, installs `drayd` and `dray` into
# /usr/local/bin and the bundled plugins (postgres, redis, balancer) into /usr/local/lib/dray/plugins
# (where drayd finds them by default: ../lib/dray/plugins from its own directory), starts drayd on the embedded store (data in /var/lib/dray, API on
# 127.0.0.1:5443, log in /var/log/drayd.log), logs the CLI in and creates the example app.
# Safe to run again: it rebuilds and restarts the agent; data is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

DATA_DIR=${DRAY_DATA_DIR:-/var/lib/dray}
LISTEN=${DRAY_LISTEN:-127.0.0.1:5443}
LOG=${DRAY_LOG:-/var/log/drayd.log}
PIDFILE=${DRAY_PIDFILE:-/run/drayd.pid}
BIN=${DRAY_BIN:-/usr/local/bin}

ensure_packages "${DRAY_PACKAGES[@]}" buildah
ensure_rust

# containerd: use the running one, or start it (no systemd needed).
SOCK=${DRAY_CONTAINERD_SOCKET:-/run/containerd/containerd.sock}
if ! ctr -a "$SOCK" version >/dev/null 2>&1; then
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    log "starting containerd (systemd)"
    systemctl enable --now containerd
  else
    log "starting containerd (log in /var/log/containerd.log)"
    nohup containerd >>/var/log/containerd.log 2>&1 </dev/null &
  fi
  for _ in $(seq 100); do ctr -a "$SOCK" version >/dev/null 2>&1 && break; sleep 0.1; done
  ctr -a "$SOCK" version >/dev/null 2>&1 || die "containerd did not start; see /var/log/containerd.log"
fi

log "building (release)"
cargo build --release --workspace --bins
install -m 0755 "$CARGO_TARGET_DIR/release/drayd" "$CARGO_TARGET_DIR/release/dray" \
  "$CARGO_TARGET_DIR/release/dray-logger" "$BIN/"
log "building the bundled plugins (wasm32-wasip2) into $BIN/../lib/dray/plugins"
build_plugins "$BIN/../lib/dray/plugins"

if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  log "stopping the running drayd ($(cat "$PIDFILE"))"
  kill "$(cat "$PIDFILE")"
  for _ in $(seq 100); do kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break; sleep 0.1; done
fi

log "starting drayd on $LISTEN (data in $DATA_DIR, log in $LOG)"
mkdir -p "$(dirname "$LOG")"
nohup "$BIN/drayd" --data-dir "$DATA_DIR" --listen "$LISTEN" --containerd-socket "$SOCK" >>"$LOG" 2>&1 </dev/null &
echo $! >"$PIDFILE"
for _ in $(seq 100); do curl -fs "http://$LISTEN/health" >/dev/null && break; sleep 0.1; done
curl -fs "http://$LISTEN/health" >/dev/null || die "drayd did not start; see $LOG"

"$BIN/dray" login "http://$LISTEN" --token "$(cat "$DATA_DIR/token")"
"$BIN/dray" apps info hello >/dev/null 2>&1 || "$BIN/dray" apps create hello

# Deploy the example app: build its image with buildah (daemonless), import it, promote it.
log "building the example app's image with buildah"
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
cp /bin/busybox examples/hello/busybox
buildah --root "$BUILD/storage" --runroot "$BUILD/run" --storage-driver vfs \
  bud -q -t docker.io/dray/hello:latest examples/hello >/dev/null
buildah --root "$BUILD/storage" --runroot "$BUILD/run" --storage-driver vfs \
  push -q docker.io/dray/hello:latest "oci-archive:$BUILD/hello.tar:docker.io/dray/hello:latest"
rm -f examples/hello/busybox
RELEASE=$("$BIN/dray" builds import-image "$BUILD/hello.tar" -m examples/hello/convox.yml -a hello | sed -n 's/^Release: //p')
"$BIN/dray" releases promote "$RELEASE" -a hello
"$BIN/dray" ps -a hello
PORT=$("$BIN/dray" ps -a hello --json | sed -n 's/.*"\([0-9][0-9]*\)".*/\1/p' | head -1)
cat <<MSG

Dray is running: API http://$LISTEN, token in $DATA_DIR/token, log in $LOG.
The example app is deployed: curl http://127.0.0.1:$PORT/
Try: dray logs -a hello; dray env set GREETING=hi -a hello && dray releases promote -a hello
MSG
