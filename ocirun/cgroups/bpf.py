"""cgroup v2 device control: an eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE) generated from the device model.

cgroup v2 has no devices.allow/deny files. Instead the kernel runs every BPF_CGROUP_DEVICE program attached to the
task's cgroup (and its ancestors) on each device mknod/open, with a context

    struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; };
    access_type = (access << 16) | type      type: BLOCK 1, CHAR 2      access: MKNOD 1, READ 2, WRITE 4

and the access is refused unless every program returns 1.

The program is generated from a devices.Model (the effective v1 state: default policy + exceptions, see
devices.py) so that it decides exactly as the v1 devices controller would for the same rules:

  * default deny ("whitelist"): allowed iff one exception matches the type, the major (or is "*"), the minor (or
    is "*") and holds *all* the requested access bits (the kernel's match_exception);
  * default allow ("blacklist"): refused iff one exception matches type/major/minor and holds *any* of the
    requested bits (match_exception_partial).

Shape of the program (r1 = ctx on entry):

    r2 = *(u32 *)(r1 + 0)       access_type
    w3 = w2; w3 >>= 16          access bits
    w2 &= 0xffff                device type
    r4 = *(u32 *)(r1 + 4)       major
    r5 = *(u32 *)(r1 + 8)       minor
    for each exception:
        if w2 != TYPE goto next
        if w4 != MAJOR goto next          (left out for "*")
        if w5 != MINOR goto next          (left out for "*")
        whitelist: if w3 & ~ACCESS goto next         (left out when ACCESS is rwm)
        blacklist: w0 = w3; w0 &= ACCESS; if w0 == 0 goto next
        r0 = 1 (whitelist) / 0 (blacklist); exit
      next:
    r0 = default; exit

Comparisons are 32-bit (BPF_JMP32, Linux >= 5.1), so major/minor numbers above 2^31 compare correctly.

Loading and attaching use bpf(2) through ctypes (imported on first use). The program is attached with
BPF_F_ALLOW_MULTI, replacing whatever device programs were attached to that cgroup directly before (atomically
with BPF_F_REPLACE when there was exactly one), and its fd is closed afterwards: the attachment holds the
program. Removing the cgroup detaches it.
"""
import errno as _errno
import os
import struct
import sys

from . import CgroupError

FIELD = "linux.resources.devices"

# ---------------------------------------------------------------------------------------------- the ISA subset

# instruction classes
LDX, ALU, JMP, JMP32, ALU64 = 0x01, 0x04, 0x05, 0x06, 0x07
# size / mode (loads)
W, MEM = 0x00, 0x60
# source
K, X = 0x00, 0x08
# alu ops
AND, RSH, MOV = 0x50, 0x70, 0xb0
# jump ops
JA, JEQ, JSET, JNE, EXIT = 0x00, 0x10, 0x40, 0x50, 0x90

OP_LDXW = LDX | MEM | W             # 0x61  dst = *(u32 *)(src + off)
OP_MOV64_K = ALU64 | MOV | K        # 0xb7  dst = imm
OP_MOV32_X = ALU | MOV | X          # 0xbc  w_dst = w_src
OP_AND32_K = ALU | AND | K          # 0x54  w_dst &= imm
OP_RSH32_K = ALU | RSH | K          # 0x74  w_dst >>= imm
OP_JNE32_K = JMP32 | JNE | K        # 0x56  if w_dst != imm goto +off
OP_JEQ32_K = JMP32 | JEQ | K        # 0x16  if w_dst == imm goto +off
OP_JSET32_K = JMP32 | JSET | K      # 0x46  if w_dst & imm goto +off
OP_JA = JMP | JA                    # 0x05  goto +off
OP_EXIT = JMP | EXIT                # 0x95

# struct bpf_cgroup_dev_ctx
DEV_BLOCK, DEV_CHAR = 1, 2
ACC_MKNOD, ACC_READ, ACC_WRITE = 1, 2, 4
ACC_ALL = ACC_MKNOD | ACC_READ | ACC_WRITE
CTX_ACCESS_TYPE, CTX_MAJOR, CTX_MINOR = 0, 4, 8

_TYPES = {"b": DEV_BLOCK, "c": DEV_CHAR}
_ACCESS = {"m": ACC_MKNOD, "r": ACC_READ, "w": ACC_WRITE}

INSN_SIZE = 8
_BIG_ENDIAN = sys.byteorder == "big"


def access_bits(perms):
    bits = 0
    for c in perms:
        bits |= _ACCESS[c]
    return bits


