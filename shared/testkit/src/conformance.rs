//! The storage conformance suite: one body per behaviour, run once against
//! each adapter set (see `tests/conformance.rs`). A behaviour a service relies
//! on belongs here, so that the local backend can never drift from AWS.
//!
//! Each body takes a fresh [`Fixture`] and returns an error describing the
//! first expectation that did not hold.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use constellation_platform::table::{
    Add, Condition, Index, IndexKey, Item, ItemKey, Query, SortKey, Write,
};
use constellation_platform::{
    CachedSecrets, Clock, PresignedRequest, Secrets as _, StoreError, Table,
};
use futures::future::join_all;
use serde_json::json;

use crate::fixtures::{Fixture, fx_secret, fx_secret_name};

pub(crate) fn fx_item(pk: &str, sk: &str) -> Item {
    Item::new(ItemKey::new(pk, sk))
}

async fn put_new(table: &dyn Table, item: Item) -> anyhow::Result<()> {
    table
        .put(&item, Condition::NotExists)
        .await
        .with_context(|| format!("put {}/{}", item.key.pk, item.key.sk))
}

fn is_condition_failed<T: std::fmt::Debug>(r: &Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::ConditionFailed { .. }))
}

/// An item comes back exactly as written: attributes, binary payload, index keys, version.
pub async fn table_put_get_roundtrip(fx: &Fixture) -> anyhow::Result<()> {
    let mut item = fx_item("p", "s")
        .with("name", "widget")
        .with("count", 7)
        .with("tags", json!(["a", "b"]))
        .with("nested", json!({"k": true, "n": null}));
    item.bytes = Some(Bytes::from_static(b"\x00\x01binary\xff"));
    item.gsi1 = Some(IndexKey::new("g1", "x"));
    item.version = 3;
    fx.table.put(&item, Condition::None).await?;
    let got = fx.table.get(&item.key).await?.context("item missing")?;
    ensure!(
        got == item,
        "round trip changed the item:\n{got:?}\n!=\n{item:?}"
    );
    ensure!(
        fx.table.get(&ItemKey::new("p", "other")).await?.is_none(),
        "phantom item"
    );
    Ok(())
}

/// Every condition refuses the write when it does not hold, and leaves the item alone.
pub async fn table_condition_failures(fx: &Fixture) -> anyhow::Result<()> {
    let t = fx.table.as_ref();
    let original = fx_item("p", "c").with("v", "original");
    put_new(t, original.clone()).await?;

    let mut replacement = original.clone().with("v", "replaced");
    replacement.version = 2;
    ensure!(
        is_condition_failed(&t.put(&replacement, Condition::NotExists).await),
        "NotExists over an existing item"
    );
    ensure!(
        is_condition_failed(&t.put(&replacement, Condition::VersionEquals(5)).await),
        "VersionEquals(5) on version 1"
    );
    ensure!(
        is_condition_failed(&t.delete(&original.key, Condition::VersionEquals(9)).await),
        "delete with wrong version"
    );
    let missing = fx_item("p", "missing");
    ensure!(
        is_condition_failed(&t.put(&missing, Condition::Exists).await),
        "Exists on a missing item"
    );
    ensure!(
        is_condition_failed(&t.put(&missing, Condition::VersionEquals(1)).await),
        "VersionEquals on a missing item"
    );
    ensure!(
        is_condition_failed(&t.delete(&missing.key, Condition::Exists).await),
        "delete Exists of a missing item"
    );
    ensure!(
        t.get(&original.key).await? == Some(original.clone()),
        "a failed write changed the item"
    );
    ensure!(
        t.get(&missing.key).await?.is_none(),
        "a failed write created an item"
    );

    t.put(&replacement, Condition::VersionEquals(1)).await?;
    ensure!(
        t.get(&original.key)
            .await?
            .and_then(|i| i.str("v").map(str::to_owned))
            .as_deref()
            == Some("replaced")
    );
    let deleted = t.delete(&original.key, Condition::VersionEquals(2)).await?;
    ensure!(
        deleted.map(|i| i.version) == Some(2),
        "delete returns the removed item"
    );
    ensure!(
        t.delete(&original.key, Condition::None).await?.is_none(),
        "deleting nothing returns None"
    );
    Ok(())
}

