//! Building an [`Answer`] from a response: the CNAME chain, the typed RRset, its DNSSEC
//! state as the mode classifies it, and the earliest RRSIG expiration (RFC 4034 §3.1.5,
//! serial arithmetic of RFC 1982).
//!
//! Not here: sending queries (`upstream`, `local`), caching (`probe::cache`).

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_net::{DnsError, NetError};
use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::model::dns::{Answer, Data, Dnssec, Mx, Outcome};
use crate::model::tlsa::Tlsa;

/// A lookup that failed: no data, `reason` for people.
pub(super) fn failed_answer(
    name: &Name,
    rtype: RecordType,
    dnssec: Dnssec,
    reason: String,
) -> Answer {
    Answer {
        name: display_name(name),
        rtype: rtype.to_string(),
        outcome: Outcome::Failed,
        dnssec,
        cnames: Vec::new(),
        data: Data::None,
        sig_expiry: None,
        reason: Some(reason),
        ttl: 0,
        original_ttl: None,
    }
}

/// Lower case, no trailing dot ("." for the root).
pub(crate) fn display_name(n: &Name) -> String {
    let s = n.to_lowercase().to_ascii();
    match s.strip_suffix('.') {
        Some("") | None => s,
        Some(t) => t.to_string(),
    }
}

pub(super) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// RRSIG expiration (32-bit serial, RFC 4034 §3.1.5 / RFC 1982) → Unix seconds, taking the
/// value closest to `now` (valid until 2106 and beyond).
pub(crate) fn rrsig_time_to_unix(serial: u32, now: i64) -> i64 {
    let now32 = now as u32; // wrapping: the low 32 bits of now
    let delta = serial.wrapping_sub(now32) as i32; // RFC 1982 distance, signed
    now + i64::from(delta)
}

pub(super) fn net_reason(e: &NetError) -> String {
    match e {
        NetError::Timeout => "timeout".to_string(),
        NetError::Dns(DnsError::ResponseCode(c)) => format!("rcode {c}"),
        other => other.to_string(),
    }
}

/// Builds an [`Answer`] from a response: follows the CNAME chain from `name` through the
/// answer section, takes the `rtype` RRset at its end; `state_of` gives each RRset's DNSSEC
/// state (records of one RRset share it), `denial_state` the state of a NODATA/NXDOMAIN.
pub(super) fn answer_from_message(
    name: &Name,
    rtype: RecordType,
    msg: &Message,
    state_of: impl Fn(&Record) -> Dnssec,
    denial_state: Dnssec,
) -> Answer {
    let mut current = name.to_lowercase();
    let mut cnames = Vec::new();
    let mut state = Dnssec::Secure;
    let mut ttl = u32::MAX;
    // Follow at most 16 CNAME steps (loops and absurd chains end here).
    for _ in 0..16 {
        if rtype == RecordType::CNAME {
            break;
        }
        let Some(c) = msg
            .answers
            .iter()
            .find(|r| r.record_type() == RecordType::CNAME && r.name.to_lowercase() == current)
        else {
            break;
        };
        let RData::CNAME(target) = &c.data else { break };
        state = state.weakest(state_of(c));
        ttl = ttl.min(c.ttl);
        current = target.0.to_lowercase();
        cnames.push(display_name(&current));
    }
    let rrset: Vec<&Record> = msg
        .answers
        .iter()
        .filter(|r| r.record_type() == rtype && r.name.to_lowercase() == current)
        .collect();
    let mut sig_owner_types: Vec<(Name, RecordType)> = cnames_owners(name, &cnames);
    let (outcome, data) = if rrset.is_empty() {
        state = state.weakest(denial_state);
        for r in &msg.authorities {
            if r.record_type() == RecordType::SOA {
                ttl = ttl.min(r.ttl);
            }
        }
        let outcome = if msg.metadata.response_code == ResponseCode::NXDomain {
            Outcome::NxDomain
        } else {
            Outcome::NoData
        };
        (outcome, Data::None)
    } else {
        for r in &rrset {
            state = state.weakest(state_of(r));
            ttl = ttl.min(r.ttl);
        }
        sig_owner_types.push((current.clone(), rtype));
        (Outcome::Records, typed_data(rtype, &rrset))
    };
    let sig_expiry = if outcome == Outcome::Records {
        earliest_rrsig(msg.answers.iter(), Some(&sig_owner_types))
    } else {
        // Denial: the signatures over SOA and NSEC/NSEC3 in the authority section.
        earliest_rrsig(msg.answers.iter().chain(msg.authorities.iter()), None)
    };
    // RFC 4034 §3.1.4: the RRSIG carries the TTL the zone publishes; `ttl` is what is left of
    // it in the resolver's cache.
    let original_ttl = (outcome == Outcome::Records)
        .then(|| {
            msg.answers.iter().find_map(|r| match &r.data {
                RData::DNSSEC(DNSSECRData::RRSIG(sig))
                    if sig.input().type_covered == rtype && r.name.to_lowercase() == current =>
                {
                    Some(sig.input().original_ttl)
                }
                _ => None,
            })
        })
        .flatten();
    Answer {
        name: display_name(name),
        rtype: rtype.to_string(),
        outcome,
        dnssec: state,
        cnames,
        data,
        sig_expiry,
        reason: None,
        ttl: if ttl == u32::MAX { 0 } else { ttl },
        original_ttl,
    }
}

