#!/usr/bin/env python3
"""Print every PromQL expression of a Grafana dashboard, one per line, ready to run.

    tests/observability/exprs.py grafana/mailtls.json            # one expr per line
    tests/observability/exprs.py --with-ids grafana/mailtls.json # "<panel id>\t<refId>\t<expr>"
    tests/observability/exprs.py --as-rules grafana/mailtls.json # a rules file for promtool

Grafana variables are replaced so the result is plain PromQL for Prometheus' HTTP API:
multi-value template variables ($target, ${mx}, ${mx:regex}, [[target]]) by `.*`, interval
variables ($__rate_interval, $__interval) by 5m, $__range by 1h. The series selectors inside
`label_values(...)` variable queries are printed too (ref "var:<name>"), since those queries
run against Prometheus as well (a one-argument `label_values(label)` has no selector and is
left out). `$1`, `${1}`: capture-group references (label_replace) are not variables and stay,
as in Grafana. Newlines inside an expression become spaces.
Standard library only (python3 >= 3.8).
"""
import json
import re
import sys

SUBSTITUTIONS = [
    (r"\$\{__rate_interval\}|\$__rate_interval\b", "5m"),
    (r"\$\{__interval\}|\$__interval\b", "5m"),
    (r"\$\{__range\}|\$__range\b", "1h"),
    (r"\$\{__range_s\}|\$__range_s\b", "3600"),
    (r"\$\{__interval_ms\}|\$__interval_ms\b", "300000"),
]
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)(?::\w+)?\]\]")
LABEL_VALUES = re.compile(r"^\s*label_values\s*\((.*),\s*([A-Za-z_]\w*)\s*\)\s*$", re.S)
LABEL_VALUES_NO_SELECTOR = re.compile(r"^\s*label_values\s*\(\s*[A-Za-z_]\w*\s*\)\s*$")


def substitute(expr, variables):
    """Replace Grafana variables; `variables` maps template variable names to a value."""
    for pattern, value in SUBSTITUTIONS:
        expr = re.sub(pattern, value, expr)

    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name.isdigit():  # label_replace capture group reference, not a variable
            return m.group(0)
        if name not in variables:
            raise ValueError(f"unknown variable ${name} in: {expr}")
        return variables[name]

    expr = VARIABLE.sub(repl, expr)
    return " ".join(expr.split())


def iter_panels(panels):
    for p in panels:
        yield p
        # collapsed rows keep their panels inside
        yield from iter_panels(p.get("panels", []))


def template_variables(dash):
    """Name -> substitute value for the dashboard's own template variables."""
    out = {}
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") in ("query", "custom", "constant", "textbox", "interval"):
            out[v["name"]] = ".*" if v.get("type") != "interval" else "5m"
        elif v.get("type") == "datasource":
            out[v["name"]] = v["name"]
    return out


def dashboard_exprs(dash):
    """Yield (panel id or "var:<name>", refId, raw expr, substituted expr)."""
    variables = template_variables(dash)
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = LABEL_VALUES.match(q)
        if not m and LABEL_VALUES_NO_SELECTOR.match(q):
            continue  # label_values(label): no series selector to run
        selector = m.group(1) if m else q
        yield ("var:" + v["name"], "query", q, substitute(selector, variables))
    for p in iter_panels(dash.get("panels", [])):
        for t in p.get("targets", []):
            raw = t.get("expr", "")
            yield (p.get("id"), t.get("refId"), raw, substitute(raw, variables) if raw else "")


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    flags = {a for a in argv if a.startswith("--")}
    if len(args) != 1 or flags - {"--with-ids", "--as-rules"}:
        print(__doc__, file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as f:
        dash = json.load(f)
    rows = list(dashboard_exprs(dash))
    if "--as-rules" in flags:
        print("groups:\n  - name: dashboard_exprs\n    rules:")
        for i, (pid, ref, _, expr) in enumerate(rows):
            print(f"      # panel {pid} {ref}")
            print(f"      - record: dashboard:expr_{i}")
            print(f"        expr: {json.dumps(expr)}")
        return 0
    for pid, ref, _, expr in rows:
        print(f"{pid}\t{ref}\t{expr}" if "--with-ids" in flags else expr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
