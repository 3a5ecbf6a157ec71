//! The target deadline budget (README "timeout"): every SMTP/TLS phase may use what is left
//! of one probe's `timeout`, a slow or silent address fails on its own phase with its own
//! reason, and the rest of the target's report (other addresses, other MX hosts) is kept.
//!
//! Self-contained: SMTP servers on 127.26.208-209.x:25 and 127.0.0.1, and a small authoritative
//! DNS responder on 127.0.0.1 that the exporter queries in `upstream` mode (it sets AD=1, as
//! a validating resolver on loopback would), so a target can have a tarpit and a working
//! server side by side. No lab needed. Time is tokio's paused clock: the 6 s greet pause and
//! the 10 s budget take no wall time.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::tlsa::{CertUsage, Matching, Selector};
use hickory_proto::rr::rdata::{A, MX, TLSA};
use hickory_proto::rr::{Name, RData, Record};
use mailtls_exporter::config;
use mailtls_exporter::metrics::render_report;
use mailtls_exporter::model::report::{AddressReport, DaneStatus, TargetReport};
use mailtls_exporter::probe::{self, ProbeContext, ProbeOptions};
use mailtls_exporter::target::NextHop;
use rcgen::{CertificateParams, KeyPair, PublicKeyData};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_secs(10);
/// What a probe may take beyond its budget: the last-resort timeout fires 1 s after it; a
/// probe that ends by itself ends well before that.
const SLACK: Duration = Duration::from_millis(500);
const DOMAIN: &str = "deadline.test";
const MX1: &str = "mx1.deadline.test";
const MX2: &str = "mx2.deadline.test";
/// mx1 has a tarpit and a working address; mx2 one working address. Port 25 (domain target).
const TARPIT: Ipv4Addr = Ipv4Addr::new(127, 26, 208, 1);
const WORKING1: Ipv4Addr = Ipv4Addr::new(127, 26, 208, 2);
const WORKING2: Ipv4Addr = Ipv4Addr::new(127, 26, 208, 3);

/// A leaf for both MX names, its key and the `3 1 1` digest of its SPKI.
struct Pki {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    spki_sha256: Vec<u8>,
}

fn pki() -> Result<Pki> {
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec![MX1.to_owned(), MX2.to_owned()])?.self_signed(&key)?;
    Ok(Pki {
        chain: vec![cert.der().clone()],
        key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        spki_sha256: Sha256::digest(key.subject_public_key_info()).to_vec(),
    })
}

fn server_config(pki: &Pki) -> Result<Arc<rustls::ServerConfig>> {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(pki.chain.clone(), pki.key.clone_key())?;
    Ok(Arc::new(config))
}

/// Read one command line byte by byte (never over-reads, so TLS can follow).
async fn read_line<R: AsyncRead + Unpin>(r: &mut R) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while r.read(&mut b).await.unwrap_or(0) == 1 {
        line.push(b[0]);
        if b[0] == b'\n' {
            break;
        }
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// One SMTP session: `pause` between `220-` and the final `220 ` (postscreen's greet
/// wait), then EHLO with STARTTLS, then TLS, EHLO answered again, and QUIT.
async fn smtp_session(mut s: TcpStream, tls: Arc<rustls::ServerConfig>, pause: Duration) {
    if s.write_all(b"220-mx.deadline.test ESMTP\r\n")
        .await
        .is_err()
    {
        return;
    }
    tokio::time::sleep(pause).await;
    if s.write_all(b"220 mx.deadline.test ESMTP\r\n")
        .await
        .is_err()
        || !read_line(&mut s).await.starts_with("EHLO ")
        || s.write_all(b"250-mx.deadline.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
            .await
            .is_err()
        || read_line(&mut s).await != "STARTTLS\r\n"
        || s.write_all(b"220 2.0.0 Ready to start TLS\r\n")
            .await
            .is_err()
    {
        return;
    }
    if let Ok(mut t) = tokio_rustls::TlsAcceptor::from(tls).accept(s).await {
        // The EHLO over TLS (RFC 3207 §4.2) gets its 250, then QUIT ends the session.
        while read_line(&mut t).await.starts_with("EHLO ") {
            if t.write_all(b"250-mx.deadline.test\r\n250 PIPELINING\r\n")
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = t.shutdown().await;
    }
}

/// A STARTTLS server on `listener`, every connection served with [`smtp_session`].
fn serve_smtp(listener: TcpListener, tls: Arc<rustls::ServerConfig>, pause: Duration) {
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(smtp_session(s, tls.clone(), pause));
        }
    });
}

