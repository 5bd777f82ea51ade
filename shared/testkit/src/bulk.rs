//! The conformance bodies of the bulk operations a migration relies on:
//! `Table::scan` (every live item, page by page, with a cursor bound to
//! the scan) and `Table::put_batch` (unconditional writes of up to 25
//! items, idempotent). Run with the rest of the suite by
//! [`crate::conformance_suite`].

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context as _, ensure};
use bytes::Bytes;
use constellation_platform::Clock as _;
use constellation_platform::table::{
    Condition, Index, IndexKey, Item, ItemKey, MAX_BATCH_PUT, Query, StoreError, Table,
};
use futures::future::join_all;
use serde_json::json;

use crate::conformance::fx_item;
use crate::fixtures::Fixture;

/// Follows a scan's cursors to the end: every item seen, in order, and the
/// number of pages. Pages may be short or empty before the end (DynamoDB).
async fn scan_all(t: &dyn Table, limit: u32) -> anyhow::Result<(Vec<Item>, usize)> {
    let mut items = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = t.scan(limit, cursor).await?;
        pages += 1;
        ensure!(
            page.items.len() <= limit as usize,
            "a scan page of {} items over its limit {limit}",
            page.items.len()
        );
        items.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok((items, pages)),
        }
        ensure!(pages < 1000, "the scan does not end");
    }
}

/// Writes `items` one by one, 25 at a time concurrently.
async fn put_all(t: &dyn Table, items: &[Item]) -> anyhow::Result<()> {
    for chunk in items.chunks(25) {
        for r in join_all(chunk.iter().map(|i| t.put(i, Condition::None))).await {
            r.context("put")?;
        }
    }
    Ok(())
}

/// Items of every shape the port stores: index keys, expiry, bytes, versions.
fn fx_varied_items(pk: &str, n: usize, fx: &Fixture) -> Vec<Item> {
    (0..n)
        .map(|i| {
            let mut item = fx_item(pk, &format!("item-{i:03}"))
                .with("n", i as i64)
                .with("tags", json!(["x", {"deep": [i]}]));
            item.version = 1 + i as u64;
            if i % 2 == 0 {
                item.gsi1 = Some(IndexKey::new("batch#g1", format!("{i:03}")));
            }
            if i % 3 == 0 {
                item.gsi2 = Some(IndexKey::new("batch#g2", format!("{i:03}")));
            }
            if i % 4 == 0 {
                item.expires_at = Some(fx.clock.now() + time::Duration::days(1));
                item.bytes = Some(Bytes::from(vec![i as u8, 0, 255]));
            }
            item
        })
        .collect()
}

/// A scan pages through every live item of the table, across partitions,
/// each exactly once, and hands items back whole.
pub async fn table_scan_visits_every_item_once(fx: &Fixture) -> anyhow::Result<()> {
    let t = fx.table.as_ref();
    let (empty, _) = scan_all(t, 100).await?;
    ensure!(empty.is_empty(), "an empty table scanned {empty:?}");

    let mut written: Vec<Item> = (0..250)
        .map(|i| fx_item(&format!("scan-{}", i % 7), &format!("item-{i:03}")).with("i", i))
        .collect();
    let mut rich = fx_item("scan-rich", "one")
        .with("nested", json!({"k": [1, "two", null]}))
        .with("flag", true);
    rich.gsi1 = Some(IndexKey::new("g1", "a"));
    rich.gsi2 = Some(IndexKey::new("g2", "b"));
    rich.version = 9;
    rich.expires_at = Some(fx.clock.now() + time::Duration::hours(1));
    rich.bytes = Some(Bytes::from_static(b"\x00scan\xff"));
    written.push(rich.clone());
    put_all(t, &written).await?;

    let (items, pages) = scan_all(t, 100).await?;
    let mut seen = BTreeMap::new();
    for item in &items {
        let key = (item.key.pk.clone(), item.key.sk.clone());
        ensure!(
            seen.insert(key, item.clone()).is_none(),
            "{:?} scanned twice",
            item.key
        );
    }
    let expected: BTreeSet<_> = written
        .iter()
        .map(|i| (i.key.pk.clone(), i.key.sk.clone()))
        .collect();
    let got: BTreeSet<_> = seen.keys().cloned().collect();
    ensure!(
        got == expected,
        "the scan saw {} items, {} expected; missing {:?}, extra {:?}",
        got.len(),
        expected.len(),
        expected.difference(&got).take(5).collect::<Vec<_>>(),
        got.difference(&expected).take(5).collect::<Vec<_>>()
    );
    ensure!(pages >= 3, "251 items at 100 a page took {pages} pages");
    let scanned_rich = seen.get(&("scan-rich".to_owned(), "one".to_owned()));
    ensure!(
        scanned_rich == Some(&rich),
        "the scan changed an item:\n{scanned_rich:?}\n!=\n{rich:?}"
    );

    for bad in [0, constellation_platform::table::MAX_QUERY_LIMIT + 1] {
        let r = t.scan(bad, None).await;
        ensure!(
            matches!(r, Err(StoreError::Invalid(_))),
            "limit {bad} gave {r:?}"
        );
    }
    Ok(())
}

