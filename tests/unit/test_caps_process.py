"""capabilities.resolve, process (rlimits, executable lookup, environment), namespaces.Plan."""
import os

import pytest

from ocirun import capabilities as Cap
from ocirun import namespaces as N
from ocirun import process as P
from ocirun import syscalls as S
from ocirun.config import Capabilities, IDMap, Linux, Namespace, Process, Rlimit, User
from ocirun.errors import OciError


# ============================================================================ capabilities.resolve
def caps(**kw):
    return Capabilities(**kw)


def test_resolve_numbers():
    r = Cap.resolve(caps(bounding=["CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN"], effective=["CAP_NET_RAW"],
                         permitted=[], inheritable=None, ambient=["CAP_NET_BIND_SERVICE"]), kernel_last=40)
    assert r.bounding == [0, 5, 21]
    assert r.effective == [13]
    assert r.permitted == []
    assert r.inheritable is None
    assert r.ambient == [10]
    assert r.warnings == []


def test_resolve_every_known_name_to_its_kernel_number():
    # linux/capability.h: the table index is the ABI number
    assert Cap.NUMBER["CAP_SETPCAP"] == 8 and Cap.NUMBER["CAP_MKNOD"] == 27 and Cap.NUMBER["CAP_BPF"] == 39
    assert Cap.NUMBER["CAP_CHECKPOINT_RESTORE"] == 40 and Cap.NUMBER["CAP_AUDIT_READ"] == 37
    r = Cap.resolve(caps(bounding=list(Cap.NAMES)), kernel_last=len(Cap.NAMES) - 1)
    assert r.bounding == list(range(len(Cap.NAMES)))


def test_resolve_none_means_not_given():
    r = Cap.resolve(None, kernel_last=40)
    assert all(getattr(r, s) is None for s in Cap.SETS)


@pytest.mark.parametrize("where,idx,names", [
    ("bounding", 1, ["CAP_CHOWN", "CAP_BOGUS"]),
    ("ambient", 0, ["NOT_A_CAP"]),
    ("permitted", 2, ["CAP_KILL", "CAP_KILL", ""]),
    ("effective", 0, [7]),
    ("inheritable", 1, ["CAP_KILL", "cap_chown"]),
    ("bounding", 0, ["CHOWN"]),
])
def test_resolve_unknown_is_warned_and_left_out(where, idx, names):
    """config.md: a capability that cannot be mapped MUST be logged as a warning and SHOULD NOT fail; only the
    exact spelling is known (runc: lower case or without CAP_ is unknown, so the container does not get it)."""
    r = Cap.resolve(caps(**{where: names}), kernel_last=40)
    assert r.warnings == [f"process.capabilities.{where}[{idx}]: ignoring unknown capability {names[idx]!r}"]
    assert getattr(r, where) == [Cap.NUMBER[n] for j, n in enumerate(names) if j != idx]


def test_resolve_beyond_kernel_is_warned_and_skipped():
    r = Cap.resolve(caps(bounding=["CAP_CHOWN", "CAP_BPF", "CAP_CHECKPOINT_RESTORE", "CAP_KILL"],
                         ambient=["CAP_PERFMON"]), kernel_last=37)
    assert r.bounding == [0, 5]
    assert r.ambient == []
    assert len(r.warnings) == 3
    assert any("CAP_BPF" in w and "bounding" in w for w in r.warnings)
    assert any("CAP_PERFMON" in w and "ambient" in w for w in r.warnings)


def test_resolve_uses_running_kernel_by_default():
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    assert Cap.last_cap() == last
    r = Cap.resolve(caps(bounding=list(Cap.NAMES)))
    assert r.bounding == list(range(min(last, len(Cap.NAMES) - 1) + 1))


def test_mask_to_names_and_current():
    assert Cap.mask_to_names(0b101) == ["CAP_CHOWN", "CAP_DAC_READ_SEARCH"]
    assert Cap.mask_to_names(0) == []
    cur = Cap.current()
    assert set(cur) >= {"CapInh", "CapPrm", "CapEff", "CapBnd"}


# ============================================================================ process.check_rlimits
def test_check_rlimits_ok():
    P.check_rlimits([Rlimit(type="RLIMIT_NOFILE", soft=1024, hard=4096), Rlimit(type="RLIMIT_CORE", soft=0, hard=0),
                     Rlimit(type="RLIMIT_STACK", soft=2**64 - 1, hard=2**64 - 1)])
    P.check_rlimits([])


