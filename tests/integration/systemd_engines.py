"""podman and containerd configured for the systemd cgroup manager, run INSIDE the systemd test bed
(systemdbed.py), with a runtime of the test's choice: this checkout's ocirun or Debian's runc (/usr/sbin/runc).
Built on the bed's API only (bed.run, bed.systemctl, bed.host_path, bed.runtime); used by test_systemd_engines.py.

Everything of ours in the bed is named with a random tag T (sdeng<hex>):
    /var/lib/systemdbed/T/   (the bed's overlay, reachable from the host through bed.host_path)
        wrap/ocirun, wrap/runc    logging wrappers (enginebed.WRAPPER) around the real runtimes; an engine is
                                  told the wrapper's path, whose basename is the runtime's (podman names the
                                  runtime after it); calls-ocirun.log, calls-runc.log: what the engines called
        containers.conf           podman's (CONTAINERS_CONF): only runtime_supports_json, to give "ocirun" the
                                  json log flags as runc gets them; all else is on podman's command line
        podman.tar                the busybox-static rootfs (enginebed.make_rootfs), for `podman import`
    /var/lib/containerd/T/   (the bed's containerd volume: a real filesystem, reachable from the host)
        config.toml, root/, c.sock (+ .ttrpc), image.tar (an OCI archive, Entrypoint sleep), cni/, logs/
    /run/T/                  containerd's state dir, debug socket; the detached podman's output files
    T-containerd.service     the containerd daemon, a transient unit of the bed's systemd (systemd-run)

podman (PodmanInBed): Debian's podman 4.3 as root, its default storage (/var/lib/containers/storage: the bed's
volume, overlay driver) and run dirs (/run/containers, /run/libpod), every call with
`--cgroup-manager systemd --events-backend file --storage-driver overlay --runtime WRAPPER`. podman names the
container's scope itself: cgroupsPath "machine.slice:libpod:<id>" -> libpod-<id>.scope in machine.slice; conmon
goes in libpod-conmon-<id>.scope, which podman asks systemd for. The runtime is called without --root: its
default state dir in the bed (/run/ocirun, /run/runc).

containerd (ContainerdInBed): Debian's containerd 1.6 with the CRI plugin on, two CRI handlers `ocirun` and
`runc`, both io.containerd.runc.v2 with options BinaryName = the wrapper and SystemdCgroup = true (what a kubelet
with the systemd cgroup driver needs); `ctr` (namespace T) gives the same two shim options per container
(`--runc-binary WRAPPER --runc-systemd-cgroup`, and the cgroupsPath "slice:prefix:name" with --cgroup). The image
is imported into both namespaces (T and k8s.io); it is also the CRI's sandbox (pause) image, nothing is pulled.
The CRI is served on a socket in the containerd volume, so the project's CRI client (cri_client.py) talks to it
from the host. The shim keeps the runtime's state in /run/containerd/runc/<namespace> (the bed's /run).

leftovers(): what of ours is still in the bed (units, cgroups in any hierarchy, mounts, processes, runtime
state, engine containers); the tests assert it is empty after each test.
"""
import os
import re
import shlex
import shutil
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import enginebed  # noqa: E402
import engine_containerd  # noqa: E402
import engine_cri  # noqa: E402

RUNTIMES = ("ocirun", "runc")
# what systemd shows as a scope's Description: how one tells which runtime made a unit
DESCRIPTION = {"ocirun": "ocirun container {}", "runc": "libcontainer container {}"}
# the bed's hierarchies (test_systemd_cgroup.V1_DIRS) and the unified one
CGROUP_DIRS = ("memory", "cpu", "cpuacct", "pids", "devices", "blkio", "freezer", "cpuset", "systemd", "unified")
DEFAULT_RUNTIME_ROOTS = {"ocirun": "/run/ocirun", "runc": "/run/runc"}
SLEEP_FOREVER = ["/bin/sleep", "2147483647"]


