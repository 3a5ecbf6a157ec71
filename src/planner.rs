//! The rollover planner: the `check` text for each staged certificate or key (README,
//! "Rolling over certificates and keys"): which published records match it and which
//! authenticate it, the verdict if it were deployed now, and either "safe to deploy from
//! <time>" or the exact records to publish first, in zone-file form.
//!
//! Not here: the verdict and times themselves (`staged`, `rollover`), the live report's text
//! (`text`), the JSON form (the report's own serialization).
//! RFC 7671 §8.1.

use std::fmt::Write as _;

use crate::model::report::{DaneStatus, HostReport, TargetReport};
use crate::model::staged::{StagedHost, StagedReport};

/// `2026-11-29 01:02:03Z`, to the second below (`when`) or above (`from`).
fn when(ts: f64) -> String {
    stamp(ts.floor() as i64)
}

fn from(ts: f64) -> String {
    stamp(ts.ceil() as i64)
}

fn stamp(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        })
        .unwrap_or_else(|_| ts.to_string())
}

/// `in 3h 20m` / `in 8s`.
fn in_time(secs: f64) -> String {
    let s = secs.ceil().max(0.0) as u64;
    match s {
        0..=119 => format!("in {s}s"),
        120..=7199 => format!("in {}m {}s", s / 60, s % 60),
        _ => format!("in {}h {}m", s / 3600, (s % 3600) / 60),
    }
}

/// The planner section of `check` for one target; empty when nothing is staged.
pub fn render_staged(r: &TargetReport, now: f64) -> String {
    let mut out = String::new();
    if r.staged.is_empty() {
        return out;
    }
    let _ = writeln!(out, "  rollover ({} staged):", r.staged.len());
    for s in &r.staged {
        render_entry(&mut out, r, s, now);
    }
    out
}

fn render_entry(out: &mut String, r: &TargetReport, s: &StagedReport, now: f64) {
    let what = match s.kind {
        "public_key" => "public key".to_string(),
        _ => match s.not_after {
            Some(t) => format!("chain, leaf not after {}", when(t as f64)),
            None => "chain".to_string(),
        },
    };
    let _ = writeln!(out, "    staged {} ({what})", s.name.escape_debug());
    if let Some(e) = &s.error {
        let _ = writeln!(
            out,
            "      cannot be judged: {} ({})",
            e.message.escape_debug(),
            e.reason
        );
        return;
    }
    let key = s.spki_sha256.get(..16).unwrap_or(&s.spki_sha256);
    let _ = writeln!(out, "      key: SPKI SHA-256 {key}…");
    if s.hosts.is_empty() {
        let _ = writeln!(out, "      applies to no MX host of this probe");
    }
    for sh in &s.hosts {
        let host = r.hosts.iter().find(|h| h.mx == sh.mx);
        render_host(out, host, sh, now);
    }
}

fn render_host(out: &mut String, host: Option<&HostReport>, sh: &StagedHost, now: f64) {
    let ttl = host.and_then(|h| h.tlsa_timing.ttl);
    let owner = sh.tlsa_name.as_deref().unwrap_or("(no TLSA lookup)");
    match ttl {
        Some(t) => {
            let _ = writeln!(out, "      on {} ({owner}, TTL {t}s):", sh.mx);
        }
        None => {
            let _ = writeln!(out, "      on {} ({owner}):", sh.mx);
        }
    }
    for (i, c) in sh.checks.iter().enumerate() {
        let state = match (c.matched, c.authenticates) {
            (_, true) => "authenticates",
            (true, false) => "matches, does not authenticate",
            (false, false) => "no match",
        };
        let since = host
            .and_then(|h| h.tlsa_timing.first_seen.get(i).copied().flatten())
            .map(|t| format!(", published since {}", when(t)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "        {state}{since}: {}",
            c.explain().escape_debug()
        );
    }
    let _ = writeln!(
        out,
        "        if deployed now: {}: {}",
        sh.dane.as_str(),
        sh.why
    );
    if sh.dane == DaneStatus::Verified {
        match sh.deploy_safe {
            Some(t) if t <= now => {
                let _ = writeln!(out, "        safe to deploy from {} (now)", from(t));
            }
            Some(t) => {
                let _ = writeln!(
                    out,
                    "        safe to deploy from {} ({}; first seen + 2 x TTL, RFC 7671 §8.1): not yet",
                    from(t),
                    in_time(t - now)
                );
            }
            None if !sh.lagging.is_empty() => {}
            None => {
                let _ = writeln!(
                    out,
                    "        safe to deploy from: unknown (first-seen time or TTL not known yet)"
                );
            }
        }
    }
    if !sh.lagging.is_empty() {
        let _ = writeln!(
            out,
            "        not safe yet: some authoritative servers do not serve {}",
            sh.lagging.join(", ")
        );
    }
    if !sh.publish.is_empty() {
        let _ = writeln!(
            out,
            "        publish first, then wait 2 x TTL before deploying:"
        );
        for line in &sh.publish {
            let _ = writeln!(out, "          {line}");
        }
    }
}
