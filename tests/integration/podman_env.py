"""An isolated podman for driving an OCI runtime through `podman --runtime PATH`.

Everything podman keeps lives in one temp dir (`PodmanEnv.base`): storage (--root), run state (--runroot),
libpod's tmp dir (--tmpdir, which also holds the file-based locks and the exit files), the events log,
containers.conf / storage.conf / registries.conf (via CONTAINERS_CONF, CONTAINERS_STORAGE_CONF,
CONTAINERS_REGISTRIES_CONF) and TMPDIR. Containers run with --network none, --cgroup-manager cgroupfs under
a cgroup parent of their own (/ocirun-podman-<random>, which also holds podman's conmon cgroup), so teardown
can remove every cgroup it made.

Deliberately NOT isolated: podman 4.3 has no knob for
containers/image's blob-info cache, so `podman import` writes /var/lib/containers/cache/blob-info-cache-v1.boltdb,
and the runtime keeps its state under its own default root (/run/runc, /run/crun, ocirun's default), because
podman does not pass --runtime-flag to `RUNTIME delete`, so a custom --root would leave state behind.
The runtime deletes its own state dir on `delete`; `leaks()` checks that no state dir named after one of our
containers is left in /run/*/.

What podman 4.3 + conmon call on the runtime (seen with a logging wrapper around runc; the runtime is named
after the basename of its path, and is put in runtime_supports_json so it gets the json log flags):
    RUNTIME --log-format=json --log FILE create --bundle DIR --pid-file FILE ID   (child of conmon, stdio pipes)
    RUNTIME start ID
    RUNTIME --log-format=json --log FILE exec --pid-file FILE --process FILE --detach ID
    RUNTIME kill ID 15 / RUNTIME kill ID 9     (numeric signals)
    RUNTIME delete --force ID
The runtime's environment from conmon has PATH, HOME, CONTAINERS_CONF, an empty XDG_RUNTIME_DIR, and
_OCI_SYNCPIPE=3 _OCI_STARTPIPE=4 (conmon's own fds, inherited by the runtime: they must not reach the
container). No `state` calls: podman reads the pid file and conmon's exit file.

This file has no pytest dependency; `python podman_env.py --runtime PATH -- run --rm IMAGE echo hi` runs one
podman command in a fresh environment and tears it down (IMAGE is replaced by the imported image).
"""
import json
import os
import re
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

IMAGE = "localhost/ocirun-busybox:test"
ULIMITS = ("--ulimit", "nofile=1024:20000", "--ulimit", "nproc=1024:1024")
CGROUP_ROOT = "/sys/fs/cgroup"
DEFAULT_TIMEOUT = 30  # per podman call; a healthy run/exec/stop takes well under 3 s here
MAX_TIMEOUTS = 2
# default state dirs of engines other than ours: their mounts are never attributable to this environment
FOREIGN_ENGINE_DIRS = ("/run/containers/storage/", "/var/lib/containers/storage/", "/run/netns/")


def default_runtime():
    """OCIRUN_TEST_RUNTIME, else `ocirun` on PATH, else the console script next to this interpreter."""
    env = os.environ.get("OCIRUN_TEST_RUNTIME")
    if env:
        return env
    found = shutil.which("ocirun")
    if found:
        return found
    sibling = os.path.join(os.path.dirname(sys.executable), "ocirun")
    return sibling if os.access(sibling, os.X_OK) else None


def missing_requirements(runtime):
    """Why an engine test cannot run here (a list of strings; empty when it can)."""
    why = []
    if os.geteuid() != 0:
        why.append("needs root")
    for tool in ("podman", "conmon"):
        if not shutil.which(tool) and not os.path.exists("/usr/bin/" + tool):
            why.append(f"{tool} not installed")
    if not runtime:
        why.append("no runtime (set OCIRUN_TEST_RUNTIME or put ocirun on PATH)")
    elif not os.access(runtime, os.X_OK):
        why.append(f"runtime {runtime} is not executable")
    return why


# ---------------------------------------------------------------- host snapshots (leak checks)

read_mounts = hostmounts.read_mounts  # [(mount_id, mount_point, fstype, source)] from /proc/self/mountinfo


class HostSnapshot:
    """What the host looks like before an engine session, to diff against after teardown."""

    def __init__(self):
        self.mounts = {m[0]: m for m in read_mounts()}

    def new_mounts(self):
        return [m for m in read_mounts() if m[0] not in self.mounts]


# ---------------------------------------------------------------- the environment

