"""ocirun.seccomp without root: translation of every field, errors, the BPF program against pyseccomp's own
export_bpf (an independent build of the same profile), the program cache (keys, corruption, trust), and the
filter really installed in a forked child (with no_new_privs, which needs no privilege)."""
import errno
import importlib.util
import json
import os
import socket
import struct
import subprocess
import sys

import pytest

from ocirun import seccomp as SC
from ocirun.errors import OciError

HERE = os.path.dirname(os.path.abspath(__file__))


def _docker_profile():
    # the Docker-like default profile lives with the integration tests; load it under another module name
    # (test_seccomp_real.py if the file is renamed to keep pytest's basenames unique)
    path = next(p for p in (os.path.join(HERE, "..", "integration", n) for n in
                            ("test_seccomp_real.py", "test_seccomp.py")) if os.path.exists(p))
    spec = importlib.util.spec_from_file_location("_ocirun_seccomp_integration", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.docker_default_profile()


MIX = {
    "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [
        {"names": ["read", "write", "exit_group", "no_such_syscall_ever"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
        {"names": ["getpid"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
        {"names": ["getppid"], "action": "SCMP_ACT_TRAP"},
        {"names": ["getuid"], "action": "SCMP_ACT_LOG"},
        {"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS"},
        {"names": ["tkill"], "action": "SCMP_ACT_KILL_THREAD"},
        {"names": ["tgkill"], "action": "SCMP_ACT_KILL"},
        {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 0xF, "valueTwo": 1,
                                                            "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
        {"names": ["setpriority"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": 1, "op": "SCMP_CMP_NE"}, {"index": 1, "value": 5, "op": "SCMP_CMP_LT"},
            {"index": 2, "value": 6, "op": "SCMP_CMP_LE"}]},
        {"names": ["lseek"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 2, "value": 1, "op": "SCMP_CMP_GE"}, {"index": 1, "value": 1 << 40, "op": "SCMP_CMP_GT"}]},
        {"names": ["socketcall"], "action": "SCMP_ACT_ALLOW"},
    ],
}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = str(tmp_path / "cache")
    monkeypatch.setenv("OCIRUN_SECCOMP_CACHE", d)
    return d


# ============================================================================ translation
def test_every_action_encodes_as_libseccomp():
    assert SC.ACTIONS == {"SCMP_ACT_KILL": 0, "SCMP_ACT_KILL_THREAD": 0, "SCMP_ACT_KILL_PROCESS": 0x80000000,
                          "SCMP_ACT_TRAP": 0x30000, "SCMP_ACT_ERRNO": 0x50000, "SCMP_ACT_TRACE": 0x7FF00000,
                          "SCMP_ACT_LOG": 0x7FFC0000, "SCMP_ACT_ALLOW": 0x7FFF0000, "SCMP_ACT_NOTIFY": 0x7FC00000}
    for name in SC.ACTIONS:
        if name == "SCMP_ACT_NOTIFY":
            continue
        p = SC.translate({"defaultAction": name})
        want = SC.ACTIONS[name] | (1 if name in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE") else 0)  # EPERM default
        assert p.default == want, name
    p = SC.translate({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38})
    assert p.default == 0x50000 | 38
    p = SC.translate(MIX)
    acts = [r.action for r in p.rules]
    assert acts == [0x7FFF0000, 0x5000D, 0x7FF00007, 0x30000, 0x7FFC0000, 0x80000000, 0, 0] + [0x7FFF0000] * 5


def test_pyseccomp_agrees_on_the_numbers():
    ps = pytest.importorskip("pyseccomp")
    assert SC.ACTIONS["SCMP_ACT_KILL_PROCESS"] == ps.KILL_PROCESS and SC.ACTIONS["SCMP_ACT_KILL"] == ps.KILL
    assert SC.ACTIONS["SCMP_ACT_TRAP"] == ps.TRAP and SC.ACTIONS["SCMP_ACT_LOG"] == ps.LOG
    assert SC.ACTIONS["SCMP_ACT_ALLOW"] == ps.ALLOW and SC.ACTIONS["SCMP_ACT_NOTIFY"] == ps.NOTIFY
    assert SC.ACTIONS["SCMP_ACT_ERRNO"] | 5 == ps.ERRNO(5) and SC.ACTIONS["SCMP_ACT_TRACE"] | 5 == ps.TRACE(5)
    ops = {"SCMP_CMP_NE": ps.NE, "SCMP_CMP_LT": ps.LT, "SCMP_CMP_LE": ps.LE, "SCMP_CMP_EQ": ps.EQ,
           "SCMP_CMP_GE": ps.GE, "SCMP_CMP_GT": ps.GT, "SCMP_CMP_MASKED_EQ": ps.MASKED_EQ}
    assert SC.OPERATORS == ops
    for name, val in SC.ARCHS.items():
        attr = name[len("SCMP_ARCH_"):]
        if hasattr(ps.Arch, attr):
            assert getattr(ps.Arch, attr) == val, name


def test_operators_and_args():
    p = SC.translate(MIX)
    sock, pers, prio, lseek = p.rules[8], p.rules[9], p.rules[10], p.rules[11]
    assert sock.conds == [(0, 4, 1, 0), (1, 7, 0xF, 1)]   # MASKED_EQ: value is the mask, valueTwo the datum
    assert sock.condition_sets() == [((0, 4, 1, 0), (1, 7, 0xF, 1))]            # different args: ANDed
    assert pers.condition_sets() == [((0, 4, 0, 0),), ((0, 4, 8, 0),)]          # same arg twice: ORed
    assert prio.conds == [(0, 1, 1, 0), (1, 2, 5, 0), (2, 3, 6, 0)]
    assert lseek.conds == [(2, 5, 1, 0), (1, 6, 1 << 40, 0)]
    assert SC.Rule(0, ["x"], [], 0).condition_sets() == [()]


def test_architectures_and_flags():
    p = SC.translate({"defaultAction": "SCMP_ACT_ALLOW", "architectures": list(SC.ARCHS),
                      "flags": list(SC.FLAGS)})
    assert p.archs == list(SC.ARCHS.values())
    assert SC.ARCHS["SCMP_ARCH_X86_64"] == 0xC000003E and SC.ARCHS["SCMP_ARCH_X32"] == 0x4000003E
    assert SC.ARCHS["SCMP_ARCH_AARCH64"] == 0xC00000B7 and SC.ARCHS["SCMP_ARCH_X86"] == 0x40000003
    # WAIT_KILLABLE_RECV only means something with a listener: dropped without one (as libseccomp does)
    assert p.flags == 1 | 2 | 4
    q = SC.translate({"defaultAction": "SCMP_ACT_ALLOW", "flags": list(SC.FLAGS), "listenerPath": "/x",
                      "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]})
    assert q.notify and q.flags == 1 | 2 | 4 | 32 | SC.FLAG_NEW_LISTENER | SC.FLAG_TSYNC_ESRCH
    r = SC.translate({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x", "listenerMetadata": "m",
                      "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]})
    assert r.flags == SC.FLAG_NEW_LISTENER and r.listener_path == "/x" and r.metadata == "m"


def test_rule_equal_to_default_is_skipped():
    p = SC.translate({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["a"], "action": "SCMP_ACT_ERRNO"}, {"names": ["b"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        {"names": ["c"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2}]})
    assert [r.names for r in p.rules] == [["c"]]


@pytest.mark.parametrize("cfg,msg", [
    ({"defaultAction": "SCMP_ACT_FOO"}, 'linux.seccomp.defaultAction: unknown action "SCMP_ACT_FOO"'),
    ({}, "linux.seccomp.defaultAction: missing"),
    ({"defaultAction": "SCMP_ACT_NOTIFY"}, "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be used"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}, "linux.seccomp.defaultErrnoRet: SCMP_ACT_ALLOW"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}, "linux.seccomp.defaultErrnoRet: errno 70000"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_VAX"]},
     'linux.seccomp.architectures[1]: unknown architecture "SCMP_ARCH_VAX"'),
    ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NOPE"]},
     'linux.seccomp.flags[0]: unknown flag "SECCOMP_FILTER_FLAG_NOPE"'),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ERRNO"},
                                                      {"names": ["b"], "action": "SCMP_ACT_FOO"}]},
     'linux.seccomp.syscalls[1].action: unknown action "SCMP_ACT_FOO"'),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["a"], "action": "SCMP_ACT_KILL", "errnoRet": 1}]},
     "linux.seccomp.syscalls[0].errnoRet: SCMP_ACT_KILL takes no errno"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_KILL"}]},
     "linux.seccomp.syscalls[0].names"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["a"], "action": "SCMP_ACT_KILL",
                                                       "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_XX"}]}]},
     'linux.seccomp.syscalls[0].args[0].op: unknown operator "SCMP_CMP_XX"'),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["a"], "action": "SCMP_ACT_KILL",
                                                       "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]},
     "linux.seccomp.syscalls[0].args[0].index: 6 is out of range"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["a"], "action": "SCMP_ACT_KILL",
                                                       "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]},
     "linux.seccomp.syscalls[0].args[0].value: -1"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]},
     "linux.seccomp.listenerPath: SCMP_ACT_NOTIFY is used, but no listenerPath is set"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x",
      "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_NOTIFY"}]},
     "linux.seccomp.syscalls[0]: SCMP_ACT_NOTIFY cannot be used for the write syscall"),
])
def test_errors_name_the_field(cfg, msg):
    with pytest.raises(OciError) as ei:
        SC.translate(cfg)
    assert msg in str(ei.value)
    assert "\n" not in str(ei.value)


