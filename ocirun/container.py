"""`ocirun.Container`: the lifecycle (runtime.md) over the state store, with fork-based stages and no re-exec.

create:  parent ──fork──> stage 1 (joins/creates namespaces; new user ns mapped by the parent)
                            └─fork─> init (pid 1 of a new pid ns): rootfs, pivot_root, process set-up,
                                      reports `ready`, then waits for `start` on --root/ID/start.sock
start:   connects to start.sock; the init runs startContainer hooks, drops privileges and execs;
         `start` sees the connection close at exec (CLOEXEC) or gets the error that stopped it.
Parent and stages talk over a SOCK_SEQPACKET socketpair (protocol.Channel).
"""
import os

from . import config as C
from . import namespaces, protocol, state as St
from . import syscalls as S
from .errors import NotFoundError, OciError, StateError
from .log import trace

SIGKILL = 9
SIGTERM = 15


class Options:
    """create/run flags (runc's)."""

    def __init__(self, root=None, pid_file=None, console_socket=None, no_pivot=False, no_new_keyring=False,
                 preserve_fds=0, systemd_cgroup=False, detach=True, keep=False):
        self.root = root
        self.pid_file = pid_file
        self.console_socket = console_socket
        self.no_pivot = no_pivot
        self.no_new_keyring = no_new_keyring
        self.preserve_fds = preserve_fds
        self.systemd_cgroup = systemd_cgroup
        self.detach = detach
        self.keep = keep


class Container:
    def __init__(self, cid, root=None):
        self.id = cid
        self.store = St.Store(root)

    # ----------------------------------------------------------------------------------------------- queries
    def _record(self):
        st = self.store.read(self.id)
        return st

    def status(self):
        return St.status_of(self.store, self.id, self._record())

    def state(self):
        """The spec state of this container (runc's extra fields included: rootfs, created, owner)."""
        St.validate_id(self.id)
        st = self._record()
        if st is None:
            if os.path.isdir(self.store.dir(self.id)):
                return {"ociVersion": St.SPEC_VERSION, "id": self.id, "pid": 0, "status": "stopped",
                        "bundle": "", "rootfs": "", "created": "", "owner": "", "annotations": {}}
            raise NotFoundError(f"container does not exist: {self.id}")
        status = St.status_of(self.store, self.id, st)
        out = St.spec_state(st, status)
        out["pid"] = st.get("pid", 0) if status != "stopped" else 0
        out["rootfs"] = st.get("rootfs", "")
        out["created"] = st.get("created", "")
        out["owner"] = ""
        return out

    @classmethod
    def list(cls, root=None):
        store = St.Store(root)
        out = []
        for cid in store.ids():
            try:
                out.append(cls(cid, root).state())
            except OciError as e:
                out.append({"ociVersion": St.SPEC_VERSION, "id": cid, "pid": 0, "status": "unknown",
                            "bundle": "", "rootfs": "", "created": "", "owner": "", "error": str(e)})
        return out

    # ----------------------------------------------------------------------------------------------- create
    @classmethod
    def create(cls, cid, bundle, opts=None, log=None):
        opts = opts or Options()
        c = cls(cid, opts.root)
        _Creator(c, bundle, opts, log).run(start=False)
        return c

    @classmethod
    def run(cls, cid, bundle, opts=None, log=None):
        """create + start. Detached: returns 0 once started. Foreground: waits and returns the exit status."""
        opts = opts or Options()
        c = cls(cid, opts.root)
        return _Creator(c, bundle, opts, log).run(start=True)

    # ----------------------------------------------------------------------------------------------- start
    def start(self):
        lock = self.store.open(self.id)
        try:
            st = self._record()
            status = St.status_of(self.store, self.id, st)
            if status != "created":
                raise StateError(f"cannot start a container that is {status}: {self.id}"
                                 if status != "running" else f"cannot start an already running container: {self.id}")
            if _has_no_process(st):
                # runtime.md start: "MUST generate an error if process was not set"; an error leaves the container
                # as it was (created: `kill` and `delete`, or `delete --force`, remove it)
                raise OciError(f"cannot start container {self.id}: its config.json has no process "
                               f"(/process is required by start)")
            sock = os.path.join(self.store.dir(self.id), St.START_SOCK)
            try:
                fd = protocol.connect_unix(sock)
            except OSError as e:
                raise StateError(f"cannot start {self.id}: its init is not listening ({e.strerror})") from None
            chan = protocol.Channel(fd)
            try:
                try:
                    _send_start_and_wait(chan, self.id)
                except OciError:
                    _destroy(self.store, self.id, st, "running")  # continue at step 12
                    raise
            finally:
                chan.close()
                try:
                    os.unlink(sock)
                except FileNotFoundError:
                    pass
            st["status"] = "running"
            self.store.write(self.id, st, recovery=False)  # status only: recover.json (pids, cgroup) is current
            _poststart(st, self.store, self.id)
        finally:
            lock.release()

    # ----------------------------------------------------------------------------------------------- kill
    def kill(self, sig=SIGTERM, all=False):
        lock = self.store.open(self.id)
        try:
            st = self._record()
            status = St.status_of(self.store, self.id, st)
            own_pidns = any(n.get("type") == "pid" and not n.get("path")
                            for n in ((st.get("config") or {}).get("linux") or {}).get("namespaces") or ())
            # runc 1.2+: SIGKILL to a container without a pid namespace of its own kills everything in its cgroup
            # (nothing else takes its other processes with the init), also once the init is gone
            all = all or (sig == 9 and not own_pidns)
            if status not in ("created", "running", "paused"):
                if all:
                    # runc 1.1: --all signals whatever is left in the cgroup, and is not an error when nothing is
                    mgr = _cgroup_from(st)
                    if mgr is not None:
                        try:
                            mgr.signal_all(sig)
                        except (OSError, OciError):
                            pass
                    return
                raise StateError(f"container not running: {self.id} is {status}")
            if all:
                mgr = _cgroup_from(st)
                if mgr is not None:
                    mgr.signal_all(sig)
                    return
            try:
                os.kill(st["pid"], sig)
            except ProcessLookupError:
                raise StateError(f"container not running: {self.id}") from None
        finally:
            lock.release()

    # ----------------------------------------------------------------------------------------------- cgroup verbs
    def _running_with_cgroup(self, verb, allowed=("running", "created", "paused")):
        st = self._record()
        status = St.status_of(self.store, self.id, st)
        if status not in allowed:
            raise StateError(f"cannot {verb} container {self.id}: it is {status}")
        mgr = _cgroup_from(st)
        if mgr is None:
            raise StateError(f"cannot {verb} container {self.id}: it has no cgroup")
        return st, status, mgr

    def pause(self):
        lock = self.store.open(self.id)
        try:
            st, status, mgr = self._running_with_cgroup("pause", ("running", "created"))
            mgr.freeze()
            st["paused"] = True
            self.store.write(self.id, st, recovery=False)
        finally:
            lock.release()

    def resume(self):
        lock = self.store.open(self.id)
        try:
            st, status, mgr = self._running_with_cgroup("resume", ("paused",))
            mgr.thaw()
            st["paused"] = False
            self.store.write(self.id, st, recovery=False)
        finally:
            lock.release()

    def pids(self):
        """Host pids of every process in the container's cgroup."""
        st, status, mgr = self._running_with_cgroup("list processes of", ("running", "created", "paused"))
        return sorted(mgr.pids())

    def update(self, resources):
        """Apply new linux.resources (merged into the recorded config so later commands see them)."""
        lock = self.store.open(self.id)
        try:
            st, status, mgr = self._running_with_cgroup("update", ("running", "created", "paused"))
            mgr.update(resources)
            lin = st["config"].setdefault("linux", {})
            merged = dict(lin.get("resources") or {})
            for k, v in resources.items():
                if isinstance(v, dict) and isinstance(merged.get(k), dict):
                    merged[k] = dict(merged[k], **v)
                else:
                    merged[k] = v
            lin["resources"] = merged
            st["cgroup"] = mgr.to_dict()
            self.store.write(self.id, st)
        finally:
            lock.release()

    def stats(self):
        st, status, mgr = self._running_with_cgroup("get statistics of", ("running", "created", "paused"))
        return mgr.stats()

    # ----------------------------------------------------------------------------------------------- delete
    def delete(self, force=False):
        try:
            lock = self.store.open(self.id)
        except NotFoundError:
            if force:  # runc: delete --force of a container that is already gone succeeds silently
                return
            raise
        try:
            try:
                st = self._record()
            except StateError:
                if not force:
                    raise
                st = self.store.read_recovery(self.id)  # state.json damaged: pids and cgroup from recover.json
            status = St.status_of(self.store, self.id, st) if st is not None else "stopped"
            if status != "stopped" and not force:
                raise StateError(f"cannot delete container {self.id} that is not stopped: {status}")
            _destroy(self.store, self.id, st, status)
        finally:
            lock.release()


