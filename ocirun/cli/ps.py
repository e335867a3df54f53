"""ocirun ps [--format table|json] ID [ps options]: the container's processes (host pids)."""
import os
import sys

from . import need_args, root_of
from .. import jsonio
from ..container import Container
from ..errors import OciError, StateError, UsageError

STOP_AFTER = 1  # runc: StopOnNthArg 1 (flags after the container id belong to the command)
USAGE = "[command options] <container-id> [ps options]"
FLAGS = {"format": "str", "f": "format", "help": "bool", "h": "help"}


def run(g, fl, args):
    need_args(args, 1, "ps", USAGE)
    fmt = fl.format or "table"
    if fmt not in ("table", "json"):
        raise UsageError(f"invalid format option {fmt!r} (table or json)")
    c = Container(args[0], root_of(g))
    try:
        pids = c.pids()
    except StateError:
        if c.status() != "stopped":
            raise
        pids = _stopped_pids(c)
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


def _stopped_pids(c):
    """runc: a stopped container's processes are whatever is left in its cgroup (none, usually): the header only."""
    st = c.store.read(c.id) or {}
    if not st.get("cgroup"):
        return []
    from .. import cgroups

    try:
        return sorted(cgroups.manager_from_dict(st["cgroup"]).pids())
    except (OSError, OciError):
        return []
