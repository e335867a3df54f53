"""An isolated containerd for driving an OCI runtime through containerd's runc shim (io.containerd.runc.v2).

Everything containerd keeps lives in one temp dir (`ContainerdEnv.base`, /tmp/ocirun-ctrd-XXXX): its --root,
--state, the grpc/ttrpc/debug sockets, its config file, the `opt` plugin's dir (default /opt/containerd) and
its log. Containers run in a containerd namespace of their own (ocirun-<random>); `ctr run` puts them in the
cgroup /<namespace>/<id> of every hierarchy, so teardown removes exactly that subtree.

Deliberately NOT isolated (hard-coded in containerd 1.6 and its runc shim; teardown cleans it up):
  /run/containerd/s/<sha256>   the shim's ttrpc socket (socket dir hard-coded to /run/containerd/s);
  /run/containerd/runc/<ns>    the runtime's --root (the shim's default when `ctr run` gets no --runc-root).
teardown() removes the namespace's runtime root (after `RUNTIME --root DIR delete --force` for anything left)
and the parents /run/containerd/{s,runc,} when this environment created them and they are empty.

What containerd 1.6's runc shim calls on the runtime (seen with the logging wrapper below around runc):
    RUNTIME --root /run/containerd/runc/NS --log BUNDLE/log.json --log-format json \\
        create --bundle BUNDLE --pid-file BUNDLE/init.pid ID          (stdio: pipes or fifos from the shim)
    RUNTIME --root ... --log ... --log-format json start ID
    RUNTIME --root ... --log ... --log-format json exec --process /tmp/runc-process* --detach \\
        --pid-file BUNDLE/EXECID.pid ID
    RUNTIME --root ... --log ... --log-format json kill ID 15        (`ctr task kill`; numeric signal)
    RUNTIME --root ... --log ... --log-format json delete ID          (and `delete --force` on cleanup)
    (docker also makes it call: state, pause, resume, ps --format json, update --resources -, events --stats)
The shim runs the runtime with its own cwd (the bundle) and is the container's subreaper.

The logging wrapper: with OCIRUN_TEST_WRAP unset or "1", the engine is given `BASE/runtime-wrapper` instead of
the runtime; it appends argv, exit code and (for verbs that do not hand their stdio to a container) the
runtime's stderr to BASE/runtime-calls.log; `calls_tail()` returns the end of it for assertion messages.
OCIRUN_TEST_WRAP=0 hands the engine the runtime itself.

No pytest dependency: `python engine_containerd.py --runtime PATH -- run --rm IMAGE ID echo hi` runs one ctr
command in a fresh environment (IMAGE replaced by the test image) and tears it down.
"""
import hashlib
import io
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostmounts  # noqa: E402

IMAGE = "docker.io/library/ocirun-busybox:test"
CGROUP_ROOT = "/sys/fs/cgroup"
DEFAULT_TIMEOUT = 30
SHIM_STATE = "/run/containerd"  # hard-coded in containerd 1.6's shim (socket dir) and runc shim (runtime root)


# ------------------------------------------------------------------------------------------- requirements
def default_runtime():
    """OCIRUN_TEST_RUNTIME, else the console script next to this interpreter (the venv's), else PATH."""
    env = os.environ.get("OCIRUN_TEST_RUNTIME")
    if env:
        return env
    sibling = os.path.join(os.path.dirname(sys.executable), "ocirun")
    if os.access(sibling, os.X_OK):
        return sibling
    return shutil.which("ocirun")


def which(name, prefer=("/usr/bin", "/usr/sbin")):
    for d in prefer:
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return shutil.which(name)


def missing_requirements(runtime, tools=("containerd", "ctr", "containerd-shim-runc-v2")):
    why = []
    if os.geteuid() != 0:
        why.append("needs root")
    for t in tools:
        if not which(t):
            why.append(f"{t} not installed (apt-get install containerd)")
    if not runtime:
        why.append("no runtime (set OCIRUN_TEST_RUNTIME)")
    elif not os.access(runtime, os.X_OK):
        why.append(f"runtime {runtime} is not executable")
    return why


