#!/usr/bin/env bash
# Deploy benchmarks, side by side in one run: a release-built drayd from this tree ("this") and
# one from a baseline commit ("base", default 69655cc: main before the planner rewrite), each on
# its own namespace, data dir, loopback port and host port range of one private containerd:
#   (a) promote -> first new process started: from the promote API call returning until the
#       first process of the new release is listed with a status past `pending` (polled every
#       ~10 ms), and until drayd's "container started" log line for it (JSON log timestamp);
#       web count 1, busybox httpd with `health.interval: 1`; median of RUNS promotes
#   (b) a 20-process rolling deploy (`health.interval: 1`, deployment 50/200): from the promote
#       call until the app is running the new release (committed), and until the old processes
#       are gone; median of DEPLOYS deploys
#   (c) an idle agent with 100 processes (httpd, health interval 5, no deploy running): CPU % of
#       one core used by drayd over IDLE_SECONDS (utime+stime from /proc/<pid>/stat), and store
#       reads/s when drayd exposes a store-read counter in GET /metrics ("n/a" when it has none)
# Not run by CI. Usage: bench/deploy.sh [BASE_COMMIT]   (or BASE=...; RUNS=5 DEPLOYS=3
#   IDLE_SECONDS=60; BASE_BIN=DIR reuses a baseline drayd + dray-logger already built there).
#   Needs root, containerd, runc, busybox-static, python3, curl, jq, git. Cleans up everything
#   it started on exit (containers, shims, mounts, the baseline's git worktree).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
BASE=${1:-${BASE:-69655cc}}
RUNS=${RUNS:-5}
DEPLOYS=${DEPLOYS:-3}
IDLE_SECONDS=${IDLE_SECONDS:-60}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dray/target}
for t in containerd containerd-shim-runc-v2 runc ctr python3 curl jq git; do
  command -v "$t" >/dev/null || { echo "missing $t (apt-get install -y containerd runc curl jq python3 git)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "needs root (containerd, runc, overlay mounts)" >&2; exit 1; }

DIR=$(mktemp -d /tmp/dray-deploy-bench-XXXXXX)
NS_PREFIX=dray-bench-$$
CTD='' SOCK='' DRAYD='' NS='' WT=''

cleanup() {
  set +e
  if [ -n "$DRAYD" ]; then kill "$DRAYD" 2>/dev/null; wait "$DRAYD" 2>/dev/null; fi
  if [ -n "$CTD" ]; then
    for ns in "$NS_PREFIX-this" "$NS_PREFIX-base"; do bench_clean_ns "$ns"; done
  fi
  bench_stop_containerd "$DIR"
  if [ -n "$WT" ]; then git worktree remove --force "$WT" >/dev/null 2>&1; git worktree prune; fi
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- binaries: this tree, and the baseline in a git worktree of its own under $DIR ---
# Cargo does not hash a workspace's path, so in the shared target dir every worktree's release
# build of dray-agent is the same artifact, and one may be taken as fresh for another's
# sources. So the builds go to a private target dir under $DIR, seeded with a copy of the shared
# release dir (the dependencies), with the workspace's own packages cleaned before each build.
SHARED_TARGET=$CARGO_TARGET_DIR
export CARGO_TARGET_DIR=$DIR/target
mkdir -p "$CARGO_TARGET_DIR" "$DIR/this" "$DIR/base"
if [ -d "$SHARED_TARGET/release" ]; then
  echo "seeding $CARGO_TARGET_DIR from $SHARED_TARGET/release..." >&2
  # (another worktree's build may be writing there: files that vanish meanwhile are rebuilt)
  cp -a "$SHARED_TARGET/release" "$CARGO_TARGET_DIR/release" 2>/dev/null || true
fi
# build_tree SRC OUT PACKAGES BINARIES: release-build BINARIES of the tree at SRC, copy them to OUT
build_tree() {
  local src=$1 out=$2 p b args=() clean=()
  for p in $3; do args+=(-p "$p"); done
  for b in $4; do args+=(--bin "$b"); done
  for p in $(cd "$src" && cargo metadata --no-deps --format-version 1 | jq -r '.packages[].name'); do clean+=(-p "$p"); done
  (cd "$src" && cargo clean -q --release "${clean[@]}" && cargo build --release -q "${args[@]}")
  for b in $4; do cp "$CARGO_TARGET_DIR/release/$b" "$out/"; done
}
echo "building this tree (release)..." >&2
build_tree "$PWD" "$DIR/this" "dray-agent dray-cli dray-logs" "drayd dray-logger dray"
mv "$DIR/this/dray" "$DIR/dray"
THIS_REV=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- agent sdk store runtime logs manifest plugins 2>/dev/null || echo "+dirty")
BASE_REV=$(git rev-parse --short "$BASE")
if [ -n "${BASE_BIN:-}" ]; then
  cp "$BASE_BIN/drayd" "$BASE_BIN/dray-logger" "$DIR/base/"
else
  echo "building $BASE_REV (release, worktree $DIR/src-base)..." >&2
  WT=$DIR/src-base
  git worktree add -q --detach "$WT" "$BASE"
  build_tree "$WT" "$DIR/base" "dray-agent dray-logs" "drayd dray-logger"
  git worktree remove --force "$WT"; WT=''
fi
rm -rf "$CARGO_TARGET_DIR"
DRAY=$DIR/dray

bench_containerd "$DIR"
IMAGE_TAR=$(python3 bench/busybox_oci.py "$DIR/image")
TOKEN=bench-$RANDOM$RANDOM$RANDOM

api() { # api METHOD PATH [curl args...]
  local m=$1 p=$2; shift 2
  curl -fsS -X "$m" -H "Authorization: Bearer $TOKEN" "$@" "$DRAY_HOST$p"
}
app_field() { api GET "/apps/$1" | jq -r ".$2"; }
# new_release APP N: a release forked from the newest one with X=N (an `env set`).
new_release() { api POST "/apps/$1/releases" --data-urlencode "env=X=$2" | jq -r .id; }
promote_api() { api POST "/apps/$1/releases/$2/promote" -d force=false >/dev/null; }
WAIT=${WAIT:-180}   # seconds any single wait may take before the bench gives up
# wait_active APP RELEASE: poll every 50 ms until the app runs RELEASE (fails on a rollback).
wait_active() {
  local st end=$(( $(now_ms) + WAIT * 1000 ))
  while :; do
    st=$(api GET "/apps/$1" | jq -r '.status + " " + .release')
    case $st in
      "running $2") return 0 ;;
      running*) echo "$1: $2 rolled back: $(app_field "$1" '."deploy-error"')" >&2; return 1 ;;
    esac
    [ "$(now_ms)" -lt "$end" ] || { echo "$1: $2 not active after ${WAIT}s ($st)" >&2; return 1; }
    sleep 0.05
  done
}
# wait_procs APP JQ-FILTER N: until exactly N processes are listed and all N match, every 50 ms.
wait_procs() {
  local n end=$(( $(now_ms) + WAIT * 1000 ))
  while :; do
    n=$(api GET "/apps/$1/processes" | jq "(map(select($2)) | length) as \$m | if \$m == length then \$m else -1 end" || echo -2)
    [ "$n" -eq "$3" ] && return 0
    [ "$(now_ms)" -lt "$end" ] || { echo "$1: not $3 processes matching $2 after ${WAIT}s ($n)" >&2; return 1; }
    sleep 0.05
  done
}
# delete_app APP: delete it and wait until the namespace runs no task any more.
delete_app() {
  local end=$(( $(now_ms) + WAIT * 1000 ))
  $DRAY apps delete "$1" >/dev/null
  while [ -n "$(ctr -a "$SOCK" -n "$NS" tasks ls -q 2>/dev/null)" ]; do
    [ "$(now_ms)" -lt "$end" ] || { echo "$1: tasks left ${WAIT}s after the delete" >&2; return 1; }
    sleep 0.1
  done
}
import() { # import APP MANIFEST-FILE -> release id
  $DRAY builds import-image "$IMAGE_TAR" -m "$2" -a "$1" | sed -n 's/^Release: //p'
}
# log_ms ISO-TIMESTAMP -> epoch ms
log_ms() { python3 -c 'import sys, datetime; print(int(datetime.datetime.fromisoformat(sys.argv[1].replace("Z", "+00:00")).timestamp() * 1000))' "$1"; }
store_reads() { # the sum of a store-read counter in /metrics, or nothing
  api GET /metrics 2>/dev/null | awk '/^dray_store_(reads|read_ops|gets|get)_total/ {s += $NF; n++} END {if (n) print s}'
}