def _s32(v):
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


class Asm:
    """A tiny assembler: emit instructions, jump forward to named labels, get the encoded program."""

    def __init__(self):
        self.insns = []       # [op, dst, src, off, imm]
        self._labels = {}
        self._fixups = []     # (insn index, label)

    def emit(self, op, dst=0, src=0, off=0, imm=0):
        self.insns.append([op, dst, src, off, _s32(imm)])

    def jump(self, op, dst, imm, label):
        self._fixups.append((len(self.insns), label))
        self.emit(op, dst, 0, 0, imm)

    def label(self, name):
        self._labels[name] = len(self.insns)

    def resolve(self):
        for idx, name in self._fixups:
            off = self._labels[name] - idx - 1
            if not 0 <= off <= 0x7FFF:
                raise CgroupError(f"{FIELD}: eBPF device program too large (jump offset {off})")
            self.insns[idx][3] = off
        self._fixups = []
        return [tuple(i) for i in self.insns]


def encode(insns):
    """(op, dst, src, off, imm) tuples -> struct bpf_insn array bytes (host byte order)."""
    out = bytearray()
    for op, dst, src, off, imm in insns:
        regs = (dst << 4 | src) if _BIG_ENDIAN else (src << 4 | dst)
        out += struct.pack("=BBhi", op, regs, off, imm)
    return bytes(out)


def decode(blob):
    """The inverse of encode() (for debugging and tests)."""
    out = []
    for i in range(0, len(blob), INSN_SIZE):
        op, regs, off, imm = struct.unpack_from("=BBhi", blob, i)
        dst, src = (regs >> 4, regs & 15) if _BIG_ENDIAN else (regs & 15, regs >> 4)
        out.append((op, dst, src, off, imm))
    return out


def program(model):
    """devices.Model -> list of instructions (see the module doc for the shape)."""
    a = Asm()
    whitelist = not model.default_allow
    entries = model.entries()
    if entries:
        a.emit(OP_LDXW, 2, 1, CTX_ACCESS_TYPE)
        a.emit(OP_MOV32_X, 3, 2)
        a.emit(OP_RSH32_K, 3, imm=16)
        a.emit(OP_AND32_K, 2, imm=0xFFFF)
        a.emit(OP_LDXW, 4, 1, CTX_MAJOR)
        a.emit(OP_LDXW, 5, 1, CTX_MINOR)
    for n, ((t, major, minor), perms) in enumerate(entries):
        if t not in _TYPES:
            raise CgroupError(f"{FIELD}: cannot express device type {t!r} in the eBPF device program")
        bits = access_bits(perms)
        nxt = f"next{n}"
        a.jump(OP_JNE32_K, 2, _TYPES[t], nxt)
        if major != -1:
            a.jump(OP_JNE32_K, 4, major, nxt)
        if minor != -1:
            a.jump(OP_JNE32_K, 5, minor, nxt)
        if whitelist:
            if bits != ACC_ALL:
                # the request must not hold a bit the exception lacks
                a.jump(OP_JSET32_K, 3, ~bits & 0xFFFF, nxt)
        else:
            # the request must share a bit with the exception
            a.emit(OP_MOV32_X, 0, 3)
            a.emit(OP_AND32_K, 0, imm=bits)
            a.jump(OP_JEQ32_K, 0, 0, nxt)
        a.emit(OP_MOV64_K, 0, imm=1 if whitelist else 0)
        a.emit(OP_EXIT)
        a.label(nxt)
    a.emit(OP_MOV64_K, 0, imm=0 if whitelist else 1)
    a.emit(OP_EXIT)
    return a.resolve()


# ---------------------------------------------------------------------------------------------- bpf(2)

BPF_PROG_LOAD, BPF_PROG_ATTACH, BPF_PROG_DETACH = 5, 8, 9
BPF_PROG_GET_FD_BY_ID, BPF_OBJ_GET_INFO_BY_FD, BPF_PROG_QUERY = 13, 15, 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI, BPF_F_REPLACE = 2, 4

LICENSE = b"Apache-2.0\0"
PROG_NAME = b"ocirun_devices"
LOG_SIZE = 1 << 20

_NR_BPF = {"x86_64": 321, "aarch64": 280, "arm64": 280, "riscv64": 280, "loongarch64": 280, "ppc64le": 361,
           "ppc64": 361, "s390x": 351, "i686": 357, "i386": 357, "armv7l": 386, "armv6l": 386}

_lib = None


