import sys

from . import need_args, root_of
from .. import jsonio
from ..container import Container

USAGE = "<container-id>"
FLAGS = {"help": "bool", "h": "help"}


def run(g, fl, args):
    need_args(args, 1, "state", USAGE, at_most=1)
    st = Container(args[0], root_of(g)).state()
    sys.stdout.write(jsonio.dumps(st, indent=2) + "\n")
    return 0
