"""What `create` checks before anything exists on the host, beyond the schema and runc's semantic checks
(validate.py, semantics.py, run by config.load): what needs this host, this bundle and the command's flags.
`ocirun check` runs the same steps (create.Creator.load), so the two never disagree."""
import os

from . import config as C
from . import namespaces
from .errors import OciError
from .version import SPEC_VERSION


def read_config(bundle, start):
    """(config, no_process). config.md: `process` is OPTIONAL, "REQUIRED when start is called"; runtime.md: start
    "MUST generate an error if process was not set". So create builds the container without one (the init
    waits as for any create) and start refuses it. runc refuses the create instead (an intended difference)."""
    cfg = C.load(os.path.join(bundle, "config.json"))
    no_process = cfg.process is None
    if no_process:
        if start:
            raise OciError("config.json: /process: no process to run (required by start; create accepts it)")
        # the init's set-up (cwd, oom score, affinity) reads these neutral values; nothing is executed
        cfg.process = C.parse({"ociVersion": SPEC_VERSION, "process": {"cwd": "/", "args": []}}).process
    if cfg.root is None:
        raise OciError("config.json: /root: a root filesystem is required on Linux")
    return cfg, no_process


def rootfs_path(cfg, bundle):
    path = cfg.root.path
    if not os.path.isabs(path):
        path = os.path.join(bundle, path)
    path = os.path.realpath(path)
    if not os.path.isdir(path):
        raise OciError(f"config.json: /root/path: rootfs {path} does not exist or is not a directory")
    return path


def check_namespaces(cfg, lin):
    """What needs a namespace the config does not give. Returns True when the container has no mount namespace
    of its own: config-linux.md says a namespace type that is not listed MUST be inherited from the runtime, so
    its mounts are made in ours (the host's) under the rootfs and the process is chrooted there, as runc does;
    delete unmounts them again (runc leaves them on the host)."""
    from . import hostcheck

    present = {n.type for n in lin.namespaces}
    if cfg.hostname and "uts" not in present:
        raise OciError("config.json: /hostname: setting the hostname needs a uts namespace")
    if cfg.domainname and "uts" not in present:
        raise OciError("config.json: /domainname: setting the domainname needs a uts namespace")
    if lin.intel_rdt is not None and not hostcheck.resctrl_mounted():
        raise OciError("config.json: /linux/intelRdt: resctrl is not mounted on this host (/sys/fs/resctrl)")
    return "mount" not in present


def check_new_namespaces(cfg, lin, plan):
    """Network devices need a new network namespace; the process's ids must be mapped in a new user one."""
    if lin.net_devices and "network" not in plan.new:
        raise OciError("config.json: /linux/netDevices: moving network devices needs a new network namespace")
    if plan.new_user:
        u = cfg.process.user
        if not namespaces.maps_contain(plan.uid_mappings, u.uid):
            raise OciError(f"config.json: /process/user/uid: {u.uid} is not mapped in linux.uidMappings")
        if not namespaces.maps_contain(plan.gid_mappings, u.gid):
            raise OciError(f"config.json: /process/user/gid: {u.gid} is not mapped in linux.gidMappings")


def check_host_mount_ns(lin, opts, rootfs):
    """What needs a mount namespace of the container's own: refused (one line) when there is none. Returns the
    mounts under the rootfs before create (delete leaves those)."""
    from .destroy import mounts_under

    why = "needs a mount namespace of the container's own (none is listed in /linux/namespaces)"
    if lin.masked_paths:  # runc: "unable to restrict sys entries without a private MNT namespace"
        raise OciError(f"config.json: /linux/maskedPaths: {why}")
    if lin.readonly_paths:
        raise OciError(f"config.json: /linux/readonlyPaths: {why}")
    # runc would apply it to the host's own mounts. (root.readonly is honoured on a bind of the rootfs onto
    # itself, made by the init and removed by delete; runc ignores it without a mount namespace.)
    if lin.rootfs_propagation:
        raise OciError(f"config.json: /linux/rootfsPropagation: {why}")
    if opts.no_pivot:
        raise OciError(f"--no-pivot: {why}")
    return sorted(mounts_under(rootfs))


