"""`exec`: run another process inside a running container. Forks, joins its cgroup and the init's namespaces
(namespaces.join: user last, as create), forks again for the pid namespace, applies the process's settings and
execs. No re-exec."""
import os

from . import config as C
from . import namespaces, protocol, state as St
from . import syscalls as S
from .errors import OciError, StateError
from .log import trace
from .version import SPEC_VERSION


class ExecOptions:
    def __init__(self, detach=False, pid_file=None, console_socket=None, preserve_fds=0, tty=None,
                 ignore_paused=False, sub_cgroups=None):
        self.detach = detach
        self.pid_file = pid_file
        self.console_socket = console_socket
        self.preserve_fds = preserve_fds
        self.tty = tty
        self.ignore_paused = ignore_paused
        self.sub_cgroups = sub_cgroups  # {controller: path} ("" = every hierarchy), from parse_sub_cgroups


def parse_sub_cgroups(args):
    """exec --cgroup values, as runc reads them: `[controller[,controller...]:]path`; a path without controllers
    (cgroup v2 style, or every v1 hierarchy) may only be given once and alone. Returns {controller: path}."""
    if not args:
        return None
    out = {}
    for a in args:
        ctrls, sep, path = a.partition(":")
        if sep:
            for c in ctrls.split(","):
                if not c:
                    raise OciError(f"invalid --cgroup argument: {a} (empty <controller> prefix)")
                if c in out:
                    raise OciError(f"invalid --cgroup argument(s): controller {c} specified multiple times")
                out[c] = path
        else:
            if len(args) != 1:
                raise OciError(f"invalid --cgroup argument: {a} (missing <controller>: prefix)")
            out[""] = a
    return out


def _sub_path(base, sub):
    target = os.path.normpath(base + "/" + sub)
    if target != base and not target.startswith(base.rstrip("/") + "/"):
        raise OciError(f"bad sub cgroup path: {sub}")
    return target


def sub_cgroup_dirs(mgr, subs):
    """The directories (one per hierarchy) an exec'd process joins for --cgroup `subs` (see parse_sub_cgroups):
    each below the container's own cgroup; a controller the container has no hierarchy for is refused."""
    if mgr is None:
        raise OciError("exec --cgroup: the container has no cgroup")
    if mgr.version == 2:
        if set(subs) != {""}:
            raise OciError("exec --cgroup: on cgroup v2 give a single path, without <controller>:")
        return [_sub_path(mgr.dir, subs[""])]
    if "" in subs:  # every v1 hierarchy (a hybrid host's unified one, which runc's v1 manager does not join, stays)
        return [_sub_path(h[4], subs[""]) if h[2] == "cgroup" else h[4] for h in mgr.hierarchies]
    for c in subs:
        if mgr.path(c) is None:
            raise OciError(f"unknown controller {c} in --cgroup (the container's: "
                           f"{', '.join(sorted(k for k in mgr.by_ctrl if k))})")
    dirs = []
    for _name, _mp, _fstype, ctrls, d in mgr.hierarchies:
        names = set(ctrls) | {c[5:] for c in ctrls if c.startswith("name=")}
        wanted = {subs[c] for c in names if c in subs}
        if len(wanted) > 1:
            raise OciError(f"exec --cgroup: {', '.join(sorted(names & set(subs)))} share one hierarchy "
                           f"and were given different sub-cgroups")
        dirs.append(_sub_path(d, wanted.pop()) if wanted else d)
    return dirs


