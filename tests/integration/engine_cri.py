"""The CRI test bed: Debian's containerd 1.6 with its CRI plugin (io.containerd.grpc.v1.cri) on, in dirs of its own,
serving the Kubernetes CRI (runtime.v1) on the bed's socket, with two runtime handlers side by side:

    ocirun  io.containerd.runc.v2, options BinaryName = ocirun (through the bed's logging wrapper), Root = BASE/rt-ocirun
    runc    io.containerd.runc.v2, options BinaryName = runc (idem),                              Root = BASE/rt-runc

Built on engine_containerd.ContainerdEnv (enginebed.EngineBed): containerd's --root, --state, sockets, config, `opt`
dir, log (BASE/containerd.log) and the CRI plugin's root/state dirs are all under BASE (/tmp/ocirun-containerd-XXXX).
The image: enginebed's busybox-static rootfs as an OCI archive whose Entrypoint sleeps forever, imported with
`ctr -n k8s.io images import` under IMAGE; it is both the `sandbox_image` (the pod's pause container) and the
containers' image, so nothing is pulled and no registry is reached. Pods run with host networking (NamespaceMode
NODE): the CNI dirs point at an empty BASE/cni (no network plugin is ever called); IPC and PID can be the pod's.
Pods are put in the cgroup parent the tests give (`cgroup_parent`, /ocirun-cri-XXXX), so teardown removes exactly
that subtree. Not isolated (hard-coded in containerd 1.6's shim): its ttrpc socket dir /run/containerd/s, cleaned
up by ContainerdEnv's teardown.

teardown: every pod is stopped and removed through the CRI (containers with it), then ContainerdEnv's teardown
(containerd stopped, what is left killed, each handler's runtime root cleaned, mounts, cgroups, dirs).

`python engine_cri.py [--runtime PATH]` starts a bed, prints the CRI Version and images, and tears it down.
"""
import os
import shutil
import subprocess
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import enginebed  # noqa: E402
import engine_containerd  # noqa: E402
from enginebed import default_runtime, which  # noqa: E402,F401

IMAGE = "docker.io/library/ocirun-cri-busybox:test"
NAMESPACE = "k8s.io"  # the containerd namespace of the CRI plugin (fixed)
SLEEP_FOREVER = ["/bin/sleep", "2147483647"]
RUNC = "/usr/sbin/runc"


def missing_requirements(runtime):
    why = engine_containerd.missing_requirements(runtime)
    if not os.access(RUNC, os.X_OK):
        why.append(f"{RUNC} not installed (the comparison handler)")
    try:
        import grpc  # noqa: F401
        import google.protobuf  # noqa: F401
    except ImportError as e:
        why.append(f"{e.name} not installed (pip install -e .[test])")
    return why


