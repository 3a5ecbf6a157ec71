//! Staged certificates and keys judged against the TLSA RRset published now: what a
//! DANE-enforcing sender would conclude if the staged chain were served, from when deploying
//! it is safe, and which records to publish first (README, "Rolling over certificates and
//! keys"). Pure: no I/O, no clock (the caller passes `now`).
//!
//! Owns: parsing a staged PEM file's bytes into [`Material`] (refusing any private key),
//! the staged verdict per MX host with exactly the rules of the live chain (`dane`), the
//! deploy-safe time and the zone-file lines to publish.
//! Not here: reading files and first-seen times (`rollover`), the rules themselves (`dane`),
//! rendering (`metrics`, `planner`).
//! RFC 7671 §8.1 (publish, wait two TTLs, deploy), §5.1/§5.2 (DANE-EE, DANE-TA), §9 (digest
//! agility); RFC 7672 §3.1, §3.2.2 (reference identifiers).

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, SubjectPublicKeyInfoDer, UnixTime};
use sha2::{Digest, Sha256, Sha512};

use crate::cert;
use crate::config::StagedKind;
use crate::dane::{self, DaneInput};
use crate::model::report::{DaneStatus, HostReport, TargetReport};
use crate::model::staged::{StagedFileError, StagedHost};
use crate::model::tlsa::{
    Authentication, RecordCheck, Tlsa, MATCHING_SHA512, SELECTOR_SPKI, USAGE_DANE_EE, USAGE_DANE_TA,
};

/// Largest staged file read, in bytes: a chain of ten large certificates fits.
pub const MAX_STAGED_FILE_BYTES: u64 = 256 * 1024;
/// Most certificates taken from a staged chain (as `MAX_EXPORTED_CERTS` for served chains).
pub const MAX_STAGED_CERTS: usize = 10;

/// A staged file's usable content: never a private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Material {
    pub kind: StagedKind,
    /// Leaf first, as it will be served; empty for a key-only entry.
    pub chain: Vec<CertificateDer<'static>>,
    /// DER SubjectPublicKeyInfo of the leaf (or the staged key).
    pub spki: Vec<u8>,
    /// notAfter of the leaf (unix seconds); `None` for a key-only entry.
    pub not_after: Option<i64>,
}

fn file_error(reason: &'static str, message: impl Into<String>) -> StagedFileError {
    StagedFileError {
        reason,
        message: message.into(),
    }
}

/// The PEM labels that hold secrets (`PRIVATE KEY`, `RSA PRIVATE KEY`, `EC PRIVATE KEY`,
/// `ENCRYPTED PRIVATE KEY`, `OPENSSH PRIVATE KEY`, ...): any `BEGIN` line naming one.
fn has_private_key(pem: &[u8]) -> bool {
    pem.split(|b| *b == b'\n').any(|line| {
        let line = line.trim_ascii();
        line.starts_with(b"-----BEGIN ")
            && line
                .windows(b"PRIVATE KEY".len())
                .any(|w| w == b"PRIVATE KEY")
    })
}

impl Material {
    /// Parses a staged file's bytes. A file holding any private key block is refused
    /// whatever else it holds: the exporter never handles secrets (the caller drops the
    /// bytes). A chain file needs at least one certificate, leaf first; a key file one
    /// `PUBLIC KEY` block.
    pub fn from_pem(kind: StagedKind, pem: &[u8]) -> Result<Self, StagedFileError> {
        if has_private_key(pem) {
            return Err(file_error(
                "private_key",
                "the file holds a private key: refused (stage the certificate chain or the public key only)",
            ));
        }
        match kind {
            StagedKind::Chain => {
                let mut chain = Vec::new();
                for c in CertificateDer::pem_slice_iter(pem) {
                    let c = c.map_err(|e| file_error("unparsable", format!("bad PEM: {e}")))?;
                    if chain.len() == MAX_STAGED_CERTS {
                        return Err(file_error(
                            "too_many_certificates",
                            format!("more than {MAX_STAGED_CERTS} certificates"),
                        ));
                    }
                    chain.push(c);
                }
                let Some(leaf) = chain.first() else {
                    return Err(file_error(
                        "no_certificate",
                        "no CERTIFICATE block in the file",
                    ));
                };
                let parts = cert::parts(leaf.as_ref()).ok_or_else(|| {
                    file_error("unparsable", "the first certificate does not parse")
                })?;
                let (spki, not_after) = (parts.spki.to_vec(), parts.not_after);
                Ok(Self {
                    kind,
                    chain,
                    spki,
                    not_after: Some(not_after),
                })
            }
            StagedKind::PublicKey => {
                let key = SubjectPublicKeyInfoDer::pem_slice_iter(pem)
                    .next()
                    .ok_or_else(|| file_error("no_public_key", "no PUBLIC KEY block in the file"))?
                    .map_err(|e| file_error("unparsable", format!("bad PEM: {e}")))?;
                if !cert::is_spki(key.as_ref()) {
                    return Err(file_error(
                        "unparsable",
                        "the PUBLIC KEY block is not a SubjectPublicKeyInfo",
                    ));
                }
                Ok(Self {
                    kind,
                    chain: Vec::new(),
                    spki: key.as_ref().to_vec(),
                    not_after: None,
                })
            }
        }
    }

