"""Device access rules (linux.resources.devices).

The rules are evaluated the way the v1 devices controller does, starting from *deny all* (runc's behaviour: a
container never inherits the host's "a *:* rwm"), in the listed order, followed by the default allow-list below
(the same set runc appends: mknod of anything, /dev/null, zero, full, random, urandom, tty, ptmx, pts, tun).

The result ("model") is: default_allow (bool) + exceptions {(type, major, minor): perms}, kept in the order the rules
made them. For v1 it is turned into the writes to devices.deny / devices.allow in that order (the listed order);
for v2 the same model is what an eBPF device program (bpf.py) must enforce.
"""
from . import CgroupError
from .common import RES

FIELD = RES + ".devices"

# (type, major, minor, access); -1 is the wildcard.
DEFAULT_ALLOWED = (
    ("c", -1, -1, "m"),
    ("b", -1, -1, "m"),
    ("c", 1, 3, "rwm"),     # /dev/null
    ("c", 1, 8, "rwm"),     # /dev/random
    ("c", 1, 7, "rwm"),     # /dev/full
    ("c", 5, 0, "rwm"),     # /dev/tty
    ("c", 1, 5, "rwm"),     # /dev/zero
    ("c", 1, 9, "rwm"),     # /dev/urandom
    ("c", 136, -1, "rwm"),  # /dev/pts/*
    ("c", 5, 2, "rwm"),     # /dev/ptmx
    ("c", 10, 200, "rwm"),  # /dev/net/tun
)

_ORDER = "rwm"


def _perms(s):
    return "".join(c for c in _ORDER if c in s)


def parse_rules(rules, field=FIELD):
    """Validate the spec entries -> list of (allow, type, major, minor, access)."""
    if rules is None:
        return []
    if not isinstance(rules, list):
        raise CgroupError(f"{field}: must be an array")
    out = []
    for i, r in enumerate(rules):
        f = f"{field}[{i}]"
        if not isinstance(r, dict):
            raise CgroupError(f"{f}: must be an object")
        allow = r.get("allow")
        if not isinstance(allow, bool):
            raise CgroupError(f"{f}.allow: required boolean")
        t = r.get("type") or "a"
        if t not in ("a", "b", "c"):
            raise CgroupError(f"{f}.type: {t!r} is not one of a, b, c")
        mm = []
        for k in ("major", "minor"):
            v = r.get(k)
            if v is None:
                v = -1
            elif isinstance(v, bool) or not isinstance(v, int) or v < -1 or v > 0xFFFFFFFF:
                raise CgroupError(f"{f}.{k}: {v!r} is not a device number")
            mm.append(v)
        access = r.get("access")
        if not isinstance(access, str):
            # runc (specconv): "device access at N field cannot be empty", for a missing one too
            raise CgroupError(f"{f}.access: required (a combination of r, w, m)" if access is None else
                              f"{f}.access: must be a string")
        if not access:
            raise CgroupError(f"{f}.access: must not be empty (a combination of r, w, m)")
        # Letters other than r, w, m are ignored, as runc does (its Permissions set operations drop them):
        # "rwa" is "rw". A rule left with none is kept as an exception granting nothing (see Model.void).
        out.append((allow, t, mm[0], mm[1], _perms(access), f))
    return out


