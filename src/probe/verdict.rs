//! What a probe concludes about one address: certificate facts and PKIX validity of what it
//! served ([`observe`]), and the DANE verdict from its TLSA RRset ([`judge`]).
//!
//! Owns: turning an SMTP report and the host's DNS into the verdict fields of an
//! [`AddressReport`]. Not here: the TLSA rules themselves (`dane`), certificate parsing
//! (`cert`), the order of probe steps (`probe`).

use std::sync::Arc;

use rustls::pki_types::UnixTime;

use super::{mx, ProbeContext};
use crate::cert;
use crate::dane::{self, DaneInput};
use crate::model::report::{AddressReport, DaneStatus};
use crate::model::smtp::SmtpReport;
use crate::model::tlsa::{Authentication, RecordCheck, RecordDetail, Tlsa};

/// Observation only: certificate facts and PKIX validity of what the address served.
pub(super) fn observe(
    ctx: &ProbeContext,
    address: Option<std::net::IpAddr>,
    smtp: Option<Arc<SmtpReport>>,
    pkix_name: Option<&str>,
) -> AddressReport {
    let mut certs = Vec::new();
    let mut cert_errors = Vec::new();
    let mut pkix = None;
    if let Some(tls) = smtp.as_ref().and_then(|s| s.tls.as_ref()) {
        for (depth, der) in tls.chain.iter().enumerate() {
            match cert::facts(depth, der.as_ref()) {
                Ok(f) => certs.push(f),
                Err(e) => cert_errors.push((depth, e.to_string())),
            }
        }
        // An address target has no host name to check: no PKIX verdict (absent series).
        if let (false, Some(name)) = (tls.chain.is_empty(), pkix_name) {
            pkix = Some(
                cert::pkix_verify(&tls.chain, &ctx.roots, name, UnixTime::now())
                    .map_err(|e| e.to_string()),
            );
        }
    }
    AddressReport {
        address,
        smtp,
        certs,
        cert_errors,
        pkix,
        tlsa: Vec::new(),
        dane: None,
        why: String::new(),
    }
}

/// Which records authenticated the connection, and whether the two-record safety net
/// (NCSC-NL: a `3 1 1` and a `2 1 1`, either one enough) still holds.
fn verified_why(checks: &[RecordCheck]) -> String {
    let used: Vec<String> = checks
        .iter()
        .filter_map(|c| match c.detail {
            RecordDetail::Matched { depth } if c.authenticates => {
                Some(format!("{} (depth {depth})", short_record(&c.record)))
            }
            _ => None,
        })
        .collect();
    let usable = checks
        .iter()
        .filter(|c| !matches!(c.detail, RecordDetail::Unusable(_)))
        .count();
    let mut why = format!(
        "authenticated by {}: a DANE sender delivers",
        used.join(", ")
    );
    if usable > 1 && used.len() == 1 {
        why.push_str(&format!(
            "; but only 1 of {usable} usable records authenticates: the safety net is gone, fix the stale record before the next change"
        ));
    }
    why
}

fn short_record(t: &Tlsa) -> String {
    let p = t.presentation();
    match p.char_indices().nth(24) {
        Some((i, _)) => format!("{}…", &p[..i]),
        None => p,
    }
}

/// The DANE verdict for one address (RFC 7672 §2.2, §3; docs/verdict.md), as Postfix reaches it.
pub(super) fn judge(plan: &mx::HostPlan, hd: &mx::HostDns, mut a: AddressReport) -> AddressReport {
    if let Some(why) = &hd.dns_failure {
        a.dane = Some(DaneStatus::DnsFailure);
        a.why = format!("{why}: a DANE sender defers");
        return a;
    }
    if a.address.is_none() {
        a.dane = Some(DaneStatus::DnsFailure);
        a.why = "no address records: the host cannot be reached".into();
        return a;
    }
    if !hd.dane_applies {
        a.dane = Some(DaneStatus::None);
        a.why = hd
            .no_dane_reason
            .clone()
            .unwrap_or_else(|| "no secure TLSA RRset: DANE does not apply".into());
        return a;
    }
    let chain: &[rustls::pki_types::CertificateDer<'static>] = a
        .smtp
        .as_ref()
        .and_then(|s| s.tls.as_ref())
        .map(|t| t.chain.as_slice())
        .unwrap_or(&[]);
    let mut names = Vec::with_capacity(3);
    for n in [
        hd.tlsa_base.as_deref(),
        Some(plan.mx.as_str()),
        Some(plan.next_hop.as_str()),
    ]
    .into_iter()
    .flatten()
    {
        if !names.iter().any(|x: &String| x == n) {
            names.push(n.to_string());
        }
    }
    let eval = dane::evaluate(&DaneInput {
        records: &hd.tlsa_records,
        chain,
        names: &names,
        now: UnixTime::now(),
    });
    let tls_failure = match a.smtp.as_deref() {
        None => Some("no SMTP session".to_string()),
        Some(s) if s.tls.is_some() => None,
        Some(s) => Some(match &s.error {
            Some(e) => e.to_string(),
            None => "TLS not established".to_string(),
        }),
    };
    let (status, why) = match (&tls_failure, &eval.authentication) {
        (Some(f), _) => (
            DaneStatus::Failed,
            format!("TLSA records require TLS, but {f}: a DANE sender defers"),
        ),
        (None, Authentication::NoUsableRecords) => (
            DaneStatus::Unauthenticated,
            "the TLSA RRset has no usable record: TLS is required but not authenticated".into(),
        ),
        (None, Authentication::Verified { .. }) => {
            (DaneStatus::Verified, verified_why(&eval.checks))
        }
        (None, Authentication::NotAuthenticated) => (
            DaneStatus::Failed,
            "no usable TLSA record matches the served chain: a DANE sender defers".into(),
        ),
    };
    a.tlsa = eval.checks;
    a.dane = Some(status);
    a.why = why;
    a
}
