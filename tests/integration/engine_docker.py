"""An isolated dockerd for driving an OCI runtime through `docker run --runtime ocirun`.

Everything lives in one temp dir (`DockerEnv.base`, /tmp/ocirun-docker-XXXX):
    data/      dockerd --data-root (overlay2, or vfs without overlayfs; OCIRUN_TEST_STORAGE_DRIVER overrides)
    exec/      dockerd --exec-root (exec/runtime-runc/moby is the runtime's --root, for every runtime)
    containerd/ a containerd of our own (engine_containerd.ContainerdEnv) that dockerd uses via --containerd:
               the containerd dockerd would start itself writes /opt/containerd (its `opt` plugin), ours does not
    daemon.json --config-file: {"runtimes": {"ocirun": {"path": RUNTIME}}, "cgroup-parent": "/ocirun-docker-R",
               "deprecated-key-path": BASE/key.json} (without the last, dockerd 20.10 writes /etc/docker/key.json)
    cli/       DOCKER_CONFIG for the docker client
    docker.sock, docker.pid, dockerd.log, runtime-wrapper + runtime-calls.log (see engine_containerd.WRAPPER)
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
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

_HERE = os.path.dirname(os.path.abspath(__file__))


sys.path.insert(0, _HERE)
import engine_containerd as ce  # noqa: E402
default_runtime = ce.default_runtime

IMAGE = "ocirun-busybox:test"
RUNTIME_NAME = "ocirun"
# This host: hard NOFILE limit 20000 and no CAP_SYS_RESOURCE. docker 20.10 puts no rlimits in its spec unless
# asked (checked: runc and ocirun run without this), but an explicit nofile keeps every container inside the
# host's limit whatever the daemon's defaults; nproc is not needed (docker sets no RLIMIT_NPROC).
ULIMITS = ("--ulimit", "nofile=1024:20000")
DEFAULT_TIMEOUT = 30
MAX_TIMEOUTS = 2
KEY_FILE = "/etc/docker/key.json"


def docker_cli():
    """Debian docker.io's client (/usr/bin/docker) matches its daemon; another on PATH will do."""
    return ce.which("docker", prefer=("/usr/bin",))


def missing_requirements(runtime):
    why = ce.missing_requirements(runtime)
    if not ce.which("dockerd", prefer=("/usr/sbin", "/usr/bin")):
        why.append("dockerd not installed (apt-get install docker.io)")
    if not docker_cli():
        why.append("docker client not installed (apt-get install docker.io)")
    return why


