"""linux.resources -> ordered cgroupfs writes, for v1 and v2.

plan_v1()/plan_v2() validate the whole resources object first and return a list of operations; nothing is
written until the plan is complete, so a bad value never leaves a half-configured cgroup behind.

An operation is (controller, file, value, field): write `value` to `file` in the container's directory of
`controller` ("" = the v2 directory). When `file` is None, `value` is a function(dirpath, mgr) doing something
that needs reads or ordering decisions (memory limit vs swap, cpu quota vs period).

Field conventions (as runc, so configs behave the same under both runtimes): a 0 for memory limit / swap /
reservation / kernel / kernelTCP, cpu shares / quota / period / realtime*, blockIO weights means "unset".
pids.limit 0 is a real limit (spec); a negative pids.limit means "max".

Documented v1 -> v2 conversions:
  cpu.shares        -> cpu.weight = 1 + ((shares - 2) * 9999) // 262142
  cpu.quota/period  -> cpu.max "<quota|max> <period>"; cpu.burst -> cpu.max.burst
  memory.limit      -> memory.max (-1 -> "max");  reservation -> memory.low
  memory.swap       -> memory.swap.max = swap - limit (swap is memory+swap in the spec; -1 -> "max")
  blockIO.weight    -> io.bfq.weight as is (if the file exists), else io.weight = 1 + (weight - 10) * 9999 // 990
  weightDevice      -> io.bfq.weight / io.weight "maj:min w"; throttle*Device -> io.max "maj:min rbps=..."
  hugepageLimits    -> hugetlb.<size>.max (and .rsvd.max when the kernel has it)
  rdma              -> rdma.max
Not expressible on v2 (error when set): realtime*, blockIO.leafWeight, network.*, memory.swappiness (not in v2),
memory.disableOOMKiller (v2 has no oom_control). memory.kernel*/useHierarchy are ignored on v2 (always
hierarchical; kernel memory is accounted in memory.max).
"""
from . import CgroupError
from .common import (RES, cpu_list, dev_entries, err_write, page_size, read_file, to_int, want_bool, want_int,
                     want_list, want_obj, want_str, write_file)

I64_MAX = (1 << 63) - 1
U64_MAX = (1 << 64) - 1


def _set(d, k):
    return d.get(k) is not None


def _nz(d, k):
    v = d.get(k)
    return v is not None and v != 0


def _int_op(ops, d, base, key, ctrl, fname, lo, hi, when=_nz):
    """A field written as its integer value: if when(d, key), (ctrl, fname, "N", "base.key") is planned."""
    if when(d, key):
        v = want_int(f"{base}.{key}", d[key], lo, hi)
        ops.append((ctrl, fname, str(v), f"{base}.{key}"))


def _memory_limit_swap(mem, M):
    """memory.limit and memory.swap (0 when unset), as both versions read them."""
    limit = want_int(M + ".limit", mem["limit"], -1, I64_MAX) if _set(mem, "limit") else 0
    swap = want_int(M + ".swap", mem["swap"], -1, I64_MAX) if _set(mem, "swap") else 0
    return limit, swap


def _cpu_shares(cpu, F):
    """cpu.shares (2-262144), or None when unset or 0."""
    if not _nz(cpu, "shares"):
        return None
    v = want_int(F + ".shares", cpu["shares"], 0, U64_MAX)
    if v < 2 or v > 262144:
        raise CgroupError(f"{F}.shares: {v} is out of range (2-262144)")
    return v


def _cpu_quota_period_burst(cpu, F):
    """cpu.quota and cpu.period (0 when unset or 0) and cpu.burst (None when unset), as both versions read them."""
    quota = want_int(F + ".quota", cpu["quota"], -1, I64_MAX) if _nz(cpu, "quota") else 0
    period = want_int(F + ".period", cpu["period"], 0, U64_MAX) if _nz(cpu, "period") else 0
    burst = want_int(F + ".burst", cpu["burst"], 0, U64_MAX) if _set(cpu, "burst") else None
    if burst is not None and quota > 0 and burst > quota:
        raise CgroupError(f"{F}.burst: {burst} is larger than cpu.quota {quota}")
    return quota, period, burst


# ================================================================================================ v1

