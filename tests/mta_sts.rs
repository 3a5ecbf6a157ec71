//! MTA-STS and TLSRPT against the real lab: the signed zone `sts.test` and nginx serving the
//! policy hosts (tests/lab/sts-lib.sh lists the scenarios). For every scenario: the metrics
//! (policy state, reason, coverage, per-address verdict, TLSRPT validity, policy host
//! certificate), the `check` text and JSON, and agreement with the reference MTA-STS client
//! `mta-sts-query` (postfix-mta-sts-resolver). An `id` change in DNS changes the policy info.

mod common;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use common::{check_json, lab, run_exporter, sample, tempdir, write, Daemon, Lab};

const MX1: (&str, &str) = ("mx1.good.test", "127.25.0.1");
const MX2: (&str, &str) = ("mx2.good.test", "127.25.0.2");
const NOSTARTTLS: (&str, &str) = ("mx1.nostarttls.good.test", "127.25.0.3");

/// One scenario and what must come of it.
struct Case {
    domain: &'static str,
    /// `mailtls_mta_sts_policy_status` state that is 1.
    status: &'static str,
    /// `mailtls_mta_sts_error_info` reason, when invalid.
    reason: Option<&'static str>,
    /// `mailtls_mta_sts_mx_covered` per MX host.
    covered: &'static [(&'static str, f64)],
    /// `mailtls_mta_sts_status` per (mx, address).
    verdicts: &'static [((&'static str, &'static str), &'static str)],
    /// `mailtls_tlsrpt_record_valid` (None: absent).
    tlsrpt: Option<f64>,
    /// What mta-sts-query says (VALID, FETCH_ERROR, NONE).
    reference: &'static str,
}

const CASES: &[Case] = &[
    Case {
        domain: "enforce.sts.test",
        status: "enforce",
        reason: None,
        covered: &[("mx1.good.test", 1.0), ("mx2.good.test", 1.0)],
        verdicts: &[(MX1, "verified"), (MX2, "verified")],
        tlsrpt: Some(1.0),
        reference: "VALID",
    },
    Case {
        domain: "testing.sts.test",
        status: "testing",
        reason: None,
        covered: &[("mx1.good.test", 1.0)],
        verdicts: &[(MX1, "verified")],
        tlsrpt: Some(0.0),
        reference: "VALID",
    },
    Case {
        domain: "uncovered.sts.test",
        status: "enforce",
        reason: None,
        covered: &[("mx1.good.test", 1.0), ("mx2.good.test", 0.0)],
        verdicts: &[(MX1, "verified"), (MX2, "failed")],
        tlsrpt: Some(0.0),
        reference: "VALID",
    },
    Case {
        domain: "wildcard.sts.test",
        status: "enforce",
        reason: None,
        covered: &[("mx1.good.test", 1.0), ("mx1.nostarttls.good.test", 0.0)],
        verdicts: &[(MX1, "verified"), (NOSTARTTLS, "failed")],
        tlsrpt: None,
        reference: "VALID",
    },
    Case {
        domain: "expired.sts.test",
        status: "invalid",
        reason: Some("certificate"),
        covered: &[],
        verdicts: &[(MX1, "none")],
        tlsrpt: None,
        reference: "FETCH_ERROR",
    },
    Case {
        domain: "wrongname.sts.test",
        status: "invalid",
        reason: Some("certificate"),
        covered: &[],
        verdicts: &[(MX1, "none")],
        tlsrpt: None,
        reference: "FETCH_ERROR",
    },
    Case {
        domain: "redirect.sts.test",
        status: "invalid",
        reason: Some("redirect"),
        covered: &[],
        verdicts: &[(MX1, "none")],
        tlsrpt: None,
        reference: "FETCH_ERROR",
    },
    Case {
        domain: "notfound.sts.test",
        status: "invalid",
        reason: Some("http_status"),
        covered: &[],
        verdicts: &[(MX1, "none")],
        tlsrpt: None,
        reference: "FETCH_ERROR",
    },
    Case {
        domain: "big.sts.test",
        status: "invalid",
        reason: Some("too_large"),
        covered: &[],
        verdicts: &[(MX1, "none")],
        tlsrpt: None,
        reference: "FETCH_ERROR",
    },
    // RFC 8461 §3.1: a sender treats two records as no policy (NONE); the exporter says
    // `invalid` so the operator hears of it (CONTRACT "Policies beside DANE").
    Case {
        domain: "tworec.sts.test",
        status: "invalid",
        reason: Some("multiple_records"),
        covered: &[],
        verdicts: &[(MX1, "none")],
        tlsrpt: None,
        reference: "NONE",
    },
    Case {
        domain: "slow.sts.test",
        status: "invalid",
        reason: Some("timeout"),
        covered: &[],
        verdicts: &[(MX1, "none")],
        tlsrpt: None,
        reference: "FETCH_ERROR",
    },
    Case {
        domain: "modenone.sts.test",
        status: "none",
        reason: None,
        covered: &[],
        verdicts: &[(MX1, "none")],
        tlsrpt: None,
        reference: "VALID",
    },
    Case {
        domain: "good.test",
        status: "none",
        reason: None,
        covered: &[],
        verdicts: &[(MX1, "none"), (MX2, "none")],
        tlsrpt: None,
        reference: "NONE",
    },
];

