"""Rootless podman drives the runtime (issue 14, item 3): podman 4.3 run by a real unprivileged user that the bed
creates (subordinate uid/gid ranges, XDG_RUNTIME_DIR, its own containers.conf and storage.conf, the image loaded
into its own storage, nothing pulled) and removes. See podman_rootless_env.py.

Every scenario runs under ocirun and under runc (parametrized: test_x[ocirun], test_x[runc]) with the same
assertions, made on what the container sees from inside (id, /proc/self/uid_map, /proc/self/mounts, network
interfaces) and on the host (the container's process's uids, owners of files written through bind mounts, the
runtime's state dir). The runtimes are named in the user's containers.conf [engine.runtimes] and every podman
call passes --runtime NAME.

    .venv/bin/pytest tests/integration/test_podman_rootless.py                # both runtimes
    .venv/bin/pytest tests/integration/test_podman_rootless.py -k runc        # the harness under runc alone
OCIRUN_TEST_RUNTIME=PATH: the ocirun to test; OCIRUN_TEST_RUNC=PATH: the runc; OCIRUN_TEST_ROOTLESS_STORAGE_DRIVER
(overlay | vfs); OCIRUN_TEST_WRAP=0: no logging wrapper around the runtimes.
Needs root (to create the user), podman, conmon, uidmap (newuidmap/newgidmap), passwd (useradd), and slirp4netns
for the default-network test (which fails, not skips, without it). After each test nothing of it may be left (containers, runtime state,
processes other than the user's pause process); the session's teardown fails if anything of the user is left
on the host (processes, files, mounts, /etc/subuid lines, the user itself).
"""
import os
import re
import socket
import time
import uuid

import pytest

import enginebed  # (tests/integration is on sys.path: see conftest)
import podman_rootless_env as prl

OCIRUN = prl.default_runtime()
RUNTIMES = ("ocirun", "runc")
_MISSING = prl.missing_requirements(OCIRUN)

pytestmark = [
    pytest.mark.engine,
    pytest.mark.root,
    pytest.mark.skipif(bool(_MISSING), reason="; ".join(_MISSING) or "ok"),
]


@pytest.fixture
def host_snapshot():
    """Replaces conftest's per-test checker (made for containers named by a test's id prefix): here the `rt`
    fixture checks after each test and the bed after the module. No snapshot of the host's mounts either: rootless
    podman and its runtimes mount only in the user's own mount namespaces, never in the host's, so a new host
    mount under /tmp while this module runs is another session's (the bed still fails on any mount under its
    own dirs)."""
    return None


@pytest.fixture(scope="module")
def bed():
    yield from enginebed.serve(prl.PodmanRootlessEnv({"ocirun": OCIRUN, "runc": prl.runc_path()}))


@pytest.fixture(params=RUNTIMES)
def rt(request, bed):
    """The runtime's name in the user's containers.conf. After the test: no container, no runtime state, no
    process of the user but its pause process (bounded wait for podman's asynchronous clean-up)."""
    name = request.param
    yield name
    rep = getattr(request.node, "_ocirun_rep_call", None)
    failed = rep is None or rep.failed  # a failed test never reached its clean-up: leftovers expected, not reported
    problems = _settle(bed, timeout=5 if failed else 15)
    if problems:
        bed.podman("rm", "-a", "-f", "-t", "0", fail_fast=False)
        if not failed:
            pytest.fail(f"{name}: left after the test:\n  " + "\n  ".join(problems), pytrace=False)


def _settle(bed, timeout=15):
    end = time.monotonic() + timeout
    while True:
        problems = []
        ids = bed.container_ids()
        if ids:
            problems.append(f"containers: {sorted(ids)}")
        problems += [f"runtime state: {d}" for d in bed.state_dirs()]
        pause = set(bed.pause_pids())
        others = {p: c for p, c in bed.user_procs().items() if p not in pause}
        if others:
            problems.append(f"processes: {others}")
        if not problems or time.monotonic() > end:
            return problems
        time.sleep(0.1)


def _out(bed, res):
    return (f"exit {res.returncode}\nstdout: {res.stdout!r}\nstderr: {res.stderr!r}\n"
            f"runtime calls (tail):\n{bed.calls_tail(2500)}")


def _map(text):
    """Rows of a /proc/PID/[ug]id_map."""
    return [tuple(int(x) for x in line.split()) for line in text.strip().splitlines()]


