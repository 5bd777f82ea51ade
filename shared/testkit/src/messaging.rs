//! Conformance bodies for messaging above the raw ports: the event bus and
//! its routes, the outbox, and the worker shape (partial batch failures,
//! dead-lettering, redrive, de-duplication). Run once per backend by
//! [`crate::conformance_suite!`], so a sample worker path is proven on both.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use async_trait::async_trait;
use aws_lambda_events::event::sqs::SqsMessage;
use constellation_platform::inbox::Inbox;
use constellation_platform::observe::MetricsSink;
use constellation_platform::outbox::Outbox;
use constellation_platform::runner::to_sqs_event;
use constellation_platform::table::{Condition, Item, ItemKey, Query, Write};
use constellation_platform::worker::{EventHandler, Events, RecordError, RecordHandler, Worker};
use constellation_platform::{Clock, DomainEvent, Table};
use serde_json::json;

use crate::conformance::receive_until;
use crate::fixtures::{FX_ROUTED_EVENT, FX_UNROUTED_EVENT, Fixture};

fn fx_event(event_type: &str, n: u32, fx: &Fixture) -> anyhow::Result<DomainEvent> {
    Ok(DomainEvent::new(
        event_type,
        "org-fx",
        fx.clock.now(),
        json!({ "n": n }),
    )?)
}

/// Routed events reach the subscribed queue (more than one `PutEvents`
/// batch of them), in the bus's envelope; unrouted ones are dropped.
pub async fn bus_routes_events_to_subscribed_queues(fx: &Fixture) -> anyhow::Result<()> {
    let routed: Vec<DomainEvent> = (0..12)
        .map(|n| fx_event(FX_ROUTED_EVENT, n, fx))
        .collect::<anyhow::Result<_>>()?;
    let mut all = routed.clone();
    all.push(fx_event(FX_UNROUTED_EVENT, 99, fx)?);
    fx.bus.publish(&all).await?;

    // Deleted as they come, so the 1 s visibility timeout never redelivers.
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while received.len() < 12 && tokio::time::Instant::now() < deadline {
        for m in fx.receiver.receive(10, Duration::from_millis(500)).await? {
            fx.receiver.delete(&m.receipt_handle).await?;
            let envelope: serde_json::Value = serde_json::from_str(&m.body)?;
            ensure!(
                envelope["detail-type"] == FX_ROUTED_EVENT && envelope["source"] == "constellation",
                "not EventBridge's envelope: {envelope}"
            );
            received.push(DomainEvent::from_queue_body(&m.body)?);
        }
    }
    let stray = fx.receiver.receive(10, Duration::from_millis(500)).await?;
    ensure!(
        stray.is_empty(),
        "more than the routed events arrived: {stray:?}"
    );
    received.sort_by_key(|e| e.data["n"].as_u64());
    ensure!(
        received == routed,
        "received {} events, not the 12 routed ones as published: {received:?}",
        received.len()
    );
    ensure!(
        fx.bus
            .publish(&[DomainEvent {
                event_type: "Not A Type".into(),
                ..routed[0].clone()
            }])
            .await
            .is_err(),
        "a malformed event type was published"
    );
    Ok(())
}

