"""Stage 1 of `create`: the first fork of the parent. It drops everything of the caller's, imports what the
stages need while it still sees the host, compiles the seccomp profile, joins and creates the namespaces
(runc's nsexec order: join by path, a new user namespace mapped by the parent, then the others), and forks
the init into a new pid or time namespace (or goes on as the init itself: initproc.run)."""
import os

from . import initproc, namespaces
from . import syscalls as S
from .errors import OciError
from .log import trace


def main(cr, chan, join_fds, start, parent):
    """The child of the parent's fork. Never returns."""
    try:
        _detach_from_caller(cr, chan, join_fds, parent)
        # first, on the host and as the caller (runc's nsexec stage 0): once non-dumpable in a user namespace,
        # /proc/self/oom_score_adj belongs to the host's root, which a rootless caller is not
        from . import process

        process.set_oom_score_adj(cr.cfg.process.oom_score_adj)
        # Everything the stages import is imported now, on the host and as its root: after pivot_root the
        # host's Python is gone, and in a new user namespace the stage runs as an unmapped uid that may not
        # read the interpreter's stdlib. (The parent never loads ctypes or these modules.)
        S._lib()
        _preload(cr.cfg)
        lin = cr.cfg.linux
        if lin is not None and lin.seccomp is not None:
            # here rather than in the parent: the parent meanwhile makes the state and the cgroups (a profile
            # the kernel or libseccomp refuses is reported like any stage error; the parent then cleans up)
            from . import seccomp

            cr.sfilter = seccomp.prepare(lin.seccomp, cr)
        init_pid = _namespaces(cr, chan, join_fds)
        if init_pid:
            chan.send("pid", pid=init_pid)
            os._exit(0)
        initproc.run(cr, chan, start)
    except BaseException as e:
        msg = str(e) if isinstance(e, OciError) else _internal(e)
        try:
            (getattr(cr, "err_chan", None) or chan).send("error", msg=msg)
        except OSError:
            pass
        os._exit(1)
    os._exit(1)


def _detach_from_caller(cr, chan, join_fds, parent):
    """Stage 1 dies with the parent (an init it forks does not inherit this): a create killed before it recorded
    stage 1 leaves nothing running, even a stage stopped where it cannot see the channel's EOF. Nothing of the
    caller's but stdio and the --preserve-fds ones goes on into the container, not even until exec (runc's
    created init holds none: CVE-2024-21626 class)."""
    S.SYS.prctl(S.PR_SET_PDEATHSIG, 9)
    if os.getppid() != parent:
        os._exit(1)
    if cr.stdio is not None:
        theirs, ours = cr.stdio
        for i, fd in enumerate(theirs):
            os.dup2(fd, i)
        for fd in theirs + ours:
            os.close(fd)
    keep = {chan.fd, *(fd for _, _, fd in join_fds)}
    if cr.console_fd is not None:
        keep.add(cr.console_fd)
    from . import process

    process.close_inherited(keep, cr.opts.preserve_fds)


def _internal(e):
    if isinstance(e, OSError) and e.strerror:
        where = f" {e.filename}" if e.filename else ""
        return f"{type(e).__name__}:{where} {e.strerror}"
    return f"internal error: {type(e).__name__}: {e}"


def _namespaces(cr, chan, join_fds):
    """Join, create, and fork into the namespaces. Returns the init's pid in the parent's (our) view when the
    init is a child of ours, 0 when we go on as the init."""
    sys = S.SYS
    os.umask(0)
    namespaces.join(join_fds)
    plan = cr.plan
    if any(t == "user" for t, _, _ in join_fds):
        # joined an existing user namespace: act as its root (else we are its unmapped overflow uid)
        try:
            sys.setresgid(0, 0, 0)
            sys.setresuid(0, 0, 0)
        except OSError as e:
            raise OciError(f"linux.namespaces: joined user namespace has no mapping for uid/gid 0: "
                           f"{os.strerror(e.errno)}") from None
    if plan.new_user:
        sys.unshare(S.CLONE_NEWUSER)
        chan.send("userns", pid=os.getpid())
        chan.expect("mapped")
        try:
            sys.setresgid(0, 0, 0)
            sys.setresuid(0, 0, 0)
        except OSError:
            pass
    sys.prctl(S.PR_SET_DUMPABLE, 0)
    flags = plan.unshare_flags() & ~S.CLONE_NEWCGROUP  # the init unshares it once placed in its cgroup
    if flags:
        try:
            sys.unshare(flags)
        except OSError as e:
            raise OciError(f"linux.namespaces: unshare: {os.strerror(e.errno)}") from None
    if "time" in plan.new:
        # /proc/self/timens_offsets of a non-dumpable process belongs to the host's root, which a new user
        # namespace does not map: dumpable for the write (nothing of the container runs yet), then not again
        sys.prctl(S.PR_SET_DUMPABLE, 1)
        try:
            namespaces.write_time_offsets(plan.time_offsets)
        finally:
            sys.prctl(S.PR_SET_DUMPABLE, 0)
    trace("stage1: namespaces")
    if plan.needs_fork():
        pid = os.fork()
        if pid:
            return pid
    else:
        # stage 1 goes on as the init (no pid namespace of its own to fork into): it must outlive the parent
        # of `create`, so the parent-death signal set after the fork goes (the record names it from here on)
        sys.prctl(S.PR_SET_PDEATHSIG, 0)
        chan.send("pid", pid=os.getpid())
    return 0


def _preload(cfg):
    """Import everything the stages use, before stage 1 leaves the host's namespaces."""
    import resource  # noqa: F401  (process.set_rlimits)
    import _prctl  # noqa: F401  (capabilities)
    import fcntl  # noqa: F401
    import _signal  # noqa: F401
    import select  # noqa: F401  (protocol timeouts)
    from . import capabilities, devices, mounts, process, rootfs  # noqa: F401  (the parent imports none of them)

    if cfg.hooks.create_container or cfg.hooks.start_container or cfg.hooks.prestart or cfg.hooks.create_runtime:
        import time  # noqa: F401
        from . import hooks  # noqa: F401
    if any("tmpcopyup" in (m.options or ()) for m in cfg.mounts):
        import shutil  # noqa: F401
        import tempfile  # noqa: F401

    if cfg.process.apparmor_profile or cfg.process.selinux_label or (cfg.linux and cfg.linux.mount_label):
        from . import lsm  # noqa: F401
    if cfg.process.terminal:
        import termios  # noqa: F401
        from . import terminal  # noqa: F401
