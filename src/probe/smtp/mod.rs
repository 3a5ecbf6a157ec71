//! SMTP side of a probe: greeting, EHLO, STARTTLS, then hand-off to `tls`, then EHLO again
//! over TLS and QUIT; or, in implicit-TLS mode, the handshake first (`secure`).
//!
//! Owns: the hand-written client dialogue under one deadline that every phase shares; the bounded
//! incremental reply parser lives in `reply`, what happens inside TLS (the second EHLO,
//! implicit TLS, QUIT, TCP_QUICKACK) in `secure`, the report values in `model::smtp`.
//! Not here: DNS (`probe::mx`), the TLS configuration and handshake facts (`probe::tls`),
//! judging certificates (`dane`, `cert`), metrics (`metrics`).
//! RFC 5321 §4.1.1.1 (EHLO), §4.2 (replies), §4.5.3.1.5 (reply line length),
//! §4.5.3.2 (timeouts); RFC 3207 (STARTTLS; §6 and CVE-2011-0411: no plaintext may follow
//! the 220 to STARTTLS). Reads are capped in bytes ([`MAX_LINE_OCTETS`],
//! [`MAX_REPLY_LINES`]) and the whole dialogue in time, so a misbehaving server yields a
//! `ProbeError` quickly and with bounded memory.

pub mod reply;
mod secure;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::client::TlsStream;
use tracing::{debug, instrument};

use super::tls::{self, TlsError};
use crate::model::smtp::{
    IoFailure, Phase, ProbeError, Reply, SmtpReport, TlsFacts, TlsMode, MAX_ERROR_TEXT_CHARS,
};
use reply::{ReplyParser, MAX_LINE_OCTETS};
use secure::Transport;

/// Budget of a probe whose caller sets no deadline ([`SmtpOptions::new`]); the exporter
/// always passes its target deadline instead.
pub(crate) const DEFAULT_BUDGET: Duration = Duration::from_secs(30);
/// Cap on the polite QUIT at the end (never extends a failed or finished probe by more,
/// and never goes past the deadline).
const QUIT_TIMEOUT: Duration = Duration::from_secs(2);
/// Read buffer: larger than one line, so a partial line always fits after compaction.
const READ_BUFFER_OCTETS: usize = 2 * MAX_LINE_OCTETS;
/// Longest HELO name (RFC 1035 domain, or an address literal).
const MAX_HELO_OCTETS: usize = 255;

/// Settings of one SMTP STARTTLS probe.
#[derive(Debug, Clone)]
pub struct SmtpOptions {
    /// Name sent in EHLO (a domain or an address literal; no spaces or controls).
    pub(crate) helo_name: String,
    /// SNI: the TLSA base domain / MX name; `None` for an IP-literal target (no SNI).
    pub server_name: Option<String>,
    /// From [`tls::client_config`].
    pub(crate) tls: Arc<rustls::ClientConfig>,
    /// The one deadline of the whole dialogue: every phase (connect, greeting, EHLO,
    /// STARTTLS, handshake) may use whatever is left of it, so a slow phase (a postscreen
    /// greeting pause) is fine as long as the rest still fits. There is no per-phase cap:
    /// RFC 5321 §4.5.3.2 lets a client wait minutes per reply, and the caller's budget is
    /// already the bound an operator chose.
    pub(crate) deadline: Instant,
    /// Record the dialogue (for `/probe?debug=true` and `check`).
    pub(crate) transcript: bool,
    /// `None`: as the port implies ([`TlsMode::for_port`]: implicit on 465).
    pub tls_mode: Option<TlsMode>,
    /// STARTTLS mode: send EHLO again over TLS (RFC 3207 §4.2) and read the reply before
    /// QUIT, as every sender does (REQUIRETLS, a proxy that breaks after the handshake).
    pub(crate) ehlo_after_tls: bool,
    /// Set TCP_QUICKACK after each command written over TLS, so the ACK of the server's
    /// TLS 1.3 session ticket is not delayed by 40 ms (docs/performance.md).
    pub(crate) quickack: bool,
}

impl SmtpOptions {
    /// Options with a deadline [`DEFAULT_BUDGET`] from now, no SNI and no transcript.
    pub fn new(helo_name: impl Into<String>, tls: Arc<rustls::ClientConfig>) -> Self {
        Self {
            helo_name: helo_name.into(),
            server_name: None,
            tls,
            deadline: Instant::now() + DEFAULT_BUDGET,
            transcript: false,
            tls_mode: None,
            ehlo_after_tls: true,
            quickack: true,
        }
    }

    /// Send the second EHLO over TLS or not (benchmarks compare both; the exporter sends it).
    pub fn with_ehlo_after_tls(mut self, on: bool) -> Self {
        self.ehlo_after_tls = on;
        self
    }

    /// Set TCP_QUICKACK after commands over TLS or not (benchmarks compare both).
    pub fn with_quickack(mut self, on: bool) -> Self {
        self.quickack = on;
        self
    }
}

impl From<TlsError> for ProbeError {
    fn from(e: TlsError) -> Self {
        match e {
            TlsError::BadServerName { name } => Self::BadServerName { name },
            TlsError::Timeout { after } => Self::TlsTimeout { after },
            TlsError::Handshake { io_kind, message } => Self::Handshake { io_kind, message },
        }
    }
}

fn error_text(reply: &Reply) -> String {
    reply
        .first_line()
        .chars()
        .take(MAX_ERROR_TEXT_CHARS)
        .collect()
}

