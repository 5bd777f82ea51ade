//! The Table port over SQLite: every logical table is a `tbl` slice of one
//! `items` table, with partial indexes standing in for `gsi1` and `gsi2`.
//!
//! TTL is decided by the injected [`Clock`](crate::Clock) at read time, so an
//! expired row is invisible at once even though nothing removes it until it
//! is overwritten or deleted. Sort keys are TEXT under SQLite's BINARY
//! collation, which compares UTF-8 bytes exactly as DynamoDB does; prefixes are
//! ranges, never `LIKE`, so `%` and `_` stay literal.

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension as _, Row, params, params_from_iter};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::{Fail, LocalBackend};
use crate::cursor::{CursorSealer, Position};
use crate::table::{
    Add, Condition, Index, IndexKey, Item, ItemKey, Page, Query, SortKey, StoreError, Table, Write,
    validate_batch, validate_item, validate_limit, validate_query, validate_transaction,
};

const COLUMNS: &str = "pk, sk, gsi1pk, gsi1sk, gsi2pk, gsi2sk, version, expires_at, attrs, bytes";
const LIVE: &str = "(expires_at IS NULL OR expires_at > ?)";

/// A [`Table`] stored in the local SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteTable {
    backend: LocalBackend,
    name: String,
    sealer: CursorSealer,
    /// Query and scan pages are read on the caller's thread, not the blocking pool.
    pages_here: bool,
}

impl SqliteTable {
    pub(super) fn new(backend: LocalBackend, name: &str, cursor_key: [u8; 32]) -> Self {
        Self {
            pages_here: backend.pages_here,
            backend,
            name: name.to_owned(),
            sealer: CursorSealer::new(cursor_key, name),
        }
    }

    /// This table with its query and scan pages read on the caller's thread, as
    /// point reads are, instead of through tokio's blocking pool: for a
    /// caller that owns its thread and reads small pages one after another,
    /// such as the outbox relay (8 shards, a page of at most 100 records
    /// each, in a schedule's process or `serve`'s background task). Each
    /// hop to the pool costs a thread hand-off, and the first one a new
    /// thread: about 0.8 ms of a local relay's 3.9 ms cold start.
    pub fn reading_pages_here(mut self) -> Self {
        self.pages_here = true;
        self
    }

    /// The items of one page statement: read here or on the blocking pool
    /// (see [`SqliteTable::reading_pages_here`]).
    async fn page(
        &self,
        op: &'static str,
        sql: String,
        args: Vec<SqlValue>,
    ) -> Result<Vec<Item>, StoreError> {
        let page = move |conn: &Connection| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(args), read_item)?;
            rows.map(|row| decode(row?)).collect::<Result<Vec<_>>>()
        };
        if self.pages_here {
            self.backend.read_now(op, page)
        } else {
            self.backend.read(op, page).await
        }
    }

    /// Now as the unix second TTLs are compared with.
    fn now(&self) -> i64 {
        self.backend.now().unix_timestamp()
    }
}

type Result<T, E = Fail<StoreError>> = std::result::Result<T, E>;

fn invalid<T>(message: impl Into<String>) -> Result<T> {
    Err(Fail::Port(StoreError::Invalid(message.into())))
}

fn read_item(row: &Row<'_>) -> rusqlite::Result<(Item, String)> {
    let index = |pk: Option<String>, sk: Option<String>| Some(IndexKey::new(pk?, sk?));
    let version: i64 = row.get(6)?;
    let expires_at: Option<i64> = row.get(7)?;
    let item = Item {
        key: ItemKey::new(row.get::<_, String>(0)?, row.get::<_, String>(1)?),
        gsi1: index(row.get(2)?, row.get(3)?),
        gsi2: index(row.get(4)?, row.get(5)?),
        version: version.try_into().unwrap_or_default(),
        expires_at: expires_at.and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok()),
        attrs: Map::new(),
        bytes: row.get::<_, Option<Vec<u8>>>(9)?.map(Bytes::from),
    };
    Ok((item, row.get(8)?))
}

