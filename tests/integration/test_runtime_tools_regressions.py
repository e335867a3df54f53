"""Regressions found with the OCI runtime-tools validation suite (see /work/notes/runtime-tools.md): ocirun's
own handling of a config without `process` (created, start refused with exit 1, kill/delete work, `run`
refused with nothing left behind), and the device rules a v1 devices cgroup ends up with, in config order."""
import os

import pytest

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates real containers")]


def _no_process(cfg):
    del cfg["process"]


def test_create_without_process_then_start_refused(oci, bundle, cid):
    b = bundle(edit=_no_process)
    c = cid()
    res = oci("create", "--bundle", b, c)
    assert res.returncode == 0, str(res)
    st = oci.state(c)
    assert st["status"] == "created" and st["pid"] > 0, st
    res = oci("start", c)
    assert res.returncode == 1, str(res)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "no process" in lines[0] and c in lines[0], str(res)
    # the refused start changed nothing: same init, still created, still waiting
    st2 = oci.state(c)
    assert st2["status"] == "created" and st2["pid"] == st["pid"], (st, st2)
    assert os.path.exists(f"/proc/{st['pid']}")
    # a created container: kill then delete as for any other
    assert oci("kill", c, "KILL").returncode == 0
    oci.wait_status(c, "stopped")
    res = oci("delete", c)
    assert res.returncode == 0, str(res)
    assert oci("state", c).returncode == 1


def _gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_create_without_process_delete_force(oci, bundle, cid, wait_for):
    b = bundle(edit=_no_process)
    c = cid()
    assert oci("create", "--bundle", b, c).returncode == 0
    pid = oci.state(c)["pid"]
    res = oci("delete", "--force", c)
    assert res.returncode == 0, str(res)
    wait_for(lambda: _gone(pid), what="the init of the deleted container to exit")
    assert oci("state", c).returncode == 1


def test_run_without_process_refused(oci, bundle, cid):
    b = bundle(edit=_no_process)
    c = cid()
    res = oci("run", "--bundle", b, c)
    assert res.returncode == 1, str(res)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "/process" in lines[0], str(res)
    st = oci("state", c)
    assert st.returncode == 1 and "does not exist" in st.stderr, str(st)
    assert not os.path.exists(os.path.join(oci.root, c))


def test_v1_device_rules_written_in_config_order(oci, bundle, cid):
    """devices.list of the container's v1 cgroup: deny-all, then config.json's allow entries in their order,
    then the default allow-list (runc's set), each once."""
    from ocirun.cgroups import devices

    mnt = "/sys/fs/cgroup/devices"
    if not os.path.isfile(os.path.join(mnt, "devices.list")):
        pytest.skip("host: no cgroup v1 devices controller")
    c = cid()
    rules = [{"allow": False, "access": "rwm"},
             {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
             {"allow": True, "type": "b", "major": 8, "minor": 20, "access": "rw"},
             {"allow": True, "type": "b", "major": 10, "minor": 200, "access": "r"}]

    def edit(cfg):
        cfg["linux"]["cgroupsPath"] = f"/{c}"
        cfg["linux"].setdefault("resources", {})["devices"] = rules
    b = bundle(["sleep", "60"], edit=edit)
    res = oci("create", "--bundle", b, c)
    assert res.returncode == 0, str(res)
    try:
        with open(os.path.join(mnt, c, "devices.list")) as f:
            lines = f.read().split("\n")[:-1]
        want = ["c 10:229 rwm", "b 8:20 rw", "b 10:200 r"] + [
            devices.rule_str(t, ma, mi, a) for t, ma, mi, a in devices.DEFAULT_ALLOWED]
        assert lines == want
    finally:
        oci("delete", "--force", c)


def _no_mount_ns(cfg):
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "mount"]
    cfg["linux"].pop("maskedPaths", None)
    cfg["linux"].pop("readonlyPaths", None)
    cfg["root"]["readonly"] = False  # (refused without a mount namespace: it would remount a host mount)


def _host_mount_points_under(path):
    prefix = os.path.realpath(path).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


def test_no_mount_namespace_container_and_exec_are_chrooted(oci, bundle, cid, wait_for):
    """Without a mount namespace (inherited from the runtime, runtime-tools linux_ns_itype) the container's
    mounts are made on the host under its rootfs, its process and `exec`'d ones see the rootfs as /, and
    delete removes those mounts."""
    b = bundle(["sh", "-c", "cat /marker > /seen; readlink /proc/self/ns/mnt >> /seen; sleep 60"],
               edit=_no_mount_ns)
    rootfs = bundle.rootfs(b)
    with open(os.path.join(rootfs, "marker"), "w") as f:
        f.write("inside-rootfs\n")
    c = cid()
    assert oci("create", "--bundle", b, c).returncode == 0
    assert any(p.endswith("/proc") for p in _host_mount_points_under(rootfs))
    assert oci("start", c).returncode == 0
    seen = os.path.join(rootfs, "seen")
    wait_for(lambda: os.path.exists(seen) and len(open(seen).read().splitlines()) == 2, what="/seen")
    lines = open(seen).read().splitlines()
    assert lines == ["inside-rootfs", os.readlink("/proc/self/ns/mnt")], lines
    res = oci("exec", c, "cat", "/marker")
    assert res.returncode == 0 and res.stdout == "inside-rootfs\n", str(res)
    assert oci("delete", "--force", c).returncode == 0
    assert _host_mount_points_under(rootfs) == []


def test_no_mount_namespace_refuses_masked_paths(oci, bundle, cid):
    """maskedPaths cannot be applied without a mount namespace of the container's own (runc refuses too)."""
    def edit(cfg):
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "mount"]
    b = bundle(edit=edit)
    c = cid()
    res = oci("create", "--bundle", b, c)
    assert res.returncode == 1, str(res)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "/linux/maskedPaths" in lines[0], str(res)
    assert oci("state", c).returncode == 1
    assert _host_mount_points_under(bundle.rootfs(b)) == []
