"""Rootless mode's pieces without root and without a kernel: the rootless cgroup manager (v1 and v2) against the
fake cgroupfs, the --rootless flag, the default state root under $XDG_RUNTIME_DIR, the ownership rules of the
state store and the bundle, runc's rootless validation, the id mappings (directly or through newuidmap),
`spec --rootless`, and the refusal to run set-user-ID. (tests/integration/test_rootless.py runs all of it as a
real unprivileged user, with runc beside it.)"""
import errno
import os
import stat

import pytest

from ocirun import cgroups, config as C, namespaces, rootless, specgen, state as St
from ocirun.cgroups.testing import FakeCgroupfs
from ocirun.errors import NotFoundError, OciError


# ============================================================================ the rootless cgroup manager (v1)
@pytest.fixture
def fk(tmp_path, monkeypatch):
    return FakeCgroupfs(tmp_path, version=1, own={"memory": "/user/me"}).install(monkeypatch)


def rl_mgr(fk, path=None, cid="c1", rootless=True):
    return cgroups.new_manager(cid, path, rootless=rootless, **fk.kwargs)


def test_v1_unwritable_hierarchies_are_left_out(fk):
    """No cgroupsPath: where the caller may not create the cgroup, that hierarchy is left out (the container
    stays in the caller's own cgroup there: what the cgroup mount binds); the others are made and joined."""
    for h in ("cpu", "memory", "devices", "unified"):
        fk.deny_mkdir[f"{fk.root}/{h}"] = errno.EACCES
    m = rl_mgr(fk)
    m.create()
    kept = [h[0] for h in m.hierarchies]
    assert kept == ["cpuacct", "cpuset", "freezer", "blkio", "pids", "systemd"]
    assert [s[0] for s in m.skipped] == ["cpu", "memory", "devices", "unified"]
    assert m.joined()
    plan = dict(m.mount_plan())
    assert plan["memory"] == f"{fk.root}/memory/user/me"  # the caller's own cgroup
    assert plan["cpu"] == f"{fk.root}/cpu"
    assert plan["pids"] == f"{fk.root}/pids/c1"
    assert os.path.isdir(f"{fk.root}/pids/c1") and not os.path.exists(f"{fk.root}/memory/user/me/c1")
    m.add_pid(4242)
    assert fk.read("pids", "/c1", "cgroup.procs") == "4242"
    m.apply(None)  # the default device rules: the devices hierarchy is left out, so they are ignored
    with pytest.raises(OciError) as ei:
        m.apply({"memory": {"limit": 1 << 20}})
    assert str(ei.value).startswith("linux.resources.memory.limit: cannot set memory limit: container could not "
                                    "join or create cgroup (rootless: ")
    m.apply({"pids": {"limit": 7}})
    assert fk.read("pids", "/c1", "pids.max") == "7"
    for h in m.hierarchies:  # (the fake kernel: the process is gone)
        with open(f"{h[4]}/cgroup.procs", "w") as f:
            f.write("")
    m.destroy()
    assert not os.path.exists(f"{fk.root}/pids/c1")


def test_v1_nothing_writable_means_no_cgroup(fk):
    fk.deny_mkdir[fk.root] = errno.EACCES
    m = rl_mgr(fk)
    m.create()
    assert m.hierarchies == [] and not m.joined() and m.created == []
    assert len(m.mount_plan()) == 10 and dict(m.mount_plan())["memory"] == f"{fk.root}/memory/user/me"
    m.add_pid(1)
    m.apply(None)
    assert m.pids() == [] and not m.is_frozen()
    with pytest.raises(OciError, match="cannot freeze: the container has no freezer cgroup of its own"):
        m.freeze()
    with pytest.raises(OciError, match="cannot set pids limit: container could not join or create cgroup"):
        m.apply({"pids": {"limit": 3}})
    m.destroy()


def test_v1_joining_refused_leaves_the_hierarchy_out(fk):
    """The directory could be made but the init not placed there (cgroup.procs EACCES): the hierarchy is left
    out and its directory removed; for exec (runc's rootless exec) the process just stays where it is."""
    m = rl_mgr(fk)
    m.create()
    fk.fail["cgroup.procs"] = errno.EACCES
    m.add_pid(5, exec_=True)
    assert len(m.hierarchies) == 10 and not m.skipped
    m.add_pid(5)
    assert m.hierarchies == [] and len(m.skipped) == 10 and m.created == []
    assert not os.path.exists(f"{fk.root}/pids/c1")


