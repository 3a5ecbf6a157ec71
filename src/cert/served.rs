//! A served chain as one probe sees it: every certificate parsed once, and every
//! signature on it checked once, whoever asks (certificate facts, PKIX, DANE).
//!
//! Owns: [`ServedChain`]. The free functions of `cert` (`facts`, `parts`,
//! `name_matches`, `presented_names`, `pkix_verify`, `verify_chain`) stay for single
//! certificates; the probe builds one `ServedChain` per address and hands it to both
//! the observation (facts, PKIX) and the DANE verdict (docs/performance.md).

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use x509_parser::certificate::X509Certificate;

use super::sigmemo::{as_dyn, SignatureMemo};
use super::{CertError, CertParts, PkixError, PkixRoots};
use crate::model::cert::CertFacts;

/// The chain as served (leaf first), parsed once, with a signature memo shared by every
/// path validation over it (its own, or the probe context's: `with_memo`).
#[derive(Debug)]
pub struct ServedChain<'a> {
    ders: &'a [CertificateDer<'a>],
    /// Same order as `ders`; the parse error text for what does not parse.
    parsed: Vec<Result<X509Certificate<'a>, String>>,
    memo: Memo<'a>,
}

#[derive(Debug)]
enum Memo<'a> {
    Own(SignatureMemo),
    Shared(&'a SignatureMemo),
}

