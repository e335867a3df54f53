"""Device nodes in the container's /dev: the default set, linux.devices, and the standard symlinks.

Outside a user namespace nodes are made with mknod; inside one (mknod is not allowed there) the host's node is
bind-mounted onto an empty file, as runc does. Paths are resolved inside the rootfs (see rootfs.Root).
"""
import os
import stat

from . import syscalls as S
from .config import Device
from .errors import OciError
from .rootfs import clean

# runc's order (specconv AllowedDevices): in a user namespace they are bind mounts, whose order shows
DEFAULT_DEVICES = (
    Device(type="c", path="/dev/null", major=1, minor=3, file_mode=0o666, uid=0, gid=0),
    Device(type="c", path="/dev/random", major=1, minor=8, file_mode=0o666, uid=0, gid=0),
    Device(type="c", path="/dev/full", major=1, minor=7, file_mode=0o666, uid=0, gid=0),
    Device(type="c", path="/dev/tty", major=5, minor=0, file_mode=0o666, uid=0, gid=0),
    Device(type="c", path="/dev/zero", major=1, minor=5, file_mode=0o666, uid=0, gid=0),
    Device(type="c", path="/dev/urandom", major=1, minor=9, file_mode=0o666, uid=0, gid=0),
)

SYMLINKS = (("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"), ("/proc/self/fd/1", "/dev/stdout"),
            ("/proc/self/fd/2", "/dev/stderr"))

_TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


def needs_dev_setup(mounts):
    """runc skips /dev set-up when /dev is bind-mounted from the host."""
    for m in mounts:
        if clean(m.destination) == "dev" and ("bind" in (m.options or ()) or "rbind" in (m.options or ())
                                               or m.type == "bind"):
            return False
    return True


def create_devices(root, devices, in_userns, default=True, where="linux.devices"):
    sys = root.sys
    todo = list(DEFAULT_DEVICES) if default else []
    seen = {clean(d.path) for d in devices}
    todo = [d for d in todo if clean(d.path) not in seen]
    for i, d in enumerate(todo + list(devices)):
        configured = i >= len(todo)
        label = f"{where}[{i - len(todo)}] {d.path}" if configured else d.path
        rel = clean(d.path)
        parent, _, name = rel.rpartition("/")
        if not name:
            raise OciError(f"{label}: not a valid device path")
        try:
            pfd = root.mkdir_all(parent)
        except OciError as e:
            raise OciError(f"{label}: {e}") from None
        try:
            if configured and _matches_existing(pfd, name, d, label):
                continue
            _make_one(sys, pfd, name, d, in_userns, label)
        finally:
            os.close(pfd)


def _make_one(sys, pfd, name, d, in_userns, label):
    mode = d.file_mode if d.file_mode is not None else 0o666
    ftype = _TYPES.get(d.type)
    if ftype is None:
        raise OciError(f"{label}: unknown device type {d.type!r}")
    if in_userns and d.type != "p":
        # bind-mount the host's node onto an empty regular file
        host = f"/dev/{os.path.basename(d.path)}" if (d.major, d.minor) in _HOST_DEFAULTS else d.path
        try:
            os.unlink(name, dir_fd=pfd)  # whatever is there (a FIFO would block an open) goes first
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            raise OciError(f"{label}: a directory is in the way") from None
        except OSError as e:
            raise OciError(f"{label}: {os.strerror(e.errno)}") from None
        try:
            fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644,
                         dir_fd=pfd)
            os.close(fd)
        except OSError as e:
            raise OciError(f"{label}: {os.strerror(e.errno)}") from None
        tfd = sys.openat2(pfd, name, os.O_PATH, 0, S.RESOLVE_BENEATH | S.RESOLVE_NO_SYMLINKS)
        try:
            sys.mount(host, S.fd_path(tfd), "", S.MS_BIND, None)
        except OSError as e:
            raise OciError(f"{label}: bind-mount {host}: {os.strerror(e.errno)}") from None
        finally:
            os.close(tfd)
        return
    try:
        os.unlink(name, dir_fd=pfd)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        raise OciError(f"{label}: a directory is in the way") from None
    except OSError:
        pass
    dev = os.makedev(d.major or 0, d.minor or 0) if d.type != "p" else 0
    try:
        sys.mknodat(pfd, name, ftype | (mode & 0o777), dev)
    except OSError as e:
        raise OciError(f"{label}: mknod: {os.strerror(e.errno)}") from None
    fd = sys.openat2(pfd, name, os.O_PATH, 0, S.RESOLVE_BENEATH | S.RESOLVE_NO_SYMLINKS)
    try:
        # chmod explicitly: mknod's mode is filtered by the umask; permission bits only (no setuid/setgid/sticky
        # on a device node: runc's result too)
        os.chmod(S.fd_path(fd), mode & 0o777)
        uid = d.uid if d.uid is not None else 0
        gid = d.gid if d.gid is not None else 0
        if uid or gid:
            os.chown(S.fd_path(fd), uid, gid)
    except OSError as e:
        raise OciError(f"{label}: {os.strerror(e.errno)}") from None
    finally:
        os.close(fd)


def _matches_existing(pfd, name, d, label):
    """config-linux.md: a file already at the path that does not match the requested device MUST be an
    error. One that matches (same type, major and minor) is kept, with the requested mode and owner."""
    try:
        st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    ftype = _TYPES.get(d.type)
    same = stat.S_IFMT(st.st_mode) == ftype and (
        d.type == "p" or (os.major(st.st_rdev), os.minor(st.st_rdev)) == (d.major or 0, d.minor or 0))
    if not same:
        raise OciError(f"{label}: a file that is not this device already exists there")
    mode = d.file_mode if d.file_mode is not None else 0o666
    os.chmod(name, mode & 0o777, dir_fd=pfd, follow_symlinks=False)
    if d.uid is not None or d.gid is not None:
        os.chown(name, d.uid if d.uid is not None else -1, d.gid if d.gid is not None else -1, dir_fd=pfd,
                 follow_symlinks=False)
    return True


_HOST_DEFAULTS = {(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0)}


def create_symlinks(root, console=False):
    try:
        dfd = root.mkdir_all("/dev")
    except OciError as e:
        raise OciError(f"/dev symlinks: {e}") from None
    try:
        links = list(SYMLINKS)
        if os.path.exists("/proc/kcore"):
            links.append(("/proc/kcore", "/dev/core"))
        for target, path in links:
            try:
                root.sys.symlinkat(target, dfd, os.path.basename(path))
            except FileExistsError:
                pass
        # /dev/ptmx -> pts/ptmx (the devpts newinstance one)
        try:
            os.unlink("ptmx", dir_fd=dfd)
        except (FileNotFoundError, IsADirectoryError):
            pass
        except OSError:
            pass
        try:
            root.sys.symlinkat("pts/ptmx", dfd, "ptmx")
        except FileExistsError:
            pass
    finally:
        os.close(dfd)
