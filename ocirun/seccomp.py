"""linux.seccomp: compile the profile to classic BPF with libseccomp, cache the program, install it raw.

prepare() runs before the container's init can no longer reach the host's files: in the runtime process before
it forks the init (`create`/`run`), in `exec` before setns into the mount namespace. It does:

1. translate the JSON into numbers (actions, operators, architectures, flags), checking every field; errors
   name the field (`linux.seccomp.syscalls[3].action: unknown action "SCMP_ACT_FOO"`);
2. look the BPF program up in a cache keyed by a digest of the profile, the machine, the libseccomp version, the
   kernel release and this file (translation_digest(): the code that builds the program); on a miss, build it
   with libseccomp (ctypes) exactly as runc does, export it with seccomp_export_bpf, put runc's -ENOSYS stub in
   front of it (enosys_stub()) and store it (atomically, checked on every read);
3. with SCMP_ACT_NOTIFY, connect to listenerPath (a host path: after pivot_root it would be out of reach).

Filter.load() then only calls seccomp(SECCOMP_SET_MODE_FILTER, flags, prog): no import, no open. On a cache hit
libseccomp is only asked its version (for the key; no filter is built, pyseccomp is never imported), and the
program installed is byte for byte what libseccomp exported (tests compare it with pyseccomp's export_bpf).

runc's semantics kept: SCMP_ACT_KILL is KILL_THREAD; ERRNO and TRACE default to EPERM; unknown syscall names
are skipped (debug log); a rule whose action equals the default action is skipped; several args conditions in
one rule are ANDed unless two of them test the same argument, in which case each becomes a rule of its own
(ORed); the native architecture is always in the filter; no_new_privs is not set by the filter (ocirun does
it, per process.noNewPrivileges). SCMP_ACT_NOTIFY cannot be the default action, nor be used for write/sendmsg
(the init sends the listener fd with sendmsg once the filter is in force).

The -ENOSYS stub (runc's libcontainer/seccomp/patchbpf): unless the default action lets a syscall through (ALLOW,
LOG, TRACE), a syscall whose number is above the highest one the profile names for its architecture gets ENOSYS
instead of the default action, so that a program probing a syscall newer than the profile (clone3, faccessat2...)
sees "not implemented" and falls back, as on an older kernel. Per architecture: those of `architectures` plus the
native one (runc >= 1.2; runc 1.1 only stubbed the listed ones), numbers as libseccomp resolves every name of every
rule (rules equal to the default action and names the rule skips included); x86_64 and x32 are told apart by the
x32 bit, s390/s390x also give ENOSYS for syscall 0 (the multiplexer of numbers the kernel does not know).
runc skips the stub when defaultErrnoRet equals SCMP_ACT_ERRNO(ENOSYS) (0x50026), a value no errno in 0-65535 is:
so it always adds it for an errno default; with defaultErrnoRet 38 the two behave the same anyway.

Everything that determines the program is in this file: the cache key covers it (translation_digest()), so a
changed translation never loads a program an older one stored.

Cache: $OCIRUN_SECCOMP_CACHE if set ("" or "off" disables it), else /var/cache/ocirun/seccomp for the host's
root and $XDG_CACHE_HOME/ocirun/seccomp (~/.cache/...) otherwise (root of a user namespace included). Directory
and entries must belong to the caller (or root) and not be writable by others; an entry that fails any check
is rebuilt and rewritten.
"""
import os

from . import state as St
from .errors import OciError

# Action encodings (SECCOMP_RET_* as libseccomp's SCMP_ACT_*); the low 16 bits of ERRNO/TRACE carry data.
ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000,          # libseccomp's SCMP_ACT_KILL is KILL_THREAD (runc too)
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
    "SCMP_ACT_NOTIFY": 0x7FC00000,
}
_WITH_DATA = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
EPERM = 1

OPERATORS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
             "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}

