import os
import stat
import sys

from . import root_of
from .. import jsonio
from ..container import Container
from ..errors import OciError, UsageError

USAGE = "[command options]"
FLAGS = {"format": "str", "f": "format", "quiet": "bool", "q": "quiet", "help": "bool", "h": "help"}


def run(g, fl, args):
    fmt = fl.format or "table"
    if fmt not in ("table", "json"):
        raise UsageError(f"invalid format option {fmt!r} (table or json)")
    root = root_of(g)
    if root:
        # runc: a missing default root is an empty list, a --root that was given must exist
        try:
            if not stat.S_ISDIR(os.stat(root).st_mode):
                raise OciError(f"--root {root}: not a directory")
        except OSError as e:
            raise OciError(f"--root {root}: {e.strerror}") from None
    items = Container.list(root)
    if fl.quiet:
        sys.stdout.write("".join(s["id"] + "\n" for s in items))
        return 0
    if fmt == "json":
        sys.stdout.write(jsonio.dumps(items or None) + "\n")
        return 0
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    rows += [(s["id"], str(s.get("pid", 0)), s["status"], s.get("bundle", ""), s.get("created", ""),
              s.get("owner", "")) for s in items]
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for r in rows:
        sys.stdout.write("".join(c.ljust(max(w, 10) + 2) for c, w in zip(r[:-1], widths)) + r[-1] + "\n")
    return 0
