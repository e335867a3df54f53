"""Bad input never hangs or floods the machine (issue: what runc's own suite found).

Every size, range and count read from config.json is bounded before it is used, and every wait on the kernel
has a bound: a refusal comes within a second, with one line, and ocirun's memory stays small.
"""
import os
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from relhelp import one_line_error

MAX_SECONDS = 1.0
MAX_RSS_KB = 200 * 1024  # a normal create peaks near 30 MB here; the memoryPolicy flood reached 8.8 GB


def _timed_create(ocirun_bin, root, bundle_dir, cid):
    """create as a child of a helper process, so that its peak RSS is measured alone (RUSAGE_CHILDREN)."""
    # files, not pipes, for create's stdio: the created container inherits them and keeps a pipe open
    code = ("import os, resource, subprocess, sys, tempfile, time\n"
            "with tempfile.TemporaryFile('w+') as err, open(os.devnull, 'w') as null:\n"
            "    t = time.monotonic()\n"
            "    p = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=null, stderr=err, timeout=30)\n"
            "    dt = time.monotonic() - t\n"
            "    err.seek(0)\n"
            "    msg = err.read()\n"
            "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
            "sys.stdout.write(f'{p.returncode}\\n{dt}\\n{rss}\\n' + msg)\n")
    out = subprocess.run([sys.executable, "-c", code, ocirun_bin, "--root", root, "create", "--bundle", bundle_dir,
                          cid], capture_output=True, text=True, timeout=60).stdout
    rc, dt, rss, err = out.split("\n", 3)
    return int(rc), float(dt), int(rss), err


def _cleanup(ocirun_bin, root, cid):
    subprocess.run([ocirun_bin, "--root", root, "delete", "--force", cid], capture_output=True)


class _R:
    def __init__(self, rc, err):
        self.returncode, self.stderr, self.stdout = rc, err, ""

    def __str__(self):
        return f"exit {self.returncode}: {self.stderr}"


def test_frozen_cgroup_refused_not_waited_for(oci, bundle, cid):
    """A cgroupsPath whose v1 freezer is FROZEN: the init would stop in the refrigerator and create would wait
    for it forever; it is refused at once (runc: "container's cgroup unexpectedly frozen")."""
    fz = "/sys/fs/cgroup/freezer"
    if not os.path.isdir(fz):
        pytest.skip("host: no cgroup v1 freezer hierarchy")
    name = f"{cid('')}frozen"
    d = os.path.join(fz, name)
    os.mkdir(d)
    try:
        with open(os.path.join(d, "freezer.state"), "w") as f:
            f.write("FROZEN")
        b = bundle(["true"], edit=lambda c: c["linux"].update(cgroupsPath="/" + name))
        t = time.monotonic()
        res = oci("create", "--bundle", b, cid(), timeout=20)
        assert time.monotonic() - t < 5, res
        one_line_error(res)
        assert res.returncode != 0 and "frozen" in res.stderr, res
        with open(os.path.join(d, "freezer.state")) as f:
            assert f.read().strip() == "FROZEN"  # untouched: not ours
    finally:
        with open(os.path.join(d, "freezer.state"), "w") as f:
            f.write("THAWED")
        os.rmdir(d)


_big = st.integers(min_value=0, max_value=1 << 64)
_list_part = st.one_of(
    st.builds(lambda a: f"{a}", _big),
    st.builds(lambda a, b: f"{a}-{b}", _big, _big),
    st.sampled_from(["0-9876543210", "0-4294967295", "1-0", "x", "-", "0--1", ",", "0-1,3-99999999"]),
)
_cpu_list = st.lists(_list_part, min_size=1, max_size=4).map(",".join)


@st.composite
def _hostile(draw):
    """One bounded-looking field with an unbounded value."""
    kind = draw(st.sampled_from(["cpus", "mems", "nodes", "affinity", "mapping", "rlimit", "pids", "hugepage"]))
    if kind == "cpus":
        return kind, lambda c, v=draw(_cpu_list): c["linux"].setdefault("resources", {}).setdefault(
            "cpu", {}).update(cpus=v)
    if kind == "mems":
        return kind, lambda c, v=draw(_cpu_list): c["linux"].setdefault("resources", {}).setdefault(
            "cpu", {}).update(mems=v)
    if kind == "nodes":
        return kind, lambda c, v=draw(_cpu_list): c["linux"].update(memoryPolicy={"mode": "MPOL_BIND", "nodes": v})
    if kind == "affinity":
        return kind, lambda c, v=draw(_cpu_list): c["process"].update(execCPUAffinity={"initial": v})
    if kind == "mapping":
        size = draw(st.integers(min_value=1 << 20, max_value=(1 << 32) - 1))
        count = draw(st.integers(min_value=1, max_value=400))

        def edit(c, size=size, count=count):
            c["linux"]["namespaces"].append({"type": "user"})
            c["linux"]["uidMappings"] = [{"containerID": i, "hostID": 100000 + i, "size": size} for i in range(count)]
            c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": size}]
        return kind, edit
    if kind == "rlimit":
        soft, hard = draw(_big), draw(_big)
        return kind, lambda c, s=soft, h=hard: c["process"].update(
            rlimits=[{"type": "RLIMIT_NOFILE", "soft": min(s, (1 << 64) - 1), "hard": min(h, (1 << 64) - 1)}])
    if kind == "pids":
        return kind, lambda c, v=draw(st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)): \
            c["linux"].setdefault("resources", {}).update(pids={"limit": v})
    return kind, lambda c, v=draw(_big): c["linux"].setdefault("resources", {}).update(
        hugepageLimits=[{"pageSize": "2MB", "limit": min(v, (1 << 64) - 1)}])


def test_fuzz_ranges_and_counts_bounded(ocirun_bin, state_root, bundle, cid):
    """Hostile CPU/NUMA lists, mapping sizes and counts, rlimits, pids and hugepage limits: whatever the verdict,
    create answers within a second and ocirun's peak RSS stays bounded (a run that is accepted is deleted)."""
    outcomes = {"refused": 0, "ran": 0}

    @settings(max_examples=60, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(_hostile())
    def check(case):
        kind, edit = case
        b = bundle(["true"], edit=edit)
        c = cid()
        try:
            rc, dt, rss, err = _timed_create(ocirun_bin, state_root, b, c)
        finally:
            _cleanup(ocirun_bin, state_root, c)
        assert dt < MAX_SECONDS, (kind, dt, err)
        assert rss < MAX_RSS_KB, (kind, rss, err)
        if rc != 0:
            one_line_error(_R(rc, err))
            outcomes["refused"] += 1
        else:
            outcomes["ran"] += 1

    check()
    # the generator is hostile by design: most cases must be refused, and the test saw both outcomes' paths
    assert outcomes["refused"] >= 30, outcomes
