//! The authoritative-server families (docs/metrics.md, "Every authoritative server"):
//! `mailtls_authoritative_in_sync{target,name,type}` per MX/TLSA RRset of a target, and
//! `mailtls_authoritative_serial{zone,server}` per server address of a zone.
//!
//! The serial family has no `target` label: a zone shared by many targets is written by each
//! of their reports, once per (zone, server) within a report here, and once per scrape by
//! the exposition ([`SERIAL_FAMILY`], see `exposition::assemble`). Labels come from DNS
//! (names, zones) and the server addresses asked, never from error text.
//! Not here: asking the servers (`probe::authoritative`), the comparison (`model::authoritative`).

use std::collections::HashSet;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use super::families::bounded_label;
use super::FROM_LAST;
use crate::model::report::TargetReport;

/// Name of the family whose series several reports share (deduplicated when assembled).
pub(crate) const SERIAL_FAMILY: &str = "mailtls_authoritative_serial";

pub(crate) fn authoritative_families(
    enc: &mut DescriptorEncoder,
    reports: &[&TargetReport],
) -> Result<(), std::fmt::Error> {
    let help = format!("1 when every address of every authoritative server of the zone serves the same RRset (MX and TLSA RRsets); 0 when one differs or does not answer{FROM_LAST}");
    let mut m = enc.encode_descriptor(
        "mailtls_authoritative_in_sync",
        &help,
        None,
        MetricType::Gauge,
    )?;
    for r in reports {
        for s in &r.authoritative {
            let Some(in_sync) = s.in_sync else { continue };
            let name = bounded_label(&s.name);
            let labels = [
                ("target", r.target.as_str()),
                ("name", name.as_ref()),
                ("type", s.rtype.as_str()),
            ];
            m.encode_family(&labels)?
                .encode_gauge(&if in_sync { 1.0 } else { 0.0 })?;
        }
    }
    let help = format!("SOA serial each authoritative server address answers with{FROM_LAST}");
    let mut m = enc.encode_descriptor(SERIAL_FAMILY, &help, None, MetricType::Gauge)?;
    for r in reports {
        let mut seen = HashSet::new();
        for s in &r.authoritative {
            let Some(zone) = &s.zone else { continue };
            for a in &s.servers {
                let Some(serial) = a.serial else { continue };
                let server = a.address.to_string();
                if !seen.insert((zone.as_str(), a.address)) {
                    continue;
                }
                let zone = bounded_label(zone);
                let labels = [("zone", zone.as_ref()), ("server", server.as_str())];
                m.encode_family(&labels)?.encode_gauge(&f64::from(serial))?;
            }
        }
    }
    Ok(())
}

/// Keeps the first sample of each series of `chunk` not yet in `seen` (a series is its line
/// up to the value); for families written by several reports.
pub(crate) fn push_unseen<'a>(out: &mut String, chunk: &'a str, seen: &mut HashSet<&'a str>) {
    for line in chunk.split_inclusive('\n') {
        let series = line.trim_end().rsplit_once(' ').map_or(line, |(s, _)| s);
        if seen.insert(series) {
            out.push_str(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::metrics::{encode_report, render_report};
    use crate::model::authoritative::{RrsetSync, ServerAnswer};
    use crate::model::fixture::complete_report;

    fn with_sync(target: &str, serial_secondary: u32) -> TargetReport {
        let mut r = complete_report();
        r.target = target.into();
        let server = |addr: &str, serial: u32, recs: &[&str]| ServerAnswer {
            server: "ns.example.test".into(),
            address: addr.parse().unwrap(),
            serial: Some(serial),
            records: Some(recs.iter().map(|s| s.to_string()).collect()),
            current: None,
            error: None,
        };
        let mut tlsa = RrsetSync {
            name: "_25._tcp.mx1.example.test".into(),
            rtype: "TLSA".into(),
            zone: Some("example.test".into()),
            in_sync: None,
            servers: vec![
                server("192.0.2.53", 7, &["3 1 1 aa", "3 1 1 bb"]),
                server("192.0.2.54", serial_secondary, &["3 1 1 aa"]),
            ],
            error: None,
        };
        tlsa.judge();
        let mut mx = tlsa.clone();
        mx.name = "example.test".into();
        mx.rtype = "MX".into();
        for s in &mut mx.servers {
            s.records = Some(["10 mx1.example.test".to_string()].into());
        }
        mx.judge();
        r.authoritative = vec![mx, tlsa];
        r
    }

    #[test]
    fn in_sync_per_rrset_and_one_serial_per_zone_and_server() {
        let (body, _) = render_report(Arc::new(with_sync("example.test", 6)), false);
        assert!(body.contains("mailtls_authoritative_in_sync{target=\"example.test\",name=\"_25._tcp.mx1.example.test\",type=\"TLSA\"} 0.0\n"), "{body}");
        assert!(body.contains("mailtls_authoritative_in_sync{target=\"example.test\",name=\"example.test\",type=\"MX\"} 1.0\n"));
        let serials: Vec<_> = body
            .lines()
            .filter(|l| l.starts_with("mailtls_authoritative_serial{"))
            .collect();
        assert_eq!(
            serials,
            [
                "mailtls_authoritative_serial{zone=\"example.test\",server=\"192.0.2.53\"} 7.0",
                "mailtls_authoritative_serial{zone=\"example.test\",server=\"192.0.2.54\"} 6.0",
            ]
        );
    }

    /// The served scrape (streamed plain and gzip from the segment cache), not only the
    /// one-buffer render, writes each shared serial series once.
    #[test]
    fn served_scrapes_write_each_serial_series_once() {
        use std::io::Read;
        #[derive(Debug)]
        struct Two(Vec<Arc<crate::metrics::EncodedReport>>);
        impl crate::metrics::ReportSource for Two {
            fn encoded(&self) -> Vec<Arc<crate::metrics::EncodedReport>> {
                self.0.clone()
            }
        }
        let two = Two(vec![
            Arc::new(encode_report(&Arc::new(with_sync("a.example.test", 6)))),
            Arc::new(encode_report(&Arc::new(with_sync("b.example.test", 7)))),
        ]);
        let e = crate::metrics::Exposition::new(
            prometheus_client::registry::Registry::default(),
            Arc::new(two),
        );
        for om in [true, false] {
            let serials = |body: &str| {
                body.lines()
                    .filter(|l| l.starts_with("mailtls_authoritative_serial{"))
                    .count()
            };
            let plain = String::from_utf8(e.scrape(om, false).collect()).unwrap();
            assert_eq!(serials(&plain), 2, "{plain}");
            let mut gz = String::new();
            flate2::read::GzDecoder::new(&e.scrape(om, true).collect()[..])
                .read_to_string(&mut gz)
                .unwrap();
            assert_eq!(gz, plain);
        }
    }

    #[test]
    fn targets_sharing_a_zone_write_each_serial_series_once() {
        // Two targets, same zone, probed at different times (different serials seen): one
        // series per (zone, server), the first report's sample.
        let a = encode_report(&Arc::new(with_sync("a.example.test", 6)));
        let b = encode_report(&Arc::new(with_sync("b.example.test", 7)));
        let body = crate::metrics::exposition::assemble_for_test(&[Arc::new(a), Arc::new(b)]);
        let serials = body
            .lines()
            .filter(|l| l.starts_with("mailtls_authoritative_serial{"))
            .count();
        assert_eq!(serials, 2, "{body}");
        let in_sync = body
            .lines()
            .filter(|l| l.starts_with("mailtls_authoritative_in_sync{"))
            .count();
        assert_eq!(in_sync, 4);
    }
}
