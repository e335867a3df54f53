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


def open_pty(console_size=None):
    """In the init, after pivot_root: a pty from the container's /dev/ptmx. Returns (master, slave, slave_path)."""
    try:
        master, slave = os.openpty()
    except OSError as e:
        raise OciError(f"process.terminal: cannot allocate a pty in the container: {e.strerror} "
                       f"(is /dev/pts mounted with newinstance?)") from None
    os.set_inheritable(master, False)
    path = os.ttyname(slave)
    if console_size:
        set_winsize(master, console_size[0], console_size[1])
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
