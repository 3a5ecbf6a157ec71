//! A bounded TTL cache that coalesces concurrent fetches of one key: the first caller
//! fetches, the others await its result, and the result is shared until its TTL ends.
//!
//! Used by the resolver (one query per name and type however many targets share it,
//! `probe::dns`) and by the SMTP step (one dialogue per address and SNI within a round,
//! `probe`). Bounded: when full, expired entries go first, then the oldest ones, down to
//! half the capacity. Not here: what is fetched, or for how long it stays fresh.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

struct Entry<V> {
    cell: Arc<OnceCell<V>>,
    inserted: Instant,
}

/// Keys `K` to shared results `V`, at most `max_entries` of them.
pub(crate) struct Coalescing<K, V> {
    map: Mutex<HashMap<K, Entry<V>>>,
    max_entries: usize,
}

impl<K: Eq + Hash + Clone, V: Clone> Coalescing<K, V> {
    pub(crate) fn new(max_entries: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            max_entries: max_entries.max(1),
        }
    }

    /// The cached value of `key` if it is in flight or younger than `ttl(value)`;
    /// otherwise the value `fetch` yields, shared with every caller that asks meanwhile.
    pub(crate) async fn get_or_fetch<F, Fut>(
        &self,
        key: K,
        ttl: impl Fn(&V) -> Duration,
        fetch: F,
    ) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        self.cell(key, &ttl).get_or_init(fetch).await.clone()
    }

    fn cell(&self, key: K, ttl: &impl Fn(&V) -> Duration) -> Arc<OnceCell<V>> {
        let Ok(mut map) = self.map.lock() else {
            return Arc::new(OnceCell::new()); // poisoned: fetch without sharing
        };
        let now = Instant::now();
        if let Some(e) = map.get(&key) {
            match e.cell.get() {
                None => return e.cell.clone(), // in flight: share it
                Some(v) if now.duration_since(e.inserted) < ttl(v) => return e.cell.clone(),
                Some(_) => {}
            }
        }
        if map.len() >= self.max_entries {
            evict(&mut map, now, ttl, self.max_entries / 2);
        }
        let cell = Arc::new(OnceCell::new());
        map.insert(
            key,
            Entry {
                cell: cell.clone(),
                inserted: now,
            },
        );
        cell
    }

    /// Entries held (fresh, expired or in flight).
    pub(crate) fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Drops every entry (config reload, tests); fetches in flight finish for their callers.
    pub(crate) fn clear(&self) {
        if let Ok(mut m) = self.map.lock() {
            m.clear();
        }
    }
}

/// Drops expired entries; if more than `keep` remain, drops the oldest until `keep` are left.
fn evict<K: Eq + Hash + Clone, V>(
    map: &mut HashMap<K, Entry<V>>,
    now: Instant,
    ttl: &impl Fn(&V) -> Duration,
    keep: usize,
) {
    map.retain(|_, e| match e.cell.get() {
        None => true,
        Some(v) => now.duration_since(e.inserted) < ttl(v),
    });
    let Some(excess) = map.len().checked_sub(keep).filter(|n| *n > 0) else {
        return;
    };
    let mut by_age: Vec<(Instant, K)> = map.iter().map(|(k, e)| (e.inserted, k.clone())).collect();
    by_age.sort_unstable_by_key(|(at, _)| *at);
    for (_, k) in by_age.into_iter().take(excess) {
        map.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(d: Duration) -> impl Fn(&u32) -> Duration {
        move |_| d
    }

    #[tokio::test]
    async fn concurrent_fetches_of_one_key_run_once() {
        let c: Coalescing<&str, u32> = Coalescing::new(10);
        let runs = std::sync::atomic::AtomicU32::new(0);
        let fetch = || async {
            runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::task::yield_now().await;
            7
        };
        let ttl = Duration::from_secs(60);
        let (a, b) = tokio::join!(
            c.get_or_fetch("k", fixed(ttl), fetch),
            c.get_or_fetch("k", fixed(ttl), fetch)
        );
        assert_eq!((a, b), (7, 7));
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn expired_values_are_fetched_again() {
        let c: Coalescing<&str, u32> = Coalescing::new(10);
        assert_eq!(
            c.get_or_fetch("k", fixed(Duration::ZERO), || async { 1 })
                .await,
            1
        );
        assert_eq!(
            c.get_or_fetch("k", fixed(Duration::ZERO), || async { 2 })
                .await,
            2
        );
        // The TTL is asked of the cached value at lookup time: under a long one it is fresh.
        let long = fixed(Duration::from_secs(60));
        assert_eq!(c.get_or_fetch("k", &long, || async { 3 }).await, 2);
    }

    #[tokio::test]
    async fn full_cache_drops_expired_first_and_stays_bounded() {
        let c: Coalescing<u32, u32> = Coalescing::new(8);
        // Four entries that expire at once (TTL from the value: 0 = expired).
        for k in 0..4 {
            c.get_or_fetch(
                k,
                |v: &u32| Duration::from_secs(u64::from(*v)),
                || async { 0 },
            )
            .await;
        }
        let ttl = |v: &u32| Duration::from_secs(u64::from(*v));
        for k in 4..8 {
            c.get_or_fetch(k, ttl, || async { 60 }).await;
        }
        assert_eq!(c.len(), 8);
        // Full: the expired four go, the fresh four stay, no halving beyond that.
        c.get_or_fetch(100, ttl, || async { 60 }).await;
        assert_eq!(c.len(), 5);
        // Filling it with fresh entries only: the oldest go, down to half the capacity.
        for k in 200..300 {
            c.get_or_fetch(k, ttl, || async { 60 }).await;
            assert!(c.len() <= 8, "{} entries", c.len());
        }
        // The newest entry survived the last eviction.
        assert_eq!(c.get_or_fetch(299, ttl, || async { 1 }).await, 60);
    }
}
