//! What a slow or greedy HTTP client may hold: the connection limit, the response write
//! deadline ([`DeadlineIo`]), and gzip for the metric endpoints.
//!
//! Owns: [`Limits`] (`--web.max-connections`, the write deadline), the IO adapter that
//! drops a client which does not read its response in time (hyper has no write timeout),
//! `Accept-Encoding` negotiation and compression (flate2 at its fastest level), response
//! bodies: whole ([`full`]) or a scrape streamed chunk by chunk ([`scrape_response`]; the
//! gzip of `/metrics` comes from `metrics`' segment cache).
//! Not here: routing and the accept loop (`http`), TLS settings (`webconfig`).
//! RFC 9110 §12.5.3 Accept-Encoding, §12.4.2 quality values; RFC 1952 gzip.

use std::convert::Infallible;
use std::future::Future;
use std::io::{self, IoSlice, Write};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::{
    HeaderMap, HeaderValue, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, VARY,
};
use hyper::{Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tracing::warn;

use crate::metrics::Scrape;

/// A response body: one buffer, or chunks produced while it is sent.
pub type Body = BoxBody<Bytes, Infallible>;

/// A body of one buffer.
pub fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed()
}

/// A response of one buffer with a content type.
pub(crate) fn text(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    if let Ok(v) = ctype.parse() {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

/// A `/metrics` scrape as a 200 response whose body is sent as its chunks come (no
/// body-sized buffer); `Content-Encoding: gzip` when the scrape is gzip, `Vary` always.
pub(crate) fn scrape_response(s: Scrape) -> Response<Body> {
    let frames = futures::stream::iter(s.chunks.map(|b| Ok::<_, Infallible>(Frame::data(b))));
    let mut r = Response::new(StreamBody::new(frames).boxed());
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(s.content_type));
    if s.gzip {
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    h.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    r
}

/// Bodies larger than this are compressed off the async workers.
const GZIP_INLINE_MAX: usize = 256 * 1024;

/// A metric endpoint's 200 response of one body (`/probe`): gzip when the request accepts
/// it, `Vary` always.
pub(crate) async fn metric_response(
    headers: &HeaderMap,
    ctype: &str,
    body: String,
) -> Response<Body> {
    let accept = headers.get(ACCEPT_ENCODING).and_then(|v| v.to_str().ok());
    let mut r = if accepts_gzip(accept) {
        let bytes = body.into_bytes();
        let zipped = if bytes.len() <= GZIP_INLINE_MAX {
            Ok(gzip(&bytes).map_err(|_| bytes))
        } else {
            tokio::task::spawn_blocking(move || gzip(&bytes).map_err(|_| bytes)).await
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

/// Connections served at once (`--web.max-connections`); beyond it accept waits, and the
/// kernel's listen backlog holds further clients until a connection ends.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Longest time a response may take to be written: a client that does not read it is dropped.
pub(crate) const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a client gets to send a request head, also between keep-alive requests
/// (hyper starts this timer whenever it waits for a request head).
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Limits of the HTTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
        }
    }
}

/// A connection whose responses must be written within a deadline.
///
/// The clock starts with the first write after the client last sent bytes (a response
/// begins) and runs until the client sends again (its next request). A write or flush
/// still unfinished when it runs out, or attempted after it, fails with `TimedOut`, and
/// hyper closes the connection: a client that reads a large body slowly or not at all
/// holds it for at most the write timeout.
pub(crate) struct DeadlineIo<S> {
    inner: S,
    limit: Duration,
    /// When the response being written started.
    writing_since: Option<Instant>,
    timer: Pin<Box<Sleep>>,
}

impl<S> DeadlineIo<S> {
    pub(crate) fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            writing_since: None,
            timer: Box::pin(tokio::time::sleep(limit)),
        }
    }

    /// Before a write: the deadline of the current response, started now if none is.
    fn deadline(&mut self) -> io::Result<Instant> {
        let since = *self.writing_since.get_or_insert_with(Instant::now);
        let deadline = since + self.limit;
        if Instant::now() >= deadline {
            return Err(self.timed_out());
        }
        Ok(deadline)
    }

    fn timed_out(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("response not read within {:?}", self.limit),
        )
    }

    /// The write is pending: wake at the deadline, fail if it has come.
    fn pending(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<io::Result<usize>> {
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(self.timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for DeadlineIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.writing_since = None;
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for DeadlineIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let deadline = self.deadline()?;
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending => self.pending(cx, deadline),
            ready => ready,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let deadline = self.deadline()?;
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.pending(cx, deadline),
            ready => ready,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let deadline = self.deadline()?;
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.pending(cx, deadline).map_ok(|_| ()),
            ready => ready,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let deadline = self.deadline()?;
        match Pin::new(&mut self.inner).poll_shutdown(cx) {
            Poll::Pending => self.pending(cx, deadline).map_ok(|_| ()),
            ready => ready,
        }
    }
}

/// Does `Accept-Encoding` allow gzip? An explicit `gzip` (or `x-gzip`) entry decides by
/// its quality; otherwise `*` does; otherwise no (RFC 9110 §12.5.3).
pub(crate) fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let Some(header) = accept_encoding else {
        return false;
    };
    let mut star = None;
    for item in header.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
            .find_map(|v| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match coding.as_str() {
            "gzip" | "x-gzip" => return q > 0.0,
            "*" => star = Some(q > 0.0),
            _ => {}
        }
    }
    star.unwrap_or(false)
}