/// Accepts and never says a word; counts connections.
fn serve_tarpit(listener: TcpListener) -> Arc<std::sync::atomic::AtomicUsize> {
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(s);
        }
    });
    accepted
}

fn fqdn(name: &str) -> Result<Name> {
    Ok(Name::from_ascii(format!("{name}."))?)
}

/// The zone the responder serves (all answers secure: AD=1); `[tarpit, working1, working2]`
/// are the addresses of mx1 (the first two) and mx2.
fn zone(pki: &Pki, [tarpit, working1, working2]: [Ipv4Addr; 3]) -> Result<Vec<Record>> {
    let tlsa = |host: &str| -> Result<Record> {
        Ok(Record::from_rdata(
            fqdn(&format!("_25._tcp.{host}"))?,
            300,
            RData::TLSA(TLSA::new(
                CertUsage::from(3),
                Selector::from(1),
                Matching::from(1),
                pki.spki_sha256.clone(),
            )),
        ))
    };
    Ok(vec![
        Record::from_rdata(fqdn(DOMAIN)?, 300, RData::MX(MX::new(10, fqdn(MX1)?))),
        Record::from_rdata(fqdn(DOMAIN)?, 300, RData::MX(MX::new(20, fqdn(MX2)?))),
        Record::from_rdata(fqdn(MX1)?, 300, RData::A(A(tarpit))),
        Record::from_rdata(fqdn(MX1)?, 300, RData::A(A(working1))),
        Record::from_rdata(fqdn(MX2)?, 300, RData::A(A(working2))),
        tlsa(MX1)?,
        tlsa(MX2)?,
    ])
}

/// A minimal authoritative responder over UDP on 127.0.0.1: records of `zone` matching the
/// question, NODATA otherwise, AD=1 on every answer; questions for a name in `silent` are
/// never answered.
async fn serve_dns(zone: Vec<Record>, silent: &[&str]) -> Result<SocketAddr> {
    let silent = silent.iter().map(|n| fqdn(n)).collect::<Result<Vec<_>>>()?;
    let sock = UdpSocket::bind("127.0.0.1:0").await?;
    let addr = sock.local_addr()?;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            if query.queries.iter().any(|q| silent.contains(q.name())) {
                continue;
            }
            let mut resp = query.clone();
            resp.metadata.message_type = MessageType::Response;
            resp.metadata.authoritative = true;
            resp.metadata.recursion_available = true;
            resp.metadata.authentic_data = true;
            resp.metadata.response_code = ResponseCode::NoError;
            if let Some(q) = query.queries.first() {
                resp.answers = zone
                    .iter()
                    .filter(|r| r.record_type() == q.query_type() && r.name == *q.name())
                    .cloned()
                    .collect();
            }
            if let Ok(bytes) = resp.to_vec() {
                let _ = sock.send_to(&bytes, peer).await;
            }
        }
    });
    Ok(addr)
}

/// A probe context with `timeout`, upstream validation against `resolver`.
fn context(resolver: SocketAddr, timeout: Duration) -> Result<ProbeContext> {
    let text = format!(
        "interval: 1m\ntimeout: {}s\ndns:\n  resolver: {resolver}\n  validation: upstream\nsmtp:\n  helo_name: probe.deadline.test\n",
        timeout.as_secs()
    );
    let cfg = config::parse(&text, "deadlines.yml").map_err(|e| anyhow::anyhow!("{e:?}"))?;
    assert_eq!(cfg.timeout, timeout);
    Ok(ProbeContext::new(&cfg)?)
}

async fn probe_timed(ctx: &ProbeContext, target: &str) -> Result<(TargetReport, Duration)> {
    let hop = NextHop::parse(target)?;
    let started = Instant::now();
    let report = probe::probe_target(ctx, target, &hop, ProbeOptions::default()).await;
    Ok((report, started.elapsed()))
}

fn address<'a>(report: &'a TargetReport, mx: &str, ip: Ipv4Addr) -> Result<&'a AddressReport> {
    report
        .hosts
        .iter()
        .filter(|h| h.mx == mx)
        .flat_map(|h| h.addresses.iter())
        .find(|a| a.address == Some(IpAddr::V4(ip)))
        .with_context(|| format!("{mx} {ip} missing from {report:#?}"))
}

fn reason(a: &AddressReport) -> Option<&'static str> {
    a.smtp
        .as_ref()
        .and_then(|s| s.error.as_ref())
        .map(|e| e.reason())
}

