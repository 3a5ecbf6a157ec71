//! Plain result values of a probe: what was seen and the verdicts reached. No metric types.
//!
//! Owns: `TargetReport` → `HostReport` (one per MX host) → `AddressReport` (one per IP
//! address), the DANE state set (docs/verdict.md), and `probe_success` (docs/metrics.md).
//! Not here: producing them (`probe`), rendering them (`metrics`, `text`).

use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use super::authoritative::RrsetSync;
use super::cert::CertFacts;
use super::dns::{Answer, Dnssec};
use super::smtp::SmtpReport;
use super::staged::StagedReport;
use super::tlsa::{RecordCheck, Tlsa};

/// DANE verdict for one MX address: what a DANE-enforcing sender does (docs/verdict.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[must_use]
pub enum DaneStatus {
    /// Delivers, authenticated by a usable TLSA record.
    Verified,
    /// Secure TLSA RRset without usable records: TLS required, not authenticated.
    Unauthenticated,
    /// Defers: no usable record matches, no STARTTLS, or the handshake failed.
    Failed,
    /// Defers: address or TLSA lookup bogus or failed.
    DnsFailure,
    /// No secure TLSA RRset: DANE does not apply.
    None,
}

impl DaneStatus {
    pub(crate) const ALL: [DaneStatus; 5] = [
        Self::Verified,
        Self::Unauthenticated,
        Self::Failed,
        Self::DnsFailure,
        Self::None,
    ];
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::Unauthenticated => "unauthenticated",
            Self::Failed => "failed",
            Self::DnsFailure => "dns_failure",
            Self::None => "none",
        }
    }
    /// Mail from DANE-enforcing senders is deferred now.
    pub(crate) fn defers(self) -> bool {
        matches!(self, Self::Failed | Self::DnsFailure)
    }
}

/// What probing one address of one MX host learned.
#[derive(Debug, Clone, Serialize)]
pub struct AddressReport {
    /// `None` when the host's addresses could not be resolved.
    pub address: Option<IpAddr>,
    /// The SMTP/TLS dialogue; `None` when nothing was attempted (no address).
    pub smtp: Option<Arc<SmtpReport>>,
    /// Facts of each certificate served, leaf first.
    pub certs: Vec<CertFacts>,
    /// Certificates that could not be parsed: (depth, reason).
    pub cert_errors: Vec<(usize, String)>,
    /// PKIX (MTA-STS style) validation against the configured roots and the MX host name;
    /// `None` when no certificate was seen.
    pub pkix: Option<Result<(), String>>,
    /// One check per published TLSA record (empty when DANE does not apply).
    #[serde(serialize_with = "serialize_checks")]
    pub tlsa: Vec<RecordCheck>,
    /// `None` for address targets (no DNS, no DANE verdict).
    pub dane: Option<DaneStatus>,
    /// One readable sentence: why this verdict.
    pub why: String,
}

/// When the records of a TLSA RRset were published (RFC 7671 §8.1: a new record is safe to
/// rely on two TTLs after every authoritative server serves it).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TlsaTiming {
    /// The RRset's original TTL in seconds, when known.
    pub ttl: Option<u32>,
    /// Per record of `tlsa_records`, same order: every address of every authoritative server
    /// of the zone serves it; `None` when the authoritative servers were not asked.
    pub on_every_server: Vec<Option<bool>>,
    /// Per record of `tlsa_records`, same order: when the exporter first saw it published
    /// (unix seconds; on every authoritative server when they were asked); `None` while not.
    pub first_seen: Vec<Option<f64>>,
}

