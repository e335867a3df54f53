"""ocirun exec [--process FILE] [--tty|-t] [--detach|-d] [--pid-file F] [--console-socket S] [--cwd D]
[--env|-e K=V] [--user|-u UID[:GID]] [--additional-gids G] [--cap C] [--no-new-privs] [--apparmor P]
[--process-label L] [--preserve-fds N] ID [ARGS...]"""
from . import root_of
from ..container import Container
from ..errors import UsageError

USAGE = "[command options] <container-id> <command> [command options]  || -p process.json <container-id>"
FLAGS = {"process": "str", "p": "process", "tty": "bool", "t": "tty", "detach": "bool", "d": "detach",
         "pid-file": "str", "console-socket": "str", "cwd": "str", "env": "list", "e": "env", "user": "str",
         "u": "user", "additional-gids": "list", "g": "additional-gids", "cap": "list", "c": "cap",
         "no-new-privs": "bool", "apparmor": "str", "process-label": "str", "preserve-fds": "int",
         "ignore-paused": "bool", "cgroup": "list", "help": "bool", "h": "help"}


def run(g, fl, args):
    from .. import execproc

    if not args:
        raise UsageError('"exec" requires at least 1 argument(s)')
    cid, rest = args[0], args[1:]
    from ..state import validate_id

    validate_id(cid)
    c = Container(cid, root_of(g))
    n = fl.preserve_fds or 0
    if not 0 <= n <= 65535:
        raise UsageError(f"--preserve-fds {n}: must be between 0 and 65535")
    if fl.process:
        proc = execproc.process_from_file(fl.process)
    else:
        st = c.store.read(cid)
        base = None
        if st is not None and st.get("config"):
            from .. import config as C

            base = C.parse(st["config"]).process
        proc = execproc.process_from_flags(base, rest, env=fl.env or (), cwd=fl.cwd, user=fl.user,
                                           additional_gids=fl.additional_gids, caps=fl.cap or (),
                                           no_new_privs=bool(fl.no_new_privs), tty=bool(fl.tty),
                                           apparmor=fl.apparmor, label=fl.process_label)
    opts = execproc.ExecOptions(detach=bool(fl.detach), pid_file=fl.pid_file, console_socket=fl.console_socket,
                                preserve_fds=n)
    return execproc.exec_in(c, proc, opts)
