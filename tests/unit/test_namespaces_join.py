"""namespaces.join as exec calls it: the init's namespaces listed in JOIN_ORDER (user first), joined user last,
errors worded with exec's own prefix. No root: a recording fake for setns."""
import errno
import os
import sys

import pytest

from ocirun import namespaces as N
from ocirun import syscalls as S
from ocirun.errors import OciError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fakesys import FakeSyscalls  # noqa: E402

EXEC_WHAT = "cannot join the container's {t} namespace"


def _fds(tmp_path, types):
    """(type, path, fd) as exec opens /proc/PID/ns/*: sorted by JOIN_ORDER."""
    out = []
    for t in sorted(types, key=N.JOIN_ORDER.index):
        p = tmp_path / N.PROC_NAME[t]
        p.write_text("")
        out.append((t, str(p), os.open(p, os.O_RDONLY | os.O_CLOEXEC)))
    return out


def test_exec_order_joins_the_user_namespace_last(tmp_path):
    fds = _fds(tmp_path, ["mount", "network", "user", "ipc", "pid"])
    assert fds[0][0] == "user"  # the order exec lists them in
    fake = FakeSyscalls()
    N.join(fds, fake, what=EXEC_WHAT)
    assert [c.args[1] for c in fake.of("setns")] == [S.CLONE_NEWIPC, S.CLONE_NEWNET, S.CLONE_NEWPID,
                                                     S.CLONE_NEWNS, S.CLONE_NEWUSER]
    for _, _, fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)


def test_exec_wording_of_a_failure(tmp_path):
    fds = _fds(tmp_path, ["network", "user"])
    fake = FakeSyscalls()
    fake.fail("setns", errno.EINVAL, when=lambda c: c.args[1] == S.CLONE_NEWUSER)
    with pytest.raises(OciError) as ei:
        N.join(fds, fake, what=EXEC_WHAT)
    assert str(ei.value) == "cannot join the container's user namespace: Invalid argument"
    for _, _, fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)


def test_eperm_retried_after_the_user_namespace_then_reported_with_the_wording(tmp_path):
    """EPERM before the user namespace: tried again once in it (rootless); a second refusal is the error."""
    fds = _fds(tmp_path, ["network", "user"])
    fake = FakeSyscalls()
    fake.fail("setns", errno.EPERM, when=lambda c: c.args[1] == S.CLONE_NEWNET)
    with pytest.raises(OciError) as ei:
        N.join(fds, fake, what=EXEC_WHAT)
    assert [(c.op, c.args[1]) for c in fake.calls if c.op.startswith("setns")] == [
        ("setns!failed", S.CLONE_NEWNET), ("setns", S.CLONE_NEWUSER), ("setns!failed", S.CLONE_NEWNET)]
    assert str(ei.value) == "cannot join the container's network namespace: Operation not permitted"


def test_default_wording_is_creates(tmp_path):
    fds = _fds(tmp_path, ["uts"])
    fake = FakeSyscalls()
    fake.fail("setns", errno.EINVAL)
    with pytest.raises(OciError) as ei:
        N.join(fds, fake)
    assert str(ei.value) == f"linux.namespaces: cannot join uts namespace {fds[0][1]}: Invalid argument"
