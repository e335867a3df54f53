"""ocirun.validate: messages, fast path vs fallback, start-up cost, and the generated module's freshness."""
import hashlib
import os
import subprocess
import sys
import textwrap

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _corpus  # noqa: E402

from ocirun import specgen  # noqa: E402
from ocirun import validate as V  # noqa: E402
from ocirun.errors import ConfigError  # noqa: E402

REPO = _corpus.REPO
HEAVY = ["re", "json", "enum", "typing", "decimal", "dataclasses", "jsonschema", "fastjsonschema"]


def problems(doc):
    with pytest.raises(ConfigError) as ei:
        V.validate_config(doc)
    return ei.value.problems


def test_valid_configs_pass():
    V.validate_config(specgen.default_spec())
    V.validate_config(specgen.default_spec(rootless=True))
    for p in _corpus.corpus_files("valid"):
        V.validate_config(_corpus.load(p))


def test_messages_are_one_line_per_problem_sorted_by_path():
    d = specgen.default_spec()
    d["linux"]["namespaces"][2]["type"] = "pidd"
    del d["process"]["cwd"]
    d["process"]["rlimits"][0]["hard"] = -1
    d["hostname"] = 7
    assert problems(d) == [
        '/hostname: 7 is not of type string',
        '/linux/namespaces/2/type: "pidd" is not one of cgroup, ipc, mount, network, pid, time, user, uts',
        '/process: "cwd" is a required property',
        '/process/rlimits/0/hard: -1 is less than the minimum of 0',
    ]
    assert problems({}) == ['/: "ociVersion" is a required property']
    assert problems([]) == ['/: [] is not of type object']


def test_error_str_and_prefix():
    with pytest.raises(ConfigError) as ei:
        V.validate_config({"ociVersion": 1})
    assert str(ei.value) == "config.json: /ociVersion: 1 is not of type string"


def test_more_messages():
    d = specgen.default_spec()
    d["annotations"] = {"io.example/key~1": 5}
    d["process"]["user"]["uid"] = 2**32
    d["process"]["rlimits"][0]["type"] = "nofile"
    d["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_LOG"}]}
    d["mounts"][0]["options"] = "x" * 500
    got = problems(d)
    assert got == [
        "/annotations/io.example~1key~01: 5 is not of type string",
        "/linux/seccomp/syscalls/0/names: [] should have at least 1 item",
        '/mounts/0/options: "' + "x" * 56 + '... is not of type array',
        "/process/rlimits/0/type: \"nofile\" does not match ^RLIMIT_[A-Z]+$",
        "/process/user/uid: 4294967296 is greater than the maximum of 4294967295",
    ]


def test_several_missing_required_each_get_a_line():
    got = problems({"ociVersion": "1.3.0", "process": {"cwd": "/", "rlimits": [{}]}})
    assert got == ['/process/rlimits/0: "type" is a required property',
                   '/process/rlimits/0: "soft" is a required property',
                   '/process/rlimits/0: "hard" is a required property']


def test_anyof_reports_the_real_field():
    import jsonschema

    schema = {"type": "object", "properties": {"ns": {"oneOf": [
        {"type": "object", "required": ["type"], "properties": {"type": {"enum": ["pid", "net"]}}},
        {"type": "string", "enum": ["host"]}]}}}
    v = jsonschema.Draft4Validator(schema)
    assert V.format_errors(v.iter_errors({"ns": {"type": "pidd"}})) == ['/ns/type: "pidd" is not one of net, pid']
    assert V.format_errors(v.iter_errors({"ns": 5})) in (['/ns: 5 is not of type object'],
                                                         ['/ns: 5 is not of type string'])


def test_pointer_and_show():
    assert V.pointer([]) == "/"
    assert V.pointer(["a/b", 0, "c~d"]) == "/a~1b/0/c~0d"
    assert V.show("x" * 100).endswith("...") and len(V.show("x" * 100)) == 60
    assert V.show({"a": [1, True, None]}) == '{"a":[1,true,null]}'


def test_fallback_without_generated_module(monkeypatch):
    monkeypatch.setattr(V, "_fast", None)
    V.validate_config(specgen.default_spec())
    d = specgen.default_spec()
    d["linux"]["namespaces"][0]["type"] = "pidd"
    assert problems(d) == ['/linux/namespaces/0/type: "pidd" is not one of cgroup, ipc, mount, network, pid, time, '
                           'user, uts']


def test_fast_path_rejection_is_explained_by_jsonschema(monkeypatch):
    calls = []
    real = V.config_problems
    monkeypatch.setattr(V, "config_problems", lambda doc: calls.append(1) or real(doc))
    V.validate_config(specgen.default_spec())
    assert calls == []  # valid: jsonschema never consulted
    d = specgen.default_spec()
    d["process"]["terminal"] = "yes"
    assert problems(d) == ['/process/terminal: "yes" is not of type boolean']
    assert calls == [1]


