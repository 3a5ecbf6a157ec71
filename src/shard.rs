//! Scheduled mode across replicas: which configured targets this replica probes.
//!
//! Owns: Prometheus' `hashmod` rule ([`hashmod`]) over the `target` label, the shard
//! ([`Shard`]: index and count), and how the `--shard.*` flags and the `shard:` config keys
//! combine and are validated ([`ShardSpec`], [`ShardError`]).
//! Not here: reading the config keys (`config`), probing only the owned targets and the
//! shard metrics (`scheduler`, `metrics`). `/probe` ignores the shard: Prometheus routes it.
//! Why the same rule as Prometheus: a target then lands on the same replica whether the
//! replicas run scheduled and sharded, or serve `/probe` behind a `hashmod` relabelling
//! (README, "Scaling out").

use md5::{Digest, Md5};

/// Highest accepted shard count (replicas of one target list).
pub const MAX_SHARD_COUNT: u32 = 10_000;

/// Prometheus' relabel action `hashmod` on one source label value: the MD5 sum of the value,
/// its last 8 bytes read as a big-endian unsigned 64-bit integer, modulo `modulus`
/// (prometheus/model/relabel/relabel.go, `sum64(md5.Sum(...)) % cfg.Modulus`). `modulus` 0
/// yields 0 (Prometheus rejects a zero modulus in its config).
pub fn hashmod(value: &str, modulus: u64) -> u64 {
    if modulus == 0 {
        return 0;
    }
    let sum = Md5::digest(value.as_bytes());
    let mut low = [0u8; 8];
    low.copy_from_slice(&sum[8..16]);
    u64::from_be_bytes(low) % modulus
}

/// This replica's part of the target list: the targets whose `hashmod(target, count)` is
/// `index`. Valid by construction: `index < count`, `1 <= count <= MAX_SHARD_COUNT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
}

impl Shard {
    /// The whole target list (no sharding): index 0 of 1.
    pub const ALL: Self = Self { index: 0, count: 1 };

    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// Does this replica probe the target whose `target` label is `target`?
    pub fn owns(&self, target: &str) -> bool {
        self.count <= 1 || hashmod(target, u64::from(self.count)) == u64::from(self.index)
    }
}

/// One shard setting and where it came from, to name it in errors: `--shard.index=mailtls-2`
/// or `c.yml:4: shard.count`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub value: u32,
    pub from: String,
}

/// Shard settings of one source (the flags, or the config file); either may be missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardSpec {
    pub count: Option<Setting>,
    pub index: Option<Setting>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("shard index {index} ({from}) needs a shard count: set --shard.count or shard.count")]
    IndexWithoutCount { index: u32, from: String },
    #[error("shard count {count} ({from}) needs this replica's shard index: set --shard.index (a number, or a StatefulSet pod name ending in -<ordinal>) or shard.index")]
    CountWithoutIndex { count: u32, from: String },
    #[error("shard index {index} ({index_from}) is out of range for shard count {count} ({count_from}): it must be 0..={last}", last = count - 1)]
    IndexOutOfRange {
        index: u32,
        index_from: String,
        count: u32,
        count_from: String,
    },
}

impl ShardSpec {
    /// These settings, each one falling back to `file`'s when absent (flags win over the
    /// config file).
    pub fn over(&self, file: &ShardSpec) -> ShardSpec {
        ShardSpec {
            count: self.count.clone().or_else(|| file.count.clone()),
            index: self.index.clone().or_else(|| file.index.clone()),
        }
    }

    /// The shard these settings name; `None` when neither is set (every target is probed).
    pub fn resolve(&self) -> Result<Option<Shard>, ShardError> {
        match (&self.count, &self.index) {
            (None, None) => Ok(None),
            (None, Some(i)) => Err(ShardError::IndexWithoutCount {
                index: i.value,
                from: i.from.clone(),
            }),
            (Some(c), None) => Err(ShardError::CountWithoutIndex {
                count: c.value,
                from: c.from.clone(),
            }),
            (Some(c), Some(i)) if i.value >= c.value => Err(ShardError::IndexOutOfRange {
                index: i.value,
                index_from: i.from.clone(),
                count: c.value,
                count_from: c.from.clone(),
            }),
            (Some(c), Some(i)) => Ok(Some(Shard {
                index: i.value,
                count: c.value,
            })),
        }
    }
}

/// `--shard.count=N`: 1..=[`MAX_SHARD_COUNT`].
pub fn parse_count_flag(s: &str) -> Result<Setting, String> {
    let value = s
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_SHARD_COUNT).contains(n))
        .ok_or_else(|| format!("{s:?} is not a shard count in 1..={MAX_SHARD_COUNT}"))?;
    Ok(Setting {
        value,
        from: format!("--shard.count={s}"),
    })
}

