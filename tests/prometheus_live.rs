//! Live observability test: a real Prometheus scrapes the real exporter, which probes the real
//! lab (Knot, Unbound, Postfix on 127.x; `tests/lab/`).
//!
//! What it proves:
//! - the scrape configs of `deploy/prometheus/` (`prometheus.yml`, job `mailtls`, and
//!   `probe-scrape.yml`, job `mailtls_probe`, with its `/probe` relabelling) work against the
//!   real exporter: every target is up and `/probe` series carry `target` = `instance` = the
//!   next hop, while a next hop outside `probe.allow` gets 403 and raises MailTLSExporterDown;
//! - every panel query and every template-variable query of `grafana/mailtls.json` succeeds and
//!   returns data (exceptions are listed in [`KNOWN_EMPTY_PANEL_QUERIES`] with their reason);
//! - `deploy/prometheus/mailtls.rules.yml` loads, every rule evaluates without error, exactly the
//!   alerts this lab should raise are pending or firing ([`expected_alerts`]) and healthy
//!   targets raise none;
//! - `tests/observability/metrics.txt` matches the live exposition, which Prometheus ingests
//!   unchanged, and `promtool check metrics` accepts `/metrics` and a `/probe` response.
//!
//! Not here: alert *timing* (`for:` durations; `tests/observability/mailtls.rules.test.yml`),
//! the verdicts themselves compared with Postfix (`tests/dane_lab.rs`).
//!
//! Needs root (the lab), `prometheus` and `promtool` (Debian package `prometheus`). Everything
//! binds and connects on 127.0.0.0/8 only. Run with `--nocapture` to see the summary.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::{json, Value};

/// The exporter address written in `deploy/prometheus/*.yml`; the test rewrites it to its own.
const DEPLOY_EXPORTER_ADDR: &str = "127.0.0.1:19725";

/// Scrape and rule evaluation interval of the test's Prometheus.
const INTERVAL: &str = "2s";

/// Upper bound for the whole test, start-up included.
const TEST_BUDGET: Duration = Duration::from_secs(75);

/// How long after every target's first results reached Prometheus the alert set is final:
/// two rule evaluations of [`INTERVAL`] plus a margin. Earlier, alerts may still be missing.
const ALERTS_SETTLE: Duration = Duration::from_secs(5);

/// Domains configured under `targets:` in the exporter (plus one `address:` target).
const DOMAIN_TARGETS: &[&str] = &[
    "good.test",            // healthy: 2 MX, DANE verified
    "s03.dane.test",        // DANE failed
    "badsig.test",          // TLSA RRset bogus: dns_failure
    "s14.dane.test",        // no usable TLSA record: unauthenticated
    "s02.dane.test",        // 2 usable records, only one matches
    "nostarttls.good.test", // no STARTTLS
    "enforce.sts.test",     // MTA-STS enforce policy, TLSRPT valid
    "redirect.sts.test",    // MTA-STS policy host redirects: policy invalid
];
/// The `address:` target of the exporter config.
const ADDRESS_TARGET: &str = "127.25.0.1";

/// Next hops Prometheus asks `/probe` for (job `mailtls_probe`); both healthy.
const PROBE_TARGETS: &[&str] = &["s01.dane.test", "[mx1.good.test]"];

/// A `/probe` target no `probe.allow` pattern matches: the exporter answers 403, the scrape
/// fails and MailTLSExporterDown must be pending for it (deploy/README.md).
const FORBIDDEN_PROBE_TARGET: &str = "forbidden.test";

/// Targets for which no alert at all may be pending or firing.
const HEALTHY_TARGETS: &[&str] = &[
    "good.test",
    "s01.dane.test",
    "[mx1.good.test]",
    "enforce.sts.test",
];

/// Grafana's built-in variables and what the test puts in their place.
const BUILTIN_VARIABLES: &[(&str, &str)] = &[
    ("__rate_interval", "1m"),
    ("__interval", "1m"),
    ("__interval_ms", "60000"),
    ("__range", "5m"),
    ("__range_s", "300"),
    ("__range_ms", "300000"),
];

/// Panel queries that may return nothing in this lab, keyed by a metric name in the query.
const KNOWN_EMPTY_PANEL_QUERIES: &[(&str, &str)] = &[
    ("mailtls_staged_dane_status", STAGED_WHY),
    ("mailtls_staged_deploy_safe_timestamp_seconds", STAGED_WHY),
    (
        "mailtls_staged_cert_not_after_timestamp_seconds",
        STAGED_WHY,
    ),
];

/// Why the staged families are absent here.
const STAGED_WHY: &str = "needs a `staged:` entry, which this lab config has none of; tests/rollover.rs exposes and checks it against dyn.test";

/// Exposed metric names that `metrics.txt` does not list (yet), with the reason.
const UNLISTED_EXPORTER_METRICS: &[(&str, &str)] = &[];

