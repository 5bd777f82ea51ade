//! The `kv-outbox` schedule: publishes change events whose inline publish
//! failed. EventBridge Scheduler runs it every minute in AWS (the
//! `kv-outbox` function); `serve` runs it from the same expression.

use std::sync::Arc;

use async_trait::async_trait;
use constellation_platform::outbox::RELAY_MIN_AGE;
use constellation_platform::schedule::{ScheduledEvent, ScheduledHandler};
use serde_json::{Value, json};

use crate::store::KvStore;

/// The schedule's name (and its Lambda binary).
pub const SCHEDULE: &str = "kv-outbox";
/// How often it runs: the `ScheduleExpression` of template.yaml's `KvOutboxFunction`.
pub const EXPRESSION: &str = "rate(1 minute)";

/// Relays the kv outbox.
#[derive(Debug, Clone)]
pub struct Relay(pub Arc<KvStore>);

#[async_trait]
impl ScheduledHandler for Relay {
    async fn run(&self, event: ScheduledEvent) -> anyhow::Result<Value> {
        tracing::debug!(schedule = %event.schedule, "outbox relay triggered");
        let report = self.0.relay_outbox(RELAY_MIN_AGE).await?;
        Ok(json!({ "sent": report.sent, "refused": report.refused }))
    }
}
