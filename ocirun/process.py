"""The container process: rlimits, oom score, user and groups, capabilities, no_new_privs, cwd, env, exec."""
import os
import stat

from . import capabilities
from . import syscalls as S
from .errors import OciError
from .semantics import MAX_CPUS, MAX_NUMA_NODES, list_problem  # (stages run it after pivot_root)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4, "RLIMIT_RSS": 5,
    "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10,
    "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}
_INF = (1 << 64) - 1


def check_rlimits(rlimits):
    seen = set()
    for i, r in enumerate(rlimits):
        if r.type not in RLIMITS:
            raise OciError(f"process.rlimits[{i}]: unknown rlimit type {r.type!r}")
        if r.type in seen:
            raise OciError(f"process.rlimits[{i}]: {r.type} is listed more than once")
        seen.add(r.type)
        if r.soft > r.hard:
            raise OciError(f"process.rlimits[{i}]: {r.type}: soft limit {r.soft} is above the hard limit {r.hard}")


def set_rlimits(rlimits):
    import resource

    for i, r in enumerate(rlimits):
        num = RLIMITS[r.type]
        soft = resource.RLIM_INFINITY if r.soft >= _INF else r.soft
        hard = resource.RLIM_INFINITY if r.hard >= _INF else r.hard
        try:
            resource.setrlimit(num, (soft, hard))
        except (ValueError, OSError) as e:
            cur = resource.getrlimit(num)[1]
            curs = "unlimited" if cur == resource.RLIM_INFINITY else str(cur)
            if cur != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > cur):
                raise OciError(f"process.rlimits[{i}]: {r.type}: cannot raise the hard limit to {r.hard} "
                               f"above the runtime's {curs} (that needs CAP_SYS_RESOURCE, which this host does "
                               f"not grant)") from None
            raise OciError(f"process.rlimits[{i}]: {r.type}: setrlimit({r.soft}, {r.hard}): {e}") from None


def set_oom_score_adj(value):
    if value is None:
        return
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError as e:
        hint = " (lowering it below the current value needs CAP_SYS_RESOURCE)" if e.errno == 13 else ""
        raise OciError(f"process.oomScoreAdj: cannot set {value}: {e.strerror}{hint}") from None


def passwd_home(uid, etc_passwd="/etc/passwd"):
    try:
        with open(etc_passwd, "rb") as f:
            for line in f:
                p = line.decode("utf-8", "replace").rstrip("\n").split(":")
                if len(p) >= 6 and p[2] == str(uid):
                    return p[5] or "/"
    except OSError:
        pass
    return "/"


def build_env(proc, home_lookup=passwd_home):
    """The process's environment as runc's prepareEnv makes it: a name given more than once keeps its last
    value (at the place of its last occurrence); HOME, when absent or empty, is the user's home directory from
    the container's /etc/passwd ("/" without an entry), appended at the end."""
    out, seen = [], set()
    home_set = False
    for kv in reversed(list(proc.env or ())):
        key, sep, val = kv.partition("=")
        if not sep or not key:
            raise OciError(f"process.env: {kv!r}: not NAME=VALUE")
        if key in seen:
            continue
        seen.add(key)
        if key == "HOME":
            if not val:
                continue  # an empty HOME is unset: filled in below
            home_set = True
        out.append(kv)
    out.reverse()
    if not home_set:
        out.append("HOME=" + home_lookup(proc.user.uid))
    return out


def env_path(env):
    for e in env:
        if e.startswith("PATH="):
            return e[5:]
    return DEFAULT_PATH


def find_executable(name, env, cwd="/"):
    """Resolve args[0] like execvp would with the container's PATH; error at create if it cannot run."""
    if not name:
        raise OciError("process.args: empty program name")
    if "/" in name:
        path = name if name.startswith("/") else os.path.join(cwd, name)
        _check_exec(path, name)
        return path
    for d in env_path(env).split(":"):
        path = os.path.join(d or ".", name)
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
            return path
    raise OciError(f'exec: "{name}": executable file not found in $PATH')


PROC_SUPER_MAGIC = 0x9FA0


