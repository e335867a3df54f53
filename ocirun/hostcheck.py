"""What this host cannot honour for a config (for `ocirun check`): findings, not refusals.

Each finding is (severity, JSON pointer, message): "error" where create refuses the config on this host (a
namespace type, cgroup controller or file, seccomp action or LSM the host lacks), "warning" where create
warns and goes on (a capability outside the bounding set) or may fail (idmapped mounts). Nothing is created or written: the cgroup manager is only discovered
(the hierarchies mounted here and where the container's cgroup would go), and files are looked up.
"""
import os

RES = "/linux/resources"


def findings(cfg, systemd=False):
    out = []
    lin = cfg.linux
    if lin is not None:
        _namespaces(lin, out)
        _cgroups(cfg, lin, systemd, out)
        _seccomp(lin, out)
        _idmapped(cfg, out)
    _lsm(cfg, out)
    _capabilities(cfg, out)
    return out


def _namespaces(lin, out):
    from .namespaces import PROC_NAME

    for i, ns in enumerate(lin.namespaces):
        if not os.path.exists(f"/proc/self/ns/{PROC_NAME.get(ns.type, ns.type)}"):
            out.append(("error", f"/linux/namespaces/{i}/type", f"this kernel has no {ns.type} namespaces"))


def _lsm(cfg, out):
    from . import lsm

    host = lsm.Host()
    p = cfg.process
    if p is not None and p.apparmor_profile and not host.apparmor_enabled():
        out.append(("error", "/process/apparmorProfile", "AppArmor is not enabled on this host (create refuses)"))
    if p is not None and p.selinux_label and not host.selinux_enabled():
        out.append(("error", "/process/selinuxLabel", "SELinux is not enabled on this host (create refuses)"))
    if cfg.linux is not None and cfg.linux.mount_label and not host.selinux_enabled():
        out.append(("error", "/linux/mountLabel", "SELinux is not enabled on this host (create refuses)"))


def _capabilities(cfg, out):
    from . import capabilities

    p = cfg.process
    if p is None or p.capabilities is None:
        return
    r = capabilities.resolve(p.capabilities)
    capabilities.drop_unavailable(r)
    for w in r.warnings:
        field, _, msg = w.partition(": ")
        out.append(("warning", "/" + field.replace(".", "/").replace("[", "/").replace("]", ""), msg))


# file a resource field needs (v1) when the controller is there but the kernel may lack the file
_V1_FILES = {
    "blockIO/weight": ("blkio", ("blkio.weight", "blkio.bfq.weight")),
    "blockIO/leafWeight": ("blkio", ("blkio.leaf_weight",)),
    "memory/swap": ("memory", ("memory.memsw.limit_in_bytes",)),
    "memory/kernel": ("memory", ("memory.kmem.limit_in_bytes",)),
    "memory/kernelTCP": ("memory", ("memory.kmem.tcp.limit_in_bytes",)),
    "cpu/realtimeRuntime": ("cpu", ("cpu.rt_runtime_us",)),
    "cpu/realtimePeriod": ("cpu", ("cpu.rt_period_us",)),
    "cpu/burst": ("cpu", ("cpu.cfs_burst_us",)),
    "cpu/idle": ("cpu", ("cpu.idle",)),
}
_V1_CONTROLLERS = {"memory": "memory", "cpu": "cpu", "pids": "pids", "blockIO": "blkio", "hugepageLimits": "hugetlb",
                   "network": "net_cls", "rdma": "rdma", "devices": "devices"}


