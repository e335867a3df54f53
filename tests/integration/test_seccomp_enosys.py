"""linux.seccomp's -ENOSYS handling on real containers (runc's: a syscall numbered above the highest one the profile
names gets ENOSYS, not the default action, unless that default lets syscalls through).

A small static C program, compiled here with gcc (dev.sh installs gcc and, through python3-dev, libc6-dev's
libc.a), makes raw syscalls and prints what each returned (-errno on failure). The profiles allow every syscall
numbered below pidfd_send_signal (names from libseccomp, so the test holds on any architecture) but unshare:
pidfd_send_signal, which the kernel implements, then stands for a syscall newer than the profile."""
import ctypes
import errno
import os
import shutil
import subprocess
import tempfile

import pytest

from ocirun import seccomp as SC

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates real containers")]

PROBE_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Each argument is "label:nr[:arg0[:arg1...]]"; prints "label=<return value or -errno>" per syscall. */
int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);   /* what was printed survives a kill */
	for (int i = 1; i < argc; i++) {
		char *spec = strdup(argv[i]), *label = strtok(spec, ":");
		long nr = strtol(strtok(NULL, ":"), NULL, 0), a[4] = {0, 0, 0, 0};
		char *tok;
		for (int j = 0; j < 4 && (tok = strtok(NULL, ":")); j++)
			a[j] = strtol(tok, NULL, 0);
		errno = 0;
		long r = syscall(nr, a[0], a[1], a[2], a[3]);
		printf("%s=%ld\n", label, r < 0 ? -(long)errno : r);
	}
	return 0;
}
"""


@pytest.fixture(autouse=True)
def seccomp_cache(monkeypatch):
    d = tempfile.mkdtemp(prefix="ocirun-scc-")
    monkeypatch.setenv("OCIRUN_SECCOMP_CACHE", d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def probe_binary(tmp_path_factory):
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is needed to build the probe (./dev.sh setup installs it)")
    d = tmp_path_factory.mktemp("enosys-probe")
    (d / "probe.c").write_text(PROBE_C)
    out = subprocess.run([gcc, "-static", "-O1", "-o", str(d / "probe"), str(d / "probe.c")],
                         capture_output=True, text=True)
    assert out.returncode == 0, f"gcc -static failed (libc6-dev's libc.a missing?):\n{out.stderr}"
    return str(d / "probe")


class Numbers:
    """Native syscall numbers and names, from libseccomp (as the runtime resolves them)."""

    def __init__(self):
        lib = ctypes.CDLL("libseccomp.so.2")
        lib.seccomp_arch_native.restype = ctypes.c_uint32
        lib.seccomp_syscall_resolve_name_arch.restype = ctypes.c_int
        lib.seccomp_syscall_resolve_name_arch.argtypes = (ctypes.c_uint32, ctypes.c_char_p)
        lib.seccomp_syscall_resolve_num_arch.restype = ctypes.c_void_p
        lib.seccomp_syscall_resolve_num_arch.argtypes = (ctypes.c_uint32, ctypes.c_int)
        self._lib = lib
        self.arch = lib.seccomp_arch_native()
        libc = ctypes.CDLL(None)
        libc.free.argtypes = (ctypes.c_void_p,)
        self._free = libc.free

    def nr(self, name):
        n = self._lib.seccomp_syscall_resolve_name_arch(self.arch, name.encode())
        assert n >= 0, name
        return n

    def names_below(self, limit):
        out = []
        for n in range(limit):
            p = self._lib.seccomp_syscall_resolve_num_arch(self.arch, n)
            if p:
                out.append(ctypes.string_at(p).decode())
                self._free(p)
        return out


@pytest.fixture(scope="module")
def nrs():
    return Numbers()


def _profile(nrs, default, **extra):
    newer = nrs.nr("pidfd_send_signal")
    allowed = [n for n in nrs.names_below(newer) if n not in ("unshare", "mkdir", "mkdirat")]
    prof = {"defaultAction": default, "syscalls": [
        {"names": allowed, "action": "SCMP_ACT_ALLOW"},
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV}]}
    prof.update(extra)
    return prof


def _bundle(bundle, probe_binary, prof, calls):
    args = ["/enosys_probe"] + [":".join(map(str, c)) for c in calls]

    def edit(cfg):
        cfg["linux"]["seccomp"] = prof
    b = bundle(args, edit=edit)
    shutil.copy(probe_binary, os.path.join(bundle.rootfs(b), "enosys_probe"))
    return b


def _results(out):
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _calls(nrs, with_unshare=True):
    calls = [("getppid", nrs.nr("getppid")),
             ("mkdirat", nrs.nr("mkdirat"), -100, 0, 0o755),              # AT_FDCWD, NULL path: the rule answers
             ("newer", nrs.nr("pidfd_send_signal"), -1, 0, 0, 0),        # unfiltered: EBADF
             ("fake", 1000, 0xDEADBEEF, 0xCAFEFEED, 0x1337)]
    if with_unshare:
        calls.append(("unshare", nrs.nr("unshare"), 0))
    return calls


def test_errno_default_newer_syscalls_get_enosys(oci, bundle, cid, probe_binary, nrs, seccomp_cache):
    prof = _profile(nrs, "SCMP_ACT_ERRNO")
    b = _bundle(bundle, probe_binary, prof, _calls(nrs))
    outs = []
    for _ in range(2):   # compiled and stored, then loaded from the cache: the same answers
        res = oci("run", "--bundle", b, cid())
        assert res.returncode == 0, str(res)
        got = _results(res.stdout)
        assert got.pop("getppid") == "0", str(res)          # allowed (the parent is outside the pid namespace)
        assert got == {"mkdirat": str(-errno.EXDEV), "newer": str(-errno.ENOSYS), "fake": str(-errno.ENOSYS),
                       "unshare": str(-errno.EPERM)}, str(res)
        outs.append(res.stdout)
    assert outs[0] == outs[1]
    assert len([f for f in os.listdir(seccomp_cache) if f.endswith(".bpf")]) == 1


def test_kill_default_survives_unknown_syscalls(oci, bundle, cid, probe_binary, nrs):
    # KILL_PROCESS by default: a syscall newer than the profile answers ENOSYS instead of killing the process
    prof = _profile(nrs, "SCMP_ACT_KILL_PROCESS")
    b = _bundle(bundle, probe_binary, prof, _calls(nrs, with_unshare=False) + [("after", nrs.nr("getppid"))])
    res = oci("run", "--bundle", b, cid())
    assert res.returncode == 0, str(res)
    got = _results(res.stdout)
    assert got == {"getppid": "0", "mkdirat": str(-errno.EXDEV), "newer": str(-errno.ENOSYS),
                   "fake": str(-errno.ENOSYS), "after": "0"}, str(res)
    # and a syscall below the highest that no rule allows still kills it
    b = _bundle(bundle, probe_binary, prof, [("unshare", nrs.nr("unshare"), 0), ("after", nrs.nr("getppid"))])
    res = oci("run", "--bundle", b, cid())
    assert res.returncode == 128 + 31 and "after" not in res.stdout, str(res)   # SIGSYS


def test_allow_default_gets_no_stub(oci, bundle, cid, probe_binary, nrs):
    # ALLOW by default: nothing to stub; the kernel itself answers the unknown number, pidfd_send_signal runs
    prof = {"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV}]}
    b = _bundle(bundle, probe_binary, prof, _calls(nrs))
    res = oci("run", "--bundle", b, cid())
    assert res.returncode == 0, str(res)
    got = _results(res.stdout)
    assert got["newer"] == str(-errno.EBADF) and got["fake"] == str(-errno.ENOSYS), str(res)
    assert got["unshare"] == str(-errno.EXDEV), str(res)


def test_same_answers_as_runc(oci, runc, bundle, cid, probe_binary, nrs):
    # with the native architecture listed, runc (1.1 as well as later) adds the stub: same answers
    native = {v: k for k, v in SC.ARCHS.items()}[nrs.arch]
    prof = _profile(nrs, "SCMP_ACT_ERRNO", architectures=[native])
    b = _bundle(bundle, probe_binary, prof, _calls(nrs))
    mine = oci("run", "--bundle", b, cid())
    theirs = runc("run", "--bundle", b, cid())
    assert mine.returncode == theirs.returncode == 0, f"{mine}\n{theirs}"
    assert _results(mine.stdout) == _results(theirs.stdout), f"{mine}\n{theirs}"
    assert _results(mine.stdout)["newer"] == str(-errno.ENOSYS), str(mine)
