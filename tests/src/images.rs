//! Resource images for the tests: `postgres`, `redis` and `memcached` built from Debian's
//! `postgresql`, `redis-server` and `memcached` packages installed on the build machine, never
//! downloaded.
//!
//! Each image is a rootfs assembled here: the server and client binaries, every shared library
//! they load (resolved with `ldd`, copied with their symlinks, plus the dynamic loader), a static
//! busybox (`busybox-static`) for `/bin/sh` and the applets of the entrypoint, util-linux'
//! `setpriv` to drop root, `/etc/passwd` and `/etc/group`, and a `docker-entrypoint.sh` that
//! implements the part of the official images' entrypoints the Dray plugins rely on:
//!
//! * postgres ([`POSTGRES_IMAGE`]): entrypoint `docker-entrypoint.sh`, command `postgres ...`;
//!   `POSTGRES_USER`, `POSTGRES_PASSWORD`, `POSTGRES_DB`, `PGDATA`, `PGPORT` (or `-p`),
//!   `POSTGRES_INITDB_ARGS`, `POSTGRES_HOST_AUTH_METHOD`, `/docker-entrypoint-initdb.d`. Started
//!   as root it creates and chowns `PGDATA`, then re-runs itself as `postgres` (uid
//!   [`POSTGRES_UID`]); an empty `PGDATA` is initialized (`initdb`, password auth over TCP, the
//!   user as superuser, the database created on a socket-only temporary server), a `PGDATA`
//!   with a `PG_VERSION` is left alone. `psql`, `pg_dump`, `pg_isready` & co. are on `PATH`.
//!   The server listens on every address (`listen_addresses = '*'`, as the official image).
//! * redis ([`REDIS_IMAGE`]): entrypoint `docker-entrypoint.sh`, command `redis-server ...`
//!   (any arguments, e.g. `--port`, `--requirepass`, `--appendonly yes`, `--dir /data`),
//!   workdir `/data`; started as root it chowns the workdir and re-runs itself as `redis` (uid
//!   [`REDIS_UID`]); protected mode is off unless asked for, as in the official image.
//!   `redis-cli` is on `PATH`.
//! * memcached ([`MEMCACHED_IMAGE`]): entrypoint `docker-entrypoint.sh`, command `memcached`
//!   (arguments starting with `-` get `memcached` in front, e.g. `IMAGE -p 11311 -m 64`),
//!   user `memcache` (uid [`MEMCACHED_UID`]) as the official image's `USER`; started as root
//!   anyway (e.g. `--user root`) it re-runs itself as `memcache`, so `memcached ...` never
//!   meets memcached's refusal to run as root without `-u`.
//!
//! The archives are OCI image layouts (one uncompressed layer), deterministic, built once per
//! process and hard-linked (or copied) into every caller's directory.
//!
//! Differences from the official images, deliberate: locale `C.UTF-8` (not `en_US.utf8`), and
//! TCP connections from 127.0.0.1 need the password too (the official image trusts them, which
//! with host networking would let any local process in).

use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::json;

/// The name [`postgres_image`] imports as.
pub const POSTGRES_IMAGE: &str = "docker.io/library/postgres:dray-test";
/// The name [`redis_image`] imports as.
pub const REDIS_IMAGE: &str = "docker.io/library/redis:dray-test";
/// uid (and gid) of `postgres` in the postgres image, as in the official image.
pub const POSTGRES_UID: u32 = 999;
/// uid (and gid) of `redis` in the redis image, as in the official image.
pub const REDIS_UID: u32 = 999;
/// The name [`memcached_image`] imports as.
pub const MEMCACHED_IMAGE: &str = "docker.io/library/memcached:dray-test";
/// uid (and gid) of `memcache` in the memcached image (its default `USER`), as in the official
/// image.
pub const MEMCACHED_UID: u32 = 11211;

/// What to run when the packages are missing.
pub const APT_INSTALL: &str = "apt-get install -y postgresql redis-server memcached busybox-static";

const PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Extra busybox applets, on top of `dray_runtime::testing::APPLETS`.
const EXTRA_APPLETS: &[&str] = &[
    "chgrp", "gunzip", "gzip", "zcat", "mktemp", "rmdir", "uniq", "du", "df", "install", "getopt",
    "usleep", "pidof", "killall", "tar", "env", "[", "[[",
];

const POSTGRES_ENTRYPOINT: &str = r#"#!/bin/sh
# docker-entrypoint.sh of Dray's test postgres image: the part of the official postgres image's
# entrypoint (github.com/docker-library/postgres) that Dray relies on, in POSIX sh (busybox).
set -eu

# `IMAGE -c key=value` means `IMAGE postgres -c key=value`.
if [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; then
    set -- postgres "$@"
fi
if [ $# -eq 0 ] || [ "$1" != postgres ]; then
    exec "$@"
fi
for arg; do
    case "$arg" in
        '-?'|--help|--describe-config|-V|--version) exec "$@" ;;
    esac
done

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

# As root: create and own the data and socket directories, then run again as postgres.
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
    chmod 00700 "$PGDATA"
    chown postgres:postgres /var/run/postgresql
    chmod 03775 /var/run/postgresql
    export HOME=/var/lib/postgresql
    exec @SETPRIV@ --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ -s "$PGDATA/PG_VERSION" ]; then
    echo
    echo 'PostgreSQL Database directory appears to contain a database; Skipping initialization'
    echo
    exec "$@"
fi

: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_PASSWORD:=}"
: "${POSTGRES_INITDB_ARGS:=}"
: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
    echo 'Error: Database is uninitialized and superuser password is not specified.' >&2
    echo '       Set POSTGRES_PASSWORD (or POSTGRES_HOST_AUTH_METHOD=trust).' >&2
    exit 1
fi
mkdir -p "$PGDATA"
chmod 00700 "$PGDATA"

pwfile=
if [ -n "$POSTGRES_PASSWORD" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
fi
# POSTGRES_INITDB_ARGS is a word list (unquoted), as in the official image; it comes last so
# it can override the auth methods.
initdb --username="$POSTGRES_USER" ${pwfile:+--pwfile="$pwfile"} \
    --auth-local=trust --auth-host="$POSTGRES_HOST_AUTH_METHOD" $POSTGRES_INITDB_ARGS
if [ -n "$pwfile" ]; then
    rm -f "$pwfile"
fi
printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >> "$PGDATA/pg_hba.conf"

# A temporary server on the unix socket only, to create the database and run init scripts.
port="${PGPORT:-5432}"
pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p $port" -w start
sql() {
    psql -v ON_ERROR_STOP=1 --no-password --no-psqlrc --username "$POSTGRES_USER" --port "$port" "$@"
}
if [ "$POSTGRES_DB" != postgres ]; then
    echo 'CREATE DATABASE :"db";' | sql --dbname postgres --set db="$POSTGRES_DB"
fi
for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
        *.sh)
            if [ -x "$f" ]; then
                echo "$0: running $f"
                "$f"
            else
                echo "$0: sourcing $f"
                . "$f"
            fi
            ;;
        *.sql) echo "$0: running $f"; sql --dbname "$POSTGRES_DB" -f "$f" ;;
        *.sql.gz) echo "$0: running $f"; gunzip -c "$f" | sql --dbname "$POSTGRES_DB" ;;
        *)
            if [ -e "$f" ]; then
                echo "$0: ignoring $f"
            fi
            ;;
    esac
done
pg_ctl -D "$PGDATA" -m fast -w stop

echo
echo 'PostgreSQL init process complete; ready for start up.'
echo
exec "$@"
"#;

const REDIS_ENTRYPOINT: &str = r#"#!/bin/sh
# docker-entrypoint.sh of Dray's test redis image: the official redis image's entrypoint
# (github.com/docker-library/redis) in POSIX sh (busybox).
set -eu

