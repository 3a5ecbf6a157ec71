//! MTA-STS and TLSRPT syntax, pure: the `_mta-sts` TXT record set (RFC 8461 §3.1), the
//! policy body (RFC 8461 §3.2), MX pattern matching (RFC 8461 §4.1) and the `_smtp._tls`
//! TXT record set (RFC 8460 §3).
//!
//! Owns: the parsers and their error types with fixed reason words. Not here: fetching the
//! records and the policy (`probe::mta_sts`), the per-address verdict, metrics.
//! Strict where a sender would ignore the policy (a second `v=STSv1` record, a bad `id`, a
//! missing or repeated `mode`/`max_age`, a bad `mx` pattern); tolerant where the RFC is
//! (unknown keys and extension fields, LF or CRLF, trailing whitespace). Blank lines in a
//! policy body are skipped: senders accept them and they carry nothing.

use serde::Serialize;

/// Largest policy body read (RFC 8461 §3.3: senders may limit it; 64 KiB is the common cap).
pub const MAX_POLICY_BYTES: usize = 64 * 1024;
/// Largest `max_age` (RFC 8461 §3.2: 31557600 s, about one year).
pub const MAX_MAX_AGE: u64 = 31_557_600;
/// Most `mx` patterns kept from one policy (bounds the report and `check` output).
pub const MAX_MX_PATTERNS: usize = 64;
/// Most `rua` URIs kept from one TLSRPT record.
pub const MAX_RUA: usize = 16;

/// Policy mode (RFC 8461 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Enforce,
    Testing,
    None,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Self::Enforce, Self::Testing, Self::None];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Testing => "testing",
            Self::None => "none",
        }
    }
}

/// The one valid `_mta-sts` record of a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StsRecord {
    /// 1-32 alphanumerics.
    pub id: String,
}

/// Why the `_mta-sts` record set is unusable (a sender then ignores MTA-STS).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("{0} TXT records start with v=STSv1 (exactly one is allowed, RFC 8461 §3.1)")]
    Multiple(usize),
    #[error("the v=STSv1 record is malformed: {0}")]
    Syntax(String),
    #[error("the v=STSv1 record has no valid id (1-32 letters or digits): {0}")]
    BadId(String),
}

impl RecordError {
    /// Fixed value set: safe as a label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Multiple(_) => "multiple_records",
            Self::Syntax(_) => "record_syntax",
            Self::BadId(_) => "bad_id",
        }
    }
}

/// A parsed policy body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub mode: Mode,
    pub max_age: u64,
    /// Lower case, without trailing dot; `*.` kept for wildcards.
    pub mx: Vec<String>,
}

/// Why a policy body does not parse (a sender then has no policy).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy line {line}: {problem}")]
pub struct PolicyError {
    /// 1-based; 0 = the body as a whole.
    pub line: usize,
    pub problem: String,
}

fn perr(line: usize, problem: impl Into<String>) -> PolicyError {
    PolicyError {
        line,
        problem: problem.into(),
    }
}

/// The records of a TXT RRset that start with `version` followed by `;`, blanks or the end.
fn versioned<'a>(txts: &'a [String], version: &str) -> Vec<&'a str> {
    txts.iter()
        .map(String::as_str)
        .filter(|t| {
            t.strip_prefix(version).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with(';') || rest.starts_with([' ', '\t'])
            })
        })
        .collect()
}

/// `tag=value` fields after the version, split on `;` with optional blanks around
/// (RFC 8461 §3.1 / RFC 8460 §3 `field-delim`), a trailing `;` allowed. `Err` on an
/// empty field or one without `=`.
fn fields(rest: &str) -> Result<Vec<(&str, &str)>, String> {
    let rest = rest.trim_matches([' ', '\t']);
    let Some(rest) = rest.strip_prefix(';') else {
        return Err(if rest.is_empty() {
            "no field after the version".into()
        } else {
            "the version must be followed by \";\"".into()
        });
    };
    let rest = rest.trim_end_matches([' ', '\t']);
    let rest = rest.strip_suffix(';').unwrap_or(rest);
    let mut out = Vec::new();
    for f in rest.split(';') {
        let f = f.trim_matches([' ', '\t']);
        let Some((k, v)) = f.split_once('=') else {
            return Err(format!("field {:?} has no \"=\"", clip(f)));
        };
        out.push((k, v));
    }
    Ok(out)
}

