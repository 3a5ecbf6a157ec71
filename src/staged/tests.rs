use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PublicKeyData};

use super::*;
use crate::model::fixture::{address, host, ip, report, tls_session};
use crate::model::report::DaneStatus;
use crate::model::tlsa::RecordDetail;

const MX: &str = "mx1.example.test";

fn now() -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(
        SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    ))
}
use std::time::SystemTime;

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
    spki: Vec<u8>,
}

fn ca(cn: &str) -> Ca {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).expect("self-sign");
    let spki = key.subject_public_key_info();
    Ca {
        pem: cert.pem(),
        params,
        key,
        spki,
    }
}

/// A leaf for `name` under `ca`: (PEM certificate, its key).
fn leaf(ca: &Ca, name: &str) -> (String, KeyPair) {
    let key = KeyPair::generate().expect("key");
    let params = CertificateParams::new(vec![name.to_string()]).expect("params");
    let issuer = Issuer::from_params(&ca.params, &ca.key);
    let cert = params.signed_by(&key, &issuer).expect("sign");
    (cert.pem(), key)
}

fn sha256(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

fn rec(usage: u8, selector: u8, matching: u8, data: Vec<u8>) -> Tlsa {
    Tlsa {
        usage,
        selector,
        matching,
        data,
    }
}

/// A domain report with one DANE host publishing `records`, its address verified live.
fn target_with(records: Vec<Tlsa>) -> TargetReport {
    let a = address(
        Some(ip("192.0.2.25")),
        Some(tls_session(ip("192.0.2.25"))),
        Some(DaneStatus::Verified),
    );
    let mut h = host(MX, 10, vec![a]);
    h.tlsa_base = Some(MX.into());
    h.tlsa_dnssec = Some(crate::model::dns::Dnssec::Secure);
    h.dane_applies = true;
    h.tlsa_timing.ttl = Some(300);
    h.tlsa_timing.first_seen = vec![Some(1_000.0); records.len()];
    h.tlsa_records = records;
    report(vec![h])
}

fn only(r: &TargetReport, m: &Material) -> StagedHost {
    let mut v = judge(r, m, |_| true, now());
    assert_eq!(v.len(), 1);
    v.remove(0)
}

#[test]
fn a_private_key_block_anywhere_refuses_the_file() {
    let ca = ca("CA");
    let (cert, key) = leaf(&ca, MX);
    for pem in [
        format!("{}{cert}", key.serialize_pem()),
        format!("{cert}{}", key.serialize_pem()),
        format!("{cert}-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"),
        format!("{cert}-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"),
    ] {
        for kind in [StagedKind::Chain, StagedKind::PublicKey] {
            let e = Material::from_pem(kind, pem.as_bytes()).unwrap_err();
            assert_eq!(e.reason, "private_key");
        }
    }
}

#[test]
fn chain_and_key_files_parse_or_say_why_not() {
    let ca = ca("CA");
    let (cert, key) = leaf(&ca, MX);
    let m = Material::from_pem(StagedKind::Chain, format!("{cert}{}", ca.pem).as_bytes())
        .expect("chain");
    assert_eq!(m.chain.len(), 2);
    assert_eq!(m.spki, key.subject_public_key_info());
    assert!(m.not_after.is_some());
    let pub_pem = key.public_key_pem();
    let k = Material::from_pem(StagedKind::PublicKey, pub_pem.as_bytes()).expect("key");
    assert_eq!(k.spki, key.subject_public_key_info());
    assert_eq!(k.not_after, None);
    let cases: [(StagedKind, &str, &str); 5] = [
        (StagedKind::Chain, "", "no_certificate"),
        (StagedKind::Chain, pub_pem.as_str(), "no_certificate"),
        (StagedKind::PublicKey, cert.as_str(), "no_public_key"),
        (
            StagedKind::Chain,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "unparsable",
        ),
        (
            StagedKind::PublicKey,
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            "unparsable",
        ),
    ];
    for (kind, pem, reason) in cases {
        let e = Material::from_pem(kind, pem.as_bytes()).unwrap_err();
        assert_eq!(e.reason, reason, "{pem:?}");
    }
    let many = cert.repeat(MAX_STAGED_CERTS + 1);
    let e = Material::from_pem(StagedKind::Chain, many.as_bytes()).unwrap_err();
    assert_eq!(e.reason, "too_many_certificates");
}

#[test]
fn new_key_same_ca_fails_until_its_3_1_1_is_published_then_waits_two_ttls() {
    // RFC 7671 §8.1: publish the next key's record, wait two TTLs, deploy.
    let ca = ca("CA");
    let (current, current_key) = leaf(&ca, MX);
    let (next, next_key) = leaf(&ca, MX);
    let _ = current;
    let staged = Material::from_pem(StagedKind::Chain, format!("{next}{}", ca.pem).as_bytes())
        .expect("chain");
    let old_311 = rec(3, 1, 1, sha256(&current_key.subject_public_key_info()));
    let r = target_with(vec![old_311.clone()]);
    let h = only(&r, &staged);
    assert_eq!(h.dane, DaneStatus::Failed);
    assert_eq!(h.deploy_safe, None);
    let next_hex = hex::encode(sha256(&next_key.subject_public_key_info()));
    let ca_hex = hex::encode(sha256(&ca.spki));
    assert_eq!(
        h.publish,
        vec![
            format!("_25._tcp.{MX}. IN TLSA 3 1 1 {next_hex}"),
            format!("_25._tcp.{MX}. IN TLSA 2 1 1 {ca_hex}"),
        ]
    );

    let new_311 = rec(3, 1, 1, sha256(&next_key.subject_public_key_info()));
    let mut r = target_with(vec![old_311, new_311]);
    r.hosts[0].tlsa_timing.first_seen = vec![Some(1_000.0), Some(5_000.0)];
    let h = only(&r, &staged);
    assert_eq!(h.dane, DaneStatus::Verified);
    assert!(h.publish.is_empty());
    assert_eq!(h.deploy_safe, Some(5_000.0 + 600.0));
    assert_eq!(
        h.checks
            .iter()
            .map(|c| (c.matched, c.authenticates))
            .collect::<Vec<_>>(),
        vec![(false, false), (true, true)]
    );
    assert!(h.safe_at(5_600.0) && !h.safe_at(5_599.0));
}

#[test]
fn ca_change_is_covered_by_the_new_cas_2_1_1_and_names_are_checked() {
    // RFC 7672 §3.2.2: DANE-TA needs the leaf to name a reference identifier.
    let old_ca = ca("Old CA");
    let new_ca = ca("New CA");
    let (next, _) = leaf(&new_ca, MX);
    let (wrong_name, _) = leaf(&new_ca, "other.example.test");
    let old_211 = rec(2, 1, 1, sha256(&old_ca.spki));
    let new_211 = rec(2, 1, 1, sha256(&new_ca.spki));
    let m = Material::from_pem(
        StagedKind::Chain,
        format!("{next}{}", new_ca.pem).as_bytes(),
    )
    .expect("chain");
    assert_eq!(
        only(&target_with(vec![old_211.clone()]), &m).dane,
        DaneStatus::Failed
    );
    let r = target_with(vec![old_211, new_211]);
    let h = only(&r, &m);
    assert_eq!(h.dane, DaneStatus::Verified, "{}", h.why);
    assert_eq!(h.deploy_safe, Some(1_600.0));
    let bad = Material::from_pem(
        StagedKind::Chain,
        format!("{wrong_name}{}", new_ca.pem).as_bytes(),
    )
    .expect("chain");
    let h = only(&r, &bad);
    assert_eq!(h.dane, DaneStatus::Failed);
    assert!(matches!(
        h.checks[1].detail,
        RecordDetail::NameMismatch { .. }
    ));
}

#[test]
fn a_leaf_without_its_ca_is_not_verified_by_2_1_1() {
    // RFC 7671 §5.2: the DANE-TA anchor must be in the chain the server sends.
    let ca = ca("CA");
    let (next, _) = leaf(&ca, MX);
    let m = Material::from_pem(StagedKind::Chain, next.as_bytes()).expect("leaf only");
    let h = only(&target_with(vec![rec(2, 1, 1, sha256(&ca.spki))]), &m);
    assert_eq!(h.dane, DaneStatus::Failed);
    assert_eq!(h.checks[0].detail, RecordDetail::AnchorNotServed);
    // No issuer in the file: only the 3 1 1 can be proposed.
    assert_eq!(h.publish.len(), 1);
    assert!(h.publish[0].contains(" IN TLSA 3 1 1 "));
}

#[test]
fn a_key_only_entry_verifies_only_through_dane_ee_selector_1() {
    let ca = ca("CA");
    let (_, next_key) = leaf(&ca, MX);
    let spki = next_key.subject_public_key_info();
    let m = Material::from_pem(StagedKind::PublicKey, next_key.public_key_pem().as_bytes())
        .expect("key");
    // 3 1 1 and 3 1 0 of the key: verified.
    for r in [rec(3, 1, 1, sha256(&spki)), rec(3, 1, 0, spki.clone())] {
        let h = only(&target_with(vec![r]), &m);
        assert_eq!(h.dane, DaneStatus::Verified);
    }
    // A 2 1 1 of its CA and a 3 0 1 cannot be judged from a key: failed, never verified.
    let h = only(
        &target_with(vec![
            rec(2, 1, 1, sha256(&ca.spki)),
            rec(3, 0, 1, vec![7; 32]),
        ]),
        &m,
    );
    assert_eq!(h.dane, DaneStatus::Failed);
    assert!(h.checks.iter().all(|c| c.detail == RecordDetail::KeyOnly));
    assert_eq!(h.publish.len(), 1, "a key has no issuer to propose");
}

#[test]
fn digest_agility_applies_to_staged_entries_and_to_the_proposed_record() {
    // RFC 7671 §9: a 3 1 2 outranks a matching 3 1 1.
    let ca = ca("CA");
    let (_, key) = leaf(&ca, MX);
    let spki = key.subject_public_key_info();
    let m =
        Material::from_pem(StagedKind::PublicKey, key.public_key_pem().as_bytes()).expect("key");
    let stale_312 = rec(3, 1, 2, vec![1; 64]);
    let h = only(
        &target_with(vec![rec(3, 1, 1, sha256(&spki)), stale_312]),
        &m,
    );
    assert_eq!(h.dane, DaneStatus::Failed);
    assert!(matches!(
        h.checks[0].detail,
        RecordDetail::Superseded { matched: true, .. }
    ));
    let want = hex::encode(Sha512::digest(&spki));
    assert_eq!(
        h.publish,
        vec![format!("_25._tcp.{MX}. IN TLSA 3 1 2 {want}")]
    );
}

#[test]
fn deploy_safe_needs_every_authenticating_record_timed_and_a_ttl() {
    let ca = ca("CA");
    let (next, key) = leaf(&ca, MX);
    let m = Material::from_pem(StagedKind::Chain, format!("{next}{}", ca.pem).as_bytes())
        .expect("chain");
    let mut r = target_with(vec![
        rec(3, 1, 1, sha256(&key.subject_public_key_info())),
        rec(2, 1, 1, sha256(&ca.spki)),
    ]);
    r.hosts[0].tlsa_timing.first_seen = vec![Some(100.0), Some(40.0)];
    assert_eq!(
        only(&r, &m).deploy_safe,
        Some(700.0),
        "latest first seen + 2 x TTL"
    );
    r.hosts[0].tlsa_timing.first_seen = vec![Some(100.0), None];
    assert_eq!(only(&r, &m).deploy_safe, None, "a first-seen time unknown");
    r.hosts[0].tlsa_timing.first_seen = vec![Some(100.0), Some(40.0)];
    r.hosts[0].tlsa_timing.ttl = None;
    assert_eq!(only(&r, &m).deploy_safe, None, "TTL unknown");
    r.hosts[0].tlsa_timing.ttl = Some(300);
    r.hosts[0].tlsa_timing.on_every_server = vec![Some(true), Some(false)];
    let h = only(&r, &m);
    assert_eq!(h.lagging, vec![r.hosts[0].tlsa_records[1].presentation()]);
}

#[test]
fn dns_decides_first_and_mx_binding_selects_hosts() {
    let ca = ca("CA");
    let (next, _) = leaf(&ca, MX);
    let m = Material::from_pem(StagedKind::Chain, next.as_bytes()).expect("leaf");
    let mut r = target_with(vec![rec(3, 1, 1, vec![0; 32])]);
    r.hosts[0].addresses[0].dane = Some(DaneStatus::DnsFailure);
    assert_eq!(only(&r, &m).dane, DaneStatus::DnsFailure);
    let mut r = target_with(Vec::new());
    r.hosts[0].dane_applies = false;
    assert_eq!(only(&r, &m).dane, DaneStatus::None);
    assert!(judge(&r, &m, |mx| mx == "mx2.example.test", now()).is_empty());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Arbitrary file content never panics; whatever it is, a `PRIVATE KEY` block in it
        /// refuses the file.
        #[test]
        fn any_file_content_is_material_or_a_reason(
            body in proptest::collection::vec(any::<u8>(), 0..600),
            label in proptest::sample::select(vec!["CERTIFICATE", "PUBLIC KEY", "PRIVATE KEY", "EC PRIVATE KEY", "X509 CRL"]),
        ) {
            let text = format!(
                "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
                String::from_utf8_lossy(&body)
            );
            for kind in [StagedKind::Chain, StagedKind::PublicKey] {
                for input in [&body[..], text.as_bytes()] {
                    match Material::from_pem(kind, input) {
                        Ok(m) => prop_assert!(!m.spki.is_empty()),
                        Err(e) => prop_assert!(!e.reason.is_empty()),
                    }
                }
                if label.contains("PRIVATE") {
                    let e = Material::from_pem(kind, text.as_bytes()).unwrap_err();
                    prop_assert_eq!(e.reason, "private_key");
                }
            }
        }
    }
}
