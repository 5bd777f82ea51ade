//! End-to-end smoke test of the AWS adapters against the emulator named by
//! `CONSTELLATION_TEST_AWS_ENDPOINT` (a moto server, started by `scripts/test`).
//!
//! The behaviour both backends share is tested by the conformance suite in
//! `constellation-testkit`; this checks the AWS-only parts: provisioning is
//! idempotent, the attribute layout and expressions are accepted by the wire
//! protocol, and each adapter round-trips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use constellation_platform::aws::AwsBackend;
use constellation_platform::{
    Add, BlobStore, Clock, Condition, Index, IndexKey, Item, ItemKey, ManualClock, Query, Queue,
    QueueReceiver, QueueSpec, SecretValue, Secrets, SortKey, StoreError, Table, Write,
};

const ENDPOINT_VAR: &str = "CONSTELLATION_TEST_AWS_ENDPOINT";

async fn fx_backend() -> AwsBackend {
    let endpoint = std::env::var(ENDPOINT_VAR).unwrap_or_else(|_| {
        panic!(
            "{ENDPOINT_VAR} is not set: this test needs a moto server \
             (run it through scripts/test, or start `moto_server -p PORT` and set \
             {ENDPOINT_VAR}=http://127.0.0.1:PORT)"
        )
    });
    let credentials =
        aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "smoke");
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(credentials)
        .endpoint_url(endpoint)
        .load()
        .await;
    AwsBackend::from_sdk_config(&config)
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

fn is_condition_failed<T>(r: &Result<T, StoreError>, index: Option<usize>) -> bool {
    matches!(r, Err(StoreError::ConditionFailed { index: i }) if *i == index)
}

