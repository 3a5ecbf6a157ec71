//! mailtls_exporter: a Prometheus exporter for inbound mail servers: SMTP STARTTLS,
//! certificates, DANE TLSA (RFC 7672, RFC 7671) and the DNSSEC chain beneath them.
//!
//! Data flows one way: `config` → `scheduler` → `probe` (→ `dane`, `cert`) → `report` →
//! `metrics` → `http`; `check` renders reports for people.

pub mod cert;
pub mod check;
pub mod config;
pub mod dane;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod probe;
pub mod report;
pub mod scheduler;
pub mod target;
pub mod webconfig;