_LE, _64, _N32 = 0x40000000, 0x80000000, 0x20000000
# AUDIT_ARCH_* values, which libseccomp uses as its SCMP_ARCH_* tokens.
ARCHS = {
    "SCMP_ARCH_X86": 3 | _LE, "SCMP_ARCH_X86_64": 62 | _64 | _LE, "SCMP_ARCH_X32": 62 | _LE,
    "SCMP_ARCH_ARM": 40 | _LE, "SCMP_ARCH_AARCH64": 183 | _64 | _LE,
    "SCMP_ARCH_MIPS": 8, "SCMP_ARCH_MIPS64": 8 | _64, "SCMP_ARCH_MIPS64N32": 8 | _64 | _N32,
    "SCMP_ARCH_MIPSEL": 8 | _LE, "SCMP_ARCH_MIPSEL64": 8 | _64 | _LE, "SCMP_ARCH_MIPSEL64N32": 8 | _64 | _LE | _N32,
    "SCMP_ARCH_PPC": 20, "SCMP_ARCH_PPC64": 21 | _64, "SCMP_ARCH_PPC64LE": 21 | _64 | _LE,
    "SCMP_ARCH_S390": 22, "SCMP_ARCH_S390X": 22 | _64,
    "SCMP_ARCH_PARISC": 15, "SCMP_ARCH_PARISC64": 15 | _64,
    "SCMP_ARCH_RISCV64": 243 | _64 | _LE,
    "SCMP_ARCH_LOONGARCH64": 258 | _64 | _LE, "SCMP_ARCH_M68K": 4,
    "SCMP_ARCH_SH": 42 | _LE, "SCMP_ARCH_SHEB": 42,
}

SECCOMP_SET_MODE_FILTER = 1
FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2, "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
         "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 32}
FLAG_NEW_LISTENER = 8
FLAG_TSYNC_ESRCH = 16

# seccomp(2) by machine (uname -m); other machines ask libseccomp.
_NR_SECCOMP = {"x86_64": 317, "i386": 354, "i686": 354, "aarch64": 277, "riscv64": 277, "loongarch64": 277,
               "armv7l": 383, "armv6l": 383, "ppc64le": 358, "ppc64": 358, "s390x": 348}

BPF_MAXINSNS = 4096
_MAGIC = b"ocirun-seccomp-bpf\x01\n"
_FORMAT = "2"  # part of the cache key: "2" = programs with the -ENOSYS stub
_NR_SCMP_ERROR = -1
# The init sends the listener fd with sendmsg after the filter is loaded (runc: write): never notified.
_NOTIFY_FORBIDDEN = ("write", "sendmsg")


class Rule:
    __slots__ = ("action", "names", "conds", "index")

    def __init__(self, action, names, conds, index):
        self.action = action        # encoded action
        self.names = names          # syscall names
        self.conds = conds          # [(arg index, op, datum_a, datum_b)]
        self.index = index          # position in linux.seccomp.syscalls, for messages

    def condition_sets(self):
        """runc: all conditions in one rule (ANDed), unless an argument is tested twice: then one rule each."""
        if not self.conds:
            return [()]
        idx = [c[0] for c in self.conds]
        if len(set(idx)) != len(idx):
            return [(c,) for c in self.conds]
        return [tuple(self.conds)]


class Profile:
    """linux.seccomp translated to numbers; see translate()."""

    __slots__ = ("default", "default_name", "archs", "rules", "names", "flags", "notify", "listener_path",
                 "metadata", "raw")

    def bpf_key_doc(self):
        """What the BPF depends on: the profile without the listener (path/metadata) and flags (load-time)."""
        return {k: v for k, v in self.raw.items() if k not in ("listenerPath", "listenerMetadata", "flags")}


def _action(name, errno_ret, where, default_errno=EPERM):
    if name not in ACTIONS:
        raise OciError(f'{where}: unknown action "{name}"')
    if name in _WITH_DATA:
        ret = default_errno if errno_ret is None else errno_ret
        if not isinstance(ret, int) or isinstance(ret, bool) or not 0 <= ret <= 0xFFFF:
            raise OciError(f"{where}: errno {ret!r} is out of range (0-65535)")
        return ACTIONS[name] | ret
    return ACTIONS[name]


