//! The report families: one function per group of families, each writing its samples for
//! every report. Label values come from config or DNS, never from error text.
//!
//! Not here: chunking and assembling the exposition (`exposition`), the exporter's own
//! metrics (`own`). Names and meanings: docs/metrics.md.

use std::borrow::Cow;
use std::collections::HashSet;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder};
use prometheus_client::metrics::MetricType;

use super::FROM_LAST;
use crate::model::cert::{CertFacts, MAX_EXPORTED_CERTS};
use crate::model::dns::Dnssec;
use crate::model::report::{AddressReport, DaneStatus, HostReport, TargetReport};
use crate::model::smtp::TlsMode;
use crate::model::tlsa::{exported_checks, RecordCheck};

/// Longest label value taken from the network (certificate names and serials, TLSA
/// records), in bytes; longer values are cut at a char boundary and end in `…`
/// (docs/metrics.md, "Bounded exposition"). Prometheus' `label_value_length_limit` would
/// otherwise fail the whole scrape.
pub(crate) const MAX_LABEL_BYTES: usize = 256;

/// `v` itself when it has at most [`MAX_LABEL_BYTES`] bytes, else its longest prefix of at
/// most that many bytes that ends on a char boundary, followed by `…`.
pub(crate) fn bounded_label(v: &str) -> Cow<'_, str> {
    if v.len() <= MAX_LABEL_BYTES {
        return Cow::Borrowed(v);
    }
    let mut end = MAX_LABEL_BYTES;
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", v.get(..end).unwrap_or_default()))
}

/// Encodes all report metrics for `reports`, family by family (the order of the
/// exposition, see docs/metrics.md).
pub(crate) fn encode_reports(
    enc: &mut DescriptorEncoder,
    reports: &[&TargetReport],
) -> Result<(), std::fmt::Error> {
    target_families(enc, reports)?;
    dnssec_families(enc, reports)?;
    connection_families(enc, reports)?;
    session_info_families(enc, reports)?;
    cert_families(enc, reports)?;
    dane_families(enc, reports)?;
    super::policies::policy_families(enc, reports)?;
    super::rollover::rollover_families(enc, reports)?;
    super::authoritative::authoritative_families(enc, reports)?;
    Ok(())
}

/// Per target: probe result, duration and time, the MX set.
fn target_families(
    enc: &mut DescriptorEncoder,
    reports: &[&TargetReport],
) -> Result<(), std::fmt::Error> {
    family(enc, "mailtls_probe_success", "1 when every MX address of the target offered STARTTLS, completed the handshake and none is DANE failed or dns_failure", reports, |m, r| {
        gauge(m, &[("target", r.target.as_str())], b(r.success))
    })?;
    family(
        enc,
        "mailtls_probe_duration_seconds",
        "Duration of the probe",
        reports,
        |m, r| gauge(m, &[("target", r.target.as_str())], r.duration_seconds),
    )?;
    family(
        enc,
        "mailtls_probe_timestamp_seconds",
        "When the probe completed",
        reports,
        |m, r| gauge(m, &[("target", r.target.as_str())], r.timestamp),
    )?;
    family(
        enc,
        "mailtls_mx_info",
        "The MX set after the implicit-MX rule, value 1",
        reports,
        |m, r| {
            for (pref, host) in &r.mx {
                let p = pref.to_string();
                gauge(
                    m,
                    &[
                        ("target", r.target.as_str()),
                        ("mx", host.as_str()),
                        ("preference", p.as_str()),
                    ],
                    1.0,
                )?;
            }
            Ok(())
        },
    )?;
    family(
        enc,
        "mailtls_mx_null",
        "1 when the domain publishes a null MX (RFC 7505): it accepts no mail",
        reports,
        |m, r| {
            if r.kind == "domain" && r.mx_dnssec.is_some() {
                gauge(m, &[("target", r.target.as_str())], b(r.null_mx))?;
            }
            Ok(())
        },
    )?;
    Ok(())
}