# `IMAGE --port 7000` or `IMAGE /etc/redis.conf` means `IMAGE redis-server ...`.
if [ $# -gt 0 ] && { [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; }; then
    set -- redis-server "$@"
fi
# As root: own the workdir (/data), then run again as redis.
if [ $# -gt 0 ] && [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
    find . \! -user redis -exec chown redis '{}' +
    export HOME=/data
    exec @SETPRIV@ --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
# As the official image (which changes the compiled-in default): protected mode off, unless
# the arguments (or a config file, which must come first) say otherwise.
if [ $# -gt 0 ] && [ "$1" = redis-server ] && { [ $# -eq 1 ] || [ "${2#-}" != "$2" ]; }; then
    shift
    set -- redis-server --protected-mode no "$@"
fi
um="$(umask)"
if [ "$um" = 0022 ]; then
    umask 0077
fi
exec "$@"
"#;

const MEMCACHED_ENTRYPOINT: &str = r#"#!/bin/sh
# docker-entrypoint.sh of Dray's test memcached image: the official memcached image's entrypoint
# (github.com/docker-library/memcached) in POSIX sh (busybox), which also drops root.
set -eu

# `IMAGE -p 11311 -m 64` means `IMAGE memcached -p 11311 -m 64`.
if [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; then
    set -- memcached "$@"
fi
# The image's USER is memcache; started as root anyway, run again as memcache (memcached
# refuses to run as root without `-u`).
if [ $# -gt 0 ] && [ "$1" = memcached ] && [ "$(id -u)" = 0 ]; then
    export HOME=/home/memcache
    exec @SETPRIV@ --reuid=memcache --regid=memcache --init-groups "$0" "$@"
fi
exec "$@"
"#;

/// A file system tree to pack as a layer; keys are paths without the leading `/`.
#[derive(Default)]
struct Rootfs {
    nodes: BTreeMap<String, Node>,
    /// Where `setpriv` is in the image.
    setpriv: String,
}

enum Node {
    Dir { mode: u32, uid: u32 },
    File { src: PathBuf, mode: u32 },
    Data { data: Vec<u8>, mode: u32 },
    Symlink(String),
}

fn rel(path: &Path) -> String {
    path.to_string_lossy().trim_start_matches('/').to_string()
}

fn mode_of(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

/// `/a/b/../c` -> `/a/c`, lexically (only for paths whose prefix has no symlinks).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

impl Rootfs {
    /// Directories on the way to `path` (which must not be a symlink in the image).
    fn parents(&mut self, path: &str) {
        let mut at = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if !at.is_empty() {
                self.nodes.entry(at.clone()).or_insert(Node::Dir {
                    mode: 0o755,
                    uid: 0,
                });
                at.push('/');
            }
            at.push_str(part);
        }
    }

    fn dir(&mut self, path: &str, mode: u32, uid: u32) {
        self.parents(path);
        self.nodes.insert(path.to_string(), Node::Dir { mode, uid });
    }

    fn data(&mut self, path: &str, data: impl Into<Vec<u8>>, mode: u32) {
        self.parents(path);
        self.nodes.insert(
            path.to_string(),
            Node::Data {
                data: data.into(),
                mode,
            },
        );
    }

    fn symlink(&mut self, path: &str, target: &str) {
        self.parents(path);
        self.nodes
            .insert(path.to_string(), Node::Symlink(target.to_string()));
    }

    /// Resolves `path` on the host component by component, recording every symlink met on the
    /// way (so `/lib -> usr/lib` and `libfoo.so.1 -> libfoo.so.1.2.3` exist in the image too),
    /// and returns the canonical host path.
    fn resolve(&mut self, path: &Path, depth: u32) -> PathBuf {
        assert!(depth < 40, "too many symlinks resolving {}", path.display());
        let mut cur = PathBuf::from("/");
        let mut parts = normalize(path)
            .components()
            .skip(1)
            .map(|c| c.as_os_str().to_owned())
            .collect::<Vec<_>>()
            .into_iter();
        while let Some(part) = parts.next() {
            let next = cur.join(&part);
            let meta = std::fs::symlink_metadata(&next)
                .unwrap_or_else(|e| panic!("{}: {e}", next.display()));
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&next).expect("read symlink");
                self.symlink(&rel(&next), &target.to_string_lossy());
                let mut resolved = if target.is_absolute() {
                    target
                } else {
                    cur.join(target)
                };
                resolved.extend(parts.by_ref());
                return self.resolve(&resolved, depth + 1);
            }
            cur = next;
        }
        cur
    }

    /// Copies a host file or directory (not its contents) to the same path in the image.
    fn host(&mut self, path: &Path) -> PathBuf {
        let real = self.resolve(path, 0);
        let meta = std::fs::metadata(&real).unwrap_or_else(|e| panic!("{}: {e}", real.display()));
        let key = rel(&real);
        if key.is_empty() {
            return real;
        }
        self.parents(&key);
        let node = if meta.is_dir() {
            Node::Dir {
                mode: mode_of(&meta),
                uid: 0,
            }
        } else {
            Node::File {
                src: real.clone(),
                mode: mode_of(&meta),
            }
        };
        self.nodes.insert(key, node);
        real
    }

    /// Copies a host directory tree, leaving out paths for which `skip` is true.
    fn host_tree(&mut self, path: &Path, skip: &dyn Fn(&Path) -> bool) {
        let root = self.host(path);
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            let entries =
                std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            for entry in entries {
                let p = entry.expect("directory entry").path();
                if skip(&p) {
                    continue;
                }
                let meta = std::fs::symlink_metadata(&p).expect("stat");
                let key = rel(&p);
                if meta.file_type().is_symlink() {
                    let target = std::fs::read_link(&p).expect("read symlink");
                    self.nodes
                        .insert(key, Node::Symlink(target.to_string_lossy().into()));
                } else if meta.is_dir() {
                    self.nodes.insert(
                        key,
                        Node::Dir {
                            mode: mode_of(&meta),
                            uid: 0,
                        },
                    );
                    stack.push(p);
                } else if meta.is_file() {
                    self.nodes.insert(
                        key,
                        Node::File {
                            src: p,
                            mode: mode_of(&meta),
                        },
                    );
                }
            }
        }
    }

    /// Adds the shared libraries (and the dynamic loader) every ELF file in the image loads.
    fn libraries(&mut self) {
        let elves: Vec<PathBuf> = self
            .nodes
            .values()
            .filter_map(|n| match n {
                Node::File { src, .. } if is_dynamic_elf(src) => Some(src.clone()),
                _ => None,
            })
            .collect();
        let out = Command::new("ldd")
            .args(&elves)
            .stdin(Stdio::null())
            .output()
            .expect("run ldd (libc-bin)");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut libs = std::collections::BTreeSet::new();
        for line in text.lines() {
            let line = line.trim();
            if line.ends_with(':') {
                continue; // `<file>:` heads each file's list
            }
            if line.contains("not found") {
                panic!("ldd: a library is missing on this machine: {line}\n{text}");
            }
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.trim(),
                None => line,
            };
            let path = path.split(" (").next().unwrap_or("").trim();
            if path.starts_with('/') {
                libs.insert(PathBuf::from(path));
            }
        }
        assert!(
            !libs.is_empty(),
            "ldd found no libraries:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for lib in libs {
            self.host(&lib);
        }
    }

    /// A static busybox with applet symlinks next to it (never replacing a file already
    /// there), `setpriv` (util-linux), the basic directories and `/etc` files.
    fn base(&mut self, passwd: &str, group: &str) {
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .iter()
            .map(Path::new)
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("busybox is not installed: {APT_INSTALL}"));
        let elf = std::fs::read(busybox).expect("read busybox");
        assert!(
            !dray_runtime::testing::has_interpreter(&elf),
            "{} is dynamically linked: {APT_INSTALL}",
            busybox.display()
        );
        let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
            .iter()
            .map(Path::new)
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("setpriv is missing: apt-get install -y util-linux"));
        self.host(setpriv);
        self.setpriv = setpriv.display().to_string();
        let real = self.host(busybox);
        let bindir = rel(real.parent().expect("busybox has a directory"));
        for applet in dray_runtime::testing::APPLETS.iter().chain(EXTRA_APPLETS) {
            let key = format!("{bindir}/{applet}");
            self.nodes
                .entry(key)
                .or_insert_with(|| Node::Symlink("busybox".into()));
        }
        // /bin/sh, wherever busybox is.
        self.host(Path::new("/bin"));
        for (d, mode) in [
            ("dev", 0o755),
            ("proc", 0o555),
            ("sys", 0o555),
            ("root", 0o700),
            ("run", 0o755),
            ("tmp", 0o1777),
            ("usr/local/bin", 0o755),
            ("var/lib", 0o755),
        ] {
            self.dir(d, mode, 0);
        }
        self.symlink("var/run", "/run");
        self.data("etc/passwd", passwd, 0o644);
        self.data("etc/group", group, 0o644);
        self.data(
            "etc/nsswitch.conf",
            "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n",
            0o644,
        );
        if Path::new("/usr/share/zoneinfo/Etc/UTC").is_file() {
            self.host_tree(Path::new("/usr/share/zoneinfo"), &|p| {
                p.ends_with("right") || p.ends_with("posix")
            });
            self.symlink("etc/localtime", "/usr/share/zoneinfo/Etc/UTC");
        }
        for terminfo in ["/usr/share/terminfo", "/lib/terminfo"] {
            let p = Path::new(terminfo);
            if p.is_dir() {
                self.host_tree(p, &|_| false);
            }
        }
    }

    /// `docker-entrypoint.sh`, with `@SETPRIV@` replaced by the path of `setpriv`: busybox'
    /// sh prefers its own applets (busybox has a `setpriv` without `--reuid`) over `PATH`.
    fn entrypoint(&mut self, script: &str) {
        let script = script.replace("@SETPRIV@", &self.setpriv);
        self.data("usr/local/bin/docker-entrypoint.sh", script, 0o755);
        // Old official images had it at the root too.
        self.symlink("docker-entrypoint.sh", "usr/local/bin/docker-entrypoint.sh");
    }

    /// Writes the layer tar (entries sorted, mtime 0: the same bytes every time).
    fn write_layer(&self, path: &Path) {
        let file = std::fs::File::create(path).expect("create layer");
        let mut b = tar::Builder::new(BufWriter::with_capacity(1 << 20, file));
        let header = |kind: tar::EntryType, mode: u32, uid: u32, size: u64| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(uid as u64);
            h.set_gid(uid as u64);
            h.set_size(size);
            h.set_mtime(0);
            h
        };
        for (path, node) in &self.nodes {
            match node {
                Node::Dir { mode, uid } => {
                    let mut h = header(tar::EntryType::Directory, *mode, *uid, 0);
                    b.append_data(&mut h, format!("{path}/"), std::io::empty())
                        .expect("tar dir");
                }
                Node::File { src, mode } => {
                    let f = std::fs::File::open(src)
                        .unwrap_or_else(|e| panic!("{}: {e}", src.display()));
                    let len = f.metadata().expect("stat").len();
                    let mut h = header(tar::EntryType::Regular, *mode, 0, len);
                    b.append_data(&mut h, path, f.take(len)).expect("tar file");
                }
                Node::Data { data, mode } => {
                    let mut h = header(tar::EntryType::Regular, *mode, 0, data.len() as u64);
                    b.append_data(&mut h, path, data.as_slice())
                        .expect("tar data");
                }
                Node::Symlink(target) => {
                    let mut h = header(tar::EntryType::Symlink, 0o777, 0, 0);
                    b.append_link(&mut h, path, target).expect("tar symlink");
                }
            }
        }
        b.into_inner()
            .expect("finish layer")
            .into_inner()
            .map_err(|e| e.into_error())
            .expect("flush layer")
            .sync_all()
            .expect("sync layer");
    }
}

