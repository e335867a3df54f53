"""Rootless mode, as runc defines it (RootlessEUID): ocirun run by a user whose euid is not 0. Imported only
then (never on root's hot path).

What differs from a root run:
  * the config must give the container a user namespace with mappings (runc's validate/rootless.go), no
    `uid=`/`gid=` mount option for an id it does not map, no additional groups (checks below);
  * the parent, unprivileged, maps the new user namespace (write_id_mappings): a single mapping of the
    caller's own uid and gid is written directly (with /proc/PID/setgroups "deny" first, as the kernel requires
    of an unprivileged gid_map write); anything else goes through the setuid helpers newuidmap/newgidmap
    (Debian's uidmap), which check /etc/subuid and /etc/subgid;
  * the init opens bind sources itself (no mount sources from the parent: it could not join the container's
    mount namespace), does not set supplementary groups, and mknod is never tried (devices are bind mounts of
    the host's nodes, as in any user namespace);
  * cgroups: the rootless cgroup manager (cgroups.ROOTLESS), also used by root of a user namespace;
  * what needs the host's privileges fails as the kernel says: oom_score_adj below the current value, rlimits
    above the hard limit, sysctls outside the container's own namespaces.
  * the bundle must be the caller's (check_bundle), as must the state root and every container's state
    directory (state.check_owner).
"""
import os

from .errors import OciError


def active():
    """runc's RootlessEUID."""
    return os.geteuid() != 0


def check_config(cfg, plan):
    """runc's rootlessEUID validation, plus its setupUser refusal of additional groups (made here, before
    anything exists: runc makes it in the init)."""
    lin = cfg.linux
    if not plan.in_user:
        raise OciError("config.json: /linux/namespaces: rootless container requires user namespaces (ocirun is "
                       "running as uid %d; add {\"type\": \"user\"} with uidMappings and gidMappings, or see "
                       "`ocirun spec --rootless`)" % os.geteuid())
    if not (lin and lin.uid_mappings):
        raise OciError("config.json: /linux/uidMappings: rootless containers requires at least one UID mapping")
    if not lin.gid_mappings:
        raise OciError("config.json: /linux/gidMappings: rootless containers requires at least one GID mapping")
    from .namespaces import maps_contain

    for i, m in enumerate(cfg.mounts):
        for opt in m.options or ():
            for key, maps, what in (("uid=", lin.uid_mappings, "uid"), ("gid=", lin.gid_mappings, "gid")):
                if not opt.startswith(key):
                    continue
                v = opt[len(key):]
                if not (v.isascii() and v.isdigit()):
                    continue  # runc: unknown mount options are ignored here
                if not maps_contain(maps, int(v)):
                    raise OciError(f"config.json: /mounts/{i}/options: cannot specify {what}= mount options for "
                                   f"unmapped {what} in rootless containers ({opt})")
    check_additional_gids(cfg.process)


def check_additional_gids(proc, where="config.json: /process/user/additionalGids"):
    if proc is not None and proc.user is not None and proc.user.additional_gids:
        raise OciError(f"{where}: cannot set any additional groups in a rootless container")


def check_bundle(bundle, config_path):
    """The bundle directory and its config.json must be the caller's (or root's), and writable by no one
    else: a config.json's hooks run on the host as the caller, so a bundle another user can change is code
    that user runs as the caller. (runc does not check: spec/EXTENSIONS.md.)"""
    euid = os.geteuid()
    for path, what in ((bundle, "bundle"), (config_path, "config.json")):
        try:
            st = os.stat(path)
        except OSError:
            return  # (the normal checks report a missing bundle or config)
        if st.st_uid not in (euid, 0):
            raise OciError(f"{what} {path}: owned by uid {st.st_uid}, not by the caller (uid {euid}) or root: "
                           f"refusing to run a bundle another user controls")
        if st.st_mode & 0o022:
            raise OciError(f"{what} {path}: writable by its group or others (mode {st.st_mode & 0o7777:04o}): "
                           f"refusing to run a bundle another user can change")


def _single_own(maps, own):
    return len(maps) == 1 and maps[0].container_id == 0 and maps[0].host_id == own and maps[0].size == 1


def write_id_mappings(pid, plan):
    """Parent side, unprivileged (runc's nsexec for a rootless euid): setgroups "deny" when the gid mapping is
    exactly the caller's own gid as 0 (the kernel allows an unprivileged gid_map write only then); each map
    written directly, and through newuidmap/newgidmap when the kernel refuses (EPERM: ids not the caller's)."""
    if _single_own(plan.gid_mappings, os.getegid()):
        try:
            with open(f"/proc/{pid}/setgroups", "w") as f:
                f.write("deny")
        except FileNotFoundError:
            pass
        except OSError as e:
            raise OciError(f"linux.gidMappings: cannot write 'deny' to /proc/{pid}/setgroups: {e.strerror}") from None
    for name, maps, key, tool in (("uid_map", plan.uid_mappings, "uidMappings", "newuidmap"),
                                  ("gid_map", plan.gid_mappings, "gidMappings", "newgidmap")):
        if not maps:
            continue
        from .namespaces import format_idmap

        try:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(format_idmap(maps))
            continue
        except OSError as e:
            if e.errno != 1:  # not EPERM: the mapping tool would not help
                raise OciError(f"linux.{key}: cannot write /proc/{pid}/{name}: {e.strerror}") from None
        _map_with_tool(tool, pid, maps, key)


def _map_with_tool(tool, pid, maps, key):
    import shutil

    path = shutil.which(tool)
    if path is None:
        raise OciError(f"linux.{key}: mapping ids other than your own needs {tool}, which is not installed "
                       f"(Debian: apt-get install uidmap), with ranges for you in /etc/sub{key[:3]}")
    argv = [tool, str(pid)]
    for m in maps:
        argv += [str(m.container_id), str(m.host_id), str(m.size)]
    from .namespaces import _run_tool

    rc, err = _run_tool([path] + argv[1:])
    if rc != 0:
        raise OciError(f"linux.{key}: {tool} {' '.join(argv[1:])} failed: {err or f'exit status {rc}'} "
                       f"(the ranges must be yours in /etc/sub{key[:3]})")