/// Probe budget of these tests: the `slow` policy host must hit it.
const TIMEOUT: &str = "3s";

fn config(lab: &Lab, dir: &std::path::Path) -> Result<std::path::PathBuf> {
    let mut targets = format!("interval: 5m\ntimeout: {TIMEOUT}\ntargets:\n");
    for c in CASES {
        targets.push_str(&format!("  - domain: {}\n", c.domain));
    }
    targets.push_str("  - domain: idchange.sts.test\n");
    write(dir, "sts.yml", &lab.config("upstream", &targets)?)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[test]
fn every_scenario_gives_the_expected_metrics() -> Result<()> {
    let lab = lab()?;
    let dir = tempdir()?;
    let cfg = config(&lab, dir.path())?;
    let d = Daemon::start(&cfg, &[])?;
    let m = d.wait_metrics(Duration::from_secs(40), |m| {
        CASES.iter().all(|c| {
            sample(
                m,
                "mailtls_mta_sts_policy_status",
                &[("target", c.domain), ("status", c.status)],
            )
            .is_some()
        })
    })?;
    let mut wrong = Vec::new();
    for c in CASES {
        let t = ("target", c.domain);
        let got = sample(
            &m,
            "mailtls_mta_sts_policy_status",
            &[t, ("status", c.status)],
        );
        if got != Some(1.0) {
            wrong.push(format!(
                "{}: policy_status{{status={}}} = {got:?}",
                c.domain, c.status
            ));
        }
        let reason = c
            .reason
            .map(|r| sample(&m, "mailtls_mta_sts_error_info", &[t, ("reason", r)]));
        if let Some(v) = reason {
            if v != Some(1.0) {
                wrong.push(format!(
                    "{}: error_info{{reason={:?}}} = {v:?}",
                    c.domain, c.reason
                ));
            }
        } else if sample(&m, "mailtls_mta_sts_error_info", &[t]).is_some() {
            wrong.push(format!("{}: unexpected error_info", c.domain));
        }
        for (mx, v) in c.covered {
            let got = sample(&m, "mailtls_mta_sts_mx_covered", &[t, ("mx", mx)]);
            if got != Some(*v) {
                wrong.push(format!(
                    "{}: mx_covered{{mx={mx}}} = {got:?}, want {v}",
                    c.domain
                ));
            }
        }
        for ((mx, addr), st) in c.verdicts {
            let got = sample(
                &m,
                "mailtls_mta_sts_status",
                &[t, ("mx", mx), ("address", addr), ("status", st)],
            );
            if got != Some(1.0) {
                wrong.push(format!(
                    "{}: mta_sts_status{{{mx} {addr} {st}}} = {got:?}",
                    c.domain
                ));
            }
        }
        let got = sample(&m, "mailtls_tlsrpt_record_valid", &[t]);
        if got != c.tlsrpt {
            wrong.push(format!(
                "{}: tlsrpt_record_valid = {got:?}, want {:?}",
                c.domain, c.tlsrpt
            ));
        }
        let info = sample(&m, "mailtls_mta_sts_policy_info", &[t]);
        let has_policy =
            matches!(c.status, "enforce" | "testing") || c.domain == "modenone.sts.test";
        if info.is_some() != has_policy {
            wrong.push(format!("{}: policy_info = {info:?}", c.domain));
        }
    }
    // The policy info names the record id and the mode; max_age is exported.
    let info = sample(
        &m,
        "mailtls_mta_sts_policy_info",
        &[
            ("target", "enforce.sts.test"),
            ("id", "enforce1"),
            ("mode", "enforce"),
        ],
    );
    let age = sample(
        &m,
        "mailtls_mta_sts_max_age_seconds",
        &[("target", "enforce.sts.test")],
    );
    if (info, age) != (Some(1.0), Some(86400.0)) {
        wrong.push(format!("enforce: policy_info {info:?}, max_age {age:?}"));
    }
    // The policy host's certificate: a year ahead, or expired on 2025-01-01.
    let now = unix_now();
    let good = sample(
        &m,
        "mailtls_mta_sts_cert_not_after_timestamp_seconds",
        &[("target", "enforce.sts.test")],
    );
    let old = sample(
        &m,
        "mailtls_mta_sts_cert_not_after_timestamp_seconds",
        &[("target", "expired.sts.test")],
    );
    if !good.is_some_and(|t| t > now + 300.0 * 86400.0) || old != Some(1_735_689_600.0) {
        wrong.push(format!("cert not_after: enforce {good:?}, expired {old:?}"));
    }
    // The DANE part is not held back by the slow policy host: its verdict is there.
    let dane = sample(
        &m,
        "mailtls_dane_status",
        &[
            ("target", "slow.sts.test"),
            ("mx", "mx1.good.test"),
            ("status", "verified"),
        ],
    );
    if dane != Some(1.0) {
        wrong.push(format!("slow: dane_status verified = {dane:?}"));
    }
    // ... and the probe ends at its deadline (3 s), not later.
    let took = sample(
        &m,
        "mailtls_probe_duration_seconds",
        &[("target", "slow.sts.test")],
    );
    if !took.is_some_and(|t| (2.5..3.9).contains(&t)) {
        wrong.push(format!(
            "slow: probe_duration_seconds = {took:?}, want about {TIMEOUT}"
        ));
    }
    if !wrong.is_empty() {
        bail!("{}\n--- exposition:\n{}", wrong.join("\n"), m);
    }
    promtool_check(&m)
}

/// `promtool check metrics` accepts the exposition (when promtool is installed; tests/run
/// installs it).
fn promtool_check(exposition: &str) -> Result<()> {
    use std::io::Write;
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        bail!("promtool not found (tests/run installs prometheus)");
    };
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(exposition.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "promtool check metrics failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

#[test]
fn check_text_and_json_show_policy_coverage_verdicts_and_tlsrpt() -> Result<()> {
    let lab = lab()?;
    let dir = tempdir()?;
    let cfg = config(&lab, dir.path())?;
    let cfg_arg = format!("--config.file={}", cfg.display());
    let expect: &[(&str, &[&str])] = &[
        ("enforce.sts.test", &[
            "MTA-STS: enforce (id enforce1, max_age 86400 s), _mta-sts TXT secure",
            "mx patterns: mx1.good.test, mx2.good.test",
            "policy: https://mta-sts.enforce.sts.test/.well-known/mta-sts.txt, certificate notAfter",
            "mx2.good.test 127.25.0.2: MTA-STS verified: covered, STARTTLS and a PKIX-valid certificate for mx2.good.test",
            "TLSRPT: valid: rua mailto:tlsrpt@enforce.sts.test",
        ]),
        ("testing.sts.test", &[
            "MTA-STS: testing (id testing1",
            "mx patterns: *.good.test",
            "TLSRPT: invalid (bad_uri): rua URI \"http://reports.sts.test/tlsrpt\"",
        ]),
        ("uncovered.sts.test", &[
            "mx2.good.test: NOT covered",
            "mx2.good.test 127.25.0.2: MTA-STS failed: mx2.good.test matches no mx pattern of the policy: an MTA-STS sender defers",
            "TLSRPT: invalid (multiple_records): 2 TXT records start with v=TLSRPTv1",
        ]),
        ("wildcard.sts.test", &["mx1.good.test: covered", "mx1.nostarttls.good.test: NOT covered"]),
        ("expired.sts.test", &["MTA-STS: invalid (certificate): the certificate of mta-sts.expired.sts.test is not PKIX-valid (expired)"]),
        ("wrongname.sts.test", &["MTA-STS: invalid (certificate): the certificate of mta-sts.wrongname.sts.test is not PKIX-valid (name_mismatch)"]),
        ("redirect.sts.test", &["MTA-STS: invalid (redirect): mta-sts.redirect.sts.test answered 301 Moved Permanently to https://mta-sts.enforce.sts.test/"]),
        ("notfound.sts.test", &["MTA-STS: invalid (http_status): mta-sts.notfound.sts.test answered 404 Not Found, not 200"]),
        ("big.sts.test", &["MTA-STS: invalid (too_large): the policy is larger than 65536 bytes"]),
        ("tworec.sts.test", &["MTA-STS: invalid (multiple_records): 2 TXT records start with v=STSv1"]),
        ("modenone.sts.test", &["MTA-STS: none (id modenone1, max_age 86400 s)", "mx1.good.test 127.25.0.1: MTA-STS none: no MTA-STS policy in force"]),
        ("good.test", &["MTA-STS: none (no v=STSv1 record)", "TLSRPT: none (no v=TLSRPTv1 record)"]),
    ];
    let mut args = vec!["check", cfg_arg.as_str()];
    args.extend(expect.iter().map(|(d, _)| *d));
    let (_, out, err) = run_exporter(&args)?;
    let mut missing = Vec::new();
    for (domain, lines) in expect {
        // The section of this target: from its summary line to the next target's.
        let start = out
            .find(&format!("{domain} (domain)"))
            .with_context(|| format!("{domain} missing:\n{out}\n{err}"))?;
        let rest = &out[start + domain.len()..];
        let end = expect
            .iter()
            .filter_map(|(d, _)| rest.find(&format!("\n{d} (domain)")))
            .min()
            .unwrap_or(rest.len());
        let section = &rest[..end];
        for l in *lines {
            if !section.contains(l) {
                missing.push(format!("{domain}: {l}"));
            }
        }
    }
    if !missing.is_empty() {
        bail!(
            "missing from check output:\n{}\n--- output:\n{out}",
            missing.join("\n")
        );
    }
    // JSON: the policy, the problem and the verdict per address.
    let (_, v) = check_json(&cfg, &["uncovered.sts.test", "redirect.sts.test"])?;
    let u = &v[0]["mta_sts"];
    assert_eq!(u["id"], "uncovered1");
    assert_eq!(u["policy"]["mode"], "enforce");
    assert_eq!(u["policy"]["mx"][0], "mx1.good.test");
    let verdicts: Vec<(String, bool, String)> = u["verdicts"]
        .as_array()
        .context("verdicts")?
        .iter()
        .map(|x| {
            (
                x["mx"].as_str().unwrap_or("").to_string(),
                x["covered"].as_bool().unwrap_or(false),
                x["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        verdicts.contains(&("mx2.good.test".into(), false, "failed".into())),
        "{verdicts:?}"
    );
    assert!(
        verdicts.contains(&("mx1.good.test".into(), true, "verified".into())),
        "{verdicts:?}"
    );
    assert_eq!(v[0]["tlsrpt"]["state"], "invalid");
    assert_eq!(v[0]["tlsrpt"]["reason"], "multiple_records");
    assert_eq!(v[1]["mta_sts"]["problem"]["reason"], "redirect");
    Ok(())
}

/// mta-sts-query's word for one domain (tests/lab/sts-query.sh).
fn reference(lab: &Lab, domain: &str) -> Result<String> {
    let out = Command::new("bash")
        .arg(common::repo().join("tests/lab/sts-query.sh"))
        .arg(&lab.dir)
        .arg(domain)
        .output()?;
    if !out.status.success() {
        bail!(
            "sts-query.sh {domain}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn policy_status_agrees_with_the_reference_client() -> Result<()> {
    let lab = lab()?;
    let dir = tempdir()?;
    let cfg = config(&lab, dir.path())?;
    let domains: Vec<&str> = CASES.iter().map(|c| c.domain).collect();
    let (_, v) = check_json(&cfg, &domains)?;
    let mut diff = Vec::new();
    for (c, r) in CASES.iter().zip(v.as_array().context("reports")?) {
        let status = match (
            &r["mta_sts"]["problem"]["reason"],
            r["mta_sts"]["policy"].is_object(),
        ) {
            (serde_json::Value::String(reason), _) => format!("invalid/{reason}"),
            (_, true) => "policy".to_string(),
            _ => "none".to_string(),
        };
        // Ours, as a sender would see it: a policy → VALID; a record-level problem → NONE
        // (RFC 8461 §3.1: the record set is ignored); a fetch problem → FETCH_ERROR.
        let sender_view = match status.as_str() {
            "policy" => "VALID",
            "none" | "invalid/multiple_records" | "invalid/record_syntax" | "invalid/bad_id" => {
                "NONE"
            }
            _ => "FETCH_ERROR",
        };
        let theirs = reference(&lab, c.domain)?;
        if sender_view != theirs || theirs != c.reference {
            diff.push(format!(
                "{}: exporter {status} ({sender_view}), mta-sts-query {theirs}, expected {}",
                c.domain, c.reference
            ));
        }
    }
    if !diff.is_empty() {
        bail!("{}", diff.join("\n"));
    }
    Ok(())
}

#[test]
fn an_id_change_in_dns_changes_the_policy_info() -> Result<()> {
    let lab = lab()?;
    let dir = tempdir()?;
    let cfg = config(&lab, dir.path())?;
    let d = Daemon::start(&cfg, &[])?;
    let probe = || -> Result<String> { Ok(d.get("/probe?target=idchange.sts.test")?.body) };
    let before = probe()?;
    let id_of = |m: &str| -> Option<String> {
        m.lines()
            .find(|l| l.starts_with("mailtls_mta_sts_policy_info{"))
            .and_then(|l| l.split("id=\"").nth(1))
            .and_then(|s| s.split('"').next())
            .map(str::to_string)
    };
    let old_id = id_of(&before).with_context(|| format!("no policy_info before:\n{before}"))?;
    let new_id = format!(
        "t{}",
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis()
    );
    let st = Command::new("bash")
        .arg(common::repo().join("tests/lab/sts-id.sh"))
        .arg(&lab.dir)
        .arg(&new_id)
        .output()?;
    if !st.status.success() {
        bail!("sts-id.sh: {}", String::from_utf8_lossy(&st.stderr));
    }
    // The resolver and the exporter cache the TXT RRset for its TTL (5 s in the lab).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = probe()?;
        if id_of(&m).as_deref() == Some(new_id.as_str()) {
            assert!(sample(
                &m,
                "mailtls_mta_sts_policy_info",
                &[("id", old_id.as_str())]
            )
            .is_none());
            assert_eq!(
                sample(
                    &m,
                    "mailtls_mta_sts_policy_status",
                    &[("status", "enforce")]
                ),
                Some(1.0)
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "policy_info still has id {:?}, not {new_id}:\n{m}",
                id_of(&m)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
