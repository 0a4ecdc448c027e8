# Helpers shared by bench scripts (sourced): a private containerd in a temp dir (own socket,
# root, state; the config of runtime/src/testing.rs and bench/processes.sh), cleanup of one
# namespace of it, timing and statistics. Nothing here touches the system containerd or a rack
# deployed by scripts/setup.sh: every call takes the private socket.

now_ms() { echo $(( ${EPOCHREALTIME/./} / 1000 )); }
median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "-"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
minmax() { sort -n | awk 'NR == 1 {lo=$1} {hi=$1} END {if (NR) print lo "-" hi; else print "-"}'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# bench_containerd DIR: start a private containerd under DIR/ctd; sets CTD (its pid) and SOCK.
bench_containerd() {
  local dir=$1
  SOCK=$dir/ctd/c.sock
  mkdir -p "$dir/ctd"
  cat >"$dir/ctd/config.toml" <<TOML
version = 2
root = "$dir/ctd/root"
state = "$dir/ctd/state"
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
  path = "$dir/ctd/opt"
TOML
  containerd --config "$dir/ctd/config.toml" >"$dir/ctd/log" 2>&1 &
  CTD=$!
  for _ in $(seq 300); do ctr -a "$SOCK" version >/dev/null 2>&1 && break; sleep 0.1; done
  ctr -a "$SOCK" version >/dev/null || { cat "$dir/ctd/log" >&2; return 1; }
}

# bench_clean_ns NS: kill and delete every container of namespace NS of the private containerd,
# then whatever is left in the namespace's cgroups.
bench_clean_ns() {
  local ns=$1 ids c cg
  ids=$(ctr -a "$SOCK" -n "$ns" containers ls -q 2>/dev/null)
  for c in $ids; do ctr -a "$SOCK" -n "$ns" tasks kill -s SIGKILL "$c" >/dev/null 2>&1; done
  for c in $ids; do
    ctr -a "$SOCK" -n "$ns" tasks delete -f "$c" >/dev/null 2>&1
    ctr -a "$SOCK" -n "$ns" containers delete "$c" >/dev/null 2>&1
  done
  for cg in /sys/fs/cgroup/"$ns" /sys/fs/cgroup/*/"$ns"; do
    [ -d "$cg" ] || continue
    find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -9 2>/dev/null
    sleep 0.1
    find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  return 0
}

# bench_stop_containerd DIR: stop the private containerd, its stray shims (matched by its
# socket path) and the mounts under DIR.
bench_stop_containerd() {
  local dir=$1 p
  if [ -n "${CTD:-}" ]; then kill "$CTD" 2>/dev/null; wait "$CTD" 2>/dev/null; CTD=''; fi
  for p in /proc/[0-9]*; do
    # (stderr first: a process that exits meanwhile takes its cmdline with it)
    if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q "containerd-shim.*$SOCK"; then
      kill -9 "${p#/proc/}" 2>/dev/null
    fi
  done
  awk -v d="$dir/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r |
    xargs -r -n1 umount -l 2>/dev/null
  return 0
}

# cpu_ticks PID: utime + stime of a process, in clock ticks (/proc/PID/stat fields 14 and 15;
# the command name in field 2 may hold spaces, so count from the closing parenthesis).
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
