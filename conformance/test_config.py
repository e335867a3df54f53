"""config.md: root, mounts, process, user, hostname/domainname, hooks, annotations, extensibility, valid values."""
import array
import json
import os
import socket
import subprocess
import threading
import time

import pytest

from conformance import host
from conformance import rootless
from conformance.conftest import DEFAULT_ENV


def mount_at(data, path):
    """The top-most mount at `path` in the probe's mount list."""
    found = [m for m in data["mounts"] if m["mountpoint"] == path]
    assert found, f"nothing mounted at {path}; mounts: {[m['mountpoint'] for m in data['mounts']]}"
    return found[-1]


def opts(m):
    return set(m["options"].split(",")) | set(m["super"].split(","))


# ------------------------------------------------------------------------------------------------ version
def test_invalid_oci_version_rejected(oci):
    """ociVersion (string, REQUIRED) MUST be in SemVer v2.0.0 format; runtimes MUST generate an error when
    invalid values are encountered.

    [MUST] config.md#configSpecificationVersion
    """
    c = oci.create(edit=lambda c: c.update(ociVersion="not-a-version"), expect_ok=False)
    assert not c.create_result.ok, "create accepted ociVersion 'not-a-version'"


# ------------------------------------------------------------------------------------------------ root
def test_root_path_must_exist(oci):
    """root.path: A directory MUST exist at the path declared by the field.

    [MUST] config.md#configRoot
    """
    c = oci.create(edit=lambda c: c["root"].update(path="no-such-rootfs"), expect_ok=False)
    assert not c.create_result.ok
    assert c.state() is None


def test_root_path_absolute(oci):
    """root.path: either an absolute path or a relative path to the bundle.

    [MUST] config.md#configRoot
    """
    b = oci.bundle()
    b.config["root"]["path"] = os.path.join(b.path, "rootfs")
    b.save()
    data = oci.probe(bundle=b)
    assert data["probe"] == 1


def test_root_readonly_true(oci):
    """readonly (bool, OPTIONAL) If true then the root filesystem MUST be read-only inside the container.

    [MUST] config.md#configRoot
    """
    data = oci.probe("--touch", "/newfile", edit=lambda c: c["root"].update(readonly=True))
    assert data["touch"]["/newfile"] == "EROFS", data["touch"]
    assert "ro" in mount_at(data, "/")["options"].split(",")


def test_root_readonly_defaults_false(oci):
    """readonly defaults to false: the root filesystem is writable.

    [MUST] config.md#configRoot
    """
    data = oci.probe("--touch", "/newfile", edit=lambda c: c["root"].pop("readonly"))
    assert data["touch"]["/newfile"] == "ok", data["touch"]


# ------------------------------------------------------------------------------------------------ mounts
def test_mounts_in_listed_order(oci):
    """The runtime MUST mount entries in the listed order.

    [MUST] config.md#configMounts
    """
    def edit(cfg):
        cfg["mounts"] += [
            {"destination": "/mnt/a", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]},
            {"destination": "/mnt/a/b", "type": "tmpfs", "source": "tmpfs", "options": ["size=2m"]},
            {"destination": "/mnt/c", "type": "tmpfs", "source": "tmpfs", "options": ["size=3m"]},
            {"destination": "/mnt/c", "type": "tmpfs", "source": "tmpfs", "options": ["size=4m"]},
        ]
    data = oci.probe(edit=edit)
    a, b = mount_at(data, "/mnt/a"), mount_at(data, "/mnt/a/b")
    assert b["parent"] == a["id"], "/mnt/a/b is not mounted on top of /mnt/a"
    assert "size=4096k" in mount_at(data, "/mnt/c")["super"], "the later /mnt/c mount is not the top one"


def test_mount_destination_relative_to_root(oci):
    """destination: For compatibility, it MAY be a relative path, in which case it MUST be interpreted as
    relative to "/".

    [MUST] config.md#configMounts
    """
    data = oci.probe(edit=lambda c: c["mounts"].append(
        {"destination": "mnt/rel", "type": "tmpfs", "source": "tmpfs"}))
    assert mount_at(data, "/mnt/rel")["fstype"] == "tmpfs"