fn is_dynamic_elf(path: &Path) -> bool {
    let mut head = vec![0u8; 4096];
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let n = f.read(&mut head).unwrap_or(0);
    head.truncate(n);
    // ET_DYN (shared objects, PIE executables) or an interpreter (dynamic executables).
    head.starts_with(b"\x7fELF")
        && (head.get(16) == Some(&3) || dray_runtime::testing::has_interpreter(&head))
}

/// `sha256:<hex>` of a file, with coreutils' `sha256sum` (fast even in debug builds).
fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum");
    assert!(out.status.success(), "sha256sum {} failed", path.display());
    let text = String::from_utf8_lossy(&out.stdout);
    format!("sha256:{}", text.split_whitespace().next().unwrap_or(""))
}

fn sha256(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(data)
        .expect("write to sha256sum");
    let out = child.wait_with_output().expect("sha256sum");
    let text = String::from_utf8_lossy(&out.stdout);
    format!("sha256:{}", text.split_whitespace().next().unwrap_or(""))
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Whether a Debian package is installed.
fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn require_packages(packages: &[&str]) {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    assert!(
        missing.is_empty(),
        "Debian packages {missing:?} are not installed: {APT_INSTALL}"
    );
}

fn package_version(package: &str) -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The newest installed PostgreSQL major version (`/usr/lib/postgresql/<major>/bin/postgres`).
pub fn postgres_major() -> String {
    let versions = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join("bin/postgres").is_file())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    versions
        .into_iter()
        .max_by_key(|v| v.parse::<u32>().unwrap_or(0))
        .unwrap_or_else(|| panic!("postgresql is not installed: {APT_INSTALL}"))
}

