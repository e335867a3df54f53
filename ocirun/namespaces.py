"""Namespaces: new ones (unshare), joined ones (setns by path), user-namespace ID maps, time offsets."""
import os

from . import syscalls as S
from .errors import OciError

FLAGS = {
    "pid": S.CLONE_NEWPID, "network": S.CLONE_NEWNET, "mount": S.CLONE_NEWNS, "ipc": S.CLONE_NEWIPC,
    "uts": S.CLONE_NEWUTS, "user": S.CLONE_NEWUSER, "cgroup": S.CLONE_NEWCGROUP, "time": S.CLONE_NEWTIME,
}
# /proc/PID/ns/<name> for each spec type
PROC_NAME = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts", "user": "user",
             "cgroup": "cgroup", "time": "time"}
# The order the namespaces are opened and listed in; join() below (create and exec) reorders them as runc's
# nsexec does: the others first, then user, then any that refused.
JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "time", "cgroup", "mount")


class Plan:
    """What stage 1 does with namespaces, computed once from the typed config in the parent."""

    def __init__(self, linux):
        nss = linux.namespaces if linux else []
        self.join = []  # (type, path) in JOIN_ORDER
        self.new = set()
        for ns in nss:
            if ns.path:
                self.join.append((ns.type, ns.path))
            else:
                self.new.add(ns.type)
        self.join.sort(key=lambda tp: JOIN_ORDER.index(tp[0]))
        self.uid_mappings = linux.uid_mappings if linux else []
        self.gid_mappings = linux.gid_mappings if linux else []
        self.time_offsets = linux.time_offsets if linux else {}

    @property
    def new_user(self):
        return "user" in self.new

    @property
    def in_user(self):
        return "user" in self.new or any(t == "user" for t, _ in self.join)

    def needs_fork(self):
        """A new or joined pid/time namespace only applies to children: then the init is a second fork."""
        return bool(self.new & {"pid", "time"}) or any(t in ("pid", "time") for t, _ in self.join)

    def unshare_flags(self):
        f = 0
        for t in self.new - {"user"}:
            f |= FLAGS[t]
        return f

    def open_join_fds(self):
        """Open every namespace path first, while still in the runtime's own mount namespace."""
        fds = []
        try:
            for t, path in self.join:
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError as e:
                    raise OciError(f"linux.namespaces: {t} namespace path {path}: {e.strerror}") from None
                fds.append((t, path, fd))
        except BaseException:
            for _, _, fd in fds:
                os.close(fd)
            raise
        return fds


def join(fds, sys=S.SYS, what="linux.namespaces: cannot join {t} namespace {path}"):
    """setns into each of `fds` ((type, path, fd); all closed on return). Those not owned by the user namespace
    being joined (e.g. the host's network namespace) need the runtime's own privileges, so the others are joined
    first and the user namespace last; one that refuses (EPERM: it is owned by that user namespace and wants to be
    joined from inside) is tried again after it. Create (config paths) and exec (the init's /proc/PID/ns/*) both
    join through here, as runc's nsexec join_namespaces serves both. A failure raises OciError with `what`
    (formatted with t and path) followed by the errno's text."""
    later = []

    def fail(t, path, err):
        raise OciError(f"{what.format(t=t, path=path)}: {os.strerror(err)}") from None

    try:
        for t, path, fd in sorted(fds, key=lambda x: x[0] == "user"):
            try:
                sys.setns(fd, FLAGS[t])
            except OSError as e:
                if e.errno == 1 and t != "user" and any(x[0] == "user" for x in fds):
                    later.append((t, path, fd))
                    continue
                fail(t, path, e.errno)
            if t == "user":
                for t2, path2, fd2 in later:
                    try:
                        sys.setns(fd2, FLAGS[t2])
                    except OSError as e:
                        fail(t2, path2, e.errno)
                later = []
    finally:
        for _, _, fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass


def format_idmap(maps):
    return "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in maps)


def write_id_mappings(pid, plan):
    """Parent side: write the child's uid_map and gid_map (as root in the parent namespace)."""
    for name, maps in (("gid_map", plan.gid_mappings), ("uid_map", plan.uid_mappings)):
        if not maps:
            continue
        try:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(format_idmap(maps))
        except OSError as e:
            key = "gidMappings" if name == "gid_map" else "uidMappings"
            raise OciError(f"linux.{key}: cannot write /proc/{pid}/{name}: {e.strerror}") from None


def write_time_offsets(offsets):
    """In stage 1 after unshare(CLONE_NEWTIME), before the first child is forked."""
    lines = []
    for clock in ("monotonic", "boottime"):
        o = offsets.get(clock)
        if o:
            lines.append(f"{clock} {int(o.get('secs', 0))} {int(o.get('nanosecs', 0))}\n")
    if not lines:
        return
    try:
        with open("/proc/self/timens_offsets", "w") as f:
            f.write("".join(lines))
    except OSError as e:
        raise OciError(f"linux.timeOffsets: cannot write /proc/self/timens_offsets: {e.strerror}") from None


