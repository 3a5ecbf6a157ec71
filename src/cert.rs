//! X.509 facts and PKIX path validation of a served chain, pure.
//!
//! Owns: the facts a report shows per certificate (`facts`), host name matching as
//! Postfix does it (`name_matches`), PKIX validation to a root store (`pkix_verify`) and
//! the small X.509/DER helpers `dane` builds on (`parts`, `trust_anchor_from_spki`), and
//! [`ServedChain`]: a served chain parsed once per probe, whose signatures are checked once
//! for PKIX and DANE together (`served`, `sigmemo`).
//!
//! Not here: TLSA matching and the DANE verdict (`dane`), fetching the chain
//! (`probe::tls`), metric names (`metrics`).
//! RFC 5280 (certificates, §6 path validation), RFC 6125 §6.4 (reference identifiers, as
//! OpenSSL `X509_check_host` with `X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS`), RFC 4514
//! (name strings). Arbitrary bytes never panic: they yield `CertError` or "no match".

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{
    CertificateDer, ServerName, SignatureVerificationAlgorithm, TrustAnchor, UnixTime,
};
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::model::cert::CertFacts;

mod served;
mod sigmemo;
pub use served::ServedChain;
pub use sigmemo::SignatureMemo;

/// A certificate or CA bundle that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("certificate at depth {depth} is not a DER X.509 certificate: {detail}")]
    Malformed { depth: usize, detail: String },
    #[error("cannot read CA bundle {}", path.display())]
    BundleUnreadable {
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    #[error("CA bundle {} holds no usable certificate", path.display())]
    BundleEmpty { path: PathBuf },
}

impl CertError {
    /// Fixed value set: safe as a label or log field.
    #[cfg(test)]
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "malformed",
            Self::BundleUnreadable { .. } => "bundle_unreadable",
            Self::BundleEmpty { .. } => "bundle_empty",
        }
    }
}

/// Why a chain does not validate (RFC 5280 §6) or does not name the host (RFC 6125).
#[derive(Debug, thiserror::Error)]
pub(crate) enum PkixError {
    #[error("the server sent no certificate")]
    NoCertificate,
    #[error("a certificate in the chain is malformed")]
    Malformed(#[source] webpki::Error),
    #[error("a certificate in the chain expired at {not_after} (now {now})", not_after = not_after.as_secs(), now = now.as_secs())]
    Expired { not_after: UnixTime, now: UnixTime },
    #[error("a certificate in the chain is valid only from {not_before} (now {now})", not_before = not_before.as_secs(), now = now.as_secs())]
    NotYetValid { not_before: UnixTime, now: UnixTime },
    #[error("the chain does not lead to a trusted issuer")]
    UnknownIssuer,
    #[error("a signature in the chain does not verify")]
    BadSignature(#[source] webpki::Error),
    #[error("a signature algorithm in the chain is not supported")]
    UnsupportedAlgorithm(#[source] webpki::Error),
    #[error(
        "a certificate is not allowed for TLS server authentication at its place in the chain"
    )]
    Usage(#[source] webpki::Error),
    #[error("the chain does not validate")]
    Invalid(#[source] webpki::Error),
    #[error("{name:?} is not a valid DNS name")]
    InvalidName { name: String },
    #[error("the certificate does not name {name}")]
    NameMismatch { name: String },
}

impl PkixError {
    /// Fixed value set: safe as a label or log field.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::NoCertificate => "no_certificate",
            Self::Malformed(_) => "malformed",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::UnknownIssuer => "unknown_issuer",
            Self::BadSignature(_) => "bad_signature",
            Self::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            Self::Usage(_) => "invalid_usage",
            Self::Invalid(_) => "invalid_chain",
            Self::InvalidName { .. } => "invalid_name",
            Self::NameMismatch { .. } => "name_mismatch",
        }
    }
}

impl From<webpki::Error> for PkixError {
    fn from(e: webpki::Error) -> Self {
        use webpki::Error as E;
        match e {
            E::CertExpired { time, not_after } => Self::Expired {
                not_after,
                now: time,
            },
            E::CertNotValidYet { time, not_before } => Self::NotYetValid {
                not_before,
                now: time,
            },
            E::UnknownIssuer => Self::UnknownIssuer,
            E::InvalidSignatureForPublicKey => Self::BadSignature(e),
            E::UnsupportedSignatureAlgorithmContext(_)
            | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_)
            | E::SignatureAlgorithmMismatch => Self::UnsupportedAlgorithm(e),
            E::BadDer
            | E::BadDerTime
            | E::TrailingData(_)
            | E::InvalidCertValidity
            | E::InvalidSerialNumber
            | E::MalformedExtensions
            | E::ExtensionValueInvalid
            | E::MalformedDnsIdentifier
            | E::MalformedNameConstraint
            | E::EmptyEkuExtension
            | E::UnsupportedCertVersion
            | E::UnsupportedCriticalExtension => Self::Malformed(e),
            E::CaUsedAsEndEntity
            | E::EndEntityUsedAsCa
            | E::RequiredEkuNotFoundContext(_)
            | E::PathLenConstraintViolated
            | E::NameConstraintViolation => Self::Usage(e),
            _ => Self::Invalid(e),
        }
    }
}

