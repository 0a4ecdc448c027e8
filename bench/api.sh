#!/usr/bin/env bash
# API benchmark: starts a release-built drayd on the embedded store (SQLite, fsync on every
# commit) in a temp dir on loopback, then drives it with wrk and prints requests/s and p50/p99
# latency for `GET /apps/{app}` (reads) and `POST /apps/{app}/releases` (an `env set`: writes,
# each one a new fsynced release), next to the targets of issue #2.
#
# Usage: bench/api.sh [DURATION_SECONDS]   (default 10; needs wrk: apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dray/target}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
cargo build --release -q -p dray-agent --bin drayd
DRAYD=$CARGO_TARGET_DIR/release/drayd

DIR=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TOKEN=bench-token-$RANDOM$RANDOM
# A containerd namespace of its own: on the default one ("dray") the bench agent would see the
# containers of a rack deployed by scripts/setup.sh as orphans (and that rack refuses it anyway).
NS=dray-bench-$$
"$DRAYD" --data-dir "$DIR/data" --listen "127.0.0.1:$PORT" --token "$TOKEN" --log-level warn \
  --containerd-namespace "$NS" 2>"$DIR/drayd.log" &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; ctr namespaces remove "$NS" >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.05; done
URL=http://127.0.0.1:$PORT
curl -fs -H "Authorization: Bearer $TOKEN" -d name=bench "$URL/apps" >/dev/null

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

R=$(run "GET /apps/{app}" -t2 -c32 -H "Authorization: Bearer $TOKEN" "$URL/apps/bench")
W=$(run "env set (POST release)" -t2 -c32 -s "$DIR/post.lua" "$URL")
RELEASES=$(curl -fs -H "Authorization: Bearer $TOKEN" "$URL/apps/bench/releases?limit=1000" | grep -c '"id"' || true)

echo
echo "drayd API on loopback, SQLite store with fsync on commit, $(nproc) cores, ${DURATION}s per row, wrk -t2 -c32"
printf "%-26s %12s %10s %10s   %s\n" "operation" "req/s" "p50 ms" "p99 ms" "target"
IFS='|' read -r n r p50 p99 <<<"$R"; printf "%-26s %12s %10s %10s   %s\n" "$n" "$r" "$p50" "$p99" ">= 10000 req/s, p99 <= 5 ms"
IFS='|' read -r n r p50 p99 <<<"$W"; printf "%-26s %12s %10s %10s   %s\n" "$n" "$r" "$p50" "$p99" ">= 500 releases/s"
echo "releases stored after the write run: $RELEASES"
