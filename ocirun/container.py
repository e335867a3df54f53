"""`ocirun.Container`: a container's life (runtime.md) as verbs over the state store: create and run (their
parent side is create.py, the stages stage1.py and initproc.py), start, kill, pause/resume, update, stats and
delete (destroy.py). No re-exec: the stages are forks of the `create` process.

create:  parent ──fork──> stage 1 (joins/creates namespaces; new user ns mapped by the parent)
                            └─fork─> init (pid 1 of a new pid ns): rootfs, pivot_root, process set-up,
                                      reports `ready`, then waits for `start` on --root/ID/start.sock
start:   connects to start.sock; the init runs startContainer hooks, drops privileges and execs;
         `start` sees the connection close at exec (CLOEXEC) or gets the error that stopped it.
Parent and stages talk over a SOCK_SEQPACKET socketpair (protocol.Channel).
"""
import os

from . import destroy, protocol, state as St
from .errors import NotFoundError, OciError, StateError

SIGTERM = 15


class Options:
    """create/run flags (runc's)."""

    def __init__(self, root=None, pid_file=None, console_socket=None, no_pivot=False, no_new_keyring=False,
                 preserve_fds=0, systemd_cgroup=False, detach=True, keep=False, rootless=None):
        self.root = root
        self.pid_file = pid_file
        self.console_socket = console_socket
        self.no_pivot = no_pivot
        self.no_new_keyring = no_new_keyring
        self.preserve_fds = preserve_fds
        self.systemd_cgroup = systemd_cgroup
        self.detach = detach
        self.keep = keep
        self.rootless = rootless  # the global --rootless flag as given (true, false, auto; None = auto)


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
        from .create import Creator

        Creator(c, bundle, opts, log).run(start=False)
        return c

    @classmethod
    def run(cls, cid, bundle, opts=None, log=None):
        """create + start. Detached: returns 0 once started. Foreground: waits and returns the exit status."""
        opts = opts or Options()
        c = cls(cid, opts.root)
        from .create import Creator

        return Creator(c, bundle, opts, log).run(start=True)

    # ----------------------------------------------------------------------------------------------- start
    def start(self):
        lock = self.store.open(self.id)
        try:
            st = self._record()
            status = St.status_of(self.store, self.id, st)
            if status != "created":
                raise StateError(f"cannot start a container that is {status}: {self.id}"
                                 if status != "running" else f"cannot start an already running container: {self.id}")
            if St.has_no_process(st):
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
                    chan.send("start")
                    protocol.wait_started(chan, self.id)
                except OciError:
                    destroy.destroy(self.store, self.id, st, "running")  # continue at step 12
                    raise
            finally:
                chan.close()
                try:
                    os.unlink(sock)
                except FileNotFoundError:
                    pass
            st["status"] = "running"
            self.store.write(self.id, st, recovery=False)  # status only: recover.json (pids, cgroup) is current
            destroy.poststart(st, self.store, self.id)
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
                    mgr = destroy.cgroup_from(st)
                    if mgr is not None:
                        try:
                            mgr.signal_all(sig)
                        except (OSError, OciError):
                            pass
                    return
                raise StateError(f"container not running: {self.id} is {status}")
            if all:
                mgr = destroy.cgroup_from(st)
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
        mgr = destroy.cgroup_from(st)
        if mgr is None:
            if st.get("rootless_cgroups"):
                raise StateError(f"cannot {verb} container {self.id}: it has no cgroup of its own (rootless: "
                                 f"ocirun could not create one, and keeps it in the caller's cgroups; that needs "
                                 f"a cgroup the user may write, named by linux.cgroupsPath)")
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
            destroy.destroy(self.store, self.id, st, status)
        finally:
            lock.release()
