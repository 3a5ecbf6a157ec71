//! Plain-text rendering of a `TargetReport` for people: the `check` command's output and
//! `/probe?debug=true`.
//!
//! Owns: per MX host and address the DNSSEC state, STARTTLS, certificates, every TLSA
//! record and whether it matches, the DANE verdict and why; with `verbose`, every DNS
//! answer and the SMTP transcript.
//! Not here: probing (`probe`), the CLI command (`check`), metrics (`metrics`).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::model::cert::MAX_EXPORTED_CERTS;
use crate::model::report::TargetReport;
use crate::model::tlsa::{exported_checks, MAX_EXPORTED_TLSA_RECORDS};

fn date(ts: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let days = (ts - now) as f64 / 86_400.0;
    let when = time::OffsetDateTime::from_unix_timestamp(ts)
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        })
        .unwrap_or_else(|_| ts.to_string());
    if days >= 0.0 {
        format!("{when} (in {days:.1} days)")
    } else {
        format!("{when} ({:.1} days ago)", -days)
    }
}

/// Certificate names as the server sent them, with control characters (a newline, a
/// terminal escape) written as escapes, so a hostile certificate cannot forge output lines.
fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn short(hex: &str) -> String {
    if hex.len() > 16 {
        format!("{}…", &hex[..16])
    } else {
        hex.to_string()
    }
}