def check_interpreters(path, sys=S.SYS, depth=0):
    """Refuse a program whose interpreter chain leads into procfs (CVE-2019-5736 class).

    A container can make its program a `#!/proc/self/exe` script (or an ELF with PT_INTERP /proc/self/exe):
    at execve the kernel resolves that in *our* context, so the host's Python binary would start inside the
    container with the container's privileges and could then be opened for writing. We follow `#!` lines and
    PT_INTERP (nested up to 4 levels, as the kernel does) and refuse any that is a magic link or on procfs."""
    if depth > 4:
        raise OciError(f'exec: "{path}": too many levels of interpreters')
    try:
        fd = sys.openat2(S.AT_FDCWD, path, os.O_RDONLY | os.O_NOCTTY, 0, S.RESOLVE_NO_MAGICLINKS)
    except OSError as e:
        if e.errno == 40:  # ELOOP: a magic link such as /proc/self/exe
            raise OciError(f'exec: "{path}": refusing to execute through a /proc magic link') from None
        return  # let execve report it
    try:
        if sys.fstatfs_type(fd) == PROC_SUPER_MAGIC:
            raise OciError(f'exec: "{path}": refusing to execute a file on procfs')
        head = os.pread(fd, 4096, 0)
    finally:
        os.close(fd)
    interp = None
    if head[:2] == b"#!":
        line = head[2:].split(b"\n", 1)[0].strip()
        if line:
            interp = line.split()[0].decode("utf-8", "surrogateescape")
    elif head[:4] == b"\x7fELF":
        interp = _elf_interp(path, head)
    if interp:
        check_interpreters(interp, sys, depth + 1)


def _elf_interp(path, head):
    """The PT_INTERP path of an ELF file (64- and 32-bit, little-endian), or None."""
    def u(buf, off, n):  # little-endian unsigned field (not struct: one import less in the init)
        if off + n > len(buf):
            raise ValueError("short ELF header")
        return int.from_bytes(buf[off:off + n], "little")

    if len(head) < 52 or head[5] != 1:
        return None
    is64 = head[4] == 2
    try:
        if is64:
            phoff, phentsize, phnum = u(head, 32, 8), u(head, 54, 2), u(head, 56, 2)
        else:
            phoff, phentsize, phnum = u(head, 28, 4), u(head, 42, 2), u(head, 44, 2)
        with open(path, "rb") as f:
            f.seek(phoff)
            table = f.read(phentsize * min(phnum, 64))
            for i in range(min(phnum, 64)):
                ent = table[i * phentsize:(i + 1) * phentsize]
                if len(ent) < phentsize:
                    break
                if u(ent, 0, 4) != 3:  # PT_INTERP
                    continue
                if is64:
                    off, size = u(ent, 8, 8), u(ent, 32, 8)
                else:
                    off, size = u(ent, 4, 4), u(ent, 16, 4)
                f.seek(off)
                return f.read(min(size, 4096)).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    except (OSError, ValueError):
        return None
    return None


def check_username(user, passwd_path):
    """process.user.username must name a user of the container (the uid/gid fields are what is applied)."""
    if not user.username:
        return
    try:
        with open(passwd_path, "rb") as f:
            for line in f:
                if line.split(b":", 1)[0].decode("utf-8", "replace") == user.username:
                    return
    except OSError:
        pass
    raise OciError(f"process.user.username {user.username!r}: no such user in the container's /etc/passwd")


def _check_exec(path, name):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise OciError(f'exec: "{name}": no such file or directory') from None
    except OSError as e:
        raise OciError(f'exec: "{name}": {e.strerror}') from None
    if stat.S_ISDIR(st.st_mode):
        raise OciError(f'exec: "{name}": is a directory')
    if not st.st_mode & 0o111:
        raise OciError(f'exec: "{name}": permission denied')


def reopen_dev_null():
    """stdio that is a /dev/null (the caller's, from the host) is replaced by the container's own /dev/null, as
    runc's reOpenDevNull does after pivot_root when the runtime made /dev: no host file stays open as stdio,
    and a /dev/null the container cannot open (replaced in linux.devices, denied by its device rules) is an
    error at create rather than a surprise in the process."""
    try:
        fd = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        raise OciError(f"cannot reopen /dev/null inside the container: {e.strerror} (linux.devices / "
                       f"linux.resources.devices)") from None
    try:
        null = os.fstat(fd).st_rdev
        for i in (0, 1, 2):
            try:
                st = os.fstat(i)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == null:
                os.dup2(fd, i)
    finally:
        os.close(fd)


