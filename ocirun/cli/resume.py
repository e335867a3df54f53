from . import need_args, root_of
from ..container import Container

USAGE = "<container-id>"
FLAGS = {"help": "bool", "h": "help"}


def run(g, fl, args):
    need_args(args, 1, "resume", USAGE, at_most=1)
    Container(args[0], root_of(g)).resume()
    return 0
