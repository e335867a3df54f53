#!/usr/bin/env python3
"""Regenerate tests/fixtures/producers/: the config.json that real producers hand their runtime.

Run as root with the project's venv python (it imports the test harnesses and ocirun.bundle):

    .venv/bin/python tools/gen_producer_corpus.py                 # every producer found on this machine
    .venv/bin/python tools/gen_producer_corpus.py docker podman   # some of them
    .venv/bin/python tools/gen_producer_corpus.py --list          # the cases

Producers: docker (dockerd 20.10 via tests/integration/engine_docker.py), podman (tests/integration/podman_env.py),
ctr (containerd 1.6 via tests/integration/engine_containerd.py), runc (`runc spec`), crun (`crun spec`),
umoci (`umoci unpack`), buildah (`buildah run`). Engines that run containers are given a *capture runtime*: a
shell script that, on `create`/`run`, copies <bundle>/config.json (exactly as the engine wrote it) into the
capture dir under the container id, then execs runc with the same arguments. Nothing is downloaded: the images
are the local busybox rootfs (ocirun.bundle.make_busybox_rootfs) imported into each engine.

Host-specific noise is replaced by placeholders (see PROVENANCE.md); every other value is the producer's.
The cri-containerd/ and cri-o/ entries are written by hand (PROVENANCE.md) and are not regenerated here;
the engine table of PROVENANCE.md is index.json in prose: update it with the entries.

Needs: docker.io, podman, containerd, runc, crun, umoci, buildah (apt-get install ...), busybox-static.
"""
import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ITEST = os.path.join(REPO, "tests", "integration")
OUT = os.path.join(REPO, "tests", "fixtures", "producers")
RUNC = "/usr/sbin/runc"
sys.path.insert(0, REPO)
sys.path.insert(0, ITEST)

CAPTURE = r"""#!/bin/sh
# capture runtime: keep the bundle's config.json of every create/run, then be runc
CAP=%(cap)s
verb= ; bundle= ; skip= ; want=
for a in "$@"; do
    if [ -n "$want" ]; then bundle=$a; want=; continue; fi
    if [ -n "$skip" ]; then skip=; continue; fi
    case "$a" in
        --bundle|-b) want=1 ;;
        --bundle=*|-b=*) bundle=${a#*=} ;;
        --root|--log|--log-format|--criu|--rootless) [ -z "$verb" ] && skip=1 ;;
        -*) ;;
        *) [ -z "$verb" ] && verb=$a; last=$a ;;
    esac
done
case "$verb" in
    create|run)
        [ -n "$bundle" ] || bundle=$PWD
        cp "$bundle/config.json" "$CAP/$last.json" ;;
esac
exec %(runc)s "$@"
"""

SHORT_CAPS = "CHOWN DAC_OVERRIDE".split()


# ---------------------------------------------------------------------------------------------- helpers
def sh(*argv, check=True, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("timeout", 120)
    r = subprocess.run([str(a) for a in argv], **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} exited {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def version(*argv):
    try:
        return sh(*argv).stdout.strip().splitlines()[0]
    except (RuntimeError, OSError, IndexError):
        return "?"


class Corpus:
    """Collects entries: (producer, case) -> config + provenance, writes them out."""

    def __init__(self, out):
        self.out = out
        self.index = {}
        path = os.path.join(out, "index.json")
        if os.path.exists(path):
            with open(path) as f:
                self.index = json.load(f)
        self.date = datetime.date.today().isoformat()
        self.failed = []

    def add(self, producer, case, cfg, command, version, subst, bind_types=None, note=None):
        text = json.dumps(cfg, indent=2, sort_keys=False)
        for old, new in sorted(subst.items(), key=lambda kv: -len(kv[0])):
            if old:
                text = text.replace(old, new)
        cfg = json.loads(text)
        d = os.path.join(self.out, producer)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, case + ".json"), "w") as f:
            f.write(json.dumps(cfg, indent=2) + "\n")
        entry = {"producer": producer, "version": version, "command": command, "date": self.date,
                 "placeholders": sorted(set(v for v in subst.values() if v and v in text))}
        if bind_types:
            entry["bind_source_types"] = bind_types
        if note:
            entry["note"] = note
        self.index[f"{producer}/{case}"] = entry
        print(f"  {producer}/{case}")

    def fail(self, producer, case, why):
        self.failed.append((producer, case, why))
        print(f"  {producer}/{case}: FAILED: {why.strip().splitlines()[-1] if why.strip() else why}")

    def save(self):
        with open(os.path.join(self.out, "index.json"), "w") as f:
            f.write(json.dumps(dict(sorted(self.index.items())), indent=2) + "\n")


