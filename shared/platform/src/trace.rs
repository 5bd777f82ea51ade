//! One trace id from an API request through every event and worker it causes.
//!
//! The id is AWS X-Ray's: a trace header `Root=1-<8 hex time>-<24 hex>`
//! (optionally `;Parent=<16 hex>;Sampled=0|1`). In Lambda it is the
//! invocation's (`_X_AMZN_TRACE_ID`, set by the runtime for each event); in
//! `serve` it is the request's `X-Amzn-Trace-Id` when that is a well-formed
//! header, else a new one. While a request (or a queue record) is handled,
//! the header is the task's [`current`] one: the outbox stamps it on every
//! event it commits ([`crate::DomainEvent::trace`]), the EventBridge adapter
//! passes it as the entry's `TraceHeader` (EventBridge hands it on to SQS as
//! the message's `AWSTraceHeader`), and the worker handles each record
//! within the header the record carries. Every log line written meanwhile
//! carries the root as `trace_id` (in the `spans` of the JSON line).
//!
//! A header is client input: [`parse`] keeps only the three fields above,
//! each checked against its exact shape, and drops anything else, so what is
//! logged and forwarded is bounded and never the client's free text.

use std::sync::Arc;

tokio::task_local! {
    static TRACE: Arc<str>;
}

/// The header the current task runs within, if any.
pub fn current() -> Option<Arc<str>> {
    TRACE.try_with(Arc::clone).ok()
}

/// Runs `f` within the trace `header` (what [`current`] returns inside).
pub async fn scope<F: std::future::Future>(header: Arc<str>, f: F) -> F::Output {
    TRACE.scope(header, f).await
}

/// The well-formed part of a trace header (`Root`, and `Parent` and
/// `Sampled` when present and well-formed), in that order; `None` without
/// a well-formed `Root`.
pub fn parse(raw: &str) -> Option<String> {
    if raw.len() > 256 {
        return None;
    }
    let mut root = None;
    let mut parent = None;
    let mut sampled = None;
    for part in raw.split(';') {
        let Some((key, value)) = part.trim().split_once('=') else {
            continue;
        };
        match key {
            "Root" if is_root(value) => root = Some(value),
            "Parent" if value.len() == 16 && is_lower_hex(value) && value != "0000000000000000" => {
                parent = Some(value);
            }
            "Sampled" if matches!(value, "0" | "1") => sampled = Some(value),
            _ => {}
        }
    }
    let mut header = format!("Root={}", root?);
    if let Some(p) = parent {
        header.push_str(";Parent=");
        header.push_str(p);
    }
    if let Some(s) = sampled {
        header.push_str(";Sampled=");
        header.push_str(s);
    }
    Some(header)
}

/// A new span id: 16 hex digits, never all zero.
pub fn new_span_id() -> String {
    let id = u64::from_le_bytes(crate::ids::unique()).max(1);
    format!("{id:016x}")
}

/// The `Parent` of a header made by [`parse`] or a new one: the span
/// (or X-Ray segment) the work it stands for was started from.
pub fn parent(header: &str) -> Option<&str> {
    header.split(';').find_map(|p| p.strip_prefix("Parent="))
}

/// `header` with `Parent` set to `span_id`: what work started from span
/// `span_id` carries on, so the spans it causes name it as their parent.
pub fn with_parent(header: &str, span_id: &str) -> String {
    let mut out = format!("Root={};Parent={span_id}", root(header));
    if let Some(sampled) = header.split(';').find_map(|p| p.strip_prefix("Sampled=")) {
        out.push_str(";Sampled=");
        out.push_str(sampled);
    }
    out
}

/// What one piece of work (a request, a queue record, a schedule run) runs
/// within: the header it continues, its own span id, and the header it
/// hands on (its span as the parent).
#[derive(Debug, Clone)]
pub struct Work {
    /// The trace id proper (`1-…-…`).
    pub trace_id: String,
    /// This work's span id.
    pub span_id: String,
    /// The span it continues, if the header named one.
    pub parent_id: Option<String>,
    /// The header the work's events carry ([`current`] inside [`scope`]).
    pub header: Arc<str>,
}

