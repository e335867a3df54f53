"""What a process in an ocirun container sees, compared with the host and, where it is the clearer oracle,
with runc on the same bundle: pid 1, hostname, namespaces, user and groups, umask, cwd, env, capabilities,
no_new_privs, rlimits, oom score, mounts (with masked and read-only paths), /dev, bind and tmpfs mounts, user
and time namespaces, joined namespaces, --no-pivot and sysctls. Containers run in the foreground
(`ocirun run`, whose stdout is the container's). The container has only busybox (rootfs/bin)."""
import os
import resource
import subprocess
import time

import pytest

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates real containers")]

# capability numbers from linux/capability.h (procstatus: an oracle independent of ocirun's table)
from procstatus import CAP, caps_of, mask, status_fields  # noqa: E402


def mountinfo(text):
    """mountinfo lines -> {mount_point: (fstype, per-mount options set, super options set, root)}."""
    out = {}
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        a, b = left.split(), right.split()
        out[a[4]] = (b[0], set(a[5].split(",")), set(b[2].split(",")) if len(b) > 2 else set(), a[3])
    return out


@pytest.fixture
def view(oci, bundle, cid):
    """view(script, edit=None, flags=(), rc=0, **top_level) -> Result of `ocirun run` of `sh -c script`."""
    def run(script, edit=None, flags=(), rc=0, **top):
        b = bundle(["sh", "-c", script], edit=edit, **top)
        res = oci("run", *flags, "--bundle", b, cid())
        if rc is not None:
            assert res.returncode == rc, str(res)
        run.last_bundle = b
        return res
    return run


def _drop_ns(cfg, *types):
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] not in types]


# ------------------------------------------------------------------------------------------ identity
def test_pid_1_and_hostname(view):
    res = view("echo $$; hostname", hostname="view-host")
    assert res.stdout.split() == ["1", "view-host"]


# the default spec's namespaces: a cgroup namespace only on a cgroup v2 host (as `runc spec`)
NS_NEW = ("uts", "pid", "ipc", "net", "mnt") + (("cgroup",) if os.path.exists("/sys/fs/cgroup/cgroup.controllers")
                                                else ())
NS_SHARED = ("user", "time") + (() if "cgroup" in NS_NEW else ("cgroup",))


def test_own_namespaces(view):
    script = "; ".join(f"readlink /proc/self/ns/{n}" for n in NS_NEW + NS_SHARED)
    inside = view(script).stdout.split()
    host = [os.readlink(f"/proc/self/ns/{n}") for n in NS_NEW + NS_SHARED]
    assert len(inside) == len(host), inside
    for name, i, h in zip(NS_NEW + NS_SHARED, inside, host):
        assert i.split(":")[0] == h.split(":")[0], (name, i, h)
        if name in NS_NEW:
            assert i != h, f"{name} namespace is the host's ({i})"
        else:  # not asked for: shared with the host
            assert i == h, f"{name} namespace is not the host's ({i} vs {h})"


def test_user_groups(view):
    def edit(cfg):
        cfg["process"]["user"] = {"uid": 1000, "gid": 1002, "additionalGids": [29, 1001]}
    res = view("id -u; id -g; grep -E '^(Uid|Gid|Groups):' /proc/self/status", edit=edit)
    lines = res.stdout.splitlines()
    assert lines[:2] == ["1000", "1002"]
    st = status_fields("\n".join(lines[2:]))
    assert st["Uid"].split() == ["1000"] * 4
    assert st["Gid"].split() == ["1002"] * 4
    assert sorted(map(int, st["Groups"].split())) == [29, 1001]


def test_default_user_has_no_supplementary_groups(view):
    st = status_fields(view("cat /proc/self/status").stdout)
    assert st["Uid"].split() == ["0"] * 4 and st["Gid"].split() == ["0"] * 4
    assert st["Groups"] == ""


@pytest.mark.parametrize("umask,want", [(None, "0022"), (0o027, "0027"), (0o077, "0077")])
def test_umask(view, umask, want):
    def edit(cfg):
        if umask is not None:
            cfg["process"]["user"]["umask"] = umask
    assert view("umask", edit=edit).stdout.strip() == want


