"""ocirun.rootfs and ocirun.devices against the recording fake (tests/unit/fakesys.py): no root needed.

Every in-container path is resolved for real (openat2 RESOLVE_IN_ROOT works unprivileged) in a temporary
rootfs; the privileged calls are only recorded, each with the host path its /proc/self/fd/N target really
designated, so the tests can check *where* a mount would have landed.
"""
import errno
import os
import posixpath
import stat
import sys
import tempfile
import threading
import uuid
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fakesys import FakeSyscalls  # noqa: E402

from ocirun import devices as D  # noqa: E402
from ocirun import mounts as M  # noqa: E402
from ocirun import rootfs as R  # noqa: E402
from ocirun import syscalls as S  # noqa: E402
from ocirun.config import Device, Mount  # noqa: E402
from ocirun.errors import OciError  # noqa: E402

LOCKABLE = S.MS_NOSUID | S.MS_NODEV | S.MS_NOEXEC | S.MS_NOATIME | S.MS_NODIRATIME | S.MS_RELATIME


def unique(prefix="ocirun-unit"):
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:10]}"


def tree(path):
    """Every path under `path` (relative, symlinks not followed), with its type."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            out.add((os.path.relpath(p, path), stat.S_IFMT(os.lstat(p).st_mode)))
    return out


def _guard_host_writes(monkeypatch, jail):
    """devices.py calls os.unlink/os.chmod/os.chown/os.open(dir_fd=) directly (not through the Syscalls):
    refuse those outside the test directory, so that a broken resolution can never delete or chmod the host's
    /dev/null when the tests run as root -- the test fails instead."""
    jail = os.path.realpath(jail)

    def where(path, dir_fd):
        if dir_fd is not None:
            base = os.readlink(f"/proc/self/fd/{dir_fd}")
            return os.path.normpath(os.path.join(base, os.fsdecode(path)))
        return os.readlink(os.fsdecode(path))

    def guarded(name, real):
        def call(path, *a, dir_fd=None, **kw):
            if dir_fd is not None or os.fsdecode(path).startswith("/proc/self/fd/"):
                target = where(path, dir_fd)
                if not (target == jail or target.startswith(jail + "/")):
                    raise AssertionError(f"test guard: {name} of {target}, outside {jail}")
            if dir_fd is not None:
                kw["dir_fd"] = dir_fd
            return real(path, *a, **kw)
        return call

    for name in ("unlink", "chmod", "chown", "open"):
        monkeypatch.setattr(D.os, name, guarded(name, getattr(os, name)))


@pytest.fixture
def env(tmp_path, monkeypatch):
    bundle = tmp_path / "bundle"
    rootfs = bundle / "rootfs"
    rootfs.mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "decoy").write_text("host file\n")
    fake = FakeSyscalls(jail=str(tmp_path))
    _guard_host_writes(monkeypatch, str(tmp_path))
    root = R.Root(str(rootfs), fake)
    e = SimpleNamespace(tmp=tmp_path, bundle=str(bundle), rootfs=os.path.realpath(rootfs), fake=fake, root=root,
                        ctx=M.MountContext(str(bundle)))
    # what lies outside the rootfs, to prove afterwards that nothing there changed
    e.parent_before = sorted(os.listdir(tmp_path.parent))
    e.outside_before = tree(tmp_path / "outside")
    e.etc_before = set(os.listdir("/etc"))
    yield e
    root.close()


def outside_untouched(e):
    assert sorted(os.listdir(e.tmp.parent)) == e.parent_before
    assert tree(e.tmp / "outside") == e.outside_before
    assert sorted(os.listdir(e.tmp)) == ["bundle", "outside"]
    assert sorted(os.listdir(e.bundle)) == ["rootfs"]
    # only what a test could have created there: host processes may legitimately change /etc meanwhile
    new_in_etc = set(os.listdir("/etc")) - e.etc_before
    assert not [n for n in new_in_etc if n.startswith("ocirun-unit") or n in ("x", "y", "data", "f")]


def inside(e, real):
    return real == e.rootfs or real.startswith(e.rootfs + "/")


def mount(e, destination, type=None, source=None, options=(), index=0, ctx=None):
    m = Mount(destination=destination, type=type, source=source, options=list(options))
    M.mount_one(e.root, m, index, ctx or e.ctx)


def p(e, rel):
    return os.path.join(e.rootfs, rel)


# ============================================================================ the mount option table
SET_FLAGS = [
    ("bind", S.MS_BIND), ("rbind", S.MS_BIND | S.MS_REC), ("dirsync", S.MS_DIRSYNC), ("iversion", 1 << 23),
    ("lazytime", S.MS_LAZYTIME), ("mand", S.MS_MANDLOCK), ("noatime", S.MS_NOATIME),
    ("nodev", S.MS_NODEV), ("nodiratime", S.MS_NODIRATIME), ("noexec", S.MS_NOEXEC), ("nosuid", S.MS_NOSUID),
    ("nosymfollow", S.MS_NOSYMFOLLOW), ("relatime", S.MS_RELATIME), ("remount", S.MS_REMOUNT),
    ("ro", S.MS_RDONLY), ("silent", S.MS_SILENT), ("strictatime", S.MS_STRICTATIME),
    ("sync", S.MS_SYNCHRONOUS),
]
# (option that sets the flag, option that clears it, flag) -- runc's table, runtime-spec config.md
CLEAR_FLAGS = [
    ("sync", "async", S.MS_SYNCHRONOUS), ("noatime", "atime", S.MS_NOATIME), ("nodev", "dev", S.MS_NODEV),
    ("nodiratime", "diratime", S.MS_NODIRATIME), ("noexec", "exec", S.MS_NOEXEC),
    ("iversion", "noiversion", 1 << 23), ("lazytime", "nolazytime", S.MS_LAZYTIME),
    ("silent", "loud", S.MS_SILENT), ("mand", "nomand", S.MS_MANDLOCK),
    ("relatime", "norelatime", S.MS_RELATIME), ("strictatime", "nostrictatime", S.MS_STRICTATIME),
    ("ro", "rw", S.MS_RDONLY), ("nosuid", "suid", S.MS_NOSUID), ("nosymfollow", "symfollow", S.MS_NOSYMFOLLOW),
]


@pytest.mark.parametrize("opt,flag", SET_FLAGS)
def test_option_sets_flag(opt, flag):
    o = M.MountOpts([opt])
    assert o.flags == flag
    assert o.data == [] and o.propagation == [] and o.attr_set == 0 and o.attr_clr == 0


@pytest.mark.parametrize("setter,clearer,flag", CLEAR_FLAGS)
def test_option_clears_flag_and_last_one_wins(setter, clearer, flag):
    o = M.MountOpts([setter, clearer])
    assert o.flags & flag == 0
    assert o.data == [], f"{clearer!r} is a mount flag, not filesystem data"
    assert M.MountOpts([clearer, setter]).flags & flag == flag
    assert M.MountOpts(["nodev", "noexec", setter, "nosuid", clearer]).flags & flag == 0


def test_defaults_is_no_flag_and_no_data():
    o = M.MountOpts(["defaults"])
    assert (o.flags, o.data) == (0, [])


def test_flags_accumulate():
    o = M.MountOpts(["nosuid", "noexec", "nodev", "ro", "rbind"])
    assert o.flags == S.MS_NOSUID | S.MS_NOEXEC | S.MS_NODEV | S.MS_RDONLY | S.MS_BIND | S.MS_REC
    assert o.is_bind
    assert not M.MountOpts(["nosuid"]).is_bind


@pytest.mark.parametrize("opt,value", [
    ("private", S.MS_PRIVATE), ("rprivate", S.MS_PRIVATE | S.MS_REC), ("shared", S.MS_SHARED),
    ("rshared", S.MS_SHARED | S.MS_REC), ("slave", S.MS_SLAVE), ("rslave", S.MS_SLAVE | S.MS_REC),
    ("unbindable", S.MS_UNBINDABLE), ("runbindable", S.MS_UNBINDABLE | S.MS_REC),
])
def test_propagation_options(opt, value):
    o = M.MountOpts(["bind", opt])
    assert o.propagation == [value]
    assert o.flags == S.MS_BIND and o.data == []


def test_propagation_keeps_order():
    o = M.MountOpts(["rslave", "private", "rshared"])
    assert o.propagation == [S.MS_SLAVE | S.MS_REC, S.MS_PRIVATE, S.MS_SHARED | S.MS_REC]


REC_SET = [("rro", S.MOUNT_ATTR_RDONLY), ("rnosuid", S.MOUNT_ATTR_NOSUID), ("rnodev", S.MOUNT_ATTR_NODEV),
           ("rnoexec", S.MOUNT_ATTR_NOEXEC), ("rnodiratime", S.MOUNT_ATTR_NODIRATIME),
           ("rnosymfollow", S.MOUNT_ATTR_NOSYMFOLLOW)]
REC_CLEAR = [("rrw", S.MOUNT_ATTR_RDONLY), ("rsuid", S.MOUNT_ATTR_NOSUID), ("rdev", S.MOUNT_ATTR_NODEV),
             ("rexec", S.MOUNT_ATTR_NOEXEC), ("rdiratime", S.MOUNT_ATTR_NODIRATIME),
             ("rsymfollow", S.MOUNT_ATTR_NOSYMFOLLOW)]
REC_ATIME = [("rnoatime", S.MOUNT_ATTR_NOATIME), ("rstrictatime", S.MOUNT_ATTR_STRICTATIME),
             ("rrelatime", S.MOUNT_ATTR_RELATIME)]


@pytest.mark.parametrize("opt,attr", REC_SET)
def test_recursive_attr_set(opt, attr):
    o = M.MountOpts([opt])
    assert (o.attr_set, o.attr_clr) == (attr, 0)
    assert o.flags == 0 and o.data == []


@pytest.mark.parametrize("opt,attr", REC_CLEAR)
def test_recursive_attr_clear(opt, attr):
    o = M.MountOpts([opt])
    assert (o.attr_set, o.attr_clr) == (0, attr)
    assert o.flags == 0 and o.data == []


@pytest.mark.parametrize("opt,attr", REC_ATIME)
def test_recursive_atime_also_clears_the_atime_field(opt, attr):
    # mount_setattr(2): an atime value in attr_set needs all of MOUNT_ATTR__ATIME in attr_clr
    o = M.MountOpts([opt])
    assert o.attr_set == attr
    assert o.attr_clr & S.MOUNT_ATTR__ATIME == S.MOUNT_ATTR__ATIME
    assert o.data == []


@pytest.mark.parametrize("opt", ["ratime", "rnostrictatime", "rnorelatime"])
def test_recursive_atime_clear_options_are_known(opt):
    o = M.MountOpts([opt])
    assert o.data == [] and o.flags == 0 and o.attr_set & S.MOUNT_ATTR__ATIME == 0


@pytest.mark.parametrize("opts,want", [
    (["rnoatime", "ratime"], S.MOUNT_ATTR_RELATIME),
    (["rnoatime", "rstrictatime"], S.MOUNT_ATTR_STRICTATIME),
    (["rstrictatime", "rrelatime"], S.MOUNT_ATTR_RELATIME),
    (["rnoatime", "rrelatime"], S.MOUNT_ATTR_RELATIME),
])
def test_recursive_atime_last_option_wins(opts, want):
    """The atime attributes are one enum: the kernel rejects two values at once (EINVAL) and `ratime` after
    `rnoatime` must undo it. The result of applying attr_clr/attr_set to any mount must be `want`."""
    o = M.MountOpts(opts)
    assert o.attr_clr & S.MOUNT_ATTR__ATIME == S.MOUNT_ATTR__ATIME
    assert o.attr_set & S.MOUNT_ATTR__ATIME == want


_NON_ATIME = REC_SET + REC_CLEAR


@settings(max_examples=150, deadline=None, database=None)
@given(st.lists(st.sampled_from([o for o, _ in _NON_ATIME + REC_ATIME]), max_size=8),
       st.integers(0, 0xFF) | st.just(0))
def test_recursive_attrs_model(opts, initial):
    """Applied as the kernel does -- (attrs & ~clr) | set -- the options give what the last one of each asked."""
    o = M.MountOpts(opts)
    # the kernel's own validity rules (fs/namespace.c build_mount_kattr)
    if o.attr_clr & S.MOUNT_ATTR__ATIME:
        assert o.attr_clr & S.MOUNT_ATTR__ATIME == S.MOUNT_ATTR__ATIME
    assert o.attr_set & S.MOUNT_ATTR__ATIME in (0, S.MOUNT_ATTR_NOATIME, S.MOUNT_ATTR_STRICTATIME)
    if o.attr_set & S.MOUNT_ATTR__ATIME:
        assert o.attr_clr & S.MOUNT_ATTR__ATIME == S.MOUNT_ATTR__ATIME
    result = (initial & ~o.attr_clr) | o.attr_set
    table = dict(_NON_ATIME)
    for bit in {a for _, a in _NON_ATIME}:
        last = [op for op in opts if table.get(op) == bit]
        if not last:
            assert result & bit == initial & bit
        elif last[-1] in dict(REC_SET):
            assert result & bit
        else:
            assert not result & bit
    atimes = [op for op in opts if op in dict(REC_ATIME)]
    if atimes:
        assert result & S.MOUNT_ATTR__ATIME == dict(REC_ATIME)[atimes[-1]]


@pytest.mark.parametrize("opt", ["tmpcopyup", "idmap", "ridmap"])
def test_extensions_are_not_data(opt):
    o = M.MountOpts([opt, "mode=755"])
    assert o.extensions == {opt}
    assert o.data == ["mode=755"] and o.flags == 0


def test_unknown_options_are_data_in_order():
    o = M.MountOpts(["mode=755", "nosuid", "size=65536k", "newinstance", "x-foo", "uid=0", "gid=5"])
    assert o.data == ["mode=755", "size=65536k", "newinstance", "x-foo", "uid=0", "gid=5"]
    assert o.flags == S.MS_NOSUID


def test_none_and_empty_options():
    for opts in (None, [], ()):
        o = M.MountOpts(opts)
        assert (o.flags, o.data, o.propagation, o.attr_set, o.attr_clr) == (0, [], [], 0, 0)


# ============================================================================ clean()
@pytest.mark.parametrize("path,want", [
    ("/", ""), ("", ""), (".", ""), ("/a/b", "a/b"), ("a//b/", "a/b"), ("/../../a", "a"), ("/a/../../b", "b"),
    ("./a/./b/.", "a/b"), ("/a/b/..", "a"), ("...", "..."), ("/a/..b", "a/..b"), ("//a///b//", "a/b"),
    ("/a/b/../../..", ""), ("..", ""), ("/proc/self/../1", "proc/1"),
])
def test_clean(path, want):
    assert R.clean(path) == want


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.sampled_from(["", ".", "..", "a", "b", "..a", "a..", "..."]), max_size=12).map("/".join))
def test_clean_is_normpath_and_never_climbs(path):
    c = R.clean(path)
    assert not c.startswith("/") and ".." not in c.split("/") and "" not in c.split("/")[0 if c else 1:]
    assert R.clean(c) == c
    assert c == posixpath.normpath("/" + path).lstrip("/")


# ============================================================================ Root: resolve, mkdir_all, ensure
def test_mkdir_all_nested(env):
    fd = env.root.mkdir_all("/a/b/c", 0o750)
    try:
        assert os.readlink(f"/proc/self/fd/{fd}") == p(env, "a/b/c")
    finally:
        os.close(fd)
    assert os.path.isdir(p(env, "a/b/c"))
    fd = env.root.mkdir_all("/a/b/c")  # existing: fine
    os.close(fd)


def test_mkdir_all_root(env):
    fd = env.root.mkdir_all("/")
    try:
        assert os.readlink(f"/proc/self/fd/{fd}") == env.rootfs
    finally:
        os.close(fd)


def test_mkdir_all_through_dangling_symlink(env):
    """A dangling symlink on the way: its target is made inside the root (runc's MkdirAllInRoot), never on the
    host: /mnt -> /nonexistent-X makes rootfs/nonexistent-X/x."""
    target = "/nonexistent-" + unique()
    os.symlink(target, p(env, "mnt"))
    os.close(env.root.mkdir_all("/mnt/x"))
    assert os.path.isdir(p(env, target.lstrip("/") + "/x"))
    assert not os.path.lexists(target)
    os.symlink("../rel-" + unique(), p(env, "rel"))  # relative, climbing above / : still inside the root
    os.close(env.root.mkdir_all("/rel/y"))
    assert os.path.isdir(p(env, os.readlink(p(env, "rel"))[3:] + "/y"))
    outside_untouched(env)


def test_mkdir_all_through_a_file(env):
    os.mkdir(p(env, "etc"))
    open(p(env, "etc/passwd"), "w").close()
    with pytest.raises(OciError) as ei:
        env.root.mkdir_all("/etc/passwd/x")
    assert str(ei.value) == "/etc/passwd/x: /etc/passwd exists and is not a directory"


def test_mkdir_all_symlink_loop_is_an_oci_error(env):
    os.symlink("/loop", p(env, "loop"))
    with pytest.raises(OciError) as ei:
        env.root.mkdir_all("/loop/x")
    assert "/loop" in str(ei.value)
    outside_untouched(env)


def test_ensure_file_creates_parents_and_empty_file(env):
    fd = env.root.ensure("/etc/x/hosts", is_dir=False)
    try:
        assert os.readlink(f"/proc/self/fd/{fd}") == p(env, "etc/x/hosts")
    finally:
        os.close(fd)
    st_ = os.stat(p(env, "etc/x/hosts"))
    assert stat.S_ISREG(st_.st_mode) and st_.st_size == 0


def test_ensure_existing_file_is_kept(env):
    with open(p(env, "f"), "w") as f:
        f.write("keep")
    os.close(env.root.ensure("/f", is_dir=False))
    assert open(p(env, "f")).read() == "keep"


def test_resolve_dotdot_stays_in_root(env):
    os.mkdir(p(env, "a"))
    fd = env.root.resolve("/a/../../../../")
    try:
        assert os.readlink(f"/proc/self/fd/{fd}") == env.rootfs
    finally:
        os.close(fd)


# ============================================================================ mount_one
def test_bind_file_relative_source(env):
    with open(os.path.join(env.bundle, "hosts.src"), "w") as f:
        f.write("127.0.0.1 localhost\n")
    mount(env, "/etc/hosts", type="bind", source="hosts.src", options=["bind"])
    (m,) = env.fake.mounts()
    assert m.source == os.path.join(env.bundle, "hosts.src")
    assert (m.fstype, m.flags, m.data) == ("", S.MS_BIND, None)
    assert m.target_real == p(env, "etc/hosts")
    assert os.path.isfile(p(env, "etc/hosts")) and os.path.getsize(p(env, "etc/hosts")) == 0
    assert os.path.isdir(p(env, "etc"))


def test_bind_dir_rbind_absolute_source(env):
    src = env.tmp / "outside"
    mount(env, "/data/deep/er", type="none", source=str(src), options=["rbind"])
    (m,) = env.fake.mounts()
    assert (m.source, m.fstype, m.flags) == (str(src), "", S.MS_BIND | S.MS_REC)
    assert m.target_real == p(env, "data/deep/er")
    assert os.path.isdir(p(env, "data/deep/er"))


def test_bind_by_type_only(env):
    mount(env, "/d", type="bind", source=str(env.tmp / "outside"), options=[])
    (m,) = env.fake.mounts()
    assert m.flags & S.MS_BIND and m.target_real == p(env, "d")


def test_bind_ro_remounts_the_new_mount(env):
    mount(env, "/ro", type="bind", source=str(env.tmp / "outside"), options=["rbind", "ro", "nosuid"])
    first, second = env.fake.mounts()
    assert first.flags == S.MS_BIND | S.MS_REC
    assert second.source == "" and second.fstype == ""
    required = S.MS_BIND | S.MS_REMOUNT | S.MS_RDONLY | S.MS_NOSUID
    assert second.flags & required == required
    assert second.flags & ~(required | LOCKABLE) == 0
    assert second.target_real == p(env, "ro")


def test_bind_propagation_and_recursive_attrs(env):
    mount(env, "/v", source=str(env.tmp / "outside"), options=["rbind", "rslave", "rro", "rnosuid"])
    calls = [c for c in env.fake.calls if c.op in ("mount", "mount_setattr")]
    assert [c.op for c in calls] == ["mount", "mount", "mount_setattr"]
    prop = calls[1]
    assert prop.args[0] == "" and prop.args[2] == "" and prop.args[3] == S.MS_SLAVE | S.MS_REC
    assert prop.real["target"] == p(env, "v")
    sa = calls[2]
    assert sa.args[1] == "" and sa.args[2] == S.AT_EMPTY_PATH | S.AT_RECURSIVE
    assert sa.args[3] == S.MOUNT_ATTR_RDONLY | S.MOUNT_ATTR_NOSUID and sa.args[4] == 0
    assert sa.real["dfd"] == p(env, "v")


def test_bind_missing_source_names_index_and_destination(env):
    with pytest.raises(OciError) as ei:
        mount(env, "/data", type="bind", source="/nope", options=["rbind"], index=3)
    assert str(ei.value) == "mounts[3] /data: source /nope does not exist"
    assert env.fake.mounts() == []
    assert not os.path.exists(p(env, "data"))


def test_bind_missing_relative_source(env):
    with pytest.raises(OciError) as ei:
        mount(env, "/data", source="nope", options=["bind"], index=0)
    assert str(ei.value) == "mounts[0] /data: source nope does not exist"


def test_proc(env):
    mount(env, "/proc", type="proc", source="proc")
    (m,) = env.fake.mounts()
    assert (m.source, m.fstype, m.flags, m.data) == ("proc", "proc", 0, None)
    assert m.target_real == p(env, "proc")


def test_tmpfs_flags_and_data(env):
    mount(env, "/dev", type="tmpfs", source="tmpfs", options=["nosuid", "strictatime", "mode=755", "size=65536k"])
    (m,) = env.fake.mounts()
    assert (m.source, m.fstype) == ("tmpfs", "tmpfs")
    assert m.flags == S.MS_NOSUID | S.MS_STRICTATIME
    assert m.data == "mode=755,size=65536k"
    assert m.target_real == p(env, "dev")


def test_devpts(env):
    mount(env, "/dev/pts", type="devpts", source="devpts",
          options=["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"])
    (m,) = env.fake.mounts()
    assert (m.source, m.fstype, m.flags) == ("devpts", "devpts", S.MS_NOSUID | S.MS_NOEXEC)
    assert m.data == "newinstance,ptmxmode=0666,mode=0620,gid=5"
    assert m.target_real == p(env, "dev/pts")


def test_mqueue(env):
    mount(env, "/dev/mqueue", type="mqueue", source="mqueue", options=["nosuid", "noexec", "nodev"])
    (m,) = env.fake.mounts()
    assert (m.source, m.fstype, m.flags, m.data) == ("mqueue", "mqueue", S.MS_NOSUID | S.MS_NOEXEC | S.MS_NODEV, None)
    assert m.target_real == p(env, "dev/mqueue")


def test_sysfs_in_new_netns(env):
    mount(env, "/sys", type="sysfs", source="sysfs", options=["nosuid", "noexec", "nodev", "ro"])
    (m,) = env.fake.mounts()
    assert (m.source, m.fstype) == ("sysfs", "sysfs")
    assert m.flags == S.MS_NOSUID | S.MS_NOEXEC | S.MS_NODEV | S.MS_RDONLY
    assert m.target_real == p(env, "sys")


def test_sysfs_the_userns_cannot_mount_is_refused(env):
    """runc's verdict: no fallback to a bind of the host's /sys (differential run: runc refuses, ocirun bound)."""
    env.fake.fail("mount", errno.EPERM, when=lambda c: c.args[2] == "sysfs")
    ctx = M.MountContext(env.bundle, in_userns=True, new_netns=False)
    with pytest.raises(OciError, match=r"mounts\[0\] /sys: .*Operation not permitted.*network namespace"):
        mount(env, "/sys", type="sysfs", source="sysfs", options=["nosuid", "noexec", "nodev", "ro"], ctx=ctx)
    assert env.fake.mounts() == []


def test_overlay_bundle_relative_dirs(env):
    mount(env, "/merged", type="overlay", source="overlay",
          options=["lowerdir=l1:/abs/l2", "upperdir=up", "workdir=/abs/work", "index=off", "nodev"])
    (m,) = env.fake.mounts()
    b = env.bundle
    assert (m.source, m.fstype, m.flags) == ("overlay", "overlay", S.MS_NODEV)
    assert m.data == f"lowerdir={b}/l1:/abs/l2,upperdir={b}/up,workdir=/abs/work,index=off"
    assert m.target_real == p(env, "merged")


def test_unknown_filesystem_type_message(env):
    env.fake.fail("mount", errno.ENODEV)
    with pytest.raises(OciError) as ei:
        mount(env, "/x", type="bogusfs", source="none", index=5)
    msg = str(ei.value)
    assert msg.startswith("mounts[5] /x: ") and "unknown filesystem type 'bogusfs'" in msg
    assert "\n" not in msg


def test_relative_and_dotdot_destinations_are_anchored_at_root(env):
    mount(env, "data", type="tmpfs", source="tmpfs")
    mount(env, "/../../../x/../y", type="tmpfs", source="tmpfs")
    a, b = env.fake.mounts()
    assert a.target_real == p(env, "data") and b.target_real == p(env, "y")
    outside_untouched(env)


def test_nested_destinations_in_order(env):
    for i, d in enumerate(["/a", "/a/b", "/a/b/c/d"]):
        mount(env, d, type="tmpfs", source="tmpfs", index=i)
    assert [m.target_real for m in env.fake.mounts()] == [p(env, "a"), p(env, "a/b"), p(env, "a/b/c/d")]


def test_tmpfs_over_existing_directory_keeps_its_mode(env):
    """A tmpfs over an existing directory gets the directory's mode (setuid/setgid/sticky too) unless the
    options say otherwise (runc: mode=<the directory's mode> ahead of the options); a new one the kernel's."""
    os.makedirs(p(env, "seven"))
    os.chmod(p(env, "seven"), 0o1712)
    os.makedirs(p(env, "given"))
    os.chmod(p(env, "given"), 0o712)
    mount(env, "/seven", type="tmpfs", source="tmpfs", options=["size=1m"])
    mount(env, "/given", type="tmpfs", source="tmpfs", options=["mode=700"])
    mount(env, "/fresh", type="tmpfs", source="tmpfs", options=["size=1m"])
    assert [m.data for m in env.fake.mounts()] == ["mode=1712,size=1m", "mode=0712,mode=700", "size=1m"]


def test_tmpcopyup_copies_then_moves(env, monkeypatch):
    tmpdir = env.tmp / "tmp"
    tmpdir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    os.makedirs(p(env, "etc/sub"))
    with open(p(env, "etc/os-release"), "w") as f:
        f.write("ID=test\n")
    with open(p(env, "etc/sub/inner"), "w") as f:
        f.write("inner\n")
    secret = unique()
    os.symlink("/etc/hostname", p(env, "etc/evil"))
    os.symlink("/etc", p(env, "etc/evildir"))
    os.chmod(p(env, "etc"), 0o750)
    mount(env, "/etc", type="tmpfs", source="tmpfs", options=["tmpcopyup", "mode=755", "nosuid"])
    bind, private, tm, move = env.fake.mounts()
    # staged under a private bind mount of its own (MS_MOVE refuses a mount whose parent is shared)
    assert (bind.source, bind.flags) == (bind.target, S.MS_BIND) and os.path.dirname(bind.target) == str(tmpdir)
    assert (private.target, private.flags) == (bind.target, S.MS_PRIVATE)
    # the existing directory's mode first, the configured one after it (the kernel keeps the last)
    assert (tm.source, tm.fstype, tm.flags, tm.data) == ("tmpfs", "tmpfs", S.MS_NOSUID, "mode=0750,mode=755")
    staging = tm.target
    assert os.path.dirname(staging) == bind.target
    assert (move.source, move.fstype, move.flags) == (staging, "", S.MS_MOVE)
    assert move.target_real == p(env, "etc")
    # the fake did not mount, so the copy landed in the staging directory itself
    assert open(os.path.join(staging, "os-release")).read() == "ID=test\n"
    assert open(os.path.join(staging, "sub/inner")).read() == "inner\n"
    # symlinks are copied as symlinks, never followed to the host
    assert os.readlink(os.path.join(staging, "evil")) == "/etc/hostname"
    assert os.readlink(os.path.join(staging, "evildir")) == "/etc"
    assert not os.path.lexists(os.path.join("/etc", secret))


def test_cgroup2_without_plan(env):
    mount(env, "/sys/fs/cgroup", type="cgroup", source="cgroup", options=["nosuid", "noexec", "nodev", "ro"])
    (m,) = env.fake.mounts()
    assert (m.source, m.fstype) == ("cgroup2", "cgroup2")
    assert m.flags == S.MS_NOSUID | S.MS_NOEXEC | S.MS_NODEV | S.MS_RDONLY
    assert m.target_real == p(env, "sys/fs/cgroup")


# ============================================================================ hostile rootfs
def test_hostile_absolute_symlink_to_etc(env):
    """rootfs/mnt -> /etc: /mnt/x is rootfs/etc/x, never the host's /etc/x."""
    os.mkdir(p(env, "etc"))
    os.symlink("/etc", p(env, "mnt"))
    name = unique()
    mount(env, f"/mnt/{name}", type="tmpfs", source="tmpfs")
    (m,) = env.fake.mounts()
    assert m.target_real == p(env, f"etc/{name}")
    assert os.path.isdir(p(env, f"etc/{name}"))
    assert not os.path.lexists(f"/etc/{name}")
    outside_untouched(env)


def test_hostile_absolute_symlink_bind_file(env):
    os.mkdir(p(env, "etc"))
    os.symlink("/etc", p(env, "mnt"))
    src = env.tmp / "outside" / "decoy"
    name = unique()
    mount(env, f"/mnt/{name}", type="bind", source=str(src), options=["bind"])
    (m,) = env.fake.mounts()
    assert m.target_real == p(env, f"etc/{name}") and os.path.isfile(m.target_real)
    assert not os.path.lexists(f"/etc/{name}")
    outside_untouched(env)


def test_hostile_absolute_symlink_dangling_in_root(env):
    """rootfs/mnt -> /etc with no rootfs/etc: rootfs/etc/NAME is made and mounted on, nothing on the host."""
    os.symlink("/etc", p(env, "mnt"))
    name = unique()
    mount(env, f"/mnt/{name}", type="tmpfs", source="tmpfs", index=2)
    assert [m.target_real for m in env.fake.mounts()] == [p(env, f"etc/{name}")]
    assert not os.path.lexists(f"/etc/{name}")
    outside_untouched(env)


def test_destination_errors_name_the_mount(env):
    """mount_one's contract: every error names the mount (`mounts[3] /data: ...`), also when the destination
    cannot be made (dangling symlink, a file in the way)."""
    os.symlink("loop2", p(env, "loop1"))
    os.symlink("loop1", p(env, "loop2"))
    with pytest.raises(OciError) as ei:
        mount(env, "/loop1/x", type="tmpfs", source="tmpfs", index=2)
    assert str(ei.value).startswith("mounts[2] /loop1/x: ")
    open(p(env, "file"), "w").close()
    with pytest.raises(OciError) as ei:
        mount(env, "/file/x", type="bind", source=str(env.tmp / "outside"), options=["rbind"], index=4)
    assert str(ei.value).startswith("mounts[4] /file/x: ")


def test_hostile_dotdot_symlink(env):
    """rootfs/a -> ../../..: /a/x is rootfs/x, not a directory beside the test's tmp dir."""
    os.symlink("../../..", p(env, "a"))
    name = unique()
    mount(env, f"/a/{name}", type="tmpfs", source="tmpfs")
    (m,) = env.fake.mounts()
    assert m.target_real == p(env, name)
    assert not os.path.lexists(os.path.join(env.tmp.parent, name))
    outside_untouched(env)


def test_hostile_dotdot_symlink_to_sibling(env):
    """rootfs/etc -> ../../outside (a real directory beside the bundle): resolved in the root it dangles."""
    os.symlink("../../outside", p(env, "etc"))
    mount(env, "/etc/resolv.conf", type="bind", source=str(env.tmp / "outside" / "decoy"), options=["bind"])
    # resolved in the root, the link names rootfs/outside: made there, and the mount lands there
    assert [m.target_real for m in env.fake.mounts()] == [p(env, "outside/resolv.conf")]
    assert not os.path.lexists(env.tmp / "outside" / "resolv.conf")
    outside_untouched(env)


def test_hostile_symlink_chain(env):
    os.makedirs(p(env, "real/target"))
    os.symlink("/c2/../c3", p(env, "c1"))
    os.symlink("../../../../c2b", p(env, "c2"))
    os.mkdir(p(env, "c2b"))
    os.symlink("real/../../../../real/target", p(env, "c3"))
    name = unique()
    mount(env, f"/c1/{name}/y", type="tmpfs", source="tmpfs")
    (m,) = env.fake.mounts()
    assert inside(env, m.target_real)
    assert m.target_real == p(env, f"real/target/{name}/y")
    outside_untouched(env)


def test_hostile_dev_symlink_to_host_dev(env):
    """rootfs/dev -> /dev loops inside the root: refused, and the host's /dev is never written."""
    os.symlink("/dev", p(env, "dev"))
    name = unique()
    with pytest.raises(OciError) as ei:
        mount(env, f"/dev/{name}", type="tmpfs", source="tmpfs", index=1)
    assert str(ei.value).startswith(f"mounts[1] /dev/{name}: ")
    assert env.fake.mounts() == []
    assert not os.path.lexists(f"/dev/{name}")
    outside_untouched(env)


def test_hostile_dev_symlink_devices_never_touch_host(env):
    # default=False and a unique name: even a broken resolution could not unlink the host's /dev/null here
    os.symlink("/dev", p(env, "dev"))
    name = unique()
    with pytest.raises((OciError, OSError)):
        D.create_devices(env.root, [Device(type="c", path=f"/dev/{name}", major=1, minor=3, file_mode=0o666)],
                         in_userns=False, default=False)
    assert env.fake.of("mknodat") == [] and env.fake.mounts() == []
    assert not os.path.lexists(f"/dev/{name}")
    outside_untouched(env)


def test_hostile_dev_symlink_devices_error_is_an_oci_error(env):
    """The failure above should be a user-facing OciError naming the device, not a bare OSError."""
    os.symlink("/dev", p(env, "dev"))
    name = unique()
    with pytest.raises(OciError) as ei:
        D.create_devices(env.root, [Device(type="c", path=f"/dev/{name}", major=1, minor=3)], in_userns=False,
                         default=False)
    assert f"/dev/{name}" in str(ei.value)
    assert not os.path.lexists(f"/dev/{name}")


def test_hostile_final_component_dangling_file_symlink(env):
    """rootfs/f -> /etc/NAME (dangling): a file destination is followed *inside* the root and its target
    created there (rootfs/etc/NAME, as runc does), never /etc/NAME on the host."""
    name = unique()
    os.symlink(f"/etc/{name}", p(env, "f"))
    mount(env, "/f", type="bind", source=str(env.tmp / "outside" / "decoy"), options=["bind"])
    (m,) = env.fake.mounts()
    assert m.target_real == p(env, f"etc/{name}") and os.path.isfile(m.target_real)
    assert not os.path.lexists(f"/etc/{name}")
    outside_untouched(env)


def test_hostile_dangling_file_symlink_chain_and_loop(env):
    name = unique()
    os.symlink("../../../../hop", p(env, "f"))  # relative, climbing: /hop inside the root
    os.symlink(f"/etc/{name}", p(env, "hop"))
    mount(env, "/f", type="bind", source=str(env.tmp / "outside" / "decoy"), options=["bind"], index=0)
    assert env.fake.mounts()[0].target_real == p(env, f"etc/{name}")
    os.symlink("loop", p(env, "loop"))
    with pytest.raises(OciError) as ei:
        mount(env, "/loop", type="bind", source=str(env.tmp / "outside" / "decoy"), options=["bind"], index=1)
    assert "\n" not in str(ei.value)
    assert len(env.fake.mounts()) == 1
    assert not os.path.lexists(f"/etc/{name}") and not os.path.lexists("/hop")
    outside_untouched(env)


LEAF = unique("leaf")  # unique: if the resolution were broken, this is the name that would appear on the host


@settings(max_examples=60, deadline=None, database=None)
@given(st.lists(st.sampled_from(["a", "b", "..", ".", "l_abs", "l_up", "l_etc"]), min_size=1, max_size=6))
def test_hostile_any_destination_lands_inside(tmp_path_factory, comps):
    """Whatever the destination, through whatever symlinks, a mount lands inside the rootfs (or errors)."""
    base = tmp_path_factory.mktemp("hyp")
    rootfs = base / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    os.symlink("/", rootfs / "l_abs")
    os.symlink("../../../..", rootfs / "l_up")
    os.symlink("/etc", rootfs / "l_etc")
    fake = FakeSyscalls(jail=str(base))
    root = R.Root(str(rootfs), fake)
    real_rootfs = os.path.realpath(rootfs)
    before = sorted(os.listdir(base.parent))
    try:
        M.mount_one(root, Mount(destination="/" + "/".join(comps) + "/" + LEAF, type="tmpfs", source="tmpfs"), 0,
                    M.MountContext(str(base)))
    except OciError:
        pass
    finally:
        root.close()
    for m in fake.mounts():
        assert m.target_real == real_rootfs or m.target_real.startswith(real_rootfs + "/")
    assert sorted(os.listdir(base.parent)) == before
    assert sorted(os.listdir(base)) == ["rootfs"]
    assert not os.path.lexists("/" + LEAF) and not os.path.lexists("/etc/" + LEAF)


# ============================================================================ maskedPaths / readonlyPaths
def _make_masked_targets(env):
    os.makedirs(p(env, "proc/acpi"))
    with open(p(env, "proc/kcore"), "w") as f:
        f.write("secret")
    os.makedirs(p(env, "dev"), exist_ok=True)


def test_is_dev_null_on_real_nodes(tmp_path):
    for path, want in (("/dev/null", True), ("/dev/zero", False), ("/dev/full", False)):
        fd = os.open(path, os.O_PATH)
        try:
            assert R._is_dev_null(fd) is want, path
        finally:
            os.close(fd)
    f = tmp_path / "null"
    f.write_text("")
    fd = os.open(f, os.O_PATH)
    try:
        assert R._is_dev_null(fd) is False
    finally:
        os.close(fd)


@pytest.mark.parametrize("kind", ["regular", "symlink-to-file", "directory", "fifo", "symlink-loop", "missing"])
def test_mask_refuses_a_fake_dev_null(env, kind):
    """CVE-2025-31133: a container-provided /dev/null must never be bind-mounted over masked files."""
    _make_masked_targets(env)
    null = p(env, "dev/null")
    if kind == "regular":
        open(null, "w").close()
    elif kind == "symlink-to-file":
        with open(p(env, "hostile"), "w") as f:
            f.write("x")
        os.symlink("/hostile", null)
    elif kind == "directory":
        os.mkdir(null)
    elif kind == "fifo":
        os.mkfifo(null)
    elif kind == "symlink-loop":
        os.symlink("/dev/null", null)
    with pytest.raises((OciError, OSError)):
        R.mask_paths(env.root, ["/proc/kcore"])
    assert [m for m in env.fake.mounts() if m.flags & S.MS_BIND] == []


@pytest.mark.parametrize("kind", ["regular", "symlink-loop", "missing"])
def test_mask_dev_null_problems_are_oci_errors(env, kind):
    """Refusing is not enough: the user should get a one-line linux.maskedPaths error, not a bare OSError."""
    _make_masked_targets(env)
    null = p(env, "dev/null")
    if kind == "regular":
        open(null, "w").close()
    elif kind == "symlink-loop":
        os.symlink("/dev/null", null)
    with pytest.raises(OciError) as ei:
        R.mask_paths(env.root, ["/proc/kcore"])
    assert str(ei.value).startswith("linux.maskedPaths: ")


def test_mask_binds_the_real_null_device(env, monkeypatch):
    """Without root there is no real 1:3 node in the tmp rootfs: accept exactly the rootfs's dev/null file,
    which proves the check is made on the very fd that is then bind-mounted."""
    _make_masked_targets(env)
    open(p(env, "dev/null"), "w").close()
    checked = []

    def fake_is_dev_null(fd):
        real = os.readlink(f"/proc/self/fd/{fd}")
        checked.append(real)
        return real == p(env, "dev/null")

    monkeypatch.setattr(R, "_is_dev_null", fake_is_dev_null)
    R.mask_paths(env.root, ["/proc/kcore", "/proc/acpi", "/proc/missing", "/proc/kcore/below-a-file"])
    assert checked == [p(env, "dev/null")]
    bind, tmpfs = env.fake.mounts()
    assert (bind.fstype, bind.flags) == ("", S.MS_BIND)
    assert bind.source_real == p(env, "dev/null") and bind.target_real == p(env, "proc/kcore")
    assert (tmpfs.source, tmpfs.fstype, tmpfs.flags) == ("tmpfs", "tmpfs", S.MS_RDONLY)
    assert tmpfs.target_real == p(env, "proc/acpi")


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a real 1:3 character device needs CAP_MKNOD (root)")
def test_mask_with_real_null_device_as_root(env):
    _make_masked_targets(env)
    os.mknod(p(env, "dev/null"), stat.S_IFCHR | 0o666, os.makedev(1, 3))
    R.mask_paths(env.root, ["/proc/kcore"])
    (bind,) = env.fake.mounts()
    assert bind.source_real == p(env, "dev/null") and bind.target_real == p(env, "proc/kcore")


def test_mask_only_directories_needs_no_dev_null(env):
    os.makedirs(p(env, "sys/firmware"))
    R.mask_paths(env.root, ["/sys/firmware", "/nope"])
    (m,) = env.fake.mounts()
    assert m.fstype == "tmpfs" and m.target_real == p(env, "sys/firmware")


def test_mask_through_hostile_symlink_stays_inside(env, monkeypatch):
    os.makedirs(p(env, "dev"))
    open(p(env, "dev/null"), "w").close()
    os.makedirs(p(env, "etc"))
    open(p(env, "etc/shadow"), "w").close()
    os.symlink("/etc/shadow", p(env, "kcore-link"))
    monkeypatch.setattr(R, "_is_dev_null", lambda fd: True)
    R.mask_paths(env.root, ["/kcore-link"])
    (m,) = env.fake.mounts()
    assert m.target_real == p(env, "etc/shadow")


def test_mask_and_readonly_skip_missing(env):
    R.mask_paths(env.root, ["/proc/nope", "/a/b/c"])
    R.readonly_paths(env.root, ["/proc/nope", "/x/y"])
    assert env.fake.calls == []


def test_readonly_paths(env):
    os.makedirs(p(env, "proc/sys"))
    open(p(env, "proc/sysrq-trigger"), "w").close()
    R.readonly_paths(env.root, ["/proc/sys", "/proc/missing", "/proc/sysrq-trigger"])
    ms = env.fake.mounts()
    assert len(ms) == 4
    for (bind, remount), rel in zip((ms[0:2], ms[2:4]), ("proc/sys", "proc/sysrq-trigger")):
        assert bind.source_real == p(env, rel) and bind.target_real == p(env, rel)
        assert bind.flags == S.MS_BIND | S.MS_REC
        required = S.MS_BIND | S.MS_REMOUNT | S.MS_RDONLY
        assert remount.flags & required == required
        assert remount.flags & ~(required | S.MS_REC | LOCKABLE) == 0
        assert remount.target_real == p(env, rel)


# ============================================================================ devices
DEFAULTS = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9), "tty": (5, 0)}