def test_arch_libseccomp_lacks_is_an_error(cache):
    if SC.libseccomp_version() >= "2.6":
        pytest.skip("libseccomp >= 2.6 knows SCMP_ARCH_SH")
    with pytest.raises(OciError, match=r"architectures\[0\]: SCMP_ARCH_SH is not supported by libseccomp"):
        SC.prepare({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_SH"]}, None)


def test_unsupported_flag_is_a_clear_error():
    def fake(nr, op, flags, prog):  # a kernel that knows no filter flag at all
        import ctypes
        ctypes.set_errno(errno.EINVAL)
        return -1

    with pytest.raises(OciError, match="SECCOMP_FILTER_FLAG_SPEC_ALLOW is not supported by this kernel"):
        SC.check_flags(SC.FLAGS["SECCOMP_FILTER_FLAG_SPEC_ALLOW"], libc=fake, nr=317)
    SC.check_flags(SC.translate({"defaultAction": "SCMP_ACT_ALLOW", "flags": list(SC.FLAGS)}).flags)  # this kernel


# ============================================================================ the BPF program
def _oracle(cfg):
    """The same profile built with pyseccomp (libseccomp's Python API), independently of ocirun.seccomp."""
    ps = pytest.importorskip("pyseccomp")

    def act(name, ret):
        base = {"SCMP_ACT_KILL": ps.KILL, "SCMP_ACT_KILL_THREAD": ps.KILL, "SCMP_ACT_KILL_PROCESS": ps.KILL_PROCESS,
                "SCMP_ACT_TRAP": ps.TRAP, "SCMP_ACT_LOG": ps.LOG, "SCMP_ACT_ALLOW": ps.ALLOW,
                "SCMP_ACT_NOTIFY": ps.NOTIFY}
        if name == "SCMP_ACT_ERRNO":
            return ps.ERRNO(1 if ret is None else ret)
        if name == "SCMP_ACT_TRACE":
            return ps.TRACE(1 if ret is None else ret)
        return base[name]

    dflt = act(cfg["defaultAction"], cfg.get("defaultErrnoRet"))
    f = ps.SyscallFilter(dflt)
    f.set_attr(ps.Attr.CTL_NNP, 0)
    for a in cfg.get("architectures", ()):
        v = getattr(ps.Arch, a[len("SCMP_ARCH_"):])
        if not f.exist_arch(v):
            f.add_arch(v)
    ops = {"SCMP_CMP_NE": ps.NE, "SCMP_CMP_LT": ps.LT, "SCMP_CMP_LE": ps.LE, "SCMP_CMP_EQ": ps.EQ,
           "SCMP_CMP_GE": ps.GE, "SCMP_CMP_GT": ps.GT, "SCMP_CMP_MASKED_EQ": ps.MASKED_EQ}
    for sc in cfg.get("syscalls", ()):
        a = act(sc["action"], sc.get("errnoRet"))
        if a == dflt:
            continue
        args = [ps.Arg(x["index"], ops[x["op"]], x["value"], x.get("valueTwo", 0)) for x in sc.get("args", ())]
        idx = [x["index"] for x in sc.get("args", ())]
        groups = [[x] for x in args] if len(set(idx)) != len(idx) else [args]
        for name in sc["names"]:
            nr = ps.resolve_syscall(ps.Arch.NATIVE, name)
            if nr == -1:
                continue
            for g in groups:
                f.add_rule(a, nr, *g)
    fd = os.memfd_create("oracle")
    with os.fdopen(fd, "w+b") as fo:
        f.export_bpf(fo)
        fo.seek(0)
        return fo.read()


@pytest.mark.parametrize("which", ["mix", "docker", "allow", "notify"])
def test_program_equals_libseccomp_export(which, monkeypatch):
    monkeypatch.setenv("OCIRUN_SECCOMP_CACHE", "off")
    cfg = {"mix": MIX, "docker": _docker_profile(), "allow": {"defaultAction": "SCMP_ACT_ALLOW"},
           "notify": {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x", "syscalls": [
               {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}}[which]
    p = SC.translate(cfg)
    prog = SC.compile_bpf(p)
    oracle = _oracle(cfg)
    assert SC.export_bpf(p) == oracle
    # runc's -ENOSYS stub in front (tests/unit/test_seccomp_stub.py checks what it does) for an ERRNO default
    stub = SC.enosys_stub(p)
    assert prog == stub + oracle
    assert (stub != b"") == (cfg["defaultAction"] == "SCMP_ACT_ERRNO")
    assert len(prog) % 8 == 0 and 0 < len(prog) // 8 <= SC.BPF_MAXINSNS


def test_unknown_syscall_is_skipped(caplog):
    base = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    more = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "not_a_syscall"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["also_not_one"], "action": "SCMP_ACT_KILL"}]}
    assert SC.compile_bpf(SC.translate(more)) == SC.compile_bpf(SC.translate(base))


