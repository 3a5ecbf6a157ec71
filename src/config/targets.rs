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
use crate::target::{normalize_name, NextHop, TlsMode, DEFAULT_PORT};

/// One configured target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The `target` label: canonical next-hop form.
    pub name: String,
    pub hop: NextHop,
    /// Certificates and keys about to be deployed (`staged:`); empty for `/probe` targets.
    pub staged: Vec<Staged>,
    /// `tls: implicit|starttls`: overrides the mode the port implies ([`TlsMode::for_port`]).
    pub tls: Option<TlsMode>,
}

impl Target {
    pub(crate) fn new(hop: NextHop) -> Self {
        Self {
            name: hop.to_string(),
            hop,
            staged: Vec::new(),
            tls: None,
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
    tls: Option<String>,
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
        let tls = target_tls(&t.value, &hop).map_err(|m| at.err(line, &key, m))?;
        let mut target = Target {
            tls,
            ..Target::new(hop)
        };
        target.staged = parse_staged(at, &key, &target.hop, &t.value.staged)?;
        if !seen.insert(target.name.clone()) {
            return Err(at.err(line, &key, format!("duplicate target {}", target.name)));
        }
        targets.push(target);
    }
    Ok(targets)
}

/// `tls:` of a host or address target; a domain target is always STARTTLS on port 25
/// (RFC 7672 §2.2: DANE for SMTP relays).
fn target_tls(t: &RawTarget, hop: &NextHop) -> Result<Option<TlsMode>, String> {
    let Some(v) = &t.tls else { return Ok(None) };
    if matches!(hop, NextHop::Domain(_)) {
        return Err("tls: a domain target always uses STARTTLS on port 25 (use host: for a submission port)".into());
    }
    TlsMode::parse(v)
        .map(Some)
        .ok_or_else(|| format!("tls: {v:?} is neither implicit nor starttls"))
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

#[cfg(test)]
mod tests {
    use crate::config::parse;
    use crate::target::TlsMode;

    #[test]
    fn tls_key_overrides_the_mode_of_host_and_address_targets() {
        let c = parse(
            "targets:\n  - host: a.test\n    port: 465\n  - host: b.test\n    port: 2465\n    tls: implicit\n  - address: 192.0.2.1\n    port: 465\n    tls: starttls\n",
            "c.yml",
        )
        .unwrap();
        let modes: Vec<_> = c.targets.iter().map(|t| t.tls).collect();
        assert_eq!(
            modes,
            [None, Some(TlsMode::Implicit), Some(TlsMode::Starttls)]
        );
        assert_eq!(TlsMode::for_port(465), TlsMode::Implicit);
        assert_eq!(TlsMode::for_port(587), TlsMode::Starttls);
        assert_eq!(TlsMode::for_port(25), TlsMode::Starttls);
    }

    #[test]
    fn second_ehlo_is_on_unless_switched_off() {
        assert!(parse("targets: []\n", "c.yml").unwrap().ehlo_after_tls);
        let c = parse("smtp:\n  ehlo_after_tls: false\n", "c.yml").unwrap();
        assert!(!c.ehlo_after_tls);
    }

    #[test]
    fn tls_key_is_refused_on_domains_and_for_unknown_words() {
        let e = parse("targets:\n  - domain: a.test\n    tls: implicit\n", "c.yml").unwrap_err();
        assert_eq!(e.place.key, "targets[0]");
        assert!(e.to_string().contains("STARTTLS on port 25"), "{e}");
        let e = parse("targets:\n  - host: a.test\n    tls: ssl\n", "c.yml").unwrap_err();
        assert!(
            e.to_string().contains("neither implicit nor starttls"),
            "{e}"
        );
    }
}