@pytest.mark.parametrize("cwd", ["/tmp", "/new/work/dir"])
def test_cwd(view, bundle, cwd):
    def edit(cfg):
        cfg["process"]["cwd"] = cwd
    res = view("pwd; echo $PWD", edit=edit)
    assert res.stdout.split() == [cwd, cwd]
    # a cwd missing from the rootfs is created (in the rootfs, as runc does)
    assert os.path.isdir(os.path.join(view.last_bundle, "rootfs", cwd.lstrip("/")))


@pytest.mark.parametrize("uid,env,home", [
    (0, ["PATH=/bin:/usr/bin", "FOO=bar baz", "EMPTY="], "/root"),
    (1000, ["PATH=/bin", "A=1"], "/tmp"),           # HOME from rootfs/etc/passwd
    (0, ["PATH=/bin", "HOME=/custom"], None),        # given HOME is kept
    (4242, ["PATH=/bin"], "/"),                      # not in passwd: /
])
def test_env(view, uid, env, home):
    def edit(cfg):
        cfg["process"]["env"] = env
        cfg["process"]["user"] = {"uid": uid, "gid": uid}
    # The init's own environment as execve gave it (the shell adds PWD/SHLVL to what it exports later).
    # "; true" keeps sh as pid 1: were tr exec'd in its place, the environ opened by sh would read empty.
    res = view("tr '\\0' '\\n' < /proc/1/environ; true", edit=edit)
    want = list(env) + ([f"HOME={home}"] if home else [])
    assert sorted(res.stdout.splitlines()) == sorted(want)


# ------------------------------------------------------------------------------------------ privileges
CAPS_CFG = {
    "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SETUID", "CAP_DAC_OVERRIDE"],
    "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
    "effective": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
    "inheritable": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SETUID"],
    "ambient": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
}


def _caps_edit(uid, caps):
    def edit(cfg):
        cfg["process"]["user"] = {"uid": uid, "gid": uid}
        cfg["process"]["capabilities"] = caps
    return edit


def test_capabilities_non_root_exact(view, runc):
    """A non-root process without file capabilities keeps after execve: bounding, inheritable and ambient as
    set, permitted = effective = ambient. The config is chosen so that this is exactly what it asks for."""
    res = view("cat /proc/1/status", edit=_caps_edit(1000, CAPS_CFG))
    got = caps_of(res.stdout)
    assert got == {"CapBnd": mask(CAPS_CFG["bounding"]), "CapInh": mask(CAPS_CFG["inheritable"]),
                   "CapAmb": mask(CAPS_CFG["ambient"]), "CapPrm": mask(CAPS_CFG["permitted"]),
                   "CapEff": mask(CAPS_CFG["effective"])}, {k: hex(v) for k, v in got.items()}
    ref = runc("run", "--bundle", view.last_bundle, "caps-" + os.path.basename(view.last_bundle))
    assert ref.returncode == 0, str(ref)
    assert caps_of(ref.stdout) == got


