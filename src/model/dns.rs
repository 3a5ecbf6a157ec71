//! DNS values of a report: the DNSSEC state of an RRset, how a lookup ended, and the
//! typed answer (MX, addresses, TLSA) with its earliest RRSIG expiration.
//!
//! Not here: sending queries or classifying answers (`probe::dns`).
//! RFC 4035 §4.3 (secure, insecure, bogus), RFC 4034 §3.1.5 (RRSIG expiration).

use std::net::IpAddr;

use serde::Serialize;

use super::tlsa::Tlsa;

/// DNSSEC state of an RRset (RFC 4035 §4.3); `Error` = the lookup failed and bogus cannot
/// be told apart from a plain failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize)]
#[serde(rename_all = "lowercase")]
#[must_use]
pub enum Dnssec {
    Bogus,
    #[default]
    Error,
    Insecure,
    Secure,
}

impl Dnssec {
    pub(crate) const ALL: [Dnssec; 4] = [Self::Secure, Self::Insecure, Self::Bogus, Self::Error];
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Secure => "secure",
            Self::Insecure => "insecure",
            Self::Bogus => "bogus",
            Self::Error => "error",
        }
    }
    /// The weaker of two states along a chain (CNAME steps): any failure wins, then insecure.
    pub(crate) fn weakest(self, other: Self) -> Self {
        self.min(other)
    }
}

/// How a lookup ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Records,
    NoData,
    NxDomain,
    Failed,
}

/// One MX record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mx {
    pub preference: u16,
    /// Lower case, no trailing dot; "" for the null MX target ".".
    pub exchange: String,
}

/// The typed data of an answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Data {
    #[default]
    None,
    Mx(Vec<Mx>),
    Addrs(Vec<IpAddr>),
    Tlsa(Vec<Tlsa>),
    /// One string per TXT record, its character-strings joined (RFC 7208 §3.3 style, as
    /// RFC 8461 §3.1 and RFC 8460 §3 read them); non-UTF-8 bytes replaced.
    Txt(Vec<String>),
}

/// One lookup: the RRset of `rtype` at `name` (after any CNAME chain), with its DNSSEC state.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    /// Owner name queried: lower case, no trailing dot.
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub outcome: Outcome,
    /// State of the whole chain: CNAME steps and the final RRset (or its denial).
    pub dnssec: Dnssec,
    /// CNAME chain followed, in order (targets, lower case); empty when none.
    pub cnames: Vec<String>,
    pub data: Data,
    /// Earliest RRSIG expiration (Unix seconds) over the answer's signatures, when visible.
    pub sig_expiry: Option<i64>,
    /// Why it failed or is bogus (EDE text, rcode, transport error); for humans only.
    pub reason: Option<String>,
    #[serde(skip)]
    pub ttl: u32,
    /// The RRset's original TTL from its RRSIG (RFC 4034 §3.1.4), when the signatures are
    /// visible; `ttl` is what the resolver's cache had left.
    #[serde(skip)]
    pub original_ttl: Option<u32>,
}

impl Answer {
    /// Final owner name after CNAME expansion.
    pub(crate) fn canonical(&self) -> &str {
        self.cnames.last().map(String::as_str).unwrap_or(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dnssec_weakest_orders_failure_before_insecure() {
        assert_eq!(Dnssec::Secure.weakest(Dnssec::Insecure), Dnssec::Insecure);
        assert_eq!(Dnssec::Insecure.weakest(Dnssec::Bogus), Dnssec::Bogus);
        assert_eq!(Dnssec::Error.weakest(Dnssec::Secure), Dnssec::Error);
    }
}