def _sections(stdout):
    return stdout.split("--\n")


def _status_ids(pid):
    with open(f"/proc/{pid}/status") as f:
        st = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
    return [int(x) for x in st["Uid"].split()], [int(x) for x in st["Gid"].split()]


def _mount_opts(mounts, target):
    """The options of the last mount at `target` in /proc/self/mounts text."""
    opts = None
    for line in mounts.splitlines():
        f = line.split()
        if len(f) >= 4 and f[1] == target:
            opts = f[3].split(",")
    return opts


def _vol(bed, name, rt, mode=0o755, owner=None):
    d = bed.p("vols", f"{name}-{rt}")
    os.makedirs(d)
    os.chmod(d, mode)
    if owner:
        os.chown(d, *owner)
    return d


def _start(bed, rt, *args):
    """`run -d --name ...`; when that fails, the container podman made is removed before the test fails."""
    name = f"prl-{rt}-{uuid.uuid4().hex[:8]}"
    res = bed.run(rt, "-d", "--name", name, *args)
    if res.returncode != 0:
        bed.podman("rm", "-f", "-t", "0", name, runtime=rt)
    assert res.returncode == 0, _out(bed, res)
    cid = res.stdout.strip().splitlines()[-1]
    bed.ids.add(cid)
    return cid


def _rm(bed, rt, cid):
    res = bed.podman("rm", "-f", "-t", "0", cid, runtime=rt)
    assert res.returncode == 0, _out(bed, res)


# ----------------------------------------------------------------------------------------------- scenarios
def test_run_rm(bed, rt):
    """`podman run --rm`: the container's root is the user (its rootless namespace: the user's uid, then its
    subordinate ranges), pid 1, the default devices work (podman lists none: the runtime provides them, bind
    mounts of the host's nodes in a user namespace), the exit code comes back, and nothing is left."""
    u = bed.user
    res = bed.run(rt, "--rm", "--network", "none", bed.image, "sh", "-c",
                  "id -u; id -g; echo $$; echo x > /dev/null && head -c 5 /dev/zero | wc -c; echo --;"
                  "cat /proc/self/uid_map; echo --; cat /proc/self/gid_map")
    assert res.returncode == 0, _out(bed, res)
    ids, uid_map, gid_map = _sections(res.stdout)
    assert ids.split() == ["0", "0", "1", "5"], _out(bed, res)
    assert _map(uid_map) == u.rootless_map("uid"), _out(bed, res)
    assert _map(gid_map) == u.rootless_map("gid"), _out(bed, res)

    res = bed.run(rt, "--rm", "--network", "none", bed.image, "sh", "-c", "exit 7")
    assert res.returncode == 7, _out(bed, res)
    assert not bed.container_ids()
    assert not bed.state_dirs()


def test_detached_exec_stop(bed, rt):
    """`run -d`, `exec`, `stop`, `rm`: the container's process runs on the host as the user (container root),
    in a user namespace other than the host's; exec runs in it with the exit code; stop ends it."""
    u = bed.user
    cid = _start(bed, rt, "--network", "none", bed.image, "sleep", "300")
    try:
        info = bed.inspect(cid, runtime=rt)
        assert info is not None and info["State"]["Status"] == "running", info and info["State"]
        pid = info["State"]["Pid"]
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert f.read().split(b"\0")[:2] == [b"sleep", b"300"]
        assert _status_ids(pid) == ([u.uid] * 4, [u.gid] * 4)
        assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
        assert os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
        assert os.path.isdir(os.path.join(u.xdg_runtime_dir, rt, cid)), \
            f"no state dir {rt}/{cid} in {u.xdg_runtime_dir}: {bed.state_dirs()}"

        res = bed.podman("exec", cid, "sh", "-c", "id -u; id -g; cat /proc/1/cmdline | tr '\\0' ' '", runtime=rt)
        assert res.returncode == 0, _out(bed, res)
        assert res.stdout.split() == ["0", "0", "sleep", "300"], _out(bed, res)
        res = bed.podman("exec", "-u", "1000:1002", cid, "sh", "-c", "id -u; id -g", runtime=rt)
        assert res.returncode == 0, _out(bed, res)
        assert res.stdout.split() == ["1000", "1002"], _out(bed, res)
        res = bed.podman("exec", cid, "sh", "-c", "exit 3", runtime=rt)
        assert res.returncode == 3, _out(bed, res)
        assert bed.inspect(cid, runtime=rt)["State"]["Status"] == "running"

        res = bed.podman("stop", "-t", "2", cid, runtime=rt)
        assert res.returncode == 0, _out(bed, res)
        state = bed.inspect(cid, runtime=rt)["State"]
        assert state["Status"] == "exited" and state["Running"] is False, state
        # sleep as pid 1 ignores SIGTERM, so podman escalates to SIGKILL after 2 s: 128+9
        assert state["ExitCode"] in (137, 143), state
        assert pid not in bed.user_procs()
    finally:
        _rm(bed, rt, cid)
    assert bed.inspect(cid, runtime=rt) is None
    assert not os.path.exists(os.path.join(u.xdg_runtime_dir, rt, cid))