fn decode((mut item, attrs): (Item, String)) -> Result<Item> {
    item.attrs = serde_json::from_str(&attrs)?;
    Ok(item)
}

/// The live item stored under `key`, if any.
fn load(conn: &Connection, tbl: &str, key: &ItemKey, now: i64) -> Result<Option<Item>> {
    let sql = format!("SELECT {COLUMNS} FROM items WHERE tbl = ? AND pk = ? AND sk = ? AND {LIVE}");
    let row = conn
        .prepare_cached(&sql)?
        .query_row(params![tbl, key.pk, key.sk, now], read_item)
        .optional()?;
    row.map(decode).transpose()
}

fn holds(condition: Condition, live: Option<&Item>) -> bool {
    match condition {
        Condition::None => true,
        Condition::NotExists => live.is_none(),
        Condition::Exists => live.is_some(),
        Condition::VersionEquals(v) => live.is_some_and(|i| i.version == v),
    }
}

/// Checks `condition` against the stored item, failing with `ConditionFailed { index }`.
fn require(
    tx: &Connection,
    tbl: &str,
    key: &ItemKey,
    condition: Condition,
    now: i64,
    index: Option<usize>,
) -> Result<Option<Item>> {
    let live = load(tx, tbl, key, now)?;
    if holds(condition, live.as_ref()) {
        Ok(live)
    } else {
        Err(Fail::Port(StoreError::ConditionFailed { index }))
    }
}

