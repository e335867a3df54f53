"""Which environment a hook gets (runc's rules, found by the differential runs against runc)."""
import json
from ocirun import hooks
from ocirun.config import Hook


def run(tmp_path, env, **kw):
    out = tmp_path / "env.out"
    script = tmp_path / "hook.sh"
    script.write_text(f"#!/bin/sh\nenv > {out}\ncat > {out}.state\n")
    script.chmod(0o755)
    hooks.run_hooks("x", [Hook(path=str(script), args=None, env=env, timeout=None)], {"id": "c", "status": "created"},
                    **kw)
    got = {ln.partition("=")[0]: ln.partition("=")[2] for ln in out.read_text().splitlines() if "=" in ln}
    got.pop("PWD", None)  # the shell's own
    got.pop("SHLVL", None)
    got.pop("_", None)
    return got, json.loads((tmp_path / "env.out.state").read_text())


def test_given_env_exactly_without_entries_lacking_equals(tmp_path):
    got, state = run(tmp_path, ["A=1", "NOEQ", "=x", "B="])
    assert got == {"A": "1", "B": ""}
    assert state == {"id": "c", "status": "created"}


def test_empty_env_is_empty_unless_start_container(tmp_path):
    assert run(tmp_path, [])[0] == {}
    assert run(tmp_path, [], default_env=["C=3"])[0] == {}  # createContainer: [] is empty, as runc
    assert run(tmp_path, [], default_env=["C=3"], empty_is_default=True)[0] == {"C": "3"}  # startContainer


def test_absent_env_is_the_runtimes_own_environment(tmp_path, monkeypatch):
    with open("/proc/self/environ", "rb") as f:
        initial = {e.partition(b"=")[0].decode() for e in f.read().split(b"\0") if b"=" in e}
    monkeypatch.setenv("OCIRUN_TEST_ONLY_IN_OS_ENVIRON", "1")  # os.environ, not the process's start environment
    got, _ = run(tmp_path, None)
    assert "OCIRUN_TEST_ONLY_IN_OS_ENVIRON" not in got
    assert set(got) <= initial | {"PWD", "SHLVL", "_"} and set(got) >= initial - {"PWD", "SHLVL", "_"}
    assert run(tmp_path, None, default_env=["D=4"])[0] == {"D": "4"}


def test_cwd(tmp_path):
    out = tmp_path / "cwd.out"
    script = tmp_path / "hook.sh"
    script.write_text(f"#!/bin/sh\npwd > {out}\n")
    script.chmod(0o755)
    hooks.run_hooks("x", [Hook(path=str(script), args=None, env=["A=1"], timeout=None)], {}, cwd=str(tmp_path))
    assert out.read_text().strip() == str(tmp_path)
