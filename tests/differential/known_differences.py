"""Where runc 1.1.5 (the runc installed here) is not the reference: features runc learned later.

The project's policy follows runc 1.2+; the runc on this VM is Debian's 1.1.5. Each entry below is a
behaviour of 1.1.5 that runc changed, confirmed by reading runc's code (the mirror's v1.1.5 tag against its
main branch: `git -C /work/.mirror/opencontainers+runc/repo show v1.1.5:PATH` / `HEAD:PATH`), with the
first release that has the new behaviour. An entry is narrow: `applies(cfg)` is a predicate on the config
(the feature is used), and `keys`/`verdicts` name the only observation keys and verdict pairs that
feature can change. explain() removes from a disagreement the keys (or the verdict pair) an applicable entry
accounts for; whatever is left is a disagreement.

Not here on purpose (checked, same in 1.1.5 and main): unknown capability names (both warn "ignoring unknown
or unavailable capabilities" and go on, libcontainer/capabilities/capabilities.go), the rootfsPropagation
values (rprivate, rslave, rshared, runbindable... are in both mountPropagationMapping tables), the
recursive mount options rro/rnosuid/... and tmpcopyup (both specconv/spec_linux.go).
"""
import re


def _lin(cfg):
    v = cfg.get("linux") if isinstance(cfg, dict) else None
    return v if isinstance(v, dict) else {}


def _proc(cfg):
    v = cfg.get("process") if isinstance(cfg, dict) else None
    return v if isinstance(v, dict) else {}


def _ns_types(cfg):
    nss = _lin(cfg).get("namespaces")
    return {n.get("type") for n in nss if isinstance(n, dict)} if isinstance(nss, list) else set()


def _mount_options(cfg):
    ms = cfg.get("mounts") if isinstance(cfg, dict) else None
    out = set()
    for m in ms if isinstance(ms, list) else []:
        if isinstance(m, dict) and isinstance(m.get("options"), list):
            out |= {o for o in m["options"] if isinstance(o, str)}
    return out


def _idmapped_mounts(cfg):
    ms = cfg.get("mounts") if isinstance(cfg, dict) else None
    for m in ms if isinstance(ms, list) else []:
        if isinstance(m, dict) and (m.get("uidMappings") or m.get("gidMappings")
                                    or {"idmap", "ridmap"} & set(m.get("options") or [])):
            return True
    return False


RAN_VS_REFUSED = {("ran", "refused")}
REFUSED_VS_RAN = {("refused", "ran")}
ANY_VERDICT = frozenset()   # with verdicts_any=True: whatever runc's verdict, when ocirun's is the one named


class Known:
    """One explained difference. `keys`: the observation-key prefixes it can change; `verdicts`: the (runc,
    ocirun) verdict pairs it can cause. Narrower still, when given: `accept(cfg, key, runc_value,
    ocirun_value)` must hold for a key to be explained (the values are the exact change the entry describes),
    and `stderr` (a regex) must match the refusing side's last error line for a verdict to be explained.
    `kind`: "runc-1.1.5" (runc changed since 1.1.5; `since` = first release, or "main" if unreleased) or
    "extensions" (an intended difference, `since` = the spec/EXTENSIONS.md row)."""

    def __init__(self, name, since, reason, evidence, applies, keys=(), verdicts=frozenset(), accept=None,
                 stderr=None, kind="runc-1.1.5"):
        self.name, self.since, self.reason, self.evidence = name, since, reason, evidence
        self.applies, self.keys, self.verdicts = applies, tuple(keys), set(verdicts)
        self.accept = accept
        self.stderr = re.compile(stderr) if stderr else None
        self.kind = kind


# ----------------------------------------------------------------------------------------------- helpers
def _mounts(cfg):
    ms = cfg.get("mounts") if isinstance(cfg, dict) else None
    return [m for m in ms if isinstance(m, dict)] if isinstance(ms, list) else []


def _host_cgroup_v1():
    import os
    return os.path.isdir("/sys/fs/cgroup/memory") or os.path.isdir("/sys/fs/cgroup/cpu")


