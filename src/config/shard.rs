//! The `shard:` section: this replica's part of the target list in scheduled mode.
//!
//! Owns: reading `shard.count` and `shard.index` with their places. Not here: combining
//! them with the `--shard.*` flags and the `hashmod` rule (`shard`), acting on them
//! (`scheduler`).

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::errors::At;
use super::ConfigError;
use crate::shard::{Setting, ShardSpec, MAX_SHARD_COUNT};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShard {
    count: Option<Spanned<i64>>,
    index: Option<Spanned<i64>>,
}

/// The `shard:` section; either key may be left to a flag (`--shard.index=$(POD_NAME)` with
/// `shard.count` in a config shared by every replica).
pub(super) fn parse_shard(at: &At, raw: RawShard) -> Result<ShardSpec, ConfigError> {
    let setting = |v: &Option<Spanned<i64>>, key: &str, min: i64, max: i64| {
        let Some(s) = v else { return Ok(None) };
        let value = at.count(v, key, min..=max, 0)?;
        Ok::<_, ConfigError>(Some(Setting {
            value: value as u32,
            from: format!("{}:{}: {key}", at.0, s.referenced.line()),
        }))
    };
    let max = i64::from(MAX_SHARD_COUNT);
    Ok(ShardSpec {
        count: setting(&raw.count, "shard.count", 1, max)?,
        index: setting(&raw.index, "shard.index", 0, max - 1)?,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    #[test]
    fn shard_keys_carry_their_place_and_are_bounded() {
        let c = parse("interval: 1m\nshard:\n  count: 3\n  index: 1\n", "c.yml").unwrap();
        let count = c.shard.count.as_ref().unwrap();
        assert_eq!(
            (count.value, count.from.as_str()),
            (3, "c.yml:3: shard.count")
        );
        assert_eq!(c.shard.index.as_ref().unwrap().value, 1);
        // count alone is fine here: the index may come from --shard.index.
        let c = parse("shard:\n  count: 2\n", "c.yml").unwrap();
        assert!(c.shard.index.is_none());
        let e = parse("shard:\n  count: 0\n", "c.yml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.yml:2: shard.count: 0 is out of range 1..=10000"
        );
        let e = parse("shard:\n  index: -1\n", "c.yml").unwrap_err();
        assert_eq!(
            (e.place.line, e.place.key.as_str()),
            (Some(2), "shard.index")
        );
        let e = parse("shard:\n  replicas: 2\n", "c.yml").unwrap_err();
        assert!(e.to_string().contains("replicas"), "{e}");
    }
}
