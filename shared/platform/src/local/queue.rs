//! The Queue port and its receiving side over one SQLite `messages` table,
//! shaped like SQS: a received message is hidden for the visibility timeout
//! under a fresh receipt handle, comes back if not deleted, and after
//! `max_receives` deliveries the next receive moves it to the dead-letter
//! queue (as SQS's redrive policy does).
//!
//! Visibility is wall-clock time in milliseconds, not the injected clock:
//! redelivery is something the runner waits for, not something tests jump.

use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, params};
use time::OffsetDateTime;

use super::{Fail, LocalBackend};
use crate::queue::{
    MAX_MESSAGE_BYTES, Queue, QueueAdmin, QueueError, QueueReceiver, QueueSpec, QueueStats,
    ReceivedMessage,
};

/// How often an empty long poll looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

fn now_millis() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Checks a body against what SQS accepts.
pub(super) fn validate_body(body: &str) -> Result<(), QueueError> {
    if body.is_empty() || body.len() > MAX_MESSAGE_BYTES {
        return Err(QueueError::Invalid(format!(
            "message bodies must be 1 to {MAX_MESSAGE_BYTES} bytes, not {}",
            body.len()
        )));
    }
    Ok(())
}

/// Appends `bodies` to queue `queue` inside the caller's write transaction,
/// visible at once.
pub(super) fn insert_messages<E>(
    tx: &Connection,
    queue: &str,
    bodies: &[&str],
) -> Result<(), Fail<E>> {
    let now = now_millis();
    let mut insert = tx.prepare_cached(
        "INSERT INTO messages (id, queue, body, sent_at, visible_at) VALUES (?, ?, ?, ?, ?)",
    )?;
    for body in bodies {
        insert.execute(params![
            uuid::Uuid::new_v4().to_string(),
            queue,
            body,
            now,
            now
        ])?;
    }
    Ok(())
}

/// The sending side of a local queue.
#[derive(Debug, Clone)]
pub struct SqliteQueue {
    backend: LocalBackend,
    name: String,
}

impl SqliteQueue {
    pub(super) fn new(backend: LocalBackend, name: &str) -> Self {
        Self {
            backend,
            name: name.to_owned(),
        }
    }
}

#[async_trait]
impl Queue for SqliteQueue {
    #[tracing::instrument(skip(self, bodies), fields(queue = %self.name, count = bodies.len()))]
    async fn send_batch(&self, bodies: &[String]) -> Result<(), QueueError> {
        for body in bodies {
            validate_body(body)?;
        }
        let (queue, bodies) = (self.name.clone(), bodies.to_vec());
        self.backend
            .write("send messages", move |tx| {
                let bodies: Vec<&str> = bodies.iter().map(String::as_str).collect();
                insert_messages(tx, &queue, &bodies)
            })
            .await
    }
}

/// The statement selecting up to `?` messages of a queue (`?`: the queue,
/// now, the sequence number to start after, the limit).
const RECEIVE_SQL: &str = "SELECT seq, id, body, sent_at, receive_count FROM messages \
     WHERE queue = ? AND visible_at <= ? AND seq > ? ORDER BY seq LIMIT ?";

/// The consuming side of a local queue, used by the runner and tests.
#[derive(Debug, Clone)]
pub struct SqliteReceiver {
    backend: LocalBackend,
    spec: QueueSpec,
    arn: String,
}

impl SqliteReceiver {
    pub(super) fn new(backend: LocalBackend, spec: QueueSpec) -> Self {
        let arn = format!("arn:constellation:sqs:local:000000000000:{}", spec.name);
        Self { backend, spec, arn }
    }

