"""Kubernetes pods through the CRI: containerd 1.6's CRI plugin (engine_cri.py: its own dirs and socket, handlers
`ocirun` and `runc` side by side, a local busybox-static sandbox image, host networking) driven by the project's
own CRI client (cri_client.py, gRPC). Every scenario runs once per handler with the same assertions.

RUNTIME (handler `ocirun`) is $OCIRUN_TEST_RUNTIME, default the venv's `ocirun`; handler `runc` is /usr/sbin/runc.
Failures show the CRI error text, the handler's runtime calls (the logging wrapper's record, with the runtime's
stderr) and containerd's log. After each pod: no mount, cgroup, process or runtime state of it is left; the session
fixture's teardown checks the whole bed.
    .venv/bin/pytest -m engine tests/integration/test_cri.py
"""
import os
import time

import pytest

import enginebed  # (tests/integration is on sys.path: see conftest)
import engine_cri as ec

RUNTIME = ec.default_runtime()
_MISSING = ec.missing_requirements(RUNTIME)

pytestmark = [
    pytest.mark.engine,
    pytest.mark.root,
    pytest.mark.skipif(bool(_MISSING), reason="; ".join(_MISSING) or "ok"),
]

if not _MISSING:
    import cri_client as cri
    from cri_client import CRIError

HANDLERS = ["ocirun", "runc"]


@pytest.fixture(scope="session")
def bed():
    yield from enginebed.serve(ec.CRIEnv(RUNTIME))


@pytest.fixture
def host_snapshot():
    """Overrides conftest's per-test leak checker: containerd's mounts live as long as the session; each test
    checks its pod, the session fixture the bed."""
    return None


def _context(bed):
    return (f"\nruntime calls (tail):\n{bed.calls_tail(3000)}\ncontainerd log (tail):\n"
            f"{bed.daemons[0].log_tail(2500) if bed.daemons else ''}")


