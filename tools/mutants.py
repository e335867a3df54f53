#!/usr/bin/env python3
"""The mutation check: named critical mutants of ocirun, one at a time, and which test suites kill each.

    sudo .venv/bin/python tools/mutants.py [--rev REV | --worktree] [--only NAME,...] [--suites unit,...]
                                           [--focus-only] [--maxfail N] [--no-baseline] [--output FILE]
                                           [--json FILE] [--workdir DIR]
    .venv/bin/python tools/mutants.py --check      # does every mutant still apply? (seconds, no root)
    .venv/bin/python tools/mutants.py --list       # the mutants and where their edits land

The mutants are in tools/mutants.toml: each is a name, a one-line description and exact (file, old, new) edits.
`old` must occur exactly once in its file; a product change that makes it disappear is reported as "mutant NAME
no longer applies" and the run stops (exit 2) before any test runs: a mutant is never skipped.

Nothing in the project's tree is touched. The revision under test (HEAD by default; --worktree: the working tree's
tracked and untracked files) is extracted into WORKDIR/pristine/repo, and each mutant gets a fresh copy of it in
WORKDIR/mutant/repo. Each copy has its own virtualenv (WORKDIR/*/venv: the project venv's interpreter and
site-packages, with the copy's directory first on sys.path and no editable path to /work/main), whose bin/ocirun
runs the copy. The suites run from the copy with that venv's python, PATH, OCIRUN_TEST_BIN and OCIRUN_TEST_RUNTIME
(integration and engine tests) and --runtime (conformance) all pointing to it, and with private seccomp and
validation caches (a mutant's program or "valid" verdict never reaches /var/cache/ocirun).

Suites: unit = tests/unit; integration = tests/integration and tests/reliability (two pytest sessions: their
conftests cannot share one); conformance = conformance/ (pytest -c conformance/pytest.ini, as conformance/run).

A suite kills a mutant when one of its tests fails against the mutant, fails again when re-run against the mutant,
and passes against the unmutated copy (so a flaky test, or one that fails here anyway, is never counted). Each
suite runs whole by default, the mutant's focus tests first, and stops at the first confirmed kill (--maxfail N:
pytest stops after N failures, which are then confirmed; if none is, the session runs again without them). A
mutant is "survived" for a suite only when the whole suite passed against it. --focus-only runs the focus tests
alone (faster; the report marks those cells as "focus only").

The baseline (skipped with --no-baseline) first runs every suite once on the unmutated copy: the tests that fail
there twice are "broken here" (host or environment), deselected from the mutant runs and listed in the report.

Output: a markdown table (mutant, description, unit, integration, conformance, killed by >= 2) and, per mutant,
the killing tests and times; on stdout, in --output FILE if given, and with every detail in WORKDIR/results.json
(--json FILE too). Logs of every pytest session: WORKDIR/logs/. Needs root (the integration and conformance suites
create real containers; without root they would skip everything and kill nothing).

Run it on a test VM only, as the suites themselves: with RESOLVE_IN_ROOT dropped, the hostile-rootfs tests'
containers really escape and may leave files where their symlinks point on the host (e.g. /tmp/evil-*).

Why named mutants and not a generic tool (mutmut, cosmic-ray): those generate thousands of operator-level mutants
and run one test command per mutant; the question here is a fixed list of behaviour-level breakages, each run
against three suites with different runners (a separate pytest project for conformance), in a scratch copy with its
own runtime binary, and reported per suite. A small table of exact edits answers that, and fails loudly when the
product changes under it.

This file is also the pytest plugin the harness loads in each session (-p mutants): it reorders the focus tests
first and writes every test's outcome to $MUTANTS_OUT.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TABLE = os.path.join(HERE, "mutants.toml")
SUITE_NAMES = ("unit", "integration", "conformance")
CONFIRM_BATCH = 8          # failing tests confirmed per round
MAX_RERUNS = 5             # sessions re-run after early stops on unconfirmed failures


# ============================================================================================ pytest plugin
# (active only inside the pytest sessions the harness starts: -p mutants with this directory on PYTHONPATH)
def _plugin_out(rec):
    path = os.environ.get("MUTANTS_OUT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(rec) + "\n")


def pytest_collection_modifyitems(session, config, items):
    """The focus tests ($MUTANTS_FOCUS, a JSON list of node-id prefixes) first, in that order, then the rest; with
    $MUTANTS_ONLY=1 the rest is deselected."""
    focus = json.loads(os.environ.get("MUTANTS_FOCUS") or "[]")
    if not focus:
        return

    def rank(item):
        return next((i for i, p in enumerate(focus) if item.nodeid.startswith(p)), len(focus))

    ranks = [rank(it) for it in items]
    order = sorted(range(len(items)), key=lambda k: (ranks[k], k))
    keep = [items[k] for k in order if ranks[k] < len(focus) or os.environ.get("MUTANTS_ONLY") != "1"]
    dropped = [items[k] for k in order if ranks[k] == len(focus)] if len(keep) < len(items) else []
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep
    _plugin_out({"focus_matched": sum(1 for r in ranks if r < len(focus))})


def pytest_runtest_logreport(report):
    if report.failed:
        _plugin_out({"nodeid": report.nodeid, "outcome": "failed", "when": report.when})
    elif report.when == "call" and report.passed:
        _plugin_out({"nodeid": report.nodeid, "outcome": "passed"})
    elif report.skipped:
        _plugin_out({"nodeid": report.nodeid, "outcome": "skipped", "when": report.when})


def pytest_collectreport(report):
    if report.failed:
        _plugin_out({"nodeid": report.nodeid or "<collection>", "outcome": "failed", "when": "collect"})


def pytest_sessionfinish(session, exitstatus):
    _plugin_out({"exitstatus": int(exitstatus), "stopped": bool(session.shouldstop),
                 "collected": getattr(session, "testscollected", None)})


try:  # the hookimpl marker for trylast (pytest >= 7 ignores the bare attribute)
    import pytest as _pytest

    pytest_collection_modifyitems = _pytest.hookimpl(trylast=True)(pytest_collection_modifyitems)
except ImportError:  # the harness itself does not need pytest
    pass


# ============================================================================================ mutants
class NoLongerApplies(Exception):
    pass


class Mutant:
    def __init__(self, d, index, table):
        where = f"{table}: mutant #{index + 1}"
        for k in ("name", "description", "edit"):
            if k not in d:
                raise SystemExit(f"{where}: missing {k!r}")
        self.name, self.description = d["name"], d["description"]
        if "\n" in self.description:
            raise SystemExit(f"{where} ({self.name}): the description must be one line")
        self.edits = []
        for j, e in enumerate(d["edit"]):
            if not all(k in e for k in ("file", "old", "new")) or e["old"] == e["new"] or not e["old"]:
                raise SystemExit(f"{where} ({self.name}): edit #{j + 1} needs file, old and new (old != new)")
            self.edits.append((e["file"], e["old"], e["new"]))
        self.focus = {s: list(v) for s, v in (d.get("focus") or {}).items()}
        for s in self.focus:
            if s not in SUITE_NAMES:
                raise SystemExit(f"{where} ({self.name}): focus suite {s!r} is not one of {', '.join(SUITE_NAMES)}")

    def apply(self, repo, write=True):
        """Apply every edit to the tree at `repo`; returns [(file, line)] where they land. Raises NoLongerApplies."""
        texts, where = {}, []
        for f, old, new in self.edits:
            path = os.path.join(repo, f)
            if f not in texts:
                try:
                    with open(path) as fh:
                        texts[f] = fh.read()
                except OSError as e:
                    raise NoLongerApplies(f"mutant {self.name} no longer applies: {f}: {e.strerror}") from None
            n = texts[f].count(old)
            if n != 1:
                first = old.strip().splitlines()[0] if old.strip() else old
                moved = [p for p in _sources(repo) if p != f and _count_in(os.path.join(repo, p), old) == 1]
                hint = f"; the same text is now in {', '.join(moved)}" if n == 0 and moved else ""
                raise NoLongerApplies(f"mutant {self.name} no longer applies: {f}: the old text "
                                      f"{'is not there' if n == 0 else f'occurs {n} times'} ({first.strip()!r})"
                                      f"{hint}")
            at = texts[f].index(old)
            where.append((f, texts[f].count("\n", 0, at) + 1))
            texts[f] = texts[f].replace(old, new)
        if write:
            for f, t in texts.items():
                with open(os.path.join(repo, f), "w") as fh:
                    fh.write(t)
        return where


def _sources(repo):
    for d, _, files in os.walk(os.path.join(repo, "ocirun")):
        for name in sorted(files):
            if name.endswith(".py"):
                yield os.path.relpath(os.path.join(d, name), repo)


def _count_in(path, text):
    try:
        with open(path) as f:
            return f.read().count(text)
    except OSError:
        return 0


def load_mutants(path):
    import tomllib

    with open(path, "rb") as f:
        doc = tomllib.load(f)
    ms = [Mutant(d, i, path) for i, d in enumerate(doc.get("mutant") or ())]
    names = [m.name for m in ms]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise SystemExit(f"{path}: duplicate mutant names: {', '.join(sorted(dup))}")
    if not ms:
        raise SystemExit(f"{path}: no mutants")
    return ms


# ============================================================================================ scratch trees
def _run(argv, **kw):
    return subprocess.run(argv, check=True, **kw)


def resolve(rev):
    """The commit `rev` names now (HEAD moves while a run goes on: the run tests the commit it started with)."""
    r = subprocess.run(["git", "-C", REPO, "rev-parse", "--verify", "--quiet", rev + "^{commit}"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"not a commit: {rev}")
    return r.stdout.strip()


def extract_source(dest, rev=None, worktree=False):
    """The project's files at `rev` (git archive), or the working tree's tracked + untracked files, into dest."""
    os.makedirs(dest)
    if worktree:
        files = _run(["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                     capture_output=True).stdout.split(b"\0")
        for rel in filter(None, (f.decode() for f in files)):
            src = os.path.join(REPO, rel)
            if not os.path.lexists(src):
                continue  # deleted in the working tree
            os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
            shutil.copy2(src, os.path.join(dest, rel), follow_symlinks=False)
        return
    git = subprocess.Popen(["git", "-C", REPO, "archive", "--format=tar", rev], stdout=subprocess.PIPE)
    _run(["tar", "-x", "-C", dest], stdin=git.stdout)
    git.stdout.close()
    if git.wait() != 0:
        raise SystemExit(f"git archive {rev} failed")


def main_venv():
    v = os.path.join(REPO, ".venv")
    py = os.path.join(v, "bin", "python")
    if not os.access(py, os.X_OK):
        raise SystemExit(f"no project venv at {v} (run ./dev.sh setup)")
    out = _run([py, "-I", "-c", "import sys, sysconfig; print(sys._base_executable); "
                "print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True).stdout.split("\n")
    return out[0], out[1]


class Tree:
    """A scratch copy of the project with a venv that runs it: ROOT/repo, ROOT/venv, ROOT/shared -> ../shared."""

    def __init__(self, root):
        self.root = root
        self.repo = os.path.join(root, "repo")
        self.venv = os.path.join(root, "venv")
        self.python = os.path.join(self.venv, "bin", "python")
        self.ocirun = os.path.join(self.venv, "bin", "ocirun")
        self.caches = os.path.join(root, "caches")

    def make_venv(self, base_python, site_packages):
        _run([base_python, "-m", "venv", "--without-pip", self.venv])
        purelib = _run([self.python, "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                       capture_output=True, text=True).stdout.strip()
        # the copy first, then the project venv's packages (its own .pth files, the editable path to the
        # project's tree among them, are not read: a plain path line in a .pth adds the directory only)
        with open(os.path.join(purelib, "00-ocirun-mutants.pth"), "w") as f:
            f.write(f"{self.repo}\n{site_packages}\n")
        with open(self.ocirun, "w") as f:
            f.write(f"#!{self.python}\nimport sys\nfrom ocirun.cli import main\n"
                    f"if __name__ == '__main__':\n    sys.exit(main())\n")
        os.chmod(self.ocirun, 0o755)
        shared = os.path.join(os.path.dirname(REPO), "shared")  # tests/unit/_corpus.py: REPO.parent / "shared"
        if os.path.isdir(shared):
            os.symlink(shared, os.path.join(self.root, "shared"))

    def fresh_repo_from(self, src):
        if os.path.exists(self.repo):
            shutil.rmtree(self.repo)
        shutil.copytree(src, self.repo, symlinks=True)

    def finish(self):
        """Byte-compile (as dev.sh does) and give the generated validator a unique mtime: the validation cache is
        keyed by its size and mtime, so no entry made by another tree can ever be served to this one."""
        v = os.path.join(self.repo, "ocirun", "_validator.py")
        if os.path.exists(v):
            os.utime(v, ns=(time.time_ns(), time.time_ns()))
        _run([self.python, "-m", "compileall", "-q", os.path.join(self.repo, "ocirun")], stdout=subprocess.DEVNULL)
        if os.path.exists(self.caches):
            shutil.rmtree(self.caches)
        os.makedirs(self.caches)

    def verify(self, expect_text=None):
        """The venv imports the copy's ocirun (and, with expect_text, the mutated source) from anywhere."""
        code = ("import ocirun, ocirun.cli, sys; print(ocirun.__file__)")
        got = _run([self.python, "-c", code], capture_output=True, text=True, cwd="/").stdout.strip()
        want = os.path.join(self.repo, "ocirun", "__init__.py")
        if got != want:
            raise SystemExit(f"scratch venv {self.venv} imports {got}, not {want}")
        for path, text in expect_text or ():
            with open(os.path.join(self.repo, path)) as f:
                if text not in f.read():
                    raise SystemExit(f"{self.repo}/{path}: the mutation is not in the copy")

    def env(self, out, focus, only=False):
        e = dict(os.environ)
        for k in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "OCIRUN_TEST_STOP_AT", "OCIRUN_TEST_STOP_FILE"):
            e.pop(k, None)
        e.update(PATH=os.path.join(self.venv, "bin") + os.pathsep + e.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                 VIRTUAL_ENV=self.venv, PYTHONPATH=HERE, OCIRUN_TEST_BIN=self.ocirun,
                 OCIRUN_TEST_RUNTIME=self.ocirun, OCIRUN_SECCOMP_CACHE=os.path.join(self.caches, "seccomp"),
                 OCIRUN_VALIDATION_CACHE=os.path.join(self.caches, "configs"), MUTANTS_OUT=out,
                 MUTANTS_FOCUS=json.dumps(focus), MUTANTS_ONLY="1" if only else "0")
        return e


