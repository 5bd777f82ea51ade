//! The outbox of a local table: its writes and the events they cause commit
//! in one SQLite transaction, because the queues the bus routes to live in
//! the same database. No outbox record is written and nothing is left for
//! the relay.

use async_trait::async_trait;

use super::bus::{deliver, envelopes};
use super::table::{apply_writes, upsert};
use super::{Fail, LocalBackend};
use crate::events::DomainEvent;
use crate::outbox::{AtomicOutbox, set_version};
use crate::table::{Item, StoreError, Write, validate_item, validate_transaction};

/// Writes to table `tbl` with their events delivered from bus `bus`.
#[derive(Debug, Clone)]
pub struct SqliteOutbox {
    backend: LocalBackend,
    tbl: String,
    bus: String,
}

impl SqliteOutbox {
    pub(super) fn new(backend: LocalBackend, tbl: &str, bus: &str) -> Self {
        Self {
            backend,
            tbl: tbl.to_owned(),
            bus: bus.to_owned(),
        }
    }

    fn now(&self) -> i64 {
        self.backend.now().unix_timestamp()
    }
}

fn invalid(e: impl std::fmt::Display) -> StoreError {
    StoreError::Invalid(e.to_string())
}

#[async_trait]
impl AtomicOutbox for SqliteOutbox {
    #[tracing::instrument(skip(self, writes, events), fields(table = %self.tbl, writes = writes.len(), events = events.len()))]
    async fn commit(&self, writes: Vec<Write>, events: Vec<DomainEvent>) -> Result<(), StoreError> {
        validate_transaction(&writes)?;
        let bodies = envelopes(&events).map_err(invalid)?;
        let (tbl, bus, now) = (self.tbl.clone(), self.bus.clone(), self.now());
        self.backend
            .write("commit writes and events", move |tx| {
                apply_writes(tx, &tbl, &writes, now)?;
                deliver(tx, &bus, &bodies)
            })
            .await
    }

    #[tracing::instrument(skip(self, item, event), fields(table = %self.tbl))]
    async fn upsert(&self, item: Item, mut event: DomainEvent) -> Result<u64, StoreError> {
        validate_item(&item)?;
        // The envelope is checked with the widest version before the write.
        set_version(&mut event, u64::MAX)?;
        envelopes(std::slice::from_ref(&event)).map_err(invalid)?;
        let (tbl, bus, now) = (self.tbl.clone(), self.bus.clone(), self.now());
        self.backend
            .write("upsert and publish", move |tx| {
                let version = upsert(tx, &tbl, item, now)?;
                set_version(&mut event, version).map_err(Fail::Port)?;
                let bodies =
                    envelopes(std::slice::from_ref(&event)).map_err(|e| Fail::Port(invalid(e)))?;
                deliver(tx, &bus, &bodies)?;
                Ok(version)
            })
            .await
    }
}
