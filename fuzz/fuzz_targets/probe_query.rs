//! Fuzz the `/probe` request parsing: the query string (`http::query_params`,
//! `application/x-www-form-urlencoded`), the `target` parameter in Postfix next-hop syntax
//! (`NextHop::parse`), its canonical name (the `target` label) and the allow-list decision
//! (`Config::probe_allowed`) against a fixed config.
//!
//! Checks: no panic; decoded parameters survive re-encoding; the canonical name of a parsed
//! target parses back to the same next hop and is its own canonical name; host and domain
//! names are normalized; configured targets are always allowed.
#![no_main]

use std::fmt::Write as _;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mailtls_exporter::config::{self, Config};
use mailtls_exporter::http::query_params;
use mailtls_exporter::target::{normalize_name, NextHop};

const CONFIG: &str = "\
dns:
  resolver: 127.0.0.1:53
smtp:
  helo_name: fuzz.invalid
probe:
  allow:
    - '*.dane.test'
    - 'mx?.good.test'
    - '127.0.0.0/8'
    - '[*.dane.test]:587'
targets:
  - domain: good.test
  - host: mx1.good.test
    port: 587
  - address: 127.0.0.1
";

fn config() -> &'static Config {
    static CFG: OnceLock<Config> = OnceLock::new();
    CFG.get_or_init(|| config::parse(CONFIG, "probe-fuzz.yml").expect("fixed config is valid"))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .fold(String::with_capacity(s.len() * 3), |mut out, b| {
            let _ = write!(out, "%{b:02X}");
            out
        })
}

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let params = query_params(query);
    let encoded: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    assert_eq!(query_params(&encoded.join("&")), params);

    let cfg = config();
    for t in &cfg.targets {
        assert!(cfg.probe_allowed(&t.hop));
    }
    let Some(target) = params
        .iter()
        .find(|(k, _)| k == "target")
        .map(|(_, v)| v.as_str())
    else {
        return;
    };
    let Ok(hop) = NextHop::parse(target) else {
        return;
    };
    let canonical = hop.to_string();
    assert_eq!(
        NextHop::parse(&canonical).as_ref(),
        Ok(&hop),
        "{target:?} → {canonical:?} does not parse back"
    );
    match &hop {
        NextHop::Domain(n) | NextHop::Host { host: n, .. } => {
            assert_eq!(normalize_name(n).as_ref(), Ok(n));
        }
        NextHop::Address { .. } => {}
    }
    let _ = cfg.probe_allowed(&hop);
});