/// Per RRset the verdict rests on: DNSSEC state and earliest signature expiry.
fn dnssec_families(
    enc: &mut DescriptorEncoder,
    reports: &[&TargetReport],
) -> Result<(), std::fmt::Error> {
    family(enc, "mailtls_dnssec_status", "DNSSEC state of each RRset the verdict rests on (state set: secure, insecure, bogus, error)", reports, |m, r| {
        let mut seen = HashSet::new();
        for l in &r.lookups {
            if !seen.insert((l.name.as_str(), l.rtype.as_str())) {
                continue;
            }
            for s in Dnssec::ALL {
                gauge(m, &[("target", r.target.as_str()), ("name", l.name.as_str()), ("type", l.rtype.as_str()), ("status", s.as_str())], b(l.dnssec == s))?;
            }
        }
        Ok(())
    })?;
    family(
        enc,
        "mailtls_dnssec_signature_expiry_timestamp_seconds",
        "Earliest RRSIG expiration covering the RRset (or its denial of existence)",
        reports,
        |m, r| {
            let mut seen = HashSet::new();
            for l in &r.lookups {
                if let Some(t) = l.sig_expiry {
                    if seen.insert((l.name.as_str(), l.rtype.as_str())) {
                        gauge(
                            m,
                            &[
                                ("target", r.target.as_str()),
                                ("name", l.name.as_str()),
                                ("type", l.rtype.as_str()),
                            ],
                            t as f64,
                        )?;
                    }
                }
            }
            Ok(())
        },
    )?;
    Ok(())
}

/// Per address: SMTP up, STARTTLS offered, handshake done, PKIX valid.
fn connection_families(
    enc: &mut DescriptorEncoder,
    reports: &[&TargetReport],
) -> Result<(), std::fmt::Error> {
    let per_addr = |enc: &mut DescriptorEncoder,
                    name: &str,
                    help: &str,
                    f: &dyn Fn(&AddressReport) -> Option<f64>|
     -> Result<(), std::fmt::Error> {
        family(enc, name, help, reports, |m, r| {
            for (h, a) in r.addresses() {
                if let Some(v) = f(a) {
                    let addr = address_label(a);
                    gauge(m, &addr_labels(r, h, &addr, &[]), v)?;
                }
            }
            Ok(())
        })
    };
    per_addr(
        enc,
        "mailtls_smtp_up",
        "1 when TCP connect, the 220 greeting and EHLO succeeded",
        &|a| Some(b(a.smtp.as_ref().is_some_and(|s| s.smtp_up()))),
    )?;
    per_addr(
        enc,
        "mailtls_starttls_advertised",
        "1 when EHLO offered STARTTLS (absent for implicit TLS)",
        &|a| {
            a.smtp
                .as_ref()
                .filter(|s| s.smtp_up() && s.tls_mode == TlsMode::Starttls)
                .map(|s| b(s.starttls_advertised))
        },
    )?;
    per_addr(
        enc,
        "mailtls_tls_handshake_success",
        "1 when the TLS handshake (after STARTTLS, or right after connecting for implicit TLS) completed",
        &|a| {
            a.smtp
                .as_ref()
                .filter(|s| match s.tls_mode {
                    TlsMode::Starttls => s.starttls_advertised,
                    TlsMode::Implicit => s.connected,
                })
                .map(|s| b(s.tls.is_some()))
        },
    )?;
    per_addr(
        enc,
        "mailtls_smtp_ehlo_after_tls_success",
        "1 when the server answered EHLO with 250 inside TLS (broken TLS proxies fail here)",
        &|a| {
            a.smtp
                .as_ref()
                .and_then(|s| s.ehlo_after_tls_success())
                .map(b)
        },
    )?;
    per_addr(
        enc,
        "mailtls_smtp_requiretls_advertised",
        "1 when the EHLO answered inside TLS offers REQUIRETLS (RFC 8689)",
        &|a| {
            a.smtp
                .as_ref()
                .and_then(|s| s.requiretls_advertised())
                .map(b)
        },
    )?;
    per_addr(enc, "mailtls_cert_pkix_valid", "1 when the chain validates to the PKIX roots and names the MX host (what an MTA-STS sender needs)", &|a| {
        a.pkix.as_ref().map(|p| b(p.is_ok()))
    })?;
    Ok(())
}

