"""The systemd cgroup driver (`ocirun --systemd-cgroup`), as runc's (opencontainers/cgroups/systemd).

systemd owns the cgroup tree on such hosts; a container's cgroup is a transient scope unit that ocirun asks
systemd to make, over D-Bus:

  * linux.cgroupsPath is "slice:prefix:name" (runc's format). An empty slice is system.slice (user.slice for a
    rootless caller, on the user's own systemd); the unit is "<prefix>-<name>.scope". No cgroupsPath at all:
    ":ocirun:<container id>", so a container ocirun made by hand is "ocirun-<id>.scope" (runc's are "runc-<id>.scope").
    A slice "a-b.slice" is the cgroup /a.slice/a-b.slice (systemd makes the parent slices it needs); "-.slice" is
    the root.
  * create: the unit is refused when it exists and is active (another container's); a failed or inactive leftover
    is reset first (runc 1.2+). The scope is started with the init's pid, Slice=, Delegate=yes,
    DefaultDependencies=no, accounting on, and the properties of any "org.systemd.property.<Name>" annotation;
    create waits for systemd's job to finish (30 s, as runc). Then, on cgroup v1, the init joins the same path in
    every hierarchy systemd does not manage itself (freezer, cpuset, net_cls, ...), made by ocirun (runc's
    joinCgroups); on v2 the scope is the cgroup.
  * limits (create and update): the unit properties systemd has for them (v1: MemoryLimit, CPUShares,
    CPUQuotaPerSecUSec/CPUQuotaPeriodUSec, BlockIOWeight, TasksMax, AllowedCPUs/AllowedMemoryNodes, DevicePolicy/
    DeviceAllow; v2: MemoryMax/Low/SwapMax, CPUWeight, the same cpu, tasks, cpuset and device ones, and those
    linux.resources.unified keys systemd knows), so that systemd re-applying its unit never undoes them; then
    every limit is written to the cgroup files as the cgroupfs driver does (the same values: a cpu quota is
    rounded up to systemd's 10 ms granularity first, as runc does).
  * pause/resume, ps, kill --all, events/stats, exec: the cgroup files of the scope (as runc).
  * delete: the processes left are killed, the unit is stopped (waiting for systemd's job) and reset, and the
    directories ocirun made itself are removed.

The D-Bus client is jeepney (PyPI): pure Python with no dependencies and no C build (so the venv installs
anywhere python-prctl does), a blocking I/O API that suits a short-lived CLI, maintained, and small: about
15 ms to import, paid only by --systemd-cgroup (this module is imported only for it).
"""
import os
import re

from . import CgroupError
from . import common as C

SYSTEMD_DIR = "/run/systemd/system"
DEFAULT_PREFIX = "ocirun"
JOB_TIMEOUT = 30.0      # seconds to wait for systemd's start/stop job (runc: 30 s)
CALL_TIMEOUT = 25.0     # seconds to wait for a method reply (D-Bus' default)
_MAX = (1 << 64) - 1    # USEC_INFINITY / "infinity"
FIELD = "linux.cgroupsPath"
PROP_PREFIX = "org.systemd.property."


class SystemdError(CgroupError):
    """A one-line failure of the systemd driver."""


# ================================================================================================ names

def parse_path(cgroups_path, container_id, rootless=False):
    """linux.cgroupsPath -> (slice, unit). runc's rule: "slice:prefix:name", three parts exactly."""
    if not cgroups_path:
        slice_, prefix, name = "", DEFAULT_PREFIX, container_id
    else:
        parts = cgroups_path.split(":")
        if len(parts) != 3:
            raise SystemdError(f'{FIELD}: expected "slice:prefix:name" for the systemd cgroup driver, '
                               f'got {cgroups_path!r}')
        slice_, prefix, name = parts
    if not slice_:
        slice_ = "user.slice" if rootless else "system.slice"
    expand_slice(slice_)  # (validates)
    if not name:
        raise SystemdError(f"{FIELD}: {cgroups_path!r}: the name part is empty")
    if name.endswith(".slice"):
        # runc would make a slice unit and then fail to put the init in it (PIDs= is for scopes only)
        raise SystemdError(f"{FIELD}: {cgroups_path!r}: a container needs a scope unit, not a slice "
                           f"({name}); use a name without the .slice suffix")
    return slice_, f"{prefix}-{name}.scope"


