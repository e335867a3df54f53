"""The embedded default bundle: a busybox rootfs built from Debian's busybox-static plus `ocirun spec`'s config.

Used by the demo, the tests and the benchmark, so that all of them run the same container.
"""
import os
import shutil

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")

# Applets linked into rootfs/bin (busybox-static has them all; these are what the demo, tests and engines use).
APPLETS = (
    "sh ash cat echo true false ls id hostname mount umount sleep ps readlink mkdir rmdir touch rm ln cp mv "
    "test [ env printf grep sed head tail wc stat chmod chown kill uname date dd ulimit nproc whoami "
    "find xargs tr cut sort uniq awk vi mknod ip top which seq tee yes timeout nc wget dmesg sync"
).split()


def find_busybox():
    for p in BUSYBOX_CANDIDATES:
        if os.path.isfile(p) and os.access(p, os.X_OK):
            with open(p, "rb") as f:
                head = f.read(4096)
            # A static binary has no PT_INTERP; the cheap check: no dynamic loader path in the header area.
            if b"ld-linux" not in head:
                return p
    raise FileNotFoundError("no static busybox found (apt-get install busybox-static)")


def make_busybox_rootfs(rootfs, busybox=None):
    """Create a minimal rootfs at `rootfs` (bin/ with busybox and its applets, empty proc/sys/dev/tmp/etc)."""
    busybox = busybox or find_busybox()
    for d in ("bin", "proc", "sys", "dev", "tmp", "etc", "root", "var", "run", "mnt"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    os.chmod(os.path.join(rootfs, "tmp"), 0o1777)
    dst = os.path.join(rootfs, "bin", "busybox")
    if not os.path.exists(dst):
        shutil.copy2(busybox, dst)
    for a in APPLETS:
        link = os.path.join(rootfs, "bin", a)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    os.makedirs(os.path.join(rootfs, "usr"), exist_ok=True)
    for name, link in (("usr/bin", "../bin"), ("sbin", "bin"), ("usr/sbin", "../bin")):
        p = os.path.join(rootfs, name)
        if not os.path.lexists(p):
            os.symlink(link, p)
    etc = os.path.join(rootfs, "etc")
    _write(os.path.join(etc, "passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
           "user:x:1000:1000:user:/tmp:/bin/sh\n")
    _write(os.path.join(etc, "group"), "root:x:0:\nnogroup:x:65534:\nuser:x:1000:\naudio:x:29:user\n")
    _write(os.path.join(etc, "hostname"), "ocirun\n")
    return rootfs


def _write(path, text):
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write(text)


def make_bundle(bundle, args=None, rootless=False, terminal=False, **overrides):
    """Create a complete bundle (rootfs + config.json from ocirun's default spec) at `bundle`; returns its config."""
    from . import jsonio, specgen

    os.makedirs(bundle, exist_ok=True)
    make_busybox_rootfs(os.path.join(bundle, "rootfs"))
    cfg = specgen.default_spec(rootless=rootless)
    cfg["process"]["terminal"] = terminal
    if args is not None:
        cfg["process"]["args"] = list(args)
    for k, v in overrides.items():
        cfg[k] = v
    with open(os.path.join(bundle, "config.json"), "w") as f:
        f.write(jsonio.dumps(cfg, indent=2))
    return cfg
