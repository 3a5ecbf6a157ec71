//! One probe of one target: DNS (MX, addresses, TLSA) → SMTP/TLS per address → verdicts.
//!
//! Owns: the order of steps for a next hop, the per-target deadline, sharing SMTP probes of
//! an address between targets within a round ([`SmtpCache`]), the fan-out bound (at most
//! [`MAX_SMTP_PER_PROBE`] SMTP connections of one probe at once), and assembling a plain
//! [`TargetReport`]. All DNS of a target is done before its first SMTP connection, so an
//! [`AddressPolicy`] can stop the probe before it connects anywhere.
//!
//! Deadline: one instant per target probe (`timeout` after its start, or sooner for a
//! `/probe` whose scrape ends sooner). Every DNS step and every SMTP/TLS phase ends at it on
//! its own, so a slow or silent address fails on its own phase with its own reason and the
//! rest of the report is kept. Only a probe whose DNS did not finish in time is reported as
//! timed out as a whole; an outer timeout, slightly later, is a last resort for a step that
//! would not end by itself. Steps live in their own files: `dns` (lookups + DNSSEC), `mx`
//! (which names to look up, RFC 7672 §2.2), `policy` (which addresses may be connected to),
//! `smtp` and `tls` (the dialogue).
//! Not here: judging TLSA records (`dane`), certificate facts (`cert`), metrics.

pub(crate) mod authoritative;
mod cache;
pub mod dns;
mod mta_sts;
pub(crate) mod mx;
pub(crate) mod policy;
mod shared;
pub mod smtp;
pub mod tls;
mod verdict;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::{timeout_at, Instant};

use crate::cert::PkixRoots;
use crate::config::Config;
use crate::model::dns::{Answer, Dnssec};
use crate::model::report::{AddressReport, HostReport, TargetReport};
use crate::model::smtp::SmtpReport;
use crate::target::{NextHop, TlsMode};
use dns::Dns;
pub use policy::AddressPolicy;
pub(crate) use policy::Refused;
pub(crate) use shared::SmtpCache;
use smtp::SmtpOptions;
use tokio::sync::Semaphore;
#[cfg(test)]
use verdict::judge;
use verdict::{observe, observe_and_judge};

/// How long after the target deadline the last-resort timeout replaces the whole report.
/// Every step ends at the deadline by itself; this only catches one that would not.
pub(crate) const LAST_RESORT_SLACK: Duration = Duration::from_secs(1);
/// SMTP connections one probe may have open at once. A domain expands to at most
/// [`mx::MAX_MX_HOSTS`] × [`mx::MAX_ADDRESSES_PER_HOST`] addresses; they take turns.
pub(crate) const MAX_SMTP_PER_PROBE: usize = 16;

/// Everything a probe needs that outlives it: resolver, TLS config, roots, shared SMTP results.
pub struct ProbeContext {
    pub dns: Dns,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub(crate) roots: Arc<PkixRoots>,
    pub(crate) helo_name: String,
    /// `smtp.ehlo_after_tls`: the second EHLO over TLS after STARTTLS.
    pub(crate) ehlo_after_tls: bool,
    /// Budget of one target probe (DNS + all MX hosts), from its start.
    pub(crate) timeout: Duration,
    pub(crate) smtp_cache: SmtpCache,
    /// The `tls:` overrides of configured targets (at most `MAX_TARGETS`), so that `/probe`
    /// and `check` of such a target speak as the scheduler does.
    pub(crate) tls_overrides: HashMap<NextHop, TlsMode>,
    /// SMTP dialogues actually run (cache misses).
    pub(crate) smtp_probes: AtomicU64,
    /// Asks every authoritative server (`dns.authoritative_check`); `None` when off.
    pub(crate) authoritative: Option<authoritative::Checker>,
    /// MTA-STS policies fetched this round.
    pub(crate) policies: mta_sts::PolicyCache,
    /// Signature checks of every served chain, by content: a CA's signature by its root is
    /// verified once for all the leaves it issued, a leaf shared by several targets' MX
    /// hosts once for all of them (`cert::SignatureMemo`).
    pub(crate) signatures: crate::cert::SignatureMemo,
}

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error(transparent)]
    Dns(#[from] dns::DnsSetupError),
    #[error("PKIX roots: {0}")]
    Roots(String),
}