def fix_stdio_owner(uid):
    """The process's stdio (a pty slave, pipes) made outside the container: owned by its user, so that it can
    use them (runc's fixStdioPermissions): the uid only, and not for /dev/null or what already is the user's;
    an fd that cannot be changed (EPERM, EROFS...) is left as it is."""
    for fd in (0, 1, 2):
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if st.st_uid == uid or (stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)):
            continue
        try:
            os.fchown(fd, uid, -1)
        except OSError:
            pass


def switch_user(user, caps, sys=S.SYS, setgroups_allowed=True):
    """Bounding set, then setgroups/setgid/setuid keeping capabilities, then the exact capability sets."""
    fix_stdio_owner(user.uid)
    if not setgroups_allowed and user.additional_gids:
        raise OciError("process.user.additionalGids: cannot set supplementary groups: setgroups is denied in "
                       "this user namespace (/proc/self/setgroups)")
    capabilities.drop_bounding(caps)
    sys.prctl(S.PR_SET_KEEPCAPS, 1)
    try:
        if setgroups_allowed:
            try:
                sys.setgroups(list(user.additional_gids or ()))
            except OSError as e:
                raise OciError(f"process.user.additionalGids: setgroups: {os.strerror(e.errno)}") from None
        try:
            sys.setresgid(user.gid, user.gid, user.gid)
        except OSError as e:
            raise OciError(f"process.user.gid {user.gid}: setgid: {os.strerror(e.errno)}") from None
        try:
            sys.setresuid(user.uid, user.uid, user.uid)
        except OSError as e:
            raise OciError(f"process.user.uid {user.uid}: setuid: {os.strerror(e.errno)}") from None
    finally:
        sys.prctl(S.PR_SET_KEEPCAPS, 0)
    capabilities.apply_sets(caps, sys)


def exec_process(path, args, env, preserve_fds=0, sys=S.SYS, last=None):
    """Every fd above 2+preserve_fds is closed by the kernel at exec (CLOSE_RANGE_CLOEXEC); then execve.

    `last` (the seccomp filter's load) runs after everything else, so that only execve follows it."""
    envd = dict(_split_env(env))
    sys.close_range(3 + preserve_fds, 0xFFFFFFFF, S.CLOSE_RANGE_CLOEXEC)
    if last is not None:
        last()
    try:
        os.execve(path, args, envd)
    except OSError as e:
        raise OciError(f'exec: "{args[0]}": {e.strerror}') from None


def _split_env(env):
    for e in env:
        k, _, v = e.partition("=")
        if k:
            yield k, v


FORWARDED_SIGNALS = (1, 2, 3, 10, 12, 14, 15, 18, 20, 21, 22, 23, 28)  # 28 (WINCH): the proxy resizes instead


def reset_signals():
    """Every signal back to its default before execve: Python ignores SIGPIPE and SIGXFSZ, and an ignored
    disposition survives exec."""
    import _signal

    for sig in range(1, 65):
        if sig in (9, 19, 32, 33):
            continue
        try:
            _signal.signal(sig, _signal.SIG_DFL)
        except (OSError, ValueError):
            pass


def wait_forwarding(pid, pty_master=None, alive=None, stdio=None):
    """Foreground supervision (run, exec): forward signals to `pid`, proxy its pty if any (or copy our stdio to
    and from its pipes: `stdio` = [its stdin's write end, its stdout's and stderr's read ends]), and return its
    status as a shell would (128+N when killed by signal N). We must be its parent or subreaper."""
    import _signal
    import gc

    gc.enable()  # this may run for long (main() turns the collector off for the short commands)

    def forward(sig, frame):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    for sig in FORWARDED_SIGNALS:
        if sig == 28 and pty_master is not None:
            continue
        try:
            _signal.signal(sig, forward)
        except (OSError, ValueError):
            pass
    if pty_master is not None:
        from . import terminal

        terminal.proxy(pty_master, alive or (lambda: True))
        os.close(pty_master)
    pumps = _start_pumps(stdio) if stdio else None
    while True:
        try:
            wpid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            code = 255
            break
        if wpid == pid:
            code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            break
    if pumps is not None:
        _finish_pumps(pumps)
    return code


