"""runtime.md: state, lifecycle, operations and their errors."""
import json
import os
import re
import signal
import time

import pytest

from conformance import host
from conformance import rootless
from conformance.conftest import cgroups_of, CGROUP_PREFIX

SEMVER = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
STATUSES = {"creating", "created", "running", "stopped"}


def sleeper(seconds=300):
    return ["/bin/sh", "-c", f"trap 'exit 0' TERM; sleep {seconds} & wait"]


def check_state_shape(st, cid, bundle):
    assert isinstance(st, dict), st
    assert isinstance(st.get("ociVersion"), str) and SEMVER.match(st["ociVersion"]), f"ociVersion: {st}"
    assert st.get("id") == cid, f"id: {st}"
    assert st.get("status") in STATUSES, f"status: {st}"
    assert isinstance(st.get("bundle"), str) and os.path.isabs(st["bundle"]), f"bundle: {st}"
    assert os.path.realpath(st["bundle"]) == os.path.realpath(bundle), f"bundle: {st} vs {bundle}"
    if st["status"] in ("created", "running"):
        assert isinstance(st.get("pid"), int) and st["pid"] > 0, f"pid: {st}"
    if "annotations" in st and st["annotations"] is not None:
        assert isinstance(st["annotations"], dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in st["annotations"].items()), st


def cgroup_dirs(cgpath):
    """The directories cgroupsPath `cgpath` names in every mounted hierarchy (v1 controllers, v2) that exist."""
    roots = set(host.cgroup_v1_controllers().values())
    if host.cgroup_v2_mount():
        roots.add(host.cgroup_v2_mount())
    return sorted(p for p in (os.path.join(r, cgpath.lstrip("/")) for r in roots) if os.path.isdir(p))


def with_cgroup(oci, suffix, edit=None):
    """(cgroupsPath, edit): the container's cgroups at a path this test names, so that it can look for them.
    Rootless without a writable cgroup hierarchy there are none to look for, and no cgroupsPath is set: a rootless
    runtime refuses one it cannot create (runc 1.2+, ocirun; runc 1.1 ignores it), which would end the test
    before what it is about."""
    cgpath = f"/{CGROUP_PREFIX}-{oci.tag}-{suffix}"

    def ed(cfg):
        if rootless.cgroups_placeable():
            cfg["linux"]["cgroupsPath"] = cgpath
        if edit:
            edit(cfg)
    return cgpath, ed


def proc_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ------------------------------------------------------------------------------------------------ state
def test_state_json_adheres_to_state_schema(oci):
    """When serialized in JSON, the format MUST adhere to the JSON Schema schema/state-schema.json
    (ociVersion, id, status, pid when created/running, absolute bundle, string annotations).

    [MUST] runtime.md#runtimeState
    """
    c = oci.create(args=sleeper(), edit=lambda c: c.update(annotations={"org.example.k": "v"}))
    check_state_shape(c.state(), c.id, c.bundle.path)
    assert oci.rt.start(c.id).ok
    check_state_shape(c.state(), c.id, c.bundle.path)
    assert oci.rt.kill(c.id, "KILL").ok
    check_state_shape(c.wait_stopped(), c.id, c.bundle.path)


def test_state_status_created_after_create(oci):
    """`created`: the runtime has finished the create operation, and the container process has neither exited
    nor executed the user-specified program.

    [MUST] runtime.md#runtimeState
    """
    c = oci.create()
    st = c.state()
    assert st and st["status"] == "created", st


def test_state_status_running_after_start(oci):
    """`running`: the container process has executed the user-specified program but has not exited.

    [MUST] runtime.md#runtimeState
    """
    c = oci.run(args=sleeper())
    st = c.state()
    assert st and st["status"] == "running", st


def test_state_status_stopped_after_exit(oci):
    """`stopped`: the container process has exited.

    [MUST] runtime.md#runtimeState
    """
    c = oci.run()
    c.probe_output()
    st = c.wait_stopped()
    assert st and st["status"] == "stopped", st