/// Facts of the certificate served at `depth`.
pub fn facts(depth: usize, der: &[u8]) -> Result<CertFacts, CertError> {
    let cert = parse(der).map_err(|detail| CertError::Malformed { depth, detail })?;
    Ok(facts_of(depth, der, &cert))
}

/// Facts of `cert`, parsed from `der`.
fn facts_of(depth: usize, der: &[u8], cert: &X509Certificate<'_>) -> CertFacts {
    let validity = cert.validity();
    CertFacts {
        depth,
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: hex::encode(cert.raw_serial()),
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        sha256: hex::encode(Sha256::digest(der)),
        spki_sha256: hex::encode(Sha256::digest(cert.public_key().raw)),
        dns_names: san_dns_names(cert)
            .map(|names| names.map(str::to_ascii_lowercase).collect())
            .unwrap_or_default(),
        self_signed: cert.subject().as_raw() == cert.issuer().as_raw(),
    }
}

/// Whether the certificate names `reference`, as OpenSSL `X509_check_host` with
/// `X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS` (what Postfix uses; RFC 6125 §6.4):
/// DNS SANs, the subject CN only when there is no DNS SAN; a wildcard only as the whole
/// left-most label, matching exactly one label; case-insensitive; a trailing dot ignored.
pub fn name_matches(der: &[u8], reference: &str) -> bool {
    let reference = reference.strip_suffix('.').unwrap_or(reference);
    if reference.is_empty() {
        return false;
    }
    parse(der).is_ok_and(|cert| names_reference(&cert, reference))
}

/// `name_matches` on a parsed certificate; `reference` without its trailing dot, not empty.
fn names_reference(cert: &X509Certificate<'_>, reference: &str) -> bool {
    // A SAN extension that does not parse names nothing (no CN fall-back either).
    let Some(sans) = san_dns_names(cert) else {
        return false;
    };
    let mut any_san = false;
    for pattern in sans {
        any_san = true;
        if pattern_matches(pattern, reference) {
            return true;
        }
    }
    !any_san && common_names(cert).any(|cn| pattern_matches(cn, reference))
}

/// The names `name_matches` looks at, lower-case: DNS SANs, or the subject CNs when
/// there is no DNS SAN. Empty for an unparsable certificate.
pub fn presented_names(der: &[u8]) -> Vec<String> {
    parse(der).map_or_else(|_| Vec::new(), |cert| presented_of(&cert))
}

fn presented_of(cert: &X509Certificate<'_>) -> Vec<String> {
    let sans: Vec<String> = san_dns_names(cert)
        .map(|names| names.map(str::to_ascii_lowercase).collect())
        .unwrap_or_default();
    if !sans.is_empty() {
        return sans;
    }
    common_names(cert).map(str::to_ascii_lowercase).collect()
}

/// Roots for the PKIX (MTA-STS style) check.
#[derive(Debug, Clone, Default)]
pub(crate) struct PkixRoots {
    anchors: Vec<TrustAnchor<'static>>,
}

