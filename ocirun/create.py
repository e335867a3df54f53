"""The parent side of `create` and `run`: check config.json (preflight.py), fork stage 1 (stage1.py), make the
state and the cgroups while the stages build the container, answer the stages over the channel (user
namespace mappings, mount sources, placement in the cgroups, limits, runtime hooks) until the init reports
ready, then (run) start it and, in the foreground, wait for it. A failure anywhere undoes everything made."""
import os

from . import config as C
from . import destroy, namespaces, preflight, protocol, state as St
from . import syscalls as S
from .errors import OciError
from .log import trace

SIGKILL = 9


class Creator:
    def __init__(self, container, bundle, opts, log):
        self.c = container
        self.store = container.store
        self.bundle = os.path.abspath(bundle or ".")
        self.opts = opts
        self.log = log
        self.init_pid = None
        self.init_start = None
        self.stage1 = None
        self.stage1_start = None
        self.mgr = None
        self.lock = None
        self.chan = None
        self.console_fd = None
        self.pty_master = None
        self.stdio = None
        self.idmap_fds = {}
        self.idmap_specs = {}
        self.sfilter = None
        self.listen_fd = None
        self.cgroup_pending = None
        self.host_mnt = False
        self.host_mounts_before = None
        self.own_dir = False  # the state dir is ours to remove (not an existing container's)
        # runc's RootlessEUID (see rootless.py); the rootless cgroup manager is the --rootless flag's choice
        self.rootless = os.geteuid() != 0

    # ------------------------------------------------------------------------------------------- checks
    def load(self, start=False):
        """Read and check config.json before anything exists (`ocirun check` runs exactly this)."""
        St.validate_id(self.c.id)
        if self.rootless:
            from . import rootless

            rootless.check_bundle(self.bundle, os.path.join(self.bundle, "config.json"))
        self.cfg, self.no_process = preflight.read_config(self.bundle, start)
        self.rootfs = preflight.rootfs_path(self.cfg, self.bundle)
        lin = self.cfg.linux or C.Linux()
        self.plan = namespaces.Plan(lin)
        self.host_mnt = preflight.check_namespaces(self.cfg, lin)
        if self.host_mnt:
            self.host_mounts_before = preflight.check_host_mount_ns(lin, self.opts, self.rootfs)
        self.caps = preflight.check_process(self.cfg.process, lin)
        preflight.check_new_namespaces(self.cfg, lin, self.plan)
        if self.rootless:
            rootless.check_config(self.cfg, self.plan)
        preflight.socket_activation(self.cfg, self.opts)
        preflight.notify_socket(self.cfg)
        preflight.check_terminal(self.cfg, self.opts)

    # ------------------------------------------------------------------------------------------- create
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
                "stage1": self.stage1 or 0, "stage1_start_time": self.stage1_start,
                "bundle": self.bundle, "rootfs": self.rootfs, "created": self.created,
                "annotations": cfg.annotations, "config": cfg.raw,
                "cgroup": self.mgr.to_dict() if self.mgr is not None else None,
                "cgroup_pending": self.cgroup_pending,
                "no_new_keyring": bool(self.opts.no_new_keyring), "no_process": bool(self.no_process),
                "host_mnt_ns": bool(self.host_mnt), "host_mounts_before": self.host_mounts_before,
                **self._rootless_fields()}

    def _rootless_fields(self):
        """Rootless runs only (a root run's record is unchanged): rootless_euid, and rootless_cgroups when the
        container has no cgroup of its own (every hierarchy left out, cgroups.ROOTLESS)."""
        out = {}
        if self.rootless:
            out["rootless_euid"] = True
        if self.mgr is not None and not self.mgr.joined():
            out["rootless_cgroups"] = True
            out["cgroup"] = None
        return out

    def _create(self, start, fg):
        self.created = St.now_rfc3339()
        from . import cgroups

        cgroups.check_driver(self.opts.systemd_cgroup)
        self.idmap_specs = preflight.idmap_mounts(self.cfg, self.plan, self.bundle, self.rootfs)
        if fg:  # before the fork: stage 1 exits once the init is forked, leaving it to its nearest subreaper
            S.set_child_subreaper()
        if fg and not self.cfg.process.terminal and not self.no_process:
            # foreground without a terminal: the process gets pipes that ocirun copies to and from its own
            # stdio (runc's setupIO), owned by the container's root, not the caller's files themselves
            from . import process

            self.stdio = process.stdio_pipes(self.plan)
        self._fork_stage1(start)
        self._make_state_and_cgroups(start)
        self._converse()
        self._created(start)

    def _systemd_pending(self, dirs):
        """systemd driver: the unit has started; the directories ocirun is about to make itself (the hierarchies
        systemd leaves alone) are recorded first, as the cgroupfs driver's are (cgroup_pending)."""
        self.cgroup_pending = list(dirs)
        self.store.write(self.c.id, self._record("creating"))

    def _fork_stage1(self, start):
        """Stage 1 is forked as early as it can be: from here the two processes work side by side (2 cores):
        stage 1 imports what the stages need and builds the namespaces and the rootfs, the parent makes the
        state dir, the record and the cgroups. Nothing on the host exists yet: if the parent fails or dies
        before the record is written, the stages see the channel's EOF and exit, taking their namespaces and
        mounts with them."""
        pchan, cchan = protocol.Channel.pair()
        self.chan = pchan
        join_fds = self.plan.open_join_fds()
        parent = os.getpid()
        try:
            pid = os.fork()
            if pid == 0:
                pchan.close()
                from . import stage1  # (in the child: the parent never loads the stages' modules)

                stage1.main(self, cchan, join_fds, start, parent)  # never returns
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

    def _make_state_and_cgroups(self, start):
        """The state dir, the record and the cgroups, made while the stages build the container: the record
        names stage 1 and the cgroup paths before any cgroup is made, so that nothing leaks untracked."""
        from . import cgroups

        lin = self.cfg.linux or C.Linux()
        self.mgr = cgroups.new_manager(self.c.id, lin.cgroups_path, systemd=self.opts.systemd_cgroup,
                                       own_text=cgroups.read_own(),
                                       rootless=cgroups.parse_rootless(self.opts.rootless) if not self.rootless
                                       else cgroups.rootless_cgroups(self.opts.rootless),
                                       annotations=self.cfg.annotations if self.opts.systemd_cgroup else None)
        if self.opts.systemd_cgroup:
            self.mgr.before_mkdir = self._systemd_pending
        self.lock = self.store.new(self.c.id)  # an existing id fails here: _cleanup then leaves its dir alone
        self.own_dir = True
        self.cgroup_pending = self.mgr.to_create()
        # (recover.json, the copy of pids and cgroups for a damaged state.json, is written once they are known)
        self.store.write(self.c.id, self._record("creating"), recovery=False)
        if not start:  # bound here (the state dir is root's, 0700); the init gets it with "placed"
            self.listen_fd = protocol.listen_unix(os.path.join(self.store.dir(self.c.id), St.START_SOCK))
        # the init waits for "placed" before it needs its cgroup; if this fails, closing the channel ends it
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

    # ------------------------------------------------------------------------------------------- the stages talk
    def _converse(self):
        """Answer the stages until the init reports "ready"."""
        want_pty = self.cfg.process.terminal and not self.opts.console_socket
        self.applied = False
        handlers = {"userns": self._on_userns, "mountsrc": self._on_mountsrc, "pid": self._on_pid,
                    "rootfs": self._on_built, "hooks": self._on_built}
        while True:
            m = self._receive(want_pty)
            t = m.get("t")
            if t == "ready":
                self._apply_limits()
                trace("parent: ready")
                return
            if t == "error":
                raise OciError(m.get("msg", "container init failed"))
            handler = handlers.get(t)
            if handler is None:
                raise OciError(f"internal error: unexpected message {t!r} from the container init")
            handler(m)

    def _receive(self, want_pty):
        """The next message of the stages; a pty master (foreground run -t without --console-socket: the init
        sends it for us to proxy) is kept on the way."""
        while True:
            try:
                if want_pty:
                    m, fd = self.chan.recv_fd()
                    if fd is not None:
                        self.pty_master = fd
                        continue
                else:
                    m = self.chan.recv()
            except protocol.ProtocolError as e:
                raise OciError(str(e)) from None
            except (ConnectionResetError, BrokenPipeError):
                m = None
            if m is None:
                raise OciError(self._died_msg())
            return m

    def _on_userns(self, m):
        if self.rootless:
            from . import rootless

            rootless.write_id_mappings(m["pid"], self.plan)
        else:
            namespaces.write_id_mappings(m["pid"], self.plan)
        _send_or_read_error(self.chan, "mapped")

    def _on_mountsrc(self, m):
        """A mount source the init cannot open itself (user namespace), or an idmapped mount's tree."""
        from . import mounts

        path, rec = m.get("path", ""), bool(m.get("rec"))
        if m.get("idmap") is not None:
            tree, err = self._idmapped_source(int(m["idmap"]), path, rec)
        else:
            tree, err = mounts.open_source_in(self.init_pid, path, rec)
        try:
            if tree is None:
                self.chan.send("mountsrc", err=err)
            else:
                self.chan.send_fd(tree, "mountsrc")
        except (BrokenPipeError, ConnectionResetError):
            raise OciError(self._died_msg()) from None
        finally:
            if tree is not None:
                os.close(tree)

    def _idmapped_source(self, index, path, recursive):
        """(fd, None) of the idmapped detached clone of mount `index`'s source, as the init's mount namespace
        sees it now; (None, message) if it cannot be made."""
        from . import mounts

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
            return mounts.open_source_in(self.init_pid, path, recursive, idmap=(userns, ridmap, where))
        finally:
            os.close(userns)

    def _on_pid(self, m):
        """The init exists: record it, let it begin, move network devices, place it in the cgroups.
        Placing a process in a v1 cgroup waits for an RCU grace period (1-12 ms here): done here while the init
        builds its rootfs; it waits for "placed" only when it needs its cgroup (cgroup namespace, cgroup
        mounts, pivot_root)."""
        self.init_pid = m["pid"]
        self.init_start = St.proc_start_time(self.init_pid)
        trace("parent: got pid")
        # The record knows stage 1, the init and the cgroups before anything else happens: a create killed from
        # here on is cleaned up fully by delete --force, even with the init stopped where it cannot see the
        # channel's EOF (the reliability suite's fault hooks).
        self.store.write(self.c.id, self._record("creating"))
        self.chan.send("recorded")  # the init starts only now: nothing of the container runs untracked
        lin = self.cfg.linux or C.Linux()
        if lin.net_devices:
            namespaces.move_net_devices(lin.net_devices, self.init_pid)
        if self.mgr is not None:
            self.mgr.add_pid(self.init_pid)
            from . import process

            process.reset_affinity(self.init_pid, self.mgr)
        from . import cgroups

        _send_or_read_error(self.chan, "placed", fd=self.listen_fd, pid=self.init_pid,
                            cgroup_plan=cgroups.mount_plan_of(self.mgr))
        if self.listen_fd is not None:
            os.close(self.listen_fd)
            self.listen_fd = None
        trace("parent: init placed")
        if self.mgr is not None:
            cgroups.preload_resources()  # while the init builds its rootfs

    def _apply_limits(self):
        """Limits and device rules once the rootfs (and its device nodes) is built, before any hook runs:
        runc's order (it sets them when its init reports "hooks", or "ready" without hooks)."""
        if not self.applied:
            self.applied = True
            if self.mgr is not None:
                self.mgr.apply((self.cfg.linux or C.Linux()).resources)
            trace("parent: cgroup ready")

    def _on_built(self, m):
        """The init's rootfs is built. Without hooks it reported "rootfs" and goes on (pivot_root, masked paths)
        while the limits are set, and waits for "applied" before opening devices; with hooks ("hooks") they run
        once the limits are set."""
        self._apply_limits()
        if m.get("t") == "hooks":
            self._run_create_hooks()
        else:
            _send_or_read_error(self.chan, "applied")

    def _run_create_hooks(self):
        from . import hooks

        # runtime.md: these hooks are lifecycle steps 3-4, "after step 2", the state the spec calls "created"
        # (crun's too; runtime-tools' hooks_stdin checks it; runc 1.1 passes "creating")
        st = hooks.hook_state(self._record("creating"), "created")
        try:
            hooks.run_hooks("prestart", self.cfg.hooks.prestart, st)
            hooks.run_hooks("createRuntime", self.cfg.hooks.create_runtime, st)
        except OciError as e:
            self.chan.send("abort")
            raise OciError(str(e)) from None
        _send_or_read_error(self.chan, "go")

    def _created(self, start):
        """The init is ready: the record says created (create), or the init is started (run)."""
        if self.stage1 != self.init_pid:
            _reap(self.stage1)
        self.stage1 = None
        if not start:  # (run goes on to "running" at once: one state write less)
            self.store.write(self.c.id, self._record("created"), recovery=False)
        if self.opts.pid_file:
            St.write_pid_file(self.opts.pid_file, self.init_pid)
        if start:
            self.chan.send("start")
            # recorded while the init execs (if the exec fails, the error below removes the container)
            st = self._record("running")
            self.store.write(self.c.id, st, recovery=False)
            protocol.wait_started(self.chan, self.c.id)
            destroy.poststart(st, self.store, self.c.id)
        self.chan.close()

    # ------------------------------------------------------------------------------------------- failure, wait
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
        """Undo a create that failed: the stages, the host mounts, the cgroups, the state; poststop hooks if
        the container had come to exist (lifecycle steps 12-13)."""
        if self.chan is not None:
            self.chan.close()  # an init still waiting for "placed" sees EOF and exits
        if self.init_pid:
            destroy.kill_wait(self.init_pid, self.init_start)
        if self.stage1:
            try:
                os.kill(self.stage1, SIGKILL)
            except ProcessLookupError:
                pass
            _reap(self.stage1)
        if self.init_pid and not self.opts.detach:
            _reap(self.init_pid)
        if self.host_mnt and self.host_mounts_before is not None:  # the init's mounts in the host's namespace
            try:
                destroy.umount_host_mounts(self.rootfs, self.host_mounts_before)
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
            from . import hooks

            hooks.run_hooks("poststop", self.cfg.hooks.poststop,
                            hooks.hook_state(self._record("stopped"), "stopped"), keep_going=True)

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
                destroy.destroy(self.store, self.c.id, self.store.read(self.c.id), "stopped")
            finally:
                lock.release()
        trace("parent: deleted")
        return code


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


def _warn(msg):
    from . import log

    log.warning(msg)
