"""Regressions from runc's bats `update.bats` (tests runc main passes and ocirun failed), on real containers:
the values are read from the container's cgroup files on the host and from inside the container.

- "update cgroup v1/v2 common limits": `--memory 60M --memory-swap 80M` after `--memory 30M --memory-swap 50M`
  (the new limit is above the old memsw limit: memsw must be raised first; runc's setMemoryAndSwap).
- "update rt period and runtime": `--cpu-rt-period 10000 --cpu-rt-runtime 3000` after 900001/600001 (the new
  period is below the old runtime: the runtime must go first; runc's SetRtSched, runc issue 4094).
- "update devices [minimal transition rules]": a device rule with access "rwa" (runc ignores the letters other
  than r, w, m), and 30 updates that must never disturb the container's device access.
Where runc 1.1.5 (this host's) behaves as runc main, the same steps run under it in the same test.
"""
import os

import pytest

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates real containers")]

CG = "/sys/fs/cgroup"
M = 1 << 20


def _runtimes(oci, runc):
    return [("ocirun", oci), ("runc", runc)]


def _host_dir(r, c, ctrl):
    """The container's directory in the v1 hierarchy of `ctrl`, from its init's /proc/PID/cgroup."""
    pid = r.state(c)["pid"]
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _hid, ctrls, path = line.rstrip("\n").split(":", 2)
            if ctrl in ctrls.split(","):
                return f"{CG}/{ctrl}{path}"
    raise AssertionError(f"{c}: no {ctrl} hierarchy in /proc/{pid}/cgroup")


def _read(path):
    with open(path) as f:
        return f.read().strip()


def _values(r, c, ctrl, files):
    """{file: (host value, value seen inside the container)}."""
    d = _host_dir(r, c, ctrl)
    out = {}
    for f in files:
        res = r("exec", c, "cat", f"/sys/fs/cgroup/{ctrl}/{f}")
        assert res.returncode == 0, str(res)
        out[f] = (_read(f"{d}/{f}"), res.stdout.strip())
    return out


def _both(v):
    return (str(v), str(v))


# ============================================================================ memory + memsw
MEMSW = "memory.memsw.limit_in_bytes"


@pytest.mark.skipif(not os.path.exists(f"{CG}/memory/{MEMSW}"), reason="host: no swap accounting (memsw)")
def test_update_memory_above_the_old_memsw_limit(oci, runc, bundle, cid):
    def edit(cfg):
        cfg["linux"]["resources"] = {"memory": {"limit": 32 * M, "reservation": 24 * M}, "pids": {"limit": 20}}

    b = bundle(["sleep", "1000"], edit=edit)
    files = ["memory.limit_in_bytes", MEMSW]
    for name, r in _runtimes(oci, runc):
        c = cid()
        assert r("run", "-d", "--bundle", b, c).returncode == 0, name
        try:
            res = r("update", c, "--memory", "30M", "--memory-swap", "50M")
            assert res.returncode == 0, (name, str(res))
            assert _values(r, c, "memory", files) == {files[0]: _both(30 * M), MEMSW: _both(50 * M)}, name
            # the new limit (60M) is above the current memsw (50M): memsw first
            res = r("update", c, "--memory", "60M", "--memory-swap", "80M")
            assert res.returncode == 0, (name, str(res))
            assert _values(r, c, "memory", files) == {files[0]: _both(60 * M), MEMSW: _both(80 * M)}, name
            # and down again below the old limit: the limit first
            res = r("update", c, "--memory", "20M", "--memory-swap", "40M")
            assert res.returncode == 0, (name, str(res))
            assert _values(r, c, "memory", files) == {files[0]: _both(20 * M), MEMSW: _both(40 * M)}, name
        finally:
            r("delete", "--force", c)


# ============================================================================ realtime period and runtime
RT = ["cpu.rt_period_us", "cpu.rt_runtime_us"]


@pytest.fixture
def rt_parent(cid):
    """A parent cpu cgroup holding the root's realtime budget (a new cgroup has cpu.rt_runtime_us 0, which
    leaves none for a child), as update.bats makes one; removed after the test."""
    if not os.path.exists(f"{CG}/cpu/cpu.rt_runtime_us"):
        pytest.skip("host: no CONFIG_RT_GROUP_SCHED (cpu.rt_runtime_us)")
    name = cid("rt")
    d = f"{CG}/cpu/{name}"
    os.mkdir(d)
    try:
        for f in RT:
            with open(f"{d}/{f}", "w") as fh:
                fh.write(_read(f"{CG}/cpu/{f}"))
        yield "/" + name
    finally:
        for _ in range(2):
            try:
                os.rmdir(d)
            except FileNotFoundError:
                break
            except OSError:
                # the container's leaf is normally gone with `delete`; this only undoes a failed test
                for sub in os.listdir(d):
                    if os.path.isdir(f"{d}/{sub}"):
                        os.rmdir(f"{d}/{sub}")


