"""Fixtures of the OCI runtime conformance suite.

The runtime under test is only ever driven through its runc-compatible command line:

    RUNTIME --root ROOT create --bundle DIR [--console-socket SOCK] [--pid-file FILE] ID
    RUNTIME --root ROOT start|state|kill|delete ...

Options: --runtime PATH (default: `ocirun` on PATH), --root DIR (default: a fresh tmp dir per run),
--report-name NAME (default: basename of the runtime), --report-dir DIR (default: conformance/reports).

Fixtures for tests
------------------
rt        the Runtime wrapper (rt.create/start/state/kill/delete/run, rt.features()).
oci       per-test helper: oci.bundle(args, edit) -> Bundle; oci.probe(*probe_args, edit=...) -> dict (runs a
          whole create/start/wait/delete cycle and returns what the probe printed); oci.new_id(); oci.created(b)
          -> Ctr (created container); oci.cleanup happens automatically (delete --force, kill, rm).
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

import pytest

from conformance import host
from conformance import report as _report
from conformance import rootless

HERE = os.path.dirname(os.path.abspath(__file__))
PROBE_SRC = os.path.join(HERE, "probe", "probe.c")
# (an unprivileged user -- rootless mode run directly -- builds its own, beside root's)
CACHE_DIR = os.environ.get("CONFORMANCE_CACHE", os.path.join(
    tempfile.gettempdir(), "oci-conformance-cache" + (f"-{os.geteuid()}" if os.geteuid() else "")))
CGROUP_PREFIX = "oci-conformance"

def pytest_addoption(parser):
    g = parser.getgroup("conformance")
    g.addoption("--runtime", default=None, help="runtime binary (default: `ocirun` on PATH)")
    g.addoption("--root", default=None, help="runtime state dir (--root); default: fresh tmp dir")
    g.addoption("--report-name", default=None, help="report basename (default: basename of --runtime)")
    g.addoption("--report-dir", default=os.path.join(HERE, "reports"))
    g.addoption("--rootless", action="store_true", default=False,
                help="rootless mode: run as this unprivileged user (conformance/rootless.py)")


def pytest_configure(config):
    rt = config.getoption("--runtime") or shutil.which("ocirun") or "ocirun"
    if os.sep in rt:
        rt = os.path.abspath(rt)
    config._conf_runtime = rt
    if config.getoption("--rootless"):
        if os.geteuid() == 0:
            raise pytest.UsageError("--rootless runs the suite as an unprivileged user: as root, use "
                                    "`conformance/run --rootless`, which creates one")
        rootless.activate()
    config.pluginmanager.register(_report.Reporter(config, rt), "conformance-reporter")


# ----------------------------------------------------------------------------------------------- runtime
class Result:
    def __init__(self, argv, rc, out, err, elapsed):
        self.argv, self.rc, self.stdout, self.stderr, self.elapsed = argv, rc, out, err, elapsed

    @property
    def ok(self):
        return self.rc == 0

    def __repr__(self):
        return str(self)

    def __str__(self):
        return (f"$ {' '.join(self.argv)}\n  exit={self.rc} ({self.elapsed:.2f}s)\n"
                f"  stdout={self.stdout.strip()[-800:]!r}\n  stderr={self.stderr.strip()[-800:]!r}")


class Runtime:
    def __init__(self, path, root):
        self.path, self.root = path, root
        self._features = None

    def argv(self, *args):
        return [self.path, "--root", self.root, *args]

    def run(self, *args, timeout=30, stdout=None, input=None, cwd=None, preexec=None):
        """Run one runtime command. stdout/stderr go to files (never pipes: `create` hands its stdio to the
        container, so a pipe would stay open until the container exits)."""
        argv = self.argv(*args)
        with tempfile.TemporaryFile("w+") as err, tempfile.TemporaryFile("w+") as tmpout:
            outf = open(stdout, "a") if stdout else tmpout
            t0 = time.monotonic()
            try:
                p = subprocess.run(argv, stdin=subprocess.DEVNULL if input is None else None, input=input,
                                   stdout=outf, stderr=err, timeout=timeout, cwd=cwd, text=True,
                                   preexec_fn=preexec)
                rc = p.returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
            finally:
                if stdout:
                    outf.close()
            elapsed = time.monotonic() - t0
            err.seek(0)
            tmpout.seek(0)
            out = "" if stdout else tmpout.read()
            return Result(argv, rc, out, err.read(), elapsed)

    def create(self, cid, bundle, console_socket=None, pid_file=None, stdout=None, preexec=None, timeout=30):
        args = ["create", "--bundle", bundle]
        if console_socket:
            args += ["--console-socket", console_socket]
        if pid_file:
            args += ["--pid-file", pid_file]
        return self.run(*args, cid, stdout=stdout, preexec=preexec, timeout=timeout)

    def start(self, cid, timeout=30):
        return self.run("start", cid, timeout=timeout)

    def kill(self, cid, sig="TERM"):
        return self.run("kill", cid, str(sig))

    def delete(self, cid, force=False):
        return self.run("delete", *(["--force"] if force else []), cid)

    def state(self, cid):
        """Parsed state JSON, or None when the runtime reports an error."""
        r = self.run("state", cid)
        if not r.ok:
            return None
        try:
            return json.loads(r.stdout)
        except ValueError:
            raise AssertionError(f"`state` printed something that is not JSON:\n{r}")

    def features(self):
        if self._features is None:
            r = self.run("features")
            try:
                self._features = json.loads(r.stdout) if r.ok else {}
            except ValueError:
                self._features = {}
        return self._features


# ----------------------------------------------------------------------------------------------- probe + rootfs
def _compile_probe():
    with open(PROBE_SRC, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    os.makedirs(CACHE_DIR, exist_ok=True)
    binary = os.path.join(CACHE_DIR, f"probe-{digest}")
    if not os.path.exists(binary):
        tmp = binary + f".{os.getpid()}"
        r = subprocess.run(["gcc", "-static", "-O2", "-o", tmp, PROBE_SRC], capture_output=True, text=True)
        if r.returncode != 0:
            raise pytest.UsageError("cannot build the probe with `gcc -static` (install gcc and libc6-dev, "
                                    f"whose libc.a static glibc is needed):\n{r.stderr}")
        os.rename(tmp, binary)
    return binary


@pytest.fixture(scope="session")
def probe_bin():
    return _compile_probe()


@pytest.fixture(scope="session")
def workdir(pytestconfig):
    """Per-run directory for bundles and the runtime's --root. It is a tmpfs made `shared`, so that mount
    propagation (rootfsPropagation, bind propagation options) is observable whatever the host's / is.
    Rootless: a plain directory under $TMPDIR (an unprivileged user cannot mount), 0755 like the tmpfs, so that a
    container root mapped to a subordinate id reaches the bundles."""
    if rootless.active():
        d = tempfile.mkdtemp(prefix="ocf-")
        os.chmod(d, 0o755)
        yield d
        rootless.remove_tree(d)
        return
    d = tempfile.mkdtemp(prefix="ocf-", dir="/tmp")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "ocf", d]).returncode == 0
    if mounted:
        subprocess.run(["mount", "--make-shared", d])
    yield d
    if mounted:
        subprocess.run(["umount", "-l", d])
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def rootfs_template(workdir, probe_bin):
    from ocirun.bundle import make_busybox_rootfs
    d = os.path.join(workdir, "rootfs-template")
    make_busybox_rootfs(d)
    shutil.copy2(probe_bin, os.path.join(d, "probe"))
    os.chmod(os.path.join(d, "probe"), 0o755)
    return d


@pytest.fixture(scope="session")
def rt(pytestconfig, workdir):
    root = pytestconfig.getoption("--root") or os.path.join(workdir, "state")
    os.makedirs(root, exist_ok=True)
    runtime = Runtime(pytestconfig._conf_runtime, root)
    if not (os.path.exists(runtime.path) or shutil.which(runtime.path)):
        raise pytest.UsageError(f"runtime {runtime.path} not found")
    return runtime


DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
DEFAULT_ENV = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin:/", "HOME=/root", "TERM=xterm"]


def base_config(args):
    """The suite's own minimal config: what every test starts from (rootless mode: as `runc spec --rootless`
    changes a config, conformance/rootless.py)."""
    cfg = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": list(DEFAULT_ENV),
            "cwd": "/",
            "capabilities": {k: list(DEFAULT_CAPS) for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": False,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "conformance",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
        },
    }
    return rootless.to_rootless(cfg) if rootless.active() else cfg


class Bundle:
    def __init__(self, path, config):
        self.path, self.config = path, config

    @property
    def rootfs(self):
        root = self.config.get("root", {}).get("path", "rootfs")
        return root if os.path.isabs(root) else os.path.join(self.path, root)

    def save(self):
        with open(os.path.join(self.path, "config.json"), "w") as f:
            json.dump(self.config, f, indent=2)

    def file(self, name):
        return os.path.join(self.path, name)


class Ctr:
    """A container this test created (by id) plus where its stdout goes."""

    def __init__(self, oci, cid, bundle, stdout, create_result):
        self.oci, self.id, self.bundle, self.stdout, self.create_result = oci, cid, bundle, stdout, create_result

    @property
    def rt(self):
        return self.oci.rt

    def state(self):
        return self.rt.state(self.id)

    def output(self):
        with open(self.stdout) as f:
            return f.read()

    def probe_output(self, timeout=15):
        """Wait for the probe's JSON line on the container's stdout and parse it."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.output()
            line = text.split("\n", 1)[0] if "\n" in text else None
            if line:
                return json.loads(line)
            st = self.state() if time.monotonic() > deadline - timeout + 1 else None
            if st is None and time.monotonic() > deadline - timeout + 1 or (st and st.get("status") == "stopped"):
                time.sleep(0.1)
                text = self.output()
                if "\n" in text:
                    continue
                raise AssertionError(f"the container exited without probe output (stdout {text!r}; state {st})")
            if time.monotonic() > deadline:
                raise AssertionError(f"the container printed no probe output within {timeout}s "
                                     f"(stdout so far {text!r}; state {self.state()})")
            time.sleep(0.02)

    def wait_stopped(self, timeout=15):
        deadline = time.monotonic() + timeout
        while True:
            st = self.state()
            if st is None or st.get("status") == "stopped":
                return st
            if time.monotonic() > deadline:
                raise AssertionError(f"container {self.id} not stopped after {timeout}s: {st}")
            time.sleep(0.03)


