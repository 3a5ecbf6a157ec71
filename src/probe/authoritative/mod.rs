//! Every authoritative server: for the MX RRset and each TLSA RRset of a probe, find the zone
//! (the SOA owner in the resolver's answer, walking up past CNAMEs), its NS set and the
//! addresses of each NS host (through the configured resolver), then ask every address
//! directly (RD=0) for the RRset and the zone's SOA, and compare (`model::authoritative`).
//!
//! Owns: [`Checker`] (per-round caches of zones, NS sets and per-server answers, bounded),
//! [`annotate`] (fills `TargetReport::authoritative` and each host's
//! `tlsa_timing.on_every_server`). Files: `wire` (one question to one server, UDP then TCP).
//! Not here: the DNSSEC state of anything (`probe::dns`; the direct answers are compared,
//! never trusted), the rules of comparison (`model::authoritative`).
//! Deadline: everything ends at the probe's deadline; a silent server costs at most
//! two UDP attempts ([`wire::UDP_ATTEMPT`] each) and is "not in sync" with its reason, never a
//! probe failure. Address policy: a `/probe` of a target that is not configured asks no
//! server at a non-global address (`probe::policy`). RFC 1034 §4.3.1 (RD), RFC 1035 §4.1.1
//! (AA), RFC 7766 §5 (TCP on truncation), RFC 7671 §8.1 (every server must serve a new record).

mod wire;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::time::Instant;

use super::cache::Coalescing;
use super::dns::Dns;
use super::policy::AddressPolicy;
use crate::config::AuthoritativeConfig;
use crate::model::authoritative::{RrsetSync, ServerAnswer};
use crate::model::dns::{Data, Outcome};
use crate::model::report::TargetReport;
use crate::model::tlsa::Tlsa;

/// Entries of each per-round cache (zones of names, server sets of zones, answers).
const CACHE_ENTRIES: usize = 20_000;
/// Failures (no zone, no servers) are cached this long, so a round does not hammer them.
const FAILURE_TTL: Duration = Duration::from_secs(5);
/// Records kept per answered RRset; a larger RRset is compared on its first ones only.
pub(crate) const MAX_RECORDS: usize = 64;
/// NS host names of one zone looked up (their addresses are then cut to `max_servers`).
const MAX_NS_NAMES: usize = 16;
/// Port of every authoritative server asked.
const DNS_PORT: u16 = 53;

/// The authoritative servers of one zone: (NS host name, address), in name order.
#[derive(Debug, Clone)]
struct Servers {
    zone: Name,
    list: Vec<(String, IpAddr)>,
}

/// One server's answer: the RRset in canonical form (empty for NODATA/NXDOMAIN), or why not.
type Reply = Result<BTreeSet<String>, String>;

/// Asks authoritative servers; cheap to share, one per probe context.
pub(crate) struct Checker {
    resolver: SocketAddr,
    max_servers: usize,
    /// How long a zone, server set or answer is reused: one round.
    round: Duration,
    zones: Coalescing<Name, Arc<Result<Name, String>>>,
    servers: Coalescing<Name, Arc<Result<Servers, String>>>,
    answers: Coalescing<(IpAddr, Name, RecordType), Arc<Reply>>,
    /// Questions sent (to the resolver and to authoritative servers): cache misses.
    queries: AtomicU64,
}

impl Checker {
    pub(crate) fn new(resolver: SocketAddr, cfg: AuthoritativeConfig, round: Duration) -> Self {
        Self {
            resolver,
            max_servers: cfg.max_servers.max(1),
            round,
            zones: Coalescing::new(CACHE_ENTRIES),
            servers: Coalescing::new(CACHE_ENTRIES),
            answers: Coalescing::new(CACHE_ENTRIES),
            queries: AtomicU64::new(0),
        }
    }

