"""More error paths of `ocirun create` (those not already in tests/integration/test_errors.py): each must fail
with `ocirun: ` lines only (no traceback), leave no state (`state` says the container does not exist), and leave
the host exactly as before: mountinfo, cgroup trees, processes and the state root are compared by the shared
leak checker (host_snapshot), open descriptors by fd_leaks.

Failures are placed at every stage: in the parent before fork (config checks), in the parent after fork (cgroup
limits the kernel refuses), in the init before pivot_root (mounts, hostname, createContainer hooks), after
pivot_root (sysctls), after the container exists (pid file), and at `start` (startContainer hook, exec).
"""
import os
import socket

import pytest

from relhelp import cgroup_dirs, no_traceback, one_line_error


def create_fails(oci, b, c, *flags):
    res = oci("create", *flags, "--bundle", b, c)
    lines = one_line_error(res)
    assert len(lines) <= 3, f"expected a short message, got {len(lines)} lines:\n{res.stderr}"
    st = oci("state", c)
    assert st.returncode != 0 and "does not exist" in st.stderr, "state left after a failed create:\n" + str(st)
    assert not os.path.exists(os.path.join(oci.root, c))
    assert not cgroup_dirs(c), f"cgroups left after a failed create: {sorted(cgroup_dirs(c))}"
    return res


def _mount(cfg, m):
    cfg["mounts"].append(m)
    return len(cfg["mounts"]) - 1


# ------------------------------------------------------------------------------------------ in the parent
@pytest.mark.parametrize("what,edit,expect", [
    ("rlimit soft > hard",
     lambda c: c["process"].__setitem__("rlimits", [{"type": "RLIMIT_NOFILE", "soft": 2048, "hard": 1024}]),
     "RLIMIT_NOFILE"),
    ("unknown rlimit",
     lambda c: c["process"].__setitem__("rlimits", [{"type": "RLIMIT_NOPE", "soft": 1, "hard": 1}]),
     "RLIMIT_NOPE"),
    ("non-namespaced sysctl",
     lambda c: c["linux"].__setitem__("sysctl", {"kernel.panic": "1"}), "kernel.panic"),
    ("net sysctl without network namespace",
     lambda c: (c["linux"].__setitem__("sysctl", {"net.ipv4.ip_forward": "1"}),
                c["linux"].__setitem__("namespaces", [n for n in c["linux"]["namespaces"] if n["type"] != "network"])),
     "net.ipv4.ip_forward"),
    ("no mount namespace",
     lambda c: c["linux"].__setitem__("namespaces", [n for n in c["linux"]["namespaces"] if n["type"] != "mount"]),
     "mount"),
    ("duplicate namespace",
     lambda c: c["linux"]["namespaces"].append({"type": "pid"}), "pid"),
    ("rootfs is a file", lambda c: c["root"].__setitem__("path", "config.json"), "root"),
    ("empty args", lambda c: c["process"].__setitem__("args", []), "args"),
    ("apparmor profile on a host without AppArmor",
     lambda c: c["process"].__setitem__("apparmorProfile", "no-such-profile"), "apparmor"),
    ("time offsets without time namespace",
     lambda c: c["linux"].__setitem__("timeOffsets", {"monotonic": {"secs": 10, "nanosecs": 0}}), "time"),
])
def test_refused_before_fork(oci, bundle, cid, what, edit, expect):
    res = create_fails(oci, bundle(["true"], edit=edit), cid())
    assert expect.lower() in res.stderr.lower(), f"{what}: the message does not name {expect!r}:\n{res}"


def test_console_socket_is_a_regular_file(oci, bundle, cid, tmp_path):
    p = tmp_path / "not-a-socket"
    p.write_text("x")

    def edit(cfg):
        cfg["process"]["terminal"] = True
    res = create_fails(oci, bundle(["true"], edit=edit), cid(), "--console-socket", str(p))
    assert str(p) in res.stderr, str(res)


