//! The exposition: each target's series encoded once when its probe completes
//! ([`encode_report`], one text chunk per family, kept deflated), and scrapes made from the
//! latest reports family by family: streamed from kept gzip segments (`scrape`,
//! [`Exposition::scrape`]) or in one buffer ([`Exposition::render`], tests and benchmarks);
//! content negotiation between OpenMetrics and the Prometheus text format 0.0.4.
//!
//! Not here: which families exist (`families`), the exporter's own metrics (`own`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

use super::families::encode_reports;
use super::scrape::{self, GzipCache, GzipStats, Scrape};
use super::FROM_LAST;
use crate::model::report::TargetReport;

pub(crate) const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub(crate) const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One target's series, encoded when its probe completed: the sample lines of each metric
/// family, in the order of [`encode_reports`], kept deflated (`pack`): a full DANE target's
/// 7–12 KiB of text packs into 1.2–1.6 KiB, and 100,000 targets keep theirs between probes while
/// a scrape reads them only when their block of the gzip cache changed (`scrape`).
/// The one family that several reports share (`authoritative::SERIAL_FAMILY`, a line or
/// two) stays plain: every scrape reads it from every report.
#[derive(Debug, Clone, Default)]
pub struct EncodedReport {
    /// The sample lines of every family but the shared one, back to back, deflated.
    packed: Box<[u8]>,
    /// Where each family's lines end in the inflated text (the shared family's range is
    /// empty there).
    ends: Box<[u32]>,
    /// The shared family's lines.
    shared: Box<str>,
    /// Taken from a process-wide counter when encoded: unique, increasing. Scrapes serve
    /// reports in this order and the gzip segment cache recognises unchanged blocks by it.
    seq: u64,
}

/// The next `EncodedReport::seq`.
static NEXT_SEQ: AtomicU64 = AtomicU64::new(0);

/// Longest inflated text of one report: far above any real one (its parts are bounded), so a
/// corrupted buffer cannot make an inflate run away.
const MAX_REPORT_TEXT: usize = 64 << 20;

impl EncodedReport {
    /// From one report's encoding with descriptors: the sample lines of each family (a
    /// family starts at its `# HELP` line), in one buffer, without copying them per family.
    fn new(encoded: &str) -> Self {
        let shared_index = shared_index();
        let mut text = String::with_capacity(encoded.len());
        let mut ends = Vec::with_capacity(headers().len());
        let mut shared = String::new();
        let mut family: Option<usize> = None;
        for line in encoded.split_inclusive('\n') {
            if line.starts_with("# HELP ") {
                if family.is_some() {
                    ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
                }
                family = Some(family.map_or(0, |f| f + 1));
            } else if line.starts_with('#') {
                // TYPE, UNIT: part of the header (`headers`).
            } else if let Some(f) = family {
                if Some(f) == shared_index {
                    shared.push_str(line);
                } else {
                    text.push_str(line);
                }
            }
        }
        if family.is_some() {
            ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
        }
        Self {
            packed: crate::pack::deflate(text.as_bytes()),
            ends: ends.into_boxed_slice(),
            shared: shared.into_boxed_str(),
            seq: NEXT_SEQ.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The order in which reports were encoded (and are served).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The sample lines of every family, inflated (empty if the buffer does not inflate,
    /// which only a bug could cause).
    pub(crate) fn unpack(&self) -> Unpacked<'_> {
        let len = self.ends.last().copied().unwrap_or(0) as usize;
        let text = match len {
            0 => String::new(),
            _ => crate::pack::inflate(&self.packed, len, MAX_REPORT_TEXT)
                .and_then(|b| String::from_utf8(b).ok())
                .filter(|t| t.len() == len)
                .unwrap_or_default(),
        };
        Unpacked {
            text,
            ends: &self.ends,
        }
    }

    /// The lines of the shared family (`authoritative::SERIAL_FAMILY`).
    pub(crate) fn shared(&self) -> &str {
        &self.shared
    }

    /// Bytes of text the report encodes to.
    pub fn len(&self) -> usize {
        self.ends.last().copied().unwrap_or(0) as usize + self.shared.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held (the deflated text, the family ends, the shared lines).
    pub fn held(&self) -> usize {
        self.packed.len() + self.ends.len() * 4 + self.shared.len()
    }
}

/// One report's text inflated, for a scrape that reads it family by family.
pub(crate) struct Unpacked<'a> {
    text: String,
    ends: &'a [u32],
}

impl Unpacked<'_> {
    /// The sample lines of family `i` ("" for the shared family: see `EncodedReport::shared`).
    pub(crate) fn chunk(&self, i: usize) -> &str {
        let start = match i {
            0 => 0,
            _ => self.ends.get(i - 1).copied().unwrap_or(0) as usize,
        };
        let end = self.ends.get(i).copied().unwrap_or(0) as usize;
        self.text.get(start..end).unwrap_or("")
    }
}

/// The index of the one report family without a `target` label that several reports share
/// (`authoritative::SERIAL_FAMILY`: one series per zone and server address).
pub(crate) fn shared_family(headers: &[String]) -> Option<usize> {
    let prefix = format!("# HELP {} ", super::authoritative::SERIAL_FAMILY);
    headers.iter().position(|h| h.starts_with(&prefix))
}

/// [`shared_family`] of the report families.
fn shared_index() -> Option<usize> {
    static SHARED: OnceLock<Option<usize>> = OnceLock::new();
    *SHARED.get_or_init(|| shared_family(headers()))
}

/// Where the exposition finds the latest encoded reports.
pub trait ReportSource: Send + Sync + std::fmt::Debug + 'static {
    /// The latest encoded report of every target, in a stable order.
    fn encoded(&self) -> Vec<Arc<EncodedReport>>;
}