web_manifest() { # web_manifest COUNT INTERVAL FILE
  cat >"$3" <<YML
services:
  web:
    command: sh -c 'mkdir -p /tmp/www && echo ok > /tmp/www/index.html && exec httpd -f -p \$PORT -h /tmp/www'
    port: 3000
    health:
      path: /index.html
      grace: 0
      interval: $2
      timeout: 1
    scale:
      count: $1
      memory: 16
    termination:
      grace: 1
YML
}
web_manifest 1 1 "$DIR/one.yml"
web_manifest 20 1 "$DIR/twenty.yml"
web_manifest 100 5 "$DIR/hundred.yml"

# run_side NAME PORT_BASE: every measurement against $DIR/NAME/drayd; results in $DIR/NAME.*
run_side() {
  local name=$1 pbase=$2 port r t0 t1 tret id i line ts
  NS=$NS_PREFIX-$name
  port=$(free_port)
  env -u DRAY_CONFIG -u DRAY_TOKEN -u DRAY_HOST "$DIR/$name/drayd" --data-dir "$DIR/$name/data" \
    --listen "127.0.0.1:$port" --token "$TOKEN" --containerd-socket "$SOCK" \
    --containerd-namespace "$NS" --port-range "$pbase-$((pbase + 499))" \
    --log-format json --log-level warn,dray_runtime::container=info \
    2>"$DIR/$name.log" &
  DRAYD=$!
  export DRAY_HOST=http://127.0.0.1:$port DRAY_TOKEN=$TOKEN DRAY_CONFIG=$DIR/cli-$name
  for _ in $(seq 200); do curl -fs "$DRAY_HOST/health" >/dev/null && break; sleep 0.05; done
  curl -fs "$DRAY_HOST/health" >/dev/null || { cat "$DIR/$name.log" >&2; exit 1; }

  # (a) promote -> first new process started
  echo "[$name] (a) $RUNS promotes of a 1-process web..." >&2
  $DRAY apps create bench >/dev/null
  r=$(import bench "$DIR/one.yml")
  $DRAY releases promote "$r" -a bench >/dev/null
  : >"$DIR/$name.a-poll"; : >"$DIR/$name.a-log"
  for i in $(seq "$RUNS"); do
    r=$(new_release bench "$i")
    promote_api bench "$r"; tret=$(now_ms)
    local end=$(( tret + WAIT * 1000 ))
    until id=$(api GET /apps/bench/processes | jq -er --arg r "$r" \
      'first(.[] | select(.release == $r and .status != "pending") | .id)'); do
      [ "$(now_ms)" -lt "$end" ] || { echo "bench: no process of $r started after ${WAIT}s" >&2; exit 1; }
      sleep 0.01
    done
    echo $(( $(now_ms) - tret )) >>"$DIR/$name.a-poll"
    # drayd's own timestamp of that container's start (container ids hold the process id)
    line=$(grep '"container started"' "$DIR/$name.log" | grep -F "$id" | head -n1 || true)
    if [ -n "$line" ]; then
      ts=$(echo "$line" | jq -r .timestamp)
      echo $(( $(log_ms "$ts") - tret )) >>"$DIR/$name.a-log"
    fi
    wait_active bench "$r"
    wait_procs bench ".release == \"$r\" and .status == \"running\"" 1
  done
  delete_app bench

  # (b) 20-process rolling deploys
  echo "[$name] (b) $DEPLOYS rolling deploys of 20 processes..." >&2
  $DRAY apps create roll >/dev/null
  r=$(import roll "$DIR/twenty.yml")
  $DRAY releases promote "$r" -a roll >/dev/null
  wait_procs roll ".release == \"$r\" and .status == \"running\"" 20
  : >"$DIR/$name.b-commit"; : >"$DIR/$name.b-settle"
  for i in $(seq "$DEPLOYS"); do
    r=$(new_release roll "$i")
    t0=$(now_ms); promote_api roll "$r"
    wait_active roll "$r"; t1=$(now_ms)
    wait_procs roll ".release == \"$r\" and .status == \"running\"" 20
    echo $(( t1 - t0 )) >>"$DIR/$name.b-commit"; echo $(( $(now_ms) - t0 )) >>"$DIR/$name.b-settle"
  done
  delete_app roll

  # (c) idle with 100 processes
  echo "[$name] (c) 100 processes, ${IDLE_SECONDS}s idle..." >&2
  $DRAY apps create idle >/dev/null
  r=$(import idle "$DIR/hundred.yml")
  $DRAY releases promote "$r" -a idle >/dev/null
  wait_procs idle ".release == \"$r\" and .status == \"running\"" 100
  sleep 5
  local c0 c1 s0 s1 w0 w1 hz
  hz=$(getconf CLK_TCK)
  c0=$(cpu_ticks "$DRAYD"); s0=$(store_reads); w0=$(now_ms)
  sleep "$IDLE_SECONDS"
  c1=$(cpu_ticks "$DRAYD"); s1=$(store_reads); w1=$(now_ms)
  awk -v a="$c0" -v b="$c1" -v hz="$hz" -v ms="$((w1 - w0))" \
    'BEGIN {printf "%.2f\n", 100 * (b - a) / hz / (ms / 1000)}' >"$DIR/$name.c-cpu"
  if [ -n "$s0" ] && [ -n "$s1" ]; then
    awk -v a="$s0" -v b="$s1" -v ms="$((w1 - w0))" 'BEGIN {printf "%.1f\n", (b - a) / (ms / 1000)}' >"$DIR/$name.c-reads"
  else
    echo "n/a" >"$DIR/$name.c-reads"
  fi
  api GET /metrics | awk '$1 !~ /^#/ {sub(/[{ ].*/, "", $1); print $1}' | sort -u >"$DIR/$name.metrics"
  RSS=$(awk '/^VmRSS/ {printf "%.1f", $2/1024}' "/proc/$DRAYD/status"); echo "$RSS" >"$DIR/$name.c-rss"

  kill "$DRAYD"; wait "$DRAYD" 2>/dev/null || true; DRAYD=''
  bench_clean_ns "$NS"
}