def bind_types(cfg):
    """{destination: "file"|"dir"|"missing"} of every bind mount source, read while the engine's files exist."""
    out = {}
    for m in cfg.get("mounts") or []:
        opts = m.get("options") or []
        if m.get("type") == "bind" or "bind" in opts or "rbind" in opts:
            src = m.get("source", "")
            out[m["destination"]] = ("dir" if os.path.isdir(src) else "file" if os.path.exists(src)
                                     else "missing")
    return out


class Shared:
    """A tmpfs made shared (mount propagation), for the volume sources that ask for rslave/rshared."""

    def __init__(self, base):
        self.path = os.path.join(base, "shared")
        os.makedirs(self.path)
        sh("mount", "-t", "tmpfs", "-o", "size=16m", "prodgen-shared", self.path)
        sh("mount", "--make-shared", self.path)
        for d in ("srv", "data", "m-rslave", "m-rprivate", "m-rshared", "vol", "ro"):
            os.makedirs(os.path.join(self.path, d))

    def close(self):
        sh("umount", "-R", "-l", self.path, check=False)


def write_capture(base):
    cap = os.path.join(base, "captured")
    os.makedirs(cap, exist_ok=True)
    path = os.path.join(base, "runc")  # named runc: podman's runtime_supports_json and friends go by basename
    with open(path, "w") as f:
        f.write(CAPTURE % {"cap": cap, "runc": RUNC})
    os.chmod(path, 0o755)
    return path, cap


def seccomp_profile(base):
    """A small custom profile (docker/podman `--security-opt seccomp=FILE`)."""
    path = os.path.join(base, "seccomp-custom.json")
    prof = {"defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["mkdirat", "mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                         {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]}
    with open(path, "w") as f:
        json.dump(prof, f)
    return path


# ---------------------------------------------------------------------------------------------- docker / podman
def engine_cases(S, seccomp, engine):
    """[(case, flags)] shared by docker and podman (`engine` picks the few that differ)."""
    c = [
        ("default", []),
        ("volume-rslave", ["-v", f"{S}/srv:/srv:rslave"]),
        ("volume-rshared", ["-v", f"{S}/data:/data:rshared"]),
        ("volume-ro", ["-v", f"{S}/ro:/ro:ro"]),
        ("mount-bind-rslave", ["--mount", f"type=bind,source={S}/m-rslave,target=/m,bind-propagation=rslave"]),
        ("mount-bind-rprivate", ["--mount", f"type=bind,source={S}/m-rprivate,target=/m,bind-propagation=rprivate"]),
        ("mount-bind-rshared", ["--mount", f"type=bind,source={S}/m-rshared,target=/m,bind-propagation=rshared"]),
        ("privileged", ["--privileged"]),
        ("cap-add-drop", ["--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--cap-drop", "CHOWN",
                          "--cap-drop", "NET_RAW"]),
        ("cap-drop-all", ["--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE"]),
        ("device", ["--device", "/dev/zero:/dev/myzero:rw", "--device", "/dev/full"]),
        ("tmpfs", ["--tmpfs", "/x:size=16m,mode=1770,noexec"]),
        ("read-only", ["--read-only"]),
        ("seccomp-unconfined", ["--security-opt", "seccomp=unconfined"]),
        ("seccomp-custom", ["--security-opt", f"seccomp={seccomp}"]),
        ("sysctl", ["--sysctl", "kernel.msgmax=65536", "--sysctl", "net.ipv4.ip_unprivileged_port_start=80"]),
        ("ulimit", ["--ulimit", "nofile=512:1024", "--ulimit", "nproc=100:200", "--ulimit", "core=0"]),
        ("user", ["--user", "1000:2000", "--group-add", "3000"]),
        ("init", ["--init"]),
        ("no-new-privileges", ["--security-opt", "no-new-privileges"]),
        ("resources", ["--pids-limit", "100", "--memory", "64m", "--cpus", "0.5"]),
        ("ipc-host", ["--ipc", "host"]),
        ("pid-host", ["--pid", "host"]),
        ("network-host", ["--network", "host"]),
    ]
    if engine == "docker":
        c.append(("ipc-shareable", ["--ipc", "shareable"]))
    else:
        c += [
            ("ipc-private", ["--ipc", "private"]),
            ("uidmap", ["--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536"]),
            # not producible as root on this machine (see PROVENANCE.md): --userns=auto needs a "containers"
            # range in /etc/subuid and /etc/subgid; --userns=keep-id is rootless-only in podman 4.3
            ("cgroupns-private", ["--cgroupns", "private"]),
            ("cgroupns-host", ["--cgroupns", "host"]),
            ("unmask-all", ["--security-opt", "unmask=ALL"]),
        ]
    return c


