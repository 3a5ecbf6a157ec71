//! Policies beside DANE, as plain values: what the MTA-STS record and policy of a domain
//! are (RFC 8461), what its TLSRPT record is (RFC 8460), and the verdict an MTA-STS sender
//! reaches for each MX address.
//!
//! Owns: [`StsReport`], [`TlsRptReport`], the policy state set and the per-address
//! MTA-STS state set (docs/verdict.md, "MTA-STS"). Not here: fetching (`probe::mta_sts`),
//! syntax (`sts`), rendering (`metrics`, `text`).

use serde::Serialize;

use super::dns::Dnssec;
use super::report::{AddressReport, HostReport};
use crate::sts::mx_matches;
/// The syntax types a report carries, re-exported for the model's users.
pub use crate::sts::{Mode, Policy, TlsRpt};

/// Why a policy is `invalid`: every word [`StsProblem::reason`] can take, in a fixed order.
pub const STS_REASONS: [&str; 16] = [
    "dns_failure",
    "multiple_records",
    "record_syntax",
    "bad_id",
    "host_dns",
    "address_refused",
    "connect",
    "tls_handshake",
    "certificate",
    "redirect",
    "http",
    "http_status",
    "content_type",
    "too_large",
    "policy_syntax",
    "timeout",
];

/// State of a domain's MTA-STS policy (CONTRACT "Policies beside DANE").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[must_use]
pub enum PolicyStatus {
    Enforce,
    Testing,
    /// Mode `none`, or no `_mta-sts` record at all.
    None,
    /// A record exists (or its lookup failed) but no policy can be had from it.
    Invalid,
}

impl PolicyStatus {
    pub const ALL: [PolicyStatus; 4] = [Self::Enforce, Self::Testing, Self::None, Self::Invalid];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Testing => "testing",
            Self::None => "none",
            Self::Invalid => "invalid",
        }
    }
}

/// What an MTA-STS sender does with one MX address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[must_use]
pub enum MtaStsStatus {
    /// Covered by an `mx` pattern, STARTTLS, PKIX-valid for the MX name: delivers.
    Verified,
    /// Not covered, no STARTTLS/TLS, or not PKIX-valid: defers (enforce) or reports (testing).
    Failed,
    /// No policy in force (none, invalid, mode `none`).
    None,
}

impl MtaStsStatus {
    pub const ALL: [MtaStsStatus; 3] = [Self::Verified, Self::Failed, Self::None];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::Failed => "failed",
            Self::None => "none",
        }
    }
}

/// Why the policy is invalid: a fixed reason word and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StsProblem {
    /// One of [`STS_REASONS`].
    pub reason: &'static str,
    pub detail: String,
}

/// The MTA-STS side of a domain target.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StsReport {
    /// DNSSEC state of the `_mta-sts` TXT lookup (informational: MTA-STS does not need it).
    pub record_dnssec: Option<Dnssec>,
    /// The `id` of the one valid `v=STSv1` record.
    pub id: Option<String>,
    /// The policy fetched and parsed (only when nothing is wrong).
    pub policy: Option<Policy>,
    /// What is wrong; `None` when the policy is in force or there is no record.
    pub problem: Option<StsProblem>,
    /// `https://mta-sts.<domain>/.well-known/mta-sts.txt`, when a record made us fetch it.
    pub url: Option<String>,
    /// notAfter (unix seconds) of the policy host's leaf certificate, when one was served.
    pub cert_not_after: Option<i64>,
    /// Seconds the fetch took (DNS of the policy host, TCP, TLS, HTTP).
    pub fetch_seconds: Option<f64>,
    /// The verdict per MX address ([`StsReport::judge`]), filled once the hosts are probed
    /// (for the JSON of `check`; metrics and text judge from the hosts themselves).
    pub verdicts: Vec<AddressVerdict>,
}

/// One MX address as an MTA-STS sender sees it.
#[derive(Debug, Clone, Serialize)]
pub struct AddressVerdict {
    pub mx: String,
    pub address: Option<std::net::IpAddr>,
    /// `None` without a policy with patterns.
    pub covered: Option<bool>,
    pub status: MtaStsStatus,
    pub why: String,
}

