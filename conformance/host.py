"""Facts about the host the suite runs on, used to decide *host* skips.

A test may only skip for a reason found here (a controller that is not mounted, an LSM that is off, a capability
missing from the bounding set, a kernel feature that is absent). A runtime that lacks a feature is never a skip:
the test runs and fails.
"""
import functools
import os
import subprocess

import pytest

CGROUP_ROOT = "/sys/fs/cgroup"

CAP_NAMES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN",
    "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]


def caps_from_hex(text):
    """'00000000a80425fb' -> set of capability names."""
    value = int(text, 16)
    return {name for bit, name in enumerate(CAP_NAMES) if value >> bit & 1} | {
        f"CAP_{bit}" for bit in range(len(CAP_NAMES), 64) if value >> bit & 1}


def _status_field(name):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    return None


def mount_seen(pid, mountpoint, timeout=3.0):
    """Whether `mountpoint` shows in /proc/PID/mountinfo, polling up to `timeout` (propagation is synchronous, but
    a loaded machine may be slow to show it; a "not seen" answer is given the same time to be wrong)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        if any(m["mountpoint"] == mountpoint for m in mountinfo(f"/proc/{pid}/mountinfo")):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def host_mount_reaches(oci, rootfs_propagation):
    """Run a container with that rootfsPropagation, mount a tmpfs on the host under its rootfs afterwards, and
    say whether the container sees it (the propagation tests of several sections; rootless, the callers skip
    first: rootless.require_host_mount)."""
    import os
    import subprocess

    b = oci.bundle(["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"],
                   edit=lambda c: c["linux"].update(rootfsPropagation=rootfs_propagation))
    os.makedirs(os.path.join(b.rootfs, "mnt", "fromhost"))
    pid = oci.run(b).state()["pid"]
    target = os.path.join(b.rootfs, "mnt", "fromhost")
    subprocess.run(["mount", "-t", "tmpfs", "cfhost", target], check=True)
    oci.add_cleanup(lambda: subprocess.run(["umount", "-l", target]))
    return mount_seen(pid, "/mnt/fromhost")


@functools.lru_cache(None)
def bounding_caps():
    return caps_from_hex(_status_field("CapBnd"))


@functools.lru_cache(None)
def last_cap():
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return len(CAP_NAMES) - 1


def require_cap(name):
    if name not in bounding_caps():
        pytest.skip(f"host: capability {name} is absent from the bounding set of the test process")


def mountinfo(path="/proc/self/mountinfo"):
    rows = []
    with open(path) as f:
        for line in f:
            a, b = line.split(" - ", 1)
            left, right = a.split(), b.split()
            rows.append({"id": int(left[0]), "parent": int(left[1]), "root": left[3], "mountpoint": left[4],
                         "options": left[5], "optional": left[6:], "fstype": right[0],
                         "source": right[1] if len(right) > 1 else "", "super": right[2] if len(right) > 2 else ""})
    return rows


@functools.lru_cache(None)
def cgroup_v1_controllers():
    """controller -> mount point, for every mounted cgroup v1 hierarchy."""
    found = {}
    for m in mountinfo():
        if m["fstype"] == "cgroup":
            for opt in m["super"].split(","):
                if opt not in ("rw", "ro") and "=" not in opt or opt.startswith("name="):
                    found.setdefault(opt, m["mountpoint"])
    return found


@functools.lru_cache(None)
def cgroup_v2_mount():
    for m in mountinfo():
        if m["fstype"] == "cgroup2":
            return m["mountpoint"]
    return None


@functools.lru_cache(None)
def cgroup_v2_controllers():
    mnt = cgroup_v2_mount()
    if not mnt:
        return set()
    try:
        with open(os.path.join(mnt, "cgroup.controllers")) as f:
            return set(f.read().split())
    except OSError:
        return set()


def cgroup_mode():
    if cgroup_v2_mount() == CGROUP_ROOT:
        return "v2"
    return "hybrid" if cgroup_v2_mount() else "v1"


def has_controller(name):
    return name in cgroup_v1_controllers() or name in cgroup_v2_controllers()


def require_controller(name):
    if not has_controller(name):
        pytest.skip(f"host: cgroup controller {name!r} is neither mounted as v1 nor available in cgroup v2")


def require_v1_file(controller, filename):
    """Skip when a fresh v1 cgroup of `controller` has no `filename` (kernel config lacks it)."""
    mnt = cgroup_v1_controllers().get(controller)
    if not mnt:
        return
    if not _child_has(mnt, filename):
        pytest.skip(f"host: kernel has no {controller} cgroup file {filename} (kernel option or I/O scheduler missing)")


@functools.lru_cache(None)
def _child_has(mnt, filename):
    if os.path.exists(os.path.join(mnt, filename)):
        return True
    d = os.path.join(mnt, f"oci-conformance-probe-{os.getpid()}")
    try:
        os.mkdir(d)
    except OSError:
        return False
    try:
        return os.path.exists(os.path.join(d, filename))
    finally:
        os.rmdir(d)


def ns_supported(kind):
    return os.path.exists(f"/proc/self/ns/{kind}")


def require_ns(kind):
    if not ns_supported(kind):
        pytest.skip(f"host: kernel lacks {kind} namespaces (/proc/self/ns/{kind} missing)")


def self_ns(kind):
    return os.readlink(f"/proc/self/ns/{kind}")


def ns_link(pid, kind):
    """readlink /proc/PID/ns/KIND of a container's process. Root reads any; the unprivileged owner of a rootless
    container reads it only when the process is dumpable (ptrace read access), else this fails saying so."""
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except PermissionError:
        raise AssertionError(f"/proc/{pid}/ns/{kind} of the container's process is not readable by uid "
                             f"{os.geteuid()}, the container's owner (EACCES: the process is not dumpable, so its "
                             "owner cannot inspect it)") from None


def lsm_enabled(name):
    if name == "apparmor":
        try:
            with open("/sys/module/apparmor/parameters/enabled") as f:
                return f.read().strip() == "Y"
        except OSError:
            return False
    if name == "selinux":
        return os.path.exists("/sys/fs/selinux/enforce")
    return False


def require_lsm(name):
    if not lsm_enabled(name):
        pytest.skip(f"host: LSM {name} is not enabled in this kernel")


def run(*cmd, check=True, **kw):
    return subprocess.run(list(cmd), check=check, capture_output=True, text=True, **kw)


def can_make_veth():
    r = subprocess.run(["ip", "link", "add", "cfprobe0", "type", "veth", "peer", "name", "cfprobe1"],
                       capture_output=True)
    if r.returncode == 0:
        subprocess.run(["ip", "link", "del", "cfprobe0"], capture_output=True)
        return True
    return False


def hugepage_sizes():
    try:
        names = os.listdir("/sys/kernel/mm/hugepages")
    except OSError:
        return []
    out = []
    for n in names:  # hugepages-2048kB
        kb = int(n.split("-")[1][:-2])
        out.append(f"{kb // 1024}MB" if kb < 1024 * 1024 else f"{kb // (1024 * 1024)}GB")
    return out