/// Of two writers that read the same version, exactly one wins.
pub async fn table_version_conflicts(fx: &Fixture) -> anyhow::Result<()> {
    let t = fx.table.clone();
    put_new(t.as_ref(), fx_item("p", "race")).await?;
    let attempts = (0..8).map(|i| {
        let t = t.clone();
        async move {
            let mut next = fx_item("p", "race").with("writer", i);
            next.version = 2;
            t.put(&next, Condition::VersionEquals(1)).await
        }
    });
    let results = join_all(attempts).await;
    let wins = results.iter().filter(|r| r.is_ok()).count();
    let conflicts = results.iter().filter(|r| is_condition_failed(r)).count();
    ensure!(
        wins == 1 && conflicts == 7,
        "wins {wins}, conflicts {conflicts}: {results:?}"
    );
    ensure!(t.get(&ItemKey::new("p", "race")).await?.map(|i| i.version) == Some(2));
    Ok(())
}

async fn collect_pages(t: &dyn Table, mut q: Query) -> anyhow::Result<(Vec<String>, usize)> {
    let mut keys = Vec::new();
    let mut pages = 0;
    loop {
        let page = t.query(&q).await?;
        pages += 1;
        ensure!(page.items.len() <= q.limit as usize, "page over its limit");
        keys.extend(page.items.iter().map(|i| i.key.sk.clone()));
        match page.next_cursor {
            Some(c) => {
                ensure!(!page.items.is_empty(), "a cursor after an empty page");
                q.cursor = Some(c);
            }
            None => return Ok((keys, pages)),
        }
        ensure!(pages < 100, "pagination does not end");
    }
}

/// Paging through a partition visits every item once, in order, in both directions.
pub async fn table_pagination_round_trip(fx: &Fixture) -> anyhow::Result<()> {
    let t = fx.table.as_ref();
    let expected: Vec<String> = (0..23).map(|i| format!("item-{i:03}")).collect();
    for sk in expected.iter().rev() {
        put_new(t, fx_item("pages", sk)).await?;
    }
    put_new(t, fx_item("pages-neighbour", "item-000")).await?;

    let mut q = Query::partition("pages");
    q.limit = 5;
    let (keys, pages) = collect_pages(t, q.clone()).await?;
    ensure!(keys == expected, "ascending pages gave {keys:?}");
    ensure!(pages == 5, "23 items at 5 a page is 5 pages, got {pages}");

    q.descending = true;
    let (keys, _) = collect_pages(t, q.clone()).await?;
    let reversed: Vec<String> = expected.iter().rev().cloned().collect();
    ensure!(keys == reversed, "descending pages gave {keys:?}");

    // A limit that divides the count exactly must not leave a dangling cursor.
    q.descending = false;
    q.limit = 23;
    let page = t.query(&q).await?;
    ensure!(
        page.items.len() == 23 && page.next_cursor.is_none(),
        "exact page left a cursor"
    );
    Ok(())
}

/// Prefix and range conditions select by UTF-8 byte order; wildcard characters are literal.
pub async fn table_range_and_prefix_queries(fx: &Fixture) -> anyhow::Result<()> {
    let t = fx.table.as_ref();
    let keys = [
        "a", "a%", "a_b", "ab", "abc", "abd", "b", "b/1", "b/2", "c", "é",
    ];
    for k in keys {
        put_new(t, fx_item("range", k)).await?;
    }
    let run = |sort: SortKey| {
        let mut q = Query::partition("range");
        q.sort = sort;
        q.limit = 50;
        async move { collect_pages(t, q).await.map(|(k, _)| k) }
    };
    ensure!(run(SortKey::Prefix("ab".into())).await? == ["ab", "abc", "abd"]);
    ensure!(
        run(SortKey::Prefix("a%".into())).await? == ["a%"],
        "`%` must be literal"
    );
    ensure!(
        run(SortKey::Prefix("a_".into())).await? == ["a_b"],
        "`_` must be literal"
    );
    ensure!(run(SortKey::Prefix("b/".into())).await? == ["b/1", "b/2"]);
    ensure!(
        run(SortKey::Between {
            from: "abc".into(),
            to: "b/1".into()
        })
        .await?
            == ["abc", "abd", "b", "b/1"]
    );
    ensure!(
        run(SortKey::AtLeast("c".into())).await? == ["c", "é"],
        "byte order puts é after c"
    );
    ensure!(run(SortKey::AtMost("a_b".into())).await? == ["a", "a%", "a_b"]);
    ensure!(run(SortKey::Prefix("zzz".into())).await?.is_empty());
    Ok(())
}

