"""Hypothesis strategies: a seed config and a short list of mutations of it.

A case is {"seed": NAME, "ops": [[KIND, PARAMS], ...]}: plain JSON, so that a report can show it and
`build(case)` can rebuild the exact config (seed + ops, then the harness's instrument()). Mutations are
drawn from small pools of values that matter to a runtime (valid, borderline and invalid ones), never from
arbitrary text: the point is to compare verdicts and behaviour on configs an engine could write, and some it
should not. Each op kind is one function in APPLY; what it does is in its docstring.

Safety (these run as root): hooks are only the harness's logging script; bind sources are in the bundle
(or /sys read-only in the rootless seed); sysctls go through harness.make_safe() (the host's own value
whenever the container does not get the namespace anew); no namespace paths; no host network devices.
"""
import copy

from hypothesis import strategies as st

from . import harness, seeds

CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
        "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
        "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
        "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
        "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
        "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
        "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
        "CAP_CHECKPOINT_RESTORE"]
ODD_CAPS = ["CAP_BOGUS", "chown", "CAP_chown", "", "CAP_SYS_ADMIN ", "CAP_41"]
CAP_SETS = ["bounding", "effective", "permitted", "inheritable", "ambient"]
RLIMITS = ["RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS",
           "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS", "RLIMIT_SIGPENDING",
           "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME"]
ODD_RLIMITS = ["RLIMIT_BOGUS", "rlimit_nofile", "NOFILE", ""]
RLIMIT_VALUES = [0, 1, 64, 1024, 4096, 20000, 20001, 65536, 1048576, 8388608, 2 ** 32, 2 ** 63 - 1, 2 ** 64 - 1]
NS_TYPES = ["pid", "network", "ipc", "uts", "mount", "cgroup", "user", "time"]
PROPAGATIONS = ["", "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable",
                "bogus", "PRIVATE"]
PROPAGATION_OPTS = ["private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable"]
COMMON_OPTS = ["ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "noatime", "relatime",
               "strictatime", "nodiratime", "sync", "async", "dirsync", "mand", "nomand", "remount"]
RECURSIVE_OPTS = ["rro", "rrw", "rnosuid", "rnodev", "rnoexec", "rnoatime", "rrelatime", "rstrictatime",
                  "nosymfollow", "rnosymfollow"]
ODD_OPTS = ["bogus", "foo=bar", "x-custom", "idmap", "ridmap", "tmpcopyup", "", "defaults", "bind,ro"]
TMPFS_DATA = ["mode=0712", "mode=1777", "mode=755", "mode=0", "mode=abc", "size=1m", "size=0", "size=64k",
              "uid=1000", "gid=1000", "nr_inodes=100", "mode=01777"]
DESTS = ["/tmp", harness.DIR_0712, "/newdir", "/newdir/sub/deep", harness.FILE_PLAIN, "/etc/hosts", "/dev/shm",
         "/mnt", "/run", "/var/tmp", "relative/dest", "/proc/sys/x", "/dev/newdev-dir", "/", "/tmp/../mnt"]
BIND_SOURCES = ["@BUNDLE@/vol/d1", "@BUNDLE@/vol/d2", "vol/d1", "@BUNDLE@/vol/f1-f", "vol/f2-f",
                "@BUNDLE@/vol/missing", "@BUNDLE@/rootfs/etc", "@BUNDLE@/vol/d1/../d2"]
