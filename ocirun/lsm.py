"""AppArmor and SELinux: process.apparmorProfile, process.selinuxLabel, linux.mountLabel.

Where an LSM is enabled, labels are applied on exec by writing /proc/self/attr (AppArmor: attr/apparmor/exec,
falling back to attr/exec, with "exec PROFILE"; SELinux: attr/exec, and attr/keycreate for the session
keyring). The attr directory must be a real procfs (CVE-2019-16884: a container rootfs can plant a fake /proc),
checked with fstatfs. On a host without the LSM, a requested profile or label fails `create` with a clear
error: silently running a container unconfined when confinement was asked for is the unsafe choice.
(runc ignores an AppArmor profile when AppArmor is disabled; we refuse, and say so.)
`root` lets unit tests point everything at a fake tree.
"""
import os

from .errors import OciError

PROC_SUPER_MAGIC = 0x9FA0


class Host:
    def __init__(self, root="/"):
        self.root = root

    def _p(self, *parts):
        return os.path.join(self.root, *parts)

    def apparmor_enabled(self):
        try:
            with open(self._p("sys/module/apparmor/parameters/enabled")) as f:
                on = f.read().strip() == "Y"
        except OSError:
            return False
        return on and os.path.isdir(self._p("sys/kernel/security/apparmor"))

    def selinux_enabled(self):
        return os.path.exists(self._p("sys/fs/selinux/enforce"))


def check(proc, linux, host=None):
    """At create, before anything is made: refuse labels this host cannot apply."""
    host = host or Host()
    if proc is not None and proc.apparmor_profile and not host.apparmor_enabled():
        raise OciError(f"process.apparmorProfile {proc.apparmor_profile!r}: AppArmor is not enabled on this host")
    if proc is not None and proc.selinux_label and not host.selinux_enabled():
        raise OciError(f"process.selinuxLabel {proc.selinux_label!r}: SELinux is not enabled on this host")
    if linux is not None and linux.mount_label and not host.selinux_enabled():
        raise OciError(f"linux.mountLabel {linux.mount_label!r}: SELinux is not enabled on this host")


def mount_label_data(data, label, host=None):
    """Mount data with the SELinux context= option added (only where SELinux is enabled)."""
    if not label or not (host or Host()).selinux_enabled():
        return data
    opt = f'context="{label}"'
    return f"{data},{opt}" if data else opt


def _is_procfs(fd):
    """fstatfs(fd).f_type == PROC_SUPER_MAGIC, via ctypes (statvfs does not report the type)."""
    from . import syscalls

    return syscalls.SYS.fstatfs_type(fd) == PROC_SUPER_MAGIC


def _write_attr(attr_dir_fd, name, value, what, verify_procfs=True):
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=attr_dir_fd)
    except OSError as e:
        raise OciError(f"{what}: cannot open attr/{name}: {e.strerror}") from None
    try:
        if verify_procfs and not _is_procfs(fd):
            raise OciError(f"{what}: attr/{name} is not on a real procfs (refusing to write a label there)")
        os.write(fd, value.encode())
    except OSError as e:
        raise OciError(f"{what}: writing attr/{name}: {e.strerror}") from None
    finally:
        os.close(fd)


def apply_exec_labels(proc, attr_dir="/proc/self/attr", host=None, verify_procfs=True):
    """In the init (or exec) just before execve: the labels the new program gets."""
    host = host or Host()
    if not proc.apparmor_profile and not proc.selinux_label:
        return
    try:
        dfd = os.open(attr_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as e:
        raise OciError(f"process: cannot open {attr_dir}: {e.strerror}") from None
    try:
        if proc.apparmor_profile:
            name = "apparmor/exec" if os.path.exists(os.path.join(attr_dir, "apparmor", "exec")) else "exec"
            _write_attr(dfd, name, f"exec {proc.apparmor_profile}", "process.apparmorProfile", verify_procfs)
        if proc.selinux_label:
            _write_attr(dfd, "exec", proc.selinux_label, "process.selinuxLabel", verify_procfs)
    finally:
        os.close(dfd)


def set_keyring_label(label, attr_dir="/proc/self/attr", verify_procfs=True):
    """SELinux: label the session keyring ocirun creates (write attr/keycreate before joining it)."""
    if not label:
        return
    dfd = os.open(attr_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        _write_attr(dfd, "keycreate", label, "process.selinuxLabel (keyring)", verify_procfs)
    finally:
        os.close(dfd)
