//! The only place metric names and labels appear: reports → exposition.
//!
//! Owns: the report metrics of CONTRACT.md, written through prometheus-client
//! ([`encode_reports`]); the exporter's own metrics; content negotiation (OpenMetrics, or the
//! Prometheus text format 0.0.4).
//! Scale: a target's series are encoded once, when its probe completes ([`encode_report`]),
//! into one text chunk per metric family; a scrape ([`Exposition::render`]) only concatenates
//! the chunks of the latest reports, family by family. A scrape of 10,000 targets is then a
//! memory copy rather than 780,000 label encodings, and series of a vanished host, address or
//! record disappear with the report that carried them.
//! Not here: producing reports (`probe`), keeping them (`scheduler`), serving (`http`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::model::cert::CertFacts;
use crate::model::dns::Dnssec;
use crate::model::report::{AddressReport, DaneStatus, HostReport, TargetReport};

/// HELP suffix: values come from the last scheduled probe, never from the scrape itself.
const FROM_LAST: &str = " (from the last scheduled probe)";

pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One target's series, encoded when its probe completed: the sample lines of each metric
/// family, in the order of [`encode_reports`].
/// One allocation per target: all chunks back to back, and where each family's ends.
#[derive(Debug, Clone, Default)]
pub struct EncodedReport {
    text: Box<str>,
    ends: Box<[u32]>,
}

impl EncodedReport {
    fn new(chunks: Vec<String>) -> Self {
        let mut text = String::with_capacity(chunks.iter().map(String::len).sum());
        let mut ends = Vec::with_capacity(chunks.len());
        for c in chunks {
            text.push_str(&c);
            ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
        }
        Self {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }

    /// The sample lines of family `i`.
    fn chunk(&self, i: usize) -> &str {
        let start = match i {
            0 => 0,
            _ => self.ends.get(i - 1).copied().unwrap_or(0) as usize,
        };
        let end = self.ends.get(i).copied().unwrap_or(0) as usize;
        self.text.get(start..end).unwrap_or("")
    }

    /// Bytes held (for sizing the scrape buffer).
    pub fn len(&self) -> usize {
        self.text.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where the exposition finds the latest encoded reports.
pub trait ReportSource: Send + Sync + std::fmt::Debug + 'static {
    /// The latest encoded report of every target, in a stable order.
    fn encoded(&self) -> Vec<Arc<EncodedReport>>;
}

/// Encodes every report metric of one report as a family-by-family chunk list.
pub fn encode_report(report: &Arc<TargetReport>) -> EncodedReport {
    let (headers, chunks) = split_families(&encode_with_descriptors(vec![report.clone()]));
    let _ = HEADERS.get_or_init(|| headers);
    EncodedReport::new(chunks)
}

/// HELP and TYPE lines of each report family, in order; the same for every report.
static HEADERS: OnceLock<Vec<String>> = OnceLock::new();

fn headers() -> &'static [String] {
    HEADERS.get_or_init(|| split_families(&encode_with_descriptors(Vec::new())).0)
}

/// A collector over a fixed set of reports.
#[derive(Debug)]
struct Fixed(Vec<Arc<TargetReport>>);

impl Collector for Fixed {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let refs: Vec<&TargetReport> = self.0.iter().map(Arc::as_ref).collect();
        encode_reports(&mut enc, &refs)
    }
}

/// Report families with descriptors, through prometheus-client (no `# EOF`).
fn encode_with_descriptors(reports: Vec<Arc<TargetReport>>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Fixed(reports)));
    let mut out = String::with_capacity(4096);
    if prometheus_client::encoding::text::encode_registry(&mut out, &registry).is_err() {
        out.clear();
    }
    out
}

/// Splits an encoding into per-family (header, samples).
fn split_families(text: &str) -> (Vec<String>, Vec<String>) {
    let mut headers: Vec<String> = Vec::new();
    let mut chunks: Vec<String> = Vec::new();
    for line in text.split_inclusive('\n') {
        if line.starts_with("# HELP ") {
            headers.push(line.to_string());
            chunks.push(String::new());
        } else if line.starts_with('#') {
            if let Some(h) = headers.last_mut() {
                h.push_str(line);
            }
        } else if let Some(c) = chunks.last_mut() {
            c.push_str(line);
        }
    }
    (headers, chunks)
}

/// What `/metrics` serves: the exporter's own registry plus the latest encoded reports.
#[derive(Debug)]
pub struct Exposition {
    pub own: Registry,
    pub source: Arc<dyn ReportSource>,
    last_len: AtomicUsize,
}

