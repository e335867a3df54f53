"""Docker drives the runtime: `docker run --runtime ocirun` against a dockerd of our own (engine_docker.py on the
engine test bed enginebed.py: own data/exec roots, socket, pidfile, config file and containerd; no iptables, no
bridge, no host sysctls).

RUNTIME (registered in dockerd's config as the runtime named "ocirun") is $OCIRUN_TEST_RUNTIME, default the
venv's `ocirun`. Validate the harness with runc:
    OCIRUN_TEST_RUNTIME=/usr/sbin/runc .venv/bin/pytest -m engine tests/integration/test_docker.py
Other knobs: OCIRUN_TEST_STORAGE_DRIVER (overlay2 | vfs), OCIRUN_TEST_DOCKER_RUN_ARGS (extra `docker run`
flags), OCIRUN_TEST_WRAP=0 (hand dockerd the runtime itself rather than the logging wrapper whose record,
BASE/runtime-calls.log, is shown when a test fails).
Needs root, Debian's docker.io (dockerd, docker, containerd, ctr, containerd-shim-runc-v2), busybox-static and
`script` (bsdutils). Every docker call has a timeout; after two timeouts the remaining calls fail fast. The
session fixture's teardown stops dockerd and its containerd, kills shims and containers left, unmounts and
removes its dirs and cgroups, and fails if anything attributable to it is left on the host.
"""
import os
import shlex
import shutil
import subprocess
import time

import pytest

import enginebed  # (tests/integration is on sys.path: see conftest)
import engine_docker as de

RUNTIME = de.default_runtime()
_MISSING = de.missing_requirements(RUNTIME)

pytestmark = [
    pytest.mark.engine,
    pytest.mark.root,
    pytest.mark.skipif(bool(_MISSING), reason="; ".join(_MISSING) or "ok"),
]


@pytest.fixture(scope="session")
def docker():
    yield from enginebed.serve(de.DockerEnv(RUNTIME))


@pytest.fixture
def host_snapshot():
    """Overrides conftest's per-test leak checker (dockerd's mounts live as long as the session): the session
    fixture checks for leaks when it tears dockerd down."""
    return None


def _out(res, env=None):
    s = f"exit {res.returncode}\nstdout: {res.stdout!r}\nstderr: {res.stderr!r}"
    if env is not None:
        s += "\nruntime calls (tail):\n" + env.calls_tail(3000)
    return s


def _detached(docker, *args):
    res = docker.run("-d", *args)
    assert res.returncode == 0, _out(res, docker)
    ids = [w for w in res.stdout.split() if len(w) == 64 and all(c in "0123456789abcdef" for c in w)]
    assert ids, _out(res, docker)
    cid = ids[-1]
    docker.ids.add(cid)
    return cid


def _wait_state(docker, cid, pred, timeout=10):
    end = time.monotonic() + timeout
    st = None
    while time.monotonic() < end:
        info = docker.inspect(cid)
        st = info and info["State"]
        if st and pred(st):
            return st
        time.sleep(0.1)
    return st


def _rm(docker, cid):
    res = docker.docker("rm", "-f", cid)
    assert res.returncode == 0, _out(res, docker)
    assert docker.inspect(cid) is None


def test_run_echo(docker):
    res = docker.run("--rm", docker.image, "echo", "hi")
    assert res.returncode == 0, _out(res, docker)
    assert res.stdout == "hi\n", _out(res, docker)


def test_exit_code_propagates(docker):
    res = docker.run("--rm", docker.image, "sh", "-c", "exit 7")
    assert res.returncode == 7, _out(res, docker)


def test_every_runtime_call_succeeds(docker):
    """`docker run --rm` makes the shim call create, start, delete and (its cleanup) delete --force: a
    runc-compatible runtime answers all of them with exit 0 (runc: `delete --force` of a container that is
    already gone succeeds)."""
    if not docker.calls_log:
        pytest.skip("OCIRUN_TEST_WRAP=0: no record of the runtime calls")
    mark = os.path.getsize(docker.calls_log)
    res = docker.run("--rm", docker.image, "true")
    assert res.returncode == 0, _out(res, docker)
    time.sleep(0.3)  # the shim's cleanup runs after docker returns
    bad = enginebed.failed_calls(docker.calls_log, mark)
    assert not bad, "runtime calls that failed:\n  " + "\n  ".join(bad)


