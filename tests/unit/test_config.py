"""ocirun.config: typed records from config.json, load() error messages, check_semantics."""
import copy
import json
import os
from pathlib import Path

import pytest

from ocirun import config as C
from ocirun import specgen
from ocirun.errors import ConfigError

VALID = Path(__file__).resolve().parents[1] / "fixtures" / "configs" / "valid"


def write(tmp_path, text, name="config.json"):
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(p)


# ============================================================================ parse
def test_parse_default_spec():
    doc = specgen.default_spec()
    cfg = C.parse(doc)
    assert isinstance(cfg, C.Config)
    assert cfg.oci_version == "1.3.0" and cfg.raw is doc
    assert cfg.root == C.Root(path="rootfs", readonly=True)
    assert cfg.hostname == "ocirun" and cfg.domainname is None
    p = cfg.process
    assert isinstance(p, C.Process)
    assert p.terminal is True and p.args == ["sh"] and p.cwd == "/"
    assert p.user == C.User(uid=0, gid=0, umask=None, additional_gids=[], username=None)
    assert p.env == doc["process"]["env"]
    assert p.no_new_privileges is True
    assert p.capabilities == C.Capabilities(bounding=["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                                            effective=["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                                            permitted=["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                                            inheritable=None, ambient=None)
    assert p.rlimits == [C.Rlimit(type="RLIMIT_NOFILE", soft=1024, hard=1024)]
    assert p.console_size is None
    assert [m.destination for m in cfg.mounts] == [m["destination"] for m in doc["mounts"]]
    assert cfg.mounts[0] == C.Mount(destination="/proc", type="proc", source="proc", options=[], uid_mappings=[],
                                    gid_mappings=[])
    assert cfg.mounts[1].options == ["nosuid", "strictatime", "mode=755", "size=65536k"]
    lin = cfg.linux
    assert [n.type for n in lin.namespaces] == [n["type"] for n in doc["linux"]["namespaces"]]
    assert [n.type for n in lin.namespaces][:5] == ["pid", "network", "ipc", "uts", "mount"]
    assert all(n.path is None for n in lin.namespaces)
    assert lin.namespace("mount") == C.Namespace(type="mount", path=None)
    assert lin.namespace("user") is None
    assert lin.masked_paths == specgen.MASKED_PATHS and lin.readonly_paths == specgen.READONLY_PATHS
    assert lin.uid_mappings == [] and lin.devices == [] and lin.sysctl == {}
    assert cfg.hooks == C.Hooks()
    assert cfg.annotations == {}


def test_parse_does_not_alias_the_document():
    doc = specgen.default_spec()
    cfg = C.parse(doc)
    cfg.process.args.append("x")
    cfg.mounts[1].options.append("y")
    cfg.linux.masked_paths.append("/z")
    assert doc["process"]["args"] == ["sh"]
    assert "y" not in doc["mounts"][1]["options"]
    assert "/z" not in doc["linux"]["maskedPaths"]


def test_record_defaults_are_not_shared():
    a, b = C.Hooks(), C.Hooks()
    a.prestart.append(1)
    assert b.prestart == []
    with pytest.raises(TypeError):
        C.Root(path="x", bogus=1)


def test_parse_podman_fixture():
    doc = json.loads((VALID / "podman-default.json").read_text())
    cfg = C.parse(doc)
    assert cfg.oci_version == "1.0.2-dev"
    assert cfg.root.path.endswith("/merged") and cfg.root.readonly is False
    assert cfg.process.user.umask == 18
    assert cfg.process.args == ["sh", "-c", "echo hi"]
    assert "HOME=/root" in cfg.process.env
    assert cfg.process.rlimits == [C.Rlimit(type="RLIMIT_NOFILE", soft=1048576, hard=1048576),
                                   C.Rlimit(type="RLIMIT_NPROC", soft=32768, hard=32768)]
    assert cfg.process.capabilities.inheritable is None and "CAP_SYS_CHROOT" in cfg.process.capabilities.bounding
    hosts = [m for m in cfg.mounts if m.destination == "/etc/hosts"][0]
    assert hosts.type == "bind" and hosts.options == ["bind", "rprivate"] and hosts.source.endswith("/hosts")
    assert cfg.linux.cgroups_path.startswith("/libpod_parent/")
    assert cfg.linux.resources == doc["linux"]["resources"]
    assert cfg.linux.seccomp["defaultAction"] == "SCMP_ACT_ERRNO"
    assert cfg.annotations["io.container.manager"] == "libpod"


@pytest.mark.parametrize("path", sorted(VALID.glob("*.json")), ids=lambda p: p.name)
def test_parse_every_valid_fixture_mirrors_the_document(path):
    doc = json.loads(path.read_text())
    cfg = C.parse(doc)
    assert cfg.oci_version == doc["ociVersion"]
    assert len(cfg.mounts) == len(doc.get("mounts") or [])
    for m, d in zip(cfg.mounts, doc.get("mounts") or []):
        assert (m.destination, m.type, m.source, m.options) == (d["destination"], d.get("type"), d.get("source"),
                                                                d.get("options") or [])
    p = doc.get("process")
    if p is not None:
        assert cfg.process.args == (p.get("args") or [])
        assert cfg.process.user.uid == p.get("user", {}).get("uid", 0)
        assert cfg.process.user.additional_gids == (p.get("user", {}).get("additionalGids") or [])
        if p.get("consoleSize"):
            assert cfg.process.console_size == (p["consoleSize"]["height"], p["consoleSize"]["width"])
    ld = doc.get("linux")
    if ld is not None:
        assert [(n.type, n.path) for n in cfg.linux.namespaces] == [(n["type"], n.get("path"))
                                                                     for n in ld.get("namespaces") or []]
        assert [(m.container_id, m.host_id, m.size) for m in cfg.linux.uid_mappings] == [
            (m["containerID"], m["hostID"], m["size"]) for m in ld.get("uidMappings") or []]
        assert len(cfg.linux.devices) == len(ld.get("devices") or [])
        for dev, d in zip(cfg.linux.devices, ld.get("devices") or []):
            assert (dev.type, dev.path, dev.major, dev.minor, dev.file_mode) == (
                d["type"], d["path"], d.get("major"), d.get("minor"), d.get("fileMode"))
    hooks = doc.get("hooks") or {}
    for spec_name, attr in (("prestart", "prestart"), ("createRuntime", "create_runtime"),
                            ("poststop", "poststop"), ("poststart", "poststart")):
        assert [h.path for h in getattr(cfg.hooks, attr)] == [h["path"] for h in hooks.get(spec_name) or []]


def test_parse_hooks_and_console_and_devices():
    doc = specgen.default_spec()
    doc["hooks"] = {"prestart": [{"path": "/bin/true", "args": ["true", "x"], "env": ["A=1"], "timeout": 5}],
                    "poststop": [{"path": "/bin/false"}]}
    doc["process"]["consoleSize"] = {"height": 24, "width": 80}
    doc["linux"]["devices"] = [{"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229, "fileMode": 438}]
    doc["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 65536}]
    cfg = C.parse(doc)
    assert cfg.hooks.prestart == [C.Hook(path="/bin/true", args=["true", "x"], env=["A=1"], timeout=5)]
    assert cfg.hooks.poststop == [C.Hook(path="/bin/false", args=None, env=None, timeout=None)]
    assert cfg.process.console_size == (24, 80)
    assert cfg.linux.devices == [C.Device(type="c", path="/dev/fuse", major=10, minor=229, file_mode=438,
                                          uid=None, gid=None)]
    assert cfg.linux.uid_mappings == [C.IDMap(container_id=0, host_id=1000, size=65536)]


def test_parse_minimal():
    cfg = C.parse({"ociVersion": "1.3.0"})
    assert cfg.process is None and cfg.linux is None and cfg.root is None and cfg.mounts == []


# ============================================================================ load: messages
def test_load_default_spec(tmp_path):
    path = write(tmp_path, json.dumps(specgen.default_spec(), indent=2))
    cfg = C.load(path)
    assert cfg == C.parse(specgen.default_spec())


def test_load_with_utf8_bom(tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbf" + json.dumps(specgen.default_spec()).encode())
    assert C.load(path).oci_version == "1.3.0"


@pytest.mark.parametrize("text", [
    '{\n  "ociVersion": "1.3.0",\n  "root" {}\n}',
    '{"ociVersion": "1.3.0",}',
    '{\n\n\n   "a": [1, 2,\n   ]\n}',
    '',
    '{"ociVersion": "1.3.0"} trailing',
    '{"a": "tab\there"}',
    '{\n"ociVersion": "1.3.0"\n',
])
def test_load_malformed_json_names_line_and_column(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as ei:
        C.load(path)
    with pytest.raises(json.JSONDecodeError) as ref:
        json.loads(text)
    r = ref.value
    assert str(ei.value) == f"config.json: invalid JSON: {r.msg} at line {r.lineno} column {r.colno}"


def test_load_invalid_utf8(tmp_path):
    path = write(tmp_path, b'{"ociVersion": "\xff"}')
    with pytest.raises(ConfigError) as ei:
        C.load(path)
    assert str(ei.value).startswith("config.json: invalid JSON")
    assert "\n" not in str(ei.value)


@pytest.mark.parametrize("text", ["[]", "1", '"x"', "null", "true"])
def test_load_non_object(tmp_path, text):
    with pytest.raises(ConfigError) as ei:
        C.load(write(tmp_path, text))
    assert str(ei.value) == "config.json: /: the document must be a JSON object"


def test_load_missing_file(tmp_path):
    with pytest.raises(ConfigError) as ei:
        C.load(str(tmp_path / "config.json"))
    assert str(ei.value) == f"{tmp_path / 'config.json'}: no such file"


def test_load_directory(tmp_path):
    (tmp_path / "config.json").mkdir()
    with pytest.raises(ConfigError) as ei:
        C.load(str(tmp_path / "config.json"))
    assert str(ei.value).startswith(str(tmp_path / "config.json"))


def test_load_schema_violation_message(tmp_path):
    doc = specgen.default_spec()
    doc["linux"]["namespaces"][2]["type"] = "pidd"
    with pytest.raises(ConfigError) as ei:
        C.load(write(tmp_path, json.dumps(doc)))
    assert str(ei.value) == ('config.json: /linux/namespaces/2/type: "pidd" is not one of '
                             'cgroup, ipc, mount, network, pid, time, user, uts')


def test_load_several_schema_violations_one_line_each(tmp_path):
    doc = specgen.default_spec()
    doc["hostname"] = 7
    del doc["process"]["cwd"]
    with pytest.raises(ConfigError) as ei:
        C.load(write(tmp_path, json.dumps(doc)))
    lines = str(ei.value).splitlines()
    assert len(lines) == len(ei.value.problems) >= 2
    assert all(line.startswith("config.json: /") for line in lines)
    assert any(line.startswith("config.json: /hostname: 7 ") for line in lines)
    assert any('"cwd" is a required property' in line for line in lines)


def test_load_runs_semantic_checks(tmp_path):
    doc = specgen.default_spec()
    doc["linux"]["namespaces"].append({"type": "pid"})
    with pytest.raises(ConfigError) as ei:
        C.load(write(tmp_path, json.dumps(doc)))
    assert f"/linux/namespaces/{len(doc['linux']['namespaces']) - 1}/type" in str(ei.value)


# ============================================================================ check_semantics
def problems(doc):
    with pytest.raises(ConfigError) as ei:
        C.check_semantics(doc)
    return ei.value.problems


def test_semantics_default_spec_passes():
    C.check_semantics(specgen.default_spec())
    C.check_semantics(specgen.default_spec(rootless=True))


def test_semantics_duplicate_namespace():
    doc = specgen.default_spec()
    doc["linux"]["namespaces"].append({"type": "network", "path": "/proc/1/ns/net"})
    n = len(doc["linux"]["namespaces"]) - 1
    assert problems(doc) == [f"/linux/namespaces/{n}/type: namespace 'network' is listed more than once"]


@pytest.mark.parametrize("key", ["uidMappings", "gidMappings"])
def test_semantics_mappings_without_user_ns_are_a_warning(key):
    """runc reads the mappings only when a user namespace is listed: without one they are ignored, not refused."""
    from ocirun import semantics

    doc = specgen.default_spec()
    doc["linux"][key] = [{"containerID": 0, "hostID": 1000, "size": 1}]
    assert semantics.problems(doc) == []
    assert semantics.warnings(doc) == [f"linux.{key}: ignored: there is no user namespace in linux.namespaces"]


def test_semantics_mappings_with_joined_user_ns_is_fine():
    doc = specgen.default_spec()
    doc["linux"]["namespaces"].append({"type": "user", "path": "/proc/1/ns/user"})
    doc["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 0, "size": 1}]
    C.check_semantics(doc)


@pytest.mark.parametrize("uid0,gid0", [(False, False), (False, True), (True, False)])
def test_semantics_new_user_ns_must_map_the_containers_root(uid0, gid0):
    """runc (HostRootUID/HostRootGID): "user namespaces enabled, but no mapping found for uid 0"; ocirun failed
    later with an obscure EOVERFLOW creating /dev/pts."""
    doc = specgen.default_spec()
    doc["linux"]["namespaces"].append({"type": "user"})
    doc["linux"]["uidMappings"] = [{"containerID": 0 if uid0 else 1000, "hostID": 100000, "size": 10}]
    doc["linux"]["gidMappings"] = [{"containerID": 0 if gid0 else 1000, "hostID": 100000, "size": 10}]
    want = [f"/linux/{k}Mappings: user namespaces enabled, but no mapping found for {k} 0 (the container's root)"
            for k, ok in (("uid", uid0), ("gid", gid0)) if not ok]
    assert problems(doc) == want


@pytest.mark.parametrize("cwd", ["rel", "", "./x", "x/"])
def test_semantics_relative_cwd(cwd):
    doc = specgen.default_spec()
    doc["process"]["cwd"] = cwd
    (p,) = problems(doc)
    assert p.startswith("/process/cwd: ") and "absolute" in p


@pytest.mark.parametrize("args", [[], None])
def test_semantics_empty_args(args):
    doc = specgen.default_spec()
    if args is None:
        del doc["process"]["args"]
    else:
        doc["process"]["args"] = args
    (p,) = problems(doc)
    assert p.startswith("/process/args: ")


def test_semantics_time_offsets_without_time_ns():
    doc = specgen.default_spec()
    doc["linux"]["timeOffsets"] = {"monotonic": {"secs": 1, "nanosecs": 0}}
    (p,) = problems(doc)
    assert p.startswith("/linux/timeOffsets: ")
    doc["linux"]["namespaces"].append({"type": "time"})
    C.check_semantics(doc)


def test_semantics_all_problems_at_once():
    doc = specgen.default_spec()
    doc["process"]["args"] = []
    doc["process"]["cwd"] = "rel"
    doc["linux"]["namespaces"].append({"type": "pid"})
    doc["linux"]["timeOffsets"] = {"monotonic": {"secs": 1}}
    ps = problems(doc)
    assert len(ps) == 4
    n = len(doc["linux"]["namespaces"]) - 1
    assert [p.split(":")[0] for p in ps] == ["/process/args", "/process/cwd", f"/linux/namespaces/{n}/type",
                                             "/linux/timeOffsets"]


def test_semantics_without_process_or_linux():
    C.check_semantics({"ociVersion": "1.3.0"})
    C.check_semantics({"ociVersion": "1.3.0", "root": {"path": "rootfs"}})


def test_semantics_does_not_modify_the_document():
    doc = specgen.default_spec()
    doc["linux"]["namespaces"].append({"type": "pid"})
    before = copy.deepcopy(doc)
    problems(doc)
    assert doc == before
