//! Logging and metrics setup shared by every binary.
//!
//! Logs are JSON lines through `tracing`; the level comes from
//! `AWS_LAMBDA_LOG_LEVEL` (set by the function's LoggingConfig), else
//! `RUST_LOG`, else `info`. Metrics are CloudWatch Embedded Metric Format
//! lines written to stdout: CloudWatch turns them into metrics with no network
//! call from the function. Locally the same lines can be switched off.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;

use serde_json::{Value, json};
use tracing_subscriber::filter::{LevelFilter, Targets};

use crate::prometheus::Registry;

/// Installs the global JSON log subscriber, writing each line to stdout as
/// it is made (what a Lambda function needs: its lines must be out before
/// the execution environment freezes). Safe to call more than once (later
/// calls do nothing).
pub fn init_tracing() {
    install(std::io::stdout, None);
}

/// [`init_tracing`] writing to stderr: for a command whose stdout is its
/// output (`constellation env`, read by `source` or an env file).
pub fn init_tracing_stderr() {
    install(std::io::stderr, None);
}

/// A layer added to the log subscriber (`serve`'s OTLP span exporter).
pub type ExtraLayer =
    Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// Like [`init_tracing`], but each line is handed to a background thread
/// that writes it, so a request never waits on a write to stdout (the
/// difference between 13k and 9k small reads a second in `serve`). Lines are
/// never dropped: when the thread falls 64k lines behind, loggers wait.
/// Keep the guard until exit; dropping it writes out what is queued.
pub fn init_tracing_in_background() -> LogGuard {
    init_tracing_in_background_with(None)
}

/// [`init_tracing_in_background`] with `extra` seeing every span and event
/// the log level lets through.
pub fn init_tracing_in_background_with(extra: Option<ExtraLayer>) -> LogGuard {
    let (tx, rx) = std::sync::mpsc::sync_channel::<LogLine>(65_536);
    let thread = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || {
            // Not locked for good: EMF lines (`MetricsSink::stdout`) take
            // the lock between two of this thread's writes, each of which
            // is whole lines.
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
            while let Ok(line) = rx.recv() {
                let mut next = Some(line);
                // Write everything waiting, then flush once.
                while let Some(line) = next {
                    match line {
                        LogLine::Bytes(bytes) => {
                            let _ = out.write_all(&bytes);
                        }
                        LogLine::Flush(done) => {
                            let _ = out.flush();
                            let _ = done.send(());
                        }
                    }
                    next = rx.try_recv().ok();
                }
                let _ = out.flush();
            }
        })
        .ok();
    let sender = BackgroundLog(tx.clone());
    install(sender, extra);
    LogGuard {
        tx: thread.map(|_| tx),
    }
}

enum LogLine {
    Bytes(Vec<u8>),
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// One log line's writer: buffers the line, hands it over when dropped.
#[derive(Clone)]
struct BackgroundLog(std::sync::mpsc::SyncSender<LogLine>);

struct LineBuffer {
    buf: Vec<u8>,
    tx: std::sync::mpsc::SyncSender<LogLine>,
}

impl std::io::Write for LineBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        // A line comes in one write: one allocation of its size.
        if self.buf.is_empty() {
            self.buf = bytes.to_vec();
        } else {
            self.buf.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let _ = self.tx.send(LogLine::Bytes(std::mem::take(&mut self.buf)));
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BackgroundLog {
    type Writer = LineBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        LineBuffer {
            buf: Vec::new(),
            tx: self.0.clone(),
        }
    }
}

/// Returned by [`init_tracing_in_background`]: dropping it writes out every
/// queued line.
#[must_use = "dropping the guard at once flushes nothing later"]
pub struct LogGuard {
    tx: Option<std::sync::mpsc::SyncSender<LogLine>>,
}

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogGuard").finish_non_exhaustive()
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let (done, flushed) = std::sync::mpsc::sync_channel(1);
            if tx.send(LogLine::Flush(done)).is_ok() {
                let _ = flushed.recv_timeout(std::time::Duration::from_secs(5));
            }
        }
    }
}

