//! Rollover state after each probe: the first-seen store of TLSA records (kept in
//! `state_file`), the TLSA RRsets' original TTLs, and the staged files, re-read when they
//! change (README, "Rolling over certificates and keys").
//!
//! Owns: [`Rollover::apply`], which the scheduler, `/probe` and `check` call on every fresh
//! report: it fills `HostReport::tlsa_timing` (`ttl`, `first_seen`) and
//! `TargetReport::staged`. The store is bounded ([`MAX_FIRST_SEEN`]); the state file is
//! written atomically (temporary file, then rename) when the store changed, and read at
//! start: a missing, unreadable or corrupt file is one log line and an empty store. A staged
//! file that is missing, unreadable, too large, unparsable or holds a private key is a
//! [`StagedFileError`] in the report and one log line per change, never a crash; its bytes
//! are dropped at once.
//! Not here: the verdict on staged material (`staged`), the authoritative-server check
//! (`probe`), rendering (`metrics`, `planner`).
//! RFC 7671 §8.1 (two TTLs after every server publishes), RFC 4034 §3.1.4 (original TTL).

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use rustls_pki_types::UnixTime;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::config::{Config, Staged, StagedKind};
use crate::model::dns::{Data, Dnssec, Outcome};
use crate::model::report::{HostReport, TargetReport};
use crate::model::staged::{StagedFileError, StagedReport};
use crate::staged::{self, tlsa_owner, Material, MAX_STAGED_FILE_BYTES};
use crate::target::NextHop;

/// Most TLSA records whose first-seen time is kept (the store and the state file).
pub const MAX_FIRST_SEEN: usize = 10_000;
/// A record not confirmed (seen published, or unseen because its lookup failed) for this
/// long is dropped: its target was removed from the config.
pub const FORGET_AFTER_SECONDS: f64 = 30.0 * 86_400.0;
/// How often forgotten records are dropped (a scan of the whole store).
const PRUNE_EVERY_SECONDS: f64 = 60.0;
/// Shortest time between two writes of the state file.
const SAVE_EVERY_SECONDS: f64 = 1.0;
/// Most staged files whose content is cached.
const MAX_CACHED_FILES: usize = 4096;
const STATE_VERSION: u32 = 1;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Seen {
    first_seen: f64,
    last_seen: f64,
}

/// (TLSA owner name, record in presentation form) → when first seen published.
#[derive(Debug, Default)]
struct FirstSeen {
    records: BTreeMap<(String, String), Seen>,
    /// The store was full when a record had to be added (logged once per episode).
    full_logged: bool,
    /// When records not seen for [`FORGET_AFTER_SECONDS`] were last dropped (a scan of the
    /// whole store, so at most every [`PRUNE_EVERY_SECONDS`], not on every probe).
    last_prune: f64,
    /// Changed since the state file was last written, and when that was: a round of many
    /// new targets writes it at most every [`SAVE_EVERY_SECONDS`], not once per probe.
    dirty: bool,
    last_save: f64,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    records: Vec<StateRecord>,
}

#[derive(Serialize, Deserialize)]
struct StateRecord {
    owner: String,
    record: String,
    first_seen: f64,
    #[serde(default)]
    last_seen: f64,
}

