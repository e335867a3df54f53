"""Rootless ocirun (issue 14): ocirun run by a real unprivileged user that this test session creates itself
(_rootless_user.create_user: useradd with a home, /etc/subuid and /etc/subgid ranges, /run/user/UID; all removed
at the end of the module), with runc 1.1.5 running the same scenario as the same user in the same test
wherever runc can. Every command runs as that user with its login environment, so both runtimes keep their
state under $XDG_RUNTIME_DIR (ocirun/ and runc/) as they would for anyone.

After each test nothing of the user may be left: no process of its uid or subordinate ids, no state under
$XDG_RUNTIME_DIR/{ocirun,runc} (the `rl` fixture checks, cleans up and fails the test), besides the suite's
own leak checker (cgroups named by the test's id prefix, host mounts)."""
import json
import os
import re
import shutil
import stat
import subprocess
import time

import pytest

from _rootless_user import create_user, kill_all, leftovers, run_as  # (tests/integration is on sys.path)

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates a user (useradd)")]

CGROUP_ROOT = "/sys/fs/cgroup"


# ------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def user():
    """One unprivileged user for the module (removed with everything it has at the end)."""
    for tool in ("useradd", "userdel", "newuidmap", "newgidmap"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (./dev.sh installs uidmap and passwd)")
    with create_user("ocrl") as u:
        yield u


class Rootless:
    """One test's view: runtimes run as the user, bundles in the user's home."""

    def __init__(self, user, ocirun_bin, runc_bin, busybox_rootfs, prefix):
        self.user = user
        self.bins = {"ocirun": ocirun_bin, "runc": runc_bin}
        self.rootfs = busybox_rootfs
        self.prefix = prefix
        self.dirs = []
        self._n = 0

    def run(self, runtime, *args, **kw):
        return run_as(self.user, [self.bins[runtime], *args], **kw)

    def ocirun(self, *args, **kw):
        return self.run("ocirun", *args, **kw)

    def runc(self, *args, **kw):
        return self.run("runc", *args, **kw)

    def cid(self, tag):
        self._n += 1
        return f"{self.prefix}{tag}{self._n}"

    def bundle(self, args=("true",), edit=None, spec="ocirun"):
        """A bundle owned by the user in its home: the busybox rootfs and `<spec> spec --rootless`, run by the
        user (so the mappings are its own), with terminal off and `args`; edit(cfg) changes it further."""
        self._n += 1
        b = os.path.join(self.user.home, f"{self.prefix}b{self._n}")
        os.mkdir(b)
        shutil.copytree(self.rootfs, os.path.join(b, "rootfs"), symlinks=True)
        _chown_tree(b, self.user.uid, self.user.gid)
        self.dirs.append(b)
        res = self.run(spec, "spec", "--rootless", cwd=b)
        assert res.returncode == 0, str(res)
        cfg = self.config(b)
        cfg["process"]["terminal"] = False
        cfg["process"]["args"] = list(args)
        if edit is not None:
            edit(cfg)
        self.save(b, cfg)
        return b

    @staticmethod
    def config(b):
        with open(os.path.join(b, "config.json")) as f:
            return json.load(f)

    def save(self, b, cfg):
        p = os.path.join(b, "config.json")
        with open(p, "w") as f:
            json.dump(cfg, f, indent=2)
        os.chown(p, self.user.uid, self.user.gid)

    def both(self, args, edit=None, run_flags=()):
        """Run the same bundle (ocirun's spec --rootless) in the foreground under each runtime:
        {runtime: Result}."""
        b = self.bundle(args, edit)
        return {rt: self.run(rt, "run", *run_flags, "--bundle", b, self.cid(rt[0])) for rt in ("ocirun", "runc")}

    def scratch(self, name, mode=0o755, owner=None):
        """A directory of the test (removed at the end), owned by `owner` (uid, gid; default the user)."""
        self._n += 1
        d = os.path.join("/tmp", f"{self.prefix}{name}{self._n}")
        os.mkdir(d)
        uid, gid = owner if owner is not None else (self.user.uid, self.user.gid)
        os.chown(d, uid, gid)
        os.chmod(d, mode)
        self.dirs.append(d)
        return d


def _chown_tree(top, uid, gid):
    for d, dirs, files in os.walk(top):
        os.lchown(d, uid, gid)
        for n in dirs + files:
            os.lchown(os.path.join(d, n), uid, gid)


@pytest.fixture
def rl(user, ocirun_bin, runc_bin, busybox_rootfs, id_prefix):
    """The test's Rootless helper; afterwards the user must have nothing left (checked, cleaned, reported)."""
    h = Rootless(user, ocirun_bin, runc_bin, busybox_rootfs, id_prefix)
    yield h
    left = leftovers(user)
    if left:
        time.sleep(0.3)  # a container killed just before the test returned may still be exiting
        left = leftovers(user)
    for kind, what in left:
        if kind == "state":
            rt = os.path.basename(os.path.dirname(what))
            run_as(user, [h.bins[rt], "delete", "--force", os.path.basename(what)])
            shutil.rmtree(what, ignore_errors=True)
    kill_all(user)
    for d in h.dirs:
        shutil.rmtree(d, ignore_errors=True)
    if left:
        pytest.fail("the rootless test left these behind (cleaned up):\n  "
                    + "\n  ".join(f"{k}: {w}" for k, w in left), pytrace=False)


def _ok(res):
    assert res.returncode == 0, str(res)
    return res


def _refused(res, *words):
    assert res.returncode != 0, str(res)
    for w in words:
        assert w in res.stderr, f"{w!r} not in the error:\n{res}"
    return res


# ------------------------------------------------------------------------------------------- installed ocirun
def test_installed_ocirun_is_usable_by_the_user(rl, ocirun_bin):
    """The ocirun ./dev.sh installs runs as any user as it stands: its interpreter and package files are
    readable, nothing of it is set-user-ID, and the commands that need no state work."""
    with open(ocirun_bin) as f:
        shebang = f.readline()
    interp = shebang[2:].strip().split()[0]
    for path in (ocirun_bin, interp, os.path.realpath(interp)):
        assert not os.stat(path).st_mode & (stat.S_ISUID | stat.S_ISGID), f"{path} is set-user/group-ID"
    v = _ok(rl.ocirun("--version"))
    assert v.stdout.startswith("ocirun version "), str(v)
    f = _ok(rl.ocirun("features"))
    assert json.loads(f.stdout)["ociVersionMax"], str(f)
    # every file of the package and of the environment it runs in is readable by others, every directory
    # searchable (so any user's ocirun finds them, byte-compiled files included)
    import ocirun

    tops = [os.path.dirname(ocirun.__file__), os.path.dirname(os.path.dirname(ocirun_bin))]
    closed = []
    for top in tops:
        for d, dirs, files in os.walk(top):
            for n in dirs + files:
                p = os.path.join(d, n)
                st = os.lstat(p)
                need = 0o005 if stat.S_ISDIR(st.st_mode) else 0o004
                if not stat.S_ISLNK(st.st_mode) and st.st_mode & need != need:
                    closed.append(f"{p} ({stat.S_IMODE(st.st_mode):04o})")
    assert not closed, "not readable by other users: " + ", ".join(closed[:10])
    # and so is the way there
    p = os.path.dirname(ocirun_bin)
    while p != "/":
        assert os.stat(p).st_mode & 0o001, f"{p} is not searchable by other users"
        p = os.path.dirname(p)


def test_setuid_is_refused(user, ocirun_bin, tmp_path):
    """ocirun run with a real uid that is not its effective one (what a set-user-ID install would give) does
    nothing: one line, exit 1 (here: `spec`, which would otherwise write a config.json)."""
    p = subprocess.run([ocirun_bin, "spec"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       cwd=tmp_path, preexec_fn=lambda: os.setresuid(user.uid, 0, 0))
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "refusing to run set-user-ID" in p.stderr and f"real uid {user.uid}" in p.stderr, p.stderr
    assert not (tmp_path / "config.json").exists()


# ------------------------------------------------------------------------------------------- spec --rootless
def test_spec_rootless_is_runcs(rl):
    """`ocirun spec --rootless` is `runc spec --rootless` for the caller: its uid and gid mapped to 0, a user
    namespace and no network one, /sys a read-only rbind, no uid=/gid= options, no resources; the same
    mounts. (ociVersion and hostname are each runtime's own; runc 1.1.5 also writes ambient capabilities,
    which runc 1.2+ no longer does.)"""
    mine = rl.scratch("spec-o")
    theirs = rl.scratch("spec-r")
    _ok(rl.ocirun("spec", "--rootless", cwd=mine))
    _ok(rl.runc("spec", "--rootless", cwd=theirs))
    o = rl.config(mine)
    r = rl.config(theirs)
    for c in (o, r):
        c.pop("ociVersion")
        c.pop("hostname")
        c["process"]["capabilities"].pop("ambient", None)
    assert o == r
    u = rl.user
    assert o["linux"]["uidMappings"] == [{"containerID": 0, "hostID": u.uid, "size": 1}]
    assert o["linux"]["gidMappings"] == [{"containerID": 0, "hostID": u.gid, "size": 1}]
    types = [n["type"] for n in o["linux"]["namespaces"]]
    assert "network" not in types and types[-1] == "user"
    assert "resources" not in o["linux"]
    sysm = next(m for m in o["mounts"] if m["destination"] == "/sys")
    assert sysm == {"destination": "/sys", "type": "none", "source": "/sys",
                    "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}
    assert not any(opt.startswith(("uid=", "gid=")) for m in o["mounts"] for opt in m.get("options", ()))


VIEW = ("id; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; hostname; "
        "ls -ln /dev | sed 's/  */ /g' | cut -d' ' -f1,3-6,10-; "
        "awk '{print $5, $9}' /proc/self/mountinfo | sort; "
        "touch /probe 2>&1 | sed 's/.*: //'; grep -E '^(Cap(Eff|Bnd)|NoNewPrivs)' /proc/self/status")


def test_spec_rootless_runs_as_the_user(rl):
    """The config `ocirun spec --rootless` writes runs as the user under both runtimes, and the container
    sees the same: root mapped to the user (setgroups denied), its hostname, device nodes (bind mounts of the
    host's, owned by the unmapped root: nobody), the same mounts, a read-only root, the same capabilities."""
    res = rl.both(["sh", "-c", VIEW])
    o, r = _ok(res["ocirun"]), _ok(res["runc"])
    assert o.stdout == r.stdout, f"ocirun:\n{o.stdout}\nrunc:\n{r.stdout}"
    u = rl.user
    lines = o.stdout.splitlines()
    assert lines[0].startswith("uid=0(root) gid=0(root)")
    assert lines[1].split() == ["0", str(u.uid), "1"] and lines[2].split() == ["0", str(u.gid), "1"]
    assert lines[3] == "deny" and lines[4] == "ocirun"
    assert any(re.match(r"crw-rw-rw- 65534 65534 1, 3 null$", x) for x in lines), o.stdout
    assert "Read-only file system" in o.stdout


def test_state_root_is_under_xdg_runtime_dir(rl):
    """Without --root the state lives in $XDG_RUNTIME_DIR/ocirun (runc: .../runc), made 0700 and sticky;
    without XDG_RUNTIME_DIR the default /run/ocirun is refused by the kernel, with the step that fixes it (runc
    fails the same way on /run/runc)."""
    b = rl.bundle(["sleep", "30"])
    c = rl.cid("x")
    _ok(rl.ocirun("run", "-d", "--bundle", b, c))
    root = os.path.join(rl.user.xdg, "ocirun")
    st = os.stat(root)
    assert st.st_uid == rl.user.uid and stat.S_IMODE(st.st_mode) == 0o1700
    assert os.path.isdir(os.path.join(root, c))
    assert json.loads(_ok(rl.ocirun("state", c)).stdout)["status"] == "running"
    listed = json.loads(_ok(rl.ocirun("list", "--format", "json")).stdout)
    assert [x["id"] for x in listed] == [c]
    _ok(rl.ocirun("delete", "--force", c))
    assert os.listdir(root) == []
    _refused(rl.runc("run", "--bundle", b, rl.cid("noxdg"), env={"XDG_RUNTIME_DIR": None}), "permission denied")
    _refused(rl.ocirun("run", "--bundle", b, rl.cid("noxdg"), env={"XDG_RUNTIME_DIR": None}),
             "/run/ocirun", "set XDG_RUNTIME_DIR")
    _refused(rl.ocirun("list", env={"XDG_RUNTIME_DIR": None}), "/run/ocirun", "set XDG_RUNTIME_DIR")


# ------------------------------------------------------------------------------------------- the lifecycle
def test_detached_exec_kill_delete(rl):
    """run -d, exec, kill, delete as the user, for both runtimes: the process is the user's on the host,
    exec joins it (root in the container, the user's uid outside), kill stops it, delete removes the state."""
    b = rl.bundle(["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.05; done"])
    for rt in ("ocirun", "runc"):
        c = rl.cid(rt[0])
        _ok(rl.run(rt, "run", "-d", "--bundle", b, c))
        st = json.loads(_ok(rl.run(rt, "state", c)).stdout)
        assert st["status"] == "running", (rt, st)
        with open(f"/proc/{st['pid']}/status") as f:
            uids = next(x for x in f if x.startswith("Uid:")).split()[1:]
        assert set(uids) == {str(rl.user.uid)}, (rt, uids)
        e = _ok(rl.run(rt, "exec", c, "sh", "-c", "id -u; cat /proc/self/uid_map; echo $$"))
        assert e.stdout.split()[:4] == ["0", "0", str(rl.user.uid), "1"], (rt, e.stdout)
        _ok(rl.run(rt, "kill", c, "TERM"))
        deadline = time.monotonic() + 10
        while json.loads(_ok(rl.run(rt, "state", c)).stdout)["status"] != "stopped":
            assert time.monotonic() < deadline, f"{rt}: still running after kill TERM"
            time.sleep(0.05)
        _ok(rl.run(rt, "delete", c))
        assert not os.path.exists(os.path.join(rl.user.xdg, rt, c))


def test_create_start_as_the_user(rl):
    """create, exec into the created container, start, then the foreground's output: the step-by-step cycle.
    exec before start works as under runc where the process is the caller's uid; where its uid is a
    subordinate one (the init switched to it, which made it non-dumpable) both refuse it until start."""
    for rt in ("ocirun", "runc"):
        for edit in (None, _multi(rl.user, rl.user.subuid)):
            x = rl.cid(rt[0])
            bx = rl.bundle(["sleep", "30"], edit)
            _ok(rl.run(rt, "create", "--bundle", bx, x))
            e = rl.run(rt, "exec", x, "sh", "-c", "id -u; cat /proc/self/uid_map | wc -l")
            if edit is None:
                assert _ok(e).stdout.split() == ["0", "1"], (rt, e.stdout)
            else:
                _refused(e, "/ns/user", "ermission denied")
                _ok(rl.run(rt, "start", x))
                e = _ok(rl.run(rt, "exec", x, "sh", "-c", "id -u; cat /proc/self/uid_map | wc -l"))
                assert e.stdout.split() == ["1000", "2"], (rt, e.stdout)  # (the process's user)
            _ok(rl.run(rt, "delete", "--force", x))
    b = rl.bundle(["sh", "-c", "echo started-as-$(id -u)"])
    out = os.path.join(rl.scratch("out"), "o")
    c = rl.cid("cs")
    _ok(rl.ocirun("create", "--bundle", b, c, stdout=out))
    assert json.loads(_ok(rl.ocirun("state", c)).stdout)["status"] == "created"
    # exec before start (runc's created init allows it too)
    assert _ok(rl.ocirun("exec", c, "id", "-u")).stdout == "0\n"
    _ok(rl.ocirun("start", c))
    deadline = time.monotonic() + 10
    while "started-as-0" not in open(out).read():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    _ok(rl.ocirun("delete", "--force", c))


# ------------------------------------------------------------------------------------------- mappings
def test_single_mapping_files_are_the_users(rl):
    """A single mapping (the caller's uid and gid as 0) is written directly: a file the container's root
    makes in a bind-mounted directory of the user's is the user's on the host, under both runtimes."""
    d = rl.scratch("data")

    def edit(cfg):
        cfg["mounts"].append({"destination": "/data", "type": "bind", "source": d, "options": ["rbind", "rw"]})

    # (the runs are one after the other: the second makes f-1)
    res = rl.both(["sh", "-c", "echo hi > /data/f-$(ls /data | wc -l)"], edit)
    for rt in res:
        _ok(res[rt])
    made = os.listdir(d)
    assert len(made) == 2, made
    for n in made:
        st = os.stat(os.path.join(d, n))
        assert (st.st_uid, st.st_gid) == (rl.user.uid, rl.user.gid), (n, st)


def _multi(u, sub, *, uid=1000, gid=1002):
    def edit(cfg):
        cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": u.uid, "size": 1},
                                       {"containerID": 1, "hostID": sub[0], "size": sub[1]}]
        cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": u.gid, "size": 1},
                                       {"containerID": 1, "hostID": u.subgid[0], "size": u.subgid[1]}]
        cfg["process"]["user"] = {"uid": uid, "gid": gid}
    return edit


def test_subuid_multi_range_mapping(rl):
    """Mappings beyond the caller's own ids come from /etc/subuid and /etc/subgid through newuidmap and
    newgidmap: the container has both ranges, setgroups stays allowed, its uid 1000 is the user's subordinate
    id start+999 on the host (a file it makes shows it), and supplementary groups are left alone (runc's
    rootless rule) under both runtimes."""
    u = rl.user
    d = rl.scratch("multi", mode=0o777)

    def edit(cfg):
        _multi(u, u.subuid)(cfg)
        cfg["mounts"].append({"destination": "/data", "type": "bind", "source": d, "options": ["rbind", "rw"]})

    res = rl.both(["sh", "-c", "id; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; "
                   "touch /data/f-$(ls /data | wc -l)"], edit)
    o, r = _ok(res["ocirun"]), _ok(res["runc"])
    assert o.stdout == r.stdout, f"ocirun:\n{o.stdout}\nrunc:\n{r.stdout}"
    lines = o.stdout.splitlines()
    assert lines[0].startswith("uid=1000(user) gid=1002"), o.stdout
    assert lines[1].split() == ["0", str(u.uid), "1"]
    assert lines[2].split() == ["1", str(u.subuid[0]), str(u.subuid[1])]
    assert lines[5] == "allow"
    for n in os.listdir(d):
        st = os.stat(os.path.join(d, n))
        assert (st.st_uid, st.st_gid) == (u.subuid[0] + 999, u.subgid[0] + 1001), (n, st.st_uid, st.st_gid)
    assert len(os.listdir(d)) == 2


def test_mapping_outside_the_users_ranges_is_refused(rl):
    """A range that is not the user's in /etc/subuid: newuidmap refuses it, and so does the create (both
    runtimes), leaving nothing behind."""
    u = rl.user
    foreign = (u.subuid[0] + u.subuid[1] + 1000000, 10)
    res = rl.both(["true"], _multi(u, foreign, uid=0, gid=0))
    _refused(res["runc"])
    _refused(res["ocirun"], "linux.uidMappings", "newuidmap", "not allowed")


def test_foreground_stdio_for_a_root_that_is_not_the_caller(rl):
    """Only subordinate ids mapped (the container's root is not the user): in the foreground without a
    terminal its stdio pipes cannot be given to that root, and both runtimes refuse (runc at the same
    fchown); detached, ocirun runs it (runc 1.1.5 cannot: it chowns its exec fifo, spec/EXTENSIONS.md)."""
    u = rl.user

    def edit(cfg):
        cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": u.subuid[0], "size": 65536}]
        cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": u.subgid[0], "size": 65536}]

    res = rl.both(["true"], edit)
    _refused(res["runc"], "operation not permitted")
    _refused(res["ocirun"], "stdio pipes", "fchown")
    b = rl.bundle(["sleep", "30"], edit)
    c = rl.cid("sub")
    _ok(rl.ocirun("run", "-d", "--bundle", b, c))
    pid = json.loads(_ok(rl.ocirun("state", c)).stdout)["pid"]
    with open(f"/proc/{pid}/status") as f:
        assert next(x for x in f if x.startswith("Uid:")).split()[1] == str(u.subuid[0])
    e = _ok(rl.ocirun("exec", c, "sh", "-c", "id -u; cat /proc/self/uid_map"))
    assert e.stdout.split() == ["0", "0", str(u.subuid[0]), "65536"]
    _ok(rl.ocirun("delete", "--force", c))


def test_rootless_needs_a_user_namespace(rl):
    """runc's rootless validation: a user namespace with both mappings, no uid=/gid= mount option for an
    unmapped id; refused by both before anything exists."""
    def no_userns(cfg):
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "user"]
        cfg["linux"].pop("uidMappings")
        cfg["linux"].pop("gidMappings")

    def unmapped_gid_option(cfg):
        for m in cfg["mounts"]:
            if m["destination"] == "/dev/pts":
                m["options"].append("gid=5")

    for edit, words in ((no_userns, ("rootless container requires user namespaces",)),
                        (unmapped_gid_option, ("gid=", "unmapped gid in rootless containers"))):
        res = rl.both(["true"], edit)
        _refused(res["runc"])
        _refused(res["ocirun"], *words)


