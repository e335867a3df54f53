"""Faults: ocirun killed at every phase of create (and of run, start, exec), a container whose init is killed, a
state directory deleted under a running container, a corrupt state.json.

After each fault `state` and `list` must answer sanely (a status of creating/stopped, or "does not exist";
never a traceback), `delete --force` must succeed, and afterwards nothing of the container may be left: no
process, no mount, no cgroup (any /sys/fs/cgroup/*/**/ID), no state directory, no open descriptor on the
state root or the bundle. The test body asserts these itself (for a precise failure message) and the shared
leak checker (host_snapshot) and fd_leaks check them again after the test.

The fault hook: OCIRUN_TEST_STOP_AT=LABEL makes the first ocirun process reaching that phase block there
(conftest.Stopper); the test then SIGKILLs either `ocirun create` (the parent) or the blocked child.
"""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from relhelp import alive, cgroup_dirs, host_pid_by_nspid, kill_pids, no_traceback, one_line_error

PARENT_PHASES = ["parent: begin", "parent: config loaded", "parent: forked", "parent: cgroup ready",
                 "parent: got pid", "parent: init placed", "parent: ready"]
CHILD_PHASES = ["stage1: namespaces", "init: begin", "init: placed", "init: mounts done", "init: runtime hooks",
                "init: createContainer hooks", "init: hooks done", "init: pivoted", "init: ready"]
SANE = ("creating", "stopped")


def _hook_bundle(bundle, stopper, args=("sleep", "1000")):
    """A bundle whose create passes every phase: prestart, createRuntime and createContainer hooks (host
    /bin/sh reading the state), and the stop directory bind-mounted at its own path for phases after
    pivot_root."""
    hook = {"path": "/bin/sh", "args": ["sh", "-c", "cat >/dev/null"]}

    def edit(cfg):
        cfg["hooks"] = {"prestart": [hook], "createRuntime": [hook], "createContainer": [hook]}
        cfg["mounts"].append(stopper.mount())
    return bundle(list(args), edit=edit)