# ============================================================================================ suites and sessions
class Session:
    """One pytest session of a suite. `paths` are repo-relative; node ids are relative to `rootdir`."""

    def __init__(self, suite, name, paths, rootdir="", opts=()):
        self.suite, self.name, self.paths, self.rootdir, self.opts = suite, name, list(paths), rootdir, list(opts)

    def owns(self, entry):
        return any(entry == p or entry.startswith(p.rstrip("/") + "/") for p in self.paths)

    def nodeid(self, entry):
        """A repo-relative focus entry as this session's node id (prefix)."""
        return entry[len(self.rootdir) + 1:] if self.rootdir else entry

    def arg(self, nodeid):
        return os.path.join(self.rootdir, nodeid) if self.rootdir else nodeid

    def argv(self, tree, workdir):
        opts = [o.format(ocirun=tree.ocirun, reports=os.path.join(workdir, "conformance-reports")) for o in self.opts]
        return opts


SESSIONS = {
    "unit": [Session("unit", "unit", ["tests/unit"])],
    "integration": [Session("integration", "integration", ["tests/integration"]),
                    Session("integration", "reliability", ["tests/reliability"])],
    "conformance": [Session("conformance", "conformance", ["conformance"], rootdir="conformance",
                            opts=["-c", "conformance/pytest.ini", "--rootdir", "conformance", "--runtime", "{ocirun}",
                                  "--report-name", "mutant", "--report-dir", "{reports}"])],
}