run_side base 45000
run_side this 45500

# --- the table ---
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0 || a == "n/a" || b == "n/a") print "-"; else printf "%.2fx", a / b }'; }
row() { printf "| %-72s | %14s | %14s | %9s |\n" "$@"; }
stat_row() { # stat_row LABEL SUFFIX UNIT
  local t b
  t=$(median <"$DIR/this.$2"); b=$(median <"$DIR/base.$2")
  row "$1" "$t $3" "$b $3" "$(ratio "$t" "$b")"
  row "    range (min-max)" "$(minmax <"$DIR/this.$2")" "$(minmax <"$DIR/base.$2")" ""
}
echo
echo "Deploys: this tree $THIS_REV vs base $BASE_REV, containerd $(containerd --version | awk '{print $3}'), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
row "measurement" "this" "base" "this/base"
row "---" "---" "---" "---"
stat_row "(a) promote returned -> first new process listed started, median of $RUNS" a-poll ms
stat_row "    promote returned -> its \"container started\" log line, median" a-log ms
stat_row "(b) 20-process rolling deploy, promote -> committed, median of $DEPLOYS" b-commit ms
stat_row "    the same, promote -> the 20 old processes gone" b-settle ms
row "(c) drayd CPU, idle with 100 processes, % of one core over ${IDLE_SECONDS}s" "$(cat "$DIR/this.c-cpu") %" "$(cat "$DIR/base.c-cpu") %" "$(ratio "$(cat "$DIR/this.c-cpu")" "$(cat "$DIR/base.c-cpu")")"
row "    store reads/s (a dray_store_*reads* counter in /metrics)" "$(cat "$DIR/this.c-reads")" "$(cat "$DIR/base.c-reads")" "$(ratio "$(cat "$DIR/this.c-reads")" "$(cat "$DIR/base.c-reads")")"
row "    drayd RSS with 100 processes" "$(cat "$DIR/this.c-rss") MB" "$(cat "$DIR/base.c-rss") MB" "$(ratio "$(cat "$DIR/this.c-rss")" "$(cat "$DIR/base.c-rss")")"
for s in this base; do
  if [ "$(cat "$DIR/$s.c-reads")" = "n/a" ]; then
    echo "store reads/s n/a for $s: its /metrics has no store-read counter (it has: $(tr '\n' ' ' <"$DIR/$s.metrics"))"
  fi
done