def sh_quote(argv):
    return " ".join(shlex.quote(str(a)) for a in argv)


class Engines:
    """What podman and containerd share in one bed: the tag, the dirs, the wrappers and their call logs."""

    def __init__(self, bed, tag=None):
        self.bed = bed
        self.tag = tag or "sdeng" + uuid.uuid4().hex[:6]
        self.dir = f"/var/lib/systemdbed/{self.tag}"
        self.run_dir = f"/run/{self.tag}"
        self.real = {"ocirun": bed.runtime("ocirun")[0], "runc": bed.runtime("runc")[0]}
        self.wrappers = {name: f"{self.dir}/wrap/{name}" for name in RUNTIMES}
        self._n = 0

    def host(self, path):
        return self.bed.host_path(path)

    def setup(self):
        os.makedirs(self.host(self.dir + "/wrap"))
        os.chmod(self.host(self.dir), 0o755)
        for name in RUNTIMES:
            with open(self.host(self.wrappers[name]), "w") as f:
                f.write(enginebed.WRAPPER % {"runtime": shlex.quote(self.real[name]),
                                             "log": shlex.quote(self.calls_log(name))})
            os.chmod(self.host(self.wrappers[name]), 0o755)
            open(self.host(self.calls_log(name)), "w").close()
        self.bed.run(["mkdir", "-p", self.run_dir], check=True)
        return self

    def teardown(self):
        self.bed.run(["rm", "-rf", self.run_dir])
        shutil.rmtree(self.host(self.dir), ignore_errors=True)

    # -- the runtimes' calls
    def calls_log(self, name):
        return f"{self.dir}/calls-{name}.log"

    def calls_mark(self, name):
        return os.path.getsize(self.host(self.calls_log(name)))

    def calls(self, name, since=0):
        """[(argv, exit code or None)] of the runtime calls the wrapper recorded after byte offset `since`."""
        with open(self.host(self.calls_log(name)), errors="replace") as f:
            f.seek(since)
            lines = f.read().splitlines()
        out, by_pid = [], {}
        for line in lines:
            pid, _, rest = line.partition(" ")
            _, _, what = rest.partition(" ")
            if what.startswith("argv:"):
                by_pid[pid] = len(out)
                out.append([shlex.split(what[len("argv:"):]), None])
            elif what.startswith("exit ") and pid in by_pid:
                out[by_pid.pop(pid)][1] = int(what.split()[1])
        return [tuple(c) for c in out]

    def calls_text(self, name, since=0):
        with open(self.host(self.calls_log(name)), errors="replace") as f:
            f.seek(since)
            return f.read()[-6000:]

    # -- running things in the bed
    def detached(self, argv, timeout=60, env=None):
        """Run a command that leaves a process behind (podman run -d: conmon) with its outputs in files of the
        bed, never the exec's own (see systemdbed's note on runc as the outer runtime)."""
        self._n += 1
        out, err = f"{self.run_dir}/out.{self._n}", f"{self.run_dir}/err.{self._n}"
        res = self.bed.run(f"{sh_quote(argv)} </dev/null >{out} 2>{err}; rc=$?; cat {out}; cat {err} >&2; "
                           f"rm -f {out} {err}; exit $rc", timeout=timeout, env=env)
        res.args = argv
        return res

    def show(self, unit, *props):
        out = self.bed.systemctl("show", unit, *[f"-p{p}" for p in props], check=True).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def cat(self, path):
        return self.bed.run(["cat", path], check=True).stdout.strip()

    def cgroup_dirs(self, rel):
        """The directories of cgroup `rel` in the bed's hierarchies."""
        res = self.bed.run("for h in " + " ".join(CGROUP_DIRS) + f"; do d=/sys/fs/cgroup/$h{rel}; "
                           "[ -d \"$d\" ] && echo \"$d\"; done; true", check=True)
        return res.stdout.split()

    def stop_unit(self, unit):
        """Stop a daemon's transient unit and wait until systemd has forgotten it; [problems]."""
        problems = []
        r = self.bed.systemctl("stop", unit)
        if r.returncode != 0:
            problems.append(f"systemctl stop {unit}: {r}")
        self.bed.systemctl("reset-failed", unit)
        try:
            self.wait(lambda: self.show(unit, "LoadState")["LoadState"] == "not-found", f"{unit} gone")
        except AssertionError as e:
            problems.append(str(e))
        return problems

    def wait(self, condition, what, timeout=20):
        """Poll condition() (no fixed sleeps: bounded polling) until true; AssertionError naming `what`."""
        end = time.monotonic() + timeout
        while True:
            last = condition()
            if last:
                return last
            if time.monotonic() > end:
                raise AssertionError(f"not within {timeout}s: {what}")
            time.sleep(0.1)

    # -- what is left
    def leftovers(self, unit_globs=(), cgroup_names=(), mount_needles=(), procs=(), runtime_roots=()):
        """What matching any of the given patterns is still in the bed: loaded units (glob), cgroup directories
        whose name matches a regex (any hierarchy, any depth up to 4), mounts whose mount point contains a
        needle, processes whose comm is one of `procs`, entries at depth d of each runtime state root (root, d)."""
        script = []
        if unit_globs:
            script.append("systemctl list-units --all --plain --no-legend --no-pager "
                          + sh_quote(unit_globs) + " | sed 's/^/unit /'")
        if cgroup_names:
            script.append("find /sys/fs/cgroup -mindepth 2 -maxdepth 5 -type d | sed 's/^/cgroup /'")
        if mount_needles:
            script.append("sed 's/^/mount /' /proc/self/mountinfo")
        if procs:
            script.append("for p in /proc/[0-9]*; do c=$(cat $p/comm 2>/dev/null) && echo \"proc ${p#/proc/} $c\"; "
                          "done")
        for root, depth in runtime_roots:
            script.append(f"[ -d {root} ] && find {root} -mindepth {depth} -maxdepth {depth} | sed 's/^/state /'")
        script.append("true")
        out = self.bed.run("; ".join(script), check=True).stdout
        found = []
        names = [re.compile(r) for r in cgroup_names]
        for line in out.splitlines():
            kind, _, rest = line.partition(" ")
            if kind == "unit" and rest.strip():
                found.append(line)
            elif kind == "cgroup" and any(r.search(os.path.basename(rest)) for r in names):
                found.append(line)
            elif kind == "mount":
                f = rest.split()
                if len(f) > 4 and any(n in f[4] for n in mount_needles):
                    found.append(f"mount {f[4]}")
            elif kind == "proc" and rest.split(None, 1)[-1] in procs:
                found.append(line)
            elif kind == "state":
                found.append(line)
        return found


