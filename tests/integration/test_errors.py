"""`ocirun create` errors: each is reported in one clear message, the create fails (exit != 0), no state is
left (`state ID` says it does not exist) and the host is as before (conftest.host_snapshot checks mounts,
cgroups, processes and the state root). Also: mount destinations through hostile symlinks stay inside the
rootfs, and hooks get the state on stdin (a failing createRuntime hook fails the create)."""
import json
import os
import stat

import pytest

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates real containers")]


def create_fails(oci, b, cid, *flags):
    """Create that must fail; returns the Result after checking that nothing of the container remains."""
    res = oci("create", *flags, "--bundle", b, cid)
    assert res.returncode != 0, str(res)
    assert res.stderr.strip(), "no error message: " + str(res)
    assert len(res.stderr.strip().splitlines()) <= 3, "expected a short message:\n" + res.stderr
    st = oci("state", cid)
    assert st.returncode == 1 and "does not exist" in st.stderr, str(st)
    assert not os.path.exists(os.path.join(oci.root, cid))
    return res


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rindex(b")") + 2:].split()[0] not in (b"Z", b"X")


def _write_config_text(b, text):
    with open(os.path.join(b, "config.json"), "w") as f:
        f.write(text)


# ------------------------------------------------------------------------------------------ config.json
def test_malformed_json_names_line_and_column(oci, bundle, cid):
    b = bundle(["true"])
    text = '{\n  "ociVersion": "1.3.0",\n  "process": {"args": ["true"],, "cwd": "/"}\n}\n'
    with pytest.raises(json.JSONDecodeError) as ref:
        json.loads(text)
    _write_config_text(b, text)
    res = create_fails(oci, b, cid())
    msg = res.stderr
    assert "config.json" in msg
    assert f"line {ref.value.lineno}" in msg and f"column {ref.value.colno}" in msg, msg


