//! Probe targets in Postfix next-hop syntax, and the `probe.allow` entries.
//!
//! Owns: parsing `example.org`, `[mx1.example.org]`, `[mx1.example.org]:587`,
//! `[192.0.2.25]:25` and `[2001:db8::25]` into a [`NextHop`], and its canonical
//! display (the `target` label); parsing and matching [`AllowEntry`] (name patterns match
//! names only, CIDR entries addresses only, each on one port).
//! Not here: DNS (`probe::mx`), config files (`config`), which addresses a probe may
//! connect to (`probe::AddressPolicy`).
//! Postfix `transport(5)` next-hop syntax; RFC 5321 §2.3.5 domain names; RFC 4632 CIDR.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// Default SMTP port (RFC 5321 §4.5.4.2 relays use port 25).
pub(crate) const DEFAULT_PORT: u16 = 25;

/// Submission port with implicit TLS (RFC 8314 §3.3, §7.3: "submissions").
pub(crate) const IMPLICIT_TLS_PORT: u16 = 465;

/// How TLS starts on a connection: STARTTLS after EHLO in plaintext (RFC 3207), or a TLS
/// handshake right after connecting, before the greeting (implicit TLS, RFC 8314 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    Starttls,
    Implicit,
}

impl TlsMode {
    /// The mode a port implies: implicit TLS on 465, STARTTLS elsewhere (25, 587, ...).
    pub fn for_port(port: u16) -> Self {
        if port == IMPLICIT_TLS_PORT {
            Self::Implicit
        } else {
            Self::Starttls
        }
    }

    /// Fixed value set: the config spelling, safe as a label or log field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starttls => "starttls",
            Self::Implicit => "implicit",
        }
    }

    /// The config spelling back (`tls: implicit|starttls`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "starttls" => Some(Self::Starttls),
            "implicit" => Some(Self::Implicit),
            _ => None,
        }
    }
}

/// What to probe: a mail domain (MX lookup), one host (no MX lookup), or one address (no DNS).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NextHop {
    /// Mail domain: MX lookup, every MX host, every address, port 25.
    Domain(String),
    /// One host name, no MX lookup; TLSA base name = host.
    Host { host: String, port: u16 },
    /// One address, no DNS at all: STARTTLS and certificate facts, no DANE verdict.
    Address { ip: IpAddr, port: u16 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("empty target")]
    Empty,
    #[error("invalid domain name {0:?}")]
    BadName(String),
    #[error("invalid port in {0:?}")]
    BadPort(String),
    #[error("unbalanced brackets in {0:?}")]
    Brackets(String),
}

impl NextHop {
    /// Parses Postfix next-hop syntax (see the module doc).
    pub fn parse(s: &str) -> Result<Self, TargetError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(TargetError::Empty);
        }
        if let Some(rest) = s.strip_prefix('[') {
            let Some((inner, after)) = rest.split_once(']') else {
                return Err(TargetError::Brackets(s.to_string()));
            };
            let port =
                port_after_bracket(after).ok_or_else(|| TargetError::BadPort(s.to_string()))?;
            let inner = inner.strip_prefix("ipv6:").unwrap_or(inner);
            if let Ok(ip) = inner.parse::<IpAddr>() {
                return Ok(Self::Address { ip, port });
            }
            return Ok(Self::Host {
                host: normalize_name(inner)?,
                port,
            });
        }
        if s.contains(']') {
            return Err(TargetError::Brackets(s.to_string()));
        }
        if s.parse::<IpAddr>().is_ok() {
            // A bare address is not a mail domain; Postfix needs brackets too.
            return Err(TargetError::BadName(s.to_string()));
        }
        Ok(Self::Domain(normalize_name(s)?))
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Domain(_) => "domain",
            Self::Host { .. } => "host",
            Self::Address { .. } => "address",
        }
    }
}

impl fmt::Display for NextHop {
    /// Canonical next-hop form: `example.org`, `[mx1.example.org]`, `[mx1.example.org]:587`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (inner, port) = match self {
            Self::Domain(d) => return f.write_str(d),
            Self::Host { host, port } => (host.clone(), *port),
            Self::Address { ip, port } => (ip.to_string(), *port),
        };
        if port == DEFAULT_PORT {
            write!(f, "[{inner}]")
        } else {
            write!(f, "[{inner}]:{port}")
        }
    }
}

/// Lower case, no trailing dot, LDH labels of 1..=63 octets, at most 253 octets.
/// Underscores are accepted (they occur in real host names). An IPv4 address with a trailing
/// dot (`192.0.2.1.`) is not a name: its canonical form would read as an address.
pub fn normalize_name(s: &str) -> Result<String, TargetError> {
    let n = s.trim_end_matches('.').to_ascii_lowercase();
    let ok = !n.is_empty()
        && n.parse::<IpAddr>().is_err()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(n)
    } else {
        Err(TargetError::BadName(s.to_string()))
    }
}

