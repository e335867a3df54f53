"""runc's leniency (ocirun.extensions, spec/extensions.json) and runc's semantic rules (ocirun.semantics)."""
import copy

import pytest

from ocirun import extensions as X, semantics, specgen
from ocirun import validate as V
from ocirun.errors import ConfigError


def test_every_extension_is_documented_and_widens_an_existing_schema_node():
    reg = X.registry()
    assert {e["id"] for e in reg} >= {"rootfs-propagation-recursive", "device-filemode-type-bits", "null-as-absent"}
    for e in reg:
        assert e["producers"] and e["runtimes"].get("runc") and e["values"], e["id"]
    X.widen(X.strict_schema(), reg)  # raises KeyError for a pointer that is not in the schema
    with pytest.raises(KeyError):
        X.widen(X.strict_schema(), [{"id": "x", "schema_at": "/definitions/nope/x", "schema": {}}])
    text = open(X.__file__.replace("ocirun/extensions.py", "spec/EXTENSIONS.md")).read()
    for e in reg:
        assert f"`{e['id']}`" in text, f"{e['id']} is not in spec/EXTENSIONS.md"


@pytest.mark.parametrize("value", ["rprivate", "rslave", "rshared", "runbindable", "", "private", "slave"])
def test_rootfs_propagation_values_runc_accepts(value):
    doc = specgen.default_spec()
    doc["linux"]["rootfsPropagation"] = value
    V.validate_config(doc)
    strict_ok = not V.strict_config_errors(doc)
    assert strict_ok == (value in ("private", "shared", "slave", "unbindable"))


@pytest.mark.parametrize("value", ["rprivat", "RSLAVE", "recursive", " rslave"])
def test_rootfs_propagation_values_runc_refuses(value):
    doc = specgen.default_spec()
    doc["linux"]["rootfsPropagation"] = value
    with pytest.raises(ConfigError, match="/linux/rootfsPropagation"):
        V.validate_config(doc)


def _norm(doc, raw=None):
    doc = copy.deepcopy(doc)
    notes = X.normalize(doc, raw)
    return doc, notes


def test_nulls_are_what_go_decodes():
    doc = specgen.default_spec()
    doc["hostname"] = None
    doc["process"]["args"] = ["sh", None]
    doc["process"]["user"]["additionalGids"] = [5, None]
    doc["annotations"] = {"a": None, "b": "x"}
    doc["linux"]["sysctl"] = {"net.ipv4.ip_forward": None}
    doc["mounts"][0]["options"] = None
    doc["linux"]["resources"] = {"memory": None, "pids": {"limit": None}}
    out, notes = _norm(doc, b"null")
    assert "hostname" not in out
    assert out["process"]["args"] == ["sh", ""]
    assert out["process"]["user"]["additionalGids"] == [5, 0]
    assert out["annotations"] == {"a": "", "b": "x"}
    assert out["linux"]["sysctl"] == {"net.ipv4.ip_forward": ""}
    assert "options" not in out["mounts"][0]
    assert out["linux"]["resources"] == {"pids": {}}
    assert {p for p, _ in notes} == {"/hostname", "/process/args/1", "/process/user/additionalGids/1", "/annotations/a",
                                     "/linux/sysctl/net.ipv4.ip_forward", "/mounts/0/options",
                                     "/linux/resources/memory", "/linux/resources/pids/limit"}
    assert {x for _, x in notes} == {"null-as-absent"}
    with pytest.raises(ConfigError, match="/linux/resources/pids: \"limit\" is a required property"):
        V.validate_config(out)  # a required member set to null is missing (runc: limit 0, refused later)
    del out["linux"]["resources"]["pids"]
    V.validate_config(out)


def test_required_null_is_missing_and_refused():
    doc = specgen.default_spec()
    doc["process"]["cwd"] = None
    out, _ = _norm(doc)
    with pytest.raises(ConfigError, match='/process: "cwd" is a required property'):
        V.validate_config(out)


def test_nulls_untouched_without_null_in_the_bytes():
    doc = specgen.default_spec()
    doc["hostname"] = None
    out, notes = _norm(doc, b'{"hostname": "x"}')  # raw without "null": the walk is skipped
    assert out["hostname"] is None and notes == []


