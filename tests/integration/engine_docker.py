"""An isolated dockerd for driving an OCI runtime through `docker run --runtime ocirun`, on the shared engine test
bed (enginebed.py: private dirs, daemon start/stop, image import, logging wrapper, teardown and leak checks).
This module keeps what is Docker's own: daemon.json, dockerd's command line, the docker client, how containers
are removed, and the host files dockerd writes outside the bed's dir.

Everything lives in the bed's dir (`DockerEnv.base`, /tmp/ocirun-docker-XXXX):
    data/      dockerd --data-root (overlay2, or vfs without overlayfs; OCIRUN_TEST_STORAGE_DRIVER overrides)
    exec/      dockerd --exec-root (exec/runtime-runc/moby is the runtime's --root, for every runtime)
    containerd/ a containerd bed of our own (engine_containerd.ContainerdEnv) that dockerd uses via --containerd:
               the containerd dockerd would start itself writes /opt/containerd (its `opt` plugin), ours does not
    daemon.json --config-file: {"runtimes": {"ocirun": {"path": RUNTIME}}, "cgroup-parent": "/ocirun-docker-R",
               "deprecated-key-path": BASE/key.json} (without the last, dockerd 20.10 writes /etc/docker/key.json)
    cli/       DOCKER_CONFIG for the docker client
    docker.sock, docker.pid, dockerd.log, wrap/ocirun + runtime-calls.log (the bed's logging wrapper)
dockerd runs with --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none (no host
network or sysctl changes); containers run with --network none under the cgroup parent /ocirun-docker-R, so
teardown can remove every cgroup this environment made.

Deliberately NOT isolated (hard-coded; teardown removes them when it created them and they are empty):
    /run/docker/plugins     dockerd's plugin socket dir
    /run/containerd/s       the containerd shims' socket dir

What docker 20.10 + containerd 1.6's runc shim call on the runtime (logging wrapper around runc; ROOT is
EXEC/runtime-runc/moby, LOG is BUNDLE/log.json, every call has --root ROOT --log LOG --log-format json):
    create --bundle BUNDLE --pid-file BUNDLE/init.pid [--console-socket SOCK] ID
    start ID ; state ID ; kill ID 15 / kill ID 9 (numeric) ; delete ID ; delete --force ID (shim cleanup)
    exec --process /tmp/runc-process* --detach --pid-file BUNDLE/EXECID.pid [--console-socket SOCK] ID
    pause ID ; resume ID ; ps --format json ID (docker top) ; update --resources - ID (docker update)
No pytest dependency: `python engine_docker.py --runtime PATH -- run --rm IMAGE echo hi` runs one docker
command in a fresh environment (IMAGE is the imported image; `run` gets the runtime and host flags) and tears
it down.
"""
import json
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import enginebed  # noqa: E402
import engine_containerd as ce  # noqa: E402
from enginebed import default_runtime  # noqa: E402,F401

IMAGE = "ocirun-busybox:test"
RUNTIME_NAME = "ocirun"
# This host: hard NOFILE limit 20000 and no CAP_SYS_RESOURCE. docker 20.10 puts no rlimits in its spec unless
# asked (checked: runc and ocirun run without this), but an explicit nofile keeps every container inside the
# host's limit whatever the daemon's defaults; nproc is not needed (docker sets no RLIMIT_NPROC).
ULIMITS = ("--ulimit", "nofile=1024:20000")
KEY_FILE = "/etc/docker/key.json"


def docker_cli():
    """Debian docker.io's client (/usr/bin/docker) matches its daemon; another on PATH will do."""
    return enginebed.which("docker", prefer=("/usr/bin",))


def missing_requirements(runtime):
    why = ce.missing_requirements(runtime)
    if not enginebed.which("dockerd", prefer=("/usr/sbin", "/usr/bin")):
        why.append("dockerd not installed (apt-get install docker.io)")
    if not docker_cli():
        why.append("docker client not installed (apt-get install docker.io)")
    return why


