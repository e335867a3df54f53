#!/usr/bin/env bash
# ocirun developer entry point. Run as root on Debian 12 (or this project's VM):
#   ./dev.sh demo            install everything, then run a busybox container from the embedded default bundle
#   ./dev.sh test [ARGS...]  install everything the tests need, then run the whole test suite
#                            (with ARGS: no conformance run, and `pytest ARGS` picks the tests, e.g. tests/unit)
#   ./dev.sh setup           only install
#   ./dev.sh bench [ARGS...] ocirun vs runc start-up benchmark (bench/bench_run.py)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"
REPO=$PWD
VENV=$REPO/.venv

say() { printf '==> %s\n' "$*" >&2; }

if [ "$(id -u)" != 0 ]; then
    echo "dev.sh: ocirun is a container runtime and needs root (run: sudo ./dev.sh $*)" >&2
    exit 1
fi

BASE_PKGS="python3 python3-venv python3-dev gcc libcap-dev libseccomp2 busybox-static"
TEST_PKGS="runc podman conmon containernetworking-plugins uidmap slirp4netns iproute2 docker.io containerd tini bsdutils procps debootstrap"

apt_install() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Installing docker.io/containerd must not start system daemons: the tests start their own.
    local guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && guard=1
    fi
    apt-get update -qq
    local rc=0
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
    if [ -n "$guard" ]; then rm -f /usr/sbin/policy-rc.d; fi
    return $rc
}

# pip, quiet when it works (setuptools' deprecation notices for compat editable installs are noise here);
# when it fails, all it said and a non-zero exit.
pip_quiet() {
    local out
    if ! out=$("$VENV/bin/python" -m pip "$@" 2>&1); then
        printf '%s\n' "$out" >&2
        echo "dev.sh: pip $* failed" >&2
        exit 1
    fi
}

setup() {
    apt_install $BASE_PKGS "$@"
    # Debian's own python3 (pip refuses system-wide installs there, hence the venv) even where pyenv is on PATH:
    # the distribution's build (PGO+LTO, libpython linked in statically) starts ~3 ms faster than a pyenv build,
    # and ocirun's start-up is measured against runc's. Another python3 only where Debian's is missing.
    local py=/usr/bin/python3
    [ -x "$py" ] || py=$(command -v python3)
    local home
    home=$(dirname "$(readlink -f "$py")")
    if [ -x "$VENV/bin/python" ] && ! grep -qx "home = $home" "$VENV/pyvenv.cfg" 2>/dev/null; then
        say "recreating $VENV for $py"
        rm -rf "$VENV"
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating $VENV"
        "$py" -m venv "$VENV"
    fi
    pip_quiet install -q --upgrade pip
    say "pip install -e .[test]"
    # compat mode: a plain path .pth (setuptools' editable finder costs ~24 ms per ocirun start)
    pip_quiet install -q -e ".[test]" --config-settings editable_mode=compat
    "$VENV/bin/python" -c 'import ocirun, prctl, pyseccomp, jsonschema' >/dev/null
    # setuptools' distutils-precedence.pth makes every interpreter start import _distutils_hack (~1.4 ms);
    # nothing needs setuptools in the venv at run time (pip builds in an isolated environment).
    "$VENV/bin/python" -m pip uninstall -q -y setuptools >/dev/null 2>&1 || true
    # byte-compile: ocirun's start-up budget has no room for compiling sources (PYTHONDONTWRITEBYTECODE may be set)
    "$VENV/bin/python" -m compileall -q "$REPO/ocirun" >/dev/null
}

demo() {
    setup
    export PATH="$VENV/bin:$PATH"
    DEMO_DIR=$(mktemp -d /tmp/ocirun-demo.XXXXXX)
    trap 'rm -rf "$DEMO_DIR"' EXIT
    local d=$DEMO_DIR
    say "building the default bundle in $d (busybox-static rootfs + 'ocirun spec')"
    "$VENV/bin/python" - "$d" <<'EOF'
import sys
from ocirun import bundle
bundle.make_bundle(sys.argv[1], args=["sh", "-c",
    "echo \"hello from inside an ocirun container\"; "
    "echo \"my pid:          $$ (pid namespace of my own)\"; "
    "echo \"my hostname:     $(hostname)\"; "
    "echo \"my uts ns:       $(readlink /proc/self/ns/uts)\"; "
    "echo \"my pid ns:       $(readlink /proc/self/ns/pid)\"; "
    "echo \"my capabilities: $(grep CapBnd /proc/self/status)\""])
EOF
    echo "host hostname:   $(hostname)"
    echo "host uts ns:     $(readlink /proc/self/ns/uts)"
    echo "host pid ns:     $(readlink /proc/self/ns/pid)"
    say "ocirun run demo-$$"
    (cd "$d" && ocirun run "demo-$$")
}

reachable_by_users() {
    # the rootless tests run this checkout's ocirun as an unprivileged user: every directory on the way to it
    # must be searchable by others (a checkout under /root is not); o+x only, nothing becomes listable
    local p=$REPO
    while [ "$p" != "/" ]; do
        if [ -z "$(find "$p" -maxdepth 0 -perm -o+x)" ]; then
            say "chmod o+x $p (the rootless tests run ocirun as another user)"
            chmod o+x "$p"
        fi
        p=$(dirname "$p")
    done
}

tests() {
    setup $TEST_PKGS
    reachable_by_users
    export PATH="$VENV/bin:$PATH"
    local rc=0
    if [ $# -eq 0 ]; then
        # The OCI conformance suite against ocirun: any requirement failing fails the run (host skips are fine).
        say "conformance suite (conformance/run --strict)"
        "$REPO/conformance/run" --strict --runtime "$VENV/bin/ocirun" || rc=$?
    fi
    say "pytest"
    # with arguments, they choose what runs (e.g. tests/unit, or -k ...); without, the whole tests/ tree
    if [ $# -eq 0 ]; then set -- -q tests; fi
    "$VENV/bin/python" -m pytest -p no:cacheprovider "$@" || rc=$?
    return $rc
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
    demo) demo ;;
    test) tests "$@" ;;
    setup) setup $TEST_PKGS ;;
    bench) setup $TEST_PKGS; exec "$VENV/bin/python" bench/bench_run.py "$@" ;;
    *) sed -n '2,7p' "$0" >&2; exit 2 ;;
esac
