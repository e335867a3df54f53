"""The container lifecycle through the ocirun CLI (runtime.md "Lifecycle" and "Operations", runc's verbs):
create -> state -> start -> kill -> delete, foreground and detached `run`, the errors of each operation in
the wrong state, `list`, concurrent creates, --pid-file and --log. Every test runs under the leak checker
(conftest.host_snapshot)."""
import json
import os
import subprocess
import time

import pytest

from procstatus import status_fields  # (tests/integration is on sys.path: see conftest)

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates real containers")]

# sh as pid 1 of a pid namespace ignores signals it does not handle: trap TERM so that `kill TERM` ends it.
TRAP_TERM = ["sh", "-c", "trap 'echo got-term; exit 0' TERM; echo ready-$$; while :; do sleep 0.05; done"]
# TERM is reported and survived: only KILL ends it (so a KILL sent as TERM is seen).
SURVIVE_TERM = ["sh", "-c", "trap 'echo got-term' TERM; echo ready-$$; while :; do sleep 0.05; done"]


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rindex(b")") + 2:].split()[0] not in (b"Z", b"X")


def _create(oci, b, cid, *flags, out=None):
    res = oci("create", "--bundle", b, *flags, cid, stdout=out)
    assert res.returncode == 0, str(res)
    return res


# ------------------------------------------------------------------------------------------ the full cycle
@pytest.mark.parametrize("sig", ["TERM", "SIGTERM", "15", "KILL", "9"])
def test_create_start_kill_delete(oci, bundle, cid, tmp_path, wait_for, sig):
    """The whole cycle, ended by `kill SIG`. The container tells the signals apart: for TERM it traps TERM,
    says so and exits; for KILL it traps TERM without exiting, so only a real SIGKILL stops it (and it never
    saw a TERM)."""
    is_term = sig in ("TERM", "SIGTERM", "15")
    annotations = {"org.ocirun.test": "lifecycle", "com.example.n": "1"}
    b = bundle(TRAP_TERM if is_term else SURVIVE_TERM, annotations=annotations)
    c = cid()
    pidfile = tmp_path / "init.pid"
    out = tmp_path / "ctr.out"
    _create(oci, b, c, "--pid-file", pidfile, out=out)

    st = oci.state(c)
    assert st is not None
    assert st["status"] == "created"
    assert st["id"] == c
    assert st["ociVersion"] == "1.3.0"
    assert st["bundle"] == os.path.realpath(b)
    assert st["annotations"] == annotations
    pid = st["pid"]
    assert isinstance(pid, int) and pid > 0 and _alive(pid)
    assert pidfile.read_text().strip() == str(pid)
    # created: the user program has not run yet
    time.sleep(0.1)
    assert "ready" not in out.read_text()

    res = oci("start", c)
    assert res.returncode == 0, str(res)
    st = oci.state(c)
    assert st["status"] == "running" and st["pid"] == pid
    # the init exec'd the user program: $$ in the container is pid 1
    wait_for(lambda: "ready-1" in out.read_text(), what="the container's output")

    res = oci("kill", c, sig)
    assert res.returncode == 0, str(res)
    st = oci.wait_status(c, "stopped")
    assert st is not None and st["status"] == "stopped", st
    assert st["pid"] == 0  # as runc reports a stopped container
    assert not _alive(pid)
    if is_term:
        assert "got-term" in out.read_text()
    else:
        assert "got-term" not in out.read_text(), f"kill {sig} delivered a TERM: {out.read_text()!r}"

    res = oci("delete", c)
    assert res.returncode == 0, str(res)
    res = oci("state", c)
    assert res.returncode == 1 and "container does not exist" in res.stderr, str(res)


def test_kill_default_signal_is_term(oci, bundle, cid, tmp_path, wait_for):
    b = bundle(TRAP_TERM)
    c = cid()
    out = tmp_path / "out"
    _create(oci, b, c, out=out)
    assert oci("start", c).returncode == 0
    wait_for(lambda: "ready" in out.read_text(), what="ready")
    res = oci("kill", c)
    assert res.returncode == 0, str(res)
    assert oci.wait_status(c, "stopped")["status"] == "stopped"
    assert "got-term" in out.read_text()
    assert oci("delete", c).returncode == 0


# ------------------------------------------------------------------------------------------ run
@pytest.mark.parametrize("args,code", [(["true"], 0), (["sh", "-c", "exit 7"], 7), (["false"], 1)])
def test_run_foreground_exit_code(oci, bundle, cid, args, code):
    c = cid()
    res = oci("run", "--bundle", bundle(args), c)
    assert res.returncode == code, str(res)
    # a foreground run deletes the container when it exits
    assert oci.state(c) is None
    assert os.listdir(oci.root) == []


