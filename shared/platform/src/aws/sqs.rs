//! The Queue port over SQS, and the receiving side the runner uses for
//! `serve --backend aws` and the tests.
//!
//! Sending goes out in `SendMessageBatch` calls of at most
//! [`SEND_BATCH_SIZE`] messages and [`MAX_MESSAGE_BYTES`] in total (SQS's
//! limits per call). SQS can accept a batch but refuse some of its entries;
//! those are retried a few times, and the send fails if any remain.

use std::time::Duration;

use anyhow::anyhow;
use async_trait::async_trait;
use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::types::{
    MessageSystemAttributeName, MessageSystemAttributeNameForSends, MessageSystemAttributeValue,
    QueueAttributeName, SendMessageBatchRequestEntry,
};
use time::OffsetDateTime;

use super::classify;
use crate::queue::{
    MAX_MESSAGE_BYTES, Queue, QueueAdmin, QueueError, QueueReceiver, QueueStats, ReceivedMessage,
    SEND_BATCH_SIZE,
};

/// Retries of entries SQS refused within an accepted batch.
const MAX_ENTRY_RETRIES: u32 = 3;

fn fail<E>(what: String, err: SdkError<E>) -> QueueError
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (transient, err) = classify(err, what);
    if transient {
        QueueError::Unavailable(err)
    } else {
        QueueError::Backend(err)
    }
}

/// The URL of the queue named `name`.
pub(crate) async fn queue_url(
    client: &aws_sdk_sqs::Client,
    name: &str,
) -> Result<String, QueueError> {
    find_queue_url(client, name)
        .await?
        .ok_or_else(|| QueueError::Backend(anyhow!("there is no SQS queue {name}")))
}

/// The URL of the queue named `name`, or `None` when there is no such queue.
pub(crate) async fn find_queue_url(
    client: &aws_sdk_sqs::Client,
    name: &str,
) -> Result<Option<String>, QueueError> {
    match client.get_queue_url().queue_name(name).send().await {
        Ok(out) => out.queue_url.map(Some).ok_or_else(|| {
            QueueError::Backend(anyhow!("SQS GetQueueUrl of {name} returned no URL"))
        }),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_queue_does_not_exist()) =>
        {
            Ok(None)
        }
        Err(e) => Err(fail(format!("SQS GetQueueUrl of {name}"), e)),
    }
}

/// The ARN of the queue at `url`.
pub(crate) async fn queue_arn(
    client: &aws_sdk_sqs::Client,
    url: &str,
) -> Result<String, QueueError> {
    let out = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| fail(format!("SQS GetQueueAttributes of {url}"), e))?;
    out.attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| QueueError::Backend(anyhow!("SQS queue {url} has no QueueArn")))
}

/// Checks a body against what SQS accepts: 1 to [`MAX_MESSAGE_BYTES`] bytes
/// of the XML character set.
fn validate_body(body: &str) -> Result<(), QueueError> {
    if body.is_empty() || body.len() > MAX_MESSAGE_BYTES {
        return Err(QueueError::Invalid(format!(
            "message bodies are 1 to {MAX_MESSAGE_BYTES} bytes, not {}",
            body.len()
        )));
    }
    let allowed = |c: char| {
        matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
    };
    if body.chars().all(allowed) {
        Ok(())
    } else {
        Err(QueueError::Invalid(
            "message body holds characters SQS refuses".into(),
        ))
    }
}

