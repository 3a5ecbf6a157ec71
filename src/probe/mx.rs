//! From mail domain to MX hosts, addresses and the TLSA RRset that decides DANE.
//!
//! Owns: RFC 7672 §2.2 as Postfix applies it: the MX lookup (implicit MX, null MX of
//! RFC 7505), address lookups per host, when DANE applies (secure addresses; an insecure
//! MX RRset does not prevent it, as Postfix ≥ 3.6 `smtp_tls_dane_insecure_mx_policy=dane`),
//! the TLSA base name for CNAME'd hosts (§2.2.2: expanded name first, then the original),
//! and "never fall back" on failed, bogus or unprovable lookups. The lookups go through the
//! [`Lookup`] trait, so the unit tests below drive these rules from a table of answers.
//! Not here: sending queries or DNSSEC classification (`dns`), matching (`dane`).

use std::collections::HashSet;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::{Name, RecordType};

use super::dns::Dns;
use crate::model::dns::{Answer, Data, Dnssec, Mx, Outcome};
use crate::model::tlsa::Tlsa;

/// Ceiling on MX hosts probed per domain (a monitor probes them all, within reason).
pub(crate) const MAX_MX_HOSTS: usize = 32;
/// Ceiling on addresses probed per host.
pub(crate) const MAX_ADDRESSES_PER_HOST: usize = 16;

/// The MX set of a domain.
pub(crate) struct MxSet {
    pub(crate) answer: Arc<Answer>,
    /// (preference, host) sorted by preference, then name; each host once, with its lowest
    /// preference.
    pub(crate) hosts: Vec<(u16, String)>,
    pub(crate) implicit: bool,
    pub(crate) null: bool,
    /// Why no host can be probed (lookup failed, NXDOMAIN, null MX).
    pub(crate) error: Option<String>,
}

/// What to resolve for one host.
#[derive(Debug, Clone)]
pub(crate) struct HostPlan {
    /// Host name as in the MX RRset (or the host target).
    pub(crate) mx: String,
    pub(crate) preference: Option<u16>,
    pub(crate) port: u16,
    /// The next-hop domain (or the host itself for host targets): a DANE-TA reference name.
    pub(crate) next_hop: String,
    /// The MX RRset was secure (always true for host targets: there is none).
    pub(crate) mx_secure: bool,
}

/// DNS facts of one host and what they mean for DANE.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostDns {
    pub(crate) addrs: Vec<IpAddr>,
    pub(crate) address_dnssec: Dnssec,
    pub(crate) tlsa_base: Option<String>,
    pub(crate) tlsa_records: Vec<Tlsa>,
    pub(crate) tlsa_dnssec: Option<Dnssec>,
    pub(crate) dane_applies: bool,
    /// Set when an address or TLSA lookup failed, is bogus or is unprovable: `dns_failure`.
    pub(crate) dns_failure: Option<String>,
    pub(crate) no_dane_reason: Option<String>,
    pub(crate) notes: Vec<String>,
    pub(crate) lookups: Vec<Arc<Answer>>,
}

/// The lookups the MX rules need: the caching resolver ([`Dns`]) when probing, a table of
/// answers in the unit tests, so the rules of RFC 7672 §2.2 run without a DNS server.
pub(crate) trait Lookup: Sync {
    /// The RRset of `rtype` at `name` with its DNSSEC state; never fails (a failure is an
    /// [`Answer`] with `Outcome::Failed`).
    fn lookup(&self, name: &Name, rtype: RecordType) -> impl Future<Output = Arc<Answer>> + Send;
}

impl Lookup for Dns {
    fn lookup(&self, name: &Name, rtype: RecordType) -> impl Future<Output = Arc<Answer>> + Send {
        Dns::lookup(self, name, rtype)
    }
}

pub(super) fn fqdn(name: &str) -> Option<Name> {
    Name::from_ascii(format!("{}.", name.trim_end_matches('.'))).ok()
}

