//! The status page at `/`: a summary line, a filter form, then one block per target (worst
//! first, paged), one row per MX address; and the `check`-style text view's framing.
//!
//! Owns: HTML and its escaping (every string from DNS, certificates or SMTP goes through
//! [`escape`]), the filter (`?q=` words, `?state=`), paging (`?page=`), links under the
//! external URL's path. Plain server-side HTML: no script, one stylesheet served from the
//! binary (`STYLESHEET`), so it works offline and under the strict
//! `CONTENT_SECURITY_POLICY`.
//! Not here: the summaries (`status::summary`), routing and headers (`http`).

use std::fmt::Write as _;
use std::sync::Arc;

use super::summary::{dane_class, RecordState, Row, Starttls, State, Summary};
use crate::model::dns::Dnssec;

/// Targets per page: 10,000 targets render as 200 pages of this many blocks.
pub(crate) const PAGE_SIZE: usize = 50;
/// The embedded stylesheet, served at `<prefix>/static/status.css`.
pub(crate) const STYLESHEET: &str = include_str!("status.css");
/// Only our own stylesheet; no script, no frames, forms only to ourselves.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
/// Longest filter text taken from `?q=`.
const MAX_QUERY_CHARS: usize = 200;
/// Leaf certificates or RRSIGs expiring within this many days are shown as a warning.
const WARN_DAYS: f64 = 14.0;

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved characters stay).
pub(crate) fn url_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                o.push(b as char)
            }
            _ => {
                let _ = write!(o, "%{b:02X}");
            }
        }
    }
    o
}

/// Which targets the page lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum StateFilter {
    #[default]
    All,
    Failing,
    Ok,
    Never,
}

impl StateFilter {
    const ALL: [(Self, &'static str, &'static str); 4] = [
        (Self::All, "all", "all states"),
        (Self::Failing, "failing", "failing"),
        (Self::Ok, "ok", "OK"),
        (Self::Never, "never", "not probed yet"),
    ];
    fn keeps(self, s: State) -> bool {
        match self {
            Self::All => true,
            Self::Failing => s.failing(),
            Self::Never => s == State::NeverProbed,
            Self::Ok => !s.failing() && s != State::NeverProbed,
        }
    }
    fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(f, _, _)| *f == self)
            .map_or("all", |(_, k, _)| k)
    }
}

/// The page's query: `?q=words&state=failing&page=2`.
#[derive(Debug, Clone, Default)]
pub struct PageQuery {
    pub(crate) q: String,
    pub(crate) state: StateFilter,
    /// 1-based.
    pub(crate) page: usize,
}

impl PageQuery {
    /// From decoded query parameters; unknown or bad values fall back to the defaults.
    pub fn from_params(params: &[(String, String)]) -> Self {
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        Self {
            q: get("q")
                .unwrap_or("")
                .trim()
                .chars()
                .take(MAX_QUERY_CHARS)
                .collect(),
            state: get("state")
                .and_then(|s| StateFilter::ALL.iter().find(|(_, k, _)| *k == s))
                .map(|(f, _, _)| *f)
                .unwrap_or_default(),
            page: get("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1),
        }
    }

    fn terms(&self) -> Vec<String> {
        self.q.split_whitespace().map(str::to_lowercase).collect()
    }

    /// `?q=..&state=..&page=N`, for the paging links.
    fn href(&self, base: &str, page: usize) -> String {
        let mut h = format!("{base}/?");
        if !self.q.is_empty() {
            let _ = write!(h, "q={}&", url_escape(&self.q));
        }
        if self.state != StateFilter::All {
            let _ = write!(h, "state={}&", self.state.as_str());
        }
        let _ = write!(h, "page={page}");
        h
    }
}

/// One configured target and its last summary, if it was probed.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub target: &'a str,
    pub summary: Option<Arc<Summary>>,
}

impl Entry<'_> {
    fn state(&self) -> State {
        self.summary
            .as_ref()
            .map_or(State::NeverProbed, |s| s.state)
    }
}

/// Unix seconds, as `2026-11-01 12:03:04Z`.
fn utc(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        })
        .unwrap_or_else(|_| ts.to_string())
}

