#!/usr/bin/env bash
# One command from a fresh Debian 12 (as root) to a running single-node rack:
# installs what is missing, builds everything in release mode, installs `drayd` and `dray` into
# /usr/local/bin, starts drayd on the embedded store (data in /var/lib/dray, API on
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

ensure_packages "${DRAY_PACKAGES[@]}"
ensure_rust

log "building (release)"
cargo build --release --workspace --bins
install -m 0755 "$CARGO_TARGET_DIR/release/drayd" "$CARGO_TARGET_DIR/release/dray" "$BIN/"

if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  log "stopping the running drayd ($(cat "$PIDFILE"))"
  kill "$(cat "$PIDFILE")"
  for _ in $(seq 100); do kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break; sleep 0.1; done
fi

log "starting drayd on $LISTEN (data in $DATA_DIR, log in $LOG)"
mkdir -p "$(dirname "$LOG")"
nohup "$BIN/drayd" --data-dir "$DATA_DIR" --listen "$LISTEN" >>"$LOG" 2>&1 </dev/null &
echo $! >"$PIDFILE"
for _ in $(seq 100); do curl -fs "http://$LISTEN/health" >/dev/null && break; sleep 0.1; done
curl -fs "http://$LISTEN/health" >/dev/null || die "drayd did not start; see $LOG"

"$BIN/dray" login "http://$LISTEN" --token "$(cat "$DATA_DIR/token")"
"$BIN/dray" apps info hello >/dev/null 2>&1 || "$BIN/dray" apps create hello
"$BIN/dray" apps
cat <<MSG

Dray is running: API http://$LISTEN, token in $DATA_DIR/token, log in $LOG.
Try: dray apps info hello; dray env set GREETING=hi -a hello; dray releases -a hello
MSG
