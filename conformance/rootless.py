"""The suite's rootless mode: `conformance/run --rootless [--runtime PATH]`.

The suite runs as an unprivileged user and drives the runtime as that user, the way a person without root (or rootless
podman) does. Two halves:

* In the test session (`pytest --rootless`, euid != 0): `activate()` turns the mode on; `to_rootless(cfg)` turns the
  suite's base config into what `runc spec --rootless` makes of a config (runc's libcontainer/specconv ToRootless: a
  new user namespace mapping the caller as root, no network namespace, /sys an rbind of the host's instead of a new
  sysfs, no uid=/gid= mount options, no cgroup resources); `finish_config(cfg)` maps the subordinate ids of
  /etc/subuid and /etc/subgid (newuidmap/newgidmap) when a test's container uses ids beyond 0; the `require_*`
  helpers skip, with a line starting `rootless:`, a test whose subject needs a privilege no user namespace gives
  (each helper checks the caller, so the skip is a fact of this run, not a list).
* In the runner (`conformance/run --rootless` started as root): `TempUser` creates an unprivileged user with
  subordinate id ranges, an XDG_RUNTIME_DIR and a home directory, the suite is re-run as that user (runuser), and
  everything is removed at the end.

Outside the rootless mode nothing here has any effect: every helper returns at once.
"""
import functools
import os
import pwd
import shutil
import subprocess
import tempfile

import pytest

_ACTIVE = False

