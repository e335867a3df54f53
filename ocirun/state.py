"""State store: --root/ID/state.json, written atomically; one flock per container serializes commands on it.

Layout of a container's directory:
  state.json   the record below (plus the config and cgroup data later commands need)
  start.sock   present while the container is `created`: the init listens here for `start`
"""
import fcntl
import os
import stat
import time

from . import jsonio
from .errors import NotFoundError, OciError, StateError
from .version import SPEC_VERSION

DEFAULT_ROOT = "/run/ocirun"
XDG_NAME = "ocirun"  # the state root of a rootless caller: $XDG_RUNTIME_DIR/ocirun (runc: .../runc)
STATE_FILE = "state.json"
RECOVER_FILE = "recover.json"  # pids and cgroup only: lets delete --force clean up if state.json is damaged
START_SOCK = "start.sock"

_ID_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")
MAX_ID_LEN = 1024


def validate_id(cid):
    """runc's rule: [A-Za-z0-9_+.-]+, not '.' or '..'; we also bound the length."""
    if not cid:
        raise OciError("invalid container id: the id must not be empty")
    if isinstance(cid, bytes) or len(cid) > MAX_ID_LEN:
        raise OciError(f"invalid container id: longer than {MAX_ID_LEN} characters")
    if cid in (".", "..") or not _ID_OK.issuperset(cid):
        shown = cid.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
        raise OciError(f"invalid container id {shown!r}: only letters, digits and _ + - . are allowed")
    return cid


_TYPES = {"pid": int, "init_start_time": int, "stage1": int, "stage1_start_time": int, "status": str,
          "bundle": str, "config": dict, "cgroup": dict, "annotations": dict, "created": str, "rootfs": str}


def _check_types(st):
    """A record whose fields have the wrong types is as corrupt as unparsable JSON."""
    for k, t in _TYPES.items():
        v = st.get(k)
        if v is not None and (not isinstance(v, t) or (t is int and isinstance(v, bool))):
            raise ValueError(f"field {k!r} has the wrong type")
    if isinstance(st.get("pid"), int) and st["pid"] < 0:
        raise ValueError("field 'pid' is negative")


def proc_start_time(pid):
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot), or None if no such process.

    Zombies count as gone: a container whose init has exited is stopped even before it is reaped."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    rest = data[data.rindex(b")") + 2:].split()
    if rest[0] in (b"Z", b"X"):
        return None
    return int(rest[19])


def now_rfc3339():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e9):09d}Z"


