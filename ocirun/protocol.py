"""The parent <-> stage message protocol over a SOCK_SEQPACKET socketpair.

One datagram = one message = one JSON object {"t": TYPE, ...}; SEQPACKET keeps boundaries, so there is no
framing. Uses the C `_socket` module directly: `import socket` costs ~7 ms here (enum wrappers).
"""
import os
import _socket

from . import jsonio
from .errors import OciError

MAX = 1 << 20


class ProtocolError(Exception):
    pass


class Channel:
    def __init__(self, fd):
        self.fd = fd

    @classmethod
    def pair(cls):
        a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC, 0)
        fa, fb = a.detach(), b.detach()
        return cls(fa), cls(fb)

    def send(self, t, **fields):
        fields["t"] = t
        os.write(self.fd, jsonio.dumps(fields).encode())

    def recv(self, timeout=None):
        """Next message, or None on EOF (the peer exited)."""
        if timeout is not None:
            import select

            r, _, _ = select.select([self.fd], [], [], timeout)
            if not r:
                raise ProtocolError("timed out waiting for the container process")
        try:
            data = os.read(self.fd, MAX)
        except ConnectionResetError:
            # The peer exited with our last message unread: a unix socket then reports ECONNRESET once,
            # ahead of what the peer had sent us (its error report, typically), which is still queued.
            data = os.read(self.fd, MAX)
        if not data:
            return None
        return jsonio.loads(data)

    def expect(self, t):
        m = self.recv()
        if m is None:
            raise ProtocolError(f"the container process exited before '{t}'")
        if m.get("t") == "error":
            raise ProtocolError(m.get("msg", "error"))
        if m.get("t") != t:
            raise ProtocolError(f"unexpected message {m.get('t')!r} (wanted {t!r})")
        return m

    def expect_fd(self, t):
        """expect(t) for a message that may carry a file descriptor: (message, fd or None)."""
        m, fd = self.recv_fd()
        if m is None or m.get("t") != t:
            if fd is not None:
                os.close(fd)
            if m is None:
                raise ProtocolError(f"the container process exited before '{t}'")
            if m.get("t") == "error":
                raise ProtocolError(m.get("msg", "error"))
            raise ProtocolError(f"unexpected message {m.get('t')!r} (wanted {t!r})")
        return m, fd

    def send_fd(self, fd, t="fd", **fields):
        """Send a file descriptor (SCM_RIGHTS) with a message."""
        s = _socket.socket(fileno=os.dup(self.fd))
        try:
            fields["t"] = t
            s.sendmsg([jsonio.dumps(fields).encode()],
                      [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fd.to_bytes(4, "little", signed=True))])
        finally:
            s.close()

    def recv_fd(self):
        s = _socket.socket(fileno=os.dup(self.fd))
        try:
            try:
                data, anc, _, _ = s.recvmsg(MAX, _socket.CMSG_SPACE(4))
            except ConnectionResetError:  # see recv()
                data, anc, _, _ = s.recvmsg(MAX, _socket.CMSG_SPACE(4))
        finally:
            s.close()
        fd = None
        for level, typ, payload in anc:
            if level == _socket.SOL_SOCKET and typ == _socket.SCM_RIGHTS:
                fd = int.from_bytes(payload[:4], "little", signed=True)
                os.set_inheritable(fd, False)
        if not data:
            return None, fd
        return jsonio.loads(data), fd

    def close(self):
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None


def send_fd_over(sockfd, fd, payload=b""):
    """Send `fd` over an already-connected unix socket (the engine's --console-socket)."""
    s = _socket.socket(fileno=os.dup(sockfd))
    try:
        s.sendmsg([payload or b"\0"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fd.to_bytes(4, "little", signed=True))])
    finally:
        s.close()


def connect_unix(path):
    """Connect a SOCK_STREAM unix socket; returns the fd. Long paths go through /proc/self/fd of the directory."""
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC, 0)
    try:
        if len(os.fsencode(path)) >= 100:
            dfd = os.open(os.path.dirname(path) or ".", os.O_PATH | os.O_CLOEXEC)
            try:
                s.connect(f"/proc/self/fd/{dfd}/{os.path.basename(path)}")
            finally:
                os.close(dfd)
        else:
            s.connect(path)
    except OSError:
        s.close()
        raise
    return s.detach()


def listen_unix(path):
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC, 0)
    try:
        if len(os.fsencode(path)) >= 100:
            dfd = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
            try:
                s.bind(f"/proc/self/fd/{dfd}/{os.path.basename(path)}")
            finally:
                os.close(dfd)
        else:
            s.bind(path)
        s.listen(1)
    except OSError:
        s.close()
        raise
    return s.detach()


def accept(fd):
    s = _socket.socket(fileno=os.dup(fd))
    try:
        cfd, _ = s._accept()
    finally:
        s.close()
    os.set_inheritable(cfd, False)
    return cfd


def wait_started(chan, cid):
    """`start`'s side after sending "start": the connection closes at exec (started), or the init reports
    why not."""
    while True:
        m = chan.recv()
        if m is None:
            return  # the connection closed at exec: started
        if m.get("t") == "error":
            raise OciError(f"cannot start container {cid}: {m.get('msg')}")