impl<'a> ServedChain<'a> {
    /// With a memo of its own.
    pub fn new(ders: &'a [CertificateDer<'a>]) -> Self {
        Self::with(ders, Memo::Own(SignatureMemo::default()))
    }

    /// With `memo`, shared with other chains (the probe context's).
    pub fn with_memo(ders: &'a [CertificateDer<'a>], memo: &'a SignatureMemo) -> Self {
        Self::with(ders, Memo::Shared(memo))
    }

    fn with(ders: &'a [CertificateDer<'a>], memo: Memo<'a>) -> Self {
        Self {
            ders,
            parsed: ders.iter().map(|der| super::parse(der.as_ref())).collect(),
            memo,
        }
    }

    fn memo(&self) -> &SignatureMemo {
        match &self.memo {
            Memo::Own(m) => m,
            Memo::Shared(m) => m,
        }
    }

    /// As served, leaf first.
    pub fn ders(&self) -> &'a [CertificateDer<'a>] {
        self.ders
    }

    pub fn is_empty(&self) -> bool {
        self.ders.is_empty()
    }

    /// `cert::facts` of the certificate at `depth`.
    pub fn facts(&self, depth: usize) -> Result<CertFacts, CertError> {
        match (self.parsed.get(depth), self.ders.get(depth)) {
            (Some(Ok(cert)), Some(der)) => Ok(super::facts_of(depth, der.as_ref(), cert)),
            (Some(Err(detail)), _) => Err(CertError::Malformed {
                depth,
                detail: detail.clone(),
            }),
            _ => Err(CertError::Malformed {
                depth,
                detail: "no certificate at this depth".into(),
            }),
        }
    }

    /// `cert::parts` of the certificate at `depth`; `None` if it does not parse.
    pub fn parts(&self, depth: usize) -> Option<CertParts<'a>> {
        match self.parsed.get(depth)? {
            Ok(cert) => Some(super::parts_of(cert)),
            Err(_) => None,
        }
    }

    /// `cert::name_matches` on the leaf.
    pub fn leaf_names(&self, reference: &str) -> bool {
        let reference = reference.strip_suffix('.').unwrap_or(reference);
        match self.parsed.first() {
            Some(Ok(leaf)) if !reference.is_empty() => super::names_reference(leaf, reference),
            _ => false,
        }
    }

    /// `cert::presented_names` of the leaf.
    pub fn leaf_presented_names(&self) -> Vec<String> {
        match self.parsed.first() {
            Some(Ok(leaf)) => super::presented_of(leaf),
            _ => Vec::new(),
        }
    }

    /// `cert::key_signs` on the certificate at `depth`.
    pub(crate) fn key_signs(&self, spki: &[u8], depth: usize) -> bool {
        matches!(self.parsed.get(depth), Some(Ok(cert)) if super::key_signs_cert(spki, cert))
    }

    /// `cert::pkix_verify` of this chain.
    pub(crate) fn pkix_verify(
        &self,
        roots: &PkixRoots,
        name: &str,
        now: UnixTime,
    ) -> Result<(), PkixError> {
        let algs = self.memo().algorithms();
        super::pkix_verify_with(self.ders, roots, name, now, &as_dyn(&algs))
    }

    /// `cert::verify_chain` from this chain's leaf; `intermediates` may be any
    /// certificates, usually some of this chain's.
    pub(crate) fn verify_from_leaf(
        &self,
        intermediates: &[CertificateDer<'_>],
        anchors: &[TrustAnchor<'_>],
        now: UnixTime,
    ) -> Result<usize, PkixError> {
        let leaf = self.ders.first().ok_or(PkixError::NoCertificate)?;
        let algs = self.memo().algorithms();
        super::verify_chain_with(leaf, intermediates, anchors, now, &as_dyn(&algs))
    }

    #[cfg(test)]
    pub(super) fn signatures_checked(&self) -> usize {
        self.memo().computed()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ca, leaf, now};
    use super::*;
    use crate::cert;

    fn anchor(der: &CertificateDer<'_>) -> TrustAnchor<'static> {
        webpki::anchor_from_trusted_cert(der)
            .expect("anchor")
            .to_owned()
    }

    // PKIX (leaf → intermediate → root), then a DANE-TA path to the served intermediate:
    // the leaf → intermediate signature is checked once for both.
    #[test]
    fn each_signature_is_checked_once_per_chain() {
        let root = ca("Memo Root", None);
        let int = ca("Memo Intermediate", Some(&root));
        let der = leaf(&["mx1.example.test"], "mx1", &int);
        let chain = [der, int.der.clone()];
        let served = ServedChain::new(&chain);
        let roots = PkixRoots::from_der_certs([root.der.clone()]);
        assert!(served
            .pkix_verify(&roots, "mx1.example.test", now())
            .is_ok());
        assert_eq!(served.signatures_checked(), 2);
        let to_int = served.verify_from_leaf(&[], &[anchor(&int.der)], now());
        assert_eq!(to_int.expect("DANE-TA path"), 1);
        let to_root = served.verify_from_leaf(&chain[1..], &[anchor(&root.der)], now());
        assert_eq!(to_root.expect("path to the root"), 2);
        assert_eq!(served.signatures_checked(), 2, "nothing checked twice");
        // A fresh chain checks again: the memo belongs to one served chain.
        let again = ServedChain::new(&chain);
        assert!(again
            .verify_from_leaf(&[], &[anchor(&int.der)], now())
            .is_ok());
        assert_eq!(again.signatures_checked(), 1);
    }

    // The probe context's memo spans chains: a second leaf of the same CA needs only its
    // own signature checked (the CA's by the root is known), the same chain again nothing;
    // a full memo starts over rather than grow.
    #[test]
    fn a_shared_memo_checks_each_signature_once_across_chains() {
        let root = ca("Shared Root", None);
        let int = ca("Shared Intermediate", Some(&root));
        let roots = PkixRoots::from_der_certs([root.der.clone()]);
        let memo = SignatureMemo::shared();
        let a = [leaf(&["mx1.example.test"], "mx1", &int), int.der.clone()];
        let b = [leaf(&["mx2.example.test"], "mx2", &int), int.der.clone()];
        let first = ServedChain::with_memo(&a, &memo);
        assert!(first.pkix_verify(&roots, "mx1.example.test", now()).is_ok());
        assert_eq!(memo.computed(), 2);
        let second = ServedChain::with_memo(&b, &memo);
        assert!(second
            .pkix_verify(&roots, "mx2.example.test", now())
            .is_ok());
        assert_eq!(memo.computed(), 3, "only mx2's leaf signature is new");
        let again = ServedChain::with_memo(&a, &memo);
        assert!(again.pkix_verify(&roots, "mx1.example.test", now()).is_ok());
        // The name is checked on every call, never memoized.
        assert!(again
            .pkix_verify(&roots, "mx2.example.test", now())
            .is_err());
        assert_eq!(memo.computed(), 3, "the same chain again: nothing checked");
        assert_eq!(memo.len(), 3);

        let small = SignatureMemo::with_capacity(2);
        let c = ServedChain::with_memo(&a, &small);
        assert!(c.pkix_verify(&roots, "mx1.example.test", now()).is_ok());
        let d = ServedChain::with_memo(&b, &small);
        assert!(d.pkix_verify(&roots, "mx2.example.test", now()).is_ok());
        assert!(small.len() <= 2, "{} results held", small.len());
    }

    // A failed check is remembered as failed, and another key over the same certificate
    // is a different entry: the memo gives what the checks themselves give.
    #[test]
    fn memo_answers_as_the_checks_do() {
        let root = ca("Same Name", None);
        let impostor = ca("Same Name", None);
        let int = ca("Memo Int", Some(&root));
        let der = leaf(&["mx1.example.test"], "mx1", &int);
        let chain = [der.clone(), int.der.clone()];
        let served = ServedChain::new(&chain);
        let cases: [(&[CertificateDer<'_>], TrustAnchor<'_>); 4] = [
            (&chain[1..], anchor(&impostor.der)),
            (&chain[1..], anchor(&root.der)),
            (&[], anchor(&impostor.der)),
            (&chain[1..], anchor(&impostor.der)),
        ];
        for (intermediates, a) in cases {
            let fresh = cert::verify_chain(&der, intermediates, std::slice::from_ref(&a), now())
                .map_err(|e| e.reason());
            let memo = served
                .verify_from_leaf(intermediates, std::slice::from_ref(&a), now())
                .map_err(|e| e.reason());
            assert_eq!(memo, fresh);
        }
        assert!(served
            .verify_from_leaf(&chain[1..], &[anchor(&impostor.der)], now())
            .is_err());
        let roots = PkixRoots::from_der_certs([impostor.der.clone(), root.der.clone()]);
        assert!(served
            .pkix_verify(&roots, "mx1.example.test", now())
            .is_ok());
    }

    // One parse serves every question the single-certificate functions answer.
    #[test]
    fn parsed_once_answers_as_the_single_certificate_functions() {
        let root = ca("Parse Root", None);
        let der = leaf(&["mx1.example.test", "*.example.test"], "mx1", &root);
        let junk = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        let chain = [der.clone(), junk.clone(), root.der.clone()];
        let served = ServedChain::new(&chain);
        for (depth, c) in chain.iter().enumerate() {
            let single = format!("{:?}", cert::facts(depth, c).map_err(|e| e.to_string()));
            let shared = format!("{:?}", served.facts(depth).map_err(|e| e.to_string()));
            assert_eq!(shared, single);
            let (a, b) = (served.parts(depth), cert::parts(c));
            assert_eq!(
                a.map(|p| (p.spki, p.issuer, p.subject, p.not_before, p.not_after)),
                b.map(|p| (p.spki, p.issuer, p.subject, p.not_before, p.not_after))
            );
        }
        assert!(served.facts(3).is_err());
        for name in [
            "mx1.example.test",
            "MX2.example.test.",
            "example.test",
            "",
            ".",
        ] {
            assert_eq!(
                served.leaf_names(name),
                cert::name_matches(&der, name),
                "{name}"
            );
        }
        assert_eq!(served.leaf_presented_names(), cert::presented_names(&der));
        let bad = [junk];
        let bad = ServedChain::new(&bad);
        assert!(!bad.leaf_names("mx1.example.test"));
        assert!(bad.leaf_presented_names().is_empty());
        assert!(bad.facts(0).is_err());
        let empty = ServedChain::new(&[]);
        assert!(empty.is_empty());
        let roots = PkixRoots::from_der_certs([root.der.clone()]);
        let none = empty.pkix_verify(&roots, "mx1.example.test", now());
        assert_eq!(none.map_err(|e| e.reason()), Err("no_certificate"));
        assert!(empty.verify_from_leaf(&[], &[], now()).is_err());
    }
}
