"""/proc/PID/status as the integration tests read it, and capability numbers from linux/capability.h: an oracle
independent of ocirun's own table."""

CAP_NAMES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
CAP = {n: i for i, n in enumerate(CAP_NAMES)}
CAP_LINES = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")


def mask(names):
    """The capability bit mask of these names."""
    m = 0
    for n in names:
        m |= 1 << CAP[n]
    return m


def status_fields(text):
    """'Key:\\tvalue' lines (of /proc/PID/status) -> {key: value}."""
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out[k.strip()] = v.strip()
    return out


def caps_of(text):
    """{CapInh, CapPrm, CapEff, CapBnd, CapAmb: int} of a /proc/PID/status text."""
    st = status_fields(text)
    return {k: int(st[k], 16) for k in CAP_LINES}
