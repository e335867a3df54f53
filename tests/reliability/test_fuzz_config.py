"""Hostile config.json: hypothesis-generated documents, run with `ocirun run` in a bundle.

Two sources: schema-shaped random documents (the shape of config.json with random, often wrong, values), and
random mutations (delete a key, replace a value by one of another type / a huge or negative number / an odd
string, add unknown keys) of the real configs in tests/fixtures/configs/valid/.

For every example: no Python traceback; the run either fails with exit != 0 and stderr lines that all start
with `ocirun: `, or runs the container; and nothing is left behind (mounts, cgroups, processes, state) —
checked after each example with the leak checker's HostSnapshot, so a failure names the config that leaked.

Safety, since these configs run for real as root: host interfaces (linux.netDevices) and hooks are removed,
the cgroup path is forced to the example's own id (so that a leaked cgroup is found), namespace paths are
pointed at a pid that cannot exist, and the process is `true` (or a random name that does not exist).
"""
import copy
import glob
import json
import os

import pytest
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st

from relhelp import integration, no_traceback

VALID = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "fixtures", "configs", "valid", "*.json")))
RUN_TIMEOUT = 20
SETTINGS = dict(max_examples=60, deadline=None, database=None, derandomize=True,
                phases=[Phase.explicit, Phase.generate],  # no shrinking: each example is a real container
                suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet)

# ----------------------------------------------------------------------------------------------- strategies
odd_text = st.one_of(
    st.sampled_from(["", "/", "..", "../../..", "/proc/self", "/dev/null", "/etc/passwd", "a" * 5000, "\x00",
                     "rootfs", "tmpfs", "bind", "rbind", "ro", "size=1k", "mode=0", "RLIMIT_NOFILE", "pid",
                     "CAP_SYS_ADMIN", "SCMP_ACT_ALLOW", "1.3.0", "-1", "☃", "\udcff".encode("utf-8", "surrogatepass")
                     .decode("utf-8", "replace")]),
    st.text(max_size=40))
odd_int = st.one_of(st.sampled_from([0, -1, 1, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 63 - 1, 2 ** 63, 2 ** 64,
                                     -2 ** 63, 10 ** 30, 65536, 4095]),
                    st.integers(min_value=-2 ** 70, max_value=2 ** 70))
scalar = st.one_of(st.none(), st.booleans(), odd_int, st.floats(allow_nan=False), odd_text)
json_value = st.recursive(scalar, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                         st.dictionaries(odd_text, kids, max_size=4)),
                          max_leaves=12)

NS_TYPES = ["pid", "network", "ipc", "uts", "mount", "cgroup", "user", "time", "nope"]


def opt(d):
    """fixed_dictionaries with every key optional."""
    return st.fixed_dictionaries({}, optional=d)