impl StsReport {
    pub fn status(&self) -> PolicyStatus {
        if self.problem.is_some() {
            return PolicyStatus::Invalid;
        }
        match self.policy.as_ref().map(|p| p.mode) {
            Some(Mode::Enforce) => PolicyStatus::Enforce,
            Some(Mode::Testing) => PolicyStatus::Testing,
            Some(Mode::None) | None => PolicyStatus::None,
        }
    }

    /// The policy a sender applies: present and in mode enforce or testing.
    fn in_force(&self) -> Option<&Policy> {
        self.policy
            .as_ref()
            .filter(|p| self.problem.is_none() && p.mode != Mode::None)
    }

    /// Fills [`StsReport::verdicts`] from the probed hosts.
    pub fn judge_all(&mut self, hosts: &[HostReport]) {
        let mut v = Vec::new();
        for h in hosts {
            for a in &h.addresses {
                let (status, why) = self.judge(h, a);
                v.push(AddressVerdict {
                    mx: h.mx.clone(),
                    address: a.address,
                    covered: self.covers(&h.mx),
                    status,
                    why,
                });
            }
        }
        self.verdicts = v;
    }

    /// Whether `mx` matches a pattern of the policy; `None` without a policy with patterns.
    pub fn covers(&self, mx: &str) -> Option<bool> {
        let p = self.policy.as_ref().filter(|_| self.problem.is_none())?;
        if p.mx.is_empty() {
            return None;
        }
        Some(p.mx.iter().any(|pat| mx_matches(pat, mx)))
    }

    /// The MTA-STS verdict for one address of `host`, with a sentence saying why
    /// (RFC 8461 §4.1 MX matching, §4.2 certificate validation, §5 modes).
    pub fn judge(&self, host: &HostReport, a: &AddressReport) -> (MtaStsStatus, String) {
        let Some(p) = self.in_force() else {
            return (MtaStsStatus::None, "no MTA-STS policy in force".into());
        };
        let consequence = match p.mode {
            Mode::Enforce => "an MTA-STS sender defers",
            _ => "an MTA-STS sender in testing mode delivers and reports",
        };
        if !p.mx.iter().any(|pat| mx_matches(pat, &host.mx)) {
            return (
                MtaStsStatus::Failed,
                format!(
                    "{} matches no mx pattern of the policy: {consequence}",
                    host.mx
                ),
            );
        }
        match a.smtp.as_ref() {
            Some(s) if s.tls.is_some() => {}
            Some(s) => {
                let what = s
                    .error
                    .as_ref()
                    .map_or_else(|| "TLS not established".to_string(), ToString::to_string);
                return (
                    MtaStsStatus::Failed,
                    format!("no TLS ({what}): {consequence}"),
                );
            }
            None => {
                return (
                    MtaStsStatus::Failed,
                    format!("no SMTP session: {consequence}"),
                )
            }
        }
        match &a.pkix {
            Some(Ok(())) => (
                MtaStsStatus::Verified,
                format!(
                    "covered, STARTTLS and a PKIX-valid certificate for {}: an MTA-STS sender delivers",
                    host.mx
                ),
            ),
            Some(Err(e)) => (
                MtaStsStatus::Failed,
                format!("certificate not PKIX-valid for {} ({e}): {consequence}", host.mx),
            ),
            None => (
                MtaStsStatus::Failed,
                format!("no certificate seen: {consequence}"),
            ),
        }
    }
}

/// The TLSRPT side of a domain target (RFC 8460 §3).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TlsRptReport {
    /// No `v=TLSRPTv1` record.
    #[default]
    Absent,
    Valid {
        record: TlsRpt,
    },
    Invalid {
        /// Fixed reason word (`sts::TlsRptError::reason`).
        reason: &'static str,
        detail: String,
    },
    /// The `_smtp._tls` TXT lookup failed (validity unknown).
    LookupFailed {
        detail: String,
    },
}