/// The log filter: Lambda's level (`AWS_LAMBDA_LOG_LEVEL`: `TRACE` ...
/// `ERROR`, or `FATAL`, which tracing calls `error`), else `RUST_LOG`'s
/// directives (`debug`, or `constellation_kv=debug,warn`), else `info`.
/// A `Targets` filter, not `EnvFilter`: the span and field directives it
/// would add need the regex crates, a fifth of a megabyte of every Lambda.
/// A `RUST_LOG` holding one (`kv[span]=debug`) or an unknown level is not
/// half applied: the whole value is ignored (and `info` applies).
fn log_filter(lambda_level: Option<String>, rust_log: Option<String>) -> Targets {
    if let Some(level) = lambda_level.as_deref().and_then(level_named) {
        return Targets::new().with_default(level);
    }
    rust_log
        .as_deref()
        .and_then(directives)
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
}

/// A level by name, in any case (`fatal` is `error`); nothing else (no
/// numbers, no empty string).
fn level_named(name: &str) -> Option<LevelFilter> {
    Some(match name.trim().to_ascii_lowercase().as_str() {
        "trace" => LevelFilter::TRACE,
        "debug" => LevelFilter::DEBUG,
        "info" => LevelFilter::INFO,
        "warn" => LevelFilter::WARN,
        "error" | "fatal" => LevelFilter::ERROR,
        "off" => LevelFilter::OFF,
        _ => return None,
    })
}

/// `RUST_LOG`'s comma-separated `level` and `target=level` directives
/// (empty ones skipped); `None` if any is something else.
fn directives(value: &str) -> Option<Targets> {
    let mut targets = Targets::new();
    let mut any = false;
    for directive in value.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        targets = match directive.split_once('=') {
            None => targets.with_default(level_named(directive)?),
            Some((target, level)) => {
                let target = target.trim();
                let plain = !target.is_empty()
                    && target
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '-');
                if !plain {
                    return None;
                }
                targets.with_target(target.to_owned(), level_named(level)?)
            }
        };
        any = true;
    }
    any.then_some(targets)
}

fn install<W>(writer: W, extra: Option<ExtraLayer>)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let level = log_filter(
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok(),
        std::env::var("RUST_LOG").ok(),
    );
    let text = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("text"))
        || std::env::var("CONSTELLATION_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("text"));
    let format = if text {
        tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_writer(writer)
            .boxed()
    } else {
        json_format(writer).boxed()
    };
    let _ = tracing_subscriber::registry()
        .with(extra)
        .with(level)
        .with(format)
        .try_init();
}

/// The format layer of every JSON log line ([`crate::jsonlog`]), writing to
/// `writer`: each line has the event's fields and every span it is in (the
/// request's or record's, with its `trace_id` and `request_id`, and any
/// nested one). What the binaries install; tests that read log lines
/// install it too.
pub fn json_format<S, W>(
    writer: W,
) -> tracing_subscriber::fmt::Layer<S, crate::jsonlog::JsonMembers, crate::jsonlog::JsonLine, W>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + 'static,
{
    tracing_subscriber::fmt::layer()
        .fmt_fields(crate::jsonlog::JsonMembers)
        .event_format(crate::jsonlog::JsonLine::default())
        .with_writer(writer)
}

/// The CloudWatch namespace of every metric Constellation emits.
pub const METRICS_NAMESPACE: &str = "Constellation";

/// Every metric name the code emits in [`METRICS_NAMESPACE`]; tests hold
/// the EMF lines, `/metrics` and template.yaml's dashboard and alarms to it.
pub const EMF_METRICS: &[&str] = &[
    "Requests",
    "Latency",
    "ClientErrors",
    "Errors",
    "ColdStart",
    "RecordsProcessed",
    "RetryableFailures",
    "PermanentFailures",
    "CircuitOpened",
    "FailedLogin",
    "Events",
    "ScheduleRuns",
    "ScheduleFailures",
];

