//! HTTP: serves `/metrics`, `/probe`, `/-/healthy`, `/-/reload`, the status page (`/`, its
//! text view `/status/text` and stylesheet `/static/status.css`), all under the route prefix
//! of `--web.route-prefix` / `--web.external-url`.
//!
//! Owns: routing, the `/probe` allow-list (a refused target gets 403 before any DNS query
//! or connection; a target that is not configured gets 403 when an address it resolves to
//! is not global, unless `probe.private_addresses`), content negotiation hand-off to
//! `metrics`, gzip of the metric endpoints, the accept loop with its connection limit, and
//! graceful shutdown of connections. Scrapes of `/metrics` never wait on a probe. Under a
//! `--web.config.file`: TLS (tokio-rustls, handshake per connection task with a timeout)
//! and basic auth on every endpoint, with the settings `webconfig` validated.
//! Not here: probing (`probe`), sharing and limiting `/probe` (`admission`), the write
//! deadline and gzip itself (`transport`), encoding (`metrics`), scheduling (`scheduler`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    HeaderMap, HeaderValue, ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER,
    VARY,
};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn};

use crate::admission::{self, Admission, Outcome};
use crate::config::ProbeAccess;
use crate::metrics::{self, wants_openmetrics};
use crate::model::report::TargetReport;
use crate::planner::render_staged;
use crate::probe::AddressPolicy;
use crate::scheduler::Scheduler;
use crate::status::{self, WebPrefix};
use crate::target::NextHop;
use crate::text::render_text;
use crate::transport::{self, DeadlineIo, Limits, HEADER_READ_TIMEOUT};
use crate::webconfig::{self, Authorization, WebConfig, WebState};

/// Longest accepted request head (hyper's minimum is 8 KiB); requests are tiny.
const MAX_HEADER_BYTES: usize = 16 * 1024;

pub struct App {
    pub scheduler: Arc<Scheduler>,
    pub exposition: metrics::Exposition,
    /// `/probe` sharing and slots.
    pub admission: Admission,
    pub limits: Limits,
    /// Route and link prefixes (`--web.route-prefix`, `--web.external-url`).
    pub prefix: WebPrefix,
}

type Resp = Response<Full<Bytes>>;

fn text(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = ctype.parse() {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

/// Bodies larger than this are compressed off the async workers.
const GZIP_INLINE_MAX: usize = 256 * 1024;

/// A metric endpoint's 200 response: gzip when the request accepts it, `Vary` always.
async fn metric_response(headers: &HeaderMap, ctype: &str, body: String) -> Resp {
    let accept = headers.get(ACCEPT_ENCODING).and_then(|v| v.to_str().ok());
    let mut r = if transport::accepts_gzip(accept) {
        let bytes = body.into_bytes();
        let zipped = if bytes.len() <= GZIP_INLINE_MAX {
            Ok(transport::gzip(&bytes).map_err(|_| bytes))
        } else {
            tokio::task::spawn_blocking(move || transport::gzip(&bytes).map_err(|_| bytes)).await
        };
        match zipped {
            Ok(Ok(z)) => {
                let mut r = text(StatusCode::OK, ctype, z);
                r.headers_mut()
                    .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                r
            }
            // Writing into memory does not fail; if it did, send the body as it is.
            Ok(Err(bytes)) => text(StatusCode::OK, ctype, bytes),
            Err(e) => {
                warn!(error = %e, "compressing a response failed");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    "compression failed\n",
                )
            }
        }
    } else {
        text(StatusCode::OK, ctype, body)
    };
    r.headers_mut()
        .insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    r
}

/// Decodes `application/x-www-form-urlencoded` query parameters.
pub fn query_params(q: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let h = std::str::from_utf8(&bytes[i + 1..i + 3])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    match h {
                        Some(b) => {
                            out.push(b);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let path = req.uri().path().to_string();
    let Some(rel) = app.prefix.strip(&path) else {
        // Outside the route prefix: "/" leads to it, as Prometheus does; the rest is 404.
        let resp = if path == "/" {
            redirect(&format!("{}/", app.prefix.route))
        } else {
            text(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "not found\n",
            )
        };
        return Ok(resp);
    };
    if rel.is_empty() {
        return Ok(redirect(&format!("{}/", app.prefix.route)));
    }
    let resp = match (req.method(), rel) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            app.scheduler.refresh_stats();
            let om = wants_openmetrics(req.headers().get(ACCEPT).and_then(|v| v.to_str().ok()));
            let (body, ctype) = app.exposition.render(om);
            metric_response(req.headers(), ctype, body).await
        }
        (&Method::GET, "/probe") => probe(&app, &req).await,
        (&Method::GET | &Method::HEAD, "/-/healthy") => {
            text(StatusCode::OK, "text/plain; charset=utf-8", "Healthy\n")
        }
        (&Method::POST | &Method::PUT, "/-/reload") => {
            let sched = app.scheduler.clone();
            match tokio::task::spawn_blocking(move || sched.reload()).await {
                Ok(Ok(())) => text(
                    StatusCode::OK,
                    "text/plain; charset=utf-8",
                    "configuration reloaded\n",
                ),
                Ok(Err(e)) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    format!("configuration rejected, the previous one keeps running: {e}\n"),
                ),
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    format!("reload failed: {e}\n"),
                ),
            }
        }
        (_, "/-/reload") => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "use POST\n",
        ),
        (&Method::GET | &Method::HEAD, "/") => status_page(&app, &req),
        (&Method::GET | &Method::HEAD, "/status/text") => status_text(&app, &req),
        (&Method::GET | &Method::HEAD, "/static/status.css") => {
            let mut r = text(
                StatusCode::OK,
                "text/css; charset=utf-8",
                status::STYLESHEET,
            );
            r.headers_mut().insert(
                hyper::header::CACHE_CONTROL,
                hyper::header::HeaderValue::from_static("max-age=3600"),
            );
            r
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n",
        ),
    };
    debug!(method = %req.method(), path = %path, status = resp.status().as_u16(), "http request");
    Ok(resp)
}

