"""The engine test bed: what every engine harness here shares (podman_env, engine_docker, engine_containerd, and
the coming CRI and rootless podman ones). Each engine's module subclasses `EngineBed` and keeps only what
differs: its daemon's command line, its config file, how it registers a runtime, how its client is invoked and
how it removes its containers.

EngineBed(name, runtime=None, base=None, timeout=30, wrap=False, cgroup_parent=None)
    dirs      make_base(*subdirs) makes the private dir BASE (/tmp/ocirun-NAME-XXXX, 0755, or `base`) and its
              subdirs; p(*parts) is a path in it. Every daemon's state, config, run dir, sockets and logs go
              there. cgroup_parent (default /ocirun-NAME-RANDOM) is where the engine is told to put containers.
    runtimes  register_runtime(name, path, wrap=None) -> the path to hand the engine: the logging wrapper
              BASE/wrap/NAME around `path` when wrapping (OCIRUN_TEST_WRAP, see WRAPPER), else `path`. The
              engine module writes `runtimes` {name: path} in its own syntax. calls_tail(n) is the end of the
              wrapper's record BASE/runtime-calls.log (for assertion messages).
    daemons   start_daemon(name, argv, socket, env=None, timeout=30) -> Daemon: started in its own session with
              stdout+stderr in BASE/NAME.log, waited for until `socket` exists (bounded; the log's tail is in the
              error when it dies or times out). wait_ready(daemon, probe, timeout) polls probe() (a client call)
              until it exits 0. Daemons are stopped by teardown: SIGTERM, SIGKILL after stop_timeout.
    client    run_client(what, argv, args, env=None, timeout=None, input=None, check=False, fail_fast=True):
              every client call has a timeout; after MAX_TIMEOUTS timed-out calls the rest fail fast. A bed whose
              client runs as another user (rootless podman) sets client_user = (uid, gid) (no supplementary
              groups) and client_cwd; both default to None: the caller's identity and working directory.
    image     import_image(kind, load): a busybox-static rootfs (ocirun.bundle.make_busybox_rootfs, nothing
              pulled) as a rootfs tarball (kind "tar", for `docker/podman import`) or an OCI image-layout
              archive tagged self.image (kind "oci", for `ctr images import`); load(path) imports it.
    teardown  teardown() -> [problems]: remove_containers() (engine's, through its client) -> stop daemons ->
              after_daemons_stopped() -> SIGKILL what is left of the bed's processes -> clean_runtime_state()
              -> unmount everything under BASE and extra_dirs() (deepest first; expected_mounts() are removed
              without complaint) -> rmdir the cgroup_parent tree -> remove BASE -> rmdir the host_paths the
              engine created outside BASE (when empty) -> after_teardown().
    leaks     leaks(snapshot=None) -> what is left on the host that is the bed's: BASE, cgroups under
              cgroup_parent, processes (BASE or a full container id on their command line, or in
              cgroup_parent), mounts under BASE or extra_dirs() or naming one of `ids`, host_paths created and
              left, extra_leaks(); with a HostSnapshot, also new mounts under /tmp or /run not attributable to
              another engine.
    hooks     remove_containers, after_daemons_stopped, clean_runtime_state, expected_mounts, extra_dirs,
              after_teardown, extra_leaks (each returns [] / set() / () by default).

pytest glue: `yield from serve(env)` is the body of an engine's fixture (set up, hand over, tear down, fail if
anything is left). Script glue: cli_main(...) is each harness's `python MODULE.py --runtime R -- ARGS`.
Standard library only (the harnesses also run as scripts).
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

CGROUP_ROOT = "/sys/fs/cgroup"
DEFAULT_TIMEOUT = 30  # per client call; a healthy run/exec/stop takes well under 3 s here
MAX_TIMEOUTS = 2
# default state dirs of engines other than ours: their mounts are never attributable to a bed
FOREIGN_ENGINE_DIRS = ("/run/containers/storage/", "/var/lib/containers/storage/", "/run/netns/")


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


def missing_requirements(runtime, tools=(), hint=""):
    """Why an engine test cannot run here (a list of strings; empty when it can)."""
    why = []
    if os.geteuid() != 0:
        why.append("needs root")
    for t in tools:
        if not which(t):
            why.append(f"{t} not installed" + (f" ({hint})" if hint else ""))
    if not runtime:
        why.append("no runtime (set OCIRUN_TEST_RUNTIME or put ocirun on PATH)")
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
    if not rel:
        raise ValueError("cgroup_tree of the root cgroup")
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

    def created(self):
        """The ones that did not exist before and exist now."""
        return [p for p in self.paths if not self.existed[p] and os.path.lexists(p)]


class HostSnapshot:
    """The host's mounts at one moment (before an engine session), to diff against after teardown."""

    def __init__(self):
        self.mounts = {m[0]: m for m in read_mounts()}

    def new_mounts(self):
        return [m for m in read_mounts() if m[0] not in self.mounts]


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


