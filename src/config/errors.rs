//! Where a config problem is, and how it is said: [`Place`] (`file:line: key`),
//! [`ConfigError`], and the `At` helper that builds them and reads durations and counts.
//!
//! Owns: error places and the wording of value checks shared by every section.
//! Not here: the sections themselves (`config`, `config::targets`).

use std::fmt;
use std::time::Duration;

use serde_saphyr::Spanned;

/// Where a problem is: `file:line: key`. Shared with `webconfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub file: String,
    pub(crate) line: Option<u64>,
    pub(crate) key: String,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        Ok(())
    }
}

impl Place {
    /// The place of a serde-saphyr error in `file` (its line; the key when serde names an
    /// unknown or missing field) and the first line of its message.
    pub(crate) fn of_yaml_error(file: &str, e: &serde_saphyr::Error) -> (Self, String) {
        let line = e.location().map(|l| l.line());
        let message = e.to_string();
        let key = message
            .split('`')
            .nth(1)
            .filter(|_| message.contains("unknown field") || message.contains("missing field"))
            .unwrap_or("")
            .to_string();
        let first = message.lines().next().unwrap_or("").to_string();
        let place = Self {
            file: file.to_string(),
            line,
            key,
        };
        (place, first)
    }
}

/// A config error with its place: `file:line: key: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {message}")]
pub struct ConfigError {
    pub place: Place,
    pub(crate) message: String,
}

/// Builds [`ConfigError`]s for one file.
pub(crate) struct At<'a>(pub(crate) &'a str);

impl At<'_> {
    pub(crate) fn err(&self, line: Option<u64>, key: &str, message: String) -> ConfigError {
        ConfigError {
            place: Place {
                file: self.0.to_string(),
                line,
                key: key.to_string(),
            },
            message,
        }
    }

    /// A positive duration (`30s`, `5m`), or `default` when absent.
    pub(crate) fn duration(
        &self,
        v: &Option<Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(s) = v else {
            return Ok(default);
        };
        let line = Some(s.referenced.line());
        let d = humantime::parse_duration(s.value.trim()).map_err(|e| {
            self.err(
                line,
                key,
                format!("invalid duration {:?}: {e} (use e.g. 30s, 5m)", s.value),
            )
        })?;
        if d.is_zero() {
            return Err(self.err(line, key, "must be greater than zero".into()));
        }
        Ok(d)
    }

    /// An integer in `range`, or `default` when absent.
    pub(crate) fn count(
        &self,
        v: &Option<Spanned<i64>>,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
        default: usize,
    ) -> Result<usize, ConfigError> {
        match v {
            None => Ok(default),
            Some(c) if range.contains(&c.value) => Ok(c.value as usize),
            Some(c) => Err(self.err(
                Some(c.referenced.line()),
                key,
                format!(
                    "{} is out of range {}..={}",
                    c.value,
                    range.start(),
                    range.end()
                ),
            )),
        }
    }
}
