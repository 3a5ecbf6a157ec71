//! Scaling out with Prometheus' own sharding: two pairs of exporter replicas, a real Prometheus
//! and the real lab (Knot, Unbound, Postfix on 127.x; `tests/lab/`).
//!
//! What it proves:
//! - [`hashmod`] is Prometheus' `hashmod`: for 100 names and moduli 3, 7 and 1000, the label
//!   Prometheus' own relabelling computes (read back from `/api/v1/targets`) equals it;
//! - (a) the `/probe` pattern of `deploy/prometheus/probe-sharded.yml`: Prometheus' `hashmod`
//!   relabelling sends each next hop to one replica, the replica [`hashmod`] names (so the
//!   exporter's rule is Prometheus' rule), the same one in two scrape rounds; and each replica's
//!   DNS cache is warm for its targets in the second round (far fewer queries than the first);
//! - (b) scheduled mode split by `--shard.index` (a StatefulSet pod name) and `shard.count`
//!   (config) over the same next hops, scraped as in `deploy/prometheus/scheduled-sharded.yml`:
//!   each target is listed (`mailtls_target_info`) and probed (`mailtls_probe_success`) by
//!   exactly one replica, the one Prometheus' own relabelling chose for it in (a); the replicas'
//!   lists are disjoint and cover the list; the shard metrics say so; and `/probe` of a target
//!   owned by the other replica still answers;
//! - (c) `grafana/mailtls.json` sums across replicas: with a third, unsharded replica reporting
//!   every target again (as two replicas may briefly during a change of the shard count), every
//!   per-target panel query shows each target, MX host, address... once, with the same
//!   label sets and counts as over the sharded pair alone.
//!
//! The `/probe` pair validates upstream (the lab's validating Unbound), the scheduled pair
//! locally (the non-validating one): the scheduled probes then leave the first Unbound's cache,
//! and with it the TTLs the `/probe` pair sees, alone.
//!
//! Needs root (the lab), `prometheus` (Debian package `prometheus`). Everything binds and
//! connects on 127.0.0.0/8 only. About 20 s.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use mailtls_exporter::shard::hashmod;
use serde_json::{json, Value};

/// Next hops in canonical form (the `target` label), probed through `/probe` in (a) and
/// configured under `targets:` in (b). Quick lab scenarios only: no probe waits on a timeout.
const TARGETS: &[&str] = &[
    "good.test",
    "nostarttls.good.test",
    "s01.dane.test",
    "s02.dane.test",
    "s03.dane.test",
    "s05.dane.test",
    "s12.dane.test",
    "s14.dane.test",
    "s17.dane.test",
    "s20.dane.test",
    "[mx1.good.test]",
    "[127.25.0.1]",
    // MTA-STS: an enforce policy with a valid TLSRPT record, and an invalid (redirected) one,
    // so that every MTA-STS panel has data.
    "enforce.sts.test",
    "redirect.sts.test",
];

/// The replica addresses written in `deploy/prometheus/*-sharded.yml`, in shard order.
const DEPLOY_REPLICAS: [&str; 2] = ["127.0.0.1:19725", "127.0.0.1:19726"];

/// Scrape interval and timeout of the test's Prometheus: well inside the lab's 5 s DNS TTLs,
/// so a second round finds the first round's answers cached.
const INTERVAL: &str = "2s";

const TEST_BUDGET: Duration = Duration::from_secs(60);

/// `probe.allow` for [`TARGETS`]; the lab is on loopback.
const PROBE_SECTION: &str = "probe:\n  allow: [\"good.test\", \"*.good.test\", \"*.dane.test\", \"*.sts.test\", \"[127.25.0.0/16]\"]\n  private_addresses: true\n";

