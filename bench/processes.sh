#!/usr/bin/env bash
# Process benchmarks, side by side in one run, on a private containerd (own socket, root and
# namespace in a temp dir) and a release-built drayd on loopback:
#   (a) `dray run web true` (attached, end to end) vs `ctr run --rm` of the same image and command
#   (b) create+start of one process inside the agent (drayd's dray_container_start_seconds)
#   (c) `dray scale web --count 20` until all 20 run
#   (d) drayd RSS idle and with 100 processes
# Usage: bench/processes.sh [RUNS]   (default 20; needs root, containerd, runc, busybox-static)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-20}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dray/target}
cargo build --release -q -p dray-agent -p dray-cli
REL=$CARGO_TARGET_DIR/release
DIR=$(mktemp -d /tmp/dray-bench-XXXXXX)
IMAGE_TAR=$(cargo run -q -p dray-tests --example busybox_image -- "$DIR/image")

cleanup() {
  [ -n "${DRAYD:-}" ] && kill "$DRAYD" 2>/dev/null && wait "$DRAYD" 2>/dev/null
  if [ -n "${CTD:-}" ]; then
    for c in $(ctr -a "$SOCK" -n "$NS" containers ls -q 2>/dev/null); do
      ctr -a "$SOCK" -n "$NS" tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true
    done
    sleep 1
    for c in $(ctr -a "$SOCK" -n "$NS" containers ls -q 2>/dev/null); do
      ctr -a "$SOCK" -n "$NS" tasks delete -f "$c" >/dev/null 2>&1 || true
      ctr -a "$SOCK" -n "$NS" containers delete "$c" >/dev/null 2>&1 || true
    done
    kill "$CTD" 2>/dev/null; wait "$CTD" 2>/dev/null || true
  fi
  mount | awk -v d="$DIR" 'index($3, d) == 1 {print $3}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

SOCK=$DIR/ctd/c.sock
NS=dray-bench
mkdir -p "$DIR/ctd"
cat >"$DIR/ctd/config.toml" <<TOML
version = 2
root = "$DIR/ctd/root"
state = "$DIR/ctd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$DIR/ctd/opt"
TOML
containerd --config "$DIR/ctd/config.toml" >"$DIR/ctd/log" 2>&1 &
CTD=$!
for _ in $(seq 100); do ctr -a "$SOCK" version >/dev/null 2>&1 && break; sleep 0.1; done

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TOKEN=bench-$RANDOM$RANDOM
"$REL/drayd" --data-dir "$DIR/data" --listen "127.0.0.1:$PORT" --token "$TOKEN" \
  --containerd-socket "$SOCK" --containerd-namespace "$NS" --port-range 41000-41999 \
  --log-level warn 2>"$DIR/drayd.log" &
DRAYD=$!
export DRAY_HOST=http://127.0.0.1:$PORT DRAY_TOKEN=$TOKEN DRAY_CONFIG=$DIR/cli
for _ in $(seq 100); do curl -fs "$DRAY_HOST/health" >/dev/null && break; sleep 0.05; done
DRAY=$REL/dray
now_ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
rss_mb() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$DRAYD/status"; }

cat >"$DIR/convox.yml" <<'YML'
services:
  web:
    command: sleep 100000
    scale:
      count: 1
      memory: 16
    termination:
      grace: 1
YML
$DRAY apps create bench -a bench >/dev/null
RELEASE=$($DRAY builds import-image "$IMAGE_TAR" -m "$DIR/convox.yml" -a bench | sed -n 's/^Release: //p')
$DRAY releases promote "$RELEASE" -a bench >/dev/null
IMG=$($DRAY ps -a bench --json | sed -n 's/.*"image": "\(.*\)".*/\1/p' | head -1)
RSS_IDLE=$(rss_mb)

# (a) dray run vs ctr run --rm
: >"$DIR/a-dray"; : >"$DIR/a-ctr"
for i in $(seq "$RUNS"); do
  t0=$(now_ms); $DRAY run -a bench web true >/dev/null; echo $(( $(now_ms) - t0 )) >>"$DIR/a-dray"
  t0=$(now_ms); ctr -a "$SOCK" -n "$NS" run --rm --net-host "$IMG" "bench-ctr-$i" true >/dev/null; echo $(( $(now_ms) - t0 )) >>"$DIR/a-ctr"
done
A_DRAY=$(median <"$DIR/a-dray"); A_CTR=$(median <"$DIR/a-ctr")

# (b) create+start inside the agent, from its own histogram (the sequential starts of (a))
METRICS=$(curl -fs -H "Authorization: Bearer $TOKEN" "$DRAY_HOST/metrics")
B_SUM=$(echo "$METRICS" | awk '/^dray_container_start_seconds_sum/ {print $2}')
B_CNT=$(echo "$METRICS" | awk '/^dray_container_start_seconds_count/ {print $2}')
B_MEAN=$(awk -v s="$B_SUM" -v c="$B_CNT" 'BEGIN {printf "%.1f", 1000*s/c}')

running() { $DRAY ps -a bench --json | grep -c '"status": "running"' || true; }
# (c) scale to 20
t0=$(now_ms); $DRAY scale web --count 20 -a bench >/dev/null
while [ "$(running)" -lt 20 ]; do sleep 0.05; done
C_MS=$(( $(now_ms) - t0 ))

# (d) 100 processes
$DRAY scale web --count 100 -a bench >/dev/null
t0=$(now_ms)
while [ "$(running)" -lt 100 ]; do sleep 0.2; done
D_MS=$(( $(now_ms) - t0 ))
sleep 2
RSS_100=$(rss_mb)
$DRAY scale web --count 0 -a bench >/dev/null

echo
echo "Processes on a private containerd $(containerd --version | awk '{print $3}'), $(nproc) cores, $RUNS runs per median, release builds"
printf "%-52s %12s %16s %s\n" "measurement" "dray" "peer / target" "verdict"
v() { awk -v a="$1" -v b="$2" 'BEGIN { if (a <= b) print "ok"; else print "over" }'; }
printf "%-52s %9s ms %13s ms %s (%.2fx)\n" "(a) dray run web true  vs  ctr run --rm, median" "$A_DRAY" "$A_CTR" "$(v "$A_DRAY" "$A_CTR")" "$(awk -v a="$A_DRAY" -v b="$A_CTR" 'BEGIN{print a/b}')"
printf "%-52s %9s ms %13s ms %s\n" "(b) create+start in the agent, mean of $B_CNT sequential" "$B_MEAN" "60" "$(v "$B_MEAN" 60)"
printf "%-52s %9s ms %13s ms %s\n" "(c) scale 1 -> 20 until all run" "$C_MS" "5000" "$(v "$C_MS" 5000)"
printf "%-52s %9s ms %16s %s\n" "    scale 20 -> 100 until all run" "$D_MS" "-" ""
printf "%-52s %9s MB %16s %s\n" "(d) drayd RSS, 1 process" "$RSS_IDLE" "-" ""
printf "%-52s %9s MB %13s MB %s\n" "    drayd RSS, 100 processes" "$RSS_100" "60" "$(v "$RSS_100" 60)"
