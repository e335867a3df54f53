"""Fixtures of the reliability suite: nothing lost, nothing leaked.

The integration suite's fixtures (../integration/conftest.py: `oci`, `bundle`, `cid`, `wait_for`, the autouse
leak checker `host_snapshot`, ...) are reused as they are: that file is loaded here under its own module name
and its fixtures re-exported, so it is not edited and not duplicated.

Added here
----------
- the `root` marker and the not-root skip for every test in this directory;
- `fd_leaks` (autouse): after each test, no process on the host may still hold a file descriptor on anything
  under the test's state roots or bundle directory (a leaked listening socket, a lock, an open rootfs), and
  this pytest process must not have gained descriptors (an fd that ocirun hands back to its caller);
- `stopper`: the fault-injection hook (OCIRUN_TEST_STOP_AT / OCIRUN_TEST_STOP_FILE), to start `ocirun create`
  stopped at a named phase and find the host pid of the process that stopped there;
- small helpers: `one_line_error`, `no_traceback`, `alive`, `host_pid_by_nspid`.

Marker `slow`: the load tests (100 containers, fuzzing); deselect with -m "not slow".
"""
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from relhelp import HERE, Stopper, alive, integration  # noqa: E402

# Fixtures (and the report hook the leak checker reads) re-exported from the integration suite.
ocirun_bin = integration.ocirun_bin
runc_bin = integration.runc_bin
id_prefix = integration.id_prefix
cid = integration.cid
state_root = integration.state_root
runc_root = integration.runc_root
oci = integration.oci
runc = integration.runc
wait_for = integration.wait_for
busybox_rootfs = integration.busybox_rootfs
bundle = integration.bundle
host_snapshot = integration.host_snapshot
pytest_runtest_makereport = integration.pytest_runtest_makereport



def pytest_configure(config):
    config.addinivalue_line("markers", "slow: load and fuzz tests of the reliability suite (tens of seconds)")
    config.addinivalue_line("markers", "root: needs root and a real kernel (integration)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(item.fspath).startswith(HERE + os.sep):
            item.add_marker(pytest.mark.root)
            if integration.NOT_ROOT:
                item.add_marker(pytest.mark.skip(reason=integration.NOT_ROOT_REASON))


@pytest.fixture
def stopper(bundle):
    d = os.path.join(bundle.base, "stop")
    return Stopper(d)


# ----------------------------------------------------------------------------------------------- fd leaks
def _fds_under(dirs):
    """[(pid, fd, target)] of open descriptors, host-wide, whose target is under one of dirs."""
    prefixes = tuple(d.rstrip("/") + "/" for d in dirs)
    out = []
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        fd_dir = f"/proc/{name}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                t = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if (t.rstrip("/") + "/").startswith(prefixes):
                out.append((int(name), int(fd), t))
    return out


def _own_fds():
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            out[int(fd)] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    return out


@pytest.fixture(autouse=True)
def fd_leaks(request, host_snapshot):
    """No descriptor left open on the test's state roots / bundles by any process, none gained by us."""
    dirs = list(host_snapshot.roots)
    if "bundle" in request.fixturenames:
        dirs.append(request.getfixturevalue("bundle").base)
    before_own = _own_fds()
    before = {(p, fd) for p, fd, _ in _fds_under(dirs)}
    yield
    leaks = []
    for _ in range(20):
        leaks = [x for x in _fds_under(dirs) if (x[0], x[1]) not in before and alive(x[0])]
        if not leaks:
            break
        time.sleep(0.05)
    gained = {fd: t for fd, t in _own_fds().items() if fd not in before_own
              and not t.startswith(("pipe:", "anon_inode:", "socket:"))}
    # (pipes/sockets of our own: subprocess and thread pools open and close them lazily)
    gained = {fd: t for fd, t in gained.items() if any((t + "/").startswith(d.rstrip("/") + "/") for d in dirs)}
    rep = getattr(request.node, "_ocirun_rep_call", None)
    if rep is not None and rep.failed:
        return
    msgs = [f"pid {p} fd {fd} -> {t}" for p, fd, t in leaks] + [f"pytest fd {fd} -> {t}" for fd, t in gained.items()]
    if msgs:
        pytest.fail("open file descriptors left on the test's directories:\n  " + "\n  ".join(msgs), pytrace=False)