#[test]
fn hashmod_routes_probe_targets_and_shards_split_the_scheduled_list_alike() -> Result<()> {
    let started = Instant::now();
    let deadline = started + TEST_BUDGET;
    let lab = common::lab().context("starting or finding the lab (tests/lab/up.sh)")?;
    let dir = common::tempdir()?;

    // (a) replicas: nothing configured, so their DNS counters count `/probe` work only.
    let probe_cfg = lab.config(
        "upstream",
        &format!("interval: 5m\ntimeout: 5s\n{PROBE_SECTION}"),
    )?;
    let probe = [
        common::Daemon::start(&common::write(dir.path(), "probe0.yml", &probe_cfg)?, &[])?,
        common::Daemon::start(&common::write(dir.path(), "probe1.yml", &probe_cfg)?, &[])?,
    ];
    // (b) replicas: one config (the count in it, as a ConfigMap shared by a StatefulSet), the
    // index from the pod name.
    let mut targets = String::from("interval: 5m\ntimeout: 5s\nshard:\n  count: 2\ntargets:\n");
    for t in TARGETS {
        targets.push_str(&config_entry(t));
    }
    let sched_cfg = lab.config("local", &format!("{PROBE_SECTION}{targets}"))?;
    let sched = [
        common::Daemon::start(
            &common::write(dir.path(), "sched0.yml", &sched_cfg)?,
            &["--shard.index=mailtls-0"],
        )?,
        common::Daemon::start(
            &common::write(dir.path(), "sched1.yml", &sched_cfg)?,
            &["--shard.index=mailtls-1"],
        )?,
    ];
    // (c) an unsharded replica over the same list: the flags (count 1) win over shard.count.
    let overlap = common::Daemon::start(
        &common::write(dir.path(), "overlap.yml", &sched_cfg)?,
        &["--shard.count=1", "--shard.index=0"],
    )?;
    let probe_addrs = [probe[0].addr, probe[1].addr];
    let sched_addrs = [sched[0].addr, sched[1].addr];

    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir(&prom_dir)?;
    let prom_config = prom_dir.join("prometheus.yml");
    std::fs::write(
        &prom_config,
        serde_json::to_string_pretty(&prometheus_config(probe_addrs, sched_addrs, overlap.addr)?)?,
    )?;
    let prometheus = Prometheus::start(&prom_dir, &prom_config, deadline)?;

    let result = check_hashmod_reference(&prometheus.api, deadline)
        .and_then(|()| check_probe_pattern(&prometheus.api, &probe, deadline))
        .and_then(|routes| check_scheduled_shards(&prometheus.api, &sched, &routes, deadline))
        .and_then(|()| check_dashboard_sums_replicas(&prometheus.api, deadline));
    println!("sharding: {:.1?} in all", started.elapsed());
    if let Err(e) = result {
        let logs: Vec<String> = probe
            .iter()
            .chain(&sched)
            .chain([&overlap])
            .map(|d| format!("--- exporter {} ---\n{}", d.addr, tail(&d.log_text(), 15)))
            .collect();
        bail!(
            "{e:#}\n{}\n--- prometheus ---\n{}",
            logs.join("\n"),
            tail(&prometheus.log_text(), 20)
        );
    }
    Ok(())
}

/// The `targets:` entry whose canonical name is `t`.
fn config_entry(t: &str) -> String {
    match t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        Some(inner) if inner.parse::<std::net::IpAddr>().is_ok() => {
            format!("  - address: {inner}\n")
        }
        Some(inner) => format!("  - host: {inner}\n"),
        None => format!("  - domain: {t}\n"),
    }
}

// ---------------------------------------------------------------------------------------------
// hashmod against Prometheus' own

/// Moduli of the reference jobs.
const REFERENCE_MODULI: [u64; 3] = [3, 7, 1000];

/// Names of the reference jobs' targets: every kind of next hop.
fn reference_names() -> Vec<String> {
    (0..100)
        .map(|i| match i % 4 {
            0 => format!("d{i}.example.org"),
            1 => format!("[mx{i}.example.net]"),
            2 => format!("[192.0.2.{i}]"),
            _ => format!("[mx{i}.example.com]:587"),
        })
        .collect()
}

