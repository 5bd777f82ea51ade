//! `serve --otlp-endpoint URL`: the spans of every request, queue record and
//! schedule run, exported as OpenTelemetry traces over OTLP/HTTP, so a
//! local Jaeger (or any collector) shows an order's saga across services.
//!
//! The trace id is the X-Ray root the work runs within
//! ([`constellation_platform::trace`]; its 32 hex digits without the
//! `1-` and dashes are exactly an OpenTelemetry trace id): a span with a
//! `trace_id` field starts its trace's local tree, the spans under it join
//! it. The spans of one trace that ran in different services (the order
//! request, catalog's worker, orders' worker) therefore land in one trace,
//! each under its own `service.name` (the span's `service`, or the service
//! of its `worker`). Spans outside any trace (start-up, idle loops) are not
//! exported.
//!
//! Spans go to a bounded queue ([`QUEUE`]; when full, spans are dropped
//! and that is logged once) and a background thread posts them in batches
//! (at most [`BATCH`], at least every second) as OTLP's JSON encoding to
//! `<endpoint>/v1/traces` over plain HTTP/1.1: the endpoint is a local
//! collector (`http://localhost:4318`); a failed post is logged and its
//! batch dropped, never retried forever.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use serde_json::{Value, json};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Spans waiting to be posted, at most.
pub const QUEUE: usize = 8192;
/// Spans in one post, at most.
pub const BATCH: usize = 512;
/// The longest attribute value exported (longer ones are cut).
const MAX_VALUE: usize = 1024;

/// The span fields exported as attributes. Nothing else is: other fields
/// may hold what a trace must not (keys with email addresses, idempotency
/// keys).
const ATTRIBUTES: &[&str] = &[
    "service",
    "route",
    "method",
    "request_id",
    "trace_id",
    "message_id",
    "worker",
    "records",
    "schedule",
    "table",
    "bus",
    "count",
    "writes",
    "items",
];

/// Where traces go: scheme `http`, a host, and optionally a port and a path
/// (`/v1/traces` is appended unless the path already ends with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    host: String,
    port: u16,
    path: String,
}

impl std::str::FromStr for Endpoint {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let uri: axum::http::Uri = s.parse().context("--otlp-endpoint is not a URL")?;
        anyhow::ensure!(
            uri.scheme_str() == Some("http"),
            "--otlp-endpoint must be an http:// URL (a local collector, e.g. http://localhost:4318)"
        );
        let host = uri
            .host()
            .context("--otlp-endpoint has no host")?
            .to_owned();
        let base = uri.path().trim_end_matches('/');
        let path = if base.ends_with("/v1/traces") {
            base.to_owned()
        } else {
            format!("{base}/v1/traces")
        };
        Ok(Self {
            host,
            port: uri.port_u16().unwrap_or(80),
            path,
        })
    }
}

/// The layer that hands closed spans to the exporter thread.
#[derive(Debug)]
pub struct OtlpLayer {
    tx: SyncSender<Exported>,
    overflow_logged: AtomicBool,
}

/// Starts the exporter thread posting to `endpoint`; the layer feeds it.
pub fn layer(endpoint: Endpoint) -> anyhow::Result<OtlpLayer> {
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    std::thread::Builder::new()
        .name("otlp-exporter".into())
        .spawn(move || export_loop(&endpoint, &rx))?;
    Ok(OtlpLayer {
        tx,
        overflow_logged: AtomicBool::new(false),
    })
}

/// What the layer keeps in each span's extensions.
struct SpanState {
    trace: Option<[u8; 16]>,
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    service: Option<String>,
    start: SystemTime,
    attributes: BTreeMap<&'static str, String>,
}

/// A closed span on its way out.
struct Exported {
    name: &'static str,
    trace: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    service: String,
    start: SystemTime,
    end: SystemTime,
    attributes: BTreeMap<&'static str, String>,
}

