"""Fast JSON in and out for the hot path.

`import json` costs ~12 ms here because json.decoder imports `re` (and with it `enum`). ocirun's start-up
budget is ~20 ms in all, so this module drives the stdlib's own C accelerator (`_json`) directly: the same
scanner `json.loads` uses, without the module-level regexes. Errors are re-raised through the real
`json.JSONDecodeError` (imported only then) so messages carry line and column.
"""
import _json

_WS = " \t\n\r"


class _Ctx:
    # The attributes _json.make_scanner reads from its context (json.decoder.JSONDecoder's).
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo = None

    @staticmethod
    def parse_constant(name):
        return {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}[name]


_scan = _json.make_scanner(_Ctx())


class JSONError(ValueError):
    """Malformed JSON; msg, lineno and colno as json.JSONDecodeError has them."""

    def __init__(self, msg, doc, pos):
        lineno = doc.count("\n", 0, pos) + 1
        colno = pos - doc.rfind("\n", 0, pos)
        self.msg, self.pos, self.lineno, self.colno = msg, pos, lineno, colno
        super().__init__(f"{msg}: line {lineno} column {colno}")


def loads(s):
    """Parse one JSON document (str or bytes)."""
    if isinstance(s, (bytes, bytearray)):
        try:
            s = s.decode("utf-8-sig" if s[:3] == b"\xef\xbb\xbf" else "utf-8")
        except UnicodeDecodeError as e:
            raise JSONError("invalid UTF-8", "", 0) from e
    n = len(s)
    i = 0
    while i < n and s[i] in _WS:
        i += 1
    try:
        try:
            obj, end = _scan(s, i)
        except SystemError:
            # The C scanner raises json.decoder.JSONDecodeError, which it looks up in sys.modules without
            # importing it (Python 3.11): on the error path only, import it and scan again for the message.
            import json.decoder  # noqa: F401

            obj, end = _scan(s, i)
    except StopIteration as e:
        raise JSONError("Expecting value", s, e.value) from None
    except ValueError as e:  # json.JSONDecodeError from the C scanner
        raise JSONError(getattr(e, "msg", str(e)), s, getattr(e, "pos", 0)) from None
    while end < n and s[end] in _WS:
        end += 1
    if end != n:
        raise JSONError("Extra data", s, end)
    return obj


def load_file(path):
    with open(path, "rb") as f:
        return loads(f.read())


_enc_str = _json.encode_basestring_ascii


def _float(o):
    if o != o or o in (float("inf"), float("-inf")):
        raise ValueError("cannot encode non-finite float")
    return float.__repr__(o)


# The C encoder json.dumps uses: (markers, default, encoder, indent, key_sep, item_sep, sort_keys, skipkeys, allow_nan)
def _default(o):
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


_compact = _json.make_encoder({}, _default, _enc_str, None, ":", ",", False, False, True)
_compact_sorted = _json.make_encoder({}, _default, _enc_str, None, ":", ",", True, False, True)


def dumps(obj, sort_keys=False, indent=None):
    """Serialize compactly (runc prints state indented; pass indent=2 for that)."""
    if indent is not None:
        return _pretty(obj, indent, 0, sort_keys)
    enc = _compact_sorted if sort_keys else _compact
    return "".join(enc(obj, 0))


def _pretty(o, ind, level, sort_keys):
    pad = " " * (ind * (level + 1))
    end = " " * (ind * level)
    if isinstance(o, dict):
        if not o:
            return "{}"
        items = sorted(o.items()) if sort_keys else o.items()
        body = (",\n").join(f"{pad}{_key(k)}: {_pretty(v, ind, level + 1, sort_keys)}" for k, v in items)
        return "{\n" + body + "\n" + end + "}"
    if isinstance(o, (list, tuple)):
        if not o:
            return "[]"
        body = (",\n").join(pad + _pretty(v, ind, level + 1, sort_keys) for v in o)
        return "[\n" + body + "\n" + end + "]"
    return dumps(o)


def _key(k):
    """Object keys as json.dumps writes them: strings, and true/false/null/numbers turned into strings."""
    if isinstance(k, str):
        return _enc_str(k)
    if k is True:
        return '"true"'
    if k is False:
        return '"false"'
    if k is None:
        return '"null"'
    if isinstance(k, float):
        return '"' + _float(k) + '"'
    if isinstance(k, int):
        return '"' + int.__repr__(k) + '"'
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(k).__name__}")