def test_truncated_json(oci, bundle, cid):
    b = bundle(["true"])
    text = open(os.path.join(b, "config.json")).read()
    _write_config_text(b, text[: len(text) // 2])
    res = create_fails(oci, b, cid())
    assert "line" in res.stderr and "column" in res.stderr, str(res)


def test_missing_config(oci, bundle, cid):
    b = bundle(["true"])
    os.unlink(os.path.join(b, "config.json"))
    res = create_fails(oci, b, cid())
    assert "config.json" in res.stderr


def test_schema_violation_path_and_rule_on_one_line(oci, bundle, cid):
    def edit(cfg):
        cfg["linux"]["namespaces"][2]["type"] = "pidd"
    b = bundle(["true"], edit=edit)
    res = create_fails(oci, b, cid())
    lines = [ln for ln in res.stderr.splitlines() if "/linux/namespaces/2/type" in ln]
    assert lines, str(res)
    assert "pidd" in lines[0] and "is not one of" in lines[0], lines[0]


def test_schema_violation_wrong_type(oci, bundle, cid):
    def edit(cfg):
        cfg["process"]["user"]["uid"] = "root"
    res = create_fails(oci, bundle(["true"], edit=edit), cid())
    lines = [ln for ln in res.stderr.splitlines() if "/process/user/uid" in ln]
    assert lines and "root" in lines[0] and "type" in lines[0], str(res)


def test_missing_rootfs(oci, bundle, cid):
    b = bundle(["true"], root={"path": "no-such-rootfs", "readonly": True})
    res = create_fails(oci, b, cid())
    assert "no-such-rootfs" in res.stderr and "root" in res.stderr, str(res)


# ------------------------------------------------------------------------------------------ mounts
def _add_mount(bundle, b, m):
    cfg = bundle.config(b)
    cfg["mounts"].append(m)
    bundle.save(b, cfg)
    return len(cfg["mounts"]) - 1


def test_bind_source_missing(oci, bundle, cid):
    b = bundle(["true"])
    n = _add_mount(bundle, b, {"destination": "/data", "type": "bind", "source": os.path.join(b, "nope"),
                               "options": ["rbind"]})
    res = create_fails(oci, b, cid())
    assert f"mounts[{n}] /data" in res.stderr, str(res)
    assert "nope" in res.stderr


def test_unknown_fs_type(oci, bundle, cid):
    b = bundle(["true"])
    n = _add_mount(bundle, b, {"destination": "/x", "type": "nosuchfs", "source": "none"})
    res = create_fails(oci, b, cid())
    assert f"mounts[{n}] /x" in res.stderr and "nosuchfs" in res.stderr, str(res)


def test_bad_mount_option_value(oci, bundle, cid):
    b = bundle(["true"])
    n = _add_mount(bundle, b, {"destination": "/t", "type": "tmpfs", "source": "tmpfs",
                               "options": ["size=lots"]})
    res = create_fails(oci, b, cid())
    assert f"mounts[{n}] /t" in res.stderr, str(res)


@pytest.mark.parametrize("link", ["/etc", "../../../../../../etc"])
def test_destination_through_hostile_symlink_stays_in_rootfs(oci, bundle, cid, link):
    """rootfs/mnt -> /etc (or a ../ chain out of the rootfs): mounts on /mnt/... land in rootfs/etc."""
    with open("/etc/hostname", "rb") as f:
        host_hostname = f.read()
    host_etc = set(os.listdir("/etc"))
    b = bundle(["sh", "-c", "cat /etc/hostname; cat /etc/evil-file; ls -d /etc/evil-dir; "
                "grep -E ' /etc/(evil-dir|hostname|evil-file) ' /proc/self/mountinfo | cut -d' ' -f5"])
    rootfs = bundle.rootfs(b)
    os.symlink(link, os.path.join(rootfs, "mnt2"))
    src = os.path.join(b, "payload")
    with open(src, "w") as f:
        f.write("payload\n")
    cfg = bundle.config(b)
    cfg["root"]["readonly"] = False
    cfg["mounts"] += [
        {"destination": "/mnt2/evil-dir", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]},
        {"destination": "/mnt2/hostname", "type": "bind", "source": src, "options": ["bind"]},
        {"destination": "/mnt2/evil-file", "type": "bind", "source": src, "options": ["bind"]},
    ]
    bundle.save(b, cfg)
    res = oci("run", "-b", b, cid())
    # The symlink is resolved as if the rootfs were / (runc does the same): the mounts land in rootfs/etc.
    assert res.returncode == 0, str(res)
    out = res.stdout.splitlines()
    assert out[:3] == ["payload", "payload", "/etc/evil-dir"], str(res)
    assert sorted(out[3:]) == ["/etc/evil-dir", "/etc/evil-file", "/etc/hostname"], str(res)
    assert os.path.isdir(os.path.join(rootfs, "etc", "evil-dir"))
    assert os.path.isfile(os.path.join(rootfs, "etc", "evil-file"))
    # the host's /etc is untouched
    assert set(os.listdir("/etc")) == host_etc
    with open("/etc/hostname", "rb") as f:
        assert f.read() == host_hostname
    with open("/proc/self/mountinfo") as f:
        assert not [ln for ln in f if ln.split()[4].startswith("/etc")]


def test_bind_mount_over_symlinked_file_in_rootfs(oci, bundle, cid):
    """rootfs/etc/passwd -> /etc/shadow (absolute, pointing at a host secret): the bind goes onto the rootfs's
    own /etc/shadow, the host file is neither covered nor read."""
    b = bundle(["sh", "-c", "cat /etc/shadow"])
    rootfs = bundle.rootfs(b)
    os.unlink(os.path.join(rootfs, "etc", "passwd"))
    os.symlink("/etc/shadow", os.path.join(rootfs, "etc", "passwd"))
    src = os.path.join(b, "fake-passwd")
    with open(src, "w") as f:
        f.write("root:x:0:0::/:/bin/sh\n")
    with open("/etc/shadow", "rb") as f:
        host_shadow = f.read()
    cfg = bundle.config(b)
    cfg["root"]["readonly"] = False
    cfg["mounts"].append({"destination": "/etc/passwd", "type": "bind", "source": src, "options": ["bind"]})
    bundle.save(b, cfg)
    res = oci("run", "-b", b, cid())
    assert res.returncode == 0, str(res)
    assert res.stdout == "root:x:0:0::/:/bin/sh\n", str(res)
    assert os.path.isfile(os.path.join(rootfs, "etc", "shadow"))
    with open("/etc/shadow", "rb") as f:
        assert f.read() == host_shadow


# ------------------------------------------------------------------------------------------ process
def test_executable_not_found(oci, bundle, cid):
    res = create_fails(oci, bundle(["nope"]), cid())
    assert 'exec: "nope": executable file not found in $PATH' in res.stderr, str(res)


def test_executable_absolute_path_missing(oci, bundle, cid):
    res = create_fails(oci, bundle(["/bin/nope"]), cid())
    assert '"/bin/nope"' in res.stderr and "no such file" in res.stderr.lower(), str(res)


def test_executable_not_executable(oci, bundle, cid):
    b = bundle(["/bin/notexec"])
    p = os.path.join(bundle.rootfs(b), "bin", "notexec")
    with open(p, "w") as f:
        f.write("#!/bin/sh\necho hi\n")
    os.chmod(p, 0o644)
    res = create_fails(oci, b, cid())
    assert '"/bin/notexec"' in res.stderr and "permission denied" in res.stderr.lower(), str(res)


def test_executable_is_a_directory(oci, bundle, cid):
    res = create_fails(oci, bundle(["/tmp"]), cid())
    assert '"/tmp"' in res.stderr, str(res)


def test_cwd_is_a_file(oci, bundle, cid):
    def edit(cfg):
        cfg["process"]["cwd"] = "/bin/busybox"
    res = create_fails(oci, bundle(["true"], edit=edit), cid())
    assert "/bin/busybox" in res.stderr, str(res)


@pytest.mark.parametrize("bad", ["a/b", "..", "with space", "semi;colon", ""])
def test_invalid_id(oci, bundle, bad, id_prefix):
    b = bundle(["true"])
    bad_id = bad if bad in ("..", "") else id_prefix + bad
    res = oci("create", "--bundle", b, bad_id)
    assert res.returncode != 0, str(res)
    assert "id" in res.stderr.lower(), str(res)
    assert os.listdir(oci.root) == []


def test_hostname_without_uts_namespace(oci, bundle, cid):
    def edit(cfg):
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "uts"]
    res = create_fails(oci, bundle(["true"], edit=edit), cid())
    assert "hostname" in res.stderr.lower() and "uts" in res.stderr.lower(), str(res)