def _verdict(doc):
    """validate_config's verdict on doc: None (accepted) or the list of problems."""
    try:
        V.validate_config(doc)
        return None
    except ConfigError as e:
        return e.problems


def test_fast_path_crash_falls_back(monkeypatch):
    """A crash of the generated validator is not a verdict: jsonschema judges instead, so a valid config is
    accepted and an invalid one refused with the same problems as through the working fast path."""
    invalid = [(p.name, _corpus.load(p)) for p in _corpus.corpus_files("invalid")]
    d = specgen.default_spec()
    d["linux"]["namespaces"][0]["type"] = "pidd"
    d["process"]["terminal"] = "yes"
    invalid += [("pidd+terminal", d), ("empty", {}), ("list", []), ("not-json", None)]
    want = {name: _verdict(doc) for name, doc in invalid}
    refused = sorted(name for name, v in want.items() if v)
    # (a few corpus files are invalid only for the official schema: extensions ocirun accepts, as runc does)
    assert len(refused) >= 20 and {"pidd+terminal", "empty", "list", "not-json"} <= set(refused), want

    class Boom:
        @staticmethod
        def validate(doc):
            raise RuntimeError("bug in generated code")

    monkeypatch.setattr(V, "_fast", Boom)
    V.validate_config(specgen.default_spec())  # jsonschema says valid: accepted
    for p in _corpus.corpus_files("valid"):
        V.validate_config(_corpus.load(p))
    got = {name: _verdict(doc) for name, doc in invalid}
    assert got == want
    assert _verdict(d) == ['/linux/namespaces/0/type: "pidd" is not one of cgroup, ipc, mount, network, pid, time, '
                           'user, uts', '/process/terminal: "yes" is not of type boolean']


def test_state_and_features_api():
    V.validate_state({"ociVersion": "1.3.0", "id": "a", "status": "running", "pid": 1, "bundle": "/b"})
    with pytest.raises(ConfigError) as ei:
        V.validate_state({"ociVersion": "1.3.0", "id": "a", "status": "paused", "bundle": "/b"})
    assert ei.value.problems == ['/status: "paused" is not one of created, creating, running, stopped']
    V.validate_features({"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0"})
    with pytest.raises(ConfigError) as ei:
        V.validate_features({"ociVersionMin": "1.0.0"})
    assert ei.value.problems == ['/: "ociVersionMax" is a required property']


# ---- the generated fast path

def test_generated_module_is_fresh():
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import gen_validator
    finally:
        sys.path.pop(0)
    from ocirun import _validator

    raw = (REPO / "spec" / "config-schema.json").read_bytes() + b"\n" + (REPO / "spec" / "extensions.json").read_bytes()
    assert _validator.SCHEMA_SHA256 == hashlib.sha256(raw).hexdigest(), \
        "spec/config-schema.json or spec/extensions.json changed: run tools/gen_validator.py"
    fjs = pytest.importorskip("fastjsonschema")
    committed = (REPO / "ocirun" / "_validator.py").read_text()
    if f"# fastjsonschema {fjs.VERSION}\n" not in committed:
        pytest.skip(f"generated with another fastjsonschema than {fjs.VERSION}; the schema hash matched")
    assert gen_validator.generate() == committed, "ocirun/_validator.py is stale: run tools/gen_validator.py"


def test_generated_patterns_match_like_jsonschema():
    import re

    from ocirun import _validator

    for src, pat in _validator.REGEX_PATTERNS.items():
        assert pat.source == src
        for s in list(pat.known) + ["", "\n", "a", "RLIMIT_NOFILE\n", "2MB\n", "c\n", "cc", "0-3,5", "MB:x"]:
            assert bool(pat.search(s)) == bool(re.search(src, s)), (src, s)


