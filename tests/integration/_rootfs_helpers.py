"""Helpers for test_rootfs_real.py: mountinfo parsing, host-side mounts the tests set up (and always undo), a
console-socket server, and small file utilities. Nothing here talks to ocirun itself."""
import array
import ctypes
import os
import socket
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostmounts  # noqa: E402

SEP = "@@@@SECTION@@@@"  # the scripts print it between sections of their output


class Mnt:
    """One /proc/PID/mountinfo line."""

    __slots__ = ("id", "parent", "dev", "root", "mp", "opts", "fields", "fstype", "source", "sopts")

    def __init__(self, line):
        left, _, right = line.partition(" - ")
        a, b = left.split(), right.split()
        self.id, self.parent, self.dev, self.root, self.mp = a[0], a[1], a[2], hostmounts.unescape(a[3]), hostmounts.unescape(a[4])
        self.opts = set(a[5].split(","))
        self.fields = a[6:]
        self.fstype = b[0]
        self.source = b[1] if len(b) > 1 else ""
        self.sopts = set(b[2].split(",")) if len(b) > 2 else set()

    def prop(self):
        """The propagation fields as {kind: group}: {'shared': '12', 'master': '3', 'unbindable': ''}."""
        out = {}
        for f in self.fields:
            k, _, v = f.partition(":")
            out[k] = v
        return out

    def __repr__(self):
        return f"<{self.mp} {self.fstype} {','.join(sorted(self.opts))} {' '.join(self.fields)} " \
               f"[{','.join(sorted(self.sopts))}] root={self.root}>"


def parse(text):
    """mountinfo text -> [Mnt] (lines that are not mountinfo lines are skipped)."""
    return [Mnt(ln) for ln in text.splitlines() if " - " in ln and len(ln.split()) > 6]


def fs_root_of(path):
    """The mountinfo `root` a bind mount of host `path` shows: path within the filesystem that holds it
    (path itself only where that filesystem is mounted at /, e.g. not for a /tmp of its own)."""
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        best = None
        for m in parse(f.read()):
            if path == m.mp or path.startswith(m.mp.rstrip("/") + "/"):
                if best is None or len(m.mp) >= len(best.mp):
                    best = m
    rel = os.path.relpath(path, best.mp)
    return os.path.normpath(os.path.join(best.root, rel)) if rel != "." else best.root


def by_mp(text):
    """mountinfo text -> {mount point: Mnt}; of stacked mounts the last (topmost) wins."""
    out = {}
    for m in parse(text):
        out[m.mp] = m
    return out


def host_mounts():
    with open("/proc/self/mountinfo") as f:
        return parse(f.read())


def host_mount_at(path):
    found = [m for m in host_mounts() if m.mp == path]
    return found[-1] if found else None


def sections(text):
    return text.split(SEP + "\n")


class HostMounts:
    """Mounts the test makes on the host; undone (lazily, in reverse) by the fixture's teardown."""

    def __init__(self):
        self.made = []

    def __call__(self, target, *args):
        os.makedirs(target, exist_ok=True)
        subprocess.run(["mount", *args, target], check=True, capture_output=True)
        self.made.append(target)
        return target

    def tmpfs(self, target, opts="mode=755"):
        return self(target, "-t", "tmpfs", "-o", opts, "tmpfs")

    def run(self, *args):
        """mount(8) with these arguments on an existing mount point (--make-shared, -o remount, ...)."""
        subprocess.run(["mount", *args], check=True, capture_output=True)

    def undo(self):
        for t in reversed(self.made):
            subprocess.run(["umount", "-l", t], capture_output=True)
        self.made = []


def write(path, text, mode=None, owner=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    if mode is not None:
        os.chmod(path, mode)
    if owner is not None:
        os.chown(path, *owner)
    return path


def snapshot_tree(top):
    """{relative path: (mode, uid, gid, size or link target)} of everything under top (no mount crossing)."""
    out = {}
    dev = os.lstat(top).st_dev
    for d, dirs, files in os.walk(top):
        dirs[:] = [x for x in dirs if os.lstat(os.path.join(d, x)).st_dev == dev]
        for name in dirs + files:
            p = os.path.join(d, name)
            st = os.lstat(p)
            extra = os.readlink(p) if os.path.islink(p) else (st.st_size if not os.path.isdir(p) else None)
            out[os.path.relpath(p, top)] = (st.st_mode, st.st_uid, st.st_gid, extra)
    return out


# --------------------------------------------------------------------------------------------- console socket
class ConsoleServer:
    """A unix socket server for --console-socket: accepts one connection and receives the pty master fd."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.sock.settimeout(20)
        self.master = None
        self.payload = None
        self.error = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.sock.accept()
            with conn:
                fds = array.array("i")
                msg, anc, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
                for level, typ, data in anc:
                    if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                        fds.frombytes(data[:len(data) - (len(data) % fds.itemsize)])
                self.payload = msg
                self.master = fds[0] if fds else None
        except OSError as e:
            self.error = e

    def wait(self, timeout=20):
        self.thread.join(timeout)
        return self.master

    def read_all(self, timeout=10):
        """Everything the container writes to its terminal until it closes (EIO on the master)."""
        import select
        import time

        out = b""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            r, _, _ = select.select([self.master], [], [], 0.2)
            if not r:
                continue
            try:
                data = os.read(self.master, 65536)
            except OSError:
                break
            if not data:
                break
            out += data
        return out.decode(errors="replace")

    def close(self):
        self.sock.close()
        if self.master is not None:
            os.close(self.master)
            self.master = None


# --------------------------------------------------------------------------------------------- renameat2
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange(a, b):
    """Atomically swap two paths (renameat2 RENAME_EXCHANGE)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(_AT_FDCWD, a.encode(), _AT_FDCWD, b.encode(), _RENAME_EXCHANGE) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
