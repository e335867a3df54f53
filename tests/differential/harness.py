"""Run one config under a runtime (runc or ocirun) and collect its verdict and what the container saw.

A *config template* is a config.json dict in which the strings "@BUNDLE@" and "@ID@" stand for the bundle
directory and the container id; each runtime gets its own bundle (a fresh copy of the same busybox + probe
rootfs) and its own id, so the two runs share nothing but the template.

    env = Env.open()                          # tmpfs workdir (made shared), rootfs template, host facts
    out = run_one(env, "runc", RUNC, cfg)     # -> Outcome(verdict, create/start/delete results, probe, hooks)
    a, b = run_pair(env, cfg)                 # runc and ocirun side by side (two threads)
    env.close()

Everything the runs make is removed whatever happens: `delete --force`, a SIGKILL of a container process
still alive, lazy unmounts of whatever is left under the bundle, the cgroup directories named after the id,
the bundle. Every runtime command has a timeout.

The probe is conformance/probe/probe.c, compiled and cached by the conformance suite's own code
(conformance.conftest._compile_probe); the rootfs is ocirun.bundle.make_busybox_rootfs plus a few fixtures
the mutations aim at (a 0712 directory owned by 1000:1000, plain files, /.hooklog).
"""
import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
RUNC = os.environ.get("DIFF_RUNC", "/usr/sbin/runc")
OCIRUN = os.environ.get("DIFF_OCIRUN", os.path.join(REPO, ".venv", "bin", "ocirun"))
CGROUP_ROOT = "/sys/fs/cgroup"
CGROUP_PARENT = "ocirun-diff"          # seeds that have a cgroupsPath get /ocirun-diff/@ID@

# The runtimes' own environment: small and the same for both (a hook without "env" may inherit it).
RUNTIME_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "DIFF_RUNTIME_ENV": "1"}

CREATE_TIMEOUT = 30
STEP_TIMEOUT = 15
WAIT_TIMEOUT = 15

# Paths of the rootfs template the mutations refer to.
DIR_0712 = "/existing0712"             # mode 0712, owner 1000:1000
FILE_PLAIN = "/afile"                  # a regular file, mode 0640
HOOKLOG_IN_CTR = "/.hooklog"           # mount point of the bundle's hooklog/ for hooks run inside the container

# Default device nodes every container gets (runtime-spec config-linux.md#default-devices) plus the /dev
# links and ptmx: their lstat is part of what is compared.
DEFAULT_DEV_PATHS = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty",
                     "/dev/console", "/dev/ptmx", "/dev/pts/ptmx", "/dev/fd", "/dev/stdin", "/dev/stdout",
                     "/dev/stderr", "/dev/core", "/dev/shm", "/dev/mqueue", "/dev/pts"]
ALWAYS_SYSCTLS = ["kernel.hostname", "kernel.domainname", "net.ipv4.ip_forward", "kernel.shmmax"]


def sh(argv, timeout=STEP_TIMEOUT):
    return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=timeout)


def _compile_probe():
    import sys
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    from conformance.conftest import _compile_probe as compile_probe
    return compile_probe()


class Env:
    """Per-session facts and directories shared by all runs."""

    def __init__(self, workdir, template, mounted):
        self.workdir, self.template, self.mounted = workdir, template, mounted
        self.tag = uuid.uuid4().hex[:4]
        self.n = 0
        self.lock = threading.Lock()
        self.roots = {}
        self.host_ns = {}
        self.host_nodes = host_nodes()
        self.host_propagation = host_propagation()
        for name in os.listdir("/proc/self/ns"):
            try:
                self.host_ns[name] = os.readlink(f"/proc/self/ns/{name}")
            except OSError:
                pass

    @classmethod
    def open(cls):
        import sys
        if REPO not in sys.path:
            sys.path.insert(0, REPO)
        from ocirun.bundle import make_busybox_rootfs
        probe = _compile_probe()
        workdir = tempfile.mkdtemp(prefix="odf-", dir="/tmp")
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "odf", workdir]).returncode == 0
        if mounted:
            # as the conformance suite: a shared mount, so that propagation settings are observable
            subprocess.run(["mount", "--make-shared", workdir])
        template = os.path.join(workdir, "rootfs-template")
        make_busybox_rootfs(template)
        shutil.copy2(probe, os.path.join(template, "probe"))
        os.chmod(os.path.join(template, "probe"), 0o755)
        d = os.path.join(template, DIR_0712.lstrip("/"))
        os.mkdir(d)
        os.chmod(d, 0o712)
        os.chown(d, 1000, 1000)
        for f, mode in ((FILE_PLAIN, 0o640), ("/etc/hosts", 0o644), ("/etc/resolv.conf", 0o644)):
            with open(os.path.join(template, f.lstrip("/")), "w") as fh:
                fh.write("x\n")
            os.chmod(os.path.join(template, f.lstrip("/")), mode)
        os.makedirs(os.path.join(template, HOOKLOG_IN_CTR.lstrip("/")))
        env = cls(workdir, template, mounted)
        for name in ("runc", "ocirun"):
            env.roots[name] = os.path.join(workdir, name[0])
            os.makedirs(env.roots[name])
        return env

    def new_ids(self):
        with self.lock:
            self.n += 1
            n = self.n
        return {"runc": f"df{self.tag}{n}r", "ocirun": f"df{self.tag}{n}o"}

    def close(self):
        if self.mounted:
            subprocess.run(["umount", "-R", "-l", self.workdir], capture_output=True)
        shutil.rmtree(self.workdir, ignore_errors=True)
        for hier in _cgroup_hierarchies():
            try:
                os.rmdir(os.path.join(hier, CGROUP_PARENT))
            except OSError:
                pass