/// `42 s ago`, `5 min ago`, `3 h ago`, `2 d ago`.
fn ago(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        7200..=172_799 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// A cell for an expiry time: days left, coloured, the date in the title.
fn expiry_cell(o: &mut String, ts: Option<i64>, now: i64) {
    let Some(ts) = ts else {
        o.push_str("<td class=\"dim\">–</td>");
        return;
    };
    let days = (ts - now) as f64 / 86_400.0;
    let (class, text) = if days < 0.0 {
        ("bad", format!("expired {:.0} d ago", -days))
    } else if days < WARN_DAYS {
        ("warn", format!("{days:.1} d"))
    } else {
        ("ok", format!("{days:.0} d"))
    };
    let _ = write!(
        o,
        "<td><span class=\"val {class}\" title=\"{}\">{text}</span></td>",
        utc(ts)
    );
}

fn dnssec_word(d: Option<Dnssec>) -> &'static str {
    d.map_or("–", Dnssec::as_str)
}

fn row(o: &mut String, r: &Row, now: i64) {
    o.push_str("<tr>");
    host_cell(o, r);
    dane_cell(o, r);
    starttls_cells(o, r);
    pkix_cell(o, r);
    expiry_cell(o, r.leaf_not_after, now);
    expiry_cell(o, r.rrsig_expiry, now);
    tlsa_cell(o, r);
    o.push_str("</tr>\n");
    why_row(o, r);
}

/// MX / address, with the DNSSEC states and the leaf's subject beneath.
fn host_cell(o: &mut String, r: &Row) {
    let addr = r
        .address
        .map_or_else(|| "(no address)".to_string(), |a| a.to_string());
    let _ = write!(
        o,
        "<td class=\"host\"><span class=\"mx\">{}</span> <code>{}</code><div class=\"sub\">addresses {}, TLSA {}</div>",
        escape(&r.mx),
        escape(&addr),
        dnssec_word(r.address_dnssec),
        dnssec_word(r.tlsa_dnssec)
    );
    if let Some(s) = &r.leaf_subject {
        let _ = write!(o, "<div class=\"sub\">leaf {}</div>", escape(s));
    }
    o.push_str("</td>");
}

/// The DANE verdict badge, or n/a.
fn dane_cell(o: &mut String, r: &Row) {
    match r.dane {
        Some(d) => {
            let _ = write!(
                o,
                "<td><span class=\"badge {}\">{}</span></td>",
                dane_class(d),
                d.as_str()
            );
        }
        None => o.push_str("<td class=\"dim\">n/a</td>"),
    }
}

/// The STARTTLS and TLS version cells.
fn starttls_cells(o: &mut String, r: &Row) {
    match &r.starttls {
        Starttls::Done { version } => {
            let _ = write!(
                o,
                "<td><span class=\"val ok\">yes</span></td><td>{}</td>",
                escape(version)
            );
        }
        Starttls::NotOffered => o.push_str(
            "<td><span class=\"val bad\">not offered</span></td><td class=\"dim\">–</td>",
        ),
        Starttls::Failed { reason, text } => {
            let _ = write!(
                o,
                "<td><span class=\"val bad\" title=\"{}\">{}</span></td><td class=\"dim\">–</td>",
                escape(text),
                escape(reason)
            );
        }
        Starttls::NotTried => o.push_str("<td class=\"dim\">–</td><td class=\"dim\">–</td>"),
    }
}

/// The PKIX validation cell.
fn pkix_cell(o: &mut String, r: &Row) {
    match &r.pkix {
        Some(Ok(())) => o.push_str("<td><span class=\"val ok\">valid</span></td>"),
        Some(Err(e)) => {
            let _ = write!(
                o,
                "<td><span class=\"val warn\" title=\"{}\">invalid</span></td>",
                escape(e)
            );
        }
        None => o.push_str("<td class=\"dim\">–</td>"),
    }
}

/// The TLSA records cell: one list item per record with its state.
fn tlsa_cell(o: &mut String, r: &Row) {
    if r.records.is_empty() {
        o.push_str("<td class=\"dim\">none</td>");
        return;
    }
    o.push_str("<td><ul class=\"tlsa\">");
    for rec in r.records.iter() {
        let (class, word) = match rec.state {
            RecordState::Authenticates => ("ok", "matches, authenticates"),
            RecordState::MatchesOnly => ("warn", "matches, does not authenticate"),
            RecordState::NoMatch => ("bad", "no match"),
            RecordState::Unusable => ("warn", "unusable"),
            RecordState::NotChecked => ("dim", "not checked: no certificate"),
        };
        let _ = write!(
            o,
            "<li title=\"{}\"><code>{}</code> <span class=\"val {class}\">{word}</span></li>",
            escape(rec.explain.as_deref().unwrap_or(word)),
            escape(&rec.short)
        );
    }
    o.push_str("</ul></td>");
}

