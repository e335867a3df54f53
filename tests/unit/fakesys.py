"""A recording fake of `ocirun.syscalls.Syscalls` for unit tests that need no root.

Privileged calls (mount, umount2, pivot_root, mount_setattr, chroot, mknodat, sethostname, setdomainname,
unshare, setns, prctl, setgroups, setresuid/gid, personality, join_session_keyring) are *recorded*, not
performed. Each record is a `Call` tuple: (op, args, real) where `args` is the tuple of arguments exactly as
ocirun passed them and `real` maps an argument name to the host path it really designated at call time:
for a `/proc/self/fd/N` argument (or a dirfd) that is `os.readlink` of the magic link, so a test can assert
*where* a mount would have landed, even after ocirun has closed the fd.

Unprivileged file operations (openat2 -- RESOLVE_IN_ROOT works without root --, open, mkdirat, symlinkat,
fchmod, fchown, close_range) go to the real kernel: tests run them in a temporary rootfs.
`mknodat` creates an empty regular file where the node would be (and records the call), so later steps
that open the node still find something there.

Failures can be injected: `fake.fail("mount", errno.EPERM, when=lambda call: call.args[2] == "sysfs")`.

Safety net: with `jail=DIR`, every call that would *create* something for real (mknodat, mkdirat, symlinkat,
openat2 with O_CREAT) first checks that its directory really is inside DIR and raises AssertionError instead of
touching the host otherwise -- so a regression in ocirun's path resolution fails the hostile-rootfs tests
instead of writing into the host's /etc or /dev when they run as root.
"""
import errno as _errno
import os
import re
from collections import namedtuple

from ocirun.syscalls import Syscalls

Call = namedtuple("Call", "op args real")
MountCall = namedtuple("MountCall", "source target fstype flags data source_real target_real")

_FD_LINK = re.compile(r"^/proc/self/fd/(\d+)$")


def real_of(path):
    """The host path a `/proc/self/fd/N` string designates now (None for anything else)."""
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str):
        return None
    m = _FD_LINK.match(path)
    if not m:
        return None
    return os.readlink(path)


def real_of_fd(fd):
    if fd is None or fd < 0:
        return None
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def inside(path, jail):
    return path == jail or path.startswith(jail.rstrip("/") + "/")


class FakeSyscalls(Syscalls):
    def __init__(self, jail=None):
        self.calls = []
        self._faults = []  # (op, errno, predicate, once)
        self.jail = os.path.realpath(jail) if jail else None

    def _check_jail(self, op, dirfd, name):
        if self.jail is None:
            return
        where = real_of_fd(dirfd) if dirfd is not None and dirfd >= 0 else os.getcwd()
        target = os.path.normpath(os.path.join(where or "?", os.fsdecode(name)))
        if not (where and inside(where, self.jail)):
            raise AssertionError(f"fakesys: {op} would create {target} outside the test directory {self.jail}")

    # ---- test helpers ------------------------------------------------------------------------------
    def fail(self, op, err=_errno.EPERM, when=None, once=False):
        """Make the next matching `op` call raise OSError(err) (every matching call unless once=True)."""
        self._faults.append([op, err, when, once])

    def ops(self):
        return [c.op for c in self.calls]

    def of(self, op):
        return [c for c in self.calls if c.op == op]

    def mounts(self):
        out = []
        for c in self.of("mount"):
            source, target, fstype, flags, data = c.args
            out.append(MountCall(source, target, fstype, flags, data, c.real.get("source"), c.real.get("target")))
        return out

    def _record(self, op, args, real=None):
        call = Call(op, tuple(args), dict(real or {}))
        for f in list(self._faults):
            fop, err, when, once = f
            if fop == op and (when is None or when(call)):
                if once:
                    self._faults.remove(f)
                self.calls.append(call._replace(op=op + "!failed"))
                raise OSError(err, f"{op}: {os.strerror(err)}")
        self.calls.append(call)
        return call

    # ---- privileged: recorded, never performed -------------------------------------------------------
    def unshare(self, flags):
        self._record("unshare", (flags,))

    def setns(self, fd, nstype=0):
        self._record("setns", (fd, nstype), {"fd": real_of_fd(fd)})

    def mount(self, source, target, fstype, flags=0, data=None):
        self._record("mount", (source, target, fstype, flags, data),
                     {"source": real_of(source), "target": real_of(target)})

    def umount2(self, target, flags=0):
        self._record("umount2", (target, flags), {"target": real_of(target)})

    def pivot_root(self, new_root, put_old):
        self._record("pivot_root", (new_root, put_old))

    def mount_setattr(self, dfd, path, flags, attr_set=0, attr_clr=0, propagation=0, userns_fd=0):
        self._record("mount_setattr", (dfd, path, flags, attr_set, attr_clr, propagation, userns_fd),
                     {"dfd": real_of_fd(dfd)})

    def chroot(self, path):
        self._record("chroot", (path,))

    def mknodat(self, dirfd, name, mode, device):
        self._check_jail("mknodat", dirfd, name)
        real_dir = real_of_fd(dirfd)
        self._record("mknodat", (dirfd, name, mode, device),
                     {"dirfd": real_dir, "target": os.path.join(real_dir, name) if real_dir else None})
        # stand-in for the node: an empty regular file (O_EXCL: mknod fails on an existing name too)
        fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, mode & 0o777,
                     dir_fd=dirfd)
        os.close(fd)

    def sethostname(self, name):
        self._record("sethostname", (name,))

    def setdomainname(self, name):
        self._record("setdomainname", (name,))

    def prctl(self, option, a2=0, a3=0, a4=0, a5=0):
        self._record("prctl", (option, a2, a3, a4, a5))
        return 0

    def join_session_keyring(self, name=None):
        self._record("join_session_keyring", (name,))
        return 0

    def personality(self, persona):
        self._record("personality", (persona,))
        return 0

    def setgroups(self, gids):
        self._record("setgroups", (list(gids),))

    def setresgid(self, r, e, s):
        self._record("setresgid", (r, e, s))

    def setresuid(self, r, e, s):
        self._record("setresuid", (r, e, s))

    # ---- unprivileged: the real kernel (inherited), but visible in the log ---------------------------
    def openat2(self, dirfd, path, flags, mode=0, resolve=0):
        if flags & os.O_CREAT:
            self._check_jail("openat2(O_CREAT)", dirfd, path)
        return super().openat2(dirfd, path, flags, mode, resolve)

    def mkdirat(self, dirfd, name, mode=0o755):
        self._check_jail("mkdirat", dirfd, name)
        super().mkdirat(dirfd, name, mode)
        self.calls.append(Call("mkdirat", (dirfd, name, mode), {"dirfd": real_of_fd(dirfd)}))

    def symlinkat(self, target, dirfd, name):
        self._check_jail("symlinkat", dirfd, name)
        super().symlinkat(target, dirfd, name)
        self.calls.append(Call("symlinkat", (target, dirfd, name), {"dirfd": real_of_fd(dirfd)}))
