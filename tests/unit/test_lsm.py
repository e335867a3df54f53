"""lsm: AppArmor/SELinux label writes against a fake /proc/self/attr tree and fake /sys LSM markers."""
import os

import pytest

from ocirun import config as C
from ocirun import lsm
from ocirun.errors import OciError


def _proc(**kw):
    return C.Process(user=C.User(), **kw)


@pytest.fixture
def attr(tmp_path):
    d = tmp_path / "attr"
    (d / "apparmor").mkdir(parents=True)
    for name in ("exec", "current", "keycreate", "apparmor/exec"):
        (d / name).write_text("")
    return d


@pytest.fixture
def host(tmp_path):
    return lsm.Host(str(tmp_path / "host"))


def _enable_apparmor(host):
    p = os.path.join(host.root, "sys/module/apparmor/parameters")
    os.makedirs(p)
    with open(os.path.join(p, "enabled"), "w") as f:
        f.write("Y\n")
    os.makedirs(os.path.join(host.root, "sys/kernel/security/apparmor"))


def _enable_selinux(host):
    os.makedirs(os.path.join(host.root, "sys/fs/selinux"))
    with open(os.path.join(host.root, "sys/fs/selinux/enforce"), "w") as f:
        f.write("1")


def test_no_lsm_refuses_profile_label_and_mount_label(host):
    with pytest.raises(OciError, match=r"process.apparmorProfile 'p1': AppArmor is not enabled"):
        lsm.check(_proc(apparmor_profile="p1"), None, host)
    with pytest.raises(OciError, match=r"process.selinuxLabel .*SELinux is not enabled"):
        lsm.check(_proc(selinux_label="system_u:system_r:container_t:s0"), None, host)
    with pytest.raises(OciError, match=r"linux.mountLabel .*SELinux is not enabled"):
        lsm.check(_proc(), C.Linux(mount_label="system_u:object_r:container_file_t:s0"), host)
    lsm.check(_proc(), C.Linux(), host)  # nothing asked: nothing refused


def test_enabled_lsms_are_accepted(host):
    _enable_apparmor(host)
    _enable_selinux(host)
    lsm.check(_proc(apparmor_profile="p1", selinux_label="l"), C.Linux(mount_label="m"), host)


def test_apparmor_profile_written_to_apparmor_exec(attr):
    lsm.apply_exec_labels(_proc(apparmor_profile="docker-default"), str(attr), verify_procfs=False)
    assert (attr / "apparmor" / "exec").read_text() == "exec docker-default"
    assert (attr / "exec").read_text() == ""


def test_apparmor_falls_back_to_attr_exec(attr):
    (attr / "apparmor" / "exec").unlink()
    (attr / "apparmor").rmdir()
    lsm.apply_exec_labels(_proc(apparmor_profile="p2"), str(attr), verify_procfs=False)
    assert (attr / "exec").read_text() == "exec p2"


def test_selinux_label_and_keyring(attr):
    lbl = "system_u:system_r:container_t:s0:c1,c2"
    lsm.apply_exec_labels(_proc(selinux_label=lbl), str(attr), verify_procfs=False)
    assert (attr / "exec").read_text() == lbl
    lsm.set_keyring_label(lbl, str(attr), verify_procfs=False)
    assert (attr / "keycreate").read_text() == lbl


def test_fake_proc_is_refused(attr):
    """CVE-2019-16884: a label must never be written to a /proc that is not a real procfs."""
    with pytest.raises(OciError, match="not on a real procfs"):
        lsm.apply_exec_labels(_proc(apparmor_profile="p"), str(attr))
    assert (attr / "apparmor" / "exec").read_text() == ""


def test_real_procfs_passes_the_check():
    fd = os.open("/proc/self/attr", os.O_RDONLY)
    try:
        assert lsm._is_procfs(fd)
    finally:
        os.close(fd)


def test_mount_label_data_only_with_selinux(host):
    assert lsm.mount_label_data("mode=755", "lbl", host) == "mode=755"
    _enable_selinux(host)
    assert lsm.mount_label_data("mode=755", "lbl", host) == 'mode=755,context="lbl"'
    assert lsm.mount_label_data(None, "lbl", host) == 'context="lbl"'
