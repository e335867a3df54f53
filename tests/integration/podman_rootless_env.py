"""Rootless podman for driving OCI runtimes as an unprivileged user, on the shared engine test bed (enginebed.py).

The bed makes the suite's test user (_rootless_user.create_user: useradd with its home /home/NAME, the
subordinate uid/gid ranges useradd allocates, /run/user/UID as XDG_RUNTIME_DIR) and runs every podman call as
that user (EngineBed.client_user) with its login environment (HOME, USER, LOGNAME, SHELL, PATH, XDG_RUNTIME_DIR;
no CONTAINERS_* variables): podman reads the user's own configuration, as it would for anyone:

    ~/.config/containers/containers.conf   [engine.runtimes] names each runtime under test (ocirun, runc) by its
                                           path, runtime = "ocirun", runtime_supports_json lists both, cgroupfs
                                           and the file events logger (this host has no systemd/journald)
    ~/.config/containers/storage.conf      the user's graphroot (~/.local/share/containers/storage) and runroot
                                           ($XDG_RUNTIME_DIR/containers), driver overlay (native, in the user
                                           namespace) where the kernel has overlay, else vfs
                                           (OCIRUN_TEST_ROOTLESS_STORAGE_DRIVER overrides)

The image is the bed's busybox OCI archive (enginebed.write_oci_archive, nothing pulled) loaded with `podman load`
as the user, so it lands in the user's storage; runs use --pull=never. Every podman call names its runtime with
--runtime NAME (crun refuses this host), NAME being a key of [engine.runtimes]. The runtimes are wrapped by the
bed's logging wrapper (BASE/wrap/NAME, its log BASE/runtime-calls.log writable by the user; OCIRUN_TEST_WRAP=0: the
runtime's own path is named instead). BASE (/tmp/ocirun-podman-rootless-XXXX) also holds the tests' bind-mount
sources.

Rootless podman's default network is slirp4netns (Debian's slirp4netns; podman 4.3 has no pasta). slirp4netns
opens /dev/net/tun inside the container's user namespace, which needs the node's usual mode 0666 (udev's rule on
a Debian host); this VM has no udev and leaves it 0600, so the bed sets 0666 for its lifetime and the last bed
running puts the original mode back (tun_acquire/tun_release: beds of concurrent sessions count each other).

Teardown: `podman rm -af`, `podman rmi -af`, `podman system reset -f` (storage, the pause process) as the user,
then every process left whose uid is the user's or one of its subordinate ids (the pause process, catatonit
-P where installed, slirp4netns, rootlessport, conmon, containers) is reported and killed, runtime state left
under $XDG_RUNTIME_DIR/<runtime>/ID is reported and removed, BASE goes, then the user (_rootless_user: userdel
--remove, its /etc/subuid and /etc/subgid lines, its XDG_RUNTIME_DIR), podman's shm lock
(/dev/shm/libpod_rootless_lock_UID), and the tun node's mode. leaks() also looks for the user, its home, its
subordinate ranges, its processes, and files owned by any of its ids under /tmp, /var/tmp, /run, /dev/shm (but
those that carried its ids before the bed ran anything as the user: an earlier user may have had them).

This file has no pytest dependency; `python podman_rootless_env.py --runtime PATH -- run --rm IMAGE id` runs one
podman command (with --runtime ocirun) as a throwaway user and tears everything down.
"""
import os
import pwd
import shutil
import stat
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _rootless_user as ru  # noqa: E402
import enginebed  # noqa: E402
import podman_env  # noqa: E402
from enginebed import default_runtime  # noqa: E402

IMAGE = podman_env.IMAGE
_write = podman_env._write
TUN = "/dev/net/tun"
TUN_STATE = "/run/ocirun-tests-tun"  # while beds use the node: "mode" (its mode before) and one file per bed
USER_PREFIX = "ocprl"          # + 6 hex digits: the test user's name
TOOLS = ("podman", "conmon", "newuidmap", "newgidmap", "useradd", "userdel", "usermod")


def runc_path():
    return os.environ.get("OCIRUN_TEST_RUNC") or enginebed.which("runc", prefer=("/usr/sbin", "/usr/bin"))


