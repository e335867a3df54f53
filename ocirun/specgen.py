"""`ocirun spec`: the default config.json (the same shape `runc spec` writes, at runtime-spec 1.3.0)."""
from .version import SPEC_VERSION

DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]

MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def default_spec(rootless=False):
    caps = list(DEFAULT_CAPS)
    spec = {
        "ociVersion": SPEC_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": list(caps), "permitted": list(caps)},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "ocirun",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            # a cgroup namespace only on a cgroup v2 host, as runc spec (on v1 it would hide the cgroup paths
            # that tools inside expect)
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount") + _cgroupns()],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }
    if rootless:
        to_rootless(spec)
    return spec


def to_rootless(spec):
    """runc's specconv.ToRootless: a config for the calling user (euid != 0): no network namespace, a user
    namespace mapping the caller's euid/egid to 0 (one id each), /sys a read-only rbind of the host's (sysfs
    needs a network namespace of the container's own), no uid=/gid= mount options, no linux.resources."""
    import os

    lin = spec["linux"]
    lin["namespaces"] = [ns for ns in lin["namespaces"] if ns["type"] not in ("network", "user")] + [{"type": "user"}]
    lin["uidMappings"] = [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    lin["gidMappings"] = [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    mounts = []
    for m in spec["mounts"]:
        if m["destination"].rstrip("/") == "/sys":
            mounts.append({"destination": "/sys", "type": "none", "source": "/sys",
                           "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]})
            continue
        if "options" in m:
            m["options"] = [o for o in m["options"] if not o.startswith(("gid=", "uid="))]
        mounts.append(m)
    spec["mounts"] = mounts
    lin.pop("resources", None)
    return spec


def _cgroupns():
    import os

    return ("cgroup",) if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else ()
