//! Plain-text rendering of a `TargetReport` for people: the `check` command's output and
//! `/probe?debug=true`.
//!
//! Owns: per MX host and address the DNSSEC state, STARTTLS, certificates, every TLSA
//! record and whether it matches, the DANE verdict and why; with `verbose`, every DNS
//! answer and the SMTP transcript. Every string that came from the network (names,
//! certificate subjects, SMTP replies, error and EDE text) goes through [`Esc`]: control
//! and bidirectional-override characters are shown escaped (`\u{1b}`), never written to
//! the terminal raw.
//! MTA-STS and TLSRPT: `policies`.
//! Not here: probing (`probe`), the CLI command (`check`), metrics (`metrics`).

mod authoritative;
mod policies;

use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::model::cert::MAX_EXPORTED_CERTS;
use crate::model::report::{AddressReport, HostReport, TargetReport};
use crate::model::smtp::{SmtpReport, TlsMode};
use crate::model::tlsa::{exported_checks, MAX_EXPORTED_TLSA_RECORDS};

/// Displays a string with control characters (C0, DEL, C1: what `char::is_control` says)
/// and the Unicode bidirectional controls escaped as `\u{..}`, so that text from a
/// server or a zone cannot move the cursor, clear the screen or reorder what follows it
/// (Unicode TR #9; CVE-2021-42574 "Trojan Source").
pub(crate) struct Esc<'a>(pub(crate) &'a str);

/// The bidirectional formatting characters: LRM, RLM, ALM, LRE..RLO, LRI..PDI.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() || is_bidi_control(c) {
                write!(f, "\\u{{{:x}}}", u32::from(c))?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

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
    render_summary(&mut o, r);
    if verbose {
        render_lookups(&mut o, r);
    }
    for h in &r.hosts {
        render_host(&mut o, h);
        for a in &h.addresses {
            render_address(&mut o, h, a, verbose);
        }
    }
    authoritative::render(&mut o, r);
    policies::render_policies(&mut o, r);
    o
}

/// The target line, its error and the MX RRset.
fn render_summary(o: &mut String, r: &TargetReport) {
    let _ = writeln!(
        o,
        "{} ({}): {} in {:.3} s",
        Esc(&r.target),
        r.kind,
        if r.success { "OK" } else { "PROBLEM" },
        r.duration_seconds
    );
    if let Some(e) = &r.error {
        let _ = writeln!(o, "  error: {}", Esc(e));
    }
    if let Some(st) = r.mx_dnssec {
        let mx: Vec<String> =
            r.mx.iter()
                .map(|(p, h)| format!("{p} {}", Esc(h)))
                .collect();
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
}

/// Every DNS answer the verdict rests on (verbose).
fn render_lookups(o: &mut String, r: &TargetReport) {
    let _ = writeln!(o, "  DNS lookups:");
    for l in &r.lookups {
        let _ = write!(
            o,
            "    {} {}: {:?}, {}",
            Esc(&l.name),
            l.rtype,
            l.outcome,
            l.dnssec.as_str()
        );
        if !l.cnames.is_empty() {
            let chain: Vec<String> = l.cnames.iter().map(|c| Esc(c).to_string()).collect();
            let _ = write!(o, ", via CNAME {}", chain.join(" → "));
        }
        if let Some(t) = l.sig_expiry {
            let _ = write!(o, ", RRSIG expires {}", date(t));
        }
        if let Some(why) = &l.reason {
            let _ = write!(o, ", {}", Esc(why));
        }
        let _ = writeln!(o);
    }
}

/// One MX host: its DNSSEC states, TLSA base and notes.
fn render_host(o: &mut String, h: &HostReport) {
    let _ = write!(o, "  host {}", Esc(&h.mx));
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
            ", TLSA base {} {}",
            Esc(base),
            h.tlsa_dnssec.map(|d| d.as_str()).unwrap_or("-")
        );
        if h.dane_applies {
            let _ = write!(o, " ({} records)", h.tlsa_records.len());
        }
    }
    let _ = writeln!(o);
    for n in &h.notes {
        let _ = writeln!(o, "    note: {}", Esc(n));
    }
}

