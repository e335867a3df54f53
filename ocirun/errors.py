"""Errors ocirun reports to the user: one line each, no traceback."""


class OciError(Exception):
    """A user-facing error. str(err) is the one-line message printed after 'ocirun: '."""

    exit_code = 1


class ConfigError(OciError):
    """config.json is malformed or violates the schema. `problems` holds one line per violation."""

    def __init__(self, problems, prefix="config.json"):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        self.prefix = prefix
        super().__init__("\n".join(f"{prefix}: {p}" if prefix else p for p in self.problems))


class UsageError(OciError):
    """Bad command line (runc prints usage and exits 1)."""


class NotFoundError(OciError):
    pass


class StateError(OciError):
    pass
