"""runc's -ENOSYS stub in ocirun.seccomp's programs (a syscall above the highest one the profile names gets ENOSYS
unless the default action lets syscalls through), and a changed translation never served from an old cache entry.

The programs are run here by a small classic-BPF interpreter of the test's own (independent of the code that
writes them) on seccomp_data inputs, and installed for real in a forked child (no_new_privs: no privilege)."""
import ctypes
import errno
import os
import shutil
import struct
import subprocess
import sys

import pytest

from ocirun import seccomp as SC

X86_64, X86, X32 = SC.ARCHS["SCMP_ARCH_X86_64"], SC.ARCHS["SCMP_ARCH_X86"], SC.ARCHS["SCMP_ARCH_X32"]
AARCH64, S390X = SC.ARCHS["SCMP_ARCH_AARCH64"], SC.ARCHS["SCMP_ARCH_S390X"]
ALLOW, ENOSYS_RET, KILL_PROCESS = 0x7FFF0000, 0x50000 | errno.ENOSYS, 0x80000000
X32_BIT = 0x40000000
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def run_bpf(prog, nr, arch, args=(0,) * 6):
    """What a seccomp classic-BPF program returns for (nr, arch, args): the opcodes libseccomp and the stub use."""
    insns = [struct.unpack_from("=HBBI", prog, i) for i in range(0, len(prog), 8)]
    data = struct.pack("=iIQ6Q", nr if nr < 1 << 31 else nr - (1 << 32), arch, 0, *args)
    a, pc = 0, 0
    for _ in range(len(insns) + 1):  # forward jumps only: at most one pass
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == 0x20:                                  # ld [k]
            a = struct.unpack_from("=I", data, k)[0]
        elif code == 0x54:                                # and #k
            a &= k
        elif code == 0x06:                                # ret #k
            return k
        elif code == 0x05:                                # ja k
            pc += k
        elif code in (0x15, 0x25, 0x35, 0x45):            # jeq, jgt, jge, jset #k
            hit = {0x15: a == k, 0x25: a > k, 0x35: a >= k, 0x45: bool(a & k)}[code]
            pc += jt if hit else jf
        else:
            raise AssertionError(f"opcode {code:#x} at {pc - 1}")
    raise AssertionError("the program does not return")


def _resolve(arch, name):
    lib = SC._bind()
    return lib.seccomp_syscall_resolve_name_arch(arch, name.encode())


def _native():
    return SC._bind().seccomp_arch_native()


def _prog(cfg):
    return SC.compile_bpf(SC.translate(cfg))


# ============================================================================ the stub, interpreted
def test_above_the_highest_named_syscall_is_enosys():
    names = ("read", "write", "exit_group", "getppid")
    cfg = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": list(names), "action": "SCMP_ACT_ALLOW"}]}
    prog = _prog(cfg)
    native = _native()
    nrs = {_resolve(native, n) for n in names}
    top = max(nrs)
    assert top > 0
    for nr in nrs:
        assert run_bpf(prog, nr, native) == ALLOW, nr
    for nr in set(range(top)) - nrs:                        # below the highest: the default action
        assert run_bpf(prog, nr, native) == 0x50000 | errno.EPERM, nr
    for nr in (top + 1, top + 100, 1000, 0x3FFFFFFF):       # above it: ENOSYS
        assert run_bpf(prog, nr, native) == ENOSYS_RET, nr
    # libseccomp's program alone gives all of them the default action
    assert run_bpf(SC.export_bpf(SC.translate(cfg)), 1000, native) == 0x50000 | errno.EPERM


def test_highest_counts_every_name_of_every_rule():
    # a rule equal to the default action adds nothing to the filter, but its names still raise the highest
    # number (runc looks at every rule); unknown names are ignored
    names = ["read", "write", "exit_group"]
    base = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]}
    more = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": names + ["no_such_syscall"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["faccessat2"], "action": "SCMP_ACT_ERRNO"}]}
    assert SC.export_bpf(SC.translate(more)) == SC.export_bpf(SC.translate(base))  # same filter
    native = _native()
    top = _resolve(native, "faccessat2")
    assert top > max(_resolve(native, n) for n in names)
    assert run_bpf(_prog(base), top, native) == ENOSYS_RET
    assert run_bpf(_prog(more), top, native) == 0x50000 | errno.EPERM
    assert run_bpf(_prog(more), top + 1, native) == ENOSYS_RET


