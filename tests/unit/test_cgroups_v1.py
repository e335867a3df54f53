"""cgroup v1 (and hybrid) driver against a fake cgroupfs tree (no root needed)."""
import errno
import json
import os
import signal
import subprocess
import sys

import pytest

from ocirun import cgroups
from ocirun.cgroups import devices, resources
from ocirun.cgroups.testing import BIG, FakeCgroupfs


@pytest.fixture
def fk(tmp_path, monkeypatch):
    return FakeCgroupfs(tmp_path, version=1).install(monkeypatch)


def mk(fk, path="/ctr", cid="ctr"):
    return cgroups.new_manager(cid, path, **fk.kwargs)


def test_import_is_cheap():
    code = ("import sys; import ocirun.cgroups; "
            "bad=[m for m in ('json','typing','dataclasses','subprocess','ocirun.cgroups.v1','ocirun.cgroups.common')"
            " if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------------------------------- paths

def test_absolute_path_in_every_hierarchy(fk):
    m = mk(fk, "/a/b")
    assert m.version == 1
    names = [n for n, _d in m.mount_plan()]
    assert names == ["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd",
                     "unified"]
    for n, d in m.mount_plan():
        assert d == f"{fk.root}/{n}/a/b"


def test_relative_path_is_under_own_cgroup(tmp_path, monkeypatch):
    fk = FakeCgroupfs(tmp_path, own={"memory": "/process_api/abc", "cpu": "/x"}).install(monkeypatch)
    m = mk(fk, "rel/c")
    p = dict(m.mount_plan())
    assert p["memory"] == f"{fk.root}/memory/process_api/abc/rel/c"
    assert p["cpu"] == f"{fk.root}/cpu/x/rel/c"
    assert p["devices"] == f"{fk.root}/devices/rel/c"


def test_default_path_is_the_id_relative_to_own_cgroup(tmp_path, monkeypatch):
    fk = FakeCgroupfs(tmp_path, own={"memory": "/process_api/abc"}).install(monkeypatch)
    m = cgroups.new_manager("myid", None, **fk.kwargs)
    p = dict(m.mount_plan())
    assert p["memory"] == f"{fk.root}/memory/process_api/abc/myid"
    assert p["pids"] == f"{fk.root}/pids/myid"


def test_path_cannot_escape(fk):
    m = mk(fk, "../../../etc")
    assert dict(m.mount_plan())["pids"] == f"{fk.root}/pids/etc"
    m = mk(fk, "/../../x/./y/")
    assert dict(m.mount_plan())["pids"] == f"{fk.root}/pids/x/y"


def test_mount_root_is_stripped_from_own_cgroup(tmp_path, monkeypatch):
    # Nested: the mount exposes /docker/c1 as its root, /proc/self/cgroup shows host paths.
    fk = FakeCgroupfs(tmp_path, own={"pids": "/docker/c1/sub"}, mount_root="/docker/c1").install(monkeypatch)
    m = mk(fk, "r")
    assert dict(m.mount_plan())["pids"] == f"{fk.root}/pids/sub/r"


def test_comounted_controllers(tmp_path, monkeypatch):
    fk = FakeCgroupfs(tmp_path, controllers=["cpu,cpuacct", "memory", "devices"], hybrid=False).install(monkeypatch)
    m = mk(fk, "/c")
    assert [n for n, _ in m.mount_plan()] == ["cpu,cpuacct", "memory", "devices"]
    assert m.path("cpuacct") == m.path("cpu") == f"{fk.root}/cpu,cpuacct/c"


def test_systemd_driver_wants_a_systemd_path(fk):
    # (the driver itself: test_cgroups_systemd.py)
    with pytest.raises(cgroups.CgroupError, match='expected "slice:prefix:name"'):
        cgroups.new_manager("x", "/x", systemd=True, **fk.kwargs)


def test_systemd_style_path_refused(fk):
    with pytest.raises(cgroups.CgroupError, match="slice:prefix:name"):
        mk(fk, "system.slice:ocirun:abc")


def test_cgroup_error_is_an_ocierror():
    from ocirun.errors import OciError
    assert issubclass(cgroups.CgroupError, OciError)


# ---------------------------------------------------------------------------------------------- create/destroy

def test_create_records_only_new_dirs_and_destroy_removes_them(fk):
    os.makedirs(fk.root + "/memory/a")           # someone else's parent
    m = mk(fk, "/a/b")
    m.create()
    assert fk.root + "/memory/a" not in m.created
    assert fk.root + "/memory/a/b" in m.created
    assert fk.root + "/pids/a" in m.created and fk.root + "/pids/a/b" in m.created
    for _n, d in m.mount_plan():
        assert os.path.isdir(d)
    m.destroy()
    assert os.path.isdir(fk.root + "/memory/a")
    assert not os.path.exists(fk.root + "/memory/a/b")
    assert not os.path.exists(fk.root + "/pids/a")
    m.destroy()                                    # idempotent


def test_destroy_never_removes_preexisting_leaf(fk):
    m = mk(fk, "/pre")
    os.makedirs(fk.root + "/devices/pre")
    m.create()
    m.destroy()
    assert os.path.isdir(fk.root + "/devices/pre")
    assert not os.path.exists(fk.root + "/memory/pre")


def test_cpuset_copied_from_parent_on_every_new_level(fk):
    m = mk(fk, "/p/q")
    m.create()
    for sub in ("/p", "/p/q"):
        assert fk.read("cpuset", sub, "cpuset.cpus") == "0-3"
        assert fk.read("cpuset", sub, "cpuset.mems") == "0"


def test_cpuset_empty_existing_ancestor_is_populated(fk):
    os.makedirs(fk.root + "/cpuset/e")
    for f in ("cpuset.cpus", "cpuset.mems", "cgroup.procs"):
        open(fk.root + "/cpuset/e/" + f, "w").close()
    m = mk(fk, "/e/c")
    m.create()
    assert fk.read("cpuset", "/e", "cpuset.cpus") == "0-3"
    assert fk.read("cpuset", "/e/c", "cpuset.cpus") == "0-3"


def test_create_failure_leaves_nothing(fk, monkeypatch):
    fk.fail["cpuset.mems"] = errno.EACCES
    m = mk(fk, "/f")
    with pytest.raises(cgroups.CgroupError, match="cpuset.mems"):
        m.create()
    for _n, d in m.mount_plan():
        assert not os.path.exists(d)


def test_to_dict_roundtrip(fk):
    m = mk(fk, "/rt")
    m.create()
    d = json.loads(json.dumps(m.to_dict()))
    m2 = cgroups.manager_from_dict(d)
    assert m2.version == 1 and m2.mount_plan() == m.mount_plan() and m2.created == m.created
    m2.destroy()
    assert not os.path.exists(fk.root + "/pids/rt")


def test_manager_from_dict_rejects_junk():
    with pytest.raises(cgroups.CgroupError):
        cgroups.manager_from_dict({"version": 7})
    with pytest.raises(cgroups.CgroupError):
        cgroups.manager_from_dict({"version": 1})


# ---------------------------------------------------------------------------------------------- resources

FULL = {
    "devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 10, "minor": 229,
                                                     "access": "rw"}],
    "memory": {"limit": 536870912, "reservation": 268435456, "swap": 1073741824, "kernel": 1 << 30,
               "kernelTCP": 1 << 28, "swappiness": 10, "disableOOMKiller": True, "useHierarchy": True},
    "cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 10000, "realtimeRuntime": 9000,
            "realtimePeriod": 100000, "cpus": "0-1", "mems": "0", "idle": 1},
    "pids": {"limit": 42},
    "blockIO": {"weight": 300, "leafWeight": 200,
                "weightDevice": [{"major": 8, "minor": 0, "weight": 500, "leafWeight": 300}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 600}],
                "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 700}],
                "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 80}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 90}]},
}