/// A job that only relabels: one target per name (label `target`), `shard` = Prometheus'
/// hashmod of it. Never scraped within the test (1 h interval); its address is a closed
/// loopback port all the same.
fn reference_job(modulus: u64) -> Value {
    let groups: Vec<Value> = reference_names()
        .into_iter()
        .map(|n| json!({ "targets": ["127.0.0.1:1"], "labels": { "target": n } }))
        .collect();
    json!({
        "job_name": format!("hashmod_{modulus}"),
        "scrape_interval": "1h",
        "static_configs": groups,
        "relabel_configs": [
            { "source_labels": ["target"], "modulus": modulus, "action": "hashmod", "target_label": "shard" },
        ],
    })
}

fn check_hashmod_reference(api: &PromApi, deadline: Instant) -> Result<()> {
    let names = reference_names();
    let want = names.len() * REFERENCE_MODULI.len();
    let targets = wait_for(deadline, "the hashmod reference targets", || {
        let data = api.get("/api/v1/targets", &[("state", "active")])?;
        let refs: Vec<Value> = data["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| {
                t["labels"]["job"]
                    .as_str()
                    .is_some_and(|j| j.starts_with("hashmod_"))
            })
            .cloned()
            .collect();
        Ok((refs.len() == want).then_some(refs))
    })?;
    for t in &targets {
        let l = &t["labels"];
        let (job, name) = (
            l["job"].as_str().unwrap_or(""),
            l["target"].as_str().unwrap_or(""),
        );
        let modulus: u64 = job.trim_start_matches("hashmod_").parse()?;
        let prometheus: u64 = l["shard"].as_str().unwrap_or("").parse()?;
        ensure!(
            hashmod(name, modulus) == prometheus,
            "hashmod({name:?}, {modulus}): Prometheus says {prometheus}, the exporter {}",
            hashmod(name, modulus)
        );
    }
    println!("sharding: hashmod agrees with Prometheus on {want} (name, modulus) pairs");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (a) the /probe pattern

/// Where Prometheus sent each target's `/probe` (replica index), checked against [`hashmod`].
type Routes = BTreeMap<String, usize>;

fn check_probe_pattern(
    api: &PromApi,
    replicas: &[common::Daemon; 2],
    deadline: Instant,
) -> Result<Routes> {
    // Round 1: every target scraped successfully at least once.
    let round1 = wait_for(deadline, "every /probe target up", || {
        let t = probe_targets(api, replicas)?;
        Ok((t.len() == TARGETS.len() && t.values().all(|s| s.up)).then_some(t))
    })?;
    let queries1 = replicas.each(dns_queries)?;
    // Round 2: every target scraped again since.
    let round2 = wait_for(deadline, "a second /probe round", || {
        let t = probe_targets(api, replicas)?;
        let again = t.iter().all(|(name, s)| {
            s.up && round1
                .get(name)
                .is_some_and(|r1| r1.last_scrape != s.last_scrape)
        });
        Ok((t.len() == TARGETS.len() && again).then_some(t))
    })?;
    let queries2 = replicas.each(dns_queries)?;

    let mut routes = Routes::new();
    for t in TARGETS {
        let want = hashmod(t, 2) as usize;
        let (r1, r2) = (&round1[*t], &round2[*t]);
        ensure!(
            r1.replica == want && r2.replica == want,
            "{t}: hashmod says replica {want}, Prometheus sent round 1 to {} and round 2 to {}",
            r1.replica,
            r2.replica
        );
        routes.insert(t.to_string(), want);
    }
    for k in 0..2 {
        ensure!(
            routes.values().any(|&r| r == k),
            "no target falls to replica {k}: pick a target list that both shards share"
        );
    }

    // Each target's series: instance = target = the next hop, one series each.
    let success = api.query("mailtls_probe_success{job=\"mailtls_probe\"}")?;
    let mut seen: Vec<&str> = success.iter().map(|s| label(s, "target")).collect();
    seen.sort_unstable();
    let mut want: Vec<&str> = TARGETS.to_vec();
    want.sort_unstable();
    ensure!(
        seen == want,
        "mailtls_probe_success targets {seen:?}, want {want:?}"
    );
    for s in &success {
        ensure!(
            label(s, "instance") == label(s, "target"),
            "instance {} != target {}",
            label(s, "instance"),
            label(s, "target")
        );
    }

    // Warm caches: the second round asks the resolver far less than the first did.
    for k in 0..2 {
        let first = queries1[k];
        let second = queries2[k] - queries1[k];
        println!(
            "sharding: /probe replica {k}: {} targets, DNS queries {first} in round 1, {second} in round 2",
            routes.values().filter(|&&r| r == k).count()
        );
        ensure!(first > 0.0, "replica {k} sent no DNS query in round 1");
        ensure!(
            second * 4.0 <= first,
            "replica {k}: {second} DNS queries in round 2 after {first} in round 1: its cache is not reused"
        );
    }
    Ok(routes)
}

