"""The systemd cgroup driver on a cgroup v2 (unified) systemd.

The `systemd_bed_v2` fixture (systemdbed.SystemdBed(cgroup="unified")) boots Debian 12's systemd 252 with only
cgroup2 at /sys/fs/cgroup, so systemd runs in unified mode and ocirun's systemd driver wraps its cgroup v2 manager
(runc 1.1.5 likewise takes its v2 path). This host binds memory, cpu, pids and io to cgroup v1, and the bed's
cgroup2 tree offers no controller at all (systemdbed's module doc says why): what is proven here is what v2 does
without controllers: the scope unit, the process placement, cgroup.freeze, cgroup.kill, the eBPF device
programs (no controller needed) next to systemd's, the refusal of limits whose controller is missing, and
delete. Limits that need memory/cpu/pids/io on v2 are only unit-tested (tests/unit/test_cgroups_systemd.py).

Every test runs for ocirun and runc side by side and asserts the same things; where runc 1.1.5 reaches another
verdict, the test says which and why.
"""
import json
import uuid

import pytest
from systemd_inner import InnerRuntime, cleanup_fixture

RUNTIMES = ("ocirun", "runc")
CG = "/sys/fs/cgroup"
OCIRUN_PROG = "ocirun_devices"   # the name ocirun gives its eBPF device program (ocirun/cgroups/bpf.py)
SYSTEMD_PROG = "sd_devices"      # systemd's

# The eBPF device programs attached directly to a cgroup, as (id, name): run in the bed by the checkout's python.
PROGS = r"""
import json, os, struct, sys
from ocirun.cgroups import bpf
def name(i):
    fd = bpf.fd_by_id(i)
    try:
        ctypes, _ = bpf._libc()
        info = ctypes.create_string_buffer(80)      # struct bpf_prog_info up to name[16] (offset 64)
        attr = bpf._attr(16)
        struct.pack_into("=IIQ", attr, 0, fd, len(info), ctypes.addressof(info))
        bpf.bpf(bpf.BPF_OBJ_GET_INFO_BY_FD, attr)
        return info.raw[64:80].split(b"\0")[0].decode()
    finally:
        os.close(fd)
print(json.dumps([name(i) for i in bpf.attached(sys.argv[1])]))
"""

# Opens each device for reading, then for writing, from inside the container: "<dev> r ok|no w ok|no".
PROBE = ('for d in /dev/fuse /dev/kmsg /dev/null /dev/zero; do r=no; w=no; (true < $d) 2>/dev/null && r=ok; '
         '(true > $d) 2>/dev/null && w=ok; echo "$d r $r w $w"; done')
# /dev/fuse (c 10:229) allowed read-only, /dev/kmsg (c 1:11) made by linux.devices and not allowed at all,
# /dev/null and /dev/zero from the default allow-list
EXPECTED_DEVICES = ["/dev/fuse r ok w no", "/dev/kmsg r no w no", "/dev/null r ok w ok", "/dev/zero r ok w ok"]


@pytest.fixture(params=RUNTIMES)
def rt(request, systemd_bed_v2):
    return Inner(systemd_bed_v2, request.param)


class Inner(InnerRuntime):
    """One runtime inside the unified bed: containers have a cgroup namespace and cgroupsPath
    system.slice:sdv2:<id> unless told otherwise; start() returns the unit."""

    def __init__(self, bed, name):
        super().__init__(bed, name, id_prefix="sdv2")

    def bundle(self, cid, path=None, cgroupns=True, **kw):
        return super().bundle(cid, path=path if path is not None else f"system.slice:sdv2:{cid}",
                              cgroupns=cgroupns, **kw)

    def start(self, cid, **kw):
        super().start(cid, **kw)
        return f"sdv2-{cid}.scope"

    def progs(self, unit):
        res = self.bed.run([self.bed.ocirun_bin.rsplit("/", 1)[0] + "/python", "-c", PROGS,
                            f"{CG}/system.slice/{unit}"], check=True)
        return json.loads(res.stdout)

    def assert_gone(self, cid, unit):
        """No unit, no cgroup, no state."""
        assert self.show(unit, "LoadState")["LoadState"] == "not-found"
        assert not self.exists(f"{CG}/system.slice/{unit}")
        assert not self.listed(cid)


@pytest.fixture(autouse=True)
def _cleanup(request):
    yield
    cleanup_fixture(request)


