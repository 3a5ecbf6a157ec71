//! Downgrade resistance of local validation, against the real lab.
//!
//! A DNS man-in-the-middle proxy (UDP and TCP) sits between the exporter and the lab's
//! non-validating resolver and tampers with one response only: the TLSA lookup (or, in one
//! test, the address lookup) of the host under attack. Everything else
//! passes through untouched, so the rest of the chain still validates. In local mode every
//! attack must come out as `bogus` (or `error`) with the DANE verdict `dns_failure`: an
//! attacker on the path must never turn DANE off (`insecure` data, verdict `none`); RFC 7672
//! §2.2: a TLSA lookup that fails or is bogus makes the host unusable for a DANE sender.
//!
//! The exporter is driven through its binary (`check --output=json`), so these tests hold
//! whatever the library's internal layout.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// What the proxy does to the response for the attacked query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attack {
    /// Nothing: the proxy must be transparent.
    None,
    /// Remove the NSEC/NSEC3 records and the RRSIGs over them from the authority section of
    /// a denial (NODATA/NXDOMAIN); the signed SOA stays.
    StripDenialProof,
    /// Remove the RRSIGs from the answer section.
    StripAnswerRrsigs,
    /// Replace the response with an empty NOERROR: no answer, no authority, AD clear.
    EmptyNoError,
    /// The same with the AD bit set (the forgery a validating resolver's path allows).
    EmptyNoErrorWithAd,
}

/// Per-connection and per-datagram I/O deadline of the proxy.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound on the datagrams and connections one proxy serves (it lives for one test).
const MAX_QUERIES: usize = 10_000;
/// Largest DNS message over TCP (two-byte length prefix).
const MAX_TCP_MESSAGE: usize = 65_535;

/// The attacked query and its counters, shared by the proxy's tasks.
struct Target {
    qname: String,
    qtype: RecordType,
    attack: Attack,
    /// Responses to the attacked query that passed through the proxy.
    seen: AtomicUsize,
    /// Responses the proxy actually changed.
    tampered: AtomicUsize,
}

impl Target {
    fn matches(&self, query: &[u8]) -> bool {
        Message::from_vec(query)
            .ok()
            .and_then(|m| m.queries.first().cloned())
            .is_some_and(|q| {
                q.query_type() == self.qtype
                    && q.name().to_ascii().eq_ignore_ascii_case(&self.qname)
            })
    }

    /// The response to send back for `query`: `response` itself or the tampered version.
    fn process(&self, query: &[u8], response: Vec<u8>) -> Vec<u8> {
        if !self.matches(query) {
            return response;
        }
        self.seen.fetch_add(1, Ordering::SeqCst);
        let Ok(mut msg) = Message::from_vec(&response) else {
            return response;
        };
        let changed = match self.attack {
            Attack::None => false,
            Attack::StripDenialProof => {
                let is_denial = !msg.answers.iter().any(|r| r.record_type() == self.qtype);
                let before = msg.authorities.len();
                msg.authorities.retain(|r| !is_denial_proof(r));
                is_denial && msg.authorities.len() < before
            }
            Attack::StripAnswerRrsigs => {
                let before = msg.answers.len();
                msg.answers.retain(|r| r.record_type() != RecordType::RRSIG);
                msg.answers.len() < before
            }
            Attack::EmptyNoError | Attack::EmptyNoErrorWithAd => {
                msg.answers.clear();
                msg.authorities.clear();
                msg.additionals.clear();
                msg.metadata.response_code = ResponseCode::NoError;
                msg.metadata.authentic_data = self.attack == Attack::EmptyNoErrorWithAd;
                true
            }
        };
        if !changed {
            return response;
        }
        match msg.to_vec() {
            Ok(bytes) => {
                self.tampered.fetch_add(1, Ordering::SeqCst);
                bytes
            }
            Err(_) => response,
        }
    }
}

/// NSEC, NSEC3 and the RRSIGs covering them.
fn is_denial_proof(r: &Record) -> bool {
    match &r.data {
        RData::DNSSEC(DNSSECRData::RRSIG(sig)) => matches!(
            sig.input().type_covered,
            RecordType::NSEC | RecordType::NSEC3
        ),
        _ => matches!(r.record_type(), RecordType::NSEC | RecordType::NSEC3),
    }
}