def test_unmapped_uid_in_user_namespace(oci, bundle, cid):
    def edit(cfg):
        cfg["linux"]["namespaces"].append({"type": "user"})
        cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        cfg["process"]["user"] = {"uid": 70000, "gid": 0}
    res = create_fails(oci, bundle(["true"], edit=edit), cid())
    assert "70000" in res.stderr and "uid" in res.stderr.lower(), str(res)


def test_mappings_without_user_namespace(oci, runc, bundle, cid):
    """runc reads ID mappings only when a user namespace is listed: without one they are ignored (a warning here),
    and the container runs as host root."""
    def edit(cfg):
        cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    b = bundle(["cat", "/proc/self/uid_map"], edit=edit)
    for name, rt in (("ocirun", oci), ("runc", runc)):
        i = cid(name)
        res = rt("run", "--bundle", b, i)
        rt("delete", "--force", i)
        assert res.returncode == 0 and res.stdout.split() == ["0", "0", "4294967295"], (name, res)
        if name == "ocirun":
            assert "uidMappings" in res.stderr and "ignored" in res.stderr, res


def test_console_socket_nowhere(oci, bundle, cid, tmp_path):
    def edit(cfg):
        cfg["process"]["terminal"] = True
    sock = str(tmp_path / "no-such.sock")
    res = create_fails(oci, bundle(["true"], edit=edit), cid(), "--console-socket", sock)
    assert sock in res.stderr, str(res)


def test_terminal_without_console_socket(oci, bundle, cid):
    def edit(cfg):
        cfg["process"]["terminal"] = True
    res = create_fails(oci, bundle(["true"], edit=edit), cid())
    assert "console" in res.stderr.lower(), str(res)


def test_nested_bundle_path_missing(oci, cid, tmp_path):
    res = oci("create", "--bundle", str(tmp_path / "nope"), cid())
    assert res.returncode != 0, str(res)
    assert "config.json" in res.stderr


# ------------------------------------------------------------------------------------------ hooks
HOOK = """#!/bin/sh
# $1: hook kind, $2: output dir. Save the state from stdin; fail when asked to.
cat > "$2/$1.json"
[ -e "$2/fail-$1" ] && { echo "hook $1 failing on purpose" >&2; exit 3; }
exit 0
"""


def _hook_script(d):
    path = os.path.join(d, "hook.sh")
    with open(path, "w") as f:
        f.write(HOOK)
    os.chmod(path, 0o755)
    return path


def _hooks(script, out, kinds):
    return {k: [{"path": script, "args": ["hook.sh", k, out]}] for k in kinds}


def test_failing_create_runtime_hook(oci, bundle, cid, tmp_path):
    out = str(tmp_path)
    script = _hook_script(out)
    open(os.path.join(out, "fail-createRuntime"), "w").close()
    b = bundle(["sleep", "60"], hooks=_hooks(script, out, ["prestart", "createRuntime", "poststop"]))
    res = create_fails(oci, b, cid())
    assert "createRuntime" in res.stderr and "3" in res.stderr, str(res)
    # the hook did run, with the container's state (status "created", as crun: runtime-tools hooks_stdin)
    with open(os.path.join(out, "createRuntime.json")) as f:
        st = json.load(f)
    assert st["status"] == "created" and st["pid"] > 0
    # its init is gone (the leak checker also checks the cgroups and the state root)
    assert not _alive(st["pid"])