/// One `/probe` scrape target as Prometheus reports it.
struct ScrapeState {
    replica: usize,
    up: bool,
    last_scrape: String,
}

/// The `/probe` job's targets by next hop: which replica each is scraped at, health, last scrape.
fn probe_targets(
    api: &PromApi,
    replicas: &[common::Daemon; 2],
) -> Result<BTreeMap<String, ScrapeState>> {
    let data = api.get("/api/v1/targets", &[("state", "active")])?;
    let mut out = BTreeMap::new();
    for t in data["activeTargets"].as_array().into_iter().flatten() {
        if t["labels"]["job"] != "mailtls_probe" {
            continue;
        }
        let url = t["scrapeUrl"].as_str().unwrap_or("");
        let host = url
            .strip_prefix("http://")
            .and_then(|r| r.split('/').next())
            .unwrap_or("");
        let replica = replicas
            .iter()
            .position(|d| d.addr.to_string() == host)
            .ok_or_else(|| anyhow!("{url} is scraped at no replica"))?;
        let name = t["labels"]["instance"].as_str().unwrap_or("").to_string();
        out.insert(
            name,
            ScrapeState {
                replica,
                up: t["health"] == "up",
                last_scrape: t["lastScrape"].as_str().unwrap_or("").to_string(),
            },
        );
    }
    Ok(out)
}

fn dns_queries(d: &common::Daemon) -> Result<f64> {
    let r = d.get("/metrics")?;
    ensure!(r.status == 200, "GET /metrics: {}", r.status);
    common::sample(&r.body, "mailtls_dns_queries_total", &[])
        .ok_or_else(|| anyhow!("no mailtls_dns_queries_total on {}", d.addr))
}

// ---------------------------------------------------------------------------------------------
// (b) scheduled mode, sharded

