"""Hostile root filesystems: symlinks to host paths at every path ocirun touches, a fake /proc (the
CVE-2019-16884 pattern), hard links and special files planted where ocirun creates mount points.

Each test records the host targets (content, mtime, directory listing, whether something is mounted on them)
before the run and checks them after: the host must be untouched. The container may run (with the link
resolved inside the rootfs, as runc does) or fail with `ocirun: ` lines; never a traceback or a hang. Where
runc's verdict is known (symlinked mount destinations, masked and read-only paths), the test requires that one
and checks from inside the container that the link was resolved in the rootfs (what its mount namespace has).
"""
import os
import stat

import pytest

from hostmounts import unescape
from relhelp import mount_points, no_traceback, one_line_error


class HostTarget:
    """A file or directory on the host that a hostile rootfs points at."""

    def __init__(self, path, kind="dir", content="host-owned\n"):
        self.path = path
        if kind == "dir":
            os.makedirs(path)
            with open(os.path.join(path, "sentinel"), "w") as f:
                f.write(content)
        else:
            with open(path, "w") as f:
                f.write(content)
        self.before = self.snap()

    def snap(self):
        st = os.lstat(self.path)
        entries = {}
        if stat.S_ISDIR(st.st_mode):
            for n in sorted(os.listdir(self.path)):
                p = os.path.join(self.path, n)
                s = os.lstat(p)
                entries[n] = (s.st_mode, s.st_size, s.st_mtime_ns,
                              open(p, "rb").read() if stat.S_ISREG(s.st_mode) else None)
            data = None
        else:
            data = open(self.path, "rb").read()
        mounted = [mp for mp in mount_points().values() if mp == self.path or mp.startswith(self.path + "/")]
        return (st.st_mode, st.st_mtime_ns, data, entries, mounted)

    def assert_untouched(self):
        assert self.snap() == self.before, f"host path {self.path} was changed by the container's creation"


def _run(oci, b, c, timeout=30):
    res = oci("run", "--bundle", b, c, timeout=timeout)
    no_traceback(res)
    return res


@pytest.fixture
def host_dir(tmp_path):
    """Host targets live under a /tmp directory of the test (outside any bundle)."""
    d = tmp_path / "host"
    d.mkdir()
    return str(d)


def _link(rootfs, inside, target):
    p = os.path.join(rootfs, inside.lstrip("/"))
    if os.path.lexists(p):
        if os.path.isdir(p) and not os.path.islink(p):
            os.rmdir(p) if not os.listdir(p) else __import__("shutil").rmtree(p)
        else:
            os.unlink(p)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    os.symlink(target, p)


# ------------------------------------------------------------------------------------------ symlinks to the host
def container_mounts(mountinfo_text):
    """{mount point: fstype} from the container's own /proc/self/mountinfo (mount points as it sees them)."""
    out = {}
    for line in mountinfo_text.splitlines():
        a = line.split()
        if len(a) < 10 or "-" not in a:
            continue
        out[unescape(a[4])] = a[a.index("-") + 1]
    return out


CGROUP_FS = "cgroup2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "tmpfs"  # v1/hybrid: a tmpfs
# case -> (where the link is planted, the mount destination that reaches it, the filesystem then mounted at the
#          link's target (+ the rest of the destination), or None: refused; the config mount whose filesystem would
#          cover the planted link, dropped so that the link is reached)
CASES = {
    "/proc": ("/proc", "/proc", None, None),  # proc and sysfs only on an ordinary directory (runc: CVE-2019-19921)
    "/sys": ("/sys", "/sys", None, None),
    "/dev": ("/dev", "/dev", "tmpfs", None),
    "/dev/shm": ("/dev/shm", "/dev/shm", "tmpfs", "/dev"),
    "/dev/mqueue": ("/dev/mqueue", "/dev/mqueue", "mqueue", "/dev"),
    "/sys/fs/cgroup": ("/sys/fs/cgroup", "/sys/fs/cgroup", CGROUP_FS, "/sys"),
    "/run/inner": ("/run", "/run/inner", "tmpfs", None),  # the link is a parent of the destination
}


