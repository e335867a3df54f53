"""containerd drives the runtime: `ctr run --runc-binary RUNTIME` through containerd 1.6's runc shim (v2), in a
containerd of our own (engine_containerd.py on the engine test bed enginebed.py: own --root/--state/socket/config,
CRI and networking off).

RUNTIME is $OCIRUN_TEST_RUNTIME, default the venv's `ocirun`. Validate the harness with runc:
    OCIRUN_TEST_RUNTIME=/usr/sbin/runc .venv/bin/pytest -m engine tests/integration/test_containerd.py
OCIRUN_TEST_WRAP=0 gives the shim the runtime itself instead of the logging wrapper (enginebed.WRAPPER,
which records every runtime call in BASE/runtime-calls.log; failures show its tail).
Needs root and Debian's containerd (containerd, ctr, containerd-shim-runc-v2). The session fixture's teardown
stops containerd, kills what is left of ours (shims, containers), removes the namespace's runtime root
(/run/containerd/runc/NS), cgroups and dirs, and fails if anything attributable to it is left.
"""
import json
import os
import time

import pytest

import enginebed  # (tests/integration is on sys.path: see conftest)
import engine_containerd as ce

RUNTIME = ce.default_runtime()
_MISSING = ce.missing_requirements(RUNTIME)

pytestmark = [
    pytest.mark.engine,
    pytest.mark.root,
    pytest.mark.skipif(bool(_MISSING), reason="; ".join(_MISSING) or "ok"),
]


@pytest.fixture(scope="session")
def ctrd():
    yield from enginebed.serve(ce.ContainerdEnv(RUNTIME))


@pytest.fixture
def host_snapshot():
    """Overrides conftest's per-test leak checker: containerd's own mounts live as long as the session;
    the session fixture checks for leaks when it tears containerd down."""
    return None


def _out(res, env=None):
    s = f"exit {res.returncode}\nstdout: {res.stdout!r}\nstderr: {res.stderr!r}"
    if env is not None:
        s += "\nruntime calls (tail):\n" + env.calls_tail(3000)
    return s


def _calls_mark(env):
    """Position in the wrapper's call log (to look at the calls one test made)."""
    if not env.calls_log:
        return 0
    return os.path.getsize(env.calls_log)


def _task_status(env, tid):
    res = env.ctr("tasks", "ls")
    for line in res.stdout.splitlines()[1:]:
        f = line.split()
        if f and f[0] == tid:
            return f[-1]
    return None


def _wait_status(env, tid, want, timeout=10):
    end = time.monotonic() + timeout
    st = None
    while time.monotonic() < end:
        st = _task_status(env, tid)
        if st == want:
            return st
        time.sleep(0.1)
    return st


def test_run_echo(ctrd):
    res, _ = ctrd.run("echo", "hi", opts=("--rm",))
    assert res.returncode == 0, _out(res, ctrd)
    assert res.stdout.replace("\r", "") == "hi\n", _out(res, ctrd)


def test_exit_code_propagates(ctrd):
    res, _ = ctrd.run("sh", "-c", "exit 7", opts=("--rm",))
    assert res.returncode == 7, _out(res, ctrd)


def test_pid_namespace(ctrd):
    res, _ = ctrd.run("sh", "-c", "echo $$", opts=("--rm",))
    assert res.returncode == 0 and res.stdout.strip() == "1", _out(res, ctrd)


def test_every_runtime_call_succeeds(ctrd):
    """A `ctr run --rm` makes the shim call create, start, delete and (its cleanup) delete --force: a
    runc-compatible runtime answers all of them with exit 0 (runc: `delete --force` of a container that is
    already gone is a no-op that succeeds)."""
    if not ctrd.calls_log:
        pytest.skip("OCIRUN_TEST_WRAP=0: no record of the runtime calls")
    mark = _calls_mark(ctrd)
    res, _ = ctrd.run("true", opts=("--rm",))
    assert res.returncode == 0, _out(res, ctrd)
    time.sleep(0.3)  # the shim's cleanup (delete --force) runs after ctr returns
    bad = enginebed.failed_calls(ctrd.calls_log, mark)
    assert not bad, "runtime calls that failed:\n  " + "\n  ".join(bad)