SYSCTLS = {
    "net.ipv4.ip_forward": ["1", "0", "2", "x"],
    "net.ipv4.ping_group_range": ["0 2147483647", "1 0", "0 0"],
    "net.ipv4.ip_unprivileged_port_start": ["0", "1024", "-1"],
    "net.core.somaxconn": ["1024", "4096"],
    "net/ipv4/conf/all/forwarding": ["1"],
    "kernel.shmmax": ["68719476736", "1024", "nope"],
    "kernel.msgmax": ["65536", "8192"],
    "fs.mqueue.queues_max": ["128", "1"],
    "kernel.domainname": ["diff.example", "x"],
    "kernel.hostname": ["diffhost"],
    "vm.swappiness": ["60"],
    "kernel.pid_max": ["4194304"],
    "bogus.key": ["1"],
    "net.bogus.key": ["1"],
}
MASKABLE = ["/proc/kcore", "/proc/keys", "/proc/acpi", "/proc/timer_list", "/sys/firmware", "/proc/scsi",
            "/nonexistent", "/etc/hosts", "/tmp", "relative/path", "/proc/sys", "/proc/sysrq-trigger",
            "/proc/bus", harness.DIR_0712, harness.FILE_PLAIN, "/dev/null", "/sys/kernel"]
CWDS = ["/", "/tmp", "/nonexistent/dir", "relative", harness.DIR_0712, harness.FILE_PLAIN, "/proc", "/root", "",
        "/tmp/../etc", "/dev"]
ENVS = [[], ["A=1"], ["A=1", "A=2"], ["NOEQ"], ["E="], ["=x"], ["PATH=/bin", "HOME=/"], ["U=é☃"],
        ["A=1", "B=2", "C=3"], ["PATH="], ["TERM=dumb", "A B=c"]]
UIDS = [0, 1, 1000, 65534, 4294967294, 2 ** 31]
HOSTNAMES = ["", "a", "diffhost", "x" * 64, "x" * 65, "bad name", "h.example.com"]
DEVICES = [
    {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3},
    {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600, "uid": 1000, "gid": 1000},
    {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600},
    {"path": "/dev/zero", "type": "c", "major": 1, "minor": 5, "fileMode": 0o640, "uid": 0, "gid": 1000},
    {"path": "/dev/sub/dir/tty0x", "type": "c", "major": 5, "minor": 0},
    {"path": "/dev/myblk", "type": "b", "major": 7, "minor": 0},
    {"path": "/dev/myfifo", "type": "p"},
    {"path": "/dev/myfifo", "type": "p", "major": 0, "minor": 0},
    {"path": "/dev/myu", "type": "u", "major": 1, "minor": 7},
    {"path": "/dev/bad", "type": "x", "major": 1, "minor": 3},
    {"path": "/dev/nomajor", "type": "c"},
    {"path": "/notdev/x", "type": "c", "major": 1, "minor": 3},
    {"path": "relative/dev", "type": "c", "major": 1, "minor": 3},
    {"path": "/dev/modebits", "type": "c", "major": 1, "minor": 3, "fileMode": 0o20666},
    {"path": "/dev/suid", "type": "c", "major": 1, "minor": 3, "fileMode": 0o4755},
    {"path": "/dev/pts/x", "type": "c", "major": 1, "minor": 3},
    {"path": "/dev/shm/x", "type": "c", "major": 1, "minor": 3},
]
USER_MAPPINGS = [
    [{"containerID": 0, "hostID": 100000, "size": 65536}],
    [{"containerID": 0, "hostID": 0, "size": 1}],
    [{"containerID": 0, "hostID": 100000, "size": 1}, {"containerID": 1, "hostID": 200001, "size": 65535}],
    [],
]
DELETABLE = ["process.capabilities", "process.rlimits", "process.env", "process.cwd", "process.user",
             "process.user.additionalGids", "process.noNewPrivileges", "process.oomScoreAdj", "hostname", "mounts",
             "linux.resources", "linux.maskedPaths", "linux.readonlyPaths", "linux.namespaces", "linux.sysctl",
             "linux.seccomp", "linux.devices", "linux.uidMappings", "linux.gidMappings", "root.readonly",
             "linux.cgroupsPath", "process.capabilities.ambient", "process.capabilities.bounding",
             "process.capabilities.effective", "linux.rootfsPropagation", "annotations", "process"]
