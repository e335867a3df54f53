"""Shared helpers for the schema tests: where the documents are, and the official schema's verdicts.

The official runtime-spec v1.3.0 schemas live in ../shared/oci-runtime-spec-v1.3.0 (beside the repository,
never inside it); `official-schema-check` in ../shared/tools judges config documents.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
OFFICIAL_DIR = SHARED / "oci-runtime-spec-v1.3.0"
OFFICIAL_TOOL = SHARED / "tools" / "official-schema-check"
SPEC_TESTS = OFFICIAL_DIR / "test"
CORPUS = REPO / "tests" / "fixtures" / "configs"


def have_shared():
    return OFFICIAL_TOOL.is_file() and OFFICIAL_DIR.is_dir()


def corpus_files(kind=None):
    """Corpus files; kind 'valid' or 'invalid' (the directory states what the official schema says)."""
    kinds = [kind] if kind else ["valid", "invalid"]
    return sorted(p for k in kinds for p in (CORPUS / k).glob("*.json"))


def spec_test_files(what):
    """The runtime-spec repository's own good/bad documents for what = config, state or features."""
    return sorted((SPEC_TESTS / what).glob("*/*.json")) if SPEC_TESTS.is_dir() else []


def load(path):
    """The parsed document, or None if the file is not JSON (a document every schema rejects)."""
    from ocirun import jsonio

    try:
        return jsonio.loads(Path(path).read_bytes())
    except ValueError:
        return None


def official_config_verdicts(files):
    """{str(file): True/False} from one run of official-schema-check over all files."""
    files = [str(f) for f in files]
    r = subprocess.run([sys.executable, str(OFFICIAL_TOOL), *files], capture_output=True, text=True, timeout=300)
    if r.returncode not in (0, 1):
        raise RuntimeError(f"official-schema-check failed ({r.returncode}):\n{r.stderr[-2000:]}")
    verdict = {}
    lines = r.stdout.splitlines()
    for f in files:
        prefix = f + ": "
        mine = [ln[len(prefix):] for ln in lines if ln.startswith(prefix)]
        if not mine:
            raise RuntimeError(f"official-schema-check said nothing about {f}")
        verdict[f] = mine == ["valid"]
    return verdict


_OFFICIAL = {}


def official_validator(name):
    """In-process jsonschema validator for the official <name>-schema.json (name: config, state, features)."""
    v = _OFFICIAL.get(name)
    if v is None:
        import jsonschema
        import referencing
        import referencing.jsonschema

        base = OFFICIAL_DIR.as_uri() + "/"
        reg = referencing.Registry().with_resources(
            (base + p.name, referencing.Resource.from_contents(
                json.loads(p.read_text()), default_specification=referencing.jsonschema.DRAFT4))
            for p in OFFICIAL_DIR.glob("*.json"))
        schema = dict(json.loads((OFFICIAL_DIR / f"{name}-schema.json").read_text()), id=base + f"{name}-schema.json")
        v = _OFFICIAL[name] = jsonschema.Draft4Validator(schema, registry=reg)
    return v


def official_is_valid(name, doc):
    """True/False, or None when the official schema cannot judge doc (its ArrayOfUint32 has a broken $ref:
    any non-empty vm.hwConfig.irqs makes jsonschema raise)."""
    try:
        return official_validator(name).is_valid(doc)
    except Exception as e:  # jsonschema wraps the referencing error; the class name varies across versions
        if "anchor" in str(e).lower() or "ref" in type(e).__name__.lower():
            return None
        raise


def engine_specs(tmp):
    """{name: path} of the configs `runc spec [--rootless]` and `crun spec` write, for the engines installed."""
    out = {}
    for name, argv in (("runc-spec", ["runc", "spec"]), ("runc-spec-rootless", ["runc", "spec", "--rootless"]),
                       ("crun-spec", ["crun", "spec"])):
        exe = shutil.which(argv[0]) or next((p for p in (f"/usr/bin/{argv[0]}", f"/usr/sbin/{argv[0]}")
                                            if os.path.exists(p)), None)
        if not exe:
            continue
        d = Path(tmp) / name
        d.mkdir()
        r = subprocess.run([exe, *argv[1:]], cwd=d, capture_output=True, text=True, timeout=30)
        if r.returncode == 0 and (d / "config.json").exists():
            out[name] = d / "config.json"
    return out