/// Secondary indexes gather items across table partitions, page correctly, and
/// leave out items without index keys.
pub async fn table_index_queries(fx: &Fixture) -> anyhow::Result<()> {
    let t = fx.table.as_ref();
    for i in 0..12 {
        let mut item = fx_item(&format!("owner-{}", i % 4), &format!("order-{i:02}"));
        item.gsi1 = Some(IndexKey::new(
            "status#open",
            format!("2026-01-{:02}", 12 - i),
        ));
        if i % 3 == 0 {
            item.gsi2 = Some(IndexKey::new("flagged", format!("{i:02}")));
        }
        put_new(t, item).await?;
    }
    put_new(t, fx_item("owner-9", "unindexed")).await?;

    let mut q = Query::partition("status#open");
    q.index = Some(Index::Gsi1);
    q.limit = 5;
    let (keys, pages) = collect_pages(t, q.clone()).await?;
    let expected: Vec<String> = (0..12).rev().map(|i| format!("order-{i:02}")).collect();
    ensure!(
        keys == expected,
        "gsi1 ascending by index sort key gave {keys:?}"
    );
    ensure!(pages == 3);

    let mut q2 = Query::partition("flagged");
    q2.index = Some(Index::Gsi2);
    q2.descending = true;
    let page = t.query(&q2).await?;
    let got: Vec<_> = page.items.iter().map(|i| i.key.sk.as_str()).collect();
    ensure!(
        got == ["order-09", "order-06", "order-03", "order-00"],
        "gsi2 gave {got:?}"
    );
    Ok(())
}

/// A cursor is honoured only by the query that issued it; anything else is InvalidCursor.
pub async fn table_forged_cursor_rejected(fx: &Fixture) -> anyhow::Result<()> {
    let t = fx.table.as_ref();
    for p in ["mine", "theirs"] {
        for i in 0..4 {
            put_new(t, fx_item(p, &format!("k{i}"))).await?;
        }
    }
    let mut mine = Query::partition("mine");
    mine.limit = 2;
    let cursor = t
        .query(&mine)
        .await?
        .next_cursor
        .context("expected a second page")?;

    let mut theirs = Query::partition("theirs");
    theirs.limit = 2;
    theirs.cursor = Some(cursor.clone());
    let carried = t.query(&theirs).await;
    ensure!(
        matches!(carried, Err(StoreError::InvalidCursor)),
        "cursor carried to another partition: {carried:?}"
    );

    let mut flipped = cursor.into_bytes();
    if let Some(b) = flipped.get_mut(10) {
        *b = if *b == b'A' { b'B' } else { b'A' };
    }
    for forged in [
        String::from_utf8(flipped)?,
        "not-a-cursor".to_owned(),
        String::new(),
    ] {
        let mut q = mine.clone();
        q.cursor = Some(forged.clone());
        let r = t.query(&q).await;
        ensure!(
            matches!(r, Err(StoreError::InvalidCursor)),
            "forged cursor {forged:?} gave {r:?}"
        );
    }
    Ok(())
}

/// 50 concurrent decrements of 1 against 10 with floor 0: exactly 10 succeed.
pub async fn table_atomic_add_race(fx: &Fixture) -> anyhow::Result<()> {
    let t = fx.table.clone();
    let key = ItemKey::new("stock", "sku-1");
    put_new(t.as_ref(), fx_item("stock", "sku-1").with("on_hand", 10)).await?;
    let decrement = Add {
        key: key.clone(),
        field: "on_hand".into(),
        delta: -1,
        floor: Some(0),
        expires_at: None,
    };
    let tasks = (0..50).map(|_| {
        let t = t.clone();
        let d = decrement.clone();
        tokio::spawn(async move { t.add(&d).await })
    });
    let mut ok = 0;
    let mut refused = 0;
    for joined in join_all(tasks).await {
        match joined? {
            Ok(v) => {
                ensure!((0..10).contains(&v), "a decrement returned {v}");
                ok += 1;
            }
            Err(StoreError::ConditionFailed { .. }) => refused += 1,
            Err(e) => bail!("decrement failed unexpectedly: {e:#}"),
        }
    }
    ensure!(
        ok == 10 && refused == 40,
        "{ok} succeeded, {refused} refused"
    );
    let item = t.get(&key).await?.context("stock item vanished")?;
    ensure!(
        item.int("on_hand") == Some(0),
        "final value {:?}",
        item.int("on_hand")
    );
    ensure!(
        item.version == 11,
        "each add bumps the version: {}",
        item.version
    );
    Ok(())
}