@pytest.mark.parametrize("default,stub", [("SCMP_ACT_ERRNO", True), ("SCMP_ACT_KILL", True),
                                          ("SCMP_ACT_KILL_PROCESS", True), ("SCMP_ACT_KILL_THREAD", True),
                                          ("SCMP_ACT_TRAP", True), ("SCMP_ACT_ALLOW", False),
                                          ("SCMP_ACT_LOG", False), ("SCMP_ACT_TRACE", False)])
def test_only_defaults_that_stop_the_syscall_get_the_stub(default, stub):
    rule = "SCMP_ACT_ERRNO" if default == "SCMP_ACT_ALLOW" else "SCMP_ACT_ALLOW"
    cfg = {"defaultAction": default, "syscalls": [{"names": ["getppid"], "action": rule}]}
    p = SC.translate(cfg)
    assert (SC.enosys_stub(p) != b"") is stub
    got = run_bpf(_prog(cfg), 1000, _native())
    assert (got == ENOSYS_RET) is stub
    if not stub:
        assert got == SC.translate(cfg).default


def test_default_errno_enosys_still_gets_the_stub():
    # runc compares defaultErrnoRet with SCMP_ACT_ERRNO(ENOSYS), which no errno equals: stub added (same result)
    cfg = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.ENOSYS,
           "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ALLOW"}]}
    assert SC.enosys_stub(SC.translate(cfg)) != b""
    assert run_bpf(_prog(cfg), 1000, _native()) == ENOSYS_RET


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64, x32 and i386 numbers")
def test_x86_family_each_with_its_own_highest():
    names = ["read", "write", "exit_group", "getppid"]   # exit_group: 231 on x86_64, 252 on i386
    cfg = {"defaultAction": "SCMP_ACT_KILL_PROCESS", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86",
                                                                        "SCMP_ARCH_X32"],
           "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]}
    prog = _prog(cfg)
    tops = SC.highest_syscalls(SC.translate(cfg))
    assert tops == {X86_64: {X86_64: 231, X32: X32_BIT | 231}, X86: {X86: 252}}
    assert run_bpf(prog, 231, X86_64) == ALLOW and run_bpf(prog, 232, X86_64) == ENOSYS_RET
    assert run_bpf(prog, 230, X86_64) == KILL_PROCESS                   # below the highest: the default
    assert run_bpf(prog, X32_BIT | 231, X86_64) == ALLOW
    assert run_bpf(prog, X32_BIT | 232, X86_64) == ENOSYS_RET
    assert run_bpf(prog, X32_BIT | 230, X86_64) == KILL_PROCESS
    assert run_bpf(prog, 252, X86) == ALLOW and run_bpf(prog, 253, X86) == ENOSYS_RET
    assert run_bpf(prog, 251, X86) == KILL_PROCESS
    assert run_bpf(prog, 1000, AARCH64) == run_bpf(SC.export_bpf(SC.translate(cfg)), 1000, AARCH64)  # not listed

    # x86_64 without x32: x32 syscalls are left to libseccomp's program (its bad-arch answer)
    no32 = dict(cfg, architectures=["SCMP_ARCH_X86_64"])
    prog = _prog(no32)
    filt = SC.export_bpf(SC.translate(no32))
    assert run_bpf(prog, X32_BIT | 1000, X86_64) == run_bpf(filt, X32_BIT | 1000, X86_64) != ENOSYS_RET
    assert run_bpf(prog, 1000, X86_64) == ENOSYS_RET
    # no architectures at all: the native one is implied (runc >= 1.2)
    bare = {k: v for k, v in cfg.items() if k != "architectures"}
    assert run_bpf(_prog(bare), 1000, X86_64) == ENOSYS_RET


