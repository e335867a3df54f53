"""Typed config: config.json is validated once, then parsed into these records that every module reads.

They are plain `__slots__` classes rather than @dataclass: `import dataclasses` costs ~18 ms on this machine
(it pulls in inspect, ast, re), most of ocirun's whole start-up budget. `Record` gives the same conveniences
(keyword construction with defaults, equality, repr).
"""
import os

from . import jsonio
from .errors import ConfigError


class Record:
    __slots__ = ()
    _defaults = {}

    def __init__(self, **kw):
        d = self._defaults
        for name in self.__slots__:
            if name in kw:
                v = kw.pop(name)
            else:
                v = d.get(name)
                if isinstance(v, (list, dict)):
                    v = type(v)(v)
            object.__setattr__(self, name, v)
        if kw:
            raise TypeError(f"{type(self).__name__}: unknown fields {sorted(kw)}")

    def __eq__(self, other):
        return type(self) is type(other) and all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    def __repr__(self):
        return f"{type(self).__name__}(" + ", ".join(f"{s}={getattr(self, s)!r}" for s in self.__slots__) + ")"


class Root(Record):
    __slots__ = ("path", "readonly")
    _defaults = {"readonly": False}


class IDMap(Record):
    __slots__ = ("container_id", "host_id", "size")


class Mount(Record):
    __slots__ = ("destination", "type", "source", "options", "uid_mappings", "gid_mappings")
    _defaults = {"options": []}


class User(Record):
    __slots__ = ("uid", "gid", "umask", "additional_gids", "username")
    _defaults = {"uid": 0, "gid": 0, "additional_gids": []}


class Capabilities(Record):
    # None means "not given" (the set is then cleared, as runc does); a list is the exact set.
    __slots__ = ("bounding", "effective", "inheritable", "permitted", "ambient")


class Rlimit(Record):
    __slots__ = ("type", "soft", "hard")


class Process(Record):
    __slots__ = ("terminal", "console_size", "user", "args", "command_line", "env", "cwd", "capabilities",
                 "rlimits", "no_new_privileges", "apparmor_profile", "oom_score_adj", "selinux_label",
                 "scheduler", "io_priority", "exec_cpu_affinity")
    _defaults = {"terminal": False, "args": [], "env": [], "rlimits": [], "no_new_privileges": False}


class Hook(Record):
    __slots__ = ("path", "args", "env", "timeout")


class Hooks(Record):
    __slots__ = ("prestart", "create_runtime", "create_container", "start_container", "poststart", "poststop")
    _defaults = {s: [] for s in __slots__}


class Namespace(Record):
    __slots__ = ("type", "path")


class Device(Record):
    __slots__ = ("type", "path", "major", "minor", "file_mode", "uid", "gid")


class Linux(Record):
    __slots__ = ("namespaces", "uid_mappings", "gid_mappings", "time_offsets", "devices", "cgroups_path",
                 "resources", "rootfs_propagation", "masked_paths", "readonly_paths", "mount_label", "sysctl",
                 "seccomp", "personality", "intel_rdt", "net_devices", "memory_policy")
    _defaults = {"namespaces": [], "uid_mappings": [], "gid_mappings": [], "devices": [], "masked_paths": [],
                 "readonly_paths": [], "sysctl": {}, "time_offsets": {}}

    def namespace(self, nstype):
        for ns in self.namespaces:
            if ns.type == nstype:
                return ns
        return None


class Config(Record):
    __slots__ = ("oci_version", "root", "mounts", "process", "hostname", "domainname", "hooks", "annotations",
                 "linux", "raw")
    _defaults = {"mounts": [], "annotations": {}}


NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")


def _idmaps(lst):
    return [IDMap(container_id=m["containerID"], host_id=m["hostID"], size=m["size"]) for m in lst or ()]


def _hooks(lst):
    return [Hook(path=h["path"], args=h.get("args"), env=h.get("env"), timeout=h.get("timeout")) for h in lst or ()]