@pytest.mark.parametrize("fstype,dest,source,extra", [
    ("tmpfs", "/mnt/t", "tmpfs", []),
    ("proc", "/mnt/p", "proc", []),
    ("sysfs", "/mnt/s", "sysfs", ["ro"]),
    ("mqueue", "/mnt/q", "mqueue", []),
    ("devpts", "/mnt/pts", "devpts", ["newinstance"]),
])
def test_mount_type(oci, fstype, dest, source, extra):
    """type: the type of the filesystem to be mounted (mount(2) filesystemtype); the runtime MUST create the
    container's environment according to config.json.

    [MUST] config.md#configMounts
    """
    def edit(c):
        c["mounts"].append({"destination": dest, "type": fstype, "source": source, "options": extra})
        own_net = any(n["type"] == "network" for n in c["linux"]["namespaces"])
        if fstype == "sysfs" and rootless.active() and not own_net:
            # the kernel mounts sysfs only for the owner of the network namespace; a rootless config has none
            c["linux"]["namespaces"].append({"type": "network"})
    data = oci.probe(edit=edit)
    assert mount_at(data, dest)["fstype"] == fstype


def _host_dir_with_submount(oci):
    rootless.require_host_mount("a bind source with a submount")
    src = os.path.join(oci.workdir, f"bindsrc-{oci.tag}")
    os.makedirs(os.path.join(src, "sub"))
    with open(os.path.join(src, "file"), "w") as f:
        f.write("host")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "cfsub", os.path.join(src, "sub")], check=True)
    with open(os.path.join(src, "sub", "inner"), "w") as f:
        f.write("inner")
    oci.add_cleanup(lambda: subprocess.run(["umount", "-l", os.path.join(src, "sub")]))
    return src


def test_mount_option_bind(oci):
    """Linux mount option `bind` (MUST): bind mount; a non-recursive bind does not bring submounts.

    [MUST] config.md#configLinuxMountOptions
    """
    src = _host_dir_with_submount(oci)
    data = oci.probe("--path", "/b/file", "--path", "/b/sub/inner", edit=lambda c: c["mounts"].append(
        {"destination": "/b", "type": "bind", "source": src, "options": ["bind"]}))
    assert data["paths"]["/b/file"]["exists"]
    assert not data["paths"]["/b/sub/inner"]["exists"], "non-recursive bind brought the submount"


def test_mount_option_rbind(oci):
    """Linux mount option `rbind` (MUST): recursive bind mount, submounts included.

    [MUST] config.md#configLinuxMountOptions
    """
    src = _host_dir_with_submount(oci)
    data = oci.probe("--path", "/b/file", "--path", "/b/sub/inner", edit=lambda c: c["mounts"].append(
        {"destination": "/b", "type": "bind", "source": src, "options": ["rbind"]}))
    assert data["paths"]["/b/file"]["exists"]
    assert data["paths"]["/b/sub/inner"]["exists"], "rbind did not bring the submount"


FLAG_OPTIONS = [
    # option, expected token in mountinfo options/super options
    ("ro", "ro"), ("rw", "rw"), ("nosuid", "nosuid"), ("nodev", "nodev"), ("noexec", "noexec"),
    ("noatime", "noatime"), ("strictatime", None), ("relatime", "relatime"), ("nodiratime", "nodiratime"),
    ("sync", "sync"), ("dirsync", "dirsync"), ("lazytime", "lazytime"), ("nosymfollow", "nosymfollow"),
]


@pytest.mark.parametrize("option,token", FLAG_OPTIONS, ids=[o for o, _ in FLAG_OPTIONS])
def test_mount_option_flag(oci, option, token):
    """Runtimes MUST/SHOULD implement the Linux mount option strings (mount(8) flags) for Linux.

    [MUST] config.md#configLinuxMountOptions
    """
    data = oci.probe(edit=lambda c: c["mounts"].append(
        {"destination": "/mnt/o", "type": "tmpfs", "source": "tmpfs", "options": [option]}))
    m = mount_at(data, "/mnt/o")
    if token:
        assert token in opts(m), f"{option}: mountinfo {m['options']} / {m['super']}"
    else:  # strictatime: no atime flag shown
        assert not {"noatime", "relatime"} & opts(m), f"strictatime: {m['options']}"


