//! The web config's basic auth: bcrypt-hashed users and a cache of successful checks.
//! RFC 7617 (Basic auth).
//!
//! Not here: the file format (`webconfig`), answering 401 (`http`).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::*;

/// Basic-auth users and the cache of successful checks.
///
/// bcrypt is slow by design, so a successful (user, hash, password) check is remembered
/// as a SHA-256 digest over a per-process random key (never the password itself), as
/// exporter-toolkit does; repeated scrapes then cost one hash. Failures are not cached, so
/// a flood of wrong passwords cannot evict good entries; bcrypt runs one at a time. An
/// unknown user is checked against a dummy hash of the highest configured cost, so the
/// answer time does not tell which users exist; bcrypt compares in constant time.
pub struct BasicAuth {
    pub(super) users: HashMap<String, String>,
    dummy_hash: String,
    cache_key: [u8; 32],
    cache: Mutex<HashSet<[u8; 32]>>,
    bcrypt_turn: Mutex<()>,
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
            bcrypt_turn: Mutex::new(()),
        })
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

    /// Checks an `Authorization` header value. Blocking (bcrypt): call from a blocking
    /// context when the answer is not cached.
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
        let ok = {
            let _turn = self.bcrypt_turn.lock();
            bcrypt::verify(&password, hash).unwrap_or(false)
        };
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
