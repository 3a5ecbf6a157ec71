//! Inside TLS: the second EHLO after STARTTLS, the implicit-TLS dialogue (handshake first,
//! then greeting and EHLO), the QUIT over TLS, and TCP_QUICKACK against the delayed-ACK stall.
//!
//! Not here: the plaintext dialogue and the reply reader (`smtp`), the handshake itself
//! (`probe::tls`).
//! RFC 3207 §4.2 (the client SHOULD send EHLO again after TLS: the server's extension list
//! may differ), RFC 8314 §3.3 (implicit TLS on the submissions port), RFC 8689 §4
//! (REQUIRETLS is offered only after TLS). Why TCP_QUICKACK: docs/performance.md ("The
//! second EHLO"). Every step ends at the probe's deadline; the QUIT is not awaited.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout_at;
use tokio_rustls::client::TlsStream;
use tracing::debug;

use super::{ehlo, ehlo_keywords, error_text, greet, handshake, quit_deadline, Conn, SmtpOptions};
use crate::model::smtp::{Phase, ProbeError, Reply, SmtpReport};

/// A stream the dialogue runs over, with the TCP socket beneath it (for socket options).
pub(super) trait Transport: AsyncRead + AsyncWrite + Unpin {
    fn tcp(&self) -> &TcpStream;
}

impl Transport for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Transport for TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// Acknowledge the next segment at once instead of after Linux' delayed-ACK timer (40 ms):
/// the server's reply to a command written right after a TLS 1.3 session ticket is held
/// (Nagle) until the ticket is acknowledged. Not sticky, so set after every write.
/// Elsewhere than Linux a no-op; a failure only costs the stall, so it is only logged.
pub(super) fn quickack(stream: &TcpStream) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_quickack(true) {
        debug!(error = %e, "TCP_QUICKACK not set");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = stream;
}

/// STARTTLS mode, after the handshake: EHLO again (RFC 3207 §4.2).
pub(super) async fn ehlo_after_tls(
    conn: &mut Conn<'_, TlsStream<TcpStream>>,
    helo_name: &str,
) -> Result<Reply, ProbeError> {
    conn.exchange(Phase::EhloAfterTls, &[b"EHLO ", helo_name.as_bytes()])
        .await
}

/// Records the second EHLO's outcome: its reply and keywords, or why there was none. A
/// server that completed the handshake and then does not answer with 250 fails the probe
/// with its own reason (`ehlo_after_tls_*`; docs/verdict.md).
pub(super) fn record_ehlo_after_tls(
    report: &mut SmtpReport,
    reply: Result<Reply, ProbeError>,
) -> Result<(), ProbeError> {
    report.ehlo_after_tls_sent = true;
    let reply = report.ehlo_after_tls.insert(reply?);
    report.extensions_after_tls = ehlo_keywords(reply);
    if reply.code == 250 {
        Ok(())
    } else {
        Err(ProbeError::EhloAfterTlsRejected {
            code: reply.code,
            text: error_text(reply),
        })
    }
}

/// Implicit TLS (RFC 8314 §3.3), once connected: handshake, then greeting and EHLO inside
/// TLS, then QUIT. No STARTTLS: `starttls_advertised` stays false and is not exported.
pub(super) async fn run_implicit(
    stream: TcpStream,
    server_name: rustls::pki_types::ServerName<'static>,
    opts: &SmtpOptions,
    report: &mut SmtpReport,
) -> Result<(), ProbeError> {
    let mut transcript = opts.transcript.then_some(&mut report.transcript);
    if let Some(t) = transcript.as_mut() {
        t.push("-- implicit TLS (RFC 8314): handshake before the greeting".to_owned());
    }
    let handshake = handshake(stream, server_name, opts, transcript.as_deref_mut()).await;
    let (tls_stream, facts) = handshake?;
    report.tls = Some(facts);
    if opts.quickack {
        // The greeting follows the session ticket, as a reply follows a command.
        quickack(tls_stream.get_ref().0);
    }
    let mut conn = Conn::new(tls_stream, transcript, opts.deadline, opts.quickack);
    let mut seen = Seen::default();
    let result = implicit_dialogue(&mut conn, &opts.helo_name, &mut seen).await;
    quit_tls(&mut conn).await;
    drop(conn);
    if let Some(reply) = seen.ehlo.as_ref().filter(|r| r.code == 250) {
        report.extensions = ehlo_keywords(reply);
        report.extensions_after_tls = report.extensions.clone();
    }
    report.greeting = seen.greeting;
    report.ehlo = seen.ehlo;
    result
}

/// The replies of the implicit-TLS dialogue, kept while the connection borrows the
/// report's transcript.
#[derive(Default)]
struct Seen {
    greeting: Option<Reply>,
    ehlo: Option<Reply>,
}