class Model:
    """The effective state of a devices cgroup: default policy + exceptions."""

    __slots__ = ("default_allow", "rules", "origin")

    def __init__(self, default_allow=False, rules=None):
        self.default_allow = default_allow
        self.rules = dict(rules or {})
        self.origin = {}    # key -> the field of the rule that made an exception granting nothing (void())

    def apply(self, allow, t, major, minor, access, field=FIELD):
        if t == "a":
            # "a" resets: allow-all (blacklist mode) or deny-all (whitelist mode), whatever major/minor say.
            self.default_allow = allow
            self.rules = {}
            self.origin = {}
            return
        key = (t, major, minor)
        if allow != self.default_allow:
            self.rules[key] = _perms(self.rules.get(key, "") + access)
            if not self.rules[key]:
                self.origin.setdefault(key, field)
            return
        # Removing (part of) an exception. The kernel only removes exact matches: a wildcard exception that
        # covers this device would stay in force, so refuse instead of silently not doing what was asked.
        for wk in ((t, -1, minor), (t, major, -1), (t, -1, -1)):
            if wk != key and set(self.rules.get(wk, "")) & set(access):
                kind = "allow" if not self.default_allow else "deny"
                raise CgroupError(f"{field}: cannot {'deny' if allow is False else 'allow'} {rule_str(t, major, minor, access)}: "
                                  f"an earlier wildcard {kind} rule {rule_str(*wk, self.rules[wk])} covers it "
                                  "(cgroup v1 cannot punch a hole in a wildcard rule)")
        left = "".join(c for c in self.rules.get(key, "") if c not in access)
        if left:
            self.rules[key] = left
        else:
            self.rules.pop(key, None)
            self.origin.pop(key, None)

    def entries(self):
        """Exceptions in a stable order: (major, minor, type), wildcards first (those granting nothing left out)."""
        return sorted(((k, p) for k, p in self.rules.items() if p), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0]))

    def ordered(self):
        """Exceptions in the order the rules first made them: config.json's order, then the default allow-list
        (config-linux.md: "The runtime MUST apply entries in the listed order"; the v1 controller lists its
        exceptions in the order they were written, and runtime-tools checks devices.list against the config)."""
        return [(k, p) for k, p in self.rules.items() if p]

    def void(self):
        """[(field, key)] for the allow exceptions (in whitelist mode) whose access named none of r, w, m. The
        v1 controller cannot hold such an exception; runc refuses them there (its check of devices.list after
        the writes fails: "resulting devices cgroup doesn't precisely match target"), and on cgroup v2 its
        program simply has no rule for them. Deny exceptions granting nothing (blacklist mode) are accepted on
        both, as runc only checks the mode of a blacklist."""
        if self.default_allow:
            return []
        return [(self.origin.get(k, FIELD), k) for k, p in self.rules.items() if not p]

    def __eq__(self, other):
        return isinstance(other, Model) and self.default_allow == other.default_allow and self.rules == other.rules

    def to_list(self):
        return [self.default_allow, [[t, ma, mi, p] for (t, ma, mi), p in self.entries()]]


def rule_str(t, major, minor, access):
    return f"{t} {'*' if major == -1 else major}:{'*' if minor == -1 else minor} {access}"


def build(rules, default_devices=True):
    """Spec rules (raw list) -> Model, starting from deny-all, default allow-list appended."""
    m = Model(False)
    for allow, t, ma, mi, acc, f in parse_rules(rules):
        m.apply(allow, t, ma, mi, acc, f)
    if default_devices:
        for t, ma, mi, acc in DEFAULT_ALLOWED:
            m.apply(True, t, ma, mi, acc, FIELD + " (default devices)")
    return m


def from_list(text):
    """devices.list -> Model. A listing of "a *:* rwm" means allow-all (deny exceptions are not listed by the
    kernel in that mode)."""
    m = Model(False)
    for line in text.splitlines():
        parts = line.replace(":", " ").split()
        if len(parts) != 4:
            continue
        t, ma, mi, acc = parts
        if t == "a":
            m = Model(True)
            continue
        m.rules[(t, -1 if ma == "*" else int(ma), -1 if mi == "*" else int(mi))] = _perms(acc)
    return m


def transition(target, current=None):
    """The (file, line) writes that take a devices cgroup from `current` (None: unknown or allow-all, e.g. freshly
    created under the root) to `target`."""
    writes = []
    old = {}
    if current is None or current.default_allow or current.default_allow != target.default_allow:
        writes.append(("devices.allow" if target.default_allow else "devices.deny", "a *:* rwm"))
    else:
        old = current.rules
        for key, perms in sorted(old.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
            drop = "".join(c for c in perms if c not in target.rules.get(key, ""))
            if drop:
                writes.append(("devices.allow" if target.default_allow else "devices.deny", rule_str(*key, drop)))
    for key, perms in target.ordered():
        gain = "".join(c for c in perms if c not in old.get(key, ""))
        if gain:
            writes.append(("devices.deny" if target.default_allow else "devices.allow", rule_str(*key, gain)))
    return writes


def is_allow_all(model):
    return model.default_allow and not model.entries()


def check_v1(model):
    """Refuse what the cgroup v1 devices controller cannot hold (as runc does on v1): see Model.void()."""
    for field, key in model.void():
        raise CgroupError(f"{field}.access: names none of r, w, m: an allow rule for {rule_str(*key, '').rstrip()} "
                          "that grants nothing cannot be written to the cgroup v1 devices controller")
