"""Docker (dockerd with native.cgroupdriver=systemd) drives the runtime inside a real systemd.

The `systemd_bed` fixture (systemdbed.py) boots Debian 12's systemd as PID 1 of a container on this cgroup v1
hybrid host; Debian's docker.io 20.10 (dockerd, and the containerd 1.6 it starts itself) runs inside it, as a
transient unit of that systemd (`systemd-run`), with a daemon.json of the test's:
    "exec-opts": ["native.cgroupdriver=systemd"], two runtimes "ocirun" and "runc-w" whose paths are the logging
    wrappers (systemd_engines.Engines: enginebed.WRAPPER) around this checkout's ocirun and Debian's runc 1.1.5
    ("runc" is a name dockerd reserves for its own), no networking (iptables false, bridge none), storage driver
    overlay2 with the data-root on the bed's /var/lib/docker volume (a real filesystem; the mount point itself,
    see DockerInBed), its own exec-root, pidfile and socket (/run/T/...). The image is a busybox-static rootfs,
    `docker import`ed: nothing is pulled. dockerd gives each custom runtime to containerd's io.containerd.runc.v2
    shim as BinaryName with SystemdCgroup = true (the cgroup driver), and the cgroupsPath
    "system.slice:docker:<id>".

Every test runs for both runtimes. `docker run -d` (memory and pids limits), exec, update, pause, rm -f:
  - the shim called the runtime with --systemd-cgroup (the wrapper's record) and cgroupsPath
    "system.slice:docker:<id>" (the bundle's config.json), and the unit systemd shows is the runtime's
    (Description "ocirun container <id>", runc's "libcontainer container <id>");
  - systemd has docker-<id>.scope active in system.slice with the limits docker was given (`systemctl show`
    MemoryLimit, TasksMax), the cgroup files say the same, the container's process is in it and `docker exec`
    sees it in /proc/self/cgroup;
  - `docker update` changes the unit's MemoryLimit (and the cgroup file), `docker pause`/`unpause` freeze and
    thaw the scope's freezer cgroup;
  - `docker rm -f` removes the unit and its cgroups in every hierarchy, and nothing of docker's is left in the bed
    (units, cgroups, mounts, shims, runtime state, containers).
`docker run --rm`: the container sees its scope in every hierarchy, and the unit and cgroups go with it.
After the module: dockerd (and its containerd) stopped, its unit gone, nothing mounted under its roots.
"""
import json
import re
import shutil
import uuid

import pytest

import enginebed
from systemd_engines import DESCRIPTION, RUNTIMES, Engines
from test_systemd_engines import assert_systemd_cgroup_calls, cgroup_line

MEM = 64 << 20
# docker's names of the runtimes (dockerd refuses a runtime named "runc": it is its built-in one)
DOCKER_NAME = {"ocirun": "ocirun", "runc": "runc-w"}


