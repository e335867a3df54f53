"""The container's init, from its first breath to exec: everything config.json asks for, in runc's order.

run():  the record names us ─> hostname ─> the rootfs made a mount point ─> mounts (placed in the cgroups
        on the way) ─> devices ─> limits set by the parent, runtime hooks ─> createContainer hooks ─> pivot_root
        ─> sysctls, read-only and masked paths ─> the console ─> read-only mounts and root ─> the process
        set up to its user switch ─> ready: wait for `start` ─> startContainer hooks ─> exec.
Each step is one function; the parent's side of the conversation is create.Creator."""
import os

from . import config as C
from . import devices, mounts, namespaces, process, protocol, rootfs
from . import syscalls as S
from .errors import OciError
from .log import trace

_CATCH = (1, 2, 3, 10, 12, 14, 15)


def run(cr, chan, start):
    """The init: never returns (execs the process, or exits)."""
    init = Init(cr, chan)
    init.begin()
    init.set_names()
    init.prepare_root()
    init.mount_all()
    init.ensure_placed()
    init.limits_and_runtime_hooks()
    init.create_container_hooks()
    init.jail()
    init.kernel_paths()
    init.devices_usable()
    init.console()
    init.read_only()
    if cr.no_process:
        init.wait_without_process()  # never returns
    init.prepare_exec()
    early = init.proc.no_new_privileges or init.sfilter is None
    if early:
        init.become()
    init.ready_and_wait_start()
    if not early:
        init.become()
    init.start_container_hooks()
    init.exec()


