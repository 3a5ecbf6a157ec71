//! What a probe concludes about one address: certificate facts and PKIX validity of what it
//! served ([`observe`]), and the DANE verdict from its TLSA RRset ([`judge`]).
//!
//! Owns: turning an SMTP report and the host's DNS into the verdict fields of an
//! [`AddressReport`]. Not here: the TLSA rules themselves (`dane`), certificate parsing
//! (`cert`), the order of probe steps (`probe`).

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, UnixTime};

use super::{mx, ProbeContext};
use crate::cert::ServedChain;
use crate::dane;
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
    let held = smtp.clone();
    let served = ServedChain::with_memo(chain_of(held.as_deref()), &ctx.signatures);
    observe_served(ctx, address, smtp, pkix_name, &served)
}

/// `observe`, then `judge`, from one parse of the served chain: the facts, PKIX and the
/// DANE-TA paths share each certificate's parse, and every signature check goes through the
/// context's memo (docs/performance.md).
pub(super) fn observe_and_judge(
    ctx: &ProbeContext,
    plan: &mx::HostPlan,
    hd: &mx::HostDns,
    address: Option<std::net::IpAddr>,
    smtp: Option<Arc<SmtpReport>>,
    pkix_name: Option<&str>,
) -> AddressReport {
    let held = smtp.clone();
    let served = ServedChain::with_memo(chain_of(held.as_deref()), &ctx.signatures);
    let a = observe_served(ctx, address, smtp, pkix_name, &served);
    judge_served(plan, hd, a, &served)
}

/// The chain the SMTP session got, leaf first; empty without TLS.
fn chain_of(smtp: Option<&SmtpReport>) -> &[CertificateDer<'static>] {
    smtp.and_then(|s| s.tls.as_ref())
        .map(|t| t.chain.as_slice())
        .unwrap_or(&[])
}

/// `observe` with `served` = the chain of `smtp`.
fn observe_served(
    ctx: &ProbeContext,
    address: Option<std::net::IpAddr>,
    smtp: Option<Arc<SmtpReport>>,
    pkix_name: Option<&str>,
    served: &ServedChain<'_>,
) -> AddressReport {
    let mut certs = Vec::new();
    let mut cert_errors = Vec::new();
    let mut pkix = None;
    if smtp.as_ref().is_some_and(|s| s.tls.is_some()) {
        certs.reserve_exact(served.ders().len());
        for depth in 0..served.ders().len() {
            match served.facts(depth) {
                Ok(f) => certs.push(f),
                Err(e) => cert_errors.push((depth, e.to_string())),
            }
        }
        // An address target has no host name to check: no PKIX verdict (absent series).
        if let (false, Some(name)) = (served.is_empty(), pkix_name) {
            pkix = Some(
                served
                    .pkix_verify(&ctx.roots, name, UnixTime::now())
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
#[cfg(test)]
pub(super) fn judge(plan: &mx::HostPlan, hd: &mx::HostDns, a: AddressReport) -> AddressReport {
    let held = a.smtp.clone();
    let served = ServedChain::new(chain_of(held.as_deref()));
    judge_served(plan, hd, a, &served)
}

/// `judge` with `served` = the chain of `a.smtp`.
fn judge_served(
    plan: &mx::HostPlan,
    hd: &mx::HostDns,
    mut a: AddressReport,
    served: &ServedChain<'_>,
) -> AddressReport {
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
    let mut names: Vec<&str> = Vec::with_capacity(3);
    for n in [
        hd.tlsa_base.as_deref(),
        Some(plan.mx.as_str()),
        Some(plan.next_hop.as_str()),
    ]
    .into_iter()
    .flatten()
    {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let eval = dane::evaluate_served(&hd.tlsa_records, served, &names, UnixTime::now());
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