/// Splits `bodies` into batches SQS accepts in one call.
fn batches(bodies: &[String]) -> Vec<&[String]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, body) in bodies.iter().enumerate() {
        if i > start && (i - start == SEND_BATCH_SIZE || bytes + body.len() > MAX_MESSAGE_BYTES) {
            out.push(&bodies[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += body.len();
    }
    if start < bodies.len() {
        out.push(&bodies[start..]);
    }
    out
}

/// An SQS queue to send to.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    /// Its client is built on first use, not with the adapter (see
    /// [`super::AwsBackend`]): a cold start that does not use it
    /// does not set up the HTTPS connector.
    backend: super::AwsBackend,
    url: String,
}

impl SqsQueue {
    fn client(&self) -> &aws_sdk_sqs::Client {
        self.backend.sqs()
    }

    pub(crate) fn new(backend: super::AwsBackend, url: &str) -> Self {
        Self {
            backend,
            url: url.to_owned(),
        }
    }

    /// The queue's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends one batch, retrying the entries SQS refused.
    async fn send_one_batch(&self, batch: &[String]) -> Result<(), QueueError> {
        // Entry ids are the bodies' positions in the batch.
        let mut pending: Vec<usize> = (0..batch.len()).collect();
        let mut attempt = 0;
        // What is sent while handling a request or a record carries its
        // trace, as EventBridge's deliveries do.
        let trace = match crate::trace::current() {
            Some(header) => Some(
                MessageSystemAttributeValue::builder()
                    .data_type("String")
                    .string_value(&*header)
                    .build()
                    .map_err(|e| {
                        QueueError::Backend(
                            anyhow::Error::new(e).context("building a trace header"),
                        )
                    })?,
            ),
            None => None,
        };
        loop {
            let entries = pending
                .iter()
                .map(|&i| {
                    let entry = SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(&batch[i]);
                    match &trace {
                        Some(t) => entry.message_system_attributes(
                            MessageSystemAttributeNameForSends::AwsTraceHeader,
                            t.clone(),
                        ),
                        None => entry,
                    }
                    .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    QueueError::Backend(anyhow::Error::new(e).context("building a batch"))
                })?;
            let out = self
                .client()
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| fail(format!("SQS SendMessageBatch to {}", self.url), e))?;
            let failed = out.failed();
            if failed.is_empty() {
                return Ok(());
            }
            let permanent = failed.iter().find(|f| f.sender_fault());
            if permanent.is_some() || attempt >= MAX_ENTRY_RETRIES {
                let first = permanent.unwrap_or(&failed[0]);
                let err = anyhow!(
                    "SQS refused {} of {} messages sent to {} ({}: {})",
                    failed.len(),
                    pending.len(),
                    self.url,
                    first.code(),
                    first.message().unwrap_or_default()
                );
                return Err(if permanent.is_some() {
                    QueueError::Backend(err)
                } else {
                    QueueError::Unavailable(err)
                });
            }
            pending = failed.iter().filter_map(|f| f.id().parse().ok()).collect();
            attempt += 1;
            tracing::debug!(
                attempt,
                failed = pending.len(),
                "retrying refused queue entries"
            );
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
        }
    }
}

#[async_trait]
impl Queue for SqsQueue {
    #[tracing::instrument(skip(self, bodies), fields(queue = %self.url, count = bodies.len()))]
    async fn send_batch(&self, bodies: &[String]) -> Result<(), QueueError> {
        for body in bodies {
            validate_body(body)?;
        }
        for batch in batches(bodies) {
            self.send_one_batch(batch).await?;
        }
        Ok(())
    }
}

/// The consuming side of an SQS queue.
#[derive(Clone, Debug)]
pub struct SqsReceiver {
    client: aws_sdk_sqs::Client,
    url: String,
    arn: String,
}

impl SqsReceiver {
    pub(crate) async fn connect(
        client: aws_sdk_sqs::Client,
        url: &str,
    ) -> Result<Self, QueueError> {
        let arn = queue_arn(&client, url).await?;
        Ok(Self {
            client,
            url: url.to_owned(),
            arn,
        })
    }

    /// The queue's URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

fn received(message: aws_sdk_sqs::types::Message) -> Result<ReceivedMessage, QueueError> {
    let attrs = message.attributes.unwrap_or_default();
    let receive_count = attrs
        .get(&MessageSystemAttributeName::ApproximateReceiveCount)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let sent_at = attrs
        .get(&MessageSystemAttributeName::SentTimestamp)
        .and_then(|ms| ms.parse::<i128>().ok())
        .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).ok())
        .ok_or_else(|| QueueError::Backend(anyhow!("SQS message without a SentTimestamp")))?;
    match (message.message_id, message.receipt_handle) {
        (Some(message_id), Some(receipt_handle)) => Ok(ReceivedMessage {
            message_id,
            receipt_handle,
            body: message.body.unwrap_or_default(),
            receive_count,
            sent_at,
            trace_header: attrs
                .get(&MessageSystemAttributeName::AwsTraceHeader)
                .cloned(),
        }),
        _ => Err(QueueError::Backend(anyhow!(
            "SQS message without an id or receipt handle"
        ))),
    }
}

#[async_trait]
impl QueueReceiver for SqsReceiver {
    fn source_arn(&self) -> &str {
        &self.arn
    }

    #[tracing::instrument(skip(self), fields(queue = %self.url))]
    async fn receive(&self, max: u32, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        let max = i32::try_from(max.clamp(1, 10)).unwrap_or(10);
        // SQS waits whole seconds, at most 20.
        let wait = wait.as_secs_f64().round().min(20.0) as i32;
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max)
            .wait_time_seconds(wait)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_system_attribute_names(MessageSystemAttributeName::AwsTraceHeader)
            .send()
            .await
            .map_err(|e| fail(format!("SQS ReceiveMessage from {}", self.url), e))?;
        out.messages
            .unwrap_or_default()
            .into_iter()
            .map(received)
            .collect()
    }

    #[tracing::instrument(skip(self, receipt_handle), fields(queue = %self.url))]
    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map_err(|e| fail(format!("SQS DeleteMessage from {}", self.url), e))?;
        Ok(())
    }
}

