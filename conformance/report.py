"""Per-requirement outcomes: the table per spec section, the summary line and reports/<name>.json.

Every test's docstring starts with the spec sentence it checks and has a line

    [MUST] config-linux.md#configLinuxNamespaces

(level, spec file, section anchor). The reporter reads that, collects one outcome per test (pass, fail, or skip
with its reason) and at the end of the session prints a table per section and the line

    runtime=PATH pass=N fail=N skip=N

(rootless mode, conformance/rootless.py: `runtime=PATH mode=rootless pass=N fail=N skip=N`, and the table's title
says which user ran it). reports/<name>.json has "mode": "root" or "rootless".
"""
import json
import os
import re
import time

import pytest

from conformance import rootless

# [ECOSYSTEM] marks what no spec sentence requires but engines send and runc accepts (spec/EXTENSIONS.md)
REQ_RE = re.compile(r"^\s*\[(MUST|SHOULD|MAY|ECOSYSTEM)\]\s+(\S+?\.md)#(\S+)\s*$", re.M)


def requirement_of(item):
    fn = getattr(item, "function", None)
    doc = (fn.__doc__ or "") if fn else ""
    m = REQ_RE.search(doc)
    text = " ".join(doc.split("\n\n", 1)[0].split())
    if not m:
        return {"level": "?", "doc": "?", "section": "?", "text": text}
    return {"level": m.group(1), "doc": m.group(2), "section": m.group(3), "text": text}


class Reporter:
    def __init__(self, config, runtime):
        self.config = config
        self.runtime = runtime
        self.results = {}  # nodeid -> dict
        self.items = {}
        self.t0 = time.time()

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session, config, items):
        for it in items:
            self.items[it.nodeid] = it

    def pytest_runtest_logreport(self, report):
        rec = self.results.get(report.nodeid)
        if rec is None:
            it = self.items.get(report.nodeid)
            req = requirement_of(it) if it else {"level": "?", "doc": "?", "section": "?", "text": ""}
            name = report.nodeid.split("::", 1)[-1]
            rec = self.results[report.nodeid] = dict(name=name, nodeid=report.nodeid, outcome=None, message="",
                                                     duration=0.0, **req)
        rec["duration"] += getattr(report, "duration", 0.0)
        if report.skipped and rec["outcome"] is None:
            rec["outcome"] = "skip"
            lr = report.longrepr
            rec["message"] = lr[2] if isinstance(lr, tuple) else str(lr)
            rec["message"] = rec["message"].removeprefix("Skipped: ")
        elif report.failed:
            if rec["outcome"] != "fail":
                rec["outcome"] = "fail"
                rec["message"] = _short_failure(report)
        elif report.when == "call" and report.passed and rec["outcome"] is None:
            rec["outcome"] = "pass"

    def rows(self):
        return [r for r in self.results.values() if r["outcome"]]

    def counts(self):
        rows = self.rows()
        return {k: sum(1 for r in rows if r["outcome"] == k) for k in ("pass", "fail", "skip")}

    def mode(self):
        return "rootless" if rootless.active() else "root"

    def summary_line(self):
        c = self.counts()
        mode = " mode=rootless" if rootless.active() else ""
        return f"runtime={self.runtime}{mode} pass={c['pass']} fail={c['fail']} skip={c['skip']}"

    def pytest_terminal_summary(self, terminalreporter):
        tr = terminalreporter
        rows = self.rows()
        if not rows:
            return
        if rootless.active():
            tr.write_sep("=", f"OCI runtime-spec v1.3 conformance, rootless as {rootless.who()}")
        else:
            tr.write_sep("=", "OCI runtime-spec v1.3 conformance")
        for section, group in _by_section(rows):
            tr.write_line("")
            tr.write_line(f"## {section}")
            for r in group:
                msg = ""
                if r["outcome"] != "pass":
                    msg = "  -- " + r["message"].splitlines()[0][:140] if r["message"] else ""
                tr.write_line(f"  {r['outcome']:<5} {r['level']:<6} {r['name']}{msg}")
        tr.write_line("")
        tr.write_line(self.summary_line())
        self._write_json()

    def _write_json(self):
        cfg = self.config
        name = cfg.getoption("--report-name") or os.path.basename(self.runtime)
        d = cfg.getoption("--report-dir")
        os.makedirs(d, exist_ok=True)
        data = {"runtime": self.runtime, "name": name, "mode": self.mode(), "started": self.t0,
                "elapsed": time.time() - self.t0,
                **({"user": rootless.who()} if rootless.active() else {}),
                "counts": self.counts(), "summary": self.summary_line(),
                "results": sorted(self.rows(), key=lambda r: (r["doc"], r["section"], r["nodeid"]))}
        with open(os.path.join(d, f"{name}.json"), "w") as f:
            json.dump(data, f, indent=1)


def _by_section(rows):
    order = {"runtime.md": 0, "runtime-linux.md": 1, "config.md": 2, "config-linux.md": 3}
    groups = {}
    for r in rows:
        groups.setdefault(f"{r['doc']}#{r['section']}", []).append(r)
    keys = sorted(groups, key=lambda k: (order.get(k.split("#")[0], 9), k))
    return [(k, sorted(groups[k], key=lambda r: r["nodeid"])) for k in keys]


def _short_failure(report):
    lr = report.longrepr
    crash = getattr(lr, "reprcrash", None)
    text = crash.message if crash is not None else str(lr)
    if report.when != "call":
        text = f"[{report.when}] {text}"
    return text.strip()[:2000]
