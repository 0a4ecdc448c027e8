//! OCI runtime spec generation (JSON, containerd's default spec shape) and the seccomp profile.
//!
//! Owns the security defaults of every container Dray runs: the 14 default capabilities,
//! `noNewPrivileges`, a seccomp profile, masked and read-only `/proc` paths, a deny-all device
//! cgroup, cgroup limits (CPU shares/quota, memory, pids) under `/<namespace>/<id>` (cgroupfs
//! paths; this host class runs cgroup v1), host networking with the host's `/etc/resolv.conf` and
//! `/etc/hosts` bind-mounted read-only.
//!
//! Must never: talk to containerd (pure functions of their inputs), or weaken a default unless
//! the caller asked for `privileged`.

use serde_json::{json, Value};

use crate::container::ContainerSpec;
use crate::image::ImageConfig;

/// The runtime-spec `Any` type URL containerd expects for container specs.
pub(crate) const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
/// The runtime-spec `Any` type URL for exec process specs.
pub(crate) const PROCESS_TYPE_URL: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/Process";

/// Default PATH when neither the image nor the caller sets one.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// containerd's (and Docker's) default capability set.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability up to CAP_CHECKPOINT_RESTORE, indexed by bit number (privileged containers).
const ALL_CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The effective capability mask (`CapEff` in /proc/self/status) of the default set.
pub fn default_capability_mask() -> u64 {
    // Bit numbers from linux/capability.h.
    [0u32, 1, 4, 3, 27, 13, 6, 7, 31, 8, 10, 18, 5, 29]
        .iter()
        .fold(0u64, |m, b| m | (1u64 << b))
}

/// Syscalls denied (EPERM) in non-privileged containers: kernel/module/clock/mount/namespace/
/// keyring/bpf/perf and similar host-affecting calls, as Docker's default profile denies them
/// for containers without CAP_SYS_ADMIN & co. Unknown names are ignored by runc.
const DENIED_SYSCALLS: &[&str] = &[
    "_sysctl",
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "query_module",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "sysfs",
    "syslog",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vhangup",
    "vm86",
    "vm86old",
];

/// The seccomp profile of non-privileged containers: default allow, with a deny list
/// ([`DENIED_SYSCALLS`] -> EPERM), `clone` with any namespace flag -> EPERM, and `clone3` ->
/// ENOSYS (its flags live in memory seccomp cannot inspect; libc falls back to `clone`).
pub fn default_seccomp() -> Value {
    let archs: Vec<&str> = if cfg!(target_arch = "aarch64") {
        vec!["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    } else {
        vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    };
    let mut syscalls = vec![
        json!({"names": DENIED_SYSCALLS, "action": "SCMP_ACT_ERRNO", "errnoRet": 1}),
        json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}),
    ];
    // CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET.
    for flag in [
        0x0002_0000u64,
        0x0200_0000,
        0x0400_0000,
        0x0800_0000,
        0x1000_0000,
        0x2000_0000,
        0x4000_0000,
    ] {
        syscalls.push(json!({
            "names": ["clone"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 1,
            "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}]
        }));
    }
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": archs,
        "syscalls": syscalls,
    })
}

/// A resolved process user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

impl User {
    pub(crate) fn to_json(&self) -> Value {
        let mut u = json!({"uid": self.uid, "gid": self.gid});
        if !self.additional_gids.is_empty() {
            u["additionalGids"] = json!(self.additional_gids);
        }
        u
    }
}

/// Parses `uid` / `uid:gid` when fully numeric (no passwd lookup needed).
pub(crate) fn numeric_user(user: &str) -> Option<User> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let uid = u.parse().ok()?;
    let gid = match g {
        Some(g) => g.parse().ok()?,
        None => return None,
    };
    Some(User {
        uid,
        gid,
        additional_gids: vec![],
    })
}

