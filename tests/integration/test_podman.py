"""A real engine drives the runtime: `podman --runtime RUNTIME` in an isolated podman (podman_env.py, on the engine
test bed enginebed.py).

RUNTIME is $OCIRUN_TEST_RUNTIME, default the venv's `ocirun` (the console script next to the interpreter, else PATH).
Check the harness itself with runc:
    OCIRUN_TEST_RUNTIME=/usr/sbin/runc .venv/bin/pytest -m engine tests/integration/test_podman.py
crun 1.8.1 refuses this VM's hybrid cgroups (cgroup2 offers hugetlb); hide that in a private mount namespace:
    : > /tmp/empty-controllers
    OCIRUN_TEST_RUNTIME=/usr/bin/crun unshare -m --propagation private sh -c 'mount --bind /tmp/empty-controllers \
        /sys/fs/cgroup/unified/cgroup.controllers && .venv/bin/pytest -m engine tests/integration/test_podman.py'
Other knobs: OCIRUN_TEST_STORAGE_DRIVER (overlay | vfs), OCIRUN_TEST_RUNTIME_JSON=0 (do not pass the runtime
--log-format=json --log FILE), OCIRUN_TEST_PODMAN_RUN_ARGS (extra `podman run` flags).
Needs root, podman, conmon, containernetworking-plugins, busybox-static. Every podman call has a timeout
(enginebed.DEFAULT_TIMEOUT); after two timeouts the remaining calls fail fast. The module fixture's teardown
removes containers, storage, cgroups and mounts, and fails if anything attributable to it is left on the host.
"""
import os
import shlex
import subprocess
import time

import pytest

import enginebed  # (tests/integration is on sys.path: see conftest)
import podman_env as penv_mod

RUNTIME = penv_mod.default_runtime()
_MISSING = penv_mod.missing_requirements(RUNTIME)

pytestmark = [
    pytest.mark.engine,
    pytest.mark.root,
    pytest.mark.skipif(bool(_MISSING), reason="; ".join(_MISSING) or "ok"),
]


@pytest.fixture(scope="session")
def host_snapshot():
    """The host's mounts before any engine test ran."""
    return enginebed.HostSnapshot()


@pytest.fixture(scope="module")
def podman(host_snapshot):
    yield from enginebed.serve(penv_mod.PodmanEnv(RUNTIME), host_snapshot)


def _out(res):
    return f"exit {res.returncode}\nstdout: {res.stdout!r}\nstderr: {res.stderr!r}"


def test_run_echo(podman):
    res = podman.run("--rm", podman.image, "echo", "hello-from-ocirun")
    assert res.returncode == 0, _out(res)
    assert res.stdout == "hello-from-ocirun\n", _out(res)


def test_exit_code_propagates(podman):
    res = podman.run("--rm", podman.image, "sh", "-c", "exit 7")
    assert res.returncode == 7, _out(res)


def test_pid_namespace_and_hostname(podman):
    res = podman.run("--rm", "--hostname", "ocirun-under-podman", podman.image,
                     "sh", "-c", "echo $$; hostname")
    assert res.returncode == 0, _out(res)
    assert res.stdout.split() == ["1", "ocirun-under-podman"], _out(res)


def test_detached_exec_stop_rm(podman):
    res = podman.run("-d", podman.image, "sleep", "300")
    assert res.returncode == 0, _out(res)
    cid = res.stdout.strip().splitlines()[-1]
    podman.ids.add(cid)
    try:
        info = podman.inspect(cid)
        assert info is not None
        assert info["State"]["Status"] == "running", info["State"]
        assert info["State"]["Running"] is True
        pid = info["State"]["Pid"]
        assert pid > 0
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert f.read().split(b"\0")[:2] == [b"sleep", b"300"]
        # the container's init is in its own pid namespace
        assert os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")

        res = podman.podman("exec", cid, "echo", "hi")
        assert res.returncode == 0, _out(res)
        assert res.stdout == "hi\n", _out(res)
        res = podman.podman("exec", cid, "sh", "-c", "exit 3")
        assert res.returncode == 3, _out(res)
        assert podman.inspect(cid)["State"]["Status"] == "running"

        t0 = time.monotonic()
        res = podman.podman("stop", "-t", "2", cid)
        assert res.returncode == 0, _out(res)
        assert time.monotonic() - t0 < 20
        state = podman.inspect(cid)["State"]
        assert state["Status"] == "exited", state
        assert state["Running"] is False
        # sleep as pid 1 ignores SIGTERM, so podman escalates to SIGKILL after 2 s: 128+9
        assert state["ExitCode"] in (137, 143), state
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie_or_other(pid)
    finally:
        res = podman.podman("rm", "-f", "-t", "0", cid)
    assert res.returncode == 0, _out(res)
    assert podman.inspect(cid) is None
    assert cid not in podman.podman("ps", "-a", "-q", "--no-trunc").stdout


