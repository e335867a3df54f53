"""Fixtures shared by every integration test in this directory (real kernel, real ocirun CLI, root only).

Everything here is about driving the `ocirun` console script from outside, as an engine would, and about
checking that each test leaves the host exactly as it found it.

Fixtures
--------
ocirun_bin      path of the ocirun executable: $OCIRUN_TEST_BIN, else the console script next to this
                interpreter (the venv's), else `ocirun` on PATH.
runc_bin        /usr/sbin/runc (or `runc` on PATH); tests that use it as an oracle skip without it.
id_prefix       a container-id prefix unique to the running test, e.g. "it3f9a2c-". Every container a test
                makes must have an id starting with it: the leak checker finds cgroups and processes by it.
cid             factory: cid() -> a fresh id with the prefix ("it3f9a2c-1", "-2", ...); cid("web") -> prefix+"web".
state_root      a short, per-test directory for `ocirun --root` (short, because the init listens on a unix
                socket under it and sun_path holds 108 bytes).
runc_root       the same for runc.
oci             oci(*args, timeout=30, stdout=None, stderr=None, input=None, cwd=None, env=None)
                runs `ocirun --root <state_root> *args` and returns a Result (a CompletedProcess, text;
                str(res) shows command, exit code and outputs for assertion messages).
                stdout/stderr are always files, never pipes: `create`'s stdio is inherited by the container,
                so a pipe would not reach EOF until the container exits. By default each call gets fresh
                temp files (read back into .stdout/.stderr after exit); pass stdout=PATH to choose the file
                (e.g. to read what the container wrote later: res.read_stdout() re-reads it).
                Global flags go before the verb: oci("--log", f, "--log-format", "json", "create", ...).
                oci.state(id) -> parsed `state` JSON or None; oci.wait_status(id, "stopped", timeout) polls
                it; oci.popen(*args) starts without waiting.
runc            the same for runc (`runc --root <runc_root> ...`).
wait_for        wait_for(predicate, timeout=10, what="...") polls until predicate() is truthy, returns its value
                (fails the test with `what` on timeout).
busybox_rootfs  (session) one cached busybox rootfs; bundles get a copy of it.
bundle          factory: bundle(args, edit=None, name=None, **top_level) -> bundle directory (str).
                The config is ocirun's default spec (ocirun.specgen.default_spec()) with process.terminal
                false and process.args = args; each keyword replaces that top-level key of config.json
                (hostname="x", mounts=[...]); `edit(cfg)` may change the dict in place for deeper edits.
                bundle.config(dir) / bundle.save(dir, cfg) read and rewrite a bundle's config.json.
                bundle.rootfs(dir) is its rootfs path.
host_snapshot   (autouse here) the leak checker, see below. A module may override it by defining its own
                fixture of that name (test_podman.py does: it checks leaks per module instead).

The leak checker
----------------
Before each test it records: the mount points in /proc/self/mountinfo (by mount id), the cgroup directories
under /sys/fs/cgroup/* whose name starts with the test's id prefix, the processes whose cmdline or
/proc/PID/cgroup mentions the prefix, and the contents of the test's state roots. After the test it compares;
anything new is a leak. New mounts count when they are under the test's own directories (state roots, bundle
dir, tmp_path) or anywhere outside scratch and engine directories (FOREIGN_MOUNT_PREFIXES: /tmp/, /run/containerd/,
...), where tests and engines running in parallel mount things of their own. It then cleans up (delete
--force, kill, rmdir, lazy umount of mounts under its own directories only) so that one leaking test does not
make the next ones fail, and fails the test with the list of leaks (as a teardown error). When the test body
itself already failed, leftovers are expected (it never reached its `delete`): they are cleaned up and not
reported.

Every test here gets the `root` marker and is skipped (with the reason) when not run as root.
"""
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

