//! The orders worker: catalog's answers to `order.placed` (`stock.reserved`,
//! `stock.rejected`) confirm or reject pending orders. Every answer is
//! applied with a version-conditioned write, so SQS's redeliveries and
//! catalog's late answers change nothing.

use std::sync::Arc;

use async_trait::async_trait;
use constellation_core::OrgId;
use constellation_core::orders::{StockRejected, StockReserved, events};
use constellation_platform::DomainEvent;
use constellation_platform::worker::{EventHandler, RecordError};

use crate::store::{Applied, OrderStore, SagaError};

/// Applies catalog's stock events to orders.
#[derive(Debug, Clone)]
pub struct StockAnswers(pub Arc<OrderStore>);

fn classify(e: SagaError) -> RecordError {
    match e {
        // The event breaks the saga's contract: to the dead-letter queue.
        SagaError::Mismatch(m) => RecordError::permanent(m),
        SagaError::Store(e @ constellation_platform::StoreError::Invalid(_)) => {
            RecordError::permanent(e)
        }
        // Throttling, a lost race after every retry, a backend hiccup: the
        // queue's redrive policy bounds the retries.
        SagaError::Store(e) => RecordError::retryable(e),
    }
}

#[async_trait]
impl EventHandler for StockAnswers {
    async fn handle(&self, event: DomainEvent) -> Result<(), RecordError> {
        let org = OrgId::parse(&event.org).map_err(RecordError::permanent)?;
        let applied = match event.event_type.as_str() {
            events::STOCK_RESERVED => {
                let reserved: StockReserved =
                    serde_json::from_value(event.data).map_err(RecordError::permanent)?;
                self.0
                    .apply_reserved(&org, &event.id, &reserved)
                    .await
                    .map_err(classify)?
            }
            events::STOCK_REJECTED => {
                let rejected: StockRejected =
                    serde_json::from_value(event.data).map_err(RecordError::permanent)?;
                self.0
                    .apply_rejected(&org, &rejected)
                    .await
                    .map_err(classify)?
            }
            other => {
                tracing::warn!(event_type = other, id = %event.id, "not an event orders consumes; dropped");
                return Ok(());
            }
        };
        if applied == Applied::Ignored {
            tracing::info!(event_type = %event.event_type, id = %event.id, "duplicate or late stock answer; nothing changed");
        }
        Ok(())
    }
}