/// Encodes every report metric of one report as a family-by-family chunk list.
pub fn encode_report(report: &Arc<TargetReport>) -> EncodedReport {
    EncodedReport::new(&encode_with_descriptors(vec![report.clone()]))
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
    /// Deflate segments of the report families, kept between gzip scrapes (`scrape`).
    gzip: Mutex<GzipCache>,
}

impl Exposition {
    pub fn new(own: Registry, source: Arc<dyn ReportSource>) -> Self {
        Self {
            own,
            source,
            last_len: AtomicUsize::new(64 * 1024),
            gzip: Mutex::new(GzipCache::default()),
        }
    }

    /// The exporter's own metrics in the negotiated format, the latest reports in serving
    /// order, the tail and the content type.
    fn parts(
        &self,
        openmetrics: bool,
    ) -> (
        String,
        Vec<Arc<EncodedReport>>,
        Option<&'static str>,
        &'static str,
    ) {
        let mut reports = self.source.encoded();
        scrape::serving_order(&mut reports);
        let mut own = String::with_capacity(4096);
        if prometheus_client::encoding::text::encode_registry(&mut own, &self.own).is_err() {
            own.clear();
        }
        if openmetrics {
            (own, reports, Some("# EOF\n"), OPENMETRICS_CONTENT_TYPE)
        } else {
            (openmetrics_to_text(&own), reports, None, TEXT_CONTENT_TYPE)
        }
    }

    /// The body in the negotiated format, in one buffer, and its content type.
    pub fn render(&self, openmetrics: bool) -> (String, &'static str) {
        let (own, reports, tail, ctype) = self.parts(openmetrics);
        let mut out = String::with_capacity(self.last_len.load(Ordering::Relaxed) + 4096);
        out.push_str(&own);
        assemble(&mut out, &reports);
        out.extend(tail);
        self.last_len.store(out.len(), Ordering::Relaxed);
        (out, ctype)
    }

    /// The body as chunks made while it is sent: plain, or gzip from the segment cache
    /// (compressing the blocks that changed since the last gzip scrape: run it where
    /// blocking is allowed).
    pub fn scrape(&self, openmetrics: bool, gzip: bool) -> Scrape {
        self.scrape_with_stats(openmetrics, gzip).0
    }

    /// [`Self::scrape`], and for gzip how many blocks were reused or compressed.
    pub fn scrape_with_stats(&self, openmetrics: bool, gzip: bool) -> (Scrape, GzipStats) {
        let (own, reports, tail, ctype) = self.parts(openmetrics);
        // The cache holds only segments: a panic while it was held leaves whole entries
        // behind, which are checked against the reports before reuse.
        let mut cache = self.gzip.lock().unwrap_or_else(PoisonError::into_inner);
        if gzip {
            cache.scrape(ctype, &own, headers(), &reports, tail)
        } else {
            cache.plain(ctype, own, headers(), &reports, tail)
        }
    }

    /// Compressed bytes kept for gzip scrapes.
    pub fn gzip_cache_bytes(&self) -> usize {
        self.gzip
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bytes()
    }
}

/// Appends every report family: its header once, then each report's chunk. A family
/// without a `target` label that several reports share (`authoritative::SERIAL_FAMILY`)
/// keeps one sample per series.
fn assemble(out: &mut String, reports: &[Arc<EncodedReport>]) {
    let shared = shared_index();
    let texts: Vec<Unpacked<'_>> = reports.iter().map(|r| r.unpack()).collect();
    for (i, header) in headers().iter().enumerate() {
        out.push_str(header);
        if Some(i) == shared {
            let mut seen = std::collections::HashSet::new();
            for r in reports {
                super::authoritative::push_unseen(out, r.shared(), &mut seen);
            }
            continue;
        }
        for t in &texts {
            out.push_str(t.chunk(i));
        }
    }
}

