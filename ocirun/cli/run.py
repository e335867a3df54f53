"""ocirun run [--detach|-d] [--bundle|-b DIR] [--pid-file F] [--console-socket S] [--keep] ... ID"""
from . import need_args
from .create import FLAGS as CREATE_FLAGS, options
from ..container import Container

USAGE = "[command options] <container-id>"
FLAGS = dict(CREATE_FLAGS, detach="bool", d="detach", keep="bool")


def run(g, fl, args):
    need_args(args, 1, "run", USAGE, at_most=1)
    return Container.run(args[0], fl.bundle or ".", options(g, fl, detach=bool(fl.detach)))
