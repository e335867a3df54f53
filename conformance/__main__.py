"""python -m conformance [--runtime PATH] [--root DIR] [--name NAME] [pytest args...]

Runs the OCI runtime conformance suite against one runtime, prints a table per spec section and the line
`runtime=PATH pass=N fail=N skip=N`, and writes conformance/reports/<name>.json and <name>.xml (JUnit).
The exit status is 0 when the suite ran (whatever the outcomes), 2 on a usage or collection error.
"""
import argparse
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="conformance/run", description=__doc__.split("\n\n")[1])
    ap.add_argument("--runtime", default=None, help="runtime binary (default: `ocirun` on PATH)")
    ap.add_argument("--root", default=None, help="runtime --root state dir (default: fresh tmp dir)")
    ap.add_argument("--name", default=None, help="report name (default: basename of the runtime)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when any requirement fails")
    args, rest = ap.parse_known_args(argv)
    runtime = args.runtime or shutil.which("ocirun") or "ocirun"
    if os.sep in runtime:
        runtime = os.path.abspath(runtime)
    name = args.name or os.path.basename(runtime)
    reports = os.path.join(HERE, "reports")
    os.makedirs(reports, exist_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-c", os.path.join(HERE, "pytest.ini"), "--rootdir", HERE, HERE,
           "-q", "--no-header", "-p", "no:cacheprovider", "--tb=no", "-o", "console_output_style=classic",
           "--runtime", runtime, "--report-name", name, "--junitxml", os.path.join(reports, f"{name}.xml")]
    if args.root:
        cmd += ["--root", args.root]
    cmd += rest
    rc = subprocess.call(cmd, cwd=os.path.dirname(HERE))
    if rc in (0, 1):
        return 1 if (rc == 1 and args.strict) else 0
    return rc


if __name__ == "__main__":
    sys.exit(main())
