//! Test harness (feature `testing`): a private containerd per test and a hand-built busybox
//! image, for this crate's tests and the workspace's end-to-end tests.
//!
//! Owns: starting `containerd` with a generated config (private root, state, socket, opt dir,
//! CRI disabled), a unique `dray-test-<random>` namespace, and tearing everything down on drop
//! (tasks killed, containerd stopped, stray shims and container processes killed, leftover
//! mounts under its directory unmounted, its cgroups removed, the directory deleted).
//!
//! Must never: touch the system containerd (`/run/containerd/containerd.sock`) or its state,
//! or skip silently: a missing containerd is a loud panic.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::Runtime;

/// Name of the image [`busybox_image`] builds.
pub const BUSYBOX_IMAGE: &str = "docker.io/library/dray-busybox:latest";
/// Name of the image [`busybox_docker_archive`] builds (as its RepoTags normalize).
pub const BUSYBOX_DOCKER_IMAGE: &str = "docker.io/library/dray-busybox-docker:latest";

/// busybox applets linked in the test image.
pub const APPLETS: &[&str] = &[
    "sh",
    "ash",
    "sleep",
    "echo",
    "cat",
    "true",
    "false",
    "env",
    "ls",
    "nc",
    "httpd",
    "wget",
    "id",
    "ps",
    "grep",
    "kill",
    "mkdir",
    "rm",
    "touch",
    "printf",
    "test",
    "head",
    "tail",
    "wc",
    "sed",
    "awk",
    "hostname",
    "ip",
    "ifconfig",
    "seq",
    "date",
    "uname",
    "whoami",
    "sort",
    "yes",
    "stat",
    "dd",
    "cut",
    "tr",
    "find",
    "xargs",
    "timeout",
    "top",
    "free",
    "pwd",
    "basename",
    "dirname",
    "cp",
    "mv",
    "ln",
    "chmod",
    "chown",
    "expr",
    "tee",
    "sync",
    "nproc",
    "netstat",
    "ping",
    "nslookup",
    "stty",
    "tty",
    "trap",
    "readlink",
    "realpath",
    "mount",
    "umount",
    "unshare",
    "nsenter",
    "od",
    "hexdump",
    "md5sum",
    "sha256sum",
    "vi",
    "less",
    "more",
    "which",
];