class Init:
    def __init__(self, cr, chan):
        self.cr = cr
        self.chan = chan
        self.sys = S.SYS
        self.cfg = cr.cfg
        self.proc = cr.cfg.process
        self.lin = cr.cfg.linux or C.Linux()
        self.sfilter = cr.sfilter  # compiled by stage 1, loaded last
        self.placed = False
        self.applied_pending = False
        self.ctx = None
        self.exe = self.env = None
        self.became = False

    def begin(self):
        """The parent's record names us (from here on delete --force finds us); a session of our own; as pid 1
        of a pid namespace, a signal from outside reaches us only if we handle it."""
        import _signal

        self.chan.expect("recorded")
        trace("init: begin")
        os.setsid()
        for sig in _CATCH:
            _signal.signal(sig, _die_on_signal)

    def set_names(self):
        # an empty name is not set (the new UTS namespace keeps the one it started with), as runc
        if self.cfg.hostname and "uts" in {n.type for n in self.lin.namespaces}:
            self.sys.sethostname(self.cfg.hostname)
        if self.cfg.domainname:
            self.sys.setdomainname(self.cfg.domainname)

    def prepare_root(self):
        if not self.cr.host_mnt:  # (in the host's mount namespace: nothing of the host's mounts is changed)
            rootfs.prepare_root(self.sys, self.cr.rootfs, self.lin.rootfs_propagation)
        elif self.cfg.root.readonly:  # a mount of its own to make read-only (delete removes it with the others)
            rootfs.bind_rootfs(self.sys, self.cr.rootfs)

    # ------------------------------------------------------------------------------------------- mounts
    def mount_all(self):
        """config.json's mounts in order, the device nodes (when the runtime makes /dev), the cwd."""
        cr = self.cr
        root = rootfs.Root(cr.rootfs, self.sys)
        ctx = self.ctx = mounts.MountContext(cr.bundle, None, in_userns=cr.plan.in_user,
                                             new_netns="network" in cr.plan.new, mount_label=self.lin.mount_label)
        ctx.cgroup_ns = "cgroup" in cr.plan.new
        ctx.ensure_placed = self.ensure_placed
        ctx.idmap_fds = cr.idmap_fds
        if cr.plan.in_user and not cr.rootless:
            # (rootless, as runc: the parent could not join our mount namespace; we have the caller's access)
            ctx.open_source = self._open_source
        if cr.idmap_specs:
            ctx.open_idmapped = self._open_idmapped
            ctx.idmapped = set(cr.idmap_specs)
        for i, m in enumerate(self.cfg.mounts):
            mounts.mount_one(root, m, i, ctx)
        if devices.needs_dev_setup(self.cfg.mounts):
            # in a user namespace (the container's, or one we run in: rootless podman runs the runtime as root of
            # its own) mknod is not permitted: devices are bind mounts of the host's nodes (runc: useBindMount =
            # userns.RunningInUserNS() || NEWUSER)
            devices.create_devices(root, self.lin.devices, cr.plan.in_user or namespaces.running_in_userns())
            devices.create_symlinks(root)
        # else /dev is a bind mount of a host directory: nothing is made, changed or removed in it, linux.devices
        # included (runc the same): those are the host's own nodes (chmod, chown or unlink there acts on the host)
        try:
            os.close(root.mkdir_all(self.proc.cwd or "/"))
        except OciError as e:
            raise OciError(f"process.cwd: {e}") from None
        root.close()
        trace("init: mounts done")

    def _open_source(self, path, recursive, where):
        """A bind source our user namespace's root cannot reach (under a 0700 directory of the host's root): the
        parent opens it for us, with the runtime's privileges, in our mount namespace (runc's way)."""
        self.ensure_placed()  # (the parent's "placed" comes first on the channel)
        self.chan.send("mountsrc", path=path, rec=recursive)
        m, fd = self.chan.expect_fd("mountsrc")
        if fd is None:
            raise OciError(f"{where}: {m.get('err') or 'the runtime could not open the source'}")
        return fd

    def _open_idmapped(self, index, path, recursive, where):
        self.ensure_placed()
        self.chan.send("mountsrc", path=path, rec=recursive, idmap=index)
        m, fd = self.chan.expect_fd("mountsrc")
        if fd is None:
            err = m.get("err") or "the runtime could not make the idmapped mount"
            raise OciError(err if err.startswith(where) else f"{where}: {err}")
        return fd

    def ensure_placed(self):
        """Wait (once) until the parent has placed us in our cgroups: it tells what cgroup mounts bind, and, for
        `create`, hands over the start.sock it bound. Then what needs the cgroup or the network namespace."""
        if self.placed:
            return
        cr = self.cr
        m, fd = self.chan.expect_fd("placed")
        cr.init_pid = m.get("pid")
        plan = m.get("cgroup_plan")  # (version, [(name, host dir)])
        if self.ctx is not None:
            self.ctx.cgroup_plan = (plan[0], [tuple(x) for x in plan[1]]) if plan else None
        if fd is not None:
            cr.listen_fd = fd  # `create`: the start.sock the parent bound, to wait on once ready
        process.set_cpu_affinity(self.proc, "initial")
        if "network" in cr.plan.new:
            # a new network namespace gets lo up (as runc), and netDevices (moved in by the parent) up
            netdevs = [(v or {}).get("name") or k for k, v in (self.lin.net_devices or {}).items()]
            namespaces.link_up(["lo"] + netdevs)
        if "cgroup" in cr.plan.new:
            self.sys.unshare(S.CLONE_NEWCGROUP)
        self.placed = True
        trace("init: placed")

    # ------------------------------------------------------------------------------------------- hooks
    def limits_and_runtime_hooks(self):
        """Without hooks: tell the parent the devices are made; it sets limits and device rules while we pivot
        and mask paths, and we wait for "applied" before opening any device (a v1 device rule update denies all
        for a moment) and before the process settings that limits govern (realtime scheduling needs
        cpu.rt_runtime_us). With hooks: they run once the limits are set (the parent runs prestart and
        createRuntime hooks now)."""
        h = self.cfg.hooks
        self.applied_pending = not (h.prestart or h.create_runtime or h.create_container)
        if self.applied_pending:
            self.chan.send("rootfs")
            return
        trace("init: runtime hooks")
        self.chan.send("hooks")
        m = self.chan.recv()
        if not m or m.get("t") != "go":
            os._exit(1)

    def create_container_hooks(self):
        if self.cfg.hooks.create_container:
            from . import hooks

            trace("init: createContainer hooks")
            hooks.run_hooks("createContainer", self.cfg.hooks.create_container,
                            hooks.hook_state(self.cr._record("creating"), "created"),
                            default_env=self.proc.env, cwd=self.cr.rootfs)
        trace("init: hooks done")

    # ------------------------------------------------------------------------------------------- the jail
    def jail(self):
        """pivot_root into the rootfs (MS_MOVE + chroot with --no-pivot), then the root propagation; chroot
        when the container has no mount namespace (pivot_root would move the host's root), as runc."""
        if self.cr.host_mnt:
            os.chdir(self.cr.rootfs)
            self.sys.chroot(".")
            os.chdir("/")
        else:
            rootfs.pivot(self.sys, self.cr.rootfs, self.cr.opts.no_pivot)
            rootfs.apply_root_propagation(self.sys, self.lin.rootfs_propagation)
        trace("init: pivoted")

    def kernel_paths(self):
        """Sysctls (before readonlyPaths makes /proc/sys read-only), then read-only paths and masked ones (a
        path in both ends up masked): runc's order."""
        lin = self.lin
        if lin.sysctl:
            namespaces.write_sysctls(lin)
        croot = rootfs.Root("/", self.sys)
        if lin.readonly_paths:
            rootfs.readonly_paths(croot, lin.readonly_paths)
        if lin.masked_paths:
            rootfs.mask_paths(croot, lin.masked_paths)
        croot.close()

    def devices_usable(self):
        if self.applied_pending:
            self.chan.expect("applied")
        if devices.needs_dev_setup(self.cfg.mounts):  # (after "applied": the device rules are in force)
            process.reopen_dev_null()

    def console(self):
        """process.terminal: a pty made here; its master goes to --console-socket, or to the parent to proxy."""
        if not self.proc.terminal:
            return
        from . import terminal

        terminal.attach(self.proc.console_size, self.cr.console_fd, self.chan, self.sys)

    def read_only(self):
        """Read-only tmpfs and /dev mounts (made writable while files were made in them), then the root."""
        if self.ctx.readonly_later:
            croot = rootfs.Root("/", self.sys)
            try:
                mounts.finish_readonly(croot, self.ctx)
            finally:
                croot.close()
        if self.cfg.root.readonly:
            rootfs.remount_root_readonly(self.sys)

    # ------------------------------------------------------------------------------------------- the process
    def prepare_exec(self):
        proc = self.proc
        self.exe, self.env = process.prepare_exec(proc, self.sys)
        if proc.user.username:
            process.check_username(proc.user, "/etc/passwd")

    def become(self):
        """The process's own settings, up to the user switch. As runc, done before reporting ready (so that start
        only has to exec); after start instead when a seccomp filter must be loaded while we still have
        CAP_SYS_ADMIN (no noNewPrivileges). startContainer hooks run after it, as the process about to be
        exec'd. Leaves in self.sfilter the filter still to load (at exec)."""
        cr, proc = self.cr, self.proc
        self.became = True
        if cr.rootless:
            self._dumpable_rootless()
        if not cr.opts.no_new_keyring:
            if proc.selinux_label:
                from . import lsm

                lsm.set_keyring_label(proc.selinux_label)
            try:
                self.sys.keyring_add_user_search(self.sys.join_session_keyring(cr.c.id))
            except OSError as e:
                if e.errno not in (38, 1, 13, 122):  # ENOSYS, EPERM, EACCES, EDQUOT: as runc, not fatal
                    raise OciError(f"cannot join a new session keyring: {os.strerror(e.errno)}") from None
        # rootless: supplementary groups are left as they are, even where setgroups is allowed (runc's setupUser)
        self.sfilter = process.become(proc, cr.caps, self.lin, self.sfilter, self.sys,
                                      not cr.rootless and namespaces.setgroups_allowed(cr.plan.in_user))

    def _dumpable_rootless(self):
        """Rootless, the init is dumpable again from here, as runc's is: `exec` before `start` (the caller, same
        uid) must open /proc/<init>/ns/*, which non-dumpable gives to the host's root only. Nothing here is more
        than the caller's own (the host's Python is root's, not theirs to change). Done before the user switch,
        which makes a process non-dumpable again when it changes the uid: then exec before start fails, as
        under runc. (The container process's exec makes it dumpable anyway.)"""
        self.sys.prctl(S.PR_SET_DUMPABLE, 1)

    def ready_and_wait_start(self):
        """Created: report ready, then wait for `start` (on the start.sock the parent bound, for `create`)."""
        if self.cr.rootless and not self.became:
            self._dumpable_rootless()
        trace("init: ready")
        self.chan.send("ready")
        listen_fd = self.cr.listen_fd
        if listen_fd is not None:
            self.chan.close()
            cfd = protocol.accept(listen_fd)
            os.close(listen_fd)
            self.chan = protocol.Channel(cfd)
            self.cr.err_chan = self.chan  # from here on, failures are reported to `start`
        trace("init: waiting for start")
        m = self.chan.recv()
        if not m or m.get("t") != "start":
            os._exit(1)

    def start_container_hooks(self):
        """As runc: startContainer hooks run as the container's process is about to (its user, capabilities and,
        with noNewPrivileges, its seccomp filter: the filter is loaded first then)."""
        hooks_ = self.cfg.hooks.start_container
        if not hooks_:
            return
        if self.sfilter is not None and self.proc.no_new_privileges:
            self.sfilter.load()
            self.sfilter = None
        from . import hooks

        hooks.run_hooks("startContainer", hooks_, hooks.hook_state(self.cr._record("created"), "created"),
                        default_env=process.build_env(self.proc), empty_is_default=True)

    def exec(self):
        process.set_cpu_affinity(self.proc, "final")
        process.reset_signals()
        trace("init: exec")
        process.exec_process(self.exe, self.proc.args, self.env, self.cr.opts.preserve_fds, self.sys,
                             last=self.sfilter.load if self.sfilter is not None else None)

    def wait_without_process(self):
        """A container created without `process`: built, reported ready, and then only waits (for kill or
        delete). `start` refuses it before connecting; a start that connects anyway gets the error."""
        self.chan.send("ready")
        listen_fd = self.cr.listen_fd
        if listen_fd is None:  # `run` refuses a config without process before forking: not reached
            os._exit(1)
        self.chan.close()
        msg = f"cannot start container {self.cr.c.id}: its config.json has no process (/process is required by start)"
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


def _die_on_signal(sig, frame):
    os._exit(128 + sig)