def test_capabilities_default_root_like_runc(view, runc):
    res = view("cat /proc/1/status")
    got = caps_of(res.stdout)
    default = mask(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"])
    assert got == {"CapBnd": default, "CapPrm": default, "CapEff": default, "CapInh": 0, "CapAmb": 0}
    ref = runc("run", "--bundle", view.last_bundle, "caps-default")
    assert ref.returncode == 0, str(ref)
    assert caps_of(ref.stdout) == got


def test_capabilities_missing_sets_are_empty_like_runc(view, runc):
    """Only bounding given: the other sets are cleared (runc), so a non-root process has nothing."""
    res = view("cat /proc/1/status", edit=_caps_edit(1000, {"bounding": ["CAP_KILL", "CAP_CHOWN"]}))
    got = caps_of(res.stdout)
    assert got == {"CapBnd": mask(["CAP_KILL", "CAP_CHOWN"]), "CapPrm": 0, "CapEff": 0, "CapInh": 0, "CapAmb": 0}
    ref = runc("run", "--bundle", view.last_bundle, "caps-bnd")
    assert ref.returncode == 0, str(ref)
    assert caps_of(ref.stdout) == got


@pytest.mark.parametrize("nnp,want", [(True, "1"), (False, "0")])
def test_no_new_privs(view, nnp, want):
    def edit(cfg):
        cfg["process"]["noNewPrivileges"] = nnp
    assert status_fields(view("cat /proc/self/status", edit=edit).stdout)["NoNewPrivs"] == want


def test_rlimits(view):
    def edit(cfg):
        cfg["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 2048},
                                     {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]
    res = view("ulimit -n; ulimit -Hn; ulimit -c; ulimit -Hc", edit=edit)
    assert res.stdout.split() == ["512", "2048", "0", "0"]


def _have_cap(n):
    with open("/proc/self/status") as f:
        return bool(int(status_fields(f.read())["CapEff"], 16) & (1 << n))


def test_rlimit_hard_above_runtime_without_cap_sys_resource(view):
    if _have_cap(CAP["CAP_SYS_RESOURCE"]):
        pytest.skip("this host grants CAP_SYS_RESOURCE: raising the hard limit would succeed")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("RLIMIT_NOFILE is unlimited here")

    def edit(cfg):
        cfg["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": hard + 1000}]
    res = view("echo should-not-run", edit=edit, rc=None)
    assert res.returncode != 0, str(res)
    assert "RLIMIT_NOFILE" in res.stderr, str(res)
    assert "should-not-run" not in res.stdout


def test_oom_score_adj(view):
    def edit(cfg):
        cfg["process"]["oomScoreAdj"] = 345
    assert view("cat /proc/self/oom_score_adj", edit=edit).stdout.strip() == "345"


# ------------------------------------------------------------------------------------------ mounts
def test_default_mounts(view, runc):
    res = view("cat /proc/self/mountinfo")
    mi = mountinfo(res.stdout)
    assert mi["/"][3] != "/", "the root is the bundle's rootfs"
    assert "ro" in mi["/"][1], "root.readonly is true in the default spec"
    assert mi["/proc"][0] == "proc"
    assert mi["/dev"][0] == "tmpfs" and {"nosuid"} <= mi["/dev"][1] and "mode=755" in mi["/dev"][2]
    assert mi["/dev/pts"][0] == "devpts" and {"nosuid", "noexec"} <= mi["/dev/pts"][1]
    assert {"ptmxmode=666", "mode=620", "gid=5"} <= mi["/dev/pts"][2]
    assert mi["/dev/shm"][0] == "tmpfs" and {"nosuid", "noexec", "nodev"} <= mi["/dev/shm"][1]
    assert mi["/dev/mqueue"][0] == "mqueue"
    assert mi["/sys"][0] == "sysfs" and "ro" in mi["/sys"][1]
    cg = {mp: v for mp, v in mi.items() if mp.startswith("/sys/fs/cgroup/")}
    assert cg, "no cgroup hierarchies under /sys/fs/cgroup"
    for mp, v in cg.items():
        assert v[0] in ("cgroup", "cgroup2") and "ro" in v[1], (mp, v)
    # masked and read-only paths
    assert mi["/proc/acpi"][0] == "tmpfs" and "ro" in mi["/proc/acpi"][1]
    for p in ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"):
        assert "ro" in mi[p][1], p

    # the same mount points as runc shows for the same bundle
    ref = runc("run", "--bundle", view.last_bundle, "mounts-ref")
    assert ref.returncode == 0, str(ref)
    theirs = set(mountinfo(ref.stdout))
    ours = set(mi)
    # Deliberate difference: on a hybrid host ocirun also mounts the cgroup2 hierarchy (it places the
    # container in it too); runc 1.1 mounts only the v1 controllers.
    ours.discard("/sys/fs/cgroup/unified")
    assert ours == theirs, f"only ocirun: {sorted(ours - theirs)}; only runc: {sorted(theirs - ours)}"


def test_masked_paths(view):
    # what is masked is not empty on the host (else the check below would prove nothing)
    with open("/proc/timer_list") as f:
        assert f.read()
    assert os.listdir("/sys/firmware")  # (/proc/acpi may be empty on the host too: checked as a mount)
    script = ("cat /proc/kcore >/dev/null 2>&1 && echo kcore-readable; wc -c < /proc/keys; "
              "wc -c < /proc/timer_list; ls -A /proc/acpi | wc -l; ls -A /sys/firmware | wc -l; "
              "touch /proc/acpi/x 2>/dev/null && echo acpi-writable; echo end")
    out = view(script).stdout.split()
    assert out == ["0", "0", "0", "0", "end"], out


def test_readonly_paths(view):
    res = view("touch /proc/sys/x; echo rc=$?; echo 1 > /proc/sys/kernel/ns_last_pid; echo rc=$?; "
               "cat /proc/sys/kernel/ostype")
    out = res.stdout.split()
    assert out[:2] == ["rc=1", "rc=1"], str(res)
    assert out[2] == "Linux"  # still readable
    assert "Read-only file system" in res.stderr


@pytest.mark.parametrize("readonly", [True, False])
def test_root_readonly(view, readonly):
    res = view("touch /written 2>/dev/null; echo rc=$?", root={"path": "rootfs", "readonly": readonly})
    assert res.stdout.strip() == ("rc=1" if readonly else "rc=0")
    assert os.path.exists(os.path.join(view.last_bundle, "rootfs", "written")) == (not readonly)


# ------------------------------------------------------------------------------------------ /dev
def test_dev_nodes_and_symlinks(view):
    nodes = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9), "tty": (5, 0)}
    script = ("for n in " + " ".join(nodes) + "; do stat -c '%n %F %t %T %a %u %g' /dev/$n; done; "
              "for l in fd stdin stdout stderr ptmx; do echo /dev/$l $(readlink /dev/$l); done")
    lines = view(script).stdout.splitlines()
    got = {ln.split()[0]: ln.split()[1:] for ln in lines}
    for n, (ma, mi) in nodes.items():
        f = got[f"/dev/{n}"]
        # stat prints "character special file": the type spans three fields
        assert " ".join(f[:3]) == "character special file", (n, f)
        assert (int(f[3], 16), int(f[4], 16)) == (ma, mi), (n, f)
        assert f[5:] == ["666", "0", "0"], (n, f)
    assert got["/dev/fd"] == ["/proc/self/fd"]
    assert got["/dev/stdin"] == ["/proc/self/fd/0"]
    assert got["/dev/stdout"] == ["/proc/self/fd/1"]
    assert got["/dev/stderr"] == ["/proc/self/fd/2"]
    assert got["/dev/ptmx"] == ["pts/ptmx"]


