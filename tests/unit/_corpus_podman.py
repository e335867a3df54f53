"""Regenerate the podman-generated part of the config corpus (tests/fixtures/configs/valid/podman-*.json).

Not a test: run it by hand as root on a host with podman and crun:

    .venv/bin/python tests/unit/_corpus_podman.py

It builds a busybox rootfs with ocirun.bundle.make_busybox_rootfs, `podman import`s it, and for each flag
set below runs `podman create` + `podman container init` (init may fail in a VM: podman writes config.json
before the runtime starts), copies userdata/config.json into the corpus and removes the container.
Container ids and creation times are replaced by fixed values so the files do not churn.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(REPO, "tests", "fixtures", "configs", "valid")
IMAGE = "localhost/ocirun-busybox:corpus"
PODMAN = ["podman", "--runtime", "crun", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
FAKE_ID = "0" * 60 + "cafe"

VARIANTS = {
    "default": [],
    "privileged": ["--privileged"],
    "caps": ["--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--cap-drop", "NET_RAW"],
    "cap-drop-all": ["--cap-drop", "ALL", "--cap-add", "CHOWN"],
    "memory-cpus-pids": ["--memory", "64m", "--memory-swap", "128m", "--cpus", "0.5", "--pids-limit", "100"],
    "cpuset-shares": ["--cpu-shares", "512", "--cpuset-cpus", "0", "--cpuset-mems", "0"],
    "cpu-quota": ["--cpu-period", "100000", "--cpu-quota", "50000"],
    "memory-misc": ["--memory-reservation", "32m", "--memory-swappiness", "10", "--oom-kill-disable",
                    "--oom-score-adj", "500"],
    "ulimits": ["--ulimit", "nofile=1024:2048", "--ulimit", "nproc=64:128", "--ulimit", "core=0:0"],
    "readonly-tmpfs": ["--read-only", "--tmpfs", "/scratch:rw,size=64k,mode=1777"],
    "user-workdir": ["--user", "1000:1000", "--group-add", "29", "--workdir", "/tmp", "--umask", "0077"],
    "env-labels": ["-e", "FOO=bar", "-e", "EMPTY=", "--hostname", "corpus-host", "--label", "a=b",
                   "--annotation", "org.example/key=value", "--annotation", "run.oci.keep_original_groups=1"],
    "seccomp-unconfined": ["--security-opt", "seccomp=unconfined"],
    "nnp-nolabel": ["--security-opt", "no-new-privileges", "--security-opt", "label=disable"],
    "devices": ["--device", "/dev/null:/dev/xnull:rwm", "--device", "/dev/zero", "--device-cgroup-rule", "c 1:3 rwm"],
    "sysctl": ["--sysctl", "net.ipv4.ip_unprivileged_port_start=0", "--sysctl", "kernel.msgmax=65536"],
    "host-namespaces": ["--pid", "host", "--ipc", "host", "--uts", "host"],
    "userns-map": ["--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536"],
    "volumes": ["-v", "{vol}:/data:ro", "--mount", "type=tmpfs,destination=/mnt/t,tmpfs-size=1m",
                "--mount", "type=bind,src={vol},dst=/b,bind-propagation=rshared"],
    "shm-tty": ["--shm-size", "128m", "--tty", "--interactive"],
    "entrypoint": ["--entrypoint", "/bin/sh", "--stop-signal", "SIGINT"],
    "personality": ["--personality", "LINUX32"],
    "cgroup-parent": ["--cgroup-parent", "/ocirun-corpus", "--cgroupns", "private"],
    "mask-unmask": ["--security-opt", "mask=/proc/cpuinfo", "--security-opt", "unmask=/proc/acpi"],
    "blkio": ["--blkio-weight", "500"],
    "read-only-tmpfs-off": ["--read-only", "--read-only-tmpfs=false"],
    "pids-unlimited-init": ["--pids-limit", "-1", "--systemd", "false"],
}


def run(args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


def main():
    sys.path.insert(0, REPO)
    from ocirun.bundle import make_busybox_rootfs

    with tempfile.TemporaryDirectory() as tmp:
        vol = os.path.join(tmp, "vol")
        os.makedirs(vol)
        if run(PODMAN + ["image", "exists", IMAGE], check=False).returncode != 0:
            make_busybox_rootfs(os.path.join(tmp, "rootfs"))
            tar = os.path.join(tmp, "rootfs.tar")
            run(["tar", "-C", os.path.join(tmp, "rootfs"), "-cf", tar, "."])
            run(PODMAN + ["import", tar, IMAGE])
        for name, flags in VARIANTS.items():
            flags = [f.format(vol=vol) for f in flags]
            r = run(PODMAN + ["create", "--network", "none", *flags, IMAGE, "sh", "-c", "echo hi"], check=False)
            if r.returncode != 0:
                print(f"skip {name}: {r.stderr.strip()}")
                continue
            cid = r.stdout.strip().splitlines()[-1]
            try:
                run(PODMAN + ["container", "init", cid], check=False)
                userdata = run(PODMAN + ["inspect", cid, "--format", "{{.StaticDir}}"]).stdout.strip()
                path = os.path.join(userdata, "config.json")
                if not os.path.exists(path):
                    print(f"skip {name}: no config.json")
                    continue
                with open(path) as f:
                    text = f.read()
                text = text.replace(cid, FAKE_ID).replace(cid[:12], FAKE_ID[:12]).replace(vol, "/srv/corpus-vol")
                text = re.sub(r'"io\.kubernetes\.cri-o\.Created":"[^"]*"',
                              '"io.kubernetes.cri-o.Created":"2024-01-01T00:00:00.000000000Z"', text)
                doc = json.loads(text)
                with open(os.path.join(OUT, f"podman-{name}.json"), "w") as f:
                    json.dump(doc, f, indent=1, sort_keys=True)
                    f.write("\n")
                print(f"wrote podman-{name}.json")
            finally:
                run(PODMAN + ["rm", "-f", cid], check=False)


if __name__ == "__main__":
    main()