/// Names in `metrics.txt` that the live exporter does not expose here, with the reason.
const LISTED_BUT_ABSENT_METRICS: &[(&str, &str)] = &[
    ("mailtls_staged_tlsa_record_match", STAGED_WHY),
    ("mailtls_staged_dane_status", STAGED_WHY),
    ("mailtls_staged_deploy_safe_timestamp_seconds", STAGED_WHY),
    (
        "mailtls_staged_cert_not_after_timestamp_seconds",
        STAGED_WHY,
    ),
    ("mailtls_staged_file_error_info", STAGED_WHY),
];

/// Series Prometheus adds itself to a scraped job.
const PROMETHEUS_OWN_NAMES: &[&str] = &[
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
    "ALERTS",
    "ALERTS_FOR_STATE",
];

/// Alerts that may be pending or firing beyond [`expected_alerts`]: (alert, target, why).
const TOLERATED_ALERTS: &[(&str, &str, &str)] = &[];

/// One alert this lab must raise (pending or firing) in job `mailtls`.
struct ExpectedAlert {
    name: &'static str,
    severity: &'static str,
    /// Label pairs the alert must carry (besides `job`, `instance`, `severity`).
    labels: Vec<(&'static str, &'static str)>,
    /// `None`: job `mailtls`, instance = the exporter; `Some(i)`: job `mailtls_probe`,
    /// instance `i`.
    probe_instance: Option<&'static str>,
}

/// Every alert the exporter's targets must raise; nothing else may be pending or firing.
fn expected_alerts() -> Vec<ExpectedAlert> {
    let addr = |name, severity, target, mx, address| ExpectedAlert {
        name,
        severity,
        labels: vec![("target", target), ("mx", mx), ("address", address)],
        probe_instance: None,
    };
    let target = |name, target| ExpectedAlert {
        name,
        severity: "warning",
        labels: vec![("target", target)],
        probe_instance: None,
    };
    vec![
        addr(
            "MailTLSDANEFailed",
            "critical",
            "s03.dane.test",
            "mx1.s03.dane.test",
            "127.25.0.13",
        ),
        addr(
            "MailTLSDANEDNSFailure",
            "critical",
            "badsig.test",
            "mx1.badsig.test",
            "127.25.0.20",
        ),
        ExpectedAlert {
            name: "MailTLSDNSSECBogus",
            severity: "critical",
            labels: vec![
                ("target", "badsig.test"),
                ("name", "_25._tcp.mx1.badsig.test"),
                ("type", "TLSA"),
            ],
            probe_instance: None,
        },
        addr(
            "MailTLSSTARTTLSMissing",
            "critical",
            "nostarttls.good.test",
            "mx1.nostarttls.good.test",
            "127.25.0.3",
        ),
        addr(
            "MailTLSDANEUnauthenticated",
            "warning",
            "s14.dane.test",
            "mx1.s14.dane.test",
            "127.25.0.24",
        ),
        addr(
            "MailTLSDANESingleRecordMatching",
            "warning",
            "s02.dane.test",
            "mx1.s02.dane.test",
            "127.25.0.12",
        ),
        ExpectedAlert {
            name: "MailTLSMTASTSPolicyInvalid",
            severity: "critical",
            labels: vec![("target", "redirect.sts.test"), ("reason", "redirect")],
            probe_instance: None,
        },
        target("MailTLSProbeFailing", "s03.dane.test"),
        target("MailTLSProbeFailing", "badsig.test"),
        target("MailTLSProbeFailing", "nostarttls.good.test"),
        ExpectedAlert {
            name: "MailTLSExporterDown",
            severity: "warning",
            labels: vec![],
            probe_instance: Some(FORBIDDEN_PROBE_TARGET),
        },
    ]
}

#[test]
fn prometheus_scrapes_exporter_dashboard_and_alerts_work() -> Result<()> {
    let started = Instant::now();
    let deadline = started + TEST_BUDGET;
    let lab = ensure_lab()?;
    let dir = common::tempdir()?;

    let exporter_config = common::write(dir.path(), "exporter.yml", &exporter_config(&lab)?)?;
    let exporter = common::Daemon::start(&exporter_config, &[])?;

    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir(&prom_dir)?;
    let prom_config = prom_dir.join("prometheus.yml");
    std::fs::write(
        &prom_config,
        serde_json::to_string_pretty(&prometheus_config(exporter.addr)?)?,
    )?;
    promtool_check_config(&prom_config)?;
    let prometheus = Prometheus::start(&prom_dir, &prom_config, deadline)?;

    let outcome = run_checks(&exporter, &prometheus, started, deadline);
    let problems = match outcome {
        Ok(f) => {
            for note in &f.notes {
                println!("prometheus_live: {note}");
            }
            f.problems
        }
        Err(e) => vec![format!("{e:#}")],
    };
    println!("prometheus_live: {:.1?} in all", started.elapsed());
    if !problems.is_empty() {
        bail!(
            "{} problem(s):\n- {}\n--- exporter log (tail) ---\n{}\n--- prometheus log (tail) ---\n{}",
            problems.len(),
            problems.join("\n- "),
            tail(&exporter.log_text(), 30),
            tail(&prometheus.log_text(), 30),
        );
    }
    Ok(())
}

