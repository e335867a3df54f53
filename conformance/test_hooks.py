"""config.md#configHooks: POSIX-platform hooks (order, timing, namespaces, state on stdin, args/env, timeout)."""
import json
import os
import shutil
import time

import pytest

from conformance import host

HOST_HOOKS = ("prestart", "createRuntime", "poststart", "poststop")
ALL_HOOKS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


def hook(name, log, statedir):
    """A hook that appends '<name> <mnt-ns>' to `log` and saves its stdin to statedir/<name>.json."""
    script = (f'echo "{name} $(readlink /proc/self/ns/mnt)" >> {log}; cat > {statedir}/{name}.json')
    return {"path": "/bin/sh", "args": ["sh", "-c", script]}


def hooked_bundle(oci, args, per_type=2, only=ALL_HOOKS):
    b = oci.bundle(args)
    host_log = os.path.join(b.rootfs, "hooks.log")   # same file as /hooks.log inside the container
    hooks = {}
    for t in only:
        entries = []
        for i in range(1, per_type + 1):
            if t == "startContainer":  # runs after pivot_root: container paths
                entries.append(hook(f"{t}{i}", "/hooks.log", "/"))
            else:
                entries.append(hook(f"{t}{i}", host_log, b.path))
        hooks[t] = entries
    b.config["hooks"] = hooks
    b.save()
    return b, host_log


def read_log(path):
    try:
        with open(path) as f:
            return [line.split()[0] for line in f if line.strip()]
    except FileNotFoundError:
        return []


def read_log_ns(path):
    with open(path) as f:
        return {line.split()[0]: line.split()[1] for line in f if len(line.split()) >= 2}


def hook_state(b, name):
    p = os.path.join(b.rootfs if name.startswith("startContainer") else b.path, f"{name}.json")
    with open(p) as f:
        return json.loads(f.read())


@pytest.fixture
def lifecycle(oci):
    """Runs a container with 2 hooks of every kind through create / start / delete and records the hook log
    after each operation."""
    prog = ["/bin/sh", "-c", "echo program >> /hooks.log"]
    b, log = hooked_bundle(oci, prog)
    snaps = {}
    c = oci.create(b)
    snaps["create"] = read_log(log)
    snaps["container_pid"] = c.state()["pid"]
    try:
        snaps["container_mnt"] = host.ns_link(snaps["container_pid"], "mnt")
    except AssertionError as e:  # rootless: fails only the tests that look at it (test_container_namespace_hooks)
        snaps["container_mnt"] = e
    r = oci.rt.start(c.id)
    assert r.ok, f"start failed:\n{r}"
    snaps["start"] = read_log(log)
    c.wait_stopped()
    r = oci.rt.delete(c.id)
    assert r.ok, f"delete failed:\n{r}"
    snaps["delete"] = read_log(log)
    return b, c, log, snaps


def test_hooks_called_in_listed_order(lifecycle):
    """Hooks MUST be called in the listed order.

    [MUST] config.md#configHooks
    """
    _, _, _, s = lifecycle
    full = [x for x in s["delete"] if x != "program"]
    for t in ALL_HOOKS:
        got = [x for x in full if x.startswith(t)]
        assert got == [f"{t}1", f"{t}2"], f"{t}: {got} (log {full})"


def test_prestart_before_create_runtime(lifecycle):
    """The prestart hooks MUST be called before the createRuntime hooks; createContainer after createRuntime.

    [MUST] config.md#configHooksPrestart
    """
    _, _, _, s = lifecycle
    assert s["create"] == ["prestart1", "prestart2", "createRuntime1", "createRuntime2",
                           "createContainer1", "createContainer2"], s["create"]


def test_create_container_after_create_runtime(lifecycle):
    """The createContainer hooks MUST be called after the createRuntime hooks.

    [MUST] config.md#configHooksCreateContainer
    """
    _, _, _, s = lifecycle
    log = s["create"]
    assert "createContainer1" in log and "createRuntime2" in log, log
    assert log.index("createContainer1") > log.index("createRuntime2"), log


def test_create_hooks_called_during_create(lifecycle):
    """The prestart / createRuntime / createContainer hooks MUST be called as part of the create operation.

    [MUST] config.md#configHooksCreateRuntime
    """
    _, _, _, s = lifecycle
    for name in ("prestart1", "createRuntime1", "createContainer1"):
        assert name in s["create"], f"{name} not run by create: {s['create']}"
    assert not [x for x in s["create"] if x.startswith(("startContainer", "poststart", "poststop"))], s["create"]


def test_start_container_hooks_before_user_program(lifecycle):
    """The startContainer hooks MUST be called before the user-specified process is executed as part of the
    start operation.

    [MUST] config.md#configHooksStartContainer
    """
    _, _, _, s = lifecycle
    log = s["delete"]
    assert "startContainer2" in log and "program" in log, log
    assert log.index("startContainer2") < log.index("program"), log
    assert "startContainer1" not in s["create"], "startContainer hook ran during create"


def test_poststart_hooks_before_start_returns(lifecycle):
    """The poststart hooks MUST be called after the user-specified process is executed but before the start
    operation returns.

    [MUST] config.md#configHooksPoststart
    """
    _, _, _, s = lifecycle
    assert "poststart1" in s["start"] and "poststart2" in s["start"], f"after start returned: {s['start']}"
    assert s["start"].index("poststart1") > s["start"].index("startContainer2"), s["start"]


