//! The authoritative servers in the `check` text: per MX/TLSA RRset, whether every server
//! address serves the same RRset, each address with its SOA serial, and which ones lag.
//!
//! Not here: asking them (`probe::authoritative`), the rules (`model::authoritative`).

use std::fmt::Write as _;

use super::Esc;
use crate::model::report::TargetReport;

/// The "authoritative servers" block (nothing when they were not asked).
pub(super) fn render(o: &mut String, r: &TargetReport) {
    if r.authoritative.is_empty() {
        return;
    }
    let _ = writeln!(o, "  authoritative servers:");
    for s in &r.authoritative {
        let state = match s.in_sync {
            Some(true) => "in sync",
            Some(false) => "NOT in sync",
            None => "unknown",
        };
        let zone = s.zone.as_deref().map(Esc);
        let _ = write!(o, "    {} {}: {state}", Esc(&s.name), s.rtype);
        if let Some(z) = zone {
            let _ = write!(o, " (zone {z})");
        }
        if let Some(e) = &s.error {
            let _ = write!(o, ": {}", Esc(e));
        }
        let _ = writeln!(o);
        let lagging: Vec<_> = s.lagging().map(|a| a.address).collect();
        for a in &s.servers {
            let serial = a.serial.map_or_else(|| "-".to_string(), |v| v.to_string());
            let _ = write!(o, "      {} {}: serial {serial}", Esc(&a.server), a.address);
            match (a.current, &a.records) {
                (Some(true), _) => {
                    let _ = write!(o, ", RRset current");
                }
                (Some(false), Some(recs)) => {
                    let _ = write!(o, ", RRset differs ({} records)", recs.len());
                }
                _ => {}
            }
            if lagging.contains(&a.address) {
                let _ = write!(o, ", LAGS");
            }
            if let Some(e) = &a.error {
                let _ = write!(o, ", {}", Esc(e));
            }
            let _ = writeln!(o);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::authoritative::{RrsetSync, ServerAnswer};
    use crate::model::fixture::complete_report;

    #[test]
    fn the_lagging_server_is_named_with_its_serial() {
        let mut r = complete_report();
        let server = |addr: &str, serial: u32, recs: &[&str]| ServerAnswer {
            server: "ns.example.test".into(),
            address: addr.parse().unwrap(),
            serial: Some(serial),
            records: Some(recs.iter().map(|s| s.to_string()).collect()),
            current: None,
            error: None,
        };
        let mut s = RrsetSync {
            name: "_25._tcp.mx1.example.test".into(),
            rtype: "TLSA".into(),
            zone: Some("example.test".into()),
            in_sync: None,
            servers: vec![
                server("192.0.2.53", 7, &["3 1 1 aa", "3 1 1 bb"]),
                server("192.0.2.54", 6, &["3 1 1 aa"]),
            ],
            error: None,
        };
        s.judge();
        r.authoritative = vec![s];
        let mut o = String::new();
        render(&mut o, &r);
        assert!(
            o.contains("_25._tcp.mx1.example.test TLSA: NOT in sync (zone example.test)"),
            "{o}"
        );
        assert!(o.contains("192.0.2.53: serial 7, RRset current\n"), "{o}");
        assert!(
            o.contains("192.0.2.54: serial 6, RRset differs (1 records), LAGS\n"),
            "{o}"
        );
    }
}
