"""The command line: Go-flag parsing, signal names, and whole commands run in-process with run_cli."""
import json
import os

import pytest

from ocirun import validate as V
from ocirun.cli import parse_flags, run_cli
from ocirun.cli.kill import parse_signal
from ocirun.errors import UsageError

SPEC = {"root": "str", "debug": "bool", "d": "debug", "n": "int", "env": "list", "e": "env", "help": "bool",
        "h": "help"}


# ============================================================================ parse_flags
@pytest.mark.parametrize("argv", [["-root", "/r"], ["--root", "/r"], ["-root=/r"], ["--root=/r"]])
def test_single_and_double_dash_and_equals(argv):
    fl, rest = parse_flags(argv + ["cmd", "x"], SPEC)
    assert fl.root == "/r" and rest == ["cmd", "x"]


def test_value_may_contain_equals_and_be_empty():
    fl, _ = parse_flags(["--root=a=b"], SPEC)
    assert fl.root == "a=b"
    fl, _ = parse_flags(["--root="], SPEC)
    assert fl.root == ""


def test_value_may_start_with_dash():
    fl, rest = parse_flags(["--root", "-x", "y"], SPEC)
    assert fl.root == "-x" and rest == ["y"]


@pytest.mark.parametrize("arg,want", [
    ("--debug", True), ("-debug", True), ("--debug=true", True), ("--debug=1", True), ("--debug=t", True),
    ("--debug=false", False), ("--debug=0", False), ("--debug=f", False), ("--debug=FALSE", False),
    ("--debug=True", True), ("-d", True), ("-d=false", False),
])
def test_bool(arg, want):
    fl, rest = parse_flags([arg, "cmd"], SPEC)
    assert fl.debug is want and rest == ["cmd"]


def test_bool_does_not_take_the_next_argument():
    fl, rest = parse_flags(["--debug", "false"], SPEC)
    assert fl.debug is True and rest == ["false"]


@pytest.mark.parametrize("v", ["yes", "no", "2", "", "truee"])
def test_bool_bad_value(v):
    with pytest.raises(UsageError) as ei:
        parse_flags([f"--debug={v}"], SPEC)
    assert f'invalid boolean value "{v}" for -debug' in str(ei.value)


def test_alias_stores_under_canonical_name():
    fl, _ = parse_flags(["-d", "-e", "A=1", "--env", "B=2", "-e=C=3"], SPEC)
    assert fl.debug is True and fl.env == ["A=1", "B=2", "C=3"]
    assert "d" not in fl and "e" not in fl


def test_missing_flags_read_as_none_and_dash_is_underscore():
    fl, _ = parse_flags([], {"pid-file": "str"})
    assert fl.pid_file is None
    fl, _ = parse_flags(["--pid-file", "p"], {"pid-file": "str"})
    assert fl.pid_file == "p"


def test_stops_at_first_positional():
    fl, rest = parse_flags(["--debug", "run", "--root", "/x", "-bogus"], SPEC)
    assert fl.debug is True and fl.root is None and rest == ["run", "--root", "/x", "-bogus"]


def test_double_dash_terminates_and_is_dropped():
    fl, rest = parse_flags(["--debug", "--", "--root", "x"], SPEC)
    assert fl.debug is True and rest == ["--root", "x"]
    assert parse_flags(["--"], SPEC)[1] == []


def test_single_dash_is_positional():
    assert parse_flags(["-", "x"], SPEC)[1] == ["-", "x"]


@pytest.mark.parametrize("arg", ["-bogus", "--bogus", "--bogus=1", "-bogus=x"])
def test_unknown_flag_message(arg):
    with pytest.raises(UsageError) as ei:
        parse_flags([arg], SPEC)
    assert str(ei.value) == "flag provided but not defined: -bogus"


@pytest.mark.parametrize("arg", ["---root", "-=x", "--=x"])
def test_bad_flag_syntax(arg):
    # Go's flag package: a name starting with '-' or '=' is "bad flag syntax: ARG"
    with pytest.raises(UsageError) as ei:
        parse_flags([arg], SPEC)
    assert str(ei.value) == f"bad flag syntax: {arg}"


@pytest.mark.parametrize("argv", [["--root"], ["-n"], ["--debug", "--env"]])
def test_missing_value(argv):
    with pytest.raises(UsageError) as ei:
        parse_flags(argv, SPEC)
    assert str(ei.value) == f"flag needs an argument: -{argv[-1].lstrip('-')}"