/// Per address: why the SMTP/TLS probe failed, and what TLS was negotiated.
fn session_info_families(
    enc: &mut DescriptorEncoder,
    reports: &[&TargetReport],
) -> Result<(), std::fmt::Error> {
    family(
        enc,
        "mailtls_smtp_error_info",
        "Why the SMTP/TLS probe of an address failed (fixed reason words), value 1",
        reports,
        |m, r| {
            for (h, a) in r.addresses() {
                if let Some(e) = a.smtp.as_ref().and_then(|s| s.error.as_ref()) {
                    let addr = address_label(a);
                    gauge(m, &addr_labels(r, h, &addr, &[("reason", e.reason())]), 1.0)?;
                }
            }
            Ok(())
        },
    )?;
    family(
        enc,
        "mailtls_tls_info",
        "Negotiated TLS protocol version and cipher suite, value 1",
        reports,
        |m, r| {
            for (h, a) in r.addresses() {
                if let Some(t) = a.smtp.as_ref().and_then(|s| s.tls.as_ref()) {
                    let addr = address_label(a);
                    gauge(
                        m,
                        &addr_labels(
                            r,
                            h,
                            &addr,
                            &[
                                ("version", t.version.as_str()),
                                ("cipher", t.cipher.as_str()),
                            ],
                        ),
                        1.0,
                    )?;
                }
            }
            Ok(())
        },
    )?;
    Ok(())
}

/// Per served certificate: validity dates and identity.
fn cert_families(
    enc: &mut DescriptorEncoder,
    reports: &[&TargetReport],
) -> Result<(), std::fmt::Error> {
    let per_cert = |enc: &mut DescriptorEncoder,
                    name: &str,
                    help: &str,
                    f: &dyn Fn(&CertFacts) -> f64|
     -> Result<(), std::fmt::Error> {
        family(enc, name, help, reports, |m, r| {
            for (h, a) in r.addresses() {
                let addr = address_label(a);
                for c in exported_certs(a) {
                    let depth = c.depth.to_string();
                    gauge(
                        m,
                        &addr_labels(r, h, &addr, &[("depth", depth.as_str())]),
                        f(c),
                    )?;
                }
            }
            Ok(())
        })
    };
    per_cert(
        enc,
        "mailtls_cert_not_after_timestamp_seconds",
        "notAfter of each certificate the server sent (depth 0 = leaf)",
        &|c| c.not_after as f64,
    )?;
    per_cert(
        enc,
        "mailtls_cert_not_before_timestamp_seconds",
        "notBefore of each certificate the server sent (depth 0 = leaf)",
        &|c| c.not_before as f64,
    )?;
    cert_info_family(enc, reports)?;
    family(
        enc,
        "mailtls_cert_chain_length",
        "Number of certificates the server sent (at most 10 are exported as cert series, depth 0-9)",
        reports,
        |m, r| {
            for (h, a) in r.addresses() {
                if let Some(t) = a.smtp.as_ref().and_then(|s| s.tls.as_ref()) {
                    let addr = address_label(a);
                    gauge(m, &addr_labels(r, h, &addr, &[]), t.chain_len as f64)?;
                }
            }
            Ok(())
        },
    )?;
    Ok(())
}

