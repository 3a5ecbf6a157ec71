//! Logging set-up: `--log.level` and `--log.format=logfmt|json` on `tracing`.
//!
//! Owns: the subscriber and a small logfmt formatter (`ts=… level=… msg="…" key=value`),
//! as Prometheus exporters log. JSON output leaves out tracing's own `target` field, since
//! `target` is ours (the probe target).
//! Not here: what gets logged (each module logs its own events with fields).

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Logfmt,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

/// Installs the global subscriber (stderr). Our crate logs at `level`. Dependencies log
/// errors only, or warnings at `debug`: a monitor sees bogus DNS data and broken servers
/// all day, and hickory warns about each at length.
pub fn init(level: Level, format: Format) {
    let deps = if level == Level::Debug {
        "warn"
    } else {
        "error"
    };
    let filter = EnvFilter::new(format!("{deps},mailtls_exporter={}", level.as_str()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr);
    let _ = match format {
        Format::Json => builder
            .json()
            .with_target(false)
            .with_current_span(false)
            .flatten_event(true)
            .try_init(),
        Format::Logfmt => builder.event_format(Logfmt).try_init(),
    };
}

/// logfmt: `ts=2026-11-23T16:00:00.000Z level=info msg="…" key=value`.
pub(crate) struct Logfmt;

fn quote(out: &mut String, v: &str) {
    let needs = v.is_empty()
        || v.bytes()
            .any(|b| b <= b' ' || b == b'"' || b == b'=' || b == b'\\');
    if !needs {
        out.push_str(v);
        return;
    }
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

struct Fields {
    msg: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value);
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, &format!("{value:?}"));
    }
}

impl Fields {
    fn put(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = value.to_string();
        } else {
            self.rest.push(' ');
            self.rest.push_str(field.name());
            self.rest.push('=');
            quote(&mut self.rest, value);
        }
    }
}

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let now = time::OffsetDateTime::now_utc();
        let ts = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            now.millisecond()
        );
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        let mut f = Fields {
            msg: String::new(),
            rest: String::new(),
        };
        event.record(&mut f);
        // Span fields (e.g. the probe target) come after the event's own.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(ext) = span
                    .extensions()
                    .get::<tracing_subscriber::fmt::FormattedFields<N>>()
                {
                    if !ext.fields.is_empty() {
                        f.rest.push(' ');
                        f.rest.push_str(&ext.fields);
                    }
                }
            }
        }
        let mut line = format!("ts={ts} level={level} msg=");
        quote(&mut line, &f.msg);
        line.push_str(&f.rest);
        writeln!(w, "{line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_quotes_only_when_needed() {
        let mut s = String::new();
        quote(&mut s, "plain");
        s.push(' ');
        quote(&mut s, "two words \"q\"");
        s.push(' ');
        quote(&mut s, "");
        assert_eq!(s, r#"plain "two words \"q\"" """#);
    }
}