    pub(crate) fn queries_sent(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    fn ttl_of<T, E>(&self, r: &Result<T, E>) -> Duration {
        if r.is_ok() {
            self.round
        } else {
            FAILURE_TTL.min(self.round)
        }
    }

    async fn ask(
        &self,
        server: SocketAddr,
        name: &Name,
        rtype: RecordType,
        recursion: bool,
        deadline: Instant,
    ) -> Result<Message, String> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        wire::ask(server, name, rtype, recursion, deadline)
            .await
            .map_err(|e| {
                tracing::debug!(server = %server, name = %name, reason = e.reason(), "authoritative check: no answer");
                e.to_string()
            })
    }

    /// The zone `name` is in: the owner of the SOA in the resolver's answer or authority
    /// section that encloses `name`; up one label when there is none (a CNAME elsewhere).
    async fn zone_of(&self, name: &Name, deadline: Instant) -> Arc<Result<Name, String>> {
        let fetch = || async {
            let mut candidate = name.clone();
            loop {
                let m = self
                    .ask(self.resolver, &candidate, RecordType::SOA, true, deadline)
                    .await?;
                if !matches!(
                    m.metadata.response_code,
                    ResponseCode::NoError | ResponseCode::NXDomain
                ) {
                    return Err(format!(
                        "the resolver answered {} for the SOA of {candidate}",
                        m.metadata.response_code
                    ));
                }
                if let Some(zone) = enclosing_soa(&m, &candidate) {
                    return Ok(zone);
                }
                if candidate.is_root() {
                    return Err(format!("no SOA found above {name}"));
                }
                candidate = candidate.base_name();
            }
        };
        let key = name.to_lowercase();
        self.zones
            .get_or_fetch(
                key,
                |r| self.ttl_of(r.as_ref()),
                || async { Arc::new(fetch().await) },
            )
            .await
    }

    /// The NS set of `zone` and the addresses of its hosts (A and AAAA through `dns`), at
    /// most `max_servers` addresses.
    async fn servers_of(
        &self,
        dns: &Dns,
        zone: &Name,
        deadline: Instant,
    ) -> Arc<Result<Servers, String>> {
        let fetch = || async {
            let m = self
                .ask(self.resolver, zone, RecordType::NS, true, deadline)
                .await?;
            let mut hosts: Vec<Name> = m
                .answers
                .iter()
                .filter(|r| r.name == *zone)
                .filter_map(|r| match &r.data {
                    RData::NS(ns) => Some(ns.0.to_lowercase()),
                    _ => None,
                })
                .collect();
            hosts.sort();
            hosts.dedup();
            hosts.truncate(MAX_NS_NAMES);
            if hosts.is_empty() {
                return Err(format!("no NS records for {zone}"));
            }
            let lookups = hosts.iter().map(|h| async move {
                let mut ips = Vec::new();
                for t in [RecordType::A, RecordType::AAAA] {
                    let a = tokio::time::timeout_at(deadline, dns.lookup(h, t))
                        .await
                        .ok();
                    if let Some(Data::Addrs(v)) = a
                        .as_ref()
                        .filter(|a| a.outcome == Outcome::Records)
                        .map(|a| &a.data)
                    {
                        ips.extend(v.iter().copied());
                    }
                }
                (display(h), ips)
            });
            let mut list: Vec<(String, IpAddr)> = futures::future::join_all(lookups)
                .await
                .into_iter()
                .flat_map(|(h, ips)| ips.into_iter().map(move |ip| (h.clone(), ip)))
                .collect();
            list.sort();
            list.dedup();
            list.truncate(self.max_servers);
            if list.is_empty() {
                return Err(format!("no address for any NS host of {zone}"));
            }
            Ok(Servers {
                zone: zone.clone(),
                list,
            })
        };
        let key = zone.to_lowercase();
        self.servers
            .get_or_fetch(
                key,
                |r| self.ttl_of(r.as_ref()),
                || async { Arc::new(fetch().await) },
            )
            .await
    }

