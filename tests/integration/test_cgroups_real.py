"""The cgroup drivers on the real host (root; v1 hybrid: v1 controllers + cgroup2 at /sys/fs/cgroup/unified),
cross-checked against runc as a behavioural oracle."""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from ocirun import cgroups

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates real cgroups under /sys/fs/cgroup"),
]

ROOT = "/sys/fs/cgroup"


def _v1_host():
    try:
        with open("/proc/self/mountinfo") as f:
            return any(" - cgroup cgroup " in line for line in f)
    except OSError:
        return False


needs_v1 = pytest.mark.skipif(not _v1_host(), reason="host has no cgroup v1 hierarchy")

RES = {
    "devices": [{"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"},
                {"allow": True, "type": "b", "major": 254, "minor": 0, "access": "r"}],
    "memory": {"limit": 64 << 20, "reservation": 32 << 20, "swap": 128 << 20},
    "pids": {"limit": 64},
    "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
    "blockIO": {"weight": 300},
}

COMPARED = [
    ("memory", "memory.limit_in_bytes"), ("memory", "memory.memsw.limit_in_bytes"),
    ("memory", "memory.soft_limit_in_bytes"), ("pids", "pids.max"), ("cpu", "cpu.shares"),
    ("cpu", "cpu.cfs_quota_us"), ("cpu", "cpu.cfs_period_us"), ("cpuset", "cpuset.cpus"), ("cpuset", "cpuset.mems"),
    ("devices", "devices.list"),
]


def _read(p):
    with open(p) as f:
        return f.read()


def _unique(tag):
    return f"/ocirun-test-{tag}-{os.getpid()}-{time.monotonic_ns() % 1000000}"


@pytest.fixture
def mgr():
    made = []

    def make(path, resources=None):
        m = cgroups.new_manager("t", path)
        made.append(m)
        m.create()
        if resources is not None:
            m.apply(resources)
        return m
    yield make
    for m in made:
        try:
            m.destroy()
        except cgroups.CgroupError:
            pass


def _cpu_ticks(pid):
    st = _read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()
    return int(st[11]) + int(st[12])


@needs_v1
def test_lifecycle_on_real_v1(mgr):
    path = _unique("life")
    m = mgr(path, RES)
    assert m.version == 1
    plan = dict(m.mount_plan())
    for name in ("memory", "pids", "cpu", "cpuset", "devices", "freezer"):
        assert plan[name] == f"{ROOT}/{name}{path}"
        assert os.path.isdir(plan[name])
    # what the kernel holds now
    assert _read(plan["memory"] + "/memory.limit_in_bytes").strip() == str(64 << 20)
    assert _read(plan["memory"] + "/memory.memsw.limit_in_bytes").strip() == str(128 << 20)
    assert _read(plan["pids"] + "/pids.max").strip() == "64"
    assert _read(plan["cpu"] + "/cpu.shares").strip() == "512"
    assert _read(plan["cpu"] + "/cpu.cfs_quota_us").strip() == "50000"
    assert _read(plan["cpuset"] + "/cpuset.cpus").strip() == "0"
    lst = _read(plan["devices"] + "/devices.list").split("\n")
    assert "c 10:229 rw" in lst and "b 254:0 r" in lst and "c 1:3 rwm" in lst and "a *:* rwm" not in lst
    bw = plan["blkio"] + ("/blkio.weight" if os.path.exists(plan["blkio"] + "/blkio.weight") else "/blkio.bfq.weight")
    assert _read(bw).split()[-1] == "300"

    # a busy child: it must not advance while frozen
    p = subprocess.Popen(["sh", "-c", "while :; do :; done"])
    try:
        m.add_pid(p.pid)
        assert m.pids() == [p.pid]
        assert str(p.pid) in _read(plan["unified"] + "/cgroup.procs").split()      # hybrid: joined there too
        m.freeze()
        assert m.is_frozen() and _read(plan["freezer"] + "/freezer.state").strip() == "FROZEN"
        t0 = _cpu_ticks(p.pid)
        time.sleep(0.3)
        assert _cpu_ticks(p.pid) == t0
        m.thaw()
        assert not m.is_frozen()
        time.sleep(0.1)
        assert _cpu_ticks(p.pid) > t0
        # restore from the state file form, then kill --all
        m2 = cgroups.manager_from_dict(json.loads(json.dumps(m.to_dict())))
        m2.signal_all(signal.SIGTERM)
        assert p.wait(5) == -signal.SIGTERM
        assert m2.pids() == []
        st = m2.stats()
        assert st["pids"]["limit"] == 64 and st["memory"]["usage"]["limit"] == 64 << 20
        m2.destroy()
        for d in plan.values():
            assert not os.path.exists(d)
        m2.destroy()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@needs_v1
def test_destroy_kills_and_removes_only_ours(mgr):
    parent = _unique("par")
    pre = ROOT + "/pids" + parent
    os.mkdir(pre)
    try:
        m = mgr(parent + "/child", {"pids": {"limit": 10}})
        p = subprocess.Popen(["sleep", "30"])
        m.add_pid(p.pid)
        m.destroy()
        assert p.wait(5) == -signal.SIGKILL
        assert os.path.isdir(pre)
        assert not os.path.exists(pre + "/child")
        assert not os.path.exists(ROOT + "/memory" + parent)     # created by us in that hierarchy
    finally:
        os.rmdir(pre)


