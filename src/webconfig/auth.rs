//! The web config's basic auth: bcrypt-hashed users, a cache of successful checks and the
//! gate that bounds bcrypt work. RFC 7617 (Basic auth).
//!
//! Not here: the file format (`webconfig`), answering 401 or 429 (`http`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::*;

/// Basic-auth users and the cache of successful checks.
///
/// bcrypt is slow by design, so a successful (user, hash, password) check is remembered
/// as a SHA-256 digest over a per-process random key (never the password itself), as
/// exporter-toolkit does; repeated scrapes then cost one hash. Failures are not cached, so
/// a flood of wrong passwords cannot evict good entries. bcrypt runs in at most
/// [`BCRYPT_SLOTS`] checks at once; a request that finds no free slot within
/// [`BCRYPT_WAIT`] is answered "busy" (429) without running bcrypt, so a flood of bad
/// passwords costs at most one core and queues nothing but waiting futures. An unknown
/// user is checked against a dummy hash of the highest configured cost, so the answer time
/// does not tell which users exist; bcrypt compares in constant time.
pub struct BasicAuth {
    pub(super) users: HashMap<String, String>,
    dummy_hash: String,
    cache_key: [u8; 32],
    cache: Mutex<HashSet<[u8; 32]>>,
    bcrypt_slots: Arc<Semaphore>,
}

/// bcrypt verifications running at once (per web config).
pub(crate) const BCRYPT_SLOTS: usize = 1;
/// How long a request that needs bcrypt waits for a slot before it is answered 429: a few
/// cost-12 checks, and half of Prometheus' default 10 s scrape timeout. A burst of scrapers
/// logging in with the same credentials after a restart waits, and all but the first find
/// the cache filled when their turn comes.
pub(crate) const BCRYPT_WAIT: Duration = Duration::from_secs(5);

/// The answer to an `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Authorization {
    Allowed,
    Denied,
    /// Every bcrypt slot stayed busy for [`BCRYPT_WAIT`]: nothing was checked.
    Busy,
}

impl BasicAuth {
    pub(super) fn new(
        users: HashMap<String, String>,
        cost: u32,
    ) -> Result<Self, bcrypt::BcryptError> {
        let secret: [u8; 32] = rand::random();
        let dummy_hash = bcrypt::hash(secret, cost)?;
        Ok(Self {
            users,
            dummy_hash,
            cache_key: rand::random(),
            cache: Mutex::new(HashSet::new()),
            bcrypt_slots: Arc::new(Semaphore::new(BCRYPT_SLOTS)),
        })
    }

    /// Checks an `Authorization` header value: from the cache at once, else bcrypt on the
    /// blocking pool once a slot is free (see the type's doc).
    pub(crate) async fn authorize(
        self: Arc<Self>,
        authorization: Option<Vec<u8>>,
    ) -> Authorization {
        let verdict = |ok: bool| {
            if ok {
                Authorization::Allowed
            } else {
                Authorization::Denied
            }
        };
        if self.is_cached(authorization.as_deref()) {
            return verdict(self.check(authorization.as_deref()));
        }
        let slot = match tokio::time::timeout(
            BCRYPT_WAIT,
            self.bcrypt_slots.clone().acquire_owned(),
        )
        .await
        {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) | Err(_) => return Authorization::Busy,
        };
        // Filled while this request waited (the same login from another scraper)?
        if self.is_cached(authorization.as_deref()) {
            return verdict(self.check(authorization.as_deref()));
        }
        // The slot moves into the blocking task: it is freed when bcrypt ends, even if
        // the client has gone.
        let ok = tokio::task::spawn_blocking(move || {
            let ok = self.check(authorization.as_deref());
            drop(slot);
            ok
        })
        .await
        .unwrap_or(false);
        verdict(ok)
    }

    fn digest(&self, user: &str, hash: &str, password: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.cache_key);
        for part in [user.as_bytes(), hash.as_bytes(), password] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.finalize().into()
    }

    /// Checks an `Authorization` header value. Blocking (bcrypt) and ungated: only
    /// [`authorize`](Self::authorize) and tests call it.
    pub fn check(&self, authorization: Option<&[u8]>) -> bool {
        let Some((user, password)) = authorization.and_then(decode_basic) else {
            return false;
        };
        let (known, hash) = match self.users.get(&user) {
            Some(h) => (true, h.as_str()),
            None => (false, self.dummy_hash.as_str()),
        };
        let digest = self.digest(&user, hash, &password);
        if known && self.cache.lock().is_ok_and(|c| c.contains(&digest)) {
            return true;
        }
        let ok = bcrypt::verify(&password, hash).unwrap_or(false);
        if ok && known {
            if let Ok(mut c) = self.cache.lock() {
                if c.len() >= MAX_CACHED_LOGINS {
                    c.clear();
                }
                c.insert(digest);
            }
        }
        ok && known
    }

    /// Would [`check`](Self::check) answer without running bcrypt?
    pub fn is_cached(&self, authorization: Option<&[u8]>) -> bool {
        let Some((user, password)) = authorization.and_then(decode_basic) else {
            return true; // malformed: refused at once
        };
        match self.users.get(&user) {
            Some(h) => {
                let d = self.digest(&user, h, &password);
                self.cache.lock().is_ok_and(|c| c.contains(&d))
            }
            None => false,
        }
    }
}

/// `Basic base64(user:password)` → (user, password). RFC 7617 §2; the scheme name is
/// case-insensitive.
pub(super) fn decode_basic(v: &[u8]) -> Option<(String, Vec<u8>)> {
    let v = std::str::from_utf8(v).ok()?.trim();
    let (scheme, creds) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(creds.trim())
        .ok()?;
    let colon = raw.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(raw[..colon].to_vec()).ok()?;
    Some((user, raw[colon + 1..].to_vec()))
}

#[cfg(test)]
impl BasicAuth {
    pub(super) fn bcrypt_slots_for_test(&self) -> Arc<Semaphore> {
        self.bcrypt_slots.clone()
    }
}