fn store(tx: &Connection, tbl: &str, item: &Item) -> Result<()> {
    let Ok(version) = i64::try_from(item.version) else {
        return invalid("version out of range");
    };
    let (g1pk, g1sk) = item.gsi1.as_ref().map(|k| (&k.pk, &k.sk)).unzip();
    let (g2pk, g2sk) = item.gsi2.as_ref().map(|k| (&k.pk, &k.sk)).unzip();
    tx.prepare_cached(&format!(
        "INSERT OR REPLACE INTO items (tbl, {COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ))?
    .execute(params![
        tbl,
        item.key.pk,
        item.key.sk,
        g1pk,
        g1sk,
        g2pk,
        g2sk,
        version,
        item.expires_at.map(OffsetDateTime::unix_timestamp),
        serde_json::to_string(&item.attrs)?,
        item.bytes.as_deref(),
    ])?;
    Ok(())
}

/// Applies a transaction's writes inside the caller's transaction.
pub(super) fn apply_writes(tx: &Connection, tbl: &str, writes: &[Write], now: i64) -> Result<()> {
    for (i, write) in writes.iter().enumerate() {
        match write {
            Write::Put { item, condition } => {
                require(tx, tbl, &item.key, *condition, now, Some(i))?;
                store(tx, tbl, item)?;
            }
            Write::Delete { key, condition } => {
                require(tx, tbl, key, *condition, now, Some(i))?;
                remove(tx, tbl, key)?;
            }
            Write::Check { key, condition } => {
                require(tx, tbl, key, *condition, now, Some(i))?;
            }
        }
    }
    Ok(())
}

/// Stores `item` with the live item's version + 1 (1 if none); the version stored.
pub(super) fn upsert(tx: &Connection, tbl: &str, mut item: Item, now: i64) -> Result<u64> {
    item.version = load(tx, tbl, &item.key, now)?.map_or(1, |live| live.version + 1);
    store(tx, tbl, &item)?;
    Ok(item.version)
}

fn remove(tx: &Connection, tbl: &str, key: &ItemKey) -> Result<()> {
    tx.prepare_cached("DELETE FROM items WHERE tbl = ? AND pk = ? AND sk = ?")?
        .execute(params![tbl, key.pk, key.sk])?;
    Ok(())
}

/// The smallest string greater than every string that starts with `prefix`,
/// in code-point (= UTF-8 byte) order; `None` if there is none.
fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The SQL and parameters for one page of `query`, starting after `after`.
fn page_sql(
    tbl: &str,
    query: &Query,
    after: Option<&Position>,
    now: i64,
) -> Result<(String, Vec<SqlValue>)> {
    let text = |s: &str| SqlValue::Text(s.to_owned());
    let (part, sort) = match query.index {
        None => ("pk", "sk"),
        Some(Index::Gsi1) => ("gsi1pk", "gsi1sk"),
        Some(Index::Gsi2) => ("gsi2pk", "gsi2sk"),
    };
    let (cmp, dir) = if query.descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    let mut sql = format!("SELECT {COLUMNS} FROM items WHERE tbl = ? AND {part} = ? AND {LIVE}");
    let mut args = vec![text(tbl), text(&query.pk), SqlValue::Integer(now)];
    let mut bound = |op: &str, value: &str| {
        sql.push_str(&format!(" AND {sort} {op} ?"));
        args.push(text(value));
    };
    match &query.sort {
        SortKey::All => {}
        SortKey::Prefix(p) => {
            bound(">=", p);
            if let Some(end) = prefix_successor(p) {
                bound("<", &end);
            }
        }
        SortKey::Between { from, to } => {
            bound(">=", from);
            bound("<=", to);
        }
        SortKey::AtLeast(from) => bound(">=", from),
        SortKey::AtMost(to) => bound("<=", to),
    }
    match (query.index, after) {
        (_, None) => {}
        (None, Some(pos)) => bound(cmp, &pos.sk),
        (Some(_), Some(pos)) => {
            let Some(isk) = &pos.isk else {
                return Err(Fail::Port(StoreError::InvalidCursor));
            };
            sql.push_str(&format!(" AND ({sort}, pk, sk) {cmp} (?, ?, ?)"));
            args.extend([text(isk), text(&pos.pk), text(&pos.sk)]);
        }
    }
    // A bound limit: one statement for every limit. (Connections run with
    // SQLite's query planner stability guarantee, so binding a new limit
    // does not make SQLite prepare the statement again: see `connect`.)
    sql.push_str(&format!(
        " ORDER BY {sort} {dir}, pk {dir}, sk {dir} LIMIT ?"
    ));
    args.push(SqlValue::Integer(i64::from(query.limit) + 1));
    Ok((sql, args))
}

/// The SQL and parameters for one page of a scan: live items in (pk, sk)
/// order after `after`, one more than `limit` to tell whether there is more.
fn scan_sql(tbl: &str, limit: u32, after: Option<&Position>, now: i64) -> (String, Vec<SqlValue>) {
    let mut sql = format!("SELECT {COLUMNS} FROM items WHERE tbl = ? AND {LIVE}");
    let mut args = vec![SqlValue::Text(tbl.to_owned()), SqlValue::Integer(now)];
    if let Some(pos) = after {
        sql.push_str(" AND (pk, sk) > (?, ?)");
        args.extend([
            SqlValue::Text(pos.pk.clone()),
            SqlValue::Text(pos.sk.clone()),
        ]);
    }
    sql.push_str(" ORDER BY pk, sk LIMIT ?");
    args.push(SqlValue::Integer(i64::from(limit) + 1));
    (sql, args)
}

fn position(query: &Query, item: &Item) -> Position {
    let index_key = query.index.and_then(|i| match i {
        Index::Gsi1 => item.gsi1.as_ref(),
        Index::Gsi2 => item.gsi2.as_ref(),
    });
    Position {
        pk: item.key.pk.clone(),
        sk: item.key.sk.clone(),
        ipk: index_key.map(|k| k.pk.clone()),
        isk: index_key.map(|k| k.sk.clone()),
    }
}

#[async_trait]
impl Table for SqliteTable {
    #[tracing::instrument(skip(self, key), fields(table = %self.name))]
    async fn get(&self, key: &ItemKey) -> Result<Option<Item>, StoreError> {
        let (tbl, key, now) = (self.name.clone(), key.clone(), self.now());
        self.backend
            .read_now("get item", move |conn| load(conn, &tbl, &key, now))
    }

    #[tracing::instrument(skip(self, item), fields(table = %self.name))]
    async fn put(&self, item: &Item, condition: Condition) -> Result<(), StoreError> {
        validate_item(item)?;
        let (tbl, item, now) = (self.name.clone(), item.clone(), self.now());
        self.backend
            .write("put item", move |tx| {
                require(tx, &tbl, &item.key, condition, now, None)?;
                store(tx, &tbl, &item)
            })
            .await
    }

    #[tracing::instrument(skip(self, key), fields(table = %self.name))]
    async fn delete(
        &self,
        key: &ItemKey,
        condition: Condition,
    ) -> Result<Option<Item>, StoreError> {
        let (tbl, key, now) = (self.name.clone(), key.clone(), self.now());
        self.backend
            .write("delete item", move |tx| {
                let live = require(tx, &tbl, &key, condition, now, None)?;
                remove(tx, &tbl, &key)?;
                Ok(live)
            })
            .await
    }

    #[tracing::instrument(skip(self, query), fields(table = %self.name, index = ?query.index))]
    async fn query(&self, query: &Query) -> Result<Page, StoreError> {
        validate_query(query)?;
        let after = match &query.cursor {
            Some(cursor) => Some(self.sealer.open(query, cursor)?),
            None => None,
        };
        let (sql, args) = page_sql(&self.name, query, after.as_ref(), self.now())
            .map_err(|f| f.into_port("query"))?;
        let mut items = self.page("query", sql, args).await?;
        let more = items.len() > query.limit as usize;
        items.truncate(query.limit as usize);
        let next_cursor = match items.last() {
            Some(last) if more => Some(self.sealer.seal(query, &position(query, last))),
            _ => None,
        };
        Ok(Page { items, next_cursor })
    }

    #[tracing::instrument(skip(self, cursor), fields(table = %self.name))]
    async fn scan(&self, limit: u32, cursor: Option<String>) -> Result<Page, StoreError> {
        validate_limit(limit)?;
        let after = match &cursor {
            Some(cursor) => Some(self.sealer.open_scan(cursor)?),
            None => None,
        };
        let (sql, args) = scan_sql(&self.name, limit, after.as_ref(), self.now());
        let mut items = self.page("scan", sql, args).await?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor = match items.last() {
            Some(last) if more => Some(self.sealer.seal_scan(&Position {
                pk: last.key.pk.clone(),
                sk: last.key.sk.clone(),
                ipk: None,
                isk: None,
            })),
            _ => None,
        };
        Ok(Page { items, next_cursor })
    }

    #[tracing::instrument(skip(self, items), fields(table = %self.name, items = items.len()))]
    async fn put_batch(&self, items: &[Item]) -> Result<(), StoreError> {
        validate_batch(items)?;
        if items.is_empty() {
            return Ok(());
        }
        let (tbl, items) = (self.name.clone(), items.to_vec());
        // One write, so one savepoint of the writer's transaction: the batch
        // is stored whole or not at all (the port promises less).
        self.backend
            .write("put batch", move |tx| {
                items.iter().try_for_each(|item| store(tx, &tbl, item))
            })
            .await
    }

    #[tracing::instrument(skip(self, add), fields(table = %self.name, field = %add.field))]
    async fn add(&self, add: &Add) -> Result<i64, StoreError> {
        let (tbl, add, now) = (self.name.clone(), add.clone(), self.now());
        self.backend
            .write("add to item", move |tx| {
                let mut item = match load(tx, &tbl, &add.key, now)? {
                    Some(item) => item,
                    None => Item {
                        version: 0,
                        expires_at: add.expires_at,
                        ..Item::new(add.key.clone())
                    },
                };
                let current = match item.attrs.get(&add.field) {
                    None => 0,
                    Some(value) => match value.as_i64() {
                        Some(n) => n,
                        None => return invalid(format!("`{}` is not an integer", add.field)),
                    },
                };
                let Some(next) = current.checked_add(add.delta) else {
                    return invalid(format!("`{}` would overflow", add.field));
                };
                if add.floor.is_some_and(|floor| next < floor) {
                    return Err(Fail::Port(StoreError::condition_failed()));
                }
                item.attrs.insert(add.field.clone(), Value::from(next));
                item.version += 1;
                validate_item(&item).map_err(Fail::Port)?;
                store(tx, &tbl, &item)?;
                Ok(next)
            })
            .await
    }

    #[tracing::instrument(skip(self, item), fields(table = %self.name))]
    async fn upsert(&self, item: &Item) -> Result<u64, StoreError> {
        validate_item(item)?;
        let (tbl, item, now) = (self.name.clone(), item.clone(), self.now());
        self.backend
            .write("upsert item", move |tx| upsert(tx, &tbl, item, now))
            .await
    }

    #[tracing::instrument(skip(self, writes), fields(table = %self.name, writes = writes.len()))]
    async fn transact(&self, writes: &[Write]) -> Result<(), StoreError> {
        validate_transaction(writes)?;
        let (tbl, writes, now) = (self.name.clone(), writes.to_vec(), self.now());
        self.backend
            .write("transact", move |tx| apply_writes(tx, &tbl, &writes, now))
            .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::SystemClock;

    #[test]
    fn prefix_successor_is_the_least_upper_bound() {
        assert_eq!(prefix_successor("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_successor("a%").as_deref(), Some("a&"));
        assert_eq!(prefix_successor("a\u{d7ff}").as_deref(), Some("a\u{e000}"));
        assert_eq!(prefix_successor("a\u{10ffff}").as_deref(), Some("b"));
        assert_eq!(prefix_successor("\u{10ffff}"), None);
        assert_eq!(prefix_successor(""), None);
    }

    /// `f`'s output, which it must have at the first poll: with no runtime
    /// and nothing to wake, so nothing went to the blocking pool.
    fn ready<T>(f: impl std::future::Future<Output = T>) -> T {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::future::Future::poll(f.as_mut(), &mut cx) {
            std::task::Poll::Ready(out) => out,
            std::task::Poll::Pending => panic!("a page read here waited"),
        }
    }

    /// A table reading its pages on the caller's thread (by itself, or
    /// because its backend does, as a function's does) pages exactly as
    /// one reading them on the blocking pool, cursors included, for queries
    /// and scans. Its pages are read outside any tokio runtime, where a hop
    /// to the blocking pool would panic, and each is ready at the first
    /// poll: so they are read here.
    #[test]
    fn pages_read_here_are_the_pools_pages() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::open(dir.path(), Arc::new(SystemClock)).unwrap();
        let pooled = backend.table("t", [1; 32]);
        let function = LocalBackend::open(dir.path(), Arc::new(SystemClock))
            .unwrap()
            .reading_pages_here();
        let heres = [
            backend.table("t", [1; 32]).reading_pages_here(),
            function.table("t", [1; 32]),
        ];
        for i in 0..7 {
            let item = Item::new(ItemKey::new("p", format!("s{i}"))).with("n", i);
            runtime
                .block_on(pooled.put(&item, Condition::None))
                .unwrap();
        }
        for here in &heres {
            let mut query = Query::partition("p");
            query.limit = 3;
            let (mut a, mut b) = (query.clone(), query);
            let (mut scan_a, mut scan_b) = (None, None);
            let mut pages = 0;
            loop {
                let x = runtime.block_on(pooled.query(&a)).unwrap();
                let y = ready(here.query(&b)).unwrap();
                assert_eq!(x.items, y.items);
                let sx = runtime.block_on(pooled.scan(3, scan_a.take())).unwrap();
                let sy = ready(here.scan(3, scan_b.take())).unwrap();
                assert_eq!(sx.items, sy.items);
                assert_eq!(x.next_cursor.is_some(), y.next_cursor.is_some());
                assert_eq!(sx.next_cursor.is_some(), sy.next_cursor.is_some());
                pages += 1;
                (scan_a, scan_b) = (sx.next_cursor, sy.next_cursor);
                match (x.next_cursor, y.next_cursor) {
                    (Some(cx), Some(cy)) => {
                        a.cursor = Some(cx);
                        b.cursor = Some(cy);
                    }
                    _ => break,
                }
            }
            assert_eq!(pages, 3);
            assert!(scan_a.is_none() && scan_b.is_none());
        }
    }

    /// Page and scan statements run again with other values (another
    /// partition, cursor, time or limit) without SQLite preparing them
    /// again on our connections; on a connection without the planner
    /// stability guarantee, a new LIMIT makes it prepare the statement
    /// again at every run (the relay runs one page statement per shard).
    #[test]
    fn statements_are_prepared_once() {
        let dir = tempfile::tempdir().unwrap();
        drop(LocalBackend::open(dir.path(), Arc::new(SystemClock)).unwrap());
        let path = dir.path().join("constellation.db");
        let ours = crate::local::connect(&path).unwrap();
        let plain = Connection::open(&path).unwrap();
        let position = |n: usize| Position {
            pk: format!("p{n}"),
            sk: format!("s{n}"),
            ipk: Some(format!("i{n}")),
            isk: Some(format!("j{n}")),
        };
        let runs: Vec<Vec<(String, Vec<SqlValue>)>> = vec![
            (0..3)
                .map(|n| {
                    let mut query = Query::partition(format!("p{n}"));
                    query.limit = 25 + n as u32;
                    page_sql("t", &query, None, n as i64).ok().unwrap()
                })
                .collect(),
            (0..3)
                .map(|n| {
                    let mut query = Query::partition(format!("g{n}"));
                    query.index = Some(Index::Gsi1);
                    query.sort = SortKey::AtMost(format!("{n}#~"));
                    query.limit = 100 + n as u32;
                    page_sql("t", &query, Some(&position(n)), n as i64)
                        .ok()
                        .unwrap()
                })
                .collect(),
            (0..3)
                .map(|n| scan_sql("t", 25 + n as u32, Some(&position(n)), n as i64))
                .collect(),
        ];
        for run in runs {
            let sql = &run[0].0;
            assert!(run.iter().all(|(s, _)| s == sql), "one statement per shape");
            let reprepares = |conn: &Connection| {
                let mut stmt = conn.prepare(sql).unwrap();
                for (_, args) in run.iter().cycle().take(6) {
                    let rows = stmt
                        .query_map(params_from_iter(args.clone()), |_| Ok(()))
                        .unwrap()
                        .count();
                    assert_eq!(rows, 0);
                }
                stmt.get_status(rusqlite::StatementStatus::RePrepare)
            };
            assert_eq!(reprepares(&ours), 0, "SQLite prepared {sql} again");
            assert!(
                reprepares(&plain) > 0,
                "the control did not re-prepare {sql}"
            );
        }
    }

    /// Two backends on one file stand in for two processes (`cargo lambda watch`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_adds_across_handles_never_cross_the_floor() {
        let dir = tempfile::tempdir().unwrap();
        let a = LocalBackend::open(dir.path(), Arc::new(SystemClock)).unwrap();
        let b = LocalBackend::open(dir.path(), Arc::new(SystemClock)).unwrap();
        let key = ItemKey::new("stock", "sku-1");
        let tables = [a.table("t", [1; 32]), b.table("t", [1; 32])];
        tables[0]
            .put(
                &Item::new(key.clone()).with("on_hand", 10),
                Condition::NotExists,
            )
            .await
            .unwrap();
        let add = Add {
            key: key.clone(),
            field: "on_hand".into(),
            delta: -1,
            floor: Some(0),
            expires_at: None,
        };
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let (t, add) = (tables[i % 2].clone(), add.clone());
                tokio::spawn(async move { t.add(&add).await })
            })
            .collect();
        let (mut ok, mut refused) = (0, 0);
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => ok += 1,
                Err(StoreError::ConditionFailed { .. }) => refused += 1,
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!((ok, refused), (10, 40));
        let item = tables[1].get(&key).await.unwrap().unwrap();
        assert_eq!((item.int("on_hand"), item.version), (Some(0), 11));
    }
}