/// An add creates a missing item from zero, refuses to cross the floor, and
/// gives a new item its expiry.
pub async fn table_add_creates_and_respects_floor(fx: &Fixture) -> anyhow::Result<()> {
    let t = fx.table.as_ref();
    let key = ItemKey::new("counters", "logins");
    let expires = fx.clock.now() + time::Duration::minutes(15);
    let mut add = Add {
        key: key.clone(),
        field: "n".into(),
        delta: 3,
        floor: None,
        expires_at: Some(expires),
    };
    ensure!(t.add(&add).await? == 3);
    ensure!(t.add(&add).await? == 6);
    add.delta = -7;
    add.floor = Some(0);
    ensure!(
        is_condition_failed(&t.add(&add).await),
        "crossing the floor must fail"
    );
    let item = t.get(&key).await?.context("counter missing")?;
    ensure!(item.int("n") == Some(6), "a refused add changed the value");
    ensure!(
        item.expires_at == Some(expires),
        "expiry {:?} != {expires:?}",
        item.expires_at
    );

    // Once expired, the counter starts again from zero with a fresh expiry.
    fx.clock.advance(time::Duration::minutes(16));
    add.delta = 1;
    add.floor = None;
    add.expires_at = Some(fx.clock.now() + time::Duration::minutes(15));
    ensure!(t.add(&add).await? == 1, "an expired counter must restart");
    ensure!(t.get(&key).await?.and_then(|i| i.expires_at) == add.expires_at);

    let mut text = fx_item("counters", "text").with("n", "seven");
    text.version = 1;
    put_new(t, text).await?;
    let r = t
        .add(&Add {
            key: ItemKey::new("counters", "text"),
            field: "n".into(),
            delta: 1,
            floor: None,
            expires_at: None,
        })
        .await;
    ensure!(
        r.is_err() && !is_condition_failed(&r),
        "adding to a string must be an error, got {r:?}"
    );
    Ok(())
}

/// A transaction with one failing condition writes nothing and names the write.
pub async fn table_transaction_rollback(fx: &Fixture) -> anyhow::Result<()> {
    let t = fx.table.as_ref();
    put_new(t, fx_item("tx", "existing").with("v", 1)).await?;
    put_new(t, fx_item("tx", "doomed")).await?;
    let writes = vec![
        Write::Put {
            item: fx_item("tx", "new-1"),
            condition: Condition::NotExists,
        },
        Write::Delete {
            key: ItemKey::new("tx", "doomed"),
            condition: Condition::Exists,
        },
        Write::Put {
            item: fx_item("tx", "existing").with("v", 2),
            condition: Condition::VersionEquals(7),
        },
    ];
    let r = t.transact(&writes).await;
    ensure!(
        matches!(r, Err(StoreError::ConditionFailed { index: Some(2) })),
        "got {r:?}"
    );
    ensure!(
        t.get(&ItemKey::new("tx", "new-1")).await?.is_none(),
        "rolled-back put is visible"
    );
    ensure!(
        t.get(&ItemKey::new("tx", "doomed")).await?.is_some(),
        "rolled-back delete happened"
    );
    ensure!(
        t.get(&ItemKey::new("tx", "existing"))
            .await?
            .and_then(|i| i.int("v"))
            == Some(1)
    );

    let check_fails = vec![
        Write::Put {
            item: fx_item("tx", "new-2"),
            condition: Condition::NotExists,
        },
        Write::Check {
            key: ItemKey::new("tx", "absent"),
            condition: Condition::Exists,
        },
    ];
    let r = t.transact(&check_fails).await;
    ensure!(
        matches!(r, Err(StoreError::ConditionFailed { index: Some(1) })),
        "got {r:?}"
    );
    ensure!(t.get(&ItemKey::new("tx", "new-2")).await?.is_none());
    Ok(())
}

