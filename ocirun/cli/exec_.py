"""ocirun exec [--process FILE] [--tty|-t] [--detach|-d] [--pid-file F] [--console-socket S] [--cwd D]
[--env|-e K=V] [--user|-u UID[:GID]] [--additional-gids G] [--cap C] [--no-new-privs] [--apparmor P]
[--process-label L] [--preserve-fds N] [--cgroup [CTRL[,CTRL]:]PATH] [--ignore-paused] ID [ARGS...]

Exit status: the process's own, or 255 when ocirun itself fails to run it (runc's, so callers can tell the
two apart); 1 only for a bad command line."""
from . import root_of
from ..container import Container
from ..errors import OciError, UsageError

STOP_AFTER = 1  # runc: StopOnNthArg 1 (flags after the container id belong to the command)
USAGE = "[command options] <container-id> <command> [command options]  || -p process.json <container-id>"
FLAGS = {"process": "str", "p": "process", "tty": "bool", "t": "tty", "detach": "bool", "d": "detach",
         "pid-file": "str", "console-socket": "str", "cwd": "str", "env": "list", "e": "env", "user": "str",
         "u": "user", "additional-gids": "list", "g": "additional-gids", "cap": "list", "c": "cap",
         "no-new-privs": "bool", "apparmor": "str", "process-label": "str", "preserve-fds": "int",
         "ignore-paused": "bool", "cgroup": "list", "help": "bool", "h": "help"}
RUNTIME_FAILURE = 255


def run(g, fl, args):
    if not args:
        raise UsageError('"exec" requires at least 1 argument(s)')
    n = fl.preserve_fds or 0
    if not 0 <= n <= 65535:
        raise UsageError(f"--preserve-fds {n}: must be between 0 and 65535")
    try:
        return _exec(g, fl, args, n)
    except UsageError:
        raise
    except OciError as e:
        e.exit_code = RUNTIME_FAILURE
        raise


def _exec(g, fl, args, n):
    from .. import execproc
    from ..state import validate_id

    cid, rest = args[0], args[1:]
    validate_id(cid)
    c = Container(cid, root_of(g))
    subs = execproc.parse_sub_cgroups(fl.cgroup)
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
                                preserve_fds=n, ignore_paused=bool(fl.ignore_paused), sub_cgroups=subs)
    return execproc.exec_in(c, proc, opts)