SETTABLE = {
    "process.terminal": [True],
    "ociVersion": ["1.0.0", "1.3.0", "1.2.0", "0.1.0", "2.0.0", "", "1.0.2-dev"],
    "linux.cgroupsPath": [f"/{harness.CGROUP_PARENT}/@ID@", f"{harness.CGROUP_PARENT}-@ID@",
                          "system.slice:diff:@ID@", "../escape-@ID@"],
    "process.oomScoreAdj": [0, 100, 1000, 1001, -1, -1000],
    "process.apparmorProfile": ["unconfined", "docker-default"],
    "process.selinuxLabel": ["system_u:system_r:container_t:s0"],
    "linux.mountLabel": ["system_u:object_r:container_file_t:s0"],
    "linux.personality": [{"domain": "LINUX"}, {"domain": "LINUX32"}, {"domain": "BOGUS"}],
    "process.ioPriority": [{"class": "IOPRIO_CLASS_BE", "priority": 3}, {"class": "IOPRIO_CLASS_RT", "priority": 0}],
    "linux.memoryPolicy": [{"mode": "MPOL_BIND", "nodes": "0"}, {"mode": "MPOL_DEFAULT"}],
    "process.scheduler": [{"policy": "SCHED_BATCH", "nice": 5}, {"policy": "SCHED_OTHER"}],
    "linux.timeOffsets": [{"monotonic": {"secs": 100}}],
    "annotations": [{"a": "b"}, {"a": 1}],
}


# ----------------------------------------------------------------------------------------------- apply
def _get(cfg, dotted, create=False):
    """(parent dict, last key) of a dotted path, or (None, None)."""
    parts = dotted.split(".")
    d = cfg
    for p in parts[:-1]:
        if not isinstance(d, dict):
            return None, None
        if p not in d:
            if not create:
                return None, None
            d[p] = {}
        d = d[p]
    return (d, parts[-1]) if isinstance(d, dict) else (None, None)


def _proc(cfg):
    if not isinstance(cfg.get("process"), dict):
        cfg["process"] = {"args": ["/probe"], "cwd": "/"}
    return cfg["process"]


def _linux(cfg):
    if not isinstance(cfg.get("linux"), dict):
        cfg["linux"] = {}
    return cfg["linux"]


def op_user(cfg, p):
    """process.user: uid, gid, additionalGids, umask."""
    u = _proc(cfg).setdefault("user", {})
    if not isinstance(u, dict):
        u = _proc(cfg)["user"] = {}
    u.update({k: v for k, v in p.items() if v is not None})


def op_cwd(cfg, p):
    _proc(cfg)["cwd"] = p


def op_env(cfg, p):
    _proc(cfg)["env"] = list(p)


def op_rlimits(cfg, p):
    """Replace (or with "add": extend) process.rlimits."""
    proc = _proc(cfg)
    if p["mode"] == "add" and isinstance(proc.get("rlimits"), list):
        proc["rlimits"] = proc["rlimits"] + p["items"]
    else:
        proc["rlimits"] = list(p["items"])


def op_caps(cfg, p):
    """Set (or delete, None) each named capability set."""
    proc = _proc(cfg)
    caps = proc.setdefault("capabilities", {})
    if not isinstance(caps, dict):
        caps = proc["capabilities"] = {}
    for k, v in p.items():
        if v is None:
            caps.pop(k, None)
        else:
            caps[k] = list(v)


def op_nnp(cfg, p):
    _proc(cfg)["noNewPrivileges"] = p


def op_hostname(cfg, p):
    cfg["hostname"] = p


def op_domainname(cfg, p):
    cfg["domainname"] = p


def op_namespaces(cfg, p):
    """linux.namespaces := the given types; with "user", uid/gid mappings from p["mappings"] (index)."""
    lin = _linux(cfg)
    lin["namespaces"] = [{"type": t} for t in p["types"]]
    if "user" in p["types"] and p.get("mappings") is not None:
        m = USER_MAPPINGS[p["mappings"]]
        lin["uidMappings"] = copy.deepcopy(m)
        lin["gidMappings"] = copy.deepcopy(m)


