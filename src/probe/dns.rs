//! DNS lookups with the DNSSEC state of every RRset, in two modes, behind one cache.
//!
//! Owns: talking to the resolver, classifying each answer as `secure`, `insecure`, `bogus`
//! or `error` (RFC 4035 §4.3), the earliest RRSIG expiration (RFC 4034 §3.1.5, serial
//! arithmetic of RFC 1982), and a bounded TTL cache that coalesces concurrent lookups of
//! the same name and type (one query per name however many targets share it).
//! Not here: what to look up for a mail domain (`probe::mx`), DANE judgement (`dane`).
//!
//! Modes (HICKORY-NOTES.md §2, §3):
//! - `upstream`: a raw hickory `Client` sends RD+AD+DO to a validating resolver; AD=1 is
//!   secure, AD=0 insecure; SERVFAIL with a DNSSEC Extended DNS Error (RFC 8914) is bogus;
//!   otherwise one CD=1 re-query tells bogus (data comes back) from failure (`error`).
//! - `local`: hickory's `DnssecDnsHandle` over a retrying `NameServerPool` validates
//!   in-process from trust anchors against a non-validating recursive resolver; per-RRset
//!   proofs. Fetch failures that hickory reports as bogus (hickory #3932) are re-checked and
//!   reported as `error`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hickory_net::client::Client;
use hickory_net::dnssec::DnssecDnsHandle;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::{DnsHandle, FirstAnswer, RetryDnsHandle};
use hickory_net::{DnsError, NetError};
use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::dnssec::{Proof, TrustAnchors};
use hickory_proto::op::{
    DnsRequest, DnsRequestOptions, DnsResponse, Edns, Message, Query, ResponseCode,
};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::config::{NameServerConfig, ResolverOpts};
use hickory_resolver::{NameServerPool, PoolContext, TlsConfig};
use tokio::sync::OnceCell;

use crate::config::{DnsConfig, Validation};
use crate::model::dns::{Answer, Data, Dnssec, Mx, Outcome};
use crate::model::tlsa::Tlsa;

/// Upper bound on cached RRsets; the oldest entries are dropped beyond it.
pub const DEFAULT_CACHE_ENTRIES: usize = 200_000;
/// Ceiling on how long any answer is cached, whatever its TTL.
pub const DEFAULT_CACHE_MAX_TTL: Duration = Duration::from_secs(300);
/// Failed lookups are cached this long, so a round does not hammer a broken zone.
pub const FAILURE_CACHE_TTL: Duration = Duration::from_secs(5);
/// Per-query timeout (one attempt).
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// EDNS UDP payload size (DNS flag day 2020).
const EDNS_PAYLOAD: u16 = 1232;
/// RFC 8914 EDE codes that mean "DNSSEC says bogus" (HICKORY-NOTES.md §2).
const EDE_BOGUS: [u16; 7] = [6, 7, 8, 9, 10, 11, 12];

