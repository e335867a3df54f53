"""ocirun.protocol.Channel: the parent/stage message channel (SOCK_SEQPACKET socketpair)."""
import os

from ocirun import protocol


def test_error_report_survives_an_unread_message():
    """The init may fail and exit before reading a message the parent already sent ("placed"): the unix
    socket then reports ECONNRESET once, ahead of the init's queued error report, which must still be read."""
    a, b = protocol.Channel.pair()
    a.send("placed", pid=1)  # never read by b
    b.send("error", msg="sethostname: Invalid argument")
    b.close()  # b's receive queue is not empty: a gets ECONNRESET first
    m = a.recv()
    assert m == {"t": "error", "msg": "sethostname: Invalid argument"}
    assert a.recv() is None
    a.close()


def test_error_report_survives_an_unread_message_with_fd():
    a, b = protocol.Channel.pair()
    a.send("placed", pid=1)
    r, w = os.pipe()
    b.send_fd(r, "pty")
    os.close(r)
    b.close()
    m, fd = a.recv_fd()
    assert m == {"t": "pty"} and fd is not None
    os.close(fd)
    os.close(w)
    a.close()


def test_expect_fd():
    a, b = protocol.Channel.pair()
    r, w = os.pipe()
    a.send_fd(r, "placed", pid=7)
    m, fd = b.expect_fd("placed")
    assert m["pid"] == 7 and os.get_inheritable(fd) is False
    os.write(w, b"x")
    assert os.read(fd, 1) == b"x"
    for x in (fd, r, w):
        os.close(x)
    a.send("placed", pid=8)  # without an fd
    m, fd = b.expect_fd("placed")
    assert m["pid"] == 8 and fd is None
    a.send("error", msg="boom")
    try:
        b.expect_fd("placed")
        raise AssertionError("expect_fd accepted an error report")
    except protocol.ProtocolError as e:
        assert str(e) == "boom"
    a.close()
    try:
        b.expect_fd("placed")
        raise AssertionError("expect_fd accepted EOF")
    except protocol.ProtocolError as e:
        assert "exited before 'placed'" in str(e)
    b.close()
