"""config-linux.md: namespaces, id mappings, time offsets, devices, cgroups, sysctl, seccomp, propagation,
masked/readonly paths, personality, memory policy, intelRdt, netDevices, default filesystems."""
import json
import os
import socket
import subprocess
import threading
import time

import pytest

from conformance import host
from conformance import rootless
from conformance.conftest import CGROUP_PREFIX, cgroup_read, cgroups_of

NS_PROBE = {"pid": "pid", "network": "net", "ipc": "ipc", "uts": "uts", "mount": "mnt", "cgroup": "cgroup",
            "user": "user", "time": "time"}
MAPPING = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def with_ns(cfg, kind, path=None, drop=False):
    ns = [n for n in cfg["linux"]["namespaces"] if n["type"] != kind]
    if not drop:
        ns.append({"type": kind, **({"path": path} if path else {})})
    cfg["linux"]["namespaces"] = ns
    if kind == "user" and not drop and not path:
        if rootless.active():  # an unprivileged caller maps itself (rootless.finish_config adds its subids)
            rootless.map_caller(cfg)
            return
        cfg["linux"]["uidMappings"] = MAPPING
        cfg["linux"]["gidMappings"] = MAPPING


def mount_at(data, path):
    found = [m for m in data["mounts"] if m["mountpoint"] == path]
    assert found, f"nothing mounted at {path}"
    return found[-1]


@pytest.fixture
def ns_holder(oci):
    """holder(flags) -> pid of a process in fresh namespaces (unshare(1) flags), killed at teardown."""
    def make(*flags):
        p = subprocess.Popen(rootless.unshare_argv(*flags) + ["sleep", "300"])
        oci.add_cleanup(lambda: (p.kill(), p.wait()))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if os.readlink(f"/proc/{p.pid}/exe").endswith("sleep"):
                    break
            except OSError:
                pass
            time.sleep(0.02)
        return p.pid
    return make


# ------------------------------------------------------------------------------------------------ namespaces
@pytest.mark.parametrize("kind", list(NS_PROBE))
def test_namespace_created_when_no_path(oci, kind):
    """If path is not specified, the runtime MUST create a new container namespace of type type.

    [MUST] config-linux.md#configLinuxNamespaces
    """
    host.require_ns(NS_PROBE[kind])
    data = oci.probe(edit=lambda c: with_ns(c, kind))
    assert data["namespaces"][NS_PROBE[kind]] != host.self_ns(NS_PROBE[kind]), f"no new {kind} namespace"


@pytest.mark.parametrize("kind,flags", [("network", ["--net"]), ("ipc", ["--ipc"]), ("uts", ["--uts"]),
                                        ("cgroup", ["--cgroup"]), ("pid", ["--pid", "--fork"]),
                                        ("time", ["--time", "--fork"]), ("user", ["--user", "--map-root-user"])])
def test_namespace_path_joined(oci, ns_holder, kind, flags):
    """The runtime MUST place the container process in the namespace associated with that path.

    [MUST] config-linux.md#configLinuxNamespaces
    """
    host.require_ns(NS_PROBE[kind])
    pid = ns_holder(*flags)
    nsfile = "pid_for_children" if kind == "pid" and False else NS_PROBE[kind]
    if kind in ("pid", "time"):  # unshare --fork: the namespace is the child's; find it
        kids = open(f"/proc/{pid}/task/{pid}/children").read().split()
        pid = int(kids[0]) if kids else pid
    target = os.readlink(f"/proc/{pid}/ns/{nsfile}")

    def edit(c):
        with_ns(c, kind, path=f"/proc/{pid}/ns/{nsfile}")
        if rootless.active():  # the holder's namespaces belong to its user namespace: join that too
            rootless.join_holder_userns(c, pid)
        elif kind == "user":
            c["linux"].pop("uidMappings", None)
            c["linux"].pop("gidMappings", None)
    data = oci.probe(edit=edit)
    assert data["namespaces"][NS_PROBE[kind]] == target, f"{kind}: {data['namespaces'][NS_PROBE[kind]]} != {target}"


def test_namespace_path_of_wrong_type_errors(oci, ns_holder):
    """The runtime MUST generate an error if path is not associated with a namespace of type type.

    [MUST] config-linux.md#configLinuxNamespaces
    """
    pid = ns_holder("--ipc")

    def edit(c):
        with_ns(c, "network", path=f"/proc/{pid}/ns/ipc")
        rootless.join_holder_userns(c, pid)  # rootless: joining is allowed, so only the type can be wrong
    c = oci.create(edit=edit, expect_ok=False)
    assert not c.create_result.ok, "a network namespace entry accepted an ipc namespace path"


def test_namespace_path_must_be_absolute(oci):
    """path: This value MUST be an absolute path in the runtime mount namespace.

    [MUST] config-linux.md#configLinuxNamespaces
    """
    c = oci.create(edit=lambda c: with_ns(c, "network", path="proc/1/ns/net"), expect_ok=False)
    assert not c.create_result.ok


