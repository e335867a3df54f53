"""Our spec/*-schema.json must give the official runtime-spec v1.3.0 schema's verdict on every document.

Documents: the runtime-spec's own test/ documents, the corpus in tests/fixtures/configs (podman-generated,
docker- and containerd-shaped, edge cases, invalid ones), the configs `ocirun spec`, `runc spec` and
`crun spec` write, the output of `runc/crun features`, and random mutations of the valid corpus.
For configs the precompiled fast path (ocirun/_validator.py) must agree too.
"""
import copy
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _corpus  # noqa: E402
from _corpus import load  # noqa: E402

from ocirun import jsonio, specgen  # noqa: E402
from ocirun import validate as V  # noqa: E402

# CI (CI set to anything but ""/0/false/no, as CI services do): the official schemas are part of the check, so
# their absence fails every test here instead of skipping them all without a word.
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module", autouse=True)
def official_schemas_present():
    """Every test here needs ../shared: a skip outside CI, a failure in CI."""
    if not _corpus.have_shared():
        missing = [str(p) for p in (_corpus.OFFICIAL_DIR, _corpus.OFFICIAL_TOOL) if not p.exists()]
        if IN_CI:
            pytest.fail(f"../shared (official runtime-spec schemas) missing in CI: {', '.join(missing)}",
                        pytrace=False)
        pytest.skip(f"../shared (official schemas) not present: {', '.join(missing)}")

GENERATED = ["ocirun-default", "ocirun-rootless", "runc-spec", "runc-spec-rootless", "crun-spec"]
SPEC_CONFIGS = {f"spec-test/{p.parent.name}/{p.name}": p for p in _corpus.spec_test_files("config")}
CORPUS = {f"corpus/{p.parent.name}/{p.name}": p for p in _corpus.corpus_files()}


def fast_ok(doc):
    from ocirun import _validator

    try:
        _validator.validate(doc)
        return True
    except _validator._Invalid:
        return False


def ours_ok(name, doc):
    return doc is not None and V._validator(name).is_valid(doc)


def lenient_ok(doc):
    """The verdict `create` gives (official schema + spec/extensions.json): never stricter than the official
    one, and where it is more lenient, every official complaint is about a field an extension covers."""
    from ocirun import extensions

    ours = ours_ok("config", doc)
    if ours_ok("config-strict", doc):
        assert ours, V.config_problems(doc)
    elif ours:
        errs = V.strict_config_errors(doc)
        by_ptr = {V.pointer(list(e.absolute_path)): e.instance for e in errs}
        covered = {p for p, _ in extensions.uses(doc, by_ptr)}
        assert covered == set(by_ptr), ("official complaints no extension covers", set(by_ptr) - covered)
    return ours


def expected_from_location(name):
    """What the file's location says the verdict is (keeps the corpus honest), or None."""
    parts = name.split("/")
    if parts[0] in ("spec-test", "corpus"):
        return parts[1] in ("good", "valid")
    return True  # ocirun/runc/crun spec output must be valid