def _procs_with(marker):
    """Live pids whose cmdline contains marker (ourselves excluded)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd and alive(int(name)):
            out.append(int(name))
    return out


def _procs_in_cgroups(dirs):
    pids = set()
    for d in dirs:
        for dp, _dn, fn in os.walk(d):
            if "cgroup.procs" in fn:
                try:
                    with open(os.path.join(dp, "cgroup.procs")) as f:
                        pids |= {int(x) for x in f.read().split()}
                except OSError:
                    pass
    return {p for p in pids if alive(p)}


def assert_sane_state(oci, c):
    """`state` and `list` after a fault: a sane status or 'does not exist', never a traceback."""
    st = oci("state", c)
    no_traceback(st)
    if st.returncode == 0:
        doc = json.loads(st.stdout)
        assert doc["id"] == c and doc["status"] in SANE, f"state after the fault is not creating/stopped:\n{st}"
    else:
        lines = one_line_error(st)
        assert len(lines) == 1 and "does not exist" in lines[0], str(st)
    ls = oci("list", "--format", "json")
    no_traceback(ls)
    assert ls.returncode == 0, str(ls)
    items = json.loads(ls.stdout) or []
    mine = [x for x in items if x["id"] == c]
    for x in mine:
        assert x["status"] in SANE, f"list shows {x['status']!r} for {c}: {ls.stdout}"
    return st


def assert_gone(oci, c, wait=3.0):
    """After delete: no state, no process, no cgroup, no state dir of container c."""
    st = oci("state", c)
    assert st.returncode != 0 and "does not exist" in st.stderr, "state after delete --force:\n" + str(st)
    assert not os.path.exists(os.path.join(oci.root, c)), "state directory left after delete --force"
    end = time.monotonic() + wait
    while True:
        procs = _procs_with(c)
        cgs = sorted(cgroup_dirs(c))
        if (not procs and not cgs) or time.monotonic() > end:
            break
        time.sleep(0.05)
    in_cg = _procs_in_cgroups(cgs)
    assert not procs and not cgs, (f"left behind after delete --force:\n  processes: {procs} "
                                   f"{[_cmd(p) for p in procs]}\n  cgroups: {cgs}\n  processes in them: {sorted(in_cg)}")


def _cmd(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _popen(oci, stopper, label, *args, stderr_path):
    err = open(stderr_path, "w")
    try:
        return subprocess.Popen(oci.argv(*args), env=stopper.env(label), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
    finally:
        err.close()


def _read(p):
    with open(p, errors="replace") as f:
        return f.read()


# ------------------------------------------------------------------------------------------ create killed
@pytest.mark.parametrize("label", PARENT_PHASES + CHILD_PHASES)
def test_create_parent_killed_at_phase(oci, bundle, cid, stopper, tmp_path, label):
    """SIGKILL `ocirun create` while it (or, for a child phase, its stage 1 / init) is stopped at the phase."""
    b = _hook_bundle(bundle, stopper)
    c = cid()
    p = _popen(oci, stopper, label, "create", "--bundle", b, c, stderr_path=tmp_path / "create.err")
    inner = stopper.wait(label, p)
    blocked = host_pid_by_nspid(c, inner) if label in CHILD_PHASES else p.pid
    assert blocked, f"cannot find the host pid of the process stopped at {label!r}"
    p.kill()
    p.wait(timeout=10)
    assert_sane_state(oci, c)
    d = oci("delete", "--force", c)
    no_traceback(d)
    assert d.returncode == 0, str(d)
    assert_gone(oci, c)
    assert not alive(blocked), f"the process stopped at {label!r} (host pid {blocked}) survived delete --force"


@pytest.mark.parametrize("label", CHILD_PHASES)
def test_create_child_killed_at_phase(oci, bundle, cid, stopper, tmp_path, label):
    """SIGKILL the stage 1 / init process stopped at the phase: `create` must fail cleanly and undo everything
    by itself (state then says the container does not exist)."""
    b = _hook_bundle(bundle, stopper)
    c = cid()
    err = tmp_path / "create.err"
    p = _popen(oci, stopper, label, "create", "--bundle", b, c, stderr_path=err)
    inner = stopper.wait(label, p)
    blocked = host_pid_by_nspid(c, inner)
    assert blocked and blocked != p.pid, f"cannot find the host pid of the child stopped at {label!r}"
    os.kill(blocked, signal.SIGKILL)
    try:
        rc = p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        pytest.fail(f"`ocirun create` hangs after its child stopped at {label!r} was killed")

    class R:  # the shape one_line_error wants
        returncode, stderr, stdout = rc, _read(err), ""

        def __str__(self):
            return f"create exit {rc}, stderr {self.stderr!r}"
    lines = one_line_error(R())
    assert len(lines) <= 2, f"expected a short error from create: {lines}"
    st = assert_sane_state(oci, c)
    assert st.returncode != 0, "a failed create left its state:\n" + str(st)
    d = oci("delete", "--force", c)
    no_traceback(d)
    assert d.returncode == 0, str(d)
    assert_gone(oci, c)


# ------------------------------------------------------------------------------------------ run / start / exec killed
@pytest.mark.parametrize("label", ["parent: waiting", "parent: exited"])
def test_foreground_run_killed_at_phase(oci, bundle, cid, stopper, tmp_path, label):
    """Foreground `ocirun run` SIGKILLed while it waits for the container (or right after the container
    exited, before it deleted it)."""
    args = ("sleep", "1000") if label == "parent: waiting" else ("true",)
    b = bundle(list(args), edit=lambda cfg: cfg["mounts"].append(stopper.mount()))
    c = cid()
    p = _popen(oci, stopper, label, "run", "--bundle", b, c, stderr_path=tmp_path / "run.err")
    stopper.wait(label, p)
    p.kill()
    p.wait(timeout=10)
    st = oci("state", c)
    no_traceback(st)
    assert st.returncode == 0, str(st)
    status = json.loads(st.stdout)["status"]
    assert status == ("running" if label == "parent: waiting" else "stopped"), str(st)
    d = oci("delete", "--force", c)
    assert d.returncode == 0, str(d)
    assert_gone(oci, c)


@pytest.mark.parametrize("label", ["init: waiting for start", "init: exec"])
def test_start_killed_while_init_stopped(oci, bundle, cid, stopper, tmp_path, label):
    """`ocirun start` SIGKILLed while the init is stopped just before reading `start` / just before exec."""
    b = bundle(["sleep", "1000"], edit=lambda cfg: cfg["mounts"].append(stopper.mount()))
    c = cid()
    p = _popen(oci, stopper, label, "create", "--bundle", b, c, stderr_path=tmp_path / "create.err")
    assert p.wait(timeout=20) == 0, _read(tmp_path / "create.err")
    s = oci.popen("start", c)
    stopper.wait(label, s)  # the init traces "waiting for start" once `start` has connected
    time.sleep(0.2)
    assert s.poll() is None, "start returned although the init is stopped"
    s.kill()
    s.wait()
    st = oci("state", c)
    no_traceback(st)
    assert st.returncode == 0 and json.loads(st.stdout)["status"] in ("created", "running"), str(st)
    d = oci("delete", "--force", c)
    assert d.returncode == 0, str(d)
    assert_gone(oci, c)


@pytest.mark.parametrize("victim", ["exec", "container"])
def test_exec_stopped_after_joining(oci, bundle, cid, stopper, tmp_path, victim):
    """`ocirun exec` stopped after it joined the container: killing exec leaves the container intact; deleting
    the container (force) also kills the stopped exec process (it is in the container's cgroup)."""
    b = bundle(["sleep", "1000"], edit=lambda cfg: cfg["mounts"].append(stopper.mount()))
    c = cid()
    assert oci("run", "-d", "--bundle", b, c).returncode == 0
    pid = oci.state(c)["pid"]
    e = _popen(oci, stopper, "exec: joined", "exec", c, "true", stderr_path=tmp_path / "exec.err")
    inner = stopper.wait("exec: joined", e)
    blocked = host_pid_by_nspid(c, inner)
    assert blocked, "cannot find the stopped exec process"
    if victim == "exec":
        os.kill(blocked, signal.SIGKILL)
        e.kill()
        e.wait()
        assert oci.state(c)["status"] == "running" and alive(pid)
    else:
        e.kill()
        e.wait()
    d = oci("delete", "--force", c)
    assert d.returncode == 0, str(d)
    assert_gone(oci, c)
    assert not alive(blocked)


# ------------------------------------------------------------------------------------------ init killed
@pytest.mark.parametrize("started", [False, True], ids=["created", "running"])
def test_init_killed(oci, bundle, cid, started, wait_for):
    """SIGKILL the container's init from the host: state says stopped, a plain delete removes everything."""
    b = bundle(["sleep", "1000"])
    c = cid()
    assert oci("create", "--bundle", b, c).returncode == 0
    if started:
        assert oci("start", c).returncode == 0
    pid = oci.state(c)["pid"]
    cgs_before = cgroup_dirs(c)
    assert cgs_before, "the container has no cgroup"
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), what="init to die")
    st = oci.wait_status(c, "stopped", timeout=5)
    assert st and st["status"] == "stopped", st
    ls = oci("list", "--format", "json")
    assert [x["status"] for x in json.loads(ls.stdout) if x["id"] == c] == ["stopped"], ls.stdout
    k = oci("kill", c, "KILL")
    one_line_error(k)
    d = oci("delete", c)
    assert d.returncode == 0, str(d)
    assert_gone(oci, c)


