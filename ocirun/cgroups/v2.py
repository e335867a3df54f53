"""cgroup v2 (unified) driver.

Device rules: v2 has no devices.* files. The rules are evaluated exactly as on v1 (devices.build: same
validation, same effective model), and the model is enforced by an eBPF BPF_CGROUP_DEVICE program attached to the
container's cgroup (bpf.py, imported only when a program is installed). The model is also kept in `device_rules`
(and in to_dict()).
"""
import os

from . import CgroupError
from . import common as C

# The eBPF device layer: None means ocirun.cgroups.bpf, imported on first use. Tests put a fake here (an object
# with install(dirpath, model) -> program id).
device_layer = None


def _device_layer():
    if device_layer is not None:
        return device_layer
    from . import bpf
    return bpf


class V2Manager(C.Rootless):
    version = 2
    own = None  # the caller's own cgroup (discover): what a container left out of its cgroup (rootless) is in
    busy_parent = None  # an ancestor whose processes kept controllers from being enabled (create)

    def __init__(self, container_id, inner, root, path, created=None, device_rules=None):
        self.id = container_id
        self.inner = inner
        self.root = root
        self.dir = path
        self.created = list(created or [])
        self.device_rules = device_rules

    @classmethod
    def discover(cls, container_id, inner, root, mounts, own):
        mroot = "/"
        for mp, r, fstype, _o in mounts:
            if mp == root and fstype == "cgroup2":
                mroot = r
                break
        if inner.startswith("/"):
            d = C.join(root, inner)
        else:
            ownp = "/"
            for hid, ctrls, p in own:
                if hid == "0" and not ctrls:
                    ownp = p
            # The own cgroup has processes in it, so controllers cannot be enabled below it: use its parent.
            parent = os.path.dirname(C.rel_own(ownp, mroot).rstrip("/") or "/") or "/"
            d = C.join(C.join(root, parent), inner)
        m = cls(container_id, inner, root, d)
        ownp = next((p for hid, ctrls, p in own if hid == "0" and not ctrls), "/")
        m.own = C.join(root, C.rel_own(ownp, mroot))
        return m

    @classmethod
    def from_dict(cls, d):
        try:
            m = cls(d["id"], d["inner"], d["root"], d["path"], d.get("created"), d.get("deviceRules"))
        except (KeyError, TypeError):
            raise CgroupError("container state: invalid cgroup v2 record") from None
        return m.restore_rootless(d)

    def to_dict(self):
        d = {"version": 2, "id": self.id, "inner": self.inner, "root": self.root, "path": self.dir,
             "created": list(self.created)}
        if self.device_rules is not None:
            d["deviceRules"] = self.device_rules
        return self.rootless_fields(d)

    def kept(self):
        return [] if self.skipped else [self.dir]

    def _skip(self, err):
        """Rootless: no cgroup of its own (see cgroups.ROOTLESS); the directories made for it go again."""
        C.remove_dirs(self.created, timeout=0.2)
        self.created = []
        self.skipped = [["", self.own or self.root, [], f"rootless: {self.dir}: {C.reason(err)}"]]

    def path(self, controller=""):
        return self.dir

    def paths(self):
        return {"": self.dir}

    def mount_plan(self):
        return [("", self.skipped[0][1] if self.skipped else self.dir)]

    # ------------------------------------------------------------------------------------------ create

    def to_create(self):
        """The directories create() will make (recorded before they exist, so that nothing can leak untracked)."""
        return C.missing_dirs(self.dir, stop=self.root)

    def create(self):
        try:
            try:
                C.make_dirs(self.dir, self.created, stop=self.root)
            except OSError as e:
                if not self.may_skip(e):
                    raise
                self._skip(e)
                return
            self._enable_controllers()
        except CgroupError:
            self._undo()
            raise
        except OSError as e:
            self._undo()
            raise CgroupError(f"cannot create cgroup {getattr(e, 'filename', '') or self.dir}: {C.reason(e)}") from None

    def _undo(self):
        C.remove_dirs(self.created, timeout=0.2)
        self.created = []

    def _enable_controllers(self):
        """Enable every available controller in each ancestor's cgroup.subtree_control, root first."""
        chain, d = [], os.path.dirname(self.dir)
        while C.under(d, self.root):
            chain.append(d)
            if d == self.root:
                break
            d = os.path.dirname(d)
        for d in reversed(chain):
            avail = C.try_read(d, "cgroup.controllers", "").split()
            have = set(C.try_read(d, "cgroup.subtree_control", "").split())
            missing = [c for c in avail if c not in have]
            if not missing:
                continue
            try:
                C.write_file(d, "cgroup.subtree_control", " ".join("+" + c for c in missing))
            except OSError as e:
                if e.errno == 16:   # EBUSY: processes in d ("no internal processes" rule)
                    # runc goes on without them (a container with no limits runs); a limit that needs one is
                    # refused by apply(), which names this cgroup
                    self.busy_parent = d
                    return
                for c in missing:     # enable what can be enabled; apply() reports what is missing and needed
                    try:
                        C.write_file(d, "cgroup.subtree_control", "+" + c)
                    except OSError:
                        pass

    # ------------------------------------------------------------------------------------------ resources

    def apply(self, resources, default_devices=True):
        self._set(resources, False, default_devices)

    def update(self, resources, default_devices=True):
        self._set(resources, True, default_devices)

    def _set(self, resources, update, default_devices):
        from . import devices, resources as R

        res = resources or {}
        if not isinstance(res, dict):
            raise CgroupError(f"{C.RES}: must be an object")
        ops = R.plan_v2(res, update=update)
        model = None
        if not update or "devices" in res:
            model = devices.build(res.get("devices"), default_devices)
        if self.skipped:
            # rootless without a cgroup: device rules are ignored (runc), any limit is refused
            for ctrl, fname, _v, field in ops:
                raise self.unjoined(field, ctrl or (fname or "").partition(".")[0])
            return
        self.check_controllers(ops)
        if model is not None:
            # apply: the first program; update: the new one replaces the old (no window without a program).
            try:
                _device_layer().install(self.dir, model)
                self.device_rules = model.to_list()
            except (CgroupError, OSError):
                # rootless: attaching a device program needs CAP_SYS_ADMIN; runc ignores the device
                # controller's errors then
                if not self.is_rootless():
                    raise
        for ctrl, fname, value, field in ops:
            if fname is None:
                value(self.dir, self)
            else:
                C.write_or_raise(self.dir, fname, value, field)

    def check_controllers(self, ops):
        """Refuse planned writes (resources.plan_v2) whose controller the cgroup does not have, before anything
        is written."""
        ctrls = None
        for ctrl, fname, _v, field in ops:
            if not ctrl:
                continue
            if ctrls is None:
                ctrls = set(C.try_read(self.dir, "cgroup.controllers", "").split())
            if ctrl not in ctrls:
                what = fname or ctrl + ".*"
                busy = self.busy_parent
                why = (f": {busy} has processes in it, so no controller can be enabled below it (use a cgroupsPath "
                       "outside the runtime's own cgroup)") if busy else " (missing from cgroup.controllers)"
                raise CgroupError(f"{field}: cannot write {what}: cgroup controller {ctrl} is not available in "
                                  f"{self.dir}{why}")

    # ------------------------------------------------------------------------------------------ processes

    def add_pid(self, pid, exec_=False):
        """Place `pid` in the cgroup. Rootless: a cgroup the caller may not join is left out (create), or
        (exec_) the process stays where it is, as runc's rootless exec."""
        if self.skipped:
            return
        try:
            C.write_file(self.dir, "cgroup.procs", str(pid))
        except OSError as e:
            if self.may_skip(e):
                if not exec_:
                    self._skip(e)
                return
            raise CgroupError(f"cannot add process {pid} to cgroup {self.dir} (cgroup.procs): {C.reason(e)}") from None

    def pids(self):
        if self.skipped or not os.path.isdir(self.dir):
            return []
        return C.procs_recursive(self.dir)

    def signal_all(self, sig):

        if sig == C.SIGKILL and os.path.exists(self.dir + "/cgroup.kill"):
            C.write_or_raise(self.dir, "cgroup.kill", "1", "kill")
            return
        froze = False
        if not self.is_frozen():
            try:
                self.freeze()
                froze = True
            except CgroupError:
                pass
        try:
            C.kill_pids(self.pids(), sig)
        finally:
            if froze:
                self.thaw()

    # ------------------------------------------------------------------------------------------ freezer

    def freeze(self, timeout=2.0):
        import time

        if self.skipped:
            raise CgroupError(f"cannot freeze: the container has no cgroup of its own ({self.skipped[0][3]})")
        C.write_or_raise(self.dir, "cgroup.freeze", "1", "freeze")
        deadline = time.monotonic() + timeout
        while True:
            ev = C.key_values(C.try_read(self.dir, "cgroup.events", ""))
            if ev.get("frozen", 1) == 1:
                return
            if time.monotonic() >= deadline:
                self._write_quiet("cgroup.freeze", "0")
                raise CgroupError(f"cannot freeze {self.dir}: cgroup.events did not report frozen "
                                  f"within {timeout:g}s")
            time.sleep(0.001)

    def _write_quiet(self, f, v):
        try:
            C.write_file(self.dir, f, v)
        except OSError:
            pass

    def thaw(self):
        if self.skipped:
            raise CgroupError(f"cannot thaw: the container has no cgroup of its own ({self.skipped[0][3]})")
        C.write_or_raise(self.dir, "cgroup.freeze", "0", "thaw")

    def is_frozen(self):
        if self.skipped:
            return False
        return (C.try_read(self.dir, "cgroup.freeze", "0") or "0").strip() == "1"

    # ------------------------------------------------------------------------------------------ destroy

    def destroy(self, force=False, timeout=5.0):

        d = self.dir
        killed = False
        if self.skipped:
            C.remove_dirs(self.created)
            self.created = []
            return
        if os.path.isdir(d) and (force or d in self.created):
            if C.procs_recursive(d):
                if os.path.exists(d + "/cgroup.kill"):
                    self._write_quiet("cgroup.kill", "1")
                else:
                    C.kill_pids(C.procs_recursive(d), C.SIGKILL)
                if self.is_frozen():
                    self._write_quiet("cgroup.freeze", "0")
                killed = True
        C.finish_destroy(self, d, timeout, kill=killed)

    # ------------------------------------------------------------------------------------------ stats

    def stats(self):
        d = self.dir
        out = {}
        if self.skipped:
            return out
        cur = C.to_int(C.try_read(d, "memory.current"))
        if cur is not None:
            lim = C.try_read(d, "memory.max", "max").strip()
            out["memory"] = {"usage": {"usage": cur, "max": C.to_int(C.try_read(d, "memory.peak")) or 0,
                                       "limit": 0 if lim == "max" else int(lim)},
                             "swap": {"usage": C.to_int(C.try_read(d, "memory.swap.current")) or 0},
                             "raw": C.key_values(C.try_read(d, "memory.stat", ""))}
        pc = C.to_int(C.try_read(d, "pids.current"))
        if pc is not None:
            lim = C.try_read(d, "pids.max", "max").strip()
            out["pids"] = {"current": pc, "limit": 0 if lim in ("max", "") else int(lim)}
        st = C.key_values(C.try_read(d, "cpu.stat", ""))
        if st:
            out["cpu"] = {"usage": {"total": st.get("usage_usec", 0) * 1000, "user": st.get("user_usec", 0) * 1000,
                                    "kernel": st.get("system_usec", 0) * 1000},
                          "throttling": {"periods": st.get("nr_periods", 0),
                                         "throttledPeriods": st.get("nr_throttled", 0),
                                         "throttledTime": st.get("throttled_usec", 0) * 1000}}
        return out
