"""ocirun create [--bundle|-b DIR] [--pid-file F] [--console-socket S] [--no-pivot] [--no-new-keyring]
[--preserve-fds N] ID"""
from . import need_args, root_of
from ..container import Container, Options

USAGE = "[command options] <container-id>"
FLAGS = {"bundle": "str", "b": "bundle", "pid-file": "str", "console-socket": "str", "no-pivot": "bool",
         "no-new-keyring": "bool", "preserve-fds": "int", "help": "bool", "h": "help"}


def options(g, fl, detach=True):
    from ..errors import UsageError

    if g.rootless is not None:  # (checked before anything else, as runc parses it first)
        from ..cgroups import parse_rootless

        parse_rootless(g.rootless)
    n = fl.preserve_fds or 0
    if n < 0 or n > 65535:
        raise UsageError(f"--preserve-fds {n}: must be between 0 and 65535")
    return Options(root=root_of(g), pid_file=fl.pid_file, console_socket=fl.console_socket,
                   no_pivot=bool(fl.no_pivot), no_new_keyring=bool(fl.no_new_keyring), preserve_fds=n,
                   systemd_cgroup=bool(g.systemd_cgroup), detach=detach, keep=bool(fl.keep),
                   rootless=g.rootless)


def run(g, fl, args):
    need_args(args, 1, "create", USAGE, at_most=1)
    Container.create(args[0], fl.bundle or ".", options(g, fl))
    return 0
