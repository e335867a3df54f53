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
    # the exec joins the container: its namespaces are its init's, and it sees the init as pid 1
    for n in ("mnt", "pid", "ipc", "uts", "net"):
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


# ------------------------------------------------------------------------------------------------ securityContext
def _status_fields(pod, cid, *names):
    st = pod.out(cid, "cat", "/proc/self/status")
    got = {}
    for line in st.splitlines():
        k, _, v = line.partition(":")
        if k in names:
            got[k] = v.split()
    return got


@pytest.mark.parametrize("handler", HANDLERS)
def test_run_as_user_group_supplemental(bed, pods, handler):
    pod = pods(handler, "user")
    sc = {"run_as_user": {"value": 1234}, "run_as_group": {"value": 2345}, "supplemental_groups": [3456, 4567]}
    cid = pod.container("main", ec.SLEEP_FOREVER, linux={"security_context": sc})
    # the init and an exec both get the ids (kubelet's securityContext applies to the container's processes)
    init = pod.out(cid, "/bin/sh", "-c", "grep -E '^(Uid|Gid|Groups):' /proc/1/status")
    mine = pod.out(cid, "/bin/sh", "-c", "grep -E '^(Uid|Gid|Groups):' /proc/self/status")
    for text in (init, mine):
        f = {ln.split(":")[0]: ln.split(":")[1].split() for ln in text.splitlines()}
        assert f["Uid"] == ["1234"] * 4 and f["Gid"] == ["2345"] * 4, text
        assert sorted(f["Groups"]) == ["2345", "3456", "4567"], text
    assert pod.exec(cid, "touch", "/root-owned").exit_code != 0  # not root: / is root's 0755


@pytest.mark.parametrize("handler", HANDLERS)
def test_readonly_rootfs(bed, pods, handler):
    pod = pods(handler, "rofs")
    cid = pod.container("main", ec.SLEEP_FOREVER, linux={"security_context": {"readonly_rootfs": True}})
    res = pod.exec(cid, "touch", "/x")
    assert res.exit_code != 0 and b"Read-only file system" in res.stderr, cri.to_dict(res)
    # the pod's /dev/shm and the CRI's /etc/hosts etc. are separate mounts; /dev/shm stays writable
    assert pod.exec(cid, "touch", "/dev/shm/x").exit_code == 0
    opts = pod.out(cid, "/bin/sh", "-c", "awk '$5 == \"/\" {print $6}' /proc/self/mountinfo")
    assert opts.split(",")[0] == "ro", opts


@pytest.mark.parametrize("handler", HANDLERS)
def test_no_new_privs_and_seccomp(bed, pods, handler):
    pod = pods(handler, "sec")
    plain = pod.container("plain", ec.SLEEP_FOREVER,
                          linux={"security_context": {"seccomp": {"profile_type": cri.SECCOMP_UNCONFINED}}})
    confined = pod.container("confined", ec.SLEEP_FOREVER, linux={"security_context": {
        "no_new_privs": True, "seccomp": {"profile_type": cri.SECCOMP_RUNTIME_DEFAULT}}})
    assert _status_fields(pod, plain, "NoNewPrivs", "Seccomp") == {"NoNewPrivs": ["0"], "Seccomp": ["0"]}
    assert _status_fields(pod, confined, "NoNewPrivs", "Seccomp") == {"NoNewPrivs": ["1"], "Seccomp": ["2"]}


CAP_NET_ADMIN, CAP_CHOWN, CAP_SYS_ADMIN = 12, 0, 21


@pytest.mark.parametrize("handler", HANDLERS)
def test_capabilities_add_drop(bed, pods, handler):
    pod = pods(handler, "caps")
    default = pod.container("default", ec.SLEEP_FOREVER)
    changed = pod.container("changed", ec.SLEEP_FOREVER, linux={"security_context": {"capabilities": {
        "add_capabilities": ["NET_ADMIN"], "drop_capabilities": ["CHOWN"]}}})
    d = int(_status_fields(pod, default, "CapEff")["CapEff"][0], 16)
    c = int(_status_fields(pod, changed, "CapEff")["CapEff"][0], 16)
    assert d & (1 << CAP_CHOWN) and not d & (1 << CAP_NET_ADMIN) and not d & (1 << CAP_SYS_ADMIN), hex(d)
    assert c == (d | 1 << CAP_NET_ADMIN) & ~(1 << CAP_CHOWN), (hex(d), hex(c))
    assert pod.exec(changed, "chown", "1:1", "/tmp").exit_code != 0
    assert pod.exec(default, "chown", "1:1", "/tmp").exit_code == 0