/// RFC 8461 §3.1 `sts-ext-name` / RFC 8460 `tlsrpt-ext-name`: 1-32 of alnum, `_-.`,
/// starting with an alphanumeric.
fn ext_name_ok(k: &str) -> bool {
    let b = k.as_bytes();
    (1..=32).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
}

/// RFC 8461 §3.1 `sts-ext-value`: visible ASCII but `=`, `;`.
fn ext_value_ok(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|c| (0x21..=0x7e).contains(&c) && c != b'=' && c != b';')
}

/// At most 40 chars of `s`, for messages.
fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    out
}

/// The `_mta-sts` TXT RRset (each record's strings already joined) → `Ok(None)` when no
/// record starts with `v=STSv1`, the record when exactly one does and it parses.
pub fn parse_sts_records(txts: &[String]) -> Result<Option<StsRecord>, RecordError> {
    let found = versioned(txts, "v=STSv1");
    match found.as_slice() {
        [] => Ok(None),
        [one] => parse_sts_record(one).map(Some),
        more => Err(RecordError::Multiple(more.len())),
    }
}

/// One `v=STSv1` record (RFC 8461 §3.1): exactly one `id` of 1-32 alphanumerics,
/// extensions allowed.
pub fn parse_sts_record(txt: &str) -> Result<StsRecord, RecordError> {
    let rest = txt
        .strip_prefix("v=STSv1")
        .ok_or_else(|| RecordError::Syntax("does not start with v=STSv1".into()))?;
    let mut id = None;
    for (k, v) in fields(rest).map_err(RecordError::Syntax)? {
        if k == "id" {
            if id.is_some() {
                return Err(RecordError::BadId("id appears twice".into()));
            }
            let ok = (1..=32).contains(&v.len()) && v.bytes().all(|c| c.is_ascii_alphanumeric());
            if !ok {
                return Err(RecordError::BadId(format!("{:?}", clip(v))));
            }
            id = Some(v.to_string());
        } else if !ext_name_ok(k) || !ext_value_ok(v) {
            return Err(RecordError::Syntax(format!(
                "field {:?} is not a valid extension",
                clip(k)
            )));
        }
    }
    id.map(|id| StsRecord { id })
        .ok_or_else(|| RecordError::BadId("no id field".into()))
}

/// A policy body (RFC 8461 §3.2). `version: STSv1` must come first; `mode` and `max_age`
/// exactly once; `mx` at least once unless `mode: none`; unknown keys are skipped.
pub fn parse_policy(body: &str) -> Result<Policy, PolicyError> {
    let (mut mode, mut max_age, mut mx) = (None, None, Vec::new());
    let mut saw_version = false;
    for (i, raw) in body.split('\n').enumerate() {
        let n = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim_matches([' ', '\t']).is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(perr(n, format!("{:?} is not \"key: value\"", clip(line))));
        };
        let key = key.trim_start_matches([' ', '\t']);
        let value = value.trim_matches([' ', '\t']);
        if !saw_version {
            if key != "version" {
                return Err(perr(n, "the first field must be \"version: STSv1\""));
            }
            if value != "STSv1" {
                return Err(perr(n, format!("version {:?} is not STSv1", clip(value))));
            }
            saw_version = true;
            continue;
        }
        match key {
            "version" => return Err(perr(n, "version appears twice")),
            "mode" => {
                if mode.is_some() {
                    return Err(perr(n, "mode appears twice"));
                }
                mode = Some(match value {
                    "enforce" => Mode::Enforce,
                    "testing" => Mode::Testing,
                    "none" => Mode::None,
                    other => {
                        return Err(perr(
                            n,
                            format!("mode {:?} is not enforce, testing or none", clip(other)),
                        ))
                    }
                });
            }
            "max_age" => {
                if max_age.is_some() {
                    return Err(perr(n, "max_age appears twice"));
                }
                let ok =
                    (1..=10).contains(&value.len()) && value.bytes().all(|c| c.is_ascii_digit());
                let v = value
                    .parse::<u64>()
                    .ok()
                    .filter(|v| ok && *v <= MAX_MAX_AGE);
                max_age = Some(v.ok_or_else(|| {
                    perr(
                        n,
                        format!(
                            "max_age {:?} is not a number from 0 to {MAX_MAX_AGE}",
                            clip(value)
                        ),
                    )
                })?);
            }
            "mx" => {
                let p = normalize_pattern(value).ok_or_else(|| {
                    perr(
                        n,
                        format!("mx {:?} is not a host name or *.domain", clip(value)),
                    )
                })?;
                if mx.len() < MAX_MX_PATTERNS {
                    mx.push(p);
                }
            }
            k if ext_name_ok(k) => {} // extension: tolerated (RFC 8461 §3.2)
            k => return Err(perr(n, format!("{:?} is not a valid key", clip(k)))),
        }
    }
    if !saw_version {
        return Err(perr(0, "empty policy"));
    }
    let mode = mode.ok_or_else(|| perr(0, "no mode"))?;
    let max_age = max_age.ok_or_else(|| perr(0, "no max_age"))?;
    if mx.is_empty() && mode != Mode::None {
        return Err(perr(0, "no mx pattern (required unless mode is none)"));
    }
    Ok(Policy { mode, max_age, mx })
}