def _mounts_under(rootfs):
    """Mounts at or below `rootfs` in our mount namespace, as "ID PATH" (the mount id tells a mount made over
    one that was there before)."""
    from .cgroups.common import _unescape

    top = rootfs.rstrip("/")
    prefix = top + "/"
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            mp = _unescape(parts[4])
            if mp == top or mp.startswith(prefix):
                out.append(f"{parts[0]} {mp}")
    return out


def _umount_host_mounts(rootfs, before):
    """A container without a mount namespace made its mounts in the host's, at or below its rootfs: remove
    those (the deepest first, detached), leaving any that were there before create."""
    if not rootfs:
        return
    keep = set(before)
    left = []
    made = [m.split(" ", 1) for m in set(_mounts_under(rootfs)) - keep]
    for _, mp in sorted(made, key=lambda m: (m[1].count("/"), int(m[0])), reverse=True):
        try:
            S.SYS.umount2(mp, S.MNT_DETACH)
        except OSError as e:
            if e.errno != 22:  # EINVAL: already gone with its parent
                left.append(f"{mp} ({os.strerror(e.errno)})")
    if left:
        raise OciError("cannot unmount the container's mounts on the host: " + ", ".join(left))


def _has_no_process(st):
    return bool(st.get("no_process")) or (st.get("config") or {}).get("process") is None


def _cgroup_from(st):
    d = (st or {}).get("cgroup")
    if not d:
        return None
    from . import cgroups

    mgr = cgroups.manager_from_dict(d)
    # directories create was about to make when it was interrupted (recorded before the mkdir): ours too
    mgr.created = list(mgr.created) + [x for x in (st.get("cgroup_pending") or ()) if x not in mgr.created]
    return mgr


def _kill_wait(pid, start_time, timeout=5.0):
    """SIGKILL a process that is not our child and wait until it is gone (or a zombie)."""
    import time

    try:
        os.kill(pid, SIGKILL)
    except ProcessLookupError:
        return
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        t = St.proc_start_time(pid)
        if t is None or (start_time is not None and t != start_time):
            return
        time.sleep(0.002)


def _destroy(store, cid, st, status):
    """Remove everything the container owns: its processes, cgroups, state; then poststop hooks."""
    errors = []
    if st is not None:
        # The init and (for a create that was killed) stage 1: signalled only if still the same process.
        for key, tkey in (("pid", "init_start_time"), ("stage1", "stage1_start_time")):
            pid = st.get(key) or 0
            if pid > 0 and st.get(tkey) is not None and St.proc_start_time(pid) == st.get(tkey):
                _kill_wait(pid, st.get(tkey))
        try:
            mgr = _cgroup_from(st)
            if mgr is not None:
                mgr.destroy()
        except Exception as e:  # keep going: the state must still go
            errors.append(f"cgroup: {e}")
    if st is not None and st.get("host_mnt_ns"):
        try:
            _umount_host_mounts(st.get("rootfs") or "", st.get("host_mounts_before") or ())
        except OciError as e:
            errors.append(str(e))
    poststop = None
    if st is not None and st.get("config", {}).get("hooks", {}).get("poststop"):
        poststop = st
    store.remove(cid)
    if poststop is not None:
        from . import hooks

        cfg = C.parse(poststop["config"])
        hooks.run_hooks("poststop", cfg.hooks.poststop, _hook_state(poststop, "stopped"), keep_going=True)
    if errors:
        raise OciError(f"container {cid} deleted, but: " + "; ".join(errors))


def _warn(msg):
    from . import log

    log.warning(msg)


def _hook_state(st, status):
    """The state a hook reads on stdin: as `ocirun state` shows it, without `pid` once stopped and without
    empty `annotations` (state-schema: both optional there; runc writes neither)."""
    out = {"ociVersion": St.SPEC_VERSION, "id": st["id"], "status": status}
    if status != "stopped":
        out["pid"] = st.get("pid", 0)
    out["bundle"] = st.get("bundle", "")
    if st.get("annotations"):
        out["annotations"] = st["annotations"]
    return out


def _poststart(st, store, cid):
    """runtime.md: if a poststart hook fails, the runtime MUST generate an error, stop the container and
    continue the lifecycle at step 12 (destroy, then poststop hooks)."""
    cfgd = st.get("config") or {}
    if (cfgd.get("hooks") or {}).get("poststart"):
        from . import hooks

        cfg = C.parse(cfgd)
        try:
            hooks.run_hooks("poststart", cfg.hooks.poststart, _hook_state(st, "running"))
        except OciError as e:
            _destroy(store, cid, st, "running")
            raise OciError(f"container {cid} stopped: {e}") from None


def _send_start_and_wait(chan, cid):
    chan.send("start")
    _wait_started(chan, cid)


def _wait_started(chan, cid):
    while True:
        m = chan.recv()
        if m is None:
            return  # the connection closed at exec: started
        if m.get("t") == "error":
            raise OciError(f"cannot start container {cid}: {m.get('msg')}")