#[tokio::test]
async fn table_round_trips_conditions_ttl_add_and_transactions() {
    let backend = fx_backend().await;
    let name = unique("smoke");
    backend.ensure_table(&name).await.unwrap();
    backend
        .ensure_table(&name)
        .await
        .expect("ensure_table is idempotent");
    let clock = Arc::new(ManualClock::starting_now());
    let t = backend.table(&name, [1; 32], clock.clone() as Arc<dyn Clock>);

    let mut item = Item::new(ItemKey::new("org#1", "a")).with("n", 5).with(
        "nested",
        serde_json::json!({"x": [1, "two", null], "y": 1.5}),
    );
    item.gsi1 = Some(IndexKey::new("g#1", "z"));
    item.bytes = Some(Bytes::from(vec![0u8, 1, 2, 255]));
    t.put(&item, Condition::NotExists).await.unwrap();
    assert!(is_condition_failed(
        &t.put(&item, Condition::NotExists).await,
        None
    ));
    assert_eq!(t.get(&item.key).await.unwrap(), Some(item.clone()));

    let mut next = item.clone();
    next.version = 2;
    assert!(is_condition_failed(
        &t.put(&next, Condition::VersionEquals(7)).await,
        None
    ));
    t.put(&next, Condition::VersionEquals(1)).await.unwrap();
    assert!(is_condition_failed(
        &t.put(&Item::new(ItemKey::new("org#1", "nope")), Condition::Exists)
            .await,
        None
    ));

    // Pagination over the table and over an index.
    for i in 0..7 {
        let mut it = Item::new(ItemKey::new("page", format!("s{i}")));
        it.gsi1 = Some(IndexKey::new("ix", format!("k{}", 9 - i)));
        t.put(&it, Condition::None).await.unwrap();
    }
    for index in [None, Some(Index::Gsi1)] {
        let mut q = Query::partition(if index.is_some() { "ix" } else { "page" });
        q.index = index;
        q.limit = 3;
        let mut seen = Vec::new();
        loop {
            let page = t.query(&q).await.unwrap();
            seen.extend(page.items.into_iter().map(|i| i.key.sk));
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => break,
            }
        }
        let mut expected: Vec<String> = (0..7).map(|i| format!("s{i}")).collect();
        if index.is_some() {
            expected.reverse();
        }
        assert_eq!(seen, expected, "index {index:?}");
    }
    let mut q = Query::partition("page");
    q.sort = SortKey::Between {
        from: "s2".into(),
        to: "s4".into(),
    };
    q.descending = true;
    let keys: Vec<_> = t
        .query(&q)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|i| i.key.sk)
        .collect();
    assert_eq!(keys, ["s4", "s3", "s2"]);
    q.sort = SortKey::Prefix("s".into());
    q.cursor = Some("garbage".into());
    assert!(matches!(t.query(&q).await, Err(StoreError::InvalidCursor)));

    // TTL is judged by the injected clock.
    let mut session = Item::new(ItemKey::new("ttl", "session"));
    session.expires_at = Some(clock.now() + time::Duration::seconds(60));
    t.put(&session, Condition::NotExists).await.unwrap();
    t.put(&Item::new(ItemKey::new("ttl", "forever")), Condition::None)
        .await
        .unwrap();
    clock.advance(time::Duration::seconds(61));
    assert_eq!(t.get(&session.key).await.unwrap(), None);
    let page = t.query(&Query::partition("ttl")).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert!(is_condition_failed(
        &t.delete(&session.key, Condition::Exists).await,
        None
    ));
    assert_eq!(t.delete(&session.key, Condition::None).await.unwrap(), None);
    t.put(&session, Condition::None).await.unwrap();
    t.put(&Item::new(session.key.clone()), Condition::NotExists)
        .await
        .unwrap();
    assert!(t.get(&session.key).await.unwrap().is_some());

    // Atomic add: creation, floor, expired items count as absent.
    let add = |delta, floor| Add {
        key: ItemKey::new("stock", "sku-1"),
        field: "qty".into(),
        delta,
        floor,
        expires_at: None,
    };
    assert_eq!(t.add(&add(10, Some(0))).await.unwrap(), 10);
    assert_eq!(t.add(&add(-4, Some(0))).await.unwrap(), 6);
    assert!(is_condition_failed(&t.add(&add(-7, Some(0))).await, None));
    assert_eq!(t.add(&add(-1, Some(0))).await.unwrap(), 5);
    let stock = t
        .get(&ItemKey::new("stock", "sku-1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stock.int("qty"), stock.version), (Some(5), 3));
    assert!(is_condition_failed(
        &t.add(&Add {
            key: ItemKey::new("stock", "none"),
            ..add(-1, Some(0))
        })
        .await,
        None
    ));
    let mut counter = Add {
        key: ItemKey::new("count", "c"),
        field: "hits".into(),
        delta: 3,
        floor: None,
        expires_at: Some(clock.now() + time::Duration::seconds(10)),
    };
    assert_eq!(t.add(&counter).await.unwrap(), 3);
    assert_eq!(t.add(&counter).await.unwrap(), 6);
    clock.advance(time::Duration::seconds(11));
    counter.expires_at = Some(clock.now() + time::Duration::seconds(10));
    assert_eq!(
        t.add(&counter).await.unwrap(),
        3,
        "an expired counter restarts from 0"
    );
    let c = t.get(&counter.key).await.unwrap().unwrap();
    assert_eq!(
        c.expires_at.map(|e| e.unix_timestamp()),
        counter.expires_at.map(|e| e.unix_timestamp())
    );

    // Transactions: all or nothing, the failing write named.
    let writes = [
        Write::Put {
            item: Item::new(ItemKey::new("tx", "1")),
            condition: Condition::NotExists,
        },
        Write::Check {
            key: ItemKey::new("tx", "0"),
            condition: Condition::None,
        },
        Write::Delete {
            key: ItemKey::new("org#1", "a"),
            condition: Condition::VersionEquals(9),
        },
    ];
    assert!(is_condition_failed(&t.transact(&writes).await, Some(2)));
    assert_eq!(t.get(&ItemKey::new("tx", "1")).await.unwrap(), None);
    let writes = [
        Write::Put {
            item: Item::new(ItemKey::new("tx", "1")),
            condition: Condition::NotExists,
        },
        Write::Delete {
            key: ItemKey::new("org#1", "a"),
            condition: Condition::VersionEquals(2),
        },
    ];
    t.transact(&writes).await.unwrap();
    assert!(t.get(&ItemKey::new("tx", "1")).await.unwrap().is_some());
    assert_eq!(t.get(&ItemKey::new("org#1", "a")).await.unwrap(), None);
}

#[tokio::test]
async fn blobs_round_trip_and_presigned_urls_work() {
    let backend = fx_backend().await;
    let bucket = unique("smoke");
    backend.ensure_bucket(&bucket).await.unwrap();
    backend
        .ensure_bucket(&bucket)
        .await
        .expect("ensure_bucket is idempotent");
    let b = backend.blob_store(&bucket);

    b.put("a/b.pdf", Bytes::from_static(b"%PDF"), "application/pdf")
        .await
        .unwrap();
    let (meta, body) = b.get("a/b.pdf").await.unwrap().unwrap();
    assert_eq!(
        (
            meta.content_type.as_str(),
            meta.content_length,
            body.as_ref()
        ),
        ("application/pdf", 4, &b"%PDF"[..])
    );
    assert_eq!(
        b.head("a/b.pdf").await.unwrap().map(|m| m.content_length),
        Some(4)
    );
    assert!(b.get("a/none").await.unwrap().is_none());
    assert!(b.head("a/none").await.unwrap().is_none());
    b.delete("a/b.pdf").await.unwrap();
    b.delete("a/b.pdf").await.unwrap();
    assert!(b.head("a/b.pdf").await.unwrap().is_none());

    let put = b
        .presign_put("up/x.png", "image/png", 3, Duration::from_secs(60))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let mut req = client.put(&put.url);
    for (name, value) in &put.headers {
        if name != "content-length" {
            req = req.header(name, value);
        }
    }
    let res = req.body(vec![1u8, 2, 3]).send().await.unwrap();
    assert!(
        res.status().is_success(),
        "presigned PUT gave {}",
        res.status()
    );
    let meta = b.head("up/x.png").await.unwrap().unwrap();
    assert_eq!(
        (meta.content_type.as_str(), meta.content_length),
        ("image/png", 3)
    );
    let get = b
        .presign_get("up/x.png", Duration::from_secs(60))
        .await
        .unwrap();
    let res = client.get(&get.url).send().await.unwrap();
    assert!(
        res.status().is_success(),
        "presigned GET gave {}",
        res.status()
    );
    assert_eq!(res.bytes().await.unwrap().as_ref(), [1, 2, 3]);
}

#[tokio::test]
async fn queues_send_in_batches_and_redrive_to_the_dlq() {
    let backend = fx_backend().await;
    let spec = QueueSpec::with_dlq(&unique("smoke"), Duration::from_secs(1), 2);
    let url = backend.ensure_queue(&spec).await.unwrap();
    assert_eq!(
        backend.ensure_queue(&spec).await.unwrap(),
        url,
        "ensure_queue is idempotent"
    );
    let dlq_url = backend
        .queue_url(spec.dead_letter.as_deref().unwrap())
        .await
        .unwrap();
    let queue = backend.queue(&url);
    let receiver = backend.receiver(&url).await.unwrap();
    let dead = backend.receiver(&dlq_url).await.unwrap();
    assert!(receiver.source_arn().starts_with("arn:aws:sqs:"));

    let bodies: Vec<String> = (0..23).map(|i| format!("{{\"n\":{i}}}")).collect();
    queue.send_batch(&bodies).await.unwrap();
    assert!(queue.send_batch(&[String::new()]).await.is_err());
    let mut got = Vec::new();
    for _ in 0..10 {
        for m in receiver.receive(10, Duration::from_secs(1)).await.unwrap() {
            assert_eq!(m.receive_count, 1);
            assert!(
                (time::OffsetDateTime::now_utc() - m.sent_at).abs() < time::Duration::minutes(1)
            );
            receiver.delete(&m.receipt_handle).await.unwrap();
            got.push(m.body);
        }
        if got.len() == bodies.len() {
            break;
        }
    }
    got.sort();
    let mut expected = bodies.clone();
    expected.sort();
    assert_eq!(got, expected);

    // Received twice without being deleted: the third receive moves it to the DLQ.
    queue.send_batch(&["poison".to_owned()]).await.unwrap();
    let mut counts = Vec::new();
    for _ in 0..6 {
        for m in receiver.receive(1, Duration::from_secs(2)).await.unwrap() {
            counts.push(m.receive_count);
        }
        if counts.len() == 2 {
            break;
        }
    }
    assert_eq!(counts, [1, 2]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        receiver
            .receive(1, Duration::from_secs(1))
            .await
            .unwrap()
            .is_empty()
    );
    let dead_letters = dead.receive(10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(
        dead_letters
            .iter()
            .map(|m| m.body.as_str())
            .collect::<Vec<_>>(),
        ["poison"]
    );
}

#[tokio::test]
async fn secrets_are_created_read_and_updated() {
    let backend = fx_backend().await;
    let s = backend.secrets();
    let name = unique("smoke/secret");
    assert_eq!(s.get(&name).await.unwrap(), None);
    backend
        .ensure_secret(&name, &SecretValue::new("first"))
        .await
        .unwrap();
    backend
        .ensure_secret(&name, &SecretValue::new("other"))
        .await
        .unwrap();
    assert_eq!(s.get(&name).await.unwrap(), Some(SecretValue::new("first")));
    s.put(&name, &SecretValue::new("second")).await.unwrap();
    assert_eq!(
        s.get(&name).await.unwrap(),
        Some(SecretValue::new("second"))
    );
    let fresh = unique("smoke/fresh");
    s.put(&fresh, &SecretValue::new("v")).await.unwrap();
    assert_eq!(s.get(&fresh).await.unwrap(), Some(SecretValue::new("v")));
    assert!(s.get("bad name!").await.is_err());
}
