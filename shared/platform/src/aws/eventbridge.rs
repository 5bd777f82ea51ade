//! The Events port over EventBridge: `PutEvents` on one custom bus, in
//! chunks of [`PUBLISH_BATCH_SIZE`]. EventBridge may accept a call but refuse
//! some entries; those are sent again a few times and the publish fails if
//! any remain. Routing is the bus's rules (template.yaml, or
//! `AwsBackend::ensure_routes` for tests and `serve --provision`).

use anyhow::anyhow;
use async_trait::async_trait;
use aws_sdk_eventbridge::error::SdkError;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use super::{AwsBackend, classify};
use crate::events::{
    DomainEvent, EVENT_SOURCE, EventBus, EventsError, PUBLISH_BATCH_SIZE, validate_type,
};

/// Retries of entries EventBridge refused within an accepted call.
const MAX_ENTRY_RETRIES: u32 = 3;

fn fail<E>(what: String, err: SdkError<E>) -> EventsError
where
    E: aws_sdk_eventbridge::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (transient, err) = classify(err, what);
    if transient {
        EventsError::Unavailable(err)
    } else {
        EventsError::Backend(err)
    }
}

/// An EventBridge bus.
#[derive(Debug, Clone)]
pub struct EventBridgeBus {
    /// Its client is built on first use, not with the adapter (see
    /// [`super::AwsBackend`]): a cold start that does not use it
    /// does not set up the HTTPS connector.
    backend: super::AwsBackend,
    name: String,
}

impl EventBridgeBus {
    fn client(&self) -> &aws_sdk_eventbridge::Client {
        self.backend.eventbridge()
    }

    pub(super) fn new(backend: super::AwsBackend, name: &str) -> Self {
        Self {
            backend,
            name: name.to_owned(),
        }
    }

    fn entry(&self, event: &DomainEvent) -> Result<PutEventsRequestEntry, EventsError> {
        validate_type(&event.event_type)?;
        Ok(PutEventsRequestEntry::builder()
            .event_bus_name(&self.name)
            .source(EVENT_SOURCE)
            .detail_type(&event.event_type)
            .detail(event.to_detail()?)
            // EventBridge passes it on to an SQS target as the message's
            // AWSTraceHeader, and X-Ray links the segments.
            .set_trace_header(event.trace.clone())
            .build())
    }
}

#[async_trait]
impl EventBus for EventBridgeBus {
    #[tracing::instrument(skip(self, events), fields(bus = %self.name, count = events.len()))]
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), EventsError> {
        for chunk in events.chunks(PUBLISH_BATCH_SIZE) {
            let mut pending = chunk
                .iter()
                .map(|e| self.entry(e))
                .collect::<Result<Vec<_>, _>>()?;
            let mut attempt = 0;
            while !pending.is_empty() {
                let out = self
                    .client()
                    .put_events()
                    .set_entries(Some(pending.clone()))
                    .send()
                    .await
                    .map_err(|e| fail(format!("EventBridge PutEvents on {}", self.name), e))?;
                if out.failed_entry_count() == 0 {
                    break;
                }
                // Results come back in request order; keep the refused ones.
                let refused: Vec<_> = pending
                    .iter()
                    .zip(out.entries())
                    .filter(|(_, result)| result.error_code().is_some())
                    .map(|(entry, result)| {
                        (
                            entry.clone(),
                            result.error_code().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect();
                attempt += 1;
                if attempt > MAX_ENTRY_RETRIES {
                    let codes: Vec<_> = refused.iter().map(|(_, c)| c.as_str()).collect();
                    return Err(EventsError::Unavailable(anyhow!(
                        "EventBridge refused {} events on {}: {codes:?}",
                        refused.len(),
                        self.name
                    )));
                }
                pending = refused.into_iter().map(|(e, _)| e).collect();
                tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
            }
        }
        Ok(())
    }
}

impl AwsBackend {
    /// The EventBridge bus `name`.
    pub fn event_bus(&self, name: &str) -> EventBridgeBus {
        EventBridgeBus::new(self.clone(), name)
    }
}
