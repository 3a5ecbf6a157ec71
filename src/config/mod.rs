//! Configuration: YAML file → validated [`Config`].
//!
//! Owns: the file format (README; unknown keys are errors), defaults (`DEFAULT_*`), and
//! error messages naming file, line and key. `check-config`, start-up, SIGHUP and
//! `POST /-/reload` all go through [`load`] / [`parse`].
//! Not here: acting on the config (`scheduler`), next-hop syntax (`target`).

mod errors;
mod shard;
mod staged;
mod targets;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::shard::{Shard, ShardError, ShardSpec};
use crate::target::{normalize_name, AllowEntry, NextHop};
use errors::At;
pub use errors::{ConfigError, Place};
pub use staged::{Staged, StagedKind, MAX_STAGED_PER_TARGET};
pub use targets::Target;
use targets::{parse_targets, RawTarget};

pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
/// Longest accepted `interval`: a day. Certificates and RRSIGs are judged in days, so a
/// longer interval only hides problems; and the slot arithmetic (`Instant` + interval)
/// must never overflow, whatever a duration string says.
pub(crate) const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_CONCURRENCY: usize = 32;
/// `/probe` requests probing at once (`probe.max_concurrent`).
pub(crate) const DEFAULT_PROBE_MAX_CONCURRENT: usize = 8;
/// Ceiling on `probe.max_concurrent`.
pub(crate) const MAX_PROBE_CONCURRENT: i64 = 1024;
pub(crate) const DEFAULT_RESOLV_CONF: &str = "/etc/resolv.conf";
/// Ceiling on targets, against a config that would exhaust memory.
pub const MAX_TARGETS: usize = 1_000_000;

/// The sidecar default: probe the local MTA, no DNS needed.
pub(crate) const EMBEDDED_DEFAULT: &str = "\
# Embedded default: the sidecar case. Probes the local MTA on 127.0.0.1:25.
interval: 1m
timeout: 30s
concurrency: 4
targets:
  - address: 127.0.0.1
    port: 25
";

/// How DNSSEC state is established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Validation {
    /// Trust the AD bit of a local validating resolver.
    #[default]
    Upstream,
    /// Validate in-process from trust anchors, against a non-validating recursive resolver.
    Local,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DnsConfig {
    pub resolver: SocketAddr,
    pub validation: Validation,
    /// Local mode: DNSKEY records in presentation format; `None` = the IANA root keys.
    pub trust_anchor: Option<PathBuf>,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where it came from: a path or `<embedded default>`.
    pub source: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub concurrency: usize,
    pub dns: DnsConfig,
    pub(crate) helo_name: String,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) probe: ProbeConfig,
    /// The `shard:` keys (the `--shard.*` flags win over them: [`Config::shard_with`]).
    pub shard: ShardSpec,
    pub targets: Vec<Target>,
    /// Where first-seen times of TLSA records are kept across restarts; `None` = memory only.
    pub state_file: Option<PathBuf>,
}

/// The `probe:` section: limits of `/probe` for targets that are not configured.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProbeConfig {
    /// What `/probe` may be asked for beyond configured targets (default: nothing).
    pub(crate) allow: Vec<AllowEntry>,
    /// `/probe` requests probing at once; the others wait for a slot.
    pub(crate) max_concurrent: usize,
    /// May a `/probe` of a target that is not configured connect to a non-global address?
    pub(crate) private_addresses: bool,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            max_concurrent: DEFAULT_PROBE_MAX_CONCURRENT,
            private_addresses: false,
        }
    }
}

/// Why `/probe` may probe a next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeAccess {
    /// A configured target: never restricted (the sidecar probes loopback).
    Configured,
    /// Matched by `probe.allow`: subject to `probe.private_addresses`.
    Allowed,
}

impl Config {
    /// Upstream mode with a resolver that is not on loopback, in a config that may query it
    /// (a target needs DNS, or `/probe` may be asked for names): the AD bit that decides
    /// every DNSSEC state then travels unauthenticated over the network, and is only as
    /// trustworthy as that path (RFC 4035 §4.9.3; docs/dnssec.md). The
    /// scheduler logs a warning at start and on reload, `check-config` prints one.
    pub fn trusts_remote_ad_bit(&self) -> bool {
        let ip = self.dns.resolver.ip().to_canonical();
        let may_query = !self.probe.allow.is_empty()
            || self
                .targets
                .iter()
                .any(|t| !matches!(t.hop, NextHop::Address { .. }));
        self.dns.validation == Validation::Upstream && !ip.is_loopback() && may_query
    }

