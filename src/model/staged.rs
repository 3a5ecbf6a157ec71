//! Rollover values of a report: each staged certificate or key judged against the TLSA
//! RRset published now, per MX host, with the time from which deploying it is safe and the
//! records to publish first (README, "Rolling over certificates and keys").
//!
//! Not here: reading staged files and the first-seen store (`rollover`), the verdict rules
//! (`staged`, `dane`), rendering (`metrics`, `planner`).
//! RFC 7671 §8.1 (publish, wait two TTLs, then deploy).

use serde::Serialize;

use super::report::DaneStatus;
use super::tlsa::RecordCheck;

/// Why a staged file could not be used: a fixed word (a label value) and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StagedFileError {
    /// `missing`, `unreadable`, `too_large`, `private_key`, `no_certificate`,
    /// `no_public_key`, `unparsable`, `too_many_certificates`.
    pub reason: &'static str,
    pub message: String,
}

/// One staged entry of a target and what it would meet if deployed now.
#[derive(Debug, Clone, Serialize)]
pub struct StagedReport {
    /// The file name as configured: the `staged` label.
    pub name: String,
    /// `chain` or `public_key`.
    pub kind: &'static str,
    /// The file could not be used; `hosts` is then empty.
    pub error: Option<StagedFileError>,
    /// notAfter of the staged leaf (unix seconds); `None` for a key-only entry.
    pub not_after: Option<i64>,
    /// SHA-256 of the staged leaf's (or key's) SubjectPublicKeyInfo, lower-case hex.
    pub spki_sha256: String,
    /// One per MX host the entry applies to (its `mx`, or every MX host).
    pub hosts: Vec<StagedHost>,
}

/// A staged entry against one MX host's published TLSA RRset.
#[derive(Debug, Clone, Serialize)]
pub struct StagedHost {
    pub mx: String,
    /// Owner name of the TLSA RRset (`_25._tcp.mx1.example.org`), when it was looked up.
    pub tlsa_name: Option<String>,
    /// One per published record (same order as the host's `tlsa_records`).
    #[serde(serialize_with = "super::report::serialize_checks")]
    pub checks: Vec<RecordCheck>,
    /// What a DANE-enforcing sender would conclude if the staged chain were served now.
    pub dane: DaneStatus,
    /// One readable sentence: why this verdict.
    pub why: String,
    /// RFC 7671 §8.1: from when deploying it is safe (unix seconds): over the records that
    /// authenticate it, the latest first-seen time plus two TTLs. `None` while no record
    /// authenticates it or a first-seen time or the TTL is unknown.
    pub deploy_safe: Option<f64>,
    /// Records that authenticate it but are not yet served by every authoritative server.
    pub lagging: Vec<String>,
    /// When nothing authenticates it: the records to publish first, in zone-file form.
    pub publish: Vec<String>,
}

impl StagedHost {
    /// Deploying now would keep DANE senders delivering (the entry is covered and every
    /// cache holds a covering RRset).
    pub fn safe_at(&self, now: f64) -> bool {
        self.dane == DaneStatus::Verified && self.deploy_safe.is_some_and(|t| t <= now)
    }
}