# ------------------------------------------------------------------------------------------ state dir deleted
def test_state_dir_deleted_under_running_container(oci, bundle, cid):
    """`rm -rf --root/ID` under a running container: the container is no longer managed by ocirun.

    What happens (asserted): every command answers with one clear line and no traceback; `state` and `kill` say
    the container does not exist, `list` omits it, `delete --force` succeeds silently (runc's semantics for an
    unknown id) and does NOT touch the processes (ocirun no longer knows them): the init keeps running until
    killed by someone else. A new `create` with the same id while the orphan still occupies the id's cgroup
    must not silently put the new container into the orphan's cgroup (runc 1.1 warns "container's cgroup is not
    empty", runc 1.2 refuses)."""
    b = bundle(["sleep", "1000"])
    c = cid()
    assert oci("run", "-d", "--bundle", b, c).returncode == 0
    pid = oci.state(c)["pid"]
    cgs = sorted(cgroup_dirs(c))
    try:
        shutil.rmtree(os.path.join(oci.root, c))
        for verb in (("state", c), ("kill", c, "TERM"), ("start", c), ("pause", c), ("ps", c), ("exec", c, "true")):
            r = oci(*verb)
            lines = one_line_error(r)
            assert len(lines) == 1 and "does not exist" in lines[0], str(r)
        ls = oci("list", "--format", "json")
        assert ls.returncode == 0 and c not in ls.stdout, str(ls)
        d = oci("delete", "--force", c)
        no_traceback(d)
        assert d.returncode == 0, str(d)
        assert alive(pid), "the orphaned init was killed although ocirun no longer knows it"
        # same id again, while the orphan still runs in the id's cgroup
        b2 = bundle(["sleep", "1000"])
        r = oci("create", "--bundle", b2, c)
        no_traceback(r)
        if r.returncode == 0:
            # runc 1.1 warns "container's cgroup is not empty" (and 1.2 refuses): sharing it silently is wrong
            new_pid = oci.state(c)["pid"]
            shared = [d for d in cgs if pid in _procs_in_cgroups([d]) and new_pid in _procs_in_cgroups([d])]
            oci("delete", "--force", c)
            assert not shared or "not empty" in r.stderr, (
                f"the new container {c} was silently put into the cgroup of the orphaned one (still running): "
                f"{shared}; create's stderr: {r.stderr!r}")
        else:
            one_line_error(r)
            assert "cgroup" in r.stderr, str(r)
    finally:
        kill_pids([pid])
        end = time.monotonic() + 5
        while alive(pid) and time.monotonic() < end:
            time.sleep(0.02)
        for d in sorted(cgroup_dirs(c), key=len, reverse=True):
            try:
                os.rmdir(d)
            except OSError:
                pass