def write_wrapper(path, runtime, log):
    """The logging wrapper at `path` around `runtime`, recording in `log`."""
    with open(path, "w") as f:
        f.write(WRAPPER % {"runtime": shlex.quote(runtime), "log": shlex.quote(log)})
    os.chmod(path, 0o755)
    open(log, "a").close()
    return path


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


# ------------------------------------------------------------------------------------------- images
def make_rootfs(path):
    """A busybox-static rootfs at path (nothing pulled)."""
    from ocirun.bundle import make_busybox_rootfs

    return make_busybox_rootfs(path)


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


def write_oci_archive(rootfs, path, ref, image_config=None):
    """An OCI image-layout tarball (oci-layout, index.json, blobs/sha256/*) with one uncompressed layer of
    rootfs, tagged `ref` (io.containerd.image.name) for `ctr images import`. image_config: keys merged into the
    image config's "config" (e.g. {"Entrypoint": [...]}); default Env PATH, Cmd ["sh"], WorkingDir /."""
    layer = rootfs_tar_bytes(rootfs)
    layer_d = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": goarch(), "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["sh"], "WorkingDir": "/", **(image_config or {})},
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


# ------------------------------------------------------------------------------------------- daemons
class Daemon:
    """One daemon process of a bed, its stdout and stderr in `log`."""

    def __init__(self, name, argv, log, env=None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log = log
        self.env = env
        self.proc = None

    def start(self, socket=None, timeout=30):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        if socket:
            wait_socket(socket, self.proc, timeout, self.log)
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=20):
        """SIGTERM, SIGKILL after timeout; a problem string or None."""
        return stop_process(self.proc, timeout)

    def log_tail(self, n=4000):
        return tail(self.log, n)


# ------------------------------------------------------------------------------------------- the bed
def _is_full_id(i):
    return len(i) == 64 and all(c in "0123456789abcdef" for c in i)


