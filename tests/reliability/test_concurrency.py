"""Concurrency and load: many containers at once, two creates of one id, verbs racing on one container.

Every command is a separate `ocirun` process (as engines run it), driven from a thread pool. Afterwards the
shared leak checker compares mounts, cgroups, processes and the state root with before the test.
"""
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from relhelp import alive, cgroup_dirs, no_traceback

N_CONTAINERS = 100
WORKERS = 12


def _bad_output(res):
    """Problems with a finished command's output: a traceback, or stderr lines that are not `ocirun: ...`."""
    out = []
    if "Traceback" in res.stderr or "Traceback" in res.stdout:
        out.append("traceback")
    stray = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith("ocirun: ")]
    if stray:
        out.append(f"stray stderr lines {stray[:3]!r}")
    return out


@pytest.mark.slow
def test_100_containers_created_started_deleted_concurrently(oci, bundle, cid):
    """100 containers, each created, started, inspected and force-deleted by separate CLI processes, 12 at a
    time, all from one bundle: no failure, and nothing left."""
    b = bundle(["sleep", "1000"])
    ids = [cid() for _ in range(N_CONTAINERS)]
    failures = []
    lock = threading.Lock()
    durations = []

    def one(c):
        t0 = time.monotonic()
        steps = [("create", "--bundle", b, c), ("start", c), ("state", c), ("delete", "--force", c)]
        for args in steps:
            res = oci(*args, timeout=60)
            probs = _bad_output(res)
            if res.returncode != 0 or probs:
                with lock:
                    failures.append(f"{args[0]} {c}: exit {res.returncode} {probs} {res.stderr.strip()[:300]!r}")
                oci("delete", "--force", c, timeout=60)
                return
            if args[0] == "state":
                st = json.loads(res.stdout)
                if st["status"] != "running" or not alive(st["pid"]):
                    with lock:
                        failures.append(f"state {c}: {st['status']} pid {st.get('pid')}")
        with lock:
            durations.append(time.monotonic() - t0)

    t0 = time.monotonic()
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(one, ids))
    wall = time.monotonic() - t0
    durations.sort()
    print(f"\n[concurrency] {N_CONTAINERS} containers x (create, start, state, delete -f), {WORKERS} workers: "
          f"wall {wall:.1f}s, {N_CONTAINERS / wall:.1f} containers/s, per-container median "
          f"{durations[len(durations) // 2] if durations else float('nan'):.2f}s max "
          f"{durations[-1] if durations else float('nan'):.2f}s, failures {len(failures)}")
    assert not failures, f"{len(failures)} of {N_CONTAINERS} failed:\n  " + "\n  ".join(failures[:20])
    assert os.listdir(oci.root) == [], os.listdir(oci.root)
    assert not cgroup_dirs(cid.prefix), sorted(cgroup_dirs(cid.prefix))[:10]


@pytest.mark.parametrize("n", [2, 6])
def test_same_id_created_at_once_exactly_one_wins(oci, bundle, cid, n):
    """n `create` of one id started at the same moment, 6 rounds: exactly one succeeds, the others fail with
    one line saying the id exists, and the winner is intact (created, init alive, cgroup present)."""
    b = bundle(["sleep", "1000"])
    for _round in range(6):
        c = cid()
        barrier = threading.Barrier(n)

        def go(_):
            barrier.wait()
            return oci("create", "--bundle", b, c, timeout=60)
        with ThreadPoolExecutor(n) as pool:
            results = list(pool.map(go, range(n)))
        for r in results:
            assert not _bad_output(r), str(r)
        winners = [r for r in results if r.returncode == 0]
        losers = [r for r in results if r.returncode != 0]
        assert len(winners) == 1, "\n".join(map(str, results))
        for r in losers:
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and ("exists" in lines[0] or "busy" in lines[0]), str(r)
        st = oci.state(c)
        assert st and st["status"] == "created" and alive(st["pid"]), st
        assert cgroup_dirs(c), "the winner's cgroup was removed by a loser"
        assert oci("start", c).returncode == 0
        d = oci("delete", "--force", c)
        assert d.returncode == 0, str(d)
        assert not cgroup_dirs(c) and not os.path.exists(os.path.join(oci.root, c))