impl PkixRoots {
    /// Loads a PEM bundle; certificates webpki cannot use as anchors are skipped.
    pub(crate) fn from_pem_file(path: &Path) -> Result<Self, CertError> {
        let unreadable = |source| CertError::BundleUnreadable {
            path: path.to_path_buf(),
            source,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(unreadable)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(unreadable)?;
        let roots = Self::from_der_certs(certs);
        if roots.is_empty() {
            return Err(CertError::BundleEmpty {
                path: path.to_path_buf(),
            });
        }
        Ok(roots)
    }

    /// Builds roots from DER certificates, skipping undecodable ones.
    pub(crate) fn from_der_certs(certs: impl IntoIterator<Item = CertificateDer<'static>>) -> Self {
        let anchors = certs
            .into_iter()
            .filter_map(|der| {
                webpki::anchor_from_trusted_cert(&der)
                    .ok()
                    .map(|anchor| anchor.to_owned())
            })
            .collect();
        Self { anchors }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.anchors.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }
}

/// The chain as served (leaf first) validates to `roots` for TLS server authentication
/// at `now` (RFC 5280 §6) and the leaf names `name` (webpki rules: DNS SANs only). Used
/// where a chain is checked once and alone (the MTA-STS policy host); a served MX chain goes
/// through `ServedChain`, which shares its signature checks with DANE.
pub(crate) fn pkix_verify(
    chain: &[CertificateDer<'_>],
    roots: &PkixRoots,
    name: &str,
    now: UnixTime,
) -> Result<(), PkixError> {
    pkix_verify_with(chain, roots, name, now, webpki::ALL_VERIFICATION_ALGS)
}

/// `pkix_verify` with the signature algorithms to use (`ServedChain` passes memoized ones).
fn pkix_verify_with(
    chain: &[CertificateDer<'_>],
    roots: &PkixRoots,
    name: &str,
    now: UnixTime,
    algs: &[&dyn SignatureVerificationAlgorithm],
) -> Result<(), PkixError> {
    let (leaf, intermediates) = chain.split_first().ok_or(PkixError::NoCertificate)?;
    let server_name = ServerName::try_from(name).map_err(|_| PkixError::InvalidName {
        name: name.to_owned(),
    })?;
    let ee = webpki::EndEntityCert::try_from(leaf)?;
    ee.verify_for_usage(
        algs,
        &roots.anchors,
        intermediates,
        now,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )?;
    ee.verify_is_valid_for_subject_name(&server_name)
        .map_err(|_| PkixError::NameMismatch {
            name: name.to_owned(),
        })
}

/// Verifies `leaf` up to one of `anchors` through any of `intermediates` for TLS server
/// authentication at `now` (RFC 5280 §6; the anchors' own dates are not checked).
/// Returns the depth of the anchor on the verified path (1 + intermediates used).
#[cfg(test)]
pub(crate) fn verify_chain(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    anchors: &[TrustAnchor<'_>],
    now: UnixTime,
) -> Result<usize, PkixError> {
    verify_chain_with(
        leaf,
        intermediates,
        anchors,
        now,
        webpki::ALL_VERIFICATION_ALGS,
    )
}

/// `verify_chain` with the signature algorithms to use.
fn verify_chain_with(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    anchors: &[TrustAnchor<'_>],
    now: UnixTime,
    algs: &[&dyn SignatureVerificationAlgorithm],
) -> Result<usize, PkixError> {
    let ee = webpki::EndEntityCert::try_from(leaf)?;
    let path = ee.verify_for_usage(
        algs,
        anchors,
        intermediates,
        now,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )?;
    Ok(1 + path.intermediate_certificates().count())
}

/// The parts of a certificate that DANE matching needs, borrowed from its DER.
#[derive(Debug, Clone, Copy)]
pub struct CertParts<'a> {
    /// DER SubjectPublicKeyInfo (TLSA selector 1).
    pub spki: &'a [u8],
    /// DER issuer Name.
    pub(crate) issuer: &'a [u8],
    /// DER subject Name.
    pub(crate) subject: &'a [u8],
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

impl CertParts<'_> {
    /// `Err("not_yet_valid" | "expired")` when `now` is outside the validity period
    /// (RFC 5280 §4.1.2.5: both ends inclusive).
    pub(crate) fn check_validity(&self, now: UnixTime) -> Result<(), &'static str> {
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if now < self.not_before {
            Err("not_yet_valid")
        } else if now > self.not_after {
            Err("expired")
        } else {
            Ok(())
        }
    }
}

/// Splits a DER certificate into the parts DANE needs; `None` if it does not parse.
pub fn parts(der: &[u8]) -> Option<CertParts<'_>> {
    parse(der).ok().map(|cert| parts_of(&cert))
}

fn parts_of<'a>(cert: &X509Certificate<'a>) -> CertParts<'a> {
    let validity = cert.validity();
    CertParts {
        spki: cert.tbs_certificate.subject_pki.raw,
        issuer: cert.tbs_certificate.issuer.as_raw(),
        subject: cert.tbs_certificate.subject.as_raw(),
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
    }
}

