//! From mail domain to MX hosts, addresses and the TLSA RRset that decides DANE.
//!
//! Owns: RFC 7672 §2.2 as Postfix applies it: the MX lookup (implicit MX, null MX of
//! RFC 7505), address lookups per host, when DANE applies (secure addresses; an insecure
//! MX RRset does not prevent it, as Postfix ≥ 3.6 `smtp_tls_dane_insecure_mx_policy=dane`),
//! the TLSA base name for CNAME'd hosts (§2.2.2: expanded name first, then the original),
//! and "never fall back" on failed or bogus lookups.
//! Not here: sending queries or DNSSEC classification (`dns`), matching (`dane`).

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::{Name, RecordType};

use super::dns::Dns;
use crate::model::dns::{Answer, Data, Dnssec, Mx, Outcome};
use crate::model::tlsa::Tlsa;

/// Ceiling on MX hosts probed per domain (a monitor probes them all, within reason).
pub const MAX_MX_HOSTS: usize = 32;
/// Ceiling on addresses probed per host.
pub const MAX_ADDRESSES_PER_HOST: usize = 16;

/// The MX set of a domain.
pub struct MxSet {
    pub answer: Arc<Answer>,
    /// (preference, host) sorted by preference, then name; each host once, with its lowest
    /// preference.
    pub hosts: Vec<(u16, String)>,
    pub implicit: bool,
    pub null: bool,
    /// Why no host can be probed (lookup failed, NXDOMAIN, null MX).
    pub error: Option<String>,
}

/// What to resolve for one host.
#[derive(Debug, Clone)]
pub struct HostPlan {
    /// Host name as in the MX RRset (or the host target).
    pub mx: String,
    pub preference: Option<u16>,
    pub port: u16,
    /// The next-hop domain (or the host itself for host targets): a DANE-TA reference name.
    pub next_hop: String,
    /// The MX RRset was secure (always true for host targets: there is none).
    pub mx_secure: bool,
}

/// DNS facts of one host and what they mean for DANE.
#[derive(Debug, Clone, Default)]
pub struct HostDns {
    pub addrs: Vec<IpAddr>,
    pub address_dnssec: Dnssec,
    pub tlsa_base: Option<String>,
    pub tlsa_records: Vec<Tlsa>,
    pub tlsa_dnssec: Option<Dnssec>,
    pub dane_applies: bool,
    /// Set when an address or TLSA lookup failed or is bogus: the host is `dns_failure`.
    pub dns_failure: Option<String>,
    pub no_dane_reason: Option<String>,
    pub notes: Vec<String>,
    pub lookups: Vec<Arc<Answer>>,
}

fn fqdn(name: &str) -> Option<Name> {
    Name::from_ascii(format!("{}.", name.trim_end_matches('.'))).ok()
}

/// MX lookup with the implicit-MX and null-MX rules.
pub async fn resolve_mx(dns: &Dns, domain: &str) -> MxSet {
    let Some(name) = fqdn(domain) else {
        let answer = Arc::new(Answer {
            name: domain.to_string(),
            rtype: "MX".into(),
            outcome: Outcome::Failed,
            dnssec: Dnssec::Error,
            cnames: Vec::new(),
            data: Data::None,
            sig_expiry: None,
            reason: Some("not a domain name".into()),
            ttl: 0,
        });
        return MxSet {
            answer,
            hosts: Vec::new(),
            implicit: false,
            null: false,
            error: Some(format!("{domain:?} is not a domain name")),
        };
    };
    let answer = dns.lookup(&name, RecordType::MX).await;
    let mut set = MxSet {
        answer: answer.clone(),
        hosts: Vec::new(),
        implicit: false,
        null: false,
        error: None,
    };
    match (answer.outcome, &answer.data) {
        (Outcome::Failed, _) => {
            set.error = Some(format!(
                "MX lookup failed ({}): {}",
                answer.dnssec.as_str(),
                answer.reason.as_deref().unwrap_or("no reason given")
            ));
        }
        _ if answer.dnssec == Dnssec::Bogus => {
            set.error = Some("MX RRset is bogus".into());
        }
        (Outcome::NxDomain, _) => {
            set.error = Some("domain does not exist (NXDOMAIN)".into());
        }
        (Outcome::NoData, _) => {
            // RFC 5321 §5.1: no MX → the domain itself, preference 0.
            set.implicit = true;
            set.hosts.push((0, domain.to_string()));
        }
        (Outcome::Records, Data::Mx(records)) => {
            let hosts = mx_hosts(records);
            if hosts.is_empty() && !records.is_empty() {
                // RFC 7505: a single "0 ." record; the domain accepts no mail.
                set.null = true;
                set.error = Some("null MX: the domain accepts no mail (RFC 7505)".into());
            }
            set.hosts = hosts;
        }
        (Outcome::Records, _) => {
            set.error = Some("MX answer without MX records".into());
        }
    }
    set
}

/// The MX hosts to probe: null targets dropped, sorted by preference then name, each host
/// once with its lowest preference (a sender tries it first there, RFC 5321 §5.1; a host
/// listed twice would otherwise give duplicate series), at most `MAX_MX_HOSTS`.
fn mx_hosts(records: &[Mx]) -> Vec<(u16, String)> {
    let mut hosts: Vec<(u16, String)> = records
        .iter()
        .filter(|m| !m.exchange.is_empty())
        .map(|m| (m.preference, m.exchange.clone()))
        .collect();
    hosts.sort();
    let mut seen = HashSet::with_capacity(hosts.len());
    hosts.retain(|(_, host)| seen.insert(host.clone()));
    hosts.truncate(MAX_MX_HOSTS);
    hosts
}