def _run_light(code, env_extra=None):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.update(env_extra or {})
    r = subprocess.run([sys.executable, "-S", "-c", textwrap.dedent(code)], capture_output=True, text=True,
                       env=env, cwd=str(REPO), timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_hot_path_imports_nothing_heavy():
    podman = sorted(str(p) for p in _corpus.corpus_files("valid") if p.name.startswith("podman-"))
    assert podman
    out = _run_light(f"""
        import sys
        import ocirun.validate, ocirun.specgen, ocirun.jsonio
        assert ocirun.validate._fast is not None
        ocirun.validate.validate_config(ocirun.specgen.default_spec())
        ocirun.validate.validate_config(ocirun.specgen.default_spec(rootless=True))
        for p in {podman!r}:
            ocirun.validate.validate_config(ocirun.jsonio.load_file(p))
        print(",".join(m for m in {HEAVY!r} if m in sys.modules))
        """)
    assert out.strip() == "", f"imported on the hot path: {out.strip()}"


def test_startup_budget(tmp_path):
    """import ocirun.validate + validate_config(default_spec()) in a fresh interpreter (with .pyc caches)."""
    code = """
        import time
        import ocirun, ocirun.specgen
        d = ocirun.specgen.default_spec()
        t = time.perf_counter()
        import ocirun.validate
        ocirun.validate.validate_config(d)
        print((time.perf_counter() - t) * 1e3)
        """
    env = {"PYTHONPYCACHEPREFIX": str(tmp_path), "PYTHONDONTWRITEBYTECODE": ""}
    _run_light(code, env)  # warm the .pyc cache (outside the repository)
    times = sorted(float(_run_light(code, env)) for _ in range(5))
    budget = float(os.environ.get("OCIRUN_VALIDATE_BUDGET_MS", "5"))
    assert times[0] < budget, f"import+validate took {times} ms (budget {budget} ms; target < 2 ms)"


# ---- the cache of configs already found valid (validate_config_cached)

def _raw(doc):
    import json

    return json.dumps(doc).encode()


def test_cache_hit_skips_validation(tmp_path, monkeypatch):
    monkeypatch.setenv("OCIRUN_VALIDATION_CACHE", str(tmp_path / "c"))
    calls = []
    real = V.validate_config
    monkeypatch.setattr(V, "validate_config", lambda doc: calls.append(1) or real(doc))
    doc = specgen.default_spec()
    V.validate_config_cached(doc, _raw(doc))
    assert calls == [1] and len(os.listdir(tmp_path / "c")) == 1
    V.validate_config_cached(doc, _raw(doc))
    assert calls == [1], "a config already found valid was validated again"
    doc["hostname"] = "other"  # other bytes: validated (and remembered) anew
    V.validate_config_cached(doc, _raw(doc))
    assert calls == [1, 1] and len(os.listdir(tmp_path / "c")) == 2
    mode = os.stat(tmp_path / "c").st_mode & 0o777
    assert mode == 0o700


def test_cache_never_remembers_an_invalid_config(tmp_path, monkeypatch):
    monkeypatch.setenv("OCIRUN_VALIDATION_CACHE", str(tmp_path / "c"))
    d = specgen.default_spec()
    d["linux"]["namespaces"][0]["type"] = "pidd"
    for _ in range(2):
        with pytest.raises(ConfigError) as ei:
            V.validate_config_cached(d, _raw(d))
        assert ei.value.problems[0].startswith("/linux/namespaces/0/type")
    assert not (tmp_path / "c").exists() or os.listdir(tmp_path / "c") == []


def test_cache_key_follows_the_validator(tmp_path, monkeypatch):
    """A regenerated validator (other size/mtime of ocirun/_validator.py) must not trust old entries."""
    monkeypatch.setenv("OCIRUN_VALIDATION_CACHE", str(tmp_path / "c"))
    doc = specgen.default_spec()
    raw = _raw(doc)
    before = V._cache_entry(raw)
    real_stat = os.stat
    target = os.path.join(os.path.dirname(V.__file__), "_validator.py")

    class St:
        def __init__(self, st):
            self.st_size, self.st_mtime_ns = st.st_size, st.st_mtime_ns + 1

    monkeypatch.setattr(V.os, "stat", lambda p, *a, **k: St(real_stat(p)) if p == target else real_stat(p, *a, **k))
    assert V._cache_entry(raw) != before


@pytest.mark.parametrize("value", ["", "off"])
def test_cache_off(tmp_path, monkeypatch, value):
    monkeypatch.setenv("OCIRUN_VALIDATION_CACHE", value)
    assert V._cache_entry(b"{}") is None
    calls = []
    monkeypatch.setattr(V, "validate_config", lambda doc: calls.append(1))
    V.validate_config_cached({}, b"{}")
    V.validate_config_cached({}, b"{}")
    assert calls == [1, 1]


def test_cache_in_a_directory_others_can_write_is_not_used_for_writing(tmp_path, monkeypatch):
    d = tmp_path / "c"
    d.mkdir(mode=0o700)
    os.chmod(d, 0o777)
    monkeypatch.setenv("OCIRUN_VALIDATION_CACHE", str(d))
    doc = specgen.default_spec()
    V.validate_config_cached(doc, _raw(doc))
    assert os.listdir(d) == []


def test_cache_is_trimmed(tmp_path, monkeypatch):
    d = tmp_path / "c"
    d.mkdir(mode=0o700)
    monkeypatch.setattr(V, "CACHE_MAX", 8)
    for i in range(20):
        (d / f"{i:064x}").touch()
        os.utime(d / f"{i:064x}", ns=(i * 10**9, i * 10**9))
    V._trim(str(d))
    left = sorted(os.listdir(d))
    assert left == [f"{i:064x}" for i in range(16, 20)], left  # the newest CACHE_MAX/2 stay


def test_config_load_uses_the_cache(tmp_path, monkeypatch):
    from ocirun import config as C

    monkeypatch.setenv("OCIRUN_VALIDATION_CACHE", str(tmp_path / "c"))
    p = tmp_path / "config.json"
    p.write_bytes(_raw(specgen.default_spec()))
    C.load(str(p))
    assert len(os.listdir(tmp_path / "c")) == 1
    monkeypatch.setattr(V, "validate_config", lambda doc: pytest.fail("validated again"))
    assert C.load(str(p)).process.args