def gen_docker(corpus, base, shared, seccomp):
    import engine_docker as ed

    d = os.path.join(base, "docker-cap")
    os.makedirs(d)
    runtime, cap = write_capture(d)
    env = ed.DockerEnv(runtime, wrap=False)
    ver = "docker " + version(ed.docker_cli(), "--version") + "; " + version("containerd", "--version")
    try:
        env.setup()
        for case, flags in engine_cases(shared.path, seccomp, "docker"):
            net = [] if "--network" in flags else ["--network", "none"]
            argv = ["create", "--runtime", ed.RUNTIME_NAME, *net, *flags, env.image, "true"]
            r = env.docker(*argv, timeout=60)
            if r.returncode != 0:
                corpus.fail("docker", case, r.stderr)
                continue
            cid = r.stdout.strip()
            r = env.docker("start", "-a", cid, timeout=60)
            path = os.path.join(cap, cid + ".json")
            if not os.path.exists(path):
                corpus.fail("docker", case, f"no config captured (start: {r.returncode} {r.stderr})")
                env.docker("rm", "-f", cid)
                continue
            with open(path) as f:
                cfg = json.load(f)
            types = bind_types(cfg)
            env.docker("rm", "-f", cid)
            subst = {cid: "@ID@", cid[:12]: "@SHORTID@", env.base: "@BASE@", shared.path: "@SHARED@",
                     env.cgroup_parent: "/@CGROUP_PARENT@", f"/proc/{env.proc.pid}/exe": "/proc/@DOCKERD_PID@/exe"}
            for h in (cfg.get("hooks") or {}).get("prestart") or []:
                # libnetwork-setkey's last argument is the daemon's network controller id (random per daemon)
                if h.get("args", [None])[0] == "libnetwork-setkey" and len(h["args"]) == 4:
                    subst[h["args"][3]] = "@CONTROLLER_ID@"
            note = None
            if r.returncode != 0:
                note = f"the container did not run under runc here: {r.stderr.strip()[-300:]}"
            corpus.add("docker", case, cfg, "docker " + " ".join(argv).replace(shared.path, "@SHARED@")
                       .replace(seccomp, "seccomp-custom.json"), ver, subst, types, note)
    finally:
        for p in env.teardown():
            print("docker teardown: " + p, file=sys.stderr)


def gen_podman(corpus, base, shared, seccomp):
    import podman_env as pe

    d = os.path.join(base, "podman-cap")
    os.makedirs(d)
    runtime, cap = write_capture(d)
    env = pe.PodmanEnv(runtime)
    ver = version("podman", "--version") + "; " + version("conmon", "--version")
    try:
        env.setup()
        for case, flags in engine_cases(shared.path, seccomp, "podman"):
            net = [] if "--network" in flags else ["--network", "none"]
            argv = ["create", *net, "--cgroup-parent", env.cgroup_parent, *flags, env.image, "true"]
            r = env.podman(*argv, timeout=60)
            if r.returncode != 0:
                corpus.fail("podman", case, r.stderr)
                continue
            cid = r.stdout.strip().splitlines()[-1]
            r = env.podman("start", "-a", cid, timeout=60)
            path = os.path.join(cap, cid + ".json")
            if not os.path.exists(path):
                corpus.fail("podman", case, f"no config captured (start: {r.returncode} {r.stderr})")
                env.podman("rm", "-f", cid)
                continue
            with open(path) as f:
                cfg = json.load(f)
            types = bind_types(cfg)
            env.podman("rm", "-f", cid)
            subst = {cid: "@ID@", cid[:12]: "@SHORTID@", env.base: "@BASE@", shared.path: "@SHARED@",
                     env.cgroup_parent: "/@CGROUP_PARENT@"}
            note = None
            if r.returncode != 0:
                note = f"the container did not run under runc here: {r.stderr.strip()[-300:]}"
            corpus.add("podman", case, cfg, "podman " + " ".join(argv).replace(shared.path, "@SHARED@")
                       .replace(env.cgroup_parent, "/@CGROUP_PARENT@").replace(seccomp, "seccomp-custom.json"),
                       ver, subst, types, note)
    finally:
        for p in env.teardown():
            print("podman teardown: " + p, file=sys.stderr)


