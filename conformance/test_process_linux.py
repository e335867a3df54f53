"""config.md#configLinuxProcess (capabilities, noNewPrivileges, oomScoreAdj, scheduler, ioPriority, LSM labels)
and runtime-linux.md (file descriptors, /dev symlinks)."""
import os
import subprocess

import pytest

from conformance import host
from conformance import rootless
from conformance.host import caps_from_hex

SCHED = {"SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3, "SCHED_IDLE": 5}


def set_caps(cfg, **sets):
    cfg["process"]["capabilities"] = {k: list(v) for k, v in sets.items()}


def test_capabilities_bounding(oci):
    """bounding (array of strings) is an array of bounding capabilities that are kept for the process.

    [MUST] config.md#configLinuxProcess
    """
    caps = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SETUID", "CAP_SETGID"]
    data = oci.probe(edit=lambda c: set_caps(c, bounding=caps, effective=caps, permitted=caps))
    assert caps_from_hex(data["capabilities"]["bounding"]) == set(caps)


def test_capabilities_effective_and_permitted(oci):
    """effective / permitted (array of strings): the capabilities kept for the process (uid 0: exactly these).

    [MUST] config.md#configLinuxProcess
    """
    caps = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"]
    data = oci.probe(edit=lambda c: set_caps(c, bounding=caps, effective=caps, permitted=caps))
    assert caps_from_hex(data["capabilities"]["effective"]) == set(caps)
    assert caps_from_hex(data["capabilities"]["permitted"]) == set(caps)


def test_capabilities_inheritable(oci):
    """inheritable (array of strings) is an array of inheritable capabilities that are kept for the process.

    [MUST] config.md#configLinuxProcess
    """
    caps = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"]
    data = oci.probe(edit=lambda c: set_caps(c, bounding=caps, effective=caps, permitted=caps,
                                             inheritable=["CAP_KILL"]))
    assert caps_from_hex(data["capabilities"]["inheritable"]) == {"CAP_KILL"}


def test_capabilities_ambient(oci):
    """ambient (array of strings) is an array of ambient capabilities that are kept for the process (a
    non-root process keeps them across execve).

    [MUST] config.md#configLinuxProcess
    """
    caps = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]

    def edit(c):
        set_caps(c, bounding=caps, effective=caps, permitted=caps, inheritable=caps, ambient=["CAP_NET_BIND_SERVICE"])
        c["process"]["user"] = {"uid": 1000, "gid": 1000}
    data = oci.probe(edit=edit)
    assert caps_from_hex(data["capabilities"]["ambient"]) == {"CAP_NET_BIND_SERVICE"}
    assert "CAP_NET_BIND_SERVICE" in caps_from_hex(data["capabilities"]["effective"])


def test_capabilities_empty_for_non_root(oci):
    """A non-root process without ambient capabilities keeps no effective capabilities (the configured sets are
    what the process has).

    [MUST] config.md#configLinuxProcess
    """
    def edit(c):
        set_caps(c, bounding=["CAP_KILL"], effective=["CAP_KILL"], permitted=["CAP_KILL"])
        c["process"]["user"] = {"uid": 1000, "gid": 1000}
    data = oci.probe(edit=edit)
    assert caps_from_hex(data["capabilities"]["effective"]) == set()
    assert caps_from_hex(data["capabilities"]["bounding"]) == {"CAP_KILL"}


def test_capability_not_grantable_does_not_fail(oci):
    """Capabilities that cannot be granted MUST be logged as a warning; runtimes SHOULD NOT fail if the container
    configuration requests capabilities that cannot be granted.

    [SHOULD] config.md#configLinuxProcess
    """
    absent = sorted(set(host.CAP_NAMES[:host.last_cap() + 1]) - host.bounding_caps())
    if not absent:
        pytest.skip("host: every capability is in the bounding set, none is ungrantable")
    caps = ["CAP_KILL", absent[0]]
    c = oci.run(edit=lambda c: set_caps(c, bounding=caps, effective=caps, permitted=caps))
    data = c.probe_output()
    assert "CAP_KILL" in caps_from_hex(data["capabilities"]["effective"])
    # the warning: on the runtime's log, which is its stderr when no --log is given (runc's too)
    said = c.create_result.stderr
    lines = [ln for ln in said.splitlines() if absent[0] in ln and "warn" in ln.lower()]
    assert lines, f"no warning naming {absent[0]} (not grantable here) on create's stderr: {said!r}"


