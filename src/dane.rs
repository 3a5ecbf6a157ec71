//! DANE TLSA records judged against a served chain, as a DANE-enforcing Postfix
//! (OpenSSL `dane_match`) judges them: record usability, per-record matching, digest
//! agility and the verdict. Pure: no I/O, no clock (the caller passes `now`).
//!
//! Not here: DNS and DNSSEC (`probe::mx`, `probe::dns`), getting the chain
//! (`probe::tls`), X.509 parsing, name matching and path validation (`cert`),
//! the record and verdict values themselves (`model::tlsa`), metric names (`metrics`).
//! RFC 6698 §2.1 (TLSA fields), RFC 7671 §5 (DANE-TA/DANE-EE), §9 (digest agility),
//! RFC 7672 §3.1 (usable records for SMTP), §3.2 (name checks). Arbitrary record data
//! and arbitrary certificate bytes never panic.

use std::cell::OnceCell;

use rustls_pki_types::{CertificateDer, UnixTime};
use sha2::{Digest, Sha256, Sha512};

use crate::cert::{self, ServedChain};
use crate::model::tlsa::{
    Authentication, RecordCheck, RecordDetail, Tlsa, Unusable, MATCHING_FULL, MATCHING_SHA256,
    MATCHING_SHA512, SELECTOR_CERT, SELECTOR_SPKI, USAGE_DANE_EE, USAGE_DANE_TA,
};

/// What `evaluate` needs: the secure TLSA RRset and what the server sent.
#[derive(Debug, Clone, Copy)]
pub struct DaneInput<'a> {
    /// The secure TLSA RRset as published.
    pub records: &'a [Tlsa],
    /// As served by the server, leaf first.
    pub chain: &'a [CertificateDer<'a>],
    /// Reference identifiers for DANE-TA (RFC 7672 §3.2.2): TLSA base domain first,
    /// then MX host name, then next-hop domain; lower case, no trailing dot.
    pub names: &'a [String],
    pub now: UnixTime,
}

/// Whether an SMTP client may use this record (RFC 7672 §3.1, RFC 6698 §2.1).
pub fn usability(record: &Tlsa) -> Result<(), Unusable> {
    match record.usage {
        USAGE_DANE_TA | USAGE_DANE_EE => {}
        0 | 1 => return Err(Unusable::PkixUsage(record.usage)),
        other => return Err(Unusable::UnknownUsage(other)),
    }
    if record.selector > SELECTOR_SPKI {
        return Err(Unusable::UnknownSelector(record.selector));
    }
    let expected = match record.matching {
        MATCHING_FULL => None,
        MATCHING_SHA256 => Some(32),
        MATCHING_SHA512 => Some(64),
        other => return Err(Unusable::UnknownMatching(other)),
    };
    if record.data.is_empty() {
        return Err(Unusable::EmptyData);
    }
    match expected {
        Some(expected) if record.data.len() != expected => Err(Unusable::DigestLength {
            matching: record.matching,
            expected,
            got: record.data.len(),
        }),
        Some(_) => Ok(()),
        None => {
            let parses = match record.selector {
                SELECTOR_CERT => cert::is_certificate(&record.data),
                _ => cert::is_spki(&record.data),
            };
            if parses {
                Ok(())
            } else {
                Err(Unusable::Malformed)
            }
        }
    }
}

/// Every record judged, and the verdict.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DaneEvaluation {
    /// Same order as `DaneInput::records`.
    pub checks: Vec<RecordCheck>,
    pub authentication: Authentication,
}

/// Judges the TLSA RRset against the served chain as Postfix with OpenSSL DANE does
/// (RFC 7672 §3, RFC 7671 §5 and §9).
pub fn evaluate(input: &DaneInput<'_>) -> DaneEvaluation {
    let served = ServedChain::new(input.chain);
    let names: Vec<&str> = input.names.iter().map(String::as_str).collect();
    evaluate_served(input.records, &served, &names, input.now)
}

/// `evaluate` on a chain the caller has already parsed (and maybe validated with PKIX:
/// the signatures PKIX checked are not checked again, docs/performance.md).
pub fn evaluate_served(
    records: &[Tlsa],
    served: &ServedChain<'_>,
    names: &[&str],
    now: UnixTime,
) -> DaneEvaluation {
    let usability: Vec<Result<(), Unusable>> = records.iter().map(usability).collect();
    let strongest = strongest_digests(records, &usability);
    let chain = Chain::new(served, names, now);

    let mut any_usable = false;
    let mut verified = None;
    let mut checks = Vec::with_capacity(records.len());
    for (index, (record, usable)) in records.iter().zip(usability).enumerate() {
        let (matched, authenticates, detail) = match usable {
            Err(why) => (false, false, RecordDetail::Unusable(why)),
            Ok(()) => {
                any_usable = true;
                let detail = chain.check(record);
                let matched = detail.is_match();
                let by_matching = strongest_for(&strongest, record);
                if by_matching > record.matching && !chain.is_empty() {
                    // Digest agility: Postfix skips this record (RFC 7671 §9). It keeps
                    // its own match but authenticates nothing.
                    let detail = RecordDetail::Superseded {
                        by_matching,
                        matched,
                    };
                    (matched, false, detail)
                } else {
                    let authenticates = matches!(detail, RecordDetail::Matched { .. });
                    if let (None, RecordDetail::Matched { depth }) = (verified, &detail) {
                        verified = Some(Authentication::Verified {
                            record: index,
                            depth: *depth,
                        });
                    }
                    (matched, authenticates, detail)
                }
            }
        };
        checks.push(RecordCheck {
            record: record.clone(),
            matched,
            authenticates,
            detail,
        });
    }
    conclude(checks, verified, any_usable)
}

/// The evaluation from its record checks: the first authenticating record, else whether any
/// record was usable (RFC 7672 §2.2: usable but none authenticates is not "no usable records").
fn conclude(
    checks: Vec<RecordCheck>,
    verified: Option<Authentication>,
    any_usable: bool,
) -> DaneEvaluation {
    let authentication = match verified {
        Some(verified) => verified,
        None if any_usable => Authentication::NotAuthenticated,
        None => Authentication::NoUsableRecords,
    };
    DaneEvaluation {
        checks,
        authentication,
    }
}