# ---------------------------------------------------------------------------------------------- ctr
def gen_ctr(corpus, base, shared, seccomp):
    import engine_containerd as ce
    from ocirun.bundle import make_busybox_rootfs

    d = os.path.join(base, "ctr-cap")
    os.makedirs(d)
    runtime, cap = write_capture(d)
    env = ce.ContainerdEnv(runtime, wrap=False)
    ver = version("ctr", "--version") + "; " + version("containerd", "--version")
    S = shared.path
    cases = [
        ("default", []),
        ("privileged", ["--privileged"]),
        ("mount-bind-rslave", ["--mount", f"type=bind,src={S}/m-rslave,dst=/m,options=rbind:rslave"]),
        ("mount-bind-ro", ["--mount", f"type=bind,src={S}/ro,dst=/ro,options=rbind:ro"]),
        ("rootfs-propagation-rshared", ["--rootfs-propagation", "rshared", "--mount",
                                        f"type=bind,src={S}/m-rshared,dst=/m,options=rbind:rshared"]),
        ("rootfs", ["--rootfs"]),
        ("tty", ["--tty"]),
        ("cap-add-drop", ["--cap-add", "CAP_SYS_ADMIN", "--cap-drop", "CAP_CHOWN"]),
        ("seccomp", ["--seccomp"]),
        ("seccomp-profile", ["--seccomp", "--seccomp-profile", seccomp]),
        ("memory-limit", ["--memory-limit", "67108864", "--cpus", "0.5"]),
        ("uidmap", ["--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536"]),
        ("read-only", ["--read-only"]),
        ("net-host", ["--net-host"]),
        ("device", ["--device", "/dev/zero"]),
        ("allow-new-privs", ["--allow-new-privs", "--env", "FOO=bar", "--cwd", "/tmp"]),
    ]
    try:
        env.setup()
        rootfs = make_busybox_rootfs(os.path.join(env.base, "ctr-rootfs"))
        for case, flags in cases:
            rid = "prod-" + case
            uidmap_note = None
            flags = list(flags)
            target = env.image
            if "--rootfs" in flags:
                target = rootfs
            # with --rootfs there is no image config, so no PATH: the command by its path
            cmd = "/bin/true" if target == rootfs else "true"
            argv = ["run", "--runc-binary", runtime, "--fifo-dir", env.p("fifo"), "--rm", *flags, target, rid, cmd]
            if "--tty" in flags:
                # ctr --tty wants a terminal on its stdin: script(1) gives it one
                cmd = " ".join(map(shlex_quote, [ce.which("ctr"), "--address", env.address, "--namespace",
                                                 env.namespace, *argv]))
                r = sh("script", "-qec", cmd, "/dev/null", check=False, timeout=60)
            else:
                r = env.ctr(*argv, timeout=60)
            env.ids.add(rid)
            path = os.path.join(cap, rid + ".json")
            if not os.path.exists(path) and r.returncode == 0 and "--uidmap" in flags:
                # ctr 1.6 drops --runc-binary when --uidmap is given (the container ran under the shim's default
                # runc, past the capture runtime): run it detached and read the bundle the shim made
                argv = [a for a in argv if a != "--rm"]
                argv[argv.index("true")] = "sleep"
                argv += ["30"]
                argv.insert(argv.index("run") + 1, "--detach")
                env.ctr(*argv, timeout=60)
                live = os.path.join(env.p("state"), "io.containerd.runtime.v2.task", env.namespace, rid,
                                    "config.json")
                if os.path.exists(live):
                    shutil.copy(live, path)
                    r = subprocess.CompletedProcess(argv, 0, "", "")
                    uidmap_note = ("read from the shim's bundle while the task ran (ctr 1.6 ignores --runc-binary "
                                   "with --uidmap)")
                env.ctr("tasks", "kill", "-s", "SIGKILL", rid)
                env.ctr("tasks", "delete", "-f", rid)
                env.ctr("containers", "rm", rid)
            if not os.path.exists(path):
                corpus.fail("ctr", case, f"no config captured ({r.returncode} {r.stderr})")
                continue
            with open(path) as f:
                cfg = json.load(f)
            types = bind_types(cfg)
            subst = {env.base: "@BASE@", shared.path: "@SHARED@", env.namespace: "@NAMESPACE@", rid: "@ID@"}
            note = uidmap_note
            if r.returncode != 0:
                note = f"the container did not run under runc here: {(r.stderr or r.stdout).strip()[-300:]}"
            shown = " ".join(["ctr", *argv]).replace(runtime, "CAPTURE-RUNTIME").replace(env.base, "@BASE@") \
                .replace(shared.path, "@SHARED@").replace(seccomp, "seccomp-custom.json").replace(rid, "@ID@")
            corpus.add("ctr", case, cfg, shown, ver, subst, types, note)
    finally:
        for p in env.teardown():
            print("ctr teardown: " + p, file=sys.stderr)


