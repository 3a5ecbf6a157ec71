//! Cost of one `/metrics` scrape with many targets: time to render and size of the body.
//!
//! Owns: 10,000 synthetic but realistic `TargetReport`s (domain targets, 2 MX hosts with one
//! address each, a 2-certificate chain per address with real `CertFacts` from `cert::facts`
//! on an rcgen chain, `3 1 1` + `2 1 1` TLSA records judged by `dane::evaluate`, MX + A +
//! AAAA + TLSA lookups per host) and timing `metrics::render` over the daemon's registry
//! (`ExporterMetrics::registry`), OpenMetrics and text format. Goal (docs/performance.md): ≤ 50 ms.
//! Then the gzip the daemon applies when Prometheus sends `Accept-Encoding: gzip`
//! (`transport::gzip`, flate2's fastest level): time and compressed size.
//! Also times the status page (`status::render_page`) over the same 10,000 targets: the
//! summaries are made once per report (as the scheduler does when a probe completes), then
//! the first page, a filter that scans every target, and the last page are rendered.
//! Not here: serving (`http`); probing.
//!
//! Run: `cargo bench --bench scrape`. Environment: `BENCH_TARGETS` [10000],
//! `BENCH_ITERS` [20], `BENCH_LEAVES` distinct leaf certificates [256].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, UnixTime};

use mailtls_exporter::cert;
use mailtls_exporter::dane;
use mailtls_exporter::metrics::{self, ExporterMetrics};
use mailtls_exporter::model::cert::CertFacts;
use mailtls_exporter::model::dns::{Answer, Data, Dnssec, Mx, Outcome};
use mailtls_exporter::model::report::{AddressReport, DaneStatus, HostReport, TargetReport};
use mailtls_exporter::model::smtp::{Reply, SmtpReport, TlsFacts, TlsMode};
use mailtls_exporter::model::tlsa::{Authentication, RecordCheck, Tlsa};
use mailtls_exporter::status::{self, PageQuery, Summary};
use mailtls_exporter::transport;

fn env_or(key: &str, default: usize) -> Result<usize> {
    match std::env::var(key) {
        Ok(v) => v.trim().parse().with_context(|| format!("{key}={v:?}")),
        Err(_) => Ok(default),
    }
}

/// One served chain and what the exporter derives from it.
struct Served {
    chain: Vec<CertificateDer<'static>>,
    facts: Vec<CertFacts>,
    tlsa: Vec<Tlsa>,
    checks: Vec<RecordCheck>,
    mx: String,
}

fn chains(n: usize) -> Result<Vec<Served>> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name = rcgen::DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::OrganizationName, "Bench Mail CA");
    ca.distinguished_name
        .push(DnType::CommonName, "Bench Mail Issuing CA R3");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let ca_der = ca.self_signed(&ca_key)?.der().clone();
    let issuer = Issuer::from_params(&ca, &ca_key);
    let ca_facts = cert::facts(1, &ca_der).map_err(|e| anyhow!("{e}"))?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mx = format!("mx1.d{i:05}.example.test");
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(vec![mx.clone(), format!("mx2.d{i:05}.example.test")])?;
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, mx.clone());
        let leaf = p.signed_by(&key, &issuer)?.der().clone();
        let leaf_facts = cert::facts(0, &leaf).map_err(|e| anyhow!("{e}"))?;
        let tlsa = vec![
            Tlsa {
                usage: 3,
                selector: 1,
                matching: 1,
                data: hex::decode(&leaf_facts.spki_sha256)?,
            },
            Tlsa {
                usage: 2,
                selector: 1,
                matching: 1,
                data: hex::decode(&ca_facts.spki_sha256)?,
            },
        ];
        let chain = vec![leaf, ca_der.clone()];
        let names = vec![mx.clone()];
        let eval = dane::evaluate(&dane::DaneInput {
            records: &tlsa,
            chain: &chain,
            names: &names,
            now: UnixTime::now(),
        });
        if !matches!(eval.authentication, Authentication::Verified { .. }) {
            return Err(anyhow!(
                "synthetic chain does not verify: {:?}",
                eval.authentication
            ));
        }
        out.push(Served {
            facts: vec![leaf_facts, ca_facts.clone()],
            chain,
            tlsa,
            checks: eval.checks,
            mx,
        });
    }
    Ok(out)
}

