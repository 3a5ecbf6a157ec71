#!/usr/bin/env python3
"""Lint the alert rules against their unit tests.

    check_rules.py RULES.yml TESTS.yml

Every alerting rule must have `severity` warning or critical and non-empty `summary` and
`description` annotations; every alert name must be tested in TESTS.yml both firing
(a non-empty exp_alerts) and not firing (exp_alerts: []), and each severity an alert name
has must appear in some expected firing alert. Needs PyYAML (Debian: python3-yaml).
"""
import sys

try:
    import yaml
except ImportError:
    print("SKIP: PyYAML not installed (apt-get install python3-yaml)")
    sys.exit(0)


def main(rules_path, tests_path):
    errors = []
    rules = yaml.safe_load(open(rules_path, encoding="utf-8"))
    tests = yaml.safe_load(open(tests_path, encoding="utf-8"))
    severities = {}
    for group in rules["groups"]:
        for r in group["rules"]:
            name = r.get("alert")
            if not name:
                continue
            sev = (r.get("labels") or {}).get("severity")
            if sev not in ("info", "warning", "critical"):
                errors.append(f"{name}: severity {sev!r} is not info/warning/critical")
            severities.setdefault(name, set()).add(sev)
            ann = r.get("annotations") or {}
            for key in ("summary", "description"):
                if not str(ann.get(key, "")).strip():
                    errors.append(f"{name}: no {key} annotation")
    firing, quiet, fired_sev = set(), set(), {}
    for t in tests["tests"]:
        for case in t.get("alert_rule_test") or []:
            exp = case.get("exp_alerts") or []
            (firing if exp else quiet).add(case["alertname"])
            for a in exp:
                fired_sev.setdefault(case["alertname"], set()).add(a.get("exp_labels", {}).get("severity"))
    for name, sevs in sorted(severities.items()):
        if name not in firing:
            errors.append(f"{name}: no test where it fires")
        if name not in quiet:
            errors.append(f"{name}: no test where it stays quiet")
        missing = sevs - fired_sev.get(name, set())
        if missing:
            errors.append(f"{name}: severity {sorted(missing)} never fires in a test")
    for name in sorted((firing | quiet) - set(severities)):
        errors.append(f"tests mention unknown alert {name}")
    for e in errors:
        print("FAIL:", e)
    print(f"rules: {len(severities)} alert names, {sum(len(s) for s in severities.values())} "
          f"alert rules; {len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