def test_state_pid_is_the_container_process(oci):
    """`pid` (int, REQUIRED when status is created or running on Linux) is the ID of the container process,
    as seen by the runtime.

    [MUST] runtime.md#runtimeState
    """
    c = oci.create(args=sleeper())
    pid = c.state()["pid"]
    assert proc_alive(pid), f"state pid {pid} is not a live process"
    # the process is in the container's (new) uts namespace: it is the container process, not a runtime helper
    assert host.ns_link(pid, "uts") != host.self_ns("uts"), "state pid is not in the container's uts ns"
    assert oci.rt.start(c.id).ok
    assert c.state()["pid"] == pid, "pid changed between created and running"
    deadline = time.monotonic() + 5
    while b"sleep" not in open(f"/proc/{pid}/cmdline", "rb").read() and b"sh" not in open(
            f"/proc/{pid}/cmdline", "rb").read():
        assert time.monotonic() < deadline, "state pid never became the user program"
        time.sleep(0.05)


def test_state_annotations_are_the_configs(oci):
    """`annotations` (map, OPTIONAL) contains the list of annotations associated with the container.

    [MUST] runtime.md#runtimeState
    """
    ann = {"org.example.one": "1", "org.example.two": "two"}
    c = oci.create(edit=lambda c: c.update(annotations=ann))
    assert c.state().get("annotations") == ann


def test_state_id_unique_on_host(oci):
    """`id` ... This MUST be unique across all containers on this host.

    [MUST] runtime.md#runtimeState
    """
    c = oci.create(args=sleeper())
    b2 = oci.bundle(sleeper())
    r = oci.rt.create(c.id, b2.path)
    assert not r.ok, f"a second container with the same id was created:\n{r}"
    assert c.state()["bundle"] and os.path.realpath(c.state()["bundle"]) == os.path.realpath(c.bundle.path)


# ------------------------------------------------------------------------------------------------ lifecycle
def test_create_does_not_run_user_program(oci):
    """While the resources requested in the config.json MUST be created, the user-specified program (from
    process) MUST NOT be run at this time.

    [MUST] runtime.md#runtimeLifecycle
    """
    c = oci.create(args=["/probe", "--touch", "/ran"])
    time.sleep(0.5)
    assert not os.path.exists(os.path.join(c.bundle.rootfs, "ran")), "user program ran during create"
    assert c.output() == "", f"user program printed during create: {c.output()!r}"
    assert c.state()["status"] == "created"


def test_create_applies_config_except_process(oci):
    """All of the properties configured in config.json except for process MUST be applied (by create).

    [MUST] runtime.md#runtimeCreate
    """
    c = oci.create(edit=lambda c: c.update(hostname="created-host"))
    pid = c.state()["pid"]
    listed = {n["type"] for n in c.bundle.config["linux"]["namespaces"]}
    for ns in ("uts", "ipc", "net", "mnt", "pid"):
        if rootless.active() and {"net": "network", "mnt": "mount"}.get(ns, ns) not in listed:
            continue  # a rootless config has no network namespace (as `runc spec --rootless` makes it)
        assert host.ns_link(pid, ns) != host.self_ns(ns) or ns == "pid", f"{ns} ns not created"
    # rootless: the uts namespace belongs to the container's user namespace; its owner enters that one first
    enter_user = ["-U", "--preserve-credentials"] if rootless.active() else []
    r = host.run("nsenter", "-t", str(pid), *enter_user, "-u", "hostname", check=False)
    assert r.stdout.strip() == "created-host", f"hostname not applied at create: {r.stdout!r} {r.stderr!r}"
    mounts = {m["mountpoint"]: m for m in host.mountinfo(f"/proc/{pid}/mountinfo")}
    assert mounts.get("/proc", {}).get("fstype") == "proc", "mounts not applied at create"


def test_start_runs_user_program(oci):
    """This operation MUST run the user-specified program as specified by process.

    [MUST] runtime.md#runtimeStart
    """
    c = oci.create(args=["/probe", "--touch", "/ran"])
    assert oci.rt.start(c.id).ok
    data = c.probe_output()
    assert data["argv"] == ["/probe", "--touch", "/ran"]
    assert data["touch"]["/ran"] == "ok"


