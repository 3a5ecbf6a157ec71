//! The status page: the operator's view of the last probe of every target, rendered from
//! the same result model as `check` and the metrics.
//!
//! Owns: the compact per-target [`Summary`] made when a probe completes (`summary`), the
//! HTML page, its stylesheet and Content-Security-Policy, the text view (`page`), and the
//! web path prefixes of `--web.external-url` / `--web.route-prefix` (`prefix`).
//! Not here: keeping the summaries (`scheduler`), routing (`http`), the text itself (`text`).

pub(crate) mod packed;
pub(crate) mod page;
pub(crate) mod prefix;
pub(crate) mod summary;

pub use packed::PackedText;
pub use page::{render_page, Entry, PageQuery};
pub(crate) use page::{render_text_view, CONTENT_SECURITY_POLICY, STYLESHEET};
pub use prefix::{PrefixError, WebPrefix};
pub use summary::Summary;