def test_the_bed_is_unified_with_no_controllers(systemd_bed_v2):
    """systemd runs in unified mode: /sys/fs/cgroup is cgroup2 (only), systemd put itself in /init.scope there and
    its units in slices; the tree offers no controller."""
    bed = systemd_bed_v2
    assert bed.run(["stat", "-f", "-c", "%T", CG], check=True).stdout == "cgroup2fs\n"
    mounts = bed.run("grep ' /sys/fs/cgroup' /proc/self/mounts", check=True).stdout.splitlines()
    assert [m.split()[1:3] for m in mounts] == [[CG, "cgroup2"]], mounts
    assert "0::/init.scope" in bed.run(["cat", "/proc/1/cgroup"], check=True).stdout.splitlines()
    assert bed.systemctl("show", "-pControlGroup", "dbus.service", check=True).stdout == (
        "ControlGroup=/system.slice/dbus.service\n")
    assert bed.run(["test", "-d", f"{CG}/system.slice/dbus.service"]).returncode == 0
    assert bed.run(["cat", f"{CG}/cgroup.controllers", f"{CG}/system.slice/cgroup.controllers"],
                   check=True).stdout.strip() == ""


def test_scope_of_a_container_without_resources(rt):
    """create/start with --systemd-cgroup: the scope is active in its slice, delegated, and holds the init."""
    cid = rt.new_id("run")
    unit = rt.start(cid)
    p = rt.show(unit, "ActiveState", "Slice", "Delegate", "ControlGroup", "DefaultDependencies")
    assert p == {"ActiveState": "active", "Slice": "system.slice", "Delegate": "yes",
                 "ControlGroup": f"/system.slice/{unit}", "DefaultDependencies": "no"}
    pid = rt.pid(cid)
    assert rt.cat(f"{CG}/system.slice/{unit}/cgroup.procs").split() == [str(pid)]
    # the runtime took its cgroup v2 path: the state records the one unified directory
    state = json.loads(rt.cat(f"{rt.bed.runtime(rt.name)[2]}/{cid}/state.json"))
    if rt.name == "ocirun":
        assert state["cgroup"]["version"] == 2 and state["cgroup"]["systemd"]["unit"] == unit
        assert state["cgroup"]["path"] == f"{CG}/system.slice/{unit}"
    else:
        assert state["cgroup_paths"] == {"": f"{CG}/system.slice/{unit}"}
    # on the host: the scope is in the host's cgroup2 tree, below the bed's cgroup there
    assert rt.bed.init_cgroup2() == rt.bed.outer_cgroups_path + "/init.scope"
    with open(f"/sys/fs/cgroup/unified{rt.bed.outer_cgroups_path}/system.slice/{unit}/cgroup.procs") as f:
        assert len(f.read().split()) == 1
    # from inside, with the spec's cgroup namespace: the scope is its root
    assert rt("exec", cid, "cat", "/proc/self/cgroup", check=True).stdout.splitlines()[-1] == "0::/"


def test_proc_self_cgroup_without_a_cgroup_namespace(rt):
    cid = rt.new_id("nons")
    unit = rt.start(cid, cgroupns=False)
    lines = rt("exec", cid, "cat", "/proc/self/cgroup", check=True).stdout.splitlines()
    assert f"0::/system.slice/{unit}" in lines, lines


def test_a_new_nested_slice_is_made_by_systemd(rt):
    cid = rt.new_id("sl")
    slice_ = f"sdv2-{rt.name}.slice"
    unit = rt.start(cid, path=f"{slice_}:sdv2:{cid}")
    assert rt.show(slice_, "ActiveState")["ActiveState"] == "active"
    assert rt.show(unit, "Slice", "ControlGroup") == {"Slice": slice_,
                                                     "ControlGroup": f"/sdv2.slice/{slice_}/{unit}"}
    assert rt.cat(f"{CG}/sdv2.slice/{slice_}/{unit}/cgroup.procs").split() == [str(rt.pid(cid))]
    r = rt("delete", "--force", cid)
    assert r.returncode == 0 and r.stderr == "", r
    assert rt.show(unit, "LoadState")["LoadState"] == "not-found"
    assert not rt.exists(f"{CG}/sdv2.slice/{slice_}/{unit}")