/// A lookup that failed: no data, `reason` for people.
fn failed_answer(name: &Name, rtype: RecordType, dnssec: Dnssec, reason: String) -> Answer {
    Answer {
        name: display_name(name),
        rtype: rtype.to_string(),
        outcome: Outcome::Failed,
        dnssec,
        cnames: Vec::new(),
        data: Data::None,
        sig_expiry: None,
        reason: Some(reason),
        ttl: 0,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DnsSetupError {
    #[error("cannot read trust anchor {path}: {message}")]
    TrustAnchor { path: String, message: String },
    #[error("resolver set-up failed: {0}")]
    Setup(String),
}

enum Backend {
    Upstream {
        addr: SocketAddr,
        udp: Client<TokioRuntimeProvider>,
    },
    Local {
        validator: DnssecDnsHandle<RetryDnsHandle<NameServerPool<TokioRuntimeProvider>>>,
    },
}

struct CacheEntry {
    cell: Arc<OnceCell<Arc<Answer>>>,
    inserted: Instant,
}

/// Resolver handle; cheap to clone, shared by all probes.
#[derive(Clone)]
pub struct Dns {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    query_timeout: Duration,
    cache: Mutex<HashMap<(Name, RecordType), CacheEntry>>,
    cache_max_entries: usize,
    cache_max_ttl: Duration,
    queries: std::sync::atomic::AtomicU64,
}

impl Dns {
    /// Builds the resolver for `cfg`. Must run inside a tokio runtime (spawns the client task).
    pub fn new(cfg: &DnsConfig) -> Result<Self, DnsSetupError> {
        Self::with_cache(cfg, DEFAULT_CACHE_ENTRIES, DEFAULT_CACHE_MAX_TTL)
    }

    pub fn with_cache(
        cfg: &DnsConfig,
        cache_max_entries: usize,
        cache_max_ttl: Duration,
    ) -> Result<Self, DnsSetupError> {
        let query_timeout = DEFAULT_QUERY_TIMEOUT;
        let backend = match cfg.validation {
            Validation::Upstream => {
                let stream =
                    UdpClientStream::builder(cfg.resolver, TokioRuntimeProvider::default())
                        .with_timeout(Some(query_timeout))
                        .build();
                let (udp, bg) = Client::<TokioRuntimeProvider>::from_sender(stream);
                tokio::spawn(bg);
                Backend::Upstream {
                    addr: cfg.resolver,
                    udp,
                }
            }
            Validation::Local => {
                let anchors = match &cfg.trust_anchor {
                    Some(p) => load_trust_anchors(p)?,
                    None => TrustAnchors::default(),
                };
                let mut ns = NameServerConfig::udp_and_tcp(cfg.resolver.ip());
                for c in ns.connections.iter_mut() {
                    c.port = cfg.resolver.port();
                }
                let mut opts = ResolverOpts::default();
                opts.timeout = query_timeout;
                opts.attempts = 2;
                let tls = TlsConfig::new().map_err(|e| DnsSetupError::Setup(e.to_string()))?;
                let cx = Arc::new(PoolContext::new(opts, tls));
                let pool = NameServerPool::from_config([ns], cx, TokioRuntimeProvider::default());
                let validator = DnssecDnsHandle::with_trust_anchor(
                    RetryDnsHandle::new(pool, 2),
                    Arc::new(anchors),
                )
                // Unbound 1.17 / Postfix parity (HICKORY-NOTES.md §7.7).
                .nsec3_iteration_limits(Some(150), Some(u16::MAX));
                Backend::Local { validator }
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                backend,
                query_timeout,
                cache: Mutex::new(HashMap::new()),
                cache_max_entries,
                cache_max_ttl,
                queries: Default::default(),
            }),
        })
    }

    /// Number of queries sent upstream (cache misses), for the exporter's own metrics.
    pub fn queries_sent(&self) -> u64 {
        self.inner
            .queries
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn cache_len(&self) -> usize {
        self.inner.cache.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Looks up `rtype` at `name` through the cache.
    pub async fn lookup(&self, name: &Name, rtype: RecordType) -> Arc<Answer> {
        let key = (name.to_lowercase(), rtype);
        let cell = {
            let Ok(mut cache) = self.inner.cache.lock() else {
                return Arc::new(self.query(&key.0, rtype).await);
            };
            let now = Instant::now();
            let fresh = cache.get(&key).and_then(|e| match e.cell.get() {
                None => Some(e.cell.clone()), // in flight: share it
                Some(a) if now.duration_since(e.inserted) < self.ttl_of(a) => Some(e.cell.clone()),
                Some(_) => None,
            });
            match fresh {
                Some(c) => c,
                None => {
                    if cache.len() >= self.inner.cache_max_entries {
                        evict(&mut cache, now, |a| self.ttl_of(a));
                    }
                    let cell = Arc::new(OnceCell::new());
                    cache.insert(
                        key.clone(),
                        CacheEntry {
                            cell: cell.clone(),
                            inserted: now,
                        },
                    );
                    cell
                }
            }
        };
        cell.get_or_init(|| async { Arc::new(self.query(&key.0, rtype).await) })
            .await
            .clone()
    }

    fn ttl_of(&self, a: &Answer) -> Duration {
        if a.outcome == Outcome::Failed {
            FAILURE_CACHE_TTL
        } else {
            Duration::from_secs(u64::from(a.ttl)).min(self.inner.cache_max_ttl)
        }
    }

    /// Drops every cached answer (config reload, tests).
    pub fn clear_cache(&self) {
        if let Ok(mut c) = self.inner.cache.lock() {
            c.clear();
        }
    }

    /// Upstream mode: does the resolver validate? (`. SOA` must come back with AD=1, like
    /// Postfix's `dnssec_probe`.) Local mode: does the root validate from the anchors?
    pub async fn resolver_validates(&self) -> bool {
        let a = self.query(&Name::root(), RecordType::SOA).await;
        a.dnssec == Dnssec::Secure
    }

    async fn query(&self, name: &Name, rtype: RecordType) -> Answer {
        self.inner
            .queries
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match &self.inner.backend {
            Backend::Upstream { addr, udp } => {
                upstream_lookup(udp, *addr, name, rtype, self.inner.query_timeout).await
            }
            Backend::Local { validator } => local_lookup(validator, name, rtype).await,
        }
    }
}

fn evict(
    cache: &mut HashMap<(Name, RecordType), CacheEntry>,
    now: Instant,
    ttl_of: impl Fn(&Answer) -> Duration,
) {
    // Drop expired entries first; if that is not enough, drop the oldest half.
    cache.retain(|_, e| match e.cell.get() {
        None => true,
        Some(a) => now.duration_since(e.inserted) < ttl_of(a),
    });
    let limit = cache.len() / 2;
    if cache.len() > limit && limit > 0 {
        let mut ages: Vec<Instant> = cache.values().map(|e| e.inserted).collect();
        ages.sort_unstable();
        if let Some(cut) = ages.get(limit).copied() {
            cache.retain(|_, e| e.inserted >= cut);
        }
    }
}

/// Loads DNSKEY trust anchors (presentation format, one record per line).
pub fn load_trust_anchors(path: &Path) -> Result<TrustAnchors, DnsSetupError> {
    TrustAnchors::from_file(path).map_err(|e| DnsSetupError::TrustAnchor {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Lower case, no trailing dot ("." for the root).
pub fn display_name(n: &Name) -> String {
    let s = n.to_lowercase().to_ascii();
    match s.strip_suffix('.') {
        Some("") | None => s,
        Some(t) => t.to_string(),
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// RRSIG expiration (32-bit serial, RFC 4034 §3.1.5 / RFC 1982) → Unix seconds, taking the
/// value closest to `now` (valid until 2106 and beyond).
pub fn rrsig_time_to_unix(serial: u32, now: i64) -> i64 {
    let now32 = now as u32; // wrapping: the low 32 bits of now
    let delta = serial.wrapping_sub(now32) as i32; // RFC 1982 distance, signed
    now + i64::from(delta)
}

// ---- upstream mode ---------------------------------------------------------------------------

fn upstream_request(name: &Name, rtype: RecordType, cd: bool) -> DnsRequest {
    let mut m = Message::query();
    m.add_query(Query::query(name.clone(), rtype));
    m.metadata.recursion_desired = true;
    m.metadata.authentic_data = true; // RFC 6840 §5.7
    m.metadata.checking_disabled = cd;
    let mut e = Edns::new();
    e.set_max_payload(EDNS_PAYLOAD).set_dnssec_ok(true);
    m.edns = Some(e);
    let mut opts = DnsRequestOptions::default();
    opts.use_edns = true;
    opts.edns_set_dnssec_ok = true;
    opts.recursion_desired = true;
    DnsRequest::new(m, opts)
}

async fn upstream_send(
    udp: &Client<TokioRuntimeProvider>,
    addr: SocketAddr,
    name: &Name,
    rtype: RecordType,
    cd: bool,
    timeout: Duration,
) -> Result<DnsResponse, NetError> {
    let resp = udp
        .send(upstream_request(name, rtype, cd))
        .first_answer()
        .await?;
    if !resp.metadata.truncation {
        return Ok(resp);
    }
    // RFC 7766: retry over TCP on truncation. The raw client has no fallback of its own.
    let (fut, sender) =
        TcpClientStream::new(addr, None, Some(timeout), TokioRuntimeProvider::default());
    let stream = tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| NetError::Timeout)??;
    let (tcp, bg) = Client::<TokioRuntimeProvider>::with_timeout(stream, sender, timeout);
    let task = tokio::spawn(bg);
    let r = tcp
        .send(upstream_request(name, rtype, cd))
        .first_answer()
        .await;
    task.abort();
    r
}

/// RFC 8914 Extended DNS Errors of a response: (code, extra text).
pub fn extended_errors(m: &Message) -> Vec<(u16, String)> {
    let Some(edns) = &m.edns else {
        return Vec::new();
    };
    edns.options()
        .as_ref()
        .iter()
        .filter_map(|(_, opt)| match opt {
            EdnsOption::Unknown(15, d) if d.len() >= 2 => Some((
                u16::from_be_bytes([d[0], d[1]]),
                String::from_utf8_lossy(&d[2..]).into_owned(),
            )),
            _ => None,
        })
        .collect()
}

async fn upstream_lookup(
    udp: &Client<TokioRuntimeProvider>,
    addr: SocketAddr,
    name: &Name,
    rtype: RecordType,
    timeout: Duration,
) -> Answer {
    let resp = match upstream_send(udp, addr, name, rtype, false, timeout).await {
        Ok(r) => r,
        Err(e) => return failed_answer(name, rtype, Dnssec::Error, net_reason(&e)),
    };
    match resp.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {
            let state = if resp.metadata.authentic_data {
                Dnssec::Secure
            } else {
                Dnssec::Insecure
            };
            answer_from_message(name, rtype, &resp, |_| state, state)
        }
        ResponseCode::ServFail => {
            let ede = extended_errors(&resp);
            let ede_text = ede
                .iter()
                .map(|(c, t)| {
                    format!(
                        "EDE {c} ({}){}",
                        ede_name(*c),
                        if t.is_empty() {
                            String::new()
                        } else {
                            format!(": {t}")
                        }
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            let dnssec_ede = ede.iter().any(|(c, _)| EDE_BOGUS.contains(c));
            // One CD=1 re-query: bogus data still comes back, a dead zone does not.
            let cd = upstream_send(udp, addr, name, rtype, true, timeout).await;
            let cd_ok = matches!(&cd, Ok(r) if matches!(r.metadata.response_code, ResponseCode::NoError | ResponseCode::NXDomain));
            let (state, why) = if dnssec_ede {
                (Dnssec::Bogus, format!("SERVFAIL, {ede_text}"))
            } else if cd_ok {
                (
                    Dnssec::Bogus,
                    format!(
                        "SERVFAIL, but data with CD=1: validation failed{}",
                        if ede_text.is_empty() {
                            String::new()
                        } else {
                            format!(" ({ede_text})")
                        }
                    ),
                )
            } else {
                (
                    Dnssec::Error,
                    if ede_text.is_empty() {
                        "SERVFAIL".to_string()
                    } else {
                        format!("SERVFAIL, {ede_text}")
                    },
                )
            };
            let mut a = failed_answer(name, rtype, state, why);
            if let Ok(r) = cd {
                // The signatures of the data the resolver refused: their expiry explains a lot.
                a.sig_expiry = earliest_rrsig(r.answers.iter().chain(r.authorities.iter()), None);
            }
            a
        }
        other => failed_answer(name, rtype, Dnssec::Error, format!("rcode {other}")),
    }
}

fn ede_name(code: u16) -> &'static str {
    match code {
        0 => "Other",
        1 => "Unsupported DNSKEY Algorithm",
        2 => "Unsupported DS Digest Type",
        3 => "Stale Answer",
        5 => "DNSSEC Indeterminate",
        6 => "DNSSEC Bogus",
        7 => "Signature Expired",
        8 => "Signature Not Yet Valid",
        9 => "DNSKEY Missing",
        10 => "RRSIGs Missing",
        11 => "No Zone Key Bit Set",
        12 => "NSEC Missing",
        18 => "Prohibited",
        20 => "Not Authoritative",
        22 => "No Reachable Authority",
        23 => "Network Error",
        _ => "unknown",
    }
}

fn net_reason(e: &NetError) -> String {
    match e {
        NetError::Timeout => "timeout".to_string(),
        NetError::Dns(DnsError::ResponseCode(c)) => format!("rcode {c}"),
        other => other.to_string(),
    }
}

/// Builds an [`Answer`] from a response: follows the CNAME chain from `name` through the
/// answer section, takes the `rtype` RRset at its end; `state_of` gives each RRset's DNSSEC
/// state (records of one RRset share it), `denial_state` the state of a NODATA/NXDOMAIN.
fn answer_from_message(
    name: &Name,
    rtype: RecordType,
    msg: &Message,
    state_of: impl Fn(&Record) -> Dnssec,
    denial_state: Dnssec,
) -> Answer {
    let mut current = name.to_lowercase();
    let mut cnames = Vec::new();
    let mut state = Dnssec::Secure;
    let mut ttl = u32::MAX;
    // Follow at most 16 CNAME steps (loops and absurd chains end here).
    for _ in 0..16 {
        if rtype == RecordType::CNAME {
            break;
        }
        let Some(c) = msg
            .answers
            .iter()
            .find(|r| r.record_type() == RecordType::CNAME && r.name.to_lowercase() == current)
        else {
            break;
        };
        let RData::CNAME(target) = &c.data else { break };
        state = state.weakest(state_of(c));
        ttl = ttl.min(c.ttl);
        current = target.0.to_lowercase();
        cnames.push(display_name(&current));
    }
    let rrset: Vec<&Record> = msg
        .answers
        .iter()
        .filter(|r| r.record_type() == rtype && r.name.to_lowercase() == current)
        .collect();
    let mut sig_owner_types: Vec<(Name, RecordType)> = cnames_owners(name, &cnames);
    let (outcome, data) = if rrset.is_empty() {
        state = state.weakest(denial_state);
        for r in &msg.authorities {
            if r.record_type() == RecordType::SOA {
                ttl = ttl.min(r.ttl);
            }
        }
        let outcome = if msg.metadata.response_code == ResponseCode::NXDomain {
            Outcome::NxDomain
        } else {
            Outcome::NoData
        };
        (outcome, Data::None)
    } else {
        for r in &rrset {
            state = state.weakest(state_of(r));
            ttl = ttl.min(r.ttl);
        }
        sig_owner_types.push((current.clone(), rtype));
        (Outcome::Records, typed_data(rtype, &rrset))
    };
    let sig_expiry = if outcome == Outcome::Records {
        earliest_rrsig(msg.answers.iter(), Some(&sig_owner_types))
    } else {
        // Denial: the signatures over SOA and NSEC/NSEC3 in the authority section.
        earliest_rrsig(msg.answers.iter().chain(msg.authorities.iter()), None)
    };
    Answer {
        name: display_name(name),
        rtype: rtype.to_string(),
        outcome,
        dnssec: state,
        cnames,
        data,
        sig_expiry,
        reason: None,
        ttl: if ttl == u32::MAX { 0 } else { ttl },
    }
}

fn cnames_owners(name: &Name, cnames: &[String]) -> Vec<(Name, RecordType)> {
    // The owners of the CNAME records: the queried name and every target but the last.
    let mut owners = vec![(name.to_lowercase(), RecordType::CNAME)];
    for c in cnames.iter().take(cnames.len().saturating_sub(1)) {
        if let Ok(n) = Name::from_ascii(format!("{c}.")) {
            owners.push((n.to_lowercase(), RecordType::CNAME));
        }
    }
    if cnames.is_empty() {
        owners.clear();
    }
    owners
}

fn typed_data(rtype: RecordType, rrset: &[&Record]) -> Data {
    match rtype {
        RecordType::MX => Data::Mx(
            rrset
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(mx) => Some(Mx {
                        preference: mx.preference,
                        exchange: if mx.exchange.is_root() {
                            String::new()
                        } else {
                            display_name(&mx.exchange)
                        },
                    }),
                    _ => None,
                })
                .collect(),
        ),
        RecordType::A | RecordType::AAAA => Data::Addrs(
            rrset
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })
                .collect(),
        ),
        RecordType::TLSA => Data::Tlsa(
            rrset
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TLSA(t) => Some(Tlsa::from(t)),
                    _ => None,
                })
                .collect(),
        ),
        _ => Data::None,
    }
}

/// Earliest RRSIG expiration among `records`, optionally only those covering the given
/// (owner, type) pairs.
fn earliest_rrsig<'a>(
    records: impl Iterator<Item = &'a Record>,
    covering: Option<&[(Name, RecordType)]>,
) -> Option<i64> {
    let now = now_unix();
    records
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::RRSIG(sig)) => {
                let input = sig.input();
                let wanted = covering.is_none_or(|c| {
                    c.iter().any(|(owner, ty)| {
                        *ty == input.type_covered && r.name.to_lowercase() == *owner
                    })
                });
                wanted.then(|| rrsig_time_to_unix(input.sig_expiration.get(), now))
            }
            _ => None,
        })
        .min()
}