impl ProbeContext {
    /// Builds the context for `cfg`: resolver, TLS client config, PKIX roots. Needs a runtime.
    pub fn new(cfg: &Config) -> Result<Self, ContextError> {
        let roots = match &cfg.ca_file {
            Some(p) => {
                PkixRoots::from_pem_file(p).map_err(|e| ContextError::Roots(e.to_string()))?
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                PkixRoots::from_der_certs(found.certs)
            }
        };
        Ok(Self {
            dns: Dns::new(&cfg.dns)?,
            tls: tls::client_config(),
            roots: Arc::new(roots),
            helo_name: cfg.helo_name.clone(),
            ehlo_after_tls: cfg.ehlo_after_tls,
            timeout: cfg.timeout,
            // One SMTP probe per address per round: results are reused for most of an interval.
            smtp_cache: SmtpCache::new(cfg.interval.mul_f64(0.9)),
            tls_overrides: cfg
                .targets
                .iter()
                .filter_map(|t| Some((t.hop.clone(), t.tls?)))
                .collect(),
            smtp_probes: AtomicU64::new(0),
            authoritative: cfg.authoritative.enabled.then(|| {
                authoritative::Checker::new(
                    cfg.dns.resolver,
                    cfg.authoritative,
                    cfg.interval.mul_f64(0.9),
                )
            }),
            policies: mta_sts::PolicyCache::new(cfg.interval.mul_f64(0.9)),
            signatures: crate::cert::SignatureMemo::shared(),
        })
    }

    /// Questions sent by the authoritative-server check (cache misses), for benchmarks.
    pub fn authoritative_queries(&self) -> u64 {
        self.authoritative
            .as_ref()
            .map_or(0, authoritative::Checker::queries_sent)
    }
}

/// How to run one probe.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProbeOptions {
    /// Run SMTP dialogues now instead of reusing this round's (`/probe`, `check`).
    pub fresh: bool,
    /// Keep the SMTP transcript (debug output).
    pub transcript: bool,
    /// Which addresses may be connected to; checked on every address before the first
    /// connection of the probe.
    pub addresses: AddressPolicy,
    /// A deadline shorter than the context's `timeout` (a `/probe` whose scrape ends sooner).
    pub deadline: Option<Duration>,
    /// How TLS starts; `None`: the target's `tls:` from the config, else as the port
    /// implies (implicit TLS on 465, RFC 8314 §3.3; STARTTLS elsewhere).
    pub tls: Option<TlsMode>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Probes `hop` (labelled `target`) within the context's deadline. Never fails: every
/// problem ends up in the report (an address refused by `opts.addresses` too).
pub async fn probe_target(
    ctx: &ProbeContext,
    target: &str,
    hop: &NextHop,
    opts: ProbeOptions,
) -> TargetReport {
    let started = Instant::now();
    match probe_checked(ctx, target, hop, opts).await {
        Ok(r) => r,
        Err(refused) => {
            let mut r = empty_report(target, hop);
            r.error = Some(refused.to_string());
            r.duration_seconds = started.elapsed().as_secs_f64();
            r.timestamp = unix_now();
            r
        }
    }
}

/// As [`probe_target`], but a probe that `opts.addresses` stops (before any SMTP
/// connection) is an `Err` saying which address and why.
#[tracing::instrument(skip_all, fields(target = %target))]
pub(crate) async fn probe_checked(
    ctx: &ProbeContext,
    target: &str,
    hop: &NextHop,
    mut opts: ProbeOptions,
) -> Result<TargetReport, Refused> {
    let started = Instant::now();
    if opts.tls.is_none() {
        opts.tls = ctx.tls_overrides.get(hop).copied();
    }
    let budget = opts.deadline.map_or(ctx.timeout, |d| d.min(ctx.timeout));
    let deadline = started + budget;
    let probe = run(ctx, target, hop, opts, deadline);
    let mut report = match timeout_at(deadline + LAST_RESORT_SLACK, probe).await {
        Ok(r) => r?,
        Err(_) => {
            let mut r = empty_report(target, hop);
            r.error = Some(format!("probe timed out after {budget:?}"));
            r
        }
    };
    if let Some(checker) = &ctx.authoritative {
        // Within the same budget: every question ends at the deadline on its own.
        let fresh = opts.fresh || opts.transcript;
        let check = authoritative::annotate(
            checker,
            &ctx.dns,
            &mut report,
            opts.addresses,
            fresh,
            deadline,
        );
        let _ = timeout_at(deadline + LAST_RESORT_SLACK, check).await;
    }
    report.duration_seconds = started.elapsed().as_secs_f64();
    report.timestamp = unix_now();
    report.success = report.compute_success();
    Ok(report)
}

