"""runc's leniency beyond the official schema: spec/extensions.json, applied to a config before validation.

`normalize(doc, raw)` rewrites, in place, what runc reads differently from the official schema's letter and
returns where it did so, as `(JSON pointer, extension id)` pairs (for `ocirun check --strict`):

* null-as-absent: Go's encoding/json gives a null member the zero value: a null member of an object is
  dropped (as if absent), a null array element or string-map value becomes its type's zero value.
* device-filemode-type-bits: `linux.devices[].fileMode` keeps its permission bits only (runc: &^ S_IFMT).

The other extensions only widen the schema (tools/gen_validator.py compiles the widened one for `create`;
`lenient_schema()` builds it for jsonschema). Nothing here runs for a config without nulls or device modes
above 0o7777, and nothing here imports more than `os`.
"""
import os

S_IFMT = 0o170000


def normalize(doc, raw=None):
    notes = []
    if raw is None or _may_have_null(raw):
        _nulls(doc, lenient_schema(), "", notes)
    lin = doc.get("linux")
    devs = lin.get("devices") if isinstance(lin, dict) else None
    if isinstance(devs, list):
        for i, d in enumerate(devs):
            m = d.get("fileMode") if isinstance(d, dict) else None
            if isinstance(m, int) and not isinstance(m, bool) and 0o7777 < m < 1 << 32:
                d["fileMode"] = m & ~S_IFMT & 0o7777
                notes.append((f"/linux/devices/{i}/fileMode", "device-filemode-type-bits"))
    return notes


def _may_have_null(raw):
    """Whether the JSON text may hold a null value: a `null` between a `:`, `[` or `,` and a `,`, `]` or `}`
    (whitespace aside). `/dev/null` in a string is not one, so such a common config stays on the fast path
    (the null walk loads jsonschema: ~17 ms); a string that only looks like one costs the walk, never a miss."""
    i = raw.find(b"null")
    while i >= 0:
        j = i - 1
        while j >= 0 and raw[j] in b" \t\r\n":
            j -= 1
        k = i + 4
        while k < len(raw) and raw[k] in b" \t\r\n":
            k += 1
        if (j < 0 or raw[j] in b":[,") and (k == len(raw) or raw[k] in b",]}"):
            return True
        i = raw.find(b"null", i + 4)
    return False


# ---- the registry and the widened schema

_REGISTRY = None
_LENIENT = None


def _spec_file(name):
    from . import jsonio

    try:
        from importlib.resources import files

        data = files("ocirun.spec").joinpath(name).read_bytes()
    except ImportError:  # a bare source tree: spec/ beside ocirun/
        with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "spec", name), "rb") as f:
            data = f.read()
    return jsonio.loads(data)


def registry():
    """The entries of spec/extensions.json."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _spec_file("extensions.json")["extensions"]
    return _REGISTRY


def widen(schema, entries):
    """A copy of the config schema with each entry's `schema` put at its `schema_at` pointer."""
    import copy

    out = copy.deepcopy(schema)
    for e in entries:
        if "schema_at" not in e:
            continue
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in e["schema_at"].split("/")[1:]]
        node = out
        for p in parents:
            node = node[p]
        if last not in node:
            raise KeyError(f"extension {e['id']}: {e['schema_at']} is not in the schema")
        node[last] = copy.deepcopy(e["schema"])
    return out


def lenient_schema():
    """spec/config-schema.json (the official verdict) widened by every extension: what `create` accepts."""
    global _LENIENT
    if _LENIENT is None:
        _LENIENT = widen(_spec_file("config-schema.json"), registry())
    return _LENIENT


def strict_schema():
    return _spec_file("config-schema.json")


def uses(doc, problems_by_pointer):
    """Which extensions a config uses: [(pointer, id)] for each strict-schema problem (pointer -> instance)
    that an extension's `field` covers. `problems_by_pointer` maps JSON pointers to the values found there."""
    out = []
    for ptr, value in problems_by_pointer.items():
        for e in registry():
            if e.get("match") == "null":
                continue
            if _field_matches(e["field"], ptr):
                out.append((ptr, e["id"]))
                break
    return out


def _field_matches(pattern, ptr):
    a, b = pattern.split("/"), ptr.split("/")
    return len(a) == len(b) and all(x == "*" or x == y for x, y in zip(a, b))


# ---- nulls, the way Go decodes them

def _resolve(sch, root):
    seen = 0
    while isinstance(sch, dict) and "$ref" in sch and seen < 32:
        node = root
        for p in sch["$ref"].lstrip("#").split("/")[1:]:
            node = node[p]
        sch = node
        seen += 1
    return sch if isinstance(sch, dict) else {}


def _branches(sch, root):
    """The schema and, for anyOf/oneOf/allOf, its branches (the first that fits a value is used)."""
    sch = _resolve(sch, root)
    out = [sch]
    for k in ("allOf", "anyOf", "oneOf"):
        for b in sch.get(k) or ():
            out.extend(_branches(b, root))
    return out


def _types(sch, root):
    ts = []
    for b in _branches(sch, root):
        t = b.get("type")
        if isinstance(t, list):
            ts.extend(t)
        elif t:
            ts.append(t)
        elif "enum" in b and b["enum"]:
            v = b["enum"][0]
            ts.append("string" if isinstance(v, str) else "integer" if isinstance(v, int) else "other")
        elif "properties" in b:
            ts.append("object")
    return ts


_ZERO = {"string": "", "integer": 0, "number": 0, "boolean": False}


def _zero(sch, root):
    ts = _types(sch, root)
    if "null" in ts:
        return None, False  # null is a valid value there: keep it
    for t in ts:
        if t in _ZERO:
            return _ZERO[t], True
        if t == "object":
            return {}, True
        if t == "array":
            return [], True
    return None, False


def _child(sch, root, key):
    """The schema of member `key` of an object (None if nothing says) and whether the object is a map."""
    for b in _branches(sch, root):
        props = b.get("properties") or {}
        if key in props:
            return props[key], False
    for b in _branches(sch, root):
        pats = b.get("patternProperties") or {}
        if pats:
            import re

            for pat, s in pats.items():
                if re.search(pat, key):
                    return s, True
        ap = b.get("additionalProperties")
        if isinstance(ap, dict):
            return ap, True
    return None, False


def _items(sch, root):
    for b in _branches(sch, root):
        it = b.get("items")
        if isinstance(it, dict):
            return it
    return None


def _nulls(node, sch, ptr, notes, root=None):
    root = root if root is not None else sch
    if isinstance(node, dict):
        for key in list(node):
            v = node[key]
            child, is_map = _child(sch, root, key) if sch is not None else (None, False)
            here = f"{ptr}/{str(key).replace('~', '~0').replace('/', '~1')}"
            if v is None:
                if child is None:
                    continue  # an unknown member: ignored by the spec anyway
                if is_map:
                    zero, ok = _zero(child, root)
                    if ok:
                        node[key] = zero
                        notes.append((here, "null-as-absent"))
                elif "null" not in _types(child, root):
                    del node[key]
                    notes.append((here, "null-as-absent"))
            elif isinstance(v, (dict, list)) and child is not None:
                _nulls(v, child, here, notes, root)
    elif isinstance(node, list):
        item = _items(sch, root) if sch is not None else None
        if item is None:
            return
        for i, v in enumerate(node):
            if v is None:
                zero, ok = _zero(item, root)
                if ok:
                    node[i] = zero
                    notes.append((f"{ptr}/{i}", "null-as-absent"))
            elif isinstance(v, (dict, list)):
                _nulls(v, item, f"{ptr}/{i}", notes, root)
