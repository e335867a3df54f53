"""Joining namespaces by path, and `exec` joining a running container's namespaces, on real containers.

runc's nsexec join_namespaces serves both create and exec: every namespace but the user namespace first (with the
runtime's own privileges), then the user namespace, then any that refused before it. A container can join an
external user namespace and a namespace that user namespace does not own (runc's userns.bats "userns join external
namespaces [wrong userns owner]", runc issue 4390): such a namespace can only be joined before the user namespace.
runc 1.1.5 (installed here) refuses that config at create (fixed in runc 1.2), so there is no runc run to compare
with; runc main passes the bats test."""
import os
import subprocess

import pytest

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates real containers")]

NS_NAMES = ("user", "net", "ipc", "uts", "mnt", "pid", "cgroup")


class _Holder:
    """A `sleep` that `unshare`s the given namespaces (as the host's root, so they are owned by the host's user
    namespace, or by the new user namespace for those unshared with --user); ready once it has printed a line."""

    def __init__(self, *flags):
        self.p = subprocess.Popen(["unshare", *flags, "sh", "-c", "echo ready && exec sleep 1000"],
                                  stdout=subprocess.PIPE, text=True)
        if self.p.stdout.readline().strip() != "ready":
            self.close()
            raise AssertionError(f"unshare {flags} did not start")
        self.pid = self.p.pid

    def ns(self, name):
        return f"/proc/{self.pid}/ns/{name}"

    def close(self):
        self.p.kill()
        self.p.wait()
        self.p.stdout.close()


@pytest.fixture
def holders():
    made = []

    def make(*flags):
        h = _Holder(*flags)
        made.append(h)
        return h
    yield make
    for h in made:
        h.close()


@pytest.mark.parametrize("netns", ["joined-host-owned", "new"])
def test_exec_joins_an_external_userns_and_a_netns_it_does_not_own(oci, bundle, cid, holders, netns):
    """The container joins an external user namespace (0 -> 100000, held by another process) and, in the first
    case, a network namespace owned by the host's user namespace (not by that one). `run -d` works, and `exec`
    joins every one of the init's namespaces: user and network are the external ones, the others the init's.
    Before, exec joined the user namespace first and then could not join that network namespace ("exec failed:
    cannot join the container's network namespace: Operation not permitted")."""
    uh = holders("--user")
    for name, text in (("uid_map", "0 100000 65536\n"), ("gid_map", "0 100000 65536\n")):
        with open(f"/proc/{uh.pid}/{name}", "w") as f:
            f.write(text)
    nh = holders("--net") if netns == "joined-host-owned" else None

    def edit(cfg):
        lin = cfg["linux"]
        lin.pop("resources", None)
        lin["namespaces"] = [n for n in lin["namespaces"] if n["type"] not in ("user", "network")]
        lin["namespaces"].append({"type": "user", "path": uh.ns("user")})
        if nh is not None:
            lin["namespaces"].append({"type": "network", "path": nh.ns("net")})
            # sysfs can only be mounted by the owner of the network namespace: bind the host's (as the bats test)
            cfg["mounts"] = [{"destination": m["destination"], "type": "bind", "source": "/sys",
                              "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}
                             if m.get("type") == "sysfs" else m for m in cfg["mounts"]]
        else:
            lin["namespaces"].append({"type": "network"})
    b = bundle(["sleep", "1000"], edit=edit)
    subprocess.run(["chown", "-R", "100000:100000", bundle.rootfs(b)], check=True)
    c = cid()
    try:
        r = oci("run", "-d", "--bundle", b, c)
        assert r.returncode == 0, r
        init = oci.state(c)["pid"]
        script = "; ".join(f"readlink /proc/self/ns/{n}" for n in NS_NAMES) + "; cat /proc/self/uid_map"
        r = oci("exec", c, "sh", "-c", script)
        assert r.returncode == 0, r
        lines = r.stdout.splitlines()
        got = dict(zip(NS_NAMES, lines))
        want = {n: os.readlink(f"/proc/{init}/ns/{n}") for n in NS_NAMES}
        assert got == want, r
        assert got["user"] == os.readlink(uh.ns("user"))
        if nh is not None:
            assert got["net"] == os.readlink(nh.ns("net"))
        else:
            assert got["net"] != os.readlink("/proc/self/ns/net")
        assert lines[len(NS_NAMES)].split() == ["0", "100000", "65536"], r
    finally:
        oci("delete", "--force", c)
