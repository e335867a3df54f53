"""The root filesystem: mounts in order, pivot_root (or MS_MOVE+chroot), masked and read-only paths.

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
# recursive mount attributes (mount_setattr with AT_RECURSIVE): option -> (clear, attr)
REC_ATTRS = {
    "rro": (False, S.MOUNT_ATTR_RDONLY), "rrw": (True, S.MOUNT_ATTR_RDONLY),
    "rnosuid": (False, S.MOUNT_ATTR_NOSUID), "rsuid": (True, S.MOUNT_ATTR_NOSUID),
    "rnodev": (False, S.MOUNT_ATTR_NODEV), "rdev": (True, S.MOUNT_ATTR_NODEV),
    "rnoexec": (False, S.MOUNT_ATTR_NOEXEC), "rexec": (True, S.MOUNT_ATTR_NOEXEC),
    "rnodiratime": (False, S.MOUNT_ATTR_NODIRATIME), "rdiratime": (True, S.MOUNT_ATTR_NODIRATIME),
    "rrelatime": (False, S.MOUNT_ATTR_RELATIME), "rnorelatime": (True, S.MOUNT_ATTR_RELATIME),
    "rnoatime": (False, S.MOUNT_ATTR_NOATIME), "ratime": (True, S.MOUNT_ATTR_NOATIME),
    "rstrictatime": (False, S.MOUNT_ATTR_STRICTATIME), "rnostrictatime": (True, S.MOUNT_ATTR_STRICTATIME),
    "rnosymfollow": (False, S.MOUNT_ATTR_NOSYMFOLLOW), "rsymfollow": (True, S.MOUNT_ATTR_NOSYMFOLLOW),
}
EXTENSIONS = ("tmpcopyup", "idmap", "ridmap")


class MountOpts:
    __slots__ = ("flags", "clear", "data", "propagation", "attr_set", "attr_clr", "extensions")

    def __init__(self, options):
        self.flags = 0
        self.clear = 0
        self.data = []
        self.propagation = []
        self.attr_set = 0
        self.attr_clr = 0
        self.extensions = set()
        for o in options or ():
            f = FLAGS.get(o)
            if f is not None:
                clear, flag = f
                if clear:
                    self.flags &= ~flag
                    self.clear |= flag
                else:
                    self.flags |= flag
                continue
            p = PROPAGATION.get(o)
            if p is not None:
                self.propagation.append(p)
                continue
            r = REC_ATTRS.get(o)
            if r is not None:
                clear, attr = r
                if attr & S.MOUNT_ATTR__ATIME or attr == S.MOUNT_ATTR_RELATIME:
                    # the atime mode is one field: the last option wins
                    self.attr_clr |= S.MOUNT_ATTR__ATIME
                    self.attr_set &= ~S.MOUNT_ATTR__ATIME
                    if not clear:
                        self.attr_set |= attr
                elif clear:
                    self.attr_clr |= attr
                    self.attr_set &= ~attr
                else:
                    self.attr_set |= attr
                continue
            if o in EXTENSIONS:
                self.extensions.add(o)
                continue
            self.data.append(o)

    @property
    def is_bind(self):
        return bool(self.flags & S.MS_BIND)


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


def _data_str(parts, extra=None):
    parts = list(parts)
    if extra:
        parts.append(extra)
    return ",".join(parts) or None


class MountContext:
    """What the mounts need from the rest of the runtime."""

    def __init__(self, bundle, cgroup_plan=None, in_userns=False, new_netns=True, mount_label=None):
        self.bundle = bundle
        self.cgroup_plan = cgroup_plan  # (version, [(name, host_dir)]) from the cgroup manager, or None
        self.in_userns = in_userns
        self.new_netns = new_netns
        self.mount_label = mount_label
        self.ensure_placed = lambda: None  # the init's cgroup must be final before a cgroup mount
        self.idmap_fds = {}  # mount index -> fd of a detached mount tree the parent made (see below)
        # idmapped mounts (indexes): open_idmapped(index, path, recursive, where) -> fd of the idmapped detached
        # clone of the source, made by the parent when the mount's turn comes (in our mount namespace)
        self.idmapped = ()
        self.open_idmapped = None
        self.cgroup_ns = False  # the container has a cgroup namespace of its own (cgroup v1: fresh mounts)
        self.readonly_later = []  # (dest, where): read-only tmpfs and /dev, made read-only by finish_readonly()
        # in a user namespace: open_source(path, recursive) -> fd of a detached clone of the bind source, opened
        # by the parent with the runtime's privileges inside the container's mount namespace (runc's way)
        self.open_source = None


def strip_root(rootfs, path):
    """A destination written as a host path under the rootfs ("<rootfs>/mnt") means the container's /mnt, as
    runc reads it (pathrs.LexicallyStripRoot)."""
    r = "/" + clean(rootfs or "")
    p = "/" + clean(path)
    if r != "/" and (p == r or p.startswith(r + "/")):
        return p[len(r):] or "/"
    return path


def mount_one(root, m, index, ctx):
    """Perform config mount number `index` inside `root`. Errors name the mount: `mounts[3] /data: ...`."""
    sys = root.sys
    dest = "/" + clean(strip_root(root.path, m.destination))
    where = f"mounts[{index}] {m.destination}"
    opts = MountOpts(m.options)
    fstype = m.type or ("bind" if opts.is_bind else None)
    is_bind = opts.is_bind or fstype == "bind"
    try:
        if is_bind:
            src = m.source or ""
            if not os.path.isabs(src):
                src = os.path.join(ctx.bundle, src)
            rec = opts.flags & S.MS_REC
            tree = ctx.idmap_fds.get(index)
            if tree is None and index in ctx.idmapped:
                tree = ctx.open_idmapped(index, src, bool(rec), where)
                ctx.idmap_fds[index] = tree
            try:
                st = os.fstat(tree) if tree is not None else os.stat(src)
            except OSError as e:
                if ctx.open_source is None or not isinstance(e, (PermissionError, FileNotFoundError)):
                    if isinstance(e, FileNotFoundError):
                        raise OciError(f"{where}: source {m.source} does not exist") from None
                    raise OciError(f"{where}: source {m.source}: {e.strerror}") from None
                # a user namespace's root may not reach the source (under a 0700 directory of the host's root):
                # the parent opens it for us, with the runtime's privileges, in our mount namespace (runc's way)
                tree = ctx.open_source(src, bool(rec), where)
                ctx.idmap_fds[index] = tree  # (closed with the others)
                st = os.fstat(tree)
            fd = root.ensure(dest, is_dir=stat.S_ISDIR(st.st_mode))
            try:
                if tree is not None:
                    attach_tree(sys, tree, fd, where)
                else:
                    _mount(sys, src, fd, "", S.MS_BIND | rec, None, where)
                remount_flags = opts.flags & ~(S.MS_BIND | S.MS_REC | S.MS_REMOUNT)
                clear = opts.clear & ~(S.MS_BIND | S.MS_REC | S.MS_REMOUNT)
                if remount_flags or clear:
                    _set_bind_flags(root, dest, remount_flags, clear, where)
                _finish(root, dest, opts, where)
            finally:
                os.close(fd)
            return
        if fstype == "cgroup" or fstype == "cgroup2":
            return _mount_cgroup(root, dest, opts, ctx, where, fstype)
        if fstype in ("proc", "sysfs"):
            _ordinary_directory(root, dest, fstype, where)
        # tmpfs over an existing directory keeps the directory's mode unless the options say otherwise
        # (runc: "mode=<that mode>" ahead of the options, so a later mode= still wins)
        mode = _existing_mode(root, dest) if fstype == "tmpfs" else None
        fd = root.ensure(dest, is_dir=True)
        try:
            data = _data_str(([f"mode={mode:04o}"] if mode is not None else []) + opts.data)
            if ctx.mount_label and fstype not in ("proc", "sysfs", "overlay"):
                from . import lsm

                data = lsm.mount_label_data(data, ctx.mount_label)
            flags = opts.flags & ~S.MS_REMOUNT
            if flags & S.MS_RDONLY and (fstype == "tmpfs" or dest == "/dev"):
                # runc's order: files are still made there (device nodes, /dev/pts, the console, a tmpcopyup),
                # so the mount is read-only only at the end, as a bind remount (finish_readonly)
                flags &= ~S.MS_RDONLY
                ctx.readonly_later.append((dest, where))
            if fstype == "sysfs" and ctx.in_userns:
                try:
                    _mount(sys, m.source or "sysfs", fd, "sysfs", flags, data, where)
                except OciError as e:
                    # refused as runc refuses it (binding the host's /sys instead would show what was not asked
                    # for); the producers that need it write a bind of /sys themselves (runc spec --rootless,
                    # podman, Docker with userns-remap and the host's network)
                    raise OciError(f"{e} (sysfs can be mounted only by a user namespace owning the network "
                                   f"namespace: give the container a network namespace of its own, or bind /sys)")
            elif fstype == "overlay":
                _mount(sys, m.source or "overlay", fd, "overlay", flags, _overlay_data(opts.data, ctx.bundle), where)
            else:
                if "tmpcopyup" in opts.extensions and fstype == "tmpfs":
                    _tmpcopyup(root, fd, m, flags, data, where)
                else:
                    _mount(sys, m.source or fstype or "none", fd, fstype or "", flags, data, where)
            _finish(root, dest, opts, where)
        finally:
            os.close(fd)
    except OciError as e:
        msg = str(e)
        raise OciError(msg if msg.startswith(where) else f"{where}: {msg}") from None
    except OSError as e:
        raise OciError(f"{where}: {e.strerror or e}") from None


def _ordinary_directory(root, dest, fstype, where):
    """procfs and sysfs go only onto a real directory: a symlink at the destination (a rootfs whose /proc links
    elsewhere) would put them where LSM labels do not expect them (CVE-2019-19921); runc refuses it too."""
    rel = clean(dest)
    parent, _, name = rel.rpartition("/")
    if not name:
        return
    try:
        pfd = root.resolve(parent)
    except FileNotFoundError:
        return  # made below, as a directory
    try:
        st = os.lstat(name, dir_fd=pfd)
    except FileNotFoundError:
        return
    finally:
        os.close(pfd)
    if not stat.S_ISDIR(st.st_mode):
        raise OciError(f'{where}: filesystem "{fstype}" must be mounted on ordinary directory')


def _existing_mode(root, dest):
    """Permission bits (with setuid/setgid/sticky) of an existing `dest` in the root, or None if absent."""
    try:
        fd = root.resolve(dest)
    except FileNotFoundError:
        return None
    try:
        return stat.S_IMODE(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


def finish_readonly(root, ctx):
    """The read-only tmpfs and /dev mounts, made read-only once everything in them exists (mount_one)."""
    for dest, where in ctx.readonly_later:
        _remount_bind(root, dest, S.MS_RDONLY, where)


def make_idmapped_tree(sys, src, userns_fd, recursive, idmap_recursive, where):
    """A detached clone of `src` whose files are seen through the ID mapping of `userns_fd`
    (open_tree + mount_setattr MOUNT_ATTR_IDMAP). Made by a helper of the parent that joined the init's mount
    namespace, in the initial user namespace where that is permitted; the init only attaches it (attach_tree).
    Returns the tree's fd.
    `recursive` (rbind) clones the submounts too; `idmap_recursive` (ridmap) maps them as well; with "idmap"
    only the top mount is mapped, as runc does."""
    flags = S.OPEN_TREE_CLONE | S.OPEN_TREE_CLOEXEC | (S.AT_RECURSIVE if recursive else 0)
    try:
        tree = sys.open_tree(S.AT_FDCWD, src, flags)
    except OSError as e:
        raise OciError(f"{where}: open_tree {src}: {os.strerror(e.errno)}") from None
    try:
        try:
            sys.mount_setattr(tree, "", S.AT_EMPTY_PATH | (S.AT_RECURSIVE if recursive and idmap_recursive else 0),
                              S.MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
        except OSError as e:
            why = {errno.EINVAL: "the filesystem or kernel does not support idmapped mounts",
                   errno.EPERM: "not permitted", errno.ENOSYS: "the kernel has no mount_setattr"}.get(e.errno)
            raise OciError(f"{where}: idmapped mount of {src}: {why or os.strerror(e.errno)}") from None
    except BaseException:
        os.close(tree)
        raise
    return tree


def attach_tree(sys, tree, target_fd, where):
    """Attach a detached mount tree (from make_idmapped_tree) onto the destination's fd."""
    try:
        sys.move_mount(tree, "", target_fd, "", S.MOVE_MOUNT_F_EMPTY_PATH | S.MOVE_MOUNT_T_EMPTY_PATH)
    except OSError as e:
        raise OciError(f"{where}: move_mount: {os.strerror(e.errno)}") from None
    finally:
        os.close(tree)


