"""The root filesystem: paths inside it resolved safely (Root), mount flags read and set, the rootfs made a
mount point and pivoted into (pivot_root, or MS_MOVE + chroot), the root propagation, masked and read-only paths.
config.json's mounts themselves are mounts.py.

Security by construction: every in-container path is resolved with openat2(RESOLVE_IN_ROOT) against an fd of
the rootfs, so a symlink in the rootfs (absolute or `..`) can never lead outside it, and mounts are made onto the
opened fd (/proc/self/fd/N), never onto a path string that could be swapped between check and use.
All privileged calls go through a `Syscalls` (`sys`), so this module is unit-tested against a recording fake.
"""
import errno
import os
import stat

from . import syscalls as S
from .errors import OciError


# option -> (clear, flag): runc's table (runtime-spec config.md / mount(8)).
FLAGS = {
    "async": (True, S.MS_SYNCHRONOUS), "atime": (True, S.MS_NOATIME), "bind": (False, S.MS_BIND),
    "defaults": (False, 0), "dev": (True, S.MS_NODEV), "diratime": (True, S.MS_NODIRATIME),
    "dirsync": (False, S.MS_DIRSYNC), "exec": (True, S.MS_NOEXEC), "iversion": (False, 1 << 23),
    "lazytime": (False, S.MS_LAZYTIME), "loud": (True, S.MS_SILENT), "mand": (False, S.MS_MANDLOCK),
    "noatime": (False, S.MS_NOATIME), "nodev": (False, S.MS_NODEV), "nodiratime": (False, S.MS_NODIRATIME),
    "noexec": (False, S.MS_NOEXEC), "noiversion": (True, 1 << 23), "nolazytime": (True, S.MS_LAZYTIME),
    "nomand": (True, S.MS_MANDLOCK), "norelatime": (True, S.MS_RELATIME), "nostrictatime": (True, S.MS_STRICTATIME),
    "nosuid": (False, S.MS_NOSUID), "nosymfollow": (False, S.MS_NOSYMFOLLOW), "symfollow": (True, S.MS_NOSYMFOLLOW), "rbind": (False, S.MS_BIND | S.MS_REC),
    "relatime": (False, S.MS_RELATIME), "remount": (False, S.MS_REMOUNT), "ro": (False, S.MS_RDONLY),
    "rw": (True, S.MS_RDONLY), "silent": (False, S.MS_SILENT), "strictatime": (False, S.MS_STRICTATIME),
    "suid": (True, S.MS_NOSUID), "sync": (False, S.MS_SYNCHRONOUS),
}


PROPAGATION = {
    "private": S.MS_PRIVATE, "rprivate": S.MS_PRIVATE | S.MS_REC, "shared": S.MS_SHARED,
    "rshared": S.MS_SHARED | S.MS_REC, "slave": S.MS_SLAVE, "rslave": S.MS_SLAVE | S.MS_REC,
    "unbindable": S.MS_UNBINDABLE, "runbindable": S.MS_UNBINDABLE | S.MS_REC,
}


def clean(path):
    """Lexically clean an in-container path to a relative one ('' is the root). '..' cannot climb above /."""
    parts = []
    for c in path.split("/"):
        if c in ("", "."):
            continue
        if c == "..":
            if parts:
                parts.pop()
            continue
        parts.append(c)
    return "/".join(parts)


