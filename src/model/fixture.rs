//! Test fixture: a complete `TargetReport` in which every per-address family of
//! docs/metrics.md and every line of the text rendering has a value, built from plain model
//! values (no probing, no certificates to parse).
//!
//! Used by the unit tests of `model`, `metrics` and `text`, and by `tests/foundation.rs`
//! (which includes this file and runs `promtool check metrics` on its exposition); so it
//! names the model only through `crate::model`, which that test crate re-exports.
//! Not compiled into the exporter (`#[cfg(test)]` in `model/mod.rs`).
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::model::cert::CertFacts;
use crate::model::dns::{Answer, Data, Dnssec, Mx, Outcome};
use crate::model::report::{AddressReport, DaneStatus, HostReport, TargetReport, TlsaTiming};
use crate::model::smtp::{ProbeError, Reply, SmtpReport, TlsFacts, TlsMode};
use crate::model::staged::{StagedFileError, StagedHost, StagedReport};
use crate::model::tlsa::{RecordCheck, RecordDetail, Tlsa, Unusable};

pub(crate) const TARGET: &str = "example.test";
pub(crate) const MX1: &str = "mx1.example.test";
pub(crate) const MX2: &str = "mx2.example.test";
/// A certificate subject as a hostile server may send it: a quote, a backslash and a
/// newline, all of which the exposition must escape (label values are strings).
pub(crate) const HOSTILE_SUBJECT: &str = "CN=mx1 \"quoted\" back\\slash\nsecond line";
/// RRSIG expiration of every signed lookup: 2030-01-01T00:00:00Z.
pub(crate) const SIG_EXPIRY: i64 = 1_893_456_000;
/// notBefore / notAfter of every certificate: 2026-01-01 / 2036-01-01 (UTC).
pub(crate) const NOT_BEFORE: i64 = 1_767_225_600;
pub(crate) const NOT_AFTER: i64 = 2_082_758_400;

pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// `3 1 1 aaaa…` (the leaf key) and `2 1 1 bbbb…` (the issuing CA's key).
pub(crate) fn ee_record() -> Tlsa {
    Tlsa {
        usage: 3,
        selector: 1,
        matching: 1,
        data: vec![0xaa; 32],
    }
}
pub(crate) fn ta_record() -> Tlsa {
    Tlsa {
        usage: 2,
        selector: 1,
        matching: 1,
        data: vec![0xbb; 32],
    }
}
/// `1 1 1 cccc…`: PKIX-EE, unusable for SMTP (RFC 7672 §3.1.3).
pub(crate) fn pkix_record() -> Tlsa {
    Tlsa {
        usage: 1,
        selector: 1,
        matching: 1,
        data: vec![0xcc; 32],
    }
}

pub(crate) fn answer(
    name: &str,
    rtype: &str,
    outcome: Outcome,
    dnssec: Dnssec,
    data: Data,
) -> Arc<Answer> {
    let signed = outcome == Outcome::Records && dnssec == Dnssec::Secure;
    Arc::new(Answer {
        name: name.into(),
        rtype: rtype.into(),
        outcome,
        dnssec,
        cnames: Vec::new(),
        data,
        sig_expiry: signed.then_some(SIG_EXPIRY),
        reason: None,
        ttl: 300,
        original_ttl: None,
    })
}

fn reply(code: u16, text: &str) -> Option<Reply> {
    Some(Reply {
        code,
        lines: vec![text.to_string()],
    })
}

/// An SMTP session at `addr` that offered STARTTLS and completed TLS 1.3.
pub(crate) fn tls_session(addr: IpAddr) -> SmtpReport {
    SmtpReport {
        address: SocketAddr::new(addr, 25),
        tls_mode: TlsMode::Starttls,
        connected: true,
        greeting: reply(220, "mx ESMTP"),
        ehlo: reply(250, "mx"),
        extensions: vec!["STARTTLS".into(), "PIPELINING".into()],
        starttls_advertised: true,
        starttls: reply(220, "2.0.0 Ready to start TLS"),
        tls: Some(TlsFacts {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_128_GCM_SHA256".into(),
            chain: Vec::new(),
            chain_len: 2,
            handshake_seconds: 0.004,
        }),
        ehlo_after_tls_sent: true,
        ehlo_after_tls: reply(250, "mx"),
        extensions_after_tls: vec!["PIPELINING".into()],
        error: None,
        transcript: vec!["S: 220 mx ESMTP".into(), "C: EHLO probe.test".into()],
        seconds: 0.01,
    }
}

