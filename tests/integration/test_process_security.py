"""config.md "process" applied right, seen from inside the container, and the runtime's own hygiene around it:
user (user namespaces, setgroups, username), the five capability sets (root, non-root, exec; runc as oracle),
rlimits, noNewPrivileges, oomScoreAdj, scheduler, ioPriority, execCPUAffinity, linux.personality, the session
keyring, AppArmor/SELinux refusal on this host, non-dumpability of the runtime inside the container's
namespaces, file descriptors (none leaked, --preserve-fds, LISTEN_FDS) and the CVE-2024-21626 / CVE-2019-5736
attack classes.

What test_container_view.py already checks (basic uid/gid/groups, umask, non-root capabilities from the config,
RLIMIT_NOFILE/CORE, the NOFILE hard-limit failure, positive oomScoreAdj, no_new_privs on `run`) is not repeated.
seccomp is test_seccomp_real.py's.

Small static C helpers (busybox has no ionice or keyctl, and there is no Python in the container) are compiled
once per session with `gcc -static` and copied into the bundles that need them.
"""
import hashlib
import json
import os
import resource
import shutil
import subprocess
import time
import uuid

import pytest

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates real containers")]

# capability numbers from linux/capability.h (procstatus: independent of ocirun's own table)
from procstatus import CAP, CAP_NAMES, caps_of, mask, status_fields  # noqa: E402

UIDMAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def host_status():
    with open("/proc/self/status") as f:
        return status_fields(f.read())


def runtime_has(cap):
    return bool(int(host_status()["CapBnd"], 16) >> CAP[cap] & 1)


def kernel_caps():
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    return [n for n in CAP_NAMES if CAP[n] <= last]


def hexcaps(d):
    return {k: hex(v) for k, v in d.items()}


# ------------------------------------------------------------------------------------------ C helpers
PROBE_C = r"""
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "ioprio")) {
        long r = syscall(SYS_ioprio_get, 1 /* IOPRIO_WHO_PROCESS */, 0);
        if (r < 0) { perror("ioprio_get"); return 1; }
        printf("class=%ld prio=%ld\n", r >> 13, r & 0x1fff);
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "keyring")) {
        long id = syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* KEY_SPEC_SESSION_KEYRING */, 0);
        if (id < 0) { perror("keyctl get"); return 1; }
        char buf[512];
        long n = syscall(SYS_keyctl, 6 /* KEYCTL_DESCRIBE */, id, buf, sizeof buf - 1);
        if (n < 0) { perror("keyctl describe"); return 1; }
        buf[n < (long)sizeof buf ? n : (long)sizeof buf - 1] = 0;
        printf("%ld %s\n", id, buf);
        return 0;
    }
    fprintf(stderr, "usage: probe ioprio|keyring\n");
    return 2;
}
"""
# An ELF whose PT_INTERP is /proc/self/exe: were it exec'd by the runtime, the kernel would load the runtime's
# own binary (the host's Python) as its interpreter, inside the container.
INTERP_C = "int main(void) { return 0; }\n"


