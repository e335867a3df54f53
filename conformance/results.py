"""Render RESULTS.md from reports/*.json: python -m conformance.results [main-report] [other reports...]

The first report gets the full table; the others contribute their summary line, and each is compared with the
first (requirements whose outcome differs). Each report's mode (root, or rootless: `conformance/run --rootless`)
is shown with it.

    python -m conformance.results --rootless [ocirun-rootless runc-rootless ...]

renders RESULTS.md's rootless section instead: the command, the summary lines, the skips grouped by reason (each
`rootless:` reason is what the test needs that no user namespace gives), every failure, and where the runtimes
differ.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def load(name):
    with open(os.path.join(HERE, "reports", f"{name}.json")) as f:
        return json.load(f)


def first_line(msg):
    line = (msg or "").strip().splitlines()[0] if (msg or "").strip() else ""
    return line.replace("|", "\\|")[:160]


def mode(report):
    return report.get("mode", "root")  # reports from before the rootless mode are root runs


def command_of(report):
    flag = " --rootless" if mode(report) == "rootless" else ""
    return f"conformance/run{flag} --runtime {report['runtime']}"


def render(main, others, command, notes=""):
    out = ["# Conformance results", "",
           f"Made by `{command}` (runtime-spec v1.3 suite in `conformance/`, see README.md).", "",
           "## Summary lines", "", "```", main["summary"]]
    out += [o["summary"] for o in others]
    out += ["```", ""]
    if notes:
        out += [notes, ""]
    title = f"## {main['name']}: outcome per requirement"
    out += [title + (" (rootless mode)" if mode(main) == "rootless" else ""), ""]
    sections = {}
    for r in main["results"]:
        sections.setdefault(f"{r['doc']}#{r['section']}", []).append(r)
    order = {"runtime.md": 0, "runtime-linux.md": 1, "config.md": 2, "config-linux.md": 3}
    for sec in sorted(sections, key=lambda k: (order.get(k.split("#")[0], 9), k)):
        out += [f"### {sec}", "", "| requirement | level | outcome | reason |", "|---|---|---|---|"]
        for r in sorted(sections[sec], key=lambda r: r["name"]):
            reason = first_line(r["message"]) if r["outcome"] != "pass" else ""
            out.append(f"| `{r['name']}` | {r['level']} | {r['outcome']} | {reason} |")
        out.append("")
    for o in others:
        a = {r["name"]: r for r in main["results"]}
        b = {r["name"]: r for r in o["results"]}
        diff = [n for n in sorted(set(a) | set(b)) if a.get(n, {}).get("outcome") != b.get(n, {}).get("outcome")]
        modes = f" ({mode(main)} / {mode(o)} mode)" if mode(main) != mode(o) else ""
        out += [f"## Where {main['name']} differs from {o['name']}{modes}", "",
                f"| requirement | {main['name']} | {o['name']} | {main['name']} reason |", "|---|---|---|---|"]
        for n in diff:
            ra, rb = a.get(n, {}), b.get(n, {})
            out.append(f"| `{n}` | {ra.get('outcome', '-')} | {rb.get('outcome', '-')} | "
                       f"{first_line(ra.get('message')) if ra.get('outcome') != 'pass' else ''} |")
        out.append("")
    return "\n".join(out)


def _why(message):
    """A skip's reason without the test's own subject: 'rootless: <what>: <why>' -> 'rootless: <why>'."""
    first = (message or "").strip().splitlines()[0] if (message or "").strip() else ""
    if first.startswith("rootless: ") and ": " in first[len("rootless: "):]:
        return "rootless: " + first[len("rootless: "):].split(": ", 1)[1]
    return first


def _fail_reason(message):
    """A failure's first line; for "create failed:" and the like, the runtime's own error from its stderr."""
    import re
    first = first_line(message)
    if first.rstrip().endswith("failed:"):
        m = re.search(r"stderr='(.*?)'\n", message or "", re.S)
        said = (m.group(1) if m else "").replace("\\n", "\n").strip().splitlines()
        if said:
            err = said[-1]
            err = err.split('msg="', 1)[1].rstrip('"') if 'msg="' in err else err
            err = err.replace(chr(92) * 2 + '"', '"')  # the \\" of a repr'd stderr
            first = f"{first} {first_line(err)}"
    return first[:240]


def _skips(report):
    """{test: reason} with the run's uid taken out, to compare the skips of two runs."""
    import re
    return {x["name"]: re.sub(r"uid \d+", "uid N", _why(x["message"]))
            for x in report["results"] if x["outcome"] == "skip"}


