//! A table opened on its first use ([`crate::config::Platform::table_on_first_use`]).
//!
//! Opening a table reads a secret (the key its cursors are sealed with). A
//! Lambda that opened its tables at cold start would pay that read, a round
//! trip to Secrets Manager, before its first answer, even when that answer is
//! a health check that touches no table. [`LazyTable`] defers the read to the
//! first operation that seals or opens a cursor (a query or a scan);
//! concurrent first ones share one read. A failed read is logged, answers
//! [`StoreError::Unavailable`] (a 503 for the caller), and is tried again by
//! the next one. Operations on one key (get, put, delete, add, upsert,
//! transact, batch put) use no cursor and read no secret: they go to the
//! same table opened over a random key of this process's, which no cursor
//! was ever sealed with (so, were a query sent there by mistake, it could
//! neither open a real cursor nor issue one another process accepts).

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use tokio::sync::OnceCell;

use crate::config::Platform;
use crate::table::{Add, Condition, Item, ItemKey, Page, Query, StoreError, Table, Write};

/// A table that reads its cursor secret and opens itself on first use.
pub(crate) struct LazyTable {
    platform: Platform,
    name: String,
    cursor_secret: String,
    table: OnceCell<Arc<dyn Table>>,
    point: OnceLock<Arc<dyn Table>>,
}

impl std::fmt::Debug for LazyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyTable")
            .field("name", &self.name)
            .field("open", &self.table.initialized())
            .finish_non_exhaustive()
    }
}

impl LazyTable {
    pub(crate) fn new(platform: Platform, name: String, cursor_secret: String) -> Self {
        Self {
            platform,
            name,
            cursor_secret,
            table: OnceCell::new(),
            point: OnceLock::new(),
        }
    }

    /// The table for operations that seal no cursor (see the module docs).
    fn point(&self) -> &dyn Table {
        self.point
            .get_or_init(|| self.platform.process_table(&self.name))
            .as_ref()
    }

    /// The open table, opening it first if needed.
    async fn table(&self) -> Result<&dyn Table, StoreError> {
        let table = self
            .table
            .get_or_try_init(|| self.platform.table(&self.name, &self.cursor_secret))
            .await
            .map_err(|e| {
                let e = anyhow::Error::new(e).context(format!("open table {}", self.name));
                tracing::error!(error = format!("{e:#}"), table = %self.name, "opening the table failed");
                StoreError::Unavailable(e)
            })?;
        Ok(table.as_ref())
    }
}

#[async_trait]
impl Table for LazyTable {
    async fn get(&self, key: &ItemKey) -> Result<Option<Item>, StoreError> {
        self.point().get(key).await
    }

    async fn put(&self, item: &Item, condition: Condition) -> Result<(), StoreError> {
        self.point().put(item, condition).await
    }

    async fn delete(
        &self,
        key: &ItemKey,
        condition: Condition,
    ) -> Result<Option<Item>, StoreError> {
        self.point().delete(key, condition).await
    }

    async fn query(&self, query: &Query) -> Result<Page, StoreError> {
        self.table().await?.query(query).await
    }

    async fn add(&self, add: &Add) -> Result<i64, StoreError> {
        self.point().add(add).await
    }

    async fn upsert(&self, item: &Item) -> Result<u64, StoreError> {
        self.point().upsert(item).await
    }

    async fn transact(&self, writes: &[Write]) -> Result<(), StoreError> {
        self.point().transact(writes).await
    }

    async fn scan(&self, limit: u32, cursor: Option<String>) -> Result<Page, StoreError> {
        self.table().await?.scan(limit, cursor).await
    }

    async fn put_batch(&self, items: &[Item]) -> Result<(), StoreError> {
        self.point().put_batch(items).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    const CURSOR_SECRET: &str = "fx/cursor-key";

    fn fx_platform(dir: &tempfile::TempDir) -> Platform {
        Platform::local(
            dir.path().to_path_buf(),
            String::new(),
            Arc::new(ManualClock::starting_now()),
        )
        .unwrap()
    }

    fn fx_item(n: usize) -> Item {
        Item::new(ItemKey::new("p", format!("{n:02}"))).with("n", n as i64)
    }

    #[tokio::test]
    async fn a_table_reads_its_secret_on_first_use_and_cursors_outlive_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let platform = fx_platform(&dir);
        let table = platform.table_on_first_use("things", CURSOR_SECRET);
        let secrets = platform.uncached_secrets();
        assert!(
            secrets.get(CURSOR_SECRET).await.unwrap().is_none(),
            "opening the table read (and created) its secret before any use"
        );

        // Writes and reads of one key seal no cursor: no secret is read.
        let items: Vec<Item> = (0..16).map(fx_item).collect();
        let writes = items.iter().map(|item| table.put(item, Condition::None));
        for result in futures::future::join_all(writes).await {
            result.unwrap();
        }
        assert!(table.get(&items[3].key).await.unwrap().is_some());
        assert!(
            secrets.get(CURSOR_SECRET).await.unwrap().is_none(),
            "a point operation read the cursor secret"
        );

        // The first queries arrive together: they share one open, so one
        // key is generated and stored, whatever the interleaving.
        let query = Query {
            limit: 5,
            ..Query::partition("p")
        };
        let pages = futures::future::join_all((0..8).map(|_| table.query(&query))).await;
        let pages: Vec<Page> = pages.into_iter().map(Result::unwrap).collect();
        assert!(secrets.get(CURSOR_SECRET).await.unwrap().is_some());
        let first = &pages[0];
        assert_eq!(first.items.len(), 5);
        let cursor = first.next_cursor.clone().expect("a second page");
        // Every racing first query sealed its cursor with the one stored key.
        for page in &pages {
            let next = table
                .query(&Query {
                    cursor: page.next_cursor.clone(),
                    ..query.clone()
                })
                .await
                .unwrap();
            assert_eq!(next.items.len(), 5);
        }

        // Another process (a new cold start) continues the same query.
        let again = fx_platform(&dir).table_on_first_use("things", CURSOR_SECRET);
        let next = again
            .query(&Query {
                cursor: Some(cursor),
                ..query
            })
            .await
            .unwrap();
        let numbers: Vec<i64> = next.items.iter().map(|i| i.int("n").unwrap()).collect();
        assert_eq!(numbers, vec![5, 6, 7, 8, 9]);
    }
}