/// Resolves `user` (`name`, `uid`, `name:group`, `uid:gid`) against a container's
/// `/etc/passwd` and `/etc/group` contents (either may be empty).
pub(crate) fn resolve_user(user: &str, passwd: &str, group: &str) -> Result<User, String> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let pw: Vec<Vec<&str>> = passwd
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let gr: Vec<Vec<&str>> = group
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();
    let entry = pw
        .iter()
        .find(|f| f[0] == u || (u.parse::<u32>().is_ok() && f[2] == u));
    let (uid, name, mut gid) = match (u.parse::<u32>(), entry) {
        (_, Some(f)) => (
            f[2].parse::<u32>()
                .map_err(|_| format!("bad uid in /etc/passwd for {u}"))?,
            Some(f[0]),
            f[3].parse::<u32>().unwrap_or(0),
        ),
        (Ok(uid), None) => (uid, None, 0),
        (Err(_), None) => return Err(format!("user {u:?} not found in the image's /etc/passwd")),
    };
    if let Some(g) = g {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => gr
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| format!("group {g:?} not found in the image's /etc/group"))?,
        };
    }
    let mut additional_gids = Vec::new();
    if let (Some(name), None) = (name, g) {
        for f in &gr {
            if f.len() >= 4 && f[3].split(',').any(|m| m == name) {
                if let Ok(id) = f[2].parse::<u32>() {
                    if id != gid && !additional_gids.contains(&id) {
                        additional_gids.push(id);
                    }
                }
            }
        }
    }
    Ok(User {
        uid,
        gid,
        additional_gids,
    })
}

/// Merges image env with overrides (later wins, order kept) and adds a default PATH.
pub(crate) fn merge_env(image: &[(String, String)], extra: &[(String, String)]) -> Vec<String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in image.iter().chain(extra) {
        if let Some(e) = out.iter_mut().find(|(ek, _)| ek == k) {
            e.1 = v.clone();
        } else {
            out.push((k.clone(), v.clone()));
        }
    }
    if !out.iter().any(|(k, _)| k == "PATH") {
        out.insert(0, ("PATH".into(), DEFAULT_PATH.into()));
    }
    out.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The command line: an explicit entrypoint override, else the image's; then `args`, else the
/// image's CMD (Docker's `docker run IMAGE args...` semantics).
pub(crate) fn command(spec: &ContainerSpec, image: &ImageConfig) -> Vec<String> {
    let entrypoint = spec
        .entrypoint
        .clone()
        .unwrap_or_else(|| image.entrypoint.clone());
    let args = if spec.args.is_empty() && spec.entrypoint.is_none() {
        image.cmd.clone()
    } else {
        spec.args.clone()
    };
    entrypoint.into_iter().chain(args).collect()
}

/// The capability bounding set of this process (`CapBnd`), as a bit mask.
fn bounding_set() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX)
}

fn capabilities(privileged: bool) -> Value {
    let caps: Vec<&str> = if privileged {
        // Every capability the host grants (runc cannot give more than containerd's bounding
        // set, e.g. when Dray itself runs in a container). ALL_CAPABILITIES is in bit order.
        let bnd = bounding_set();
        ALL_CAPABILITIES
            .iter()
            .enumerate()
            .filter(|(bit, _)| bnd & (1u64 << bit) != 0)
            .map(|(_, c)| *c)
            .collect()
    } else {
        DEFAULT_CAPABILITIES.to_vec()
    };
    json!({"bounding": caps, "effective": caps, "permitted": caps})
}

/// The process part of a spec (shared by containers and execs). No `rlimits`: processes
/// inherit containerd's (the operator sets them on the containerd service, as with CRI);
/// raising RLIMIT_NOFILE above the shim's hard limit fails when runc lacks CAP_SYS_RESOURCE.
pub(crate) fn process(
    args: &[String],
    env: &[String],
    cwd: &str,
    user: &User,
    terminal: bool,
    privileged: bool,
) -> Value {
    json!({
        "terminal": terminal,
        "user": user.to_json(),
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": capabilities(privileged),
        "noNewPrivileges": !privileged,
    })
}

