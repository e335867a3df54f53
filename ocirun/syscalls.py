"""The thin syscall layer: every privileged or namespace-related call ocirun makes goes through a `Syscalls`.

Modules take a `Syscalls` (default: the real one, `SYS`) so that rootfs/mount/device logic can be unit-tested
without root against a recording fake (tests/unit/fakesys.py), and proven on the real kernel by integration tests.
Importing it is cheap: `ctypes` (~4 ms here) is loaded on the first real call, which happens in the forked
stages, in parallel with the parent's cgroup work, not on the parent's critical path.
"""
import os

# --- constants (Linux UAPI; stable ABI) -------------------------------------------------------------------
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MNT_FORCE = 1
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

# mount_setattr(2)
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_IDMAP = 0x100000
MOUNT_ATTR_NOSYMFOLLOW = 0x200000

# openat2(2)
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_SYMLINK_NOFOLLOW = 0x100
O_PATH = 0o10000000

CLOSE_RANGE_CLOEXEC = 1 << 2

OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = 0o2000000
MOVE_MOUNT_F_EMPTY_PATH = 0x04
MOVE_MOUNT_T_EMPTY_PATH = 0x40

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_CAPBSET_DROP = 24
PR_CAPBSET_READ = 23

KEYCTL_JOIN_SESSION_KEYRING = 1

_ARCH_SYSCALLS = {
    # name: (x86_64, aarch64/generic)
    "pivot_root": (155, 41),
    "openat2": (437, 437),
    "close_range": (436, 436),
    "mount_setattr": (442, 442),
    "open_tree": (428, 428),
    "move_mount": (429, 429),
    "keyctl": (250, 219),
    "personality": (135, 92),
    "ioprio_set": (251, 30),
    "sched_setattr": (314, 274),
    "set_mempolicy": (238, 237),
}
_IDX = 0 if os.uname().machine in ("x86_64", "i686") else 1
NR = {k: v[_IDX] for k, v in _ARCH_SYSCALLS.items()}


_libc = None
ctypes = None
_OpenHow = _MountAttr = None


class _Lib:
    """libc's symbols as foreign functions returning int and keeping errno (what ctypes.CDLL(None,
    use_errno=True) gives), looked up on first use."""

    def __init__(self, ct, name=None):
        import _ctypes

        class FuncPtr(_ctypes.CFuncPtr):
            _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
            _restype_ = ct.c_int

        self._FuncPtr = FuncPtr
        self._handle = _ctypes.dlopen(name, 0)  # OSError if there is no such library

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        fn = self._FuncPtr((name, self))
        setattr(self, name, fn)
        return fn


class CTypes:
    """The few pieces of ctypes that ocirun's syscall layer (and the seccomp loader) use, built on _ctypes
    directly. `import ctypes` costs ~2.3 ms here (its package defines some sixty types and helpers at import)
    on top of the ~1 ms of loading _ctypes itself: on the start-up path that is a tenth of the budget."""

    def __init__(self):
        import _ctypes

        def simple(name, code):
            return type(name, (_ctypes._SimpleCData,), {"_type_": code, "__module__": __name__})

        self.c_int, self.c_uint, self.c_uint32 = simple("c_int", "i"), simple("c_uint", "I"), simple("c_uint32", "I")
        self.c_long, self.c_ulong = simple("c_long", "l"), simple("c_ulong", "L")
        self.c_uint64, self.c_ushort = simple("c_uint64", "Q"), simple("c_ushort", "H")
        self.c_void_p, self.c_char_p, self.c_char = simple("c_void_p", "P"), simple("c_char_p", "z"), simple("c_char", "c")
        self.Structure, self.POINTER = _ctypes.Structure, _ctypes.POINTER
        self.byref, self.sizeof, self.addressof = _ctypes.byref, _ctypes.sizeof, _ctypes.addressof
        self.get_errno = _ctypes.get_errno

    def create_string_buffer(self, init, size=None):
        """As ctypes.create_string_buffer: a zeroed char array of `size` (or len(init)+1) holding init."""
        if isinstance(init, bytes):
            buf = (self.c_char * (len(init) + 1 if size is None else size))()
            buf.value = init
            return buf
        return (self.c_char * init)()


def ct():
    """The CTypes above (made once)."""
    _lib()
    return ctypes


