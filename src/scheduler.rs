//! When targets are probed, and the latest results: intervals, jitter, concurrency, reload,
//! shutdown.
//!
//! Owns: one lightweight task per target that sleeps until its slot, a semaphore bounding
//! the targets probed at once (`concurrency`), the [`Store`] of latest reports (replaced
//! one target at a time, read by scrapes without waiting on probes), config reload
//! (a bad config is rejected and the old one keeps running; reloads run one at a time,
//! whether from SIGHUP or `POST /-/reload`), and graceful shutdown.
//! Slots: each target gets a fixed random phase within the interval, so load spreads
//! evenly; after (re)start every target is probed once within [`FIRST_PROBE_SPREAD`].
//! Sharded (`--shard.*`, `shard:`), it probes only the targets of its shard (`shard`).
//! Not here: what a probe does (`probe`), encoding (`metrics`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::config::{self, Config, ConfigError};
use crate::metrics::{encode_report, EncodedReport, ExporterMetrics, ReportSource};
use crate::model::report::TargetReport;
use crate::planner::render_staged;
use crate::probe::{probe_target, ContextError, ProbeContext, ProbeOptions};
use crate::rollover::Rollover;
use crate::shard::{Shard, ShardError, ShardSpec};
use crate::status::{PackedText, Summary};
use crate::text::render_text;

/// Logged at start and on reload when `Config::trusts_remote_ad_bit` (docs/dnssec.md).
pub const REMOTE_AD_WARNING: &str = "dns.validation is upstream but the resolver is not on loopback: DNSSEC states (and DANE) rest on its AD bit, which anyone on the path to it can set; run a validating resolver on this host or use validation: local";

/// After start or reload, every target is probed once within this window (or the interval).
pub(crate) const FIRST_PROBE_SPREAD: Duration = Duration::from_secs(10);

/// What is kept of a target's last completed probe: a summary for logs, the status page's
/// summary (`status::Summary`) and `check`-style text, and its series, encoded once
/// (`metrics::encode_report`). The full report is dropped.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) success: bool,
    /// `verified=2 failed=1`, to log state changes.
    pub(crate) dane_summary: String,
    pub(crate) encoded: Arc<EncodedReport>,
    /// What the status page shows.
    pub(crate) page: Arc<Summary>,
    /// `render_text(report, false)` and the rollover planner, deflated: the status page's
    /// text view.
    pub(crate) text: PackedText,
}

impl Stored {
    pub(crate) fn new(report: &Arc<TargetReport>) -> Self {
        Self {
            success: report.success,
            dane_summary: report.dane_summary(),
            encoded: Arc::new(encode_report(report)),
            page: Arc::new(Summary::of(report)),
            text: PackedText::new(&format!(
                "{}{}",
                render_text(report, false),
                render_staged(report, report.timestamp)
            )),
        }
    }
}

/// Latest completed probe per target, in target order.
#[derive(Debug, Default)]
pub struct Store {
    reports: RwLock<BTreeMap<String, Arc<Stored>>>,
}

// Poisoned locks: every critical section on the store and on `Scheduler::running` is one
// whole-value operation (`BTreeMap::insert`/`retain`/`get`, `Option::replace`/`take`, Arc
// clones); a panic inside one cannot leave a half-updated value behind, so a poisoned lock
// still guards consistent data and is taken over (`PoisonError::into_inner`) rather than
// letting a reload or a probe result vanish while reporting success.

impl Store {
    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, Arc<Stored>>> {
        self.reports.read().unwrap_or_else(PoisonError::into_inner)
    }
    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<String, Arc<Stored>>> {
        self.reports.write().unwrap_or_else(PoisonError::into_inner)
    }
    pub(crate) fn get(&self, target: &str) -> Option<Arc<Stored>> {
        self.read().get(target).cloned()
    }
    fn insert(&self, target: &str, r: Arc<Stored>) -> Option<Arc<Stored>> {
        self.write().insert(target.to_string(), r)
    }
    fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.write().retain(|k, _| keep(k));
    }
}