def _is_zombie_or_other(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return not f.read().startswith(b"sleep\0300")
    except OSError:
        return True


def test_user(podman):
    res = podman.run("--rm", "-u", "1000:1002", podman.image, "sh", "-c", "id -u; id -g")
    assert res.returncode == 0, _out(res)
    assert res.stdout.split() == ["1000", "1002"], _out(res)


def test_read_only_rootfs(podman):
    res = podman.run("--rm", "--read-only", podman.image, "sh", "-c", "touch /written && echo wrote")
    assert res.returncode != 0, _out(res)
    assert "wrote" not in res.stdout
    assert "Read-only file system" in res.stderr, _out(res)
    # podman mounts a tmpfs on /tmp with --read-only (read_only_tmpfs), so that stays writable
    res = podman.run("--rm", "--read-only", podman.image, "sh", "-c", "touch /tmp/ok && echo ok")
    assert res.returncode == 0 and res.stdout == "ok\n", _out(res)


def test_memory_limit(podman):
    if not os.path.isdir("/sys/fs/cgroup/memory"):
        pytest.skip("no cgroup v1 memory hierarchy (the test reads memory.limit_in_bytes)")
    if podman.cgroups_disabled():
        pytest.skip("OCIRUN_TEST_PODMAN_RUN_ARGS has --cgroups=disabled")
    res = podman.run("--rm", "--memory", "64m", podman.image,
                     "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    assert res.returncode == 0, _out(res)
    assert res.stdout.strip() == "67108864", _out(res)


def test_tty_through_script(podman):
    """podman run -t: conmon hands ocirun a --console-socket; the container's stdio is that pty."""
    inner = " ".join(shlex.quote(a) for a in podman.cmd("run", *podman.run_flags(), "--rm", "-t", podman.image,
                                                        "sh", "-c", "tty; echo tty-ok"))
    res = subprocess.run(["script", "-qec", inner, "/dev/null"], env=podman.env, capture_output=True, text=True,
                         timeout=60, stdin=subprocess.DEVNULL)
    out = res.stdout.replace("\r", "")
    assert res.returncode == 0, _out(res)
    assert "/dev/pts/" in out and "tty-ok" in out, _out(res)


def test_volume_rslave(podman, tmp_path):
    """`podman run -v SRC:DST:rslave` runs under ocirun and a mount made on the host under the source later
    appears inside (it failed on rootfsPropagation "rslave")."""
    import subprocess
    import time

    src = tmp_path / "vol"
    (src / "later").mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(src), str(src)], check=True)
    subprocess.run(["mount", "--make-shared", str(src)], check=True)
    try:
        res = podman.run("-d", "-v", f"{src}:/vol:rslave", podman.image, "sleep", "300")
        assert res.returncode == 0, _out(res)
        cid = res.stdout.strip().splitlines()[-1]
        try:
            subprocess.run(["mount", "-t", "tmpfs", "later", str(src / "later")], check=True)
            deadline = time.monotonic() + 5
            while True:
                r = podman.podman("exec", cid, "sh", "-c", "grep ' /vol' /proc/self/mountinfo")
                if " /vol/later " in r.stdout or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert " /vol/later " in r.stdout, _out(r)
        finally:
            podman.podman("rm", "-f", cid)
    finally:
        subprocess.run(["umount", "-R", "-l", str(src)])
