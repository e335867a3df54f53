"""Real producers' config.json (tests/fixtures/producers/, see PROVENANCE.md there) run by ocirun AND by runc.

For every corpus file: one bundle per runtime, both made the same way from the producer's config:
  * rootfs: the session's busybox rootfs plus the conformance probe (conformance/probe/probe.c, static) at /probe;
    root.path -> "rootfs"; process.args -> the probe (asking for the config's devices and sysctls).
  * host-specific resources made portable (every other value is the producer's):
      - bind sources: volumes (@SHARED@/..., @HOSTPATH@/...) -> directories on a tmpfs this module mounts and makes
        shared (so that rslave/rshared mean something; docker and the kubelet require a shared or slave source);
        the engine's own files (@BASE@/..., /var/lib/..., /run/..., or a host path missing here) -> files or
        directories the test creates (the kind the engine had, from index.json, else by destination);
      - namespace paths (/proc/PID/ns/X of a pod sandbox, /var/run/netns/...) -> the namespaces of a holder
        process the test starts (`unshare --net --ipc --uts`); docker's host-network path -> this process's netns;
      - hooks (docker's /proc/DOCKERD/exe libnetwork-setkey) -> a recording hook with the same args;
      - linux.cgroupsPath -> "/<container id>" (unique, and the leak checker finds it by the id prefix);
      - capabilities this host's bounding set lacks (here CAP_SYS_RESOURCE) are dropped, and rlimits above this
        host's hard limit are lowered to it (raising them needs CAP_SYS_RESOURCE): both runtimes refuse the
        producer's value on such a host for that reason alone (runc: "unable to apply caps", "error setting
        rlimit type 7"), which says nothing about the config;
      - hostname placeholders -> "corpus".
The bundles live on the shared tmpfs too, so that the rootfs propagation is observable: the container's "/" is a
slave of the host's peer group (rslave), a member of it (shared/rshared) or private. The module runs in a mount
namespace of its own (own_mount_ns), so that other processes changing the host's propagation cannot change what
it observes.

Each runtime runs the bundle (`run`, foreground) once; the probe's JSON is reduced to what the producer asked for
(mount propagation and options of "/" and of every mount, caps, uid/gids, rlimits, read-only root, devices,
sysctls, namespaces joined or new, no_new_privs, seccomp mode, oom_score_adj, the recording hook's calls,
mounts that propagated back to the host). Asserted: runc's observation matches the config, and ocirun's is the
same as runc's. A corpus file runc refuses must be refused by ocirun too. Where Debian's runc 1.1 differs from runc
1.2+ (which ocirun follows, spec/EXTENSIONS.md), one documented piece of code per difference, keyed by runc's
version and the config, sets exactly that part aside, checking ocirun against 1.2+ where the probe shows it:
(r)shared root propagation (in the test), tmpfs over an existing directory (_tmpfs_mode_as_runc_1_2).
"""

import ctypes
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading

import pytest

import _rootfs_helpers as H
import hostmounts
import procstatus
from conftest import safe_rmtree

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CORPUS_DIR = os.path.join(REPO, "tests", "fixtures", "producers")
CORPUS = sorted(os.path.relpath(p, CORPUS_DIR)[:-len(".json")]
                for p in glob.glob(os.path.join(CORPUS_DIR, "*", "*.json")))
FILE_DESTS = {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev/termination-log", "/run/.containerenv",
              "/sbin/docker-init", "/run/podman-init"}
PROPAGATION = {"shared", "rshared", "slave", "rslave", "private", "rprivate", "unbindable", "runbindable"}
FLAG_OPTS = ("ro", "nosuid", "nodev", "noexec")
RUN_TIMEOUT = 30
# Corpus files that runc refuses on any host, with its reason; ocirun must refuse them too. Every other file must
# run under runc (with the portability changes of the module doc).
RUNC_REFUSES = {
    # crun fills in the rootless user namespace's mappings at run time; runc does not
    "crun/spec-rootless": "User namespaces enabled, but no uid mappings found",
}


# ----------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def probe_bin():
    sys.path.insert(0, REPO)
    from conformance.conftest import _compile_probe

    try:
        return _compile_probe()
    except Exception as e:  # pytest.UsageError without gcc -static
        pytest.fail(f"cannot build the conformance probe: {e}")


_CLONE_NEWNS, _MS_REC, _MS_PRIVATE = 0x00020000, 0x4000, 1 << 18