fn empty_report(target: &str, hop: &NextHop) -> TargetReport {
    TargetReport {
        target: target.to_string(),
        kind: hop.kind(),
        timestamp: 0.0,
        duration_seconds: 0.0,
        mx_dnssec: None,
        mx: Vec::new(),
        implicit_mx: false,
        null_mx: false,
        hosts: Vec::new(),
        lookups: Vec::new(),
        authoritative: Vec::new(),
        error: None,
        success: false,
        mta_sts: None,
        tlsrpt: None,
        staged: Vec::new(),
    }
}

/// The report's error when the DNS a probe depends on did not finish by its deadline.
fn dns_timed_out(ctx: &ProbeContext, what: &str) -> String {
    format!("probe timed out after {:?}: {what}", ctx.timeout)
}

async fn run(
    ctx: &ProbeContext,
    target: &str,
    hop: &NextHop,
    opts: ProbeOptions,
    deadline: Instant,
) -> Result<TargetReport, Refused> {
    let mut report = empty_report(target, hop);
    let slots = Semaphore::new(MAX_SMTP_PER_PROBE);
    let slots = &slots;
    match hop {
        NextHop::Address { ip, port } => {
            opts.addresses.check(*ip)?;
            let addr = SocketAddr::new(*ip, *port);
            let smtp = smtp_probe(ctx, addr, None, opts, deadline, slots).await;
            let mut a = observe(ctx, Some(addr.ip()), Some(smtp), None);
            a.why = "address target: no DNS, no DANE verdict".into();
            report.hosts.push(HostReport {
                mx: ip.to_string(),
                preference: None,
                port: *port,
                address_dnssec: None,
                tlsa_base: None,
                tlsa_records: Vec::new(),
                tlsa_dnssec: None,
                tlsa_timing: Default::default(),
                dane_applies: false,
                addresses: vec![a],
                notes: Vec::new(),
            });
        }
        NextHop::Host { host, port } => {
            let plan = mx::HostPlan {
                mx: host.clone(),
                preference: None,
                port: *port,
                next_hop: host.clone(),
                mx_secure: true,
            };
            let (hd, dns_done) = resolve_host_by(ctx, &plan, deadline).await;
            if !dns_done {
                report.error = Some(dns_timed_out(ctx, "the host's DNS lookups did not finish"));
            }
            check_addresses(opts.addresses, [&hd])?;
            let (h, lookups) = probe_host(ctx, plan, hd, opts, deadline, slots).await;
            report.lookups.extend(lookups);
            report.hosts.push(h);
        }
        NextHop::Domain(domain) => {
            // The policies beside DANE run alongside, under the same deadline.
            let (dane, policies) = tokio::join!(
                run_domain(ctx, &mut report, domain, opts, deadline, slots),
                mta_sts::probe_policies(ctx, domain, opts, deadline)
            );
            dane?;
            report.lookups.extend(policies.lookups);
            let mut sts = policies.sts;
            sts.judge_all(&report.hosts);
            report.mta_sts = Some(sts);
            report.tlsrpt = Some(policies.tlsrpt);
        }
    }
    Ok(report)
}

