"""One case through both runtimes, the comparison, grouping by cause, and the minimizer.

    d = check(env, case)          # None when runc and ocirun agree (after known_differences), else a dict
    groups = group_keys(d)        # the causes this disagreement belongs to
    small = minimize(env, case, group, budget=40)   # a smaller config with the same cause
"""
import copy
import json
import re

from . import harness, known_differences, normalize, strategies


def check(env, case):
    """Run the case under runc and ocirun; the disagreement left after the allow-list, or None."""
    template = strategies.build(case)
    outcomes = harness.run_pair(env, template)
    d = normalize.compare(outcomes, env.host_ns)
    if d is None:
        return None
    d["stderr"] = {n: _last_error(o) for n, o in outcomes.items()}
    rest, used = known_differences.explain(strategies.raw_config(case), d)
    if rest is None:
        return None
    rest = dict(rest)
    rest["known"] = used
    return rest


def _last_error(outcome):
    for step in ("start", "create"):
        s = outcome.steps.get(step)
        if s is not None and not s.ok:
            lines = [ln for ln in s.stderr.strip().splitlines() if ln.strip()]
            return f"{step}: {lines[-1][-400:]}" if lines else f"{step}: exit {s.rc}"
    return ""


_NUM = re.compile(r"\d+")
_PATH = re.compile(r"/tmp/odf-[^ \"']*")
_GOLOG = re.compile(r'^.*?msg="(.*)"$')


def _norm_msg(msg):
    m = _GOLOG.match(msg.split(": ", 1)[-1]) if "msg=" in msg else None
    if m:
        msg = m.group(1)
    msg = _PATH.sub("PATH", msg)
    msg = re.sub(r"df[0-9a-f]{4}\d+[ro]", "ID", msg)
    return _NUM.sub("N", msg)[:160]


_MOUNT_KEY = re.compile(r"^mount\[(.*)\]\.(\w+)$")
# keys whose exact values follow the rest of the config (annotations in a hook's state, the whole mount list):
# a smaller config shows the same cause with other values
_KEY_ONLY = ("hook[", "hooks.order", "mounts.order", "fds")


def _groups(d):
    """{group name: [keys]} of a disagreement."""
    if d["keys"] == ["verdict"]:
        v = d["verdicts"]
        refuser = "ocirun" if v["ocirun"] != "ran" else "runc"
        return {f"verdict runc={v['runc']} ocirun={v['ocirun']} | {refuser}: {_norm_msg(d['stderr'][refuser])}": []}
    out, mounts = {}, {}
    one_sided = False
    for k in d["keys"]:
        m = _MOUNT_KEY.match(k)
        if m:
            mp = re.sub(r"#\d+$", "", m.group(1))
            mounts.setdefault(mp, []).append(k)
            if None in d["values"].get(k, [0, 0]):
                one_sided = True
        elif k != "mounts.order":
            out.setdefault(re.sub(r"#\d+\]", "]", k), []).append(k)
    for mp, keys in mounts.items():
        fields = sorted({_MOUNT_KEY.match(k).group(2) for k in keys})
        out[f"mount[{mp}].{{{','.join(fields)}}}"] = keys
    if "mounts.order" in d["keys"] and not one_sided:
        out["mounts.order"] = ["mounts.order"]
    return out


def group_keys(d):
    """The causes: one per verdict disagreement (the verdict pair + the refusing side's message, numbers and
    paths blanked), one per mount point with the set of its differing fields, one per other differing key
    (repeats "#n" folded); mounts.order only when the same mounts are there in another order."""
    return sorted(_groups(d))


def signature(d, group):
    """What must stay the same for a smaller config to show the same cause: the group, and the values of its
    keys (except where values follow the rest of the config, _KEY_ONLY)."""
    g = _groups(d)
    if group not in g:
        return None
    vals = {}
    for k in g[group]:
        if not k.startswith(_KEY_ONLY):
            vals[re.sub(r"#\d+\]", "]", k)] = d["values"].get(k)
    return json.dumps(vals, sort_keys=True, default=str)


def group_values(d, group):
    """{key: [runc, ocirun]} of the keys of `group` in `d`."""
    return {k: d["values"].get(k) for k in _groups(d).get(group, [])}


def matches(d, group, sig=None):
    if d is None:
        return False
    s = signature(d, group)
    return s is not None and (sig is None or s == sig)


# ----------------------------------------------------------------------------------------------- minimizer
SMALL_SEEDS = ("conformance-base", "runc-spec")


def _paths(obj, prefix=()):
    """Deletable paths of a JSON document, biggest subtrees first."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append((prefix + (k,), len(json.dumps(v))))
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.append((prefix + (i,), len(json.dumps(v))))
            out += _paths(v, prefix + (i,))
    return out


def _delete(doc, path):
    doc = copy.deepcopy(doc)
    d = doc
    for p in path[:-1]:
        d = d[p]
    if isinstance(d, list):
        d.pop(path[-1])
    else:
        d.pop(path[-1])
    return doc


KEEP = {("root",), ("root", "path"), ("process",), ("process", "args"), ("process", "cwd"), ("ociVersion",)}


def minimize(env, case, group, budget=40, log=None, sig=None):
    """A smaller case that still shows `group`: fewer ops, a smaller seed, then parts of the config deleted
    (biggest first). At most `budget` pair runs. Returns (case, runs)."""
    runs = 0

    def still(c):
        nonlocal runs
        runs += 1
        try:
            return matches(check(env, c), group, sig)
        except Exception as e:  # noqa: BLE001 - a failing candidate is just not kept
            if log:
                log(f"minimize: candidate failed: {e!r}")
            return False

    cur = copy.deepcopy(case)
    if "ops" in cur:
        changed = True
        while changed and runs < budget:
            changed = False
            for i in range(len(cur["ops"])):
                cand = dict(cur, ops=cur["ops"][:i] + cur["ops"][i + 1:])
                if runs < budget and still(cand):
                    cur, changed = cand, True
                    break
        for s in SMALL_SEEDS:
            if cur["seed"] == s or runs >= budget:
                continue
            cand = dict(cur, seed=s)
            if still(cand):
                cur = cand
                break
        cur = {"config": strategies.raw_config(cur)}
    # structural deletion on the literal config
    tried = set()
    progress = True
    while progress and runs < budget:
        progress = False
        for path, _size in sorted(_paths(cur["config"]), key=lambda t: (-t[1], len(t[0]))):
            if runs >= budget:
                break
            if path in KEEP or path in tried:
                continue
            tried.add(path)
            try:
                cand = {"config": _delete(cur["config"], path)}
            except (KeyError, IndexError, TypeError):
                continue
            if still(cand):
                cur = cand
                progress = True
                break
    return cur, runs