/// Shell-style pattern: `*` matches any run of characters (dots included), `?` one character.
/// Case-insensitive, as DNS names are.
pub(crate) fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<u8> = pattern.bytes().map(|b| b.to_ascii_lowercase()).collect();
    let n: Vec<u8> = name.bytes().map(|b| b.to_ascii_lowercase()).collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// What one `probe.allow` entry matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AllowPattern {
    /// A [`glob_match`] pattern over host and domain names; never matches an address target.
    Name(String),
    /// A network (CIDR; a single address is a /32 or /128); matches address targets only.
    Network(IpNet),
}

/// One `probe.allow` entry: a pattern and the one port it allows.
///
/// `*.example.org` allows domains and `[host]` targets on port 25; `[*.example.net]:587`
/// only `[host]` targets on port 587 (brackets mean "this host, no MX lookup", as in Postfix);
/// `192.0.2.0/24` and `[2001:db8::/32]:465` allow address targets in that network on that port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AllowEntry {
    pub(crate) pattern: AllowPattern,
    pub(crate) port: u16,
    /// Written in brackets: `[host]` targets only, never a mail domain.
    pub(crate) bracketed: bool,
}

impl AllowEntry {
    /// Parses an entry (see the type doc); the error says what is wrong, for the config message.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        if s.is_empty() || s.contains(char::is_whitespace) {
            return Err(format!("{s:?} is not a name pattern or network"));
        }
        let (inner, port, bracketed) = match s.strip_prefix('[') {
            Some(rest) => {
                let Some((inner, after)) = rest.split_once(']') else {
                    return Err(format!("unbalanced brackets in {s:?}"));
                };
                let port = port_after_bracket(after)
                    .ok_or_else(|| format!("invalid port in {s:?} (use [host]:587)"))?;
                (inner.strip_prefix("ipv6:").unwrap_or(inner), port, true)
            }
            None if s.contains(']') => return Err(format!("unbalanced brackets in {s:?}")),
            None => (s.as_str(), DEFAULT_PORT, false),
        };
        if let Ok(net) = inner.parse::<IpNet>() {
            return Ok(Self {
                pattern: AllowPattern::Network(net.trunc()),
                port,
                bracketed,
            });
        }
        if let Ok(ip) = inner.parse::<IpAddr>() {
            return Ok(Self {
                pattern: AllowPattern::Network(IpNet::from(ip)),
                port,
                bracketed,
            });
        }
        if inner.contains(':') {
            return Err(format!(
                "{s:?}: a port needs brackets ([host]:587), and an IPv6 network is written [2001:db8::/32]"
            ));
        }
        let name_chars =
            |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'*' | b'?');
        if inner.is_empty() || !inner.bytes().all(name_chars) || inner.contains("..") {
            return Err(format!("{s:?} is not a name pattern or network"));
        }
        // `10.0.0.*` would also match the name 10.0.0.1.attacker.example, which DNS can
        // point anywhere: addresses are allowed by network only.
        let address_like = inner.bytes().any(|b| b.is_ascii_digit())
            && inner.split('.').all(|l| {
                l.bytes()
                    .all(|b| b.is_ascii_digit() || b == b'*' || b == b'?')
            });
        if address_like {
            return Err(format!(
                "{s:?} looks like an address pattern: allow addresses by network (CIDR), e.g. 10.0.0.0/24"
            ));
        }
        Ok(Self {
            pattern: AllowPattern::Name(inner.trim_end_matches('.').to_string()),
            port,
            bracketed,
        })
    }

    /// Does this entry allow `hop`? Names match names, networks addresses, on the entry's port.
    pub(crate) fn matches(&self, hop: &NextHop) -> bool {
        match (&self.pattern, hop) {
            (AllowPattern::Name(p), NextHop::Domain(d)) => {
                !self.bracketed && self.port == DEFAULT_PORT && glob_match(p, d)
            }
            (AllowPattern::Name(p), NextHop::Host { host, port }) => {
                *port == self.port && glob_match(p, host)
            }
            (AllowPattern::Network(n), NextHop::Address { ip, port }) => {
                *port == self.port && n.contains(ip)
            }
            _ => false,
        }
    }
}