/// Judges the TLSA RRset against a bare public key (a staged `public_key_file`): what a
/// DANE-enforcing sender would conclude once a certificate with this key is served. Only
/// DANE-EE records with selector 1 (`3 1 x`) can be decided from a key: their data is the
/// key itself or its digest, and RFC 7672 §3.1.1 checks neither names nor dates. Selector 0
/// covers the whole certificate and usage 2 a CA's chain: those records are
/// [`RecordDetail::KeyOnly`], neither matching nor authenticating. Digest agility
/// (RFC 7671 §9) applies as in [`evaluate`].
pub fn evaluate_key(records: &[Tlsa], spki: &[u8]) -> DaneEvaluation {
    let usability: Vec<Result<(), Unusable>> = records.iter().map(usability).collect();
    let strongest = strongest_digests(records, &usability);
    let mut any_usable = false;
    let mut verified = None;
    let mut checks = Vec::with_capacity(records.len());
    for (index, (record, usable)) in records.iter().zip(usability).enumerate() {
        let (matched, authenticates, detail) = match usable {
            Err(why) => (false, false, RecordDetail::Unusable(why)),
            Ok(()) => {
                any_usable = true;
                if record.usage != USAGE_DANE_EE || record.selector != SELECTOR_SPKI {
                    (false, false, RecordDetail::KeyOnly)
                } else {
                    let data: Vec<u8> = match record.matching {
                        MATCHING_SHA256 => Sha256::digest(spki).to_vec(),
                        MATCHING_SHA512 => Sha512::digest(spki).to_vec(),
                        _ => spki.to_vec(),
                    };
                    let matched = data == record.data;
                    let by_matching = strongest_for(&strongest, record);
                    if by_matching > record.matching {
                        let detail = RecordDetail::Superseded {
                            by_matching,
                            matched,
                        };
                        (matched, false, detail)
                    } else if matched {
                        if verified.is_none() {
                            verified = Some(Authentication::Verified {
                                record: index,
                                depth: 0,
                            });
                        }
                        (true, true, RecordDetail::Matched { depth: 0 })
                    } else {
                        let leaf_digest = hex::encode(data);
                        (false, false, RecordDetail::LeafMismatch { leaf_digest })
                    }
                }
            }
        };
        checks.push(RecordCheck {
            record: record.clone(),
            matched,
            authenticates,
            detail,
        });
    }
    conclude(checks, verified, any_usable)
}

/// Strongest digest matching type per (usage − 2, selector) among usable records;
/// 0 where the group has no digest record.
type Strongest = [[u8; 2]; 2];

/// RFC 7671 §9 as OpenSSL `dane_match`: within a usage+selector group only the
/// strongest digest type present is used; Full (0) is exempt.
fn strongest_digests(records: &[Tlsa], usability: &[Result<(), Unusable>]) -> Strongest {
    let mut strongest = [[0; 2]; 2];
    for (record, usable) in records.iter().zip(usability) {
        if usable.is_err() || record.matching == MATCHING_FULL {
            continue;
        }
        if let Some(slot) = group_mut(&mut strongest, record) {
            *slot = (*slot).max(record.matching);
        }
    }
    strongest
}

/// The matching type that decides whether `record` is used: its own when it is Full or
/// the strongest of its group.
fn strongest_for(strongest: &Strongest, record: &Tlsa) -> u8 {
    if record.matching == MATCHING_FULL {
        return MATCHING_FULL;
    }
    let usage = usize::from(record.usage.wrapping_sub(USAGE_DANE_TA));
    strongest
        .get(usage)
        .and_then(|row| row.get(usize::from(record.selector)))
        .copied()
        .unwrap_or(record.matching)
}

fn group_mut<'s>(strongest: &'s mut Strongest, record: &Tlsa) -> Option<&'s mut u8> {
    let usage = usize::from(record.usage.wrapping_sub(USAGE_DANE_TA));
    strongest
        .get_mut(usage)?
        .get_mut(usize::from(record.selector))
}

/// The served chain (parsed once by `ServedChain`) with digests computed at most once.
struct Chain<'s, 'a> {
    served: &'s ServedChain<'a>,
    names: &'s [&'s str],
    now: UnixTime,
    certs: Vec<Served<'a>>,
    /// Whether the leaf names one of `names`.
    leaf_named: OnceCell<bool>,
}

impl<'s, 'a> Chain<'s, 'a> {
    fn new(served: &'s ServedChain<'a>, names: &'s [&'s str], now: UnixTime) -> Self {
        Self {
            served,
            names,
            now,
            certs: served
                .ders()
                .iter()
                .enumerate()
                .map(|(depth, der)| Served::new(der, served.parts(depth)))
                .collect(),
            leaf_named: OnceCell::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// Judges one usable record, ignoring digest agility.
    fn check(&self, record: &Tlsa) -> RecordDetail {
        let Some(leaf) = self.certs.first() else {
            return RecordDetail::NoCertificate;
        };
        if record.usage == USAGE_DANE_EE {
            // RFC 7672 §3.1.1: the leaf only; no name or date checks.
            return match leaf.association(record.selector, record.matching) {
                Some(data) if data == record.data.as_slice() => RecordDetail::Matched { depth: 0 },
                Some(data) => RecordDetail::LeafMismatch {
                    leaf_digest: hex::encode(data),
                },
                None => RecordDetail::LeafMismatch {
                    leaf_digest: String::new(),
                },
            };
        }
        self.check_dane_ta(record)
    }

    /// RFC 7672 §3.1.2: the anchor is a served certificate at depth ≥ 1 (or, for full
    /// `2 0 0`/`2 1 0` data, the record itself), the path to it verifies with dates,
    /// and the leaf names a reference identifier.
    fn check_dane_ta(&self, record: &Tlsa) -> RecordDetail {
        let leaf = self
            .served
            .ders()
            .first()
            .map_or(&[][..], |der| der.as_ref());
        let mut failure = None;
        for (depth, served) in self.certs.iter().enumerate().skip(1) {
            // The leaf served again higher up is still the leaf, never an anchor.
            if served.der == leaf || !served.matches(record) {
                continue;
            }
            let detail = self.verify_served_anchor(depth, served);
            if matches!(detail, RecordDetail::Matched { .. }) {
                return detail;
            }
            // Keep the failure that got furthest: a name mismatch over a broken chain.
            let is_name = |d: &RecordDetail| matches!(d, RecordDetail::NameMismatch { .. });
            if failure.is_none() || (is_name(&detail) && !failure.as_ref().is_some_and(is_name)) {
                failure = Some(detail);
            }
        }
        match failure {
            Some(detail) => detail,
            None if record.matching == MATCHING_FULL => self.verify_record_anchor(record),
            None => RecordDetail::AnchorNotServed,
        }
    }

    fn verify_served_anchor(&self, depth: usize, served: &Served<'a>) -> RecordDetail {
        let chain = self.served.ders();
        let invalid = |reason| RecordDetail::AnchorChainInvalid { depth, reason };
        let (Some(parts), Some(anchor_der), Some(_)) =
            (served.parts(), chain.get(depth), chain.first())
        else {
            return invalid("malformed");
        };
        if let Err(reason) = parts.check_validity(self.now) {
            return invalid(reason);
        }
        let anchor = match webpki::anchor_from_trusted_cert(anchor_der) {
            Ok(anchor) => anchor,
            Err(e) => return invalid(cert::PkixError::from(e).reason()),
        };
        let intermediates: Vec<CertificateDer<'_>> = chain
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(i, _)| *i != depth)
            .map(|(_, der)| CertificateDer::from(der.as_ref()))
            .collect();
        match self
            .served
            .verify_from_leaf(&intermediates, &[anchor], self.now)
        {
            Ok(_) => self.check_leaf_name(depth),
            Err(e) => invalid(e.reason()),
        }
    }

    /// Full `2 0 0` / `2 1 0` data not served: the record itself is the anchor (RFC 7671
    /// §5.2.3). A bare key may sign under any issuer name the served certificates carry.
    fn verify_record_anchor(&self, record: &Tlsa) -> RecordDetail {
        let chain = self.served.ders();
        let Some((leaf, intermediates)) = chain.split_first() else {
            return RecordDetail::NoCertificate;
        };
        // The leaf's own certificate or key is never a DANE-TA anchor (RFC 7672 §3.1.2).
        let leaf_data = match record.selector {
            SELECTOR_CERT => Some(leaf.as_ref()),
            _ => self.certs.first().and_then(Served::parts).map(|p| p.spki),
        };
        if leaf_data == Some(record.data.as_slice()) {
            return RecordDetail::AnchorNotServed;
        }
        let record_der = CertificateDer::from(record.data.as_slice());
        let mut anchors = Vec::new();
        if record.selector == SELECTOR_CERT {
            anchors.extend(webpki::anchor_from_trusted_cert(&record_der).ok());
        } else {
            let mut issuers: Vec<&[u8]> = Vec::with_capacity(self.certs.len());
            for parts in self.certs.iter().rev().filter_map(Served::parts) {
                if !issuers.contains(&parts.issuer) {
                    issuers.push(parts.issuer);
                }
            }
            anchors.extend(
                issuers
                    .into_iter()
                    .filter_map(|issuer| cert::trust_anchor_from_spki(issuer, &record.data)),
            );
        }
        match self
            .served
            .verify_from_leaf(intermediates, &anchors, self.now)
        {
            Ok(depth) => {
                if record.selector == SELECTOR_CERT {
                    let dates = cert::parts(&record.data)
                        .map_or(Err("malformed"), |p| p.check_validity(self.now));
                    if let Err(reason) = dates {
                        return RecordDetail::AnchorChainInvalid { depth, reason };
                    }
                }
                self.check_leaf_name(depth)
            }
            // RFC 7671 §5.2.3: the record still matches when its key signs a served
            // certificate; the path from it then failed for another reason (dates, say).
            Err(e) => match self.signed_by_record(record) {
                Some(depth) => RecordDetail::AnchorChainInvalid {
                    depth,
                    reason: e.reason(),
                },
                None => RecordDetail::AnchorNotServed,
            },
        }
    }

    /// Full `2 x 0` data not served: the depth the record's key would take as the anchor,
    /// i.e. one above the first served certificate (top of the chain first) whose
    /// signature it made. Signatures only: no names, dates or path (RFC 7671 §5.2.3
    /// "matches"). The caller has excluded the leaf's own certificate or key.
    fn signed_by_record(&self, record: &Tlsa) -> Option<usize> {
        let (key, subject) = match record.selector {
            SELECTOR_CERT => {
                let parts = cert::parts(&record.data)?;
                (parts.spki, Some(parts.subject))
            }
            _ => (record.data.as_slice(), None),
        };
        self.certs
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, served)| {
                // A certificate anchor signs only under its own name.
                subject.is_none_or(|subject| served.parts().is_some_and(|p| p.issuer == subject))
            })
            .find(|(depth, _)| self.served.key_signs(key, *depth))
            .map(|(depth, _)| depth + 1)
    }

    /// RFC 7672 §3.2.2: after a DANE-TA anchor verifies, the leaf must name a
    /// reference identifier.
    fn check_leaf_name(&self, depth: usize) -> RecordDetail {
        let named = *self
            .leaf_named
            .get_or_init(|| self.names.iter().any(|name| self.served.leaf_names(name)));
        if named {
            RecordDetail::Matched { depth }
        } else {
            RecordDetail::NameMismatch {
                depth,
                names_in_cert: self.served.leaf_presented_names(),
            }
        }
    }
}

