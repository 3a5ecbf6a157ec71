//! `mailtls_exporter check`: one-shot probes with a readable (or JSON) report.
//!
//! Owns: the command: parsing the targets, probing each once (fresh, with transcripts),
//! the rollover planner for staged entries (`rollover`, `planner`), printing the text
//! (`text`) or JSON rendering, exit codes 0/1/2 (staged entries do not change the exit code:
//! they describe a future deployment, not mail today).
//! Not here: probing (`probe`), the text itself (`text`), metrics.

use crate::config::Config;
use crate::planner::render_staged;
use crate::probe::{probe_target, ProbeContext, ProbeOptions};
use crate::rollover::Rollover;
use crate::target::NextHop;
use crate::text::render_text;

/// Exit code: every target is fine.
pub(crate) const EXIT_OK: i32 = 0;
/// Exit code: a problem was found.
pub(crate) const EXIT_PROBLEM: i32 = 1;
/// Exit code: usage or config error.
pub const EXIT_USAGE: i32 = 2;

/// Probes each target once and prints the report; returns the exit code.
pub async fn run(cfg: &Config, targets: &[String], json: bool) -> i32 {
    let mut hops = Vec::with_capacity(targets.len());
    for t in targets {
        match NextHop::parse(t) {
            Ok(h) => hops.push((t.clone(), h)),
            Err(e) => {
                eprintln!("mailtls_exporter check: invalid target {t:?}: {e}");
                return EXIT_USAGE;
            }
        }
    }
    let ctx = match ProbeContext::new(cfg) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mailtls_exporter check: {e}");
            return EXIT_USAGE;
        }
    };
    let opts = ProbeOptions {
        fresh: true,
        transcript: !json,
        ..ProbeOptions::default()
    };
    let mut reports = futures::future::join_all(
        hops.iter()
            .map(|(name, hop)| probe_target(&ctx, name, hop, opts)),
    )
    .await;
    // The rollover planner: first-seen times from `state_file` (read-only, so the times
    // agree with the daemon's) and each staged entry of a configured target.
    let rollover = Rollover::open(cfg.state_file.as_deref(), false);
    for (r, (_, hop)) in reports.iter_mut().zip(&hops) {
        let staged = cfg.targets.iter().find(|t| &t.hop == hop);
        rollover.apply(staged.map_or(&[][..], |t| &t.staged), r);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    if json {
        match serde_json::to_string_pretty(&reports) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("mailtls_exporter check: cannot encode JSON: {e}");
                return EXIT_USAGE;
            }
        }
    } else {
        for r in &reports {
            print!("{}", render_text(r, false));
            print!("{}", render_staged(r, now));
        }
    }
    if reports.iter().all(|r| r.success) {
        EXIT_OK
    } else {
        EXIT_PROBLEM
    }
}