class Pod:
    """One pod of a test: its config, id and containers; `check` wraps CRI calls so a failure shows the CRI error
    and the runtime's calls."""

    def __init__(self, bed, handler, name, **ns):
        self.bed, self.handler = bed, handler
        self.config = bed.pod_config(f"{name}-{handler}", **ns)
        self.id = self.call(bed.run_pod, handler, self.config)
        self.containers = []

    def call(self, fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except CRIError as e:
            pytest.fail(f"[handler {self.handler}] {e}{_context(self.bed)}", pytrace=False)

    def rpc(self, method, **fields):
        deadline = 60 + fields.get("timeout", 0) if method in ("StopContainer", "ExecSync") else None
        return self.call(self.bed.client.call, method, deadline=deadline, **fields)

    def container(self, name, command, start=True, **config):
        cid = self.call(self.bed.create_container, self.id, self.config, name, command, **config)
        self.containers.append(cid)
        if start:
            self.rpc("StartContainer", container_id=cid)
        return cid

    def status(self, cid):
        return self.rpc("ContainerStatus", container_id=cid).status

    def wait_exited(self, cid, limit=30):
        end = time.monotonic() + limit
        while True:
            st = self.status(cid)
            if st.state == cri.CONTAINER_EXITED:
                return st
            if time.monotonic() > end:
                pytest.fail(f"[handler {self.handler}] container {cid} not exited after {limit}s: "
                            f"{cri.to_dict(st)}{_context(self.bed)}", pytrace=False)
            time.sleep(0.1)

    def exec(self, cid, *cmd, timeout=10):
        return self.rpc("ExecSync", container_id=cid, cmd=list(cmd), timeout=timeout)

    def out(self, cid, *cmd):
        res = self.exec(cid, *cmd)
        assert res.exit_code == 0, f"[handler {self.handler}] {cmd}: exit {res.exit_code} {res.stderr!r}"
        return res.stdout.decode()

    def log(self, cid):
        path = self.status(cid).log_path
        with open(path, errors="replace") as f:
            return f.read()

    def remove(self):
        self.rpc("StopPodSandbox", pod_sandbox_id=self.id)
        self.rpc("RemovePodSandbox", pod_sandbox_id=self.id)
        self.bed.pods.discard(self.id)


def _leftovers(bed, pod):
    """What is left on the host of a removed pod: mounts, cgroups, processes, runtime state."""
    ids = [pod.id, *pod.containers]
    left = []
    for _mid, mp, fs, src in enginebed.read_mounts():
        if any(i in mp or i in src for i in ids):
            left.append(f"mount {mp} ({fs} {src})")
    parent = pod.config["linux"]["cgroup_parent"]
    below = [d for d in enginebed.cgroup_tree(parent) if d.rstrip("/").rsplit("/", 1)[1] != parent.rsplit("/", 1)[1]]
    left += [f"cgroup {d}" for d in below]
    cg = parent.strip("/").encode()
    for p, cmd in enginebed.procs_matching([i.encode() for i in ids],
                                           cgroup_needles=[b":/" + cg + b"/", b":/" + cg + b"\n"]).items():
        left.append(f"process {p}: {cmd}")
    for root in bed.runtime_roots.values():
        for i in ids:
            if os.path.exists(os.path.join(root, i)):
                left.append(f"runtime state {root}/{i}")
    # the pod's cgroup parent itself is the kubelet's to remove (here: the test's)
    enginebed.remove_cgroup_tree(parent)
    return left


@pytest.fixture
def pods(bed):
    """Make pods with pods(handler, name, **ns); each is removed at the end and checked for leftovers."""
    made = []

    def make(handler, name, **ns):
        p = Pod(bed, handler, name, **ns)
        made.append(p)
        return p

    yield make
    errors = []
    for p in made:
        try:
            if p.id in bed.pods:
                p.remove()
        except BaseException as e:  # noqa: BLE001 -- report, keep cleaning
            errors.append(f"removing pod {p.id}: {e}")
        errors += _leftovers(bed, p)
    assert not errors, "pod not cleanly removed:\n  " + "\n  ".join(errors)


def _cgroup_procs(parent):
    pids = set()
    for d in enginebed.cgroup_tree(parent):
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                pids |= {int(x) for x in f.read().split()}
        except OSError:
            pass
    return pids


# ------------------------------------------------------------------------------------------------- scenarios
def test_version_and_images(bed):
    v = bed.client.call("Version", version="v1")
    assert v.runtime_name == "containerd" and v.runtime_api_version == "v1", cri.to_dict(v)
    tags = [t for im in bed.client.call("ListImages").images for t in im.repo_tags]
    assert ec.IMAGE in tags, tags
    st = bed.client.call("ImageStatus", image={"image": ec.IMAGE})
    assert ec.IMAGE in st.image.repo_tags, cri.to_dict(st)


@pytest.mark.parametrize("handler", HANDLERS)
def test_pod_sandbox_lifecycle(bed, pods, handler):
    pod = pods(handler, "life")
    st = pod.rpc("PodSandboxStatus", pod_sandbox_id=pod.id).status
    assert st.state == cri.SANDBOX_READY and st.runtime_handler == handler, cri.to_dict(st)
    # the pause process runs in the pod's cgroup and is the handler's container
    parent = pod.config["linux"]["cgroup_parent"]
    procs = _cgroup_procs(parent)
    assert procs, f"no process in the pod's cgroup {parent}{_context(bed)}"
    with open(f"/proc/{min(procs)}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"/bin/sleep", b"2147483647"]
    assert os.path.isdir(os.path.join(bed.runtime_roots[handler], pod.id)), \
        f"no state of {pod.id} in handler {handler}'s root {bed.runtime_roots[handler]}"
    pod.rpc("StopPodSandbox", pod_sandbox_id=pod.id)
    st = pod.rpc("PodSandboxStatus", pod_sandbox_id=pod.id).status
    assert st.state == cri.SANDBOX_NOTREADY, cri.to_dict(st)
    assert not _cgroup_procs(parent), "processes left in the pod's cgroup after StopPodSandbox"
    pod.rpc("RemovePodSandbox", pod_sandbox_id=pod.id)
    bed.pods.discard(pod.id)
    ids = [i.id for i in pod.rpc("ListPodSandbox").items]
    assert pod.id not in ids
    left = _leftovers(bed, pod)
    assert not left, f"[handler {handler}] left after RemovePodSandbox: {left}"


@pytest.mark.parametrize("handler", HANDLERS)
def test_container_exit_code_and_reason(bed, pods, handler):
    pod = pods(handler, "exit")
    ok = pod.container("ok", ["/bin/sh", "-c", "echo out-$((6*7)); echo err >&2; exit 0"])
    bad = pod.container("bad", ["/bin/sh", "-c", "exit 3"])
    st = pod.wait_exited(ok)
    assert (st.exit_code, st.reason) == (0, "Completed"), cri.to_dict(st)
    assert st.started_at > 0 and st.finished_at > 0, cri.to_dict(st)
    log = pod.log(ok)
    assert " stdout F out-42" in log and " stderr F err" in log, log
    st = pod.wait_exited(bad)
    assert (st.exit_code, st.reason) == (3, "Error"), cri.to_dict(st)
    listed = {c.id: c.state for c in pod.rpc("ListContainers", filter={"pod_sandbox_id": pod.id}).containers}
    assert listed == {ok: cri.CONTAINER_EXITED, bad: cri.CONTAINER_EXITED}, listed
    for cid in (ok, bad):
        pod.rpc("RemoveContainer", container_id=cid)
    assert not pod.rpc("ListContainers", filter={"pod_sandbox_id": pod.id}).containers


@pytest.mark.parametrize("handler", HANDLERS)
def test_exec_sync(bed, pods, handler):
    pod = pods(handler, "exec")
    cid = pod.container("main", ec.SLEEP_FOREVER)
    assert pod.status(cid).state == cri.CONTAINER_RUNNING
    res = pod.exec(cid, "/bin/sh", "-c", "echo hi-$((1+1)); echo oops >&2; exit 7")
    assert (res.stdout, res.stderr, res.exit_code) == (b"hi-2\n", b"oops\n", 7), cri.to_dict(res)
    assert pod.out(cid, "id", "-u") == "0\n"
    # the exec joins the container: its pid, ipc and uts namespaces are its init's, and it sees the init as pid 1
    for n in ("pid", "ipc", "uts"):
        assert pod.out(cid, "readlink", f"/proc/self/ns/{n}") == pod.out(cid, "readlink", f"/proc/1/ns/{n}"), n
    assert pod.out(cid, "cat", "/proc/1/cmdline") == "/bin/sleep\x002147483647\x00"


@pytest.mark.parametrize("handler", HANDLERS)
def test_two_containers_share_pod_namespaces(bed, pods, handler):
    pod = pods(handler, "share", pid=cri.POD)
    a = pod.container("a", ec.SLEEP_FOREVER)
    b = pod.container("b", ["/bin/sh", "-c", "echo b > /tmp/b; exec sleep 2147483646"])
    ns = {}
    for cid in (a, b):
        ns[cid] = {n: pod.out(cid, "readlink", f"/proc/self/ns/{n}").strip() for n in ("net", "ipc", "pid", "mnt")}
    host = {n: os.readlink(f"/proc/self/ns/{n}") for n in ("net", "ipc", "pid", "mnt")}
    assert ns[a]["net"] == ns[b]["net"] == host["net"], (ns, host)   # host networking
    assert ns[a]["ipc"] == ns[b]["ipc"] != host["ipc"], (ns, host)   # the pod's IPC namespace
    assert ns[a]["pid"] == ns[b]["pid"] != host["pid"], (ns, host)   # shareProcessNamespace
    assert ns[a]["mnt"] != ns[b]["mnt"], ns                          # each its own root
    # with the pod's PID namespace, a sees b's process (and the pause process as pid 1)
    ps = pod.out(a, "/bin/sh", "-c", "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done")
    assert "sleep 2147483646" in ps and "/bin/sleep 2147483647" in ps, ps
    assert pod.out(a, "cat", "/proc/1/cmdline") == "/bin/sleep\x002147483647\x00"
    # an IPC object made in a is seen in b: a POSIX shm file in the pod's /dev/shm
    pod.out(a, "/bin/sh", "-c", "echo shared > /dev/shm/x")
    assert pod.out(b, "cat", "/dev/shm/x") == "shared\n"
    assert pod.exec(a, "cat", "/tmp/b").exit_code != 0                 # but not b's files


@pytest.mark.parametrize("handler", HANDLERS)
def test_stop_container_grace_period(bed, pods, handler):
    pod = pods(handler, "stop")
    # one exits on SIGTERM, one ignores it (reports it and goes on): SIGKILL after the grace period
    polite = pod.container("polite", ["/bin/sh", "-c", "trap 'echo got-term; exit 0' TERM; echo up; "
                                                       "while :; do sleep 0.2; done"])
    stubborn = pod.container("stubborn", ["/bin/sh", "-c", "trap 'echo got-term' TERM; echo up; "
                                                           "while :; do sleep 0.2; done"])
    for cid in (polite, stubborn):
        end = time.monotonic() + 20
        while "stdout F up" not in pod.log(cid) and time.monotonic() < end:  # its trap is set
            time.sleep(0.05)
    pod.rpc("StopContainer", container_id=polite, timeout=30)
    st = pod.status(polite)
    assert (st.state, st.exit_code, st.reason) == (cri.CONTAINER_EXITED, 0, "Completed"), cri.to_dict(st)
    assert "stdout F got-term" in pod.log(polite)
    pod.rpc("StopContainer", container_id=stubborn, timeout=2)
    st = pod.status(stubborn)
    assert (st.state, st.exit_code, st.reason) == (cri.CONTAINER_EXITED, 137, "Error"), cri.to_dict(st)
    assert "stdout F got-term" in pod.log(stubborn)
    # StopContainer is idempotent
    pod.rpc("StopContainer", container_id=stubborn, timeout=2)