def _mode_opt(opts):
    """The last mode= of a mount's options (octal), or None."""
    mode = None
    for o in opts if isinstance(opts, list) else []:
        if isinstance(o, str) and o.startswith("mode="):
            try:
                mode = int(o[5:], 8)
            except ValueError:
                return None
    return mode


def _tmpfs_like(cfg):
    """{destination: mode= of its options (None if none)} of the tmpfs mounts, plus the v1 cgroup tmpfs that a
    cgroup mount becomes on a v1/hybrid host (runc's mountCgroupV1: Data "mode=755")."""
    out = {}
    for m in _mounts(cfg):
        if m.get("type") == "tmpfs" and isinstance(m.get("destination"), str):
            out[m["destination"]] = _mode_opt(m.get("options"))
        elif m.get("type") == "cgroup" and isinstance(m.get("destination"), str) and _host_cgroup_v1():
            out[m["destination"]] = 0o755
    return out


def _strip_mode(super_opts):
    return ",".join(o for o in (super_opts or "").split(",") if not o.startswith("mode="))


def _tmpfs_mode_accept(cfg, key, a, b):
    if key.startswith("mount[") and key.endswith("].super"):
        # runc 1.1.5 chmods (no mode= in the superblock), 1.2+ passes mode=<dir's mode>: only mode= differs
        return isinstance(a, str) and isinstance(b, str) and _strip_mode(a) == _strip_mode(b)
    m = re.match(r"^dev\[(.*)\]$", key)
    if m and isinstance(a, dict) and isinstance(b, dict):
        want = _tmpfs_like(cfg).get(m.group(1))
        same_rest = {k: v for k, v in a.items() if k != "mode"} == {k: v for k, v in b.items() if k != "mode"}
        # 1.1.5: the existing directory's mode wins; 1.2+: the mount's mode= wins
        return same_rest and want is not None and isinstance(b.get("mode"), int) and b["mode"] & 0o7777 == want
    return False


def _ids(cfg):
    u = _proc(cfg).get("user")
    u = u if isinstance(u, dict) else {}
    ids = [u.get("uid"), u.get("gid")] + list(u.get("additionalGids") or [])
    return [i for i in ids if isinstance(i, int)]


_SHARED_KINDS = {"shared": ("shared", False), "rshared": ("shared", True),
                 "unbindable": ("unbindable", False), "runbindable": ("unbindable", True)}


def _root_prop(cfg):
    return _SHARED_KINDS.get(_lin(cfg).get("rootfsPropagation"))


def _root_prop_accept(cfg, key, a, b):
    kind, recursive = _root_prop(cfg)
    m = re.match(r"^mount\[(.*)\]\.propagation$", key)
    if not m or not isinstance(a, list) or not isinstance(b, list) or not b:
        return False
    if kind == "shared" and len(a) == len(b) == 1 and all(re.fullmatch(r"shared:g\d+", t) for t in a + b):
        # peer groups are numbered in order of appearance: the container's / joining a group of its own (1.4.0)
        # shifts the numbers of the groups after it; still shared, only the label moved
        return True
    if a != ["private"]:
        return False
    if not recursive and m.group(1) != "/":
        return False
    if kind == "shared":
        return all(t.startswith("shared:") for t in b)
    return b == ["unbindable"]


def _hooks(cfg, kind):
    h = cfg.get("hooks") if isinstance(cfg, dict) else None
    lst = h.get(kind) if isinstance(h, dict) else None
    return lst if isinstance(lst, list) else []


def _state_status_accept(runc_status, ocirun_status):
    def acc(cfg, key, a, b):
        if not (key.endswith("].state") and isinstance(a, dict) and isinstance(b, dict)):
            return False
        return (a.get("status"), b.get("status")) == (runc_status, ocirun_status) and \
            {k: v for k, v in a.items() if k != "status"} == {k: v for k, v in b.items() if k != "status"}
    return acc


from .strategies import CAPS as CAP_NAMES  # noqa: E402  (the kernel's capability names, in bit order)