impl Work {
    /// The work continuing the first well-formed candidate header, or a
    /// new trace when none is.
    pub fn start<'a>(candidates: impl IntoIterator<Item = Option<&'a str>>) -> Self {
        let incoming = choose(candidates);
        let span_id = new_span_id();
        Self {
            trace_id: root(&incoming).to_owned(),
            parent_id: parent(&incoming).map(str::to_owned),
            header: with_parent(&incoming, &span_id).into(),
            span_id,
        }
    }
}

/// A new header: a root made of the current time and 96 random bits.
fn new_header() -> String {
    let random: [u8; 12] = crate::ids::unique();
    let secs = time::OffsetDateTime::now_utc().unix_timestamp().max(0);
    format!("Root=1-{:08x}-{}", secs & 0xffff_ffff, hex::encode(random))
}

/// The root (the trace id proper, `1-…-…`) of a header made by [`parse`]
/// or [`new_header`].
fn root(header: &str) -> &str {
    header
        .split(';')
        .find_map(|p| p.strip_prefix("Root="))
        .unwrap_or(header)
}

/// The header for one piece of work: the first well-formed candidate, else
/// a new one.
fn choose<'a>(candidates: impl IntoIterator<Item = Option<&'a str>>) -> Arc<str> {
    candidates
        .into_iter()
        .flatten()
        .find_map(parse)
        .unwrap_or_else(new_header)
        .into()
}

fn is_root(value: &str) -> bool {
    let mut parts = value.split('-');
    // An all-zero id is no trace (OpenTelemetry refuses it).
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some("1"), Some(t), Some(id), None)
            if t.len() == 8 && is_lower_hex(t) && id.len() == 24 && is_lower_hex(id)
                && (t.bytes().chain(id.bytes())).any(|b| b != b'0')
    )
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn headers_keep_only_their_well_formed_fields() {
        let h = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
        assert_eq!(parse(h).as_deref(), Some(h));
        assert_eq!(
            parse(" Root=1-5759e988-bd862e3fe1be46a994272793 ; Lineage=a:1;Self=x;Sampled=2")
                .as_deref(),
            Some("Root=1-5759e988-bd862e3fe1be46a994272793")
        );
        for bad in [
            "",
            "Root=",
            "Root=1-5759e988-bd862e3fe1be46a99427279",
            "Root=2-5759e988-bd862e3fe1be46a994272793",
            "Root=1-5759E988-bd862e3fe1be46a994272793",
            "Root=1-5759e988-bd862e3fe1be46a994272793-x",
            "Parent=53995c3f42cd8ad8",
            "Root=1-5759e988-bd862e3fe1be46a994272793\nx",
            "Root=1-00000000-000000000000000000000000",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        let long = format!(
            "Root=1-5759e988-bd862e3fe1be46a994272793;{}",
            "x".repeat(300)
        );
        assert_eq!(parse(&long), None);
    }

    #[test]
    fn work_continues_its_header_and_hands_on_its_own_span() {
        let w = Work::start([Some(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        )]);
        assert_eq!(w.trace_id, "1-5759e988-bd862e3fe1be46a994272793");
        assert_eq!(w.parent_id.as_deref(), Some("53995c3f42cd8ad8"));
        assert_eq!(w.span_id.len(), 16);
        assert_eq!(
            &*w.header,
            format!(
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent={};Sampled=1",
                w.span_id
            )
        );
        assert_eq!(parse(&w.header).as_deref(), Some(&*w.header));
        let fresh = Work::start([None]);
        assert_eq!(fresh.parent_id, None);
        assert_eq!(parent(&fresh.header), Some(fresh.span_id.as_str()));
    }

    #[test]
    fn new_headers_parse_and_differ() {
        let (a, b) = (new_header(), new_header());
        assert_eq!(parse(&a).as_deref(), Some(a.as_str()));
        assert_ne!(a, b);
        assert_eq!(root(&a).len(), 35);
    }

    #[test]
    fn the_first_well_formed_candidate_wins() {
        let good = "Root=1-5759e988-bd862e3fe1be46a994272793";
        assert_eq!(&*choose([None, Some("junk"), Some(good)]), good);
        assert_eq!(root(&choose([Some("junk")])).len(), 35);
    }

    #[tokio::test]
    async fn the_header_is_the_tasks_within_its_scope() {
        assert!(current().is_none());
        let h: Arc<str> = "Root=1-5759e988-bd862e3fe1be46a994272793".into();
        let inside = scope(h.clone(), async { current() }).await;
        assert_eq!(inside, Some(h));
    }
}