def plan_v1(res, update=False, created_memory=False):
    ops = []
    res = want_obj(RES, res)
    # res["unified"]: handled by the v1 driver (hybrid hosts write keys of controllers that are on cgroup2)

    # cpuset (first, as the kernel needs cpus/mems before tasks arrive)
    cpu = want_obj(RES + ".cpu", res.get("cpu"))
    if _set(cpu, "cpus"):
        ops.append(("cpuset", "cpuset.cpus", cpu_list(RES + ".cpu.cpus", cpu["cpus"]), RES + ".cpu.cpus"))
    if _set(cpu, "mems"):
        ops.append(("cpuset", "cpuset.mems", cpu_list(RES + ".cpu.mems", cpu["mems"]), RES + ".cpu.mems"))

    # memory
    mem = want_obj(RES + ".memory", res.get("memory"))
    _plan_memory_v1(mem, ops, update, created_memory)

    # cpu
    _plan_cpu_v1(cpu, ops)

    # pids
    _plan_pids(res, ops)

    # blkio
    _plan_blkio_v1(want_obj(RES + ".blockIO", res.get("blockIO")), ops)

    # hugetlb
    _plan_hugetlb(res, ops, _hugetlb_v1)

    # network
    net = want_obj(RES + ".network", res.get("network"))
    if _set(net, "classID"):
        v = want_int(RES + ".network.classID", net["classID"], 0, 0xFFFFFFFF)
        ops.append(("net_cls", "net_cls.classid", str(v), RES + ".network.classID"))
    for i, p in enumerate(want_list(RES + ".network.priorities", net.get("priorities"))):
        f = f"{RES}.network.priorities[{i}]"
        if not isinstance(p, dict) or not isinstance(p.get("name"), str) or not p.get("name"):
            raise CgroupError(f"{f}.name: required string")
        pr = want_int(f + ".priority", p.get("priority"), 0, 0xFFFFFFFF)
        ops.append(("net_prio", "net_prio.ifpriomap", f"{p['name']} {pr}", f))

    # rdma
    ops.extend(("rdma", "rdma.max", line, f) for f, line in _rdma_lines(res.get("rdma")))
    return ops


def _plan_memory_v1(mem, ops, update, created):
    F = RES + ".memory"
    limit, swap = _memory_limit_swap(mem, F)
    if limit > 0 and swap > 0 and swap < limit:
        raise CgroupError(f"{F}.swap: memory+swap limit ({swap}) must not be lower than the memory limit ({limit})")
    if limit or swap:
        check = update and mem.get("checkBeforeUpdate") is True and limit > 0
        ops.append(("memory", None, _memory_v1(limit, swap, check, created), F + (".limit" if limit else ".swap")))
    _int_op(ops, mem, F, "reservation", "memory", "memory.soft_limit_in_bytes", -1, I64_MAX)
    _int_op(ops, mem, F, "kernel", "memory", "memory.kmem.limit_in_bytes", -1, I64_MAX)
    _int_op(ops, mem, F, "kernelTCP", "memory", "memory.kmem.tcp.limit_in_bytes", -1, I64_MAX)
    _int_op(ops, mem, F, "swappiness", "memory", "memory.swappiness", 0, 100, when=_set)
    if _set(mem, "disableOOMKiller"):
        if want_bool(F + ".disableOOMKiller", mem["disableOOMKiller"]) or update:
            ops.append(("memory", "memory.oom_control", "1" if mem["disableOOMKiller"] else "0",
                        F + ".disableOOMKiller"))
    if _set(mem, "useHierarchy"):
        v = want_bool(F + ".useHierarchy", mem["useHierarchy"])
        ops.append(("memory", "memory.use_hierarchy", "1" if v else "0", F + ".useHierarchy"))
    if _set(mem, "checkBeforeUpdate"):
        want_bool(F + ".checkBeforeUpdate", mem["checkBeforeUpdate"])