def test_dev_null_in_a_string_is_not_a_json_null():
    """`/dev/null` in a command is not a null value: such a config keeps the fast path (the null walk loads
    jsonschema, ~17 ms per create); a real null is still found."""
    from ocirun import extensions as X

    assert not X._may_have_null(b'{"process": {"args": ["sh", "-c", "echo > /dev/null"]}, "x": "null"}')
    assert X._may_have_null(b'{"hostname": null}') and X._may_have_null(b'{"a": [1,\n null\n]}')
    assert X._may_have_null(b'{"x": "a: null, b"}')  # looks like one: the walk runs (never a miss)
    doc = specgen.default_spec()
    doc["hostname"] = None
    raw = b'{"hostname": "x", "args": ["/dev/null"]}'
    out, notes = _norm(doc, raw)
    assert out["hostname"] is None and notes == []  # the walk was skipped for that raw text


@pytest.mark.parametrize("mode,want", [(8630, 0o666), (0o20644, 0o644), (0o60600, 0o600), (0o4755 | 0o20000, 0o4755),
                                       (0o666, 0o666), (0o1777, 0o1777)])
def test_device_file_mode_type_bits_dropped(mode, want):
    doc = specgen.default_spec()
    doc["linux"]["devices"] = [{"path": "/dev/x", "type": "c", "major": 1, "minor": 3, "fileMode": mode}]
    out, notes = _norm(doc)
    assert out["linux"]["devices"][0]["fileMode"] == want
    assert bool(notes) == (mode > 0o7777)
    V.validate_config(out)


def test_uses_maps_strict_complaints_to_extensions():
    doc = specgen.default_spec()
    doc["linux"]["rootfsPropagation"] = "rshared"
    doc["linux"]["devices"] = [{"path": "/dev/x", "type": "c", "major": 1, "minor": 3, "fileMode": 8630}]
    by_ptr = {V.pointer(list(e.absolute_path)): e.instance for e in V.strict_config_errors(doc)}
    assert dict(X.uses(doc, by_ptr)) == {"/linux/rootfsPropagation": "rootfs-propagation-recursive",
                                         "/linux/devices/0/fileMode": "device-filemode-type-bits"}


# ---- semantics: runc's configs/validate rules

def problems(edit):
    doc = specgen.default_spec()
    edit(doc)
    return semantics.problems(doc)


@pytest.mark.parametrize("edit,where", [
    (lambda d: d["linux"]["namespaces"].append({"type": "user"}), "/linux/namespaces"),
    (lambda d: d["linux"].update(sysctl={"kernel.foo": "1"}), "/linux/sysctl/kernel.foo"),
    (lambda d: d["linux"].update(sysctl={"user.max_user_namespaces": "1"}), "/linux/sysctl/user.max_user_namespaces"),
    (lambda d: d["linux"].update(sysctl={"kernel.hostname": "x"}), "/linux/sysctl/kernel.hostname"),
    (lambda d: d["linux"].update(sysctl={"fs.mqueue.queues_max": "1"}) or d["linux"].update(
        namespaces=[n for n in d["linux"]["namespaces"] if n["type"] != "ipc"]), "/linux/sysctl/fs.mqueue.queues_max"),
    (lambda d: d["process"].update(scheduler={"policy": "SCHED_OTHER", "nice": 20}), "/process/scheduler/nice"),
    (lambda d: d["process"].update(scheduler={"policy": "SCHED_BATCH", "priority": 3}), "/process/scheduler/priority"),
    (lambda d: d["process"].update(scheduler={"policy": "SCHED_RR", "priority": 3, "runtime": 5}), "/process/scheduler"),
    (lambda d: d["linux"].update(memoryPolicy={}), "/linux/memoryPolicy/mode"),
    (lambda d: d["linux"].update(memoryPolicy={"mode": "MPOL_BIND"}), "/linux/memoryPolicy/nodes"),
    (lambda d: d["linux"].update(memoryPolicy={"mode": "MPOL_DEFAULT", "nodes": "0"}), "/linux/memoryPolicy/nodes"),
    (lambda d: d["linux"].update(memoryPolicy={"mode": "MPOL_BIND", "nodes": "0-9876543210"}), "/linux/memoryPolicy/nodes"),
    (lambda d: d["process"].update(execCPUAffinity={"initial": "0-99999999"}), "/process/execCPUAffinity/initial"),
    (lambda d: d["linux"].update(netDevices={"eth/0": {}}), "/linux/netDevices/eth/0"),
    (lambda d: d["mounts"].append({"destination": "/m\x00", "type": "tmpfs", "source": "tmpfs"}), "/mounts/7/destination"),
    (lambda d: d["mounts"].append({"destination": "/m", "type": "bind", "source": "/tmp"}), "/mounts/7/options"),
    (lambda d: d["linux"].update(timeOffsets={"boottime": {"secs": 1}}) or d["linux"]["namespaces"].append(
        {"type": "time", "path": "/proc/1/ns/time"}), "/linux/timeOffsets"),
])
def test_runc_semantic_rules(edit, where):
    ps = problems(edit)
    assert len(ps) == 1 and ps[0].startswith(where + ": "), ps