/// A DNS proxy on 127.0.0.1 (UDP and TCP on one port) in front of `upstream`.
struct Proxy {
    addr: SocketAddr,
    target: Arc<Target>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Proxy {
    async fn start(upstream: &str, qname: &str, qtype: RecordType, attack: Attack) -> Result<Self> {
        let upstream: SocketAddr = upstream.parse()?;
        let target = Arc::new(Target {
            qname: qname.to_string(),
            qtype,
            attack,
            seen: AtomicUsize::new(0),
            tampered: AtomicUsize::new(0),
        });
        // One ephemeral port for both transports: retry if TCP finds it taken.
        let mut bound = None;
        for _ in 0..20 {
            let udp = UdpSocket::bind("127.0.0.1:0").await?;
            let addr = udp.local_addr()?;
            if let Ok(tcp) = TcpListener::bind(addr).await {
                bound = Some((udp, tcp, addr));
                break;
            }
        }
        let Some((udp, tcp, addr)) = bound else {
            bail!("no port free for both UDP and TCP on 127.0.0.1");
        };
        let udp_task = tokio::spawn(serve_udp(Arc::new(udp), upstream, target.clone()));
        let tcp_task = tokio::spawn(serve_tcp(tcp, upstream, target.clone()));
        Ok(Self {
            addr,
            target,
            tasks: vec![udp_task, tcp_task],
        })
    }

    fn seen(&self) -> usize {
        self.target.seen.load(Ordering::SeqCst)
    }

    fn tampered(&self) -> usize {
        self.target.tampered.load(Ordering::SeqCst)
    }
}

async fn serve_udp(sock: Arc<UdpSocket>, upstream: SocketAddr, target: Arc<Target>) {
    let mut buf = vec![0u8; 4096];
    for _ in 0..MAX_QUERIES {
        let Ok((n, client)) = sock.recv_from(&mut buf).await else {
            return;
        };
        let query = buf[..n].to_vec();
        let (sock, target) = (sock.clone(), target.clone());
        tokio::spawn(async move {
            let Ok(up) = UdpSocket::bind("127.0.0.1:0").await else {
                return;
            };
            if up.send_to(&query, upstream).await.is_err() {
                return;
            }
            let mut rbuf = vec![0u8; 65_535];
            if let Ok(Ok((m, _))) = tokio::time::timeout(IO_TIMEOUT, up.recv_from(&mut rbuf)).await
            {
                let out = target.process(&query, rbuf[..m].to_vec());
                let _ = sock.send_to(&out, client).await;
            }
        });
    }
}

async fn serve_tcp(listener: TcpListener, upstream: SocketAddr, target: Arc<Target>) {
    for _ in 0..MAX_QUERIES {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        let target = target.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(
                Duration::from_secs(30),
                tcp_connection(client, upstream, target),
            )
            .await;
        });
    }
}

/// Relays length-prefixed messages one at a time over one upstream connection.
async fn tcp_connection(
    mut client: TcpStream,
    upstream: SocketAddr,
    target: Arc<Target>,
) -> Result<()> {
    let mut up = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(upstream)).await??;
    loop {
        let Some(query) = read_framed(&mut client).await? else {
            return Ok(());
        };
        write_framed(&mut up, &query).await?;
        let response = read_framed(&mut up)
            .await?
            .context("upstream closed the connection")?;
        write_framed(&mut client, &target.process(&query, response)).await?;
    }
}

async fn read_framed(s: &mut TcpStream) -> Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match tokio::time::timeout(IO_TIMEOUT, s.read_exact(&mut len)).await? {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let n = usize::from(u16::from_be_bytes(len));
    let mut msg = vec![0u8; n.min(MAX_TCP_MESSAGE)];
    tokio::time::timeout(IO_TIMEOUT, s.read_exact(&mut msg)).await??;
    Ok(Some(msg))
}

async fn write_framed(s: &mut TcpStream, msg: &[u8]) -> Result<()> {
    let len = u16::try_from(msg.len()).context("message too long for TCP framing")?;
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    tokio::time::timeout(IO_TIMEOUT, s.write_all(&out)).await??;
    Ok(())
}

/// Runs `check --output=json` on `target` with the exporter's resolver set to `resolver`
/// (validation `mode`); returns the target's report.
async fn check_through(
    lab: &common::Lab,
    mode: &str,
    resolver: SocketAddr,
    target: &str,
) -> Result<Value> {
    let real = match mode {
        "local" => common::NON_VALIDATING,
        _ => common::VALIDATING,
    };
    let cfg = lab.config(mode, "")?.replace(real, &resolver.to_string());
    assert!(
        cfg.contains(&resolver.to_string()),
        "resolver not replaced: {cfg}"
    );
    let dir = common::tempdir()?;
    let path = common::write(dir.path(), "config.yml", &cfg)?;
    let target = target.to_string();
    let (_, reports) =
        tokio::task::spawn_blocking(move || common::check_json(&path, &[target.as_str()]))
            .await??;
    reports
        .get(0)
        .cloned()
        .with_context(|| format!("no report in {reports}"))
}

/// The report's lookup of (`name`, `rtype`).
fn lookup<'a>(report: &'a Value, name: &str, rtype: &str) -> Option<&'a Value> {
    report["lookups"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == name && l["type"] == rtype)
}