def test_other_architectures_and_s390_multiplexer():
    if os.uname().machine != "x86_64":
        pytest.skip("profiles with foreign architectures built on x86_64")
    cfg = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
           "syscalls": [{"names": ["read", "write", "getppid"], "action": "SCMP_ACT_ALLOW"}]}
    p = SC.translate(cfg)
    top = _resolve(AARCH64, "getppid")
    assert SC.highest_syscalls(p)[AARCH64] == {AARCH64: top}
    prog = _prog(cfg)
    assert run_bpf(prog, top + 1, AARCH64) == ENOSYS_RET and run_bpf(prog, top, AARCH64) == ALLOW
    # s390x cannot share a filter with x86_64 in libseccomp: its stub section alone
    tops = {S390X: {S390X: 64}}
    stub = _stub_with(tops)
    tail = struct.pack("=HBBI", 0x06, 0, 0, 0x12345)  # stands for libseccomp's program
    assert run_bpf(stub + tail, 0, S390X) == ENOSYS_RET       # unknown numbers arrive as 0 (setup)
    assert run_bpf(stub + tail, 65, S390X) == ENOSYS_RET
    assert run_bpf(stub + tail, 64, S390X) == 0x12345 and run_bpf(stub + tail, 1, S390X) == 0x12345
    assert run_bpf(stub + tail, 0, X86_64) == 0x12345          # another arch: straight to the filter


def _stub_with(tops):
    p = SC.translate({"defaultAction": "SCMP_ACT_ERRNO"})
    saved = SC.highest_syscalls
    SC.highest_syscalls = lambda profile, lib=None: tops
    try:
        return SC.enosys_stub(p)
    finally:
        SC.highest_syscalls = saved


def test_every_architecture_at_once_fits_the_short_jumps():
    tops = {}
    for i, token in enumerate(SC.ARCHS.values()):
        tops.setdefault(SC._audit_arch(token), {})[token] = (X32_BIT if token == X32 else 0) | (100 + i)
    assert len(tops) == len(SC.ARCHS) - 1  # x32 shares x86_64's
    stub = _stub_with(tops)
    tail = struct.pack("=HBBI", 0x06, 0, 0, 0x12345)
    for audit, per in tops.items():
        for token, top in per.items():
            assert run_bpf(stub + tail, top, audit) == 0x12345, (hex(audit), hex(token))
            assert run_bpf(stub + tail, top + 1, audit) == ENOSYS_RET, (hex(audit), hex(token))
            # the 0x12345 "filter" stands for libseccomp's program: below the highest, it decides
            assert run_bpf(stub + tail, top - 1, audit) == 0x12345, (hex(audit), hex(token))
    assert run_bpf(stub + tail, 100000, 0x1234) == 0x12345  # an architecture of none of them


# ============================================================================ the stub, in the kernel
def _in_child(flt, probe):
    """Fork; the child sets no_new_privs, loads `flt` and sends repr(probe()) back over a pipe (the helper of
    test_seccomp.py, the same module pytest imported)."""
    from test_seccomp import _in_child as in_child

    return in_child(flt, probe)