@pytest.mark.parametrize("handler", HANDLERS)
def test_privileged_and_masked_paths(bed, pods, handler):
    pod = pods(handler, "priv", privileged=True)
    # what the kubelet sends for procMount Default (its default masked and read-only paths, a few of them here)
    kubelet = {"masked_paths": ["/proc/acpi", "/proc/kcore", "/proc/timer_list", "/sys/firmware"],
               "readonly_paths": ["/proc/bus", "/proc/sys", "/proc/sysrq-trigger"]}
    plain = pod.container("plain", ec.SLEEP_FOREVER, linux={"security_context": kubelet})
    priv = pod.container("priv", ec.SLEEP_FOREVER, linux={"security_context": {"privileged": True, **kubelet}})
    with open("/proc/self/status") as f:
        host_bnd = [ln.split()[1] for ln in f if ln.startswith("CapBnd:")][0]
    assert _status_fields(pod, priv, "CapEff")["CapEff"] == [host_bnd]
    # default masked and read-only paths: /proc/timer_list masked (/dev/null over it), /proc/sys read-only;
    # neither for the privileged one
    assert pod.out(plain, "/bin/sh", "-c", "wc -c < /proc/timer_list").strip() == "0"
    assert int(pod.out(priv, "/bin/sh", "-c", "wc -c < /proc/timer_list").strip()) > 0
    assert pod.exec(plain, "/bin/sh", "-c", "echo 1 > /proc/sys/kernel/ns_last_pid").exit_code != 0
    ro = pod.out(plain, "/bin/sh", "-c", "awk '$5 == \"/proc/sys\" {print $6}' /proc/self/mountinfo")
    assert ro.split(",")[0] == "ro", ro
    assert pod.out(priv, "/bin/sh", "-c", "awk '$5 == \"/proc/sys\" {print $6}' /proc/self/mountinfo") == ""
    assert pod.out(priv, "/bin/sh", "-c", "awk '$5 == \"/sys\" {print $6}' /proc/self/mountinfo").startswith("rw")
    # the host's devices
    n_host = len([d for d in os.listdir("/dev") if not os.path.isdir("/dev/" + d)])
    n_priv = int(pod.out(priv, "/bin/sh", "-c", "ls -A /dev | wc -l").strip())
    n_plain = int(pod.out(plain, "/bin/sh", "-c", "ls -A /dev | wc -l").strip())
    assert n_priv > n_plain and n_priv >= n_host // 2, (n_priv, n_plain, n_host)


@pytest.mark.parametrize("handler", HANDLERS)
def test_proc_mount_unmasked(bed, pods, handler):
    """securityContext.procMount: Unmasked — the kubelet then sends empty masked and read-only path lists: nothing
    of /proc is masked or made read-only, while the same pod's Default container (the kubelet's lists) has them."""
    pod = pods(handler, "unmasked")
    kubelet = {"masked_paths": ["/proc/timer_list"], "readonly_paths": ["/proc/sys"]}
    default = pod.container("default", ec.SLEEP_FOREVER, linux={"security_context": kubelet})
    unmasked = pod.container("unmasked", ec.SLEEP_FOREVER,
                             linux={"security_context": {"masked_paths": [], "readonly_paths": []}})
    mi = "awk '$5 == \"/proc/sys\" || $5 == \"/proc/timer_list\" {print $5}' /proc/self/mountinfo"
    assert pod.out(default, "/bin/sh", "-c", mi).split() == ["/proc/sys", "/proc/timer_list"]
    assert pod.out(unmasked, "/bin/sh", "-c", mi).split() == []
    assert int(pod.out(unmasked, "/bin/sh", "-c", "wc -c < /proc/timer_list").strip()) > 0
    assert pod.out(default, "/bin/sh", "-c", "wc -c < /proc/timer_list").strip() == "0"


# ------------------------------------------------------------------------------------------------ failures
@pytest.mark.parametrize("handler", HANDLERS)
def test_start_failure_reports_runtime_error(bed, pods, handler):
    pod = pods(handler, "fail")
    cid = pod.call(bed.create_container, pod.id, pod.config, "bad", ["/no/such/binary"])
    pod.containers.append(cid)
    with pytest.raises(CRIError) as ei:
        bed.client.call("StartContainer", container_id=cid)
    assert "/no/such/binary" in ei.value.details, ei.value.details
    st = pod.status(cid)
    assert st.state == cri.CONTAINER_EXITED and st.exit_code == 128 and st.reason == "StartError", cri.to_dict(st)
    assert "/no/such/binary" in st.message, cri.to_dict(st)


# ------------------------------------------------------------------------------------------------ hostPath volumes
def _mounted(pod, cid, path):
    mps = pod.out(cid, "/bin/sh", "-c", "awk '{print $5}' /proc/self/mountinfo").split()
    return path in mps


