//! The exporter's own metrics: build info, probes by result, config reloads, the
//! resolver check, targets, DNS and SMTP work. Names: docs/metrics.md.
//!
//! Not here: the report families (`families`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// Counters and gauges about the exporter's own work.
#[derive(Debug, Default)]
pub struct ExporterMetrics {
    pub(crate) probes: Family<[(&'static str, &'static str); 1], Counter>,
    pub(crate) config_reload_successful: Gauge,
    pub(crate) config_reload_timestamp: Gauge<f64, AtomicU64>,
    /// Absent until checked, and when no target needs DNS.
    pub(crate) resolver_validating: OptionalGauge,
    pub targets: Gauge,
    /// One series per configured target, present before its first probe completes.
    pub(crate) target_info: Family<[(&'static str, String); 2], Gauge>,
    /// Read at scrape time from the live probe context.
    pub(crate) dns_queries: Arc<AtomicU64>,
    pub(crate) dns_cache_entries: Arc<AtomicU64>,
    pub(crate) smtp_dialogues: Arc<AtomicU64>,
    /// This replica's shard and the configured target count (`metrics::shard`).
    pub(crate) shard: super::shard::ShardMetrics,
}

/// A gauge that may have no value: then neither sample nor descriptor is exposed.
#[derive(Debug, Clone)]
pub(crate) struct OptionalGauge(Arc<std::sync::atomic::AtomicI64>);

impl Default for OptionalGauge {
    fn default() -> Self {
        Self(Arc::new(std::sync::atomic::AtomicI64::new(-1)))
    }
}

impl OptionalGauge {
    /// `None` removes the value; values are 0 or more.
    pub(crate) fn set(&self, v: Option<i64>) {
        self.0.store(v.map_or(-1, |v| v.max(0)), Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct OptionalGaugeCollector(OptionalGauge, &'static str, &'static str);

impl Collector for OptionalGaugeCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let v = self.0 .0.load(Ordering::Relaxed);
        if v < 0 {
            return Ok(());
        }
        enc.encode_descriptor(self.1, self.2, None, MetricType::Gauge)?
            .encode_gauge(&v)
    }
}

#[derive(Debug)]
struct AtomicCounter(Arc<AtomicU64>, &'static str, &'static str, MetricType);

impl Collector for AtomicCounter {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let v = self.0.load(Ordering::Relaxed);
        let mut m = enc.encode_descriptor(self.1, self.2, None, self.3)?;
        match self.3 {
            MetricType::Counter => {
                m.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&v, None)
            }
            _ => m.encode_gauge(&(v as i64)),
        }
    }
}

impl ExporterMetrics {
    /// Registers the exporter's own metrics.
    pub fn registry(self: &Arc<Self>) -> Registry {
        let mut r = Registry::default();
        let build = Family::<[(&'static str, &'static str); 2], Gauge>::default();
        build
            .get_or_create(&[
                ("version", env!("CARGO_PKG_VERSION")),
                (
                    "revision",
                    option_env!("MAILTLS_REVISION").unwrap_or("unknown"),
                ),
            ])
            .set(1);
        r.register(
            "mailtls_exporter_build_info",
            "Version of the exporter, value 1",
            build,
        );
        r.register(
            "mailtls_probes",
            "Target probes completed, by result",
            self.probes.clone(),
        );
        r.register(
            "mailtls_config_last_reload_successful",
            "1 when the last configuration (re)load succeeded",
            self.config_reload_successful.clone(),
        );
        r.register(
            "mailtls_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully",
            self.config_reload_timestamp.clone(),
        );
        r.register_collector(Box::new(OptionalGaugeCollector(
            self.resolver_validating.clone(),
            "mailtls_dns_resolver_validating",
            "1 when the resolver proved that it validates DNSSEC (the root SOA came back secure); absent when no target needs DNS",
        )));
        r.register(
            "mailtls_targets",
            "Configured targets this replica probes (all of them unless sharded)",
            self.targets.clone(),
        );
        r.register(
            "mailtls_target_info",
            "Configured target and its kind (domain, host, address), value 1",
            self.target_info.clone(),
        );
        r.register_collector(Box::new(AtomicCounter(
            self.dns_queries.clone(),
            "mailtls_dns_queries",
            "DNS queries sent to the resolver (cache misses)",
            MetricType::Counter,
        )));
        r.register_collector(Box::new(AtomicCounter(
            self.dns_cache_entries.clone(),
            "mailtls_dns_cache_entries",
            "RRsets held in the DNS cache",
            MetricType::Gauge,
        )));
        r.register_collector(Box::new(AtomicCounter(
            self.smtp_dialogues.clone(),
            "mailtls_smtp_dialogues",
            "SMTP dialogues run (an address shared by several targets is probed once per round)",
            MetricType::Counter,
        )));
        self.shard.register(&mut r);
        r
    }

    pub(crate) fn count_probe(&self, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.probes.get_or_create(&[("result", result)]).inc();
    }
}