    /// May `/probe` probe this next hop, and on what terms? Configured targets always;
    /// others when a `probe.allow` entry matches (names by name, addresses by network,
    /// each on the entry's port).
    pub(crate) fn probe_access(&self, hop: &NextHop) -> Option<ProbeAccess> {
        if self.targets.iter().any(|t| &t.hop == hop) {
            Some(ProbeAccess::Configured)
        } else if self.probe.allow.iter().any(|a| a.matches(hop)) {
            Some(ProbeAccess::Allowed)
        } else {
            None
        }
    }

    /// The shard of this replica: `flags` over the `shard:` keys; `None` = no sharding.
    pub fn shard_with(&self, flags: &ShardSpec) -> Result<Option<Shard>, ShardError> {
        flags.over(&self.shard).resolve()
    }

    /// The targets the scheduler probes: those `shard` owns (README, "Scaling out"), all of
    /// them without one. `/probe` still serves every configured target.
    pub fn scheduled_targets(&self, shard: Option<Shard>) -> impl Iterator<Item = &Target> {
        let shard = shard.unwrap_or(Shard::ALL);
        self.targets.iter().filter(move |t| shard.owns(&t.name))
    }

    /// May `/probe` probe this next hop at all? See [`Config::probe_access`].
    pub fn probe_allowed(&self, hop: &NextHop) -> bool {
        self.probe_access(hop).is_some()
    }
}

// ---- raw file format -------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    concurrency: Option<Spanned<i64>>,
    dns: Option<RawDns>,
    smtp: Option<RawSmtp>,
    pkix: Option<RawPkix>,
    probe: Option<RawProbe>,
    shard: Option<shard::RawShard>,
    state_file: Option<Spanned<String>>,
    #[serde(default)]
    targets: Vec<Spanned<RawTarget>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDns {
    resolver: Option<Spanned<String>>,
    validation: Option<Spanned<String>>,
    trust_anchor: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    helo_name: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPkix {
    ca_file: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    max_concurrent: Option<Spanned<i64>>,
    private_addresses: Option<Spanned<bool>>,
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        place: Place {
            file: file.clone(),
            line: None,
            key: String::new(),
        },
        message: format!("cannot read: {e}"),
    })?;
    parse(&text, &file)
}

/// The embedded default (sidecar) config.
pub fn embedded_default() -> Result<Config, ConfigError> {
    parse(EMBEDDED_DEFAULT, "<embedded default>")
}

/// Parses and validates config text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    let at = At(file);
    let raw: RawConfig = if text.trim().is_empty() {
        RawConfig::default()
    } else {
        serde_saphyr::from_str(text).map_err(|e| {
            let (place, message) = Place::of_yaml_error(file, &e);
            ConfigError { place, message }
        })?
    };
    let interval = at.duration(&raw.interval, "interval", DEFAULT_INTERVAL)?;
    if let (Some(i), true) = (&raw.interval, interval > MAX_INTERVAL) {
        return Err(at.err(
            Some(i.referenced.line()),
            "interval",
            format!(
                "{:?} is longer than the maximum of {}h",
                i.value.trim(),
                MAX_INTERVAL.as_secs() / 3600
            ),
        ));
    }
    // Without an explicit timeout, a short interval bounds the default one: a probe never
    // runs into the next round of the same target.
    let timeout = at.duration(&raw.timeout, "timeout", DEFAULT_TIMEOUT.min(interval))?;
    if let (Some(t), true) = (&raw.timeout, timeout > interval) {
        return Err(at.err(
            Some(t.referenced.line()),
            "timeout",
            format!("{timeout:?} is longer than interval {interval:?}"),
        ));
    }
    let concurrency = at.count(
        &raw.concurrency,
        "concurrency",
        1..=100_000,
        DEFAULT_CONCURRENCY,
    )?;
    Ok(Config {
        source: file.to_string(),
        interval,
        timeout,
        concurrency,
        dns: parse_dns(&at, raw.dns.unwrap_or_default())?,
        helo_name: parse_smtp(&at, raw.smtp.unwrap_or_default())?,
        ca_file: parse_pkix(&at, raw.pkix.unwrap_or_default())?,
        probe: parse_probe(&at, raw.probe.unwrap_or_default())?,
        shard: shard::parse_shard(&at, raw.shard.unwrap_or_default())?,
        targets: parse_targets(&at, &raw.targets)?,
        state_file: parse_state_file(&at, &raw.state_file)?,
    })
}