# the integration tests import their helpers (hostmounts, _rootfs_helpers, the engine harnesses) by name
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostmounts  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CGROUP_ROOT = "/sys/fs/cgroup"
DEFAULT_TIMEOUT = 30
# New mount points under these are not attributed to a test unless they are under one of its own directories:
# scratch space and other engines' state, where tests and engines running in parallel (another pytest
# session, a podman or containerd test environment) legitimately mount things while this test runs.
FOREIGN_MOUNT_PREFIXES = ("/tmp/", "/var/tmp/", "/run/containers/", "/var/lib/containers/", "/run/containerd/",
                          "/var/lib/containerd/", "/run/docker/", "/var/lib/docker/", "/run/netns/", "/run/user/",
                          "/run/libpod/", "/run/crun/", "/run/runc/")

NOT_ROOT = os.geteuid() != 0
NOT_ROOT_REASON = "needs root: creates real containers (namespaces, mounts, cgroups)"


# ----------------------------------------------------------------------------------------------- markers
def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(item.fspath).startswith(HERE + os.sep):
            item.add_marker(pytest.mark.root)
            if NOT_ROOT:
                item.add_marker(pytest.mark.skip(reason=NOT_ROOT_REASON))


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "_ocirun_rep_" + rep.when, rep)


# ----------------------------------------------------------------------------------------------- binaries
def _default_bin():
    env = os.environ.get("OCIRUN_TEST_BIN")
    if env:
        return env
    sibling = os.path.join(os.path.dirname(sys.executable), "ocirun")
    if os.access(sibling, os.X_OK):
        return sibling
    return shutil.which("ocirun")


@pytest.fixture(scope="session")
def ocirun_bin():
    """Path of the ocirun executable under test ($OCIRUN_TEST_BIN overrides)."""
    b = _default_bin()
    if not b or not os.access(b, os.X_OK):
        pytest.fail(f"no ocirun executable (set OCIRUN_TEST_BIN): {b!r}")
    return b


@pytest.fixture(scope="session")
def runc_bin():
    """runc, the oracle; tests using it skip when it is not installed."""
    for p in ("/usr/sbin/runc", shutil.which("runc")):
        if p and os.access(p, os.X_OK):
            return p
    pytest.skip("runc is not installed (used as the reference runtime)")


# ----------------------------------------------------------------------------------------------- ids, roots
@pytest.fixture
def id_prefix():
    """A container-id prefix unique to this test (all its container ids must start with it)."""
    return "it" + uuid.uuid4().hex[:6] + "-"


@pytest.fixture
def cid(id_prefix):
    """cid() -> a new unique container id with the test's prefix; cid('x') -> prefix + 'x'."""
    counter = itertools.count(1)

    def make(suffix=None):
        return id_prefix + (suffix if suffix is not None else str(next(counter)))
    make.prefix = id_prefix
    return make


def _short_dir(tag):
    return tempfile.mkdtemp(prefix=f"ocr{tag}-", dir="/tmp")


@pytest.fixture
def state_root():
    d = _short_dir("s")
    yield d
    safe_rmtree(d)


@pytest.fixture
def runc_root():
    d = _short_dir("r")
    yield d
    safe_rmtree(d)


# ----------------------------------------------------------------------------------------------- running
class Result(subprocess.CompletedProcess):
    """A finished command. str(res) is the command, exit code and outputs, for assertion messages."""

    def __init__(self, args, returncode, stdout, stderr, stdout_path, stderr_path):
        super().__init__(args, returncode, stdout, stderr)
        self.stdout_path = stdout_path
        self.stderr_path = stderr_path

    def read_stdout(self):
        """Re-read the stdout file (what a container that inherited it wrote since)."""
        return _read(self.stdout_path)

    def __str__(self):
        return (f"$ {' '.join(self.args)}\nexit {self.returncode}\nstdout: {self.stdout!r}\n"
                f"stderr: {self.stderr!r}")


