"""`ocirun check` against what `create` does, and runc's extensions run for real (issue: same verdict as runc).

check and create must never disagree on what is refused: for each config below, check's exit status is 1 exactly
when `run` fails, and runc (the oracle) reaches the same verdict where its version (Debian's 1.1.5) has the rule.
"""
import json

import pytest



def _mnt_line(out, mount_point):
    for line in out.splitlines():
        parts = line.split()
        if len(parts) > 6 and parts[4] == mount_point:
            return parts
    return None


def _propagation(parts):
    opt = parts[6:parts.index("-")]
    return {o.split(":")[0] for o in opt} & {"shared", "master"} or {"private"}


def test_check_valid_config(oci, bundle):
    b = bundle(["true"])
    r = oci("check", b)
    assert r.returncode == 0 and r.stdout.startswith("ok:"), r
    r = oci("check", "--strict", "--bundle", b)
    assert r.returncode == 0, r


def test_check_strict_names_each_extension(oci, bundle):
    def edit(c):
        c["linux"]["rootfsPropagation"] = "rslave"
        c["hostname"] = None
        c["linux"]["devices"] = [{"path": "/dev/xx", "type": "c", "major": 1, "minor": 3, "fileMode": 8630}]
    b = bundle(["true"], edit=edit)
    assert oci("check", b).returncode == 0
    r = oci("check", "--strict", "--format", "json", b)
    assert r.returncode == 2, r
    doc = json.loads(r.stdout)
    got = {(f["severity"], f["pointer"]) for f in doc["findings"]}
    assert got == {("extension", "/linux/rootfsPropagation"), ("extension", "/hostname"),
                   ("extension", "/linux/devices/0/fileMode")}, doc
    assert all("official" in f["message"] for f in doc["findings"])
    assert doc["exitCode"] == 2


@pytest.mark.parametrize("name,edit", [
    ("schema", lambda c: c["linux"]["namespaces"].append({"type": "pidd"})),
    ("two-problems", lambda c: c["process"].update(cwd="rel", args=[])),
    ("sysctl-host", lambda c: c["linux"].update(sysctl={"kernel.foo": "1"})),
    ("rootfs-missing", lambda c: c["root"].update(path="no-such-dir")),
    ("hostname-no-uts", lambda c: c.update(hostname="h") or c["linux"].update(
        namespaces=[n for n in c["linux"]["namespaces"] if n["type"] != "uts"])),
    ("net_cls-missing", lambda c: c["linux"].update(resources={"network": {"classID": 5}})),
    ("leaf-weight-missing", lambda c: c["linux"].update(resources={"blockIO": {"leafWeight": 10}})),
    ("rlimit-unknown", lambda c: c["process"].update(rlimits=[{"type": "RLIMIT_FOO", "soft": 1, "hard": 1}])),
    ("user-ns-no-mappings", lambda c: c["linux"]["namespaces"].append({"type": "user"})),
    ("selinux-off", lambda c: c["process"].update(selinuxLabel="system_u:system_r:container_t:s0")),
    ("fine-rslave", lambda c: c["linux"].update(rootfsPropagation="rslave")),
    ("fine-unknown-cap", lambda c: c["process"]["capabilities"]["bounding"].append("CAP_FOO")),
    ("fine-null", lambda c: c.update(hostname=None)),
])
def test_check_agrees_with_create_and_runc(name, edit, oci, runc, bundle, cid):
    b = bundle(["true"], edit=edit)
    chk = oci("check", b)
    run = oci("run", "--bundle", b, cid())
    oci("delete", "--force", cid())
    assert (chk.returncode == 1) == (run.returncode != 0), (chk, run)
    if chk.returncode == 1:
        errors = [ln for ln in chk.stdout.splitlines() if ln.startswith("error: /")]
        assert errors, chk
        if name == "two-problems":
            assert len(errors) == 2, chk
    rid = cid("runc")
    r = runc("run", "--bundle", b, rid)
    runc("delete", "--force", rid)
    assert (r.returncode != 0) == (run.returncode != 0), (name, r, run)