/// The `dns:` section.
fn parse_dns(at: &At, raw: RawDns) -> Result<DnsConfig, ConfigError> {
    let validation = match &raw.validation {
        None => Validation::default(),
        Some(v) => match v.value.as_str() {
            "upstream" => Validation::Upstream,
            "local" => Validation::Local,
            other => {
                return Err(at.err(
                    Some(v.referenced.line()),
                    "dns.validation",
                    format!("{other:?} is neither \"upstream\" nor \"local\""),
                ))
            }
        },
    };
    let resolver = match &raw.resolver {
        Some(r) => parse_resolver(&r.value).ok_or_else(|| {
            at.err(
                Some(r.referenced.line()),
                "dns.resolver",
                format!(
                    "{:?} is not an address (use 127.0.0.1:53 or [::1]:53)",
                    r.value
                ),
            )
        })?,
        None => system_resolver(Path::new(DEFAULT_RESOLV_CONF)),
    };
    let trust_anchor = match &raw.trust_anchor {
        None => None,
        Some(t) if validation != Validation::Local => {
            return Err(at.err(
                Some(t.referenced.line()),
                "dns.trust_anchor",
                "only used with validation: local".into(),
            ))
        }
        Some(t) => Some(readable_file(at, t, "dns.trust_anchor")?),
    };
    Ok(DnsConfig {
        resolver,
        validation,
        trust_anchor,
    })
}

fn readable_file(at: &At, v: &Spanned<String>, key: &str) -> Result<PathBuf, ConfigError> {
    let p = PathBuf::from(&v.value);
    if p.is_file() {
        Ok(p)
    } else {
        Err(at.err(
            Some(v.referenced.line()),
            key,
            format!("{} is not a readable file", v.value),
        ))
    }
}

/// `state_file`: a file name whose directory exists (the file itself is created on first write).
fn parse_state_file(at: &At, v: &Option<Spanned<String>>) -> Result<Option<PathBuf>, ConfigError> {
    let Some(v) = v else { return Ok(None) };
    let p = PathBuf::from(v.value.trim());
    let line = Some(v.referenced.line());
    if p.as_os_str().is_empty() || p.is_dir() {
        return Err(at.err(
            line,
            "state_file",
            format!("{:?} is not a file name", v.value),
        ));
    }
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(at.err(
            line,
            "state_file",
            format!("directory {} does not exist", dir.display()),
        ));
    }
    Ok(Some(p))
}

/// The `smtp:` section: the EHLO name.
fn parse_smtp(at: &At, raw: RawSmtp) -> Result<String, ConfigError> {
    match raw.helo_name {
        Some(h) => normalize_name(&h.value).map_err(|_| {
            at.err(
                Some(h.referenced.line()),
                "smtp.helo_name",
                format!("{:?} is not a host name", h.value),
            )
        }),
        None => Ok(system_host_name()),
    }
}

/// The `pkix:` section: the CA file.
fn parse_pkix(at: &At, raw: RawPkix) -> Result<Option<PathBuf>, ConfigError> {
    raw.ca_file
        .map(|c| readable_file(at, &c, "pkix.ca_file"))
        .transpose()
}