def test_v1_device_rule_errors_are_ignored_rootless_only(fk):
    fk.fail["devices.deny"] = errno.EPERM
    m = rl_mgr(fk)
    m.create()
    m.apply(None)
    root_mgr = rl_mgr(fk, "/r", cid="r", rootless=False)
    root_mgr.create()
    with pytest.raises(OciError, match="devices"):
        root_mgr.apply(None)


def test_v1_cgroups_path_ignores_nothing(fk):
    """runc: with a cgroupsPath every error is an error, except joining the hierarchies nothing is controlled
    in (a hybrid host's cgroup2 one, name=systemd), which runc only tries."""
    fk.deny_mkdir[f"{fk.root}/memory"] = errno.EACCES
    with pytest.raises(OciError, match="cannot create cgroup .*memory/deleg/c1: permission denied"):
        rl_mgr(fk, "/deleg/c1").create()
    fk.deny_mkdir.clear()
    fk.deny_mkdir[f"{fk.root}/unified"] = errno.EACCES
    fk.deny_mkdir[f"{fk.root}/systemd"] = errno.EPERM
    m = rl_mgr(fk, "/deleg/c2")
    m.create()
    assert [s[0] for s in m.skipped] == ["systemd", "unified"]


def test_v1_not_rootless_is_an_error(fk):
    fk.deny_mkdir[f"{fk.root}/cpu"] = errno.EACCES
    with pytest.raises(OciError, match="permission denied"):
        rl_mgr(fk, rootless=False).create()


def test_v1_auto_is_decided_at_the_first_permission_error(fk, monkeypatch):
    """--rootless auto (None): nothing is read until a permission error; then the host's root is not rootless,
    anyone else (root of a user namespace included) is."""
    calls = []
    monkeypatch.setattr(cgroups, "rootless_cgroups", lambda v: calls.append(v) or False)
    m = rl_mgr(fk, rootless=None)
    m.create()
    assert calls == []
    fk.deny_mkdir[f"{fk.root}/cpu"] = errno.EACCES
    m2 = rl_mgr(fk, cid="c2", rootless=None)
    with pytest.raises(OciError):
        m2.create()
    assert calls == [None]


def test_v1_record_round_trip(fk):
    fk.deny_mkdir[f"{fk.root}/freezer"] = errno.EROFS
    m = rl_mgr(fk)
    m.create()
    d = m.to_dict()
    assert d["rootless"] is True and d["skipped"][0][0] == "freezer"
    back = cgroups.manager_from_dict(d)
    assert back.skipped == m.skipped and back.rootless is True
    with pytest.raises(OciError, match="no freezer cgroup of its own .*read-only file system"):
        back.freeze()
    # a root container's record has neither key, and reads back as "auto"
    plain = rl_mgr(fk, "/x", cid="x", rootless=False)
    assert "rootless" not in plain.to_dict() and "skipped" not in plain.to_dict()
    assert cgroups.manager_from_dict(plain.to_dict()).rootless is None
    bad = dict(d, skipped=[["x"]])
    with pytest.raises(OciError, match="invalid cgroup record"):
        cgroups.manager_from_dict(bad)


# ============================================================================ the rootless cgroup manager (v2)
@pytest.fixture
def fk2(tmp_path, monkeypatch):
    return FakeCgroupfs(tmp_path, version=2, own={"": "/user.slice/me/session"}).install(monkeypatch)


def test_v2_no_cgroup_when_it_cannot_be_made(fk2):
    fk2.deny_mkdir[fk2.root] = errno.EACCES
    m = rl_mgr(fk2)
    m.create()
    assert not m.joined() and m.created == []
    assert m.mount_plan() == [("", f"{fk2.root}/user.slice/me/session")]
    m.add_pid(3)
    m.apply(None)  # device rules alone: ignored
    assert fk2.device_programs.installed == []
    with pytest.raises(OciError, match="linux.resources.pids.limit: cannot set pids limit: container could not"):
        m.apply({"pids": {"limit": 3}})
    assert m.pids() == [] and m.stats() == {} and not m.is_frozen()
    with pytest.raises(OciError, match="no cgroup of its own"):
        m.freeze()
    m.destroy()
    d = m.to_dict()
    assert cgroups.manager_from_dict(d).skipped == m.skipped