def test_console_socket_not_listening(oci, bundle, cid, tmp_path):
    path = str(tmp_path / "dead.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()  # bound, never listened: connect gets ECONNREFUSED

    def edit(cfg):
        cfg["process"]["terminal"] = True
    res = create_fails(oci, bundle(["true"], edit=edit), cid(), "--console-socket", path)
    assert path in res.stderr, str(res)


# ------------------------------------------------------------------------------------------ parent, after fork
def test_cgroup_limit_refused_by_kernel(oci, bundle, cid):
    """cpuset.cpus naming a CPU this host does not have: the cgroup write fails after stage 1 was forked."""
    def edit(cfg):
        cfg["linux"]["resources"]["cpu"] = {"cpus": "4000-4001"}
    res = create_fails(oci, bundle(["true"], edit=edit), cid())
    assert "cpu" in res.stderr.lower(), str(res)


def test_memory_limit_below_the_runtime_needs(oci, bundle, cid):
    """A memory limit too small for the init to finish setting up: whatever the kernel does (ENOMEM, OOM kill of
    the init during create), create fails with one clear line and leaves nothing."""
    def edit(cfg):
        cfg["linux"]["resources"]["memory"] = {"limit": 4096 * 64, "swap": 4096 * 64}
        cfg["process"]["args"] = ["sh", "-c", "x=$(head -c 2000000 /dev/zero | tr '\\0' a); echo ${#x}"]
    b = bundle(["true"], edit=edit)
    c = cid()
    res = oci("run", "--bundle", b, c)
    no_traceback(res)
    if res.returncode != 0 and res.returncode < 128:  # failed in ocirun, not the container's own exit
        assert [ln for ln in res.stderr.splitlines() if ln.strip()], str(res)
    assert oci("state", c).returncode != 0
    assert not cgroup_dirs(c), sorted(cgroup_dirs(c))


# ------------------------------------------------------------------------------------------ in the init, before pivot
def test_mount_tmpfs_onto_a_file(oci, bundle, cid):
    b = bundle(["true"], edit=lambda c: _mount(c, {"destination": "/bin/busybox", "type": "tmpfs",
                                                     "source": "tmpfs"}))
    res = create_fails(oci, b, cid())
    assert "/bin/busybox" in res.stderr, str(res)


def test_bind_a_directory_onto_a_file(oci, bundle, cid, tmp_path):
    src = str(tmp_path)
    b = bundle(["true"], edit=lambda c: _mount(c, {"destination": "/etc/passwd", "type": "bind", "source": src,
                                                     "options": ["bind"]}))
    res = create_fails(oci, b, cid())
    assert "/etc/passwd" in res.stderr, str(res)


def test_mount_proc_with_bad_option(oci, bundle, cid):
    b = bundle(["true"], edit=lambda c: _mount(c, {"destination": "/proc2", "type": "proc", "source": "proc",
                                                     "options": ["hidepid=banana"]}))
    res = create_fails(oci, b, cid())
    assert "/proc2" in res.stderr, str(res)


def test_hostname_too_long(oci, bundle, cid):
    res = create_fails(oci, bundle(["true"], hostname="h" * 65), cid())
    assert "hostname" in res.stderr.lower(), str(res)


def test_failing_create_container_hook(oci, bundle, cid, tmp_path):
    hook = tmp_path / "fail.sh"
    hook.write_text("#!/bin/sh\ncat >/dev/null\necho 'no way' >&2\nexit 7\n")
    hook.chmod(0o755)
    b = bundle(["sleep", "60"], hooks={"createContainer": [{"path": str(hook)}]})
    res = create_fails(oci, b, cid())
    assert "createContainer" in res.stderr, str(res)


def test_create_container_hook_killed_by_signal(oci, bundle, cid, tmp_path):
    hook = tmp_path / "die.sh"
    hook.write_text("#!/bin/sh\nkill -9 $$\n")
    hook.chmod(0o755)
    b = bundle(["sleep", "60"], hooks={"createContainer": [{"path": str(hook)}]})
    res = create_fails(oci, b, cid())
    assert "createContainer" in res.stderr, str(res)


def test_device_node_path_outside_dev_parent_missing(oci, bundle, cid):
    def edit(cfg):
        cfg["linux"]["devices"] = [{"path": "/dev/../no/such/dir/null", "type": "c", "major": 1, "minor": 3}]
    b = bundle(["true"], edit=edit)
    c = cid()
    res = oci("create", "--bundle", b, c)
    no_traceback(res)
    if res.returncode == 0:  # accepted: then it must have stayed inside the rootfs
        assert not os.path.exists("/no/such/dir/null")
        assert oci("delete", "--force", c).returncode == 0
    else:
        one_line_error(res)


# ------------------------------------------------------------------------------------------ after pivot_root
def test_unknown_sysctl(oci, bundle, cid):
    res = create_fails(oci, bundle(["true"], edit=lambda c: c["linux"].__setitem__(
        "sysctl", {"net.ipv4.no_such_sysctl": "1"})), cid())
    assert "net.ipv4.no_such_sysctl" in res.stderr, str(res)


def test_sysctl_value_refused(oci, bundle, cid):
    res = create_fails(oci, bundle(["true"], edit=lambda c: c["linux"].__setitem__(
        "sysctl", {"net.ipv4.ip_forward": "banana"})), cid())
    assert "net.ipv4.ip_forward" in res.stderr, str(res)


def test_args0_broken_symlink(oci, bundle, cid):
    b = bundle(["/bin/dangling"])
    os.symlink("/no/such/target", os.path.join(bundle.rootfs(b), "bin", "dangling"))
    res = create_fails(oci, b, cid())
    assert "/bin/dangling" in res.stderr, str(res)


# ------------------------------------------------------------------------------------------ after the container exists
def test_pid_file_is_a_directory(oci, bundle, cid, tmp_path):
    d = tmp_path / "pid-dir"
    d.mkdir()
    res = create_fails(oci, bundle(["sleep", "60"]), cid(), "--pid-file", str(d))
    assert "pid-dir" in res.stderr, str(res)


# ------------------------------------------------------------------------------------------ at start
def _start_fails_then_clean(oci, b, c, created=False):
    if not created:
        assert oci("create", "--bundle", b, c).returncode == 0
    res = oci("start", c)
    lines = one_line_error(res)
    assert len(lines) <= 3, res.stderr
    st = oci("state", c)
    no_traceback(st)
    d = oci("delete", "--force", c)
    assert d.returncode == 0, str(d)
    assert oci("state", c).returncode != 0
    assert not cgroup_dirs(c), sorted(cgroup_dirs(c))
    return res


def test_failing_start_container_hook(oci, bundle, cid, tmp_path):
    hook = tmp_path / "fail.sh"
    hook.write_text("#!/bin/sh\ncat >/dev/null\nexit 3\n")
    hook.chmod(0o755)
    # the hook runs in the container after pivot_root: put it in the rootfs at the same path
    b = bundle(["sleep", "60"], hooks={"startContainer": [{"path": "/fail-hook.sh"}]})
    with open(os.path.join(bundle.rootfs(b), "fail-hook.sh"), "w") as f:
        f.write(hook.read_text())
    os.chmod(os.path.join(bundle.rootfs(b), "fail-hook.sh"), 0o755)
    res = _start_fails_then_clean(oci, b, cid())
    assert "startContainer" in res.stderr, str(res)


def test_script_with_missing_interpreter(oci, bundle, cid):
    b = bundle(["/bin/script"])
    p = os.path.join(bundle.rootfs(b), "bin", "script")
    with open(p, "w") as f:
        f.write("#!/no/such/interpreter\necho hi\n")
    os.chmod(p, 0o755)
    c = cid()
    res = oci("create", "--bundle", b, c)
    no_traceback(res)
    if res.returncode != 0:  # refused at create (as runc does not, but fine): must be clean
        one_line_error(res)
        assert oci("state", c).returncode != 0
        return
    r = _start_fails_then_clean(oci, b, c, created=True)
    assert "/bin/script" in r.stderr or "interpreter" in r.stderr, str(r)


def test_init_error_is_not_lost_when_placed_is_unread(oci, bundle, cid, tmp_path):
    """The init fails on a mount (bind source missing, mounts[400]) after the parent has already sent it
    "placed", which the init never reads: the init is SIGSTOPped right after "init: begin" (seen through
    OCIRUN_TRACE) and continued once the parent traced "parent: init placed". The create must still fail with
    `ocirun: ` lines naming the init's error (3 rounds). Regression guard for the peer-died-early paths of the
    parent/init channel (see test_faults.py::test_create_child_killed_at_phase[init: begin] and the config
    fuzzer, which hit an empty-stderr exit 1 / ConnectionResetError traceback there)."""
    import signal
    import subprocess
    import time

    from relhelp import alive, host_pid_by_nspid

    def edit(cfg):
        # 400 small tmpfs mounts first: they keep the init busy long enough to be found and stopped
        pad = [{"destination": f"/pad/{i}", "type": "tmpfs", "source": "tmpfs", "options": ["size=4k"]}
               for i in range(400)]
        cfg["mounts"][0:0] = pad + [{"destination": "/data", "type": "bind", "source": "/nonexistent-ocirun-src",
                                     "options": ["rbind"]}]
    b = bundle(["true"], edit=edit)
    env = dict(os.environ, OCIRUN_TRACE="1")
    for n in range(3):
        c = cid()
        err_path = tmp_path / f"err{n}"
        with open(err_path, "w") as err:
            p = subprocess.Popen(oci.argv("create", "--bundle", b, c), stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=err, env=env)

        def wait_text(t):
            end = time.monotonic() + 20
            while t not in err_path.read_text():
                assert p.poll() is None and time.monotonic() < end, f"no {t!r}: {err_path.read_text()!r}"
                time.sleep(0.0002)
        wait_text("init: begin")
        init = host_pid_by_nspid(c, 1)
        assert init, "no init process"
        os.kill(init, signal.SIGSTOP)
        try:
            wait_text("parent: init placed")
        finally:
            os.kill(init, signal.SIGCONT)
        rc = p.wait(timeout=30)
        text = err_path.read_text()
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("ocirun-trace ")]

        class R:
            returncode, stderr, stdout = rc, "\n".join(lines), ""

            def __str__(self):
                return f"create exit {rc}, stderr {text!r}"
        one_line_error(R())
        assert "/nonexistent-ocirun-src" in R.stderr, f"the init's error was lost: {R()}"
        st = oci("state", c)
        assert st.returncode != 0 and "does not exist" in st.stderr, str(st)
        assert not cgroup_dirs(c), sorted(cgroup_dirs(c))
        assert not [q for q in _pids_with(c) if alive(q)]


def _pids_with(marker):
    from relhelp import alive

    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if marker.encode() in f.read() and alive(int(name)):
                        out.append(int(name))
            except OSError:
                pass
    return out
