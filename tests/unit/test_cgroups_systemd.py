"""The systemd cgroup driver's logic against a fake systemd and a fake cgroupfs (no root, no D-Bus). The same
driver against a real systemd: tests/integration/test_systemd_cgroup.py."""
import os
import subprocess
import sys

import pytest

from ocirun import cgroups
from ocirun.cgroups import devices
from ocirun.cgroups import systemd as sd
from ocirun.cgroups.testing import FakeCgroupfs

MAX = (1 << 64) - 1
# the v1 controllers systemd realizes for a scope with accounting and a device policy (the rest are ocirun's)
MANAGED = ("cpu", "cpuacct", "memory", "devices", "blkio", "pids", "systemd", "unified")


class FakeSystemd:
    """systemd's manager as the driver sees it (Bus' methods): units, jobs, and the cgroup directories it makes."""

    def __init__(self, fk, version=252):
        self.fk = fk
        self.units = {}     # name -> {"state": ..., "props": {...}}
        self.calls = []
        self.ver = version
        self.fail_start = None

    def open(self):
        return self

    def close(self):
        pass

    def version(self):
        return self.ver

    def manager_property(self, name):
        return "/"

    def unit_state(self, unit):
        self.calls.append(("state", unit))
        u = self.units.get(unit)
        return None if u is None else (u["state"], "running" if u["state"] == "active" else "dead")

    def reset_failed(self, unit):
        self.calls.append(("reset", unit))
        if unit in self.units and self.units[unit]["state"] in ("failed", "inactive"):
            del self.units[unit]

    def _dirs(self, unit, props):
        sl = sd.expand_slice(props["Slice"][1])
        if self.fk.version == 2:
            return [self.fk.dir("", f"{sl}/{unit}")]
        return [self.fk.dir(h, f"{sl}/{unit}") for h in MANAGED if os.path.isdir(self.fk.dir(h, "/"))]

    def start_transient(self, unit, props):
        self.calls.append(("start", unit, [n for n, _v in props]))
        if unit in self.units:
            e = sd.SystemdError("exists")
            e.dbus_name = "org.freedesktop.systemd1.UnitExists"
            raise e
        if self.fail_start:
            return self.fail_start
        p = dict(props)
        self.units[unit] = {"state": "active", "props": p}
        for d in self._dirs(unit, p):
            os.makedirs(d, exist_ok=True)
            self.fk._fill(d)
            with open(os.path.join(d, "cgroup.procs"), "a") as f:
                f.write("%d\n" % p["PIDs"][1][0])
        return "done"

    def set_properties(self, unit, props):
        self.calls.append(("set", unit, props))
        self.units[unit]["props"].update(dict(props))

    def stop(self, unit):
        self.calls.append(("stop", unit))
        u = self.units.pop(unit, None)
        if u is None:
            return "gone"
        for d in self._dirs(unit, u["props"]):
            if os.path.isdir(d):
                self.fk._rmdir(d)
        return "done"


@pytest.fixture
def fk(tmp_path, monkeypatch):
    f = FakeCgroupfs(tmp_path / "cg", version=1).install(monkeypatch)
    run = tmp_path / "run-systemd-system"
    run.mkdir()
    monkeypatch.setattr(sd, "SYSTEMD_DIR", str(run))
    return f


def mk(fk, path="system.slice:test:c1", cid="c1", annotations=None, version=252):
    m = cgroups.new_manager(cid, path, systemd=True, annotations=annotations, **fk.kwargs)
    fake = FakeSystemd(fk, version)
    m._bus = fake
    return m, fake


# ---------------------------------------------------------------------------------------------- names

@pytest.mark.parametrize("path,cid,slice_,unit", [
    ("system.slice:docker:abc", "x", "system.slice", "docker-abc.scope"),
    ("machine.slice:libpod:123", "x", "machine.slice", "libpod-123.scope"),
    ("kubepods-besteffort-pod1.slice:cri-containerd:9f", "x", "kubepods-besteffort-pod1.slice",
     "cri-containerd-9f.scope"),
    (":crio:z", "x", "system.slice", "crio-z.scope"),
    ("", "myid", "system.slice", "ocirun-myid.scope"),
    (None, "myid", "system.slice", "ocirun-myid.scope"),
])
def test_unit_names_as_runc(path, cid, slice_, unit):
    assert sd.parse_path(path, cid) == (slice_, unit)


def test_rootless_default_slice_is_user_slice():
    assert sd.parse_path("", "a", rootless=True) == ("user.slice", "ocirun-a.scope")