def shlex_quote(s):
    import shlex
    return shlex.quote(str(s))


# ---------------------------------------------------------------------------------------------- spec generators
def gen_specs(corpus, base, shared, seccomp):
    for tool, path in (("runc", RUNC), ("crun", shutil.which("crun"))):
        if not path:
            corpus.fail(tool, "spec", f"{tool} not installed")
            continue
        ver = version(path, "--version")
        for case, extra in (("spec", []), ("spec-rootless", ["--rootless"])):
            d = tempfile.mkdtemp(dir=base)
            r = sh(path, "spec", *extra, cwd=d, check=False)
            if r.returncode != 0:
                corpus.fail(tool, case, r.stderr)
                continue
            with open(os.path.join(d, "config.json")) as f:
                cfg = json.load(f)
            corpus.add(tool, case, cfg, " ".join([tool, "spec", *extra]), ver, {})


def gen_umoci(corpus, base, shared, seccomp):
    from ocirun.bundle import make_busybox_rootfs

    umoci = shutil.which("umoci")
    if not umoci:
        corpus.fail("umoci", "unpack", "umoci not installed (apt-get install umoci)")
        return
    ver = version(umoci, "--version")
    d = os.path.join(base, "umoci")
    os.makedirs(d)
    layout = os.path.join(d, "image")
    rootfs = make_busybox_rootfs(os.path.join(d, "busybox"))
    sh(umoci, "init", "--layout", layout)
    sh(umoci, "new", "--image", layout + ":base")
    sh(umoci, "insert", "--image", layout + ":base", rootfs, "/")
    sh(umoci, "config", "--image", layout + ":base", "--tag", "base", "--config.cmd", "sh")
    sh(umoci, "config", "--image", layout + ":base", "--tag", "configured", "--config.user", "1000:1000",
       "--config.workingdir", "/tmp", "--config.env", "FOO=bar", "--config.volume", "/data",
       "--config.exposedports", "8080/tcp", "--config.stopsignal", "SIGINT", "--config.entrypoint", "/bin/sh",
       "--config.cmd", "-c", "--config.cmd", "echo hi")
    cases = (
        ("unpack", ["--image", layout + ":base"]),
        ("unpack-rootless", ["--rootless", "--image", layout + ":base"]),
        ("unpack-configured", ["--image", layout + ":configured"]),
    )
    for case, args in cases:
        bundle = os.path.join(d, "bundle-" + case)
        r = sh(umoci, "unpack", *args, bundle, check=False)
        if r.returncode != 0:
            corpus.fail("umoci", case, r.stderr)
            continue
        with open(os.path.join(bundle, "config.json")) as f:
            cfg = json.load(f)
        shown = " ".join(["umoci", "unpack", *args, "BUNDLE"]).replace(layout, "IMAGE")
        corpus.add("umoci", case, cfg, shown, ver, {d: "@BASE@"})