/// Packs `rootfs` and `config` (the image config's `config` object) as an OCI image layout
/// tar at `path`, named `name`.
fn write_archive(rootfs: &Rootfs, config: serde_json::Value, name: &str, path: &Path) {
    let layer_path = path.with_extension("layer.tar");
    rootfs.write_layer(&layer_path);
    let layer_digest = sha256_file(&layer_path);
    let layer_size = std::fs::metadata(&layer_path).expect("stat layer").len();
    let config = serde_json::to_vec(&json!({
        "architecture": host_arch(),
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created_by": "dray-tests images.rs (Debian packages)"}]
    }))
    .expect("config json");
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}]
    }))
    .expect("manifest json");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256(&manifest),
            "size": manifest.len(),
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": name
            }
        }]
    }))
    .expect("index json");
    let tmp = path.with_extension("partial");
    let file = std::fs::File::create(&tmp).expect("create archive");
    let mut b = tar::Builder::new(BufWriter::with_capacity(1 << 20, file));
    let mut put = |name: &str, size: u64, data: &mut dyn Read| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(size);
        h.set_mtime(0);
        b.append_data(&mut h, name, data).expect("write archive");
    };
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    put("oci-layout", layout.len() as u64, &mut layout.as_slice());
    put("index.json", index.len() as u64, &mut index.as_slice());
    for blob in [&config, &manifest] {
        let name = format!("blobs/sha256/{}", &sha256(blob)[7..]);
        put(&name, blob.len() as u64, &mut blob.as_slice());
    }
    let mut layer = std::fs::File::open(&layer_path).expect("open layer");
    put(
        &format!("blobs/sha256/{}", &layer_digest[7..]),
        layer_size,
        &mut layer,
    );
    b.into_inner()
        .expect("finish archive")
        .into_inner()
        .map_err(|e| e.into_error())
        .expect("flush archive")
        .sync_all()
        .expect("sync archive");
    std::fs::remove_file(&layer_path).expect("remove layer");
    std::fs::rename(&tmp, path).expect("rename archive");
}

