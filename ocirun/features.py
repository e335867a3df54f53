"""`ocirun features` (runtime-spec features.md): what this build really supports, nothing more."""
from .version import SPEC_VERSION, __version__


def libseccomp_version():
    """libseccomp's runtime version, or None if it is not installed."""
    import ctypes

    class _V(ctypes.Structure):
        _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]

    for name in ("libseccomp.so.2", "libseccomp.so"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.seccomp_version.restype = ctypes.POINTER(_V)
        v = lib.seccomp_version().contents
        return f"{v.major}.{v.minor}.{v.micro}"
    return None


def features():
    from . import capabilities, mounts, seccomp

    opts = sorted(set(mounts.FLAGS) | set(mounts.PROPAGATION) | set(mounts.REC_ATTRS) | set(mounts.EXTENSIONS))
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": SPEC_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": opts,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": list(capabilities.NAMES),
            "cgroup": {"v1": True, "v2": True, "systemd": True, "systemdUser": True, "rdma": True},
            "seccomp": seccomp.features(),
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": True}},
        },
        "annotations": {"io.github.ocirun.version": __version__,
                        "io.github.ocirun.libseccomp.version": libseccomp_version() or ""},
    }