# ------------------------------------------------------------------------------------------------- parent side
class _Creator:
    def __init__(self, container, bundle, opts, log):
        self.c = container
        self.store = container.store
        self.bundle = os.path.abspath(bundle or ".")
        self.opts = opts
        self.log = log
        self.init_pid = None
        self.init_start = None
        self.stage1 = None
        self.mgr = None
        self.lock = None
        self.console_fd = None
        self.pty_master = None
        self.idmap_fds = {}
        self.idmap_specs = {}
        self.sfilter = None
        self.listen_fd = None
        self.own_dir = False  # the state dir is ours to remove (not an existing container's)

    def load(self, start=False):
        cid = self.c.id
        St.validate_id(cid)
        cfg = C.load(os.path.join(self.bundle, "config.json"))
        self.no_process = cfg.process is None
        if self.no_process:
            # config.md: `process` is OPTIONAL, "REQUIRED when start is called"; runtime.md: start "MUST generate
            # an error if process was not set". So create builds the container without one (the init waits as
            # for any create) and start refuses it. runc refuses the create instead (an intended difference).
            if start:
                raise OciError("config.json: /process: no process to run (required by start; create accepts it)")
            # the init's set-up (cwd, oom score, affinity) reads these neutral values; nothing is executed
            cfg.process = C.parse({"ociVersion": St.SPEC_VERSION, "process": {"cwd": "/", "args": []}}).process
        if cfg.root is None:
            raise OciError("config.json: /root: a root filesystem is required on Linux")
        rootfs_path = cfg.root.path
        if not os.path.isabs(rootfs_path):
            rootfs_path = os.path.join(self.bundle, rootfs_path)
        rootfs_path = os.path.realpath(rootfs_path)
        if not os.path.isdir(rootfs_path):
            raise OciError(f"config.json: /root/path: rootfs {rootfs_path} does not exist or is not a directory")
        self.rootfs = rootfs_path
        self.cfg = cfg
        lin = cfg.linux or C.Linux()
        self.plan = namespaces.Plan(lin)
        present = {n.type for n in lin.namespaces}
        if cfg.hostname and "uts" not in present:
            raise OciError("config.json: /hostname: setting the hostname needs a uts namespace")
        if cfg.domainname and "uts" not in present:
            raise OciError("config.json: /domainname: setting the domainname needs a uts namespace")
        if lin.intel_rdt is not None and not _resctrl_mounted():
            raise OciError("config.json: /linux/intelRdt: resctrl is not mounted on this host (/sys/fs/resctrl)")
        # config-linux.md: a namespace type that is not listed MUST be inherited from the runtime. Without a
        # mount namespace the container's mounts are made in ours (the host's) under the rootfs and the process
        # is chrooted there, as runc does; delete unmounts them again (runc leaves them on the host).
        self.host_mnt = "mount" not in present
        if self.host_mnt:
            self._check_host_mount_ns(cfg, lin)
        from . import capabilities, process

        if cfg.process.apparmor_profile or cfg.process.selinux_label or lin.mount_label:
            from . import lsm

            lsm.check(cfg.process, cfg.linux)
        self.caps = capabilities.resolve(cfg.process.capabilities)
        capabilities.drop_unavailable(self.caps)
        capabilities.check_sets(self.caps)
        for w in self.caps.warnings:
            _warn(w)
        process.check_rlimits(cfg.process.rlimits)
        process.check_scheduling(cfg.process, lin)
        if lin.net_devices and "network" not in self.plan.new:
            raise OciError("config.json: /linux/netDevices: moving network devices needs a new network namespace")
        if self.plan.in_user:
            u = cfg.process.user
            if self.plan.new_user and not namespaces.maps_contain(self.plan.uid_mappings, u.uid):
                raise OciError(f"config.json: /process/user/uid: {u.uid} is not mapped in linux.uidMappings")
            if self.plan.new_user and not namespaces.maps_contain(self.plan.gid_mappings, u.gid):
                raise OciError(f"config.json: /process/user/gid: {u.gid} is not mapped in linux.gidMappings")
        self._socket_activation()
        self._notify_socket()
        if cfg.process.terminal and not self.opts.console_socket and cfg.process.console_size is None:
            try:  # foreground -t: the container's pty starts with our terminal's size
                if os.isatty(0):
                    from . import terminal

                    cfg.process.console_size = terminal.get_winsize(0)
            except OSError:
                pass
        if cfg.process.terminal and not self.opts.console_socket and self.opts.detach:
            raise OciError("cannot allocate tty if ocirun will detach without setting console socket")
        if not cfg.process.terminal and self.opts.console_socket:
            raise OciError("cannot use console socket if ocirun will not allocate tty")

    def _check_host_mount_ns(self, cfg, lin):
        """What needs a mount namespace of the container's own: refused (one line) when there is none."""
        why = "needs a mount namespace of the container's own (none is listed in /linux/namespaces)"
        if lin.masked_paths:  # runc: "unable to restrict sys entries without a private MNT namespace"
            raise OciError(f"config.json: /linux/maskedPaths: {why}")
        if lin.readonly_paths:
            raise OciError(f"config.json: /linux/readonlyPaths: {why}")
        # runc would apply it to the host's own mounts. (root.readonly is honoured on a bind of the rootfs onto
        # itself, made here and removed by delete; runc ignores it without a mount namespace.)
        if lin.rootfs_propagation:
            raise OciError(f"config.json: /linux/rootfsPropagation: {why}")
        if self.opts.no_pivot:
            raise OciError(f"--no-pivot: {why}")
        self.host_mounts_before = sorted(_mounts_under(self.rootfs))

    def _socket_activation(self):
        """systemd socket activation, as runc: LISTEN_FDS meant for us are passed on as fds 3.. of the
        container's process (before the --preserve-fds ones), with LISTEN_FDS=N and LISTEN_PID=1."""
        try:
            n = int(os.environ.get("LISTEN_FDS", "0"))
            mine = int(os.environ.get("LISTEN_PID", "0")) == os.getpid()
        except ValueError:
            return
        if n > 0 and mine:
            self.opts.preserve_fds += n
            self.cfg.process.env = [e for e in self.cfg.process.env
                                    if not e.startswith(("LISTEN_FDS=", "LISTEN_PID="))]
            self.cfg.process.env += [f"LISTEN_FDS={n}", "LISTEN_PID=1"]

    def _notify_socket(self):
        """sd_notify containers: the NOTIFY_SOCKET ocirun was given is bind-mounted into the container at
        /run/notify/notify.sock and named in its environment (abstract sockets cannot be passed this way)."""
        path = os.environ.get("NOTIFY_SOCKET")
        if not path or path.startswith("@"):
            return
        import stat

        try:
            if not stat.S_ISSOCK(os.stat(path).st_mode):
                return
        except OSError:
            return
        dest = "/run/notify/notify.sock"
        self.cfg.mounts.append(C.Mount(destination=dest, type="bind", source=path, options=["bind", "nosuid", "nodev"]))
        self.cfg.process.env = [e for e in self.cfg.process.env if not e.startswith("NOTIFY_SOCKET=")]
        self.cfg.process.env.append(f"NOTIFY_SOCKET={dest}")

    def run(self, start):
        trace("parent: begin")
        from . import cgroups

        if not self.opts.systemd_cgroup:
            cgroups.prime_once()  # (done already when the CLI runs us)
        self.load(start)
        trace("parent: config loaded")
        fg = start and not self.opts.detach
        if self.opts.console_socket:
            try:
                self.console_fd = protocol.connect_unix(self.opts.console_socket)
            except OSError as e:
                raise OciError(f"--console-socket {self.opts.console_socket}: {e.strerror}") from None
        self.lock = None  # the state dir is made (and locked) by _create, once stage 1 is on its way
        try:
            try:
                self._create(start, fg)
            except BaseException:
                self._cleanup()
                raise
        finally:
            if self.lock is not None:
                self.lock.release()
            if self.console_fd is not None:
                os.close(self.console_fd)
        if start and fg:
            return self._wait_foreground()
        return 0

    def _record(self, status):
        cfg = self.cfg
        return {"id": self.c.id, "status": status, "pid": self.init_pid or 0, "init_start_time": self.init_start,
                "stage1": self.stage1 or 0, "stage1_start_time": getattr(self, "stage1_start", None),
                "bundle": self.bundle, "rootfs": self.rootfs, "created": self.created,
                "annotations": cfg.annotations, "config": cfg.raw,
                "cgroup": self.mgr.to_dict() if self.mgr is not None else None,
                "cgroup_pending": getattr(self, "cgroup_pending", None),
                "no_new_keyring": bool(self.opts.no_new_keyring), "no_process": bool(self.no_process),
                "host_mnt_ns": bool(self.host_mnt),
                "host_mounts_before": getattr(self, "host_mounts_before", None)}

    def _create(self, start, fg):
        cfg = self.cfg
        self.created = St.now_rfc3339()
        lin = cfg.linux or C.Linux()
        from . import cgroups

        cgroups.check_driver(self.opts.systemd_cgroup)
        self.sfilter = None  # linux.seccomp is compiled (or taken from the cache) by stage 1: _child_main
        self.idmap_specs = self._idmap_mounts()
        self.listen_fd = None
        if fg:  # before the fork: stage 1 exits once the init is forked, leaving it to its nearest subreaper
            S.set_child_subreaper()
        pchan, cchan = protocol.Channel.pair()
        self.chan = pchan
        # foreground without a terminal: the process gets pipes that ocirun copies to and from its own stdio
        # (runc's setupIO), owned by the container's root, not the caller's files themselves
        self.stdio = _stdio_pipes(self.plan) if fg and not cfg.process.terminal and not self.no_process else None
        join_fds = self.plan.open_join_fds()
        # Stage 1 is forked as early as it can be: from here the two processes work side by side (2 cores):
        # stage 1 imports what the stages need and builds the namespaces and the rootfs, the parent makes the
        # state dir, the record and the cgroups. Nothing on the host exists yet: if the parent fails or dies
        # before the record is written, the stages see the channel's EOF and exit, taking their namespaces
        # and mounts with them.
        parent = os.getpid()
        try:
            pid = os.fork()
            if pid == 0:  # ---- stage 1
                # stage 1 dies with the parent (an init it forks does not inherit this): a create killed before
                # it recorded stage 1 leaves nothing running, even a stage stopped where it cannot see the EOF
                S.SYS.prctl(S.PR_SET_PDEATHSIG, 9)
                if os.getppid() != parent:
                    os._exit(1)
                pchan.close()
                if self.stdio is not None:
                    theirs, ours = self.stdio
                    for i, fd in enumerate(theirs):
                        os.dup2(fd, i)
                    for fd in theirs + ours:
                        os.close(fd)
                # nothing of the caller's but stdio and the --preserve-fds ones goes on into the container, not
                # even until exec (runc's created init holds none: CVE-2024-21626 class)
                keep = {cchan.fd, *(fd for _, _, fd in join_fds)}
                if self.console_fd is not None:
                    keep.add(self.console_fd)
                from . import process as _process

                _process.close_inherited(keep, self.opts.preserve_fds)
                _child_main(self, cchan, join_fds, start)
                os._exit(0)  # not reached
        finally:
            for _, _, fd in join_fds:
                os.close(fd)
        self.stage1 = pid
        self.stage1_start = St.proc_start_time(pid)
        trace("parent: forked")
        cchan.close()
        if self.stdio is not None:
            for fd in self.stdio[0]:
                os.close(fd)
            self.stdio = self.stdio[1]
        # the cgroup manager (its modules, /proc/self/cgroup, mountinfo) is built while stage 1 starts
        self.mgr = cgroups.new_manager(self.c.id, lin.cgroups_path, systemd=self.opts.systemd_cgroup,
                                       own_text=cgroups.read_own())
        self.lock = self.store.new(self.c.id)  # an existing id fails here: _cleanup then leaves its dir alone
        self.own_dir = True
        self.cgroup_pending = self.mgr.to_create()
        # The record (stage 1 and the cgroup paths) exists before any cgroup is made: nothing leaks untracked.
        # (recover.json, the copy of pids and cgroups for a damaged state.json, is written once they are known.)
        self.store.write(self.c.id, self._record("creating"), recovery=False)
        if not start:  # bound here (the state dir is root's, 0700); the init gets it with "placed"
            self.listen_fd = protocol.listen_unix(os.path.join(self.store.dir(self.c.id), St.START_SOCK))
        # The cgroups are made while stage 1 and the init build namespaces and mounts: the init waits for
        # "placed" before it needs its cgroup. If this fails, closing the channel makes the init exit.
        self.mgr.create()
        # the record learns which directories were made (delete --force removes those, and only those)
        self.store.write(self.c.id, self._record("creating"), recovery=False)
        if self.mgr.is_frozen():
            # the init placed there would stop in the freezer and create would wait for it forever (runc:
            # "container's cgroup unexpectedly frozen")
            raise OciError("linux.cgroupsPath: container's cgroup unexpectedly frozen (freezer.state FROZEN or "
                           "cgroup.freeze 1): thaw it or choose another path")
        busy = self.mgr.pids()
        if busy:
            # e.g. the cgroup of an orphaned container whose state was lost: never share it (as runc 1.2)
            raise OciError(f"linux.cgroupsPath: the container's cgroup already has {len(busy)} process(es) "
                           f"(pid {busy[0]}); refusing to share it")
        trace("parent: cgroups made")
        self._converse(start)

    def _idmap_mounts(self):
        """Idmapped mounts, checked before the fork: {mount index: (uidMappings, gidMappings, ridmap)}, the
        mappings None where the mount takes the container's own user namespace (the mount names none: runc's
        implied mapping, also of a joined user namespace). The trees are made when the init reaches the mount
        (_idmapped_source), so a source under the rootfs sees the container's earlier mounts, as in runc."""
        out = {}
        lin = self.cfg.linux or C.Linux()
        for i, m in enumerate(self.cfg.mounts):
            ext = {"idmap", "ridmap"} & set(m.options or ())
            if not (m.uid_mappings or m.gid_mappings or ext):
                continue
            from . import rootfs  # (only here: the parent does not need it otherwise)

            where = f"mounts[{i}] {m.destination}"
            if not rootfs.MountOpts(m.options).is_bind and m.type not in ("bind", None):
                raise OciError(f"{where}: ID mappings are only supported on bind mounts")
            if m.uid_mappings or m.gid_mappings:
                if not (m.uid_mappings and m.gid_mappings):
                    raise OciError(f"{where}: an idmapped mount needs both uidMappings and gidMappings")
                maps = (m.uid_mappings, m.gid_mappings)
            elif self.plan.new_user or self.plan.in_user:
                maps = (None, None)
            else:
                raise OciError(f"{where}: an idmapped mount needs uidMappings and gidMappings on the mount "
                               f"or a user namespace")
            src = m.source or ""
            if not os.path.isabs(src):
                src = os.path.join(self.bundle, src)
            inside = os.path.realpath(src).startswith(os.path.realpath(self.rootfs).rstrip("/") + "/")
            if not inside and not os.path.exists(src):  # (one inside may come from an earlier mount)
                raise OciError(f"{where}: source {m.source} does not exist")
            out[i] = (*maps, "ridmap" in (m.options or ()))
        return out

    def _idmapped_source(self, index, path, recursive):
        """(fd, None) of the idmapped detached clone of mount `index`'s source, as the init's mount namespace
        sees it now; (None, message) if it cannot be made."""
        uids, gids, ridmap = self.idmap_specs[index]
        where = f"mounts[{index}] {self.cfg.mounts[index].destination}"
        try:
            if uids is not None:
                userns = namespaces.userns_fd(uids, gids)
            else:
                userns = os.open(f"/proc/{self.init_pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        except (OciError, OSError) as e:
            return None, f"{where}: {e.strerror if isinstance(e, OSError) else e}"
        try:
            # the submounts are cloned for rbind; they are mapped too only with ridmap (runc)
            return _open_source_in(self.init_pid, path, recursive, idmap=(userns, ridmap, where))
        finally:
            os.close(userns)

    def _converse(self, start):
        chan = self.chan
        # foreground run -t without --console-socket: the init sends us the pty master to proxy
        want_pty = self.cfg.process.terminal and not self.opts.console_socket
        applied = False
        from . import cgroups

        while True:
            try:
                if want_pty:
                    m, fd = chan.recv_fd()
                    if fd is not None:
                        self.pty_master = fd
                        continue
                else:
                    m = chan.recv()
            except protocol.ProtocolError as e:
                raise OciError(str(e)) from None
            except (ConnectionResetError, BrokenPipeError):
                m = None
            if m is None:
                raise OciError(self._died_msg())
            t = m.get("t")
            if t == "userns":
                namespaces.write_id_mappings(m["pid"], self.plan)
                _send_or_read_error(chan, "mapped")
            elif t == "mountsrc":
                if m.get("idmap") is not None:
                    tree, err = self._idmapped_source(int(m["idmap"]), m.get("path", ""), bool(m.get("rec")))
                else:
                    tree, err = _open_source_in(self.init_pid, m.get("path", ""), bool(m.get("rec")))
                try:
                    if tree is None:
                        chan.send("mountsrc", err=err)
                    else:
                        chan.send_fd(tree, "mountsrc")
                except (BrokenPipeError, ConnectionResetError):
                    raise OciError(self._died_msg()) from None
                finally:
                    if tree is not None:
                        os.close(tree)
            elif t == "pid":
                self.init_pid = m["pid"]
                self.init_start = St.proc_start_time(self.init_pid)
                # Placing a process in a v1 cgroup waits for an RCU grace period (1-12 ms here): do it from
                # the parent while the init sets up its rootfs; the init waits for "placed" only when it
                # needs its cgroup (cgroup namespace, cgroup mounts, pivot_root). Placement comes first (the
                # init is waiting); the record follows while the init finishes its rootfs.
                trace("parent: got pid")
                # The record knows stage 1, the init and the cgroups before anything else happens: a create
                # killed from here on is cleaned up fully by delete --force, even with the init stopped where it
                # cannot see the channel's EOF (the reliability suite's fault hooks).
                self.store.write(self.c.id, self._record("creating"))
                chan.send("recorded")  # the init starts only now: nothing of the container runs untracked
                if (self.cfg.linux or C.Linux()).net_devices:
                    _move_net_devices(self.cfg.linux.net_devices, self.init_pid)
                if self.mgr is not None:
                    self.mgr.add_pid(self.init_pid)
                    from . import process as _process

                    _process.reset_affinity(self.init_pid, self.mgr)
                _send_or_read_error(chan, "placed", fd=self.listen_fd, pid=self.init_pid,
                                    cgroup_plan=_cgroup_plan(self.mgr))
                if self.listen_fd is not None:
                    os.close(self.listen_fd)
                    self.listen_fd = None
                trace("parent: init placed")
                if self.mgr is not None:
                    cgroups.preload_resources()  # while the init builds its rootfs
            elif t in ("rootfs", "hooks", "ready"):
                if not applied:
                    # Limits and device rules once the rootfs (and its device nodes) is built, before any hook
                    # runs: runc's order (it sets them when its init reports "hooks", or "ready" without
                    # hooks). Without hooks the init reports "rootfs" and goes on (pivot_root, masked paths)
                    # while we set them.
                    applied = True
                    if self.mgr is not None:
                        self.mgr.apply((self.cfg.linux or C.Linux()).resources)
                    trace("parent: cgroup ready")
                if t == "ready":
                    trace("parent: ready")
                    break
                if t == "hooks":
                    self._run_create_hooks(chan)
                else:  # "rootfs": the init waits for this before opening devices or setting its process up
                    _send_or_read_error(chan, "applied")
            elif t == "error":
                raise OciError(m.get("msg", "container init failed"))
            else:
                raise OciError(f"internal error: unexpected message {t!r} from the container init")
        if self.stage1 != self.init_pid:
            _reap(self.stage1)
        self.stage1 = None
        if not start:  # (run goes on to "running" at once: one state write less)
            self.store.write(self.c.id, self._record("created"), recovery=False)
        if self.opts.pid_file:
            _write_pid_file(self.opts.pid_file, self.init_pid)
        if start:
            chan.send("start")
            # recorded while the init execs (if the exec fails, the error below removes the container)
            st = self._record("running")
            self.store.write(self.c.id, st, recovery=False)
            _wait_started(chan, self.c.id)
            _poststart(st, self.store, self.c.id)
        chan.close()

    def _run_create_hooks(self, chan):
        from . import hooks

        # runtime.md: these hooks are lifecycle steps 3-4, "after step 2", the state the spec calls "created"
        # (crun's too; runtime-tools' hooks_stdin checks it; runc 1.1 passes "creating")
        st = _hook_state(self._record("creating"), "created")
        try:
            hooks.run_hooks("prestart", self.cfg.hooks.prestart, st)
            hooks.run_hooks("createRuntime", self.cfg.hooks.create_runtime, st)
        except OciError as e:
            chan.send("abort")
            raise OciError(str(e)) from None
        _send_or_read_error(chan, "go")

    def _died_msg(self):
        if self.stage1:
            pid, status = _reap(self.stage1, nohang=False)
            self.stage1 = None
            if status is not None and os.WIFSIGNALED(status):
                return f"container init (stage 1) was killed by signal {os.WTERMSIG(status)} during create"
        if self.init_pid and St.proc_start_time(self.init_pid) is None:
            return "container init died during create (killed, or exited without reporting an error)"
        return "container init exited during create without reporting an error"

    def _cleanup(self):
        chan = getattr(self, "chan", None)
        if chan is not None:
            chan.close()  # an init still waiting for "placed" sees EOF and exits
        if self.init_pid:
            _kill_wait(self.init_pid, self.init_start)
        if self.stage1:
            try:
                os.kill(self.stage1, SIGKILL)
            except ProcessLookupError:
                pass
            _reap(self.stage1)
        if self.init_pid and not self.opts.detach:
            _reap(self.init_pid)
        if getattr(self, "host_mnt", False):  # the init's mounts in the host's namespace
            try:
                _umount_host_mounts(self.rootfs, self.host_mounts_before)
            except OciError as e:
                _warn(f"cleanup: {e}")
        if self.mgr is not None:
            try:
                self.mgr.destroy()
            except Exception as e:
                _warn(f"cleanup: cgroup: {e}")
        if self.listen_fd is not None:
            os.close(self.listen_fd)
            self.listen_fd = None
        if self.own_dir:
            self.store.remove(self.c.id)
        if getattr(self, "cfg", None) is not None and self.cfg.hooks.poststop and self.init_pid:
            from . import hooks  # create failed after the container existed: lifecycle steps 12-13

            hooks.run_hooks("poststop", self.cfg.hooks.poststop, _hook_state(self._record("stopped"), "stopped"),
                            keep_going=True)

    def _wait_foreground(self):
        """Foreground run: forward signals to the init, wait for it, delete the container, return its status."""
        from . import process

        pid = self.init_pid
        trace("parent: waiting")
        code = process.wait_forwarding(pid, self.pty_master, lambda: St.proc_start_time(pid) is not None,
                                       stdio=self.stdio)
        self.pty_master = None
        trace("parent: exited")
        if not self.opts.keep:
            lock = self.store.open(self.c.id)
            try:
                _destroy(self.store, self.c.id, self.store.read(self.c.id), "stopped")
            finally:
                lock.release()
        trace("parent: deleted")
        return code


def _open_source_in(pid, path, recursive, idmap=None):
    """(fd, None) of a detached clone (open_tree) of `path` as seen in the mount namespace of `pid`, opened with
    the runtime's own privileges by a helper that joins that namespace; (None, message) if it cannot be.
    idmap=(user namespace fd, ridmap, where): the clone is idmapped to that namespace's mapping."""
    pchan, cchan = protocol.Channel.pair()
    helper = os.fork()
    if helper == 0:
        try:
            pchan.close()
            nsfd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
            S.SYS.setns(nsfd, S.CLONE_NEWNS)
            if idmap is not None:
                from . import rootfs

                tree = rootfs.make_idmapped_tree(S.SYS, path, idmap[0], recursive, idmap[1], idmap[2])
            else:
                flags = S.OPEN_TREE_CLONE | S.OPEN_TREE_CLOEXEC | (S.AT_RECURSIVE if recursive else 0)
                tree = S.SYS.open_tree(S.AT_FDCWD, path, flags)
            cchan.send_fd(tree, "tree")
            os._exit(0)
        except BaseException as e:
            try:
                if isinstance(e, OciError):
                    why = str(e)
                else:
                    why = "source " + path + ": " + (os.strerror(e.errno) if isinstance(e, OSError) and e.errno
                                                     else str(e))
                cchan.send("tree", err=why)
            finally:
                os._exit(1)
    cchan.close()
    try:
        m, fd = pchan.recv_fd()
    finally:
        pchan.close()
        try:
            os.waitpid(helper, 0)
        except ChildProcessError:
            pass
    if fd is None:
        return None, (m or {}).get("err") or f"source {path}: the helper died"
    return fd, None


def _stdio_pipes(plan):
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
            except OSError:
                pass
    for fd in (w0, r1, r2):
        os.set_inheritable(fd, False)
    return [r0, w1, w2], [w0, r1, r2]


def _send_or_read_error(chan, t, fd=None, **fields):
    """Send to the stages (with `fd` if given); if they are already gone (EPIPE), their error message is
    what to report."""
    try:
        if fd is not None:
            chan.send_fd(fd, t, **fields)
        else:
            chan.send(t, **fields)
    except (BrokenPipeError, ConnectionResetError):
        while True:
            try:
                m = chan.recv()
            except (BrokenPipeError, ConnectionResetError):
                m = None
            if m is None:
                raise OciError("container init exited during create without reporting an error") from None
            if m.get("t") == "error":
                raise OciError(m.get("msg", "container init failed")) from None


def _reap(pid, nohang=False):
    try:
        return os.waitpid(pid, os.WNOHANG if nohang else 0)
    except ChildProcessError:
        return pid, None


def _write_pid_file(path, pid):
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path))
    try:
        with open(tmp, "w") as f:
            f.write(str(pid))
        os.rename(tmp, path)
    except OSError as e:
        raise OciError(f"--pid-file {path}: {e.strerror}") from None