@pytest.mark.parametrize("bad,needle", [
    ("/abs/path", 'expected "slice:prefix:name"'),
    ("a:b", 'expected "slice:prefix:name"'),
    ("a:b:c:d", 'expected "slice:prefix:name"'),
    ("system:pfx:n", "invalid slice name 'system'"),
    ("a--b.slice:p:n", "empty part between dashes"),
    ("-a.slice:p:n", "empty part between dashes"),
    ("a/b.slice:p:n", "invalid slice name"),
    ("system.slice:p:", "the name part is empty"),
    ("system.slice:p:x.slice", "a container needs a scope unit"),
])
def test_bad_cgroups_path_refused_naming_the_field(bad, needle):
    with pytest.raises(sd.SystemdError) as e:
        sd.parse_path(bad, "id")
    assert "linux.cgroupsPath" in str(e.value) and needle in str(e.value)


@pytest.mark.parametrize("s,path", [
    ("system.slice", "/system.slice"),
    ("a-b-c.slice", "/a.slice/a-b.slice/a-b-c.slice"),
    ("-.slice", "/"),
    ("kubepods-burstable-podX.slice", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podX.slice"),
])
def test_expand_slice(s, path):
    assert sd.expand_slice(s) == path


def test_paths_are_the_scope_in_every_hierarchy(fk):
    m, _ = mk(fk, "a-b.slice:pfx:n1", "n1")
    for name, d in m.paths().items():
        assert d.endswith("/a.slice/a-b.slice/pfx-n1.scope"), (name, d)
    assert m.to_create() == []      # systemd makes them when the unit starts


# ---------------------------------------------------------------------------------------------- properties

def test_cpu_quota_rounded_up_to_systemds_granularity():
    props, q = sd.cpu_quota(12345, 100000)      # 12.345% -> 13%
    assert dict(props) == {"CPUQuotaPeriodUSec": ("t", 100000), "CPUQuotaPerSecUSec": ("t", 130000)}
    assert q == 13000
    props, q = sd.cpu_quota(50000, 0)           # default period
    assert dict(props) == {"CPUQuotaPerSecUSec": ("t", 500000)} and q == 50000
    props, q = sd.cpu_quota(-1, 100000)         # unlimited
    assert dict(props)["CPUQuotaPerSecUSec"] == ("t", MAX) and q == -1
    assert sd.cpu_quota(0, 0) == ([], 0)


def test_range_to_bits():
    assert sd.range_to_bits("f", "0") == b"\x01"
    assert sd.range_to_bits("f", "0-2,4") == b"\x17"
    assert sd.range_to_bits("f", "9") == b"\x00\x02"
    for bad in ("", "x", "3-1"):
        with pytest.raises(sd.SystemdError):
            sd.range_to_bits("f", bad)


def test_device_properties_strict_allow_list():
    model = devices.build([{"allow": False, "access": "rwm"},
                           {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"},
                           {"allow": True, "type": "b", "major": 8, "access": "r"}])
    props, warns = sd.device_props(model)
    assert props[0] == ("DeviceAllow", ("a(ss)", []))
    assert props[1] == ("DevicePolicy", ("s", "strict"))
    allow = props[2][1][1]
    assert ("/dev/char/10:229", "rw") in allow and ("block-8", "r") in allow
    assert ("char-*", "m") in allow and ("/dev/char/1:3", "rwm") in allow and ("char-136", "rwm") in allow
    assert warns == []


def test_device_properties_allow_all_and_unsayable_rules():
    props, warns = sd.device_props(devices.build([{"allow": True, "access": "rwm"}]))
    assert dict(props)["DevicePolicy"] == ("s", "auto")
    props, warns = sd.device_props(devices.build([{"allow": True, "type": "c", "minor": 3, "access": "r"}]))
    assert warns and "c *:3" in warns[0]


def test_resource_properties_v1_as_runc():
    res = {"memory": {"limit": 64 << 20}, "cpu": {"shares": 512, "quota": 20000, "period": 100000, "cpus": "0"},
           "pids": {"limit": 0}, "blockIO": {"weight": 300}}
    props, res2, warns = sd.resource_props(res, 1, 252)
    p = dict(props)
    assert p["MemoryLimit"] == ("t", 64 << 20) and p["CPUShares"] == ("t", 512)
    assert p["CPUQuotaPerSecUSec"] == ("t", 200000) and p["CPUQuotaPeriodUSec"] == ("t", 100000)
    assert p["TasksMax"] == ("t", 1)            # systemd refuses 0 (runc: 1; the file gets 0)
    assert p["BlockIOWeight"] == ("t", 300) and p["AllowedCPUs"] == ("ay", b"\x01")
    assert p["DevicePolicy"] == ("s", "strict")
    # older systemd: no period / cpuset properties (the files still get them)
    p = dict(sd.resource_props(res, 1, 241)[0])
    assert "CPUQuotaPeriodUSec" not in p and "AllowedCPUs" not in p


def test_resource_properties_v2_as_runc():
    res = {"memory": {"limit": 100 << 20, "swap": 150 << 20, "reservation": 10 << 20}, "cpu": {"shares": 1024},
           "pids": {"limit": -1}, "unified": {"memory.high": "max", "pids.max": "7", "io.weight": "50"}}
    p = sd.resource_props(res, 2, 252)[0]
    d = dict(p)
    assert d["MemoryMax"] == ("t", 100 << 20) and d["MemoryLow"] == ("t", 10 << 20)
    assert d["MemorySwapMax"] == ("t", 50 << 20)
    assert d["CPUWeight"] == ("t", 39)
    assert ("TasksMax", ("t", MAX)) in p and ("TasksMax", ("t", 7)) in p
    assert d["MemoryHigh"] == ("t", MAX)
    assert d["IOWeight"] == ("t", 50)
    p = dict(sd.resource_props({"blockIO": {"weight": 500}, "unified": {"io.weight": "8:0 300"}}, 2, 252)[0])
    assert p["IOWeight"] == ("t", 4950)     # blkio weight 10-1000 -> io.weight 1-10000, as the files get it


def test_update_touches_devices_only_when_given():
    props = dict(sd.resource_props({"memory": {"limit": 1 << 30}}, 1, 252, update=True)[0])
    assert "DevicePolicy" not in props and props["MemoryLimit"] == ("t", 1 << 30)


@pytest.mark.parametrize("text,val", [
    ("uint64 123456789", ("t", 123456789)), ("'inactive-or-failed'", ("s", "inactive-or-failed")),
    ("true", ("b", True)), ("boolean false", ("b", False)), ("42", ("i", 42)), ("int64 -5", ("x", -5)),
    ('"x"', ("s", "x")), ("['a', 'b']", ("as", ["a", "b"])),
])
def test_annotation_values(text, val):
    assert sd.parse_gvariant("f", text) == val


def test_annotations_become_properties():
    props = sd.annotation_props({"org.systemd.property.TimeoutStopUSec": "uint64 123456789",
                                 "org.systemd.property.CollectMode": "'inactive-or-failed'", "other": "x"})
    assert props == [("CollectMode", ("s", "inactive-or-failed")), ("TimeoutStopUSec", ("t", 123456789))]
    for bad in ({"org.systemd.property.lower": "1"}, {"org.systemd.property.X": "uint64 nope"},
                {"org.systemd.property.X": "boolean 'a'"}):
        with pytest.raises(sd.SystemdError) as e:
            sd.annotation_props(bad)
        assert "annotations[" in str(e.value)


# ---------------------------------------------------------------------------------------------- lifecycle

def test_create_start_apply_destroy_leaves_nothing(fk, tmp_path):
    m, sysd = mk(fk, "system.slice:test:c1", "c1",
                 annotations={"org.systemd.property.TimeoutStopUSec": "uint64 5000000"})
    pending = []
    m.before_mkdir = pending.extend
    m.create()
    assert m.owned
    m.add_pid(4242)
    start = [c for c in sysd.calls if c[0] == "start"][0]
    assert start[1] == "test-c1.scope"
    for prop in ("Slice", "Delegate", "PIDs", "DefaultDependencies", "MemoryAccounting", "TimeoutStopUSec"):
        assert prop in start[2]
    u = sysd.units["test-c1.scope"]["props"]
    assert u["Delegate"] == ("b", True) and u["PIDs"] == ("au", [4242]) and u["Slice"] == ("s", "system.slice")
    # ocirun joined the hierarchies systemd leaves alone, and recorded them before making them
    frz = fk.dir("freezer", "/system.slice/test-c1.scope")
    assert os.path.isdir(frz) and frz in pending and frz in m.created
    assert "4242" in open(os.path.join(frz, "cgroup.procs")).read()
    assert fk.dir("memory", "/system.slice/test-c1.scope") not in m.created   # systemd's
    m.apply({"memory": {"limit": 32 << 20}, "cpu": {"quota": 12345, "period": 100000}})
    assert sysd.units["test-c1.scope"]["props"]["MemoryLimit"] == ("t", 32 << 20)
    assert fk.read("memory", "/system.slice/test-c1.scope", "memory.limit_in_bytes").strip() == str(32 << 20)
    # the file gets the quota systemd keeps (rounded up to 10 ms), as runc
    assert fk.read("cpu", "/system.slice/test-c1.scope", "cpu.cfs_quota_us").strip() == "13000"
    # a later command restores the manager from the record
    m2 = cgroups.manager_from_dict(m.to_dict())
    assert isinstance(m2, sd.SystemdManager) and m2.unit == "test-c1.scope" and m2.owned
    m2._bus = sysd
    # (the fake processes are gone)
    for d in m2.paths().values():
        if os.path.exists(os.path.join(d, "cgroup.procs")):
            open(os.path.join(d, "cgroup.procs"), "w").close()
    m2.destroy()
    assert ("stop", "test-c1.scope") in sysd.calls and "test-c1.scope" not in sysd.units
    for d in m2.paths().values():
        assert not os.path.exists(d), d


def test_existing_active_unit_refused_and_not_stopped(fk):
    m, sysd = mk(fk)
    sysd.units["test-c1.scope"] = {"state": "active", "props": {"Slice": ("s", "system.slice")}}
    with pytest.raises(sd.SystemdError) as e:
        m.create()
    assert "test-c1.scope already exists (active/running)" in str(e.value)
    assert not m.owned
    m.destroy()             # (the cleanup of the failed create)
    assert ("stop", "test-c1.scope") not in sysd.calls and "test-c1.scope" in sysd.units


def test_failed_leftover_unit_is_reset_and_reused(fk):
    m, sysd = mk(fk)
    sysd.units["test-c1.scope"] = {"state": "failed", "props": {}}
    m.create()
    assert ("reset", "test-c1.scope") in sysd.calls and m.owned
    m.add_pid(99)
    assert sysd.units["test-c1.scope"]["state"] == "active"


def test_unit_made_meanwhile_is_not_ours(fk):
    m, sysd = mk(fk)
    m.create()
    sysd.units["test-c1.scope"] = {"state": "active", "props": {"Slice": ("s", "system.slice")}}
    with pytest.raises(sd.SystemdError) as e:
        m.add_pid(5)
    assert "already exists" in str(e.value) and not m.owned
    m.destroy()
    assert "test-c1.scope" in sysd.units


def test_failed_job_is_an_error(fk):
    m, sysd = mk(fk)
    sysd.fail_start = "failed"
    m.create()
    with pytest.raises(sd.SystemdError) as e:
        m.add_pid(5)
    assert "could not start test-c1.scope: job failed" in str(e.value)
    assert ("reset", "test-c1.scope") in sysd.calls


def test_no_systemd_refused_before_anything(tmp_path, monkeypatch):
    monkeypatch.setattr(sd, "SYSTEMD_DIR", str(tmp_path / "nope"))
    with pytest.raises(sd.SystemdError) as e:
        cgroups.check_driver(True)
    assert "systemd is not running on this host" in str(e.value)


def test_unreachable_bus_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no-such-socket")
    with pytest.raises(sd.SystemdError) as e:
        sd.Bus().open()
    assert "to the D-Bus system bus" in str(e.value) and "no-such-socket" in str(e.value)


def test_silent_bus_times_out(tmp_path, monkeypatch):
    import socket

    path = str(tmp_path / "silent")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={path}")
    try:
        with pytest.raises(sd.SystemdError) as e:
            b = sd.Bus()
            b._connect = lambda addr: __import__("jeepney.io.blocking", fromlist=["x"]).open_dbus_connection(
                bus=addr, auth_timeout=0.3)
            b.open()
        assert "to the D-Bus system bus" in str(e.value)
    finally:
        srv.close()


def test_rootless_on_v1_refused_as_runc(fk):
    with pytest.raises(sd.SystemdError) as e:
        cgroups.new_manager("c", "", systemd=True, rootless=True, **fk.kwargs)
    assert "rootless" in str(e.value) and "cgroup v1" in str(e.value)


def test_systemd_path_imports_jeepney_only_when_used():
    code = ("import sys; from ocirun.cgroups import systemd; "
            "print([m for m in ('jeepney',) if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_features_say_systemd():
    from ocirun import features

    cg = features.features()["linux"]["cgroup"]
    assert cg["systemd"] is True and cg["systemdUser"] is True


def _cfg(cgroups_path=None, annotations=None):
    from ocirun import config, specgen

    doc = specgen.default_spec()
    if cgroups_path is not None:
        doc["linux"]["cgroupsPath"] = cgroups_path
    if annotations:
        doc["annotations"] = annotations
    return config.parse(doc)


def test_check_reports_what_create_would_refuse(fk, tmp_path, monkeypatch):
    from ocirun import hostcheck

    assert [f for f in hostcheck.findings(_cfg("system.slice:p:n"), systemd=True) if f[0] == "error"] == []
    errs = [f for f in hostcheck.findings(_cfg("/plain/path"), systemd=True) if f[0] == "error"]
    assert errs and errs[0][1] == "/linux/cgroupsPath" and "slice:prefix:name" in errs[0][2]
    errs = [f for f in hostcheck.findings(_cfg(annotations={"org.systemd.property.X": "uint64 no"}), systemd=True)
            if f[0] == "error"]
    assert errs and errs[0][1] == "/annotations"
    monkeypatch.setattr(sd, "SYSTEMD_DIR", str(tmp_path / "none"))
    errs = [f for f in hostcheck.findings(_cfg("system.slice:p:n"), systemd=True) if f[0] == "error"]
    assert errs == [("error", "/", errs[0][2])] and "systemd is not running" in errs[0][2]
    # (without --systemd-cgroup none of this applies)
    assert [f for f in hostcheck.findings(_cfg(), systemd=False) if f[0] == "error"] == []


def test_make_dirs_survives_a_parent_removed_meanwhile(tmp_path, monkeypatch):
    """Two containers of one slice: another container made the shared parent directory just before us (we find it
    there), then its delete removed it again before our mkdir of the leaf."""
    from ocirun.cgroups import common

    top = tmp_path / "freezer"
    top.mkdir()
    parent = str(top / "machine.slice")
    leaf = parent + "/x.scope"
    real_mkdir = os.mkdir
    calls = []

    def mkdir(p, mode=0o777):
        calls.append(p)
        if p == parent and calls.count(parent) == 1:
            real_mkdir(p, mode)                 # the other container's create...
            raise FileExistsError(17, "File exists", p)
        if p == leaf and calls.count(leaf) == 2:
            os.rmdir(parent)                    # ...and its delete
        return real_mkdir(p, mode)

    monkeypatch.setattr(common.os, "mkdir", mkdir)
    created = []
    assert common.make_dirs(leaf, created, stop=str(top))
    assert os.path.isdir(leaf) and created == [parent, leaf]


def test_v2_lifecycle_leaves_nothing(tmp_path, monkeypatch):
    fk = FakeCgroupfs(tmp_path / "cg", version=2).install(monkeypatch)
    monkeypatch.setattr(sd, "SYSTEMD_DIR", str(tmp_path))
    m, sysd = mk(fk, "system.slice:v2:c", "c")
    assert m.version == 2
    m.create()
    m.add_pid(77)
    d = fk.dir("", "/system.slice/v2-c.scope")
    assert m.path("") == d and os.path.isdir(d)
    m.apply({"pids": {"limit": 9}})
    assert sysd.units["v2-c.scope"]["props"]["TasksMax"] == ("t", 9)
    open(os.path.join(d, "cgroup.procs"), "w").close()
    m.destroy()             # (was: 'V2Manager' object has no attribute 'hierarchies')
    assert ("stop", "v2-c.scope") in sysd.calls and not os.path.exists(d)


def test_a_refused_limit_never_reaches_the_unit(tmp_path, monkeypatch):
    """A limit whose controller is missing is refused before systemd hears of it (runc 1.1.5 sets the property,
    then fails on the file: the unit says TasksMax=80 with nothing applied)."""
    fk = FakeCgroupfs(tmp_path / "cg", version=1, controllers=["cpu", "memory", "devices", "freezer",
                                                              "name=systemd"]).install(monkeypatch)
    monkeypatch.setattr(sd, "SYSTEMD_DIR", str(tmp_path))
    m, sysd = mk(fk)
    m.create()
    m.add_pid(5)
    m.apply({"memory": {"limit": 1 << 26}})
    n = len(sysd.calls)
    with pytest.raises(cgroups.CgroupError) as e:
        m.update({"pids": {"limit": 80}})
    assert str(e.value).startswith("linux.resources.pids.limit: ") and "pids" in str(e.value)
    assert not [c for c in sysd.calls[n:] if c[0] == "set"]
    assert "TasksMax" not in sysd.units["test-c1.scope"]["props"]