    /// What `ip` serves for `rtype` at `name`, asked directly (RD=0); shared for the round
    /// unless `fresh`.
    async fn answer_of(
        &self,
        ip: IpAddr,
        name: &Name,
        rtype: RecordType,
        fresh: bool,
        deadline: Instant,
    ) -> Arc<Reply> {
        let fetch = || async {
            let server = SocketAddr::new(ip, DNS_PORT);
            let m = self.ask(server, name, rtype, false, deadline).await?;
            rrset_of(&m, name, rtype)
        };
        if fresh {
            return Arc::new(fetch().await);
        }
        let key = (ip, name.to_lowercase(), rtype);
        self.answers
            .get_or_fetch(
                key,
                |r| self.ttl_of(r.as_ref()),
                || async { Arc::new(fetch().await) },
            )
            .await
    }

    /// One RRset on every server of its zone.
    async fn check_rrset(
        &self,
        dns: &Dns,
        name: &Name,
        rtype: RecordType,
        policy: AddressPolicy,
        fresh: bool,
        deadline: Instant,
    ) -> RrsetSync {
        let mut out = RrsetSync {
            name: display(name),
            rtype: rtype.to_string(),
            zone: None,
            in_sync: None,
            servers: Vec::new(),
            error: None,
        };
        let zone = match self.zone_of(name, deadline).await.as_ref() {
            Ok(z) => z.clone(),
            Err(e) => {
                out.error = Some(e.clone());
                return out;
            }
        };
        out.zone = Some(display(&zone));
        let servers = match self.servers_of(dns, &zone, deadline).await.as_ref() {
            Ok(s) => s.clone(),
            Err(e) => {
                out.error = Some(e.clone());
                return out;
            }
        };
        let asks = servers.list.iter().map(|(host, ip)| {
            let zone = &servers.zone;
            async move {
                let mut a = ServerAnswer {
                    server: host.clone(),
                    address: *ip,
                    serial: None,
                    records: None,
                    current: None,
                    error: None,
                };
                if let Err(refused) = policy.check(*ip) {
                    a.error = Some(refused.to_string());
                    return a;
                }
                let (rrset, soa) = futures::future::join(
                    self.answer_of(*ip, name, rtype, fresh, deadline),
                    self.answer_of(*ip, zone, RecordType::SOA, fresh, deadline),
                )
                .await;
                match rrset.as_ref() {
                    Ok(r) => a.records = Some(r.clone()),
                    Err(e) => a.error = Some(e.clone()),
                }
                match soa.as_ref() {
                    Ok(r) => a.serial = r.iter().find_map(|s| s.parse().ok()),
                    Err(e) => {
                        a.error.get_or_insert_with(|| e.clone());
                    }
                }
                a
            }
        });
        out.servers = futures::future::join_all(asks).await;
        out.judge();
        out
    }
}

/// Lower case, no trailing dot ("." for the root).
fn display(n: &Name) -> String {
    let s = n.to_lowercase().to_ascii();
    match s.strip_suffix('.') {
        Some("") | None => s,
        Some(t) => t.to_string(),
    }
}

fn fqdn(name: &str) -> Option<Name> {
    Name::from_ascii(format!("{}.", name.trim_end_matches('.'))).ok()
}

/// The owner of an SOA record in the answer or authority section that encloses `name`.
fn enclosing_soa(m: &Message, name: &Name) -> Option<Name> {
    m.answers
        .iter()
        .chain(m.authorities.iter())
        .filter(|r| r.record_type() == RecordType::SOA && r.name.zone_of(name))
        .map(|r| r.name.to_lowercase())
        .max_by_key(Name::num_labels)
}