def op_sysctl(cfg, p):
    lin = _linux(cfg)
    if p["mode"] == "replace" or not isinstance(lin.get("sysctl"), dict):
        lin["sysctl"] = {}
    lin["sysctl"].update(p["items"])


def op_propagation(cfg, p):
    _linux(cfg)["rootfsPropagation"] = p


def op_root_readonly(cfg, p):
    if not isinstance(cfg.get("root"), dict):
        cfg["root"] = {"path": "rootfs"}
    cfg["root"]["readonly"] = p


def op_mount_add(cfg, p):
    mounts = cfg.get("mounts")
    if not isinstance(mounts, list):
        mounts = cfg["mounts"] = []
    m = {k: v for k, v in p["mount"].items() if v is not None}
    pos = p.get("at")
    if pos is None or pos >= len(mounts):
        mounts.append(m)
    else:
        mounts.insert(pos, m)


def op_mount_remove(cfg, p):
    mounts = cfg.get("mounts")
    if isinstance(mounts, list) and mounts:
        mounts.pop(p % len(mounts))


def op_mount_options(cfg, p):
    """Replace (or extend) the options of the mount at index p["i"] (modulo the count)."""
    mounts = cfg.get("mounts")
    if not isinstance(mounts, list) or not mounts:
        return
    m = mounts[p["i"] % len(mounts)]
    if p["mode"] == "add" and isinstance(m.get("options"), list):
        m["options"] = m["options"] + p["options"]
    else:
        m["options"] = list(p["options"])


def op_device_add(cfg, p):
    lin = _linux(cfg)
    if not isinstance(lin.get("devices"), list):
        lin["devices"] = []
    lin["devices"].append(dict(p))


def op_paths(cfg, p):
    """linux.maskedPaths / readonlyPaths := given list (or extended)."""
    lin = _linux(cfg)
    if p["mode"] == "add" and isinstance(lin.get(p["key"]), list):
        lin[p["key"]] = lin[p["key"]] + p["paths"]
    else:
        lin[p["key"]] = list(p["paths"])


def op_hook(cfg, p):
    hooks = cfg.get("hooks")
    if not isinstance(hooks, dict):
        hooks = cfg["hooks"] = {}
    lst = hooks.setdefault(p["kind"], [])
    lst.append(harness.hook_entry(p["kind"], len(lst), exit_code=p.get("exit", 0), env=p.get("env"),
                                  timeout=p.get("timeout"), sleep=p.get("sleep", 0)))


def op_delete(cfg, p):
    d, k = _get(cfg, p)
    if d is not None:
        d.pop(k, None)


def op_set(cfg, p):
    d, k = _get(cfg, p["path"], create=True)
    if d is not None:
        d[k] = copy.deepcopy(p["value"])


APPLY = {
    "user": op_user, "cwd": op_cwd, "env": op_env, "rlimits": op_rlimits, "caps": op_caps, "nnp": op_nnp,
    "hostname": op_hostname, "domainname": op_domainname, "namespaces": op_namespaces, "sysctl": op_sysctl,
    "propagation": op_propagation, "root_readonly": op_root_readonly, "mount_add": op_mount_add,
    "mount_remove": op_mount_remove, "mount_options": op_mount_options, "device_add": op_device_add,
    "paths": op_paths, "hook": op_hook, "delete": op_delete, "set": op_set,
}


def apply_ops(cfg, ops):
    cfg = copy.deepcopy(cfg)
    for kind, params in ops:
        APPLY[kind](cfg, params)
    return cfg


def build(case):
    """The config template of a case (seed + ops + instrumentation)."""
    if "config" in case:                      # a case reduced to a literal config by the minimizer
        return harness.instrument(copy.deepcopy(case["config"]))
    return harness.instrument(apply_ops(seeds.get(case["seed"]), case["ops"]))


