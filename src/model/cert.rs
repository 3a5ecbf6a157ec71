//! Certificate values of a report: the facts shown for each served certificate.
//!
//! Not here: parsing certificates or validating paths (`cert`).
//! RFC 5280 §4.1 (fields), RFC 4514 (name strings).

/// Certificates exported as series per address: depth 0 to 9 (docs/metrics.md, "Bounded
/// exposition"); `mailtls_cert_chain_length` gives the real length, `check` shows them all.
pub(crate) const MAX_EXPORTED_CERTS: usize = 10;

/// What a report shows about one served certificate.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertFacts {
    /// 0 = leaf, as served.
    pub depth: usize,
    /// RFC 4514 string as x509-parser renders it.
    pub subject: String,
    pub issuer: String,
    /// Lower-case hex, no colons.
    pub serial: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// Lower-case hex of SHA-256 over the DER certificate.
    pub sha256: String,
    /// Lower-case hex of SHA-256 over the DER SubjectPublicKeyInfo.
    pub spki_sha256: String,
    /// SAN dNSName entries, lower-case.
    pub dns_names: Vec<String>,
    /// Subject equals issuer.
    pub self_signed: bool,
}