class DockerInBed:
    """dockerd in the bed (a transient unit), its CLI, what it leaves."""

    IMAGE = "sddocker-busybox:test"

    def __init__(self, eng):
        self.eng = eng
        self.bed = eng.bed
        # the volume's mount point itself: dockerd makes its data-root a shared mount, and of a directory that is
        # not a mount point it makes a bind mount of its own, which it leaves behind when that directory is below a
        # private mount (moby/moby#36107, the reviewer's second case: dind with --data-root below
        # /var/lib/docker); the volume is a mount point, dockerd only remounts it shared
        self.data_root = "/var/lib/docker"
        self.exec_root = f"{eng.run_dir}/docker-exec"
        self.sock = f"{eng.run_dir}/docker.sock"
        self.pidfile = f"{eng.run_dir}/docker.pid"
        self.conf = f"{eng.dir}/daemon.json"
        self.unit = f"{eng.tag}-docker.service"
        self.started = False

    def daemon_json(self):
        return {
            "exec-opts": ["native.cgroupdriver=systemd"],
            "runtimes": {DOCKER_NAME[rt]: {"path": self.eng.wrappers[rt]} for rt in RUNTIMES},
            "iptables": False, "ip-forward": False, "ip-masq": False, "bridge": "none",
            "storage-driver": "overlay2",
            "data-root": self.data_root, "exec-root": self.exec_root, "pidfile": self.pidfile,
            "hosts": [f"unix://{self.sock}"],
            "log-driver": "json-file", "features": {"buildkit": False},
        }

    def setup(self):
        eng = self.eng
        with open(eng.host(self.conf), "w") as f:
            json.dump(self.daemon_json(), f, indent=1)
        rootfs = eng.host(f"{eng.dir}/rootfs")
        enginebed.make_rootfs(rootfs)
        enginebed.write_rootfs_tar(rootfs, eng.host(f"{eng.dir}/docker.tar"))
        shutil.rmtree(rootfs)
        self.bed.run(["systemd-run", "--unit", self.unit, "--collect", "dockerd", "--config-file", self.conf],
                     check=True)
        self.started = True
        try:
            eng.wait(lambda: self("version").returncode == 0, f"dockerd ({self.unit}) answering", timeout=60)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.journal()}") from None
        self("import", f"{eng.dir}/docker.tar", self.IMAGE, check=True)
        return self

    def journal(self, n=40):
        return self.bed.run(f"journalctl -b --no-pager -u {self.unit} | tail -n {n}").stdout

    def __call__(self, *args, check=False, timeout=60):
        return self.bed.run(["docker", "-H", f"unix://{self.sock}", *args], check=check, timeout=timeout)

    def run_detached(self, rt, *args):
        # docker run -d leaves nothing holding the exec's outputs (the shim is dockerd's), but keep to the rule
        return self.eng.detached(["docker", "-H", f"unix://{self.sock}", "run", "-d", "--runtime",
                                  DOCKER_NAME[rt], *args])

    def container_ids(self):
        return self("ps", "-a", "-q", "--no-trunc", check=True).stdout.split()

    def force_remove(self):
        for cid in self.container_ids():
            self("rm", "-f", cid)

    def leftovers(self, ids=()):
        found = self.eng.leftovers(
            unit_globs=["docker-*.scope"], cgroup_names=[r"^docker-"],
            mount_needles=[f"{self.data_root}/overlay2/", f"{self.exec_root}/containerd/", "/run/docker/", *ids],
            procs=("containerd-shim",),
            # the shim's --root for the runtime (for the custom ones too, in 20.10): <exec-root>/runtime-runc/moby/<id>
            runtime_roots=[(f"{self.exec_root}/runtime-{name}", 2) for name in ("runc", *DOCKER_NAME.values())])
        if self.started:
            found += [f"docker container {c}" for c in self.container_ids()]
        return found

    def teardown(self):
        problems = []
        if self.started:
            self.force_remove()
            self("rmi", "-f", self.IMAGE)
            problems += self.eng.stop_unit(self.unit)
            self.started = False
        problems += self.leftovers()
        problems += self.eng.leftovers(unit_globs=[self.unit], cgroup_names=[rf"^{re.escape(self.unit)}$"],
                                       mount_needles=[self.data_root + "/", self.exec_root],
                                       procs=("dockerd", "containerd"))
        if problems:
            problems.append(f"journal of {self.unit}:\n{self.journal()}")
        # the volume stays (a mount point of the bed), what dockerd put in it goes
        self.bed.run(f"rm -rf {self.exec_root} {self.data_root}/* {self.data_root}/.[!.]*")
        return problems


@pytest.fixture(scope="module")
def docker(systemd_bed):
    eng = Engines(systemd_bed, tag="sddocker" + uuid.uuid4().hex[:6]).setup()
    d = DockerInBed(eng)
    try:
        d.setup()
    except BaseException:
        d.teardown()
        eng.teardown()
        raise
    yield d
    problems = d.teardown()
    eng.teardown()
    assert not problems, "docker left in the systemd bed:\n  " + "\n  ".join(problems)


@pytest.fixture
def dk(docker):
    """docker, its containers force-removed after the test (the test asserts itself that it left nothing)."""
    yield docker
    docker.force_remove()