/// The full runtime spec for a container.
pub(crate) fn build(
    spec: &ContainerSpec,
    image: &ImageConfig,
    user: &User,
    namespace: &str,
) -> Value {
    let args = command(spec, image);
    let env = merge_env(&image.env, &spec.env);
    let cwd = spec
        .cwd
        .clone()
        .or_else(|| image.working_dir.clone())
        .unwrap_or_else(|| "/".to_string());
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", if spec.privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
    ];
    if spec.host_network {
        for f in ["/etc/resolv.conf", "/etc/hosts"] {
            if std::path::Path::new(f).exists() {
                mounts.push(json!({"destination": f, "type": "bind", "source": f, "options": ["rbind", "ro", "rprivate"]}));
            }
        }
    }
    for m in &spec.mounts {
        mounts.push(json!({
            "destination": m.destination,
            "type": "bind",
            "source": m.source,
            "options": ["rbind", if m.read_only { "ro" } else { "rw" }, "rprivate"],
        }));
    }
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "mount"}),
    ];
    if !spec.host_network {
        namespaces.push(json!({"type": "uts"}));
        namespaces.push(json!({"type": "network"}));
    }
    let mut resources = json!({
        "devices": [{"allow": spec.privileged, "access": "rwm"}],
    });
    if spec.cpu_millicores.is_some() || spec.cpu_limit_millicores.is_some() {
        let mut cpu = json!({});
        if let Some(m) = spec.cpu_millicores {
            cpu["shares"] = json!((m * 1024 / 1000).max(2));
        }
        if let Some(m) = spec.cpu_limit_millicores {
            cpu["period"] = json!(100_000u64);
            cpu["quota"] = json!((m * 100).max(1000) as i64);
        }
        resources["cpu"] = cpu;
    }
    if let Some(mb) = spec.memory_mb {
        resources["memory"] = json!({"limit": (mb as i64) * 1024 * 1024});
    }
    if let Some(p) = spec.pids_limit {
        resources["pids"] = json!({"limit": p});
    }
    let mut linux = json!({
        "resources": resources,
        "cgroupsPath": format!("/{namespace}/{}", spec.id),
        "namespaces": namespaces,
    });
    if !spec.privileged {
        linux["maskedPaths"] = json!([
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/sys/firmware",
            "/sys/devices/virtual/powercap",
            "/proc/scsi"
        ]);
        linux["readonlyPaths"] = json!([
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger"
        ]);
        linux["seccomp"] = default_seccomp();
    }
    let mut out = json!({
        "ociVersion": "1.0.2-dev",
        "process": process(&args, &env, &cwd, user, spec.tty, spec.privileged),
        "root": {"path": "rootfs", "readonly": false},
        "mounts": mounts,
        "linux": linux,
    });
    if !spec.host_network {
        let hostname: String = spec.id.chars().take(63).collect();
        out["hostname"] = json!(hostname);
    }
    if let Some(group) = &spec.shim_of {
        out["annotations"] = json!({ SHIM_GROUP_ANNOTATION: group });
    }
    out
}

/// The OCI annotation containerd 1.6's runc shim (`runtime/v2/runc/v2/manager` `groupLabels`)
/// reads to host a container in an existing shim: the shim's socket address is derived from the
/// group instead of the container id, so the group of a container started without it is its own
/// id.
pub const SHIM_GROUP_ANNOTATION: &str = "io.containerd.runc.v2.group";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_resolve() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n";
        let group = "root:x:0:\napp:x:1001:\nextra:x:2000:app,other\n";
        assert_eq!(
            resolve_user("app", passwd, group).unwrap(),
            User {
                uid: 1000,
                gid: 1001,
                additional_gids: vec![2000]
            }
        );
        assert_eq!(resolve_user("1000", passwd, group).unwrap().gid, 1001);
        assert_eq!(
            resolve_user("5:extra", passwd, group).unwrap(),
            User {
                uid: 5,
                gid: 2000,
                additional_gids: vec![]
            }
        );
        assert!(resolve_user("nobody", passwd, group).is_err());
        assert_eq!(
            numeric_user("1:2"),
            Some(User {
                uid: 1,
                gid: 2,
                additional_gids: vec![]
            })
        );
        assert_eq!(numeric_user("1"), None);
    }

    #[test]
    fn env_merges() {
        let img = vec![
            ("PATH".to_string(), "/bin".to_string()),
            ("A".to_string(), "1".to_string()),
        ];
        let extra = vec![
            ("A".to_string(), "2".to_string()),
            ("B".to_string(), "3".to_string()),
        ];
        assert_eq!(merge_env(&img, &extra), vec!["PATH=/bin", "A=2", "B=3"]);
        assert_eq!(merge_env(&[], &[])[0], format!("PATH={DEFAULT_PATH}"));
    }

    #[test]
    fn cap_mask_is_docker_default() {
        assert_eq!(default_capability_mask(), 0x00000000a80425fb);
    }
}