def _host_bounding():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                bits = int(line.split()[1], 16)
                return {n for i, n in enumerate(CAP_NAMES) if bits >> i & 1}
    return set(CAP_NAMES)


def _caps_outside_bounding(cfg):
    caps = _proc(cfg).get("capabilities")
    if not isinstance(caps, dict):
        return False
    named = {c for v in caps.values() if isinstance(v, list) for c in v if c in CAP_NAMES}
    return bool(named - _host_bounding())


def _relative_paths(cfg):
    return any(isinstance(p, str) and p and not p.startswith("/")
               for k in ("maskedPaths", "readonlyPaths") for p in (_lin(cfg).get(k) or []
                                                                 if isinstance(_lin(cfg).get(k), list) else []))


def _duplicate_rlimits(cfg):
    rl = _proc(cfg).get("rlimits")
    types = [r.get("type") for r in rl if isinstance(r, dict)] if isinstance(rl, list) else []
    return len(types) != len(set(types))


_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")


def _bad_oci_version(cfg):
    v = cfg.get("ociVersion") if isinstance(cfg, dict) else None
    return not (isinstance(v, str) and _SEMVER.match(v))


def _hook_exit(h):
    a = h.get("args") if isinstance(h, dict) else None
    try:
        return int(a[-1]) if isinstance(a, list) and a else 0
    except (TypeError, ValueError):
        return 0


def _failed_poststop_then_more(cfg):
    """Index of the first failing poststop hook that has hooks after it, or None."""
    lst = _hooks(cfg, "poststop")
    for i, h in enumerate(lst[:-1]):
        if _hook_exit(h) != 0 or (isinstance(h, dict) and isinstance(h.get("timeout"), int) and h["timeout"] <= 0):
            return i
    return None


def _poststop_accept(cfg, key, a, b):
    i = _failed_poststop_then_more(cfg)
    if key == "hooks.order":
        # runc stops at the failed poststop hook; ocirun runs the rest
        return isinstance(a, list) and isinstance(b, list) and b[:len(a)] == a and \
            all(x.startswith("poststop-") for x in b[len(a):])
    m = re.match(r"^hook\[poststop-(\d+)\]\.", key)
    return bool(m) and int(m.group(1)) > i and a is None


def _start_hook_env_accept(cfg, key, a, b):
    m = re.match(r"^hook\[startContainer-(\d+)\]\.env$", key)
    hooks = _hooks(cfg, "startContainer")
    if not m or int(m.group(1)) >= len(hooks) or hooks[int(m.group(1))].get("env") != []:
        return False
    # runc 1.1.5: nothing (busybox sh then exports its built-in PATH); 1.3+: the process's env
    penv = _proc(cfg).get("env")
    penv = [e for e in penv if isinstance(e, str) and "=" in e] if isinstance(penv, list) else []
    return a in ([], ["PATH=/sbin:/usr/sbin:/bin:/usr/bin"]) and isinstance(b, list) and \
        set(penv) <= set(b) | {e for e in penv if e.startswith("PATH=")}


