//! The policies beside DANE of a domain target: the `_mta-sts` and `_smtp._tls` TXT
//! records through the probe's resolver (with their DNSSEC state), and the MTA-STS policy
//! from `https://mta-sts.<domain>/.well-known/mta-sts.txt`.
//!
//! Owns: the policy fetch (hyper's HTTP/1 client over the probe's TLS stack, the
//! certificate checked with `cert::pkix_verify` against the same roots as the MX hosts),
//! its limits, and the per-round policy cache ([`PolicyCache`]). The fetch runs beside the
//! DANE part of the probe under the same deadline; a slow policy host makes the policy
//! `invalid` (reason `timeout`) and never holds the DANE part back (docs/verdict.md,
//! "MTA-STS").
//! Not here: the syntax (`sts`), the per-address verdict (`model::policies`).
//! RFC 8461 §3.1 (record), §3.3 (HTTPS fetch: PKIX-valid for the policy host, no
//! redirects, 200 only, `text/plain`), RFC 8460 §3 (TLSRPT record).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::RecordType;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use super::cache::Coalescing;
use super::{tls, ProbeContext, ProbeOptions};
use crate::cert;
use crate::model::dns::{Answer, Data, Dnssec, Outcome};
use crate::model::policies::{StsProblem, StsReport, TlsRptReport};
use crate::sts::{self, Policy};

/// Where the policy lives (RFC 8461 §3.3).
pub(crate) const POLICY_PATH: &str = "/.well-known/mta-sts.txt";
/// Most policies kept between rounds; beyond it the oldest go first.
const MAX_CACHED_POLICIES: usize = 50_000;
/// How long a failed fetch is kept: short, so a fixed host is seen within a round or two.
const FAILED_FETCH_TTL: Duration = Duration::from_secs(5);

/// The outcome of one fetch of one policy.
#[derive(Debug, Clone)]
pub(crate) struct Fetched {
    policy: Result<Policy, StsProblem>,
    cert_not_after: Option<i64>,
    seconds: f64,
}

/// Policies fetched this round, by (domain, record id): one fetch per domain and id
/// however many targets name the domain.
pub(crate) struct PolicyCache {
    max_age: Duration,
    fetched: Coalescing<(String, String), Arc<Fetched>>,
}

impl PolicyCache {
    pub(crate) fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            fetched: Coalescing::new(MAX_CACHED_POLICIES),
        }
    }
}

/// What the policy side of one domain probe learned.
pub(super) struct Policies {
    pub(super) sts: StsReport,
    pub(super) tlsrpt: TlsRptReport,
    pub(super) lookups: Vec<Arc<Answer>>,
}

/// The MTA-STS record and policy and the TLSRPT record of `domain`, all by `deadline`.
pub(super) async fn probe_policies(
    ctx: &ProbeContext,
    domain: &str,
    opts: ProbeOptions,
    deadline: Instant,
) -> Policies {
    let sts_name = format!("_mta-sts.{domain}");
    let rpt_name = format!("_smtp._tls.{domain}");
    let (sts_ans, rpt_ans) =
        tokio::join!(txt(ctx, &sts_name, deadline), txt(ctx, &rpt_name, deadline));
    let tlsrpt = match &rpt_ans {
        Err(detail) => TlsRptReport::LookupFailed {
            detail: detail.clone(),
        },
        Ok(a) => match sts::parse_tlsrpt_records(&txt_strings(a)) {
            Ok(None) => TlsRptReport::Absent,
            Ok(Some(record)) => TlsRptReport::Valid { record },
            Err(e) => TlsRptReport::Invalid {
                reason: e.reason(),
                detail: e.to_string(),
            },
        },
    };
    let mut report = StsReport::default();
    let mut lookups: Vec<Arc<Answer>> = Vec::new();
    for a in [&sts_ans, &rpt_ans].into_iter().flatten() {
        lookups.push(a.clone());
    }
    match &sts_ans {
        Err(detail) => report.problem = Some(problem("dns_failure", detail.clone())),
        Ok(a) => {
            report.record_dnssec = Some(a.dnssec);
            match sts::parse_sts_records(&txt_strings(a)) {
                Ok(None) => {}
                Err(e) => report.problem = Some(problem(e.reason(), e.to_string())),
                Ok(Some(rec)) => {
                    let host = format!("mta-sts.{domain}");
                    report.url = Some(format!("https://{host}{POLICY_PATH}"));
                    report.id = Some(rec.id.clone());
                    let fetched = fetch_cached(ctx, &host, &rec.id, opts, deadline).await;
                    report.cert_not_after = fetched.cert_not_after;
                    report.fetch_seconds = Some(fetched.seconds);
                    match &fetched.policy {
                        Ok(p) => report.policy = Some(p.clone()),
                        Err(e) => report.problem = Some(e.clone()),
                    }
                }
            }
        }
    }
    Policies {
        sts: report,
        tlsrpt,
        lookups,
    }
}