/// One address: SMTP and TLS, the DANE verdict, certificates, TLSA records, PKIX and (verbose)
/// the SMTP transcript.
fn render_address(o: &mut String, h: &HostReport, a: &AddressReport, verbose: bool) {
    address_line(o, a);
    if let Some(d) = a.dane {
        let _ = writeln!(o, "      DANE {}: {}", d.as_str(), Esc(&a.why));
    } else if !a.why.is_empty() {
        let _ = writeln!(o, "      {}", Esc(&a.why));
    }
    cert_lines(o, a);
    tlsa_lines(o, a);
    match &a.pkix {
        Some(Ok(())) => {
            let _ = writeln!(o, "      PKIX: valid for {}", Esc(&h.mx));
        }
        Some(Err(e)) => {
            let _ = writeln!(o, "      PKIX: invalid: {}", Esc(e));
        }
        None => {}
    }
    if verbose {
        if let Some(s) = &a.smtp {
            for line in &s.transcript {
                let _ = writeln!(o, "      | {}", Esc(line));
            }
        }
    }
}

/// The address's first line: SMTP and STARTTLS, then TLS version and cipher or the failure.
fn address_line(o: &mut String, a: &AddressReport) {
    let addr = a
        .address
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "(no address)".into());
    let _ = write!(o, "    {addr}:");
    if let Some(s) = &a.smtp {
        let up = if s.smtp_up() { "up" } else { "down" };
        let _ = match s.tls_mode {
            TlsMode::Implicit => write!(o, " implicit TLS, SMTP {up}"),
            TlsMode::Starttls if s.starttls_advertised => {
                write!(o, " SMTP {up}, STARTTLS offered")
            }
            TlsMode::Starttls => write!(o, " SMTP {up}, STARTTLS not offered"),
        };
        if let Some(t) = &s.tls {
            let _ = write!(o, ", {} {}", Esc(&t.version), Esc(&t.cipher));
        }
        after_tls_words(o, s);
        if let Some(e) = &s.error {
            let _ = write!(o, ", failed: {} [{}]", Esc(&e.to_string()), e.reason());
        }
    }
    let _ = writeln!(o);
}

/// What the EHLO inside TLS said: answered or not, REQUIRETLS (RFC 8689) or not.
fn after_tls_words(o: &mut String, s: &SmtpReport) {
    match (s.tls_mode, s.ehlo_after_tls_success()) {
        (TlsMode::Starttls, Some(true)) => {
            let _ = write!(o, ", EHLO after TLS answered");
        }
        (TlsMode::Starttls, Some(false)) => {
            let _ = write!(o, ", EHLO after TLS NOT answered");
        }
        _ => {}
    }
    if let Some(r) = s.requiretls_advertised() {
        let _ = write!(
            o,
            ", REQUIRETLS {}",
            if r { "offered" } else { "not offered" }
        );
    }
}