/// `mailtls_cert_info`: subject, issuer, serial and SHA-256 of each exported certificate.
fn cert_info_family(
    enc: &mut DescriptorEncoder,
    reports: &[&TargetReport],
) -> Result<(), std::fmt::Error> {
    family(
        enc,
        "mailtls_cert_info",
        "Identity of each certificate the server sent, value 1",
        reports,
        |m, r| {
            for (h, a) in r.addresses() {
                let addr = address_label(a);
                for c in exported_certs(a) {
                    let depth = c.depth.to_string();
                    let (subject, issuer) = (bounded_label(&c.subject), bounded_label(&c.issuer));
                    let serial = bounded_label(&c.serial);
                    gauge(
                        m,
                        &addr_labels(
                            r,
                            h,
                            &addr,
                            &[
                                ("depth", depth.as_str()),
                                ("subject", subject.as_ref()),
                                ("issuer", issuer.as_ref()),
                                ("serial", serial.as_ref()),
                                ("sha256", c.sha256.as_str()),
                            ],
                        ),
                        1.0,
                    )?;
                }
            }
            Ok(())
        },
    )
}

/// The certificates exported as series: depth 0 to `MAX_EXPORTED_CERTS` - 1.
fn exported_certs(a: &AddressReport) -> impl Iterator<Item = &CertFacts> {
    a.certs.iter().filter(|c| c.depth < MAX_EXPORTED_CERTS)
}

/// Per address: each TLSA record's match and the DANE verdict.
fn dane_families(
    enc: &mut DescriptorEncoder,
    reports: &[&TargetReport],
) -> Result<(), std::fmt::Error> {
    let per_record = |enc: &mut DescriptorEncoder,
                      name: &str,
                      help: &str,
                      f: &dyn Fn(&RecordCheck) -> bool|
     -> Result<(), std::fmt::Error> {
        family(enc, name, help, reports, |m, r| {
            for (h, a) in r.addresses() {
                let addr = address_label(a);
                // Cut record labels could collide: the first one wins (RRset order).
                let mut seen = HashSet::new();
                for c in exported_checks(&a.tlsa) {
                    let rec = c.record.presentation();
                    let rec = bounded_label(&rec).into_owned();
                    if seen.insert(rec.clone()) {
                        gauge(
                            m,
                            &addr_labels(r, h, &addr, &[("record", rec.as_str())]),
                            b(f(c)),
                        )?;
                    }
                }
            }
            Ok(())
        })
    };
    per_record(enc, "mailtls_tlsa_record_match", "1 when this published TLSA record matches (RFC 7671) a certificate the address served at an eligible depth (DANE-EE: depth 0; DANE-TA: depth 1 or more, or the key that signs the chain for 2 x 0); dates, names, path and digest agility do not enter; unusable records are 0", &|c| c.matched)?;
    per_record(enc, "mailtls_tlsa_record_authenticates", "1 when this TLSA record alone would let a DANE-enforcing sender authenticate the address: it matches, is usable, is not outranked by digest agility, and for DANE-TA the chain verifies with valid dates and the leaf names a reference identifier", &|c| c.authenticates)?;
    family(enc, "mailtls_dane_status", "DANE verdict per MX address, as a DANE-enforcing sender reaches it (state set: verified, unauthenticated, failed, dns_failure, none)", reports, |m, r| {
        for (h, a) in r.addresses() {
            let Some(st) = a.dane else { continue };
            let addr = address_label(a);
            for s in DaneStatus::ALL {
                gauge(m, &addr_labels(r, h, &addr, &[("status", s.as_str())]), b(st == s))?;
            }
        }
        Ok(())
    })?;
    Ok(())
}

pub(super) fn gauge<L: EncodeLabelSet>(
    enc: &mut MetricEncoder<'_>,
    labels: &L,
    v: f64,
) -> Result<(), std::fmt::Error> {
    enc.encode_family(labels)?.encode_gauge(&v)
}

pub(super) fn b(v: bool) -> f64 {
    if v {
        1.0
    } else {
        0.0
    }
}

/// Writes one gauge family: `each` is called with the family encoder for every report.
pub(super) fn family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    reports: &[&TargetReport],
    mut each: impl FnMut(&mut MetricEncoder<'_>, &TargetReport) -> Result<(), std::fmt::Error>,
) -> Result<(), std::fmt::Error> {
    let help = format!("{help}{FROM_LAST}");
    let mut m = enc.encode_descriptor(name, &help, None, MetricType::Gauge)?;
    for r in reports {
        each(&mut m, r)?;
    }
    Ok(())
}