def _mount(sys, source, fd, fstype, flags, data, where):
    try:
        mount_at(sys, source, fd, fstype, flags, data)
    except OSError as e:
        extra = ""
        if e.errno == errno.ENODEV:
            extra = f" (unknown filesystem type {fstype!r})"
        elif e.errno == errno.ENOENT and fstype in ("", "bind"):
            extra = f" (source {source} does not exist)"
        raise OciError(f"{where}: mount {source} ({fstype or 'bind'}): {os.strerror(e.errno)}{extra}") from None


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


# flags a less privileged user namespace inherits locked (the kernel's MNT_LOCK_*): runc's mntLockFlags
_ATIME_FLAGS = S.MS_NOATIME | S.MS_RELATIME | S.MS_STRICTATIME | S.MS_NODIRATIME
_LOCKABLE = S.MS_RDONLY | S.MS_NODEV | S.MS_NOEXEC | S.MS_NOSUID | _ATIME_FLAGS


def _set_bind_flags(root, dest, flags, clear, where):
    """A config bind mount's flags, runc's way (not mount(8)'s): once an option names any flag, the mount gets the
    flags named and no others (a bind of a nodev,noexec source with "ro" is ro only), except the atime mode, which
    the kernel keeps unless one is named. In a user namespace the source's locked flags cannot be cleared: then
    an option clearing one of them ("rw" on a ro source) is an error, a different atime mode than the locked one
    is an error, and otherwise the locked flags are kept on top of the named ones."""
    fd = _reopen_mount(root, dest)
    try:
        path = S.fd_path(fd)
        want = S.MS_BIND | S.MS_REMOUNT | flags
        try:
            root.sys.mount("", path, "", want, None)
            return
        except OSError as e:
            if e.errno != errno.EPERM:
                raise OciError(f"{where}: remount {dest} with {_flag_names(flags)}: {os.strerror(e.errno)}") from None
            err = os.strerror(e.errno)
        have = mount_flags(fd)
        locked = have & clear & _LOCKABLE
        if locked:
            raise OciError(f"{where}: cannot clear locked flags {_flag_names(locked)} of the source "
                           f"(a user namespace cannot): {err}")
        if flags & _ATIME_FLAGS and flags & _ATIME_FLAGS != have & _ATIME_FLAGS:
            raise OciError(f"{where}: cannot change locked atime flags {_flag_names(have & _ATIME_FLAGS)} "
                           f"of the source: {err}")
        try:
            root.sys.mount("", path, "", want | (have & _LOCKABLE), None)
        except OSError as e:
            raise OciError(f"{where}: remount {dest} with {_flag_names(flags)} and the source's locked flags "
                           f"{_flag_names(have & _LOCKABLE)}: {os.strerror(e.errno)}") from None
    finally:
        os.close(fd)


