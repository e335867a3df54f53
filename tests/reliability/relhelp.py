"""Helpers of the reliability suite (imported by conftest.py and the test modules).

Loads ../integration/conftest.py once, under its own module name, so that its fixtures and leak-checker
functions are reused without editing or copying it.
"""
import importlib.util
import os
import signal
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
_NAME = "_ocirun_integration_conftest"
if _NAME in sys.modules:
    integration = sys.modules[_NAME]
else:
    _spec = importlib.util.spec_from_file_location(_NAME, os.path.join(HERE, "..", "integration", "conftest.py"))
    integration = importlib.util.module_from_spec(_spec)
    sys.modules[_NAME] = integration
    _spec.loader.exec_module(integration)

cgroup_dirs = integration.cgroup_dirs
mount_points = integration.mount_points
processes = integration.processes


# ----------------------------------------------------------------------------------------------- helpers
def one_line_error(res):
    """Assert a clean failure: non-zero exit, no traceback, and every stderr line an `ocirun: ` line
    (at least one). Returns the stderr lines."""
    assert res.returncode != 0, str(res)
    no_traceback(res)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines, "no error message: " + str(res)
    bad = [ln for ln in lines if not ln.startswith("ocirun: ")]
    assert not bad, f"stderr lines not of the form 'ocirun: MESSAGE': {bad!r}\n{res}"
    return lines


def no_traceback(res):
    for stream in (res.stderr or "", res.stdout or ""):
        assert "Traceback (most recent call last)" not in stream, "Python traceback:\n" + str(res)


def proc_state(pid):
    """The one-letter state of /proc/PID/stat, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2:].split()[0].decode()


def alive(pid):
    """True when pid is a live process (zombies count as dead)."""
    return proc_state(pid) not in (None, "Z", "X")


def nspids(pid):
    """The NSpid line of /proc/PID/status: [host pid, pid in the child ns, ...], or []."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return [int(x) for x in line.split()[1:]]
    except OSError:
        pass
    return []


def host_pid_by_nspid(marker, inner_pid):
    """Host pid of the live process whose cmdline contains marker and whose pid in its innermost pid
    namespace is inner_pid (what the stop file records), or None."""
    best = None
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        if pid == os.getpid() or not alive(pid):
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker not in cmd:
            continue
        ns = nspids(pid)
        if ns and ns[-1] == inner_pid:
            if best is None or len(ns) > len(nspids(best)):
                best = pid
    return best


# ----------------------------------------------------------------------------------------------- fault hook
class Stopper:
    """Runs ocirun commands with OCIRUN_TEST_STOP_AT=<label>: the first ocirun process that reaches the phase
    appends 'PID LABEL' to the stop file and blocks there.

    The stop file lives in a directory that tests bind-mount into the container at the same path
    (`mount()`), so that phases after pivot_root (inside the container) can write it as well."""

    def __init__(self, base):
        self.dir = base
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o777)
        self.file = os.path.join(self.dir, "stop")

    def env(self, label):
        e = dict(os.environ)
        e["OCIRUN_TEST_STOP_AT"] = label
        e["OCIRUN_TEST_STOP_FILE"] = self.file
        return e

    def mount(self):
        """The config mount that makes the stop file reachable inside the container."""
        return {"destination": self.dir, "type": "bind", "source": self.dir, "options": ["rbind", "rw"]}

    def entries(self):
        try:
            with open(self.file) as f:
                return [(int(a), b.strip()) for a, _, b in (ln.partition(" ") for ln in f if ln.strip())]
        except FileNotFoundError:
            return []

    def wait(self, label, proc=None, timeout=20.0):
        """Wait until some process has stopped at label; returns the pid it wrote (its own pid-ns view)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for pid, lab in self.entries():
                if lab == label:
                    return pid
            if proc is not None and proc.poll() is not None:
                pytest.fail(f"ocirun exited ({proc.returncode}) before reaching the phase {label!r}")
            time.sleep(0.01)
        pytest.fail(f"no ocirun process reached the phase {label!r} within {timeout}s")




def kill_pids(pids):
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