/// What a check found: problems fail the test; notes (known gaps, lint) are printed.
#[derive(Default)]
struct Findings {
    problems: Vec<String>,
    notes: Vec<String>,
}

impl Findings {
    fn extend(&mut self, other: Findings) {
        self.problems.extend(other.problems);
        self.notes.extend(other.notes);
    }
}

/// Waits for scrapes and probes, then runs every check; returns what they found.
fn run_checks(
    exporter: &common::Daemon,
    prometheus: &Prometheus,
    started: Instant,
    deadline: Instant,
) -> Result<Findings> {
    let api = &prometheus.api;
    let mut all = Findings::default();

    // Start-up: every scrape target up, every configured target probed at least once.
    let configured = DOMAIN_TARGETS.len() + 1;
    let startup = eventually(Instant::now(), deadline, || {
        let mut f = check_targets_up(api, exporter.addr)?;
        let probed = api.query("count(mailtls_probe_timestamp_seconds{job=\"mailtls\"})")?;
        let n = probed.first().map_or(0.0, sample_value);
        if n < configured as f64 {
            f.problems.push(format!(
                "{n} of {configured} configured targets probed so far"
            ));
        }
        Ok(f)
    })?;
    if !startup.problems.is_empty() {
        return Ok(startup);
    }
    println!(
        "prometheus_live: targets up and probed after {:.1?}",
        started.elapsed()
    );
    let alerts_final = Instant::now() + ALERTS_SETTLE;

    let now = Instant::now;
    all.extend(eventually(now(), deadline, || check_probe_job(api))?);
    all.extend(eventually(now(), deadline, || check_dashboard(api))?);
    all.extend(eventually(alerts_final, deadline, || {
        check_rules(api, exporter.addr)
    })?);
    all.extend(check_metric_names(api, exporter)?);
    all.extend(check_promtool_metrics(exporter)?);
    Ok(all)
}

// ---------------------------------------------------------------------------------------------
// Lab and configs

/// The lab, up and answering. Isolated so that the lab start-up lives in one place
/// (`common::lab()`: file lock on `/tmp/mailtls-lab.lock`, `tests/lab/up.sh` when down).
fn ensure_lab() -> Result<common::Lab> {
    common::lab().context("starting or finding the lab (tests/lab/up.sh)")
}

/// The exporter's config: the lab resolver (upstream validation) and CA, the scenario targets,
/// and `probe.allow` for the next hops Prometheus sends to `/probe`.
fn exporter_config(lab: &common::Lab) -> Result<String> {
    let mut extra = String::from(
        "interval: 15s\ntimeout: 10s\nprobe:\n  allow: [\"*.dane.test\", \"*.good.test\"]\n  # The lab is on loopback.\n  private_addresses: true\ntargets:\n",
    );
    for d in DOMAIN_TARGETS {
        extra.push_str(&format!("  - domain: {d}\n"));
    }
    extra.push_str(&format!("  - address: {ADDRESS_TARGET}\n    port: 25\n"));
    lab.config("upstream", &extra)
}

