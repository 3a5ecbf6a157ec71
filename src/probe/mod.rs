//! One probe of one target: DNS (MX, addresses, TLSA) → SMTP/TLS per address → verdicts.
//!
//! Owns: the order of steps for a next hop, the per-target deadline, sharing SMTP probes of
//! an address between targets within a round ([`SmtpCache`]), the fan-out bound (at most
//! [`MAX_SMTP_PER_PROBE`] SMTP connections of one probe at once), and assembling a plain
//! [`TargetReport`]. All DNS of a target is done before its first SMTP connection, so an
//! [`AddressPolicy`] can stop the probe before it connects anywhere. Steps live in their
//! own files: `dns` (lookups + DNSSEC), `mx` (which names to look up, RFC 7672 §2.2),
//! `policy` (which addresses may be connected to), `smtp` and `tls` (the dialogue).
//! Not here: judging TLSA records (`dane`), certificate facts (`cert`), metrics.

mod cache;
pub mod dns;
pub mod mx;
pub mod policy;
pub mod smtp;
pub mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls::pki_types::UnixTime;

use crate::cert::{self, PkixRoots};
use crate::config::Config;
use crate::dane::{self, DaneInput};
use crate::model::dns::{Answer, Dnssec};
use crate::model::report::{AddressReport, DaneStatus, HostReport, TargetReport};
use crate::model::smtp::SmtpReport;
use crate::model::tlsa::{Authentication, RecordCheck, RecordDetail, Tlsa};
use crate::target::NextHop;
use cache::Coalescing;
use dns::Dns;
pub use policy::{AddressPolicy, Refused};
use smtp::SmtpOptions;
use tokio::sync::Semaphore;

/// Per-phase SMTP timeouts never exceed this, however long the target timeout.
pub const MAX_PHASE_TIMEOUT: Duration = Duration::from_secs(10);

/// SMTP connections one probe may have open at once. A domain expands to at most
/// [`mx::MAX_MX_HOSTS`] × [`mx::MAX_ADDRESSES_PER_HOST`] addresses; they take turns.
pub const MAX_SMTP_PER_PROBE: usize = 16;

/// Everything a probe needs that outlives it: resolver, TLS config, roots, shared SMTP results.
pub struct ProbeContext {
    pub dns: Dns,
    pub tls: Arc<rustls::ClientConfig>,
    pub roots: Arc<PkixRoots>,
    pub helo_name: String,
    /// Deadline of one target probe (DNS + all MX hosts).
    pub timeout: Duration,
    pub smtp_cache: SmtpCache,
    /// SMTP dialogues actually run (cache misses).
    pub smtp_probes: AtomicU64,
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
            timeout: cfg.timeout,
            // One SMTP probe per address per round: results are reused for most of an interval.
            smtp_cache: SmtpCache::new(cfg.interval.mul_f64(0.9)),
            smtp_probes: AtomicU64::new(0),
        })
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
}

/// An address and the SNI sent to it.
type SmtpKey = (SocketAddr, Option<String>);

/// Most (address, SNI) results kept for sharing; beyond it the oldest go first.
pub const MAX_SHARED_SMTP_RESULTS: usize = 100_000;

/// SMTP results shared between targets that point at the same address within a round:
/// filled by the first prober, awaited by the others, reused for `max_age`.
pub struct SmtpCache {
    max_age: Duration,
    results: Coalescing<SmtpKey, Arc<SmtpReport>>,
}

impl SmtpCache {
    pub fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            results: Coalescing::new(MAX_SHARED_SMTP_RESULTS),
        }
    }
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
pub async fn probe_checked(
    ctx: &ProbeContext,
    target: &str,
    hop: &NextHop,
    opts: ProbeOptions,
) -> Result<TargetReport, Refused> {
    let started = Instant::now();
    let budget = opts.deadline.map_or(ctx.timeout, |d| d.min(ctx.timeout));
    let mut report = match tokio::time::timeout(budget, run(ctx, target, hop, opts)).await {
        Ok(r) => r?,
        Err(_) => {
            let mut r = empty_report(target, hop);
            r.error = Some(format!("probe timed out after {budget:?}"));
            r
        }
    };
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
        error: None,
        success: false,
    }
}