/// An SMTP session at `addr` whose EHLO did not offer STARTTLS.
pub(crate) fn plain_session(addr: IpAddr) -> SmtpReport {
    SmtpReport {
        extensions: vec!["PIPELINING".into()],
        starttls_advertised: false,
        starttls: None,
        tls: None,
        ehlo_after_tls_sent: false,
        ehlo_after_tls: None,
        extensions_after_tls: Vec::new(),
        error: Some(ProbeError::StartTlsNotOffered),
        ..tls_session(addr)
    }
}

pub(crate) fn cert(depth: usize, subject: &str, issuer: &str) -> CertFacts {
    CertFacts {
        depth,
        subject: subject.into(),
        issuer: issuer.into(),
        serial: format!("0{depth}"),
        not_before: NOT_BEFORE,
        not_after: NOT_AFTER,
        sha256: format!("{depth}").repeat(64),
        spki_sha256: format!("{}", depth + 5).repeat(64),
        dns_names: vec![MX1.into()],
        self_signed: depth > 0,
    }
}

/// An address with its SMTP session and verdict; no certificates, no TLSA checks.
pub(crate) fn address(
    addr: Option<IpAddr>,
    smtp: Option<SmtpReport>,
    dane: Option<DaneStatus>,
) -> AddressReport {
    AddressReport {
        address: addr,
        smtp: smtp.map(Arc::new),
        certs: Vec::new(),
        cert_errors: Vec::new(),
        pkix: None,
        tlsa: Vec::new(),
        dane,
        why: String::new(),
    }
}

pub(crate) fn host(mx: &str, preference: u16, addresses: Vec<AddressReport>) -> HostReport {
    HostReport {
        mx: mx.into(),
        preference: Some(preference),
        port: 25,
        address_dnssec: Some(Dnssec::Secure),
        tlsa_base: None,
        tlsa_records: Vec::new(),
        tlsa_dnssec: None,
        tlsa_timing: Default::default(),
        dane_applies: false,
        addresses,
        notes: Vec::new(),
    }
}

pub(crate) fn report(hosts: Vec<HostReport>) -> TargetReport {
    TargetReport {
        target: TARGET.into(),
        kind: "domain",
        timestamp: 1_780_272_000.0,
        duration_seconds: 0.25,
        mx_dnssec: Some(Dnssec::Secure),
        mx: hosts
            .iter()
            .map(|h| (h.preference.unwrap_or(0), h.mx.clone()))
            .collect(),
        implicit_mx: false,
        null_mx: false,
        hosts,
        lookups: Vec::new(),
        authoritative: Vec::new(),
        error: None,
        success: false,
        mta_sts: None,
        tlsrpt: None,
        staged: Vec::new(),
    }
}