/// A transaction whose conditions hold applies every write.
pub async fn table_transaction_commits_all(fx: &Fixture) -> anyhow::Result<()> {
    let t = fx.table.as_ref();
    put_new(t, fx_item("tx", "a")).await?;
    let mut a2 = fx_item("tx", "a").with("moved", true);
    a2.version = 2;
    let writes = vec![
        Write::Put {
            item: a2,
            condition: Condition::VersionEquals(1),
        },
        Write::Put {
            item: fx_item("tx", "b"),
            condition: Condition::NotExists,
        },
        Write::Check {
            key: ItemKey::new("tx", "a"),
            condition: Condition::Exists,
        },
    ];
    // The same key twice is refused before anything is sent.
    ensure!(
        matches!(t.transact(&writes).await, Err(StoreError::Invalid(_))),
        "duplicate key accepted"
    );
    t.transact(&writes[..2]).await?;
    ensure!(t.get(&ItemKey::new("tx", "a")).await?.map(|i| i.version) == Some(2));
    ensure!(t.get(&ItemKey::new("tx", "b")).await?.is_some());
    let bulk = |n: usize| -> Vec<Write> {
        (0..n)
            .map(|i| Write::Put {
                item: fx_item("tx", &format!("bulk-{i}")),
                condition: Condition::NotExists,
            })
            .collect()
    };
    let limit = constellation_platform::table::MAX_TRANSACTION_WRITES;
    ensure!(
        matches!(
            t.transact(&bulk(limit + 1)).await,
            Err(StoreError::Invalid(_))
        ),
        "{} writes accepted",
        limit + 1
    );
    t.transact(&bulk(limit))
        .await
        .context("DynamoDB's limit of writes in one transaction")?;
    ensure!(
        t.get(&ItemKey::new("tx", format!("bulk-{}", limit - 1)))
            .await?
            .is_some()
    );
    Ok(())
}

/// An expired item is invisible to reads and queries and counts as absent.
pub async fn table_ttl_invisibility(fx: &Fixture) -> anyhow::Result<()> {
    let t = fx.table.as_ref();
    let mut item = fx_item("ttl", "session");
    item.expires_at = Some(fx.clock.now() + time::Duration::seconds(60));
    put_new(t, item.clone()).await?;
    put_new(t, fx_item("ttl", "forever")).await?;
    ensure!(t.get(&item.key).await?.is_some(), "visible before expiry");

    fx.clock.advance(time::Duration::seconds(61));
    ensure!(t.get(&item.key).await?.is_none(), "visible after expiry");
    let page = t.query(&Query::partition("ttl")).await?;
    let keys: Vec<_> = page.items.iter().map(|i| i.key.sk.as_str()).collect();
    ensure!(keys == ["forever"], "query returned {keys:?}");
    ensure!(
        is_condition_failed(&t.delete(&item.key, Condition::Exists).await),
        "expired item counted as existing"
    );
    t.put(&fx_item("ttl", "session"), Condition::NotExists)
        .await
        .context("NotExists over an expired item")?;
    Ok(())
}

async fn send(
    req: &PresignedRequest,
    body: Vec<u8>,
    content_type: Option<&str>,
) -> anyhow::Result<reqwest::Response> {
    let client = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(req.method.as_bytes())?;
    let mut builder = client.request(method, &req.url);
    for (name, value) in &req.headers {
        // The test chooses the type and body it sends; reqwest derives the length from the body.
        if name.eq_ignore_ascii_case("content-type") || name.eq_ignore_ascii_case("content-length")
        {
            continue;
        }
        builder = builder.header(name, value);
    }
    if let Some(ct) = content_type {
        builder = builder.header("content-type", ct);
    }
    Ok(builder.body(body).send().await?)
}

/// Objects round-trip with their content type; missing ones read as None.
pub async fn blob_put_get_head_delete(fx: &Fixture) -> anyhow::Result<()> {
    let b = fx.blobs.as_ref();
    b.put(
        "receipts/2026/a.pdf",
        Bytes::from_static(b"%PDF-1.7"),
        "application/pdf",
    )
    .await?;
    let (meta, body) = b
        .get("receipts/2026/a.pdf")
        .await?
        .context("object missing")?;
    ensure!(
        body.as_ref() == b"%PDF-1.7"
            && meta.content_type == "application/pdf"
            && meta.content_length == 8
    );
    ensure!(
        b.head("receipts/2026/a.pdf")
            .await?
            .map(|m| m.content_length)
            == Some(8)
    );
    ensure!(b.get("receipts/none").await?.is_none() && b.head("receipts/none").await?.is_none());
    b.delete("receipts/2026/a.pdf").await?;
    b.delete("receipts/2026/a.pdf")
        .await
        .context("deleting twice is fine")?;
    ensure!(b.head("receipts/2026/a.pdf").await?.is_none());
    for bad_type in ["", "pdf", "text/pl ain"] {
        let r = b.put("receipts/typed", Bytes::new(), bad_type).await;
        ensure!(r.is_err(), "content type {bad_type:?} accepted");
    }
    for bad in ["", "/abs", "a/../b", "a//b"] {
        ensure!(
            b.put(bad, Bytes::new(), "text/plain").await.is_err(),
            "key {bad:?} accepted"
        );
    }
    Ok(())
}