def test_default_devices_mknod(env):
    D.create_devices(env.root, [], in_userns=False)
    calls = env.fake.of("mknodat")
    assert sorted(c.args[1] for c in calls) == sorted(DEFAULTS)
    for c in calls:
        _, name, mode, dev = c.args
        assert mode == stat.S_IFCHR | 0o666
        assert (os.major(dev), os.minor(dev)) == DEFAULTS[name]
        assert c.real["target"] == p(env, f"dev/{name}")
        assert stat.S_IMODE(os.stat(p(env, f"dev/{name}")).st_mode) == 0o666  # chmod'ed despite the umask
    assert env.fake.mounts() == []


def test_config_devices(env):
    devs = [
        Device(type="c", path="/dev/null", major=1, minor=3, file_mode=0o600, uid=0, gid=0),
        Device(type="b", path="/dev/sda", major=8, minor=0, file_mode=0o660),
        Device(type="u", path="/dev/input/event0", major=13, minor=64),
        Device(type="p", path="/dev/myfifo", file_mode=0o640),
    ]
    D.create_devices(env.root, devs, in_userns=False)
    calls = {c.args[1]: c for c in env.fake.of("mknodat")}
    assert sorted(calls) == sorted(["null", "zero", "full", "random", "urandom", "tty", "sda", "event0", "myfifo"])
    assert [c.args[1] for c in env.fake.of("mknodat")].count("null") == 1  # the config overrides the default
    assert calls["null"].args[2] == stat.S_IFCHR | 0o600
    assert calls["sda"].args[2:] == (stat.S_IFBLK | 0o660, os.makedev(8, 0))
    assert calls["event0"].args[2:] == (stat.S_IFCHR | 0o666, os.makedev(13, 64))
    assert calls["event0"].real["target"] == p(env, "dev/input/event0")
    assert calls["myfifo"].args[2:] == (stat.S_IFIFO | 0o640, 0)
    assert stat.S_IMODE(os.stat(p(env, "dev/null")).st_mode) == 0o600


