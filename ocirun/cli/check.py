"""ocirun check [--strict] [--format text|json] [--bundle|-b DIR | DIR]

Validate a bundle's config.json without creating anything, one finding per line with its JSON pointer:

    error      create/run would refuse the config (schema, runc's semantic rules, and on this host: a missing
               rootfs, namespace type, cgroup controller or file, LSM, seccomp action...)
    warning    create runs it but warns (an unknown capability, one outside the bounding set, a relative mount
               destination...)
    extension  with --strict: a value only runc's leniency allows (spec/extensions.json), which the official
               runtime-spec schema refuses; and every other departure from the official schema

Exit status: 0 create would accept (and, with --strict, the config is valid as the official schema says);
1 create would refuse, or the bundle cannot be read; 2 with --strict only: create would accept, but the
config uses extensions beyond the official schema.
`check` runs create's own checks (the same code), so the two never disagree on what is refused.
"""
import copy
import os
import sys

from . import need_args, root_of
from ..errors import OciError, UsageError

USAGE = "[command options] [<bundle>]"
FLAGS = {"strict": "bool", "format": "str", "bundle": "str", "b": "bundle", "help": "bool", "h": "help"}


def run(g, fl, args):
    need_args(args, 0, "check", USAGE, at_most=1)
    fmt = fl.format or "text"
    if fmt not in ("text", "json"):
        raise UsageError(f"invalid format {fmt!r} (text or json)")
    if args and fl.bundle:
        raise UsageError("give the bundle either as --bundle or as an argument, not both")
    bundle = os.path.abspath(fl.bundle or (args[0] if args else "."))
    found = check_bundle(bundle, strict=bool(fl.strict), systemd=bool(g.systemd_cgroup), root=root_of(g))
    write(found, bundle, bool(fl.strict), fmt)
    return exit_code(found)


def exit_code(found):
    sev = {f[0] for f in found}
    return 1 if "error" in sev else 2 if "extension" in sev else 0


def check_bundle(bundle, strict=False, systemd=False, root=None):
    """[(severity, pointer, message)] for the bundle's config.json, in the order create meets them."""
    from .. import config as C, extensions, semantics, validate as V

    path = os.path.join(bundle, "config.json")
    try:
        raw = C.read_config(path)
        doc = C.parse_doc(raw, path)
    except OciError as e:
        return [("error", "/", str(e))]
    out = []
    original = copy.deepcopy(doc) if strict else None
    notes = extensions.normalize(doc, raw)
    problems = V.config_problems(doc)
    out += [("error", *_split(p)) for p in problems]
    if not problems:
        out += [("error", *_split(p)) for p in semantics.problems(doc)]
    out += [("warning", *_split(w, pointer=False)) for w in semantics.warnings(doc) if not problems]
    if strict:
        out += _strict(original, notes)
    if any(f[0] == "error" for f in out):
        return out
    cfg = C.parse(doc)
    host = _host(cfg, systemd)
    out += host
    if not any(f[0] == "error" for f in host):
        err = _preflight(bundle, systemd, root)
        if err:
            out.append(("error", *_split(err)))
    return out


def _strict(original, notes):
    from .. import extensions, validate as V

    out = []
    errs = V.strict_config_errors(original)
    by_ptr = {}
    for e in errs:
        by_ptr.setdefault(V.pointer(list(e.absolute_path)), (e.instance, e))
    used = dict(extensions.uses(original, {p: v[0] for p, v in by_ptr.items()}))
    for ptr, ext in notes:
        if ext == "null-as-absent":
            used.setdefault(ptr, ext)
    for ptr, (value, e) in by_ptr.items():
        if ptr in used:
            continue
        if any(ptr.startswith(p + "/") for p, x in used.items() if x == "null-as-absent"):
            continue
        msg = V.format_errors([e])
        out.append(("extension", ptr, f"not valid by the official runtime-spec schema: "
                    f"{msg[0].partition(': ')[2] if msg else e.message}"))
    for ptr, ext in sorted(used.items()):
        what = "null" if ext == "null-as-absent" else V.show(_at(original, ptr))
        out.append(("extension", ptr, f"{what} uses the extension {ext!r} (spec/extensions.json); "
                    f"the official runtime-spec schema refuses it"))
    return out


def _at(doc, ptr):
    node = doc
    for part in ptr.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError):
            return None
    return node


def _host(cfg, systemd):
    from .. import hostcheck

    try:
        return list(hostcheck.findings(cfg, systemd))
    except OciError as e:
        return [("error", *_split(str(e)))]


def _preflight(bundle, systemd, root):
    """create's own checks before it makes anything (the rootfs, namespaces, LSMs, rlimits, ids...): the first
    refusal's text, or None. Warnings are create's to print, not check's (they are in the findings already)."""
    from .. import log
    from ..container import Container, Options
    from ..create import Creator

    saved = dict(log._cfg)
    log.configure(os.devnull, "text", False)  # create's warnings: already findings of their own
    try:
        Creator(Container("ocirun-check", root), bundle, Options(root=root, systemd_cgroup=systemd), None).load()
    except OciError as e:
        return str(e)
    finally:
        log._cfg.update(saved)
    return None


def _split(line, pointer=True):
    """'config.json: /a/b: msg' or '/a/b: msg' or 'a.b[2]: msg' -> (pointer, msg)."""
    for prefix in ("config.json: ",):
        if line.startswith(prefix):
            line = line[len(prefix):]
    head, sep, rest = line.partition(": ")
    if sep and head.startswith("/") and " " not in head:
        return head, rest
    if sep and " " not in head and head[:1].isalpha():
        import re

        ptr = "/" + re.sub(r"\[(\d+)\]", r"/\1", head).replace(".", "/")
        if not pointer or head.split(".")[0].split("[")[0] in ("process", "linux", "mounts", "root", "hooks",
                                                                 "hostname", "domainname", "annotations"):
            return ptr, rest
    return "/", line


def write(found, bundle, strict, fmt):
    if fmt == "json":
        from .. import jsonio

        doc = {"bundle": bundle, "strict": strict, "exitCode": exit_code(found),
               "findings": [{"severity": s, "pointer": p, "message": m} for s, p, m in found]}
        sys.stdout.write(jsonio.dumps(doc, indent=2) + "\n")
        return
    for s, p, m in found:
        sys.stdout.write(f"{s}: {p}: {m}\n")
    if not found:
        sys.stdout.write("ok: create would accept this config\n" if not strict else
                         "ok: create would accept this config, and it is valid as the official schema says\n")