/// The readable report. `verbose` adds every DNS answer and the SMTP transcript.
pub fn render_text(r: &TargetReport, verbose: bool) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} ({}): {} in {:.3} s",
        r.target,
        r.kind,
        if r.success { "OK" } else { "PROBLEM" },
        r.duration_seconds
    );
    if let Some(e) = &r.error {
        let _ = writeln!(o, "  error: {e}");
    }
    if let Some(st) = r.mx_dnssec {
        let mx: Vec<String> = r.mx.iter().map(|(p, h)| format!("{p} {h}")).collect();
        let _ = writeln!(
            o,
            "  MX RRset: {}{}{}: {}",
            st.as_str(),
            if r.implicit_mx {
                ", implicit MX (no MX records)"
            } else {
                ""
            },
            if r.null_mx { ", null MX" } else { "" },
            if mx.is_empty() {
                "-".to_string()
            } else {
                mx.join(", ")
            }
        );
    }
    if verbose {
        let _ = writeln!(o, "  DNS lookups:");
        for l in &r.lookups {
            let _ = write!(
                o,
                "    {} {}: {:?}, {}",
                l.name,
                l.rtype,
                l.outcome,
                l.dnssec.as_str()
            );
            if !l.cnames.is_empty() {
                let _ = write!(o, ", via CNAME {}", l.cnames.join(" → "));
            }
            if let Some(t) = l.sig_expiry {
                let _ = write!(o, ", RRSIG expires {}", date(t));
            }
            if let Some(why) = &l.reason {
                let _ = write!(o, ", {why}");
            }
            let _ = writeln!(o);
        }
    }
    for h in &r.hosts {
        let _ = write!(o, "  host {}", h.mx);
        if let Some(p) = h.preference {
            let _ = write!(o, " (preference {p})");
        }
        let _ = write!(o, " port {}", h.port);
        if let Some(st) = h.address_dnssec {
            let _ = write!(o, ": addresses {}", st.as_str());
        }
        if let Some(base) = &h.tlsa_base {
            let _ = write!(
                o,
                ", TLSA base {base} {}",
                h.tlsa_dnssec.map(|d| d.as_str()).unwrap_or("-")
            );
            if h.dane_applies {
                let _ = write!(o, " ({} records)", h.tlsa_records.len());
            }
        }
        let _ = writeln!(o);
        for n in &h.notes {
            let _ = writeln!(o, "    note: {n}");
        }
        for a in &h.addresses {
            let addr = a
                .address
                .map(|ip| ip.to_string())
                .unwrap_or_else(|| "(no address)".into());
            let _ = write!(o, "    {addr}:");
            if let Some(s) = &a.smtp {
                let _ = write!(
                    o,
                    " SMTP {}, STARTTLS {}",
                    if s.smtp_up() { "up" } else { "down" },
                    if s.starttls_advertised {
                        "offered"
                    } else {
                        "not offered"
                    }
                );
                match &s.tls {
                    Some(t) => {
                        let _ = write!(o, ", {} {}", t.version, t.cipher);
                    }
                    None => {
                        if let Some(e) = &s.error {
                            let _ = write!(o, ", failed: {e} [{}]", e.reason());
                        }
                    }
                }
            }
            let _ = writeln!(o);
            if let Some(d) = a.dane {
                let _ = writeln!(o, "      DANE {}: {}", d.as_str(), a.why);
            } else if !a.why.is_empty() {
                let _ = writeln!(o, "      {}", a.why);
            }
            for c in &a.certs {
                let _ = writeln!(
                    o,
                    "      cert {}: subject {}; issuer {}; not after {}; sha256 {}",
                    c.depth,
                    printable(&c.subject),
                    printable(&c.issuer),
                    date(c.not_after),
                    short(&c.sha256)
                );
            }
            for (d, e) in &a.cert_errors {
                let _ = writeln!(o, "      cert {d}: unparsable: {e}");
            }
            if let Some(len) = a
                .smtp
                .as_ref()
                .and_then(|s| s.tls.as_ref())
                .map(|t| t.chain_len)
            {
                if len > MAX_EXPORTED_CERTS {
                    let _ = writeln!(
                        o,
                        "      note: the server sent {len} certificates; the metrics export depth 0-{} only",
                        MAX_EXPORTED_CERTS - 1
                    );
                }
            }
            for c in &a.tlsa {
                let state = match (c.matched, c.authenticates) {
                    (true, true) => "match, authenticates",
                    (true, false) => "match           ",
                    _ => "no match        ",
                };
                let _ = writeln!(o, "      TLSA {state}: {}", c.explain());
            }
            if a.tlsa.len() > MAX_EXPORTED_TLSA_RECORDS {
                let exported = exported_checks(&a.tlsa).len();
                let _ = writeln!(
                    o,
                    "      note: {} TLSA records, {exported} exported as series (authenticating and matching records first); the other {} are listed here only",
                    a.tlsa.len(),
                    a.tlsa.len() - exported
                );
            }
            match &a.pkix {
                Some(Ok(())) => {
                    let _ = writeln!(o, "      PKIX: valid for {}", h.mx);
                }
                Some(Err(e)) => {
                    let _ = writeln!(o, "      PKIX: invalid: {e}");
                }
                None => {}
            }
            if verbose {
                if let Some(s) = &a.smtp {
                    for line in &s.transcript {
                        let _ = writeln!(o, "      | {line}");
                    }
                }
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixture::{complete_report, MX1, MX2};

    #[test]
    fn every_host_address_and_verdict_sentence_appears() {
        let r = complete_report();
        let t = render_text(&r, false);
        assert!(
            t.starts_with("example.test (domain): PROBLEM in 0.250 s\n"),
            "{t}"
        );
        assert!(
            t.contains("  MX RRset: secure: 10 mx1.example.test, 20 mx2.example.test\n"),
            "{t}"
        );
        assert!(t.contains(&format!("  host {MX1} (preference 10) port 25: addresses secure, TLSA base {MX1} secure (3 records)\n")), "{t}");
        assert!(
            t.contains(&format!(
                "  host {MX2} (preference 20) port 25: addresses insecure\n"
            )),
            "{t}"
        );
        assert!(
            t.contains("    note: the MX RRset is insecure (test note)\n"),
            "{t}"
        );
        // Each address: its SMTP facts, then the verdict and the sentence of `judge`.
        assert!(
            t.contains(
                "    192.0.2.25: SMTP up, STARTTLS offered, TLSv1.3 TLS13_AES_128_GCM_SHA256\n"
            ),
            "{t}"
        );
        assert!(t.contains("    2001:db8::25: SMTP up, STARTTLS not offered, failed: STARTTLS not advertised [no_starttls]\n"), "{t}");
        for (h, a) in r.addresses() {
            let d = a.dane.map(|d| d.as_str()).unwrap_or("-");
            assert!(
                t.contains(&format!("      DANE {d}: {}\n", a.why)),
                "{} {d}: {t}",
                h.mx
            );
        }
        assert!(t.contains("      DANE verified: authenticated by"), "{t}");
        assert!(
            t.contains("      DANE failed: TLSA records require TLS"),
            "{t}"
        );
        assert!(
            t.contains("      DANE none: address records of mx2.example.test are insecure"),
            "{t}"
        );
    }

    #[test]
    fn records_certificates_and_pkix_are_listed_per_address() {
        let t = render_text(&complete_report(), false);
        // Every TLSA record with its judgement sentence (RFC 7672 §3.1.3 for the PKIX usage).
        assert!(
            t.contains("      TLSA match, authenticates: 3 1 1 aaaaaaaa"),
            "{t}"
        );
        assert!(t.contains("matches the leaf key\n"), "{t}");
        assert!(
            t.contains("      TLSA match, authenticates: 2 1 1 bbbbbbbb"),
            "{t}"
        );
        assert!(t.contains("matches the trust anchor key at depth 1"), "{t}");
        assert!(
            t.contains("      TLSA no match        : 1 1 1 cccccccc"),
            "{t}"
        );
        assert!(t.contains("is unusable: usage 1 (PKIX-TA/PKIX-EE)"), "{t}");
        assert_eq!(t.matches("TLSA no match").count(), 1 + 3, "{t}");
        assert!(
            t.contains(
                "      cert 1: subject CN=Test CA; issuer CN=Test CA; not after 2036-01-01 00:00Z"
            ),
            "{t}"
        );
        assert!(t.contains("; sha256 1111111111111111…\n"), "{t}");
        assert!(
            t.contains("      cert 2: unparsable: not a certificate\n"),
            "{t}"
        );
        assert!(t.contains(&format!("      PKIX: valid for {MX1}\n")), "{t}");
        assert!(
            t.contains("      PKIX: invalid: certificate expired\n"),
            "{t}"
        );
        // A newline in a certificate name is shown escaped, never as a line of its own.
        assert!(t.contains("      cert 0: subject CN=mx1 \"quoted\" back\\slash\\nsecond line; issuer CN=Test CA;"), "{t}");
        assert!(!t.lines().any(|l| l.starts_with("second line")), "{t}");
        // Not verbose: no DNS lookups, no transcript.
        assert!(
            !t.contains("DNS lookups:") && !t.contains("      | "),
            "{t}"
        );
    }

    #[test]
    fn verbose_adds_every_lookup_and_the_transcript() {
        let t = render_text(&complete_report(), true);
        assert!(t.contains("  DNS lookups:\n"), "{t}");
        assert!(t.contains("    _25._tcp.mx1.example.test TLSA: Records, secure, RRSIG expires 2030-01-01 00:00Z"), "{t}");
        assert!(
            t.contains("    mx2.example.test AAAA: NoData, insecure\n"),
            "{t}"
        );
        assert!(
            t.contains("    broken.example.test A: Failed, error\n"),
            "{t}"
        );
        assert!(t.contains("      | S: 220 mx ESMTP\n"), "{t}");
    }

    #[test]
    fn target_errors_and_null_mx_are_stated() {
        let mut r = crate::model::fixture::report(Vec::new());
        r.null_mx = true;
        r.mx.clear();
        r.error = Some("null MX: the domain accepts no mail (RFC 7505)".into());
        let t = render_text(&r, false);
        assert!(
            t.contains("  error: null MX: the domain accepts no mail (RFC 7505)\n"),
            "{t}"
        );
        assert!(t.contains("  MX RRset: secure, null MX: -\n"), "{t}");
    }
}