def test_v2_device_program_errors_ignored_rootless_only(fk2, monkeypatch):
    from ocirun.cgroups import v2

    class Refusing:
        def install(self, d, model):
            raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(v2, "device_layer", Refusing())
    m = rl_mgr(fk2)
    m.create()
    m.apply(None)
    m2 = rl_mgr(fk2, "/r2", cid="r2", rootless=False)
    m2.create()
    with pytest.raises(OSError):
        m2.apply(None)


def test_v2_join_refused(fk2):
    m = rl_mgr(fk2)
    m.create()
    made = list(m.created)
    assert made
    fk2.fail["cgroup.procs"] = errno.EACCES
    m.add_pid(9)
    assert not m.joined() and m.created == [] and not any(os.path.exists(x) for x in made)


# ============================================================================ the --rootless flag
@pytest.mark.parametrize("value,want", [(None, None), ("", None), ("auto", None), ("AUTO", None), ("true", True),
                                        ("1", True), ("T", True), ("TRUE", True), ("false", False), ("0", False),
                                        ("F", False), ("False", False)])
def test_parse_rootless(value, want):
    assert cgroups.parse_rootless(value) is want


@pytest.mark.parametrize("bad", ["yes", "maybe", "tRuE", "2"])
def test_parse_rootless_refuses(bad):
    with pytest.raises(OciError, match="--rootless"):
        cgroups.parse_rootless(bad)