/// A host name: 1-253 octets (without a trailing dot) of 1-63 octet labels of letters,
/// digits, `-` and `_`, lower-cased; the trailing dot removed.
fn normalize_host(h: &str) -> Option<String> {
    let h = h.strip_suffix('.').unwrap_or(h);
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        });
    ok.then(|| h.to_ascii_lowercase())
}

/// An `mx` pattern: a host name, or `*.` and a host name of at least two labels.
fn normalize_pattern(p: &str) -> Option<String> {
    match p.strip_prefix("*.") {
        Some(rest) => normalize_host(rest)
            .filter(|h| h.contains('.'))
            .map(|h| format!("*.{h}")),
        None => normalize_host(p),
    }
}

/// `host` matches `pattern` (RFC 8461 §4.1): equal ignoring case and a trailing dot, or
/// `*.rest` with `host` = one more label + `rest` (the wildcard covers exactly one label).
pub fn mx_matches(pattern: &str, host: &str) -> bool {
    let norm = |s: &str| s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    let (pattern, host) = (norm(pattern), norm(host));
    match pattern.strip_prefix("*.") {
        Some(rest) => host
            .split_once('.')
            .is_some_and(|(first, tail)| !first.is_empty() && tail == rest),
        None => host == pattern,
    }
}

/// The one valid `_smtp._tls` record of a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsRpt {
    /// The `rua` URIs, as published (at most [`MAX_RUA`]).
    pub rua: Vec<String>,
}

/// Why the `_smtp._tls` record set is unusable (a sender then sends no reports).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsRptError {
    #[error("{0} TXT records start with v=TLSRPTv1 (exactly one is allowed, RFC 8460 §3)")]
    Multiple(usize),
    #[error("the v=TLSRPTv1 record is malformed: {0}")]
    Syntax(String),
    #[error("rua URI {0:?} is neither mailto:local@domain nor https://host/… (RFC 8460 §3)")]
    BadUri(String),
    #[error("the v=TLSRPTv1 record has no rua field")]
    NoRua,
}

impl TlsRptError {
    /// Fixed value set: safe as a label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Multiple(_) => "multiple_records",
            Self::Syntax(_) => "record_syntax",
            Self::BadUri(_) => "bad_uri",
            Self::NoRua => "no_rua",
        }
    }
}

/// The `_smtp._tls` TXT RRset → `Ok(None)` when no record starts with `v=TLSRPTv1`.
pub fn parse_tlsrpt_records(txts: &[String]) -> Result<Option<TlsRpt>, TlsRptError> {
    let found = versioned(txts, "v=TLSRPTv1");
    match found.as_slice() {
        [] => Ok(None),
        [one] => parse_tlsrpt_record(one).map(Some),
        more => Err(TlsRptError::Multiple(more.len())),
    }
}

