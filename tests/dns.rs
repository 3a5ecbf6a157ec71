//! The DNS layer against the lab's real resolvers: DNSSEC states in both modes, the cache that
//! coalesces lookups, and failures that must come out as `error`, never `bogus`.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use hickory_proto::op::Message;
use hickory_proto::rr::{Name, RecordType};
use mailtls_exporter::config::{DnsConfig, Validation};
use mailtls_exporter::model::dns::{Dnssec, Outcome};
use mailtls_exporter::probe::dns::Dns;
use tokio::net::UdpSocket;

fn upstream() -> DnsConfig {
    DnsConfig {
        resolver: common::VALIDATING.parse().unwrap(),
        validation: Validation::Upstream,
        trust_anchor: None,
    }
}

fn local(lab: &common::Lab, resolver: SocketAddr) -> Result<DnsConfig> {
    Ok(DnsConfig {
        resolver,
        validation: Validation::Local,
        trust_anchor: Some(lab.trust_anchor()?.into()),
    })
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lookups_of_one_name_send_one_query() -> Result<()> {
    let _lab = common::lab()?;
    // `ns.test.` A: secure, and asked by every authoritative-server check of the other tests;
    // the lab's Unbound caps TTLs at 5 s, so the RRset may come back with a TTL of 0 or 1,
    // which must not (or barely) be cached. Then wait for Unbound's copy to expire and ask
    // again: a fresh fetch carries the full TTL.
    let n = name("ns.test.");
    let mut dns = Dns::new(&upstream())?;
    for attempt in 0.. {
        dns = Dns::new(&upstream())?;
        let all = futures::future::join_all((0..50).map(|_| dns.lookup(&n, RecordType::A))).await;
        assert!(all
            .iter()
            .all(|a| a.dnssec == Dnssec::Secure && a.outcome == Outcome::Records));
        assert_eq!(
            dns.queries_sent(),
            1,
            "50 concurrent lookups must share one query"
        );
        let ttl = all.first().map_or(0, |a| a.ttl);
        if ttl >= 3 || attempt == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(u64::from(ttl) + 1)).await;
    }
    // Within the TTL the answer comes from the cache.
    let again = dns.lookup(&n, RecordType::A).await;
    assert_eq!(again.dnssec, Dnssec::Secure);
    assert_eq!(dns.queries_sent(), 1);
    // A different type is a different RRset.
    dns.lookup(&n, RecordType::SOA).await;
    assert_eq!(dns.queries_sent(), 2);
    assert!(dns.resolver_validates().await);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn states_agree_between_modes_on_the_lab() -> Result<()> {
    let lab = common::lab()?;
    let up = Dns::new(&upstream())?;
    let lo = Dns::new(&local(&lab, common::NON_VALIDATING.parse()?)?)?;
    let cases = [
        (
            "good.test.",
            RecordType::MX,
            Dnssec::Secure,
            Outcome::Records,
        ),
        (
            "_25._tcp.mx1.good.test.",
            RecordType::TLSA,
            Dnssec::Secure,
            Outcome::Records,
        ),
        (
            "mx1.good.test.",
            RecordType::AAAA,
            Dnssec::Secure,
            Outcome::NoData,
        ),
        (
            "_25._tcp.nope.good.test.",
            RecordType::TLSA,
            Dnssec::Secure,
            Outcome::NxDomain,
        ),
        (
            "s11.insecure.test.",
            RecordType::MX,
            Dnssec::Insecure,
            Outcome::Records,
        ),
        (
            "mx1.bogus.test.",
            RecordType::A,
            Dnssec::Bogus,
            Outcome::Failed,
        ),
        (
            "expired.test.",
            RecordType::MX,
            Dnssec::Bogus,
            Outcome::Failed,
        ),
        (
            "mx1.s15.dane.test.",
            RecordType::AAAA,
            Dnssec::Secure,
            Outcome::NoData,
        ),
    ];
    for (n, t, state, outcome) in cases {
        let a = up.lookup(&name(n), t).await;
        assert_eq!(
            (a.dnssec, a.outcome),
            (state, outcome),
            "upstream {n} {t}: {a:?}"
        );
        let b = lo.lookup(&name(n), t).await;
        assert_eq!(b.dnssec, state, "local {n} {t}: {b:?}");
        if state != Dnssec::Bogus {
            // Local mode sees bogus data (with its proof); upstream only a SERVFAIL.
            assert_eq!(b.outcome, outcome, "local {n} {t}: {b:?}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_resolver_is_error_not_bogus_in_both_modes() -> Result<()> {
    let lab = common::lab()?;
    // Nothing listens on this loopback address: timeouts.
    let dead: SocketAddr = "127.53.0.99:53".parse()?;
    let up = Dns::new(&DnsConfig {
        resolver: dead,
        ..upstream()
    })?;
    let a = up.lookup(&name("good.test."), RecordType::MX).await;
    assert_eq!(
        (a.dnssec, a.outcome),
        (Dnssec::Error, Outcome::Failed),
        "{a:?}"
    );
    let lo = Dns::new(&local(&lab, dead)?)?;
    let b = lo.lookup(&name("good.test."), RecordType::MX).await;
    assert_eq!(b.dnssec, Dnssec::Error, "{b:?}");
    assert!(!up.resolver_validates().await);
    Ok(())
}

/// A UDP forwarder to the non-validating resolver that drops DNSKEY queries for `good.test`
/// (hickory #3932: a key fetch failure is reported as bogus). The exporter must say `error`.
async fn dnskey_dropping_proxy() -> Result<(SocketAddr, Arc<AtomicUsize>)> {
    let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    let addr = sock.local_addr()?;
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        for _ in 0..10_000 {
            let Ok((n, client)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let query = buf[..n].to_vec();
            let drop_it = Message::from_vec(&query)
                .ok()
                .and_then(|m| m.queries.first().cloned())
                .is_some_and(|q| {
                    q.query_type() == RecordType::DNSKEY
                        && q.name().to_ascii().eq_ignore_ascii_case("good.test.")
                });
            if drop_it {
                d.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            let sock = sock.clone();
            tokio::spawn(async move {
                let Ok(up) = UdpSocket::bind("127.0.0.1:0").await else {
                    return;
                };
                if up.send_to(&query, common::NON_VALIDATING).await.is_err() {
                    return;
                }
                let mut rbuf = vec![0u8; 65535];
                if let Ok(Ok((m, _))) =
                    tokio::time::timeout(Duration::from_secs(3), up.recv_from(&mut rbuf)).await
                {
                    let _ = sock.send_to(&rbuf[..m], client).await;
                }
            });
        }
    });
    Ok((addr, dropped))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_fetch_failure_in_local_mode_is_error_not_bogus() -> Result<()> {
    let lab = common::lab()?;
    let (proxy, dropped) = dnskey_dropping_proxy().await?;
    let lo = Dns::new(&local(&lab, proxy)?)?;
    let a = lo.lookup(&name("mx1.good.test."), RecordType::A).await;
    assert!(
        dropped.load(Ordering::SeqCst) > 0,
        "the proxy never saw the DNSKEY query"
    );
    assert_eq!(a.dnssec, Dnssec::Error, "{a:?}");
    // Genuinely bogus data through the same proxy stays bogus.
    let b = lo.lookup(&name("mx1.bogus.test."), RecordType::A).await;
    assert_eq!(b.dnssec, Dnssec::Bogus, "{b:?}");
    Ok(())
}