def expand_slice(slice_):
    """"a-b-c.slice" -> "/a.slice/a-b.slice/a-b-c.slice" (systemd's naming of nested slices); "-.slice" -> "/"."""
    suffix = ".slice"
    if len(slice_) <= len(suffix) - 1 or not slice_.endswith(suffix) or "/" in slice_:
        raise SystemdError(f"{FIELD}: invalid slice name {slice_!r} (a systemd slice: NAME.slice, no '/')")
    base = slice_[:-len(suffix)]
    if base == "-":
        return "/"
    path, prefix = "", ""
    for comp in base.split("-"):
        if not comp:
            raise SystemdError(f"{FIELD}: invalid slice name {slice_!r} (empty part between dashes)")
        path += "/" + prefix + comp + suffix
        prefix += comp + "-"
    return path


# ================================================================================================ properties
# A property is (name, (dbus signature, value)), as StartTransientUnit / SetUnitProperties take them.

def _u64(v):
    return ("t", _MAX if v < 0 else v)


def range_to_bits(field, text):
    """"0-2,4" -> the byte mask systemd takes for AllowedCPUs/AllowedMemoryNodes (lowest cpu in the first byte)."""
    bits = 0
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise SystemdError(f"{field}: {text!r} is not a list of ranges") from None
        if a < 0 or b < a:
            raise SystemdError(f"{field}: {text!r}: invalid range {part!r}")
        for i in range(a, b + 1):
            bits |= 1 << i
    if not bits:
        raise SystemdError(f"{field}: {text!r} is empty")
    n = (bits.bit_length() + 7) // 8
    return bits.to_bytes(n, "little")