fn problem(reason: &'static str, detail: impl Into<String>) -> StsProblem {
    StsProblem {
        reason,
        detail: detail.into(),
    }
}

/// The TXT RRset at `name`: `Ok` with records or a proven absence (NXDOMAIN, NODATA),
/// `Err` when the lookup failed, was bogus or did not finish by `deadline`.
async fn txt(ctx: &ProbeContext, name: &str, deadline: Instant) -> Result<Arc<Answer>, String> {
    let qname = super::mx::fqdn(name).ok_or_else(|| format!("{name} is not a DNS name"))?;
    let a = timeout_at(deadline, ctx.dns.lookup(&qname, RecordType::TXT))
        .await
        .map_err(|_| format!("the TXT lookup of {name} did not finish in time"))?;
    if a.outcome == Outcome::Failed || a.dnssec == Dnssec::Bogus {
        return Err(format!(
            "the TXT lookup of {name} failed ({}, {})",
            a.dnssec.as_str(),
            a.reason.as_deref().unwrap_or("no reason given")
        ));
    }
    Ok(a)
}

fn txt_strings(a: &Answer) -> Vec<String> {
    match &a.data {
        Data::Txt(v) => v.clone(),
        _ => Vec::new(),
    }
}

/// The policy of `host` for record `id`, from this round's cache unless the probe is fresh.
async fn fetch_cached(
    ctx: &ProbeContext,
    host: &str,
    id: &str,
    opts: ProbeOptions,
    deadline: Instant,
) -> Arc<Fetched> {
    let run = || async { Arc::new(fetch(ctx, host, opts, deadline).await) };
    if opts.fresh || opts.addresses != super::AddressPolicy::Any {
        return run().await;
    }
    let max_age = ctx.policies.max_age;
    let ttl = move |f: &Arc<Fetched>| match &f.policy {
        Ok(_) => max_age,
        Err(p) if p.reason == "timeout" => Duration::ZERO,
        Err(_) => FAILED_FETCH_TTL.min(max_age),
    };
    let key = (host.to_string(), id.to_string());
    ctx.policies.fetched.get_or_fetch(key, ttl, run).await
}

/// One fetch of `https://host/.well-known/mta-sts.txt`, by `deadline`.
async fn fetch(ctx: &ProbeContext, host: &str, opts: ProbeOptions, deadline: Instant) -> Fetched {
    let started = Instant::now();
    let mut not_after = None;
    let result = match timeout_at(
        deadline,
        fetch_inner(ctx, host, opts, deadline, &mut not_after),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(problem(
            "timeout",
            format!(
                "the policy fetch from {host} did not finish within the probe budget ({:?})",
                started.elapsed()
            ),
        )),
    };
    Fetched {
        policy: result,
        cert_not_after: not_after,
        seconds: started.elapsed().as_secs_f64(),
    }
}