def _memory_v1(limit, swap, check, created):
    F = RES + ".memory"
    LIM, SW = "memory.limit_in_bytes", "memory.memsw.limit_in_bytes"

    def w_limit(d):
        try:
            write_file(d, LIM, str(limit))
        except OSError as e:
            extra = ""
            if e.errno == 16:  # EBUSY: usage above the new limit and reclaim failed
                usage = to_int(_try(d, "memory.usage_in_bytes"))
                extra = f" (current usage {usage} bytes is above the new limit)" if usage is not None else ""
            raise err_write(F + ".limit", LIM, str(limit), e, extra) from None

    def w_swap(d, v):
        try:
            write_file(d, SW, str(v))
        except OSError as e:
            extra = " (swap accounting disabled? boot with swapaccount=1)" if e.errno == 2 else ""
            raise err_write(F + ".swap", SW, str(v), e, extra) from None

    def run(d, mgr):
        sw = swap
        if check:
            usage = to_int(_try(d, "memory.usage_in_bytes"))
            if usage is not None and usage > limit:
                raise CgroupError(f"{F}.limit: new limit {limit} is below the current usage {usage} "
                                  f"(memory.usage_in_bytes; checkBeforeUpdate is set)")
        if limit == -1 and sw == 0:
            # "unlimited memory" means unlimited memory+swap as well (if swap accounting exists).
            import os
            if os.path.exists(d + "/" + SW):
                sw = -1
        if limit and sw:
            # memsw must stay >= limit at every step.
            if sw == -1:
                first_swap = True
            elif created:
                first_swap = False      # fresh cgroup: both unlimited
            else:
                cur = to_int(_try(d, LIM))
                first_swap = cur is not None and cur < sw
            if first_swap:
                w_swap(d, sw)
                w_limit(d)
            else:
                w_limit(d)
                w_swap(d, sw)
        elif limit:
            w_limit(d)
        elif sw:
            w_swap(d, sw)
    return run


def _try(d, f):
    try:
        return read_file(d, f)
    except OSError:
        return None


def _plan_cpu_v1(cpu, ops):
    F = RES + ".cpu"
    shares = _cpu_shares(cpu, F)
    if shares is not None:
        ops.append(("cpu", "cpu.shares", str(shares), F + ".shares"))
    quota, period, burst = _cpu_quota_period_burst(cpu, F)
    if quota or period:
        ops.append(("cpu", None, _cpu_quota_v1(quota, period), F + (".period" if period else ".quota")))
    if burst is not None:
        ops.append(("cpu", "cpu.cfs_burst_us", str(burst), F + ".burst"))
    _int_op(ops, cpu, F, "idle", "cpu", "cpu.idle", 0, 1, when=_set)
    rt_period = want_int(F + ".realtimePeriod", cpu["realtimePeriod"], 0, U64_MAX) if _nz(cpu, "realtimePeriod") else 0
    rt_runtime = want_int(F + ".realtimeRuntime", cpu["realtimeRuntime"], -1, I64_MAX) \
        if _nz(cpu, "realtimeRuntime") else 0
    if rt_period or rt_runtime:
        ops.append(("cpu", None, _cpu_rt_v1(rt_period, rt_runtime),
                    F + (".realtimePeriod" if rt_period else ".realtimeRuntime")))


def _cpu_quota_v1(quota, period):
    return _period_first(RES + ".cpu.period", "cpu.cfs_period_us", period,
                         RES + ".cpu.quota", "cpu.cfs_quota_us", quota)


def _cpu_rt_v1(period, runtime):
    """cpu.rt_period_us and cpu.rt_runtime_us (last, as runc's SetRtSched)."""
    return _period_first(RES + ".cpu.realtimePeriod", "cpu.rt_period_us", period,
                         RES + ".cpu.realtimeRuntime", "cpu.rt_runtime_us", runtime)


def _period_first(pfield, pfile, period, vfield, vfile, value):
    """A period and the value bounded by it (CFS quota, realtime runtime). The kernel refuses a period that the
    current value does not fit (a quota or runtime above it): the period is written first, and if the kernel
    refuses it (EINVAL) while a value is to be set too, the value goes first and the period is written again
    (lowering both: value, then period; raising both: period, then value)."""
    def run(d, mgr):
        p = str(period) if period else ""
        if p:
            try:
                write_file(d, pfile, p)
                p = ""
            except OSError as e:
                if e.errno != 22 or not value:
                    raise err_write(pfield, pfile, p, e) from None
        if value:
            try:
                write_file(d, vfile, str(value))
            except OSError as e:
                raise err_write(vfield, vfile, str(value), e) from None
            if p:
                try:
                    write_file(d, pfile, p)
                except OSError as e:
                    raise err_write(pfield, pfile, p, e) from None
    return run


