//! The local stand-ins for Lambda's SQS event source mapping and for
//! EventBridge Scheduler.
//!
//! It receives from a [`QueueReceiver`], hands the messages to a worker's
//! batch handler as the same `SqsEvent` Lambda would build, deletes the
//! messages the handler did not report as failed, and leaves the failed ones
//! to come back after the visibility timeout (and, past the max-receive
//! count, to go to the dead-letter queue). A handler that errors as a whole
//! fails the whole batch, as in Lambda.
//!
//! [`run_schedule`] sleeps until the schedule's next time (from the same
//! expression template.yaml gives EventBridge Scheduler) and runs its
//! handler, one run at a time, as a schedule with no overlap would.

use std::collections::HashSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::FutureExt as _;
use tokio::sync::watch;

use crate::queue::{QueueReceiver, ReceivedMessage};
use crate::schedule::{ScheduleExpr, ScheduledEvent, ScheduledHandler};

/// Builds the `SqsEvent` Lambda would deliver for these messages.
pub fn to_sqs_event(source_arn: &str, messages: &[ReceivedMessage]) -> SqsEvent {
    let records = messages
        .iter()
        .map(|m| {
            let mut record = SqsMessage::default();
            record.message_id = Some(m.message_id.clone());
            record.receipt_handle = Some(m.receipt_handle.clone());
            record.body = Some(m.body.clone());
            record.event_source = Some("aws:sqs".to_owned());
            record.event_source_arn = Some(source_arn.to_owned());
            record.aws_region = Some("local".to_owned());
            record.attributes.insert(
                "ApproximateReceiveCount".to_owned(),
                m.receive_count.to_string(),
            );
            record.attributes.insert(
                "SentTimestamp".to_owned(),
                (m.sent_at.unix_timestamp_nanos() / 1_000_000).to_string(),
            );
            if let Some(header) = &m.trace_header {
                record
                    .attributes
                    .insert("AWSTraceHeader".to_owned(), header.clone());
            }
            record
        })
        .collect();
    let mut event = SqsEvent::default();
    event.records = records;
    event
}