def _finish(root, dest, opts, where):
    """Propagation and recursive attributes, on the mount just made."""
    if not opts.propagation and not (opts.attr_set or opts.attr_clr) and not (opts.flags & S.MS_REMOUNT):
        return
    fd = _reopen_mount(root, dest)
    try:
        for p in opts.propagation:
            try:
                root.sys.mount("", S.fd_path(fd), "", p, None)
            except OSError as e:
                raise OciError(f"{where}: set propagation: {os.strerror(e.errno)}") from None
        if opts.attr_set or opts.attr_clr:
            try:
                root.sys.mount_setattr(fd, "", S.AT_EMPTY_PATH | S.AT_RECURSIVE, opts.attr_set, opts.attr_clr)
            except OSError as e:
                raise OciError(f"{where}: recursive mount attributes: {os.strerror(e.errno)}") from None
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


def _overlay_data(parts, bundle):
    out = []
    for p in parts:
        k, eq, v = p.partition("=")
        if eq and k in ("lowerdir", "upperdir", "workdir"):
            v = ":".join(x if os.path.isabs(x) else os.path.join(bundle, x) for x in v.split(":"))
            p = f"{k}={v}"
        out.append(p)
    return ",".join(out) or None


def _tmpcopyup(root, fd, m, flags, data, where):
    """Mount a tmpfs and copy what was at the destination into it (runc's tmpcopyup extension)."""
    sys = root.sys
    import tempfile
    import shutil

    tmp = tempfile.mkdtemp(prefix=".ocirun-tmpcopyup-")
    private = False
    try:
        # a private mount of its own to stage in: MS_MOVE refuses a mount whose parent is shared (/ is, with
        # rootfsPropagation shared), as runc's prepareTmp does
        sys.mount(tmp, tmp, "", S.MS_BIND, None)
        private = True
        sys.mount("", tmp, "", S.MS_PRIVATE, None)
        staging = os.path.join(tmp, "t")
        os.mkdir(staging)
        sys.mount(m.source or "tmpfs", staging, "tmpfs", flags, data)
        try:
            src = S.fd_path(fd)
            for name in os.listdir(src):
                s = os.path.join(src, name)
                d = os.path.join(staging, name)
                if os.path.isdir(s) and not os.path.islink(s):
                    shutil.copytree(s, d, symlinks=True, copy_function=_copy_owned)
                    _keep_owners(s, d)
                else:
                    _copy_owned(s, d)
            # the mode comes from the options (mount_one puts mode=<the directory's mode> first where there was
            # a directory; a new one keeps the kernel's 1777, as runc); the owner stays the directory's
            st = os.stat(src)
            given = {o.partition("=")[0] for o in (data or "").split(",")}
            os.chown(staging, st.st_uid if "uid" not in given else -1, st.st_gid if "gid" not in given else -1)
            sys.mount(staging, S.fd_path(fd), "", S.MS_MOVE, None)
        except BaseException:
            try:
                sys.umount2(staging, S.MNT_DETACH)
            except OSError:
                pass
            raise
    finally:
        if private:
            try:
                sys.umount2(tmp, S.MNT_DETACH)
            except OSError:
                pass
        try:
            os.rmdir(os.path.join(tmp, "t"))
        except OSError:
            pass
        try:
            os.rmdir(tmp)
        except OSError:
            pass


