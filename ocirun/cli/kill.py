from . import need_args, root_of
from ..container import Container
from ..errors import UsageError

STOP_AFTER = 1  # runc: StopOnNthArg 1 (flags after the container id belong to the command)
USAGE = "[command options] <container-id> [signal]"
FLAGS = {"all": "bool", "a": "all", "help": "bool", "h": "help"}

SIGNALS = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7, "FPE": 8, "KILL": 9,
    "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15, "STKFLT": 16, "CHLD": 17, "CLD": 17,
    "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25,
    "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29, "POLL": 29, "PWR": 30, "SYS": 31,
}


def parse_signal(s):
    if s.isascii() and s.isdigit():
        n = int(s)
        if 0 <= n <= 64:  # 0: runc sends it too (does the init exist? "container not running" if not)
            return n
        raise UsageError(f"invalid signal {s!r}: out of range 0..64")
    name = s.upper()
    if name.startswith("SIG"):
        name = name[3:]
    if name.startswith("RTMIN") or name.startswith("RTMAX"):
        # RTMIN, RTMIN+N, RTMAX, RTMAX-N (the only directions that stay in range)
        base, sign = (34, "+") if name.startswith("RTMIN") else (64, "-")
        rest = name[5:]
        n = 0
        if not rest:
            n = base
        elif rest[0] == sign and rest[1:].isascii() and rest[1:].isdigit():
            n = base + int(rest[1:]) if sign == "+" else base - int(rest[1:])
        if 34 <= n <= 64:
            return n
    if name in SIGNALS:
        return SIGNALS[name]
    raise UsageError(f"unknown signal {s!r}")


def run(g, fl, args):
    need_args(args, 1, "kill", USAGE, at_most=2)
    sig = parse_signal(args[1]) if len(args) > 1 else 15
    Container(args[0], root_of(g)).kill(sig, all=bool(fl.all))
    return 0
