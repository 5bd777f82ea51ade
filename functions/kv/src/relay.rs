//! The scheduled outbox relay: the `kv-outbox` Lambda function (an
//! EventBridge schedule, every minute) and `serve`'s background task both
//! call [`relay`], which publishes change events whose inline publish failed.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use serde::Serialize;
use serde_json::Value;

use crate::store::KvStore;

/// An outbox record younger than this may still be published by the request
/// that wrote it, so the relay leaves it alone.
pub const MIN_AGE: time::Duration = time::Duration::seconds(30);

/// What one relay run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RelayReport {
    /// Events published.
    pub sent: usize,
}

/// Publishes every stranded change event.
pub async fn relay(store: &KvStore) -> anyhow::Result<RelayReport> {
    let sent = store.relay_outbox(MIN_AGE).await?;
    if sent > 0 {
        tracing::info!(sent, "relayed stranded kv change events");
    }
    Ok(RelayReport { sent })
}

/// The Lambda handler for the schedule's event.
pub async fn handle_schedule(
    store: &KvStore,
    event: EventBridgeEvent<Value>,
) -> anyhow::Result<RelayReport> {
    tracing::debug!(source = %event.source, "outbox relay triggered");
    relay(store).await
}