/// Every lookup except the attacked one is `secure`: the proxy touched nothing else, so the
/// test is about the attacked RRset alone.
fn assert_rest_secure(report: &Value, attacked: (&str, &str)) {
    let lookups = report["lookups"].as_array().expect("lookups in the report");
    assert!(lookups.len() >= 2, "too few lookups: {report:#}");
    for l in lookups {
        if l["name"] == attacked.0 && l["type"] == attacked.1 {
            continue;
        }
        assert_eq!(l["dnssec"], "secure", "unattacked lookup not secure: {l}");
    }
}

fn host<'a>(report: &'a Value, mx: &str) -> &'a Value {
    report["hosts"]
        .as_array()
        .and_then(|hs| hs.iter().find(|h| h["mx"] == mx))
        .unwrap_or_else(|| panic!("no host {mx} in {report:#}"))
}

/// The DANE verdicts of every address of host `mx`.
fn verdicts(report: &Value, mx: &str) -> Vec<String> {
    let v: Vec<String> = host(report, mx)["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| a["dane"].as_str().unwrap_or("?").to_string())
        .collect();
    assert!(!v.is_empty(), "{mx} has no address in {report:#}");
    v
}

/// Runs one local-mode attack on host `mx` of `domain` (TLSA at `_25._tcp.mx`) and checks
/// that it is caught: TLSA `bogus`/`error`, every address `dns_failure`.
async fn attack_tlsa(domain: &str, mx: &str, attack: Attack) -> Result<Value> {
    let lab = common::lab()?;
    let tlsa = format!("_25._tcp.{mx}");
    let proxy = Proxy::start(
        common::NON_VALIDATING,
        &format!("{tlsa}."),
        RecordType::TLSA,
        attack,
    )
    .await?;
    let report = check_through(&lab, "local", proxy.addr, domain).await?;
    assert!(
        proxy.tampered() > 0,
        "{attack:?}: the proxy never tampered with {tlsa} TLSA (seen {}): {report:#}",
        proxy.seen()
    );
    let h = host(&report, mx);
    let l = lookup(&report, &tlsa, "TLSA").context("no TLSA lookup in the report")?;
    for state in [&h["tlsa_dnssec"], &l["dnssec"]] {
        assert!(
            state == "bogus" || state == "error",
            "{attack:?} on {tlsa}: TLSA state {state}, want bogus or error: {report:#}"
        );
    }
    for v in verdicts(&report, mx) {
        assert_eq!(v, "dns_failure", "{attack:?} on {mx}: {report:#}");
    }
    assert_rest_secure(&report, (&tlsa, "TLSA"));
    println!("{attack:?} on {tlsa} TLSA: {l}");
    Ok(report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_is_transparent_without_tampering() -> Result<()> {
    let lab = common::lab()?;
    for (domain, mx, want) in [
        ("good.test", "mx1.good.test", "verified"),
        // The NSEC3 denial attacked below, untouched: a secure "no TLSA".
        ("s12.dane.test", "mx1.s12.dane.test", "none"),
        // The NSEC denial attacked below (a NODATA: the name holds a TXT), untouched.
        ("nsec.test", "mx1.nsec.test", "none"),
    ] {
        let tlsa = format!("_25._tcp.{mx}");
        let proxy = Proxy::start(
            common::NON_VALIDATING,
            &format!("{tlsa}."),
            RecordType::TLSA,
            Attack::None,
        )
        .await?;
        let report = check_through(&lab, "local", proxy.addr, domain).await?;
        assert!(proxy.seen() > 0, "{tlsa} TLSA never went through the proxy");
        assert_eq!(proxy.tampered(), 0);
        assert_eq!(host(&report, mx)["tlsa_dnssec"], "secure", "{report:#}");
        assert_rest_secure(&report, ("", ""));
        for v in verdicts(&report, mx) {
            assert_eq!(v, want, "{domain} through the idle proxy: {report:#}");
        }
    }
    Ok(())
}

/// (a) NSEC3: the secure denial of `_25._tcp.mx1.s12.dane.test` TLSA (dane.test is signed
/// with NSEC3; the name does not exist, so the denial is an NXDOMAIN) with its NSEC3 records and their RRSIGs removed. The signed
/// SOA stays: a denial without proof must not be taken for a secure "no TLSA".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripped_nsec3_denial_of_tlsa_is_dns_failure() -> Result<()> {
    attack_tlsa(
        "s12.dane.test",
        "mx1.s12.dane.test",
        Attack::StripDenialProof,
    )
    .await?;
    Ok(())
}

/// (a) NSEC: `nsec.test` is signed with NSEC, and `_25._tcp.mx1.nsec.test` holds only a TXT
/// record, so the TLSA query is a NODATA proven by an NSEC record. With that NSEC and its
/// RRSIG removed (the signed SOA kept), the host must be a DNS failure, never "no DANE".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripped_nsec_denial_of_tlsa_is_dns_failure() -> Result<()> {
    attack_tlsa("nsec.test", "mx1.nsec.test", Attack::StripDenialProof).await?;
    Ok(())
}

/// (b) The TLSA RRset of mx1.good.test without its RRSIGs; mx2's TLSA is untouched and stays
/// verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tlsa_answer_without_rrsigs_is_dns_failure() -> Result<()> {
    let report = attack_tlsa("good.test", "mx1.good.test", Attack::StripAnswerRrsigs).await?;
    for v in verdicts(&report, "mx2.good.test") {
        assert_eq!(v, "verified", "{report:#}");
    }
    Ok(())
}