def _join_cgroup_dirs(dirs, pid):
    for d in dirs:
        try:
            fd = os.open(os.path.join(d, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, str(pid).encode())
            finally:
                os.close(fd)
        except OSError as e:
            raise OciError(f"error adding pid {pid} to cgroup {d}: {e.strerror}") from None


def process_from_file(path):
    """A runtime-spec process object from --process FILE, validated against the schema."""
    doc = C.load_doc(path)
    from .validate import validate_config

    try:
        validate_config({"ociVersion": SPEC_VERSION, "process": doc})
    except OciError as e:
        raise OciError(str(e).replace("config.json: /process", f"{os.path.basename(path)}: ")) from None
    C.check_semantics({"process": doc})
    return C.parse({"ociVersion": SPEC_VERSION, "process": doc}).process


def process_from_flags(base, args, env=(), cwd=None, user=None, additional_gids=None, caps=(), no_new_privs=False,
                       tty=False, apparmor=None, label=None):
    """runc's rule: the container's own process is the base; flags override or add."""
    if not args:
        raise OciError("exec: process args cannot be empty")
    p = C.Process(**{s: getattr(base, s) for s in C.Process.__slots__}) if base else C.Process()
    p.args = list(args)
    merged = list(p.env or ())
    for e in env:
        k = e.partition("=")[0]
        merged = [x for x in merged if x.partition("=")[0] != k] + [e]
    p.env = merged
    if cwd:
        p.cwd = cwd
    u = C.User(**{s: getattr(p.user, s) for s in C.User.__slots__}) if p.user else C.User()
    if user:
        uid, _, gid = user.partition(":")
        try:
            u.uid = _id_value(uid)
            if gid:
                u.gid = _id_value(gid)
        except ValueError:
            raise OciError(f"exec: --user {user!r}: UID[:GID] must be numbers from 0 to 4294967294") from None
        if not gid:
            u.gid = u.gid if u.gid is not None else 0
        u.additional_gids = []
    if additional_gids:
        try:
            u.additional_gids = [_id_value(g) for g in additional_gids]
        except ValueError as e:
            raise OciError(f"exec: --additional-gids {e}: must be a number from 0 to 4294967294") from None
    p.user = u
    if caps:
        old = p.capabilities or C.Capabilities()
        # runc: --cap goes to bounding, effective and permitted; to ambient only when the process has an
        # inheritable set (ambient needs it), never to inheritable itself
        sets = {s: getattr(old, s) for s in C.Capabilities.__slots__}
        grow = ["bounding", "effective", "permitted"] + (["ambient"] if old.inheritable is not None else [])
        for s in grow:
            cur = list(sets[s] or ())
            sets[s] = cur + [c for c in caps if c not in cur]
        p.capabilities = C.Capabilities(**sets)
    if no_new_privs:
        p.no_new_privileges = True
    p.terminal = bool(tty)
    if apparmor:
        p.apparmor_profile = apparmor
    if label:
        p.selinux_label = label
    return p


def _id_value(text):
    """A uid or gid: 0..2**32-2 (-1 and 4294967295 mean "unchanged" to setresuid, never a user)."""
    if not (text.isascii() and text.isdigit()):
        raise ValueError(text)
    v = int(text)
    if v >= 0xFFFFFFFF:
        raise ValueError(text)
    return v


def exec_in(container, proc, opts):
    store = container.store
    st = store.read(container.id)
    _check_status(container, store, st, opts)
    cfg = C.parse(st["config"])
    lin = cfg.linux or C.Linux()
    caps = _check_process(proc, opts)
    pid = st["pid"]
    from . import cgroups

    cgroups.prime_once()
    mgr = cgroups.manager_from_dict(st["cgroup"]) if st.get("cgroup") else None
    opts.cgroup_dirs = sub_cgroup_dirs(mgr, opts.sub_cgroups) if opts.sub_cgroups else None
    fds = _open_namespaces(container, st, lin, pid, opts)
    console_fd = protocol.connect_unix(opts.console_socket) if opts.console_socket else None
    fg = not opts.detach
    if fg:
        S.set_child_subreaper()
    pchan, cchan = protocol.Channel.pair()
    child = os.fork()
    if child == 0:
        pchan.close()
        try:
            _exec_child(cfg, proc, caps, fds, mgr, cchan, console_fd, opts,
                        {"id": container.id, "status": "running", "pid": pid, "bundle": st.get("bundle", ""),
                         "annotations": cfg.annotations or {}}, bool(st.get("no_new_keyring")))
        except BaseException as e:
            msg = str(e) if isinstance(e, OciError) else f"{type(e).__name__}: {e}"
            try:
                cchan.send("error", msg=msg)
            except OSError:
                pass
        os._exit(255)
    for _, _, fd in fds:
        os.close(fd)
    if opts.root_fd is not None:
        os.close(opts.root_fd)
    cchan.close()
    if console_fd is not None:
        os.close(console_fd)
    target, master = _wait_for_process(pchan, proc, opts, child)
    if opts.pid_file:
        St.write_pid_file(opts.pid_file, target)
    if not fg:
        return 0
    from . import process

    return process.wait_forwarding(target, master, lambda: St.proc_start_time(target) is not None)


def _check_status(container, store, st, opts):
    status = St.status_of(store, container.id, st)
    if status == "stopped" or st is None:
        raise StateError(f"cannot exec in a stopped container: {container.id}")
    if status == "paused" and not opts.ignore_paused:
        # with --ignore-paused the process joins the frozen cgroup and starts once the container is resumed
        raise StateError(f"cannot exec in a paused container (use --ignore-paused to override): {container.id}")
    if status == "creating":
        raise StateError(f"cannot exec in a container that is still being created: {container.id}")


def _check_process(proc, opts):
    """The process's settings, checked before anything is forked (as create checks its own). Returns the
    resolved capability sets."""
    from . import preflight

    caps = preflight.check_process(proc, None, warn=False)
    if os.geteuid() != 0:
        from . import rootless

        rootless.check_additional_gids(proc, "exec: process.user.additionalGids")
    if proc.terminal and not opts.console_socket and opts.detach:
        raise OciError("cannot allocate tty if ocirun will detach without setting console socket")
    return caps


def _open_namespaces(container, st, lin, pid, opts):
    """Every namespace of the init opened (and its root, when it has no mount namespace of its own: the process
    is chrooted where the init is), then the init checked to be the same process still (pid reuse)."""
    fds = []
    opts.root_fd = None
    try:
        for ns in sorted((n.type for n in lin.namespaces), key=namespaces.JOIN_ORDER.index):
            path = f"/proc/{pid}/ns/{namespaces.PROC_NAME[ns]}"
            try:
                fds.append((ns, path, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
            except OSError as e:
                raise StateError(f"cannot exec in {container.id}: {path}: {e.strerror}") from None
        if st.get("host_mnt_ns"):
            try:
                opts.root_fd = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as e:
                raise StateError(f"cannot exec in {container.id}: /proc/{pid}/root: {e.strerror}") from None
        if St.proc_start_time(pid) != st.get("init_start_time"):
            raise StateError(f"cannot exec in a stopped container: {container.id}")
    except BaseException:
        for _, _, fd in fds:
            os.close(fd)
        if opts.root_fd is not None:
            os.close(opts.root_fd)
        raise
    return fds


def _wait_for_process(pchan, proc, opts, child):
    """The exec'd process's pid (and its pty master, to proxy) from the child, or the error that stopped it."""
    target = None
    master = None
    try:
        while True:
            m, fd = pchan.recv_fd() if proc.terminal and not opts.console_socket else (pchan.recv(), None)
            if fd is not None:
                master = fd
            if m is None:
                break
            t = m.get("t")
            if t == "pid":
                target = m["pid"]
            elif t == "error":
                raise OciError(f"exec failed: {m.get('msg')}")
    finally:
        pchan.close()
    if target is None:
        _reap(child)
        raise OciError("exec failed: the process exited before it started")
    if target != child:
        _reap(child)
    return target, master


def _reap(pid):
    try:
        return os.waitpid(pid, 0)
    except ChildProcessError:
        return pid, None


def _exec_child(cfg, proc, caps, fds, mgr, chan, console_fd, opts, state, no_new_keyring=False):
    """The forked child: into the container's cgroup and namespaces, then the process's settings and exec."""
    _preload(proc)
    sys = S.SYS
    lin = cfg.linux or C.Linux()
    sfilter = None
    if lin.seccomp is not None:  # compiled before setns(mnt): libseccomp is loaded from the host
        from . import seccomp

        sfilter = seccomp.prepare(lin.seccomp, state)
    rootless = os.geteuid() != 0  # (before joining: the caller's euid; runc's RootlessEUID)
    from . import process

    process.set_oom_score_adj(proc.oom_score_adj)  # on the host, still dumpable (see stage1.main)
    _leave_the_host(fds, mgr, chan, console_fd, opts, sfilter)
    user_joined = any(t == "user" for t, _, _ in fds)
    _enter(fds, chan, opts)
    os.setsid()
    trace("exec: joined")
    if proc.terminal:
        from . import terminal

        terminal.attach(proc.console_size, console_fd, chan)
    path, env = process.prepare_exec(proc, sys)
    if not no_new_keyring:
        try:  # the container's session keyring (named by its id), as the init joined it
            sys.join_session_keyring(state["id"])
        except OSError:
            pass
    sfilter = process.become(proc, caps, lin, sfilter, sys,
                             not rootless and namespaces.setgroups_allowed(user_joined))
    process.set_cpu_affinity(proc, "final")
    process.reset_signals()
    process.exec_process(path, proc.args, env, opts.preserve_fds, sys,
                         last=sfilter.load if sfilter is not None else None)


def _preload(proc):
    """What the child uses after setns(mnt), when the host's Python is out of reach."""
    import _signal  # noqa: F401  (process.reset_signals)
    import resource  # noqa: F401
    import _prctl  # noqa: F401
    import fcntl  # noqa: F401
    from . import lsm, process  # noqa: F401  (lsm: used after setns when labels are set)

    if proc.terminal:
        import termios  # noqa: F401
        from . import terminal  # noqa: F401


def _leave_the_host(fds, mgr, chan, console_fd, opts, sfilter):
    """Before entering any of the container's namespaces: whatever fds our caller left open are closed
    (CVE-2024-21626 class), we become non-dumpable (a container process must not reach this host Python
    process through /proc/<pid>/exe, mem or fd: CVE-2019-5736 class), and join the container's cgroups."""
    from . import process

    keep = {chan.fd} | {fd for _, _, fd in fds}
    if opts.root_fd is not None:
        keep.add(opts.root_fd)
    if console_fd is not None:
        keep.add(console_fd)
    if sfilter is not None:
        keep |= sfilter.keep_fds()
    process.close_inherited(keep, opts.preserve_fds)
    S.SYS.prctl(S.PR_SET_DUMPABLE, 0)
    dirs = getattr(opts, "cgroup_dirs", None)
    if dirs:
        _join_cgroup_dirs(dirs, os.getpid())
    elif mgr is not None:
        mgr.add_pid(os.getpid(), exec_=True)
    process.reset_affinity(0, mgr)


def _enter(fds, chan, opts):
    """The container's namespaces, as create joins them (runc's one join_namespaces: user last, so that a
    namespace the container's user namespace does not own, e.g. a network namespace joined by path from the
    host's, is joined with our own privileges); its root; and a fork into its pid namespace. The parent is
    told the process's pid."""
    sys = S.SYS
    namespaces.join(fds, sys, what="cannot join the container's {t} namespace")
    if opts.root_fd is not None:
        os.fchdir(opts.root_fd)
        sys.chroot(".")
        os.chdir("/")
        os.close(opts.root_fd)
    if any(t in ("pid", "time") for t, _, _ in fds):
        pid = os.fork()
        if pid:
            chan.send("pid", pid=pid)
            os._exit(0)
    else:
        chan.send("pid", pid=os.getpid())
