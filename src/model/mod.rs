//! The result model: the plain values a probe produces and every renderer reads.
//!
//! Owns: `TargetReport` and its parts (`report`), DNS answers and DNSSEC states (`dns`),
//! TLSA records and their judgements (`tlsa`), certificate facts (`cert`), the SMTP/TLS
//! dialogue's outcome (`smtp`), staged certificates against the published records (`staged`),
//! MTA-STS and TLSRPT states (`policies`), and the pure methods that need only these values.
//! Not here: producing the values (`probe`, `dane`, `cert`), rendering them (`metrics`,
//! `text`). Imports nothing else from the crate but the `sts` syntax types (see the layer
//! list in `lib.rs`).

pub mod authoritative;
pub mod cert;
pub mod dns;
pub mod policies;
pub mod report;
pub mod smtp;
pub mod staged;
pub mod tlsa;

#[cfg(test)]
pub(crate) mod fixture;
