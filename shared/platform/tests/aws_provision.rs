//! Provisioning on the AWS backend (`serve --provision`): every `ensure_*`
//! creates the resource with the shape template.yaml gives it, and calling
//! it again changes nothing. What the adapters do with those resources is
//! the conformance suite's business (constellation-testkit), which runs the
//! same bodies against moto and SQLite.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{fx_backend, unique};
use constellation_platform::table::{Index, IndexKey, Item, ItemKey, Query};
use constellation_platform::{
    BlobStore as _, Clock, Condition, ManualClock, QueueSpec, SecretValue, Secrets as _, Table as _,
};

#[tokio::test]
async fn ensure_table_is_idempotent_and_gives_both_indexes() {
    let backend = fx_backend().await;
    let name = unique("provision");
    backend.ensure_table(&name).await.unwrap();
    backend
        .ensure_table(&name)
        .await
        .expect("a second ensure_table succeeds");
    let table = backend.table(
        &name,
        [1; 32],
        Arc::new(ManualClock::starting_now()) as Arc<dyn Clock>,
    );
    let mut item = Item::new(ItemKey::new("p", "s"));
    item.gsi1 = Some(IndexKey::new("g1", "a"));
    item.gsi2 = Some(IndexKey::new("g2", "b"));
    table.put(&item, Condition::NotExists).await.unwrap();
    for (index, pk) in [(Index::Gsi1, "g1"), (Index::Gsi2, "g2")] {
        let mut q = Query::partition(pk);
        q.index = Some(index);
        assert_eq!(
            table.query(&q).await.unwrap().items.len(),
            1,
            "{index:?} exists"
        );
    }
}

#[tokio::test]
async fn ensure_queue_is_idempotent_and_wires_its_dead_letter_queue() {
    let backend = fx_backend().await;
    let spec = QueueSpec::with_dlq(&unique("provision"), Duration::from_secs(30), 3);
    let url = backend.ensure_queue(&spec).await.unwrap();
    assert_eq!(
        backend.ensure_queue(&spec).await.unwrap(),
        url,
        "same queue the second time"
    );
    let dlq = spec.dead_letter.as_deref().unwrap();
    assert!(
        backend.queue_url(dlq).await.is_ok(),
        "the dead-letter queue exists"
    );
}

#[tokio::test]
async fn ensure_bucket_is_idempotent() {
    let backend = fx_backend().await;
    let bucket = unique("provision");
    backend.ensure_bucket(&bucket).await.unwrap();
    backend
        .ensure_bucket(&bucket)
        .await
        .expect("a second ensure_bucket succeeds");
    let blobs = backend.blob_store(&bucket);
    blobs
        .put("k", bytes::Bytes::from_static(b"v"), "text/plain")
        .await
        .unwrap();
    assert!(blobs.head("k").await.unwrap().is_some());
}

#[tokio::test]
async fn ensure_secret_never_overwrites_an_existing_value() {
    let backend = fx_backend().await;
    let secrets = backend.secrets();
    let name = unique("provision/secret");
    backend
        .ensure_secret(&name, &SecretValue::new("first"))
        .await
        .unwrap();
    backend
        .ensure_secret(&name, &SecretValue::new("other"))
        .await
        .unwrap();
    assert_eq!(
        secrets.get(&name).await.unwrap(),
        Some(SecretValue::new("first"))
    );
}