class Result:
    def __init__(self, rc, outcomes, summary, focus_matched, seconds, log, timed_out=False):
        self.rc, self.outcomes, self.summary, self.seconds, self.log = rc, outcomes, summary, seconds, log
        self.focus_matched, self.timed_out = focus_matched, timed_out

    @property
    def failed(self):
        return [n for n, o in self.outcomes.items() if o == "failed"]

    @property
    def stopped_early(self):
        return bool(self.summary.get("stopped"))

    def count(self, outcome):
        return sum(1 for o in self.outcomes.values() if o == outcome)


class Harness:
    def __init__(self, args, mutants):
        self.args = args
        self.mutants = mutants
        self.workdir = os.path.abspath(args.workdir)
        self.logs = os.path.join(self.workdir, "logs")
        self.pristine = Tree(os.path.join(self.workdir, "pristine"))
        self.mutant_tree = Tree(os.path.join(self.workdir, "mutant"))
        self.broken_here = {}     # suite -> {nodeid: why}: fail on the unmutated copy (deselected)
        self.n = 0
        self.suites = [s for s in SUITE_NAMES if s in args.suites]

    # ------------------------------------------------------------------ sessions
    def run_session(self, tree, session, label, focus=(), nodeids=None, maxfail=0, deselect=(), only=False):
        self.n += 1
        out = os.path.join(self.logs, f"{self.n:03d}-{label}-{session.name}.jsonl")
        log = out[:-len(".jsonl")] + ".log"
        argv = [tree.python, "-m", "pytest", "-p", "no:cacheprovider", "-p", "mutants", "-q", "-rfE",
                "--tb=short", *session.argv(tree, self.workdir)]
        if maxfail:
            argv.append(f"--maxfail={maxfail}")
        for n in sorted(deselect):
            argv += ["--deselect", n]  # (node ids: relative to the rootdir)
        if only:  # the focus entries' files; the plugin keeps only the focus tests
            argv += list(dict.fromkeys(session.arg(f.split("::")[0]) for f in map(session.nodeid, focus)))
        elif nodeids is not None:
            argv += [session.arg(n) for n in nodeids]
        else:
            argv += session.paths
        t0 = time.monotonic()
        timed_out = False
        with open(log, "w") as lf:
            lf.write("$ " + " ".join(argv) + "\n")
            lf.flush()
            p = subprocess.Popen(argv, cwd=tree.repo, env=tree.env(out, [session.nodeid(f) for f in focus], only),
                                 stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                rc = p.wait(timeout=self.args.session_timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                try:
                    os.killpg(p.pid, signal.SIGKILL)  # the session we started, and only it
                except ProcessLookupError:
                    pass
                rc = p.wait()
        secs = time.monotonic() - t0
        outcomes, summary, matched = {}, {}, None
        if os.path.exists(out):
            with open(out) as f:
                for line in f:
                    r = json.loads(line)
                    if "exitstatus" in r:
                        summary = r
                    elif "focus_matched" in r:
                        matched = r["focus_matched"]
                    elif r["outcome"] == "failed" or r["nodeid"] not in outcomes:
                        outcomes[r["nodeid"]] = r["outcome"]
        res = Result(rc, outcomes, summary, matched, secs, log, timed_out)
        self.say(f"    {label} {session.name}: exit {rc}, {res.count('passed')} passed, {res.count('failed')} failed, "
                 f"{res.count('skipped')} skipped, {secs:.0f}s{' (stopped early)' if res.stopped_early else ''}"
                 f"{' TIMEOUT' if timed_out else ''}  [{os.path.relpath(log, self.workdir)}]")
        if not timed_out:
            collect_errors = [n for n, o in outcomes.items() if o == "failed" and "::" not in n]
            if rc not in (0, 1) and not (rc == 2 and collect_errors):
                raise SystemExit(f"pytest session failed to run (exit {rc}): see {log}")
            if nodeids is None and res.count("passed") == 0 and not res.failed:  # (also --focus-only)
                raise SystemExit(f"{session.name}: nothing passed and nothing failed (all skipped? not root?): {log}")
        return res

    # ------------------------------------------------------------------ baseline
    def baseline(self):
        self.say("baseline: every suite on the unmutated copy")
        for suite in self.suites:
            self.broken_here[suite] = {}
            for s in SESSIONS[suite]:
                res = self.run_session(self.pristine, s, "baseline")
                fails = res.failed
                broken = [n for n in fails if "::" not in n]
                if broken:
                    raise SystemExit(f"collection error on the unmutated copy ({', '.join(broken)}): see {res.log}")
                if not fails:
                    continue
                again = self.run_session(self.pristine, s, "baseline-again", nodeids=fails)
                for n in fails:
                    if again.outcomes.get(n) == "failed":
                        self.broken_here[suite][n] = "fails twice on the unmutated copy"
                flaky = [n for n in fails if n not in self.broken_here[suite]]
                if flaky:
                    self.say(f"    flaky on the unmutated copy (kept): {', '.join(flaky)}")

    # ------------------------------------------------------------------ one mutant, one suite
    def confirm(self, session, label, candidates):
        """[(nodeid)] of candidates that fail again on the mutant and pass on the unmutated copy; plus the
        unconfirmed ones with why."""
        again = self.run_session(self.mutant_tree, session, label + "-again", nodeids=candidates)
        still = [n for n in candidates if again.outcomes.get(n) == "failed"]
        why = {n: "passed when re-run on the mutant (flaky)" for n in candidates if n not in still}
        if not still:
            return [], why
        base = self.run_session(self.pristine, session, label + "-pristine", nodeids=still)
        confirmed = []
        for n in still:
            o = base.outcomes.get(n)
            if "::" not in n:  # a collection error: confirmed when the unmutated copy collects and runs the module
                ok = o != "failed" and any(k.startswith(n + "::") and v == "passed" for k, v in base.outcomes.items())
            else:
                ok = o == "passed"
            if ok:
                confirmed.append(n)
            else:
                why[n] = f"{o or 'not run'} on the unmutated copy too"
        return confirmed, why

    def judge(self, m, suite):
        """{'verdict': killed|survived|timeout, 'by': [nodeids], 'unconfirmed': {...}, 'seconds': s, 'mode': ...}"""
        t0 = time.monotonic()
        focus = m.focus.get(suite, [])
        sessions = list(SESSIONS[suite])
        for f in focus:
            if not any(s.owns(f) for s in sessions):
                raise SystemExit(f"mutant {m.name}: focus entry {f!r} is not in the {suite} suite")
        # sessions holding focus tests first
        sessions.sort(key=lambda s: min([i for i, f in enumerate(focus) if s.owns(f)] or [len(focus)]))
        focus_only = self.args.focus_only and bool(focus)
        mode = ("focus only: " + ", ".join(focus)) if focus_only else \
            ("whole suite" + (", first: " + ", ".join(focus) if focus else ""))
        unconfirmed = {}
        notes = []
        deselect_all = dict(self.broken_here.get(suite, {}))
        for s in sessions:
            sfocus = [f for f in focus if s.owns(f)]
            if focus_only and not sfocus:
                continue
            for attempt in range(MAX_RERUNS + 1):
                desel = [n for n in list(deselect_all) + list(unconfirmed) if not n.startswith("<")]
                maxfail = self.args.maxfail if attempt < MAX_RERUNS else 0
                res = self.run_session(self.mutant_tree, s, m.name, focus=sfocus, only=focus_only,
                                       maxfail=maxfail, deselect=[n for n in desel if "::" in n])
                if sfocus and not focus_only and res.focus_matched == 0:
                    notes.append(f"focus {', '.join(sfocus)} matched no test")
                if res.timed_out:
                    return {"verdict": "timeout", "by": [], "unconfirmed": unconfirmed, "mode": mode,
                            "seconds": time.monotonic() - t0, "notes": notes + [f"{s.name} timed out: {res.log}"]}
                fails = [n for n in res.failed if n not in unconfirmed and n not in deselect_all]
                for i in range(0, len(fails), CONFIRM_BATCH):
                    confirmed, why = self.confirm(s, f"{m.name}-confirm", fails[i:i + CONFIRM_BATCH])
                    unconfirmed.update(why)
                    if confirmed:
                        return {"verdict": "killed", "by": confirmed, "unconfirmed": unconfirmed, "mode": mode,
                                "seconds": time.monotonic() - t0, "notes": notes}
                if not (res.stopped_early and fails):
                    break  # the session ran to its end: nothing (more) kills in it
        return {"verdict": "survived", "by": [], "unconfirmed": unconfirmed, "mode": mode,
                "seconds": time.monotonic() - t0, "notes": notes}

    # ------------------------------------------------------------------ the run
    def say(self, msg):
        print(msg, file=sys.stderr, flush=True)

    def prepare(self):
        if os.path.exists(self.workdir):
            for sub in ("pristine", "mutant", "logs", "conformance-reports"):
                p = os.path.join(self.workdir, sub)
                if os.path.exists(p):
                    shutil.rmtree(p)
        os.makedirs(self.logs)
        base_py, site = main_venv()
        sha = resolve(self.args.rev if not self.args.worktree else "HEAD")
        self.revision = f"the working tree on {sha[:7]}" if self.args.worktree else sha[:7]
        extract_source(self.pristine.repo, sha, self.args.worktree)
        # every mutant must apply before anything runs
        problems = []
        for m in self.mutants:
            try:
                m.apply(self.pristine.repo, write=False)
            except NoLongerApplies as e:
                problems.append(str(e))
        if problems:
            raise NoLongerApplies("\n".join(problems))
        for t in (self.pristine, self.mutant_tree):
            os.makedirs(t.root, exist_ok=True)
            t.make_venv(base_py, site)
        self.pristine.finish()
        self.pristine.verify()

    def run(self):
        t_start = time.monotonic()
        started = time.strftime("%Y-%m-%d %H:%M %Z")
        self.prepare()
        if not self.args.no_baseline:
            self.baseline()
        results = []
        for m in self.mutants:
            self.say(f"mutant {m.name}: {m.description}")
            self.mutant_tree.fresh_repo_from(self.pristine.repo)
            where = m.apply(self.mutant_tree.repo)
            self.mutant_tree.finish()
            self.mutant_tree.verify([(f, new) for f, _, new in m.edits])
            r = {"name": m.name, "description": m.description, "where": [f"{f}:{n}" for f, n in where],
                 "suites": {}}
            for suite in self.suites:
                r["suites"][suite] = self.judge(m, suite)
                v = r["suites"][suite]
                self.say(f"  {suite}: {v['verdict']}" + (f" by {v['by'][0]}" if v["by"] else "") +
                         f" ({v['seconds']:.0f}s)")
            results.append(r)
        doc = {"revision": self.revision, "started": started, "minutes": round((time.monotonic() - t_start) / 60, 1),
               "suites": self.suites, "maxfail": self.args.maxfail, "focus_only": self.args.focus_only,
               "baseline": not self.args.no_baseline,
               "broken_here": {s: sorted(v) for s, v in self.broken_here.items()}, "mutants": results}
        with open(os.path.join(self.workdir, "results.json"), "w") as f:
            json.dump(doc, f, indent=1)
        if self.args.json:
            with open(self.args.json, "w") as f:
                json.dump(doc, f, indent=1)
        return doc



# ============================================================================================ report
def report(doc):
    suites = doc["suites"]
    lines = [f"Mutation check of {doc['revision']} ({doc['started']}, {doc['minutes']} min; "
             f"{'baseline run' if doc['baseline'] else 'no baseline'}; "
             f"{'focus tests only' if doc['focus_only'] else 'whole suites, focus tests first'}; "
             f"maxfail {doc['maxfail'] or 'off'})", "",
             "| mutant | description | " + " | ".join(suites) + " | killed by ≥ 2 |",
             "|---|---|" + "---|" * len(suites) + "---|"]
    short = []
    for r in doc["mutants"]:
        cells, kills = [], 0
        for s in suites:
            v = r["suites"][s]
            if v["verdict"] == "killed":
                kills += 1
                cells.append("killed")
            elif v["verdict"] == "timeout":
                cells.append("**timeout**")
            else:
                cells.append("**survived**")
            if v["mode"].startswith("focus only"):
                cells[-1] += " (focus only)"
        two = "yes" if kills >= 2 else "**no**"
        if kills < 2:
            short.append(r["name"])
        lines.append(f"| `{r['name']}` | {r['description']} | " + " | ".join(cells) + f" | {two} |")
    lines += ["", f"Killed by fewer than two suites: {', '.join(short) if short else 'none'}.", "",
              "Details (the first confirmed killing test per suite; a kill = fails twice on the mutant, passes on "
              "the unmutated copy):", ""]
    for r in doc["mutants"]:
        lines.append(f"- `{r['name']}` ({', '.join(r['where'])})")
        for s in suites:
            v = r["suites"][s]
            by = (" by " + ", ".join(f"`{n}`" for n in v["by"][:3])) if v["by"] else ""
            extra = ""
            if v["unconfirmed"]:
                extra = f"; {len(v['unconfirmed'])} unconfirmed failure(s)"
            if v["notes"]:
                extra += "; " + "; ".join(v["notes"])
            lines.append(f"  - {s}: {v['verdict']}{by} ({v['mode']}; {v['seconds']:.0f}s{extra})")
    broken = {s: v for s, v in doc["broken_here"].items() if v}
    if broken:
        lines += ["", "Failing on the unmutated copy here (deselected from the mutant runs):", ""]
        for s, v in broken.items():
            lines.append(f"- {s}: " + ", ".join(f"`{n}`" for n in v))
    return "\n".join(lines) + "\n"


# ============================================================================================ main
def main(argv=None):
    ap = argparse.ArgumentParser(prog="tools/mutants.py", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rev", default="HEAD", help="revision under test (default HEAD)")
    ap.add_argument("--worktree", action="store_true", help="test the working tree (tracked + untracked files)")
    ap.add_argument("--only", default="", help="comma-separated mutant names")
    ap.add_argument("--suites", default=",".join(SUITE_NAMES), help="comma-separated: unit,integration,conformance")
    ap.add_argument("--focus-only", action="store_true", help="run only each mutant's focus tests (less honest)")
    ap.add_argument("--maxfail", type=int, default=1, help="stop a session after N failures, confirm them, go on "
                    "without them if none is confirmed (0: never stop early; default 1)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the baseline run on the unmutated copy")
    ap.add_argument("--session-timeout", type=int, default=3600, help="seconds per pytest session (default 3600)")
    ap.add_argument("--workdir", default="/tmp/ocirun-mutants", help="scratch directory (default /tmp/ocirun-mutants)")
    ap.add_argument("--output", help="also write the markdown report to FILE")
    ap.add_argument("--json", help="also write every detail as JSON to FILE")
    ap.add_argument("--table", default=TABLE, help="the mutants (default tools/mutants.toml)")
    ap.add_argument("--check", action="store_true", help="only check that every mutant applies to the revision")
    ap.add_argument("--list", action="store_true", help="list the mutants and where they apply")
    args = ap.parse_args(argv)
    args.suites = [s for s in args.suites.split(",") if s]
    for s in args.suites:
        if s not in SUITE_NAMES:
            ap.error(f"unknown suite {s!r}")
    mutants = load_mutants(args.table)
    if args.only:
        want = args.only.split(",")
        unknown = [n for n in want if n not in {m.name for m in mutants}]
        if unknown:
            ap.error(f"unknown mutant(s): {', '.join(unknown)}")
        mutants = [m for m in mutants if m.name in want]
    if args.check or args.list:
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "repo")
            extract_source(src, resolve(args.rev), args.worktree)
            bad = 0
            for m in mutants:
                try:
                    where = m.apply(src, write=False)
                    if args.list:
                        print(f"{m.name:32} {', '.join(f'{f}:{n}' for f, n in where)}\n{'':32} {m.description}")
                except NoLongerApplies as e:
                    print(e, file=sys.stderr)
                    bad += 1
        if bad:
            return 2
        if args.check:
            print(f"all {len(mutants)} mutants apply to "
                  f"{'the working tree' if args.worktree else resolve(args.rev)[:7] + ' (' + args.rev + ')'}")
        return 0
    if os.geteuid() != 0:
        ap.error("needs root: the integration and conformance suites create real containers")
    h = Harness(args, mutants)
    try:
        doc = h.run()
    except NoLongerApplies as e:
        print(e, file=sys.stderr)
        return 2
    text = report(doc)
    sys.stdout.write(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