@pytest.mark.parametrize("kind", ["network", "ipc", "uts", "pid", "cgroup"])
def test_namespace_inherited_when_not_listed(oci, kind):
    """If a namespace type is not specified in the namespaces array, the container MUST inherit the runtime
    namespace of that type.

    [MUST] config-linux.md#configLinuxNamespaces
    """
    def edit(c):
        with_ns(c, kind, drop=True)
        if kind == "uts":
            c.pop("hostname", None)
        if kind == "network":  # sysfs cannot be mounted without owning a net ns
            c["mounts"] = [m for m in c["mounts"] if m["type"] != "sysfs"]
        if rootless.active() and kind == "ipc":  # nor mqueue without owning the ipc ns (the host's is root's)
            c["mounts"] = [m for m in c["mounts"] if m["type"] != "mqueue"]
        if rootless.active() and kind == "pid":  # nor proc without owning the pid ns: the host's, bound
            c["mounts"] = [dict(m, type="bind", source="/proc", options=["rbind", "nosuid", "noexec", "nodev"])
                           if m["type"] == "proc" else m for m in c["mounts"]]
    data = oci.probe(edit=edit)
    assert data["namespaces"][NS_PROBE[kind]] == host.self_ns(NS_PROBE[kind])


def test_namespace_duplicate_type_errors(oci):
    """If a namespaces field contains duplicated namespaces with same type, the runtime MUST generate an error.

    [MUST] config-linux.md#configLinuxNamespaces
    """
    c = oci.create(edit=lambda c: c["linux"]["namespaces"].append({"type": "ipc"}), expect_ok=False)
    assert not c.create_result.ok


# ------------------------------------------------------------------------------------------------ user ns
def test_user_namespace_mappings(oci):
    """uidMappings / gidMappings describe the user namespace uid/gid mappings from the host to the container.

    [MUST] config-linux.md#configLinuxUserNamespaceMappings
    """
    host.require_ns("user")

    def edit(c):
        with_ns(c, "user")
        # distinct uid and gid mappings, so that one written in place of the other is seen
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
        if rootless.active():  # the caller as 0 and its subordinate ranges (newuidmap): uid and gid ranges differ
            c["linux"]["uidMappings"], c["linux"]["gidMappings"] = rootless.subordinate_mappings()
    b = oci.bundle(["/probe", "--file", "/proc/self/uid_map", "--file", "/proc/self/gid_map"], edit=edit)
    data = oci.probe(bundle=b)
    if rootless.active():
        for f, key in (("/proc/self/uid_map", "uidMappings"), ("/proc/self/gid_map", "gidMappings")):
            want = [[str(m["containerID"]), str(m["hostID"]), str(m["size"])] for m in b.config["linux"][key]]
            got = [line.split() for line in data["files"][f].splitlines() if line.strip()]
            assert got == want, f"{f}: {data['files'][f]!r}, configured {want}"
        assert (data["uid"], data["gid"]) == (0, 0)
        return
    for f, host_id in (("/proc/self/uid_map", "100000"), ("/proc/self/gid_map", "200000")):
        assert data["files"][f].split() == ["0", host_id, "65536"], f"{f}: {data['files'][f]!r}"
    assert (data["uid"], data["gid"]) == (0, 0)


def test_user_namespace_no_rootfs_chown(oci):
    """The runtime SHOULD NOT modify the ownership of referenced filesystems to realize the mapping.

    [SHOULD] config-linux.md#configLinuxUserNamespaceMappings
    """
    host.require_ns("user")
    b = oci.bundle(["/probe"], edit=lambda c: with_ns(c, "user"))
    before = os.stat(os.path.join(b.rootfs, "probe"))
    oci.probe(bundle=b)
    after = os.stat(os.path.join(b.rootfs, "probe"))
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)


def test_time_offsets(oci):
    """timeOffsets sets the offset for the time namespace: secs/nanosecs per clock (monotonic, boottime).

    [MUST] config-linux.md#configLinuxTimeOffset
    """
    host.require_ns("time")
    off = 1_000_000

    def edit(c):
        with_ns(c, "time")
        c["linux"]["timeOffsets"] = {"monotonic": {"secs": off}, "boottime": {"secs": 2 * off}}
    before = time.clock_gettime(time.CLOCK_MONOTONIC)
    data = oci.probe(edit=edit)
    assert data["clock"]["monotonic"] >= before + off - 5, data["clock"]
    assert data["clock"]["boottime"] >= time.clock_gettime(time.CLOCK_BOOTTIME) + 2 * off - 60, data["clock"]


# ------------------------------------------------------------------------------------------------ devices
def test_devices_created(oci):
    """devices (array of objects) lists devices that MUST be available in the container (type, major, minor,
    fileMode, uid, gid).

    [MUST] config-linux.md#configLinuxDevices
    """
    rootless.require_mknod("device nodes of the config's own type, numbers, mode and owner")
    devs = [{"path": "/dev/cfchar", "type": "c", "major": 1, "minor": 11, "fileMode": 0o640, "uid": 12, "gid": 34},
            {"path": "/dev/cfblock", "type": "b", "major": 7, "minor": 200, "fileMode": 0o600, "uid": 0, "gid": 0},
            {"path": "/dev/cffifo", "type": "p", "fileMode": 0o644},
            {"path": "/dev/cfunbuf", "type": "u", "major": 1, "minor": 5, "fileMode": 0o666}]

    def edit(c):
        c["linux"]["devices"] = devs
        c["linux"]["resources"] = {"devices": [{"allow": True, "access": "rwm"}]}
    data = oci.probe(*sum((["--dev", d["path"]] for d in devs), []), edit=edit)
    for d in devs:
        st = data["devices"][d["path"]]
        assert st, f"{d['path']} missing"
        assert st["type"] == {"u": "c"}.get(d["type"], d["type"]), (d, st)
        if d["type"] != "p":
            assert (st["major"], st["minor"]) == (d["major"], d["minor"]), (d, st)
        assert st["mode"] & 0o777 == d["fileMode"], (d, oct(st["mode"]))
        assert (st["uid"], st["gid"]) == (d.get("uid", 0), d.get("gid", 0)), (d, st)