def test_detached_exec_kill_delete(ctrd):
    script = 'trap "exit 42" TERM; while :; do sleep 1; done'
    res, tid = ctrd.run("sh", "-c", script, opts=("-d",))
    assert res.returncode == 0, _out(res, ctrd)
    runtime_state = os.path.join(ctrd.runtime_root, tid)
    try:
        assert _wait_status(ctrd, tid, "RUNNING") == "RUNNING", ctrd.ctr("tasks", "ls").stdout
        assert os.path.isdir(runtime_state), f"no runtime state at {runtime_state}"

        res = ctrd.ctr("tasks", "exec", "--exec-id", "x", "--fifo-dir", ctrd.p("fifo"), tid, "echo", "hi")
        assert res.returncode == 0, _out(res, ctrd)
        assert res.stdout.replace("\r", "") == "hi\n", _out(res, ctrd)
        res = ctrd.ctr("tasks", "exec", "--exec-id", "y", "--fifo-dir", ctrd.p("fifo"), tid,
                       "sh", "-c", "exit 3")
        assert res.returncode == 3, _out(res, ctrd)

        # `ctr task ps` -> the shim asks the runtime (`ps --format json`) for the container's pids
        res = ctrd.ctr("tasks", "ps", tid)
        assert res.returncode == 0, _out(res, ctrd)
        pids = [line.split()[0] for line in res.stdout.splitlines()[1:] if line.strip()]
        assert pids, _out(res, ctrd)
        init_pid = int(pids[0])
        with open(f"/proc/{init_pid}/cmdline", "rb") as f:
            assert f.read().split(b"\0")[0] == b"sh"

        res = ctrd.ctr("tasks", "pause", tid)
        assert res.returncode == 0, _out(res, ctrd)
        assert _wait_status(ctrd, tid, "PAUSED") == "PAUSED"
        res = ctrd.ctr("tasks", "resume", tid)
        assert res.returncode == 0, _out(res, ctrd)
        assert _wait_status(ctrd, tid, "RUNNING") == "RUNNING"

        res = ctrd.ctr("tasks", "kill", tid)  # SIGTERM by default
        assert res.returncode == 0, _out(res, ctrd)
        assert _wait_status(ctrd, tid, "STOPPED") == "STOPPED", _out(ctrd.ctr("tasks", "ls"), ctrd)
        res = ctrd.ctr("tasks", "delete", tid)
        assert res.returncode == 0, _out(res, ctrd)
        # ctr prints the exit status on delete when it is not 0
        assert "42" in res.stdout + res.stderr, _out(res, ctrd)
    finally:
        ctrd.ctr("tasks", "delete", "-f", tid)
        res = ctrd.ctr("containers", "rm", tid)
    assert res.returncode == 0, _out(res, ctrd)
    assert tid not in ctrd.ctr("containers", "ls", "-q").stdout.split()
    time.sleep(0.2)
    assert not os.path.exists(runtime_state), f"runtime state left at {runtime_state}"
    assert not enginebed.cgroup_tree(f"{ctrd.namespace}/{tid}"), enginebed.cgroup_tree(f"{ctrd.namespace}/{tid}")


def test_sigkill_detached(ctrd):
    """`ctr task kill -s SIGKILL` stops a detached container (sleep as pid 1 ignores SIGTERM)."""
    res, tid = ctrd.run("sleep", "300", opts=("-d",))
    assert res.returncode == 0, _out(res, ctrd)
    try:
        bundle = os.path.join(ctrd.p("state"), "io.containerd.runtime.v2.task", ctrd.namespace, tid)
        with open(os.path.join(bundle, "config.json")) as f:
            cfg = json.load(f)
        assert cfg["process"]["args"] == ["sleep", "300"]
        res = ctrd.ctr("tasks", "kill", "-s", "SIGKILL", tid)
        assert res.returncode == 0, _out(res, ctrd)
        assert _wait_status(ctrd, tid, "STOPPED") == "STOPPED"
    finally:
        ctrd.ctr("tasks", "delete", "-f", tid)
        ctrd.ctr("containers", "rm", tid)


def test_kill_of_exited_task_is_not_found(ctrd):
    """Killing a task whose process has exited: the shim runs `RUNTIME kill ID 15`, and maps the runtime's error
    to "process already finished" (errdefs.ErrNotFound, which engines treat as "already dead") by matching the
    text "container not running" in its output, as runc prints it. Anything else becomes "unknown error"."""
    res, tid = ctrd.run("true", opts=("-d",))
    assert res.returncode == 0, _out(res, ctrd)
    try:
        assert _wait_status(ctrd, tid, "STOPPED") == "STOPPED", ctrd.ctr("tasks", "ls").stdout
        res = ctrd.ctr("tasks", "kill", tid)
        assert res.returncode != 0, _out(res, ctrd)
        assert "process already finished" in res.stderr and "unknown error" not in res.stderr, _out(res, ctrd)
    finally:
        ctrd.ctr("tasks", "delete", tid)
        ctrd.ctr("containers", "rm", tid)


def test_force_delete_of_killed_task(ctrd):
    """`ctr task delete -f` of a task that already exited: the shim runs `RUNTIME kill --all ID 9` on the stopped
    container, which runc answers with success (nothing left to signal), then `delete`."""
    res, tid = ctrd.run("sleep", "300", opts=("-d",))
    assert res.returncode == 0, _out(res, ctrd)
    try:
        assert _wait_status(ctrd, tid, "RUNNING") == "RUNNING"
        res = ctrd.ctr("tasks", "kill", "-s", "SIGKILL", tid)
        assert res.returncode == 0, _out(res, ctrd)
        assert _wait_status(ctrd, tid, "STOPPED") == "STOPPED"
        res = ctrd.ctr("tasks", "delete", "-f", tid)
        assert res.returncode == 0, _out(res, ctrd)
        assert _task_status(ctrd, tid) is None, ctrd.ctr("tasks", "ls").stdout
    finally:
        ctrd.ctr("tasks", "delete", "-f", tid)
        res = ctrd.ctr("containers", "rm", tid)
    assert res.returncode == 0, _out(res, ctrd)
