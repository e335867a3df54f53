"""The systemd cgroup driver against a real systemd (issue 16).

This host has no systemd as its init, so the `systemd_bed` fixture (systemdbed.py) boots Debian 12's systemd as
PID 1 of a container, on this cgroup v1 hybrid host; ocirun and runc run inside it with `--systemd-cgroup` and
their own state roots. Every test runs for both runtimes and asserts the same things: the unit systemd shows
(`systemctl show`), its properties, the cgroup files, what the container sees, and that delete leaves nothing.
Where runc 1.1.5 (the runc here) reaches another verdict than ocirun, the test says which and why
(spec/EXTENSIONS.md).
"""
import json
import re
import uuid

import pytest
from systemd_inner import InnerRuntime, cleanup_fixture

RUNTIMES = ("ocirun", "runc")
V1_DIRS = ("memory", "cpu", "cpuacct", "pids", "devices", "blkio", "freezer", "cpuset", "systemd")


@pytest.fixture(params=RUNTIMES)
def rt(request, systemd_bed):
    return Inner(systemd_bed, request.param)


class Inner(InnerRuntime):
    def leftovers(self, rel):
        """Directories named `rel` (a cgroup path) in any v1 hierarchy or the unified one."""
        return [d for d in [f"/sys/fs/cgroup/{h}{rel}" for h in V1_DIRS + ("unified",)] if self.exists(d)]


@pytest.fixture(autouse=True)
def _cleanup(request):
    yield
    cleanup_fixture(request)


def test_scope_unit_with_limits(rt):
    cid = rt.new_id("lim")
    res = {"memory": {"limit": 64 << 20}, "cpu": {"shares": 512, "quota": 12345, "period": 100000, "cpus": "0",
                                                  "mems": "0"},
           "pids": {"limit": 50}}
    rt.start(cid, path=f"system.slice:sdtest:{cid}", resources=res)
    unit = f"sdtest-{cid}.scope"
    p = rt.show(unit, "ActiveState", "Slice", "Delegate", "MemoryLimit", "CPUShares", "TasksMax",
                "CPUQuotaPerSecUSec", "DevicePolicy", "ControlGroup", "DefaultDependencies", "AllowedCPUs",
                "AllowedMemoryNodes")
    # (systemd 252 keeps AllowedCPUs/AllowedMemoryNodes; on v1 it has no cpuset controller: the files carry them)
    assert p["AllowedCPUs"] == "0" and p["AllowedMemoryNodes"] == "0"
    assert p["ActiveState"] == "active" and p["Slice"] == "system.slice" and p["Delegate"] == "yes"
    assert p["MemoryLimit"] == str(64 << 20) and p["CPUShares"] == "512" and p["TasksMax"] == "50"
    # 12345/100000 = 12.3% of a cpu: systemd keeps whole percents, both runtimes round up to 13%
    assert p["CPUQuotaPerSecUSec"] == "130ms" and p["DevicePolicy"] == "strict"
    assert p["ControlGroup"] == f"/system.slice/{unit}" and p["DefaultDependencies"] == "no"
    d = f"/system.slice/{unit}"
    assert rt.cat(f"/sys/fs/cgroup/memory{d}/memory.limit_in_bytes") == str(64 << 20)
    # the file holds the quota systemd keeps (runc 1.2+, ocirun); runc 1.1 writes the unrounded one, which the
    # next time systemd applies the unit replaces
    assert rt.cat(f"/sys/fs/cgroup/cpu{d}/cpu.cfs_quota_us") == ("12345" if rt.runc_1_1() else "13000")
    assert rt.cat(f"/sys/fs/cgroup/cpu{d}/cpu.shares") == "512"
    assert rt.cat(f"/sys/fs/cgroup/pids{d}/pids.max") == "50"
    assert rt.cat(f"/sys/fs/cgroup/cpuset{d}/cpuset.cpus") == "0"
    assert "c 1:3 rwm" in rt.cat(f"/sys/fs/cgroup/devices{d}/devices.list")
    # the container's init is in the scope in every hierarchy, systemd's and those ocirun/runc joined themselves
    pid = json.loads(rt("state", cid, check=True).stdout)["pid"]
    for h in ("memory", "freezer", "cpuset", "systemd", "pids"):
        assert str(pid) in rt.cat(f"/sys/fs/cgroup/{h}{d}/cgroup.procs").split(), h
    # and sees it from inside
    own = rt("exec", cid, "cat", "/proc/self/cgroup", check=True).stdout
    assert re.search(rf"^\d+:memory:{re.escape(d)}$", own, re.M), own
    assert re.search(rf"^\d+:name=systemd:{re.escape(d)}$", own, re.M), own