/// The outbox commits the write and its event together, publishes the
/// event, and leaves nothing to relay; a failed condition writes neither.
pub async fn outbox_commits_events_with_the_write(fx: &Fixture) -> anyhow::Result<()> {
    let outbox = &fx.outbox;
    let key = ItemKey::new("thing", "1");
    let event = fx_event(FX_ROUTED_EVENT, 1, fx)?;
    outbox
        .commit(
            vec![Write::Put {
                item: Item::new(key.clone()).with("v", 1),
                condition: Condition::NotExists,
            }],
            std::slice::from_ref(&event),
        )
        .await?;
    ensure!(fx.table.get(&key).await?.is_some(), "the write is missing");
    let got = receive_until(fx.receiver.as_ref(), 1, Duration::from_secs(5)).await?;
    ensure!(got.len() == 1, "published {} events, not 1", got.len());
    ensure!(DomainEvent::from_queue_body(&got[0].body)? == event);
    fx.receiver.delete(&got[0].receipt_handle).await?;
    fx.clock.advance(time::Duration::minutes(5));
    ensure!(
        outbox.relay(time::Duration::ZERO).await?.sent == 0,
        "a published event stayed in the outbox"
    );

    let refused = outbox
        .commit(
            vec![Write::Put {
                item: Item::new(key.clone()).with("v", 2),
                condition: Condition::NotExists,
            }],
            &[fx_event(FX_ROUTED_EVENT, 2, fx)?],
        )
        .await;
    ensure!(
        matches!(
            refused,
            Err(constellation_platform::StoreError::ConditionFailed { index: Some(0) })
        ),
        "{refused:?}"
    );
    fx.clock.advance(time::Duration::minutes(5));
    ensure!(
        outbox.relay(time::Duration::ZERO).await?.sent == 0,
        "a refused write left its event behind"
    );
    let stray = fx.receiver.receive(10, Duration::from_millis(500)).await?;
    ensure!(stray.is_empty(), "a refused write published {stray:?}");

    // An event the bus would refuse (over EventBridge's 256 KiB) is refused
    // before anything commits: stored, it could never be published.
    let mut huge = fx_event(FX_ROUTED_EVENT, 3, fx)?;
    huge.data = json!({ "blob": "x".repeat(300 * 1024) });
    let other = ItemKey::new("thing", "huge");
    let refused = outbox
        .commit(
            vec![Write::Put {
                item: Item::new(other.clone()).with("v", 3),
                condition: Condition::NotExists,
            }],
            &[huge],
        )
        .await;
    ensure!(
        matches!(refused, Err(constellation_platform::StoreError::Invalid(_))),
        "{refused:?}"
    );
    ensure!(
        fx.table.get(&other).await?.is_none(),
        "the write of a refused event committed"
    );
    Ok(())
}

/// Work's trace goes with what it sends: an event committed within a trace
/// reaches its queue carrying the header, one with a header of its own
/// keeps it, and (in AWS, where SQS has the attribute) a message sent
/// directly is received with it as `AWSTraceHeader`.
pub async fn outbox_and_queues_carry_the_work_trace(fx: &Fixture) -> anyhow::Result<()> {
    use constellation_platform::trace;
    let header: Arc<str> =
        "Root=1-6750a1b2-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1".into();
    let event = fx_event(FX_ROUTED_EVENT, 1, fx)?;
    ensure!(event.trace.is_none());
    let mut own = fx_event(FX_ROUTED_EVENT, 2, fx)?;
    own.trace = Some("Root=1-6750a1b2-fedcba9876543210fedcba98".to_owned());
    trace::scope(
        header.clone(),
        fx.outbox.commit(
            vec![Write::Put {
                item: Item::new(ItemKey::new("traced", "1")).with("v", 1),
                condition: Condition::NotExists,
            }],
            &[event.clone(), own.clone()],
        ),
    )
    .await?;
    let got = receive_until(fx.receiver.as_ref(), 2, Duration::from_secs(5)).await?;
    ensure!(got.len() == 2, "published {} events, not 2", got.len());
    for m in &got {
        let received = DomainEvent::from_queue_body(&m.body)?;
        let want = if received.id == event.id {
            Some(header.to_string())
        } else {
            own.trace.clone()
        };
        ensure!(received.trace == want, "{received:?}");
        fx.receiver.delete(&m.receipt_handle).await?;
    }

    trace::scope(header.clone(), fx.queue.send_batch(&["traced".into()])).await?;
    let got = receive_until(fx.receiver.as_ref(), 1, Duration::from_secs(5)).await?;
    ensure!(got.len() == 1, "received {} messages, not 1", got.len());
    let expected = (fx.backend == "aws").then(|| header.to_string());
    ensure!(
        got[0].trace_header == expected,
        "{}: trace header {:?}",
        fx.backend,
        got[0].trace_header
    );
    fx.receiver.delete(&got[0].receipt_handle).await?;
    Ok(())
}

/// Concurrent upserts through the outbox all succeed, and each publishes one
/// event carrying the version that write got.
pub async fn outbox_upsert_publishes_the_version_it_got(fx: &Fixture) -> anyhow::Result<()> {
    let racers = 20_u64;
    let results = futures::future::join_all((0..racers).map(|n| {
        let item = Item::new(ItemKey::new("thing", "hot")).with("writer", n);
        let event = fx_event(FX_ROUTED_EVENT, 0, fx);
        async move {
            fx.outbox
                .upsert(item, event?)
                .await
                .map_err(anyhow::Error::from)
        }
    }))
    .await;
    let mut versions = BTreeSet::new();
    for r in results {
        versions.insert(r.context("a concurrent upsert failed")?);
    }
    let expected: BTreeSet<u64> = (1..=racers).collect();
    ensure!(versions == expected, "versions {versions:?}");
    let mut published = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while published.len() < racers as usize && tokio::time::Instant::now() < deadline {
        for m in fx.receiver.receive(10, Duration::from_millis(500)).await? {
            fx.receiver.delete(&m.receipt_handle).await?;
            let event = DomainEvent::from_queue_body(&m.body)?;
            let version = event.data["version"]
                .as_u64()
                .context("event without version")?;
            ensure!(
                published.insert(version),
                "version {version} published twice"
            );
        }
    }
    ensure!(
        published == expected,
        "published versions {published:?}, not 1..={racers}"
    );
    fx.clock.advance(time::Duration::minutes(5));
    let report = fx.outbox.relay(time::Duration::ZERO).await?;
    ensure!(
        report.sent == 0,
        "published upserts stayed in the outbox: {report:?}"
    );
    Ok(())
}