async fn run(
    ctx: &ProbeContext,
    target: &str,
    hop: &NextHop,
    opts: ProbeOptions,
) -> Result<TargetReport, Refused> {
    let mut report = empty_report(target, hop);
    let slots = Semaphore::new(MAX_SMTP_PER_PROBE);
    match hop {
        NextHop::Address { ip, port } => {
            opts.addresses.check(*ip)?;
            let addr = SocketAddr::new(*ip, *port);
            let smtp = smtp_probe(ctx, addr, None, opts, &slots).await;
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
            let hd = mx::resolve_host(&ctx.dns, &plan).await;
            check_addresses(opts.addresses, [&hd])?;
            let (h, lookups) = probe_host(ctx, plan, hd, opts, &slots).await;
            report.lookups.extend(lookups);
            report.hosts.push(h);
        }
        NextHop::Domain(domain) => {
            let set = mx::resolve_mx(&ctx.dns, domain).await;
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
                next_hop: domain.clone(),
                mx_secure,
            });
            // Every host's DNS first: the policy sees all addresses before any connection.
            let resolved = futures::future::join_all(plans.map(|p| async {
                let hd = mx::resolve_host(&ctx.dns, &p).await;
                (p, hd)
            }))
            .await;
            check_addresses(opts.addresses, resolved.iter().map(|(_, hd)| hd))?;
            let slots = &slots;
            let results = futures::future::join_all(
                resolved
                    .into_iter()
                    .map(|(p, hd)| probe_host(ctx, p, hd, opts, slots)),
            )
            .await;
            for (h, lookups) in results {
                report.lookups.extend(lookups);
                report.hosts.push(h);
            }
        }
    }
    Ok(report)
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

/// Every address of one host, its DNS (addresses, TLSA) done.
async fn probe_host(
    ctx: &ProbeContext,
    plan: mx::HostPlan,
    hd: mx::HostDns,
    opts: ProbeOptions,
    slots: &Semaphore,
) -> (HostReport, Vec<Arc<Answer>>) {
    let sni = hd
        .tlsa_base
        .clone()
        .filter(|_| hd.dane_applies)
        .unwrap_or_else(|| plan.mx.clone());
    let addresses: Vec<AddressReport> = if hd.addrs.is_empty() {
        vec![judge(&plan, &hd, observe(ctx, None, None, None))]
    } else {
        let mx_name = plan.mx.as_str();
        let probes = hd.addrs.iter().map(|ip| {
            let sni = sni.clone();
            async move {
                let addr = SocketAddr::new(*ip, plan.port);
                let smtp = smtp_probe(ctx, addr, Some(sni), opts, slots).await;
                observe(ctx, Some(*ip), Some(smtp), Some(mx_name))
            }
        });
        futures::future::join_all(probes)
            .await
            .into_iter()
            .map(|a| judge(&plan, &hd, a))
            .collect()
    };
    let host = HostReport {
        mx: plan.mx.clone(),
        preference: plan.preference,
        port: plan.port,
        address_dnssec: Some(hd.address_dnssec),
        tlsa_base: hd.tlsa_base.clone(),
        tlsa_records: hd.tlsa_records.clone(),
        tlsa_dnssec: hd.tlsa_dnssec,
        dane_applies: hd.dane_applies,
        addresses,
        notes: hd.notes.clone(),
    };
    (host, hd.lookups)
}

async fn smtp_probe(
    ctx: &ProbeContext,
    addr: SocketAddr,
    sni: Option<String>,
    opts: ProbeOptions,
    slots: &Semaphore,
) -> Arc<SmtpReport> {
    let phase = (ctx.timeout / 3).min(MAX_PHASE_TIMEOUT);
    let smtp_opts = SmtpOptions {
        helo_name: ctx.helo_name.clone(),
        server_name: sni.clone(),
        tls: ctx.tls.clone(),
        connect_timeout: phase,
        reply_timeout: phase,
        tls_timeout: phase,
        transcript: opts.transcript,
    };
    let run = || async {
        // The semaphore is never closed; a failed acquire only means no bound to wait for.
        let _slot = slots.acquire().await.ok();
        ctx.smtp_probes.fetch_add(1, Ordering::Relaxed);
        let mut r = smtp::probe(addr, &smtp_opts).await;
        if !opts.transcript {
            r.shrink();
        }
        Arc::new(r)
    };
    if opts.fresh || opts.transcript {
        return run().await;
    }
    let cache = &ctx.smtp_cache;
    cache
        .results
        .get_or_fetch((addr, sni), |_| cache.max_age, run)
        .await
}