/// Issue: with `timeout: 10s`, an MX that sends `220-` and waits 6 s before its final
/// `220` (postscreen's default greet wait) was `greeting_timeout` (each phase got
/// timeout/3). Now the greeting may use what is left of the budget.
#[tokio::test(start_paused = true)]
async fn postscreen_greet_pause_of_6s_passes_with_timeout_10s() -> Result<()> {
    let pki = pki()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    serve_smtp(listener, server_config(&pki)?, Duration::from_secs(6));
    let ctx = context("127.0.0.1:9".parse()?, TIMEOUT)?; // address target: no DNS
    let (report, took) = probe_timed(&ctx, &format!("[127.0.0.1]:{port}")).await?;
    let smtp = address(&report, "127.0.0.1", Ipv4Addr::LOCALHOST)?
        .smtp
        .as_ref()
        .context("no SMTP")?;
    assert!(smtp.error.is_none(), "{:?}", smtp.error);
    assert!(smtp.smtp_up() && smtp.starttls_advertised && smtp.tls.is_some());
    assert!(report.success && report.error.is_none(), "{report:#?}");
    assert!(took >= Duration::from_secs(6) && took < TIMEOUT, "{took:?}");
    let (text, _) = render_report(Arc::new(report), false);
    for name in [
        "mailtls_smtp_up",
        "mailtls_starttls_advertised",
        "mailtls_tls_handshake_success",
        "mailtls_probe_success",
    ] {
        let v = common::sample(&text, name, &[]).with_context(|| format!("{name}\n{text}"))?;
        assert_eq!(v, 1.0, "{name}\n{text}");
    }
    Ok(())
}

/// A tarpit (accepts, never greets) still fails, with `greeting_timeout`, at the end of the
/// budget: the probe returns within `timeout` plus a little, and the report is the
/// address's own failure, not "probe timed out".
#[tokio::test(start_paused = true)]
async fn tarpit_fails_with_greeting_timeout_within_the_budget() -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let accepted = serve_tarpit(listener);
    let ctx = context("127.0.0.1:9".parse()?, TIMEOUT)?;
    let (report, took) = probe_timed(&ctx, &format!("[127.0.0.1]:{port}")).await?;
    let a = address(&report, "127.0.0.1", Ipv4Addr::LOCALHOST)?;
    assert_eq!(reason(a), Some("greeting_timeout"), "{a:#?}");
    assert!(a.smtp.as_ref().is_some_and(|s| s.connected));
    assert!(report.error.is_none(), "{:?}", report.error);
    assert!(!report.success);
    assert!(took >= TIMEOUT && took <= TIMEOUT + SLACK, "{took:?}");
    assert!(
        report.duration_seconds <= (TIMEOUT + SLACK).as_secs_f64(),
        "{}",
        report.duration_seconds
    );
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    Ok(())
}

/// A silent address never erases the rest of its target: mx1 has a tarpit and a working
/// address, mx2 a working one. The tarpit gets its own `greeting_timeout`; both working
/// addresses keep their certificates, TLSA checks and `verified` DANE verdict, in the report
/// and in the metrics.
#[tokio::test(start_paused = true)]
async fn silent_address_keeps_the_rest_of_its_target() -> Result<()> {
    let pki = pki()?;
    let tls = server_config(&pki)?;
    let bind = |ip: Ipv4Addr| TcpListener::bind(SocketAddr::new(ip.into(), 25));
    let (tarpit, w1, w2) = match (bind(TARPIT).await, bind(WORKING1).await, bind(WORKING2).await)
    {
        (Ok(t), Ok(a), Ok(b)) => (t, a, b),
        (t, a, b) => bail!(
            "cannot listen on port 25 of 127.26.208.1-3 (root or CAP_NET_BIND_SERVICE needed): {:?} {:?} {:?}",
            t.err(),
            a.err(),
            b.err()
        ),
    };
    let accepted = serve_tarpit(tarpit);
    serve_smtp(w1, tls.clone(), Duration::ZERO);
    serve_smtp(w2, tls, Duration::ZERO);
    let resolver = serve_dns(zone(&pki, [TARPIT, WORKING1, WORKING2])?, &[]).await?;
    let ctx = context(resolver, TIMEOUT)?;

    let (report, took) = probe_timed(&ctx, DOMAIN).await?;
    assert!(took >= TIMEOUT && took <= TIMEOUT + SLACK, "{took:?}");
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(report.hosts.len(), 2, "{report:#?}");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);

    let silent = address(&report, MX1, TARPIT)?;
    assert_eq!(reason(silent), Some("greeting_timeout"), "{silent:#?}");
    assert_eq!(silent.dane, Some(DaneStatus::Failed), "{silent:#?}");
    for (mx, ip) in [(MX1, WORKING1), (MX2, WORKING2)] {
        let a = address(&report, mx, ip)?;
        assert_eq!(reason(a), None, "{a:#?}");
        assert_eq!(a.certs.len(), 1, "{a:#?}");
        assert_eq!(a.tlsa.len(), 1, "{a:#?}");
        assert_eq!(a.dane, Some(DaneStatus::Verified), "{}", a.why);
    }
    // The probe as a whole fails (one address is unreachable), but says so per address.
    assert!(!report.success);

    let (text, _) = render_report(Arc::new(report), false);
    for (mx, ip) in [(MX1, WORKING1), (MX2, WORKING2)] {
        let ip = ip.to_string();
        let l = [("mx", mx), ("address", ip.as_str())];
        for name in [
            "mailtls_smtp_up",
            "mailtls_tls_handshake_success",
            "mailtls_tlsa_record_match",
        ] {
            assert_eq!(common::sample(&text, name, &l), Some(1.0), "{name}\n{text}");
        }
        assert!(
            common::sample(&text, "mailtls_cert_not_after_timestamp_seconds", &l)
                .is_some_and(|v| v > 0.0),
            "{text}"
        );
        let verified = [l[0], l[1], ("status", "verified")];
        assert_eq!(
            common::sample(&text, "mailtls_dane_status", &verified),
            Some(1.0),
            "{text}"
        );
    }
    let ip = TARPIT.to_string();
    let l = [("mx", MX1), ("address", ip.as_str())];
    assert_eq!(common::sample(&text, "mailtls_smtp_up", &l), Some(0.0));
    let timed_out = [l[0], l[1], ("reason", "greeting_timeout")];
    assert_eq!(
        common::sample(&text, "mailtls_smtp_error_info", &timed_out),
        Some(1.0),
        "{text}"
    );
    Ok(())
}