def test_dev_null_and_zero_work(view):
    res = view("echo x > /dev/null && head -c 4 /dev/zero | wc -c && head -c 8 /dev/urandom | wc -c")
    assert res.stdout.split() == ["4", "8"]


def test_custom_device(view):
    def edit(cfg):
        cfg["linux"]["devices"] = [{"type": "c", "path": "/dev/mynull", "major": 1, "minor": 3,
                                    "fileMode": 0o600, "uid": 1000, "gid": 1001}]
    res = view("stat -c '%F %t %T %a %u %g' /dev/mynull", edit=edit)
    assert res.stdout.split() == ["character", "special", "file", "1", "3", "600", "1000", "1001"]


# ------------------------------------------------------------------------------------------ config mounts
def _host_dir(b, name, content=None, mode=0o755):
    d = os.path.join(b, name)
    os.makedirs(d)
    os.chmod(d, mode)
    if content is not None:
        with open(os.path.join(d, "hello"), "w") as f:
            f.write(content)
    return d


def test_bind_mounts_rw_and_ro(oci, bundle, cid):
    b = bundle(["sh", "-c", "cat /rw/hello /ro/hello; echo new > /rw/new; echo rc=$?; "
                "echo no > /ro/new 2>/dev/null; echo rc=$?; grep -E ' /(rw|ro) ' /proc/self/mountinfo"])
    rw = _host_dir(b, "host-rw", "from-rw\n")
    ro = _host_dir(b, "host-ro", "from-ro\n")
    cfg = bundle.config(b)
    cfg["mounts"] += [{"destination": "/rw", "type": "bind", "source": rw, "options": ["rbind"]},
                      {"destination": "/ro", "type": "bind", "source": ro, "options": ["bind", "ro", "nosuid"]}]
    bundle.save(b, cfg)
    res = oci("run", "-b", b, cid())
    assert res.returncode == 0, str(res)
    lines = res.stdout.splitlines()
    assert lines[:4] == ["from-rw", "from-ro", "rc=0", "rc=1"], str(res)
    with open(os.path.join(rw, "new")) as f:
        assert f.read() == "new\n"
    assert not os.path.exists(os.path.join(ro, "new"))
    mi = mountinfo("\n".join(lines[4:]))
    assert "ro" not in mi["/rw"][1] and {"ro", "nosuid"} <= mi["/ro"][1]