def test_run_foreground_output_on_stdout(oci, bundle, cid):
    res = oci("run", "-b", bundle(["sh", "-c", "echo out-$$; echo err >&2"]), cid())
    assert res.returncode == 0, str(res)
    assert res.stdout == "out-1\n"
    assert "err\n" in res.stderr


def test_run_foreground_killed_by_signal_without_pid_ns(oci, bundle, cid):
    """A process that is not a pid-namespace init can kill itself: run exits 128+signal (143 for TERM)."""
    def edit(cfg):
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "pid"]
    res = oci("run", "-b", bundle(["sh", "-c", "kill -TERM $$; sleep 5"], edit=edit), cid())
    assert res.returncode == 128 + 15, str(res)


def test_run_foreground_killed_from_outside(oci, bundle, cid, tmp_path, wait_for):
    c = cid()
    b = bundle(["sh", "-c", "echo up; exec sleep 60"])
    out = open(tmp_path / "run.out", "w")
    p = oci.popen("run", "-b", b, c, stdout=out)
    try:
        wait_for(lambda: (oci.state(c) or {}).get("status") == "running"
                 and "up" in (tmp_path / "run.out").read_text(), what="running")
        res = oci("kill", c, "KILL")
        assert res.returncode == 0, str(res)
        assert p.wait(timeout=10) == 128 + 9
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        out.close()
    assert oci.state(c) is None


def test_run_detached(oci, bundle, cid, tmp_path, wait_for):
    c = cid()
    out = tmp_path / "out"
    t0 = time.monotonic()
    res = oci("run", "-d", "--bundle", bundle(["sh", "-c", "echo detached-$$; exec sleep 60"]), c, stdout=out)
    assert res.returncode == 0, str(res)
    assert time.monotonic() - t0 < 10
    st = oci.state(c)
    assert st["status"] == "running"
    assert _alive(st["pid"])
    wait_for(lambda: "detached-1" in out.read_text(), what="the detached container's output")
    assert oci("kill", c, "KILL").returncode == 0
    assert oci.wait_status(c, "stopped")["status"] == "stopped"
    assert oci("delete", c).returncode == 0
    assert oci.state(c) is None


# ------------------------------------------------------------------------------------------ wrong states
def test_start_running_and_stopped_fail(oci, bundle, cid, wait_for):
    c = cid()
    _create(oci, bundle(["sleep", "60"]), c)
    assert oci("start", c).returncode == 0
    res = oci("start", c)
    assert res.returncode != 0, str(res)
    assert "running" in res.stderr, str(res)
    assert oci.state(c)["status"] == "running"
    assert oci("kill", c, "KILL").returncode == 0
    assert oci.wait_status(c, "stopped")["status"] == "stopped"
    res = oci("start", c)
    assert res.returncode != 0, str(res)
    assert "stopped" in res.stderr, str(res)
    assert oci("delete", c).returncode == 0


def test_kill_stopped_fails(oci, bundle, cid):
    c = cid()
    _create(oci, bundle(["true"]), c)
    assert oci("start", c).returncode == 0
    st = oci.wait_status(c, "stopped")
    assert st["status"] == "stopped"
    res = oci("kill", c, "KILL")
    assert res.returncode != 0, str(res)
    assert res.stderr.strip(), "an error message is expected"
    assert oci("delete", c).returncode == 0


def test_kill_unknown_fails(oci, cid):
    res = oci("kill", cid("nope"), "KILL")
    assert res.returncode == 1 and "does not exist" in res.stderr, str(res)


def test_delete_running_needs_force(oci, bundle, cid):
    c = cid()
    _create(oci, bundle(["sleep", "60"]), c)
    assert oci("start", c).returncode == 0
    pid = oci.state(c)["pid"]
    res = oci("delete", c)
    assert res.returncode != 0, str(res)
    assert "running" in res.stderr
    assert oci.state(c)["status"] == "running" and _alive(pid)
    res = oci("delete", "--force", c)
    assert res.returncode == 0, str(res)
    assert oci.state(c) is None
    assert not _alive(pid)


def test_delete_created_container(oci, bundle, cid):
    """runtime.md: deleting a container that is not stopped MUST be an error (a created one included; runc 1.1
    deletes it anyway, we follow the spec). --force deletes it, and its init goes with it."""
    c = cid()
    _create(oci, bundle(["sleep", "60"]), c)
    pid = oci.state(c)["pid"]
    res = oci("delete", c)
    assert res.returncode != 0 and "not stopped: created" in res.stderr, str(res)
    assert oci.state(c)["status"] == "created" and _alive(pid)
    res = oci("delete", "--force", c)
    assert res.returncode == 0, str(res)
    assert oci.state(c) is None
    assert not _alive(pid)


