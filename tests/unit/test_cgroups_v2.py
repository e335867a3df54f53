"""cgroup v2 driver against a fake cgroup2 tree (no root needed)."""
import errno
import json
import os
import signal

import pytest

from ocirun import cgroups
from ocirun.cgroups import resources as R
from ocirun.cgroups.testing import FakeCgroupfs


@pytest.fixture
def fk(tmp_path, monkeypatch):
    return FakeCgroupfs(tmp_path, version=2).install(monkeypatch)


def mk(fk, path="/ctr", cid="ctr"):
    return cgroups.new_manager(cid, path, **fk.kwargs)


def test_pure_v2_detected_and_paths(tmp_path, monkeypatch):
    fk = FakeCgroupfs(tmp_path, version=2, own={"": "/user.slice/session-1.scope"}).install(monkeypatch)
    m = mk(fk, "/a/b")
    assert m.version == 2
    assert m.mount_plan() == [("", fk.root + "/a/b")]
    # relative: under the *parent* of the runtime's own cgroup (the own one has processes in it)
    assert mk(fk, "x/y").mount_plan() == [("", fk.root + "/user.slice/x/y")]
    assert cgroups.new_manager("cid", None, **fk.kwargs).mount_plan() == [("", fk.root + "/user.slice/cid")]


def test_relative_from_root_cgroup(fk):
    assert mk(fk, "rel").mount_plan() == [("", fk.root + "/rel")]


def test_create_enables_controllers_and_destroy(fk):
    m = mk(fk, "/p/q")
    m.create()
    assert m.created == [fk.root + "/p", fk.root + "/p/q"]
    assert set(fk.read("", "/", "cgroup.subtree_control").split()) == set(
        "cpuset cpu io memory hugetlb pids rdma misc".split())
    assert "memory" in fk.read("", "/p", "cgroup.subtree_control").split()
    assert fk.read("", "/p/q", "cgroup.subtree_control") == ""          # the leaf gets none
    m.destroy()
    assert not os.path.exists(fk.root + "/p")
    m.destroy()


def test_enable_busy_parent_as_runc(fk):
    """A parent with processes cannot enable controllers: runc goes on without them (a container with no limits
    runs); a limit that needs one is refused, naming the busy cgroup."""
    os.makedirs(fk.root + "/busy")
    fk._fill(fk.root + "/busy")
    fk.fail["cgroup.subtree_control"] = errno.EBUSY
    m = mk(fk, "/busy/c")
    m.create()
    assert os.path.isdir(fk.root + "/busy/c")
    with open(fk.root + "/busy/c/cgroup.controllers", "w") as f:
        f.write("")     # (nothing enabled for it)
    m.apply(None)
    with pytest.raises(cgroups.CgroupError, match=r"^linux.resources.memory.limit: .* has processes in it"):
        m.apply({"memory": {"limit": 1 << 26}})
    m.destroy()
    assert not os.path.exists(fk.root + "/busy/c")


def test_conversions():
    assert R.shares_to_weight(2) == 1
    assert R.shares_to_weight(1024) == 39
    assert R.shares_to_weight(262144) == 10000
    assert R.blkio_weight_to_io(10) == 1
    assert R.blkio_weight_to_io(1000) == 10000
    assert R.blkio_weight_to_io(500) == 1 + 490 * 9999 // 990
    assert R.swap_v2(100, 300) == "200"
    assert R.swap_v2(100, -1) == "max"
    assert R.swap_v2(-1, 0) == "max"
    assert R.swap_v2(100, 0) is None
    with pytest.raises(cgroups.CgroupError, match="needs a memory limit"):
        R.swap_v2(0, 300)
    with pytest.raises(cgroups.CgroupError, match="must not be lower"):
        R.swap_v2(300, 100)


FULL = {
    "devices": [{"allow": False, "access": "rwm"}],
    "memory": {"limit": 512 << 20, "reservation": 256 << 20, "swap": 1 << 30, "kernel": 5, "useHierarchy": True},
    "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 1000, "cpus": "0-1", "mems": "0", "idle": 0},
    "pids": {"limit": -1},
    "blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 100}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 600}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 300}]},
    "hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}],
    "rdma": {"mlx5_1": {"hcaHandles": 3}},
    "unified": {"memory.high": "400000000", "cgroup.max.descendants": "5"},
}


def test_apply_every_v2_field(fk):
    m = mk(fk, "/full")
    m.create()
    open(m.dir + "/cgroup.max.descendants", "w").close()
    m.apply(FULL)
    r = lambda f: fk.read("", "/full", f)  # noqa: E731
    assert r("memory.max") == str(512 << 20)
    assert r("memory.low") == str(256 << 20)
    assert r("memory.swap.max") == str((1 << 30) - (512 << 20))
    assert r("cpu.weight") == "39"
    assert r("cpu.max") == "50000 100000"
    assert r("cpu.max.burst") == "1000"
    assert r("cpu.idle") == "0"
    assert r("cpuset.cpus") == "0-1" and r("cpuset.mems") == "0"
    assert r("pids.max") == "max"
    assert fk.writes_to("io.weight") == ["default %d" % R.blkio_weight_to_io(500), "8:0 %d" % R.blkio_weight_to_io(100)]
    assert fk.writes_to("io.max") == ["8:0 rbps=600", "8:16 wiops=300"]
    assert r("hugetlb.2MB.max") == str(4 << 20) and r("hugetlb.2MB.rsvd.max") == str(4 << 20)
    assert r("rdma.max") == "mlx5_1 hca_handle=3"
    assert r("memory.high") == "400000000"          # unified written last
    assert r("cgroup.max.descendants") == "5"
    files = [f for _d, f, _v in fk.writes]
    assert files.index("memory.swap.max") < files.index("memory.max")
    assert files.index("cpu.max") < files.index("cpu.max.burst")
    assert files[-2:] == ["cgroup.max.descendants", "memory.high"]
    assert not any(f.startswith("devices.") for f in files)
    d = json.loads(json.dumps(m.to_dict()))
    assert d["deviceRules"][0] is False and ["c", 1, 3, "rwm"] in d["deviceRules"][1]


