"""Helpers shared by the v1 and v2 drivers: discovery (/proc/self/mountinfo, /proc/self/cgroup), path rules,
cgroupfs file I/O with one-line errors, directory bookkeeping and process killing.

Only `os` (and `time`, lazily) are imported: this runs on the hot path of every `ocirun run`.
"""
import errno as _errno
import os

SIGKILL = 9  # not signal.SIGKILL: importing signal pulls in enum (~9 ms on the hot path)

from . import CgroupError, parse_proc_cgroup  # (the parser lives with the primer, which needs it first)

RES = "linux.resources"


# ---------------------------------------------------------------------------------------------- discovery

def _unescape(s):
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    if "\\" not in s:
        return s
    out, i, n = [], 0, len(s)
    while i < n:
        c = s[i]
        if c == "\\" and i + 3 < n and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(c)
            i += 1
    return "".join(out)


def read_mountinfo(path):
    """cgroup mounts as (mountpoint, mount_root, fstype, super_options list), in mountinfo order."""
    mounts = []
    try:
        with open(path) as f:
            data = f.read()
    except OSError as e:
        raise CgroupError(f"cannot read {path}: {os.strerror(e.errno).lower()}") from None
    for line in data.splitlines():
        if " - cgroup" not in line:
            continue
        pre, _, post = line.partition(" - ")
        parts = post.split(" ")
        if len(parts) < 3 or parts[0] not in ("cgroup", "cgroup2"):
            continue
        fields = pre.split(" ")
        if len(fields) < 5:
            continue
        mounts.append((_unescape(fields[4]), _unescape(fields[3]), parts[0], parts[2].split(",")))
    return mounts


def read_proc_cgroup(path):
    """/proc/<pid>/cgroup as a list of (hierarchy id, [controllers], path)."""
    try:
        with open(path) as f:
            data = f.read()
    except OSError as e:
        raise CgroupError(f"cannot read {path}: {os.strerror(e.errno).lower()}") from None
    return parse_proc_cgroup(data)


def clean_root(root):
    root = os.path.normpath(root or "/sys/fs/cgroup")
    return "/" + root.lstrip("/")


def is_unified(mounts, root):
    """True when `root` itself is a cgroup2 mount (pure v2)."""
    for mp, _r, fstype, _o in mounts:
        if mp == root:
            return fstype == "cgroup2"
    return False


def under(path, root):
    return path == root or path.startswith(root.rstrip("/") + "/")


# ---------------------------------------------------------------------------------------------- path rules

def clean_path(p):
    """Like runc's utils.CleanPath: lexical clean; a relative path can never climb above its start."""
    if not p:
        return ""
    if p.startswith("/"):
        return "/" + os.path.normpath(p).lstrip("/")
    rel = os.path.normpath("/" + p).lstrip("/")
    return rel or "."


def inner_path(container_id, cgroups_path):
    """The cgroup path inside a hierarchy before the absolute/relative rule is applied (see the package doc)."""
    if cgroups_path is not None and not isinstance(cgroups_path, str):
        raise CgroupError("linux.cgroupsPath: must be a string")
    inner = clean_path(cgroups_path or "")
    if not inner:
        inner = clean_path(container_id or "")
        if not inner or inner == ".":
            raise CgroupError("linux.cgroupsPath: empty, and no container id to name the cgroup after")
    if ":" in inner and not inner.startswith("/") and inner.count(":") == 2:
        # "slice:prefix:name" is the systemd driver's syntax.
        raise CgroupError(f"linux.cgroupsPath: {cgroups_path!r} looks like a systemd path (slice:prefix:name) "
                          "but the cgroupfs driver is in use")
    return inner


def join(base, inner):
    if inner in (".", "/"):
        return base
    return base.rstrip("/") + "/" + inner.lstrip("/")


def rel_own(own, mount_root):
    """The runtime's own cgroup relative to what the mount exposes (mountinfo root field)."""
    if mount_root in ("", "/"):
        return own
    if own == mount_root:
        return "/"
    if own.startswith(mount_root.rstrip("/") + "/"):
        return own[len(mount_root.rstrip("/")):]
    return own