def test_device_replaces_existing_symlink_not_its_target(env):
    name = unique()
    os.makedirs(p(env, "dev"))
    os.symlink(f"/etc/{name}", p(env, "dev/null"))
    D.create_devices(env.root, [], in_userns=False)
    assert not os.path.islink(p(env, "dev/null"))
    assert not os.path.lexists(f"/etc/{name}")
    outside_untouched(env)


def test_device_errors_name_the_entry(env):
    with pytest.raises(OciError) as ei:
        D.create_devices(env.root, [Device(type="x", path="/dev/x", major=1, minor=1)], in_userns=False)
    assert str(ei.value) == "linux.devices[0] /dev/x: unknown device type 'x'"
    with pytest.raises(OciError) as ei:
        D.create_devices(env.root, [Device(type="c", path="/", major=1, minor=1)], in_userns=False, default=False)
    assert "linux.devices[0]" in str(ei.value) and "not a valid device path" in str(ei.value)


def test_devices_in_userns_are_bind_mounted(env):
    devs = [Device(type="c", path="/dev/fuse", major=10, minor=229), Device(type="p", path="/dev/ff")]
    D.create_devices(env.root, devs, in_userns=True)
    ms = {os.path.basename(m.target_real): m for m in env.fake.mounts()}
    assert sorted(ms) == sorted(list(DEFAULTS) + ["fuse"])
    for name, m in ms.items():
        assert (m.source, m.fstype, m.flags, m.data) == (f"/dev/{name}", "", S.MS_BIND, None)
        assert m.target_real == p(env, f"dev/{name}")
        st_ = os.lstat(p(env, f"dev/{name}"))
        assert stat.S_ISREG(st_.st_mode) and st_.st_size == 0
    # a FIFO needs no privilege: it is still made with mknod
    assert [(c.args[1], c.args[2]) for c in env.fake.of("mknodat")] == [("ff", stat.S_IFIFO | 0o666)]