def test_detached_exec_stop_rm(docker):
    cid = _detached(docker, docker.image, "sleep", "300")
    try:
        st = _wait_state(docker, cid, lambda s: s["Running"])
        assert st["Status"] == "running", st
        pid = st["Pid"]
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert f.read().split(b"\0")[:2] == [b"sleep", b"300"]
        assert os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
        # the container is in our dockerd's cgroup parent
        with open(f"/proc/{pid}/cgroup") as f:
            assert f"{docker.cgroup_parent}/{cid}" in f.read()

        res = docker.docker("exec", cid, "echo", "hi")
        assert res.returncode == 0, _out(res, docker)
        assert res.stdout == "hi\n", _out(res, docker)
        res = docker.docker("exec", cid, "sh", "-c", "exit 3")
        assert res.returncode == 3, _out(res, docker)
        assert docker.inspect(cid)["State"]["Status"] == "running"

        t0 = time.monotonic()
        res = docker.docker("stop", "-t", "2", cid)
        assert res.returncode == 0, _out(res, docker)
        assert time.monotonic() - t0 < 20
        st = docker.inspect(cid)["State"]
        assert st["Status"] == "exited", st
        # sleep as pid 1 ignores SIGTERM: docker escalates to SIGKILL after 2 s
        assert st["ExitCode"] == 137, st
        assert not os.path.exists(os.path.join(docker.runtime_root, cid)), "runtime state left after stop"
    finally:
        _rm(docker, cid)


def test_memory_limit(docker):
    if not os.path.isdir("/sys/fs/cgroup/memory"):
        pytest.skip("no cgroup v1 memory hierarchy (the test reads memory.limit_in_bytes)")
    res = docker.run("--rm", "--memory", "64m", docker.image,
                     "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    assert res.returncode == 0, _out(res, docker)
    assert res.stdout.strip() == "67108864", _out(res, docker)


def test_pause_unpause(docker):
    cid = _detached(docker, docker.image, "sleep", "300")
    try:
        assert _wait_state(docker, cid, lambda s: s["Running"])["Status"] == "running"
        res = docker.docker("pause", cid)
        assert res.returncode == 0, _out(res, docker)
        st = docker.inspect(cid)["State"]
        assert st["Status"] == "paused" and st["Paused"] is True, st
        with open(f"/proc/{st['Pid']}/stat") as f:
            # frozen by the freezer cgroup: the task sleeps in the kernel (S or D), it does not run
            assert f.read().rsplit(")", 1)[1].split()[0] in ("S", "D"), "paused task state"
        res = docker.docker("unpause", cid)
        assert res.returncode == 0, _out(res, docker)
        st = docker.inspect(cid)["State"]
        assert st["Status"] == "running" and st["Paused"] is False, st
        res = docker.docker("exec", cid, "echo", "alive")
        assert res.returncode == 0 and res.stdout == "alive\n", _out(res, docker)
    finally:
        _rm(docker, cid)


def test_top(docker):
    cid = _detached(docker, docker.image, "sleep", "300")
    try:
        _wait_state(docker, cid, lambda s: s["Running"])
        res = docker.docker("top", cid)
        assert res.returncode == 0, _out(res, docker)
        lines = res.stdout.splitlines()
        assert lines and "PID" in lines[0], _out(res, docker)
        assert any("sleep 300" in line for line in lines[1:]), _out(res, docker)
    finally:
        _rm(docker, cid)


def test_kill_term_trapped(docker):
    cid = _detached(docker, docker.image, "sh", "-c", 'trap "exit 42" TERM; while :; do sleep 1; done')
    try:
        _wait_state(docker, cid, lambda s: s["Running"])
        time.sleep(0.3)  # let sh install its trap
        res = docker.docker("kill", "-s", "TERM", cid)
        assert res.returncode == 0, _out(res, docker)
        res = docker.docker("wait", cid, timeout=20)
        assert res.returncode == 0 and res.stdout.strip() == "42", _out(res, docker)
        st = docker.inspect(cid)["State"]
        assert st["Status"] == "exited" and st["ExitCode"] == 42, st
    finally:
        _rm(docker, cid)


def test_user(docker):
    res = docker.run("--rm", "-u", "1000:1002", docker.image, "sh", "-c", "id -u; id -g")
    assert res.returncode == 0, _out(res, docker)
    assert res.stdout.split() == ["1000", "1002"], _out(res, docker)


def test_tty(docker):
    if not shutil.which("script"):
        pytest.skip("`script` (bsdutils) is not installed")
    cmd = shlex.join(docker.cmd("run", *docker.run_flags(), "--rm", "-t", docker.image,
                                "sh", "-c", "test -t 0 && test -t 1 && echo tty-ok; tty"))
    try:
        res = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True,
                             stdin=subprocess.DEVNULL, env=docker.env, timeout=30)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"docker run -t timed out: {e.stdout!r}\n{docker.calls_tail(3000)}") from None
    assert res.returncode == 0, _out(res, docker)
    out = res.stdout.replace("\r", "")
    assert "tty-ok\n" in out, _out(res, docker)
    assert "/dev/pts/0" in out or "/dev/console" in out, _out(res, docker)