def test_delete_unknown_fails(oci, cid):
    res = oci("delete", cid("nope"))
    assert res.returncode == 1 and "does not exist" in res.stderr, str(res)


def test_state_unknown(oci, cid):
    res = oci("state", cid("nope"))
    assert res.returncode == 1, str(res)
    assert "container does not exist" in res.stderr
    assert res.stdout == ""


def test_create_existing_id_fails(oci, bundle, cid):
    c = cid()
    b = bundle(["sleep", "60"])
    _create(oci, b, c)
    pid = oci.state(c)["pid"]
    res = oci("create", "-b", b, c)
    assert res.returncode != 0, str(res)
    assert "exists" in res.stderr, str(res)
    # the first container is untouched
    st = oci.state(c)
    assert st["status"] == "created" and st["pid"] == pid and _alive(pid)
    assert oci("delete", "--force", c).returncode == 0  # created: not stopped


def test_concurrent_creates_one_wins(oci, bundle, cid, tmp_path):
    c = cid()
    b = bundle(["sleep", "60"])
    errs = [open(tmp_path / f"err{i}", "w") for i in range(3)]
    try:
        procs = [oci.popen("create", "-b", b, c, stderr=errs[i]) for i in range(3)]
        codes = [p.wait(timeout=30) for p in procs]
    finally:
        for e in errs:
            e.close()
    stderr = [(tmp_path / f"err{i}").read_text() for i in range(3)]
    assert codes.count(0) == 1, (codes, stderr)
    for code, err in zip(codes, stderr):
        if code:
            assert "exists" in err or "busy" in err, err
    st = oci.state(c)
    assert st["status"] == "created" and _alive(st["pid"])
    assert oci("delete", "--force", c).returncode == 0  # created: not stopped


# ------------------------------------------------------------------------------------------ list
def test_list_table_and_json(oci, bundle, cid):
    res = oci("list", "--format", "json")
    assert res.returncode == 0 and res.stdout.strip() == "null", str(res)   # runc prints null for none
    a, b_ = cid("a"), cid("b")
    ba = bundle(["sleep", "60"])
    _create(oci, ba, a)
    _create(oci, ba, b_)
    assert oci("start", b_).returncode == 0
    pids = {a: oci.state(a)["pid"], b_: oci.state(b_)["pid"]}

    res = oci("list")
    assert res.returncode == 0, str(res)
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    rows = {ln.split()[0]: ln.split() for ln in lines[1:]}
    assert set(rows) == {a, b_}
    assert rows[a][1:4] == [str(pids[a]), "created", os.path.realpath(ba)]
    assert rows[b_][1:4] == [str(pids[b_]), "running", os.path.realpath(ba)]

    res = oci("list", "--format", "json")
    assert res.returncode == 0, str(res)
    items = {s["id"]: s for s in json.loads(res.stdout)}
    assert set(items) == {a, b_}
    assert items[a]["status"] == "created" and items[a]["pid"] == pids[a]
    assert items[b_]["status"] == "running" and items[b_]["pid"] == pids[b_]
    assert items[a]["bundle"] == os.path.realpath(ba)

    res = oci("list", "-q")
    assert sorted(res.stdout.split()) == sorted([a, b_])
    for c in (a, b_):
        assert oci("delete", "--force", c).returncode == 0
    assert oci("list", "-q").stdout == ""


# ------------------------------------------------------------------------------------------ flags
def test_pid_file_relative_to_cwd(oci, bundle, cid, tmp_path):
    c = cid()
    work = tmp_path / "work"
    work.mkdir()
    res = oci("create", "--bundle", bundle(["sleep", "60"]), "--pid-file", "rel.pid", c, cwd=str(work))
    assert res.returncode == 0, str(res)
    pid = oci.state(c)["pid"]
    assert (work / "rel.pid").read_text().strip() == str(pid)
    assert oci("delete", "--force", c).returncode == 0  # created: not stopped


def test_bundle_relative_to_cwd(oci, bundle, cid):
    b = bundle(["true"])
    res = oci("run", "--bundle", ".", cid(), cwd=b)
    assert res.returncode == 0, str(res)
    res = oci("run", cid(), cwd=b)   # no --bundle: the current directory
    assert res.returncode == 0, str(res)


def _json_lines(path):
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    assert lines, f"{path} is empty"
    return [json.loads(ln) for ln in lines]