def test_no_new_privileges_true(oci):
    """noNewPrivileges (bool): setting noNewPrivileges to true prevents the process from gaining additional
    privileges (no_new_privs set).

    [MUST] config.md#configLinuxProcess
    """
    data = oci.probe(edit=lambda c: c["process"].update(noNewPrivileges=True))
    assert data["no_new_privs"] == 1


def test_no_new_privileges_false(oci):
    """noNewPrivileges false: no_new_privs is not set.

    [MUST] config.md#configLinuxProcess
    """
    data = oci.probe(edit=lambda c: c["process"].update(noNewPrivileges=False))
    assert data["no_new_privs"] == 0


def test_oom_score_adj_set(oci):
    """If oomScoreAdj is set, the runtime MUST set oom_score_adj to the given value.

    [MUST] config.md#configLinuxProcess
    """
    data = oci.probe(edit=lambda c: c["process"].update(oomScoreAdj=345))
    assert data["oom_score_adj"] == 345


def test_oom_score_adj_unset_unchanged(oci):
    """If oomScoreAdj is not set, the runtime MUST NOT change the value of oom_score_adj.

    [MUST] config.md#configLinuxProcess
    """
    b = oci.bundle(["/probe"])
    c = oci.create(b, preexec=lambda: open("/proc/self/oom_score_adj", "w").write("123"))
    assert oci.rt.start(c.id).ok
    assert c.probe_output()["oom_score_adj"] == 123


@pytest.mark.parametrize("policy,nice", [("SCHED_BATCH", 5), ("SCHED_OTHER", 7), ("SCHED_IDLE", 0)])
def test_scheduler_policy_and_nice(oci, policy, nice):
    """scheduler: policy (string, REQUIRED) represents the scheduling policy; nice is the nice value for the
    process.

    [MUST] config.md#configLinuxProcess
    """
    data = oci.probe(edit=lambda c: c["process"].update(scheduler={"policy": policy, "nice": nice}))
    assert data["sched_policy"] == SCHED[policy], data["sched_policy"]
    if policy != "SCHED_IDLE":
        assert data["nice"] == nice


def test_scheduler_realtime_priority(oci):
    """scheduler: priority represents the static priority of the process, used by real-time policies like
    SCHED_FIFO and SCHED_RR.

    [MUST] config.md#configLinuxProcess
    """
    caps = ["CAP_SYS_NICE", "CAP_KILL"]
    if rootless.active():
        import resource
        if resource.getrlimit(resource.RLIMIT_RTPRIO)[1] < 3:
            rootless.require_cap("CAP_SYS_NICE", "a realtime policy (SCHED_RR priority 3, above the caller's "
                                 "RLIMIT_RTPRIO)")

    def edit(c):
        c["process"].update(scheduler={"policy": "SCHED_RR", "priority": 3})
        set_caps(c, bounding=caps, effective=caps, permitted=caps)
        # Host with RT group scheduling (cpu.rt_runtime_us): a new cgroup gets no RT time unless the config
        # asks for some (linux.resources.cpu.realtimeRuntime) -- without it the kernel refuses SCHED_RR.
        # (Rootless without a writable cpu hierarchy the container stays in the caller's cgroup: no new one.)
        if os.path.exists("/sys/fs/cgroup/cpu/cpu.rt_runtime_us") and rootless.cgroups_placeable():
            c.setdefault("linux", {}).setdefault("resources", {}).setdefault("cpu", {}).update(
                realtimeRuntime=10000, realtimePeriod=1000000)

    data = oci.probe(edit=edit)
    assert (data["sched_policy"], data["sched_priority"]) == (2, 3)


