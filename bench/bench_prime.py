#!/usr/bin/env python3
"""How long placing a process into a fresh v1 cgroup takes, unprimed vs after cgroups.prime_attach().

    sudo .venv/bin/python bench/bench_prime.py [--runs N] [--gap-ms MS]

Each round sleeps (so that the kernel's cgroup_threadgroup_rwsem goes back to its fast per-cpu mode), forks a
sleeping child, optionally primes (prime_attach, then --gap-ms of other work), and times writing the child's
pid to cgroup.procs of a scratch cgroup under the pids hierarchy. Unprimed, that write waits for an RCU grace
period; primed, the lock is already in its slow mode. Prints both medians. Needs root and cgroup v1 pids.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ocirun import cgroups  # noqa: E402


def one_round(d, prime, gap):
    time.sleep(0.3)
    pid = os.fork()
    if pid == 0:
        time.sleep(2)
        os._exit(0)
    try:
        if prime:
            cgroups.prime_attach(own_text=cgroups.read_own())
            time.sleep(gap)
        t = time.perf_counter()
        with open(os.path.join(d, "cgroup.procs"), "w") as f:
            f.write(str(pid))
        return (time.perf_counter() - t) * 1000
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--gap-ms", type=float, default=15.0, help="work between priming and placing (default 15)")
    a = ap.parse_args()
    d = f"/sys/fs/cgroup/pids/ocirun-bench-prime-{os.getpid()}"
    os.mkdir(d)
    try:
        res = {False: [], True: []}
        for _ in range(a.runs):
            for prime in (False, True):
                res[prime].append(one_round(d, prime, a.gap_ms / 1000))
    finally:
        time.sleep(0.05)
        os.rmdir(d)
    for prime in (False, True):
        v = res[prime]
        print(f"{'primed  ' if prime else 'unprimed'}  median {statistics.median(v):6.2f} ms   max {max(v):6.2f} ms")


if __name__ == "__main__":
    main()