class Step:
    """One runtime command's result."""

    def __init__(self, argv, rc, err):
        self.argv, self.rc, self.stderr = argv, rc, err

    @property
    def ok(self):
        return self.rc == 0

    def to_json(self):
        return {"rc": self.rc, "stderr": self.stderr.strip()[-600:]}


class Outcome:
    """What one runtime did with one config.

    verdict: "refused" (create failed), "start-refused", "ran" (the probe printed its JSON), "no-output"
    (started, but the probe printed nothing: the exec failed inside), or "timeout:<step>".
    """

    def __init__(self, runtime, cid, bundle):
        self.runtime, self.id, self.bundle = runtime, cid, bundle
        self.verdict = None
        self.steps = {}
        self.probe = None
        self.stdout = ""
        self.hooks = {}
        self.hook_order = []

    def to_json(self):
        return {"verdict": self.verdict, "steps": {k: v.to_json() for k, v in self.steps.items()}}


def instantiate(template, bundle, cid):
    text = json.dumps(template)
    text = text.replace("@BUNDLE@", bundle).replace("@ID@", cid)
    return json.loads(text)


def make_bundle(env, template, cid):
    bundle = os.path.join(env.workdir, f"b-{cid}")
    os.mkdir(bundle)
    os.chmod(bundle, 0o755)
    subprocess.run(["cp", "-a", env.template, os.path.join(bundle, "rootfs")], check=True)
    os.makedirs(os.path.join(bundle, "vol"))
    hooklog = os.path.join(bundle, "hooklog")
    os.mkdir(hooklog)
    os.chmod(hooklog, 0o777)
    cfg = instantiate(template, bundle, cid)
    # bind sources under vol/: "…-f" names are files, others directories ("missing" is never created)
    for src in _bind_sources(cfg, bundle):
        if os.path.basename(src).startswith("missing"):
            continue
        p = os.path.normpath(os.path.join(bundle, src))
        if not p.startswith(os.path.join(bundle, "vol") + os.sep) or os.path.lexists(p):
            continue
        os.makedirs(os.path.dirname(p), exist_ok=True)
        if p.endswith("-f"):
            with open(p, "w") as f:
                f.write("vol\n")
        else:
            os.makedirs(p)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    return bundle, cfg


def _bind_sources(cfg, bundle):
    mounts = cfg.get("mounts") if isinstance(cfg, dict) else None
    out = []
    for m in mounts if isinstance(mounts, list) else []:
        if isinstance(m, dict) and isinstance(m.get("source"), str):
            s = m["source"]
            if s.startswith(bundle + "/vol/") or s.startswith("vol/"):
                out.append(s)
    return out


def _cgroup_hierarchies():
    out = []
    try:
        names = os.listdir(CGROUP_ROOT)
    except OSError:
        return out
    for n in names:
        p = os.path.join(CGROUP_ROOT, n)
        if os.path.isdir(p) and not os.path.islink(p):
            out.append(p)
    return out


def _remove_cgroups(cid):
    """rmdir every cgroup directory whose name contains the container id (deepest first), any hierarchy."""
    for hier in _cgroup_hierarchies():
        found = []
        for dirpath, dirnames, _ in os.walk(hier):
            depth = dirpath[len(hier):].count(os.sep)
            if depth >= 5:
                dirnames[:] = []
                continue
            for d in dirnames:
                if cid in d:
                    found.append(os.path.join(dirpath, d))
        for d in sorted(found, key=len, reverse=True):
            for sub, _, _ in sorted(os.walk(d), key=lambda t: len(t[0]), reverse=True):
                try:
                    os.rmdir(sub)
                except OSError:
                    pass