def test_userns_keep_id(bed, rt):
    """`--userns=keep-id`: the container runs as the user's own uid/gid (a nested user namespace maps it to the
    rootless namespace's 0, which is the user), and a file written through a bind mount is the user's on the
    host."""
    u = bed.user
    data = _vol(bed, "keepid", rt, owner=(u.uid, u.gid))
    res = bed.run(rt, "--rm", "--network", "none", "--userns=keep-id", "-v", f"{data}:/data", bed.image, "sh", "-c",
                  "id -u; id -g; id -un; echo --; cat /proc/self/uid_map; echo --; cat /proc/self/gid_map; echo --;"
                  "echo kept > /data/by-keep-id && echo wrote")
    assert res.returncode == 0, _out(bed, res)
    ids, uid_map, gid_map, wrote = _sections(res.stdout)
    assert ids.split() == [str(u.uid), str(u.gid), u.name], _out(bed, res)
    assert (u.uid, 0, 1) in _map(uid_map), _out(bed, res)
    assert (u.gid, 0, 1) in _map(gid_map), _out(bed, res)
    assert wrote == "wrote\n", _out(bed, res)
    st = os.stat(os.path.join(data, "by-keep-id"))
    assert (st.st_uid, st.st_gid) == (u.uid, u.gid)
    with open(os.path.join(data, "by-keep-id")) as f:
        assert f.read() == "kept\n"


def test_bind_mounts(bed, rt):
    """`-v SRC:DST` and `-v SRC:DST:ro`: the host's files are seen, /proc/self/mounts has rw and ro, a write to the
    ro one fails with EROFS, and files written through the rw one belong on the host to the user (container root)
    and to the subordinate ids of container uid 1000 / gid 1002."""
    u = bed.user
    rw = _vol(bed, "rw", rt, mode=0o777)
    ro = _vol(bed, "ro", rt)
    with open(os.path.join(ro, "hello"), "w") as f:
        f.write("from the host\n")
    script = ("cat /ro/hello; echo --; grep -E ' /(rw|ro) ' /proc/self/mounts; echo --;"
              "touch /ro/nope 2>&1; echo touch=$?; echo --; id -u > /rw/by-$(id -u) && echo wrote")
    res = bed.run(rt, "--rm", "--network", "none", "-v", f"{rw}:/rw", "-v", f"{ro}:/ro:ro", bed.image,
                  "sh", "-c", script)
    assert res.returncode == 0, _out(bed, res)
    hello, mounts, touch, wrote = _sections(res.stdout)
    assert hello == "from the host\n", _out(bed, res)
    assert "rw" in (_mount_opts(mounts, "/rw") or []), _out(bed, res)
    assert "ro" in (_mount_opts(mounts, "/ro") or []), _out(bed, res)
    assert "Read-only file system" in touch and "touch=1" in touch, _out(bed, res)
    assert wrote == "wrote\n", _out(bed, res)
    assert not os.path.exists(os.path.join(ro, "nope"))

    res = bed.run(rt, "--rm", "--network", "none", "-u", "1000:1002", "-v", f"{rw}:/rw", bed.image,
                  "sh", "-c", "id -u > /rw/by-$(id -u) && echo wrote")
    assert res.returncode == 0 and res.stdout == "wrote\n", _out(bed, res)
    owners = {n: (os.stat(os.path.join(rw, n)).st_uid, os.stat(os.path.join(rw, n)).st_gid)
              for n in os.listdir(rw)}
    assert owners == {"by-0": (u.uid, u.gid), "by-1000": (u.host_uid(1000), u.host_gid(1002))}, owners