def test_devices_in_userns_do_not_hang_on_a_fifo(env):
    """A rootfs whose dev/null is a FIFO must not block the runtime forever (open O_WRONLY waits for a reader)."""
    os.makedirs(p(env, "dev"))
    fifo = p(env, "dev/null")
    os.mkfifo(fifo)
    outcome = []

    def work():
        try:
            D.create_devices(env.root, [], in_userns=True)
            outcome.append("ok")
        except Exception as e:  # noqa: BLE001 - any clean failure is acceptable, hanging is not
            outcome.append(e)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(1.5)
    hung = t.is_alive()
    if hung:  # release the blocked open so the thread can finish
        rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        t.join(3)
        os.close(rfd)
    assert not hung, "create_devices blocked opening a FIFO at /dev/null"
    assert outcome and (outcome[0] == "ok" or isinstance(outcome[0], OciError))


def test_symlinks(env):
    os.makedirs(p(env, "dev"))
    open(p(env, "dev/ptmx"), "w").close()
    D.create_symlinks(env.root)
    links = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
             "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx"}
    if os.path.exists("/proc/kcore"):
        links["core"] = "/proc/kcore"
    for name, target in links.items():
        assert os.readlink(p(env, f"dev/{name}")) == target
    D.create_symlinks(env.root)  # again: existing links are fine