# ------------------------------------------------------------------------------------------- host helpers
read_mounts = hostmounts.read_mounts  # [(mount_id, mount_point, fstype, source)] of this mount namespace
has_overlay = hostmounts.has_overlay


def mounts_under(path):
    path = path.rstrip("/")
    return [m for m in read_mounts() if m[1] == path or m[1].startswith(path + "/")]


def unmount_under(path):
    """Unmount everything at or below path, deepest first; returns the mount points it found."""
    found = []
    for _ in range(5):
        ms = sorted({m[1] for m in mounts_under(path)}, key=lambda p: p.count("/"), reverse=True)
        if not ms:
            break
        for mp in ms:
            found.append(mp)
            if subprocess.run(["umount", mp], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", mp], capture_output=True)
    return sorted(set(found))


def procs_matching(needles, cgroup_needles=()):
    """{pid: cmdline} of live (non-zombie) processes whose cmdline contains one of needles (bytes) or whose
    /proc/PID/cgroup contains one of cgroup_needles (bytes)."""
    out = {}
    me = os.getpid()
    for ent in os.listdir("/proc"):
        if not ent.isdigit() or int(ent) == me:
            continue
        try:
            with open(f"/proc/{ent}/stat", "rb") as f:
                st = f.read()
            if st[st.rindex(b")") + 2:].split()[0] in (b"Z", b"X"):
                continue
            with open(f"/proc/{ent}/cmdline", "rb") as f:
                cmd = f.read()
            hit = any(n in cmd for n in needles)
            if not hit and cgroup_needles:
                with open(f"/proc/{ent}/cgroup", "rb") as f:
                    cg = f.read()
                hit = any(n in cg for n in cgroup_needles)
            if hit:
                out[int(ent)] = cmd.replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError):
            pass
    return out


def kill_procs(find, rounds=30):
    """SIGKILL what find() returns until it returns nothing; returns what it found the first time."""
    first = None
    for _ in range(rounds):
        ps = find()
        if first is None:
            first = dict(ps)
        if not ps:
            break
        for pid in ps:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.1)
    return first or {}


def cgroup_tree(rel):
    """Every dir of the cgroup /rel (and below) in every mounted hierarchy, deepest first."""
    rel = rel.strip("/")
    found = []
    for _mid, mp, fs, _src in read_mounts():
        if fs in ("cgroup", "cgroup2") and mp.startswith(CGROUP_ROOT + "/"):
            top = os.path.join(mp, rel)
            if os.path.isdir(top):
                for d, _dirs, _files in os.walk(top):
                    found.append(d)
    return sorted(set(found), key=lambda d: d.count("/"), reverse=True)


def remove_cgroup_tree(rel, tries=30):
    """rmdir the cgroup subtree /rel everywhere (retrying while busy); returns the dirs that remain."""
    left = []
    for _ in range(tries):
        left = []
        for d in cgroup_tree(rel):
            try:
                os.rmdir(d)
            except OSError:
                left.append(d)
        if not left:
            return []
        time.sleep(0.1)
    return left


def wait_pid_gone(pid, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def stop_process(proc, timeout=20):
    """SIGTERM a Popen, wait, SIGKILL after timeout. Returns a problem string or None."""
    if proc is None or proc.poll() is not None:
        return None
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
        return None
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        return f"{proc.args[0]} (pid {proc.pid}) ignored SIGTERM for {timeout}s; killed"


def wait_socket(path, proc, timeout, log):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{os.path.basename(proc.args[0])} exited {proc.returncode} before its socket "
                               f"{path} appeared; its log:\n{tail(log, 3000)}")
        if os.path.exists(path):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{path} did not appear within {timeout}s; log:\n{tail(log, 3000)}")


def tail(path, n=4000):
    try:
        with open(path, errors="replace") as f:
            data = f.read()
    except OSError:
        return ""
    return data[-n:]