/// Shorter than the resolver's own per-query timeout (5 s), so the probe deadline is what
/// ends a silent lookup.
const SHORT_TIMEOUT: Duration = Duration::from_secs(4);

/// Only a probe whose DNS did not finish in time is reported as timed out as a whole.
#[tokio::test(start_paused = true)]
async fn silent_mx_lookup_times_out_the_whole_probe() -> Result<()> {
    let pki = pki()?;
    let resolver = serve_dns(zone(&pki, [TARPIT, WORKING1, WORKING2])?, &[DOMAIN]).await?;
    let ctx = context(resolver, SHORT_TIMEOUT)?;
    let (report, took) = probe_timed(&ctx, DOMAIN).await?;
    let error = report.error.as_deref().unwrap_or_default();
    assert!(
        error.starts_with("probe timed out after 4s") && error.contains("MX lookup"),
        "{error}"
    );
    assert!(report.hosts.is_empty() && !report.success);
    assert!(
        took >= SHORT_TIMEOUT && took <= SHORT_TIMEOUT + SLACK,
        "{took:?}"
    );
    Ok(())
}

/// One MX host whose address lookups never finish is `dns_failure` on its own; the other
/// MX host's results are kept and the report is not "timed out".
#[tokio::test(start_paused = true)]
async fn silent_host_lookup_fails_only_that_host() -> Result<()> {
    let pki = pki()?;
    let tls = server_config(&pki)?;
    // Not the addresses of `silent_address_keeps_the_rest_of_its_target` (tests run at once).
    let working2 = Ipv4Addr::new(127, 26, 209, 3);
    let w2 = TcpListener::bind(SocketAddr::new(working2.into(), 25))
        .await
        .context("listening on 127.26.209.3:25 (root or CAP_NET_BIND_SERVICE needed)")?;
    serve_smtp(w2, tls, Duration::ZERO);
    let addrs = [
        Ipv4Addr::new(127, 26, 209, 1),
        Ipv4Addr::new(127, 26, 209, 2),
        working2,
    ];
    let resolver = serve_dns(zone(&pki, addrs)?, &[MX1]).await?;
    let ctx = context(resolver, SHORT_TIMEOUT)?;
    let (report, took) = probe_timed(&ctx, DOMAIN).await?;
    assert!(report.error.is_none(), "{:?}", report.error);
    assert!(
        took >= SHORT_TIMEOUT && took <= SHORT_TIMEOUT + SLACK,
        "{took:?}"
    );
    let mx1 = report
        .hosts
        .iter()
        .find(|h| h.mx == MX1)
        .context("mx1 missing")?;
    assert_eq!(mx1.addresses.len(), 1);
    assert_eq!(mx1.addresses[0].dane, Some(DaneStatus::DnsFailure));
    assert!(
        mx1.addresses[0].why.contains("did not finish"),
        "{}",
        mx1.addresses[0].why
    );
    let a = address(&report, MX2, working2)?;
    assert_eq!(a.dane, Some(DaneStatus::Verified), "{}", a.why);
    Ok(())
}