def _start_pumps(stdio):
    """Copy our stdin to the process's and its stdout/stderr to ours, on threads (_thread: `threading` is
    slower to import); returns the locks released when its outputs reach EOF."""
    import _thread

    w0, r1, r2 = stdio

    def copy(src, dst, done=None, close_dst=False):
        try:
            while True:
                try:
                    data = os.read(src, 65536)
                except OSError:
                    break
                if not data:
                    break
                try:
                    while data:
                        data = data[os.write(dst, data):]
                except OSError:
                    if not close_dst:  # our stdout is gone: keep reading so the process is not blocked
                        continue
                    break
        finally:
            if close_dst:
                try:
                    os.close(dst)
                except OSError:
                    pass
            else:
                os.close(src)
            if done is not None:
                done.release()

    locks = []
    for src, dst in ((r1, 1), (r2, 2)):
        lk = _thread.allocate_lock()
        lk.acquire()
        locks.append(lk)
        _thread.start_new_thread(copy, (src, dst, lk))
    _thread.start_new_thread(copy, (0, w0, None, True))
    return locks


def _finish_pumps(locks, timeout=5.0):
    """After the process exited: let its output reach EOF (bounded: something it left behind may hold the
    pipe; the caller destroys the container next, which ends those)."""
    for lk in locks:
        lk.acquire(timeout=timeout)


SCHED_POLICIES = {"SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3, "SCHED_ISO": 4,
                  "SCHED_IDLE": 5, "SCHED_DEADLINE": 6}