def test_scheduler_reset_on_fork_flag(oci):
    """scheduler: flags is an array of strings representing scheduling flags (SCHED_FLAG_RESET_ON_FORK).

    [MUST] config.md#configLinuxProcess
    """
    data = oci.probe(edit=lambda c: c["process"].update(
        scheduler={"policy": "SCHED_BATCH", "flags": ["SCHED_FLAG_RESET_ON_FORK"]}))
    assert data["sched_policy"] == 3 and data["sched_reset_on_fork"] is True, data


@pytest.mark.parametrize("klass,num,prio", [("IOPRIO_CLASS_BE", 2, 6), ("IOPRIO_CLASS_IDLE", 3, 0)])
def test_io_priority(oci, klass, num, prio):
    """ioPriority configures the I/O priority settings for the container's processes: class and priority.

    [MUST] config.md#configLinuxProcess
    """
    data = oci.probe(edit=lambda c: c["process"].update(ioPriority={"class": klass, "priority": prio}))
    assert data["ioprio"] == {"class": num, "priority": prio}, data["ioprio"]


def test_apparmor_profile(oci):
    """apparmorProfile (string) specifies the name of the AppArmor profile for the process.

    [MUST] config.md#configLinuxProcess
    """
    host.require_lsm("apparmor")
    data = oci.probe("--file", "/proc/self/attr/current",
                     edit=lambda c: c["process"].update(apparmorProfile="unconfined"))
    assert data["files"]["/proc/self/attr/current"].strip().startswith("unconfined")


def test_selinux_label(oci):
    """selinuxLabel (string) specifies the SELinux label for the process.

    [MUST] config.md#configLinuxProcess
    """
    host.require_lsm("selinux")
    label = "system_u:system_r:container_t:s0"
    data = oci.probe("--file", "/proc/self/attr/current", edit=lambda c: c["process"].update(selinuxLabel=label))
    assert data["files"]["/proc/self/attr/current"].strip("\0\n") == label


def test_mount_label(oci):
    """mountLabel (string) will set the SELinux context for the mounts in the container.

    [MUST] config-linux.md#configLinuxMountLabel
    """
    host.require_lsm("selinux")
    label = "system_u:object_r:container_file_t:s0"
    data = oci.probe(edit=lambda c: c["linux"].update(mountLabel=label))
    assert label in mount_opts(data, "/dev/shm")


def mount_opts(data, path):
    return [m["super"] for m in data["mounts"] if m["mountpoint"] == path][-1]


# ------------------------------------------------------------------------------------------------ runtime-linux.md
def test_only_stdio_fds_open(oci):
    """By default, only the stdin, stdout and stderr file descriptors are kept open for the application by the
    runtime.

    [MUST] runtime-linux.md#runtimeLinuxFileDescriptors
    """
    b = oci.bundle(["/probe"])
    r, w = os.pipe()  # an inheritable extra fd in the caller must not leak in
    os.set_inheritable(w, True)
    try:
        c = oci.create(b)
    finally:
        os.close(r)
        os.close(w)
    assert oci.rt.start(c.id).ok
    fds = {f["fd"]: f["target"] for f in c.probe_output()["fds"]}
    assert set(fds) <= {0, 1, 2}, f"extra fds open in the container: {fds}"


@pytest.mark.parametrize("link,target", [("/dev/fd", "/proc/self/fd"), ("/dev/stdin", "/proc/self/fd/0"),
                                         ("/dev/stdout", "/proc/self/fd/1"), ("/dev/stderr", "/proc/self/fd/2")])
def test_dev_symlinks(oci, link, target):
    """While creating the container, runtimes MUST create the /dev/fd, /dev/stdin, /dev/stdout, /dev/stderr
    symlinks if the source file exists after processing mounts.

    [MUST] runtime-linux.md#runtimeLinuxDevSymbolicLinks
    """
    data = oci.probe("--dev", link)
    st = data["devices"][link]
    assert st and st["type"] == "l" and st["link"] == target, st