def test_read_only(bed, rt):
    """`--read-only`: / is mounted ro (seen in /proc/self/mounts), a write there fails with EROFS, /tmp (podman's
    tmpfs for read-only containers) stays writable."""
    res = bed.run(rt, "--rm", "--network", "none", "--read-only", bed.image, "sh", "-c",
                  "grep -E ' / | /tmp ' /proc/self/mounts; echo --; touch /written 2>&1; echo touch=$?; echo --;"
                  "touch /tmp/ok && echo tmp-ok")
    assert res.returncode == 0, _out(bed, res)
    mounts, touch, tmp = _sections(res.stdout)
    assert "ro" in (_mount_opts(mounts, "/") or []), _out(bed, res)
    assert "rw" in (_mount_opts(mounts, "/tmp") or []), _out(bed, res)
    assert "Read-only file system" in touch and "touch=1" in touch, _out(bed, res)
    assert tmp == "tmp-ok\n", _out(bed, res)


def _host_ifaces():
    return sorted(os.listdir("/sys/class/net"))


def test_network_none(bed, rt):
    """`--network none`: a network namespace of its own with only lo."""
    res = bed.run(rt, "--rm", "--network", "none", bed.image, "sh", "-c",
                  "ls /sys/class/net; echo --; tail -n +3 /proc/net/dev | cut -d: -f1")
    assert res.returncode == 0, _out(bed, res)
    sysfs, procnet = _sections(res.stdout)
    assert sysfs.split() == ["lo"], _out(bed, res)
    assert procnet.split() == ["lo"], _out(bed, res)
    assert _host_ifaces() != ["lo"]  # the host has more: the container's "lo only" is a namespace of its own


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_default_network(bed, rt):
    """podman's default rootless network (slirp4netns): lo and tap0 with slirp's 10.0.2.100/24 and default route
    via 10.0.2.2, and a published port carries data from the container to the host's loopback."""
    if not enginebed.which("slirp4netns"):
        pytest.fail("slirp4netns is not installed (apt-get install slirp4netns): podman's default rootless network "
                    "needs it")
    port = _free_port()
    cid = _start(bed, rt, "-p", f"127.0.0.1:{port}:8080", bed.image, "sh", "-c",
                 "while true; do echo from-$(hostname) | nc -l -p 8080; done")
    try:
        info = bed.inspect(cid, runtime=rt)
        assert info["HostConfig"]["NetworkMode"] == "slirp4netns", info["HostConfig"]["NetworkMode"]
        res = bed.podman("exec", cid, "sh", "-c",
                         "ls /sys/class/net; echo --; ip -4 addr show tap0; echo --; ip route", runtime=rt)
        assert res.returncode == 0, _out(bed, res)
        ifaces, addr, route = _sections(res.stdout)
        assert ifaces.split() == ["lo", "tap0"], _out(bed, res)
        assert "inet 10.0.2.100/24" in addr, _out(bed, res)
        assert re.search(r"^default via 10\.0\.2\.2 dev tap0", route, re.M), _out(bed, res)
        slirps = [c for c in bed.user_procs().values() if "slirp4netns" in c.split(" ")[0]]
        assert slirps, bed.user_procs()

        got, end = b"", time.monotonic() + 15
        while time.monotonic() < end:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    got = s.recv(100)
            except OSError:
                got = b""
            if got:
                break
            time.sleep(0.2)  # the container's nc not listening yet: rootlessport closes the connection
        assert got == f"from-{cid[:12]}\n".encode(), (got, _out(bed, res))
    finally:
        _rm(bed, rt, cid)


def test_image_in_user_storage(bed, rt):
    """The image is in the user's own storage (loaded there, never pulled) and a container's writable layer is
    in the user's graphroot: a file the container's root writes appears there, owned by the user."""
    u = bed.user
    res = bed.podman("info", "--format", "{{.Store.GraphRoot}} {{.Store.RunRoot}}", runtime=rt)
    assert res.returncode == 0, _out(bed, res)
    assert res.stdout.split() == [bed.graphroot, bed.runroot], _out(bed, res)
    res = bed.podman("images", "--format", "{{.Repository}}:{{.Tag}}", runtime=rt)
    assert res.stdout.split() == [bed.image], _out(bed, res)

    cid = _start(bed, rt, "--network", "none", bed.image, "sleep", "300")
    try:
        marker = f"written-by-{rt}"
        res = bed.podman("exec", cid, "sh", "-c", f"echo {rt} > /{marker}", runtime=rt)
        assert res.returncode == 0, _out(bed, res)
        info = bed.inspect(cid, runtime=rt)
        upper = (info["GraphDriver"].get("Data") or {}).get("UpperDir")
        if upper:
            path = os.path.join(upper, marker)
        else:  # vfs: the container's layer dir somewhere in the graphroot
            path = next((os.path.join(d, marker) for d, _dirs, files in os.walk(bed.graphroot) if marker in files),
                        None)
        assert path and path.startswith(bed.graphroot + "/"), (path, info["GraphDriver"])
        st = os.stat(path)
        assert (st.st_uid, st.st_gid) == (u.uid, u.gid)
    finally:
        _rm(bed, rt, cid)