/// The port after `]` in `[host]:PORT` (none: [`DEFAULT_PORT`]); `None` when it is not a
/// port number from 1 to 65535.
fn port_after_bracket(after: &str) -> Option<u16> {
    match after {
        "" => Some(DEFAULT_PORT),
        p => p
            .strip_prefix(':')
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|p| *p != 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(entry: &str, target: &str) -> bool {
        AllowEntry::parse(entry)
            .unwrap()
            .matches(&NextHop::parse(target).unwrap())
    }

    #[test]
    fn name_entries_allow_names_on_their_port_only() {
        assert!(allows("*.example.org", "mx1.example.org"));
        assert!(allows("*.example.org", "[mx1.example.org]"));
        assert!(allows("*.example.org", "[mx1.example.org]:25"));
        assert!(!allows("*.example.org", "[mx1.example.org]:22"));
        assert!(!allows("*.example.org", "[mx1.example.org]:587"));
        assert!(allows("[*.example.net]:587", "[mx.example.net]:587"));
        assert!(!allows("[*.example.net]:587", "[mx.example.net]"));
        assert!(!allows("[*.example.net]:587", "example.net"));
        // Brackets: the host itself, never a mail domain (no MX lookup).
        assert!(allows("[*.example.net]", "[mx.example.net]"));
        assert!(!allows("[*.example.net]", "sub.example.net"));
        assert!(!allows("*", "[192.0.2.1]"));
    }

    #[test]
    fn network_entries_allow_addresses_in_the_network_only() {
        assert!(allows("192.0.2.0/24", "[192.0.2.25]"));
        assert!(!allows("192.0.2.0/24", "[192.0.3.25]"));
        assert!(!allows("192.0.2.0/24", "[192.0.2.25]:2525"));
        assert!(allows("[127.26.0.0/16]:2525", "[127.26.0.7]:2525"));
        assert!(allows("[2001:db8::/32]:465", "[2001:db8::25]:465"));
        assert!(!allows("[2001:db8::/32]:465", "[2001:db8::25]"));
        assert!(allows("192.0.2.25", "[192.0.2.25]"));
        assert!(!allows("192.0.2.25", "[192.0.2.26]"));
        // A name that looks like an address is a name: DNS can point it anywhere.
        assert!(!allows("10.0.0.0/8", "10.0.0.1.attacker.test"));
        assert!(!allows("10.0.0.0/8", "[10.0.0.1.attacker.test]"));
    }

    #[test]
    fn address_like_and_malformed_entries_are_rejected() {
        for bad in [
            "10.0.0.*",
            "192.168.*.*",
            "",
            "a b",
            "[x.example",
            "[x.example]:0",
            "[x.example]:70000",
            "x.example:587",
            "a..b",
            "ex$ample.org",
            "192.0.2.0/33",
        ] {
            assert!(
                AllowEntry::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert_eq!(
            AllowEntry::parse("192.0.2.9/24").unwrap().pattern,
            AllowPattern::Network("192.0.2.0/24".parse().unwrap())
        );
    }

    #[test]
    fn parses_postfix_next_hop_forms() {
        assert_eq!(
            NextHop::parse("Example.ORG."),
            Ok(NextHop::Domain("example.org".into()))
        );
        assert_eq!(
            NextHop::parse("[mx1.example.org]"),
            Ok(NextHop::Host {
                host: "mx1.example.org".into(),
                port: 25
            })
        );
        assert_eq!(
            NextHop::parse("[mx1.example.org]:587"),
            Ok(NextHop::Host {
                host: "mx1.example.org".into(),
                port: 587
            })
        );
        assert_eq!(
            NextHop::parse("[192.0.2.25]:25"),
            Ok(NextHop::Address {
                ip: "192.0.2.25".parse().unwrap(),
                port: 25
            })
        );
        assert_eq!(
            NextHop::parse("[ipv6:2001:db8::25]"),
            Ok(NextHop::Address {
                ip: "2001:db8::25".parse().unwrap(),
                port: 25
            })
        );
    }

    #[test]
    fn rejects_malformed_next_hops() {
        for bad in [
            "",
            "[mx1",
            "mx]",
            "[mx]:0",
            "[mx]:x",
            "[mx]:99999",
            "a..b",
            "-a.b",
            "a b",
            "192.0.2.1",
            "[]",
            // Found by fuzz/ (probe_query): accepted as the domain "10.0.0.0", whose
            // canonical name then read as an address and did not parse back.
            "10.0.0.0.",
            "[192.0.2.1.]:587",
        ] {
            assert!(NextHop::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn display_is_canonical_next_hop() {
        for s in [
            "example.org",
            "[mx1.example.org]",
            "[mx1.example.org]:587",
            "[192.0.2.25]",
            "[2001:db8::25]:2525",
        ] {
            assert_eq!(NextHop::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(
            NextHop::parse("[mx1.example.org]:25").unwrap().to_string(),
            "[mx1.example.org]"
        );
    }

    #[test]
    fn canonical_name_parses_back() {
        for s in [
            "Example.ORG.",
            "[MX1.example.org.]:587",
            "[ipv6:2001:db8::25]",
            "10.0.0.1.example",
        ] {
            let hop = NextHop::parse(s).unwrap();
            assert_eq!(NextHop::parse(&hop.to_string()), Ok(hop));
        }
        assert!(normalize_name("192.0.2.1.").is_err());
        assert_eq!(normalize_name("0.1.atta"), Ok("0.1.atta".to_string()));
    }

    #[test]
    fn glob_matches_like_a_shell() {
        assert!(glob_match("*.example.org", "mx1.example.org"));
        assert!(glob_match("*.example.org", "a.b.example.org"));
        assert!(!glob_match("*.example.org", "example.org"));
        assert!(glob_match("mx?.example.org", "MX1.example.org"));
        assert!(glob_match("*", "anything"));
        assert!(!glob_match("example.org", "example.org.evil"));
        assert!(glob_match("127.0.0.*", "127.0.0.1"));
    }
}
