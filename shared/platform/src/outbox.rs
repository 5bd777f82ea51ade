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
//!
//! Where the table and the bus share one store (the local backend: queues
//! live in the same SQLite database), an [`AtomicOutbox`] commits the writes
//! and delivers the events in one transaction instead: no record, no
//! relay, one commit.
//!
//! [`Outbox::upsert`] is the last-writer-wins write: the backend increments
//! the version atomically, so it never loses a race, and its event carries
//! the version it got (`data.version`). Where the write and the event cannot
//! commit together (DynamoDB cannot return the version from a transaction),
//! the event is first recorded with the item's key, then the item is
//! upserted with the event's id in [`UPSERT_EVENT_ATTR`]; a record the
//! request could not publish is sent by the relay with the item's version
//! if the item still carries that event id. If a later write replaced the
//! item first, the record is dropped: the later write's event reports the
//! key's state, so a consumer misses only an intermediate version, and only
//! when a request died between its write and its publish.

use std::sync::Arc;

use async_trait::async_trait;

use crate::clock::Clock;
use crate::events::{DomainEvent, EventBus, EventsError};
use crate::observe::{METRICS_NAMESPACE, Metric, MetricsSink};
use crate::table::{
    Condition, Item, ItemKey, MAX_TRANSACTION_WRITES, Query, SortKey, StoreError, Table, Write,
};
use crate::trace;

/// Outbox records are spread over this many partitions.
pub const SHARDS: u32 = 8;
/// A record younger than this may still be published by the request that
/// wrote it, so the relay leaves it alone.
pub const RELAY_MIN_AGE: time::Duration = time::Duration::seconds(30);

/// The attribute [`Outbox::upsert`] sets on the item to the id of its event,
/// so the relay can tell whether the item is still that write's.
pub const UPSERT_EVENT_ATTR: &str = "outbox_event";

/// Sets `data.version` of an upsert's event to the version its item got.
pub fn set_version(event: &mut DomainEvent, version: u64) -> Result<(), StoreError> {
    match event.data.as_object_mut() {
        Some(data) => {
            data.insert("version".to_owned(), version.into());
            Ok(())
        }
        None => Err(StoreError::Invalid(
            "an upsert's event data must be an object (it gets `version`)".into(),
        )),
    }
}

/// A backend whose table and bus share one transactional store.
#[async_trait]
pub trait AtomicOutbox: Send + Sync + std::fmt::Debug {
    /// Applies `writes` (as [`Table::transact`]) and delivers `events` to the
    /// queues routed to them, all in one transaction.
    async fn commit(&self, writes: Vec<Write>, events: Vec<DomainEvent>) -> Result<(), StoreError>;

    /// Upserts `item` (as [`Table::upsert`]) and delivers `event` with the
    /// version it got ([`set_version`]) in one transaction; returns the version.
    async fn upsert(&self, item: Item, event: DomainEvent) -> Result<u64, StoreError>;
}

/// What one relay run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RelayReport {
    /// Events published.
    pub sent: usize,
    /// Upsert events dropped because a later write replaced their item (or
    /// the write never happened): the later write's event stands for them.
    pub superseded: usize,
    /// Records left in place because they can never be published
    /// (unreadable, or refused by the bus); each is logged as an error.
    pub refused: usize,
}

/// The outbox of one service's table.
#[derive(Debug, Clone)]
pub struct Outbox {
    table: Arc<dyn Table>,
    /// What the relay pages through (see [`Outbox::with_relay_table`]).
    relay_table: Option<Arc<dyn Table>>,
    /// How many shards the relay reads at once (see
    /// [`Outbox::with_relay_concurrency`]).
    relay_concurrency: usize,
    bus: Arc<dyn EventBus>,
    clock: Arc<dyn Clock>,
    atomic: Option<Arc<dyn AtomicOutbox>>,
    metrics: Option<(MetricsSink, &'static str)>,
}

/// Gives `event` the current task's trace header unless it has one.
fn stamp_trace(event: &mut DomainEvent) {
    if event.trace.is_none() {
        event.trace = trace::current().map(|h| h.to_string());
    }
}

/// A fixed-width, sortable timestamp for outbox sort keys.
fn stamp(t: time::OffsetDateTime) -> String {
    format!("{:020}", t.unix_timestamp_nanos().max(0))
}

impl Outbox {
    /// The outbox in `table`, publishing on `bus`.
    pub fn new(table: Arc<dyn Table>, bus: Arc<dyn EventBus>, clock: Arc<dyn Clock>) -> Self {
        Self {
            table,
            relay_table: None,
            relay_concurrency: SHARDS as usize,
            bus,
            clock,
            atomic: None,
            metrics: None,
        }
    }