/// Greeting and EHLO inside TLS.
async fn implicit_dialogue(
    conn: &mut Conn<'_, TlsStream<TcpStream>>,
    helo_name: &str,
    seen: &mut Seen,
) -> Result<(), ProbeError> {
    let greeting = seen.greeting.insert(greet(conn).await?);
    if greeting.code != 220 {
        return Err(ProbeError::GreetingRejected {
            code: greeting.code,
            text: error_text(greeting),
        });
    }
    let reply = seen.ehlo.insert(ehlo(conn, helo_name).await?);
    if reply.code != 250 {
        return Err(ProbeError::EhloRejected {
            code: reply.code,
            text: error_text(reply),
        });
    }
    Ok(())
}

/// QUIT, close_notify, FIN; do not wait for the 221 (it changes nothing the probe learned).
/// At most `QUIT_TIMEOUT`, never past the deadline; a failure is only logged.
pub(super) async fn quit_tls(conn: &mut Conn<'_, TlsStream<TcpStream>>) {
    if let Some(t) = conn.transcript.as_mut() {
        t.push("C: QUIT (over TLS; the 221 is not awaited)".to_owned());
    }
    let stream = &mut conn.stream;
    let quit = timeout_at(quit_deadline(conn.deadline), async {
        stream.write_all(b"QUIT\r\n").await?;
        stream.shutdown().await
    })
    .await;
    match quit {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(phase = "quit", error = %e, "QUIT over TLS failed"),
        Err(_) => debug!(phase = "quit", "QUIT over TLS timed out"),
    }
}

#[cfg(test)]
mod tests {
    //! The dialogue inside TLS against in-test servers on 127.0.0.1 (helpers: `smtp::tests`).

    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    use tokio::sync::oneshot;
    use tokio::time::Instant;
    use tokio_rustls::server::TlsStream as ServerTls;

    use super::super::tests::{
        assert_error, hold, options, pki, read_line, serve, server_config, until_starttls,
        EHLO_TLS_OK,
    };
    use super::super::{probe, TlsMode};

    /// STARTTLS, a TLS 1.3 handshake, then `after` runs on the server's TLS stream.
    async fn starttls_then<F, Fut>(after: F) -> std::net::SocketAddr
    where
        F: FnOnce(ServerTls<TcpStream>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let config = server_config(&pki(), &[&rustls::version::TLS13]);
        serve(move |mut s| async move {
            until_starttls(&mut s).await;
            s.write_all(b"220 2.0.0 Ready\r\n").await.unwrap();
            if let Ok(tls) = tokio_rustls::TlsAcceptor::from(config).accept(s).await {
                after(tls).await;
            }
        })
        .await
    }

    /// A TLS-terminating proxy that completes the handshake and then forwards nothing:
    /// handshake success, EHLO after TLS failed with its own reason.
    #[tokio::test(start_paused = true)]
    async fn silent_after_the_handshake_is_ehlo_after_tls_timeout() {
        let addr = starttls_then(|tls| async move {
            let _keep = tls;
            tokio::time::sleep(Duration::from_secs(3600)).await;
        })
        .await;
        let mut opts = options();
        opts.deadline = Instant::now() + Duration::from_secs(3);
        let report = probe(addr, &opts).await;
        assert!(report.tls.is_some() && report.smtp_up());
        assert_error(&report, "ehlo_after_tls_timeout");
        assert_eq!(report.ehlo_after_tls_success(), Some(false));
        assert_eq!(report.requiretls_advertised(), None);
        assert!(report.error.as_ref().is_some_and(|e| e.is_timeout()));
        assert!(
            report
                .transcript
                .iter()
                .any(|l| l == "C: EHLO probe.test.example")
                && report
                    .transcript
                    .last()
                    .is_some_and(|l| l.starts_with("C: QUIT")),
            "{:?}",
            report.transcript
        );
    }

    #[tokio::test]
    async fn close_after_the_handshake_is_ehlo_after_tls_closed() {
        let addr = starttls_then(|mut tls| async move {
            let _ = read_line(&mut tls).await;
            let _ = tls.shutdown().await;
        })
        .await;
        let report = probe(addr, &options()).await;
        assert!(report.tls.is_some());
        assert_error(&report, "ehlo_after_tls_closed");
        assert_eq!(report.ehlo_after_tls_success(), Some(false));
    }

    #[tokio::test]
    async fn refusal_after_the_handshake_is_ehlo_after_tls_rejected() {
        let addr = starttls_then(|mut tls| async move {
            let _ = read_line(&mut tls).await;
            let _ = tls.write_all(b"421 4.3.2 backend unavailable\r\n").await;
            let _ = read_line(&mut tls).await;
        })
        .await;
        let report = probe(addr, &options()).await;
        assert_error(&report, "ehlo_after_tls_rejected");
        assert_eq!(report.ehlo_after_tls.as_ref().map(|r| r.code), Some(421));
        assert_eq!(report.ehlo_after_tls_success(), Some(false));
    }