KNOWN = [
    Known("tmpfs-mode-existing-dir", "1.2.0",
          "a tmpfs over an existing directory: runc 1.1.5 mounts, then chmods the mount point to the directory's "
          "old mode (a mode= option loses, no mode= in the superblock); runc 1.2.0 passes mode=<dir's mode> ahead "
          "of the options (a mode= option wins). Also the v1 cgroup tmpfs (Data \"mode=755\") over sysfs's 0555 "
          "/sys/fs/cgroup, and every mount whose superblock is such a tmpfs (/dev's, seen through /dev/null binds)",
          "runc 9fa8b9de3 \"Fix tmpfs mode opts when dir already exists\" (first in v1.2.0): "
          "HEAD:libcontainer/rootfs_linux.go createOpenMountpoint (dt := fmt.Sprintf(\"mode=%04o\"...)) vs "
          "v1.1.5:libcontainer/rootfs_linux.go mountToRootfs case \"tmpfs\" (os.Chmod(dest, stat.Mode()))",
          lambda c: bool(_tmpfs_like(c)),
          keys=("mount[", "dev["), accept=_tmpfs_mode_accept),
    Known("uid-gid-range", "1.3.0",
          "runc 1.1.5 (and 1.2.x) resolve process.user through the container's /etc/passwd code, which refuses "
          "ids >= 2^31 (\"uids and gids must be in range 0-2147483647\"); runc 1.3.0 passes the numeric ids as they are",
          "runc 7dc248688 \"libct: switch to numeric UID/GID/groups\" (first in v1.3.0): HEAD:libcontainer/"
          "init_linux.go setupUser (unix.Setuid(config.UID)) vs v1.1.5:libcontainer/init_linux.go "
          "(user.GetExecUserPath) and v1.1.5:libcontainer/user/user.go (maxID = 1<<31 - 1, ErrRange)",
          lambda c: any(i >= 2 ** 31 for i in _ids(c)),
          verdicts=REFUSED_VS_RAN, stderr=r"uids and gids must be in range"),
    Known("root-propagation-after-pivot", "1.4.0",
          "rootfsPropagation shared/unbindable (r*: recursive): runc 1.1.5 applies it to the host's / before the "
          "rootfs bind (the container's mounts stay private); runc 1.4.0 applies it to the container's / after "
          "pivot_root (rshared: every mount of the container is shared; shared: / only)",
          "runc 04be81b6a \"fix rootfs propagation mode\" (first in v1.4.0): HEAD:libcontainer/rootfs_linux.go "
          "prepareRootfs (\"Apply root mount propagation flags\" after pivotRoot); absent from v1.1.5",
          lambda c: _root_prop(c) is not None,
          keys=("mount[",), accept=_root_prop_accept),
    Known("poststart-at-start", "main",
          "runc 1.1.5 runs poststart hooks in `create` (state status \"created\"); runc main runs them in `start` "
          "after the user process is exec'd (status \"running\"), as runtime.md's lifecycle says",
          "runc 3cdda464f \"Move poststart hook from runc create to runc start\" (main, not yet released): "
          "HEAD:libcontainer/container_linux.go postStart() called from exec(); v1.1.5:libcontainer/"
          "container_linux.go start() (Hooks[configs.Poststart].RunHooks right after parent.start())",
          lambda c: bool(_hooks(c, "poststart")),
          keys=("hook[poststart-",), accept=_state_status_accept("created", "running"),
          # a failing poststart hook: 1.1.5 fails the create, main the start
          verdicts={("refused", "start-refused")}, stderr=r"hooks\.poststart\[\d+\]"),
    Known("start-container-hook-empty-env", "1.3.0",
          "a startContainer hook with \"env\": []: runc 1.1.5 runs it with an empty environment (Go's exec.Cmd "
          "with a non-nil empty Env); runc 1.3.0 gives every startContainer hook whose env is empty (len 0) the "
          "container process's environment",
          "runc 6171da600 \"libct/configs: add HookList.SetDefaultEnv\" + 06f1e0765 (first in v1.3.0): "
          "HEAD:libcontainer/configs/config.go SetDefaultEnv (len(ch.Env) == 0), HEAD:libcontainer/"
          "standard_init_linux.go (h.SetDefaultEnv(l.config.Env)); absent from v1.1.5",
          lambda c: any(isinstance(h, dict) and h.get("env") == [] for h in _hooks(c, "startContainer")),
          keys=("hook[startContainer-",), accept=_start_hook_env_accept),
    Known("rootfs-slave-parent", "main",
          "rootfsPropagation slave/rslave: runc 1.1.5 (and 1.2-1.4) make the mount holding the rootfs private, so the "
          "container's / is private; runc main keeps it a slave (HostToContainer propagation), as ocirun does",
          "runc ec170d867 \"fix(libcontainer): preserve rootfs slave propagation\" (main, unreleased): "
          "HEAD:libcontainer/rootfs_linux.go rootfsParentMountPropagationFlags",
          lambda c: ((c.get("linux") or {}).get("rootfsPropagation") in ("slave", "rslave")),
          keys=("mount[",), accept=lambda cfg, key, a, b: key.endswith(".propagation") and a == ["private"]
          and isinstance(b, list) and len(b) == 1 and b[0].startswith("master:")),
    Known("no-proc-mount", "1.2.0",
          "no /proc mount in the container: runc 1.1.5 closes its leftover fds through /proc/self/fd and fails "
          "(\"error closing exec fds\"); runc 1.2.0 uses close_range(2) with CLOSE_RANGE_CLOEXEC and runs",
          "runc 70f4e46e6 \"utils: use close_range(2) to close leftover file descriptors\" (first in v1.2.0): "
          "HEAD:libcontainer/utils/utils_unix.go CloseExecFrom (unix.CloseRange ... CLOSE_RANGE_CLOEXEC)",
          lambda c: not any(m.get("type") == "proc" or m.get("destination") == "/proc" for m in _mounts(c)),
          verdicts={("refused", "ran")}, stderr=r"error closing exec fds: open /proc/self/fd"),
    Known("time-namespace", "1.2.0",
          "runc 1.1.5 has no time namespace: create fails with `namespace {\"time\" \"\"} does not exist`; "
          "runc 1.2.0 added NEWTIME and linux.timeOffsets",
          "HEAD:libcontainer/configs/namespaces_linux.go (NEWTIME), HEAD:libcontainer/specconv/spec_linux.go "
          "(specs.TimeNamespace: configs.NEWTIME); absent from v1.1.5",
          lambda c: "time" in _ns_types(c) or "timeOffsets" in _lin(c),
          keys=("ns.time", "timens_offsets"), verdicts=REFUSED_VS_RAN | RAN_VS_REFUSED),
    Known("domainname", "1.2.0",
          "runc 1.1.5 ignores the top-level domainname (the container keeps \"(none)\"); runc 1.2.0 sets it",
          "HEAD:libcontainer/specconv/spec_linux.go (Domainname: spec.Domainname) and standard_init_linux.go "
          "(setdomainname); absent from v1.1.5",
          lambda c: isinstance(c, dict) and bool(c.get("domainname")),
          keys=("domainname", "sysctl.kernel.domainname"),
          # (runc 1.2+ fails setdomainname with EINVAL for more than 64 bytes: refused as ocirun refuses; runc
          # 1.1.5's verdict is then whatever the rest of the config gives, e.g. no output after a failing hook)
          verdicts=RAN_VS_REFUSED | {("no-output", "refused"), ("start-refused", "refused")},
          stderr=r"domainname"),
    Known("personality", "1.2.0",
          "runc 1.1.5 ignores linux.personality (unknown field); runc 1.2.0 applies it and refuses bad domains",
          "HEAD:libcontainer/specconv/spec_linux.go and init_linux.go (Personality); absent from v1.1.5",
          lambda c: "personality" in _lin(c),
          keys=("personality",), verdicts=RAN_VS_REFUSED),
    Known("io-priority", "1.2.0",
          "runc 1.1.5 ignores process.ioPriority; runc 1.2.0 validates and applies it",
          "HEAD:libcontainer/configs/config.go, validate/validator.go, init_linux.go (IOPriority); absent from v1.1.5",
          lambda c: "ioPriority" in _proc(c),
          keys=("ioprio",), verdicts=RAN_VS_REFUSED),
    Known("scheduler", "1.2.0",
          "runc 1.1.5 ignores process.scheduler; runc 1.2.0 validates and applies it (sched_setattr)",
          "HEAD:libcontainer/configs/config.go (Scheduler); absent from v1.1.5",
          lambda c: "scheduler" in _proc(c),
          keys=("sched_", "nice"), verdicts=RAN_VS_REFUSED),
    Known("exec-cpu-affinity", "1.3.0",
          "runc 1.1.5 ignores process.execCPUAffinity; runc 1.3.0 applies it",
          "HEAD:libcontainer/configs/config.go (ExecCPUAffinity); absent from v1.1.5",
          lambda c: "execCPUAffinity" in _proc(c),
          keys=("cpus_allowed",), verdicts=RAN_VS_REFUSED),
    Known("memory-policy", "1.5.0",
          "runc 1.1.5 ignores linux.memoryPolicy; runc 1.5.0 validates and applies it (set_mempolicy)",
          "HEAD:libcontainer/configs/memorypolicy.go, validate/validator.go, init_linux.go; absent from v1.1.5",
          lambda c: "memoryPolicy" in _lin(c),
          keys=("mempolicy",), verdicts=RAN_VS_REFUSED),
    Known("idmapped-mounts", "1.2.0",
          "runc 1.1.5 knows neither mounts[].uidMappings/gidMappings nor the idmap/ridmap options (they are "
          "passed to mount(2) as data, or ignored for binds); runc 1.2.0 makes idmapped mounts",
          "HEAD:libcontainer/specconv/spec_linux.go (\"idmap\"/\"ridmap\" handlers), HEAD:libcontainer/"
          "mount_linux.go; absent from v1.1.5",
          _idmapped_mounts,
          keys=("mount[", "mounts.order", "dev["), verdicts=RAN_VS_REFUSED | REFUSED_VS_RAN),
    # ------------------------------------------------------------------ intended (spec/EXTENSIONS.md)
    Known("hook-status-created", "EXTENSIONS.md: Intended differences, \"hooks run by create\"",
          "prestart/createRuntime/createContainer hooks: runc's state says \"creating\", ocirun's \"created\"",
          "runtime.md lifecycle (\"created\" after step 2); runc HEAD:libcontainer/process_linux.go and "
          "rootfs_linux.go (specs.StateCreating), unchanged since v1.1.5",
          lambda c: any(_hooks(c, k) for k in ("prestart", "createRuntime", "createContainer")),
          keys=("hook[prestart-", "hook[createRuntime-", "hook[createContainer-"),
          accept=_state_status_accept("creating", "created"), kind="extensions"),
    Known("ungrantable-capabilities", "EXTENSIONS.md: Intended differences, \"capability outside the bounding set\"",
          "a capability outside the runtime's bounding set: runc refuses (\"unable to apply caps\"), ocirun warns, "
          "leaves it out and runs (config.md: SHOULD NOT fail)",
          "runc HEAD:libcontainer/capabilities/capabilities.go (capset EPERM), same in v1.1.5",
          _caps_outside_bounding, verdicts=REFUSED_VS_RAN, stderr=r"unable to apply caps", kind="extensions"),
    Known("relative-masked-readonly", "EXTENSIONS.md: runc's checks, \"relative cwd or masked/readonly paths\"",
          "a relative maskedPaths/readonlyPaths entry: runc runs (it resolves it somewhere), ocirun refuses",
          "config-linux.md: maskedPaths/readonlyPaths are absolute paths",
          _relative_paths, verdicts=RAN_VS_REFUSED, stderr=r"must be an absolute path", kind="extensions"),
    Known("duplicate-rlimits", "EXTENSIONS.md: Intended differences, \"process.rlimits lists a type twice\"",
          "rlimits with a type twice: runc sets both (whatever it then does), ocirun refuses",
          "config.md: duplicated rlimit types MUST generate an error",
          _duplicate_rlimits, verdicts={("ran", "refused"), ("no-output", "refused"), ("start-refused", "refused")},
          stderr=r"is listed more than once", kind="extensions"),
    Known("oci-version-semver", "EXTENSIONS.md: Intended differences, \"ociVersion missing or not SemVer\"",
          "ociVersion not SemVer: runc never reads it, ocirun refuses",
          "config.md: ociVersion MUST be SemVer 2.0.0",
          _bad_oci_version, verdicts=RAN_VS_REFUSED, stderr=r"ociVersion", kind="extensions"),
    Known("no-process", "EXTENSIONS.md: Intended differences, \"no process\"",
          "no process: runc refuses the create, ocirun creates and refuses the start",
          "config.md: process is REQUIRED only when start is called",
          lambda c: isinstance(c, dict) and not isinstance(c.get("process"), dict),
          verdicts={("refused", "start-refused")}, stderr=r"has no process", kind="extensions"),
    Known("start-container-hook-error", "EXTENSIONS.md: Intended differences, \"a startContainer hook fails\"",
          "a failing startContainer hook: runc's `start` exits 0 and the process never runs (the init runs the "
          "hooks after signalling the exec fifo; the error is only logged), ocirun's `start` fails with the "
          "hook's error",
          "runtime.md lifecycle step 7: if a startContainer hook fails the runtime MUST generate an error; runc "
          "HEAD:libcontainer/standard_init_linux.go (Hooks.Run(configs.StartContainer) after the fifo write), "
          "the same order in v1.1.5",
          lambda c: any(_hook_exit(h) != 0 or (isinstance(h, dict) and isinstance(h.get("timeout"), int)
                                                and h["timeout"] <= 0) for h in _hooks(c, "startContainer")),
          verdicts={("no-output", "start-refused")}, stderr=r"hooks\.startContainer\[\d+\]", kind="extensions"),
    Known("hook-timeout-positive", "EXTENSIONS.md: Intended differences, \"a hook timeout of 0 or less\"",
          "a hook timeout of 0 or less: runc runs the hook with a timer that fires at once (a startContainer "
          "hook so killed leaves no output), ocirun refuses the config (schema: minimum 1)",
          "config.md: timeout, if set, MUST be greater than zero; runc HEAD:libcontainer/configs/config.go "
          "(Command.Run: time.After(*c.Timeout)), the same in v1.1.5",
          lambda c: any(isinstance(h, dict) and isinstance(h.get("timeout"), int) and h["timeout"] <= 0
                        for k in ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
                                  "poststop") for h in _hooks(c, k)),
          verdicts={("ran", "refused"), ("no-output", "refused"), ("start-refused", "refused")},
          stderr=r"/hooks/\w+/\d+/timeout", kind="extensions"),
    Known("poststop-continue", "EXTENSIONS.md: Intended differences, \"a poststop hook fails\"",
          "a failing poststop hook: runc skips the ones after it, ocirun warns and runs them",
          "config.md: a poststop failure MUST be logged as a warning and the remaining hooks continue",
          lambda c: _failed_poststop_then_more(c) is not None,
          keys=("hooks.order", "hook[poststop-"), accept=_poststop_accept, kind="extensions"),
]


