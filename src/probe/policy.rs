//! Which addresses a probe may connect to: the guard that keeps `/probe` from reaching
//! loopback, private and other non-global addresses of targets nobody configured.
//!
//! Owns: [`AddressPolicy`], the non-global test ([`is_global`]) and the refusal it yields.
//! The probe consults it on the addresses it is about to connect to (after DNS, before any
//! SMTP connection), so a name that resolves to 127.0.0.1 is caught as surely as `[127.0.0.1]`.
//! Not here: who gets which policy (`http`, from `config::ProbeAccess`).
//! IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890, RFC 8190); RFC 1918
//! private, RFC 6598 CGNAT, RFC 5737 / RFC 3849 documentation, RFC 4193 unique-local,
//! RFC 4291 §2.4 (only 2000::/3 is global unicast), RFC 6052 NAT64, RFC 3056 6to4.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Which addresses a probe may connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AddressPolicy {
    /// Any address (configured targets, `check`).
    #[default]
    Any,
    /// Globally routable unicast addresses only (`/probe` of a target allowed by pattern,
    /// unless `probe.private_addresses`).
    GlobalOnly,
}

impl AddressPolicy {
    /// `Err` with the reason when the policy forbids connecting to `ip`.
    pub(crate) fn check(self, ip: IpAddr) -> Result<(), Refused> {
        match self {
            Self::Any => Ok(()),
            Self::GlobalOnly if is_global(ip) => Ok(()),
            Self::GlobalOnly => Err(Refused {
                address: ip,
                range: non_global_kind(ip),
            }),
        }
    }
}

/// A probe stopped before connecting: one of its addresses is not global.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("address {address} is {range}: not probed for a target that is not configured (probe.private_addresses is false); no connection was made")]
pub(crate) struct Refused {
    pub(crate) address: IpAddr,
    /// What kind of non-global address (fixed words).
    pub(crate) range: &'static str,
}

/// Globally routable unicast? (std's `IpAddr::is_global` is not stable.)
pub(crate) fn is_global(ip: IpAddr) -> bool {
    non_global_kind(ip) == "global"
}

fn non_global_kind(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => v6_kind(v6),
    }
}

fn v4_kind(ip: Ipv4Addr) -> &'static str {
    let [a, b, c, _] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        "unspecified (0.0.0.0/8)"
    } else if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() {
        "private (RFC 1918)"
    } else if ip.is_link_local() {
        "link-local"
    } else if a == 100 && (64..128).contains(&b) {
        "CGNAT shared space (RFC 6598)"
    } else if ip.is_documentation() {
        "documentation (RFC 5737)"
    } else if ip.is_multicast() {
        "multicast"
    } else if ip.is_broadcast() || a >= 240 {
        "reserved (240.0.0.0/4)"
    } else if a == 192 && b == 0 && c == 0 {
        "IETF protocol assignment (192.0.0.0/24)"
    } else if a == 198 && (b == 18 || b == 19) {
        "benchmarking (198.18.0.0/15)"
    } else {
        "global"
    }
}

fn v6_kind(ip: Ipv6Addr) -> &'static str {
    let s = ip.segments();
    if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if let Some(v4) = ip.to_ipv4_mapped() {
        // ::ffff:a.b.c.d reaches the IPv4 address.
        v4_kind(v4)
    } else if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        // NAT64 well-known prefix: the embedded IPv4 address decides.
        v4_kind(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ))
    } else if s[0] == 0x2002 {
        // 6to4: the embedded IPv4 address decides.
        v4_kind(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ))
    } else if ip.is_multicast() {
        "multicast"
    } else if s[0] & 0xfe00 == 0xfc00 {
        "unique-local (RFC 4193)"
    } else if s[0] & 0xffc0 == 0xfe80 || s[0] & 0xffc0 == 0xfec0 {
        "link-local"
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        "documentation (RFC 3849)"
    } else if s[0] == 0x2001 && s[1] < 0x0200 {
        "IETF protocol assignment (2001::/23)"
    } else if s[0] & 0xe000 != 0x2000 {
        "not global unicast (outside 2000::/3)"
    } else {
        "global"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global(s: &str) -> bool {
        is_global(s.parse().unwrap())
    }

    // IANA special-purpose registries (RFC 6890).
    #[test]
    fn special_purpose_addresses_are_not_global() {
        for a in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.26.0.5",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.2.25",
            "198.51.100.1",
            "203.0.113.9",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::25",
            "2001::1",
            "100::1",
            "::127.0.0.1",
        ] {
            assert!(!global(a), "{a} must not be global");
        }
    }

    #[test]
    fn public_unicast_addresses_are_global() {
        for a in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "2a00:1450:4001::1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(global(a), "{a} must be global");
        }
    }

    #[test]
    fn only_global_only_refuses() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(AddressPolicy::Any.check(lo).is_ok());
        let e = AddressPolicy::GlobalOnly.check(lo).unwrap_err();
        assert_eq!(e.range, "loopback");
        assert!(e.to_string().contains("127.0.0.1 is loopback"), "{e}");
    }
}