def raw_config(case):
    """Seed + ops, without the probe's instrumentation (what a report shows)."""
    if "config" in case:
        return copy.deepcopy(case["config"])
    return apply_ops(seeds.get(case["seed"]), case["ops"])


# ----------------------------------------------------------------------------------------------- strategies
def _sub(pool, min_size=0, max_size=None):
    return st.lists(st.sampled_from(pool), min_size=min_size, max_size=max_size or len(pool), unique=True)


cap_names = st.one_of(st.sampled_from(CAPS), st.sampled_from(CAPS), st.sampled_from(CAPS), st.sampled_from(ODD_CAPS))
def _rlimit(t, hard, soft):
    """soft > hard sometimes, on purpose. RLIMIT_CPU at least 64 s: under 1-2 s of CPU the kernel kills the
    container's init (runc's Go init or ocirun's Python one) or not depending on load, a race, not a verdict."""
    if t == "RLIMIT_CPU":
        hard, soft = max(hard, 64), max(soft, 64)
    return {"type": t, "hard": hard, "soft": soft}


rlimit_item = st.builds(
    _rlimit,
    st.one_of(st.sampled_from(RLIMITS), st.sampled_from(RLIMITS), st.sampled_from(ODD_RLIMITS)),
    st.sampled_from(RLIMIT_VALUES), st.sampled_from(RLIMIT_VALUES))

tmpfs_mount = st.fixed_dictionaries({
    "destination": st.sampled_from(DESTS), "type": st.just("tmpfs"), "source": st.sampled_from(["tmpfs", "shm"]),
    "options": st.lists(st.sampled_from(TMPFS_DATA + COMMON_OPTS + PROPAGATION_OPTS + ODD_OPTS), max_size=5)})
bind_mount = st.fixed_dictionaries({
    "destination": st.sampled_from(DESTS), "type": st.sampled_from(["bind", "bind", None, "none"]),
    "source": st.sampled_from(BIND_SOURCES),
    "options": st.builds(lambda b, rest: [b] + rest, st.sampled_from(["bind", "rbind"]),
                         st.lists(st.sampled_from(COMMON_OPTS + PROPAGATION_OPTS + RECURSIVE_OPTS + ODD_OPTS),
                                  max_size=4))})