def test_device_outside_dev(oci):
    """path: The path MAY be anywhere in the container filesystem, notably outside of /dev (and MUST be
    available there).

    [MUST] config-linux.md#configLinuxDevices
    """
    rootless.require_mknod("a device node outside /dev")
    data = oci.probe("--dev", "/mydevs/null2", edit=lambda c: c["linux"].update(
        devices=[{"path": "/mydevs/null2", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666}]))
    st = data["devices"]["/mydevs/null2"]
    assert st and (st["type"], st["major"], st["minor"]) == ("c", 1, 3), st


def test_device_path_conflict_errors(oci):
    """If a file already exists at path that does not match the requested device, the runtime MUST generate an
    error.

    [MUST] config-linux.md#configLinuxDevices
    """
    rootless.require_mknod("a device refused for the file at its path (made-up nodes fail rootless anyway, so a "
                           "refusal proves nothing)")
    b = oci.bundle(["/probe"], edit=lambda c: c["linux"].update(
        devices=[{"path": "/mydevs/thing", "type": "c", "major": 1, "minor": 3}]))
    os.makedirs(os.path.join(b.rootfs, "mydevs"))
    with open(os.path.join(b.rootfs, "mydevs", "thing"), "w") as f:
        f.write("a regular file")
    c = oci.create(b, expect_ok=False)
    assert not c.create_result.ok, "create replaced/ignored a regular file at a device path"


DEFAULT_DEVICES = {"/dev/null": (1, 3), "/dev/zero": (1, 5), "/dev/full": (1, 7), "/dev/random": (1, 8),
                   "/dev/urandom": (1, 9), "/dev/tty": (5, 0)}


@pytest.mark.parametrize("path", sorted(DEFAULT_DEVICES))
def test_default_device(oci, path):
    """In addition to any devices configured with this setting, the runtime MUST also supply /dev/null,
    /dev/zero, /dev/full, /dev/random, /dev/urandom, /dev/tty.

    [MUST] config-linux.md#configLinuxDefaultDevices
    """
    data = oci.probe("--dev", path, "--path", path)
    st = data["devices"][path]
    assert st and (st["type"], st["major"], st["minor"]) == ("c", *DEFAULT_DEVICES[path]), st
    if path != "/dev/tty":
        assert data["paths"][path].get("readable"), data["paths"][path]


def test_default_device_ptmx(oci):
    """The runtime MUST also supply /dev/ptmx: a bind-mount or symlink of the container's /dev/pts/ptmx.

    [MUST] config-linux.md#configLinuxDefaultDevices
    """
    data = oci.probe("--dev", "/dev/ptmx")
    st = data["devices"]["/dev/ptmx"]
    assert st, "/dev/ptmx missing"
    if st["type"] == "l":
        assert st["link"] in ("pts/ptmx", "/dev/pts/ptmx"), st
    else:
        assert any(m["mountpoint"] == "/dev/ptmx" for m in data["mounts"]) and st["type"] == "c", st


def test_default_filesystems(oci):
    """The following filesystems SHOULD be made available in each container's filesystem: /proc (proc), /sys
    (sysfs), /dev/pts (devpts), /dev/shm (tmpfs).

    [SHOULD] config-linux.md#configLinuxDefaultFilesystems
    """
    data = oci.probe()
    for path, fstype in (("/proc", "proc"), ("/sys", "sysfs"), ("/dev/pts", "devpts"), ("/dev/shm", "tmpfs")):
        assert mount_at(data, path)["fstype"] == fstype


# ------------------------------------------------------------------------------------------------ cgroups
def cg_edit(oci, resources, suffix="r"):
    path = f"/{CGROUP_PREFIX}-{oci.tag}-{suffix}"  # directly under the root: no parent limits in the way

    def edit(c):
        c["linux"]["cgroupsPath"] = path
        c["linux"]["resources"] = resources
    return path, edit


def created_with(oci, resources, suffix="r", expect_ok=True):
    path, edit = cg_edit(oci, resources, suffix)
    c = oci.create(args=["/probe"], edit=edit, expect_ok=expect_ok)
    return c, path


def test_cgroups_path_absolute(oci):
    """In the case of an absolute path (starting with /), the runtime MUST take the path to be relative to the
    cgroups mount point.

    [MUST] config-linux.md#configLinuxCgroupsPath
    """
    rootless.require_cgroup("pids", "a cgroupsPath with a pids limit")
    c, path = created_with(oci, {"pids": {"limit": 100}})
    cgs = cgroups_of(c.state()["pid"])
    placed = [k for k, v in cgs.items() if v == path]
    assert placed, f"not placed at {path}: {cgs}"
    if "pids" in host.cgroup_v1_controllers():
        assert cgs.get("pids") == path


def test_cgroups_path_relative_applies_resources(oci):
    """cgroupsPath: in the case of a relative path the runtime MAY interpret it relative to a runtime-determined
    location; the resources MUST still be applied there.

    [MUST] config-linux.md#configLinuxCgroupsPath
    """
    host.require_controller("pids")
    rootless.require_cgroup("pids", "a relative cgroupsPath with a pids limit")
    c = oci.create(edit=lambda c: c["linux"].update(cgroupsPath=f"{CGROUP_PREFIX}-{oci.tag}-rel",
                                                     resources={"pids": {"limit": 77}}))
    version, text = cgroup_read(c.state()["pid"], "pids", "pids.max", "pids.max")
    assert text == "77", f"pids.max {text!r} with a relative cgroupsPath"
    assert any(p.endswith(f"{CGROUP_PREFIX}-{oci.tag}-rel") for p in cgroups_of(c.state()["pid"]).values())


