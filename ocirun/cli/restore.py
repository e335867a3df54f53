from ..errors import OciError

USAGE = "[command options] <container-id>"
FLAGS = {"help": "bool", "h": "help", "image-path": "str", "work-path": "str", "leave-running": "bool",
         "tcp-established": "bool", "file-locks": "bool", "bundle": "str", "b": "bundle", "detach": "bool", "d": "detach"}


def run(g, fl, args):
    raise OciError("restore is not supported by ocirun yet")
