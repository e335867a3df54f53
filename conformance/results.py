"""Render RESULTS.md from reports/*.json: python -m conformance.results [main-report] [other reports...]

The first report gets the full table; the others contribute their summary line, and each is compared with the
first (requirements whose outcome differs).
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


def render(main, others, command, notes=""):
    out = ["# Conformance results", "",
           f"Made by `{command}` (runtime-spec v1.3 suite in `conformance/`, see README.md).", "",
           "## Summary lines", "", "```", main["summary"]]
    out += [o["summary"] for o in others]
    out += ["```", ""]
    if notes:
        out += [notes, ""]
    out += [f"## {main['name']}: outcome per requirement", ""]
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
        out += [f"## Where {main['name']} differs from {o['name']}", "",
                f"| requirement | {main['name']} | {o['name']} | {main['name']} reason |", "|---|---|---|---|"]
        for n in diff:
            ra, rb = a.get(n, {}), b.get(n, {})
            out.append(f"| `{n}` | {ra.get('outcome', '-')} | {rb.get('outcome', '-')} | "
                       f"{first_line(ra.get('message')) if ra.get('outcome') != 'pass' else ''} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    names = sys.argv[1:] or ["ocirun", "runc"]
    main = load(names[0])
    others = [load(n) for n in names[1:] if os.path.exists(os.path.join(HERE, "reports", f"{n}.json"))]
    print(render(main, others, "conformance/run --runtime " + main["runtime"]))
