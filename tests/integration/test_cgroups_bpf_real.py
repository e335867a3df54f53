"""The eBPF device program on the real kernel (root).

This host is cgroup v1 hybrid, but /sys/fs/cgroup/unified is a real cgroup2 mount and device programs attach to
any cgroup2 directory. The processes checked here stay in the host's v1 devices cgroup (which allows everything),
so whatever is refused is refused by the program. Each check forks a child that moves itself into the cgroup
(cgroup.procs) and reports what open(2)/mknod(2) returned."""
import errno
import json
import os
import stat

import pytest

from ocirun import cgroups
from ocirun.cgroups import bpf, devices, v2

UNIFIED = "/sys/fs/cgroup/unified"


def _have_unified():
    try:
        with open("/proc/self/mountinfo") as f:
            return any(f" {UNIFIED} " in ln and " - cgroup2 " in ln for ln in f)
    except OSError:
        return False


pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: loads eBPF programs, creates real cgroups"),
    pytest.mark.skipif(not _have_unified() and not os.path.exists("/sys/fs/cgroup/cgroup.controllers"),
                       reason="no cgroup2 hierarchy on this host"),
]

DENY_ALL = [{"allow": False, "access": "rwm"}]


def _cg2_root():
    return UNIFIED if _have_unified() else "/sys/fs/cgroup"


@pytest.fixture
def cgdir(id_prefix):
    made = []

    def make(tag="d"):
        d = f"{_cg2_root()}/{id_prefix}bpf-{tag}-{len(made)}"
        os.mkdir(d)
        made.append(d)
        return d
    yield make
    for d in reversed(made):
        if not os.path.isdir(d):
            continue
        try:
            bpf.remove(d)
        except cgroups.CgroupError:
            pass
        os.rmdir(d)


class Child:
    """A forked process inside the cgroup that runs checks on request: [op, ...] -> ["ok" | errno name]."""

    def __init__(self, cg):
        self.req_r, self.req_w = os.pipe()
        self.res_r, self.res_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            code = 1
            try:
                with open(cg + "/cgroup.procs", "w") as f:
                    f.write(str(os.getpid()))
                self._serve()
                code = 0
            finally:
                os._exit(code)
        os.close(self.req_r)
        os.close(self.res_w)
        self.rf = os.fdopen(self.res_r, "r")

    def _serve(self):
        os.close(self.req_w)
        os.close(self.res_r)
        with os.fdopen(self.req_r, "r") as req, os.fdopen(self.res_w, "w") as res:
            for line in req:
                out = []
                for op in json.loads(line):
                    try:
                        if op[0] == "open":
                            os.close(os.open(op[1], op[2] | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK))
                        elif op[0] == "mknod":
                            os.mknod(op[1], op[2] | 0o600, os.makedev(op[3], op[4]))
                            os.unlink(op[1])
                        out.append("ok")
                    except OSError as e:
                        out.append(errno.errorcode.get(e.errno, str(e.errno)))
                res.write(json.dumps(out) + "\n")
                res.flush()

    def check(self, *ops):
        os.write(self.req_w, (json.dumps(ops) + "\n").encode())
        return json.loads(self.rf.readline())

    def close(self):
        if self.pid is None:
            return
        os.close(self.req_w)
        self.rf.close()
        _pid, status = os.waitpid(self.pid, 0)
        self.pid = None
        assert os.waitstatus_to_exitcode(status) == 0


@pytest.fixture
def child():
    kids = []

    def start(cg):
        c = Child(cg)
        kids.append(c)
        return c
    yield start
    for c in kids:
        try:
            c.close()
        except (OSError, ValueError):
            pass


RD, RW, WR = os.O_RDONLY, os.O_RDWR, os.O_WRONLY
CHR, BLK = stat.S_IFCHR, stat.S_IFBLK


def _fds():
    return set(os.listdir("/proc/self/fd"))


def test_deny_all_allow_null(cgdir, child, tmp_path):
    d = cgdir()
    fds = _fds()
    pid = bpf.install(d, devices.build(DENY_ALL + [{"allow": True, "type": "c", "major": 1, "minor": 3,
                                                     "access": "rw"}], default_devices=False))
    assert _fds() == fds                         # the program fd was closed: the attachment holds it
    assert bpf.attached(d) == [pid]
    c = child(d)
    n = str(tmp_path / "n")
    assert c.check(["open", "/dev/null", RW], ["open", "/dev/null", RD], ["open", "/dev/zero", RD],
                   ["open", "/dev/zero", WR], ["open", "/dev/full", RD], ["mknod", n, CHR, 1, 3]) == \
        ["ok", "ok", "EPERM", "EPERM", "EPERM", "EPERM"]
    # the parent (not in the cgroup) is unaffected
    os.close(os.open("/dev/zero", RD))


def test_runc_default_devices(cgdir, child, tmp_path):
    d = cgdir()
    bpf.install(d, devices.build(DENY_ALL))          # + runc's default allow-list
    blk = str(tmp_path / "blk")
    os.mknod(blk, BLK | 0o600, os.makedev(8, 0))     # made outside the cgroup
    c = child(d)
    res = c.check(["open", "/dev/null", RW], ["open", "/dev/zero", RW], ["open", "/dev/full", RW],
                  ["open", "/dev/random", RD], ["open", "/dev/urandom", RD], ["open", "/dev/ptmx", RW],
                  ["open", "/dev/kmsg", RD], ["open", "/dev/loop0", RD], ["open", blk, RD],
                  ["mknod", str(tmp_path / "m1"), CHR, 1, 3], ["mknod", str(tmp_path / "m2"), BLK, 8, 0],
                  ["mknod", str(tmp_path / "m3"), CHR, 242, 7])
    assert res == ["ok"] * 6 + ["EPERM", "EPERM", "EPERM", "ok", "ok", "ok"]


