"""The ocirun command line, runc-compatible: global flags, then a verb (one module per verb), then its flags.

Flag syntax follows Go's flag package as runc uses it (urfave/cli): -f and --f are the same, values as
`--f v` or `--f=v`, booleans take `--f=false`. Global flags stop at the verb; a verb's flags may follow its
positional arguments (`update ID --memory 1m`) except for exec, kill and ps (their flags end at the container
id), and the global flags are accepted after the verb too (runc's are persistent: `list --root R`).
No argparse here: it imports `re` (~12 ms), more than half of ocirun's start-up budget.
"""
import sys

from ..errors import OciError, UsageError

COMMANDS = {
    "create": "create a container",
    "start": "executes the user defined process in a created container",
    "run": "create and run a container",
    "state": "output the state of a container",
    "list": "lists containers started by ocirun with the given root",
    "kill": "kill sends the specified signal (default: SIGTERM) to the container's init process",
    "delete": "delete any resources held by the container often used with detached container",
    "exec": "execute new process inside the container",
    "ps": "ps displays the processes running inside a container",
    "pause": "pause suspends all processes inside the container",
    "resume": "resumes all processes that have been previously paused",
    "update": "update container resource constraints",
    "events": "display container events such as OOM notifications, cpu, memory, and IO usage statistics",
    "spec": "create a new specification file",
    "features": "show the enabled features",
    "check": "validate a bundle's config.json without creating anything (--strict: against the official schema)",
    "checkpoint": "checkpoint a running container",
    "restore": "restore a container from a previous checkpoint",
}
ALIASES = {"del": "delete", "rm": "delete", "ls": "list"}
MODULES = {"delete": "delete_", "list": "list_", "exec": "exec_"}

GLOBAL_FLAGS = {
    "root": "str", "log": "str", "log-format": "str", "debug": "bool", "systemd-cgroup": "bool",
    "rootless": "str", "criu": "str", "help": "bool", "h": "help", "version": "bool", "v": "version",
}


class Flags(dict):
    """Parsed flags: attribute access with '-' read as '_'; missing ones are None."""

    def __getattr__(self, k):
        return self.get(k.replace("_", "-"))


def parse_flags(argv, spec, where="ocirun", interleave=False, stop_after=None):
    """Parse Go-style flags from argv per spec {name: 'bool'|'str'|'int'|'list'|alias-name}; returns (Flags, rest).

    Without interleave (the global flags) parsing stops at the first positional argument. With it (a verb's
    flags, as runc's urfave/cli parses them) flags may also follow positional arguments (`update ID --memory
    1m`) until stop_after positional arguments were seen (exec, kill, ps: 1, so that `exec ID sh -c x` keeps
    the command's own flags); a `-` followed by a non-letter (`-1`) ends flag parsing there too."""
    out = Flags()
    pos = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            return out, pos + argv[i + 1:]
        if interleave and stop_after is not None and len(pos) >= stop_after:
            return out, pos + argv[i:]
        if not a.startswith("-") or a == "-":
            if not interleave:
                return out, argv[i:]
            pos.append(a)
            i += 1
            continue
        if interleave and not a[1].isalpha() and a[1] != "-":
            return out, pos + argv[i:]
        name = a.lstrip("-")
        if a.startswith("---") or not name or name.startswith("="):
            raise UsageError(f"bad flag syntax: {a}")
        value = None
        if "=" in name:
            name, _, value = name.partition("=")
        kind = spec.get(name)
        if kind is not None and kind not in ("bool", "str", "int", "list"):
            name = kind
            kind = spec[name]
        if kind is None:
            raise UsageError(f"flag provided but not defined: -{name}")
        if kind == "bool":
            if value is None:
                out[name] = True
            elif value.lower() in ("1", "t", "true"):
                out[name] = True
            elif value.lower() in ("0", "f", "false"):
                out[name] = False
            else:
                raise UsageError(f'invalid boolean value "{value}" for -{name}')
        else:
            if value is None:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"flag needs an argument: -{name}")
                value = argv[i]
            if kind == "int":
                digits = value[1:] if value[:1] in ("-", "+") else value
                if not (digits.isascii() and digits.isdigit()):
                    raise UsageError(f'invalid value "{value}" for flag -{name}: parse error')
                try:
                    value = int(value, 10)
                except ValueError:
                    raise UsageError(f'invalid value "{value}" for flag -{name}: parse error') from None
                if not -(1 << 63) <= value < (1 << 63):
                    raise UsageError(f'invalid value "{value}" for flag -{name}: value out of range')
            if kind == "list":
                out.setdefault(name, []).append(value)
            else:
                out[name] = value
        i += 1
    return out, pos


def usage(out=None):
    out = out or sys.stdout
    lines = ["NAME:", "   ocirun - Open Container Initiative runtime (in Python)", "", "USAGE:",
             "   ocirun [global options] command [command options] [arguments...]", "", "COMMANDS:"]
    lines += [f"   {k:<11} {v}" for k, v in COMMANDS.items()]
    lines += ["", "GLOBAL OPTIONS:",
              "   --debug             enable debug logging",
              "   --log value         set the log file to write ocirun logs to (default is stderr)",
              "   --log-format value  set the log format ('text' (default), or 'json')",
              "   --root value        root directory for storage of container state (default: \"/run/ocirun\", or",
              "                       \"$XDG_RUNTIME_DIR/ocirun\" for a caller that is not root)",
              "   --systemd-cgroup    enable systemd cgroup support (cgroupsPath of form \"slice:prefix:name\")",
              "   --rootless value    ignore cgroup permission errors ('true', 'false', or 'auto') (default: \"auto\")",
              "   --help, -h          show help",
              "   --version, -v       print the version"]
    out.write("\n".join(lines) + "\n")