    /// Pages the relay's queries through `table`: the same table, with its
    /// cursors sealed by a key of this process's own. A relay's cursors
    /// never leave the process, so it needs no shared cursor secret, and a
    /// relay's cold start reads none.
    pub fn with_relay_table(mut self, table: Arc<dyn Table>) -> Self {
        self.relay_table = Some(table);
        self
    }

    /// Counts every committed event as metric `Events` (dimensions
    /// `Service` = `service`, `Type` = the event type): the business
    /// counters (orders placed, expenses approved, low-stock alerts...),
    /// counted once per commit however often the event is delivered.
    pub fn with_metrics(mut self, metrics: MetricsSink, service: &'static str) -> Self {
        self.metrics = Some((metrics, service));
        self
    }

    fn count(&self, events: &[DomainEvent]) {
        let Some((metrics, service)) = &self.metrics else {
            return;
        };
        for event in events {
            metrics.emit(
                METRICS_NAMESPACE,
                &[("Service", service), ("Type", &event.event_type)],
                &[Metric {
                    name: "Events",
                    value: 1.0,
                    unit: "Count",
                }],
                &[("event_id", event.id.clone().into())],
            );
        }
    }

    /// Reads at most `shards` shards at once in [`Self::relay`] (all of
    /// them by default: against DynamoDB a relay that finds nothing then
    /// waits one round trip, not one per shard). Locally a query is
    /// microseconds, and each concurrent one would open a read connection
    /// and start a blocking thread: a local relay reads one at a time.
    pub fn with_relay_concurrency(mut self, shards: usize) -> Self {
        self.relay_concurrency = shards.clamp(1, SHARDS as usize);
        self
    }

    /// Commits through `atomic` (the same table and bus in one store) instead
    /// of records and a relay.
    pub fn with_atomic(mut self, atomic: Arc<dyn AtomicOutbox>) -> Self {
        self.atomic = Some(atomic);
        self
    }

    /// Stores `item` over whatever is stored under its key (last writer
    /// wins; see [`Table::upsert`]) and commits `event` with it, its
    /// `data.version` set to the version the item got (see the module docs
    /// for what "with" means without an [`AtomicOutbox`]). Returns the version.
    pub async fn upsert(&self, mut item: Item, mut event: DomainEvent) -> Result<u64, StoreError> {
        stamp_trace(&mut event);
        // Validate the event's shape (with the widest version) before
        // anything is written.
        set_version(&mut event, u64::MAX)?;
        event
            .to_detail()
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        if let Some(atomic) = &self.atomic {
            let version = atomic.upsert(item, event.clone()).await?;
            self.count(std::slice::from_ref(&event));
            return Ok(version);
        }
        let key = self.record_key(&event);
        let body = serde_json::to_string(&event)
            .map_err(|e| StoreError::Invalid(format!("event does not serialize: {e}")))?;
        let record = Item::new(key.clone())
            .with("event", body)
            .with("upsert_pk", item.key.pk.as_str())
            .with("upsert_sk", item.key.sk.as_str());
        self.table.put(&record, Condition::NotExists).await?;
        item.attrs
            .insert(UPSERT_EVENT_ATTR.to_owned(), event.id.clone().into());
        let version = self.table.upsert(&item).await?;
        self.count(std::slice::from_ref(&event));
        set_version(&mut event, version)?;
        self.publish_and_clear(std::slice::from_ref(&event), std::slice::from_ref(&key))
            .await;
        Ok(version)
    }

    fn record_key(&self, event: &DomainEvent) -> ItemKey {
        let shard = uuid::Uuid::new_v4().as_u128() % u128::from(SHARDS);
        ItemKey::new(
            format!("OUTBOX#{shard}"),
            format!("{}#{}", stamp(self.clock.now()), event.id),
        )
    }