class Root:
    """An open rootfs directory; all in-container path operations go through it."""

    def __init__(self, path, sys=S.SYS):
        self.sys = sys
        self.path = path
        self.fd = sys.open(path, os.O_PATH | os.O_DIRECTORY)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def resolve(self, path, flags=os.O_PATH, mode=0):
        """openat2(RESOLVE_IN_ROOT) of an in-container path; symlinks are resolved as if the rootfs were /."""
        rel = clean(path)
        if not rel:
            return os.dup(self.fd) if flags == os.O_PATH else self.sys.openat2(self.fd, ".", flags, mode, 0)
        if not flags & os.O_PATH:
            flags |= os.O_NOCTTY
        return self.sys.openat2(self.fd, rel, flags, mode, S.RESOLVE_IN_ROOT | S.RESOLVE_NO_MAGICLINKS)

    def host_path(self, fd):
        """Where an fd we resolved really is (for messages and checks)."""
        try:
            return os.readlink(S.fd_path(fd))
        except OSError:
            return "?"

    def mkdir_all(self, path, mode=0o755, _depth=0):
        """mkdir -p inside the root; returns an O_PATH fd of the directory. A dangling symlink on the way is
        followed inside the root and its target made there (as runc's MkdirAllInRoot), never on the host."""
        rel = clean(path)
        if rel:
            try:  # it exists, usually: one openat2 (RESOLVE_IN_ROOT) instead of one per component
                return self.resolve(rel, os.O_PATH | os.O_DIRECTORY)
            except OSError:
                pass  # missing, or not a directory: the walk below makes it, or says precisely what is wrong
        fd = os.dup(self.fd)
        done = []
        for comp in rel.split("/") if rel else ():
            done.append(comp)
            try:
                nfd = self.resolve("/".join(done), os.O_PATH | os.O_DIRECTORY)
            except FileNotFoundError:
                try:
                    self.sys.mkdirat(fd, comp, mode)
                except FileExistsError:
                    pass  # raced, or a dangling symlink: the resolve below tells
                except OSError as e:
                    os.close(fd)
                    raise OciError(f"{path}: cannot create {'/' + '/'.join(done)}: {os.strerror(e.errno)}") from None
                try:
                    nfd = self.resolve("/".join(done), os.O_PATH | os.O_DIRECTORY)
                except FileNotFoundError:
                    try:
                        target = os.readlink(comp, dir_fd=fd)
                    except OSError:
                        target = None
                    os.close(fd)
                    if target is None or _depth >= 40:
                        raise OciError(f"{path}: {'/' + '/'.join(done)} is a dangling symlink") from None
                    rest = rel.split("/")[len(done):]
                    base = target if target.startswith("/") else "/" + "/".join(done[:-1] + [target])
                    return self.mkdir_all("/".join([base] + rest), mode, _depth + 1)
            except NotADirectoryError:
                os.close(fd)
                raise OciError(f"{path}: {'/' + '/'.join(done)} exists and is not a directory") from None
            except OSError as e:
                os.close(fd)
                raise OciError(f"{path}: {'/' + '/'.join(done)}: {os.strerror(e.errno)}") from None
            os.close(fd)
            fd = nfd
        return fd

    def ensure(self, path, is_dir=True, mode=0o755, _depth=0):
        """Make `path` exist inside the root (a directory, or an empty file) and return an O_PATH fd of it.

        A dangling symlink on the way is followed inside the root and its target created there (as runc
        does), never on the host."""
        rel = clean(path)
        if is_dir or not rel:
            return self.mkdir_all(path, mode)
        parent, _, name = rel.rpartition("/")
        try:
            return self.resolve(rel)
        except FileNotFoundError:
            pass
        pfd = self.mkdir_all(parent, 0o755)
        try:
            try:
                fd = self.sys.openat2(pfd, name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644,
                                      S.RESOLVE_BENEATH | S.RESOLVE_NO_SYMLINKS)
                os.close(fd)
            except (FileExistsError, OSError) as e:
                if isinstance(e, FileExistsError) or e.errno == 40:  # ELOOP: the name is a symlink
                    try:
                        target = os.readlink(name, dir_fd=pfd)
                    except OSError:
                        target = None
                    if target is not None:
                        if _depth >= 40:
                            raise OciError(f"{path}: too many levels of symbolic links") from None
                        nxt = target if target.startswith("/") else "/" + parent + "/" + target
                        os.close(pfd)
                        pfd = None
                        return self.ensure(nxt, False, mode, _depth + 1)
                elif not isinstance(e, FileExistsError):
                    raise
        finally:
            if pfd is not None:
                os.close(pfd)
        return self.resolve(rel)


def mount_at(sys, source, fd, fstype, flags, data):
    sys.mount(source, S.fd_path(fd), fstype, flags, data)


def _reopen_mount(root, dest):
    """After mounting, resolve the destination again: the new fd is on the new mount (the old fd is beneath it)."""
    return root.resolve(dest)


def _remount_bind(root, dest, flags, where):
    """Add `flags` to a mount the runtime made (read-only paths, a read-only /dev or tmpfs at the end, cgroup and
    sysfs binds): the mount's other flags are kept, so flags a user namespace inherited locked stay set."""
    fd = _reopen_mount(root, dest)
    try:
        want = S.MS_BIND | S.MS_REMOUNT | flags | statvfs_flags(fd)
        try:
            root.sys.mount("", S.fd_path(fd), "", want, None)
        except OSError as e:
            raise OciError(f"{where}: remount {dest} with {_flag_names(flags)}: {os.strerror(e.errno)}") from None
    finally:
        os.close(fd)


_ST_FLAGS = ((1, S.MS_RDONLY), (2, S.MS_NOSUID), (4, S.MS_NODEV), (8, S.MS_NOEXEC),
             (1024, S.MS_NOATIME), (2048, S.MS_NODIRATIME), (4096, S.MS_RELATIME))


def _statvfs_f_flag(fd):
    try:
        return os.statvfs(S.fd_path(fd)).f_flag
    except OSError:
        return 0