def test_failing_prestart_hook(oci, bundle, cid, tmp_path):
    out = str(tmp_path)
    script = _hook_script(out)
    open(os.path.join(out, "fail-prestart"), "w").close()
    b = bundle(["sleep", "60"], hooks=_hooks(script, out, ["prestart"]))
    res = create_fails(oci, b, cid())
    assert "prestart" in res.stderr, str(res)


def test_hook_not_found(oci, bundle, cid, tmp_path):
    b = bundle(["true"], hooks={"createRuntime": [{"path": str(tmp_path / "no-such-hook")}]})
    res = create_fails(oci, b, cid())
    assert "no-such-hook" in res.stderr, str(res)


def test_hooks_receive_state_on_stdin(oci, bundle, cid, tmp_path, wait_for):
    out = str(tmp_path)
    script = _hook_script(out)
    kinds = ["prestart", "createRuntime", "poststart", "poststop"]
    annotations = {"org.ocirun.test": "hooks"}
    b = bundle(["sleep", "60"], hooks=_hooks(script, out, kinds), annotations=annotations)
    c = cid()
    res = oci("create", "--bundle", b, c)
    assert res.returncode == 0, str(res)
    pid = oci.state(c)["pid"]

    def load(kind):
        with open(os.path.join(out, kind + ".json")) as f:
            return json.load(f)

    for kind in ("prestart", "createRuntime"):
        st = load(kind)
        assert st["id"] == c and st["pid"] == pid and st["status"] == "created", (kind, st)
        assert st["bundle"] == os.path.realpath(b) and st["ociVersion"] == "1.3.0", (kind, st)
        assert st["annotations"] == annotations
    assert not os.path.exists(os.path.join(out, "poststart.json"))
    assert oci("start", c).returncode == 0
    wait_for(lambda: os.path.exists(os.path.join(out, "poststart.json")), what="the poststart hook")
    st = load("poststart")
    assert st["id"] == c and st["pid"] == pid and st["status"] == "running", st
    assert st["bundle"] == os.path.realpath(b)
    assert not os.path.exists(os.path.join(out, "poststop.json"))
    res = oci("delete", "--force", c)
    assert res.returncode == 0, str(res)
    st = load("poststop")
    assert st["id"] == c and st["status"] == "stopped" and st["bundle"] == os.path.realpath(b), st
    assert isinstance(st.get("pid", 0), int)


def test_failing_poststart_hook_fails_start_and_stops_the_container(oci, bundle, cid, tmp_path):
    """runtime.md lifecycle: if a poststart hook fails, the runtime MUST generate an error, stop the container
    and continue at step 12 (destroy; poststop hooks run)."""
    out = str(tmp_path)
    script = _hook_script(out)
    open(os.path.join(out, "fail-poststart"), "w").close()
    b = bundle(["sleep", "60"], hooks=_hooks(script, out, ["poststart", "poststop"]))
    c = cid()
    assert oci("create", "--bundle", b, c).returncode == 0
    pid = oci.state(c)["pid"]
    res = oci("start", c)
    assert res.returncode != 0 and "poststart" in res.stderr, str(res)
    assert oci.state(c) is None, "the container was not destroyed after the poststart failure"
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(") ")[1][0] == "Z"
    assert os.path.exists(os.path.join(out, "poststop.json")), "poststop hooks did not run"


def test_create_runtime_hook_timeout(oci, bundle, cid, tmp_path):
    import time

    hook = tmp_path / "slow.sh"
    hook.write_text("#!/bin/sh\ncat >/dev/null\nexec sleep 30\n")
    hook.chmod(0o755)
    b = bundle(["true"], hooks={"createRuntime": [{"path": str(hook), "timeout": 1}]})
    t0 = time.monotonic()
    res = create_fails(oci, b, cid())
    assert time.monotonic() - t0 < 10, "the hook's timeout was not honoured"
    assert "createRuntime" in res.stderr and "timed out" in res.stderr, str(res)


# ------------------------------------------------------------------------------------------ more failures late in create
def test_pid_file_in_missing_directory(oci, bundle, cid, tmp_path):
    """The pid file is written after the container exists: failing then must still undo everything."""
    pidfile = tmp_path / "no-such-dir" / "init.pid"
    res = create_fails(oci, bundle(["sleep", "60"]), cid(), "--pid-file", str(pidfile))
    assert "no-such-dir" in res.stderr, str(res)


@pytest.mark.parametrize("path", ["/proc/999999999/ns/net", "/etc/hostname"])
def test_join_bad_namespace_path(oci, bundle, cid, path):
    def edit(cfg):
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "network"]
        cfg["linux"]["namespaces"].append({"type": "network", "path": path})
    res = create_fails(oci, bundle(["true"], edit=edit), cid())
    assert path in res.stderr and "network" in res.stderr, str(res)