/// Receives batches until `shutdown` turns true, feeding each to `handler`.
/// A batch already handed to the handler is finished before returning.
pub async fn run_consumer<H, F>(
    receiver: Arc<dyn QueueReceiver>,
    batch_size: u32,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
) where
    H: Fn(SqsEvent) -> F + Send + Sync,
    F: Future<Output = Result<SqsBatchResponse, anyhow::Error>> + Send,
{
    let source = receiver.source_arn().to_owned();
    while !*shutdown.borrow() {
        let batch = tokio::select! {
            r = receiver.receive(batch_size, Duration::from_secs(1)) => r,
            _ = shutdown.changed() => break,
        };
        let messages = match batch {
            Ok(m) if m.is_empty() => continue,
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(queue = %source, error = %e, "receive failed; backing off");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // A panicking handler fails its batch (as a crashed Lambda would),
        // and the consumer goes on.
        let handled = AssertUnwindSafe(handler(to_sqs_event(&source, &messages)))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the batch handler panicked")));
        let failed: HashSet<String> = match handled {
            Ok(response) => response
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect(),
            Err(e) => {
                tracing::error!(queue = %source, error = format!("{e:#}"), "batch handler failed; the batch will be retried");
                messages.iter().map(|m| m.message_id.clone()).collect()
            }
        };
        for m in messages.iter().filter(|m| !failed.contains(&m.message_id)) {
            if let Err(e) = receiver.delete(&m.receipt_handle).await {
                tracing::warn!(queue = %source, message_id = %m.message_id, error = %e, "delete failed; the message will be redelivered");
            }
        }
    }
}

/// Runs `handler` at every time `expr` gives until `shutdown` turns true.
/// A run in progress is finished before returning.
pub async fn run_schedule(
    name: String,
    expr: ScheduleExpr,
    handler: Arc<dyn ScheduledHandler>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let now = time::OffsetDateTime::now_utc();
        let Some(due) = expr.next_after(now) else {
            tracing::info!(schedule = %name, "schedule has no further runs");
            return;
        };
        let wait = Duration::try_from(due - now).unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        let event = ScheduledEvent {
            schedule: name.clone(),
            scheduled_time: due
                .format(&time::format_description::well_known::Rfc3339)
                .ok(),
            execution_id: Some(uuid::Uuid::new_v4().to_string()),
            date: None,
        };
        // A panicking run is a failed run, not the end of the schedule.
        match AssertUnwindSafe(handler.run(event)).catch_unwind().await {
            Ok(Ok(report)) => tracing::debug!(schedule = %name, %report, "schedule ran"),
            Ok(Err(e)) => {
                tracing::warn!(schedule = %name, error = format!("{e:#}"), "schedule run failed; it runs again at its next time")
            }
            Err(_) => {
                tracing::error!(schedule = %name, "schedule run panicked; it runs again at its next time")
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Mutex;

    use aws_lambda_events::event::sqs::BatchItemFailure;

    use super::*;
    use crate::clock::SystemClock;
    use crate::local::LocalBackend;
    use crate::queue::{Queue as _, QueueSpec};

    #[tokio::test]
    async fn failed_items_come_back_and_the_rest_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::open(dir.path(), Arc::new(SystemClock)).unwrap();
        let spec = QueueSpec::with_dlq("work", Duration::from_millis(300), 5);
        backend
            .queue("work")
            .send_batch(&["ok-1".into(), "fail".into(), "ok-2".into()])
            .await
            .unwrap();

        let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let (stop, stopped) = watch::channel(false);
        let receiver: Arc<dyn QueueReceiver> = Arc::new(backend.receiver(&spec));
        let log = seen.clone();
        let task = tokio::spawn(run_consumer(
            receiver,
            10,
            move |event: SqsEvent| {
                let log = log.clone();
                async move {
                    let mut failures = Vec::new();
                    for r in event.records {
                        let body = r.body.unwrap_or_default();
                        let count = r
                            .attributes
                            .get("ApproximateReceiveCount")
                            .cloned()
                            .unwrap_or_default();
                        assert_eq!(
                            r.event_source_arn.as_deref(),
                            Some("arn:constellation:sqs:local:000000000000:work")
                        );
                        if body == "fail" && count == "1" {
                            let mut f = BatchItemFailure::default();
                            f.item_identifier = r.message_id.unwrap_or_default();
                            failures.push(f);
                        }
                        log.lock().unwrap().push((body, count));
                    }
                    let mut response = SqsBatchResponse::default();
                    response.batch_item_failures = failures;
                    Ok(response)
                }
            },
            stopped,
        ));

        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while seen.lock().unwrap().len() < 4 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.send(true).unwrap();
        task.await.unwrap();

        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        assert_eq!(
            seen,
            [
                ("fail".to_owned(), "1".to_owned()),
                ("fail".to_owned(), "2".to_owned()),
                ("ok-1".to_owned(), "1".to_owned()),
                ("ok-2".to_owned(), "1".to_owned()),
            ],
            "only the failed message is redelivered"
        );
        assert!(
            backend.peek("work", 10).await.unwrap().is_empty(),
            "handled messages are deleted"
        );
    }

    #[derive(Debug, Default)]
    struct Counting(Mutex<Vec<ScheduledEvent>>);

    #[async_trait::async_trait]
    impl ScheduledHandler for Counting {
        async fn run(&self, event: ScheduledEvent) -> anyhow::Result<serde_json::Value> {
            let runs = {
                let mut seen = self.0.lock().unwrap();
                seen.push(event);
                seen.len()
            };
            anyhow::ensure!(runs != 2, "a failing run");
            assert!(runs != 3, "a panicking run");
            Ok(serde_json::json!({}))
        }
    }

    #[tokio::test]
    async fn schedules_run_at_their_rate_survive_failed_and_panicking_runs_and_stop() {
        let handler = Arc::new(Counting::default());
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run_schedule(
            "every-100ms".to_owned(),
            ScheduleExpr::Rate(Duration::from_millis(100)),
            handler.clone(),
            stopped,
        ));
        // Four runs (the second failing, the third panicking), however slow
        // the machine; then stop.
        let started = tokio::time::Instant::now();
        while handler.0.lock().unwrap().len() < 4 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the schedule stopped after {} runs",
                handler.0.lock().unwrap().len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "four runs at 100 ms took only {:?}",
            started.elapsed()
        );
        stop.send(true).unwrap();
        task.await.unwrap();
        let runs = handler.0.lock().unwrap().clone();
        assert!(runs.iter().all(|e| e.schedule == "every-100ms"
            && e.scheduled_time.is_some()
            && e.execution_id.is_some()));
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(
            handler.0.lock().unwrap().len(),
            runs.len(),
            "no run after stop"
        );
    }
}
