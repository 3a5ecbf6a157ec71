//! Fuzz the MTA-STS and TLSRPT parsers (`sts`: RFC 8461 §3.1, §3.2, §4.1; RFC 8460 §3) with
//! arbitrary text.
//!
//! Input: byte 0 selects what the rest is: 0 a policy body, 1 a `_mta-sts` TXT RRset, 2 a
//! `_smtp._tls` TXT RRset (records separated by NUL), 3 an mx pattern and a host (split at the
//! first NUL). Non-UTF-8 bytes are replaced, as the DNS and HTTP steps do.
//!
//! Checks: no panic; a parsed policy keeps the RFC bounds (max_age ≤ 31557600, at most
//! `MAX_MX_PATTERNS` patterns, at least one unless mode none, patterns lower case); a parsed
//! record id is 1-32 alphanumerics; TLSRPT URIs are `mailto:` or `https:`; matching is
//! case-insensitive and a wildcard never covers the bare base name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtls_exporter::sts::{
    mx_matches, parse_policy, parse_sts_records, parse_tlsrpt_records, Mode, MAX_MAX_AGE,
    MAX_MX_PATTERNS, MAX_RUA,
};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let lossy = String::from_utf8_lossy(rest);
    let text: &str = &lossy;
    let records = || text.split('\0').map(str::to_string).collect::<Vec<_>>();
    match sel % 4 {
        0 => {
            if let Ok(p) = parse_policy(text) {
                assert!(p.max_age <= MAX_MAX_AGE);
                assert!(p.mx.len() <= MAX_MX_PATTERNS);
                assert!(p.mode == Mode::None || !p.mx.is_empty());
                for m in &p.mx {
                    assert_eq!(m, &m.to_ascii_lowercase());
                    assert!(mx_matches(m, &m.to_ascii_uppercase()) || m.starts_with("*."));
                }
            }
        }
        1 => {
            if let Ok(Some(r)) = parse_sts_records(&records()) {
                assert!((1..=32).contains(&r.id.len()));
                assert!(r.id.bytes().all(|c| c.is_ascii_alphanumeric()));
            }
        }
        2 => {
            if let Ok(Some(r)) = parse_tlsrpt_records(&records()) {
                assert!(!r.rua.is_empty() && r.rua.len() <= MAX_RUA);
                for u in &r.rua {
                    let l = u.to_ascii_lowercase();
                    assert!(l.starts_with("mailto:") || l.starts_with("https://"), "{u}");
                }
            }
        }
        _ => {
            let (pattern, host) = text.split_once('\0').unwrap_or((text, ""));
            let m = mx_matches(pattern, host);
            assert_eq!(m, mx_matches(&pattern.to_ascii_uppercase(), &host.to_ascii_lowercase()));
            if let Some(base) = pattern.strip_prefix("*.") {
                assert!(!mx_matches(pattern, base));
            }
        }
    }
});
