"""The root filesystem is exactly what config.json says, seen from inside real containers (busybox).

Covers, beyond test_container_view.py and test_errors.py: every mount option of the runtime-spec/mount(8) table
(per-mount and superblock flags, propagation, recursive attributes, tmpcopyup, fs data, idmapped binds), the mount
types (devpts, mqueue, cgroup v1 with a cgroup namespace, cgroup2, overlay with bundle-relative dirs, a
passed-through fs), destinations made when missing, rootfsPropagation, the old root after pivot_root/--no-pivot,
linux.devices (also in a user namespace), /dev/console, masked/read-only paths of the rootfs, sysctls,
timeOffsets, mountLabel; a hostile rootfs (symlinks out, CVE-2021-30465 and CVE-2025-31133 patterns); failing
mounts; and the mountinfo shape against runc's for the same bundle.

runtime-tools validation cases these correspond to: mounts (flags, types, propagation, rbind, destinations,
failures, runc comparison), linux_devices (devices, userns binds, console), linux_masked_paths,
linux_readonly_paths, linux_rootfs_propagation, root_readonly_true (destinations under a read-only root),
linux_sysctl, linux_mount_label.

Host-side mounts a test needs (shared sources, submounts) are made under the test's bundle directory and undone
by the `hostmnt` fixture before the leak checker (conftest.host_snapshot) looks.
"""
import os
import stat
import subprocess
import threading

import pytest

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates real containers")]

import _rootfs_helpers as H  # noqa: E402  (tests/integration is on sys.path: see conftest)

SEP = H.SEP
MI = "cat /proc/self/mountinfo"
UIDMAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture
def hostmnt():
    """hostmnt(target, *mount_args) mounts on the host; everything is unmounted at teardown (before the leak
    check, which would otherwise report it)."""
    m = H.HostMounts()
    yield m
    m.undo()


@pytest.fixture
def ctr(oci, bundle, cid):
    """ctr(script, prepare=None, edit=None, flags=(), rc=0, **top) -> Result of `ocirun run` of `sh -c script`.

    prepare(b, cfg) runs after the bundle exists (files, host dirs) and may change cfg (saved afterwards).
    ctr.last is the bundle directory."""
    def run(script, prepare=None, edit=None, flags=(), rc=0, **top):
        b = bundle(["sh", "-c", script], edit=edit, **top)
        if prepare is not None:
            cfg = bundle.config(b)
            prepare(b, cfg)
            bundle.save(b, cfg)
        run.last = b
        res = oci("run", *flags, "--bundle", b, cid())
        if rc is not None:
            assert res.returncode == rc, str(res)
        return res
    return run


def _mount(dest, typ, source, options=(), **extra):
    m = {"destination": dest, "type": typ, "source": source, "options": list(options)}
    m.update(extra)
    return m


def _drop_ns(cfg, *types):
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] not in types]


def _userns(cfg):
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = UIDMAP
    cfg["linux"]["gidMappings"] = UIDMAP
    cfg["linux"].pop("resources", None)


def _create_fails_one_line(oci, b, cid):
    """create must fail with exactly one line of error, leave no state (the leak checker checks the host)."""
    res = oci("create", "--bundle", b, cid)
    assert res.returncode != 0, str(res)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, "expected one line:\n" + res.stderr
    assert oci.state(cid) is None
    return lines[0]


# ------------------------------------------------------------------------------------------------ option table
# option -> (per-mount options present, per-mount options absent, superblock options present (tmpfs only))
FLAG_TABLE = {
    "ro": ({"ro"}, {"rw"}, {"rw"}),  # a read-only tmpfs: the mount is ro, its superblock rw (made ro last, as runc)
    "rw": ({"rw"}, {"ro"}, {"rw"}),
    "nosuid": ({"nosuid"}, set(), set()),
    "suid": (set(), {"nosuid"}, set()),
    "nodev": ({"nodev"}, set(), set()),
    "dev": (set(), {"nodev"}, set()),
    "noexec": ({"noexec"}, set(), set()),
    "exec": (set(), {"noexec"}, set()),
    "sync": (set(), set(), {"sync"}),
    "async": (set(), set(), set()),
    "dirsync": (set(), set(), {"dirsync"}),
    "lazytime": (set(), set(), {"lazytime"}),
    "noatime": ({"noatime"}, {"relatime"}, set()),
    "atime": ({"relatime"}, {"noatime"}, set()),           # no atime flag: the kernel's default, relatime
    "nodiratime": ({"nodiratime"}, set(), set()),
    "diratime": (set(), {"nodiratime"}, set()),
    "relatime": ({"relatime"}, {"noatime"}, set()),
    "norelatime": ({"relatime"}, {"noatime"}, set()),      # ditto: only strictatime turns relatime off
    "strictatime": (set(), {"relatime", "noatime"}, set()),
    "nosymfollow": ({"nosymfollow"}, set(), set()),
    "symfollow": (set(), {"nosymfollow"}, set()),
    # combinations: the later option wins
    "noatime,atime": ({"relatime"}, {"noatime"}, set()),
    "strictatime,nostrictatime": ({"relatime"}, set(), set()),
    "nosuid,suid": (set(), {"nosuid"}, set()),
    "ro,rw": ({"rw"}, {"ro"}, set()),
    "sync,async": (set(), set(), set()),
    "bind,remount,ro,nosuid": ({"ro", "nosuid"}, set(), set()),  # bind only: remount applies the flags
}
SUPER_ONLY = {"sync", "async", "dirsync", "lazytime"}


@pytest.mark.parametrize("opt", list(FLAG_TABLE))
def test_mount_option_flags(ctr, opt):
    """Each option on a fresh tmpfs (/t) and on a bind mount (/b): the mountinfo option sets inside."""
    options = opt.split(",")
    want, absent, want_super = FLAG_TABLE[opt]
    bind_only = "remount" in options

    def prepare(b, cfg):
        os.makedirs(os.path.join(b, "src"))
        if not bind_only:
            cfg["mounts"].append(_mount("/t", "tmpfs", "tmpfs", options))
        cfg["mounts"].append(_mount("/b", "bind", os.path.join(b, "src"),
                                    ["bind"] + [o for o in options if o != "bind"]))
    mi = H.by_mp(ctr(MI, prepare=prepare).stdout)
    targets = ["/b"] if bind_only else ["/t", "/b"]
    for t in targets:
        m = mi[t]
        if t == "/b" and set(options) <= SUPER_ONLY:
            # a superblock flag cannot change through a bind mount: the source's flags stay
            continue
        assert want <= m.opts, (opt, m)
        assert not (absent & m.opts), (opt, m)
    if not bind_only:
        t = mi["/t"]
        assert t.fstype == "tmpfs"
        assert want_super <= t.sopts, (opt, t)
        if opt in ("async", "sync,async"):
            assert "sync" not in t.sopts, t
    # the bind's superblock is the host's (no sync/dirsync/lazytime leaked onto it)
    assert not ({"sync", "dirsync"} & mi["/b"].sopts), mi["/b"]