def render_rootless(reports, heading="## Rootless mode (`conformance/run --rootless`)"):
    """RESULTS.md's rootless section from the rootless reports: the skips grouped by reason (what follows the test's
    own subject in 'rootless: <what>: <why>'), every failure, and each runtime against its own root run
    (reports/<runtime>.json) when there is one."""
    out = [heading, "", "Made by (as root: a temporary user with subordinate ranges runs the suite, then goes):", "",
           "```"]
    out += [command_of(r) for r in reports]
    out += ["```", "", "```"]
    out += [r["summary"] + (f"   ({r['user']})" if r.get("user") else "") for r in reports]
    out += ["```", ""]
    for i, r in enumerate(reports):
        skips = [x for x in r["results"] if x["outcome"] == "skip"]
        same = [o["name"] for o in reports[:i] if _skips(o) == _skips(r)]
        if same:
            out += [f"### {r['name']}: skips", "", f"The same {len(skips)} skips, for the same reasons, as {same[0]}.",
                    ""]
        else:
            groups = {}
            for x in skips:
                groups.setdefault(_why(x["message"]), []).append(x["name"])
            out += [f"### {r['name']}: skips by reason ({len(skips)})", "", "| reason | tests |", "|---|---|"]
            for why in sorted(groups, key=lambda w: (not w.startswith("rootless:"), -len(groups[w]), w)):
                names = ", ".join(f"`{n}`" for n in sorted(groups[why]))
                out.append(f"| {why.replace('|', chr(92) + '|')} ({len(groups[why])}) | {names} |")
            out.append("")
        fails = sorted((x for x in r["results"] if x["outcome"] == "fail"), key=lambda x: x["name"])
        out += [f"### {r['name']}: failures ({len(fails)})", ""]
        if fails:
            out += ["| requirement | level | reason |", "|---|---|---|"]
            out += [f"| `{x['name']}` | {x['level']} | {_fail_reason(x['message']).replace('|', chr(92) + '|')} |"
                    for x in fails]
        out.append("")
        root_name = r["name"].removesuffix("-rootless")
        if root_name != r["name"] and os.path.exists(os.path.join(HERE, "reports", f"{root_name}.json")):
            root = load(root_name)
            a = {x["name"]: x for x in root["results"]}
            b = {x["name"]: x for x in r["results"]}
            moved = {}
            for n in sorted(set(a) | set(b)):
                key = (a.get(n, {}).get("outcome", "-"), b.get(n, {}).get("outcome", "-"))
                if key[0] != key[1]:
                    moved.setdefault(key, []).append(n)
            out += [f"### {r['name']} against its root run ({root['summary']})", ""]
            if not moved:
                out += ["The same outcome for every requirement.", ""]
                continue
            out += ["| root -> rootless | tests |", "|---|---|"]
            for (ra, rb), names in sorted(moved.items(), key=lambda kv: (kv[0][1] != "skip", kv[0])):
                out.append(f"| {ra} -> {rb} ({len(names)}) | {', '.join(f'`{n}`' for n in names)} |")
            out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--rootless"]:
        names = args[1:] or ["ocirun-rootless", "runc-rootless"]
        print(render_rootless([load(n) for n in names if os.path.exists(os.path.join(HERE, "reports", f"{n}.json"))]))
        sys.exit(0)
    names = args or ["ocirun", "runc"]
    main = load(names[0])
    others = [load(n) for n in names[1:] if os.path.exists(os.path.join(HERE, "reports", f"{n}.json"))]
    print(render(main, others, command_of(main)))