def test_pause_resume_ps_exec_events(rt):
    cid = rt.new_id("ops")
    unit = rt.start(cid)
    d = f"{CG}/system.slice/{unit}"
    rt("exec", "-d", cid, "sleep", "999", check=True)
    pids = json.loads(rt("ps", "--format", "json", cid, check=True).stdout)
    # exec joined the scope: both processes are in its cgroup.procs
    assert len(pids) == 2 and sorted(pids) == sorted(map(int, rt.cat(f"{d}/cgroup.procs").split())), pids
    rt("pause", cid, check=True)
    assert rt.cat(f"{d}/cgroup.freeze") == "1"
    assert "frozen 1" in rt.cat(f"{d}/cgroup.events").splitlines()
    assert json.loads(rt("state", cid, check=True).stdout)["status"] == "paused"
    rt("resume", cid, check=True)
    assert rt.cat(f"{d}/cgroup.freeze") == "0"
    assert "frozen 0" in rt.cat(f"{d}/cgroup.events").splitlines()
    assert json.loads(rt("state", cid, check=True).stdout)["status"] == "running"
    # systemd does not know about a freeze it did not make
    assert rt.show(unit, "FreezerState")["FreezerState"] == "running"
    # no controller: v2 still keeps cpu.stat (usage) for every cgroup. (runc 1.1.5 also reports pids.current,
    # counted from cgroup.procs when pids.current is missing, and zeroed memory/cpuset records; ocirun reports
    # what the files say: cpu only)
    ev = json.loads(rt("events", "--stats", cid, check=True).stdout)
    assert ev["type"] == "stats" and ev["id"] == cid and ev["data"]["cpu"]["usage"]["total"] > 0, ev
    if rt.name == "runc":
        assert ev["data"]["pids"]["current"] == 2, ev
    else:
        assert "memory" not in ev["data"] and "pids" not in ev["data"], ev


def test_kill_all_empties_the_scope(rt):
    cid = rt.new_id("kall")
    unit = rt.start(cid)
    d = f"{CG}/system.slice/{unit}"
    rt("exec", "-d", cid, "sleep", "999", check=True)
    assert len(rt.cat(f"{d}/cgroup.procs").split()) == 2
    rt("kill", "--all", cid, "KILL", check=True)
    rt.wait_status(cid, "stopped")
    # the scope emptied: systemd stops it and removes its cgroup
    rt.bed.run(f"for i in $(seq 100); do [ -e {d} ] || exit 0; sleep 0.1; done; exit 1", check=True)
    r = rt("delete", cid)
    assert r.returncode == 0 and r.stderr == "", r
    rt.assert_gone(cid, unit)


def test_delete_of_a_stopped_container(rt):
    cid = rt.new_id("del")
    unit = rt.start(cid)
    assert rt.show(unit, "ActiveState")["ActiveState"] == "active"
    rt("kill", cid, "KILL", check=True)
    rt.wait_status(cid, "stopped")
    r = rt("delete", cid)
    assert r.returncode == 0 and r.stderr == "", r
    rt.assert_gone(cid, unit)


def test_delete_force_of_a_running_container(rt):
    cid = rt.new_id("dfo")
    unit = rt.start(cid)
    rt("exec", "-d", cid, "sleep", "999", check=True)
    r = rt("delete", "--force", cid)
    assert r.returncode == 0 and r.stderr == "", r
    rt.assert_gone(cid, unit)


def test_delete_force_of_a_paused_container(rt):
    cid = rt.new_id("dfp")
    unit = rt.start(cid)
    rt("pause", cid, check=True)
    r = rt("delete", "--force", cid)
    assert r.returncode == 0 and r.stderr == "", r
    rt.assert_gone(cid, unit)


# resources, the field ocirun names, what it says it cannot write, the controller, the file runc opens
LIMITS = {
    "memory": ({"memory": {"limit": 64 << 20}}, "linux.resources.memory.limit", "memory.max", "memory",
               "memory.max"),
    "pids": ({"pids": {"limit": 50}}, "linux.resources.pids.limit", "pids.max", "pids", "pids.max"),
    "cpu": ({"cpu": {"quota": 20000, "period": 100000}}, "linux.resources.cpu.quota", "cpu.*", "cpu", "cpu.max"),
}


@pytest.mark.parametrize("limit", sorted(LIMITS))
def test_a_limit_without_its_controller_is_refused(rt, limit):
    """systemd takes MemoryMax/TasksMax/CPUQuota without the controller (see the next test), but the cgroup gets no
    such file: the runtime refuses the container, and nothing is left (no unit, no cgroup, no state)."""
    res, field, fname, ctrl, runc_file = LIMITS[limit]
    cid = rt.new_id("lim")
    b = rt.bundle(cid, resources=res)
    r = rt("run", "-d", "--bundle", b, cid)
    unit = f"sdv2-{cid}.scope"
    assert r.returncode != 0, r
    if rt.name == "ocirun":
        assert r.stderr.splitlines() == [
            f"ocirun: {field}: cannot write {fname}: cgroup controller {ctrl} is not available in "
            f"{CG}/system.slice/{unit} (missing from cgroup.controllers)"], r
    else:
        # runc 1.1.5 writes the file and reports the open's error, no field named
        assert f"{CG}/system.slice/{unit}/{runc_file}: no such file or directory" in r.stderr, r
    rt.assert_gone(cid, unit)