fn build_postgres(path: &Path) {
    require_packages(&["postgresql", "busybox-static"]);
    let major = postgres_major();
    let bin = format!("/usr/lib/postgresql/{major}/bin");
    let lib = format!("/usr/lib/postgresql/{major}/lib");
    let share = format!("/usr/share/postgresql/{major}");
    let mut fs = Rootfs::default();
    fs.base(
        &format!(
            "root:x:0:0:root:/root:/bin/sh\n\
             postgres:x:{POSTGRES_UID}:{POSTGRES_UID}:PostgreSQL administrator:/var/lib/postgresql:/bin/sh\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ),
        &format!("root:x:0:\npostgres:x:{POSTGRES_UID}:\nnogroup:x:65534:\n"),
    );
    fs.host_tree(Path::new(&bin), &|_| false);
    // Without LLVM (JIT is then simply unavailable): it would triple the image.
    fs.host_tree(Path::new(&lib), &|p| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        name.starts_with("llvmjit") || name == "bitcode"
    });
    fs.host_tree(Path::new(&share), &|p| p.ends_with("man"));
    // As the official image: listen on every address (`initdb` copies the sample).
    let sample_path = format!("{share}/postgresql.conf.sample");
    let sample = std::fs::read_to_string(&sample_path).expect("read postgresql.conf.sample");
    assert!(
        sample.contains("#listen_addresses = 'localhost'"),
        "{sample_path} has no listen_addresses line"
    );
    fs.data(
        &rel(Path::new(&sample_path)),
        sample.replacen(
            "#listen_addresses = 'localhost'",
            "listen_addresses = '*'",
            1,
        ),
        0o644,
    );
    // `initdb` imports the system collations with `locale -a`.
    if Path::new("/usr/bin/locale").is_file() {
        fs.host(Path::new("/usr/bin/locale"));
    }
    for locale in ["/usr/lib/locale/C.utf8", "/usr/lib/locale/C.UTF-8"] {
        if Path::new(locale).is_dir() {
            fs.host_tree(Path::new(locale), &|_| false);
        }
    }
    fs.libraries();
    fs.dir("var/lib/postgresql", 0o755, POSTGRES_UID);
    fs.dir("var/lib/postgresql/data", 0o1777, POSTGRES_UID);
    fs.dir("run/postgresql", 0o3775, POSTGRES_UID);
    fs.dir("docker-entrypoint-initdb.d", 0o755, 0);
    fs.entrypoint(POSTGRES_ENTRYPOINT);
    let config = json!({
        "Env": [
            format!("PATH={PATH_ENV}:{bin}"),
            "LANG=C.UTF-8",
            format!("PG_MAJOR={major}"),
            format!("PG_VERSION={}", package_version(&format!("postgresql-{major}"))),
            "PGDATA=/var/lib/postgresql/data"
        ],
        "Entrypoint": ["docker-entrypoint.sh"],
        "Cmd": ["postgres"],
        "ExposedPorts": {"5432/tcp": {}},
        "Volumes": {"/var/lib/postgresql/data": {}},
        "StopSignal": "SIGINT"
    });
    write_archive(&fs, config, POSTGRES_IMAGE, path);
}