@pytest.fixture(scope="module")
def config_cases(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("generated-configs")
    files = dict(SPEC_CONFIGS)
    files.update(CORPUS)
    for name, rootless in (("ocirun-default", False), ("ocirun-rootless", True)):
        p = tmp / f"{name}.json"
        p.write_text(jsonio.dumps(specgen.default_spec(rootless=rootless), indent=2))
        files[name] = p
    files.update(_corpus.engine_specs(tmp))
    official = _corpus.official_config_verdicts(files.values())
    return {name: (path, official[str(path)]) for name, path in files.items()}


def test_corpus_is_big_enough():
    assert len(_corpus.corpus_files("valid")) >= 30
    assert len(_corpus.corpus_files("invalid")) >= 10
    assert sum(p.stat().st_size for p in _corpus.corpus_files()) < 2_000_000
    assert len(SPEC_CONFIGS) >= 10


@pytest.mark.parametrize("name", sorted(SPEC_CONFIGS) + sorted(CORPUS) + GENERATED)
def test_config_verdict_matches_official(name, config_cases):
    if name not in config_cases:
        pytest.skip(f"{name}: engine not installed")
    path, official = config_cases[name]
    assert official == expected_from_location(name), f"{name}: the official schema says {official}"
    doc = load(path)
    strict = ours_ok("config-strict", doc)
    assert strict == official, (name, V.schema_problems("config-strict", doc) if doc is not None else "not JSON")
    if doc is not None:
        ours = lenient_ok(doc)
        assert fast_ok(doc) == ours, name
        # and the public API agrees, with one 'POINTER: message' line per problem
        if ours:
            V.validate_config(doc)
        else:
            with pytest.raises(V.ConfigError) as ei:
                V.validate_config(doc)
            assert ei.value.problems
            assert all(p.startswith("/") and ": " in p for p in ei.value.problems), ei.value.problems


# ---- state and features: the official schemas are checked in-process (the tool only does configs)

STATE_DOCS = {
    "ocirun-created": {"ociVersion": "1.3.0", "id": "c1", "status": "created", "pid": 4242, "bundle": "/b"},
    "stopped-no-pid": {"ociVersion": "1.3.0", "id": "c1", "status": "stopped", "bundle": "/b",
                       "annotations": {"a": "b"}},
    "creating-pid0": {"ociVersion": "1.0.2", "id": "x", "status": "creating", "pid": 0, "bundle": ""},
    "bad-status": {"ociVersion": "1.3.0", "id": "c1", "status": "paused", "pid": 1, "bundle": "/b"},
    "bad-pid": {"ociVersion": "1.3.0", "id": "c1", "status": "running", "pid": -1, "bundle": "/b"},
    "missing-bundle": {"ociVersion": "1.3.0", "id": "c1", "status": "running"},
    "id-int": {"ociVersion": "1.3.0", "id": 7, "status": "running", "bundle": "/b"},
    "bad-annotation": {"ociVersion": "1.3.0", "id": "c1", "status": "running", "bundle": "/b",
                       "annotations": {"k": 1}},
    "pid-float": {"ociVersion": "1.3.0", "id": "c1", "status": "running", "bundle": "/b", "pid": 1.0},
}
FEATURES_DOCS = {
    "min": {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0"},
    "full": {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0", "hooks": ["prestart"], "mountOptions": ["ro"],
             "annotations": {"org.opencontainers.runc.version": "1.1"},
             "potentiallyUnsafeConfigAnnotations": ["bundle"],
             "linux": {"namespaces": ["time", "user"], "capabilities": ["CAP_SYS_ADMIN"],
                       "cgroup": {"v1": True, "v2": True, "systemd": True, "systemdUser": False, "rdma": True},
                       "seccomp": {"enabled": True, "actions": ["SCMP_ACT_NOTIFY"], "operators": ["SCMP_CMP_EQ"],
                                   "archs": ["SCMP_ARCH_RISCV64"], "knownFlags": ["SECCOMP_FILTER_FLAG_LOG"],
                                   "supportedFlags": []},
                       "apparmor": {"enabled": False}, "selinux": {"enabled": False},
                       "intelRdt": {"enabled": False}, "mountExtensions": {"idmap": {"enabled": True}},
                       "netDevices": {"enabled": True}}},
    "bad-namespace": {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0", "linux": {"namespaces": ["net"]}},
    "bad-cap": {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0", "linux": {"capabilities": ["cap_kill"]}},
    "bad-bool": {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0", "linux": {"selinux": {"enabled": "no"}}},
    "missing-min": {"ociVersionMax": "1.3.0"},
    "bad-flag": {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0",
                 "linux": {"seccomp": {"supportedFlags": ["SECCOMP_FILTER_FLAG_NEW"]}}},
}


def _engine_features():
    out = {}
    for exe in ("runc", "crun"):
        for cand in (f"/usr/bin/{exe}", f"/usr/sbin/{exe}"):
            if os.path.exists(cand):
                r = subprocess.run([cand, "features"], capture_output=True, text=True, timeout=30)
                if r.returncode == 0:
                    out[f"{exe}-features"] = jsonio.loads(r.stdout)
                break
    return out


@pytest.mark.parametrize("what", ["state", "features"])
def test_state_and_features_match_official(what):
    cases = {f"spec-test/{p.parent.name}/{p.name}": load(p) for p in _corpus.spec_test_files(what)}
    cases.update(STATE_DOCS if what == "state" else FEATURES_DOCS)
    if what == "features":
        cases.update(_engine_features())
    assert len(cases) >= 5
    seen = set()
    for name, doc in cases.items():
        official = doc is not None and _corpus.official_is_valid(what, doc)
        ours = ours_ok(what, doc)
        assert ours == official, (name, V.schema_problems(what, doc) if doc is not None else "not JSON")
        if name.startswith("spec-test/"):
            assert official == (name.split("/")[1] == "good"), name
        seen.add(official)
        if doc is not None:
            check = V.validate_state if what == "state" else V.validate_features
            if ours:
                check(doc)
            else:
                with pytest.raises(V.ConfigError):
                    check(doc)
    assert seen == {True, False}


# ---- random mutations of the valid corpus: fast path == jsonschema (ours) == official

def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


_SEEDS = None


def _seeds():
    global _SEEDS
    if _SEEDS is None:
        _SEEDS = []
        for p in _corpus.corpus_files("valid") + [q for q in SPEC_CONFIGS.values() if q.parent.name == "good"]:
            doc = load(p)
            _SEEDS.append((p.name, doc, list(_paths(doc))))
        _SEEDS.append(("ocirun-default", specgen.default_spec(), list(_paths(specgen.default_spec()))))
    return _SEEDS


REPLACEMENTS = [None, True, False, 0, 1, -1, 1.0, 2.5, 511, 512, 2**31, 2**32, -(2**63) - 1, 2**64, "", "x",
                "pidd", "RLIMIT_x", "rlimit_nofile", "SCMP_ACT_NOPE", "64kB", "2MB", "z", "MB:\n", [], {}, ["x"],
                [1], {"": 1}, {"k": 1}]


def _mutate(doc, path, action, value):
    doc = copy.deepcopy(doc)
    if not path:
        return value if action == "replace" else {}
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    last = path[-1]
    if action == "drop":
        del parent[last]
    elif action == "replace":
        parent[last] = value
    elif action == "string-tweak":
        old = parent[last]
        parent[last] = (old + "X" if isinstance(old, str) else value)
    elif action == "negate":
        old = parent[last]
        parent[last] = (-old - 1 if isinstance(old, int) and not isinstance(old, bool) else value)
    return doc


def test_mutations_fast_path_agrees_with_jsonschema_and_official():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    stats = {"valid": 0, "invalid": 0}

    @hypothesis.settings(max_examples=200, deadline=None, derandomize=True, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(st.data())
    def check(data):
        seeds = _seeds()
        name, doc, paths = seeds[data.draw(st.integers(0, len(seeds) - 1), label="seed")]
        for _ in range(data.draw(st.integers(1, 3), label="n")):
            paths = list(_paths(doc))
            path = paths[data.draw(st.integers(0, len(paths) - 1), label="path")]
            action = data.draw(st.sampled_from(["drop", "replace", "string-tweak", "negate"]), label="action")
            value = data.draw(st.sampled_from(REPLACEMENTS), label="value")
            if action == "drop" and not path:
                continue
            doc = _mutate(doc, path, action, value)
        fast = fast_ok(doc)
        ours = lenient_ok(doc)
        assert fast == ours, (name, V.config_problems(doc))
        official = _corpus.official_is_valid("config", doc)
        if official is not None:
            assert ours_ok("config-strict", doc) == official, (name, V.schema_problems("config-strict", doc))
        stats["valid" if ours else "invalid"] += 1

    check()
    # the mutations must exercise both verdicts
    assert stats["valid"] > 10 and stats["invalid"] > 10, stats
