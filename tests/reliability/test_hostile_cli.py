"""Hostile command lines: container ids with path separators, `..`, 128 KiB (the argv maximum), non-UTF-8 bytes, control characters;
huge and negative numbers for signals, fds and pids. Every one must be rejected cleanly: exit != 0, `ocirun: `
lines only (one line), no traceback, and nothing created (state root, cgroups, processes: the leak checker).
"""
import os
import subprocess

import pytest

from relhelp import cgroup_dirs

# A 1 MB id cannot reach any program through argv: Linux caps one argument at MAX_ARG_STRLEN (128 KiB, E2BIG
# from execve). The longest id a caller can pass is used instead.
HUGE = 128 * 1024 - 1
BAD_IDS = [b"a/b", b"../x", b"..", b".", b"/abs", b"x/../../etc", b"a\x00b"[:1] + b"\\", b"a b", b"a\nb", b"a\tb",
           b"\xff\xfe", b"caf\xc3\xa9", b"a" * HUGE, b"--", b"$(id)", b"a;b", b"*", b"a:b"]


def _run(ocirun_bin, root, argv, timeout=30):
    """Run ocirun with a bytes argv (non-UTF-8 allowed); returns (rc, stdout, stderr) as text. Outputs go to
    files, not pipes: a container that was (wrongly) created inherits them."""
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.run([ocirun_bin.encode(), b"--root", root.encode(), *argv], stdin=subprocess.DEVNULL,
                           stdout=out, stderr=err, timeout=timeout)
        out.seek(0)
        err.seek(0)
        return p.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace")


def _rejected(rc, out, err, what):
    assert rc != 0, f"{what}: accepted (exit 0): {out[:300]!r} {err[:300]!r}"
    assert "Traceback" not in err, f"{what}: traceback:\n{err[-3000:]}"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("ocirun: "), f"{what}: expected one 'ocirun: ' line: {err[:500]!r}"


def _ids(v):
    return repr(v[:20]) + (f"+{len(v)}" if len(v) > 20 else "")


@pytest.mark.parametrize("bad", BAD_IDS, ids=_ids)
@pytest.mark.parametrize("verb", ["create", "run", "state", "delete", "kill", "start", "exec"])
def test_bad_container_id(ocirun_bin, oci, bundle, tmp_path, bad, verb, id_prefix):
    if bad == b"a" * HUGE:
        bad = id_prefix.encode() + bad[len(id_prefix):]  # the leak checker finds anything named after it
    b = bundle(["true"]).encode()
    argv = {"create": [b"create", b"--bundle", b, bad], "run": [b"run", b"--bundle", b, bad],
            "state": [b"state", bad], "delete": [b"delete", b"--force", bad], "kill": [b"kill", bad, b"KILL"],
            "start": [b"start", bad], "exec": [b"exec", bad, b"true"]}[verb]
    rc, out, err = _run(ocirun_bin, oci.root, argv)
    if verb == "delete" and rc == 0:
        pass  # runc: delete --force of an unknown (even invalid) id may succeed silently; nothing may be created
    else:
        _rejected(rc, out, err, f"{verb} {bad[:40]!r}")
    assert os.listdir(oci.root) == [] if os.path.isdir(oci.root) else True
    for p in ("/tmp/x", "/x", "/etc/x"):
        assert not os.path.exists(os.path.join(p, "state.json"))


def test_long_id_no_cgroup_or_state(ocirun_bin, oci, bundle, id_prefix):
    bad = (id_prefix + "a" * 5000).encode()
    rc, out, err = _run(ocirun_bin, oci.root, [b"create", b"--bundle", bundle(["true"]).encode(), bad])
    _rejected(rc, out, err, "create with a 5000-character id")
    assert not cgroup_dirs(id_prefix)