/// One line per certificate of the chain, the unparsable ones, and a note when the chain is
/// longer than the metrics export.
fn cert_lines(o: &mut String, a: &AddressReport) {
    for c in &a.certs {
        let _ = writeln!(
            o,
            "      cert {}: subject {}; issuer {}; not after {}; sha256 {}",
            c.depth,
            Esc(&c.subject),
            Esc(&c.issuer),
            date(c.not_after),
            short(&c.sha256)
        );
    }
    for (d, e) in &a.cert_errors {
        let _ = writeln!(o, "      cert {d}: unparsable: {}", Esc(e));
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
}

/// One line per TLSA record check, and a note when more records exist than are exported.
fn tlsa_lines(o: &mut String, a: &AddressReport) {
    for c in &a.tlsa {
        let state = match (c.matched, c.authenticates) {
            (true, true) => "match, authenticates",
            (true, false) => "match           ",
            _ => "no match        ",
        };
        let _ = writeln!(o, "      TLSA {state}: {}", Esc(&c.explain()));
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
                "    192.0.2.25: SMTP up, STARTTLS offered, TLSv1.3 TLS13_AES_128_GCM_SHA256, EHLO after TLS answered, REQUIRETLS not offered\n"
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
        assert!(t.contains("      cert 0: subject CN=mx1 \"quoted\" back\\slash\\u{a}second line; issuer CN=Test CA;"), "{t}");
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

    mod escaping {

        use std::sync::Arc;

        use super::super::*;
        use crate::model::cert::CertFacts;
        use crate::model::dns::{Answer, Data, Dnssec, Outcome};
        use crate::model::smtp::SmtpReport;

        const ESC: &str = "\u{1b}[2J";
        const RLO: char = '\u{202e}';

        #[test]
        fn control_and_bidi_characters_are_escaped() {
            assert_eq!(
                Esc("a\u{1b}[31mb\rc\0d\u{202e}e\u{7f}\u{85}").to_string(),
                "a\\u{1b}[31mb\\u{d}c\\u{0}d\\u{202e}e\\u{7f}\\u{85}"
            );
            // Ordinary text, including non-ASCII letters and the renderer's own marks, is kept.
            assert_eq!(
                Esc("mx1.exämple.org → …").to_string(),
                "mx1.exämple.org → …"
            );
        }

        /// A report whose every server- or zone-supplied string carries ESC, CR, NUL or a
        /// bidi override; the rendering must contain none of them raw.
        #[test]
        fn report_text_never_carries_raw_control_characters() {
            let smtp = {
                let mut s = SmtpReport::new("192.0.2.25:25".parse().unwrap());
                s.connected = true;
                s.transcript = vec![
                    format!("S: 220 mx{ESC} ESMTP\r"),
                    "S: 250-mx\0x".into(),
                    format!("S: 250 {RLO}SLTTRATS"),
                ];
                Arc::new(s)
            };
            let cert = CertFacts {
                depth: 0,
                subject: format!("CN=mx1{ESC}\r\nCN=forged"),
                issuer: format!("CN=CA{RLO}gpj.exe"),
                serial: "01".into(),
                not_before: 0,
                not_after: 0,
                sha256: "ab".repeat(32),
                spki_sha256: "cd".repeat(32),
                dns_names: vec![],
                self_signed: false,
            };
            let lookup = Answer {
                name: "_25._tcp.mx1.example.org".into(),
                rtype: "TLSA".into(),
                outcome: Outcome::Failed,
                dnssec: Dnssec::Bogus,
                cnames: vec![format!("x{ESC}.example.org")],
                data: Data::None,
                sig_expiry: None,
                reason: Some(format!("EDE 6 (DNSSEC Bogus): sig{ESC}\0 expired")),
                ttl: 0,
                original_ttl: None,
            };
            let r = TargetReport {
                target: "example.org".into(),
                kind: "domain",
                timestamp: 0.0,
                duration_seconds: 0.1,
                mx_dnssec: Some(Dnssec::Secure),
                mx: vec![(10, format!("mx1{RLO}.example.org"))],
                implicit_mx: false,
                null_mx: false,
                hosts: vec![HostReport {
                    mx: format!("mx1{RLO}.example.org"),
                    preference: Some(10),
                    port: 25,
                    address_dnssec: Some(Dnssec::Secure),
                    tlsa_base: Some("mx1.example.org".into()),
                    tlsa_records: vec![],
                    tlsa_dnssec: Some(Dnssec::Bogus),
                    tlsa_timing: Default::default(),
                    dane_applies: false,
                    addresses: vec![AddressReport {
                        address: Some("192.0.2.25".parse().unwrap()),
                        smtp: Some(smtp),
                        certs: vec![cert],
                        cert_errors: vec![(1, format!("bad{ESC}"))],
                        pkix: Some(Err(format!("name mismatch{RLO}"))),
                        tlsa: vec![],
                        dane: None,
                        why: format!("why\0{ESC}"),
                    }],
                    notes: vec![format!("note\r{ESC}")],
                }],
                lookups: vec![Arc::new(lookup)],
                authoritative: Vec::new(),
                error: Some(format!("error{ESC}")),
                success: false,
                mta_sts: None,
                tlsrpt: None,
                staged: Vec::new(),
            };
            for verbose in [false, true] {
                let out = render_text(&r, verbose);
                for c in ['\u{1b}', '\r', '\0', RLO] {
                    assert!(!out.contains(c), "raw {c:?} in {out}");
                }
                assert!(
                    out.contains("subject CN=mx1\\u{1b}[2J\\u{d}\\u{a}CN=forged;"),
                    "{out}"
                );
                assert!(out.contains("issuer CN=CA\\u{202e}gpj.exe;"), "{out}");
                // Each line the renderer writes is one line: an embedded newline cannot forge one.
                assert!(!out.lines().any(|l| l.starts_with("CN=forged")), "{out}");
                if verbose {
                    assert!(out.contains("| S: 220 mx\\u{1b}[2J ESMTP\\u{d}"), "{out}");
                    assert!(out.contains("| S: 250-mx\\u{0}x"), "{out}");
                    assert!(out.contains("sig\\u{1b}[2J\\u{0} expired"), "{out}");
                }
            }
        }
    }
}
