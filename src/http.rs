//! HTTP: serves `/metrics`, `/probe`, `/-/healthy`, `/-/reload`, the status page (`/`, its
//! text view `/status/text` and stylesheet `/static/status.css`), all under the route prefix
//! of `--web.route-prefix` / `--web.external-url`.
//!
//! Owns: routing, the `/probe` allow-list (a refused target gets 403 before any DNS query
//! or connection), content negotiation hand-off to `metrics`, graceful shutdown of
//! connections. Scrapes of `/metrics` never wait on a probe. Under a `--web.config.file`:
//! TLS (tokio-rustls, handshake per connection task with a timeout) and basic auth on every
//! endpoint, with the settings `webconfig` validated.
//! Not here: probing (`probe`), encoding (`metrics`), scheduling (`scheduler`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::metrics::{self, wants_openmetrics};
use crate::probe::{probe_target, ProbeOptions};
use crate::scheduler::Scheduler;
use crate::status::{self, WebPrefix};
use crate::target::NextHop;
use crate::text::render_text;
use crate::webconfig::{self, WebConfig, WebState};

/// Longest accepted request head (hyper's minimum is 8 KiB); requests are tiny.
const MAX_HEADER_BYTES: usize = 16 * 1024;

pub struct App {
    pub scheduler: Arc<Scheduler>,
    pub exposition: metrics::Exposition,
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
            text(StatusCode::OK, ctype, body)
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
    if !cfg.probe_allowed(&hop) {
        warn!(target = %name, "probe refused: not a configured target and not in probe.allow");
        return text(
            StatusCode::FORBIDDEN,
            "text/plain; charset=utf-8",
            format!("target {name} is neither configured nor allowed by probe.allow\n"),
        );
    }
    let opts = ProbeOptions {
        fresh: true,
        transcript: debug_out,
    };
    let r = probe_target(&ctx, name, &hop, opts).await;
    if debug_out {
        return text(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            render_text(&r, true),
        );
    }
    let om = wants_openmetrics(req.headers().get(ACCEPT).and_then(|v| v.to_str().ok()));
    let (body, ctype) = metrics::render_report(Arc::new(r), om);
    text(StatusCode::OK, ctype, body)
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

/// The status page (`status::render_page`) over the configured targets and their last
/// stored summaries, with a strict Content-Security-Policy.
fn status_page(app: &App, req: &Request<Incoming>) -> Resp {
    let query = status::PageQuery::from_params(&query_params(req.uri().query().unwrap_or("")));
    let cfg = app.scheduler.current().map(|(c, _)| c);
    let store = app.scheduler.store();
    let entries: Vec<status::Entry<'_>> = cfg
        .iter()
        .flat_map(|c| c.targets.iter())
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
            status::render_text_view(name, s.page.timestamp, &s.text, unix_now()),
        ),
        None => text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            format!("{name}: not a configured target, or not probed yet\n"),
        ),
    }
}

/// How long a client gets to complete the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
        let ok = if auth.is_cached(header.as_deref()) {
            auth.check(header.as_deref())
        } else {
            // bcrypt takes tens of milliseconds by design: off the async workers.
            let cfg = cfg.clone();
            tokio::task::spawn_blocking(move || {
                cfg.auth
                    .as_ref()
                    .is_some_and(|a| a.check(header.as_deref()))
            })
            .await
            .unwrap_or(false)
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

/// Serves plain HTTP until `stop` turns true, then closes connections gracefully (bounded
/// by `grace`).
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    stop: watch::Receiver<bool>,
    grace: Duration,
) {
    serve_with(listener, app, None, stop, grace).await
}

/// As [`serve`], under a web config when one is given: each new connection uses the TLS
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
    info!(address = ?local, tls = tls_on, "listening");
    loop {
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
                    let svc = service_fn(move |req| handle_entry(app.clone(), web.clone(), req));
                    let builder = {
                        let mut b = hyper::server::conn::http1::Builder::new();
                        b.max_buf_size(MAX_HEADER_BYTES)
                            .header_read_timeout(Duration::from_secs(30))
                            .timer(hyper_util::rt::TokioTimer::new());
                        b
                    };
                    let result = match tls {
                        None => {
                            watcher
                                .watch(builder.serve_connection(TokioIo::new(stream), svc))
                                .await
                        }
                        Some(tls) => {
                            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                            let stream = match tokio::time::timeout(
                                TLS_HANDSHAKE_TIMEOUT,
                                acceptor.accept(stream),
                            )
                            .await
                            {
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
                            watcher
                                .watch(builder.serve_connection(TokioIo::new(stream), svc))
                                .await
                        }
                    };
                    if let Err(e) = result {
                        debug!(peer = %peer, error = %e, "connection ended with error");
                    }
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
