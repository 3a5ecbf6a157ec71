#!/usr/bin/env bash
# Checks everything under deploy/, grafana/ and the rule tests. Run from anywhere:
#   tests/observability/check.sh
# Needs promtool and amtool (Debian: prometheus, prometheus-alertmanager) and python3;
# uses jq, PyYAML and systemd-analyze when present and says SKIP otherwise.
# Opens no network connection and binds nothing. Exits non-zero if any check fails.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
obs=tests/observability
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
failures=0

step() {  # step "description" command...
  local what="$1"; shift
  if "$@" >"$tmp/out" 2>&1; then
    echo "ok    $what"
  else
    echo "FAIL  $what"
    sed 's/^/      /' "$tmp/out"
    failures=$((failures + 1))
  fi
}
skip() { echo "skip  $1"; }

for tool in promtool amtool python3; do
  command -v "$tool" >/dev/null || { echo "FAIL  $tool not found"; exit 1; }
done

# --- Prometheus rules ---------------------------------------------------------------------
step "promtool check rules deploy/prometheus/mailtls.rules.yml" \
  promtool check rules deploy/prometheus/mailtls.rules.yml
step "promtool test rules $obs/mailtls.rules.test.yml" \
  promtool test rules "$obs/mailtls.rules.test.yml"
step "every alert: severity, summary, description; tested firing and quiet" \
  python3 "$obs/check_rules.py" deploy/prometheus/mailtls.rules.yml "$obs/mailtls.rules.test.yml"

# --- Prometheus scrape configs (they load the rules file too) -----------------------------
step "promtool check config deploy/prometheus/prometheus.yml" \
  promtool check config deploy/prometheus/prometheus.yml
step "promtool check config deploy/prometheus/probe-scrape.yml" \
  promtool check config deploy/prometheus/probe-scrape.yml
for f in probe-sharded scheduled-sharded; do
  step "promtool check config deploy/prometheus/$f.yml" \
    promtool check config "deploy/prometheus/$f.yml"
done

# --- Alertmanager -------------------------------------------------------------------------
am=deploy/alertmanager/alertmanager.yml
step "amtool check-config $am" amtool check-config "$am"
route() {  # route "expected receivers" label=value...
  local want="$1"; shift
  amtool config routes test --config.file="$am" --verify.receivers="$want" "$@"
}
step "alertmanager routes: critical -> pager + email" \
  route mail-ops-pager,mail-ops-email severity=critical alertname=MailTLSDANEFailed target=example.org
step "alertmanager routes: warning -> email + webhook" \
  route mail-ops-email,mail-ops-webhook severity=warning alertname=MailTLSPKIXInvalid target=example.org

# --- Grafana dashboard --------------------------------------------------------------------
dash=grafana/mailtls.json
if command -v jq >/dev/null; then
  step "jq: $dash is valid JSON" jq empty "$dash"
else
  skip "jq not installed (python3 below parses the JSON)"
fi
step "dashboard structure; metric names in dashboard and rules are in $obs/metrics.txt" \
  python3 "$obs/check_dashboard.py" "$dash" "$obs/metrics.txt" deploy/prometheus/mailtls.rules.yml
python3 "$obs/exprs.py" --as-rules "$dash" >"$tmp/dashboard.rules.yml"
step "every dashboard expr parses as PromQL (promtool check rules on the exprs)" \
  promtool check rules "$tmp/dashboard.rules.yml"

# --- Kubernetes ---------------------------------------------------------------------------
deploy/kubernetes/gen-prometheusrule.sh --stdout >"$tmp/prometheusrule.yaml"
step "deploy/kubernetes/prometheusrule.yaml is up to date (gen-prometheusrule.sh)" \
  diff -u deploy/kubernetes/prometheusrule.yaml "$tmp/prometheusrule.yaml"
if python3 -c 'import yaml' 2>/dev/null; then
  step "YAML of kubernetes manifests and example configs parses; PrometheusRule spec == rules file" \
    python3 - <<'PY'
import glob, yaml, sys
bad = 0
for f in sorted(glob.glob("deploy/kubernetes/*.yaml") + glob.glob("deploy/kubernetes/*/*.yaml") + glob.glob("deploy/config/*.yml") + glob.glob("deploy/debian/*.yml")):
    for doc in yaml.safe_load_all(open(f)):
        if f.startswith("deploy/kubernetes/") and not (doc.get("apiVersion") and doc.get("kind")):
            print(f"{f}: no apiVersion/kind"); bad += 1
rule = yaml.safe_load(open("deploy/kubernetes/prometheusrule.yaml"))
if rule["spec"] != yaml.safe_load(open("deploy/prometheus/mailtls.rules.yml")):
    print("PrometheusRule spec differs from the rules file"); bad += 1