@pytest.fixture(scope="module")
def own_mount_ns():
    """This module runs in a mount namespace of its own (made private), and returns to the original one after.

    The propagation the module observes is that of its shared tmpfs mounts, and other processes on the host
    change the host's propagation at any time: runc with no mount namespace in its config remounts the host's
    "/" recursively rslave/rprivate (spec/EXTENSIONS.md, "no mount namespace"; the differential suite and
    runc's own bats tests run such configs), which turned these tmpfs mounts into slaves or private mounts in
    the middle of a run and made whole runs fail at random. In a namespace of its own nothing outside reaches
    them, and nothing the containers propagate back reaches the real host."""
    libc = ctypes.CDLL(None, use_errno=True)
    if threading.active_count() != 1:  # setns(CLONE_NEWNS) needs an fs_struct this thread alone uses
        pytest.fail(f"{threading.active_count()} threads: cannot enter a mount namespace of the module's own")
    orig, cwd = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC), os.getcwd()
    orig_name = os.readlink("/proc/self/ns/mnt")
    try:
        if libc.unshare(_CLONE_NEWNS) != 0:
            pytest.fail(f"unshare(CLONE_NEWNS): {os.strerror(ctypes.get_errno())}")
        if libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
            pytest.fail(f"mount --make-rprivate /: {os.strerror(ctypes.get_errno())}")
        yield
    finally:
        for _ in range(500):  # a console server's thread may still be finishing
            if threading.active_count() == 1:
                break
            subprocess.run(["sleep", "0.01"])
        if libc.setns(orig, _CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "setns back to the original mount namespace")
        os.close(orig)
        assert os.readlink("/proc/self/ns/mnt") == orig_name, "not back in the original mount namespace"
        os.chdir(cwd)


def _shared_tmpfs(tag):
    d = tempfile.mkdtemp(prefix=f"ocrprod{tag}-", dir="/tmp")
    os.chmod(d, 0o755)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755,size=256m", "ocirun-corpus", d], check=True)
    try:
        subprocess.run(["mount", "--make-shared", d], check=True)
        yield d, _peer_group(d)
    finally:
        subprocess.run(["umount", "-R", "-l", d], stderr=subprocess.DEVNULL)
        os.rmdir(d)


@pytest.fixture(scope="module")
def bundles_tmpfs(own_mount_ns):
    """A shared tmpfs for the bundles (so that the rootfs propagation shows). Yields (path, peer group id)."""
    yield from _shared_tmpfs("b")


@pytest.fixture(scope="module")
def volumes_tmpfs(own_mount_ns):
    """Another shared tmpfs for the volume sources: a mount of their own, as on a real host (the runtimes make
    the rootfs's parent mount private or slave; that must not change the volumes' propagation)."""
    yield from _shared_tmpfs("v")


@pytest.fixture(scope="module")
def index():
    with open(os.path.join(CORPUS_DIR, "index.json")) as f:
        return json.load(f)


@pytest.fixture
def ns_holder():
    """A process in new net, ipc and uts namespaces: the 'pod sandbox' whose namespaces CRI containers join."""
    p = subprocess.Popen(["unshare", "--net", "--ipc", "--uts", "sleep", "120"], stdin=subprocess.DEVNULL)
    try:
        for _ in range(200):  # until unshare has exec'd sleep in its new namespaces
            if _ns(p.pid, "net") != _ns(os.getpid(), "net"):
                break
            subprocess.run(["sleep", "0.01"])
        yield p.pid
    finally:
        p.kill()
        p.wait()


# ----------------------------------------------------------------------------------------------- helpers
def _peer_group(path):
    with open("/proc/self/mountinfo") as f:
        for line in f:
            a = line.split(" - ")[0].split()
            if hostmounts.unescape(a[4]) == path:
                tags = dict(t.split(":", 1) for t in a[6:] if ":" in t)
                return tags.get("shared")
    return None


def _ns(pid, kind):
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def _host_bounding():
    with open("/proc/self/status") as f:
        return procstatus.caps_of(f.read())["CapBnd"]


def _subst(text, values):
    for k, v in values.items():
        text = text.replace("@" + k + "@", v)
    return text