def translate(cfg):
    """Check linux.seccomp and turn it into a Profile (no libseccomp needed). Raises OciError."""
    if not isinstance(cfg, dict):
        raise OciError("linux.seccomp: must be an object")
    p = Profile()
    p.raw = cfg
    dname = cfg.get("defaultAction")
    if dname is None:
        raise OciError("linux.seccomp.defaultAction: missing")
    if dname not in ACTIONS:
        raise OciError(f'linux.seccomp.defaultAction: unknown action "{dname}"')
    if dname == "SCMP_ACT_NOTIFY":
        raise OciError("linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be used as the default action")
    der = cfg.get("defaultErrnoRet")
    if der is not None and dname not in _WITH_DATA:
        raise OciError(f"linux.seccomp.defaultErrnoRet: {dname} takes no errno (only SCMP_ACT_ERRNO and "
                       f"SCMP_ACT_TRACE do)")
    p.default = _action(dname, der, "linux.seccomp.defaultErrnoRet")
    p.default_name = dname
    p.archs = []
    for i, a in enumerate(cfg.get("architectures") or ()):
        if a not in ARCHS:
            raise OciError(f'linux.seccomp.architectures[{i}]: unknown architecture "{a}"')
        p.archs.append(ARCHS[a])
    p.flags = 0
    for i, f in enumerate(cfg.get("flags") or ()):
        if f not in FLAGS:
            raise OciError(f'linux.seccomp.flags[{i}]: unknown flag "{f}"')
        p.flags |= FLAGS[f]
    p.rules = []
    p.names = []       # every name of every rule, skipped ones included (the -ENOSYS stub's highest numbers)
    p.notify = False
    for i, sc in enumerate(cfg.get("syscalls") or ()):
        where = f"linux.seccomp.syscalls[{i}]"
        if not isinstance(sc, dict):
            raise OciError(f"{where}: must be an object")
        aname = sc.get("action")
        if aname not in ACTIONS:
            raise OciError(f'{where}.action: unknown action "{aname}"')
        er = sc.get("errnoRet")
        if er is not None and aname not in _WITH_DATA:
            raise OciError(f"{where}.errnoRet: {aname} takes no errno (only SCMP_ACT_ERRNO and SCMP_ACT_TRACE do)")
        act = _action(aname, er, f"{where}.errnoRet")
        names = sc.get("names")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise OciError(f"{where}.names: must be a non-empty list of syscall names")
        p.names.extend(names)
        if aname == "SCMP_ACT_NOTIFY":
            p.notify = True
            for n in names:
                if n in _NOTIFY_FORBIDDEN:
                    raise OciError(f"{where}: SCMP_ACT_NOTIFY cannot be used for the {n} syscall (the runtime "
                                   f"needs it to hand the listener fd over)")
        conds = []
        for j, a in enumerate(sc.get("args") or ()):
            aw = f"{where}.args[{j}]"
            if not isinstance(a, dict):
                raise OciError(f"{aw}: must be an object")
            idx = a.get("index")
            if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx <= 5:
                raise OciError(f"{aw}.index: {idx!r} is out of range (a syscall has arguments 0-5)")
            op = a.get("op")
            if op not in OPERATORS:
                raise OciError(f'{aw}.op: unknown operator "{op}"')
            v1 = a.get("value")
            v2 = a.get("valueTwo", 0)
            for fname, v in (("value", v1), ("valueTwo", v2)):
                if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << 64:
                    raise OciError(f"{aw}.{fname}: {v!r} is not a 64-bit unsigned integer")
            conds.append((idx, OPERATORS[op], v1, v2))
        if act == p.default:
            continue  # runc: nothing to add, the default action already does it
        p.rules.append(Rule(act, names, conds, i))
    p.listener_path = cfg.get("listenerPath") or None
    p.metadata = cfg.get("listenerMetadata") or ""
    if p.notify and not p.listener_path:
        raise OciError("linux.seccomp.listenerPath: SCMP_ACT_NOTIFY is used, but no listenerPath is set")
    if p.notify:
        p.flags |= FLAG_NEW_LISTENER
        if p.flags & FLAGS["SECCOMP_FILTER_FLAG_TSYNC"]:
            p.flags |= FLAG_TSYNC_ESRCH  # the kernel refuses TSYNC with a listener without it
    elif p.flags & FLAGS["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]:
        from .log import debug

        debug("seccomp: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV ignored: no SCMP_ACT_NOTIFY rule")
        p.flags &= ~FLAGS["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
    return p


# ---------------------------------------------------------------------------------------------- libseccomp
_lib = None            # handle on libseccomp.so.2 (version, native arch, compiling), loaded by _libseccomp()


def _libseccomp():
    """libseccomp.so.2 through the syscall layer (syscalls.load_library: int-returning, errno-keeping functions,
    as ctypes.CDLL(use_errno=True) gives, without importing the ctypes package on the create path). No
    search: dlopen finds it as the dynamic linker would."""
    global _lib
    if _lib is None:
        from . import syscalls as S

        for name in ("libseccomp.so.2", "libseccomp.so"):
            try:
                _lib = S.load_library(name)
                break
            except OSError:
                continue
        else:
            raise OciError("linux.seccomp: libseccomp (libseccomp.so.2) is not installed on this host")
    return _lib


def libseccomp_version():
    """libseccomp's seccomp_version() (part of the BPF cache key, so on the create path: no ctypes package)."""
    from . import syscalls as S

    ct = S.ct()

    class V(ct.Structure):
        _fields_ = [("major", ct.c_uint), ("minor", ct.c_uint), ("micro", ct.c_uint)]

    fn = _libseccomp().seccomp_version
    fn.restype = ct.POINTER(V)
    v = fn().contents
    return f"{v.major}.{v.minor}.{v.micro}"


def _bind():
    """Declare the few libseccomp calls compile_bpf() makes (ctypes; pyseccomp's import alone costs ~35 ms)."""
    import ctypes

    lib = _libseccomp()
    if getattr(lib, "_ocirun_bound", False):
        return lib
    vp, u32, i = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int
    for name, res, args in (("seccomp_init", vp, (u32,)), ("seccomp_release", None, (vp,)),
                            ("seccomp_attr_set", i, (vp, i, u32)), ("seccomp_arch_exist", i, (vp, u32)),
                            ("seccomp_arch_add", i, (vp, u32)), ("seccomp_syscall_resolve_name", i, (ctypes.c_char_p,)),
                            ("seccomp_rule_add_array", i, (vp, u32, i, ctypes.c_uint, vp)),
                            ("seccomp_export_bpf", i, (vp, i)), ("seccomp_arch_native", u32, ()),
                            ("seccomp_syscall_resolve_name_arch", i, (u32, ctypes.c_char_p))):
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args

    class ArgCmp(ctypes.Structure):
        _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                    ("datum_b", ctypes.c_uint64)]

    lib.ArgCmp = ArgCmp
    lib._ocirun_bound = True
    return lib


_ATTR_CTL_NNP = 3
_EEXIST = 17


def compile_bpf(profile):
    """The BPF program (bytes, 8 per instruction) runc installs for `profile`: the -ENOSYS stub, then the filter
    libseccomp builds."""
    filt = export_bpf(profile)
    data = enosys_stub(profile) + filt
    if len(data) // 8 > BPF_MAXINSNS:
        raise OciError(f"linux.seccomp: the filter compiles to {len(data) // 8} BPF instructions; the kernel "
                       f"accepts 1 to {BPF_MAXINSNS}")
    return data


def export_bpf(profile):
    """The BPF program libseccomp builds for `profile` (seccomp_export_bpf), its rules added as runc adds them."""
    lib = _bind()
    ctx = lib.seccomp_init(profile.default)
    if not ctx:
        raise OciError("linux.seccomp.defaultAction: libseccomp refuses it")
    try:
        lib.seccomp_attr_set(ctx, _ATTR_CTL_NNP, 0)
        for i, arch in enumerate(profile.archs):
            if lib.seccomp_arch_exist(ctx, arch) == 0:
                continue
            r = lib.seccomp_arch_add(ctx, arch)
            if r < 0 and r != -_EEXIST:
                name = profile.raw["architectures"][i]
                raise OciError(f"linux.seccomp.architectures[{i}]: {name} is not supported by libseccomp "
                               f"{libseccomp_version()}: {os.strerror(-r)}")
        from .log import debug

        for rule in profile.rules:
            where = f"linux.seccomp.syscalls[{rule.index}]"
            for name in rule.names:
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                if nr == _NR_SCMP_ERROR:
                    debug(f"seccomp: {where}: unknown syscall {name!r} skipped")
                    continue
                for conds in rule.condition_sets():
                    arr = (lib.ArgCmp * max(len(conds), 1))(*conds)
                    r = lib.seccomp_rule_add_array(ctx, rule.action, nr, len(conds), arr)
                    if r < 0:
                        raise OciError(f"{where}: libseccomp refuses the rule for {name!r}: {os.strerror(-r)}")
        fd = os.memfd_create("ocirun-seccomp", os.MFD_CLOEXEC)
        try:
            r = lib.seccomp_export_bpf(ctx, fd)
            if r < 0:
                raise OciError(f"linux.seccomp: libseccomp cannot export the filter: {os.strerror(-r)}")
            size = os.lseek(fd, 0, os.SEEK_END)
            os.lseek(fd, 0, os.SEEK_SET)
            data = b""
            while len(data) < size:
                chunk = os.read(fd, size - len(data))
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)
    if not data or len(data) % 8 or len(data) // 8 > BPF_MAXINSNS:
        raise OciError(f"linux.seccomp: the filter compiles to {len(data) // 8} BPF instructions; the kernel "
                       f"accepts 1 to {BPF_MAXINSNS}")
    return data