def test_symlinks_through_dev_symlink_stay_inside(env):
    realdev = unique("realdev")  # not a host path: a broken resolution finds nothing there to unlink
    os.makedirs(p(env, realdev))
    os.symlink(f"/{realdev}", p(env, "dev"))
    D.create_symlinks(env.root)
    assert os.readlink(p(env, f"{realdev}/ptmx")) == "pts/ptmx"
    for c in env.fake.of("symlinkat"):
        assert c.real["dirfd"] == p(env, realdev)
    assert not os.path.lexists(f"/{realdev}")
    outside_untouched(env)


# ============================================================================ prepare_root / pivot
def test_prepare_root_default_and_explicit_propagation(env):
    R.prepare_root(env.fake, env.rootfs, None)
    ms = env.fake.mounts()
    assert (ms[0].source, ms[0].target, ms[0].fstype, ms[0].flags) == ("", "/", "", S.MS_SLAVE | S.MS_REC)
    assert (ms[-1].source, ms[-1].target, ms[-1].flags) == (env.rootfs, env.rootfs, S.MS_BIND | S.MS_REC)
    # the mount holding the rootfs (here the rootfs itself: the fake takes any target) is made a slave
    assert [(m.target, m.flags) for m in ms[1:-1]] == [(env.rootfs, S.MS_SLAVE)]
    fake = FakeSyscalls()
    R.prepare_root(fake, env.rootfs, "private")
    assert fake.mounts()[0].flags == S.MS_PRIVATE
    assert fake.mounts()[1].flags == S.MS_PRIVATE