def test_update_sets_unit_properties_and_files(rt):
    cid = rt.new_id("upd")
    rt.start(cid, path=f"system.slice:sdtest:{cid}", resources={"memory": {"limit": 64 << 20}})
    unit = f"sdtest-{cid}.scope"
    rt("update", "--memory", str(128 << 20), "--pids-limit", "80", "--cpu-quota", "50000", "--cpu-period", "100000",
       cid, check=True)
    p = rt.show(unit, "MemoryLimit", "TasksMax", "CPUQuotaPerSecUSec")
    assert p == {"MemoryLimit": str(128 << 20), "TasksMax": "80", "CPUQuotaPerSecUSec": "500ms"}
    d = f"/sys/fs/cgroup/%s/system.slice/{unit}"
    assert rt.cat(d % "memory" + "/memory.limit_in_bytes") == str(128 << 20)
    assert rt.cat(d % "pids" + "/pids.max") == "80"
    assert rt.cat(d % "cpu" + "/cpu.cfs_quota_us") == "50000"


def test_pause_resume_ps_kill_all_events(rt):
    cid = rt.new_id("ops")
    rt.start(cid, path=f"system.slice:sdtest:{cid}")
    unit = f"sdtest-{cid}.scope"
    fz = f"/sys/fs/cgroup/freezer/system.slice/{unit}/freezer.state"
    rt("exec", "-d", cid, "sleep", "999", check=True)
    pids = json.loads(rt("ps", "--format", "json", cid, check=True).stdout)
    assert len(pids) == 2, pids
    rt("pause", cid, check=True)
    assert rt.cat(fz) == "FROZEN"
    assert json.loads(rt("state", cid, check=True).stdout)["status"] == "paused"
    rt("resume", cid, check=True)
    assert rt.cat(fz) == "THAWED"
    ev = json.loads(rt("events", "--stats", cid, check=True).stdout)
    assert ev["type"] == "stats" and ev["data"]["memory"]["usage"]["usage"] > 0
    assert ev["data"]["pids"]["current"] == 2
    rt("kill", "--all", cid, "KILL", check=True)
    rt.bed.run(f"for i in $(seq 100); do [ -s /sys/fs/cgroup/pids/system.slice/{unit}/cgroup.procs ] || exit 0; "
               "sleep 0.1; done; exit 1", check=True)
    assert rt.show(unit, "ActiveState")["ActiveState"] in ("active", "inactive")


def test_delete_removes_the_unit_and_every_cgroup(rt):
    cid = rt.new_id("del")
    rt.start(cid, path=f"system.slice:sdtest:{cid}")
    unit = f"sdtest-{cid}.scope"
    assert rt.show(unit, "ActiveState")["ActiveState"] == "active"
    assert len(rt.leftovers(f"/system.slice/{unit}")) >= 8
    rt("kill", cid, "KILL", check=True)
    rt.bed.run(f"for i in $(seq 100); do {' '.join(rt.bed.runtime(rt.name))} state {cid} | grep -q stopped && "
               "exit 0; sleep 0.1; done; exit 1", check=True)
    rt("delete", cid, check=True)
    assert rt.show(unit, "LoadState")["LoadState"] == "not-found"
    assert rt.leftovers(f"/system.slice/{unit}") == []
    assert cid not in rt("list", "-q").stdout.split()


def test_delete_force_of_a_running_container(rt):
    cid = rt.new_id("dfo")
    rt.start(cid, path=f"system.slice:sdtest:{cid}")
    unit = f"sdtest-{cid}.scope"
    rt("delete", "--force", cid, check=True)
    assert rt.show(unit, "LoadState")["LoadState"] == "not-found"
    assert rt.leftovers(f"/system.slice/{unit}") == []