# runc's libcontainer/specconv ToRootless: the /sys mount of a rootless config
SYS_RBIND = {"destination": "/sys", "type": "none", "source": "/sys",
             "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}


def activate(on=True):
    global _ACTIVE
    _ACTIVE = bool(on)


def active():
    return _ACTIVE


def who():
    try:
        name = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        name = str(os.geteuid())
    return f"uid {os.geteuid()} ({name})"


# ------------------------------------------------------------------------------------------------ the config
def caller_mappings():
    """The mappings `runc spec --rootless` writes: the caller's euid/egid as 0, nothing else."""
    return ([{"containerID": 0, "hostID": os.geteuid(), "size": 1}],
            [{"containerID": 0, "hostID": os.getegid(), "size": 1}])


def to_rootless(cfg):
    """What runc's ToRootless changes in a config (runc 1.1.5 `spec --rootless`, libcontainer/specconv)."""
    linux = cfg.setdefault("linux", {})
    ns = [n for n in linux.get("namespaces", []) if n["type"] not in ("network", "user")]
    linux["namespaces"] = ns + [{"type": "user"}]
    linux["uidMappings"], linux["gidMappings"] = caller_mappings()
    mounts = []
    for m in cfg.get("mounts", []):
        if os.path.normpath(m["destination"]) == "/sys":
            mounts.append(dict(SYS_RBIND, options=list(SYS_RBIND["options"])))
            continue
        m = dict(m)
        if "options" in m:
            m["options"] = [o for o in m["options"] if not o.startswith(("uid=", "gid="))]
        mounts.append(m)
    cfg["mounts"] = mounts
    linux.pop("resources", None)
    return cfg


def map_caller(cfg):
    cfg["linux"]["uidMappings"], cfg["linux"]["gidMappings"] = caller_mappings()


@functools.lru_cache(None)
def subordinate_ranges():
    """(uid (start, count), gid (start, count)) of the caller in /etc/subuid and /etc/subgid (first range of
    each), or None when it has none there or newuidmap/newgidmap are missing."""
    if not (shutil.which("newuidmap") and shutil.which("newgidmap")):
        return None
    names = {str(os.geteuid())}
    try:
        names.add(pwd.getpwuid(os.geteuid()).pw_name)
    except KeyError:
        pass
    found = []
    for path in ("/etc/subuid", "/etc/subgid"):
        rng = None
        try:
            with open(path) as f:
                for line in f:
                    parts = line.strip().split(":")
                    if len(parts) == 3 and parts[0] in names and parts[1].isdigit() and parts[2].isdigit():
                        rng = (int(parts[1]), int(parts[2]))
                        break
        except OSError:
            pass
        if not rng or rng[1] < 2:
            return None
        found.append(rng)
    return tuple(found)


def subordinate_mappings(size=65536):
    """uid and gid mappings: the caller as 0, then its subordinate range from 1 (what rootless podman does)."""
    ranges = subordinate_ranges()
    if ranges is None:
        pytest.skip(f"rootless: the container's ids besides 0: uid {os.geteuid()} has no subordinate range in "
                    "/etc/subuid and /etc/subgid (or newuidmap/newgidmap are missing) to map them")
    (us, uc), (gs, gc) = ranges
    return ([{"containerID": 0, "hostID": os.geteuid(), "size": 1},
             {"containerID": 1, "hostID": us, "size": min(uc, size)}],
            [{"containerID": 0, "hostID": os.getegid(), "size": 1},
             {"containerID": 1, "hostID": gs, "size": min(gc, size)}])


def _mapped(ids, maps):
    return all(any(m["containerID"] <= i < m["containerID"] + m["size"] for m in maps) for i in ids)


def finish_config(cfg):
    """After a test's edit: a new user namespace with only the caller mapped cannot hold a container that uses other
    ids (process.user, additionalGids): map the subordinate ranges too (newuidmap), or skip when there are none."""
    linux = cfg.get("linux") or {}
    users = [n for n in linux.get("namespaces", []) if n.get("type") == "user"]
    if not users or users[0].get("path") or (linux.get("uidMappings"), linux.get("gidMappings")) != caller_mappings():
        return cfg
    user = (cfg.get("process") or {}).get("user") or {}
    uids = {user.get("uid", 0)}
    gids = {user.get("gid", 0), *(user.get("additionalGids") or [])}
    if _mapped(uids, linux["uidMappings"]) and _mapped(gids, linux["gidMappings"]):
        return cfg
    linux["uidMappings"], linux["gidMappings"] = subordinate_mappings()
    return cfg


# ------------------------------------------------------------------------------------------------ skips
def has_cap(name):
    """Whether this process has `name` in its effective set (host.py reads /proc/self/status)."""
    from conformance import host

    return name in host.caps_from_hex(host._status_field("CapEff") or "0")


def require_cap(name, what):
    """Skip a test whose subject needs `name` in the initial user namespace when the caller lacks it: a user namespace
    gives its root the capability over the namespace's own resources only."""
    if _ACTIVE and not has_cap(name):
        pytest.skip(f"rootless: {what}: needs {name} in the initial user namespace, which uid {os.geteuid()} lacks")


@functools.lru_cache(None)
def can_mknod():
    d = tempfile.mkdtemp(prefix="ocf-mknod-")
    try:
        os.mknod(os.path.join(d, "null"), 0o600 | 0o020000, os.makedev(1, 3))
        return True
    except OSError:
        return False
    finally:
        shutil.rmtree(d, ignore_errors=True)


def require_mknod(what):
    """Device nodes: only the initial user namespace may create them (mknod needs CAP_MKNOD there); a rootless runtime
    bind-mounts the host's node at the same path instead, so a test of made-up nodes has nothing to look at."""
    if _ACTIVE and not can_mknod():
        pytest.skip(f"rootless: {what}: mknod needs CAP_MKNOD in the initial user namespace, which uid "
                    f"{os.geteuid()} lacks (a rootless runtime bind-mounts the host's node instead)")


@functools.lru_cache(None)
def can_mount_on_host():
    d = tempfile.mkdtemp(prefix="ocf-mnt-")
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "ocfprobe", d], capture_output=True)
        if r.returncode == 0:
            subprocess.run(["umount", d], capture_output=True)
            return True
        return False
    finally:
        shutil.rmtree(d, ignore_errors=True)


def require_host_mount(what):
    """The test mounts something on the host (a submount, a mount under the rootfs, a shared bind source) and looks
    for it in the container: an unprivileged suite cannot mount in the host's mount namespace."""
    if _ACTIVE and not can_mount_on_host():
        pytest.skip(f"rootless: {what}: the test mounts on the host, and that needs CAP_SYS_ADMIN in the initial "
                    f"user namespace, which uid {os.geteuid()} lacks")


def _cgroup_roots(controller):
    """The hierarchy roots a cgroupsPath of `controller` lands in (None: every mounted hierarchy)."""
    from conformance import host
    if controller is None:
        roots = list(dict.fromkeys(host.cgroup_v1_controllers().values()))
        return roots + ([host.cgroup_v2_mount()] if host.cgroup_v2_mount() else [])
    mnt = host.cgroup_v1_controllers().get(controller)
    if mnt:
        return [mnt]
    if host.cgroup_v2_mount() and (controller == "unified" or controller in host.cgroup_v2_controllers()):
        return [host.cgroup_v2_mount()]
    return []


