"""podman and containerd, configured for the systemd cgroup manager, drive the runtime inside a real systemd.

The `systemd_bed` fixture (systemdbed.py) boots Debian 12's systemd as PID 1 of a container on this cgroup v1
hybrid host; Debian's podman 4.3 and containerd 1.6 run inside it, as root, told to use this checkout's ocirun or
Debian's runc 1.1.5 through a logging wrapper (systemd_engines.py: the setups, what they keep where). Every test
runs for both runtimes and asserts the same things:
  - the engine called the runtime with --systemd-cgroup (the wrapper's record) and a "slice:prefix:name"
    cgroupsPath, and the unit systemd shows is the runtime's (Description "ocirun container <id>", runc's
    "libcontainer container <id>");
  - systemd has the engine's scope active in the engine's slice, with the limits the engine was given
    (`systemctl show`), the cgroup files say the same, the container's processes are in it and see it;
  - removing the container through the engine removes the unit and its cgroups in every hierarchy, and nothing of
    the engine's is left in the bed (units, cgroups, mounts, conmon/shim processes, runtime state, containers).
"""
import json
import re
import uuid

import pytest

import enginebed
from systemd_engines import DESCRIPTION, RUNTIMES, ContainerdInBed, Engines, PodmanInBed

MEM = 64 << 20
# flags of the runtime's own taking a value (before the verb)
VALUE_FLAGS = {"--root", "--log", "--log-format", "--criu", "--rootless"}


def verb(argv):
    """The runtime subcommand of a recorded call (the wrapper records the runtime's arguments) and the global
    flags before it."""
    skip = False
    for i, a in enumerate(argv):
        if skip:
            skip = False
        elif a in VALUE_FLAGS:
            skip = True
        elif not a.startswith("-"):
            return a, argv[:i]
    return None, argv


def calls_for(eng, rt, mark, cid):
    """[(verb, global flags, argv, exit)] of the recorded runtime calls naming container `cid`."""
    out = []
    for argv, rc in eng.calls(rt, mark):
        v, flags = verb(argv)
        if cid in argv:
            out.append((v, flags, argv, rc))
    return out


def assert_systemd_cgroup_calls(eng, rt, mark, cid, verbs=("create",)):
    """The engine made each of `verbs` on container `cid` (successfully), `create` with --systemd-cgroup. Only
    create is sure to have the flag: podman gives it to conmon for create only (start, exec, kill and
    `delete --force` come without), containerd's shim to every call but its final `delete --force`. The runtime
    keeps the driver in its state and the later calls use it (delete removing the unit proves it)."""
    calls = calls_for(eng, rt, mark, cid)
    msg = f"calls of {rt} for {cid}:\n{eng.calls_text(rt, mark)}"
    for v in verbs:
        assert [c for c in calls if c[0] == v and c[3] == 0], f"no successful {v}: {msg}"
    if "create" in verbs:
        assert all("--systemd-cgroup" in flags for v, flags, _a, _rc in calls if v == "create"), msg
    return calls


def cgroup_line(text, hierarchy, path):
    return re.search(rf"^\d+:{re.escape(hierarchy)}:{re.escape(path)}$", text, re.M) is not None


@pytest.fixture(scope="module")
def eng(systemd_bed):
    e = Engines(systemd_bed).setup()
    yield e
    e.teardown()


@pytest.fixture(scope="module")
def podman(eng):
    p = PodmanInBed(eng)
    try:
        p.setup()
    except BaseException:
        p.teardown()
        raise
    yield p
    problems = p.teardown()
    assert not problems, "podman left in the systemd bed:\n  " + "\n  ".join(problems)


@pytest.fixture(scope="module")
def containerd(eng):
    c = ContainerdInBed(eng)
    try:
        c.setup()
    except BaseException:
        c.teardown()
        raise
    yield c
    problems = c.teardown()
    assert not problems, "containerd left in the systemd bed:\n  " + "\n  ".join(problems)


@pytest.fixture
def pm(podman):
    """podman, its containers force-removed after the test (the test asserts itself that it left nothing)."""
    yield podman
    podman.force_remove()


@pytest.fixture
def cd(containerd):
    yield containerd
    containerd.force_remove()