impl Exposition {
    pub fn new(own: Registry, source: Arc<dyn ReportSource>) -> Self {
        Self {
            own,
            source,
            last_len: AtomicUsize::new(64 * 1024),
        }
    }

    /// The body in the negotiated format, and its content type.
    pub fn render(&self, openmetrics: bool) -> (String, &'static str) {
        let reports = self.source.encoded();
        let mut out = String::with_capacity(self.last_len.load(Ordering::Relaxed) + 4096);
        let mut own = String::with_capacity(4096);
        if prometheus_client::encoding::text::encode_registry(&mut own, &self.own).is_err() {
            own.clear();
        }
        if openmetrics {
            out.push_str(&own);
        } else {
            out.push_str(&openmetrics_to_text(&own));
        }
        assemble(&mut out, &reports);
        if openmetrics {
            out.push_str("# EOF\n");
        }
        self.last_len.store(out.len(), Ordering::Relaxed);
        let ctype = if openmetrics {
            OPENMETRICS_CONTENT_TYPE
        } else {
            TEXT_CONTENT_TYPE
        };
        (out, ctype)
    }
}

/// Appends every report family: its header once, then each report's chunk.
fn assemble(out: &mut String, reports: &[Arc<EncodedReport>]) {
    for (i, header) in headers().iter().enumerate() {
        out.push_str(header);
        for r in reports {
            out.push_str(r.chunk(i));
        }
    }
}

/// The report metrics of one fresh report only (`/probe`), in the negotiated format.
pub fn render_report(report: Arc<TargetReport>, openmetrics: bool) -> (String, &'static str) {
    let text = encode_with_descriptors(vec![report]).replace(FROM_LAST, " (from this probe)");
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str(&text);
    if openmetrics {
        out.push_str("# EOF\n");
        (out, OPENMETRICS_CONTENT_TYPE)
    } else {
        (out, TEXT_CONTENT_TYPE)
    }
}

/// Counters and gauges about the exporter's own work.
#[derive(Debug, Default)]
pub struct ExporterMetrics {
    pub probes: Family<[(&'static str, &'static str); 1], Counter>,
    pub config_reload_successful: Gauge,
    pub config_reload_timestamp: Gauge<f64, AtomicU64>,
    /// Absent until checked, and when no target needs DNS.
    pub resolver_validating: OptionalGauge,
    pub targets: Gauge,
    /// One series per configured target, present before its first probe completes.
    pub target_info: Family<[(&'static str, String); 2], Gauge>,
    /// Read at scrape time from the live probe context.
    pub dns_queries: Arc<AtomicU64>,
    pub dns_cache_entries: Arc<AtomicU64>,
    pub smtp_dialogues: Arc<AtomicU64>,
}

/// A gauge that may have no value: then neither sample nor descriptor is exposed.
#[derive(Debug, Clone)]
pub struct OptionalGauge(Arc<std::sync::atomic::AtomicI64>);

impl Default for OptionalGauge {
    fn default() -> Self {
        Self(Arc::new(std::sync::atomic::AtomicI64::new(-1)))
    }
}

impl OptionalGauge {
    /// `None` removes the value; values are 0 or more.
    pub fn set(&self, v: Option<i64>) {
        self.0.store(v.map_or(-1, |v| v.max(0)), Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct OptionalGaugeCollector(OptionalGauge, &'static str, &'static str);

impl Collector for OptionalGaugeCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let v = self.0 .0.load(Ordering::Relaxed);
        if v < 0 {
            return Ok(());
        }
        enc.encode_descriptor(self.1, self.2, None, MetricType::Gauge)?
            .encode_gauge(&v)
    }
}

#[derive(Debug)]
struct AtomicCounter(Arc<AtomicU64>, &'static str, &'static str, MetricType);

impl Collector for AtomicCounter {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let v = self.0.load(Ordering::Relaxed);
        let mut m = enc.encode_descriptor(self.1, self.2, None, self.3)?;
        match self.3 {
            MetricType::Counter => {
                m.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&v, None)
            }
            _ => m.encode_gauge(&(v as i64)),
        }
    }
}

impl ExporterMetrics {
    /// Registers the exporter's own metrics.
    pub fn registry(self: &Arc<Self>) -> Registry {
        let mut r = Registry::default();
        let build = Family::<[(&'static str, &'static str); 2], Gauge>::default();
        build
            .get_or_create(&[
                ("version", env!("CARGO_PKG_VERSION")),
                (
                    "revision",
                    option_env!("MAILTLS_REVISION").unwrap_or("unknown"),
                ),
            ])
            .set(1);
        r.register(
            "mailtls_exporter_build_info",
            "Version of the exporter, value 1",
            build,
        );
        r.register(
            "mailtls_probes",
            "Target probes completed, by result",
            self.probes.clone(),
        );
        r.register(
            "mailtls_config_last_reload_successful",
            "1 when the last configuration (re)load succeeded",
            self.config_reload_successful.clone(),
        );
        r.register(
            "mailtls_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully",
            self.config_reload_timestamp.clone(),
        );
        r.register_collector(Box::new(OptionalGaugeCollector(
            self.resolver_validating.clone(),
            "mailtls_dns_resolver_validating",
            "1 when the resolver proved that it validates DNSSEC (the root SOA came back secure); absent when no target needs DNS",
        )));
        r.register(
            "mailtls_targets",
            "Configured targets",
            self.targets.clone(),
        );
        r.register(
            "mailtls_target_info",
            "Configured target and its kind (domain, host, address), value 1",
            self.target_info.clone(),
        );
        r.register_collector(Box::new(AtomicCounter(
            self.dns_queries.clone(),
            "mailtls_dns_queries",
            "DNS queries sent to the resolver (cache misses)",
            MetricType::Counter,
        )));
        r.register_collector(Box::new(AtomicCounter(
            self.dns_cache_entries.clone(),
            "mailtls_dns_cache_entries",
            "RRsets held in the DNS cache",
            MetricType::Gauge,
        )));
        r.register_collector(Box::new(AtomicCounter(
            self.smtp_dialogues.clone(),
            "mailtls_smtp_dialogues",
            "SMTP dialogues run (an address shared by several targets is probed once per round)",
            MetricType::Counter,
        )));
        r
    }