def host_id(maps, cid):
    """The host id that container id `cid` maps to, or None."""
    for m in maps or ():
        if m.container_id <= cid < m.container_id + m.size:
            return m.host_id + cid - m.container_id
    return None


def maps_contain(maps, cid):
    return any(m.container_id <= cid < m.container_id + m.size for m in maps)


def userns_fd(uid_maps, gid_maps, sys=S.SYS):
    """An fd of a new user namespace with these mappings (for idmapped mounts). Parent side, before fork:
    a short-lived child unshares CLONE_NEWUSER, we write its maps, keep a reference to its namespace."""
    r, w = os.pipe()
    r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.close(w2)
            sys.unshare(S.CLONE_NEWUSER)
            os.write(w, b"1")
            os.read(r2, 1)  # until the parent has taken its reference
        finally:
            os._exit(0)
    os.close(w)
    os.close(r2)
    try:
        if os.read(r, 1) != b"1":
            raise OciError("idmapped mount: cannot create a user namespace for the mapping")
        plan = type("P", (), {"uid_mappings": uid_maps, "gid_mappings": gid_maps})()
        try:
            write_id_mappings(pid, plan)
        except OciError as e:
            raise OciError(str(e).replace("linux.", "mount ")) from None
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(r)
        os.close(w2)
        os.waitpid(pid, 0)


SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def link_up(names):
    """Set network interfaces up from inside the network namespace (SIOCSIFFLAGS; no iproute2 needed)."""
    import fcntl
    import _socket

    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM, 0)
    try:
        for name in names:
            req = name.encode()[:15].ljust(16, b"\0") + bytes(24)
            try:
                got = fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req)
                flags = int.from_bytes(got[16:18], "little") | IFF_UP
                fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, got[:16] + flags.to_bytes(2, "little") + got[18:])
            except OSError as e:
                raise OciError(f"network interface {name}: cannot set it up: {e.strerror}") from None
    finally:
        s.close()


def setgroups_allowed(in_user):
    """Whether setgroups(2) is allowed here (in a user namespace: /proc/self/setgroups says)."""
    if not in_user:
        return True
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() == "allow"
    except OSError:
        return True


def write_sysctls(lin):
    """linux.sysctl, written in the container's /proc (after pivot_root), only for namespaces it owns."""
    from .semantics import sysctl_key, sysctl_namespace

    owned = {n.type for n in lin.namespaces}
    for key, value in lin.sysctl.items():
        ns = sysctl_namespace(key)  # (checked at create already; kept here: the write acts on the kernel)
        if ns is None or ns not in owned:
            raise OciError(f"linux.sysctl: {key!r} is not in a separate kernel namespace the container owns")
        path = "/proc/sys/" + sysctl_key(key).replace(".", "/")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as e:
            raise OciError(f"linux.sysctl: {key}: {e.strerror}") from None
        try:
            # CVE-2019-16884 class: a rootfs can plant a plain /proc; only ever write to a real procfs
            if S.SYS.fstatfs_type(fd) != 0x9FA0:
                raise OciError(f"linux.sysctl: {key}: /proc in the container is not a procfs (no proc mount?)")
            os.write(fd, str(value).encode())
        except OSError as e:
            raise OciError(f"linux.sysctl: {key}={value}: {e.strerror}") from None
        finally:
            os.close(fd)


def move_net_devices(devices, pid):
    """linux.netDevices: move each host interface into the container's network namespace (renamed if asked),
    with iproute2 (`ip link set dev HOST netns PID name NEW` in one RTM_NEWLINK)."""
    for host_name, spec in devices.items():
        new = (spec or {}).get("name") or host_name
        where = f"linux.netDevices.{host_name}"
        if not os.path.exists(f"/sys/class/net/{host_name}"):
            raise OciError(f"{where}: no such network interface on the host")
        rc, err = _run_tool(["ip", "link", "set", "dev", host_name, "netns", str(pid), "name", new])
        if rc != 0:
            raise OciError(f"{where}: cannot move it into the container as {new!r}: {err or f'ip exit {rc}'}")


def _run_tool(argv):
    """Run a host tool with posix_spawn (no subprocess import on the hot path); returns (status, stderr)."""
    import shutil

    path = shutil.which(argv[0]) or argv[0]
    r, w = os.pipe()
    try:
        pid = os.posix_spawn(path, argv, {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                             file_actions=[(os.POSIX_SPAWN_DUP2, w, 2), (os.POSIX_SPAWN_CLOSE, r)])
    except OSError as e:
        os.close(r)
        os.close(w)
        return 127, f"{argv[0]}: {e.strerror}"
    os.close(w)
    err = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        err += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), err.decode(errors="replace").strip().replace("\n", " | ")


def running_in_userns():
    """Whether this process is in a user namespace other than the host's (runc's userns.RunningInUserNS): its
    uid_map is not the full identity map."""
    try:
        with open("/proc/self/uid_map", "rb") as f:
            return f.read().split() != [b"0", b"0", b"4294967295"]
    except OSError:
        return False