async fn probe(app: &App, req: &Request<Incoming>) -> Resp {
    let params = query_params(req.uri().query().unwrap_or(""));
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let Some(name) = get("target").filter(|t| !t.is_empty()) else {
        return text(
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            "target parameter is missing\n",
        );
    };
    let debug_out = matches!(get("debug"), Some("true" | "1"));
    let hop = match NextHop::parse(name) {
        Ok(h) => h,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                "text/plain; charset=utf-8",
                format!("invalid target: {e}\n"),
            )
        }
    };
    let Some((cfg, ctx)) = app.scheduler.current() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "no configuration loaded\n",
        );
    };
    let addresses = match cfg.probe_access(&hop) {
        None => {
            warn!(target = %hop, "probe refused: not a configured target and not in probe.allow");
            return text(
                StatusCode::FORBIDDEN,
                "text/plain; charset=utf-8",
                format!("target {hop} is neither configured nor allowed by probe.allow\n"),
            );
        }
        Some(ProbeAccess::Configured) => AddressPolicy::Any,
        Some(ProbeAccess::Allowed) if cfg.probe.private_addresses => AddressPolicy::Any,
        Some(ProbeAccess::Allowed) => AddressPolicy::GlobalOnly,
    };
    let scrape_timeout = admission::scrape_timeout(
        req.headers()
            .get("x-prometheus-scrape-timeout-seconds")
            .and_then(|v| v.to_str().ok()),
    );
    let outcome = app
        .admission
        .probe(admission::Request {
            ctx,
            hop: hop.clone(),
            debug: debug_out,
            addresses,
            max_concurrent: cfg.probe.max_concurrent,
            scrape_timeout,
        })
        .await;
    let r = match admitted(outcome, &hop, cfg.probe.max_concurrent) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    // First-seen times and staged entries (README, "Rolling over certificates and keys").
    let r = crate::rollover::apply_to_probe(app.scheduler.rollover(), &cfg, &hop, r);
    if debug_out {
        return metric_response(
            req.headers(),
            "text/plain; charset=utf-8",
            format!(
                "{}{}",
                render_text(&r, true),
                render_staged(&r, unix_now() as f64)
            ),
        )
        .await;
    }
    let om = wants_openmetrics(req.headers().get(ACCEPT).and_then(|v| v.to_str().ok()));
    let (body, ctype) = metrics::render_report(r, om);
    metric_response(req.headers(), ctype, body).await
}