def _plan_blkio_v1(bio, ops):
    F = RES + ".blockIO"
    if _nz(bio, "weight"):
        v = want_int(F + ".weight", bio["weight"], 1, 1000)
        ops.append(("blkio", None, _blkio_weight("weight", str(v), F + ".weight"), F + ".weight"))
    _int_op(ops, bio, F, "leafWeight", "blkio", "blkio.leaf_weight", 1, 1000)
    for f, ma, mi, e in dev_entries(F + ".weightDevice", bio.get("weightDevice"), None):
        if e.get("weight") is None and e.get("leafWeight") is None:
            raise CgroupError(f"{f}: needs weight or leafWeight")
        if _nz(e, "weight"):
            v = want_int(f + ".weight", e["weight"], 1, 1000)
            ops.append(("blkio", None, _blkio_weight("weight_device", f"{ma}:{mi} {v}", f + ".weight"), f + ".weight"))
        if _nz(e, "leafWeight"):
            v = want_int(f + ".leafWeight", e["leafWeight"], 1, 1000)
            ops.append(("blkio", "blkio.leaf_weight_device", f"{ma}:{mi} {v}", f + ".leafWeight"))
    for key, fname in (("throttleReadBpsDevice", "read_bps_device"), ("throttleWriteBpsDevice", "write_bps_device"),
                       ("throttleReadIOPSDevice", "read_iops_device"),
                       ("throttleWriteIOPSDevice", "write_iops_device")):
        for f, ma, mi, e in dev_entries(F + "." + key, bio.get(key), "rate"):
            v = want_int(f + ".rate", e["rate"], 0, U64_MAX)
            ops.append(("blkio", "blkio.throttle." + fname, f"{ma}:{mi} {v}", f + ".rate"))


def _blkio_weight(kind, value, field):
    # CFQ exposes blkio.weight{,_device}; with BFQ (and no CFQ) only blkio.bfq.weight{,_device} exist.
    def run(d, mgr):
        import os
        fname = "blkio." + kind
        if not os.path.exists(d + "/" + fname) and os.path.exists(d + "/blkio.bfq." + kind):
            fname = "blkio.bfq." + kind
        try:
            write_file(d, fname, value)
        except OSError as e:
            raise err_write(field, fname, value, e) from None
    return run


def _plan_pids(res, ops):
    """pids.limit -> pids.max on both versions (negative: no limit)."""
    pids = want_obj(RES + ".pids", res.get("pids"))
    if _set(pids, "limit"):
        v = want_int(RES + ".pids.limit", pids["limit"])
        ops.append(("pids", "pids.max", "max" if v < 0 else str(v), RES + ".pids.limit"))


def _plan_hugetlb(res, ops, writer):
    """hugepageLimits, validated the same way on both versions; `writer` makes the version's file writes."""
    for i, h in enumerate(want_list(RES + ".hugepageLimits", res.get("hugepageLimits"))):
        f = f"{RES}.hugepageLimits[{i}]"
        if not isinstance(h, dict):
            raise CgroupError(f"{f}: must be an object")
        label, _n = page_size(f + ".pageSize", h.get("pageSize"))
        if "limit" not in h:
            raise CgroupError(f"{f}.limit: required")
        lim = str(want_int(f + ".limit", h["limit"], 0, U64_MAX))
        ops.append(("hugetlb", None, writer(label, lim, f), f))


def _hugetlb(label, limit, field, suffix):
    """hugetlb.<size>.<suffix> and, where the kernel has it, the matching .rsvd. file (v1: limit_in_bytes,
    v2: max); the op carries .hugetlb so a hybrid host can move it to the cgroup2 hierarchy."""
    def run(d, mgr):
        import os
        for fname in (f"hugetlb.{label}.{suffix}", f"hugetlb.{label}.rsvd.{suffix}"):
            if "rsvd" in fname and not os.path.exists(d + "/" + fname):
                continue
            try:
                write_file(d, fname, limit)
            except OSError as e:
                raise err_write(field + ".limit", fname, limit, e) from None
    run.hugetlb = (label, limit)
    return run


def _hugetlb_v1(label, limit, field):
    return _hugetlb(label, limit, field, "limit_in_bytes")