# ------------------------------------------------------------------------------------------------- child side
def _child_main(cr, chan, join_fds, start):
    """Stage 1, then (after the second fork, if any) the init. Never returns."""
    try:
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
        init_pid = _stage1(cr, chan, join_fds)
        if init_pid:
            chan.send("pid", pid=init_pid)
            os._exit(0)
        _init(cr, chan, start)
    except BaseException as e:
        msg = str(e) if isinstance(e, OciError) else _internal(e)
        try:
            (getattr(cr, "err_chan", None) or chan).send("error", msg=msg)
        except OSError:
            pass
        os._exit(1)
    os._exit(1)


def _internal(e):
    if isinstance(e, OSError) and e.strerror:
        where = f" {e.filename}" if e.filename else ""
        return f"{type(e).__name__}:{where} {e.strerror}"
    return f"internal error: {type(e).__name__}: {e}"


def _stage1(cr, chan, join_fds):
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


_CATCH = (1, 2, 3, 10, 12, 14, 15)


def _die_on_signal(sig, frame):
    os._exit(128 + sig)


def _init(cr, chan, start):
    """The container's init until exec: everything config.json asks for, in runc's order."""
    import _signal

    sys = S.SYS
    cfg = cr.cfg
    proc = cfg.process
    lin = cfg.linux or C.Linux()
    chan.expect("recorded")  # the parent's record names us: from here on delete --force finds us
    trace("init: begin")
    os.setsid()
    # As pid 1 of a pid namespace, a signal from outside reaches us only if we handle it.
    for sig in _CATCH:
        _signal.signal(sig, _die_on_signal)
    # an empty name is not set (the new UTS namespace keeps the one it started with), as runc
    if cfg.hostname and "uts" in {n.type for n in lin.namespaces}:
        sys.sethostname(cfg.hostname)
    if cfg.domainname:
        sys.setdomainname(cfg.domainname)
    from . import devices, process, rootfs

    process.set_oom_score_adj(proc.oom_score_adj)
    if not cr.host_mnt:  # (in the host's mount namespace: nothing of the host's mounts is changed)
        rootfs.prepare_root(sys, cr.rootfs, lin.rootfs_propagation)
    elif cfg.root.readonly:  # a mount of its own to make read-only (delete removes it with the others)
        rootfs.bind_rootfs(sys, cr.rootfs)
    root = rootfs.Root(cr.rootfs, sys)
    ctx = rootfs.MountContext(cr.bundle, None, in_userns=cr.plan.in_user,
                              new_netns="network" in cr.plan.new, mount_label=lin.mount_label)
    ctx.cgroup_ns = "cgroup" in cr.plan.new
    if cr.plan.in_user:
        def open_source(path, recursive, where):
            ensure_placed()  # (the parent's "placed" comes first on the channel)
            chan.send("mountsrc", path=path, rec=recursive)
            m, fd = chan.expect_fd("mountsrc")
            if fd is None:
                raise OciError(f"{where}: {m.get('err') or 'the runtime could not open the source'}")
            return fd
        ctx.open_source = open_source
    if cr.idmap_specs:
        def open_idmapped(index, path, recursive, where):
            ensure_placed()
            chan.send("mountsrc", path=path, rec=recursive, idmap=index)
            m, fd = chan.expect_fd("mountsrc")
            if fd is None:
                err = m.get("err") or "the runtime could not make the idmapped mount"
                raise OciError(err if err.startswith(where) else f"{where}: {err}")
            return fd
        ctx.open_idmapped = open_idmapped
        ctx.idmapped = set(cr.idmap_specs)
    placed = []

    def ensure_placed():
        if not placed:
            m, fd = chan.expect_fd("placed")
            cr.init_pid = m.get("pid")
            plan = m.get("cgroup_plan")  # (version, [(name, host dir)]): what cgroup mounts bind
            ctx.cgroup_plan = (plan[0], [tuple(x) for x in plan[1]]) if plan else None
            if fd is not None:
                cr.listen_fd = fd  # `create`: the start.sock the parent bound, to wait on once ready
            process.set_cpu_affinity(proc, "initial")
            if "network" in cr.plan.new:
                # a new network namespace gets lo up (as runc), and netDevices (moved in by the parent) up
                namespaces.link_up(["lo"] + [(v or {}).get("name") or k for k, v in (lin.net_devices or {}).items()])
            if "cgroup" in cr.plan.new:
                sys.unshare(S.CLONE_NEWCGROUP)
            placed.append(True)
            trace("init: placed")

    ctx.ensure_placed = ensure_placed
    ctx.idmap_fds = cr.idmap_fds
    for i, m in enumerate(cfg.mounts):
        rootfs.mount_one(root, m, i, ctx)
    if devices.needs_dev_setup(cfg.mounts):
        devices.create_devices(root, lin.devices, cr.plan.in_user)
        devices.create_symlinks(root)
    # else /dev is a bind mount of a host directory: nothing is made, changed or removed in it, linux.devices
    # included (runc the same): those are the host's own nodes (chmod, chown or unlink there acts on the host)
    try:
        os.close(root.mkdir_all(proc.cwd or "/"))
    except OciError as e:
        raise OciError(f"process.cwd: {e}") from None
    root.close()
    trace("init: mounts done")
    ensure_placed()
    h = cfg.hooks
    applied_pending = not (h.prestart or h.create_runtime or h.create_container)
    if applied_pending:
        # devices made: the parent sets limits and device rules while we pivot and mask paths; we wait for
        # "applied" before opening any device (a v1 device rule update denies all for a moment) and before
        # the process settings that limits govern (e.g. realtime scheduling needs cpu.rt_runtime_us)
        chan.send("rootfs")
    else:  # hooks run once the limits are set (and the parent runs prestart/createRuntime hooks now)
        trace("init: runtime hooks")
        chan.send("hooks")
        m = chan.recv()
        if not m or m.get("t") != "go":
            os._exit(1)
    if h.create_container:
        from . import hooks

        trace("init: createContainer hooks")
        hooks.run_hooks("createContainer", h.create_container, _hook_state(cr._record("creating"), "created"),
                        default_env=proc.env if proc is not None else (), cwd=cr.rootfs)
    sfilter = cr.sfilter  # compiled by stage 1 (see _child_main), loaded last
    listen_fd = cr.listen_fd  # bound by the parent: the state dir is root's (0700), the init may not be
    trace("init: hooks done")
    if cr.host_mnt:  # no mount namespace of its own: pivot_root would move the host's root; chroot as runc
        os.chdir(cr.rootfs)
        sys.chroot(".")
        os.chdir("/")
    else:
        rootfs.pivot(sys, cr.rootfs, cr.opts.no_pivot)
        rootfs.apply_root_propagation(sys, lin.rootfs_propagation)
    trace("init: pivoted")
    if lin.sysctl:  # before readonlyPaths makes /proc/sys read-only (runc's order)
        _sysctls(lin)
    croot = rootfs.Root("/", sys)
    # runc's order: read-only paths first, then masked ones (a path in both ends up masked)
    if lin.readonly_paths:
        rootfs.readonly_paths(croot, lin.readonly_paths)
    if lin.masked_paths:
        rootfs.mask_paths(croot, lin.masked_paths)
    croot.close()
    if applied_pending:
        chan.expect("applied")
    if devices.needs_dev_setup(cfg.mounts):  # (after "applied": the device rules are in force)
        process.reopen_dev_null()
    if proc.terminal:
        from . import terminal

        master, slave, spath = terminal.open_pty(proc.console_size, proxied=cr.console_fd is None)
        terminal.bind_console(sys, spath)
        if cr.console_fd is not None:
            protocol.send_fd_over(cr.console_fd, master, spath.encode())
            os.close(cr.console_fd)
        else:
            chan.send_fd(master, "pty")
        os.close(master)
        terminal.make_controlling(slave)
    if ctx.readonly_later:
        croot = rootfs.Root("/", sys)
        try:
            rootfs.finish_readonly(croot, ctx)
        finally:
            croot.close()
    if cfg.root.readonly:
        rootfs.remount_root_readonly(sys)
    if cr.no_process:
        _wait_without_process(cr, chan)  # never returns
    process.set_rlimits(proc.rlimits)
    env = process.build_env(proc)
    path = process.find_executable(proc.args[0], env, proc.cwd or "/")
    process.check_interpreters(path, sys)
    if proc.user.username:
        process.check_username(proc.user, "/etc/passwd")
    def finish():
        """The process's own settings, up to the user switch; returns the seccomp filter still to load (at
        exec). As runc, done before reporting ready (so that start only has to exec); after start instead
        when a seccomp filter must be loaded while we still have CAP_SYS_ADMIN (no noNewPrivileges).
        startContainer hooks run after it, as the process about to be exec'd."""
        pending = sfilter
        if not cr.opts.no_new_keyring:
            if proc.selinux_label:
                from . import lsm

                lsm.set_keyring_label(proc.selinux_label)
            try:
                sys.keyring_add_user_search(sys.join_session_keyring(cr.c.id))
            except OSError as e:
                if e.errno not in (38, 1, 13, 122):  # ENOSYS, EPERM, EACCES, EDQUOT: as runc, not fatal
                    raise OciError(f"cannot join a new session keyring: {os.strerror(e.errno)}") from None
        if lin.personality:
            _personality(sys, lin.personality)
        if proc.apparmor_profile or proc.selinux_label:
            from . import lsm

            lsm.apply_exec_labels(proc)
        process.apply_scheduling(proc, lin, sys)
        if proc.no_new_privileges:
            sys.prctl(S.PR_SET_NO_NEW_PRIVS, 1)
        elif sfilter is not None:
            # Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it before dropping capabilities.
            sfilter.load()
            pending = None
        in_cwd = process.chdir_privileged(proc.cwd)
        process.switch_user(proc.user, cr.caps, sys, setgroups_allowed=_setgroups_allowed(cr.plan))
        os.umask(proc.user.umask if proc.user.umask is not None else 0o022)
        if not in_cwd:
            process.chdir_inside(proc.cwd)
        return pending

    early = proc.no_new_privileges or sfilter is None
    if early:
        sfilter = finish()
    # ---- created: wait for start
    trace("init: ready")
    chan.send("ready")
    if listen_fd is not None:
        chan.close()
        cfd = protocol.accept(listen_fd)
        os.close(listen_fd)
        chan = protocol.Channel(cfd)
        cr.err_chan = chan  # from here on, failures are reported to `start`
    trace("init: waiting for start")
    m = chan.recv()
    if not m or m.get("t") != "start":
        os._exit(1)
    if not early:
        sfilter = finish()
    if h.start_container:
        # as runc: startContainer hooks run as the container's process is about to (its user, capabilities and,
        # with noNewPrivileges, its seccomp filter: the filter is loaded first then)
        if sfilter is not None and proc.no_new_privileges:
            sfilter.load()
            sfilter = None
        from . import hooks

        hooks.run_hooks("startContainer", h.start_container, _hook_state(cr._record("created"), "created"),
                        default_env=process.build_env(proc) if proc is not None else (), empty_is_default=True)
    process.set_cpu_affinity(proc, "final")
    process.reset_signals()
    trace("init: exec")
    process.exec_process(path, proc.args, env, cr.opts.preserve_fds, sys,
                         last=sfilter.load if sfilter is not None else None)