# ------------------------------------------------------------------------------------------- mounts, root
def test_bind_mounts(rl):
    """Bind mounts of the user's directories, read-write and read-only, under both runtimes; a source only
    root may read is refused by both (the kernel's verdict: the user's access, no more)."""
    rw = rl.scratch("rw")
    ro = rl.scratch("ro")
    with open(os.path.join(ro, "keep"), "w") as f:
        f.write("original\n")
    os.chown(os.path.join(ro, "keep"), rl.user.uid, rl.user.gid)

    def edit(cfg):
        cfg["mounts"] += [{"destination": "/rw", "type": "bind", "source": rw, "options": ["bind", "rw"]},
                          {"destination": "/ro", "type": "bind", "source": ro, "options": ["bind", "ro"]}]

    res = rl.both(["sh", "-c", "echo x > /rw/f-$(ls /rw | wc -l) && echo rw-ok; "
                   "sh -c 'echo y > /ro/keep' 2>&1 | sed 's/.*: //'; "
                   "cat /ro/keep; grep -E ' /(rw|ro) ' /proc/self/mountinfo | awk '{print $5, $6}' | cut -d, -f1"],
                  edit)
    o, r = _ok(res["ocirun"]), _ok(res["runc"])
    assert o.stdout == r.stdout, f"ocirun:\n{o.stdout}\nrunc:\n{r.stdout}"
    assert o.stdout.splitlines()[:3] == ["rw-ok", "Read-only file system", "original"], o.stdout
    assert len(os.listdir(rw)) == 2
    # root's own directory (0700): it can be bound (the path resolves), but not read through the bind; below
    # it, nothing can even be named. The user's access, no more, under both runtimes.
    secret = rl.scratch("secret", mode=0o700, owner=(0, 0))
    os.mkdir(os.path.join(secret, "inner"))

    def bind(src):
        def edit(cfg):
            cfg["mounts"].append({"destination": "/s", "type": "bind", "source": src, "options": ["bind"]})
        return edit

    res = rl.both(["sh", "-c", "ls /s 2>&1 | sed 's/.*: //'"], bind(secret))
    assert _ok(res["ocirun"]).stdout == _ok(res["runc"]).stdout == "Permission denied\n"
    res = rl.both(["true"], bind(os.path.join(secret, "inner")))
    _refused(res["runc"], "permission denied")
    _refused(res["ocirun"], "mounts[", "/s", "Permission denied")


