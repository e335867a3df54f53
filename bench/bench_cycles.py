#!/usr/bin/env python3
"""Lifecycle load: N sequential `run` + `delete -f` cycles, then M concurrent ones, for ocirun and runc in the
same invocation, on the same busybox bundle; wall time, per-cycle latency, peak RSS and failures.

    .venv/bin/python bench/bench_cycles.py [--sequential N] [--concurrent M] [--workers W]
                                           [--ocirun PATH] [--runc PATH] [--json OUT]

The bundle (busybox rootfs, `runc spec` config running `true`) is built with bench_run.make_bundle. Every
`run` is started through `busybox time -f %M`, so its peak RSS (the runtime plus the children it waited for)
is measured the same way for both runtimes (see bench_run.Runtime.rss_once for why wait4's ru_maxrss of a
posix_spawn child cannot be used); `delete -f` follows each run. A cycle fails when `run` exits non-zero or
the container's state is left behind. At the end every leftover container, cgroup and mount is removed
and reported (bench_run.cleanup). Needs root.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_run  # noqa: E402  (the start-up benchmark: bundle, RSS meter and clean-up helpers)

TIMEOUT = 120


class Cycles:
    def __init__(self, label, path, root, tmp, meter):
        self.label = label
        self.path = path
        self.root = root
        self.tmp = tmp
        self.meter = meter
        os.makedirs(root, exist_ok=True)
        self.results = {}  # phase -> dict(wall, lat[], rss[], failures[])
        self._n = 0
        self._lock = threading.Lock()

    def argv(self, *args):
        return [self.path, "--root", self.root, *args]

    def _next(self):
        with self._lock:
            self._n += 1
            return self._n

    def cycle(self, cid, bundle):
        """One run + delete -f; returns (seconds, peak RSS KiB or None, failure or None)."""
        n = self._next()
        rss_file = os.path.join(self.tmp, f"{self.label}.{n}.rss")
        log = os.path.join(self.tmp, f"{self.label}.{n}.log")
        argv = [self.path, "--root", self.root, "run", "--bundle", bundle, cid]
        if self.meter is not None:
            argv = [self.meter.busybox, "time", "-f", "%M", "-o", rss_file, *argv]
        fail = None
        rss = None
        t0 = time.perf_counter()
        try:
            with open(log, "w") as out:
                rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=bundle,
                                    timeout=TIMEOUT).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        secs = time.perf_counter() - t0
        if rc != 0:
            with open(log, errors="replace") as f:
                fail = f"run exit {rc}: {f.read().strip()[-300:]}"
        d = subprocess.run([self.path, "--root", self.root, "delete", "-f", cid], capture_output=True, text=True,
                           timeout=TIMEOUT)
        if os.path.exists(os.path.join(self.root, cid)):
            fail = (fail or "") + f" delete exit {d.returncode}: state left: {d.stderr.strip()[-200:]}"
        if self.meter is not None and rc == 0:
            try:
                with open(rss_file) as f:
                    rss = int(f.read().split()[-1]) / self.meter.factor
            except (OSError, ValueError, IndexError):
                pass
        for p in (rss_file, log):
            try:
                os.unlink(p)
            except OSError:
                pass
        return secs, rss, fail

    def phase(self, name, ids, bundle, workers):
        t0 = time.perf_counter()
        if workers <= 1:
            out = [self.cycle(c, bundle) for c in ids]
        else:
            with ThreadPoolExecutor(workers) as pool:
                out = list(pool.map(lambda c: self.cycle(c, bundle), ids))
        wall = time.perf_counter() - t0
        self.results[name] = {
            "cycles": len(ids), "workers": workers, "wall_s": wall,
            "lat": [s for s, _r, f in out if f is None],
            "rss": [r for _s, r, f in out if r is not None],
            "failures": [f"{c}: {f}" for c, (_s, _r, f) in zip(ids, out) if f is not None],
        }


def summarize(rt):
    rows = []
    for name, r in rt.results.items():
        lat = sorted(r["lat"])
        rows.append({
            "runtime": rt.label, "phase": name, "cycles": r["cycles"], "workers": r["workers"],
            "wall_s": round(r["wall_s"], 2), "cycles_per_s": round(r["cycles"] / r["wall_s"], 2) if r["wall_s"] else None,
            "median_ms": round(statistics.median(lat) * 1000, 1) if lat else None,
            "p90_ms": round(bench_run.percentile(lat, 90) * 1000, 1) if lat else None,
            "peak_rss_kib": round(max(r["rss"])) if r["rss"] else None,
            "median_rss_kib": round(statistics.median(r["rss"])) if r["rss"] else None,
            "failed": len(r["failures"]), "failures": r["failures"][:10],
        })
    return rows


def print_table(rows):
    cols = [("runtime", "runtime"), ("phase", "phase"), ("cycles", "cycles"), ("workers", "workers"),
            ("wall_s", "wall s"), ("cycles_per_s", "cycles/s"), ("median_ms", "run median ms"), ("p90_ms", "run p90 ms"),
            ("median_rss_kib", "RSS KiB med"), ("peak_rss_kib", "RSS KiB peak"), ("failed", "failed")]
    table = [[h for _k, h in cols]] + [["-" if r[k] is None else str(r[k]) for k, _h in cols] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    for i, row in enumerate(table):
        print("  ".join(c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for r in rows:
        for f in r["failures"][:3]:
            print(f"FAILED {r['runtime']} {r['phase']}: {f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sequential", type=int, default=100, help="sequential run+delete cycles (default 100)")
    ap.add_argument("--concurrent", type=int, default=50, help="concurrent run+delete cycles (default 50)")
    ap.add_argument("--workers", type=int, default=8, help="parallel workers for the concurrent phase (default 8)")
    ap.add_argument("--ocirun", default=bench_run.default_ocirun())
    ap.add_argument("--runc", default=bench_run.default_runc())
    ap.add_argument("--no-rss", action="store_true", help="do not wrap runs in `busybox time` (no RSS figures)")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    ns = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_cycles.py needs root", file=sys.stderr)
        return 2
    for label, path in (("ocirun", ns.ocirun), ("runc", ns.runc)):
        if not os.access(path, os.X_OK):
            print(f"{label}: {path} is not an executable", file=sys.stderr)
            return 2
    meter = None if ns.no_rss else bench_run.RssMeter()
    if meter is not None and meter.busybox is None:
        print("no busybox: peak RSS not measured", file=sys.stderr)
        meter = None
    tmp = tempfile.mkdtemp(prefix="ocirun-cycles-")
    id_prefix = f"occ{os.getpid()}x"
    bundle = os.path.join(tmp, "bundle")
    runtimes = [Cycles("ocirun", ns.ocirun, os.path.join(tmp, "root-ocirun"), tmp, meter),
                Cycles("runc", ns.runc, os.path.join(tmp, "root-runc"), tmp, meter)]
    problems = []
    try:
        bench_run.make_bundle(bundle, ns.runc, "true")
        for rt in runtimes:  # alternate: sequential ocirun, sequential runc, concurrent ocirun, concurrent runc
            rt.phase("sequential", [f"{id_prefix}{rt.label[0]}s{i}" for i in range(ns.sequential)], bundle, 1)
        for rt in runtimes:
            rt.phase("concurrent", [f"{id_prefix}{rt.label[0]}c{i}" for i in range(ns.concurrent)], bundle,
                     ns.workers)
    except KeyboardInterrupt:
        problems.append("interrupted")
    finally:
        problems += bench_run.cleanup(runtimes, tmp, id_prefix)
    rows = [row for rt in runtimes for row in summarize(rt)]
    print(f"run + delete -f cycles of busybox `true` ({os.cpu_count()} CPUs); versions: "
          + "; ".join(f"{rt.label}: {bench_run.version_of(rt.path)}" for rt in runtimes))
    print_table(rows)
    for p in problems:
        print("cleanup: " + p)
    if ns.json:
        with open(ns.json, "w") as f:
            json.dump({"rows": rows, "cleanup_problems": problems}, f, indent=2)
            f.write("\n")
    return 1 if problems or any(r["failed"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