def _wait_without_process(cr, chan):
    """A container created without `process`: built, reported ready, and then only waits (for kill or delete).
    `start` refuses it before connecting; a start that connects anyway gets the error and changes nothing."""
    chan.send("ready")
    listen_fd = cr.listen_fd
    if listen_fd is None:  # `run` refuses a config without process before forking: not reached
        os._exit(1)
    chan.close()
    msg = f"cannot start container {cr.c.id}: its config.json has no process (/process is required by start)"
    while True:
        try:
            cfd = protocol.accept(listen_fd)
        except OSError:
            continue
        c = protocol.Channel(cfd)
        try:
            m = c.recv()
            if m and m.get("t") == "start":
                c.send("error", msg=msg)
        except OSError:
            pass
        c.close()


def _preload(cfg):
    """Import everything the stages use, in stage 1 before it leaves the host's namespaces (_child_main)."""
    import resource  # noqa: F401  (process.set_rlimits)
    import _prctl  # noqa: F401  (capabilities)
    import fcntl  # noqa: F401
    import _signal  # noqa: F401
    import select  # noqa: F401  (protocol timeouts)
    from . import capabilities, devices, process, rootfs  # noqa: F401  (the parent imports none of them)

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


def _setgroups_allowed(plan):
    if not plan.in_user:
        return True
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() == "allow"
    except OSError:
        return True