def test_read_only_root(rl):
    """root.readonly (spec --rootless sets it): nothing can be written on / , /tmp neither; writable root
    when it is false. Both runtimes alike."""
    probe = ["sh", "-c", "touch /x 2>&1 | sed 's/.*: //'; touch /tmp/y 2>&1 | sed 's/.*: //'; echo done"]
    res = rl.both(probe)
    o, r = _ok(res["ocirun"]), _ok(res["runc"])
    assert o.stdout == r.stdout == "Read-only file system\nRead-only file system\ndone\n", (o.stdout, r.stdout)

    def writable(cfg):
        cfg["root"]["readonly"] = False

    res = rl.both(probe, writable)
    assert _ok(res["ocirun"]).stdout == _ok(res["runc"]).stdout == "done\n"


# ------------------------------------------------------------------------------------------- host privilege
def test_what_needs_host_privilege(rl):
    """Refused by both, with the field named by ocirun: oom_score_adj below the current value, an rlimit
    above the user's hard limit, additional groups, a net sysctl without a network namespace of the
    container's own, a memory limit without a cgroup. Allowed by both: a higher oom_score_adj, an ipc sysctl
    (the container owns its ipc namespace), an rlimit within the hard one."""
    hard = int(_ok(run_as(rl.user, ["sh", "-c", "ulimit -Hn"])).stdout)

    def proc(**kw):
        def edit(cfg):
            cfg["process"].update(kw)
        return edit

    def lin(**kw):
        def edit(cfg):
            cfg["linux"].update(kw)
        return edit

    refused = [
        (proc(oomScoreAdj=-100), ("process.oomScoreAdj", "-100")),
        (proc(rlimits=[{"type": "RLIMIT_NOFILE", "hard": hard + 1, "soft": 64}]), ("process.rlimits[0]",)),
        (proc(user={"uid": 0, "gid": 0, "additionalGids": [0]}),
         ("cannot set any additional groups in a rootless container",)),
        (lin(sysctl={"net.ipv4.ip_forward": "1"}), ("net.ipv4.ip_forward",)),
        (lin(resources={"memory": {"limit": 100 << 20}}),
         ("linux.resources.memory.limit", "container could not join or create cgroup")),
    ]
    for edit, words in refused:
        res = rl.both(["true"], edit)
        _refused(res["runc"])
        _refused(res["ocirun"], *words)
    allowed = [
        (proc(oomScoreAdj=500), "cat /proc/self/oom_score_adj", "500"),
        (lin(sysctl={"kernel.shmmax": "12345678"}), "cat /proc/sys/kernel/shmmax", "12345678"),
        (proc(rlimits=[{"type": "RLIMIT_NOFILE", "hard": hard, "soft": 77}]), "ulimit -n", "77"),
    ]
    for edit, cmd, want in allowed:
        res = rl.both(["sh", "-c", cmd], edit)
        assert _ok(res["ocirun"]).stdout.strip() == _ok(res["runc"]).stdout.strip() == want