def xdg_root():
    """$XDG_RUNTIME_DIR/ocirun when runc's rule (shouldHonorXDGRuntimeDir) says the default state root lives
    there, else None: XDG_RUNTIME_DIR is set and non-empty, and the caller is not root, or is root of a user
    namespace whose $USER is not "root" (the host's root keeps /run/ocirun whatever its environment says)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if not xdg:
        return None
    if os.geteuid() == 0 and (host_root() or os.environ.get("USER") == "root"):
        return None
    return os.path.join(xdg, XDG_NAME)


def default_root():
    """The state root used when no --root is given (see xdg_root); nothing is created."""
    return xdg_root() or DEFAULT_ROOT


def make_xdg_root(root):
    """runc's step before any command when the default root is under $XDG_RUNTIME_DIR: create it (0700) and
    set its sticky bit (the XDG spec: files there without it may be pruned)."""
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
    except OSError as e:
        raise OciError(f"$XDG_RUNTIME_DIR: cannot create the state directory {root}: {e.strerror} (the path in "
                       f"$XDG_RUNTIME_DIR must be writable by the user)") from None
    try:
        os.chmod(root, 0o1700)
    except OSError as e:
        raise OciError(f"$XDG_RUNTIME_DIR: cannot chmod the state directory {root}: {e.strerror} (check the "
                       f"permissions of the path in $XDG_RUNTIME_DIR)") from None
    check_owner(os.stat(root), root, "--root")


_ROOT_HINT = " (rootless: set XDG_RUNTIME_DIR to a directory of your own, or pass --root)"


def check_owner(st, path, what):
    """A state root or a container's state directory must belong to the caller (its euid): a record someone else
    could write would make this ocirun signal processes, remove cgroups or unmount what that record names.
    (runc does not check; its verdict is the kernel's permission check alone.)"""
    euid = os.geteuid()
    if st.st_uid != euid:
        hint = ""
        if path == DEFAULT_ROOT and what == "--root":
            hint = _ROOT_HINT
        raise OciError(f"{what} {path}: owned by uid {st.st_uid}, not by the caller (uid {euid}): refusing "
                       f"to use another user's state{hint}")


def _denied_hint(root, err):
    """The one step that makes a rootless caller's default state root usable."""
    if err.errno == 13 and os.geteuid() != 0 and root == DEFAULT_ROOT:
        return _ROOT_HINT
    return ""


class Store:
    def __init__(self, root=None):
        self.root = os.path.abspath(root or default_root())

    def dir(self, cid):
        return os.path.join(self.root, cid)

    def ensure_root(self):
        try:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
        except OSError as e:
            raise OciError(f"--root {self.root}: cannot create the state directory: {e.strerror}"
                           f"{_denied_hint(self.root, e)}") from None
        try:
            st = os.stat(self.root)
        except OSError as e:
            raise OciError(f"--root {self.root}: {e.strerror}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise OciError(f"--root {self.root}: not a directory")
        check_owner(st, self.root, "--root")

    def new(self, cid):
        """Create ID's directory and lock it: exactly one concurrent create of an ID wins."""
        validate_id(cid)
        self.ensure_root()
        d = self.dir(cid)
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            raise OciError(f"container with id exists: {cid}") from None
        except OSError as e:
            raise OciError(f"--root {self.root}: cannot create {d}: {e.strerror}{_denied_hint(self.root, e)}") from None
        lock = Lock(d)
        lock.acquire()
        return lock

    def open(self, cid, blocking=True):
        """Lock an existing container's directory; NotFoundError if it does not exist (or vanished meanwhile)."""
        validate_id(cid)
        d = self.dir(cid)
        lock = Lock(d)
        try:
            lock.acquire(blocking)
        except OSError as e:
            # O_NOFOLLOW|O_DIRECTORY on a symbolic link: ELOOP or ENOTDIR
            if e.errno in (20, 40) and os.path.islink(d):
                raise OciError(f"container {cid}: {d} is a symbolic link, not a state directory: refusing it") from None
            if isinstance(e, (FileNotFoundError, NotADirectoryError)):
                raise NotFoundError(f"container does not exist: {cid}") from None
            raise OciError(f"--root {self.root}: {e.strerror}{_denied_hint(self.root, e)}") from None
        st = os.fstat(lock.fd)
        if st.st_nlink == 0:
            lock.release()
            raise NotFoundError(f"container does not exist: {cid}")
        if st.st_uid != os.geteuid():
            lock.release()
            check_owner(st, d, f"container {cid}: state directory")
        return lock

    def ids(self):
        try:
            names = os.listdir(self.root)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as e:
            raise OciError(f"--root {self.root}: {e.strerror}{_denied_hint(self.root, e)}") from None
        return sorted(n for n in names if os.path.isdir(os.path.join(self.root, n)))

    def read(self, cid):
        d = self.dir(cid)
        try:
            with open(os.path.join(d, STATE_FILE), "rb") as f:
                fst = os.fstat(f.fileno())
                if fst.st_uid != os.geteuid():
                    check_owner(fst, os.path.join(d, STATE_FILE), f"container {cid}: state file")
                data = f.read()
        except (FileNotFoundError, NotADirectoryError):
            if not os.path.isdir(d):
                raise NotFoundError(f"container does not exist: {cid}") from None
            return None  # directory without state: a create that died before writing anything
        except OSError as e:
            raise OciError(f"--root {self.root}: cannot read the state of {cid}: {e.strerror}") from None
        try:
            st = jsonio.loads(data)
            if not isinstance(st, dict) or st.get("id") != cid:
                raise ValueError("not a state record for this container")
            _check_types(st)
        except ValueError as e:
            raise StateError(f"container {cid}: state file {os.path.join(d, STATE_FILE)} is corrupt ({e}); "
                             f"'ocirun delete --force {cid}' removes it") from None
        return st

    def read_recovery(self, cid):
        """The small record of pids and cgroup written beside state.json, or None."""
        try:
            with open(os.path.join(self.dir(cid), RECOVER_FILE), "rb") as f:
                rec = jsonio.loads(f.read())
            _check_types(rec)
            return rec if isinstance(rec, dict) else None
        except (OSError, ValueError):
            return None

    def write(self, cid, st, recovery=True):
        if recovery:
            self._write_file(cid, RECOVER_FILE, {k: st.get(k) for k in ("id", "status", "pid", "init_start_time",
                                                                          "stage1", "stage1_start_time", "cgroup")})
        self._write_file(cid, STATE_FILE, st)

    def _write_file(self, cid, name, st):
        d = self.dir(cid)
        tmp = os.path.join(d, f".{name}.tmp")
        with open(tmp, "w") as f:
            f.write(jsonio.dumps(st))
        os.rename(tmp, os.path.join(d, name))

    def remove(self, cid):
        d = self.dir(cid)
        for name in os.listdir(d) if os.path.isdir(d) else ():
            try:
                os.unlink(os.path.join(d, name))
            except IsADirectoryError:
                pass
            except FileNotFoundError:
                pass
        try:
            os.rmdir(d)
        except FileNotFoundError:
            pass


class Lock:
    """flock on the container directory itself, so deleting the directory needs no lock file."""

    def __init__(self, path):
        self.path = path
        self.fd = None

    def acquire(self, blocking=True):
        # O_NOFOLLOW: a symbolic link in the root is never taken for a container's directory
        self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            raise StateError(f"container {os.path.basename(self.path)} is busy (another ocirun command holds it)")

    def gone(self):
        return os.fstat(self.fd).st_nlink == 0

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.release()


def is_locked(path):
    """True if some live process holds the container's lock (e.g. a create still in progress)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def status_of(store, cid, st):
    """The spec status, from the recorded state and what is true now (pid alive, same process, start pending)."""
    if st is None:
        return "stopped"
    if st.get("status") == "creating":
        return "creating" if is_locked(store.dir(cid)) else "stopped"
    pid = st.get("pid") or 0
    if pid <= 0:
        return "stopped"
    stt = proc_start_time(pid)
    if stt is None or (st.get("init_start_time") is not None and stt != st["init_start_time"]):
        return "stopped"
    if os.path.exists(os.path.join(store.dir(cid), START_SOCK)):
        return "created"
    if st.get("paused"):
        return "paused"
    return "running"


def spec_state(st, status):
    """The runtime-spec state document (runtime.md "State")."""
    out = {"ociVersion": SPEC_VERSION, "id": st["id"], "status": status}
    if status in ("created", "running", "paused", "creating") and st.get("pid"):
        out["pid"] = st["pid"]
    elif status == "stopped" and st.get("pid"):
        out["pid"] = 0
    out["bundle"] = st.get("bundle", "")
    out["annotations"] = st.get("annotations") or {}
    return out


# ---------------------------------------------------------------------------------------------- caches
# ocirun keeps two content-addressed caches (seccomp BPF programs, configs already found valid). They live in
# /var/cache/ocirun/<kind> for the host's root only: root of a user namespace can neither write nor trust them.

def host_root():
    """Root of the host, not of a user namespace."""
    if os.geteuid() != 0:
        return False
    from .namespaces import running_in_userns

    return not running_in_userns()


def sha256(data):
    """sha256 digest without hashlib (which imports OpenSSL's bindings: ~2 ms)."""
    try:
        from _sha256 import sha256 as h
    except ImportError:  # Python >= 3.12
        try:
            from _sha2 import sha256 as h
        except ImportError:
            from hashlib import sha256 as h
    return h(data).digest()


def write_pid_file(path, pid):
    """--pid-file: written whole or not at all (a rename), as runc."""
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path))
    try:
        with open(tmp, "w") as f:
            f.write(str(pid))
        os.rename(tmp, path)
    except OSError as e:
        raise OciError(f"--pid-file {path}: {e.strerror}") from None


# ------------------------------------------------------------------------------------------------- child side


def has_no_process(st):
    """A container created without `process` (start refuses it)."""
    return bool(st.get("no_process")) or (st.get("config") or {}).get("process") is None