# ------------------------------------------------------------------------------------------- podman
@pytest.mark.parametrize("rt", RUNTIMES)
def test_podman_systemd_scope_limits_exec_stop_rm(pm, rt):
    eng = pm.eng
    mark = eng.calls_mark(rt)
    r = pm.run_detached(rt, "--network", "none", "--memory", "64m", "--pids-limit", "40", pm.IMAGE,
                        "sleep", "1000")
    assert r.returncode == 0, r
    cid = r.stdout.split()[-1]
    assert re.fullmatch(r"[0-9a-f]{64}", cid), r
    unit = f"libpod-{cid}.scope"
    scope = f"/machine.slice/{unit}"

    # what podman asked of the runtime: --systemd-cgroup, and podman's own slice:prefix:name
    assert_systemd_cgroup_calls(eng, rt, mark, cid, verbs=("create", "start"))
    with open(eng.host(f"/var/lib/containers/storage/overlay-containers/{cid}/userdata/config.json")) as f:
        assert json.load(f)["linux"]["cgroupsPath"] == f"machine.slice:libpod:{cid}"

    p = eng.show(unit, "ActiveState", "Slice", "ControlGroup", "Delegate", "MemoryLimit", "TasksMax", "Description")
    assert p == {"ActiveState": "active", "Slice": "machine.slice", "ControlGroup": scope, "Delegate": "yes",
                 "MemoryLimit": str(MEM), "TasksMax": "40", "Description": DESCRIPTION[rt].format(cid)}
    assert eng.show(f"libpod-conmon-{cid}.scope", "ActiveState")["ActiveState"] == "active"
    assert eng.cat(f"/sys/fs/cgroup/memory{scope}/memory.limit_in_bytes") == str(MEM)
    assert eng.cat(f"/sys/fs/cgroup/pids{scope}/pids.max") == "40"
    pid = pm(rt, "inspect", "--format", "{{.State.Pid}}", cid, check=True).stdout.strip()
    for h in ("memory", "pids", "freezer", "systemd"):
        assert pid in eng.cat(f"/sys/fs/cgroup/{h}{scope}/cgroup.procs").split(), h

    mark_exec = eng.calls_mark(rt)
    own = pm(rt, "exec", cid, "cat", "/proc/self/cgroup", check=True).stdout
    assert cgroup_line(own, "memory", scope) and cgroup_line(own, "name=systemd", scope), own
    assert_systemd_cgroup_calls(eng, rt, mark_exec, cid, verbs=("exec",))

    pm(rt, "stop", "-t", "0", cid, check=True)
    pm(rt, "rm", cid, check=True)
    assert eng.show(unit, "LoadState")["LoadState"] == "not-found"
    assert eng.show(f"libpod-conmon-{cid}.scope", "LoadState")["LoadState"] == "not-found"
    assert eng.cgroup_dirs(scope) == []
    assert_systemd_cgroup_calls(eng, rt, mark, cid, verbs=("create", "start", "exec", "kill", "delete"))
    assert enginebed.failed_calls(eng.host(eng.calls_log(rt)), mark) == []
    assert pm.leftovers([cid]) == []


@pytest.mark.parametrize("rt", RUNTIMES)
def test_podman_run_rm_sees_its_scope(pm, rt):
    eng = pm.eng
    mark = eng.calls_mark(rt)
    cidfile = f"{eng.run_dir}/cid-{uuid.uuid4().hex[:8]}"
    r = pm(rt, "run", "--rm", "--network", "none", "--cidfile", cidfile, pm.IMAGE, "cat", "/proc/self/cgroup")
    assert r.returncode == 0, r
    cid = eng.cat(cidfile)
    eng.bed.run(["rm", "-f", cidfile])
    scope = f"/machine.slice/libpod-{cid}.scope"
    for h in ("memory", "pids", "cpu", "name=systemd", ""):
        assert cgroup_line(r.stdout, h, scope), (h, r)
    assert_systemd_cgroup_calls(eng, rt, mark, cid, verbs=("create", "start", "delete"))
    assert enginebed.failed_calls(eng.host(eng.calls_log(rt)), mark) == []
    assert eng.show(f"libpod-{cid}.scope", "LoadState")["LoadState"] == "not-found"
    assert eng.cgroup_dirs(scope) == []
    assert pm.leftovers([cid]) == []