@pytest.mark.parametrize("option,check", [
    ("private", lambda opt: not any(o.startswith(("shared:", "master:")) for o in opt) and "unbindable" not in opt),
    ("rprivate", lambda opt: not any(o.startswith(("shared:", "master:")) for o in opt) and "unbindable" not in opt),
    ("shared", lambda opt: any(o.startswith("shared:") for o in opt)),
    ("rshared", lambda opt: any(o.startswith("shared:") for o in opt)),
    ("unbindable", lambda opt: "unbindable" in opt),
    ("runbindable", lambda opt: "unbindable" in opt),
])
def test_mount_option_propagation(oci, option, check):
    """Bind mount propagation options private/rprivate/shared/rshared/unbindable/runbindable (MUST).

    [MUST] config.md#configLinuxMountOptions
    """
    src = os.path.join(oci.workdir, f"prop-{oci.tag}")
    os.makedirs(src)
    data = oci.probe(edit=lambda c: c["mounts"].append(
        {"destination": "/p", "type": "bind", "source": src, "options": ["rbind", option]}))
    m = mount_at(data, "/p")
    assert check(m["optional"]), f"{option}: optional fields {m['optional']}"


def test_mount_option_slave(oci):
    """Bind mount propagation option `slave` (MUST): the mount receives events from its (shared) source.

    [MUST] config.md#configLinuxMountOptions
    """
    rootless.require_host_mount("a slave bind mount needs a shared source mount (as root, the suite's shared tmpfs)")
    src = os.path.join(oci.workdir, f"slave-{oci.tag}")
    os.makedirs(src)
    data = oci.probe(edit=lambda c: c["mounts"].append(
        {"destination": "/p", "type": "bind", "source": src, "options": ["rbind", "slave"]}))
    m = mount_at(data, "/p")
    assert any(o.startswith("master:") for o in m["optional"]), m["optional"]
    assert not any(o.startswith("shared:") for o in m["optional"]), m["optional"]


def test_mount_unknown_option_is_filesystem_specific(oci):
    """Runtimes SHOULD treat unknown options as filesystem-specific ones (passed as mount data).

    [SHOULD] config.md#configLinuxMountOptions
    """
    data = oci.probe(edit=lambda c: c["mounts"].append(
        {"destination": "/mnt/fs", "type": "tmpfs", "source": "tmpfs", "options": ["size=1536k", "mode=700"]}))
    sup = mount_at(data, "/mnt/fs")["super"].split(",")
    assert "size=1536k" in sup and "mode=700" in sup, sup


def test_mount_idmap_without_userns_or_mappings_errors(oci):
    """idmap: If there are no uidMappings and gidMappings specified and the container isn't using user
    namespaces, an error MUST be returned.

    [MUST] config.md#configLinuxMountOptions
    """
    rootless.require_mode("an idmap mount without mappings nor user namespace",
                          "a rootless container always has a user namespace")
    src = os.path.join(oci.workdir, f"idm-{oci.tag}")
    os.makedirs(src)
    c = oci.create(edit=lambda c: c["mounts"].append(
        {"destination": "/idm", "type": "bind", "source": src, "options": ["bind", "idmap"]}), expect_ok=False)
    assert not c.create_result.ok, "idmap mount without mappings nor user namespace was accepted"


def test_mount_idmap_applies_mappings(oci):
    """idmap: If uidMappings or gidMappings are specified for the mount, the runtime MUST use those values for
    the mount's mapping.

    [SHOULD] config.md#configLinuxMountOptions
    """
    rootless.require_cap("CAP_SYS_ADMIN", "an idmapped mount of a host filesystem (owned by the initial user "
                         "namespace)")
    src = os.path.join(oci.workdir, f"idm-{oci.tag}")
    os.makedirs(src)
    open(os.path.join(src, "f"), "w").close()  # owned by host uid/gid 0: containerID 0 -> hostID 1000 / 2000
    data = oci.probe("--dev", "/idm/f", edit=lambda c: c["mounts"].append(
        {"destination": "/idm", "type": "bind", "source": src, "options": ["bind", "idmap"],
         "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
         "gidMappings": [{"containerID": 0, "hostID": 2000, "size": 1}]}))
    st = data["devices"]["/idm/f"]
    assert st and (st["uid"], st["gid"]) == (1000, 2000), \
        f"file owned by 0:0 on disk, mapped uid 0->1000 and gid 0->2000, seen as {st}"


