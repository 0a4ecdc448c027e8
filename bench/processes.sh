#!/usr/bin/env bash
# Process benchmarks, side by side in one run, on a private containerd (own socket, root, state
# and namespace in a temp dir) and a release-built drayd on loopback:
#   (a) `dray run web true` (attached, end to end) vs `ctr run --rm` of the same image and command
#   (b) create+start of one process inside the agent: the median of the `elapsed_ms` drayd logs
#       for each container it starts, over the runs of (a) (and the dray_container_start_seconds
#       histogram's mean beside it; each one-off joins the shim of the running `web` process),
#       and the raw dray-runtime create+start (`cargo bench -p dray-runtime --bench lifecycle`,
#       skipped with LIFECYCLE=0)
#   (c) `dray scale web --count 20` until all 20 run, and back to 1
#   (d) drayd RSS idle (no processes), with 1 and with 100 processes
# Usage: bench/processes.sh [RUNS]   (default 20; needs root, containerd, runc, busybox-static,
#        python3, curl, jq). Cleans up everything it started on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-20}
LIFECYCLE=${LIFECYCLE:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dray/target}
for t in containerd containerd-shim-runc-v2 runc ctr python3 curl jq; do
  command -v "$t" >/dev/null || { echo "missing $t (apt-get install -y containerd runc curl jq python3)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "needs root (containerd, runc, overlay mounts)" >&2; exit 1; }

echo "building (release)..." >&2
cargo build --release -q -p dray-agent -p dray-cli -p dray-logs --bin drayd --bin dray --bin dray-logger
if [ "$LIFECYCLE" = 1 ]; then cargo bench -q -p dray-runtime --bench lifecycle --no-run 2>/dev/null; fi
REL=$CARGO_TARGET_DIR/release
DRAY=$REL/dray

DIR=$(mktemp -d /tmp/dray-bench-XXXXXX)
NS=dray-bench-${DIR##*-}
SOCK=$DIR/ctd/c.sock
DRAYD='' CTD=''

cleanup() {
  set +e
  if [ -n "$DRAYD" ]; then kill "$DRAYD" 2>/dev/null; wait "$DRAYD" 2>/dev/null; fi
  if [ -n "$CTD" ]; then
    local ids c
    ids=$(ctr -a "$SOCK" -n "$NS" containers ls -q 2>/dev/null)
    for c in $ids; do ctr -a "$SOCK" -n "$NS" tasks kill -s SIGKILL "$c" >/dev/null 2>&1; done
    for c in $ids; do
      ctr -a "$SOCK" -n "$NS" tasks delete -f "$c" >/dev/null 2>&1
      ctr -a "$SOCK" -n "$NS" containers delete "$c" >/dev/null 2>&1
    done
    kill "$CTD" 2>/dev/null; wait "$CTD" 2>/dev/null
  fi
  # Stray shims of our private containerd (matched by its socket path), then anything left in
  # our namespace's cgroups (cgroup v1 controllers and v2), then the cgroups themselves.
  local p
  for p in /proc/[0-9]*; do
    if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q "containerd-shim.*$SOCK"; then
      kill -9 "${p#/proc/}" 2>/dev/null
    fi
  done
  local cg
  for cg in /sys/fs/cgroup/"$NS" /sys/fs/cgroup/*/"$NS"; do
    [ -d "$cg" ] || continue
    find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -9 2>/dev/null
    sleep 0.1
    find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  awk -v d="$DIR/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r |
    xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ms() { echo $(( ${EPOCHREALTIME/./} / 1000 )); }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
rss_mb() { awk '/^VmRSS/ {printf "%.1f", $2/1024}' "/proc/$DRAYD/status"; }
metric() { curl -fs -H "Authorization: Bearer $TOKEN" "$DRAY_HOST/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
count() { $DRAY ps -a bench --json | jq "[.[] | select($1)] | length"; }
wait_for() { # wait_for JQ-FILTER N: until exactly N processes match, polling every 50 ms
  until [ "$(count "$1")" -eq "$2" ]; do sleep 0.05; done
}

# --- a private containerd (config as in runtime/src/testing.rs) ---
mkdir -p "$DIR/ctd"
cat >"$DIR/ctd/config.toml" <<TOML
version = 2
root = "$DIR/ctd/root"
state = "$DIR/ctd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$SOCK"

[ttrpc]
  address = "$SOCK.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$DIR/ctd/opt"
TOML
containerd --config "$DIR/ctd/config.toml" >"$DIR/ctd/log" 2>&1 &
CTD=$!
for _ in $(seq 300); do ctr -a "$SOCK" version >/dev/null 2>&1 && break; sleep 0.1; done
ctr -a "$SOCK" version >/dev/null || { cat "$DIR/ctd/log" >&2; exit 1; }

# --- the image: busybox-static, OCI archive ---
IMAGE_TAR=$(python3 bench/busybox_oci.py "$DIR/image")

# --- drayd (DRAY_CONFIG is the CLI's config dir below, not drayd's config file) ---
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TOKEN=bench-$RANDOM$RANDOM$RANDOM
env -u DRAY_CONFIG -u DRAY_TOKEN -u DRAY_HOST "$REL/drayd" --data-dir "$DIR/data" \
  --listen "127.0.0.1:$PORT" --token "$TOKEN" --containerd-socket "$SOCK" \
  --containerd-namespace "$NS" --port-range 41000-41999 --log-format json --log-level warn,dray_runtime::container=info \
  2>"$DIR/drayd.log" &
DRAYD=$!
export DRAY_HOST=http://127.0.0.1:$PORT DRAY_TOKEN=$TOKEN DRAY_CONFIG=$DIR/cli
for _ in $(seq 200); do curl -fs "$DRAY_HOST/health" >/dev/null && break; sleep 0.05; done
curl -fs "$DRAY_HOST/health" >/dev/null || { cat "$DIR/drayd.log" >&2; exit 1; }
sleep 1
RSS_IDLE=$(rss_mb)

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
echo "importing and promoting..." >&2
$DRAY apps create bench >/dev/null
RELEASE=$($DRAY builds import-image "$IMAGE_TAR" -m "$DIR/convox.yml" -a bench | sed -n 's/^Release: //p')
$DRAY releases promote "$RELEASE" -a bench >/dev/null
wait_for '.status == "running"' 1
IMG=$($DRAY ps -a bench --json | jq -r '.[0].image')
ctr -a "$SOCK" -n "$NS" images ls -q | grep -qxF "$IMG" || { echo "image $IMG not in containerd" >&2; exit 1; }
sleep 1
RSS_1=$(rss_mb)

# --- (a) dray run vs ctr run --rm (alternating, after 2 warm-ups each) ---
echo "(a) $RUNS x dray run / ctr run --rm..." >&2
for i in 1 2; do
  $DRAY run -a bench web true >/dev/null
  ctr -a "$SOCK" -n "$NS" run --rm --net-host "$IMG" "bench-warm-$i" true >/dev/null
done
S0=$(metric dray_container_start_seconds_sum); C0=$(metric dray_container_start_seconds_count)
F0=$(metric 'dray_container_start_seconds_bucket{le="0.05"}')
L0=$(wc -l <"$DIR/drayd.log")
: >"$DIR/a-dray"; : >"$DIR/a-ctr"; : >"$DIR/a-ps"; : >"$DIR/a-ccreate"; : >"$DIR/a-tstart"; : >"$DIR/a-trm"; : >"$DIR/a-ctrv"
for i in $(seq "$RUNS"); do
  t0=$(now_ms); $DRAY run -a bench web true >/dev/null; echo $(( $(now_ms) - t0 )) >>"$DIR/a-dray"
  t0=$(now_ms); ctr -a "$SOCK" -n "$NS" run --rm --net-host "$IMG" "bench-ctr-$i" true >/dev/null
  echo $(( $(now_ms) - t0 )) >>"$DIR/a-ctr"
  t0=$(now_ms); $DRAY ps -a bench >/dev/null; echo $(( $(now_ms) - t0 )) >>"$DIR/a-ps"
  # the raw containerd steps, one ctr call each: container create (snapshot + metadata), task
  # create+start (shim, runc create, runc start), and teardown
  t0=$(now_ms); ctr -a "$SOCK" -n "$NS" containers create --net-host "$IMG" "bench-step-$i" true >/dev/null
  t1=$(now_ms); ctr -a "$SOCK" -n "$NS" tasks start -d "bench-step-$i" >/dev/null
  t2=$(now_ms); ctr -a "$SOCK" -n "$NS" tasks delete -f "bench-step-$i" >/dev/null 2>&1 || true
  ctr -a "$SOCK" -n "$NS" containers delete "bench-step-$i" >/dev/null
  t3=$(now_ms)
  echo $(( t1 - t0 )) >>"$DIR/a-ccreate"; echo $(( t2 - t1 )) >>"$DIR/a-tstart"; echo $(( t3 - t2 )) >>"$DIR/a-trm"
  t0=$(now_ms); ctr -a "$SOCK" -n "$NS" version >/dev/null; echo $(( $(now_ms) - t0 )) >>"$DIR/a-ctrv"
done
A_DRAY=$(median <"$DIR/a-dray"); A_CTR=$(median <"$DIR/a-ctr"); A_PS=$(median <"$DIR/a-ps")
A_CCREATE=$(median <"$DIR/a-ccreate"); A_TSTART=$(median <"$DIR/a-tstart"); A_TRM=$(median <"$DIR/a-trm")
A_CTRV=$(median <"$DIR/a-ctrv")

# --- (b) create+start inside the agent: histogram delta over the runs of (a) ---
S1=$(metric dray_container_start_seconds_sum); C1=$(metric dray_container_start_seconds_count)
F1=$(metric 'dray_container_start_seconds_bucket{le="0.05"}')
B_N=$(awk -v a="$C0" -v b="$C1" 'BEGIN {print b - a}')
B_MEAN=$(awk -v a="$S0" -v b="$S1" -v n="$B_N" 'BEGIN {printf "%.1f", 1000 * (b - a) / n}')
B_LE50=$(awk -v a="$F0" -v b="$F1" 'BEGIN {print b - a}')
# Each start's own latency, as drayd logs it ("container started", elapsed_ms), during (a) only.
tail -n +"$((L0 + 1))" "$DIR/drayd.log" |
  jq -r 'select(.message == "container started") | .elapsed_ms' 2>/dev/null >"$DIR/b-starts" || true
B_N_LOG=$(wc -l <"$DIR/b-starts")
[ "$B_N_LOG" -gt 0 ] || { echo "drayd logged no container starts during (a)" >&2; exit 1; }
B_MEDIAN=$(median <"$DIR/b-starts" | awk '{printf "%.1f", $1}')

# --- (c) scale 1 -> 20 until 20 run, then back to 1 ---
echo "(c) scale 20 and back..." >&2
t0=$(now_ms); $DRAY scale web --count 20 -a bench >/dev/null
wait_for '.status == "running"' 20
C_UP=$(( $(now_ms) - t0 ))
t0=$(now_ms); $DRAY scale web --count 1 -a bench >/dev/null
wait_for 'true' 1
C_DOWN=$(( $(now_ms) - t0 ))

# --- (d) 100 processes ---
echo "(d) scale 100..." >&2
t0=$(now_ms); $DRAY scale web --count 100 -a bench >/dev/null
wait_for '.status == "running"' 100
D_UP=$(( $(now_ms) - t0 ))
sleep 2
RSS_100=$(rss_mb)
t0=$(now_ms); $DRAY scale web --count 0 -a bench >/dev/null
wait_for 'true' 0
D_DOWN=$(( $(now_ms) - t0 ))

# --- (b') the raw runtime path, on its own private containerd ---
LC_MEDIAN=''
if [ "$LIFECYCLE" = 1 ]; then
  echo "(b) cargo bench -p dray-runtime --bench lifecycle..." >&2
  LC_OUT=$(DRAY_BENCH_N=$RUNS cargo bench -q -p dray-runtime --bench lifecycle 2>/dev/null)
  lc() { echo "$LC_OUT" | awk -v p="$1" 'index($0, p) == 1 {for (i = 1; i < NF; i++) if ($i == "median") print $(i+1)}'; }
  LC_MEDIAN=$(lc "dray-runtime create+start, binary:// logger")
  LC_OWN=$(lc "create+start, logger, own shim")
  LC_JOINED=$(lc "create+start, logger, joining a running shim")
  LC_FULL=$(lc "dray-runtime full lifecycle")
  LC_CTR=$(lc "ctr run --rm")
fi

# --- the table ---
verdict() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%s (%.2fx)", (a <= b ? "ok" : "OVER"), a / b }'; }
row() { printf "| %-62s | %10s | %-20s | %-18s |\n" "$@"; }
echo
echo "Processes: drayd $($REL/drayd --version | awk '{print $2}'), containerd $(containerd --version | awk '{print $3}'), $(nproc) cores, $RUNS runs per median, $(date -u +%Y-%m-%d)"
row "measurement" "dray" "peer / target" "ratio / verdict"
row "---" "---" "---" "---"
row "(a) dray run web true vs ctr run --rm --net-host, median" "$A_DRAY ms" "$A_CTR ms (ctr)" "$(verdict "$A_DRAY" "$A_CTR")"
row "    dray ps (CLI start + one API call), median" "$A_PS ms" "-" "-"
row "(b) create+start in drayd, median of $B_N_LOG runs of (a)" "$B_MEDIAN ms" "60 ms" "$(verdict "$B_MEDIAN" 60)"
row "    the same, dray_container_start_seconds mean of $B_N" "$B_MEAN ms" "-" "-"
row "    of those, <= 50 ms (histogram bucket)" "$B_LE50 / $B_N" "-" "-"
row "    ctr containers create (one ctr call), median" "-" "$A_CCREATE ms" "-"
row "    ctr tasks start -d (task create + start), median" "-" "$A_TSTART ms" "-"
row "    ctr tasks delete -f + containers delete, median" "-" "$A_TRM ms" "-"
row "    ctr version (ctr CLI start + one gRPC call), median" "-" "$A_CTRV ms" "-"
if [ -n "$LC_MEDIAN" ]; then
  row "    dray-runtime create+start, logger (lifecycle bench), median" "$LC_MEDIAN ms" "60 ms" "$(verdict "$LC_MEDIAN" 60)"
  row "    the same, own shim / joining a running shim, interleaved" "$LC_JOINED ms" "$LC_OWN ms (own)" "$(verdict "$LC_JOINED" "$LC_OWN")"
  row "    dray-runtime create+start+wait+remove, median" "$LC_FULL ms" "$LC_CTR ms (ctr)" "$(verdict "$LC_FULL" "$LC_CTR")"
fi
row "(c) scale 1 -> 20 until 20 running" "$C_UP ms" "5000 ms" "$(verdict "$C_UP" 5000)"
row "    scale 20 -> 1 until 1 left (1 s grace, sleep ignores TERM)" "$C_DOWN ms" "-" "-"
row "    scale 1 -> 100 until 100 running" "$D_UP ms" "-" "-"
row "    scale 100 -> 0 until none left" "$D_DOWN ms" "-" "-"
row "(d) drayd RSS, idle (no processes)" "$RSS_IDLE MB" "-" "-"
row "    drayd RSS, 1 process" "$RSS_1 MB" "-" "-"
row "    drayd RSS, 100 processes" "$RSS_100 MB" "60 MB" "$(verdict "$RSS_100" 60)"
