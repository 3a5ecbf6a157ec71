//! Web configuration: the `--web.config.file` of Prometheus exporters (exporter-toolkit
//! format) → a validated [`WebConfig`]: the TLS server config, basic-auth users and extra
//! response headers; and [`WebState`], the live copy `http` consults per connection and
//! per request, replaced on SIGHUP and `POST /-/reload` only when the new file validates.
//!
//! Owns: the file format (unknown keys are errors; exporter-toolkit options this exporter
//! does not implement are refused by name), loading certificates and keys, the rustls
//! `ServerConfig` (ring provider passed explicitly, TLS 1.2/1.3, ALPN `http/1.1`), checking
//! `Authorization: Basic` against bcrypt hashes with a cache of successful checks.
//! Not here: serving connections and routing (`http`), the exporter's own config (`config`).
//! References: exporter-toolkit docs/web-configuration.md; RFC 7617 (Basic auth),
//! RFC 8446 / RFC 5246 (TLS 1.3 / 1.2), RFC 7301 (ALPN).
//!
//! Relative `cert_file`, `key_file` and `client_ca_file` paths are taken relative to the
//! web config file's directory, as exporter-toolkit does. `http_server_config.http2` is
//! accepted for compatibility and ignored: the server speaks HTTP/1.1 only.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use hyper::header::{HeaderName, HeaderValue};
use rustls::ServerConfig;
use serde::Deserialize;
use serde_saphyr::Spanned;

pub(crate) use crate::config::Place;

mod auth;
mod tls;

pub use auth::BasicAuth;
pub(crate) use auth::{Authorization, BCRYPT_WAIT};
use tls::tls_config;

/// The realm named in `WWW-Authenticate` on a 401.
pub(crate) const AUTH_REALM: &str = "mailtls_exporter";
/// How many successful (user, password) checks are remembered; the set is emptied when
/// full, so a flood of distinct valid logins costs bcrypt time again, nothing more.
pub(crate) const MAX_CACHED_LOGINS: usize = 1024;
/// Highest bcrypt cost accepted. Every wrong password costs one bcrypt run at the hash's
/// cost, and each step doubles it: cost 10 (Go's `bcrypt.DefaultCost`, the README's
/// `htpasswd -nBC 10`), 12 (Python's `bcrypt.gensalt()`, used by Prometheus' basic-auth
/// guide) and 14 took 0.29 s, 0.95 s and 3.2 s for one check on a busy 2-core machine
/// (docs/performance.md); 31 would take weeks. 14 keeps every common generator's output
/// working and bounds one check to seconds; the bcrypt gate (`auth`) bounds how many run.
pub(crate) const MAX_BCRYPT_COST: u32 = 14;
/// bcrypt costs accepted: the algorithm's minimum up to [`MAX_BCRYPT_COST`].
const BCRYPT_COSTS: std::ops::RangeInclusive<u32> = 4..=MAX_BCRYPT_COST;

/// exporter-toolkit options this exporter does not implement: named in the error instead
/// of a bare "unknown field".
const UNSUPPORTED_KEYS: &[&str] = &[
    "cert",
    "key",
    "client_ca",
    "cipher_suites",
    "curve_preferences",
    "prefer_server_cipher_suites",
    "client_allowed_sans",
    "rate_limit",
];

/// Headers exporter-toolkit allows in `http_server_config.headers` (the same set here).
const ALLOWED_HEADERS: &[&str] = &[
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

/// What is wrong with a web config file. Messages read `file:line: key: problem`.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{place}: {message}")]
    Syntax { place: Place, message: String },
    #[error("{place}: {message}")]
    Invalid { place: Place, message: String },
    #[error("{place}: cannot use {path}: {message}")]
    PemFile {
        place: Place,
        path: String,
        message: String,
    },
    #[error("{place}: {source}")]
    Tls {
        place: Place,
        #[source]
        source: Box<rustls::Error>,
    },
}

// ---- raw file format -------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<Spanned<RawTls>>,
    basic_auth_users: Option<HashMap<Spanned<String>, Spanned<String>>>,
    http_server_config: Option<RawHttp>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
    client_auth_type: Option<Spanned<String>>,
    client_ca_file: Option<Spanned<String>>,
    min_version: Option<Spanned<String>>,
    max_version: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[allow(dead_code)] // accepted for exporter-toolkit compatibility; HTTP/1.1 only
    http2: Option<bool>,
    headers: Option<HashMap<Spanned<String>, Spanned<String>>>,
}