@pytest.mark.parametrize("case", list(CASES))
def test_mount_destination_symlink_to_host(oci, bundle, cid, host_dir, case):
    """rootfs<where> -> a host directory (absolute link) on the way to a mount destination: the link is resolved
    inside the rootfs (as runc does), so the mount lands at rootfs/<host dir>: the container runs and, inside
    its own mount namespace, the link's target is a mount of that filesystem; the host directory is untouched.
    (A mount that followed the link to the host directory would land outside the rootfs, and be missing inside.)
    proc and sysfs are refused on a symlink, as runc refuses them."""
    where, dest, fstype, cover = CASES[case]
    target = HostTarget(os.path.join(host_dir, "t"))

    def edit(cfg):
        cfg["root"]["readonly"] = False
        if cover:
            cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] != cover]
        if not any(m["destination"] == dest for m in cfg["mounts"]):
            cfg["mounts"].append({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": ["size=64k"]})
    b = bundle(["cat", "/proc/self/mountinfo"], edit=edit)
    rootfs = bundle.rootfs(b)
    _link(rootfs, where, target.path)
    res = _run(oci, b, cid())
    if fstype is None:
        lines = one_line_error(res)
        assert any(f"{dest}: filesystem" in ln and "must be mounted on ordinary directory" in ln for ln in lines), \
            str(res)
        target.assert_untouched()
        return
    assert res.returncode == 0, f"the container did not run (runc runs it, the link resolved in the rootfs): {res}"
    inside = target.path + dest[len(where):]
    seen = container_mounts(res.stdout)
    assert seen.get(inside) == fstype, f"{where} -> {target.path}: no {fstype} mount at {inside} inside: {seen}"
    assert os.path.isdir(os.path.join(rootfs, inside.lstrip("/"))), "the link's target was not made in the rootfs"
    target.assert_untouched()


@pytest.mark.parametrize("kind", ["masked", "readonly"])
def test_masked_and_readonly_paths_symlink_to_host(oci, bundle, cid, host_dir, kind):
    """maskedPaths / readonlyPaths entries that are symlinks to host files and directories: resolved in the
    container (as runc does, after pivot_root), they reach the link targets' counterparts inside the rootfs
    (planted there with other content), which get masked / made read-only; the host's never show, nor change."""
    tfile = HostTarget(os.path.join(host_dir, "secret"), kind="file", content="host secret\n")
    tdir = HostTarget(os.path.join(host_dir, "d"))

    def edit(cfg):
        cfg["root"]["readonly"] = False
        key = "maskedPaths" if kind == "masked" else "readonlyPaths"
        cfg["linux"][key] = cfg["linux"].get(key, []) + ["/etc/evil-file", "/etc/evil-dir", "/proc/evil"]
    b = bundle(["sh", "-c", "echo file:; cat /etc/evil-file; echo dir:; ls /etc/evil-dir; "
                            "echo x >> /etc/evil-file && echo file-written; "
                            "touch /etc/evil-dir/new && echo dir-written; echo ok"], edit=edit)
    rootfs = bundle.rootfs(b)
    _link(rootfs, "/etc/evil-file", tfile.path)
    _link(rootfs, "/etc/evil-dir", tdir.path)
    # the targets' counterparts inside the rootfs: what the links resolve to in the container
    inner_file = os.path.join(rootfs, tfile.path.lstrip("/"))
    inner_dir = os.path.join(rootfs, tdir.path.lstrip("/"))
    os.makedirs(inner_dir)
    with open(inner_file, "w") as f:
        f.write("rootfs copy\n")
    with open(os.path.join(inner_dir, "rootfs-entry"), "w") as f:
        f.write("x\n")
    res = _run(oci, b, cid())
    assert res.returncode == 0, f"runc runs this config (the links resolved in the container): {res}"
    out = res.stdout.split()
    assert out[-1] == "ok", str(res)
    assert "host secret" not in res.stdout and "sentinel" not in res.stdout, str(res)
    if kind == "masked":
        # /dev/null over the file, an empty read-only tmpfs over the directory
        assert out[:2] == ["file:", "dir:"], f"masked content visible: {res}"
        assert "rootfs-entry" not in out and "file-written" in out and "dir-written" not in out, str(res)
    else:
        assert out[:5] == ["file:", "rootfs", "copy", "dir:", "rootfs-entry"], str(res)
        assert "file-written" not in out and "dir-written" not in out, f"a read-only path was written: {res}"
        with open(inner_file) as f:
            assert f.read() == "rootfs copy\n"
        assert not os.path.exists(os.path.join(inner_dir, "new"))
    tfile.assert_untouched()
    tdir.assert_untouched()


def test_cwd_symlink_to_host(oci, bundle, cid, host_dir):
    target = HostTarget(os.path.join(host_dir, "cwd"))

    def edit(cfg):
        cfg["process"]["cwd"] = "/work"
        cfg["root"]["readonly"] = False
    b = bundle(["sh", "-c", "ls; pwd"], edit=edit)
    _link(bundle.rootfs(b), "/work", target.path)
    res = _run(oci, b, cid())
    if res.returncode != 0:
        one_line_error(res)
    else:
        assert "sentinel" not in res.stdout, f"the container sees the host directory through its cwd: {res}"
    target.assert_untouched()


def test_etc_passwd_symlink_to_host_for_home_lookup(oci, bundle, cid, host_dir):
    """No HOME in env: ocirun looks the user up in the container's /etc/passwd. A link to a host file must be
    resolved inside the rootfs (so the host's HOME is not used, and the host file not read)."""
    target = HostTarget(os.path.join(host_dir, "passwd"), kind="file",
                        content="root:x:0:0:root:/HOST-LEAK:/bin/sh\n")

    def edit(cfg):
        cfg["process"]["env"] = ["PATH=/bin:/usr/bin"]
    b = bundle(["sh", "-c", "echo HOME=$HOME"], edit=edit)
    _link(bundle.rootfs(b), "/etc/passwd", target.path)
    res = _run(oci, b, cid())
    if res.returncode != 0:
        one_line_error(res)
    assert "HOST-LEAK" not in res.stdout, f"HOME came from a host file: {res}"
    target.assert_untouched()


def test_pid_file_path_is_a_symlink_to_a_host_file(oci, bundle, cid, host_dir, tmp_path):
    """--pid-file names a symlink to another file: the link is replaced (write + rename, as runc), the file it
    pointed to keeps its content."""
    victim = HostTarget(os.path.join(host_dir, "victim"), kind="file", content="precious\n")
    link = tmp_path / "pid"
    os.symlink(victim.path, link)
    c = cid()
    res = oci("create", "--pid-file", str(link), "--bundle", bundle(["sleep", "60"]), c)
    no_traceback(res)
    try:
        if res.returncode == 0:
            pid = oci.state(c)["pid"]
            assert not os.path.islink(link) and open(link).read().strip() == str(pid), "pid file not written"
        else:
            one_line_error(res)
        victim.assert_untouched()
    finally:
        oci("delete", "--force", c)


def test_console_socket_path_is_a_symlink_to_a_non_socket(oci, bundle, cid, host_dir, tmp_path):
    victim = HostTarget(os.path.join(host_dir, "victim"), kind="file", content="precious\n")
    link = tmp_path / "console.sock"
    os.symlink(victim.path, link)

    def edit(cfg):
        cfg["process"]["terminal"] = True
    c = cid()
    res = oci("create", "--console-socket", str(link), "--bundle", bundle(["true"], edit=edit), c)
    one_line_error(res)
    assert oci("state", c).returncode != 0
    victim.assert_untouched()


# ------------------------------------------------------------------------------------------ fake /proc
def _fake_proc(rootfs):
    """A plain directory at rootfs/proc with fake files where a runtime writes sysctls and LSM labels."""
    proc = os.path.join(rootfs, "proc")
    files = {}
    for rel in ("sys/net/ipv4/ip_forward", "sys/kernel/shmmax", "self/attr/exec", "self/attr/apparmor/exec",
                "self/oom_score_adj", "self/setgroups", "thread-self/attr/exec"):
        p = os.path.join(proc, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write("FAKE\n")
        files[p] = os.stat(p).st_mtime_ns
    return files


def _assert_fakes_untouched(files):
    for p, mtime in files.items():
        with open(p) as f:
            assert f.read() == "FAKE\n" and os.stat(p).st_mtime_ns == mtime, f"ocirun wrote into the fake {p}"


def test_fake_proc_no_proc_mount_sysctls_not_written_to_plain_files(oci, bundle, cid):
    """CVE-2019-16884 pattern: no proc mount in the config and rootfs/proc a plain directory of fake files.
    sysctls must only be written to a real procfs: either create fails clearly, or the fake files stay as
    they are (then the sysctl was not silently 'applied' to a plain file)."""
    def edit(cfg):
        cfg["mounts"] = [m for m in cfg["mounts"] if m["type"] != "proc"]
        cfg["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmax": "12345678"}
        cfg["linux"]["maskedPaths"] = []
        cfg["linux"]["readonlyPaths"] = []
        cfg["process"]["oomScoreAdj"] = 100
    b = bundle(["true"], edit=edit)
    files = _fake_proc(bundle.rootfs(b))
    res = _run(oci, b, cid())
    _assert_fakes_untouched(files)
    assert res.returncode != 0, ("sysctls were 'applied' with /proc not a procfs (nothing reported): " + str(res))
    one_line_error(res)


def test_proc_mount_onto_symlink_to_fake_proc(oci, bundle, cid):
    """rootfs/proc -> /fakeproc (a plain directory of fake files inside the rootfs): the proc mount lands on
    /fakeproc and the sysctl goes to the real procfs there; the fake files are covered, never written."""
    def edit(cfg):
        cfg["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
        cfg["root"]["readonly"] = False
    b = bundle(["cat", "/proc/sys/net/ipv4/ip_forward"], edit=edit)
    rootfs = bundle.rootfs(b)
    files = _fake_proc(os.path.join(rootfs, "fakeproc-parent"))
    os.rename(os.path.join(rootfs, "fakeproc-parent", "proc"), os.path.join(rootfs, "fakeproc"))
    files = {p.replace("fakeproc-parent/proc", "fakeproc"): m for p, m in files.items()}
    _link(rootfs, "/proc", "/fakeproc")
    res = _run(oci, b, cid())
    _assert_fakes_untouched(files)
    if res.returncode == 0:
        assert res.stdout.strip() == "1", str(res)
    else:
        one_line_error(res)


# ------------------------------------------------------------------------------------------ hard links, special files
def test_hard_link_to_host_file_at_bind_destination(oci, bundle, cid, host_dir, tmp_path):
    """rootfs/etc/hosts is a hard link to a host file; a file bind-mount targets /etc/hosts: ocirun must not
    truncate or write the destination while preparing the mount point."""
    victim = HostTarget(os.path.join(host_dir, "victim-hosts"), kind="file", content="127.0.0.1 precious\n")
    src = tmp_path / "hosts"
    src.write_text("10.0.0.1 container\n")

    def edit(cfg):
        cfg["mounts"].append({"destination": "/etc/hosts", "type": "bind", "source": str(src), "options": ["bind"]})
        cfg["mounts"].append({"destination": "/etc/hosts2", "type": "bind", "source": str(src),
                              "options": ["bind"]})
    b = bundle(["cat", "/etc/hosts"], edit=edit)
    rootfs = bundle.rootfs(b)
    for name in ("hosts", "hosts2"):
        p = os.path.join(rootfs, "etc", name)
        if os.path.lexists(p):
            os.unlink(p)
        os.link(victim.path, p)
    res = _run(oci, b, cid())
    if res.returncode == 0:
        assert res.stdout == "10.0.0.1 container\n", str(res)
    else:
        one_line_error(res)
    victim.assert_untouched()


def test_fifo_and_device_nodes_at_mount_destinations(oci, bundle, cid, tmp_path):
    """A FIFO and a device node (/dev/null's numbers) planted where file bind-mounts go: no hang (opening a FIFO
    for writing blocks), no write into them, a clean result either way."""
    src = tmp_path / "payload"
    src.write_text("payload\n")

    def edit(cfg):
        cfg["mounts"] += [{"destination": "/etc/fifo", "type": "bind", "source": str(src), "options": ["bind"]},
                          {"destination": "/etc/devnode", "type": "bind", "source": str(src), "options": ["bind"]}]
    b = bundle(["cat", "/etc/fifo", "/etc/devnode"], edit=edit)
    rootfs = bundle.rootfs(b)
    os.mkfifo(os.path.join(rootfs, "etc", "fifo"))
    os.mknod(os.path.join(rootfs, "etc", "devnode"), stat.S_IFCHR | 0o666, os.makedev(1, 3))
    res = _run(oci, b, cid(), timeout=20)
    if res.returncode == 0:
        assert res.stdout == "payload\npayload\n", str(res)
    else:
        one_line_error(res)
    assert stat.S_ISFIFO(os.lstat(os.path.join(rootfs, "etc", "fifo")).st_mode)


def test_planted_device_node_for_host_disk_is_not_opened_for_write(oci, bundle, cid):
    """A block device node with the host root disk's numbers planted at rootfs/etc/hostname, with a bind mount on
    /etc/hostname: the node must not be opened for writing nor replaced on the host side."""
    st = os.stat("/")
    b = bundle(["true"], edit=lambda cfg: cfg["mounts"].append(
        {"destination": "/etc/hostname", "type": "bind", "source": "/etc/hostname", "options": ["bind", "ro"]}))
    p = os.path.join(bundle.rootfs(b), "etc", "hostname")
    if os.path.lexists(p):
        os.unlink(p)
    os.mknod(p, stat.S_IFBLK | 0o600, st.st_dev)
    with open("/etc/hostname", "rb") as f:
        host_hostname = f.read()
    res = _run(oci, b, cid())
    if res.returncode != 0:
        one_line_error(res)
    assert stat.S_ISBLK(os.lstat(p).st_mode) and os.lstat(p).st_rdev == st.st_dev
    with open("/etc/hostname", "rb") as f:
        assert f.read() == host_hostname