class DockerEnv(enginebed.EngineBed):
    host_paths = ("/run/docker", "/run/docker/plugins", "/var/lib/docker", "/etc/docker")
    host_paths_strict = True
    host_paths_ignored = ("/etc/docker",)  # Debian's docker.io ships /etc/docker

    def __init__(self, runtime, base=None, timeout=enginebed.DEFAULT_TIMEOUT, storage_driver=None, wrap=None):
        super().__init__("docker", runtime, base=base, timeout=timeout,
                         wrap=enginebed.wrap_enabled() if wrap is None else wrap)
        self.storage_driver = storage_driver or os.environ.get("OCIRUN_TEST_STORAGE_DRIVER") or (
            "overlay2" if enginebed.has_overlay() else "vfs")
        if self.storage_driver == "overlay":
            self.storage_driver = "overlay2"
        self.image = IMAGE
        self.containerd = None
        self.engine_runtime = self.runtime
        self.key_existed = os.path.exists(KEY_FILE)

    @property
    def sock(self):
        return self.p("docker.sock")

    @property
    def proc(self):
        return self.daemons[0].proc if self.daemons else None

    @property
    def runtime_root(self):
        # docker 20.10 passes every shim-v2 runtime the same root, named after its default runtime (seen with
        # the wrapper: --root EXEC/runtime-runc/moby also for --runtime ocirun)
        return self.p("exec", "runtime-runc", "moby")

    # -- setup
    def setup(self):
        self.make_base("data", "exec", "cli", "tmp")
        self.engine_runtime = self.register_runtime(RUNTIME_NAME, self.runtime)
        self.containerd = ce.ContainerdEnv(None, base=self.p("containerd"), wrap=False, namespace="moby",
                                           cgroup_parent=self.cgroup_parent, runtime_root=self.runtime_root)
        self.containerd.setup(with_image=False)
        config = {
            "runtimes": {name: {"path": path} for name, path in self.runtimes.items()},
            "cgroup-parent": self.cgroup_parent,
            "deprecated-key-path": self.p("key.json"),
        }
        with open(self.p("daemon.json"), "w") as f:
            json.dump(config, f, indent=2)
        self.env = dict(os.environ, DOCKER_CONFIG=self.p("cli"), TMPDIR=self.p("tmp"))
        for k in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
            self.env.pop(k, None)
        argv = [enginebed.which("dockerd", prefer=("/usr/sbin", "/usr/bin")),
                "--data-root", self.p("data"), "--exec-root", self.p("exec"), "--pidfile", self.p("docker.pid"),
                "-H", "unix://" + self.sock, "--config-file", self.p("daemon.json"),
                "--containerd", self.containerd.address, "--storage-driver", self.storage_driver,
                "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
                "--bridge=none", "--userland-proxy=false"]
        daemon = self.start_daemon("dockerd", argv, self.sock, env=self.env, timeout=30)
        self.wait_ready(daemon, lambda: self.docker("version", "--format", "{{.Server.Version}}",
                                                    fail_fast=False, timeout=10), timeout=30)
        self.import_image("tar", lambda tar: self.docker("import", tar, self.image, check=True, fail_fast=False,
                                                         timeout=60))
        return self

    # -- docker
    def cmd(self, *args):
        return [docker_cli(), "-H", "unix://" + self.sock, *map(str, args)]

    def docker(self, *args, timeout=None, check=False, input=None, fail_fast=True):
        return self.run_client("docker", self.cmd(*args), args, timeout=timeout, check=check, input=input,
                               fail_fast=fail_fast)

    def run_flags(self):
        extra = shlex.split(os.environ.get("OCIRUN_TEST_DOCKER_RUN_ARGS", ""))
        return ("--runtime", RUNTIME_NAME, "--network", "none", *ULIMITS, *extra)

    def run(self, *args, **kw):
        """`docker run` with our runtime and the flags this host needs; args = run options + IMAGE + command."""
        return self.docker("run", *self.run_flags(), *args, **kw)

    def inspect(self, cid):
        res = self.docker("inspect", "--type", "container", cid)
        if res.returncode != 0:
            return None
        data = json.loads(res.stdout)
        return data[0] if data else None

    # -- teardown hooks
    def remove_containers(self):
        if not self.daemons_alive():
            return []
        try:
            res = self.docker("ps", "-a", "-q", "--no-trunc", fail_fast=False, timeout=15)
            ids = res.stdout.split()
            self.ids |= set(ids)
            if ids:
                res = self.docker("rm", "-f", *ids, fail_fast=False, timeout=40)
                if res.returncode != 0:
                    return [f"docker rm -f exited {res.returncode}: {res.stderr.strip()[-500:]}"]
        except AssertionError as e:
            return [str(e).splitlines()[0]]
        return []

    def after_daemons_stopped(self):
        return self.containerd.teardown() if self.containerd is not None else []

    def expected_mounts(self):
        # dockerd itself bind-mounts --data-root onto itself (and makes it shared) when it does not sit on a
        # shared mount, as on this VM where / is private; it does not always undo that at shutdown. That mount
        # is dockerd's, not a leak of the runtime under test: removed without complaint.
        return {self.p("data")}

    def after_teardown(self):
        if not self.key_existed and os.path.exists(KEY_FILE):
            os.unlink(KEY_FILE)
            return [f"dockerd wrote {KEY_FILE} (removed)"]
        return []

    def extra_leaks(self):
        found = []
        if self.containerd is not None:
            found += [x for x in self.containerd.leaks() if not x.startswith(f"{self.containerd.name} dir")]
        if not self.key_existed and os.path.exists(KEY_FILE):
            found.append(f"{KEY_FILE} created")
        return found


def main(argv=None):
    return enginebed.cli_main(
        argv, "run one docker command in a throwaway isolated dockerd", DockerEnv, missing_requirements,
        lambda env, args: env.docker(*args, timeout=120), run_flags=lambda env: env.run_flags())


if __name__ == "__main__":
    sys.exit(main())