def test_io_bfq_weight_used_as_is(fk):
    m = mk(fk, "/bfq")
    m.create()
    open(m.dir + "/io.bfq.weight", "w").close()
    m.apply({"blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 100}]}})
    assert fk.writes_to("io.bfq.weight") == ["500", "8:0 100"]


def test_quota_only_and_period_only(fk):
    m = mk(fk, "/q")
    m.create()
    m.apply({"cpu": {"quota": -1}})
    assert fk.read("", "/q", "cpu.max") == "max"
    m.apply({"cpu": {"period": 20000}})
    assert fk.read("", "/q", "cpu.max") == "max 20000"


def test_v2_refusals(fk):
    m = mk(fk, "/no")
    m.create()
    bad = [
        ({"cpu": {"realtimeRuntime": 5}}, "linux.resources.cpu.realtimeRuntime: not supported on cgroup v2"),
        ({"blockIO": {"leafWeight": 10}}, "linux.resources.blockIO.leafWeight: not supported on cgroup v2"),
        ({"network": {"classID": 1}}, "linux.resources.network: not supported on cgroup v2"),
        ({"memory": {"swappiness": 5}}, "linux.resources.memory.swappiness: not supported on cgroup v2"),
        ({"memory": {"disableOOMKiller": True}}, "linux.resources.memory.disableOOMKiller: not supported"),
        ({"memory": {"swap": 5}}, "linux.resources.memory.swap: a swap limit needs a memory limit"),
        ({"unified": {"../etc": "1"}}, "linux.resources.unified.../etc: '../etc' is not a cgroup v2 file name"),
        ({"unified": {"memory.high": 5}}, "linux.resources.unified.memory.high: must be a string"),
        ({"devices": [{"allow": "yes"}]}, "linux.resources.devices[0].allow: required boolean"),
    ]
    for res, msg in bad:
        fk.writes.clear()
        with pytest.raises(cgroups.CgroupError) as ei:
            m.apply(res)
        assert str(ei.value).startswith(msg), str(ei.value)
        assert fk.writes == []


def test_controller_not_enabled(fk):
    m = mk(fk, "/ne")
    m.create()
    with open(m.dir + "/cgroup.controllers", "w") as f:
        f.write("cpu memory")
    with pytest.raises(cgroups.CgroupError) as ei:
        m.apply({"pids": {"limit": 5}})
    assert str(ei.value).startswith("linux.resources.pids.limit: cannot write pids.max: cgroup controller pids is "
                                    "not available")
    with pytest.raises(cgroups.CgroupError, match="unified.io.max: cannot write io.max: cgroup controller io"):
        m.apply({"unified": {"io.max": "8:0 rbps=1"}})


def test_check_before_update_v2(fk):
    m = mk(fk, "/cbu")
    m.create()
    with pytest.raises(cgroups.CgroupError, match=r"below the current usage 4096 \(memory.current"):
        m.update({"memory": {"limit": 1024, "checkBeforeUpdate": True}})
    m.update({"memory": {"limit": 1 << 20, "checkBeforeUpdate": True}})
    assert fk.read("", "/cbu", "memory.max") == str(1 << 20)


def test_add_pid_freeze_kill_destroy(fk):
    m = mk(fk, "/proc")
    m.create()
    m.add_pid(123)
    assert m.pids() == [123]
    m.freeze()
    assert m.is_frozen()
    m.thaw()
    assert not m.is_frozen()
    m.signal_all(signal.SIGKILL)                    # cgroup.kill
    assert fk.writes_to("cgroup.kill") == ["1"]
    assert m.pids() == []
    m2 = cgroups.manager_from_dict(json.loads(json.dumps(m.to_dict())))
    assert m2.version == 2 and m2.dir == m.dir
    m2.destroy()
    assert not os.path.exists(m.dir)


def test_stats_v2(fk):
    m = mk(fk, "/st")
    m.create()
    m.apply({"pids": {"limit": 7}, "memory": {"limit": 1 << 20}})
    s = m.stats()
    assert s["memory"]["usage"] == {"usage": 4096, "max": 8192, "limit": 1 << 20}
    assert s["pids"] == {"current": 0, "limit": 7}
    assert s["cpu"]["usage"]["total"] == 10000


def test_device_rules_become_a_device_program(fk):
    """v2: the device rules are enforced by an eBPF program (recorded by the fake device layer here)."""
    m = mk(fk, "/dv")
    m.create()
    m.apply({"devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1,
                                                              "minor": 3, "access": "rw"}]})
    assert len(fk.device_programs.installed) == 1
    path, (default_allow, rules) = fk.device_programs.installed[0]
    assert path.endswith("/dv")
    assert default_allow is False
    assert any(r[:3] == ["c", 1, 3] and set("rw") <= set(r[3]) for r in rules), rules
