import os

from .. import jsonio, specgen
from ..errors import OciError

USAGE = "[command options]"
FLAGS = {"bundle": "str", "b": "bundle", "rootless": "bool", "help": "bool", "h": "help"}


def run(g, fl, args):
    path = os.path.join(fl.bundle or ".", "config.json")
    if os.path.lexists(path):
        raise OciError(f"File {path} exists. Remove it first")
    try:
        with open(path, "x") as f:
            f.write(jsonio.dumps(specgen.default_spec(rootless=bool(fl.rootless)), indent=2) + "\n")
    except OSError as e:
        raise OciError(f"{path}: {e.strerror}") from None
    return 0