def cpu_quota(quota, period):
    """(properties, quota to write): runc's addCPUQuota. systemd keeps a quota per second in whole percents, so a
    fractional percentage is rounded up to 10 ms per second, and the files get the same rounded quota."""
    props = []
    if period:
        props.append(("CPUQuotaPeriodUSec", ("t", period)))
    if quota or period:
        per_sec = _MAX
        if quota > 0:
            p = period or 100000
            per_sec = quota * 1000000 // p
            if per_sec % 10000:
                per_sec = (per_sec // 10000 + 1) * 10000
                quota = per_sec * p // 1000000
        props.append(("CPUQuotaPerSecUSec", ("t", per_sec)))
    return props, quota


def device_props(model):
    """DevicePolicy/DeviceAllow for a devices.Model (runc's generateDeviceProperties): strict, the allow-list
    systemd can express; allow-all is policy auto; a deny-list (default allow with exceptions) cannot be said to
    systemd, which then denies all until the cgroup files are written (runc warns the same). Returns
    (props, warnings)."""
    from . import devices as D

    if model.default_allow:
        if not model.entries():
            return [("DevicePolicy", ("s", "auto")), ("DeviceAllow", ("a(ss)", []))], []
        return ([("DeviceAllow", ("a(ss)", [])), ("DevicePolicy", ("s", "strict"))],
                ["systemd has no device deny-list: the unit says deny-all, the cgroup files carry the rules"])
    allow, warns = [], []
    for (t, ma, mi), perms in model.ordered():
        kind = "char" if t == "c" else "block"
        if ma == -1:
            if mi != -1:
                warns.append(f"systemd cannot say {D.rule_str(t, ma, mi, perms)}: only in the cgroup files")
                continue
            path = f"{kind}-*"
        elif mi == -1:
            path = f"{kind}-{ma}"
        else:
            path = f"/dev/{kind}/{ma}:{mi}"
        allow.append((path, perms))
    # an empty DeviceAllow first clears what the unit had (update of an existing unit)
    return [("DeviceAllow", ("a(ss)", [])), ("DevicePolicy", ("s", "strict")),
            ("DeviceAllow", ("a(ss)", allow))], warns


def resource_props(res, version, sd_version, update=False):
    """linux.resources (raw dict, validated by the cgroupfs planner first) -> (properties, adjusted resources,
    warnings). `update`: only what the update names (device rules only when given)."""
    from . import devices as D, resources as R

    res = dict(res or {})
    props, warns = [], []
    if not update or "devices" in res:
        model = D.build(res.get("devices"))
        p, w = device_props(model)
        props += p
        warns += w
    mem = res.get("memory") or {}
    limit, swap = R._memory_limit_swap(mem, C.RES + ".memory") if isinstance(mem, dict) else (0, 0)
    cpu = res.get("cpu") or {}
    if version == 1:
        if limit:
            props.append(("MemoryLimit", _u64(limit)))
        shares = R._cpu_shares(cpu, C.RES + ".cpu") if isinstance(cpu, dict) else None
        if shares:
            props.append(("CPUShares", ("t", shares)))
        bio = res.get("blockIO") or {}
        if isinstance(bio, dict) and bio.get("weight"):
            props.append(("BlockIOWeight", ("t", int(bio["weight"]))))
    else:
        if limit:
            props.append(("MemoryMax", _u64(limit)))
        if isinstance(mem, dict) and mem.get("reservation"):
            props.append(("MemoryLow", _u64(int(mem["reservation"]))))
        sw = R.swap_v2(limit, swap)
        if sw is not None and (swap or limit == -1):
            props.append(("MemorySwapMax", ("t", _MAX if sw == "max" else int(sw))))
        shares = R._cpu_shares(cpu, C.RES + ".cpu") if isinstance(cpu, dict) else None
        if shares:
            props.append(("CPUWeight", ("t", R.shares_to_weight(shares))))
        bio = res.get("blockIO") or {}
        if isinstance(bio, dict) and bio.get("weight"):
            # (runc sets none on v2; systemd's IOWeight is io.weight's 1-10000 scale, as the files get it)
            props.append(("IOWeight", ("t", R.blkio_weight_to_io(int(bio["weight"])))))
    if isinstance(cpu, dict):
        quota, period, _burst = R._cpu_quota_period_burst(cpu, C.RES + ".cpu")
        qp, newq = cpu_quota(quota, period)
        if period and sd_version < 242:
            qp = [x for x in qp if x[0] != "CPUQuotaPeriodUSec"]
        props += qp
        if newq != quota:
            res["cpu"] = dict(cpu, quota=newq)
        if sd_version >= 244:
            for key, prop in (("cpus", "AllowedCPUs"), ("mems", "AllowedMemoryNodes")):
                if cpu.get(key):
                    props.append((prop, ("ay", range_to_bits(f"{C.RES}.cpu.{key}", cpu[key]))))
    pids = res.get("pids") or {}
    if isinstance(pids, dict) and pids.get("limit") is not None:
        v = int(pids["limit"])
        props.append(("TasksMax", ("t", _MAX if v < 0 else (v or 1))))  # (systemd refuses 0; runc: 1)
    if version == 2:
        props += unified_props(res.get("unified") or {}, sd_version)
    return props, res, warns


def unified_props(unified, sd_version):
    """linux.resources.unified keys systemd has a property for (runc's unifiedResToSystemdProps); the rest only go
    to the files."""
    props = []
    for k, v in sorted(unified.items()):
        if not isinstance(v, str):
            continue
        v = v.strip()
        try:
            if k == "cpu.weight":
                props.append(("CPUWeight", ("t", int(v))))
            elif k == "io.weight":
                parts = v.split()   # "N" or "default N" (a "MAJ:MIN N" line is one device's: files only)
                if len(parts) == 1 or (len(parts) == 2 and parts[0] == "default"):
                    props.append(("IOWeight", ("t", int(parts[-1]))))
            elif k == "cpu.max":
                sv = v.split()
                quota = 0 if sv[0] == "max" else int(sv[0])
                period = int(sv[1]) if len(sv) > 1 else 100000
                props += cpu_quota(quota, period)[0]
            elif k in ("memory.high", "memory.low", "memory.min", "memory.max", "memory.swap.max"):
                name = {"memory.high": "MemoryHigh", "memory.low": "MemoryLow", "memory.min": "MemoryMin",
                        "memory.max": "MemoryMax", "memory.swap.max": "MemorySwapMax"}[k]
                props.append((name, ("t", _MAX if v == "max" else int(v))))
            elif k == "pids.max":
                n = _MAX if v == "max" else int(v)
                props.append(("TasksMax", ("t", n or 1)))
            elif k in ("cpuset.cpus", "cpuset.mems") and sd_version >= 244:
                props.append(({"cpuset.cpus": "AllowedCPUs", "cpuset.mems": "AllowedMemoryNodes"}[k],
                              ("ay", range_to_bits(f"{C.RES}.unified[{k!r}]", v))))
        except (ValueError, IndexError):
            raise SystemdError(f"{C.RES}.unified[{k!r}]: {v!r} is not a valid value") from None
    return props


_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_TYPES = {"uint64": "t", "int64": "x", "uint32": "u", "int32": "i", "uint16": "q", "int16": "n", "byte": "y",
          "boolean": "b", "double": "d", "string": "s", "objectpath": "o"}


def annotation_props(annotations):
    """"org.systemd.property.<Name>": "<GVariant text>" annotations -> properties (runc's initSystemdProps). The
    values are GVariant text: typed numbers ("uint64 123"), booleans, quoted strings, plain numbers (int32), and
    arrays of strings (['a', 'b'])."""
    out = []
    for key, value in sorted((annotations or {}).items()):
        if not key.startswith(PROP_PREFIX):
            continue
        name = key[len(PROP_PREFIX):]
        field = f"annotations[{key!r}]"
        if not _NAME.match(name):
            raise SystemdError(f"{field}: {name!r} is not a systemd property name")
        out.append((name, parse_gvariant(field, value)))
    return out


def parse_gvariant(field, text):
    t = (text or "").strip()
    typ = None
    head, sep, rest = t.partition(" ")
    if sep and head in _TYPES:
        typ, t = _TYPES[head], rest.strip()
    try:
        if t.startswith("[") and t.endswith("]"):
            items = [x.strip() for x in t[1:-1].split(",") if x.strip()]
            return ("as", [_gv_string(x) for x in items])
        if t[:1] in ("'", '"'):
            if typ not in (None, "s", "o"):
                raise ValueError
            return (typ or "s", _gv_string(t))
        if t in ("true", "false"):
            if typ not in (None, "b"):
                raise ValueError
            return ("b", t == "true")
        if typ == "d":
            return ("d", float(t))
        n = int(t, 0)
        typ = typ or "i"
        if typ in ("b", "s", "o"):
            raise ValueError
        return (typ, n)
    except ValueError:
        raise SystemdError(f"{field}: {text!r} is not a GVariant value ocirun understands (e.g. \"uint64 "
                           "123\", \"true\", \"'text'\", \"['a', 'b']\")") from None


def _gv_string(t):
    if len(t) >= 2 and t[0] == t[-1] and t[0] in ("'", '"'):
        return t[1:-1]
    raise ValueError


# ================================================================================================ D-Bus

class Bus:
    """A connection to systemd's manager over D-Bus (the system bus; a rootless caller's own session bus)."""

    DEST = "org.freedesktop.systemd1"
    PATH = "/org/freedesktop/systemd1"
    IFACE = "org.freedesktop.systemd1.Manager"

    def __init__(self, user=False, connect=None):
        self.user = user
        self._connect = connect
        self.conn = None
        self._version = None
        self._queue = None
        self._filter = None
        self.direct = False

    def address(self):
        if self.user:
            a = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
            if a:
                return a
            rt = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid()}"
            return f"unix:path={rt}/bus"
        return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or "unix:path=/run/dbus/system_bus_socket"

    def open(self):
        """Root: systemd's own socket first (a direct connection, no bus daemon needed), then the system bus,
        as runc's go-systemd does; rootless: the user's session bus."""
        if self.conn is not None:
            return self
        if not self.user and self._connect is None and os.geteuid() == 0:
            try:
                self.conn = _direct_connection(PRIVATE)
                self.direct = True
            except ImportError:
                raise SystemdError("--systemd-cgroup needs the Python package jeepney (pip install jeepney)") from None
            except (OSError, TimeoutError, RuntimeError, ValueError):
                self.conn = None
        if self.conn is None:
            self._open_bus()
        try:
            self._subscribe()
        except BaseException:
            self.close()
            raise
        return self

    def _open_bus(self):
        addr = self.address()
        which = "session bus of the user's systemd" if self.user else "system bus"
        try:
            if self._connect is not None:
                self.conn = self._connect(addr)
            else:
                from jeepney.io.blocking import open_dbus_connection

                self.conn = open_dbus_connection(bus=addr, auth_timeout=5.0)
        except ImportError:
            raise SystemdError("--systemd-cgroup needs the Python package jeepney (pip install jeepney)") from None
        except (OSError, TimeoutError, RuntimeError, ValueError) as e:
            raise SystemdError(f"--systemd-cgroup: cannot connect to systemd"
                               + (f" ({PRIVATE_PATH}) nor" if os.geteuid() == 0 and not self.user else "")
                               + f" to the D-Bus {which} ({addr}): {getattr(e, 'strerror', None) or e}") from None

    def close(self):
        if self._filter is not None:
            try:
                self._filter.__exit__(None, None, None)
            except Exception:
                pass
            self._filter = None
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
            self.conn = None

    # -------------------------------------------------------------------------------------- calls
    def call(self, method, signature=None, body=(), timeout=CALL_TIMEOUT, iface=None, path=None):
        from jeepney import DBusAddress, new_method_call
        from jeepney.wrappers import DBusErrorResponse, unwrap_msg

        addr = DBusAddress(path or self.PATH, bus_name=self.DEST, interface=iface or self.IFACE)
        msg = new_method_call(addr, method, signature, tuple(body))
        try:
            reply = self.conn.send_and_get_reply(msg, timeout=timeout)
        except TimeoutError:
            raise SystemdError(f"--systemd-cgroup: systemd did not answer {method} within {timeout:g}s") from None
        except OSError as e:
            raise SystemdError(f"--systemd-cgroup: D-Bus connection lost during {method}: "
                               f"{e.strerror or e}") from None
        try:
            return unwrap_msg(reply)
        except DBusErrorResponse as e:
            err = SystemdError(_dbus_message(method, e))
            err.dbus_name = e.name
            raise err from None

    def _subscribe(self):
        """JobRemoved signals (to wait for start/stop jobs): a match rule on the bus, and Subscribe() (systemd
        sends most signals only once a client asked)."""
        from jeepney import MatchRule
        from jeepney.bus_messages import message_bus

        if not self.direct:  # (systemd sends its signals to every direct connection)
            bus_rule = MatchRule(type="signal", sender=self.DEST, interface=self.IFACE, member="JobRemoved",
                                 path=self.PATH)
            self.conn.send_and_get_reply(message_bus.AddMatch(bus_rule), timeout=CALL_TIMEOUT)
        local = MatchRule(type="signal", interface=self.IFACE, member="JobRemoved", path=self.PATH)
        from collections import deque

        self._filter = self.conn.filter(local, queue=deque())  # (unbounded: no signal of ours may be dropped)
        self._queue = self._filter.__enter__()
        self.call("Subscribe")

    def wait_job(self, job, what, timeout=JOB_TIMEOUT):
        """The result of job `job` ("done", "failed", "canceled", "timeout", "dependency", "skipped")."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            while self._queue:
                sig = self._queue.popleft()
                _id, path, _unit, result = sig.body
                if path == job:
                    return result
            left = deadline - time.monotonic()
            if left <= 0:
                raise SystemdError(f"--systemd-cgroup: timed out after {timeout:g}s waiting for systemd to {what}")
            try:
                self._queue.appendleft(self.conn.recv_until_filtered(self._queue, timeout=left))
            except TimeoutError:
                continue
            except OSError as e:
                raise SystemdError(f"--systemd-cgroup: D-Bus connection lost while waiting for systemd to "
                                   f"{what}: {e.strerror or e}") from None

    # -------------------------------------------------------------------------------------- manager
    def version(self):
        """systemd's version number ("252.38-1~deb12u1" -> 252), 0 if unknown."""
        if self._version is None:
            try:
                body = self.call("Get", "ss", (self.IFACE, "Version"), iface="org.freedesktop.DBus.Properties")
                m = re.match(r'"?v?(\d+)', body[0][1])
                self._version = int(m.group(1)) if m else 0
            except (SystemdError, IndexError, TypeError):
                self._version = 0
        return self._version

    def manager_property(self, name):
        body = self.call("Get", "ss", (self.IFACE, name), iface="org.freedesktop.DBus.Properties")
        return body[0][1]

    def unit_state(self, unit):
        """(ActiveState, SubState) of a loaded unit, or None when systemd has no such unit."""
        try:
            path = self.call("GetUnit", "s", (unit,))[0]
        except SystemdError as e:
            if getattr(e, "dbus_name", "") == "org.freedesktop.systemd1.NoSuchUnit":
                return None
            raise
        body = self.call("GetAll", "s", ("org.freedesktop.systemd1.Unit",), path=path,
                         iface="org.freedesktop.DBus.Properties")[0]
        return (body.get("ActiveState", ("s", ""))[1], body.get("SubState", ("s", ""))[1])

    def start_transient(self, unit, props):
        job = self.call("StartTransientUnit", "ssa(sv)a(sa(sv))", (unit, "replace", props, []))[0]
        return self.wait_job(job, f"start {unit}")

    def stop(self, unit):
        try:
            job = self.call("StopUnit", "ss", (unit, "replace"))[0]
        except SystemdError as e:
            if getattr(e, "dbus_name", "") == "org.freedesktop.systemd1.NoSuchUnit":
                return "gone"
            raise
        return self.wait_job(job, f"stop {unit}")

    def reset_failed(self, unit):
        try:
            self.call("ResetFailedUnit", "s", (unit,))
        except SystemdError:
            pass

    def set_properties(self, unit, props):
        self.call("SetUnitProperties", "sba(sv)", (unit, True, props))