# ---------------------------------------------------------------------------------------------- -ENOSYS stub
ENOSYS = 38
RET_ENOSYS = ACTIONS["SCMP_ACT_ERRNO"] | ENOSYS
_PASSING = ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE")  # default actions that get no stub (runc's)
_X32_BIT = 0x40000000           # x32 syscall numbers have it; the audit arch is x86_64's
_S390_MULTIPLEXER = 0           # s390(x): syscall numbers the kernel does not know end up as 0 (setup)
# classic BPF opcodes (linux/bpf_common.h)
_LD_ABS_W, _JA, _JEQ_K, _JGT_K, _JSET_K, _RET_K = 0x20, 0x05, 0x15, 0x25, 0x45, 0x06
_OFF_NR, _OFF_ARCH = 0, 4       # struct seccomp_data: int nr; __u32 arch


def _audit_arch(token):
    """libseccomp's SCMP_ARCH_* token -> the AUDIT_ARCH_* the kernel puts in seccomp_data.arch (equal, but
    for x32, whose syscalls arrive as x86_64's with the x32 bit set)."""
    return ARCHS["SCMP_ARCH_X86_64"] if token == ARCHS["SCMP_ARCH_X32"] else token


def highest_syscalls(profile, lib=None):
    """{audit arch: {libseccomp arch token: highest number of a syscall the profile names}}: the architectures
    of the profile and the native one, each with a syscall the profile names (others are left out)."""
    lib = lib or _bind()
    tokens = list(dict.fromkeys([lib.seccomp_arch_native(), *profile.archs]))
    names = [n.encode() for n in dict.fromkeys(profile.names)]
    out = {}
    for token in tokens:
        top = max((lib.seccomp_syscall_resolve_name_arch(token, n) for n in names), default=0)
        if top > 0:  # unknown names resolve to -1, names without a number on the arch to a negative one
            out.setdefault(_audit_arch(token), {})[token] = top
    return out