/// One `v=TLSRPTv1` record (RFC 8460 §3): exactly one `rua` with one or more
/// comma-separated `mailto:` or `https:` URIs; extensions allowed.
pub fn parse_tlsrpt_record(txt: &str) -> Result<TlsRpt, TlsRptError> {
    let rest = txt
        .strip_prefix("v=TLSRPTv1")
        .ok_or_else(|| TlsRptError::Syntax("does not start with v=TLSRPTv1".into()))?;
    let mut rua = None;
    for (k, v) in fields(rest).map_err(TlsRptError::Syntax)? {
        if k == "rua" {
            if rua.is_some() {
                return Err(TlsRptError::Syntax("rua appears twice".into()));
            }
            let mut uris = Vec::new();
            for u in v.split(',') {
                let u = u.trim_matches([' ', '\t']);
                if !uri_ok(u) {
                    return Err(TlsRptError::BadUri(clip(u)));
                }
                if uris.len() < MAX_RUA {
                    uris.push(u.to_string());
                }
            }
            rua = Some(uris);
        } else if !ext_name_ok(k) || !ext_value_ok(v) {
            return Err(TlsRptError::Syntax(format!(
                "field {:?} is not a valid extension",
                clip(k)
            )));
        }
    }
    rua.map(|rua| TlsRpt { rua }).ok_or(TlsRptError::NoRua)
}

/// A `rua` URI: `mailto:local@host` or `https://host[:port][/path]` (RFC 8460 §3; RFC 6068,
/// RFC 9110 §4.2.2), of visible ASCII without `,` `;` `!` (they must be %-encoded).
fn uri_ok(u: &str) -> bool {
    if u.is_empty()
        || !u
            .bytes()
            .all(|c| (0x21..=0x7e).contains(&c) && !b",;!".contains(&c))
    {
        return false;
    }
    let lower = u.to_ascii_lowercase();
    if let Some(addr) = lower.strip_prefix("mailto:") {
        let addr = addr.split('?').next().unwrap_or("");
        return addr
            .rsplit_once('@')
            .is_some_and(|(local, host)| !local.is_empty() && host_ok(host));
    }
    if let Some(rest) = lower.strip_prefix("https://") {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if authority.contains('@') {
            return false;
        }
        let host = match authority.rsplit_once(':') {
            Some((h, port)) if port.parse::<u16>().is_ok() => h,
            Some(_) => return false,
            None => authority,
        };
        return host_ok(host);
    }
    false
}