async fn fetch_inner(
    ctx: &ProbeContext,
    host: &str,
    opts: ProbeOptions,
    deadline: Instant,
    not_after: &mut Option<i64>,
) -> Result<Policy, StsProblem> {
    let addrs = host_addresses(ctx, host).await?;
    for ip in &addrs {
        opts.addresses
            .check(*ip)
            .map_err(|e| problem("address_refused", e.to_string()))?;
    }
    // Addresses in order until one accepts (RFC 8461 §3.3 leaves this to HTTPS practice).
    let mut last = String::from("no address");
    let mut tcp = None;
    for ip in addrs {
        match TcpStream::connect(SocketAddr::new(ip, 443)).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                tcp = Some(s);
                break;
            }
            Err(e) => last = format!("{ip}:443: {e}"),
        }
    }
    let tcp = tcp.ok_or_else(|| problem("connect", format!("cannot connect to {host}: {last}")))?;
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| problem("host_dns", format!("{host} is not a valid server name")))?;
    let (stream, facts) = tls::handshake(tcp, name, ctx.tls.clone(), deadline)
        .await
        .map_err(|e| {
            let reason = match e {
                tls::TlsError::Timeout { .. } => "timeout",
                _ => "tls_handshake",
            };
            problem(reason, format!("{host}: {e}"))
        })?;
    if let Some(leaf) = facts.chain.first() {
        *not_after = cert::facts(0, leaf.as_ref()).ok().map(|f| f.not_after);
    }
    cert::pkix_verify(&facts.chain, &ctx.roots, host, UnixTime::now()).map_err(|e| {
        problem(
            "certificate",
            format!(
                "the certificate of {host} is not PKIX-valid ({}): {e}",
                e.reason()
            ),
        )
    })?;
    let body = get_policy(stream, host, deadline).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| problem("policy_syntax", "the policy is not UTF-8 text"))?;
    sts::parse_policy(text).map_err(|e| problem("policy_syntax", e.to_string()))
}

/// The addresses of the policy host (A, then AAAA) through the probe's resolver.
async fn host_addresses(ctx: &ProbeContext, host: &str) -> Result<Vec<IpAddr>, StsProblem> {
    let qname = super::mx::fqdn(host)
        .ok_or_else(|| problem("host_dns", format!("{host} is not a DNS name")))?;
    let (a, aaaa) = tokio::join!(
        ctx.dns.lookup(&qname, RecordType::A),
        ctx.dns.lookup(&qname, RecordType::AAAA)
    );
    let mut out = Vec::new();
    let mut failed = Vec::new();
    for ans in [&a, &aaaa] {
        match (&ans.data, ans.outcome) {
            (Data::Addrs(v), _) => out.extend(v.iter().copied()),
            (_, Outcome::Failed) => failed.push(ans.reason.clone().unwrap_or_default()),
            _ => {}
        }
    }
    if out.is_empty() {
        let why = if failed.is_empty() {
            "no address records".to_string()
        } else {
            format!("lookup failed: {}", failed.join("; "))
        };
        return Err(problem("host_dns", format!("{host}: {why}")));
    }
    Ok(out)
}

/// GET the policy over an established TLS stream: `200` only, no redirects followed,
/// `text/plain`, at most [`sts::MAX_POLICY_BYTES`] read (RFC 8461 §3.3).
async fn get_policy<S>(stream: S, host: &str, deadline: Instant) -> Result<Bytes, StsProblem>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let http_err = |e: hyper::Error| problem("http", format!("HTTP from {host}: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http_err)?;
    // The connection task drives the I/O; it ends with the connection, at the deadline, or
    // when this fetch is dropped (the probe's deadline), whichever is first.
    let task = tokio::spawn(async move {
        let _ = timeout_at(deadline + Duration::from_secs(1), conn).await;
    });
    let _abort = AbortOnDrop(task.abort_handle());
    let req = hyper::Request::get(POLICY_PATH)
        .header(hyper::header::HOST, host)
        .header(
            hyper::header::USER_AGENT,
            concat!("mailtls_exporter/", env!("CARGO_PKG_VERSION")),
        )
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| problem("http", format!("request: {e}")))?;
    let resp = sender.send_request(req).await.map_err(http_err)?;
    let status = resp.status();
    if status.is_redirection() {
        let to = resp
            .headers()
            .get(hyper::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        return Err(problem(
            "redirect",
            format!(
                "{host} answered {status} to {:.200}: redirects are not followed (RFC 8461 §3.3)",
                to
            ),
        ));
    }
    if status != hyper::StatusCode::OK {
        return Err(problem(
            "http_status",
            format!("{host} answered {status}, not 200"),
        ));
    }
    let ctype = resp
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = ctype.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("text/plain") {
        return Err(problem(
            "content_type",
            format!(
                "Content-Type {:.100?} is not text/plain (RFC 8461 §3.3)",
                ctype
            ),
        ));
    }
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(http_err)?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > sts::MAX_POLICY_BYTES {
                return Err(problem(
                    "too_large",
                    format!("the policy is larger than {} bytes", sts::MAX_POLICY_BYTES),
                ));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(out))
}

/// Aborts the HTTP connection task when the fetch ends or is dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