def _stub_section(audit, tops):
    """One architecture's part of the stub: load the syscall number, the checks, then "F: ja filter" and
    "E: ret ENOSYS". Jumps are ("E"|"F"|int) here; enosys_stub() resolves them."""
    x86_64, x32 = ARCHS["SCMP_ARCH_X86_64"], ARCHS["SCMP_ARCH_X32"]
    body = [(_LD_ABS_W, 0, 0, _OFF_NR)]
    if audit == x86_64:
        if x86_64 in tops and x32 in tops:
            body += [(_JSET_K, 1, 0, _X32_BIT),                # x32: the second check
                     (_JGT_K, "E", "F", tops[x86_64]),
                     (_JGT_K, "E", "F", tops[x32])]
        elif x86_64 in tops:
            body += [(_JSET_K, "F", 0, _X32_BIT),              # x32 syscalls: the filter decides
                     (_JGT_K, "E", "F", tops[x86_64])]
        else:
            body += [(_JSET_K, 0, "F", _X32_BIT),              # x86_64 syscalls: the filter decides
                     (_JGT_K, "E", "F", tops[x32])]
    else:
        (token, top), = tops.items()
        if token in (ARCHS["SCMP_ARCH_S390"], ARCHS["SCMP_ARCH_S390X"]):
            body.append((_JEQ_K, "E", 0, _S390_MULTIPLEXER))
        body.append((_JGT_K, "E", "F", top))
    to = {"F": len(body), "E": len(body) + 1}
    out = []
    for i, (code, jt, jf, k) in enumerate(body):
        jt, jf = (x if isinstance(x, int) else to[x] - i - 1 for x in (jt, jf))
        out.append([code, jt, jf, k])
    out.append([_JA, 0, 0, "filter"])
    out.append([_RET_K, 0, 0, RET_ENOSYS])
    return out


