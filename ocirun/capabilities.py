"""Capabilities: bounding, effective, permitted, inheritable (python-prctl) and ambient (prctl PR_CAP_AMBIENT).

We call python-prctl's C extension `_prctl` directly: its Python wrapper `prctl` builds objects for every
capability at import (~6 ms here), while `_prctl.set_caps`/`_prctl.prctl` are what it ends up calling anyway.
"""
import os

from . import syscalls as S
from .errors import OciError

# Capability numbers are kernel ABI (linux/capability.h).
NAMES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
NUMBER = {n: i for i, n in enumerate(NAMES)}
SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")


def last_cap():
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return len(NAMES) - 1


class Resolved:
    """Capability sets as numbers; None = set not given (cleared, as runc does)."""

    __slots__ = SETS + ("warnings",)


def resolve(caps, kernel_last=None):
    """Names -> numbers. A name that is not exactly a known capability (CAP_ and upper case, as the spec and
    runc spell them) or that the running kernel lacks is warned about and left out: config.md says such a
    value MUST be logged as a warning and SHOULD NOT fail the container, and runc ignores it the same way."""
    kernel_last = last_cap() if kernel_last is None else kernel_last
    r = Resolved()
    r.warnings = []
    for s in SETS:
        names = getattr(caps, s) if caps is not None else None
        if names is None:
            setattr(r, s, None)
            continue
        nums = []
        for i, n in enumerate(names):
            num = NUMBER.get(n) if isinstance(n, str) else None
            if num is None:
                r.warnings.append(f"process.capabilities.{s}[{i}]: ignoring unknown capability {n!r}")
                continue
            if num > kernel_last:
                r.warnings.append(f"process.capabilities.{s}: {n} is not supported by the running kernel; ignored")
                continue
            nums.append(num)
        setattr(r, s, nums)
    return r


def drop_unavailable(r, bounding_mask=None):
    """A capability outside the runtime's own bounding set cannot be granted: warn and leave it out (runtime
    spec: a runtime that cannot grant a capability SHOULD log a warning) rather than fail at exec."""
    if bounding_mask is None:
        try:
            bounding_mask = current()["CapBnd"]
        except (OSError, KeyError):
            return
    for s in SETS:
        nums = getattr(r, s)
        if not nums:
            continue
        missing = [c for c in nums if not bounding_mask >> c & 1]
        if missing:
            setattr(r, s, [c for c in nums if bounding_mask >> c & 1])
            for c in missing:
                r.warnings.append(f"process.capabilities.{s}: {_name(c)} is not in this runtime's bounding set "
                                  f"and cannot be granted; ignored")


def check_sets(r):
    """What the kernel's capset(2) would refuse, said at create rather than at start (runc refuses these at create
    too: "unable to apply caps"): effective beyond permitted, inheritable beyond the bounding set. An ambient
    capability that is not both permitted and inheritable cannot be raised: a warning (runc's), left out."""
    from .errors import OciError

    bnd, perm, inh = set(r.bounding or ()), set(r.permitted or ()), set(r.inheritable or ())
    for sname, have, limit, what in (("effective", r.effective, perm, "permitted"),
                                     ("inheritable", r.inheritable, bnd, "bounding")):
        extra = [c for c in have or () if c not in limit]
        if extra:
            raise OciError(f"process.capabilities.{sname}: {', '.join(_name(c) for c in extra)} not in the {what} "
                           f"set (the kernel refuses that)")
    if r.ambient:
        keep = [c for c in r.ambient if c in perm and c in inh]
        for c in r.ambient:
            if c not in keep:
                r.warnings.append(f"process.capabilities.ambient: can't raise ambient capability {_name(c)}: "
                                  f"it is not both permitted and inheritable; ignored")
        r.ambient = keep


def drop_bounding(r, kernel_last=None):
    """Drop every capability not in the bounding set (needs CAP_SETPCAP: call before switching user)."""
    keep = set(r.bounding or ())
    import _prctl

    for cap in range(0, (last_cap() if kernel_last is None else kernel_last) + 1):
        if cap not in keep:
            try:
                _prctl.prctl(_prctl.PR_CAPBSET_DROP, cap)
            except OSError as e:
                raise OciError(f"process.capabilities.bounding: cannot drop {_name(cap)}: {e.strerror}") from None


def apply_sets(r, sys=S.SYS, kernel_last=None):
    """Set effective/permitted/inheritable exactly, then ambient. Call after the user switch (with keepcaps)."""
    import _prctl

    top = (last_cap() if kernel_last is None else kernel_last) + 1
    every = range(top)
    eff = set(r.effective or ())
    perm = set(r.permitted or ())
    inh = set(r.inheritable or ())
    try:
        _prctl.set_caps(list(eff), list(perm), list(inh),
                        [c for c in every if c not in eff], [c for c in every if c not in perm],
                        [c for c in every if c not in inh])
    except OSError as e:
        raise OciError(f"process.capabilities: cannot set capabilities: {e.strerror}") from None
    try:
        sys.ambient_clear()
    except OSError:
        pass
    for cap in r.ambient or ():
        try:
            sys.ambient_raise(cap)
        except OSError as e:
            # runc warns and goes on: an ambient capability must also be permitted and inheritable
            from . import log

            log.debug(f"process.capabilities.ambient: can't raise {_name(cap)}: {os.strerror(e.errno)} "
                        f"(it must also be permitted and inheritable)")


def _name(cap):
    return NAMES[cap] if cap < len(NAMES) else f"capability {cap}"


def current(pid="self"):
    """Capability masks from /proc/PID/status: {'CapInh': int, 'CapPrm': ..., 'CapEff', 'CapBnd', 'CapAmb'}."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Cap"):
                k, v = line.split(":")
                out[k] = int(v, 16)
    return out


def mask_to_names(mask):
    return [n for i, n in enumerate(NAMES) if mask >> i & 1]
