//! The policies beside DANE in the `check` text: the MTA-STS record and policy (or what is
//! wrong with them), coverage and verdict per MX address, and the TLSRPT record.
//!
//! Not here: the verdict itself (`model::policies`). Network strings go through [`Esc`].

use std::fmt::Write as _;

use super::Esc;
use crate::model::policies::{PolicyStatus, TlsRptReport};
use crate::model::report::TargetReport;

pub(super) fn render_policies(o: &mut String, r: &TargetReport) {
    if let Some(s) = &r.mta_sts {
        let st = s.status();
        let dnssec = s
            .record_dnssec
            .map(|d| format!(", _mta-sts TXT {}", d.as_str()))
            .unwrap_or_default();
        match (&s.policy, &s.problem) {
            (_, Some(p)) => {
                let _ = writeln!(
                    o,
                    "  MTA-STS: invalid ({}): {}{dnssec}",
                    p.reason,
                    Esc(&p.detail)
                );
            }
            (Some(p), None) => {
                let _ = writeln!(
                    o,
                    "  MTA-STS: {} (id {}, max_age {} s){dnssec}",
                    st.as_str(),
                    Esc(s.id.as_deref().unwrap_or("")),
                    p.max_age
                );
                if !p.mx.is_empty() {
                    let pats: Vec<String> = p.mx.iter().map(|m| Esc(m).to_string()).collect();
                    let _ = writeln!(o, "    mx patterns: {}", pats.join(", "));
                }
            }
            (None, None) => {
                let _ = writeln!(o, "  MTA-STS: none (no v=STSv1 record){dnssec}");
            }
        }
        if let Some(url) = &s.url {
            let _ = write!(o, "    policy: {}", Esc(url));
            if let Some(t) = s.cert_not_after {
                let _ = write!(o, ", certificate notAfter {}", super::date(t));
            }
            if let Some(sec) = s.fetch_seconds {
                let _ = write!(o, ", fetched in {sec:.3} s");
            }
            let _ = writeln!(o);
        }
        if matches!(st, PolicyStatus::Enforce | PolicyStatus::Testing) {
            for (_, mx) in &r.mx {
                if let Some(c) = s.covers(mx) {
                    let word = if c { "covered" } else { "NOT covered" };
                    let _ = writeln!(o, "    {}: {word}", Esc(mx));
                }
            }
        }
        for (h, a) in r.addresses() {
            let (v, why) = s.judge(h, a);
            let addr = a
                .address
                .map(|ip| ip.to_string())
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                o,
                "    {} {addr}: MTA-STS {}: {}",
                Esc(&h.mx),
                v.as_str(),
                Esc(&why)
            );
        }
    }
    match &r.tlsrpt {
        None => {}
        Some(TlsRptReport::Absent) => {
            let _ = writeln!(o, "  TLSRPT: none (no v=TLSRPTv1 record)");
        }
        Some(TlsRptReport::Valid { record }) => {
            let rua: Vec<String> = record.rua.iter().map(|u| Esc(u).to_string()).collect();
            let _ = writeln!(o, "  TLSRPT: valid: rua {}", rua.join(", "));
        }
        Some(TlsRptReport::Invalid { reason, detail }) => {
            let _ = writeln!(o, "  TLSRPT: invalid ({reason}): {}", Esc(detail));
        }
        Some(TlsRptReport::LookupFailed { detail }) => {
            let _ = writeln!(o, "  TLSRPT: unknown: {}", Esc(detail));
        }
    }
}