/// A mail domain target: the MX lookup, then every MX host's DNS and SMTP.
async fn run_domain(
    ctx: &ProbeContext,
    report: &mut TargetReport,
    domain: &str,
    opts: ProbeOptions,
    deadline: Instant,
    slots: &Semaphore,
) -> Result<(), Refused> {
    let Ok(set) = timeout_at(deadline, mx::resolve_mx(&ctx.dns, domain)).await else {
        report.error = Some(dns_timed_out(ctx, "the MX lookup did not finish"));
        return Ok(());
    };
    report.lookups.push(set.answer.clone());
    report.mx_dnssec = Some(set.answer.dnssec);
    report.implicit_mx = set.implicit;
    report.null_mx = set.null;
    report.error = set.error.clone();
    report.mx = set.hosts.iter().map(|h| (h.0, h.1.clone())).collect();
    let mx_secure = set.answer.dnssec == Dnssec::Secure;
    let plans = set.hosts.iter().map(|(pref, name)| mx::HostPlan {
        mx: name.clone(),
        preference: Some(*pref),
        port: crate::target::DEFAULT_PORT,
        next_hop: domain.to_string(),
        mx_secure,
    });
    let results = if opts.addresses == AddressPolicy::Any {
        // Each host on its own: one host's slow DNS never delays the others' SMTP.
        let probes = plans.map(|p| async move {
            let (hd, done) = resolve_host_by(ctx, &p, deadline).await;
            (probe_host(ctx, p, hd, opts, deadline, slots).await, done)
        });
        futures::future::join_all(probes).await
    } else {
        // Every host's DNS first: the policy sees all addresses before any connection.
        let resolved = futures::future::join_all(plans.map(|p| async move {
            let (hd, done) = resolve_host_by(ctx, &p, deadline).await;
            (p, hd, done)
        }))
        .await;
        check_addresses(opts.addresses, resolved.iter().map(|(_, hd, _)| hd))?;
        let probes = resolved.into_iter().map(|(p, hd, done)| async move {
            (probe_host(ctx, p, hd, opts, deadline, slots).await, done)
        });
        futures::future::join_all(probes).await
    };
    if !results.is_empty() && results.iter().all(|(_, done)| !done) {
        report.error = Some(dns_timed_out(ctx, "no MX host's DNS lookups finished"));
    }
    for ((h, lookups), _) in results {
        report.lookups.extend(lookups);
        report.hosts.push(h);
    }
    Ok(())
}

/// The first address of `hosts` that `policy` forbids, as the refusal.
fn check_addresses<'a>(
    policy: AddressPolicy,
    hosts: impl IntoIterator<Item = &'a mx::HostDns>,
) -> Result<(), Refused> {
    hosts
        .into_iter()
        .flat_map(|hd| hd.addrs.iter())
        .try_for_each(|ip| policy.check(*ip))
}

/// DNS for one host (addresses, TLSA) by `deadline`, and whether it finished in time (if
/// not, the host is `dns_failure`, as it is for a DANE sender whose lookups time out, and
/// has no address to probe).
async fn resolve_host_by(
    ctx: &ProbeContext,
    plan: &mx::HostPlan,
    deadline: Instant,
) -> (mx::HostDns, bool) {
    match timeout_at(deadline, mx::resolve_host(&ctx.dns, plan)).await {
        Ok(hd) => (hd, true),
        Err(_) => {
            let hd = mx::HostDns {
                dns_failure: Some(format!(
                    "the address or TLSA lookups of {} did not finish within the probe timeout ({:?})",
                    plan.mx, ctx.timeout
                )),
                ..mx::HostDns::default()
            };
            (hd, false)
        }
    }
}

/// Every address of one host, its DNS (addresses, TLSA) done, all by `deadline`.
async fn probe_host(
    ctx: &ProbeContext,
    plan: mx::HostPlan,
    hd: mx::HostDns,
    opts: ProbeOptions,
    deadline: Instant,
    slots: &Semaphore,
) -> (HostReport, Vec<Arc<Answer>>) {
    let sni = hd
        .tlsa_base
        .clone()
        .filter(|_| hd.dane_applies)
        .unwrap_or_else(|| plan.mx.clone());
    let addresses: Vec<AddressReport> = if hd.addrs.is_empty() {
        vec![observe_and_judge(ctx, &plan, &hd, None, None, None)]
    } else {
        let mx_name = plan.mx.as_str();
        let (plan_ref, hd_ref) = (&plan, &hd);
        let probes = hd.addrs.iter().map(|ip| {
            let sni = sni.clone();
            async move {
                let addr = SocketAddr::new(*ip, plan_ref.port);
                let smtp = smtp_probe(ctx, addr, Some(sni), opts, deadline, slots).await;
                observe_and_judge(ctx, plan_ref, hd_ref, Some(*ip), Some(smtp), Some(mx_name))
            }
        });
        futures::future::join_all(probes).await
    };
    let host = HostReport {
        mx: plan.mx.clone(),
        preference: plan.preference,
        port: plan.port,
        address_dnssec: Some(hd.address_dnssec),
        tlsa_base: hd.tlsa_base.clone(),
        tlsa_records: hd.tlsa_records.clone(),
        tlsa_dnssec: hd.tlsa_dnssec,
        tlsa_timing: Default::default(),
        dane_applies: hd.dane_applies,
        addresses,
        notes: hd.notes.clone(),
    };
    (host, hd.lookups)
}