def test_wildcards(cgdir, child, tmp_path):
    d = cgdir()
    rules = DENY_ALL + [{"allow": True, "type": "c", "access": "m"},
                        {"allow": True, "type": "b", "major": 8, "minor": None, "access": "r"}]
    bpf.install(d, devices.build(rules, default_devices=False))
    b80, b93 = str(tmp_path / "b80"), str(tmp_path / "b93")
    os.mknod(b80, BLK | 0o600, os.makedev(8, 0))
    os.mknod(b93, BLK | 0o600, os.makedev(9, 3))
    c = child(d)
    res = c.check(["mknod", str(tmp_path / "c1"), CHR, 1, 3], ["mknod", str(tmp_path / "c2"), CHR, 200, 9],
                  ["mknod", str(tmp_path / "b1"), BLK, 8, 0],
                  ["open", b80, RD], ["open", b80, RW], ["open", b93, RD], ["open", "/dev/null", RD])
    # b 8:0 read is allowed by the program; the device itself does not exist here (ENXIO) or opens
    assert res[:3] == ["ok", "ok", "EPERM"]
    assert res[3] in ("ENXIO", "ok", "ENODEV")
    assert res[4:] == ["EPERM", "EPERM", "EPERM"]


def test_blacklist(cgdir, child):
    d = cgdir()
    bpf.install(d, devices.build([{"allow": True, "access": "rwm"},
                                  {"allow": False, "type": "c", "major": 1, "minor": 5, "access": "w"}],
                                 default_devices=False))
    c = child(d)
    assert c.check(["open", "/dev/zero", RD], ["open", "/dev/zero", WR], ["open", "/dev/zero", RW],
                   ["open", "/dev/null", RW]) == ["ok", "EPERM", "EPERM", "ok"]


def test_update_replaces_program_for_running_process(cgdir, child):
    d = cgdir()
    first = bpf.install(d, devices.build(DENY_ALL, default_devices=False))
    c = child(d)
    assert c.check(["open", "/dev/null", RD], ["open", "/dev/zero", RD]) == ["EPERM", "EPERM"]
    second = bpf.install(d, devices.build(DENY_ALL + [{"allow": True, "type": "c", "major": 1, "minor": 5,
                                                       "access": "r"}], default_devices=False))
    assert second != first and bpf.attached(d) == [second]
    assert c.check(["open", "/dev/null", RD], ["open", "/dev/zero", RD], ["open", "/dev/zero", RW]) == \
        ["EPERM", "ok", "EPERM"]
    # several programs attached (someone else's too): install leaves only its own
    extra = bpf.load(bpf.program(devices.Model(True)))
    try:
        cg = bpf.open_cgroup(d)
        try:
            bpf.attach(cg, extra)
        finally:
            os.close(cg)
    finally:
        os.close(extra)
    assert len(bpf.attached(d)) == 2
    third = bpf.install(d, devices.build(None))
    assert bpf.attached(d) == [third]
    assert c.check(["open", "/dev/null", RD], ["open", "/dev/kmsg", RD]) == ["ok", "EPERM"]
    bpf.remove(d)
    assert bpf.attached(d) == []
    assert c.check(["open", "/dev/kmsg", RD]) == ["ok"]


def test_v2_driver_enforces(id_prefix, child):
    root = _cg2_root()
    inner = f"/{id_prefix}bpf-drv"
    m = v2.V2Manager("t", inner, root, root + inner)
    m.create()
    try:
        m.apply({"devices": DENY_ALL + [{"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"}]})
        assert len(bpf.attached(m.dir)) == 1
        c = child(m.dir)
        assert c.check(["open", "/dev/null", RW], ["open", "/dev/kmsg", RD]) == ["ok", "EPERM"]
        m2 = cgroups.manager_from_dict(json.loads(json.dumps(m.to_dict())))
        m2.update({"devices": [{"allow": True, "access": "rwm"}]})
        assert len(bpf.attached(m.dir)) == 1
        assert c.check(["open", "/dev/kmsg", RD]) == ["ok"]
        m2.update({"pids": {}})                               # no devices: the program stays
        assert c.check(["open", "/dev/kmsg", RD]) == ["ok"]
        c.close()
    finally:
        m.destroy(force=True)
    assert not os.path.exists(m.dir)


def test_verifier_rejection_is_one_line():
    with pytest.raises(cgroups.CgroupError) as ei:
        bpf.load([(bpf.OP_MOV64_K, 0, 0, 0, 2), (bpf.OP_EXIT, 0, 0, 0, 0)])
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg.startswith("linux.resources.devices: the kernel rejected the eBPF device program: ")
    assert "R0" in msg
    with pytest.raises(cgroups.CgroupError, match=r"cannot list the eBPF device programs of /tmp "
                       r"\(bpf\(BPF_PROG_QUERY\)\): bad file descriptor \(not a cgroup2 directory\)$"):
        bpf.install("/tmp", devices.build(None))
