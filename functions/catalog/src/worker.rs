//! The catalog worker: the saga's order events, each applied at most once
//! per order ([`crate::store::stock`]).

use std::sync::Arc;

use async_trait::async_trait;
use constellation_core::OrgId;
use constellation_core::orders::{OrderPlaced, OrderRef, events};
use constellation_platform::worker::{EventHandler, RecordError};
use constellation_platform::{DomainEvent, StoreError};

use crate::store::CatalogStore;

/// Applies order events to stock.
#[derive(Debug, Clone)]
pub struct OrderEvents(pub Arc<CatalogStore>);

fn classify(e: StoreError) -> RecordError {
    // Throttling, a lost race that outlasted its retries, or an outage: the
    // record comes back after the visibility timeout (jittered by SQS).
    if e.is_retryable()
        || matches!(
            e,
            StoreError::Conflict(_) | StoreError::ConditionFailed { .. }
        )
    {
        RecordError::retryable(e)
    } else {
        RecordError::permanent(e)
    }
}

#[async_trait]
impl EventHandler for OrderEvents {
    async fn handle(&self, event: DomainEvent) -> Result<(), RecordError> {
        let org = OrgId::parse(&event.org).map_err(RecordError::permanent)?;
        let outcome = match event.event_type.as_str() {
            events::PLACED => {
                let placed: OrderPlaced =
                    serde_json::from_value(event.data).map_err(RecordError::permanent)?;
                self.0.reserve(&org, &placed).await
            }
            events::CANCELLED | events::SHIPPED => {
                let order: OrderRef =
                    serde_json::from_value(event.data).map_err(RecordError::permanent)?;
                let ship = event.event_type == events::SHIPPED;
                self.0.settle(&org, &order.order_id, ship).await
            }
            other => {
                tracing::warn!(event_type = other, "event not for catalog; ignored");
                return Ok(());
            }
        }
        .map_err(classify)?;
        tracing::info!(event_type = %event.event_type, ?outcome, "order event applied");
        Ok(())
    }
}