# ------------------------------------------------------------------------------------------- containerd: ctr
@pytest.mark.parametrize("rt", RUNTIMES)
def test_ctr_runc_shim_systemd_cgroup(cd, rt):
    eng = cd.eng
    cid = f"{eng.tag}-{rt}-{uuid.uuid4().hex[:6]}"
    unit = f"{eng.tag}ctr-{cid}.scope"
    scope = f"/system.slice/{unit}"
    mark = eng.calls_mark(rt)
    r = cd.ctr("run", "-d", "--null-io", "--runc-binary", eng.wrappers[rt], "--runc-systemd-cgroup",
               "--cgroup", f"system.slice:{eng.tag}ctr:{cid}", "--memory-limit", str(MEM),
               "--cpu-quota", "20000", "--cpu-period", "100000", cd.IMAGE, cid, "sleep", "1000")
    assert r.returncode == 0, r
    assert_systemd_cgroup_calls(eng, rt, mark, cid, verbs=("create", "start"))
    bundle = f"{cd.state}/io.containerd.runtime.v2.task/{cd.namespace}/{cid}"
    assert json.loads(eng.cat(f"{bundle}/config.json"))["linux"]["cgroupsPath"] == \
        f"system.slice:{eng.tag}ctr:{cid}"

    p = eng.show(unit, "ActiveState", "Slice", "ControlGroup", "Delegate", "MemoryLimit", "CPUQuotaPerSecUSec",
                 "Description")
    assert p == {"ActiveState": "active", "Slice": "system.slice", "ControlGroup": scope, "Delegate": "yes",
                 "MemoryLimit": str(MEM), "CPUQuotaPerSecUSec": "200ms", "Description": DESCRIPTION[rt].format(cid)}
    assert eng.cat(f"/sys/fs/cgroup/memory{scope}/memory.limit_in_bytes") == str(MEM)
    assert eng.cat(f"/sys/fs/cgroup/cpu{scope}/cpu.cfs_quota_us") == "20000"
    assert eng.cat(f"/sys/fs/cgroup/cpu{scope}/cpu.cfs_period_us") == "100000"
    pid = eng.cat(f"{bundle}/init.pid")
    for h in ("memory", "cpu", "pids", "freezer", "systemd"):
        assert pid in eng.cat(f"/sys/fs/cgroup/{h}{scope}/cgroup.procs").split(), h

    own = cd.ctr("tasks", "exec", "--exec-id", "cg", cid, "cat", "/proc/self/cgroup", check=True).stdout
    assert cgroup_line(own, "memory", scope) and cgroup_line(own, "name=systemd", scope), own

    cd.ctr("tasks", "kill", "-s", "SIGKILL", cid, check=True)
    eng.wait(lambda: cd.task_status(cid) == "STOPPED", f"task {cid} stopped")
    cd.ctr("tasks", "delete", cid, check=True)
    assert eng.show(unit, "LoadState")["LoadState"] == "not-found"
    assert eng.cgroup_dirs(scope) == []
    cd.ctr("containers", "rm", cid, check=True)
    assert_systemd_cgroup_calls(eng, rt, mark, cid, verbs=("create", "start", "exec", "kill", "delete"))
    assert enginebed.failed_calls(eng.host(eng.calls_log(rt)), mark) == []
    # the shim goes once its container is deleted
    eng.wait(lambda: cd.leftovers([cid]) == [], f"nothing of {cid} left: {cd.leftovers([cid])}")


