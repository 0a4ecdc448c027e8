#!/usr/bin/env bash
# Manual end-to-end check of the dray-logs binary:// logger against a real containerd (1.6+).
# Needs root, containerd + containerd-shim-runc-v2 + runc + ctr and busybox on PATH.
# Starts a PRIVATE containerd (own root/state/socket under a temp dir, CRI disabled), runs two
# containers whose stdout/stderr go through `dray-logger`, prints what the shim passed and what was
# written, then stops that containerd by its PID and removes the temp dir. It touches nothing else.
#
#   cargo build -p dray-logs --bin dray-logger && sudo logs/scripts/containerd-e2e.sh [path/to/dray-logger]
set -euo pipefail

LOGGER=${1:-${CARGO_TARGET_DIR:-target}/debug/dray-logger}
[ -x "$LOGGER" ] || { echo "logger binary not found: $LOGGER" >&2; exit 1; }
W=$(mktemp -d /tmp/dray-logs-e2e.XXXXXX)
CTD_PID=
cleanup() {
  if [ -n "$CTD_PID" ]; then kill "$CTD_PID" 2>/dev/null || true; wait "$CTD_PID" 2>/dev/null || true; fi
  umount "$W"/state/*/*/*/rootfs 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

cp "$LOGGER" "$W/dray-logger"
cat > "$W/config.toml" <<CFG
version = 2
root = "$W/root"
state = "$W/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$W/ctd.sock"
[ttrpc]
  address = "$W/ctd.ttrpc.sock"
CFG
mkdir -p "$W"/rootfs/{bin,proc,sys,dev,tmp}
cp "$(command -v busybox)" "$W/rootfs/bin/busybox"
for c in sh echo seq sleep; do ln -s busybox "$W/rootfs/bin/$c"; done

containerd --config "$W/config.toml" >"$W/containerd.log" 2>&1 &
CTD_PID=$!
for _ in $(seq 50); do [ -S "$W/ctd.sock" ] && break; sleep 0.1; done
C="ctr -a $W/ctd.sock -n dray-e2e"

# A wrapper that records argv, environment and descriptors, then execs the real logger.
cat > "$W/probe.sh" <<PROBE
#!/bin/sh
i=0; for a in "\$@"; do echo "argv[\$i]=<\$a>"; i=\$((i+1)); done > $W/probe.args
/usr/bin/env > $W/probe.env
ls -l /proc/\$\$/fd > $W/probe.fds
exec $W/dray-logger "\$@"
PROBE
chmod +x "$W/probe.sh"

echo "== 1. short container through the probe (rotation at 4 KiB, 3 files, unknown key 'flag')"
$C run --rm --env PATH=/bin \
  --log-uri "binary://$W/probe.sh?dray-logger=1&dir=%2F${W#/}%2Flogs%2Fmy%20app&max-size=4096&max-files=3&flag" \
  --rootfs "$W/rootfs" e2e1 /bin/sh -c 'echo hello-out; echo hello-err >&2; seq 1 300; printf "no newline at end"'
sleep 0.5
echo "-- argv (pairs, order varies):"; cat "$W/probe.args"
echo "-- environment (the shim sets only CONTAINER_ID and CONTAINER_NAMESPACE; sh adds PWD):"; cat "$W/probe.env"
echo "-- descriptors 3/4/5:"; grep -E ' [345] -> ' "$W/probe.fds"
echo "-- files:"; ls -l "$W/logs/my app"
echo "-- first and last records:"; head -3 "$W/logs/my app/current.log.2"; tail -3 "$W/logs/my app/current.log"

echo "== 2. long-running container: the logger lives until task delete"
$C run -d --env PATH=/bin --log-uri "binary://$W/dray-logger?dray-logger=1&dir=$W/logs/e2e2" \
  --rootfs "$W/rootfs" e2e2 /bin/sh -c 'trap "echo got-term; exit 3" TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done'
sleep 1
$C task kill e2e2; sleep 1
echo "-- after kill: logger still running? $(pgrep -f "$W/dray-logger" >/dev/null && echo yes || echo no)"
tail -2 "$W/logs/e2e2/current.log"
$C task delete e2e2 || true; sleep 0.5
echo "-- after delete: logger still running? $(pgrep -f "$W/dray-logger" >/dev/null && echo yes || echo no)"
$C container rm e2e2