schema_sections = st.fixed_dictionaries(
    {"ociVersion": st.sampled_from(["1.3.0", "1.0.2", "1.2.0", "0.1", "2.0.0", "", "1.3.0-rc.1"]),
     "root": st.fixed_dictionaries({"path": st.sampled_from(["rootfs", "rootfs/", "./rootfs", "nope", "/"])},
                                   optional={"readonly": st.booleans()})},
    optional={
        "process": opt({
            "args": st.one_of(st.just(["true"]), st.just(["sh", "-c", "exit 3"]), st.lists(odd_text, max_size=3)),
            "cwd": st.one_of(st.sampled_from(["/", "/tmp", "/nonexistent/deep", "relative", "/bin/busybox"]),
                             odd_text),
            "env": st.lists(st.one_of(st.just("PATH=/bin:/usr/bin"), odd_text), max_size=4),
            "terminal": st.just(False),
            "user": opt({"uid": odd_int, "gid": odd_int, "umask": odd_int,
                         "additionalGids": st.lists(odd_int, max_size=3)}),
            "rlimits": st.lists(opt({"type": st.sampled_from(["RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_CPU",
                                                               "RLIMIT_AS", "RLIMIT_BOGUS"]),
                                      "soft": odd_int, "hard": odd_int}), max_size=3),
            "capabilities": opt({k: st.lists(st.sampled_from(["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_NOPE", ""]),
                                             max_size=3)
                                 for k in ("bounding", "effective", "permitted", "inheritable", "ambient")}),
            "noNewPrivileges": st.booleans(),
            "oomScoreAdj": odd_int,
            "scheduler": opt({"policy": st.sampled_from(["SCHED_OTHER", "SCHED_FIFO", "SCHED_BOGUS"]),
                              "priority": odd_int, "nice": odd_int}),
            "ioPriority": opt({"class": st.sampled_from(["IOPRIO_CLASS_RT", "IOPRIO_CLASS_BE", "X"]),
                               "priority": odd_int}),
        }),
        "hostname": odd_text,
        "domainname": odd_text,
        "mounts": st.lists(opt({
            "destination": st.one_of(st.sampled_from(["/proc", "/dev", "/sys", "/tmp/x", "/etc/passwd", "/",
                                                      "relative", "/dev/../../etc", "/proc/sys"]), odd_text),
            "type": st.sampled_from(["tmpfs", "proc", "sysfs", "bind", "devpts", "mqueue", "cgroup", "nosuchfs",
                                     "none", ""]),
            "source": st.one_of(st.sampled_from(["tmpfs", "proc", "/dev/null", "/nonexistent", "/etc", "none"]),
                                odd_text),
            "options": st.lists(st.one_of(st.sampled_from(["ro", "rw", "bind", "rbind", "nosuid", "size=1k",
                                                           "mode=755", "rprivate", "rshared", "bogus=1",
                                                           "idmap", "tmpcopyup", "remount"]), odd_text),
                                max_size=4)}), max_size=4),
        "linux": opt({
            "namespaces": st.lists(opt({"type": st.sampled_from(NS_TYPES),
                                        "path": st.sampled_from(["/proc/999999999/ns/net", "/etc/hostname", ""])}),
                                   max_size=7),
            "uidMappings": st.lists(opt({"containerID": odd_int, "hostID": odd_int, "size": odd_int}), max_size=2),
            "gidMappings": st.lists(opt({"containerID": odd_int, "hostID": odd_int, "size": odd_int}), max_size=2),
            "sysctl": st.dictionaries(st.sampled_from(["net.ipv4.ip_forward", "kernel.shmmax", "kernel.panic",
                                                       "fs.mqueue.msg_max", "net.nope", "../../etc"]),
                                      odd_text, max_size=2),
            "resources": opt({
                "memory": opt({"limit": odd_int, "swap": odd_int, "reservation": odd_int}),
                "cpu": opt({"shares": odd_int, "quota": odd_int, "period": odd_int,
                            "cpus": st.sampled_from(["0", "0-1", "99", "x", ""]), "mems": st.sampled_from(["0", "9"])}),
                "pids": opt({"limit": odd_int}),
                "devices": st.lists(opt({"allow": st.booleans(), "access": st.sampled_from(["rwm", "r", "x", ""]),
                                         "type": st.sampled_from(["a", "c", "b", "z"]), "major": odd_int,
                                         "minor": odd_int}), max_size=2),
            }),
            "devices": st.lists(opt({"path": st.sampled_from(["/dev/fuzz", "/dev/../fuzz", "fuzz", "/dev/null"]),
                                     "type": st.sampled_from(["c", "b", "u", "p", "x"]), "major": odd_int,
                                     "minor": odd_int, "fileMode": odd_int, "uid": odd_int, "gid": odd_int}),
                                max_size=2),
            "maskedPaths": st.lists(st.sampled_from(["/proc/kcore", "/nonexistent", "relative", "/", "/proc/../etc"]),
                                    max_size=3),
            "readonlyPaths": st.lists(st.sampled_from(["/proc/sys", "/nonexistent", "relative", "/", "/etc"]),
                                      max_size=3),
            "rootfsPropagation": st.sampled_from(["private", "rprivate", "slave", "rslave", "shared", "bogus"]),
            "personality": opt({"domain": st.sampled_from(["LINUX", "LINUX32", "BSD"]), "flags": st.lists(odd_text)}),
            "seccomp": opt({"defaultAction": st.sampled_from(["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_NOPE"]),
                            "architectures": st.lists(st.sampled_from(["SCMP_ARCH_X86_64", "SCMP_ARCH_NOPE"]),
                                                      max_size=2),
                            "syscalls": st.lists(opt({"names": st.lists(odd_text, max_size=2),
                                                      "action": st.sampled_from(["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO",
                                                                                 "SCMP_ACT_KILL"]),
                                                      "errnoRet": odd_int}), max_size=2)}),
        }),
        "annotations": st.dictionaries(odd_text, odd_text, max_size=3),
        "x-unknown": json_value,
    })


