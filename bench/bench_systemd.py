"""`--systemd-cgroup` cost, ocirun vs runc, inside the systemd test bed (this host has no systemd).

    sudo .venv/bin/python bench/bench_systemd.py [--pairs 20] [--rounds 3] [--json OUT]

Boots the systemd bed once (tests/integration/systemdbed.py: Debian 12's systemd 252 as PID 1 of a container,
hybrid cgroup v1; the rootfs is built by debootstrap on first use and cached), makes one busybox bundle per
runtime (`sleep 100`, cgroupsPath system.slice:bench:<runtime>), then times, inside the bed, `--pairs` times
`run -d` + `delete -f` in a shell loop (so the outer exec's start is paid once per loop, not per pair), the
runtimes alternating per round (ocirun first in odd rounds, runc first in even ones). Prints ms per pair (the
median of the rounds) and checks that no `bench-*` unit is left. Absolute times are noisy: compare the two.
"""
import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import systemdbed  # noqa: E402

RUNTIMES = ("ocirun", "runc")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ocirun", default=os.path.join(os.path.dirname(sys.executable), "ocirun"))
    ap.add_argument("--json")
    a = ap.parse_args()
    bed = systemdbed.SystemdBed(outer="ocirun", ocirun_bin=a.ocirun, log=lambda m: None)
    bed.setup()
    try:
        loops = {}
        for rt in RUNTIMES:
            b = bed.make_bundle(rt, args=("sleep", "100"), name=f"bench-{rt}",
                                edit=lambda c, rt=rt: c["linux"].__setitem__("cgroupsPath", f"system.slice:bench:{rt}"))
            argv = " ".join(bed.runtime(rt)) + " --systemd-cgroup"
            loops[rt] = (f"for i in $(seq {{n}}); do {argv} run -d --bundle {b} c$i >/dev/null 2>&1 </dev/null && "
                         f"{argv} delete -f c$i >/dev/null 2>&1 || exit 1; done")
            bed.run(loops[rt].format(n=2), check=True, timeout=120)        # warm-up
        per = {rt: [] for rt in RUNTIMES}
        for r in range(a.rounds):
            for rt in (RUNTIMES if r % 2 == 0 else RUNTIMES[::-1]):
                t = time.monotonic()
                bed.run(loops[rt].format(n=a.pairs), check=True, timeout=600)
                per[rt].append((time.monotonic() - t) / a.pairs * 1000)
        left = bed.run("systemctl list-units --all --no-legend 'bench-*' | wc -l").stdout.strip()
        out = {rt: round(statistics.median(v), 1) for rt, v in per.items()}
        out.update(rounds=per, pairs=a.pairs, units_left=int(left or 0))
        print(f"ms per run -d + delete -f with --systemd-cgroup (median of {a.rounds} rounds of {a.pairs}): "
              f"ocirun {out['ocirun']}, runc {out['runc']}; units left: {out['units_left']}")
        if a.json:
            with open(a.json, "w") as f:
                json.dump(out, f, indent=2)
        return 0 if out["units_left"] == 0 else 1
    finally:
        bed.teardown()


if __name__ == "__main__":
    sys.exit(main())