def test_apply_every_v1_field(fk):
    m = mk(fk, "/full")
    m.create()
    m.apply(FULL)
    r = lambda h, f: fk.read(h, "/full", f)  # noqa: E731
    assert r("memory", "memory.limit_in_bytes") == "536870912"
    assert r("memory", "memory.memsw.limit_in_bytes") == "1073741824"
    assert r("memory", "memory.soft_limit_in_bytes") == "268435456"
    assert r("memory", "memory.kmem.limit_in_bytes") == str(1 << 30)
    assert r("memory", "memory.kmem.tcp.limit_in_bytes") == str(1 << 28)
    assert r("memory", "memory.swappiness") == "10"
    assert r("memory", "memory.oom_control") == "1"
    assert r("memory", "memory.use_hierarchy") == "1"
    assert r("cpu", "cpu.shares") == "512"
    assert r("cpu", "cpu.cfs_quota_us") == "50000"
    assert r("cpu", "cpu.cfs_period_us") == "100000"
    assert r("cpu", "cpu.cfs_burst_us") == "10000"
    assert r("cpu", "cpu.rt_period_us") == "100000"
    assert r("cpu", "cpu.rt_runtime_us") == "9000"
    assert r("cpu", "cpu.idle") == "1"
    assert r("cpuset", "cpuset.cpus") == "0-1"
    assert r("cpuset", "cpuset.mems") == "0"
    assert r("pids", "pids.max") == "42"
    assert r("blkio", "blkio.weight") == "300"
    assert r("blkio", "blkio.leaf_weight") == "200"
    assert r("blkio", "blkio.weight_device") == "8:0 500"
    assert r("blkio", "blkio.leaf_weight_device") == "8:0 300"
    assert r("blkio", "blkio.throttle.read_bps_device") == "8:0 600"
    assert r("blkio", "blkio.throttle.write_bps_device") == "8:0 700"
    assert r("blkio", "blkio.throttle.read_iops_device") == "8:0 80"
    assert r("blkio", "blkio.throttle.write_iops_device") == "8:16 90"
    lst = r("devices", "devices.list").splitlines()
    # config.json's rules in their order, then the default allow-list (runtime-tools: "MUST apply in order")
    assert lst[0] == "c 10:229 rw" and lst[1:3] == ["c *:* m", "b *:* m"] and "c 1:3 rwm" in lst, lst


