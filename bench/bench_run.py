#!/usr/bin/env python3
"""Time `RUNTIME run ID` of a busybox bundle for ocirun and runc, alternating, and compare.

    .venv/bin/python bench/bench_run.py [--runs N] [--warmup N] [--ocirun PATH] [--runc PATH]
                                        [--scenario NAME] [--json OUT] [--check-ratio X]

One bundle (busybox rootfs from ocirun.bundle.make_busybox_rootfs, config.json from `runc spec` adjusted by the
scenario) is shared by both runtimes. Each measured run uses a fresh container id; the wall time is taken by
this process with time.perf_counter() around posix_spawn + wait4 of the runtime, and the child's rusage gives
ru_maxrss. `RUNTIME delete -f ID` runs after every run, outside the timed section. Both runtimes keep their
state under --root dirs in one temp dir, which is removed at the end. See bench/README.md.
"""
import argparse
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

TARGET_RATIO = 0.8  # the project's goal: ocirun's median <= 0.8 x runc's
RUN_TIMEOUT = 60.0

# ---------------------------------------------------------------- scenarios
# A scenario is a function that edits the config dict (from `runc spec`) in place; register it with @scenario.
# The same edited config.json is used by both runtimes.

SCENARIOS = {}


def scenario(name, help_text=""):
    def register(fn):
        SCENARIOS[name] = (fn, help_text or (fn.__doc__ or "").strip().splitlines()[0])
        return fn
    return register


def _base(cfg, args):
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = list(args)


@scenario("true")
def scenario_true(cfg):
    """busybox `true` with runc spec's default config (namespaces, mounts, masked paths, caps, rlimits)."""
    _base(cfg, ["true"])


@scenario("seccomp")
def scenario_seccomp(cfg):
    """`true` under a Docker-like default seccomp profile (default ERRNO, ~370-name allow-list, args rules)."""
    import importlib.util

    _base(cfg, ["true"])
    # one source for the profile: the integration tests' rebuild of moby's default.json
    tests = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration")
    path = next(p for p in (os.path.join(tests, n) for n in ("test_seccomp_real.py", "test_seccomp.py"))
                if os.path.exists(p))
    spec = importlib.util.spec_from_file_location("_bench_seccomp_profile", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cfg.setdefault("linux", {})["seccomp"] = mod.docker_default_profile()


# ---------------------------------------------------------------- helpers

def default_ocirun():
    """The installed console script next to this interpreter (.venv/bin/ocirun), else `ocirun` on PATH."""
    sibling = os.path.join(os.path.dirname(sys.executable), "ocirun")
    if os.access(sibling, os.X_OK):
        return sibling
    return shutil.which("ocirun") or sibling


def default_runc():
    return shutil.which("runc") or "/usr/sbin/runc"


def version_of(path):
    try:
        res = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20)
        line = (res.stdout or res.stderr).strip().splitlines()
        return line[0] if line else f"(exit {res.returncode}, no output)"
    except (OSError, subprocess.SubprocessError) as e:
        return f"(unavailable: {e})"


