"""Differential tests: runc and ocirun given the same configs must reach the same verdict (create refused or
not), and where both run, the container must see the same (mount table, modes and owners of mount points
and devices, ids, capabilities, rlimits, no_new_privs, umask, cwd, env, hostname, sysctls, what hooks saw).

Two tests:
- every seed of the corpus as it is (seeds.py), one test per seed;
- a bounded, derandomized hypothesis sample of mutated seeds (strategies.py). DIFF_MAX_EXAMPLES sets its
  size (default 120, about a minute here); no shrinking (each example is two real containers): a failure
  prints the case (seed + ops), both verdicts, the differing keys and values. To reduce one, run the long
  CLI (`python -m tests.differential`), which minimizes per cause.

Differences where runc 1.1.5 (installed here) is not the reference are in known_differences.py.
Needs root, /usr/sbin/runc and the venv's ocirun.
"""
import json
import os

import pytest
from hypothesis import HealthCheck, Phase, Verbosity, given, settings

from . import differ, harness, seeds, strategies

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (runs containers)"),
    pytest.mark.skipif(not os.access(harness.RUNC, os.X_OK), reason=f"host: {harness.RUNC} is not installed"),
]

MAX_EXAMPLES = int(os.environ.get("DIFF_MAX_EXAMPLES", "120"))


@pytest.fixture(scope="module")
def diff_env():
    if not os.access(harness.OCIRUN, os.X_OK):
        pytest.fail(f"{harness.OCIRUN} not found: run ./dev.sh setup")
    env = harness.Env.open()
    yield env
    env.close()


def _explain(case, d):
    lines = [f"runc and ocirun disagree on case {json.dumps(case)}",
             f"  verdicts: runc={d['verdicts']['runc']} ocirun={d['verdicts']['ocirun']}",
             f"  stderr: runc={d['stderr']['runc']!r}",
             f"          ocirun={d['stderr']['ocirun']!r}"]
    if d["keys"] != ["verdict"]:
        lines.append("  differing keys (runc | ocirun):")
        for k in d["keys"]:
            a, b = d["values"].get(k, [None, None])
            lines.append(f"    {k}: {json.dumps(a)[:300]} | {json.dumps(b)[:300]}")
    if d.get("known"):
        lines.append(f"  (explained by known_differences: {', '.join(d['known'])})")
    return "\n".join(lines)


@pytest.mark.parametrize("seed_name", seeds.seed_names() if os.geteuid() == 0 and os.access(harness.RUNC, os.X_OK)
                         else [])
def test_seed_agrees(diff_env, seed_name):
    case = {"seed": seed_name, "ops": []}
    d = differ.check(diff_env, case)
    assert d is None, _explain(case, d)


@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
          verbosity=Verbosity.quiet)
@given(case=strategies.cases())
def test_mutations_agree(diff_env, case):
    d = differ.check(diff_env, case)
    assert d is None, _explain(case, d)
