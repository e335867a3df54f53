"""The checks of config.json that no schema expresses, made before anything touches the host.

`problems(doc)` returns every refusal as a `POINTER: message` line (create refuses the config if there is
one; `ocirun check` prints them all); `warnings(doc)` what runc warns about and runs anyway. They follow
runc's configs/validate and specconv (1.2 and later), with the differences spec/EXTENSIONS.md lists.
Only config-level rules live here; what depends on the host (the rootfs, cgroups, LSMs, namespaces the
kernel has) is checked by the create path itself. (Two exceptions, both cheap: a sysctl in the host's network
namespace, and a device rule only cgroup v1 refuses, which is refused where /sys/fs/cgroup is v1.)
"""

IPC_SYSCTLS = frozenset(("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                         "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"))
MAX_CPUS = 8192  # the kernel's largest NR_CPUS
MAX_NUMA_NODES = 1024  # the kernel's largest MAX_NUMNODES (1 << NODES_SHIFT, NODES_SHIFT <= 10)
IFNAMSIZ = 16
HOST_NAME_MAX = 64
_MPOL_NO_NODES = ("MPOL_DEFAULT", "MPOL_LOCAL")
_MPOL_NODES = ("MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_PREFERRED_MANY", "MPOL_WEIGHTED_INTERLEAVE")


def problems(doc):
    out = []
    p = doc.get("process")
    ld = doc.get("linux") if isinstance(doc.get("linux"), dict) else {}
    if isinstance(p, dict):
        _process(p, out)
    for key in ("hostname", "domainname"):
        v = doc.get(key)
        if isinstance(v, str) and len(v.encode()) > HOST_NAME_MAX:
            out.append(f"/{key}: longer than {HOST_NAME_MAX} bytes (the kernel refuses it)")
    _string_maps(doc, ld, out)
    nss = _namespaces(ld, out)
    v = doc.get("ociVersion")
    if isinstance(v, str) and not semver(v):
        out.append(f"/ociVersion: {v!r} is not a SemVer 2.0.0 version")
    _user_and_time(ld, nss, out)
    for key in ("maskedPaths", "readonlyPaths"):
        for i, pth in enumerate(ld.get(key) or ()):
            if isinstance(pth, str) and not pth.startswith("/"):
                out.append(f"/linux/{key}/{i}: {pth!r} must be an absolute path")
    sc = ld.get("seccomp")
    if isinstance(sc, dict) and sc.get("listenerMetadata") and not sc.get("listenerPath"):
        out.append("/linux/seccomp/listenerMetadata: set without listenerPath")
    _sysctls(ld, nss, out)
    _net_devices(ld, out)
    _device_rules(ld, out)
    _memory_policy(ld, out)
    _mounts(doc, out)
    return out


def warnings(doc):
    out = []
    for i, m in enumerate(doc.get("mounts") or ()):
        d = m.get("destination") if isinstance(m, dict) else None
        if isinstance(d, str) and not d.startswith("/"):
            out.append(f"mounts[{i}]: destination {d!r} is not absolute; taken as relative to / (deprecated)")
    ld = doc.get("linux") if isinstance(doc.get("linux"), dict) else {}
    if not any(isinstance(n, dict) and n.get("type") == "user" for n in ld.get("namespaces") or ()):
        for key in ("uidMappings", "gidMappings"):
            if ld.get(key):
                out.append(f"linux.{key}: ignored: there is no user namespace in linux.namespaces")
    pers = ld.get("personality")
    if isinstance(pers, dict) and pers.get("flags"):
        out.append(f"linux.personality.flags: ignoring unsupported personality flags {pers['flags']}")
    return out


# ---- the rules

def _namespaces(ld, out):
    seen = {}
    for i, ns in enumerate(ld.get("namespaces") or ()):
        t = ns.get("type") if isinstance(ns, dict) else None
        if t in seen:
            out.append(f"/linux/namespaces/{i}/type: namespace {t!r} is listed more than once")
        seen[t] = ns.get("path") or None if isinstance(ns, dict) else None
    return seen


def _string_maps(doc, ld, out):
    """annotations, sysctl and unified are maps of strings to runc (Go map[string]string): a key the schema's
    pattern does not reach ("" or newlines only) with another value is refused too."""
    res = ld.get("resources") if isinstance(ld.get("resources"), dict) else {}
    for where, m in (("/annotations", doc.get("annotations")), ("/linux/sysctl", ld.get("sysctl")),
                     ("/linux/resources/unified", res.get("unified"))):
        if isinstance(m, dict):
            for k, v in m.items():
                if not isinstance(v, str):
                    out.append(f"{where}/{k.replace('~', '~0').replace('/', '~1')}: the value must be a string")


def _process(p, out):
    if not p.get("args") and not p.get("commandLine"):
        out.append("/process/args: must name the program to run (at least one element)")
    for i, e in enumerate(p.get("env") or ()):
        if isinstance(e, str):
            name, eq, _ = e.partition("=")
            if not eq:
                out.append(f"/process/env/{i}: {e!r} is not NAME=VALUE (no '=')")
            elif not name:
                out.append(f"/process/env/{i}: {e!r} has an empty name")
            elif "\x00" in e:
                out.append(f"/process/env/{i}: contains a NUL byte")
    cwd = p.get("cwd")
    if isinstance(cwd, str) and not cwd.startswith("/"):
        out.append(f"/process/cwd: {cwd!r} must be an absolute path")
    s = p.get("scheduler")
    if isinstance(s, dict):
        pol = s.get("policy")
        if pol in ("SCHED_OTHER", "SCHED_BATCH") and not -20 <= _int(s.get("nice")) <= 19:
            out.append(f"/process/scheduler/nice: {s.get('nice')} is not in -20..19 for {pol}")
        if _int(s.get("priority")) != 0 and pol not in ("SCHED_FIFO", "SCHED_RR"):
            out.append("/process/scheduler/priority: only SCHED_FIFO and SCHED_RR take a priority")
        if pol != "SCHED_DEADLINE" and any(_int(s.get(k)) for k in ("runtime", "deadline", "period")):
            out.append("/process/scheduler: runtime, deadline and period are only for SCHED_DEADLINE")
    aff = p.get("execCPUAffinity")
    if isinstance(aff, dict):
        for k in ("initial", "final"):
            if isinstance(aff.get(k), str):
                err = list_problem(aff[k], MAX_CPUS)
                if err:
                    out.append(f"/process/execCPUAffinity/{k}: {err}")


def _maps_zero(m):
    c, n = (m.get("containerID"), m.get("size")) if isinstance(m, dict) else (None, None)
    return isinstance(c, int) and isinstance(n, int) and c <= 0 < c + n


def _user_and_time(ld, nss, out):
    if "user" in nss:
        if not nss["user"] and not ld.get("uidMappings") and not ld.get("gidMappings"):
            out.append("/linux/namespaces: a new user namespace needs linux.uidMappings and linux.gidMappings")
        elif not nss["user"]:
            # runc (HostRootUID/HostRootGID): the container's root must be mapped (devices, /dev/pts, the init)
            for key, what in (("uidMappings", "uid"), ("gidMappings", "gid")):
                maps = ld.get(key)
                if isinstance(maps, list) and maps and not any(_maps_zero(m) for m in maps):
                    out.append(f"/linux/{key}: user namespaces enabled, but no mapping found for {what} 0 (the "
                               f"container's root)")
    # (mappings without a user namespace are not used: a warning, as runc reads them only with one)
    if "time" in nss:
        if nss["time"] and ld.get("timeOffsets"):
            out.append("/linux/timeOffsets: cannot set time offsets when joining a time namespace by path")
    elif ld.get("timeOffsets"):
        out.append("/linux/timeOffsets: time offsets need a time namespace in /linux/namespaces")


def sysctl_key(key):
    """runc's spelling rule: 'net/ipv4/ip_forward' is 'net.ipv4.ip_forward' (a '/' before any '.' swaps
    the two separators)."""
    i = next((j for j, ch in enumerate(key) if ch in "./"), -1)
    if i < 0 or key[i] == ".":
        return key
    return key.translate(str.maketrans("./", "/."))


def sysctl_namespace(key):
    """The namespace a sysctl belongs to, or None (a host-wide one, never allowed)."""
    key = sysctl_key(key)
    if key in IPC_SYSCTLS or key.startswith("fs.mqueue."):
        return "ipc"
    if key.startswith("net."):
        return "network"
    if key in ("kernel.hostname", "kernel.domainname"):
        return "uts"
    if key.startswith("user."):
        return "user"
    return None


def _sysctls(ld, nss, out):
    sysctl = ld.get("sysctl")
    if not isinstance(sysctl, dict):
        return
    for key in sysctl:
        ns = sysctl_namespace(key)
        where = f"/linux/sysctl/{key.replace('~', '~0').replace('/', '~1')}"
        if ns is None:
            out.append(f"{where}: {key!r} is not in a separate kernel namespace")
        elif ns not in nss:
            out.append(f"{where}: {key!r} needs a {ns} namespace of the container's own")
        elif ns == "network" and nss["network"] and _is_host_netns(nss["network"]):
            out.append(f"{where}: {key!r} is not allowed in the host's network namespace")
        elif sysctl_key(key) == "kernel.hostname":
            out.append(f"{where}: {key!r} conflicts with the hostname field; set /hostname instead")


def _is_host_netns(path):
    import os

    try:
        a, b = os.stat("/proc/self/ns/net"), os.stat(path)
    except OSError:
        return False  # the create path reports a path it cannot open
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _net_devices(ld, out):
    devs = ld.get("netDevices")
    if not isinstance(devs, dict):
        return
    for name, d in devs.items():
        for n in (name, (d or {}).get("name") if isinstance(d, dict) else None):
            if n is not None and not _valid_ifname(n):
                out.append(f"/linux/netDevices/{name}: invalid network device name {n!r}")


def _device_rules(ld, out):
    """linux.resources.devices read as runc reads them (cgroups/devices.py, the rules create writes): a missing or
    empty access is refused, letters other than r, w, m are ignored ("rwa" is "rw"), removing part of a
    wildcard exception is refused (cgroup v1 cannot punch a hole in it, and the v2 program follows v1); on a
    cgroup v1 host, an allow rule whose access names none of r, w, m is refused too (runc fails there)."""
    res = ld.get("resources")
    if not isinstance(res, dict) or not res.get("devices"):
        return
    from . import cgroups
    from .cgroups import devices

    try:
        model = devices.build(res["devices"])
        if cgroups.v1_host():
            devices.check_v1(model)
    except cgroups.CgroupError as e:
        out.append(field_pointer(str(e)))


def field_pointer(line):
    """'linux.resources.devices[1].access: msg' -> '/linux/resources/devices/1/access: msg'."""
    head, sep, rest = line.partition(": ")
    if not sep or " " in head:
        return line
    return "/" + head.replace("]", "").replace("[", ".").replace(".", "/") + ": " + rest


def _valid_ifname(n):
    return 0 < len(n) <= IFNAMSIZ and n not in (".", "..") and not any(c in n for c in "/: ")


def _memory_policy(ld, out):
    mp = ld.get("memoryPolicy")
    if not isinstance(mp, dict):
        return
    mode = mp.get("mode")
    if mode is None:
        out.append("/linux/memoryPolicy/mode: required when memoryPolicy is set")
        return
    nodes = mp.get("nodes") or ""
    err = list_problem(nodes, MAX_NUMA_NODES) if isinstance(nodes, str) else None
    if err:
        out.append(f"/linux/memoryPolicy/nodes: {err}")
        return
    has_nodes = isinstance(nodes, str) and nodes.replace(",", "").strip() != ""
    if mode in _MPOL_NO_NODES and has_nodes:
        out.append(f"/linux/memoryPolicy/nodes: {mode} takes no nodes")
    if mode in _MPOL_NODES and not has_nodes:
        out.append(f"/linux/memoryPolicy/nodes: {mode} needs at least one node")


def _mounts(doc, out):
    for i, m in enumerate(doc.get("mounts") or ()):
        if not isinstance(m, dict):
            continue
        for k in ("source", "destination", "type"):
            v = m.get(k)
            if isinstance(v, str) and "\x00" in v:
                out.append(f"/mounts/{i}/{k}: contains a NUL byte")
        opts = m.get("options") or ()
        if m.get("type") == "bind" and not ("bind" in opts or "rbind" in opts):
            # config.md: a bind mount is one whose options include bind or rbind; runc then mounts a filesystem
            # of type "bind", which does not exist
            out.append(f"/mounts/{i}/options: type \"bind\" needs a bind or rbind option (no filesystem is "
                       f"called bind)")


# ---- helpers

def _int(v):
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def list_problem(text, limit):
    """What is wrong with a CPU/NUMA node list ('0-3,7'), or None. Every number must be below `limit`, so a
    range is never expanded beyond what a machine can have (a list is checked without building it)."""
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        lo, dash, hi = part.partition("-")
        if not (lo.isascii() and lo.isdigit()) or (dash and not (hi.isascii() and hi.isdigit())):
            return f"invalid list {text!r}"
        if len(lo) > 6 or len(hi) > 6 or int(lo) >= limit or (dash and int(hi) >= limit):
            return f"{part!r} is out of range (at most {limit - 1})"
        if dash and int(hi) < int(lo):
            return f"invalid range {part!r}"
    return None


_SEMVER_DIGITS = frozenset("0123456789")
_SEMVER_IDENT = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-")


def semver(v):
    """SemVer 2.0.0 (MAJOR.MINOR.PATCH[-pre][+build]) without regular expressions (re costs ~12 ms)."""
    core, plus, build = v.partition("+")
    core, dash, pre = core.partition("-")
    nums = core.split(".")
    if len(nums) != 3:
        return False
    for n in nums:
        if not n or not _SEMVER_DIGITS.issuperset(n) or (len(n) > 1 and n[0] == "0"):
            return False
    for part, present in ((pre, dash), (build, plus)):
        if present:
            ids = part.split(".")
            if not part or any(not i or not _SEMVER_IDENT.issuperset(i) for i in ids):
                return False
            if part is pre and any(_SEMVER_DIGITS.issuperset(i) and len(i) > 1 and i[0] == "0" for i in ids):
                return False
    return True