fn which(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

/// A private containerd daemon for one test (or one test binary).
pub struct TestContainerd {
    dir: Option<tempfile::TempDir>,
    child: Option<Child>,
    socket: PathBuf,
    namespace: String,
}

impl TestContainerd {
    /// Starts containerd in a fresh temp directory and waits until it answers.
    ///
    /// Panics (never skips) when containerd or runc is missing or when not running as root.
    pub async fn start() -> TestContainerd {
        let containerd = which("containerd").unwrap_or_else(|| {
            panic!("containerd is not installed: apt-get install -y containerd runc")
        });
        if which("runc").is_none() || which("containerd-shim-runc-v2").is_none() {
            panic!("containerd is not installed: apt-get install -y containerd runc");
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            panic!("the containerd test harness needs root (containerd, runc and overlay mounts)");
        }
        let dir = tempfile::Builder::new()
            .prefix("dray-ctd-")
            .tempdir_in("/tmp")
            .expect("create temp dir for containerd");
        let d = dir.path();
        let socket = d.join("c.sock");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"#,
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = socket.display(),
            opt = d.join("opt").display(),
        );
        std::fs::write(d.join("config.toml"), config).expect("write containerd config");
        let log = std::fs::File::create(d.join("containerd.log")).expect("create containerd log");
        let child = Command::new(&containerd)
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", containerd.display()));
        let suffix: u32 = rand::rng().random();
        let mut tc = TestContainerd {
            dir: Some(dir),
            child: Some(child),
            socket,
            namespace: format!("dray-test-{suffix:08x}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = tc.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("containerd exited during startup ({status}):\n{}", tc.log());
                }
            }
            if tc.socket.exists() && Runtime::connect(&tc.socket, &tc.namespace).await.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                panic!("containerd did not answer within 30s:\n{}", tc.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tc
    }

    /// Restart the daemon (SIGTERM, wait, start again with the same config and state), as an
    /// operator's `systemctl restart containerd` would. Running tasks keep running: their shims
    /// outlive containerd.
    pub async fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on a pid we own.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let _ = child.wait();
        }
        let d = self.dir().to_path_buf();
        let containerd = which("containerd").expect("containerd is installed");
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(d.join("containerd.log"))
            .expect("open containerd log");
        let child = Command::new(&containerd)
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot restart {}: {e}", containerd.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Runtime::connect(&self.socket, &self.namespace)
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "containerd did not come back within 30s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The daemon's gRPC socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The test's containerd namespace (`dray-test-<random>`).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The daemon's private directory (root, state, socket, log, FIFOs).
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map(|d| d.path())
            .unwrap_or(Path::new("/nonexistent"))
    }

    /// A connected runtime (FIFOs under [`TestContainerd::dir`]).
    pub async fn runtime(&self) -> Runtime {
        Runtime::connect(&self.socket, &self.namespace)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", self.log()))
            .with_fifo_dir(self.dir().join("fifo"))
    }

    /// `ctr -a <socket> -n <namespace>`, ready for more arguments.
    pub fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("-a").arg(&self.socket).arg("-n").arg(&self.namespace);
        c
    }

    /// containerd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("containerd.log")).unwrap_or_default()
    }

    fn teardown(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        let (socket, ns) = (self.socket.clone(), self.namespace.clone());
        // 1. Remove every container through containerd, on a thread with its own runtime
        //    (Drop may run inside an async test).
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let _ = tokio::time::timeout(Duration::from_secs(20), async {
                    if let Ok(r) = Runtime::connect(&socket, &ns).await {
                        if let Ok(list) = r.list(&[]).await {
                            for c in list {
                                let _ = r.remove(&c.id).await;
                            }
                        }
                    }
                })
                .await;
            });
        })
        .join();
        // 2. Stop containerd.
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // 3. Stray shims of this daemon and processes in this namespace's cgroups.
        let sock = self.socket.to_string_lossy().to_string();
        if let Ok(procs) = std::fs::read_dir("/proc") {
            for p in procs.flatten() {
                let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                if cmdline.contains("containerd-shim") && cmdline.contains(&sock) {
                    // SAFETY: signalling a shim of our private daemon.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
        }
        let cgroup_dirs = cgroup_dirs(&self.namespace);
        for d in &cgroup_dirs {
            for procs in walk(d).iter().map(|c| c.join("cgroup.procs")) {
                for pid in std::fs::read_to_string(procs).unwrap_or_default().lines() {
                    if let Ok(pid) = pid.trim().parse::<i32>() {
                        // SAFETY: the process lives in this test namespace's cgroup.
                        unsafe {
                            libc::kill(pid, libc::SIGKILL);
                        }
                    }
                }
            }
        }
        // 4. Leftover mounts under the private directory (deepest first).
        let prefix = dir.path().to_string_lossy().to_string();
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(unescape_mount))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            if let Ok(c) = std::ffi::CString::new(m) {
                // SAFETY: valid NUL-terminated path.
                unsafe {
                    libc::umount2(c.as_ptr(), libc::MNT_DETACH);
                }
            }
        }
        // 5. This namespace's cgroups (children first; retry while processes die).
        for _ in 0..50 {
            let mut left = false;
            for d in &cgroup_dirs {
                let mut all = walk(d);
                all.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
                for c in all {
                    if std::fs::remove_dir(&c).is_err() && c.exists() {
                        left = true;
                    }
                }
            }
            if !left {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // 6. The directory itself (retried: a dying shim may still be deleting its bundle).
        let path = dir.keep();
        for attempt in 0..50 {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if attempt == 49 => {
                    eprintln!("TestContainerd: cannot remove {}: {e}", path.display())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(40)),
            }
        }
    }
}

fn unescape_mount(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// `/sys/fs/cgroup/<controller>/<ns>` (v1) and `/sys/fs/cgroup/<ns>` (v2) that exist.
fn cgroup_dirs(ns: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut out = vec![root.join(ns)];
    if let Ok(ctrls) = std::fs::read_dir(root) {
        for c in ctrls.flatten() {
            out.push(c.path().join(ns));
        }
    }
    out.into_iter().filter(|p| p.is_dir()).collect()
}

/// A directory and all its subdirectories.
fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = vec![d.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(rd) = std::fs::read_dir(&out[i]) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    out.push(e.path());
                }
            }
        }
        i += 1;
    }
    out
}

impl Drop for TestContainerd {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn tar_header(path: &str, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_path(path).expect("tar path");
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// The parent pid of host process `pid` (for a container's init: its shim), from
/// `/proc/PID/stat`; None when the process is gone.
pub fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so split after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    rest.split(' ').nth(1)?.parse().ok()
}

/// True when an ELF64 binary has a PT_INTERP program header (i.e. is dynamically linked). Also
/// used by the resource test images of `dray-tests`.
pub fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |o: usize| {
        elf.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize)
    };
    if elf.get(..4) != Some(b"\x7fELF".as_slice()) || elf.get(4) != Some(&2) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        elf.get(o..o + 4) == Some(&3u32.to_le_bytes()[..])
    })
}

