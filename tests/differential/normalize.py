"""From an Outcome to a flat {key: value} observation, with what legitimately differs between two runs removed.

Removed or rewritten: the container id and the bundle directory (each run has its own: "@ID@", "@BUNDLE@"),
mount ids and parent ids (the parent is named by its mount point instead), device numbers of new
filesystems, namespace inode numbers (kept as "host" or "new" against this process's namespaces), pipe and
socket inode numbers, host pids (a pid is 1 inside a new pid namespace, else "host-pid"), peer-group numbers
of shared/master propagation (renumbered in order of appearance), clocks, and in the state a hook reads on
stdin: the pid, the runtime's own spec version ("ociVersion" of the state is the runtime's, not the
config's) and timestamps. Error wording is never compared: verdicts are.

Keys are dotted paths: "uid", "capabilities.effective", "rlimits.RLIMIT_NOFILE", "mount[/dev/shm].options",
"mounts.order", "dev[/dev/null]", "sysctl.kernel.shmmax", "hook[prestart-0].env", "hooks.order"...
"""
import json
import re

PLAIN_KEYS = ("uid", "gid", "euid", "egid", "groups", "umask", "status_umask", "cwd", "env", "hostname",
              "domainname", "no_new_privs", "seccomp", "seccomp_filters", "oom_score_adj", "personality",
              "sched_policy", "sched_reset_on_fork", "sched_priority", "nice", "ioprio", "cpus_allowed",
              "mempolicy", "timens_offsets", "tty", "argv")
_INODE = re.compile(r"(pipe|socket|anon_inode|net|mnt|pid|user|uts|ipc|cgroup|time):\[\d+\]")
_DELETED_TMP = re.compile(r"/tmp/#\d+ \(deleted\)")
_PEER = re.compile(r"^(shared|master|propagate_from):(\d+)$")
# tmpfs/devpts instances print per-instance numbers in their super options only through these keys
_VOLATILE_SUPER = ("inode64",)


def _subst(value, bundle, cid):
    if isinstance(value, str):
        if bundle:
            value = value.replace(bundle, "@BUNDLE@")
        if cid:
            value = value.replace(cid, "@ID@")
        value = _DELETED_TMP.sub("/tmp/#N (deleted)", value)
        return _INODE.sub(lambda m: m.group(1), value)
    if isinstance(value, list):
        return [_subst(v, bundle, cid) for v in value]
    if isinstance(value, dict):
        return {_subst(k, bundle, cid): _subst(v, bundle, cid) for k, v in value.items()}
    return value


def _mounts(mounts, bundle, cid, out):
    by_id = {m.get("id"): m for m in mounts}
    peers = {}

    def peer(tag):
        m = _PEER.match(tag)
        if not m:
            return tag
        key = m.group(2)
        if key not in peers:
            peers[key] = f"g{len(peers) + 1}"
        return f"{m.group(1)}:{peers[key]}"

    seen = {}
    order = []
    for m in mounts:
        mp = _subst(m.get("mountpoint", ""), bundle, cid)
        n = seen.get(mp, 0)
        seen[mp] = n + 1
        name = mp if n == 0 else f"{mp}#{n}"
        order.append(name)
        parent = by_id.get(m.get("parent"))
        superopts = [o for o in (m.get("super") or "").split(",") if o and o not in _VOLATILE_SUPER]
        rec = {
            "fstype": m.get("fstype"),
            "source": _subst(m.get("source"), bundle, cid),
            "root": _subst(m.get("root"), bundle, cid),
            "options": m.get("options"),
            "propagation": sorted(peer(t) for t in m.get("optional") or []) or ["private"],
            "super": ",".join(superopts),
            "parent": _subst(parent.get("mountpoint"), bundle, cid) if parent else "(outside)",
        }
        for k, v in rec.items():
            out[f"mount[{name}].{k}"] = v
    out["mounts.order"] = order


def _ns(nss, host_ns):
    out = {}
    for k, v in (nss or {}).items():
        host = host_ns.get(k)
        out[k] = "host" if v == host else ("absent" if v in (None, "") else "new")
    return out