sys.exit(1 if bad else 0)
PY
  # The sharded StatefulSet: replicas, shard.count and the /probe routing modulus agree; the
  # /probe scrape config in the Secret is a valid Prometheus scrape config.
  step "deploy/kubernetes/sharded: replicas == shard.count == hashmod modulus; scrape config valid" \
    python3 - "$tmp" <<'PY'
import os, subprocess, sys, yaml
d = "deploy/kubernetes/sharded/"
docs = {}
for f in ("configmap.yaml", "statefulset.yaml", "probe-scrape-secret.yaml"):
    for doc in yaml.safe_load_all(open(d + f)):
        docs[doc["kind"]] = doc
replicas = docs["StatefulSet"]["spec"]["replicas"]
cfg = yaml.safe_load(docs["ConfigMap"]["data"]["mailtls.yml"])
jobs = yaml.safe_load(docs["Secret"]["stringData"]["scrape.yaml"])
moduli = [r["modulus"] for j in jobs for r in j.get("relabel_configs", []) if r.get("action") == "hashmod"]
args = docs["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]["args"]
bad = 0
if cfg["shard"]["count"] != replicas or moduli != [replicas]:
    print(f"replicas {replicas}, shard.count {cfg['shard']['count']}, hashmod moduli {moduli}"); bad += 1
if "--shard.index=$(POD_NAME)" not in args:
    print(f"StatefulSet args lack --shard.index=$(POD_NAME): {args}"); bad += 1
tmp = sys.argv[1]
open(os.path.join(tmp, "mailtls-sharded.yml"), "w").write(docs["ConfigMap"]["data"]["mailtls.yml"])
open(os.path.join(tmp, "probe-scrape.yml"), "w").write(yaml.safe_dump({"scrape_configs": jobs}))
r = subprocess.run(["promtool", "check", "config", os.path.join(tmp, "probe-scrape.yml")], capture_output=True, text=True)
if r.returncode:
    print(r.stdout + r.stderr); bad += 1
sys.exit(1 if bad else 0)
PY
else
  skip "PyYAML not installed: manifests not parsed"
fi

# --- Example configs against the exporter, when it has been built ------------------------
exporter=""
for b in target/release/mailtls_exporter target/debug/mailtls_exporter; do
  [ -x "$b" ] && { exporter="$b"; break; }
done
if [ -n "$exporter" ] && "$exporter" check-config --help >/dev/null 2>&1; then
  for c in deploy/config/example.yml deploy/config/sidecar.yml deploy/debian/mailtls_exporter.yml; do
    step "$exporter check-config --config.file=$c" "$exporter" check-config --config.file="$c"
  done
  if [ -f "$tmp/mailtls-sharded.yml" ]; then
    step "$exporter check-config on the sharded ConfigMap's config, --shard.index=mailtls-2" \
      "$exporter" check-config --config.file="$tmp/mailtls-sharded.yml" --shard.index=mailtls-2
  fi
else
  skip "exporter not built (or no check-config yet): deploy/config/*.yml, deploy/debian/*.yml not validated by it"
fi

# --- systemd unit -------------------------------------------------------------------------
# deploy/systemd/ (manual install) and deploy/debian/ (the package's unit; tests/deb.sh checks
# it again as installed).
for unit in deploy/systemd/mailtls_exporter.service deploy/debian/mailtls_exporter.service; do
  if command -v systemd-analyze >/dev/null; then
    # verify insists that ExecStart= exists; the binary is not installed here, so check a copy
    # that runs /bin/true instead and is otherwise identical.
    u="$tmp/unit/$(basename "$(dirname "$unit")")"
    mkdir -p "$u"
    sed -E 's#/usr(/local)?/bin/mailtls_exporter#/bin/true#g' "$unit" >"$u/mailtls_exporter.service"
    step "systemd-analyze verify $unit" systemd-analyze verify "$u/mailtls_exporter.service"
    # exposure score 0 (best) .. 10 (worst); fail above 2.0
    step "systemd-analyze security --offline $unit: exposure <= 2.0" \
      systemd-analyze security --offline=true --threshold=20 "$u/mailtls_exporter.service"
  else
    skip "systemd-analyze not installed: $unit not verified"
  fi
done

# --- not checkable here -------------------------------------------------------------------
skip "deploy/docker/Dockerfile: no Docker engine here, not built"
skip "deploy/kubernetes/*.yaml: no cluster or kubectl here, not applied (YAML parsed only)"

if [ "$failures" -gt 0 ]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