def test_runc_semantics_in_the_program():
    # KILL == KILL_THREAD, default errno EPERM
    a = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_KILL"},
                                                         {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO"}]}
    b = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_KILL_THREAD"},
                                                         {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO",
                                                          "errnoRet": 1}]}
    assert SC.compile_bpf(SC.translate(a)) == SC.compile_bpf(SC.translate(b))


# ============================================================================ the cache
def test_cache_key_is_stable_and_specific():
    p = SC.translate(MIX)
    reordered = json.loads(json.dumps(MIX))
    reordered = dict(reversed(list(reordered.items())))
    reordered["listenerPath"] = "/elsewhere"
    reordered["listenerMetadata"] = "m"
    reordered["flags"] = ["SECCOMP_FILTER_FLAG_LOG"]
    k = SC.cache_key(p)
    assert len(k) == 32
    assert SC.cache_key(SC.translate(reordered)) == k          # key order, listener and flags: same program
    assert SC.cache_key(p, version="9.9.9") != k                # another libseccomp
    changed = json.loads(json.dumps(MIX))
    changed["syscalls"][1]["errnoRet"] = 14
    assert SC.cache_key(SC.translate(changed)) != k
    # stable across processes (no hash randomisation in it)
    code = ("import json,sys; from ocirun import seccomp as S; "
            "print(S.cache_key(S.translate(json.loads(sys.argv[1]))).hex())")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(MIX)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == k.hex()