def enosys_stub(profile, lib=None):
    """runc's -ENOSYS stub for `profile` (bytes, put in front of libseccomp's program; b"" when the default action
    lets syscalls through). Load the arch; per architecture with a section, jump to it; otherwise to the filter.
    A section returns ENOSYS for a syscall number above the profile's highest one, else jumps to the filter."""
    if profile.default_name in _PASSING:
        return b""
    tops = highest_syscalls(profile, lib)
    sections = [_stub_section(audit, t) for audit, t in tops.items()]
    n = len(sections)
    insns = [[_LD_ABS_W, 0, 0, _OFF_ARCH]]
    start = 1 + n + 1                                   # the first section, after the jeqs and "ja filter"
    for i, (audit, sec) in enumerate(zip(tops, sections)):
        off = start - (1 + i) - 1
        if off > 255:
            raise OciError("linux.seccomp: too many architectures for the -ENOSYS stub")
        insns.append([_JEQ_K, off, 0, audit])
        start += len(sec)
    insns.append([_JA, 0, 0, "filter"])
    for sec in sections:
        insns += sec
    import struct

    total = len(insns)
    out = []
    for i, (code, jt, jf, k) in enumerate(insns):
        if k == "filter":
            k = total - i - 1
        out.append(struct.pack("=HBBI", code, jt, jf, k))
    return b"".join(out)


# ---------------------------------------------------------------------------------------------- cache
_sha256 = St.sha256


def cache_dir():
    env = os.environ.get("OCIRUN_SECCOMP_CACHE")
    if env is not None:
        return None if env in ("", "off") else env
    if _host_root():
        return "/var/cache/ocirun/seccomp"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ocirun", "seccomp")


_host_root = St.host_root  # (a module global: tests replace it)


_translation = None     # translation_digest()'s value, once per process