class _Runner:
    """Runs one runtime binary with a fixed --root; outputs go to files (see the module doc)."""

    def __init__(self, binary, root, tmpdir):
        self.binary = binary
        self.root = root
        self.tmpdir = tmpdir
        self._n = itertools.count()

    def argv(self, *args):
        return [self.binary, "--root", self.root, *map(str, args)]

    def __call__(self, *args, timeout=DEFAULT_TIMEOUT, stdout=None, stderr=None, input=None, cwd=None, env=None):
        n = next(self._n)
        out_path = str(stdout) if stdout is not None else os.path.join(self.tmpdir, f"out.{n}")
        err_path = str(stderr) if stderr is not None else os.path.join(self.tmpdir, f"err.{n}")
        argv = self.argv(*args)
        with open(out_path, "w") as out, open(err_path, "w") as err:
            try:
                p = subprocess.run(argv, stdin=subprocess.DEVNULL if input is None else None,
                                   input=input.encode() if isinstance(input, str) else input,
                                   stdout=out, stderr=err, cwd=cwd, env=env, timeout=timeout)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"timed out after {timeout}s: {' '.join(argv)}") from None
        return Result(argv, p.returncode, _read(out_path), _read(err_path), out_path, err_path)

    def state(self, cid):
        """The parsed `state CID` document, or None when the command fails (e.g. no such container)."""
        import json

        res = self("state", cid)
        return json.loads(res.stdout) if res.returncode == 0 else None

    def wait_status(self, cid, status, timeout=10.0):
        """Poll `state CID` until its status is `status`; returns the last state (None if gone)."""
        end = time.monotonic() + timeout
        while True:
            st = self.state(cid)
            if (st or {}).get("status") == status or time.monotonic() > end:
                return st
            time.sleep(0.05)

    def popen(self, *args, stdout=None, stderr=None, cwd=None):
        """Start without waiting (outputs to the given open files, default /dev/null)."""
        return subprocess.Popen(self.argv(*args), stdin=subprocess.DEVNULL,
                                stdout=stdout or subprocess.DEVNULL, stderr=stderr or subprocess.DEVNULL, cwd=cwd)


def _read(path):
    with open(path, errors="replace") as f:
        return f.read()


@pytest.fixture
def oci(ocirun_bin, state_root, tmp_path):
    """oci(*args, ...) -> CompletedProcess of `ocirun --root <state_root> *args` (see the module doc)."""
    d = tmp_path / "oci-io"
    d.mkdir()
    return _Runner(ocirun_bin, state_root, str(d))


@pytest.fixture
def runc(runc_bin, runc_root, tmp_path):
    """runc(*args, ...) -> CompletedProcess of `runc --root <runc_root> *args`."""
    d = tmp_path / "runc-io"
    d.mkdir()
    return _Runner(runc_bin, runc_root, str(d))


@pytest.fixture
def wait_for():
    """wait_for(predicate, timeout=10.0, what=None) -> predicate's first truthy value (fails on timeout)."""
    def wait(pred, timeout=10.0, what=None, interval=0.02):
        end = time.monotonic() + timeout
        while True:
            v = pred()
            if v:
                return v
            if time.monotonic() > end:
                pytest.fail(f"timed out after {timeout}s waiting for {what or pred}")
            time.sleep(interval)
    return wait




# ----------------------------------------------------------------------------------------------- bundles
@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory):
    """One busybox rootfs per session (ocirun.bundle.make_busybox_rootfs); bundles copy it."""
    from ocirun.bundle import make_busybox_rootfs

    try:
        d = tmp_path_factory.mktemp("busybox") / "rootfs"
        return make_busybox_rootfs(str(d))
    except FileNotFoundError as e:
        pytest.skip(str(e))


class _BundleFactory:
    def __init__(self, rootfs, base):
        self.cached_rootfs = rootfs
        self.base = base
        self._n = itertools.count()

    def __call__(self, args=("true",), edit=None, name=None, **top_level):
        from ocirun import specgen

        b = os.path.join(self.base, name or f"bundle{next(self._n)}")
        os.makedirs(b)
        shutil.copytree(self.cached_rootfs, os.path.join(b, "rootfs"), symlinks=True)
        cfg = specgen.default_spec()
        cfg["process"]["terminal"] = False
        cfg["process"]["args"] = list(args)
        for k, v in top_level.items():
            cfg[k] = v
        if edit is not None:
            edit(cfg)
        self.save(b, cfg)
        return b

    @staticmethod
    def config(b):
        from ocirun import jsonio

        return jsonio.load_file(os.path.join(b, "config.json"))

    @staticmethod
    def save(b, cfg):
        from ocirun import jsonio

        with open(os.path.join(b, "config.json"), "w") as f:
            f.write(jsonio.dumps(cfg, indent=2))

    @staticmethod
    def rootfs(b):
        return os.path.join(b, "rootfs")