/// The `address` label: the IP connected to, "" when the host's addresses were not resolved.
pub(super) fn address_label(a: &AddressReport) -> String {
    a.address.map(|ip| ip.to_string()).unwrap_or_default()
}

/// `target`, `mx`, `address` and any further labels of a per-address series.
pub(super) fn addr_labels<'a>(
    r: &'a TargetReport,
    h: &'a HostReport,
    addr: &'a str,
    extra: &[(&'static str, &'a str)],
) -> Vec<(&'static str, &'a str)> {
    let mut l = Vec::with_capacity(3 + extra.len());
    l.extend([
        ("target", r.target.as_str()),
        ("mx", h.mx.as_str()),
        ("address", addr),
    ]);
    l.extend_from_slice(extra);
    l
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use prometheus_client::registry::Registry;

    use crate::metrics::{encode_report, EncodedReport, Exposition, ReportSource};
    use crate::model::fixture::{
        complete_report, without_host, HOSTILE_SUBJECT, MX1, MX2, NOT_AFTER, SIG_EXPIRY,
    };

    /// The latest encoded reports, replaced by the test as a scheduler would.
    #[derive(Debug, Default)]
    struct Latest(Mutex<Vec<Arc<EncodedReport>>>);

    impl ReportSource for Latest {
        fn encoded(&self) -> Vec<Arc<EncodedReport>> {
            self.0.lock().map(|v| v.clone()).unwrap_or_default()
        }
    }

    /// `/metrics` (Prometheus text) after the latest probe produced `report`.
    fn scrape(
        latest: &Arc<Latest>,
        exposition: &Exposition,
        report: crate::model::report::TargetReport,
    ) -> String {
        if let Ok(mut v) = latest.0.lock() {
            *v = vec![Arc::new(encode_report(&Arc::new(report)))];
        }
        exposition.render(false).0
    }

    fn exposition() -> (Arc<Latest>, Exposition) {
        let latest = Arc::new(Latest::default());
        let source: Arc<dyn ReportSource> = latest.clone();
        (latest, Exposition::new(Registry::default(), source))
    }

    /// Value of the sample `name{…}` whose label set contains every `labels` pair.
    fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix('{')?;
            let all = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            all.then(|| l.rsplit(' ').next()?.parse().ok()).flatten()
        })
    }

    #[test]
    fn complete_report_gives_every_family_a_sample() {
        let (latest, e) = exposition();
        let text = scrape(&latest, &e, complete_report());
        // Families that only an invalid MTA-STS policy has.
        let invalid = scrape(&latest, &e, crate::model::fixture::invalid_policy_report());
        let families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" gauge"))
            .collect();
        // The 20 report families of docs/metrics.md (more as they are added).
        assert!(families.len() >= 20, "{families:?}");
        for f in &families {
            let has = |t: &str| t.lines().any(|l| l.starts_with(&format!("{f}{{")));
            assert!(
                has(&text) || has(&invalid),
                "family {f} has no sample in the complete report:\n{text}"
            );
        }
    }

    #[test]
    fn per_address_families_carry_the_report_values() {
        let (latest, e) = exposition();
        let t = scrape(&latest, &e, complete_report());
        let v4 = [
            ("target", "example.test"),
            ("mx", MX1),
            ("address", "192.0.2.25"),
        ];
        let v6 = [
            ("target", "example.test"),
            ("mx", MX1),
            ("address", "2001:db8::25"),
        ];
        let mx2 = [
            ("target", "example.test"),
            ("mx", MX2),
            ("address", "198.51.100.25"),
        ];
        assert_eq!(
            sample(&t, "mailtls_probe_success", &[("target", "example.test")]),
            Some(0.0)
        );
        assert_eq!(
            sample(&t, "mailtls_mx_info", &[("mx", MX2), ("preference", "20")]),
            Some(1.0)
        );
        assert_eq!(
            sample(&t, "mailtls_mx_null", &[("target", "example.test")]),
            Some(0.0)
        );
        assert_eq!(sample(&t, "mailtls_smtp_up", &v6), Some(1.0));
        assert_eq!(sample(&t, "mailtls_starttls_advertised", &v4), Some(1.0));
        assert_eq!(sample(&t, "mailtls_starttls_advertised", &v6), Some(0.0));
        assert_eq!(sample(&t, "mailtls_tls_handshake_success", &v4), Some(1.0));
        // Absent, not 0, where STARTTLS was not offered: there was no handshake to fail.
        assert_eq!(sample(&t, "mailtls_tls_handshake_success", &v6), None);
        // Inside TLS: answered, no REQUIRETLS; absent where no handshake completed.
        assert_eq!(
            sample(&t, "mailtls_smtp_ehlo_after_tls_success", &v4),
            Some(1.0)
        );
        assert_eq!(
            sample(&t, "mailtls_smtp_requiretls_advertised", &v4),
            Some(0.0)
        );
        assert_eq!(sample(&t, "mailtls_smtp_ehlo_after_tls_success", &v6), None);
        assert_eq!(sample(&t, "mailtls_smtp_requiretls_advertised", &v6), None);
        assert_eq!(
            sample(
                &t,
                "mailtls_smtp_error_info",
                &[("address", "2001:db8::25"), ("reason", "no_starttls")]
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &t,
                "mailtls_tls_info",
                &[
                    ("address", "192.0.2.25"),
                    ("version", "TLSv1.3"),
                    ("cipher", "TLS13_AES_128_GCM_SHA256")
                ]
            ),
            Some(1.0)
        );
        let depth1 = [("address", "192.0.2.25"), ("depth", "1")];
        assert_eq!(
            sample(&t, "mailtls_cert_not_after_timestamp_seconds", &depth1),
            Some(NOT_AFTER as f64)
        );
        assert!(sample(&t, "mailtls_cert_not_before_timestamp_seconds", &depth1).is_some());
        assert_eq!(
            sample(
                &t,
                "mailtls_cert_info",
                &[("depth", "1"), ("subject", "CN=Test CA"), ("serial", "01")]
            ),
            Some(1.0)
        );
        assert_eq!(sample(&t, "mailtls_cert_pkix_valid", &v4), Some(1.0));
        assert_eq!(sample(&t, "mailtls_cert_pkix_valid", &mx2), Some(0.0));
        assert_eq!(sample(&t, "mailtls_cert_pkix_valid", &v6), None);
        let ee = format!("3 1 1 {}", "aa".repeat(32));
        let pkix = format!("1 1 1 {}", "cc".repeat(32));
        assert_eq!(
            sample(
                &t,
                "mailtls_tlsa_record_match",
                &[("address", "192.0.2.25"), ("record", &ee)]
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &t,
                "mailtls_tlsa_record_match",
                &[("address", "192.0.2.25"), ("record", &pkix)]
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &t,
                "mailtls_tlsa_record_match",
                &[("address", "2001:db8::25"), ("record", &ee)]
            ),
            Some(0.0)
        );
        let authenticates = |addr: &str, rec: &str| {
            sample(
                &t,
                "mailtls_tlsa_record_authenticates",
                &[("address", addr), ("record", rec)],
            )
        };
        assert_eq!(authenticates("192.0.2.25", &ee), Some(1.0));
        assert_eq!(authenticates("192.0.2.25", &pkix), Some(0.0));
        assert_eq!(authenticates("2001:db8::25", &ee), Some(0.0));
        assert_eq!(sample(&t, "mailtls_cert_chain_length", &v4), Some(2.0));
        for (labels, state) in [(&v4, "verified"), (&v6, "failed"), (&mx2, "none")] {
            for s in [
                "verified",
                "unauthenticated",
                "failed",
                "dns_failure",
                "none",
            ] {
                let mut l = labels.to_vec();
                l.push(("status", s));
                let want = if s == state { 1.0 } else { 0.0 };
                assert_eq!(
                    sample(&t, "mailtls_dane_status", &l),
                    Some(want),
                    "{labels:?} {s}"
                );
            }
        }
        let tlsa = [("name", "_25._tcp.mx1.example.test"), ("type", "TLSA")];
        assert_eq!(
            sample(
                &t,
                "mailtls_dnssec_status",
                &[tlsa[0], tlsa[1], ("status", "secure")]
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &t,
                "mailtls_dnssec_status",
                &[("name", MX2), ("type", "AAAA"), ("status", "insecure")]
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &t,
                "mailtls_dnssec_status",
                &[("name", "broken.example.test"), ("status", "error")]
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &t,
                "mailtls_dnssec_signature_expiry_timestamp_seconds",
                &tlsa
            ),
            Some(SIG_EXPIRY as f64)
        );
        // Only signed RRsets have an expiry.
        assert_eq!(
            sample(
                &t,
                "mailtls_dnssec_signature_expiry_timestamp_seconds",
                &[("name", MX2)]
            ),
            None
        );
    }

    #[test]
    fn label_values_escape_quote_backslash_and_newline() {
        // Exposition format: label values escape `\` as `\\`, `"` as `\"`, newline as `\n`.
        let (latest, e) = exposition();
        let t = scrape(&latest, &e, complete_report());
        assert!(HOSTILE_SUBJECT.contains(['"', '\\', '\n']));
        assert!(
            t.contains(r#"subject="CN=mx1 \"quoted\" back\\slash\nsecond line""#),
            "{t}"
        );
        // The newline did not break the sample line.
        assert!(!t.lines().any(|l| l.starts_with("second line")));
        for l in t.lines().filter(|l| !l.starts_with('#')) {
            assert!(l.starts_with("mailtls_"), "stray line {l:?}");
        }
    }

    #[test]
    fn series_of_a_host_that_left_the_mx_set_disappear() {
        let (latest, e) = exposition();
        let a = complete_report();
        let before = scrape(&latest, &e, a.clone());
        assert!(before.contains(&format!("mx=\"{MX2}\"")));
        assert!(before.contains(&format!("name=\"{MX2}\"")));
        let after = scrape(&latest, &e, without_host(a, MX2));
        assert!(!after.contains(MX2), "{after}");
        assert!(!after.contains("198.51.100.25"), "{after}");
        // mx1's series and every family header stay.
        assert_eq!(
            sample(
                &after,
                "mailtls_smtp_up",
                &[("mx", MX1), ("address", "192.0.2.25")]
            ),
            Some(1.0)
        );
        let headers = |t: &str| t.lines().filter(|l| l.starts_with("# TYPE")).count();
        assert_eq!(headers(&before), headers(&after));
    }

    use super::{bounded_label, MAX_LABEL_BYTES};

    // docs/metrics.md, "Bounded exposition": cut at 256 bytes, at a char boundary, then `…`.
    #[test]
    fn label_values_are_cut_at_256_bytes_on_a_char_boundary() {
        assert_eq!(bounded_label("short"), "short");
        let exact = "a".repeat(MAX_LABEL_BYTES);
        assert_eq!(bounded_label(&exact), exact);
        let long = "a".repeat(1000);
        assert_eq!(bounded_label(&long), format!("{}…", "a".repeat(256)));
        // 255 ASCII bytes then a 3-byte char straddling the limit: cut before it.
        let straddle = format!("{}€€", "b".repeat(255));
        assert_eq!(bounded_label(&straddle), format!("{}…", "b".repeat(255)));
        for n in 0..8 {
            let mixed = format!("{}{}", "c".repeat(n), "é€x".repeat(200));
            let cut = bounded_label(&mixed);
            let prefix = cut.strip_suffix('…').unwrap_or(&cut);
            assert!(prefix.len() <= MAX_LABEL_BYTES && prefix.len() > MAX_LABEL_BYTES - 4);
            assert!(mixed.starts_with(prefix));
        }
    }
}