PRIVATE_PATH = "/run/systemd/private"
PRIVATE = "unix:path=" + PRIVATE_PATH


def _direct_connection(addr):
    """A peer-to-peer D-Bus connection to systemd's own socket: jeepney's blocking connection without the bus
    daemon's Hello (there is no bus daemon at the other end)."""
    from jeepney.bus import get_bus
    from jeepney.io.blocking import DBusConnection, DBusConnectionBase, prep_socket
    from jeepney.io.common import MessageFilters

    class Direct(DBusConnection):
        def __init__(self, sock):
            DBusConnectionBase.__init__(self, sock, False)
            self._filters = MessageFilters()

    conn = Direct(prep_socket(get_bus(addr), False, timeout=5.0))
    # systemd (sd-bus, 252 here) sometimes leaves a message that came in the same read as the end of the
    # authentication unprocessed until more data arrives (seen: 1 connection in 3 waited forever). A Ping that
    # gets no answer at once is followed by a second one, which wakes it: the connection is live before any call.
    from jeepney import DBusAddress, new_method_call

    peer = DBusAddress(Bus.PATH, bus_name=Bus.DEST, interface="org.freedesktop.DBus.Peer")
    try:
        try:
            conn.send_and_get_reply(new_method_call(peer, "Ping"), timeout=0.05)
        except TimeoutError:
            conn.send_and_get_reply(new_method_call(peer, "Ping"), timeout=5.0)
    except BaseException:
        conn.close()
        raise
    return conn


