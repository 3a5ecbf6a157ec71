//! The exporter's shard metrics: which part of the target list this replica probes.
//! Names: docs/metrics.md. `mailtls_targets` (in `own`) counts the targets it owns.
//!
//! Not here: the rule that assigns targets to shards (`shard`).

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::shard::Shard;

/// `mailtls_exporter_shard_info{index,count}` and `mailtls_config_targets`.
#[derive(Debug, Default)]
pub(crate) struct ShardMetrics {
    info: Family<[(&'static str, String); 2], Gauge>,
    config_targets: Gauge,
}

impl ShardMetrics {
    pub(crate) fn register(&self, r: &mut Registry) {
        r.register(
            "mailtls_exporter_shard_info",
            "This replica's shard of the configured targets (index 0 of count 1 when not sharded), value 1",
            self.info.clone(),
        );
        r.register(
            "mailtls_config_targets",
            "Targets in the configuration before sharding (mailtls_targets counts those this replica probes)",
            self.config_targets.clone(),
        );
    }

    /// After a (re)load: the shard in force (`None`: every target) and the configured count.
    pub(crate) fn set(&self, shard: Option<Shard>, configured: usize) {
        let shard = shard.unwrap_or(Shard::ALL);
        self.info.clear();
        self.info
            .get_or_create(&[
                ("index", shard.index().to_string()),
                ("count", shard.count().to_string()),
            ])
            .set(1);
        self.config_targets.set(configured as i64);
    }
}