def test_bind_mount_relative_source_is_in_bundle(oci, bundle, cid):
    b = bundle(["cat", "/rel/hello"])
    _host_dir(b, "relsrc", "relative\n")
    cfg = bundle.config(b)
    cfg["mounts"].append({"destination": "/rel", "type": "bind", "source": "relsrc", "options": ["bind"]})
    bundle.save(b, cfg)
    res = oci("run", "-b", b, cid())
    assert res.returncode == 0 and res.stdout == "relative\n", str(res)


def test_tmpfs_mount_with_size(view):
    def edit(cfg):
        cfg["mounts"].append({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                              "options": ["nosuid", "nodev", "size=1m", "mode=1777"]})
    res = view("grep ' /scratch ' /proc/self/mountinfo; stat -c %a /scratch; "
               "dd if=/dev/zero of=/scratch/f bs=1024 count=2048 2>/dev/null; echo rc=$?", edit=edit)
    lines = res.stdout.splitlines()
    mi = mountinfo(lines[0])
    fstype, opts, sopts, _ = mi["/scratch"]
    assert fstype == "tmpfs" and {"nosuid", "nodev"} <= opts and "size=1024k" in sopts, lines[0]
    assert lines[1] == "1777"
    assert lines[2] != "rc=0", "a 2 MiB file fits in a 1 MiB tmpfs"


# ------------------------------------------------------------------------------------------ namespaces
UIDMAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]
GIDMAP = [{"containerID": 0, "hostID": 200000, "size": 65536}]  # not the uid map: a swap of the two is seen


def test_user_namespace(oci, bundle, cid):
    b = bundle(["sh", "-c", "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; "
                "touch /shared/by-root; touch /shared/by-1000 && chown 1000:1002 /shared/by-1000; echo done"])
    shared = _host_dir(b, "shared", mode=0o777)
    os.makedirs(os.path.join(b, "rootfs", "shared"))  # the mapped root may not create it in a host-owned rootfs
    cfg = bundle.config(b)
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = UIDMAP
    cfg["linux"]["gidMappings"] = GIDMAP
    cfg["linux"].pop("resources", None)
    cfg["process"]["capabilities"] = {k: ["CAP_CHOWN", "CAP_KILL"] for k in ("bounding", "effective", "permitted")}
    cfg["mounts"].append({"destination": "/shared", "type": "bind", "source": shared, "options": ["rbind"]})
    bundle.save(b, cfg)
    res = oci("run", "-b", b, cid())
    assert res.returncode == 0, str(res)
    lines = res.stdout.splitlines()
    assert lines[:2] == ["0", "0"]
    assert lines[2].split() == ["0", "100000", "65536"]
    assert lines[3].split() == ["0", "200000", "65536"]
    assert lines[-1] == "done"
    st = os.stat(os.path.join(shared, "by-root"))
    assert (st.st_uid, st.st_gid) == (100000, 200000)
    st = os.stat(os.path.join(shared, "by-1000"))
    assert (st.st_uid, st.st_gid) == (101000, 201002)