    /// Publishes `events` and removes their records; a failure leaves the
    /// records to the relay.
    async fn publish_and_clear(&self, events: &[DomainEvent], keys: &[ItemKey]) {
        match self.bus.publish(events).await {
            Ok(()) => {
                for key in keys {
                    if let Err(e) = self.table.delete(key, Condition::None).await {
                        tracing::warn!(error = %e, "published event left in the outbox; it will be sent again");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "events not published; the outbox relay will send them");
            }
        }
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
        let mut stamped;
        let events = if events.iter().any(|e| e.trace.is_none()) && trace::current().is_some() {
            stamped = events.to_vec();
            stamped.iter_mut().for_each(stamp_trace);
            &stamped[..]
        } else {
            events
        };
        // An event the bus would refuse must not commit: once stored it could
        // never be published.
        for event in events {
            event
                .to_detail()
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
        }
        if let Some(atomic) = &self.atomic {
            atomic.commit(writes, events.to_vec()).await?;
            self.count(events);
            return Ok(());
        }
        let mut all = writes;
        let mut keys = Vec::with_capacity(events.len());
        for event in events {
            let body = serde_json::to_string(event)
                .map_err(|e| StoreError::Invalid(format!("event does not serialize: {e}")))?;
            let key = self.record_key(event);
            all.push(Write::Put {
                item: Item::new(key.clone()).with("event", body),
                condition: Condition::NotExists,
            });
            keys.push(key);
        }
        self.table.transact(&all).await?;
        self.count(events);
        if !events.is_empty() {
            self.publish_and_clear(events, &keys).await;
        }
        Ok(())
    }

    /// Publishes the records older than `min_age` (those whose inline publish
    /// failed) and removes them. The shards are independent, so they are
    /// read concurrently (see [`Self::with_relay_concurrency`]). Each shard
    /// stops at its first publish failure; every shard runs to its end
    /// before the first storage error, if any, is returned (nothing is
    /// cancelled between a publish and its delete).
    #[tracing::instrument(skip(self))]
    pub async fn relay(&self, min_age: time::Duration) -> Result<RelayReport, StoreError> {
        use futures::StreamExt as _;
        let cutoff = stamp(self.clock.now() - min_age);
        let cutoff = &cutoff;
        let shards: Vec<(u32, Result<RelayReport, StoreError>)> = futures::stream::iter(0..SHARDS)
            .map(|shard| async move { (shard, self.relay_shard(shard, cutoff).await) })
            .buffer_unordered(self.relay_concurrency)
            .collect()
            .await;
        let mut report = RelayReport::default();
        let mut failed = None;
        for (shard, result) in shards {
            match result {
                Ok(part) => {
                    report.sent += part.sent;
                    report.superseded += part.superseded;
                    report.refused += part.refused;
                }
                Err(e) => {
                    tracing::warn!(shard, error = %e, "outbox relay stopped in a shard");
                    failed.get_or_insert(e);
                }
            }
        }
        if report.sent > 0 {
            tracing::info!(sent = report.sent, "relayed stranded events");
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// [`Self::relay`] of one shard's records stamped at or before `cutoff`.
    #[tracing::instrument(skip(self, cutoff))]
    async fn relay_shard(&self, shard: u32, cutoff: &str) -> Result<RelayReport, StoreError> {
        let mut report = RelayReport::default();
        let mut query = Query::partition(format!("OUTBOX#{shard}"));
        query.sort = SortKey::AtMost(format!("{cutoff}#~"));
        let pages = self.relay_table.as_ref().unwrap_or(&self.table);
        loop {
            let page = pages.query(&query).await?;
            for item in &page.items {
                let event = match item.str("event").map(serde_json::from_str::<DomainEvent>) {
                    Some(Ok(event)) => event,
                    _ => {
                        tracing::error!(pk = %item.key.pk, sk = %item.key.sk, "unreadable outbox record left in place");
                        report.refused += 1;
                        continue;
                    }
                };
                let event = match self.resolve_upsert(item, event).await? {
                    Some(event) => event,
                    None => {
                        tracing::info!(pk = %item.key.pk, sk = %item.key.sk, "upsert event superseded by a later write; dropped");
                        self.table.delete(&item.key, Condition::None).await?;
                        report.superseded += 1;
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
        Ok(report)
    }

    /// For the record of an upsert, its event with the version the item got,
    /// or `None` if the item is no longer that write's; other records' events
    /// as they are.
    async fn resolve_upsert(
        &self,
        record: &Item,
        mut event: DomainEvent,
    ) -> Result<Option<DomainEvent>, StoreError> {
        let (Some(pk), Some(sk)) = (record.str("upsert_pk"), record.str("upsert_sk")) else {
            return Ok(Some(event));
        };
        let item = self.table.get(&ItemKey::new(pk, sk)).await?;
        let Some(item) = item.filter(|i| i.str(UPSERT_EVENT_ATTR) == Some(event.id.as_str()))
        else {
            return Ok(None);
        };
        set_version(&mut event, item.version)?;
        Ok(Some(event))
    }
}

/// The schedule that relays one outbox: every service that publishes runs
/// one (`<service>-outbox`, every minute), sending the events whose inline
/// publish failed.
#[derive(Debug, Clone)]
pub struct OutboxRelay(pub Outbox);

#[async_trait]
impl crate::schedule::ScheduledHandler for OutboxRelay {
    async fn run(
        &self,
        event: crate::schedule::ScheduledEvent,
    ) -> anyhow::Result<serde_json::Value> {
        tracing::debug!(schedule = %event.schedule, "outbox relay triggered");
        let report = self.0.relay(RELAY_MIN_AGE).await?;
        Ok(serde_json::to_value(report)?)
    }
}
