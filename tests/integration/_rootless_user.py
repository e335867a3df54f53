"""A real unprivileged user for rootless tests, made by the test session itself (root only), and a way to run
commands as that user. No pytest dependency.

    with create_user() as u:            # useradd with a home, subordinate ranges, XDG_RUNTIME_DIR
        u.name, u.uid, u.gid, u.home, u.xdg, u.subuid, u.subgid
        res = run_as(u, ["id"], env=None, cwd=None)      # -> Result (returncode, stdout, stderr, argv)
    # gone: the user's processes (its uid and subordinate ids) killed, its XDG_RUNTIME_DIR, home and
    # /etc/subuid, /etc/subgid lines removed (userdel -r; any line left is removed too)

create_user(prefix="ocrl"): the name is prefix + 6 hex digits. The subordinate ranges are the ones useradd
allocates from /etc/login.defs (SUB_UID_MIN...; shadow locks /etc/subuid itself, so parallel sessions do not
collide); where it allocates none, one free 65536-id range above every range in the files is added with usermod.
The home is /home/NAME (0755, useradd's default here), the XDG_RUNTIME_DIR /run/user/UID (0700, the user's, as
a login would make it).

run_as(user, argv, env=None, cwd=None, timeout=60, input=None, stdout=None, stderr=None): runs argv with the
user's uid, gid and no supplementary groups, and a login-like environment (HOME, USER, LOGNAME, SHELL, PATH,
XDG_RUNTIME_DIR), `env` entries added (a value None removes the variable); cwd defaults to the home. Outputs
go to files, never pipes, so that a detached container that inherits them cannot hold the call open; pass
stdout=PATH (a file the user may write) to choose the file. Returns a Result with text stdout/stderr.

leftovers(user) lists what the user still has running or owns under the usual scratch places (processes of its
uid or subordinate ids); kill_all(user) kills those processes.
"""
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager

LOGIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class User:
    def __init__(self, name, uid, gid, home, xdg, subuid, subgid):
        self.name, self.uid, self.gid, self.home, self.xdg = name, uid, gid, home, xdg
        self.subuid = subuid  # (start, count) of its first range in /etc/subuid
        self.subgid = subgid

    def env(self, extra=None):
        env = {"HOME": self.home, "USER": self.name, "LOGNAME": self.name, "SHELL": "/bin/sh",
               "PATH": LOGIN_PATH, "XDG_RUNTIME_DIR": self.xdg, "LANG": "C.UTF-8"}
        for k, v in (extra or {}).items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        return env

    def owns_id(self, i):
        """True for the user's uid and every id of its subordinate ranges."""
        return i == self.uid or any(s <= i < s + n for s, n in (self.subuid, self.subgid) if n)

    def __repr__(self):
        return f"User({self.name}, uid={self.uid}, subuid={self.subuid})"


class Result(subprocess.CompletedProcess):
    def __str__(self):
        return (f"$ {' '.join(map(str, self.args))}\nexit {self.returncode}\nstdout: {self.stdout!r}\n"
                f"stderr: {self.stderr!r}")


def read_subids(path, user_name, uid):
    out = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[0] in (user_name, str(uid)):
                    out.append((int(parts[1]), int(parts[2])))
    except OSError:
        pass
    return out


def _free_range(count=65536):
    top = 100000
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            with open(path) as f:
                for line in f:
                    parts = line.strip().split(":")
                    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                        top = max(top, int(parts[1]) + int(parts[2]))
        except OSError:
            pass
    start = (top + count - 1) // count * count
    return start, count


def _run(argv):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {p.returncode}: {p.stdout.strip()}")
    return p.stdout