def load_library(name):
    """A shared library (by soname, found as the dynamic linker would) as a _Lib; OSError if missing."""
    return _Lib(ct(), name)


def _lib():
    global _libc, ctypes, _OpenHow, _MountAttr
    if _libc is None:
        _ct = CTypes()

        class OpenHow(_ct.Structure):
            _fields_ = [("flags", _ct.c_uint64), ("mode", _ct.c_uint64), ("resolve", _ct.c_uint64)]

        class MountAttr(_ct.Structure):
            _fields_ = [("attr_set", _ct.c_uint64), ("attr_clr", _ct.c_uint64),
                        ("propagation", _ct.c_uint64), ("userns_fd", _ct.c_uint64)]

        ctypes, _OpenHow, _MountAttr = _ct, OpenHow, MountAttr
        lib = _Lib(_ct)
        lib.syscall.restype = _ct.c_long
        _libc = lib
    return _libc


def _check(ret, what, path=None):
    if ret < 0:
        e = ctypes.get_errno()  # only reached after a call through _lib()
        if path is not None:
            raise OSError(e, f"{what}: {os.strerror(e)}", path)
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return ret


def _b(s):
    if s is None:
        return None
    return s if isinstance(s, bytes) else os.fsencode(s)


class Syscalls:
    """The real kernel. Each method raises OSError(errno, 'call: strerror', path) on failure."""

    # namespaces
    def unshare(self, flags):
        _check(_lib().unshare(flags), "unshare")

    def setns(self, fd, nstype=0):
        _check(_lib().setns(fd, nstype), "setns")

    # mounts
    def mount(self, source, target, fstype, flags=0, data=None):
        lib = _lib()
        _check(lib.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)), "mount", target)

    def umount2(self, target, flags=0):
        _check(_lib().umount2(_b(target), flags), "umount2", target)

    def pivot_root(self, new_root, put_old):
        _check(_lib().syscall(NR["pivot_root"], _b(new_root), _b(put_old)), "pivot_root", new_root)

    def mount_setattr(self, dfd, path, flags, attr_set=0, attr_clr=0, propagation=0, userns_fd=0):
        lib = _lib()
        attr = _MountAttr(attr_set, attr_clr, propagation, userns_fd)
        _check(lib.syscall(NR["mount_setattr"], dfd, _b(path), flags, ctypes.byref(attr),
                              ctypes.sizeof(attr)), "mount_setattr", path)

    def open_tree(self, dfd, path, flags):
        lib = _lib()
        return _check(lib.syscall(NR["open_tree"], dfd, _b(path), ctypes.c_uint(flags)), "open_tree", path)

    def move_mount(self, from_dfd, from_path, to_dfd, to_path, flags):
        lib = _lib()
        _check(lib.syscall(NR["move_mount"], from_dfd, _b(from_path), to_dfd, _b(to_path), ctypes.c_uint(flags)),
               "move_mount", to_path)

    def chroot(self, path):
        os.chroot(path)

    # files
    def openat2(self, dirfd, path, flags, mode=0, resolve=0):
        lib = _lib()
        how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
        return _check(lib.syscall(NR["openat2"], dirfd, _b(path), ctypes.byref(how), ctypes.sizeof(how)),
                      "openat2", path)

    def open(self, path, flags, mode=0o777, dir_fd=None):
        return os.open(path, flags | os.O_CLOEXEC, mode, dir_fd=dir_fd)

    def mkdirat(self, dirfd, name, mode=0o755):
        os.mkdir(name, mode, dir_fd=dirfd)

    def mknodat(self, dirfd, name, mode, device):
        os.mknod(name, mode, device, dir_fd=dirfd)

    def symlinkat(self, target, dirfd, name):
        os.symlink(target, name, dir_fd=dirfd)

    def fchown(self, fd, uid, gid):
        os.fchown(fd, uid, gid)

    def fchmod(self, fd, mode):
        os.fchmod(fd, mode)

    def close_range(self, first, last=0xFFFFFFFF, flags=0):
        lib = _lib()
        r = lib.syscall(NR["close_range"], ctypes.c_uint(first), ctypes.c_uint(last), ctypes.c_uint(flags))
        if r < 0:  # very old kernel: fall back to closing one by one
            if flags & CLOSE_RANGE_CLOEXEC:
                for fd in _open_fds():
                    if first <= fd <= last:
                        try:
                            os.set_inheritable(fd, False)
                        except OSError:
                            pass
            else:
                os.closerange(first, min(last, 65536) + 1)

    def fstatfs_type(self, fd):
        """f_type of the filesystem fd is on (statfs's first field, a long)."""
        lib = _lib()
        buf = ctypes.create_string_buffer(256)
        _check(lib.fstatfs(fd, buf), "fstatfs")
        return int.from_bytes(buf.raw[:ctypes.sizeof(ctypes.c_long)], "little", signed=True) & 0xFFFFFFFF

    # process attributes
    def sethostname(self, name):
        b = _b(name)
        _check(_lib().sethostname(b, len(b)), "sethostname")

    def setdomainname(self, name):
        b = _b(name)
        _check(_lib().setdomainname(b, len(b)), "setdomainname")

    def prctl(self, option, a2=0, a3=0, a4=0, a5=0):
        lib = _lib()
        return _check(lib.prctl(option, ctypes.c_ulong(a2), ctypes.c_ulong(a3), ctypes.c_ulong(a4),
                                   ctypes.c_ulong(a5)), "prctl")

    def ambient_raise(self, cap):
        self.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)

    def ambient_clear(self):
        self.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)

    def join_session_keyring(self, name=None):
        return _check(_lib().syscall(NR["keyctl"], KEYCTL_JOIN_SESSION_KEYRING, _b(name)), "keyctl")

    def keyring_add_user_search(self, key_id):
        """KEYCTL_SETPERM: possessor all, user view|read|search|link (runc adds KEY_USR_SEARCH the same way), so
        that later processes of the container (exec) can find and join the keyring by name."""
        return _check(_lib().syscall(NR["keyctl"], 5, key_id, ctypes.c_uint(0x3F1B0000)), "keyctl")

    def personality(self, persona):
        lib = _lib()
        return _check(lib.syscall(NR["personality"], ctypes.c_ulong(persona)), "personality")

    def sched_setattr(self, policy, flags=0, nice=0, priority=0, runtime=0, deadline=0, period=0):
        lib = _lib()
        buf = (48).to_bytes(4, "little") + policy.to_bytes(4, "little") + flags.to_bytes(8, "little") + \
            nice.to_bytes(4, "little", signed=True) + priority.to_bytes(4, "little") + \
            runtime.to_bytes(8, "little") + deadline.to_bytes(8, "little") + period.to_bytes(8, "little")
        _check(lib.syscall(NR["sched_setattr"], 0, ctypes.c_char_p(buf), 0), "sched_setattr")

    def ioprio_set(self, ioclass, level):
        lib = _lib()
        _check(lib.syscall(NR["ioprio_set"], 1, 0, (ioclass << 13) | level), "ioprio_set")  # IOPRIO_WHO_PROCESS

    def set_mempolicy(self, mode, nodes):
        lib = _lib()
        if nodes:
            maxnode = max(nodes) + 1
            words = (maxnode + 63) // 64
            mask = (ctypes.c_ulong * words)()
            for n in nodes:
                mask[n // 64] |= 1 << (n % 64)
            _check(lib.syscall(NR["set_mempolicy"], mode, mask, ctypes.c_ulong(words * 64 + 1)), "set_mempolicy")
        else:
            _check(lib.syscall(NR["set_mempolicy"], mode, None, ctypes.c_ulong(0)), "set_mempolicy")

    def setgroups(self, gids):
        os.setgroups(gids)

    def setresgid(self, r, e, s):
        os.setresgid(r, e, s)

    def setresuid(self, r, e, s):
        os.setresuid(r, e, s)


def _open_fds():
    try:
        return [int(x) for x in os.listdir("/proc/self/fd")]
    except OSError:
        return list(range(0, 1024))


def set_child_subreaper():
    """PR_SET_CHILD_SUBREAPER through python-prctl's C core: the parent never needs ctypes."""
    import _prctl

    _prctl.prctl(_prctl.PR_SET_CHILD_SUBREAPER, 1)


SYS = Syscalls()


def fd_path(fd):
    """The magic-link path that names exactly the object `fd` refers to (mount onto it, not onto a string)."""
    return f"/proc/self/fd/{fd}"