/// The depth of the queue at `url` (one GetQueueAttributes).
async fn queue_stats(client: &aws_sdk_sqs::Client, url: &str) -> Result<QueueStats, QueueError> {
    let out = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| fail(format!("SQS GetQueueAttributes of {url}"), e))?;
    let attrs = out.attributes.unwrap_or_default();
    let number = |name: QueueAttributeName| {
        attrs
            .get(&name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_default()
    };
    Ok(QueueStats {
        name: url.rsplit('/').next().unwrap_or(url).to_owned(),
        visible: number(QueueAttributeName::ApproximateNumberOfMessages),
        in_flight: number(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        oldest_age_secs: None,
    })
}

/// How long a message received for redrive stays hidden while it is copied.
const REDRIVE_VISIBILITY_SECS: i32 = 60;

#[async_trait]
impl QueueAdmin for super::AwsBackend {
    async fn list(&self) -> Result<Vec<QueueStats>, QueueError> {
        let client = self.sqs();
        let mut urls = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = client
                .list_queues()
                .set_next_token(next.take())
                .max_results(1000)
                .send()
                .await
                .map_err(|e| fail("SQS ListQueues".to_owned(), e))?;
            urls.extend(out.queue_urls.unwrap_or_default());
            match out.next_token {
                Some(t) => next = Some(t),
                None => break,
            }
        }
        let mut stats = Vec::with_capacity(urls.len());
        for url in urls {
            stats.push(queue_stats(client, &url).await?);
        }
        stats.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(stats)
    }

    async fn stats(&self, names: &[String]) -> Vec<Result<QueueStats, QueueError>> {
        let client = self.sqs();
        futures::future::join_all(names.iter().map(|name| async move {
            let url = queue_url(client, name).await?;
            queue_stats(client, &url).await
        }))
        .await
    }

    async fn peek(&self, name: &str, limit: u32) -> Result<Vec<ReceivedMessage>, QueueError> {
        let url = queue_url(self.sqs(), name).await?;
        let mut shown = Vec::new();
        while shown.len() < limit as usize {
            let want = (limit as usize - shown.len()).min(10) as i32;
            let out = self
                .sqs()
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(want)
                .visibility_timeout(0)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                .send()
                .await
                .map_err(|e| fail(format!("SQS ReceiveMessage from {url}"), e))?;
            let batch = out.messages.unwrap_or_default();
            if batch.is_empty() {
                break;
            }
            for m in batch {
                let m = received(m)?;
                if shown
                    .iter()
                    .any(|s: &ReceivedMessage| s.message_id == m.message_id)
                {
                    return Ok(shown);
                }
                shown.push(m);
            }
        }
        Ok(shown)
    }

    async fn redrive(&self, from: &str, to: &str, limit: u32) -> Result<u64, QueueError> {
        let client = self.sqs();
        let from_url = queue_url(client, from).await?;
        let target = SqsQueue::new(self.clone(), &queue_url(client, to).await?);
        let mut moved = 0_u64;
        while moved < u64::from(limit) {
            let want = (u64::from(limit) - moved).min(10) as i32;
            let out = client
                .receive_message()
                .queue_url(&from_url)
                .max_number_of_messages(want)
                .visibility_timeout(REDRIVE_VISIBILITY_SECS)
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                .send()
                .await
                .map_err(|e| fail(format!("SQS ReceiveMessage from {from_url}"), e))?;
            let batch = out
                .messages
                .unwrap_or_default()
                .into_iter()
                .map(received)
                .collect::<Result<Vec<_>, _>>()?;
            if batch.is_empty() {
                break;
            }
            let bodies: Vec<String> = batch.iter().map(|m| m.body.clone()).collect();
            target.send_batch(&bodies).await?;
            for m in &batch {
                client
                    .delete_message()
                    .queue_url(&from_url)
                    .receipt_handle(&m.receipt_handle)
                    .send()
                    .await
                    .map_err(|e| fail(format!("SQS DeleteMessage from {from_url}"), e))?;
                moved += 1;
            }
        }
        Ok(moved)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_count_and_total_size() {
        let small: Vec<String> = (0..23).map(|i| i.to_string()).collect();
        let sizes: Vec<usize> = batches(&small).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [10, 10, 3]);

        let big = "x".repeat(100 * 1024);
        let large = vec![big.clone(), big.clone(), big.clone(), "y".into()];
        let sizes: Vec<usize> = batches(&large).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [2, 2]);
        assert!(batches(&[]).is_empty());
    }

    #[test]
    fn bodies_are_checked_like_sqs_does() {
        assert!(validate_body("{\"a\":1}\n").is_ok());
        assert!(matches!(validate_body(""), Err(QueueError::Invalid(_))));
        assert!(matches!(
            validate_body("a\u{0}b"),
            Err(QueueError::Invalid(_))
        ));
        let huge = "x".repeat(MAX_MESSAGE_BYTES + 1);
        assert!(matches!(validate_body(&huge), Err(QueueError::Invalid(_))));
    }
}