def _cgroups(cfg, lin, systemd, out):
    from . import cgroups
    from .errors import OciError

    if systemd:
        # create's refusals of the systemd driver, whatever the resources: no systemd here, a cgroupsPath not
        # of the form slice:prefix:name, a bad slice, unit property annotations it cannot read
        from .cgroups import systemd as sd

        try:
            cgroups.check_driver(True)
        except OciError as e:
            out.append(("error", "/", str(e)))
            return
        try:
            sd.parse_path(lin.cgroups_path, "ocirun-check")
            sd.annotation_props(cfg.annotations)
        except OciError as e:
            field, _sep, rest = str(e).partition(": ")
            out.append(("error", "/linux/cgroupsPath", rest) if field == "linux.cgroupsPath"
                       else ("error", "/annotations", str(e)))
            return
    res = lin.resources if isinstance(lin.resources, dict) else {}
    if not res:
        return

    try:
        mgr = cgroups.new_manager("ocirun-check", lin.cgroups_path, systemd=systemd)
    except OciError as e:
        out.append(("error", "/linux/cgroupsPath", str(e)))
        return
    from .cgroups import resources as R

    by_ctrl = getattr(mgr, "by_ctrl", None)
    try:
        (R.plan_v2 if by_ctrl is None else R.plan_v1)(res)
    except OciError as e:
        msg = str(e)
        field, sep, rest = msg.partition(": ")
        out.append(("error", "/" + field.replace(".", "/").replace("[", "/").replace("]", "") if sep else RES,
                    rest if sep else msg))
        return
    if by_ctrl is None:  # cgroup v2
        ctrls = _v2_controllers()
        for key, ctrl in (("memory", "memory"), ("cpu", "cpu"), ("pids", "pids"), ("blockIO", "io"),
                          ("hugepageLimits", "hugetlb"), ("rdma", "rdma")):
            if res.get(key) and ctrl not in ctrls:
                out.append(("error", f"{RES}/{key}", f"the {ctrl} controller is not enabled on this host's cgroup2"))
        if (res.get("network") or {}):
            out.append(("warning", f"{RES}/network", "cgroup v2 has no net_cls/net_prio: not applied"))
        return
    for key, ctrl in _V1_CONTROLLERS.items():
        val = res.get(key)
        if not val or ctrl in by_ctrl:
            continue
        if key == "network":
            sub = [(f"{RES}/network/classID", "net_cls")] if val.get("classID") is not None else []
            sub += [(f"{RES}/network/priorities", "net_prio")] if val.get("priorities") else []
            for ptr, c in sub:
                if c not in by_ctrl:
                    out.append(("error", ptr, f"the {c} cgroup controller is not mounted on this host"))
            continue
        out.append(("error", f"{RES}/{key}", f"the {ctrl} cgroup controller is not mounted on this host"))
    for key, (ctrl, files) in _V1_FILES.items():
        group, _, field = key.partition("/")
        if (res.get(group) or {}).get(field) in (None, 0) or ctrl not in by_ctrl:
            continue
        base = _hierarchy_root(mgr, ctrl)
        if base and not any(os.path.exists(os.path.join(base, f)) for f in files):
            out.append(("error", f"{RES}/{key}", f"this host's {ctrl} cgroup has no {' or '.join(files)}"))


def _hierarchy_root(mgr, ctrl):
    for h in getattr(mgr, "hierarchies", ()) or ():
        if ctrl in h[3]:
            return h[1]
    return None


def _v2_controllers():
    for p in ("/sys/fs/cgroup/cgroup.controllers", "/sys/fs/cgroup/unified/cgroup.controllers"):
        try:
            with open(p) as f:
                return set(f.read().split())
        except OSError:
            continue
    return set()


def _seccomp(lin, out):
    sc = lin.seccomp
    if not isinstance(sc, dict):
        return
    try:
        with open("/proc/sys/kernel/seccomp/actions_avail") as f:
            avail = set(f.read().split())
    except OSError:
        out.append(("error", "/linux/seccomp", "this kernel has no seccomp filter support"))
        return
    kernel = {"SCMP_ACT_KILL": "kill_thread", "SCMP_ACT_KILL_THREAD": "kill_thread",
              "SCMP_ACT_KILL_PROCESS": "kill_process", "SCMP_ACT_TRAP": "trap", "SCMP_ACT_ERRNO": "errno",
              "SCMP_ACT_TRACE": "trace", "SCMP_ACT_LOG": "log", "SCMP_ACT_ALLOW": "allow",
              "SCMP_ACT_NOTIFY": "user_notif"}
    acts = [("/linux/seccomp/defaultAction", sc.get("defaultAction"))]
    acts += [(f"/linux/seccomp/syscalls/{i}/action", s.get("action")) for i, s in enumerate(sc.get("syscalls") or ())]
    for ptr, a in acts:
        k = kernel.get(a)
        if k and k not in avail:
            out.append(("error", ptr, f"this kernel's seccomp has no {k} action ({a})"))


_IDMAP_FS = {0xEF53: "ext4", 0x58465342: "xfs", 0x9123683E: "btrfs", 0x01021994: "tmpfs", 0x794C7630: "overlay",
             0x2FC12FC1: "zfs", 0xF2F52010: "f2fs", 0x65735546: "fuse"}


def _idmapped(cfg, out):
    for i, m in enumerate(cfg.mounts):
        if not (m.uid_mappings or m.gid_mappings or "idmap" in m.options or "ridmap" in m.options):
            continue
        src = m.source or ""
        try:
            ftype = _statfs_type(src)
        except OSError:
            continue
        if ftype is not None and ftype not in _IDMAP_FS:
            out.append(("warning", f"/mounts/{i}", f"the filesystem of {src} (type 0x{ftype:x}) may not support idmapped mounts"))


def _statfs_type(path):
    from . import syscalls as S

    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        return S.SYS.fstatfs_type(fd)
    finally:
        os.close(fd)


def resctrl_mounted():
    """Whether resctrl (Intel RDT) is mounted on this host."""
    try:
        with open("/proc/self/mountinfo") as f:
            return any(" - resctrl " in line for line in f)
    except OSError:
        return False