def test_check_rlimits_unknown_type():
    with pytest.raises(OciError) as ei:
        P.check_rlimits([Rlimit(type="RLIMIT_NOFILE", soft=1, hard=1), Rlimit(type="RLIMIT_BOGUS", soft=1, hard=1)])
    assert str(ei.value) == "process.rlimits[1]: unknown rlimit type 'RLIMIT_BOGUS'"


def test_check_rlimits_soft_above_hard():
    with pytest.raises(OciError) as ei:
        P.check_rlimits([Rlimit(type="RLIMIT_NOFILE", soft=2048, hard=1024)])
    assert str(ei.value) == "process.rlimits[0]: RLIMIT_NOFILE: soft limit 2048 is above the hard limit 1024"


def test_check_rlimits_duplicate_type():
    """runtime-spec config.md (POSIX process): "If `rlimits` contains duplicated entries with same `type`, the
    runtime MUST generate an error."""
    with pytest.raises(OciError) as ei:
        P.check_rlimits([Rlimit(type="RLIMIT_NOFILE", soft=10, hard=10), Rlimit(type="RLIMIT_CORE", soft=0, hard=0),
                         Rlimit(type="RLIMIT_NOFILE", soft=20, hard=20)])
    assert "process.rlimits[2]" in str(ei.value) and "RLIMIT_NOFILE" in str(ei.value)


def test_rlimit_numbers_are_the_kernel_ones():
    import resource

    assert len(P.RLIMITS) == 16 and sorted(P.RLIMITS.values()) == list(range(16))
    for name, num in P.RLIMITS.items():
        if hasattr(resource, name):  # the module lacks a few (RLIMIT_LOCKS)
            assert getattr(resource, name) == num, name


# ============================================================================ process.find_executable
@pytest.fixture
def bins(tmp_path):
    d1, d2 = tmp_path / "d1", tmp_path / "d2"
    d1.mkdir()
    d2.mkdir()
    (d1 / "noexec").write_text("#!/bin/sh\n")
    (d1 / "tool").mkdir()  # a directory named like a program
    (d2 / "tool").write_text("#!/bin/sh\n")
    (d2 / "tool").chmod(0o755)
    (d2 / "noexec").write_text("#!/bin/sh\n")
    (d2 / "noexec").chmod(0o644)
    (d2 / "run").write_text("#!/bin/sh\n")
    (d2 / "run").chmod(0o700)
    (d1 / "run").write_text("#!/bin/sh\n")
    (d1 / "run").chmod(0o755)
    os.symlink(d2 / "tool", d1 / "link")
    os.symlink(tmp_path / "missing", d1 / "dangling")
    return tmp_path


def test_find_executable_path_search(bins):
    env = [f"PATH={bins}/d1:{bins}/d2", "X=1"]
    assert P.find_executable("run", env) == f"{bins}/d1/run"  # first match wins
    assert P.find_executable("tool", env) == f"{bins}/d2/tool"  # a directory is skipped
    assert P.find_executable("link", env) == f"{bins}/d1/link"  # symlink to an executable
    for name in ("noexec", "dangling", "nothere"):
        with pytest.raises(OciError) as ei:
            P.find_executable(name, env)
        assert str(ei.value) == f'exec: "{name}": executable file not found in $PATH'


def test_find_executable_default_path():
    assert P.env_path(["A=1"]) == P.DEFAULT_PATH
    assert P.env_path(["PATH=/x", "PATH=/y"]) == "/x"
    assert P.find_executable("sh", ["A=1"]).endswith("/sh")


def test_find_executable_absolute_and_relative(bins):
    assert P.find_executable(f"{bins}/d2/tool", []) == f"{bins}/d2/tool"
    assert P.find_executable("d2/tool", [], cwd=str(bins)) == f"{bins}/d2/tool"
    assert P.find_executable("./d2/tool", [], cwd=str(bins)) == f"{bins}/./d2/tool"