def test_a_new_slice_is_made_by_systemd(rt):
    cid = rt.new_id("sl")
    slice_ = f"sdt-{rt.name}.slice"
    rt.start(cid, path=f"{slice_}:pfx:{cid}")
    unit = f"pfx-{cid}.scope"
    assert rt.show(slice_, "ActiveState")["ActiveState"] == "active"
    assert rt.show(unit, "Slice")["Slice"] == slice_
    assert rt.exists(f"/sys/fs/cgroup/memory/sdt.slice/{slice_}/{unit}")
    rt("delete", "--force", cid, check=True)
    assert rt.leftovers(f"/sdt.slice/{slice_}/{unit}") == []


def test_default_unit_names(rt):
    """No cgroupsPath: "<runtime>-<id>.scope" in system.slice: how to tell ocirun's units from runc's."""
    cid = rt.new_id("dn")
    rt.start(cid)
    unit = f"{rt.name}-{cid}.scope"
    p = rt.show(unit, "ActiveState", "Slice", "Description")
    assert p["ActiveState"] == "active" and p["Slice"] == "system.slice"
    assert p["Description"] == ("ocirun container " if rt.name == "ocirun" else "libcontainer container ") + cid


def test_unit_properties_from_annotations(rt):
    cid = rt.new_id("ann")
    rt.start(cid, path=f"system.slice:sdtest:{cid}",
             annotations={"org.systemd.property.TimeoutStopUSec": "uint64 123456789",
                          "org.systemd.property.CollectMode": "'inactive-or-failed'"})
    p = rt.show(f"sdtest-{cid}.scope", "TimeoutStopUSec", "CollectMode")
    assert p == {"TimeoutStopUSec": "2min 3.456789s", "CollectMode": "inactive-or-failed"}


def test_bad_cgroups_path_refused_and_nothing_left(rt):
    cid = rt.new_id("bad")
    b = rt.bundle(cid, path="/not/a/systemd/path")
    r = rt("run", "-d", "--bundle", b, cid)
    assert r.returncode != 0
    assert "slice:prefix:name" in r.stderr + r.stdout
    assert cid not in rt("list", "-q").stdout.split()


def test_invalid_slice_refused(rt):
    cid = rt.new_id("isl")
    b = rt.bundle(cid, path=f"bad--name.slice:pfx:{cid}")
    r = rt("run", "-d", "--bundle", b, cid)
    assert r.returncode != 0 and "slice" in (r.stderr + r.stdout).lower()
    assert cid not in rt("list", "-q").stdout.split()
    assert rt.show(f"pfx-{cid}.scope", "LoadState")["LoadState"] == "not-found"


def test_systemd_not_answering(rt):
    """systemd unreachable (its own socket and the system bus both hidden from the runtime): a clear error, and
    nothing left (no state, no unit, no cgroup)."""
    cid = rt.new_id("nob")
    b = rt.bundle(cid, path=f"system.slice:sdtest:{cid}")
    hide = ("mount -t tmpfs none /run/dbus && mount --bind /dev/null /run/systemd/private && exec "
            + " ".join(rt.bed.runtime(rt.name)) + f" --systemd-cgroup run -d --bundle {b} {cid}")
    r = rt.bed.run(["unshare", "-m", "--propagation", "private", "sh", "-c", hide])
    assert r.returncode != 0, r
    if rt.name == "ocirun":
        assert r.stderr.strip().splitlines()[-1] == (
            "ocirun: --systemd-cgroup: cannot connect to systemd (/run/systemd/private) nor to the D-Bus system "
            "bus (unix:path=/run/dbus/system_bus_socket): No such file or directory"), r
    else:
        assert "dbus" in r.stderr.lower(), r
    assert cid not in rt("list", "-q").stdout.split()
    unit = f"sdtest-{cid}.scope"
    assert rt.show(unit, "LoadState")["LoadState"] == "not-found"
    assert rt.leftovers(f"/system.slice/{unit}") == []