    pub fn count_probe(&self, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.probes.get_or_create(&[("result", result)]).inc();
    }
}

/// Does an `Accept` header ask for OpenMetrics?
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// OpenMetrics text → Prometheus text 0.0.4: drops `# EOF` and `# UNIT`, and names counter
/// families after their `_total` samples.
pub fn openmetrics_to_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    let mut counters = std::collections::HashSet::new();
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.strip_suffix(" counter") {
                counters.insert(name.to_string());
            }
        }
    }
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        match rewritten {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

// ---- report metrics --------------------------------------------------------------------------

fn gauge<L: EncodeLabelSet>(
    enc: &mut prometheus_client::encoding::MetricEncoder<'_>,
    labels: &L,
    v: f64,
) -> Result<(), std::fmt::Error> {
    enc.encode_family(labels)?.encode_gauge(&v)
}

fn b(v: bool) -> f64 {
    if v {
        1.0
    } else {
        0.0
    }
}

/// Writes one gauge family: `each` is called with the family encoder for every report.
fn family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    reports: &[&TargetReport],
    mut each: impl FnMut(
        &mut prometheus_client::encoding::MetricEncoder<'_>,
        &TargetReport,
    ) -> Result<(), std::fmt::Error>,
) -> Result<(), std::fmt::Error> {
    let help = format!("{help}{FROM_LAST}");
    let mut m = enc.encode_descriptor(name, &help, None, MetricType::Gauge)?;
    for r in reports {
        each(&mut m, r)?;
    }
    Ok(())
}

/// The `address` label: the IP connected to, "" when the host's addresses were not resolved.
fn address_label(a: &AddressReport) -> String {
    a.address.map(|ip| ip.to_string()).unwrap_or_default()
}

/// `target`, `mx`, `address` and any further labels of a per-address series.
fn addr_labels<'a>(
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