def translation_digest(path=None):
    """A digest of this file, where everything that turns a profile into a program lives (hex; None when the file
    cannot be read: then the cache is not used). Content, not mtime/size: an edit that keeps the size within the
    same clock tick, or a package install that restores mtimes (reproducible builds pin them), would leave an
    mtime+size key unchanged. _imp.source_hash is the SipHash-1-3 Python itself uses to tell that the source of
    a hash-based .pyc changed; builtin, nothing to import: reading + hashing this file costs ~55 us on the first
    call of a process (sha256 from _sha256 alone would cost ~175 us; an os.stat ~4 us), and only on the create
    and exec paths with a profile and the cache on."""
    global _translation
    if path is None and _translation is not None:
        return _translation
    try:
        fd = os.open(path or __file__, os.O_RDONLY | os.O_CLOEXEC)
    except (OSError, TypeError):
        return None
    try:
        data = os.read(fd, os.fstat(fd).st_size + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    import _imp

    digest = _imp.source_hash(_SOURCE_HASH_KEY, data).hex() + f"-{len(data)}"
    if path is None:
        _translation = digest
    return digest


_SOURCE_HASH_KEY = 0x6F636972  # any fixed key ("ocir"): the digest only has to be stable across processes


def cache_key(profile, version=None, translation=None):
    """sha256 over what the BPF depends on: the profile (canonical JSON), machine, libseccomp, kernel, and the
    translation code (translation_digest())."""
    from . import jsonio

    u = os.uname()
    doc = jsonio.dumps(profile.bpf_key_doc(), sort_keys=True)
    text = "\0".join((_FORMAT, u.machine, u.release, version or libseccomp_version(),
                       translation or translation_digest() or "", doc))
    return _sha256(text.encode())


def _trusted(st):
    return st.st_uid in (os.geteuid(), 0) and not st.st_mode & 0o022


def cache_read(path, key):
    """The cached program for `key`, or None (missing, untrusted or corrupt entries are misses)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        import stat

        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not _trusted(st) or st.st_size > 64 + 8 * BPF_MAXINSNS + 64:
            return None
        data = os.read(fd, st.st_size + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    head = len(_MAGIC) + 32 + 4
    if len(data) < head + 8 + 32 or not data.startswith(_MAGIC) or data[len(_MAGIC):len(_MAGIC) + 32] != key:
        return None
    n = int.from_bytes(data[head - 4:head], "little")
    prog = data[head:-32]
    if len(prog) != n * 8 or not 0 < n <= BPF_MAXINSNS or _sha256(data[:-32]) != data[-32:]:
        return None
    return prog


def cache_entry(key, prog):
    body = _MAGIC + key + (len(prog) // 8).to_bytes(4, "little") + prog
    return body + _sha256(body)


def cache_write(d, path, key, prog):
    """Store atomically (temp file + rename); failures only cost a recompile next time."""
    try:
        if not os.path.isdir(d):
            old = os.umask(0o022)  # the init runs with umask 0: parents 0755, the cache itself 0700
            try:
                os.makedirs(d, mode=0o700, exist_ok=True)
            finally:
                os.umask(old)
        st = os.stat(d)
        if not _trusted(st):
            return False
        tmp = os.path.join(d, f".tmp-{os.getpid()}-{os.urandom(4).hex()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            data = cache_entry(key, prog)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.rename(tmp, path)
        return True
    except OSError:
        try:
            os.unlink(tmp)
        except (OSError, UnboundLocalError):
            pass
        return False


def program_for(profile):
    """The BPF program for `profile`: from the cache, else compiled by libseccomp (and cached)."""
    d = cache_dir()
    translation = translation_digest() if d is not None else None
    if translation is None:  # no cache, or this file cannot be read: no key could tell translations apart
        return compile_bpf(profile)
    key = cache_key(profile, translation=translation)
    path = os.path.join(d, key.hex() + ".bpf")
    prog = cache_read(path, key)
    if prog is not None:
        return prog
    prog = compile_bpf(profile)
    cache_write(d, path, key, prog)
    return prog


# ---------------------------------------------------------------------------------------------- loading
def _nr_seccomp():
    nr = _NR_SECCOMP.get(os.uname().machine)
    if nr is None:
        nr = _libseccomp().seccomp_syscall_resolve_name(b"seccomp")
        if nr < 0:
            raise OciError("linux.seccomp: the seccomp syscall is unknown on this machine")
    return nr


def _syscall_fn():
    from . import syscalls as S

    return S._lib().syscall


def check_flags(flags, libc=None, nr=None):
    """Ask the kernel about each filter flag (a NULL program: EFAULT = known, EINVAL = unknown)."""
    from . import syscalls as S

    ctypes = S.ct()

    libc = libc or _syscall_fn()
    nr = nr or _nr_seccomp()
    for name, bit in FLAGS.items():
        if not flags & bit:
            continue
        probe = bit | (FLAG_NEW_LISTENER if bit == FLAGS["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"] else 0)
        if libc(nr, SECCOMP_SET_MODE_FILTER, ctypes.c_uint(probe), None) < 0 and ctypes.get_errno() == 22:
            raise OciError(f"linux.seccomp.flags: {name} is not supported by this kernel ({os.uname().release})")
    for bit, name in ((FLAG_NEW_LISTENER, "SCMP_ACT_NOTIFY (SECCOMP_FILTER_FLAG_NEW_LISTENER)"),
                      (FLAG_TSYNC_ESRCH, "SECCOMP_FILTER_FLAG_TSYNC with SCMP_ACT_NOTIFY")):
        if flags & bit and libc(nr, SECCOMP_SET_MODE_FILTER, ctypes.c_uint(bit), None) < 0 \
                and ctypes.get_errno() == 22:
            raise OciError(f"linux.seccomp: {name} is not supported by this kernel ({os.uname().release})")


class Filter:
    """A BPF program ready to install; load() makes the seccomp(2) call (and, with a listener, hands its fd)."""

    def __init__(self, prog, flags, listener=None):
        from . import syscalls as S

        ctypes = S.ct()  # not `import ctypes` (2.3 ms): this runs on every create with a seccomp profile

        class SockFprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

        self.prog = prog
        self.flags = flags
        self._ctypes = ctypes
        self._buf = ctypes.create_string_buffer(prog, len(prog))
        self._fprog = SockFprog(len(prog) // 8, ctypes.addressof(self._buf))
        self._ref = ctypes.byref(self._fprog)
        self._flags = ctypes.c_uint(flags)
        self._syscall = _syscall_fn()
        self._nr = _nr_seccomp()
        self._listener = listener
        self.loaded = False
        self.notify_fd = None

    def keep_fds(self):
        """The fds this filter needs until load() (the listener connection and its /proc fd)."""
        lst = self._listener
        if lst is None:
            return set()
        return {fd for fd in (getattr(getattr(lst, "sock", None), "fileno", lambda: None)(), getattr(lst, "_proc", None))
                if isinstance(fd, int) and fd >= 0}

    def load(self):
        if self.loaded:
            return
        lst = self._listener
        payload = lst.payload() if lst is not None else None  # before the filter: it may read /proc
        r = self._syscall(self._nr, SECCOMP_SET_MODE_FILTER, self._flags, self._ref)
        if r < 0:
            e = self._ctypes.get_errno()
            raise OciError(f"linux.seccomp: cannot load the filter: seccomp(SECCOMP_SET_MODE_FILTER): "
                           f"{os.strerror(e)}")
        self.loaded = True
        if lst is not None:
            self.notify_fd = r
            lst.send(r, payload)

    def close(self):
        """Close this process's copies of the listener connection and /proc fd: the runtime calls it after
        forking the init (which keeps its own), so that the agent sees EOF once the init has sent the fd."""
        if self._listener is not None:
            self._listener.close()


class Listener:
    """The connection to listenerPath, made before pivot_root; sends the notify fd and containerProcessState."""

    def __init__(self, path, metadata, state):
        import _socket

        self.path = path
        self.metadata = metadata
        self.state = state
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        try:
            sock.connect(path)
        except OSError as e:
            sock.close()
            raise OciError(f"linux.seccomp.listenerPath: cannot connect to {path}: {e.strerror}") from None
        self.sock = sock
        self._scm = (_socket.SOL_SOCKET, _socket.SCM_RIGHTS)
        import sys

        self._byteorder = sys.byteorder  # load() imports nothing
        # host /proc: readlink("self") there gives this process's pid as the host sees it, even after a fork
        # into a pid namespace (exec) or after pivot_root (init).
        self._proc = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        from . import jsonio

        self._dumps = jsonio.dumps

    def payload(self):
        try:
            pid = int(os.readlink("self", dir_fd=self._proc))
        except (OSError, ValueError):
            pid = os.getpid()
        st = dict(self.state)
        if not st.get("pid"):
            st["pid"] = pid
        doc = {"ociVersion": st.get("ociVersion"), "fds": ["seccompFd"], "pid": pid}
        if self.metadata:
            doc["metadata"] = self.metadata
        doc["state"] = st
        return self._dumps(doc).encode()

    def send(self, fd, payload):
        try:
            n = self.sock.sendmsg([payload], [(self._scm[0], self._scm[1], fd.to_bytes(4, self._byteorder))])
            while n < len(payload):
                payload = payload[n:]
                n = self.sock.send(payload)
        except OSError as e:
            raise OciError(f"linux.seccomp.listenerPath: cannot send the seccomp fd to {self.path}: "
                           f"{e.strerror}") from None
        self.close()
        try:
            os.close(fd)
        except OSError:
            pass

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        if self._proc is not None:
            try:
                os.close(self._proc)
            except OSError:
                pass
            self._proc = None


def _state(creator):
    from .version import SPEC_VERSION

    if creator is None:
        st = {"id": "", "status": "running", "pid": 0, "bundle": "", "annotations": {}}
    elif isinstance(creator, dict):
        st = dict(creator)
    else:
        cfg = getattr(creator, "cfg", None)
        st = {"id": creator.c.id, "status": "creating", "pid": getattr(creator, "init_pid", 0) or 0,
              "bundle": getattr(creator, "bundle", "") or "",
              "annotations": (getattr(cfg, "annotations", None) or {})}
    st.setdefault("ociVersion", SPEC_VERSION)
    st.setdefault("annotations", {})
    return {"ociVersion": st["ociVersion"], "id": st.get("id", ""), "status": st.get("status", "running"),
            "pid": st.get("pid") or 0, "bundle": st.get("bundle", ""), "annotations": st["annotations"] or {}}


def features():
    """runtime-spec features.md `linux.seccomp` for this host: libseccomp's architectures, the kernel's flags."""
    try:
        lib = _bind()
    except OciError:
        return {"enabled": False}
    import ctypes

    fn = lib.seccomp_arch_resolve_name
    fn.restype, fn.argtypes = ctypes.c_uint32, (ctypes.c_char_p,)
    archs = sorted(n for n, v in ARCHS.items() if fn(n[len("SCMP_ARCH_"):].lower().encode()) == v)
    supported = []
    for name, bit in FLAGS.items():
        try:
            check_flags(bit)
            supported.append(name)
        except OciError:
            pass
    return {"enabled": True, "actions": sorted(ACTIONS), "operators": sorted(OPERATORS), "archs": archs,
            "knownFlags": sorted(FLAGS), "supportedFlags": sorted(supported)}


def prepare(seccomp_cfg, creator):
    """Compile linux.seccomp into a Filter with .load(); called before pivot_root/setns(mnt).

    `creator` is the container creator (init), None (exec) or a state dict (id, status, pid, bundle,
    annotations) used for the containerProcessState sent to listenerPath."""
    profile = translate(seccomp_cfg)
    check_flags(profile.flags)
    prog = program_for(profile)
    listener = None
    if profile.notify:
        listener = Listener(profile.listener_path, profile.metadata, _state(creator))
    return Filter(prog, profile.flags, listener)
