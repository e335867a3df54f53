"""seccomp via libseccomp (pyseccomp). Placeholder until the process-security issue: refuses clearly."""
from .errors import OciError


def prepare(seccomp_cfg, creator):
    """Compile linux.seccomp into a filter object with .load(); called before pivot_root/setns(mnt)."""
    raise OciError("linux.seccomp: seccomp filters are not supported by this ocirun build yet")