/// Expired items are invisible to a scan, and do not break its pages.
pub async fn table_scan_skips_expired_items(fx: &Fixture) -> anyhow::Result<()> {
    let t = fx.table.as_ref();
    let soon = fx.clock.now() + time::Duration::seconds(60);
    let items: Vec<Item> = (0..12)
        .map(|i| {
            let mut item = fx_item(&format!("ttl-{}", i % 3), &format!("k{i:02}"));
            if i % 4 != 0 {
                item.expires_at = Some(soon);
            }
            item
        })
        .collect();
    put_all(t, &items).await?;
    let (before, _) = scan_all(t, 5).await?;
    ensure!(before.len() == 12, "{} of 12 before expiry", before.len());

    fx.clock.advance(time::Duration::seconds(61));
    let (after, _) = scan_all(t, 2).await?;
    let keys: BTreeSet<String> = after.iter().map(|i| i.key.sk.clone()).collect();
    let live: BTreeSet<String> = ["k00", "k04", "k08"].map(String::from).into();
    ensure!(
        keys == live && after.len() == 3,
        "after expiry the scan gave {keys:?}"
    );
    Ok(())
}

/// A scan cursor continues only a scan of its table: tampered, made-up and
/// query cursors are refused, and a scan cursor continues no query.
pub async fn table_scan_cursor_is_bound_to_scan(fx: &Fixture) -> anyhow::Result<()> {
    let t = fx.table.as_ref();
    put_all(
        t,
        &(0..6)
            .map(|i| fx_item("cursors", &format!("k{i}")))
            .collect::<Vec<_>>(),
    )
    .await?;
    let scan_cursor = t
        .scan(2, None)
        .await?
        .next_cursor
        .context("a 6-item scan at 2 a page has a second page")?;
    t.scan(2, Some(scan_cursor.clone()))
        .await
        .context("the scan's own cursor")?;

    let mut q = Query::partition("cursors");
    q.limit = 2;
    let query_cursor = t
        .query(&q)
        .await?
        .next_cursor
        .context("a 6-item query at 2 a page has a second page")?;

    let mut flipped = scan_cursor.clone().into_bytes();
    if let Some(b) = flipped.get_mut(10) {
        *b = if *b == b'A' { b'B' } else { b'A' };
    }
    for (what, forged) in [
        ("tampered", String::from_utf8(flipped)?),
        ("a query's", query_cursor),
        ("made up", "not-a-cursor".to_owned()),
        ("empty", String::new()),
    ] {
        let r = t.scan(2, Some(forged)).await;
        ensure!(
            matches!(r, Err(StoreError::InvalidCursor)),
            "a scan given a {what} cursor answered {r:?}"
        );
    }
    q.cursor = Some(scan_cursor);
    let r = t.query(&q).await;
    ensure!(
        matches!(r, Err(StoreError::InvalidCursor)),
        "a query given a scan cursor answered {r:?}"
    );
    Ok(())
}