# ------------------------------------------------------------------------------------------- podman
class PodmanInBed:
    IMAGE = "localhost/sdeng-busybox:podman"

    def __init__(self, eng):
        self.eng = eng
        self.bed = eng.bed
        self.conf = f"{eng.dir}/containers.conf"
        self.env = {"CONTAINERS_CONF": self.conf}

    def setup(self):
        eng = self.eng
        with open(eng.host(self.conf), "w") as f:
            f.write('[engine]\nruntime_supports_json = ["crun", "runc", "ocirun"]\n')
        rootfs = eng.host(f"{eng.dir}/rootfs")
        enginebed.make_rootfs(rootfs)
        enginebed.write_rootfs_tar(rootfs, eng.host(f"{eng.dir}/podman.tar"))
        shutil.rmtree(rootfs)
        self("ocirun", "import", f"{eng.dir}/podman.tar", self.IMAGE, check=True)
        return self

    def argv(self, rt, *args):
        return ["podman", "--cgroup-manager", "systemd", "--events-backend", "file", "--storage-driver", "overlay",
                "--runtime", self.eng.wrappers[rt], *args]

    def __call__(self, rt, *args, check=False, timeout=60):
        return self.bed.run(self.argv(rt, *args), check=check, timeout=timeout, env=self.env)

    def run_detached(self, rt, *args):
        return self.eng.detached(self.argv(rt, "run", "-d", *args), env=self.env)

    def container_ids(self, rt="runc"):
        return self(rt, "ps", "-a", "-q", "--no-trunc", check=True).stdout.split()

    def force_remove(self):
        for cid in self.container_ids():
            self("runc", "rm", "-f", "-t", "0", cid)

    def leftovers(self, ids=()):
        eng = self.eng
        found = eng.leftovers(unit_globs=["libpod-*"], cgroup_names=[r"^libpod-"],
                              mount_needles=["/var/lib/containers/storage/overlay/", "/overlay-containers/",
                                             "/run/containers/storage/overlay-containers/", "/run/netns/",
                                             *ids],
                              procs=("conmon",), runtime_roots=[(r, 1) for r in DEFAULT_RUNTIME_ROOTS.values()])
        found += [f"podman container {c}" for c in self.container_ids()]
        return found

    def teardown(self):
        problems = []
        self.force_remove()
        r = self("runc", "rmi", "-f", self.IMAGE)
        if r.returncode != 0:
            problems.append(f"podman rmi: {r}")
        # machine.slice: systemd made it for the first scope podman asked for; stopped once empty
        self.bed.systemctl("stop", "machine.slice")
        # with no container left, c/storage has nothing mounted (not even its private bind of storage/overlay)
        return problems + self.leftovers() + self.eng.leftovers(mount_needles=["/var/lib/containers/storage"])