@contextmanager
def create_user(prefix="ocrl"):
    """A fresh unprivileged user (see the module doc); everything of it is removed on exit."""
    if os.geteuid() != 0:
        raise RuntimeError("create_user needs root (useradd)")
    name = prefix + uuid.uuid4().hex[:6]
    _run(["useradd", "--create-home", "--shell", "/bin/sh", "--user-group", name])
    user = None
    try:
        pw = pwd.getpwnam(name)
        subuid = read_subids("/etc/subuid", name, pw.pw_uid)
        subgid = read_subids("/etc/subgid", name, pw.pw_uid)
        if not subuid or not subgid:
            start, count = _free_range()
            _run(["usermod", "--add-subuids", f"{start}-{start + count - 1}",
                  "--add-subgids", f"{start}-{start + count - 1}", name])
            subuid = read_subids("/etc/subuid", name, pw.pw_uid)
            subgid = read_subids("/etc/subgid", name, pw.pw_uid)
        xdg = f"/run/user/{pw.pw_uid}"
        os.makedirs("/run/user", mode=0o755, exist_ok=True)
        os.mkdir(xdg, 0o700)
        os.chown(xdg, pw.pw_uid, pw.pw_gid)
        user = User(name, pw.pw_uid, pw.pw_gid, pw.pw_dir, xdg, subuid[0], subgid[0])
        yield user
    finally:
        remove_user(user or name)


def remove_user(user):
    """Kill what the user runs, then remove its XDG dir, the user (home and subordinate ranges included)."""
    if isinstance(user, User):
        kill_all(user)
        shutil.rmtree(user.xdg, ignore_errors=True)
        name, uid = user.name, user.uid
    else:
        name = user
        try:
            uid = pwd.getpwnam(name).pw_uid
        except KeyError:
            uid = None
    subprocess.run(["userdel", "--remove", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for path in ("/etc/subuid", "/etc/subgid"):  # (userdel drops them; a line left behind is removed here)
        if read_subids(path, name, uid if uid is not None else -1):
            with open(path) as f:
                lines = f.readlines()
            with open(path, "w") as f:
                f.writelines(x for x in lines if x.split(":")[0] not in (name, str(uid)))


def processes(user):
    """{pid: 'pid N uid U: cmdline'} of live processes (zombies are dead) whose real or effective uid is the
    user's or a subordinate id."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/status") as f:
                lines = f.readlines()
            uids = next(line for line in lines if line.startswith("Uid:")).split()[1:3]
            zombie = any(line.startswith("State:") and line.split()[1] in ("Z", "X") for line in lines)
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, StopIteration):
            continue
        if zombie:
            continue  # (dead: waiting for whoever it was reparented to)
        if any(user.owns_id(int(u)) for u in uids):
            out[int(d)] = f"pid {d} uid {uids[0]}: {cmd!r}"
    return out


def kill_all(user, timeout=5.0):
    """SIGKILL every process of the user (and its subordinate ids) until none is left; returns what was found."""
    found = processes(user)
    end = time.monotonic() + timeout
    while True:
        procs = processes(user)
        if not procs or time.monotonic() > end:
            return found
        for pid in procs:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.05)


def leftovers(user):
    """What the user still has: processes, and entries in its runtimes' state roots under XDG_RUNTIME_DIR."""
    out = [("process", d) for d in processes(user).values()]
    for rt in ("ocirun", "runc"):
        root = os.path.join(user.xdg, rt)
        if os.path.isdir(root):
            out += [("state", os.path.join(root, n)) for n in os.listdir(root)]
    return out


def run_as(user, argv, env=None, cwd=None, timeout=60, input=None, stdout=None, stderr=None):
    """Run argv as `user` (see the module doc) and return a Result."""
    tmp = None
    if stdout is None or stderr is None:
        tmp = tempfile.mkdtemp(prefix="ocrl-io-")
        os.chmod(tmp, 0o755)
    out_path = str(stdout) if stdout is not None else os.path.join(tmp, "out")
    err_path = str(stderr) if stderr is not None else os.path.join(tmp, "err")
    try:
        with open(out_path, "a+") as out, open(err_path, "a+") as err:
            start_out, start_err = out.tell(), err.tell()
            for f in (out, err):
                try:
                    os.fchown(f.fileno(), user.uid, user.gid)
                except OSError:
                    pass
            try:
                p = subprocess.run([str(a) for a in argv], input=input, stdout=out, stderr=err,
                                   stdin=None if input is not None else subprocess.DEVNULL,
                                   cwd=cwd or user.home, env=user.env(env), timeout=timeout, text=True,
                                   user=user.uid, group=user.gid, extra_groups=[], umask=0o022)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"timed out after {timeout}s as {user.name}: {' '.join(map(str, argv))}") from None
            out.seek(start_out)
            err.seek(start_err)
            return Result(p.args, p.returncode, out.read(), err.read())
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