RACERS = [("kill", "KILL"), ("kill", "TERM"), ("state",), ("state",), ("delete", "--force"), ("delete",),
          ("list", "--format", "json"), ("kill", "--all", "KILL"), ("pause",), ("ps",)]


@pytest.mark.parametrize("started", [True, False], ids=["running", "created"])
def test_kill_state_delete_racing_on_one_container(oci, bundle, cid, started):
    """kill, state, delete (and list, pause, ps) started together on one container, 8 rounds: never a
    traceback; every answer is valid (state: JSON with a known status, or 'does not exist'); once the dust
    settles the state is valid JSON or gone, and after a final delete --force nothing is left."""
    b = bundle(["sleep", "1000"])
    problems = []
    for _round in range(8):
        c = cid()
        assert oci("create", "--bundle", b, c).returncode == 0
        if started:
            assert oci("start", c).returncode == 0
        pid = oci.state(c)["pid"]
        barrier = threading.Barrier(len(RACERS))

        def go(args):
            barrier.wait()
            verb = args[0]
            rest = args[1:]
            full = (verb, *rest) if verb == "list" else (verb, *(a for a in rest if a.startswith("-")), c,
                                                           *(a for a in rest if not a.startswith("-")))
            return full, oci(*full, timeout=60)
        with ThreadPoolExecutor(len(RACERS)) as pool:
            results = list(pool.map(go, RACERS))
        for full, r in results:
            probs = _bad_output(r)
            if probs:
                problems.append(f"{' '.join(full)}: {probs} {r.stderr[-400:]!r}")
            if full[0] == "state" and r.returncode == 0:
                st = json.loads(r.stdout)
                if st["status"] not in ("created", "running", "paused", "stopped"):
                    problems.append(f"state: status {st['status']!r}")
            if full[0] == "list":
                if r.returncode != 0:
                    problems.append(f"list failed: {r.stderr!r}")
                else:
                    json.loads(r.stdout)
        # dust settled: the state file is valid JSON, or the container is gone
        path = os.path.join(oci.root, c, "state.json")
        if os.path.exists(path):
            with open(path) as f:
                json.load(f)
        st = oci("state", c)
        no_traceback(st)
        if st.returncode == 0:
            json.loads(st.stdout)
        else:
            assert "does not exist" in st.stderr, str(st)
        oci("resume", c)
        d = oci("delete", "--force", c)
        assert d.returncode == 0, str(d)
        end = time.monotonic() + 5
        while alive(pid) and time.monotonic() < end:
            time.sleep(0.02)
        assert not alive(pid), "the init survived delete --force"
        assert not cgroup_dirs(c), sorted(cgroup_dirs(c))
        assert not os.path.exists(os.path.join(oci.root, c))
    assert not problems, "\n".join(problems)


def test_delete_force_racing_with_create(oci, bundle, cid):
    """`delete --force ID` fired while `create ID` is running, 8 rounds: whichever order they take, afterwards
    either the container exists and is created (delete came first, found nothing) or it is fully gone."""
    b = bundle(["sleep", "1000"])
    for i in range(8):
        c = cid()
        p = oci.popen("create", "--bundle", b, c)
        time.sleep(0.01 * i)
        d = oci("delete", "--force", c)
        no_traceback(d)
        rc = p.wait(timeout=60)
        st = oci("state", c)
        no_traceback(st)
        if st.returncode == 0:
            doc = json.loads(st.stdout)
            assert doc["status"] == "created" and rc == 0, (doc, rc)
        assert oci("delete", "--force", c).returncode == 0
        assert not cgroup_dirs(c), sorted(cgroup_dirs(c))