// ---- validated -------------------------------------------------------------------------------

/// How the server asks for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientAuth {
    NoClientCert,
    RequireAndVerifyClientCert,
}

/// A validated web config.
pub struct WebConfig {
    /// The file it came from.
    pub source: String,
    /// `None`: plain HTTP.
    pub tls: Option<Arc<ServerConfig>>,
    /// `None`: no authentication.
    pub auth: Option<Arc<BasicAuth>>,
    /// Extra headers on every response.
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("source", &self.source)
            .field("tls", &self.tls.is_some())
            .field("users", &self.auth.as_ref().map_or(0, |a| a.users.len()))
            .field("headers", &self.headers)
            .finish()
    }
}

/// Reads and validates a web config file.
pub(crate) fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
        file: file.clone(),
        source,
    })?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    parse(&text, &file, base)
}

/// Parses and validates web config text; `file` names it in errors, relative paths are
/// taken from `base`.
pub fn parse(text: &str, file: &str, base: &Path) -> Result<WebConfig, WebConfigError> {
    let place = |line: Option<u64>, key: &str| Place {
        file: file.to_string(),
        line,
        key: key.to_string(),
    };
    let invalid = |line: Option<u64>, key: &str, message: String| WebConfigError::Invalid {
        place: place(line, key),
        message,
    };
    let raw: RawWebConfig = if text.trim().is_empty() {
        RawWebConfig::default()
    } else {
        serde_saphyr::from_str(text).map_err(|e| syntax_error(file, &e))?
    };

    let tls = match &raw.tls_server_config {
        None => None,
        Some(t) => tls_config(&t.value, t.referenced.line(), &place, base)?,
    };

    let auth = match raw.basic_auth_users {
        None => None,
        Some(users) => basic_auth(users, &invalid)?,
    };

    let headers = match raw.http_server_config.and_then(|h| h.headers) {
        None => Vec::new(),
        Some(h) => response_headers(h, &invalid)?,
    };

    Ok(WebConfig {
        source: file.to_string(),
        tls,
        auth,
        headers,
    })
}

/// Builds an error at a line and key of the web config file.
type InvalidAt<'a> = &'a dyn Fn(Option<u64>, &str, String) -> WebConfigError;

/// Validates `basic_auth_users` (names, bcrypt hashes and costs), in file order.
fn basic_auth(
    users: HashMap<Spanned<String>, Spanned<String>>,
    invalid: InvalidAt<'_>,
) -> Result<Option<Arc<BasicAuth>>, WebConfigError> {
    let mut users: Vec<_> = users.into_iter().collect();
    users.sort_by_key(|(u, _)| u.referenced.line());
    let mut map = HashMap::with_capacity(users.len());
    let mut max_cost = *BCRYPT_COSTS.start();
    for (user, hash) in users {
        let key = format!("basic_auth_users.{}", user.value);
        let line = Some(hash.referenced.line());
        if user.value.is_empty() || user.value.contains(':') {
            return Err(invalid(
                Some(user.referenced.line()),
                &key,
                "a user name must be non-empty and contain no ':' (RFC 7617)".into(),
            ));
        }
        let parts: bcrypt::HashParts = hash
            .value
            .parse()
            .map_err(|e| invalid(line, &key, format!("not a bcrypt hash ($2y$...): {e}")))?;
        if !BCRYPT_COSTS.contains(&parts.get_cost()) {
            return Err(invalid(
                line,
                &key,
                format!(
                    "bcrypt cost {} is outside {}..={} (each step doubles the work of every login attempt)",
                    parts.get_cost(),
                    BCRYPT_COSTS.start(),
                    BCRYPT_COSTS.end()
                ),
            ));
        }
        max_cost = max_cost.max(parts.get_cost());
        map.insert(user.value, hash.value);
    }
    if map.is_empty() {
        Ok(None)
    } else {
        Ok(Some(Arc::new(BasicAuth::new(map, max_cost).map_err(
            |e| invalid(None, "basic_auth_users", format!("cannot prepare: {e}")),
        )?)))
    }
}