class HostDirs:
    """Host paths an engine creates outside its own dirs, recorded before it starts, so teardown removes
    the ones it created (only when empty: another engine may be using them)."""

    def __init__(self, paths):
        self.paths = list(paths)
        self.existed = {p: os.path.lexists(p) for p in self.paths}

    def cleanup(self):
        """rmdir the ones that did not exist before (deepest first); returns those still present."""
        left = []
        for p in sorted(self.paths, key=lambda p: p.count("/"), reverse=True):
            if not self.existed[p] and os.path.lexists(p):
                try:
                    os.rmdir(p)
                except OSError:
                    left.append(p)
        return left


# ------------------------------------------------------------------------------------------- wrapper
WRAPPER = r"""#!/bin/sh
# Logging wrapper around an OCI runtime (made by the ocirun engine tests): argv, exit code, stderr.
RT=%(runtime)s
LOG=%(log)s
q=
for a in "$@"; do q="$q '$(printf %%s "$a" | sed "s/'/'\\\\''/g")'"; done
verb=
skip=
for a in "$@"; do
    if [ -n "$skip" ]; then skip=; continue; fi
    case "$a" in
        --root|-root|--log|-log|--log-format|-log-format|--criu|-criu|--rootless|-rootless) skip=1 ;;
        -*) ;;
        *) verb=$a; break ;;
    esac
done
echo "$$ $(date +%%T.%%N) argv:$q" >> "$LOG"
case "$verb" in
    create|run|exec|restore|events|"")
        "$RT" "$@"; rc=$? ;;
    *)
        err=$(mktemp "${TMPDIR:-/tmp}/ocirun-wrap.XXXXXX")
        "$RT" "$@" 2>"$err"; rc=$?
        if [ -s "$err" ]; then sed "s/^/$$   stderr: /" "$err" >> "$LOG"; cat "$err" >&2; fi
        rm -f "$err" ;;
esac
echo "$$ $(date +%%T.%%N) exit $rc ($verb)" >> "$LOG"
exit $rc
"""


def write_wrapper(base, runtime):
    path = os.path.join(base, "runtime-wrapper")
    log = os.path.join(base, "runtime-calls.log")
    with open(path, "w") as f:
        f.write(WRAPPER % {"runtime": shlex.quote(runtime), "log": shlex.quote(log)})
    os.chmod(path, 0o755)
    open(log, "a").close()
    return path, log


def failed_calls(log, since=0):
    """Runtime calls recorded by the wrapper in `log` after byte offset `since` that exited non-zero, each as
    its argv, stderr and exit lines."""
    with open(log, errors="replace") as f:
        f.seek(since)
        lines = f.read().splitlines()
    by_pid = {}
    for line in lines:
        pid, _, rest = line.partition(" ")
        by_pid.setdefault(pid, []).append(rest)
    bad = []
    for entries in by_pid.values():
        exits = [e for e in entries if " exit " in e and "argv:" not in e]
        if exits and not exits[-1].split(" exit ", 1)[1].startswith("0 "):
            bad.append("\n    ".join(entries))
    return bad


def wrap_enabled():
    return os.environ.get("OCIRUN_TEST_WRAP", "1") != "0"


# ------------------------------------------------------------------------------------------- OCI image
def goarch():
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x",
            "i686": "386", "riscv64": "riscv64"}.get(m, m)