def _rdma_lines(rdma):
    F = RES + ".rdma"
    rdma = want_obj(F, rdma)
    out = []
    for dev in sorted(rdma):
        e = rdma[dev]
        f = f"{F}.{dev}"
        if not isinstance(e, dict):
            raise CgroupError(f"{f}: must be an object")
        parts = [dev]
        if e.get("hcaHandles") is not None:
            parts.append(f"hca_handle={want_int(f + '.hcaHandles', e['hcaHandles'], 0, 0xFFFFFFFF)}")
        if e.get("hcaObjects") is not None:
            parts.append(f"hca_object={want_int(f + '.hcaObjects', e['hcaObjects'], 0, 0xFFFFFFFF)}")
        if len(parts) == 1:
            raise CgroupError(f"{f}: needs hcaHandles or hcaObjects")
        out.append((f, " ".join(parts)))
    return out


# ================================================================================================ v2

def shares_to_weight(shares):
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_weight_to_io(weight):
    if weight == 0:
        return 0
    return 1 + (weight - 10) * 9999 // 990


def swap_v2(limit, swap):
    """spec swap (memory+swap) -> memory.swap.max, or None when not to be written."""
    F = RES + ".memory.swap"
    if limit == -1 and swap == 0:
        return "max"
    if swap == -1:
        return "max"
    if swap == 0:
        return None
    if limit in (0, -1):
        raise CgroupError(f"{F}: a swap limit needs a memory limit (memory.limit)")
    if swap < limit:
        raise CgroupError(f"{F}: memory+swap limit ({swap}) must not be lower than the memory limit ({limit})")
    return str(swap - limit)


def _max(v):
    return "max" if v == -1 else str(v)


def plan_v2(res, update=False):
    ops = []
    res = want_obj(RES, res)
    F = RES + ".cpu"
    cpu = want_obj(F, res.get("cpu"))
    # cpuset
    if _set(cpu, "cpus"):
        ops.append(("cpuset", "cpuset.cpus", cpu_list(F + ".cpus", cpu["cpus"]), F + ".cpus"))
    if _set(cpu, "mems"):
        ops.append(("cpuset", "cpuset.mems", cpu_list(F + ".mems", cpu["mems"]), F + ".mems"))
    # memory
    M = RES + ".memory"
    mem = want_obj(M, res.get("memory"))
    limit, swap = _memory_limit_swap(mem, M)
    sw = swap_v2(limit, swap) if (limit or swap) else None
    if sw is not None:
        ops.append(("memory", "memory.swap.max", sw, M + ".swap"))
    if limit:
        if update and mem.get("checkBeforeUpdate") is True and limit > 0:
            ops.append(("memory", None, _check_usage_v2(limit), M + ".checkBeforeUpdate"))
        ops.append(("memory", "memory.max", _max(limit), M + ".limit"))
    if _nz(mem, "reservation"):
        v = want_int(M + ".reservation", mem["reservation"], -1, I64_MAX)
        ops.append(("memory", "memory.low", _max(v), M + ".reservation"))
    if _set(mem, "swappiness"):
        want_int(M + ".swappiness", mem["swappiness"], 0, 100)
        raise CgroupError(f"{M}.swappiness: not supported on cgroup v2 (no memory.swappiness file)")
    if mem.get("disableOOMKiller") is True:
        raise CgroupError(f"{M}.disableOOMKiller: not supported on cgroup v2 (no memory.oom_control file)")
    if _set(mem, "useHierarchy"):
        want_bool(M + ".useHierarchy", mem["useHierarchy"])     # v2 is always hierarchical
    for k in ("kernel", "kernelTCP"):
        if _set(mem, k):
            want_int(f"{M}.{k}", mem[k], -1, I64_MAX)              # ignored: accounted in memory.max on v2
    # cpu
    shares = _cpu_shares(cpu, F)
    if shares is not None:
        ops.append(("cpu", "cpu.weight", str(shares_to_weight(shares)), F + ".shares"))
    quota, period, burst = _cpu_quota_period_burst(cpu, F)
    if quota or period:
        v = ("max" if quota <= 0 else str(quota)) + (f" {period}" if period else "")
        ops.append(("cpu", None, _cpu_max_v2(v, burst), F + (".quota" if quota else ".period")))
    elif burst is not None:
        ops.append(("cpu", "cpu.max.burst", str(burst), F + ".burst"))
    for k in ("realtimePeriod", "realtimeRuntime"):
        if _nz(cpu, k):
            raise CgroupError(f"{F}.{k}: not supported on cgroup v2 (no realtime group scheduling)")
    _int_op(ops, cpu, F, "idle", "cpu", "cpu.idle", 0, 1, when=_set)
    # pids
    _plan_pids(res, ops)
    # io
    _plan_io_v2(want_obj(RES + ".blockIO", res.get("blockIO")), ops)
    # hugetlb
    _plan_hugetlb(res, ops, hugetlb_v2)
    # network
    net = want_obj(RES + ".network", res.get("network"))
    if _set(net, "classID") or net.get("priorities"):
        raise CgroupError(f"{RES}.network: not supported on cgroup v2 (no net_cls/net_prio controllers)")
    # rdma
    ops.extend(("rdma", "rdma.max", line, f) for f, line in _rdma_lines(res.get("rdma")))
    # unified: last, so it can override the conversions above
    uni = want_obj(RES + ".unified", res.get("unified"))
    for k in sorted(uni):
        f = f"{RES}.unified.{k}"
        v = want_str(f, uni[k])
        if not k or "/" in k or k in (".", "..") or "." not in k:
            raise CgroupError(f"{f}: {k!r} is not a cgroup v2 file name")
        ctrl = k.split(".", 1)[0]
        ops.append(("" if ctrl == "cgroup" else ctrl, k, v, f))
    return ops