def test_devices_are_bind_mounts(rl):
    """No mknod without host privilege: the default nodes and linux.devices are bind mounts of the host's
    nodes (same type and numbers, shown as nobody's), usable, under both runtimes."""
    def edit(cfg):
        cfg["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666}]

    cmd = ("ls -ln /dev/null /dev/zero /dev/fuse | awk '{print $1, $3, $4, $5, $6, $10}'; "
           "head -c 4 /dev/zero | wc -c; grep -c ' /dev/null ' /proc/self/mountinfo")
    res = rl.both(["sh", "-c", cmd], edit)
    o, r = _ok(res["ocirun"]), _ok(res["runc"])
    assert o.stdout == r.stdout, f"ocirun:\n{o.stdout}\nrunc:\n{r.stdout}"
    lines = o.stdout.splitlines()
    mode = stat.filemode(os.stat("/dev/fuse").st_mode)  # (the host's node: its mode, not fileMode's)
    assert lines[0].split() == [mode, "65534", "65534", "10,", "229", "/dev/fuse"], o.stdout
    assert lines[-2:] == ["4", "1"]


# ------------------------------------------------------------------------------------------- cgroups
def test_cgroupless_container_verbs(rl):
    """Without a cgroup it may write, the container runs in the user's own cgroups (runc's rootless cgroup
    manager); ps, pause, update and events then fail with a clear line (runc: ps, pause, update fail with its
    own errors, events prints zeros: spec/EXTENSIONS.md); exec, kill and delete work."""
    b = rl.bundle(["sleep", "30"])
    c = rl.cid("nocg")
    _ok(rl.ocirun("run", "-d", "--bundle", b, c))
    pid = json.loads(_ok(rl.ocirun("state", c)).stdout)["pid"]
    with open(f"/proc/{pid}/cgroup") as f, open("/proc/self/cgroup") as g:
        # (the user's session is this test's: it runs in our cgroups, and the container stays there)
        assert f.read() == g.read()
    for args in (("ps", c), ("pause", c), ("update", "--pids-limit", "10", c), ("events", "--stats", c),
                 ("events", "--interval", "1s", c)):
        _refused(rl.ocirun(*args), f"container {c}", "no cgroup of its own", "rootless")
    assert json.loads(_ok(rl.ocirun("state", c)).stdout)["status"] == "running"
    _ok(rl.ocirun("exec", c, "true"))
    rc = rl.cid("nocg-r")
    _ok(rl.runc("run", "-d", "--bundle", b, rc))
    for args in (("ps", rc), ("pause", rc), ("update", "--pids-limit", "10", rc)):
        _refused(rl.runc(*args))
    _ok(rl.runc("events", "--stats", rc))
    for rt, x in (("ocirun", c), ("runc", rc)):
        _ok(rl.run(rt, "kill", x, "KILL"))
        _ok(rl.run(rt, "delete", "--force", x))


def test_cgroups_path_without_permission_is_an_error(rl):
    """With a cgroupsPath the rootless cgroup manager ignores nothing (runc): a path the user may not create
    is refused by both, and --rootless=false makes even the default path's permission error fatal."""
    def path(cfg):
        cfg["linux"]["cgroupsPath"] = f"/{rl.prefix}nope"

    res = rl.both(["true"], path)
    _refused(res["runc"], "permission denied")
    _refused(res["ocirun"], "cannot create cgroup", "permission denied")
    b = rl.bundle(["true"])
    _refused(rl.runc("--rootless=false", "run", "--bundle", b, rl.cid("rf")), "permission denied")
    _refused(rl.ocirun("--rootless=false", "run", "--bundle", b, rl.cid("of")), "permission denied")
    _refused(rl.ocirun("--rootless=maybe", "run", "--bundle", b, rl.cid("om")), "--rootless", "maybe")
    _refused(rl.runc("--rootless=maybe", "run", "--bundle", b, rl.cid("rm")))
    _ok(rl.ocirun("--rootless=true", "run", "--bundle", b, rl.cid("ot")))


@pytest.fixture
def delegated(rl):
    """A cgroup delegated to the user in every hierarchy (a directory of its own, with its files), as an
    administrator would give one: cgroupsPath /<name>/<id> then works rootless."""
    if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")):
        # (cgroup v2 lets a user move processes only between cgroups below one it may write: the test would have
        # to start the user's session in the delegated cgroup, as systemd's user@.service does)
        pytest.skip("host: cgroup v2; delegation to a user is tested on cgroup v1 (this project's VM)")
    name = f"{rl.prefix}deleg"
    made = []
    for entry in sorted(os.listdir(CGROUP_ROOT)):
        mp = os.path.join(CGROUP_ROOT, entry)
        if not os.path.ismount(mp):
            continue
        d = os.path.join(mp, name)
        os.mkdir(d)
        made.append(d)
        if os.path.exists(os.path.join(d, "cpuset.cpus")):
            for f in ("cpuset.cpus", "cpuset.mems"):
                with open(os.path.join(mp, f)) as src, open(os.path.join(d, f), "w") as dst:
                    dst.write(src.read())
        _chown_tree(d, rl.user.uid, rl.user.gid)
    yield name
    for d in made:
        for sub in sorted((os.path.join(d, x) for x in os.listdir(d) if os.path.isdir(os.path.join(d, x))),
                          reverse=True):
            try:
                os.rmdir(sub)
            except OSError:
                pass
        os.rmdir(d)


def test_delegated_cgroup(rl, delegated):
    """With a cgroup delegated to the user, both runtimes make the container's cgroup there, apply a limit
    (device rules ignored), and ps, pause/resume, update and events work; delete removes the cgroup."""
    def edit(cfg):
        cfg["linux"]["resources"] = {"pids": {"limit": 50}}

    b = rl.bundle(["sleep", "30"], edit)
    for rt in ("ocirun", "runc"):
        c = rl.cid(rt[0])
        cfg = rl.config(b)
        cfg["linux"]["cgroupsPath"] = f"/{delegated}/{c}"
        rl.save(b, cfg)
        _ok(rl.run(rt, "run", "-d", "--bundle", b, c))
        pid = json.loads(_ok(rl.run(rt, "state", c)).stdout)["pid"]
        with open(f"/proc/{pid}/cgroup") as f:
            cg = f.read()
        assert f"pids:/{delegated}/{c}\n" in cg and f"freezer:/{delegated}/{c}\n" in cg, (rt, cg)
        with open(f"{CGROUP_ROOT}/pids/{delegated}/{c}/pids.max") as f:
            assert f.read().strip() == "50", rt
        ps = json.loads(_ok(rl.run(rt, "ps", "--format", "json", c)).stdout)
        assert ps == [pid], (rt, ps)
        _ok(rl.run(rt, "pause", c))
        assert json.loads(_ok(rl.run(rt, "state", c)).stdout)["status"] == "paused", rt
        _ok(rl.run(rt, "resume", c))
        _ok(rl.run(rt, "update", "--pids-limit", "20", c))
        with open(f"{CGROUP_ROOT}/pids/{delegated}/{c}/pids.max") as f:
            assert f.read().strip() == "20", rt
        ev = json.loads(_ok(rl.run(rt, "events", "--stats", c)).stdout)
        assert ev["data"]["pids"]["current"] >= 1, (rt, ev)
        _ok(rl.run(rt, "delete", "--force", c))
        assert not os.path.exists(f"{CGROUP_ROOT}/pids/{delegated}/{c}"), rt


# ------------------------------------------------------------------------------------------- security
def test_container_cannot_write_what_the_user_cannot(rl):
    """The container's root is the user: a host file the user may not write (root's, bind-mounted rw) stays
    as it is, and cannot be chowned or chmodded, under both runtimes."""
    d = rl.scratch("hostfiles", owner=(0, 0))
    target = os.path.join(d, "rootfile")
    with open(target, "w") as f:
        f.write("root's\n")
    os.chmod(target, 0o644)

    def edit(cfg):
        cfg["mounts"].append({"destination": "/h", "type": "bind", "source": d, "options": ["bind", "rw"]})

    cmd = ("for a in 'echo x >> /h/rootfile' 'chmod 666 /h/rootfile' 'chown 0 /h/rootfile' 'touch /h/new' "
           "'rm /h/rootfile'; do sh -c \"$a\" 2>/dev/null && echo \"$a: done\" || echo \"$a: refused\"; done")
    res = rl.both(["sh", "-c", cmd], edit)
    o, r = _ok(res["ocirun"]), _ok(res["runc"])
    assert o.stdout == r.stdout, (o.stdout, r.stdout)
    assert "done" not in o.stdout and o.stdout.count("refused") == 5, o.stdout
    with open(target) as f:
        assert f.read() == "root's\n"
    st = os.stat(target)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o644) and os.listdir(d) == ["rootfile"]


