//! DNS lookups with the DNSSEC state of every RRset, in two modes, behind one cache.
//!
//! Owns: talking to the resolver, classifying each answer as `secure`, `insecure`, `bogus`
//! or `error` (RFC 4035 §4.3), the earliest RRSIG expiration (RFC 4034 §3.1.5, serial
//! arithmetic of RFC 1982), and a bounded TTL cache that coalesces concurrent lookups of
//! the same name and type (one query per name however many targets share it).
//! Files: `answer` (an `Answer` from a response, RRSIG expiry), `upstream` and `local` (the
//! two modes), `cache` (the bounded, coalescing TTL cache).
//! Not here: what to look up for a mail domain (`probe::mx`), DANE judgement (`dane`).
//!
//! Modes (docs/dnssec.md):
//! - `upstream`: a raw hickory `Client` sends RD+AD+DO to a validating resolver; AD=1 is
//!   secure, AD=0 insecure; SERVFAIL with a DNSSEC Extended DNS Error (RFC 8914) is bogus;
//!   otherwise one CD=1 re-query tells bogus (data comes back) from failure (`error`).
//! - `local`: hickory's `DnssecDnsHandle` over a retrying `NameServerPool` validates
//!   in-process from trust anchors against a non-validating recursive resolver; per-RRset
//!   proofs. Fetch failures that hickory reports as bogus (hickory #3932) are re-checked and
//!   reported as `error`.

mod answer;
mod local;
mod upstream;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hickory_net::client::Client;
use hickory_net::dnssec::DnssecDnsHandle;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::RetryDnsHandle;
use hickory_proto::dnssec::TrustAnchors;
use hickory_proto::rr::{Name, RecordType};
use hickory_resolver::config::{NameServerConfig, ResolverOpts};
use hickory_resolver::{NameServerPool, PoolContext, TlsConfig};

use super::cache::Coalescing;
use crate::config::{DnsConfig, Validation};
use crate::model::dns::{Answer, Dnssec, Outcome};

/// Upper bound on cached RRsets: when full, expired answers go first, then the oldest.
pub(crate) const DEFAULT_CACHE_ENTRIES: usize = 200_000;
/// Ceiling on how long any answer is cached, whatever its TTL.
pub(crate) const DEFAULT_CACHE_MAX_TTL: Duration = Duration::from_secs(300);
/// Failed lookups are cached this long, so a round does not hammer a broken zone.
pub(crate) const FAILURE_CACHE_TTL: Duration = Duration::from_secs(5);
/// Per-query timeout (one attempt).
pub(crate) const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(5);
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

/// Resolver handle; cheap to clone, shared by all probes.
#[derive(Clone)]
pub struct Dns {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    query_timeout: Duration,
    cache: Coalescing<(Name, RecordType), Arc<Answer>>,
    cache_max_ttl: Duration,
    queries: std::sync::atomic::AtomicU64,
}

impl Dns {
    /// Builds the resolver for `cfg`. Must run inside a tokio runtime (spawns the client task).
    pub fn new(cfg: &DnsConfig) -> Result<Self, DnsSetupError> {
        Self::with_cache(cfg, DEFAULT_CACHE_ENTRIES, DEFAULT_CACHE_MAX_TTL)
    }

    pub(crate) fn with_cache(
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
                // Unbound 1.17 / Postfix parity (docs/dnssec.md).
                .nsec3_iteration_limits(Some(150), Some(u16::MAX));
                Backend::Local { validator }
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                backend,
                query_timeout,
                cache: Coalescing::new(cache_max_entries),
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

    pub(crate) fn cache_len(&self) -> usize {
        self.inner.cache.len()
    }

    /// Looks up `rtype` at `name` through the cache.
    pub async fn lookup(&self, name: &Name, rtype: RecordType) -> Arc<Answer> {
        let name = name.to_lowercase();
        let key = (name.clone(), rtype);
        let ttl = |a: &Arc<Answer>| self.ttl_of(a);
        let fetch = || async { Arc::new(self.query(&name, rtype).await) };
        self.inner.cache.get_or_fetch(key, ttl, fetch).await
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
        self.inner.cache.clear();
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
                upstream::lookup(udp, *addr, name, rtype, self.inner.query_timeout).await
            }
            Backend::Local { validator } => local::lookup(validator, name, rtype).await,
        }
    }
}

/// Loads DNSKEY trust anchors (presentation format, one record per line).
pub(crate) fn load_trust_anchors(path: &Path) -> Result<TrustAnchors, DnsSetupError> {
    TrustAnchors::from_file(path).map_err(|e| DnsSetupError::TrustAnchor {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}