@pytest.mark.parametrize("flag,value", [
    ("--preserve-fds", "99999999999"), ("--preserve-fds", "-1"), ("--preserve-fds", "18446744073709551616"),
    ("--preserve-fds", "1e3"), ("--preserve-fds", "0x10"), ("--preserve-fds", ""), ("--preserve-fds", "٣"),
    ("--bundle", "\udcff"), ("--pid-file", "/proc/self/no/such/dir/pid"),
])
def test_bad_create_flags(ocirun_bin, oci, bundle, cid, flag, value):
    b = bundle(["true"])
    argv = [b"create", b"--bundle", b.encode()]
    if flag == "--bundle":
        argv = [b"create"]
    argv += [flag.encode(), value.encode("utf-8", "surrogateescape"), cid().encode()]
    rc, out, err = _run(ocirun_bin, oci.root, argv)
    _rejected(rc, out, err, f"create {flag} {value!r}")
    assert os.listdir(oci.root) == [] if os.path.isdir(oci.root) else True


# (signal 0 is valid: runc sends it, the existence check; kill.bats)
@pytest.mark.parametrize("sig", ["99999999999", "-1", "65", "-9", "18446744073709551617", "SIGNOPE", "",
                                 "RTMIN+99", "RTMAX-99", "9.0", "\udcff", "KILL KILL"])
def test_bad_signals(ocirun_bin, oci, bundle, cid, sig):
    c = cid()
    assert oci("create", "--bundle", bundle(["sleep", "60"]), c).returncode == 0
    pid = oci.state(c)["pid"]
    try:
        rc, out, err = _run(ocirun_bin, oci.root, [b"kill", c.encode(), sig.encode("utf-8", "surrogateescape")])
        _rejected(rc, out, err, f"kill {sig!r}")
        assert oci.state(c)["status"] == "created", "a rejected kill changed the container"
        assert os.path.exists(f"/proc/{pid}")
    finally:
        oci("delete", "--force", c)


@pytest.mark.parametrize("args", [
    ["exec", "--preserve-fds", "99999999999", "{id}", "true"],
    ["exec", "--preserve-fds", "-5", "{id}", "true"],
    ["exec", "--user", "-1:-1", "{id}", "true"],
    ["exec", "--user", "99999999999999999999", "{id}", "true"],
    ["exec", "--process", "/nonexistent.json", "{id}"],
    ["exec", "--cwd", "relative\x01dir", "{id}", "true"],
    ["ps", "{id}", "-p", "-1"],
    ["update", "--pids-limit", "99999999999999999999999", "{id}"],
    ["update", "--memory", "-5", "{id}"],
    ["kill", "--all=maybe", "{id}"],
    ["list", "--format", "xml"],
    ["events", "--interval", "-1s", "{id}"],
])
def test_bad_numbers_and_flags_on_a_live_container(ocirun_bin, oci, bundle, cid, args):
    c = cid()
    assert oci("create", "--bundle", bundle(["sleep", "60"]), c).returncode == 0
    try:
        argv = [a.replace("{id}", c).encode("utf-8", "surrogateescape") for a in args]
        rc, out, err = _run(ocirun_bin, oci.root, argv, timeout=20)
        _rejected(rc, out, err, " ".join(args))
        assert oci.state(c)["status"] == "created"
    finally:
        oci("delete", "--force", c)


@pytest.mark.parametrize("root", ["/proc/self", "/dev/null/x", "/" + "r" * 5000, "/sys/kernel/x"])
@pytest.mark.parametrize("verb", ["create", "state", "list"])
def test_bad_root_flag(ocirun_bin, bundle, cid, root, verb):
    """A --root that cannot hold state. (create must fail; state of an id under it says it does not exist;
    list says nothing or fails cleanly.)"""
    argv = {"create": [b"create", b"--bundle", bundle(["true"]).encode(), cid().encode()],
            "state": [b"state", cid().encode()], "list": [b"list"]}[verb]
    rc, out, err = _run(ocirun_bin, root, argv)
    if verb == "list" and rc == 0:
        assert "Traceback" not in err
        return
    _rejected(rc, out, err, f"{verb} with --root {root[:40]!r}")