@pytest.mark.parametrize("v,want", [("0", 0), ("42", 42), ("-7", -7), ("+3", 3),
                                    ("9223372036854775807", 2**63 - 1), ("-9223372036854775808", -2**63)])
def test_int(v, want):
    fl, _ = parse_flags(["-n", v], SPEC)
    assert fl.n == want
    fl, _ = parse_flags([f"--n={v}"], SPEC)
    assert fl.n == want


@pytest.mark.parametrize("v", ["abc", "", "1.5", "1e3", "--", " 5", "5 ", "\u0663", "\uff15", "5\n"])
def test_int_parse_error(v):
    """Go's strconv.ParseInt: no spaces, only ASCII digits (Python's int() accepts ' 5', '\\u0663'...)."""
    with pytest.raises(UsageError) as ei:
        parse_flags([f"--n={v}"], SPEC)
    assert str(ei.value) == f'invalid value "{v}" for flag -n: parse error'


@pytest.mark.parametrize("v", ["9223372036854775808", "-9223372036854775809", "1" * 100])
def test_int_out_of_range(v):
    with pytest.raises(UsageError) as ei:
        parse_flags(["-n", v], SPEC)
    assert str(ei.value) == f'invalid value "{v}" for flag -n: value out of range'


def test_int_gigantic_is_a_usage_error():
    with pytest.raises(UsageError):
        parse_flags(["-n", "9" * 5000], SPEC)


def test_later_flag_overrides():
    fl, _ = parse_flags(["--root", "a", "--root", "b"], SPEC)
    assert fl.root == "b"


# ============================================================================ kill.parse_signal
@pytest.mark.parametrize("s,want", [
    ("KILL", 9), ("SIGKILL", 9), ("sigkill", 9), ("kill", 9), ("SigTerm", 15), ("9", 9), ("15", 15), ("1", 1),
    ("0", 0),
    ("64", 64), ("HUP", 1), ("USR1", 10), ("USR2", 12), ("CHLD", 17), ("WINCH", 28), ("SIGSYS", 31),
    ("RTMIN", 34), ("RTMIN+1", 35), ("SIGRTMIN+1", 35), ("RTMAX", 64), ("RTMAX-1", 63), ("RTMIN+30", 64),
])
def test_parse_signal(s, want):
    assert parse_signal(s) == want


@pytest.mark.parametrize("s", ["65", "-9", "99999999999999999999", "", "SIG", "BOGUS", "SIGBOGUS",
                               "RTMIN+31", "RTMAX-31", "RTMIN-1", "RTMAX+1", "RTMIN+x", "9x", " 9",
                               "\u0663", "\u00b2", "KILL "])
def test_parse_signal_invalid(s):
    with pytest.raises(UsageError):
        parse_signal(s)


# ============================================================================ run_cli
def test_no_args_prints_usage(capsys):
    assert run_cli([]) == 0
    out = capsys.readouterr().out
    assert "USAGE:" in out and "COMMANDS:" in out and "create" in out


def test_help_flag(capsys):
    assert run_cli(["--help"]) == 0
    assert "USAGE:" in capsys.readouterr().out


def test_version(capsys):
    assert run_cli(["--version"]) == 0
    out = capsys.readouterr().out
    assert "spec: 1.3.0" in out.splitlines()
    assert out.startswith("ocirun version ")


def test_unknown_command(capsys):
    assert run_cli(["bogus"]) == 3
    err = capsys.readouterr().err
    assert err == "ocirun: No help topic for 'bogus'\n"


def test_unknown_global_flag(capsys):
    assert run_cli(["--bogus", "list"]) == 1
    assert "flag provided but not defined: -bogus" in capsys.readouterr().err