/// RFC 5321 §4.1.1.1 / §4.1.3: a domain or address literal; here only checked to be
/// printable ASCII without spaces, so it cannot inject a command.
fn valid_helo_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_HELO_OCTETS
        && name.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// EHLO keywords (RFC 5321 §4.1.1.1: `ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT /
/// "-")`) from the lines after the first, upper case; malformed ones are skipped.
fn ehlo_keywords(reply: &Reply) -> Vec<String> {
    reply
        .lines
        .iter()
        .skip(1)
        .filter_map(|line| line.split_ascii_whitespace().next())
        .filter(|kw| {
            kw.as_bytes()
                .first()
                .is_some_and(|b| b.is_ascii_alphanumeric())
                && kw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .map(str::to_ascii_uppercase)
        .collect()
}

/// Probe `addr`: connect, greeting, EHLO, STARTTLS, TLS handshake, EHLO, QUIT (implicit
/// TLS: connect, handshake, greeting, EHLO, QUIT). Never panics;
/// every phase ends at `opts.deadline` at the latest (a timeout names the phase it cut),
/// the polite QUIT included.
#[instrument(skip_all, fields(address = %addr))]
pub async fn probe(addr: SocketAddr, opts: &SmtpOptions) -> SmtpReport {
    let started = Instant::now();
    let mut report = SmtpReport::new(addr);
    if let Some(mode) = opts.tls_mode {
        report.tls_mode = mode;
    }
    if let Err(e) = run(addr, opts, &mut report).await {
        debug!(reason = e.reason(), error = %e, "SMTP probe failed");
        report.error = Some(e);
    }
    report.seconds = started.elapsed().as_secs_f64();
    debug!(
        seconds = report.seconds,
        smtp_up = report.smtp_up(),
        tls = report.tls.is_some(),
        "SMTP probe done"
    );
    report
}

/// The dialogue, one phase per step; each step records what it saw in `report`.
async fn run(
    addr: SocketAddr,
    opts: &SmtpOptions,
    report: &mut SmtpReport,
) -> Result<(), ProbeError> {
    if !valid_helo_name(&opts.helo_name) {
        return Err(ProbeError::InvalidHeloName {
            name: opts.helo_name.chars().take(MAX_ERROR_TEXT_CHARS).collect(),
        });
    }
    // Before connecting: a bad name is our problem, not the server's.
    let server_name = tls::server_name(opts.server_name.as_deref(), addr.ip())?;

    let stream = connect(addr, opts.deadline).await?;
    report.connected = true;
    if report.tls_mode == TlsMode::Implicit {
        return secure::run_implicit(stream, server_name, opts, report).await;
    }
    let transcript = opts.transcript.then_some(&mut report.transcript);
    let mut conn = Conn::new(stream, transcript, opts.deadline, false);

    let greeting = greet(&mut conn).await;
    let greeting = report.greeting.insert(greeting?);
    if greeting.code != 220 {
        return conn
            .quit_plain(ProbeError::GreetingRejected {
                code: greeting.code,
                text: error_text(greeting),
            })
            .await;
    }
    let ehlo = ehlo(&mut conn, &opts.helo_name).await;
    let ehlo = report.ehlo.insert(ehlo?);
    if ehlo.code != 250 {
        let err = ProbeError::EhloRejected {
            code: ehlo.code,
            text: error_text(ehlo),
        };
        return conn.quit_plain(err).await;
    }
    report.extensions = ehlo_keywords(ehlo);
    report.starttls_advertised = report.extensions.iter().any(|k| k == "STARTTLS");
    if !report.starttls_advertised {
        return conn.quit_plain(ProbeError::StartTlsNotOffered).await;
    }
    let reply = starttls(&mut conn).await;
    let reply = report.starttls.insert(reply?);
    if reply.code != 220 {
        let err = ProbeError::StartTlsRejected {
            code: reply.code,
            text: error_text(reply),
        };
        return conn.quit_plain(err).await;
    }
    // RFC 3207 §6 / CVE-2011-0411: nothing may follow the 220 in plaintext. Abort
    // without a QUIT: the dialogue is no longer trustworthy.
    let pipelined = conn.pipelined();
    if pipelined > 0 {
        return Err(ProbeError::DataAfterStartTls { octets: pipelined });
    }
    let (stream, mut transcript) = conn.into_parts();
    let handshake = handshake(stream, server_name, opts, transcript.as_deref_mut()).await;
    let (tls_stream, facts) = handshake?;
    report.tls = Some(facts);
    let mut conn = Conn::new(tls_stream, transcript, opts.deadline, opts.quickack);
    let reply = if opts.ehlo_after_tls {
        Some(secure::ehlo_after_tls(&mut conn, &opts.helo_name).await)
    } else {
        None
    };
    secure::quit_tls(&mut conn).await;
    drop(conn);
    match reply {
        Some(reply) => secure::record_ehlo_after_tls(report, reply),
        None => Ok(()),
    }
}

/// Greeting (RFC 5321 §3.1, §4.3.1): may take whatever is left of the budget (postscreen
/// holds it back for its greet wait, 6 s by default).
async fn greet<S: Transport>(conn: &mut Conn<'_, S>) -> Result<Reply, ProbeError> {
    let started = Instant::now();
    timeout_at(conn.deadline, conn.read_reply(Phase::Greeting))
        .await
        .map_err(|_| ProbeError::GreetingTimeout {
            after: started.elapsed(),
        })?
}

/// EHLO (RFC 5321 §4.1.1.1).
async fn ehlo<S: Transport>(conn: &mut Conn<'_, S>, helo_name: &str) -> Result<Reply, ProbeError> {
    conn.exchange(Phase::Ehlo, &[b"EHLO ", helo_name.as_bytes()])
        .await
}

/// STARTTLS (RFC 3207 §4).
async fn starttls(conn: &mut Conn<'_, TcpStream>) -> Result<Reply, ProbeError> {
    conn.exchange(Phase::StartTls, &[b"STARTTLS"]).await
}

/// The TLS handshake over the plaintext socket (its read buffer is empty, so no byte is
/// lost at the hand-over), within what is left of the deadline.
async fn handshake(
    stream: TcpStream,
    server_name: rustls::pki_types::ServerName<'static>,
    opts: &SmtpOptions,
    mut transcript: Option<&mut Vec<String>>,
) -> Result<(TlsStream<TcpStream>, TlsFacts), ProbeError> {
    let handshake = tls::handshake(stream, server_name, Arc::clone(&opts.tls), opts.deadline).await;
    if let Some(t) = transcript.as_mut() {
        match &handshake {
            Ok((_, facts)) => {
                t.push(format!(
                    "-- TLS handshake: {} {} ({} certificates, {:.1} ms)",
                    facts.version,
                    facts.cipher,
                    facts.chain_len,
                    facts.handshake_seconds * 1e3
                ));
            }
            Err(e) => t.push(format!("-- TLS handshake failed: {e}")),
        }
    }
    handshake.map_err(ProbeError::from)
}

/// The QUIT gets at most [`QUIT_TIMEOUT`], and never goes past the probe's deadline.
fn quit_deadline(deadline: Instant) -> Instant {
    deadline.min(Instant::now() + QUIT_TIMEOUT)
}

async fn connect(addr: SocketAddr, deadline: Instant) -> Result<TcpStream, ProbeError> {
    let started = Instant::now();
    let stream = match timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_) => {
            return Err(ProbeError::ConnectTimeout {
                addr,
                after: started.elapsed(),
            })
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(ProbeError::ConnectRefused { addr })
        }
        Ok(Err(e)) => {
            return Err(ProbeError::Connect {
                addr,
                error: IoFailure::from(&e),
            })
        }
        Ok(Ok(s)) => s,
    };
    // Small commands, one per round trip: do not let Nagle hold them.
    if let Err(e) = stream.set_nodelay(true) {
        debug!(error = %e, "TCP_NODELAY not set");
    }
    Ok(stream)
}

