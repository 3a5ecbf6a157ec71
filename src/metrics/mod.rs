//! The only place metric names and labels appear: reports → exposition.
//!
//! Owns: the report metrics of docs/metrics.md, written through prometheus-client
//! ([`families::encode_reports`]); the exporter's own metrics; content negotiation (OpenMetrics, or the
//! Prometheus text format 0.0.4).
//! Scale: a target's series are encoded once, when its probe completes ([`encode_report`]),
//! into one text chunk per metric family, kept deflated; a scrape ([`Exposition::scrape`])
//! sends the latest reports family by family from gzip segments kept per block of reports,
//! compressing only the blocks that changed (plain: the same segments inflated). A scrape of
//! 10,000 targets is then mostly a list of kept buffers rather than 680,000 label encodings,
//! and series of a vanished host, address or record disappear with the report that carried
//! them.
//! Files: `exposition` (chunks, scrape, negotiation), `scrape` (the body streamed in chunks,
//! gzip from deflate segments kept between scrapes), `families` (the report families), `own`
//! (the exporter's own metrics), `shard` (this replica's shard), `rollover` (staged
//! certificates, TLSA timing), `authoritative` (the authoritative-server families),
//! `policies` (MTA-STS and TLSRPT).
//! Not here: producing reports (`probe`), keeping them (`scheduler`), serving (`http`).

mod authoritative;
mod exposition;
mod families;
mod own;
mod policies;
mod rollover;
mod scrape;
mod shard;

pub(crate) use exposition::wants_openmetrics;
pub use exposition::{encode_report, render_report, EncodedReport, Exposition, ReportSource};
pub use own::ExporterMetrics;
pub use scrape::{Chunks, GzipStats, Scrape, BLOCK_TARGETS as GZIP_BLOCK_TARGETS};

/// HELP suffix: values come from the last scheduled probe, never from the scrape itself.
pub(crate) const FROM_LAST: &str = " (from the last scheduled probe)";