/// The reason row, for every verdict but verified, and the SMTP failure text.
fn why_row(o: &mut String, r: &Row) {
    let mut why = String::new();
    if r.dane != Some(crate::model::report::DaneStatus::Verified) && !r.why.is_empty() {
        why.push_str(&escape(&r.why));
    }
    if let Starttls::Failed { text, .. } = &r.starttls {
        if !why.is_empty() {
            why.push_str("<br>");
        }
        let _ = write!(why, "SMTP/TLS: {}", escape(text));
    }
    if !why.is_empty() {
        let class = r.dane.map_or("info", dane_class);
        let _ = writeln!(
            o,
            "<tr class=\"why {class}\"><td colspan=\"8\">{why}</td></tr>"
        );
    }
}

const HEADER_ROW: &str = "<thead><tr><th>MX host / address</th><th>DANE</th><th>STARTTLS</th><th>TLS</th><th>PKIX</th><th>leaf expires</th><th>RRSIG expires</th><th>TLSA records</th></tr></thead>";

fn block(o: &mut String, e: &Entry<'_>, base: &str, now: i64) {
    let state = e.state();
    let q = url_escape(e.target);
    let open = if state.failing() { " open" } else { "" };
    let _ = write!(
        o,
        "<section class=\"target {}\"><details{open}><summary><span class=\"badge {}\">{}</span> <span class=\"name\">{}</span>",
        state.class(),
        state.class(),
        state.label(),
        escape(e.target)
    );
    match &e.summary {
        Some(s) => {
            let ts = s.timestamp as i64;
            let _ = write!(
                o,
                " <span class=\"meta\">probed <time datetime=\"{}\">{}</time> ({}), took {:.2} s</span>",
                utc(ts).replace(' ', "T"),
                utc(ts),
                ago(now - ts),
                s.duration_seconds
            );
        }
        None => o.push_str(" <span class=\"meta\">waiting for the first probe</span>"),
    }
    let _ = writeln!(
        o,
        " <span class=\"links\"><a href=\"{base}/status/text?target={q}\">text</a> <a href=\"{base}/probe?target={q}&amp;debug=true\">debug probe</a></span></summary>"
    );
    if let Some(s) = &e.summary {
        let mut facts = Vec::new();
        if let Some(d) = s.mx_dnssec {
            facts.push(format!("MX RRset {}", d.as_str()));
        }
        if s.implicit_mx {
            facts.push("implicit MX (no MX records)".into());
        }
        if s.null_mx {
            facts.push("null MX: accepts no mail".into());
        }
        if !facts.is_empty() {
            let _ = writeln!(o, "<p class=\"facts\">{}</p>", facts.join(" · "));
        }
        if let Some(err) = &s.error {
            let _ = writeln!(o, "<p class=\"error\">{}</p>", escape(err));
        }
        if !s.rows.is_empty() {
            let _ = writeln!(o, "<table>{HEADER_ROW}<tbody>");
            for r in s.rows.iter() {
                row(o, r, now);
            }
            o.push_str("</tbody></table>\n");
        }
    }
    o.push_str("</details></section>\n");
}

