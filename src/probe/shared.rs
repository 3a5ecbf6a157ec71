//! SMTP results shared between targets that point at the same address within a round,
//! deadline-aware: a result cut short by one target's deadline is never inherited by a
//! target with more time, and a joiner waits only until its own deadline.
//!
//! Not here: running the dialogue (`smtp`), the generic coalescing cache (`cache`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{timeout_at, Instant};

use super::cache::Coalescing;
use crate::model::smtp::{ProbeError, SmtpReport, TlsMode};

/// How long past its own deadline a target waits for an SMTP session it shares with
/// another target (which may have a later deadline). Shorter than [`LAST_RESORT_SLACK`], so
/// the address gets its own reason rather than the whole report being replaced; long
/// enough that a target's own session, cut at that same deadline, finishes first.
pub(super) const SHARED_WAIT_SLACK: Duration = Duration::from_millis(250);
/// How often a target re-probes an address whose shared result was cut short by another
/// target's earlier deadline (each attempt runs under its own deadline, so one suffices
/// unless yet another target's earlier session is joined meanwhile).
const MAX_SHARED_ATTEMPTS: usize = 3;

/// An address, the SNI sent to it and how TLS starts there.
pub(super) type SmtpKey = (SocketAddr, Option<String>, TlsMode);

/// Most (address, SNI) results kept for sharing; beyond it the oldest go first.
pub(crate) const MAX_SHARED_SMTP_RESULTS: usize = 100_000;

/// One shared SMTP result and the deadline it ran under.
#[derive(Clone)]
struct Shared {
    report: Arc<SmtpReport>,
    deadline: Instant,
}

impl Shared {
    /// A result that the deadline cut short (a `*_timeout`) says "not done by
    /// `self.deadline`": it holds for a target whose deadline is no later, but a target
    /// with more time left must probe again rather than inherit a timeout it would not have
    /// had. Any other result is what the server said, whoever asked.
    fn holds_for(&self, deadline: Instant) -> bool {
        !self.report.error.as_ref().is_some_and(|e| e.is_timeout()) || self.deadline >= deadline
    }
}

/// SMTP results shared between targets that point at the same address within a round:
/// filled by the first prober, awaited by the others, reused for `max_age`; deadline-aware
/// (see [`SmtpCache::get`]).
pub(crate) struct SmtpCache {
    max_age: Duration,
    results: Coalescing<SmtpKey, Shared>,
}

impl SmtpCache {
    pub(crate) fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            results: Coalescing::new(MAX_SHARED_SMTP_RESULTS),
        }
    }

    /// The result for `key` for a target whose deadline is `deadline`:
    /// - a cached or in-flight result is shared, but waited for only until the target's own
    ///   deadline (a session started by a target with a later deadline may run longer);
    ///   if it has not finished by then, the address fails with `shared_timeout`;
    /// - a result cut short by an earlier deadline than this target's is not inherited: it
    ///   counts as expired and the address is probed again under this target's deadline.
    pub(super) async fn get<F, Fut>(
        &self,
        key: SmtpKey,
        deadline: Instant,
        fetch: F,
    ) -> Arc<SmtpReport>
    where
        F: Fn(Instant) -> Fut,
        Fut: Future<Output = Arc<SmtpReport>>,
    {
        let ttl = |s: &Shared| {
            if s.holds_for(deadline) {
                self.max_age
            } else {
                Duration::ZERO
            }
        };
        let joined = Instant::now();
        let mut last = None;
        for _ in 0..MAX_SHARED_ATTEMPTS {
            let run = || async {
                Shared {
                    report: fetch(deadline).await,
                    deadline,
                }
            };
            let wait = self.results.get_or_fetch(key.clone(), ttl, run);
            match timeout_at(deadline + SHARED_WAIT_SLACK, wait).await {
                Ok(s) if s.holds_for(deadline) => return s.report,
                Ok(s) => last = Some(s.report),
                Err(_) => break,
            }
        }
        last.unwrap_or_else(|| {
            let mut r = SmtpReport::new(key.0);
            r.tls_mode = key.2;
            r.error = Some(ProbeError::SharedTimeout {
                after: joined.elapsed(),
            });
            Arc::new(r)
        })
    }
}