# ---------------------------------------------------------------------------------------------- file I/O

_HINTS = {
    _errno.ENOENT: "no such file (controller or file missing on this host)",
    _errno.EINVAL: "invalid argument (value rejected by the kernel)",
    _errno.EBUSY: "device or resource busy",
    _errno.EPERM: "operation not permitted",
    _errno.EACCES: "permission denied",
    _errno.ENOSPC: "no space left on device (cgroup not ready, e.g. empty cpuset)",
    _errno.ENODEV: "no such device",
    _errno.ERANGE: "numerical result out of range",
    _errno.EROFS: "read-only file system",
    _errno.EOPNOTSUPP: "operation not supported",
}


def reason(err):
    e = getattr(err, "errno", None)
    if e in _HINTS:
        return _HINTS[e]
    if e:
        return os.strerror(e).lower()
    return str(err)


def err_write(field, fname, value, exc, extra=""):
    r = reason(exc)
    what = f"cannot write {fname}"
    if getattr(exc, "errno", None) not in (_errno.ENOENT, None):
        v = value if len(value) < 60 else value[:57] + "..."
        what = f"cannot write {v!r} to {fname}"
    return CgroupError(f"{field}: {what}: {r}{extra}")


def write_file(dirpath, fname, value):
    """Write one value (one write(2)); raises OSError."""
    fd = os.open(dirpath + "/" + fname, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode() if isinstance(value, str) else value)
    finally:
        os.close(fd)


def read_file(dirpath, fname):
    fd = os.open(dirpath + "/" + fname, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks).decode()
    finally:
        os.close(fd)


def try_read(dirpath, fname, default=None):
    try:
        return read_file(dirpath, fname)
    except OSError:
        return default


def write_or_raise(dirpath, fname, value, field):
    try:
        write_file(dirpath, fname, value)
    except OSError as e:
        raise err_write(field, fname, value, e) from None


def key_values(text):
    out = {}
    for line in (text or "").splitlines():
        k, _, v = line.partition(" ")
        if not k:
            continue
        try:
            out[k] = int(v)
        except ValueError:
            out[k] = v.strip()
    return out


def to_int(text):
    try:
        return int(text.strip())
    except (ValueError, AttributeError):
        return None


# ---------------------------------------------------------------------------------------------- directories

def missing_dirs(path, stop=None):
    """The directories make_dirs(path) would create now (top-down), without creating anything."""
    out = []
    while path and not os.path.isdir(path):
        if stop and not under(path, stop) or path == stop:
            break
        out.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return out[::-1]


def make_dirs(path, created, stop=None):
    """mkdir -p `path`, appending every directory *we* created to `created` (top-down order).
    `stop` is the hierarchy mountpoint: never try to create it or anything above."""
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        return False
    except FileNotFoundError:
        parent = os.path.dirname(path)
        if parent == path or (stop and not under(parent, stop)):
            raise
        for attempt in range(3):
            make_dirs(parent, created, stop)
            try:
                os.mkdir(path, 0o755)
                break
            except FileExistsError:
                return False
            except FileNotFoundError:
                # the parent was there and went again: another container's delete removed the parent it had
                # made (a shared slice directory), between our two mkdirs
                if attempt == 2:
                    raise
    created.append(path)
    return True


def remove_dirs(created, timeout=2.0):
    """rmdir what we created, deepest first. Returns a list of (dir, error) that could not be removed."""
    import time

    left = []
    for d in sorted(set(created), key=lambda p: (-p.count("/"), p)):
        deadline = None
        while True:
            try:
                _remove_children(d)
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno == _errno.EBUSY:
                    # Tasks that are exiting still pin the cgroup for a moment.
                    now = time.monotonic()
                    if deadline is None:
                        deadline = now + timeout
                    if now < deadline:
                        time.sleep(0.005)
                        continue
                left.append((d, e))
                break
    return left