def gen_buildah(corpus, base, shared, seccomp):
    from ocirun.bundle import make_busybox_rootfs

    buildah = shutil.which("buildah")
    if not buildah:
        corpus.fail("buildah", "run", "buildah not installed (apt-get install buildah)")
        return
    ver = version(buildah, "--version")
    d = os.path.join(base, "buildah")
    os.makedirs(d)
    runtime, cap = write_capture(os.path.join(d))
    store = ["--root", os.path.join(d, "root"), "--runroot", os.path.join(d, "runroot"),
             "--storage-driver", "vfs"]
    env = dict(os.environ, TMPDIR=os.path.join(d, "tmp"),
               CONTAINERS_REGISTRIES_CONF=os.path.join(d, "registries.conf"))
    os.makedirs(env["TMPDIR"])
    with open(env["CONTAINERS_REGISTRIES_CONF"], "w") as f:
        f.write("unqualified-search-registries = []\n")
    rootfs = make_busybox_rootfs(os.path.join(d, "busybox"))
    cgp = "/prodgen-buildah-" + os.path.basename(base)[-8:]
    ctr = None
    try:
        ctr = sh(buildah, *store, "from", "--name", "prodgen", "--cgroup-parent", cgp, "scratch", env=env).stdout.strip()
        sh(buildah, *store, "copy", ctr, rootfs + "/", "/", env=env)
        S = shared.path
        cases = (
            ("run", []),
            ("run-user", ["--user", "1000:1000"]),
            ("run-volume", ["-v", f"{S}/vol:/vol:rslave"]),
            ("run-cap-add", ["--cap-add", "CAP_SYS_ADMIN", "--cap-drop", "CAP_CHOWN"]),
            ("run-network-none", ["--network", "none"]),
        )
        for case, flags in cases:
            before = set(os.listdir(cap))
            argv = ["run", "--runtime", runtime, *flags, ctr, "--", "true"]
            r = sh(buildah, *store, *argv, env=env, check=False, timeout=60)
            new = sorted(set(os.listdir(cap)) - before)
            if not new:
                corpus.fail("buildah", case, f"no config captured ({r.returncode} {r.stderr})")
                continue
            with open(os.path.join(cap, new[-1])) as f:
                cfg = json.load(f)
            types = bind_types(cfg)
            cid = new[-1][:-len(".json")]
            note = None
            if r.returncode != 0:
                note = f"the container did not run under runc here: {r.stderr.strip()[-300:]}"
            shown = " ".join(["buildah", *argv]).replace(runtime, "CAPTURE-RUNTIME").replace(S, "@SHARED@") \
                .replace(cgp, "/@CGROUP_PARENT@")
            corpus.add("buildah", case, cfg, shown, ver,
                       {d: "@BASE@", S: "@SHARED@", cid: "@ID@", cgp: "/@CGROUP_PARENT@"}, types, note)
    finally:
        if ctr:
            sh(buildah, *store, "rm", "--all", env=env, check=False)
        sh(buildah, *store, "rmi", "--all", "--force", env=env, check=False)
        for sub in ("root", "runroot"):
            sh("umount", "-R", "-l", os.path.join(d, sub), check=False)
        for top in os.listdir("/sys/fs/cgroup"):
            p = os.path.join("/sys/fs/cgroup", top, cgp.lstrip("/"))
            for dd, _s, _f in sorted(os.walk(p), key=lambda t: -len(t[0])) if os.path.isdir(p) else []:
                try:
                    os.rmdir(dd)
                except OSError:
                    pass


PRODUCERS = {"docker": gen_docker, "podman": gen_podman, "ctr": gen_ctr, "specs": gen_specs, "umoci": gen_umoci,
             "buildah": gen_buildah}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("producers", nargs="*", help=f"some of {', '.join(PRODUCERS)} (default: all)")
    ap.add_argument("--out", default=OUT)
    ns = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("gen_producer_corpus: needs root (engines, mounts)", file=sys.stderr)
        return 2
    todo = ns.producers or list(PRODUCERS)
    corpus = Corpus(ns.out)
    base = tempfile.mkdtemp(prefix="prodgen-", dir="/tmp")
    os.chmod(base, 0o755)
    shared = Shared(base)
    seccomp = seccomp_profile(base)
    try:
        for name in todo:
            print(f"{name}:")
            try:
                PRODUCERS[name](corpus, base, shared, seccomp)
            except Exception as e:  # one producer's breakage must not lose the others
                corpus.fail(name, "*", f"{type(e).__name__}: {e}")
    finally:
        shared.close()
        corpus.save()
        shutil.rmtree(base, ignore_errors=True)
    for p, c, why in corpus.failed:
        print(f"FAILED {p}/{c}: {why.strip()[-500:]}", file=sys.stderr)
    return 1 if corpus.failed else 0


if __name__ == "__main__":
    sys.exit(main())