/// Validates `http_server_config.headers` against the allowed set, in file order.
fn response_headers(
    h: HashMap<Spanned<String>, Spanned<String>>,
    invalid: InvalidAt<'_>,
) -> Result<Vec<(HeaderName, HeaderValue)>, WebConfigError> {
    let mut headers = Vec::new();
    let mut h: Vec<_> = h.into_iter().collect();
    h.sort_by_key(|(n, _)| n.referenced.line());
    for (name, value) in h {
        let line = Some(name.referenced.line());
        let key = format!("http_server_config.headers.{}", name.value);
        let Some(canonical) = ALLOWED_HEADERS
            .iter()
            .find(|a| a.eq_ignore_ascii_case(&name.value))
        else {
            return Err(invalid(
                line,
                &key,
                format!(
                    "header not allowed (allowed: {})",
                    ALLOWED_HEADERS.join(", ")
                ),
            ));
        };
        let n = HeaderName::from_bytes(canonical.as_bytes())
            .map_err(|e| invalid(line, &key, e.to_string()))?;
        let v = HeaderValue::from_str(&value.value).map_err(|_| {
            invalid(
                line,
                &key,
                format!("{:?} is not a header value", value.value),
            )
        })?;
        headers.push((n, v));
    }
    Ok(headers)
}

/// Maps a serde-saphyr error to `file:line: key: message`, naming refused exporter-toolkit
/// options as unsupported rather than unknown.
fn syntax_error(file: &str, e: &serde_saphyr::Error) -> WebConfigError {
    let (place, first) = Place::of_yaml_error(file, e);
    // serde-saphyr says "error: line L column C: ..."; the place already names the line.
    let first = first.strip_prefix("error: ").unwrap_or(&first);
    let first = match first.split_once(": ") {
        Some((at, rest)) if at.starts_with("line ") && at.contains(" column ") => rest,
        _ => first,
    }
    .to_string();
    let message = if UNSUPPORTED_KEYS.contains(&place.key.as_str()) {
        "exporter-toolkit option not supported by mailtls_exporter".to_string()
    } else {
        first
    };
    WebConfigError::Syntax { place, message }
}

// ---- live state ------------------------------------------------------------------------------

/// The web config in force: read at start-up, replaced by [`reload`](Self::reload) only
/// when the file still validates.
pub struct WebState {
    path: PathBuf,
    current: RwLock<Arc<WebConfig>>,
    /// One reload at a time (SIGHUP and `POST /-/reload` at once): the file read last is
    /// the one in force.
    reload_turn: Mutex<()>,
}