fn answer(name: &str, rtype: &str, data: Data, now: i64) -> Arc<Answer> {
    Arc::new(Answer {
        name: name.to_string(),
        rtype: rtype.to_string(),
        outcome: Outcome::Records,
        dnssec: Dnssec::Secure,
        cnames: Vec::new(),
        data,
        sig_expiry: Some(now + 20 * 86_400),
        reason: None,
        ttl: 300,
        original_ttl: None,
    })
}

fn reply(code: u16, lines: &[&str]) -> Reply {
    Reply {
        code,
        lines: lines.iter().map(|s| s.to_string()).collect(),
    }
}

fn report(i: usize, served: &Served, now: i64) -> TargetReport {
    let domain = format!("d{i:05}.example.test");
    let mut lookups = vec![answer(
        &domain,
        "MX",
        Data::Mx(
            (1..=2)
                .map(|k| Mx {
                    preference: 10 * k,
                    exchange: format!("mx{k}.{domain}"),
                })
                .collect(),
        ),
        now,
    )];
    let mut hosts = Vec::new();
    for k in 1..=2u8 {
        let mx = format!("mx{k}.{domain}");
        let ip = IpAddr::V4(Ipv4Addr::new(
            192,
            0,
            (i / 250) as u8 % 255,
            (i % 250) as u8 + k,
        ));
        lookups.push(answer(&mx, "A", Data::Addrs(vec![ip]), now));
        lookups.push(Arc::new(Answer {
            outcome: Outcome::NoData,
            data: Data::None,
            ..(*answer(&mx, "AAAA", Data::None, now)).clone()
        }));
        let base = format!("_25._tcp.{mx}");
        lookups.push(answer(&base, "TLSA", Data::Tlsa(served.tlsa.clone()), now));
        let smtp = SmtpReport {
            address: SocketAddr::new(ip, 25),
            tls_mode: TlsMode::Starttls,
            connected: true,
            greeting: Some(reply(220, &[&format!("{mx} ESMTP Postfix")])),
            ehlo: Some(reply(
                250,
                &[
                    &mx,
                    "PIPELINING",
                    "SIZE 10240000",
                    "ETRN",
                    "STARTTLS",
                    "ENHANCEDSTATUSCODES",
                    "8BITMIME",
                    "DSN",
                    "SMTPUTF8",
                    "CHUNKING",
                ],
            )),
            extensions: [
                "PIPELINING",
                "SIZE",
                "ETRN",
                "STARTTLS",
                "ENHANCEDSTATUSCODES",
                "8BITMIME",
                "DSN",
                "SMTPUTF8",
                "CHUNKING",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            starttls_advertised: true,
            starttls: Some(reply(220, &["2.0.0 Ready to start TLS"])),
            tls: Some(TlsFacts {
                version: "TLSv1.3".into(),
                cipher: "TLS13_AES_256_GCM_SHA384".into(),
                chain: served.chain.clone(),
                chain_len: served.chain.len(),
                handshake_seconds: 0.0008,
            }),
            ehlo_after_tls_sent: true,
            ehlo_after_tls: Some(reply(250, &[&mx, "PIPELINING", "SIZE 10240000"])),
            extensions_after_tls: ["PIPELINING", "SIZE"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            error: None,
            transcript: Vec::new(),
            seconds: 0.0012,
        };
        let matched = served
            .checks
            .iter()
            .find(|c| c.matched)
            .map(|c| c.record.presentation())
            .unwrap_or_default();
        hosts.push(HostReport {
            mx: mx.clone(),
            preference: Some(10 * u16::from(k)),
            port: 25,
            address_dnssec: Some(Dnssec::Secure),
            tlsa_base: Some(mx.clone()),
            tlsa_records: served.tlsa.clone(),
            tlsa_dnssec: Some(Dnssec::Secure),
            tlsa_timing: Default::default(),
            dane_applies: true,
            addresses: vec![AddressReport {
                address: Some(ip),
                smtp: Some(Arc::new(smtp)),
                certs: served.facts.clone(),
                cert_errors: Vec::new(),
                pkix: Some(Err(format!("certificate not valid for name {mx:?}"))),
                tlsa: served.checks.clone(),
                dane: Some(DaneStatus::Verified),
                why: format!("{matched} matched at depth 0: a DANE sender delivers, authenticated"),
            }],
            notes: Vec::new(),
        });
    }
    let mut r = TargetReport {
        target: domain.clone(),
        kind: "domain",
        timestamp: now as f64,
        duration_seconds: 0.004,
        mx_dnssec: Some(Dnssec::Secure),
        mx: vec![(10, format!("mx1.{domain}")), (20, format!("mx2.{domain}"))],
        implicit_mx: false,
        null_mx: false,
        hosts,
        lookups,
        authoritative: Vec::new(),
        error: None,
        success: false,
        mta_sts: None,
        tlsrpt: None,
        staged: Vec::new(),
    };
    let _ = &served.mx;
    r.success = r.compute_success();
    r
}

/// VmRSS of this process in KiB (0 if unreadable).
fn vm_rss_kib() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

struct Stats {
    min: Duration,
    median: Duration,
    max: Duration,
    bytes: usize,
    lines: usize,
}

/// The latest encoded reports, as the scheduler's store holds them; the bench replaces
/// entries as completed probes would. Each entry remembers its target index.
#[derive(Debug, Default)]
struct Encoded(Mutex<Vec<(usize, Arc<metrics::EncodedReport>)>>);

impl metrics::ReportSource for Encoded {
    fn encoded(&self) -> Vec<Arc<metrics::EncodedReport>> {
        self.0
            .lock()
            .map(|v| v.iter().map(|(_, e)| e.clone()).collect())
            .unwrap_or_default()
    }
}

/// CPU time of this thread (a scrape runs on one thread: its CPU is the exporter's).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to the pointer it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn time_render(exposition: &metrics::Exposition, openmetrics: bool, iters: usize) -> Stats {
    let mut times = Vec::with_capacity(iters);
    let mut bytes = 0;
    let mut lines = 0;
    for _ in 0..iters {
        let t = Instant::now();
        let (body, _) = exposition.render(openmetrics);
        times.push(t.elapsed());
        bytes = body.len();
        lines = body.lines().filter(|l| !l.starts_with('#')).count();
        std::hint::black_box(body);
    }
    times.sort_unstable();
    Stats {
        min: times[0],
        median: times[times.len() / 2],
        max: times[times.len() - 1],
        bytes,
        lines,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One scrape as the daemon serves it (every chunk produced, as hyper would send them):
/// (wall, thread CPU, body bytes, gzip stats).
fn one_scrape(
    e: &metrics::Exposition,
    om: bool,
    gzip: bool,
) -> (Duration, Duration, usize, metrics::GzipStats) {
    let (t, c) = (Instant::now(), thread_cpu());
    let (s, stats) = e.scrape_with_stats(om, gzip);
    let bytes = s.chunks.map(|b| std::hint::black_box(b).len()).sum();
    (t.elapsed(), thread_cpu() - c, bytes, stats)
}

/// Replaces `n` entries with freshly encoded reports of the same targets, as `n` probes
/// completing between two scrapes: the oldest ones (steady state: targets come round in
/// phase order) or random ones (the round after a restart).
fn reprobe(source: &Encoded, served: &[Served], now: i64, n: usize, oldest: bool, rng: &mut u64) {
    let Ok(mut v) = source.0.lock() else { return };
    let len = v.len();
    if len == 0 {
        return;
    }
    let picks: Vec<usize> = if oldest {
        let mut idx: Vec<usize> = (0..len).collect();
        idx.sort_unstable_by_key(|&k| v[k].1.seq());
        idx.truncate(n);
        idx
    } else {
        (0..n)
            .map(|_| {
                *rng ^= *rng << 13;
                *rng ^= *rng >> 7;
                *rng ^= *rng << 17;
                (*rng % len as u64) as usize
            })
            .collect()
    };
    for k in picks {
        let i = v[k].0;
        let r = Arc::new(report(i, &served[i % served.len()], now));
        v[k].1 = Arc::new(metrics::encode_report(&r));
    }
}

fn main() -> Result<()> {
    let targets = env_or("BENCH_TARGETS", 10_000)?;
    let iters = env_or("BENCH_ITERS", 20)?.max(1);
    let leaves = env_or("BENCH_LEAVES", 256)?.max(1);
    let status_max = env_or("BENCH_STATUS_MAX", 20_000)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;

    let served = chains(leaves)?;
    let rss0 = vm_rss_kib();
    // What the scheduler does when each probe completes: encode the report's series once,
    // then drop the report (kept here only for the status page part, up to BENCH_STATUS_MAX).
    let keep = targets <= status_max;
    let mut reports: Vec<Arc<TargetReport>> = Vec::new();
    let mut entries = Vec::with_capacity(targets);
    let mut enc = Duration::ZERO;
    let t = Instant::now();
    for i in 0..targets {
        let r = Arc::new(report(i, &served[i % served.len()], now));
        let t0 = Instant::now();
        entries.push((i, Arc::new(metrics::encode_report(&r))));
        enc += t0.elapsed();
        if keep {
            reports.push(r);
        }
    }
    let built = t.elapsed();
    let encoded_bytes: usize = entries.iter().map(|(_, e)| e.len()).sum();
    let held_bytes: usize = entries.iter().map(|(_, e)| e.held()).sum();
    println!(
        "built and encoded {targets} reports ({leaves} distinct chains) in {:.2} s; VmRSS grew by {:.1} MiB",
        built.as_secs_f64(),
        (vm_rss_kib() - rss0) as f64 / 1024.0,
    );
    println!(
        "encoded {targets} reports at probe time in {:.1} ms ({:.1} us per report, {:.2} KiB of text per report, {:.2} KiB held deflated)",
        ms(enc),
        enc.as_secs_f64() * 1e6 / targets.max(1) as f64,
        encoded_bytes as f64 / 1024.0 / targets.max(1) as f64,
        held_bytes as f64 / 1024.0 / targets.max(1) as f64
    );
    if keep {
        time_status_page(&reports, now, iters);
    } else {
        println!("status page: skipped above BENCH_STATUS_MAX={status_max} targets");
    }
    drop(reports);
    let em = Arc::new(ExporterMetrics::default());
    em.targets.set(targets as i64);
    let source = Arc::new(Encoded(Mutex::new(entries)));
    let exposition = metrics::Exposition::new(em.registry(), source.clone());

    println!();
    println!("/metrics render of {targets} targets into one buffer (2 MX x 1 address, 2 certs, 2 TLSA, 7 lookups each), {iters} iterations:");
    println!();
    println!("| format | min ms | median ms | max ms | body MiB | samples | VmRSS growth MiB | goal <= 50 ms |");
    println!("|---|---|---|---|---|---|---|---|");
    for (name, om) in [("OpenMetrics", true), ("text 0.0.4", false)] {
        let before = vm_rss_kib();
        let s = time_render(&exposition, om, iters);
        let grew = vm_rss_kib() - before;
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.1} | {} |",
            ms(s.min),
            ms(s.median),
            ms(s.max),
            s.bytes as f64 / 1048576.0,
            s.lines,
            grew as f64 / 1024.0,
            if s.median <= Duration::from_millis(50) {
                "PASS"
            } else {
                "FAIL"
            }
        );
    }

    println!();
    println!("(b) gzip of the whole body per scrape (transport::gzip, fastest level), {iters} iterations:");
    println!();
    println!("| format | body MiB | gzip MiB | ratio | min ms | median ms | max ms |");
    println!("|---|---|---|---|---|---|---|");
    for (name, om) in [("OpenMetrics", true), ("text 0.0.4", false)] {
        let (body, _) = exposition.render(om);
        let mut times = Vec::with_capacity(iters);
        let mut zipped = 0;
        for _ in 0..iters {
            let t = Instant::now();
            let z = transport::gzip(body.as_bytes())?;
            times.push(t.elapsed());
            zipped = z.len();
            std::hint::black_box(z);
        }
        times.sort_unstable();
        println!(
            "| {name} | {:.1} | {:.2} | {:.1}x | {:.1} | {:.1} | {:.1} |",
            body.len() as f64 / 1048576.0,
            zipped as f64 / 1048576.0,
            body.len() as f64 / zipped.max(1) as f64,
            ms(times[0]),
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1]),
        );
    }

    // The daemon's path: metrics::Exposition::scrape, every chunk produced.
    let (plain, _) = exposition.render(true);
    let z = exposition.scrape(true, true).collect();
    let mut inflated = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&z[..]), &mut inflated)?;
    if inflated != plain {
        return Err(anyhow!(
            "the gzip scrape does not inflate to the plain body"
        ));
    }
    drop((plain, inflated, z));
    println!();
    println!(
        "/metrics as the daemon serves it (`Exposition::scrape`: chunks streamed; gzip from the segment cache, blocks of {} targets), OpenMetrics, {iters} iterations each; the gzip body inflates to the plain one: checked",
        metrics::GZIP_BLOCK_TARGETS
    );
    println!();
    println!("| scrape | CPU ms median (min-max) | wall ms median | body MiB | blocks compressed / all |");
    println!("|---|---|---|---|---|");
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    // (name, gzip, share of targets re-probed before the scrape, oldest first?)
    type Case<'a> = (&'a str, bool, Option<(f64, bool)>);
    let cases: [Case; 6] = [
        ("plain, streamed", false, None),
        ("gzip, cold cache (first scrape)", true, Some((1.0, false))),
        ("gzip, nothing changed", true, Some((0.0, true))),
        (
            "gzip, 5% re-probed, oldest first (steady state, 15 s scrapes, 5m interval)",
            true,
            Some((0.05, true)),
        ),
        (
            "gzip, 10% re-probed, oldest first (30 s scrapes, 5m interval)",
            true,
            Some((0.10, true)),
        ),
        (
            "gzip, 5% re-probed at random (the round after a restart)",
            true,
            Some((0.05, false)),
        ),
    ];
    for (name, gzip, change) in cases {
        let mut cpu = Vec::with_capacity(iters);
        let mut wall = Vec::with_capacity(iters);
        let (mut bytes, mut st) = (0, metrics::GzipStats::default());
        for _ in 0..iters {
            let (w, c, b, s) = match change {
                Some((f, _)) if f >= 1.0 => {
                    // A fresh exposition: nothing cached.
                    let e = metrics::Exposition::new(em.registry(), source.clone());
                    one_scrape(&e, true, gzip)
                }
                Some((f, oldest)) => {
                    // Warm the cache, then let the probes complete.
                    let _ = one_scrape(&exposition, true, gzip);
                    let n = (targets as f64 * f) as usize;
                    reprobe(&source, &served, now, n, oldest, &mut rng);
                    one_scrape(&exposition, true, gzip)
                }
                None => one_scrape(&exposition, true, gzip),
            };
            (bytes, st) = (b, s);
            cpu.push(c);
            wall.push(w);
        }
        cpu.sort_unstable();
        wall.sort_unstable();
        println!(
            "| {name} | {:.1} ({:.1}-{:.1}) | {:.1} | {:.2} | {} |",
            ms(cpu[cpu.len() / 2]),
            ms(cpu[0]),
            ms(cpu[cpu.len() - 1]),
            ms(wall[wall.len() / 2]),
            bytes as f64 / 1048576.0,
            if gzip {
                format!("{} / {}", st.compressed, st.blocks)
            } else {
                "-".into()
            }
        );
    }
    println!();
    println!(
        "gzip segment cache: {:.2} MiB held ({:.2} KiB per target)",
        exposition.gzip_cache_bytes() as f64 / 1048576.0,
        exposition.gzip_cache_bytes() as f64 / 1024.0 / targets.max(1) as f64
    );
    Ok(())
}