/// One served certificate; digests are computed on first use.
struct Served<'a> {
    der: &'a [u8],
    /// `None` when the certificate does not parse.
    parts: Option<cert::CertParts<'a>>,
    /// Indexed by selector.
    sha256: [OnceCell<[u8; 32]>; 2],
    sha512: [OnceCell<[u8; 64]>; 2],
}

impl<'a> Served<'a> {
    fn new(der: &'a CertificateDer<'a>, parts: Option<cert::CertParts<'a>>) -> Self {
        Self {
            der: der.as_ref(),
            parts,
            sha256: Default::default(),
            sha512: Default::default(),
        }
    }

    /// `None` when the certificate does not parse: it then matches nothing.
    fn parts(&self) -> Option<&cert::CertParts<'a>> {
        self.parts.as_ref()
    }

    /// The certificate association data this certificate has for a selector and
    /// matching type (RFC 6698 §2.1.2, §2.1.3).
    fn association(&self, selector: u8, matching: u8) -> Option<&[u8]> {
        let parts = self.parts()?;
        let selected = match selector {
            SELECTOR_CERT => self.der,
            SELECTOR_SPKI => parts.spki,
            _ => return None,
        };
        let slot = usize::from(selector);
        match matching {
            MATCHING_FULL => Some(selected),
            MATCHING_SHA256 => Some(
                self.sha256
                    .get(slot)?
                    .get_or_init(|| Sha256::digest(selected).into()),
            ),
            MATCHING_SHA512 => Some(
                self.sha512
                    .get(slot)?
                    .get_or_init(|| Sha512::digest(selected).into()),
            ),
            _ => None,
        }
    }

    fn matches(&self, record: &Tlsa) -> bool {
        self.association(record.selector, record.matching) == Some(record.data.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use std::sync::OnceLock;
    use std::time::Duration;

    const MX: &str = "mx1.example.test";

    /// 2026-06-01T00:00:00Z.
    fn now() -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(1_780_272_000))
    }

    struct Ca {
        der: CertificateDer<'static>,
        params: CertificateParams,
        key: KeyPair,
    }

    impl Ca {
        fn issuer(&self) -> Issuer<'_, &KeyPair> {
            Issuer::from_params(&self.params, &self.key)
        }
    }

    /// Test PKI: two roots, an intermediate, an expired intermediate, leaves.
    struct Pki {
        root: Ca,
        int: Ca,
        /// Same subject name as `int`, different key.
        fake_int: Ca,
        expired_int: Ca,
        root2: Ca,
        leaf: CertificateDer<'static>,
        /// New certificate, same key as `leaf`.
        renewed_leaf: CertificateDer<'static>,
        expired_leaf: CertificateDer<'static>,
        other_name_leaf: CertificateDer<'static>,
        wildcard_leaf: CertificateDer<'static>,
        self_signed_leaf: CertificateDer<'static>,
        leaf_under_expired_int: CertificateDer<'static>,
        leaf_under_root2: CertificateDer<'static>,
    }

    fn make_ca(cn: &str, parent: Option<&Ca>, expired: bool) -> Ca {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        if expired {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = match parent {
            Some(p) => params.signed_by(&key, &p.issuer()).expect("sign"),
            None => params.self_signed(&key).expect("self-sign"),
        };
        Ca {
            der: cert.der().clone(),
            params,
            key,
        }
    }

    fn make_leaf(
        sans: &[&str],
        key: &KeyPair,
        issuer: Option<&Ca>,
        expired: bool,
    ) -> CertificateDer<'static> {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "leaf");
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = match issuer {
            Some(ca) => params.signed_by(key, &ca.issuer()).expect("sign"),
            None => params.self_signed(key).expect("self-sign"),
        };
        cert.der().clone()
    }

    fn pki() -> &'static Pki {
        static PKI: OnceLock<Pki> = OnceLock::new();
        PKI.get_or_init(|| {
            let root = make_ca("Test Root", None, false);
            let int = make_ca("Test Intermediate", Some(&root), false);
            let fake_int = make_ca("Test Intermediate", Some(&root), false);
            let expired_int = make_ca("Expired Intermediate", Some(&root), true);
            let root2 = make_ca("Second Root", None, false);
            let key = KeyPair::generate().expect("key");
            let fresh = || KeyPair::generate().expect("key");
            Pki {
                leaf: make_leaf(&[MX], &key, Some(&int), false),
                renewed_leaf: make_leaf(&[MX, "mx.example.test"], &key, Some(&int), false),
                expired_leaf: make_leaf(&[MX], &fresh(), Some(&int), true),
                other_name_leaf: make_leaf(&["other.example.net"], &fresh(), Some(&int), false),
                wildcard_leaf: make_leaf(&["*.example.test"], &fresh(), Some(&int), false),
                self_signed_leaf: make_leaf(&[MX], &fresh(), None, false),
                leaf_under_expired_int: make_leaf(&[MX], &fresh(), Some(&expired_int), false),
                leaf_under_root2: make_leaf(&[MX], &fresh(), Some(&root2), false),
                root,
                int,
                fake_int,
                expired_int,
                root2,
            }
        })
    }

    /// Certificate association data of `der` for a selector and matching type.
    fn assoc(der: &[u8], selector: u8, matching: u8) -> Vec<u8> {
        let selected = match selector {
            SELECTOR_CERT => der,
            _ => cert::parts(der).expect("parts").spki,
        };
        match matching {
            MATCHING_FULL => selected.to_vec(),
            MATCHING_SHA256 => Sha256::digest(selected).to_vec(),
            _ => Sha512::digest(selected).to_vec(),
        }
    }

    fn rec(usage: u8, selector: u8, matching: u8, der: &[u8]) -> Tlsa {
        Tlsa {
            usage,
            selector,
            matching,
            data: assoc(der, selector, matching),
        }
    }

    /// A well-formed digest record that matches nothing.
    fn stale(usage: u8, selector: u8, matching: u8) -> Tlsa {
        let len = if matching == MATCHING_SHA512 { 64 } else { 32 };
        Tlsa {
            usage,
            selector,
            matching,
            data: vec![0x5a; len],
        }
    }

    fn eval_names(
        records: &[Tlsa],
        chain: &[CertificateDer<'_>],
        names: &[&str],
    ) -> DaneEvaluation {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        evaluate(&DaneInput {
            records,
            chain,
            names: &names,
            now: now(),
        })
    }

    fn eval(records: &[Tlsa], chain: &[CertificateDer<'_>]) -> DaneEvaluation {
        eval_names(records, chain, &["example.test", MX, "example.test"])
    }

    fn full_chain() -> Vec<CertificateDer<'static>> {
        let p = pki();
        vec![p.leaf.clone(), p.int.der.clone(), p.root.der.clone()]
    }

    // RFC 6698 §2.2: presentation format.
    #[test]
    fn presentation_is_fields_then_lower_case_hex() {
        let r = Tlsa {
            usage: 3,
            selector: 1,
            matching: 1,
            data: vec![0x5f, 0x0e, 0xAB],
        };
        assert_eq!(r.presentation(), "3 1 1 5f0eab");
        assert_eq!(r.to_string(), r.presentation());
    }

    // RFC 7672 §3.1: usages 2 and 3, selectors 0 and 1, matching types 0, 1, 2.
    #[test]
    fn usable_records_are_dane_usages_selectors_and_matching_types() {
        let p = pki();
        for usage in [USAGE_DANE_TA, USAGE_DANE_EE] {
            for selector in [SELECTOR_CERT, SELECTOR_SPKI] {
                for matching in [MATCHING_FULL, MATCHING_SHA256, MATCHING_SHA512] {
                    let r = rec(usage, selector, matching, &p.int.der);
                    assert_eq!(usability(&r), Ok(()), "{usage} {selector} {matching}");
                }
            }
        }
    }

    // RFC 7672 §3.1.3: PKIX-TA(0) and PKIX-EE(1) are unusable for SMTP.
    #[test]
    fn pkix_usages_are_unusable() {
        let p = pki();
        let records = [rec(0, 1, 1, &p.root.der), rec(1, 1, 1, &p.leaf)];
        assert_eq!(usability(&records[0]), Err(Unusable::PkixUsage(0)));
        assert_eq!(usability(&records[1]), Err(Unusable::PkixUsage(1)));
        let e = eval(&records, &full_chain());
        assert_eq!(e.authentication, Authentication::NoUsableRecords);
        assert!(e.checks.iter().all(|c| !c.matched));
        assert_eq!(
            e.checks[1].explain(),
            format!(
                "1 1 1 {}… is unusable: usage 1 (PKIX-TA/PKIX-EE) is not used for SMTP (RFC 7672 §3.1.3)",
                hex::encode(&records[1].data[..6])
            )
        );
    }

    // RFC 6698 §2.1: unknown field values are unusable.
    #[test]
    fn unknown_usage_selector_and_matching_are_unusable() {
        let d = vec![0; 32];
        let t = |usage, selector, matching| Tlsa {
            usage,
            selector,
            matching,
            data: d.clone(),
        };
        assert_eq!(usability(&t(4, 1, 1)), Err(Unusable::UnknownUsage(4)));
        assert_eq!(usability(&t(255, 1, 1)), Err(Unusable::UnknownUsage(255)));
        assert_eq!(usability(&t(3, 2, 1)), Err(Unusable::UnknownSelector(2)));
        assert_eq!(usability(&t(3, 1, 3)), Err(Unusable::UnknownMatching(3)));
        assert_eq!(
            usability(&t(2, 0, 255)),
            Err(Unusable::UnknownMatching(255))
        );
        assert_eq!(
            usability(&t(3, 1, 3)).map_err(|u| u.reason()),
            Err("unknown_matching")
        );
    }

    // RFC 7672 §3.1: a digest of the wrong length is a malformed, unusable record.
    #[test]
    fn wrong_digest_length_is_unusable() {
        let t = |matching, len| Tlsa {
            usage: 3,
            selector: 1,
            matching,
            data: vec![1; len],
        };
        for (matching, len, expected) in [
            (1, 31, 32),
            (1, 33, 32),
            (1, 64, 32),
            (2, 32, 64),
            (2, 63, 64),
        ] {
            assert_eq!(
                usability(&t(matching, len)),
                Err(Unusable::DigestLength {
                    matching,
                    expected,
                    got: len
                })
            );
        }
        let e = eval(&[t(1, 31)], &full_chain());
        assert_eq!(e.authentication, Authentication::NoUsableRecords);
    }

    // RFC 6698 §2.1.4: association data may not be empty.
    #[test]
    fn empty_data_is_unusable() {
        for matching in 0..=2 {
            let r = Tlsa {
                usage: 2,
                selector: 0,
                matching,
                data: Vec::new(),
            };
            assert_eq!(usability(&r), Err(Unusable::EmptyData));
            assert_eq!(r.presentation(), format!("2 0 {matching}"));
        }
    }

    // RFC 6698 §2.1.3: full data must be a certificate (selector 0) or an SPKI (1).
    #[test]
    fn full_data_that_does_not_parse_is_malformed() {
        let p = pki();
        let garbage = |selector| Tlsa {
            usage: 3,
            selector,
            matching: 0,
            data: b"not DER".to_vec(),
        };
        assert_eq!(usability(&garbage(0)), Err(Unusable::Malformed));
        assert_eq!(usability(&garbage(1)), Err(Unusable::Malformed));
        let cert_as_spki = Tlsa {
            usage: 3,
            selector: 1,
            matching: 0,
            data: p.leaf.to_vec(),
        };
        assert_eq!(usability(&cert_as_spki), Err(Unusable::Malformed));
    }

    // RFC 7672 §3.1.1: DANE-EE matches the leaf under every selector and matching type.
    #[test]
    fn dane_ee_matches_leaf_with_every_selector_and_matching_type() {
        let p = pki();
        for selector in [SELECTOR_CERT, SELECTOR_SPKI] {
            for matching in [MATCHING_FULL, MATCHING_SHA256, MATCHING_SHA512] {
                let e = eval(&[rec(3, selector, matching, &p.leaf)], &full_chain());
                assert_eq!(
                    e.authentication,
                    Authentication::Verified {
                        record: 0,
                        depth: 0
                    },
                    "3 {selector} {matching}"
                );
                assert!(e.checks[0].matched);
                assert_eq!(e.checks[0].detail, RecordDetail::Matched { depth: 0 });
            }
        }
    }

    // RFC 7672 §3.1.2: DANE-TA matches a served CA under every selector and matching type.
    #[test]
    fn dane_ta_matches_served_ca_with_every_selector_and_matching_type() {
        let p = pki();
        for selector in [SELECTOR_CERT, SELECTOR_SPKI] {
            for matching in [MATCHING_FULL, MATCHING_SHA256, MATCHING_SHA512] {
                for (depth, ca) in [(1, &p.int), (2, &p.root)] {
                    let e = eval(&[rec(2, selector, matching, &ca.der)], &full_chain());
                    assert_eq!(
                        e.authentication,
                        Authentication::Verified { record: 0, depth },
                        "2 {selector} {matching} at depth {depth}"
                    );
                    assert!(e.checks[0].matched);
                }
            }
        }
    }

    // RFC 7672 §3.1.1: no name or expiry checks for DANE-EE, self-signed is fine.
    #[test]
    fn dane_ee_ignores_expiry_names_and_issuer() {
        let p = pki();
        for leaf in [&p.expired_leaf, &p.other_name_leaf, &p.self_signed_leaf] {
            let e = eval_names(
                &[rec(3, 1, 1, leaf)],
                std::slice::from_ref(leaf),
                &["nowhere.test"],
            );
            assert_eq!(
                e.authentication,
                Authentication::Verified {
                    record: 0,
                    depth: 0
                }
            );
        }
    }

    // RFC 7672 §3.1.1: DANE-EE looks at depth 0 only.
    #[test]
    fn dane_ee_never_matches_an_intermediate() {
        let p = pki();
        let r = rec(3, 1, 1, &p.int.der);
        let e = eval(std::slice::from_ref(&r), &full_chain());
        assert_eq!(e.authentication, Authentication::NotAuthenticated);
        assert!(!e.checks[0].matched);
        let leaf_digest = hex::encode(assoc(&p.leaf, 1, 1));
        assert_eq!(
            e.checks[0].detail,
            RecordDetail::LeafMismatch {
                leaf_digest: leaf_digest.clone()
            }
        );
        assert_eq!(
            e.checks[0].explain(),
            format!(
                "3 1 1 {}… does not match the leaf key (leaf key SHA-256 {}…)",
                hex::encode(&r.data[..6]),
                &leaf_digest[..12]
            )
        );
    }

    // RFC 7672 §3.1.2: a DANE-TA record naming the leaf itself is no match.
    #[test]
    fn dane_ta_never_matches_the_leaf() {
        let p = pki();
        for selector in [SELECTOR_CERT, SELECTOR_SPKI] {
            for matching in [MATCHING_FULL, MATCHING_SHA256, MATCHING_SHA512] {
                let e = eval(&[rec(2, selector, matching, &p.leaf)], &full_chain());
                assert_eq!(e.authentication, Authentication::NotAuthenticated);
                assert_eq!(e.checks[0].detail, RecordDetail::AnchorNotServed);
                // Not even a self-signed leaf, nor one served twice.
                let ss = &p.self_signed_leaf;
                let twice = [ss.clone(), ss.clone()];
                let e = eval(&[rec(2, selector, matching, ss)], &twice);
                assert_eq!(
                    e.authentication,
                    Authentication::NotAuthenticated,
                    "2 {selector} {matching}"
                );
            }
        }
    }

    // RFC 7672 §3.1.2: the server must send the anchor named by a digest record.
    #[test]
    fn dane_ta_digest_of_unserved_ca_fails() {
        let p = pki();
        let chain = [p.leaf.clone()];
        for selector in [SELECTOR_CERT, SELECTOR_SPKI] {
            for matching in [MATCHING_SHA256, MATCHING_SHA512] {
                let r = rec(2, selector, matching, &p.int.der);
                let e = eval(std::slice::from_ref(&r), &chain);
                assert_eq!(e.authentication, Authentication::NotAuthenticated);
                assert_eq!(e.checks[0].detail, RecordDetail::AnchorNotServed);
                assert!(e.checks[0]
                    .explain()
                    .ends_with("names a CA the server did not send"));
            }
        }
        // Root not served either: a digest of the root does not help.
        let e = eval(&[rec(2, 1, 1, &p.root.der)], &full_chain()[..2]);
        assert_eq!(e.authentication, Authentication::NotAuthenticated);
    }

    // RFC 7671 §5.2.3: full `2 1 0` / `2 0 0` data is itself the anchor.
    #[test]
    fn dane_ta_full_record_needs_no_served_anchor() {
        let p = pki();
        for selector in [SELECTOR_CERT, SELECTOR_SPKI] {
            let e = eval(
                &[rec(2, selector, 0, &p.int.der)],
                std::slice::from_ref(&p.leaf),
            );
            assert_eq!(
                e.authentication,
                Authentication::Verified {
                    record: 0,
                    depth: 1
                },
                "2 {selector} 0"
            );
            let e = eval(&[rec(2, selector, 0, &p.root.der)], &full_chain()[..2]);
            assert_eq!(
                e.authentication,
                Authentication::Verified {
                    record: 0,
                    depth: 2
                },
                "2 {selector} 0"
            );
        }
    }

    #[test]
    fn dane_ta_full_key_that_signs_nothing_served_fails() {
        let p = pki();
        let r = rec(2, 1, 0, &p.root2.der);
        let e = eval(std::slice::from_ref(&r), &full_chain());
        assert_eq!(e.checks[0].detail, RecordDetail::AnchorNotServed);
        assert_eq!(e.authentication, Authentication::NotAuthenticated);
        assert!(e.checks[0]
            .explain()
            .ends_with("holds a trust anchor key that signs none of the served certificates"));
        // Same subject name, other key: a signature failure, still no anchor.
        let e = eval(
            &[rec(2, 1, 0, &p.fake_int.der)],
            std::slice::from_ref(&p.leaf),
        );
        assert_eq!(e.authentication, Authentication::NotAuthenticated);
        assert_eq!(e.checks[0].detail, RecordDetail::AnchorNotServed);
        // A full certificate of the same name but another key signed nothing served: it
        // does not match (RFC 7671 §5.2.3), whatever the path builder said.
        let e = eval(
            &[rec(2, 0, 0, &p.fake_int.der)],
            std::slice::from_ref(&p.leaf),
        );
        assert_eq!(e.checks[0].detail, RecordDetail::AnchorNotServed);
        assert!(!e.checks[0].matched && !e.checks[0].authenticates);
    }

    // A second CA: its records do not authenticate the first CA's chain and back.
    #[test]
    fn dane_ta_of_another_ca_does_not_match() {
        let p = pki();
        let e = eval(&[rec(2, 1, 1, &p.root2.der)], &full_chain());
        assert_eq!(e.checks[0].detail, RecordDetail::AnchorNotServed);
        let chain = [p.leaf_under_root2.clone(), p.root2.der.clone()];
        let e = eval(
            &[rec(2, 1, 1, &p.root.der), rec(2, 1, 1, &p.root2.der)],
            &chain,
        );
        assert_eq!(
            e.authentication,
            Authentication::Verified {
                record: 1,
                depth: 1
            }
        );
        assert!(!e.checks[0].matched);
    }

    // RFC 7672 §3.2.2: after DANE-TA the leaf must carry a reference name.
    #[test]
    fn dane_ta_needs_leaf_name_match() {
        let p = pki();
        let chain = [p.other_name_leaf.clone(), p.int.der.clone()];
        let r = rec(2, 1, 1, &p.int.der);
        let e = eval(std::slice::from_ref(&r), &chain);
        assert_eq!(e.authentication, Authentication::NotAuthenticated);
        // RFC 7671 §5.2: the record still matches the served CA; it does not authenticate.
        assert!(e.checks[0].matched);
        assert!(!e.checks[0].authenticates);
        assert_eq!(
            e.checks[0].detail,
            RecordDetail::NameMismatch {
                depth: 1,
                names_in_cert: vec!["other.example.net".to_owned()]
            }
        );
        assert!(e.checks[0].explain().ends_with(
            "matches the trust anchor key at depth 1, but does not authenticate: the leaf names none of the reference names (leaf names: other.example.net)"
        ));
        // No reference names at all: nothing to match.
        let e = eval_names(&[r], &full_chain(), &[]);
        assert_eq!(e.authentication, Authentication::NotAuthenticated);
    }

    // RFC 7672 §3.2.2: TLSA base domain, MX host name or next-hop domain all count.
    #[test]
    fn dane_ta_accepts_any_reference_name() {
        let r = [rec(2, 1, 1, &pki().int.der)];
        for names in [
            &[MX][..],
            &["tlsa-base.test", MX],
            &["a.test", "b.test", MX],
        ] {
            let e = eval_names(&r, &full_chain(), names);
            assert_eq!(
                e.authentication,
                Authentication::Verified {
                    record: 0,
                    depth: 1
                }
            );
        }
        let e = eval_names(&r, &full_chain(), &["mx2.example.test", "example.test"]);
        assert_eq!(e.authentication, Authentication::NotAuthenticated);
    }

    // RFC 6125 §6.4.3, RFC 7672 §3.2.3: wildcard only as the whole left-most label.
    #[test]
    fn dane_ta_wildcard_matches_left_most_label_only() {
        let p = pki();
        let chain = [p.wildcard_leaf.clone(), p.int.der.clone()];
        let r = [rec(2, 1, 1, &p.int.der)];
        let verdict = |name| eval_names(&r, &chain, &[name]).authentication;
        assert_eq!(
            verdict("mx1.example.test"),
            Authentication::Verified {
                record: 0,
                depth: 1
            }
        );
        assert_eq!(
            verdict("a.b.example.test"),
            Authentication::NotAuthenticated
        );
        assert_eq!(verdict("example.test"), Authentication::NotAuthenticated);
    }

    // RFC 7672 §3.1.2: every certificate up to the anchor must be within its dates.
    #[test]
    fn dane_ta_expired_intermediate_fails() {
        let p = pki();
        let chain = [
            p.leaf_under_expired_int.clone(),
            p.expired_int.der.clone(),
            p.root.der.clone(),
        ];
        let e = eval(&[rec(2, 1, 1, &p.root.der)], &chain);
        assert_eq!(e.authentication, Authentication::NotAuthenticated);
        assert_eq!(
            e.checks[0].detail,
            RecordDetail::AnchorChainInvalid {
                depth: 2,
                reason: "expired"
            }
        );
        assert!(e.checks[0]
            .explain()
            .ends_with("but does not authenticate: the chain to it does not verify (expired)"));
        // The expired certificate as the anchor itself fails as well.
        let e = eval(&[rec(2, 1, 1, &p.expired_int.der)], &chain);
        assert_eq!(
            e.checks[0].detail,
            RecordDetail::AnchorChainInvalid {
                depth: 1,
                reason: "expired"
            }
        );
        // DANE-EE on the same chain does not care.
        let e = eval(&[rec(3, 1, 1, &chain[0])], &chain);
        assert_eq!(
            e.authentication,
            Authentication::Verified {
                record: 0,
                depth: 0
            }
        );
    }

    #[test]
    fn dane_ta_expired_leaf_fails() {
        let p = pki();
        let chain = [p.expired_leaf.clone(), p.int.der.clone()];
        let e = eval(&[rec(2, 1, 1, &p.int.der)], &chain);
        assert_eq!(
            e.checks[0].detail,
            RecordDetail::AnchorChainInvalid {
                depth: 1,
                reason: "expired"
            }
        );
    }

    // RFC 7672 §3.1.2: the path to the anchor must verify cryptographically.
    #[test]
    fn dane_ta_anchor_that_did_not_sign_the_chain_fails() {
        let p = pki();
        // The server sends a CA with the right name but another key.
        let chain = [p.leaf.clone(), p.fake_int.der.clone()];
        let e = eval(&[rec(2, 1, 1, &p.fake_int.der)], &chain);
        assert_eq!(
            e.checks[0].detail,
            RecordDetail::AnchorChainInvalid {
                depth: 1,
                reason: "bad_signature"
            }
        );
        assert_eq!(e.authentication, Authentication::NotAuthenticated);
    }

    // RFC 7671 §9: a stale `3 1 2` hides a matching `3 1 1`.
    #[test]
    fn digest_agility_stale_sha512_hides_matching_sha256() {
        let p = pki();
        let records = [rec(3, 1, 1, &p.leaf), stale(3, 1, 2)];
        let e = eval(&records, &full_chain());
        assert_eq!(e.authentication, Authentication::NotAuthenticated);
        assert!(e.checks[0].matched);
        assert_eq!(
            e.checks[0].detail,
            RecordDetail::Superseded {
                by_matching: 2,
                matched: true
            }
        );
        assert!(!e.checks[1].matched);
        assert!(matches!(
            e.checks[1].detail,
            RecordDetail::LeafMismatch { .. }
        ));
        assert_eq!(
            e.checks[0].explain(),
            format!(
                "3 1 1 {}… matches, but does not authenticate: a stronger 3 1 2 record outranks it (digest agility, RFC 7671 §9), so Postfix ignores it",
                hex::encode(&records[0].data[..6])
            )
        );
        // Once the SHA-512 record is right too, it verifies (through the 3 1 2 record).
        let e = eval(
            &[rec(3, 1, 1, &p.leaf), rec(3, 1, 2, &p.leaf)],
            &full_chain(),
        );
        assert_eq!(
            e.authentication,
            Authentication::Verified {
                record: 1,
                depth: 0
            }
        );
    }

    // RFC 7671 §9 as OpenSSL: matching type 0 (Full) is never hidden.
    #[test]
    fn digest_agility_never_hides_full_records() {
        let p = pki();
        let e = eval(&[rec(3, 1, 0, &p.leaf), stale(3, 1, 2)], &full_chain());
        assert_eq!(
            e.authentication,
            Authentication::Verified {
                record: 0,
                depth: 0
            }
        );
        assert_eq!(e.checks[0].detail, RecordDetail::Matched { depth: 0 });
        let e = eval(&[rec(2, 1, 0, &p.int.der), stale(2, 1, 2)], &full_chain());
        assert_eq!(
            e.authentication,
            Authentication::Verified {
                record: 0,
                depth: 1
            }
        );
    }

    // RFC 7671 §9: agility is per usage and selector, among usable records.
    #[test]
    fn digest_agility_is_per_usage_and_selector() {
        let p = pki();
        let records = [
            rec(3, 1, 1, &p.leaf),
            stale(3, 0, 2),
            stale(2, 1, 2),
            Tlsa {
                usage: 3,
                selector: 1,
                matching: 2,
                data: vec![0; 32],
            },
            stale(1, 1, 2),
        ];
        let e = eval(&records, &full_chain());
        assert_eq!(
            e.authentication,
            Authentication::Verified {
                record: 0,
                depth: 0
            }
        );
        assert_eq!(e.checks[0].detail, RecordDetail::Matched { depth: 0 });
    }

    // NCSC-NL two-record practice: `3 1 1` + `2 1 1`, either one alone keeps mail flowing.
    #[test]
    fn two_record_set_survives_one_stale_record() {
        let p = pki();
        let records = [stale(3, 1, 1), rec(2, 1, 1, &p.int.der)];
        let e = eval(&records, &full_chain());
        assert_eq!(
            e.authentication,
            Authentication::Verified {
                record: 1,
                depth: 1
            }
        );
        assert_eq!((e.checks[0].matched, e.checks[1].matched), (false, true));

        let records = [rec(3, 1, 1, &p.leaf), stale(2, 1, 1)];
        let e = eval(&records, &full_chain());
        assert_eq!(
            e.authentication,
            Authentication::Verified {
                record: 0,
                depth: 0
            }
        );
        assert_eq!(e.checks[1].detail, RecordDetail::AnchorNotServed);
        assert!(!e.checks[1].matched);
    }

    // Rollover with the same key: `3 1 1` survives a renewal, `3 0 1` does not.
    #[test]
    fn renewal_with_same_key_keeps_spki_records() {
        let p = pki();
        let records = [rec(3, 0, 1, &p.leaf), rec(3, 1, 1, &p.leaf)];
        let e = eval(&records, &[p.renewed_leaf.clone(), p.int.der.clone()]);
        assert_eq!(
            e.authentication,
            Authentication::Verified {
                record: 1,
                depth: 0
            }
        );
        assert!(!e.checks[0].matched);
        assert!(e.checks[0]
            .explain()
            .contains("does not match the leaf certificate (leaf certificate SHA-256 "));
    }

    #[test]
    fn verdict_reports_first_used_matching_record() {
        let p = pki();
        let records = [
            stale(3, 1, 1),
            rec(2, 1, 1, &p.root.der),
            rec(3, 1, 1, &p.leaf),
        ];
        let e = eval(&records, &full_chain());
        assert_eq!(
            e.authentication,
            Authentication::Verified {
                record: 1,
                depth: 2
            }
        );
        assert_eq!(e.checks.len(), 3);
        assert_eq!(e.checks[2].record, records[2]);
    }

    // No certificate: usable records cannot match; the verdict is not authenticated.
    #[test]
    fn empty_chain_checks_nothing() {
        let p = pki();
        let records = [rec(3, 1, 1, &p.leaf), stale(3, 1, 2), rec(0, 1, 1, &p.leaf)];
        let e = eval(&records, &[]);
        assert_eq!(e.authentication, Authentication::NotAuthenticated);
        assert_eq!(e.checks[0].detail, RecordDetail::NoCertificate);
        assert_eq!(e.checks[1].detail, RecordDetail::NoCertificate);
        assert!(matches!(
            e.checks[2].detail,
            RecordDetail::Unusable(Unusable::PkixUsage(0))
        ));
        assert!(e.checks[0]
            .explain()
            .ends_with("cannot be checked: the server sent no certificate"));
        let e = eval(&records[2..], &[]);
        assert_eq!(e.authentication, Authentication::NoUsableRecords);
        let e = eval(&[], &full_chain());
        assert_eq!(e.authentication, Authentication::NoUsableRecords);
    }

    // A leaf that does not parse matches nothing (the TLS client would reject it).
    #[test]
    fn unparsable_leaf_matches_nothing() {
        let garbage = CertificateDer::from(b"garbage".to_vec());
        let r = Tlsa {
            usage: 3,
            selector: 0,
            matching: 1,
            data: Sha256::digest(b"garbage").to_vec(),
        };
        let e = eval(std::slice::from_ref(&r), &[garbage]);
        assert_eq!(e.authentication, Authentication::NotAuthenticated);
        assert_eq!(
            e.checks[0].explain(),
            format!(
                "3 0 1 {}… does not match: the leaf certificate does not parse",
                hex::encode(&r.data[..6])
            )
        );
    }

    #[test]
    fn explanations_name_the_case() {
        let p = pki();
        let records = [
            rec(3, 1, 1, &p.leaf),
            rec(2, 0, 1, &p.int.der),
            Tlsa {
                usage: 3,
                selector: 1,
                matching: 1,
                data: vec![0xab; 4],
            },
        ];
        let e = eval(&records, &full_chain());
        let short = |r: &Tlsa| hex::encode(&r.data[..6]);
        assert_eq!(
            e.checks[0].explain(),
            format!("3 1 1 {}… matches the leaf key", short(&records[0]))
        );
        assert_eq!(
            e.checks[1].explain(),
            format!(
                "2 0 1 {}… matches the trust anchor certificate at depth 1; the chain to it and the leaf name verify",
                short(&records[1])
            )
        );
        assert_eq!(
            e.checks[2].explain(),
            "3 1 1 abababab is unusable: matching type 1 needs a 32-byte digest, the record has 4 bytes"
        );
    }

    /// (matched, authenticates) of each record.
    fn facts(e: &DaneEvaluation) -> Vec<(bool, bool)> {
        e.checks
            .iter()
            .map(|c| (c.matched, c.authenticates))
            .collect()
    }

    // RFC 7671 §5.2 (matching) vs RFC 7672 §3.1.2 (authentication): a `2 1 1` of the
    // served CA matches an expired leaf, but the path fails on dates.
    #[test]
    fn dane_ta_digest_matches_but_does_not_authenticate_an_expired_leaf() {
        let p = pki();
        let chain = [p.expired_leaf.clone(), p.int.der.clone()];
        let e = eval(&[rec(2, 1, 1, &p.int.der)], &chain);
        assert_eq!(e.authentication, Authentication::NotAuthenticated);
        assert_eq!(facts(&e), [(true, false)]);
        assert!(e.checks[0].explain().contains(
            "matches the trust anchor key at depth 1, but does not authenticate: the chain to it does not verify (expired)"
        ));
    }

    // RFC 7671 §5.2 vs RFC 7672 §3.2.2: a `2 1 1` of the served CA matches a leaf that
    // names another host, but does not authenticate it.
    #[test]
    fn dane_ta_digest_matches_but_does_not_authenticate_a_leaf_of_another_name() {
        let p = pki();
        let chain = [p.other_name_leaf.clone(), p.int.der.clone()];
        let e = eval(&[rec(2, 1, 1, &p.int.der)], &chain);
        assert_eq!(e.authentication, Authentication::NotAuthenticated);
        assert_eq!(facts(&e), [(true, false)]);
        assert!(e.checks[0]
            .explain()
            .contains("but does not authenticate: the leaf names none of the reference names"));
        // The same record with the right leaf does both.
        let e = eval(&[rec(2, 1, 1, &p.int.der)], &full_chain());
        assert_eq!(facts(&e), [(true, true)]);
    }

    // RFC 7671 §9: an outranked record keeps its match but authenticates nothing; the
    // stronger stale record neither matches nor authenticates.
    #[test]
    fn record_outranked_by_digest_agility_matches_but_does_not_authenticate() {
        let p = pki();
        let e = eval(&[rec(3, 1, 1, &p.leaf), stale(3, 1, 2)], &full_chain());
        assert_eq!(e.authentication, Authentication::NotAuthenticated);
        assert_eq!(facts(&e), [(true, false), (false, false)]);
        let e = eval(&[rec(2, 1, 1, &p.int.der), stale(2, 1, 2)], &full_chain());
        assert_eq!(facts(&e), [(true, false), (false, false)]);
    }

    // RFC 7671 §5.2.3: full `2 1 0` data matches when its key signs the top of the served
    // chain, also when the CA is not served; it authenticates only with a valid path.
    #[test]
    fn dane_ta_full_key_of_an_unserved_ca_matches_by_signature() {
        let p = pki();
        let leaf_only = std::slice::from_ref(&p.leaf);
        let e = eval(&[rec(2, 1, 0, &p.int.der)], leaf_only);
        assert_eq!(facts(&e), [(true, true)]);
        // Root key, leaf + intermediate served: the root signs the top (the intermediate).
        let e = eval(&[rec(2, 1, 0, &p.root.der)], &full_chain()[..2]);
        assert_eq!(facts(&e), [(true, true)]);
        // Expired leaf: the key still signed it (match), the path fails on dates.
        let e = eval(
            &[rec(2, 1, 0, &p.int.der), rec(2, 0, 0, &p.int.der)],
            std::slice::from_ref(&p.expired_leaf),
        );
        assert_eq!(e.authentication, Authentication::NotAuthenticated);
        assert_eq!(facts(&e), [(true, false), (true, false)]);
        assert_eq!(
            e.checks[0].detail,
            RecordDetail::AnchorChainInvalid {
                depth: 1,
                reason: "expired"
            }
        );
        // A key that signed nothing served: no match (also with its expired leaf).
        let e = eval(&[rec(2, 1, 0, &p.root2.der)], leaf_only);
        assert_eq!(facts(&e), [(false, false)]);
        let e = eval(
            &[rec(2, 1, 0, &p.root2.der)],
            std::slice::from_ref(&p.expired_leaf),
        );
        assert_eq!(facts(&e), [(false, false)]);
        assert_eq!(e.checks[0].detail, RecordDetail::AnchorNotServed);
        // The leaf's own key is never an anchor, though it signs a self-signed leaf.
        let ss = std::slice::from_ref(&p.self_signed_leaf);
        let e = eval(&[rec(2, 1, 0, &p.self_signed_leaf)], ss);
        assert_eq!(facts(&e), [(false, false)]);
    }

    // RFC 7672 §3.1.3: an unusable record (`0 0 1`, PKIX-TA) neither matches nor
    // authenticates, even when its data equals a served certificate's digest.
    #[test]
    fn unusable_record_neither_matches_nor_authenticates() {
        let p = pki();
        let e = eval(
            &[rec(0, 0, 1, &p.root.der), rec(1, 1, 1, &p.leaf)],
            &full_chain(),
        );
        assert_eq!(e.authentication, Authentication::NoUsableRecords);
        assert_eq!(facts(&e), [(false, false), (false, false)]);
    }

    // RFC 7672 §3.1.1: DANE-EE matches and authenticates regardless of dates and names.
    #[test]
    fn dane_ee_match_authenticates_whatever_the_dates_and_names() {
        let p = pki();
        for leaf in [&p.expired_leaf, &p.other_name_leaf] {
            let e = eval(
                &[rec(3, 1, 1, leaf), stale(3, 1, 1)],
                std::slice::from_ref(leaf),
            );
            assert_eq!(facts(&e), [(true, true), (false, false)]);
        }
    }

    fn arb_record() -> impl Strategy<Value = Tlsa> {
        let len = prop_oneof![Just(32usize), Just(64), 0usize..100];
        (0u8..5, 0u8..3, 0u8..4, len, any::<u8>()).prop_flat_map(
            |(usage, selector, matching, len, _)| {
                proptest::collection::vec(any::<u8>(), len).prop_map(move |data| Tlsa {
                    usage,
                    selector,
                    matching,
                    data,
                })
            },
        )
    }

    fn assert_consistent(records: &[Tlsa], e: &DaneEvaluation) {
        assert_eq!(e.checks.len(), records.len());
        for (check, record) in e.checks.iter().zip(records) {
            assert_eq!(&check.record, record);
            if usability(record).is_err() {
                assert!(!check.matched && !check.authenticates);
            }
            // Authenticating implies matching; exactly the `Matched` records authenticate.
            assert!(!check.authenticates || check.matched);
            assert_eq!(
                check.authenticates,
                matches!(check.detail, RecordDetail::Matched { .. })
            );
            assert_eq!(check.matched, check.detail.is_match());
            let _ = check.explain();
        }
        if let Authentication::Verified { record, .. } = e.authentication {
            assert!(matches!(
                e.checks[record].detail,
                RecordDetail::Matched { .. }
            ));
        }
    }

    proptest! {
        // Arbitrary records and arbitrary bytes as certificates never panic.
        #[test]
        fn evaluate_never_panics_on_arbitrary_input(
            records in proptest::collection::vec(arb_record(), 0..6),
            chain in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..4),
            names in proptest::collection::vec("[a-z0-9*.-]{0,24}", 0..3),
        ) {
            let chain: Vec<CertificateDer<'_>> = chain.into_iter().map(CertificateDer::from).collect();
            let e = evaluate(&DaneInput { records: &records, chain: &chain, names: &names, now: now() });
            assert_consistent(&records, &e);
        }

        // Real chains with one byte changed and records of real certificates never panic.
        #[test]
        fn evaluate_never_panics_on_damaged_chains(
            cert in 0usize..3, pos in any::<usize>(), byte in any::<u8>(),
            usage in 2u8..4, selector in 0u8..2, matching in 0u8..3, of in 0usize..3,
        ) {
            let mut chain = full_chain();
            let mut der = chain[cert].to_vec();
            let i = pos % der.len();
            der[i] = byte;
            chain[cert] = CertificateDer::from(der);
            let records = [rec(usage, selector, matching, &full_chain()[of])];
            let names = [MX.to_owned()];
            let e = evaluate(&DaneInput { records: &records, chain: &chain, names: &names, now: now() });
            assert_consistent(&records, &e);
        }
    }
}