def rootfs_tar_bytes(rootfs):
    """An uncompressed tar of the rootfs dir (entries relative, sorted, root-owned)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(os.listdir(rootfs)):
            tar.add(os.path.join(rootfs, name), arcname=name, filter=_root_owned)
    return buf.getvalue()


def _root_owned(ti):
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    ti.mtime = 0
    return ti


def write_rootfs_tar(rootfs, path):
    with open(path, "wb") as f:
        f.write(rootfs_tar_bytes(rootfs))
    return path


def write_oci_archive(rootfs, path, ref=IMAGE):
    """An OCI image-layout tarball (oci-layout, index.json, blobs/sha256/*) with one uncompressed layer of
    rootfs, tagged `ref` (io.containerd.image.name) for `ctr images import`."""
    layer = rootfs_tar_bytes(rootfs)
    layer_d = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": goarch(), "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [layer_d]},
        "history": [{"created_by": "ocirun tests: busybox rootfs"}],
    }, sort_keys=True).encode()
    config_d = "sha256:" + hashlib.sha256(config).hexdigest()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d,
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_d,
                    "size": len(layer)}],
    }, sort_keys=True).encode()
    manifest_d = "sha256:" + hashlib.sha256(manifest).hexdigest()
    index = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_d,
                       "size": len(manifest), "platform": {"architecture": goarch(), "os": "linux"},
                       "annotations": {"io.containerd.image.name": ref,
                                       "org.opencontainers.image.ref.name": ref.rpartition(":")[2]}}],
    }, sort_keys=True).encode()
    files = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index)]
    files += [("blobs/sha256/" + d.split(":")[1], b) for d, b in
              ((layer_d, layer), (config_d, config), (manifest_d, manifest))]
    with tarfile.open(path, "w") as tar:
        for d in ("blobs", "blobs/sha256"):
            ti = tarfile.TarInfo(d)
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            tar.addfile(ti)
        for name, data in files:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            tar.addfile(ti, io.BytesIO(data))
    return path


# ------------------------------------------------------------------------------------------- the env
class ContainerdEnv:
    """One containerd of our own. `runtime` is what `ctr run --runc-binary` gets (None: just a containerd,
    e.g. for dockerd's --containerd, which names its runtimes itself)."""

    def __init__(self, runtime=None, base=None, timeout=DEFAULT_TIMEOUT, prefix="ocirun-ctrd-", wrap=None,
                 namespace=None, cgroup_parent=None, runtime_root=None):
        self.runtime = os.path.abspath(runtime) if runtime else None
        self.base = base
        self.prefix = prefix
        self.timeout = timeout
        # a namespace of our own; its name is also the cgroup `ctr run` puts containers under (/NS/ID)
        self.namespace = namespace or "ocirun-" + uuid.uuid4().hex[:10]
        self.cgroup_parent = (cgroup_parent or "/" + self.namespace).strip("/")
        self._runtime_root = runtime_root
        self.proc = None
        self.image = IMAGE
        self.ids = set()
        self.wrap = wrap_enabled() if wrap is None else wrap
        self.engine_runtime = self.runtime  # what ctr passes as --runc-binary (the wrapper when wrapping)
        self.calls_log = None
        self.host_dirs = HostDirs([SHIM_STATE, SHIM_STATE + "/s", SHIM_STATE + "/runc", SHIM_STATE + "/fifo",
                                   "/opt/containerd", "/var/lib/containerd"])

    def p(self, *parts):
        return os.path.join(self.base, *parts)

    @property
    def address(self):
        return self.p("containerd.sock")

    @property
    def runtime_root(self):
        """The runtime --root the runc shim uses for our namespace (its default: not configurable by ctr
        without --runc-root, which we do not pass, to exercise what engines normally do)."""
        return self._runtime_root or os.path.join(SHIM_STATE, "runc", self.namespace)

    # -- setup
    def setup(self, with_image=True):
        if self.base is None:
            self.base = tempfile.mkdtemp(prefix=self.prefix, dir="/tmp")
            os.chmod(self.base, 0o755)
        for d in ("root", "state", "opt", "tmp", "fifo"):
            os.makedirs(self.p(d), exist_ok=True)
        if self.runtime and self.wrap:
            self.engine_runtime, self.calls_log = write_wrapper(self.base, self.runtime)
        with open(self.p("config.toml"), "w") as f:
            f.write(self.config_toml())
        env = dict(os.environ, TMPDIR=self.p("tmp"))
        log = open(self.p("containerd.log"), "ab")
        try:
            self.proc = subprocess.Popen(
                [which("containerd"), "--config", self.p("config.toml"), "--log-level", "info"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        finally:
            log.close()
        wait_socket(self.address, self.proc, 20, self.p("containerd.log"))
        # the socket appears before all services are registered: wait until ctr gets an answer
        end = time.monotonic() + 20
        while True:
            res = self.ctr("version", timeout=10)
            if res.returncode == 0:
                break
            if time.monotonic() > end:
                raise RuntimeError(f"containerd does not answer: {res.stderr}\n{tail(self.p('containerd.log'))}")
            time.sleep(0.1)
        if with_image and self.runtime:
            self.import_image()
        return self

    def config_toml(self):
        return f"""\
version = 2
root = "{self.p('root')}"
state = "{self.p('state')}"
oom_score = 0
# nothing that talks to the network, nothing this host cannot do
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{self.address}"

[ttrpc]
  address = "{self.p('containerd.sock.ttrpc')}"

[debug]
  address = "{self.p('debug.sock')}"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{self.p('opt')}"
  [plugins."io.containerd.runtime.v1.linux"]
    runtime_root = "{self.p('v1-runtime-root')}"
"""

    def import_image(self):
        from ocirun.bundle import make_busybox_rootfs

        rootfs = make_busybox_rootfs(self.p("rootfs"))
        archive = write_oci_archive(rootfs, self.p("image.tar"), self.image)
        res = self.ctr("images", "import", archive, timeout=60)
        if res.returncode != 0:
            raise RuntimeError(f"ctr images import failed: {res.stderr}")
        os.unlink(archive)
        shutil.rmtree(self.p("rootfs"))

    # -- ctr
    def ctr(self, *args, timeout=None, input=None, namespace=None):
        argv = [which("ctr"), "--address", self.address, "--namespace", namespace or self.namespace,
                *map(str, args)]
        try:
            return subprocess.run(argv, input=input, capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL if input is None else None,
                                  timeout=timeout or self.timeout, env=dict(os.environ, TMPDIR=self.p("tmp")))
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"ctr timed out after {e.timeout}s: {' '.join(map(str, args))}\n"
                                 f"stdout: {e.stdout!r}\nstderr: {e.stderr!r}\n"
                                 f"runtime calls:\n{self.calls_tail()}") from None

    def run(self, *args, rid=None, opts=(), timeout=None):
        """`ctr run --runc-binary RUNTIME [opts] IMAGE ID args...`; returns (CompletedProcess, id)."""
        rid = rid or "c" + uuid.uuid4().hex[:10]
        self.ids.add(rid)
        res = self.ctr("run", "--runc-binary", self.engine_runtime, "--fifo-dir", self.p("fifo"), *opts,
                       self.image, rid, *args, timeout=timeout)
        return res, rid

    def calls_tail(self, n=6000):
        return tail(self.calls_log, n) if self.calls_log else "(no logging wrapper: OCIRUN_TEST_WRAP=0)"

    # -- teardown
    def our_procs(self):
        """Shims (their -address is under base) and containers (in our cgroup parent)."""
        needles = [self.base.encode()] if self.base else []
        return procs_matching(needles, cgroup_needles=[f":/{self.cgroup_parent}/".encode(),
                                                       f":/{self.cgroup_parent}\n".encode()])

    def teardown(self):
        problems = []
        if self.base is None:
            return problems
        if self.proc is not None and self.proc.poll() is None:
            problems += self._remove_containers()
        err = stop_process(self.proc)
        if err:
            problems.append(err)
        left = kill_procs(self.our_procs)
        if left:
            problems.append(f"processes left after containerd stopped: {left}")
        problems += self._clean_runtime_root()
        for mp in unmount_under(self.base):
            problems.append(f"mount left under {self.base}: {mp}")
        for mp in unmount_under(self.runtime_root):
            problems.append(f"mount left under {self.runtime_root}: {mp}")
        left = remove_cgroup_tree(self.cgroup_parent)
        if left:
            problems.append(f"cgroups not removable: {left}")
        if self.base and os.path.isdir(self.base) and not mounts_under(self.base):
            shutil.rmtree(self.base, ignore_errors=True)
        # /run/containerd/{s,runc,fifo}: removed when we made them and they are empty (another containerd may
        # use them); leaks() reports what is left that is ours
        self.host_dirs.cleanup()
        return problems

    def _remove_containers(self):
        problems = []
        try:
            res = self.ctr("tasks", "ls", "-q", timeout=15)
            for tid in res.stdout.split():
                self.ids.add(tid)
                self.ctr("tasks", "kill", "-s", "SIGKILL", tid, timeout=15)
            if res.stdout.split():
                time.sleep(0.2)
            for tid in res.stdout.split():
                r = self.ctr("tasks", "delete", "-f", tid, timeout=15)
                if r.returncode != 0 and "not found" not in r.stderr:
                    problems.append(f"ctr tasks delete -f {tid}: {r.stderr.strip()}")
            res = self.ctr("containers", "ls", "-q", timeout=15)
            for c in res.stdout.split():
                self.ids.add(c)
                r = self.ctr("containers", "rm", c, timeout=15)
                if r.returncode != 0:
                    problems.append(f"ctr containers rm {c}: {r.stderr.strip()}")
        except AssertionError as e:
            problems.append(str(e).splitlines()[0])
        return problems

    def _clean_runtime_root(self):
        problems = []
        root = self.runtime_root
        if os.path.isdir(root):
            for cid in os.listdir(root):
                problems.append(f"runtime state left: {root}/{cid}")
                if self.runtime:
                    try:
                        subprocess.run([self.runtime, "--root", root, "delete", "--force", cid],
                                       capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
                    except subprocess.TimeoutExpired:
                        problems.append(f"{self.runtime} delete --force {cid} timed out")
            for mp in unmount_under(root):
                problems.append(f"mount left under {root}: {mp}")
            shutil.rmtree(root, ignore_errors=True)
        return problems

    def leaks(self):
        found = []
        if self.base and os.path.exists(self.base):
            found.append(f"containerd dir {self.base} still exists")
        for d in cgroup_tree(self.cgroup_parent):
            found.append(f"cgroup {d}")
        for pid, cmd in self.our_procs().items():
            found.append(f"process {pid}: {cmd}")
        for _mid, mp, fs, src in read_mounts():
            if (self.base and self.base in mp) or mp.startswith(self.runtime_root + "/") or any(
                    f"/{i}/" in mp + "/" for i in self.ids):
                found.append(f"mount {mp} ({fs} {src})")
        if os.path.exists(self.runtime_root):
            found.append(f"runtime root {self.runtime_root}")
        for p in self.host_dirs.paths:
            if not self.host_dirs.existed[p] and os.path.lexists(p):
                try:
                    if not os.listdir(p):
                        found.append(f"host dir {p} created and left behind")
                except OSError:
                    pass
        return found


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description="run one ctr command in a throwaway isolated containerd")
    ap.add_argument("--runtime", default=default_runtime())
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("args", nargs=argparse.REMAINDER)
    ns = ap.parse_args(argv)
    args = [a for a in ns.args if a != "--"]
    why = missing_requirements(ns.runtime)
    if why:
        print("cannot run: " + "; ".join(why), file=sys.stderr)
        return 2
    env = ContainerdEnv(ns.runtime)
    rc = 0
    try:
        env.setup()
        args = [env.image if a == "IMAGE" else a for a in args]
        if args and args[0] == "run":
            args = ["run", "--runc-binary", env.engine_runtime, "--fifo-dir", env.p("fifo"), *args[1:]]
        res = env.ctr(*args)
        sys.stdout.write(res.stdout)
        sys.stderr.write(res.stderr)
        rc = res.returncode
        if env.calls_log:
            sys.stderr.write("runtime calls:\n" + env.calls_tail())
    finally:
        if ns.keep:
            print(f"kept {env.base}", file=sys.stderr)
        else:
            for p in env.teardown() + env.leaks():
                print("teardown: " + p, file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
