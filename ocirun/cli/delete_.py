from . import need_args, root_of
from ..container import Container

USAGE = "[command options] <container-id>"
FLAGS = {"force": "bool", "f": "force", "help": "bool", "h": "help"}


def run(g, fl, args):
    need_args(args, 1, "delete", USAGE, at_most=1)
    Container(args[0], root_of(g)).delete(force=bool(fl.force))
    return 0