/// The connection (plaintext, or TLS after the handshake): stream, one fixed read buffer
/// (reused for every reply), the reply parser and the optional transcript.
struct Conn<'t, S> {
    stream: S,
    buf: Box<[u8]>,
    /// Unconsumed input is `buf[start..end]`.
    start: usize,
    end: usize,
    parser: ReplyParser,
    out: Vec<u8>,
    transcript: Option<&'t mut Vec<String>>,
    /// The probe's deadline: no phase reads or writes past it.
    deadline: Instant,
    /// TCP_QUICKACK after each command ([`SmtpOptions::quickack`]; over TLS only).
    quickack: bool,
}

impl<'t> Conn<'t, TcpStream> {
    fn into_parts(self) -> (TcpStream, Option<&'t mut Vec<String>>) {
        (self.stream, self.transcript)
    }

    /// Octets pipelined after the last reply: those already buffered, plus whatever the
    /// socket holds right now (one non-blocking read; they are discarded, as the probe
    /// aborts anyway). Bytes arriving later reach the TLS layer and fail the handshake.
    fn pipelined(&mut self) -> usize {
        let mut octets = self.buffered();
        let free = if self.end < self.buf.len() {
            self.end
        } else {
            // Buffer full: any free slice will do, the content is thrown away.
            self.start = 0;
            self.end = 0;
            0
        };
        if let Ok(n) = self.stream.try_read(&mut self.buf[free..]) {
            octets += n;
        }
        octets
    }
}

impl<'t, S: Transport> Conn<'t, S> {
    fn new(
        stream: S,
        transcript: Option<&'t mut Vec<String>>,
        deadline: Instant,
        quickack: bool,
    ) -> Self {
        Self {
            stream,
            buf: vec![0; READ_BUFFER_OCTETS].into_boxed_slice(),
            start: 0,
            end: 0,
            parser: ReplyParser::new(),
            out: Vec::with_capacity(64),
            transcript,
            deadline,
            quickack,
        }
    }

