//! DANE verdicts against the real oracle: for every lab scenario (tests/lab/scenarios.tsv),
//! the exporter's per-address verdict must equal what posttls-finger (a DANE-enforcing
//! Postfix) reaches on the same lab, in both validation modes. posttls-finger runs live here;
//! the `expect` column only guards the lab itself.

mod common;

use std::collections::BTreeSet;

use anyhow::{bail, Context, Result};
use common::{check_json, exporter_verdicts, lab, postfix_verdicts, tempdir, write, Lab};

struct Scenario {
    id: String,
    domain: String,
    description: String,
    expect: BTreeSet<(String, String, String)>,
}

fn scenarios() -> Result<Vec<Scenario>> {
    let text = std::fs::read_to_string(common::repo().join("tests/lab/scenarios.tsv"))?;
    let mut v = Vec::new();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 4 {
            bail!("bad scenarios.tsv line: {line}");
        }
        let expect = cols[3]
            .split(',')
            .filter_map(|e| {
                let (hostaddr, verdict) = e.split_once('=')?;
                let (host, addr) = hostaddr.split_once('/')?;
                Some((host.to_string(), addr.to_string(), verdict.to_string()))
            })
            .collect();
        v.push(Scenario {
            id: cols[0].into(),
            domain: cols[1].into(),
            description: cols[2].into(),
            expect,
        });
    }
    Ok(v)
}

fn compare_mode(lab: &Lab, mode: &str) -> Result<()> {
    let scenarios = scenarios()?;
    if scenarios.len() < 18 {
        bail!("only {} scenarios", scenarios.len());
    }
    let dir = tempdir()?;
    let cfg = write(dir.path(), "c.yml", &lab.config(mode, "")?)?;
    let domains: Vec<&str> = scenarios.iter().map(|s| s.domain.as_str()).collect();
    let (_, reports) = check_json(&cfg, &domains)?;
    let reports = reports
        .as_array()
        .context("check output is not an array")?
        .clone();
    // One report per scenario, in order: zip below would silently skip a missing one.
    anyhow::ensure!(
        reports.len() == scenarios.len(),
        "check returned {} reports for {} scenarios",
        reports.len(),
        scenarios.len()
    );
    let mut failures = Vec::new();
    println!(
        "{:<6} {:<22} {:<60} postfix vs exporter ({mode})",
        "id", "domain", "scenario"
    );
    for (s, r) in scenarios.iter().zip(reports.iter()) {
        let ours: BTreeSet<_> = exporter_verdicts(r).into_iter().collect();
        let postfix: BTreeSet<_> = postfix_verdicts(lab, &s.domain)?.into_iter().collect();
        if postfix != s.expect {
            failures.push(format!(
                "{}: the lab drifted: posttls-finger says {postfix:?}, scenarios.tsv expects {:?}",
                s.id, s.expect
            ));
        }
        // For hosts whose address lookup failed, Postfix has no address; so do we ("-").
        let same = ours == postfix;
        println!(
            "{:<6} {:<22} {:<60} {}",
            s.id,
            s.domain,
            s.description.chars().take(60).collect::<String>(),
            if same {
                format!("agree: {postfix:?}")
            } else {
                format!("DISAGREE: postfix {postfix:?} exporter {ours:?}")
            }
        );
        if !same {
            failures.push(format!(
                "{} ({}) in {mode} mode: posttls-finger {postfix:?}, exporter {ours:?}; report: {}",
                s.id,
                s.domain,
                serde_json::to_string(r)?
            ));
        }
    }
    if !failures.is_empty() {
        bail!("{} disagreements:\n{}", failures.len(), failures.join("\n"));
    }
    Ok(())
}

#[test]
fn verdicts_agree_with_posttls_finger_in_upstream_mode() -> Result<()> {
    compare_mode(&lab()?, "upstream")
}

#[test]
fn verdicts_agree_with_posttls_finger_in_local_mode() -> Result<()> {
    compare_mode(&lab()?, "local")
}