def _overlay(base, part):
    """Deep-merge part into base (dicts merge, anything else replaces)."""
    for k, v in part.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _overlay(base[k], v)
        else:
            base[k] = v
    return base


@st.composite
def schema_shaped(draw):
    """Half the time a random document alone, half the time ocirun's valid default spec with random sections
    merged in (so that many examples get past validation and exercise the create path)."""
    part = draw(schema_sections)
    if draw(st.booleans()):
        return part
    from ocirun import specgen

    base = specgen.default_spec()
    base["process"]["terminal"] = False
    base["process"]["args"] = ["true"]
    return _overlay(base, part)


def _paths(doc, prefix=()):
    """Every (path tuple) in a JSON document, containers included."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, prefix + (i,))
    return out


def _get(doc, path):
    for p in path:
        doc = doc[p]
    return doc


@st.composite
def mutated_real_config(draw):
    path = draw(st.sampled_from(VALID))
    with open(path) as f:
        doc = json.load(f)
    _make_safe(doc)
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        where = draw(st.sampled_from(paths))
        parent, key = _get(doc, where[:-1]), where[-1]
        op = draw(st.sampled_from(["delete", "replace", "retype", "huge", "unknown-key", "dup"]))
        if op == "delete":
            del parent[key]
        elif op == "replace":
            parent[key] = draw(json_value)
        elif op == "retype":
            v = parent[key]
            parent[key] = ([v] if not isinstance(v, list) else {"x": v}) if draw(st.booleans()) else str(v)
        elif op == "huge":
            parent[key] = draw(st.sampled_from([2 ** 64, -2 ** 63 - 1, 10 ** 40, -1, 2 ** 31]))
        elif op == "unknown-key" and isinstance(parent, dict):
            parent[draw(odd_text)] = draw(json_value)
        elif op == "dup" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
    return os.path.basename(path), doc


def _make_safe(doc):
    """Remove what could touch the host beyond ocirun's own objects (see the module doc)."""
    if not isinstance(doc, dict):
        return
    doc.pop("hooks", None)
    proc = doc.get("process")
    if isinstance(proc, dict):
        proc["terminal"] = False
        proc["args"] = ["true"]
        for r in proc.get("rlimits") or []:  # this host's hard limits are lower than the engines' defaults
            if isinstance(r, dict) and r.get("type") == "RLIMIT_NOFILE":
                r["soft"] = r["hard"] = 1024
    root = doc.get("root")
    if isinstance(root, dict):
        root["path"] = "rootfs"
    lin = doc.get("linux")
    if isinstance(lin, dict):
        lin.pop("netDevices", None)
        lin.pop("cgroupsPath", None)
        for ns in lin.get("namespaces") or []:
            if isinstance(ns, dict) and ns.get("path"):
                ns["path"] = f"/proc/999999999/ns/{ns.get('type')}"


def _finalize(doc, c):
    """After mutation: re-apply the safety rules; the cgroup is named after the example's id."""
    if isinstance(doc, dict):
        proc = doc.get("process")
        args = proc.get("args") if isinstance(proc, dict) else None
        _make_safe(doc)
        if isinstance(proc, dict) and args is not None and args != ["true"]:
            # keep a mutated args only when it cannot name a host or container program that does something
            if not (isinstance(args, list) and args and all(isinstance(a, str) for a in args)
                    and args[0] not in ("sh", "/bin/sh", "busybox", "/bin/busybox")):
                args = ["true"]
            proc["args"] = args
        lin = doc.get("linux")
        if isinstance(lin, dict):
            lin["cgroupsPath"] = "/" + c
    return doc


def _fix_sources(doc, bundle_dir):
    """The real configs bind-mount engine files (/var/lib/containers/..., /srv/...) that do not exist here: give
    each such bind a source of the right kind under the bundle, so that examples get further than the first
    bind mount (missing bind sources have their own tests, test_create_errors.py)."""
    mounts = doc.get("mounts") if isinstance(doc, dict) else None
    if not isinstance(mounts, list):
        return
    rootfs = os.path.join(bundle_dir, "rootfs")
    for i, m in enumerate(mounts):
        if not isinstance(m, dict) or not isinstance(m.get("source"), str) or not isinstance(m.get("destination"), str):
            continue
        src = m["source"]
        opts = m.get("options") if isinstance(m.get("options"), list) else []
        is_bind = m.get("type") == "bind" or "bind" in opts or "rbind" in opts
        if not (is_bind and src.startswith("/") and not os.path.exists(src)):
            continue
        dst = os.path.join(rootfs, m["destination"].lstrip("/"))
        new = os.path.join(bundle_dir, "src", f"{i}-{os.path.basename(src) or 'x'}")
        os.makedirs(os.path.dirname(new), exist_ok=True)
        if os.path.isfile(dst) or os.path.basename(m["destination"]) in ("hostname", "hosts", "resolv.conf",
                                                                          ".containerenv"):
            open(new, "a").close()
        else:
            os.makedirs(new, exist_ok=True)
        m["source"] = new


