//! SMTP and TLS values of a report: the replies seen, the STARTTLS outcome, the handshake
//! facts and the first failure, as plain data.
//!
//! Not here: the dialogue and the reply parser that produce them (`probe::smtp`), the
//! handshake itself (`probe::tls`).
//! RFC 5321 §4.2 (replies), RFC 3207 (STARTTLS; §4.2 the EHLO after TLS), RFC 8314 §3.3
//! (implicit TLS), RFC 8689 (REQUIRETLS).

use std::net::SocketAddr;
use std::time::Duration;

use rustls_pki_types::CertificateDer;

pub use crate::target::TlsMode;

/// Longest reply or error text kept in an error.
pub(crate) const MAX_ERROR_TEXT_CHARS: usize = 200;

/// One complete SMTP reply (RFC 5321 §4.2).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reply {
    pub code: u16,
    /// Text after the code and separator, one entry per line; each at most
    /// `probe::smtp::reply::MAX_LINE_OCTETS`, invalid UTF-8 and control characters replaced by U+FFFD.
    pub lines: Vec<String>,
}

impl Reply {
    /// First text line, "" if none.
    pub(crate) fn first_line(&self) -> &str {
        self.lines.first().map_or("", String::as_str)
    }
}

/// What probing one address over SMTP + STARTTLS learned. Plain data.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SmtpReport {
    pub address: SocketAddr,
    /// STARTTLS, or implicit TLS (handshake first; greeting and EHLO inside TLS).
    pub tls_mode: TlsMode,
    pub connected: bool,
    /// The 220 (or whatever came); inside TLS in implicit mode.
    pub greeting: Option<Reply>,
    /// The first EHLO; inside TLS in implicit mode.
    pub ehlo: Option<Reply>,
    /// EHLO keywords, upper case ("STARTTLS", "SIZE", "PIPELINING", ...).
    pub extensions: Vec<String>,
    /// EHLO offered STARTTLS (always `false` in implicit mode: not asked).
    pub starttls_advertised: bool,
    /// The reply to STARTTLS, if it was sent.
    pub starttls: Option<Reply>,
    /// `Some` iff the handshake completed.
    pub tls: Option<TlsFacts>,
    /// STARTTLS mode: the second EHLO over TLS was sent (RFC 3207 §4.2).
    pub ehlo_after_tls_sent: bool,
    /// STARTTLS mode: the reply to the second EHLO, if one came.
    pub ehlo_after_tls: Option<Reply>,
    /// Keywords of the EHLO answered inside TLS (the second EHLO, or in implicit mode the
    /// only one): what a sender sees, e.g. "REQUIRETLS" (RFC 8689 §4).
    pub extensions_after_tls: Vec<String>,
    /// The first failure; `None` if everything worked.
    pub error: Option<ProbeError>,
    /// "S: 220 ...", "C: EHLO ...", "-- TLS handshake: ..." when requested.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transcript: Vec<String>,
    pub seconds: f64,
}

impl SmtpReport {
    pub(crate) fn new(address: SocketAddr) -> Self {
        Self {
            address,
            tls_mode: TlsMode::for_port(address.port()),
            connected: false,
            greeting: None,
            ehlo: None,
            extensions: Vec::new(),
            starttls_advertised: false,
            starttls: None,
            tls: None,
            ehlo_after_tls_sent: false,
            ehlo_after_tls: None,
            extensions_after_tls: Vec::new(),
            error: None,
            transcript: Vec::new(),
            seconds: 0.0,
        }
    }

    /// Drops what only a person reading one probe needs (reply texts beyond their first
    /// line), for reports that are kept and shared for a whole round.
    pub(crate) fn shrink(&mut self) {
        for r in [
            &mut self.greeting,
            &mut self.ehlo,
            &mut self.starttls,
            &mut self.ehlo_after_tls,
        ]
        .into_iter()
        .flatten()
        {
            r.lines.truncate(1);
            r.lines.shrink_to_fit();
        }
        self.extensions.shrink_to_fit();
        self.extensions_after_tls.shrink_to_fit();
    }

    /// The server answered EHLO with 250 inside TLS: after STARTTLS the second EHLO, in
    /// implicit mode the (only) EHLO. `None` when no handshake completed, or the second
    /// EHLO was not sent. A TLS-terminating proxy that breaks after the handshake gives
    /// `Some(false)`: every sender's mail would stop there.
    pub fn ehlo_after_tls_success(&self) -> Option<bool> {
        self.tls.as_ref()?;
        match self.tls_mode {
            TlsMode::Implicit => Some(self.smtp_up()),
            TlsMode::Starttls => self
                .ehlo_after_tls_sent
                .then(|| self.ehlo_after_tls.as_ref().is_some_and(|r| r.code == 250)),
        }
    }

