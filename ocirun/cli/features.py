import sys

from .. import jsonio
from ..features import features

USAGE = ""
FLAGS = {"help": "bool", "h": "help"}


def run(g, fl, args):
    sys.stdout.write(jsonio.dumps(features(), indent=4) + "\n")
    return 0
