"""python -m conformance [--runtime PATH] [--root DIR] [--name NAME] [--rootless] [pytest args...]

Runs the OCI runtime conformance suite against one runtime, prints a table per spec section and the line
`runtime=PATH pass=N fail=N skip=N`, and writes conformance/reports/<name>.json and <name>.xml (JUnit).
The exit status is 0 when the suite ran (whatever the outcomes), 2 on a usage or collection error.

--rootless runs the suite as an unprivileged user (see conformance/rootless.py): started as root, it creates a
temporary user with subordinate id ranges and an XDG_RUNTIME_DIR, re-runs itself as that user and removes the user
at the end; started as another user, it runs as that user. The summary line then reads
`runtime=PATH mode=rootless pass=N fail=N skip=N` and the report is <name> = <runtime basename>-rootless.
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
    ap.add_argument("--rootless", action="store_true",
                    help="run as an unprivileged user (as root: a temporary one, created and removed)")
    ap.add_argument("--report-dir", default=None, help="where <name>.json/.xml go (default: conformance/reports)")
    args, rest = ap.parse_known_args(argv)
    runtime = args.runtime or shutil.which("ocirun") or "ocirun"
    if os.sep in runtime:
        runtime = os.path.abspath(runtime)
    if not args.rootless and os.geteuid() != 0:
        print("conformance/run: not root: the suite needs root, or use --rootless to run it as this user",
              file=sys.stderr)
        return 2
    name = args.name or os.path.basename(runtime) + ("-rootless" if args.rootless else "")
    if args.rootless and os.geteuid() == 0:
        return as_temp_user(args, runtime, name, rest)
    reports = args.report_dir or os.path.join(HERE, "reports")
    try:
        os.makedirs(reports, exist_ok=True)
    except OSError as e:
        print(f"conformance/run: cannot create the report directory {reports}: {e.strerror} (--report-dir DIR)",
              file=sys.stderr)
        return 2
    if not os.access(reports, os.W_OK):
        print(f"conformance/run: {reports} is not writable by uid {os.geteuid()}: give --report-dir DIR",
              file=sys.stderr)
        return 2
    cmd = [sys.executable, "-m", "pytest", "-c", os.path.join(HERE, "pytest.ini"), "--rootdir", HERE, HERE,
           "-q", "--no-header", "-p", "no:cacheprovider", "--tb=no", "-o", "console_output_style=classic",
           "--runtime", runtime, "--report-name", name, "--junitxml", os.path.join(reports, f"{name}.xml")]
    if args.report_dir:
        cmd += ["--report-dir", args.report_dir]
    if args.rootless:
        cmd += ["--rootless"]
    if args.root:
        cmd += ["--root", args.root]
    cmd += rest
    rc = subprocess.call(cmd, cwd=os.path.dirname(HERE))
    if rc in (0, 1):
        return 1 if (rc == 1 and args.strict) else 0
    return rc


def as_temp_user(args, runtime, name, rest):
    """Root, --rootless: the probe is built here (the cache stays root's, readable by all), a temporary user runs
    the suite, its reports are copied to conformance/reports/, and the user, its ranges and directories go."""
    from conformance import rootless
    from conformance.conftest import CACHE_DIR, _compile_probe
    try:
        probe = _compile_probe()
    except Exception as e:  # pytest.UsageError: gcc or the static libc missing
        print(f"conformance/run: {e}", file=sys.stderr)
        return 2
    for path, bits in ((CACHE_DIR, 0o055), (probe, 0o055)):  # the user reads and runs it, whatever root's umask
        os.chmod(path, os.stat(path).st_mode & 0o7777 | bits)
    user = rootless.TempUser()
    try:
        user.create()
        reports = os.path.join(user.home, "reports")
        cmd = [sys.executable, "-m", "conformance", "--rootless", "--runtime", runtime, "--name", name,
               "--report-dir", reports]
        if args.strict:
            cmd.append("--strict")
        if args.root:
            cmd += ["--root", args.root]
        cmd += rest
        print(f"conformance/run --rootless: as {user.name} (uid {user.uid}, subuid {user.subuid}+{user.COUNT}, "
              f"subgid {user.subgid}+{user.COUNT}, XDG_RUNTIME_DIR {user.xdg})", flush=True)
        rc = subprocess.call(user.argv(cmd, {"CONFORMANCE_CACHE": CACHE_DIR}), cwd=os.path.dirname(HERE))
        dest = os.path.join(HERE, "reports")
        os.makedirs(dest, exist_ok=True)
        for ext in ("json", "xml"):
            src = os.path.join(reports, f"{name}.{ext}")
            if os.path.exists(src):
                shutil.copyfile(src, os.path.join(dest, f"{name}.{ext}"))
        return rc
    finally:
        user.remove()


if __name__ == "__main__":
    sys.exit(main())