/// Addresses and TLSA of one host (RFC 7672 §2.2.1, §2.2.2).
pub async fn resolve_host(dns: &Dns, plan: &HostPlan) -> HostDns {
    let mut hd = HostDns::default();
    let Some(name) = fqdn(&plan.mx) else {
        hd.dns_failure = Some(format!("{:?} is not a host name", plan.mx));
        return hd;
    };
    let (a, aaaa) = futures::join!(
        dns.lookup(&name, RecordType::A),
        dns.lookup(&name, RecordType::AAAA)
    );
    hd.lookups.push(a.clone());
    hd.lookups.push(aaaa.clone());
    // Bogus data is attacker data: never connect to it (upstream mode never sees it anyway).
    for ans in [&a, &aaaa]
        .into_iter()
        .filter(|x| x.dnssec != Dnssec::Bogus)
    {
        if let Data::Addrs(v) = &ans.data {
            for ip in v {
                if !hd.addrs.contains(ip) && hd.addrs.len() < MAX_ADDRESSES_PER_HOST {
                    hd.addrs.push(*ip);
                }
            }
        }
    }
    hd.address_dnssec = a.dnssec.weakest(aaaa.dnssec);
    if let Some(bad) = [&a, &aaaa]
        .into_iter()
        .find(|x| x.outcome == Outcome::Failed || x.dnssec == Dnssec::Bogus)
    {
        hd.dns_failure = Some(format!(
            "{} lookup of {} {} ({})",
            bad.rtype,
            bad.name,
            if bad.dnssec == Dnssec::Bogus {
                "is bogus"
            } else {
                "failed"
            },
            bad.reason.as_deref().unwrap_or("no reason given")
        ));
        return hd;
    }
    if hd.addrs.is_empty() {
        return hd;
    }
    if hd.address_dnssec != Dnssec::Secure {
        hd.no_dane_reason = Some(format!(
            "address records of {} are {}: DANE does not apply",
            plan.mx,
            hd.address_dnssec.as_str()
        ));
        return hd;
    }
    if !plan.mx_secure {
        hd.notes.push(
            "the MX RRset is insecure (an attacker could replace the MX set); DANE is still used for this host, as Postfix does".into(),
        );
    }
    // §2.2.2: with a secure CNAME chain, try the expanded name first, then the original.
    let expanded = [&a, &aaaa]
        .into_iter()
        .find(|x| !x.cnames.is_empty())
        .map(|x| x.canonical().to_string());
    let mut bases = Vec::with_capacity(2);
    if let Some(e) = expanded.filter(|e| *e != plan.mx) {
        bases.push(e);
    }
    bases.push(plan.mx.clone());
    for base in bases {
        let Some(qname) = fqdn(&format!("_{}._tcp.{base}", plan.port)) else {
            continue;
        };
        let t = dns.lookup(&qname, RecordType::TLSA).await;
        hd.lookups.push(t.clone());
        hd.tlsa_base = Some(base.clone());
        hd.tlsa_dnssec = Some(t.dnssec);
        if t.outcome == Outcome::Failed || t.dnssec == Dnssec::Bogus {
            hd.dns_failure = Some(format!(
                "TLSA lookup of {} {} ({})",
                t.name,
                if t.dnssec == Dnssec::Bogus {
                    "is bogus"
                } else {
                    "failed"
                },
                t.reason.as_deref().unwrap_or("no reason given")
            ));
            return hd;
        }
        match (&t.data, t.dnssec) {
            (Data::Tlsa(records), Dnssec::Secure) if !records.is_empty() => {
                hd.tlsa_records = records.clone();
                hd.dane_applies = true;
                hd.no_dane_reason = None;
                return hd;
            }
            (Data::Tlsa(_), st) => {
                hd.no_dane_reason = Some(format!(
                    "TLSA RRset at {} is {}: DANE does not apply",
                    t.name,
                    st.as_str()
                ));
            }
            _ => {
                hd.no_dane_reason = Some(format!(
                    "no TLSA records at {} ({} {}): DANE does not apply",
                    t.name,
                    t.dnssec.as_str(),
                    match t.outcome {
                        Outcome::NxDomain => "NXDOMAIN",
                        _ => "NODATA",
                    }
                ));
            }
        }
    }
    hd
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mx(preference: u16, exchange: &str) -> Mx {
        Mx {
            preference,
            exchange: exchange.to_owned(),
        }
    }

    // RFC 5321 §5.1: a host listed with two preferences is one host; a sender tries it at
    // the lower preference first, so that is the one kept (one `mailtls_mx_info` series).
    #[test]
    fn host_listed_twice_is_kept_once_at_its_lowest_preference() {
        let records = [
            mx(20, "mx1.x.test"),
            mx(15, "mx2.x.test"),
            mx(10, "mx1.x.test"),
            mx(30, "mx2.x.test"),
            mx(0, ""),
        ];
        assert_eq!(
            mx_hosts(&records),
            [(10, "mx1.x.test".to_owned()), (15, "mx2.x.test".to_owned())]
        );
    }

    #[test]
    fn mx_set_is_sorted_and_capped() {
        let records: Vec<Mx> = (0..40u16)
            .rev()
            .map(|i| mx(i, &format!("mx{i:02}.x.test")))
            .collect();
        let hosts = mx_hosts(&records);
        assert_eq!(hosts.len(), MAX_MX_HOSTS);
        assert_eq!(hosts[0], (0, "mx00.x.test".to_owned()));
        assert!(hosts.windows(2).all(|w| w[0] < w[1]));
    }
}