def test_cgroups_path_consistent(oci):
    """If the value is specified, the runtime MUST consistently attach to the same place in the cgroups
    hierarchy given the same value of cgroupsPath.

    [MUST] config-linux.md#configLinuxCgroupsPath
    """
    rootless.require_cgroup("pids", "a cgroupsPath with a pids limit")
    c1, path = created_with(oci, {"pids": {"limit": 100}}, "same")
    first = cgroups_of(c1.state()["pid"])
    oci.rt.kill(c1.id, "KILL")
    c1.wait_stopped()
    assert oci.rt.delete(c1.id).ok
    c2, _ = created_with(oci, {"pids": {"limit": 100}}, "same")
    assert cgroups_of(c2.state()["pid"]) == first


CGROUP_CASES = {
    # name: (controller, resources, v1 file, v2 file, expected v1, expected v2)
    "memory.limit": ("memory", {"memory": {"limit": 67108864}}, "memory.limit_in_bytes", "memory.max",
                     "67108864", "67108864"),
    "memory.reservation": ("memory", {"memory": {"limit": 67108864, "reservation": 33554432}},
                           "memory.soft_limit_in_bytes", "memory.low", "33554432", "33554432"),
    "memory.swap": ("memory", {"memory": {"limit": 67108864, "swap": 134217728}},
                    "memory.memsw.limit_in_bytes", "memory.swap.max", "134217728", "67108864"),
    "memory.swappiness": ("memory", {"memory": {"swappiness": 33}}, "memory.swappiness", None, "33", None),
    "memory.disableOOMKiller": ("memory", {"memory": {"limit": 67108864, "disableOOMKiller": True}},
                                "memory.oom_control", None, "oom_kill_disable 1", None),
    "cpu.shares": ("cpu", {"cpu": {"shares": 512}}, "cpu.shares", "cpu.weight", "512", None),
    "cpu.quota": ("cpu", {"cpu": {"quota": 50000, "period": 100000}}, "cpu.cfs_quota_us", "cpu.max",
                  "50000", "50000 100000"),
    "cpu.period": ("cpu", {"cpu": {"quota": 20000, "period": 200000}}, "cpu.cfs_period_us", "cpu.max",
                   "200000", "20000 200000"),
    "cpu.burst": ("cpu", {"cpu": {"quota": 50000, "period": 100000, "burst": 10000}}, "cpu.cfs_burst_us",
                  "cpu.max.burst", "10000", "10000"),
    "cpu.realtimeRuntime": ("cpu", {"cpu": {"realtimeRuntime": 1000, "realtimePeriod": 1000000}},
                            "cpu.rt_runtime_us", None, "1000", None),
    "cpu.realtimePeriod": ("cpu", {"cpu": {"realtimeRuntime": 1000, "realtimePeriod": 500000}},
                           "cpu.rt_period_us", None, "500000", None),
    "cpu.idle": ("cpu", {"cpu": {"idle": 1}}, "cpu.idle", "cpu.idle", "1", "1"),
    "cpuset.cpus": ("cpuset", {"cpu": {"cpus": "0"}}, "cpuset.cpus", "cpuset.cpus", "0", "0"),
    "cpuset.mems": ("cpuset", {"cpu": {"mems": "0"}}, "cpuset.mems", "cpuset.mems", "0", "0"),
    "pids.limit": ("pids", {"pids": {"limit": 42}}, "pids.max", "pids.max", "42", "42"),
    "blockIO.weight": ("blkio", {"blockIO": {"weight": 300}}, "blkio.weight", "io.weight", "300", None),
    "blockIO.throttleReadBps": ("blkio", {"blockIO": {"throttleReadBpsDevice": [{"major": -1, "minor": -1, "rate": 1048576}]}},
                                "blkio.throttle.read_bps_device", "io.max", "{dev} 1048576", "rbps=1048576"),
    "blockIO.throttleWriteIOPS": ("blkio", {"blockIO": {"throttleWriteIOPSDevice": [{"major": -1, "minor": -1, "rate": 300}]}},
                                  "blkio.throttle.write_iops_device", "io.max", "{dev} 300", "wiops=300"),
}


def _root_block_device():
    st = os.stat("/")
    major, minor = os.major(st.st_dev), os.minor(st.st_dev)
    if os.path.exists(f"/sys/dev/block/{major}:{minor}"):
        return major, minor
    return None


@pytest.mark.parametrize("case", sorted(CGROUP_CASES))
def test_cgroup_resource_applied(oci, case):
    """resources: the runtime MUST create the container's environment (cgroup limits) according to config.json;
    if it cannot apply a property it MUST generate an error.

    [MUST] config-linux.md#configLinuxControlGroups
    """
    ctrl, resources, v1f, v2f, want1, want2 = CGROUP_CASES[case]
    resources = json.loads(json.dumps(resources))
    host.require_controller(ctrl)
    rootless.require_cgroup(ctrl, f"the {case} limit")
    host.require_v1_file(ctrl, v1f) if ctrl in host.cgroup_v1_controllers() else None
    dev = None
    if case.startswith("blockIO.throttle"):
        dev = _root_block_device()
        if not dev:
            pytest.skip("host: no block device backs / to throttle")
        for v in resources["blockIO"].values():
            for e in v:
                e["major"], e["minor"] = dev
    if case == "cpu.realtimeRuntime" or case == "cpu.realtimePeriod":
        pass
    c, _ = created_with(oci, resources)
    version, text = cgroup_read(c.state()["pid"], ctrl, v1f, v2f)
    assert version, f"no {v1f}/{v2f} in the container's cgroups {cgroups_of(c.state()['pid'])}"
    want = want1 if version == "v1" else want2
    if want is None:
        return
    want = want.replace("{dev}", f"{dev[0]}:{dev[1]}" if dev else "")
    assert want in text, f"{version} {v1f if version == 'v1' else v2f}: {text!r}, want {want!r}"


