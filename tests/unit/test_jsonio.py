"""ocirun.jsonio against the stdlib json module as the oracle."""
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocirun import jsonio

scalars = (st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text())
documents = st.recursive(scalars, lambda c: st.lists(c, max_size=6) | st.dictionaries(st.text(), c, max_size=6),
                         max_leaves=12)


def same(a, b):
    """Equality that also tells -0.0 from 0.0 and keeps types (1 vs 1.0 vs True)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b


@settings(max_examples=80, deadline=None, database=None)
@given(documents)
def test_loads_matches_stdlib(doc):
    for text in (json.dumps(doc), json.dumps(doc, indent=2), json.dumps(doc, ensure_ascii=False)):
        assert same(jsonio.loads(text), json.loads(text))
        assert same(jsonio.loads(text.encode()), json.loads(text))


@settings(max_examples=80, deadline=None, database=None)
@given(documents)
def test_dumps_matches_stdlib(doc):
    assert jsonio.dumps(doc) == json.dumps(doc, separators=(",", ":"))
    assert jsonio.dumps(doc, sort_keys=True) == json.dumps(doc, separators=(",", ":"), sort_keys=True)
    assert same(jsonio.loads(jsonio.dumps(doc)), doc)


@settings(max_examples=60, deadline=None, database=None)
@given(documents, st.integers(min_value=0, max_value=8), st.booleans())
def test_indent_output(doc, indent, sort_keys):
    out = jsonio.dumps(doc, indent=indent, sort_keys=sort_keys)
    assert same(json.loads(out), json.loads(json.dumps(doc, sort_keys=sort_keys)))
    assert out == json.dumps(doc, indent=indent, sort_keys=sort_keys)


def test_indent_non_string_keys_like_stdlib():
    doc = {True: 1, None: 2, 1.5: 3, 7: 4, "s": {False: 5}}
    assert jsonio.dumps(doc, indent=2) == json.dumps(doc, indent=2)
    assert jsonio.dumps(doc) == json.dumps(doc, separators=(",", ":"))


def _mutations():
    base = st.builds(lambda d, ind: json.dumps(d, indent=ind), documents, st.sampled_from([None, 1, 2, 4]))
    return st.tuples(base, st.integers(min_value=0, max_value=10**6),
                     st.sampled_from(["cut", "insert", "replace"]),
                     st.sampled_from(list(',:{}[]"\\x\n\t 0-.etfn\x01')))


@settings(max_examples=150, deadline=None, database=None)
@given(_mutations())
def test_error_positions_match_stdlib(case):
    text, at, how, ch = case
    at = at % (len(text) + 1)
    if how == "cut":
        bad = text[:at]
    elif how == "insert":
        bad = text[:at] + ch + text[at:]
    else:
        bad = text[:at] + ch + text[at + 1:]
    try:
        want = json.loads(bad)
    except json.JSONDecodeError as e:
        with pytest.raises(jsonio.JSONError) as ei:
            jsonio.loads(bad)
        got = ei.value
        assert (got.msg, got.pos, got.lineno, got.colno) == (e.msg, e.pos, e.lineno, e.colno)
        with pytest.raises(jsonio.JSONError) as ei:
            jsonio.loads(bad.encode())
        assert (ei.value.msg, ei.value.lineno, ei.value.colno) == (e.msg, e.lineno, e.colno)
        return
    assert same(jsonio.loads(bad), want)


@pytest.mark.parametrize("text", [
    "", " ", "{", "[1,]", '{"a" 1}', '{"a":1,}', "[1 2]", "tru", "nul", "01", "1.", "-", '"abc', '"\\x"',
    '"\x01"', "[1]x", "{}\n{}", "\n\n  [\n  1,\n  ,2]", '{"a":\n\n  }', "[" * 50 + "]" * 49,
])
def test_error_examples(text):
    with pytest.raises(json.JSONDecodeError) as ref:
        json.loads(text)
    with pytest.raises(jsonio.JSONError) as ei:
        jsonio.loads(text)
    e, r = ei.value, ref.value
    assert (e.msg, e.pos, e.lineno, e.colno) == (r.msg, r.pos, r.lineno, r.colno)
    assert isinstance(e, ValueError)
    assert str(e) == f"{r.msg}: line {r.lineno} column {r.colno}"


def test_errors_without_json_imported():
    """In a fresh interpreter that never imported `json`, the C scanner's error path still gives JSONError
    with the stdlib's message and position (Python 3.11 looks json.decoder up without importing it)."""
    import subprocess
    import sys

    code = ("import sys; from ocirun import jsonio\n"
            "assert 'json' not in sys.modules and 'json.decoder' not in sys.modules\n"
            "out = []\n"
            "for t in ['[1,]', '{\"a\" 1}', '\"abc', '[1 2]', '', 'x']:\n"
            "    try:\n"
            "        jsonio.loads(t)\n"
            "    except jsonio.JSONError as e:\n"
            "        out.append((e.msg, e.pos))\n"
            "print(out)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    assert res.returncode == 0, res.stderr
    want = []
    for t in ['[1,]', '{"a" 1}', '"abc', '[1 2]', '', 'x']:
        try:
            json.loads(t)
        except json.JSONDecodeError as e:
            want.append((e.msg, e.pos))
    assert res.stdout.strip() == repr(want)


def test_bom_bytes():
    doc = {"ociVersion": "1.3.0", "x": ["\u00e9", 1]}
    data = b"\xef\xbb\xbf" + json.dumps(doc).encode()
    assert jsonio.loads(data) == doc == json.loads(data)
    with pytest.raises(jsonio.JSONError) as ei:
        jsonio.loads(b"\xef\xbb\xbf{\n  bad")
    assert (ei.value.lineno, ei.value.colno) == (2, 3)


def test_bytes_and_bytearray():
    assert jsonio.loads(b' {"a": [1, 2.5, null]} ') == {"a": [1, 2.5, None]}
    assert jsonio.loads(bytearray(b"[true]")) == [True]
    assert jsonio.loads('"\u00e9"'.encode()) == "\u00e9"


def test_invalid_utf8():
    with pytest.raises(jsonio.JSONError) as ei:
        jsonio.loads(b'{"a": "\xff"}')
    assert ei.value.msg == "invalid UTF-8"


def test_whitespace_and_specials():
    assert jsonio.loads(" \t\r\n 1 \t\r\n ") == 1
    assert jsonio.loads('"\\ud83d\\ude00"') == "\U0001F600"
    assert jsonio.loads("1e400") == float("inf") == json.loads("1e400")
    assert jsonio.loads("123456789012345678901234567890") == 123456789012345678901234567890
    big = "[" * 500 + "]" * 500
    assert jsonio.loads(big) == json.loads(big)


def test_duplicate_keys_last_wins_like_stdlib():
    assert jsonio.loads('{"a": 1, "a": 2}') == json.loads('{"a": 1, "a": 2}') == {"a": 2}


def test_dumps_ascii_escapes():
    s = "caf\u00e9 \U0001F600 \x00 \u2028 \"\\"
    assert jsonio.dumps(s) == json.dumps(s)
    assert jsonio.dumps([s], indent=1) == json.dumps([s], indent=1)


def test_dumps_tuples_and_unserializable():
    assert jsonio.dumps((1, (2,))) == "[1,[2]]"
    with pytest.raises(TypeError):
        jsonio.dumps({"a": object()})
    with pytest.raises(TypeError):
        jsonio.dumps({"a": {1, 2}}, indent=2)


def test_dumps_circular_is_an_error():
    a = []
    a.append(a)
    with pytest.raises(ValueError):
        jsonio.dumps(a)
    jsonio.dumps([1])  # the encoder is still usable afterwards


@settings(max_examples=50, deadline=None, database=None)
@given(st.text())
def test_string_round_trip(s):
    assert jsonio.loads(jsonio.dumps(s)) == s