def _sysctls(lin):
    from .semantics import sysctl_key, sysctl_namespace

    owned = {n.type for n in lin.namespaces}
    for key, value in lin.sysctl.items():
        ns = sysctl_namespace(key)  # (checked at create already; kept here: the write acts on the kernel)
        if ns is None or ns not in owned:
            raise OciError(f"linux.sysctl: {key!r} is not in a separate kernel namespace the container owns")
        path = "/proc/sys/" + sysctl_key(key).replace(".", "/")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as e:
            raise OciError(f"linux.sysctl: {key}: {e.strerror}") from None
        try:
            # CVE-2019-16884 class: a rootfs can plant a plain /proc; only ever write to a real procfs
            if S.SYS.fstatfs_type(fd) != 0x9FA0:
                raise OciError(f"linux.sysctl: {key}: /proc in the container is not a procfs (no proc mount?)")
            os.write(fd, str(value).encode())
        except OSError as e:
            raise OciError(f"linux.sysctl: {key}={value}: {e.strerror}") from None
        finally:
            os.close(fd)


def _personality(sys, p):
    dom = p.get("domain")
    val = {"LINUX": 0x0000, "LINUX32": 0x0008}.get(dom)
    if val is None:
        raise OciError(f"linux.personality.domain: unknown domain {dom!r}")
    try:
        sys.personality(val)
    except OSError as e:
        raise OciError(f"linux.personality: {os.strerror(e.errno)}") from None