/// One metric value with its CloudWatch unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metric {
    /// The metric name.
    pub name: &'static str,
    /// The value.
    pub value: f64,
    /// The CloudWatch unit (`Count`, `Milliseconds`...).
    pub unit: &'static str,
}

/// Where metrics go: EMF lines (to stdout in Lambda; nowhere, and nothing
/// rendered, for [`MetricsSink::discard`]) and, in `serve`, a Prometheus
/// [`Registry`] under the same names ([`MetricsSink::with_registry`]).
#[derive(Clone, Default)]
pub struct MetricsSink {
    lines: Option<Arc<dyn Fn(String) + Send + Sync>>,
    registry: Option<Arc<Registry>>,
}

/// Properties of an EMF record that the Prometheus registry also takes as
/// labels (CloudWatch keeps them as searchable properties, not dimensions:
/// a dimension per status code would multiply the custom metrics).
pub const LABEL_PROPERTIES: &[&str] = &["status"];

impl std::fmt::Debug for MetricsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsSink")
    }
}

impl MetricsSink {
    /// Writes each line to stdout (what CloudWatch Logs ingests in Lambda).
    pub fn stdout() -> Self {
        Self::from_fn(|line| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
        })
    }

    /// Drops every line.
    pub fn discard() -> Self {
        Self::default()
    }

    /// Whether metrics go anywhere (callers may skip building a record).
    pub fn is_enabled(&self) -> bool {
        self.lines.is_some() || self.registry.is_some()
    }

    /// Calls `f` with each line (tests capture with it).
    pub fn from_fn(f: impl Fn(String) + Send + Sync + 'static) -> Self {
        Self {
            lines: Some(Arc::new(f)),
            registry: None,
        }
    }

    /// Also records every metric in `registry`.
    pub fn with_registry(mut self, registry: Arc<Registry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Emits one EMF record in `namespace` with the given dimensions, metrics
    /// and extra (non-metric) properties, and records the metrics in the
    /// registry with the dimensions (and [`LABEL_PROPERTIES`]) as labels.
    pub fn emit(
        &self,
        namespace: &str,
        dimensions: &[(&str, &str)],
        metrics: &[Metric],
        properties: &[(&str, Value)],
    ) {
        if let Some(registry) = &self.registry {
            let extra: Vec<(&str, String)> = properties
                .iter()
                .filter(|(k, _)| LABEL_PROPERTIES.contains(k))
                .map(|(k, v)| (*k, v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                .collect();
            let mut labels: Vec<(&str, &str)> = dimensions.to_vec();
            labels.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
            registry.record(&labels, metrics);
        }
        if let Some(sink) = &self.lines {
            sink(emf_line(
                namespace,
                dimensions,
                metrics,
                properties,
                time::OffsetDateTime::now_utc(),
            ));
        }
    }
}

/// The dimension sets an EMF record declares: all its dimensions and, when
/// there are several, the first alone, so CloudWatch also keeps each
/// metric rolled up by it (per service across its routes, with true
/// percentiles).
fn dimension_sets<'a>(dimensions: &[(&'a str, &str)]) -> Vec<Vec<&'a str>> {
    let all: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    match all.as_slice() {
        [first, _, ..] => vec![all.clone(), vec![*first]],
        _ => vec![all],
    }
}