def _libc():
    global _lib
    if _lib is None:
        import ctypes

        lib = ctypes.CDLL(None, use_errno=True)
        lib.syscall.restype = ctypes.c_long
        _lib = (ctypes, lib)
    return _lib


def _nr():
    m = os.uname().machine
    if m not in _NR_BPF:
        raise CgroupError(f"{FIELD}: eBPF device control: unknown bpf(2) syscall number on {m}")
    return _NR_BPF[m]


def bpf(cmd, attr):
    """bpf(cmd, attr, sizeof attr) with attr a ctypes buffer; returns the result or raises OSError."""
    ctypes, lib = _libc()
    r = lib.syscall(ctypes.c_long(_nr()), ctypes.c_long(cmd), ctypes.c_void_p(ctypes.addressof(attr)),
                    ctypes.c_long(len(attr)))
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r


def _attr(size):
    """A zeroed union bpf_attr of `size` bytes (the kernel zero-extends what it is given)."""
    return _libc()[0].create_string_buffer(size)


def _addr(buf):
    return _libc()[0].addressof(buf)


def verifier_message(log):
    """The verifier's first complaint from its log (the lines that are not the instruction trace)."""
    lines = [ln.strip() for ln in log.splitlines()]
    for ln in lines:
        if not ln or ln.startswith(("processed ", "verification time", "stack depth", "func#", "from ", ";",
                                    "last_idx", "regs=", "parent ", "Live regs")):
            continue
        head = ln.split(":", 1)[0]
        if head.isdigit() or (head.startswith("R") and "=" in ln and " " not in ln.split("=", 1)[0]):
            continue
        return ln
    return lines[-1] if lines else ""


def load(insns, name=PROG_NAME):
    """BPF_PROG_LOAD a cgroup device program; returns its fd. A verifier rejection -> CgroupError with the
    verifier's message (the log is only asked for on a second attempt, to keep the common case cheap)."""
    code = encode(insns)
    ctypes, _l = _libc()
    cbuf = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(LICENSE, len(LICENSE))

    def attempt(log):
        attr = _attr(72)
        struct.pack_into("=IIQQ", attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE, len(insns), _addr(cbuf), _addr(lic))
        if log is not None:
            struct.pack_into("=IIQ", attr, 24, 1, len(log), _addr(log))
        attr[48:48 + len(name[:15])] = name[:15]
        struct.pack_into("=I", attr, 68, BPF_CGROUP_DEVICE)        # expected_attach_type
        return bpf(BPF_PROG_LOAD, attr)

    try:
        return attempt(None)
    except OSError as e:
        first = e
    msg = ""
    if first.errno in (_errno.EINVAL, _errno.EACCES, _errno.E2BIG, _errno.ENOSPC):
        log = ctypes.create_string_buffer(LOG_SIZE)
        try:
            fd = attempt(log)
        except OSError:
            msg = verifier_message(log.value.decode(errors="replace"))
        else:
            return fd                                    # (a transient failure; the retry went through)
    if msg:
        raise CgroupError(f"{FIELD}: the kernel rejected the eBPF device program: {msg}")
    hint = ""
    if first.errno == _errno.EPERM:
        hint = " (loading eBPF programs needs CAP_SYS_ADMIN, or CAP_BPF with CAP_NET_ADMIN)"
    raise CgroupError(f"{FIELD}: cannot load the eBPF device program: bpf(BPF_PROG_LOAD): "
                      f"{os.strerror(first.errno).lower()}{hint}")


def attach(cgroup_fd, prog_fd, flags=BPF_F_ALLOW_MULTI, replace_fd=0):
    attr = _attr(20)
    struct.pack_into("=IIIII", attr, 0, cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, flags, replace_fd)
    bpf(BPF_PROG_ATTACH, attr)


def detach(cgroup_fd, prog_fd):
    attr = _attr(16)
    struct.pack_into("=IIII", attr, 0, cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, 0)
    bpf(BPF_PROG_DETACH, attr)


def query(cgroup_fd):
    """Ids of the device programs attached directly to the cgroup (not inherited ones), in run order."""
    n = 16
    while True:
        ctypes, _l = _libc()
        ids = (ctypes.c_uint32 * n)()
        attr = _attr(32)
        struct.pack_into("=IIIIQI", attr, 0, cgroup_fd, BPF_CGROUP_DEVICE, 0, 0, ctypes.addressof(ids), n)
        try:
            bpf(BPF_PROG_QUERY, attr)
        except OSError as e:
            if e.errno == _errno.ENOSPC and n < 1 << 16:
                n *= 16
                continue
            raise
        cnt = struct.unpack_from("=I", attr, 24)[0]
        return list(ids[:min(cnt, n)])


