//! The one shape of every SQS worker: an `SqsEvent` batch in, an
//! `SqsBatchResponse` out whose `batchItemFailures` name exactly the records
//! that should come back.
//!
//! A worker supplies a [`RecordHandler`] (or an [`EventHandler`] for domain
//! events) and classifies each failure:
//! - [`RecordError::Retryable`]: the record is reported as a batch item
//!   failure, becomes visible again after the queue's visibility timeout, and
//!   after the queue's max receives SQS moves it to the dead-letter queue;
//! - [`RecordError::Permanent`]: retrying cannot help (a malformed body, a
//!   rule the message breaks), so the worker logs it with its message id,
//!   counts it (`PermanentFailures` metric), and moves it to the dead-letter
//!   queue itself at once: no retry storm. Only if that move fails is the
//!   record reported as failed, so nothing is lost.
//!
//! Lambda (with `FunctionResponseTypes: [ReportBatchItemFailures]`) and the
//! local runner ([`crate::runner`]) call the same [`Worker::handle_batch`].

use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::StreamExt as _;
use tracing::Instrument as _;

use crate::events::DomainEvent;
use crate::observe::{Metric, MetricsSink};
use crate::queue::Queue;
use crate::trace;

pub use crate::observe::METRICS_NAMESPACE;
/// How many records of one batch are handled at once.
pub const DEFAULT_CONCURRENCY: usize = 10;

