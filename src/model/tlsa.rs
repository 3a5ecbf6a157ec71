//! TLSA values of a report: one record (RFC 6698 §2.1), why a record is unusable, and the
//! judgement of each record with one readable sentence per case.
//!
//! Not here: deciding usability and matching (`dane`), looking records up (`probe::dns`).
//! RFC 6698 §2.1 (fields), RFC 7218 (acronyms), RFC 7671 §9 (digest agility).

use std::fmt;

/// RFC 7218 acronyms of the TLSA field values SMTP uses (RFC 7672 §3.1).
pub(crate) const USAGE_DANE_TA: u8 = 2;
pub(crate) const USAGE_DANE_EE: u8 = 3;
pub(crate) const SELECTOR_CERT: u8 = 0;
pub(crate) const SELECTOR_SPKI: u8 = 1;
pub(crate) const MATCHING_FULL: u8 = 0;
pub(crate) const MATCHING_SHA256: u8 = 1;
pub(crate) const MATCHING_SHA512: u8 = 2;

/// One TLSA record (RFC 6698 §2.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    pub data: Vec<u8>,
}

impl Tlsa {
    /// Presentation format: `3 1 1 5f0e…` with the full data in lower-case hex.
    pub fn presentation(&self) -> String {
        self.to_string()
    }

    /// `3 1 1 5f0e8a2b91c4…`: the data cut to a readable prefix, for sentences.
    pub(crate) fn short(&self) -> String {
        let shown = self.data.get(..SHORT_BYTES).unwrap_or(&self.data);
        let cut = if self.data.len() > SHORT_BYTES {
            "…"
        } else {
            ""
        };
        let (u, s, m) = (self.usage, self.selector, self.matching);
        format!("{u} {s} {m} {}{cut}", hex::encode(shown))
    }
}

impl fmt::Display for Tlsa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.usage, self.selector, self.matching)?;
        if !self.data.is_empty() {
            write!(f, " {}", hex::encode(&self.data))?;
        }
        Ok(())
    }
}

impl From<&hickory_proto::rr::rdata::TLSA> for Tlsa {
    /// The record as published (RFC 6698 §2.1), whatever its field values.
    fn from(t: &hickory_proto::rr::rdata::TLSA) -> Self {
        Self {
            usage: u8::from(t.cert_usage),
            selector: u8::from(t.selector),
            matching: u8::from(t.matching),
            data: t.cert_data.clone(),
        }
    }
}

/// Why a record cannot be used (RFC 7672 §3.1).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum Unusable {
    /// Usage 0 or 1 (PKIX-TA, PKIX-EE): RFC 7672 §3.1.3.
    #[error("usage {0} (PKIX-TA/PKIX-EE) is not used for SMTP (RFC 7672 §3.1.3)")]
    PkixUsage(u8),
    #[error("usage {0} is unknown")]
    UnknownUsage(u8),
    #[error("selector {0} is unknown")]
    UnknownSelector(u8),
    #[error("matching type {0} is unknown")]
    UnknownMatching(u8),
    #[error("matching type {matching} needs a {expected}-byte digest, the record has {got} bytes")]
    DigestLength {
        matching: u8,
        expected: usize,
        got: usize,
    },
    #[error("the record has no certificate association data")]
    EmptyData,
    /// A matching type 0 record whose data is not a certificate (selector 0) or a
    /// SubjectPublicKeyInfo (selector 1).
    #[error("the full data does not parse as a certificate or public key")]
    Malformed,
}

impl Unusable {
    /// Fixed value set: safe as a label or log field.
    #[cfg(test)]
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::PkixUsage(_) => "pkix_usage",
            Self::UnknownUsage(_) => "unknown_usage",
            Self::UnknownSelector(_) => "unknown_selector",
            Self::UnknownMatching(_) => "unknown_matching",
            Self::DigestLength { .. } => "digest_length",
            Self::EmptyData => "empty_data",
            Self::Malformed => "malformed",
        }
    }
}

