//! The Events port over SQLite: the routes of a bus live in the database
//! (`event_routes`), as EventBridge rules live in the account, so every
//! process sharing a data directory (`serve` and `cargo lambda watch`) routes
//! alike. Publishing writes EventBridge's SQS-target envelope into each
//! matching queue, all events of one call in one transaction.

use async_trait::async_trait;
use rusqlite::{Connection, params};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::queue::{insert_messages, validate_body};
use super::{Fail, LocalBackend};
use crate::events::{
    BusEnvelope, DomainEvent, EVENT_SOURCE, EventBus, EventsError, Route, validate_type,
};

/// A local event bus.
#[derive(Debug, Clone)]
pub struct SqliteBus {
    backend: LocalBackend,
    name: String,
}

impl SqliteBus {
    pub(super) fn new(backend: LocalBackend, name: &str) -> Self {
        Self {
            backend,
            name: name.to_owned(),
        }
    }
}

/// The envelope EventBridge would hand an SQS target for `event`.
pub(super) fn envelope(event: &DomainEvent, now: OffsetDateTime) -> BusEnvelope {
    BusEnvelope {
        version: "0".to_owned(),
        id: uuid::Uuid::new_v4().to_string(),
        detail_type: event.event_type.clone(),
        source: EVENT_SOURCE.to_owned(),
        account: "000000000000".to_owned(),
        time: now.format(&Rfc3339).unwrap_or_default(),
        region: "local".to_owned(),
        resources: Vec::new(),
        detail: event.clone(),
    }
}

/// Each event's type and the body its queues receive, checked as
/// EventBridge and SQS would check them.
pub(super) fn envelopes(events: &[DomainEvent]) -> Result<Vec<(String, String)>, EventsError> {
    let now = OffsetDateTime::now_utc();
    let mut bodies = Vec::with_capacity(events.len());
    for event in events {
        validate_type(&event.event_type)?;
        event.to_detail()?;
        let body = serde_json::to_string(&envelope(event, now))
            .map_err(|e| EventsError::Invalid(format!("envelope does not serialize: {e}")))?;
        validate_body(&body).map_err(|e| EventsError::Invalid(e.to_string()))?;
        bodies.push((event.event_type.clone(), body));
    }
    Ok(bodies)
}

/// Appends each body to every queue routed from bus `bus` for its type,
/// inside the caller's transaction.
pub(super) fn deliver<E>(
    tx: &Connection,
    bus: &str,
    bodies: &[(String, String)],
) -> Result<(), Fail<E>> {
    let mut routes =
        tx.prepare_cached("SELECT queue FROM event_routes WHERE bus = ? AND event_type = ?")?;
    for (event_type, body) in bodies {
        let queues = routes
            .query_map(params![bus, event_type], |row| row.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for queue in queues {
            insert_messages::<E>(tx, &queue, &[body.as_str()])?;
        }
    }
    Ok(())
}

#[async_trait]
impl EventBus for SqliteBus {
    #[tracing::instrument(skip(self, events), fields(bus = %self.name, count = events.len()))]
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), EventsError> {
        let bodies = envelopes(events)?;
        let bus = self.name.clone();
        self.backend
            .write("publish events", move |tx| deliver(tx, &bus, &bodies))
            .await
    }
}

impl LocalBackend {
    /// Replaces the routes of bus `bus` with `routes` (what deploying the
    /// template's rules does in AWS). `serve` calls it at start with the
    /// routes of every service.
    pub async fn set_routes(&self, bus: &str, routes: &[Route]) -> Result<(), EventsError> {
        for route in routes {
            validate_type(&route.event_type)?;
        }
        let (bus, routes) = (bus.to_owned(), routes.to_vec());
        self.write("set event routes", move |tx| {
            tx.prepare_cached("DELETE FROM event_routes WHERE bus = ?")?
                .execute(params![bus])?;
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO event_routes (bus, event_type, queue) VALUES (?, ?, ?)",
            )?;
            for r in &routes {
                insert.execute(params![bus, r.event_type, r.queue])?;
            }
            Ok::<_, Fail<EventsError>>(())
        })
        .await
    }
}