def _mounts_under(path):
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == path or mp.startswith(path + "/"):
                out.append(mp)
    return out


# runc is run in a mount namespace of its own (a copy of ours, peer groups kept, so propagation between the host
# and the container is what it would be): with no mount namespace in the config, runc remounts "/" of the
# namespace it runs in with the root propagation (rslave, or e.g. runbindable) and leaves its mounts there
# (spec/EXTENSIONS.md, "no mount namespace"). Run in ours, that changed the host's "/" for every later test.
ISOLATE = {"runc": ("unshare", "--mount", "--propagation", "unchanged", "--")}


class Runtime:
    def __init__(self, name, path, root):
        self.name, self.path, self.root = name, path, root
        self.prefix = ISOLATE.get(name, ())

    def run(self, *args, stdout=None, timeout=STEP_TIMEOUT, cwd=None):
        argv = [*self.prefix, self.path, "--root", self.root, *args]
        with tempfile.TemporaryFile("w+") as err:
            out = open(stdout, "a") if stdout else subprocess.DEVNULL
            try:
                p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, timeout=timeout,
                                   cwd=cwd, env=RUNTIME_ENV)
                rc = p.returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
            finally:
                if stdout:
                    out.close()
            err.seek(0)
            return Step(argv, rc, err.read())

    def state(self, cid):
        r = subprocess.run([*self.prefix, self.path, "--root", self.root, "state", cid], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=STEP_TIMEOUT, env=RUNTIME_ENV)
        if r.returncode != 0:
            return None
        try:
            return json.loads(r.stdout)
        except ValueError:
            return None


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def run_one(env, name, path, template, cid, keep=False):
    """Create, start, wait for and delete one container of `template` under runtime `name` (binary `path`)."""
    rt = Runtime(name, path, env.roots[name])
    bundle, cfg = make_bundle(env, template, cid)
    out = Outcome(name, cid, bundle)
    stdout = os.path.join(bundle, "stdout")
    open(stdout, "w").close()
    pidfile = os.path.join(bundle, "pid")
    try:
        r = rt.run("create", "--bundle", bundle, "--pid-file", pidfile, cid, stdout=stdout, timeout=CREATE_TIMEOUT,
                   cwd=bundle)
        out.steps["create"] = r
        if r.rc == "timeout":
            out.verdict = "timeout:create"
            return out
        if not r.ok:
            out.verdict = "refused"
            return out
        r = rt.run("start", cid, cwd=bundle)
        out.steps["start"] = r
        if r.rc == "timeout":
            out.verdict = "timeout:start"
            return out
        if not r.ok:
            out.verdict = "start-refused"
            return out
        pid = _read_pid(pidfile)
        deadline = time.monotonic() + WAIT_TIMEOUT
        while time.monotonic() < deadline:
            if pid <= 0 or not _alive(pid):
                break
            time.sleep(0.01)
        else:
            out.verdict = "timeout:wait"
        st = rt.state(cid)
        if st and st.get("status") not in ("stopped", None):
            # the pid is gone but the runtime still says running: give it a moment
            for _ in range(50):
                time.sleep(0.02)
                st = rt.state(cid)
                if not st or st.get("status") == "stopped":
                    break
        r = rt.run("delete", cid, cwd=bundle)
        out.steps["delete"] = r
        with open(stdout, errors="replace") as f:
            out.stdout = f.read()
        line = out.stdout.split("\n", 1)[0]
        try:
            out.probe = json.loads(line) if line else None
        except ValueError:
            out.probe = None
        if out.verdict is None:
            out.verdict = "ran" if isinstance(out.probe, dict) else "no-output"
        return out
    finally:
        _read_hooks(out, bundle)
        cleanup(rt, cid, bundle, pidfile, keep=keep)


def cleanup(rt, cid, bundle, pidfile=None, keep=False):
    try:
        if rt.state(cid) is not None:
            rt.run("kill", cid, "KILL")
            rt.run("delete", "--force", cid)
    except subprocess.TimeoutExpired:
        pass
    pid = _read_pid(pidfile) if pidfile else 0
    if pid > 0 and _alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
        time.sleep(0.05)
        try:
            if rt.state(cid) is not None:
                rt.run("delete", "--force", cid)
        except subprocess.TimeoutExpired:
            pass
    # the state dir itself (a runtime that failed half-way may leave one behind)
    shutil.rmtree(os.path.join(rt.root, cid), ignore_errors=True)
    for mp in sorted(_mounts_under(bundle), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)
    _remove_cgroups(cid)
    if not keep:
        shutil.rmtree(bundle, ignore_errors=True)