def _copy_owned(s, d):
    import shutil

    shutil.copy2(s, d, follow_symlinks=False)
    st = os.lstat(s)
    os.lchown(d, st.st_uid, st.st_gid)
    return d


def _keep_owners(src_dir, dst_dir):
    """copytree keeps modes, not owners: give every copied directory (and the tree's root) its owner back."""
    for dirpath, dirnames, _ in os.walk(src_dir):
        rel = os.path.relpath(dirpath, src_dir)
        st = os.lstat(dirpath)
        os.lchown(os.path.join(dst_dir, rel) if rel != "." else dst_dir, st.st_uid, st.st_gid)


def _mount_cgroup(root, dest, opts, ctx, where, fstype):
    sys = root.sys
    ctx.ensure_placed()
    plan = ctx.cgroup_plan
    fd = root.ensure(dest, is_dir=True)
    try:
        if plan is None or plan[0] == 2 or fstype == "cgroup2":
            try:
                sys.mount("cgroup2", S.fd_path(fd), "cgroup2", opts.flags & ~S.MS_REMOUNT, _data_str(opts.data))
            except OSError as e:
                # Only "not permitted" (no cgroup namespace of our own) falls back to binding the container's
                # unified directory; a bad option or a missing filesystem is the config's error.
                unified = [d for n, d in (plan[1] if plan else ()) if n in ("", "unified")]
                if e.errno != errno.EPERM or not unified:
                    raise OciError(f"{where}: mount cgroup2: {os.strerror(e.errno)}") from None
                _mount(sys, unified[0], fd, "", S.MS_BIND | S.MS_REC, None, where)
                if opts.flags & S.MS_RDONLY:
                    _remount_bind(root, dest, opts.flags & ~S.MS_REMOUNT, where)
            return
        # cgroup v1: a tmpfs with one bind mount per hierarchy of the container's own cgroup directory
        # runc's tmpfs there takes nosuid,nodev,noexec whatever the mount's options (its defaultMountFlags)
        _mount(sys, "tmpfs", fd, "tmpfs", S.MS_NOSUID | S.MS_NODEV | S.MS_NOEXEC, "mode=755", where)
    finally:
        os.close(fd)
    for name, host_dir in plan[1]:
        if name in ("", "unified"):
            continue  # a hybrid host's cgroup2 hierarchy: runc binds only the v1 hierarchies, so do we
        sub = dest + "/" + name
        sfd = root.ensure(sub, is_dir=True)
        try:
            if ctx.cgroup_ns:
                # in a cgroup namespace of its own, each hierarchy is mounted afresh (its root is the container's
                # cgroup), as runc does: source "systemd" and name=systemd for the named systemd hierarchy
                named = name == "systemd"
                _mount(sys, "systemd" if named else "cgroup", sfd, "cgroup",
                       opts.flags & ~(S.MS_REMOUNT | S.MS_BIND | S.MS_REC), "name=systemd" if named else name, where)
            else:
                _mount(sys, host_dir, sfd, "", S.MS_BIND | S.MS_REC, None, where)
        finally:
            os.close(sfd)
        if not ctx.cgroup_ns:
            _remount_bind(root, sub, opts.flags & ~(S.MS_REMOUNT | S.MS_BIND | S.MS_REC), where)
        if "," in name:  # co-mounted controllers (cpu,cpuacct): the usual symlinks
            for alias in name.split(","):
                try:
                    pfd = root.resolve(dest)
                    try:
                        sys.symlinkat(name, pfd, alias)
                    finally:
                        os.close(pfd)
                except FileExistsError:
                    pass
    # the tmpfs itself stays writable, as runc leaves it (only the hierarchies bound into it are read-only)


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