    /// SHA-256 of the leaf's (or key's) SubjectPublicKeyInfo, lower-case hex.
    pub fn spki_sha256(&self) -> String {
        hex::encode(Sha256::digest(&self.spki))
    }
}

/// Judges `m` for every MX host of `r` that `applies` selects. `first_seen` and `ttl` come
/// from each host's `tlsa_timing` (filled before).
pub fn judge(
    r: &TargetReport,
    m: &Material,
    applies: impl Fn(&str) -> bool,
    now: UnixTime,
) -> Vec<StagedHost> {
    r.hosts
        .iter()
        .filter(|h| applies(&h.mx))
        .map(|h| judge_host(r, h, m, now))
        .collect()
}

/// The TLSA owner name of a host: `_25._tcp.mx1.example.org`.
pub fn tlsa_owner(h: &HostReport) -> Option<String> {
    h.tlsa_base
        .as_ref()
        .map(|base| format!("_{}._tcp.{base}", h.port))
}

/// Reference identifiers for DANE-TA (RFC 7672 §3.2.2), as the live verdict uses them:
/// TLSA base domain, MX host name, next-hop domain.
fn reference_names(r: &TargetReport, h: &HostReport) -> Vec<String> {
    let next_hop = if r.kind == "domain" {
        r.target.as_str()
    } else {
        h.mx.as_str()
    };
    let mut names: Vec<String> = Vec::with_capacity(3);
    for n in [h.tlsa_base.as_deref(), Some(h.mx.as_str()), Some(next_hop)]
        .into_iter()
        .flatten()
    {
        if !names.iter().any(|x| x == n) {
            names.push(n.to_string());
        }
    }
    names
}