impl FirstSeen {
    /// Updates the store from one host's TLSA lookup; returns `first_seen` aligned with
    /// `h.tlsa_records`. A record counts as published when it is in the secure RRset and
    /// (when the authoritative servers were asked) every one of them serves it. Published
    /// records not yet known start their clock now; known records of the owner that are no
    /// longer published are forgotten (re-publishing restarts the clock). A failed or bogus
    /// lookup changes nothing.
    fn observe(
        &mut self,
        owner: &str,
        h: &HostReport,
        now: f64,
        changed: &mut bool,
    ) -> Vec<Option<f64>> {
        let published: Vec<bool> = (0..h.tlsa_records.len())
            .map(|i| h.tlsa_timing.on_every_server.get(i) != Some(&Some(false)))
            .collect();
        let keys: Vec<(String, String)> = h
            .tlsa_records
            .iter()
            .map(|t| (owner.to_string(), t.presentation()))
            .collect();
        match h.tlsa_dnssec {
            Some(Dnssec::Secure) | Some(Dnssec::Insecure) => {
                let secure = h.tlsa_dnssec == Some(Dnssec::Secure);
                // The owner's records only (a range of the map, not a scan of all owners).
                let gone: Vec<(String, String)> = self
                    .records
                    .range((owner.to_string(), String::new())..)
                    .take_while(|(k, _)| k.0 == owner)
                    .filter(|(k, _)| {
                        !(secure && keys.iter().zip(&published).any(|(key, p)| *p && key == *k))
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in &gone {
                    self.records.remove(k);
                }
                *changed |= !gone.is_empty();
                if !secure {
                    return vec![None; keys.len()];
                }
            }
            _ => {
                return keys
                    .iter()
                    .map(|k| {
                        self.records.get_mut(k).map(|s| {
                            s.last_seen = now;
                            s.first_seen
                        })
                    })
                    .collect();
            }
        }
        let mut out = Vec::with_capacity(keys.len());
        for (k, p) in keys.into_iter().zip(published) {
            if !p {
                out.push(None);
                continue;
            }
            if let Some(s) = self.records.get_mut(&k) {
                s.last_seen = now;
                out.push(Some(s.first_seen));
            } else if self.records.len() < MAX_FIRST_SEEN {
                self.records.insert(
                    k,
                    Seen {
                        first_seen: now,
                        last_seen: now,
                    },
                );
                *changed = true;
                self.full_logged = false;
                out.push(Some(now));
            } else {
                if !self.full_logged {
                    warn!(
                        limit = MAX_FIRST_SEEN,
                        "first-seen store is full: new TLSA records get no first-seen time"
                    );
                    self.full_logged = true;
                }
                out.push(None);
            }
        }
        out
    }

    /// Drops records not confirmed for [`FORGET_AFTER_SECONDS`].
    fn prune(&mut self, now: f64, changed: &mut bool) {
        if (now - self.last_prune).abs() < PRUNE_EVERY_SECONDS {
            return;
        }
        self.last_prune = now;
        let before = self.records.len();
        self.records
            .retain(|_, s| now - s.last_seen < FORGET_AFTER_SECONDS);
        *changed |= self.records.len() != before;
    }

    fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let state = StateFile {
            version: STATE_VERSION,
            records: self
                .records
                .iter()
                .map(|((owner, record), s)| StateRecord {
                    owner: owner.clone(),
                    record: record.clone(),
                    first_seen: s.first_seen,
                    last_seen: s.last_seen,
                })
                .collect(),
        };
        serde_json::to_vec_pretty(&state)
    }

    /// Parses a state file; records beyond [`MAX_FIRST_SEEN`] or with impossible times are
    /// skipped. Every record counts as confirmed now (its clock is kept, its forgetting
    /// deadline starts again).
    fn from_json(text: &[u8], now: f64) -> Result<Self, String> {
        let state: StateFile = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        if state.version != STATE_VERSION {
            return Err(format!("unknown version {}", state.version));
        }
        let mut records = BTreeMap::new();
        for r in state.records.into_iter().take(MAX_FIRST_SEEN) {
            if r.first_seen.is_finite() && r.first_seen > 0.0 && r.first_seen <= now + 60.0 {
                records.insert(
                    (r.owner, r.record),
                    Seen {
                        first_seen: r.first_seen,
                        last_seen: now,
                    },
                );
            }
        }
        Ok(Self {
            records,
            ..Self::default()
        })
    }
}

/// A staged file as last read, with what identified its version.
#[derive(Debug, Clone)]
struct Loaded {
    /// (modification time, size) when read; `None` when the metadata could not be read.
    stamp: Option<(SystemTime, u64)>,
    result: Result<Arc<Material>, StagedFileError>,
}

/// First-seen store, state file and staged-file cache of one config.
#[derive(Debug)]
pub struct Rollover {
    state_file: Option<PathBuf>,
    /// Write the state file when the store changes (`false` for `check`: read-only).
    persist: bool,
    store: Mutex<FirstSeen>,
    files: Mutex<HashMap<PathBuf, Loaded>>,
}

/// Changes of the last second not yet written reach the state file when the store goes
/// (a reload with another `state_file`, a graceful shutdown).
impl Drop for Rollover {
    fn drop(&mut self) {
        let mut store = lock(&self.store);
        if store.dirty {
            self.save(&mut store, unix_now());
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a whole-value update; a poisoned lock still guards
    // consistent data.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Rollover {
    /// Opens the store: from `state_file` when given (a missing, unreadable or corrupt file
    /// is logged and gives an empty store), else memory only. With `persist`, changes are
    /// written back to `state_file`.
    pub fn open(state_file: Option<&Path>, persist: bool) -> Self {
        let now = unix_now();
        let store = match state_file {
            None => FirstSeen::default(),
            Some(p) => match read_capped(p, (MAX_FIRST_SEEN as u64 + 16) * 1024) {
                Ok(bytes) => match FirstSeen::from_json(&bytes, now) {
                    Ok(s) => {
                        info!(state_file = %p.display(), records = s.records.len(), "first-seen times read");
                        s
                    }
                    Err(e) => {
                        warn!(state_file = %p.display(), error = %e, "state file is corrupt: first-seen times start empty");
                        FirstSeen::default()
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    info!(state_file = %p.display(), "no state file yet: first-seen times start empty");
                    FirstSeen::default()
                }
                Err(e) => {
                    warn!(state_file = %p.display(), error = %e, "state file unreadable: first-seen times start empty");
                    FirstSeen::default()
                }
            },
        };
        Self {
            state_file: state_file.map(Path::to_path_buf),
            persist,
            store: Mutex::new(store),
            files: Mutex::new(HashMap::new()),
        }
    }

    /// Writes the state file (when this store persists to one) and marks the store clean.
    fn save(&self, store: &mut FirstSeen, now: f64) {
        if let (true, Some(path)) = (self.persist, &self.state_file) {
            save(path, store);
        }
        store.dirty = false;
        store.last_save = now;
    }

    /// The state file this store reads and writes.
    pub fn state_file(&self) -> Option<&Path> {
        self.state_file.as_deref()
    }

    /// Fills a fresh report's TLSA timing (original TTL, first-seen times) and judges the
    /// target's staged entries against it.
    pub fn apply(&self, staged: &[Staged], r: &mut TargetReport) {
        let now = unix_now();
        let mut changed = false;
        {
            let mut store = lock(&self.store);
            for h in &mut r.hosts {
                if h.tlsa_timing.ttl.is_none() {
                    h.tlsa_timing.ttl = original_ttl(&r.lookups, h);
                }
                let Some(owner) = tlsa_owner(h) else { continue };
                h.tlsa_timing.first_seen = store.observe(&owner, h, now, &mut changed);
            }
            store.prune(now, &mut changed);
            store.dirty |= changed;
            if store.dirty && (now - store.last_save).abs() >= SAVE_EVERY_SECONDS {
                self.save(&mut store, now);
            }
        }
        let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs_f64(now.max(0.0)));
        r.staged = staged
            .iter()
            .map(|s| {
                let kind = match s.kind {
                    StagedKind::Chain => "chain",
                    StagedKind::PublicKey => "public_key",
                };
                let mut out = StagedReport {
                    name: s.name.clone(),
                    kind,
                    error: None,
                    not_after: None,
                    spki_sha256: String::new(),
                    hosts: Vec::new(),
                };
                match self.load(s) {
                    Ok(m) => {
                        out.not_after = m.not_after;
                        out.spki_sha256 = m.spki_sha256();
                        out.hosts = staged::judge(r, &m, |mx| s.applies_to(mx), at);
                    }
                    Err(e) => out.error = Some(e),
                }
                out
            })
            .collect();
    }

    /// The staged file's material, re-read when its modification time or size changed.
    fn load(&self, s: &Staged) -> Result<Arc<Material>, StagedFileError> {
        let stamp = std::fs::metadata(&s.path)
            .ok()
            .map(|m| (m.modified().unwrap_or(UNIX_EPOCH), m.len()));
        let mut files = lock(&self.files);
        if let Some(l) = files.get(&s.path) {
            if l.stamp.is_some() && l.stamp == stamp {
                return l.result.clone();
            }
        }
        let result = read_staged(s).map(Arc::new);
        let previous = files.get(&s.path).map(|l| l.result.clone());
        match (&previous, &result) {
            (Some(Err(old)), Err(new)) if old.reason == new.reason => {
                debug!(staged = %s.name, reason = new.reason, "staged file still unusable")
            }
            (_, Err(e)) => {
                warn!(staged = %s.name, reason = e.reason, error = %e.message, "staged file unusable")
            }
            (Some(Ok(old)), Ok(new)) if old == new => {
                debug!(staged = %s.name, "staged file touched, content unchanged")
            }
            (_, Ok(m)) => {
                info!(staged = %s.name, spki_sha256 = %m.spki_sha256(), "staged file loaded")
            }
        }
        if files.len() >= MAX_CACHED_FILES && !files.contains_key(&s.path) {
            files.clear();
        }
        files.insert(
            s.path.clone(),
            Loaded {
                stamp,
                result: result.clone(),
            },
        );
        result
    }
}

/// `/probe`: applies `rollover` to a (possibly shared) report of a configured target; a
/// `probe.allow` target that is not configured never enters the first-seen store.
pub fn apply_to_probe(
    rollover: Option<Arc<Rollover>>,
    cfg: &Config,
    hop: &NextHop,
    r: Arc<TargetReport>,
) -> Arc<TargetReport> {
    match (rollover, cfg.targets.iter().find(|t| &t.hop == hop)) {
        (Some(rollover), Some(t)) => {
            let mut report = Arc::unwrap_or_clone(r);
            rollover.apply(&t.staged, &mut report);
            Arc::new(report)
        }
        _ => r,
    }
}

/// The TLSA RRset's original TTL for host `h`: from its RRSIG when the signatures were
/// visible, else the TTL of the answer (what the resolver's cache had left).
fn original_ttl(lookups: &[Arc<crate::model::dns::Answer>], h: &HostReport) -> Option<u32> {
    let owner = tlsa_owner(h)?;
    lookups
        .iter()
        .find(|a| {
            a.rtype == "TLSA"
                && a.name == owner
                && a.outcome == Outcome::Records
                && matches!(a.data, Data::Tlsa(_))
        })
        .map(|a| a.original_ttl.unwrap_or(a.ttl))
}

/// Reads at most `cap` bytes; a longer file is an error.
fn read_capped(path: &Path, cap: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::fs::File::open(path)?
        .take(cap + 1)
        .read_to_end(&mut buf)?;
    if buf.len() as u64 > cap {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("larger than {cap} bytes"),
        ));
    }
    Ok(buf)
}

fn read_staged(s: &Staged) -> Result<Material, StagedFileError> {
    let mut bytes = match read_capped(&s.path, MAX_STAGED_FILE_BYTES) {
        Ok(b) => b,
        Err(e) => {
            let reason = match e.kind() {
                std::io::ErrorKind::NotFound => "missing",
                std::io::ErrorKind::FileTooLarge => "too_large",
                _ => "unreadable",
            };
            return Err(StagedFileError {
                reason,
                message: format!("{}: {e}", s.name),
            });
        }
    };
    let material = Material::from_pem(s.kind, &bytes);
    // Whatever the file held (a private key included), its bytes are not kept.
    bytes.fill(0);
    material
}

/// Writes the store atomically: a temporary file in the same directory, synced, then
/// renamed over the state file. A failure is logged; the store in memory stays.
fn save(path: &Path, store: &FirstSeen) {
    let result = (|| -> std::io::Result<()> {
        let json = store.to_json().map_err(std::io::Error::other)?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "state".into());
        let tmp = path.with_file_name(format!(".{file_name}.tmp"));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    })();
    match result {
        Ok(()) => {
            debug!(state_file = %path.display(), records = store.records.len(), "state file written")
        }
        Err(e) => {
            warn!(state_file = %path.display(), error = %e, "cannot write the state file: first-seen times are kept in memory only")
        }
    }
}

#[cfg(test)]
mod tests;