fn check_scheduled_shards(
    api: &PromApi,
    replicas: &[common::Daemon; 2],
    routes: &Routes,
    deadline: Instant,
) -> Result<()> {
    let instance = |k: usize| replicas[k].addr.to_string();
    // Listed and probed: each target by the replica Prometheus routed its /probe to.
    for metric in ["mailtls_target_info", "mailtls_probe_success"] {
        let series = wait_for(deadline, &format!("{metric} of every target"), || {
            let s = api.query(&format!("{metric}{{job=\"mailtls\"}}"))?;
            Ok((s.len() >= TARGETS.len()).then_some(s))
        })?;
        let mut by_target: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for s in &series {
            by_target
                .entry(label(s, "target"))
                .or_default()
                .push(label(s, "instance"));
        }
        for t in TARGETS {
            let want = instance(routes[*t]);
            let got = by_target.get(t).cloned().unwrap_or_default();
            ensure!(
                got == [want.as_str()],
                "{metric}{{target={t}}} comes from {got:?}, want only the replica of shard {} ({want})",
                routes[*t]
            );
        }
        ensure!(
            by_target.len() == TARGETS.len(),
            "{metric}: unexpected targets {:?}",
            by_target.keys().collect::<Vec<_>>()
        );
    }
    // The shard metrics: each replica's shard, how many targets it owns, the whole list.
    for k in 0..2 {
        let i = instance(k);
        let owned = routes.values().filter(|&&r| r == k).count();
        let info = api.query(&format!(
            "mailtls_exporter_shard_info{{job=\"mailtls\",instance=\"{i}\",index=\"{k}\",count=\"2\"}}"
        ))?;
        ensure!(info.len() == 1, "replica {k}: shard_info {info:?}");
        let n = api.query(&format!(
            "mailtls_targets{{job=\"mailtls\",instance=\"{i}\"}}"
        ))?;
        ensure!(
            n.first().map(sample_value) == Some(owned as f64),
            "replica {k}: mailtls_targets {n:?}, want {owned}"
        );
    }
    let sum = api.query(
        "sum(mailtls_targets{job=\"mailtls\"}) == max(mailtls_config_targets{job=\"mailtls\"})",
    )?;
    ensure!(
        sum.first().map(sample_value) == Some(TARGETS.len() as f64),
        "sum(mailtls_targets) is not the configured {}: {sum:?}",
        TARGETS.len()
    );
    // The status page lists the replica's own targets only.
    for (k, d) in replicas.iter().enumerate() {
        let page = d.get("/")?;
        ensure!(
            page.status == 200,
            "status page of replica {k}: {}",
            page.status
        );
        for t in TARGETS.iter().filter(|t| t.ends_with(".dane.test")) {
            ensure!(
                page.body.contains(*t) == (routes[*t] == k),
                "status page of replica {k} lists {t}: {}, but it is in shard {}",
                page.body.contains(*t),
                routes[*t]
            );
        }
    }
    // /probe ignores the shard: replica 0 probes a target of replica 1 on request.
    let other = TARGETS
        .iter()
        .find(|t| routes[**t] == 1)
        .ok_or_else(|| anyhow!("no target in shard 1"))?;
    let r = replicas[0].get(&format!("/probe?target={}", url_encode(other)))?;
    ensure!(
        r.status == 200 && r.body.contains("mailtls_probe_success"),
        "/probe?target={other} at replica 0: {} {}",
        r.status,
        r.body
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (c) the dashboard across replicas

/// The job of the unsharded replica that reports every target a second time.
const OVERLAP_JOB: &str = "mailtls_overlap";

/// Grafana variables in the dashboard's queries and what the test puts in their place.
const VARIABLES: &[(&str, &str)] = &[("$__rate_interval", "1m"), ("$target", ".*"), ("$mx", ".*")];

fn check_dashboard_sums_replicas(api: &PromApi, deadline: Instant) -> Result<()> {
    wait_for(deadline, "the overlapping replica's probes", || {
        let s = api.query(&format!("mailtls_probe_success{{job=\"{OVERLAP_JOB}\"}}"))?;
        Ok((s.len() == TARGETS.len()).then_some(()))
    })?;
    let exprs = dashboard_exprs()?;
    let mut checked = 0;
    for expr in &exprs {
        // Per-target panels select `{target=~"$target"...}`; the others are per exporter
        // (build info, scrape health, the resolver) or sums over all (probe rates).
        if !expr.contains("{target=~\"$target\"") {
            continue;
        }
        // The staged families need a `staged:` entry, which these targets have none of
        // (tests/rollover.rs exposes them); their queries aggregate like the others.
        if expr.contains("mailtls_staged_") {
            continue;
        }
        let mut all = expr.clone();
        for (var, value) in VARIABLES {
            all = all.replace(var, value);
        }
        let sharded = all.replace("{target=~", "{job=\"mailtls\", target=~");
        let with_overlap = api.query(&all)?;
        let alone = api.query(&sharded)?;
        ensure!(
            !alone.is_empty(),
            "{expr}: no data over the sharded replicas"
        );
        let keys = |samples: &[Value]| -> Vec<String> {
            let mut k: Vec<String> = samples.iter().map(series_key).collect();
            k.sort();
            k
        };
        let (mut a, b) = (keys(&with_overlap), keys(&alone));
        let n = a.len();
        a.dedup();
        ensure!(
            a.len() == n,
            "{expr}: a series appears once per replica (instance or job not aggregated away)"
        );
        ensure!(
            a == b,
            "{expr}: {a:?} with the overlapping replica, {b:?} without"
        );
        if expr.starts_with("count") {
            // Prometheus returns a vector in no particular order: compare by series.
            let values = |s: &[Value]| -> BTreeMap<String, f64> {
                s.iter().map(|x| (series_key(x), sample_value(x))).collect()
            };
            let (va, vb) = (values(&with_overlap), values(&alone));
            ensure!(
                va == vb,
                "{expr}: {va:?} with the overlapping replica, {vb:?} without: counted twice"
            );
        }
        checked += 1;
    }
    ensure!(
        checked >= 20,
        "only {checked} per-target dashboard queries found"
    );
    println!(
        "sharding: {checked} per-target dashboard queries count every target once across replicas"
    );
    Ok(())
}

/// A sample's labels without the scrape's own (`instance`, `job`): what a panel shows.
fn series_key(sample: &Value) -> String {
    let mut labels: Vec<String> = sample["metric"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| *k != "instance" && *k != "job")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    labels.sort();
    labels.join(",")
}

/// Every panel query of `grafana/mailtls.json` (rows' nested panels included).
fn dashboard_exprs() -> Result<Vec<String>> {
    let path = common::repo().join("grafana/mailtls.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
        .with_context(|| format!("parsing {}", path.display()))?;
    fn walk(v: &Value, out: &mut Vec<String>) {
        for p in v["panels"].as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push(e.to_string());
                }
            }
            walk(p, out);
        }
    }
    let mut out = Vec::new();
    walk(&dash, &mut out);
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Prometheus

trait Each {
    fn each(&self, f: impl Fn(&common::Daemon) -> Result<f64>) -> Result<[f64; 2]>;
}

impl Each for [common::Daemon; 2] {
    fn each(&self, f: impl Fn(&common::Daemon) -> Result<f64>) -> Result<[f64; 2]> {
        Ok([f(&self[0])?, f(&self[1])?])
    }
}

/// Reads a YAML file of the repository as JSON.
fn read_yaml(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The job `name` of `deploy/prometheus/file`, its replica addresses rewritten to `to`, at the
/// test's interval.
fn deploy_job(file: &str, name: &str, to: [SocketAddr; 2]) -> Result<Value> {
    let cfg = read_yaml(&common::repo().join("deploy/prometheus").join(file))?;
    let mut job = cfg["scrape_configs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|j| j["job_name"] == name)
        .cloned()
        .ok_or_else(|| anyhow!("deploy/prometheus/{file} has no job {name}"))?;
    for (from, to) in DEPLOY_REPLICAS.iter().zip(to) {
        ensure!(
            replace_string(&mut job, from, &to.to_string()) > 0,
            "job {name} in deploy/prometheus/{file} does not name replica {from}"
        );
    }
    let obj = job
        .as_object_mut()
        .ok_or_else(|| anyhow!("job {name} is not a mapping"))?;
    obj.insert("scrape_interval".into(), json!(INTERVAL));
    obj.insert("scrape_timeout".into(), json!(INTERVAL));
    Ok(job)
}

/// Jobs `mailtls_probe` and `mailtls` of the deploy examples, and `mailtls_overlap` (the
/// unsharded replica of (c)).
fn prometheus_config(
    probe: [SocketAddr; 2],
    sched: [SocketAddr; 2],
    overlap: SocketAddr,
) -> Result<Value> {
    let mut probe_job = deploy_job("probe-sharded.yml", "mailtls_probe", probe)?;
    probe_job["static_configs"] = json!([{ "targets": TARGETS }]);
    let sched_job = deploy_job("scheduled-sharded.yml", "mailtls", sched)?;
    let overlap_job = json!({
        "job_name": OVERLAP_JOB,
        "static_configs": [{ "targets": [overlap.to_string()] }],
    });
    let mut jobs = vec![probe_job, sched_job, overlap_job];
    jobs.extend(REFERENCE_MODULI.iter().map(|m| reference_job(*m)));
    Ok(json!({
        "global": { "scrape_interval": INTERVAL, "scrape_timeout": INTERVAL },
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

/// A running `prometheus` on a free loopback port, killed on drop.
struct Prometheus {
    child: Child,
    api: PromApi,
    log: PathBuf,
}

impl Prometheus {
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
            if common::http(addr, "GET", "/-/ready", &[]).is_ok_and(|r| r.status == 200) {
                return Ok(prom);
            }
            if let Some(status) = prom.child.try_wait()? {
                bail!("prometheus exited with {status}:\n{}", prom.log_text());
            }
            ensure!(Instant::now() < deadline, "prometheus not ready in time");
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

struct PromApi {
    addr: SocketAddr,
}

impl PromApi {
    /// GET `path` with query `params`; the `data` of a `status: success` answer.
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
        Ok(v["data"].clone())
    }

    /// Instant query: the samples of a vector result.
    fn query(&self, expr: &str) -> Result<Vec<Value>> {
        let data = self.get("/api/v1/query", &[("query", expr)])?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
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

fn sample_value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn label<'a>(sample: &'a Value, name: &str) -> &'a str {
    sample["metric"][name].as_str().unwrap_or("")
}

/// Polls `probe` every 200 ms until it yields a value; fails with `what` at `deadline`.
fn wait_for<T>(
    deadline: Instant,
    what: &str,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    loop {
        if let Some(v) = probe()? {
            return Ok(v);
        }
        ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Bad shard settings stop the daemon at start (exit 2) and fail `check-config`, naming where
/// each value came from; no lab needed.
#[test]
fn bad_shard_settings_are_start_up_errors_naming_their_source() -> Result<()> {
    let dir = common::tempdir()?;
    let cfg = common::write(
        dir.path(),
        "c.yml",
        "interval: 1m\nshard:\n  count: 2\ntargets:\n  - address: 127.26.7.1\n    port: 9\n",
    )?;
    let file = format!("--config.file={}", cfg.display());
    let listen = format!("--web.listen-address=127.0.0.1:{}", common::free_port()?);
    let (code, err) = common::run_exporter_until_exit(
        &[&file, &listen, "--shard.index=mailtls-2"],
        Duration::from_secs(10),
    )?;
    ensure!(code == Some(2), "daemon exit {code:?}: {err}");
    ensure!(
        err.contains("shard index 2 (--shard.index=mailtls-2) is out of range for shard count 2")
            && err.contains("c.yml:3: shard.count): it must be 0..=1"),
        "{err}"
    );
    let (code, _, err) = common::run_exporter(&["check-config", &file])?;
    ensure!(
        code == 2 && err.contains("needs this replica's shard index"),
        "{code}: {err}"
    );
    let (code, out, err) =
        common::run_exporter(&["check-config", &file, "--shard.index=mailtls-1"])?;
    ensure!(
        code == 0 && out.contains("in shard 1 of 2"),
        "{code}: {out}{err}"
    );
    for bad in [
        "--shard.index=mailtls",
        "--shard.index=-1",
        "--shard.count=0",
    ] {
        let (code, _, err) = common::run_exporter(&["check-config", &file, bad])?;
        ensure!(
            code == 2 && err.contains("invalid value"),
            "{bad}: {code}: {err}"
        );
    }
    Ok(())
}
