//! The `staged:` list of a target: certificates and keys about to be deployed (README,
//! "Rolling over certificates and keys").
//!
//! Owns: the raw entry, its validation (exactly one of `chain_file`/`public_key_file`, `mx` a
//! host name, unique names, [`MAX_STAGED_PER_TARGET`]) and the validated [`Staged`] value.
//! Not here: reading the files (`rollover`), judging them (`staged`).

use std::path::PathBuf;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::errors::At;
use super::ConfigError;
use crate::target::{normalize_name, NextHop};

/// Ceiling on `staged:` entries per target: each adds series per MX host and TLSA record.
pub const MAX_STAGED_PER_TARGET: usize = 8;

/// What a staged entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StagedKind {
    /// A PEM chain, leaf first, as it will be served.
    Chain,
    /// Only the next public key (PEM `PUBLIC KEY`, a SubjectPublicKeyInfo).
    PublicKey,
}

/// One validated `staged:` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Staged {
    /// The file name as configured: the `staged` label.
    pub name: String,
    pub path: PathBuf,
    pub kind: StagedKind,
    /// The one MX host that will serve it (lower case, no trailing dot); `None` = every MX
    /// host of the target.
    pub mx: Option<String>,
}

impl Staged {
    /// Does this entry apply to MX host `mx`?
    pub fn applies_to(&self, mx: &str) -> bool {
        self.mx.as_deref().is_none_or(|m| m == mx)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStaged {
    chain_file: Option<String>,
    public_key_file: Option<String>,
    mx: Option<String>,
}

/// The `staged:` list of target `key` (`targets[i]`), whose next hop is `hop`.
pub(super) fn parse_staged(
    at: &At,
    key: &str,
    hop: &NextHop,
    raw: &[Spanned<RawStaged>],
) -> Result<Vec<Staged>, ConfigError> {
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    let first = raw.first().map(|s| s.referenced.line());
    if let NextHop::Address { .. } = hop {
        return Err(at.err(
            first,
            &format!("{key}.staged"),
            "staged entries need DNS (TLSA records): use them on domain or host targets".into(),
        ));
    }
    if raw.len() > MAX_STAGED_PER_TARGET {
        return Err(at.err(
            first,
            &format!("{key}.staged"),
            format!(
                "{} staged entries exceed the limit of {MAX_STAGED_PER_TARGET}",
                raw.len()
            ),
        ));
    }
    let mut out: Vec<Staged> = Vec::with_capacity(raw.len());
    for (j, s) in raw.iter().enumerate() {
        let line = Some(s.referenced.line());
        let skey = format!("{key}.staged[{j}]");
        let entry = staged_entry(&s.value, hop).map_err(|(k, m)| {
            let k = if k.is_empty() {
                skey.clone()
            } else {
                format!("{skey}.{k}")
            };
            at.err(line, &k, m)
        })?;
        if out.iter().any(|o| o.name == entry.name) {
            return Err(at.err(
                line,
                &skey,
                format!("{} is staged twice for this target", entry.name),
            ));
        }
        out.push(entry);
    }
    Ok(out)
}

fn staged_entry(s: &RawStaged, hop: &NextHop) -> Result<Staged, (&'static str, String)> {
    let (name, kind) = match (&s.chain_file, &s.public_key_file) {
        (Some(c), None) => (c.clone(), StagedKind::Chain),
        (None, Some(k)) => (k.clone(), StagedKind::PublicKey),
        _ => {
            return Err((
                "",
                "needs exactly one of chain_file or public_key_file".into(),
            ))
        }
    };
    let file_key = match kind {
        StagedKind::Chain => "chain_file",
        StagedKind::PublicKey => "public_key_file",
    };
    if name.trim().is_empty() || name.contains('\0') {
        return Err((file_key, format!("{name:?} is not a file name")));
    }
    let mx = match &s.mx {
        None => None,
        Some(m) => {
            let host =
                normalize_name(m).map_err(|_| ("mx", format!("{m:?} is not a host name")))?;
            if let NextHop::Host { host: h, .. } = hop {
                if *h != host {
                    return Err(("mx", format!("{m:?} is not the host of this target ({h})")));
                }
            }
            Some(host)
        }
    };
    Ok(Staged {
        path: PathBuf::from(&name),
        name,
        kind,
        mx,
    })
}