def test_mount_uid_mappings_without_gid_mappings_errors(oci):
    """uidMappings: If specified, it MUST be specified along with gidMappings.

    [MUST] config.md#configPOSIXMounts
    """
    src = os.path.join(oci.workdir, f"idm-{oci.tag}")
    os.makedirs(src)
    c = oci.create(edit=lambda c: c["mounts"].append(
        {"destination": "/idm", "type": "bind", "source": src, "options": ["bind", "idmap"],
         "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}), expect_ok=False)
    assert not c.create_result.ok


# ------------------------------------------------------------------------------------------------ process
def test_process_args(oci):
    """args (array of strings) with similar semantics to execvp's argv.

    [MUST] config.md#configProcess
    """
    data = oci.probe("a b", "", "--x")
    assert data["argv"] == ["/probe", "a b", "", "--x"]


def test_process_args0_resolved_like_execvp_file(oci):
    """args: the first entry is used with the same semantics as execvp's file (searched in PATH).

    [MUST] config.md#configProcess
    """
    def edit(cfg):
        cfg["process"]["args"] = ["probe"]
    data = oci.probe(edit=edit)
    assert data["argv"][0] == "probe"


def test_process_env(oci):
    """env (array of strings) with the same semantics as IEEE Std 1003.1-2008's environ.

    [MUST] config.md#configProcess
    """
    env = DEFAULT_ENV + ["FOO=bar baz", "EMPTY="]
    data = oci.probe(edit=lambda c: c["process"].update(env=env))
    assert sorted(data["env"]) == sorted(env), data["env"]


def test_process_cwd(oci):
    """cwd (string, REQUIRED) is the working directory that will be set for the executable.

    [MUST] config.md#configProcess
    """
    data = oci.probe(edit=lambda c: c["process"].update(cwd="/tmp"))
    assert data["cwd"] == "/tmp"


def test_process_cwd_must_be_absolute(oci):
    """cwd: This value MUST be an absolute path (a relative one is an invalid value: error).

    [MUST] config.md#configProcess
    """
    c = oci.create(edit=lambda c: c["process"].update(cwd="tmp"), expect_ok=False)
    assert not c.create_result.ok


class ConsoleSocket:
    """A --console-socket listener: receives the pty master over SCM_RIGHTS and collects what it reads."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.sock.settimeout(20)
        self.master = None
        self.data = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.sock.accept()
            fds = array.array("i")
            msg, anc, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(4 * fds.itemsize))
            for level, typ, d in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    fds.frombytes(d[:len(d) - len(d) % fds.itemsize])
            conn.close()
            if fds:
                self.master = fds[0]
                while True:
                    try:
                        chunk = os.read(self.master, 65536)
                    except OSError:
                        break
                    if not chunk:
                        break
                    self.data += chunk
        except Exception as e:  # noqa: BLE001 -- reported by the test through missing data
            self.error = e

    def json(self, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.data.decode(errors="replace").replace("\r\n", "\n")
            if "\n" in text.lstrip():
                return json.loads(text.lstrip().split("\n", 1)[0])
            time.sleep(0.05)
        raise AssertionError(f"no probe output on the terminal (got {self.data!r}, master={self.master})")

    def close(self):
        self.sock.close()
        if self.master is not None:
            try:
                os.close(self.master)
            except OSError:
                pass


def run_with_terminal(oci, probe_args=(), edit=None):
    b = oci.bundle(["/probe", *probe_args], edit)
    b.config["process"]["terminal"] = True
    b.save()
    cs = ConsoleSocket(os.path.join(b.path, "console.sock"))
    oci.add_cleanup(cs.close)
    c = oci.create(b, console_socket=cs.path)
    assert oci.rt.start(c.id).ok
    return cs.json(), c


def test_process_terminal(oci):
    """terminal: if set to true on Linux a pseudoterminal pair is allocated for the process and the
    pseudoterminal pty is duplicated on the process's standard streams.

    [MUST] config.md#configProcess
    """
    data, _ = run_with_terminal(oci)
    for fd in ("0", "1", "2"):
        assert data["tty"][fd] and data["tty"][fd]["name"].startswith("/dev/pts/"), data["tty"]


def test_process_terminal_dev_console(oci):
    """/dev/console is set up if terminal is enabled in the config by bind mounting the pseudoterminal pty to
    /dev/console.

    [MUST] config-linux.md#configLinuxDefaultDevices
    """
    data, _ = run_with_terminal(oci, ["--dev", "/dev/console"])
    st = data["devices"]["/dev/console"]
    assert st and st["type"] == "c" and st["major"] == 136, st
    assert any(m["mountpoint"] == "/dev/console" for m in data["mounts"]), "/dev/console is not a bind mount"


def test_process_console_size(oci):
    """consoleSize (object, OPTIONAL) specifies the console size in characters of the terminal.

    [MUST] config.md#configProcess
    """
    data, _ = run_with_terminal(oci, edit=lambda c: c["process"].update(consoleSize={"height": 33, "width": 111}))
    assert (data["tty"]["0"]["rows"], data["tty"]["0"]["cols"]) == (33, 111), data["tty"]


def test_console_size_ignored_without_terminal(oci):
    """Runtimes MUST ignore consoleSize if terminal is false or unset.

    [MUST] config.md#configProcess
    """
    data = oci.probe(edit=lambda c: c["process"].update(consoleSize={"height": 10, "width": 10}))
    assert data["tty"] == {"0": None, "1": None, "2": None}


def test_rlimits_applied(oci):
    """rlimits: For each entry, getrlimit(3) on type MUST succeed; rlim.rlim_cur MUST match soft, rlim.rlim_max
    MUST match hard.

    [MUST] config.md#configPOSIXProcess
    """
    lims = [{"type": "RLIMIT_NOFILE", "soft": 1000, "hard": 2000},
            {"type": "RLIMIT_CORE", "soft": 4096, "hard": 8192},
            {"type": "RLIMIT_NPROC", "soft": 500, "hard": 600},
            {"type": "RLIMIT_MSGQUEUE", "soft": 1024, "hard": 2048}]
    data = oci.probe(edit=lambda c: c["process"].update(rlimits=lims))
    for lim in lims:
        got = data["rlimits"][lim["type"]]
        assert (got["soft"], got["hard"]) == (lim["soft"], lim["hard"]), f"{lim['type']}: {got}"


def test_rlimit_raise_hard_above_host(oci):
    """rlim.rlim_max MUST match the configured value, also above the caller's hard limit (needs
    CAP_SYS_RESOURCE).

    [MUST] config.md#configPOSIXProcess
    """
    rootless.require_cap("CAP_SYS_RESOURCE", "raising a hard rlimit above the caller's")
    host.require_cap("CAP_SYS_RESOURCE")
    import resource
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lims = [{"type": "RLIMIT_NOFILE", "soft": hard + 10, "hard": hard + 10}]
    data = oci.probe(edit=lambda c: c["process"].update(rlimits=lims))
    assert data["rlimits"]["RLIMIT_NOFILE"]["hard"] == hard + 10


def test_rlimit_unknown_type_errors(oci):
    """The runtime MUST generate an error for any (rlimit type) values which cannot be mapped to a relevant
    kernel interface.

    [MUST] config.md#configPOSIXProcess
    """
    c = oci.create(edit=lambda c: c["process"].update(
        rlimits=[{"type": "RLIMIT_NOSUCHTHING", "soft": 1, "hard": 1}]), expect_ok=False)
    if c.create_result.ok:
        r = oci.rt.start(c.id)
        assert not r.ok, "unknown rlimit type accepted by create and start"


def test_rlimit_duplicate_type_errors(oci):
    """If rlimits contains duplicated entries with same type, the runtime MUST generate an error.

    [MUST] config.md#configPOSIXProcess
    """
    c = oci.create(edit=lambda c: c["process"].update(rlimits=[
        {"type": "RLIMIT_NOFILE", "soft": 100, "hard": 100},
        {"type": "RLIMIT_NOFILE", "soft": 200, "hard": 200}]), expect_ok=False)
    if c.create_result.ok:
        r = oci.rt.start(c.id)
        assert not r.ok, "duplicate rlimit type accepted by create and start"


# ------------------------------------------------------------------------------------------------ user
def test_user_uid_gid(oci):
    """uid (int, REQUIRED) specifies the user ID, gid the group ID in the container namespace.

    [MUST] config.md#configPOSIXUser
    """
    data = oci.probe(edit=lambda c: c["process"].update(user={"uid": 1000, "gid": 1001}))
    assert (data["uid"], data["euid"], data["gid"], data["egid"]) == (1000, 1000, 1001, 1001)


def test_user_additional_gids(oci):
    """additionalGids (array of ints) specifies additional group IDs in the container namespace to be added to
    the process.

    [MUST] config.md#configPOSIXUser
    """
    data = oci.probe(edit=lambda c: c["process"].update(user={"uid": 1000, "gid": 1001, "additionalGids": [29, 4242]}))
    assert {29, 4242} <= set(data["groups"]), data["groups"]
    assert (data["uid"], data["gid"]) == (1000, 1001), (data["uid"], data["gid"])


def test_user_umask(oci):
    """umask (int, OPTIONAL) specifies the umask of the user.

    [MUST] config.md#configPOSIXUser
    """
    data = oci.probe(edit=lambda c: c["process"]["user"].update(umask=0o027))
    assert data["umask"] == 0o027, oct(data["umask"])


# ------------------------------------------------------------------------------------------------ hostname
def test_hostname(oci):
    """hostname (string, OPTIONAL) specifies the container's hostname as seen by processes running inside.

    [MUST] config.md#configHostname
    """
    data = oci.probe(edit=lambda c: c.update(hostname="conf-host"))
    assert data["hostname"] == "conf-host"


def test_domainname(oci):
    """domainname (string, OPTIONAL) specifies the container's domainname as seen by processes inside.

    [MUST] config.md#configDomainname
    """
    data = oci.probe(edit=lambda c: c.update(domainname="conf.example"))
    assert data["domainname"] == "conf.example"


def test_hostname_without_uts_namespace_errors(oci):
    """hostname: a runtime that cannot apply a property (no new UTS namespace to set it in) MUST generate an
    error rather than change the host's hostname.

    [MUST] runtime.md#runtimeCreate
    """
    before = os.uname().nodename

    def edit(cfg):
        cfg["hostname"] = "must-not-leak"
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "uts"]
    c = oci.create(edit=edit, expect_ok=False)
    assert os.uname().nodename == before, "the host's hostname was changed"
    assert not c.create_result.ok


# ------------------------------------------------------------------------------------------------ extensibility
def test_unknown_properties_ignored(oci):
    """Runtimes MAY log unknown properties but MUST otherwise ignore them.

    [MUST] config.md#configExtensibility
    """
    def edit(cfg):
        cfg["org.example.unknown"] = {"x": 1}
        cfg["process"]["org.example.unknown"] = [1, 2]
        cfg["linux"]["org.example.unknown"] = "y"
    data = oci.probe(edit=edit)
    assert data["probe"] == 1


def test_unknown_annotations_ignored(oci):
    """Runtimes MUST handle unknown annotation keys like any other unknown property.

    [MUST] config.md#configAnnotations
    """
    data = oci.probe(edit=lambda c: c.update(annotations={"org.example.whatever": "1", "com.example.x": ""}))
    assert data["probe"] == 1


INVALID_VALUES = {
    "namespace-type": lambda c: c["linux"]["namespaces"].append({"type": "no-such-ns"}),
    "device-type": lambda c: c["linux"].update(devices=[{"path": "/dev/x", "type": "x", "major": 1, "minor": 3}]),
    "rootfsPropagation": lambda c: c["linux"].update(rootfsPropagation="sideways"),
    "personality-domain": lambda c: c["linux"].update(personality={"domain": "NOT_A_DOMAIN"}),
    "scheduler-policy": lambda c: c["process"].update(scheduler={"policy": "SCHED_NONSENSE"}),
    "ioPriority-class": lambda c: c["process"].update(ioPriority={"class": "IOPRIO_CLASS_NONE_SUCH", "priority": 1}),
    "memoryPolicy-mode": lambda c: c["linux"].update(memoryPolicy={"mode": "MPOL_NONSENSE"}),
    "mount-no-destination": lambda c: c["mounts"].append({"type": "tmpfs", "source": "tmpfs"}),
}


@pytest.mark.parametrize("what", sorted(INVALID_VALUES))
def test_invalid_values_generate_error(oci, what):
    """Runtimes MUST generate an error when invalid or unsupported values are encountered.

    [MUST] config.md#valid-values
    """
    c = oci.create(args=["/probe", "--touch", "/ran"], edit=INVALID_VALUES[what], expect_ok=False)
    if c.create_result.ok:
        r = oci.rt.start(c.id)
        time.sleep(0.2)
        assert not r.ok, f"invalid {what} accepted by create and start"
        assert not os.path.exists(os.path.join(c.bundle.rootfs, "ran")), f"invalid {what}: program ran"