/// MX lookup with the implicit-MX and null-MX rules.
pub(crate) async fn resolve_mx(dns: &impl Lookup, domain: &str) -> MxSet {
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
            original_ttl: None,
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
pub(crate) async fn resolve_host(dns: &impl Lookup, plan: &HostPlan) -> HostDns {
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
    hd.addrs = usable_addresses(&[&a, &aaaa]);
    hd.address_dnssec = a.dnssec.weakest(aaaa.dnssec);
    if let Some(bad) = [&a, &aaaa].into_iter().find(|x| lookup_failed(x)) {
        hd.dns_failure = Some(failure_sentence(bad));
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
    resolve_tlsa(dns, plan, &tlsa_bases(plan, &[&a, &aaaa]), &mut hd).await;
    hd
}

/// RFC 7672 §2.2: an RRset that is neither secure nor insecure (failed, bogus, or not
/// provable either way) is a lookup failure, and a DANE sender defers instead of falling
/// back; only a validated denial (secure or insecure NODATA/NXDOMAIN) is "no records".
fn lookup_failed(a: &Answer) -> bool {
    a.outcome == Outcome::Failed || matches!(a.dnssec, Dnssec::Bogus | Dnssec::Error)
}

/// "AAAA lookup of mx.example failed (timeout)": why a host is `dns_failure`.
fn failure_sentence(a: &Answer) -> String {
    let what = match (a.outcome, a.dnssec) {
        (_, Dnssec::Bogus) => "is bogus",
        (Outcome::Failed, _) => "failed",
        _ => "could not be validated",
    };
    format!(
        "{} lookup of {} {what} ({})",
        a.rtype,
        a.name,
        a.reason.as_deref().unwrap_or("no reason given")
    )
}

/// The addresses of the A and AAAA answers, deduplicated and capped. Bogus data is attacker
/// data: never connect to it (upstream mode never sees it anyway).
fn usable_addresses(answers: &[&Arc<Answer>]) -> Vec<IpAddr> {
    let mut addrs = Vec::new();
    for ans in answers.iter().filter(|x| x.dnssec != Dnssec::Bogus) {
        if let Data::Addrs(v) = &ans.data {
            for ip in v {
                if !addrs.contains(ip) && addrs.len() < MAX_ADDRESSES_PER_HOST {
                    addrs.push(*ip);
                }
            }
        }
    }
    addrs
}

/// TLSA base names in the order to try them (§2.2.2): with a CNAME'd host (its address
/// lookups are secure here), the expanded name first, then the original.
fn tlsa_bases(plan: &HostPlan, address_answers: &[&Arc<Answer>]) -> Vec<String> {
    let expanded = address_answers
        .iter()
        .find(|x| !x.cnames.is_empty())
        .map(|x| x.canonical().to_string());
    let mut bases = Vec::with_capacity(2);
    if let Some(e) = expanded.filter(|e| *e != plan.mx) {
        bases.push(e);
    }
    bases.push(plan.mx.clone());
    bases
}

/// Looks up `_port._tcp.<base>` TLSA for each base in turn; the first secure RRset with
/// records decides, a failed or bogus lookup ends the search with `dns_failure`.
async fn resolve_tlsa(dns: &impl Lookup, plan: &HostPlan, bases: &[String], hd: &mut HostDns) {
    for base in bases {
        let Some(qname) = fqdn(&format!("_{}._tcp.{base}", plan.port)) else {
            continue;
        };
        let t = dns.lookup(&qname, RecordType::TLSA).await;
        hd.lookups.push(t.clone());
        hd.tlsa_base = Some(base.clone());
        hd.tlsa_dnssec = Some(t.dnssec);
        if lookup_failed(&t) {
            hd.dns_failure = Some(failure_sentence(&t));
            return;
        }
        match (&t.data, t.dnssec) {
            (Data::Tlsa(records), Dnssec::Secure) if !records.is_empty() => {
                hd.tlsa_records = records.clone();
                hd.dane_applies = true;
                hd.no_dane_reason = None;
                return;
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
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    /// A resolver made of a table: (name, type) → answer. A name not in the table is a
    /// failed lookup (so a test never passes on a lookup it did not expect); every query
    /// is recorded, in order, to check which lookups the rules make.
    #[derive(Default)]
    struct Table {
        answers: HashMap<(String, RecordType), Arc<Answer>>,
        asked: Mutex<Vec<String>>,
    }

    impl Table {
        fn with(mut self, a: Answer) -> Self {
            let rtype: RecordType = a.rtype.parse().unwrap_or(RecordType::NULL);
            self.answers.insert((a.name.clone(), rtype), Arc::new(a));
            self
        }
        fn asked(&self) -> Vec<String> {
            self.asked.lock().map(|v| v.clone()).unwrap_or_default()
        }
    }

    impl Lookup for Table {
        async fn lookup(&self, name: &Name, rtype: RecordType) -> Arc<Answer> {
            let owner = name.to_ascii().trim_end_matches('.').to_lowercase();
            if let Ok(mut v) = self.asked.lock() {
                v.push(format!("{owner} {rtype}"));
            }
            self.answers
                .get(&(owner.clone(), rtype))
                .cloned()
                .unwrap_or_else(|| {
                    let mut a = answer(&owner, rtype, Outcome::Failed, Dnssec::Error, Data::None);
                    a.reason = Some("not in the test table".into());
                    Arc::new(a)
                })
        }
    }

    fn answer(
        name: &str,
        rtype: RecordType,
        outcome: Outcome,
        dnssec: Dnssec,
        data: Data,
    ) -> Answer {
        Answer {
            name: name.into(),
            rtype: rtype.to_string(),
            outcome,
            dnssec,
            cnames: Vec::new(),
            data,
            sig_expiry: None,
            reason: None,
            ttl: 300,
            original_ttl: None,
        }
    }

    fn mx(name: &str, dnssec: Dnssec, records: &[(u16, &str)]) -> Answer {
        let mx = records
            .iter()
            .map(|(p, e)| Mx {
                preference: *p,
                exchange: e.to_string(),
            })
            .collect();
        answer(name, RecordType::MX, Outcome::Records, dnssec, Data::Mx(mx))
    }

    fn addrs(name: &str, rtype: RecordType, dnssec: Dnssec, ips: &[&str]) -> Answer {
        let ips = ips.iter().filter_map(|s| s.parse().ok()).collect();
        answer(name, rtype, Outcome::Records, dnssec, Data::Addrs(ips))
    }

    fn nodata(name: &str, rtype: RecordType, dnssec: Dnssec) -> Answer {
        answer(name, rtype, Outcome::NoData, dnssec, Data::None)
    }

    fn tlsa(name: &str, dnssec: Dnssec, n: u8) -> Answer {
        let records = (0..n)
            .map(|i| Tlsa {
                usage: 3,
                selector: 1,
                matching: 1,
                data: vec![i; 32],
            })
            .collect();
        answer(
            name,
            RecordType::TLSA,
            Outcome::Records,
            dnssec,
            Data::Tlsa(records),
        )
    }

    fn plan(mx: &str, mx_secure: bool) -> HostPlan {
        HostPlan {
            mx: mx.into(),
            preference: Some(10),
            port: 25,
            next_hop: "example.test".into(),
            mx_secure,
        }
    }

    /// A secure host `mx.example.test` with one IPv4 address and no IPv6.
    fn secure_host() -> Table {
        Table::default()
            .with(addrs(
                "mx.example.test",
                RecordType::A,
                Dnssec::Secure,
                &["192.0.2.25"],
            ))
            .with(nodata("mx.example.test", RecordType::AAAA, Dnssec::Secure))
    }

    // ---- resolve_mx: RFC 5321 §5.1, RFC 7505, RFC 7672 §2.2.1 ----

    #[tokio::test]
    async fn mx_hosts_are_sorted_by_preference_then_name_and_deduplicated() {
        let t = Table::default().with(mx(
            "example.test",
            Dnssec::Secure,
            &[
                (20, "b.example.test"),
                (10, "z.example.test"),
                (20, "a.example.test"),
                (20, "a.example.test"),
            ],
        ));
        let set = resolve_mx(&t, "example.test").await;
        assert_eq!(
            set.hosts,
            vec![
                (10, "z.example.test".to_string()),
                (20, "a.example.test".to_string()),
                (20, "b.example.test".to_string())
            ]
        );
        assert!(set.error.is_none() && !set.implicit && !set.null);
    }

    #[tokio::test]
    async fn no_mx_records_means_the_domain_itself_at_preference_zero() {
        // RFC 5321 §5.1 implicit MX.
        let t = Table::default().with(nodata("example.test", RecordType::MX, Dnssec::Secure));
        let set = resolve_mx(&t, "example.test").await;
        assert!(set.implicit);
        assert_eq!(set.hosts, vec![(0, "example.test".to_string())]);
        assert!(set.error.is_none());
    }

    #[tokio::test]
    async fn null_mx_accepts_no_mail_and_yields_no_host() {
        // RFC 7505 §3: a single "0 ." record.
        let t = Table::default().with(mx("example.test", Dnssec::Secure, &[(0, "")]));
        let set = resolve_mx(&t, "example.test").await;
        assert!(set.null);
        assert!(set.hosts.is_empty());
        assert!(set.error.as_deref().is_some_and(|e| e.contains("null MX")));
    }

    #[tokio::test]
    async fn failed_bogus_or_nonexistent_mx_is_a_target_error_without_hosts() {
        // RFC 7672 §2.2.1: no fallback to the implicit MX on a failed or bogus MX lookup.
        let failed = Table::default();
        let bogus = Table::default().with(mx(
            "example.test",
            Dnssec::Bogus,
            &[(10, "mx.example.test")],
        ));
        let nx = Table::default().with(answer(
            "example.test",
            RecordType::MX,
            Outcome::NxDomain,
            Dnssec::Secure,
            Data::None,
        ));
        for (t, expect) in [
            (failed, "MX lookup failed"),
            (bogus, "bogus"),
            (nx, "NXDOMAIN"),
        ] {
            let set = resolve_mx(&t, "example.test").await;
            assert!(set.hosts.is_empty() && !set.implicit, "{expect}");
            let err = set.error.unwrap_or_default();
            assert!(err.contains(expect), "{err:?} should say {expect:?}");
        }
    }

    // ---- resolve_host: RFC 7672 §2.2, §2.2.2 ----

    #[tokio::test]
    async fn secure_addresses_and_secure_tlsa_make_dane_apply() {
        let t = secure_host().with(tlsa("_25._tcp.mx.example.test", Dnssec::Secure, 2));
        let hd = resolve_host(&t, &plan("mx.example.test", true)).await;
        assert!(hd.dane_applies);
        assert_eq!(hd.tlsa_records.len(), 2);
        assert_eq!(hd.tlsa_base.as_deref(), Some("mx.example.test"));
        assert_eq!(hd.addrs, vec!["192.0.2.25".parse::<IpAddr>().unwrap()]);
        assert!(hd.dns_failure.is_none() && hd.no_dane_reason.is_none() && hd.notes.is_empty());
        assert_eq!(hd.lookups.len(), 3);
    }

    #[tokio::test]
    async fn insecure_addresses_mean_no_dane_and_no_tlsa_lookup() {
        // RFC 7672 §2.2: TLSA records are only sought for hosts whose addresses are secure.
        let t = Table::default()
            .with(addrs(
                "mx.example.test",
                RecordType::A,
                Dnssec::Insecure,
                &["192.0.2.25"],
            ))
            .with(nodata(
                "mx.example.test",
                RecordType::AAAA,
                Dnssec::Insecure,
            ))
            .with(tlsa("_25._tcp.mx.example.test", Dnssec::Secure, 1));
        let hd = resolve_host(&t, &plan("mx.example.test", true)).await;
        assert!(!hd.dane_applies && hd.dns_failure.is_none());
        assert!(hd.no_dane_reason.unwrap_or_default().contains("insecure"));
        assert!(
            !t.asked().iter().any(|q| q.ends_with("TLSA")),
            "{:?}",
            t.asked()
        );
    }

    #[tokio::test]
    async fn one_insecure_address_family_makes_the_host_insecure() {
        // The weaker of the A and AAAA states rules (RFC 4035 §4.3).
        let t = Table::default()
            .with(addrs(
                "mx.example.test",
                RecordType::A,
                Dnssec::Secure,
                &["192.0.2.25"],
            ))
            .with(addrs(
                "mx.example.test",
                RecordType::AAAA,
                Dnssec::Insecure,
                &["2001:db8::25"],
            ));
        let hd = resolve_host(&t, &plan("mx.example.test", true)).await;
        assert_eq!(hd.address_dnssec, Dnssec::Insecure);
        assert_eq!(hd.addrs.len(), 2);
        assert!(!hd.dane_applies && hd.dns_failure.is_none());
    }

    #[tokio::test]
    async fn insecure_mx_rrset_with_a_secure_host_still_uses_dane_with_a_note() {
        // RFC 7672 §2.2.1 leaves it open; Postfix >= 3.6 (dane_insecure_mx_policy=dane) uses DANE.
        let t = secure_host().with(tlsa("_25._tcp.mx.example.test", Dnssec::Secure, 1));
        let hd = resolve_host(&t, &plan("mx.example.test", false)).await;
        assert!(hd.dane_applies);
        assert_eq!(hd.notes.len(), 1);
        assert!(hd.notes[0].contains("MX RRset is insecure"));
    }

    #[tokio::test]
    async fn cname_host_tries_tlsa_at_the_expanded_name_first() {
        // RFC 7672 §2.2.2: the TLSA base is the fully CNAME-expanded name when it has TLSA.
        let mut a = addrs(
            "mx.example.test",
            RecordType::A,
            Dnssec::Secure,
            &["192.0.2.25"],
        );
        a.cnames = vec!["real.hoster.test".into()];
        let t = Table::default()
            .with(a)
            .with(nodata("mx.example.test", RecordType::AAAA, Dnssec::Secure))
            .with(tlsa("_25._tcp.real.hoster.test", Dnssec::Secure, 1))
            .with(tlsa("_25._tcp.mx.example.test", Dnssec::Secure, 2));
        let hd = resolve_host(&t, &plan("mx.example.test", true)).await;
        assert!(hd.dane_applies);
        assert_eq!(hd.tlsa_base.as_deref(), Some("real.hoster.test"));
        assert_eq!(hd.tlsa_records.len(), 1);
        assert!(!t
            .asked()
            .contains(&"_25._tcp.mx.example.test TLSA".to_string()));
    }

    #[tokio::test]
    async fn cname_host_without_tlsa_at_the_expanded_name_falls_back_to_the_original() {
        // RFC 7672 §2.2.2: then the original name, when the expanded one has no (secure) TLSA.
        let mut a = addrs(
            "mx.example.test",
            RecordType::A,
            Dnssec::Secure,
            &["192.0.2.25"],
        );
        a.cnames = vec!["real.hoster.test".into()];
        let t = Table::default()
            .with(a)
            .with(nodata("mx.example.test", RecordType::AAAA, Dnssec::Secure))
            .with(nodata(
                "_25._tcp.real.hoster.test",
                RecordType::TLSA,
                Dnssec::Secure,
            ))
            .with(tlsa("_25._tcp.mx.example.test", Dnssec::Secure, 2));
        let hd = resolve_host(&t, &plan("mx.example.test", true)).await;
        assert!(hd.dane_applies);
        assert_eq!(hd.tlsa_base.as_deref(), Some("mx.example.test"));
        let tlsa_asked: Vec<String> = t
            .asked()
            .into_iter()
            .filter(|q| q.ends_with("TLSA"))
            .collect();
        assert_eq!(
            tlsa_asked,
            [
                "_25._tcp.real.hoster.test TLSA",
                "_25._tcp.mx.example.test TLSA"
            ]
        );
    }

    #[tokio::test]
    async fn secure_or_insecure_tlsa_denial_means_dane_does_not_apply() {
        // RFC 7672 §2.2: a validated "no TLSA" (secure NODATA, insecure) is not a failure.
        for st in [Dnssec::Secure, Dnssec::Insecure] {
            let t = secure_host().with(nodata("_25._tcp.mx.example.test", RecordType::TLSA, st));
            let hd = resolve_host(&t, &plan("mx.example.test", true)).await;
            assert!(!hd.dane_applies && hd.dns_failure.is_none(), "{st:?}");
            assert!(hd.no_dane_reason.unwrap_or_default().contains("NODATA"));
        }
        let t = secure_host().with(tlsa("_25._tcp.mx.example.test", Dnssec::Insecure, 1));
        let hd = resolve_host(&t, &plan("mx.example.test", true)).await;
        assert!(!hd.dane_applies && hd.dns_failure.is_none());
        assert!(hd.tlsa_records.is_empty());
    }

    #[tokio::test]
    async fn bogus_failed_or_unprovable_address_lookup_is_dns_failure() {
        // RFC 7672 §2.2: neither secure nor insecure = lookup failure; a DANE sender defers.
        let bad = [
            answer(
                "mx.example.test",
                RecordType::AAAA,
                Outcome::Failed,
                Dnssec::Error,
                Data::None,
            ),
            addrs(
                "mx.example.test",
                RecordType::AAAA,
                Dnssec::Bogus,
                &["2001:db8::666"],
            ),
            nodata("mx.example.test", RecordType::AAAA, Dnssec::Error),
            answer(
                "mx.example.test",
                RecordType::AAAA,
                Outcome::NxDomain,
                Dnssec::Error,
                Data::None,
            ),
        ];
        for aaaa in bad {
            let what = format!("{:?} {:?}", aaaa.outcome, aaaa.dnssec);
            let t = Table::default()
                .with(addrs(
                    "mx.example.test",
                    RecordType::A,
                    Dnssec::Secure,
                    &["192.0.2.25"],
                ))
                .with(aaaa)
                .with(tlsa("_25._tcp.mx.example.test", Dnssec::Secure, 1));
            let hd = resolve_host(&t, &plan("mx.example.test", true)).await;
            assert!(hd.dns_failure.is_some(), "{what}");
            assert!(!hd.dane_applies, "{what}");
            // Bogus addresses are never connected to; the good A still is (observation only).
            assert_eq!(
                hd.addrs,
                vec!["192.0.2.25".parse::<IpAddr>().unwrap()],
                "{what}"
            );
            assert!(!t.asked().iter().any(|q| q.ends_with("TLSA")), "{what}");
        }
    }

    #[tokio::test]
    async fn bogus_failed_or_unprovable_tlsa_lookup_is_dns_failure_without_fallback() {
        // RFC 7672 §2.2: a failed TLSA lookup defers; the original name is not tried after it.
        let bad = [
            answer(
                "_25._tcp.real.hoster.test",
                RecordType::TLSA,
                Outcome::Failed,
                Dnssec::Error,
                Data::None,
            ),
            tlsa("_25._tcp.real.hoster.test", Dnssec::Bogus, 1),
            nodata("_25._tcp.real.hoster.test", RecordType::TLSA, Dnssec::Error),
            answer(
                "_25._tcp.real.hoster.test",
                RecordType::TLSA,
                Outcome::NxDomain,
                Dnssec::Error,
                Data::None,
            ),
        ];
        for t_ans in bad {
            let what = format!("{:?} {:?}", t_ans.outcome, t_ans.dnssec);
            let mut a = addrs(
                "mx.example.test",
                RecordType::A,
                Dnssec::Secure,
                &["192.0.2.25"],
            );
            a.cnames = vec!["real.hoster.test".into()];
            let t = Table::default()
                .with(a)
                .with(nodata("mx.example.test", RecordType::AAAA, Dnssec::Secure))
                .with(t_ans)
                .with(tlsa("_25._tcp.mx.example.test", Dnssec::Secure, 1));
            let hd = resolve_host(&t, &plan("mx.example.test", true)).await;
            let why = hd.dns_failure.clone().unwrap_or_default();
            assert!(
                why.contains("TLSA lookup of _25._tcp.real.hoster.test"),
                "{what}: {why}"
            );
            assert!(!hd.dane_applies, "{what}");
            assert!(
                !t.asked()
                    .contains(&"_25._tcp.mx.example.test TLSA".to_string()),
                "{what}"
            );
        }
    }

    #[tokio::test]
    async fn a_host_without_addresses_has_neither_failure_nor_tlsa_lookup() {
        // `judge` turns the empty address list into dns_failure ("cannot be reached").
        let t = Table::default()
            .with(nodata("mx.example.test", RecordType::A, Dnssec::Secure))
            .with(nodata("mx.example.test", RecordType::AAAA, Dnssec::Secure));
        let hd = resolve_host(&t, &plan("mx.example.test", true)).await;
        assert!(hd.addrs.is_empty() && hd.dns_failure.is_none() && !hd.dane_applies);
        assert_eq!(t.asked().len(), 2);
    }

    #[tokio::test]
    async fn addresses_are_deduplicated_and_capped() {
        let many: Vec<String> = (0..40).map(|i| format!("192.0.2.{i}")).collect();
        let refs: Vec<&str> = many
            .iter()
            .map(String::as_str)
            .chain(["192.0.2.0"])
            .collect();
        let t = Table::default()
            .with(addrs(
                "mx.example.test",
                RecordType::A,
                Dnssec::Insecure,
                &refs,
            ))
            .with(nodata(
                "mx.example.test",
                RecordType::AAAA,
                Dnssec::Insecure,
            ));
        let hd = resolve_host(&t, &plan("mx.example.test", true)).await;
        assert_eq!(hd.addrs.len(), MAX_ADDRESSES_PER_HOST);
    }

    // ---- mx_hosts: the MX set as a sender uses it ----

    fn mx_record(preference: u16, exchange: &str) -> Mx {
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
            mx_record(20, "mx1.x.test"),
            mx_record(15, "mx2.x.test"),
            mx_record(10, "mx1.x.test"),
            mx_record(30, "mx2.x.test"),
            mx_record(0, ""),
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
            .map(|i| mx_record(i, &format!("mx{i:02}.x.test")))
            .collect();
        let hosts = mx_hosts(&records);
        assert_eq!(hosts.len(), MAX_MX_HOSTS);
        assert_eq!(hosts[0], (0, "mx00.x.test".to_owned()));
        assert!(hosts.windows(2).all(|w| w[0] < w[1]));
    }
}
