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


class Known:
    """One runc-1.1.5-only behaviour. `keys`: the observation-key prefixes the feature can change;
    `verdicts`: the (runc, ocirun) verdict pairs it can cause."""

    def __init__(self, name, since, reason, evidence, applies, keys=(), verdicts=frozenset()):
        self.name, self.since, self.reason, self.evidence = name, since, reason, evidence
        self.applies, self.keys, self.verdicts = applies, tuple(keys), set(verdicts)


KNOWN = [
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
          keys=("domainname", "sysctl.kernel.domainname"), verdicts=RAN_VS_REFUSED),
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
]


def explain(cfg, disagreement):
    """Split a disagreement into what the applicable entries account for and what is left.
    Returns (rest, used): `rest` is the disagreement without the explained keys (None when nothing is
    left), `used` the names of the entries that explained something."""
    entries = [k for k in KNOWN if k.applies(cfg)]
    if not entries:
        return disagreement, []
    if disagreement["keys"] == ["verdict"]:
        pair = (disagreement["verdicts"]["runc"], disagreement["verdicts"]["ocirun"])
        for k in entries:
            if pair in k.verdicts:
                return None, [k.name]
        return disagreement, []
    used, rest = set(), []
    for key in disagreement["keys"]:
        k = next((k for k in entries if k.keys and key.startswith(k.keys)), None)
        if k is not None:
            used.add(k.name)
        else:
            rest.append(key)
    if not rest:
        return None, sorted(used)
    d = dict(disagreement, keys=rest, values={k: disagreement["values"][k] for k in rest if k in disagreement["values"]})
    return d, sorted(used)
