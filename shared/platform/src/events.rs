//! The Events port: domain events on one bus, routed by type to consumers' queues.
//!
//! A service publishes [`DomainEvent`]s (`id`, `type`, `org`, `time`, `data`)
//! through an [`EventBus`]; it never names a consumer. Routing is data: a list
//! of [`Route`]s (event type → queue), collected from every service's
//! description. In AWS the routes are EventBridge rules on one custom bus
//! (template.yaml, or [`crate::aws::AwsBackend::ensure_routes`]) whose SQS
//! targets receive EventBridge's envelope; locally the bus looks the routes up
//! in the SQLite database and writes the very same envelope into the local
//! queues, so a consumer parses one shape ([`DomainEvent::from_queue_body`])
//! on both backends.
//!
//! Delivery is at least once (EventBridge and SQS both may repeat), so
//! consumers de-duplicate by [`DomainEvent::id`] (see [`crate::inbox`]).
//! Producers never publish directly after a write: they commit the event with
//! the write through [`crate::outbox::Outbox`], so an acknowledged write never
//! loses its event.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

/// The `source` every Constellation event carries on the bus (rules match it).
pub const EVENT_SOURCE: &str = "constellation";
/// The most events one EventBridge `PutEvents` call carries; adapters chunk to it.
pub const PUBLISH_BATCH_SIZE: usize = 10;
/// The largest event EventBridge accepts (256 KiB for the whole entry).
pub const MAX_EVENT_BYTES: usize = 256 * 1024;
/// The longest event type accepted.
pub const MAX_TYPE_LEN: usize = 128;

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The event is malformed (bad type, oversized); retrying will not help.
    #[error("invalid event: {0}")]
    Invalid(String),
    /// The bus is throttling or briefly unreachable; retrying may succeed.
    #[error("event bus temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else from the backend.
    #[error("event bus backend error")]
    Backend(#[source] anyhow::Error),
}

/// One domain event, as producers build it and consumers receive it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainEvent {
    /// Unique per event and stable across redelivery: consumers de-duplicate by it.
    pub id: String,
    /// What happened, `<service>.<fact>` (`kv.changed`, `expense.submitted`).
    #[serde(rename = "type")]
    pub event_type: String,
    /// The organization the event belongs to.
    pub org: String,
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// The event's own fields.
    pub data: Value,
    /// The X-Ray trace header of the request (or record) that caused the
    /// event ([`crate::trace`]), stamped by the outbox; absent on events
    /// from before traces were carried.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_trace"
    )]
    pub trace: Option<String>,
}

/// A trace header is only ever a label: whatever a message carries under
/// `trace` that is not a well-formed header (a number, an object, junk) is
/// dropped, never a reason to refuse the event.
fn lenient_trace<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => crate::trace::parse(&s),
        _ => None,
    })
}

impl DomainEvent {
    /// A new event with a fresh id; `data` must serialize to JSON.
    pub fn new(
        event_type: &str,
        org: impl std::fmt::Display,
        time: OffsetDateTime,
        data: impl Serialize,
    ) -> Result<Self, EventsError> {
        validate_type(event_type)?;
        let data = serde_json::to_value(data)
            .map_err(|e| EventsError::Invalid(format!("event data does not serialize: {e}")))?;
        Ok(Self {
            id: uuid::Uuid::new_v4().to_string(),
            event_type: event_type.to_owned(),
            org: org.to_string(),
            time,
            data,
            trace: None,
        })
    }

    /// The event carried by an SQS message body: EventBridge's envelope (what
    /// a rule's SQS target receives, in AWS and locally alike) or the bare
    /// event (a message sent by hand or redriven by an operator).
    pub fn from_queue_body(body: &str) -> Result<Self, EventsError> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Shape {
            Envelope { detail: DomainEvent },
            Bare(DomainEvent),
        }
        let event = match serde_json::from_str::<Shape>(body) {
            Ok(Shape::Envelope { detail } | Shape::Bare(detail)) => detail,
            Err(e) => {
                return Err(EventsError::Invalid(format!(
                    "message body is not a domain event: {e}"
                )));
            }
        };
        validate_type(&event.event_type)?;
        if event.id.is_empty() || event.id.len() > 128 {
            return Err(EventsError::Invalid(
                "event id must be 1 to 128 bytes".into(),
            ));
        }
        Ok(event)
    }

    /// The event serialized as EventBridge's `detail`.
    pub fn to_detail(&self) -> Result<String, EventsError> {
        let detail = serde_json::to_string(self)
            .map_err(|e| EventsError::Invalid(format!("event does not serialize: {e}")))?;
        if detail.len() > MAX_EVENT_BYTES - 1024 {
            return Err(EventsError::Invalid(format!(
                "event {} is {} bytes; events are at most {} bytes",
                self.id,
                detail.len(),
                MAX_EVENT_BYTES - 1024
            )));
        }
        Ok(detail)
    }
}