/// A DNS host name of at least two labels (a report address must be reachable).
fn host_ok(h: &str) -> bool {
    normalize_host(h).is_some_and(|h| h.contains('.'))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn recs(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| (*s).to_string()).collect()
    }

    const GOOD: &str = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n";

    #[test]
    fn one_sts_record_with_an_id_parses() {
        // RFC 8461 §3.1: other TXT records (SPF, verification strings) are discarded.
        let r = parse_sts_records(&recs(&["v=spf1 -all", "v=STSv1; id=20160831085700Z;"]));
        assert_eq!(
            r,
            Ok(Some(StsRecord {
                id: "20160831085700Z".into()
            }))
        );
        assert_eq!(parse_sts_records(&recs(&["v=spf1 -all"])), Ok(None));
        assert_eq!(parse_sts_records(&[]), Ok(None));
        // Blanks around the delimiter, an extension.
        assert!(parse_sts_record("v=STSv1 ;  id=abc ; ext_1=x.y").is_ok());
    }

    #[test]
    fn two_sts_records_are_invalid() {
        // RFC 8461 §3.1: "If the number of resulting records is not one ... no policy".
        let r = parse_sts_records(&recs(&["v=STSv1; id=a", "v=STSv1; id=b"]));
        assert_eq!(r, Err(RecordError::Multiple(2)));
        assert_eq!(r.unwrap_err().reason(), "multiple_records");
    }

    #[test]
    fn id_must_be_1_to_32_alphanumerics() {
        // RFC 8461 §3.1: sts-id = "id=" 1*32(ALPHA / DIGIT)
        for bad in [
            "v=STSv1; id=",
            "v=STSv1; id=2016-08-31",
            &format!("v=STSv1; id={}", "a".repeat(33)),
            "v=STSv1;",
            "v=STSv1; id=a; id=b",
        ] {
            let e = parse_sts_record(bad).unwrap_err();
            assert!(
                matches!(e, RecordError::BadId(_) | RecordError::Syntax(_)),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            parse_sts_record("v=STSv1; id=x_y").unwrap_err().reason(),
            "bad_id"
        );
        assert!(parse_sts_record(&format!("v=STSv1; id={}", "Z9".repeat(16))).is_ok());
    }

    #[test]
    fn sts_record_needs_the_delimiter_and_fields() {
        assert!(matches!(
            parse_sts_record("v=STSv1 id=a"),
            Err(RecordError::Syntax(_))
        ));
        assert!(matches!(
            parse_sts_record("v=STSv1; id=a; junk"),
            Err(RecordError::Syntax(_))
        ));
        // "v=STSv10" is another version: not ours, discarded.
        assert_eq!(parse_sts_records(&recs(&["v=STSv10; id=a"])), Ok(None));
    }

    #[test]
    fn good_policy_parses_with_crlf_or_lf() {
        // RFC 8461 §3.2 example.
        let p = parse_policy(GOOD).expect("parses");
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.max_age, 604_800);
        assert_eq!(p.mx, vec!["mail.example.com", "*.example.net"]);
        assert_eq!(parse_policy(&GOOD.replace("\r\n", "\n")), Ok(p));
    }

    #[test]
    fn policy_version_first_and_strict() {
        assert!(parse_policy("mode: enforce\nversion: STSv1\nmx: a.b\nmax_age: 1\n").is_err());
        assert!(parse_policy("version: STSv2\nmode: enforce\nmx: a.b\nmax_age: 1\n").is_err());
        assert!(parse_policy("").is_err());
    }

    #[test]
    fn policy_single_valued_keys_once() {
        for dup in ["mode: testing", "max_age: 5", "version: STSv1"] {
            let body = format!("version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 1\n{dup}\n");
            let e = parse_policy(&body).unwrap_err();
            assert!(e.problem.contains("twice"), "{e}");
        }
    }

    #[test]
    fn policy_mode_max_age_and_mx_rules() {
        // RFC 8461 §3.2: max_age up to 31557600; mx required unless mode none.
        let base = |mode: &str, age: &str, mx: &str| {
            parse_policy(&format!(
                "version: STSv1\nmode: {mode}\n{mx}max_age: {age}\n"
            ))
        };
        assert!(base("enforce", "31557600", "mx: a.b\n").is_ok());
        assert!(base("enforce", "31557601", "mx: a.b\n").is_err());
        assert!(base("enforce", "-1", "mx: a.b\n").is_err());
        assert!(base("enforce", "12345678901", "mx: a.b\n").is_err());
        assert!(base("Enforce", "1", "mx: a.b\n").is_err());
        assert!(base("enforce", "1", "").is_err());
        assert!(base("testing", "1", "").is_err());
        assert_eq!(base("none", "0", "").map(|p| p.mode), Ok(Mode::None));
        assert!(base("enforce", "1", "mx: a b\n").is_err());
        assert!(base("enforce", "1", "mx: *.com\n").is_err());
        assert!(base("enforce", "1", "mx: a.*.b\n").is_err());
        assert!(parse_policy("version: STSv1\nmode: enforce\nmax_age: 1\n").is_err());
        assert!(parse_policy("version: STSv1\nmx: a.b\nmax_age: 1\n").is_err());
    }

    #[test]
    fn unknown_keys_are_tolerated_but_garbage_is_not() {
        // RFC 8461 §3.2: sts-policy-extension.
        assert!(parse_policy(
            "version: STSv1\nmode: testing\nfoo_bar: baz qux\nmx: a.b\nmax_age: 86400\n"
        )
        .is_ok());
        assert!(
            parse_policy("version: STSv1\nmode: testing\n<html>\nmx: a.b\nmax_age: 86400\n")
                .is_err()
        );
    }

    #[test]
    fn wildcard_covers_exactly_one_label() {
        // RFC 8461 §4.1: "*.example.com" matches "mx1.example.com" but not
        // "example.com" nor "a.mx1.example.com".
        assert!(mx_matches("*.example.com", "mx1.example.com"));
        assert!(mx_matches("*.example.com", "MX1.Example.COM."));
        assert!(!mx_matches("*.example.com", "example.com"));
        assert!(!mx_matches("*.example.com", "a.mx1.example.com"));
        assert!(!mx_matches("*.example.com", ".example.com"));
        assert!(mx_matches("mail.example.com.", "MAIL.example.com"));
        assert!(!mx_matches("mail.example.com", "mail.example.co"));
    }

    #[test]
    fn tlsrpt_one_record_with_valid_uris() {
        // RFC 8460 §3 examples.
        let r = parse_tlsrpt_records(&recs(&["v=TLSRPTv1;rua=mailto:reports@example.com"]));
        assert_eq!(
            r,
            Ok(Some(TlsRpt {
                rua: vec!["mailto:reports@example.com".into()]
            }))
        );
        let r = parse_tlsrpt_record(
            "v=TLSRPTv1; rua=https://reporting.example.com/v1/tlsrpt, mailto:a@b.example",
        );
        assert_eq!(r.map(|t| t.rua.len()), Ok(2));
        assert_eq!(parse_tlsrpt_records(&recs(&["v=spf1"])), Ok(None));
    }

    #[test]
    fn tlsrpt_bad_records() {
        let e = |t: &str| parse_tlsrpt_record(t).unwrap_err().reason();
        assert_eq!(e("v=TLSRPTv1; rua=http://example.com/r"), "bad_uri");
        assert_eq!(e("v=TLSRPTv1; rua=mailto:nobody"), "bad_uri");
        assert_eq!(e("v=TLSRPTv1; rua=mailto:a@localhost"), "bad_uri");
        assert_eq!(e("v=TLSRPTv1; rua=https://user@example.com/"), "bad_uri");
        assert_eq!(e("v=TLSRPTv1; rua="), "bad_uri");
        assert_eq!(e("v=TLSRPTv1; ext=1"), "no_rua");
        assert_eq!(e("v=TLSRPTv1"), "record_syntax");
        assert_eq!(
            e("v=TLSRPTv1; rua=mailto:a@b.c; rua=mailto:d@b.c"),
            "record_syntax"
        );
        let two = parse_tlsrpt_records(&recs(&[
            "v=TLSRPTv1; rua=mailto:a@b.c",
            "v=TLSRPTv1; rua=mailto:d@b.c",
        ]));
        assert_eq!(two.unwrap_err().reason(), "multiple_records");
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,300}") {
            let _ = parse_policy(&s);
            let _ = parse_sts_records(std::slice::from_ref(&s));
            let _ = parse_tlsrpt_records(std::slice::from_ref(&s));
            let _ = mx_matches(&s, &s);
        }

        #[test]
        fn any_valid_id_round_trips(id in "[A-Za-z0-9]{1,32}", ext in "[a-z][a-z0-9_.-]{0,10}=[!-:<>-~]{1,8}") {
            let r = parse_sts_records(&[format!("v=STSv1; {ext}; id={id};")]);
            prop_assert_eq!(r, Ok(Some(StsRecord { id })));
        }

        #[test]
        fn wildcard_never_covers_the_base_or_two_labels(l1 in "[a-z0-9]{1,10}", l2 in "[a-z0-9]{1,10}", base in "[a-z]{1,8}\\.[a-z]{2,4}") {
            let pat = format!("*.{base}");
            let one = format!("{l1}.{base}");
            let two = format!("{l1}.{l2}.{base}");
            prop_assert!(mx_matches(&pat, &one));
            prop_assert!(!mx_matches(&pat, &base));
            prop_assert!(!mx_matches(&pat, &two));
        }

        #[test]
        fn generated_policies_parse(mode in prop::sample::select(vec!["enforce", "testing", "none"]),
                                    age in 0u64..=MAX_MAX_AGE,
                                    mxs in prop::collection::vec("(\\*\\.)?[a-z0-9-]{1,10}\\.[a-z]{2,5}", 1..5),
                                    crlf in any::<bool>()) {
            let nl = if crlf { "\r\n" } else { "\n" };
            let mut body = format!("version: STSv1{nl}mode: {mode}{nl}");
            for m in &mxs { body.push_str(&format!("mx: {m}{nl}")); }
            body.push_str(&format!("max_age: {age}{nl}"));
            let p = parse_policy(&body).expect("valid policy");
            prop_assert_eq!(p.max_age, age);
            prop_assert_eq!(p.mx.len(), mxs.len());
        }
    }
}