/// Observation only: certificate facts and PKIX validity of what the address served.
fn observe(
    ctx: &ProbeContext,
    address: Option<std::net::IpAddr>,
    smtp: Option<Arc<SmtpReport>>,
    pkix_name: Option<&str>,
) -> AddressReport {
    let mut certs = Vec::new();
    let mut cert_errors = Vec::new();
    let mut pkix = None;
    if let Some(tls) = smtp.as_ref().and_then(|s| s.tls.as_ref()) {
        for (depth, der) in tls.chain.iter().enumerate() {
            match cert::facts(depth, der.as_ref()) {
                Ok(f) => certs.push(f),
                Err(e) => cert_errors.push((depth, e.to_string())),
            }
        }
        // An address target has no host name to check: no PKIX verdict (absent series).
        if let (false, Some(name)) = (tls.chain.is_empty(), pkix_name) {
            pkix = Some(
                cert::pkix_verify(&tls.chain, &ctx.roots, name, UnixTime::now())
                    .map_err(|e| e.to_string()),
            );
        }
    }
    AddressReport {
        address,
        smtp,
        certs,
        cert_errors,
        pkix,
        tlsa: Vec::new(),
        dane: None,
        why: String::new(),
    }
}

/// Which records authenticated the connection, and whether the two-record safety net
/// (NCSC-NL: a `3 1 1` and a `2 1 1`, either one enough) still holds.
fn verified_why(checks: &[RecordCheck]) -> String {
    let used: Vec<String> = checks
        .iter()
        .filter_map(|c| match c.detail {
            RecordDetail::Matched { depth } => {
                Some(format!("{} (depth {depth})", short_record(&c.record)))
            }
            _ => None,
        })
        .collect();
    let usable = checks
        .iter()
        .filter(|c| !matches!(c.detail, RecordDetail::Unusable(_)))
        .count();
    let mut why = format!(
        "authenticated by {}: a DANE sender delivers",
        used.join(", ")
    );
    if usable > 1 && used.len() == 1 {
        why.push_str(&format!(
            "; but only 1 of {usable} usable records matches: the safety net is gone, fix the stale record before the next change"
        ));
    }
    why
}

fn short_record(t: &Tlsa) -> String {
    let p = t.presentation();
    match p.char_indices().nth(24) {
        Some((i, _)) => format!("{}…", &p[..i]),
        None => p,
    }
}

/// The DANE verdict for one address (RFC 7672 §2.2, §3; docs/verdict.md), as Postfix reaches it.
fn judge(plan: &mx::HostPlan, hd: &mx::HostDns, mut a: AddressReport) -> AddressReport {
    if let Some(why) = &hd.dns_failure {
        a.dane = Some(DaneStatus::DnsFailure);
        a.why = format!("{why}: a DANE sender defers");
        return a;
    }
    if a.address.is_none() {
        a.dane = Some(DaneStatus::DnsFailure);
        a.why = "no address records: the host cannot be reached".into();
        return a;
    }
    if !hd.dane_applies {
        a.dane = Some(DaneStatus::None);
        a.why = hd
            .no_dane_reason
            .clone()
            .unwrap_or_else(|| "no secure TLSA RRset: DANE does not apply".into());
        return a;
    }
    let chain: &[rustls::pki_types::CertificateDer<'static>] = a
        .smtp
        .as_ref()
        .and_then(|s| s.tls.as_ref())
        .map(|t| t.chain.as_slice())
        .unwrap_or(&[]);
    let mut names = Vec::with_capacity(3);
    for n in [
        hd.tlsa_base.as_deref(),
        Some(plan.mx.as_str()),
        Some(plan.next_hop.as_str()),
    ]
    .into_iter()
    .flatten()
    {
        if !names.iter().any(|x: &String| x == n) {
            names.push(n.to_string());
        }
    }
    let eval = dane::evaluate(&DaneInput {
        records: &hd.tlsa_records,
        chain,
        names: &names,
        now: UnixTime::now(),
    });
    let tls_failure = match a.smtp.as_deref() {
        None => Some("no SMTP session".to_string()),
        Some(s) if s.tls.is_some() => None,
        Some(s) => Some(match &s.error {
            Some(e) => e.to_string(),
            None => "TLS not established".to_string(),
        }),
    };
    let (status, why) = match (&tls_failure, &eval.authentication) {
        (Some(f), _) => (
            DaneStatus::Failed,
            format!("TLSA records require TLS, but {f}: a DANE sender defers"),
        ),
        (None, Authentication::NoUsableRecords) => (
            DaneStatus::Unauthenticated,
            "the TLSA RRset has no usable record: TLS is required but not authenticated".into(),
        ),
        (None, Authentication::Verified { .. }) => {
            (DaneStatus::Verified, verified_why(&eval.checks))
        }
        (None, Authentication::NotAuthenticated) => (
            DaneStatus::Failed,
            "no usable TLSA record matches the served chain: a DANE sender defers".into(),
        ),
    };
    a.tlsa = eval.checks;
    a.dane = Some(status);
    a.why = why;
    a
}