/// The SMTP dialogue with `addr` under `deadline`, fresh or shared with other targets; at
/// most [`MAX_SMTP_PER_PROBE`] of one probe at once (`slots`).
async fn smtp_probe(
    ctx: &ProbeContext,
    addr: SocketAddr,
    sni: Option<String>,
    opts: ProbeOptions,
    deadline: Instant,
    slots: &Semaphore,
) -> Arc<SmtpReport> {
    let tls_mode = opts.tls.unwrap_or(TlsMode::for_port(addr.port()));
    let run = |deadline: Instant| {
        let smtp_opts = SmtpOptions {
            helo_name: ctx.helo_name.clone(),
            server_name: sni.clone(),
            tls: ctx.tls.clone(),
            deadline,
            transcript: opts.transcript,
            tls_mode: Some(tls_mode),
            ehlo_after_tls: ctx.ehlo_after_tls,
            quickack: true,
        };
        async move {
            // Waiting for a slot uses the same budget; past the deadline the dialogue fails
            // on its first phase with its own reason. The semaphore is never closed.
            let _slot = timeout_at(deadline, slots.acquire())
                .await
                .ok()
                .and_then(Result::ok);
            ctx.smtp_probes.fetch_add(1, Ordering::Relaxed);
            let mut r = smtp::probe(addr, &smtp_opts).await;
            if !opts.transcript {
                r.shrink();
            }
            Arc::new(r)
        }
    };
    if opts.fresh || opts.transcript {
        return run(deadline).await;
    }
    ctx.smtp_cache
        .get((addr, sni.clone(), tls_mode), deadline, run)
        .await
}

#[cfg(test)]
mod tests {
    //! `judge`: one case per row of the decision order of docs/verdict.md; then the SMTP
    //! result sharing (`SmtpCache`) under per-target deadlines.

    use std::net::IpAddr;
    use std::sync::OnceLock;

    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use rustls::pki_types::CertificateDer;

    use super::shared::{SmtpKey, SHARED_WAIT_SLACK};
    use super::*;
    use crate::cert;
    use crate::model::report::DaneStatus;
    use crate::model::smtp::{ProbeError, TlsFacts};
    use crate::model::tlsa::Tlsa;

    const MX: &str = "mx.example.test";

    /// A CA and a leaf for `MX` it signed, as served: leaf first.
    struct Chain {
        served: Vec<CertificateDer<'static>>,
        leaf_spki: Vec<u8>,
        ca_spki: Vec<u8>,
    }

