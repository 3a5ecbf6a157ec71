//! `/probe` admission: identical concurrent requests share one probe, at most
//! `probe.max_concurrent` probes run at once, and a request waits for a slot only as long as
//! its scrape can still complete.
//!
//! Owns: the flight table (one entry per canonical target, debug flag and address policy,
//! present only while someone waits on it), the probe slots, and the waiting budget:
//! - the request's budget `B` is Prometheus' `X-Prometheus-Scrape-Timeout-Seconds` (else
//!   [`DEFAULT_SCRAPE_TIMEOUT`]) minus [`SCRAPE_MARGIN`] for encoding and transfer;
//! - of `B`, the probe keeps `R = min(timeout, B / 2)`: a request waits for a slot until only
//!   `R` is left, so a probe that starts can still run its whole `timeout` when that fits in
//!   half the budget, and at least half the budget otherwise (waiting for nothing but a probe
//!   Prometheus would cut off anyway helps nobody, and a burst of scrapes with the default
//!   10 s scrape timeout and 30 s probe timeout must still be smoothed rather than refused);
//! - the probe then runs with `min(timeout, time left of B)` as its deadline, so it reports
//!   (a partial result or a timeout) before Prometheus gives up on the scrape;
//! - a request that gets no slot, or whose shared probe outlives its budget, is [`Outcome::Busy`]
//!   (503 with `Retry-After`, by then every running probe has ended).
//!
//! A request that shares a probe waits on it within its own budget; if the request that
//! started it gave up waiting for a slot, the next waiter tries with its own budget. A
//! client that disconnects cancels only its own wait (and the probe, if no one else waits).
//! Not here: HTTP (`http`), probing (`probe`), the allow list (`config`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{OnceCell, Semaphore};
use tokio::time::{timeout_at, Instant};

use crate::model::report::TargetReport;
use crate::probe::{probe_checked, AddressPolicy, ProbeContext, ProbeOptions, Refused};
use crate::target::NextHop;

/// Scrape timeout assumed without `X-Prometheus-Scrape-Timeout-Seconds` (Prometheus' default).
pub(crate) const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// Kept from the scrape timeout for encoding and sending the answer (blackbox_exporter's offset).
pub(crate) const SCRAPE_MARGIN: Duration = Duration::from_millis(500);
/// Bounds on a scrape timeout taken from the header.
pub(crate) const MIN_SCRAPE_TIMEOUT: Duration = Duration::from_secs(1);
pub(crate) const MAX_SCRAPE_TIMEOUT: Duration = Duration::from_secs(600);

/// What a `/probe` request gets.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// The probe ran (or was shared): its report.
    Report(Arc<TargetReport>),
    /// The address policy stopped the probe before any connection.
    Refused(Refused),
    /// No probe slot within the request's budget: try again after this long.
    Busy { retry_after: Duration },
}

/// One `/probe` request, its access already decided.
pub(crate) struct Request {
    pub(crate) ctx: Arc<ProbeContext>,
    pub(crate) hop: NextHop,
    pub(crate) debug: bool,
    pub(crate) addresses: AddressPolicy,
    /// `probe.max_concurrent` of the config in force.
    pub(crate) max_concurrent: usize,
    /// From `X-Prometheus-Scrape-Timeout-Seconds`, when sent.
    pub(crate) scrape_timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FlightKey {
    target: String,
    debug: bool,
    addresses: AddressPolicy,
}

type Shared = Result<Arc<TargetReport>, Refused>;

/// One probe in flight, awaited by every identical request.
#[derive(Default)]
struct Flight {
    result: OnceCell<Shared>,
}

/// No probe slot in time.
struct NoSlot;

/// Shared by every `/probe` request of the server; survives config reloads.
#[derive(Default)]
pub struct Admission {
    flights: Mutex<HashMap<FlightKey, Arc<Flight>>>,
    /// Slots of the `max_concurrent` in force. A reload that changes it starts a new set;
    /// probes holding slots of the old one finish on them.
    slots: Mutex<Option<(usize, Arc<Semaphore>)>>,
}

/// Parses `X-Prometheus-Scrape-Timeout-Seconds` (seconds, decimal), clamped to
/// [`MIN_SCRAPE_TIMEOUT`]..=[`MAX_SCRAPE_TIMEOUT`]; `None` when absent or malformed.
pub(crate) fn scrape_timeout(header: Option<&str>) -> Option<Duration> {
    let secs: f64 = header?.trim().parse().ok()?;
    if !secs.is_finite() || secs <= 0.0 {
        return None;
    }
    let d = Duration::from_secs_f64(secs.min(MAX_SCRAPE_TIMEOUT.as_secs_f64()));
    Some(d.max(MIN_SCRAPE_TIMEOUT))
}

/// The request's budget and the time the probe keeps of it (see the module doc).
fn budget(scrape_timeout: Option<Duration>, probe_timeout: Duration) -> (Duration, Duration) {
    let scrape = scrape_timeout.unwrap_or(DEFAULT_SCRAPE_TIMEOUT);
    let b = scrape.saturating_sub(SCRAPE_MARGIN).max(SCRAPE_MARGIN);
    (b, probe_timeout.min(b / 2))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded maps stay consistent at every await-free step: a poisoned lock is usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes its flight from the table when the last request waiting on it goes (done or
/// cancelled), so the table holds only flights someone waits for.
struct Waiting<'a> {
    admission: &'a Admission,
    key: FlightKey,
    flight: Arc<Flight>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut flights = lock(&self.admission.flights);
        if let Some(f) = flights.get(&self.key) {
            // Two references: the table's and ours.
            if Arc::ptr_eq(f, &self.flight) && Arc::strong_count(&self.flight) == 2 {
                flights.remove(&self.key);
            }
        }
    }
}

impl Admission {
    pub fn new() -> Self {
        Self::default()
    }