@pytest.mark.parametrize("rt", RUNTIMES)
def test_docker_systemd_scope_limits_exec_update_pause_rm(dk, rt):
    eng = dk.eng
    mark = eng.calls_mark(rt)
    r = dk.run_detached(rt, "--network", "none", "--memory", "64m", "--pids-limit", "40", dk.IMAGE,
                        "sleep", "1000")
    assert r.returncode == 0, f"{r}\n{dk.journal()}"
    cid = r.stdout.split()[-1]
    assert re.fullmatch(r"[0-9a-f]{64}", cid), r
    unit = f"docker-{cid}.scope"
    scope = f"/system.slice/{unit}"

    # what the shim asked of the runtime: --systemd-cgroup, and dockerd's slice:prefix:name
    assert_systemd_cgroup_calls(eng, rt, mark, cid, verbs=("create", "start"))
    bundle = f"{dk.exec_root}/containerd/daemon/io.containerd.runtime.v2.task/moby/{cid}"
    assert json.loads(eng.cat(f"{bundle}/config.json"))["linux"]["cgroupsPath"] == f"system.slice:docker:{cid}"

    p = eng.show(unit, "ActiveState", "Slice", "ControlGroup", "Delegate", "MemoryLimit", "TasksMax", "Description")
    assert p == {"ActiveState": "active", "Slice": "system.slice", "ControlGroup": scope, "Delegate": "yes",
                 "MemoryLimit": str(MEM), "TasksMax": "40", "Description": DESCRIPTION[rt].format(cid)}
    assert eng.cat(f"/sys/fs/cgroup/memory{scope}/memory.limit_in_bytes") == str(MEM)
    assert eng.cat(f"/sys/fs/cgroup/pids{scope}/pids.max") == "40"
    pid = dk("inspect", "--format", "{{.State.Pid}}", cid, check=True).stdout.strip()
    for h in ("memory", "pids", "cpu", "freezer", "systemd"):
        assert pid in eng.cat(f"/sys/fs/cgroup/{h}{scope}/cgroup.procs").split(), h

    mark_exec = eng.calls_mark(rt)
    own = dk("exec", cid, "cat", "/proc/self/cgroup", check=True).stdout
    assert cgroup_line(own, "memory", scope) and cgroup_line(own, "name=systemd", scope), own
    assert_systemd_cgroup_calls(eng, rt, mark_exec, cid, verbs=("exec",))

    # docker run --memory 64m set the swap limit to twice that: a larger memory limit needs a larger one too
    dk("update", "--memory", "128m", "--memory-swap", "256m", cid, check=True)
    assert eng.show(unit, "MemoryLimit")["MemoryLimit"] == str(128 << 20)
    assert eng.cat(f"/sys/fs/cgroup/memory{scope}/memory.limit_in_bytes") == str(128 << 20)
    assert eng.cat(f"/sys/fs/cgroup/memory{scope}/memory.memsw.limit_in_bytes") == str(256 << 20)
    assert eng.show(unit, "TasksMax")["TasksMax"] == "40"

    dk("pause", cid, check=True)
    assert eng.cat(f"/sys/fs/cgroup/freezer{scope}/freezer.state") == "FROZEN"
    assert dk("inspect", "--format", "{{.State.Status}}", cid, check=True).stdout.strip() == "paused"
    dk("unpause", cid, check=True)
    assert eng.cat(f"/sys/fs/cgroup/freezer{scope}/freezer.state") == "THAWED"
    assert dk("exec", cid, "true").returncode == 0
    assert eng.show(unit, "ActiveState")["ActiveState"] == "active"

    dk("rm", "-f", cid, check=True)
    assert eng.show(unit, "LoadState")["LoadState"] == "not-found"
    assert eng.cgroup_dirs(scope) == []
    assert_systemd_cgroup_calls(eng, rt, mark, cid,
                                verbs=("create", "start", "exec", "update", "pause", "resume", "kill", "delete"))
    assert enginebed.failed_calls(eng.host(eng.calls_log(rt)), mark) == []
    eng.wait(lambda: dk.leftovers([cid]) == [], f"nothing of {cid} left: {dk.leftovers([cid])}")


@pytest.mark.parametrize("rt", RUNTIMES)
def test_docker_run_rm_sees_its_scope(dk, rt):
    eng = dk.eng
    mark = eng.calls_mark(rt)
    cidfile = f"{eng.run_dir}/cid-{rt}"
    r = dk("run", "--rm", "--runtime", DOCKER_NAME[rt], "--network", "none", "--cidfile", cidfile, dk.IMAGE,
           "cat", "/proc/self/cgroup")
    assert r.returncode == 0, r
    cid = eng.cat(cidfile)
    eng.bed.run(["rm", "-f", cidfile])
    scope = f"/system.slice/docker-{cid}.scope"
    for h in ("memory", "pids", "cpu", "name=systemd", ""):
        assert cgroup_line(r.stdout, h, scope), (h, r)
    assert_systemd_cgroup_calls(eng, rt, mark, cid, verbs=("create", "start", "delete"))
    assert enginebed.failed_calls(eng.host(eng.calls_log(rt)), mark) == []
    # docker run --rm returns once the container exited; the removal follows
    eng.wait(lambda: eng.show(f"docker-{cid}.scope", "LoadState")["LoadState"] == "not-found", "unit gone")
    eng.wait(lambda: eng.cgroup_dirs(scope) == [], "cgroups gone")
    eng.wait(lambda: dk.leftovers([cid]) == [], f"nothing of {cid} left: {dk.leftovers([cid])}")