def test_run_rootfs_propagation_rslave_sees_host_mounts(oci, runc, bundle, cid, tmp_path):
    """docker run -v X:Y:rslave: rootfsPropagation "rslave" runs; the volume and the container's / are
    slaves of the host's mounts (what runc shows too)."""
    src = tmp_path / "vol"
    src.mkdir()
    import subprocess

    subprocess.run(["mount", "--bind", str(src), str(src)], check=True)
    subprocess.run(["mount", "--make-shared", str(src)], check=True)
    try:
        def edit(c):
            c["linux"]["rootfsPropagation"] = "rslave"
            c["mounts"].append({"destination": "/vol", "type": "bind", "source": str(src),
                                "options": ["rbind", "rslave"]})
        b = bundle(["cat", "/proc/self/mountinfo"], edit=edit)
        seen = {}
        for name, rt in (("ocirun", oci), ("runc", runc)):
            i = cid(name)
            r = rt("run", "--bundle", b, i)
            rt("delete", "--force", i)
            assert r.returncode == 0, r
            vol = _mnt_line(r.stdout, "/vol")
            assert vol is not None, r.stdout
            seen[name] = _propagation(vol)
        assert seen["ocirun"] == seen["runc"] == {"master"}, seen
    finally:
        subprocess.run(["umount", "-l", str(src)])


def test_run_tmpfs_over_existing_directory_keeps_its_mode(oci, bundle, cid):
    """runc 1.2+: a tmpfs over an existing directory of mode 0712 is 0712 (was 1777 under ocirun)."""
    import os

    def edit(c):
        c["mounts"].append({"destination": "/seven", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]})
        c["mounts"].append({"destination": "/given", "type": "tmpfs", "source": "tmpfs", "options": ["mode=700"]})
        c["mounts"].append({"destination": "/fresh", "type": "tmpfs", "source": "tmpfs"})
    b = bundle(["stat", "-c", "%n %a", "/seven", "/given", "/fresh"], edit=edit)
    root = bundle.rootfs(b)
    for d, m in (("seven", 0o712), ("given", 0o712)):
        os.mkdir(os.path.join(root, d))
        os.chmod(os.path.join(root, d), m)
    r = oci("run", "--bundle", b, cid())
    oci("delete", "--force", cid())
    assert r.returncode == 0, r
    assert r.stdout.split() == ["/seven", "712", "/given", "700", "/fresh", "1777"], r


def test_run_unknown_capability_warns_and_runs(oci, runc, bundle, cid):
    """config.md: a capability that cannot be mapped MUST be logged as a warning, SHOULD NOT fail; runc too."""
    def edit(c):
        c["process"]["capabilities"]["bounding"] += ["CAP_FOO", "cap_chown"]
    b = bundle(["grep", "CapBnd", "/proc/self/status"], edit=edit)
    outs = {}
    for name, rt in (("ocirun", oci), ("runc", runc)):
        i = cid(name)
        r = rt("run", "--bundle", b, i)
        rt("delete", "--force", i)
        assert r.returncode == 0, r
        assert "CAP_FOO" in r.stderr and "cap_chown" in r.stderr, r
        outs[name] = r.stdout.split()[-1]
    assert outs["ocirun"] == outs["runc"], outs  # cap_chown is not CAP_CHOWN: neither grants it


def test_memory_policy_flood_refused_fast(oci, bundle, cid):
    """linux.memoryPolicy.nodes "0-9876543210" is refused at once (it used to expand the range: 8.8 GB)."""
    import time

    def edit(c):
        c["linux"]["memoryPolicy"] = {"mode": "MPOL_BIND", "nodes": "0-9876543210"}
    b = bundle(["true"], edit=edit)
    t = time.monotonic()
    r = oci("run", "--bundle", b, cid())
    assert r.returncode != 0 and "/linux/memoryPolicy/nodes" in r.stderr, r
    assert time.monotonic() - t < 10


def test_log_file_created_when_nothing_goes_wrong(oci, runc, tmp_path, bundle, cid):
    """--log FILE exists after a successful command, as runc's (containerd's shim passes --log and reads it)."""
    b = bundle(["true"])
    for name, rt in (("ocirun", oci), ("runc", runc)):
        log = tmp_path / f"{name}.log"
        i = cid(name)
        r = rt("--log", str(log), "run", "--bundle", b, i)
        rt("delete", "--force", i)
        assert r.returncode == 0 and log.exists(), (name, r)
