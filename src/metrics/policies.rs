//! The families of the policies beside DANE: MTA-STS policy state, coverage and per-address
//! verdict, the policy host's certificate, TLSRPT validity (CONTRACT names; docs/metrics.md,
//! "MTA-STS and TLSRPT"). Only domain targets have them; label values come from DNS (`id`
//! is 1-32 alphanumerics by its syntax) or fixed word lists.
//!
//! Not here: the report families of DANE and TLS (`families`), chunking (`exposition`).

use prometheus_client::encoding::DescriptorEncoder;

use super::families::{addr_labels, address_label, b, family, gauge};
use crate::model::policies::{MtaStsStatus, PolicyStatus, STS_REASONS};
use crate::model::report::TargetReport;

/// Encodes the MTA-STS and TLSRPT families for `reports`.
pub(super) fn policy_families(
    enc: &mut DescriptorEncoder,
    reports: &[&TargetReport],
) -> Result<(), std::fmt::Error> {
    family(enc, "mailtls_mta_sts_policy_status", "MTA-STS policy of the domain (state set: enforce, testing, none = mode none or no _mta-sts record, invalid = a record exists but no policy can be had from it)", reports, |m, r| {
        let Some(s) = &r.mta_sts else { return Ok(()) };
        let st = s.status();
        for v in PolicyStatus::ALL {
            gauge(m, &[("target", r.target.as_str()), ("status", v.as_str())], b(st == v))?;
        }
        Ok(())
    })?;
    family(
        enc,
        "mailtls_mta_sts_policy_info",
        "The MTA-STS policy in force: record id and mode, value 1",
        reports,
        |m, r| {
            let Some(s) = &r.mta_sts else { return Ok(()) };
            if let (Some(p), Some(id), None) = (&s.policy, &s.id, &s.problem) {
                gauge(
                    m,
                    &[
                        ("target", r.target.as_str()),
                        ("id", id.as_str()),
                        ("mode", p.mode.as_str()),
                    ],
                    1.0,
                )?;
            }
            Ok(())
        },
    )?;
    family(
        enc,
        "mailtls_mta_sts_max_age_seconds",
        "max_age of the MTA-STS policy in force: how long senders cache it",
        reports,
        |m, r| {
            if let Some(p) = r
                .mta_sts
                .as_ref()
                .filter(|s| s.problem.is_none())
                .and_then(|s| s.policy.as_ref())
            {
                gauge(m, &[("target", r.target.as_str())], p.max_age as f64)?;
            }
            Ok(())
        },
    )?;
    family(
        enc,
        "mailtls_mta_sts_mx_covered",
        "1 when the MX host matches an mx pattern of the MTA-STS policy (RFC 8461 §4.1)",
        reports,
        |m, r| {
            let Some(s) = &r.mta_sts else { return Ok(()) };
            for (_, mx) in &r.mx {
                if let Some(c) = s.covers(mx) {
                    gauge(
                        m,
                        &[("target", r.target.as_str()), ("mx", mx.as_str())],
                        b(c),
                    )?;
                }
            }
            Ok(())
        },
    )?;
    family(enc, "mailtls_mta_sts_status", "MTA-STS verdict per MX address, as an MTA-STS sender reaches it (state set: verified = covered, STARTTLS, PKIX-valid for the MX name; failed; none = no policy in force)", reports, |m, r| {
        let Some(s) = &r.mta_sts else { return Ok(()) };
        for (h, a) in r.addresses() {
            let (st, _) = s.judge(h, a);
            let addr = address_label(a);
            for v in MtaStsStatus::ALL {
                gauge(m, &addr_labels(r, h, &addr, &[("status", v.as_str())]), b(st == v))?;
            }
        }
        Ok(())
    })?;
    family(
        enc,
        "mailtls_mta_sts_error_info",
        "Why the MTA-STS policy is invalid (fixed reason words), value 1",
        reports,
        |m, r| {
            if let Some(p) = r.mta_sts.as_ref().and_then(|s| s.problem.as_ref()) {
                let reason = STS_REASONS
                    .iter()
                    .copied()
                    .find(|w| *w == p.reason)
                    .unwrap_or("other");
                gauge(m, &[("target", r.target.as_str()), ("reason", reason)], 1.0)?;
            }
            Ok(())
        },
    )?;
    family(
        enc,
        "mailtls_mta_sts_cert_not_after_timestamp_seconds",
        "notAfter of the certificate served by the MTA-STS policy host mta-sts.<domain>",
        reports,
        |m, r| {
            if let Some(t) = r.mta_sts.as_ref().and_then(|s| s.cert_not_after) {
                gauge(m, &[("target", r.target.as_str())], t as f64)?;
            }
            Ok(())
        },
    )?;
    family(enc, "mailtls_tlsrpt_record_valid", "1 when _smtp._tls.<domain> holds exactly one valid v=TLSRPTv1 record with rua URIs (RFC 8460 §3); absent without a record", reports, |m, r| {
        if let Some(v) = r.tlsrpt.as_ref().and_then(|t| t.valid()) {
            gauge(m, &[("target", r.target.as_str())], b(v))?;
        }
        Ok(())
    })?;
    Ok(())
}