class PodmanEnv:
    def __init__(self, runtime, base=None, storage_driver=None, timeout=DEFAULT_TIMEOUT, runtime_json=None):
        self.runtime = os.path.abspath(runtime)
        self.base = base
        self.timeout = timeout
        self.storage_driver = storage_driver or os.environ.get("OCIRUN_TEST_STORAGE_DRIVER") or (
            "overlay" if hostmounts.has_overlay() else "vfs")
        if runtime_json is None:
            runtime_json = os.environ.get("OCIRUN_TEST_RUNTIME_JSON", "1") != "0"
        self.runtime_json = runtime_json
        self.cgroup_parent = "/ocirun-podman-" + uuid.uuid4().hex[:12]
        self.ids = set()  # every container id we saw (for leak checks)
        self.timeouts = 0  # podman calls that timed out; after MAX_TIMEOUTS the remaining calls fail fast
        self.env = None
        self.image = IMAGE

    # -- paths
    def p(self, *parts):
        return os.path.join(self.base, *parts)

    # -- setup
    def setup(self):
        if self.base is None:
            self.base = tempfile.mkdtemp(prefix="ocirun-podman-")
        for d in ("root", "runroot", "tmp", "net", "volumes", "static", "imgtmp", "gotmp", "rootfs"):
            os.makedirs(self.p(d), exist_ok=True)
        names = ["crun", "runc"]
        if self.runtime_json:
            names.append(os.path.basename(self.runtime))
        _write(self.p("containers.conf"), f"""\
[containers]
netns = "none"
log_driver = "k8s-file"

[network]
# cni rather than netavark: netavark's run dir (/run/containers/networks) is not configurable in podman 4.3
network_backend = "cni"
network_config_dir = "{self.p('net')}"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{self.p('tmp', 'events.log')}"
# file locks live in tmp_dir/locks; the default shm lock is the host-global /dev/shm/libpod_lock
lock_type = "file"
tmp_dir = "{self.p('tmp')}"
static_dir = "{self.p('static')}"
volume_path = "{self.p('volumes')}"
image_copy_tmp_dir = "{self.p('imgtmp')}"
# runtimes podman may call with --log-format=json --log FILE (runc-compatible)
runtime_supports_json = {json.dumps(names)}
""")
        _write(self.p("storage.conf"), f"""\
[storage]
driver = "{self.storage_driver}"
graphroot = "{self.p('root')}"
runroot = "{self.p('runroot')}"
""")
        _write(self.p("registries.conf"), "unqualified-search-registries = []\n")
        self.env = dict(os.environ)
        self.env.update(
            CONTAINERS_CONF=self.p("containers.conf"),
            CONTAINERS_STORAGE_CONF=self.p("storage.conf"),
            CONTAINERS_REGISTRIES_CONF=self.p("registries.conf"),
            TMPDIR=self.p("gotmp"),
        )
        self.import_image()
        return self

    def import_image(self):
        from ocirun.bundle import make_busybox_rootfs

        make_busybox_rootfs(self.p("rootfs"))
        tar_path = self.p("rootfs.tar")
        with tarfile.open(tar_path, "w") as tar:
            for name in sorted(os.listdir(self.p("rootfs"))):
                tar.add(self.p("rootfs", name), arcname=name)
        self.podman("import", tar_path, self.image, check=True, fail_fast=False)
        os.unlink(tar_path)

    # -- running podman
    def cmd(self, *args):
        return ["podman",
                "--root", self.p("root"), "--runroot", self.p("runroot"), "--tmpdir", self.p("tmp"),
                "--storage-driver", self.storage_driver,
                "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                "--runtime", self.runtime, *args]

    def podman(self, *args, timeout=None, check=False, input=None, fail_fast=True):
        """Run one podman command (always with a timeout); returns CompletedProcess with text stdout/stderr."""
        if fail_fast and self.timeouts >= MAX_TIMEOUTS:
            raise AssertionError(f"not running podman {' '.join(args[:1])}: {self.timeouts} earlier podman calls "
                                 f"timed out, the runtime is presumed hung (fail fast to keep the module short)")
        argv = self.cmd(*args)
        try:
            res = subprocess.run(argv, env=self.env, input=input, capture_output=True, text=True,
                                 timeout=timeout or self.timeout, stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            self.timeouts += 1
            raise AssertionError(f"podman timed out after {e.timeout}s: {' '.join(args)}\n"
                                 f"stdout: {e.stdout!r}\nstderr: {e.stderr!r}") from None
        if check and res.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} exited {res.returncode}\n"
                                 f"stdout: {res.stdout}\nstderr: {res.stderr}")
        return res

    def run_flags(self):
        extra = shlex.split(os.environ.get("OCIRUN_TEST_PODMAN_RUN_ARGS", ""))
        cg = () if self.cgroups_disabled(extra) else ("--cgroup-parent", self.cgroup_parent)
        return ("--network", "none", *cg, *ULIMITS, *extra)

    def cgroups_disabled(self, flags=None):
        """True when the extra run args (e.g. for crun on a hybrid host) turn podman's cgroups off."""
        if flags is None:
            flags = shlex.split(os.environ.get("OCIRUN_TEST_PODMAN_RUN_ARGS", ""))
        return "--cgroups=disabled" in flags or any(
            a == "--cgroups" and b == "disabled" for a, b in zip(flags, flags[1:]))

    def run(self, *args, **kw):
        """`podman run` with the flags this host needs; args are run options + IMAGE + command."""
        return self.podman("run", *self.run_flags(), *args, **kw)

    def inspect(self, cid):
        res = self.podman("inspect", "--type", "container", cid)
        if res.returncode != 0:
            return None
        data = json.loads(res.stdout)
        return data[0] if data else None

    def container_ids(self):
        res = self.podman("ps", "-a", "-q", "--no-trunc")
        ids = set(res.stdout.split()) if res.returncode == 0 else set()
        self.ids |= ids
        return ids

    def _ids_from_events(self):
        try:
            with open(self.p("tmp", "events.log")) as f:
                for line in f:
                    try:
                        ev = json.loads(line)
                    except ValueError:
                        continue
                    if ev.get("Type") == "container" and ev.get("ID"):
                        self.ids.add(ev["ID"])
        except OSError:
            pass

    # -- teardown
    def cgroup_dirs(self):
        """Every cgroup dir under our cgroup parent, in every mounted cgroup hierarchy, deepest first."""
        found = []
        tops = [mp for _mid, mp, fs, _src in read_mounts()
                if fs in ("cgroup", "cgroup2") and mp.startswith(CGROUP_ROOT + "/")]
        for h in tops:
            top = os.path.join(h, self.cgroup_parent.lstrip("/"))
            if os.path.isdir(top):
                for dirpath, _dirs, _files in os.walk(top):
                    found.append(dirpath)
        return sorted(set(found), key=lambda d: d.count("/"), reverse=True)

    def our_pids(self):
        """Live processes of this environment: in our cgroup parent, or with our base dir or one of our
        container ids on their command line (conmon, `podman container cleanup`, orphaned runtime calls)."""
        pids = set()
        needle_cg = (self.cgroup_parent + "/").encode()
        needles = [i.encode() for i in self.ids if re.fullmatch(r"[0-9a-f]{64}", i)]
        if self.base:
            needles.append(self.base.encode())
        for ent in os.listdir("/proc"):
            if not ent.isdigit() or int(ent) == os.getpid():
                continue
            try:
                with open(f"/proc/{ent}/cgroup", "rb") as f:
                    if needle_cg in f.read():
                        pids.add(int(ent))
                        continue
                with open(f"/proc/{ent}/cmdline", "rb") as f:
                    cmdline = f.read()
                if any(n in cmdline for n in needles):
                    pids.add(int(ent))
            except OSError:
                pass
        return pids

    def kill_ours(self):
        """SIGKILL our processes (by pid, re-checked each round); returns the pids found the first time."""
        first = None
        for _ in range(20):
            pids = self.our_pids()
            if first is None:
                first = pids
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.1)
        return first or set()

    def teardown(self):
        """Remove everything this environment made. Returns a list of problems met on the way (empty = clean)."""
        problems = []
        if self.base is None or not os.path.isdir(self.base):
            return problems
        self._ids_from_events()
        if self.env is not None:
            try:
                res = self.podman("ps", "-a", "-q", "--no-trunc", fail_fast=False)
                self.ids |= set(res.stdout.split()) if res.returncode == 0 else set()
            except AssertionError as e:
                problems.append(str(e))
            # rm talks to the runtime (kill, delete): if that hangs, kill everything of ours and try once more
            for attempt in range(2):
                try:
                    res = self.podman("rm", "-a", "-f", "-t", "0", timeout=30, fail_fast=False)
                except AssertionError as e:
                    problems.append(str(e).splitlines()[0])
                    self.kill_ours()
                    continue
                if res.returncode != 0:
                    problems.append(f"podman rm -af exited {res.returncode}: {res.stderr.strip()[-500:]}")
                break
            try:
                self.podman("rmi", "-a", "-f", timeout=30, fail_fast=False)
            except AssertionError as e:
                problems.append(str(e).splitlines()[0])
            self._ids_from_events()
        left = self.kill_ours()
        if left:
            problems.append(f"processes left after podman rm: {sorted(left)}")
        # runtime state podman could not delete: ask the runtime itself
        for d in self.runtime_state_dirs():
            problems.append(f"runtime state left: {d}")
            try:
                subprocess.run([self.runtime, "delete", "--force", os.path.basename(d)], capture_output=True,
                               timeout=30, stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                problems.append(f"{self.runtime} delete --force {os.path.basename(d)} timed out")
                self.kill_ours()
        # mounts under our dir (overlay layers, shm, ...): deepest first
        for _mid, mp, _fs, _src in sorted(read_mounts(), key=lambda m: m[1].count("/"), reverse=True):
            if mp == self.base or mp.startswith(self.base + "/"):
                problems.append(f"mount left under the podman dir: {mp}")
                if subprocess.run(["umount", mp], capture_output=True).returncode != 0:
                    subprocess.run(["umount", "-l", mp], capture_output=True)
        # cgroups: conmon's and the containers' (rmdir fails while busy: retry a little)
        for attempt in range(30):
            left = []
            for d in self.cgroup_dirs():
                try:
                    os.rmdir(d)
                except OSError:
                    left.append(d)
            if not left:
                break
            time.sleep(0.1)
        else:
            problems.append(f"cgroups not removable: {left}")
        shutil.rmtree(self.base, ignore_errors=True)
        if os.path.exists(self.base):
            problems.append(f"{self.base} not removed")
        return problems

    def runtime_state_dirs(self):
        """State dirs named after our containers (/run/runc/ID, /run/crun/ID, /run/ocirun/ID, ...)."""
        found = []
        if not self.ids:
            return found
        try:
            tops = os.listdir("/run")
        except OSError:
            return found
        for top in tops:
            d = os.path.join("/run", top)
            if os.path.isdir(d) and not os.path.islink(d):
                try:
                    entries = os.listdir(d)
                except OSError:
                    continue
                found.extend(os.path.join(d, e) for e in entries if e in self.ids)
        return found

    def leaks(self, snapshot=None):
        """What is left on the host that is attributable to this environment (call after teardown)."""
        found = []
        if self.base and os.path.exists(self.base):
            found.append(f"podman dir {self.base} still exists")
        for d in self.cgroup_dirs():
            found.append(f"cgroup {d}")
        for pid in self.our_pids():
            found.append(f"process {pid}")
        for _mid, mp, fs, src in read_mounts():
            if (self.base and self.base in mp) or any(i in mp or i in src for i in self.ids):
                found.append(f"mount {mp} ({fs} {src})")
        for d in self.runtime_state_dirs():
            found.append(f"runtime state {d}")
        if snapshot is not None:
            for _mid, mp, fs, src in snapshot.new_mounts():
                if mp.startswith(("/tmp/", "/run/")) or mp in ("/tmp", "/run"):
                    if (self.base and self.base in mp) or any(i in mp or i in src for i in self.ids):
                        continue  # already reported above
                    if mp.startswith(FOREIGN_ENGINE_DIRS):
                        continue  # another engine on the host (default podman storage), not ours
                    found.append(f"new mount under /tmp or /run: {mp} ({fs} {src})")
        return found


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description="run one podman command in a throwaway isolated podman")
    ap.add_argument("--runtime", default=default_runtime())
    ap.add_argument("--keep", action="store_true", help="do not tear down (prints the base dir)")
    ap.add_argument("args", nargs=argparse.REMAINDER, help="podman arguments; IMAGE is replaced by the test image")
    ns = ap.parse_args(argv)
    args = [a for a in ns.args if a != "--"]
    why = missing_requirements(ns.runtime)
    if why:
        print("cannot run: " + "; ".join(why), file=sys.stderr)
        return 2
    snap = HostSnapshot()
    env = PodmanEnv(ns.runtime)
    rc = 0
    try:
        env.setup()
        args = [env.image if a == "IMAGE" else a for a in args]
        if args and args[0] == "run":
            args = ["run", *env.run_flags(), *args[1:]]
        res = env.podman(*args)
        sys.stdout.write(res.stdout)
        sys.stderr.write(res.stderr)
        rc = res.returncode
    finally:
        if ns.keep:
            print(f"kept {env.base}", file=sys.stderr)
        else:
            problems = env.teardown() + env.leaks(snap)
            for p in problems:
                print("teardown: " + p, file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