/// mx1: DANE host, `3 1 1` + `2 1 1` + an unusable `1 1 1`; its IPv4 address verified by
/// both usable records (two certificates, the leaf with [`HOSTILE_SUBJECT`], PKIX valid), its
/// IPv6 address without STARTTLS (`failed`).
fn dane_host() -> HostReport {
    let records = vec![ee_record(), ta_record(), pkix_record()];
    let mut good = address(
        Some(ip("192.0.2.25")),
        Some(tls_session(ip("192.0.2.25"))),
        Some(DaneStatus::Verified),
    );
    good.certs = vec![
        cert(0, HOSTILE_SUBJECT, "CN=Test CA"),
        cert(1, "CN=Test CA", "CN=Test CA"),
    ];
    good.cert_errors = vec![(2, "not a certificate".into())];
    good.pkix = Some(Ok(()));
    good.tlsa = vec![
        RecordCheck {
            record: ee_record(),
            matched: true,
            authenticates: true,
            detail: RecordDetail::Matched { depth: 0 },
        },
        RecordCheck {
            record: ta_record(),
            matched: true,
            authenticates: true,
            detail: RecordDetail::Matched { depth: 1 },
        },
        RecordCheck {
            record: pkix_record(),
            matched: false,
            authenticates: false,
            detail: RecordDetail::Unusable(Unusable::PkixUsage(1)),
        },
    ];
    good.why =
        "authenticated by 3 1 1 aaaa (depth 0), 2 1 1 bbbb (depth 1): a DANE sender delivers"
            .into();
    let mut bad = address(
        Some(ip("2001:db8::25")),
        Some(plain_session(ip("2001:db8::25"))),
        Some(DaneStatus::Failed),
    );
    bad.tlsa = records
        .iter()
        .map(|r| RecordCheck {
            record: r.clone(),
            matched: false,
            authenticates: false,
            detail: RecordDetail::NoCertificate,
        })
        .collect();
    bad.why = "TLSA records require TLS, but STARTTLS not advertised: a DANE sender defers".into();
    HostReport {
        tlsa_base: Some(MX1.into()),
        tlsa_records: records,
        tlsa_dnssec: Some(Dnssec::Secure),
        tlsa_timing: TlsaTiming {
            ttl: Some(300),
            on_every_server: Vec::new(),
            first_seen: vec![Some(1_780_000_000.0), Some(1_770_000_000.0), None],
        },
        dane_applies: true,
        notes: vec!["the MX RRset is insecure (test note)".into()],
        ..host(MX1, 10, vec![good, bad])
    }
}

/// mx2: insecure addresses (DANE does not apply), TLS with a leaf that fails PKIX.
fn plain_host() -> HostReport {
    let mut a = address(
        Some(ip("198.51.100.25")),
        Some(tls_session(ip("198.51.100.25"))),
        Some(DaneStatus::None),
    );
    a.certs = vec![cert(0, "CN=mx2.example.test", "CN=Other CA")];
    a.pkix = Some(Err("certificate expired".into()));
    a.why = "address records of mx2.example.test are insecure: DANE does not apply".into();
    HostReport {
        address_dnssec: Some(Dnssec::Insecure),
        ..host(MX2, 20, vec![a])
    }
}

/// Two MX hosts covering every per-address family, every DNSSEC state but bogus, and a
/// signature expiry on each signed RRset. `success` is false: mx1's IPv6 address defers.
pub(crate) fn complete_report() -> TargetReport {
    let mut r = report(vec![dane_host(), plain_host()]);
    let mx = Data::Mx(vec![
        Mx {
            preference: 10,
            exchange: MX1.into(),
        },
        Mx {
            preference: 20,
            exchange: MX2.into(),
        },
    ]);
    let addrs = |s: &[&str]| Data::Addrs(s.iter().map(|a| ip(a)).collect());
    r.lookups = vec![
        answer(TARGET, "MX", Outcome::Records, Dnssec::Secure, mx),
        answer(
            MX1,
            "A",
            Outcome::Records,
            Dnssec::Secure,
            addrs(&["192.0.2.25"]),
        ),
        answer(
            MX1,
            "AAAA",
            Outcome::Records,
            Dnssec::Secure,
            addrs(&["2001:db8::25"]),
        ),
        answer(
            "_25._tcp.mx1.example.test",
            "TLSA",
            Outcome::Records,
            Dnssec::Secure,
            Data::Tlsa(vec![ee_record(), ta_record(), pkix_record()]),
        ),
        answer(
            MX2,
            "A",
            Outcome::Records,
            Dnssec::Insecure,
            addrs(&["198.51.100.25"]),
        ),
        answer(MX2, "AAAA", Outcome::NoData, Dnssec::Insecure, Data::None),
        answer(
            "broken.example.test",
            "A",
            Outcome::Failed,
            Dnssec::Error,
            Data::None,
        ),
    ];
    r.mta_sts = Some(crate::model::policies::StsReport {
        record_dnssec: Some(Dnssec::Secure),
        id: Some("20260101".into()),
        policy: Some(crate::model::policies::Policy {
            mode: crate::model::policies::Mode::Enforce,
            max_age: 604_800,
            mx: vec![MX1.into()],
        }),
        url: Some(format!("https://mta-sts.{TARGET}/.well-known/mta-sts.txt")),
        cert_not_after: Some(NOT_AFTER),
        fetch_seconds: Some(0.05),
        ..Default::default()
    });
    r.tlsrpt = Some(crate::model::policies::TlsRptReport::Valid {
        record: crate::model::policies::TlsRpt {
            rua: vec![format!("mailto:tlsrpt@{TARGET}")],
        },
    });
    r.staged = staged_reports();
    r.authoritative = vec![authoritative_mx()];
    r.success = r.compute_success();
    r
}