@pytest.fixture
def ns_holder(id_prefix):
    """A `sleep` in new uts and net namespaces (hostname set in them); yields its pid."""
    host = id_prefix + "joined"
    p = subprocess.Popen(["unshare", "--uts", "--net", "sh", "-c", f"hostname {host} && exec sleep 60"])
    try:
        end = time.monotonic() + 5
        while time.monotonic() < end:
            try:
                if os.readlink(f"/proc/{p.pid}/exe").endswith("sleep") or \
                        open(f"/proc/{p.pid}/cmdline", "rb").read().startswith(b"sleep"):
                    break
            except OSError:
                pass
            time.sleep(0.01)
        yield p.pid, host
    finally:
        p.kill()
        p.wait()


def test_join_namespaces_by_path(view, ns_holder):
    pid, host = ns_holder

    def edit(cfg):
        cfg.pop("hostname")
        _drop_ns(cfg, "uts", "network")
        cfg["linux"]["namespaces"] += [{"type": "uts", "path": f"/proc/{pid}/ns/uts"},
                                       {"type": "network", "path": f"/proc/{pid}/ns/net"}]
    res = view("hostname; readlink /proc/self/ns/uts; readlink /proc/self/ns/net", edit=edit)
    assert res.stdout.split() == [host, os.readlink(f"/proc/{pid}/ns/uts"), os.readlink(f"/proc/{pid}/ns/net")]
    # the holder's namespaces are unchanged by the container
    assert subprocess.run(["nsenter", "-t", str(pid), "-u", "hostname"], capture_output=True,
                          text=True).stdout.strip() == host


def test_time_namespace_offsets(view):
    if not os.path.exists("/proc/self/ns/time"):
        pytest.skip("no time namespaces in this kernel")
    boot, mono = 10 * 86400, 3600

    def edit(cfg):
        cfg["linux"]["namespaces"].append({"type": "time"})
        cfg["linux"]["timeOffsets"] = {"boottime": {"secs": boot, "nanosecs": 0},
                                       "monotonic": {"secs": mono, "nanosecs": 0}}
    with open("/proc/uptime") as f:
        before = float(f.read().split()[0])
    res = view("cat /proc/uptime; readlink /proc/self/ns/time", edit=edit)
    with open("/proc/uptime") as f:
        after = float(f.read().split()[0])
    inside = float(res.stdout.split()[0])
    assert before + boot - 1 <= inside <= after + boot + 1, (before, inside, after)
    assert res.stdout.split()[2] != os.readlink("/proc/self/ns/time")


def test_no_pivot(view):
    """--no-pivot (MS_MOVE + chroot): the same view as with pivot_root."""
    script = "echo $$; ls /; cut -d' ' -f5 /proc/self/mountinfo"
    pivoted = view(script).stdout.split()
    moved = view(script, flags=("--no-pivot",)).stdout.split()
    assert moved[0] == "1" and "bin" in moved and "proc" in moved
    assert sorted(moved) == sorted(pivoted)


def test_sysctl_in_owned_netns(view):
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        host_before = f.read()
    want = "0" if host_before.strip() == "1" else "1"

    def edit(cfg):
        cfg["linux"]["sysctl"] = {"net.ipv4.ip_forward": want}
    res = view("cat /proc/sys/net/ipv4/ip_forward", edit=edit)
    assert res.stdout.strip() == want
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        assert f.read() == host_before


@pytest.mark.parametrize("key,drop", [("kernel.shmmax", "ipc"), ("vm.swappiness", None),
                                      ("net.ipv4.ip_forward", "network")])
def test_sysctl_not_owned_refused(view, key, drop):
    path = "/proc/sys/" + key.replace(".", "/")
    with open(path) as f:
        before = f.read()

    def edit(cfg):
        cfg["linux"]["sysctl"] = {key: "1"}
        if drop:
            _drop_ns(cfg, drop)
    res = view("echo should-not-run", edit=edit, rc=None)
    assert res.returncode != 0, str(res)
    assert key in res.stderr, str(res)
    assert "should-not-run" not in res.stdout
    with open(path) as f:
        assert f.read() == before


def test_hostname_without_uts_namespace_fails(view):
    res = view("echo should-not-run", edit=lambda cfg: _drop_ns(cfg, "uts"), rc=None)
    assert res.returncode != 0, str(res)
    assert "hostname" in res.stderr.lower() and "uts" in res.stderr.lower(), str(res)
    assert "should-not-run" not in res.stdout
