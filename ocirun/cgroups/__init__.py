"""cgroup v1 and v2 drivers behind one interface.

    mgr = cgroups.new_manager(container_id, cgroups_path, systemd=False, root="/sys/fs/cgroup")
    mgr.create(); mgr.apply(resources); mgr.add_pid(pid); ...; mgr.destroy()
    d = mgr.to_dict()  ->  cgroups.manager_from_dict(d) in a later command

Importing this package is cheap on purpose (only `os` and ocirun.errors): the drivers (v1.py, v2.py) and the
helpers they need are imported when a manager is built.

Paths (the cgroupfs driver rule of runc, libcontainer/cgroups/fs{,2}):
  * cgroupsPath is cleaned first (".." cannot climb out: "../../x" -> "x").
  * absolute cgroupsPath -> <hierarchy mountpoint>/<cgroupsPath> in every hierarchy;
  * relative cgroupsPath -> relative to the runtime's own cgroup, read from /proc/self/cgroup:
      v1: <mountpoint>/<own cgroup of that hierarchy>/<cgroupsPath>,
      v2: <root>/<parent of own cgroup>/<cgroupsPath> (the own cgroup holds processes, so controllers could not
          be enabled below it);
  * no cgroupsPath -> the container id, taken as a *relative* path (runc: Name=id, Parent="").
"""
import os

from ..errors import OciError


class CgroupError(OciError):
    """A one-line, user-facing cgroup failure."""


DEFAULT_ROOT = "/sys/fs/cgroup"


def new_manager(container_id, cgroups_path=None, systemd=False, root=DEFAULT_ROOT, mountinfo=None,
                proc_cgroup=None):
    """Build the manager for a container (nothing is created or written yet).

    `mountinfo` / `proc_cgroup` are paths overriding /proc/self/mountinfo and /proc/self/cgroup (for tests and for
    a runtime that is told where to look)."""
    if systemd:
        raise CgroupError("systemd cgroup driver not supported on this host: no systemd")
    from . import common

    root = common.clean_root(root)
    mounts = common.read_mountinfo(mountinfo or "/proc/self/mountinfo")
    own = common.read_proc_cgroup(proc_cgroup or "/proc/self/cgroup")
    inner = common.inner_path(container_id, cgroups_path)
    if common.is_unified(mounts, root):
        from . import v2
        return v2.V2Manager.discover(container_id, inner, root, mounts, own)
    from . import v1
    return v1.V1Manager.discover(container_id, inner, root, mounts, own)


def manager_from_dict(d):
    """Restore a manager saved with mgr.to_dict() (no /proc parsing)."""
    if not isinstance(d, dict) or d.get("version") not in (1, 2):
        raise CgroupError("container state: invalid cgroup record")
    if d["version"] == 1:
        from . import v1
        return v1.V1Manager.from_dict(d)
    from . import v2
    return v2.V2Manager.from_dict(d)


def available():
    """True when some cgroup hierarchy is mounted at the default root (cheap check)."""
    return os.path.isdir(DEFAULT_ROOT)


def prime_attach(root=DEFAULT_ROOT):
    """Start the cgroup attach lock's RCU grace period early, off the critical path.

    Moving a process between cgroups takes the kernel's global cgroup_threadgroup_rwsem for writing; when the
    lock is in its fast (per-cpu) mode the first writer waits for an RCU grace period (1-30 ms here, and runc
    pays it too). A tiny forked child that re-attaches itself to a root cgroup starts that wait right away, so
    by the time the container's init is placed the lock is already in slow mode and placement is immediate.
    Returns the child's pid (reap it later) or None."""
    target = None
    for name in ("pids", "freezer", "memory", "cpu", "devices", "unified", ""):
        p = os.path.join(root, name, "cgroup.procs")
        if os.path.exists(p):
            target = p
            break
    if target is None:
        return None
    pid = os.fork()
    if pid == 0:
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
            os.write(fd, b"0")
        except BaseException:
            pass
        os._exit(0)
    return pid