def version_text():
    from ..version import SPEC_VERSION, __version__

    text = f"ocirun version {__version__}\nspec: {SPEC_VERSION}\npython: {sys.version.split()[0]}\n"
    try:
        from ..features import libseccomp_version

        v = libseccomp_version()
        if v:
            text += f"libseccomp: {v}\n"
    except Exception:
        pass
    return text


def main(argv=None):
    """Console-script entry: run the command, flush, and leave without interpreter teardown (~5 ms here).

    The cyclic garbage collector is off for the short commands (a dozen collections during a create, each
    touching the whole heap: in forked stages that is copy-on-write faults); the verbs that may run for long
    (a foreground run or exec waiting for its process, events) turn it back on."""
    import gc

    gc.disable()
    code = run_cli(argv)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        code = code or 1
    import os

    os._exit(code)


def run_cli(argv=None):
    """Run one ocirun command in-process and return its exit code (for tests and tools)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    from .. import log

    from os import getegid, geteuid, getgid, getuid

    if getuid() != geteuid() or getgid() != getegid():
        # set-user-ID or set-group-ID: ocirun is never installed so (README "Rootless"); as such it would act
        # with privileges its caller does not have (bundles, state and hooks are the caller's choice)
        log.error(f"refusing to run set-user-ID or set-group-ID (real uid {getuid()}, effective uid {geteuid()}, "
                  f"real gid {getgid()}, effective gid {getegid()}): ocirun must run with its caller's own ids")
        return 1

    try:
        g, rest = parse_flags(argv, GLOBAL_FLAGS)
        if g.log_format not in (None, "text", "json"):
            raise UsageError(f"invalid log format {g.log_format!r} (text or json)")
        log.configure(g.log, g.log_format, bool(g.debug))
        if g.version:
            sys.stdout.write(version_text())
            return 0
        if not rest or g.help:
            if rest and rest[0] in COMMANDS:
                _command_help(rest[0])
                return 0
            usage()
            return 0
        cmd = ALIASES.get(rest[0], rest[0])
        if cmd == "help":
            if len(rest) > 1 and rest[1] in COMMANDS:
                _command_help(rest[1])
            else:
                usage()
            return 0
        if cmd not in COMMANDS:
            log.error(f"No help topic for '{rest[0]}'")
            return 3
        if cmd in ("create", "run") and not g.systemd_cgroup:
            # first of all (even before importing the verb): the cgroup attach lock's RCU wait then runs
            # alongside the imports and the config checks instead of holding up the cgroups (see cgroups)
            from .. import cgroups

            cgroups.prime_once()
        mod = _module(cmd)
        spec = dict(mod.FLAGS)
        late = [k for k, v in GLOBAL_FLAGS.items() if k not in spec and v in ("bool", "str")
                and k not in ("help", "version")]
        spec.update((k, GLOBAL_FLAGS[k]) for k in late)
        fl, args = parse_flags(rest[1:], spec, cmd, interleave=True, stop_after=getattr(mod, "STOP_AFTER", None))
        moved = [k for k in late if k in fl]
        if moved:
            for k in moved:
                g[k] = fl.pop(k)
            if g.log_format not in (None, "text", "json"):
                raise UsageError(f"invalid log format {g.log_format!r} (text or json)")
            log.configure(g.log, g.log_format, bool(g.debug))
        if fl.help:
            _command_help(cmd)
            return 0
        return mod.run(g, fl, args) or 0
    except UsageError as e:
        log.error(f"Incorrect Usage: {e}")
        return 1
    except OciError as e:
        log.error(str(e))
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1


def _module(cmd):
    name = f"{__name__}.{MODULES.get(cmd, cmd)}"
    __import__(name)  # not importlib: importing it (and warnings) costs ~0.6 ms of start-up
    return sys.modules[name]


def _command_help(cmd):
    mod = _module(cmd)
    sys.stdout.write(f"NAME:\n   ocirun {cmd} - {COMMANDS[cmd]}\n\nUSAGE:\n   ocirun {cmd} {mod.USAGE}\n")
    opts = [k for k, v in mod.FLAGS.items() if v in ("bool", "str", "int", "list") and k != "help"]
    if opts:
        sys.stdout.write("\nOPTIONS:\n" + "".join(f"   --{k}\n" for k in opts))


def need_args(args, n, cmd, usage_text, at_most=None):
    if len(args) < n or (at_most is not None and len(args) > at_most):
        if at_most == n:
            raise UsageError(f'"{cmd}" requires exactly {n} argument(s)  (usage: ocirun {cmd} {usage_text})')
        raise UsageError(f'"{cmd}" requires at least {n} argument(s)  (usage: ocirun {cmd} {usage_text})')


def root_of(g):
    """--root, or None for the default root (/run/ocirun). A caller that is not the host's root and has
    XDG_RUNTIME_DIR set gets $XDG_RUNTIME_DIR/ocirun instead, created (0700, sticky) as runc does before any
    command (state.xdg_root: runc's rule)."""
    if g.root:
        return g.root
    from ..state import make_xdg_root, xdg_root

    root = xdg_root()
    if root is not None:
        make_xdg_root(root)
    return root