#[cfg(test)]
pub(crate) fn assemble_for_test(reports: &[Arc<EncodedReport>]) -> String {
    let mut out = String::new();
    assemble(&mut out, reports);
    out
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
            authoritative: Vec::new(),
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

    /// The latest encoded reports, replaced by a test as the scheduler would.
    #[derive(Debug, Default)]
    struct Latest(std::sync::Mutex<Vec<Arc<EncodedReport>>>);

    impl ReportSource for Latest {
        fn encoded(&self) -> Vec<Arc<EncodedReport>> {
            self.0.lock().unwrap().clone()
        }
    }

    fn gunzip(z: &[u8]) -> String {
        use std::io::Read;
        let mut out = String::new();
        flate2::read::GzDecoder::new(z)
            .read_to_string(&mut out)
            .unwrap();
        out
    }

    /// Both formats: the streamed plain body (inflated from the segment cache) and the gzip
    /// body (the segments as they are) equal what `render` builds in one buffer; returns the
    /// stats of the first scrape (every later one, in either format, reuses every block).
    fn assert_scrapes_agree(e: &Exposition) -> GzipStats {
        let mut first = None;
        for om in [true, false] {
            let (whole, ctype) = e.render(om);
            let (plain, stats) = e.scrape_with_stats(om, false);
            assert!(!plain.gzip);
            assert_eq!(plain.content_type, ctype);
            assert_eq!(String::from_utf8(plain.collect()).unwrap(), whole);
            // The plain scrape inflated the segments it brought up to date: gzip reuses all.
            let (z, again) = e.scrape_with_stats(om, true);
            assert!(z.gzip);
            assert_eq!(gunzip(&z.collect()), whole);
            assert_eq!(again.compressed, 0, "{again:?}");
            assert_eq!(again.blocks, stats.blocks);
            if first.is_some() {
                assert_eq!(stats.compressed, 0, "{stats:?}");
            }
            first.get_or_insert(stats);
        }
        first.unwrap_or_default()
    }

    #[test]
    fn gzip_scrapes_reuse_unchanged_blocks_and_always_inflate_to_the_plain_body() {
        let latest = Arc::new(Latest::default());
        let source: Arc<dyn ReportSource> = latest.clone();
        let e = Exposition::new(Registry::default(), source);
        // No reports: headers only.
        assert_scrapes_agree(&e);
        let encode = |i: usize| {
            let name = format!("t{i}.test");
            let mx = format!("mx.{name}");
            Arc::new(encode_report(&report(&name, &[(10, &mx)])))
        };
        let n = 3 * scrape::BLOCK_TARGETS as usize + 17;
        *latest.0.lock().unwrap() = (0..n).map(encode).collect();
        let first = assert_scrapes_agree(&e);
        assert!(first.blocks >= 4, "{first:?}");
        // Nothing changed since the last gzip scrape: every block is reused.
        let again = assert_scrapes_agree(&e);
        assert_eq!(again.compressed, 0, "{again:?}");
        assert_eq!(again.blocks, first.blocks);
        // One target probed again: its old block and the newest block are compressed; its
        // series are there once, not twice.
        let count = |body: &str| body.matches("target=\"t5.test\"").count();
        let before = count(&e.render(true).0);
        latest.0.lock().unwrap()[5] = encode(5);
        let one = assert_scrapes_agree(&e);
        assert!((1..=2).contains(&one.compressed), "{one:?}");
        let body = gunzip(&e.scrape(true, true).collect());
        assert!(
            before > 0 && count(&body) == before,
            "{before} {}",
            count(&body)
        );
        // A target removed (reload): its block changes, its series go.
        latest.0.lock().unwrap().remove(7);
        let removed = assert_scrapes_agree(&e);
        assert_eq!(removed.compressed, 1, "{removed:?}");
        assert!(!gunzip(&e.scrape(false, true).collect()).contains("\"t7.test\""));
        assert!(e.gzip_cache_bytes() > 0);
    }

    #[test]
    fn scrapes_serve_reports_in_the_order_they_were_encoded() {
        let a = Arc::new(encode_report(&report("a.test", &[])));
        let b = Arc::new(encode_report(&report("b.test", &[])));
        let latest = Arc::new(Latest::default());
        *latest.0.lock().unwrap() = vec![b, a];
        let e = Exposition::new(Registry::default(), latest.clone());
        let (body, _) = e.render(true);
        let (pa, pb) = (body.find("\"a.test\""), body.find("\"b.test\""));
        assert!(pa.is_some() && pa < pb, "{body}");
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