/// Renders the page. `base`: the external URL's path without trailing slash ("" at the
/// root); `now`: Unix seconds.
pub fn render_page(entries: &[Entry<'_>], query: &PageQuery, base: &str, now: i64) -> String {
    let (failing, ok, never) = count_states(entries);
    let shown = shown_entries(entries, query);
    let pages = shown.len().div_ceil(PAGE_SIZE).max(1);
    let page = query.page.clamp(1, pages);
    let from = (page - 1) * PAGE_SIZE;
    let visible = shown.iter().skip(from).take(PAGE_SIZE);

    let mut o = String::with_capacity(64 * 1024);
    let _ = write!(
        o,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>mailtls_exporter status</title><link rel=\"stylesheet\" href=\"{base}/static/status.css\"></head>\n<body>\n<header><h1>mailtls_exporter</h1><nav><a href=\"{base}/\">Status</a> <a href=\"{base}/metrics\">Metrics</a> <a href=\"{base}/-/healthy\">Health</a></nav></header>\n<main>\n"
    );
    let _ = writeln!(
        o,
        "<p class=\"summary\"><span class=\"badge bad\">{failing} failing</span> <span class=\"badge ok\">{ok} OK</span> <span class=\"badge never\">{never} not probed yet</span> <span class=\"of\">of {} targets</span></p>",
        entries.len()
    );
    filter_form(&mut o, query, base);
    let _ = write!(
        o,
        "<p class=\"count\">{} of {} targets match, worst first",
        shown.len(),
        entries.len()
    );
    if pages > 1 {
        let _ = write!(o, "; page {page} of {pages}");
    }
    o.push_str("</p>\n");
    for e in visible {
        block(&mut o, e, base, now);
    }
    if pages > 1 {
        page_links(&mut o, query, base, page, pages);
    }
    let _ = write!(
        o,
        "</main>\n<footer>mailtls_exporter {} · rendered {}</footer>\n</body></html>\n",
        env!("CARGO_PKG_VERSION"),
        utc(now)
    );
    o
}

/// How many targets are failing, OK and not probed yet.
fn count_states(entries: &[Entry<'_>]) -> (usize, usize, usize) {
    let (mut failing, mut ok, mut never) = (0usize, 0usize, 0usize);
    for e in entries {
        match e.state() {
            State::NeverProbed => never += 1,
            s if s.failing() => failing += 1,
            _ => ok += 1,
        }
    }
    (failing, ok, never)
}

/// The entries the query keeps, worst state first, then by target.
fn shown_entries<'a, 'e>(entries: &'a [Entry<'e>], query: &PageQuery) -> Vec<&'a Entry<'e>> {
    let terms = query.terms();
    let mut shown: Vec<&Entry<'_>> = entries
        .iter()
        .filter(|e| query.state.keeps(e.state()))
        .filter(|e| match &e.summary {
            _ if terms.is_empty() => true,
            Some(s) => s.matches(e.target, &terms),
            None => {
                let t = e.target.to_ascii_lowercase();
                terms.iter().all(|w| {
                    t.contains(w.as_str()) || State::NeverProbed.label().contains(w.as_str())
                })
            }
        })
        .collect();
    shown.sort_by(|a, b| {
        a.state()
            .cmp(&b.state())
            .then_with(|| a.target.cmp(b.target))
    });
    shown
}

/// The filter form: search box, state selector, and a clear link when a filter is set.
fn filter_form(o: &mut String, query: &PageQuery, base: &str) {
    let _ = write!(
        o,
        "<form class=\"filter\" method=\"get\" action=\"{base}/\"><label for=\"q\">Filter</label> <input type=\"search\" id=\"q\" name=\"q\" value=\"{}\" placeholder=\"target, MX host, address or verdict\"> <select name=\"state\" aria-label=\"state\">",
        escape(&query.q)
    );
    for (f, key, label) in StateFilter::ALL {
        let sel = if f == query.state { " selected" } else { "" };
        let _ = write!(o, "<option value=\"{key}\"{sel}>{label}</option>");
    }
    o.push_str("</select> <button type=\"submit\">Apply</button>");
    if !query.q.is_empty() || query.state != StateFilter::All {
        let _ = write!(o, " <a href=\"{base}/\">clear</a>");
    }
    o.push_str("</form>\n");
}

/// The previous / next page navigation.
fn page_links(o: &mut String, query: &PageQuery, base: &str, page: usize, pages: usize) {
    o.push_str("<nav class=\"pages\">");
    if page > 1 {
        let _ = write!(
            o,
            "<a href=\"{}\">← previous</a> ",
            escape(&query.href(base, page - 1))
        );
    }
    let _ = write!(o, "page {page} of {pages}");
    if page < pages {
        let _ = write!(
            o,
            " <a href=\"{}\">next →</a>",
            escape(&query.href(base, page + 1))
        );
    }
    o.push_str("</nav>\n");
}

/// The `check`-style text view of a target's last probe: a header line with its time, then
/// the text kept from that probe.
pub(crate) fn render_text_view(target: &str, timestamp: f64, text: &str, now: i64) -> String {
    let ts = timestamp as i64;
    format!(
        "{target}: last probe {} ({})\n\n{text}",
        utc(ts),
        ago(now - ts)
    )
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::sync::Arc;

    use super::*;
    use crate::model::cert::CertFacts;
    use crate::model::report::{AddressReport, DaneStatus, HostReport, TargetReport};
    use crate::model::smtp::{ProbeError, Reply, SmtpReport, TlsFacts};
    use crate::model::tlsa::{RecordCheck, RecordDetail, Tlsa};

    const NOW: i64 = 1_790_000_000;

    fn report(target: &str, dane: DaneStatus, subject: &str, banner: &str) -> TargetReport {
        let addr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 25));
        let mut smtp = SmtpReport::new(SocketAddr::new(addr, 25));
        smtp.connected = true;
        smtp.greeting = Some(Reply {
            code: 220,
            lines: vec![banner.into()],
        });
        smtp.ehlo = Some(Reply {
            code: 250,
            lines: vec!["mx".into()],
        });
        smtp.starttls_advertised = true;
        let failed = dane == DaneStatus::Failed;
        if failed {
            smtp.error = Some(ProbeError::GreetingRejected {
                code: 554,
                text: banner.into(),
            });
        } else {
            smtp.tls = Some(TlsFacts {
                version: "TLSv1.3".into(),
                cipher: "TLS13_AES_128_GCM_SHA256".into(),
                chain: Vec::new(),
                chain_len: 1,
                handshake_seconds: 0.001,
            });
        }
        let record = Tlsa {
            usage: 3,
            selector: 1,
            matching: 1,
            data: vec![0x5f; 32],
        };
        let check = RecordCheck {
            record: record.clone(),
            matched: !failed,
            authenticates: !failed,
            detail: if failed {
                RecordDetail::LeafMismatch {
                    leaf_digest: "ab".repeat(32),
                }
            } else {
                RecordDetail::Matched { depth: 0 }
            },
        };
        let mx = format!("mx1.{target}");
        let mut r = TargetReport {
            target: target.into(),
            kind: "domain",
            timestamp: (NOW - 30) as f64,
            duration_seconds: 0.02,
            mx_dnssec: Some(crate::model::dns::Dnssec::Secure),
            mx: vec![(10, mx.clone())],
            implicit_mx: false,
            null_mx: false,
            hosts: vec![HostReport {
                mx: mx.clone(),
                preference: Some(10),
                port: 25,
                address_dnssec: Some(crate::model::dns::Dnssec::Secure),
                tlsa_base: Some(mx),
                tlsa_records: vec![record],
                tlsa_dnssec: Some(crate::model::dns::Dnssec::Secure),
                tlsa_timing: Default::default(),
                dane_applies: true,
                addresses: vec![AddressReport {
                    address: Some(addr),
                    smtp: Some(Arc::new(smtp)),
                    certs: vec![CertFacts {
                        depth: 0,
                        subject: subject.into(),
                        issuer: "CN=CA".into(),
                        serial: "01".into(),
                        not_before: NOW - 86_400,
                        not_after: NOW + 10 * 86_400,
                        sha256: String::new(),
                        spki_sha256: String::new(),
                        dns_names: Vec::new(),
                        self_signed: false,
                    }],
                    cert_errors: Vec::new(),
                    pkix: Some(Ok(())),
                    tlsa: vec![check],
                    dane: Some(dane),
                    why: if failed {
                        "no usable TLSA record matches <the leaf>".into()
                    } else {
                        "3 1 1 5f5f… matched".into()
                    },
                }],
                notes: Vec::new(),
            }],
            lookups: Vec::new(),
            authoritative: Vec::new(),
            error: None,
            success: false,
            mta_sts: None,
            tlsrpt: None,
            staged: Vec::new(),
        };
        r.success = r.compute_success();
        r
    }

    fn summary(r: &TargetReport) -> Option<Arc<Summary>> {
        Some(Arc::new(Summary::of(r)))
    }

    #[test]
    fn hostile_certificate_subject_and_banner_are_escaped() {
        let r = report(
            "evil.example",
            DaneStatus::Failed,
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(2)> ESMTP",
        );
        let s = summary(&r);
        let entries = [Entry {
            target: "evil.example",
            summary: s,
        }];
        let q = PageQuery::from_params(&[("q".into(), "\"><script>alert(3)</script>".into())]);
        let html = render_page(&entries, &q, "", NOW);
        assert!(
            html.contains("value=\"&quot;&gt;&lt;script&gt;alert(3)"),
            "{html}"
        );
        assert!(!html.contains("<script"), "{html}");
        let html = render_page(&entries, &PageQuery::default(), "", NOW);
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(
            html.contains("&lt;img src=x onerror=alert(2)&gt;"),
            "{html}"
        );
        // The reason sentence of a failed address is shown, escaped too.
        assert!(html.contains("no usable TLSA record matches &lt;the leaf&gt;"));
    }

    #[test]
    fn failing_targets_come_first_and_the_summary_line_counts_states() {
        let good = report("a-good.example", DaneStatus::Verified, "CN=a", "ok");
        let bad = report("z-bad.example", DaneStatus::Failed, "CN=z", "no");
        let entries = [
            Entry {
                target: "a-good.example",
                summary: summary(&good),
            },
            Entry {
                target: "m-new.example",
                summary: None,
            },
            Entry {
                target: "z-bad.example",
                summary: summary(&bad),
            },
        ];
        let html = render_page(&entries, &PageQuery::default(), "/mailtls", NOW);
        let pos = |s: &str| html.find(s).unwrap_or_else(|| panic!("{s} missing"));
        assert!(pos("z-bad.example") < pos("m-new.example"));
        assert!(pos("m-new.example") < pos("a-good.example"));
        assert!(html.contains("1 failing"));
        assert!(html.contains("1 OK"));
        assert!(html.contains("1 not probed yet"));
        assert!(html.contains("href=\"/mailtls/probe?target=z-bad.example&amp;debug=true\""));
        assert!(html.contains("href=\"/mailtls/status/text?target=z-bad.example\""));
        assert!(html.contains("href=\"/mailtls/static/status.css\""));
        assert!(html.contains("matches, authenticates"));
        assert!(html.contains(">no match<"));
        assert!(html.contains("TLSv1.3"));
        // Verified addresses show no reason row; the leaf expires in 10 days: a warning.
        assert!(!html.contains("3 1 1 5f5f… matched"));
        assert!(html.contains("<span class=\"val warn\" title=\"2026-"));
    }

    #[test]
    fn filter_keeps_matching_targets_only() {
        let good = report("good.example", DaneStatus::Verified, "CN=a", "ok");
        let bad = report("bad.example", DaneStatus::Failed, "CN=z", "no");
        let entries = [
            Entry {
                target: "good.example",
                summary: summary(&good),
            },
            Entry {
                target: "bad.example",
                summary: summary(&bad),
            },
        ];
        let q = |k: &str, v: &str| PageQuery::from_params(&[(k.into(), v.into())]);
        let html = render_page(&entries, &q("q", "GOOD"), "", NOW);
        assert!(html.contains("good.example") && !html.contains("bad.example"));
        let html = render_page(&entries, &q("q", "failed"), "", NOW);
        assert!(!html.contains(">good.example<") && html.contains(">bad.example<"));
        let html = render_page(&entries, &q("state", "ok"), "", NOW);
        assert!(html.contains(">good.example<") && !html.contains(">bad.example<"));
        let html = render_page(&entries, &q("q", "mx1.bad"), "", NOW);
        assert!(!html.contains(">good.example<") && html.contains(">bad.example<"));
    }

    #[test]
    fn pages_hold_page_size_targets_with_links_that_keep_the_filter() {
        let names: Vec<String> = (0..PAGE_SIZE * 2 + 3)
            .map(|i| format!("t{i:04}.example"))
            .collect();
        let entries: Vec<Entry<'_>> = names
            .iter()
            .map(|n| Entry {
                target: n,
                summary: None,
            })
            .collect();
        let q =
            PageQuery::from_params(&[("q".into(), "example".into()), ("page".into(), "2".into())]);
        let html = render_page(&entries, &q, "", NOW);
        assert_eq!(html.matches("<section").count(), PAGE_SIZE);
        assert!(html.contains("page 2 of 3"));
        assert!(html.contains("href=\"/?q=example&amp;page=1\""));
        assert!(html.contains("href=\"/?q=example&amp;page=3\""));
        assert!(html.contains(&format!(">t{:04}.example<", PAGE_SIZE)));
        // Out of range: the last page.
        let q = PageQuery::from_params(&[("page".into(), "99".into())]);
        let html = render_page(&entries, &q, "", NOW);
        assert_eq!(html.matches("<section").count(), 3);
    }
}