    /// One receive attempt: delivers what is visible now, redriving as it goes.
    async fn receive_now(&self, max: u32) -> Result<Vec<ReceivedMessage>, QueueError> {
        let spec = self.spec.clone();
        self.backend
            .write("receive messages", move |tx| {
                    let now = now_millis();
                    let hidden_until = now.saturating_add(millis(spec.visibility_timeout));
                    let mut select = tx.prepare_cached(RECEIVE_SQL)?;
                    let mut redrive = tx.prepare_cached(
                        "UPDATE messages SET queue = ?, receive_count = 0, visible_at = ?, receipt = NULL \
                         WHERE seq = ?",
                    )?;
                    let mut deliver = tx.prepare_cached(
                        "UPDATE messages SET receive_count = ?, visible_at = ?, receipt = ? WHERE seq = ?",
                    )?;
                    let mut delivered = Vec::new();
                    let mut after = 0_i64;
                    // Repeat while redriven messages left room for more.
                    while delivered.len() < max as usize {
                        let want = max as usize - delivered.len();
                        let rows = select
                            .query_map(params![spec.name, now, after, want as i64], |row| {
                                Ok((
                                    row.get::<_, i64>(0)?,
                                    row.get::<_, String>(1)?,
                                    row.get::<_, String>(2)?,
                                    row.get::<_, i64>(3)?,
                                    row.get::<_, i64>(4)?,
                                ))
                            })?
                            .collect::<rusqlite::Result<Vec<_>>>()?;
                        if rows.is_empty() {
                            break;
                        }
                        for (seq, id, body, sent_at, count) in rows {
                            after = seq;
                            let count = u32::try_from(count).unwrap_or(u32::MAX);
                            match &spec.dead_letter {
                                Some(dlq) if count >= spec.max_receives => {
                                    redrive.execute(params![dlq, now, seq])?;
                                }
                                _ => {
                                    let receipt = uuid::Uuid::new_v4().to_string();
                                    let count = count.saturating_add(1);
                                    deliver.execute(params![count, hidden_until, receipt, seq])?;
                                    delivered.push(ReceivedMessage {
                                        message_id: id,
                                        receipt_handle: receipt,
                                        body,
                                        receive_count: count,
                                        sent_at: OffsetDateTime::from_unix_timestamp_nanos(
                                            i128::from(sent_at) * 1_000_000,
                                        )
                                        .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                                        trace_header: None,
                                    });
                                }
                            }
                        }
                    }
                    Ok(delivered)
                })
            .await
    }
}

#[async_trait]
impl QueueReceiver for SqliteReceiver {
    fn source_arn(&self) -> &str {
        &self.arn
    }

    #[tracing::instrument(skip(self), fields(queue = %self.spec.name))]
    async fn receive(&self, max: u32, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        if !(1..=10).contains(&max) {
            return Err(QueueError::Invalid(format!(
                "receive takes 1 to 10 messages, not {max}"
            )));
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let messages = self.receive_now(max).await?;
            let now = tokio::time::Instant::now();
            if !messages.is_empty() || now >= deadline {
                return Ok(messages);
            }
            tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
        }
    }

    #[tracing::instrument(skip(self, receipt_handle), fields(queue = %self.spec.name))]
    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        let (queue, receipt) = (self.spec.name.clone(), receipt_handle.to_owned());
        self.backend
            .write("delete message", move |tx| {
                // A stale receipt (the message was delivered again since) matches nothing.
                tx.prepare_cached("DELETE FROM messages WHERE queue = ? AND receipt = ?")?
                    .execute(params![queue, receipt])?;
                Ok(())
            })
            .await
    }
}

