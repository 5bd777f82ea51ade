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
use tracing_subscriber::EnvFilter;

/// Installs the global JSON log subscriber. Safe to call more than once (later calls do nothing).
pub fn init_tracing() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .ok()
        .map(|l| l.to_ascii_lowercase())
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let text = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("text"))
        || std::env::var("CONSTELLATION_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("text"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(level)
        .with_target(false)
        .with_writer(std::io::stdout);
    let _ = if text {
        builder.try_init()
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    };
}

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

/// Where EMF lines go.
#[derive(Clone)]
pub struct MetricsSink(Arc<dyn Fn(String) + Send + Sync>);

impl std::fmt::Debug for MetricsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsSink")
    }
}

impl MetricsSink {
    /// Writes each line to stdout (what CloudWatch Logs ingests in Lambda).
    pub fn stdout() -> Self {
        Self(Arc::new(|line| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
        }))
    }

    /// Drops every line.
    pub fn discard() -> Self {
        Self(Arc::new(|_| {}))
    }

    /// Calls `f` with each line (tests capture with it).
    pub fn from_fn(f: impl Fn(String) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Emits one EMF record in `namespace` with the given dimensions, metrics
    /// and extra (non-metric) properties.
    pub fn emit(
        &self,
        namespace: &str,
        dimensions: &[(&str, &str)],
        metrics: &[Metric],
        properties: &[(&str, Value)],
    ) {
        (self.0)(emf_line(
            namespace,
            dimensions,
            metrics,
            properties,
            time::OffsetDateTime::now_utc(),
        ));
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
                "Dimensions": [dimensions.iter().map(|(k, _)| *k).collect::<Vec<_>>()],
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
        assert_eq!(decl["Dimensions"][0], json!(["Service", "Route"]));
        assert_eq!(
            decl["Metrics"][0],
            json!({"Name": "Latency", "Unit": "Milliseconds"})
        );
        assert_eq!(v["Latency"], 1.5);
        assert_eq!(v["Route"], "GET /v1/kv/health");
        assert_eq!(v["request_id"], "r-1");
    }
}