/// gzip at flate2's fastest level: scrape bodies are large and repetitive, and the CPU of
/// a scrape matters more than the last percent of size (docs/performance.md).
pub fn gzip(body: &[u8]) -> io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 8 + 64),
        flate2::Compression::fast(),
    );
    enc.write_all(body)?;
    enc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn gzip_is_negotiated_by_quality() {
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("identity, gzip;q=0.5")));
        // Prometheus' header.
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("br, *")));
        assert!(!accepts_gzip(Some("gzip;q=0, *")));
        assert!(!accepts_gzip(Some("GZIP; q=0.0")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(Some("")));
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn gzip_round_trips() {
        let body = "mailtls_smtp_up{target=\"example.org\"} 1\n".repeat(1000);
        let z = gzip(body.as_bytes()).unwrap();
        assert!(z.len() < body.len() / 10);
        let mut out = String::new();
        flate2::read::GzDecoder::new(&z[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, body);
    }

    /// A peer that never reads: the write fails after the limit, not before.
    #[tokio::test(start_paused = true)]
    async fn unread_response_times_out_at_the_limit() {
        let (client, server) = tokio::io::duplex(1024);
        let mut io = DeadlineIo::new(server, Duration::from_secs(60));
        let started = Instant::now();
        let err = io.write_all(&vec![b'x'; 1 << 20]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(60));
        drop(client);
    }

    /// A peer that reads and sends its next request gets a fresh deadline per response.
    #[tokio::test(start_paused = true)]
    async fn each_request_restarts_the_deadline() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = DeadlineIo::new(server, Duration::from_secs(60));
        for _ in 0..3 {
            io.write_all(b"response").await.unwrap();
            let mut buf = [0u8; 8];
            client.read_exact(&mut buf).await.unwrap();
            tokio::time::sleep(Duration::from_secs(50)).await;
            client.write_all(b"GET").await.unwrap();
            let mut req = [0u8; 3];
            io.read_exact(&mut req).await.unwrap();
        }
        // Without a new request, the same response may not go on past the limit.
        tokio::time::sleep(Duration::from_secs(61)).await;
        io.write_all(b"late").await.unwrap();
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(
            io.write_all(b"later").await.unwrap_err().kind(),
            io::ErrorKind::TimedOut
        );
    }
}