def percentile(sorted_xs, q):
    """Linear-interpolated percentile, q in [0, 100], of an already sorted list."""
    if not sorted_xs:
        return float("nan")
    if len(sorted_xs) == 1:
        return sorted_xs[0]
    pos = (len(sorted_xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def make_bundle(bundle, runc, scenario_name):
    from ocirun.bundle import make_busybox_rootfs

    os.makedirs(bundle)
    make_busybox_rootfs(os.path.join(bundle, "rootfs"))
    res = subprocess.run([runc, "spec"], cwd=bundle, capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise SystemExit(f"`{runc} spec` failed ({res.returncode}): {res.stderr.strip()}")
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    SCENARIOS[scenario_name][0](cfg)
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)
    # preflight bundle: same config and rootfs, but the process prints a marker, to prove the container ran
    pre = os.path.join(os.path.dirname(bundle), "preflight")
    os.makedirs(pre)
    pcfg = json.loads(json.dumps(cfg))
    pcfg["root"]["path"] = os.path.join(bundle, "rootfs")
    pcfg["process"]["args"] = ["sh", "-c", "echo " + PREFLIGHT_MARKER + " $$"]
    with open(os.path.join(pre, "config.json"), "w") as f:
        json.dump(pcfg, f, indent=2)
    return cfg, pre


PREFLIGHT_MARKER = "ocirun-bench-preflight"


class Runtime:
    def __init__(self, label, path, root, log_dir):
        self.label = label
        self.path = path
        self.root = root
        self.log = os.path.join(log_dir, label + ".log")
        self.samples = []      # seconds, successful measured runs
        self.wait4_rss = []    # KiB, ru_maxrss from wait4 of the timed runs (floored at our own RSS: see rss_once)
        self.maxrss = []       # KiB, from the separate untimed RSS runs (rss_once)
        self.failures = []     # (phase, id, detail)
        self.ids = []
        os.makedirs(root, exist_ok=True)

    def argv(self, *args):
        return [self.path, "--root", self.root, *args]

    def spawn_wait(self, argv, cwd):
        """posix_spawn argv with stdin=/dev/null, stdout+stderr to self.log; returns (seconds, status, rusage)."""
        devnull = os.open(os.devnull, os.O_RDONLY)
        log = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            actions = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, log, 1),
                       (os.POSIX_SPAWN_DUP2, log, 2)]
            old = os.getcwd()
            os.chdir(cwd)
            try:
                t0 = time.perf_counter()
                pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
                timer = threading.Timer(RUN_TIMEOUT, _kill, (pid,))
                timer.start()
                _, status, ru = os.wait4(pid, 0)
                t1 = time.perf_counter()
                timer.cancel()
            finally:
                os.chdir(old)
        finally:
            os.close(devnull)
            os.close(log)
        return t1 - t0, status, ru

    def output(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read().strip()[-2000:]
        except OSError:
            return ""

    def run_once(self, cid, bundle, measured):
        self.ids.append(cid)
        secs, status, ru = self.spawn_wait(self.argv("run", "--bundle", bundle, cid), bundle)
        code = os.waitstatus_to_exitcode(status)
        ok = code == 0
        if not ok:
            self.failures.append(("run" if measured else "warmup", cid, f"exit {code}: {self.output()}"))
        elif measured:
            self.samples.append(secs)
            self.wait4_rss.append(ru.ru_maxrss)
        self.delete(cid)
        return ok

    def rss_once(self, cid, bundle, meter):
        """Peak RSS (KiB) of `RUNTIME run`'s process tree, measured untimed through `busybox time`.

        Why not the timed runs' wait4 ru_maxrss: Linux carries the pre-exec mm's high-water mark into the
        exec'd process (exec_mmap -> setmax_mm_hiwater_rss), and posix_spawn's vfork child pre-exec *is* this
        Python process, so that ru_maxrss is never below our own RSS (~12-16 MiB). busybox is static and small,
        and its `time` reports the wait4 ru_maxrss of a child it forked, which is the runtime plus the
        children it waited for (the container's init, for `run`).
        """
        self.ids.append(cid)
        out = os.path.join(os.path.dirname(self.log), self.label + ".rss")
        argv = [meter.busybox, "time", "-f", "%M", "-o", out, *self.argv("run", "--bundle", bundle, cid)]
        _secs, status, _ru = self.spawn_wait(argv, bundle)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            self.failures.append(("rss", cid, f"exit {code}: {self.output()}"))
        else:
            try:
                with open(out) as f:
                    self.maxrss.append(int(f.read().split()[-1]) / meter.factor)
            except (OSError, ValueError, IndexError) as e:
                self.failures.append(("rss", cid, f"no RSS from busybox time: {e}"))
        self.delete(cid)

    def preflight(self, cid, pre_bundle):
        """Run the marker container once; True when it printed the marker as pid 1 (i.e. a container really ran)."""
        self.ids.append(cid)
        _secs, status, _ru = self.spawn_wait(self.argv("run", "--bundle", pre_bundle, cid), pre_bundle)
        code = os.waitstatus_to_exitcode(status)
        out = self.output()
        self.delete(cid)
        if code != 0 or f"{PREFLIGHT_MARKER} 1" not in out.splitlines():
            self.failures.append(("preflight", cid, f"exit {code}, expected '{PREFLIGHT_MARKER} 1', got: {out!r}"))
            return False
        return True

    def delete(self, cid):
        res = subprocess.run(self.argv("delete", "-f", cid), capture_output=True, text=True, timeout=RUN_TIMEOUT)
        # a container whose `run` already removed it is fine; anything else is reported
        if res.returncode != 0 and os.path.exists(os.path.join(self.root, cid)):
            self.failures.append(("delete", cid, f"exit {res.returncode}: {res.stderr.strip()[-500:]}"))

    def stats(self):
        xs = sorted(self.samples)
        ms = [x * 1000.0 for x in xs]
        rss = sorted(self.maxrss)
        w4 = sorted(self.wait4_rss)
        return {
            "path": self.path,
            "version": version_of(self.path),
            "ok": len(xs),
            "failed": len(self.failures),
            "median_ms": statistics.median(ms) if ms else None,
            "p10_ms": percentile(ms, 10) if ms else None,
            "p90_ms": percentile(ms, 90) if ms else None,
            "mean_ms": statistics.fmean(ms) if ms else None,
            "stdev_ms": statistics.stdev(ms) if len(ms) > 1 else None,
            "min_ms": ms[0] if ms else None,
            "max_ms": ms[-1] if ms else None,
            "maxrss_kib_median": statistics.median(rss) if rss else None,
            "maxrss_kib_max": rss[-1] if rss else None,
            "maxrss_runs": len(rss),
            "wait4_maxrss_kib_median": statistics.median(w4) if w4 else None,
            "samples_ms": [round(x * 1000.0, 3) for x in self.samples],
            "failures": [{"phase": p, "id": i, "detail": d} for p, i, d in self.failures],
        }


class RssMeter:
    """`busybox time -f %M`, with its unit checked: some busybox builds multiply ru_maxrss (already KiB on Linux)
    by page_size/1024. The factor is found by comparing with a child that reports its own ru_maxrss."""

    def __init__(self):
        self.busybox = None
        self.factor = 1.0
        for cand in ("/bin/busybox", "/usr/bin/busybox"):
            if os.access(cand, os.X_OK):
                self.busybox = cand
                break
        if self.busybox is None:
            return
        fd, out = tempfile.mkstemp(prefix="ocirun-bench-rss-")
        os.close(fd)
        try:
            probe = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
            res = subprocess.run([self.busybox, "time", "-f", "%M", "-o", out, sys.executable, "-c", probe],
                                 capture_output=True, text=True, timeout=30)
            with open(out) as f:
                reported = float(f.read().split()[-1])
            own = float(res.stdout.split()[-1])
            ratio = reported / own
            page_factor = os.sysconf("SC_PAGE_SIZE") / 1024.0
            self.factor = page_factor if abs(ratio - page_factor) < abs(ratio - 1.0) else 1.0
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            self.busybox = None
        finally:
            os.unlink(out)


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def cleanup(runtimes, tmp, id_prefix):
    """Delete whatever containers are left, remove cgroups named after our ids, remove the temp dir."""
    problems = []
    for rt in runtimes:
        try:
            for cid in os.listdir(rt.root):
                subprocess.run(rt.argv("delete", "-f", cid), capture_output=True, timeout=RUN_TIMEOUT)
                if os.path.exists(os.path.join(rt.root, cid)):
                    problems.append(f"{rt.label}: container {cid} could not be deleted")
        except OSError:
            pass
    # runc spec's config has no cgroupsPath, so runtimes make one named after the id: none should be left
    for h in _cgroup_mounts():
        try:
            names = os.listdir(h)
        except OSError:
            continue
        for name in names:
            if name.startswith(id_prefix):
                d = os.path.join(h, name)
                problems.append(f"cgroup left: {d}")
                for dirpath, _dirs, _files in sorted(os.walk(d), key=lambda w: w[0].count("/"), reverse=True):
                    try:
                        os.rmdir(dirpath)
                    except OSError:
                        pass
    for _mp in _mounts_under(tmp):
        problems.append(f"mount left: {_mp}")
        subprocess.run(["umount", "-l", _mp], capture_output=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return problems


def _mountinfo():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            yield left.split()[4], right.split()[0]


def _cgroup_mounts():
    return [mp for mp, fs in _mountinfo() if fs in ("cgroup", "cgroup2") and mp.startswith("/sys/fs/cgroup")]


def _mounts_under(d):
    return sorted((mp for mp, _fs in _mountinfo() if mp == d or mp.startswith(d + "/")),
                  key=lambda m: m.count("/"), reverse=True)


def fmt(x, unit=""):
    return "-" if x is None else f"{x:.1f}{unit}"


def print_table(result):
    rows = [("runtime", "ok", "fail", "median", "p10", "p90", "mean", "peak RSS KiB", "path")]
    for label, s in result["runtimes"].items():
        rows.append((label, str(s["ok"]), str(s["failed"]), fmt(s["median_ms"], " ms"), fmt(s["p10_ms"], " ms"),
                     fmt(s["p90_ms"], " ms"), fmt(s["mean_ms"], " ms"),
                     "-" if s["maxrss_kib_median"] is None else
                     f"{s['maxrss_kib_median']:.0f} (max {s['maxrss_kib_max']:.0f})", s["path"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"scenario: {result['scenario']}   runs: {result['runs']} each (+{result['warmup']} warm-up), alternating")
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w) if j in (0, 8) else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for label, s in result["runtimes"].items():
        print(f"{label} version: {s['version']}")
    ratio = result["ratio_median"]
    verdict = "" if ratio is None else ("  (meets target)" if ratio <= result["target_ratio"] else "  (above target)")
    print(f"median ratio ocirun/runc: {'-' if ratio is None else f'{ratio:.3f}'}"
          f"   target <= {result['target_ratio']}{verdict}")
    for label, s in result["runtimes"].items():
        for f in s["failures"][:5]:
            print(f"FAILED {label} {f['phase']} {f['id']}: {f['detail']}")
        if len(s["failures"]) > 5:
            print(f"... and {len(s['failures']) - 5} more {label} failures")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="scenarios:\n" + "\n".join(f"  {k:10} {v[1]}" for k, v in SCENARIOS.items()))
    ap.add_argument("--runs", type=int, default=50, help="measured runs per runtime (default 50)")
    ap.add_argument("--warmup", type=int, default=5, help="unmeasured runs per runtime first (default 5)")
    ap.add_argument("--ocirun", default=default_ocirun(), help="runtime timed as 'ocirun' (default: .venv/bin/ocirun)")
    ap.add_argument("--runc", default=default_runc(), help="baseline runtime (default: runc on PATH)")
    ap.add_argument("--rss-runs", type=int, default=5,
                    help="extra untimed runs per runtime to measure peak RSS via busybox time (default 5, 0 = off)")
    ap.add_argument("--scenario", default="true", choices=sorted(SCENARIOS))
    ap.add_argument("--json", metavar="OUT", help="also write the results (with every sample) as JSON")
    ap.add_argument("--check-ratio", type=float, metavar="X",
                    help="exit 3 when median(ocirun)/median(runc) > X (e.g. 0.8)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (bundle, roots, logs)")
    ns = ap.parse_args(argv)
    requested_runs, requested_warmup = ns.runs, ns.warmup

    if os.geteuid() != 0:
        print("bench_run.py needs root (it runs containers with runc spec's root config)", file=sys.stderr)
        return 2
    for label, path in (("ocirun", ns.ocirun), ("runc", ns.runc)):
        if not os.access(path, os.X_OK):
            print(f"{label}: {path} is not an executable", file=sys.stderr)
            return 2

    tmp = tempfile.mkdtemp(prefix="ocirun-bench-")
    id_prefix = f"ocb{os.getpid()}x"
    bundle = os.path.join(tmp, "bundle")
    runtimes = [Runtime("ocirun", ns.ocirun, os.path.join(tmp, "root-ocirun"), tmp),
                Runtime("runc", ns.runc, os.path.join(tmp, "root-runc"), tmp)]
    problems = []
    interrupted = False
    try:
        _cfg, pre_bundle = make_bundle(bundle, ns.runc, ns.scenario)
        n = 0
        preflight_ok = True
        for rt in runtimes:
            n += 1
            preflight_ok = rt.preflight(f"{id_prefix}{n}", pre_bundle) and preflight_ok
        if not preflight_ok:
            ns.warmup = ns.runs = ns.rss_runs = 0  # no numbers from a runtime that does not run containers
        for i in range(ns.warmup + ns.runs):
            measured = i >= ns.warmup
            order = runtimes if i % 2 == 0 else runtimes[::-1]  # alternate who goes first
            for rt in order:
                n += 1
                rt.run_once(f"{id_prefix}{n}", bundle, measured)
        meter = RssMeter() if ns.rss_runs > 0 else None
        if meter is not None and meter.busybox is None:
            print("no busybox: peak RSS not measured", file=sys.stderr)
            meter = None
        for i in range(ns.rss_runs if meter else 0):
            for rt in (runtimes if i % 2 == 0 else runtimes[::-1]):
                n += 1
                rt.rss_once(f"{id_prefix}{n}", bundle, meter)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if ns.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            problems = cleanup(runtimes, tmp, id_prefix)

    stats = {rt.label: rt.stats() for rt in runtimes}
    o, r = stats["ocirun"]["median_ms"], stats["runc"]["median_ms"]
    result = {
        "scenario": ns.scenario,
        "runs": requested_runs,
        "warmup": requested_warmup,
        "interrupted": interrupted,
        "host": {"kernel": platform.release(), "cpus": os.cpu_count(), "python": platform.python_version(),
                 "bench_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss},
        "runtimes": stats,
        "ratio_median": (o / r) if (o and r) else None,
        "target_ratio": TARGET_RATIO,
        "cleanup_problems": problems,
    }
    print_table(result)
    for p in problems:
        print("cleanup: " + p)
    if ns.json:
        os.makedirs(os.path.dirname(os.path.abspath(ns.json)), exist_ok=True)
        with open(ns.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    if any(f["phase"] == "preflight" for s in stats.values() for f in s["failures"]):
        print("preflight failed: benchmark not run", file=sys.stderr)
    failed = sum(s["failed"] for s in stats.values())
    if interrupted or failed or problems or result["ratio_median"] is None:
        return 1
    if ns.check_ratio is not None and result["ratio_median"] > ns.check_ratio:
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
