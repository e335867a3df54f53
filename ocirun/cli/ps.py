"""ocirun ps [--format table|json] ID [ps options]: the container's processes (host pids)."""
import os
import sys

from . import need_args, root_of
from .. import jsonio
from ..container import Container
from ..errors import OciError, UsageError

USAGE = "[command options] <container-id> [ps options]"
FLAGS = {"format": "str", "f": "format", "help": "bool", "h": "help"}


def run(g, fl, args):
    need_args(args, 1, "ps", USAGE)
    fmt = fl.format or "table"
    if fmt not in ("table", "json"):
        raise UsageError(f"invalid format option {fmt!r} (table or json)")
    pids = Container(args[0], root_of(g)).pids()
    if fmt == "json":
        sys.stdout.write(jsonio.dumps(pids) + "\n")
        return 0
    import subprocess

    psargs = args[1:] or ["-ef"]
    try:
        out = subprocess.run(["ps", *psargs], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise OciError(f"ps {' '.join(psargs)}: {e}") from None
    lines = out.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    if "PID" not in header:
        raise OciError("ps output has no PID column")
    col = header.index("PID")
    want = set(pids)
    sys.stdout.write(lines[0] + "\n")
    for line in lines[1:]:
        f = line.split()
        if len(f) > col and f[col].isdigit() and int(f[col]) in want:
            sys.stdout.write(line + "\n")
    sys.stdout.flush()
    os.environ.pop("_", None)
    return 0
