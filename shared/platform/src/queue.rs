//! The Queue port (sending) and the receiving side the local runner and the
//! tests use.
//!
//! Services only send. In AWS, Lambda's event source mapping receives and
//! deletes; locally (and for `serve --backend aws`) [`crate::runner`] does the
//! same through [`QueueReceiver`], so a worker's batch handler sees identical
//! `SqsEvent`s in both places.

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

/// The most messages one SQS `SendMessageBatch` carries; adapters chunk to it.
pub const SEND_BATCH_SIZE: usize = 10;
/// The largest message body SQS accepts.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The request is malformed (empty or oversized body...).
    #[error("invalid queue request: {0}")]
    Invalid(String),
    /// The backend is throttling or briefly unreachable.
    #[error("queue temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else from the backend.
    #[error("queue backend error")]
    Backend(#[source] anyhow::Error),
}

/// A queue to send to.
#[async_trait]
pub trait Queue: Send + Sync + std::fmt::Debug {
    /// Sends every body, in batches; succeeds only when all were accepted.
    async fn send_batch(&self, bodies: &[String]) -> Result<(), QueueError>;
}

/// A message handed to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The queue's id for the message (stable across deliveries).
    pub message_id: String,
    /// The handle that deletes this delivery.
    pub receipt_handle: String,
    /// The body as sent.
    pub body: String,
    /// How many times it has been received, this time included.
    pub receive_count: u32,
    /// When it was first sent.
    pub sent_at: OffsetDateTime,
    /// The X-Ray trace header it was sent with (SQS's `AWSTraceHeader`;
    /// locally, events carry theirs in the body).
    pub trace_header: Option<String>,
}

/// The consuming side of a queue.
#[async_trait]
pub trait QueueReceiver: Send + Sync + std::fmt::Debug {
    /// The queue's ARN (or the local equivalent), as Lambda puts it in `eventSourceARN`.
    fn source_arn(&self) -> &str;
    /// Receives up to `max` (1-10) messages, waiting up to `wait` for the first.
    /// Each is hidden for the queue's visibility timeout; a message received more
    /// than the queue's max-receive count goes to its dead-letter queue instead.
    async fn receive(&self, max: u32, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError>;
    /// Deletes a delivered message.
    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError>;
}

/// One queue as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    /// The queue's name.
    pub name: String,
    /// Messages waiting to be received.
    pub visible: u64,
    /// Messages received and not yet deleted (hidden for their visibility timeout).
    pub in_flight: u64,
    /// Seconds since the oldest message still in the queue was sent (what
    /// CloudWatch calls `ApproximateAgeOfOldestMessage`), when the backend
    /// can tell: locally; SQS's API does not (CloudWatch has it).
    pub oldest_age_secs: Option<u64>,
}

/// What operators do to queues (`constellation queue`): list them, look at
/// messages, and move dead letters back to their source queue.
#[async_trait]
pub trait QueueAdmin: Send + Sync + std::fmt::Debug {
    /// Every queue with its depth, by name.
    async fn list(&self) -> Result<Vec<QueueStats>, QueueError>;
    /// The depth of each of the queues `names`, in order: what a metrics
    /// scrape reads (a few calls, not one per queue of the account); an
    /// error for a queue that could not be read. A local queue that holds
    /// no message is empty (its age 0).
    async fn stats(&self, names: &[String]) -> Vec<Result<QueueStats, QueueError>>;
    /// Up to `limit` messages of queue `name`, oldest first where the backend
    /// knows the order. Locally this changes nothing; SQS has no peek, so in
    /// AWS each shown message counts as one receive (and stays visible).
    async fn peek(&self, name: &str, limit: u32) -> Result<Vec<ReceivedMessage>, QueueError>;
    /// Moves up to `limit` messages from queue `from` (a dead-letter queue) to
    /// queue `to`, each visible at once with its receive count reset;
    /// returns how many moved. A message is deleted from `from` only after
    /// `to` has accepted it, so a failure midway loses nothing (it may
    /// leave a copy in both, which consumers de-duplicate).
    async fn redrive(&self, from: &str, to: &str, limit: u32) -> Result<u64, QueueError>;
}

/// How a queue is shaped: the same numbers template.yaml gives the SQS queue
/// and its redrive policy, and that the local queue enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    /// The queue's name.
    pub name: String,
    /// How long a received message stays hidden before it is delivered again.
    pub visibility_timeout: Duration,
    /// Receives after which the next receive moves the message to `dead_letter`.
    pub max_receives: u32,
    /// The dead-letter queue's name.
    pub dead_letter: Option<String>,
}

impl QueueSpec {
    /// A queue named `name` with a dead-letter queue named `<name>-dlq`.
    pub fn with_dlq(name: &str, visibility_timeout: Duration, max_receives: u32) -> Self {
        Self {
            name: name.to_owned(),
            visibility_timeout,
            max_receives,
            dead_letter: Some(format!("{name}-dlq")),
        }
    }
}
