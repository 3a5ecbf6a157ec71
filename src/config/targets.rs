//! The `targets:` list: one [`Target`] per entry, in Postfix next-hop form.
//!
//! Owns: the raw target entry, its validation (exactly one of domain/host/address, ports,
//! duplicates, [`MAX_TARGETS`]) and its canonical name (the `target` label).
//! Not here: next-hop syntax itself (`target`), the other sections (`config`).

use std::net::IpAddr;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::errors::At;
use super::staged::{parse_staged, RawStaged, Staged};
use super::{ConfigError, MAX_TARGETS};
use crate::target::{normalize_name, NextHop, DEFAULT_PORT};

/// One configured target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The `target` label: canonical next-hop form.
    pub name: String,
    pub hop: NextHop,
    /// Certificates and keys about to be deployed (`staged:`); empty for `/probe` targets.
    pub staged: Vec<Staged>,
}

impl Target {
    pub(crate) fn new(hop: NextHop) -> Self {
        Self {
            name: hop.to_string(),
            hop,
            staged: Vec::new(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    domain: Option<String>,
    host: Option<String>,
    address: Option<String>,
    port: Option<i64>,
    #[serde(default)]
    staged: Vec<Spanned<RawStaged>>,
}

/// The `targets:` list.
pub(super) fn parse_targets(
    at: &At,
    raw: &[Spanned<RawTarget>],
) -> Result<Vec<Target>, ConfigError> {
    if raw.len() > MAX_TARGETS {
        return Err(at.err(
            None,
            "targets",
            format!("{} targets exceed the limit of {MAX_TARGETS}", raw.len()),
        ));
    }
    let mut targets: Vec<Target> = Vec::with_capacity(raw.len());
    let mut seen = std::collections::HashSet::new();
    for (i, t) in raw.iter().enumerate() {
        let line = Some(t.referenced.line());
        let key = format!("targets[{i}]");
        let hop = target_hop(&t.value).map_err(|m| at.err(line, &key, m))?;
        let mut target = Target::new(hop);
        target.staged = parse_staged(at, &key, &target.hop, &t.value.staged)?;
        if !seen.insert(target.name.clone()) {
            return Err(at.err(line, &key, format!("duplicate target {}", target.name)));
        }
        targets.push(target);
    }
    Ok(targets)
}

fn target_hop(t: &RawTarget) -> Result<NextHop, String> {
    let port = match t.port {
        None => DEFAULT_PORT,
        Some(p) if (1..=65535).contains(&p) => p as u16,
        Some(p) => return Err(format!("port {p} is out of range 1..=65535")),
    };
    match (&t.domain, &t.host, &t.address) {
        (Some(d), None, None) => {
            if t.port.is_some() {
                return Err(
                    "port: a domain target always uses port 25 (use host: for another port)".into(),
                );
            }
            normalize_name(d)
                .map(NextHop::Domain)
                .map_err(|_| format!("domain: {d:?} is not a domain name"))
        }
        (None, Some(h), None) => normalize_name(h)
            .map(|host| NextHop::Host { host, port })
            .map_err(|_| format!("host: {h:?} is not a host name")),
        (None, None, Some(a)) => a
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .map(|ip| NextHop::Address { ip, port })
            .map_err(|_| format!("address: {a:?} is not an IP address")),
        _ => Err("needs exactly one of domain, host or address".into()),
    }
}
