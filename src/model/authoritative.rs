//! What the authoritative servers of a zone serve, asked directly: one [`RrsetSync`] per MX or
//! TLSA RRset of a probe, one [`ServerAnswer`] per server address, and the pure rules that
//! compare them (in sync, which servers lag, which records every server has).
//!
//! Not here: finding the servers and asking them (`probe::authoritative`), rendering
//! (`metrics`, `text`). A record is published only when every authoritative server serves it:
//! a lagging secondary keeps answering part of the world with the old RRset (RFC 7671 §8.1).
//! SOA serials compare in RFC 1982 serial number arithmetic.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::Serialize;

/// One RRset (`name`, `rtype`) as every authoritative server address answers it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RrsetSync {
    /// Owner name: lower case, no trailing dot.
    pub name: String,
    /// `MX` or `TLSA`.
    #[serde(rename = "type")]
    pub rtype: String,
    /// The zone the name is in (its SOA owner), when found.
    pub zone: Option<String>,
    /// Every server address answered and all served the same RRset: `Some(true)`; one
    /// differs, or did not answer: `Some(false)`; no server could be asked (zone or servers
    /// not found, all refused by the address policy): `None`.
    pub in_sync: Option<bool>,
    pub servers: Vec<ServerAnswer>,
    /// Why the servers could not be asked (zone, NS set or addresses not found).
    pub error: Option<String>,
}

/// What one address of one authoritative server answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerAnswer {
    /// The NS host name: lower case, no trailing dot.
    pub server: String,
    pub address: IpAddr,
    /// SOA serial of the zone it serves.
    pub serial: Option<u32>,
    /// The RRset in canonical presentation form (rdata only, sorted); `None` when it did not
    /// answer. An empty set: it answered NODATA or NXDOMAIN.
    pub records: Option<BTreeSet<String>>,
    /// Its RRset equals that of the server with the newest serial.
    pub current: Option<bool>,
    /// Why it gave no usable answer (timeout, rcode, not authoritative, refused by policy).
    pub error: Option<String>,
}

/// RFC 1982 §3.2: is serial `a` newer than `b`?
pub fn serial_newer(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < (1 << 31)
}

impl RrsetSync {
    /// Fills `current` and `in_sync` from the servers' answers: the reference RRset is the
    /// one of the server with the newest serial (RFC 1982), or of the first that answered.
    pub fn judge(&mut self) {
        let reference = self
            .servers
            .iter()
            .filter(|s| s.records.is_some())
            .reduce(|best, s| match (s.serial, best.serial) {
                (Some(a), Some(b)) if serial_newer(a, b) => s,
                (Some(_), None) => s,
                _ => best,
            })
            .and_then(|s| s.records.clone());
        let Some(reference) = reference else {
            for s in &mut self.servers {
                s.current = None;
            }
            self.in_sync = None;
            return;
        };
        for s in &mut self.servers {
            s.current = s.records.as_ref().map(|r| *r == reference);
        }
        self.in_sync = Some(self.servers.iter().all(|s| s.current == Some(true)));
    }

    /// Servers that lag: their RRset differs from the newest, or their serial is older.
    pub fn lagging(&self) -> impl Iterator<Item = &ServerAnswer> {
        let newest = self.newest_serial();
        self.servers.iter().filter(move |s| {
            s.current == Some(false)
                || matches!((s.serial, newest), (Some(a), Some(n)) if serial_newer(n, a))
        })
    }

    /// The newest SOA serial any server answered with.
    pub fn newest_serial(&self) -> Option<u32> {
        self.servers
            .iter()
            .filter_map(|s| s.serial)
            .reduce(|a, b| if serial_newer(b, a) { b } else { a })
    }

