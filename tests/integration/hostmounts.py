"""The host's mount table as the integration helpers read it (conftest's leak checker, the rootfs helpers and
the podman, Docker and containerd harnesses). Standard library only: the engine harnesses also run as scripts."""
def unescape(field):
    """A mountinfo field with its octal escapes (\\040 for a space, ...) decoded."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and len(field[i + 1:i + 4]) == 3 and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def read_mounts():
    """[(mount_id, mount_point, fstype, source)] of this mount namespace."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.rstrip("\n").partition(" - ")
            a, b = left.split(), right.split()
            out.append((a[0], unescape(a[4]), b[0] if b else "", unescape(b[1]) if len(b) > 1 else ""))
    return out


def has_overlay():
    """True when the kernel offers overlayfs (/proc/filesystems)."""
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1] == "overlay" for line in f if line.strip())
    except OSError:
        return False