/// The RRset of `rtype` at `name` in a direct answer, in canonical presentation form: TLSA as
/// `Tlsa::presentation`, MX as `10 mx1.example.org`, a CNAME at the name as `CNAME target`,
/// SOA as its serial. The server must be authoritative (AA, RFC 1035 §4.1.1).
fn rrset_of(m: &Message, name: &Name, rtype: RecordType) -> Result<BTreeSet<String>, String> {
    let rcode = m.metadata.response_code;
    if !matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain) {
        return Err(format!("answered {rcode}"));
    }
    if !m.metadata.authoritative {
        return Err("not authoritative for the zone (lame delegation)".into());
    }
    Ok(m.answers
        .iter()
        .filter(|r| r.name == *name)
        .filter_map(|r| match (&r.data, rtype) {
            (RData::TLSA(t), RecordType::TLSA) => Some(Tlsa::from(t).presentation()),
            (RData::MX(mx), RecordType::MX) => {
                Some(format!("{} {}", mx.preference, display(&mx.exchange)))
            }
            (RData::SOA(soa), RecordType::SOA) => Some(soa.serial.to_string()),
            (RData::CNAME(c), _) => Some(format!("CNAME {}", display(&c.0))),
            _ => None,
        })
        .take(MAX_RECORDS)
        .collect())
}

/// The RRsets of a report the authoritative servers are asked for: the MX RRset of a domain
/// (when there is one) and the TLSA RRset of every host that has records.
fn rrsets_of(report: &TargetReport) -> Vec<(Name, RecordType)> {
    let mut out = Vec::new();
    let mx = report
        .lookups
        .iter()
        .find(|a| a.rtype == "MX" && a.outcome == Outcome::Records);
    if let Some(name) = mx
        .filter(|_| !report.implicit_mx)
        .and_then(|a| fqdn(&a.name))
    {
        out.push((name, RecordType::MX));
    }
    for h in &report.hosts {
        let Some(base) = h
            .tlsa_base
            .as_deref()
            .filter(|_| !h.tlsa_records.is_empty())
        else {
            continue;
        };
        if let Some(name) = fqdn(&format!("_{}._tcp.{base}", h.port)) {
            out.push((name, RecordType::TLSA));
        }
    }
    out.dedup();
    out
}