def parse_hook_log(text, bundle, cid, host_ns=None):
    rec = {}
    head, _, env = text.partition("--env--\n")
    for line in head.splitlines():
        k, _, v = line.partition("=")
        if k.startswith("ns_"):
            # the namespace set the hook runs in: the runtime's (host) or the container's (new)
            if host_ns is not None:
                host = host_ns.get(k[3:])
                rec[k] = "host" if v == host else ("absent" if not v else "new")
        elif k in ("where", "cwd", "stdin_fd"):
            rec[k] = _subst(v, bundle, cid)
        elif k == "state":
            try:
                st = json.loads(v)
            except ValueError:
                rec["state"] = {"unparsable": _subst(v, bundle, cid)}
                continue
            if isinstance(st, dict):
                st.pop("ociVersion", None)
                for t in ("created", "started", "timestamp"):
                    st.pop(t, None)
                if isinstance(st.get("pid"), int) and st["pid"] > 0:
                    st["pid"] = "pid>0"
            rec["state"] = _subst(st, bundle, cid)
    # the shell's own variables are not the runtime's doing
    rec["env"] = sorted(e for e in _subst(env.splitlines(), bundle, cid)
                        if e.split("=", 1)[0] not in ("PWD", "SHLVL", "_", "OLDPWD"))
    return rec


def observation(outcome, host_ns):
    """Flat, normalized observation of a run that printed the probe's JSON (None when it did not)."""
    p = outcome.probe
    b, cid = outcome.bundle, outcome.id
    out = {}
    if isinstance(p, dict):
        for k in PLAIN_KEYS:
            out[k] = _subst(p.get(k), b, cid)
        for k in ("pid", "ppid"):
            v = p.get(k)
            out[k] = v if v in (0, 1) else "host-pid"
        for k, v in (p.get("capabilities") or {}).items():
            out[f"capabilities.{k}"] = v
        for k, v in (p.get("rlimits") or {}).items():
            out[f"rlimits.{k}"] = v
        for k, v in _ns(p.get("namespaces"), host_ns).items():
            out[f"ns.{k}"] = v
        out["cgroup"] = _subst(p.get("cgroup"), b, cid)
        _mounts(p.get("mounts") or [], b, cid, out)
        for path, v in (p.get("devices") or {}).items():
            out[f"dev[{path}]"] = _subst(v, b, cid)
        for path, v in (p.get("paths") or {}).items():
            out[f"path[{path}]"] = v
        for name, v in (p.get("sysctl") or {}).items():
            out[f"sysctl.{name}"] = v
        out["fds"] = _subst(p.get("fds"), b, cid)
    for name, text in outcome.hooks.items():
        for k, v in parse_hook_log(text, b, cid, host_ns).items():
            out[f"hook[{name}].{k}"] = v
    if outcome.hooks or outcome.hook_order:
        out["hooks.order"] = list(outcome.hook_order)
    return out


def diff(a, b):
    """Keys whose values differ (or exist on one side only), sorted."""
    keys = set(a) | set(b)
    missing = object()
    return sorted(k for k in keys if a.get(k, missing) != b.get(k, missing))


def coarse(key):
    """A key's family, for grouping: "mount[/x].options" -> "mount.options", "rlimits.RLIMIT_X" ->
    "rlimits.RLIMIT_X", "hook[prestart-0].env" -> "hook.env", "dev[/dev/x]" -> "dev"."""
    key = re.sub(r"\[[^\]]*\]", "", key)
    return key


def compare(outcomes, host_ns):
    """None when runc and ocirun agree; else {"verdicts", "keys", "values"} (values: {key: [runc, ocirun]})."""
    r, o = outcomes["runc"], outcomes["ocirun"]
    verdicts = {"runc": r.verdict, "ocirun": o.verdict}
    if r.verdict != o.verdict:
        return {"verdicts": verdicts, "keys": ["verdict"], "values": {}}
    a, b = observation(r, host_ns), observation(o, host_ns)
    if r.verdict == "ran":
        for name, obs, out in (("runc", a, r), ("ocirun", b, o)):
            d = out.steps.get("delete")
            obs["delete"] = "ok" if d is not None and d.ok else "failed"
    if r.verdict in ("refused",) or r.verdict.startswith("timeout"):
        # both refused: whether a hook ran before the refusal is the order of a runtime's checks, not behaviour
        a = {k: v for k, v in a.items() if not k.startswith(("hook[", "hooks."))}
        b = {k: v for k, v in b.items() if not k.startswith(("hook[", "hooks."))}
    keys = diff(a, b)
    if not keys:
        return None
    return {"verdicts": verdicts, "keys": keys, "values": {k: [a.get(k), b.get(k)] for k in keys}}