def test_write_order_v1(fk):
    m = mk(fk, "/ord")
    m.create()
    fk.writes.clear()
    m.apply(FULL)
    files = [f for _d, f, _v in fk.writes]
    # cpuset before devices before memory before cpu before pids before blkio (runc's subsystem order)
    first = {f: files.index(f) for f in reversed(files)}
    assert first["cpuset.cpus"] < first["devices.deny"] < first["memory.limit_in_bytes"] < first["cpu.shares"] \
        < first["pids.max"] < first["blkio.weight"]
    # fresh cgroup: limit, then memsw (memsw must stay >= limit)
    assert files.index("memory.limit_in_bytes") < files.index("memory.memsw.limit_in_bytes")
    # period before quota; burst after quota; rt period before rt runtime
    assert files.index("cpu.cfs_period_us") < files.index("cpu.cfs_quota_us") < files.index("cpu.cfs_burst_us")
    assert files.index("cpu.rt_period_us") < files.index("cpu.rt_runtime_us")
    # devices: the reset first, then config.json's rules in their order, then the default allow-list
    dev = [(f, v) for _d, f, v in fk.writes if f.startswith("devices.")]
    assert dev[0] == ("devices.deny", "a *:* rwm")
    assert dev[1] == ("devices.allow", "c 10:229 rw")
    assert ("devices.allow", "c 1:3 rwm") in dev[2:] and ("devices.allow", "b *:* m") in dev[2:]


def test_default_config_hot_path_writes(fk):
    m = mk(fk, "/hot")
    m.create()
    fk.writes.clear()
    m.apply({"devices": [{"allow": False, "access": "rwm"}]})
    assert {f for _d, f, _v in fk.writes} == {"devices.deny", "devices.allow"}
    assert len(fk.writes) == 1 + len(devices.DEFAULT_ALLOWED)


def test_no_default_devices(fk):
    m = mk(fk, "/nodef")
    m.create()
    fk.writes.clear()
    m.apply({"devices": [{"allow": False, "access": "rwm"}]}, default_devices=False)
    assert [(f, v) for _d, f, v in fk.writes] == [("devices.deny", "a *:* rwm")]


def test_swap_before_limit_when_raising_above_current(fk):
    m = mk(fk, "/sw")
    m.create()
    m.apply({"memory": {"limit": 100 << 20, "swap": 200 << 20}})
    fk.writes.clear()
    m.update({"memory": {"limit": 300 << 20, "swap": 600 << 20}})
    files = [f for _d, f, _v in fk.writes]
    assert files == ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]


