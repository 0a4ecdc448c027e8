#!/usr/bin/env bash
# API benchmark: a release-built drayd on the embedded store (SQLite, fsync on every commit) in a
# temp dir on loopback, against a private containerd (own socket, root, state and namespace
# `dray-bench-XXXXXX`, all in the temp dir: never the machine's containerd or a rack of
# scripts/setup.sh), driven with wrk on the same cores. It prints requests/s and p50/p99 latency
# next to the targets for:
#   - `GET /apps/{app}` of an app with no release, and of a deployed app (benchmark (e),
#     issue 9): a promoted release whose manifest has a routable `web` service, so the reply's
#     router host comes from the release's manifest. The two alternate, ROUNDS times each, in
#     the same run; the ratio of their total req/s is the verdict (target: within 10 %).
#   - `POST /apps/{app}/releases` (an `env set`: writes, each one a new fsynced release).
#
# Usage: bench/api.sh [DURATION_SECONDS]   (default 10 s per row; ROUNDS=2)
#   DRAYD=/path/drayd DRAY=/path/dray bench/api.sh  benches those binaries (no build), e.g. an
#   older build for a before/after table.
# Needs root, containerd, runc, busybox-static, wrk, curl, jq, python3. Cleans up on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
ROUNDS=${ROUNDS:-2}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dray/target}
for t in wrk containerd containerd-shim-runc-v2 runc ctr python3 curl jq; do
  command -v "$t" >/dev/null || { echo "missing $t (apt-get install -y wrk containerd runc curl jq python3)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "needs root (containerd, runc, overlay mounts)" >&2; exit 1; }
if [ -z "${DRAYD:-}" ] || [ -z "${DRAY:-}" ]; then
  echo "building (release)..." >&2
  cargo build --release -q -p dray-agent -p dray-cli --bin drayd --bin dray
  DRAYD=$CARGO_TARGET_DIR/release/drayd DRAY_BIN=$CARGO_TARGET_DIR/release/dray
else
  DRAY_BIN=$DRAY
fi

DIR=$(mktemp -d /tmp/dray-bench-XXXXXX)
NS=dray-bench-${DIR##*-}
SOCK=$DIR/ctd/c.sock
PID='' CTD=''

cleanup() {
  set +e
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; fi
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
    if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q "containerd-shim.*$SOCK"; then
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

# --- a private containerd (config as in runtime/src/testing.rs; bench/lib.sh) ---
. bench/lib.sh
bench_containerd "$DIR" || exit 1

# --- drayd (DRAY_CONFIG is the CLI's config dir below, not drayd's config file) ---
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TOKEN=bench-token-$RANDOM$RANDOM
env -u DRAY_CONFIG -u DRAY_TOKEN -u DRAY_HOST "$DRAYD" --data-dir "$DIR/data" \
  --listen "127.0.0.1:$PORT" --token "$TOKEN" --containerd-socket "$SOCK" \
  --containerd-namespace "$NS" --port-range 42000-42999 --log-level warn 2>"$DIR/drayd.log" &
PID=$!
URL=http://127.0.0.1:$PORT
export DRAY_HOST=$URL DRAY_TOKEN=$TOKEN DRAY_CONFIG=$DIR/cli
for _ in $(seq 200); do curl -fs "$URL/health" >/dev/null && break; sleep 0.05; done
curl -fs "$URL/health" >/dev/null || { cat "$DIR/drayd.log" >&2; exit 1; }
api() { curl -fs -H "Authorization: Bearer $TOKEN" "$@"; }

# --- the apps: `bench` has no release; `deployed` runs a promoted release ---
api -d name=bench "$URL/apps" >/dev/null
IMAGE_TAR=$(python3 bench/busybox_oci.py "$DIR/image")
cat >"$DIR/convox.yml" <<'YML'
environment:
  - GREETING=hello
  - LOG_LEVEL
services:
  web:
    port: 3000
    command: sh -c 'echo ${GREETING} >/tmp/index.html && exec busybox httpd -f -p $PORT -h /tmp'
    health:
      path: /
      grace: 1
      timeout: 2
    environment:
      - WEB_CONCURRENCY=2
    scale:
      count: 1
      memory: 16
    termination:
      grace: 1
  worker:
    command: sleep 100000
    scale:
      count: 0
      memory: 16
YML
"$DRAY_BIN" apps create deployed >/dev/null
"$DRAY_BIN" env set LOG_LEVEL=info -a deployed >/dev/null
RELEASE=$("$DRAY_BIN" builds import-image "$IMAGE_TAR" -m "$DIR/convox.yml" -a deployed | sed -n 's/^Release: //p')
[ -n "$RELEASE" ] || { echo "import-image made no release" >&2; exit 1; }
"$DRAY_BIN" releases promote "$RELEASE" -a deployed >/dev/null
deadline=$((SECONDS + 120))
until [ "$(api "$URL/apps/deployed" | jq -r '.status + " " + .release')" = "running $RELEASE" ]; do
  [ "$SECONDS" -lt "$deadline" ] || { echo "deploy of $RELEASE did not finish in 120 s" >&2; api "$URL/apps/deployed" >&2; tail -20 "$DIR/drayd.log" >&2; exit 1; }
  sleep 0.2
done
ROUTER=$(api "$URL/apps/deployed" | jq -r .router)
[ "$ROUTER" = "web.deployed.localhost" ] || { echo "unexpected router host: $ROUTER" >&2; exit 1; }
[ "$(api "$URL/apps/bench" | jq -r .router)" = "" ] || { echo "bench has a router host" >&2; exit 1; }
BYTES_EMPTY=$(api "$URL/apps/bench" | wc -c)
BYTES_DEPLOYED=$(api "$URL/apps/deployed" | wc -c)

cat > "$DIR/post.lua" <<LUA
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", "/apps/bench/releases",
    { ["Authorization"] = "Bearer $TOKEN", ["Content-Type"] = "application/x-www-form-urlencoded" },
    "env=COUNTER%3D" .. n .. "%0AOTHER%3Dvalue")
end
LUA

# wrk --latency prints "50%  1.23ms" lines; convert to milliseconds.
ms() { awk -v p="$1" '$1==p {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; printf "%.2f", v}'; }
rps() { awk '/Requests\/sec/ {printf "%.0f", $2}'; }
errors() { awk '/Non-2xx|Socket errors/ {print}'; }

run() { # name, wrk args...
  local name=$1; shift
  local out; out=$(wrk --latency -d "${DURATION}s" "$@")
  local bad; bad=$(echo "$out" | errors)
  [ -z "$bad" ] || { echo "$name: errors during the run: $bad" >&2; }
  printf "%s|%s|%s|%s\n" "$name" "$(echo "$out" | rps)" "$(echo "$out" | ms 50%)" "$(echo "$out" | ms 99%)"
}

echo "reads: $ROUNDS rounds of ${DURATION}s per app..." >&2
READS=()
for r in $(seq "$ROUNDS"); do
  READS+=("$(run "GET /apps/{app}, no release (round $r)" -t2 -c32 -H "Authorization: Bearer $TOKEN" "$URL/apps/bench")")
  READS+=("$(run "GET /apps/{app}, deployed (round $r)" -t2 -c32 -H "Authorization: Bearer $TOKEN" "$URL/apps/deployed")")
done
echo "writes..." >&2
W=$(run "env set (POST release)" -t2 -c32 -s "$DIR/post.lua" "$URL")
RELEASES=$(api "$URL/apps/bench/releases?limit=1000" | grep -o '"id"' | wc -l || true)

row() { printf "%-40s %10s %9s %9s   %s\n" "$@"; }
echo
echo "drayd $("$DRAYD" --version | awk '{print $2}') API on loopback, SQLite store with fsync on commit, private containerd $(containerd --version | awk '{print $3}'), $(nproc) cores, ${DURATION}s per row, wrk -t2 -c32, $(date -u '+%Y-%m-%d %H:%M UTC')"
row "operation" "req/s" "p50 ms" "p99 ms" "target"
EMPTY=0 DEPLOYED=0
for line in "${READS[@]}"; do
  IFS='|' read -r n r p50 p99 <<<"$line"
  case "$n" in
    *"no release"*) EMPTY=$((EMPTY + r)); row "$n" "$r" "$p50" "$p99" ">= 10000 req/s, p99 <= 5 ms" ;;
    *) DEPLOYED=$((DEPLOYED + r)); row "$n" "$r" "$p50" "$p99" "within 10 % of no release" ;;
  esac
done
IFS='|' read -r n r p50 p99 <<<"$W"; row "$n" "$r" "$p50" "$p99" ">= 500 releases/s"
awk -v d="$DEPLOYED" -v e="$EMPTY" 'BEGIN { r = d / e; printf "deployed / no release, all rounds: %.3f (%s)\n", r, (r >= 0.9 ? "ok, within 10 %" : "OVER: more than 10 % slower") }'
echo "reply sizes: $BYTES_EMPTY bytes (no release), $BYTES_DEPLOYED bytes (deployed)"
echo "releases stored after the write run: $RELEASES"
