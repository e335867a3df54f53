"""The systemd test bed: a real systemd (Debian bookworm's, 252) booted as PID 1 of a privileged container, with
the runtimes under test (this checkout's ocirun, and Debian's runc for comparison) run INSIDE it, where they
talk to that systemd over D-Bus. The host has no systemd; this is how the systemd cgroup driver is tested.

The rootfs (built once, cached)
    `debootstrap --variant=minbase --include=PACKAGES bookworm` into a temp dir next to the cache entry, a few
    fixed edits (edit_rootfs: units that cannot work or must not run in a container are masked, timers and
    engine daemons are not started at boot, an empty /etc/machine-id), a stamp (stamp.json: suite, packages,
    edits version), then renamed into place. The entry is CACHE/systemd-bookworm/{rootfs,stamp.json}, CACHE =
    $OCIRUN_TEST_CACHE or /var/cache/ocirun-tests; it is rebuilt when the stamp differs. A flock on
    CACHE/systemd-bookworm.lock: shared while a bed checks the stamp and uses the rootfs, exclusive while one
    builds it (a rebuild waits for the beds of other pytest processes; two builds never run at once).
    Mirror: $OCIRUN_DEBIAN_MIRROR or http://deb.debian.org/debian. A failed build's logs are kept in
    CACHE/systemd-bookworm.failed-build.log.

One bed (SystemdBed)
    BASE = /var/tmp/ocirun-systemdbed-XXXX (0755). Nothing is ever written into the cache: BASE/merged is an
    overlay (lower: the cached rootfs, upper/work: BASE/upper, BASE/work) and is the container's rootfs. The
    engines' storage dirs (VOLUMES: /var/lib/containers, /var/lib/containerd, /var/lib/docker) are bind mounts
    of BASE/vol/*, a real filesystem (overlayfs cannot be an overlay's upper). The checkout, the venv and the
    venv's base python (when not /usr) are bind-mounted read-only at the same paths, so `<venv>/bin/ocirun` runs
    inside.
    The container (config(): namespaces pid, mount, ipc, uts, cgroup, network; all capabilities; no seccomp,
    no masked or read-only paths; devices cgroup allow-all; env container=oci; /sys/fs/cgroup = tmpfs with
    the host's v1 hierarchies incl. name=systemd, plus cgroup2 at /sys/fs/cgroup/unified: systemd sees that
    layout and comes up in hybrid mode, v1 controllers for resources) runs /lib/systemd/systemd under the OUTER
    runtime (ocirun by default, or runc: `outer=`), state in BASE/state, cgroup /systemdbed-XXXX. systemd's
    console output is BASE/console.log. Boot = create + start + `systemctl is-system-running --wait` until
    running or degraded (failed units are listed in bed.failed_units and in any failure message).

The cgroup layout (SystemdBed(cgroup=...), script: --cgroup)
    "hybrid" (default): as above. "unified": /sys/fs/cgroup is a cgroup2 mount only (the container's cgroup
    namespace root), so systemd 252 runs in unified mode and a runtime inside takes its cgroup v2 path. On this
    host the v1 hierarchies hold memory, cpu, pids, io...; cgroup2 offers hugetlb only. The bed's cgroup2
    cgroup is /systemdbed-XXXX/bed (the outer runtime's cgroupsPath; in v1 as well): one level below a
    cgroup with an empty subtree_control, so it has NO controllers at all. Why: the processes bed.run starts
    (`<outer> exec`) are in that namespace root, which, unlike a real root cgroup, is bound by the
    no-internal-processes rule: a controller offered there could never be enabled (EBUSY while bed.run's
    processes are in it), and once enabled no exec could join it. With none offered there is nothing to
    enable, anywhere below. Boot refuses an outer runtime that did not put the init in that cgroup2 cgroup
    (systemd would manage the cgroup2 tree it is in).

API
    bed.run(cmd, check=False, timeout=60, env=None, input=None) -> Result (returncode, stdout, stderr; str()
        for assertion messages). cmd: argv list, or a string run by /bin/sh -c. Through `<outer> exec` (the
        process is in the container's root cgroup, not in a systemd unit). Outputs go to files, never pipes.
        A process cmd leaves running (a detached inner container) must not keep cmd's stdout/stderr: with runc
        as the outer runtime, exec returns only when they are closed (runc copies them through pipes; ocirun
        hands the files over); redirect them (`runc run -d ... </dev/null >FILE 2>&1`).
    bed.systemctl(*args, **kw) = bed.run(["systemctl", *args], **kw).
    bed.host_path("/path/inside") -> the host path showing it (BASE/merged/..., or the volume's dir for paths
        under VOLUMES); ValueError for container-only mounts (/run, /tmp, /dev, /proc, /sys).
    bed.runc / bed.ocirun: argv prefixes of the inner runtimes with their own state roots
        (["/usr/sbin/runc", "--root", "/run/runc-inner"], [<venv>/bin/ocirun, "--root", "/run/ocirun-inner"]).
    bed.make_bundle(runtime="runc", args=("true",), edit=None, name=None) -> the bundle's path INSIDE the bed
        (/var/lib/systemdbed/bundles/NAME): a busybox-static rootfs (ocirun.bundle.make_busybox_rootfs) and the
        config from `<runtime> spec` run inside, with process.terminal false, process.args = args, then edit(cfg).
    bed.teardown() -> [problems]: SIGRTMIN+3 (systemd's halt), SIGKILL after stop_timeout, wait until the
        container's cgroups are empty, delete --force, remove the cgroup tree, unmount everything under BASE,
        remove BASE, release the cache lock. bed.leaks() -> what is still on the host (after teardown).
        bed.notes: what teardown had to force (systemd not halting in time is not a problem: SIGKILL).
    bed.timings: seconds of the phases ("rootfs" lookup or build, "boot").

pytest glue: `yield from serve(SystemdBed(...))` (conftest's systemd_bed fixture): a bed that cannot be built or
booted FAILS the tests (with the reason), never skips them. Script use: `python systemdbed.py [--outer runc]
[--keep] [-- CMD...]` boots one bed, runs CMD inside, tears down. Standard library + ocirun.bundle only.
"""
import contextlib
import errno
import fcntl
import json
import os
import shlex
import shutil
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tty
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import enginebed  # noqa: E402
import hostmounts  # noqa: E402

