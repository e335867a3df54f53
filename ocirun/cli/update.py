"""ocirun update [--resources FILE|-] [--memory N --cpu-quota N ...] ID"""
import sys

from . import need_args, root_of
from .. import jsonio
from ..container import Container
from ..errors import OciError, UsageError

USAGE = "[command options] <container-id>"
_INT = ["blkio-weight", "cpu-period", "cpu-quota", "cpu-rt-period", "cpu-rt-runtime", "cpu-share",
        "pids-limit", "cpu-burst", "cpu-idle"]
_MEM = ["memory", "memory-reservation", "memory-swap", "kernel-memory", "kernel-memory-tcp"]
FLAGS = {"resources": "str", "r": "resources", "cpuset-cpus": "str", "cpuset-mems": "str", "l3-cache-schema": "str",
         "mem-bw-schema": "str", "help": "bool", "h": "help", **{k: "str" for k in _INT + _MEM}}


def _num(name, v):
    try:
        return int(v, 10)
    except ValueError:
        raise UsageError(f"invalid value for --{name}: {v!r}") from None


def _bytes(name, v):
    """Sizes like runc's (docker/go-units RAMInBytes): 64m, 1g, 512k, plain bytes; -1 for unlimited."""
    s = v.strip().lower()
    if s == "-1":
        return -1
    mult = 1
    for suf, m in (("kib", 1 << 10), ("mib", 1 << 20), ("gib", 1 << 30), ("kb", 1 << 10), ("mb", 1 << 20),
                   ("gb", 1 << 30), ("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30), ("b", 1)):
        if s.endswith(suf):
            s, mult = s[: -len(suf)], m
            break
    try:
        return int(float(s) * mult)
    except ValueError:
        raise UsageError(f"invalid value for --{name}: {v!r}") from None


def resources_from_flags(fl):
    r = {}
    mem = {}
    for flag, key in (("memory", "limit"), ("memory-reservation", "reservation"), ("memory-swap", "swap"),
                      ("kernel-memory", "kernel"), ("kernel-memory-tcp", "kernelTCP")):
        if fl.get(flag) is not None:
            mem[key] = _bytes(flag, fl[flag])
    if mem:
        r["memory"] = mem
    cpu = {}
    for flag, key in (("cpu-share", "shares"), ("cpu-quota", "quota"), ("cpu-period", "period"),
                      ("cpu-rt-runtime", "realtimeRuntime"), ("cpu-rt-period", "realtimePeriod"),
                      ("cpu-burst", "burst"), ("cpu-idle", "idle")):
        if fl.get(flag) is not None:
            cpu[key] = _num(flag, fl[flag])
    if fl.get("cpuset-cpus") is not None:
        cpu["cpus"] = fl["cpuset-cpus"]
    if fl.get("cpuset-mems") is not None:
        cpu["mems"] = fl["cpuset-mems"]
    if cpu:
        r["cpu"] = cpu
    if fl.get("pids-limit") is not None:
        r["pids"] = {"limit": _num("pids-limit", fl["pids-limit"])}
    if fl.get("blkio-weight") is not None:
        r["blockIO"] = {"weight": _num("blkio-weight", fl["blkio-weight"])}
    if fl.get("l3-cache-schema") or fl.get("mem-bw-schema"):
        raise OciError("update: Intel RDT is not supported by ocirun on this host")
    return r


def run(g, fl, args):
    need_args(args, 1, "update", USAGE, at_most=1)
    if fl.resources:
        data = sys.stdin.read() if fl.resources == "-" else open(fl.resources).read()
        try:
            res = jsonio.loads(data)
        except jsonio.JSONError as e:
            raise OciError(f"--resources: invalid JSON: {e}") from None
        if not isinstance(res, dict):
            raise OciError("--resources: must be a linux.resources JSON object")
        from ..validate import validate_config

        validate_config({"ociVersion": "1.3.0", "linux": {"resources": res}})
    else:
        res = resources_from_flags(fl)
    Container(args[0], root_of(g)).update(res)
    return 0