def _remove_children(d):
    """The cgroups the container made below its own (a cgroup namespace with a writable cgroupfs, systemd or a
    runtime inside): removed with it, deepest first, as runc's RemovePath does; a busy one stays (EBUSY below)."""
    try:
        entries = list(os.scandir(d))
    except OSError:
        return
    for e in entries:
        try:
            if e.is_dir(follow_symlinks=False):
                _remove_children(e.path)
                os.rmdir(e.path)
        except OSError:
            pass


def procs_recursive(dirpath, fname="cgroup.procs"):
    pids = []
    seen = set()
    for top, dirs, files in os.walk(dirpath):
        txt = try_read(top, fname, "")
        for tok in txt.split():
            try:
                p = int(tok)
            except ValueError:
                continue
            if p not in seen:
                seen.add(p)
                pids.append(p)
    return pids


def kill_pids(pids, sig):
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def wait_empty(get_pids, timeout=5.0, kill_sig=None):
    """Poll until get_pids() is empty (re-sending kill_sig to newcomers). Returns the pids still there."""
    import time

    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        pids = get_pids()
        if not pids:
            return []
        if time.monotonic() >= deadline:
            return pids
        if kill_sig is not None:
            kill_pids(pids, kill_sig)
        # (no reaping here: exited tasks leave cgroup.procs at exit, zombies are not listed, and the caller
        # may be waiting for one of them itself.)
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


# ---------------------------------------------------------------------------------------------- value helpers

def want_int(field, v, lo=None, hi=None):
    if isinstance(v, bool) or not isinstance(v, int):
        raise CgroupError(f"{field}: must be an integer, got {v!r}")
    if lo is not None and v < lo or hi is not None and v > hi:
        rng = f"{lo if lo is not None else ''}-{hi if hi is not None else ''}"
        raise CgroupError(f"{field}: {v} is out of range ({rng})")
    return v


def want_bool(field, v):
    if not isinstance(v, bool):
        raise CgroupError(f"{field}: must be a boolean, got {v!r}")
    return v


def want_str(field, v):
    if not isinstance(v, str):
        raise CgroupError(f"{field}: must be a string, got {v!r}")
    return v


def want_obj(field, v):
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise CgroupError(f"{field}: must be an object")
    return v


def want_list(field, v):
    if v is None:
        return []
    if not isinstance(v, list):
        raise CgroupError(f"{field}: must be an array")
    return v


_CPULIST_OK = set("0123456789,-")


def cpu_list(field, v):
    want_str(field, v)
    s = v.strip()
    if not s or (set(s) - _CPULIST_OK):
        raise CgroupError(f"{field}: {v!r} is not a list like \"0-3,7\"")
    for part in s.split(","):
        a, dash, b = part.partition("-")
        if not a.isdigit() or (dash and not b.isdigit()) or (dash and int(b) < int(a)):
            raise CgroupError(f"{field}: {v!r} is not a list like \"0-3,7\"")
    return s


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}


def page_size(field, v):
    """Validate and normalise a hugepage size ("2MB", "1GB", "64KB"); returns (label, bytes)."""
    want_str(field, v)
    s = v.strip()
    if not s.endswith("B") or not s[:-1]:
        raise CgroupError(f"{field}: {v!r} is not a page size like \"2MB\"")
    body = s[:-1]
    unit = body[-1] if body[-1].isalpha() else ""
    num = body[:-1] if unit else body
    if unit.upper() not in _UNITS or not num.isdigit() or int(num) == 0:
        raise CgroupError(f"{field}: {v!r} is not a page size like \"2MB\"")
    n = int(num) * _UNITS[unit.upper()]
    # The kernel names the files after the largest exact unit: hugetlb.2MB.*, hugetlb.1GB.*, hugetlb.64KB.*
    for u in ("P", "T", "G", "M", "K"):
        if n % _UNITS[u] == 0:
            return f"{n // _UNITS[u]}{u}B", n
    return f"{n}B", n