/// Per-record facts behind the verdicts, where the record-level truth is known.
#[test]
fn tlsa_record_matches_are_reported_per_record() -> Result<()> {
    let lab = lab()?;
    let dir = tempdir()?;
    let cfg = write(dir.path(), "c.yml", &lab.config("upstream", "")?)?;
    let (_, reports) = check_json(
        &cfg,
        &[
            "s02.dane.test",
            "s16.dane.test",
            "s14.dane.test",
            "s19.dane.test",
            "s06.dane.test",
        ],
    )?;
    let checks = |i: usize| -> Vec<(String, bool)> {
        reports[i]["hosts"][0]["addresses"][0]["tlsa"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["record"].as_str().unwrap_or("").to_string(),
                    c["matched"].as_bool().unwrap_or(false),
                )
            })
            .collect()
    };
    // s02: stale 3 1 1, matching 2 1 1: exactly one of two matches (the two-record safety net is gone).
    let s02 = checks(0);
    assert_eq!(s02.len(), 2, "{s02:?}");
    assert_eq!(s02.iter().filter(|c| c.1).count(), 1, "{s02:?}");
    assert!(
        s02.iter().any(|c| c.0.starts_with("2 1 1 ") && c.1),
        "{s02:?}"
    );
    // s16: the 3 1 1 matches but is outranked by the stale 3 1 2 (digest agility).
    let s16 = checks(1);
    assert!(
        s16.iter().any(|c| c.0.starts_with("3 1 1 ") && c.1),
        "{s16:?}"
    );
    assert!(
        s16.iter().any(|c| c.0.starts_with("3 1 2 ") && !c.1),
        "{s16:?}"
    );
    let why = reports[1]["hosts"][0]["addresses"][0]["tlsa"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["explanation"].as_str())
        .collect::<Vec<_>>()
        .join(" | ");
    assert!(why.contains("digest agility"), "{why}");
    // s14: unusable records never match.
    assert!(checks(2).iter().all(|c| !c.1), "{:?}", checks(2));
    // s19: 2 1 0 with the CA not served still matches.
    assert!(
        checks(3).iter().any(|c| c.0.starts_with("2 1 0 ") && c.1),
        "{:?}",
        checks(3)
    );
    // Match (RFC 7671) and authenticates, per record: (record, matched, authenticates).
    let facts = |i: usize| -> Vec<(String, bool, bool)> {
        reports[i]["hosts"][0]["addresses"][0]["tlsa"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["record"].as_str().unwrap_or("").to_string(),
                    c["matched"].as_bool().unwrap_or(false),
                    c["authenticates"].as_bool().unwrap_or(false),
                )
            })
            .collect()
    };
    let has = |i: usize, prefix: &str, matched: bool, authenticates: bool| {
        facts(i)
            .iter()
            .any(|c| c.0.starts_with(prefix) && c.1 == matched && c.2 == authenticates)
    };
    // s02: the 2 1 1 authenticates, the stale 3 1 1 does neither.
    assert!(has(0, "2 1 1 ", true, true), "{:?}", facts(0));
    assert!(has(0, "3 1 1 ", false, false), "{:?}", facts(0));
    // s16: the 3 1 1 matches but, outranked, does not authenticate.
    assert!(has(1, "3 1 1 ", true, false), "{:?}", facts(1));
    // s14: unusable records neither match nor authenticate.
    assert!(facts(2).iter().all(|c| !c.1 && !c.2), "{:?}", facts(2));
    // s19: 2 1 0 of the unserved CA matches by signature and authenticates.
    assert!(has(3, "2 1 0 ", true, true), "{:?}", facts(3));
    // s06: the 2 1 1 fits the served CA (match) but the leaf names another host: it does
    // not authenticate (was match 0 before the two facts were split).
    assert!(has(4, "2 1 1 ", true, false), "{:?}", facts(4));
    let why = reports[4]["hosts"][0]["addresses"][0]["tlsa"][0]["explanation"]
        .as_str()
        .unwrap_or("");
    assert!(
        why.contains("matches, but does not authenticate")
            || why.contains("but does not authenticate: the leaf names none"),
        "{why}"
    );
    Ok(())
}

/// RRSIG expiry is visible in both modes, and for bogus (expired) data in local mode.
#[test]
fn signature_expiry_is_reported_in_both_modes() -> Result<()> {
    let lab = lab()?;
    let want: i64 = lab.get("LAB_RRSIG_EXPIRATION")?.parse()?;
    let expired: i64 = lab.get("LAB_EXPIRED_RRSIG_EXPIRATION")?.parse()?;
    for mode in ["upstream", "local"] {
        let dir = tempdir()?;
        let cfg = write(dir.path(), "c.yml", &lab.config(mode, "")?)?;
        let (_, reports) = check_json(&cfg, &["s01.dane.test", "expired.test"])?;
        let lookups = reports[0]["lookups"].as_array().context("lookups")?;
        for l in lookups {
            assert_eq!(l["dnssec"], "secure", "{mode}: {l}");
            assert_eq!(l["sig_expiry"].as_i64(), Some(want), "{mode}: {l}");
        }
        let mx = &reports[1]["lookups"][0];
        assert_eq!(mx["dnssec"], "bogus", "{mode}: {mx}");
        assert_eq!(mx["sig_expiry"].as_i64(), Some(expired), "{mode}: {mx}");
    }
    Ok(())
}