/// Renders one Embedded Metric Format record.
pub fn emf_line(
    namespace: &str,
    dimensions: &[(&str, &str)],
    metrics: &[Metric],
    properties: &[(&str, Value)],
    at: time::OffsetDateTime,
) -> String {
    let mut root: BTreeMap<String, Value> = BTreeMap::new();
    for (k, v) in properties {
        root.insert((*k).to_owned(), v.clone());
    }
    for (k, v) in dimensions {
        root.insert((*k).to_owned(), Value::from(*v));
    }
    for m in metrics {
        root.insert(m.name.to_owned(), json!(m.value));
    }
    let timestamp = i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    root.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": dimension_sets(dimensions),
                "Metrics": metrics.iter().map(|m| json!({"Name": m.name, "Unit": m.unit})).collect::<Vec<_>>(),
            }],
        }),
    );
    serde_json::to_string(&root).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_level_is_lambdas_then_rust_logs_then_info() {
        use tracing::Level;
        let some = |s: &str| Some(s.to_owned());
        let lambda = log_filter(some("DEBUG"), some("error"));
        assert!(lambda.would_enable("constellation_kv", &Level::DEBUG));
        assert!(!lambda.would_enable("constellation_kv", &Level::TRACE));
        let fatal = log_filter(some("FATAL"), None);
        assert!(fatal.would_enable("x", &Level::ERROR));
        assert!(!fatal.would_enable("x", &Level::WARN));
        let directives = log_filter(None, some("constellation_kv=debug,warn"));
        assert!(directives.would_enable("constellation_kv::http", &Level::DEBUG));
        assert!(!directives.would_enable("constellation_auth", &Level::INFO));
        assert!(directives.would_enable("constellation_auth", &Level::WARN));
        // An unknown, empty or numeric Lambda level falls to RUST_LOG.
        for odd in ["LOUD", "", " ", "3"] {
            let unknown = log_filter(some(odd), some("trace"));
            assert!(unknown.would_enable("x", &Level::TRACE), "{odd:?}");
        }
        // Empty directives are skipped, not read as `error`.
        let trailing = log_filter(None, some("debug,"));
        assert!(trailing.would_enable("x", &Level::DEBUG));
        // Bad directives (an unknown level, a span or field filter) leave
        // the whole value aside: info.
        for bad in [
            "kv=noisy",
            "kv[span]=debug",
            "kv[{f}]=debug",
            "[req]=trace",
            "=debug",
            ",",
        ] {
            let bad_filter = log_filter(None, some(bad));
            assert!(bad_filter.would_enable("kv", &Level::INFO), "{bad:?}");
            assert!(!bad_filter.would_enable("kv", &Level::DEBUG), "{bad:?}");
        }
        let none = log_filter(None, None);
        assert!(none.would_enable("x", &Level::INFO));
        assert!(!none.would_enable("x", &Level::DEBUG));
    }

    #[test]
    fn emf_lines_declare_their_metrics_and_dimensions() {
        let line = emf_line(
            "Constellation",
            &[("Service", "kv"), ("Route", "GET /v1/kv/health")],
            &[Metric {
                name: "Latency",
                value: 1.5,
                unit: "Milliseconds",
            }],
            &[("request_id", Value::from("r-1"))],
            time::macros::datetime!(2026-01-01 0:00 UTC),
        );
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        assert_eq!(v["_aws"]["Timestamp"], 1_767_225_600_000_i64);
        let decl = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(decl["Namespace"], "Constellation");
        assert_eq!(
            decl["Dimensions"],
            json!([["Service", "Route"], ["Service"]])
        );
        assert_eq!(
            decl["Metrics"][0],
            json!({"Name": "Latency", "Unit": "Milliseconds"})
        );
        assert_eq!(v["Latency"], 1.5);
        assert_eq!(v["Route"], "GET /v1/kv/health");
        assert_eq!(v["request_id"], "r-1");
    }
}

/// An error and every source under it, `outer: inner: ...`, as one line:
/// what `{:#}` prints for an `anyhow::Error`, for any error (a store error
/// wrapping the reason a record did not decode, say).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.ends_with(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod error_chain_tests {
    use super::error_chain;

    #[test]
    fn every_source_is_named_once() {
        let inner = anyhow::anyhow!("kv item has no valid content_type");
        let outer = crate::StoreError::Backend(inner);
        let text = error_chain(&outer);
        assert!(
            text.ends_with(": kv item has no valid content_type"),
            "{text}"
        );
        assert_eq!(text.matches("content_type").count(), 1, "{text}");
    }
}