# ------------------------------------------------------------------------------------------ corrupt state.json
CORRUPTIONS = {
    "garbage": b"\x00\xffnot json at all",
    "truncated": None,  # first half of the real file
    "empty": b"",
    "list": b"[1, 2, 3]",
    "other-id": None,  # the real record with another id
    "wrong-types": b'{"id": "%s", "pid": "one", "status": 7, "cgroup": "x", "config": []}',
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_corrupt_state_file(oci, bundle, cid, kind):
    """A corrupt or truncated state.json: `state` gives one clear line; `delete --force` still cleans up
    (kills the init, removes the cgroup, removes the state)."""
    b = bundle(["sleep", "1000"])
    c = cid()
    assert oci("create", "--bundle", b, c).returncode == 0
    pid = oci.state(c)["pid"]
    assert cgroup_dirs(c)
    path = os.path.join(oci.root, c, "state.json")
    with open(path, "rb") as f:
        real = f.read()
    data = CORRUPTIONS[kind]
    if kind == "truncated":
        data = real[: len(real) // 2]
    elif kind == "other-id":
        doc = json.loads(real)
        doc["id"] = c + "x"
        data = json.dumps(doc).encode()
    elif b"%s" in data:
        data = data.replace(b"%s", c.encode())
    with open(path, "wb") as f:
        f.write(data)
    st = oci("state", c)
    lines = one_line_error(st)
    assert len(lines) == 1 and c in lines[0], str(st)
    ls = oci("list", "--format", "json")
    no_traceback(ls)
    assert ls.returncode == 0, str(ls)
    for verb in (("kill", c, "KILL"), ("start", c), ("pause", c), ("ps", c)):
        r = oci(*verb)
        assert len(one_line_error(r)) == 1, str(r)
    assert alive(pid), "a command on a corrupt state killed the init"
    d = oci("delete", "--force", c)
    no_traceback(d)
    assert d.returncode == 0, str(d)
    assert_gone(oci, c)
    assert not alive(pid), "delete --force left the init of a container with a corrupt state.json running"