@pytest.mark.parametrize("name,msg", [
    ("d1/tool", "is a directory"), ("d2/noexec", "permission denied"), ("d1/nothere", "no such file or directory"),
    ("d1/dangling", "no such file or directory"),
])
def test_find_executable_with_slash_errors(bins, name, msg):
    with pytest.raises(OciError) as ei:
        P.find_executable(name, [], cwd=str(bins))
    assert str(ei.value) == f'exec: "{name}": {msg}'


def test_find_executable_empty():
    with pytest.raises(OciError) as ei:
        P.find_executable("", [])
    assert str(ei.value) == "process.args: empty program name"


def test_find_executable_empty_path_entry_means_cwd(bins, monkeypatch):
    monkeypatch.chdir(bins / "d2")
    assert os.path.abspath(P.find_executable("run", ["PATH=:/nonexistent"])) == f"{bins}/d2/run"


# ============================================================================ process.build_env
def _proc(env, uid=0):
    return Process(env=env, user=User(uid=uid, gid=0))


def test_build_env_adds_home_from_passwd(tmp_path):
    pw = tmp_path / "passwd"
    pw.write_text("# comment\nroot:x:0:0:root:/root:/bin/sh\n+nis\nalice:x:1000:1000:A:/home/alice:/bin/sh\n"
                  "nohome:x:1001:1001::\n")

    def lookup(uid):
        return P.passwd_home(uid, str(pw))

    assert P.build_env(_proc(["PATH=/bin"]), lookup) == ["PATH=/bin", "HOME=/root"]
    assert P.build_env(_proc([], 1000), lookup) == ["HOME=/home/alice"]
    assert P.build_env(_proc([], 1001), lookup) == ["HOME=/"]
    assert P.build_env(_proc([], 4242), lookup) == ["HOME=/"]
    assert P.build_env(_proc(["HOME=/custom"], 1000), lookup) == ["HOME=/custom"]
    # runc's prepareEnv: an empty HOME counts as unset (also after a non-empty one); the last value wins
    assert P.build_env(_proc(["HOME="], 1000), lookup) == ["HOME=/home/alice"]
    assert P.build_env(_proc(["HOME=/o", "A=1", "HOME="], 1000), lookup) == ["A=1", "HOME=/home/alice"]
    assert P.build_env(_proc(["A=1", "B=2", "A=3"]), lookup) == ["B=2", "A=3", "HOME=/root"]


def test_build_env_does_not_modify_the_config():
    proc = _proc(["A=1"])
    P.build_env(proc, lambda uid: "/h")
    assert proc.env == ["A=1"]


def test_passwd_home_missing_file(tmp_path):
    assert P.passwd_home(0, str(tmp_path / "none")) == "/"


def test_passwd_home_binary_garbage(tmp_path):
    pw = tmp_path / "passwd"
    pw.write_bytes(b"\xff\xfe:x\n\x00\x00\nbob:x:7:7::/home/b\xc3\xa9b:/bin/sh\n")
    assert P.passwd_home(7, str(pw)) == "/home/b\u00e9b"


def test_split_env():
    assert dict(P._split_env(["A=1", "B==2", "C=", "=nokey", "D"])) == {"A": "1", "B": "=2", "C": "", "D": ""}


# ============================================================================ namespaces.Plan
def _linux(*nss, **kw):
    return Linux(namespaces=[Namespace(type=t, path=p) for t, p in nss], **kw)


def test_plan_join_order_user_first():
    plan = N.Plan(_linux(("mount", "/m"), ("network", "/n"), ("pid", None), ("user", "/u"), ("ipc", "/i"),
                         ("uts", None), ("cgroup", "/c"), ("time", "/t")))
    assert [t for t, _ in plan.join] == ["user", "ipc", "network", "time", "cgroup", "mount"]
    assert plan.join[0] == ("user", "/u")
    assert plan.new == {"pid", "uts"}
    assert plan.in_user and not plan.new_user


def test_plan_new_user_is_not_in_unshare_flags():
    plan = N.Plan(_linux(("user", None), ("mount", None), ("ipc", None), ("network", None), ("uts", None),
                         ("cgroup", None)))
    assert plan.new_user and plan.in_user
    assert plan.unshare_flags() == S.CLONE_NEWNS | S.CLONE_NEWIPC | S.CLONE_NEWNET | S.CLONE_NEWUTS | S.CLONE_NEWCGROUP
    assert not plan.needs_fork()