@needs_v1
def test_errors_are_one_line_and_leave_nothing(mgr):
    path = _unique("err")
    m = cgroups.new_manager("t", path)
    m.create()
    try:
        with pytest.raises(cgroups.CgroupError) as ei:
            m.apply({"blockIO": {"leafWeight": 10}})
        msg = str(ei.value)
        assert msg.startswith("linux.resources.blockIO.leafWeight: cannot write blkio.leaf_weight: ") and "\n" not in msg
    finally:
        m.destroy()
    assert not os.path.exists(f"{ROOT}/pids{path}")


@needs_v1
@pytest.mark.skipif(not shutil.which("runc"), reason="runc not installed (behavioural oracle)")
def test_same_files_as_runc(mgr, tmp_path):
    from ocirun.bundle import make_busybox_rootfs

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    make_busybox_rootfs(str(bundle / "rootfs"))
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    cfg = json.loads((bundle / "config.json").read_text())
    runc_path = _unique("runc")
    cfg["process"]["args"] = ["sleep", "30"]
    cfg["process"]["terminal"] = False
    cfg["linux"]["cgroupsPath"] = runc_path
    cfg["linux"]["resources"] = RES
    (bundle / "config.json").write_text(json.dumps(cfg))
    state = str(tmp_path / "runc-root")
    cid = "ocirun-cgtest-%d" % os.getpid()
    try:
        # (no pipes: with -d the container inherits runc's stdio and would keep a pipe open)
        with open(tmp_path / "runc.err", "w+") as err:
            r = subprocess.run(["runc", "--root", state, "run", "-d", "--bundle", str(bundle), cid],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, timeout=30)
            err.seek(0)
            assert r.returncode == 0, err.read()
        ours = mgr(_unique("ours"), RES)
        theirs = cgroups.new_manager(cid, runc_path)      # same path rule: paths only, nothing created
        for ctrl, f in COMPARED:
            a = _read(ours.path(ctrl) + "/" + f)
            b = _read(theirs.path(ctrl) + "/" + f)
            if f == "devices.list":
                # the same rules; the order differs: ocirun writes config.json's rules in their order, then
                # the default allow-list (runtime-tools: the runtime MUST apply entries in the listed order)
                a, b = sorted(a.splitlines()), sorted(b.splitlines())
            assert a == b, (ctrl, f, a, b)
        assert theirs.path("memory") == ROOT + "/memory" + runc_path
        # default path rule (no cgroupsPath): runc uses the id relative to its own cgroup in each hierarchy
        del cfg["linux"]["cgroupsPath"]
        cfg["linux"]["resources"] = {"pids": {"limit": 11}}
        (bundle / "config.json").write_text(json.dumps(cfg))
        with open(tmp_path / "runc2.err", "w+") as err:
            r = subprocess.run(["runc", "--root", state, "run", "-d", "--bundle", str(bundle), cid + "d"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, timeout=30)
            err.seek(0)
            assert r.returncode == 0, err.read()
        dflt = cgroups.new_manager(cid + "d", None)
        for name, d in dflt.mount_plan():
            assert os.path.isdir(d), (name, d)
        assert _read(dflt.path("pids") + "/pids.max").strip() == "11"
    finally:
        for c in (cid, cid + "d"):
            subprocess.run(["runc", "--root", state, "delete", "--force", c], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        for name in os.listdir(ROOT):
            d = f"{ROOT}/{name}{runc_path}"
            if os.path.isdir(d):
                try:
                    os.rmdir(d)
                except OSError:
                    pass


@needs_v1
@pytest.mark.parametrize("runtime", ["ocirun", "runc"])
def test_delete_removes_cgroups_the_container_made_below_its_own(runtime, request, bundle, cid):
    """A container with a cgroup namespace and a writable cgroupfs (systemd, or a runtime, inside) makes cgroups
    below its own: delete removes them with it, as runc's RemovePath does (ocirun left the cgroup behind, busy,
    after 4-10 s of retries)."""
    run = request.getfixturevalue("oci" if runtime == "ocirun" else "runc")
    path = _unique("sub")

    def edit(cfg):
        cfg["linux"]["cgroupsPath"] = path
        cfg["linux"]["namespaces"].append({"type": "cgroup"})
        for m in cfg["mounts"]:
            if m["type"] == "cgroup":
                m["options"] = [o for o in m["options"] if o != "ro"] + ["rw"]

    b = bundle(["sh", "-c", "mkdir -p /sys/fs/cgroup/memory/sub/deeper /sys/fs/cgroup/devices/sub && "
                "test -d /sys/fs/cgroup/memory/sub/deeper"], edit=edit)
    c = cid()
    try:
        r = run("run", "--bundle", b, c)        # (run deletes the container when its process exits)
        assert r.returncode == 0 and not r.stderr.strip(), r
        left = [f"{ROOT}/{h}{path}" for h in ("memory", "devices", "pids", "cpu")
                if os.path.exists(f"{ROOT}/{h}{path}")]
        assert left == []
    finally:
        run("delete", "--force", c)
        for h in os.listdir(ROOT):
            for sub in ("/sub/deeper", "/sub", ""):
                try:
                    os.rmdir(f"{ROOT}/{h}{path}{sub}")
                except OSError:
                    pass