impl ReportSource for Store {
    fn encoded(&self) -> Vec<Arc<EncodedReport>> {
        self.read().values().map(|s| s.encoded.clone()).collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error("{file}: {error}")]
    Shard { file: String, error: ShardError },
}

struct Running {
    config: Arc<Config>,
    ctx: Arc<ProbeContext>,
    /// This replica's shard of `config.targets` (`None`: all of them).
    shard: Option<Shard>,
    /// First-seen store and staged files; kept across reloads while `state_file` stays.
    rollover: Arc<Rollover>,
    tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

/// Runs the probe loops of the current config.
pub struct Scheduler {
    /// The config file to reload; `None` = the embedded default.
    path: Option<PathBuf>,
    /// `--shard.*` flags: kept across reloads, they win over the file's `shard:` keys.
    shard_flags: ShardSpec,
    store: Arc<Store>,
    stats: Arc<ExporterMetrics>,
    running: Mutex<Option<Running>>,
    /// Held for a whole reload: SIGHUP and `POST /-/reload` at once run one after the
    /// other, so the config in force, the target series and `mailtls_targets` always come
    /// from the same file, the last one read.
    reload_turn: Mutex<()>,
}

impl Scheduler {
    pub fn new(path: Option<PathBuf>, stats: Arc<ExporterMetrics>) -> Arc<Self> {
        Self::with_shard_flags(path, stats, ShardSpec::default())
    }

    /// As [`Scheduler::new`], with the `--shard.*` flags.
    pub fn with_shard_flags(
        path: Option<PathBuf>,
        stats: Arc<ExporterMetrics>,
        shard_flags: ShardSpec,
    ) -> Arc<Self> {
        Arc::new(Self {
            path,
            shard_flags,
            store: Arc::new(Store::default()),
            stats,
            running: Mutex::new(None),
            reload_turn: Mutex::new(()),
        })
    }

    fn running(&self) -> MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn store(&self) -> Arc<Store> {
        self.store.clone()
    }

    /// The current config and probe context (for `/probe` and the status page).
    pub(crate) fn current(&self) -> Option<(Arc<Config>, Arc<ProbeContext>)> {
        self.running()
            .as_ref()
            .map(|r| (r.config.clone(), r.ctx.clone()))
    }

    /// The shard in force (`None`: every configured target is scheduled here).
    pub(crate) fn shard(&self) -> Option<Shard> {
        self.running().as_ref().and_then(|r| r.shard)
    }

    /// The rollover store of the current config (for `/probe`).
    pub(crate) fn rollover(&self) -> Option<Arc<Rollover>> {
        self.running().as_ref().map(|r| r.rollover.clone())
    }

    fn load(&self) -> Result<Config, ConfigError> {
        match &self.path {
            Some(p) => config::load(p),
            None => config::embedded_default(),
        }
    }

    /// Loads the config (file or embedded) and (re)starts the loops. On error the running
    /// config stays in place. Blocking; reloads run one at a time.
    pub fn reload(self: &Arc<Self>) -> Result<(), ReloadError> {
        // The turn guards no data: a reload that panicked leaves nothing to repair.
        let _turn = self
            .reload_turn
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let result = self.load().map_err(ReloadError::from).and_then(|cfg| {
            let unchanged = self.current().is_some_and(|(old, _)| *old == cfg);
            if unchanged {
                info!(source = %cfg.source, "configuration unchanged");
                return Ok(());
            }
            let shard = cfg
                .shard_with(&self.shard_flags)
                .map_err(|error| ReloadError::Shard {
                    file: cfg.source.clone(),
                    error,
                })?;
            let ctx = ProbeContext::new(&cfg)?;
            self.start(cfg, ctx, shard);
            Ok(())
        });
        match &result {
            Ok(()) => {
                self.stats.config_reload_successful.set(1);
                self.stats.config_reload_timestamp.set(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs_f64())
                        .unwrap_or(0.0),
                );
            }
            Err(e) => {
                self.stats.config_reload_successful.set(0);
                warn!(error = %e, "configuration rejected; the previous one keeps running");
            }
        }
        result
    }

