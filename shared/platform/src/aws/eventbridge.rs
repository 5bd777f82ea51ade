//! The Events port over EventBridge: `PutEvents` on one custom bus, in
//! chunks of [`PUBLISH_BATCH_SIZE`]. EventBridge may accept a call but refuse
//! some entries; those are sent again a few times and the publish fails if
//! any remain. Routing is the bus's rules (template.yaml, or
//! [`AwsBackend::ensure_routes`] for tests and `serve --provision`).

use std::collections::BTreeMap;

use anyhow::{Context as _, anyhow};
use async_trait::async_trait;
use aws_sdk_eventbridge::error::SdkError;
use aws_sdk_eventbridge::types::{PutEventsRequestEntry, RuleState, Target};
use aws_sdk_sqs::types::QueueAttributeName;

use super::{AwsBackend, classify, error_code, sqs};
use crate::events::{
    DomainEvent, EVENT_SOURCE, EventBus, EventsError, PUBLISH_BATCH_SIZE, Route, validate_type,
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
    client: aws_sdk_eventbridge::Client,
    name: String,
}

impl EventBridgeBus {
    pub(super) fn new(client: aws_sdk_eventbridge::Client, name: &str) -> Self {
        Self {
            client,
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
                    .client
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
        EventBridgeBus::new(self.inner.eventbridge.clone(), name)
    }

    /// Creates the custom bus `name` unless it exists.
    #[tracing::instrument(skip(self))]
    pub async fn ensure_event_bus(&self, name: &str) -> anyhow::Result<()> {
        match self
            .inner
            .eventbridge
            .create_event_bus()
            .name(name)
            .send()
            .await
        {
            Ok(_) => {
                tracing::info!(bus = name, "created event bus");
                Ok(())
            }
            Err(e) if error_code(&e) == Some("ResourceAlreadyExistsException") => Ok(()),
            Err(e) => Err(anyhow::Error::new(e).context(format!("creating event bus {name}"))),
        }
    }

    /// Creates, for each queue named in `routes`, one rule on `bus` matching
    /// the event types routed to it, targeting that queue (looked up by
    /// name), and a queue policy letting that rule send to it: the shape
    /// template.yaml gives each consumer. Rules are named `to-<queue>`.
    #[tracing::instrument(skip(self, routes))]
    pub async fn ensure_routes(&self, bus: &str, routes: &[Route]) -> anyhow::Result<()> {
        let mut by_queue: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for r in routes {
            validate_type(&r.event_type)?;
            by_queue
                .entry(r.queue.as_str())
                .or_default()
                .push(r.event_type.as_str());
        }
        for (queue, types) in by_queue {
            let rule_name: String = format!("to-{queue}").chars().take(64).collect();
            let pattern = serde_json::json!({
                "source": [EVENT_SOURCE],
                "detail-type": types,
            });
            let rule = self
                .inner
                .eventbridge
                .put_rule()
                .name(&rule_name)
                .event_bus_name(bus)
                .event_pattern(pattern.to_string())
                .state(RuleState::Enabled)
                .send()
                .await
                .with_context(|| format!("creating rule {rule_name} on bus {bus}"))?;
            let rule_arn = rule.rule_arn().unwrap_or_default().to_owned();
            let url = sqs::queue_url(&self.inner.sqs, queue)
                .await
                .with_context(|| format!("the queue {queue} a rule routes to"))?;
            let queue_arn = sqs::queue_arn(&self.inner.sqs, &url).await?;
            let target = Target::builder()
                .id("queue")
                .arn(&queue_arn)
                .build()
                .context("rule target")?;
            let out = self
                .inner
                .eventbridge
                .put_targets()
                .rule(&rule_name)
                .event_bus_name(bus)
                .targets(target)
                .send()
                .await
                .with_context(|| format!("targeting {queue} from rule {rule_name}"))?;
            anyhow::ensure!(
                out.failed_entry_count() == 0,
                "rule {rule_name} refused its target {queue}"
            );
            let policy = serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Sid": "EventBridgeRule",
                    "Effect": "Allow",
                    "Principal": {"Service": "events.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
                }],
            });
            self.inner
                .sqs
                .set_queue_attributes()
                .queue_url(&url)
                .attributes(QueueAttributeName::Policy, policy.to_string())
                .send()
                .await
                .with_context(|| format!("policy of queue {queue}"))?;
        }
        Ok(())
    }
}