def _read_hooks(out, bundle):
    d = os.path.join(bundle, "hooklog")
    try:
        names = os.listdir(d)
    except OSError:
        return
    for n in names:
        try:
            with open(os.path.join(d, n), errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        if n == "order":
            out.hook_order = text.split()
        else:
            out.hooks[n] = text


def run_pair(env, template, runtimes=None, keep=False):
    """Run the template under both runtimes at once; returns {name: Outcome}."""
    runtimes = runtimes or {"runc": RUNC, "ocirun": OCIRUN}
    ids = env.new_ids()
    res, errs = {}, {}

    def go(name):
        try:
            res[name] = run_one(env, name, runtimes[name], template, ids[name], keep=keep)
        except Exception as e:  # noqa: BLE001 - reported, re-raised below
            errs[name] = e

    threads = [threading.Thread(target=go, args=(n,)) for n in runtimes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check_host(env)
    if errs:
        raise next(iter(errs.values()))
    return res


# The host's device nodes a container's devices or binds could reach (a runtime that chmods a node bind-mounted
# from the host changes the host's node: it happened to /dev/null once). Checked after every pair.
HOST_NODES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/ptmx")


def host_nodes():
    out = {}
    for p in HOST_NODES:
        try:
            st = os.lstat(p)
            out[p] = (st.st_mode, st.st_uid, st.st_gid, st.st_rdev)
        except OSError:
            out[p] = None
    return out


class HostChanged(RuntimeError):
    pass


def host_propagation():
    """{mount point: its propagation ("shared", "master", "unbindable", "private")} of the host's mounts."""
    out = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split(" - ")[0].split()
            opt = {o.split(":")[0] for o in fields[6:]}
            kind = "+".join(sorted(opt & {"shared", "master", "unbindable"})) or "private"
            out.setdefault(fields[4], kind)
    return out


def check_host(env):
    """Raise HostChanged when a runtime changed the host: a device node (its mode and owner are put back) or the
    propagation of a mount that was there before the run."""
    prop = host_propagation()
    moved = {mp: (k, prop[mp]) for mp, k in env.host_propagation.items() if mp in prop and prop[mp] != k}
    if moved:
        raise HostChanged(f"a runtime changed the propagation of the host's mounts: {moved}")
    now = host_nodes()
    changed = {p: (env.host_nodes[p], v) for p, v in now.items() if v != env.host_nodes.get(p)}
    if not changed:
        return
    for p, (old, _new) in changed.items():
        if old is not None:
            try:
                os.chmod(p, stat.S_IMODE(old[0]))
                os.chown(p, old[1], old[2])
            except OSError:
                pass
    raise HostChanged(f"a runtime changed the host's device nodes (restored): {changed}")


# ----------------------------------------------------------------------------------------------- hooks
HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
IN_CONTAINER_HOOKS = ("createContainer", "startContainer")

HOOK_NS = ("mnt", "pid", "net", "ipc", "uts", "user", "cgroup")
# What every hook writes: its cwd, what stdin was, the state on stdin, the namespaces it runs in (each
# compared as "host"/"new", normalize.parse_hook_log), its environment. It writes to the
# bundle's hooklog/ when that path exists where it runs, else to /.hooklog (a bind of the same directory
# inside the container, added by instrument() when a hook runs in the container).
HOOK_SCRIPT = (
    'd=@BUNDLE@/hooklog; [ -d "$d" ] || d=' + HOOKLOG_IN_CTR + '; '
    'f="$d/$1"; '
    '{ echo "where=$d"; echo "cwd=$(pwd)"; echo "stdin_fd=$(readlink /proc/self/fd/0)"; '
    'echo "state=$(cat)"; '
    'for n in ' + ' '.join(HOOK_NS) + '; do echo "ns_$n=$(readlink /proc/self/ns/$n)"; done; '
    'echo "--env--"; env; } > "$f" 2>&1; '
    'echo "$1" >> "$d/order"; '
    'exit "$2"'
)


def hook_entry(kind, index, exit_code=0, env=None, timeout=None, sleep=0):
    script = HOOK_SCRIPT if not sleep else f"sleep {sleep}; " + HOOK_SCRIPT
    h = {"path": "/bin/sh", "args": ["sh", "-c", script, "hook", f"{kind}-{index}", str(exit_code)]}
    if env is not None:
        h["env"] = list(env)
    if timeout is not None:
        h["timeout"] = timeout
    return h


# ----------------------------------------------------------------------------------------------- instrument
SYSCTL_NS = (("net.", "network"), ("kernel.shm", "ipc"), ("kernel.msg", "ipc"), ("kernel.sem", "ipc"),
             ("fs.mqueue.", "ipc"), ("kernel.hostname", "uts"), ("kernel.domainname", "uts"))


def _sysctl_file(name):
    return "/proc/sys/" + name.replace(".", "/")


def host_sysctl(name):
    try:
        with open(_sysctl_file(name)) as f:
            return f.read().strip()
    except OSError:
        return None


def _new_namespaces(cfg):
    lin = cfg.get("linux") if isinstance(cfg, dict) else None
    nss = lin.get("namespaces") if isinstance(lin, dict) else None
    out = set()
    for n in nss if isinstance(nss, list) else []:
        if isinstance(n, dict) and not n.get("path") and isinstance(n.get("type"), str):
            out.add(n["type"])
    return out


def make_safe(cfg):
    """Keep the host untouched whatever a runtime accepts: a sysctl whose namespace the container does not
    get anew (or one that is not namespaced at all) is given the host's current value, so that writing it,
    if a runtime does, changes nothing; the verdict on it is still compared. Host network devices go."""
    lin = cfg.get("linux") if isinstance(cfg, dict) else None
    if not isinstance(lin, dict):
        return cfg
    lin.pop("netDevices", None)
    sysctl = lin.get("sysctl")
    if isinstance(sysctl, dict):
        new = _new_namespaces(cfg)
        for k in list(sysctl):
            ns = next((n for prefix, n in SYSCTL_NS if k.replace("/", ".").startswith(prefix)), None)
            if ns is None or ns not in new:
                cur = host_sysctl(k.replace("/", "."))
                if cur is not None:
                    sysctl[k] = cur
                elif ns is None:
                    # neither namespaced nor existing: a value no kernel file takes
                    sysctl[k] = str(sysctl[k])
    return cfg


def instrument(cfg):
    """The probe as the process, asked about every path and sysctl the config names; the hook log mount.
    Applied to the template, so both runtimes get exactly the same config."""
    if not isinstance(cfg, dict):
        return cfg
    make_safe(cfg)
    devs, paths, sysctls = list(DEFAULT_DEV_PATHS), [], list(ALWAYS_SYSCTLS)
    mounts = cfg.get("mounts")
    for m in mounts if isinstance(mounts, list) else []:
        if isinstance(m, dict) and isinstance(m.get("destination"), str) and m["destination"]:
            devs.append(m["destination"])
    lin = cfg.get("linux") if isinstance(cfg.get("linux"), dict) else {}
    for d in lin.get("devices") or [] if isinstance(lin.get("devices"), list) else []:
        if isinstance(d, dict) and isinstance(d.get("path"), str) and d["path"]:
            devs.append(d["path"])
    for key in ("maskedPaths", "readonlyPaths"):
        v = lin.get(key)
        for p in v if isinstance(v, list) else []:
            if isinstance(p, str) and p:
                paths.append(p)
                devs.append(p)
    sc = lin.get("sysctl")
    if isinstance(sc, dict):
        sysctls += [k.replace("/", ".") for k in sc if isinstance(k, str) and k]
    devs += [DIR_0712, FILE_PLAIN]
    proc = cfg.get("process")
    if isinstance(proc, dict) and isinstance(proc.get("cwd"), str) and proc["cwd"]:
        paths.append(proc["cwd"])
    args = ["/probe"]
    for flag, items in (("--dev", devs), ("--path", paths), ("--sysctl", sysctls)):
        for it in dict.fromkeys(items):
            args += [flag, it]
    if isinstance(proc, dict):
        proc["args"] = args
        proc.pop("commandLine", None)
    hooks = cfg.get("hooks")
    if isinstance(hooks, dict) and any(hooks.get(k) for k in IN_CONTAINER_HOOKS):
        if not isinstance(cfg.get("mounts"), list):
            cfg["mounts"] = []
        cfg["mounts"].append({"destination": HOOKLOG_IN_CTR, "type": "bind", "source": "@BUNDLE@/hooklog",
                              "options": ["rbind", "rw"]})
    return cfg