def _own_cgroup(root):
    """The caller's own cgroup directory under hierarchy `root` (where a relative cgroupsPath lands)."""
    from conformance import host
    names = {v: k for k, v in host.cgroup_v1_controllers().items()}
    key = "" if root == host.cgroup_v2_mount() else names.get(root)
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, ctrls, path = line.rstrip("\n").split(":", 2)
                if key in (ctrls.split(",") if ctrls else [""]):
                    return os.path.join(root, path.lstrip("/"))
    except OSError:
        pass
    return None


def cgroup_writable(root):
    """Whether the caller can create cgroups at the hierarchy's root (absolute cgroupsPath) and in its own cgroup
    (relative cgroupsPath) -- a delegated, writable hierarchy passes."""
    own = _own_cgroup(root)
    return os.access(root, os.W_OK) and (own is None or os.access(own, os.W_OK))


def require_cgroup(controller, what):
    """Skip when the caller cannot create or write cgroups of `controller` ("unified": the v2 hierarchy): cgroup v1
    hierarchies are root's, and a rootless runtime refuses resources it cannot apply (runc: "container could not join
    or create cgroup"). Call it after the host's checks (a controller that is not mounted is a host skip)."""
    if not _ACTIVE:
        return
    for root in _cgroup_roots(controller):
        if not cgroup_writable(root):
            pytest.skip(f"rootless: {what} ({root}): the cgroup hierarchy is not writable by uid {os.geteuid()} "
                        "(no delegated cgroup: only root creates cgroups and sets limits there)")


def cgroups_placeable():
    """Whether the runtime can give the container cgroups of its own at a cgroupsPath: always as root; rootless only
    when some hierarchy is writable (else a rootless runtime leaves the container in the caller's cgroups and creates
    none, as runc does: "cgroups not configured for container")."""
    return not _ACTIVE or any(cgroup_writable(r) for r in _cgroup_roots(None))


def require_cgroups_placeable(what):
    if not cgroups_placeable():
        pytest.skip(f"rootless: {what}: no cgroup hierarchy is writable by uid {os.geteuid()} (no delegated "
                    "cgroup: a rootless runtime creates none)")


def require_mode(what, why):
    """A fact of the mode itself, not of the caller: e.g. a rootless container always has a user namespace.
    (Every `what` here is free of ': ', which separates it from the reason that results.py groups by.)"""
    if _ACTIVE:
        pytest.skip(f"rootless: {what}: {why}")


def unshare_argv(*flags):
    """unshare(1) for a namespace holder: in rootless mode inside a user namespace of its own (the caller as root),
    which owns the namespaces it makes (the container joins it too)."""
    if _ACTIVE and "--user" not in flags:
        return ["unshare", "--user", "--map-root-user", *flags]
    return ["unshare", *flags]


def join_holder_userns(cfg, pid):
    """Rootless: a namespace made by an unprivileged holder belongs to the holder's user namespace; joining it needs
    that user namespace too (the holder maps the caller as root, like the container's own mapping)."""
    if not _ACTIVE:
        return
    ns = [n for n in cfg["linux"]["namespaces"] if n["type"] != "user"]
    cfg["linux"]["namespaces"] = ns + [{"type": "user", "path": f"/proc/{pid}/ns/user"}]
    map_caller(cfg)


def remove_tree(path):
    """rmtree; in rootless mode what a container made under a subordinate id is removed from a user namespace that
    maps those ids (as `podman unshare rm -rf`)."""
    shutil.rmtree(path, ignore_errors=True)
    if not (_ACTIVE and os.path.lexists(path)):
        return
    ranges = subordinate_ranges()
    if ranges:
        (us, uc), (gs, gc) = ranges
        subprocess.run(["unshare", "--map-root-user", f"--map-users={us},1,{uc}", f"--map-groups={gs},1,{gc}",
                        "rm", "-rf", "--", path], capture_output=True)