def _resolve_in(root, path):
    """path inside the container with the rootfs's symlinks followed (e.g. /sbin/x -> /bin/x in busybox)."""
    parts, out, hops = [p for p in path.split("/") if p], "", 0
    while parts and hops < 40:
        p = parts.pop(0)
        cand = out + "/" + p
        full = root + cand
        if os.path.islink(full):
            hops += 1
            target = os.readlink(full)
            parts = [x for x in target.split("/") if x] + parts
            if target.startswith("/"):
                out = ""
            continue
        out = cand
    return os.path.normpath(out or "/")


def _is_bind(m):
    opts = m.get("options") or []
    return m.get("type") == "bind" or "bind" in opts or "rbind" in opts


class Prepared:
    """The portable config for one runtime plus what the test made for it."""

    def __init__(self, cfg, bundle, hook_log, vol_dirs, cid):
        self.cfg, self.bundle, self.hook_log, self.vol_dirs, self.cid = cfg, bundle, hook_log, vol_dirs, cid


def prepare(name, raw, meta, where, vols, cid, rootfs_src, probe, holder):
    """A runnable bundle at `where` from the corpus config `raw` (see the module doc)."""
    os.makedirs(where)
    rootfs = os.path.join(where, "rootfs")
    shutil.copytree(rootfs_src, rootfs, symlinks=True)
    shutil.copy2(probe, os.path.join(rootfs, "probe"))
    os.chmod(os.path.join(rootfs, "probe"), 0o755)
    host = os.path.join(where, "host")  # the engine's files, recreated
    os.makedirs(host)
    os.makedirs(vols)  # volume sources (on the volumes' shared tmpfs)
    os.chmod(where, 0o755)
    text = _subst(raw, {"ID": cid, "SHORTID": "corpus", "SANDBOX_PID": str(holder), "NETNS_ID": "x",
                        "SANDBOX_ID": "sandbox", "POD_UID": "pod", "RAND": "x", "LAYER": "x", "CONTROLLER_ID": "x",
                        "CGROUP_PARENT": "p", "NAMESPACE": "ns", "DOCKERD_PID": "1",
                        "SHARED": "@VOLUME@", "HOSTPATH": "@VOLUME@", "BASE": "@ENGINE@"})
    cfg = json.loads(text)
    cfg.pop("_provenance", None)
    cfg["root"] = dict(cfg.get("root") or {}, path="rootfs")
    proc = cfg.setdefault("process", {})
    kinds = meta.get("bind_source_types", {})
    vol_dirs = {}
    for i, m in enumerate(cfg.get("mounts") or []):
        if not _is_bind(m):
            continue
        src = m.get("source", "")
        if src.startswith("@VOLUME@"):
            new = os.path.join(vols, src[len("@VOLUME@"):].strip("/").replace("/", "_") or "v")
            os.makedirs(new, exist_ok=True)
            vol_dirs[m["destination"]] = new
        elif src.startswith(("@ENGINE@", "/var/lib/", "/run/")) or not os.path.exists(src):
            kind = kinds.get(m["destination"])
            if kind not in ("file", "dir"):  # the engine had removed it when the generator looked
                kind = "file" if m["destination"] in FILE_DESTS else "dir"
            new = os.path.join(host, f"m{i}")
            if kind == "file":
                with open(new, "w") as f:
                    f.write(f"{m['destination']}\n")
            else:
                os.makedirs(new)
        else:
            continue  # a host path every Linux host has (/dev/shm, /sys, /etc/hosts of network=host)
        m["source"] = new
    L = cfg.setdefault("linux", {})
    for n in L.get("namespaces") or []:
        p = n.get("path")
        if not p:
            continue
        if "@ENGINE@" in p:  # docker --network host: the netns of the daemon's host, i.e. ours
            n["path"] = f"/proc/{os.getpid()}/ns/{n['type'][:3] if n['type'] == 'network' else n['type']}"
        else:
            n["path"] = f"/proc/{holder}/ns/" + {"network": "net", "mount": "mnt"}.get(n["type"], n["type"])
    hook_log = os.path.join(where, "hooks.log")
    hooks = cfg.get("hooks") or {}
    for stage, lst in hooks.items():
        for j, h in enumerate(lst):
            script = os.path.join(where, f"hook-{stage}-{j}")
            with open(script, "w") as f:
                # reads the state from stdin as real hooks do (docker's libnetwork-setkey does): runc gets a
                # SIGPIPE when a hook exits before taking it, and forwards that to the container's process,
                # which dies of it outside a pid namespace (docker/pid-host: exit 141, one run in ~5)
                f.write(f"#!/bin/sh\ncat > /dev/null\necho \"{stage} $*\" >> {hook_log}\n")
            os.chmod(script, 0o755)
            h["path"] = script
    if "cgroupsPath" in L:
        L["cgroupsPath"] = "/" + cid
    # host limits (see the module doc)
    bnd = _host_bounding()
    caps = proc.get("capabilities") or {}
    for k, lst in caps.items():
        caps[k] = [c for c in lst if c in procstatus.CAP and bnd >> procstatus.CAP[c] & 1]
    import resource

    for rl in proc.get("rlimits") or []:
        res = getattr(resource, rl["type"], None)
        if res is not None:
            _soft, host_hard = resource.getrlimit(res)
            if host_hard != resource.RLIM_INFINITY and rl["hard"] > host_hard:
                rl["hard"] = host_hard
                rl["soft"] = min(rl["soft"], host_hard)
    if "oomScoreAdj" in proc and not bnd >> procstatus.CAP["CAP_SYS_RESOURCE"] & 1:
        with open("/proc/self/oom_score_adj") as f:
            floor = int(f.read())
        if proc["oomScoreAdj"] < floor:  # lowering it needs CAP_SYS_RESOURCE
            proc["oomScoreAdj"] = floor
    for key, idx in (("uidMappings", 0), ("gidMappings", 1)):
        for mp in L.get(key) or []:
            if mp["containerID"] == 0:
                # the engine's storage hands a user-namespaced container a rootfs owned by its mapped root
                subprocess.run(["chown", "-R", "--no-dereference", f"{mp['hostID']}" if idx == 0 else f":{mp['hostID']}",
                                rootfs], check=True)
    args = ["/probe"]
    for d in L.get("devices") or []:
        args += ["--dev", d["path"]]
    for k in sorted(L.get("sysctl") or {}):
        args += ["--sysctl", k]
    proc["args"] = args
    proc.setdefault("cwd", "/")
    with open(os.path.join(where, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return Prepared(cfg, where, hook_log, vol_dirs, cid)


def run_probe(runner, prep, cid):
    """`run` the bundle in the foreground; returns (Result, probe JSON or None)."""
    out = os.path.join(prep.bundle, "stdout")
    if prep.cfg["process"].get("terminal"):
        # as engines do: --console-socket, the probe's JSON comes through the pty
        srv = H.ConsoleServer(os.path.join(prep.bundle, "console.sock"))
        try:
            res = runner("run", "--detach", "--console-socket", srv.path, "--bundle", prep.bundle, cid, stdout=out,
                         timeout=RUN_TIMEOUT)
            text = srv.read_all() if res.returncode == 0 and srv.wait() is not None else ""
            runner.wait_status(cid, "stopped")
        finally:
            srv.close()
    else:
        res = runner("run", "--bundle", prep.bundle, cid, stdout=out, timeout=RUN_TIMEOUT)
        text = res.stdout
    runner("delete", "--force", cid)
    data = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                pass
    return res, data


def propagated_to_host(prep):
    """Mount points the container's mounts propagated into the host under its bundle (then unmounted)."""
    found = sorted({mp for _mid, mp, _fs, _src in hostmounts.read_mounts()
                    if mp.startswith(prep.bundle + "/")}, key=lambda p: -p.count("/"))
    for mp in found:
        subprocess.run(["umount", "-l", mp], stderr=subprocess.DEVNULL)
    return sorted(os.path.relpath(mp, prep.bundle) for mp in found)


def propagation_of(mount, host_group):
    """'shared-with-host', 'slave-of-host', 'shared-and-slave-of-host', 'shared', 'slave' or 'private'."""
    tags = dict(t.split(":", 1) for t in mount["optional"] if ":" in t)
    shared, master = tags.get("shared"), tags.get("master")
    if shared and shared == host_group:
        return "shared-with-host"
    if shared and master == host_group:
        return "shared-and-slave-of-host"
    if master == host_group:
        return "slave-of-host"
    return "shared" if shared else "slave" if master else "private"


def _fd_kind(target):
    """/proc/self/fd/N's link as a kind: pipe, socket, anon_inode:..., /dev/null, pty, file (some other file)."""
    m = re.match(r"^(pipe|socket):\[\d+\]$", target or "")
    if m:
        return m.group(1)
    if (target or "").startswith(("anon_inode:", "/dev/null")):
        return target
    return "pty" if (target or "").startswith(("/dev/pts/", "/dev/console")) else "file"


def observe(prep, data, groups, holder):
    """What the producer asked for, as the probe saw it (comparable across runtimes)."""
    cfg = prep.cfg
    by_mp = {}
    for m in data["mounts"]:
        by_mp[m["mountpoint"]] = m  # the last one at a path is the visible one
    obs = {}
    root = by_mp["/"]
    obs["root"] = {"propagation": propagation_of(root, groups[0]), "ro": "ro" in root["options"].split(",")}
    mounts = {}
    masked = set((cfg.get("linux") or {}).get("maskedPaths") or [])
    for m in cfg.get("mounts") or []:
        dst = m["destination"]
        seen = by_mp.get(dst) or by_mp.get(_resolve_in(prep.bundle + "/rootfs", dst))
        if seen is None or dst in masked:
            mounts[dst] = None if seen is None else "masked"
            continue
        opts = seen["options"].split(",")
        mounts[dst] = {"fstype": seen["fstype"], "flags": sorted(o for o in FLAG_OPTS if o in opts),
                       "propagation": propagation_of(seen, groups[1] if dst in prep.vol_dirs else groups[0]),
                       "super": sorted(o for o in seen["super"].split(",") if o.startswith(("mode=", "size=")))}
    obs["mounts"] = mounts
    # every mount the container sees, by mount point (stacked ones in order): what the runtime adds beyond the
    # config (masked and read-only paths, the hierarchies of a cgroup mount, /dev/pts, ...) counts too
    table = {}
    for m in data["mounts"]:
        opts = m["options"].split(",")
        table.setdefault(m["mountpoint"], []).append(
            f"{m['fstype']} {','.join(o for o in FLAG_OPTS if o in opts) or '-'}")
    obs["mount_table"] = table
    obs["caps"] = {k: int(v, 16) for k, v in data["capabilities"].items()}
    obs["ids"] = {"uid": data["uid"], "gid": data["gid"], "groups": sorted(data["groups"])}
    obs["rlimits"] = {r["type"]: data["rlimits"].get(r["type"]) for r in (cfg["process"].get("rlimits") or [])}
    obs["devices"] = data["devices"]
    obs["sysctl"] = {k: " ".join(v.split()) for k, v in data["sysctl"].items()}
    obs["no_new_privs"] = data["no_new_privs"]
    obs["seccomp"] = data["seccomp"]
    obs["oom_score_adj"] = data["oom_score_adj"]
    obs["hostname"] = data["hostname"]
    # the rest of the process's view: the same under both runtimes (their container ids replaced)
    def unid(v):
        return v.replace(prep.cid, "<id>") if isinstance(v, str) else v
    obs["process"] = {
        # what kind of file each open descriptor is (a runtime's own descriptors leaking in would show)
        "fds": {f["fd"]: _fd_kind(f["target"]) for f in data["fds"]},
        "umask": data["umask"], "cwd": data["cwd"], "env": sorted(unid(e) for e in data["env"]),
        "domainname": data["domainname"], "cgroup": unid(data["cgroup"]), "personality": data["personality"],
        "sched": [data["sched_policy"], data["sched_priority"], data["sched_reset_on_fork"], data["nice"]],
        "ioprio": data["ioprio"], "cpus_allowed": data["cpus_allowed"], "mempolicy": data["mempolicy"],
        "tty": {k: bool(v) for k, v in data["tty"].items()}}
    me = os.getpid()
    names = {"network": "net", "mount": "mnt", "pid": "pid", "ipc": "ipc", "uts": "uts", "user": "user",
             "cgroup": "cgroup"}
    ns = {}
    for kind, short in names.items():
        got = data["namespaces"].get(short)
        ns[kind] = ("host" if got == _ns(me, short) else "holder" if got == _ns(holder, short) else "new")
    obs["namespaces"] = ns
    try:
        with open(prep.hook_log) as f:
            obs["hooks"] = f.read().replace(prep.cid, "<id>").splitlines()
    except OSError:
        obs["hooks"] = []
    return obs


def expected_from_config(cfg, host_bnd):
    """What the observation must say, from the (portable) config alone: checked on runc's observation."""
    proc, L = cfg["process"], cfg.get("linux") or {}
    exp = {}
    caps = proc.get("capabilities") or {}
    exp["caps"] = {k: procstatus.mask(caps.get(k, [])) for k in ("bounding", "effective", "permitted")}
    user = proc.get("user") or {}
    if user.get("uid", 0) != 0:  # execve as a non-root uid: permitted and effective become the ambient set
        for k in ("effective", "permitted"):
            exp["caps"][k] = procstatus.mask(caps.get("ambient", []))
    exp["uid"], exp["gid"] = user.get("uid", 0), user.get("gid", 0)
    exp["groups"] = sorted(set(user.get("additionalGids") or []))
    exp["rlimits"] = {r["type"]: {"soft": r["soft"], "hard": r["hard"]} for r in proc.get("rlimits") or []}
    exp["sysctl"] = {k: " ".join(v.split()) for k, v in (L.get("sysctl") or {}).items()}
    exp["ro_root"] = bool((cfg.get("root") or {}).get("readonly"))
    exp["nnp"] = 1 if proc.get("noNewPrivileges") else 0
    exp["seccomp"] = 2 if L.get("seccomp") else 0
    return exp


# (shared/rshared are checked on the volumes: what "/" becomes then depends on where the rootfs lives, runc
# makes a shared parent of the rootfs private before binding the rootfs)
ROOT_PROPAGATION = {"rslave": "slave-of-host", "slave": "slave-of-host", "rprivate": "private",
                    "private": "private", None: "slave-of-host"}


def check_against_config(cfg, obs, prep):
    """runc's observation against the producer's config; returns a list of mismatches."""
    bad = []
    exp = expected_from_config(cfg, _host_bounding())
    for k in ("bounding", "effective", "permitted"):
        if obs["caps"][k] != exp["caps"][k]:
            bad.append(f"caps {k}: {obs['caps'][k]:x} != {exp['caps'][k]:x}")
    ids = obs["ids"]
    if (ids["uid"], ids["gid"]) != (exp["uid"], exp["gid"]):
        bad.append(f"uid/gid {ids['uid']}/{ids['gid']} != {exp['uid']}/{exp['gid']}")
    if not set(exp["groups"]) <= set(ids["groups"]):
        bad.append(f"groups {ids['groups']} lack {exp['groups']}")
    if obs["rlimits"] != exp["rlimits"]:
        bad.append(f"rlimits {obs['rlimits']} != {exp['rlimits']}")
    if obs["sysctl"] != exp["sysctl"]:
        bad.append(f"sysctl {obs['sysctl']} != {exp['sysctl']}")
    if obs["root"]["ro"] != exp["ro_root"]:
        bad.append(f"root read-only {obs['root']['ro']} != {exp['ro_root']}")
    if obs["no_new_privs"] != exp["nnp"]:
        bad.append(f"no_new_privs {obs['no_new_privs']} != {exp['nnp']}")
    if obs["seccomp"] != exp["seccomp"]:
        bad.append(f"seccomp mode {obs['seccomp']} != {exp['seccomp']}")
    if "oomScoreAdj" in cfg["process"] and obs["oom_score_adj"] != cfg["process"]["oomScoreAdj"]:
        bad.append(f"oom_score_adj {obs['oom_score_adj']} != {cfg['process']['oomScoreAdj']}")
    rp = (cfg.get("linux") or {}).get("rootfsPropagation")
    if rp in ROOT_PROPAGATION and obs["root"]["propagation"] != ROOT_PROPAGATION[rp]:  # unset: runc's rslave
        bad.append(f"rootfsPropagation {rp}: / is {obs['root']['propagation']}")
    for m in cfg.get("mounts") or []:
        seen = obs["mounts"].get(m["destination"])
        if seen is None:
            bad.append(f"mount {m['destination']} missing")
            continue
        if seen == "masked":
            continue
        opts = m.get("options") or []
        # a "cgroup" mount on a v1 host is a tmpfs with one mount per hierarchy below it, the flags go to those
        for o in FLAG_OPTS if m.get("type") != "cgroup" else ():
            if o in opts and o not in seen["flags"]:
                bad.append(f"mount {m['destination']}: {o} missing ({seen['flags']})")
        if m["destination"] in prep.vol_dirs:
            props = [o for o in opts if o in PROPAGATION]
            want = {"rslave": ("slave-of-host",), "slave": ("slave-of-host",),
                    "rshared": ("shared-with-host", "shared-and-slave-of-host"),
                    "shared": ("shared-with-host", "shared-and-slave-of-host"),
                    "rprivate": ("private",), "private": ("private",)}.get(props[-1] if props else None)
            if want and seen["propagation"] not in want:
                bad.append(f"mount {m['destination']} {props[-1]}: is {seen['propagation']}")
            if props and props[-1] in ("rshared", "shared") and rp in ("rshared", "shared") \
                    and seen["propagation"] != "shared-with-host":
                bad.append(f"mount {m['destination']}: {props[-1]} with rootfsPropagation {rp} is not a peer "
                           f"of the host's mount ({seen['propagation']})")
    for d in (cfg.get("linux") or {}).get("devices") or []:
        if d["path"] == "/dev/ptmx":
            continue  # the runtime makes it a symlink to pts/ptmx whatever the list says (runtime-spec, runc)
        seen = obs["devices"].get(d["path"])
        if not seen or "major" not in seen:
            bad.append(f"device {d['path']} missing ({seen})")
            continue
        if (seen["type"], seen["major"], seen["minor"]) != (d["type"], d.get("major"), d.get("minor")):
            bad.append(f"device {d['path']}: {seen} != {d}")
        if "fileMode" in d and seen["mode"] & 0o777 != d["fileMode"] & 0o777:
            bad.append(f"device {d['path']} mode {seen['mode']:o} != {d['fileMode']:o} (permission bits)")
        for k in ("uid", "gid"):
            if k in d and seen[k] != d[k]:
                bad.append(f"device {d['path']} {k} {seen[k]} != {d[k]}")
    for n in (cfg.get("linux") or {}).get("namespaces") or []:
        want = "holder" if n.get("path", "").startswith("/proc/") and f"/proc/{os.getpid()}/" not in n["path"] \
            else "host" if n.get("path") else "new"
        if n["type"] in obs["namespaces"] and obs["namespaces"][n["type"]] != want:
            bad.append(f"namespace {n['type']}: {obs['namespaces'][n['type']]} != {want}")
    hooks = sum(len(v) for v in (cfg.get("hooks") or {}).values())
    if len(obs["hooks"]) != hooks:
        bad.append(f"hooks ran {len(obs['hooks'])} times, config has {hooks}: {obs['hooks']}")
    return bad


def _runc_is_1_1():
    out = subprocess.run(["runc", "--version"], capture_output=True, text=True).stdout
    return out.startswith("runc version 1.1.")


def _tmpfs_mode_as_runc_1_2(cfg, rootfs_src, r_obs, o_obs):
    """runc 1.1 vs 1.2+ (spec/EXTENSIONS.md, "Where Debian's runc 1.1.5 differs from runc 1.2+", row "tmpfs over
    an existing directory"): for a tmpfs mounted over a directory the rootfs already has, runc 1.1 mounts it with
    the config's options and then chmods the mount point to the directory's mode (v1.1.5 rootfs_linux.go
    mountToRootfs, case "tmpfs": os.Stat(dest) ... os.Chmod(dest, stat.Mode())), so no mode= shows among the
    superblock's options; runc 1.2+ puts "mode=<the directory's mode>" ahead of the options (commit 1410a6988,
    v1.2.0, createMountpoint: "If the original target exists, copy the mode for the tmpfs mount"), which
    shows as mode= unless it is tmpfs's default 1777. ocirun follows 1.2+.

    Only for a tmpfs whose destination is a directory of the rootfs itself (no earlier mount of the config
    above it): there, ocirun's superblock options must be exactly runc 1.1's with runc 1.2's mode= (the
    config's last mode= if it has one, else the directory's); then ocirun's entry is set to runc's. Any other
    difference is left for the comparison to report."""
    earlier = []
    for m in cfg.get("mounts") or []:
        dst = os.path.normpath(m["destination"])
        under_earlier = any(dst == e or dst.startswith(e.rstrip("/") + "/") for e in earlier)
        earlier.append(dst)
        if m.get("type") != "tmpfs" or under_earlier:
            continue
        a, b = r_obs["mounts"].get(m["destination"]), o_obs["mounts"].get(m["destination"])
        if not (isinstance(a, dict) and isinstance(b, dict)):
            continue
        path = os.path.join(rootfs_src, _resolve_in(rootfs_src, dst).lstrip("/"))
        if os.path.islink(path) or not os.path.isdir(path):
            continue  # created by the runtime: neither runc passes or chmods a mode
        modes = [o[5:] for o in m.get("options") or [] if o.startswith("mode=")]
        want = int(modes[-1], 8) if modes else os.stat(path).st_mode & 0o7777
        rest = [o for o in a["super"] if not o.startswith("mode=")]
        if sorted(rest + ([f"mode={want:o}"] if want != 0o1777 else [])) == b["super"]:
            b["super"] = a["super"]


# ----------------------------------------------------------------------------------------------- the test
@pytest.mark.parametrize("name", CORPUS)
def test_producer_config(name, index, oci, runc, cid, busybox_rootfs, probe_bin, bundles_tmpfs, volumes_tmpfs,
                         ns_holder):
    with open(os.path.join(CORPUS_DIR, name + ".json")) as f:
        raw = f.read()
    meta = index.get(name, {})
    shared, root_group = bundles_tmpfs
    work = tempfile.mkdtemp(prefix=cid(""), dir=shared)
    os.chmod(work, 0o755)  # a container in a user namespace must reach its rootfs
    vols = tempfile.mkdtemp(prefix=cid(""), dir=volumes_tmpfs[0])
    groups = (root_group, volumes_tmpfs[1])
    try:
        results = {}
        for label, runner in (("runc", runc), ("ocirun", oci)):
            c = cid(label)
            prep = prepare(name, raw, meta, os.path.join(work, label), os.path.join(vols, label), c, busybox_rootfs,
                           probe_bin, ns_holder)
            res, data = run_probe(runner, prep, c)
            leaked = propagated_to_host(prep)
            obs = observe(prep, data, groups, ns_holder) if data else None
            if obs is not None:
                obs["propagated_to_host"] = leaked
            results[label] = (res, data, obs, prep)
        (r_res, r_data, r_obs, r_prep), (o_res, o_data, o_obs, _o) = results["runc"], results["ocirun"]
        if name in RUNC_REFUSES:
            assert r_data is None and RUNC_REFUSES[name] in r_res.stderr, f"runc was expected to refuse:\n{r_res}"
            assert o_data is None and o_res.returncode != 0, f"runc refuses {name} but ocirun ran it:\n{o_res}"
            return
        assert r_data is not None, f"runc does not run {name} here (ocirun {o_res.returncode}):\n{r_res}"
        bad = check_against_config(r_prep.cfg, r_obs, r_prep)
        assert o_data is not None, f"ocirun does not run {name} (runc does):\n{o_res}"
        assert not bad, f"runc's container does not match {name}:\n  " + "\n  ".join(bad)
        o_bad = check_against_config(_o.cfg, o_obs, _o)
        assert not o_bad, f"ocirun's container does not match {name}:\n  " + "\n  ".join(o_bad)
        prop = (r_prep.cfg.get("linux") or {}).get("rootfsPropagation")
        if prop in ("shared", "rshared") and _runc_is_1_1():
            # runc 1.1 sets rootfsPropagation on / before pivot_root, on the tree it then leaves, so its / ends up
            # private; runc 1.2+ (and ocirun) set it on the new / after pivot_root (recursively for rshared).
            # Compare everything else; the volumes' propagation with the host still counts.
            for obs in (r_obs, o_obs):
                obs["root"].pop("propagation", None)
                for dst, m in obs["mounts"].items():
                    if isinstance(m, dict) and dst not in r_prep.vol_dirs:
                        m.pop("propagation", None)
        if _runc_is_1_1():
            _tmpfs_mode_as_runc_1_2(r_prep.cfg, busybox_rootfs, r_obs, o_obs)
        diff = {}
        for k in r_obs:
            a, b = r_obs[k], o_obs.get(k)
            if a == b:
                continue
            if isinstance(a, dict) and isinstance(b, dict):
                diff[k] = {sub: {"runc": a.get(sub), "ocirun": b.get(sub)} for sub in sorted(set(a) | set(b))
                           if a.get(sub) != b.get(sub)}
            else:
                diff[k] = {"runc": a, "ocirun": b}
        assert not diff, f"ocirun and runc disagree on {name}:\n" + json.dumps(diff, indent=1)[:6000]
    finally:
        for mp in sorted((mp for _m, mp, _f, _s in hostmounts.read_mounts() if mp.startswith(work + "/")),
                         key=lambda p: -p.count("/")):
            subprocess.run(["umount", "-l", mp], stderr=subprocess.DEVNULL)
        safe_rmtree(work)
        safe_rmtree(vols)