/// One MX host: the verdict if `m` were served now, against the RRset published now.
fn judge_host(r: &TargetReport, h: &HostReport, m: &Material, now: UnixTime) -> StagedHost {
    let mut out = StagedHost {
        mx: h.mx.clone(),
        tlsa_name: tlsa_owner(h),
        checks: Vec::new(),
        dane: DaneStatus::None,
        why: String::new(),
        deploy_safe: None,
        lagging: Vec::new(),
        publish: Vec::new(),
    };
    // DNS decides first, as for the live chain (docs/verdict.md): a failed or bogus
    // lookup defers whatever is served; without a secure TLSA RRset DANE does not apply.
    if let Some(a) = h
        .addresses
        .iter()
        .find(|a| a.dane == Some(DaneStatus::DnsFailure))
    {
        out.dane = DaneStatus::DnsFailure;
        out.why = a.why.clone();
        return out;
    }
    if !h.dane_applies {
        out.dane = DaneStatus::None;
        out.why =
            "no secure TLSA RRset: DANE does not apply, deploying changes nothing for DANE senders"
                .into();
        return out;
    }
    let eval = match m.kind {
        StagedKind::PublicKey => dane::evaluate_key(&h.tlsa_records, &m.spki),
        StagedKind::Chain => {
            let names = reference_names(r, h);
            dane::evaluate(&DaneInput {
                records: &h.tlsa_records,
                chain: &m.chain,
                names: &names,
                now,
            })
        }
    };
    let (dane, why) = match eval.authentication {
        Authentication::Verified { .. } => {
            let used: Vec<String> = eval
                .checks
                .iter()
                .filter(|c| c.authenticates)
                .map(|c| c.record.short())
                .collect();
            (
                DaneStatus::Verified,
                format!(
                    "would be authenticated by {}: DANE senders would deliver",
                    used.join(", ")
                ),
            )
        }
        Authentication::NotAuthenticated => (
            DaneStatus::Failed,
            match m.kind {
                StagedKind::PublicKey => "no published 3 1 x record matches this key (a key alone verifies only through DANE-EE): DANE senders would defer".to_string(),
                StagedKind::Chain => "no usable published record authenticates this chain: DANE senders would defer".to_string(),
            },
        ),
        Authentication::NoUsableRecords => (
            DaneStatus::Unauthenticated,
            "the TLSA RRset has no usable record: TLS required, not authenticated".into(),
        ),
    };
    out.dane = dane;
    out.why = why;
    let timing = &h.tlsa_timing;
    out.lagging = eval
        .checks
        .iter()
        .enumerate()
        .filter(|(i, c)| c.authenticates && timing.on_every_server.get(*i) == Some(&Some(false)))
        .map(|(_, c)| c.record.presentation())
        .collect();
    out.deploy_safe = deploy_safe(&eval.checks, &timing.first_seen, timing.ttl);
    if dane != DaneStatus::Verified {
        out.publish = records_to_publish(h, m, &h.tlsa_records);
    }
    out.checks = eval.checks;
    out
}

/// RFC 7671 §8.1: over the records that authenticate the staged entry, the latest first-seen
/// time plus two TTLs; `None` when none authenticates, or a time or the TTL is unknown.
pub fn deploy_safe(
    checks: &[RecordCheck],
    first_seen: &[Option<f64>],
    ttl: Option<u32>,
) -> Option<f64> {
    let ttl = f64::from(ttl?);
    let mut latest: Option<f64> = None;
    for (i, c) in checks.iter().enumerate() {
        if !c.authenticates {
            continue;
        }
        let seen = first_seen.get(i).copied().flatten()?;
        latest = Some(latest.map_or(seen, |l: f64| l.max(seen)));
    }
    latest.map(|t| t + 2.0 * ttl)
}

/// The matching type to publish for a usage with selector 1: SHA-512 when the RRset
/// already has a usable `u 1 2` (digest agility would outrank a SHA-256 one, RFC 7671 §9),
/// else SHA-256.
fn matching_for(published: &[Tlsa], usage: u8) -> u8 {
    let stronger = published.iter().any(|t| {
        t.usage == usage
            && t.selector == SELECTOR_SPKI
            && t.matching == MATCHING_SHA512
            && dane::usability(t).is_ok()
    });
    if stronger {
        MATCHING_SHA512
    } else {
        1
    }
}

fn record_line(owner: &str, usage: u8, matching: u8, spki: &[u8]) -> String {
    let digest = if matching == MATCHING_SHA512 {
        hex::encode(Sha512::digest(spki))
    } else {
        hex::encode(Sha256::digest(spki))
    };
    format!("{owner}. IN TLSA {usage} {SELECTOR_SPKI} {matching} {digest}")
}

/// The records that would cover `m`, in zone-file form: `3 1 1` for its key, and `2 1 1`
/// for its issuing CA (the certificate after the leaf) when the chain has one.
fn records_to_publish(h: &HostReport, m: &Material, published: &[Tlsa]) -> Vec<String> {
    let Some(owner) = tlsa_owner(h) else {
        return Vec::new();
    };
    let mut out = vec![record_line(
        &owner,
        USAGE_DANE_EE,
        matching_for(published, USAGE_DANE_EE),
        &m.spki,
    )];
    if let Some(issuer) = m.chain.get(1).and_then(|c| cert::parts(c.as_ref())) {
        if issuer.spki != m.spki.as_slice() {
            out.push(record_line(
                &owner,
                USAGE_DANE_TA,
                matching_for(published, USAGE_DANE_TA),
                issuer.spki,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests;