def dev_entries(field, lst, key):
    """weightDevice / throttle entries -> list of (index, major, minor, entry)."""
    out = []
    for i, e in enumerate(want_list(field, lst)):
        f = f"{field}[{i}]"
        if not isinstance(e, dict):
            raise CgroupError(f"{f}: must be an object")
        for k in ("major", "minor"):
            if k not in e:
                raise CgroupError(f"{f}.{k}: required")
            want_int(f"{f}.{k}", e[k], 0)
        if key and key not in e:
            raise CgroupError(f"{f}.{key}: required")
        out.append((f, e["major"], e["minor"], e))
    return out


def finish_destroy(mgr, d, timeout, kill=True):
    """The end of destroy() on both drivers: wait until `d` (a directory, or a list of them) has no process left
    (bounded), then remove the directories this manager created (deepest first); mgr.created keeps what could not
    be removed."""
    dirs = [d] if isinstance(d, str) else list(d)
    if kill:
        left = wait_empty(lambda: sorted({p for x in dirs for p in procs_recursive(x)}), timeout, SIGKILL)
        if left:
            from . import CgroupError

            raise CgroupError(f"cannot destroy cgroup {dirs[0]}: processes {left[:5]} did not exit "
                              f"within {timeout:g}s of SIGKILL")
    left = remove_dirs(mgr.created)
    if left:
        from . import CgroupError

        bad, err = left[0]
        mgr.created = [x for x, _e in left]
        raise CgroupError(f"cannot remove cgroup {bad}: {reason(err)}")
    mgr.created = []


# ---------------------------------------------------------------------------------------------- rootless

class Rootless:
    """The rootless cgroup manager's bookkeeping, shared by the v1 and v2 drivers (see cgroups.ROOTLESS)."""

    rootless = False  # True, False, or None: runc's "auto", decided at the first permission error
    explicit = False  # a cgroupsPath was configured: no error is ignored
    skipped = ()      # [[name, the caller's own cgroup there, [controllers], why]]: left out, rootless

    def may_skip(self, err, even_explicit=False):
        """True when `err` (creating or joining the container's cgroup) leaves that cgroup out instead."""
        if (self.explicit and not even_explicit) or getattr(err, "errno", None) not in (
                _errno.EPERM, _errno.EACCES, _errno.EROFS):
            return False
        return self.is_rootless()

    def is_rootless(self):
        if self.rootless is None:
            from . import rootless_cgroups

            self.rootless = rootless_cgroups(None)
        return bool(self.rootless)

    def joined(self):
        """False when the container has no cgroup of its own at all (every hierarchy left out)."""
        return not self.skipped or bool(self.kept())

    def skipped_for(self, ctrl):
        """The left-out entry that `ctrl` ("" = the unified hierarchy) belonged to, or None."""
        for s in self.skipped:
            if ctrl in s[2] or ctrl == s[0] or ("name=" + ctrl) in s[2]:
                return s
        return None

    def unjoined(self, field, ctrl):
        """The error for a limit on a controller whose cgroup was left out (runc's wording)."""
        s = self.skipped_for(ctrl)
        why = f" ({s[3]})" if s else ""
        return CgroupError(f"{field}: cannot set {ctrl or 'unified'} limit: container could not join or create "
                           f"cgroup{why}")

    def rootless_fields(self, d):
        if self.rootless:
            d["rootless"] = True
        if self.skipped:
            d["skipped"] = [list(x) for x in self.skipped]
        return d

    def restore_rootless(self, d):
        # (not recorded: runc's "auto" again, decided at the first permission error, if any)
        self.rootless = True if d.get("rootless") is True else None
        sk = d.get("skipped") or []
        if not isinstance(sk, list) or not all(isinstance(x, list) and len(x) == 4 for x in sk):
            raise CgroupError("container state: invalid cgroup record (skipped)")
        self.skipped = [list(x) for x in sk]
        return self


def own_dir_of(d, inner, mountpoint):
    """The caller's own cgroup directory, given the container's `d` made of it and a relative `inner`."""
    suffix = "/" + inner.strip("/")
    return d[: -len(suffix)] if inner not in ("", ".", "/") and d.endswith(suffix) else mountpoint