def test_config_changes_after_create_have_no_effect(oci):
    """Any updates to config.json after this step (create) MUST NOT affect the container.

    [MUST] runtime.md#runtimeLifecycle
    """
    c = oci.create(args=["/probe", "--path", "/original"])
    c.bundle.config["process"]["args"] = ["/probe", "--path", "/changed"]
    c.bundle.config["process"]["env"].append("CHANGED=1")
    c.bundle.config["hostname"] = "changed"
    c.bundle.save()
    assert oci.rt.start(c.id).ok
    data = c.probe_output()
    assert data["argv"] == ["/probe", "--path", "/original"]
    assert "CHANGED=1" not in data["env"]
    assert data["hostname"] == "conformance"


@pytest.mark.parametrize("failing", ["prestart", "createRuntime", "createContainer"])
def test_create_hook_failure_generates_error_and_stops_container(oci, failing):
    """If any prestart / createRuntime / createContainer hook fails, the runtime MUST generate an error, stop
    the container, and continue the lifecycle at step 12 (destroy; poststop hooks).

    [MUST] runtime.md#runtimeLifecycle
    """
    def edit(cfg):
        cfg["hooks"] = {failing: [{"path": "/bin/sh", "args": ["sh", "-c", "exit 7"]}]}

    cgpath, edit = with_cgroup(oci, "hookfail", edit)
    b = oci.bundle(["/probe", "--touch", "/ran"], edit)
    c = oci.create(b, expect_ok=False)
    assert not c.create_result.ok, f"create succeeded though a {failing} hook failed:\n{c.create_result}"
    st = c.state()
    assert st is None or st["status"] == "stopped", f"container not stopped after {failing} hook failure: {st}"
    assert not os.path.exists(os.path.join(b.rootfs, "ran")), "user program ran"
    # step 12, destroy: what create made is undone, its cgroups included
    left = cgroup_dirs(cgpath)
    assert not left, f"cgroups left after the {failing} hook failed: {left}"


@pytest.mark.parametrize("failing", ["prestart", "createRuntime", "createContainer"])
def test_create_hook_failure_continues_at_destroy_and_poststop(oci, failing):
    """If any prestart / createRuntime / createContainer hook fails, the runtime MUST ... continue the
    lifecycle at step 12; step 13: the poststop hooks MUST be invoked by the runtime.

    [MUST] runtime.md#runtimeLifecycle
    """
    cgpath, edit = with_cgroup(oci, "hookfail")
    b = oci.bundle(["/probe"], edit)
    marker = os.path.join(b.path, "poststop-ran")
    b.config["hooks"] = {failing: [{"path": "/bin/sh", "args": ["sh", "-c", "exit 7"]}],
                         "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", f"touch {marker}"]}]}
    b.save()
    c = oci.create(b, expect_ok=False)
    assert not c.create_result.ok
    assert os.path.exists(marker), "lifecycle did not continue at step 12/13: poststop hooks were not run"
    left = cgroup_dirs(cgpath)
    assert not left, f"cgroups left after the {failing} hook failed: {left}"


