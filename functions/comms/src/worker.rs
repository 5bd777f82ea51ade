//! The comms worker: every event on comms' queue.
//!
//! - `account.*` (auth) keep the directory copy current;
//! - `media.*` keep the attachments comms may show;
//! - `expense.*`, `order.*`, `inventory.low` are counted toward the day
//!   and notified;
//! - `comms.deliver`, `comms.retract`, `comms.email` and `comms.report`
//!   are comms' own steps (a page of a fan-out, of a retraction, one mail,
//!   one organization's daily report).

use std::sync::Arc;

use async_trait::async_trait;
use constellation_core::OrgId;
use constellation_core::directory::{self, AccountSnapshot};
use constellation_core::media::{MediaChanged, events as media_events};
use constellation_platform::DomainEvent;
use constellation_platform::worker::{EventHandler, RecordError};
use serde_json::Value;

use crate::mail::Mail;
use crate::store::deliver::events;
use crate::store::{CommsError, CommsStore};

/// Applies comms' events.
#[derive(Debug, Clone)]
pub struct CommsWorker {
    /// The store.
    pub store: Arc<CommsStore>,
    /// Mail, behind its circuit breaker.
    pub mail: Arc<Mail>,
}

fn classify(e: CommsError) -> RecordError {
    match e {
        CommsError::Invalid(_)
        | CommsError::NotFound(_)
        | CommsError::Forbidden(_)
        | CommsError::Store(constellation_platform::StoreError::Invalid(_)) => {
            RecordError::permanent(e)
        }
        e => RecordError::retryable(e),
    }
}

fn text<'a>(data: &'a Value, name: &str) -> Result<&'a str, RecordError> {
    data.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 2048)
        .ok_or_else(|| RecordError::permanent(anyhow::anyhow!("event data has no `{name}`")))
}

#[async_trait]
impl EventHandler for CommsWorker {
    async fn handle(&self, event: DomainEvent) -> Result<(), RecordError> {
        let org = OrgId::parse(&event.org).map_err(RecordError::permanent)?;
        let kind = event.event_type.as_str();
        let store = &self.store;
        let result = match kind {
            k if directory::events::ALL.contains(&k) => {
                let snapshot: AccountSnapshot =
                    serde_json::from_value(event.data).map_err(RecordError::permanent)?;
                store.apply_account(&org, &snapshot).await.map(drop)
            }
            media_events::READY | media_events::REJECTED | media_events::DELETED => {
                let change: MediaChanged =
                    serde_json::from_value(event.data).map_err(RecordError::permanent)?;
                store.apply_media(&org, kind, &change).await
            }
            events::DELIVER => store
                .deliver_page(&org, text(&event.data, "delivery_id")?)
                .await
                .map(drop),
            events::RETRACT => {
                let cursor = event
                    .data
                    .get("cursor")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                store
                    .retract_page(&org, text(&event.data, "announcement_id")?, cursor)
                    .await
                    .map(drop)
            }
            events::REPORT => {
                store
                    .write_day_report(&org, text(&event.data, "date")?)
                    .await
            }
            events::EMAIL => {
                return self
                    .mail
                    .send(
                        store,
                        &org,
                        text(&event.data, "delivery_id")?,
                        text(&event.data, "account_id")?,
                    )
                    .await;
            }
            _ => store.apply_event(&org, &event).await.map(drop),
        };
        result.map_err(classify)
    }
}