def test_update_of_a_cgroup_we_created_reads_the_current_limit(fk):
    """runc's bats "update cgroup v1/v2 common limits": 30M/50M, then a memory limit above the old memsw. The
    cgroup is still in `created` (the state record keeps it), which must not make update take it for fresh."""
    m = cgroups.manager_from_dict(mk(fk, "/sw2").to_dict())
    m.create()
    m.apply({"memory": {"limit": 32 << 20}})
    m = cgroups.manager_from_dict(json.loads(json.dumps(m.to_dict())))     # a later `ocirun update`
    assert m.path("memory") in m.created
    m.update({"memory": {"limit": 30 << 20, "swap": 50 << 20}})
    m.update({"memory": {"limit": 60 << 20, "swap": 80 << 20}})
    assert fk.read("memory", "/sw2", "memory.limit_in_bytes") == str(60 << 20)
    assert fk.read("memory", "/sw2", "memory.memsw.limit_in_bytes") == str(80 << 20)
    m.update({"memory": {"limit": 10 << 20, "swap": 20 << 20}})     # lowering both: the limit first
    assert fk.read("memory", "/sw2", "memory.limit_in_bytes") == str(10 << 20)
    assert fk.read("memory", "/sw2", "memory.memsw.limit_in_bytes") == str(20 << 20)


@pytest.mark.parametrize("first,second,order", [
    ((900001, 600001), (10000, 3000), ["cpu.rt_runtime_us", "cpu.rt_period_us"]),     # (the period refused first)
    ((10000, 3000), (100000, 20000), ["cpu.rt_period_us", "cpu.rt_runtime_us"]),
    ((100000, 20000), (50000, 10000), ["cpu.rt_period_us", "cpu.rt_runtime_us"]),
])
def test_rt_period_and_runtime_in_the_order_the_kernel_takes(fk, first, second, order):
    """runc's bats "update rt period and runtime" (runc issue 4094): the kernel refuses a period below the
    current runtime; runc writes the period, and on EINVAL the runtime then the period again. (fk.writes logs
    the writes the fake kernel took.)"""
    m = mk(fk, "/rt")
    m.create()
    m.apply({"cpu": {"realtimePeriod": first[0], "realtimeRuntime": first[1]}}, default_devices=False)
    fk.writes.clear()
    m.update({"cpu": {"realtimePeriod": second[0], "realtimeRuntime": second[1]}})
    assert [f for _d, f, _v in fk.writes] == order
    assert fk.read("cpu", "/rt", "cpu.rt_period_us") == str(second[0])
    assert fk.read("cpu", "/rt", "cpu.rt_runtime_us") == str(second[1])


def test_rt_period_alone_below_the_runtime_is_the_kernels_error(fk):
    m = mk(fk, "/rt1")
    m.create()
    m.apply({"cpu": {"realtimePeriod": 900001, "realtimeRuntime": 600001}}, default_devices=False)
    with pytest.raises(cgroups.CgroupError) as ei:
        m.update({"cpu": {"realtimePeriod": 10000}})
    assert str(ei.value).startswith("linux.resources.cpu.realtimePeriod: cannot write '10000' to cpu.rt_period_us: "
                                    "invalid argument")


def test_device_access_letters_beyond_rwm_are_ignored(fk):
    """runc's bats "update devices [minimal transition rules]": access "rwa" is "rw" (runc drops the 'a')."""
    m = mk(fk, "/rwa")
    m.create()
    fk.writes.clear()
    m.apply({"devices": [{"allow": False, "access": "rwm"},
                         {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "rwa"},
                         {"allow": False, "type": "c", "major": 1, "minor": 11, "access": "wx"}]})
    dev = [(f, v) for _d, f, v in fk.writes if f.startswith("devices.")]
    assert dev[:2] == [("devices.deny", "a *:* rwm"), ("devices.allow", "c 1:11 r")]


def test_device_rules_granting_nothing(fk):
    """A deny granting nothing is a no-op; so is a wildcard whatever its access (runc reads neither)."""
    m = mk(fk, "/void")
    m.create()
    m.apply({"devices": [{"allow": False, "access": "x"},
                         {"allow": False, "type": "c", "major": 1, "minor": 11, "access": "q"}]})
    assert "c 1:11" not in fk.read("devices", "/void", "devices.list")
    m2 = mk(fk, "/void2")
    m2.create()
    m2.apply({"devices": [{"allow": True, "access": "x"}, {"allow": False, "type": "b", "access": "z"}]},
             default_devices=False)
    assert fk.read("devices", "/void2", "devices.list") == "a *:* rwm\n"