def explain(cfg, disagreement):
    """Split a disagreement into what the applicable entries account for and what is left.
    Returns (rest, used): `rest` is the disagreement without the explained keys (None when nothing is
    left), `used` the names of the entries that explained something. A verdict disagreement is explained
    only when an entry names that verdict pair and (if it has `stderr`) one side's error line matches."""
    entries = [k for k in KNOWN if k.applies(cfg)]
    if not entries:
        return disagreement, []
    if disagreement["keys"] == ["verdict"]:
        v = disagreement["verdicts"]
        pair = (v["runc"], v["ocirun"])
        # the error lines of both sides (each entry's regex names a message only one runtime writes)
        msg = " | ".join((disagreement.get("stderr") or {}).get(n) or "" for n in ("runc", "ocirun"))
        for k in entries:
            if pair in k.verdicts and (k.stderr is None or k.stderr.search(msg or "")):
                return None, [k.name]
        return disagreement, []
    used, rest = set(), []
    for key in disagreement["keys"]:
        a, b = disagreement["values"].get(key, [None, None])
        k = next((k for k in entries if k.keys and key.startswith(k.keys)
                  and (k.accept is None or k.accept(cfg, key, a, b))), None)
        if k is not None:
            used.add(k.name)
        else:
            rest.append(key)
    if not rest:
        return None, sorted(used)
    d = dict(disagreement, keys=rest, values={k: disagreement["values"][k] for k in rest if k in disagreement["values"]})
    return d, sorted(used)