/// The verdict a DANE-enforcing sender reaches on the chain.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Authentication {
    /// Record `record` (index into the input) matched with its anchor or leaf at `depth`.
    Verified { record: usize, depth: usize },
    /// Usable records exist but none that Postfix uses matches.
    NotAuthenticated,
    /// No record is usable: TLS is still mandatory, but unauthenticated.
    NoUsableRecords,
}

/// The judgement of one published record: two facts from one evaluation (docs/metrics.md,
/// `mailtls_tlsa_record_match` and `mailtls_tlsa_record_authenticates`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecordCheck {
    pub record: Tlsa,
    /// RFC 7671 "matches": the association data equals the selected (and hashed) content
    /// of a certificate the server sent at an eligible depth (usage 3: depth 0; usage 2:
    /// depth ≥ 1, or for full `2 x 0` data the key or certificate that signs a served
    /// certificate). Dates, names, path validation and digest agility do not enter.
    /// False for unusable records.
    pub matched: bool,
    /// This record alone would let a DANE-enforcing sender authenticate the server: it
    /// matches, is usable, is not outranked by digest agility, and for usage 2 the chain
    /// from it verifies with valid dates and the leaf names a reference identifier.
    /// True exactly when `detail` is `Matched`.
    pub authenticates: bool,
    pub detail: RecordDetail,
}

/// TLSA records exported as series per address (docs/metrics.md, "Bounded exposition");
/// `check` and debug output list every record.
pub(crate) const MAX_EXPORTED_TLSA_RECORDS: usize = 32;

/// Which of `checks` are exported as series when there are more than
/// [`MAX_EXPORTED_TLSA_RECORDS`]: the authenticating records first, then the matching ones,
/// then the rest, each in RRset order; the result is in RRset order. So the records that
/// decide the alerts are never the ones left out.
pub(crate) fn exported_checks(checks: &[RecordCheck]) -> Vec<&RecordCheck> {
    if checks.len() <= MAX_EXPORTED_TLSA_RECORDS {
        return checks.iter().collect();
    }
    let rank = |c: &RecordCheck| match (c.authenticates, c.matched) {
        (true, _) => 0u8,
        (false, true) => 1,
        (false, false) => 2,
    };
    let mut order: Vec<usize> = (0..checks.len()).collect();
    order.sort_by_key(|&i| (checks.get(i).map_or(3, rank), i));
    order.truncate(MAX_EXPORTED_TLSA_RECORDS);
    order.sort_unstable();
    order.into_iter().filter_map(|i| checks.get(i)).collect()
}

/// Why a record counts, does not match, or is ignored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordDetail {
    Unusable(Unusable),
    /// Usable, matches, not outranked, and (DANE-TA) the chain and the leaf name verify:
    /// this record authenticates the server and counts for the verdict.
    Matched {
        depth: usize,
    },
    /// Digest agility (RFC 7671 §9): a stronger matching type of the same usage and
    /// selector is published, so Postfix ignores this record.
    Superseded {
        by_matching: u8,
        matched: bool,
    },
    /// DANE-EE: what the leaf's selected data is under this matching type (hex);
    /// empty when the leaf does not parse.
    LeafMismatch {
        leaf_digest: String,
    },
    /// DANE-TA: no served certificate at depth ≥ 1 matches (and, for full `2 x 0`
    /// data, the record's own key signs none of the served certificates): no match.
    AnchorNotServed,
    /// DANE-TA: the record matches the anchor at `depth`, but the path leaf → anchor does
    /// not verify (signatures, dates of any certificate on it, CA constraints).
    AnchorChainInvalid {
        depth: usize,
        reason: &'static str,
    },
    /// DANE-TA: the record matches and the chain verifies, but the leaf names none of the
    /// reference identifiers.
    NameMismatch {
        depth: usize,
        names_in_cert: Vec<String>,
    },
    /// The server sent no certificate.
    NoCertificate,
    /// A staged public key without its certificate: only a `3 1 x` record can be judged
    /// against a bare key; a selector 0 record needs the certificate, usage 2 the chain.
    KeyOnly,
}

