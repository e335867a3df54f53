"""ocirun: an OCI runtime-spec v1.3 container runtime in Python.

The public Python API is `ocirun.Container` (imported lazily so the CLI's hot path stays light).
"""
from .version import __version__, SPEC_VERSION  # noqa: F401


def __getattr__(name):
    if name == "Container":
        from .container import Container
        return Container
    raise AttributeError(name)
