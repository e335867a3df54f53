"""Requirements found by running the OCI runtime-tools validation suite (validation/*.t) against ocirun, runc and
crun: the device allow-list order as the v1 controller lists it, the state the create-time hooks receive, and
`start` of a container whose config has no `process`."""
import json
import os

import pytest

from conformance import host
from conformance import rootless
from conformance.conftest import CGROUP_PREFIX, cgroups_of
from conformance.test_hooks import hook, hook_state


# ------------------------------------------------------------------------------------------------ devices
def test_devices_cgroup_v1_list_keeps_listed_order(oci):
    """The runtime MUST apply entries in the listed order: the v1 devices controller lists its exceptions in
    the order they were written, so config.json's allow entries appear in devices.list in config.json's order
    (runtime-tools linux_cgroups_devices reads devices.list back against the config).

    [MUST] config-linux.md#configLinuxDeviceAllowedlist
    """
    mnt = host.cgroup_v1_controllers().get("devices")
    if not mnt:
        pytest.skip("host: the devices controller is not mounted as cgroup v1 (no devices.list)")
    rootless.require_cgroup("devices", "the device allow-list")
    # an order that differs from any sorting by (major, minor) or by type
    listed = [("c", 10, 229, "rwm"), ("b", 8, 20, "rw"), ("b", 10, 200, "r")]
    path = f"/{CGROUP_PREFIX}-{oci.tag}-devorder"

    def edit(c):
        c["linux"]["cgroupsPath"] = path
        c["linux"]["resources"] = {"devices": [{"allow": False, "access": "rwm"}] + [
            {"allow": True, "type": t, "major": ma, "minor": mi, "access": a} for t, ma, mi, a in listed]}
    c = oci.create(args=["/probe"], edit=edit)
    cg = cgroups_of(c.state()["pid"])["devices"]
    with open(os.path.join(mnt, cg.lstrip("/"), "devices.list")) as f:
        lines = f.read().split("\n")
    want = [f"{t} {ma}:{mi} {a}" for t, ma, mi, a in listed]
    missing = [w for w in want if w not in lines]
    assert not missing, f"{missing} not in devices.list {lines}"
    got = sorted(want, key=lines.index)
    assert got == want, f"devices.list has the config's entries in the order {got}, config.json lists {want}"


# ------------------------------------------------------------------------------------------------ hooks
def test_create_hooks_receive_created_state(oci):
    """The state of the container MUST be passed to hooks over stdin. prestart, createRuntime and
    createContainer are lifecycle steps 3-5, after step 2, where the state is `created` ("the runtime has
    finished the create operation (after step 2 in the lifecycle)"); `creating` is step 2 itself.

    [MUST] config.md#configHooks
    """
    b = oci.bundle(["/probe"])
    b.config["hooks"] = {t: [hook(t, os.path.join(b.rootfs, "hooks.log"), b.path)]
                         for t in ("prestart", "createRuntime", "createContainer")}
    b.save()
    c = oci.create(b)
    pid = c.state()["pid"]
    for t in ("prestart", "createRuntime", "createContainer"):
        st = hook_state(b, t)
        assert st.get("id") == c.id and st.get("pid") == pid, (t, st)
        assert st.get("status") == "created", f"{t} hook got status {st.get('status')!r}: {json.dumps(st)}"


# ------------------------------------------------------------------------------------------------ process unset
def test_start_without_process_errors(oci):
    """`process` is OPTIONAL in config.json and REQUIRED when start is called; start MUST generate an error if
    `process` was not set, and an error MUST leave the state of the environment as if the operation were never
    attempted (the container stays `created`).

    [MUST] runtime.md#runtimeStart
    """
    b = oci.bundle(["/probe"])
    del b.config["process"]
    b.save()
    c = oci.create(b, expect_ok=False)
    assert c.create_result.ok, f"create of a config without process (OPTIONAL) failed:\n{c.create_result}"
    before = c.state()
    assert before["status"] == "created", before
    r = oci.rt.start(c.id)
    assert not r.ok, f"start of a container without process succeeded:\n{r}"
    after = c.state()
    assert after["status"] == "created" and after["pid"] == before["pid"], (before, after)
    assert os.path.exists(f"/proc/{after['pid']}"), "the container's init is gone after the refused start"


# ------------------------------------------------------------------------------------------------ no mount ns
def _require_own_mount_ns():
    rootless.require_cap("CAP_SYS_ADMIN", "a container without a mount namespace of its own mounts in the host's")


def _no_mount_ns(c):
    c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "mount"]
    for key in ("maskedPaths", "readonlyPaths", "rootfsPropagation"):
        c["linux"].pop(key, None)


def _host_mounts_under(path):
    prefix = os.path.realpath(path).rstrip("/") + "/"
    return [m for m in host.mountinfo() if (m.get("mountpoint") or "").startswith(prefix)]


def test_mount_namespace_inherited_when_not_listed(oci):
    """If a namespace type is not specified in the namespaces array, the container MUST inherit the runtime
    namespace of that type (here: mount; runtime-tools linux_ns_itype). The process still runs in root.path.

    [MUST] config-linux.md#configLinuxNamespaces
    """
    _require_own_mount_ns()
    data = oci.probe(edit=_no_mount_ns)
    assert data["namespaces"]["mnt"] == host.self_ns("mnt"), data["namespaces"]
    assert data["argv"][0] == "/probe" and data["cwd"] == "/", (data["argv"], data["cwd"])


def test_delete_removes_mounts_made_in_inherited_mount_namespace(oci):
    """Deleting a container MUST delete the resources that were created during the create step: without a
    mount namespace of its own, the container's mounts (config.json mounts, made under root.path in the
    runtime's mount namespace) are such resources.

    [MUST] runtime.md#runtimeDelete
    """
    _require_own_mount_ns()
    b = oci.bundle(["/probe"], _no_mount_ns)
    c = oci.create(b)
    made = _host_mounts_under(b.rootfs)
    assert any(m["mountpoint"].endswith("/proc") for m in made), f"no /proc mount under the rootfs: {made}"
    r = oci.rt.delete(c.id, force=True)
    assert r.ok, f"delete --force failed:\n{r}"
    left = [m["mountpoint"] for m in _host_mounts_under(b.rootfs)]
    assert not left, f"mounts left on the host after delete: {left}"