/// The `probe:` section: what `/probe` may do beyond configured targets.
fn parse_probe(at: &At, raw: RawProbe) -> Result<ProbeConfig, ConfigError> {
    let mut allow = Vec::with_capacity(raw.allow.len());
    for (i, a) in raw.allow.iter().enumerate() {
        let entry = AllowEntry::parse(&a.value)
            .map_err(|m| at.err(Some(a.referenced.line()), &format!("probe.allow[{i}]"), m))?;
        allow.push(entry);
    }
    Ok(ProbeConfig {
        allow,
        max_concurrent: at.count(
            &raw.max_concurrent,
            "probe.max_concurrent",
            1..=MAX_PROBE_CONCURRENT,
            DEFAULT_PROBE_MAX_CONCURRENT,
        )?,
        private_addresses: raw.private_addresses.is_some_and(|p| p.value),
    })
}

fn parse_resolver(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    s.parse::<SocketAddr>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
}

/// First `nameserver` of resolv.conf(5), port 53; 127.0.0.1:53 when there is none (as glibc).
pub(crate) fn system_resolver(path: &Path) -> SocketAddr {
    let fallback = SocketAddr::from(([127, 0, 0, 1], 53));
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let mut w = l.split_whitespace();
                match (w.next(), w.next()) {
                    (Some("nameserver"), Some(a)) => {
                        // Scoped IPv6 (fe80::1%eth0) is not supported here; skip it.
                        a.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53))
                    }
                    _ => None,
                }
            })
        })
        .unwrap_or(fallback)
}