def test_log_json_on_error(oci, cid, tmp_path):
    log = tmp_path / "ocirun.log"
    res = oci("--log", log, "--log-format", "json", "state", cid("nope"))
    assert res.returncode == 1, str(res)
    recs = _json_lines(log)
    for r in recs:
        assert {"level", "msg", "time"} <= set(r), r
        assert r["time"][:2] == "20" and "T" in r["time"]
    errs = [r for r in recs if r["level"] == "error"]
    assert errs and any("container does not exist" in r["msg"] for r in errs), recs


def test_log_json_on_create_error(oci, cid, tmp_path):
    log = tmp_path / "create.log"
    missing = tmp_path / "no-such-bundle"
    res = oci("--log", log, "--log-format=json", "create", "--bundle", missing, cid())
    assert res.returncode != 0, str(res)
    errs = [r for r in _json_lines(log) if r.get("level") == "error"]
    assert errs, log.read_text()
    assert any("config.json" in r["msg"] for r in errs), errs


@pytest.mark.parametrize("sig", ["TERM", "KILL"])
def test_kill_created_container(oci, bundle, cid, tmp_path, sig):
    """A created container can be signalled (runc allows it); its user program then never runs."""
    c = cid()
    out = tmp_path / "out"
    _create(oci, bundle(["sh", "-c", "echo ran"]), c, out=out)
    pid = oci.state(c)["pid"]
    res = oci("kill", c, sig)
    assert res.returncode == 0, str(res)
    st = oci.wait_status(c, "stopped")
    assert st["status"] == "stopped", st
    assert not _alive(pid)
    res = oci("start", c)
    assert res.returncode != 0, str(res)
    assert "ran" not in out.read_text()
    assert oci("delete", c).returncode == 0


def test_run_detached_short_lived_then_delete(oci, bundle, cid, tmp_path):
    c = cid()
    res = oci("run", "-d", "-b", bundle(["true"]), c, stdout=tmp_path / "out")
    assert res.returncode == 0, str(res)
    st = oci.wait_status(c, "stopped")
    assert st["status"] == "stopped" and st["pid"] == 0
    res = oci("list", "--format", "json")
    assert [(s["id"], s["status"]) for s in json.loads(res.stdout)] == [(c, "stopped")]
    assert oci("delete", c).returncode == 0
    assert oci.state(c) is None


def test_foreground_run_runs_poststop(oci, bundle, cid, tmp_path):
    marker = tmp_path / "poststop.json"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\ncat > {marker}\n")
    hook.chmod(0o755)
    c = cid()
    res = oci("run", "-b", bundle(["true"], hooks={"poststop": [{"path": str(hook)}]}), c)
    assert res.returncode == 0, str(res)
    st = json.loads(marker.read_text())
    assert st["id"] == c and st["status"] == "stopped"


def _status_fields(pid):
    with open(f"/proc/{pid}/status") as f:
        return status_fields(f.read())


@pytest.mark.parametrize("start_hook", [False, True], ids=["no-hooks", "startContainer-hook"])
def test_created_init_is_already_the_containers_user(oci, bundle, cid, wait_for, start_hook):
    """As runc: a created container's init has already switched to process.user and dropped capabilities
    (start then only execs), also with startContainer hooks: those run at start as the process is about to
    (its user, its capabilities, its seccomp filter), as runc's do. The started process is the container's user,
    in its bounding set."""
    def edit(cfg):
        cfg["process"]["user"] = {"uid": 1234, "gid": 4321}
        cfg["process"]["noNewPrivileges"] = True
        cfg["process"]["capabilities"] = {k: ["CAP_KILL"] for k in ("bounding", "effective", "permitted")}
        if start_hook:
            cfg["hooks"] = {"startContainer": [{"path": "/bin/true", "args": ["true"]}]}
    c = cid()
    _create(oci, bundle(["sleep", "60"], edit=edit), c)
    try:
        pid = oci.state(c)["pid"]
        st = _status_fields(pid)
        assert st["Uid"].split() == ["1234"] * 4 and st["Gid"].split() == ["4321"] * 4, (st["Uid"], st["Gid"])
        assert int(st["CapEff"], 16) == 1 << 5 and st["NoNewPrivs"] == "1", (st["CapEff"], st["NoNewPrivs"])
        assert int(st["CapBnd"], 16) == 1 << 5, st["CapBnd"]
        res = oci("start", c)
        assert res.returncode == 0, str(res)
        wait_for(lambda: _status_fields(pid).get("Name") == "sleep")
        st = _status_fields(pid)
        # (execve as a non-root user without ambient caps leaves none effective: the bounding set shows ours)
        assert st["Uid"].split() == ["1234"] * 4 and st["Gid"].split() == ["4321"] * 4, (st["Uid"], st["Gid"])
        assert int(st["CapBnd"], 16) == 1 << 5, st["CapBnd"]
    finally:
        oci("delete", "--force", c)
