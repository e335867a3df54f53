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


def normalize_engine_quirks(doc):
    """Tolerate what real engines write and runc accepts, with a warning, before schema validation.

    podman (4.x, --device/--privileged) puts the file-type bits into linux.devices[].fileMode (8630 = 0o20666);
    the schema allows 0..0o777 and runc keeps only the permission bits. We do the same."""
    devs = (doc.get("linux") or {}).get("devices") if isinstance(doc.get("linux"), dict) else None
    if not isinstance(devs, list):
        return
    for i, d in enumerate(devs):
        m = d.get("fileMode") if isinstance(d, dict) else None
        if isinstance(m, int) and not isinstance(m, bool) and m > 0o777 and m & ~0o177777 == 0 and m & 0o170000:
            d["fileMode"] = m & 0o777
            from . import log

            log.debug(f"linux.devices[{i}].fileMode: {m} ({oct(m)}) carries file-type bits; using {oct(m & 0o777)}")


def load(path, validate=True):
    """Load, validate and parse config.json -> Config."""
    raw = read_config(path)
    doc = parse_doc(raw, path)
    normalize_engine_quirks(doc)
    if validate:
        from .validate import validate_config_cached

        validate_config_cached(doc, raw)
    check_semantics(doc)
    return parse(doc)


def check_semantics(doc):
    """Rules the schema cannot express but that runc enforces before touching the host."""
    probs = []
    p = doc.get("process")
    ld = doc.get("linux") or {}
    if p is not None:
        if not p.get("args") and not p.get("commandLine"):
            probs.append("/process/args: must name the program to run (at least one element)")
        cwd = p.get("cwd")
        if cwd is not None and not cwd.startswith("/"):
            probs.append(f"/process/cwd: {cwd!r} must be an absolute path")
    v = doc.get("ociVersion")
    if isinstance(v, str) and not _semver(v):
        probs.append(f"/ociVersion: {v!r} is not a SemVer 2.0.0 version")
    for key in ("maskedPaths", "readonlyPaths"):
        for i, pth in enumerate(ld.get(key) or ()):
            if isinstance(pth, str) and not pth.startswith("/"):
                probs.append(f"/linux/{key}/{i}: {pth!r} must be an absolute path")
    sc = ld.get("seccomp")
    if isinstance(sc, dict) and sc.get("listenerMetadata") and not sc.get("listenerPath"):
        probs.append("/linux/seccomp/listenerMetadata: set without listenerPath")
    seen = set()
    for i, ns in enumerate(ld.get("namespaces") or ()):
        if ns.get("type") in seen:
            probs.append(f"/linux/namespaces/{i}/type: namespace {ns.get('type')!r} is listed more than once")
        seen.add(ns.get("type"))
    for i, m in enumerate(doc.get("mounts") or ()):
        d = m.get("destination", "")
        if not d.startswith("/"):
            # runc tolerates relative destinations (with a warning) by anchoring them at /; so do we.
            pass
    for key in ("uidMappings", "gidMappings"):
        if ld.get(key) and "user" not in seen:
            probs.append(f"/linux/{key}: ID mappings need a user namespace in /linux/namespaces")
    if ld.get("timeOffsets") and "time" not in seen:
        probs.append("/linux/timeOffsets: time offsets need a time namespace in /linux/namespaces")
    if p is None and doc.get("root") is not None:
        pass
    if probs:
        raise ConfigError(probs)


_SEMVER_DIGITS = frozenset("0123456789")
_SEMVER_IDENT = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-")


def _semver(v):
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