# ------------------------------------------------------------------------------------------------ the runner side
class TempUser:
    """An unprivileged user for one rootless run (root only): `useradd` without a home of its own, subordinate id
    ranges (distinct uid and gid ranges, above every range already in /etc/subuid and /etc/subgid), a home and TMPDIR
    at /tmp/ocf-rootless-NAME (0755: a container root mapped to a subordinate id must reach the bundles) and
    XDG_RUNTIME_DIR /run/user/UID (0700). `remove()` undoes all of it, after killing what is left of its processes."""

    COUNT = 65536

    def __init__(self):
        self.name = f"ocfrl{os.getpid() % 100000}"
        self.uid = None
        self.home = f"/tmp/ocf-rootless-{self.name}"
        self.xdg = None
        self.subuid = self.subgid = None

    @staticmethod
    def _first_free(path, at_least):
        end = at_least
        try:
            with open(path) as f:
                for line in f:
                    parts = line.strip().split(":")
                    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                        end = max(end, int(parts[1]) + int(parts[2]))
        except FileNotFoundError:
            pass
        return end

    def create(self):
        for tool in ("useradd", "userdel", "usermod", "runuser", "newuidmap", "newgidmap"):
            if not shutil.which(tool):
                raise SystemExit(f"conformance/run --rootless: {tool} not found (Debian: passwd, util-linux, uidmap)")
        # no automatic ranges (SUB_UID_COUNT=0): ours are chosen below, the uid range unlike the gid range
        subprocess.run(["useradd", "--no-create-home", "--home-dir", self.home, "--shell", "/usr/sbin/nologin",
                        "--user-group", "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0", self.name],
                       check=True, capture_output=True)
        self.uid = pwd.getpwnam(self.name).pw_uid
        gid = pwd.getpwnam(self.name).pw_gid
        base = max(self._first_free("/etc/subuid", 1_000_000), self._first_free("/etc/subgid", 1_000_000))
        base = -(-base // self.COUNT) * self.COUNT
        self.subuid, self.subgid = base, base + self.COUNT
        subprocess.run(["usermod", "--add-subuids", f"{self.subuid}-{self.subuid + self.COUNT - 1}",
                        "--add-subgids", f"{self.subgid}-{self.subgid + self.COUNT - 1}", self.name],
                       check=True, capture_output=True)
        os.makedirs(self.home, mode=0o755)
        os.chmod(self.home, 0o755)
        os.chown(self.home, self.uid, gid)
        self.xdg = f"/run/user/{self.uid}"
        os.makedirs("/run/user", mode=0o755, exist_ok=True)
        os.makedirs(self.xdg, mode=0o700)
        os.chown(self.xdg, self.uid, gid)
        return self

    def env(self, extra=None):
        env = {"HOME": self.home, "USER": self.name, "LOGNAME": self.name, "TMPDIR": self.home,
               "XDG_RUNTIME_DIR": self.xdg, "PYTHONDONTWRITEBYTECODE": "1",
               "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        env.update(extra or {})
        return env

    def argv(self, cmd, extra_env=None):
        return ["runuser", "-u", self.name, "--", "env", "-i",
                *(f"{k}={v}" for k, v in sorted(self.env(extra_env).items())), *cmd]

    def _pids(self):
        pids = []
        for p in os.listdir("/proc"):
            if p.isdigit():
                try:
                    uid = os.stat(f"/proc/{p}").st_uid
                    if uid == self.uid or (self.subuid is not None and self.subuid <= uid < self.subuid + self.COUNT):
                        pids.append(int(p))
                except OSError:
                    pass
        return pids

    def remove(self):
        if self.uid is not None:
            import signal
            import time
            # left-over processes of this run's user and of its subordinate ids (containers a failed test left)
            for _ in range(3):
                pids = self._pids()
                if not pids:
                    break
                for p in pids:
                    try:
                        os.kill(p, signal.SIGKILL)
                    except OSError:
                        pass
                time.sleep(0.3)
        if self.subuid is not None:
            subprocess.run(["usermod", "--del-subuids", f"{self.subuid}-{self.subuid + self.COUNT - 1}",
                            "--del-subgids", f"{self.subgid}-{self.subgid + self.COUNT - 1}", self.name],
                           capture_output=True)
        if self.uid is not None:
            subprocess.run(["userdel", self.name], capture_output=True)
        for d in (self.xdg, self.home):
            if d and os.path.lexists(d):
                shutil.rmtree(d, ignore_errors=True)