// ---- local mode ------------------------------------------------------------------------------

fn proof_state(p: Proof) -> Dnssec {
    match p {
        Proof::Secure => Dnssec::Secure,
        Proof::Insecure => Dnssec::Insecure,
        Proof::Bogus => Dnssec::Bogus,
        // hickory never reports Indeterminate for validated data (HICKORY-NOTES.md §7.9);
        // where it does, nothing was proven.
        _ => Dnssec::Error,
    }
}

/// DNSSEC state of a denial: the weakest proof among the authority records (RRSIGs aside).
fn denial_state(msg: &Message) -> Dnssec {
    msg.authorities
        .iter()
        .filter(|r| r.record_type() != RecordType::RRSIG)
        .map(|r| proof_state(r.proof))
        .min()
        .unwrap_or(Dnssec::Insecure)
}

async fn local_lookup(
    validator: &DnssecDnsHandle<RetryDnsHandle<NameServerPool<TokioRuntimeProvider>>>,
    name: &Name,
    rtype: RecordType,
) -> Answer {
    let mut o = DnsRequestOptions::default();
    o.edns_set_dnssec_ok = true;
    o.use_edns = true;
    let q = Query::query(name.clone(), rtype);
    let mut answer = match validator.lookup(q, o).first_answer().await {
        Ok(resp) => {
            let denial = denial_state(&resp);
            answer_from_message(name, rtype, &resp, |r| proof_state(r.proof), denial)
        }
        Err(NetError::Dns(DnsError::Nsec {
            proof, response, ..
        })) => {
            let st = proof_state(proof);
            let mut a = answer_from_message(name, rtype, &response, |r| proof_state(r.proof), st);
            if a.outcome == Outcome::Records {
                // An answer judged through its wildcard proof: the proof's state rules.
                a.dnssec = a.dnssec.weakest(st);
                if st == Dnssec::Bogus && wildcard_answer(&response, rtype) {
                    a.reason = Some(
                        "wildcard answer with NSEC proof judged bogus by hickory (known limitation, hickory #3812)".into(),
                    );
                }
            }
            a
        }
        Err(NetError::Dns(DnsError::NoRecordsFound(nr))) => {
            let st = nr
                .authorities
                .as_ref()
                .map(|a| {
                    a.iter()
                        .filter(|r| r.record_type() != RecordType::RRSIG)
                        .map(|r| proof_state(r.proof))
                        .min()
                        .unwrap_or(Dnssec::Insecure)
                })
                .unwrap_or(Dnssec::Insecure);
            let mut a = failed_answer(name, rtype, st, String::new());
            a.reason = None;
            a.outcome = if nr.response_code == ResponseCode::NXDomain {
                Outcome::NxDomain
            } else {
                Outcome::NoData
            };
            a
        }
        Err(NetError::Dns(DnsError::DnssecBogus)) => failed_answer(
            name,
            rtype,
            Dnssec::Bogus,
            "DNSSEC validation failed".into(),
        ),
        Err(e) => failed_answer(name, rtype, Dnssec::Error, net_reason(&e)),
    };
    if !answer.cnames.is_empty()
        && matches!(answer.outcome, Outcome::NoData | Outcome::NxDomain)
        && answer.dnssec != Dnssec::Secure
    {
        // hickory judges a denial reached through a CNAME into another zone against the
        // wrong name (a secure NODATA at the target came back bogus in the lab). Ask for the
        // target itself, and combine its state with the CNAME steps' own proofs.
        if let Some(fixed) = denial_via_cname(validator, name, rtype, &answer).await {
            answer = fixed;
        }
    }
    if answer.dnssec == Dnssec::Bogus && answer.outcome != Outcome::Failed {
        answer
            .reason
            .get_or_insert_with(|| "DNSSEC validation failed".into());
    }
    if answer.dnssec == Dnssec::Bogus {
        // hickory #3932/#3964: a DNSKEY/DS fetch failure comes out as bogus. Re-fetch the
        // signer's keys without validation; if that fails, nothing was proven: error.
        if let Some(why) = chain_fetch_failure(validator, name).await {
            answer.dnssec = Dnssec::Error;
            answer.reason = Some(format!("key fetch failed ({why}); not proven bogus"));
        }
    }
    answer
}

