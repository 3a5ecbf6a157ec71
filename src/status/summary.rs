//! What the status page keeps of one probe: a compact summary, made once when the probe
//! completes, so the page never needs the full report (a stored report per target would
//! cost ~30 KiB each at 10,000 targets; docs/performance.md).
//!
//! Owns: [`Summary`] (per target) → [`Row`] (per MX address) → [`Record`] (per published
//! TLSA record), the page's target states and their order (worst first).
//! Not here: producing the report (`probe`), HTML (`status::page`).

use std::net::IpAddr;

use crate::model::dns::Dnssec;
use crate::model::report::{AddressReport, DaneStatus, HostReport, TargetReport};
use crate::model::tlsa::{RecordCheck, RecordDetail};

/// A target's state on the page, worst first (the derived order is the sort order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum State {
    /// Some address is `dns_failure`.
    DnsFailure,
    /// Some address is `failed`.
    Failed,
    /// `mailtls_probe_success` is 0 for another reason (MX lookup, no STARTTLS, no address).
    ProbeFailed,
    /// Configured, not probed yet since start or reload.
    NeverProbed,
    /// Every address delivers; the worst is `unauthenticated`.
    Unauthenticated,
    /// Every address delivers; DANE does not apply to at least one.
    NoDane,
    /// An address target that succeeded (no DNS, no DANE verdict).
    Ok,
    /// Every address `verified`.
    Verified,
}

impl State {
    /// Text shown in the badge (never colour alone).
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::DnsFailure => "dns_failure",
            Self::Failed => "failed",
            Self::ProbeFailed => "probe failed",
            Self::NeverProbed => "not probed yet",
            Self::Unauthenticated => "unauthenticated",
            Self::NoDane => "no DANE",
            Self::Ok => "OK",
            Self::Verified => "verified",
        }
    }
    /// Colour class: `bad`, `warn`, `info`, `ok` or `never`.
    pub(crate) fn class(self) -> &'static str {
        match self {
            Self::DnsFailure | Self::Failed | Self::ProbeFailed => "bad",
            Self::NeverProbed => "never",
            Self::Unauthenticated => "warn",
            Self::NoDane => "info",
            Self::Ok | Self::Verified => "ok",
        }
    }
    /// Counted as failing in the summary line (`mailtls_probe_success` 0).
    pub(crate) fn failing(self) -> bool {
        matches!(self, Self::DnsFailure | Self::Failed | Self::ProbeFailed)
    }
}

/// Colour class of a DANE verdict.
pub(crate) fn dane_class(d: DaneStatus) -> &'static str {
    match d {
        DaneStatus::Verified => "ok",
        DaneStatus::Unauthenticated => "warn",
        DaneStatus::None => "info",
        DaneStatus::Failed | DaneStatus::DnsFailure => "bad",
    }
}

/// How the STARTTLS step of one address ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Starttls {
    /// Nothing was attempted (no address).
    NotTried,
    /// Handshake completed with this protocol version ("TLSv1.3").
    Done { version: Box<str> },
    /// STARTTLS not in the EHLO reply.
    NotOffered,
    /// Connect, SMTP or TLS failed: the `ProbeError::reason` and its text.
    Failed {
        reason: &'static str,
        text: Box<str>,
    },
}

/// What a published TLSA record did for this address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordState {
    /// Usable, matches, and counts for the verdict (`RecordDetail::Matched`).
    Authenticates,
    /// Matches the chain but does not authenticate (outranked by digest agility, chain to
    /// the anchor invalid, leaf name mismatch).
    MatchesOnly,
    /// Usable, does not match.
    NoMatch,
    /// Cannot be used (RFC 7672 §3.1).
    Unusable,
    /// Not compared: the server sent no certificate (no STARTTLS, failed handshake).
    NotChecked,
}

impl RecordState {
    /// The page's one place that reads a record judgement: the model's two facts
    /// (`matched`, RFC 7671; `authenticates`, a DANE sender's view) plus why not.
    pub(crate) fn of(c: &RecordCheck) -> Self {
        match &c.detail {
            _ if c.authenticates => Self::Authenticates,
            RecordDetail::Unusable(_) => Self::Unusable,
            RecordDetail::NoCertificate => Self::NotChecked,
            _ if c.matched => Self::MatchesOnly,
            _ => Self::NoMatch,
        }
    }
}

/// One published TLSA record as judged for one address.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    /// `3 1 1 5f0e8a2b91c4…`.
    pub(crate) short: Box<str>,
    pub(crate) state: RecordState,
    /// `RecordCheck::explain`, kept only for records that do not authenticate (where the
    /// sentence says what is wrong); `None` for authenticating ones, to stay small.
    pub(crate) explain: Option<Box<str>>,
}

/// One MX address.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) mx: Box<str>,
    pub(crate) address: Option<IpAddr>,
    /// `None` for address targets.
    pub(crate) dane: Option<DaneStatus>,
    pub(crate) starttls: Starttls,
    /// `None` when no certificate was seen; `Err` carries the reason.
    pub(crate) pkix: Option<Result<(), Box<str>>>,
    pub(crate) leaf_subject: Option<Box<str>>,
    /// Leaf notAfter, Unix seconds.
    pub(crate) leaf_not_after: Option<i64>,
    /// Earliest RRSIG expiration over the MX, address and TLSA lookups of this host.
    pub(crate) rrsig_expiry: Option<i64>,
    /// DNSSEC state of the host's addresses and of its TLSA lookup.
    pub(crate) address_dnssec: Option<Dnssec>,
    pub(crate) tlsa_dnssec: Option<Dnssec>,
    pub(crate) records: Box<[Record]>,
    /// Why this verdict: one sentence.
    pub(crate) why: Box<str>,
}

