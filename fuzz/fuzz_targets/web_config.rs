//! Fuzz the web config parser (`webconfig::parse`, the `--web.config.file` format of
//! exporter-toolkit) and the basic-auth header check with arbitrary input.
//!
//! Input: web config YAML, then optionally a NUL octet and an `Authorization` header value.
//! Relative paths in the YAML resolve under `fixtures/web/` (a self-signed `cert.pem` and its
//! `key.pem`, made for this target only). Skipped inputs, so that a run measures the parser
//! rather than the machine: any `/` (a path could name a device such as /dev/stdin and block),
//! `\` and `!` (YAML escapes and tags could spell either, or a hash, indirectly), and any
//! bcrypt hash with a cost above 6 (the parser hashes once at the highest configured cost, by
//! design; cost 31 would take a day per input).
//!
//! Checks: no panic; every error names the file; an accepted config with users answers an
//! arbitrary `Authorization` value without panicking and never accepts a malformed one.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mailtls_exporter::webconfig;

const FILE: &str = "web-fuzz.yml";
const MAX_FUZZ_COST: u32 = 6;

/// A bcrypt hash is `$2y$NN$` + 53 characters: any `$..$NN$` with NN above the cap.
fn costly_hash(text: &str) -> bool {
    let b = text.as_bytes();
    (0..b.len().saturating_sub(6)).any(|i| {
        b[i] == b'$'
            && b[i + 3] == b'$'
            && b[i + 6] == b'$'
            && std::str::from_utf8(&b[i + 4..i + 6])
                .ok()
                .and_then(|c| c.parse::<u32>().ok())
                .is_some_and(|c| c > MAX_FUZZ_COST)
    })
}

fuzz_target!(|data: &[u8]| {
    let (yaml, header) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let Ok(text) = std::str::from_utf8(yaml) else {
        return;
    };
    if text.contains(['/', '\\', '!']) || costly_hash(text) {
        return;
    }
    let base = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/web"));
    let cfg = match webconfig::parse(text, FILE, base) {
        Ok(cfg) => cfg,
        Err(e) => {
            assert!(e.to_string().starts_with(FILE), "{e}");
            return;
        }
    };
    assert_eq!(cfg.source, FILE);
    if let (Some(auth), Some(header)) = (&cfg.auth, header) {
        let ok = auth.check(Some(header));
        if ok {
            let v = std::str::from_utf8(header).expect("accepted header is UTF-8");
            let scheme = v.trim().split(' ').next().unwrap_or("");
            assert!(scheme.eq_ignore_ascii_case("basic"));
            assert!(auth.is_cached(Some(header)));
        }
        assert!(!auth.check(None));
    }
});