def test_pids_limit_zero_is_a_limit(oci):
    """0 is a valid limit value for the pids cgroup controller from the kernel's perspective and SHOULD be
    treated as such by runtimes.

    [SHOULD] config-linux.md#configLinuxPIDS
    """
    host.require_controller("pids")
    rootless.require_cgroup("pids", "a pids limit")
    c, _ = created_with(oci, {"pids": {"limit": 0}})
    version, text = cgroup_read(c.state()["pid"], "pids", "pids.max", "pids.max")
    assert text == "0", f"pids.max is {text!r} for limit 0"


def test_hugepage_limit(oci):
    """hugepageLimits represents the hugetlb controller; the runtime MUST apply it or MUST generate an error.

    [MUST] config-linux.md#configLinuxHugePageLimits
    """
    host.require_controller("hugetlb")
    sizes = host.hugepage_sizes()
    if "2MB" not in sizes:
        pytest.skip("host: kernel has no 2MB huge pages")
    rootless.require_cgroup("hugetlb", "a hugetlb limit")
    c, _ = created_with(oci, {"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}, expect_ok=False)
    if not c.create_result.ok:
        return  # could not apply: generated an error, and nothing was created
    assert c.state() is not None
    version, text = cgroup_read(c.state()["pid"], "hugetlb", "hugetlb.2MB.limit_in_bytes", "hugetlb.2MB.max")
    assert text == "4194304", f"hugepage limit not applied and no error ({version}: {text!r})"


def test_network_class_id(oci):
    """network.classID is the network class identifier the cgroup's network packets will be tagged with.

    [MUST] config-linux.md#configLinuxNetwork
    """
    if "net_cls" not in host.cgroup_v1_controllers():
        pytest.skip("host: cgroup controller 'net_cls' is not mounted (cgroup v1 only)")
    rootless.require_cgroup("net_cls", "a net_cls class id")
    c, _ = created_with(oci, {"network": {"classID": 1048577}})
    assert cgroup_read(c.state()["pid"], "net_cls", "net_cls.classid")[1] == "1048577"


def rdma_devices():
    """The host's RDMA devices (the names rdma.max takes), e.g. ["mlx5_0", "rxe0"]."""
    try:
        return sorted(os.listdir("/sys/class/infiniband"))
    except OSError:
        return []


def test_rdma_limit(oci):
    """rdma represents the cgroup subsystem rdma (the entry key names the device; hcaHandles, hcaObjects). If
    the runtime cannot apply a property it MUST generate an error: a limit for a device the host does not have
    cannot be written to rdma.max (the kernel refuses it).

    [MUST] config-linux.md#configLinuxRDMA
    """
    host.require_controller("rdma")
    rootless.require_cgroup("rdma", "an rdma limit")
    # a device no host has: rdma.max refuses it (ENODEV), so the runtime must refuse the container
    c, _ = created_with(oci, {"rdma": {"ocinosuchdev0": {"hcaHandles": 3, "hcaObjects": 100}}}, "rdma-bad",
                           expect_ok=False)
    assert not c.create_result.ok, f"an rdma limit for a device that does not exist was accepted:\n{c.create_result}"
    assert c.state() is None, f"a container was left behind after the refused rdma limit: {c.state()}"
    devices = rdma_devices()
    if not devices:
        return  # no device here to limit: the refusal above is all that can be required
    dev = devices[0]
    c, _ = created_with(oci, {"rdma": {dev: {"hcaHandles": 3, "hcaObjects": 100}}})
    version, text = cgroup_read(c.state()["pid"], "rdma", "rdma.max", "rdma.max")
    assert version, f"no rdma.max in the container's cgroups {cgroups_of(c.state()['pid'])}"
    line = [ln for ln in text.splitlines() if ln.split(" ", 1)[0] == dev]
    assert line and set(line[0].split()[1:]) == {"hca_handle=3", "hca_object=100"}, f"{version} rdma.max: {text!r}"


def test_devices_cgroup_denies(oci):
    """Allowed device list: a deny entry makes the device unusable in the container.

    [MUST] config-linux.md#configLinuxDeviceAllowedlist
    """
    host.require_controller("devices") if host.cgroup_mode() != "v2" else None
    rootless.require_cgroup("devices", "the device allow-list")
    data = oci.probe("--path", "/dev/cfdev", edit=lambda c: c["linux"].update(
        devices=[{"path": "/dev/cfdev", "type": "c", "major": 240, "minor": 7, "fileMode": 0o666}],
        resources={"devices": [{"allow": False, "access": "rwm"}]}))
    p = data["paths"]["/dev/cfdev"]
    assert p["exists"] and p.get("read_errno") == "EPERM", p


def test_devices_cgroup_listed_order(oci):
    """The runtime MUST apply entries in the listed order (a later allow overrides an earlier deny, a later
    deny an earlier allow).

    [MUST] config-linux.md#configLinuxDeviceAllowedlist
    """
    rootless.require_cgroup("devices", "the device allow-list")
    # 240:7 has no driver: an allowed open fails with ENXIO, a denied one with EPERM (from the cgroup)
    dev = [{"path": "/dev/cfdev", "type": "c", "major": 240, "minor": 7, "fileMode": 0o666}]
    allow = {"allow": True, "type": "c", "major": 240, "minor": 7, "access": "r"}
    deny = {"allow": False, "type": "c", "major": 240, "minor": 7, "access": "rwm"}
    a = oci.probe("--path", "/dev/cfdev", edit=lambda c: c["linux"].update(
        devices=dev, resources={"devices": [{"allow": False, "access": "rwm"}, allow]}))
    b = oci.probe("--path", "/dev/cfdev", edit=lambda c: c["linux"].update(
        devices=dev, resources={"devices": [{"allow": False, "access": "rwm"}, allow, deny]}))
    assert a["paths"]["/dev/cfdev"].get("read_errno") != "EPERM", f"deny-all then allow: {a['paths']}"
    assert b["paths"]["/dev/cfdev"].get("read_errno") == "EPERM", f"allow then deny: {b['paths']}"


def test_unified_unavailable_controller_errors(oci):
    """The runtime MUST generate an error when the (unified) configuration refers to a cgroup controller that
    is not present or that cannot be enabled.

    [MUST] config-linux.md#configLinuxUnified
    """
    # rootless without a writable v2 hierarchy any resource is refused, so a refusal would prove nothing
    rootless.require_cgroup("unified", "a unified (cgroup v2) resource")
    if "pids" in host.cgroup_v2_controllers() or host.cgroup_mode() == "v2":
        key = "nosuchcontroller.max"
    else:
        key = "pids.max"  # pids is not available in this host's cgroup v2 hierarchy
    c, _ = created_with(oci, {"unified": {key: "10"}}, expect_ok=False)
    assert not c.create_result.ok, f"unified {key} accepted though that controller is not in cgroup v2"


def test_unified_written(oci):
    """unified: Configuration unknown to the runtime MUST still be written to the relevant file.

    [MUST] config-linux.md#configLinuxUnified
    """
    if not host.cgroup_v2_mount():
        pytest.skip("host: no cgroup v2 hierarchy")
    if host.cgroup_mode() == "v2":
        key, val = "pids.max", "17"
        host.require_controller("pids")
    elif "hugetlb" in host.cgroup_v2_controllers() and "2MB" in host.hugepage_sizes():
        key, val = "hugetlb.2MB.max", "4194304"
    else:
        pytest.skip("host: no controller available in the cgroup v2 hierarchy")
    rootless.require_cgroup("unified", "a unified (cgroup v2) resource")
    c, _ = created_with(oci, {"unified": {key: val}})
    cg = cgroups_of(c.state()["pid"])
    p = os.path.join(host.cgroup_v2_mount(), cg.get("", "/").lstrip("/"), key)
    assert os.path.exists(p) and open(p).read().strip() == val, f"{p}"


def test_intel_rdt_without_resctrl_errors(oci):
    """If no mounted resctrl pseudo-filesystem is available in the runtime mount namespace, the runtime MUST
    generate an error.

    [MUST] config-linux.md#configLinuxIntelRdt
    """
    if any(m["fstype"] == "resctrl" for m in host.mountinfo()):
        pytest.skip("host: resctrl is mounted (this case needs it absent)")
    c = oci.create(edit=lambda c: c["linux"].update(intelRdt={"closID": "cf", "l3CacheSchema": "L3:0=f"}),
                   expect_ok=False)
    assert not c.create_result.ok


# ------------------------------------------------------------------------------------------------ sysctl etc.
def test_sysctl(oci):
    """sysctl (object) allows kernel parameters to be modified at runtime for the container.

    [MUST] config-linux.md#configLinuxSysctl
    """
    want = {"net.ipv4.ip_forward": "1", "kernel.msgmax": "4096", "net.ipv4.ping_group_range": "0 0"}

    def edit(c):
        c["linux"].update(sysctl=want)
        if rootless.active() and not any(n["type"] == "network" for n in c["linux"]["namespaces"]):
            # net.* sysctls are the container's own only in a network namespace it owns (a rootless config has none)
            c["linux"]["namespaces"].append({"type": "network"})
    data = oci.probe(*sum((["--sysctl", k] for k in want), []), edit=edit)
    for k, v in want.items():
        assert " ".join((data["sysctl"][k] or "").split()) == v, f"{k}: {data['sysctl'][k]!r}"


@pytest.mark.parametrize("prop", ["shared", "unbindable"])
def test_rootfs_propagation_mode(oci, prop):
    """rootfsPropagation shared: the rootfs mount belongs to a new peer group; unbindable: the rootfs mount is
    a private mount that cannot be bind-mounted (seen as the container's / propagation in mountinfo).

    [MUST] config-linux.md#configLinuxRootfsMountPropagation
    """
    data = oci.probe(edit=lambda c: c["linux"].update(rootfsPropagation=prop))
    opt = mount_at(data, "/")["optional"]
    tags = {o.split(":")[0] for o in opt}
    assert tags == {prop}, f"/ propagation {opt} for {prop}"


@pytest.mark.parametrize("prop,receives", [("slave", True), ("private", False)])
def test_rootfs_propagation_from_host(oci, prop, receives):
    """rootfsPropagation slave: the rootfs mount receives propagation events from the host (something mounted
    on the host appears in the container); private: it doesn't receive mount propagation events from the host.

    [MUST] config-linux.md#configLinuxRootfsMountPropagation
    """
    rootless.require_host_mount("propagation from the host")
    seen = host.host_mount_reaches(oci, prop)
    assert seen == receives, f"{prop}: host mount {'not ' if receives else ''}seen in the container"


def test_masked_paths(oci):
    """maskedPaths will mask over the provided paths inside the container so that they cannot be read.

    [MUST] config-linux.md#configLinuxMaskedPaths
    """
    b = oci.bundle(["/probe", "--path", "/proc/kcore", "--path", "/etc/hostname", "--file", "/etc/hostname",
                    "--path", "/masked-dir", "--path", "/masked-dir/secret", "--touch", "/masked-dir/new"],
                   edit=lambda c: c["linux"].update(maskedPaths=["/proc/kcore", "/etc/hostname", "/proc/acpi",
                                                                 "/masked-dir", "/does/not/exist"]))
    # a directory of the rootfs with content: masked, it must show none of it, and take nothing new
    os.makedirs(os.path.join(b.rootfs, "masked-dir"))
    with open(os.path.join(b.rootfs, "masked-dir", "secret"), "w") as f:
        f.write("not for the container\n")
    with open(os.path.join(b.rootfs, "etc", "hostname"), "w") as f:
        f.write("not-for-the-container\n")
    data = oci.probe(bundle=b)
    for p in ("/proc/kcore", "/etc/hostname"):
        st = data["paths"][p]
        assert not st["exists"] or not st.get("readable") or st.get("read_len") == 0, f"{p}: {st}"
    assert not data["files"]["/etc/hostname"], "masked /etc/hostname still readable"
    d = data["paths"]["/masked-dir"]
    assert d["exists"] and d["type"] == "d", f"/masked-dir: {d}"
    assert not data["paths"]["/masked-dir/secret"]["exists"], "the masked directory still shows its content"
    # masked directories are read-only (runc: an empty tmpfs mounted MS_RDONLY)
    assert d.get("writable") is False and d.get("write_errno") == "EROFS", f"masked /masked-dir is writable: {d}"
    assert data["touch"]["/masked-dir/new"] == "EROFS", f"created a file in masked /masked-dir: {data['touch']}"
    assert not os.path.exists(os.path.join(b.rootfs, "masked-dir", "new"))


def test_masked_paths_must_be_absolute(oci):
    """maskedPaths: The values MUST be absolute paths in the container namespace.

    [MUST] config-linux.md#configLinuxMaskedPaths
    """
    c = oci.create(edit=lambda c: c["linux"].update(maskedPaths=["proc/kcore"]), expect_ok=False)
    assert not c.create_result.ok


def test_readonly_paths(oci):
    """readonlyPaths will set the provided paths as readonly inside the container.

    [MUST] config-linux.md#configLinuxReadonlyPaths
    """
    data = oci.probe("--path", "/proc/sys", "--touch", "/etc/ro/x", "--path", "/etc/ro",
                     edit=lambda c: c["linux"].update(readonlyPaths=["/proc/sys", "/etc"]))
    assert data["paths"]["/proc/sys"]["writable"] is False, data["paths"]["/proc/sys"]
    assert data["touch"]["/etc/ro/x"] in ("EROFS", "ENOENT"), data["touch"]
    assert any(m["mountpoint"] == "/etc" and "ro" in m["options"].split(",") for m in data["mounts"])


def test_readonly_paths_must_be_absolute(oci):
    """readonlyPaths: The values MUST be absolute paths in the container namespace.

    [MUST] config-linux.md#configLinuxReadonlyPaths
    """
    c = oci.create(edit=lambda c: c["linux"].update(readonlyPaths=["proc/sys"]), expect_ok=False)
    assert not c.create_result.ok


@pytest.mark.parametrize("domain,persona,machine", [("LINUX", 0, "x86_64"), ("LINUX32", 8, "i686")])
def test_personality(oci, domain, persona, machine):
    """personality sets the Linux execution personality; LINUX32 will set the uname system call to show a 32
    bit CPU type, such as i686.

    [MUST] config-linux.md#configLinuxPersonality
    """
    if os.uname().machine != "x86_64":
        pytest.skip("host: personality machine names checked on x86_64 only")
    data = oci.probe(edit=lambda c: c["linux"].update(personality={"domain": domain}))
    assert data["personality"] & 0xff == persona and data["machine"] == machine, data["machine"]


@pytest.mark.parametrize("mode,num,nodes", [("MPOL_BIND", 2, "0"), ("MPOL_INTERLEAVE", 3, "0"),
                                            ("MPOL_PREFERRED", 1, "0"), ("MPOL_DEFAULT", 0, None)])
def test_memory_policy(oci, mode, num, nodes):
    """memoryPolicy sets the NUMA memory policy for the container (set_mempolicy(2) mode and nodes).

    [MUST] config-linux.md#configLinuxMemoryPolicy
    """
    pol = {"mode": mode, **({"nodes": nodes} if nodes else {})}
    data = oci.probe(edit=lambda c: c["linux"].update(memoryPolicy=pol))
    assert data["mempolicy"] and data["mempolicy"]["mode"] == num, data["mempolicy"]


# ------------------------------------------------------------------------------------------------ netDevices
@pytest.fixture
def veth(oci):
    rootless.require_cap("CAP_NET_ADMIN", "moving a host network device into the container")
    if not host.can_make_veth():
        pytest.skip("host: kernel cannot create veth interfaces")
    name = f"cf{oci.tag}"[:13]
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"], check=True)
    oci.add_cleanup(lambda: subprocess.run(["ip", "link", "del", name], capture_output=True))
    return name


def test_net_devices_moved_and_up(oci, veth):
    """netDevices: a set of network devices that MUST be made available in the container; the runtime MUST
    set the network device state to "up" after moving it.

    [MUST] config-linux.md#configLinuxNetworkDevices
    """
    data = oci.probe("--path", "/sys/class/net/ceth1", "--file", "/sys/class/net/ceth1/flags",
                     edit=lambda c: c["linux"].update(netDevices={veth: {"name": "ceth1"}}))
    assert data["paths"]["/sys/class/net/ceth1"]["exists"], "device not in the container under its new name"
    flags = int(data["files"]["/sys/class/net/ceth1/flags"] or "0", 16)
    assert flags & 1, f"device not up (flags {flags:#x})"


def test_net_devices_name_clash_errors(oci, veth):
    """The runtime MUST check if moving the network interface to the container namespace is possible: if a
    network interface with the same name already exists in the container namespace, it MUST generate an error.

    [MUST] config-linux.md#configLinuxNetworkDevices
    """
    c = oci.create(edit=lambda c: c["linux"].update(netDevices={veth: {"name": "lo"}}), expect_ok=False)
    assert not c.create_result.ok


# ------------------------------------------------------------------------------------------------ seccomp
def require_seccomp(rt):
    feats = rt.features()
    if feats.get("linux", {}).get("seccomp", {}).get("enabled") is False:
        pytest.skip("runtime reports seccomp disabled in `features`")
    try:
        open("/proc/self/status").read().index("Seccomp:")
    except ValueError:
        pytest.skip("host: kernel lacks seccomp")


def test_seccomp_filter_applied(oci):
    """seccomp: the configured filter is installed for the container process (matched syscalls get the action).

    [MUST] config-linux.md#configLinuxSeccomp
    """
    require_seccomp(oci.rt)
    # errnoRet 18 (EXDEV), not the default EPERM: the errno the process sees must be the configured one.
    # The probe's writability check is glibc's access(3): the access syscall, or faccessat where there is none.
    # (Not faccessat2: runc checks the program with it under the filter, just before execve.)
    sc = {"defaultAction": "SCMP_ACT_ALLOW",
          "syscalls": [{"names": ["access", "faccessat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18}]}
    data = oci.probe("--path", "/tmp", edit=lambda c: c["linux"].update(seccomp=sc))
    assert data["seccomp"] == 2, f"Seccomp mode {data['seccomp']}"
    st = data["paths"]["/tmp"]
    assert st["exists"] and st.get("readable"), f"a syscall the filter allows failed: {st}"
    assert st.get("writable") is False and st.get("write_errno") == "EXDEV", \
        f"access(2) under SCMP_ACT_ERRNO with errnoRet 18: want EXDEV from inside, got {st}"


def test_seccomp_errno_on_action_without_errno_errors(oci):
    """errnoRet: When the action doesn't support an errno, the runtime MUST print and error and fail.

    [MUST] config-linux.md#configLinuxSeccomp
    """
    require_seccomp(oci.rt)
    sc = {"defaultAction": "SCMP_ACT_ALLOW",
          "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_KILL", "errnoRet": 1}]}
    c = oci.create(edit=lambda c: c["linux"].update(seccomp=sc), expect_ok=False)
    assert not c.create_result.ok


def test_seccomp_listener_metadata_without_path_errors(oci):
    """listenerMetadata: This field MUST NOT be set if listenerPath is not set.

    [MUST] config-linux.md#configLinuxSeccomp
    """
    require_seccomp(oci.rt)
    sc = {"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "x",
          "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}]}
    c = oci.create(edit=lambda c: c["linux"].update(seccomp=sc), expect_ok=False)
    assert not c.create_result.ok


def test_seccomp_notify_sends_state(oci):
    """listenerPath: the runtime MUST send exactly one container process state per connection over this AF_UNIX
    SOCK_STREAM socket, fds via SCM_RIGHTS.

    [MUST] config-linux.md#configLinuxSeccomp
    """
    require_seccomp(oci.rt)
    b = oci.bundle(["/probe"])
    path = os.path.join(b.path, "seccomp.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    srv.settimeout(15)
    oci.add_cleanup(srv.close)
    got = {}

    def serve():
        try:
            conn, _ = srv.accept()
            msg, anc, _, _ = conn.recvmsg(65536, socket.CMSG_SPACE(64))
            got["msg"], got["fds"] = msg, [d for _, t, d in anc if t == socket.SCM_RIGHTS]
            got["more"] = conn.recv(10)
            conn.close()
        except Exception as e:  # noqa: BLE001
            got["error"] = repr(e)
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    b.config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": path,
                                    "listenerMetadata": "meta",
                                    "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_NOTIFY"}]}
    b.save()
    c = oci.create(b, expect_ok=False)
    assert c.create_result.ok, f"create failed:\n{c.create_result}"
    # The state is sent when the filter is installed: at the latest when the program is started.
    if "msg" not in got:
        oci.rt.start(c.id)
    t.join(15)
    assert "msg" in got, f"nothing received on listenerPath: {got}"
    st = json.loads(got["msg"])
    assert st.get("metadata") == "meta" and st.get("state", {}).get("id") == c.id, st
    assert got["fds"], "no fd passed with SCM_RIGHTS"
    assert got["more"] == b"", "connection not closed after one state"