/// The envelope EventBridge hands an SQS target, reproduced by the local bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BusEnvelope {
    /// Always `"0"`.
    pub version: String,
    /// The bus's id for this delivery (not the domain event's id).
    pub id: String,
    /// The domain event's type.
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    /// [`EVENT_SOURCE`].
    pub source: String,
    /// The account (`000000000000` locally).
    pub account: String,
    /// When the bus accepted the event (RFC 3339).
    pub time: String,
    /// The region (`local` locally).
    pub region: String,
    /// Always empty here.
    pub resources: Vec<String>,
    /// The domain event.
    pub detail: DomainEvent,
}

/// Checks an event type: dot-separated lowercase words, `<service>.<fact>`.
pub fn validate_type(event_type: &str) -> Result<(), EventsError> {
    let word_ok = |w: &str| {
        w.starts_with(|c: char| c.is_ascii_lowercase())
            && w.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    };
    let words: Vec<&str> = event_type.split('.').collect();
    if event_type.len() > MAX_TYPE_LEN || words.len() < 2 || !words.iter().all(|w| word_ok(w)) {
        return Err(EventsError::Invalid(format!(
            "event type `{event_type}` is not `<service>.<fact>` in lowercase words"
        )));
    }
    Ok(())
}

/// One routing rule: events of `event_type` go to the queue `queue` (a queue
/// name; in AWS the name of the queue the rule targets).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    /// The event type matched exactly.
    pub event_type: String,
    /// The consumer's queue name.
    pub queue: String,
}

impl Route {
    /// A route from an event type to a queue name.
    pub fn new(event_type: impl Into<String>, queue: impl Into<String>) -> Self {
        Self {
            event_type: event_type.into(),
            queue: queue.into(),
        }
    }
}

/// A bus to publish domain events on.
#[async_trait]
pub trait EventBus: Send + Sync + std::fmt::Debug {
    /// Publishes every event (in batches); succeeds only when all were
    /// accepted. Events no route matches are accepted and dropped, as
    /// EventBridge does.
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), EventsError>;
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_types_are_service_dot_fact() {
        for ok in [
            "kv.changed",
            "expense.submitted",
            "order.line_added",
            "a.b.c",
        ] {
            assert!(validate_type(ok).is_ok(), "{ok}");
        }
        for bad in [
            "kv",
            "",
            "Kv.changed",
            "kv..x",
            ".kv",
            "kv.",
            "kv.chan ged",
            "1kv.x",
        ] {
            assert!(validate_type(bad).is_err(), "{bad}");
        }
        assert!(validate_type(&format!("a.{}", "b".repeat(MAX_TYPE_LEN))).is_err());
    }

    #[test]
    fn queue_bodies_parse_from_the_envelope_or_bare() {
        let event = DomainEvent::new(
            "kv.changed",
            "org-1",
            OffsetDateTime::UNIX_EPOCH,
            json!({"k": 1}),
        )
        .unwrap();
        let bare = serde_json::to_string(&event).unwrap();
        assert_eq!(DomainEvent::from_queue_body(&bare).unwrap(), event);
        let envelope = json!({
            "version": "0", "id": "eb-1", "detail-type": "kv.changed", "source": "constellation",
            "account": "1", "time": "1970-01-01T00:00:00Z", "region": "us-east-1",
            "resources": [], "ingestion-time": 5, "detail": serde_json::to_value(&event).unwrap(),
        });
        assert_eq!(
            DomainEvent::from_queue_body(&envelope.to_string()).unwrap(),
            event
        );
        assert!(DomainEvent::from_queue_body("{}").is_err());
        assert!(DomainEvent::from_queue_body("not json").is_err());
        let mut wrong = serde_json::to_value(&event).unwrap();
        wrong["type"] = json!("NOPE");
        assert!(DomainEvent::from_queue_body(&wrong.to_string()).is_err());
    }

    #[test]
    fn a_trace_header_is_kept_when_well_formed_and_dropped_otherwise() {
        let mut event =
            DomainEvent::new("kv.changed", "org-1", OffsetDateTime::UNIX_EPOCH, json!({})).unwrap();
        let header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8";
        event.trace = Some(header.to_owned());
        let body = serde_json::to_value(&event).unwrap();
        assert_eq!(body["trace"], header);
        let parsed = DomainEvent::from_queue_body(&body.to_string()).unwrap();
        assert_eq!(parsed.trace.as_deref(), Some(header));
        for junk in [
            json!(5),
            json!({"Root": 1}),
            json!("Root=nope"),
            json!(null),
        ] {
            let mut body = body.clone();
            body["trace"] = junk.clone();
            let parsed = DomainEvent::from_queue_body(&body.to_string()).unwrap();
            assert_eq!(parsed.trace, None, "{junk}");
            assert_eq!(parsed.id, event.id);
        }
    }
}