SUITE = "bookworm"
# debootstrap does not resolve virtual packages: podman's containers-common needs "container-network-stack",
# which containernetworking-plugins provides, so it is named here.
PACKAGES = ("systemd", "systemd-sysv", "dbus", "libseccomp2", "python3", "podman", "containerd", "runc", "conmon",
            "containernetworking-plugins", "docker.io")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_CACHE = "/var/cache/ocirun-tests"
ENTRY = "systemd-" + SUITE
BUILD_TIMEOUT = 1200     # debootstrap of the full list: ~1-2 min here
LOCK_TIMEOUT = 600       # another process building the rootfs (or using one built with other packages)
BOOT_TIMEOUT = 60        # create + start + is-system-running; a cached boot takes a few seconds here

# Units masked in the cached rootfs (edit_rootfs): they would act on the HOST (sysfs and /proc/sys are the
# host's, the container has every capability), or cannot work in a container and only fail the boot.
MASKED_UNITS = (
    # udev would trigger uevents for the host's devices (sysfs is mounted read-write)
    "systemd-udevd.service", "systemd-udevd-control.socket", "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service", "systemd-udev-settle.service", "systemd-hwdb-update.service",
    # host kernel settings: sysctl.d (kernel.pid_max, ...), modules, binfmt_misc, pstore, the clock
    "systemd-sysctl.service", "systemd-modules-load.service", "kmod-static-nodes.service",
    "systemd-binfmt.service", "proc-sys-fs-binfmt_misc.automount", "proc-sys-fs-binfmt_misc.mount",
    "systemd-pstore.service", "systemd-timesyncd.service",
    # kernel pseudo filesystems and hugepages
    "sys-kernel-debug.mount", "sys-kernel-tracing.mount", "sys-kernel-config.mount",
    "sys-fs-fuse-connections.mount", "dev-hugepages.mount",
    # logins on the console (the bed's log) or ttys, the interactive first boot
    "getty.target", "console-getty.service", "getty@tty1.service", "serial-getty@.service",
    "systemd-firstboot.service",
)
# enabled by the packages' postinst, not started at boot here (tests start what they need)
DISABLED_WANTS = ("timers.target.wants/*", "getty.target.wants/*", "multi-user.target.wants/containerd.service",
                  "multi-user.target.wants/podman*", "multi-user.target.wants/e2scrub_reap.service",
                  "sockets.target.wants/podman*", "default.target.wants/podman*",
                  "multi-user.target.wants/docker.service", "sockets.target.wants/docker.socket")
EDITS_VERSION = 1        # bump when edit_rootfs changes: the stamp differs, the cache is rebuilt

VOLUMES = ("/var/lib/containers", "/var/lib/containerd", "/var/lib/docker")
CONTAINER_ONLY = ("/run", "/tmp", "/dev", "/proc", "/sys")
BUNDLES = "/var/lib/systemdbed/bundles"
INNER_ROOTS = {"runc": "/run/runc-inner", "ocirun": "/run/ocirun-inner"}
INNER_RUNC = "/usr/sbin/runc"

SIGRTMIN_3 = signal.SIGRTMIN + 3  # systemd: halt
CGROUP_LAYOUTS = ("hybrid", "unified")


class BedError(RuntimeError):
    """The bed cannot be built or booted (the message says why)."""


def cache_dir():
    return os.environ.get("OCIRUN_TEST_CACHE") or DEFAULT_CACHE


def mirror():
    return os.environ.get("OCIRUN_DEBIAN_MIRROR") or DEFAULT_MIRROR