    /// Octets received but not consumed by any reply.
    fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Read one complete reply. Not bounded in time by itself: callers wrap the phase in
    /// a timeout. Bounded in memory by the parser's limits and the fixed buffer.
    async fn read_reply(&mut self, phase: Phase) -> Result<Reply, ProbeError> {
        loop {
            if self.start < self.end {
                let (n, reply) = self
                    .parser
                    .feed(&self.buf[self.start..self.end])
                    .map_err(|e| ProbeError::from_reply_error(phase, e, self.parser.is_idle()))?;
                self.start += n;
                if self.start == self.end {
                    self.start = 0;
                    self.end = 0;
                }
                if let Some(reply) = reply {
                    debug!(
                        phase = phase.as_str(),
                        code = reply.code,
                        lines = reply.lines.len(),
                        "reply"
                    );
                    if let Some(t) = self.transcript.as_mut() {
                        record_reply(t, &reply);
                    }
                    return Ok(reply);
                }
            }
            if self.end == self.buf.len() {
                // The unfinished line is shorter than MAX_LINE_OCTETS (the parser checked),
                // so this frees at least half the buffer.
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let n = match self.stream.read(&mut self.buf[self.end..]).await {
                Ok(n) => n,
                Err(e) => return Err(self.io_error(phase, &e)),
            };
            if n == 0 {
                return Err(ProbeError::Closed {
                    phase,
                    reset: false,
                    partial_octets: self.buffered(),
                });
            }
            self.end += n;
        }
    }

    /// Send a command (its parts concatenated, CRLF appended).
    async fn send(&mut self, phase: Phase, parts: &[&[u8]]) -> Result<(), ProbeError> {
        self.out.clear();
        for part in parts {
            self.out.extend_from_slice(part);
        }
        if let Some(t) = self.transcript.as_mut() {
            let mut line = String::with_capacity(self.out.len() + 3);
            line.push_str("C: ");
            line.push_str(&String::from_utf8_lossy(&self.out));
            t.push(line);
        }
        self.out.extend_from_slice(b"\r\n");
        debug!(phase = phase.as_str(), "command");
        if let Err(e) = self.stream.write_all(&self.out).await {
            return Err(self.io_error(phase, &e));
        }
        // tokio-rustls may buffer a record until flushed; a plain socket's flush is a no-op.
        if let Err(e) = self.stream.flush().await {
            return Err(self.io_error(phase, &e));
        }
        if self.quickack {
            // After the write, not before: docs/performance.md.
            secure::quickack(self.stream.tcp());
        }
        Ok(())
    }

    /// A reset or broken pipe is the server closing on us: `Closed`; the rest is `Io`.
    fn io_error(&self, phase: Phase, e: &std::io::Error) -> ProbeError {
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
        match e.kind() {
            ConnectionReset | ConnectionAborted | BrokenPipe => ProbeError::Closed {
                phase,
                reset: true,
                partial_octets: self.buffered(),
            },
            _ => ProbeError::Io {
                phase,
                error: IoFailure::from(e),
            },
        }
    }

    /// Command and reply, both before the probe's deadline (so a dripping server cannot
    /// stretch a phase past it).
    async fn exchange(&mut self, phase: Phase, command: &[&[u8]]) -> Result<Reply, ProbeError> {
        self.exchange_until(phase, self.deadline, command).await
    }

    async fn exchange_until(
        &mut self,
        phase: Phase,
        deadline: Instant,
        command: &[&[u8]],
    ) -> Result<Reply, ProbeError> {
        let started = Instant::now();
        timeout_at(deadline, async {
            self.send(phase, command).await?;
            self.read_reply(phase).await
        })
        .await
        .map_err(|_| ProbeError::ReplyTimeout {
            phase,
            after: started.elapsed(),
        })?
    }

    /// Polite end of a plaintext session after `err`: QUIT, wait briefly for the 221
    /// (cheap without TLS), close, return `err`. Failures change nothing the probe
    /// learned, so they are only logged.
    async fn quit_plain(&mut self, err: ProbeError) -> Result<(), ProbeError> {
        let until = quit_deadline(self.deadline);
        if let Err(e) = self.exchange_until(Phase::Quit, until, &[b"QUIT"]).await {
            debug!(phase = "quit", reason = e.reason(), "QUIT not answered");
        }
        let _ = timeout_at(until, self.stream.shutdown()).await;
        Err(err)
    }
}

fn record_reply(t: &mut Vec<String>, reply: &Reply) {
    let n = reply.lines.len();
    for (i, text) in reply.lines.iter().enumerate() {
        let sep = if i + 1 == n { ' ' } else { '-' };
        t.push(format!("S: {}{sep}{text}", reply.code));
    }
}

#[cfg(test)]
mod tests {
    use super::reply::MAX_REPLY_LINES;
    use super::*;
    use crate::model::smtp::ReplyError;

    #[test]
    fn helo_names_that_could_inject_are_invalid() {
        assert!(valid_helo_name("probe.example.org"));
        assert!(valid_helo_name("[192.0.2.1]"));
        assert!(!valid_helo_name(""));
        assert!(!valid_helo_name("a b"));
        assert!(!valid_helo_name("a\r\nRCPT TO:<x>"));
    }