def statvfs_flags(fd):
    """The mount flags (MS_*) of the mount `fd` is on, as fstatvfs reports them (nosuid, nodev, noexec, atime)."""
    f = _statvfs_f_flag(fd)
    return _ms_flags(f)


def _ms_flags(f):
    out = 0
    for st_bit, ms in _ST_FLAGS[1:]:
        if f & st_bit:
            out |= ms
    return out


def mount_flags(fd):
    """All lockable flags of the mount `fd` is on: statvfs_flags plus ro, nosymfollow and strictatime (no atime
    mode reported means strictatime: the kernel does not report that one)."""
    f = _statvfs_f_flag(fd)
    out = _ms_flags(f)
    if f & 1:
        out |= S.MS_RDONLY
    if f & 0x2000:
        out |= S.MS_NOSYMFOLLOW
    if not out & (S.MS_NOATIME | S.MS_RELATIME):
        out |= S.MS_STRICTATIME
    return out


def _flag_names(flags):
    names = [n for n, (clear, f) in FLAGS.items() if not clear and f and flags & f == f and n not in ("rbind",)]
    return ",".join(names) or hex(flags)


def prepare_root(sys, rootfs, propagation):
    """Before the mounts: set / propagation in our mount namespace and make the rootfs a mount point."""
    flag = PROPAGATION.get(propagation or "", S.MS_SLAVE | S.MS_REC) if propagation else S.MS_SLAVE | S.MS_REC
    try:
        sys.mount("", "/", "", flag, None)
    except OSError as e:
        hint = " (is / a mount point? in a chroot, bind-mount its root onto itself)" if e.errno == errno.EINVAL else ""
        raise OciError(f"linux.rootfsPropagation: cannot set {propagation or 'rslave'} on /: "
                       f"{os.strerror(e.errno)}{hint}") from None
    _parent_mount_propagation(sys, rootfs, propagation)
    bind_rootfs(sys, rootfs)


def bind_rootfs(sys, rootfs):
    """The rootfs bound onto itself: a mount point of its own (to pivot into, or to make read-only)."""
    try:
        sys.mount(rootfs, rootfs, "", S.MS_BIND | S.MS_REC, None)
    except OSError as e:
        raise OciError(f"root.path {rootfs}: cannot bind-mount the rootfs: {os.strerror(e.errno)}") from None


def _parent_mount_propagation(sys, rootfs, propagation):
    """The mount holding the rootfs (the rootfs itself if it is a mount point, else the nearest mount above
    it) becomes a slave when rootfsPropagation is unset (= rslave) or slave/rslave, so the container's root and
    the bind mounts made from that filesystem keep receiving the host's mount events (config.md: a `slave`
    mount receives its source's events); private for an explicit private/shared/unbindable, as runc does.
    Either way it is no longer shared (pivot_root(2) refuses a shared parent) nor unbindable (the rootfs could
    not be bind-mounted onto itself). runc 1.2+ makes it private when unset too, which cuts such binds off
    from their source: spec/EXTENSIONS.md."""
    flags = S.MS_SLAVE if not propagation or PROPAGATION.get(propagation, 0) & S.MS_SLAVE else S.MS_PRIVATE
    path = rootfs
    while True:
        try:
            sys.mount("", path, "", flags, None)
            return
        except OSError as e:
            if e.errno != errno.EINVAL or path == "/":  # EINVAL: not a mount point, try its parent
                raise OciError(f"root.path {rootfs}: cannot change the propagation of {path}: "
                               f"{os.strerror(e.errno)}") from None
        path = os.path.dirname(path)


def apply_root_propagation(sys, propagation):
    """After pivot_root: the configured rootfsPropagation on the container's "/" (runc does it here, where it
    cannot reach the host's mounts). The default (unset) stays rslave."""
    flag = PROPAGATION.get(propagation or "")
    if not flag:
        return
    try:
        # as runc, only the flag itself: making / private first (recursively) would also take every volume out
        # of its peer group with the host, and a Bidirectional (rshared) volume would no longer propagate
        sys.mount("", "/", "", flag, None)
    except OSError as e:
        raise OciError(f"linux.rootfsPropagation: cannot make / {propagation}: {os.strerror(e.errno)}") from None


