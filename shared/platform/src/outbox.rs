//! The transactional outbox: a write and the domain events it causes commit
//! together, so an acknowledged write never loses its event.
//!
//! [`Outbox::commit`] adds one outbox record per event to the caller's
//! writes and applies them all in one [`Table::transact`]; only then does it
//! publish the events and remove their records. If publishing fails the
//! records stay, and [`Outbox::relay`] (run on a schedule: every service that
//! publishes declares one) sends them later. Delivery is therefore at least
//! once; consumers de-duplicate by event id ([`crate::inbox`]).
//!
//! Records live in the service's own table under `OUTBOX#<shard>`, sorted by
//! a fixed-width timestamp, spread over a few partitions so a busy service
//! does not write one hot partition.

use std::sync::Arc;

use crate::clock::Clock;
use crate::events::{DomainEvent, EventBus, EventsError};
use crate::table::{
    Condition, Item, ItemKey, MAX_TRANSACTION_WRITES, Query, SortKey, StoreError, Table, Write,
};

/// Outbox records are spread over this many partitions.
pub const SHARDS: u32 = 8;
/// A record younger than this may still be published by the request that
/// wrote it, so the relay leaves it alone.
pub const RELAY_MIN_AGE: time::Duration = time::Duration::seconds(30);

/// What one relay run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RelayReport {
    /// Events published.
    pub sent: usize,
    /// Records left in place because they can never be published
    /// (unreadable, or refused by the bus); each is logged as an error.
    pub refused: usize,
}

/// The outbox of one service's table.
#[derive(Debug, Clone)]
pub struct Outbox {
    table: Arc<dyn Table>,
    bus: Arc<dyn EventBus>,
    clock: Arc<dyn Clock>,
}

/// A fixed-width, sortable timestamp for outbox sort keys.
fn stamp(t: time::OffsetDateTime) -> String {
    format!("{:020}", t.unix_timestamp_nanos().max(0))
}

impl Outbox {
    /// The outbox in `table`, publishing on `bus`.
    pub fn new(table: Arc<dyn Table>, bus: Arc<dyn EventBus>, clock: Arc<dyn Clock>) -> Self {
        Self { table, bus, clock }
    }

    /// Applies `writes` and records `events` in one transaction, then
    /// publishes the events. A failed condition in `writes` keeps its index
    /// in [`StoreError::ConditionFailed`]. Publishing failures are logged,
    /// not returned: the write happened and the relay will send the events.
    pub async fn commit(
        &self,
        writes: Vec<Write>,
        events: &[DomainEvent],
    ) -> Result<(), StoreError> {
        if writes.len() + events.len() > MAX_TRANSACTION_WRITES {
            return Err(StoreError::Invalid(format!(
                "{} writes and {} events exceed one transaction",
                writes.len(),
                events.len()
            )));
        }
        // An event the bus would refuse must not commit: once stored it could
        // never be published.
        for event in events {
            event
                .to_detail()
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
        }
        let now = self.clock.now();
        let mut all = writes;
        let mut keys = Vec::with_capacity(events.len());
        for event in events {
            let body = serde_json::to_string(event)
                .map_err(|e| StoreError::Invalid(format!("event does not serialize: {e}")))?;
            let shard = uuid::Uuid::new_v4().as_u128() % u128::from(SHARDS);
            let key = ItemKey::new(
                format!("OUTBOX#{shard}"),
                format!("{}#{}", stamp(now), event.id),
            );
            all.push(Write::Put {
                item: Item::new(key.clone()).with("event", body),
                condition: Condition::NotExists,
            });
            keys.push(key);
        }
        self.table.transact(&all).await?;
        if events.is_empty() {
            return Ok(());
        }
        match self.bus.publish(events).await {
            Ok(()) => {
                for key in &keys {
                    if let Err(e) = self.table.delete(key, Condition::None).await {
                        tracing::warn!(error = %e, "published event left in the outbox; it will be sent again");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "events not published; the outbox relay will send them");
            }
        }
        Ok(())
    }

    /// Publishes the records older than `min_age` (those whose inline publish
    /// failed) and removes them; stops at the first publish failure.
    #[tracing::instrument(skip(self))]
    pub async fn relay(&self, min_age: time::Duration) -> Result<RelayReport, StoreError> {
        let cutoff = stamp(self.clock.now() - min_age);
        let mut report = RelayReport::default();
        for shard in 0..SHARDS {
            let mut query = Query::partition(format!("OUTBOX#{shard}"));
            query.sort = SortKey::AtMost(format!("{cutoff}#~"));
            loop {
                let page = self.table.query(&query).await?;
                for item in &page.items {
                    let event = match item.str("event").map(serde_json::from_str::<DomainEvent>) {
                        Some(Ok(event)) => event,
                        _ => {
                            tracing::error!(pk = %item.key.pk, sk = %item.key.sk, "unreadable outbox record left in place");
                            report.refused += 1;
                            continue;
                        }
                    };
                    match self.bus.publish(std::slice::from_ref(&event)).await {
                        Ok(()) => {}
                        // Retrying cannot help this one: keep it for an
                        // operator, and relay the rest.
                        Err(e @ EventsError::Invalid(_)) => {
                            tracing::error!(pk = %item.key.pk, sk = %item.key.sk, event_id = %event.id, error = %e, "the bus refuses this outbox event; left in place");
                            report.refused += 1;
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "outbox relay could not publish; will retry");
                            return Ok(report);
                        }
                    }
                    self.table.delete(&item.key, Condition::None).await?;
                    report.sent += 1;
                }
                match page.next_cursor {
                    Some(c) => query.cursor = Some(c),
                    None => break,
                }
            }
        }
        if report.sent > 0 {
            tracing::info!(sent = report.sent, "relayed stranded events");
        }
        Ok(report)
    }
}