@pytest.mark.parametrize("prop", ["slave", "rslave"])
def test_prepare_root_slave_keeps_parent_a_slave(prop):
    """rootfsPropagation (r)slave: the rootfs's parent mount becomes a slave, not private, so the container's
    root still receives the host's mount events (runc: rootfsParentMountPropagation)."""
    fake = FakeSyscalls()
    R.prepare_root(fake, "/no/such/rootfs", prop)
    ms = fake.mounts()
    assert ms[0].flags == R.PROPAGATION[prop]
    assert (ms[1].target, ms[1].flags) == ("/no/such/rootfs", S.MS_SLAVE)


def test_prepare_root_walks_up_to_the_mount_point():
    """EINVAL (not a mount point) moves the propagation change to the parent directory until one is a mount;
    any other error names the path."""
    fake = FakeSyscalls()
    fake.fail("mount", errno.EINVAL, when=lambda c: c.args[0] == "" and c.args[1] in ("/a/b/rootfs", "/a/b"))
    R.prepare_root(fake, "/a/b/rootfs", "runbindable")
    ok = [m for m in fake.mounts() if m.flags == S.MS_PRIVATE]
    assert [m.target for m in ok] == ["/a"]
    fake = FakeSyscalls()
    fake.fail("mount", errno.EPERM, when=lambda c: c.args[1] == "/a/b/rootfs" and c.args[3] == S.MS_SLAVE)
    with pytest.raises(OciError, match="cannot change the propagation of /a/b/rootfs"):
        R.prepare_root(fake, "/a/b/rootfs", None)