def check_process(proc, lin=None, warn=True):
    """A process's LSM labels, capabilities (what cannot be granted is left out, with a warning), rlimits and
    scheduling: create's process and exec's alike. Returns the resolved capability sets."""
    from . import capabilities, log, process

    if proc.apparmor_profile or proc.selinux_label or (lin is not None and lin.mount_label):
        from . import lsm

        lsm.check(proc, lin)
    caps = capabilities.resolve(proc.capabilities)
    capabilities.drop_unavailable(caps)
    capabilities.check_sets(caps)
    for w in caps.warnings if warn else ():
        log.warning(w)
    process.check_rlimits(proc.rlimits)
    process.check_scheduling(proc, lin)
    return caps


def socket_activation(cfg, opts):
    """systemd socket activation, as runc: LISTEN_FDS meant for us are passed on as fds 3.. of the
    container's process (before the --preserve-fds ones), with LISTEN_FDS=N and LISTEN_PID=1."""
    try:
        n = int(os.environ.get("LISTEN_FDS", "0"))
        mine = int(os.environ.get("LISTEN_PID", "0")) == os.getpid()
    except ValueError:
        return
    if n > 0 and mine:
        opts.preserve_fds += n
        cfg.process.env = [e for e in cfg.process.env if not e.startswith(("LISTEN_FDS=", "LISTEN_PID="))]
        cfg.process.env += [f"LISTEN_FDS={n}", "LISTEN_PID=1"]


def notify_socket(cfg):
    """sd_notify containers: the NOTIFY_SOCKET ocirun was given is bind-mounted into the container at
    /run/notify/notify.sock and named in its environment (abstract sockets cannot be passed this way)."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path or path.startswith("@"):
        return
    import stat

    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return
    except OSError:
        return
    dest = "/run/notify/notify.sock"
    cfg.mounts.append(C.Mount(destination=dest, type="bind", source=path, options=["bind", "nosuid", "nodev"]))
    cfg.process.env = [e for e in cfg.process.env if not e.startswith("NOTIFY_SOCKET=")]
    cfg.process.env.append(f"NOTIFY_SOCKET={dest}")


def check_terminal(cfg, opts):
    """process.terminal against --console-socket and --detach (runc's rules); a foreground -t takes the size
    of our terminal."""
    proc = cfg.process
    if proc.terminal and not opts.console_socket and proc.console_size is None:
        try:
            if os.isatty(0):
                from . import terminal

                proc.console_size = terminal.get_winsize(0)
        except OSError:
            pass
    if proc.terminal and not opts.console_socket and opts.detach:
        raise OciError("cannot allocate tty if ocirun will detach without setting console socket")
    if not proc.terminal and opts.console_socket:
        raise OciError("cannot use console socket if ocirun will not allocate tty")


def idmap_mounts(cfg, plan, bundle, rootfs):
    """Idmapped mounts, checked before the fork: {mount index: (uidMappings, gidMappings, ridmap)}, the
    mappings None where the mount takes the container's own user namespace (the mount names none: runc's
    implied mapping, also of a joined user namespace). The trees are made when the init reaches the mount
    (create.Creator._idmapped_source), so a source under the rootfs sees the container's earlier mounts."""
    out = {}
    for i, m in enumerate(cfg.mounts):
        ext = {"idmap", "ridmap"} & set(m.options or ())
        if not (m.uid_mappings or m.gid_mappings or ext):
            continue
        from . import mounts  # (only here: the parent does not need it otherwise)

        where = f"mounts[{i}] {m.destination}"
        if not mounts.MountOpts(m.options).is_bind and m.type not in ("bind", None):
            raise OciError(f"{where}: ID mappings are only supported on bind mounts")
        if m.uid_mappings or m.gid_mappings:
            if not (m.uid_mappings and m.gid_mappings):
                raise OciError(f"{where}: an idmapped mount needs both uidMappings and gidMappings")
            maps = (m.uid_mappings, m.gid_mappings)
        elif plan.new_user or plan.in_user:
            maps = (None, None)
        else:
            raise OciError(f"{where}: an idmapped mount needs uidMappings and gidMappings on the mount "
                           f"or a user namespace")
        src = m.source or ""
        if not os.path.isabs(src):
            src = os.path.join(bundle, src)
        inside = os.path.realpath(src).startswith(rootfs.rstrip("/") + "/")
        if not inside and not os.path.exists(src):  # (one inside may come from an earlier mount)
            raise OciError(f"{where}: source {m.source} does not exist")
        out[i] = (*maps, "ridmap" in (m.options or ()))
    return out
