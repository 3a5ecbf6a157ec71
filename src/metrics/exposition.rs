//! The exposition: each target's series encoded once when its probe completes
//! ([`encode_report`], one text chunk per family), and a scrape that only concatenates the
//! chunks of the latest reports, family by family ([`Exposition::render`]); content
//! negotiation between OpenMetrics and the Prometheus text format 0.0.4.
//!
//! Not here: which families exist (`families`), the exporter's own metrics (`own`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

use super::families::encode_reports;
use super::FROM_LAST;
use crate::model::report::TargetReport;

pub(crate) const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub(crate) const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

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
    pub(crate) own: Registry,
    pub(crate) source: Arc<dyn ReportSource>,
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

/// Does an `Accept` header ask for OpenMetrics?
pub(crate) fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// OpenMetrics text → Prometheus text 0.0.4: drops `# EOF` and `# UNIT`, and names counter
/// families after their `_total` samples.
pub(crate) fn openmetrics_to_text(om: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::dns::Dnssec;
    use crate::model::report::{AddressReport, DaneStatus, HostReport};
    use crate::model::tlsa::{RecordCheck, RecordDetail, Tlsa, MAX_EXPORTED_TLSA_RECORDS};

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
            mta_sts: None,
            tlsrpt: None,
            staged: Vec::new(),
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

    /// One secure DANE host with one address that holds `checks`.
    fn report_with_records(checks: Vec<RecordCheck>) -> Arc<TargetReport> {
        let mut r = report("big.test", &[(10, "mx1.big.test")]);
        let r = Arc::make_mut(&mut r);
        r.hosts.push(HostReport {
            mx: "mx1.big.test".into(),
            preference: Some(10),
            port: 25,
            address_dnssec: Some(Dnssec::Secure),
            tlsa_base: Some("mx1.big.test".into()),
            tlsa_records: checks.iter().map(|c| c.record.clone()).collect(),
            tlsa_dnssec: Some(Dnssec::Secure),
            tlsa_timing: Default::default(),
            dane_applies: true,
            addresses: vec![AddressReport {
                address: Some("127.0.0.1".parse().expect("literal")),
                smtp: None,
                certs: Vec::new(),
                cert_errors: Vec::new(),
                pkix: None,
                tlsa: checks,
                dane: Some(DaneStatus::Verified),
                why: String::new(),
            }],
            notes: Vec::new(),
        });
        Arc::new(r.clone())
    }

    fn check(i: usize, data_len: usize, matched: bool, authenticates: bool) -> RecordCheck {
        let mut data = vec![0u8; data_len];
        data[..8].copy_from_slice(&(i as u64).to_be_bytes());
        RecordCheck {
            record: Tlsa {
                usage: 3,
                selector: 1,
                matching: 1,
                data,
            },
            matched,
            authenticates,
            detail: RecordDetail::LeafMismatch {
                leaf_digest: String::new(),
            },
        }
    }

    fn value(line: &str) -> f64 {
        line.rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    }

    fn series<'a>(body: &'a str, family: &str) -> Vec<&'a str> {
        let prefix = format!("{family}{{");
        body.lines().filter(|l| l.starts_with(&prefix)).collect()
    }

    // docs/metrics.md, "Bounded exposition": at most 32 TLSA records per RRset become
    // series; the authenticating and matching ones are never among those left out.
    #[test]
    fn five_hundred_tlsa_records_give_32_series_per_record_family() {
        let checks: Vec<RecordCheck> = (0..500)
            .map(|i| check(i, 32, i == 400 || i == 450, i == 450))
            .collect();
        let (body, _) = render_report(report_with_records(checks), true);
        for family in [
            "mailtls_tlsa_record_match",
            "mailtls_tlsa_record_authenticates",
        ] {
            let lines = series(&body, family);
            assert_eq!(lines.len(), MAX_EXPORTED_TLSA_RECORDS, "{family}");
            let ones = lines.iter().filter(|l| value(l) == 1.0).count();
            let want = if family.ends_with("match") { 2 } else { 1 };
            assert_eq!(ones, want, "{family}");
        }
        // The first 30 in RRset order fill the rest.
        let first = Tlsa {
            usage: 3,
            selector: 1,
            matching: 1,
            data: {
                let mut d = vec![0u8; 32];
                d[..8].copy_from_slice(&29u64.to_be_bytes());
                d
            },
        };
        assert!(body.contains(&format!("record=\"{first}\"")));
        assert!(body.len() < 32 * 1024, "{} bytes", body.len());
    }

    // Full `3 0 0` records are long: the record label is cut at 256 bytes, and records
    // whose cut labels collide give one series, not a duplicate.
    #[test]
    fn long_records_are_cut_and_never_duplicated() {
        let mut a = check(0, 2000, true, true);
        a.record.matching = 0;
        a.record.selector = 0;
        let mut b = a.clone();
        b.record.data[1999] = 1;
        b.authenticates = false;
        let (body, _) = render_report(report_with_records(vec![a, b]), true);
        let lines = series(&body, "mailtls_tlsa_record_authenticates");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(value(lines[0]), 1.0);
        assert!(lines[0].contains("…\""));
        let cut = lines[0]
            .split("record=\"")
            .nth(1)
            .and_then(|r| r.split('"').next());
        assert_eq!(cut.map(str::len), Some(256 + '…'.len_utf8()));
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