/// Median of `iters` renders of the status page for `query`, and the body size.
fn time_page(
    entries: &[status::Entry<'_>],
    query: &PageQuery,
    now: i64,
    iters: usize,
) -> (Duration, usize) {
    let mut times = Vec::with_capacity(iters);
    let mut bytes = 0;
    for _ in 0..iters {
        let t = Instant::now();
        let body = status::render_page(entries, query, "", now);
        times.push(t.elapsed());
        bytes = body.len();
        std::hint::black_box(body);
    }
    times.sort_unstable();
    (times[times.len() / 2], bytes)
}

fn time_status_page(reports: &[Arc<TargetReport>], now: i64, iters: usize) {
    let rss0 = vm_rss_kib();
    let t = Instant::now();
    let summaries: Vec<Arc<Summary>> = reports.iter().map(|r| Arc::new(Summary::of(r))).collect();
    let made = t.elapsed();
    let grew = vm_rss_kib() - rss0;
    let entries: Vec<status::Entry<'_>> = reports
        .iter()
        .zip(&summaries)
        .map(|(r, s)| status::Entry {
            target: &r.target,
            summary: Some(s.clone()),
        })
        .collect();
    let n = entries.len();
    let (text, packed) = reports
        .iter()
        .map(|r| {
            let t = mailtls_exporter::text::render_text(r, false);
            (t.len(), status::PackedText::new(&t).len())
        })
        .fold((0, 0), |(a, b), (t, p)| (a + t, b + p));
    println!();
    println!(
        "status text view: render_text {:.2} KiB per target, kept deflated: {:.2} KiB per target",
        text as f64 / 1024.0 / n.max(1) as f64,
        packed as f64 / 1024.0 / n.max(1) as f64
    );
    println!(
        "status page: {n} summaries made in {:.1} ms ({:.1} us each); VmRSS grew by {:.1} MiB ({:.2} KiB per target)",
        made.as_secs_f64() * 1e3,
        made.as_secs_f64() * 1e6 / n.max(1) as f64,
        grew as f64 / 1024.0,
        grew as f64 / n.max(1) as f64
    );
    println!();
    println!("| status page of {n} targets | median ms | body KiB |");
    println!("|---|---|---|");
    let q = |pairs: &[(&str, &str)]| {
        PageQuery::from_params(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>(),
        )
    };
    for (name, query) in [
        ("first page (50 targets)", q(&[])),
        ("filter ?q=d09 (scans all, 1,000 match)", q(&[("q", "d09")])),
        ("filter matching nothing", q(&[("q", "nothing-matches")])),
        ("last page", q(&[("page", "100000")])),
    ] {
        let (t, bytes) = time_page(&entries, &query, now, iters);
        println!(
            "| {name} | {:.2} | {} |",
            t.as_secs_f64() * 1e3,
            bytes / 1024
        );
    }
}