# ------------------------------------------------------------------------------------------- the rootfs cache
def edit_rootfs(rootfs):
    """The fixed edits of a freshly debootstrapped rootfs (see MASKED_UNITS, DISABLED_WANTS)."""
    import glob

    etc = os.path.join(rootfs, "etc")
    sd = os.path.join(etc, "systemd", "system")
    for unit in MASKED_UNITS:
        p = os.path.join(sd, unit)
        if os.path.lexists(p):
            os.unlink(p)
        os.symlink("/dev/null", p)
    for pat in DISABLED_WANTS:
        for p in glob.glob(os.path.join(sd, pat)):
            if os.path.islink(p):
                os.unlink(p)
    # an empty machine-id: systemd makes a random one at each boot (dbus reads /etc/machine-id then)
    with open(os.path.join(etc, "machine-id"), "w"):
        pass
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(rootfs, "var/lib/dbus/machine-id"))
    with open(os.path.join(etc, "hostname"), "w") as f:
        f.write("systemdbed\n")
    # journald: unit messages also on the console, i.e. in the bed's console.log
    d = os.path.join(etc, "systemd", "journald.conf.d")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "systemdbed.conf"), "w") as f:
        f.write("[Journal]\nStorage=volatile\nForwardToConsole=yes\nMaxLevelConsole=info\n")
    os.makedirs(os.path.join(rootfs, BUNDLES.lstrip("/")), exist_ok=True)


def wanted_stamp(packages):
    return {"suite": SUITE, "variant": "minbase", "packages": sorted(packages), "edits": EDITS_VERSION}


class RootfsCache:
    """The cached rootfs entry CACHE/systemd-bookworm and its lock (see the module doc)."""

    def __init__(self, base=None, packages=PACKAGES, log=None):
        self.base = base or cache_dir()
        self.packages = tuple(packages)
        self.entry = os.path.join(self.base, ENTRY)
        self.rootfs = os.path.join(self.entry, "rootfs")
        self.stamp_path = os.path.join(self.entry, "stamp.json")
        self.lock_path = self.entry + ".lock"
        self.log = log or (lambda msg: None)
        self.fd = None
        self.built = False

    def stamp(self):
        try:
            with open(self.stamp_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def up_to_date(self, want):
        """Does the cached entry's stamp match `want` (the stamp also records the mirror and build time)?"""
        stamp = self.stamp()
        return isinstance(stamp, dict) and all(stamp.get(k) == v for k, v in want.items())

    def _flock(self, how, timeout):
        end = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self.fd, how | fcntl.LOCK_NB)
                return
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() > end:
                raise BedError(f"{self.lock_path}: still locked after {timeout}s (another process building the "
                               f"rootfs, or a bed still using one built with another package list)")
            time.sleep(0.2)

    def acquire(self, timeout=LOCK_TIMEOUT):
        """The rootfs path, built if needed; holds a shared lock on it until release()."""
        os.makedirs(self.base, exist_ok=True)
        self.fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        want = wanted_stamp(self.packages)
        try:
            while True:
                # shared first: beds using an up-to-date rootfs (in this process or others) never wait
                self._flock(fcntl.LOCK_SH, timeout)
                if self.up_to_date(want):
                    return self.rootfs
                self._flock(fcntl.LOCK_EX, timeout)
                if not self.up_to_date(want):
                    self._build(want)
                # flock's conversion is not atomic: back to shared, and check again
        except BaseException:
            self.release()
            raise

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _remove_stale(self):
        """Leftovers of interrupted builds and replaced entries (we hold the exclusive lock)."""
        for name in os.listdir(self.base):
            if name.startswith((ENTRY + ".build-", ENTRY + ".old-")):
                p = os.path.join(self.base, name)
                enginebed.unmount_under(p)  # debootstrap's /proc and /sys, when it was killed
                if not enginebed.mounts_under(p):
                    shutil.rmtree(p, ignore_errors=True)

    def _build(self, want):
        if not shutil.which("debootstrap"):
            raise BedError("debootstrap is not installed (apt-get install debootstrap; ./dev.sh setup installs it)")
        self._remove_stale()
        tmp = tempfile.mkdtemp(prefix=ENTRY + ".build-", dir=self.base)
        os.chmod(tmp, 0o755)
        rootfs = os.path.join(tmp, "rootfs")
        log = os.path.join(tmp, "debootstrap.out")
        argv = ["debootstrap", "--variant=minbase", "--include=" + ",".join(self.packages), SUITE, rootfs, mirror()]
        self.log(f"building the systemd bed's rootfs: {' '.join(argv)}")
        t0 = time.monotonic()
        try:
            with open(log, "wb") as out:
                p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
                try:
                    rc = p.wait(BUILD_TIMEOUT)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
                    rc = f"killed after {BUILD_TIMEOUT}s"
                except BaseException:  # interrupted: debootstrap is in its own session, it must not outlive us
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
                    raise
            if rc != 0:
                inner = os.path.join(rootfs, "debootstrap", "debootstrap.log")
                kept = self.entry + ".failed-build.log"  # the build dir goes; its logs stay for a look
                with open(kept, "w") as f:
                    f.write(f"$ {' '.join(argv)}\nexit {rc}\n{enginebed.tail(log, 10**6)}\n--- {inner}:\n"
                            f"{enginebed.tail(inner, 10**6)}")
                raise BedError(f"{' '.join(argv)}: exit {rc}\n{enginebed.tail(log, 3000)}\n--- {inner} (tail):\n"
                               f"{enginebed.tail(inner, 3000)}\n(both logs in full: {kept})")
            edit_rootfs(rootfs)
            with open(os.path.join(tmp, "stamp.json"), "w") as f:
                json.dump(dict(want, mirror=mirror(), seconds=round(time.monotonic() - t0, 1)), f, indent=1)
            old = None
            if os.path.lexists(self.entry):
                old = tempfile.mkdtemp(prefix=ENTRY + ".old-", dir=self.base)
                os.rename(self.entry, os.path.join(old, "entry"))
            os.rename(tmp, self.entry)
            tmp = None
            self.built = True
            self.log(f"rootfs built in {time.monotonic() - t0:.1f}s: {self.rootfs}")
            if old:
                self._remove_stale()
        finally:
            if tmp is not None:
                enginebed.unmount_under(tmp)
                if not enginebed.mounts_under(tmp):
                    shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------------------- results