def test_update_without_devices_writes_no_device_rule(fk):
    """runc's "minimal transition rules": an update that does not change the device rules must not write any
    (a deny-all then re-allow would make /dev/null fail for a moment in the container)."""
    m = mk(fk, "/upd")
    m.create()
    m.apply({"devices": [{"allow": False, "access": "rwm"},
                         {"allow": False, "type": "c", "major": 1, "minor": 11, "access": "rwa"}],
             "pids": {"limit": 20}})
    fk.writes.clear()
    for _ in range(3):
        m.update({"pids": {"limit": 30}})
    assert fk.writes == [(m.path("pids"), "pids.max", "30")] * 3


def test_unlimited_memory_also_unlimits_swap_first(fk):
    m = mk(fk, "/unl")
    m.create()
    fk.writes.clear()
    m.apply({"memory": {"limit": -1}}, default_devices=False)
    mem = [(f, v) for _d, f, v in fk.writes if f.startswith("memory")]
    assert mem == [("memory.memsw.limit_in_bytes", "-1"), ("memory.limit_in_bytes", "-1")]


def test_cpu_period_einval_retries_after_quota(fk, monkeypatch):
    m = mk(fk, "/per")
    m.create()
    calls = []
    real = fk._write

    def flaky(d, f, v):
        calls.append(f)
        if f == "cpu.cfs_period_us" and calls.count(f) == 1:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(d, f, v)
    monkeypatch.setattr(resources, "write_file", flaky)
    m.apply({"cpu": {"quota": 20000, "period": 50000}})
    assert [c for c in calls if c.startswith("cpu.cfs")] == ["cpu.cfs_period_us", "cpu.cfs_quota_us",
                                                              "cpu.cfs_period_us"]
    assert fk.read("cpu", "/per", "cpu.cfs_period_us") == "50000"


def test_pids_limits(fk):
    m = mk(fk, "/pl")
    m.create()
    m.apply({"pids": {"limit": -1}})
    assert fk.read("pids", "/pl", "pids.max") == "max"
    m.apply({"pids": {"limit": 0}})
    assert fk.read("pids", "/pl", "pids.max") == "0"


def test_unset_and_zero_fields_are_skipped(fk):
    m = mk(fk, "/skip")
    m.create()
    fk.writes.clear()
    m.apply({"memory": {"limit": 0, "reservation": 0}, "cpu": {"shares": 0, "quota": 0}, "blockIO": {},
             "pids": {}}, default_devices=False)
    assert [f for _d, f, _v in fk.writes if not f.startswith("devices")] == []


def test_bfq_weight_fallback(fk):
    m = mk(fk, "/bfq")
    m.create()
    d = m.path("blkio")
    os.unlink(d + "/blkio.weight")
    os.unlink(d + "/blkio.weight_device")
    open(d + "/blkio.bfq.weight", "w").close()
    open(d + "/blkio.bfq.weight_device", "w").close()
    m.apply({"blockIO": {"weight": 300, "weightDevice": [{"major": 254, "minor": 0, "weight": 100}]}})
    assert fk.read("blkio", "/bfq", "blkio.bfq.weight") == "300"
    assert fk.read("blkio", "/bfq", "blkio.bfq.weight_device") == "254:0 100"


def test_leaf_weight_missing_file_error(fk):
    m = mk(fk, "/lw")
    m.create()
    os.unlink(m.path("blkio") + "/blkio.leaf_weight")
    with pytest.raises(cgroups.CgroupError) as ei:
        m.apply({"blockIO": {"leafWeight": 10}})
    assert str(ei.value) == ("linux.resources.blockIO.leafWeight: cannot write blkio.leaf_weight: no such file "
                             "(controller or file missing on this host)")


def test_missing_controller_fails_before_any_write(fk):
    m = mk(fk, "/nc")
    m.create()
    fk.writes.clear()
    with pytest.raises(cgroups.CgroupError) as ei:
        m.apply({"memory": {"limit": 1 << 20}, "network": {"classID": 5}})
    msg = str(ei.value)
    assert msg.startswith("linux.resources.network.classID: cannot write net_cls.classid") and "\n" not in msg
    assert "net_cls" in msg and "not mounted" in msg
    assert fk.writes == []