@pytest.mark.parametrize("nss,fork", [
    ([("pid", None)], True), ([("time", None)], True), ([("pid", "/proc/1/ns/pid")], True),
    ([("time", "/proc/1/ns/time")], True), ([("mount", None), ("network", "/n")], False), ([], False),
])
def test_plan_needs_fork(nss, fork):
    assert N.Plan(_linux(*nss)).needs_fork() is fork


def test_plan_unshare_flags_each_type():
    for t, flag in N.FLAGS.items():
        want = 0 if t == "user" else flag
        assert N.Plan(_linux((t, None))).unshare_flags() == want


def test_plan_without_linux():
    plan = N.Plan(None)
    assert plan.join == [] and plan.new == set() and plan.unshare_flags() == 0 and not plan.needs_fork()
    assert plan.uid_mappings == [] and plan.time_offsets == {}


def test_plan_mappings():
    m = [IDMap(container_id=0, host_id=100000, size=65536)]
    plan = N.Plan(_linux(("user", None), uid_mappings=m, gid_mappings=m))
    assert plan.uid_mappings == m
    assert N.format_idmap(m + [IDMap(container_id=65536, host_id=5, size=1)]) == "0 100000 65536\n65536 5 1\n"
    assert N.maps_contain(m, 0) and N.maps_contain(m, 65535) and not N.maps_contain(m, 65536)
    assert not N.maps_contain([], 0)


def test_open_join_fds_errors_and_closes(tmp_path):
    good = tmp_path / "ns"
    good.write_text("")
    plan = N.Plan(_linux(("user", str(good)), ("network", str(tmp_path / "missing"))))
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(OciError) as ei:
        plan.open_join_fds()
    assert str(ei.value) == f"linux.namespaces: network namespace path {tmp_path / 'missing'}: No such file or directory"
    assert set(os.listdir("/proc/self/fd")) == before  # the user ns fd opened first was closed


def test_open_join_fds_then_join_with_fake(tmp_path):
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from fakesys import FakeSyscalls

    paths = {}
    for t in ("mount", "user", "network"):
        paths[t] = tmp_path / t
        paths[t].write_text("")
    plan = N.Plan(_linux(*((t, str(p)) for t, p in paths.items())))
    fds = plan.open_join_fds()
    fake = FakeSyscalls()
    N.join(fds, fake)
    got = [(c.args[1], c.real["fd"]) for c in fake.of("setns")]
    # runc's order (nsexec join_namespaces): the others first (some may be the host's and need our own
    # privileges), then the user namespace
    assert got == [(S.CLONE_NEWNET, str(paths["network"])), (S.CLONE_NEWNS, str(paths["mount"])),
                   (S.CLONE_NEWUSER, str(paths["user"]))]
    for _, _, fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)  # join closed them


def test_join_retries_eperm_after_the_user_namespace(tmp_path):
    """A namespace owned by the joined user namespace may refuse us (EPERM) until we are in it: retried after."""
    import errno as _errno
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from fakesys import FakeSyscalls

    paths = {}
    for t in ("ipc", "user", "network"):
        paths[t] = tmp_path / t
        paths[t].write_text("")
    plan = N.Plan(_linux(*((t, str(p)) for t, p in paths.items())))
    fake = FakeSyscalls()
    fake.fail("setns", _errno.EPERM, when=lambda c: c.args[1] == S.CLONE_NEWIPC, once=True)
    N.join(plan.open_join_fds(), fake)
    got = [c.args[1] for c in fake.of("setns")]
    assert got == [S.CLONE_NEWNET, S.CLONE_NEWUSER, S.CLONE_NEWIPC]


def test_join_error_names_the_namespace(tmp_path):
    import errno
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from fakesys import FakeSyscalls

    f = tmp_path / "ns"
    f.write_text("")
    fake = FakeSyscalls()
    fake.fail("setns", errno.EINVAL)
    fd = os.open(f, os.O_RDONLY)
    with pytest.raises(OciError) as ei:
        N.join([("ipc", str(f), fd)], fake)
    assert str(ei.value) == f"linux.namespaces: cannot join ipc namespace {f}: Invalid argument"
    with pytest.raises(OSError):
        os.fstat(fd)