    fn start(self: &Arc<Self>, cfg: Config, ctx: ProbeContext, shard: Option<Shard>) {
        let cfg = Arc::new(cfg);
        let ctx = Arc::new(ctx);
        let rollover = match self.rollover() {
            Some(r) if r.state_file() == cfg.state_file.as_deref() => r,
            _ => Arc::new(Rollover::open(cfg.state_file.as_deref(), true)),
        };
        let (stop, stop_rx) = watch::channel(false);
        let sem = Arc::new(Semaphore::new(cfg.concurrency));
        let owned: Vec<&config::Target> = cfg.scheduled_targets(shard).collect();
        let mut tasks = Vec::with_capacity(owned.len() + 1);
        {
            let mut rng = rand::rng();
            for &t in &owned {
                let first = first_delay(cfg.interval, rng.random::<f64>());
                let phase = cfg.interval.mul_f64(rng.random::<f64>());
                tasks.push(tokio::spawn(target_loop(
                    t.clone(),
                    cfg.clone(),
                    ctx.clone(),
                    rollover.clone(),
                    self.store.clone(),
                    self.stats.clone(),
                    sem.clone(),
                    stop_rx.clone(),
                    first,
                    phase,
                )));
            }
        }
        // Ask the resolver only when some target needs DNS: an address-only config (the
        // sidecar default) must send no query at all.
        if owned
            .iter()
            .any(|t| !matches!(t.hop, crate::target::NextHop::Address { .. }))
        {
            tasks.push(tokio::spawn(resolver_check(
                ctx.clone(),
                self.stats.clone(),
                cfg.interval,
                stop_rx,
            )));
        } else {
            self.stats.resolver_validating.set(None);
        }
        let names: std::collections::HashSet<String> =
            owned.iter().map(|t| t.name.clone()).collect();
        self.store.retain(|t| names.contains(t));
        self.stats.targets.set(owned.len() as i64);
        self.stats.shard.set(shard, cfg.targets.len());
        self.stats.target_info.clear();
        for t in &owned {
            self.stats
                .target_info
                .get_or_create(&[
                    ("target", t.name.clone()),
                    ("kind", t.hop.kind().to_string()),
                ])
                .set(1);
        }
        let shard_index = shard.map(|s| s.index());
        let shard_count = shard.map(|s| s.count());
        info!(source = %cfg.source, targets = owned.len(), configured = cfg.targets.len(),
              shard_index = ?shard_index, shard_count = ?shard_count, interval = ?cfg.interval,
              validation = ?cfg.dns.validation, resolver = %cfg.dns.resolver, "configuration loaded");
        if cfg.trusts_remote_ad_bit() {
            warn!(resolver = %cfg.dns.resolver, "{REMOTE_AD_WARNING}");
        }
        drop(owned);
        let old = self.running().replace(Running {
            config: cfg,
            ctx,
            shard,
            rollover,
            tasks,
            stop,
        });
        if let Some(old) = old {
            let _ = old.stop.send(true);
            for t in old.tasks {
                t.abort();
            }
        }
    }

    /// Live counters of the current context, copied into the metrics before a scrape.
    pub(crate) fn refresh_stats(&self) {
        if let Some((_, ctx)) = self.current() {
            use std::sync::atomic::Ordering::Relaxed;
            self.stats
                .dns_queries
                .store(ctx.dns.queries_sent(), Relaxed);
            self.stats
                .dns_cache_entries
                .store(ctx.dns.cache_len() as u64, Relaxed);
            self.stats
                .smtp_dialogues
                .store(ctx.smtp_probes.load(Relaxed), Relaxed);
        }
    }