@pytest.fixture(scope="session")
def cbin(tmp_path_factory):
    """{'probe': static helper, 'interp': ELF with PT_INTERP=/proc/self/exe} (skips without gcc/static libc)."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not gcc:
        pytest.skip("no C compiler on this host (gcc): the ioprio/keyring helpers cannot be built")
    d = tmp_path_factory.mktemp("cbin")
    (d / "probe.c").write_text(PROBE_C)
    (d / "interp.c").write_text(INTERP_C)
    r = subprocess.run([gcc, "-static", "-O1", "-o", str(d / "probe"), str(d / "probe.c")],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot build a static binary here (no static libc?): {r.stderr[-500:]}")
    r = subprocess.run([gcc, "-O1", "-o", str(d / "interp"), str(d / "interp.c"),
                        "-Wl,--dynamic-linker=/proc/self/exe"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return {"probe": str(d / "probe"), "interp": str(d / "interp")}


def add_probe(b, cbin, bundle):
    shutil.copy2(cbin["probe"], os.path.join(bundle.rootfs(b), "probe"))


def host_probe(cbin, what):
    r = subprocess.run([cbin["probe"], what], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


# ------------------------------------------------------------------------------------------ running
@pytest.fixture
def sh(oci, bundle, cid):
    """sh(script, edit=None, flags=(), rc=0, pre=None) -> (Result, bundle dir) of `ocirun run` of sh -c script.
    pre(bundle_dir) runs before the run (e.g. to add files to the rootfs)."""
    def run(script, edit=None, flags=(), rc=0, pre=None):
        b = bundle(["sh", "-c", script], edit=edit)
        if pre is not None:
            pre(b)
        res = oci("run", *flags, "--bundle", b, cid())
        if rc is not None:
            assert res.returncode == rc, str(res)
        return res, b
    return run


@pytest.fixture
def running(oci, bundle, cid):
    """running(edit=None, args=('sleep','60'), pre=None) -> id of a detached running container (deleted after)."""
    made = []

    def start(edit=None, args=("sleep", "60"), pre=None):
        b = bundle(list(args), edit=edit)
        if pre is not None:
            pre(b)
        c = cid()
        res = oci("run", "-d", "--bundle", b, c)
        assert res.returncode == 0, str(res)
        made.append(c)
        start.bundle = b
        return c
    yield start
    for c in made:
        oci("delete", "--force", c)


def set_process(**kv):
    def edit(cfg):
        cfg["process"].update(kv)
    return edit


def process_file(tmp_path, proc):
    p = tmp_path / f"process-{uuid.uuid4().hex[:6]}.json"
    p.write_text(json.dumps(proc))
    return str(p)


def base_process(**kv):
    proc = {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/",
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]}
    proc.update(kv)
    return proc


# ================================================================================================ user
def test_user_namespace_with_additional_gids(sh):
    """A new user ns mapped by the (privileged) runtime keeps /proc/self/setgroups "allow": additionalGids work."""
    def edit(cfg):
        cfg["linux"]["namespaces"].append({"type": "user"})
        cfg["linux"]["uidMappings"] = UIDMAP
        cfg["linux"]["gidMappings"] = UIDMAP
        cfg["linux"].pop("resources", None)
        cfg["process"]["user"] = {"uid": 1000, "gid": 1002, "additionalGids": [29, 1001]}
    res, _ = sh("cat /proc/self/setgroups; grep -E '^(Uid|Gid|Groups):' /proc/self/status", edit=edit)
    lines = res.stdout.splitlines()
    assert lines[0] == "allow", str(res)
    st = status_fields("\n".join(lines[1:]))
    assert st["Uid"].split() == ["1000"] * 4 and st["Gid"].split() == ["1002"] * 4, str(res)
    assert sorted(map(int, st["Groups"].split())) == [29, 1001], str(res)


@pytest.fixture
def deny_userns():
    """A user namespace (held by a sleep) mapped 0..65535 -> 200000.. with /proc/PID/setgroups "deny", as an
    unprivileged tool would leave it. Yields its /proc/PID/ns/user path."""
    p = subprocess.Popen(["unshare", "--user", "sleep", "60"])
    try:
        end = time.monotonic() + 5
        while os.readlink(f"/proc/{p.pid}/ns/user") == os.readlink("/proc/self/ns/user"):
            assert time.monotonic() < end, "unshare --user did not start"
            time.sleep(0.01)
        for f, v in (("setgroups", "deny"), ("uid_map", "0 200000 65536"), ("gid_map", "0 200000 65536")):
            with open(f"/proc/{p.pid}/{f}", "w") as fh:
                fh.write(v)
        yield f"/proc/{p.pid}/ns/user"
    finally:
        p.kill()
        p.wait()


def _join_userns_edit(path, user):
    def edit(cfg):
        cfg["linux"]["namespaces"].append({"type": "user", "path": path})
        cfg["linux"].pop("resources", None)
        cfg["process"]["user"] = user
    return edit


def test_joined_user_namespace_with_setgroups_deny_runs(sh, deny_userns):
    """Joining a fully mapped user ns whose setgroups is "deny": no additionalGids asked, so it must run as the
    configured (mapped) user."""
    res, _ = sh("cat /proc/self/setgroups; id -u; id -g", rc=None,
                edit=_join_userns_edit(deny_userns, {"uid": 1000, "gid": 1002}))
    assert res.returncode == 0, str(res)
    assert res.stdout.split() == ["deny", "1000", "1002"], str(res)


def test_joined_user_namespace_with_setgroups_deny_refuses_additional_gids(sh, deny_userns):
    """setgroups(2) is impossible there: asked-for additionalGids cannot be applied, so create must fail with an
    error naming them (not run with a group list the config did not ask for, nor fail without a word)."""
    res, _ = sh("echo should-not-run; grep Groups /proc/self/status", rc=None,
                edit=_join_userns_edit(deny_userns, {"uid": 1000, "gid": 1000, "additionalGids": [29]}))
    assert res.returncode != 0, str(res)
    assert "should-not-run" not in res.stdout
    assert "additionalGids" in res.stderr, str(res)


def test_username_not_in_container_passwd_fails(sh):
    res, _ = sh("echo should-not-run", rc=None,
                edit=set_process(user={"uid": 1000, "gid": 1000, "username": "no-such-user-x"}))
    assert res.returncode != 0, str(res)
    assert "should-not-run" not in res.stdout
    assert "process.user.username" in res.stderr and "no-such-user-x" in res.stderr, str(res)


def test_username_in_container_passwd_runs(sh):
    res, _ = sh("id -u; id -g", edit=set_process(user={"uid": 1000, "gid": 1002, "username": "user"}))
    assert res.stdout.split() == ["1000", "1002"]


# ================================================================================================ capabilities
ROOT_CAPS = {
    "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SETUID", "CAP_SETGID", "CAP_DAC_OVERRIDE"],
    "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
    "effective": ["CAP_CHOWN", "CAP_KILL"],
    "inheritable": ["CAP_CHOWN", "CAP_KILL", "CAP_SETUID"],
    "ambient": ["CAP_CHOWN", "CAP_KILL"],
}


@pytest.mark.parametrize("nnp", [False, True])
def test_capabilities_root_all_five_sets_like_runc(sh, runc, nnp):
    """uid 0 (no SECBIT_NOROOT): bounding, inheritable and ambient are exactly as asked; execve makes permitted =
    effective = bounding | inheritable (the kernel's rule for root), which no_new_privs caps at the permitted
    set the runtime set before execve. runc agrees on the same bundle."""
    res, b = sh("cat /proc/self/status", edit=set_process(capabilities=ROOT_CAPS, noNewPrivileges=nnp))
    got = caps_of(res.stdout)
    pe = mask(ROOT_CAPS["bounding"]) | mask(ROOT_CAPS["inheritable"])
    if nnp:
        pe &= mask(ROOT_CAPS["permitted"])
    assert got == {"CapBnd": mask(ROOT_CAPS["bounding"]), "CapInh": mask(ROOT_CAPS["inheritable"]),
                   "CapAmb": mask(ROOT_CAPS["ambient"]), "CapPrm": pe, "CapEff": pe}, hexcaps(got)
    ref = runc("run", "--bundle", b, "caps-root")
    assert ref.returncode == 0, str(ref)
    assert caps_of(ref.stdout) == got, (hexcaps(caps_of(ref.stdout)), hexcaps(got))


NONROOT_CAPS = {
    "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SETUID", "CAP_FOWNER"],
    "permitted": ["CAP_KILL", "CAP_NET_RAW"],
    "effective": ["CAP_KILL", "CAP_NET_RAW"],
    "inheritable": ["CAP_KILL", "CAP_NET_RAW", "CAP_SETUID"],
    "ambient": ["CAP_KILL", "CAP_NET_RAW"],
}


def test_capabilities_exec_non_root_process_file_like_runc(oci, runc, running, tmp_path):
    """`exec --process` as uid 1000: all five sets exactly as asked (ambient carries permitted/effective across
    the execve of a non-root process); runc exec of the same process.json agrees."""
    c = running()
    pf = process_file(tmp_path, base_process(args=["cat", "/proc/self/status"], user={"uid": 1000, "gid": 1002},
                                             capabilities=NONROOT_CAPS))
    res = oci("exec", "--process", pf, c)
    assert res.returncode == 0, str(res)
    st = status_fields(res.stdout)
    assert st["Uid"].split() == ["1000"] * 4 and st["Gid"].split() == ["1002"] * 4, (st["Uid"], st["Gid"])
    got = caps_of(res.stdout)
    want = {"CapBnd": mask(NONROOT_CAPS["bounding"]), "CapInh": mask(NONROOT_CAPS["inheritable"]),
            "CapAmb": mask(NONROOT_CAPS["ambient"]), "CapPrm": mask(NONROOT_CAPS["permitted"]),
            "CapEff": mask(NONROOT_CAPS["effective"])}
    assert got == want, hexcaps(got)
    assert runc("run", "-d", "--bundle", running.bundle, "rc-exec").returncode == 0
    try:
        ref = runc("exec", "--process", pf, "rc-exec")
        assert ref.returncode == 0, str(ref)
        assert caps_of(ref.stdout) == got, (hexcaps(caps_of(ref.stdout)), hexcaps(got))
    finally:
        runc("delete", "--force", "rc-exec")


def test_capabilities_exec_cap_flag(oci, runc, running):
    """`exec --cap X --user 1000:1002` with inheritable caps in the container's process: X goes to bounding,
    effective and permitted, to ambient (the process has an inheritable set) but never to inheritable, as runc
    (1.1 and main: exec.go) does; ambient X then cannot be raised, so the non-root process keeps only its
    ambient set across execve, X stays in its bounding set. runc exec of the same container agrees."""
    c = running(edit=set_process(capabilities=NONROOT_CAPS))
    res = oci("exec", "--cap", "CAP_SYS_CHROOT", "--user", "1000:1002", c, "cat", "/proc/self/status")
    assert res.returncode == 0, str(res)
    st = status_fields(res.stdout)
    assert st["Uid"].split() == ["1000"] * 4 and st["Gid"].split() == ["1002"] * 4, (st["Uid"], st["Gid"])
    got = caps_of(res.stdout)
    x = 1 << CAP["CAP_SYS_CHROOT"]
    amb = mask(NONROOT_CAPS["ambient"])
    want = {"CapBnd": mask(NONROOT_CAPS["bounding"]) | x, "CapInh": mask(NONROOT_CAPS["inheritable"]),
            "CapAmb": amb, "CapPrm": amb, "CapEff": amb}
    assert got == want, hexcaps(got)
    assert runc("run", "-d", "--bundle", running.bundle, "rc-exec-cap").returncode == 0
    try:
        ref = runc("exec", "--cap", "CAP_SYS_CHROOT", "--user", "1000:1002", "rc-exec-cap", "cat", "/proc/self/status")
        assert ref.returncode == 0, str(ref)
        assert caps_of(ref.stdout) == got, (hexcaps(caps_of(ref.stdout)), hexcaps(got))
    finally:
        runc("delete", "--force", "rc-exec-cap")


def test_unknown_capability_warns_naming_entry_and_runs(sh):
    """config.md: a capability that cannot be mapped MUST be logged as a warning and SHOULD NOT fail (runc: the
    same, "ignoring unknown or unavailable capabilities"); the known ones are still set exactly."""
    caps = {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL", "CAP_NOT_A_CAP"], "permitted": ["CAP_KILL"]}
    res, _ = sh("cat /proc/self/status", edit=set_process(capabilities=caps))
    assert "CAP_NOT_A_CAP" in res.stderr and "effective" in res.stderr and "warn" in res.stderr.lower(), str(res)
    got = caps_of(res.stdout)
    assert got["CapBnd"] == got["CapPrm"] == got["CapEff"] == mask(["CAP_KILL"]), hexcaps(got)


def test_capability_outside_runtime_bounding_set_warns_and_runs(sh):
    if runtime_has("CAP_SYS_RESOURCE"):
        pytest.skip("the runtime's bounding set has CAP_SYS_RESOURCE here: nothing to leave out")
    caps = {k: ["CAP_KILL", "CAP_SYS_RESOURCE"] for k in ("bounding", "effective", "permitted")}
    res, _ = sh("cat /proc/self/status", edit=set_process(capabilities=caps))
    assert "CAP_SYS_RESOURCE" in res.stderr and "warn" in res.stderr.lower(), str(res)
    got = caps_of(res.stdout)
    assert got["CapBnd"] == got["CapPrm"] == got["CapEff"] == mask(["CAP_KILL"]), hexcaps(got)


# ================================================================================================ rlimits
RLIMITS = [
    ("RLIMIT_NOFILE", "Max open files", 1000, 1500),
    ("RLIMIT_NPROC", "Max processes", 500, 600),
    ("RLIMIT_CORE", "Max core file size", 1024, 2048),
    ("RLIMIT_STACK", "Max stack size", 4 << 20, 6 << 20),
    ("RLIMIT_MEMLOCK", "Max locked memory", 64 << 10, 128 << 10),
    ("RLIMIT_AS", "Max address space", 1 << 30, 2 << 30),
]


def limits_table(text):
    """/proc/PID/limits -> {name: (soft, hard)} (strings: numbers or 'unlimited')."""
    out = {}
    for line in text.splitlines()[1:]:
        name = line[:26].strip()
        rest = line[26:].split()
        if name and len(rest) >= 2:
            out[name] = (rest[0], rest[1])
    return out


def test_rlimits_seen_from_inside_like_runc(sh, runc):
    rl = [{"type": t, "soft": s, "hard": h} for t, _, s, h in RLIMITS]
    res, b = sh("cat /proc/self/limits; ulimit -n; ulimit -Hu", edit=set_process(rlimits=rl))
    table = limits_table(res.stdout)
    for t, name, s, h in RLIMITS:
        assert table[name] == (str(s), str(h)), (t, table[name])
    assert res.stdout.split()[-2:] == ["1000", "600"]
    ref = runc("run", "--bundle", b, "rl")
    assert ref.returncode == 0, str(ref)
    assert limits_table(ref.stdout) == table


def _finite_hard_limits():
    out = []
    for t in ("RLIMIT_MEMLOCK", "RLIMIT_NPROC"):
        hard = resource.getrlimit(getattr(resource, t))[1]
        if hard != resource.RLIM_INFINITY:
            out.append((t, hard))
    return out


@pytest.mark.parametrize("which", ["RLIMIT_MEMLOCK", "RLIMIT_NPROC"])
def test_rlimit_hard_above_runtime_fails_naming_it(sh, which):
    if runtime_has("CAP_SYS_RESOURCE"):
        pytest.skip("this runtime has CAP_SYS_RESOURCE: raising a hard limit would succeed")
    hard = dict(_finite_hard_limits()).get(which)
    if hard is None:
        pytest.skip(f"{which} has no finite hard limit here: there is nothing above it to ask for")
    res, _ = sh("echo should-not-run", rc=None,
                edit=set_process(rlimits=[{"type": which, "soft": hard, "hard": hard + 4096}]))
    assert res.returncode != 0, str(res)
    assert "should-not-run" not in res.stdout
    assert which in res.stderr, str(res)
    # exactly the runtime's hard limit (and a lower soft one) is fine
    sh("echo ok", edit=set_process(rlimits=[{"type": which, "soft": hard // 2, "hard": hard}]))


def test_rlimits_on_exec(oci, running, tmp_path):
    c = running()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    pf = process_file(tmp_path, base_process(args=["cat", "/proc/self/limits"], rlimits=[
        {"type": "RLIMIT_NOFILE", "soft": 300, "hard": 400}, {"type": "RLIMIT_CORE", "soft": 0, "hard": 4096}]))
    res = oci("exec", "--process", pf, c)
    assert res.returncode == 0, str(res)
    t = limits_table(res.stdout)
    assert t["Max open files"] == ("300", "400") and t["Max core file size"] == ("0", "4096"), t
    if hard != resource.RLIM_INFINITY and not runtime_has("CAP_SYS_RESOURCE"):
        pf = process_file(tmp_path, base_process(args=["echo", "should-not-run"], rlimits=[
            {"type": "RLIMIT_NOFILE", "soft": 100, "hard": hard + 1000}]))
        res = oci("exec", "--process", pf, c)
        assert res.returncode != 0 and "should-not-run" not in res.stdout, str(res)
        assert "RLIMIT_NOFILE" in res.stderr, str(res)


def test_duplicate_rlimit_type_fails(sh):
    rl = [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}, {"type": "RLIMIT_NOFILE", "soft": 300, "hard": 300}]
    res, _ = sh("echo should-not-run", rc=None, edit=set_process(rlimits=rl))
    assert res.returncode != 0 and "should-not-run" not in res.stdout, str(res)
    assert "RLIMIT_NOFILE" in res.stderr, str(res)


# ================================================================================================ nnp, oom
@pytest.mark.parametrize("container_nnp,flag,want", [(False, False, "0"), (False, True, "1"), (True, False, "1")])
def test_no_new_privileges_on_exec(oci, running, container_nnp, flag, want):
    c = running(edit=set_process(noNewPrivileges=container_nnp))
    res = oci("exec", *(["--no-new-privs"] if flag else []), c, "cat", "/proc/self/status")
    assert res.returncode == 0, str(res)
    assert status_fields(res.stdout)["NoNewPrivs"] == want


def test_oom_score_adj_negative_fails_without_cap_sys_resource(sh):
    if runtime_has("CAP_SYS_RESOURCE"):
        pytest.skip("this runtime has CAP_SYS_RESOURCE: a negative oomScoreAdj would be allowed")
    res, _ = sh("echo should-not-run", rc=None, edit=set_process(oomScoreAdj=-500))
    assert res.returncode != 0 and "should-not-run" not in res.stdout, str(res)
    assert "oomScoreAdj" in res.stderr, str(res)


# ================================================================================================ scheduling
def stat_fields(text):
    """/proc/PID/stat -> {field number (1-based, proc(5)): value} for the fields after comm."""
    rest = text[text.rindex(")") + 2:].split()
    return {i + 3: v for i, v in enumerate(rest)}


@pytest.mark.parametrize("sched,policy,nice,rtprio", [
    ({"policy": "SCHED_BATCH", "nice": 7}, 3, 7, 0),
    ({"policy": "SCHED_IDLE"}, 5, None, 0),
    ({"policy": "SCHED_FIFO", "priority": 10}, 1, None, 10),
    ({"policy": "SCHED_RR", "priority": 3}, 2, None, 3),
])
def test_scheduler(oci, bundle, cid, sched, policy, nice, rtprio):
    """The policy, nice value and RT priority the process runs with. nice None: the config sets none, or the
    policy has none (SCHED_IDLE and the RT policies: sched_setattr ignores sched_nice there), so the process
    keeps the nice value it inherited from whoever ran the runtime (here: this test, whatever `nice` the
    suite runs under), as under runc."""
    if nice is None:
        nice = os.getpriority(os.PRIO_PROCESS, 0)

    def edit(cfg):
        cfg["process"]["scheduler"] = sched
        if rtprio and os.path.exists("/sys/fs/cgroup/cpu/cpu.rt_runtime_us"):
            # RT group scheduling (cgroup v1): a new cgroup gets no RT runtime unless the config grants some
            cfg["linux"].setdefault("resources", {})["cpu"] = {"realtimeRuntime": 10000, "realtimePeriod": 1000000}
    b = bundle(["cat", "/proc/self/stat"], edit=edit)
    res = oci("run", "--bundle", b, cid())
    assert res.returncode == 0, str(res)
    f = stat_fields(res.stdout)
    assert (int(f[41]), int(f[19]), int(f[40])) == (policy, nice, rtprio), res.stdout


@pytest.mark.parametrize("io,want", [({"class": "IOPRIO_CLASS_BE", "priority": 6}, "class=2 prio=6"),
                                     ({"class": "IOPRIO_CLASS_IDLE", "priority": 0}, "class=3 prio=0"),
                                     ({"class": "IOPRIO_CLASS_RT", "priority": 1}, "class=1 prio=1")])
def test_io_priority(oci, bundle, cid, cbin, io, want):
    b = bundle(["/probe", "ioprio"], edit=set_process(ioPriority=io))
    add_probe(b, cbin, bundle)
    res = oci("run", "--bundle", b, cid())
    assert res.returncode == 0, str(res)
    assert res.stdout.strip() == want


def test_io_priority_and_scheduler_on_exec(oci, running, cbin, tmp_path):
    c = running(pre=lambda b: add_probe(b, cbin, _BundleRootfs))
    pf = process_file(tmp_path, base_process(args=["sh", "-c", "/probe ioprio; cat /proc/self/stat; true"],
                                             ioPriority={"class": "IOPRIO_CLASS_BE", "priority": 2},
                                             scheduler={"policy": "SCHED_BATCH", "nice": 4}))
    res = oci("exec", "--process", pf, c)
    assert res.returncode == 0, str(res)
    first, stat = res.stdout.split("\n", 1)
    assert first == "class=2 prio=2"
    f = stat_fields(stat)
    assert (int(f[41]), int(f[19])) == (3, 4), stat


class _BundleRootfs:
    @staticmethod
    def rootfs(b):
        return os.path.join(b, "rootfs")


def _two_cpus():
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip(f"only one usable cpu here ({cpus}): initial and final affinity cannot differ")
    return cpus


def test_exec_cpu_affinity_final_on_run_and_exec(oci, running, tmp_path):
    cpus = _two_cpus()
    first, last = str(cpus[0]), str(cpus[-1])
    c = running(edit=set_process(execCPUAffinity={"initial": first, "final": last}),
                args=("sh", "-c", "grep Cpus_allowed_list /proc/self/status > /dev/shm/aff; exec sleep 60"))
    res = oci("exec", c, "cat", "/dev/shm/aff")
    assert res.returncode == 0, str(res)
    assert status_fields(res.stdout)["Cpus_allowed_list"] == last
    pf = process_file(tmp_path, base_process(args=["grep", "Cpus_allowed_list", "/proc/self/status"],
                                             execCPUAffinity={"initial": last, "final": first}))
    res = oci("exec", "--process", pf, c)
    assert res.returncode == 0, str(res)
    assert status_fields(res.stdout)["Cpus_allowed_list"] == first


def test_personality_linux32(oci, running):
    """linux.personality LINUX32: `uname -m` reports i686 in the container's process, and in processes exec'd
    into it (runc applies it in both its standard and setns init)."""
    c = running(edit=lambda cfg: cfg["linux"].update(personality={"domain": "LINUX32"}),
                args=("sh", "-c", "uname -m > /dev/shm/arch; exec sleep 60"))
    res = oci("exec", c, "cat", "/dev/shm/arch")
    assert res.stdout.strip() == "i686", str(res)
    res = oci("exec", c, "uname", "-m")
    assert res.returncode == 0, str(res)
    assert res.stdout.strip() == "i686", f"exec'd process has the host personality: {res}"


# ================================================================================================ keyring
def test_session_keyring_per_container(oci, bundle, cid, cbin):
    host_serial = host_probe(cbin, "keyring")[0]
    seen = []
    for _ in range(2):
        b = bundle(["/probe", "keyring"])
        add_probe(b, cbin, bundle)
        c = cid()
        res = oci("run", "--bundle", b, c)
        assert res.returncode == 0, str(res)
        serial, desc = res.stdout.split()
        assert desc.startswith("keyring;") and desc.split(";", 4)[4].endswith(c), desc
        assert serial != host_serial
        seen.append(serial)
    assert seen[0] != seen[1], "two containers share one session keyring"
    b = bundle(["/probe", "keyring"])
    add_probe(b, cbin, bundle)
    res = oci("run", "--no-new-keyring", "--bundle", b, cid())
    assert res.returncode == 0, str(res)
    assert res.stdout.split()[0] == host_serial, "--no-new-keyring: the caller's session keyring is kept"


def test_exec_joins_the_containers_session_keyring(oci, running, cbin):
    """An exec'd process must not see the caller's (host's) session keyring: it joins the container's."""
    host_serial = host_probe(cbin, "keyring")[0]
    c = running(pre=lambda b: add_probe(b, cbin, _BundleRootfs),
                args=("sh", "-c", "/probe keyring > /dev/shm/key; exec sleep 60"))
    init = oci("exec", c, "cat", "/dev/shm/key").stdout.split()
    assert len(init) == 2 and init[1].endswith(c), init
    res = oci("exec", c, "/probe", "keyring")
    assert res.returncode == 0, str(res)
    serial, desc = res.stdout.split()
    assert serial != host_serial, f"exec'd process has the host's session keyring: {desc}"
    assert serial == init[0], (res.stdout, init)


# ================================================================================================ LSM
def _lsm_enabled():
    from ocirun import lsm

    h = lsm.Host()
    return h.apparmor_enabled() or h.selinux_enabled()


@pytest.mark.parametrize("where,key,value,words", [
    ("process", "apparmorProfile", "ocirun-test-profile", ("process.apparmorProfile", "AppArmor")),
    ("process", "selinuxLabel", "system_u:system_r:container_t:s0", ("process.selinuxLabel", "SELinux")),
    ("linux", "mountLabel", "system_u:object_r:container_file_t:s0", ("linux.mountLabel", "SELinux")),
])
def test_lsm_label_refused_on_host_without_it(sh, where, key, value, words):
    if _lsm_enabled():
        pytest.skip("this host has AppArmor or SELinux enabled")
    res, _ = sh("echo should-not-run", rc=None, edit=lambda cfg: cfg[where].update({key: value}))
    assert res.returncode != 0 and "should-not-run" not in res.stdout, str(res)
    for w in words:
        assert w in res.stderr, str(res)
    assert "not enabled" in res.stderr, str(res)


@pytest.mark.parametrize("flag,word", [("--apparmor", "apparmorProfile"), ("--process-label", "selinuxLabel")])
def test_lsm_label_refused_on_exec(oci, running, flag, word):
    if _lsm_enabled():
        pytest.skip("this host has AppArmor or SELinux enabled")
    c = running()
    res = oci("exec", flag, "some_label_t", c, "echo", "should-not-run")
    assert res.returncode != 0 and "should-not-run" not in res.stdout, str(res)
    assert word in res.stderr and "not enabled" in res.stderr, str(res)


# ================================================================================================ non-dumpable
# The observable: a process that has the same uid/gid as the target and a superset of its permitted capabilities,
# but no CAP_SYS_PTRACE, may readlink /proc/PID/exe (and open /proc/PID/mem) exactly when the target is
# dumpable. The runtime is run with CAP_SYS_PTRACE dropped from its bounding set (setpriv), and the container's
# processes get every other capability, so that dumpability is the only thing that differs.
def _all_but_ptrace():
    return [n for n in kernel_caps() if n not in ("CAP_SYS_PTRACE", "CAP_SYS_RESOURCE")]


def _caps_all_but_ptrace(cfg):
    names = _all_but_ptrace()
    cfg["process"]["capabilities"] = {k: list(names) for k in ("bounding", "effective", "permitted")}
    cfg["process"]["noNewPrivileges"] = False


PEEK = ('for p in {pids}; do if readlink /proc/$p/exe >/dev/null 2>&1; then echo "$p exe=ok"; '
        'else echo "$p exe=denied"; fi; if (: < /proc/$p/mem) 2>/dev/null; then echo "$p mem=ok"; '
        'else echo "$p mem=denied"; fi; done; true')


def _setpriv():
    sp = shutil.which("setpriv")
    if not sp:
        pytest.skip("setpriv (util-linux) is needed to run the runtime without CAP_SYS_PTRACE")
    return [sp, "--bounding-set", "-sys_ptrace"]


def test_init_is_not_dumpable_while_created(oci, bundle, cid, tmp_path):
    pre = _setpriv()
    b = bundle(["sleep", "60"], edit=_caps_all_but_ptrace)
    c = cid()
    with open(tmp_path / "create.out", "w") as out:
        r = subprocess.run(pre + oci.argv("create", "--bundle", b, c), stdin=subprocess.DEVNULL, stdout=out,
                           stderr=subprocess.STDOUT, timeout=30)
    try:
        assert r.returncode == 0, (tmp_path / "create.out").read_text()
        pid = oci.state(c)["pid"]
        host = subprocess.run(pre + ["sh", "-c", PEEK.format(pids=pid)], capture_output=True, text=True)
        inside = oci("exec", c, "sh", "-c", PEEK.format(pids=1))
        assert inside.returncode == 0, str(inside)
        assert f"{pid} exe=denied" in host.stdout and f"{pid} mem=denied" in host.stdout, \
            f"the runtime's init is dumpable while created (seen from the host):\n{host.stdout}{host.stderr}"
        assert "=ok" not in inside.stdout, f"the runtime's init is dumpable while created:\n{inside.stdout}"
        # control: once the container's own program runs (dumpable, same ids and capabilities) both see it
        assert oci("start", c).returncode == 0
        time.sleep(0.05)
        host = subprocess.run(pre + ["sh", "-c", PEEK.format(pids=pid)], capture_output=True, text=True)
        inside = oci("exec", c, "sh", "-c", PEEK.format(pids=1))
        assert "denied" not in host.stdout and "exe=ok" in host.stdout, host.stdout
        assert "denied" not in inside.stdout and "exe=ok" in inside.stdout, str(inside)
    finally:
        oci("delete", "--force", c)


def _helper_pid(stop_file, wait_for):
    def read():
        try:
            with open(stop_file) as f:
                return f.read().split()
        except FileNotFoundError:
            return None
    return int(wait_for(read, timeout=10, what="the exec helper to reach its stop point")[0])


def _sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    st = os.stat(path)
    return h.hexdigest(), st.st_mtime_ns, st.st_size


def host_binaries(ocirun_bin):
    py = os.path.realpath(os.path.join(os.path.dirname(ocirun_bin), "python3"))
    return {p: _sha(p) for p in {py, os.path.realpath(ocirun_bin)} if os.path.isfile(p)}


def test_exec_helper_is_not_dumpable_inside_the_container(oci, running, tmp_path, wait_for, ocirun_bin):
    """`ocirun exec` blocked right after joining the namespaces: a container process (same ids, a superset of
    capabilities but CAP_SYS_PTRACE) can neither readlink its /proc/PID/exe nor open it, for reading or writing;
    the same process can reach the container's own (dumpable) init, which shows the check is meaningful."""
    pre = _setpriv()
    before = host_binaries(ocirun_bin)
    # The helper writes its stop file after entering the container's mount namespace: the directory is bind
    # mounted into the container at the same path, so that the file is where the test looks.
    stopdir = tmp_path / "stopdir"
    stopdir.mkdir()

    def edit(cfg):
        _caps_all_but_ptrace(cfg)
        cfg["mounts"].append({"destination": str(stopdir), "type": "bind", "source": str(stopdir),
                              "options": ["rbind", "rw"]})
        cfg["root"]["readonly"] = False
    c = running(edit=edit)
    stop = stopdir / "stop"
    env = dict(os.environ, OCIRUN_TEST_STOP_AT="exec: joined", OCIRUN_TEST_STOP_FILE=str(stop))
    helper = subprocess.Popen(pre + oci.argv("exec", c, "true"), env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        hpid = _helper_pid(stop, wait_for)
        script = (PEEK.format(pids=f"{hpid} 1") +
                  f"; if cat /proc/{hpid}/exe > /dev/null 2>&1; then echo read=ok; else echo read=denied; fi"
                  f"; if (: >> /proc/{hpid}/exe) 2>/dev/null; then echo write=ok; else echo write=denied; fi"
                  f"; tr '\\0' ' ' < /proc/{hpid}/cmdline; echo")
        res = oci("exec", c, "sh", "-c", script)
        assert res.returncode == 0, str(res)
        assert "ocirun" in res.stdout.splitlines()[-1], f"pid {hpid} is not the exec helper: {res.stdout}"
        assert "1 exe=ok" in res.stdout and "1 mem=ok" in res.stdout, res.stdout  # control
        assert f"{hpid} exe=denied" in res.stdout and f"{hpid} mem=denied" in res.stdout, res.stdout
        assert "read=denied" in res.stdout and "write=denied" in res.stdout, res.stdout
    finally:
        helper.kill()
        helper.wait()
        oci("delete", "--force", c)
    assert host_binaries(ocirun_bin) == before


# ================================================================================================ fds
def fd_listing(text):
    """`ls -l /proc/X/fd` lines -> {fd: target} (target '' when unreadable)."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 9 and parts[0].startswith("l"):
            name = parts[8]
            if name.isdigit():
                out[int(name)] = parts[10] if len(parts) > 10 else ""
    return out


@pytest.fixture
def host_fds(tmp_path):
    """Host fds the caller hands ocirun (inheritable, not --preserve-fds'd unless a test says so):
    3 -> file A, 4 -> file B, 5 -> a host directory holding a marker file, 6 -> that directory's parent.
    Returns ([fds in this process, in that order], marker name, host directory)."""
    hostdir = tmp_path / "hostdir"
    hostdir.mkdir()
    marker = "HOST-MARKER-" + uuid.uuid4().hex[:8]
    (hostdir / marker).write_text("host\n")
    (tmp_path / "A").write_text("content-A\n")
    (tmp_path / "B").write_text("content-B\n")
    opened = [os.open(tmp_path / "A", os.O_RDONLY), os.open(tmp_path / "B", os.O_RDONLY),
              os.open(hostdir, os.O_RDONLY | os.O_DIRECTORY), os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)]
    try:
        yield opened, marker, str(hostdir)
    finally:
        for fd in opened:
            os.close(fd)


def run_with_fds(argv, opened, tmp_path, env=None, shell_prefix="exec"):
    """Run argv with `opened` as its fds 3, 4, ... (inheritable), through bash (which moves them there);
    stdout/stderr to files, never pipes. shell_prefix: what precedes `"$@"` (e.g. 'LISTEN_PID=$$ exec')."""
    bash = shutil.which("bash")
    assert bash, "bash is needed to place the fds"
    out, err = tmp_path / f"o{uuid.uuid4().hex[:6]}", tmp_path / f"e{uuid.uuid4().hex[:6]}"
    moved = []
    try:
        for fd in opened:
            m = 300 + len(moved)
            os.dup2(fd, m, inheritable=True)
            moved.append(m)
        script = ("exec " + " ".join(f"{3 + i}<&{m} {m}<&-" for i, m in enumerate(moved)) + "; "
                  + shell_prefix + ' "$@"')
        with open(out, "w") as o, open(err, "w") as e:
            r = subprocess.run([bash, "-c", script, "bash", *argv], stdin=subprocess.DEVNULL, stdout=o, stderr=e,
                               env=env, pass_fds=moved, timeout=30)
    finally:
        for m in moved:
            os.close(m)
    return r.returncode, out.read_text(), err.read_text()


def test_no_fd_survives_into_run(oci, bundle, cid, host_fds, tmp_path):
    opened, marker, _ = host_fds
    b = bundle(["sh", "-c", "ls -l /proc/1/fd; true"])
    rc, out, err = run_with_fds(oci.argv("run", "--bundle", b, cid()), opened, tmp_path)
    assert rc == 0, err
    assert sorted(fd_listing(out)) == [0, 1, 2], out


def test_no_fd_survives_into_exec(oci, running, host_fds, tmp_path):
    opened, _, _ = host_fds
    c = running()
    rc, out, err = run_with_fds(oci.argv("exec", c, "sh", "-c", "ls -l /proc/$$/fd; true"), opened, tmp_path)
    assert rc == 0, err
    assert sorted(fd_listing(out)) == [0, 1, 2], out


PRESERVE_SCRIPT = ("ls -l /proc/$$/fd; for n in 3 4 5 6; do if [ -e /proc/$$/fd/$n ]; then echo fd$n=yes; fi; done; "
                   "cat <&3; cat <&4; true")


def test_preserve_fds_run(oci, bundle, cid, host_fds, tmp_path):
    opened, marker, _ = host_fds
    b = bundle(["sh", "-c", PRESERVE_SCRIPT])
    rc, out, err = run_with_fds(oci.argv("run", "--preserve-fds", "2", "--bundle", b, cid()), opened, tmp_path)
    assert rc == 0, err
    assert sorted(fd_listing(out)) == [0, 1, 2, 3, 4], out
    assert "content-A" in out and "content-B" in out and "fd5=yes" not in out and marker not in out, out


def test_preserve_fds_exec(oci, running, host_fds, tmp_path):
    opened, marker, _ = host_fds
    c = running()
    rc, out, err = run_with_fds(oci.argv("exec", "--preserve-fds", "1", c, "sh", "-c", PRESERVE_SCRIPT),
                                opened, tmp_path)
    assert rc == 0, err
    assert sorted(fd_listing(out)) == [0, 1, 2, 3], out
    assert "content-A" in out and "content-B" not in out, out


LISTEN_SCRIPT = ("echo LISTEN_FDS=$LISTEN_FDS LISTEN_PID=$LISTEN_PID; "
                 "for n in 3 4 5 6; do if [ -e /proc/$$/fd/$n ]; then echo fd$n=yes; fi; done; cat <&3; true")


@pytest.mark.parametrize("runtime", ["ocirun", "runc"])
def test_socket_activation_listen_fds(request, bundle, cid, host_fds, tmp_path, runtime):
    """LISTEN_FDS=2 with LISTEN_PID = the runtime's pid: fds 3, 4 reach the container (before --preserve-fds
    ones), with LISTEN_FDS=2 and LISTEN_PID=1 in its environment. runc and ocirun alike."""
    r = request.getfixturevalue("oci" if runtime == "ocirun" else "runc")
    opened, _, _ = host_fds
    b = bundle(["sh", "-c", LISTEN_SCRIPT])
    env = dict(os.environ, LISTEN_FDS="2")
    rc, out, err = run_with_fds(r.argv("run", "--preserve-fds", "1", "--bundle", b, cid()), opened, tmp_path,
                                env=env, shell_prefix="LISTEN_PID=$$ exec")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == "LISTEN_FDS=2 LISTEN_PID=1", out
    assert [x for x in lines if x.startswith("fd")] == ["fd3=yes", "fd4=yes", "fd5=yes"], out
    assert "content-A" in out


def test_socket_activation_for_another_pid_is_ignored(oci, bundle, cid, host_fds, tmp_path):
    opened, _, _ = host_fds
    b = bundle(["sh", "-c", LISTEN_SCRIPT])
    env = dict(os.environ, LISTEN_FDS="2", LISTEN_PID="1")
    rc, out, err = run_with_fds(oci.argv("run", "--bundle", b, cid()), opened, tmp_path, env=env)
    assert rc == 0, err
    assert out.splitlines()[0] == "LISTEN_FDS= LISTEN_PID=", out
    assert "fd3=yes" not in out, out


# ================================================================================================ CVE-2024-21626
CWD_SCRIPT = "pwd -P || echo PWD-FAILED; ls -a; ls -a ..; readlink /proc/self/cwd"


def _assert_cwd_contained(rc, out, err, n, marker, hostdir):
    if rc != 0:
        assert "cwd" in err, f"fd {n}: create/exec failed without naming process.cwd: {err!r}"
        return
    host_paths = (hostdir, os.path.dirname(hostdir))
    assert marker not in out and "PWD-FAILED" not in out and not any(p in out for p in host_paths), \
        f"fd {n}: the container's cwd is a host directory:\n{out}"


@pytest.mark.parametrize("n", range(3, 11))
def test_cwd_proc_self_fd_run(oci, bundle, cid, host_fds, tmp_path, n):
    """process.cwd = /proc/self/fd/N while the caller leaks host directory fds (5, 6): create fails (naming
    process.cwd) or the cwd is inside the container."""
    opened, marker, hostdir = host_fds
    b = bundle(["sh", "-c", CWD_SCRIPT], edit=set_process(cwd=f"/proc/self/fd/{n}"))
    rc, out, err = run_with_fds(oci.argv("run", "--bundle", b, cid()), opened, tmp_path)
    _assert_cwd_contained(rc, out, err, n, marker, hostdir)
    if rc != 0:
        assert "process.cwd" in err, f"fd {n}: unclear error: {err!r}"


@pytest.mark.parametrize("n", range(3, 11))
def test_cwd_proc_self_fd_exec(oci, running, host_fds, tmp_path, n):
    opened, marker, hostdir = host_fds
    c = running()
    rc, out, err = run_with_fds(oci.argv("exec", "--cwd", f"/proc/self/fd/{n}", c, "sh", "-c", CWD_SCRIPT),
                                opened, tmp_path)
    _assert_cwd_contained(rc, out, err, n, marker, hostdir)


def test_args_through_leaked_host_fd_refused(oci, bundle, cid, running, host_fds, tmp_path):
    """args[0] = /proc/self/fd/5/prog, fd 5 a host directory the caller leaked: the host's program must not run."""
    opened, marker, hostdir = host_fds
    with open(os.path.join(hostdir, "prog"), "w") as f:
        f.write("#!/bin/sh\necho RAN-HOST-PROGRAM\n")
    os.chmod(os.path.join(hostdir, "prog"), 0o755)
    b = bundle(["/proc/self/fd/5/prog"])
    rc, out, err = run_with_fds(oci.argv("run", "--bundle", b, cid()), opened, tmp_path)
    assert rc != 0 and "RAN-HOST-PROGRAM" not in out, (rc, out, err)
    c = running()
    rc, out, err = run_with_fds(oci.argv("exec", c, "/proc/self/fd/5/prog"), opened, tmp_path)
    assert rc != 0 and "RAN-HOST-PROGRAM" not in out, (rc, out, err)


# ================================================================================================ CVE-2019-5736
def _plant(kind, cbin):
    """Put the attack program into a rootfs; returns (pre(bundle_dir), path in the container)."""
    def pre(b):
        root = os.path.join(b, "rootfs")
        if kind == "shebang":
            _write_exec(os.path.join(root, "pwn"), "#!/proc/self/exe\nprint('PWNED')\n")
        elif kind == "nested":
            _write_exec(os.path.join(root, "pwn0"), "#!/proc/self/exe\nprint('PWNED')\n")
            _write_exec(os.path.join(root, "pwn"), "#!/pwn0\n")
        elif kind == "symlink":
            os.symlink("/proc/self/exe", os.path.join(root, "pwn"))
        elif kind == "elf-interp":
            shutil.copy2(cbin["interp"], os.path.join(root, "pwn"))
    return pre


def _write_exec(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)


KINDS = ["shebang", "nested", "symlink", "elf-interp"]


@pytest.mark.parametrize("kind", KINDS)
def test_proc_self_exe_program_refused_at_create(oci, bundle, cid, cbin, ocirun_bin, kind):
    before = host_binaries(ocirun_bin)
    b = bundle(["/pwn"])
    _plant(kind, cbin)(b)
    res = oci("run", "--bundle", b, cid())
    assert res.returncode != 0 and "PWNED" not in res.stdout, str(res)
    assert "refus" in res.stderr and ("/proc" in res.stderr or "procfs" in res.stderr), str(res)
    assert host_binaries(ocirun_bin) == before


@pytest.mark.parametrize("kind", KINDS)
def test_proc_self_exe_program_refused_on_exec(oci, running, cbin, ocirun_bin, kind):
    before = host_binaries(ocirun_bin)
    c = running(pre=_plant(kind, cbin))
    res = oci("exec", c, "/pwn")
    assert res.returncode != 0 and "PWNED" not in res.stdout, str(res)
    assert "refus" in res.stderr and ("/proc" in res.stderr or "procfs" in res.stderr), str(res)
    # the container is unharmed and still usable
    assert oci("exec", c, "true").returncode == 0
    assert host_binaries(ocirun_bin) == before