#[derive(Default)]
struct Fields(BTreeMap<&'static str, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), cut(value.to_owned()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name(), cut(format!("{value:?}")));
    }
}

fn allowed(mut fields: BTreeMap<&'static str, String>) -> BTreeMap<&'static str, String> {
    fields.retain(|k, _| ATTRIBUTES.contains(k));
    fields
}

fn cut(mut value: String) -> String {
    if value.len() > MAX_VALUE {
        let mut end = MAX_VALUE;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
    }
    value
}

/// A span id written as 16 hex digits.
fn span_id(hex16: &str) -> Option<[u8; 8]> {
    let mut id = [0_u8; 8];
    hex::decode_to_slice(hex16, &mut id).ok()?;
    Some(id)
}

/// The OpenTelemetry trace id of an X-Ray root (`1-5759e988-bd86…`).
fn trace_id(root: &str) -> Option<[u8; 16]> {
    let digits: String = root.strip_prefix("1-")?.split('-').collect();
    let mut id = [0_u8; 16];
    hex::decode_to_slice(digits, &mut id).ok()?;
    Some(id)
}

impl<S> tracing_subscriber::Layer<S> for OtlpLayer
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let inherited = span.parent().and_then(|p| {
            p.extensions()
                .get::<SpanState>()
                .map(|s| (s.trace, s.span_id, s.service.clone()))
        });
        let own_trace = fields.0.get("trace_id").and_then(|r| trace_id(r));
        // A span naming its trace (a request, a record, a schedule run)
        // starts the trace's tree in this process, under the span that
        // caused it (`parent_id`: the publisher's span, carried as the
        // trace header's `Parent`) unless its parent here is in the same
        // trace; every other span joins its parent's.
        let remote_parent = fields.0.get("parent_id").and_then(|p| span_id(p));
        let (trace, parent) = match (own_trace, &inherited) {
            (Some(t), Some((Some(pt), pid, _))) if *pt == t => (Some(t), Some(*pid)),
            (Some(t), _) => (Some(t), remote_parent),
            (None, Some((t, pid, _))) => (*t, t.map(|_| *pid)),
            (None, None) => (None, None),
        };
        let own_id = fields.0.get("span_id").and_then(|s| span_id(s));
        let service = fields
            .0
            .get("service")
            .cloned()
            .or_else(|| {
                fields
                    .0
                    .get("worker")
                    .map(|w| w.trim_end_matches("-worker").to_owned())
            })
            .or_else(|| inherited.and_then(|(_, _, s)| s));
        let state = SpanState {
            trace,
            span_id: own_id.unwrap_or_else(rand::random),
            parent,
            service,
            start: SystemTime::now(),
            attributes: allowed(fields.0),
        };
        span.extensions_mut().insert(state);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        values.record(&mut fields);
        if let Some(state) = span.extensions_mut().get_mut::<SpanState>() {
            state.attributes.extend(allowed(fields.0));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(state) = span.extensions_mut().remove::<SpanState>() else {
            return;
        };
        let Some(trace) = state.trace else { return };
        let exported = Exported {
            name: span.name(),
            trace,
            span_id: state.span_id,
            parent: state.parent,
            service: state.service.unwrap_or_else(|| "constellation".to_owned()),
            start: state.start,
            end: SystemTime::now(),
            attributes: state.attributes,
        };
        if let Err(TrySendError::Full(_)) = self.tx.try_send(exported)
            && !self.overflow_logged.swap(true, Ordering::Relaxed)
        {
            eprintln!("otlp: the span queue is full ({QUEUE}); spans are being dropped");
        }
    }
}

fn nanos(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
        .to_string()
}

/// OTLP's span kind: a request is SERVER (2), a queue record CONSUMER (5),
/// anything else INTERNAL (1).
fn kind(name: &str) -> u8 {
    match name {
        "request" => 2,
        "record" => 5,
        _ => 1,
    }
}