def parse(doc):
    """Build a Config from an already schema-validated dict."""
    proc = None
    p = doc.get("process")
    if p is not None:
        u = p.get("user") or {}
        caps = p.get("capabilities")
        cs = p.get("consoleSize")
        proc = Process(
            terminal=bool(p.get("terminal", False)),
            console_size=(cs["height"], cs["width"]) if cs else None,
            user=User(uid=u.get("uid", 0), gid=u.get("gid", 0), umask=u.get("umask"),
                      additional_gids=list(u.get("additionalGids") or ()), username=u.get("username")),
            args=list(p.get("args") or ()),
            command_line=p.get("commandLine"),
            env=list(p.get("env") or ()),
            cwd=p.get("cwd", "/"),
            capabilities=None if caps is None else Capabilities(
                **{k: (list(caps[k]) if caps.get(k) is not None else None)
                   for k in ("bounding", "effective", "inheritable", "permitted", "ambient")}),
            rlimits=[Rlimit(type=r["type"], soft=r["soft"], hard=r["hard"]) for r in p.get("rlimits") or ()],
            no_new_privileges=bool(p.get("noNewPrivileges", False)),
            apparmor_profile=p.get("apparmorProfile"),
            oom_score_adj=p.get("oomScoreAdj"),
            selinux_label=p.get("selinuxLabel"),
            scheduler=p.get("scheduler"),
            io_priority=p.get("ioPriority"),
            exec_cpu_affinity=p.get("execCPUAffinity"),
        )
    lin = None
    ld = doc.get("linux")
    if ld is not None:
        lin = Linux(
            namespaces=[Namespace(type=n["type"], path=n.get("path")) for n in ld.get("namespaces") or ()],
            uid_mappings=_idmaps(ld.get("uidMappings")),
            gid_mappings=_idmaps(ld.get("gidMappings")),
            time_offsets=dict(ld.get("timeOffsets") or {}),
            devices=[Device(type=d["type"], path=d["path"], major=d.get("major"), minor=d.get("minor"),
                            file_mode=d.get("fileMode"), uid=d.get("uid"), gid=d.get("gid"))
                     for d in ld.get("devices") or ()],
            cgroups_path=ld.get("cgroupsPath"),
            resources=ld.get("resources"),
            rootfs_propagation=ld.get("rootfsPropagation"),
            masked_paths=list(ld.get("maskedPaths") or ()),
            readonly_paths=list(ld.get("readonlyPaths") or ()),
            mount_label=ld.get("mountLabel"),
            sysctl=dict(ld.get("sysctl") or {}),
            seccomp=ld.get("seccomp"),
            personality=ld.get("personality"),
            intel_rdt=ld.get("intelRdt"),
            net_devices=ld.get("netDevices"),
            memory_policy=ld.get("memoryPolicy"),
        )
    h = doc.get("hooks") or {}
    r = doc.get("root")
    return Config(
        oci_version=doc["ociVersion"],
        root=Root(path=r["path"], readonly=bool(r.get("readonly", False))) if r else None,
        mounts=[Mount(destination=m["destination"], type=m.get("type"), source=m.get("source"),
                      options=list(m.get("options") or ()), uid_mappings=_idmaps(m.get("uidMappings")),
                      gid_mappings=_idmaps(m.get("gidMappings"))) for m in doc.get("mounts") or ()],
        process=proc,
        hostname=doc.get("hostname"),
        domainname=doc.get("domainname"),
        hooks=Hooks(prestart=_hooks(h.get("prestart")), create_runtime=_hooks(h.get("createRuntime")),
                    create_container=_hooks(h.get("createContainer")),
                    start_container=_hooks(h.get("startContainer")), poststart=_hooks(h.get("poststart")),
                    poststop=_hooks(h.get("poststop"))),
        annotations=dict(doc.get("annotations") or {}),
        linux=lin,
        raw=doc,
    )


def load_doc(path):
    """Read and JSON-parse a config file; malformed JSON names line and column."""
    return parse_doc(read_config(path), path)


def read_config(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file", prefix="") from None
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}", prefix="") from None


def parse_doc(data, path):
    try:
        doc = jsonio.loads(data)
    except jsonio.JSONError as e:
        raise ConfigError(f"invalid JSON: {e.msg} at line {e.lineno} column {e.colno}",
                          prefix=os.path.basename(path)) from None
    if not isinstance(doc, dict):
        raise ConfigError("/: the document must be a JSON object", prefix=os.path.basename(path))
    return doc


def load(path, validate=True):
    """Load, validate and parse config.json -> Config."""
    raw = read_config(path)
    doc = parse_doc(raw, path)
    from .extensions import normalize

    normalize(doc, raw)  # what runc reads beyond the official schema (spec/extensions.json)
    if validate:
        from .validate import validate_config_cached

        validate_config_cached(doc, raw)
    check_semantics(doc)
    return parse(doc)


def check_semantics(doc):
    """Rules the schema cannot express but that runc enforces before touching the host (ocirun.semantics):
    every problem at once as a ConfigError; what runc only warns about is logged as a warning."""
    from . import semantics

    probs = semantics.problems(doc)
    if probs:
        raise ConfigError(probs)
    warns = semantics.warnings(doc)
    if warns:
        from . import log

        for w in warns:
            log.warning(w)