    fn chain() -> &'static Chain {
        static CHAIN: OnceLock<Chain> = OnceLock::new();
        CHAIN.get_or_init(|| {
            let ca_key = KeyPair::generate().expect("key");
            let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
            ca.distinguished_name = rcgen::DistinguishedName::new();
            ca.distinguished_name.push(DnType::CommonName, "Test CA");
            ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let ca_der = ca.self_signed(&ca_key).expect("self-sign").der().clone();
            let leaf_key = KeyPair::generate().expect("key");
            let mut leaf = CertificateParams::new(vec![MX.to_string()]).expect("params");
            leaf.distinguished_name = rcgen::DistinguishedName::new();
            leaf.distinguished_name.push(DnType::CommonName, MX);
            let issuer = Issuer::from_params(&ca, &ca_key);
            let leaf_der = leaf
                .signed_by(&leaf_key, &issuer)
                .expect("sign")
                .der()
                .clone();
            let spki = |der: &CertificateDer<'_>| {
                let f = cert::facts(0, der.as_ref()).expect("facts");
                hex::decode(f.spki_sha256).expect("hex")
            };
            Chain {
                leaf_spki: spki(&leaf_der),
                ca_spki: spki(&ca_der),
                served: vec![leaf_der, ca_der],
            }
        })
    }

    fn rec(usage: u8, data: Vec<u8>) -> Tlsa {
        Tlsa {
            usage,
            selector: 1,
            matching: 1,
            data,
        }
    }
    /// `3 1 1` of the served leaf key.
    fn ee() -> Tlsa {
        rec(3, chain().leaf_spki.clone())
    }
    /// `2 1 1` of the served CA key.
    fn ta() -> Tlsa {
        rec(2, chain().ca_spki.clone())
    }
    /// `3 1 1` of a key the server no longer has.
    fn stale() -> Tlsa {
        rec(3, vec![0x5a; 32])
    }
    /// `1 1 1`: PKIX-EE, not usable for SMTP (RFC 7672 §3.1.3).
    fn pkix() -> Tlsa {
        rec(1, chain().leaf_spki.clone())
    }

    fn plan() -> mx::HostPlan {
        mx::HostPlan {
            mx: MX.into(),
            preference: Some(10),
            port: 25,
            next_hop: "example.test".into(),
            mx_secure: true,
        }
    }

    fn dane_host(records: Vec<Tlsa>) -> mx::HostDns {
        mx::HostDns {
            addrs: vec![ip()],
            address_dnssec: Dnssec::Secure,
            tlsa_base: Some(MX.into()),
            tlsa_records: records,
            tlsa_dnssec: Some(Dnssec::Secure),
            dane_applies: true,
            ..Default::default()
        }
    }

    fn ip() -> IpAddr {
        IpAddr::from([192, 0, 2, 25])
    }

    /// An SMTP session that completed TLS with the test chain.
    fn tls_ok() -> SmtpReport {
        let mut s = SmtpReport::new(SocketAddr::new(ip(), 25));
        s.connected = true;
        s.starttls_advertised = true;
        s.tls = Some(TlsFacts {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_128_GCM_SHA256".into(),
            chain: chain().served.clone(),
            chain_len: 2,
            handshake_seconds: 0.01,
        });
        s
    }

    /// An SMTP session whose server did not offer STARTTLS.
    fn no_starttls() -> SmtpReport {
        let mut s = SmtpReport::new(SocketAddr::new(ip(), 25));
        s.connected = true;
        s.error = Some(ProbeError::StartTlsNotOffered);
        s
    }

    fn address(address: Option<IpAddr>, smtp: Option<SmtpReport>) -> AddressReport {
        AddressReport {
            address,
            smtp: smtp.map(Arc::new),
            certs: Vec::new(),
            cert_errors: Vec::new(),
            pkix: None,
            tlsa: Vec::new(),
            dane: None,
            why: String::new(),
        }
    }

    fn verdict(hd: &mx::HostDns, a: AddressReport) -> (DaneStatus, String) {
        let a = judge(&plan(), hd, a);
        (
            a.dane.expect("every DNS target address gets a verdict"),
            a.why,
        )
    }

    #[test]
    fn failed_or_bogus_host_lookup_is_dns_failure_before_anything_else() {
        // RFC 7672 §2.2: a failed lookup is not "no DANE"; the sender defers.
        let mut hd = dane_host(vec![ee()]);
        hd.dns_failure = Some("TLSA lookup of _25._tcp.mx.example.test is bogus (x)".into());
        let (st, why) = verdict(&hd, address(Some(ip()), Some(tls_ok())));
        assert_eq!(st, DaneStatus::DnsFailure);
        assert!(why.starts_with("TLSA lookup of _25._tcp.mx.example.test is bogus"));
        assert!(why.ends_with("a DANE sender defers"), "{why}");
    }

    #[test]
    fn host_without_addresses_is_dns_failure() {
        // RFC 7672 §2.2.1: no address, no delivery; not a reason to fall back.
        let hd = mx::HostDns::default();
        let (st, why) = verdict(&hd, address(None, None));
        assert_eq!(st, DaneStatus::DnsFailure);
        assert!(why.contains("no address records"), "{why}");
    }

    #[test]
    fn dane_not_applicable_is_none_with_its_reason() {
        // RFC 7672 §2.2: no secure TLSA RRset, no DANE; the TLS outcome does not matter.
        let hd = mx::HostDns {
            addrs: vec![ip()],
            no_dane_reason: Some(
                "address records of mx.example.test are insecure: DANE does not apply".into(),
            ),
            ..Default::default()
        };
        let (st, why) = verdict(&hd, address(Some(ip()), Some(no_starttls())));
        assert_eq!(st, DaneStatus::None);
        assert!(why.contains("are insecure: DANE does not apply"), "{why}");
        let silent = mx::HostDns {
            addrs: vec![ip()],
            ..Default::default()
        };
        let (st, why) = verdict(&silent, address(Some(ip()), Some(tls_ok())));
        assert_eq!(st, DaneStatus::None);
        assert_eq!(why, "no secure TLSA RRset: DANE does not apply");
    }

    #[test]
    fn tls_failure_with_dane_in_force_is_failed_whatever_the_records() {
        // RFC 7672 §2.2, §3.1: with a secure TLSA RRset TLS is mandatory, checked before
        // usability (Postfix: a host with only unusable records and no STARTTLS defers).
        for records in [vec![ee()], vec![pkix()]] {
            let (st, why) = verdict(
                &dane_host(records),
                address(Some(ip()), Some(no_starttls())),
            );
            assert_eq!(st, DaneStatus::Failed);
            assert_eq!(
                why,
                "TLSA records require TLS, but STARTTLS not advertised: a DANE sender defers"
            );
        }
        let (st, why) = verdict(&dane_host(vec![ee()]), address(Some(ip()), None));
        assert_eq!(st, DaneStatus::Failed);
        assert!(why.contains("but no SMTP session"), "{why}");
        let mut refused = SmtpReport::new(SocketAddr::new(ip(), 25));
        refused.starttls_advertised = true;
        let (st, why) = verdict(&dane_host(vec![ee()]), address(Some(ip()), Some(refused)));
        assert_eq!(st, DaneStatus::Failed);
        assert!(why.contains("but TLS not established"), "{why}");
    }

    #[test]
    fn no_usable_record_is_unauthenticated() {
        // RFC 7672 §3.1.3 / §2.2: usage 0/1 only → TLS without authentication.
        let (st, why) = verdict(
            &dane_host(vec![pkix()]),
            address(Some(ip()), Some(tls_ok())),
        );
        assert_eq!(st, DaneStatus::Unauthenticated);
        assert!(why.contains("no usable record"), "{why}");
    }

    #[test]
    fn matching_record_is_verified_and_named() {
        // RFC 7672 §3.1.1: DANE-EE matches the leaf key.
        let hd = dane_host(vec![ee()]);
        let a = judge(&plan(), &hd, address(Some(ip()), Some(tls_ok())));
        assert_eq!(a.dane, Some(DaneStatus::Verified));
        assert!(a.why.starts_with("authenticated by 3 1 1 "), "{}", a.why);
        assert!(
            a.why.contains("(depth 0): a DANE sender delivers"),
            "{}",
            a.why
        );
        // A single published record: there is no second record to lose.
        assert!(!a.why.contains("safety net"), "{}", a.why);
        assert_eq!(a.tlsa.len(), 1);
        assert!(a.tlsa[0].matched);
    }

    #[test]
    fn both_records_matching_names_both_without_warning() {
        // RFC 7672 §3.1.1 (DANE-EE, depth 0) and §3.1.2 (DANE-TA, depth 1).
        let (st, why) = verdict(
            &dane_host(vec![ee(), ta()]),
            address(Some(ip()), Some(tls_ok())),
        );
        assert_eq!(st, DaneStatus::Verified);
        assert!(why.contains("(depth 0), 2 1 1 "), "{why}");
        assert!(why.contains("(depth 1): a DANE sender delivers"), "{why}");
        assert!(!why.contains("safety net"), "{why}");
    }

    #[test]
    fn one_of_two_usable_records_matching_warns_that_the_safety_net_is_gone() {
        // RFC 7671 §8.1 rollover: the second record is what keeps mail flowing on the next change.
        let (st, why) = verdict(
            &dane_host(vec![stale(), ta()]),
            address(Some(ip()), Some(tls_ok())),
        );
        assert_eq!(st, DaneStatus::Verified);
        assert!(
            why.ends_with("but only 1 of 2 usable records authenticates: the safety net is gone, fix the stale record before the next change"),
            "{why}"
        );
        // An unusable record is no safety net: it does not count as a usable second record.
        let (st, why) = verdict(
            &dane_host(vec![pkix(), ee()]),
            address(Some(ip()), Some(tls_ok())),
        );
        assert_eq!(st, DaneStatus::Verified);
        assert!(!why.contains("safety net"), "{why}");
    }

    #[test]
    fn usable_records_none_matching_is_failed() {
        // RFC 7672 §2.2: usable records, no match → the sender defers.
        let (st, why) = verdict(
            &dane_host(vec![stale(), pkix()]),
            address(Some(ip()), Some(tls_ok())),
        );
        assert_eq!(st, DaneStatus::Failed);
        assert_eq!(
            why,
            "no usable TLSA record matches the served chain: a DANE sender defers"
        );
    }

    use std::sync::atomic::AtomicUsize;

    fn key() -> SmtpKey {
        (
            SocketAddr::from(([127, 0, 0, 1], 25)),
            None,
            TlsMode::Starttls,
        )
    }

    fn report(error: Option<ProbeError>) -> Arc<SmtpReport> {
        let mut r = SmtpReport::new(key().0);
        r.error = error;
        Arc::new(r)
    }

    fn greeting_timeout() -> Option<ProbeError> {
        Some(ProbeError::GreetingTimeout {
            after: Duration::from_secs(1),
        })
    }

    fn reason(r: &SmtpReport) -> Option<&'static str> {
        r.error.as_ref().map(ProbeError::reason)
    }

    // A timeout says "not done by that deadline": it holds for a target with no more time,
    // not for one with more.
    #[tokio::test(start_paused = true)]
    async fn result_cut_short_by_an_earlier_deadline_is_probed_again() {
        let cache = SmtpCache::new(Duration::from_secs(60));
        let runs = AtomicUsize::new(0);
        let now = Instant::now();
        let slow = |_: Instant| async {
            runs.fetch_add(1, Ordering::SeqCst);
            report(greeting_timeout())
        };
        let r = cache.get(key(), now + Duration::from_secs(1), slow).await;
        assert_eq!(reason(&r), Some("greeting_timeout"));
        // No more time than the first target: shared.
        let r = cache.get(key(), now + Duration::from_secs(1), slow).await;
        assert_eq!(
            (reason(&r), runs.load(Ordering::SeqCst)),
            (Some("greeting_timeout"), 1)
        );
        // More time: probed again, under its own deadline, and that result is shared on.
        let later = now + Duration::from_secs(5);
        let runs_ref = &runs;
        let answered = |d: Instant| async move {
            assert_eq!(d, later, "runs under the asking target's deadline");
            runs_ref.fetch_add(1, Ordering::SeqCst);
            report(None)
        };
        let r = cache.get(key(), later, answered).await;
        assert_eq!((reason(&r), runs.load(Ordering::SeqCst)), (None, 2));
        let r = cache.get(key(), now + Duration::from_secs(1), slow).await;
        assert_eq!((reason(&r), runs.load(Ordering::SeqCst)), (None, 2));
    }

    // What the server said (here: no STARTTLS) holds whoever asks.
    #[tokio::test(start_paused = true)]
    async fn answers_are_shared_whatever_the_deadline() {
        let cache = SmtpCache::new(Duration::from_secs(60));
        let runs = AtomicUsize::new(0);
        let now = Instant::now();
        let fetch = |_: Instant| async {
            runs.fetch_add(1, Ordering::SeqCst);
            report(Some(ProbeError::StartTlsNotOffered))
        };
        cache.get(key(), now + Duration::from_secs(1), fetch).await;
        let r = cache.get(key(), now + Duration::from_secs(9), fetch).await;
        assert_eq!(
            (reason(&r), runs.load(Ordering::SeqCst)),
            (Some("no_starttls"), 1)
        );
    }

    // A target never waits past its own deadline for a session another target (with more
    // time) started: the address gets its own reason, the report is not replaced.
    #[tokio::test(start_paused = true)]
    async fn joiner_stops_waiting_at_its_own_deadline() {
        let cache = SmtpCache::new(Duration::from_secs(60));
        let now = Instant::now();
        let first = cache.get(key(), now + Duration::from_secs(10), |_| async {
            tokio::time::sleep(Duration::from_secs(8)).await;
            report(None)
        });
        let joiner = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let r = cache
                .get(key(), now + Duration::from_secs(2), |_| async {
                    unreachable!("joins the session in flight")
                })
                .await;
            (r, now.elapsed())
        };
        let (a, (b, b_took)) = tokio::join!(first, joiner);
        assert_eq!(reason(&a), None);
        assert_eq!(reason(&b), Some("shared_timeout"));
        assert!(
            b_took <= Duration::from_secs(2) + SHARED_WAIT_SLACK,
            "{b_took:?}"
        );
    }
}