def test_state_without_id(capsys, tmp_path):
    assert run_cli(["--root", str(tmp_path), "state"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ocirun: ") and err.count("\n") == 1


_BAD_IDS = ["a/b", "..", ".", "", "x" * (1 << 20), "caf\u00e9", "a\nb", "a b", "../../etc", "a\udcffb"]


@pytest.mark.parametrize("cid", _BAD_IDS, ids=["slash", "dotdot", "dot", "empty", "1MB", "non-ascii", "newline",
                                               "space", "traversal", "surrogate"])
def test_state_invalid_id(capsys, tmp_path, cid):
    before = sorted(os.listdir(tmp_path))
    assert run_cli(["--root", str(tmp_path), "state", cid]) == 1
    cap = capsys.readouterr()
    assert cap.out == ""
    assert cap.err.startswith("ocirun: ") and cap.err.count("\n") == 1, cap.err[:300]
    assert "invalid container id" in cap.err
    assert len(cap.err) < 400
    assert sorted(os.listdir(tmp_path)) == before


def test_state_missing_container(capsys, tmp_path):
    assert run_cli(["--root", str(tmp_path), "state", "nope"]) == 1
    assert capsys.readouterr().err == "ocirun: container does not exist: nope\n"


def test_list_empty_root(capsys, tmp_path):
    assert run_cli(["--root", str(tmp_path), "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert lines[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]


@pytest.mark.parametrize("where", ["before", "after"])
def test_list_with_a_missing_root_given_fails(capsys, tmp_path, where):
    """runc (main): a --root that was given must exist (a missing default root is an empty list)."""
    root = ["--root", str(tmp_path / "none")]
    assert run_cli(root + ["list"] if where == "before" else ["list"] + root) == 1
    cap = capsys.readouterr()
    assert cap.out == ""
    assert cap.err == f"ocirun: --root {tmp_path / 'none'}: No such file or directory\n"
    assert not (tmp_path / "none").exists()
    (tmp_path / "file").write_text("")
    assert run_cli(["--root", str(tmp_path / "file"), "list"]) == 1
    assert "not a directory" in capsys.readouterr().err


def test_list_json_empty_is_null(capsys, tmp_path):
    assert run_cli(["--root", str(tmp_path), "list", "--format", "json"]) == 0
    assert capsys.readouterr().out == "null\n"
    assert run_cli(["--root", str(tmp_path), "ls", "-f=json"]) == 0
    assert capsys.readouterr().out == "null\n"


def test_list_quiet_and_bad_format(capsys, tmp_path):
    assert run_cli(["--root", str(tmp_path), "list", "-q"]) == 0
    assert capsys.readouterr().out == ""
    assert run_cli(["--root", str(tmp_path), "list", "--format", "yaml"]) == 1
    assert "yaml" in capsys.readouterr().err


def test_spec_writes_valid_config_and_refuses_to_overwrite(capsys, tmp_path):
    assert run_cli(["spec", "--bundle", str(tmp_path)]) == 0
    path = tmp_path / "config.json"
    doc = json.loads(path.read_text())
    V.validate_config(doc)
    assert doc["ociVersion"] == "1.3.0"
    before = path.read_bytes()
    capsys.readouterr()
    assert run_cli(["spec", "-b", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "exists" in err and err.count("\n") == 1
    assert path.read_bytes() == before


def test_spec_rootless(tmp_path):
    assert run_cli(["spec", "--rootless", "--bundle", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "config.json").read_text())
    V.validate_config(doc)
    assert {"type": "user"} in doc["linux"]["namespaces"]


def test_spec_does_not_follow_a_dangling_symlink(capsys, tmp_path):
    target = tmp_path / "elsewhere.json"
    os.symlink(target, tmp_path / "config.json")
    assert run_cli(["spec", "--bundle", str(tmp_path)]) == 1
    assert not target.exists()


def test_features(capsys):
    assert run_cli(["features"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ociVersionMax"] == "1.3.0"
    assert doc["ociVersionMin"].startswith("1.")
    V.validate_features(doc)
    assert "rbind" in doc["mountOptions"] and "rro" in doc["mountOptions"]


def test_command_help(capsys):
    assert run_cli(["kill", "--help"]) == 0
    out = capsys.readouterr().out
    assert "ocirun kill" in out and "--all" in out
    assert run_cli(["help", "state"]) == 0
    assert "ocirun state" in capsys.readouterr().out


def test_kill_bad_signal_is_usage_error(capsys, tmp_path):
    assert run_cli(["--root", str(tmp_path), "kill", "x", "NOPE"]) == 1
    assert capsys.readouterr().err.startswith("ocirun: ")


def test_invalid_log_format(capsys):
    assert run_cli(["--log-format", "xml", "list"]) == 1
    assert "xml" in capsys.readouterr().err


# ============================================================================ flags after positional arguments
def test_verb_flags_may_follow_positional_arguments():
    """runc's urfave/cli: `runc update ID --memory 1m` (runc's own update.bats calls it so)."""
    fl, rest = parse_flags(["ID", "--root", "/x", "-d", "more"], SPEC, interleave=True)
    assert fl.root == "/x" and fl.debug is True and rest == ["ID", "more"]


def test_stop_after_n_positionals_keeps_the_commands_flags():
    """exec/kill/ps (StopOnNthArg 1): after the container id everything is the command's."""
    fl, rest = parse_flags(["-d", "ID", "sh", "-c", "--root"], SPEC, interleave=True, stop_after=1)
    assert fl.debug is True and fl.root is None and rest == ["ID", "sh", "-c", "--root"]
    fl, rest = parse_flags(["ID", "--", "-x"], SPEC, interleave=True, stop_after=1)
    assert rest == ["ID", "-x"]


def test_interleaved_dash_non_letter_ends_flags_and_double_dash_is_dropped():
    fl, rest = parse_flags(["ID", "-1", "--root", "x"], SPEC, interleave=True)
    assert fl.root is None and rest == ["ID", "-1", "--root", "x"]
    fl, rest = parse_flags(["ID", "--", "--root", "x"], SPEC, interleave=True)
    assert fl.root is None and rest == ["ID", "--root", "x"]


def test_global_flags_stop_at_the_verb():
    fl, rest = parse_flags(["--debug", "update", "ID", "--root", "x"], SPEC)
    assert fl.root is None and rest == ["update", "ID", "--root", "x"]


def test_update_flags_after_the_id_reach_update(capsys, tmp_path):
    """Before: 'requires exactly 1 argument(s)'; now the container lookup is what fails."""
    assert run_cli(["--root", str(tmp_path), "update", "nope", "--memory", "1m"]) == 1
    assert capsys.readouterr().err == "ocirun: container does not exist: nope\n"
    assert run_cli(["--root", str(tmp_path), "update", "nope", "--bogus", "1"]) == 1
    assert "flag provided but not defined: -bogus" in capsys.readouterr().err


def test_global_flags_after_the_verb(capsys, tmp_path):
    """runc main's global flags are persistent: `runc state ID --root R` is `runc --root R state ID`."""
    assert run_cli(["state", "nope", "--root", str(tmp_path)]) == 1
    assert capsys.readouterr().err == "ocirun: container does not exist: nope\n"
    assert run_cli(["list", "--root", str(tmp_path), "-q"]) == 0
    assert run_cli(["list", "--log-format", "xml"]) == 1
    assert "xml" in capsys.readouterr().err


def test_exec_command_flags_are_not_ocirun_flags(capsys, tmp_path):
    """exec ID sh -c ... -t: the -c and -t are the command's, not --cap/--tty (the lookup fails first: 255)."""
    assert run_cli(["--root", str(tmp_path), "exec", "nope", "sh", "-c", "true", "-t"]) == 255
    assert capsys.readouterr().err == "ocirun: container does not exist: nope\n"


@pytest.mark.parametrize("argv,code", [
    (["exec"], 1),                                     # usage: runc's checkArgs, exit 1
    (["exec", "nope", "true"], 255),                   # runtime failure: runc's fatalWithCode(..., 255)
    (["exec", "--cgroup", ":x", "nope", "true"], 255),
    (["exec", "--cgroup", "a", "--cgroup", "b", "nope", "true"], 255),
])
def test_exec_exit_codes(capsys, tmp_path, argv, code):
    assert run_cli(["--root", str(tmp_path)] + argv) == code
    err = capsys.readouterr().err
    assert err.startswith("ocirun: ") and err.count("\n") == 1


@pytest.mark.parametrize("args,want", [
    ([], None),
    (["/"], {"": "/"}),
    (["sub"], {"": "sub"}),
    (["memory:submem", "cpu,cpuacct:subcpu"], {"memory": "submem", "cpu": "subcpu", "cpuacct": "subcpu"}),
    (["name=systemd:x"], {"name=systemd": "x"}),
])
def test_exec_parse_sub_cgroups(args, want):
    from ocirun.execproc import parse_sub_cgroups

    assert parse_sub_cgroups(args) == want


@pytest.mark.parametrize("args,msg", [
    ([":x"], "empty <controller> prefix"), (["cpu,:x"], "empty <controller> prefix"),
    (["cpu:a", "cpu:b"], "controller cpu specified multiple times"),
    (["a", "b"], "missing <controller>: prefix"), (["cpu:a", "b"], "missing <controller>: prefix"),
])
def test_exec_parse_sub_cgroups_invalid(args, msg):
    from ocirun.errors import OciError
    from ocirun.execproc import parse_sub_cgroups

    with pytest.raises(OciError) as ei:
        parse_sub_cgroups(args)
    assert msg in str(ei.value)