def _entry(cache):
    files = [f for f in os.listdir(cache) if f.endswith(".bpf")]
    assert len(files) == 1, files
    return os.path.join(cache, files[0])


def test_cache_miss_then_hit(cache, monkeypatch):
    p = SC.translate(MIX)
    fresh = SC.program_for(p)
    path = _entry(cache)
    assert os.stat(path).st_mode & 0o777 == 0o600 and os.stat(cache).st_mode & 0o777 == 0o700
    assert not [f for f in os.listdir(cache) if f.startswith(".tmp")]

    def boom(profile):
        raise AssertionError("compiled although cached")

    monkeypatch.setattr(SC, "compile_bpf", boom)
    assert SC.program_for(p) == fresh


@pytest.mark.parametrize("damage", ["garbage", "flip", "truncate", "empty", "other-key", "mode", "symlink"])
def test_corrupt_entry_is_recompiled(cache, damage):
    p = SC.translate(MIX)
    good = SC.program_for(p)
    path = _entry(cache)
    data = open(path, "rb").read()
    if damage == "garbage":
        data = b"x" * len(data)
    elif damage == "flip":
        i = len(data) // 2
        data = data[:i] + bytes([data[i] ^ 1]) + data[i + 1:]
    elif damage == "truncate":
        data = data[:-9]
    elif damage == "empty":
        data = b""
    elif damage == "other-key":  # a valid entry for another profile under this name
        other = SC.compile_bpf(SC.translate({"defaultAction": "SCMP_ACT_ALLOW"}))
        data = SC.cache_entry(b"\0" * 32, other)
    if damage == "symlink":
        os.rename(path, path + ".real")
        os.symlink(path + ".real", path)
    else:
        with open(path, "wb") as f:
            f.write(data)
        if damage == "mode":
            os.chmod(path, 0o666)
    assert SC.cache_read(path, SC.cache_key(p)) is None
    calls = []
    real = SC.compile_bpf

    def counting(profile):
        calls.append(1)
        return real(profile)

    SC.compile_bpf, saved = counting, SC.compile_bpf
    try:
        assert SC.program_for(p) == good
    finally:
        SC.compile_bpf = saved
    assert calls == [1]
    assert SC.cache_read(path, SC.cache_key(p)) == good  # rewritten