/// The kernel's host name, used as the default EHLO name.
pub(crate) fn system_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .and_then(|h| normalize_name(h.trim()).ok())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_probes_local_mta() {
        let c = embedded_default().unwrap();
        assert_eq!(c.targets.len(), 1);
        assert_eq!(c.targets[0].name, "[127.0.0.1]");
        assert_eq!(c.dns.validation, Validation::Upstream);
    }

    #[test]
    fn full_contract_example_parses() {
        let text = r#"
interval: 5m
timeout: 30s
concurrency: 32
dns:
  resolver: 127.0.0.1:53
  validation: upstream
smtp:
  helo_name: probe.example.org
probe:
  allow: ["*.example.org"]
targets:
  - domain: example.org
  - host: mx1.example.net
    port: 25
  - address: 192.0.2.25
    port: 25
"#;
        let c = parse(text, "t.yml").unwrap();
        assert_eq!(c.interval, Duration::from_secs(300));
        assert_eq!(c.helo_name, "probe.example.org");
        let names: Vec<_> = c.targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["example.org", "[mx1.example.net]", "[192.0.2.25]"]);
        assert!(c.probe_allowed(&NextHop::parse("[mx9.example.org]").unwrap()));
        assert!(!c.probe_allowed(&NextHop::parse("[mx9.example.org]:587").unwrap()));
        assert!(!c.probe_allowed(&NextHop::parse("evil.test").unwrap()));
        assert_eq!(
            c.probe_access(&NextHop::parse("example.org").unwrap()),
            Some(ProbeAccess::Configured)
        );
        assert_eq!(
            c.probe,
            ProbeConfig {
                allow: c.probe.allow.clone(),
                ..Default::default()
            }
        );
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = parse("interval: 5m\nbogus: 1\n", "c.yml").unwrap_err();
        assert_eq!(e.place.file, "c.yml");
        assert_eq!(e.place.line, Some(2));
        assert!(e.place.key.contains("bogus"), "{e}");

        let e = parse("interval: 5m\ntimeout: soon\n", "c.yml").unwrap_err();
        assert_eq!((e.place.line, e.place.key.as_str()), (Some(2), "timeout"));

        let e = parse(
            "targets:\n  - domain: a.test\n  - host: b.test\n    domain: c.test\n",
            "c.yml",
        )
        .unwrap_err();
        assert_eq!(
            (e.place.line, e.place.key.as_str()),
            (Some(3), "targets[1]"),
            "{e}"
        );

        let e = parse("dns:\n  validation: maybe\n", "c.yml").unwrap_err();
        assert_eq!(
            (e.place.line, e.place.key.as_str()),
            (Some(2), "dns.validation")
        );

        let e = parse(
            "targets:\n  - domain: a.test\n  - domain: A.test.\n",
            "c.yml",
        )
        .unwrap_err();
        assert!(e.message.contains("duplicate"), "{e}");

        let e = parse("targets:\n  - domain: a.test\n    port: 587\n", "c.yml").unwrap_err();
        assert_eq!(e.place.key, "targets[0]");
    }

    #[test]
    fn remote_upstream_resolver_is_flagged_only_when_it_may_be_asked() {
        let cfg = |resolver: &str, validation: &str, targets: &str| {
            parse(
                &format!("dns:\n  resolver: {resolver}\n  validation: {validation}\n{targets}"),
                "c.yml",
            )
            .unwrap()
        };
        let domain = "targets:\n  - domain: example.org\n";
        let address = "targets:\n  - address: 192.0.2.25\n";
        let allow = "probe:\n  allow: [\"*.example.org\"]\ntargets:\n  - address: 192.0.2.25\n";
        assert!(cfg("192.0.2.53:53", "upstream", domain).trusts_remote_ad_bit());
        assert!(cfg("'[2001:db8::53]:53'", "upstream", domain).trusts_remote_ad_bit());
        assert!(cfg("192.0.2.53:53", "upstream", allow).trusts_remote_ad_bit());
        // Loopback (IPv4, IPv6, IPv4-mapped): the path never leaves the host.
        for lo in ["127.0.0.53:53", "'[::1]:53'", "'[::ffff:127.0.0.1]:53'"] {
            assert!(!cfg(lo, "upstream", domain).trusts_remote_ad_bit(), "{lo}");
        }
        // Local mode checks signatures itself; an address-only config never asks.
        assert!(!cfg("192.0.2.53:53", "local", domain).trusts_remote_ad_bit());
        assert!(!cfg("192.0.2.53:53", "upstream", address).trusts_remote_ad_bit());
    }

    #[test]
    fn default_timeout_never_exceeds_a_short_interval() {
        let c = parse("interval: 10s\n", "c.yml").unwrap();
        assert_eq!(c.timeout, Duration::from_secs(10));
        let c = parse("interval: 5m\n", "c.yml").unwrap();
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        assert!(parse("interval: 10s\ntimeout: 11s\n", "c.yml").is_err());
    }

    #[test]
    fn interval_is_bounded_by_a_day() {
        let c = parse("interval: 24h\n", "c.yml").unwrap();
        assert_eq!(c.interval, MAX_INTERVAL);
        let e = parse("timeout: 10s\ninterval: 24h 1s\n", "c.yml").unwrap_err();
        assert_eq!((e.place.line, e.place.key.as_str()), (Some(2), "interval"));
        assert_eq!(
            e.to_string(),
            "c.yml:2: interval: \"24h 1s\" is longer than the maximum of 24h"
        );
        assert!(parse("interval: 100000000years\n", "c.yml").is_err());
    }

    #[test]
    fn probe_section_keys_are_validated_with_their_place() {
        let c = parse(
            "probe:\n  allow: [\"[127.26.0.0/16]:2525\"]\n  max_concurrent: 3\n  private_addresses: true\n",
            "c.yml",
        )
        .unwrap();
        assert_eq!(
            (c.probe.max_concurrent, c.probe.private_addresses),
            (3, true)
        );
        assert_eq!(
            c.probe_access(&NextHop::parse("[127.26.0.9]:2525").unwrap()),
            Some(ProbeAccess::Allowed)
        );
        let e = parse("probe:\n  allow:\n    - a.test\n    - 10.0.0.*\n", "c.yml").unwrap_err();
        assert_eq!(
            (e.place.line, e.place.key.as_str()),
            (Some(4), "probe.allow[1]"),
            "{e}"
        );
        let e = parse("probe:\n  max_concurrent: 0\n", "c.yml").unwrap_err();
        assert_eq!(
            (e.place.line, e.place.key.as_str()),
            (Some(2), "probe.max_concurrent")
        );
    }

    #[test]
    fn resolv_conf_first_nameserver_wins() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("resolv.conf");
        std::fs::write(
            &p,
            "# x\nsearch a\nnameserver 127.53.0.2\nnameserver 10.0.0.1\n",
        )
        .unwrap();
        assert_eq!(system_resolver(&p), "127.53.0.2:53".parse().unwrap());
        assert_eq!(
            system_resolver(&dir.path().join("missing")),
            "127.0.0.1:53".parse().unwrap()
        );
    }
}