/// A bus that is down.
#[derive(Debug)]
struct DownBus;

#[async_trait]
impl constellation_platform::EventBus for DownBus {
    async fn publish(
        &self,
        _: &[DomainEvent],
    ) -> Result<(), constellation_platform::events::EventsError> {
        Err(constellation_platform::events::EventsError::Unavailable(
            anyhow::anyhow!("bus down"),
        ))
    }
}

/// With records and a relay: upserts whose publish failed are relayed with
/// the version their item got, unless a later write replaced the item, in
/// which case the later write's event stands for them.
pub async fn outbox_relay_resolves_or_drops_stranded_upserts(fx: &Fixture) -> anyhow::Result<()> {
    let down = Outbox::new(fx.table.clone(), Arc::new(DownBus), fx.clock.clone());
    let (hot, cold) = (ItemKey::new("thing", "hot"), ItemKey::new("thing", "cold"));
    for (key, n) in [(&hot, 1), (&hot, 2), (&cold, 3)] {
        let item = Item::new(key.clone()).with("n", n);
        down.upsert(item, fx_event(FX_ROUTED_EVENT, n, fx)?).await?;
    }
    fx.clock.advance(time::Duration::minutes(5));
    let relay = Outbox::new(fx.table.clone(), fx.bus.clone(), fx.clock.clone());
    let report = relay.relay(time::Duration::ZERO).await?;
    ensure!(
        (report.sent, report.superseded, report.refused) == (2, 1, 0),
        "relay report {report:?}"
    );
    let got = receive_until(fx.receiver.as_ref(), 2, Duration::from_secs(8)).await?;
    let mut published: Vec<(u64, u64)> = got
        .iter()
        .map(|m| {
            let event = DomainEvent::from_queue_body(&m.body)?;
            Ok((
                event.data["n"].as_u64().context("n")?,
                event.data["version"].as_u64().context("version")?,
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    published.sort_unstable();
    ensure!(
        published == [(2, 2), (3, 1)],
        "relayed (n, version) pairs {published:?}"
    );
    ensure!(
        relay.relay(time::Duration::ZERO).await?.sent == 0,
        "the relay left records behind"
    );
    Ok(())
}

/// With records stranded in (very likely) every shard: one relay run,
/// reading 3 shards at a time, publishes each of them once and leaves none
/// behind.
pub async fn outbox_relay_sends_the_records_of_every_shard(fx: &Fixture) -> anyhow::Result<()> {
    // 64 random shard picks leave one of the 8 shards empty once in ~700 runs.
    const RECORDS: u32 = 64;
    let down = Outbox::new(fx.table.clone(), Arc::new(DownBus), fx.clock.clone());
    for n in 0..RECORDS {
        let item =
            Item::new(ItemKey::new("thing", format!("stranded-{n}"))).with("n", u64::from(n));
        down.upsert(item, fx_event(FX_ROUTED_EVENT, n, fx)?).await?;
    }
    fx.clock.advance(time::Duration::minutes(5));
    let relay =
        Outbox::new(fx.table.clone(), fx.bus.clone(), fx.clock.clone()).with_relay_concurrency(3);
    let report = relay.relay(time::Duration::ZERO).await?;
    ensure!(
        (report.sent, report.superseded, report.refused) == (RECORDS as usize, 0, 0),
        "relay report {report:?}"
    );
    let mut seen = std::collections::BTreeSet::new();
    // Generous: the loop ends as soon as every record is in, and moto on a
    // loaded 2-core machine delivered 64 messages in over 10 s once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < RECORDS as usize && tokio::time::Instant::now() < deadline {
        for m in fx.receiver.receive(10, Duration::from_millis(500)).await? {
            fx.receiver.delete(&m.receipt_handle).await?;
            let event = DomainEvent::from_queue_body(&m.body)?;
            let n = event.data["n"].as_u64().context("n")?;
            ensure!(seen.insert(n), "record {n} published twice");
        }
    }
    ensure!(
        seen == (0..u64::from(RECORDS)).collect(),
        "published {} of {RECORDS} records",
        seen.len()
    );
    ensure!(
        relay.relay(time::Duration::ZERO).await?.sent == 0,
        "the relay left records behind"
    );
    Ok(())
}

/// Fails records by their body: `retry` retryably, `poison` permanently.
#[derive(Debug, Default)]
struct ByBody {
    seen: AtomicUsize,
}

#[async_trait]
impl RecordHandler for ByBody {
    async fn handle(&self, record: &SqsMessage) -> Result<(), RecordError> {
        self.seen.fetch_add(1, Ordering::SeqCst);
        match record.body.as_deref() {
            Some("retry") => Err(RecordError::retryable(anyhow::anyhow!("dependency down"))),
            Some("poison") => Err(RecordError::permanent(anyhow::anyhow!("unparseable"))),
            _ => Ok(()),
        }
    }
}

/// A batch with one retryable failure reports exactly that record; a
/// permanent failure is moved to the dead-letter queue at once and counted.
pub async fn worker_reports_exactly_the_failed_records(fx: &Fixture) -> anyhow::Result<()> {
    let bodies = ["ok-1", "retry", "ok-2", "poison"].map(str::to_owned);
    fx.queue.send_batch(&bodies).await?;
    let got = receive_until(fx.receiver.as_ref(), 4, Duration::from_secs(8)).await?;
    ensure!(got.len() == 4, "received {} of 4", got.len());

    let handler = Arc::new(ByBody::default());
    let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = lines.clone();
    let worker = Worker::new(
        "fx-worker",
        handler.clone(),
        fx.dead_letter_queue.clone(),
        MetricsSink::from_fn(move |l| sink.lock().map(|mut v| v.push(l)).unwrap_or(())),
    );
    let response = worker
        .handle_batch(to_sqs_event(fx.receiver.source_arn(), &got))
        .await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    let retry_id = got
        .iter()
        .find(|m| m.body == "retry")
        .map(|m| m.message_id.as_str())
        .context("retry message")?;
    ensure!(
        failed == [retry_id],
        "reported {failed:?}, not [{retry_id}]"
    );
    ensure!(handler.seen.load(Ordering::SeqCst) == 4);

    let dead = receive_until(fx.dead_letters.as_ref(), 1, Duration::from_secs(5)).await?;
    let dead: Vec<&str> = dead.iter().map(|m| m.body.as_str()).collect();
    ensure!(dead == ["poison"], "dead-letter queue holds {dead:?}");
    let metrics = lines.lock().map(|v| v.clone()).unwrap_or_default();
    ensure!(
        metrics.len() == 1,
        "one metrics record per batch: {metrics:?}"
    );
    let record: serde_json::Value = serde_json::from_str(&metrics[0])?;
    ensure!(
        (
            record["Worker"].as_str(),
            record["RecordsProcessed"].as_f64(),
            record["RetryableFailures"].as_f64(),
            record["PermanentFailures"].as_f64()
        ) == (Some("fx-worker"), Some(2.0), Some(1.0), Some(1.0)),
        "metrics: {record}"
    );
    Ok(())
}

/// A message that keeps failing retryably reaches the dead-letter queue
/// after the max receives; `redrive` brings it back, fresh, and then it is
/// processed.
pub async fn worker_poison_message_dead_letters_and_redrive_brings_it_back(
    fx: &Fixture,
) -> anyhow::Result<()> {
    fx.queue.send_batch(&["retry".to_owned()]).await?;
    let handler = Arc::new(ByBody::default());
    let worker = Worker::new(
        "fx-worker",
        handler.clone(),
        fx.dead_letter_queue.clone(),
        MetricsSink::discard(),
    );
    // max_receives is 2: two failed deliveries, then the next receive moves it.
    for n in 1..=2 {
        let got = receive_until(fx.receiver.as_ref(), 1, Duration::from_secs(5)).await?;
        ensure!(
            got.len() == 1 && got[0].receive_count == n,
            "delivery {n}: {got:?}"
        );
        let response = worker
            .handle_batch(to_sqs_event(fx.receiver.source_arn(), &got))
            .await;
        ensure!(response.batch_item_failures.len() == 1);
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = fx.receiver.receive(10, Duration::from_millis(500)).await?;
    ensure!(after.is_empty(), "delivered past max receives: {after:?}");

    let peeked = fx.admin.peek(&fx.dead_letter_name, 10).await?;
    ensure!(
        peeked.iter().map(|m| m.body.as_str()).collect::<Vec<_>>() == ["retry"],
        "peek of the dead-letter queue: {peeked:?}"
    );
    let listed = fx.admin.list().await?;
    ensure!(
        listed.iter().any(|q| q.name == fx.dead_letter_name),
        "list does not show {}: {listed:?}",
        fx.dead_letter_name
    );
    let moved = fx
        .admin
        .redrive(&fx.dead_letter_name, &fx.queue_name, 100)
        .await?;
    ensure!(moved == 1, "redrove {moved}, not 1");
    let back = receive_until(fx.receiver.as_ref(), 1, Duration::from_secs(5)).await?;
    ensure!(
        back.len() == 1 && back[0].body == "retry" && back[0].receive_count == 1,
        "after redrive: {back:?}"
    );
    fx.receiver.delete(&back[0].receipt_handle).await?;
    let left = fx
        .dead_letters
        .receive(10, Duration::from_millis(500))
        .await?;
    ensure!(left.is_empty(), "redrive left {left:?} behind");
    Ok(())
}

/// Applies each event once: the effect and the inbox claim commit together.
#[derive(Debug)]
struct ApplyOnce {
    table: Arc<dyn Table>,
    inbox: Inbox,
    applied: AtomicUsize,
    duplicates: AtomicUsize,
}

#[async_trait]
impl EventHandler for ApplyOnce {
    async fn handle(&self, event: DomainEvent) -> Result<(), RecordError> {
        let effect = Write::Put {
            item: Item::new(ItemKey::new("EFFECT", &event.id)).with("n", event.data["n"].clone()),
            condition: Condition::None,
        };
        match self
            .table
            .transact(&[self.inbox.claim(&event.id), effect])
            .await
        {
            Ok(()) => {
                self.applied.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
            Err(e) if Inbox::is_duplicate(&e, 0) => {
                self.duplicates.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
            Err(e) if e.is_retryable() => Err(RecordError::retryable(e)),
            Err(e) => Err(RecordError::permanent(e)),
        }
    }
}

/// The same event delivered twice (at-least-once delivery) is applied once.
pub async fn worker_duplicate_delivery_applies_once(fx: &Fixture) -> anyhow::Result<()> {
    let event = fx_event(FX_ROUTED_EVENT, 7, fx)?;
    fx.bus.publish(std::slice::from_ref(&event)).await?;
    // A redelivery: the same event again, as SQS may hand it out twice.
    fx.queue
        .send_batch(&[serde_json::to_string(&event)?])
        .await?;
    let handler = Arc::new(ApplyOnce {
        table: fx.table.clone(),
        inbox: Inbox::new("fx-consumer", fx.clock.clone()),
        applied: AtomicUsize::new(0),
        duplicates: AtomicUsize::new(0),
    });
    let worker = Worker::new(
        "fx-consumer",
        Arc::new(Events(handler.clone())),
        fx.dead_letter_queue.clone(),
        MetricsSink::discard(),
    );
    let mut delivered = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while delivered < 2 && tokio::time::Instant::now() < deadline {
        let got = fx.receiver.receive(1, Duration::from_millis(500)).await?;
        if got.is_empty() {
            continue;
        }
        let response = worker
            .handle_batch(to_sqs_event(fx.receiver.source_arn(), &got))
            .await;
        ensure!(response.batch_item_failures.is_empty(), "{response:?}");
        for m in &got {
            fx.receiver.delete(&m.receipt_handle).await?;
        }
        delivered += got.len();
    }
    ensure!(delivered == 2, "delivered {delivered} of 2");
    ensure!(
        (
            handler.applied.load(Ordering::SeqCst),
            handler.duplicates.load(Ordering::SeqCst)
        ) == (1, 1),
        "applied/duplicates: {}/{}",
        handler.applied.load(Ordering::SeqCst),
        handler.duplicates.load(Ordering::SeqCst)
    );
    let effects = fx.table.query(&Query::partition("EFFECT")).await?;
    let ids: BTreeSet<_> = effects.items.iter().map(|i| i.key.sk.clone()).collect();
    ensure!(
        ids == BTreeSet::from([event.id.clone()]),
        "effects: {ids:?}"
    );
    Ok(())
}