impl WebState {
    /// Loads `path`; an invalid file is an error (the daemon exits 2).
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let cfg = load(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            current: RwLock::new(Arc::new(cfg)),
            reload_turn: Mutex::new(()),
        })
    }

    /// The config in force.
    pub fn current(&self) -> Arc<WebConfig> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the file; keeps the old config when the new one is invalid. Blocking.
    pub fn reload(&self) -> Result<(), WebConfigError> {
        // Guards no data: a reload that panicked leaves nothing to repair.
        let _turn = self
            .reload_turn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let cfg = Arc::new(load(&self.path)?);
        match self.current.write() {
            Ok(mut c) => *c = cfg,
            Err(poisoned) => *poisoned.into_inner() = cfg,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::auth::{decode_basic, BCRYPT_SLOTS};
    use super::*;
    use base64::Engine as _;

    fn parse_str(text: &str) -> Result<WebConfig, WebConfigError> {
        parse(text, "web.yml", Path::new("/nonexistent"))
    }

    #[test]
    fn empty_file_means_plain_http_without_auth() {
        let c = parse_str("").unwrap();
        assert!(c.tls.is_none() && c.auth.is_none() && c.headers.is_empty());
        let c = parse_str("tls_server_config: {}\n").unwrap();
        assert!(c.tls.is_none());
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let e = parse_str("basic_auth_users: {}\ntls_server_confg: {}\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("web.yml:2: tls_server_confg:"), "{e}");
    }

    #[test]
    fn unsupported_toolkit_option_is_named_as_such() {
        let e = parse_str("tls_server_config:\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cipher_suites: exporter-toolkit option not supported"),
            "{e}"
        );
    }

    #[test]
    fn bad_bcrypt_hash_names_user_and_line() {
        let e = parse_str("basic_auth_users:\n  alice: plaintext\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("web.yml:2: basic_auth_users.alice: not a bcrypt hash"),
            "{e}"
        );
    }

    #[test]
    fn cert_without_key_is_refused() {
        let e = parse_str("tls_server_config:\n  cert_file: a.crt\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls_server_config.key_file: missing"), "{e}");
    }

    #[test]
    fn unsupported_client_auth_type_is_refused() {
        let e = parse_str(
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequestClientCert\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("web.yml:4: tls_server_config.client_auth_type"),
            "{e}"
        );
    }

    #[test]
    fn header_outside_the_toolkit_set_is_refused() {
        let e = parse_str("http_server_config:\n  headers:\n    Content-Type: text/plain\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("http_server_config.headers.Content-Type: header not allowed"),
            "{e}"
        );
        let c = parse_str(
            "http_server_config:\n  http2: false\n  headers:\n    x-frame-options: DENY\n",
        )
        .unwrap();
        assert_eq!(c.headers[0].0.as_str(), "x-frame-options");
    }

    // RFC 7617 §2: user-id ":" password, base64; scheme case-insensitive.
    #[test]
    fn basic_credentials_decode() {
        assert_eq!(
            decode_basic(b"Basic YWxpY2U6cGE6c3M="),
            Some(("alice".into(), b"pa:ss".to_vec()))
        );
        assert_eq!(
            decode_basic(b"basic YWxpY2U6"),
            Some(("alice".into(), vec![]))
        );
        assert_eq!(decode_basic(b"Bearer YWxpY2U6"), None);
        assert_eq!(decode_basic(b"Basic !!!"), None);
        assert_eq!(decode_basic(b"Basic YWxpY2U="), None); // no colon
    }

    #[test]
    fn bcrypt_cost_above_the_maximum_is_refused_with_its_place() {
        // A real cost-4 hash relabelled: the cost is read from the prefix, nothing is hashed.
        let h4 = bcrypt::hash("secret", 4).unwrap();
        let salt_and_hash = h4.strip_prefix("$2b$04$").unwrap();
        let over = format!("$2y${}${salt_and_hash}", MAX_BCRYPT_COST + 1);
        let e = parse_str(&format!(
            "basic_auth_users:\n  alice: '$2y$04${salt_and_hash}'\n  bob: '{over}'\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("web.yml:3: basic_auth_users.bob: bcrypt cost 15 is outside 4..=14"),
            "{e}"
        );
        let e = parse_str(&format!(
            "basic_auth_users:\n  alice: '$2y$31${salt_and_hash}'\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("bcrypt cost 31 is outside"), "{e}");
    }

    fn basic(creds: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(creds)
        )
        .into_bytes()
    }

    #[tokio::test(start_paused = true)]
    async fn bcrypt_waits_for_a_slot_then_answers_busy_but_cached_logins_pass() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let c = parse_str(&format!("basic_auth_users:\n  alice: '{hash}'\n")).unwrap();
        let auth = c.auth.unwrap();
        let (good, bad) = (basic("alice:secret"), basic("alice:wrong"));
        assert_eq!(
            auth.clone().authorize(Some(good.clone())).await,
            Authorization::Allowed
        );
        // Every slot taken (as by a flood of slow wrong passwords):
        let held = auth
            .bcrypt_slots_for_test()
            .try_acquire_many_owned(BCRYPT_SLOTS as u32)
            .unwrap();
        let start = tokio::time::Instant::now();
        assert_eq!(
            auth.clone().authorize(Some(bad.clone())).await,
            Authorization::Busy
        );
        assert_eq!(start.elapsed(), BCRYPT_WAIT);
        // a cached login needs no slot
        assert_eq!(
            auth.clone().authorize(Some(good)).await,
            Authorization::Allowed
        );
        drop(held);
        assert_eq!(
            auth.clone().authorize(Some(bad)).await,
            Authorization::Denied
        );
        assert_eq!(auth.authorize(None).await, Authorization::Denied);
    }

    #[test]
    fn successful_check_is_cached_and_wrong_password_is_not() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let c = parse_str(&format!("basic_auth_users:\n  alice: '{hash}'\n")).unwrap();
        let auth = c.auth.unwrap();
        let good = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("alice:secret")
        );
        let bad = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("alice:wrong")
        );
        let nobody = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("bob:secret")
        );
        assert!(!auth.is_cached(Some(good.as_bytes())));
        assert!(auth.check(Some(good.as_bytes())));
        assert!(auth.is_cached(Some(good.as_bytes())));
        assert!(auth.check(Some(good.as_bytes())));
        assert!(!auth.check(Some(bad.as_bytes())));
        assert!(!auth.is_cached(Some(bad.as_bytes())));
        assert!(!auth.check(Some(nobody.as_bytes())));
        assert!(!auth.check(None));
    }
}