/// What the page shows of a target's last completed probe.
#[derive(Debug, Clone)]
pub struct Summary {
    pub(crate) state: State,
    /// Unix seconds when the probe completed.
    pub(crate) timestamp: f64,
    pub(crate) duration_seconds: f64,
    pub(crate) mx_dnssec: Option<Dnssec>,
    pub(crate) null_mx: bool,
    pub(crate) implicit_mx: bool,
    /// Target-level failure (MX lookup failed, domain does not exist, timeout).
    pub(crate) error: Option<Box<str>>,
    pub(crate) rows: Box<[Row]>,
}

impl Summary {
    /// Summarises a report (once, when its probe completes).
    pub fn of(r: &TargetReport) -> Self {
        let mx_sig = r
            .lookups
            .iter()
            .filter(|l| l.rtype == "MX" && l.name == r.target)
            .filter_map(|l| l.sig_expiry)
            .min();
        let rows = r
            .hosts
            .iter()
            .flat_map(|h| {
                let tlsa_name = h
                    .tlsa_base
                    .as_ref()
                    .map(|b| format!("_{}._tcp.{b}", h.port));
                let host_sig = r
                    .lookups
                    .iter()
                    .filter(|l| l.name == h.mx || Some(&l.name) == tlsa_name.as_ref())
                    .filter_map(|l| l.sig_expiry)
                    .chain(mx_sig)
                    .min();
                h.addresses.iter().map(move |a| row_of(h, a, host_sig))
            })
            .collect();
        Self {
            state: state_of(r),
            timestamp: r.timestamp,
            duration_seconds: r.duration_seconds,
            mx_dnssec: r.mx_dnssec,
            null_mx: r.null_mx,
            implicit_mx: r.implicit_mx,
            error: r.error.as_deref().map(Into::into),
            rows,
        }
    }

    /// Every word of `terms` (lower case) occurs in the target name, an MX host name, an
    /// address, or a verdict word of the target or one of its addresses.
    pub(crate) fn matches(&self, target: &str, terms: &[String]) -> bool {
        let target = target.to_ascii_lowercase();
        terms.iter().all(|t| {
            // Only a term that can be part of an address is compared with addresses.
            let addr_like = t
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b':');
            target.contains(t.as_str())
                || self.state.label().contains(t.as_str())
                || self.rows.iter().any(|r| {
                    r.mx.contains(t.as_str())
                        || r.dane.is_some_and(|d| d.as_str() == t)
                        || (addr_like
                            && r.address
                                .is_some_and(|a| a.to_string().contains(t.as_str())))
                })
        })
    }
}

/// One table row: an address of an MX host, with that host's earliest RRSIG expiry.
fn row_of(h: &HostReport, a: &AddressReport, host_sig: Option<i64>) -> Row {
    let starttls = starttls_of(a);
    let leaf = a.certs.iter().find(|c| c.depth == 0);
    Row {
        mx: h.mx.as_str().into(),
        address: a.address,
        dane: a.dane,
        starttls,
        pkix: a
            .pkix
            .as_ref()
            .map(|p| p.as_ref().map(|_| ()).map_err(|e| e.as_str().into())),
        leaf_subject: leaf.map(|c| c.subject.as_str().into()),
        leaf_not_after: leaf.map(|c| c.not_after),
        rrsig_expiry: host_sig,
        address_dnssec: h.address_dnssec,
        tlsa_dnssec: h.tlsa_dnssec,
        records: a
            .tlsa
            .iter()
            .map(|c| Record {
                short: c.record.short().into(),
                state: RecordState::of(c),
                explain: (RecordState::of(c) != RecordState::Authenticates)
                    .then(|| c.explain().into()),
            })
            .collect(),
        why: a.why.as_str().into(),
    }
}

/// What happened to STARTTLS on an address.
fn starttls_of(a: &AddressReport) -> Starttls {
    match a.smtp.as_deref() {
        None => Starttls::NotTried,
        Some(s) => match (&s.tls, &s.error) {
            (Some(t), _) => Starttls::Done {
                version: t.version.as_str().into(),
            },
            (None, _) if s.smtp_up() && !s.starttls_advertised => Starttls::NotOffered,
            (None, Some(e)) => Starttls::Failed {
                reason: e.reason(),
                text: e.to_string().into(),
            },
            (None, None) => Starttls::NotTried,
        },
    }
}

/// The page state of a report: worst DANE verdict first, then probe success. A bogus or
/// failed MX lookup defers mail as a failed TLSA lookup does: `dns_failure`
/// (docs/verdict.md).
fn state_of(r: &TargetReport) -> State {
    let mx_failed = r.error.is_some() && matches!(r.mx_dnssec, Some(Dnssec::Bogus | Dnssec::Error));
    match r.worst_dane() {
        Some(DaneStatus::DnsFailure) => State::DnsFailure,
        None if mx_failed => State::DnsFailure,
        Some(DaneStatus::Failed) => State::Failed,
        _ if !r.success => State::ProbeFailed,
        Some(DaneStatus::Unauthenticated) => State::Unauthenticated,
        Some(DaneStatus::None) => State::NoDane,
        Some(DaneStatus::Verified) => State::Verified,
        None => State::Ok,
    }
}