def _hide_host_proc_sys(sys, rootfs):
    """--no-pivot: the host's own full proc and sysfs mounts stay in our mount namespace beside the rootfs, and
    while one is reachable the kernel lets the container mount a new procfs/sysfs (its check looks at every
    mount of the namespace). Detach them (a tmpfs over any that cannot be), as runc's msMoveRoot does."""
    from .cgroups.common import _unescape

    prefix = rootfs.rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        lines = f.read().splitlines()
    full = []
    for line in lines:
        pre, _, post = line.partition(" - ")
        fields, fstype = pre.split(" "), post.split(" ")[0]
        mp, mroot = _unescape(fields[4]), _unescape(fields[3])
        if fstype in ("proc", "sysfs") and mroot == "/" and mp != rootfs and not mp.startswith(prefix):
            full.append(mp)
    for mp in full:
        try:
            sys.mount("", mp, "", S.MS_SLAVE | S.MS_REC, None)  # the unmount must not reach the host
        except OSError as e:
            if e.errno == errno.ENOENT:
                continue  # under something already detached
            raise OciError(f"--no-pivot: cannot make {mp} a slave: {os.strerror(e.errno)}") from None
        try:
            sys.umount2(mp, S.MNT_DETACH)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.EPERM):
                raise OciError(f"--no-pivot: cannot detach the host's {mp}: {os.strerror(e.errno)}") from None
            try:
                sys.mount("tmpfs", mp, "tmpfs", 0, None)
            except OSError as e2:
                raise OciError(f"--no-pivot: cannot cover the host's {mp}: {os.strerror(e2.errno)}") from None


def pivot(sys, rootfs, no_pivot=False):
    if no_pivot:
        _hide_host_proc_sys(sys, rootfs)
        os.chdir(rootfs)
        try:
            sys.mount(rootfs, "/", "", S.MS_MOVE, None)
        except OSError as e:
            raise OciError(f"--no-pivot: cannot move the rootfs onto /: {os.strerror(e.errno)}") from None
        sys.chroot(".")
        os.chdir("/")
        return
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new)
        try:
            sys.pivot_root(".", ".")
        except OSError as e:
            raise OciError(f"pivot_root {rootfs}: {os.strerror(e.errno)} (try --no-pivot on a ramfs root)") from None
        os.fchdir(old)
        # Do not let the unmount of the old root propagate to the host.
        sys.mount("", ".", "", S.MS_SLAVE | S.MS_REC, None)
        sys.umount2(".", S.MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(old)
        os.close(new)


def _is_dev_null(fd):
    st = os.fstat(fd)
    return stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3


def _existing(root, p, field):
    """An O_PATH fd of in-container path p, or None when it does not exist (such paths are skipped)."""
    try:
        return root.resolve(p)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise OciError(f"{field}: {p}: {os.strerror(e.errno)}") from None


def mask_paths(root, paths):
    """Over each existing path: /dev/null for files, an empty read-only tmpfs for directories. A path listed
    twice is masked once (runc)."""
    sys = root.sys
    null = None
    try:
        for p in dict.fromkeys("/" + clean(x) for x in paths):
            fd = _existing(root, p, "linux.maskedPaths")
            if fd is None:
                continue
            try:
                if stat.S_ISDIR(os.fstat(fd).st_mode):
                    try:
                        sys.mount("tmpfs", S.fd_path(fd), "tmpfs", S.MS_RDONLY, None)
                    except OSError as e:
                        raise OciError(f"linux.maskedPaths: {p}: {os.strerror(e.errno)}") from None
                else:
                    if null is None:
                        try:
                            null = root.resolve("/dev/null")
                        except OSError as e:
                            raise OciError(f"linux.maskedPaths: {p}: /dev/null in the container: "
                                           f"{os.strerror(e.errno)}") from None
                        # CVE-2025-31133: never bind whatever a container put at /dev/null.
                        if not _is_dev_null(null):
                            raise OciError("linux.maskedPaths: /dev/null in the container is not the null device")
                    try:
                        sys.mount(S.fd_path(null), S.fd_path(fd), "", S.MS_BIND, None)
                    except OSError as e:
                        raise OciError(f"linux.maskedPaths: {p}: {os.strerror(e.errno)}") from None
            finally:
                os.close(fd)
    finally:
        if null is not None:
            os.close(null)


def readonly_paths(root, paths):
    sys = root.sys
    for p in paths:
        fd = _existing(root, p, "linux.readonlyPaths")
        if fd is None:
            continue
        try:
            try:
                sys.mount(S.fd_path(fd), S.fd_path(fd), "", S.MS_BIND | S.MS_REC, None)
            except OSError as e:
                raise OciError(f"linux.readonlyPaths: {p}: {os.strerror(e.errno)}") from None
        finally:
            os.close(fd)
        _remount_bind(root, p, S.MS_RDONLY | S.MS_REC, f"linux.readonlyPaths: {p}")


def remount_root_readonly(sys):
    fd = os.open("/", os.O_PATH | os.O_CLOEXEC)
    try:
        locked = statvfs_flags(fd)
    finally:
        os.close(fd)
    try:
        sys.mount("", "/", "", S.MS_BIND | S.MS_REMOUNT | S.MS_RDONLY | locked, None)
    except OSError as e:
        raise OciError(f"root.readonly: cannot remount / read-only: {os.strerror(e.errno)}") from None