class EngineBed:
    """Base class of one engine's isolated environment (see the module doc)."""

    host_paths = ()            # host paths the engine makes outside BASE (removed when it made them, if empty)
    host_paths_strict = False  # True: one of them left behind (even not empty) is a problem of this bed
    host_paths_ignored = ()    # ...except these (e.g. /etc/docker, which Debian's docker.io ships)
    stop_timeout = 20          # seconds between a daemon's SIGTERM and its SIGKILL
    image = None               # the engine's name of the imported busybox image
    client_user = None         # (uid, gid): run client calls as that user, no supplementary groups (rootless)
    client_cwd = None          # working directory of client calls (None: the caller's)

    def __init__(self, name, runtime=None, base=None, timeout=DEFAULT_TIMEOUT, wrap=False, cgroup_parent=None):
        self.name = name
        self.runtime = os.path.abspath(runtime) if runtime else None
        self.base = base
        self.timeout = timeout
        self.wrap = wrap
        self.cgroup_parent = cgroup_parent or f"/ocirun-{name}-" + uuid.uuid4().hex[:10]
        self.ids = set()      # every container id seen (leak checks)
        self.timeouts = 0     # client calls that timed out
        self.env = None       # the client's environment
        self.daemons = []
        self.runtimes = {}    # name -> path the engine is given
        self.calls_log = None
        self.host_dirs = HostDirs(self.host_paths)

    # -- dirs
    def p(self, *parts):
        return os.path.join(self.base, *parts)

    def make_base(self, *subdirs):
        if self.base is None:
            self.base = tempfile.mkdtemp(prefix=f"ocirun-{self.name}-", dir="/tmp")
            os.chmod(self.base, 0o755)
        os.makedirs(self.base, exist_ok=True)
        for d in subdirs:
            os.makedirs(self.p(d), exist_ok=True)
        return self.base

    # -- runtimes
    def register_runtime(self, name, path, wrap=None):
        """Record `path` as the runtime the engine knows as `name`; returns what to give the engine (the logging
        wrapper BASE/wrap/NAME around it when wrapping)."""
        given = os.path.abspath(path)
        if self.wrap if wrap is None else wrap:
            os.makedirs(self.p("wrap"), exist_ok=True)
            self.calls_log = self.p("runtime-calls.log")
            given = write_wrapper(self.p("wrap", name), given, self.calls_log)
        self.runtimes[name] = given
        return given

    def calls_tail(self, n=6000):
        return tail(self.calls_log, n) if self.calls_log else "(no logging wrapper: OCIRUN_TEST_WRAP=0)"

    # -- daemons
    def start_daemon(self, name, argv, socket, env=None, timeout=30):
        d = Daemon(name, argv, self.p(name + ".log"), env=env)
        self.daemons.append(d)
        return d.start(socket, timeout)

    def wait_ready(self, daemon, probe, timeout=30):
        """Poll probe() (a CompletedProcess) until it exits 0; RuntimeError with the daemon's log when the
        daemon dies or `timeout` passes."""
        end = time.monotonic() + timeout
        while True:
            res = probe()
            if res.returncode == 0:
                return res
            if not daemon.alive() or time.monotonic() > end:
                raise RuntimeError(f"{daemon.name} does not answer: {res.stderr}\n{daemon.log_tail()}")
            time.sleep(0.1)

    def daemons_alive(self):
        return bool(self.daemons) and all(d.alive() for d in self.daemons)

    # -- client
    def run_client(self, what, argv, args, env=None, timeout=None, input=None, check=False, fail_fast=True):
        """Run one client command (argv; `args` is its engine part, for messages) with a timeout; returns a
        CompletedProcess with text outputs."""
        shown = " ".join(map(str, args))
        if fail_fast and self.timeouts >= MAX_TIMEOUTS:
            raise AssertionError(f"not running {what} {shown.split(' ')[0]}: {self.timeouts} earlier {what} calls "
                                 f"timed out, the runtime is presumed hung (fail fast to keep the session short)")
        as_user = {}
        if self.client_user is not None:
            as_user = dict(user=self.client_user[0], group=self.client_user[1], extra_groups=[])
        try:
            res = subprocess.run([str(a) for a in argv], env=env or self.env, input=input, capture_output=True,
                                 text=True, stdin=subprocess.DEVNULL if input is None else None,
                                 timeout=timeout or self.timeout, cwd=self.client_cwd, **as_user)
        except subprocess.TimeoutExpired as e:
            self.timeouts += 1
            calls = f"\nruntime calls (tail):\n{self.calls_tail(3000)}" if self.calls_log else ""
            raise AssertionError(f"{what} timed out after {e.timeout}s: {shown}\n"
                                 f"stdout: {e.stdout!r}\nstderr: {e.stderr!r}{calls}") from None
        if check and res.returncode != 0:
            raise AssertionError(f"{what} {shown} exited {res.returncode}\nstdout: {res.stdout}\n"
                                 f"stderr: {res.stderr}")
        return res

    # -- image
    def import_image(self, kind, load, image_config=None):
        """Build the busybox image file (kind "tar": a rootfs tarball; "oci": an OCI image-layout archive tagged
        self.image, its config's "config" updated with image_config), call load(path), then remove the file and
        the rootfs."""
        rootfs = make_rootfs(self.p("rootfs"))
        if kind == "tar":
            path = write_rootfs_tar(rootfs, self.p("rootfs.tar"))
        elif kind == "oci":
            path = write_oci_archive(rootfs, self.p("image.tar"), self.image, image_config)
        else:
            raise ValueError(f"image kind {kind!r}")
        load(path)
        os.unlink(path)
        shutil.rmtree(rootfs)

    # -- what is the bed's
    def our_procs(self):
        """{pid: cmdline} of the bed's live processes: BASE or a full container id on their command line (the
        daemons, shims, conmon, orphaned runtime calls), or in the cgroup parent (containers)."""
        needles = [self.base.encode()] if self.base else []
        needles += [i.encode() for i in self.ids if _is_full_id(i)]
        cg = self.cgroup_parent.strip("/")
        return procs_matching(needles, cgroup_needles=[f":/{cg}/".encode(), f":/{cg}\n".encode()])

    def owns_mount(self, mp, src):
        if (self.base and self.base in mp) or any(mp.startswith(d.rstrip("/") + "/") for d in self.extra_dirs()):
            return True
        for i in self.ids:
            if f"/{i}/" in mp + "/" or (_is_full_id(i) and (i in mp or i in src)):
                return True
        return False

    # -- teardown
    def teardown(self):
        """Remove everything this bed made. Returns the problems met on the way (empty = clean)."""
        problems = []
        if self.base is None:
            return problems
        problems += self.remove_containers()
        for d in reversed(self.daemons):
            err = d.stop(self.stop_timeout)
            if err:
                problems.append(err)
        problems += self.after_daemons_stopped()
        left = kill_procs(self.our_procs)
        if left:
            problems.append(f"processes of the {self.name} bed left after its engine stopped: {left}")
        problems += self.clean_runtime_state()
        expected = self.expected_mounts()
        for top in (self.base, *self.extra_dirs()):
            for mp in unmount_under(top):
                if mp not in expected:
                    problems.append(f"mount left under {top}: {mp}")
        left = remove_cgroup_tree(self.cgroup_parent)
        if left:
            problems.append(f"cgroups not removable: {left}")
        if os.path.isdir(self.base) and not mounts_under(self.base):
            shutil.rmtree(self.base, ignore_errors=True)
        if os.path.exists(self.base):
            problems.append(f"{self.base} not removed")
        left = self.host_dirs.cleanup()
        if self.host_paths_strict:
            problems += [f"host dir left (not empty): {p}" for p in left if p not in self.host_paths_ignored]
        problems += self.after_teardown()
        return problems

    def leaks(self, snapshot=None):
        """What is left on the host that is attributable to this bed (call after teardown)."""
        found = []
        if self.base and os.path.exists(self.base):
            found.append(f"{self.name} dir {self.base} still exists")
        for d in cgroup_tree(self.cgroup_parent):
            found.append(f"cgroup {d}")
        for pid, cmd in self.our_procs().items():
            found.append(f"process {pid}: {cmd}")
        for _mid, mp, fs, src in read_mounts():
            if self.owns_mount(mp, src):
                found.append(f"mount {mp} ({fs} {src})")
        for p in self.host_dirs.created():
            if p in self.host_paths_ignored:
                continue
            if self.host_paths_strict or _empty_dir(p):
                found.append(f"host path {p} created and left behind")
        found += self.extra_leaks()
        if snapshot is not None:
            for _mid, mp, fs, src in snapshot.new_mounts():
                if mp.startswith(("/tmp/", "/run/")) or mp in ("/tmp", "/run"):
                    if self.owns_mount(mp, src):
                        continue  # already reported above
                    if mp.startswith(FOREIGN_ENGINE_DIRS):
                        continue  # another engine on the host (default podman storage), not ours
                    found.append(f"new mount under /tmp or /run: {mp} ({fs} {src})")
        return found

    # -- hooks (the engine module's)
    def remove_containers(self):
        """Remove the engine's containers through its client (while its daemons run); [problems]."""
        return []

    def after_daemons_stopped(self):
        return []

    def clean_runtime_state(self):
        """Remove runtime state the engine left outside BASE (asking the runtime itself); [problems]."""
        return []

    def expected_mounts(self):
        """Mount points under BASE the engine itself makes and may leave (removed, not reported)."""
        return set()

    def extra_dirs(self):
        """Dirs outside BASE that are the bed's alone (unmounted at teardown, their mounts are leaks)."""
        return ()

    def after_teardown(self):
        return []

    def extra_leaks(self):
        return []