    fn slots(&self, n: usize) -> Arc<Semaphore> {
        let mut s = lock(&self.slots);
        match &*s {
            Some((m, sem)) if *m == n => sem.clone(),
            _ => {
                let sem = Arc::new(Semaphore::new(n));
                *s = Some((n, sem.clone()));
                sem
            }
        }
    }

    /// Runs (or joins) the probe `req` asks for, within its budget.
    pub(crate) async fn probe(&self, req: Request) -> Outcome {
        let started = Instant::now();
        let (b, reserve) = budget(req.scrape_timeout, req.ctx.timeout);
        let deadline = started + b;
        let slot_deadline = deadline - reserve;
        let retry_after = req.ctx.timeout.min(b);
        let key = FlightKey {
            target: req.hop.to_string(),
            debug: req.debug,
            addresses: req.addresses,
        };
        let flight = lock(&self.flights).entry(key.clone()).or_default().clone();
        let waiting = Waiting {
            admission: self,
            key,
            flight,
        };
        let slots = self.slots(req.max_concurrent);
        let init = || async {
            let Ok(Ok(_slot)) = timeout_at(slot_deadline, slots.acquire_owned()).await else {
                return Err(NoSlot);
            };
            let opts = ProbeOptions {
                fresh: true,
                transcript: req.debug,
                addresses: req.addresses,
                deadline: Some(deadline.saturating_duration_since(Instant::now())),
                tls: None,
            };
            let target = req.hop.to_string();
            Ok(probe_checked(&req.ctx, &target, &req.hop, opts)
                .await
                .map(Arc::new))
        };
        let outcome = match timeout_at(deadline, waiting.flight.result.get_or_try_init(init)).await
        {
            Ok(Ok(Ok(report))) => Outcome::Report(report.clone()),
            Ok(Ok(Err(refused))) => Outcome::Refused(refused.clone()),
            Ok(Err(NoSlot)) | Err(_) => Outcome::Busy { retry_after },
        };
        if waiting.flight.result.initialized() {
            // Done: later requests start a new probe; those already waiting share this one.
            let mut flights = lock(&self.flights);
            if flights
                .get(&waiting.key)
                .is_some_and(|f| Arc::ptr_eq(f, &waiting.flight))
            {
                flights.remove(&waiting.key);
            }
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_timeout_header_is_clamped_and_checked() {
        assert_eq!(
            scrape_timeout(Some("9.5")),
            Some(Duration::from_millis(9500))
        );
        assert_eq!(scrape_timeout(Some("0.1")), Some(MIN_SCRAPE_TIMEOUT));
        assert_eq!(scrape_timeout(Some("1e9")), Some(MAX_SCRAPE_TIMEOUT));
        for bad in [
            None,
            Some(""),
            Some("x"),
            Some("-1"),
            Some("NaN"),
            Some("inf"),
        ] {
            assert_eq!(scrape_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn probe_keeps_its_timeout_when_it_fits_in_half_the_budget() {
        // 10 s scrape, 3 s probe timeout: wait up to 6.5 s, then 3 s of probing.
        let (b, r) = budget(None, Duration::from_secs(3));
        assert_eq!(
            (b, r),
            (Duration::from_millis(9500), Duration::from_secs(3))
        );
        // 10 s scrape, 30 s probe timeout: wait up to half, probe gets the other half.
        let (b, r) = budget(None, Duration::from_secs(30));
        assert_eq!(r, b / 2);
        // A tiny scrape timeout still leaves a positive budget.
        let (b, r) = budget(Some(Duration::from_millis(200)), Duration::from_secs(30));
        assert!(b > Duration::ZERO && r <= b);
    }
}
