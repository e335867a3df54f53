"""POSIX-platform hooks (config.md): each receives the container state JSON on stdin; `timeout` is honoured."""
import os
import time

from . import jsonio
from .errors import OciError


class HookError(OciError):
    pass


def hook_state(st, status):
    """The state a hook reads on stdin, from a container's record: as `ocirun state` shows it, without `pid`
    once stopped and without empty `annotations` (state-schema: both optional there; runc writes neither)."""
    from .version import SPEC_VERSION

    out = {"ociVersion": SPEC_VERSION, "id": st["id"], "status": status}
    if status != "stopped":
        out["pid"] = st.get("pid", 0)
    out["bundle"] = st.get("bundle", "")
    if st.get("annotations"):
        out["annotations"] = st["annotations"]
    return out


def run_hooks(kind, hooks, state, keep_going=False, default_env=None, cwd=None, empty_is_default=False):
    """Run every hook of one kind in order. The first failure raises HookError; with keep_going (poststop:
    a failure is only a warning) every hook runs, each failure is logged, and nothing is raised.

    A hook without `env` gets `default_env` (as runc: the runtime's own environment for the hooks run in the
    runtime namespace, the container process's for createContainer/startContainer); an empty `env` is an
    empty environment, except with `empty_is_default` (runc's startContainer: SetDefaultEnv for len(env) == 0).
    `cwd` is where it runs (None: where the caller is)."""
    if not hooks:
        return
    data = jsonio.dumps(state).encode()
    for i, h in enumerate(hooks):
        try:
            run_one(f"hooks.{kind}[{i}]", h, data, default_env, cwd, empty_is_default)
        except HookError as e:
            if not keep_going:
                raise
            from . import log

            log.warning(str(e))


def run_one(where, hook, data, default_env=None, cwd=None, empty_is_default=False):
    args = list(hook.args) if hook.args else [hook.path]
    if hook.env is not None and (hook.env or not empty_is_default):
        entries = hook.env  # given, even empty: exactly that (runc: exec.Cmd{Env: c.Env})
    elif default_env is None:
        entries = _runtime_environ()  # not given, a runtime-namespace hook: the runtime's environment
    else:
        entries = default_env  # not given or empty, createContainer/startContainer: the container process's
    env = {}
    for e in entries:
        k, eq, v = e.partition("=")
        if eq and k:  # an entry without "=" is no variable (runc leaves it out too)
            env[k] = v
    rin, win = os.pipe()
    rout, wout = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.dup2(rin, 0)
            os.dup2(wout, 1)
            os.dup2(wout, 2)
            os.closerange(3, 65536)
            if cwd is not None:
                os.chdir(cwd)
            os.execve(hook.path, args, env)
        except BaseException as e:
            try:
                os.write(2, f"exec {hook.path}: {getattr(e, 'strerror', e)}".encode())
            finally:
                os._exit(127)
    os.close(rin)
    os.close(wout)
    try:
        try:
            os.write(win, data)
        except BrokenPipeError:
            pass
    finally:
        os.close(win)
    out = b""
    deadline = time.monotonic() + hook.timeout if hook.timeout else None
    os.set_blocking(rout, False)
    status = None
    import select

    try:
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                raise HookError(f"{where} {hook.path}: timed out after {hook.timeout}s")
            r, _, _ = select.select([rout], [], [], 0.05 if left is None else min(left, 0.05))
            if r:
                chunk = os.read(rout, 65536)
                if chunk:
                    if len(out) < 65536:
                        out += chunk
                else:
                    _, status = os.waitpid(pid, 0) if deadline is None else _wait_deadline(pid, deadline, where, hook)
                    break
            else:
                wpid, st = os.waitpid(pid, os.WNOHANG)
                if wpid:
                    status = st
                    break
    finally:
        os.close(rout)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        import _signal  # (built in: startContainer hooks fail after pivot_root, where no .py can be imported)

        name = (_signal.strsignal(sig) or "").lower()
        raise HookError(f"error running {where.split('.', 1)[1].split('[')[0]} hook {where} {hook.path}: "
                        f"killed by signal {sig}{f' ({name})' if name else ''}{_tail(out)}")
    code = os.WEXITSTATUS(status)
    if code != 0:
        raise HookError(f"{where} {hook.path}: exit status {code}{_tail(out)}")


def _wait_deadline(pid, deadline, where, hook):
    while True:
        wpid, st = os.waitpid(pid, os.WNOHANG)
        if wpid:
            return wpid, st
        if time.monotonic() >= deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise HookError(f"{where} {hook.path}: timed out after {hook.timeout}s")
        time.sleep(0.01)


def _runtime_environ():
    """The environment ocirun was started with: /proc/self/environ, not os.environ, which the interpreter
    changed at start (PEP 538 locale coercion adds LC_CTYPE=C.UTF-8 under the C locale)."""
    try:
        with open("/proc/self/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return [f"{k}={v}" for k, v in os.environ.items()]
    return [e.decode("utf-8", "surrogateescape") for e in raw.split(b"\0") if e]


def _tail(out):
    text = out.decode("utf-8", "replace").strip().replace("\n", " | ")
    return f": {text[-300:]}" if text else ""