fn build_redis(path: &Path) {
    require_packages(&["redis-server", "busybox-static"]);
    let mut fs = Rootfs::default();
    fs.base(
        &format!(
            "root:x:0:0:root:/root:/bin/sh\n\
             redis:x:{REDIS_UID}:{REDIS_UID}::/data:/bin/sh\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ),
        &format!("root:x:0:\nredis:x:{REDIS_UID}:\nnogroup:x:65534:\n"),
    );
    for bin in [
        "/usr/bin/redis-server",
        "/usr/bin/redis-cli",
        "/usr/bin/redis-check-aof",
        "/usr/bin/redis-check-rdb",
    ] {
        assert!(Path::new(bin).exists(), "{bin} is missing: {APT_INSTALL}");
        fs.host(Path::new(bin));
    }
    fs.libraries();
    fs.dir("data", 0o755, REDIS_UID);
    fs.entrypoint(REDIS_ENTRYPOINT);
    let config = json!({
        "Env": [
            format!("PATH={PATH_ENV}"),
            format!("REDIS_VERSION={}", package_version("redis-server")),
        ],
        "Entrypoint": ["docker-entrypoint.sh"],
        "Cmd": ["redis-server"],
        "WorkingDir": "/data",
        "ExposedPorts": {"6379/tcp": {}},
        "Volumes": {"/data": {}}
    });
    write_archive(&fs, config, REDIS_IMAGE, path);
}

fn build_memcached(path: &Path) {
    require_packages(&["memcached", "busybox-static"]);
    let mut fs = Rootfs::default();
    fs.base(
        &format!(
            "root:x:0:0:root:/root:/bin/sh\n\
             memcache:x:{MEMCACHED_UID}:{MEMCACHED_UID}::/home/memcache:/bin/sh\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ),
        &format!("root:x:0:\nmemcache:x:{MEMCACHED_UID}:\nnogroup:x:65534:\n"),
    );
    let bin = "/usr/bin/memcached";
    assert!(Path::new(bin).exists(), "{bin} is missing: {APT_INSTALL}");
    fs.host(Path::new(bin));
    fs.libraries();
    fs.dir("home/memcache", 0o755, MEMCACHED_UID);
    fs.entrypoint(MEMCACHED_ENTRYPOINT);
    let version = package_version("memcached");
    // `1.6.18-1+deb12u1` -> `1.6.18`, as the official image's MEMCACHED_VERSION.
    let upstream = version.split(['-', '+', '~']).next().unwrap_or(&version);
    let upstream = upstream.rsplit(':').next().unwrap_or(upstream);
    let config = json!({
        "Env": [
            format!("PATH={PATH_ENV}"),
            format!("MEMCACHED_VERSION={upstream}"),
        ],
        "Entrypoint": ["docker-entrypoint.sh"],
        "Cmd": ["memcached"],
        "User": "memcache",
        "ExposedPorts": {"11211/tcp": {}}
    });
    write_archive(&fs, config, MEMCACHED_IMAGE, path);
}

/// The archive built by this process for one image, reused by later calls.
fn cached(cache: &Mutex<Option<PathBuf>>, dir: &Path, file: &str, build: fn(&Path)) -> PathBuf {
    let mut cached = cache.lock().unwrap_or_else(|e| e.into_inner());
    let dest = dir.join(file);
    if let Some(src) = cached.as_ref() {
        if *src == dest && dest.is_file() {
            return dest;
        }
        let _ = std::fs::remove_file(&dest);
        if std::fs::hard_link(src, &dest).is_ok() || std::fs::copy(src, &dest).is_ok() {
            return dest;
        }
    }
    std::fs::create_dir_all(dir).expect("create image dir");
    let started = Instant::now();
    build(&dest);
    eprintln!(
        "built {} in {:.1} s ({} MB)",
        dest.display(),
        started.elapsed().as_secs_f64(),
        std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0) >> 20
    );
    *cached = Some(dest.clone());
    dest
}

/// Builds (once per process) the postgres image from Debian's `postgresql` package, as an OCI
/// archive in `dir`, and returns its path. It imports as [`POSTGRES_IMAGE`]. Panics with the
/// `apt-get` command when the packages are missing.
pub fn postgres_image(dir: &Path) -> PathBuf {
    static CACHE: Mutex<Option<PathBuf>> = Mutex::new(None);
    cached(&CACHE, dir, "dray-postgres.oci.tar", build_postgres)
}

/// Builds (once per process) the redis image from Debian's `redis-server` package, as an OCI
/// archive in `dir`, and returns its path. It imports as [`REDIS_IMAGE`]. Panics with the
/// `apt-get` command when the packages are missing.
pub fn redis_image(dir: &Path) -> PathBuf {
    static CACHE: Mutex<Option<PathBuf>> = Mutex::new(None);
    cached(&CACHE, dir, "dray-redis.oci.tar", build_redis)
}

/// Builds (once per process) the memcached image from Debian's `memcached` package, as an OCI
/// archive in `dir`, and returns its path. It imports as [`MEMCACHED_IMAGE`]. Panics with the
/// `apt-get` command when the packages are missing.
pub fn memcached_image(dir: &Path) -> PathBuf {
    static CACHE: Mutex<Option<PathBuf>> = Mutex::new(None);
    cached(&CACHE, dir, "dray-memcached.oci.tar", build_memcached)
}