impl TlsRptReport {
    /// `mailtls_tlsrpt_record_valid`: `None` when there is no record or it could not be read.
    pub fn valid(&self) -> Option<bool> {
        match self {
            Self::Valid { .. } => Some(true),
            Self::Invalid { .. } => Some(false),
            Self::Absent | Self::LookupFailed { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, SocketAddr};
    use std::sync::Arc;

    use super::*;
    use crate::model::smtp::{ProbeError, SmtpReport, TlsFacts};

    fn policy(mode: Mode, mx: &[&str]) -> StsReport {
        StsReport {
            id: Some("1".into()),
            policy: Some(Policy {
                mode,
                max_age: 86400,
                mx: mx.iter().map(|s| (*s).to_string()).collect(),
            }),
            ..Default::default()
        }
    }

    fn host(mx: &str) -> HostReport {
        HostReport {
            mx: mx.into(),
            preference: Some(10),
            port: 25,
            address_dnssec: None,
            tlsa_base: None,
            tlsa_records: Vec::new(),
            tlsa_dnssec: None,
            tlsa_timing: Default::default(),
            dane_applies: false,
            addresses: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn addr(tls: bool, pkix: Option<Result<(), String>>) -> AddressReport {
        let ip = IpAddr::from([192, 0, 2, 1]);
        let mut s = SmtpReport::new(SocketAddr::new(ip, 25));
        if tls {
            s.tls = Some(TlsFacts {
                version: "TLSv1.3".into(),
                cipher: "x".into(),
                chain: Vec::new(),
                chain_len: 0,
                handshake_seconds: 0.0,
            });
        } else {
            s.error = Some(ProbeError::StartTlsNotOffered);
        }
        AddressReport {
            address: Some(ip),
            smtp: Some(Arc::new(s)),
            certs: Vec::new(),
            cert_errors: Vec::new(),
            pkix,
            tlsa: Vec::new(),
            dane: None,
            why: String::new(),
        }
    }

    #[test]
    fn covered_tls_and_pkix_valid_is_verified() {
        // RFC 8461 §4: MX matching and certificate validation both required.
        let r = policy(Mode::Enforce, &["*.example.org"]);
        let (st, why) = r.judge(&host("mx1.example.org"), &addr(true, Some(Ok(()))));
        assert_eq!(st, MtaStsStatus::Verified, "{why}");
        let (st, why) = r.judge(
            &host("mx1.example.org"),
            &addr(true, Some(Err("expired".into()))),
        );
        assert_eq!(st, MtaStsStatus::Failed);
        assert!(why.ends_with("an MTA-STS sender defers"), "{why}");
        let (st, _) = r.judge(&host("mx1.example.org"), &addr(false, None));
        assert_eq!(st, MtaStsStatus::Failed);
    }

    #[test]
    fn uncovered_mx_fails_and_testing_mode_says_so() {
        let r = policy(Mode::Testing, &["mx1.example.org"]);
        let (st, why) = r.judge(&host("mx2.example.org"), &addr(true, Some(Ok(()))));
        assert_eq!(st, MtaStsStatus::Failed);
        assert!(why.contains("testing mode"), "{why}");
        assert_eq!(r.covers("mx2.example.org"), Some(false));
        assert_eq!(r.status(), PolicyStatus::Testing);
    }

    #[test]
    fn no_policy_invalid_or_mode_none_is_none() {
        let none = StsReport::default();
        assert_eq!(none.status(), PolicyStatus::None);
        assert_eq!(
            none.judge(&host("a.b"), &addr(true, Some(Ok(())))).0,
            MtaStsStatus::None
        );
        let mut bad = policy(Mode::Enforce, &["a.b"]);
        bad.problem = Some(StsProblem {
            reason: "timeout",
            detail: String::new(),
        });
        assert_eq!(bad.status(), PolicyStatus::Invalid);
        assert_eq!(
            bad.judge(&host("a.b"), &addr(true, Some(Ok(())))).0,
            MtaStsStatus::None
        );
        assert_eq!(bad.covers("a.b"), None);
        let off = policy(Mode::None, &[]);
        assert_eq!(off.status(), PolicyStatus::None);
        assert_eq!(
            off.judge(&host("a.b"), &addr(true, Some(Ok(())))).0,
            MtaStsStatus::None
        );
    }
}