class CRIEnv(engine_containerd.ContainerdEnv):
    """containerd with CRI, handlers {"ocirun": runtime, "runc": RUNC}."""

    def __init__(self, runtime=None, base=None, timeout=enginebed.DEFAULT_TIMEOUT, wrap=None, runc=RUNC):
        super().__init__(runtime, base=base, timeout=timeout, wrap=wrap, namespace=NAMESPACE,
                         cgroup_parent="/ocirun-cri-" + uuid.uuid4().hex[:10])
        self.image = IMAGE
        self.runc = runc
        self.handlers = {}  # handler name -> path given to the shim (the wrapper when wrapping)
        self.client = None
        self.pods = set()

    @property
    def runtime_roots(self):
        """The runtime --root of each handler: the shim appends the containerd namespace to the Root option."""
        return {h: self.p("rt-" + h, NAMESPACE) for h in ("ocirun", "runc")}

    def setup(self, with_image=True):
        self.make_base("root", "state", "opt", "tmp", "fifo", "cni/bin", "cni/net.d", "logs", "rt-ocirun",
                       "rt-runc")
        self.env = dict(os.environ, TMPDIR=self.p("tmp"))
        self.handlers["ocirun"] = self.register_runtime("ocirun", self.runtime)
        self.handlers["runc"] = self.register_runtime("runc", self.runc)
        with open(self.p("config.toml"), "w") as f:
            f.write(self.config_toml())
        daemon = self.start_daemon("containerd", [which("containerd"), "--config", self.p("config.toml"),
                                                  "--log-level", "info"], self.address, env=self.env, timeout=20)
        self.wait_ready(daemon, lambda: self.ctr("version", timeout=10), timeout=20)
        if with_image:
            self.import_image("oci", self._load, image_config={"Entrypoint": SLEEP_FOREVER[:1], "Cmd": SLEEP_FOREVER[1:]})
        import cri_client

        self.client = cri_client.CRIClient(self.address, timeout=self.timeout)
        # the CRI service answers once its plugin is initialised
        end = enginebed.time.monotonic() + 20
        while True:
            try:
                self.client.call("Version", version="v1")
                break
            except cri_client.CRIError as e:
                if enginebed.time.monotonic() > end or not daemon.alive():
                    raise RuntimeError(f"CRI does not answer: {e}\n{daemon.log_tail()}")
                enginebed.time.sleep(0.1)
        return self

    def config_toml(self):
        handlers = {name: {"BinaryName": path, "Root": os.path.dirname(self.runtime_roots[name])}
                    for name, path in self.handlers.items()}
        return super().config_toml(cri=cri_section(IMAGE, handlers, self.p("cni", "bin"), self.p("cni", "net.d")))

    # -- pods (the tests' helpers)
    def pod_config(self, name, pid=1, ipc=0, sysctls=None, **linux_extra):
        """A PodSandboxConfig dict: host network, the pod's IPC namespace, a PID namespace per container (what the
        kubelet sends without shareProcessNamespace) unless told (NamespaceMode numbers: cri_client.POD...),
        cgroup parent under the bed's, logs in BASE/logs/NAME-UID."""
        uid = uuid.uuid4().hex[:12]
        return {
            "metadata": {"name": name, "uid": uid, "namespace": "ocirun-tests", "attempt": 0},
            "hostname": "",
            "log_directory": self.p("logs", f"{name}-{uid}"),
            "linux": {"cgroup_parent": f"{self.cgroup_parent}/pod{uid}", "sysctls": dict(sysctls or {}),
                      "security_context": {"namespace_options": {"network": 2, "pid": pid, "ipc": ipc},
                                           **linux_extra}},
        }

    def run_pod(self, handler, config):
        pid = self.client.call("RunPodSandbox", config=config, runtime_handler=handler).pod_sandbox_id
        self.pods.add(pid)
        self.ids.add(pid)
        return pid

    def remove_pod(self, pod_id):
        self.client.call("StopPodSandbox", pod_sandbox_id=pod_id)
        self.client.call("RemovePodSandbox", pod_sandbox_id=pod_id)
        self.pods.discard(pod_id)

    def create_container(self, pod_id, pod_config, name, command, args=(), **config):
        cfg = {"metadata": {"name": name, "attempt": 0}, "image": {"image": IMAGE}, "command": list(command),
               "args": list(args), "log_path": f"{name}.log", **config}
        # as the kubelet does: the container's namespace options are the pod's (else the CRI default, POD,
        # puts the container in the pause process's PID namespace)
        sc = cfg.setdefault("linux", {}).setdefault("security_context", {})
        sc.setdefault("namespace_options", pod_config["linux"]["security_context"]["namespace_options"])
        cid = self.client.call("CreateContainer", pod_sandbox_id=pod_id, config=cfg,
                               sandbox_config=pod_config).container_id
        self.ids.add(cid)
        return cid

    # -- teardown hooks
    def remove_containers(self):
        problems = []
        if self.client is not None and self.daemons_alive():
            import cri_client

            try:
                for item in self.client.call("ListPodSandbox").items:
                    self.pods.add(item.id)
                for pod in sorted(self.pods):
                    try:
                        self.remove_pod(pod)
                    except cri_client.CRIError as e:
                        problems.append(f"removing pod {pod}: {e}")
            except cri_client.CRIError as e:
                problems.append(f"listing pods: {e}")
            self.client.close()
        return problems + super().remove_containers()

    def clean_runtime_state(self):
        problems = []
        for name, root in self.runtime_roots.items():
            binary = self.runtime if name == "ocirun" else self.runc
            if not os.path.isdir(root):
                continue
            for cid in os.listdir(root):
                problems.append(f"runtime state left: {root}/{cid}")
                try:
                    subprocess.run([binary, "--root", root, "delete", "--force", cid], capture_output=True,
                                   timeout=20, stdin=subprocess.DEVNULL)
                except subprocess.TimeoutExpired:
                    problems.append(f"{binary} delete --force {cid} timed out")
            for mp in enginebed.unmount_under(root):
                problems.append(f"mount left under {root}: {mp}")
            shutil.rmtree(os.path.dirname(root), ignore_errors=True)
        return problems

    def extra_dirs(self):
        return ()

    def extra_leaks(self):
        return []


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description="start a CRI bed, print Version and images, tear it down")
    ap.add_argument("--runtime", default=default_runtime())
    ns = ap.parse_args(argv)
    why = missing_requirements(ns.runtime)
    if why:
        print("cannot run: " + "; ".join(why), file=sys.stderr)
        return 2
    env = CRIEnv(ns.runtime)
    try:
        env.setup()
        import cri_client

        print(cri_client.to_dict(env.client.call("Version", version="v1")))
        for im in env.client.call("ListImages").images:
            print(cri_client.to_dict(im))
    finally:
        for p in env.teardown() + env.leaks():
            print("teardown: " + p, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())


CRI = 'plugins."io.containerd.grpc.v1.cri"'


def cri_section(image, handlers, cni_bin, cni_conf):
    """The CRI plugin's section of containerd's config (engine_containerd.config_toml(cri=...)): `handlers` maps a
    runtime handler name to the runc shim's options ({"BinaryName": ..., "SystemdCgroup": True, ...}). Shared by
    this bed and the systemd bed's containerd (systemd_engines)."""
    out = ""
    for name, options in handlers.items():
        out += f"""
    [{CRI}.containerd.runtimes.{name}]
      runtime_type = "io.containerd.runc.v2"
      [{CRI}.containerd.runtimes.{name}.options]
"""
        for k, v in options.items():
            out += f"        {k} = {'true' if v is True else 'false' if v is False else chr(34) + str(v) + chr(34)}\n"
    return f"""\
  [{CRI}]
    sandbox_image = "{image}"
    disable_apparmor = true
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_selinux = false
    # this host grants no CAP_SYS_RESOURCE (not in the bounding set): no runtime can lower oom_score_adj to the
    # pause container's -998; containerd then clamps it to its own score (what it does for rootless)
    restrict_oom_score_adj = true
    [{CRI}.containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
{out}
    [{CRI}.cni]
      bin_dir = "{cni_bin}"
      conf_dir = "{cni_conf}"
"""