impl RecordDetail {
    /// The record matches in RFC 7671's sense (`RecordCheck::matched`), whatever came of
    /// the path, the dates and the names. For `Superseded`, its own match.
    pub(crate) fn is_match(&self) -> bool {
        match self {
            Self::Matched { .. } | Self::AnchorChainInvalid { .. } | Self::NameMismatch { .. } => {
                true
            }
            Self::Superseded { matched, .. } => *matched,
            Self::Unusable(_)
            | Self::LeafMismatch { .. }
            | Self::AnchorNotServed
            | Self::NoCertificate
            | Self::KeyOnly => false,
        }
    }
}

impl RecordCheck {
    /// One readable sentence for the `check` output.
    pub fn explain(&self) -> String {
        let rec = &self.record;
        let short = rec.short();
        let object = match rec.selector {
            SELECTOR_CERT => "certificate",
            _ => "key",
        };
        match &self.detail {
            RecordDetail::Unusable(why) => format!("{short} is unusable: {why}"),
            RecordDetail::Matched { depth: 0 } if rec.usage == USAGE_DANE_EE => {
                format!("{short} matches the leaf {object}")
            }
            RecordDetail::Matched { depth } => format!(
                "{short} matches the trust anchor {object} at depth {depth}; the chain to it and the leaf name verify"
            ),
            RecordDetail::Superseded { by_matching, matched } => {
                let stronger = format!("{} {} {by_matching}", rec.usage, rec.selector);
                let state = if *matched {
                    "matches, but does not authenticate:"
                } else {
                    "does not match, and"
                };
                format!(
                    "{short} {state} a stronger {stronger} record outranks it (digest agility, RFC 7671 §9), so Postfix ignores it"
                )
            }
            RecordDetail::LeafMismatch { leaf_digest } if leaf_digest.is_empty() => {
                format!("{short} does not match: the leaf certificate does not parse")
            }
            RecordDetail::LeafMismatch { leaf_digest } => {
                let what = match rec.matching {
                    MATCHING_SHA256 => "SHA-256",
                    MATCHING_SHA512 => "SHA-512",
                    _ => "DER",
                };
                let leaf = abbreviated(leaf_digest);
                format!("{short} does not match the leaf {object} (leaf {object} {what} {leaf})")
            }
            RecordDetail::AnchorNotServed if rec.matching == MATCHING_FULL => format!(
                "{short} holds a trust anchor {object} that signs none of the served certificates"
            ),
            RecordDetail::AnchorNotServed => {
                format!("{short} names a CA the server did not send")
            }
            RecordDetail::AnchorChainInvalid { depth, reason } => format!(
                "{short} matches the trust anchor {object} at depth {depth}, but does not authenticate: the chain to it does not verify ({reason})"
            ),
            RecordDetail::NameMismatch {
                depth,
                names_in_cert,
            } => {
                let names = if names_in_cert.is_empty() {
                    "none".to_owned()
                } else {
                    names_in_cert.join(", ")
                };
                format!(
                    "{short} matches the trust anchor {object} at depth {depth}, but does not authenticate: the leaf names none of the reference names (leaf names: {names})"
                )
            }
            RecordDetail::NoCertificate => {
                format!("{short} cannot be checked: the server sent no certificate")
            }
            RecordDetail::KeyOnly if rec.usage == USAGE_DANE_TA => format!(
                "{short} cannot be judged from a public key alone: a DANE-TA record needs the chain that leads to the CA"
            ),
            RecordDetail::KeyOnly => format!(
                "{short} cannot be judged from a public key alone: selector 0 covers the whole certificate"
            ),
        }
    }
}

/// Bytes of data shown in sentences before `…`.
const SHORT_BYTES: usize = 6;

/// A hex string cut to `SHORT_BYTES` bytes, with `…` when cut.
fn abbreviated(hex: &str) -> String {
    match hex.get(..2 * SHORT_BYTES) {
        Some(prefix) if hex.len() > prefix.len() => format!("{prefix}…"),
        _ => hex.to_owned(),
    }
}
