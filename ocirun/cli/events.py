"""ocirun events [--stats] [--interval D] ID: runc's JSON event stream ({"type","id","data"} per line)."""
import sys
import time

from . import need_args, root_of
from .. import jsonio
from ..container import Container
from ..errors import UsageError

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
    import gc

    gc.enable()  # a long-running verb (main() turns the collector off for the short ones)
    last_oom = None
    while c.status() in ("running", "created", "paused"):
        st = c.stats()
        emit("stats", st)
        oom = (st.get("memory") or {}).get("raw", {}).get("oom_kill")
        if oom is None:
            oom = (st.get("memory") or {}).get("oom_kill")
        if last_oom is not None and oom is not None and oom > last_oom:
            emit("oom", {})
        last_oom = oom if oom is not None else last_oom
        time.sleep(interval)
    return 0
