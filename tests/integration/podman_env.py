"""An isolated podman for driving an OCI runtime through `podman --runtime PATH`, on the shared engine test bed
(enginebed.py: private dirs, image import, client calls with timeouts, teardown and leak checks). podman has no
daemon; this module keeps what is podman's own: containers.conf / storage.conf, podman's command line, how
containers are removed, and the runtime state podman leaves to the runtime outside the bed's dir.

Everything podman keeps lives in the bed's dir (`PodmanEnv.base`, /tmp/ocirun-podman-XXXX): storage (--root),
run state (--runroot), libpod's tmp dir (--tmpdir, which also holds the file-based locks and the exit files),
the events log, containers.conf / storage.conf / registries.conf (via CONTAINERS_CONF, CONTAINERS_STORAGE_CONF,
CONTAINERS_REGISTRIES_CONF) and TMPDIR. Containers run with --network none, --cgroup-manager cgroupfs under
a cgroup parent of their own (/ocirun-podman-<random>, which also holds podman's conmon cgroup), so teardown
can remove every cgroup it made.

Deliberately NOT isolated: podman 4.3 has no knob for
containers/image's blob-info cache, so `podman import` writes /var/lib/containers/cache/blob-info-cache-v1.boltdb,
and the runtime keeps its state under its own default root (/run/runc, /run/crun, ocirun's default), because
podman does not pass --runtime-flag to `RUNTIME delete`, so a custom --root would leave state behind.
The runtime deletes its own state dir on `delete`; `leaks()` checks that no state dir named after one of our
containers is left in /run/*/.

Runtime registration: `podman --runtime PATH` on every call (podman names the runtime after PATH's basename) and
that name in containers.conf's runtime_supports_json, so it gets the json log flags (OCIRUN_TEST_RUNTIME_JSON=0:
not). No logging wrapper (its basename would be the runtime's name).

What podman 4.3 + conmon call on the runtime (seen with a logging wrapper around runc):
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
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import enginebed  # noqa: E402
from enginebed import HostSnapshot, default_runtime  # noqa: E402,F401  (used by the tests)

IMAGE = "localhost/ocirun-busybox:test"
ULIMITS = ("--ulimit", "nofile=1024:20000", "--ulimit", "nproc=1024:1024")


def missing_requirements(runtime):
    """Why an engine test cannot run here (a list of strings; empty when it can)."""
    return enginebed.missing_requirements(runtime, ("podman", "conmon"))


class PodmanClient:
    """What the root and the rootless podman beds ask podman the same way (they differ in how `self.podman` runs
    it); `self.ids` collects every container id seen."""

    def inspect(self, cid, **podman_kw):
        res = self.podman("inspect", "--type", "container", cid, **podman_kw)
        if res.returncode != 0:
            return None
        data = json.loads(res.stdout)
        return data[0] if data else None

    def container_ids(self):
        res = self.podman("ps", "-a", "-q", "--no-trunc")
        ids = set(res.stdout.split()) if res.returncode == 0 else set()
        self.ids |= ids
        return ids


class PodmanEnv(PodmanClient, enginebed.EngineBed):
    def __init__(self, runtime, base=None, storage_driver=None, timeout=enginebed.DEFAULT_TIMEOUT,
                 runtime_json=None):
        super().__init__("podman", runtime, base=base, timeout=timeout, wrap=False)
        self.storage_driver = storage_driver or os.environ.get("OCIRUN_TEST_STORAGE_DRIVER") or (
            "overlay" if enginebed.has_overlay() else "vfs")
        if runtime_json is None:
            runtime_json = os.environ.get("OCIRUN_TEST_RUNTIME_JSON", "1") != "0"
        self.runtime_json = runtime_json
        self.image = IMAGE

    # -- setup
    def setup(self):
        self.make_base("root", "runroot", "tmp", "net", "volumes", "static", "imgtmp", "gotmp")
        self.register_runtime(os.path.basename(self.runtime), self.runtime)
        names = ["crun", "runc"]
        if self.runtime_json:
            names += list(self.runtimes)
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
        self.import_image("tar", lambda tar: self.podman("import", tar, self.image, check=True, fail_fast=False))
        return self

    # -- running podman
    def cmd(self, *args):
        return ["podman",
                "--root", self.p("root"), "--runroot", self.p("runroot"), "--tmpdir", self.p("tmp"),
                "--storage-driver", self.storage_driver,
                "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                "--runtime", self.runtime, *args]

    def podman(self, *args, timeout=None, check=False, input=None, fail_fast=True):
        """Run one podman command (always with a timeout); returns CompletedProcess with text stdout/stderr."""
        return self.run_client("podman", self.cmd(*args), args, timeout=timeout, check=check, input=input,
                               fail_fast=fail_fast)

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

    # -- teardown hooks
    def remove_containers(self):
        problems = []
        self._ids_from_events()
        if self.env is None:
            return problems
        try:
            res = self.podman("ps", "-a", "-q", "--no-trunc", fail_fast=False)
            self.ids |= set(res.stdout.split()) if res.returncode == 0 else set()
        except AssertionError as e:
            problems.append(str(e))
        # rm talks to the runtime (kill, delete): if that hangs, kill everything of ours and try once more
        for _attempt in range(2):
            try:
                res = self.podman("rm", "-a", "-f", "-t", "0", timeout=30, fail_fast=False)
            except AssertionError as e:
                problems.append(str(e).splitlines()[0])
                enginebed.kill_procs(self.our_procs)
                continue
            if res.returncode != 0:
                problems.append(f"podman rm -af exited {res.returncode}: {res.stderr.strip()[-500:]}")
            break
        try:
            self.podman("rmi", "-a", "-f", timeout=30, fail_fast=False)
        except AssertionError as e:
            problems.append(str(e).splitlines()[0])
        self._ids_from_events()
        return problems

    def clean_runtime_state(self):
        """Runtime state podman could not delete: ask the runtime itself."""
        problems = []
        for d in self.runtime_state_dirs():
            problems.append(f"runtime state left: {d}")
            try:
                subprocess.run([self.runtime, "delete", "--force", os.path.basename(d)], capture_output=True,
                               timeout=30, stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                problems.append(f"{self.runtime} delete --force {os.path.basename(d)} timed out")
                enginebed.kill_procs(self.our_procs)
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

    def extra_leaks(self):
        return [f"runtime state {d}" for d in self.runtime_state_dirs()]


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def main(argv=None):
    return enginebed.cli_main(
        argv, "run one podman command in a throwaway isolated podman", PodmanEnv, missing_requirements,
        lambda env, args: env.podman(*args), run_flags=lambda env: env.run_flags(), snapshot=True)


if __name__ == "__main__":
    sys.exit(main())