/// Encodes all report metrics for `reports`.
pub fn encode_reports(
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
    family(enc, "mailtls_dnssec_status", "DNSSEC state of each RRset the verdict rests on (state set: secure, insecure, bogus, error)", reports, |m, r| {
        let mut seen = std::collections::HashSet::new();
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
            let mut seen = std::collections::HashSet::new();
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

    // Per-address series share the (target, mx, address) labels.
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
        "1 when EHLO offered STARTTLS",
        &|a| {
            a.smtp
                .as_ref()
                .filter(|s| s.smtp_up())
                .map(|s| b(s.starttls_advertised))
        },
    )?;
    per_addr(
        enc,
        "mailtls_tls_handshake_success",
        "1 when the TLS handshake after STARTTLS completed",
        &|a| {
            a.smtp
                .as_ref()
                .filter(|s| s.starttls_advertised)
                .map(|s| b(s.tls.is_some()))
        },
    )?;
    per_addr(enc, "mailtls_cert_pkix_valid", "1 when the chain validates to the PKIX roots and names the MX host (what an MTA-STS sender needs)", &|a| {
        a.pkix.as_ref().map(|p| b(p.is_ok()))
    })?;

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
    let per_cert = |enc: &mut DescriptorEncoder,
                    name: &str,
                    help: &str,
                    f: &dyn Fn(&CertFacts) -> f64|
     -> Result<(), std::fmt::Error> {
        family(enc, name, help, reports, |m, r| {
            for (h, a) in r.addresses() {
                let addr = address_label(a);
                for c in &a.certs {
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
    family(
        enc,
        "mailtls_cert_info",
        "Identity of each certificate the server sent, value 1",
        reports,
        |m, r| {
            for (h, a) in r.addresses() {
                let addr = address_label(a);
                for c in &a.certs {
                    let depth = c.depth.to_string();
                    gauge(
                        m,
                        &addr_labels(
                            r,
                            h,
                            &addr,
                            &[
                                ("depth", depth.as_str()),
                                ("subject", c.subject.as_str()),
                                ("issuer", c.issuer.as_str()),
                                ("serial", c.serial.as_str()),
                                ("sha256", c.sha256.as_str()),
                            ],
                        ),
                        1.0,
                    )?;
                }
            }
            Ok(())
        },
    )?;
    family(enc, "mailtls_tlsa_record_match", "1 when this published TLSA record matches the chain the address served (RFC 7671/7672: DANE-EE at depth 0, DANE-TA at depth 1 or more; unusable records are 0)", reports, |m, r| {
        for (h, a) in r.addresses() {
            let addr = address_label(a);
            for c in &a.tlsa {
                let rec = c.record.presentation();
                gauge(m, &addr_labels(r, h, &addr, &[("record", rec.as_str())]), b(c.matched))?;
            }
        }
        Ok(())
    })?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_counters_become_total_families_in_text_format() {
        let om = "# HELP mailtls_probes Target probes.\n# TYPE mailtls_probes counter\nmailtls_probes_total{result=\"success\"} 3\n# HELP g G.\n# TYPE g gauge\ng 1\n# EOF\n";
        let t = openmetrics_to_text(om);
        assert!(t.contains("# TYPE mailtls_probes_total counter\n"));
        assert!(t.contains("# HELP mailtls_probes_total Target probes.\n"));
        assert!(t.contains("# TYPE g gauge\n"));
        assert!(!t.contains("# EOF"));
    }

    fn report(target: &str, mx: &[(u16, &str)]) -> Arc<TargetReport> {
        Arc::new(TargetReport {
            target: target.into(),
            kind: "domain",
            timestamp: 1.0,
            duration_seconds: 0.5,
            mx_dnssec: Some(Dnssec::Secure),
            mx: mx.iter().map(|(p, h)| (*p, h.to_string())).collect(),
            implicit_mx: false,
            null_mx: false,
            hosts: Vec::new(),
            lookups: Vec::new(),
            error: None,
            success: true,
        })
    }

    #[test]
    fn assembled_chunks_equal_a_direct_encoding_of_all_reports() {
        let reports = vec![
            report("a.test", &[(10, "mx1.a.test"), (20, "mx2.a.test")]),
            report("b.test", &[(0, "b.test")]),
            report("c\"quoted\".test", &[]),
        ];
        let direct = encode_with_descriptors(reports.clone());
        let encoded: Vec<Arc<EncodedReport>> =
            reports.iter().map(|r| Arc::new(encode_report(r))).collect();
        let mut assembled = String::new();
        assemble(&mut assembled, &encoded);
        assert_eq!(assembled, direct);
        assert!(assembled
            .contains("mailtls_mx_info{target=\"a.test\",mx=\"mx2.a.test\",preference=\"20\"} 1"));
        // A vanished target's series vanish with its chunk.
        let mut without_a = String::new();
        assemble(&mut without_a, &encoded[1..]);
        assert!(!without_a.contains("a.test\""));
        assert!(without_a.contains("# TYPE mailtls_mx_info gauge"));
    }

    #[test]
    fn probe_responses_say_they_come_from_this_probe() {
        let (body, ctype) = render_report(report("a.test", &[]), true);
        assert!(ctype.starts_with("application/openmetrics-text"));
        assert!(body.ends_with("# EOF\n"));
        assert!(body.contains("(from this probe)") && !body.contains(FROM_LAST));
    }

    #[test]
    fn accept_header_negotiates_openmetrics() {
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
        )));
        assert!(!wants_openmetrics(Some("text/plain")));
        assert!(!wants_openmetrics(None));
    }
}