/// Reads a YAML file of the repository as JSON (Prometheus reads JSON as YAML, too).
fn read_yaml(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The test's Prometheus config, derived from `deploy/prometheus/prometheus.yml` (job
/// `mailtls`, rule file) and `probe-scrape.yml` (job `mailtls_probe`): the exporter address
/// rewritten to the test's exporter, intervals of [`INTERVAL`], the repository's rules file, the
/// lab's next hops as `/probe` targets, and no Alertmanager.
fn prometheus_config(exporter: SocketAddr) -> Result<Value> {
    let deploy = common::repo().join("deploy/prometheus");
    let main = read_yaml(&deploy.join("prometheus.yml"))?;
    let probe = read_yaml(&deploy.join("probe-scrape.yml"))?;
    for (file, cfg) in [("prometheus.yml", &main), ("probe-scrape.yml", &probe)] {
        let rules = cfg["rule_files"].as_array().cloned().unwrap_or_default();
        ensure!(
            rules.iter().any(|r| r == "mailtls.rules.yml"),
            "deploy/prometheus/{file} does not load mailtls.rules.yml: {rules:?}"
        );
    }

    let mut jobs: Vec<Value> = Vec::new();
    for cfg in [&main, &probe] {
        for job in cfg["scrape_configs"].as_array().into_iter().flatten() {
            if !jobs.iter().any(|j| j["job_name"] == job["job_name"]) {
                jobs.push(job.clone());
            }
        }
    }
    let names: BTreeSet<&str> = jobs.iter().filter_map(|j| j["job_name"].as_str()).collect();
    ensure!(
        names == BTreeSet::from(["mailtls", "mailtls_probe"]),
        "unexpected jobs in deploy/prometheus: {names:?}"
    );

    for job in &mut jobs {
        let name = job["job_name"].as_str().unwrap_or_default().to_string();
        if replace_string(job, DEPLOY_EXPORTER_ADDR, &exporter.to_string()) == 0 {
            bail!("job {name} in deploy/prometheus does not point at {DEPLOY_EXPORTER_ADDR}");
        }
        let obj = job
            .as_object_mut()
            .ok_or_else(|| anyhow!("job {name} is not a mapping"))?;
        obj.insert("scrape_interval".into(), json!(INTERVAL));
        obj.insert("scrape_timeout".into(), json!(INTERVAL));
        if name == "mailtls_probe" {
            obj.insert(
                "static_configs".into(),
                json!([{ "targets": PROBE_TARGETS.iter().chain([&FORBIDDEN_PROBE_TARGET]).collect::<Vec<_>>() }]),
            );
        }
    }

    let rules = deploy.join("mailtls.rules.yml");
    Ok(json!({
        "global": {
            "scrape_interval": INTERVAL,
            "scrape_timeout": INTERVAL,
            "evaluation_interval": INTERVAL,
        },
        "rule_files": [rules],
        "scrape_configs": jobs,
    }))
}

/// Replaces every string equal to `from` inside `v` by `to`; returns how many were replaced.
fn replace_string(v: &mut Value, from: &str, to: &str) -> usize {
    match v {
        Value::String(s) if s == from => {
            *s = to.to_string();
            1
        }
        Value::Array(a) => a.iter_mut().map(|x| replace_string(x, from, to)).sum(),
        Value::Object(o) => o.values_mut().map(|x| replace_string(x, from, to)).sum(),
        _ => 0,
    }
}

/// `promtool check config` on the derived config (which checks the rules file, too).
fn promtool_check_config(config: &Path) -> Result<()> {
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(config)
        .output()
        .context("running promtool (Debian package prometheus)")?;
    ensure!(
        out.status.success(),
        "promtool check config failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Prometheus process and HTTP API

/// A running `prometheus` on a free loopback port, killed on drop.
struct Prometheus {
    child: Child,
    api: PromApi,
    log: PathBuf,
}

impl Prometheus {
    /// Starts `/usr/bin/prometheus` with `config`, TSDB under `dir`; waits until `/-/ready`.
    fn start(dir: &Path, config: &Path, deadline: Instant) -> Result<Self> {
        let addr: SocketAddr = format!("127.0.0.1:{}", common::free_port()?).parse()?;
        let log = dir.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting prometheus (Debian package prometheus)")?;
        let mut prom = Self {
            child,
            api: PromApi { addr },
            log,
        };
        loop {
            if let Ok(r) = common::http(addr, "GET", "/-/ready", &[]) {
                if r.status == 200 {
                    return Ok(prom);
                }
            }
            if let Some(status) = prom.child.try_wait()? {
                bail!("prometheus exited with {status}:\n{}", prom.log_text());
            }
            if Instant::now() > deadline {
                bail!("prometheus not ready in time:\n{}", prom.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prometheus' HTTP API (`/api/v1/...`).
struct PromApi {
    addr: SocketAddr,
}

impl PromApi {
    /// GET `path` with query `params`; returns `data` of a `status: success` answer.
    fn get(&self, path: &str, params: &[(&str, &str)]) -> Result<Value> {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
            .collect();
        let url = format!("{path}?{}", query.join("&"));
        let r = common::http(self.addr, "GET", &url, &[])?;
        let v: Value = serde_json::from_str(&r.body)
            .with_context(|| format!("GET {url}: HTTP {}: {}", r.status, r.body))?;
        ensure!(
            r.status == 200 && v["status"] == "success",
            "GET {url}: HTTP {}: {}",
            r.status,
            r.body
        );
        if let Some(w) = v.get("warnings") {
            bail!("GET {url}: warnings {w}");
        }
        Ok(v["data"].clone())
    }

    /// Instant query at the current time; a scalar or string result counts as one sample.
    fn query(&self, expr: &str) -> Result<Vec<Value>> {
        let data = self.get("/api/v1/query", &[("query", expr)])?;
        match data["resultType"].as_str() {
            Some("vector" | "matrix") => Ok(data["result"].as_array().cloned().unwrap_or_default()),
            Some("scalar" | "string") => Ok(vec![json!({ "metric": {}, "value": data["result"] })]),
            other => bail!("query {expr}: unexpected resultType {other:?}"),
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of an instant-vector sample (`"value": [ts, "1"]`); NaN if malformed.
fn sample_value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// A label of a sample (`""` when absent).
fn label<'a>(sample: &'a Value, name: &str) -> &'a str {
    sample["metric"][name].as_str().unwrap_or("")
}

/// Runs `check` until it reports no problems at or after `not_before`, or `deadline` passes;
/// returns the last findings. Polls every 500 ms: scrapes and rule evaluations happen every
/// [`INTERVAL`].
fn eventually(
    not_before: Instant,
    deadline: Instant,
    mut check: impl FnMut() -> Result<Findings>,
) -> Result<Findings> {
    loop {
        let findings = check()?;
        let now = Instant::now();
        if (findings.problems.is_empty() && now >= not_before) || now >= deadline {
            return Ok(findings);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

// ---------------------------------------------------------------------------------------------
// Checks. Each returns its findings; `Err` only when it could not check at all.

/// Both jobs' targets are up; the `/probe` job has one target per next hop, relabelled to
/// `instance` = the next hop and scraped at the test's exporter with `?target=`.
fn check_targets_up(api: &PromApi, exporter: SocketAddr) -> Result<Findings> {
    let data = api.get("/api/v1/targets", &[("state", "active")])?;
    let mut f = Findings::default();
    let mut by_job: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for t in data["activeTargets"].as_array().into_iter().flatten() {
        let job = t["labels"]["job"].as_str().unwrap_or("?").to_string();
        by_job.entry(job).or_default().push(t);
    }
    for (job, targets) in &by_job {
        for t in targets {
            if t["labels"]["instance"] == FORBIDDEN_PROBE_TARGET {
                if t["health"] != "down" || !t["lastError"].as_str().unwrap_or("").contains("403") {
                    f.problems.push(format!(
                        "{FORBIDDEN_PROBE_TARGET} is {} ({}), want down with 403",
                        t["health"], t["lastError"]
                    ));
                }
            } else if t["health"] != "up" {
                f.problems.push(format!(
                    "job {job} target {} is {} ({})",
                    t["labels"]["instance"], t["health"], t["lastError"]
                ));
            }
            let url = t["scrapeUrl"].as_str().unwrap_or("");
            if !url.starts_with(&format!("http://{exporter}/")) {
                f.problems
                    .push(format!("job {job} scrapes {url}, not the exporter"));
            }
        }
    }
    let instances = |job: &str| -> BTreeSet<String> {
        by_job
            .get(job)
            .into_iter()
            .flatten()
            .filter_map(|t| t["labels"]["instance"].as_str().map(String::from))
            .collect()
    };
    let want_main = BTreeSet::from([exporter.to_string()]);
    if instances("mailtls") != want_main {
        f.problems.push(format!(
            "job mailtls instances {:?}, want {want_main:?}",
            instances("mailtls")
        ));
    }
    let want_probe: BTreeSet<String> = PROBE_TARGETS
        .iter()
        .chain([&FORBIDDEN_PROBE_TARGET])
        .map(|s| s.to_string())
        .collect();
    if instances("mailtls_probe") != want_probe {
        f.problems.push(format!(
            "job mailtls_probe instances {:?}, want {want_probe:?}",
            instances("mailtls_probe")
        ));
    }
    for t in by_job.get("mailtls_probe").into_iter().flatten() {
        let instance = t["labels"]["instance"].as_str().unwrap_or("");
        let url = t["scrapeUrl"].as_str().unwrap_or("");
        let want = format!("target={}", url_encode(instance));
        if !url.starts_with(&format!("http://{exporter}/probe?")) || !url.contains(&want) {
            f.problems.push(format!(
                "probe target {instance}: scrape URL {url} lacks {want}"
            ));
        }
    }
    Ok(f)
}

/// Series of the `/probe` job carry `target` = `instance` = the next hop, and the healthy
/// next hops probe successfully with a verified DANE verdict.
fn check_probe_job(api: &PromApi) -> Result<Findings> {
    let mut f = Findings::default();
    let success = api.query("mailtls_probe_success{job=\"mailtls_probe\"}")?;
    let mut seen = BTreeSet::new();
    for s in &success {
        let (target, instance) = (label(s, "target"), label(s, "instance"));
        if target != instance {
            f.problems.push(format!(
                "job mailtls_probe: target {target:?} != instance {instance:?}"
            ));
        }
        if sample_value(s) != 1.0 {
            f.problems
                .push(format!("job mailtls_probe: {target} probe_success != 1"));
        }
        seen.insert(target.to_string());
    }
    let want: BTreeSet<String> = PROBE_TARGETS.iter().map(|s| s.to_string()).collect();
    if seen != want {
        f.problems.push(format!(
            "job mailtls_probe: probe_success for {seen:?}, want {want:?}"
        ));
    }
    let verified =
        api.query("mailtls_dane_status{job=\"mailtls_probe\", status=\"verified\"} == 1")?;
    let verified: BTreeSet<&str> = verified.iter().map(|s| label(s, "target")).collect();
    for t in PROBE_TARGETS {
        if !verified.contains(t) {
            f.problems.push(format!(
                "job mailtls_probe: {t} has no verified DANE verdict"
            ));
        }
    }
    Ok(f)
}

/// One Prometheus query of the dashboard, variables substituted.
struct DashboardQuery {
    /// Where it comes from, for messages: panel id, title, refId (or the variable).
    origin: String,
    expr: String,
}

/// Every panel query and template-variable query of `grafana/mailtls.json` returns data.
fn check_dashboard(api: &PromApi) -> Result<Findings> {
    let path = common::repo().join("grafana/mailtls.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
        .with_context(|| format!("parsing {}", path.display()))?;
    let variables = template_variables(&dash);
    let mut f = Findings::default();

    let queries = panel_queries(&dash, &variables)?;
    ensure!(
        !queries.is_empty(),
        "no panel queries in {}",
        path.display()
    );
    for q in &queries {
        let known_empty = KNOWN_EMPTY_PANEL_QUERIES
            .iter()
            .find(|(metric, _)| q.expr.contains(metric));
        match api.query(&q.expr) {
            Err(e) => f.problems.push(format!("{}: {e:#}", q.origin)),
            Ok(r) if r.is_empty() && known_empty.is_none() => f
                .problems
                .push(format!("{}: no data for {}", q.origin, q.expr)),
            Ok(r) if !r.is_empty() && known_empty.is_some() => f.notes.push(format!(
                "note: {} now returns data; drop it from KNOWN_EMPTY_PANEL_QUERIES",
                q.origin
            )),
            Ok(_) => {}
        }
    }

    for (name, query) in variable_queries(&dash) {
        let (selector, label_name) = parse_label_values(&query)
            .ok_or_else(|| anyhow!("variable {name}: unsupported query {query:?}"))?;
        let mut params = Vec::new();
        let selector = selector.map(|s| substitute(s, &variables)).transpose()?;
        if let Some(s) = &selector {
            params.push(("match[]", s.as_str()));
        }
        let values = api.get(&format!("/api/v1/label/{label_name}/values"), &params)?;
        let values: BTreeSet<&str> = values
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if values.is_empty() {
            f.problems
                .push(format!("variable {name}: {query} has no values"));
        }
        if label_name == "target" {
            for t in DOMAIN_TARGETS.iter().chain(PROBE_TARGETS) {
                if !values.contains(t) {
                    f.problems
                        .push(format!("variable {name}: {t} missing from {values:?}"));
                }
            }
        }
    }
    if f.problems.is_empty() {
        f.notes.push(format!(
            "{} dashboard queries and the template variables answered",
            queries.len()
        ));
    }
    Ok(f)
}

/// Template variable name -> the value a query gets for it: `.*` ("All") for query, custom,
/// constant and textbox variables, `1m` for interval variables, plus Grafana's built-ins.
fn template_variables(dash: &Value) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = BUILTIN_VARIABLES
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        let Some(name) = v["name"].as_str() else {
            continue;
        };
        let value = match v["type"].as_str() {
            Some("interval") => "1m",
            Some("datasource") => name,
            _ => ".*",
        };
        vars.insert(name.to_string(), value.to_string());
    }
    vars
}

/// Every `expr` of every panel (rows' nested panels included), substituted.
fn panel_queries(dash: &Value, vars: &HashMap<String, String>) -> Result<Vec<DashboardQuery>> {
    fn walk<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
        for p in panels.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut panels = Vec::new();
    walk(&dash["panels"], &mut panels);
    let mut out = Vec::new();
    for p in panels {
        for t in p["targets"].as_array().into_iter().flatten() {
            let Some(expr) = t["expr"].as_str().filter(|e| !e.trim().is_empty()) else {
                continue;
            };
            let origin = format!(
                "panel {} {:?} {}",
                p["id"],
                p["title"].as_str().unwrap_or(""),
                t["refId"].as_str().unwrap_or("?")
            );
            let expr = substitute(expr, vars).with_context(|| origin.clone())?;
            out.push(DashboardQuery { origin, expr });
        }
    }
    Ok(out)
}

/// (name, query text) of every `query` template variable.
fn variable_queries(dash: &Value) -> Vec<(String, String)> {
    dash["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let q = &v["query"];
            let text = q["query"].as_str().or(q.as_str()).unwrap_or("");
            (
                v["name"].as_str().unwrap_or("?").to_string(),
                text.to_string(),
            )
        })
        .collect()
}

/// `label_values(selector, label)` -> (Some(selector), label); `label_values(label)` ->
/// (None, label). Other variable query functions -> None.
fn parse_label_values(query: &str) -> Option<(Option<&str>, &str)> {
    let inner = query
        .trim()
        .strip_prefix("label_values")?
        .trim_start()
        .strip_prefix('(')?
        .strip_suffix(')')?;
    match inner.rsplit_once(',') {
        Some((selector, label)) => Some((Some(selector.trim()), label.trim())),
        None => Some((None, inner.trim())),
    }
}

/// Replaces Grafana variables (`$name`, `${name}`, `${name:format}`, `[[name]]`) by their
/// value in `vars`; an unknown variable is an error. A `$` not followed by a name (a regex
/// anchor) and `$1` (a `label_replace` capture group) stay, as in Grafana.
fn substitute(expr: &str, vars: &HashMap<String, String>) -> Result<String> {
    let lookup = |name: &str| {
        if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(format!("${name}"));
        }
        vars.get(name)
            .cloned()
            .ok_or_else(|| anyhow!("unknown variable {name:?} in {expr}"))
    };
    let mut out = String::new();
    let mut rest = expr;
    while let Some(i) = rest.find(['$', '[']) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(braced) = rest.strip_prefix("${") {
            let end = braced
                .find('}')
                .ok_or_else(|| anyhow!("unclosed ${{ in {expr}"))?;
            let name = braced[..end].split(':').next().unwrap_or("");
            out.push_str(&lookup(name)?);
            rest = &braced[end + 1..];
        } else if let Some(bracketed) = rest.strip_prefix("[[") {
            let end = bracketed
                .find("]]")
                .ok_or_else(|| anyhow!("unclosed [[ in {expr}"))?;
            let name = bracketed[..end].split(':').next().unwrap_or("");
            out.push_str(&lookup(name)?);
            rest = &bracketed[end + 2..];
        } else if rest.starts_with('$') {
            let name_len = rest[1..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len() - 1);
            if name_len == 0 {
                out.push('$');
            } else {
                out.push_str(&lookup(&rest[1..=name_len])?);
            }
            rest = &rest[1 + name_len..];
        } else {
            out.push('[');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// One alert as `/api/v1/rules` reports it.
struct Alert {
    name: String,
    state: String,
    labels: BTreeMap<String, String>,
}

impl Alert {
    fn has(&self, key: &str, value: &str) -> bool {
        self.labels.get(key).map(String::as_str) == Some(value)
    }
}

/// Every group of the rules file is loaded with all its rules healthy and error-free; the
/// pending or firing alerts are exactly [`expected_alerts`], and none names a healthy target.
fn check_rules(api: &PromApi, exporter: SocketAddr) -> Result<Findings> {
    let file = read_yaml(&common::repo().join("deploy/prometheus/mailtls.rules.yml"))?;
    let data = api.get("/api/v1/rules", &[])?;
    let loaded = data["groups"].as_array().cloned().unwrap_or_default();
    let mut f = Findings::default();
    let mut alerts = Vec::new();

    for group in file["groups"].as_array().into_iter().flatten() {
        let name = group["name"].as_str().unwrap_or("?");
        let want = group["rules"].as_array().map_or(0, Vec::len);
        let Some(g) = loaded.iter().find(|g| g["name"] == name) else {
            f.problems.push(format!("rule group {name} not loaded"));
            continue;
        };
        let rules = g["rules"].as_array().cloned().unwrap_or_default();
        if rules.len() != want {
            f.problems.push(format!(
                "rule group {name}: {} rules loaded, {want} in the file",
                rules.len()
            ));
        }
        for r in &rules {
            let rule = r["name"].as_str().unwrap_or("?");
            if r["health"] != "ok" || r["lastError"].as_str().is_some_and(|e| !e.is_empty()) {
                f.problems.push(format!(
                    "rule {name}/{rule}: health {} error {}",
                    r["health"], r["lastError"]
                ));
            }
            for a in r["alerts"].as_array().into_iter().flatten() {
                let labels = a["labels"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect();
                alerts.push(Alert {
                    name: rule.to_string(),
                    state: a["state"].as_str().unwrap_or("").to_string(),
                    labels,
                });
            }
        }
    }

    let expected = expected_alerts();
    let exporter = exporter.to_string();
    let matches = |e: &ExpectedAlert, a: &Alert| {
        let (job, instance) = match e.probe_instance {
            None => ("mailtls", exporter.as_str()),
            Some(i) => ("mailtls_probe", i),
        };
        a.name == e.name
            && a.has("severity", e.severity)
            && a.has("job", job)
            && a.has("instance", instance)
            && e.labels.iter().all(|(k, v)| a.has(k, v))
    };
    for e in &expected {
        match alerts.iter().find(|a| matches(e, a)) {
            None => f.problems.push(format!(
                "alert {} {} {:?} is not pending or firing",
                e.name, e.severity, e.labels
            )),
            Some(a) if !matches!(a.state.as_str(), "pending" | "firing") => f
                .problems
                .push(format!("alert {} {:?} is {}", e.name, e.labels, a.state)),
            Some(_) => {}
        }
    }
    let tolerated = |a: &Alert| {
        TOLERATED_ALERTS
            .iter()
            .any(|(name, target, _)| a.name == *name && a.has("target", target))
    };
    for a in &alerts {
        if !expected.iter().any(|e| matches(e, a)) && !tolerated(a) {
            f.problems.push(format!(
                "unexpected alert {} ({}) {:?}",
                a.name, a.state, a.labels
            ));
        }
        if let Some(t) = HEALTHY_TARGETS.iter().find(|t| a.has("target", t)) {
            f.problems
                .push(format!("healthy target {t} raises {}", a.name));
        }
    }
    if f.problems.is_empty() {
        f.notes.push(format!(
            "{} rule groups healthy; {} alerts pending/firing, as expected",
            loaded.len(),
            alerts.len()
        ));
        for a in alerts.iter().filter(|a| tolerated(a)) {
            f.notes.push(format!(
                "tolerated alert {} for {:?}",
                a.name,
                a.labels.get("target")
            ));
        }
    }
    Ok(f)
}

/// Metric names of a text exposition (sample lines; counters keep `_total`).
fn exposition_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(String::from)
        .collect()
}

/// Names listed in `tests/observability/metrics.txt` (`#` starts a comment).
fn listed_names() -> Result<BTreeSet<String>> {
    let path = common::repo().join("tests/observability/metrics.txt");
    let text = std::fs::read_to_string(&path)?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// The live exposition and `metrics.txt` name the same metrics (exceptions listed), and
/// Prometheus stored exactly the names the exporter exposes (its scrapes negotiate
/// OpenMetrics, the test reads the text format).
fn check_metric_names(api: &PromApi, exporter: &common::Daemon) -> Result<Findings> {
    let mut f = Findings::default();
    let metrics = exporter.get("/metrics")?;
    ensure!(metrics.status == 200, "/metrics: HTTP {}", metrics.status);
    let live = exposition_names(&metrics.body);
    let listed = listed_names()?;
    let unlisted: BTreeSet<&str> = UNLISTED_EXPORTER_METRICS.iter().map(|(n, _)| *n).collect();
    let absent: BTreeSet<&str> = LISTED_BUT_ABSENT_METRICS.iter().map(|(n, _)| *n).collect();

    for name in &live {
        if !listed.contains(name) && !unlisted.contains(name.as_str()) {
            f.problems.push(format!(
                "{name} is exposed but not listed in tests/observability/metrics.txt"
            ));
        }
    }
    for name in &listed {
        if !live.contains(name) && !absent.contains(name.as_str()) {
            f.problems.push(format!(
                "{name} is listed in metrics.txt but not exposed by the exporter in this lab"
            ));
        }
    }
    for (name, why) in UNLISTED_EXPORTER_METRICS {
        if live.contains(*name) && !listed.contains(*name) {
            f.notes.push(format!(
                "known gap: {name} exposed, not in metrics.txt ({why})"
            ));
        }
    }
    for (name, why) in LISTED_BUT_ABSENT_METRICS {
        if !live.contains(*name) {
            f.notes.push(format!(
                "known gap: {name} in metrics.txt, not exposed ({why})"
            ));
        }
    }

    let selector = format!("{{job=\"mailtls\",instance=\"{}\"}}", exporter.addr);
    let stored = api.get("/api/v1/label/__name__/values", &[("match[]", &selector)])?;
    let stored: BTreeSet<String> = stored
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|n| !PROMETHEUS_OWN_NAMES.contains(n))
        .map(String::from)
        .collect();
    if stored != live {
        f.problems.push(format!(
            "Prometheus stored other names than /metrics exposes: only stored {:?}, only exposed {:?}",
            stored.difference(&live).collect::<Vec<_>>(),
            live.difference(&stored).collect::<Vec<_>>()
        ));
    }
    Ok(f)
}

/// `promtool check metrics` accepts `/metrics` and one `/probe` response: parse errors are
/// problems, lint findings (exit code 3) are printed.
fn check_promtool_metrics(exporter: &common::Daemon) -> Result<Findings> {
    let mut f = Findings::default();
    let probe_path = format!("/probe?target={}", url_encode(PROBE_TARGETS[0]));
    for path in ["/metrics", probe_path.as_str()] {
        let r = exporter.get(path)?;
        ensure!(r.status == 200, "GET {path}: HTTP {}: {}", r.status, r.body);
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running promtool")?;
        child
            .stdin
            .take()
            .ok_or_else(|| anyhow!("promtool stdin"))?
            .write_all(r.body.as_bytes())?;
        let out = child.wait_with_output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        match out.status.code() {
            Some(0) => f.notes.push(format!("promtool check metrics {path}: ok")),
            Some(3) => f
                .notes
                .push(format!("promtool check metrics {path}: lint:\n{text}")),
            _ => f.problems.push(format!(
                "promtool check metrics {path} failed ({}): {text}",
                out.status
            )),
        }
    }
    Ok(f)
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn grafana_variables_are_substituted() -> Result<()> {
    let vars: HashMap<String, String> = [("target", ".*"), ("__rate_interval", "1m")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(
        substitute(
            "rate(x{target=~\"$target\", a=~\"${target:regex}\", b=~\"[[target]]\"}[$__rate_interval])",
            &vars
        )?,
        "rate(x{target=~\".*\", a=~\".*\", b=~\".*\"}[1m])"
    );
    assert_eq!(
        substitute("x{a=~\"foo$\"}[5m]", &vars)?,
        "x{a=~\"foo$\"}[5m]"
    );
    let relabel = "label_replace(x, \"h\", \"$1\", \"i\", \"(.*)\")";
    assert_eq!(substitute(relabel, &vars)?, relabel);
    assert!(substitute("x{a=~\"$nope\"}", &vars).is_err());
    assert_eq!(
        parse_label_values("label_values(m{a=\"b,c\"}, mx)"),
        Some((Some("m{a=\"b,c\"}"), "mx"))
    );
    assert_eq!(parse_label_values("label_values(mx)"), Some((None, "mx")));
    assert_eq!(url_encode("[mx1.good.test]:25"), "%5Bmx1.good.test%5D%3A25");
    Ok(())
}