/// Asks every authoritative server for the report's MX and TLSA RRsets by `deadline`, and
/// fills `report.authoritative` and every host's `tlsa_timing.on_every_server`.
pub(crate) async fn annotate(
    checker: &Checker,
    dns: &Dns,
    report: &mut TargetReport,
    policy: AddressPolicy,
    fresh: bool,
    deadline: Instant,
) {
    let wanted = rrsets_of(report);
    let checks = wanted
        .iter()
        .map(|(name, rtype)| checker.check_rrset(dns, name, *rtype, policy, fresh, deadline));
    report.authoritative = futures::future::join_all(checks).await;
    for h in &mut report.hosts {
        let Some(base) = h.tlsa_base.as_deref() else {
            continue;
        };
        let name = format!("_{}._tcp.{}", h.port, base.trim_end_matches('.')).to_lowercase();
        let Some(sync) = report
            .authoritative
            .iter()
            .find(|s| s.rtype == "TLSA" && s.name == name)
        else {
            continue;
        };
        h.tlsa_timing.on_every_server = h
            .tlsa_records
            .iter()
            .map(|t| sync.on_every_server(&t.presentation()))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, MessageType};
    use hickory_proto::rr::rdata::tlsa::{CertUsage, Matching, Selector};
    use hickory_proto::rr::rdata::{MX, SOA, TLSA};
    use hickory_proto::rr::Record;

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn soa(owner: &str, serial: u32) -> Record {
        Record::from_rdata(
            n(owner),
            5,
            RData::SOA(SOA::new(
                n("ns1.example.test."),
                n("h.example.test."),
                serial,
                10,
                5,
                86400,
                5,
            )),
        )
    }

    fn response(aa: bool) -> Message {
        let mut m = Message::query();
        m.metadata.message_type = MessageType::Response;
        m.metadata.authoritative = aa;
        m
    }

    #[test]
    fn the_zone_is_the_closest_enclosing_soa_owner() {
        // RFC 2308 §3: a negative answer carries the zone's SOA in the authority section.
        let mut m = response(false);
        m.authorities.push(soa("example.test.", 7));
        let name = n("_25._tcp.mx1.example.test.");
        assert_eq!(enclosing_soa(&m, &name), Some(n("example.test.")));
        // an SOA of an unrelated zone (a CNAME target elsewhere) does not count
        let mut other = response(false);
        other.authorities.push(soa("elsewhere.test.", 7));
        assert_eq!(enclosing_soa(&other, &name), None);
        // at the apex the SOA is the answer itself
        let mut apex = response(false);
        apex.answers.push(soa("example.test.", 7));
        assert_eq!(
            enclosing_soa(&apex, &n("example.test.")),
            Some(n("example.test."))
        );
    }

    #[test]
    fn a_direct_answer_must_be_authoritative() {
        // RFC 1035 §4.1.1 AA: a lame server answers from elsewhere, or refers.
        let name = n("example.test.");
        let mut m = response(false);
        m.answers.push(soa("example.test.", 7));
        assert!(rrset_of(&m, &name, RecordType::SOA).is_err());
        m.metadata.authoritative = true;
        let set = rrset_of(&m, &name, RecordType::SOA).unwrap();
        assert_eq!(set.into_iter().collect::<Vec<_>>(), ["7"]);
        let mut refused = response(true);
        refused.metadata.response_code = ResponseCode::Refused;
        assert!(rrset_of(&refused, &name, RecordType::SOA).is_err());
    }

    #[test]
    fn rrsets_compare_as_sets_of_canonical_rdata() {
        let name = n("_25._tcp.mx1.example.test.");
        let tlsa = |d: u8| {
            Record::from_rdata(
                name.clone(),
                5,
                RData::TLSA(TLSA::new(
                    CertUsage::DaneEe,
                    Selector::Spki,
                    Matching::Sha256,
                    vec![d; 32],
                )),
            )
        };
        let mut a = response(true);
        a.answers.extend([tlsa(1), tlsa(2)]);
        let mut b = response(true);
        b.answers.extend([tlsa(2), tlsa(1)]);
        // Case of the owner and the order of records do not matter.
        b.answers[0].name = n("_25._TCP.MX1.Example.test.");
        let (ra, rb) = (
            rrset_of(&a, &name, RecordType::TLSA).unwrap(),
            rrset_of(&b, &name, RecordType::TLSA).unwrap(),
        );
        assert_eq!(ra, rb);
        let first = Tlsa::from(&TLSA::new(
            CertUsage::DaneEe,
            Selector::Spki,
            Matching::Sha256,
            vec![1; 32],
        ));
        assert!(
            ra.contains(&first.presentation()),
            "same form as the report's records"
        );
        // NODATA: an empty set, not an error
        let empty = rrset_of(&response(true), &name, RecordType::TLSA).unwrap();
        assert!(empty.is_empty());
        // MX in `preference exchange` form
        let mut mx = response(true);
        mx.answers.push(Record::from_rdata(
            n("example.test."),
            5,
            RData::MX(MX::new(10, n("MX1.example.test."))),
        ));
        let set = rrset_of(&mx, &n("example.test."), RecordType::MX).unwrap();
        assert_eq!(set.into_iter().collect::<Vec<_>>(), ["10 mx1.example.test"]);
    }

    #[test]
    fn the_report_asks_for_the_mx_rrset_and_each_hosts_tlsa_rrset() {
        use crate::model::fixture::complete_report;
        let r = complete_report();
        let asked = rrsets_of(&r);
        let with_tlsa = r
            .hosts
            .iter()
            .filter(|h| h.tlsa_base.is_some() && !h.tlsa_records.is_empty())
            .count();
        assert_eq!(
            asked.iter().filter(|(_, t)| *t == RecordType::TLSA).count(),
            with_tlsa
        );
        assert!(asked.iter().all(|(n, _)| n.is_fqdn()));
    }
}