/// A presigned PUT accepts exactly the agreed type and length, and nothing else.
pub async fn blob_presigned_put_pins_type_and_length(fx: &Fixture) -> anyhow::Result<()> {
    let b = fx.blobs.as_ref();
    let req = b
        .presign_put(
            "uploads/photo.png",
            "image/png",
            10,
            Duration::from_secs(300),
        )
        .await?;
    ensure!(req.method == "PUT");

    let longer = send(&req, vec![7; 11], Some("image/png")).await?;
    ensure!(
        longer.status() == 403,
        "wrong length gave {}",
        longer.status()
    );
    let shorter = send(&req, vec![7; 9], Some("image/png")).await?;
    ensure!(
        shorter.status() == 403,
        "short body gave {}",
        shorter.status()
    );
    let wrong_type = send(&req, vec![7; 10], Some("text/html")).await?;
    ensure!(
        wrong_type.status() == 403,
        "wrong type gave {}",
        wrong_type.status()
    );
    ensure!(
        b.head("uploads/photo.png").await?.is_none(),
        "a rejected upload left an object"
    );

    let ok = send(&req, vec![7; 10], Some("image/png")).await?;
    ensure!(
        ok.status().is_success(),
        "agreed upload gave {}",
        ok.status()
    );
    let meta = b
        .head("uploads/photo.png")
        .await?
        .context("upload missing")?;
    ensure!(
        meta.content_length == 10 && meta.content_type == "image/png",
        "{meta:?}"
    );

    let get = b
        .presign_get("uploads/photo.png", Duration::from_secs(300), None)
        .await?;
    let read = send(&get, Vec::new(), None).await?;
    ensure!(
        read.status().is_success(),
        "presigned GET gave {}",
        read.status()
    );
    ensure!(read.bytes().await?.as_ref() == [7; 10]);

    // A download URL names the file; the disposition is part of what is signed.
    let disposition = constellation_platform::blob::attachment("Beleg März \"2026\".png");
    let download = b
        .presign_get(
            "uploads/photo.png",
            Duration::from_secs(300),
            Some(&disposition),
        )
        .await?;
    let read = send(&download, Vec::new(), None).await?;
    ensure!(
        read.status().is_success(),
        "download gave {}",
        read.status()
    );
    let got = read
        .headers()
        .get("content-disposition")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    ensure!(
        got.as_deref() == Some(disposition.as_str()),
        "download answered Content-Disposition {got:?}, not {disposition:?}"
    );
    let tampered = PresignedRequest {
        url: download.url.replace("attachment", "inline"),
        ..download.clone()
    };
    let refused = send(&tampered, Vec::new(), None).await?;
    ensure!(
        refused.status() == 403,
        "a download URL with its disposition changed gave {}",
        refused.status()
    );
    Ok(())
}

/// Presigned URLs stop working when they expire.
pub async fn blob_presigned_urls_expire(fx: &Fixture) -> anyhow::Result<()> {
    let b = fx.blobs.as_ref();
    b.put("expiring/a.txt", Bytes::from_static(b"hello"), "text/plain")
        .await?;
    let put = b
        .presign_put("expiring/b.txt", "text/plain", 5, Duration::from_secs(1))
        .await?;
    let get = b
        .presign_get("expiring/a.txt", Duration::from_secs(1), None)
        .await?;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let put_late = send(&put, b"hello".to_vec(), Some("text/plain")).await?;
    ensure!(
        put_late.status() == 403,
        "expired PUT gave {}",
        put_late.status()
    );
    let get_late = send(&get, Vec::new(), None).await?;
    ensure!(
        get_late.status() == 403,
        "expired GET gave {}",
        get_late.status()
    );
    ensure!(b.head("expiring/b.txt").await?.is_none());
    Ok(())
}

pub(crate) async fn receive_until(
    fx_receiver: &dyn constellation_platform::QueueReceiver,
    want: usize,
    within: Duration,
) -> anyhow::Result<Vec<constellation_platform::ReceivedMessage>> {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < want && tokio::time::Instant::now() < deadline {
        got.extend(fx_receiver.receive(10, Duration::from_millis(500)).await?);
    }
    Ok(got)
}