/// One MX host (or the single host of a host/address target).
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    /// Name as in the MX RRset (lower case, no trailing dot); the IP for address targets.
    pub mx: String,
    pub preference: Option<u16>,
    pub port: u16,
    /// DNSSEC state of the host's address RRsets (A and AAAA together; CNAME steps included).
    pub address_dnssec: Option<Dnssec>,
    /// TLSA base domain used (after the CNAME rules of RFC 7672 §2.2.2), when looked up.
    pub tlsa_base: Option<String>,
    /// The TLSA RRset that decides DANE for this host (secure, with records), if any.
    pub tlsa_records: Vec<Tlsa>,
    /// DNSSEC state of the deciding TLSA lookup.
    pub tlsa_dnssec: Option<Dnssec>,
    /// When the records of `tlsa_records` were published: filled after the probe from the
    /// authoritative servers and the first-seen store; empty when unknown.
    pub tlsa_timing: TlsaTiming,
    /// DANE applies (secure address records and a secure TLSA RRset with records).
    pub dane_applies: bool,
    pub addresses: Vec<AddressReport>,
    /// Human notes (e.g. "MX RRset is insecure: DANE used as Postfix does").
    pub notes: Vec<String>,
}

/// Everything one probe of one target learned.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub target: String,
    pub kind: &'static str,
    /// Unix seconds when the probe completed.
    pub timestamp: f64,
    pub duration_seconds: f64,
    /// MX RRset state (domain targets).
    pub mx_dnssec: Option<Dnssec>,
    /// The MX set after the implicit-MX rule: (preference, host).
    pub mx: Vec<(u16, String)>,
    pub implicit_mx: bool,
    pub null_mx: bool,
    pub hosts: Vec<HostReport>,
    /// Every DNS lookup the verdict rests on, in the order made.
    pub lookups: Vec<Arc<Answer>>,
    /// The MX and TLSA RRsets as every authoritative server of their zone serves them
    /// (empty when not checked: `dns.authoritative_check: false`, or address targets).
    pub authoritative: Vec<RrsetSync>,
    /// A target-level failure (MX lookup failed, domain does not exist, timeout).
    pub error: Option<String>,
    pub success: bool,
    /// MTA-STS record, policy and its fetch (domain targets only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mta_sts: Option<super::policies::StsReport>,
    /// TLSRPT record (domain targets only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tlsrpt: Option<super::policies::TlsRptReport>,
    /// Staged certificates and keys judged against the TLSA RRsets of this probe (filled
    /// after the probe by `rollover`); empty when none is configured.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub staged: Vec<StagedReport>,
}

impl TargetReport {
    /// All addresses with their host.
    pub fn addresses(&self) -> impl Iterator<Item = (&HostReport, &AddressReport)> {
        self.hosts
            .iter()
            .flat_map(|h| h.addresses.iter().map(move |a| (h, a)))
    }

    /// `mailtls_probe_success` (docs/metrics.md): the MX lookup succeeded, every MX address
    /// offered STARTTLS (or spoke implicit TLS) and completed the handshake, answered the EHLO
    /// sent inside TLS when one was sent (docs/verdict.md), and no address is `failed` or
    /// `dns_failure`.
    pub fn compute_success(&self) -> bool {
        self.error.is_none()
            && !self.null_mx
            && self.addresses().next().is_some()
            && self.addresses().all(|(_, a)| {
                a.address.is_some()
                    && a.smtp.as_ref().is_some_and(|s| {
                        s.tls.is_some() && s.ehlo_after_tls_success() != Some(false)
                    })
                    && !a.dane.is_some_and(DaneStatus::defers)
            })
    }

    /// Worst DANE verdict over all addresses, for logs and `check`.
    pub fn worst_dane(&self) -> Option<DaneStatus> {
        let rank = |s: DaneStatus| match s {
            DaneStatus::DnsFailure => 0,
            DaneStatus::Failed => 1,
            DaneStatus::Unauthenticated => 2,
            DaneStatus::None => 3,
            DaneStatus::Verified => 4,
        };
        self.addresses()
            .filter_map(|(_, a)| a.dane)
            .min_by_key(|s| rank(*s))
    }

    /// Short text for logs: `verified=2 failed=1`.
    pub(crate) fn dane_summary(&self) -> String {
        let mut out = String::new();
        for s in DaneStatus::ALL {
            let n = self.addresses().filter(|(_, a)| a.dane == Some(s)).count();
            if n > 0 {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(s.as_str());
                out.push('=');
                out.push_str(&n.to_string());
            }
        }
        out
    }
}

