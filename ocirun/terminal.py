"""Terminals: the container's pty (made inside the container's devpts), sent to --console-socket or proxied."""
import os
import struct

from . import syscalls as S
from .errors import OciError

TIOCSCTTY = 0x540E
TIOCSWINSZ = 0x5414
TIOCGWINSZ = 0x5413


def set_winsize(fd, rows, cols):
    import fcntl

    fcntl.ioctl(fd, TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def get_winsize(fd):
    import fcntl

    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, TIOCGWINSZ, b"\0" * 8))
    return rows, cols


def clear_onlcr(fd):
    """No "\n" -> "\r\n" on the pty's output (termios on the master applies to the pair): runc's
    console.ClearONLCR on the pty it proxies, so `run -t`/`exec -t` output read through ocirun is the
    program's own bytes, as through a pipe."""
    import termios

    attrs = termios.tcgetattr(fd)
    if attrs[1] & termios.ONLCR:
        attrs[1] &= ~termios.ONLCR
        termios.tcsetattr(fd, termios.TCSANOW, attrs)


def open_pty(console_size=None, proxied=False):
    """In the init, after pivot_root: a pty from the container's /dev/ptmx. Returns (master, slave, slave_path).

    proxied: ocirun itself will copy the pty's output (foreground, no console socket),
    so ONLCR is cleared before the process can write anything, as runc does for the pty it proxies. A master
    sent to a --console-socket keeps the kernel's default (ONLCR set), as runc leaves it: the receiver decides."""
    try:
        master, slave = os.openpty()
    except OSError as e:
        raise OciError(f"process.terminal: cannot allocate a pty in the container: {e.strerror} "
                       f"(is /dev/pts mounted with newinstance?)") from None
    os.set_inheritable(master, False)
    path = os.ttyname(slave)
    if console_size:
        set_winsize(master, console_size[0], console_size[1])
    if proxied:
        try:
            clear_onlcr(master)
        except OSError as e:
            os.close(master)
            os.close(slave)
            raise OciError(f"process.terminal: cannot clear ONLCR on the pty: {e.strerror}") from None
    return master, slave, path


def bind_console(sys, slave_path):
    """/dev/console is the container's pty."""
    try:
        fd = os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        os.close(fd)
    except OSError:
        pass
    try:
        sys.mount(slave_path, "/dev/console", "", S.MS_BIND, None)
    except OSError as e:
        raise OciError(f"process.terminal: cannot bind {slave_path} to /dev/console: {os.strerror(e.errno)}") from None


def make_controlling(slave):
    """The pty becomes the init's controlling terminal and its stdio (the init is a session leader)."""
    import fcntl

    fcntl.ioctl(slave, TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def attach(console_size, console_fd, chan, sys=None):
    """process.terminal, the init's and exec's: a new pty; its master goes to the engine's --console-socket, or
    to our parent over `chan` (to proxy); the slave becomes the controlling terminal and stdio. With `sys`
    (the init) it is bound onto /dev/console too."""
    from . import protocol

    master, slave, spath = open_pty(console_size, proxied=console_fd is None)
    if sys is not None:
        bind_console(sys, spath)
    if console_fd is not None:
        protocol.send_fd_over(console_fd, master, spath.encode())
        os.close(console_fd)
    else:
        chan.send_fd(master, "pty")
    os.close(master)
    make_controlling(slave)


def proxy(master, pid_alive, stdin=0, stdout=1):
    """Foreground run -t: copy stdin -> pty and pty -> stdout, raw mode on our tty, SIGWINCH forwarded."""
    import select

    old = None
    if os.isatty(stdin):
        import _signal
        import termios
        import tty

        old = termios.tcgetattr(stdin)
        tty.setraw(stdin)

        def resize(sig=None, frame=None):
            try:
                rows, cols = get_winsize(stdin)
                set_winsize(master, rows, cols)  # the kernel sends SIGWINCH to the container's foreground group
            except OSError:
                pass

        resize()
        _signal.signal(28, resize)  # SIGWINCH: our terminal changed size
    fds = [master, stdin]
    try:
        while True:
            try:
                r, _, _ = select.select(fds, [], [], 0.2)
            except InterruptedError:
                continue
            if master in r:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                os.write(stdout, data)
            if stdin in r:
                data = os.read(stdin, 65536)
                if not data:
                    fds.remove(stdin)
                else:
                    os.write(master, data)
            if not r and not pid_alive():
                break
    finally:
        if old is not None:
            import termios

            termios.tcsetattr(stdin, termios.TCSADRAIN, old)
