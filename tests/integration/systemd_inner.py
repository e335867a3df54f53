"""One runtime (ocirun or runc) run inside a systemd bed with --systemd-cgroup, for the driver's tests
(test_systemd_cgroup.py on the hybrid bed, test_systemd_cgroup_v2.py on the unified one)."""
import json
import re
import shlex
import uuid


class InnerRuntime:
    """`rt(*args)` runs `<runtime> --root <its own> --systemd-cgroup *args` in the bed; containers made through
    new_id() are deleted by cleanup()."""

    def __init__(self, bed, name, id_prefix="sd"):
        self.bed = bed
        self.name = name
        self.id_prefix = id_prefix
        self.ids = []

    def argv(self, *args):
        return [*self.bed.runtime(self.name), "--systemd-cgroup", *args]

    def __call__(self, *args, check=False, timeout=60, env=None):
        argv = self.argv(*args)
        if args and args[0] in ("run", "exec") and "-d" in args:
            # what is left running gets files, not the outer exec's stdio (with runc as the bed's outer runtime,
            # `runc exec` returns only once every holder of its pipes is gone); the runtime's output is shown
            t = f"/run/sdt-{uuid.uuid4().hex[:8]}"
            argv = ["sh", "-c", f'"$@" </dev/null >{t}.out 2>{t}.err; rc=$?; cat {t}.out; cat {t}.err >&2; '
                    f'rm -f {t}.out {t}.err; exit $rc', "sh", *argv]
        return self.bed.run(argv, check=check, timeout=timeout, env=env)

    def new_id(self, tag):
        cid = f"{self.id_prefix}{tag}-{self.name}-{uuid.uuid4().hex[:6]}"
        self.ids.append(cid)
        return cid

    def bundle(self, cid, args=("sleep", "1000"), path=None, resources=None, annotations=None, devices=None,
               cgroupns=None):
        """A busybox bundle in the bed; `path` None: no cgroupsPath; cgroupns True/False adds/removes the
        cgroup namespace (None: as `<runtime> spec` has it)."""
        def edit(cfg):
            lin = cfg.setdefault("linux", {})
            if path is not None:
                lin["cgroupsPath"] = path
            else:
                lin.pop("cgroupsPath", None)
            if resources:
                lin["resources"] = dict(lin.get("resources") or {}, **resources)
            if devices:
                lin["devices"] = devices
            if annotations:
                cfg["annotations"] = annotations
            ns = [n for n in lin.get("namespaces", []) if n["type"] != "cgroup"]
            if cgroupns or (cgroupns is None and len(ns) != len(lin.get("namespaces", []))):
                ns.append({"type": "cgroup"})
            lin["namespaces"] = ns
        return self.bed.make_bundle(self.name, args=args, edit=edit, name=cid)

    def start(self, cid, **kw):
        b = self.bundle(cid, **kw)
        self("run", "-d", "--bundle", b, cid, check=True)
        return b

    def cleanup(self):
        for cid in self.ids:
            self("delete", "--force", cid)

    # ------------------------------------------------------------------------------------------- looking
    def show(self, unit, *props):
        out = self.bed.systemctl("show", unit, *[f"-p{p}" for p in props], check=True).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def cat(self, path):
        return self.bed.run(["cat", path], check=True).stdout.strip()

    def exists(self, path):
        return self.bed.run(["test", "-e", path]).returncode == 0

    def pid(self, cid):
        return json.loads(self("state", cid, check=True).stdout)["pid"]

    def listed(self, cid):
        return cid in self("list", "-q", check=True).stdout.split()

    def wait_status(self, cid, status):
        rt = " ".join(shlex.quote(a) for a in self.bed.runtime(self.name))
        self.bed.run(f"for i in $(seq 100); do {rt} state {cid} | grep -q '\"status\": \"{status}\"' && exit 0; "
                     "sleep 0.1; done; exit 1", check=True)

    def runc_1_1(self):
        """This is runc 1.1.x (whose systemd driver differs from 1.2+ in places the tests name)."""
        if self.name != "runc":
            return False
        out = self.bed.run([self.bed.runtime("runc")[0], "--version"], check=True).stdout
        return re.search(r"^runc version 1\.1\.", out, re.M) is not None


def cleanup_fixture(request):
    """The body of an autouse fixture: delete what the test's `rt` made."""
    inner = request.node.funcargs.get("rt")
    if inner is not None:
        inner.cleanup()