@pytest.fixture
def bundle(busybox_rootfs):
    """bundle(args, edit=None, name=None, **top_level) -> a fresh bundle dir (see the module doc).

    Bundles live in a per-test directory under /tmp that every user may traverse (mode 0755), not under
    pytest's tmp_path (/tmp/pytest-of-root is 0700): a container in a user namespace runs as a mapped host
    uid that must still reach its rootfs and bind sources."""
    d = _short_dir("b")
    os.chmod(d, 0o755)
    yield _BundleFactory(busybox_rootfs, d)
    safe_rmtree(d)


def safe_rmtree(d):
    """rmtree that never descends into a mount point: when something is still mounted below d, d is left
    alone (the leak checker reports and unmounts it; deleting through a leaked bind mount would delete the
    host files it shows)."""
    below = [mp for mp in mount_points().values() if mp == d or mp.startswith(d.rstrip("/") + "/")]
    if not below:
        shutil.rmtree(d, ignore_errors=True)


# ----------------------------------------------------------------------------------------------- leak checker
def mount_points():
    """{mount_id: mount_point} of this (the host's) mount namespace."""
    out = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            a = line.split()
            out[a[0]] = hostmounts.unescape(a[4])
    return out


def cgroup_dirs(prefix):
    """Every directory under /sys/fs/cgroup/* whose name starts with prefix."""
    found = set()
    try:
        tops = os.listdir(CGROUP_ROOT)
    except OSError:
        return found
    for top in tops:
        stack = [os.path.join(CGROUP_ROOT, top)]
        if os.path.islink(stack[0]):
            continue
        while stack:
            d = stack.pop()
            try:
                it = os.scandir(d)
            except OSError:
                continue
            with it:
                for e in it:
                    if e.is_dir(follow_symlinks=False):
                        if e.name.startswith(prefix):
                            found.add(e.path)
                        stack.append(e.path)
    return found


def processes(prefix):
    """{pid: description} of processes whose cmdline or cgroup mentions prefix (ourselves excluded)."""
    me = os.getpid()
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{name}/cgroup") as f:
                cg = f.read()
            with open(f"/proc/{name}/stat", "rb") as f:
                st = f.read()
        except OSError:
            continue
        if st[st.rindex(b")") + 2:].split()[0] in (b"Z", b"X"):
            continue  # zombies of our own children are reaped by subprocess; others are not leaks of state
        if prefix in cmd or prefix in cg:
            out[int(name)] = f"pid {name}: {cmd!r}"
    return out


class HostSnapshot:
    """What the host looks like (for this test's prefix and state roots) at one moment."""

    def __init__(self, prefix, roots, own_dirs=()):
        self.prefix = prefix
        self.roots = list(roots)
        self.own_dirs = [d.rstrip("/") + "/" for d in list(roots) + list(own_dirs)]
        self.mounts = mount_points()
        self.cgroups = cgroup_dirs(prefix)
        self.procs = processes(prefix)
        self.state = {r: set(os.listdir(r)) if os.path.isdir(r) else set() for r in self.roots}

    def is_own(self, path):
        """Is path under one of this test's own directories (state roots, bundles, tmp_path)?"""
        return (path.rstrip("/") + "/").startswith(tuple(self.own_dirs))

    def leaks(self):
        """[(kind, what)] new since this snapshot."""
        out = []
        for mid, mp in mount_points().items():
            if mid in self.mounts:
                continue
            if self.is_own(mp):
                out.append(("mount", mp))
            elif not mp.startswith(FOREIGN_MOUNT_PREFIXES):
                out.append(("host mount", mp))
        for d in sorted(cgroup_dirs(self.prefix) - self.cgroups):
            out.append(("cgroup", d))
        for pid, desc in processes(self.prefix).items():
            if pid not in self.procs:
                out.append(("process", desc))
        for r in self.roots:
            now = set(os.listdir(r)) if os.path.isdir(r) else set()
            for name in sorted(now - self.state[r]):
                out.append(("state", os.path.join(r, name)))
        return out