def test_newer_syscall_gets_enosys_in_a_real_filter(tmp_path, monkeypatch):
    """Allow every syscall numbered below pidfd_send_signal but unshare; ERRNO(EPERM) for the rest: the kernel
    then answers ENOSYS for pidfd_send_signal and syscall 1000 (newer than the profile), EPERM for unshare."""
    monkeypatch.setenv("OCIRUN_SECCOMP_CACHE", str(tmp_path / "cache"))
    resolve_num = ctypes.CDLL("libseccomp.so.2").seccomp_syscall_resolve_num_arch
    resolve_num.restype, resolve_num.argtypes = ctypes.c_void_p, (ctypes.c_uint32, ctypes.c_int)
    native = _native()
    newer, unshare = _resolve(native, "pidfd_send_signal"), _resolve(native, "unshare")
    names = []
    for nr in range(newer):
        ptr = resolve_num(native, nr)
        if ptr:
            name = ctypes.string_at(ptr).decode()
            ctypes.CDLL(None).free(ctypes.c_void_p(ptr))
            if nr != unshare:
                names.append(name)
    flt = SC.prepare({"defaultAction": "SCMP_ACT_ERRNO",
                      "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]}, None)

    def probe():
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        out = []
        for nr, args in ((newer, (-1, 0, None, 0)), (1000, (0xDEADBEEF, 0xCAFEFEED, 0x1337)), (unshare, (0,)),
                         (_resolve(native, "getppid"), ())):
            r = libc.syscall(ctypes.c_long(nr), *args)
            out.append(-ctypes.get_errno() if r < 0 else "ok")
        return out

    assert _in_child(flt, probe) == (repr([-errno.ENOSYS, -errno.ENOSYS, -errno.EPERM, "ok"]), 0)


# ============================================================================ the cache and the translation
def test_translation_digest_follows_the_file(tmp_path):
    src = tmp_path / "seccomp.py"
    shutil.copy(SC.__file__, src)
    d1 = SC.translation_digest(str(src))
    assert d1 == SC.translation_digest(SC.__file__) == SC.translation_digest()
    text = src.read_text().replace("EPERM = 1\n", "EPERM = 2\n")  # same size, one byte changed
    src.write_text(text)
    assert SC.translation_digest(str(src)) != d1
    assert SC.translation_digest(str(tmp_path / "missing.py")) is None
    p = SC.translate({"defaultAction": "SCMP_ACT_ALLOW"})
    assert SC.cache_key(p, translation="a") != SC.cache_key(p, translation="b")
    assert SC.cache_key(p) == SC.cache_key(p, translation=d1)


def test_unreadable_translation_means_no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OCIRUN_SECCOMP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(SC, "translation_digest", lambda path=None: None)
    p = SC.translate({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"],
                                                                         "action": "SCMP_ACT_ALLOW"}]})
    assert SC.program_for(p) == SC.compile_bpf(p)
    assert not os.path.exists(tmp_path / "cache")


def test_changed_translation_is_not_served_from_an_old_entry(tmp_path):
    """Two ocirun trees that translate differently (here: ERRNO's default errno) share one cache: each loads its
    own program. With a key blind to the code, the second would load the first one's program."""
    tree = tmp_path / "tree"
    shutil.copytree(os.path.join(ROOT, "ocirun"), tree / "ocirun", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    cache = tmp_path / "cache"
    prof = '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}'
    code = ("import sys, ocirun; from ocirun import seccomp as S, jsonio\n"
            "assert ocirun.__file__.startswith(sys.argv[2]), ocirun.__file__\n"
            "print(S.program_for(S.translate(jsonio.loads(sys.argv[1]))).hex())")

    def program():
        env = dict(os.environ, OCIRUN_SECCOMP_CACHE=str(cache), PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE="1")
        out = subprocess.run([sys.executable, "-c", code, prof, str(tree)], cwd=str(tree), env=env,
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return bytes.fromhex(out.stdout.strip())

    def rets(prog):
        return {k for code, _, _, k in (struct.unpack_from("=HBBI", prog, i) for i in range(0, len(prog), 8))
                if code == 0x06}

    first = program()
    assert 0x50000 | errno.EPERM in rets(first)
    assert len([f for f in os.listdir(cache) if f.endswith(".bpf")]) == 1
    src = tree / "ocirun" / "seccomp.py"
    text = src.read_text()
    assert "\nEPERM = 1\n" in text
    src.write_text(text.replace("\nEPERM = 1\n", "\nEPERM = 2\n"))   # the translation changes, nothing else
    second = program()
    assert 0x50000 | 2 in rets(second) and 0x50000 | errno.EPERM not in rets(second)
    assert len([f for f in os.listdir(cache) if f.endswith(".bpf")]) == 2
    assert program() == second  # and the new entry is then served