# ------------------------------------------------------------------------------------------- containerd: CRI
@pytest.mark.parametrize("rt", RUNTIMES)
def test_cri_handler_systemd_cgroup_pod(cd, rt):
    """A pod through the CRI, handler `rt` (SystemdCgroup = true in containerd's config), the pod's cgroup parent a
    slice as a kubelet with the systemd cgroup driver gives: every container (the sandbox too) is a scope
    cri-containerd-<id>.scope in that slice."""
    eng = cd.eng
    uid = uuid.uuid4().hex[:8]
    slice_ = f"{eng.tag}pod-{uid}.slice"
    ns_opts = {"network": 2, "pid": 1, "ipc": 0}  # host network (no CNI), a pid namespace per container
    pod_cfg = {"metadata": {"name": f"p{uid}", "uid": uid, "namespace": eng.tag, "attempt": 0},
               "log_directory": f"{cd.dir}/logs/{uid}",
               "linux": {"cgroup_parent": slice_, "security_context": {"namespace_options": ns_opts}}}
    mark = eng.calls_mark(rt)
    pod = cd.client.call("RunPodSandbox", config=pod_cfg, runtime_handler=rt).pod_sandbox_id
    ctr_cfg = {"metadata": {"name": "c", "attempt": 0}, "image": {"image": cd.IMAGE},
               "command": ["sleep", "1000"], "log_path": "c.log",
               "linux": {"resources": {"memory_limit_in_bytes": MEM, "cpu_quota": 20000, "cpu_period": 100000},
                         "security_context": {"namespace_options": ns_opts}}}
    cid = cd.client.call("CreateContainer", pod_sandbox_id=pod, config=ctr_cfg, sandbox_config=pod_cfg).container_id
    cd.client.call("StartContainer", container_id=cid)

    base = f"/{eng.tag}pod.slice/{slice_}"
    for i in (pod, cid):
        assert_systemd_cgroup_calls(eng, rt, mark, i, verbs=("create", "start"))
        unit = f"cri-containerd-{i}.scope"
        p = eng.show(unit, "ActiveState", "Slice", "ControlGroup", "Delegate", "Description")
        assert p == {"ActiveState": "active", "Slice": slice_, "ControlGroup": f"{base}/{unit}", "Delegate": "yes",
                     "Description": DESCRIPTION[rt].format(i)}
    scope = f"{base}/cri-containerd-{cid}.scope"
    p = eng.show(f"cri-containerd-{cid}.scope", "MemoryLimit", "CPUQuotaPerSecUSec")
    assert p == {"MemoryLimit": str(MEM), "CPUQuotaPerSecUSec": "200ms"}
    assert eng.cat(f"/sys/fs/cgroup/memory{scope}/memory.limit_in_bytes") == str(MEM)
    assert eng.cat(f"/sys/fs/cgroup/cpu{scope}/cpu.cfs_quota_us") == "20000"
    res = cd.client.call("ExecSync", container_id=cid, cmd=["cat", "/proc/self/cgroup"], timeout=20)
    own = res.stdout.decode()
    assert res.exit_code == 0 and cgroup_line(own, "memory", scope) and cgroup_line(own, "name=systemd", scope), own

    cd.client.call("StopPodSandbox", pod_sandbox_id=pod)
    cd.client.call("RemovePodSandbox", pod_sandbox_id=pod)
    for i in (pod, cid):
        assert eng.show(f"cri-containerd-{i}.scope", "LoadState")["LoadState"] == "not-found"
        assert eng.cgroup_dirs(f"{base}/cri-containerd-{i}.scope") == []
        assert_systemd_cgroup_calls(eng, rt, mark, i, verbs=("create", "start", "delete"))
    assert enginebed.failed_calls(eng.host(eng.calls_log(rt)), mark) == []
    # the pod's slice is the kubelet's to remove: it stops the unit, then removes the pod's cgroup in every
    # hierarchy (libcontainer's systemd manager, Destroy). runc 1.1.5 leaves the slice's directories it made
    # itself, in the hierarchies systemd does not manage here, to that second step; ocirun removes the parent
    # directories it made when it deletes the last container in them (ocirun/cgroups/systemd.py, destroy).
    eng.bed.systemctl("stop", slice_, check=True)
    left = eng.cgroup_dirs(base)
    if rt == "ocirun":
        assert left == []
    else:
        assert {d.split("/")[4] for d in left} <= {"cpuacct", "cpuset", "freezer"}, left
    if left:
        eng.bed.run(["rmdir", *left], check=True)  # empty: rmdir succeeds
    eng.wait(lambda: cd.leftovers([pod, cid]) == [], f"nothing of pod {pod} left: {cd.leftovers([pod, cid])}")