def _cleanup(leaks, runners):
    for kind, what in leaks:
        if kind == "state":
            cid = os.path.basename(what)
            for r in runners:
                if what.startswith(r.root + os.sep):
                    try:
                        r("delete", "--force", cid, timeout=15)
                    except AssertionError:
                        pass
            shutil.rmtree(what, ignore_errors=True)
    for kind, what in leaks:
        if kind == "process":
            pid = int(what.split()[1].rstrip(":"))
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    if any(k == "process" for k, _ in leaks):
        time.sleep(0.2)
    for kind, what in sorted(leaks, key=lambda kw: -len(kw[1])):
        if kind == "cgroup":
            for d in sorted((p for p in _walk_dirs(what)), key=len, reverse=True):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        elif kind == "mount":  # only under the test's own directories: never touch anyone else's mount
            subprocess.run(["umount", "-l", what], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _walk_dirs(top):
    out = [top]
    for d, dirs, _ in os.walk(top):
        out += [os.path.join(d, x) for x in dirs]
    return out


@pytest.fixture(autouse=True)
def host_snapshot(request, id_prefix):
    """The leak checker (see the module doc). Yields the HostSnapshot taken before the test."""
    roots, runners, own = [], [], [str(request.getfixturevalue("tmp_path"))]
    if "bundle" in request.fixturenames:
        own.append(request.getfixturevalue("bundle").base)  # set up first: torn down after this check
    for name in ("oci", "runc"):
        if name in request.fixturenames:
            r = request.getfixturevalue(name)
            roots.append(r.root)
            runners.append(r)
    snap = HostSnapshot(id_prefix, roots, own)
    yield snap
    leaks = snap.leaks()
    if leaks:
        # A short grace period: a container killed just before the test returned may still be exiting.
        time.sleep(0.3)
        leaks = snap.leaks()
    if not leaks:
        return
    _cleanup(leaks, runners)
    rep = getattr(request.node, "_ocirun_rep_call", None)
    if rep is not None and rep.failed:
        return
    pytest.fail("the test left these behind on the host (cleaned up, except host mounts: those are left "
                "alone, they could be someone else's):\n  "
                + "\n  ".join(f"{k}: {w}" for k, w in leaks), pytrace=False)


# ----------------------------------------------------------------------------------------------- systemd bed
@pytest.fixture(scope="session")
def systemd_bed(ocirun_bin):
    """A real systemd booted as PID 1 of a container, once per session (systemdbed.SystemdBed: the cached
    Debian bookworm rootfs under $OCIRUN_TEST_CACHE or /var/cache/ocirun-tests, built by debootstrap on first
    use), with this checkout's ocirun (bed.ocirun) and Debian's runc (bed.runc) runnable inside: bed.run(cmd),
    bed.systemctl(...), bed.host_path(p), bed.make_bundle(...). The outer runtime is ocirun, or
    $OCIRUN_SYSTEMD_BED_OUTER (runc, ocirun or a path). A bed that cannot be built or booted (no debootstrap,
    no mirror, systemd not coming up) FAILS the tests using it, with the reason; torn down at session end."""
    import systemdbed

    outer = os.environ.get("OCIRUN_SYSTEMD_BED_OUTER") or "ocirun"
    bed = systemdbed.SystemdBed(outer=outer, ocirun_bin=ocirun_bin,
                                log=lambda msg: print(f"systemd bed: {msg}", file=sys.__stderr__, flush=True))
    yield from systemdbed.serve(bed)


@pytest.fixture(scope="session")
def systemd_bed_v2(ocirun_bin):
    """Like systemd_bed, with the unified cgroup layout (systemdbed.SystemdBed(cgroup="unified")): systemd runs
    in pure cgroup v2 mode, on a cgroup2 tree with no controllers (see systemdbed's module doc), so the inner
    runtimes take their cgroup v2 paths. Fails (never skips) when it cannot be built or booted."""
    import systemdbed

    outer = os.environ.get("OCIRUN_SYSTEMD_BED_OUTER") or "ocirun"
    bed = systemdbed.SystemdBed(outer=outer, ocirun_bin=ocirun_bin, cgroup="unified",
                                log=lambda msg: print(f"systemd bed (v2): {msg}", file=sys.__stderr__, flush=True))
    yield from systemdbed.serve(bed)
