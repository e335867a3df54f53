"""ocirun.state: the state store, its per-container lock, and what status a recorded container has now."""
import os
import time

import pytest

from ocirun import state as St
from ocirun.errors import NotFoundError, OciError, StateError


@pytest.fixture
def store(tmp_path):
    return St.Store(str(tmp_path / "root"))


def record(cid, **kw):
    st = {"id": cid, "status": "created", "pid": 0, "bundle": "/b", "created": St.now_rfc3339()}
    st.update(kw)
    return st


# ============================================================================ Store
def test_new_write_read_open_remove(store):
    lock = store.new("c1")
    try:
        assert os.path.isdir(store.dir("c1"))
        assert stat_mode(store.root) == 0o700 and stat_mode(store.dir("c1")) == 0o700
        assert store.read("c1") is None  # no state yet: a create that died before writing
        st = record("c1", pid=123, annotations={"a": "b"})
        store.write("c1", st)
        assert store.read("c1") == st
        # the temporary files were renamed away; recover.json keeps pids and cgroup for delete --force
        assert sorted(os.listdir(store.dir("c1"))) == ["recover.json", "state.json"]
        assert store.read_recovery("c1")["pid"] == 123
    finally:
        lock.release()
    assert store.ids() == ["c1"]
    with store.open("c1") as lock2:
        assert lock2.fd is not None and not lock2.gone()
        store.remove("c1")
        assert lock2.gone()
    assert store.ids() == []
    with pytest.raises(NotFoundError) as ei:
        store.read("c1")
    assert str(ei.value) == "container does not exist: c1"
    store.remove("c1")  # removing twice is fine


def stat_mode(p):
    return os.stat(p).st_mode & 0o777


def test_new_twice(store):
    store.new("dup").release()
    with pytest.raises(OciError) as ei:
        store.new("dup")
    assert str(ei.value) == "container with id exists: dup"


def test_open_missing(store):
    with pytest.raises(NotFoundError) as ei:
        store.open("ghost")
    assert str(ei.value) == "container does not exist: ghost"


def test_open_removed_while_waiting_is_not_found(store):
    """A command that got the lock only after the holder deleted the container must see it gone."""
    store.new("x").release()
    lock = St.Lock(store.dir("x"))
    lock.acquire()
    store.remove("x")
    assert lock.gone()
    lock.release()
    with pytest.raises(NotFoundError):
        store.open("x")


def test_lock_non_blocking_busy(store):
    held = store.new("busy")
    try:
        with pytest.raises(StateError) as ei:
            store.open("busy", blocking=False)
        assert str(ei.value) == "container busy is busy (another ocirun command holds it)"
        assert St.is_locked(store.dir("busy"))
    finally:
        held.release()
    assert not St.is_locked(store.dir("busy"))
    store.open("busy", blocking=False).release()


def test_is_locked_on_missing_dir(tmp_path):
    assert St.is_locked(str(tmp_path / "none")) is False


def test_ids_ignore_files(store):
    store.ensure_root()
    open(os.path.join(store.root, "stray-file"), "w").close()
    store.new("b").release()
    store.new("a").release()
    assert store.ids() == ["a", "b"]


def test_ids_of_missing_root(tmp_path):
    assert St.Store(str(tmp_path / "none")).ids() == []


def test_store_rejects_bad_ids(store):
    for bad in ("a/b", "..", ".", "", "../x", "x" * 2000):
        with pytest.raises(OciError):
            store.new(bad)
        with pytest.raises(OciError):
            store.open(bad)
    assert not os.path.exists(store.root) or os.listdir(store.root) == []


def test_concurrent_new_exactly_one_wins(store):
    """8 processes race to create the same id: exactly one gets it, the others are told it exists."""
    store.ensure_root()
    gate_r, gate_w = os.pipe()
    pids = []
    for _ in range(8):
        pid = os.fork()
        if pid == 0:  # child
            code = 3
            try:
                os.close(gate_w)
                os.read(gate_r, 1)  # wait until every child is ready
                try:
                    lock = store.new("race")
                    code = 0
                    time.sleep(0.05)
                    lock.release()
                except OciError as e:
                    code = 1 if "container with id exists: race" == str(e) else 2
            finally:
                os._exit(code)
        pids.append(pid)
    os.close(gate_r)
    os.close(gate_w)  # EOF releases all of them at once
    codes = sorted(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids)
    assert codes == [0] + [1] * 7