def missing_requirements(runtime):
    """Why the rootless podman tests cannot run here (empty when they can)."""
    why = enginebed.missing_requirements(runtime, TOOLS, hint="apt-get install podman conmon uidmap")
    if not runc_path():
        why.append("runc not installed (the same scenarios run under runc)")
    return why


# ------------------------------------------------------------------------------------------- the user
class RootlessUser:
    """The suite's test user (_rootless_user.create_user: useradd with a home in /home, subordinate ranges,
    /run/user/UID; all removed on exit) with what the podman bed needs on top of it: every subordinate range
    (podman maps them all; _rootless_user.User keeps the first), the id map of podman's rootless namespace,
    host ids of the container's ids, and leak checks.

    Fields: name, uid, gid, home, xdg_runtime_dir, subuids, subgids ([(start, count)], file order).
    """

    def __init__(self, prefix=USER_PREFIX):
        self._cm = ru.create_user(prefix)
        self.shared = None  # the _rootless_user.User
        self.name = self.uid = self.gid = self.home = self.xdg_runtime_dir = None
        self.subuids = []
        self.subgids = []

    def create(self):
        u = self.shared = self._cm.__enter__()
        self.name, self.uid, self.gid, self.home, self.xdg_runtime_dir = u.name, u.uid, u.gid, u.home, u.xdg
        self.subuids = ru.read_subids("/etc/subuid", u.name, u.uid)
        self.subgids = ru.read_subids("/etc/subgid", u.name, u.uid)
        if not self.subuids or not self.subgids:
            raise RuntimeError(f"user {u.name} has no subordinate ids")
        return self

    def remove(self):
        """_rootless_user's removal (its processes killed, XDG_RUNTIME_DIR, userdel --remove, subordinate lines);
        [problems]: what of it is still there."""
        if self.shared is None:
            return []
        self.shared, cm = None, self._cm
        cm.__exit__(None, None, None)
        return self.leaks()

    def owned_ids(self):
        """(uids, gids): [(start, count)] the user owns on the host: its own id and its subordinate ranges."""
        return [(self.uid, 1), *self.subuids], [(self.gid, 1), *self.subgids]

    def host_uid(self, cuid):
        """The host uid of uid `cuid` of the user's rootless namespace (0 = the user, 1.. = the subuids in order)."""
        return _map_id(cuid, self.uid, self.subuids)

    def host_gid(self, cgid):
        return _map_id(cgid, self.gid, self.subgids)

    def rootless_map(self, which="uid"):
        """The id map podman writes for the user's namespace: [(inside, outside, count)]."""
        own, ranges = (self.uid, self.subuids) if which == "uid" else (self.gid, self.subgids)
        rows, inside = [(0, own, 1)], 1
        for start, count in ranges:
            rows.append((inside, start, count))
            inside += count
        return rows

    def env(self):
        """A login's environment (what podman would get from a shell of this user)."""
        return self.shared.env()

    def leaks(self):
        found = []
        if self.name is None:
            return found
        try:
            pwd.getpwnam(self.name)
            found.append(f"user {self.name} still exists")
        except KeyError:
            pass
        for path in ("/etc/subuid", "/etc/subgid"):
            if ru.read_subids(path, self.name, self.uid):
                found.append(f"{path} still has {self.name}'s ranges")
        for d in (self.xdg_runtime_dir, self.home):
            if d and os.path.lexists(d):
                found.append(f"{d} still exists")
        return found


def _map_id(cid, own, ranges):
    if cid == 0:
        return own
    inside = 1
    for start, count in ranges:
        if inside <= cid < inside + count:
            return start + cid - inside
        inside += count
    raise ValueError(f"id {cid} is not mapped")


def _in_ranges(i, ranges):
    return any(s <= i < s + c for s, c in ranges)