def _dbus_message(method, e):
    data = e.data[0] if isinstance(e.data, tuple) and e.data and isinstance(e.data[0], str) else ""
    name = (e.name or "").rsplit(".", 1)[-1]
    return f"--systemd-cgroup: systemd refused {method}: {data or name}" + (f" ({name})" if data else "")


# ================================================================================================ manager

def check_available():
    """runc's IsRunningSystemd: refuse at once on a host that was not booted with systemd."""
    if not os.path.isdir(SYSTEMD_DIR):
        raise SystemdError(f"--systemd-cgroup: systemd is not running on this host ({SYSTEMD_DIR} does not exist); "
                           "leave out --systemd-cgroup to use the cgroupfs driver")


class SystemdManager:
    """The cgroupfs manager of the scope's paths (v1.V1Manager or v2.V2Manager: every file read and write), plus
    the unit. Attributes it does not have are the cgroupfs manager's."""

    driver = "systemd"

    def __init__(self, fs, unit, slice_, user=False, owned=False, props=None, bus=None):
        self.fs = fs
        self.unit = unit
        self.slice = slice_
        self.user = user
        self.owned = owned          # this container started the unit (only then does delete stop it)
        self.extra_props = list(props or [])
        self.before_mkdir = None    # create: called with the directories about to be made (for the record)
        self.warnings = []
        self._bus = bus
        self._started = False       # add_pid started the unit (the next add_pid is an exec's)

    @classmethod
    def build(cls, container_id, cgroups_path, root, mounts, own, rootless=False, annotations=None):
        unified = C.is_unified(mounts, root)
        if rootless and not unified:
            raise SystemdError("--systemd-cgroup: a rootless container cannot use systemd on cgroup v1 (as runc): "
                               "leave out --systemd-cgroup")
        slice_, unit = parse_path(cgroups_path, container_id, rootless)
        props = annotation_props(annotations)
        inner = C.join(expand_slice(slice_), unit)
        bus = None
        if unified:
            from . import v2

            if rootless:
                # the user's systemd places its units below its own cgroup (runc: the manager's ControlGroup)
                bus = Bus(user=True).open()
                base = bus.manager_property("ControlGroup") or "/"
                inner = C.join(base, inner)
            fs = v2.V2Manager.discover(container_id, inner, root, mounts, own)
        else:
            from . import v1

            fs = v1.V1Manager.discover(container_id, inner, root, mounts, own)
            if fs.by_ctrl.get("devices") is None:
                raise SystemdError("--systemd-cgroup: the devices cgroup controller is not mounted")
        fs.cgroups_path = cgroups_path
        return cls(fs, unit, slice_, user=rootless, props=props, bus=bus)

    # --------------------------------------------------------------------------------------- record
    @classmethod
    def from_dict(cls, d):
        from . import v1, v2

        sd = d.get("systemd")
        if not isinstance(sd, dict) or not isinstance(sd.get("unit"), str):
            raise CgroupError("container state: invalid systemd cgroup record")
        inner = dict(d)
        inner.pop("systemd")
        fs = (v1.V1Manager if d.get("version") == 1 else v2.V2Manager).from_dict(inner)
        return cls(fs, sd["unit"], sd.get("slice") or "", user=bool(sd.get("user")), owned=bool(sd.get("owned")))

    def to_dict(self):
        d = self.fs.to_dict()
        d["systemd"] = {"unit": self.unit, "slice": self.slice, "user": self.user, "owned": self.owned}
        return d

    def __getattr__(self, name):
        # (only for what this class does not define: lookups of the cgroupfs manager)
        if name == "fs":
            raise AttributeError(name)
        return getattr(self.fs, name)

    @property
    def created(self):
        return self.fs.created

    @created.setter
    def created(self, v):
        self.fs.created = v

    def bus(self):
        if self._bus is None:
            self._bus = Bus(user=self.user)
        return self._bus.open()

    def close(self):
        if self._bus is not None:
            self._bus.close()
            self._bus = None

    # --------------------------------------------------------------------------------------- create
    def to_create(self):
        # systemd makes the scope's directories (and the slices') when the unit starts; ocirun makes the rest
        # only then, and records them first (before_mkdir)
        return []

    def create(self):
        """Before the init exists: systemd answers, and the unit is free (a failed or inactive leftover of the
        same name is reset; an active one is another container's)."""
        if not self.user:
            check_available()
        bus = self.bus()
        st = bus.unit_state(self.unit)
        if st is not None and st[0] in ("failed", "inactive"):
            bus.reset_failed(self.unit)
            st = bus.unit_state(self.unit)
        if st is not None:
            raise SystemdError(f"{FIELD}: systemd unit {self.unit} already exists ({st[0]}/{st[1]}): another "
                               "container or service has it; choose another name")
        self.owned = True

    def add_pid(self, pid, exec_=False):
        if exec_ or not self.owned or self._started:
            return self.fs.add_pid(pid, exec_=exec_)
        self._started = True
        props = [("Description", ("s", f"ocirun container {self.fs.id}"))]
        props += [("Slice", ("s", self.slice)), ("Delegate", ("b", True))]
        props += [("PIDs", ("au", [pid]))]
        acct = ("MemoryAccounting", "CPUAccounting", "IOAccounting" if self.fs.version == 2 else "BlockIOAccounting",
                "TasksAccounting")
        props += [(a, ("b", True)) for a in acct]
        props.append(("DefaultDependencies", ("b", False)))
        props += self.extra_props
        bus = self.bus()
        try:
            result = bus.start_transient(self.unit, props)
        except SystemdError as e:
            if getattr(e, "dbus_name", "") == "org.freedesktop.systemd1.UnitExists":
                self.owned = False  # (someone else's, made since create() looked)
                raise SystemdError(f"{FIELD}: systemd unit {self.unit} already exists: another container or "
                                   "service has it; choose another name") from None
            raise
        if result != "done":
            bus.reset_failed(self.unit)
            raise SystemdError(f"--systemd-cgroup: systemd could not start {self.unit}: job {result} "
                               f"(see journalctl -u {self.unit})")
        # every hierarchy systemd does not manage (v1), and the scope's own files: as runc's joinCgroups
        if self.before_mkdir is not None:
            self.before_mkdir(self.fs.to_create())
        self.fs.create()
        self.fs.add_pid(pid)


    # --------------------------------------------------------------------------------------- limits
    def apply(self, resources, default_devices=True):
        self._set(resources, update=False, default_devices=default_devices)

    def update(self, resources, default_devices=True):
        self._set(resources, update=True, default_devices=default_devices)

    def _set(self, resources, update, default_devices):
        from . import resources as R

        res = resources or {}
        if not isinstance(res, dict):
            raise CgroupError(f"{C.RES}: must be an object")
        # everything is checked before systemd hears of it (a refused limit must not stay in the unit): the
        # cgroupfs planner's validation (its messages name the field) and the controllers the files need
        self._check_controllers(res, update)
        bus = self.bus()
        cpu = res.get("cpu")
        if update and isinstance(cpu, dict) and cpu.get("quota") and not cpu.get("period"):
            # (CPUQuotaPerSecUSec is the quota per period: an update naming only the quota keeps the period the
            # container has)
            period = self._period_now()
            if period:
                res = dict(res, cpu=dict(cpu, period=period))
        props, res, warns = resource_props(res, self.fs.version, bus.version(), update=update)
        for w in warns:
            if w not in self.warnings:
                self.warnings.append(w)
                from ..log import warning

                warning(w)
        if props:
            # systemd (v1) rewrites the device rules as deny-all then the allow-list: a running container is
            # frozen meanwhile, so that it never sees a device it may use refused (runc's freezeBeforeSet)
            devices = any(n == "DevicePolicy" for n, _v in props)
            thaw = False
            if devices and update and self.fs.version == 1 and self.fs.path("freezer") and not self.fs.is_frozen():
                self.fs.freeze()
                thaw = True
            try:
                bus.set_properties(self.unit, props)
            finally:
                if thaw:
                    self.fs.thaw()
        if update:
            self.fs.update(res, default_devices=default_devices)
        else:
            self.fs.apply(res, default_devices=default_devices)

    def _check_controllers(self, res, update):
        from . import resources as R

        if self.fs.version == 1:
            self.fs.resolve(R.plan_v1(res, update=update))
        else:
            self.fs.check_controllers(R.plan_v2(res, update=update))

    def _period_now(self):
        d = self.fs.path("cpu")
        try:
            if self.fs.version == 1:
                return int(C.read_file(d, "cpu.cfs_period_us").strip())
            return int(C.read_file(d, "cpu.max").split()[1])
        except (OSError, TypeError, ValueError, IndexError):
            return 0

    # --------------------------------------------------------------------------------------- delete
    def destroy(self, force=False, timeout=5.0):
        """Kill what is left in the scope, stop the unit (ours only), reset it, remove what ocirun made."""
        errors = []
        d = self.fs.path("devices") if self.fs.version == 1 else self.fs.path("")
        if d and os.path.isdir(d) and (self.owned or force):
            pids = C.procs_recursive(d)
            if pids:
                if self.fs.is_frozen():
                    try:
                        self.fs.thaw()
                    except CgroupError:
                        pass
                C.kill_pids(pids, C.SIGKILL)
                left = C.wait_empty(lambda: C.procs_recursive(d), timeout, C.SIGKILL)
                if left:
                    errors.append(f"processes {left[:5]} did not exit within {timeout:g}s of SIGKILL")
        if self.owned:
            try:
                bus = self.bus()
                result = bus.stop(self.unit)
                if result not in ("done", "gone"):
                    errors.append(f"stopping {self.unit}: job {result}")
                bus.reset_failed(self.unit)
                self.owned = False
            except SystemdError as e:
                errors.append(str(e))
        leaves = {h[4] for h in self.fs.hierarchies} if self.fs.version == 1 else {self.fs.dir}
        parents = [x for x in self.fs.created if x not in leaves]
        self.fs.created = [x for x in self.fs.created if x in leaves]
        try:
            C.finish_destroy(self.fs, [], timeout, kill=False)
        except CgroupError as e:
            errors.append(str(e))
        for p in sorted(parents, key=lambda p: -p.count("/")):
            try:
                os.rmdir(p)     # (another container's scope may still be there: then it stays)
            except OSError:
                pass
        self.close()
        if errors:
            raise SystemdError("; ".join(errors))
