//! The expenses worker: media's `media.*` events about receipts keep each
//! receipt's status on its expense current.

use std::sync::Arc;

use async_trait::async_trait;
use constellation_core::OrgId;
use constellation_core::media::MediaChanged;
use constellation_platform::DomainEvent;
use constellation_platform::worker::{EventHandler, RecordError};

use crate::store::ExpenseStore;

/// Applies media events to receipts.
#[derive(Debug, Clone)]
pub struct ReceiptUpdates(pub Arc<ExpenseStore>);

#[async_trait]
impl EventHandler for ReceiptUpdates {
    async fn handle(&self, event: DomainEvent) -> Result<(), RecordError> {
        let org = OrgId::parse(&event.org).map_err(RecordError::permanent)?;
        let change: MediaChanged =
            serde_json::from_value(event.data).map_err(RecordError::permanent)?;
        self.0
            .apply_media(&org, &event.event_type, &change)
            .await
            .map_err(|e| {
                if e.is_retryable() || matches!(e, constellation_platform::StoreError::Conflict(_))
                {
                    RecordError::retryable(e)
                } else {
                    RecordError::permanent(e)
                }
            })
    }
}