@pytest.mark.parametrize("handler", HANDLERS)
def test_hostpath_mount_propagation(bed, pods, handler):
    import subprocess
    import uuid

    vol = bed.p("vol-" + uuid.uuid4().hex[:8])
    os.makedirs(vol)
    made = []
    try:
        # the host side as the kubelet's is: a shared mount (HostToContainer needs shared or slave, Bidirectional
        # shared; containerd refuses otherwise)
        for args in (["--bind", vol, vol], ["--make-shared", vol]):
            subprocess.run(["mount", *args], check=True)
        made.append(vol)
        pod = pods(handler, "prop", privileged=True)
        mounts = {"private": cri.PROPAGATION_PRIVATE, "h2c": cri.PROPAGATION_HOST_TO_CONTAINER,
                  "bidi": cri.PROPAGATION_BIDIRECTIONAL}
        cids = {}
        for name, prop in mounts.items():
            sc = {"privileged": True} if prop == cri.PROPAGATION_BIDIRECTIONAL else {}
            cids[name] = pod.container(name, ec.SLEEP_FOREVER, linux={"security_context": sc},
                                       mounts=[{"container_path": "/vol", "host_path": vol, "propagation": prop}])
        # a mount made on the host after the containers started
        os.makedirs(os.path.join(vol, "fromhost"))
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "fromhost", os.path.join(vol, "fromhost")],
                       check=True)
        made.insert(0, os.path.join(vol, "fromhost"))
        seen = {name: _mounted(pod, cid, "/vol/fromhost") for name, cid in cids.items()}
        assert seen == {"private": False, "h2c": True, "bidi": True}, seen
        # a mount made in the Bidirectional container is seen on the host (and by the HostToContainer one)
        pod.out(cids["bidi"], "mkdir", "-p", "/vol/fromctr")
        pod.out(cids["bidi"], "mount", "-t", "tmpfs", "-o", "size=1m", "fromctr", "/vol/fromctr")
        made.insert(0, os.path.join(vol, "fromctr"))
        host = [m[1] for m in enginebed.read_mounts()]
        assert os.path.join(vol, "fromctr") in host
        assert _mounted(pod, cids["h2c"], "/vol/fromctr") and not _mounted(pod, cids["private"], "/vol/fromctr")
    finally:
        for mp in made:
            enginebed.unmount_under(mp)


# ------------------------------------------------------------------------------------------------ resources
@pytest.mark.parametrize("handler", HANDLERS)
def test_oom_killed(bed, pods, handler):
    pod = pods(handler, "oom")
    cid = pod.container("hog", ["/bin/sh", "-c", "tail /dev/zero"],
                        linux={"resources": {"memory_limit_in_bytes": 16 << 20}})
    st = pod.wait_exited(cid, limit=60)
    assert (st.exit_code, st.reason) == (137, "OOMKilled"), cri.to_dict(st)


def _host_pid(pod, cid):
    import json

    info = pod.rpc("ContainerStatus", container_id=cid, verbose=True).info
    return json.loads(info["info"])["pid"]


def _cgroup_file(pid, controller, name):
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _h, ctrls, path = line.rstrip("\n").split(":", 2)
            if controller in ctrls.split(","):
                for mp in (f"{enginebed.CGROUP_ROOT}/{controller}", f"{enginebed.CGROUP_ROOT}/{ctrls}"):
                    if os.path.exists(f"{mp}{path}/{name}"):
                        with open(f"{mp}{path}/{name}") as g:
                            return g.read().strip()
    raise AssertionError(f"no {controller} cgroup file {name} for pid {pid}")


@pytest.mark.parametrize("handler", HANDLERS)
def test_update_container_resources_and_stats(bed, pods, handler):
    pod = pods(handler, "upd")
    cid = pod.container("main", ec.SLEEP_FOREVER, linux={"resources": {
        "memory_limit_in_bytes": 256 << 20, "cpu_shares": 1024, "cpu_period": 100000, "cpu_quota": 200000}})
    pid = _host_pid(pod, cid)
    assert _cgroup_file(pid, "memory", "memory.limit_in_bytes") == str(256 << 20)
    assert _cgroup_file(pid, "cpu", "cpu.cfs_quota_us") == "200000"
    pod.rpc("UpdateContainerResources", container_id=cid, linux={
        "memory_limit_in_bytes": 128 << 20, "cpu_shares": 512, "cpu_period": 100000, "cpu_quota": 50000})
    got = (_cgroup_file(pid, "memory", "memory.limit_in_bytes"), _cgroup_file(pid, "cpu", "cpu.shares"),
           _cgroup_file(pid, "cpu", "cpu.cfs_quota_us"))
    assert got == (str(128 << 20), "512", "50000"), got
    # stats: the container's own cgroup, read by containerd through the shim
    pod.out(cid, "/bin/sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done")
    stats = pod.rpc("ContainerStats", container_id=cid).stats
    assert stats.attributes.id == cid, cri.to_dict(stats)
    assert stats.cpu.usage_core_nano_seconds.value > 0, cri.to_dict(stats)
    assert 0 < stats.memory.working_set_bytes.value < 128 << 20, cri.to_dict(stats)