    /// The EHLO answered inside TLS offers REQUIRETLS (RFC 8689 §4: only meaningful after
    /// TLS); `None` when there was no such answer.
    pub fn requiretls_advertised(&self) -> Option<bool> {
        self.ehlo_after_tls_success()?
            .then(|| self.extensions_after_tls.iter().any(|k| k == "REQUIRETLS"))
    }

    /// Connected, greeted with 220 and EHLO answered with 250 (whatever happened next).
    pub fn smtp_up(&self) -> bool {
        self.connected
            && self.greeting.as_ref().is_some_and(|r| r.code == 220)
            && self.ehlo.as_ref().is_some_and(|r| r.code == 250)
    }
}

/// Step of the dialogue, for errors and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Connect,
    Greeting,
    Ehlo,
    #[serde(rename = "starttls")]
    StartTls,
    Handshake,
    /// The second EHLO, over TLS after STARTTLS (RFC 3207 §4.2).
    EhloAfterTls,
    Quit,
}

impl Phase {
    /// Fixed value set: safe as a label or log field.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Greeting => "greeting",
            Self::Ehlo => "ehlo",
            Self::StartTls => "starttls",
            Self::Handshake => "handshake",
            Self::EhloAfterTls => "ehlo_after_tls",
            Self::Quit => "quit",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An io error, kept as data (`std::io::Error` is neither `Clone` nor `Serialize`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IoFailure {
    /// `std::io::ErrorKind` in Debug form, e.g. "ConnectionReset".
    pub(crate) kind: String,
    pub(crate) message: String,
}

impl From<&std::io::Error> for IoFailure {
    fn from(e: &std::io::Error) -> Self {
        Self {
            kind: format!("{:?}", e.kind()),
            message: e.to_string().chars().take(MAX_ERROR_TEXT_CHARS).collect(),
        }
    }
}

impl std::fmt::Display for IoFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Why bytes are not a valid SMTP reply (RFC 5321 §4.2). Pure parser errors; the probe
/// wraps them with the phase in [`ProbeError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReplyError {
    #[error("reply line longer than {limit} octets")]
    LineTooLong { limit: usize },
    #[error("reply longer than {limit} lines")]
    TooManyLines { limit: usize },
    #[error("line does not start with a reply code: {excerpt}")]
    BadCode { excerpt: String },
    #[error("bad separator after reply code {code}: {excerpt}")]
    BadSeparator { code: u16, excerpt: String },
    #[error("line with code {then} continues a {first} reply")]
    MixedCodes { first: u16, then: u16 },
}

/// Everything that can end a probe early. A broken target is data: this goes into the
/// report, and [`ProbeError::reason`] into a bounded label.
#[derive(Debug, Clone, thiserror::Error, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProbeError {
    #[error("invalid HELO name {name:?}")]
    InvalidHeloName { name: String },
    #[error("server name {name:?} is neither a DNS name nor an IP address")]
    BadServerName { name: String },
    #[error("connection to {addr} refused")]
    ConnectRefused { addr: SocketAddr },
    #[error("connect to {addr} failed: {error}")]
    Connect { addr: SocketAddr, error: IoFailure },
    #[error("connect to {addr} timed out after {after:?}")]
    ConnectTimeout {
        addr: SocketAddr,
        #[serde(serialize_with = "serialize_seconds")]
        after: Duration,
    },
    #[error("no greeting within {after:?}")]
    GreetingTimeout {
        #[serde(serialize_with = "serialize_seconds")]
        after: Duration,
    },
    #[error("no complete {phase} reply within {after:?}")]
    ReplyTimeout {
        phase: Phase,
        #[serde(serialize_with = "serialize_seconds")]
        after: Duration,
    },
    #[error("server closed the connection during {phase} (reset: {reset}; {partial_octets} octets of an unfinished line)")]
    Closed {
        phase: Phase,
        /// Reset (or broken pipe) rather than an orderly FIN; which one a client sees
        /// after a server's close races with our writes, so both share one reason.
        reset: bool,
        partial_octets: usize,
    },
    #[error("i/o error during {phase}: {error}")]
    Io { phase: Phase, error: IoFailure },
    #[error("not an SMTP server: greeting starts with {excerpt}")]
    NotSmtp { excerpt: String },
    #[error("{phase} reply line longer than {limit} octets")]
    LineTooLong { phase: Phase, limit: usize },
    #[error("{phase} reply longer than {limit} lines")]
    TooManyLines { phase: Phase, limit: usize },
    #[error("malformed {phase} reply: {error}")]
    BadReply { phase: Phase, error: ReplyError },
    #[error("greeting rejected with {code}: {text}")]
    GreetingRejected { code: u16, text: String },
    #[error("EHLO rejected with {code}: {text}")]
    EhloRejected { code: u16, text: String },
    /// The handshake completed, but the EHLO sent over TLS got no 250 (a TLS-terminating
    /// proxy that breaks after the handshake; timeouts and closes have their own reasons).
    #[error("EHLO after the TLS handshake answered with {code}: {text}")]
    EhloAfterTlsRejected { code: u16, text: String },
    #[error("STARTTLS not advertised")]
    StartTlsNotOffered,
    #[error("STARTTLS rejected with {code}: {text}")]
    StartTlsRejected { code: u16, text: String },
    #[error("{octets} octets pipelined after the 220 to STARTTLS (plaintext injection)")]
    DataAfterStartTls { octets: usize },
    #[error("TLS handshake failed: {message}")]
    Handshake { io_kind: String, message: String },
    #[error("TLS handshake timed out after {after:?}")]
    TlsTimeout {
        #[serde(serialize_with = "serialize_seconds")]
        after: Duration,
    },
    /// This target joined a session that another target had started with a later
    /// deadline, and it had not finished by this target's deadline.
    #[error("the SMTP session shared with another target had not finished after {after:?}")]
    SharedTimeout {
        #[serde(serialize_with = "serialize_seconds")]
        after: Duration,
    },
}