class Oci:
    def __init__(self, rt, workdir, rootfs_template, request):
        self.rt, self.workdir, self.template = rt, workdir, rootfs_template
        self.tag = uuid.uuid4().hex[:6]
        self.n = 0
        self.ids = []
        self.dirs = []
        self.cleanups = []
        self.request = request

    def new_id(self):
        self.n += 1
        cid = f"cf{self.tag}-{self.n}"
        self.ids.append(cid)
        return cid

    def bundle(self, args=("/probe",), edit=None, config=None):
        d = tempfile.mkdtemp(prefix=f"b{self.tag}-", dir=self.workdir)
        os.chmod(d, 0o755)  # a user-namespaced container's root must be able to reach its rootfs
        self.dirs.append(d)
        subprocess.run(["cp", "-a", self.template, os.path.join(d, "rootfs")], check=True)
        b = Bundle(d, config if config is not None else base_config(args))
        if edit:
            edit(b.config)
        if rootless.active():
            rootless.finish_config(b.config)
        b.save()
        return b

    def create(self, bundle=None, args=("/probe",), edit=None, expect_ok=True, cid=None, **kw):
        b = bundle or self.bundle(args, edit)
        cid = cid or self.new_id()
        out = os.path.join(b.path, f"stdout-{cid}")
        open(out, "w").close()
        r = self.rt.create(cid, b.path, stdout=out, **kw)
        if expect_ok:
            assert r.ok, f"create failed:\n{r}"
        return Ctr(self, cid, b, out, r)

    def run(self, bundle=None, args=("/probe",), edit=None, **kw):
        """create + start; returns the Ctr (still present: caller waits / deletes)."""
        c = self.create(bundle, args, edit, **kw)
        r = self.rt.start(c.id)
        assert r.ok, f"start failed:\n{r}"
        return c

    def probe(self, *probe_args, edit=None, bundle=None, delete=True):
        """Full lifecycle with the probe as process.args; returns the probe's JSON."""
        b = bundle or self.bundle(["/probe", *probe_args], edit)
        c = self.run(b)
        data = c.probe_output()
        if delete:
            c.wait_stopped()
            r = self.rt.delete(c.id)
            assert r.ok, f"delete of the stopped container failed:\n{r}"
        return data

    def add_cleanup(self, fn):
        self.cleanups.append(fn)

    def finish(self):
        for cid in self.ids:
            st = self.rt.state(cid)
            if st is not None:
                pid = st.get("pid") or 0
                self.rt.kill(cid, "KILL")
                self.rt.delete(cid, force=True)
                if self.rt.state(cid) is not None and pid > 0:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                    time.sleep(0.1)
                    self.rt.delete(cid, force=True)
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception:
                pass
        for d in self.dirs:
            if rootless.active():  # nothing of the host's to unmount; files a container made as a subordinate id
                rootless.remove_tree(d)
                continue
            subprocess.run(["umount", "-R", "-l", os.path.join(d, "rootfs")], capture_output=True)
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def host_refusal(rt, workdir, rootfs_template):
    """One smoke container per run. A runtime that refuses *this host* (crun on a cgroup v1/v2 hybrid host:
    "cgroups in hybrid mode not supported") makes every test a host skip with that message; any other
    failure is left to the tests, which then fail."""
    o = Oci(rt, workdir, rootfs_template, None)
    try:
        c = o.create(expect_ok=False)
        err = c.create_result.stderr.strip()
        if not c.create_result.ok and host.cgroup_mode() == "hybrid" and "hybrid" in err:
            return f"host: cgroup v1/v2 hybrid host refused by the runtime ({err.splitlines()[-1][:160]})"
        return None
    finally:
        o.finish()


