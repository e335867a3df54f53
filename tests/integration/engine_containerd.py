"""An isolated containerd for driving an OCI runtime through containerd's runc shim (io.containerd.runc.v2),
on the shared engine test bed (enginebed.py: private dirs, daemon start/stop, image import, logging wrapper,
teardown and leak checks). This module keeps what is containerd's own: its config file, its command line, `ctr`,
how containers are removed, and the runtime root the shim keeps outside the bed's dir.

Everything containerd keeps lives in the bed's dir (`ContainerdEnv.base`, /tmp/ocirun-containerd-XXXX): its
--root, --state, the grpc/ttrpc/debug sockets, its config file, the `opt` plugin's dir (default /opt/containerd)
and its log (containerd.log). Containers run in a containerd namespace of their own (ocirun-<random>); `ctr run`
puts them in the cgroup /<namespace>/<id> of every hierarchy, so teardown removes exactly that subtree.

Deliberately NOT isolated (hard-coded in containerd 1.6 and its runc shim; teardown cleans it up):
  /run/containerd/s/<sha256>   the shim's ttrpc socket (socket dir hard-coded to /run/containerd/s);
  /run/containerd/runc/<ns>    the runtime's --root (the shim's default when `ctr run` gets no --runc-root).
teardown() removes the namespace's runtime root (after `RUNTIME --root DIR delete --force` for anything left)
and the parents /run/containerd/{s,runc,} when this environment created them and they are empty.

What containerd 1.6's runc shim calls on the runtime (seen with the logging wrapper around runc):
    RUNTIME --root /run/containerd/runc/NS --log BUNDLE/log.json --log-format json \\
        create --bundle BUNDLE --pid-file BUNDLE/init.pid ID          (stdio: pipes or fifos from the shim)
    RUNTIME --root ... --log ... --log-format json start ID
    RUNTIME --root ... --log ... --log-format json exec --process /tmp/runc-process* --detach \\
        --pid-file BUNDLE/EXECID.pid ID
    RUNTIME --root ... --log ... --log-format json kill ID 15        (`ctr task kill`; numeric signal)
    RUNTIME --root ... --log ... --log-format json delete ID          (and `delete --force` on cleanup)
    (docker also makes it call: state, pause, resume, ps --format json, update --resources -, events --stats)
The shim runs the runtime with its own cwd (the bundle) and is the container's subreaper.

Runtime registration: `ctr run --runc-binary PATH`, PATH being the bed's logging wrapper BASE/wrap/NAME
(enginebed.WRAPPER; with OCIRUN_TEST_WRAP unset or "1") or, with OCIRUN_TEST_WRAP=0, the runtime itself.

No pytest dependency: `python engine_containerd.py --runtime PATH -- run --rm IMAGE ID echo hi` runs one ctr
command in a fresh environment (IMAGE replaced by the test image) and tears it down.
"""
import os
import shutil
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import enginebed  # noqa: E402
from enginebed import default_runtime, failed_calls, which  # noqa: E402,F401  (used by the tests and tools)

IMAGE = "docker.io/library/ocirun-busybox:test"
SHIM_STATE = "/run/containerd"  # hard-coded in containerd 1.6's shim (socket dir) and runc shim (runtime root)


def missing_requirements(runtime, tools=("containerd", "ctr", "containerd-shim-runc-v2")):
    return enginebed.missing_requirements(runtime, tools, hint="apt-get install containerd")


