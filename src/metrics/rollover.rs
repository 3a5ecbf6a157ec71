//! The rollover families: staged certificates and keys against the published TLSA records,
//! and the timing of those records (docs/metrics.md, "Rollover readiness").
//!
//! Not here: judging staged material or keeping first-seen times (`staged`, `rollover`),
//! the live families (`families`). Labels are bounded like the live ones: at most
//! [`MAX_EXPORTED_TLSA_RECORDS`] records per RRset, `MAX_STAGED_PER_TARGET` staged entries
//! per target (config), values cut at `MAX_LABEL_BYTES`.

use prometheus_client::encoding::DescriptorEncoder;

use super::families::{b, bounded_label, family, gauge};
use crate::model::report::{DaneStatus, TargetReport};
use crate::model::tlsa::{exported_checks, MAX_EXPORTED_TLSA_RECORDS};

/// Encodes the rollover families for `reports`.
pub(super) fn rollover_families(
    enc: &mut DescriptorEncoder,
    reports: &[&TargetReport],
) -> Result<(), std::fmt::Error> {
    family(enc, "mailtls_staged_tlsa_record_match", "1 when the published TLSA record matches the staged chain or key (same sense as mailtls_tlsa_record_match)", reports, |m, r| {
        for s in &r.staged {
            let staged = bounded_label(&s.name);
            for h in &s.hosts {
                for c in exported_checks(&h.checks) {
                    let record = c.record.presentation();
                    let record = bounded_label(&record);
                    gauge(m, &[("target", r.target.as_str()), ("mx", h.mx.as_str()), ("staged", &staged), ("record", &record)], b(c.matched))?;
                }
            }
        }
        Ok(())
    })?;
    family(enc, "mailtls_staged_dane_status", "Verdict a DANE-enforcing sender would reach if the staged chain or key were served now, against the TLSA RRset published now (state set)", reports, |m, r| {
        for s in &r.staged {
            let staged = bounded_label(&s.name);
            for h in &s.hosts {
                for st in DaneStatus::ALL {
                    gauge(m, &[("target", r.target.as_str()), ("mx", h.mx.as_str()), ("staged", &staged), ("status", st.as_str())], b(h.dane == st))?;
                }
            }
        }
        Ok(())
    })?;
    family(enc, "mailtls_staged_deploy_safe_timestamp_seconds", "Earliest time deploying the staged chain or key is safe (RFC 7671 section 8.1): over the records that authenticate it, the latest first-seen time plus 2 x the TLSA TTL; absent while none authenticates it", reports, |m, r| {
        for s in &r.staged {
            let staged = bounded_label(&s.name);
            for h in &s.hosts {
                if let (DaneStatus::Verified, Some(t)) = (h.dane, h.deploy_safe) {
                    gauge(m, &[("target", r.target.as_str()), ("mx", h.mx.as_str()), ("staged", &staged)], t)?;
                }
            }
        }
        Ok(())
    })?;
    family(
        enc,
        "mailtls_staged_cert_not_after_timestamp_seconds",
        "notAfter of the staged leaf certificate",
        reports,
        |m, r| {
            for s in &r.staged {
                let staged = bounded_label(&s.name);
                if let Some(t) = s.not_after {
                    for h in &s.hosts {
                        gauge(
                            m,
                            &[
                                ("target", r.target.as_str()),
                                ("mx", h.mx.as_str()),
                                ("staged", &staged),
                            ],
                            t as f64,
                        )?;
                    }
                }
            }
            Ok(())
        },
    )?;
    family(enc, "mailtls_staged_file_error_info", "1 when the staged file cannot be used (reason: missing, unreadable, too_large, private_key, no_certificate, no_public_key, unparsable, too_many_certificates)", reports, |m, r| {
        for s in &r.staged {
            if let Some(e) = &s.error {
                let staged = bounded_label(&s.name);
                gauge(m, &[("target", r.target.as_str()), ("staged", &staged), ("reason", e.reason)], 1.0)?;
            }
        }
        Ok(())
    })?;
    family(enc, "mailtls_tlsa_record_first_seen_timestamp_seconds", "When the exporter first saw the record published in the secure TLSA RRset (on every authoritative server when they are asked; kept in state_file)", reports, |m, r| {
        for h in &r.hosts {
            let seen = h.tlsa_records.iter().zip(&h.tlsa_timing.first_seen);
            for (t, when) in seen.take(MAX_EXPORTED_TLSA_RECORDS) {
                if let Some(when) = when {
                    let record = t.presentation();
                    let record = bounded_label(&record);
                    gauge(m, &[("target", r.target.as_str()), ("mx", h.mx.as_str()), ("record", &record)], *when)?;
                }
            }
        }
        Ok(())
    })?;
    family(
        enc,
        "mailtls_tlsa_ttl_seconds",
        "Original TTL of the TLSA RRset (from its RRSIG when visible, else the answer's TTL)",
        reports,
        |m, r| {
            for h in &r.hosts {
                if let Some(ttl) = h.tlsa_timing.ttl {
                    gauge(
                        m,
                        &[("target", r.target.as_str()), ("mx", h.mx.as_str())],
                        f64::from(ttl),
                    )?;
                }
            }
            Ok(())
        },
    )?;
    Ok(())
}