class Result(subprocess.CompletedProcess):
    def __str__(self):
        shown = self.args if isinstance(self.args, str) else " ".join(map(shlex.quote, map(str, self.args)))
        return f"$ {shown}\nexit {self.returncode}\nstdout: {self.stdout!r}\nstderr: {self.stderr!r}"

    __repr__ = __str__  # pytest shows an assertion message object by its repr


def _read(path):
    with open(path, errors="replace") as f:
        return f.read()


def runtime_paths(console_script):
    """(checkout, venv prefix, base prefix, real interpreter path, [its sys.path directories]) of an ocirun
    console script, asked of its own interpreter."""
    with open(console_script, "rb") as f:
        first = f.readline().decode(errors="replace").strip()
    if not first.startswith("#!"):
        raise BedError(f"{console_script}: not a console script (no #! line); cannot find its venv")
    interp = shlex.split(first[2:])
    code = ("import json, os, sys, ocirun; print(json.dumps([os.path.dirname(os.path.dirname("
            "os.path.abspath(ocirun.__file__))), sys.prefix, sys.base_prefix, "
            "[p for p in sys.path if os.path.isdir(p)]]))")
    res = subprocess.run(interp + ["-c", code], capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise BedError(f"{console_script}: its interpreter {interp} cannot import ocirun: {res.stderr.strip()}")
    checkout, prefix, base, path = json.loads(res.stdout)
    return checkout, prefix, base, os.path.realpath(interp[0]), path


def _under(path, top):
    top = top.rstrip("/")
    return path == top or path.startswith(top + "/")


class Console:
    """A pty whose slave is the container's /dev/console (systemd writes there only, and only to a tty); a
    thread copies what arrives on the master to `log`. When this process dies the master closes and the
    container's writes to its console fail (EIO) instead of blocking on a full pty."""

    def __init__(self, log):
        self.log = log
        self.master, self.slave = os.openpty()  # not inherited by children
        tty.setraw(self.slave)                   # no echo, no CR/LF translation
        self.slave_path = os.ttyname(self.slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="systemdbed-console", daemon=True)
        self._thread.start()

    def _pump(self):
        with open(self.log, "ab", buffering=0) as out:
            while not self._stop.is_set():
                ready, _, _ = select.select([self.master], [], [], 0.2)
                if not ready:
                    continue
                try:
                    data = os.read(self.master, 65536)
                except OSError:
                    return
                if not data:
                    return
                out.write(data)

    def close(self):
        self._stop.set()
        self._thread.join(5)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


# ------------------------------------------------------------------------------------------- the bed
class SystemdBed:
    """One booted systemd container (see the module doc)."""

    name = "systemd"   # (enginebed.serve's messages: "the systemd bed could not start: ...")

    stop_timeout = 10

    def __init__(self, outer="ocirun", ocirun_bin=None, cache=None, packages=PACKAGES, parent="/var/tmp",
                 boot_timeout=BOOT_TIMEOUT, log=None, cgroup="hybrid"):
        if cgroup not in CGROUP_LAYOUTS:
            raise ValueError(f"cgroup={cgroup!r}: one of {', '.join(CGROUP_LAYOUTS)}")
        self.cgroup = cgroup
        self.ocirun_bin = os.path.abspath(ocirun_bin or enginebed.default_runtime() or "")
        if outer == "ocirun":
            outer = self.ocirun_bin
        elif outer == "runc":
            outer = enginebed.which("runc", prefer=("/usr/sbin", "/usr/bin"))
        self.outer = outer and os.path.abspath(outer)
        self.log = log or (lambda msg: None)
        self.cache = RootfsCache(cache, packages, log=self.log)
        self.parent = parent
        self.boot_timeout = boot_timeout
        self.id = "systemdbed-" + uuid.uuid4().hex[:8]
        self.cgroups_path = "/" + self.id
        # the outer runtime's cgroupsPath: unified, one level down, in a cgroup2 cgroup with no controllers (see
        # the module doc); the teardown removes everything under cgroups_path either way
        self.outer_cgroups_path = self.cgroups_path + ("/bed" if cgroup == "unified" else "")
        self.base = None
        self.binds = {}        # container path -> host path (read-write volumes)
        self.ro_binds = []     # paths bind-mounted read-only at the same place
        self.created = False
        self.mounted = False
        self.console = None
        self.state = None      # running / degraded once booted
        self.failed_units = []
        self.timings = {}
        self.notes = []        # what teardown had to force (halt timeout)
        self.runc = [INNER_RUNC, "--root", INNER_ROOTS["runc"]]
        self.ocirun = [self.ocirun_bin, "--root", INNER_ROOTS["ocirun"]]
        self._n = 0
        self._bundles = 0

    # -- paths
    def p(self, *parts):
        return os.path.join(self.base, *parts)

    @property
    def merged(self):
        return self.p("merged")

    @property
    def console_log(self):
        return self.p("console.log")

    @property
    def state_root(self):
        return self.p("state")

    def host_path(self, path):
        """The host path that shows `path` of the container (see the module doc)."""
        path = os.path.normpath("/" + path.lstrip("/"))
        for dest in sorted(self.binds, key=len, reverse=True):
            if _under(path, dest):
                return self.binds[dest] + path[len(dest):]
        for dest in self.ro_binds:
            if _under(path, dest):
                return path
        for top in CONTAINER_ONLY:
            if _under(path, top):
                raise ValueError(f"{path} is on a mount of the container only ({top}); not reachable from the host")
        return self.merged + path

    # -- set-up
    def missing(self):
        why = []
        if os.geteuid() != 0:
            why.append("needs root")
        if not self.outer or not os.access(self.outer, os.X_OK):
            why.append(f"outer runtime {self.outer!r} is not executable")
        if not os.access(self.ocirun_bin, os.X_OK):
            why.append(f"ocirun console script {self.ocirun_bin!r} is not executable")
        if not hostmounts.has_overlay():
            why.append("the kernel has no overlayfs")
        return why

    def setup(self):
        why = self.missing()
        if why:
            raise BedError("; ".join(why))
        t0 = time.monotonic()
        rootfs = self.cache.acquire()
        self.timings["rootfs"] = time.monotonic() - t0
        self.base = tempfile.mkdtemp(prefix="ocirun-systemdbed-", dir=self.parent)
        os.chmod(self.base, 0o755)
        for d in ("upper", "work", "merged", "state", "io", "bundle"):
            os.makedirs(self.p(d))
        for v in VOLUMES:
            src = self.p("vol", v.strip("/").replace("/", "-"))
            os.makedirs(src)
            self.binds[v] = src
        checkout, prefix, base_prefix, python, sys_path = runtime_paths(self.ocirun_bin)
        # (and any directory its sys.path names outside those: a venv whose .pth files point at another
        # venv's site-packages, as tools/mutants.py's scratch venvs do)
        extra = [p for p in sys_path if not _under(p, "/usr")]
        for d in (checkout, prefix, base_prefix, *extra):
            if d != "/usr" and not any(_under(d, x) for x in self.ro_binds):
                self.ro_binds = [x for x in self.ro_binds if not _under(x, d)] + [d]
        if base_prefix == "/usr" and not os.path.exists(rootfs + python):
            # a venv of the distribution's python runs on the rootfs's: same path, same version needed
            raise BedError(f"{self.ocirun_bin} runs on {python}, which the {SUITE} rootfs does not have (a venv of "
                           f"another distribution's python?); the inner ocirun could not run")
        t0 = time.monotonic()
        opts = f"lowerdir={rootfs},upperdir={self.p('upper')},workdir={self.p('work')}"
        res = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, self.merged], capture_output=True,
                             text=True)
        if res.returncode != 0:
            raise BedError(f"mount -t overlay -o {opts} {self.merged}: {res.stderr.strip()}")
        self.mounted = True
        self.console = Console(self.console_log)
        with open(self.p("bundle", "config.json"), "w") as f:
            json.dump(self.config(), f, indent=1)
        self._boot()
        self.timings["boot"] = time.monotonic() - t0
        return self

    def config(self):
        # every capability this process can pass on (runc refuses a config naming one outside its bounding set)
        from ocirun import capabilities

        caps = capabilities.mask_to_names(capabilities.current()["CapBnd"])
        ro = ["rbind", "ro", "nosuid", "nodev"]
        from ocirun import specgen

        std = {m["destination"]: m for m in specgen.default_spec()["mounts"]}
        mounts = [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev"]},
            # /dev and its usual mounts as `ocirun spec` (runc spec) has them
            *(std[d] for d in ("/dev", "/dev/pts", "/dev/shm", "/dev/mqueue")),
            # systemd writes its status lines (and journald, ForwardToConsole) to /dev/console: a pty of ours
            {"destination": "/dev/console", "type": "bind", "source": self.console.slave_path,
             "options": ["bind", "rw"]},
            {"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=755"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]},
        ]
        cg_opts = ["nosuid", "noexec", "nodev", "relatime", "rw"]
        if self.cgroup == "unified":
            # only cgroup2 (the container's cgroup namespace root, the outer runtime's /systemdbed-XXXX/bed there):
            # systemd 252 finds cgroup2 at /sys/fs/cgroup (statfs) and runs in unified mode
            mounts.append({"destination": "/sys/fs/cgroup", "type": "cgroup2", "source": "cgroup2",
                           "options": cg_opts})
        else:
            # the host's v1 hierarchies (name=systemd included) in the container's cgroup namespace, then
            # cgroup2 at unified: systemd 252 sees the hybrid layout and uses it
            mounts += [{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": cg_opts},
                       {"destination": "/sys/fs/cgroup/unified", "type": "cgroup2", "source": "cgroup2",
                        "options": cg_opts}]
        for dest, src in self.binds.items():
            mounts.append({"destination": dest, "type": "bind", "source": src, "options": ["rbind", "rw"]})
        for d in self.ro_binds:
            mounts.append({"destination": d, "type": "bind", "source": d, "options": ro})
        return {
            "ociVersion": "1.0.2",
            "process": {
                "terminal": False,
                "user": {"uid": 0, "gid": 0},
                "args": ["/lib/systemd/systemd"],
                "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "container=oci"],
                "cwd": "/",
                "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted")},
                "noNewPrivileges": False,
            },
            "root": {"path": self.merged, "readonly": False},
            "hostname": "systemdbed",
            "mounts": mounts,
            "linux": {
                "cgroupsPath": self.outer_cgroups_path,
                "resources": {"devices": [{"allow": True, "access": "rwm"}]},
                "namespaces": [{"type": t} for t in ("pid", "mount", "ipc", "uts", "cgroup", "network")],
            },
        }

    def outer_argv(self, *args):
        return [self.outer, "--root", self.state_root, *map(str, args)]

    def _outer(self, *args, timeout=30):
        try:
            return subprocess.run(self.outer_argv(*args), capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return Result(self.outer_argv(*args), -1, "", f"timed out after {timeout}s")

    def _boot(self):
        with open(self.console_log, "ab") as console:
            self.created = True  # from here on, teardown asks the outer runtime to delete it
            res = subprocess.run(self.outer_argv("create", "--bundle", self.p("bundle"), "--pid-file",
                                                 self.p("init.pid"), self.id),
                                 stdin=subprocess.DEVNULL, stdout=console, stderr=console, timeout=60)
        if res.returncode != 0:
            raise BedError(f"{os.path.basename(self.outer)} create {self.id}: exit {res.returncode}\n"
                           f"{enginebed.tail(self.console_log, 3000)}")
        if self.cgroup == "unified":
            # systemd will own the cgroup2 tree below the container's namespace root: that must be a cgroup of
            # the bed's own, never the host's root
            own = self.init_cgroup2()
            if own != self.outer_cgroups_path:
                raise BedError(f"{os.path.basename(self.outer)} put the bed's init in the cgroup2 cgroup {own!r}, "
                               f"not {self.outer_cgroups_path}: a unified bed would let systemd manage that")
        res = self._outer("start", self.id)
        if res.returncode != 0:
            raise BedError(f"{os.path.basename(self.outer)} start {self.id}: exit {res.returncode}: {res.stderr}\n"
                           f"console:\n{enginebed.tail(self.console_log, 3000)}")
        self.wait_booted(self.boot_timeout)

    def init_pid(self):
        try:
            with open(self.p("init.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def init_cgroup2(self):
        """The init's cgroup in the host's cgroup2 hierarchy ("0::" of /proc/PID/cgroup), or None."""
        pid = self.init_pid()
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                return next((line[3:].strip() for line in f if line.startswith("0::")), None)
        except (OSError, TypeError):
            return None

    def init_alive(self):
        pid = self.init_pid()
        return pid is not None and _alive(pid)

    def wait_booted(self, timeout):
        """Until `systemctl is-system-running --wait` says running or degraded (BedError otherwise)."""
        end = time.monotonic() + timeout
        last = None
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise BedError(f"systemd did not finish booting within {timeout}s (last: {last})\n"
                               + self.diagnostics())
            if not self.init_alive():
                raise BedError(f"the container's init (systemd) exited during boot (last: {last})\n"
                               + self.diagnostics())
            try:
                last = self.run(["systemctl", "is-system-running", "--wait"], timeout=max(1, left))
            except AssertionError as e:
                last = str(e)
                continue
            state = last.stdout.strip()
            if state in ("running", "degraded"):
                self.state = state
                self.failed_units = self.list_failed()
                return state
            if state in ("maintenance", "stopping", "offline"):
                raise BedError(f"systemd is {state!r}\n{last}\n" + self.diagnostics())
            time.sleep(0.1)

    def list_failed(self):
        res = self.run(["systemctl", "list-units", "--failed", "--plain", "--no-legend", "--no-pager"], timeout=20)
        return [line.split()[0] for line in res.stdout.splitlines() if line.strip()]

    def diagnostics(self):
        """Failed units, the journal's warnings and the console log, for failure messages."""
        out = []
        if self.created and self.init_alive():
            for argv in (["systemctl", "--failed", "--no-pager"],
                         ["sh", "-c", "journalctl -b --no-pager -p warning | tail -n 40"]):
                try:
                    res = self.run(argv, timeout=10)
                    out.append(f"$ {' '.join(argv)}\n{res.stdout}{res.stderr}")
                except AssertionError as e:
                    out.append(str(e))
        out.append(f"--- console ({self.console_log}), tail:\n{enginebed.tail(self.console_log, 4000)}")
        return "\n".join(out)

    # -- using it
    def run(self, cmd, check=False, timeout=60, env=None, input=None):
        """Run cmd (argv, or a /bin/sh -c string) in the container; a Result (see the module doc)."""
        argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else [str(a) for a in cmd]
        self._n += 1
        out_path, err_path = self.p("io", f"out.{self._n}"), self.p("io", f"err.{self._n}")
        envs = []
        for k, v in (env or {}).items():
            envs += ["--env", f"{k}={v}"]
        full = self.outer_argv("exec", *envs, self.id, *argv)
        try:
            with open(out_path, "w") as out, open(err_path, "w") as err:
                p = subprocess.run(full, stdout=out, stderr=err, timeout=timeout,
                                   input=input.encode() if isinstance(input, str) else input,
                                   stdin=subprocess.DEVNULL if input is None else None)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"timed out after {timeout}s in the systemd bed: {cmd}\nstdout: "
                                 f"{_read(out_path)!r}\nstderr: {_read(err_path)!r}") from None
        res = Result(cmd, p.returncode, _read(out_path), _read(err_path))
        os.unlink(out_path)
        os.unlink(err_path)
        if check and res.returncode != 0:
            raise AssertionError(f"in the systemd bed:\n{res}")
        return res

    def systemctl(self, *args, **kw):
        return self.run(["systemctl", *args], **kw)

    def runtime(self, name):
        """The argv prefix of an inner runtime ("runc" or "ocirun") with its own state root."""
        return {"runc": self.runc, "ocirun": self.ocirun}[name]

    def make_bundle(self, runtime="runc", args=("true",), edit=None, name=None):
        """A busybox bundle inside the bed, its config from `<runtime> spec` (see the module doc); returns the
        bundle's path inside the bed."""
        from ocirun.bundle import make_busybox_rootfs

        self._bundles += 1
        inside = f"{BUNDLES}/{name or 'bundle' + str(self._bundles)}"
        host = self.host_path(inside)
        os.makedirs(host)
        make_busybox_rootfs(os.path.join(host, "rootfs"))
        self.run([*self.runtime(runtime)[:1], "spec", "--bundle", inside], check=True, timeout=30)
        cfg_path = os.path.join(host, "config.json")
        with open(cfg_path) as f:
            cfg = json.load(f)
        cfg["process"]["terminal"] = False
        cfg["process"]["args"] = list(args)
        if edit is not None:
            edit(cfg)
        with open(cfg_path, "w") as f:
            json.dump(cfg, f, indent=2)
        return inside

    # -- teardown
    def cgroup_procs(self):
        """Pids in the bed's cgroup tree, any hierarchy."""
        pids = set()
        for d in enginebed.cgroup_tree(self.cgroups_path):
            with contextlib.suppress(OSError):
                with open(os.path.join(d, "cgroup.procs")) as f:
                    pids.update(int(x) for x in f.read().split())
        return {p for p in pids if _alive(p)}

    def _remove_subcgroups(self):
        tops = {d for d in enginebed.cgroup_tree(self.cgroups_path)
                if d.endswith((self.cgroups_path, self.outer_cgroups_path))}
        for _ in range(20):
            busy = False
            for d in enginebed.cgroup_tree(self.cgroups_path):  # deepest first
                if d not in tops:
                    try:
                        os.rmdir(d)
                    except OSError:
                        busy = True
            if not busy:
                return
            time.sleep(0.1)

    def _wait_empty(self, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not self.init_alive() and not self.cgroup_procs():
                return True
            time.sleep(0.1)
        return False

    def teardown(self):
        """Remove everything the bed made (see the module doc); [problems]."""
        problems = []
        if self.created:
            if self.init_alive():
                self._outer("kill", self.id, str(int(SIGRTMIN_3)))
                if not self._wait_empty(self.stop_timeout):
                    # not a problem of the bed: e.g. an inner container's init ignores SIGTERM and systemd
                    # would wait its 90 s stop timeout; SIGKILL ends the whole pid namespace
                    self.notes.append(f"systemd did not halt within {self.stop_timeout}s of SIGRTMIN+3; killed")
                    self.log(self.notes[-1])
                    self._outer("kill", self.id, "KILL")
                    if not self._wait_empty(10):
                        enginebed.kill_procs(lambda: {p: "" for p in self.cgroup_procs()})
                        self._wait_empty(10)
            # the cgroups systemd made below the container's: runc's delete removes them, ocirun's (as of
            # this bed's first version) does not and retries for seconds; the bed removes them first
            self._remove_subcgroups()
            res = self._outer("delete", "--force", self.id)
            if res.returncode != 0 and os.path.exists(os.path.join(self.state_root, self.id)):
                problems.append(f"{os.path.basename(self.outer)} delete --force {self.id}: {res.stderr.strip()}")
            self.created = False
        if self.console is not None:
            self.console.close()
            self.console = None
        left = self.cgroup_procs()
        if left:
            problems.append(f"processes still in the bed's cgroups: {sorted(left)}")
        left = enginebed.remove_cgroup_tree(self.cgroups_path)
        if left:
            problems.append(f"cgroups not removable: {left}")
        if self.base:
            for _ in range(50):
                enginebed.unmount_under(self.base)
                if not enginebed.mounts_under(self.base):
                    break
                time.sleep(0.1)
            self.mounted = False
            if enginebed.mounts_under(self.base):
                problems.append(f"mounts left under {self.base}: {enginebed.mounts_under(self.base)}")
            else:
                shutil.rmtree(self.base, ignore_errors=True)
                if os.path.exists(self.base):
                    problems.append(f"{self.base} not removed")
        self.cache.release()
        return problems

    def leaks(self, snapshot=None):
        """What of the bed is still on the host (call after teardown; `snapshot`, enginebed.serve's, is not needed:
        the bed knows what it made)."""
        found = []
        if self.base and os.path.exists(self.base):
            found.append(f"dir {self.base}")
        for d in enginebed.cgroup_tree(self.cgroups_path):
            found.append(f"cgroup {d}")
        needles = [self.id.encode()] + ([self.base.encode()] if self.base else [])
        cg = self.cgroups_path.strip("/")
        for pid, cmd in enginebed.procs_matching(needles, [f":/{cg}/".encode(), f":/{cg}\n".encode()]).items():
            found.append(f"process {pid}: {cmd}")
        for _mid, mp, fs, src in enginebed.read_mounts():
            if (self.base and _under(mp, self.base)) or self.id in mp:
                found.append(f"mount {mp} ({fs} {src})")
        if os.path.exists(os.path.join(self.state_root if self.base else "/nonexistent", self.id)):
            found.append(f"state {self.id}")
        return found


def _alive(pid):
    """A process that exists and is not a zombie (this host's PID 1 reaps late)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            st = f.read()
    except OSError:
        return False
    return st[st.rindex(b")") + 2:].split()[0] not in (b"Z", b"X")


# ------------------------------------------------------------------------------------------- glue
# the body of the session fixtures (conftest: `yield from serve(bed)`): enginebed's, as for the engine beds (a bed
# that cannot be built or booted FAILS the tests using it, with the reason; teardown fails them if anything is left)
serve = enginebed.serve


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description="boot the systemd bed, run a command inside, tear down")
    ap.add_argument("--outer", default="ocirun", help="outer runtime: ocirun, runc or a path (default ocirun)")
    ap.add_argument("--ocirun", default=None, help="the ocirun console script (default: the venv's)")
    ap.add_argument("--keep", action="store_true", help="do not tear down (prints the bed's dir and id)")
    ap.add_argument("--cgroup", default="hybrid", choices=CGROUP_LAYOUTS,
                    help="systemd's cgroup layout (default hybrid)")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    ns = ap.parse_args(argv)
    cmd = [a for a in ns.cmd if a != "--"]
    bed = SystemdBed(outer=ns.outer, ocirun_bin=ns.ocirun, log=lambda m: print(m, file=sys.stderr),
                     cgroup=ns.cgroup)
    rc = 0
    try:
        bed.setup()
        print(f"booted ({bed.state}) in {bed.timings['boot']:.1f}s (rootfs {bed.timings['rootfs']:.1f}s); "
              f"failed units: {bed.failed_units}", file=sys.stderr)
        if cmd:
            res = bed.run(cmd, timeout=600)
            sys.stdout.write(res.stdout)
            sys.stderr.write(res.stderr)
            rc = res.returncode
    except BedError as e:
        print(f"systemd bed: {e}", file=sys.stderr)
        rc = 1
    finally:
        if ns.keep:
            print(f"kept {bed.base} (container {bed.id}, {bed.outer} --root {bed.state_root})", file=sys.stderr)
        else:
            for p in bed.teardown() + bed.leaks():
                print("teardown: " + p, file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
