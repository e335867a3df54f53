"""config.json's mounts, in order, inside the rootfs (rootfs.Root): the option table (runc's), bind mounts
(runc's flag semantics, idmapped trees, sources the parent opens for a user namespace), filesystems (tmpfs with
the directory's mode, tmpcopyup, sysfs/proc on ordinary directories, overlay with bundle-relative dirs), cgroup
mounts (v1: a tmpfs of bound hierarchies), propagation and recursive attributes.
All privileged calls go through a `Syscalls` (`sys`), so this module is unit-tested against a recording fake.
"""
import errno
import os
import stat

from . import protocol
from . import syscalls as S
from .errors import OciError
from .rootfs import FLAGS, PROPAGATION, _flag_names, _remount_bind, _reopen_mount, clean, mount_at, mount_flags


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
    dest = "/" + clean(strip_root(root.path, m.destination))
    where = f"mounts[{index}] {m.destination}"
    opts = MountOpts(m.options)
    fstype = m.type or ("bind" if opts.is_bind else None)
    try:
        if opts.is_bind or fstype == "bind":
            _mount_bind(root, m, index, ctx, opts, dest, where)
        elif fstype == "cgroup" or fstype == "cgroup2":
            _mount_cgroup(root, dest, opts, ctx, where, fstype)
        else:
            _mount_filesystem(root, m, ctx, opts, fstype, dest, where)
    except OciError as e:
        msg = str(e)
        raise OciError(msg if msg.startswith(where) else f"{where}: {msg}") from None
    except OSError as e:
        raise OciError(f"{where}: {e.strerror or e}") from None


def _bind_source(m, index, ctx, rec, where):
    """(path, tree fd or None, stat) of a bind's source: the idmapped tree the parent made, the path itself, or
    a tree the parent opened because our user namespace's root cannot reach the path (under a 0700 directory
    of the host's root: runc's way)."""
    src = m.source or ""
    if not os.path.isabs(src):
        src = os.path.join(ctx.bundle, src)
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
        tree = ctx.open_source(src, bool(rec), where)
        ctx.idmap_fds[index] = tree  # (attach_tree closes it)
        st = os.fstat(tree)
    return src, tree, st


def _mount_bind(root, m, index, ctx, opts, dest, where):
    rec = opts.flags & S.MS_REC
    src, tree, st = _bind_source(m, index, ctx, rec, where)
    fd = root.ensure(dest, is_dir=stat.S_ISDIR(st.st_mode))
    try:
        if tree is not None:
            attach_tree(root.sys, tree, fd, where)
        else:
            _mount(root.sys, src, fd, "", S.MS_BIND | rec, None, where)
        remount_flags = opts.flags & ~(S.MS_BIND | S.MS_REC | S.MS_REMOUNT)
        clear = opts.clear & ~(S.MS_BIND | S.MS_REC | S.MS_REMOUNT)
        if remount_flags or clear:
            _set_bind_flags(root, dest, remount_flags, clear, where)
        _finish(root, dest, opts, where)
    finally:
        os.close(fd)


def _mount_filesystem(root, m, ctx, opts, fstype, dest, where):
    sys = root.sys
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
        elif "tmpcopyup" in opts.extensions and fstype == "tmpfs":
            _tmpcopyup(root, fd, m, flags, data, where)
        else:
            _mount(sys, m.source or fstype or "none", fd, fstype or "", flags, data, where)
        _finish(root, dest, opts, where)
    finally:
        os.close(fd)


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


def open_source_in(pid, path, recursive, idmap=None):
    """(fd, None) of a detached clone (open_tree) of `path` as seen in the mount namespace of `pid`, opened with
    the runtime's own privileges by a helper that joins that namespace; (None, message) if it cannot be.
    idmap=(user namespace fd, ridmap, where): the clone is idmapped to that namespace's mapping."""
    pchan, cchan = protocol.Channel.pair()
    helper = os.fork()
    if helper == 0:
        try:
            pchan.close()
            nsfd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
            S.SYS.setns(nsfd, S.CLONE_NEWNS)
            if idmap is not None:
                tree = make_idmapped_tree(S.SYS, path, idmap[0], recursive, idmap[1], idmap[2])
            else:
                flags = S.OPEN_TREE_CLONE | S.OPEN_TREE_CLOEXEC | (S.AT_RECURSIVE if recursive else 0)
                tree = S.SYS.open_tree(S.AT_FDCWD, path, flags)
            cchan.send_fd(tree, "tree")
            os._exit(0)
        except BaseException as e:
            try:
                if isinstance(e, OciError):
                    why = str(e)
                else:
                    why = "source " + path + ": " + (os.strerror(e.errno) if isinstance(e, OSError) and e.errno
                                                     else str(e))
                cchan.send("tree", err=why)
            finally:
                os._exit(1)
    cchan.close()
    try:
        m, fd = pchan.recv_fd()
    finally:
        pchan.close()
        try:
            os.waitpid(helper, 0)
        except ChildProcessError:
            pass
    if fd is None:
        return None, (m or {}).get("err") or f"source {path}: the helper died"
    return fd, None