def _cgroup_plan(mgr):
    if mgr is None:
        return None
    try:
        return (mgr.version, mgr.mount_plan())
    except Exception:
        return None


def _resctrl_mounted():
    try:
        with open("/proc/self/mountinfo") as f:
            return any(" - resctrl " in line for line in f)
    except OSError:
        return False


def _move_net_devices(devices, pid):
    """linux.netDevices: move each host interface into the container's network namespace (renamed if asked),
    with iproute2 (`ip link set dev HOST netns PID name NEW` in one RTM_NEWLINK)."""
    for host_name, spec in devices.items():
        new = (spec or {}).get("name") or host_name
        where = f"linux.netDevices.{host_name}"
        if not os.path.exists(f"/sys/class/net/{host_name}"):
            raise OciError(f"{where}: no such network interface on the host")
        rc, err = _run_tool(["ip", "link", "set", "dev", host_name, "netns", str(pid), "name", new])
        if rc != 0:
            raise OciError(f"{where}: cannot move it into the container as {new!r}: {err or f'ip exit {rc}'}")


def _run_tool(argv):
    """Run a host tool with posix_spawn (no subprocess import on the hot path); returns (status, stderr)."""
    import shutil

    path = shutil.which(argv[0]) or argv[0]
    r, w = os.pipe()
    try:
        pid = os.posix_spawn(path, argv, {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                             file_actions=[(os.POSIX_SPAWN_DUP2, w, 2), (os.POSIX_SPAWN_CLOSE, r)])
    except OSError as e:
        os.close(r)
        os.close(w)
        return 127, f"{argv[0]}: {e.strerror}"
    os.close(w)
    err = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        err += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), err.decode(errors="replace").strip().replace("\n", " | ")
