#!/usr/bin/env python3
"""Write a minimal OCI image archive for the process benchmarks and print its path.

Usage: bench/busybox_oci.py DIR [NAME]   (NAME default docker.io/library/bench:latest)

One uncompressed layer: Debian's busybox-static as /bin/busybox, applet symlinks, /etc/passwd,
/tmp; an OCI image layout tar (oci-layout, index.json, blobs/sha256/...) that
`ctr images import` and `dray builds import-image` accept. Same content as
dray_runtime::testing::busybox_image, without a Rust build.
"""
import hashlib
import io
import json
import os
import platform
import sys
import tarfile

APPLETS = ["sh", "true", "false", "sleep", "echo", "cat", "env", "ls", "id", "kill", "ps"]
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def add(t, name, data=b"", mode=0o644, kind=tarfile.REGTYPE, link=""):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime, ti.uname, ti.gname = kind, mode, 0, "root", "root"
    ti.linkname = link
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    t.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def layer():
    bb = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if os.path.isfile(p)), None)
    if bb is None:
        sys.exit("busybox is not installed: apt-get install -y busybox-static")
    with open(bb, "rb") as f:
        busybox = f.read()
    if b"ld-linux" in busybox[:4096]:
        sys.exit(f"{bb} is dynamically linked: apt-get install -y busybox-static")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for d, mode in [("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("proc", 0o555),
                        ("root", 0o700), ("run", 0o755), ("sys", 0o555), ("tmp", 0o1777)]:
            add(t, d + "/", mode=mode, kind=tarfile.DIRTYPE)
        add(t, "bin/busybox", busybox, 0o755)
        for a in APPLETS:
            add(t, "bin/" + a, mode=0o777, kind=tarfile.SYMTYPE, link="busybox")
        add(t, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n")
    return buf.getvalue()


def main():
    out_dir = sys.argv[1]
    name = sys.argv[2] if len(sys.argv) > 2 else "docker.io/library/bench:latest"
    os.makedirs(out_dir, exist_ok=True)
    lay = layer()
    config = json.dumps({
        "architecture": ARCH, "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [sha(lay)]},
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha(lay), "size": len(lay)}],
    }).encode()
    index = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": sha(manifest), "size": len(manifest),
                       "annotations": {"io.containerd.image.name": name,
                                       "org.opencontainers.image.ref.name": name}}],
    }).encode()
    path = os.path.join(out_dir, "bench.oci.tar")
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as t:
        add(t, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add(t, "index.json", index)
        add(t, "blobs/", mode=0o755, kind=tarfile.DIRTYPE)
        add(t, "blobs/sha256/", mode=0o755, kind=tarfile.DIRTYPE)
        for blob in (lay, config, manifest):
            add(t, "blobs/sha256/" + sha(blob)[7:], blob)
    print(path)


if __name__ == "__main__":
    main()