    #[test]
    fn error_reasons_are_label_safe() {
        let errors = [
            ProbeError::StartTlsNotOffered,
            ProbeError::GreetingTimeout {
                after: Duration::from_secs(1),
            },
            ProbeError::ReplyTimeout {
                phase: Phase::Ehlo,
                after: Duration::from_secs(1),
            },
            ProbeError::DataAfterStartTls { octets: 3 },
        ];
        for e in errors {
            assert!(e
                .reason()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }

    // ---------- dialogue against in-test servers on 127.0.0.1 ----------

    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::AsyncRead;
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;

    pub(super) const MX: &str = "mx.test.example";

    pub(super) struct TestPki {
        pub(super) chain: Vec<CertificateDer<'static>>,
        pub(super) key: PrivateKeyDer<'static>,
    }

    /// CA + leaf for `MX`, served as leaf, CA.
    pub(super) fn pki() -> TestPki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec![MX.to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        TestPki {
            chain: vec![leaf.der().clone(), ca.der().clone()],
            key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()).into(),
        }
    }

    pub(super) fn server_config(
        pki: &TestPki,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ServerConfig> {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.chain.clone(), pki.key.clone_key())
        .unwrap();
        Arc::new(config)
    }

    pub(super) fn options() -> SmtpOptions {
        let mut o = SmtpOptions::new("probe.test.example", tls::client_config());
        o.server_name = Some(MX.to_owned());
        o.deadline = Instant::now() + Duration::from_secs(5);
        o.transcript = true;
        o
    }

    /// Serve one connection on 127.0.0.1 with `script`.
    pub(super) async fn serve<F, Fut>(script: F) -> SocketAddr
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            if let Ok((s, _)) = listener.accept().await {
                script(s).await;
            }
        });
        addr
    }

    /// Read one command line byte by byte (never over-reads, so TLS can follow).
    pub(super) async fn read_line<R: AsyncRead + Unpin>(r: &mut R) -> String {
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while r.read(&mut b).await.unwrap_or(0) == 1 {
            line.push(b[0]);
            if b[0] == b'\n' {
                break;
            }
        }
        String::from_utf8_lossy(&line).into_owned()
    }

    pub(super) const EHLO_OK: &[u8] = b"250-mx.test.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n250-STARTTLS\r\n250 REQUIRETLS\r\n";

    /// Greeting and EHLO with STARTTLS, then read the STARTTLS command.
    pub(super) async fn until_starttls(s: &mut TcpStream) {
        s.write_all(b"220 mx.test.example ESMTP test\r\n")
            .await
            .unwrap();
        assert!(read_line(s).await.starts_with("EHLO probe.test.example"));
        s.write_all(EHLO_OK).await.unwrap();
        assert_eq!(read_line(s).await, "STARTTLS\r\n");
    }

    /// The reply of [`good_server`] to the EHLO over TLS.
    pub(super) const EHLO_TLS_OK: &[u8] =
        b"250-mx.test.example\r\n250-PIPELINING\r\n250-REQUIRETLS\r\n250 SIZE 10240000\r\n";

    /// A good STARTTLS server that answers the EHLO over TLS with [`EHLO_TLS_OK`]; sends
    /// (SNI seen, commands after TLS) when done.
    async fn good_server(
        config: Arc<rustls::ServerConfig>,
    ) -> (SocketAddr, oneshot::Receiver<(Option<String>, Vec<String>)>) {
        let (tx, rx) = oneshot::channel();
        let addr = serve(move |mut s| async move {
            until_starttls(&mut s).await;
            s.write_all(b"220 2.0.0 Ready to start TLS\r\n")
                .await
                .unwrap();
            let mut tls = tokio_rustls::TlsAcceptor::from(config)
                .accept(s)
                .await
                .unwrap();
            let sni = tls.get_ref().1.server_name().map(str::to_owned);
            let mut cmds = Vec::new();
            loop {
                let cmd = read_line(&mut tls).await;
                if cmd.is_empty() {
                    break;
                }
                let reply: &[u8] = if cmd.starts_with("EHLO ") {
                    EHLO_TLS_OK
                } else {
                    b"221 2.0.0 Bye\r\n"
                };
                cmds.push(cmd);
                let _ = tls.write_all(reply).await;
                if reply.starts_with(b"221") {
                    break;
                }
            }
            let _ = tls.shutdown().await;
            let _ = tx.send((sni, cmds));
        })
        .await;
        (addr, rx)
    }

    pub(super) fn assert_error(report: &SmtpReport, reason: &str) {
        let err = report
            .error
            .as_ref()
            .unwrap_or_else(|| panic!("no error: {report:?}"));
        assert_eq!(err.reason(), reason, "{err:?}");
    }

    #[tokio::test]
    async fn good_starttls_server_yields_chain_version_cipher_and_sni() {
        let pki = pki();
        let (addr, done) = good_server(server_config(&pki, &[&rustls::version::TLS13])).await;
        let report = probe(addr, &options()).await;
        assert!(report.error.is_none(), "{:?}", report.error);
        assert!(report.smtp_up());
        assert!(report.starttls_advertised);
        assert_eq!(
            report.extensions,
            ["PIPELINING", "SIZE", "8BITMIME", "STARTTLS", "REQUIRETLS"]
        );
        let tls = report.tls.as_ref().unwrap();
        assert_eq!(tls.version, "TLSv1.3");
        assert!(tls.cipher.starts_with("TLS13_"), "{}", tls.cipher);
        assert_eq!(tls.chain, pki.chain, "chain exactly as served, leaf first");
        let (sni, cmds) = done.await.unwrap();
        assert_eq!(sni.as_deref(), Some(MX));
        // RFC 3207 §4.2: EHLO again over TLS, then QUIT.
        assert_eq!(cmds, ["EHLO probe.test.example\r\n", "QUIT\r\n"]);
        assert_eq!(report.ehlo_after_tls_success(), Some(true));
        assert_eq!(report.requiretls_advertised(), Some(true));
        assert_eq!(
            report.extensions_after_tls,
            ["PIPELINING", "REQUIRETLS", "SIZE"]
        );
        assert_eq!(report.transcript[0], "S: 220 mx.test.example ESMTP test");
        assert_eq!(report.transcript[1], "C: EHLO probe.test.example");
        assert!(report
            .transcript
            .iter()
            .any(|l| l.starts_with("-- TLS handshake: TLSv1.3")));
        assert!(report.seconds < 2.0, "{}", report.seconds);
    }

    #[tokio::test]
    async fn tls12_server_and_ip_literal_target_send_no_sni() {
        let pki = pki();
        let (addr, done) = good_server(server_config(&pki, &[&rustls::version::TLS12])).await;
        let mut opts = options();
        opts.server_name = None;
        let report = probe(addr, &opts).await;
        assert!(report.error.is_none(), "{:?}", report.error);
        let tls = report.tls.as_ref().unwrap();
        assert_eq!(tls.version, "TLSv1.2");
        assert!(tls.cipher.starts_with("TLS_ECDHE_"), "{}", tls.cipher);
        assert_eq!(tls.chain.len(), 2);
        let (sni, _) = done.await.unwrap();
        assert_eq!(sni, None);
    }

    /// Serves the chain of `pki` but signs with another key: the server cannot prove
    /// it holds the leaf key, so the handshake must fail although any chain is accepted.
    #[tokio::test]
    async fn server_without_the_leaf_key_fails_the_handshake() {
        #[derive(Debug)]
        struct Fixed(Arc<rustls::sign::CertifiedKey>);
        impl rustls::server::ResolvesServerCert for Fixed {
            fn resolve(
                &self,
                _: rustls::server::ClientHello<'_>,
            ) -> Option<Arc<rustls::sign::CertifiedKey>> {
                Some(Arc::clone(&self.0))
            }
        }
        let pki = pki();
        let other = KeyPair::generate().unwrap();
        let other_key: PrivateKeyDer<'static> =
            PrivatePkcs8KeyDer::from(other.serialize_der()).into();
        let signer = rustls::crypto::ring::sign::any_supported_type(&other_key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Fixed(Arc::new(rustls::sign::CertifiedKey::new(
            pki.chain.clone(),
            signer,
        )))));
        let addr = serve(move |mut s| async move {
            until_starttls(&mut s).await;
            s.write_all(b"220 go ahead\r\n").await.unwrap();
            let _ = tokio_rustls::TlsAcceptor::from(Arc::new(config))
                .accept(s)
                .await;
        })
        .await;
        let report = probe(addr, &options()).await;
        assert_error(&report, "tls_handshake");
        assert!(report.tls.is_none());
        assert!(report.smtp_up());
    }

    #[tokio::test]
    async fn server_without_starttls_is_up_but_no_starttls() {
        let (tx, rx) = oneshot::channel();
        let addr = serve(|mut s| async move {
            s.write_all(b"220 plain ESMTP\r\n").await.unwrap();
            read_line(&mut s).await;
            s.write_all(b"250-plain\r\n250-SIZE 1000\r\n250 8BITMIME\r\n")
                .await
                .unwrap();
            let quit = read_line(&mut s).await;
            s.write_all(b"221 bye\r\n").await.unwrap();
            let _ = tx.send(quit);
        })
        .await;
        let report = probe(addr, &options()).await;
        assert_error(&report, "no_starttls");
        assert!(matches!(report.error, Some(ProbeError::StartTlsNotOffered)));
        assert!(report.smtp_up());
        assert!(!report.starttls_advertised);
        assert_eq!(report.extensions, ["SIZE", "8BITMIME"]);
        assert_eq!(rx.await.unwrap(), "QUIT\r\n");
        assert_eq!(report.transcript.last().unwrap(), "S: 221 bye");
    }

    // RFC 5321 §3.1: a 554 greeting refuses service.
    #[tokio::test]
    async fn greeting_554_is_rejected_with_its_code() {
        let addr = serve(|mut s| async move {
            s.write_all(b"554-go away\r\n554 no service\r\n")
                .await
                .unwrap();
            let _ = read_line(&mut s).await;
            let _ = s.write_all(b"221 bye\r\n").await;
        })
        .await;
        let report = probe(addr, &options()).await;
        match &report.error {
            Some(ProbeError::GreetingRejected { code: 554, text }) => assert_eq!(text, "go away"),
            other => panic!("{other:?}"),
        }
        assert!(!report.smtp_up());
        assert!(report.connected);
    }

    #[tokio::test]
    async fn close_right_after_greeting_is_closed_in_ehlo() {
        let addr = serve(|mut s| async move {
            s.write_all(b"220 hi\r\n").await.unwrap();
        })
        .await;
        let report = probe(addr, &options()).await;
        assert!(
            matches!(
                report.error,
                Some(ProbeError::Closed {
                    phase: Phase::Ehlo,
                    ..
                })
            ),
            "{:?}",
            report.error
        );
        assert_error(&report, "closed");
        assert!(!report.smtp_up());
    }

    /// A listener whose accept queue is full drops further SYNs: the connect hangs.
    #[tokio::test(start_paused = true)]
    async fn full_accept_queue_is_connect_timeout() {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        // Fill the queue with real (blocking, real-time) connects until one hangs.
        let mut held = Vec::new();
        let mut full = false;
        for _ in 0..16 {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
                Ok(s) => held.push(s),
                Err(_) => {
                    full = true;
                    break;
                }
            }
        }
        assert!(full, "accept queue never filled");
        let mut opts = options();
        opts.deadline = Instant::now() + Duration::from_secs(2);
        let started = Instant::now();
        let report = probe(addr, &opts).await;
        assert_error(&report, "connect_timeout");
        assert!(started.elapsed() < Duration::from_millis(2100));
        assert!(!report.connected);
    }

    #[tokio::test]
    async fn refused_connection_is_connect_refused() {
        // Bind, learn the port, close: nothing listens there any more.
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let report = probe(addr, &options()).await;
        assert_error(&report, "connect_refused");
        assert!(!report.connected);
    }

    /// Keeps the connection open and silent until the test ends.
    pub(super) async fn hold(s: TcpStream) {
        let _keep = s;
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }

    /// Postfix postscreen sends `220-`, waits (greet wait, 6 s by default), then the final
    /// `220 `: the greeting may take most of the budget, the rest of the dialogue still fits.
    #[tokio::test(start_paused = true)]
    async fn postscreen_greet_pause_may_use_most_of_the_budget() {
        let pki = pki();
        let config = server_config(&pki, &[&rustls::version::TLS13]);
        let addr = serve(move |mut s| async move {
            s.write_all(b"220-mx.test.example ESMTP postscreen\r\n")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(6)).await;
            s.write_all(b"220 mx.test.example ESMTP\r\n").await.unwrap();
            assert!(read_line(&mut s).await.starts_with("EHLO "));
            s.write_all(EHLO_OK).await.unwrap();
            assert_eq!(read_line(&mut s).await, "STARTTLS\r\n");
            s.write_all(b"220 go ahead\r\n").await.unwrap();
            if let Ok(mut tls) = tokio_rustls::TlsAcceptor::from(config).accept(s).await {
                assert!(read_line(&mut tls).await.starts_with("EHLO "));
                let _ = tls.write_all(EHLO_TLS_OK).await;
                let _ = read_line(&mut tls).await;
            }
        })
        .await;
        let mut opts = options();
        opts.deadline = Instant::now() + Duration::from_secs(8);
        let report = probe(addr, &opts).await;
        assert!(report.error.is_none(), "{:?}", report.error);
        assert!(report.smtp_up() && report.starttls_advertised && report.tls.is_some());
        assert!(
            report.seconds >= 6.0 && report.seconds < 8.0,
            "{}",
            report.seconds
        );
    }

    /// The deadline is shared: time spent in the greeting is gone for EHLO.
    #[tokio::test(start_paused = true)]
    async fn slow_greeting_leaves_less_time_for_ehlo() {
        let addr = serve(|mut s| async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            s.write_all(b"220 hi\r\n").await.unwrap();
            hold(s).await;
        })
        .await;
        let mut opts = options();
        opts.deadline = Instant::now() + Duration::from_secs(4);
        let started = Instant::now();
        let report = probe(addr, &opts).await;
        assert_error(&report, "ehlo_timeout");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(4) && took < Duration::from_millis(4100),
            "{took:?}"
        );
        match report.error {
            Some(ProbeError::ReplyTimeout { after, .. }) => {
                assert!(after <= Duration::from_millis(1100), "{after:?}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn tarpit_without_greeting_times_out_at_the_deadline() {
        let addr = serve(hold).await;
        let mut opts = options();
        opts.deadline = Instant::now() + Duration::from_secs(3);
        let started = Instant::now();
        let report = probe(addr, &opts).await;
        assert_error(&report, "greeting_timeout");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(3) && took < Duration::from_millis(3100),
            "{took:?}"
        );
        assert!(report.connected);
    }

    // A server dripping one octet a second cannot stretch the deadline.
    #[tokio::test(start_paused = true)]
    async fn dripping_server_cannot_extend_the_deadline() {
        let addr = serve(|mut s| async move {
            for &b in b"220 mx.test.example ESMTP slowly but surely, one octet at a time\r\n" {
                if s.write_all(&[b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            hold(s).await;
        })
        .await;
        let mut opts = options();
        opts.deadline = Instant::now() + Duration::from_secs(5);
        let started = Instant::now();
        let report = probe(addr, &opts).await;
        assert_error(&report, "greeting_timeout");
        assert!(started.elapsed() < Duration::from_millis(5100));
    }

    #[tokio::test(start_paused = true)]
    async fn silence_after_ehlo_is_ehlo_timeout() {
        let addr = serve(|mut s| async move {
            s.write_all(b"220 hi\r\n").await.unwrap();
            hold(s).await;
        })
        .await;
        let mut opts = options();
        opts.deadline = Instant::now() + Duration::from_secs(2);
        let report = probe(addr, &opts).await;
        assert!(matches!(
            report.error,
            Some(ProbeError::ReplyTimeout {
                phase: Phase::Ehlo,
                ..
            })
        ));
        assert_error(&report, "ehlo_timeout");
    }

    #[tokio::test]
    async fn endless_continuation_lines_are_too_many_lines() {
        let addr = serve(|mut s| async move {
            s.write_all(b"220 hi\r\n").await.unwrap();
            let _ = read_line(&mut s).await;
            let line = b"250-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n".repeat(64);
            // Endless until the client gives up.
            while s.write_all(&line).await.is_ok() {}
        })
        .await;
        let started = Instant::now();
        let report = probe(addr, &options()).await;
        assert!(
            matches!(
                report.error,
                Some(ProbeError::TooManyLines {
                    phase: Phase::Ehlo,
                    limit: MAX_REPLY_LINES
                })
            ),
            "{:?}",
            report.error
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn one_megabyte_line_is_line_too_long() {
        let addr = serve(|mut s| async move {
            let mut line = b"220 ".to_vec();
            line.resize(1 << 20, b'x');
            line.extend_from_slice(b"\r\n");
            let _ = s.write_all(&line).await;
        })
        .await;
        let started = Instant::now();
        let report = probe(addr, &options()).await;
        assert!(
            matches!(
                report.error,
                Some(ProbeError::LineTooLong {
                    phase: Phase::Greeting,
                    limit: MAX_LINE_OCTETS
                })
            ),
            "{:?}",
            report.error
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn binary_garbage_is_not_smtp() {
        let addr = serve(|mut s| async move {
            let _ = s.write_all(b"\0\xff\xfe\x16\x03\x01garbage\r\n").await;
            hold(s).await;
        })
        .await;
        let report = probe(addr, &options()).await;
        match &report.error {
            Some(ProbeError::NotSmtp { excerpt }) => assert!(excerpt.starts_with("\\x00\\xff")),
            other => panic!("{other:?}"),
        }
        assert_error(&report, "not_smtp");
    }

    #[tokio::test]
    async fn garbage_in_a_later_greeting_line_is_bad_reply_not_not_smtp() {
        let addr = serve(|mut s| async move {
            let _ = s.write_all(b"220-hi\r\n\x00junk\r\n").await;
            hold(s).await;
        })
        .await;
        let mut opts = options();
        opts.transcript = false;
        let report = probe(addr, &opts).await;
        assert!(
            matches!(
                report.error,
                Some(ProbeError::BadReply {
                    phase: Phase::Greeting,
                    error: ReplyError::BadCode { .. }
                })
            ),
            "{:?}",
            report.error
        );
        assert!(report.transcript.is_empty(), "transcript only on request");
    }

    #[tokio::test]
    async fn garbage_after_a_good_greeting_is_bad_reply() {
        let addr = serve(|mut s| async move {
            s.write_all(b"220 hi\r\n").await.unwrap();
            let _ = read_line(&mut s).await;
            let _ = s.write_all(b"250-hello\r\n\x00\x01\x02\r\n").await;
            hold(s).await;
        })
        .await;
        let report = probe(addr, &options()).await;
        assert!(
            matches!(
                report.error,
                Some(ProbeError::BadReply {
                    phase: Phase::Ehlo,
                    error: ReplyError::BadCode { .. }
                })
            ),
            "{:?}",
            report.error
        );
    }

    #[tokio::test]
    async fn starttls_answered_with_454_is_starttls_rejected() {
        let addr = serve(|mut s| async move {
            until_starttls(&mut s).await;
            s.write_all(b"454 4.7.0 TLS not available due to local problem\r\n")
                .await
                .unwrap();
            let _ = read_line(&mut s).await;
            let _ = s.write_all(b"221 bye\r\n").await;
        })
        .await;
        let report = probe(addr, &options()).await;
        assert!(
            matches!(
                report.error,
                Some(ProbeError::StartTlsRejected { code: 454, .. })
            ),
            "{:?}",
            report.error
        );
        assert!(report.smtp_up() && report.starttls_advertised && report.tls.is_none());
    }

    // RFC 3207 §6, CVE-2011-0411: plaintext after the 220 would be taken as TLS-protected.
    #[tokio::test]
    async fn data_pipelined_after_starttls_220_is_refused() {
        let addr = serve(|mut s| async move {
            until_starttls(&mut s).await;
            let _ = s.write_all(b"220 go ahead\r\n250 injected\r\n").await;
            hold(s).await;
        })
        .await;
        let report = probe(addr, &options()).await;
        assert!(
            matches!(
                report.error,
                Some(ProbeError::DataAfterStartTls { octets: 14 })
            ),
            "{:?}",
            report.error
        );
        assert!(report.tls.is_none());
    }

    #[tokio::test]
    async fn garbage_instead_of_tls_is_a_handshake_failure() {
        let addr = serve(|mut s| async move {
            until_starttls(&mut s).await;
            s.write_all(b"220 go ahead\r\n").await.unwrap();
            // Wait for the ClientHello, then answer nonsense.
            let mut hello = [0u8; 5];
            let _ = s.read_exact(&mut hello).await;
            let _ = s.write_all(b"this is not TLS at all\r\n").await;
            hold(s).await;
        })
        .await;
        let started = Instant::now();
        let report = probe(addr, &options()).await;
        assert_error(&report, "tls_handshake");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(report
            .transcript
            .last()
            .is_some_and(|l| l.starts_with("-- TLS handshake failed")));
    }

    #[tokio::test(start_paused = true)]
    async fn silent_server_after_starttls_220_is_tls_timeout() {
        let addr = serve(|mut s| async move {
            until_starttls(&mut s).await;
            s.write_all(b"220 go ahead\r\n").await.unwrap();
            hold(s).await;
        })
        .await;
        let mut opts = options();
        opts.deadline = Instant::now() + Duration::from_secs(4);
        let report = probe(addr, &opts).await;
        assert!(
            matches!(report.error, Some(ProbeError::TlsTimeout { .. })),
            "{:?}",
            report.error
        );
    }

    #[tokio::test]
    async fn invalid_helo_name_fails_before_connecting() {
        let mut opts = options();
        opts.helo_name = "x\r\nQUIT".to_owned();
        let report = probe("127.0.0.1:9".parse().unwrap(), &opts).await;
        assert_error(&report, "invalid_helo_name");
        assert!(!report.connected);
    }

    #[test]
    fn report_serialises_errors_with_kind_phase_and_seconds() {
        let report = SmtpReport {
            error: Some(ProbeError::ReplyTimeout {
                phase: Phase::StartTls,
                after: Duration::from_millis(1500),
            }),
            ..SmtpReport::new("127.0.0.1:25".parse().unwrap())
        };
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(
            v["error"],
            serde_json::json!({"kind": "reply_timeout", "phase": "starttls", "after": 1.5})
        );
        assert!(v.get("transcript").is_none());
    }
}