SCHED_FLAGS = {"SCHED_FLAG_RESET_ON_FORK": 0x01, "SCHED_FLAG_RECLAIM": 0x02, "SCHED_FLAG_DL_OVERRUN": 0x04,
               "SCHED_FLAG_KEEP_POLICY": 0x08, "SCHED_FLAG_KEEP_PARAMS": 0x10, "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20,
               "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40}
IOPRIO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
MPOL_MODES = {"MPOL_DEFAULT": 0, "MPOL_PREFERRED": 1, "MPOL_BIND": 2, "MPOL_INTERLEAVE": 3, "MPOL_LOCAL": 4,
              "MPOL_PREFERRED_MANY": 5, "MPOL_WEIGHTED_INTERLEAVE": 6}
MPOL_FLAGS = {"MPOL_F_STATIC_NODES": 1 << 15, "MPOL_F_RELATIVE_NODES": 1 << 14, "MPOL_F_NUMA_BALANCING": 1 << 13}


def parse_cpu_list(text, where, limit=None):
    """'0-3,7' -> {0,1,2,3,7} (cpus and NUMA nodes share this syntax). Numbers at or above `limit` (default:
    the largest CPU count a kernel can have) are refused before any range is expanded."""
    err = list_problem(text or "", limit or MAX_CPUS)
    if err:
        raise OciError(f"{where}: {err}")
    out = set()
    for part in (text or "").replace(" ", "").split(","):
        if part:
            lo, dash, hi = part.partition("-")
            out.update(range(int(lo), int(hi if dash else lo) + 1))
    return out


def check_scheduling(proc, linux=None):
    """At create: names and values a later set-up step would refuse."""
    s = proc.scheduler
    if s:
        if s.get("policy") not in SCHED_POLICIES:
            raise OciError(f"process.scheduler.policy: unknown policy {s.get('policy')!r}")
        for f in s.get("flags") or ():
            if f not in SCHED_FLAGS:
                raise OciError(f"process.scheduler.flags: unknown flag {f!r}")
        if s.get("policy") == "SCHED_DEADLINE" and not (s.get("runtime") and s.get("deadline")):
            raise OciError("process.scheduler: SCHED_DEADLINE needs runtime and deadline")
    io = proc.io_priority
    if io and io.get("class") not in IOPRIO_CLASSES:
        raise OciError(f"process.ioPriority.class: unknown class {io.get('class')!r}")
    if io and not 0 <= int(io.get("priority", 0)) <= 7:
        raise OciError(f"process.ioPriority.priority: {io.get('priority')} is not in 0..7")
    aff = proc.exec_cpu_affinity or {}
    for k in ("initial", "final"):
        if aff.get(k) is not None:
            parse_cpu_list(aff[k], f"process.execCPUAffinity.{k}")
    mp = (linux.memory_policy if linux is not None else None) or None
    if mp:
        if mp.get("mode") not in MPOL_MODES:
            raise OciError(f"linux.memoryPolicy.mode: unknown mode {mp.get('mode')!r}")
        for f in mp.get("flags") or ():
            if f not in MPOL_FLAGS:
                raise OciError(f"linux.memoryPolicy.flags: unknown flag {f!r}")
        parse_cpu_list(mp.get("nodes"), "linux.memoryPolicy.nodes", MAX_NUMA_NODES)


def reset_affinity(pid, mgr):
    """Once `pid` is in the container's cgroup: its CPU affinity becomes the cgroup's cpuset (all online CPUs
    where that cannot be read), so a caller pinned with taskset does not pin the container (runc 1.2+).
    process.execCPUAffinity, if set, is applied after this."""
    cpus = None
    d = mgr.path("cpuset") if mgr is not None else None
    for f in ("cpuset.effective_cpus", "cpuset.cpus.effective", "cpuset.cpus"):
        if not d:
            break
        try:
            with open(os.path.join(d, f)) as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text:
            cpus = parse_cpu_list(text, "cpuset")
            break
    if not cpus:
        try:
            with open("/sys/devices/system/cpu/online") as fh:
                cpus = parse_cpu_list(fh.read().strip(), "online CPUs")
        except (OSError, OciError):
            return
    try:
        os.sched_setaffinity(pid, cpus)
    except OSError:
        pass  # a CPU of the set went offline meanwhile: leave it as it is


def set_cpu_affinity(proc, which):
    aff = proc.exec_cpu_affinity or {}
    cpus = aff.get(which)
    if cpus is None:
        return
    want = parse_cpu_list(cpus, f"process.execCPUAffinity.{which}")
    try:
        os.sched_setaffinity(0, want)
    except OSError as e:
        raise OciError(f"process.execCPUAffinity.{which} {cpus!r}: {e.strerror}") from None


def apply_scheduling(proc, linux=None, sys=S.SYS):
    """scheduler, ioPriority and memoryPolicy, while the process still has the capabilities they may need."""
    s = proc.scheduler
    if s:
        flags = 0
        for f in s.get("flags") or ():
            flags |= SCHED_FLAGS[f]
        try:
            sys.sched_setattr(SCHED_POLICIES[s["policy"]], flags, int(s.get("nice", 0)), int(s.get("priority", 0)),
                              int(s.get("runtime", 0)), int(s.get("deadline", 0)), int(s.get("period", 0)))
        except OSError as e:
            raise OciError(f"process.scheduler ({s['policy']}): sched_setattr: {os.strerror(e.errno)}") from None
    io = proc.io_priority
    if io:
        try:
            sys.ioprio_set(IOPRIO_CLASSES[io["class"]], int(io.get("priority", 0)))
        except OSError as e:
            raise OciError(f"process.ioPriority: ioprio_set: {os.strerror(e.errno)}") from None
    mp = linux.memory_policy if linux is not None else None
    if mp:
        mode = MPOL_MODES[mp["mode"]]
        for f in mp.get("flags") or ():
            mode |= MPOL_FLAGS[f]
        nodes = parse_cpu_list(mp.get("nodes"), "linux.memoryPolicy.nodes", MAX_NUMA_NODES)
        try:
            sys.set_mempolicy(mode, sorted(nodes))
        except OSError as e:
            raise OciError(f"linux.memoryPolicy ({mp['mode']} {mp.get('nodes', '')}): set_mempolicy: "
                           f"{os.strerror(e.errno)}") from None


def chdir_privileged(cwd):
    """Before the user switch: chdir to process.cwd while the runtime may still enter any directory (runc: a
    cwd only root can reach works for a process that could not reach it itself). Returns False when even that
    was refused (EACCES/EPERM, e.g. in a user namespace): chdir_inside() then tries again as the user."""
    try:
        os.chdir(cwd or "/")
    except PermissionError:
        return False
    except OSError:
        pass  # chdir_inside says what is wrong
    chdir_inside(cwd)
    return True


def chdir_inside(cwd):
    """chdir to process.cwd and make sure it is inside the container's root (CVE-2024-21626: a cwd such as
    /proc/self/fd/N must never land on a host directory through an inherited fd). getcwd(3) fails with ENOENT
    (the kernel's "(unreachable)") for a cwd outside the process's root."""
    try:
        os.chdir(cwd or "/")
    except OSError as e:
        raise OciError(f"process.cwd {cwd}: {e.strerror}") from None
    try:
        where = os.getcwd()
    except FileNotFoundError:
        where = None  # ENOENT: the kernel's "(unreachable)", a cwd outside our root
    except OSError:
        return  # e.g. getcwd refused by the container's own seccomp profile: cannot verify (fds are closed anyway)
    if not where or not where.startswith("/"):
        raise OciError(f"process.cwd {cwd}: resolves outside the container's root filesystem")


def close_inherited(keep, preserve_fds=0):
    """Close, now (not at exec), every fd above stdio that the caller of ocirun left open, except the
    preserved ones and `keep`: nothing of the host may be reachable through /proc/self/fd once we are in the
    container's namespaces."""
    try:
        fds = [int(x) for x in os.listdir("/proc/self/fd")]
    except OSError:
        return
    for fd in fds:
        if fd > 2 + preserve_fds and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def prepare_exec(proc, sys=S.SYS):
    """rlimits, the environment and the executable, before the user switch (the init and exec alike): returns
    (path, env). An executable that cannot run (missing, not executable, a bad interpreter) fails here."""
    set_rlimits(proc.rlimits)
    env = build_env(proc)
    path = find_executable(proc.args[0], env, proc.cwd or "/")
    check_interpreters(path, sys)
    return path, env


def become(proc, caps, lin, sfilter, sys=S.SYS, setgroups_allowed=True):
    """The process's own settings up to and with the user switch, the same for the init and for exec (runc's
    order): personality, LSM labels for the exec, scheduling and memory policy, noNewPrivileges (or, without
    it, the seccomp filter now, while we still have CAP_SYS_ADMIN), the cwd while still privileged, the user
    with its capabilities, the umask. Returns the seccomp filter still to load (at exec), or None."""
    if lin.personality:
        set_personality(sys, lin.personality)
    if proc.apparmor_profile or proc.selinux_label:
        from . import lsm

        lsm.apply_exec_labels(proc)
    apply_scheduling(proc, lin, sys)
    if proc.no_new_privileges:
        sys.prctl(S.PR_SET_NO_NEW_PRIVS, 1)
    elif sfilter is not None:
        sfilter.load()
        sfilter = None
    in_cwd = chdir_privileged(proc.cwd)
    switch_user(proc.user, caps, sys, setgroups_allowed=setgroups_allowed)
    os.umask(proc.user.umask if proc.user.umask is not None else 0o022)
    if not in_cwd:
        chdir_inside(proc.cwd)
    return sfilter


def set_personality(sys, p):
    """linux.personality (its domain; flags are warned about by semantics)."""
    dom = p.get("domain")
    val = {"LINUX": 0x0000, "LINUX32": 0x0008}.get(dom)
    if val is None:
        raise OciError(f"linux.personality.domain: unknown domain {dom!r}")
    try:
        sys.personality(val)
    except OSError as e:
        raise OciError(f"linux.personality: {os.strerror(e.errno)}") from None


def stdio_pipes(plan):
    """Three pipes for a foreground process without a terminal: ([its stdin, stdout, stderr], [our ends]),
    its ends owned by the container's root (runc: newProcessIO with the host uid/gid of the container's root)."""
    from . import namespaces

    r0, w0 = os.pipe()
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    uid = namespaces.host_id(plan.uid_mappings, 0) if plan.new_user else 0
    gid = namespaces.host_id(plan.gid_mappings, 0) if plan.new_user else 0
    if uid or gid:
        for fd in (r0, w1, w2):
            try:
                os.fchown(fd, uid if uid is not None else -1, gid if gid is not None else -1)
            except OSError as e:
                # rootless, the container's root another uid than the caller's: as runc (which refuses at the
                # same fchown), since its root could not reopen /dev/stdout and the like
                for x in (r0, w0, r1, w1, r2, w2):
                    os.close(x)
                raise OciError(f"cannot give the container's root (host uid {uid}, gid {gid}) its stdio pipes: "
                               f"fchown: {e.strerror} (rootless: map your own uid and gid to 0, or run it "
                               f"detached or with a terminal)") from None
    for fd in (w0, r1, r2):
        os.set_inheritable(fd, False)
    return [r0, w1, w2], [w0, r1, r2]