@pytest.fixture
def oci(rt, workdir, rootfs_template, request, host_refusal):
    if host_refusal:
        pytest.skip(host_refusal)
    o = Oci(rt, workdir, rootfs_template, request)
    yield o
    o.finish()


@pytest.fixture(scope="session", autouse=True)
def _cgroup_sweep():
    yield
    if rootless.active():
        return  # an unprivileged run makes no cgroups of its own here, and must not touch a root run's
    # Leftover cgroups named by this suite (a runtime that leaks them already failed the delete tests).
    roots = set(host.cgroup_v1_controllers().values())
    if host.cgroup_v2_mount():
        roots.add(host.cgroup_v2_mount())
    for r in roots:
        for top in [n for n in os.listdir(r) if n.startswith(CGROUP_PREFIX)]:
            d = os.path.join(r, top)
            for sub in sorted(os.listdir(d)):
                if os.path.isdir(os.path.join(d, sub)):
                    try:
                        os.rmdir(os.path.join(d, sub))
                    except OSError:
                        pass
            try:
                os.rmdir(d)
            except OSError:
                pass


def cgroups_of(pid):
    """{controller-or-'': path} from /proc/PID/cgroup (v2 entry under key '')."""
    out = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(",") if ctrls else [""]:
                out[c] = path
    return out


def cgroup_read(pid, controller, v1_file, v2_file=None):
    """Read a resource file of PID's cgroup: the v1 hierarchy of `controller` if mounted, else cgroup v2.
    Returns (version, text) or (None, None) when the file is in neither."""
    cg = cgroups_of(pid)
    mnt = host.cgroup_v1_controllers().get(controller)
    if mnt and controller in cg:
        p = os.path.join(mnt, cg[controller].lstrip("/"), v1_file)
        if os.path.exists(p):
            with open(p) as f:
                return "v1", f.read().strip()
    v2 = host.cgroup_v2_mount()
    if v2 and v2_file and "" in cg:
        p = os.path.join(v2, cg[""].lstrip("/"), v2_file)
        if os.path.exists(p):
            with open(p) as f:
                return "v2", f.read().strip()
    return None, None