def test_other_users_state_is_out_of_reach(rl, tmp_path):
    """Root's state (/run/ocirun, 0700) cannot be read or changed by the user (the kernel); a state root
    that is someone else's, or a container directory in the user's own root that is not the user's, or a
    symbolic link there, is refused by ocirun whatever its modes (runc would act on it, spec/EXTENSIONS.md):
    nothing named by it is signalled or removed."""
    _refused(rl.ocirun("--root", "/run/ocirun", "list"), "Permission denied")
    _refused(rl.ocirun("--root", "/run/ocirun", "delete", "--force", "x"))
    # someone else's (here root's) state root, open to all: refused, not used
    shared = rl.scratch("sharedroot", mode=0o1777, owner=(0, 0))
    b = rl.bundle(["true"])
    _refused(rl.ocirun("--root", shared, "run", "--bundle", b, rl.cid("sh")), "--root", "owned by uid 0",
             "not by the caller")
    assert os.listdir(shared) == []
    # a record planted in the user's own root by someone else (root here): it names a process of the host
    # and a directory to remove; ocirun refuses to act on it
    root = rl.scratch("myroot", mode=0o700)
    victim = subprocess.Popen(["sleep", "30"], user=rl.user.uid, group=rl.user.gid, extra_groups=[])
    try:
        planted = os.path.join(root, "planted")
        os.mkdir(planted, 0o755)
        with open(os.path.join(planted, "state.json"), "w") as f:
            json.dump({"id": "planted", "status": "running", "pid": victim.pid, "bundle": b,
                       "config": {"ociVersion": "1.3.0"}}, f)
        for args in (("kill", "planted", "KILL"), ("delete", "--force", "planted"), ("state", "planted")):
            _refused(rl.ocirun("--root", root, *args), "planted", "owned by uid 0", "not by the caller")
        assert victim.poll() is None and os.path.isdir(planted)
        os.symlink(planted, os.path.join(root, "link"))
        _refused(rl.ocirun("--root", root, "delete", "--force", "link"), "symbolic link")
        assert os.path.isdir(planted) and victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_bundle_another_user_controls_is_refused(rl):
    """A bundle or config.json that is not the user's (or root's), or that its group or others may write, is
    refused before anything exists: its hooks would run as the user (runc runs them, spec/EXTENSIONS.md)."""
    b = rl.bundle(["true"])
    cfgp = os.path.join(b, "config.json")
    cases = [
        (lambda: os.chown(b, 65534, 65534), lambda: os.chown(b, rl.user.uid, rl.user.gid),
         ("bundle", "owned by uid 65534")),
        (lambda: os.chown(cfgp, 65534, 65534), lambda: os.chown(cfgp, rl.user.uid, rl.user.gid),
         ("config.json", "owned by uid 65534")),
        (lambda: os.chmod(cfgp, 0o666), lambda: os.chmod(cfgp, 0o644), ("config.json", "writable", "0666")),
        (lambda: os.chmod(b, 0o775), lambda: os.chmod(b, 0o755), ("bundle", "writable", "0775")),
    ]
    for spoil, mend, words in cases:
        spoil()
        try:
            c = rl.cid("bd")
            _refused(rl.ocirun("run", "--bundle", b, c), *words)
            chk = rl.ocirun("check", b)
            assert chk.returncode == 1 and all(w in chk.stdout for w in words), str(chk)
            assert not os.path.exists(os.path.join(rl.user.xdg, "ocirun", c))
            _ok(rl.runc("run", "--bundle", b, rl.cid("rbd")))  # runc runs it
        finally:
            mend()
    _ok(rl.ocirun("run", "--bundle", b, rl.cid("fine")))
    # a root-owned bundle (root may do anything anyway) is fine
    os.chown(cfgp, 0, 0)
    _ok(rl.ocirun("run", "--bundle", b, rl.cid("rootcfg")))
