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
                proc_cgroup=None, own_text=None, rootless=False, annotations=None):
    """Build the manager for a container (nothing is created or written yet).

    `mountinfo` / `proc_cgroup` are paths overriding /proc/self/mountinfo and /proc/self/cgroup (for tests and for
    a runtime that is told where to look); `own_text` is /proc/self/cgroup as already read (read_own()).
    `rootless` (True, False, or None for runc's "auto", decided at the first permission error: see
    rootless_cgroups): the rootless cgroup manager (see ROOTLESS).
    `systemd`: the systemd driver (systemd.py; cgroupsPath "slice:prefix:name", `annotations` may carry unit
    properties); nothing talks to systemd before mgr.create()."""
    from . import common

    root = common.clean_root(root)
    mounts = common.read_mountinfo(mountinfo or "/proc/self/mountinfo")
    if own_text is not None:
        own = parse_proc_cgroup(own_text)
    else:
        own = common.read_proc_cgroup(proc_cgroup or "/proc/self/cgroup")
    if systemd:
        from . import systemd as sd

        return sd.SystemdManager.build(container_id, cgroups_path, root, mounts, own,
                                       rootless=bool(rootless), annotations=annotations)
    inner = common.inner_path(container_id, cgroups_path)
    if common.is_unified(mounts, root):
        from . import v2
        mgr = v2.V2Manager.discover(container_id, inner, root, mounts, own)
    else:
        from . import v1
        mgr = v1.V1Manager.discover(container_id, inner, root, mounts, own)
    if rootless is not False:
        mgr.rootless = rootless
        mgr.explicit = bool(cgroups_path)
    return mgr


ROOTLESS = """The rootless cgroup manager (runc's, libcontainer/cgroups/fs{,2} with Rootless set): where no
cgroupsPath is configured and the caller may not create or join the container's cgroup (EPERM, EACCES,
EROFS), that hierarchy (v2: the cgroup) is left out and the container stays in the caller's cgroup there;
device rules that cannot be written are ignored; a limit for a controller left out is refused ("cannot set
memory limit: container could not join or create cgroup"). With a cgroupsPath every error is an error."""


def parse_rootless(value):
    """The global --rootless flag (runc's parseBoolOrAuto): True, False, or None for auto ("" or "auto")."""
    if value is None or value == "" or value.lower() == "auto":
        return None
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise OciError(f"--rootless {value!r}: not a boolean or \"auto\" (use true, false or auto)")


def rootless_cgroups(value):
    """runc's shouldUseRootlessCgroupManager for the cgroupfs driver: --rootless true/false decides; auto is
    true when the caller is not root, or is root of a user namespace (it cannot know whether it may write the
    cgroups), false for the host's root."""
    b = parse_rootless(value)
    if b is not None:
        return b
    if os.geteuid() != 0:
        return True
    from ..state import host_root

    return not host_root()


def ignorable(err):
    """runc's isIgnorableError: the permission errors of a rootless caller."""
    return getattr(err, "errno", None) in (1, 13, 30)  # EPERM, EACCES, EROFS


def check_driver(systemd):
    """Refuse a cgroup driver this host cannot use (before anything is made): --systemd-cgroup where systemd is
    not running (runc: IsRunningSystemd)."""
    if systemd:
        from . import systemd as sd

        sd.check_available()


def manager_from_dict(d):
    """Restore a manager saved with mgr.to_dict() (no /proc parsing)."""
    if not isinstance(d, dict) or d.get("version") not in (1, 2):
        raise CgroupError("container state: invalid cgroup record")
    if "systemd" in d:
        from . import systemd as sd

        return sd.SystemdManager.from_dict(d)
    if d["version"] == 1:
        from . import v1
        return v1.V1Manager.from_dict(d)
    from . import v2
    return v2.V2Manager.from_dict(d)


def preload_resources():
    """Import what mgr.apply() needs (~1 ms), so a caller that is waiting anyway can do it ahead."""
    from . import devices, resources  # noqa: F401