def test_poststop_hooks_after_delete_before_return(lifecycle):
    """The poststop hooks MUST be called after the container is deleted but before the delete operation
    returns.

    [MUST] config.md#configHooksPoststop
    """
    _, _, _, s = lifecycle
    assert not [x for x in s["start"] if x.startswith("poststop")], s["start"]
    assert s["delete"][-2:] == ["poststop1", "poststop2"], s["delete"]


@pytest.mark.parametrize("name", ["prestart1", "createRuntime1", "poststart1", "poststop1"])
def test_runtime_namespace_hooks(lifecycle, name):
    """The prestart / createRuntime / poststart / poststop hooks MUST be executed in the runtime namespace.

    [MUST] config.md#configHooks
    """
    b, _, log, _ = lifecycle
    assert read_log_ns(log)[name] == host.self_ns("mnt"), f"{name} did not run in the runtime mount namespace"


@pytest.mark.parametrize("name", ["createContainer1", "startContainer1"])
def test_container_namespace_hooks(lifecycle, name):
    """The createContainer / startContainer hooks MUST be executed in the container namespace.

    [MUST] config.md#configHooks
    """
    b, _, log, s = lifecycle
    if isinstance(s["container_mnt"], AssertionError):
        raise s["container_mnt"]
    assert read_log_ns(log)[name] == s["container_mnt"], f"{name} did not run in the container mount namespace"


@pytest.mark.parametrize("name", ["prestart1", "createRuntime1", "createContainer1", "startContainer1",
                                  "poststart1", "poststop1"])
def test_hooks_receive_state_on_stdin(lifecycle, name):
    """The state of the container MUST be passed to hooks over stdin.

    [MUST] config.md#configHooks
    """
    b, c, _, _ = lifecycle
    st = hook_state(b, name)
    assert st.get("id") == c.id, st
    assert os.path.realpath(st.get("bundle", "")) == os.path.realpath(b.path), st
    assert isinstance(st.get("ociVersion"), str) and st.get("status") in (
        "creating", "created", "running", "stopped"), st
    if st["status"] in ("created", "running"):  # pid is REQUIRED then (runtime.md#runtimeState)
        assert isinstance(st.get("pid"), int) and st["pid"] > 0, st
    if name.startswith("poststart"):
        assert st["status"] == "running", st
    if name.startswith("poststop"):
        assert st["status"] == "stopped", st


def test_start_container_path_resolves_in_container(oci):
    """The startContainer hooks' path MUST resolve in the container namespace.

    [MUST] config.md#configHooksStartContainer
    """
    b = oci.bundle(["/bin/true"])
    shutil.copy2(os.path.join(b.rootfs, "bin", "busybox"), os.path.join(b.rootfs, "only-in-container"))
    b.config["hooks"] = {"startContainer": [{"path": "/only-in-container",
                                             "args": ["sh", "-c", "echo ran > /sc-ran"]}]}
    b.save()
    assert not os.path.exists("/only-in-container")
    c = oci.run(b)
    c.wait_stopped()
    assert os.path.exists(os.path.join(b.rootfs, "sc-ran"))


def test_create_container_path_resolves_in_runtime_namespace(oci):
    """The createContainer hooks' path MUST resolve in the runtime namespace.

    [MUST] config.md#configHooksCreateContainer
    """
    b = oci.bundle(["/bin/true"])
    script = os.path.join(b.path, "cc-hook.sh")   # exists on the host only
    marker = os.path.join(b.path, "cc-ran")
    with open(script, "w") as f:
        f.write(f"#!/bin/sh\ntouch {marker}\n")
    os.chmod(script, 0o755)
    b.config["hooks"] = {"createContainer": [{"path": script}]}
    b.save()
    c = oci.create(b)
    assert os.path.exists(marker)


def test_hook_args_and_env(oci):
    """Hook args and env have the same semantics as IEEE Std 1003.1-2008 execv's argv and environ.

    [MUST] config.md#configHooks
    """
    b = oci.bundle(["/bin/true"])
    out = os.path.join(b.path, "hookenv")
    b.config["hooks"] = {"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", f'echo "$0|$1|$FOO|$BAR" > {out}', "zero", "one"],
                                       "env": ["FOO=foo value", "BAR=bar"]}]}
    b.save()
    oci.create(b)
    with open(out) as f:
        assert f.read().strip() == "zero|one|foo value|bar"


def test_hook_timeout_aborts_hook(oci):
    """timeout is the number of seconds before aborting the hook; an aborted hook fails, and the runtime MUST
    generate an error.

    [MUST] config.md#configHooks
    """
    c = oci.create(edit=lambda c: c.update(hooks={"createRuntime": [
        {"path": "/bin/sh", "args": ["sh", "-c", "sleep 20"], "timeout": 1}]}), expect_ok=False)
    assert not c.create_result.ok, "create succeeded though its hook timed out"
    assert c.create_result.elapsed < 15, f"hook not aborted after its timeout ({c.create_result.elapsed:.1f}s)"


def test_hook_timeout_zero_rejected(oci):
    """If set, timeout MUST be greater than zero.

    [MUST] config.md#configHooks
    """
    c = oci.create(edit=lambda c: c.update(hooks={"prestart": [
        {"path": "/bin/true", "timeout": 0}]}), expect_ok=False)
    assert not c.create_result.ok


def test_hook_path_must_be_absolute(oci):
    """path (string, REQUIRED): This specification extends the IEEE standard in that path MUST be absolute.

    [MUST] config.md#configHooks
    """
    c = oci.create(edit=lambda c: c.update(hooks={"prestart": [{"path": "bin/true"}]}), expect_ok=False)
    assert not c.create_result.ok
