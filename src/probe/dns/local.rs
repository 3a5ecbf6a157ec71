//! Local mode: hickory's `DnssecDnsHandle` over a retrying `NameServerPool` validates
//! in-process from trust anchors against a non-validating recursive resolver, with
//! per-RRset proofs; and the workarounds for hickory's limitations (docs/dnssec.md):
//! denials reached through a CNAME, wildcard answers (hickory #3812), key fetch failures
//! reported as bogus (hickory #3932, #3964).
//!
//! Not here: building the answer (`answer`), caching (`probe::cache`).

use hickory_net::dnssec::DnssecDnsHandle;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::xfer::{DnsHandle, FirstAnswer, RetryDnsHandle};
use hickory_net::{DnsError, NetError};
use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::dnssec::Proof;
use hickory_proto::op::{DnsRequestOptions, DnsResponse, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::NameServerPool;

use super::answer::{answer_from_message, display_name, earliest_rrsig, failed_answer, net_reason};
use crate::model::dns::{Answer, Dnssec, Outcome};

fn proof_state(p: Proof) -> Dnssec {
    match p {
        Proof::Secure => Dnssec::Secure,
        Proof::Insecure => Dnssec::Insecure,
        Proof::Bogus => Dnssec::Bogus,
        // hickory never reports Indeterminate for validated data (docs/dnssec.md);
        // where it does, nothing was proven.
        _ => Dnssec::Error,
    }
}

/// DNSSEC state of a denial (NODATA / NXDOMAIN) from the proofs hickory attached to its
/// authority records, RRSIGs aside (RFC 4035 §5.4):
/// - no record at all: nothing was proven either way, so `Error`. hickory rejects a denial of
///   a signed zone that lacks its NSEC/NSEC3 before it gets here (tests/downgrade.rs); this
///   keeps the result safe should it stop doing so: a denial is `Insecure` only on hickory's
///   own proof, never by default.
/// - the weakest proof is `Secure` but there is no NSEC or NSEC3 record: a signed SOA alone
///   proves nothing about the name asked (RFC 4035 §3.1.3), the proof was stripped: `Bogus`.
/// - otherwise the weakest proof: `Insecure` only where hickory marked a record insecure,
///   i.e. proved the zone unsigned through the DS denial above it (RFC 4035 §5.2).
fn denial_state(authorities: &[Record]) -> Dnssec {
    let mut proven = false;
    let mut weakest: Option<Dnssec> = None;
    for r in authorities
        .iter()
        .filter(|r| r.record_type() != RecordType::RRSIG)
    {
        proven |= matches!(r.record_type(), RecordType::NSEC | RecordType::NSEC3);
        let st = proof_state(r.proof);
        weakest = Some(weakest.map_or(st, |w| w.weakest(st)));
    }
    match weakest {
        None => Dnssec::Error,
        Some(Dnssec::Secure) if !proven => Dnssec::Bogus,
        Some(st) => st,
    }
}

pub(super) async fn lookup(
    validator: &DnssecDnsHandle<RetryDnsHandle<NameServerPool<TokioRuntimeProvider>>>,
    name: &Name,
    rtype: RecordType,
) -> Answer {
    let mut o = DnsRequestOptions::default();
    o.edns_set_dnssec_ok = true;
    o.use_edns = true;
    let q = Query::query(name.clone(), rtype);
    let mut answer = classify(name, rtype, validator.lookup(q, o).first_answer().await);
    if !answer.cnames.is_empty()
        && matches!(answer.outcome, Outcome::NoData | Outcome::NxDomain)
        && answer.dnssec != Dnssec::Secure
    {
        // hickory judges a denial reached through a CNAME into another zone against the
        // wrong name (a secure NODATA at the target came back bogus in the lab). Ask for the
        // target itself, and combine its state with the CNAME steps' own proofs.
        if let Some(fixed) = denial_via_cname(validator, name, rtype, &answer).await {
            answer = fixed;
        }
    }
    if answer.dnssec == Dnssec::Bogus && answer.outcome != Outcome::Failed {
        answer
            .reason
            .get_or_insert_with(|| "DNSSEC validation failed".into());
    }
    if answer.dnssec == Dnssec::Bogus {
        // hickory #3932/#3964: a DNSKEY/DS fetch failure comes out as bogus. Re-fetch the
        // signer's keys without validation; if that fails, nothing was proven: error.
        if let Some(why) = chain_fetch_failure(validator, name).await {
            answer.dnssec = Dnssec::Error;
            answer.reason = Some(format!("key fetch failed ({why}); not proven bogus"));
        }
    }
    answer
}

/// The answer of hickory's validating lookup, one shape per result (docs/dnssec.md, "Local
/// mode"), before the CNAME and key-fetch corrections of [`lookup`].
fn classify(name: &Name, rtype: RecordType, result: Result<DnsResponse, NetError>) -> Answer {
    match result {
        Ok(resp) => {
            let denial = denial_state(&resp.authorities);
            answer_from_message(name, rtype, &resp, |r| proof_state(r.proof), denial)
        }
        Err(NetError::Dns(DnsError::Nsec {
            proof, response, ..
        })) => {
            let st = proof_state(proof);
            let mut a = answer_from_message(name, rtype, &response, |r| proof_state(r.proof), st);
            if a.outcome == Outcome::Records {
                // An answer judged through its wildcard proof: the proof's state rules.
                a.dnssec = a.dnssec.weakest(st);
                if st == Dnssec::Bogus && wildcard_answer(&response, rtype) {
                    a.reason = Some(
                        "wildcard answer with NSEC proof judged bogus by hickory (known limitation, hickory #3812)".into(),
                    );
                }
            }
            a
        }
        Err(NetError::Dns(DnsError::NoRecordsFound(nr))) => {
            let st = denial_state(nr.authorities.as_deref().unwrap_or(&[]));
            let mut a = failed_answer(name, rtype, st, String::new());
            a.reason = None;
            a.outcome = if nr.response_code == ResponseCode::NXDomain {
                Outcome::NxDomain
            } else {
                Outcome::NoData
            };
            a
        }
        Err(NetError::Dns(DnsError::DnssecBogus)) => failed_answer(
            name,
            rtype,
            Dnssec::Bogus,
            "DNSSEC validation failed".into(),
        ),
        Err(e) => failed_answer(name, rtype, Dnssec::Error, net_reason(&e)),
    }
}

async fn denial_via_cname(
    validator: &DnssecDnsHandle<RetryDnsHandle<NameServerPool<TokioRuntimeProvider>>>,
    name: &Name,
    rtype: RecordType,
    via: &Answer,
) -> Option<Answer> {
    let target = Name::from_ascii(format!("{}.", via.canonical())).ok()?;
    let mut o = DnsRequestOptions::default();
    o.edns_set_dnssec_ok = true;
    o.use_edns = true;
    let q = |n: &Name| Query::query(n.clone(), rtype);
    // The CNAME steps' own proofs: the chain as answered for the original name, with its
    // denial counted as secure.
    let chain = match validator.lookup(q(name), o).first_answer().await {
        Ok(resp) => {
            answer_from_message(name, rtype, &resp, |r| proof_state(r.proof), Dnssec::Secure)
        }
        Err(NetError::Dns(DnsError::Nsec { response, .. })) => answer_from_message(
            name,
            rtype,
            &response,
            |r| proof_state(r.proof),
            Dnssec::Secure,
        ),
        Err(_) => return None,
    };
    if chain.cnames != via.cnames {
        return None;
    }
    let (denial, expiry) = match validator.lookup(q(&target), o).first_answer().await {
        Ok(resp)
            if resp
                .answers
                .iter()
                .all(|r| r.record_type() == RecordType::RRSIG) =>
        {
            let a = answer_from_message(
                &target,
                rtype,
                &resp,
                |r| proof_state(r.proof),
                denial_state(&resp.authorities),
            );
            (a.dnssec, a.sig_expiry)
        }
        Err(NetError::Dns(DnsError::Nsec {
            proof, response, ..
        })) => (
            proof_state(proof),
            earliest_rrsig(response.authorities.iter(), None),
        ),
        _ => return None,
    };
    let mut fixed = via.clone();
    fixed.dnssec = chain.dnssec.weakest(denial);
    fixed.sig_expiry = match (chain.sig_expiry, expiry) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    fixed.reason = None;
    Some(fixed)
}

fn wildcard_answer(msg: &Message, rtype: RecordType) -> bool {
    msg.answers.iter().any(|r| match &r.data {
        RData::DNSSEC(DNSSECRData::RRSIG(sig)) => {
            sig.input().type_covered == rtype && sig.input().num_labels < r.name.num_labels()
        }
        _ => false,
    })
}

/// Re-fetches DNSKEY and DS along `name`'s zone cut without validation; Some(reason) when
/// the fetch itself fails (timeout, SERVFAIL, I/O).
async fn chain_fetch_failure(
    validator: &DnssecDnsHandle<RetryDnsHandle<NameServerPool<TokioRuntimeProvider>>>,
    name: &Name,
) -> Option<String> {
    let inner = validator.inner();
    // Walk up from the name: each ancestor's DNSKEY (apexes answer, others are NODATA).
    let mut n = name.clone();
    loop {
        for ty in [RecordType::DNSKEY, RecordType::DS] {
            if ty == RecordType::DS && n.is_root() {
                continue;
            }
            let mut o = DnsRequestOptions::default();
            o.edns_set_dnssec_ok = true;
            match inner
                .lookup(Query::query(n.clone(), ty), o)
                .first_answer()
                .await
            {
                Ok(_) => {}
                Err(NetError::Dns(DnsError::NoRecordsFound(_)))
                | Err(NetError::Dns(DnsError::Nsec { .. })) => {}
                Err(NetError::Dns(DnsError::ResponseCode(ResponseCode::NXDomain))) => {}
                Err(e) => return Some(format!("{} {ty}: {}", display_name(&n), net_reason(&e))),
            }
        }
        if n.is_root() {
            return None;
        }
        n = n.base_name();
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::dnssec::rdata::NSEC;
    use hickory_proto::rr::rdata::SOA;

    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn soa(proof: Proof) -> Record {
        let data = SOA::new(name("ns.z.test."), name("h.z.test."), 1, 60, 60, 600, 60);
        let mut r = Record::from_rdata(name("z.test."), 60, RData::SOA(data));
        r.proof = proof;
        r
    }

    fn nsec(proof: Proof) -> Record {
        let data = NSEC::new(name("b.z.test."), [RecordType::A, RecordType::RRSIG]);
        let mut r = Record::from_rdata(
            name("a.z.test."),
            60,
            RData::DNSSEC(DNSSECRData::NSEC(data)),
        );
        r.proof = proof;
        r
    }

    // RFC 4035 §5.4: a denial is secure only with its NSEC/NSEC3 proof.
    #[test]
    fn denial_without_any_authority_record_is_an_error_not_insecure() {
        assert_eq!(denial_state(&[]), Dnssec::Error);
    }

    #[test]
    fn signed_soa_without_nsec_or_nsec3_is_bogus() {
        assert_eq!(denial_state(&[soa(Proof::Secure)]), Dnssec::Bogus);
        assert_eq!(
            denial_state(&[soa(Proof::Secure), nsec(Proof::Secure)]),
            Dnssec::Secure
        );
    }

    #[test]
    fn insecure_only_on_a_proof_hickory_made() {
        // An unsigned zone below a proven DS denial: the SOA comes back Insecure.
        assert_eq!(denial_state(&[soa(Proof::Insecure)]), Dnssec::Insecure);
        assert_eq!(
            denial_state(&[soa(Proof::Secure), nsec(Proof::Bogus)]),
            Dnssec::Bogus
        );
        assert_eq!(denial_state(&[soa(Proof::Indeterminate)]), Dnssec::Error);
    }

    // The NoRecordsFound branch goes through the same rule (7b).
    #[test]
    fn no_records_found_uses_the_denial_rule() {
        let nr = |authorities: Option<Vec<Record>>| {
            let mut nr = hickory_net::NoRecords::new(
                Query::query(name("_25._tcp.mx.z.test."), RecordType::TLSA),
                ResponseCode::NoError,
            );
            nr.authorities = authorities.map(Into::into);
            Err(NetError::Dns(DnsError::NoRecordsFound(nr)))
        };
        let q = name("_25._tcp.mx.z.test.");
        let a = classify(&q, RecordType::TLSA, nr(None));
        assert_eq!((a.outcome, a.dnssec), (Outcome::NoData, Dnssec::Error));
        let a = classify(&q, RecordType::TLSA, nr(Some(vec![soa(Proof::Secure)])));
        assert_eq!((a.outcome, a.dnssec), (Outcome::NoData, Dnssec::Bogus));
        let a = classify(&q, RecordType::TLSA, nr(Some(vec![soa(Proof::Insecure)])));
        assert_eq!((a.outcome, a.dnssec), (Outcome::NoData, Dnssec::Insecure));
        let a = classify(
            &q,
            RecordType::TLSA,
            nr(Some(vec![soa(Proof::Secure), nsec(Proof::Secure)])),
        );
        assert_eq!((a.outcome, a.dnssec), (Outcome::NoData, Dnssec::Secure));
    }
}