    /// RFC 8689 §4: REQUIRETLS counts only when offered after TLS; the plaintext EHLO of
    /// `until_starttls` offers it, this server's EHLO over TLS does not.
    #[tokio::test]
    async fn requiretls_counts_only_inside_tls() {
        let addr = starttls_then(|mut tls| async move {
            let _ = read_line(&mut tls).await;
            let _ = tls
                .write_all(b"250-mx.test.example\r\n250 8BITMIME\r\n")
                .await;
            let _ = read_line(&mut tls).await;
        })
        .await;
        let report = probe(addr, &options()).await;
        assert!(report.error.is_none(), "{:?}", report.error);
        assert!(report.extensions.iter().any(|k| k == "REQUIRETLS"));
        assert_eq!(report.ehlo_after_tls_success(), Some(true));
        assert_eq!(report.requiretls_advertised(), Some(false));
    }

    #[tokio::test]
    async fn without_the_second_ehlo_only_quit_follows_tls() {
        let (tx, rx) = oneshot::channel();
        let addr = starttls_then(|mut tls| async move {
            let _ = tx.send(read_line(&mut tls).await);
        })
        .await;
        let report = probe(addr, &options().with_ehlo_after_tls(false)).await;
        assert!(report.error.is_none(), "{:?}", report.error);
        assert_eq!(rx.await.unwrap(), "QUIT\r\n");
        assert_eq!(report.ehlo_after_tls_success(), None);
        assert_eq!(report.requiretls_advertised(), None);
    }

    /// RFC 8314 §3.3: the handshake comes first, then greeting and EHLO inside TLS.
    #[tokio::test]
    async fn implicit_tls_handshakes_first_then_greets_inside_tls() {
        let config = server_config(&pki(), &[&rustls::version::TLS13]);
        let (tx, rx) = oneshot::channel();
        let addr = serve(move |s| async move {
            let Ok(mut tls) = tokio_rustls::TlsAcceptor::from(config).accept(s).await else {
                return;
            };
            let sni = tls.get_ref().1.server_name().map(str::to_owned);
            tls.write_all(b"220 mx.test.example ESMTP\r\n")
                .await
                .unwrap();
            let ehlo = read_line(&mut tls).await;
            tls.write_all(EHLO_TLS_OK).await.unwrap();
            let quit = read_line(&mut tls).await;
            let _ = tx.send((sni, ehlo, quit));
        })
        .await;
        let mut opts = options();
        opts.tls_mode = Some(TlsMode::Implicit);
        let report = probe(addr, &opts).await;
        assert!(report.error.is_none(), "{:?}", report.error);
        assert_eq!(report.tls_mode, TlsMode::Implicit);
        assert!(report.smtp_up() && report.tls.is_some());
        assert!(!report.starttls_advertised && report.starttls.is_none());
        assert_eq!(report.ehlo_after_tls_success(), Some(true));
        assert_eq!(report.requiretls_advertised(), Some(true));
        let (sni, ehlo, quit) = rx.await.unwrap();
        assert_eq!(sni.as_deref(), Some(super::super::tests::MX));
        assert_eq!(ehlo, "EHLO probe.test.example\r\n");
        assert_eq!(quit, "QUIT\r\n");
        assert!(report.transcript[0].starts_with("-- implicit TLS"));
        assert!(report.transcript[1].starts_with("-- TLS handshake: TLSv1.3"));
        assert_eq!(report.transcript[2], "S: 220 mx.test.example ESMTP");
    }

    /// A plaintext server on a port taken for implicit TLS: the greeting arrives where the
    /// ServerHello should.
    #[tokio::test]
    async fn implicit_tls_against_a_plaintext_greeting_is_a_handshake_failure() {
        let addr = serve(|mut s| async move {
            let _ = s.write_all(b"220 mx.test.example ESMTP\r\n").await;
            hold(s).await;
        })
        .await;
        let mut opts = options();
        opts.tls_mode = Some(TlsMode::Implicit);
        let report = probe(addr, &opts).await;
        assert_error(&report, "tls_handshake");
        assert!(report.connected && report.tls.is_none() && !report.smtp_up());
        assert_eq!(report.ehlo_after_tls_success(), None);
    }

    /// Implicit TLS that greets with 554 inside TLS: SMTP down, handshake fine.
    #[tokio::test]
    async fn implicit_tls_greeting_rejected_inside_tls() {
        let config = server_config(&pki(), &[&rustls::version::TLS12]);
        let addr = serve(move |s| async move {
            if let Ok(mut tls) = tokio_rustls::TlsAcceptor::from(Arc::clone(&config))
                .accept(s)
                .await
            {
                let _ = tls.write_all(b"554 go away\r\n").await;
                let _ = read_line(&mut tls).await;
            }
        })
        .await;
        let mut opts = options();
        opts.tls_mode = Some(TlsMode::Implicit);
        let report = probe(addr, &opts).await;
        assert_error(&report, "greeting_rejected");
        assert!(report.tls.is_some() && !report.smtp_up());
        assert_eq!(report.ehlo_after_tls_success(), Some(false));
    }
}