# ----------------------------------------------------------------------------------------------- the check
def _run_one(oci, bundle_dir, c, doc):
    _fix_sources(doc, bundle_dir)
    with open(os.path.join(bundle_dir, "config.json"), "w") as f:
        json.dump(doc, f)
    snap = integration.HostSnapshot(c, [oci.root], [bundle_dir])
    try:
        res = oci("run", "--bundle", bundle_dir, c, timeout=RUN_TIMEOUT)
    except AssertionError as e:  # timed out: the run hangs
        res = None
        hang = str(e)
    leaks = snap.leaks()
    if leaks:
        import time

        time.sleep(0.3)
        leaks = snap.leaks()
    shown = json.dumps(doc)
    if leaks:
        integration._cleanup(leaks, [oci])
        pytest.fail(f"leaked {leaks} for config {shown}")
    if res is None:
        pytest.fail(f"{hang} for config {shown}")
    no_traceback(res)
    if res.returncode != 0:
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        ran = oci_ran(res)
        if not ran:
            assert lines, f"exit {res.returncode} without a message for config {shown}"
            bad = [ln for ln in lines if not ln.startswith("ocirun: ")]
            assert not bad, f"stderr lines not 'ocirun: ...': {bad[:3]} for config {shown}"
    return res


def oci_ran(res):
    """True when the non-zero exit is the container's own (the process ran): `sh -c 'exit 3'`."""
    return res.returncode == 3 and not res.stderr.strip()


def check_outcomes(what, outcomes, min_ran, min_refused):
    """The examples are fixed (derandomize): all of them were run, and both outcomes are well represented, so
    that neither path went untested (a runtime that refuses everything cleanly, or accepts what it should
    refuse, fails here). Bounds: about half of what the examples gave when written (see each test)."""
    assert outcomes["ran"] + outcomes["refused"] == SETTINGS["max_examples"], f"{what}: {outcomes}"
    assert outcomes["ran"] >= min_ran, f"{what}: only {outcomes['ran']} of the examples ran: {outcomes}"
    assert outcomes["refused"] >= min_refused, f"{what}: only {outcomes['refused']} were refused: {outcomes}"


@pytest.fixture
def fuzz_bundle(bundle):
    return bundle(["true"], name="fuzz")


@pytest.mark.slow
def test_fuzz_schema_shaped_configs(oci, fuzz_bundle, cid):
    outcomes = {"ran": 0, "refused": 0}

    @settings(**SETTINGS)
    @given(doc=schema_shaped())
    def check(doc):
        c = cid()
        res = _run_one(oci, fuzz_bundle, c, _finalize(doc, c))
        outcomes["ran" if res.returncode == 0 or oci_ran(res) else "refused"] += 1
    check()
    print(f"\n[fuzz] schema-shaped: {outcomes}")
    check_outcomes("schema-shaped", outcomes, min_ran=8, min_refused=20)  # written with 17 ran, 43 refused


@pytest.mark.slow
def test_fuzz_mutated_real_configs(oci, fuzz_bundle, cid):
    import collections

    outcomes = {"ran": 0, "refused": 0}
    reasons = collections.Counter()

    @settings(**SETTINGS)
    @given(item=mutated_real_config())
    def check(item):
        _name, doc = item
        c = cid()
        res = _run_one(oci, fuzz_bundle, c, _finalize(doc, c))
        outcomes["ran" if res.returncode == 0 else "refused"] += 1
        if res.returncode:
            reasons[(res.stderr.splitlines() or ["?"])[0][:70]] += 1
    check()
    print(f"\n[fuzz] mutated real configs: {outcomes}; most common refusals: {reasons.most_common(8)}")
    check_outcomes("mutated real configs", outcomes, min_ran=10, min_refused=20)  # written with 20 ran, 40 refused