def test_prepare_root_error_message(env):
    env.fake.fail("mount", errno.EPERM, once=True)
    with pytest.raises(OciError) as ei:
        R.prepare_root(env.fake, env.rootfs, "shared")
    assert str(ei.value) == "linux.rootfsPropagation: cannot set shared on /: Operation not permitted"


def test_pivot_root_sequence(env, monkeypatch):
    monkeypatch.chdir(env.tmp)
    R.pivot(env.fake, env.rootfs)
    assert [(c.op, c.args) for c in env.fake.calls] == [
        ("pivot_root", (".", ".")),
        ("mount", ("", ".", "", S.MS_SLAVE | S.MS_REC, None)),
        ("umount2", (".", S.MNT_DETACH)),
    ]


def test_pivot_no_pivot_moves_and_chroots(env, monkeypatch):
    monkeypatch.chdir(env.tmp)
    R.pivot(env.fake, env.rootfs, no_pivot=True)
    calls = [(c.op, c.args) for c in env.fake.calls]
    assert calls[-2:] == [("mount", (env.rootfs, "/", "", S.MS_MOVE, None)), ("chroot", (".",))]
    # before the move: every full proc/sysfs mount outside the rootfs made a slave, then detached (runc's
    # msMoveRoot: while one stays reachable, the container may mount a fresh procfs)
    with open("/proc/self/mountinfo") as f:
        full = [ln.split()[4] for ln in f if ln.split(" - ")[1].split()[0] in ("proc", "sysfs") and ln.split()[3] == "/"]
    assert full, "the host has no proc mount?"
    assert calls[:-2] == [c for mp in full for c in (("mount", ("", mp, "", S.MS_SLAVE | S.MS_REC, None)),
                                                     ("umount2", (mp, S.MNT_DETACH)))]


