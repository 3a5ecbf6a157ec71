//! Fuzz the config parser (`config::parse`: YAML text → `Config`, as `check-config`,
//! start-up and reload read the file) with arbitrary text.
//!
//! Checks: no panic; every error names the file; an accepted config keeps the documented
//! bounds (targets, concurrency, non-zero durations) and every
//! configured target's canonical name parses back to the same next hop, as the `target`
//! label and `/probe?target=` rely on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtls_exporter::config::{self, MAX_TARGETS};
use mailtls_exporter::target::NextHop;

const FILE: &str = "fuzz.yml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cfg = match config::parse(text, FILE) {
        Ok(cfg) => cfg,
        Err(e) => {
            assert_eq!(e.place.file, FILE);
            assert!(e.to_string().starts_with(FILE));
            return;
        }
    };
    assert!(cfg.targets.len() <= MAX_TARGETS);
    assert!((1..=100_000).contains(&cfg.concurrency));
    assert!(!cfg.interval.is_zero() && !cfg.timeout.is_zero());
    for t in &cfg.targets {
        let canonical = t.hop.to_string();
        assert_eq!(t.name, canonical);
        assert_eq!(
            NextHop::parse(&canonical).as_ref(),
            Ok(&t.hop),
            "target {canonical:?} does not parse back"
        );
    }
    for t in &cfg.targets {
        // A configured target is always probe-able through /probe.
        assert!(cfg.probe_allowed(&t.hop), "configured {} refused", t.name);
    }
});