@pytest.mark.parametrize("handler", HANDLERS)
def test_exec_sync_timeout(bed, pods, handler):
    pod = pods(handler, "exto")
    cid = pod.container("main", ec.SLEEP_FOREVER)
    with pytest.raises(CRIError) as ei:
        bed.client.call("ExecSync", container_id=cid, cmd=["/bin/sleep", "1234"], timeout=1, deadline=60)
    assert "timeout" in ei.value.details, ei.value.details
    # the timed-out process is gone, the container still serves
    ps = pod.out(cid, "/bin/sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
    assert "sleep 1234" not in ps, ps
    assert pod.out(cid, "echo", "still") == "still\n"


@pytest.mark.parametrize("handler", HANDLERS)
def test_reopen_container_log(bed, pods, handler):
    pod = pods(handler, "logs")
    cid = pod.container("ticker", ["/bin/sh", "-c", "while :; do echo tick; sleep 0.1; done"])
    path = pod.status(cid).log_path

    def wait_for(p, what):
        end = time.monotonic() + 20
        while time.monotonic() < end:
            if os.path.exists(p):
                with open(p) as f:
                    if what in f.read():
                        return
            time.sleep(0.05)
        raise AssertionError(f"{what!r} never in {p}")

    wait_for(path, "stdout F tick")
    os.rename(path, path + ".1")
    pod.rpc("ReopenContainerLog", container_id=cid)
    wait_for(path, "stdout F tick")


@pytest.mark.parametrize("handler", HANDLERS)
def test_exec_streaming(bed, pods, handler):
    """Exec through containerd's streaming server (WebSocket, v4.channel.k8s.io): the runtime's exec with the
    shim's pipes, output and exit code as kubectl exec gets them."""
    import json

    pod = pods(handler, "stream")
    cid = pod.container("main", ec.SLEEP_FOREVER)
    url = pod.rpc("Exec", container_id=cid, cmd=["/bin/sh", "-c", "echo out; echo err >&2; tty; exit 3"],
                  stdout=True, stderr=True).url
    chans = cri.stream(url)
    assert chans.get(1) == b"out\nnot a tty\n" and chans.get(2) == b"err\n", chans
    status = json.loads(chans[3])
    assert status["reason"] == "NonZeroExitCode" and status["details"]["causes"][0]["message"] == "3", status
    url = pod.rpc("Exec", container_id=cid, cmd=["cat", "/proc/1/cmdline"], stdout=True).url
    chans = cri.stream(url)
    assert chans.get(1) == b"/bin/sleep\x002147483647\x00" and json.loads(chans[3])["status"] == "Success", chans


@pytest.mark.parametrize("handler", HANDLERS)
def test_attach_streaming(bed, pods, handler):
    """Attach through the streaming server: the container's own stdout and stderr (the shim's fifos)."""
    pod = pods(handler, "attach")
    cid = pod.container("ticker", ["/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo tick-$i; echo tock-$i >&2; "
                                                    "sleep 0.1; done"])
    url = pod.rpc("Attach", container_id=cid, stdout=True, stderr=True).url
    chans = cri.stream(url, until=lambda c: b"\n" in c.get(1, b"")[4:] and b"\n" in c.get(2, b"")[4:])
    out, err = chans[1].decode().splitlines(), chans[2].decode().splitlines()
    assert out[0].startswith("tick-") and err[0].startswith("tock-"), chans
    assert pod.status(cid).state == cri.CONTAINER_RUNNING


@pytest.mark.parametrize("handler", HANDLERS)
def test_pod_sysctls_in_the_pod_ipc_namespace(bed, pods, handler):
    """Pod sysctls (LinuxPodSandboxConfig.sysctls) are set by the runtime in the pause container; an IPC one
    is then seen by the pod's containers, which join its IPC namespace, and not on the host."""
    pod = pods(handler, "sysctl", sysctls={"kernel.shmmni": "1234", "kernel.msgmax": "4321"})
    cid = pod.container("main", ec.SLEEP_FOREVER)
    got = pod.out(cid, "cat", "/proc/sys/kernel/shmmni", "/proc/sys/kernel/msgmax").split()
    assert got == ["1234", "4321"], got
    with open("/proc/sys/kernel/shmmni") as f:
        assert f.read().strip() != "1234"