class DockerEnv:
    def __init__(self, runtime, base=None, timeout=DEFAULT_TIMEOUT, storage_driver=None, wrap=None):
        self.runtime = os.path.abspath(runtime)
        self.base = base
        self.timeout = timeout
        self.storage_driver = storage_driver or os.environ.get("OCIRUN_TEST_STORAGE_DRIVER") or (
            "overlay2" if ce.has_overlay() else "vfs")
        if self.storage_driver == "overlay":
            self.storage_driver = "overlay2"
        self.wrap = ce.wrap_enabled() if wrap is None else wrap
        self.cgroup_parent = "/ocirun-docker-" + uuid.uuid4().hex[:10]
        self.image = IMAGE
        self.proc = None
        self.containerd = None
        self.env = None
        self.calls_log = None
        self.engine_runtime = self.runtime
        self.timeouts = 0
        self.ids = set()
        self.host_dirs = ce.HostDirs(["/run/docker", "/run/docker/plugins", "/var/lib/docker", "/etc/docker"])
        self.key_existed = os.path.exists(KEY_FILE)

    def p(self, *parts):
        return os.path.join(self.base, *parts)

    @property
    def sock(self):
        return self.p("docker.sock")

    @property
    def runtime_root(self):
        # docker 20.10 passes every shim-v2 runtime the same root, named after its default runtime (seen with
        # the wrapper: --root EXEC/runtime-runc/moby also for --runtime ocirun)
        return self.p("exec", "runtime-runc", "moby")

    # -- setup
    def setup(self):
        if self.base is None:
            self.base = tempfile.mkdtemp(prefix="ocirun-docker-", dir="/tmp")
            os.chmod(self.base, 0o755)
        for d in ("data", "exec", "cli", "tmp"):
            os.makedirs(self.p(d), exist_ok=True)
        if self.wrap:
            self.engine_runtime, self.calls_log = ce.write_wrapper(self.base, self.runtime)
        self.containerd = ce.ContainerdEnv(self.runtime, base=self.p("containerd"), wrap=False, namespace="moby",
                                           cgroup_parent=self.cgroup_parent, runtime_root=self.runtime_root)
        self.containerd.setup(with_image=False)
        config = {
            "runtimes": {RUNTIME_NAME: {"path": self.engine_runtime}},
            "cgroup-parent": self.cgroup_parent,
            "deprecated-key-path": self.p("key.json"),
        }
        with open(self.p("daemon.json"), "w") as f:
            json.dump(config, f, indent=2)
        self.env = dict(os.environ, DOCKER_CONFIG=self.p("cli"), TMPDIR=self.p("tmp"))
        for k in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
            self.env.pop(k, None)
        argv = [ce.which("dockerd", prefer=("/usr/sbin", "/usr/bin")),
                "--data-root", self.p("data"), "--exec-root", self.p("exec"), "--pidfile", self.p("docker.pid"),
                "-H", "unix://" + self.sock, "--config-file", self.p("daemon.json"),
                "--containerd", self.containerd.address, "--storage-driver", self.storage_driver,
                "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
                "--bridge=none", "--userland-proxy=false"]
        log = open(self.p("dockerd.log"), "ab")
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         env=self.env, start_new_session=True)
        finally:
            log.close()
        ce.wait_socket(self.sock, self.proc, 30, self.p("dockerd.log"))
        end = time.monotonic() + 30
        while True:
            res = self.docker("version", "--format", "{{.Server.Version}}", fail_fast=False, timeout=10)
            if res.returncode == 0:
                break
            if self.proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"dockerd does not answer: {res.stderr}\n{ce.tail(self.p('dockerd.log'))}")
            time.sleep(0.1)
        self.import_image()
        return self

    def import_image(self):
        from ocirun.bundle import make_busybox_rootfs

        rootfs = make_busybox_rootfs(self.p("rootfs"))
        tar_path = ce.write_rootfs_tar(rootfs, self.p("rootfs.tar"))
        self.docker("import", tar_path, self.image, check=True, fail_fast=False, timeout=60)
        os.unlink(tar_path)
        shutil.rmtree(rootfs)

    # -- docker
    def cmd(self, *args):
        return [docker_cli(), "-H", "unix://" + self.sock, *map(str, args)]

    def docker(self, *args, timeout=None, check=False, input=None, fail_fast=True):
        if fail_fast and self.timeouts >= MAX_TIMEOUTS:
            raise AssertionError(f"not running docker {args[:1]}: {self.timeouts} earlier docker calls timed out "
                                 f"(the runtime is presumed hung)")
        try:
            res = subprocess.run(self.cmd(*args), env=self.env, input=input, capture_output=True, text=True,
                                 stdin=subprocess.DEVNULL if input is None else None,
                                 timeout=timeout or self.timeout)
        except subprocess.TimeoutExpired as e:
            self.timeouts += 1
            raise AssertionError(f"docker timed out after {e.timeout}s: {' '.join(map(str, args))}\n"
                                 f"stdout: {e.stdout!r}\nstderr: {e.stderr!r}\n"
                                 f"runtime calls (tail):\n{self.calls_tail(3000)}") from None
        if check and res.returncode != 0:
            raise AssertionError(f"docker {' '.join(map(str, args))} exited {res.returncode}\n"
                                 f"stdout: {res.stdout}\nstderr: {res.stderr}")
        return res

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

    def calls_tail(self, n=6000):
        return ce.tail(self.calls_log, n) if self.calls_log else "(no logging wrapper: OCIRUN_TEST_WRAP=0)"

    # -- teardown
    def our_procs(self):
        needles = [self.base.encode()] if self.base else []
        cg = self.cgroup_parent.strip("/")
        return ce.procs_matching(needles, cgroup_needles=[f":/{cg}/".encode(), f":/{cg}\n".encode()])

    def teardown(self):
        problems = []
        if self.base is None:
            return problems
        if self.proc is not None and self.proc.poll() is None:
            try:
                res = self.docker("ps", "-a", "-q", "--no-trunc", fail_fast=False, timeout=15)
                ids = res.stdout.split()
                self.ids |= set(ids)
                if ids:
                    res = self.docker("rm", "-f", *ids, fail_fast=False, timeout=40)
                    if res.returncode != 0:
                        problems.append(f"docker rm -f exited {res.returncode}: {res.stderr.strip()[-500:]}")
            except AssertionError as e:
                problems.append(str(e).splitlines()[0])
        err = ce.stop_process(self.proc, timeout=20)
        if err:
            problems.append(err)
        if self.containerd is not None:
            problems += self.containerd.teardown()
        left = ce.kill_procs(self.our_procs)
        if left:
            problems.append(f"processes left after dockerd and containerd stopped: {left}")
        # dockerd itself bind-mounts --data-root onto itself (and makes it shared) when it does not sit on a shared
        # mount, as on this VM where / is private; it does not always undo that at shutdown. That mount is
        # dockerd's, not a leak of the runtime under test: removed without complaint. Anything else is a leak.
        data = self.p("data")
        for mp in ce.unmount_under(self.base):
            if mp != data:
                problems.append(f"mount left under {self.base}: {mp}")
        left = ce.remove_cgroup_tree(self.cgroup_parent)
        if left:
            problems.append(f"cgroups not removable: {left}")
        if not ce.mounts_under(self.base):
            shutil.rmtree(self.base, ignore_errors=True)
        if os.path.exists(self.base):
            problems.append(f"{self.base} not removed")
        if not self.key_existed and os.path.exists(KEY_FILE):
            problems.append(f"dockerd wrote {KEY_FILE} (removed)")
            os.unlink(KEY_FILE)
        for p in self.host_dirs.cleanup():
            if p != "/etc/docker":  # Debian's docker.io ships /etc/docker
                problems.append(f"host dir left (not empty): {p}")
        return problems

    def leaks(self):
        found = []
        if self.base and os.path.exists(self.base):
            found.append(f"docker dir {self.base} still exists")
        for d in ce.cgroup_tree(self.cgroup_parent):
            found.append(f"cgroup {d}")
        for pid, cmd in self.our_procs().items():
            found.append(f"process {pid}: {cmd}")
        for _mid, mp, fs, src in ce.read_mounts():
            if (self.base and self.base in mp) or any(i in mp for i in self.ids):
                found.append(f"mount {mp} ({fs} {src})")
        if self.containerd is not None:
            found += [x for x in self.containerd.leaks() if not x.startswith("containerd dir")]
        for p in self.host_dirs.paths:
            if not self.host_dirs.existed[p] and os.path.lexists(p) and p != "/etc/docker":
                found.append(f"host path {p} created and left behind")
        if not self.key_existed and os.path.exists(KEY_FILE):
            found.append(f"{KEY_FILE} created")
        return found


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description="run one docker command in a throwaway isolated dockerd")
    ap.add_argument("--runtime", default=default_runtime())
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("args", nargs=argparse.REMAINDER)
    ns = ap.parse_args(argv)
    args = [a for a in ns.args if a != "--"]
    why = missing_requirements(ns.runtime)
    if why:
        print("cannot run: " + "; ".join(why), file=sys.stderr)
        return 2
    env = DockerEnv(ns.runtime)
    rc = 0
    try:
        env.setup()
        args = [env.image if a == "IMAGE" else a for a in args]
        if args and args[0] == "run":
            args = ["run", *env.run_flags(), *args[1:]]
        res = env.docker(*args, timeout=120)
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
