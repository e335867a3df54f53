"""cgroups.prime_attach / prime_once / read_own: the early re-attach that takes the cgroup attach lock's RCU wait
off the critical path (its effect on the real kernel is measured by bench/bench_prime.py)."""
import os
import threading
import time

import pytest

from ocirun import cgroups


def _wait_for(pred, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.005)
    return False


@pytest.fixture
def tree(tmp_path):
    """A fake v1 root whose pids hierarchy has our 'own' cgroup /user.slice/s1 with a tasks file."""
    d = tmp_path / "pids" / "user.slice" / "s1"
    d.mkdir(parents=True)
    (d / "tasks").write_text("")
    return tmp_path


def test_primer_is_a_thread_writing_its_own_tid_into_its_own_cgroup(tree):
    own = "12:memory:/other\n8:pids:/user.slice/s1\n0::/user.slice/s1\n"
    before = {t.ident for t in threading.enumerate()}
    assert cgroups.prime_attach(str(tree), own_text=own) is None  # nothing to reap: no process was forked
    tasks = tree / "pids" / "user.slice" / "s1" / "tasks"
    assert _wait_for(lambda: tasks.read_text() != ""), "the primer never wrote"
    tid = int(tasks.read_text())
    assert tid != 0, '"0" would name the writing thread without taking the global lock: the tid must be explicit'
    assert tid != os.getpid() and tid != threading.get_native_id(), "the primer must be a thread of its own"
    assert _wait_for(lambda: {t.ident for t in threading.enumerate()} <= before | {None})


def test_own_threads_file_choices(tmp_path):
    v2 = tmp_path / "unified" / "a"
    v2.mkdir(parents=True)
    (v2 / "cgroup.threads").write_text("")
    assert cgroups._own_threads_file(str(tmp_path), "0::/a\n") == str(v2 / "cgroup.threads")  # hybrid: unified
    assert cgroups._own_threads_file(str(tmp_path), "4:pids:/nowhere\n") is None
    assert cgroups._own_threads_file(str(tmp_path), "") is None
    assert cgroups._own_threads_file(str(tmp_path), None) is None


def test_no_target_no_thread(tmp_path):
    n = threading.active_count()
    assert cgroups.prime_attach(str(tmp_path), own_text="8:pids:/missing\n") is None
    assert threading.active_count() == n


def test_read_own_is_read_once(tmp_path, monkeypatch):
    monkeypatch.setattr(cgroups, "_OWN", {})
    p = tmp_path / "cgroup"
    p.write_text("8:pids:/a\n")
    assert cgroups.read_own(str(p)) == "8:pids:/a\n"
    p.write_text("8:pids:/b\n")
    assert cgroups.read_own(str(p)) == "8:pids:/a\n"
    assert cgroups.read_own(str(tmp_path / "missing")) is None


def test_prime_once(tree, monkeypatch):
    calls = []
    monkeypatch.setattr(cgroups, "_PRIMED", [])
    monkeypatch.setattr(cgroups, "prime_attach", lambda root, own_text=None: calls.append(root))
    cgroups.prime_once(str(tree))
    cgroups.prime_once(str(tree))
    assert calls == [str(tree)]