/// One `ExportTraceServiceRequest` in OTLP's JSON encoding: a resource per
/// service, its spans under one scope.
fn encode(spans: &[Exported]) -> Value {
    let mut by_service: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for s in spans {
        let attributes: Vec<Value> = s
            .attributes
            .iter()
            .map(|(k, v)| json!({"key": k, "value": {"stringValue": v}}))
            .collect();
        let mut span = json!({
            "traceId": hex::encode(s.trace),
            "spanId": hex::encode(s.span_id),
            "name": s.name,
            "kind": kind(s.name),
            "startTimeUnixNano": nanos(s.start),
            "endTimeUnixNano": nanos(s.end),
            "attributes": attributes,
        });
        if let Some(parent) = s.parent {
            span["parentSpanId"] = hex::encode(parent).into();
        }
        by_service.entry(&s.service).or_default().push(span);
    }
    let resource_spans: Vec<Value> = by_service
        .into_iter()
        .map(|(service, spans)| {
            json!({
                "resource": {"attributes": [
                    {"key": "service.name", "value": {"stringValue": service}},
                    {"key": "service.namespace", "value": {"stringValue": "constellation"}},
                ]},
                "scopeSpans": [{
                    "scope": {"name": "constellation", "version": env!("CARGO_PKG_VERSION")},
                    "spans": spans,
                }],
            })
        })
        .collect();
    json!({"resourceSpans": resource_spans})
}

fn export_loop(endpoint: &Endpoint, rx: &Receiver<Exported>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut last_error_logged: Option<Instant> = None;
    loop {
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut closed = false;
        while batch.len() < BATCH {
            let wait = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(span) => batch.push(span),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        if !batch.is_empty() {
            if let Err(e) = post(endpoint, &encode(&batch).to_string())
                && last_error_logged.is_none_or(|t| t.elapsed() > Duration::from_secs(60))
            {
                // To stderr, not through tracing: a log line about exporting
                // must not become a span to export.
                eprintln!(
                    "otlp: {} spans not exported to {}:{}{}: {e:#}",
                    batch.len(),
                    endpoint.host,
                    endpoint.port,
                    endpoint.path
                );
                last_error_logged = Some(Instant::now());
            }
            batch.clear();
        }
        if closed {
            return;
        }
    }
}

/// One HTTP/1.1 POST; succeeds on a 2xx answer.
fn post(endpoint: &Endpoint, body: &str) -> anyhow::Result<()> {
    let addr = (endpoint.host.as_str(), endpoint.port)
        .to_socket_addrs()?
        .next()
        .context("the collector's host has no address")?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        endpoint.path,
        endpoint.host,
        endpoint.port,
        body.len()
    )?;
    stream.write_all(body.as_bytes())?;
    let mut head = [0_u8; 12];
    stream.read_exact(&mut head)?;
    let status = std::str::from_utf8(&head[9..12]).unwrap_or("???");
    anyhow::ensure!(status.starts_with('2'), "the collector answered {status}");
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_the_traces_path_once_and_only_over_http() {
        let e: Endpoint = "http://localhost:4318".parse().unwrap();
        assert_eq!(
            e,
            Endpoint {
                host: "localhost".into(),
                port: 4318,
                path: "/v1/traces".into()
            }
        );
        let e: Endpoint = "http://collector/otlp/v1/traces".parse().unwrap();
        assert_eq!((e.port, e.path.as_str()), (80, "/otlp/v1/traces"));
        assert!("https://collector:4318".parse::<Endpoint>().is_err());
        assert!("collector:4318".parse::<Endpoint>().is_err());
    }

    #[test]
    fn xray_roots_are_otel_trace_ids() {
        assert_eq!(
            trace_id("1-5759e988-bd862e3fe1be46a994272793").map(hex::encode),
            Some("5759e988bd862e3fe1be46a994272793".to_owned())
        );
        assert_eq!(trace_id("2-5759e988-bd862e3fe1be46a994272793"), None);
        assert_eq!(trace_id("1-zz"), None);
    }
}
