//! mailtls_exporter: a Prometheus exporter for inbound mail servers: SMTP STARTTLS,
//! certificates, DANE TLSA (RFC 7672, RFC 7671) and the DNSSEC chain beneath them.
//!
//! Data flows one way: `config` → `scheduler` → `probe` (→ `dane`, `cert`) → `model` →
//! `metrics` → `http`; `text` renders the model for people (`check`, `/probe?debug=true`), `status` for the status
//! page at `/`.
//!
//! Layers (lowest first). A module may import only from modules of lower layers; modules on one
//! line are siblings and never import each other (`tests/architecture.rs` reads this list):
//! 1. target, logging, shard, sts, pack
//! 2. config
//! 3. model
//! 4. cert
//! 5. dane
//! 6. probe, metrics, text, status, staged, planner
//! 7. rollover
//! 8. scheduler, admission
//! 9. webconfig, transport
//! 10. http, check
//! 11. main

pub mod admission;
pub mod cert;
pub mod check;
pub mod config;
pub mod dane;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod pack;
pub mod planner;
pub mod probe;
pub mod rollover;
pub mod scheduler;
pub mod shard;
pub mod staged;
pub mod status;
pub mod sts;
pub mod target;
pub mod text;
pub mod transport;
pub mod webconfig;