async fn denial_via_cname(
    validator: &DnssecDnsHandle<RetryDnsHandle<NameServerPool<TokioRuntimeProvider>>>,
    name: &Name,
    rtype: RecordType,
    via: &Answer,
) -> Option<Answer> {
    let target = Name::from_ascii(format!("{}.", via.canonical())).ok()?;
    let mut o = DnsRequestOptions::default();
    o.edns_set_dnssec_ok = true;
    o.use_edns = true;
    let q = |n: &Name| Query::query(n.clone(), rtype);
    // The CNAME steps' own proofs: the chain as answered for the original name, with its
    // denial counted as secure.
    let chain = match validator.lookup(q(name), o).first_answer().await {
        Ok(resp) => {
            answer_from_message(name, rtype, &resp, |r| proof_state(r.proof), Dnssec::Secure)
        }
        Err(NetError::Dns(DnsError::Nsec { response, .. })) => answer_from_message(
            name,
            rtype,
            &response,
            |r| proof_state(r.proof),
            Dnssec::Secure,
        ),
        Err(_) => return None,
    };
    if chain.cnames != via.cnames {
        return None;
    }
    let (denial, expiry) = match validator.lookup(q(&target), o).first_answer().await {
        Ok(resp)
            if resp
                .answers
                .iter()
                .all(|r| r.record_type() == RecordType::RRSIG) =>
        {
            let a = answer_from_message(
                &target,
                rtype,
                &resp,
                |r| proof_state(r.proof),
                denial_state(&resp),
            );
            (a.dnssec, a.sig_expiry)
        }
        Err(NetError::Dns(DnsError::Nsec {
            proof, response, ..
        })) => (
            proof_state(proof),
            earliest_rrsig(response.authorities.iter(), None),
        ),
        _ => return None,
    };
    let mut fixed = via.clone();
    fixed.dnssec = chain.dnssec.weakest(denial);
    fixed.sig_expiry = match (chain.sig_expiry, expiry) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    fixed.reason = None;
    Some(fixed)
}

