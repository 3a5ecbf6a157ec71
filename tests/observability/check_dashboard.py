#!/usr/bin/env python3
"""Structural checks of the Grafana dashboard and of the metric names in PromQL.

    check_dashboard.py DASHBOARD.json METRICS.txt [RULES.yml]

Dashboard: valid JSON, schemaVersion >= 39, a `datasource` variable of type prometheus used by
every panel and query, query variables `target` and `mx` (label_values), unique integer panel
ids, every query with a unique refId and a non-empty expr, variables that resolve.
Metric names: every metric used in a dashboard expr (and, with RULES.yml, in an alert expr)
starts with `mailtls_` or is `up`, and is listed in METRICS.txt. Exits 1 on any failure.
Standard library only; RULES.yml is read with PyYAML when present, else by a line scanner
for the `expr: |` blocks used in deploy/prometheus/mailtls.rules.yml.
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from exprs import dashboard_exprs, iter_panels  # noqa: E402

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "offset", "bool", "inf", "nan", "atan2"}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
IDENT = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?")


def metric_names(expr):
    """Metric names used in a PromQL expression (a lexer-level approximation)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    names = set(re.findall(r'__name__\s*=\s*"([^"]*)"', expr))
    s = re.sub(r"\{[^{}]*\}", " ", s)          # label matchers
    s = re.sub(r"\[[^\[\]]*\]", " ", s)        # ranges, subqueries
    s = GROUPING.sub(" ", s)                   # by (...), on (...), group_left (...)
    for m in IDENT.finditer(s):
        name, call = m.group(1), m.group(2)
        if call or name in KEYWORDS:
            continue
        names.add(name)
    return names


def rule_exprs(path):
    try:
        import yaml  # type: ignore
    except ImportError:
        yaml = None
    if yaml:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        return [(r.get("alert") or r.get("record"), r["expr"])
                for g in doc["groups"] for r in g["rules"]]
    out, lines = [], open(path, encoding="utf-8").read().split("\n")
    name = None
    for i, ln in enumerate(lines):
        m = re.match(r"\s*- (?:alert|record): (\S+)", ln)
        if m:
            name = m.group(1)
        m = re.match(r"(\s*)expr: \|\s*$", ln)
        if m:
            ind, body = len(m.group(1)), []
            for nxt in lines[i + 1:]:
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= ind:
                    break
                body.append(nxt)
            out.append((name, "\n".join(body)))
        elif re.match(r"\s*expr: \S", ln):
            out.append((name, ln.split("expr:", 1)[1].strip()))
    return out


def main(argv):
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    errors = []
    err = errors.append
    with open(argv[0], encoding="utf-8") as f:
        dash = json.load(f)
    known = {ln.split("#", 1)[0].strip() for ln in open(argv[1], encoding="utf-8")} - {""}

    if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 39:
        err(f"schemaVersion {dash.get('schemaVersion')!r} < 39")
    for key in ("uid", "title"):
        if not dash.get(key):
            err(f"dashboard has no {key}")
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        err("no template variable `datasource` of type datasource / prometheus")
    for name in ("target", "mx"):
        v = variables.get(name)
        q = v and (v["query"].get("query") if isinstance(v.get("query"), dict) else v.get("query"))
        if not v or v.get("type") != "query" or not q or not q.startswith("label_values("):
            err(f"no query variable `{name}` using label_values(...)")
        elif (v.get("datasource") or {}).get("uid") != "${datasource}":
            err(f"variable `{name}` does not use ${{datasource}}")

    ids = []
    for p in iter_panels(dash.get("panels", [])):
        pid, title = p.get("id"), p.get("title", "?")
        if not isinstance(pid, int):
            err(f"panel {title!r}: id {pid!r} is not an integer")
        ids.append(pid)
        if "gridPos" not in p:
            err(f"panel {pid} {title!r}: no gridPos")
        if p.get("type") == "row":
            continue
        if (p.get("datasource") or {}).get("uid") != "${datasource}":
            err(f"panel {pid} {title!r}: datasource is not ${{datasource}}")
        targets = p.get("targets") or []
        if not targets:
            err(f"panel {pid} {title!r}: no queries")
        refs = [t.get("refId") for t in targets]
        if any(not r for r in refs) or len(set(refs)) != len(refs):
            err(f"panel {pid} {title!r}: refIds missing or repeated: {refs}")
        for t in targets:
            if not (t.get("expr") or "").strip():
                err(f"panel {pid} {title!r} {t.get('refId')}: empty expr")
            if (t.get("datasource") or {}).get("uid") not in (None, "${datasource}"):
                err(f"panel {pid} {title!r} {t.get('refId')}: datasource is not ${{datasource}}")
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        err(f"duplicate panel ids: {dup}")

    checked = []
    try:
        for pid, ref, _, expr in dashboard_exprs(dash):
            checked.append((f"dashboard panel {pid} {ref}", expr))
    except ValueError as e:
        err(str(e))
    if len(argv) == 3:
        checked += [(f"rule {name}", expr) for name, expr in rule_exprs(argv[2])]
    used = set()
    for where, expr in checked:
        for name in metric_names(expr):
            used.add(name)
            if not (name.startswith("mailtls_") or name == "up"):
                err(f"{where}: metric {name!r} is neither mailtls_* nor up")
            elif name != "up" and name not in known:
                err(f"{where}: metric {name!r} is not in {argv[1]}")

    for e in errors:
        print("FAIL:", e)
    print(f"dashboard: {len(ids)} panels, {len(checked)} expressions checked, "
          f"{len(used)} metric names used; {len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
