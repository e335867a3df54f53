"""ocirun events [--stats] [--interval D] ID: runc's JSON event stream ({"type","id","data"} per line)."""
import sys
import time

from . import need_args, root_of
from .. import jsonio
from ..container import Container
from ..errors import OciError, UsageError

USAGE = "[command options] <container-id>"
FLAGS = {"stats": "bool", "interval": "str", "help": "bool", "h": "help"}


def _interval(v):
    if v is None:
        return 5.0
    units = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0))
    for suf, mul in units:
        if v.endswith(suf):
            try:
                return float(v[: -len(suf)]) * mul
            except ValueError:
                break
    raise UsageError(f"invalid --interval {v!r} (e.g. 5s, 500ms)")


def run(g, fl, args):
    need_args(args, 1, "events", USAGE, at_most=1)
    c = Container(args[0], root_of(g))
    interval = _interval(fl.interval)
    if interval <= 0:
        raise UsageError("--interval must be positive")

    def emit(typ, data):
        sys.stdout.write(jsonio.dumps({"type": typ, "id": c.id, "data": data}) + "\n")
        sys.stdout.flush()

    if fl.stats:
        emit("stats", c.stats())
        return 0
    try:
        c.stats()
    except OciError:
        # a live container without a cgroup of its own (rootless) is an error now, not an empty stream
        if c.status() in ("running", "created", "paused"):
            raise
    import gc

    gc.enable()  # a long-running verb (main() turns the collector off for the short ones)
    last_oom = None
    while True:
        try:
            if c.status() not in ("running", "created", "paused"):
                break
            st = c.stats()
        except OciError:
            break  # deleted meanwhile: the stream ends, as runc's
        emit("stats", st)
        oom = _oom_kills(c, st)
        if last_oom is not None and oom is not None and oom > last_oom:
            # runc writes {"type":"oom","id":ID} (no data)
            sys.stdout.write(jsonio.dumps({"type": "oom", "id": c.id}) + "\n")
            sys.stdout.flush()
        last_oom = oom if oom is not None else last_oom
        time.sleep(interval)
    return 0


def _oom_kills(c, st):
    """The container's OOM-kill counter: memory.events (v2) or memory.oom_control (v1) "oom_kill"."""
    mem = st.get("memory") or {}
    n = (mem.get("raw") or {}).get("oom_kill")
    if n is None:
        n = mem.get("oom_kill")
    if n is not None:
        return n
    try:
        _st, _status, mgr = c._running_with_cgroup("read the OOM count of")
        d = mgr.path("memory") or mgr.path("")
        for fname in ("memory.oom_control", "memory.events"):
            try:
                with open(f"{d}/{fname}") as f:
                    for line in f:
                        k, _, v = line.partition(" ")
                        if k == "oom_kill":
                            return int(v)
            except OSError:
                continue
    except (OciError, ValueError):
        pass
    return None