    /// Does every server address serve `record` (canonical presentation form)? `Some(false)`
    /// when one lacks it or did not answer; `None` when no server could be asked.
    pub fn on_every_server(&self, record: &str) -> Option<bool> {
        if self.servers.is_empty() || self.in_sync.is_none() {
            return None;
        }
        Some(
            self.servers
                .iter()
                .all(|s| s.records.as_ref().is_some_and(|r| r.contains(record))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(addr: &str, serial: Option<u32>, records: Option<&[&str]>) -> ServerAnswer {
        ServerAnswer {
            server: "ns.example.test".into(),
            address: addr.parse().unwrap_or(IpAddr::from([127, 0, 0, 1])),
            serial,
            records: records.map(|r| r.iter().map(|s| s.to_string()).collect()),
            current: None,
            error: None,
        }
    }

    fn rrset(servers: Vec<ServerAnswer>) -> RrsetSync {
        let mut r = RrsetSync {
            name: "_25._tcp.mx1.example.test".into(),
            rtype: "TLSA".into(),
            zone: Some("example.test".into()),
            in_sync: None,
            servers,
            error: None,
        };
        r.judge();
        r
    }

    #[test]
    fn serials_compare_in_rfc1982_arithmetic() {
        // RFC 1982 §3.2: i1 < i2 when (i2 - i1) mod 2^32 < 2^31.
        assert!(serial_newer(2, 1));
        assert!(!serial_newer(1, 2));
        assert!(!serial_newer(7, 7));
        assert!(serial_newer(3, u32::MAX), "wraps around");
        assert!(!serial_newer(u32::MAX, 3));
    }

    #[test]
    fn equal_rrsets_on_every_address_are_in_sync() {
        let r = rrset(vec![
            server("127.0.0.1", Some(5), Some(&["3 1 1 aa", "2 1 1 bb"])),
            server("127.0.0.2", Some(5), Some(&["2 1 1 bb", "3 1 1 aa"])),
        ]);
        assert_eq!(r.in_sync, Some(true));
        assert_eq!(r.lagging().count(), 0);
        assert_eq!(r.on_every_server("3 1 1 aa"), Some(true));
    }

    #[test]
    fn a_lagging_secondary_lacks_the_new_record_and_is_named() {
        let r = rrset(vec![
            server("127.0.0.1", Some(6), Some(&["3 1 1 aa", "3 1 1 cc"])),
            server("127.0.0.2", Some(5), Some(&["3 1 1 aa"])),
        ]);
        assert_eq!(r.in_sync, Some(false));
        assert_eq!(
            r.servers[0].current,
            Some(true),
            "newest serial is the reference"
        );
        assert_eq!(r.servers[1].current, Some(false));
        let lag: Vec<_> = r.lagging().map(|s| s.address.to_string()).collect();
        assert_eq!(lag, ["127.0.0.2"]);
        assert_eq!(r.on_every_server("3 1 1 cc"), Some(false));
        assert_eq!(r.on_every_server("3 1 1 aa"), Some(true));
    }

    #[test]
    fn an_older_serial_with_the_same_rrset_lags_but_the_rrset_is_in_sync() {
        let r = rrset(vec![
            server("127.0.0.1", Some(6), Some(&["10 mx1.example.test"])),
            server("127.0.0.2", Some(5), Some(&["10 mx1.example.test"])),
        ]);
        assert_eq!(r.in_sync, Some(true));
        assert_eq!(r.lagging().count(), 1);
        assert_eq!(r.newest_serial(), Some(6));
    }

    #[test]
    fn a_silent_server_is_not_in_sync_and_confirms_no_record() {
        let mut silent = server("127.0.0.2", None, None);
        silent.error = Some("timeout".into());
        let r = rrset(vec![
            server("127.0.0.1", Some(6), Some(&["3 1 1 aa"])),
            silent,
        ]);
        assert_eq!(r.in_sync, Some(false));
        assert_eq!(r.servers[1].current, None);
        assert_eq!(r.on_every_server("3 1 1 aa"), Some(false));
    }

    #[test]
    fn no_answer_at_all_is_unknown() {
        let r = rrset(vec![server("127.0.0.1", None, None)]);
        assert_eq!(r.in_sync, None);
        assert_eq!(r.on_every_server("3 1 1 aa"), None);
        assert_eq!(rrset(Vec::new()).in_sync, None);
    }

    #[test]
    fn nodata_on_one_server_differs_from_records_on_another() {
        let r = rrset(vec![
            server("127.0.0.1", Some(6), Some(&["3 1 1 aa"])),
            server("127.0.0.2", Some(6), Some(&[])),
        ]);
        assert_eq!(r.in_sync, Some(false));
    }
}