fn cnames_owners(name: &Name, cnames: &[String]) -> Vec<(Name, RecordType)> {
    // The owners of the CNAME records: the queried name and every target but the last.
    let mut owners = vec![(name.to_lowercase(), RecordType::CNAME)];
    for c in cnames.iter().take(cnames.len().saturating_sub(1)) {
        if let Ok(n) = Name::from_ascii(format!("{c}.")) {
            owners.push((n.to_lowercase(), RecordType::CNAME));
        }
    }
    if cnames.is_empty() {
        owners.clear();
    }
    owners
}

fn typed_data(rtype: RecordType, rrset: &[&Record]) -> Data {
    match rtype {
        RecordType::MX => Data::Mx(
            rrset
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(mx) => Some(Mx {
                        preference: mx.preference,
                        exchange: if mx.exchange.is_root() {
                            String::new()
                        } else {
                            display_name(&mx.exchange)
                        },
                    }),
                    _ => None,
                })
                .collect(),
        ),
        RecordType::A | RecordType::AAAA => Data::Addrs(
            rrset
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })
                .collect(),
        ),
        RecordType::TLSA => Data::Tlsa(
            rrset
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TLSA(t) => Some(Tlsa::from(t)),
                    _ => None,
                })
                .collect(),
        ),
        RecordType::TXT => Data::Txt(
            rrset
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(t) => Some(
                        t.txt_data
                            .iter()
                            .map(|s| String::from_utf8_lossy(s))
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect(),
        ),
        _ => Data::None,
    }
}

/// Earliest RRSIG expiration among `records`, optionally only those covering the given
/// (owner, type) pairs.
pub(super) fn earliest_rrsig<'a>(
    records: impl Iterator<Item = &'a Record>,
    covering: Option<&[(Name, RecordType)]>,
) -> Option<i64> {
    let now = now_unix();
    records
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::RRSIG(sig)) => {
                let input = sig.input();
                let wanted = covering.is_none_or(|c| {
                    c.iter().any(|(owner, ty)| {
                        *ty == input.type_covered && r.name.to_lowercase() == *owner
                    })
                });
                wanted.then(|| rrsig_time_to_unix(input.sig_expiration.get(), now))
            }
            _ => None,
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrsig_serial_arithmetic_spans_2106() {
        let now = 1_795_000_000; // 2026-11
        assert_eq!(rrsig_time_to_unix(now as u32 + 86_400, now), now + 86_400);
        assert_eq!(rrsig_time_to_unix(now as u32 - 86_400, now), now - 86_400);
        // RFC 1982: after 2106 the 32-bit value wraps; closest to now wins.
        let later: i64 = 4_294_967_296 + 1000;
        assert_eq!(rrsig_time_to_unix(2000, later), later + 1000);
    }

    #[test]
    fn display_name_is_lower_case_without_dot() {
        let n = Name::from_ascii("MX1.Example.ORG.").unwrap();
        assert_eq!(display_name(&n), "mx1.example.org");
        assert_eq!(display_name(&Name::root()), ".");
    }
}