/// `data` is exactly one DER X.509 certificate.
pub fn is_certificate(data: &[u8]) -> bool {
    parse(data).is_ok()
}

/// `data` is exactly one DER SubjectPublicKeyInfo.
pub fn is_spki(data: &[u8]) -> bool {
    matches!(SubjectPublicKeyInfo::from_der(data), Ok((rest, _)) if rest.is_empty())
}

/// Whether the key in `spki` (DER SubjectPublicKeyInfo) made the signature on certificate
/// `cert` (RFC 5280 §4.1.1.3). Only the signature: no names, dates or constraints. False
/// when either does not parse or the algorithm is not supported (x509-parser over ring).
fn key_signs_cert(spki: &[u8], cert: &X509Certificate<'_>) -> bool {
    let Ok((rest, key)) = SubjectPublicKeyInfo::from_der(spki) else {
        return false;
    };
    rest.is_empty() && cert.verify_signature(Some(&key)).is_ok()
}

/// A trust anchor made of a bare public key (TLSA `2 1 0`, RFC 7671 §5.2.3): `subject`
/// is a DER Name (the issuer name it must sign under), `spki` a DER SubjectPublicKeyInfo.
/// webpki wants both without their outer SEQUENCE header.
pub(crate) fn trust_anchor_from_spki<'a>(
    subject: &'a [u8],
    spki: &'a [u8],
) -> Option<TrustAnchor<'a>> {
    Some(TrustAnchor {
        subject: sequence_contents(subject)?.into(),
        subject_public_key_info: sequence_contents(spki)?.into(),
        name_constraints: None,
    })
}

/// Parses exactly one certificate, no trailing bytes.
fn parse(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok((rest, _)) => Err(format!("{} trailing bytes", rest.len())),
        Err(e) => Err(e.to_string()),
    }
}

/// SAN dNSName entries; `None` if the SAN extension is malformed or duplicated.
fn san_dns_names<'a>(cert: &'a X509Certificate<'_>) -> Option<impl Iterator<Item = &'a str>> {
    let san = cert.subject_alternative_name().ok()?;
    let names = san
        .map(|ext| ext.value.general_names.as_slice())
        .unwrap_or(&[]);
    Some(names.iter().filter_map(|name| match name {
        GeneralName::DNSName(dns) => Some(*dns),
        _ => None,
    }))
}

fn common_names<'a>(cert: &'a X509Certificate<'_>) -> impl Iterator<Item = &'a str> {
    cert.subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
}