/// [`complete_report`] with an MTA-STS policy that could not be fetched (the families that
/// exist only for an invalid policy).
pub(crate) fn invalid_policy_report() -> TargetReport {
    let mut r = complete_report();
    if let Some(s) = r.mta_sts.as_mut() {
        s.policy = None;
        s.problem = Some(crate::model::policies::StsProblem {
            reason: "redirect",
            detail: "301 to elsewhere".into(),
        });
    }
    r
}

/// A staged chain covered by mx1's `3 1 1` (safe from a time), and a staged file refused.
fn staged_reports() -> Vec<StagedReport> {
    let checks = vec![
        RecordCheck {
            record: ee_record(),
            matched: true,
            authenticates: true,
            detail: RecordDetail::Matched { depth: 0 },
        },
        RecordCheck {
            record: ta_record(),
            matched: false,
            authenticates: false,
            detail: RecordDetail::AnchorNotServed,
        },
        RecordCheck {
            record: pkix_record(),
            matched: false,
            authenticates: false,
            detail: RecordDetail::Unusable(Unusable::PkixUsage(1)),
        },
    ];
    vec![
        StagedReport {
            name: "/etc/ssl/next/mx1.pem".into(),
            kind: "chain",
            error: None,
            not_after: Some(NOT_AFTER + 86_400),
            spki_sha256: "ab".repeat(32),
            hosts: vec![StagedHost {
                mx: MX1.into(),
                tlsa_name: Some(format!("_25._tcp.{MX1}")),
                checks,
                dane: DaneStatus::Verified,
                why: "would be authenticated by 3 1 1 aaaa: DANE senders would deliver".into(),
                deploy_safe: Some(1_780_000_600.0),
                lagging: Vec::new(),
                publish: Vec::new(),
            }],
        },
        StagedReport {
            name: "/etc/ssl/next/mx1.key".into(),
            kind: "chain",
            error: Some(StagedFileError {
                reason: "private_key",
                message: "the file holds a private key: refused".into(),
            }),
            not_after: None,
            spki_sha256: String::new(),
            hosts: Vec::new(),
        },
    ]
}

/// The MX RRset of [`TARGET`] on two authoritative server addresses, in sync.
fn authoritative_mx() -> crate::model::authoritative::RrsetSync {
    use crate::model::authoritative::{RrsetSync, ServerAnswer};
    let server = |addr: &str| ServerAnswer {
        server: "ns1.example.test".into(),
        address: ip(addr),
        serial: Some(2026112901),
        records: Some([format!("10 {MX1}"), format!("20 {MX2}")].into()),
        current: None,
        error: None,
    };
    let mut s = RrsetSync {
        name: TARGET.into(),
        rtype: "MX".into(),
        zone: Some(TARGET.into()),
        in_sync: None,
        servers: vec![server("192.0.2.53"), server("2001:db8::53")],
        error: None,
    };
    s.judge();
    s
}

/// `r` as a later probe sees it once `mx` has left the MX set (its lookups gone too).
pub(crate) fn without_host(mut r: TargetReport, mx: &str) -> TargetReport {
    r.hosts.retain(|h| h.mx != mx);
    r.mx.retain(|(_, h)| h != mx);
    r.lookups.retain(|l| !l.name.ends_with(mx));
    r
}
