//! Fuzz the certificate facts parser (`cert`: X.509 DER as a server serves it, RFC 5280)
//! with arbitrary bytes.
//!
//! Checks: no panic; `facts`, `parts` and `is_certificate` agree on what parses; the facts
//! are what the metrics promise (lower-case hex digests of the right length, lower-case
//! SAN names, validity as in `parts`); every SAN name the certificate presents matches it
//! under `name_matches` (RFC 6125 §6.4), and `presented_names` lists them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtls_exporter::cert;

fn lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fuzz_target!(|data: &[u8]| {
    let facts = cert::facts(0, data);
    let parts = cert::parts(data);
    assert_eq!(facts.is_ok(), cert::is_certificate(data));
    assert_eq!(facts.is_ok(), parts.is_some());
    let presented = cert::presented_names(data);
    let _ = cert::name_matches(data, "mx1.good.test");
    let _ = cert::is_spki(data);

    let (Ok(f), Some(p)) = (facts, parts) else {
        assert!(presented.is_empty());
        return;
    };
    assert_eq!(f.depth, 0);
    assert_eq!(f.sha256.len(), 64);
    assert_eq!(f.spki_sha256.len(), 64);
    assert!(lower_hex(&f.sha256) && lower_hex(&f.spki_sha256) && lower_hex(&f.serial));
    assert_eq!((f.not_before, f.not_after), (p.not_before, p.not_after));
    // Nothing asserted about `p.spki` itself: x509-parser accepts a certificate whose SPKI
    // has trailing octets or a primitive SEQUENCE tag, which the standalone SPKI parse (TLSA
    // `x 1 0` data) refuses; both inputs were found by this target.
    assert!(!p.spki.is_empty());
    for name in &f.dns_names {
        assert!(!name.bytes().any(|b| b.is_ascii_uppercase()));
        assert!(presented.contains(name));
        let bare = name.strip_suffix('.').unwrap_or(name);
        if !bare.is_empty() && !name.contains('*') {
            assert!(
                cert::name_matches(data, name),
                "SAN {name:?} does not match itself"
            );
        }
    }
});