def test_properties_without_controllers_stay_on_paper(rt):
    """Unit properties given as annotations go to systemd only: systemd 252 accepts TasksMax and MemoryMax with no
    pids or memory controller (it has nothing to count: TasksCurrent/MemoryCurrent are not set) and writes no
    file; the container runs."""
    cid = rt.new_id("ann")
    unit = rt.start(cid, annotations={"org.systemd.property.TasksMax": "uint64 50",
                                      "org.systemd.property.MemoryMax": "uint64 67108864"})
    p = rt.show(unit, "ActiveState", "TasksMax", "MemoryMax", "TasksCurrent", "MemoryCurrent")
    assert p == {"ActiveState": "active", "TasksMax": "50", "MemoryMax": "67108864", "TasksCurrent": "[not set]",
                 "MemoryCurrent": "[not set]"}
    d = f"{CG}/system.slice/{unit}"
    assert rt.cat(f"{d}/cgroup.controllers") == ""
    assert not rt.exists(f"{d}/pids.max") and not rt.exists(f"{d}/memory.max")
    rt("exec", cid, "true", check=True)


def test_update_of_a_limit_without_its_controller(rt):
    """update --pids-limit: refused (no pids.max), the container keeps running. ocirun: one line naming the field,
    and the unit keeps the TasksMax it had (nothing of the refused update is left). runc 1.1.5 sets the unit's
    TasksMax first, then fails on the file, and leaves the unit saying 80."""
    cid = rt.new_id("upd")
    unit = rt.start(cid, annotations={"org.systemd.property.TasksMax": "uint64 50"})
    r = rt("update", "--pids-limit", "80", cid)
    assert r.returncode != 0, r
    if rt.name == "ocirun":
        assert r.stderr.splitlines() == [
            f"ocirun: linux.resources.pids.limit: cannot write pids.max: cgroup controller pids is not available "
            f"in {CG}/system.slice/{unit} (missing from cgroup.controllers)"], r
        assert rt.show(unit, "TasksMax")["TasksMax"] == "50"
    else:
        assert f"{CG}/system.slice/{unit}/pids.max: no such file or directory" in r.stderr, r
        assert rt.show(unit, "TasksMax")["TasksMax"] == "80"
    assert json.loads(rt("state", cid, check=True).stdout)["status"] == "running"
    rt("exec", cid, "true", check=True)


def test_device_rules_with_systemd_reapplying_its_program(rt):
    """linux.resources.devices on v2: the runtime's eBPF program. /dev/fuse is allowed read-only, /dev/kmsg (made
    by linux.devices) not at all, the defaults (null, zero: a rule denying zero is overridden by them) rw. systemd
    gets DevicePolicy=strict and the allow-list; the runtime's program replaces the one systemd attached at the
    start (ocirun and runc 1.1.5 both replace the programs attached to the cgroup). `set-property
    DevicePolicy=strict` makes systemd attach its own again, next to the runtime's; with DevicePolicy=auto and no
    DeviceAllow systemd removes its program, and the runtime's alone still enforces the rules."""
    cid = rt.new_id("dev")
    node = {"type": "c", "fileMode": 0o666, "uid": 0, "gid": 0}
    unit = rt.start(cid, devices=[dict(node, path="/dev/fuse", major=10, minor=229),
                                  dict(node, path="/dev/kmsg", major=1, minor=11)],
                    resources={"devices": [{"allow": False, "access": "rwm"},
                                           {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "r"},
                                           # (the default allow-list comes after the config's rules, as runc
                                           # appends it: this deny of /dev/zero is undone by it)
                                           {"allow": False, "type": "c", "major": 1, "minor": 5, "access": "rwm"}]})

    def probe():
        return rt("exec", cid, "sh", "-c", PROBE, check=True).stdout.splitlines()

    p = rt.show(unit, "DevicePolicy")
    assert p["DevicePolicy"] == "strict"
    allow = rt.bed.systemctl("show", unit, "-pDeviceAllow", check=True).stdout.splitlines()
    assert "DeviceAllow=/dev/char/10:229 r" in allow and "DeviceAllow=/dev/char/1:5 rwm" in allow, allow
    assert not any("1:11" in a for a in allow), allow
    progs = rt.progs(unit)
    assert len(progs) == 1 and progs[0] != SYSTEMD_PROG, progs
    if rt.name == "ocirun":
        assert progs == [OCIRUN_PROG]
    assert probe() == EXPECTED_DEVICES

    rt.bed.systemctl("set-property", "--runtime", unit, "DevicePolicy=strict", check=True)
    assert sorted(rt.progs(unit)) == sorted(progs + [SYSTEMD_PROG])
    assert probe() == EXPECTED_DEVICES

    rt.bed.systemctl("set-property", "--runtime", unit, "DevicePolicy=auto", "DeviceAllow=", check=True)
    assert rt.progs(unit) == progs
    assert probe() == EXPECTED_DEVICES