def test_invalid_values_fail_before_any_write(fk):
    m = mk(fk, "/bad")
    m.create()
    bad = [
        ({"cpu": {"shares": 1}}, "linux.resources.cpu.shares: 1 is out of range (2-262144)"),
        ({"memory": {"swappiness": 101}}, "linux.resources.memory.swappiness: 101 is out of range (0-100)"),
        ({"memory": {"limit": 200, "swap": 100}}, "linux.resources.memory.swap: memory+swap limit (100) must not "
                                                  "be lower than the memory limit (200)"),
        ({"memory": {"limit": "1G"}}, "linux.resources.memory.limit: must be an integer, got '1G'"),
        ({"cpu": {"cpus": "0-x"}}, "linux.resources.cpu.cpus: '0-x' is not a list like \"0-3,7\""),
        ({"cpu": {"quota": 1000, "burst": 2000}}, "linux.resources.cpu.burst: 2000 is larger than cpu.quota 1000"),
        ({"devices": [{"allow": True, "access": ""}]},
         "linux.resources.devices[0].access: must not be empty (a combination of r, w, m)"),
        ({"devices": [{"allow": True, "type": "c", "major": 1}]},
         "linux.resources.devices[0].access: required (a combination of r, w, m)"),
        ({"devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 11,
                                                          "access": "x"}]},
         "linux.resources.devices[1].access: names none of r, w, m: an allow rule for c 1:11 that grants nothing"),
        ({"devices": [{"access": "r"}]}, "linux.resources.devices[0].allow: required boolean"),
        ({"devices": [{"allow": True, "type": "p"}]}, "linux.resources.devices[0].type: 'p' is not one of a, b, c"),
        ({"unified": {"memory.high": "1"}},
         "linux.resources.unified.memory.high: controller memory is not on this host's cgroup v2 hierarchy"),
        ({"hugepageLimits": [{"pageSize": "2XB", "limit": 1}]},
         "linux.resources.hugepageLimits[0].pageSize: '2XB' is not a page size like \"2MB\""),
        ({"blockIO": {"weightDevice": [{"major": 8, "minor": 0}]}},
         "linux.resources.blockIO.weightDevice[0]: needs weight or leafWeight"),
        ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "rate": 1}]}},
         "linux.resources.blockIO.throttleReadBpsDevice[0].minor: required"),
        ({"rdma": {"mlx": {}}}, "linux.resources.rdma.mlx: needs hcaHandles or hcaObjects"),
        ({"memory": {"limit": 1 << 20}, "pids": {"limit": "many"}}, "linux.resources.pids.limit: must be an integer"),
    ]
    for res, msg in bad:
        fk.writes.clear()
        with pytest.raises(cgroups.CgroupError) as ei:
            m.apply(res)
        assert str(ei.value).startswith(msg), (res, str(ei.value))
        assert "\n" not in str(ei.value)
        assert fk.writes == [], res


def test_kernel_error_message_names_field_file_and_value(fk):
    m = mk(fk, "/kerr")
    m.create()
    fk.fail["pids.max"] = errno.EINVAL
    with pytest.raises(cgroups.CgroupError) as ei:
        m.apply({"pids": {"limit": 5}})
    assert str(ei.value) == ("linux.resources.pids.limit: cannot write '5' to pids.max: invalid argument "
                             "(value rejected by the kernel)")


def test_device_rule_hole_in_wildcard_refused(fk):
    m = mk(fk, "/hole")
    m.create()
    with pytest.raises(cgroups.CgroupError, match="punch a hole"):
        m.apply({"devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "access": "rwm"},
                             {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "r"}]})


def test_devices_allow_all(fk):
    m = mk(fk, "/all")
    m.create()
    fk.writes.clear()
    m.apply({"devices": [{"allow": True, "access": "rwm"}]})
    # allow-all, then the default allow rules are no-ops in blacklist mode
    assert [(f, v) for _d, f, v in fk.writes] == [("devices.allow", "a *:* rwm")]