/// The uncompressed busybox rootfs layer.
fn busybox_layer() -> Vec<u8> {
    let bb_path = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("busybox is not installed: apt-get install -y busybox-static"));
    let busybox = std::fs::read(bb_path).expect("read busybox");
    if has_interpreter(&busybox) {
        panic!(
            "{} is dynamically linked: apt-get install -y busybox-static",
            bb_path.display()
        );
    }
    let mut b = tar::Builder::new(Vec::new());
    for (d, mode) in [
        ("bin/", 0o755),
        ("dev/", 0o755),
        ("etc/", 0o755),
        ("home/", 0o755),
        ("proc/", 0o555),
        ("root/", 0o700),
        ("run/", 0o755),
        ("sys/", 0o555),
        ("tmp/", 0o1777),
        ("var/", 0o755),
        ("www/", 0o755),
    ] {
        let mut h = tar_header(d, tar::EntryType::Directory, mode, 0);
        h.set_cksum();
        b.append(&h, std::io::empty()).expect("tar dir");
    }
    let mut h = tar_header(
        "bin/busybox",
        tar::EntryType::Regular,
        0o755,
        busybox.len() as u64,
    );
    h.set_cksum();
    b.append(&h, busybox.as_slice()).expect("tar busybox");
    for a in APPLETS {
        let mut h = tar_header(&format!("bin/{a}"), tar::EntryType::Symlink, 0o777, 0);
        h.set_link_name("busybox").expect("link name");
        h.set_cksum();
        b.append(&h, std::io::empty()).expect("tar symlink");
    }
    for (name, content) in [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        ("www/index.html", "hello from dray-busybox\n"),
    ] {
        let mut h = tar_header(name, tar::EntryType::Regular, 0o644, content.len() as u64);
        h.set_cksum();
        b.append(&h, content.as_bytes()).expect("tar file");
    }
    b.into_inner().expect("finish layer tar")
}

fn image_config(diff_id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": crate::image::host_arch(),
        "os": "linux",
        "config": {
            "Env": ["PATH=/bin", "DRAY_IMAGE=busybox"],
            "Cmd": ["/bin/sh"],
            "WorkingDir": "/",
            "ExposedPorts": {"8080/tcp": {}},
            "Labels": {"org.example.test": "yes"}
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "dray testing::busybox_image"}]
    }))
    .expect("config json")
}

fn append_file(b: &mut tar::Builder<std::fs::File>, name: &str, data: &[u8]) {
    let mut h = tar_header(name, tar::EntryType::Regular, 0o644, data.len() as u64);
    h.set_cksum();
    b.append(&h, data).expect("write archive entry");
}

/// Builds an OCI image archive (OCI image layout tar, one gzip layer) with a static busybox and
/// applet symlinks, `/etc/passwd` (root, nobody), `/tmp`, named [`BUSYBOX_IMAGE`]
/// (`io.containerd.image.name` and `org.opencontainers.image.ref.name` annotations). Written
/// to `dir/dray-busybox.oci.tar` and deterministic (same bytes every time).
pub fn busybox_image(dir: &Path) -> PathBuf {
    let layer = busybox_layer();
    let diff_id = sha(&layer);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&layer).expect("gzip layer");
    let layer_gz = gz.finish().expect("gzip layer");
    let config = image_config(&diff_id);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(&layer_gz), "size": layer_gz.len()}]
    }))
    .expect("manifest json");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha(&manifest),
            "size": manifest.len(),
            "annotations": {
                "io.containerd.image.name": BUSYBOX_IMAGE,
                "org.opencontainers.image.ref.name": "latest"
            }
        }]
    }))
    .expect("index json");
    let path = dir.join("dray-busybox.oci.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&path).expect("create archive"));
    append_file(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    append_file(&mut b, "index.json", &index);
    for blob in [&layer_gz, &config, &manifest] {
        append_file(&mut b, &format!("blobs/sha256/{}", &sha(blob)[7..]), blob);
    }
    b.into_inner()
        .expect("finish archive")
        .sync_all()
        .expect("sync archive");
    path
}

/// The same busybox rootfs as a `docker save` archive (manifest.json, uncompressed
/// `<id>/layer.tar`), tagged `dray-busybox-docker:latest` ([`BUSYBOX_DOCKER_IMAGE`]).
pub fn busybox_docker_archive(dir: &Path) -> PathBuf {
    let layer = busybox_layer();
    let diff_id = sha(&layer);
    let config = image_config(&diff_id);
    let config_name = format!("{}.json", &sha(&config)[7..]);
    let layer_name = format!("{}/layer.tar", &diff_id[7..]);
    let manifest = serde_json::to_vec(&json!([{
        "Config": config_name,
        "RepoTags": ["dray-busybox-docker:latest"],
        "Layers": [layer_name]
    }]))
    .expect("manifest.json");
    let path = dir.join("dray-busybox.docker.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&path).expect("create archive"));
    append_file(&mut b, &config_name, &config);
    append_file(&mut b, &layer_name, &layer);
    append_file(&mut b, "manifest.json", &manifest);
    b.into_inner()
        .expect("finish archive")
        .sync_all()
        .expect("sync archive");
    path
}