@pytest.mark.parametrize("edit", [
    lambda d: d["linux"].update(sysctl={"net/ipv4/ip_forward": "1"}),  # runc's slash spelling, net ns owned
    lambda d: d["linux"].update(sysctl={"kernel.domainname": "x", "kernel.shm_rmid_forced": "1"}),
    lambda d: d["linux"].update(memoryPolicy={"mode": "MPOL_PREFERRED"}),
    lambda d: d["linux"].update(memoryPolicy={"mode": "MPOL_INTERLEAVE", "nodes": "0-1,3"}),
    lambda d: d["process"].update(scheduler={"policy": "SCHED_FIFO", "priority": 10}),
    lambda d: d["mounts"].append({"destination": "/m", "type": "bind", "source": "/tmp",
                                  "options": ["rbind", "rslave", "ro", "nosuid", "rro", "idmap"]}),
    # filesystem options on a bind mount are ignored, as runc 1.1 and crun do (runc 1.2+ refuses them, but
    # runtime-tools' `mounts` validation, which crun passes, uses them)
    lambda d: d["mounts"].append({"destination": "/m", "type": "bind", "source": "/tmp", "options": ["bind", "size=1m"]}),
])
def test_runc_semantic_rules_accept(edit):
    assert problems(edit) == []


def test_warnings_relative_destination_and_personality_flags():
    doc = specgen.default_spec()
    doc["mounts"].append({"destination": "rel", "type": "tmpfs", "source": "tmpfs"})
    doc["linux"]["personality"] = {"domain": "LINUX", "flags": ["X"]}
    ws = semantics.warnings(doc)
    assert len(ws) == 2 and "not absolute" in ws[0] and "personality" in ws[1]


@pytest.mark.parametrize("text,limit,ok", [("0-3,7", 8, True), ("", 8, True), ("8", 8, False), ("3-1", 8, False),
                                           ("0-9876543210", 1024, False), ("a", 8, False), ("1-", 8, False)])
def test_list_problem_bounded(text, limit, ok):
    assert (semantics.list_problem(text, limit) is None) == ok


@pytest.mark.parametrize("edit,where", [
    (lambda d: d["process"].update(env=["PATH=/bin", "NOEQ"]), "/process/env/1"),
    (lambda d: d["process"].update(env=["=x"]), "/process/env/0"),
    (lambda d: d.update(annotations={"": 1}), "/annotations/"),
    (lambda d: d["linux"].update(sysctl={"\n": 2}), "/linux/sysctl/\n"),
    (lambda d: d.update(domainname="d" * 65), "/domainname"),
    (lambda d: d.update(hostname="h" * 65), "/hostname"),
])
def test_runc_decoding_and_kernel_limits(edit, where):
    """Go's map[string]string refuses non-string values under keys the schema's pattern misses; runc refuses an
    env entry without '=' or with an empty name; the kernel refuses names over 64 bytes."""
    ps = problems(edit)
    assert ps and ps[0].startswith(where + ": "), ps  # (a sysctl "\n" is also outside any namespace)