def test_update_memory(docker):
    """`docker update` -> the shim calls `RUNTIME update --resources - ID` with the new limits on stdin."""
    if not os.path.isdir("/sys/fs/cgroup/memory"):
        pytest.skip("no cgroup v1 memory hierarchy")
    cid = _detached(docker, "--memory", "64m", docker.image, "sleep", "300")
    try:
        _wait_state(docker, cid, lambda s: s["Running"])
        res = docker.docker("update", "--memory", "128m", "--memory-swap", "256m", cid)
        assert res.returncode == 0, _out(res, docker)
        res = docker.docker("exec", cid, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
        assert res.returncode == 0 and res.stdout.strip() == str(128 << 20), _out(res, docker)
    finally:
        _rm(docker, cid)


def test_restart_and_logs(docker):
    cid = _detached(docker, docker.image, "sh", "-c", "echo out-$$; echo err >&2; sleep 300")
    try:
        _wait_state(docker, cid, lambda s: s["Running"])
        pid1 = docker.inspect(cid)["State"]["Pid"]
        res = docker.docker("restart", "-t", "1", cid)
        assert res.returncode == 0, _out(res, docker)
        st = _wait_state(docker, cid, lambda s: s["Running"])
        assert st["Status"] == "running" and st["Pid"] != pid1, st
        res = docker.docker("exec", cid, "echo", "alive")
        assert res.returncode == 0 and res.stdout == "alive\n", _out(res, docker)
        res = docker.docker("logs", cid)
        assert res.returncode == 0, _out(res, docker)
        # stdout and stderr stay apart; both runs logged, each as pid 1 of its pid namespace
        assert res.stdout.split() == ["out-1", "out-1"], _out(res, docker)
        assert res.stderr.split() == ["err", "err"], _out(res, docker)
    finally:
        _rm(docker, cid)


def test_stdin(docker):
    res = docker.docker("run", *docker.run_flags(), "--rm", "-i", docker.image, "sh", "-c", "cat; echo end",
                        input="piped\n")
    assert res.returncode == 0 and res.stdout == "piped\nend\n", _out(res, docker)


def test_init_and_read_only(docker):
    """--init: docker bind-mounts its docker-init (tini) as /sbin/docker-init and makes it the process;
    --read-only: the rootfs is mounted read-only."""
    res = docker.run("--rm", "--init", "--read-only", docker.image,
                     "sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline; echo; touch /x || echo ro-ok")
    assert res.returncode == 0, _out(res, docker)
    lines = res.stdout.splitlines()
    assert lines[0].startswith("/sbin/docker-init -- sh -c"), _out(res, docker)
    assert lines[-1] == "ro-ok" and "Read-only file system" in res.stderr, _out(res, docker)


def test_oom_killed(docker):
    if not os.path.isdir("/sys/fs/cgroup/memory"):
        pytest.skip("no cgroup v1 memory hierarchy")
    cid = _detached(docker, "--memory", "8m", "--memory-swap", "8m", docker.image,
                    "sh", "-c", "x=a; while :; do x=$x$x; done")
    try:
        res = docker.docker("wait", cid, timeout=30)
        assert res.returncode == 0 and res.stdout.strip() == "137", _out(res, docker)
        st = docker.inspect(cid)["State"]
        assert st["OOMKilled"] is True, st
    finally:
        _rm(docker, cid)


@pytest.mark.parametrize("prop", ["rslave", "rshared"])
def test_volume_propagation(docker, tmp_path, prop):
    """`docker run -v SRC:DST:rslave|rshared` (issue: it failed with rootfsPropagation "rslave" is not one of ...):
    the container runs, its volume is a slave (rshared: a peer) of the host's shared source, and a mount the host
    makes under the source afterwards appears inside."""
    import subprocess

    src = tmp_path / f"vol-{prop}"
    (src / "later").mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(src), str(src)], check=True)
    subprocess.run(["mount", "--make-shared", str(src)], check=True)
    try:
        cid = _detached(docker, "-v", f"{src}:/vol:{prop}", docker.image, "sleep", "300")
        try:
            subprocess.run(["mount", "-t", "tmpfs", "later", str(src / "later")], check=True)
            deadline = time.monotonic() + 5
            while True:
                res = docker.docker("exec", cid, "sh", "-c", "grep ' /vol' /proc/self/mountinfo")
                if " /vol/later " in res.stdout or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert " /vol/later " in res.stdout, _out(res, docker)
            vol = [ln for ln in res.stdout.splitlines() if ln.split()[4] == "/vol"][0]
            assert ("master:" if prop == "rslave" else "shared:") in vol, vol
        finally:
            _rm(docker, cid)
    finally:
        subprocess.run(["umount", "-R", "-l", str(src)])
