//! Fuzz the TLSA record parser and the DANE matcher (`dane::evaluate`, RFC 7672 §3,
//! RFC 7671 §5 and §9) with arbitrary RDATA, against a fixed lab chain or against arbitrary
//! bytes as the served chain.
//!
//! Input: byte 0 = `n | mode << 3` (n = number of records, 0..=7); then n records, each a
//! big-endian u16 length and that many RDATA octets (RFC 6698 §2.1 wire format, decoded by
//! hickory exactly as in a DNS answer, then converted to the model's `Tlsa`). Mode 0: the rest
//! is one more reference name and the chain is the fixed lab chain (`fixtures/chain/`, leaf
//! `mx1.good.test` and its issuing CA); mode 1: the rest is the chain, each certificate a u16
//! length and that many octets.
//!
//! Checks: no panic; the parsed record is exactly the RDATA; one judgement per record, in
//! order; an unusable record never matches; a `Verified` verdict names a usable record that
//! matched; evaluation is deterministic; every explanation renders.
#![no_main]

use std::sync::OnceLock;

use hickory_proto::rr::{RData, RecordType};
use hickory_proto::serialize::binary::{BinDecoder, Restrict};
use libfuzzer_sys::fuzz_target;
use mailtls_exporter::cert;
use mailtls_exporter::dane::{evaluate, usability, DaneInput};
use mailtls_exporter::model::tlsa::{Authentication, RecordDetail, Tlsa};
use rustls_pki_types::{CertificateDer, UnixTime};

const MAX_RECORDS: usize = 7;
const MAX_CHAIN: usize = 6;

static LEAF: &[u8] = include_bytes!("../fixtures/chain/leaf.der");
static CA: &[u8] = include_bytes!("../fixtures/chain/ca.der");

/// A moment inside the fixed chain's validity, so name and path checks are reached.
fn now() -> UnixTime {
    static NOW: OnceLock<u64> = OnceLock::new();
    let secs = *NOW.get_or_init(|| {
        let leaf = cert::parts(LEAF).expect("fixture leaf parses");
        u64::try_from(leaf.not_before + 86_400).expect("fixture validity after 1970")
    });
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs))
}

/// Splits off a u16-length-prefixed chunk.
fn chunk(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = data.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*len));
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// The record as the exporter gets it from a DNS answer: hickory's RDATA decoder, then
/// `Tlsa::from`.
fn parse_rdata(rdata: &[u8]) -> Option<Tlsa> {
    let len = u16::try_from(rdata.len()).ok()?;
    let mut decoder = BinDecoder::new(rdata);
    match RData::read(&mut decoder, RecordType::TLSA, Restrict::new(len)) {
        Ok(RData::TLSA(t)) => Some(Tlsa::from(&t)),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, mut rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(head & 7).min(MAX_RECORDS);
    let arbitrary_chain = head & 8 != 0;

    let mut records = Vec::with_capacity(n);
    for _ in 0..n {
        let Some((rdata, after)) = chunk(rest) else {
            return;
        };
        rest = after;
        match parse_rdata(rdata) {
            Some(t) => {
                assert!(rdata.len() >= 3);
                assert_eq!([t.usage, t.selector, t.matching], rdata[..3]);
                assert_eq!(t.data, rdata[3..]);
                let shown = t.presentation();
                assert!(shown.starts_with(&format!("{} {} {}", t.usage, t.selector, t.matching)));
                records.push(t);
            }
            None => assert!(rdata.len() < 3, "{} RDATA octets not decoded", rdata.len()),
        }
    }

    let mut names = vec!["mx1.good.test".to_string(), "good.test".to_string()];
    let mut chain: Vec<CertificateDer<'_>> = Vec::new();
    if arbitrary_chain {
        while chain.len() < MAX_CHAIN {
            let Some((der, after)) = chunk(rest) else {
                break;
            };
            rest = after;
            chain.push(CertificateDer::from(der));
        }
    } else {
        chain.push(CertificateDer::from(LEAF));
        chain.push(CertificateDer::from(CA));
        if !rest.is_empty() {
            names.push(String::from_utf8_lossy(rest).into_owned());
        }
    }

    let input = DaneInput {
        records: &records,
        chain: &chain,
        names: &names,
        now: now(),
    };
    let e = evaluate(&input);
    assert_eq!(e.checks.len(), records.len());
    for (check, record) in e.checks.iter().zip(&records) {
        assert_eq!(&check.record, record);
        if usability(record).is_err() {
            assert!(!check.matched);
            assert!(matches!(check.detail, RecordDetail::Unusable(_)));
        }
        if chain.is_empty() && usability(record).is_ok() {
            assert!(!check.matched);
        }
        let _ = check.explain();
    }
    if let Authentication::Verified { record, depth } = e.authentication {
        assert!(usability(&records[record]).is_ok());
        assert!(e.checks[record].matched);
        assert!(depth < chain.len());
    }
    assert_eq!(evaluate(&input), e);
});