def test_containers_conf_names_ocirun(bed):
    """The user's containers.conf as the README gives it ([engine.runtimes] ocirun = [PATH], runtime = "ocirun")
    makes ocirun podman's runtime for that user without --runtime on the command line."""
    def podman(*args):  # no --runtime: the user's containers.conf decides
        return bed.run_client("podman", ["podman", *args], args)

    res = podman("info", "--format", "{{.Host.OCIRuntime.Name}} {{.Host.OCIRuntime.Path}}")
    assert res.returncode == 0, _out(bed, res)
    assert res.stdout.split() == ["ocirun", bed.runtimes["ocirun"]], _out(bed, res)
    res = podman("create", "--pull=never", "--network", "none", bed.image, "true")
    assert res.returncode == 0, _out(bed, res)
    cid = res.stdout.strip().splitlines()[-1]
    bed.ids.add(cid)
    try:
        assert bed.inspect(cid)["OCIRuntime"] == "ocirun"
    finally:
        assert podman("rm", "-f", cid).returncode == 0
    res = podman("run", "--rm", "--pull=never", "--network", "none", bed.image, "echo", "via-containers-conf")
    assert res.returncode == 0 and res.stdout == "via-containers-conf\n", _out(bed, res)
    problems = _settle(bed)
    assert not problems, problems


VIEW = ("cat /proc/self/mounts; echo --; grep -E '^(Cap|NoNewPrivs|Seccomp|Groups)' /proc/self/status; echo --;"
        "cat /proc/self/uid_map /proc/self/gid_map; id; umask; cat /proc/self/oom_score_adj; ulimit -a; echo --;"
        "stat -c '%n %A %u %g %t %T %N' /dev/* /dev/pts/* /dev/shm /dev/mqueue / /tmp /proc/sys /sys; echo --;"
        "cat /proc/self/cgroup; hostname; cat /etc/hostname; env | sort")


def _norm_view(text):
    """What may differ between two containers of the same image: podman's per-container storage paths, and the
    order of the mounts of one depth (podman's spec lists /etc/hosts, /etc/hostname, /dev/shm,
    /run/.containerenv in a different order from one container to the next)."""
    mounts, _, rest = re.sub(r"(lowerdir|upperdir|workdir)=[^,\s]+", r"\1=X", text).partition("--\n")
    return sorted(mounts.splitlines()) + ["--"] + rest.splitlines()


def test_same_view_as_runc(bed):
    """Compatibility: under rootless podman the container sees under ocirun what it sees under runc — mounts and
    their flags, capabilities, no_new_privs, seccomp, id maps, ids, umask, oom_score_adj, rlimits, the device
    nodes and their owners, cgroups, hostname, environment — in its init (`run --rm`) and in an exec'd
    process."""
    import difflib

    views = {}
    for rt in ("runc", "ocirun"):
        res = bed.run(rt, "--rm", "--network", "none", "--hostname", "same-view", bed.image, "sh", "-c", VIEW)
        assert res.returncode == 0, _out(bed, res)
        views[rt, "run"] = res.stdout
        cid = _start(bed, rt, "--network", "none", "--hostname", "same-view", bed.image, "sleep", "300")
        try:
            res = bed.podman("exec", cid, "sh", "-c", VIEW, runtime=rt)
            assert res.returncode == 0, _out(bed, res)
            views[rt, "exec"] = res.stdout
        finally:
            _rm(bed, rt, cid)
    for how in ("run", "exec"):
        a, b = _norm_view(views["runc", how]), _norm_view(views["ocirun", how])
        assert a == b, f"{how}: the container's view differs (- runc, + ocirun):\n" + "\n".join(
            difflib.unified_diff(a, b, "runc", "ocirun", lineterm="", n=1))
    problems = _settle(bed)
    assert not problems, problems