def test_start_container_hook_failure_generates_error(oci):
    """If any startContainer hook fails, the runtime MUST generate an error, stop the container, and continue
    the lifecycle at step 12.

    [MUST] runtime.md#runtimeLifecycle
    """
    cgpath, edit = with_cgroup(oci, "hookfail", lambda c: c.update(
        hooks={"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}]}))
    c = oci.create(args=["/probe", "--touch", "/ran"], edit=edit)
    if rootless.cgroups_placeable():  # rootless without a writable hierarchy the runtime creates no cgroup
        assert cgroup_dirs(cgpath), f"the created container has no cgroup at {cgpath}"
    r = oci.rt.start(c.id)
    assert not r.ok, f"start succeeded though the startContainer hook failed:\n{r}"
    time.sleep(0.3)
    assert not os.path.exists(os.path.join(c.bundle.rootfs, "ran")), "user program ran"
    st = c.state()
    assert st is None or st["status"] == "stopped", f"container not stopped: {st}"
    check_destroyed(oci, c, cgpath, "the startContainer hook failed")


def test_poststart_hook_failure_generates_error_and_stops(oci):
    """If any poststart hook fails, the runtime MUST generate an error, stop the container, and continue the
    lifecycle at step 12.

    [MUST] runtime.md#runtimeLifecycle
    """
    cgpath, edit = with_cgroup(oci, "hookfail", lambda c: c.update(
        hooks={"poststart": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 4"]}]}))
    c = oci.create(args=sleeper(), edit=edit)
    if rootless.cgroups_placeable():  # rootless without a writable hierarchy the runtime creates no cgroup
        assert cgroup_dirs(cgpath), f"the created container has no cgroup at {cgpath}"
    r = oci.rt.start(c.id)
    assert not r.ok, f"start succeeded though the poststart hook failed:\n{r}"
    deadline = time.monotonic() + 5
    while True:
        st = c.state()
        if st is None or st["status"] == "stopped":
            break
        assert time.monotonic() < deadline, f"container not stopped after poststart failure: {st}"
        time.sleep(0.05)
    check_destroyed(oci, c, cgpath, "the poststart hook failed")


def check_destroyed(oci, c, cgpath, why):
    """After a failed start: step 12 (destroy) undoes what create made. A runtime that keeps the stopped
    container's record until `delete` (runc does) may keep its cgroups until then; either way, no process may
    be left in them, and once the container is gone (by itself or by `delete`) its cgroups are gone too."""
    for d in cgroup_dirs(cgpath):
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                procs = f.read().split()
        except FileNotFoundError:
            continue
        assert not procs, f"processes {procs} still in {d} after {why}"
    if c.state() is not None:
        r = oci.rt.delete(c.id)
        assert r.ok, f"delete of the stopped container failed:\n{r}"
    left = cgroup_dirs(cgpath)
    assert not left, f"cgroups left after {why}: {left}"


def test_poststop_hook_failure_is_only_a_warning(oci):
    """If any poststop hook fails, the runtime MUST log a warning, but the remaining hooks and lifecycle
    continue as if the hook had succeeded.

    [MUST] runtime.md#runtimeLifecycle
    """
    b = oci.bundle(["/probe"])
    second = os.path.join(b.path, "second-ran")
    b.config["hooks"] = {"poststop": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 5"]},
                                      {"path": "/bin/sh", "args": ["sh", "-c", f"touch {second}"]}]}
    b.save()
    c = oci.run(b)
    c.probe_output()
    c.wait_stopped()
    r = oci.rt.delete(c.id)
    assert r.ok, f"delete failed because of a failing poststop hook:\n{r}"
    assert os.path.exists(second), "the poststop hook after the failing one did not run"
    assert c.state() is None, "container still exists after delete"


# ------------------------------------------------------------------------------------------------ errors
def test_error_leaves_environment_unchanged(oci):
    """Unless otherwise stated, generating an error MUST leave the state of the environment as if the operation
    were never attempted (no container, no cgroup, no mount left; the id stays free).

    [MUST] runtime.md#runtimeErrors
    """
    cgpath = f"/{CGROUP_PREFIX}/{oci.tag}-err"
    mounts_before = {m["id"] for m in host.mountinfo()}

    def edit(cfg):
        if rootless.cgroups_placeable():  # (rootless: see with_cgroup)
            cfg["linux"]["cgroupsPath"] = cgpath
        cfg["mounts"].append({"destination": "/bad", "type": "no-such-fs-type", "source": "none"})

    c = oci.create(edit=edit, expect_ok=False)
    assert not c.create_result.ok, "create with an unmountable filesystem type succeeded"
    assert c.state() is None, f"a container was left behind: {c.state()}"
    leftovers = [os.path.join(m, cgpath.lstrip("/")) for m in host.cgroup_v1_controllers().values()]
    if host.cgroup_v2_mount():
        leftovers.append(os.path.join(host.cgroup_v2_mount(), cgpath.lstrip("/")))
    assert not [p for p in leftovers if os.path.exists(p)], "cgroups left behind"
    new_mounts = [m for m in host.mountinfo() if m["id"] not in mounts_before]
    assert not new_mounts, f"mounts left behind: {new_mounts}"
    b2 = oci.bundle()
    r = oci.rt.create(c.id, b2.path, stdout=os.path.join(b2.path, "out"))
    assert r.ok, f"the id of the failed create is not free:\n{r}"


# ------------------------------------------------------------------------------------------------ operations
def test_full_lifecycle_operations_usable(oci):
    """The entity using a runtime to create a container MUST be able to use the operations defined in this
    specification against that same container (state, start, kill, delete).

    [MUST] runtime.md#runtimeScopeContainer
    """
    c = oci.create(args=sleeper())
    assert c.state()["status"] == "created"
    assert oci.rt.start(c.id).ok
    assert c.state()["status"] == "running"
    assert oci.rt.kill(c.id, "TERM").ok
    assert c.wait_stopped()["status"] == "stopped"
    assert oci.rt.delete(c.id).ok
    assert c.state() is None


def test_state_without_id_errors(rt):
    """This operation (state) MUST generate an error if it is not provided the ID of a container.

    [MUST] runtime.md#runtimeQueryState
    """
    r = rt.run("state")
    assert not r.ok, r


def test_state_of_nonexistent_container_errors(rt):
    """Attempting to query a container that does not exist MUST generate an error.

    [MUST] runtime.md#runtimeQueryState
    """
    r = rt.run("state", "cf-does-not-exist")
    assert not r.ok, r


def test_create_without_id_errors(oci):
    """This operation MUST generate an error if it is not provided a path to the bundle and the container ID.

    [MUST] runtime.md#runtimeCreate
    """
    b = oci.bundle()
    r = oci.rt.run("create", "--bundle", b.path)
    assert not r.ok, r


def test_create_without_bundle_errors(oci, tmp_path):
    """This operation MUST generate an error if it is not provided a path to the bundle (no bundle at the
    default location).

    [MUST] runtime.md#runtimeCreate
    """
    cid = oci.new_id()
    r = oci.rt.run("create", cid, cwd=str(tmp_path))
    assert not r.ok, r
    assert oci.rt.state(cid) is None


def test_create_duplicate_id_errors_and_creates_nothing(oci):
    """If the ID provided is not unique across all containers within the scope of the runtime, the
    implementation MUST generate an error and a new container MUST NOT be created.

    [MUST] runtime.md#runtimeCreate
    """
    c = oci.create(args=sleeper())
    pid = c.state()["pid"]
    b2 = oci.bundle(["/probe", "--touch", "/second"])
    r = oci.rt.create(c.id, b2.path)
    assert not r.ok, r
    st = c.state()
    assert st["pid"] == pid and os.path.realpath(st["bundle"]) == os.path.realpath(c.bundle.path), st
    assert not os.path.exists(os.path.join(b2.rootfs, "second"))


@pytest.mark.parametrize("bad_id", ["../escape", "a/b", ""])
def test_create_invalid_id_errors(oci, bad_id):
    """If the ID provided ... is not valid in any other way, the implementation MUST generate an error and a
    new container MUST NOT be created.

    [MUST] runtime.md#runtimeCreate
    """
    b = oci.bundle()
    r = oci.rt.run("create", "--bundle", b.path, bad_id)
    assert not r.ok, r
    if bad_id:
        assert oci.rt.state(bad_id) is None
        oci.rt.delete(bad_id, force=True)


def test_create_unapplyable_property_errors(oci):
    """If the runtime cannot apply a property as specified in the configuration, it MUST generate an error
    and a new container MUST NOT be created.

    [MUST] runtime.md#runtimeCreate
    """
    def edit(cfg):
        cfg["linux"]["namespaces"].append({"type": "cgroup", "path": "/nonexistent/ns/cgroup"})

    c = oci.create(edit=edit, expect_ok=False)
    assert not c.create_result.ok, "create succeeded with a namespace path that does not exist"
    assert c.state() is None


def test_start_without_id_errors(rt):
    """This operation (start) MUST generate an error if it is not provided the container ID.

    [MUST] runtime.md#runtimeStart
    """
    assert not rt.run("start").ok


def test_start_running_container_errors_without_effect(oci):
    """Attempting to start a container that is not created MUST have no effect on the container and MUST
    generate an error (container running).

    [MUST] runtime.md#runtimeStart
    """
    c = oci.run(args=["/bin/sh", "-c", "echo x >> /count; trap 'exit 0' TERM; sleep 300 & wait"])
    time.sleep(0.3)
    pid = c.state()["pid"]
    r = oci.rt.start(c.id)
    assert not r.ok, r
    time.sleep(0.3)
    assert c.state()["status"] == "running" and c.state()["pid"] == pid
    with open(os.path.join(c.bundle.rootfs, "count")) as f:
        assert f.read() == "x\n", "the program ran twice"


def test_start_stopped_container_errors(oci):
    """Attempting to start a container that is not created MUST have no effect and MUST generate an error
    (container stopped).

    [MUST] runtime.md#runtimeStart
    """
    c = oci.run()
    c.probe_output()
    c.wait_stopped()
    r = oci.rt.start(c.id)
    assert not r.ok, r
    assert c.state()["status"] == "stopped"
    assert c.output().count("\n") == 1, "the program ran again"


def test_start_nonexistent_container_errors(rt):
    """Attempting to start a container that is not created MUST generate an error (no such container).

    [MUST] runtime.md#runtimeStart
    """
    assert not rt.run("start", "cf-does-not-exist").ok


def test_start_without_process_errors(oci):
    """This operation (start) MUST generate an error if process was not set.

    [MUST] runtime.md#runtimeStart
    """
    c = oci.create(edit=lambda c: c.pop("process"), expect_ok=False)
    if not c.create_result.ok:
        return  # rejected even earlier: nothing was run
    r = oci.rt.start(c.id)
    assert not r.ok, f"start succeeded without process:\n{r}"


def test_kill_without_id_errors(rt):
    """This operation (kill) MUST generate an error if it is not provided the container ID.

    [MUST] runtime.md#runtimeKill
    """
    assert not rt.run("kill").ok


def test_kill_stopped_container_errors_without_effect(oci):
    """Attempting to send a signal to a container that is neither created nor running MUST have no effect on
    the container and MUST generate an error.

    [MUST] runtime.md#runtimeKill
    """
    c = oci.run()
    c.probe_output()
    c.wait_stopped()
    r = oci.rt.kill(c.id, "KILL")
    assert not r.ok, r
    st = c.state()
    assert st and st["status"] == "stopped", st


def test_kill_nonexistent_container_errors(rt):
    """Attempting to send a signal to a container that is neither created nor running MUST generate an
    error (no such container).

    [MUST] runtime.md#runtimeKill
    """
    assert not rt.run("kill", "cf-does-not-exist", "KILL").ok


def test_kill_sends_the_specified_signal(oci):
    """This operation MUST send the specified signal to the container process.

    [MUST] runtime.md#runtimeKill
    """
    script = "trap 'echo USR1 > /got; exit 0' USR1; trap 'echo TERM > /got; exit 0' TERM; while :; do sleep 0.05; done"
    c = oci.run(args=["/bin/sh", "-c", script])
    time.sleep(0.3)
    assert oci.rt.kill(c.id, "USR1").ok
    c.wait_stopped()
    with open(os.path.join(c.bundle.rootfs, "got")) as f:
        assert f.read().strip() == "USR1"


def test_kill_created_container(oci):
    """Kill applies to a container that is created (not only running): this operation MUST send the specified
    signal to the container process.

    [MUST] runtime.md#runtimeKill
    """
    c = oci.create(args=sleeper())
    pid = c.state()["pid"]
    r = oci.rt.kill(c.id, "KILL")
    assert r.ok, r
    deadline = time.monotonic() + 5
    while proc_alive(pid):
        assert time.monotonic() < deadline, "SIGKILL to a created container did not kill its process"
        time.sleep(0.05)
    assert c.wait_stopped()["status"] == "stopped"


def test_kill_signal_by_number(oci):
    """kill <container-id> <signal>: a numeric signal is sent as that signal.

    [MUST] runtime.md#runtimeKill
    """
    script = "trap 'echo USR2 > /got; exit 0' USR2; while :; do sleep 0.05; done"
    c = oci.run(args=["/bin/sh", "-c", script])
    time.sleep(0.3)
    assert oci.rt.kill(c.id, str(int(signal.SIGUSR2))).ok
    c.wait_stopped()
    with open(os.path.join(c.bundle.rootfs, "got")) as f:
        assert f.read().strip() == "USR2"


def test_delete_without_id_errors(rt):
    """This operation (delete) MUST generate an error if it is not provided the container ID.

    [MUST] runtime.md#runtimeDelete
    """
    assert not rt.run("delete").ok


def test_delete_running_container_errors_without_effect(oci):
    """Attempting to delete a container that is not stopped MUST have no effect on the container and MUST
    generate an error (running container).

    [MUST] runtime.md#runtimeDelete
    """
    c = oci.run(args=sleeper())
    pid = c.state()["pid"]
    r = oci.rt.delete(c.id)
    assert not r.ok, r
    st = c.state()
    assert st and st["status"] == "running" and proc_alive(pid), st


def test_delete_created_container_errors_without_effect(oci):
    """Attempting to delete a container that is not stopped MUST have no effect on the container and MUST
    generate an error (created container).

    [MUST] runtime.md#runtimeDelete
    """
    c = oci.create(args=sleeper())
    r = oci.rt.delete(c.id)
    assert not r.ok, r
    st = c.state()
    assert st and st["status"] == "created", st


def test_delete_removes_state(oci):
    """Deleting a container MUST delete the resources that were created during the create step (the container
    no longer exists).

    [MUST] runtime.md#runtimeDelete
    """
    c = oci.run()
    c.probe_output()
    c.wait_stopped()
    assert oci.rt.delete(c.id).ok
    assert c.state() is None
    assert not oci.rt.run("state", c.id).ok


def test_delete_removes_created_cgroups(oci):
    """Deleting a container MUST delete the resources that were created during the create step (its cgroups).

    [MUST] runtime.md#runtimeDelete
    """
    rootless.require_cgroups_placeable("removing the cgroups create made")
    cgpath = f"/{CGROUP_PREFIX}/{oci.tag}-del"
    c = oci.create(args=["/probe"], edit=lambda c: c["linux"].update(cgroupsPath=cgpath))
    cgs = cgroups_of(c.state()["pid"])
    dirs = []
    for ctrl, path in cgs.items():
        mnt = host.cgroup_v1_controllers().get(ctrl) if ctrl else host.cgroup_v2_mount()
        if mnt and path != "/" and path.rstrip("/").endswith(f"{oci.tag}-del"):
            dirs.append(os.path.join(mnt, path.lstrip("/")))
    assert dirs, f"container not placed in cgroupsPath {cgpath}: {cgs}"
    assert oci.rt.start(c.id).ok
    c.probe_output()
    c.wait_stopped()
    assert oci.rt.delete(c.id).ok
    left = [d for d in dirs if os.path.exists(d)]
    assert not left, f"cgroups left after delete: {left}"


def test_delete_keeps_resources_not_created(oci):
    """Resources associated with the container, but not created by this container, MUST NOT be deleted (a
    joined namespace, a bind-mount source, a pre-existing parent cgroup).

    [MUST] runtime.md#runtimeDelete
    """
    import subprocess
    holder = subprocess.Popen(rootless.unshare_argv("--net", "--ipc") + ["sleep", "300"])
    oci.add_cleanup(lambda: (holder.kill(), holder.wait()))
    time.sleep(0.2)
    src = os.path.join(oci.workdir, f"src-{oci.tag}")
    os.makedirs(src)
    with open(os.path.join(src, "keep"), "w") as f:
        f.write("keep")

    def edit(cfg):
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "network"]
        cfg["linux"]["namespaces"].append({"type": "network", "path": f"/proc/{holder.pid}/ns/net"})
        rootless.join_holder_userns(cfg, holder.pid)
        cfg["mounts"].append({"destination": "/src", "type": "bind", "source": src, "options": ["bind"]})

    data = oci.probe(edit=edit)
    assert data["namespaces"]["net"] == os.readlink(f"/proc/{holder.pid}/ns/net")
    assert holder.poll() is None, "the process holding the joined namespace was killed"
    assert os.readlink(f"/proc/{holder.pid}/ns/net") == data["namespaces"]["net"]
    with open(os.path.join(src, "keep")) as f:
        assert f.read() == "keep", "bind-mount source was modified"