/// (c) An empty NOERROR (no answer, no SOA, no proof) for the TLSA query of mx1.good.test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_empty_noerror_for_tlsa_is_dns_failure() -> Result<()> {
    let report = attack_tlsa("good.test", "mx1.good.test", Attack::EmptyNoError).await?;
    for v in verdicts(&report, "mx2.good.test") {
        assert_eq!(v, "verified", "{report:#}");
    }
    Ok(())
}

/// NSEC on an address lookup: `mx1.nsec-denied` lies under a top-level domain the lab's root
/// does not have, so its A lookup is a secure NXDOMAIN proven by the root's NSEC. With that
/// NSEC and its RRSIG removed, the host must be a DNS failure, not a host without addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripped_nsec_denial_is_dns_failure() -> Result<()> {
    let lab = common::lab()?;
    let mx = "mx1.nsec-denied";
    for attack in [Attack::None, Attack::StripDenialProof] {
        let proxy = Proxy::start(
            common::NON_VALIDATING,
            &format!("{mx}."),
            RecordType::A,
            attack,
        )
        .await?;
        let report = check_through(&lab, "local", proxy.addr, &format!("[{mx}]")).await?;
        assert!(proxy.seen() > 0, "{mx} A never went through the proxy");
        let a = lookup(&report, mx, "A").context("no A lookup in the report")?;
        assert_eq!(a["outcome"], "nx_domain", "{report:#}");
        if attack == Attack::None {
            assert_eq!(proxy.tampered(), 0);
            assert_eq!(host(&report, mx)["address_dnssec"], "secure", "{report:#}");
            assert_rest_secure(&report, ("", ""));
        } else {
            assert!(proxy.tampered() > 0, "the NSEC proof was never stripped");
            let state = &host(&report, mx)["address_dnssec"];
            assert!(
                state == "bogus" || state == "error",
                "unproven NXDOMAIN judged {state}: {report:#}"
            );
            assert!(a["dnssec"] == "bogus" || a["dnssec"] == "error", "{a}");
            assert_rest_secure(&report, (mx, "A"));
            // (A host without addresses is `dns_failure` either way; the state above is
            // what tells a proven NXDOMAIN from an unproven one.)
            for v in verdicts(&report, mx) {
                assert_eq!(v, "dns_failure", "{report:#}");
            }
            println!("{attack:?} on {mx} A: {a}");
        }
    }
    Ok(())
}

/// Upstream mode trusts the AD bit of its resolver: that is the design (docs/dnssec.md,
/// "Upstream mode"), and it is why the validating resolver must be reached over a path nobody
/// else controls (loopback; the exporter warns when it is not). This documents the current behaviour rather than a defence: a proxy between
/// the exporter and the validating resolver that forges an empty NOERROR with AD set for the
/// TLSA query is believed, and DANE is silently off for that host (`secure` NODATA, verdict
/// `none`). Local mode rejects the same forgery (`forged_empty_noerror_for_tlsa_is_dns_failure`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_mode_believes_a_forged_ad_bit() -> Result<()> {
    let lab = common::lab()?;
    let mx = "mx1.good.test";
    let tlsa = format!("_25._tcp.{mx}");
    let proxy = Proxy::start(
        common::VALIDATING,
        &format!("{tlsa}."),
        RecordType::TLSA,
        Attack::EmptyNoErrorWithAd,
    )
    .await?;
    let report = check_through(&lab, "upstream", proxy.addr, "good.test").await?;
    assert!(proxy.tampered() > 0, "the TLSA answer was never forged");
    let l = lookup(&report, &tlsa, "TLSA").context("no TLSA lookup in the report")?;
    assert_eq!(l["dnssec"], "secure", "{l}");
    assert_eq!(host(&report, mx)["tlsa_dnssec"], "secure", "{report:#}");
    assert_rest_secure(&report, ("", ""));
    for v in verdicts(&report, mx) {
        assert_eq!(v, "none", "{report:#}");
    }
    println!("forged AD in upstream mode, {tlsa} TLSA: {l}");
    for v in verdicts(&report, "mx2.good.test") {
        assert_eq!(v, "verified", "{report:#}");
    }
    Ok(())
}
