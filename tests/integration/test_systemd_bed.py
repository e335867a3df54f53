"""The systemd test bed itself (systemdbed.py): systemd 252 really is PID 1 of the bed's container and running, in
hybrid cgroup mode with the v1 controllers, its units get v1 cgroups, the inner ocirun runs from the checkout,
the inner runc's systemd cgroup driver works against it, and a bed leaves nothing behind.

These run against the session's bed (conftest's systemd_bed), except the last, which boots a second bed with
the other outer runtime (ocirun or runc) to check its teardown."""
import json
import os
import subprocess
import uuid

import enginebed
import systemdbed


def host_cgroup(bed, controller, rel=""):
    """The host directory of the bed's cgroup `rel` (a path as the bed sees it) in one hierarchy."""
    return os.path.join("/sys/fs/cgroup", controller, bed.cgroups_path.strip("/"), rel.strip("/"))


def test_systemd_is_pid1_and_the_system_is_up(systemd_bed):
    bed = systemd_bed
    res = bed.run("cat /proc/1/comm; readlink /proc/1/exe; systemctl is-system-running", check=True)
    comm, exe, state = res.stdout.split()
    assert comm == "systemd", res
    assert exe == "/usr/lib/systemd/systemd", res
    assert state in ("running", "degraded"), f"{res}\nfailed units: {bed.list_failed()}"
    # the container's init on the host is that systemd
    with open(f"/proc/{bed.init_pid()}/comm") as f:
        assert f.read().strip() == "systemd"
    # the D-Bus system bus is up with systemd on it (runc's systemd driver talks to systemd through it)
    res = bed.run(["busctl", "--system", "--no-pager", "get-property", "org.freedesktop.systemd1",
                   "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "Version"], check=True)
    assert res.stdout.startswith('s "252'), res
    assert bed.run(["test", "-S", "/run/dbus/system_bus_socket"]).returncode == 0


def test_hybrid_cgroup_layout(systemd_bed):
    bed = systemd_bed
    res = bed.run("for d in '' systemd unified memory pids; do stat -f -c %T /sys/fs/cgroup/$d; done", check=True)
    assert res.stdout.split() == ["tmpfs", "cgroupfs", "cgroup2fs", "cgroupfs", "cgroupfs"], res
    res = bed.run(["cat", "/proc/self/mountinfo"], check=True)
    by_point = {line.split(" - ")[0].split()[4]: line for line in res.stdout.splitlines()}
    assert "name=systemd" in by_point["/sys/fs/cgroup/systemd"], res
    res = bed.run(["cat", "/proc/1/cgroup"], check=True)
    paths = {line.split(":")[1]: line.split(":", 2)[2] for line in res.stdout.splitlines()}
    # systemd's own cgroup is init.scope in the name=systemd hierarchy, the cgroup2 one ("") and the v1
    # controllers it manages
    for hierarchy in ("name=systemd", "", "memory", "pids", "devices"):
        assert paths.get(hierarchy) == "/init.scope", f"{hierarchy!r}:\n{res}"
    # systemd itself knows it runs on cgroup v1
    res = bed.systemctl("show", "-p", "Tainted", "--value", check=True)
    assert "cgroupsv1" in res.stdout.strip().split(":"), res
    # and those are the host's hierarchies: init.scope is below the bed's cgroup there
    for controller in ("systemd", "memory", "unified"):
        with open(os.path.join(host_cgroup(bed, controller, "init.scope"), "cgroup.procs")) as f:
            assert str(bed.init_pid()) in f.read().split(), controller


def test_a_unit_gets_v1_cgroups_with_its_limits(systemd_bed):
    bed = systemd_bed
    # a transient scope: the command sees itself in the scope's memory cgroup, limit applied
    res = bed.run(["systemd-run", "--scope", "-p", "MemoryMax=48M", "sh", "-c",
                   "grep :memory: /proc/self/cgroup; "
                   "cat /sys/fs/cgroup/memory$(grep :memory: /proc/self/cgroup | cut -d: -f3)/memory.limit_in_bytes"],
                  check=True)
    cg, limit = res.stdout.split()
    assert cg.startswith("4:memory:/system.slice/run-") and cg.endswith(".scope"), res
    assert limit == str(48 << 20), res
    # a transient service, seen from the host too
    unit = "bedprobe-" + uuid.uuid4().hex[:8]
    bed.run(["systemd-run", f"--unit={unit}", "-p", "MemoryMax=64M", "sleep", "300"], check=True)
    try:
        res = bed.systemctl("show", unit, "-p", "ActiveState", "-p", "ControlGroup", "-p", "MainPID", check=True)
        props = dict(line.split("=", 1) for line in res.stdout.splitlines())
        assert props["ActiveState"] == "active" and props["ControlGroup"] == f"/system.slice/{unit}.service", res
        inside = f"/sys/fs/cgroup/memory/system.slice/{unit}.service"
        res = bed.run(["cat", f"{inside}/memory.limit_in_bytes", f"{inside}/cgroup.procs"], check=True)
        assert res.stdout.split() == [str(64 << 20), props["MainPID"]], res
        host = host_cgroup(bed, "memory", f"system.slice/{unit}.service")
        with open(os.path.join(host, "memory.limit_in_bytes")) as f:
            assert f.read().strip() == str(64 << 20)
    finally:
        bed.systemctl("stop", unit)
    assert bed.systemctl("is-active", unit).stdout.strip() == "inactive"
    assert not os.path.exists(host)


def test_inner_ocirun_runs_from_the_checkout(systemd_bed, ocirun_bin):
    bed = systemd_bed
    res = bed.run([bed.ocirun_bin, "--version"], check=True)
    host = subprocess.run([ocirun_bin, "--version"], capture_output=True, text=True, check=True)
    assert res.stdout == host.stdout and res.stdout.startswith("ocirun version"), res
    # the checkout and the venv are bind-mounted read-only at their own paths
    res = bed.run(["touch", os.path.join(os.path.dirname(bed.ocirun_bin), "systemdbed-probe")])
    assert res.returncode != 0 and "Read-only file system" in res.stderr, res


def test_inner_runc_systemd_cgroup_driver(systemd_bed):
    bed = systemd_bed
    name = "rc" + uuid.uuid4().hex[:8]
    scope = f"bedtest-{name}.scope"

    def edit(cfg):
        cfg["linux"]["cgroupsPath"] = f"system.slice:bedtest:{name}"
        cfg["linux"].setdefault("resources", {})["memory"] = {"limit": 32 << 20}

    bundle = bed.make_bundle("runc", ["sleep", "300"], edit=edit)
    # the container keeps runc's stdio: files of its own, not this exec's (see SystemdBed.run)
    run = " ".join([*bed.runc, "--systemd-cgroup", "run", "-d", "--bundle", bundle, name])
    res = bed.run(f"{run} </dev/null >{bundle}/runc.out 2>&1; rc=$?; cat {bundle}/runc.out; exit $rc", timeout=30)
    try:
        assert res.returncode == 0, res
        res = bed.systemctl("show", scope, "-p", "ActiveState", "--value", check=True)
        assert res.stdout.strip() == "active", res
        state = bed.run([*bed.runc, "state", name], check=True).stdout
        pid = json.loads(state)["pid"]
        inside = f"/sys/fs/cgroup/memory/system.slice/{scope}"
        res = bed.run(["cat", f"{inside}/memory.limit_in_bytes", f"{inside}/cgroup.procs"], check=True)
        assert res.stdout.split() == [str(32 << 20), str(pid)], res
        with open(os.path.join(host_cgroup(bed, "memory", f"system.slice/{scope}"), "memory.limit_in_bytes")) as f:
            assert f.read().strip() == str(32 << 20)
    finally:
        deleted = bed.run([*bed.runc, "delete", "--force", name], timeout=30)
    assert deleted.returncode == 0, deleted
    assert bed.systemctl("is-active", scope).stdout.strip() == "inactive"
    assert bed.run(["test", "-e", f"/sys/fs/cgroup/memory/system.slice/{scope}"]).returncode == 1


def test_a_bed_writes_nothing_to_the_cache_and_leaves_nothing(systemd_bed, ocirun_bin, runc_bin):
    # the other outer runtime than the session bed's: both boot systemd
    other = runc_bin if os.path.realpath(systemd_bed.outer) != os.path.realpath(runc_bin) else ocirun_bin
    before = {m[0] for m in enginebed.read_mounts()}
    bed = systemdbed.SystemdBed(outer=other, ocirun_bin=ocirun_bin)
    try:
        bed.setup()
        assert bed.state in ("running", "degraded"), bed.failed_units
        res = bed.run("echo probe > /etc/systemdbed-probe && mkdir /var/lib/containers/probe && "
                      "stat -f -c %T / /var/lib/containers /var/lib/containerd", check=True)
        # the rootfs is the overlay, the engines' dirs are the host filesystem the volumes live on
        vol_fs = subprocess.run(["stat", "-f", "-c", "%T", bed.binds["/var/lib/containers"]], capture_output=True,
                                text=True, check=True).stdout.strip()
        assert vol_fs != "overlayfs"
        assert res.stdout.split() == ["overlayfs", vol_fs, vol_fs], res
        # written through the overlay's upper dir, never into the cached rootfs
        with open(bed.host_path("/etc/systemdbed-probe")) as f:
            assert f.read() == "probe\n"
        assert os.path.exists(os.path.join(bed.base, "upper", "etc", "systemdbed-probe"))
        assert not os.path.lexists(os.path.join(bed.cache.rootfs, "etc", "systemdbed-probe"))
        assert os.path.isdir(bed.host_path("/var/lib/containers/probe"))
        assert bed.host_path("/var/lib/containers/probe").startswith(os.path.join(bed.base, "vol") + "/")
        new = [m for m in enginebed.read_mounts() if m[0] not in before]
        assert [(m[1], m[2]) for m in new if m[1].startswith(bed.base)] == [(bed.merged, "overlay")], new
        assert enginebed.cgroup_tree(bed.cgroups_path)
        pid = bed.init_pid()
    finally:
        problems = bed.teardown()
    assert not problems
    assert not bed.leaks()
    assert not os.path.exists(bed.base)
    assert not enginebed.cgroup_tree(bed.cgroups_path)
    assert not systemdbed._alive(pid)
    left = [m for m in enginebed.read_mounts() if m[0] not in before and (bed.base in m[1] or bed.id in m[1])]
    assert not left