# ============================================================================ corrupt state
@pytest.mark.parametrize("content", [
    b'{"id": "c", "status": "running", "pi',  # truncated
    b"",  # empty
    b"\x00\xff\xfe garbage",
    b"[1, 2]",
    b'"c"',
    b'{"id": "other"}',
    b'{"status": "running"}',
])
def test_corrupt_state(store, content):
    store.new("c").release()
    with open(os.path.join(store.dir("c"), "state.json"), "wb") as f:
        f.write(content)
    with pytest.raises(StateError) as ei:
        store.read("c")
    msg = str(ei.value)
    assert msg.startswith("container c: state file ") and "state.json is corrupt" in msg
    assert "delete --force c" in msg and "\n" not in msg


# ============================================================================ proc_start_time / status_of
def _stat_fields(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    return data


def test_proc_start_time_self():
    t = St.proc_start_time(os.getpid())
    assert isinstance(t, int) and t > 0
    assert St.proc_start_time(os.getpid()) == t
    assert St.proc_start_time(1) <= t


@pytest.mark.parametrize("pid", [0, -1, 2**22 + 12345, 10**12])
def test_proc_start_time_no_such_process(pid):
    assert St.proc_start_time(pid) is None


def test_proc_start_time_with_hostile_comm():
    """The command name may contain ') ' and spaces: field 22 must still be found."""
    comm = "a) b (c ) Z"
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            with open("/proc/self/comm", "w") as f:
                f.write(comm)
            os.write(w, b"x")
            time.sleep(30)
        finally:
            os._exit(0)
    try:
        os.read(r, 1)
        data = _stat_fields(pid)
        prefix = f"{pid} ({comm}) ".encode()
        assert data.startswith(prefix)
        want = int(data[len(prefix):].split()[19])
        assert St.proc_start_time(pid) == want
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(r)
        os.close(w)


def test_status_of_live_process(store):
    store.new("c").release()
    me = os.getpid()
    st = record("c", pid=me, init_start_time=St.proc_start_time(me))
    assert St.status_of(store, "c", st) == "running"
    st["paused"] = True
    assert St.status_of(store, "c", st) == "paused"
    del st["paused"]
    open(os.path.join(store.dir("c"), St.START_SOCK), "w").close()
    assert St.status_of(store, "c", st) == "created"


def test_status_of_pid_reused(store):
    store.new("c").release()
    me = os.getpid()
    st = record("c", pid=me, init_start_time=St.proc_start_time(me) + 1)
    assert St.status_of(store, "c", st) == "stopped"


def test_status_of_dead_and_bogus_pids(store):
    store.new("c").release()
    assert St.status_of(store, "c", None) == "stopped"
    for pid in (0, -5, None, 2**22 + 12345):
        assert St.status_of(store, "c", record("c", pid=pid)) == "stopped"


def test_status_of_zombie(store):
    store.new("c").release()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            data = _stat_fields(pid)
            if data[data.rindex(b")") + 2:].split()[0] == b"Z":
                break
            time.sleep(0.005)
        else:
            pytest.fail("child never became a zombie")
        st = record("c", pid=pid, status="running")
        assert St.proc_start_time(pid) is None
        assert St.status_of(store, "c", st) == "stopped"
    finally:
        os.waitpid(pid, 0)


def test_status_of_creating(store):
    lock = store.new("c")
    st = record("c", status="creating", pid=0)
    try:
        assert St.status_of(store, "c", st) == "creating"
    finally:
        lock.release()
    assert St.status_of(store, "c", st) == "stopped"  # the create died: nobody holds the lock


def test_spec_state():
    st = record("c", pid=42, annotations={"k": "v"})
    assert St.spec_state(st, "running") == {"ociVersion": "1.3.0", "id": "c", "status": "running", "pid": 42,
                                            "bundle": "/b", "annotations": {"k": "v"}}
    out = St.spec_state(st, "stopped")
    assert out["pid"] == 0 and out["status"] == "stopped"


def test_validate_id():
    for ok in ("a", "A-b_c+d.e", "0", "x" * St.MAX_ID_LEN, "..."):
        assert St.validate_id(ok) == ok
    for bad in ("", ".", "..", "a/b", "a b", "a\nb", "caf\u00e9", "x" * (St.MAX_ID_LEN + 1), "a\x00b", b"abc"):
        with pytest.raises(OciError) as ei:
            St.validate_id(bad)
        assert "\n" not in str(ei.value) and str(ei.value).startswith("invalid container id")


def test_now_rfc3339():
    s = St.now_rfc3339()
    assert len(s) == len("2024-01-01T00:00:00.000000000Z") and s.endswith("Z") and s[10] == "T"