def v1_host(root=DEFAULT_ROOT):
    """True when the hierarchy at `root` is cgroup v1 (legacy or hybrid): no cgroup.controllers at its top."""
    return os.path.isdir(root) and not os.path.exists(os.path.join(root, "cgroup.controllers"))


def mount_plan_of(mgr):
    """(version, [(name, host dir)]) of what the container's cgroup mounts bind, or None."""
    if mgr is None:
        return None
    try:
        return (mgr.version, mgr.mount_plan())
    except Exception:
        return None


def available():
    """True when some cgroup hierarchy is mounted at the default root (cheap check)."""
    return os.path.isdir(DEFAULT_ROOT)


_OWN = {}  # path -> text of /proc/self/cgroup, read once per process (see read_own)
_PRIMED = []


def read_own(path="/proc/self/cgroup"):
    """The text of /proc/self/cgroup (read once), or None. Read before prime_attach(): reading it takes the
    kernel's cgroup_mutex, which the primer holds for its whole RCU wait (as does every mkdir in cgroupfs)."""
    if path not in _OWN:
        try:
            with open(path, "rb") as f:
                _OWN[path] = f.read().decode("utf-8", "replace")
        except OSError:
            _OWN[path] = None
    return _OWN[path]


def prime_once(root=DEFAULT_ROOT):
    """prime_attach() the first time it is called in this process; later calls do nothing.

    The earlier the better: the RCU wait (~12 ms here) holds the kernel's cgroup_mutex, so cgroup directories
    made while it lasts wait for it; begun first thing in `create`/`run`, it is over before the cgroups are
    made, and the lock is still in its slow mode when the init is placed."""
    if not _PRIMED:
        _PRIMED.append(True)
        prime_attach(root, own_text=read_own())


def prime_attach(root=DEFAULT_ROOT, own_text=None):
    """Start the cgroup attach lock's RCU grace period early, off the critical path.

    Moving a process between cgroups takes the kernel's global cgroup_threadgroup_rwsem for writing; when the
    lock is in its fast (per-cpu) mode the first writer waits for an RCU grace period (1-30 ms here, and runc
    pays it too). A thread of ours that re-attaches itself, by its thread id, to the cgroup it is already in
    (the `tasks` file of a v1 hierarchy, `cgroup.threads` on v2) takes that lock right away, so by the time the
    container's init is placed the lock is already in slow mode and placement is immediate. (Writing "0"
    would name the current thread and skip the global lock; a thread rather than a forked process costs
    ~0.1 ms instead of ~1 ms, and moves nothing anywhere.)"""
    target = _own_threads_file(root, read_own() if own_text is None else own_text)
    if target is None:
        return
    import _thread

    def prime():
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, str(_thread.get_native_id()).encode())
            finally:
                os.close(fd)
        except OSError:
            pass

    _thread.start_new_thread(prime, ())


def parse_proc_cgroup(data):
    """/proc/<pid>/cgroup text as a list of (hierarchy id, [controllers], path)."""
    out = []
    for line in data.splitlines():
        hid, sep, rest = line.partition(":")
        ctrls, sep2, cpath = rest.partition(":")
        if not sep or not sep2:
            continue
        out.append((hid, ctrls.split(",") if ctrls else [], cpath))
    return out


def _own_threads_file(root, own_text):
    """The file through which a thread can be (re)attached to its own cgroup, or None."""
    if not own_text:
        return None
    v1 = {}
    v2 = None
    for hid, ctrls, path in parse_proc_cgroup(own_text):
        if hid == "0" and not ctrls:
            v2 = path
        for c in ctrls:
            v1[c] = path
    for c in ("pids", "freezer", "memory", "devices"):
        if c in v1:
            p = os.path.join(root, c, v1[c].lstrip("/"), "tasks")
            if os.path.exists(p):
                return p
    if v2 is not None:
        for base in (root, os.path.join(root, "unified")):
            p = os.path.join(base, v2.lstrip("/"), "cgroup.threads")
            if os.path.exists(p):
                return p
    return None