/// `--shard.index=K`: a number, or a name ending in `-<ordinal>` (a StatefulSet pod name such
/// as `mailtls-2`, so that `--shard.index=$(POD_NAME)` works).
pub fn parse_index_flag(s: &str) -> Result<Setting, String> {
    let value = parse_index(s)?;
    Ok(Setting {
        value,
        from: format!("--shard.index={s}"),
    })
}

/// A shard index: `2`, or the ordinal at the end of `mailtls-2`.
pub fn parse_index(s: &str) -> Result<u32, String> {
    let digits = s.rsplit('-').next().unwrap_or(s);
    let ordinal_ok = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits.len() == s.len() || s.len() > digits.len() + 1);
    digits
        .parse::<u32>()
        .ok()
        .filter(|n| ordinal_ok && *n < MAX_SHARD_COUNT)
        .ok_or_else(|| {
            format!(
                "{s:?} is neither a shard index in 0..{MAX_SHARD_COUNT} nor a pod name ending in -<ordinal> (e.g. mailtls-2)"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(value: u32, from: &str) -> Option<Setting> {
        Some(Setting {
            value,
            from: from.into(),
        })
    }

    #[test]
    fn hashmod_uses_the_low_eight_bytes_of_md5_big_endian() {
        // md5("") = d41d8cd98f00b204 e9800998ecf8427e: the low half, as a big-endian u64.
        let low = 0xe980_0998_ecf8_427e_u64;
        for m in [1u64, 2, 3, 7, 1000, u64::MAX] {
            assert_eq!(hashmod("", m), low % m, "modulus {m}");
        }
        // Checked against Prometheus' own relabelling in tests/sharding.rs.
        assert_eq!(hashmod("anything", 1), 0);
        assert_eq!(hashmod("anything", 0), 0);
    }

    #[test]
    fn a_shard_of_one_owns_everything_and_shards_partition_the_list() {
        let names: Vec<String> = (0..200).map(|i| format!("d{i}.example")).collect();
        assert!(names.iter().all(|n| Shard::ALL.owns(n)));
        for count in [2u32, 3, 5] {
            let shards: Vec<Shard> = (0..count).map(|index| Shard { index, count }).collect();
            for n in &names {
                let owners = shards.iter().filter(|s| s.owns(n)).count();
                assert_eq!(owners, 1, "{n} with count {count}");
            }
            // Every shard gets some of 200 names (md5 spreads them).
            assert!(shards.iter().all(|s| names.iter().any(|n| s.owns(n))));
        }
    }

    #[test]
    fn index_is_a_number_or_a_pod_name_ordinal() {
        assert_eq!(parse_index("0"), Ok(0));
        assert_eq!(parse_index("2"), Ok(2));
        assert_eq!(parse_index("mailtls-2"), Ok(2));
        assert_eq!(parse_index("mail-tls-exporter-17"), Ok(17));
        for bad in [
            "",
            "-",
            "-1",
            "mailtls",
            "mailtls-",
            "mailtls-x",
            "2a",
            "1.5",
            "10000",
        ] {
            assert!(parse_index(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_index_flag("mailtls-1").unwrap().from,
            "--shard.index=mailtls-1"
        );
    }

    #[test]
    fn count_is_bounded() {
        assert_eq!(parse_count_flag("3").unwrap().value, 3);
        for bad in ["0", "-1", "x", "10001", ""] {
            assert!(parse_count_flag(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn flags_win_over_the_file_and_both_halves_are_needed() {
        let file = ShardSpec {
            count: set(3, "c.yml:2: shard.count"),
            index: set(0, "c.yml:3: shard.index"),
        };
        let flags = ShardSpec {
            count: None,
            index: set(2, "--shard.index=mailtls-2"),
        };
        let s = flags.over(&file).resolve().unwrap().unwrap();
        assert_eq!((s.index(), s.count()), (2, 3));
        assert_eq!(ShardSpec::default().resolve(), Ok(None));

        let only_count = ShardSpec {
            count: set(3, "--shard.count=3"),
            index: None,
        };
        let e = only_count.resolve().unwrap_err().to_string();
        assert!(
            e.starts_with("shard count 3 (--shard.count=3) needs"),
            "{e}"
        );
        let only_index = ShardSpec {
            count: None,
            index: set(1, "c.yml:3: shard.index"),
        };
        assert!(matches!(
            only_index.resolve(),
            Err(ShardError::IndexWithoutCount { index: 1, .. })
        ));

        let out = ShardSpec {
            count: set(3, "c.yml:2: shard.count"),
            index: set(3, "--shard.index=mailtls-3"),
        };
        assert_eq!(
            out.resolve().unwrap_err().to_string(),
            "shard index 3 (--shard.index=mailtls-3) is out of range for shard count 3 (c.yml:2: shard.count): it must be 0..=2"
        );
    }
}