def test_mount_flags_take_effect(ctr):
    """ro refuses writes, noexec refuses exec, nodev refuses device opens, nosymfollow refuses symlinks."""
    script = ("touch /ro/x 2>/dev/null; echo ro=$?; /ne/busybox true 2>/dev/null; echo noexec=$?; "
              "/ex/busybox true; echo exec=$?; cat /nd/null 2>/dev/null; echo nodev=$?; cat /dv/null; echo dev=$?; "
              "cat /ns/link 2>/dev/null; echo nosymfollow=$?; cat /sf/link; echo symfollow=$?")

    def prepare(b, cfg):
        src = os.path.join(b, "src")
        os.makedirs(src)
        import shutil
        shutil.copy2(os.path.join(b, "rootfs", "bin", "busybox"), os.path.join(src, "busybox"))
        os.mknod(os.path.join(src, "null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        H.write(os.path.join(src, "target"), "t\n")
        os.symlink("target", os.path.join(src, "link"))
        for dest, opts in (("/ro", ["ro"]), ("/ne", ["noexec"]), ("/ex", ["exec"]), ("/nd", ["nodev"]),
                           ("/dv", ["dev"]), ("/ns", ["nosymfollow"]), ("/sf", ["symfollow"])):
            cfg["mounts"].append(_mount(dest, "bind", src, ["bind"] + opts))
    out = ctr(script, prepare=prepare, rc=None).stdout.split()
    got = dict(x.split("=") for x in out if "=" in x)
    assert got == {"ro": "1", "noexec": "126", "exec": "0", "nodev": "1", "dev": "0", "nosymfollow": "1",
                   "symfollow": "0"}, out


def test_mand_option(oci, bundle, cid):
    """mand: kernels without mandatory locking may refuse it: then create fails naming the mount; if accepted,
    the superblock shows it."""
    b = bundle(["sh", "-c", MI])
    cfg = bundle.config(b)
    cfg["mounts"].append(_mount("/m", "tmpfs", "tmpfs", ["mand"]))
    n = len(cfg["mounts"]) - 1
    bundle.save(b, cfg)
    res = oci("run", "--bundle", b, cid())
    if res.returncode == 0:
        assert "mand" in H.by_mp(res.stdout)["/m"].sopts
    else:
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and f"mounts[{n}] /m" in lines[0], str(res)


def test_bind_honours_explicit_clearing_options(ctr, hostmnt, bundle):
    """runc's bind-flag semantics (runc >= 1.2, mounts_sshfs.bats): a bind without flag options keeps the
    source's flags (nosuid,nodev,noexec,noatime); once its options name any flag, the mount gets the flags named
    and no others, except the atime mode, which the kernel keeps unless one is named (so "atime" alone does not
    clear noatime: runc's FIXME, as mount(8))."""
    src = hostmnt.tmpfs(os.path.join(bundle.base, "flagsrc"), "nosuid,nodev,noexec,noatime")
    rosrc = hostmnt.tmpfs(os.path.join(bundle.base, "rosrc"))
    hostmnt.run("-o", "remount,bind,ro", rosrc)

    def prepare(b, cfg):
        cfg["mounts"] += [
            _mount("/keep", "bind", src, ["bind"]),
            _mount("/ro", "bind", src, ["bind", "ro"]),
            _mount("/clear", "bind", src, ["bind", "suid", "dev", "exec"]),
            _mount("/roclear", "bind", src, ["bind", "ro", "suid", "atime"]),
            _mount("/relatime", "bind", src, ["bind", "relatime"]),
            _mount("/rw", "bind", rosrc, ["bind", "rw"]),
        ]
    mi = H.by_mp(ctr(MI, prepare=prepare).stdout)
    lockable = {"nosuid", "nodev", "noexec"}
    problems = []
    if not {"nosuid", "nodev", "noexec", "noatime"} <= mi["/keep"].opts:
        problems.append(f"bind of a nosuid,nodev,noexec,noatime source keeps its flags: {mi['/keep']}")
    if not {"ro", "noatime"} <= mi["/ro"].opts or lockable & mi["/ro"].opts:
        problems.append(f"bind,ro: want ro (noatime kept) and none of {lockable}: {mi['/ro']}")
    if lockable & mi["/clear"].opts or "noatime" not in mi["/clear"].opts:
        problems.append(f"bind,suid,dev,exec: want none of {lockable}, noatime kept: {mi['/clear']}")
    if not {"ro", "noatime"} <= mi["/roclear"].opts or lockable & mi["/roclear"].opts:
        problems.append(f"bind,ro,suid,atime: want ro with noatime kept, none of {lockable}: {mi['/roclear']}")
    if "relatime" not in mi["/relatime"].opts or ({"noatime"} | lockable) & mi["/relatime"].opts:
        problems.append(f"bind,relatime: want relatime only: {mi['/relatime']}")
    if "ro" in mi["/rw"].opts:
        problems.append(f"bind,rw of a read-only bind: {mi['/rw']}")
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------------------------------ propagation
@pytest.fixture
def shared_tree(hostmnt, bundle):
    """A host tmpfs made shared with a shared tmpfs submount at sub/ (file sub/inner); returns
    (top, sub, top_group, sub_group)."""
    top = hostmnt.tmpfs(os.path.join(bundle.base, "shtop"))
    hostmnt.run("--make-shared", top)
    H.write(os.path.join(top, "outer"), "outer\n")
    sub = hostmnt.tmpfs(os.path.join(top, "sub"))
    H.write(os.path.join(sub, "inner"), "inner\n")
    tg = H.host_mount_at(top).prop().get("shared")
    sg = H.host_mount_at(sub).prop().get("shared")
    assert tg and sg and tg != sg, (H.host_mount_at(top), H.host_mount_at(sub))
    return top, sub, tg, sg


# option -> (top's propagation kinds, sub's kinds); "M" = slave of the host's group
PROPAGATION = {
    None: ({"master"}, {"master"}),
    "private": (set(), {"master"}),
    "rprivate": (set(), set()),
    "shared": ({"shared", "master"}, {"master"}),
    "rshared": ({"shared", "master"}, {"shared", "master"}),
    "slave": ({"master"}, {"master"}),
    "rslave": ({"master"}, {"master"}),
    "unbindable": ({"unbindable"}, {"master"}),
    "runbindable": ({"unbindable"}, {"unbindable"}),
}


@pytest.mark.parametrize("prop", list(PROPAGATION))
def test_mount_propagation(ctr, shared_tree, prop):
    """rbind of a host shared tree: the propagation option on the top mount, and (r-forms) on the submount.
    The container's / is rslave of the host, so without an option the copies are slaves of the host's groups."""
    top, sub, tg, sg = shared_tree

    def prepare(b, cfg):
        cfg["mounts"].append(_mount("/p", "bind", top, ["rbind"] + ([prop] if prop else [])))
    mi = H.by_mp(ctr(MI, prepare=prepare).stdout)
    want_top, want_sub = PROPAGATION[prop]
    for mp, want, group in (("/p", want_top, tg), ("/p/sub", want_sub, sg)):
        p = mi[mp].prop()
        assert set(p) == want, (prop, mi[mp])
        if "master" in p:
            assert p["master"] == group, (prop, mp, mi[mp], group)
        if "shared" in p:
            assert p["shared"] not in (tg, sg), "a container mount joined the host's peer group"


def test_bind_vs_rbind_submount(ctr, shared_tree):
    top, sub, _, _ = shared_tree

    def prepare(b, cfg):
        cfg["mounts"] += [_mount("/nb", "bind", top, ["bind"]), _mount("/rb", "bind", top, ["rbind"])]
    res = ctr(f"cat /nb/outer /rb/outer /rb/sub/inner; ls -A /nb/sub | wc -l; echo {SEP}; {MI}", prepare=prepare)
    out, mi = H.sections(res.stdout)
    assert out.split() == ["outer", "outer", "inner", "0"], out
    mi = H.by_mp(mi)
    assert "/rb/sub" in mi and "/nb/sub" not in mi, sorted(mi)


RECURSIVE = {  # option -> per-mount flag expected on the top and on the submount
    "rro": "ro", "rnosuid": "nosuid", "rnodev": "nodev", "rnoexec": "noexec", "rnoatime": "noatime",
    "rnosymfollow": "nosymfollow", "rnodiratime": "nodiratime",
}


@pytest.mark.parametrize("opt", list(RECURSIVE) + ["rrw", "ro-not-recursive"])
def test_recursive_mount_attributes(ctr, hostmnt, bundle, opt):
    top = os.path.join(bundle.base, "rtop")
    os.makedirs(top)
    sub = hostmnt.tmpfs(os.path.join(top, "sub"))
    if opt == "rrw":
        hostmnt.run("-o", "remount,bind,ro", sub)
    options = ["rbind", "ro"] if opt == "ro-not-recursive" else ["rbind", opt]

    def prepare(b, cfg):
        cfg["mounts"].append(_mount("/r", "bind", top, options))
    mi = H.by_mp(ctr(MI, prepare=prepare).stdout)
    t, s = mi["/r"], mi["/r/sub"]
    if opt == "rrw":
        assert "rw" in t.opts and "rw" in s.opts, (t, s)
    elif opt == "ro-not-recursive":
        assert "ro" in t.opts and "rw" in s.opts, (t, s)
    else:
        flag = RECURSIVE[opt]
        assert flag in t.opts and flag in s.opts, (opt, t, s)


# ------------------------------------------------------------------------------------------------ tmpcopyup, data
def test_tmpcopyup_keeps_etc(ctr):
    """A tmpfs over /etc with tmpcopyup: /etc's files (content, owner, mode, symlinks, subdirs) are copied up,
    writes go to the tmpfs, not to the rootfs."""
    script = (f"{MI}; echo {SEP}; cd /etc && for f in passwd group sub/deep; do stat -c '%n %a %u %g' $f; done; "
              "readlink pw-link; stat -c '%a %u %g' /etc /etc/sub; cat sub/deep; "
              "echo new > /etc/new-file && echo written")

    def prepare(b, cfg):
        etc = os.path.join(b, "rootfs", "etc")
        os.chmod(etc, 0o751)
        os.chown(os.path.join(etc, "group"), 1000, 1001)
        os.chmod(os.path.join(etc, "group"), 0o640)
        os.symlink("passwd", os.path.join(etc, "pw-link"))
        # readable by others: container root has no CAP_DAC_OVERRIDE, and the copy must keep owner 7:8
        H.write(os.path.join(etc, "sub", "deep"), "deep\n", mode=0o604, owner=(7, 8))
        os.chmod(os.path.join(etc, "sub"), 0o710)
        cfg["mounts"].append(_mount("/etc", "tmpfs", "tmpfs", ["tmpcopyup", "size=1m"]))
    res = ctr(script, prepare=prepare, root={"path": "rootfs", "readonly": False})
    mi, out = H.sections(res.stdout)
    assert H.by_mp(mi)["/etc"].fstype == "tmpfs"
    assert out.splitlines() == ["passwd 644 0 0", "group 640 1000 1001", "sub/deep 604 7 8", "passwd",
                                "751 0 0", "710 0 0", "deep", "written"], out
    assert not os.path.exists(os.path.join(ctr.last, "rootfs", "etc", "new-file"))


def test_fs_data_options_reach_the_filesystem(ctr):
    """Options that are not flags are the filesystem's data: tmpfs size/mode/uid/gid/nr_inodes."""
    def prepare(b, cfg):
        cfg["mounts"].append(_mount("/t", "tmpfs", "tmpfs",
                                    ["nodev", "size=1m", "mode=700", "uid=1234", "gid=5678", "nr_inodes=100"]))
    res = ctr(f"stat -c '%a %u %g' /t; busybox df -k /t | tail -n 1; echo {SEP}; {MI}", prepare=prepare)
    out, mi = H.sections(res.stdout)
    lines = out.splitlines()
    assert lines[0] == "700 1234 5678", out
    assert lines[1].split()[1] == "1024", out  # 1K-blocks
    t = H.by_mp(mi)["/t"]
    assert {"size=1024k", "mode=700", "uid=1234", "gid=5678", "nr_inodes=100"} <= t.sopts, t
    assert "nodev" in t.opts


# ------------------------------------------------------------------------------------------------ idmapped mounts
def _owned_tree(base):
    d = os.path.join(base, "idsrc")
    H.write(os.path.join(d, "by-root"), "r\n", owner=(0, 0))
    H.write(os.path.join(d, "by-1000"), "u\n", owner=(1000, 1001))
    os.chmod(d, 0o755)
    return d


def test_idmapped_bind_mount(ctr, bundle):
    """mount uidMappings/gidMappings (no user namespace): a file owned by 0 on the host appears owned by the
    mapped id (hostID + offset)."""
    src = _owned_tree(bundle.base)

    def prepare(b, cfg):
        cfg["mounts"] += [_mount("/id", "bind", src, ["bind", "idmap"], uidMappings=UIDMAP,
                                 gidMappings=[{"containerID": 0, "hostID": 200000, "size": 65536}]),
                          _mount("/plain", "bind", src, ["bind"])]
    res = ctr("stat -c '%n %u %g' /id/by-root /id/by-1000 /plain/by-root /plain/by-1000", prepare=prepare)
    assert res.stdout.splitlines() == ["/id/by-root 100000 200000", "/id/by-1000 101000 201001",
                                       "/plain/by-root 0 0", "/plain/by-1000 1000 1001"], res.stdout


def test_ridmap_is_recursive(ctr, hostmnt, bundle):
    src = _owned_tree(bundle.base)
    sub = hostmnt.tmpfs(os.path.join(src, "sub"))
    H.write(os.path.join(sub, "in-sub"), "s\n", owner=(0, 0))

    def prepare(b, cfg):
        cfg["mounts"].append(_mount("/id", "bind", src, ["rbind", "ridmap"], uidMappings=UIDMAP,
                                    gidMappings=UIDMAP))
    res = ctr("stat -c '%n %u %g' /id/by-root /id/sub/in-sub", prepare=prepare)
    assert res.stdout.splitlines() == ["/id/by-root 100000 100000", "/id/sub/in-sub 100000 100000"], res.stdout


def test_idmap_without_mappings_uses_the_container_userns(ctr, bundle):
    """In a container with a user namespace, `idmap` without mount mappings uses linux.uid/gidMappings: the host's
    root-owned file is root's inside (without idmap it is the overflow id), and what root creates through it is
    owned by the host's root."""
    src = _owned_tree(bundle.base)
    os.chmod(src, 0o777)

    def prepare(b, cfg):
        _userns(cfg)
        for d in ("id", "plain"):
            os.makedirs(os.path.join(b, "rootfs", d))
        cfg["process"]["capabilities"] = {k: ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER"]
                                          for k in ("bounding", "effective", "permitted")}
        cfg["mounts"] += [_mount("/id", "bind", src, ["bind", "idmap"]), _mount("/plain", "bind", src, ["bind"])]
    res = ctr("stat -c '%n %u %g' /id/by-root /id/by-1000 /plain/by-root; touch /id/made-inside; echo rc=$?",
              prepare=prepare)
    assert res.stdout.splitlines() == ["/id/by-root 0 0", "/id/by-1000 1000 1001", "/plain/by-root 65534 65534",
                                       "rc=0"], str(res)
    st = os.stat(os.path.join(src, "made-inside"))
    assert (st.st_uid, st.st_gid) == (0, 0)


@pytest.mark.parametrize("case", ["procfs", "not-a-bind"])
def test_idmap_refused_clearly(oci, bundle, cid, case):
    b = bundle(["true"])
    cfg = bundle.config(b)
    if case == "procfs":
        m = _mount("/idproc", "bind", "/proc", ["rbind", "idmap"], uidMappings=UIDMAP, gidMappings=UIDMAP)
    else:
        m = _mount("/idtmp", "tmpfs", "tmpfs", ["idmap"], uidMappings=UIDMAP, gidMappings=UIDMAP)
    cfg["mounts"].append(m)
    n = len(cfg["mounts"]) - 1
    bundle.save(b, cfg)
    line = _create_fails_one_line(oci, b, cid())
    assert f"mounts[{n}] {m['destination']}" in line, line
    assert ("idmapped" in line or "ID mapping" in line), line


# ------------------------------------------------------------------------------------------------ types
def test_devpts_newinstance_and_ptmxmode(ctr):
    def edit(cfg):
        for m in cfg["mounts"]:
            if m["destination"] == "/dev/pts":
                m["options"] = ["nosuid", "noexec", "newinstance", "ptmxmode=0640", "mode=0620", "gid=5"]
    res = ctr(f"stat -c '%a %t %T' /dev/pts/ptmx; ls /dev/pts; echo {SEP}; {MI}", edit=edit)
    out, mi = H.sections(res.stdout)
    lines = out.split()
    assert lines[0] == "640" and (int(lines[1], 16), int(lines[2], 16)) == (5, 2), out
    assert lines[3:] == ["ptmx"], "a new devpts instance has no ptys of the host: " + out
    pts = H.by_mp(mi)["/dev/pts"]
    assert pts.fstype == "devpts" and "ptmxmode=640" in pts.sopts, pts
    host_pts = H.host_mount_at("/dev/pts")
    assert pts.dev != host_pts.dev, "the host's devpts instance was reused"


def test_mqueue_sysfs_ramfs(ctr):
    """mqueue (a second instance too), sysfs read-only, and a filesystem type the runtime has no special case for
    (ramfs) is passed to mount(2) as is."""
    def prepare(b, cfg):
        cfg["mounts"] += [_mount("/mq2", "mqueue", "mqueue", ["nosuid"]),
                          _mount("/ram", "ramfs", "ramfs", ["nodev", "mode=711"])]
    res = ctr(f"touch /sys/x 2>/dev/null; echo sys=$?; echo hi > /ram/f && cat /ram/f; stat -c %a /ram; "
              f"echo {SEP}; {MI}", prepare=prepare)
    out, mi = H.sections(res.stdout)
    assert out.split() == ["sys=1", "hi", "711"], out
    mi = H.by_mp(mi)
    assert mi["/dev/mqueue"].fstype == "mqueue" and mi["/mq2"].fstype == "mqueue"
    assert "nosuid" in mi["/mq2"].opts
    assert mi["/sys"].fstype == "sysfs" and "ro" in mi["/sys"].opts
    assert mi["/ram"].fstype == "ramfs" and "nodev" in mi["/ram"].opts and "mode=711" in mi["/ram"].sopts


def _v1_controllers():
    with open("/proc/self/mountinfo") as f:
        return [m.mp for m in H.parse(f.read()) if m.fstype == "cgroup" and m.mp.startswith("/sys/fs/cgroup/")]


def _with_cgroupns(cfg):
    """The default spec has a cgroup namespace only on cgroup v2 hosts (as runc spec): these tests want one."""
    if not any(n["type"] == "cgroup" for n in cfg["linux"]["namespaces"]):
        cfg["linux"]["namespaces"].append({"type": "cgroup"})


def test_cgroup_v1_mount_with_cgroup_namespace(ctr):
    if "/sys/fs/cgroup/memory" not in _v1_controllers():
        pytest.skip("no cgroup v1 memory hierarchy on this host")
    limit = 64 * 1024 * 1024

    def edit(cfg):
        cfg["linux"]["resources"]["memory"] = {"limit": limit}
        _with_cgroupns(cfg)
    res = ctr(f"cat /proc/self/cgroup; echo {SEP}; cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "
              f"cat /sys/fs/cgroup/memory/cgroup.procs; ls /sys/fs/cgroup; echo {SEP}; {MI}", edit=edit)
    cg, out, mi = H.sections(res.stdout)
    for line in cg.splitlines():
        assert line.endswith(":/"), "with a cgroup namespace the container's cgroup is its root: " + cg
    lines = out.split()
    assert int(lines[0]) == limit, out
    assert "1" in lines[1:], "the container's init is not in the mounted memory cgroup: " + out
    mi = H.by_mp(mi)
    for c in _v1_controllers():
        name = os.path.basename(c)
        if name == "unified":
            continue
        assert name in lines, (name, out)
        assert mi[c].fstype == "cgroup" and "ro" in mi[c].opts, mi[c]


def test_cgroup2_mount(ctr):
    if not any(m.fstype == "cgroup2" for m in H.host_mounts()):
        pytest.skip("no cgroup2 hierarchy mounted on this host")

    def prepare(b, cfg):
        _with_cgroupns(cfg)
        cfg["mounts"].append(_mount("/cg2", "cgroup2", "cgroup2", ["nosuid", "nodev", "noexec"]))
    res = ctr(f"cat /cg2/cgroup.procs; echo {SEP}; {MI}", prepare=prepare)
    procs, mi = H.sections(res.stdout)
    m = H.by_mp(mi)["/cg2"]
    assert m.fstype == "cgroup2" and m.root == "/" and {"nosuid", "nodev", "noexec"} <= m.opts, m
    assert "1" in procs.split(), "the cgroup2 mount's root is not the container's own cgroup: " + procs


def test_overlay_with_bundle_relative_dirs(ctr):
    def prepare(b, cfg):
        H.write(os.path.join(b, "lower", "from-lower"), "lower\n")
        os.makedirs(os.path.join(b, "upper"))
        os.makedirs(os.path.join(b, "work"))
        cfg["mounts"].append(_mount("/ov", "overlay", "overlay",
                                    ["lowerdir=lower", "upperdir=upper", "workdir=work"]))
    res = ctr(f"cat /ov/from-lower; echo up > /ov/written; echo {SEP}; {MI}", prepare=prepare)
    out, mi = H.sections(res.stdout)
    assert out == "lower\n"
    b = ctr.last
    m = H.by_mp(mi)["/ov"]
    assert m.fstype == "overlay" and f"lowerdir={b}/lower" in m.sopts, m
    with open(os.path.join(b, "upper", "written")) as f:
        assert f.read() == "up\n"
    assert not os.path.exists(os.path.join(b, "lower", "written"))


# ------------------------------------------------------------------------------------------------ destinations
def test_destinations_created_under_readonly_root(ctr):
    """Missing destinations are made in the rootfs (nested dirs; an empty file for a file source), even with
    root.readonly; a file is bound onto an existing file."""
    script = (f"cat /x/y/file.txt /etc/hostname; ls -A /a/b/c | wc -l; touch /a/b/c/ok && echo tmpfs-writable; "
              f"touch /rootfile 2>/dev/null || echo root-ro; echo {SEP}; {MI}")

    def prepare(b, cfg):
        H.write(os.path.join(b, "payload"), "payload\n")
        H.write(os.path.join(b, "myhost"), "myhost\n")
        cfg["mounts"] += [_mount("/a/b/c", "tmpfs", "tmpfs", ["size=1m"]),
                          _mount("/x/y/file.txt", "bind", os.path.join(b, "payload"), ["bind", "ro"]),
                          _mount("/etc/hostname", "bind", os.path.join(b, "myhost"), ["bind"])]
    res = ctr(script, prepare=prepare, root={"path": "rootfs", "readonly": True})
    out, mi = H.sections(res.stdout)
    assert out.split() == ["payload", "myhost", "0", "tmpfs-writable", "root-ro"], out
    mi = H.by_mp(mi)
    assert {"/a/b/c", "/x/y/file.txt", "/etc/hostname"} <= set(mi)
    assert "ro" in mi["/"].opts and "ro" in mi["/x/y/file.txt"].opts
    rootfs = os.path.join(ctr.last, "rootfs")
    assert os.path.isdir(os.path.join(rootfs, "a", "b", "c"))
    assert os.path.isfile(os.path.join(rootfs, "x", "y", "file.txt"))
    assert os.path.getsize(os.path.join(rootfs, "x", "y", "file.txt")) == 0
    with open(os.path.join(rootfs, "etc", "hostname")) as f:
        assert f.read() == "ocirun\n"


# ------------------------------------------------------------------------------------------------ rootfs propagation
# value -> propagation kinds of the container's "/" when the rootfs lives on a host shared mount
# (the schema allows only these four; the r-forms are for mount options)
# shared: "master" (still receiving the host's events) is allowed, not required
ROOT_PROPAGATION = {"private": set(), "slave": {"master"}, "shared": {"shared"}, "unbindable": {"unbindable"}}


@pytest.fixture
def shared_bundle(bundle, hostmnt):
    """A bundle whose directory is a shared bind mount on the host; returns (bundle dir, host peer group)."""
    def make(args, **kw):
        b = bundle(args, **kw)
        hostmnt(b, "--bind", b)
        hostmnt.run("--make-shared", b)
        return b, H.host_mount_at(b).prop()["shared"]
    return make


@pytest.mark.parametrize("value", list(ROOT_PROPAGATION))
def test_rootfs_propagation(oci, cid, shared_bundle, value):
    def edit(cfg):
        cfg["linux"]["rootfsPropagation"] = value
    b, group = shared_bundle(["sh", "-c", MI], edit=edit)
    res = oci("run", "--bundle", b, cid())
    assert res.returncode == 0, str(res)
    root = H.by_mp(res.stdout)["/"]
    p = root.prop()
    kinds = set(p) - ({"master"} if value == "shared" else set())
    assert kinds == ROOT_PROPAGATION[value], (value, root)
    if "master" in p:
        assert p["master"] == group, (value, root, group)
    if "shared" in p:
        assert p["shared"] != group, "the container's / joined the host's peer group"
    # nothing the container mounted came back to the host
    assert [m.mp for m in H.host_mounts() if m.mp.startswith(b + "/")] == []


@pytest.mark.parametrize("value,sees", [("slave", True), ("private", False)])
def test_rootfs_propagation_host_mount_later(oci, cid, shared_bundle, hostmnt, wait_for, value, sees):
    """With slave the container receives a mount the host makes later under its rootfs; with private not."""
    def edit(cfg):
        cfg["linux"]["rootfsPropagation"] = value
    b, _ = shared_bundle(["sleep", "30"], edit=edit)
    os.makedirs(os.path.join(b, "rootfs", "mnt", "late"))
    c = cid()
    assert oci("run", "-d", "--bundle", b, c).returncode == 0
    try:
        late = hostmnt.tmpfs(os.path.join(b, "rootfs", "mnt", "late"))
        H.write(os.path.join(late, "marker"), "late\n")
        res = oci("exec", c, "sh", "-c", "cat /mnt/late/marker 2>/dev/null; grep -c ' /mnt/late ' "
                  "/proc/self/mountinfo")
        assert res.stdout.split()[-1] == ("1" if sees else "0"), (value, str(res))
        assert ("late" in res.stdout.split()) == sees
    finally:
        oci("delete", "--force", c)


# ------------------------------------------------------------------------------------------------ the old root
def _expected_mount_points(cfg, controllers):
    want = {"/"} | {"/" + m["destination"].strip("/") for m in cfg["mounts"]}
    want |= set(cfg["linux"].get("maskedPaths", ())) | set(cfg["linux"].get("readonlyPaths", ()))
    want |= set(controllers)
    return want


@pytest.mark.parametrize("pivot", [True, False], ids=["pivot_root", "no-pivot"])
def test_no_host_mount_visible_inside(oci, bundle, cid, pivot):
    """After pivot_root (old root detached) or MS_MOVE+chroot, the container's mountinfo holds only the container's
    mounts: its / and what config.json (with masked/read-only paths, cgroup hierarchies) asks for."""
    b = bundle(["sh", "-c", f"{MI}; echo {SEP}; cat /proc/1/mountinfo"])
    res = oci("run", *(() if pivot else ("--no-pivot",)), "--bundle", b, cid())
    assert res.returncode == 0, str(res)
    want = _expected_mount_points(bundle.config(b), _v1_controllers())
    rootfs = H.fs_root_of(bundle.rootfs(b))
    for text in H.sections(res.stdout):
        mounts = H.parse(text)
        extra = [m for m in mounts if m.mp not in want]
        assert not extra, f"mounts the config did not ask for: {extra}"
        assert len([m for m in mounts if m.mp == "/"]) == 1, [m for m in mounts if m.mp == "/"]
        assert H.by_mp(text)["/"].root == rootfs
        ids = {m.id for m in mounts}
        root_id = H.by_mp(text)["/"].id
        assert all(m.parent in ids for m in mounts if m.id != root_id), "a mount hangs off an invisible parent"


def test_pivot_root_detaches_old_root_in_the_namespace(oci, bundle, cid):
    """Seen from the host, in the container's mount namespace (nsenter -m lands at the namespace root): only
    the container's mounts exist there after pivot_root; none of the host's mounts is left behind."""
    b = bundle(["sleep", "30"])
    c = cid()
    assert oci("run", "-d", "--bundle", b, c).returncode == 0
    try:
        pid = oci.state(c)["pid"]
        r = subprocess.run(["nsenter", "-t", str(pid), "-m", "-p", "cat", "/proc/self/mountinfo"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        mounts = H.parse(r.stdout)
        want = _expected_mount_points(bundle.config(b), _v1_controllers())
        assert {m.mp for m in mounts} <= want, sorted({m.mp for m in mounts} - want)
        host_only = {m.mp for m in H.host_mounts()} - want
        assert host_only, "the check above would prove nothing"
    finally:
        oci("delete", "--force", c)


# ------------------------------------------------------------------------------------------------ devices
def _stat_dev(line):
    name, raw, ma, mi_, uid, gid = line.split()
    mode = int(raw, 16)
    return name, stat.S_IFMT(mode), stat.S_IMODE(mode), (int(ma, 16), int(mi_, 16)), int(uid), int(gid)


def test_linux_devices_all_types(ctr):
    devs = [{"type": "b", "path": "/dev/myblk", "major": 7, "minor": 200, "fileMode": 0o640, "uid": 10, "gid": 20},
            {"type": "u", "path": "/dev/unbuf", "major": 1, "minor": 3, "fileMode": 0o606, "uid": 0, "gid": 30},
            {"type": "c", "path": "/dev/sub/dir/mychr", "major": 1, "minor": 5, "fileMode": 0o444},
            {"type": "p", "path": "/dev/myfifo", "fileMode": 0o620, "uid": 40, "gid": 50}]

    def edit(cfg):
        cfg["linux"]["devices"] = devs
    res = ctr("for d in /dev/myblk /dev/unbuf /dev/sub/dir/mychr /dev/myfifo; do stat -c '%n %f %t %T %u %g' $d; "
              "done; echo x > /dev/unbuf && echo unbuf-writable; head -c 3 /dev/sub/dir/mychr | wc -c", edit=edit)
    lines = res.stdout.splitlines()
    got = [_stat_dev(ln) for ln in lines[:4]]
    assert got[0] == ("/dev/myblk", stat.S_IFBLK, 0o640, (7, 200), 10, 20), got[0]
    assert got[1] == ("/dev/unbuf", stat.S_IFCHR, 0o606, (1, 3), 0, 30), got[1]
    assert got[2] == ("/dev/sub/dir/mychr", stat.S_IFCHR, 0o444, (1, 5), 0, 0), got[2]
    assert got[3][:3] == ("/dev/myfifo", stat.S_IFIFO, 0o620) and got[3][4:] == (40, 50), got[3]
    assert lines[4:] == ["unbuf-writable", "3"], lines


def test_devices_in_user_namespace_are_host_binds(ctr):
    """In a user namespace mknod is not allowed: the default devices and linux.devices are bind mounts of the
    host's nodes, and they work."""
    if not os.path.exists("/dev/kmsg"):
        pytest.skip("no /dev/kmsg on the host")

    def edit(cfg):
        _userns(cfg)
        cfg["linux"]["devices"] = [{"type": "c", "path": "/dev/kmsg", "major": 1, "minor": 11}]
    res = ctr(f"echo x > /dev/null && head -c 2 /dev/zero | wc -c; stat -c '%t %T' /dev/kmsg /dev/null; "
              f"echo {SEP}; {MI}", edit=edit)
    out, mi = H.sections(res.stdout)
    assert out.split() == ["2", "1", "b", "1", "3"], (out, res.stderr)
    mi = H.by_mp(mi)
    host_dev = H.host_mount_at("/dev")
    for d in ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/kmsg"):
        assert d in mi, f"{d} is not a bind mount in the user namespace"
        assert mi[d].dev == host_dev.dev and mi[d].root == "/" + os.path.basename(d), mi[d]


def test_dev_console_with_console_socket(oci, bundle, cid, tmp_path):
    """process.terminal with --console-socket: the runtime sends the pty master over the socket, and inside
    /dev/console is that pty (a bind of /dev/pts/N of the container's devpts)."""
    def edit(cfg):
        cfg["process"]["terminal"] = True
    b = bundle(["sh", "-c", "stat -c '%t %T' /dev/console; tty; grep ' /dev/console ' /proc/self/mountinfo"],
               edit=edit)
    srv = H.ConsoleServer(str(tmp_path / "console.sock"))
    c = cid()
    try:
        res = oci("create", "--console-socket", srv.path, "--bundle", b, c)
        assert res.returncode == 0, str(res)
        master = srv.wait()
        assert master is not None, f"no pty master received ({srv.error})"
        assert os.isatty(master)
        assert oci("start", c).returncode == 0
        out = srv.read_all().replace("\r", "").splitlines()
        assert oci.wait_status(c, "stopped") is not None
    finally:
        srv.close()
        oci("delete", "--force", c)
    assert len(out) >= 3, out
    assert int(out[0].split()[0], 16) == 0x88, out  # major 136: a unix98 pty slave
    assert out[1].startswith("/dev/pts/"), out
    m = H.Mnt(out[2])
    assert m.mp == "/dev/console" and m.fstype == "devpts" and m.root == "/" + out[1].rsplit("/", 1)[1], m


# ------------------------------------------------------------------------------------------------ masked/readonly
def test_masked_and_readonly_paths_of_the_rootfs(ctr):
    script = ("stat -c '%n %f %t %T' /etc/secret; cat /etc/secret | wc -c; ls -A /var/secretdir | wc -l; "
              "touch /var/secretdir/x 2>/dev/null; echo masked-dir-write=$?; cat /var/rodir/f; "
              "touch /var/rodir/x 2>/dev/null; echo ro-write=$?; touch /var/rw-ok; echo root-write=$?; "
              f"echo {SEP}; {MI}")

    def prepare(b, cfg):
        r = os.path.join(b, "rootfs")
        H.write(os.path.join(r, "etc", "secret"), "top secret\n")
        H.write(os.path.join(r, "var", "secretdir", "file"), "hidden\n")
        H.write(os.path.join(r, "var", "rodir", "f"), "readable\n")
        cfg["root"]["readonly"] = False
        cfg["linux"]["maskedPaths"] = ["/etc/secret", "/var/secretdir", "/no/such/path"]
        cfg["linux"]["readonlyPaths"] = ["/var/rodir", "/no/such/ro"]
    out, mi = H.sections(ctr(script, prepare=prepare).stdout)
    lines = out.splitlines()
    name, fmt, ma, mi_ = lines[0].split()
    assert stat.S_ISCHR(int(fmt, 16)) and (int(ma, 16), int(mi_, 16)) == (1, 3), lines[0]
    assert lines[1:] == ["0", "0", "masked-dir-write=1", "readable", "ro-write=1", "root-write=0"], out
    mi = H.by_mp(mi)
    assert mi["/var/secretdir"].fstype == "tmpfs" and "ro" in mi["/var/secretdir"].opts
    assert "ro" in mi["/var/rodir"].opts and mi["/var/rodir"].root.endswith("/var/rodir")
    assert "/no/such/path" not in mi and "/no/such/ro" not in mi
    assert not os.path.exists(os.path.join(ctr.last, "rootfs", "no"))


# ------------------------------------------------------------------------------------------------ sysctl, time, label
def test_sysctls_of_owned_namespaces(ctr):
    keys = {"kernel.shmmax": "123456789", "kernel.msgmax": "4242", "fs.mqueue.queues_max": "77",
            "kernel.domainname": "rootfs.test"}
    before = {}
    for k in keys:
        with open("/proc/sys/" + k.replace(".", "/")) as f:
            before[k] = f.read()

    def edit(cfg):
        cfg["linux"]["sysctl"] = keys
    res = ctr("; ".join(f"cat /proc/sys/{k.replace('.', '/')}" for k in keys), edit=edit)
    assert res.stdout.split() == list(keys.values())
    for k, v in before.items():
        with open("/proc/sys/" + k.replace(".", "/")) as f:
            assert f.read() == v, f"{k} changed on the host"


def test_time_offsets_exact(ctr):
    if not os.path.exists("/proc/self/timens_offsets"):
        pytest.skip("no time namespaces in this kernel")

    def edit(cfg):
        cfg["linux"]["namespaces"].append({"type": "time"})
        cfg["linux"]["timeOffsets"] = {"monotonic": {"secs": 3600, "nanosecs": 5},
                                       "boottime": {"secs": -60, "nanosecs": 0}}
    res = ctr("cat /proc/self/timens_offsets", edit=edit)
    got = {ln.split()[0]: ln.split()[1:] for ln in res.stdout.splitlines()}
    assert got == {"monotonic": ["3600", "5"], "boottime": ["-60", "0"]}, res.stdout


def test_mount_label_without_selinux(oci, bundle, cid):
    if os.path.exists("/sys/fs/selinux/enforce"):
        pytest.skip("SELinux is enabled on this host")

    def edit(cfg):
        cfg["linux"]["mountLabel"] = "system_u:object_r:container_file_t:s0:c1,c2"
    line = _create_fails_one_line(oci, bundle(["true"], edit=edit), cid())
    assert "linux.mountLabel" in line and "SELinux is not enabled" in line, line


# ------------------------------------------------------------------------------------------------ hostile rootfs
def test_relative_symlink_out_of_rootfs(ctr, bundle):
    """rootfs/a -> ../../.. : destinations under /a land in the rootfs (the symlink resolves as if the rootfs
    were /), nothing appears in the directories the link points at on the host."""
    def prepare(b, cfg):
        os.symlink("../../..", os.path.join(b, "rootfs", "a"))
        H.write(os.path.join(b, "payload"), "payload\n")
        cfg["root"]["readonly"] = False
        cfg["mounts"] += [_mount("/a/evil-tmpfs", "tmpfs", "tmpfs", ["size=1m"]),
                          _mount("/a/evil-file", "bind", os.path.join(b, "payload"), ["bind"])]
    host_dir = os.path.dirname(bundle.base)  # where rootfs/a points on the host: /tmp
    before = set(os.listdir(host_dir))
    res = ctr(f"cat /evil-file; echo {SEP}; {MI}", prepare=prepare)
    out, mi = H.sections(res.stdout)
    assert out == "payload\n"
    assert {"/evil-tmpfs", "/evil-file"} <= set(H.by_mp(mi))
    assert not {"evil-tmpfs", "evil-file"} & set(os.listdir(host_dir))
    assert not {"evil-tmpfs", "evil-file"} & (set(os.listdir(host_dir)) - before)
    assert os.path.isdir(os.path.join(ctr.last, "rootfs", "evil-tmpfs"))


@pytest.mark.parametrize("name", ["dev", "proc"])
def test_rootfs_dev_or_proc_symlink_to_host(oci, bundle, cid, name):
    """rootfs/dev -> /dev (or proc -> /proc): the host's /dev (/proc) is never mounted over or written; either the
    container gets its own /dev (/proc) inside the rootfs or create fails naming the mount."""
    b = bundle(["sh", "-c", f"{MI}; ls /dev"])
    r = bundle.rootfs(b)
    os.rmdir(os.path.join(r, name))
    os.symlink("/" + name, os.path.join(r, name))

    def host_side():
        return {(m.id, m.mp) for m in H.host_mounts()
                if m.mp in ("/dev", "/proc") or m.mp.startswith(("/dev/", "/proc/"))}
    host_before = host_side()
    host_dev = set(os.listdir("/dev"))
    for _ in range(3):  # an early init failure races with the parent: every attempt must report it
        res = oci("run", "--bundle", b, cid())
        assert host_side() == host_before
        assert set(os.listdir("/dev")) == host_dev
        if res.returncode == 0:
            mi = H.by_mp(res.stdout)
            want = {"dev": "tmpfs", "proc": "proc"}[name]
            assert mi["/" + name].fstype == want, mi["/" + name]
            assert mi["/" + name].dev != H.host_mount_at("/" + name).dev
        else:
            lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
            assert len(lines) == 1 and "/" + name in lines[0], str(res)


def test_masked_path_symlink_to_host_file(ctr):
    """A masked path that is a symlink to /etc/shadow masks the rootfs's /etc/shadow, never the host's."""
    with open("/etc/shadow", "rb") as f:
        host_shadow = f.read()

    def prepare(b, cfg):
        r = os.path.join(b, "rootfs")
        H.write(os.path.join(r, "etc", "shadow"), "container shadow\n")
        os.symlink("/etc/shadow", os.path.join(r, "etc", "masked-link"))
        cfg["linux"]["maskedPaths"] = ["/etc/masked-link"]
    res = ctr(f"cat /etc/shadow | wc -c; stat -c %t:%T /etc/shadow; echo {SEP}; {MI}", prepare=prepare)
    out, mi = H.sections(res.stdout)
    assert out.split() == ["0", "1:3"], out
    assert "/etc/shadow" in H.by_mp(mi)
    with open("/etc/shadow", "rb") as f:
        assert f.read() == host_shadow
    assert H.host_mount_at("/etc/shadow") is None


def test_cwd_through_symlink_stays_in_rootfs(ctr, tmp_path):
    """process.cwd through rootfs/work -> <a host dir>: the host dir is never touched; the missing cwd is made
    inside the rootfs, or (runc 1.1 too) create refuses naming process.cwd."""
    host = tmp_path / "host-target"
    host.mkdir()

    def prepare(b, cfg):
        os.symlink(str(host), os.path.join(b, "rootfs", "work"))
        cfg["root"]["readonly"] = False
        cfg["process"]["cwd"] = "/work/deeper"
    res = ctr("pwd -P", prepare=prepare, rc=None)
    assert list(host.iterdir()) == []
    if res.returncode == 0:
        assert res.stdout.strip() == str(host) + "/deeper"
        assert os.path.isdir(os.path.join(ctr.last, "rootfs", str(host).lstrip("/"), "deeper"))
    else:
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "process.cwd" in lines[0], str(res)


def test_cve_2021_30465_destination_swapped_for_symlink(oci, bundle, cid, tmp_path, hostmnt):
    """A thread keeps swapping the mount destination rootfs/mnt/dst (a directory) with a symlink to a host
    directory while containers are created (pivot_root and --no-pivot, alternately). The host directory is a
    shared mount and the container's rootfsPropagation is shared, so the container's copy of it is a peer of
    the host's: a mount that landed on it in the container's namespace would show up on the host. None may;
    the host directory's content stays; inside, every mount is where the config (resolved in the rootfs) put it."""
    victim = hostmnt.tmpfs(str(tmp_path / "victim"))
    hostmnt.run("--make-shared", victim)
    H.write(os.path.join(victim, "keep"), "host\n")
    victim_id = H.host_mount_at(victim).id

    def edit(cfg):
        cfg["linux"]["rootfsPropagation"] = "shared"
        cfg["root"]["readonly"] = False
    b = bundle(["sleep", "30"], edit=edit)
    rootfs = os.path.realpath(bundle.rootfs(b))
    src = os.path.join(b, "vol")
    H.write(os.path.join(src, "from-volume"), "vol\n")
    mnt = os.path.join(rootfs, "mnt")
    os.makedirs(os.path.join(mnt, "dst"))
    os.symlink(victim, os.path.join(mnt, "alt"))
    os.makedirs(rootfs + victim)  # the link also resolves in the rootfs: the followed case is exercised
    cfg = bundle.config(b)
    cfg["mounts"] += [_mount("/mnt/dst", "bind", src, ["bind"]), _mount("/mnt/dst/t", "tmpfs", "tmpfs", ["size=1m"])]
    bundle.save(b, cfg)
    allowed = _expected_mount_points(cfg, _v1_controllers())
    for d in ("/mnt/dst", "/mnt/alt", victim):  # where the renamed directory or the followed link may put them
        allowed |= {d, d + "/t"}
    stop = threading.Event()
    swaps = [0]

    def swapper():
        while not stop.is_set():
            try:
                H.exchange(os.path.join(mnt, "dst"), os.path.join(mnt, "alt"))
                swaps[0] += 1
            except OSError:
                pass
    t = threading.Thread(target=swapper, daemon=True)
    t.start()
    on_host, misplaced, created = [], [], 0
    try:
        for i in range(24):
            c = cid()
            res = oci("run", "-d", *(("--no-pivot",) if i % 2 else ()), "--bundle", b, c)
            try:
                on_host += [(i, m) for m in H.host_mounts()
                            if m.mp.startswith(victim + "/") or (m.mp == victim and m.id != victim_id)]
                if res.returncode == 0:
                    created += 1
                    with open(f"/proc/{oci.state(c)['pid']}/mountinfo") as f:
                        misplaced += [(i, m) for m in H.parse(f.read()) if m.mp not in allowed]
            finally:
                oci("delete", "--force", c)
    finally:
        stop.set()
        t.join()
    assert swaps[0] > 100, "the swap thread did not run"
    assert not on_host, f"mounts landed on the host directory: {on_host}"
    assert not misplaced, f"mounts inside the container at places the config does not name: {misplaced}"
    assert sorted(os.listdir(victim)) == ["keep"]
    with open(os.path.join(victim, "keep")) as f:
        assert f.read() == "host\n"
    assert created > 0, "no container was created at all while racing (cannot judge)"


@pytest.mark.parametrize("kind", ["symlink", "regular-file", "listed-device"])
def test_cve_2025_31133_fake_dev_null(oci, bundle, cid, kind):
    """rootfs without a /dev mount whose /dev/null is a symlink (to the container's core_pattern) or a regular
    file: masking must use the real null device, never bind the fake one. Either create refuses or every masked
    file is the 1:3 character device and core_pattern is untouched."""
    with open("/proc/sys/kernel/core_pattern") as f:
        core = f.read()
    b = bundle(["sh", "-c", "stat -c '%n %f %t %T' /proc/keys /proc/timer_list /dev/null; cat /dev/null | wc -c"])
    cfg = bundle.config(b)
    cfg["mounts"] = [m for m in cfg["mounts"] if not m["destination"].startswith("/dev")]
    dev = os.path.join(bundle.rootfs(b), "dev")
    if kind == "symlink":
        os.symlink("/proc/sys/kernel/core_pattern", os.path.join(dev, "null"))
    else:
        H.write(os.path.join(dev, "null"), "NOT NULL\n")
    if kind == "listed-device":
        cfg["linux"]["devices"] = [{"type": "c", "path": "/dev/null", "major": 1, "minor": 3, "fileMode": 0o666}]
    bundle.save(b, cfg)
    res = oci("run", "--bundle", b, cid())
    with open("/proc/sys/kernel/core_pattern") as f:
        assert f.read() == core
    if res.returncode != 0:
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "/dev/null" in lines[0], str(res)
        return
    lines = res.stdout.splitlines()
    for ln in lines[:3]:
        name, fmt, ma, mi_ = ln.split()
        assert stat.S_ISCHR(int(fmt, 16)) and (int(ma, 16), int(mi_, 16)) == (1, 3), ln
    assert lines[3] == "0"


# ------------------------------------------------------------------------------------------------ failures
FAILURES = {
    "parent-is-a-file": lambda b: _mount("/bin/busybox/x", "tmpfs", "tmpfs"),
    "symlink-loop": lambda b: _mount("/loop/x", "tmpfs", "tmpfs"),
    "file-onto-directory": lambda b: _mount("/etc", "bind", os.path.join(b, "a-file"), ["bind"]),
    "directory-onto-file": lambda b: _mount("/etc/passwd", "bind", os.path.join(b, "a-dir"), ["bind"]),
    "overlay-missing-lowerdir": lambda b: _mount("/ov", "overlay", "overlay",
                                                 ["lowerdir=nope", "upperdir=up", "workdir=wk"]),
    "cgroup-bad-option": lambda b: _mount("/cg2", "cgroup2", "cgroup2", ["no-such-cgroup2-option"]),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_bad_mount_fails_create_in_one_line(oci, bundle, cid, case):
    b = bundle(["true"])
    r = bundle.rootfs(b)
    os.symlink("loop", os.path.join(r, "loop"))
    H.write(os.path.join(b, "a-file"), "x\n")
    for d in ("a-dir", "up", "wk"):
        os.makedirs(os.path.join(b, d))
    cfg = bundle.config(b)
    m = FAILURES[case](b)
    cfg["mounts"].append(m)
    n = len(cfg["mounts"]) - 1
    bundle.save(b, cfg)
    line = _create_fails_one_line(oci, b, cid())
    assert f"mounts[{n}] {m['destination']}" in line, line


# ------------------------------------------------------------------------------------------------ runc oracle
def test_mountinfo_shape_like_runc(oci, runc, bundle, cid, shared_tree, hostmnt):
    """The default spec's mounts plus a few binds: the same mount points, fs types and per-mount option sets
    under `runc run` and `ocirun run` (propagation group numbers and mount ids aside).
    Known, deliberate differences: ocirun also mounts the cgroup2 hierarchy on a hybrid host; runc 1.1 leaves
    the /sys/fs/cgroup tmpfs rw although the mount says ro (ocirun makes it ro, as asked)."""
    top, _, _, _ = shared_tree

    def edit(cfg):
        cfg["root"]["readonly"] = False
    b = bundle(["cat", "/proc/self/mountinfo"], edit=edit)
    H.write(os.path.join(b, "afile"), "f\n")
    cfg = bundle.config(b)
    cfg["mounts"] += [_mount("/rb", "bind", top, ["rbind", "nosuid"]),
                      _mount("/robind", "bind", top, ["bind", "ro", "nodev"]),
                      _mount("/etc/afile", "bind", os.path.join(b, "afile"), ["bind", "ro"]),
                      _mount("/scratch", "tmpfs", "tmpfs", ["noexec", "nosuid", "size=2m", "mode=1777"])]
    bundle.save(b, cfg)
    ours = oci("run", "--bundle", b, cid())
    theirs = runc("run", "--bundle", b, cid())
    assert ours.returncode == 0, str(ours)
    assert theirs.returncode == 0, str(theirs)

    def shape(text):
        out = {}
        for m in H.parse(text):
            opts = set(m.opts)
            if m.mp == "/sys/fs/cgroup":
                opts -= {"ro", "rw"}
            out[m.mp] = (m.fstype, frozenset(opts), frozenset(m.prop()))
        return out
    a, r = shape(ours.stdout), shape(theirs.stdout)
    assert set(a) == set(r), f"only ocirun: {sorted(set(a) - set(r))}; only runc: {sorted(set(r) - set(a))}"
    diff = {mp: (a[mp], r[mp]) for mp in a if a[mp] != r[mp]}
    assert not diff, "\n".join(f"{mp}: ocirun {x} / runc {y}" for mp, (x, y) in sorted(diff.items()))
    assert {"/rb", "/rb/sub", "/robind", "/etc/afile", "/scratch"} <= set(a)


@pytest.mark.parametrize("userns", [False, True], ids=["root", "userns"])
def test_devices_leave_a_bind_mounted_dev_alone(oci, runc, bundle, cid, tmp_path, userns):
    """/dev bind-mounted from a host directory: linux.devices must not chmod, chown, replace or unlink the nodes
    there (they are the host's). Found when a differential run left the host's /dev/null at mode 0600; runc makes
    no device at all in that case (needsSetupDev), and neither does ocirun now."""
    hostdev = tmp_path / "hostdev"
    hostdev.mkdir()
    os.chmod(hostdev, 0o755)
    node = hostdev / "null"
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.chmod(node, 0o666)
    before = os.stat(node)

    def edit(cfg):
        if userns:
            _userns(cfg)
        cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] != "/dev"]
        cfg["mounts"].append(_mount("/dev", "bind", str(hostdev), ["rbind"]))
        cfg["linux"]["devices"] = [{"type": "c", "path": "/dev/null", "major": 1, "minor": 3, "fileMode": 0o600,
                                    "uid": 1000, "gid": 1000},
                                   {"type": "c", "path": "/dev/extra", "major": 1, "minor": 5}]
    b = bundle(["true"], edit=edit)
    for name, rt in (("ocirun", oci), ("runc", runc)):
        i = cid(name)
        r = rt("run", "--bundle", b, i)
        rt("delete", "--force", i)
        after = os.stat(node)
        assert (after.st_ino, stat.S_IMODE(after.st_mode), after.st_uid, after.st_gid) == \
            (before.st_ino, 0o666, before.st_uid, before.st_gid), (name, r)
        assert sorted(os.listdir(hostdev)) == ["null"], (name, r)


def test_no_pivot_does_not_expose_bare_proc(oci, runc, bundle, cid):
    """--no-pivot keeps the old root's mounts in the namespace; while the host's full /proc is reachable there,
    a user namespace inside the container could mount a fresh procfs and write /proc/sysrq-trigger. The host's
    proc and sysfs mounts are detached first (runc's msMoveRoot; runc's bats no_pivot.bats)."""
    def edit(cfg):
        for k in ("bounding", "permitted"):
            cfg["process"]["capabilities"][k].append("CAP_SETFCAP")
    b = bundle(["busybox", "unshare", "-mrpf", "sh", "-c", "mount -t proc none /proc && echo EXPOSED"], edit=edit)
    for name, rt in (("ocirun", oci), ("runc", runc)):
        i = cid(name)
        r = rt("run", "--no-pivot", "--bundle", b, i)
        rt("delete", "--force", i)
        assert "EXPOSED" not in r.stdout and "ermission denied" in r.stderr + r.stdout, (name, r)