def test_update_devices_transition_without_reset(fk):
    m = mk(fk, "/upd")
    m.create()
    m.apply({"devices": [{"allow": False, "access": "rwm"}]})
    fk.writes.clear()
    m.update({"devices": [{"allow": False, "access": "rwm"},
                          {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "r"}]})
    assert [(f, v) for _d, f, v in fk.writes] == [("devices.allow", "b 8:0 r")]
    fk.writes.clear()
    m.update({"pids": {"limit": 3}})            # no "devices": device rules untouched
    assert [f for _d, f, _v in fk.writes] == ["pids.max"]
    fk.writes.clear()
    m.update({"devices": [{"allow": False, "access": "rwm"}]})
    assert [(f, v) for _d, f, v in fk.writes] == [("devices.deny", "b 8:0 r")]


def test_update_oom_killer_can_be_reenabled_and_check_before_update(fk):
    m = mk(fk, "/oom")
    m.create()
    m.apply({"memory": {"disableOOMKiller": True}})
    m.update({"memory": {"disableOOMKiller": False}})
    assert fk.read("memory", "/oom", "memory.oom_control") == "0"
    with open(m.path("memory") + "/memory.usage_in_bytes", "w") as f:
        f.write("999999")
    with pytest.raises(cgroups.CgroupError, match="below the current usage 999999"):
        m.update({"memory": {"limit": 4096, "checkBeforeUpdate": True}})


def test_hugetlb_v1_and_hybrid_unified(tmp_path, monkeypatch):
    fk = FakeCgroupfs(tmp_path, controllers=["memory", "devices", "hugetlb"]).install(monkeypatch)
    m = mk(fk, "/h")
    m.create()
    m.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}, {"pageSize": "1048576KB", "limit": 0}]})
    assert fk.read("hugetlb", "/h", "hugetlb.2MB.limit_in_bytes") == str(4 << 20)
    assert fk.read("hugetlb", "/h", "hugetlb.1GB.limit_in_bytes") == "0"


def test_hugetlb_on_hybrid_unified_only_refused_as_runc(fk):
    """hugepageLimits where hugetlb is only on cgroup2 (hybrid host): refused, as runc does (its v1 driver has
    no hugetlb hierarchy to write); nothing written. The unified key is the way to set it there (below)."""
    m = mk(fk, "/hu/x")
    m.create()
    fk.writes.clear()
    with pytest.raises(cgroups.CgroupError, match="hugepageLimits.*hugetlb is not mounted"):
        m.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 2 << 20}]})
    assert fk.writes == []


def test_unified_keys_on_a_hybrid_host(fk):
    """Hybrid host: unified keys of a controller that lives on cgroup2 are written there (config-linux.md:
    unified values MUST be written); the controller is enabled down the tree first."""
    m = mk(fk, "/uh/x")
    m.create()
    m.apply({"unified": {"hugetlb.2MB.max": "4194304"}})
    assert fk.read("unified", "/uh/x", "hugetlb.2MB.max") == "4194304"
    assert fk.read("unified", "/uh", "cgroup.subtree_control") == "hugetlb"


def test_unified_refused_without_cgroup2(tmp_path, monkeypatch):
    fk = FakeCgroupfs(tmp_path, cgroup2_controllers="").install(monkeypatch)
    m = mk(fk, "/un")
    m.create()
    fk.writes.clear()
    with pytest.raises(cgroups.CgroupError, match=r"unified.pids.max: controller pids is not on this host's "
                                                   r"cgroup v2 hierarchy \(hybrid host; cgroup2 has: none\)"):
        m.apply({"unified": {"pids.max": "5"}})
    assert fk.writes == []


def test_hugetlb_nowhere(tmp_path, monkeypatch):
    fk = FakeCgroupfs(tmp_path, cgroup2_controllers="").install(monkeypatch)
    m = mk(fk, "/hn")
    m.create()
    with pytest.raises(cgroups.CgroupError, match=r"hugepageLimits\[0\]: .*hugetlb is not mounted"):
        m.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 2 << 20}]})


def test_network_and_rdma(tmp_path, monkeypatch):
    fk = FakeCgroupfs(tmp_path, controllers=["devices", "net_cls", "net_prio", "rdma"]).install(monkeypatch)
    m = mk(fk, "/n")
    m.create()
    m.apply({"network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 500},
                                                            {"name": "lo", "priority": 1}]},
             "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}, "rxe3": {"hcaObjects": 7}}})
    assert fk.read("net_cls", "/n", "net_cls.classid") == "1048577"
    assert fk.writes_to("net_prio.ifpriomap") == ["eth0 500", "lo 1"]
    assert fk.writes_to("rdma.max") == ["mlx5_1 hca_handle=3 hca_object=10000", "rxe3 hca_object=7"]