    /// Stops starting probes; waits up to `grace` for running ones, then aborts them.
    pub async fn shutdown(&self, grace: Duration) {
        let running = self.running().take();
        let Some(running) = running else { return };
        let _ = running.stop.send(true);
        let deadline = Instant::now() + grace;
        for t in running.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout_at(deadline, t).await.is_err() {
                abort.abort();
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn target_loop(
    target: config::Target,
    cfg: Arc<Config>,
    ctx: Arc<ProbeContext>,
    rollover: Arc<Rollover>,
    store: Arc<Store>,
    stats: Arc<ExporterMetrics>,
    sem: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    first: Duration,
    phase: Duration,
) {
    let epoch = Instant::now();
    let mut next = epoch + first;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.changed() => return,
        }
        let permit = tokio::select! {
            p = sem.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.changed() => return,
        };
        if *stop.borrow() {
            return;
        }
        // Boxed: a sleeping target task then holds a pointer, not the 4.5 KB probe state
        // machine (10,000 targets: ~45 MB less).
        let report = Box::pin(probe_target(
            &ctx,
            &target.name,
            &target.hop,
            ProbeOptions::default(),
        ))
        .await;
        drop(permit);
        let mut report = report;
        rollover.apply(&target.staged, &mut report);
        stats.count_probe(report.success);
        let report = Arc::new(report);
        let stored = Arc::new(Stored::new(&report));
        let previous = store.insert(&target.name, stored.clone());
        log_change(previous.as_deref(), &report, &stored);
        drop(report);
        next = next_slot(epoch + phase, cfg.interval, Instant::now());
    }
}

/// Delay of a target's first probe after (re)start: the fraction `u` ∈ [0, 1) of
/// [`FIRST_PROBE_SPREAD`], or of the interval when that is shorter.
fn first_delay(interval: Duration, u: f64) -> Duration {
    FIRST_PROBE_SPREAD.min(interval).mul_f64(u)
}

/// The target's next slot: the first `base + k·interval` (k ≥ 0) strictly after `now`,
/// where `base` is the loop's start plus the target's fixed phase. A probe that overran
/// skips the slots it missed instead of queueing them.
fn next_slot(base: Instant, interval: Duration, now: Instant) -> Instant {
    if now < base {
        return base;
    }
    let k = ((now - base).as_secs_f64() / interval.as_secs_f64()).floor();
    base + interval.mul_f64(k + 1.0)
}

fn log_change(previous: Option<&Stored>, r: &TargetReport, now: &Stored) {
    let summary = &now.dane_summary;
    let changed = previous.is_none_or(|p| p.success != r.success || p.dane_summary != *summary);
    if !changed {
        debug!(target = %r.target, success = r.success, dane = %summary, seconds = r.duration_seconds, "probe done");
    } else if r.success {
        info!(target = %r.target, success = r.success, dane = %summary, seconds = r.duration_seconds, "probe state changed");
    } else {
        let error = r.error.clone().unwrap_or_default();
        warn!(target = %r.target, success = r.success, dane = %summary, error = %error, seconds = r.duration_seconds, "probe state changed");
    }
}

async fn resolver_check(
    ctx: Arc<ProbeContext>,
    stats: Arc<ExporterMetrics>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut last = None;
    loop {
        let ok = ctx.dns.resolver_validates().await;
        stats.resolver_validating.set(Some(i64::from(ok)));
        if last != Some(ok) {
            if ok {
                info!("resolver validates DNSSEC");
            } else {
                warn!("resolver does not validate DNSSEC (the root SOA is not secure): every RRset will look insecure and DANE will not apply");
            }
            last = Some(ok);
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn first_probe_lands_within_the_spread_or_the_interval() {
        assert_eq!(first_delay(MINUTE, 0.0), Duration::ZERO);
        assert_eq!(first_delay(MINUTE, 0.5), FIRST_PROBE_SPREAD / 2);
        assert!(first_delay(MINUTE, 0.999_999) < FIRST_PROBE_SPREAD);
        // An interval shorter than the spread bounds the first probe instead.
        let short = Duration::from_secs(4);
        assert_eq!(first_delay(short, 0.5), Duration::from_secs(2));
        assert!(first_delay(short, 0.999_999) < short);
    }

    #[test]
    fn next_slot_is_the_phase_slot_strictly_after_now() {
        let epoch = Instant::now();
        let phase = Duration::from_secs(50);
        let base = epoch + phase;
        // After the early first probe (5 s in), the phase slot at 50 s comes next.
        assert_eq!(
            next_slot(base, MINUTE, epoch + Duration::from_secs(6)),
            base
        );
        // Just after a slot: the following one.
        assert_eq!(
            next_slot(base, MINUTE, base + Duration::from_secs(1)),
            base + MINUTE
        );
        // Exactly on a slot: strictly later, never the same instant twice.
        assert_eq!(next_slot(base, MINUTE, base + MINUTE), base + 2 * MINUTE);
    }

    #[test]
    fn a_probe_that_overran_skips_the_missed_slots() {
        let base = Instant::now();
        // A probe that ended 3.5 intervals after the base: the next slot is the 4th.
        let now = base + MINUTE * 3 + Duration::from_secs(30);
        assert_eq!(next_slot(base, MINUTE, now), base + MINUTE * 4);
    }

    #[test]
    fn slots_keep_the_phase_however_long_the_probes_take() {
        // Slots stay on base + k·interval: durations of earlier probes never drift the phase.
        let base = Instant::now();
        let mut now = base;
        for probe_secs in [1, 59, 0, 30, 61, 7] {
            let next = next_slot(base, MINUTE, now + Duration::from_secs(probe_secs));
            let offset = (next - base).as_secs_f64();
            assert_eq!(offset % 60.0, 0.0, "{offset}");
            assert!(next > now + Duration::from_secs(probe_secs));
            now = next;
        }
    }

    use prometheus_client::encoding::text::encode;

    /// A config of `n` address targets on a loopback test range (nothing listens on the
    /// discard port; no DNS), made distinct by its interval; written by rename, so a reload
    /// never reads half a file.
    fn write_config(path: &std::path::Path, n: usize, tag: usize) {
        let mut text = format!("interval: {}s\ntimeout: 5s\ntargets:\n", 60 + tag);
        for i in 0..n {
            text.push_str(&format!("  - address: 127.26.9.{}\n    port: 9\n", i + 1));
        }
        let tmp = path.with_extension(format!("tmp{tag}"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    /// The exporter's own series: (`mailtls_targets`, the `target` labels of
    /// `mailtls_target_info`).
    fn target_series(stats: &Arc<ExporterMetrics>) -> (i64, Vec<String>) {
        let mut text = String::new();
        encode(&mut text, &stats.registry()).unwrap();
        let mut count = -1;
        let mut names = Vec::new();
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("mailtls_targets ") {
                count = v.parse().unwrap();
            }
            if let Some(rest) = line.strip_prefix("mailtls_target_info{") {
                let t = rest.split("target=\"").nth(1).unwrap();
                names.push(t[..t.find('"').unwrap()].to_string());
            }
        }
        names.sort();
        (count, names)
    }

    fn assert_consistent(s: &Arc<Scheduler>, stats: &Arc<ExporterMetrics>, path: &std::path::Path) {
        let (cfg, _) = s.current().expect("a config in force");
        // The last reload read the file after every write that preceded it: what is in
        // force is what is on disk.
        assert_eq!(*cfg, config::load(path).unwrap());
        let mut want: Vec<String> = cfg.targets.iter().map(|t| t.name.clone()).collect();
        want.sort();
        let (count, names) = target_series(stats);
        assert_eq!(count, want.len() as i64);
        assert_eq!(names, want);
        assert_eq!(stats.config_reload_successful.get(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_reloads_leave_one_consistent_config_and_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yml");
        write_config(&path, 1, 0);
        let stats = Arc::new(ExporterMetrics::default());
        let s = Scheduler::new(Some(path.clone()), stats.clone());
        s.reload().unwrap();
        for round in 0..3 {
            let barrier = Arc::new(std::sync::Barrier::new(16));
            let mut jobs = Vec::new();
            for i in 0..16 {
                let (s, path, barrier) = (s.clone(), path.clone(), barrier.clone());
                let tag = 1 + round * 16 + i;
                jobs.push(tokio::task::spawn_blocking(move || {
                    barrier.wait();
                    write_config(&path, 1 + tag % 7, tag);
                    s.reload()
                }));
            }
            for j in jobs {
                j.await.unwrap().unwrap();
            }
            assert_consistent(&s, &stats, &path);
        }
        s.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reload_after_a_poisoned_lock_takes_effect_or_fails_never_fakes_success() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yml");
        write_config(&path, 1, 0);
        let stats = Arc::new(ExporterMetrics::default());
        let s = Scheduler::new(Some(path.clone()), stats.clone());
        s.reload().unwrap();
        // A thread panics while holding the lock on the running config (and the store).
        let s2 = s.clone();
        let _ = std::thread::spawn(move || {
            let _running = s2.running.lock();
            let _store = s2.store.reports.write();
            panic!("poison the locks");
        })
        .join();
        assert!(s.running.is_poisoned() && s.store.reports.is_poisoned());
        write_config(&path, 3, 1);
        let s3 = s.clone();
        tokio::task::spawn_blocking(move || s3.reload())
            .await
            .unwrap()
            .unwrap();
        let (cfg, _) = s.current().expect("the reloaded config is in force");
        assert_eq!(cfg.targets.len(), 3);
        assert_consistent(&s, &stats, &path);
        s.shutdown(Duration::from_secs(1)).await;
        assert!(s.current().is_none(), "shutdown took the running config");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sharded_replica_schedules_its_hashmod_share_and_keeps_the_shard_on_reload() {
        use crate::shard::{hashmod, Setting};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yml");
        write_config(&path, 12, 0);
        let flag = |value, from: &str| {
            Some(Setting {
                value,
                from: from.into(),
            })
        };
        let flags = ShardSpec {
            count: flag(2, "--shard.count=2"),
            index: flag(1, "--shard.index=mailtls-1"),
        };
        let stats = Arc::new(ExporterMetrics::default());
        let s = Scheduler::with_shard_flags(Some(path.clone()), stats.clone(), flags);
        for (round, n) in [(0, 12), (1, 9)] {
            if round > 0 {
                write_config(&path, n, round);
                let s2 = s.clone();
                tokio::task::spawn_blocking(move || s2.reload())
                    .await
                    .unwrap()
                    .unwrap();
            } else {
                s.reload().unwrap();
            }
            let (cfg, _) = s.current().unwrap();
            assert_eq!(cfg.targets.len(), n);
            let mut want: Vec<String> = cfg
                .targets
                .iter()
                .map(|t| t.name.clone())
                .filter(|t| hashmod(t, 2) == 1)
                .collect();
            want.sort();
            assert!(!want.is_empty() && want.len() < n, "{want:?}");
            let (count, names) = target_series(&stats);
            assert_eq!((count, &names), (want.len() as i64, &want), "round {round}");
            let mut text = String::new();
            encode(&mut text, &stats.registry()).unwrap();
            assert!(
                text.contains("mailtls_exporter_shard_info{index=\"1\",count=\"2\"} 1"),
                "{text}"
            );
            assert!(
                text.contains(&format!("mailtls_config_targets {n}\n")),
                "{text}"
            );
        }
        // A file whose shard keys contradict the flags' count: the flags win; an index the
        // file's own count cannot hold is rejected and the running shard stays.
        std::fs::write(
            &path,
            "shard:\n  count: 5\n  index: 4\ntargets:\n  - address: 127.26.9.1\n",
        )
        .unwrap();
        let s2 = s.clone();
        let e = tokio::task::spawn_blocking(move || s2.reload())
            .await
            .unwrap();
        assert!(e.is_ok(), "{e:?}");
        let (cfg, _) = s.current().unwrap();
        assert_eq!(
            cfg.shard_with(&s.shard_flags)
                .unwrap()
                .map(|s| (s.index(), s.count())),
            Some((1, 2))
        );
        let lone = Scheduler::new(Some(path.clone()), Arc::new(ExporterMetrics::default()));
        // Without flags the file's shard (4 of 5) is used as it is.
        lone.reload().unwrap();
        std::fs::write(&path, "shard:\n  count: 2\n  index: 2\n").unwrap();
        let l2 = lone.clone();
        let e = tokio::task::spawn_blocking(move || l2.reload())
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{}: shard index 2 ({}:3: shard.index) is out of range for shard count 2 ({}:2: shard.count): it must be 0..=1", path.display(), path.display(), path.display())
        );
        assert_eq!(
            lone.current()
                .unwrap()
                .0
                .shard
                .count
                .as_ref()
                .unwrap()
                .value,
            5
        );
        s.shutdown(Duration::from_secs(1)).await;
        lone.shutdown(Duration::from_secs(1)).await;
    }
}
