"""cgroup v1 driver (also handles the hybrid layout: v1 controllers + a cgroup2 mount, e.g. /sys/fs/cgroup/unified,
in which the container is placed as well, like runc does).

Every hierarchy mounted under `root` is joined: one entry per mount, named after its directory ("cpu",
"cpu,cpuacct", "memory", "systemd" for name=systemd, "unified" for the cgroup2 mount in hybrid mode).
"""
import os

from . import CgroupError
from . import common as C

_FROZEN, _THAWED = "FROZEN", "THAWED"


class V1Manager(C.Rootless):
    version = 1

    def __init__(self, container_id, inner, root, hierarchies, created=None, cgroups_path=None):
        self.id = container_id
        self.inner = inner
        self.root = root
        # [name, mountpoint, fstype, controllers, dir]
        self.hierarchies = [list(h) for h in hierarchies]
        self.created = list(created or [])
        self.cgroups_path = cgroups_path
        self._by_ctrl = None
        self._own = {}  # name -> the caller's own cgroup in that hierarchy (discover; for rootless left-outs)

    # ------------------------------------------------------------------------------------------ construction

    @classmethod
    def discover(cls, container_id, inner, root, mounts, own):
        own_by_ctrl, own_v2 = {}, None
        for hid, ctrls, p in own:
            if hid == "0" and not ctrls:
                own_v2 = p
            for c in ctrls:
                own_by_ctrl[c] = p
        hiers, seen, owns = [], set(), {}
        for mp, mroot, fstype, opts in mounts:
            if mp == root or not C.under(mp, root):
                continue
            if fstype == "cgroup":
                ctrls = [o for o in opts if o in own_by_ctrl]
                if not ctrls:
                    continue
                key = tuple(sorted(ctrls))
                ownp = own_by_ctrl[ctrls[0]]
            else:
                ctrls, key, ownp = [], ("",), own_v2 or "/"
            if key in seen:
                continue
            seen.add(key)
            if inner.startswith("/"):
                d = C.join(mp, inner)
            else:
                d = C.join(C.join(mp, C.rel_own(ownp, mroot)), inner)
            hiers.append([os.path.basename(mp), mp, fstype, ctrls, d])
            owns[hiers[-1][0]] = C.join(mp, C.rel_own(ownp, mroot))
        if not hiers:
            raise CgroupError(f"no cgroup hierarchy is mounted under {root} (see /proc/self/mountinfo)")
        if not any(h[2] == "cgroup" for h in hiers):
            raise CgroupError(f"{root} has only a cgroup2 mount below it and is not itself cgroup2: unsupported layout")
        m = cls(container_id, inner, root, hiers)
        m._own = owns
        return m

    @classmethod
    def from_dict(cls, d):
        try:
            m = cls(d["id"], d["inner"], d["root"], d["hierarchies"], d.get("created"), d.get("cgroupsPath"))
        except (KeyError, TypeError):
            raise CgroupError("container state: invalid cgroup v1 record") from None
        return m.restore_rootless(d)

    def to_dict(self):
        return self.rootless_fields({"version": 1, "id": self.id, "inner": self.inner, "root": self.root,
                                     "hierarchies": [list(h) for h in self.hierarchies],
                                     "created": list(self.created)})

    def kept(self):
        return self.hierarchies

    # ------------------------------------------------------------------------------------------ lookups

    @property
    def by_ctrl(self):
        if self._by_ctrl is None:
            m = {}
            for name, _mp, fstype, ctrls, d in self.hierarchies:
                if fstype == "cgroup2":
                    m[""] = d
                for c in ctrls:
                    m[c] = d
                    if c.startswith("name="):
                        m[c[5:]] = d
            self._by_ctrl = m
        return self._by_ctrl

    def path(self, controller):
        """The container's directory in the hierarchy of `controller` ("" = the unified one), or None."""
        return self.by_ctrl.get(controller)

    def paths(self):
        return {h[0]: h[4] for h in self.hierarchies}

    def mount_plan(self):
        """(name, host dir) per hierarchy: the container's cgroup, or (left out, rootless) the caller's own,
        which the container is still in there (runc binds the init's own cgroup in each)."""
        return [(h[0], h[4]) for h in self.hierarchies] + [(x[0], x[1]) for x in self.skipped]

    def _pid_dir(self):
        for c in ("devices", "pids", "memory", "freezer"):
            d = self.by_ctrl.get(c)
            if d:
                return d
        return self.hierarchies[0][4] if self.hierarchies else None

    def _skip(self, h, err):
        """Rootless: leave hierarchy `h` out (see cgroups.ROOTLESS); the directories made there go again."""
        mine = [d for d in self.created if C.under(d, h[1])]
        if mine:
            C.remove_dirs(mine, timeout=0.2)
            self.created = [d for d in self.created if d not in mine]
        self.hierarchies.remove(h)
        own = self._own.get(h[0]) or C.own_dir_of(h[4], self.inner, h[1])
        self.skipped = list(self.skipped) + [[h[0], own, list(h[3]), f"rootless: {h[4]}: {C.reason(err)}"]]
        self._by_ctrl = None

    # ------------------------------------------------------------------------------------------ create

    def to_create(self):
        """The directories create() will make (recorded before they exist, so that nothing can leak untracked)."""
        return [d for h in self.hierarchies for d in C.missing_dirs(h[4], stop=h[1])]

    def create(self):
        try:
            for h in list(self.hierarchies):
                try:
                    C.make_dirs(h[4], self.created, stop=h[1])
                except OSError as e:
                    if not self.may_skip(e, _joined_only(h)):
                        raise
                    self._skip(h, e)
            cs = self.by_ctrl.get("cpuset")
            if cs:
                try:
                    self._cpuset_populate(cs)
                except CgroupError as e:
                    if not self.may_skip(e):
                        raise
                    self._skip(next(h for h in self.hierarchies if "cpuset" in h[3]), e)
        except CgroupError:
            self._undo()
            raise
        except OSError as e:
            self._undo()
            raise CgroupError(f"cannot create cgroup {getattr(e, 'filename', '') or ''}: {C.reason(e)}") from None

    def _undo(self):
        C.remove_dirs(self.created, timeout=0.2)
        self.created = []

    def _cpuset_populate(self, leaf):
        """A new v1 cpuset cgroup starts with empty cpuset.cpus/mems and refuses tasks: copy them down from the
        nearest populated ancestor into every empty directory on the way (the ones we just made, normally)."""
        mine = [d for d in self.created if C.under(leaf, d)]
        if not mine:
            cur = C.try_read(leaf, "cpuset.cpus", "x").strip()
            mems = C.try_read(leaf, "cpuset.mems", "x").strip()
            if cur and mems:
                return
            mine = [leaf]
        top = mine[0]
        mp = next(h[1] for h in self.hierarchies if "cpuset" in h[3])
        # climb to the nearest populated ancestor
        chain, d = [], os.path.dirname(top)
        cpus = mems = ""
        while True:
            cpus = C.try_read(d, "cpuset.cpus", "").strip()
            mems = C.try_read(d, "cpuset.mems", "").strip()
            if (cpus and mems) or d == mp or not C.under(d, mp):
                break
            chain.append(d)
            d = os.path.dirname(d)
        for d in reversed(chain):           # empty existing ancestors (someone else's), top-down
            self._cpuset_write(d, cpus, mems)
        for d in mine:
            self._cpuset_write(d, cpus, mems)

    def _cpuset_write(self, d, cpus, mems):
        for f, v in (("cpuset.cpus", cpus), ("cpuset.mems", mems)):
            try:
                C.write_file(d, f, v or "\n")
            except OSError as e:
                err = CgroupError(f"cannot initialise {d}/{f} from its parent: {C.reason(e)}")
                err.errno = e.errno
                raise err from None

    # ------------------------------------------------------------------------------------------ resources

    def apply(self, resources, default_devices=True):
        """Configure the container's cgroups from linux.resources (raw dict; None = only the device rules)."""
        self._set(resources, update=False, default_devices=default_devices)

    def update(self, resources, default_devices=True):
        """`ocirun update`: like apply, but device rules are only touched when given, and changed without a
        window where every device is denied (the transition is computed from devices.list)."""
        self._set(resources, update=True, default_devices=default_devices)

    def _set(self, resources, update, default_devices):
        from . import devices, resources as R

        res = resources or {}
        if not isinstance(res, dict):
            raise CgroupError(f"{C.RES}: must be an object")
        mem_dir = self.by_ctrl.get("memory")
        # (a cgroup this manager made is fresh, with unlimited memory and memsw, only when create applies the
        # config: `created` stays in the state record, and an update finds the limits create wrote)
        fresh = not update and bool(mem_dir and mem_dir in self.created)
        ops = R.plan_v1(res, update=update, created_memory=fresh)
        dev_writes = []
        if not update or "devices" in res:
            model = devices.build(res.get("devices"), default_devices)
            devices.check_v1(model)
            ddir = self.by_ctrl.get("devices")
            if ddir is None:
                if not devices.is_allow_all(model) and not (self.skipped_for("devices") and self.is_rootless()):
                    raise CgroupError(f"{devices.FIELD}: the devices cgroup controller is not mounted on this host")
            else:
                current = None
                if update:
                    txt = C.try_read(ddir, "devices.list")
                    current = devices.from_list(txt) if txt is not None else None
                dev_writes = devices.transition(model, current)
        # resolve directories before writing anything
        todo = self.resolve(ops) + self._unified_writes(res.get("unified"))
        cpuset = [t for t in todo if t[1] and t[1].startswith("cpuset.")]
        rest = [t for t in todo if not (t[1] and t[1].startswith("cpuset."))]
        for t in cpuset:
            self._do(*t)
        ddir = self.by_ctrl.get("devices")
        try:
            for fname, line in dev_writes:
                C.write_or_raise(ddir, fname, line, devices.FIELD)
        except CgroupError:
            # rootless: device rules are not expected to work (writing them needs CAP_SYS_ADMIN), so runc
            # ignores the devices controller's errors; the container's /dev has only the nodes it was given
            if not self.is_rootless():
                raise
        for t in rest:
            self._do(*t)

    def resolve(self, ops):
        """[(dir, file, value, field)] for planned writes (resources.plan_v1); a limit whose controller this
        container has no cgroup in is refused, before anything is written."""
        todo = []
        for ctrl, fname, value, field in ops:
            d = self.by_ctrl.get(ctrl)
            # (hugepageLimits on a hybrid host whose hugetlb is only on cgroup2: refused, as runc does; the
            # limit can still be set there with linux.resources.unified "hugetlb.<size>.max")
            if d is None and self.skipped_for(ctrl):
                raise self.unjoined(field, ctrl)
            if d is None:
                what = fname or ctrl + ".*"
                raise CgroupError(f"{field}: cannot write {what}: no such file (cgroup controller {ctrl} "
                                  "is not mounted on this host)")
            todo.append((d, fname, value, field))
        return todo

    def _do(self, d, fname, value, field):
        if fname is None:
            value(d, self)
        else:
            C.write_or_raise(d, fname, value, field)

    def _unified_writes(self, unified):
        """linux.resources.unified on a v1 host: on a hybrid host, keys whose controller is enabled on the cgroup2
        mount are written there (in the container's unified directory); anything else is refused clearly."""
        if not unified:
            return []
        if not isinstance(unified, dict):
            raise CgroupError(f"{C.RES}.unified: must be an object")
        udir = self.by_ctrl.get("")
        cg2 = next((h[1] for h in self.hierarchies if h[2] == "cgroup2"), None)
        if udir is None and self.skipped_for(""):
            raise self.unjoined(f"{C.RES}.unified", "")
        if udir is None or cg2 is None:
            raise CgroupError(f"{C.RES}.unified: cannot be used with cgroup v1 (this host has no cgroup v2 hierarchy)")
        avail = C.try_read(cg2, "cgroup.controllers", "").split()
        out = []
        for k, v in unified.items():
            field = f"{C.RES}.unified.{k}"
            if "/" in k or k in ("", ".", "..") or not isinstance(v, str):
                raise CgroupError(f"{field}: invalid key or value")
            ctrl = k.split(".", 1)[0]
            if ctrl not in ("cgroup", "") and ctrl not in avail:
                raise CgroupError(f"{field}: controller {ctrl} is not on this host's cgroup v2 hierarchy "
                                  f"(hybrid host; cgroup2 has: {' '.join(avail) or 'none'})")
            if ctrl not in ("cgroup", ""):
                self._enable_v2_chain(udir, cg2, ctrl, field)
            out.append((udir, k, v, field))
        return out

    def _enable_v2_chain(self, udir, mp, ctrl, field):
        chain, d = [], os.path.dirname(udir)
        while C.under(d, mp):
            chain.append(d)
            if d == mp:
                break
            d = os.path.dirname(d)
        for d in reversed(chain):
            if ctrl not in C.try_read(d, "cgroup.subtree_control", "").split():
                try:
                    C.write_file(d, "cgroup.subtree_control", "+" + ctrl)
                except OSError as e:
                    raise CgroupError(f"{field}: cannot enable {ctrl} in {d}/cgroup.subtree_control: "
                                      f"{C.reason(e)}") from None

    def add_pid(self, pid, exec_=False):
        """Place `pid` in every hierarchy. Rootless: a hierarchy the caller may not join is left out (create;
        see cgroups.ROOTLESS), or (exec_, runc's rootless exec) the process stays where it is there."""
        s = str(pid)
        for h in list(self.hierarchies):
            try:
                C.write_file(h[4], "cgroup.procs", s)
            except OSError as e:
                if self.may_skip(e, _joined_only(h)):
                    if not exec_:
                        self._skip(h, e)
                    continue
                raise CgroupError(f"cannot add process {pid} to cgroup {h[4]} (cgroup.procs): {C.reason(e)}") from None

    def pids(self):
        d = self._pid_dir()
        if d is None or not os.path.isdir(d):
            return []
        return C.procs_recursive(d)

    def signal_all(self, sig):
        """kill --all: freeze (so nothing forks meanwhile), signal every process, thaw."""
        fz = self.by_ctrl.get("freezer")
        froze = False
        if fz and not self.is_frozen():
            try:
                self.freeze()
                froze = True
            except CgroupError:
                froze = False
        try:
            C.kill_pids(self.pids(), sig)
        finally:
            if froze:
                self.thaw()

    # ------------------------------------------------------------------------------------------ freezer

    def freeze(self):
        import time

        d = self.by_ctrl.get("freezer")
        if not d:
            raise self._no_freezer("freeze")
        try:
            for i in range(1000):
                if i % 50 == 49:
                    # A stubborn FREEZING (new tasks keep arriving): thaw, breathe, retry.
                    C.write_file(d, "freezer.state", _THAWED)
                    time.sleep(0.01)
                C.write_file(d, "freezer.state", _FROZEN)
                st = C.read_file(d, "freezer.state").strip()
                if st == _FROZEN:
                    return
                if st != "FREEZING":
                    raise CgroupError(f"cannot freeze {d}: unexpected freezer.state {st!r}")
                if i % 25 == 24:
                    time.sleep(0.0001)
        except OSError as e:
            self._thaw_quiet(d)
            raise CgroupError(f"cannot freeze {d} (freezer.state): {C.reason(e)}") from None
        self._thaw_quiet(d)
        raise CgroupError(f"cannot freeze {d}: stuck in FREEZING")

    def _no_freezer(self, verb):
        s = self.skipped_for("freezer")
        if s:
            return CgroupError(f"cannot {verb}: the container has no freezer cgroup of its own ({s[3]})")
        return CgroupError(f"cannot {verb}: the freezer cgroup controller is not mounted on this host")

    def _thaw_quiet(self, d):
        try:
            C.write_file(d, "freezer.state", _THAWED)
        except OSError:
            pass

    def thaw(self):
        d = self.by_ctrl.get("freezer")
        if not d:
            raise self._no_freezer("thaw")
        C.write_or_raise(d, "freezer.state", _THAWED, "freezer")

    def is_frozen(self):
        d = self.by_ctrl.get("freezer")
        if not d:
            return False
        st = C.try_read(d, "freezer.state", "")
        return st.strip() in (_FROZEN, "FREEZING")

    # ------------------------------------------------------------------------------------------ destroy

    def destroy(self, force=False, timeout=5.0):
        """Kill what is left (only if the cgroup is ours, or force), then rmdir the directories we created,
        deepest first. Idempotent."""

        # every hierarchy, not one: a create interrupted while the init was being placed leaves it in some
        # hierarchies only (and delete --force then found the cpu cgroup busy)
        dirs = [h[4] for h in self.hierarchies if os.path.isdir(h[4]) and (force or h[4] in self.created)]
        killed = False
        pids = sorted({p for d in dirs for p in C.procs_recursive(d)})
        if pids:
            C.kill_pids(pids, C.SIGKILL)
            fz = self.by_ctrl.get("freezer")
            if fz and self.is_frozen():
                self._thaw_quiet(fz)        # frozen tasks cannot die
            killed = True
        if not self.hierarchies:  # (rootless, every hierarchy left out: nothing of ours is left)
            C.remove_dirs(self.created)
            self.created = []
            return
        C.finish_destroy(self, dirs or [self._pid_dir()], timeout, kill=killed)

    # ------------------------------------------------------------------------------------------ stats

    def stats(self):
        out = {}
        m = self.by_ctrl.get("memory")
        if m:
            def md(prefix):
                r = {}
                for k, f in (("usage", "usage_in_bytes"), ("max", "max_usage_in_bytes"), ("failcnt", "failcnt"),
                             ("limit", "limit_in_bytes")):
                    v = C.to_int(C.try_read(m, f"{prefix}.{f}"))
                    if v is not None:
                        r[k] = v
                return r
            out["memory"] = {"usage": md("memory"), "swap": md("memory.memsw"), "kernel": md("memory.kmem"),
                             "kernelTCP": md("memory.kmem.tcp"),
                             "raw": C.key_values(C.try_read(m, "memory.stat", ""))}
        p = self.by_ctrl.get("pids")
        if p:
            cur = C.to_int(C.try_read(p, "pids.current"))
            lim = C.try_read(p, "pids.max", "").strip()
            out["pids"] = {"current": cur or 0, "limit": 0 if lim in ("max", "") else int(lim)}
        ca = self.by_ctrl.get("cpuacct")
        cpu = {}
        if ca:
            usage = {"total": C.to_int(C.try_read(ca, "cpuacct.usage")) or 0,
                     "percpu": [int(x) for x in C.try_read(ca, "cpuacct.usage_percpu", "").split()]}
            st = C.key_values(C.try_read(ca, "cpuacct.stat", ""))
            hz = os.sysconf("SC_CLK_TCK") or 100
            usage["user"] = st.get("user", 0) * 1000000000 // hz
            usage["kernel"] = st.get("system", 0) * 1000000000 // hz
            cpu["usage"] = usage
        c = self.by_ctrl.get("cpu")
        if c:
            st = C.key_values(C.try_read(c, "cpu.stat", ""))
            cpu["throttling"] = {"periods": st.get("nr_periods", 0), "throttledPeriods": st.get("nr_throttled", 0),
                                 "throttledTime": st.get("throttled_time", 0)}
        if cpu:
            out["cpu"] = cpu
        return out


def _joined_only(h):
    """A hierarchy with no resource controller (a hybrid host's cgroup2 one, name=systemd): runc only joins
    it and ignores the errors (its NameGroup); rootless, so does ocirun, even with a cgroupsPath."""
    return h[2] == "cgroup2" or all(c.startswith("name=") for c in h[3])