/// OpenSSL `equal_wildcard` with `NO_PARTIAL_WILDCARDS`: a valid wildcard pattern
/// (`valid_star`) matches one non-empty left-most label of letters, digits and hyphens;
/// anything else compares as a literal, ASCII case-insensitively.
fn pattern_matches(pattern: &str, reference: &str) -> bool {
    let pattern = pattern.strip_suffix('.').unwrap_or(pattern);
    if let Some(suffix) = wildcard_suffix(pattern) {
        let Some(label_len) = reference.len().checked_sub(suffix.len()) else {
            return false;
        };
        let (label, rest) = reference.as_bytes().split_at(label_len);
        return label_len > 0
            && rest.eq_ignore_ascii_case(suffix.as_bytes())
            && (label == b"*"
                || label
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-'));
    }
    pattern.eq_ignore_ascii_case(reference)
}

/// For `*.b.c` style patterns (`*` the whole first label, at least two labels after it,
/// each a valid LDH label), the suffix starting at the first dot.
fn wildcard_suffix(pattern: &str) -> Option<&str> {
    let suffix = pattern.strip_prefix('*')?;
    let labels = suffix.strip_prefix('.')?;
    let mut count = 0;
    for label in labels.split('.') {
        let bytes = label.as_bytes();
        let ldh = bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-');
        if bytes.is_empty() || !ldh || bytes[0] == b'-' || bytes[bytes.len() - 1] == b'-' {
            return None;
        }
        count += 1;
    }
    (count >= 2).then_some(suffix)
}

/// Contents of one DER SEQUENCE (tag 0x30) that spans all of `tlv`.
fn sequence_contents(tlv: &[u8]) -> Option<&[u8]> {
    let (&tag, rest) = tlv.split_first()?;
    if tag != 0x30 {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, contents) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len_bytes, contents) = rest.split_at(n);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, contents)
    };
    (contents.len() == len).then_some(contents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PublicKeyData,
    };
    use std::time::Duration;

    /// 2026-06-01T00:00:00Z.
    pub(super) fn now() -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(1_780_272_000))
    }

    pub(super) struct Ca {
        pub(super) der: CertificateDer<'static>,
        pem: String,
        params: CertificateParams,
        pub(super) key: KeyPair,
    }

    pub(super) fn ca(cn: &str, parent: Option<&Ca>) -> Ca {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = match parent {
            Some(p) => params
                .signed_by(&key, &Issuer::from_params(&p.params, &p.key))
                .expect("sign"),
            None => params.self_signed(&key).expect("self-sign"),
        };
        Ca {
            der: cert.der().clone(),
            pem: cert.pem(),
            params,
            key,
        }
    }

    pub(super) fn leaf(sans: &[&str], cn: &str, issuer: &Ca) -> CertificateDer<'static> {
        let key = KeyPair::generate().expect("key");
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .signed_by(&key, &Issuer::from_params(&issuer.params, &issuer.key))
            .expect("sign")
            .der()
            .clone()
    }

    // RFC 5280 §4.1: the facts a report shows.
    #[test]
    fn facts_report_digests_names_and_dates() {
        let root = ca("Facts Root", None);
        let der = leaf(&["MX1.Example.Test", "mx2.example.test"], "mx1", &root);
        let f = facts(0, &der).expect("facts");
        assert_eq!(f.depth, 0);
        assert_eq!(f.subject, "CN=mx1");
        assert_eq!(f.issuer, "CN=Facts Root");
        assert_eq!(f.dns_names, ["mx1.example.test", "mx2.example.test"]);
        assert_eq!(f.sha256, hex::encode(Sha256::digest(der.as_ref())));
        let spki = parts(&der).expect("parts").spki;
        assert_eq!(f.spki_sha256, hex::encode(Sha256::digest(spki)));
        assert!(!f.self_signed);
        assert!(f.not_before < f.not_after);
        assert!(f
            .serial
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        let root_facts = facts(1, &root.der).expect("facts");
        assert!(root_facts.self_signed);
    }

    #[test]
    fn facts_reject_garbage_and_trailing_bytes() {
        let err = facts(2, b"not a certificate").expect_err("garbage");
        assert_eq!(err.reason(), "malformed");
        let root = ca("Trailing Root", None);
        let mut der = root.der.to_vec();
        der.push(0);
        assert!(matches!(
            facts(1, &der),
            Err(CertError::Malformed { depth: 1, .. })
        ));
    }

    // RFC 6125 §6.4.3: wildcard only as the whole left-most label, one label deep.
    #[test]
    fn wildcard_matches_one_left_most_label_only() {
        let root = ca("Wildcard Root", None);
        let der = leaf(&["*.example.test"], "wild", &root);
        assert!(name_matches(&der, "mx1.example.test"));
        assert!(name_matches(&der, "MX1.EXAMPLE.TEST."));
        assert!(!name_matches(&der, "a.b.example.test"));
        assert!(!name_matches(&der, "example.test"));
        assert!(!name_matches(&der, ".example.test"));
    }

    // OpenSSL valid_star: no partial wildcards, at least two labels after the star.
    #[test]
    fn partial_and_short_wildcards_are_literals() {
        assert!(!pattern_matches("mx*.example.test", "mx1.example.test"));
        assert!(!pattern_matches("*x.example.test", "mx.example.test"));
        assert!(!pattern_matches("*.test", "example.test"));
        assert!(!pattern_matches("a.*.example.test", "a.b.example.test"));
        assert!(pattern_matches("*.test", "*.test"));
        assert!(pattern_matches("*.example.test.", "mx.example.test"));
        assert!(!pattern_matches("*.example.test", "m_x.example.test"));
    }

    // RFC 6125 §6.4.4: the CN counts only when there is no DNS SAN.
    #[test]
    fn common_name_only_without_dns_san() {
        let root = ca("CN Root", None);
        let with_san = leaf(&["mx1.example.test"], "cn.example.test", &root);
        assert!(name_matches(&with_san, "mx1.example.test"));
        assert!(!name_matches(&with_san, "cn.example.test"));
        let without_san = leaf(&[], "cn.example.test", &root);
        assert!(name_matches(&without_san, "cn.example.test"));
        assert!(!name_matches(&without_san, "mx1.example.test"));
        assert_eq!(presented_names(&without_san), ["cn.example.test"]);
        assert_eq!(presented_names(&with_san), ["mx1.example.test"]);
    }

    #[test]
    fn name_check_is_case_insensitive_and_exact() {
        let root = ca("Exact Root", None);
        let der = leaf(&["Mx1.Example.Test"], "x", &root);
        assert!(name_matches(&der, "mx1.example.test"));
        assert!(!name_matches(&der, "mx2.example.test"));
        assert!(!name_matches(&der, "example.test"));
        assert!(!name_matches(&der, ""));
        assert!(!name_matches(b"junk", "mx1.example.test"));
    }

    // RFC 5280 §6: PKIX validation to a root store, then the host name.
    #[test]
    fn pkix_verify_accepts_good_chain_and_names_errors() {
        let root = ca("PKIX Root", None);
        let int = ca("PKIX Intermediate", Some(&root));
        let der = leaf(&["mx1.example.test"], "mx1", &int);
        let roots = PkixRoots::from_der_certs([root.der.clone(), CertificateDer::from(vec![1, 2])]);
        assert_eq!(roots.len(), 1);
        let chain = [der.clone(), int.der.clone()];
        assert!(pkix_verify(&chain, &roots, "mx1.example.test", now()).is_ok());

        let wrong = pkix_verify(&chain, &roots, "mx2.example.test", now());
        assert_eq!(wrong.map_err(|e| e.reason()), Err("name_mismatch"));
        let missing_int = pkix_verify(&chain[..1], &roots, "mx1.example.test", now());
        assert_eq!(missing_int.map_err(|e| e.reason()), Err("unknown_issuer"));
        let other_roots = PkixRoots::from_der_certs([ca("Other Root", None).der]);
        let unknown = pkix_verify(&chain, &other_roots, "mx1.example.test", now());
        assert_eq!(unknown.map_err(|e| e.reason()), Err("unknown_issuer"));
        let none = pkix_verify(&[], &roots, "mx1.example.test", now());
        assert_eq!(none.map_err(|e| e.reason()), Err("no_certificate"));
        let bad_name = pkix_verify(&chain, &roots, "not a name", now());
        assert_eq!(bad_name.map_err(|e| e.reason()), Err("invalid_name"));
        let garbage = pkix_verify(
            &[CertificateDer::from(vec![0x30, 0])],
            &roots,
            "a.test",
            now(),
        );
        assert_eq!(garbage.map_err(|e| e.reason()), Err("malformed"));
    }

    #[test]
    fn pkix_verify_reports_expired_leaf() {
        let root = ca("Expiry Root", None);
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec!["mx1.example.test".to_string()]).expect("p");
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let der = params
            .signed_by(&key, &Issuer::from_params(&root.params, &root.key))
            .expect("sign")
            .der()
            .clone();
        let roots = PkixRoots::from_der_certs([root.der.clone()]);
        let r = pkix_verify(&[der], &roots, "mx1.example.test", now());
        assert_eq!(r.map_err(|e| e.reason()), Err("expired"));
    }

    #[test]
    fn pkix_roots_from_pem_file() {
        let root = ca("PEM Root", None);
        let dir = std::env::temp_dir().join(format!("cert-rs-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("bundle.pem");
        std::fs::write(&path, &root.pem).expect("write");
        assert_eq!(PkixRoots::from_pem_file(&path).expect("bundle").len(), 1);
        std::fs::write(&path, "no pem here\n").expect("write");
        let empty = PkixRoots::from_pem_file(&path).expect_err("empty");
        assert_eq!(empty.reason(), "bundle_empty");
        let missing = PkixRoots::from_pem_file(&dir.join("missing.pem")).expect_err("missing");
        assert_eq!(missing.reason(), "bundle_unreadable");
        let _ = std::fs::remove_dir_all(&dir);
    }

    // RFC 7671 §5.2.3: a bare-key anchor in webpki's format verifies what that key signed.
    #[test]
    fn bare_key_anchor_verifies_what_it_signed() {
        let root = ca("Bare Root", None);
        let der = leaf(&["mx1.example.test"], "mx1", &root);
        let issuer = parts(&der).expect("parts").issuer;
        let spki = root.key.subject_public_key_info();
        assert!(is_spki(&spki));
        assert!(!is_spki(&root.der));
        assert!(is_certificate(&root.der));
        let anchor = trust_anchor_from_spki(issuer, &spki).expect("anchor");
        assert_eq!(
            verify_chain(&der, &[], &[anchor], now()).expect("verify"),
            1
        );
        assert!(trust_anchor_from_spki(issuer, &spki[..spki.len() - 1]).is_none());
    }

    #[test]
    fn validity_is_inclusive() {
        let p = CertParts {
            spki: &[],
            issuer: &[],
            subject: &[],
            not_before: 10,
            not_after: 20,
        };
        let at = |s| UnixTime::since_unix_epoch(Duration::from_secs(s));
        assert_eq!(p.check_validity(at(9)), Err("not_yet_valid"));
        assert_eq!(p.check_validity(at(10)), Ok(()));
        assert_eq!(p.check_validity(at(20)), Ok(()));
        assert_eq!(p.check_validity(at(21)), Err("expired"));
    }

    proptest! {
        // Arbitrary bytes never panic in any entry point, and what does not parse as a
        // certificate names nothing and validates nothing.
        #[test]
        fn arbitrary_bytes_never_panic(der in proptest::collection::vec(any::<u8>(), 0..512),
                                       name in "[a-z*.]{0,20}") {
            let parsed = facts(0, &der).is_ok();
            let matched = name_matches(&der, &name);
            let names = presented_names(&der);
            let _ = parts(&der);
            let _ = is_spki(&der);
            let _ = sequence_contents(&der);
            let roots = PkixRoots::from_der_certs([CertificateDer::from(der.clone())]);
            let chain = [CertificateDer::from(der.clone()), CertificateDer::from(der)];
            let verified = pkix_verify(&chain, &roots, &name, now());
            if !parsed {
                prop_assert!(!matched, "unparsable bytes matched {name:?}");
                prop_assert!(names.is_empty(), "unparsable bytes named {names:?}");
                prop_assert!(verified.is_err(), "unparsable chain validated");
            }
        }

        // RFC 5280 §6: the signature covers every byte that matters, so changing any one
        // byte of a valid leaf makes the chain fail; the unchanged leaf validates.
        #[test]
        fn mutated_certificate_never_validates(pos in any::<usize>(), byte in any::<u8>(),
                                               name in "[a-z*.]{0,20}") {
            let (root, original) = fixture();
            let mut der = original.to_vec();
            let i = pos % der.len();
            der[i] = byte;
            let _ = name_matches(&der, &name);
            let roots = PkixRoots::from_der_certs([root.der.clone()]);
            let verified = pkix_verify(&[CertificateDer::from(der.clone())], &roots, "mx1.example.test", now());
            if der == original.as_ref() {
                prop_assert!(verified.is_ok(), "{verified:?}");
            } else {
                prop_assert!(verified.is_err(), "byte {i} changed to {byte:#04x}, still valid");
                if let Ok(f) = facts(0, &der) {
                    prop_assert_ne!(f.sha256, hex::encode(Sha256::digest(original.as_ref())));
                }
            }
        }
    }

    fn fixture() -> &'static (Ca, CertificateDer<'static>) {
        static PKI: std::sync::OnceLock<(Ca, CertificateDer<'static>)> = std::sync::OnceLock::new();
        PKI.get_or_init(|| {
            let root = ca("Mutation Root", None);
            let leaf = leaf(&["mx1.example.test", "*.example.test"], "mx1", &root);
            (root, leaf)
        })
    }
}