/// A batch of 25 is stored exactly as `put` stores each item (index keys,
/// expiry, bytes, versions); 26 items or a repeated key are refused before
/// anything is written; an empty batch does nothing.
pub async fn table_put_batch_round_trips_and_limits(fx: &Fixture) -> anyhow::Result<()> {
    let t = fx.table.as_ref();
    let items = fx_varied_items("batch", MAX_BATCH_PUT, fx);
    t.put_batch(&items).await.context("a batch of 25")?;
    for item in &items {
        let got = t.get(&item.key).await?;
        ensure!(
            got.as_ref() == Some(item),
            "batched item changed:\n{got:?}\n!=\n{item:?}"
        );
    }
    // The same item through `put` reads back the same (under its own key).
    let mut via_put = items[0].clone();
    via_put.key = ItemKey::new("batch-put", "item-000");
    t.put(&via_put, Condition::None).await?;
    let (a, b) = (
        t.get(&items[0].key).await?.context("batched item")?,
        t.get(&via_put.key).await?.context("put item")?,
    );
    ensure!(
        Item {
            key: b.key.clone(),
            ..a
        } == b,
        "put_batch and put store differently"
    );
    let mut g1 = Query::partition("batch#g1");
    g1.index = Some(Index::Gsi1);
    let page = t.query(&g1).await?;
    let indexed = page.items.iter().filter(|i| i.key.pk == "batch").count();
    ensure!(indexed == 13, "gsi1 holds {indexed} batched items, not 13");

    let too_many = fx_varied_items("batch-26", MAX_BATCH_PUT + 1, fx);
    let r = t.put_batch(&too_many).await;
    ensure!(matches!(r, Err(StoreError::Invalid(_))), "26 items: {r:?}");
    let mut duplicated = fx_varied_items("batch-dup", 3, fx);
    duplicated.push(duplicated[0].clone().with("other", 1));
    let r = t.put_batch(&duplicated).await;
    ensure!(
        matches!(r, Err(StoreError::Invalid(_))),
        "a repeated key: {r:?}"
    );
    let mut reserved = fx_varied_items("batch-bad", 2, fx);
    reserved[1].attrs.insert("pk".into(), json!("x"));
    let r = t.put_batch(&reserved).await;
    ensure!(
        matches!(r, Err(StoreError::Invalid(_))),
        "a reserved attribute: {r:?}"
    );
    for refused in [&too_many[0], &duplicated[0], &reserved[0]] {
        ensure!(
            t.get(&refused.key).await?.is_none(),
            "a refused batch wrote {:?}",
            refused.key
        );
    }
    t.put_batch(&[]).await.context("an empty batch")?;
    Ok(())
}

/// A batch replaces whatever is stored under its keys (attributes, index
/// keys, expiry and bytes of the old item go; the version is the batch's,
/// even a lower one), revives expired keys, and sending it again changes
/// nothing.
pub async fn table_put_batch_replaces_and_is_idempotent(fx: &Fixture) -> anyhow::Result<()> {
    let t = fx.table.as_ref();
    let old: Vec<Item> = (0..10)
        .map(|i| {
            let mut item = fx_item("replace", &format!("k{i:02}"))
                .with("old", "yes")
                .with("n", i);
            item.version = 5;
            item.gsi1 = Some(IndexKey::new("replace#old", format!("{i}")));
            item.bytes = Some(Bytes::from_static(b"old"));
            item.expires_at =
                Some(fx.clock.now() + time::Duration::seconds(if i < 2 { 30 } else { 3600 }));
            item
        })
        .collect();
    put_all(t, &old).await?;
    fx.clock.advance(time::Duration::seconds(31)); // k0 and k1 expire

    let new: Vec<Item> = (0..12)
        .map(|i| fx_item("replace", &format!("k{i:02}")).with("new", i))
        .collect();
    t.put_batch(&new).await?;
    let snapshot = || async {
        let mut q = Query::partition("replace");
        q.limit = 100;
        t.query(&q).await.map(|p| p.items)
    };
    let first = snapshot().await?;
    ensure!(first == new, "after the batch:\n{first:?}\n!=\n{new:?}");
    let mut old_index = Query::partition("replace#old");
    old_index.index = Some(Index::Gsi1);
    let stale = t.query(&old_index).await?.items;
    ensure!(stale.is_empty(), "old index keys survived: {stale:?}");

    t.put_batch(&new).await.context("the same batch again")?;
    ensure!(
        snapshot().await? == first,
        "sending the batch again changed the table"
    );
    Ok(())
}