#[async_trait]
impl QueueAdmin for LocalBackend {
    async fn list(&self) -> Result<Vec<QueueStats>, QueueError> {
        self.read("list queues", move |conn| {
            let now = now_millis();
            let mut select = conn.prepare_cached(
                "SELECT queue, SUM(visible_at <= ?), SUM(visible_at > ?), MIN(sent_at) FROM messages \
                 GROUP BY queue ORDER BY queue",
            )?;
            let rows = select
                .query_map(params![now, now], |row| {
                    Ok(QueueStats {
                        name: row.get(0)?,
                        visible: u64::try_from(row.get::<_, i64>(1)?).unwrap_or_default(),
                        in_flight: u64::try_from(row.get::<_, i64>(2)?).unwrap_or_default(),
                        oldest_age_secs: Some(
                            u64::try_from(now - row.get::<_, i64>(3)?).unwrap_or_default() / 1000,
                        ),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn stats(&self, names: &[String]) -> Vec<Result<QueueStats, QueueError>> {
        // One grouped read for all of them.
        match self.list().await {
            Ok(all) => names
                .iter()
                .map(|name| {
                    Ok(all
                        .iter()
                        .find(|s| &s.name == name)
                        .cloned()
                        .unwrap_or(QueueStats {
                            name: name.clone(),
                            visible: 0,
                            in_flight: 0,
                            oldest_age_secs: Some(0),
                        }))
                })
                .collect(),
            Err(e) => {
                let reason = crate::observe::error_chain(&e);
                names
                    .iter()
                    .map(|_| Err(QueueError::Backend(anyhow::anyhow!(reason.clone()))))
                    .collect()
            }
        }
    }

    async fn peek(&self, name: &str, limit: u32) -> Result<Vec<ReceivedMessage>, QueueError> {
        LocalBackend::peek(self, name, limit).await
    }

    async fn redrive(&self, from: &str, to: &str, limit: u32) -> Result<u64, QueueError> {
        let (from, to) = (from.to_owned(), to.to_owned());
        self.write("redrive messages", move |tx| {
                // One statement: moved and removed together.
                let moved = tx
                    .prepare_cached(
                        "UPDATE messages SET queue = ?, receive_count = 0, visible_at = ?, receipt = NULL \
                         WHERE seq IN (SELECT seq FROM messages WHERE queue = ? ORDER BY seq LIMIT ?)",
                    )?
                    .execute(params![to, now_millis(), from, i64::from(limit)])?;
                Ok(moved as u64)
            })
        .await
    }
}

impl LocalBackend {
    /// Up to `limit` messages waiting in queue `name`, oldest first, without
    /// receiving them (no receive count, no visibility change): for operators
    /// inspecting a local queue.
    pub async fn peek(&self, name: &str, limit: u32) -> Result<Vec<ReceivedMessage>, QueueError> {
        let name = name.to_owned();
        self.read("peek messages", move |conn| {
            let mut select = conn.prepare_cached(
                "SELECT id, body, sent_at, receive_count FROM messages \
                 WHERE queue = ? ORDER BY seq LIMIT ?",
            )?;
            let rows = select
                .query_map(params![name, i64::from(limit)], |row| {
                    Ok(ReceivedMessage {
                        message_id: row.get(0)?,
                        receipt_handle: String::new(),
                        body: row.get(1)?,
                        sent_at: OffsetDateTime::from_unix_timestamp_nanos(
                            i128::from(row.get::<_, i64>(2)?) * 1_000_000,
                        )
                        .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                        receive_count: u32::try_from(row.get::<_, i64>(3)?).unwrap_or(u32::MAX),
                        trace_header: None,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::SystemClock;

    /// The receive statement runs again with new values and a new limit
    /// without SQLite preparing it again (see `connect`).
    #[test]
    fn the_receive_statement_is_prepared_once() {
        let dir = tempfile::tempdir().unwrap();
        drop(LocalBackend::open(dir.path(), Arc::new(SystemClock)).unwrap());
        let conn = crate::local::connect(&dir.path().join("constellation.db")).unwrap();
        let mut select = conn.prepare(RECEIVE_SQL).unwrap();
        for (queue, after, want) in [("a", 0_i64, 10_i64), ("b", 5, 3), ("c", 7, 1)] {
            let rows = select
                .query_map(params![queue, now_millis(), after, want], |_| Ok(()))
                .unwrap()
                .count();
            assert_eq!(rows, 0);
        }
        assert_eq!(
            select.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "SQLite prepared the receive statement again"
        );
    }

    #[tokio::test]
    async fn redelivers_after_the_timeout_then_dead_letters() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::open(dir.path(), Arc::new(SystemClock)).unwrap();
        let spec = QueueSpec::with_dlq("jobs", Duration::from_millis(300), 2);
        let dlq = QueueSpec {
            name: "jobs-dlq".into(),
            visibility_timeout: Duration::from_secs(30),
            max_receives: 1,
            dead_letter: None,
        };
        let (receiver, dead) = (backend.receiver(&spec), backend.receiver(&dlq));
        assert_eq!(
            receiver.source_arn(),
            "arn:constellation:sqs:local:000000000000:jobs"
        );
        backend
            .queue("jobs")
            .send_batch(&["poison".into()])
            .await
            .unwrap();

        let first = receiver.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(first.len(), 1);
        assert!(
            receiver
                .receive(10, Duration::ZERO)
                .await
                .unwrap()
                .is_empty(),
            "hidden while in flight"
        );
        let second = receiver.receive(10, Duration::from_secs(2)).await.unwrap();
        assert_eq!(
            (second[0].message_id.as_str(), second[0].receive_count),
            (first[0].message_id.as_str(), 2)
        );
        // The first delivery's receipt is stale now: deleting with it is a no-op.
        receiver.delete(&first[0].receipt_handle).await.unwrap();

        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            receiver
                .receive(10, Duration::ZERO)
                .await
                .unwrap()
                .is_empty(),
            "moved, not delivered"
        );
        let dead_letters = dead.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(dead_letters.len(), 1);
        assert_eq!(
            (
                dead_letters[0].message_id.as_str(),
                dead_letters[0].body.as_str(),
                dead_letters[0].receive_count
            ),
            (first[0].message_id.as_str(), "poison", 1)
        );
        dead.delete(&dead_letters[0].receipt_handle).await.unwrap();
        assert!(dead.receive(10, Duration::ZERO).await.unwrap().is_empty());
    }
}