/// Why one record failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Worth retrying later (a dependency is down or throttling, a conflict).
    #[error("retryable: {0:#}")]
    Retryable(#[source] anyhow::Error),
    /// Retrying cannot help; the record goes to the dead-letter queue now.
    #[error("permanent: {0:#}")]
    Permanent(#[source] anyhow::Error),
}

impl RecordError {
    /// A retryable failure.
    pub fn retryable(e: impl Into<anyhow::Error>) -> Self {
        Self::Retryable(e.into())
    }

    /// A permanent failure.
    pub fn permanent(e: impl Into<anyhow::Error>) -> Self {
        Self::Permanent(e.into())
    }
}

/// Handles one SQS record.
#[async_trait]
pub trait RecordHandler: Send + Sync + std::fmt::Debug {
    /// Applies the record; must be idempotent (SQS delivers at least once).
    async fn handle(&self, record: &SqsMessage) -> Result<(), RecordError>;
}

/// Handles one domain event delivered through a queue.
#[async_trait]
pub trait EventHandler: Send + Sync + std::fmt::Debug {
    /// Applies the event; must be idempotent (de-duplicate by `event.id`,
    /// see [`crate::inbox`]).
    async fn handle(&self, event: DomainEvent) -> Result<(), RecordError>;
}

#[async_trait]
impl<H: EventHandler + ?Sized> EventHandler for Arc<H> {
    async fn handle(&self, event: DomainEvent) -> Result<(), RecordError> {
        (**self).handle(event).await
    }
}

/// Adapts an [`EventHandler`] to records: a body that is not a domain event
/// is a permanent failure.
#[derive(Debug)]
pub struct Events<H>(pub H);

#[async_trait]
impl<H: EventHandler> RecordHandler for Events<H> {
    async fn handle(&self, record: &SqsMessage) -> Result<(), RecordError> {
        let body = record.body.as_deref().unwrap_or_default();
        let event = DomainEvent::from_queue_body(body).map_err(RecordError::permanent)?;
        self.0.handle(event).await
    }
}

/// A worker: its name (for logs and metrics), its handler, and the
/// dead-letter queue permanent failures go to.
#[derive(Debug, Clone)]
pub struct Worker {
    name: String,
    handler: Arc<dyn RecordHandler>,
    dead_letters: Arc<dyn Queue>,
    metrics: MetricsSink,
    concurrency: usize,
}

/// What happened to one record.
enum Outcome {
    Done,
    Retry,
    DeadLettered,
}

impl Worker {
    /// A worker named `name` running `handler`, moving permanent failures to
    /// `dead_letters`.
    pub fn new(
        name: &str,
        handler: Arc<dyn RecordHandler>,
        dead_letters: Arc<dyn Queue>,
        metrics: MetricsSink,
    ) -> Self {
        Self {
            name: name.to_owned(),
            handler,
            dead_letters,
            metrics,
            concurrency: DEFAULT_CONCURRENCY,
        }
    }

    /// The worker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Handles a batch; the response names exactly the records to retry.
    #[tracing::instrument(skip(self, event), fields(worker = %self.name, records = event.records.len()))]
    pub async fn handle_batch(&self, event: SqsEvent) -> SqsBatchResponse {
        let outcomes: Vec<(String, Outcome)> = futures::stream::iter(event.records)
            .map(|record| async move {
                let id = record.message_id.clone().unwrap_or_default();
                let work = record_trace(&record);
                let span = tracing::info_span!(
                    "record",
                    message_id = %id,
                    trace_id = %work.trace_id,
                    span_id = %work.span_id,
                    parent_id = work.parent_id.as_deref(),
                );
                let outcome = trace::scope(work.header, self.handle_record(&record))
                    .instrument(span)
                    .await;
                (id, outcome)
            })
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|(_, o)| f(o)).count() as f64;
        self.metrics.emit(
            METRICS_NAMESPACE,
            &[("Worker", &self.name)],
            &[
                Metric {
                    name: "RecordsProcessed",
                    value: count(|o| matches!(o, Outcome::Done)),
                    unit: "Count",
                },
                Metric {
                    name: "RetryableFailures",
                    value: count(|o| matches!(o, Outcome::Retry)),
                    unit: "Count",
                },
                Metric {
                    name: "PermanentFailures",
                    value: count(|o| matches!(o, Outcome::DeadLettered)),
                    unit: "Count",
                },
            ],
            &[],
        );
        let mut response = SqsBatchResponse::default();
        response.batch_item_failures = outcomes
            .into_iter()
            .filter(|(_, o)| matches!(o, Outcome::Retry))
            .map(|(id, _)| {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                failure
            })
            .collect();
        response
    }

    async fn handle_record(&self, record: &SqsMessage) -> Outcome {
        let id = record.message_id.as_deref().unwrap_or_default();
        let receives = record
            .attributes
            .get("ApproximateReceiveCount")
            .map(String::as_str)
            .unwrap_or_default();
        match self.handler.handle(record).await {
            Ok(()) => {
                tracing::info!(receives, "record handled");
                Outcome::Done
            }
            Err(RecordError::Retryable(e)) => {
                tracing::warn!(
                    message_id = id,
                    receives,
                    error = format!("{e:#}"),
                    "record failed; it will be retried"
                );
                Outcome::Retry
            }
            Err(RecordError::Permanent(e)) => {
                tracing::error!(
                    message_id = id,
                    receives,
                    error = format!("{e:#}"),
                    "record failed permanently; moving it to the dead-letter queue"
                );
                let body = record.body.clone().unwrap_or_default();
                if body.is_empty() {
                    // SQS cannot carry an empty body; nothing to keep.
                    return Outcome::DeadLettered;
                }
                match self.dead_letters.send_batch(&[body]).await {
                    Ok(()) => Outcome::DeadLettered,
                    Err(e) => {
                        tracing::warn!(message_id = id, error = %e, "could not dead-letter the record; it will be retried");
                        Outcome::Retry
                    }
                }
            }
        }
    }
}

/// The trace a record continues: the `AWSTraceHeader` SQS carries (set
/// by EventBridge from the publisher's header), else the one in the event
/// body (the local bus, and emulators that drop the attribute), else the
/// Lambda invocation's, else a new one.
fn record_trace(record: &SqsMessage) -> trace::Work {
    #[derive(serde::Deserialize)]
    struct Traced {
        trace: Option<String>,
        detail: Option<Detail>,
    }
    #[derive(serde::Deserialize)]
    struct Detail {
        trace: Option<String>,
    }
    let from_body = record
        .body
        .as_deref()
        .filter(|b| b.starts_with('{'))
        .and_then(|b| serde_json::from_str::<Traced>(b).ok())
        .and_then(|t| t.detail.and_then(|d| d.trace).or(t.trace));
    let invocation = std::env::var("_X_AMZN_TRACE_ID").ok();
    trace::Work::start([
        record.attributes.get("AWSTraceHeader").map(String::as_str),
        from_body.as_deref(),
        invocation.as_deref(),
    ])
}