/// TLSA checks as `{record, matched, authenticates, explanation}` objects (JSON output of
/// `check`); every record, also those beyond the exported series.
pub(crate) fn serialize_checks<S: serde::Serializer>(
    checks: &[RecordCheck],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    #[derive(Serialize)]
    struct View {
        record: String,
        matched: bool,
        authenticates: bool,
        explanation: String,
    }
    let mut seq = s.serialize_seq(Some(checks.len()))?;
    for c in checks {
        seq.serialize_element(&View {
            record: c.record.presentation(),
            matched: c.matched,
            authenticates: c.authenticates,
            explanation: c.explain(),
        })?;
    }
    seq.end()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixture::{
        address, complete_report, host, ip, plain_session, report, tls_session,
    };

    /// One host, one address at 192.0.2.25 with this SMTP session and verdict.
    fn one(smtp: Option<SmtpReport>, dane: Option<DaneStatus>) -> TargetReport {
        let a = address(Some(ip("192.0.2.25")), smtp, dane);
        report(vec![host("mx.example.test", 10, vec![a])])
    }

    fn tls() -> Option<SmtpReport> {
        Some(tls_session(ip("192.0.2.25")))
    }

    #[test]
    fn success_needs_tls_on_every_address_and_no_deferring_verdict() {
        // docs/metrics.md `mailtls_probe_success`; "defers" is RFC 7672 §2.2's outcome.
        let cases: Vec<(&str, TargetReport, bool)> = vec![
            ("verified", one(tls(), Some(DaneStatus::Verified)), true),
            (
                "unauthenticated still delivers",
                one(tls(), Some(DaneStatus::Unauthenticated)),
                true,
            ),
            (
                "DANE does not apply",
                one(tls(), Some(DaneStatus::None)),
                true,
            ),
            ("address target: no verdict", one(tls(), None), true),
            ("failed defers", one(tls(), Some(DaneStatus::Failed)), false),
            (
                "dns_failure defers",
                one(tls(), Some(DaneStatus::DnsFailure)),
                false,
            ),
            (
                "no STARTTLS",
                one(
                    Some(plain_session(ip("192.0.2.25"))),
                    Some(DaneStatus::None),
                ),
                false,
            ),
            ("no SMTP session", one(None, Some(DaneStatus::None)), false),
            ("one bad address of two", complete_report(), false),
        ];
        for (what, r, expect) in cases {
            assert_eq!(r.compute_success(), expect, "{what}");
        }
    }

    #[test]
    fn success_is_false_on_target_error_null_mx_or_no_address() {
        let mut error = one(tls(), Some(DaneStatus::Verified));
        error.error = Some("probe timed out after 10s".into());
        assert!(!error.compute_success(), "target error");

        let mut null = report(Vec::new());
        null.null_mx = true;
        assert!(!null.compute_success(), "null MX (RFC 7505)");
        assert!(!report(Vec::new()).compute_success(), "no host at all");

        let unresolved = address(None, None, Some(DaneStatus::DnsFailure));
        let r = report(vec![host("mx.example.test", 10, vec![unresolved])]);
        assert!(!r.compute_success(), "host without addresses");

        // No address entry at all (probe_host never builds one, but the rule must not pass it).
        let empty_host = host("mx2.example.test", 20, Vec::new());
        let r = report(vec![empty_host]);
        assert!(!r.compute_success(), "hosts but no address at all");
    }

    #[test]
    fn worst_verdict_and_summary_count_every_address() {
        let r = complete_report();
        assert_eq!(r.worst_dane(), Some(DaneStatus::Failed));
        assert_eq!(r.dane_summary(), "verified=1 failed=1 none=1");
        assert_eq!(one(tls(), None).worst_dane(), None);
        assert_eq!(one(tls(), None).dane_summary(), "");
    }
}