def test_unit_already_present(systemd_bed):
    """Another unit of that name runs (here a scope systemd-run made): ocirun refuses and leaves it alone, as
    runc 1.2+ does. runc 1.1.5 (this machine's) puts the container into the other unit's cgroups instead."""
    ocirun = Inner(systemd_bed, "ocirun")
    unit = f"sdtest-dup{uuid.uuid4().hex[:6]}"
    systemd_bed.run(f"systemd-run --scope --unit={unit} sleep 1000 >/dev/null 2>&1 &", check=True)
    systemd_bed.run(f"for i in $(seq 100); do systemctl is-active -q {unit}.scope && exit 0; sleep 0.1; done; "
                    "exit 1", check=True)
    try:
        cid = ocirun.new_id("dup")
        b = ocirun.bundle(cid, path=f"system.slice:{unit.split('-', 1)[0]}:{unit.split('-', 1)[1]}")
        r = ocirun("run", "-d", "--bundle", b, cid)
        assert r.returncode != 0
        assert f"systemd unit {unit}.scope already exists (active/running)" in r.stderr
        assert cid not in ocirun("list", "-q").stdout.split()
        assert ocirun.show(f"{unit}.scope", "ActiveState")["ActiveState"] == "active"
        # its cgroup is untouched: only systemd-run's sleep is in it
        procs = ocirun.cat(f"/sys/fs/cgroup/systemd/system.slice/{unit}.scope/cgroup.procs").split()
        assert len(procs) == 1
        assert not ocirun.exists(f"/sys/fs/cgroup/freezer/system.slice/{unit}.scope")
    finally:
        systemd_bed.systemctl("stop", f"{unit}.scope")
        ocirun.cleanup()


def test_limits_survive_systemd_reapplying_the_unit(rt):
    """systemd rewrites a unit's cgroup files from its properties whenever it re-realizes the unit (here: set-property
    of the accounting and device policy it already has). The properties the runtime gave must say what the files
    say, or the container's limits and devices change under it."""
    cid = rt.new_id("rea")
    res = {"memory": {"limit": 48 << 20}, "cpu": {"shares": 256, "quota": 12345, "period": 100000},
           "pids": {"limit": 30},
           "devices": [{"allow": False, "access": "rwm"},
                       {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"}]}
    rt.start(cid, path=f"system.slice:sdtest:{cid}", resources=res)
    unit = f"sdtest-{cid}.scope"
    files = {"memory": "memory.limit_in_bytes", "cpu": "cpu.cfs_quota_us", "pids": "pids.max",
             "devices": "devices.list"}

    def snapshot():
        out = {}
        for h, f in files.items():
            v = rt.cat(f"/sys/fs/cgroup/{h}/system.slice/{unit}/{f}")
            out[f] = sorted(v.splitlines()) if h == "devices" else v
        return out

    before = snapshot()
    assert "c 10:229 rw" in before["devices.list"] and "c 1:3 rwm" in before["devices.list"]
    rt.bed.systemctl("set-property", "--runtime", unit, "DevicePolicy=strict", "MemoryAccounting=yes",
                     "CPUAccounting=yes", "TasksAccounting=yes", check=True)
    after = snapshot()
    if rt.runc_1_1():
        # runc 1.1 wrote the unrounded quota to the file: systemd's re-apply changes it
        assert before.pop("cpu.cfs_quota_us") == "12345" and after.pop("cpu.cfs_quota_us") == "13000"
    assert after == before
    # and the container can still use what it was given
    rt("exec", cid, "sh", "-c", "echo x > /dev/null && head -c1 /dev/zero >/dev/null", check=True)


def test_update_of_the_quota_alone_keeps_the_period(rt):
    cid = rt.new_id("qp")
    rt.start(cid, path=f"system.slice:sdtest:{cid}", resources={"cpu": {"quota": 20000, "period": 50000}})
    unit = f"sdtest-{cid}.scope"
    assert rt.show(unit, "CPUQuotaPerSecUSec")["CPUQuotaPerSecUSec"] == "400ms"
    rt("update", "--cpu-quota", "10000", cid, check=True)
    assert rt.show(unit, "CPUQuotaPerSecUSec")["CPUQuotaPerSecUSec"] == "200ms"
    assert rt.cat(f"/sys/fs/cgroup/cpu/system.slice/{unit}/cpu.cfs_period_us") == "50000"
    assert rt.cat(f"/sys/fs/cgroup/cpu/system.slice/{unit}/cpu.cfs_quota_us") == "10000"
