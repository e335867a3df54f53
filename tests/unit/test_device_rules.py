"""linux.resources.devices as runc reads them, checked before anything is made (ocirun.semantics, which both
`create` and `ocirun check` run): access letters other than r, w, m ignored, a missing or empty access refused,
a hole in a wildcard refused, and on a cgroup v1 host an allow rule granting nothing refused."""
import pytest

from ocirun import cgroups, semantics, specgen
from ocirun.cgroups import devices


def doc_with(rules):
    doc = specgen.default_spec()
    doc["linux"].setdefault("resources", {})["devices"] = rules
    return doc


DENY_ALL = {"allow": False, "access": "rwm"}
KMSG = {"type": "c", "major": 1, "minor": 11}


@pytest.fixture(params=[True, False], ids=["v1-host", "v2-host"])
def host_v1(request, monkeypatch):
    monkeypatch.setattr(cgroups, "v1_host", lambda root=cgroups.DEFAULT_ROOT: request.param)
    return request.param


def test_runc_bats_minimal_transition_config_is_accepted(host_v1):
    """runc's bats "update devices [minimal transition rules]" denies c 1:11 with access "rwa"."""
    assert semantics.problems(doc_with([DENY_ALL, {"allow": False, **KMSG, "access": "rwa"}])) == []


@pytest.mark.parametrize("access,perms", [("rwa", "rw"), ("mwr", "rwm"), ("rr", "r"), ("Wm", "m"), ("r w", "rw")])
def test_unknown_letters_are_dropped(access, perms):
    m = devices.build([DENY_ALL, {"allow": True, **KMSG, "access": access}], default_devices=False)
    assert m.ordered() == [(("c", 1, 11), perms)]


@pytest.mark.parametrize("rule,msg", [
    ({"allow": True, **KMSG, "access": ""},
     "/linux/resources/devices/1/access: must not be empty (a combination of r, w, m)"),
    ({"allow": True, **KMSG}, "/linux/resources/devices/1/access: required (a combination of r, w, m)"),
    ({"allow": False}, "/linux/resources/devices/1/access: required (a combination of r, w, m)"),
])
def test_missing_or_empty_access_is_refused(host_v1, rule, msg):
    """runc: "device access at 1 field cannot be empty" (specconv), for a wildcard rule too."""
    assert semantics.problems(doc_with([DENY_ALL, rule])) == [msg]


def test_hole_in_a_wildcard_is_refused(host_v1):
    rules = [DENY_ALL, {"allow": True, "type": "c", "access": "rw"},
             {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"}]
    (p,) = semantics.problems(doc_with(rules))
    assert p.startswith("/linux/resources/devices/2: cannot deny c 1:3 w: an earlier wildcard allow rule c *:* rw")


def test_allow_granting_nothing_is_refused_on_v1_only(host_v1):
    """runc on v1 fails its check of devices.list after the writes; on v2 its program has no rule for it."""
    found = semantics.problems(doc_with([DENY_ALL, {"allow": True, **KMSG, "access": "x"}]))
    if host_v1:
        assert found == ["/linux/resources/devices/1/access: names none of r, w, m: an allow rule for c 1:11 "
                         "that grants nothing cannot be written to the cgroup v1 devices controller"]
    else:
        assert found == []


@pytest.mark.parametrize("rules", [
    [DENY_ALL, {"allow": False, **KMSG, "access": "x"}],            # deny granting nothing: a no-op
    [{"allow": True, "access": "x"}],                              # a wildcard: access not read
    [{"allow": True, "access": "rwm"}, {"allow": False, **KMSG, "access": "q"}],   # blacklist: runc checks the mode
    [DENY_ALL, {"allow": True, **KMSG, "access": "x"}, {"allow": True, **KMSG, "access": "r"}],  # made non-void
    [DENY_ALL, {"allow": True, **KMSG, "access": "x"}, DENY_ALL],  # reset
])
def test_rules_granting_nothing_that_runc_runs(host_v1, rules):
    assert semantics.problems(doc_with(rules)) == []


def test_void_exceptions_are_left_out_of_what_is_written():
    m = devices.build([DENY_ALL, {"allow": True, **KMSG, "access": "x"}], default_devices=False)
    assert m.ordered() == [] and m.entries() == [] and devices.transition(m) == [("devices.deny", "a *:* rwm")]
    assert m.void() == [("linux.resources.devices[1]", ("c", 1, 11))]


def test_v1_host_detection(tmp_path):
    assert cgroups.v1_host(str(tmp_path)) is True
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    assert cgroups.v1_host(str(tmp_path)) is False
    assert cgroups.v1_host(str(tmp_path / "none")) is False