def test_cache_off_and_unwritable(tmp_path, monkeypatch):
    monkeypatch.setenv("OCIRUN_SECCOMP_CACHE", "off")
    assert SC.cache_dir() is None
    assert SC.program_for(SC.translate(MIX)) == SC.compile_bpf(SC.translate(MIX))
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("OCIRUN_SECCOMP_CACHE", str(blocker / "sub"))  # cannot be created: still works
    assert SC.program_for(SC.translate(MIX)) == SC.compile_bpf(SC.translate(MIX))


def test_import_is_cheap():
    code = ("import sys; import ocirun.seccomp; "
            "print([m for m in ('ctypes','json','hashlib','pyseccomp','socket') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cache_hit_needs_no_compile_and_no_pyseccomp(cache):
    SC.program_for(SC.translate(MIX))
    code = ("import sys; from ocirun import seccomp as S, jsonio\n"
            "S.compile_bpf = None\n"
            "f = S.prepare(jsonio.loads(sys.argv[1]), None)\n"
            "print(len(f.prog), [m for m in ('pyseccomp','ctypes.util','json','hashlib') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(MIX)], capture_output=True, text=True,
                         check=True, env=dict(os.environ, OCIRUN_SECCOMP_CACHE=cache))
    n, mods = out.stdout.split(" ", 1)
    assert int(n) > 0 and mods.strip() == "[]"


# ============================================================================ installed for real
def _in_child(flt, probe):
    """Fork; the child sets no_new_privs, loads `flt` and reports probe()'s result over a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            from ocirun import syscalls as S
            S.SYS.prctl(S.PR_SET_NO_NEW_PRIVS, 1)
            flt.load()
            res = probe()
        except BaseException as e:  # noqa: BLE001
            res = f"error: {e}"
        os.write(w, repr(res).encode())
        os._exit(0)
    os.close(w)
    out = b""
    while chunk := os.read(r, 4096):
        out += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return out.decode(), status


def _mkdir_errno(tmp):
    def probe():
        try:
            os.mkdir(os.path.join(tmp, "d"))
            os.rmdir(os.path.join(tmp, "d"))
            return 0
        except OSError as e:
            return e.errno
    return probe


def test_cached_and_fresh_programs_behave_the_same(cache, tmp_path):
    prof = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV},
        {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOTTY,
         "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}]}]}
    fresh = SC.prepare(prof, None)       # miss: compiled and stored
    cached = SC.prepare(prof, None)      # hit
    assert fresh.prog == cached.prog

    def probe():
        out = [_mkdir_errno(str(tmp_path))()]
        for args in ((0, 0), (0, os.getpid()), (1, 0)):  # ANDed: only PRIO_PROCESS, 0 is refused
            try:
                os.getpriority(*args)
                out.append(0)
            except OSError as e:
                out.append(e.errno)
        return out

    want = repr([errno.EXDEV, errno.ENOTTY, 0, 0])
    assert _in_child(fresh, probe) == (want, 0)
    assert _in_child(cached, probe) == (want, 0)


def test_kill_action_in_child(cache, tmp_path):
    flt = SC.prepare({"defaultAction": "SCMP_ACT_ALLOW",
                      "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"}]}, None)
    out, status = _in_child(flt, _mkdir_errno(str(tmp_path)))
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == 31 and out == ""


def test_load_failure_is_an_oci_error(cache):
    flt = SC.prepare({"defaultAction": "SCMP_ACT_ALLOW"}, None)
    # without no_new_privs and CAP_SYS_ADMIN the kernel refuses; with a broken program it always refuses
    bad = SC.Filter(b"\x06\x00\x00\x00\x00\x00\xff\x7f" + b"\xff\xff\x00\x00\x00\x00\x00\x00", flt.flags)
    out, status = _in_child(bad, lambda: "loaded")
    assert "error: linux.seccomp: cannot load the filter" in out and status == 0


# ============================================================================ the listener hand-over
def test_listener_sends_fd_and_state(tmp_path):
    path = str(tmp_path / "agent.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    st = {"ociVersion": "1.3.0", "id": "c1", "status": "creating", "pid": 0, "bundle": "/b",
          "annotations": {"a": "b"}}
    lst = SC.Listener(path, "meta", SC._state(st))
    conn, _ = srv.accept()
    fd = os.open("/dev/null", os.O_RDONLY)
    payload = lst.payload()
    lst.send(fd, payload)
    data, fds = b"", []
    while True:
        msg, anc, _, _ = conn.recvmsg(65536, socket.CMSG_SPACE(4))
        for level, typ, cdata in anc:
            if typ == socket.SCM_RIGHTS:
                fds += struct.unpack("i", cdata[:4])
        if not msg:
            break
        data += msg
    doc = json.loads(data)
    assert doc == {"ociVersion": "1.3.0", "fds": ["seccompFd"], "pid": os.getpid(), "metadata": "meta",
                   "state": dict(st, pid=os.getpid())}
    assert len(fds) == 1 and os.path.samestat(os.fstat(fds[0]), os.stat("/dev/null"))
    os.close(fds[0])
    with pytest.raises(OSError):
        os.fstat(fd)  # the runtime's copy is closed
    conn.close()
    srv.close()


def test_listener_connect_error(tmp_path):
    with pytest.raises(OciError, match="linux.seccomp.listenerPath: cannot connect to"):
        SC.Listener(str(tmp_path / "none.sock"), "", SC._state(None))


def test_state_from_creator():
    class C:
        id = "ctr"

    class Cfg:
        annotations = {"k": "v"}

    class Cr:
        c = C()
        bundle = "/bundle"
        cfg = Cfg()
        init_pid = None

    assert SC._state(Cr()) == {"ociVersion": "1.3.0", "id": "ctr", "status": "creating", "pid": 0,
                               "bundle": "/bundle", "annotations": {"k": "v"}}


# ============================================================================ features
def test_features_match_the_schema_and_libseccomp():
    import jsonschema

    f = SC.features()
    assert f["enabled"] is True
    assert f["actions"] == sorted(SC.ACTIONS) and f["operators"] == sorted(SC.OPERATORS)
    # every arch token ocirun uses is the one libseccomp resolves the name to (features() checks equality)
    assert {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM",
            "SCMP_ARCH_S390X", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_RISCV64"} <= set(f["archs"])
    assert f["knownFlags"] == sorted(SC.FLAGS) and set(f["supportedFlags"]) <= set(f["knownFlags"])
    with open(os.path.join(HERE, "..", "..", "spec", "features-schema.json")) as fh:
        schema = json.load(fh)
    doc = {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0", "linux": {"seccomp": f}}
    jsonschema.validate(doc, schema)


def test_cache_dir_choice(monkeypatch, tmp_path):
    monkeypatch.delenv("OCIRUN_SECCOMP_CACHE", raising=False)
    monkeypatch.setattr(SC, "_host_root", lambda: True)
    assert SC.cache_dir() == "/var/cache/ocirun/seccomp"
    monkeypatch.setattr(SC, "_host_root", lambda: False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert SC.cache_dir() == str(tmp_path / "ocirun" / "seccomp")
    monkeypatch.setenv("OCIRUN_SECCOMP_CACHE", "")
    assert SC.cache_dir() is None


def test_cache_parents_are_not_world_writable(tmp_path, monkeypatch):
    d = tmp_path / "a" / "b" / "seccomp"
    monkeypatch.setenv("OCIRUN_SECCOMP_CACHE", str(d))
    old = os.umask(0)  # as in the container's init
    try:
        SC.program_for(SC.translate({"defaultAction": "SCMP_ACT_ALLOW"}))
    finally:
        os.umask(old)
    assert os.stat(d).st_mode & 0o777 == 0o700
    assert os.stat(d.parent).st_mode & 0o777 == 0o755 and os.stat(d.parent.parent).st_mode & 0o777 == 0o755
    assert [os.stat(d / f).st_mode & 0o777 for f in os.listdir(d)] == [0o600]
