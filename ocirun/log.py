"""runc-compatible logging: --log FILE, --log-format text|json ({"level","msg","time"} lines), --debug.

Errors always also go to stderr as `ocirun: MESSAGE` (one line per problem)."""
import os
import sys
import time

_cfg = {"file": None, "format": "text", "debug": False}


def configure(path=None, fmt="text", debug=False):
    _cfg.update(file=path, format=fmt or "text", debug=debug)
    if path:
        # the file exists once ocirun ran, even when it had nothing to say (runc opens it at start;
        # containerd's shim reads it after every call)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644))
        except OSError:
            pass


def _now():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t)) + f".{int((t % 1) * 1e9):09d}" + _tz()


def _tz():
    off = -time.timezone if not time.localtime().tm_isdst else -time.altzone
    if off == 0:
        return "Z"
    sign = "+" if off > 0 else "-"
    off = abs(off)
    return f"{sign}{off // 3600:02d}:{off % 3600 // 60:02d}"


def _emit(level, msg):
    path = _cfg["file"]
    if not path:
        return False
    if _cfg["format"] == "json":
        from . import jsonio

        line = jsonio.dumps({"level": level, "msg": msg, "time": _now()})
    else:
        from . import jsonio

        line = f'time="{_now()}" level={level} msg={jsonio.dumps(msg)}'
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
    except OSError:
        return False
    return True


def error(msg):
    for line in str(msg).splitlines() or [""]:
        _emit("error", line)
        try:
            sys.stderr.write(f"ocirun: {line}\n")
        except (OSError, ValueError):
            pass
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def warning(msg):
    if not _emit("warning", msg):
        try:
            sys.stderr.write(f"ocirun: warning: {msg}\n")
        except (OSError, ValueError):
            pass


def debug(msg):
    if _cfg["debug"]:
        if not _emit("debug", msg):
            sys.stderr.write(f"ocirun: debug: {msg}\n")


_TRACE = os.environ.get("OCIRUN_TRACE")
_STOP_AT = os.environ.get("OCIRUN_TEST_STOP_AT")


def trace(label):
    """A named phase of create/run/exec ('parent: forked', 'init: mounts done', ...).

    OCIRUN_TRACE=1: one line per phase on stderr, 'ocirun-trace PID MONOTONIC_MS LABEL' (for bench/).
    OCIRUN_TEST_STOP_AT=LABEL (tests only: the fault-injection hook of the reliability suite): on reaching
    that phase the process appends 'PID LABEL' to $OCIRUN_TEST_STOP_FILE and blocks there, so that a test
    can SIGKILL ocirun at a known point and check that nothing is lost or leaked."""
    if _TRACE:
        os.write(2, f"ocirun-trace {os.getpid()} {time.monotonic() * 1000:.3f} {label}\n".encode())
    if _STOP_AT is not None and label == _STOP_AT:
        _stop_here(label)


def _stop_here(label):
    path = os.environ.get("OCIRUN_TEST_STOP_FILE")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, f"{os.getpid()} {label}\n".encode())
        finally:
            os.close(fd)
    while True:
        time.sleep(3600)