/// Messages sent in a batch are received once each and stay gone when deleted.
pub async fn queue_send_receive_delete(fx: &Fixture) -> anyhow::Result<()> {
    let bodies: Vec<String> = (0..23).map(|i| format!("{{\"n\":{i}}}")).collect();
    fx.queue.send_batch(&bodies).await?;
    let got = receive_until(fx.receiver.as_ref(), 23, Duration::from_secs(10)).await?;
    let seen: BTreeSet<_> = got.iter().map(|m| m.body.clone()).collect();
    ensure!(
        seen == bodies.iter().cloned().collect(),
        "received {} distinct of 23",
        seen.len()
    );
    ensure!(got.iter().all(|m| m.receive_count == 1));
    for m in &got {
        fx.receiver.delete(&m.receipt_handle).await?;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let again = fx.receiver.receive(10, Duration::from_millis(200)).await?;
    ensure!(again.is_empty(), "deleted messages came back: {again:?}");
    ensure!(
        fx.queue.send_batch(&[String::new()]).await.is_err(),
        "empty body accepted"
    );
    Ok(())
}

/// An undeleted message comes back after the visibility timeout, counted.
pub async fn queue_redelivery_after_visibility_timeout(fx: &Fixture) -> anyhow::Result<()> {
    fx.queue.send_batch(&["retry-me".to_owned()]).await?;
    let first = receive_until(fx.receiver.as_ref(), 1, Duration::from_secs(5)).await?;
    ensure!(first.len() == 1 && first[0].receive_count == 1, "{first:?}");
    let hidden = fx.receiver.receive(10, Duration::ZERO).await?;
    ensure!(hidden.is_empty(), "message visible during its timeout");
    let second = receive_until(fx.receiver.as_ref(), 1, Duration::from_secs(5)).await?;
    ensure!(second.len() == 1, "not redelivered");
    ensure!(
        second[0].message_id == first[0].message_id && second[0].receive_count == 2,
        "{second:?}"
    );
    fx.receiver.delete(&second[0].receipt_handle).await?;
    Ok(())
}

/// A message received more than the max-receive count moves to the dead-letter queue.
pub async fn queue_dead_letter_after_max_receives(fx: &Fixture) -> anyhow::Result<()> {
    fx.queue.send_batch(&["poison".to_owned()]).await?;
    // max_receives is 2: two deliveries, then the next receive moves it.
    for n in 1..=2 {
        let got = receive_until(fx.receiver.as_ref(), 1, Duration::from_secs(5)).await?;
        ensure!(
            got.len() == 1 && got[0].receive_count == n,
            "delivery {n}: {got:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = fx.receiver.receive(10, Duration::from_millis(500)).await?;
    ensure!(after.is_empty(), "delivered past max receives: {after:?}");
    let dead = receive_until(fx.dead_letters.as_ref(), 1, Duration::from_secs(5)).await?;
    let bodies: Vec<_> = dead.iter().map(|m| m.body.as_str()).collect();
    ensure!(bodies == ["poison"], "dead-letter queue holds {bodies:?}");
    Ok(())
}

/// Secrets round-trip; the cache serves a value until its TTL, then refetches.
pub async fn secrets_roundtrip_and_cache(fx: &Fixture) -> anyhow::Result<()> {
    let name = fx_secret_name();
    ensure!(
        fx.secrets.get(&name).await?.is_none(),
        "unknown secret has a value"
    );
    fx.secrets.put(&name, &fx_secret("v1")).await?;
    ensure!(fx.secrets.get(&name).await? == Some(fx_secret("v1")));

    let cached = CachedSecrets::new(
        fx.secrets.clone(),
        fx.clock.clone(),
        time::Duration::seconds(60),
    );
    ensure!(cached.get(&name).await? == Some(fx_secret("v1")));
    fx.secrets.put(&name, &fx_secret("v2")).await?;
    ensure!(
        cached.get(&name).await? == Some(fx_secret("v1")),
        "cache refetched before its TTL"
    );
    fx.clock.advance(time::Duration::seconds(61));
    ensure!(
        cached.get(&name).await? == Some(fx_secret("v2")),
        "cache kept a stale value past its TTL"
    );
    ensure!(
        !format!("{:?}", fx_secret("hunter2")).contains("hunter2"),
        "Debug leaks the value"
    );
    ensure!(
        fx.secrets.get("bad name!").await.is_err(),
        "bad name accepted"
    );
    Ok(())
}

/// An upsert replaces the whole item with the next version (1 when there is
/// none, or only an expired one), and concurrent upserts of one key all
/// succeed with distinct versions: last writer wins, no lost race.
pub async fn table_upsert_versions_and_races(fx: &Fixture) -> anyhow::Result<()> {
    let t = fx.table.as_ref();
    let key = ItemKey::new("up", "k");
    let mut first = fx_item("up", "k").with("a", 1).with("gone", "soon");
    first.bytes = Some(Bytes::from_static(b"one"));
    first.gsi1 = Some(IndexKey::new("g", "1"));
    first.version = 77; // ignored
    ensure!(
        t.upsert(&first).await? == 1,
        "a new item starts at version 1"
    );
    let second = fx_item("up", "k").with("a", 2);
    ensure!(
        t.upsert(&second).await? == 2,
        "the next upsert is version 2"
    );
    let got = t.get(&key).await?.context("upserted item missing")?;
    let expected = Item {
        version: 2,
        ..second.clone()
    };
    ensure!(
        got == expected,
        "an upsert replaces the whole item (attributes, bytes, index keys):\n{got:?}\n!=\n{expected:?}"
    );

    let mut expiring = second.clone().with("a", 3);
    expiring.expires_at = Some(fx.clock.now() + time::Duration::seconds(60));
    ensure!(t.upsert(&expiring).await? == 3);
    fx.clock.advance(time::Duration::seconds(120));
    ensure!(
        t.upsert(&second).await? == 1,
        "an expired item counts as none: the upsert starts again at 1"
    );
    let got = t
        .get(&key)
        .await?
        .context("item missing after upsert over expired")?;
    ensure!(
        got.expires_at.is_none(),
        "the expiry of the replaced item survived"
    );

    let racers = 40;
    let results = join_all((0..racers).map(|n| {
        let item = fx_item("up", "k").with("writer", n);
        async move { t.upsert(&item).await }
    }))
    .await;
    let mut versions = BTreeSet::new();
    for r in results {
        versions.insert(r.context("a concurrent upsert failed")?);
    }
    let expected: BTreeSet<u64> = (2..2 + racers).collect();
    ensure!(
        versions == expected,
        "{racers} concurrent upserts got versions {versions:?}, not 2..={}",
        1 + racers
    );
    let last = t.get(&key).await?.context("item missing after the race")?;
    ensure!(last.version == 1 + racers, "final version {}", last.version);
    Ok(())
}

/// Instantiates the suite for one backend: `conformance_suite!(fixture_fn)`
/// inside a module, where `fixture_fn` is an async fn returning
/// `anyhow::Result<Fixture>`. Every body of [`crate::conformance`],
/// [`crate::bulk`] and [`crate::messaging`] runs, as `<module>::<body>`.
#[macro_export]
macro_rules! conformance_suite {
    ($fixture:path) => {
        $crate::conformance_suite!(@tests $fixture;
            conformance::table_put_get_roundtrip,
            conformance::table_condition_failures,
            conformance::table_version_conflicts,
            conformance::table_pagination_round_trip,
            conformance::table_range_and_prefix_queries,
            conformance::table_index_queries,
            conformance::table_forged_cursor_rejected,
            conformance::table_atomic_add_race,
            conformance::table_add_creates_and_respects_floor,
            conformance::table_transaction_rollback,
            conformance::table_transaction_commits_all,
            conformance::table_ttl_invisibility,
            conformance::table_upsert_versions_and_races,
            bulk::table_scan_visits_every_item_once,
            bulk::table_scan_skips_expired_items,
            bulk::table_scan_cursor_is_bound_to_scan,
            bulk::table_put_batch_round_trips_and_limits,
            bulk::table_put_batch_replaces_and_is_idempotent,
            conformance::blob_put_get_head_delete,
            conformance::blob_presigned_put_pins_type_and_length,
            conformance::blob_presigned_urls_expire,
            conformance::queue_send_receive_delete,
            conformance::queue_redelivery_after_visibility_timeout,
            conformance::queue_dead_letter_after_max_receives,
            conformance::secrets_roundtrip_and_cache,
            messaging::bus_routes_events_to_subscribed_queues,
            messaging::outbox_commits_events_with_the_write,
            messaging::outbox_upsert_publishes_the_version_it_got,
            messaging::outbox_relay_resolves_or_drops_stranded_upserts,
            messaging::outbox_relay_sends_the_records_of_every_shard,
            messaging::outbox_and_queues_carry_the_work_trace,
            messaging::worker_reports_exactly_the_failed_records,
            messaging::worker_poison_message_dead_letters_and_redrive_brings_it_back,
            messaging::worker_duplicate_delivery_applies_once,
        );
    };
    (@tests $fixture:path; $($module:ident :: $name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() -> anyhow::Result<()> {
                let fx = $fixture().await?;
                $crate::$module::$name(&fx).await
            }
        )*
    };
}