fn wildcard_answer(msg: &Message, rtype: RecordType) -> bool {
    msg.answers.iter().any(|r| match &r.data {
        RData::DNSSEC(DNSSECRData::RRSIG(sig)) => {
            sig.input().type_covered == rtype && sig.input().num_labels < r.name.num_labels()
        }
        _ => false,
    })
}

/// Re-fetches DNSKEY and DS along `name`'s zone cut without validation; Some(reason) when
/// the fetch itself fails (timeout, SERVFAIL, I/O).
async fn chain_fetch_failure(
    validator: &DnssecDnsHandle<RetryDnsHandle<NameServerPool<TokioRuntimeProvider>>>,
    name: &Name,
) -> Option<String> {
    let inner = validator.inner();
    // Walk up from the name: each ancestor's DNSKEY (apexes answer, others are NODATA).
    let mut n = name.clone();
    loop {
        for ty in [RecordType::DNSKEY, RecordType::DS] {
            if ty == RecordType::DS && n.is_root() {
                continue;
            }
            let mut o = DnsRequestOptions::default();
            o.edns_set_dnssec_ok = true;
            match inner
                .lookup(Query::query(n.clone(), ty), o)
                .first_answer()
                .await
            {
                Ok(_) => {}
                Err(NetError::Dns(DnsError::NoRecordsFound(_)))
                | Err(NetError::Dns(DnsError::Nsec { .. })) => {}
                Err(NetError::Dns(DnsError::ResponseCode(ResponseCode::NXDomain))) => {}
                Err(e) => return Some(format!("{} {ty}: {}", display_name(&n), net_reason(&e))),
            }
        }
        if n.is_root() {
            return None;
        }
        n = n.base_name();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrsig_serial_arithmetic_spans_2106() {
        let now = 1_795_000_000; // 2026-11
        assert_eq!(rrsig_time_to_unix(now as u32 + 86_400, now), now + 86_400);
        assert_eq!(rrsig_time_to_unix(now as u32 - 86_400, now), now - 86_400);
        // RFC 1982: after 2106 the 32-bit value wraps; closest to now wins.
        let later: i64 = 4_294_967_296 + 1000;
        assert_eq!(rrsig_time_to_unix(2000, later), later + 1000);
    }

    #[test]
    fn display_name_is_lower_case_without_dot() {
        let n = Name::from_ascii("MX1.Example.ORG.").unwrap();
        assert_eq!(display_name(&n), "mx1.example.org");
        assert_eq!(display_name(&Name::root()), ".");
    }
}