def test_rootless_cgroups_auto(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cgroups.rootless_cgroups(None) is True and cgroups.rootless_cgroups("false") is False
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(St, "host_root", lambda: True)
    assert cgroups.rootless_cgroups("auto") is False and cgroups.rootless_cgroups("true") is True
    monkeypatch.setattr(St, "host_root", lambda: False)  # root of a user namespace
    assert cgroups.rootless_cgroups(None) is True


# ============================================================================ the state root and its owners
@pytest.mark.parametrize("euid,host_root,user,xdg,want", [
    (1000, False, "u", "/run/user/1000", "/run/user/1000/ocirun"),
    (1000, False, "u", "", None),                      # unset or empty: /run/ocirun (runc: /run/runc)
    (0, True, "root", "/run/user/0", None),            # the host's root keeps /run/ocirun
    (0, False, "u", "/run/user/1000", "/run/user/1000/ocirun"),  # root of a user namespace (rootless podman)
    (0, False, "root", "/run/user/1000", None),        # ... unless $USER says root
])
def test_xdg_root_rule(monkeypatch, euid, host_root, user, xdg, want):
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    monkeypatch.setattr(St, "host_root", lambda: host_root)
    monkeypatch.setenv("USER", user)
    monkeypatch.setenv("XDG_RUNTIME_DIR", xdg)
    assert St.xdg_root() == want
    assert St.default_root() == (want or "/run/ocirun")
    assert St.Store().root == (want or "/run/ocirun")


def test_make_xdg_root_is_sticky_and_private(tmp_path):
    root = str(tmp_path / "xdg" / "ocirun")
    St.make_xdg_root(root)
    St.make_xdg_root(root)  # (every command makes sure of it)
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o1700
    os.chmod(tmp_path / "xdg", 0o500)
    try:
        if os.geteuid() != 0:
            with pytest.raises(OciError, match="must be writable by the user"):
                St.make_xdg_root(str(tmp_path / "xdg" / "other"))
    finally:
        os.chmod(tmp_path / "xdg", 0o700)


def test_store_refuses_what_is_not_the_callers(tmp_path, monkeypatch):
    """A state root, a container's directory or its state file owned by another uid is refused: nothing
    named by such a record is acted on."""
    store = St.Store(str(tmp_path / "root"))
    store.new("c1").release()
    store.write("c1", {"id": "c1", "status": "running", "pid": 1})
    me = os.geteuid()
    monkeypatch.setattr(os, "geteuid", lambda: me + 1)
    with pytest.raises(OciError, match=rf"container c1: state directory .*/c1: owned by uid {me}, not by the "
                                       rf"caller \(uid {me + 1}\)"):
        store.open("c1")
    with pytest.raises(OciError, match="container c1: state file .*state.json: owned by uid"):
        store.read("c1")
    with pytest.raises(OciError, match=r"--root .*/root: owned by uid"):
        store.ensure_root()
    monkeypatch.setattr(os, "geteuid", lambda: me)
    store.open("c1").release()


def test_store_refuses_a_symlink(tmp_path):
    store = St.Store(str(tmp_path / "root"))
    store.new("real").release()
    os.symlink(store.dir("real"), store.dir("link"))
    with pytest.raises(OciError, match="is a symbolic link, not a state directory"):
        store.open("link")
    with pytest.raises(NotFoundError):
        store.open("absent")


def test_denied_default_root_says_what_to_do(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    e = PermissionError(13, "Permission denied")
    assert "set XDG_RUNTIME_DIR" in St._denied_hint(St.DEFAULT_ROOT, e)
    assert St._denied_hint("/elsewhere", e) == ""


# ============================================================================ runc's rootless validation
def cfg_of(edit=None):
    doc = specgen.default_spec(rootless=True)
    doc["process"]["terminal"] = False
    if edit:
        edit(doc)
    return C.parse(doc)


def plan_of(cfg):
    return namespaces.Plan(cfg.linux)


def test_check_config_accepts_spec_rootless():
    cfg = cfg_of()
    rootless.check_config(cfg, plan_of(cfg))


@pytest.mark.parametrize("edit,msg", [
    (lambda d: d["linux"].update(namespaces=[n for n in d["linux"]["namespaces"] if n["type"] != "user"]),
     "rootless container requires user namespaces"),
    (lambda d: d["linux"].pop("uidMappings"), "rootless containers requires at least one UID mapping"),
    (lambda d: d["linux"].pop("gidMappings"), "rootless containers requires at least one GID mapping"),
    (lambda d: d["mounts"][2]["options"].append("gid=5"),
     "/mounts/2/options: cannot specify gid= mount options for unmapped gid in rootless containers"),
    (lambda d: d["mounts"][1]["options"].append("uid=7"), "cannot specify uid= mount options for unmapped uid"),
    (lambda d: d["process"]["user"].update(additionalGids=[0]),
     "/process/user/additionalGids: cannot set any additional groups in a rootless container"),
])
def test_check_config_refuses(edit, msg):
    cfg = cfg_of(edit)
    with pytest.raises(OciError) as ei:
        rootless.check_config(cfg, plan_of(cfg))
    assert msg in str(ei.value)


def test_check_config_ignores_mapped_and_unknown_id_options():
    cfg = cfg_of(lambda d: d["mounts"][1]["options"].extend(["uid=0", "gid=0", "uid=abc"]))
    rootless.check_config(cfg, plan_of(cfg))


def test_check_bundle(tmp_path, monkeypatch):
    b = tmp_path / "b"
    b.mkdir(mode=0o755)
    cfgp = b / "config.json"
    cfgp.write_text("{}")
    os.chmod(cfgp, 0o644)
    me = os.geteuid()
    rootless.check_bundle(str(b), str(cfgp))
    os.chmod(cfgp, 0o664)
    with pytest.raises(OciError, match=r"config.json .*: writable by its group or others \(mode 0664\)"):
        rootless.check_bundle(str(b), str(cfgp))
    os.chmod(cfgp, 0o644)
    os.chmod(b, 0o757)
    with pytest.raises(OciError, match=r"bundle .*: writable by its group or others \(mode 0757\)"):
        rootless.check_bundle(str(b), str(cfgp))
    os.chmod(b, 0o755)
    monkeypatch.setattr(os, "geteuid", lambda: me + 1)
    if me == 0:
        rootless.check_bundle(str(b), str(cfgp))  # root's bundle: fine for anyone
    else:
        with pytest.raises(OciError, match=rf"bundle .*: owned by uid {me}, not by the caller"):
            rootless.check_bundle(str(b), str(cfgp))


# ============================================================================ the id mappings
class _Proc:
    """/proc/PID/{setgroups,uid_map,gid_map} that refuse what the kernel refuses an unprivileged writer."""

    def __init__(self, own_uid, own_gid):
        self.own = {"uid_map": own_uid, "gid_map": own_gid}
        self.written = {}

    def open(self, path, mode="r"):
        proc = self
        name = path.rsplit("/", 1)[1]

        class F:
            def __enter__(self):
                return self

            def __exit__(self, *a):
                return False

            def write(self, text):
                if name in ("uid_map", "gid_map"):
                    lines = text.split("\n")[:-1]
                    ok = len(lines) == 1 and lines[0].split()[1:] == [str(proc.own[name]), "1"]
                    if name == "gid_map" and proc.written.get("setgroups") != "deny":
                        ok = False
                    if not ok:
                        raise PermissionError(errno.EPERM, "Operation not permitted")
                proc.written[name] = text

        return F()


def _plan(uids, gids):
    def maps(x):
        return [C.IDMap(container_id=c, host_id=h, size=s) for c, h, s in x]
    return type("P", (), {"uid_mappings": maps(uids), "gid_mappings": maps(gids)})()


def test_single_own_mapping_is_written_directly(monkeypatch):
    monkeypatch.setattr(os, "getegid", lambda: 1002)
    proc = _Proc(1001, 1002)
    monkeypatch.setattr(rootless, "open", proc.open, raising=False)
    monkeypatch.setattr(namespaces, "_run_tool", lambda argv: pytest.fail(f"tool run: {argv}"))
    rootless.write_id_mappings(77, _plan([(0, 1001, 1)], [(0, 1002, 1)]))
    assert proc.written == {"setgroups": "deny", "uid_map": "0 1001 1\n", "gid_map": "0 1002 1\n"}


def test_ranges_go_through_newuidmap_and_newgidmap(monkeypatch):
    monkeypatch.setattr(os, "getegid", lambda: 1002)
    proc = _Proc(1001, 1002)
    monkeypatch.setattr(rootless, "open", proc.open, raising=False)
    import shutil

    monkeypatch.setattr(shutil, "which", lambda t: f"/usr/bin/{t}")
    ran = []
    monkeypatch.setattr(namespaces, "_run_tool", lambda argv: ran.append(argv) or (0, ""))
    rootless.write_id_mappings(77, _plan([(0, 1001, 1), (1, 100000, 65536)], [(0, 1002, 1), (1, 100000, 65536)]))
    assert "setgroups" not in proc.written  # (newgidmap decides; setgroups stays allowed, as under runc)
    assert ran == [["/usr/bin/newuidmap", "77", "0", "1001", "1", "1", "100000", "65536"],
                   ["/usr/bin/newgidmap", "77", "0", "1002", "1", "1", "100000", "65536"]]
    monkeypatch.setattr(namespaces, "_run_tool", lambda argv: (1, "newuidmap: uid range [1-65537) -> "
                                                                   "[100000-165536) not allowed"))
    with pytest.raises(OciError, match=r"linux.uidMappings: newuidmap 77 0 1001 1 1 100000 65536 failed: .*not allowed"):
        rootless.write_id_mappings(77, _plan([(0, 1001, 1), (1, 100000, 65536)], [(0, 1002, 1)]))
    monkeypatch.setattr(shutil, "which", lambda t: None)
    with pytest.raises(OciError, match="needs newuidmap, which is not installed"):
        rootless.write_id_mappings(77, _plan([(0, 5, 1)], [(0, 1002, 1)]))


# ============================================================================ spec --rootless, setuid, stdio
def test_spec_rootless_maps_the_caller(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 4321)
    monkeypatch.setattr(os, "getegid", lambda: 8765)
    s = specgen.default_spec(rootless=True)
    lin = s["linux"]
    assert lin["uidMappings"] == [{"containerID": 0, "hostID": 4321, "size": 1}]
    assert lin["gidMappings"] == [{"containerID": 0, "hostID": 8765, "size": 1}]
    assert [n["type"] for n in lin["namespaces"]][-1] == "user"
    assert "network" not in [n["type"] for n in lin["namespaces"]] and "resources" not in lin
    dests = [m["destination"] for m in s["mounts"]]
    assert dests == [m["destination"] for m in specgen.default_spec()["mounts"]]  # /sys/fs/cgroup kept (runc)
    assert next(m for m in s["mounts"] if m["destination"] == "/dev/pts")["options"] == [
        "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]


def test_setuid_refused(monkeypatch, capsys):
    from ocirun.cli import run_cli

    real = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: real + 1)
    assert run_cli(["--version"]) == 1
    err = capsys.readouterr().err
    assert "refusing to run set-user-ID or set-group-ID" in err and f"real uid {real + 1}" in err


def test_stdio_pipes_for_a_root_the_caller_cannot_chown_to(monkeypatch):
    from ocirun import process

    def refuse(fd, uid, gid):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "fchown", refuse)
    plan = _plan([(0, 100000, 65536)], [(0, 100000, 65536)])
    plan.new_user = True
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(OciError, match=r"cannot give the container's root \(host uid 100000, gid 100000\) its "
                                       r"stdio pipes: fchown: Operation not permitted"):
        process.stdio_pipes(plan)
    assert set(os.listdir("/proc/self/fd")) == before