def test_pivot_failure_message(env, monkeypatch):
    monkeypatch.chdir(env.tmp)
    env.fake.fail("pivot_root", errno.EINVAL)
    with pytest.raises(OciError) as ei:
        R.pivot(env.fake, env.rootfs)
    assert str(ei.value).startswith(f"pivot_root {env.rootfs}: Invalid argument")


def test_remount_root_readonly(env):
    R.remount_root_readonly(env.fake)
    (m,) = env.fake.mounts()
    required = S.MS_BIND | S.MS_REMOUNT | S.MS_RDONLY
    assert m.target == "/" and m.flags & required == required and m.flags & ~(required | LOCKABLE) == 0


def test_needs_dev_setup():
    assert D.needs_dev_setup([Mount(destination="/dev", type="tmpfs", source="tmpfs")])
    assert not D.needs_dev_setup([Mount(destination="/dev/", type="bind", source="/dev")])
    assert not D.needs_dev_setup([Mount(destination="//dev", type="none", source="/dev", options=["rbind"])])
    assert D.needs_dev_setup([Mount(destination="/dev/shm", type="bind", source="/x", options=["bind"])])


def test_prepare_root_error_hints_at_a_root_that_is_no_mount_point(env):
    """In a chroot whose / is not a mount point, changing /'s propagation fails with EINVAL: say so."""
    env.fake.fail("mount", errno.EINVAL, once=True)
    with pytest.raises(OciError) as ei:
        R.prepare_root(env.fake, env.rootfs, None)
    assert str(ei.value) == ("linux.rootfsPropagation: cannot set rslave on /: Invalid argument (is / a mount "
                             "point? in a chroot, bind-mount its root onto itself)")
