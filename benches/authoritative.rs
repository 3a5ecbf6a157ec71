//! Cost of the authoritative-server check per probe: questions and CPU per target, with
//! `dns.authoritative_check` off and on, against the lab (README, "Every authoritative
//! server"; docs/performance.md for the other probe costs).
//!
//! Two measurements per setting:
//! - `per probe`: each target probed `BENCH_N` times in turn, concurrency 1, DNS cache emptied
//!   and SMTP/TLS and authoritative answers fresh before every probe (what `check` and
//!   `/probe` cost): resolver questions, authoritative questions and CPU (this process,
//!   getrusage user+sys, all threads) per probe;
//! - `one round`: every target once, concurrently, from a fresh context with the round caches
//!   (what a scheduled round costs): questions per target, when targets share zones.
//!
//! Run (the lab must be up; `common::lab()` or `tests/lab/up.sh`): `cargo bench --bench
//! authoritative`. Environment [defaults]: `BENCH_LAB` [/tmp/mailtls-lab], `BENCH_N` [100],
//! `BENCH_TARGETS` [d1.dyn.test,d2.dyn.test,d3.dyn.test,d4.dyn.test,s01.dane.test,good.test]
//! (dyn.test has two authoritative servers, the others one). Network: 127.0.0.0/8 only.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use mailtls_exporter::config;
use mailtls_exporter::probe::{probe_target, ProbeContext, ProbeOptions};
use mailtls_exporter::target::NextHop;

/// This process: getrusage(RUSAGE_SELF) user + sys, all threads.
fn self_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn lab_env(dir: &str) -> Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(format!("{dir}/lab.env"))
        .with_context(|| format!("{dir}/lab.env: is the lab up?"))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

fn context(env: &HashMap<String, String>, check: bool) -> Result<ProbeContext> {
    let text = format!(
        "interval: 5m\ntimeout: 10s\ndns:\n  resolver: 127.53.0.2:53\n  validation: upstream\n  authoritative_check: {check}\nsmtp:\n  helo_name: bench.mailtls.test\npkix:\n  ca_file: {}\n",
        env.get("LAB_CA_BUNDLE").context("LAB_CA_BUNDLE")?
    );
    let cfg = config::parse(&text, "bench.yml").map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(ProbeContext::new(&cfg)?)
}

struct Cost {
    probes: usize,
    resolver_q: u64,
    auth_q: u64,
    cpu: Duration,
    wall: Duration,
    in_sync: usize,
}

impl Cost {
    fn line(&self, what: &str) -> String {
        let n = self.probes.max(1) as f64;
        format!(
            "{what:<28} {:>7} {:>10.2} {:>10.2} {:>12.3} {:>12.3} {:>8}",
            self.probes,
            self.resolver_q as f64 / n,
            self.auth_q as f64 / n,
            self.cpu.as_secs_f64() * 1000.0 / n,
            self.wall.as_secs_f64() * 1000.0 / n,
            self.in_sync
        )
    }
}

async fn per_probe(ctx: &ProbeContext, hops: &[(String, NextHop)], n: usize) -> Cost {
    let opts = ProbeOptions {
        fresh: true,
        ..ProbeOptions::default()
    };
    let (q0, a0, c0, t0) = (
        ctx.dns.queries_sent(),
        ctx.authoritative_queries(),
        self_cpu(),
        Instant::now(),
    );
    let mut in_sync = 0;
    for _ in 0..n {
        for (name, hop) in hops {
            ctx.dns.clear_cache();
            let r = probe_target(ctx, name, hop, opts).await;
            in_sync += r
                .authoritative
                .iter()
                .filter(|s| s.in_sync == Some(true))
                .count();
        }
    }
    Cost {
        probes: n * hops.len(),
        resolver_q: ctx.dns.queries_sent() - q0,
        auth_q: ctx.authoritative_queries() - a0,
        cpu: self_cpu() - c0,
        wall: t0.elapsed(),
        in_sync,
    }
}

async fn one_round(ctx: &ProbeContext, hops: &[(String, NextHop)]) -> Cost {
    let (q0, a0, c0, t0) = (
        ctx.dns.queries_sent(),
        ctx.authoritative_queries(),
        self_cpu(),
        Instant::now(),
    );
    let reports = futures::future::join_all(
        hops.iter()
            .map(|(name, hop)| probe_target(ctx, name, hop, ProbeOptions::default())),
    )
    .await;
    Cost {
        probes: hops.len(),
        resolver_q: ctx.dns.queries_sent() - q0,
        auth_q: ctx.authoritative_queries() - a0,
        cpu: self_cpu() - c0,
        wall: t0.elapsed(),
        in_sync: reports
            .iter()
            .flat_map(|r| &r.authoritative)
            .filter(|s| s.in_sync == Some(true))
            .count(),
    }
}

fn main() -> Result<()> {
    let lab = std::env::var("BENCH_LAB").unwrap_or_else(|_| "/tmp/mailtls-lab".into());
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let targets = std::env::var("BENCH_TARGETS").unwrap_or_else(|_| {
        "d1.dyn.test,d2.dyn.test,d3.dyn.test,d4.dyn.test,s01.dane.test,good.test".into()
    });
    let hops: Vec<(String, NextHop)> = targets
        .split(',')
        .map(|t| Ok((t.to_string(), NextHop::parse(t)?)))
        .collect::<Result<_>>()?;
    let env = lab_env(&lab)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        println!(
            "{:<28} {:>7} {:>10} {:>10} {:>12} {:>12} {:>8}",
            "measurement", "probes", "resolver/p", "auth q/p", "CPU ms/p", "wall ms/p", "in_sync"
        );
        for round in 0..2 {
            for check in [false, true] {
                let ctx = context(&env, check)?;
                let _ = per_probe(&ctx, &hops, 2).await; // warm-up: connections, page faults
                let c = per_probe(&ctx, &hops, n).await;
                println!("{}", c.line(&format!("per probe, check {check} #{round}")));
            }
        }
        for check in [false, true] {
            let ctx = context(&env, check)?;
            let c = one_round(&ctx, &hops).await;
            println!("{}", c.line(&format!("one round, check {check}")));
        }
        Ok(())
    })
}