def test_update_rt_period_below_the_current_runtime(oci, bundle, cid, rt_parent):
    """runc main passes these steps (1.1.5 fails the 10000/3000 one: runc issue 4094, fixed in 1.2)."""
    c = cid()

    def edit(cfg):
        cfg["linux"]["cgroupsPath"] = f"{rt_parent}/{c}"
        cfg["linux"]["resources"] = {"cpu": {"realtimePeriod": 1000000, "realtimeRuntime": 500001}}

    b = bundle(["sleep", "1000"], edit=edit)
    assert oci("run", "-d", "--bundle", b, c).returncode == 0
    try:
        assert _values(oci, c, "cpu", RT) == {RT[0]: _both(1000000), RT[1]: _both(500001)}
        for period, runtime in ((900001, 600001), (10000, 3000), (100000, 20000), (50000, 40000), (60000, 10000)):
            res = oci("update", c, "--cpu-rt-period", period, "--cpu-rt-runtime", runtime)
            assert res.returncode == 0, (period, runtime, str(res))
            assert _values(oci, c, "cpu", RT) == {RT[0]: _both(period), RT[1]: _both(runtime)}, (period, runtime)
        # the same through --resources, lowering the period below the runtime again
        res = oci("update", "-r", "-", c, input='{"cpu": {"realtimePeriod": 5000, "realtimeRuntime": 1000}}')
        assert res.returncode == 0, str(res)
        assert _values(oci, c, "cpu", RT) == {RT[0]: _both(5000), RT[1]: _both(1000)}
        # a period alone below the current runtime stays the kernel's refusal, named
        res = oci("update", c, "--cpu-rt-period", 500)
        assert res.returncode == 1 and res.stderr.strip() == (
            "ocirun: linux.resources.cpu.realtimePeriod: cannot write '500' to cpu.rt_period_us: invalid argument "
            "(value rejected by the kernel)"), str(res)
        assert _values(oci, c, "cpu", RT) == {RT[0]: _both(5000), RT[1]: _both(1000)}
    finally:
        oci("delete", "--force", c)


# ============================================================================ device rules
KMSG_LOOP = "while true; do head -c 100 /dev/kmsg 2> /dev/null; done"


def _kmsg_config(cfg):
    cfg["linux"]["resources"] = {"devices": [{"allow": False, "access": "rwm"},
                                             {"allow": False, "type": "c", "major": 1, "minor": 11,
                                              "access": "rwa"}]}
    cfg["linux"]["devices"] = [{"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11}]
    for k in ("bounding", "effective", "permitted"):
        cfg["process"]["capabilities"][k].append("CAP_SYSLOG")


def test_device_rule_rwa_and_updates_never_disturb_device_access(oci, runc, bundle, cid, tmp_path):
    """update.bats [minimal transition rules]: /dev/kmsg denied (its rule's access "rwa" is "rw" plus nothing),
    /dev/null allowed, and 30 `update --pids-limit 30` never make either answer otherwise, not even for a
    moment: the loop's output (stdout and stderr) must stay empty."""
    b = bundle(["sh", "-c", KMSG_LOOP], edit=_kmsg_config)
    assert oci("check", b).returncode == 0
    for name, r in _runtimes(oci, runc):
        c = cid()
        out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        assert r("run", "-d", "--bundle", b, c, stdout=out, stderr=err).returncode == 0, name
        try:
            ddir = _host_dir(r, c, "devices")
            before = _read(f"{ddir}/devices.list")
            assert "c 1:11" not in before and "c 1:3 rwm" in before, (name, before)
            for _ in range(30):
                res = r("update", "--pids-limit", "30", c)
                assert res.returncode == 0, (name, str(res))
            assert _read(f"{_host_dir(r, c, 'pids')}/pids.max") == "30", name
            assert _read(f"{ddir}/devices.list") == before, name
            # from inside: kmsg refused (read and write), null usable
            res = r("exec", c, "sh", "-c", "head -c 1 /dev/kmsg; echo x > /dev/kmsg; echo ok > /dev/null && echo fine")
            assert res.stdout.strip() == "fine", (name, str(res))
            assert res.stderr.count("Operation not permitted") == 2, (name, str(res))
            assert r("kill", c, "KILL").returncode == 0
        finally:
            r("delete", "--force", c)
        assert (out.read_text(errors="replace"), err.read_text(errors="replace")) == ("", ""), name


@pytest.mark.parametrize("rule,message,runc_says", [
    ({"allow": True, "type": "c", "major": 1, "minor": 11, "access": ""},
     "/linux/resources/devices/1/access: must not be empty (a combination of r, w, m)",
     "device access at 1 field cannot be empty"),
    ({"allow": True, "type": "c", "major": 1, "minor": 11},
     "/linux/resources/devices/1/access: required (a combination of r, w, m)",
     "device access at 1 field cannot be empty"),
    ({"allow": True, "type": "c", "major": 1, "minor": 11, "access": "x"},
     "/linux/resources/devices/1/access: names none of r, w, m: an allow rule for c 1:11 that grants nothing "
     "cannot be written to the cgroup v1 devices controller",
     "resulting devices cgroup doesn't precisely match target"),
])
def test_device_access_runc_refuses_is_refused_by_check_and_create(oci, runc, bundle, cid, rule, message,
                                                                    runc_says):
    """runc refuses a missing or empty access (specconv) and, on cgroup v1, an allow rule whose access has none
    of r, w, m; `ocirun check` and `create` give the same verdict before anything is made."""
    if not os.path.isdir(f"{CG}/devices") and "none of" in message:
        pytest.skip("host: not cgroup v1 (runc accepts that rule on v2)")

    def edit(cfg):
        cfg["linux"]["resources"] = {"devices": [{"allow": False, "access": "rwm"}, rule]}

    b = bundle(["true"], edit=edit)
    res = oci("check", b)
    assert res.returncode == 1 and res.stdout.strip() == f"error: {message}", str(res)
    c = cid()
    res = oci("create", "--bundle", b, c)
    assert res.returncode == 1 and res.stderr.strip() == f"ocirun: config.json: {message}", str(res)
    assert oci.state(c) is None
    c2 = cid()
    res = runc("run", "--bundle", b, c2)
    runc("delete", "--force", c2)
    assert res.returncode != 0 and runc_says in res.stderr, str(res)