impl ProbeError {
    /// Fixed value set: safe as a label or log field.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidHeloName { .. } => "invalid_helo_name",
            Self::BadServerName { .. } => "bad_server_name",
            Self::ConnectRefused { .. } => "connect_refused",
            Self::Connect { .. } => "connect_error",
            Self::ConnectTimeout { .. } => "connect_timeout",
            Self::GreetingTimeout { .. } => "greeting_timeout",
            Self::ReplyTimeout { phase, .. } => match phase {
                Phase::Ehlo => "ehlo_timeout",
                Phase::StartTls => "starttls_timeout",
                Phase::EhloAfterTls => "ehlo_after_tls_timeout",
                Phase::Quit => "quit_timeout",
                // Not produced (greeting and handshake have their own variants).
                Phase::Connect | Phase::Greeting | Phase::Handshake => "reply_timeout",
            },
            Self::Closed {
                phase: Phase::EhloAfterTls,
                ..
            } => "ehlo_after_tls_closed",
            Self::Closed { .. } => "closed",
            Self::Io {
                phase: Phase::EhloAfterTls,
                ..
            } => "ehlo_after_tls_error",
            Self::Io { .. } => "io_error",
            Self::NotSmtp { .. } => "not_smtp",
            Self::LineTooLong { .. } => "line_too_long",
            Self::TooManyLines { .. } => "too_many_lines",
            Self::BadReply { .. } => "bad_reply",
            Self::GreetingRejected { .. } => "greeting_rejected",
            Self::EhloRejected { .. } => "ehlo_rejected",
            Self::EhloAfterTlsRejected { .. } => "ehlo_after_tls_rejected",
            Self::StartTlsNotOffered => "no_starttls",
            Self::StartTlsRejected { .. } => "starttls_rejected",
            Self::DataAfterStartTls { .. } => "data_after_starttls",
            Self::Handshake { .. } => "tls_handshake",
            Self::TlsTimeout { .. } => "tls_timeout",
            Self::SharedTimeout { .. } => "shared_timeout",
        }
    }

    /// The probe's deadline ended it (not the server's answer): another probe with more
    /// time left could learn more.
    pub(crate) fn is_timeout(&self) -> bool {
        matches!(
            self,
            Self::ConnectTimeout { .. }
                | Self::GreetingTimeout { .. }
                | Self::ReplyTimeout { .. }
                | Self::TlsTimeout { .. }
                | Self::SharedTimeout { .. }
        )
    }

    /// `first_line`: the error is in the first line of the reply.
    pub(crate) fn from_reply_error(phase: Phase, e: ReplyError, first_line: bool) -> Self {
        match e {
            ReplyError::LineTooLong { limit } => Self::LineTooLong { phase, limit },
            ReplyError::TooManyLines { limit } => Self::TooManyLines { phase, limit },
            // No reply code at all in the greeting: something else listens there
            // (HTTP, SSH, implicit TLS that talks first, binary noise).
            ReplyError::BadCode { excerpt } if phase == Phase::Greeting && first_line => {
                Self::NotSmtp { excerpt }
            }
            other => Self::BadReply {
                phase,
                error: other,
            },
        }
    }
}

fn serialize_seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// What a completed handshake showed. Plain data; judged elsewhere.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TlsFacts {
    /// "TLSv1.3", "TLSv1.2".
    pub version: String,
    /// rustls suite name, e.g. "TLS13_AES_128_GCM_SHA256".
    pub cipher: String,
    /// The certificate chain exactly as served, leaf first (may be empty only in theory:
    /// rustls refuses a handshake without a certificate).
    #[serde(skip)]
    pub chain: Vec<CertificateDer<'static>>,
    /// Number of certificates in `chain` (serialised, unlike the chain itself).
    pub chain_len: usize,
    /// Wall time of the handshake alone.
    pub handshake_seconds: f64,
}
