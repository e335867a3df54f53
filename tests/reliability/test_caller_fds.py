"""The fd rule from fork to exec: a created container's init holds none of the caller's descriptors but its
stdio and the --preserve-fds ones (runc's bats create.bats "detect fd leak"; the CVE-2024-21626 class)."""
import os
import subprocess

import pytest


def _fds_of(pid):
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            pass
    return out


@pytest.mark.parametrize("preserve", [0, 1])
def test_created_init_holds_no_caller_fd(ocirun_bin, runc_bin, state_root, runc_root, bundle, cid, tmp_path,
                                         preserve):
    secret = tmp_path / "caller-secret.txt"
    secret.write_text("x")
    b = bundle(["sleep", "30"])
    seen = {}
    for name, binary, root in (("ocirun", ocirun_bin, state_root), ("runc", runc_bin, runc_root)):
        i = cid(name)
        try:
            # the caller (bash, before exec): fd 3 (preserved with --preserve-fds 1) and fd 40, a file of its own
            # that must not get into the container
            args = [binary, "--root", root, "create", "--bundle", b]
            if preserve:
                args += ["--preserve-fds", "1"]
            with open(os.devnull, "w") as null:
                r = subprocess.run(["bash", "-c", 'exec 3>"$1" 40<"$2"; shift 2; exec "$@"', "_",
                                    str(tmp_path / f"preserved-{name}"), str(secret), *args, i],
                                   stdin=subprocess.DEVNULL, stdout=null, stderr=null, timeout=30)
            assert r.returncode == 0, name
            st = subprocess.run([binary, "--root", root, "state", i], capture_output=True, text=True).stdout
            pid = int(st.split('"pid":')[1].split(",")[0])
            fds = _fds_of(pid)
            seen[name] = fds
            assert not [fd for fd, t in fds.items() if t == str(secret)], (name, fds)
            preserved = [fd for fd, t in fds.items() if t.endswith(f"preserved-{name}")]
            assert preserved == ([3] if preserve else []), (name, fds)
        finally:
            subprocess.run([binary, "--root", root, "delete", "--force", i], capture_output=True)
    # besides stdio and what was preserved, each runtime keeps only its own sockets/pipes/fifo
    for name, fds in seen.items():
        for fd, target in fds.items():
            if fd > 2 + preserve:
                assert target.startswith(("socket:", "pipe:", "anon_inode:")) or target.endswith("exec.fifo"), \
                    (name, fd, target)