def fd_by_id(prog_id):
    attr = _attr(12)
    struct.pack_into("=III", attr, 0, prog_id, 0, 0)
    return bpf(BPF_PROG_GET_FD_BY_ID, attr)


def prog_id(prog_fd):
    """The kernel's id of a loaded program (struct bpf_prog_info: type, id, ...)."""
    ctypes, _l = _libc()
    info = ctypes.create_string_buffer(16)
    attr = _attr(16)
    struct.pack_into("=IIQ", attr, 0, prog_fd, len(info), ctypes.addressof(info))
    bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    return struct.unpack_from("=I", info, 4)[0]


def _reason(e):
    if not getattr(e, "errno", None):
        return str(e)
    r = os.strerror(e.errno).lower()
    if e.errno == _errno.EBADF:
        r += " (not a cgroup2 directory)"
    return r


def open_cgroup(dirpath):
    try:
        return os.open(dirpath, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise CgroupError(f"{FIELD}: cannot open cgroup {dirpath}: {_reason(e)}") from None


def install(dirpath, model):
    """Make the program for `model` the only device program attached directly to the cgroup at `dirpath`.
    Returns the new program's id."""
    insns = program(model)
    cg = open_cgroup(dirpath)
    try:
        try:
            old = query(cg)
        except OSError as e:
            raise CgroupError(f"{FIELD}: cannot list the eBPF device programs of {dirpath} "
                              f"(bpf(BPF_PROG_QUERY)): {_reason(e)}") from None
        pfd = load(insns)
        try:
            try:
                new_id = prog_id(pfd)
            except OSError as e:
                raise CgroupError(f"{FIELD}: cannot read the id of the eBPF device program "
                                  f"(bpf(BPF_OBJ_GET_INFO_BY_FD)): {_reason(e)}") from None
            replaced = False
            if len(old) == 1:
                replaced = _replace(cg, pfd, old[0])
            if not replaced:
                try:
                    attach(cg, pfd)
                except OSError as e:
                    raise CgroupError(f"{FIELD}: cannot attach the eBPF device program to {dirpath} "
                                      f"(bpf(BPF_PROG_ATTACH)): {_reason(e)}") from None
                for pid_ in old:
                    _detach_id(cg, pid_, dirpath)
        finally:
            os.close(pfd)       # the attachment keeps the program alive
        return new_id
    finally:
        os.close(cg)


def _replace(cg, pfd, old_id):
    """Atomic swap (BPF_F_REPLACE, Linux >= 5.6). False when it cannot be used (then attach + detach)."""
    try:
        ofd = fd_by_id(old_id)
    except OSError:
        return False
    try:
        attach(cg, pfd, BPF_F_ALLOW_MULTI | BPF_F_REPLACE, ofd)
        return True
    except OSError:
        return False
    finally:
        os.close(ofd)


def _detach_id(cg, old_id, dirpath):
    try:
        ofd = fd_by_id(old_id)
    except OSError as e:
        if e.errno == _errno.ENOENT:        # gone meanwhile
            return
        raise CgroupError(f"{FIELD}: cannot detach the previous eBPF device program {old_id} from {dirpath} "
                          f"(bpf(BPF_PROG_GET_FD_BY_ID)): {_reason(e)}") from None
    try:
        detach(cg, ofd)
    except OSError as e:
        if e.errno != _errno.ENOENT:
            raise CgroupError(f"{FIELD}: cannot detach the previous eBPF device program {old_id} from "
                              f"{dirpath} (bpf(BPF_PROG_DETACH)): {_reason(e)}") from None
    finally:
        os.close(ofd)


def attached(dirpath):
    """Ids of the device programs attached directly to the cgroup at `dirpath`."""
    cg = open_cgroup(dirpath)
    try:
        return query(cg)
    except OSError as e:
        raise CgroupError(f"{FIELD}: cannot list the eBPF device programs of {dirpath}: {_reason(e)}") from None
    finally:
        os.close(cg)


def remove(dirpath):
    """Detach every device program attached directly to the cgroup at `dirpath` (rmdir does it too)."""
    cg = open_cgroup(dirpath)
    try:
        for i in query(cg):
            _detach_id(cg, i, dirpath)
    except OSError as e:
        raise CgroupError(f"{FIELD}: cannot list the eBPF device programs of {dirpath}: {_reason(e)}") from None
    finally:
        os.close(cg)