/// The probe's report, or the response refusing it (address policy, no slot within `limit`).
fn admitted(outcome: Outcome, hop: &NextHop, limit: usize) -> Result<Arc<TargetReport>, Box<Resp>> {
    match outcome {
        Outcome::Report(r) => Ok(r),
        Outcome::Refused(why) => {
            warn!(target = %hop, address = %why.address, range = why.range, "probe refused: non-global address");
            Err(Box::new(text(
                StatusCode::FORBIDDEN,
                "text/plain; charset=utf-8",
                format!("target {hop}: {why}\n"),
            )))
        }
        Outcome::Busy { retry_after } => {
            debug!(target = %hop, "probe refused: no probe slot within the scrape budget");
            let mut r = text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                format!(
                    "too many /probe requests: no probe slot (probe.max_concurrent = {limit}) within the scrape timeout\n"
                ),
            );
            let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
            Err(Box::new(r))
        }
    }
}

fn redirect(to: &str) -> Resp {
    let mut r = text(StatusCode::FOUND, "text/plain; charset=utf-8", "");
    if let Ok(v) = hyper::header::HeaderValue::from_str(to) {
        r.headers_mut().insert(hyper::header::LOCATION, v);
    }
    r
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The status page (`status::render_page`) over the targets this replica schedules (its shard
/// of the configured ones) and their last stored summaries, with a strict
/// Content-Security-Policy.
fn status_page(app: &App, req: &Request<Incoming>) -> Resp {
    let query = status::PageQuery::from_params(&query_params(req.uri().query().unwrap_or("")));
    let cfg = app.scheduler.current().map(|(c, _)| c);
    let shard = app.scheduler.shard();
    let store = app.scheduler.store();
    let entries: Vec<status::Entry<'_>> = cfg
        .iter()
        .flat_map(|c| c.scheduled_targets(shard))
        .map(|t| status::Entry {
            target: &t.name,
            summary: store.get(&t.name).map(|s| s.page.clone()),
        })
        .collect();
    let body = status::render_page(&entries, &query, &app.prefix.links, unix_now());
    let mut r = text(StatusCode::OK, "text/html; charset=utf-8", body);
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_SECURITY_POLICY,
        hyper::header::HeaderValue::from_static(status::CONTENT_SECURITY_POLICY),
    );
    h.insert(
        hyper::header::X_CONTENT_TYPE_OPTIONS,
        hyper::header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    r
}

/// `check`-style text of a configured target's last probe.
fn status_text(app: &App, req: &Request<Incoming>) -> Resp {
    let params = query_params(req.uri().query().unwrap_or(""));
    let Some(name) = params.iter().find(|(k, _)| k == "target").map(|(_, v)| v) else {
        return text(
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            "target parameter is missing\n",
        );
    };
    match app.scheduler.store().get(name) {
        Some(s) => text(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            status::render_text_view(name, s.page.timestamp, &s.text.text(), unix_now()),
        ),
        None => text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            format!("{name}: not a configured target, or not probed yet\n"),
        ),
    }
}

/// How long a client gets to complete the TLS handshake.
pub(crate) const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Request entry with a web config: basic auth first (every endpoint, 401 with a
/// `WWW-Authenticate` challenge), then routing; `POST /-/reload` also re-reads the web
/// config; the configured extra headers go on every response.
async fn handle_entry(
    app: Arc<App>,
    web: Option<Arc<WebState>>,
    req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    let Some(web) = web else {
        return handle(app, req).await;
    };
    let cfg = web.current();
    if let Some(auth) = &cfg.auth {
        let header = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .map(|v| v.as_bytes().to_vec());
        let ok = match auth.clone().authorize(header).await {
            Authorization::Allowed => true,
            Authorization::Denied => false,
            Authorization::Busy => {
                debug!(method = %req.method(), path = %req.uri().path(), wait = ?webconfig::BCRYPT_WAIT,
                      "password checks busy; request refused with 429");
                let mut resp = text(
                    StatusCode::TOO_MANY_REQUESTS,
                    "text/plain; charset=utf-8",
                    "Too many password checks at once; retry later\n",
                );
                resp.headers_mut().insert(
                    hyper::header::RETRY_AFTER,
                    hyper::header::HeaderValue::from_static("1"),
                );
                return Ok(with_headers(resp, &cfg));
            }
        };
        if !ok {
            debug!(method = %req.method(), path = %req.uri().path(), "unauthorized request");
            let mut resp = text(
                StatusCode::UNAUTHORIZED,
                "text/plain; charset=utf-8",
                "Unauthorized\n",
            );
            let challenge = format!("Basic realm=\"{}\"", webconfig::AUTH_REALM);
            if let Ok(v) = hyper::header::HeaderValue::from_str(&challenge) {
                resp.headers_mut()
                    .insert(hyper::header::WWW_AUTHENTICATE, v);
            }
            return Ok(with_headers(resp, &cfg));
        }
    }
    let reload = matches!(req.method(), &Method::POST | &Method::PUT)
        && app.prefix.strip(req.uri().path()) == Some("/-/reload");
    let mut resp = handle(app, req).await?;
    if reload {
        let w = web.clone();
        let outcome = tokio::task::spawn_blocking(move || w.reload()).await;
        let problem = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(e) = problem {
            warn!(error = %e, "web config rejected, the previous one keeps running");
            if resp.status().is_success() {
                resp = text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    format!("web configuration rejected, the previous one keeps running: {e}\n"),
                );
            }
        }
    }
    Ok(with_headers(resp, &cfg))
}

fn with_headers(mut resp: Resp, cfg: &WebConfig) -> Resp {
    for (name, value) in &cfg.headers {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
    resp
}

/// Serves HTTP until `stop` turns true, then closes connections gracefully (bounded by
/// `grace`); under a web config when one is given: each new connection uses the TLS
/// settings in force when it is accepted (handshake in its own task, bounded by
/// [`TLS_HANDSHAKE_TIMEOUT`]; a failed handshake only ends that connection), each request
/// the basic-auth users and headers in force when it arrives.
pub async fn serve_with(
    listener: TcpListener,
    app: Arc<App>,
    web: Option<Arc<WebState>>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let local: Option<SocketAddr> = listener.local_addr().ok();
    let tls_on = web.as_ref().is_some_and(|w| w.current().tls.is_some());
    let limits = app.limits;
    info!(address = ?local, tls = tls_on, max_connections = limits.max_connections, "listening");
    // One permit per open connection: at the limit, accept waits (clients queue in the
    // kernel's listen backlog) until a connection ends.
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        let permit = tokio::select! {
            p = open.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.changed() => break,
        };
        tokio::select! {
            conn = listener.accept() => {
                let (stream, peer) = match conn {
                    Ok(c) => c,
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let tls = web.as_ref().and_then(|w| w.current().tls.clone());
                let watcher = graceful.watcher();
                let app = app.clone();
                let web = web.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    serve_connection(stream, peer, tls, watcher, app, web).await;
                });
            }
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("connections still open after the grace period; closing");
    }
}

/// Serves one accepted connection: the TLS handshake when `tls` is set, then HTTP/1.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    watcher: hyper_util::server::graceful::Watcher,
    app: Arc<App>,
    web: Option<Arc<WebState>>,
) {
    let limits = app.limits;
    let svc = service_fn(move |req| handle_entry(app.clone(), web.clone(), req));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .max_buf_size(MAX_HEADER_BYTES)
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .timer(hyper_util::rt::TokioTimer::new());
    let result = match tls {
        None => {
            let io = DeadlineIo::new(stream, limits.write_timeout);
            watcher
                .watch(builder.serve_connection(TokioIo::new(io), svc))
                .await
        }
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            let accept = acceptor.accept(stream);
            let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, accept).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    debug!(peer = %peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(peer = %peer, after = ?TLS_HANDSHAKE_TIMEOUT, "TLS handshake timed out");
                    return;
                }
            };
            let io = DeadlineIo::new(stream, limits.write_timeout);
            watcher
                .watch(builder.serve_connection(TokioIo::new(io), svc))
                .await
        }
    };
    if let Err(e) = result {
        debug!(peer = %peer, error = %e, "connection ended with error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_decode_percent_and_plus() {
        let p = query_params("target=%5Bmx1.example.org%5D%3A587&debug=true&x");
        assert_eq!(p[0], ("target".into(), "[mx1.example.org]:587".into()));
        assert_eq!(p[1], ("debug".into(), "true".into()));
        assert_eq!(p[2], ("x".into(), String::new()));
        assert_eq!(query_params("a=%zz%4"), vec![("a".into(), "%zz%4".into())]);
    }
}