def _check_usage_v2(limit):
    def run(d, mgr):
        usage = to_int(_try(d, "memory.current"))
        if usage is not None and usage > limit:
            raise CgroupError(f"{RES}.memory.limit: new limit {limit} is below the current usage {usage} "
                              "(memory.current; checkBeforeUpdate is set)")
    return run


def _cpu_max_v2(value, burst):
    F = RES + ".cpu"

    def run(d, mgr):
        try:
            write_file(d, "cpu.max", value)
        except OSError as e:
            # A lower quota may conflict with the current burst: set the burst first, then retry.
            if burst is None or e.errno != 22:
                raise err_write(F + ".quota", "cpu.max", value, e) from None
            try:
                write_file(d, "cpu.max.burst", str(burst))
                write_file(d, "cpu.max", value)
            except OSError as e2:
                raise err_write(F + ".quota", "cpu.max", value, e2) from None
            return
        if burst is not None:
            try:
                write_file(d, "cpu.max.burst", str(burst))
            except OSError as e:
                raise err_write(F + ".burst", "cpu.max.burst", str(burst), e) from None
    return run


def _plan_io_v2(bio, ops):
    F = RES + ".blockIO"
    if _nz(bio, "leafWeight"):
        raise CgroupError(f"{F}.leafWeight: not supported on cgroup v2")
    if _nz(bio, "weight"):
        v = want_int(F + ".weight", bio["weight"], 1, 1000)
        ops.append(("io", None, _io_weight("", v, F + ".weight"), F + ".weight"))
    for f, ma, mi, e in dev_entries(F + ".weightDevice", bio.get("weightDevice"), None):
        if e.get("weight") is None and e.get("leafWeight") is None:
            raise CgroupError(f"{f}: needs weight or leafWeight")
        if _nz(e, "leafWeight"):
            raise CgroupError(f"{f}.leafWeight: not supported on cgroup v2")
        if _nz(e, "weight"):
            v = want_int(f + ".weight", e["weight"], 1, 1000)
            ops.append(("io", None, _io_weight(f"{ma}:{mi} ", v, f + ".weight"), f + ".weight"))
    for key, k in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                   ("throttleReadIOPSDevice", "riops"), ("throttleWriteIOPSDevice", "wiops")):
        for f, ma, mi, e in dev_entries(F + "." + key, bio.get(key), "rate"):
            v = want_int(f + ".rate", e["rate"], 0, U64_MAX)
            ops.append(("io", "io.max", f"{ma}:{mi} {k}={v if v else 'max'}", f + ".rate"))


def _io_weight(prefix, weight, field):
    # BFQ takes the blkio weight as is (1-1000); the generic io.weight is 1-10000.
    def run(d, mgr):
        import os
        if os.path.exists(d + "/io.bfq.weight"):
            fname, value = "io.bfq.weight", f"{prefix}{weight}"
        else:
            fname, value = "io.weight", f"{prefix}{blkio_weight_to_io(weight)}"
            if not prefix:
                value = f"default {value}"
        try:
            write_file(d, fname, value)
        except OSError as e:
            raise err_write(field, fname, value, e) from None
    return run


def hugetlb_v2(label, limit, field):
    return _hugetlb(label, limit, field, "max")