# ---------------------------------------------------------------------------------------------- processes

def test_add_pid_pids_freeze(fk):
    m = mk(fk, "/proc")
    m.create()
    m.add_pid(4242)
    for _n, d in m.mount_plan():
        with open(d + "/cgroup.procs") as f:
            assert f.read() == "4242"
    os.makedirs(m.path("devices") + "/sub")
    with open(m.path("devices") + "/sub/cgroup.procs", "w") as f:
        f.write("77\n4242\n")
    assert sorted(m.pids()) == [77, 4242]
    assert not m.is_frozen()
    m.freeze()
    assert m.is_frozen() and fk.read("freezer", "/proc", "freezer.state") == "FROZEN"
    m.thaw()
    assert not m.is_frozen()


def test_add_pid_error(fk):
    m = mk(fk, "/ap")
    m.create()
    fk.fail["cgroup.procs"] = errno.ENOSPC
    with pytest.raises(cgroups.CgroupError, match=r"cannot add process 9 to cgroup .*cgroup.procs.*no space"):
        m.add_pid(9)


def test_signal_all_and_destroy_kill(fk):
    m = mk(fk, "/kill")
    m.create()
    p = subprocess.Popen(["sleep", "30"])
    try:
        with open(m.path("devices") + "/cgroup.procs", "w") as f:
            f.write(str(p.pid))
        m.signal_all(signal.SIGTERM)
        assert p.wait(5) == -signal.SIGTERM
        # the fake kernel does not remove dead tasks: empty it and check that destroy succeeds
        with open(m.path("devices") + "/cgroup.procs", "w") as f:
            f.write("")
        m.destroy()
        assert not os.path.exists(m.path("devices"))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_destroy_reports_stuck_processes(fk):
    m = mk(fk, "/stuck")
    m.create()
    p = subprocess.Popen(["sleep", "30"])
    try:
        with open(m.path("devices") + "/cgroup.procs", "w") as f:
            f.write(str(p.pid))
        with pytest.raises(cgroups.CgroupError, match="did not exit"):
            m.destroy(timeout=0.05)
        assert p.wait(5) == -signal.SIGKILL
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_stats(fk):
    m = mk(fk, "/st")
    m.create()
    m.apply({"pids": {"limit": 9}})
    s = m.stats()
    assert s["memory"]["usage"]["usage"] == 4096 and s["memory"]["usage"]["limit"] == int(BIG)
    assert s["pids"] == {"current": 0, "limit": 9}
    assert s["cpu"]["usage"]["total"] == 123456 and s["cpu"]["usage"]["percpu"] == [100000, 23456]
    assert s["cpu"]["throttling"]["throttledPeriods"] == 1
    json.dumps(s)


# ---------------------------------------------------------------------------------------------- pure helpers

def test_device_model_from_list_and_transition():
    cur = devices.from_list("c 1:3 rwm\nc 5:0 rw\n")
    tgt = devices.Model(False, {("c", 1, 3): "rwm", ("c", 5, 0): "rwm", ("b", 8, 0): "r"})
    assert devices.transition(tgt, cur) == [("devices.allow", "c 5:0 m"), ("devices.allow", "b 8:0 r")]
    assert devices.transition(tgt, devices.from_list("a *:* rwm\n"))[0] == ("devices.deny", "a *:* rwm")
    black = devices.build([{"allow": True, "access": "rwm"}, {"allow": False, "type": "b", "major": 8, "minor": 0,
                                                              "access": "w"}], default_devices=False)
    assert devices.transition(black) == [("devices.allow", "a *:* rwm"), ("devices.deny", "b 8:0 w")]


def test_page_size_labels():
    from ocirun.cgroups.common import page_size
    assert page_size("f", "2MB") == ("2MB", 2 << 20)
    assert page_size("f", "2048KB") == ("2MB", 2 << 20)
    assert page_size("f", "1GB") == ("1GB", 1 << 30)
    assert page_size("f", "64KB") == ("64KB", 64 << 10)
