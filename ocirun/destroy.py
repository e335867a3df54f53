"""What `delete` removes (runtime.md lifecycle steps 11-13): the container's processes, its cgroups, the mounts
it made in the host's mount namespace (no mount namespace of its own), its state; then the poststop hooks.
`create` uses the same pieces to undo a create that failed half-way."""
import os

from . import config as C
from . import state as St
from . import syscalls as S
from .errors import OciError

SIGKILL = 9


def mounts_under(rootfs):
    """Mounts at or below `rootfs` in our mount namespace, as "ID PATH" (the mount id tells a mount made over
    one that was there before)."""
    from .cgroups.common import _unescape

    top = rootfs.rstrip("/")
    prefix = top + "/"
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            mp = _unescape(parts[4])
            if mp == top or mp.startswith(prefix):
                out.append(f"{parts[0]} {mp}")
    return out


def umount_host_mounts(rootfs, before):
    """A container without a mount namespace made its mounts in the host's, at or below its rootfs: remove
    those (the deepest first, detached), leaving any that were there before create."""
    if not rootfs:
        return
    keep = set(before)
    left = []
    made = [m.split(" ", 1) for m in set(mounts_under(rootfs)) - keep]
    for _, mp in sorted(made, key=lambda m: (m[1].count("/"), int(m[0])), reverse=True):
        try:
            S.SYS.umount2(mp, S.MNT_DETACH)
        except OSError as e:
            if e.errno != 22:  # EINVAL: already gone with its parent
                left.append(f"{mp} ({os.strerror(e.errno)})")
    if left:
        raise OciError("cannot unmount the container's mounts on the host: " + ", ".join(left))


def cgroup_from(st):
    d = (st or {}).get("cgroup")
    if not d:
        return None
    from . import cgroups

    mgr = cgroups.manager_from_dict(d)
    # directories create was about to make when it was interrupted (recorded before the mkdir): ours too
    mgr.created = list(mgr.created) + [x for x in (st.get("cgroup_pending") or ()) if x not in mgr.created]
    return mgr


def kill_wait(pid, start_time, timeout=5.0):
    """SIGKILL a process that is not our child and wait until it is gone (or a zombie)."""
    import time

    try:
        os.kill(pid, SIGKILL)
    except ProcessLookupError:
        return
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        t = St.proc_start_time(pid)
        if t is None or (start_time is not None and t != start_time):
            return
        time.sleep(0.002)


def destroy(store, cid, st, status):
    """Remove everything the container owns: its processes, cgroups, state; then poststop hooks."""
    errors = []
    if st is not None:
        # The init and (for a create that was killed) stage 1: signalled only if still the same process.
        for key, tkey in (("pid", "init_start_time"), ("stage1", "stage1_start_time")):
            pid = st.get(key) or 0
            if pid > 0 and st.get(tkey) is not None and St.proc_start_time(pid) == st.get(tkey):
                kill_wait(pid, st.get(tkey))
        try:
            mgr = cgroup_from(st)
            if mgr is not None:
                mgr.destroy()
        except Exception as e:  # keep going: the state must still go
            errors.append(f"cgroup: {e}")
    if st is not None and st.get("host_mnt_ns"):
        try:
            umount_host_mounts(st.get("rootfs") or "", st.get("host_mounts_before") or ())
        except OciError as e:
            errors.append(str(e))
    poststop = None
    if st is not None and st.get("config", {}).get("hooks", {}).get("poststop"):
        poststop = st
    store.remove(cid)
    if poststop is not None:
        from . import hooks

        cfg = C.parse(poststop["config"])
        hooks.run_hooks("poststop", cfg.hooks.poststop, hooks.hook_state(poststop, "stopped"), keep_going=True)
    if errors:
        raise OciError(f"container {cid} deleted, but: " + "; ".join(errors))


def poststart(st, store, cid):
    """runtime.md: if a poststart hook fails, the runtime MUST generate an error, stop the container and
    continue the lifecycle at step 12 (destroy, then poststop hooks)."""
    cfgd = st.get("config") or {}
    if (cfgd.get("hooks") or {}).get("poststart"):
        from . import hooks

        cfg = C.parse(cfgd)
        try:
            hooks.run_hooks("poststart", cfg.hooks.poststart, hooks.hook_state(st, "running"))
        except OciError as e:
            destroy(store, cid, st, "running")
            raise OciError(f"container {cid} stopped: {e}") from None