special_mount = st.sampled_from([
    {"destination": "/proc2", "type": "proc", "source": "proc"},
    {"destination": "/sys2", "type": "sysfs", "source": "sysfs", "options": ["ro", "nosuid"]},
    {"destination": "/mq", "type": "mqueue", "source": "mqueue"},
    {"destination": "/dev/pts2", "type": "devpts", "source": "devpts", "options": ["newinstance", "ptmxmode=0600"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro", "nosuid", "nodev"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["rw"]},
    {"destination": "/proc", "type": "proc", "source": "proc", "options": ["hidepid=2"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["mode=1777", "size=64k", "tmpcopyup"]},
    {"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup"]},
    {"destination": "/etc", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup", "mode=0712"]},
    {"destination": "/x", "type": "overlay", "source": "overlay", "options": ["lowerdir=/nonexistent"]},
    {"destination": "/x", "type": "nosuchfs", "source": "none"},
    {"destination": "/x", "type": "tmpfs"},
    {"destination": "/x"},
])
mount_any = st.one_of(tmpfs_mount, tmpfs_mount, bind_mount, bind_mount, special_mount)

hook_op = st.fixed_dictionaries(
    {"kind": st.sampled_from(harness.HOOK_KINDS)},
    optional={"exit": st.sampled_from([0, 0, 0, 1, 3]),
              "env": st.sampled_from([[], ["A=1"], ["A=1", "A=2"], ["PATH=/usr/bin:/bin"], ["NOEQ"]]),
              "timeout": st.sampled_from([1, 5, 0, -1])})

OPS = st.one_of(
    st.tuples(st.just("user"), st.fixed_dictionaries({}, optional={
        "uid": st.sampled_from(UIDS), "gid": st.sampled_from(UIDS),
        "additionalGids": st.lists(st.sampled_from(UIDS), max_size=3),
        "umask": st.sampled_from([0, 0o22, 0o77, 0o777, 0o7777, 0o10000])})),
    st.tuples(st.just("cwd"), st.sampled_from(CWDS)),
    st.tuples(st.just("env"), st.sampled_from(ENVS)),
    st.tuples(st.just("rlimits"), st.fixed_dictionaries({"mode": st.sampled_from(["add", "replace"]),
                                                         "items": st.lists(rlimit_item, max_size=3)})),
    st.tuples(st.just("caps"), st.dictionaries(st.sampled_from(CAP_SETS),
                                               st.one_of(st.none(), st.lists(cap_names, max_size=6)),
                                               min_size=1, max_size=5)),
    st.tuples(st.just("nnp"), st.booleans()),
    st.tuples(st.just("hostname"), st.sampled_from(HOSTNAMES)),
    st.tuples(st.just("domainname"), st.sampled_from(["", "diff.example", "x" * 65])),
    st.tuples(st.just("namespaces"), st.fixed_dictionaries({
        "types": st.one_of(_sub(NS_TYPES), st.just(["pid", "network", "ipc", "uts", "mount"]),
                           st.just(["mount", "mount"]), st.just(["pid", "mount", "user"]),
                           st.just(["mount", "nonsense"])),
        "mappings": st.sampled_from([0, 0, 1, 2, 3, None])})),
    st.tuples(st.just("sysctl"), st.fixed_dictionaries({
        "mode": st.sampled_from(["add", "replace"]),
        "items": st.dictionaries(st.sampled_from(sorted(SYSCTLS)), st.just(None), max_size=3)})
        .flatmap(lambda p: st.fixed_dictionaries({
            "mode": st.just(p["mode"]),
            "items": st.fixed_dictionaries({k: st.sampled_from(SYSCTLS[k]) for k in p["items"]})}))),
    st.tuples(st.just("propagation"), st.sampled_from(PROPAGATIONS)),
    st.tuples(st.just("root_readonly"), st.booleans()),
    st.tuples(st.just("mount_add"), st.fixed_dictionaries({"mount": mount_any},
                                                          optional={"at": st.integers(0, 12)})),
    st.tuples(st.just("mount_remove"), st.integers(0, 20)),
    st.tuples(st.just("mount_options"), st.fixed_dictionaries({
        "i": st.integers(0, 20), "mode": st.sampled_from(["add", "replace"]),
        "options": st.lists(st.sampled_from(COMMON_OPTS + PROPAGATION_OPTS + RECURSIVE_OPTS + ODD_OPTS + TMPFS_DATA),
                            max_size=4)})),
    st.tuples(st.just("device_add"), st.sampled_from(DEVICES)),
    st.tuples(st.just("paths"), st.fixed_dictionaries({
        "key": st.sampled_from(["maskedPaths", "readonlyPaths"]), "mode": st.sampled_from(["add", "replace"]),
        "paths": _sub(MASKABLE, max_size=3)})),
    st.tuples(st.just("hook"), hook_op),
    st.tuples(st.just("delete"), st.sampled_from(DELETABLE)),
    st.tuples(st.just("set"), st.sampled_from(sorted(SETTABLE)).flatmap(
        lambda k: st.fixed_dictionaries({"path": st.just(k), "value": st.sampled_from(SETTABLE[k])}))),
).map(list)


def cases(max_ops=4):
    """Strategy of cases: {"seed": name, "ops": [...]}, 0..max_ops mutations."""
    return st.fixed_dictionaries({
        "seed": st.deferred(lambda: st.sampled_from(seeds.seed_names())),
        "ops": st.lists(OPS, max_size=max_ops),
    })
