"""What engines send that the official schema does not allow and runc accepts (spec/EXTENSIONS.md in ocirun):
a runtime that engines drive must run these. Runtime-neutral: runc passes them; the `[ECOSYSTEM]` level says
that no spec sentence requires them (the section names the spec text they extend)."""
import os
import subprocess

import pytest

from conformance import host
from conformance import rootless


def mount_at(data, path):
    found = [m for m in data["mounts"] if m["mountpoint"] == path]
    assert found, f"nothing mounted at {path}"
    return found[-1]


@pytest.mark.parametrize("prop,receives", [("rslave", True), ("rprivate", False)])
def test_recursive_rootfs_propagation(oci, prop, receives):
    """rootfsPropagation "rslave"/"rprivate" (Docker and podman for `-v X:Y:rslave`, Kubernetes mount
    propagation): accepted, and a mount made on the host under the rootfs later reaches the container exactly when
    the value says so.

    [ECOSYSTEM] config-linux.md#configLinuxRootfsMountPropagation
    """
    rootless.require_host_mount("propagation from the host")
    seen = host.host_mount_reaches(oci, prop)
    assert seen == receives, f"{prop}: host mount {'not ' if receives else ''}seen in the container"


def test_empty_rootfs_propagation_is_unset(oci):
    """rootfsPropagation "" (Go producers' zero value): the same as absent.

    [ECOSYSTEM] config-linux.md#configLinuxRootfsMountPropagation
    """
    data = oci.probe(edit=lambda c: c["linux"].update(rootfsPropagation=""))
    assert mount_at(data, "/")


def test_device_file_mode_with_type_bits(oci):
    """linux.devices[].fileMode with the file-type bits (podman 4: 8630 = 0o20666 for a character device): the node
    gets the permission bits.

    [ECOSYSTEM] config-linux.md#configLinuxDevices
    """
    rootless.require_mknod("a device node with podman's fileMode")

    def edit(c):
        c["linux"]["devices"] = [{"path": "/dev/cfmode", "type": "c", "major": 1, "minor": 3, "fileMode": 8630}]
    data = oci.probe("--dev", "/dev/cfmode", edit=edit)
    st = data["devices"]["/dev/cfmode"]
    assert st and st["type"] == "c" and st["mode"] & 0o7777 == 0o666, st


def test_null_members_read_as_absent(oci):
    """A member set to null (Go producers without omitempty) is as if absent: the container runs with the host
    name it would have had.

    [ECOSYSTEM] config.md#configHostname
    """
    data = oci.probe(edit=lambda c: c.update(hostname=None))
    assert isinstance(data.get("hostname"), str)


def test_bind_mount_propagation_rslave_volume(oci):
    """A bind mount with options ["rbind", "rslave"] from a shared host directory (`docker run -v X:Y:rslave`)
    receives what the host mounts under its source later.

    [ECOSYSTEM] config.md#configLinuxMountOptions
    """
    rootless.require_host_mount("propagation from the host into a volume")
    src = os.path.join(oci.workdir, f"vol-{oci.tag}")
    os.makedirs(os.path.join(src, "sub"))
    b = oci.bundle(["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"], edit=lambda c: (
        c["linux"].update(rootfsPropagation="rslave"),
        c["mounts"].append({"destination": "/vol", "type": "bind", "source": src, "options": ["rbind", "rslave"]})))
    c = oci.run(b)
    pid = c.state()["pid"]
    subprocess.run(["mount", "-t", "tmpfs", "cfvol", os.path.join(src, "sub")], check=True)
    oci.add_cleanup(lambda: subprocess.run(["umount", "-l", os.path.join(src, "sub")]))
    assert host.mount_seen(pid, "/vol/sub"), "a mount under the rslave volume's source did not reach the container"