def _empty_dir(p):
    try:
        return not os.listdir(p)
    except OSError:
        return False


# ------------------------------------------------------------------------------------------- glue
def serve(env, snapshot=None):
    """The body of an engine's pytest fixture: `yield from serve(Env(RUNTIME))`. A bed that cannot start fails
    the tests that use it (not a skip: with its log as the reason); teardown fails them if anything is left."""
    import pytest

    try:
        env.setup()
    except Exception as e:
        problems = env.teardown()
        pytest.fail(f"the {env.name} bed could not start: {e}\n" + (f"teardown: {problems}\n" if problems else ""),
                    pytrace=False)
    except BaseException:
        env.teardown()
        raise
    yield env
    problems = env.teardown()
    leaks = env.leaks(snapshot)
    assert not problems and not leaks, f"{env.name} teardown was not clean:\n  " + "\n  ".join(problems + leaks)


def cli_main(argv, description, make_env, missing, call, run_flags=lambda env: (), snapshot=False):
    """`python MODULE.py --runtime PATH [--keep] -- ARGS`: one client command in a throwaway bed (IMAGE in ARGS
    is the imported image; `run` gets run_flags(env) after it), then teardown and leak report."""
    import argparse

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--runtime", default=default_runtime())
    ap.add_argument("--keep", action="store_true", help="do not tear down (prints the base dir)")
    ap.add_argument("args", nargs=argparse.REMAINDER, help="client arguments; IMAGE is the test image")
    ns = ap.parse_args(argv)
    args = [a for a in ns.args if a != "--"]
    why = missing(ns.runtime)
    if why:
        print("cannot run: " + "; ".join(why), file=sys.stderr)
        return 2
    snap = HostSnapshot() if snapshot else None
    env = make_env(ns.runtime)
    rc = 0
    try:
        env.setup()
        args = [env.image if a == "IMAGE" else a for a in args]
        if args and args[0] == "run":
            args = ["run", *run_flags(env), *args[1:]]
        res = call(env, args)
        sys.stdout.write(res.stdout)
        sys.stderr.write(res.stderr)
        rc = res.returncode
        if env.calls_log:
            sys.stderr.write("runtime calls:\n" + env.calls_tail())
    finally:
        if ns.keep:
            print(f"kept {env.base}", file=sys.stderr)
        else:
            for p in env.teardown() + env.leaks(snap):
                print("teardown: " + p, file=sys.stderr)
    return rc
