//! Signature checks memoized for one served chain: webpki verifies the same
//! (key, signed data, signature) triple once, however many paths need it.
//!
//! Owns: [`SignatureMemo`] and the wrapped algorithms handed to webpki. PKIX validation
//! (leaf → intermediate → root) and a DANE-TA path (leaf → the served CA a `2 x x` record
//! names) both check the leaf's signature with the CA's key; with the memo the second
//! check reuses the first's result (docs/performance.md). The result of a signature check
//! is a pure function of the algorithm, the key, the message and the signature, and the
//! memo is keyed by a SHA-256 over all four, so a hit gives exactly what the check would
//! have given. Because the key is the content, one memo can also serve many chains: the
//! probe context keeps one for every probe ([`SignatureMemo::shared`]), so the issuing CA's
//! signature by its root is checked once for every leaf it issued, and a leaf that several
//! domains' MX hosts serve once for all of them. Bounded: a memo holds at most its capacity
//! of results and starts over when full.

use std::collections::HashMap;
use std::sync::Mutex;

use rustls_pki_types::{
    AlgorithmIdentifier, FipsStatus, InvalidSignature, SignatureVerificationAlgorithm,
};
use sha2::{Digest, Sha256};

/// Results kept for one chain: a served chain is at most a handful of certificates, and each
/// certificate has one issuer candidate per served CA or anchor.
const MEMO_ENTRIES: usize = 32;
/// Results kept by a memo shared by every probe (~70 bytes each).
const SHARED_MEMO_ENTRIES: usize = 16_384;

/// Signature check results: of one served chain, or of every chain a probe context sees.
#[derive(Debug)]
pub struct SignatureMemo {
    results: Mutex<HashMap<[u8; 32], bool>>,
    capacity: usize,
    /// Checks that actually ran (tests assert that shared paths run each once).
    #[cfg(test)]
    computed: std::sync::atomic::AtomicUsize,
}

impl Default for SignatureMemo {
    fn default() -> Self {
        Self::with_capacity(MEMO_ENTRIES)
    }
}

impl SignatureMemo {
    pub(super) fn with_capacity(capacity: usize) -> Self {
        Self {
            results: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            #[cfg(test)]
            computed: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// A memo for every chain of a probe context (`ServedChain::with_memo`).
    pub fn shared() -> Self {
        Self::with_capacity(SHARED_MEMO_ENTRIES)
    }

    /// webpki's algorithms, each wrapped to consult this memo; pass `as_dyn` of the result.
    pub(super) fn algorithms(&self) -> Vec<Memoized<'_>> {
        webpki::ALL_VERIFICATION_ALGS
            .iter()
            .enumerate()
            .map(|(index, inner)| Memoized {
                inner: *inner,
                index,
                memo: self,
            })
            .collect()
    }

    fn get(&self, key: &[u8; 32]) -> Option<bool> {
        let results = self.results.lock().ok()?;
        results.get(key).copied()
    }

    fn put(&self, key: [u8; 32], ok: bool) {
        if let Ok(mut results) = self.results.lock() {
            if results.len() >= self.capacity {
                results.clear();
            }
            results.insert(key, ok);
        }
    }

    /// Results held.
    pub fn len(&self) -> usize {
        self.results.lock().map(|r| r.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[cfg(test)]
    pub(super) fn computed(&self) -> usize {
        self.computed.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The references webpki takes.
pub(super) fn as_dyn<'m>(algs: &'m [Memoized<'m>]) -> Vec<&'m dyn SignatureVerificationAlgorithm> {
    algs.iter()
        .map(|a| a as &dyn SignatureVerificationAlgorithm)
        .collect()
}

/// One of webpki's algorithms, answering from the memo when it can.
#[derive(Debug)]
pub(super) struct Memoized<'m> {
    inner: &'static dyn SignatureVerificationAlgorithm,
    /// Position in `ALL_VERIFICATION_ALGS`: part of the key.
    index: usize,
    memo: &'m SignatureMemo,
}

impl Memoized<'_> {
    fn key(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update((self.index as u64).to_be_bytes());
        for part in [public_key, message, signature] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.finalize().into()
    }
}

impl SignatureVerificationAlgorithm for Memoized<'_> {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        let key = self.key(public_key, message, signature);
        if let Some(ok) = self.memo.get(&key) {
            return if ok { Ok(()) } else { Err(InvalidSignature) };
        }
        #[cfg(test)]
        self.memo
            .computed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let result = self.inner.verify_signature(public_key, message, signature);
        self.memo.put(key, result.is_ok());
        result
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        self.inner.public_key_alg_id()
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        self.inner.signature_alg_id()
    }

    fn fips_status(&self) -> FipsStatus {
        self.inner.fips_status()
    }

    fn fips(&self) -> bool {
        self.inner.fips()
    }
}