class ContainerdEnv(enginebed.EngineBed):
    """One containerd of our own. `runtime` is what `ctr run --runc-binary` gets (None: just a containerd,
    e.g. for dockerd's --containerd, which names its runtimes itself)."""

    host_paths = (SHIM_STATE, SHIM_STATE + "/s", SHIM_STATE + "/runc", SHIM_STATE + "/fifo",
                  "/opt/containerd", "/var/lib/containerd")

    def __init__(self, runtime=None, base=None, timeout=enginebed.DEFAULT_TIMEOUT, wrap=None,
                 namespace=None, cgroup_parent=None, runtime_root=None):
        # a namespace of our own; its name is also the cgroup `ctr run` puts containers under (/NS/ID)
        self.namespace = namespace or "ocirun-" + uuid.uuid4().hex[:10]
        super().__init__("containerd", runtime, base=base, timeout=timeout,
                         wrap=enginebed.wrap_enabled() if wrap is None else wrap,
                         cgroup_parent=cgroup_parent or "/" + self.namespace)
        self._runtime_root = runtime_root
        self.image = IMAGE
        self.engine_runtime = self.runtime  # what ctr passes as --runc-binary (the wrapper when wrapping)

    @property
    def address(self):
        return self.p("containerd.sock")

    @property
    def proc(self):
        return self.daemons[0].proc if self.daemons else None

    @property
    def runtime_root(self):
        """The runtime --root the runc shim uses for our namespace (its default: not configurable by ctr
        without --runc-root, which we do not pass, to exercise what engines normally do)."""
        return self._runtime_root or os.path.join(SHIM_STATE, "runc", self.namespace)

    # -- setup
    def setup(self, with_image=True):
        self.make_base("root", "state", "opt", "tmp", "fifo")
        self.env = dict(os.environ, TMPDIR=self.p("tmp"))
        if self.runtime:
            self.engine_runtime = self.register_runtime(os.path.basename(self.runtime), self.runtime)
        with open(self.p("config.toml"), "w") as f:
            f.write(self.config_toml())
        daemon = self.start_daemon("containerd", [which("containerd"), "--config", self.p("config.toml"),
                                                  "--log-level", "info"], self.address, env=self.env, timeout=20)
        # the socket appears before all services are registered: wait until ctr gets an answer
        self.wait_ready(daemon, lambda: self.ctr("version", timeout=10), timeout=20)
        if with_image and self.runtime:
            self.import_image("oci", self._load)
        return self

    def _load(self, archive):
        res = self.ctr("images", "import", archive, timeout=60)
        if res.returncode != 0:
            raise RuntimeError(f"ctr images import failed: {res.stderr}")

    def config_toml(self, cri=None):
        """containerd's config in the bed's dirs; `cri`: the CRI plugin's section (engine_cri), else it is off."""
        return config_toml(root=self.p("root"), state=self.p("state"), address=self.address,
                           ttrpc=self.p("containerd.sock.ttrpc"), debug=self.p("debug.sock"), opt=self.p("opt"),
                           v1_root=self.p("v1-runtime-root"), cri=cri)

    # -- ctr
    def ctr(self, *args, timeout=None, input=None, namespace=None):
        argv = [which("ctr"), "--address", self.address, "--namespace", namespace or self.namespace, *args]
        return self.run_client("ctr", argv, args, timeout=timeout, input=input, fail_fast=False)

    def run(self, *args, rid=None, opts=(), timeout=None):
        """`ctr run --runc-binary RUNTIME [opts] IMAGE ID args...`; returns (CompletedProcess, id)."""
        rid = rid or "c" + uuid.uuid4().hex[:10]
        self.ids.add(rid)
        res = self.ctr("run", "--runc-binary", self.engine_runtime, "--fifo-dir", self.p("fifo"), *opts,
                       self.image, rid, *args, timeout=timeout)
        return res, rid

    # -- teardown hooks
    def remove_containers(self):
        if not self.daemons_alive():
            return []
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

    def clean_runtime_state(self):
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
            for mp in enginebed.unmount_under(root):
                problems.append(f"mount left under {root}: {mp}")
            shutil.rmtree(root, ignore_errors=True)
        return problems

    def extra_dirs(self):
        return (self.runtime_root,)

    def extra_leaks(self):
        return [f"runtime root {self.runtime_root}"] if os.path.exists(self.runtime_root) else []


def main(argv=None):
    return enginebed.cli_main(
        argv, "run one ctr command in a throwaway isolated containerd", ContainerdEnv, missing_requirements,
        lambda env, args: env.ctr(*args),
        run_flags=lambda env: ("--runc-binary", env.engine_runtime, "--fifo-dir", env.p("fifo")))


if __name__ == "__main__":
    sys.exit(main())


def config_toml(root, state, address, ttrpc, debug, opt, v1_root=None, cri=None):
    """A containerd 1.6 config.toml with its own dirs and sockets, nothing that talks to the network or that this
    host cannot do; `cri`: the CRI plugin's section (engine_cri.cri_section), else the CRI plugin is off. Shared
    by the host beds (ContainerdEnv, engine_cri) and the systemd bed's containerd (systemd_engines)."""
    off_cri = "" if cri else '\n  "io.containerd.grpc.v1.cri",'
    v1 = f"""  [plugins."io.containerd.runtime.v1.linux"]
    runtime_root = "{v1_root}"
""" if v1_root else ""
    return f"""\
version = 2
root = "{root}"
state = "{state}"
oom_score = 0
# nothing that talks to the network, nothing this host cannot do
disabled_plugins = [{off_cri}
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{address}"

[ttrpc]
  address = "{ttrpc}"

[debug]
  address = "{debug}"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{opt}"
{v1}{cri or ""}"""
