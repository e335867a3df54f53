"""python -m tests.differential --cases N --seed S --report FILE [--jobs J] [--minimize-time SECONDS]

Long differential run outside CI: N hypothesis-generated cases (seed S: the same S gives the same cases),
each run under runc and ocirun. Every disagreement left after known_differences goes to FILE as one JSON
line ({"kind": "disagreement", "case", "config", "verdicts", "keys", "values", "stderr"}); then, per cause
(differ.group_keys), one line {"kind": "group", "group", "count", "minimal_config", ...} with a config
reduced by differ.minimize while it still shows that cause (largest groups first, within --minimize-time).
The last line is {"kind": "summary", ...}. Needs root.
"""
import argparse
import json
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from hypothesis import HealthCheck, Phase, given, seed, settings

from . import differ, harness, strategies


def generate(n, s, max_ops):
    out = []

    @settings(max_examples=n, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @seed(s)
    @given(strategies.cases(max_ops=max_ops))
    def gen(case):
        out.append(case)

    gen()
    return out[:n]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tests.differential", description=__doc__.split("\n\n")[1])
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report", default="differential-report.jsonl")
    ap.add_argument("--jobs", type=int, default=1, help="pairs run at once (each pair is 2 containers)")
    ap.add_argument("--max-ops", type=int, default=4)
    ap.add_argument("--minimize-time", type=float, default=900, help="seconds for all minimizations")
    ap.add_argument("--minimize-budget", type=int, default=40, help="pair runs per group at most")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("python -m tests.differential: needs root (it runs containers)", file=sys.stderr)
        return 2
    # SIGTERM/SIGINT: unwind, so that the running cases and the workdir are cleaned up
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t0 = time.monotonic()
    cases = generate(args.cases, args.seed, args.max_ops)
    print(f"{len(cases)} cases generated (seed {args.seed})", file=sys.stderr)
    env = harness.Env.open()
    lock = threading.Lock()
    found = []
    errors = 0
    done = 0
    try:
        with open(args.report, "w") as rep:
            def one(i_case):
                nonlocal errors, done
                i, case = i_case
                try:
                    d = differ.check(env, case)
                    line = None if d is None else {"kind": "disagreement", "index": i, "case": case,
                                                   "config": strategies.raw_config(case), **d}
                except Exception as e:  # noqa: BLE001 - recorded, the run goes on
                    d, line = None, {"kind": "error", "index": i, "case": case, "error": repr(e)}
                with lock:
                    done += 1
                    if line:
                        rep.write(json.dumps(line) + "\n")
                        rep.flush()
                        if line["kind"] == "error":
                            errors += 1
                    if d is not None:
                        found.append((i, case, d))
                    if done % 50 == 0:
                        print(f"  {done}/{len(cases)} cases, {len(found)} disagreements, "
                              f"{time.monotonic() - t0:.0f}s", file=sys.stderr)

            with ThreadPoolExecutor(max_workers=args.jobs) as pool:
                list(pool.map(one, enumerate(cases)))
            t_run = time.monotonic() - t0
            groups = {}
            for i, case, d in found:
                for g in differ.group_keys(d):
                    groups.setdefault(g, []).append((i, case, d))
            print(f"run: {len(cases)} cases in {t_run:.0f}s; {len(found)} disagreements in {len(groups)} groups",
                  file=sys.stderr)
            t_min = time.monotonic()
            minimized = set()
            for g, members in sorted(groups.items(), key=lambda kv: -len(kv[1])):
                i, case, d = min(members, key=lambda m: (len(m[2]["keys"]), len(m[1].get("ops", []))))
                line = {"kind": "group", "group": g, "count": len(members), "example_index": i, "example_case": case,
                        "verdicts": d["verdicts"], "values": differ.group_values(d, g),
                        "stderr": d["stderr"], "indices": [m[0] for m in members][:200]}
                if time.monotonic() - t_min < args.minimize_time:
                    small, runs = differ.minimize(env, case, g, budget=args.minimize_budget,
                                                  log=lambda m: print(m, file=sys.stderr),
                                                  sig=differ.signature(d, g))
                    final = differ.check(env, small)
                    line.update(minimal_config=small["config"], minimize_runs=runs,
                                minimal_verdicts=final["verdicts"] if final else None,
                                minimal_values=differ.group_values(final, g) if final else None,
                                minimal_stderr=final["stderr"] if final else None)
                    minimized.add(g)
                    print(f"  minimized [{len(members)}] {g[:120]} ({runs} runs)", file=sys.stderr)
                else:
                    line.update(minimal_config=None, example_config=strategies.raw_config(case))
                rep.write(json.dumps(line) + "\n")
                rep.flush()
            summary = {"kind": "summary", "cases": len(cases), "seed": args.seed, "jobs": args.jobs,
                       "disagreements": len(found), "errors": errors, "groups": len(groups),
                       "minimized": len(minimized), "run_seconds": round(t_run, 1),
                       "total_seconds": round(time.monotonic() - t0, 1),
                       "runc": harness.RUNC, "ocirun": harness.OCIRUN}
            rep.write(json.dumps(summary) + "\n")
            print(json.dumps(summary), file=sys.stderr)
    finally:
        env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