def test_check_sets_refuses_what_capset_refuses_and_warns_for_ambient():
    """capset(2): effective must be within permitted, inheritable within the bounding set; runc refuses both at
    create ("unable to apply caps"), so ocirun says so at create, not at start. Ambient capabilities that are not
    permitted and inheritable cannot be raised: warned about (runc) and left out."""
    r = Cap.resolve(caps(bounding=[], inheritable=["CAP_SYS_BOOT"], permitted=[], effective=[]), kernel_last=40)
    with pytest.raises(OciError, match=r"process.capabilities.inheritable: CAP_SYS_BOOT not in the bounding set"):
        Cap.check_sets(r)
    r = Cap.resolve(caps(bounding=["CAP_KILL"], effective=["CAP_KILL"], permitted=[]), kernel_last=40)
    with pytest.raises(OciError, match=r"process.capabilities.effective: CAP_KILL not in the permitted set"):
        Cap.check_sets(r)
    r = Cap.resolve(caps(bounding=["CAP_KILL", "CAP_CHOWN"], effective=["CAP_KILL"], permitted=["CAP_KILL", "CAP_CHOWN"],
                         inheritable=["CAP_KILL"], ambient=["CAP_KILL", "CAP_CHOWN"]), kernel_last=40)
    Cap.check_sets(r)
    assert r.ambient == [Cap.NUMBER["CAP_KILL"]]
    assert r.warnings == ["process.capabilities.ambient: can't raise ambient capability CAP_CHOWN: it is not both "
                          "permitted and inheritable; ignored"]


# ============================================================================ the user switch, bounding set, rlimits
def test_switch_user_order_and_ids(monkeypatch):
    """process.switch_user: the bounding set first (needs CAP_SETPCAP), then with KEEPCAPS the groups, the gid
    and the uid — each the configured one (distinct uid and gid: a swap shows) — then the capability sets."""
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from fakesys import FakeSyscalls

    fake = FakeSyscalls()
    order = []
    monkeypatch.setattr(Cap, "drop_bounding", lambda r: order.append("drop_bounding"))
    monkeypatch.setattr(Cap, "apply_sets", lambda r, sys=None: order.append("apply_sets"))
    monkeypatch.setattr(P, "fix_stdio_owner", lambda uid: None)
    fake.prctl = lambda option, *a: order.append(("prctl", option, a[0] if a else 0))
    fake.setgroups = lambda gids: order.append(("setgroups", list(gids)))
    fake.setresgid = lambda r, e, s: order.append(("setresgid", r, e, s))
    fake.setresuid = lambda r, e, s: order.append(("setresuid", r, e, s))
    P.switch_user(User(uid=1000, gid=1002, additional_gids=[5, 27]), object(), fake)
    assert order == ["drop_bounding", ("prctl", S.PR_SET_KEEPCAPS, 1), ("setgroups", [5, 27]),
                     ("setresgid", 1002, 1002, 1002), ("setresuid", 1000, 1000, 1000),
                     ("prctl", S.PR_SET_KEEPCAPS, 0), "apply_sets"]


def test_drop_bounding_drops_exactly_what_is_not_kept(monkeypatch):
    """capabilities.drop_bounding calls PR_CAPBSET_DROP for every capability up to the kernel's last that the
    bounding set does not name, and for no other."""
    import _prctl

    dropped = []
    monkeypatch.setattr(_prctl, "prctl", lambda op, cap: dropped.append((op, cap)))
    Cap.drop_bounding(Cap.resolve(caps(bounding=["CAP_CHOWN", "CAP_KILL"])), kernel_last=8)
    assert dropped == [(_prctl.PR_CAPBSET_DROP, c) for c in range(9) if c not in (0, 5)]


def test_set_rlimits_sets_each_limit(monkeypatch):
    """process.set_rlimits: setrlimit for each entry with its kernel number, soft and hard (2^64-1 = infinity)."""
    import resource

    got = []
    monkeypatch.setattr(resource, "setrlimit", lambda num, lim: got.append((num, lim)))
    P.set_rlimits([Rlimit(type="RLIMIT_NOFILE", soft=1024, hard=4096),
                   Rlimit(type="RLIMIT_CORE", soft=0, hard=2 ** 64 - 1)])
    assert got == [(resource.RLIMIT_NOFILE, (1024, 4096)), (resource.RLIMIT_CORE, (0, resource.RLIM_INFINITY))]