# ------------------------------------------------------------------------------------------- containerd


class ContainerdInBed:
    IMAGE = "localhost/sdeng-busybox:test"
    CRI_NAMESPACE = "k8s.io"

    def __init__(self, eng):
        self.eng = eng
        self.bed = eng.bed
        self.dir = f"/var/lib/containerd/{eng.tag}"
        self.state = f"{eng.run_dir}/containerd"
        self.address = f"{self.dir}/c.sock"
        self.unit = f"{eng.tag}-containerd.service"
        self.namespace = eng.tag
        self.started = False
        self.client = None

    def config_toml(self):
        """The host beds' containerd config (engine_containerd.config_toml, engine_cri.cri_section) in the bed's
        dirs, each handler with SystemdCgroup = true."""
        handlers = {name: {"BinaryName": self.eng.wrappers[name], "SystemdCgroup": True} for name in RUNTIMES}
        return engine_containerd.config_toml(
            root=f"{self.dir}/root", state=self.state, address=self.address, ttrpc=f"{self.address}.ttrpc",
            debug=f"{self.eng.run_dir}/containerd-debug.sock", opt=f"{self.dir}/opt",
            cri=engine_cri.cri_section(self.IMAGE, handlers, f"{self.dir}/cni/bin", f"{self.dir}/cni/net.d"))

    def setup(self):
        eng = self.eng
        host_dir = eng.host(self.dir)
        for d in ("cni/bin", "cni/net.d", "logs"):
            os.makedirs(os.path.join(host_dir, d))
        if len(eng.host(self.address)) > 100:
            raise RuntimeError(f"{eng.host(self.address)}: too long for a unix socket path")
        with open(os.path.join(host_dir, "config.toml"), "w") as f:
            f.write(self.config_toml())
        rootfs = os.path.join(host_dir, "rootfs")
        enginebed.make_rootfs(rootfs)
        enginebed.write_oci_archive(rootfs, os.path.join(host_dir, "image.tar"), self.IMAGE,
                                    image_config={"Entrypoint": SLEEP_FOREVER[:1], "Cmd": SLEEP_FOREVER[1:]})
        shutil.rmtree(rootfs)
        self.bed.run(["systemd-run", "--unit", self.unit, "--collect", "containerd", "--config",
                      f"{self.dir}/config.toml", "--log-level", "info"], check=True)
        self.started = True
        self.eng.wait(lambda: self.ctr("version").returncode == 0, f"containerd ({self.unit}) answering")
        for ns in (self.namespace, self.CRI_NAMESPACE):
            self.ctr("images", "import", f"{self.dir}/image.tar", namespace=ns, check=True)
        import cri_client

        self.client = cri_client.CRIClient(eng.host(self.address), timeout=30)

        def cri_up():
            try:
                return self.client.call("Version", version="v1")
            except cri_client.CRIError:
                return None
        self.eng.wait(cri_up, "the CRI answering")
        return self

    def ctr(self, *args, namespace=None, check=False, timeout=60):
        return self.bed.run(["ctr", "--address", self.address, "--namespace", namespace or self.namespace,
                             *args], check=check, timeout=timeout)

    def task_status(self, cid):
        for line in self.ctr("tasks", "ls", check=True).stdout.splitlines()[1:]:
            f = line.split()
            if f and f[0] == cid:
                return f[-1]
        return None

    def force_remove(self):
        problems = []
        if self.client is not None:
            import cri_client

            try:
                for pod in self.client.call("ListPodSandbox").items:
                    self.client.call("StopPodSandbox", pod_sandbox_id=pod.id)
                    self.client.call("RemovePodSandbox", pod_sandbox_id=pod.id)
                    problems.append(f"pod left: {pod.id}")
            except cri_client.CRIError as e:
                problems.append(f"removing pods: {e}")
        for cid in self.ctr("tasks", "ls", "-q").stdout.split():
            self.ctr("tasks", "kill", "-s", "SIGKILL", cid)
            self.ctr("tasks", "delete", "-f", cid)
        for cid in self.ctr("containers", "ls", "-q").stdout.split():
            self.ctr("containers", "rm", cid)
        return problems

    def leftovers(self, ids=()):
        found = self.eng.leftovers(
            unit_globs=[f"{self.eng.tag}*.scope", "cri-containerd-*", f"{self.eng.tag}pod-*"],
            cgroup_names=[rf"^{self.eng.tag}.*\.scope$", r"^cri-containerd-", rf"^{self.eng.tag}pod-"],
            mount_needles=[f"{self.state}/", "/run/containerd/", *ids],
            procs=("containerd-shim",),  # comm: containerd-shim-runc-v2 cut to 15 characters
            runtime_roots=[("/run/containerd/runc", 2)])  # the shim's runtime root: runc/<namespace>/<id>
        if self.started:
            for ns in (self.namespace, self.CRI_NAMESPACE):
                found += [f"ctr -n {ns} container {c}" for c in self.ctr("containers", "ls", "-q",
                                                                         namespace=ns).stdout.split()]
        return found

    def teardown(self):
        problems = []
        if self.started:
            problems += self.force_remove()
            for ns in (self.namespace, self.CRI_NAMESPACE):
                self.ctr("images", "rm", self.IMAGE, namespace=ns)
            if self.client is not None:
                self.client.close()
            problems += self.eng.stop_unit(self.unit)
            self.started = False
            # the parent of the test pods' slices (those the tests stop, as a kubelet does), and its directories
            # in the hierarchies systemd does not manage, which runc 1.1.5 makes and leaves (the test's note)
            top = f"/{self.eng.tag}pod.slice"
            self.bed.systemctl("stop", top[1:])
            left = self.eng.cgroup_dirs(top)
            if left:
                self.bed.run(["rmdir", *left])
        problems += self.leftovers()
        problems += self.eng.leftovers(unit_globs=[f"{self.eng.tag}pod.slice", self.unit],
                                       cgroup_names=[rf"^{self.eng.tag}pod\.slice$", rf"^{re.escape(self.unit)}$"],
                                       mount_needles=[self.dir + "/"], procs=("containerd",))
        self.bed.run(["rm", "-rf", self.dir, self.state])
        return problems
