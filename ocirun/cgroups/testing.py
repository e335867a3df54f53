"""A fake cgroupfs for unit tests (no root needed): plain directories and files under a tmp dir, plus a tiny
"kernel" that fills new cgroup directories with their control files, lets rmdir remove them, and logs every
write made by the drivers (in order).

    fk = FakeCgroupfs(tmp_path, version=1)          # or version=2, or hybrid=True
    fk.install(monkeypatch)
    mgr = cgroups.new_manager("id", "/a/b", **fk.kwargs)
    ... fk.writes == [(dir, file, value), ...]; fk.read("memory", "/a/b", "memory.limit_in_bytes")
"""
import errno
import os

from . import common

BIG = "9223372036854771712"

V1_FILES = {
    "cpu": {"cpu.shares": "1024", "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "-1", "cpu.cfs_burst_us": "0",
            "cpu.rt_period_us": "1000000", "cpu.rt_runtime_us": "0", "cpu.idle": "0",
            "cpu.stat": "nr_periods 3\nnr_throttled 1\nthrottled_time 500\n"},
    "cpuacct": {"cpuacct.usage": "123456", "cpuacct.usage_percpu": "100000 23456", "cpuacct.stat": "user 5\nsystem 7\n"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "memory": {"memory.limit_in_bytes": BIG, "memory.memsw.limit_in_bytes": BIG, "memory.soft_limit_in_bytes": BIG,
               "memory.kmem.limit_in_bytes": BIG, "memory.kmem.tcp.limit_in_bytes": BIG, "memory.swappiness": "60",
               "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n", "memory.use_hierarchy": "1",
               "memory.usage_in_bytes": "4096", "memory.max_usage_in_bytes": "8192", "memory.failcnt": "0",
               "memory.memsw.usage_in_bytes": "4096", "memory.stat": "cache 0\nrss 4096\n"},
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm\n"},
    "freezer": {"freezer.state": "THAWED\n"},
    "blkio": {"blkio.weight": "500", "blkio.weight_device": "", "blkio.leaf_weight": "500",
              "blkio.leaf_weight_device": "", "blkio.throttle.read_bps_device": "",
              "blkio.throttle.write_bps_device": "", "blkio.throttle.read_iops_device": "",
              "blkio.throttle.write_iops_device": ""},
    "pids": {"pids.max": "max", "pids.current": "0"},
    "hugetlb": {"hugetlb.2MB.limit_in_bytes": BIG, "hugetlb.1GB.limit_in_bytes": BIG},
    "net_cls": {"net_cls.classid": "0"},
    "net_prio": {"net_prio.ifpriomap": ""},
    "rdma": {"rdma.max": ""},
    "name=systemd": {},
}

# file -> (the file it is checked against, True if it must stay <= that one else >=)
_PAIRED = {"memory.limit_in_bytes": ("memory.memsw.limit_in_bytes", True),
           "memory.memsw.limit_in_bytes": ("memory.limit_in_bytes", False),
           "cpu.rt_runtime_us": ("cpu.rt_period_us", True),
           "cpu.rt_period_us": ("cpu.rt_runtime_us", False)}

V2_CONTROLLERS = "cpuset cpu io memory hugetlb pids rdma misc"
V2_FILES = {
    "cgroup.freeze": "0", "cgroup.events": "populated 0\nfrozen 0\n", "cgroup.kill": "",
    "cgroup.type": "domain", "cpu.weight": "100", "cpu.max": "max 100000", "cpu.max.burst": "0", "cpu.idle": "0",
    "cpu.stat": "usage_usec 10\nuser_usec 4\nsystem_usec 6\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n",
    "cpuset.cpus": "", "cpuset.mems": "", "memory.max": "max", "memory.high": "max", "memory.low": "0", "memory.swap.max": "max",
    "memory.current": "4096", "memory.swap.current": "0", "memory.peak": "8192", "memory.stat": "anon 4096\n",
    "pids.max": "max", "pids.current": "0", "io.weight": "default 100", "io.max": "",
    "hugetlb.2MB.max": "max", "hugetlb.2MB.rsvd.max": "max", "hugetlb.1GB.max": "max", "rdma.max": "",
}


class _OsProxy:
    """Stands in for `os` inside ocirun.cgroups.common: mkdir/rmdir behave like on cgroupfs."""

    def __init__(self, fake):
        self._fake = fake

    def __getattr__(self, name):
        return getattr(os, name)

    def mkdir(self, path, mode=0o777):
        for prefix, err in self._fake.deny_mkdir.items():
            if common.under(path, prefix):
                raise OSError(err, os.strerror(err), path)
        os.mkdir(path, mode)
        self._fake._populate(path)

    def rmdir(self, path):
        self._fake._rmdir(path)


class FakeCgroupfs:
    def __init__(self, base, version=1, hybrid=True, controllers=None, own=None, mount_root="/",
                 cgroup2_controllers="hugetlb"):
        self.base = str(base)
        self.root = self.base + "/sys/fs/cgroup"
        self.version = version
        self.writes = []
        self.fail = {}          # file name -> errno to raise on write
        self.deny_mkdir = {}    # directory -> errno to raise on mkdir at or below it (a rootless caller's EACCES)
        self.mounts = {}        # mountpoint -> ("cgroup"|"cgroup2", [controllers])
        own = own or {}
        mi, pc = [], []
        if version == 2:
            os.makedirs(self.root)
            self.mounts[self.root] = ("cgroup2", [])
            mi.append(f"41 23 0:38 {mount_root} {self.root} rw,relatime - cgroup2 cgroup2 rw")
            pc.append(f"0::{own.get('', '/')}")
            self._fill(self.root, top=True)
        else:
            ctrls = controllers or ["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
                                    "name=systemd"]
            os.makedirs(self.root)
            for i, c in enumerate(ctrls):
                names = c.split(",")
                dirname = names[0][5:] if names[0].startswith("name=") else c
                mp = self.root + "/" + dirname
                os.makedirs(mp)
                self.mounts[mp] = ("cgroup", names)
                mi.append(f"{32 + i} 31 0:{29 + i} {mount_root} {mp} rw,relatime - cgroup cgroup rw,{c}")
                pc.append(f"{len(ctrls) - i}:{c}:{own.get(names[0], '/')}")
                self._fill(mp, top=True)
            if hybrid:
                mp = self.root + "/unified"
                os.makedirs(mp)
                self.mounts[mp] = ("cgroup2", [])
                self.cgroup2_controllers = cgroup2_controllers
                mi.append(f"99 31 0:99 / {mp} rw,relatime - cgroup2 cgroup2 rw")
                pc.append(f"0::{own.get('', '/')}")
                self._fill(mp, top=True)
        self.mountinfo = self.base + "/mountinfo"
        self.proc_cgroup = self.base + "/proc_cgroup"
        with open(self.mountinfo, "w") as f:
            f.write("23 1 0:21 / /sys rw - sysfs sysfs rw\n31 23 0:28 / %s rw - tmpfs tmpfs rw\n"
                    % self.root + "\n".join(mi) + "\n")
        with open(self.proc_cgroup, "w") as f:
            f.write("\n".join(pc) + "\n")
        self.kwargs = {"root": self.root, "mountinfo": self.mountinfo, "proc_cgroup": self.proc_cgroup}

    # ------------------------------------------------------------------------------------------ the fake kernel

    def _mount_of(self, path):
        best = None
        for mp in self.mounts:
            if common.under(path, mp) and (best is None or len(mp) > len(best)):
                best = mp
        return best

    def _fill(self, path, top=False):
        mp = self._mount_of(path)
        fstype, ctrls = self.mounts[mp]
        files = {"cgroup.procs": "", "tasks": ""} if fstype == "cgroup" else {"cgroup.procs": ""}
        if fstype == "cgroup":
            for c in ctrls:
                files.update(V1_FILES.get(c, {}))
            if top and "cpuset" in ctrls:
                files.update({"cpuset.cpus": "0-3", "cpuset.mems": "0"})
            if top:
                files.pop("freezer.state", None)
        else:
            avail = V2_CONTROLLERS if self.version == 2 else self.cgroup2_controllers
            files.update({"cgroup.controllers": avail, "cgroup.subtree_control": ""})
            if self.version == 2:
                files.update(V2_FILES)
                if top:
                    for k in ("cgroup.freeze", "cgroup.events", "cgroup.kill", "cpu.weight", "cpu.max",
                              "memory.max", "pids.max"):
                        files.pop(k, None)
                    files.update({"cpuset.cpus": "0-3", "cpuset.mems": "0"})
            elif "hugetlb" in avail:
                files.update({"hugetlb.2MB.max": "max", "hugetlb.1GB.max": "max"})
        for name, content in files.items():
            with open(path + "/" + name, "w") as f:
                f.write(content)

    def _populate(self, path):
        if self._mount_of(path):
            self._fill(path)

    def _rmdir(self, path):
        if not self._mount_of(path):
            return os.rmdir(path)
        if not os.path.isdir(path):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        entries = os.listdir(path)
        if any(os.path.isdir(path + "/" + e) for e in entries):
            raise OSError(errno.EBUSY, "Device or resource busy", path)
        with open(path + "/cgroup.procs") as f:
            if f.read().strip():
                raise OSError(errno.EBUSY, "Device or resource busy", path)
        for e in entries:
            os.unlink(path + "/" + e)
        os.rmdir(path)

    def _write(self, dirpath, fname, value):
        if fname in self.fail:
            e = self.fail[fname]
            raise OSError(e, os.strerror(e), dirpath + "/" + fname)
        if isinstance(value, bytes):
            value = value.decode()
        p = dirpath + "/" + fname
        stored = self._paired(dirpath, fname, value) if fname in _PAIRED and os.path.exists(p) else value
        self.writes.append((dirpath, fname, value))
        value = stored
        if not os.path.exists(p):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", p)
        if fname in ("devices.allow", "devices.deny"):
            with open(dirpath + "/devices.list") as f:
                lst = f.read()
            if value.startswith("a "):
                lst = "a *:* rwm\n" if fname == "devices.allow" else ""
            elif fname == "devices.allow":
                lst = lst + value + "\n" if "a *:* rwm" not in lst else lst
            with open(dirpath + "/devices.list", "w") as f:
                f.write(lst)
        if fname == "cgroup.subtree_control":
            with open(p) as f:
                cur = f.read().split()
            for tok in value.split():
                c = tok[1:]
                if tok[0] == "+" and c not in cur:
                    cur.append(c)
                elif tok[0] == "-" and c in cur:
                    cur.remove(c)
            value = " ".join(cur)
        if fname == "cgroup.freeze":
            with open(dirpath + "/cgroup.events", "w") as f:
                f.write(f"populated 0\nfrozen {value.strip()}\n")
        if fname == "cgroup.kill":
            with open(dirpath + "/cgroup.procs", "w") as f:
                f.write("")
            return
        with open(p, "w") as f:
            f.write(value)

    def _paired(self, dirpath, fname, value):
        """The v1 kernel's cross-checks between two files: memory.limit_in_bytes <= memory.memsw.limit_in_bytes
        (-1 stores the page-aligned maximum), cpu.rt_runtime_us <= cpu.rt_period_us; EINVAL otherwise."""
        other, must_be_le = _PAIRED[fname]
        try:
            with open(dirpath + "/" + other) as f:
                cur = int(f.read().strip())
        except (OSError, ValueError):
            return value
        new = int(value)
        if new == -1 and fname.startswith("memory."):
            new, value = int(BIG), BIG
        if (new > cur) if must_be_le else (new < cur):
            raise OSError(errno.EINVAL, "Invalid argument", dirpath + "/" + fname)
        return value

    def install(self, monkeypatch):
        monkeypatch.setattr(common, "os", _OsProxy(self))
        monkeypatch.setattr(common, "write_file", self._write)
        # the resources module imported write_file by name
        from . import resources
        monkeypatch.setattr(resources, "write_file", self._write)
        # v2 device rules become an eBPF program attached with bpf(2): record them instead on a fake tree
        from . import v2
        self.device_programs = _FakeDeviceLayer()
        monkeypatch.setattr(v2, "device_layer", self.device_programs)
        return self

    # ------------------------------------------------------------------------------------------ test helpers

    def dir(self, hierarchy, cgpath):
        base = self.root if self.version == 2 else self.root + "/" + hierarchy
        return common.join(base, cgpath)

    def read(self, hierarchy, cgpath, fname):
        with open(self.dir(hierarchy, cgpath) + "/" + fname) as f:
            return f.read()

    def writes_to(self, fname):
        return [v for _d, f, v, in self.writes if f == fname]


class _FakeDeviceLayer:
    """Stands in for ocirun.cgroups.bpf on a fake cgroupfs: records (cgroup dir, rule list) per install."""

    def __init__(self):
        self.installed = []

    def install(self, dirpath, model):
        self.installed.append((dirpath, model.to_list()))
        return len(self.installed)