def procs_of_ids(uids, gids=()):
    """{pid: cmdline} of live processes whose real, effective, saved or fs uid is in uids ([(start, count)])."""
    out = {}
    me = os.getpid()
    for ent in os.listdir("/proc"):
        if not ent.isdigit() or int(ent) == me:
            continue
        try:
            with open(f"/proc/{ent}/status") as f:
                st = f.read()
            fields = dict(line.split(":", 1) for line in st.splitlines() if ":" in line)
            if fields.get("State", "").strip()[:1] in ("Z", "X"):
                continue
            ids = [int(x) for x in fields["Uid"].split()]
            if not any(_in_ranges(i, uids) for i in ids):
                continue
            with open(f"/proc/{ent}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            out[int(ent)] = cmd or f"[{fields.get('Name', '').strip()}]"
        except (OSError, ValueError, KeyError):
            pass
    return out


def files_of_ids(uids, tops=("/tmp", "/var/tmp", "/run", "/dev/shm", "/dev/mqueue"), depth=2, skip=()):
    """Paths (to `depth` levels under each top) owned by one of the uids ([(start, count)])."""
    found = []

    def walk(d, level):
        try:
            entries = os.listdir(d)
        except OSError:
            return
        for e in entries:
            p = os.path.join(d, e)
            if any(p == s or p.startswith(s.rstrip("/") + "/") for s in skip):
                continue
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if _in_ranges(st.st_uid, uids):
                found.append(p)
            elif stat.S_ISDIR(st.st_mode) and level < depth:
                walk(p, level + 1)

    for t in tops:
        walk(t, 1)
    return found


# ------------------------------------------------------------------------------------------- /dev/net/tun
# slirp4netns needs the node 0666 (see the module doc). Several beds may run at once (two pytest sessions): the
# first one that finds the node closed records its mode and opens it, each registers itself, and the last one
# to leave puts the recorded mode back. All under an exclusive flock on /dev/net (nothing left on the host once
# the last bed is gone: TUN_STATE is removed with its last entry). A bed that died without releasing is pruned
# by the next one (its pid is gone).
def _tun_locked(fn):
    import fcntl

    fd = os.open(os.path.dirname(TUN), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fn()
    finally:
        os.close(fd)


def _tun_users():
    """Live entries of TUN_STATE (PID.TOKEN; those of dead pids are removed)."""
    live = []
    try:
        names = os.listdir(TUN_STATE)
    except OSError:
        return live
    for n in names:
        if n == "mode":
            continue
        pid = n.partition(".")[0]
        if pid.isdigit() and os.path.exists(f"/proc/{pid}"):
            live.append(n)
        else:
            os.unlink(os.path.join(TUN_STATE, n))
    return live


def _tun_recorded():
    try:
        with open(os.path.join(TUN_STATE, "mode")) as f:
            return int(f.read(), 8)
    except (OSError, ValueError):
        return None


def _tun_restore():
    """No bed left: the recorded mode back, TUN_STATE removed."""
    mode = _tun_recorded()
    if mode is not None and os.path.exists(TUN):
        os.chmod(TUN, mode)
    shutil.rmtree(TUN_STATE, ignore_errors=True)


def tun_acquire():
    """Make /dev/net/tun 0666 for this bed; returns its token, or None when nothing was needed (no node, or the
    node already 0666 with no bed having changed it)."""
    def locked():
        if not os.path.exists(TUN):
            return None  # no tun device: the default-network test says so
        users = _tun_users()
        if not users and os.path.exists(TUN_STATE):
            _tun_restore()  # every bed that opened it died: back to what it was
        mode = stat.S_IMODE(os.stat(TUN).st_mode)
        if not users and mode & 0o666 == 0o666:
            return None
        os.makedirs(TUN_STATE, mode=0o700, exist_ok=True)
        if _tun_recorded() is None:
            with open(os.path.join(TUN_STATE, "mode"), "w") as f:
                f.write(oct(mode))
        os.chmod(TUN, mode | 0o666)
        token = f"{os.getpid()}.{uuid.uuid4().hex[:8]}"
        open(os.path.join(TUN_STATE, token), "w").close()
        return token

    return _tun_locked(locked)


def tun_release(token):
    def locked():
        try:
            os.unlink(os.path.join(TUN_STATE, token))
        except OSError:
            pass
        if not _tun_users():
            _tun_restore()

    _tun_locked(locked)


def tun_leaks():
    """The node still opened (or TUN_STATE still there) with no bed using it."""
    def locked():
        if _tun_users() or not os.path.exists(TUN_STATE):
            return []
        return [f"{TUN_STATE} left with no bed using {TUN} (recorded mode {oct(_tun_recorded() or 0)})"]

    return _tun_locked(locked)


# ------------------------------------------------------------------------------------------- the bed
class PodmanRootlessEnv(podman_env.PodmanClient, enginebed.EngineBed):
    """Rootless podman as a throwaway user; runtimes {name: path} (default: ocirun and runc)."""

    def __init__(self, runtimes=None, storage_driver=None, timeout=enginebed.DEFAULT_TIMEOUT, wrap=None):
        runtimes = runtimes or {"ocirun": default_runtime(), "runc": runc_path()}
        super().__init__("podman-rootless", runtimes.get("ocirun"), timeout=timeout,
                         wrap=enginebed.wrap_enabled() if wrap is None else wrap)
        self.runtime_paths = {n: os.path.abspath(p) for n, p in runtimes.items()}
        self.storage_driver = storage_driver or os.environ.get("OCIRUN_TEST_ROOTLESS_STORAGE_DRIVER") or (
            "overlay" if enginebed.has_overlay() else "vfs")
        self.image = IMAGE
        self.user = None
        self.bed_runtime = "runc" if "runc" in runtimes else next(iter(runtimes))  # for the bed's own calls
        self.tun_token = None  # this bed's entry in TUN_STATE while it holds /dev/net/tun at 0666
        self.preexisting = set()  # files owned by the user's ids before the bed ran anything as the user

    # -- setup
    def setup(self):
        self.make_base("wrap", "vols")
        self.user = RootlessUser()
        self.user.create()
        u = self.user
        # files that already carry the new user's ids (left by an earlier user with the same uid or ranges)
        # are not this bed's
        ours = (self.base + "/", u.xdg_runtime_dir)
        self.preexisting = {p for p in files_of_ids(u.owned_ids()[0]) if not p.startswith(ours)}
        self.client_user = (u.uid, u.gid)
        self.client_cwd = u.home
        self.env = u.env()
        for name, path in self.runtime_paths.items():
            self.register_runtime(name, path)
        if self.calls_log:
            os.chown(self.calls_log, u.uid, u.gid)
        conf = os.path.join(u.home, ".config", "containers")
        self.graphroot = os.path.join(u.home, ".local", "share", "containers", "storage")
        self.runroot = os.path.join(u.xdg_runtime_dir, "containers")
        os.makedirs(conf, exist_ok=True)
        runtimes = "\n".join(f'{n} = ["{p}"]' for n, p in self.runtimes.items())
        supports_json = sorted({"crun", "runc", *self.runtimes})
        _write(os.path.join(conf, "containers.conf"), f"""\
# written by the ocirun rootless podman tests: a user's own containers.conf naming the runtimes under test
[engine]
runtime = "{'ocirun' if 'ocirun' in self.runtimes else self.bed_runtime}"
# runtimes podman may call with --log-format=json --log FILE (runc-compatible)
runtime_supports_json = {_toml_list(supports_json)}
# no systemd or journald on this host
cgroup_manager = "cgroupfs"
events_logger = "file"

[engine.runtimes]
{runtimes}
""")
        _write(os.path.join(conf, "storage.conf"), f"""\
[storage]
driver = "{self.storage_driver}"
graphroot = "{self.graphroot}"
runroot = "{self.runroot}"
""")
        for d, _dirs, files in os.walk(os.path.join(u.home, ".config")):
            for x in [d, *(os.path.join(d, f) for f in files)]:
                os.chown(x, u.uid, u.gid)
        self.tun_token = tun_acquire()
        self.import_image("oci", self._load)
        return self

    def _load(self, path):
        os.chmod(path, 0o644)
        self.podman("load", "-i", path, check=True, fail_fast=False, timeout=120)

    # -- running podman as the user
    def cmd(self, *args, runtime=None):
        return ["podman", "--runtime", runtime or self.bed_runtime, *args]

    def podman(self, *args, runtime=None, timeout=None, check=False, input=None, fail_fast=True):
        """One podman command as the user (always with --runtime and a timeout); CompletedProcess (text)."""
        return self.run_client("podman", self.cmd(*args, runtime=runtime), args, timeout=timeout, check=check,
                               input=input, fail_fast=fail_fast)

    def run(self, runtime, *args, **kw):
        """`podman --runtime RUNTIME run --pull=never ARGS` as the user."""
        return self.podman("run", "--pull=never", *args, runtime=runtime, **kw)

    def state_dirs(self):
        """Runtime state dirs in the user's XDG_RUNTIME_DIR/<runtime>/ (one per live container)."""
        found = []
        if not self.user or not self.user.xdg_runtime_dir:
            return found
        for name in self.runtimes:
            d = os.path.join(self.user.xdg_runtime_dir, name)
            try:
                found += [os.path.join(d, e) for e in os.listdir(d)]
            except OSError:
                pass
        return found

    def user_procs(self):
        """{pid: cmdline} of every live process of the user or one of its subordinate uids."""
        if not self.user or self.user.uid is None:
            return {}
        return procs_of_ids(self.user.owned_ids()[0])

    def pause_pids(self):
        """The user's pause process (podman's holder of its user and mount namespaces: catatonit -P where
        installed), from podman's $XDG_RUNTIME_DIR/libpod/tmp/pause.pid."""
        try:
            with open(os.path.join(self.user.xdg_runtime_dir, "libpod", "tmp", "pause.pid")) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError, TypeError, AttributeError):
            return []
        return [pid] if pid in self.user_procs() else []

    # -- what is the bed's
    def our_procs(self):
        procs = super().our_procs()
        procs.update(self.user_procs())
        return procs

    # -- teardown hooks
    def remove_containers(self):
        problems = []
        if self.env is None or self.user is None or self.user.uid is None:
            return problems
        try:
            self.container_ids()
        except AssertionError as e:
            problems.append(str(e).splitlines()[0])
        for args in (("rm", "-a", "-f", "-t", "0"), ("rmi", "-a", "-f"), ("system", "reset", "-f")):
            try:
                res = self.podman(*args, timeout=60, fail_fast=False)
            except AssertionError as e:
                problems.append(str(e).splitlines()[0])
                enginebed.kill_procs(self.user_procs)
                continue
            if res.returncode != 0:
                problems.append(f"podman {' '.join(args)} exited {res.returncode}: {res.stderr.strip()[-500:]}")
        return problems

    def after_daemons_stopped(self):
        """After `podman system reset` the user has no process left (it stops the pause process); wait for them
        to go (bounded), report what stays."""
        problems = []
        end = time.monotonic() + 10
        left = self.user_procs()
        while left and time.monotonic() < end:
            time.sleep(0.1)
            left = self.user_procs()
        if left:
            problems.append(f"processes of {self.user.name} left after podman system reset: {left}")
            enginebed.kill_procs(self.user_procs)
        return problems

    def clean_runtime_state(self):
        problems = []
        for d in self.state_dirs():
            problems.append(f"runtime state left: {d}")
            shutil.rmtree(d, ignore_errors=True)
        return problems

    def extra_dirs(self):
        return (self.user.xdg_runtime_dir,) if self.user and self.user.xdg_runtime_dir else ()

    def after_teardown(self):
        problems = []
        if self.user is not None:
            uid = self.user.uid
            problems += self.user.remove()
            if uid is not None:
                # podman's shm lock of the user (lock_type "shm", its rootless default): podman leaves it by design
                lock = f"/dev/shm/libpod_rootless_lock_{uid}"
                if os.path.lexists(lock):
                    os.unlink(lock)
        if self.tun_token is not None:
            tun_release(self.tun_token)
            self.tun_token = None
        return problems

    def extra_leaks(self):
        found = []
        if self.user is None:
            return found
        found += self.user.leaks()
        if self.user.uid is not None:
            uids = self.user.owned_ids()[0]
            found += [f"file owned by {self.user.name} or its subordinate ids: {p}" for p in files_of_ids(uids)
                      if p not in self.preexisting]
            if os.path.lexists(f"/dev/shm/libpod_rootless_lock_{self.user.uid}"):
                found.append(f"/dev/shm/libpod_rootless_lock_{self.user.uid} left")
        found += tun_leaks()
        return found


def _toml_list(items):
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def main(argv=None):
    def make_env(runtime):
        return PodmanRootlessEnv({"ocirun": runtime, "runc": runc_path()})

    return enginebed.cli_main(
        argv, "run one podman command as a throwaway unprivileged user (rootless podman, --runtime ocirun)",
        make_env, missing_requirements, lambda env, args: env.podman(*args, runtime="ocirun"),
        run_flags=lambda env: ("--pull=never",), snapshot=True)


if __name__ == "__main__":
    sys.exit(main())
