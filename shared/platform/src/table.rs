//! The Table port: a DynamoDB-shaped item store.
//!
//! Items are addressed by a partition key and a sort key, may carry keys for
//! two secondary indexes, always carry a version number, and may carry an
//! expiry time after which they are invisible (whether or not the backend has
//! physically removed them yet). Attribute values are JSON; a binary payload
//! travels beside them in [`Item::bytes`].
//!
//! Version numbers are the caller's: a put stores `item.version` as given,
//! and the condition says what the stored version must be before the write
//! (`VersionEquals(n)` with `item.version = n + 1` is the optimistic update).

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Map, Value};
use time::OffsetDateTime;

/// The most writes one [`Table::transact`] call accepts: DynamoDB's
/// `TransactWriteItems` limit (100 since 2022; the test script starts moto
/// with the same limit, its own default being the old 25).
pub const MAX_TRANSACTION_WRITES: usize = 100;
/// The most items one query or scan page returns.
pub const MAX_QUERY_LIMIT: u32 = 1000;
/// The most items one [`Table::put_batch`] call accepts: DynamoDB's
/// `BatchWriteItem` limit.
pub const MAX_BATCH_PUT: usize = 25;
/// Attribute names the adapters reserve for themselves (`expires_at` is the
/// DynamoDB table's TTL attribute).
pub const RESERVED_ATTRIBUTES: &[&str] = &[
    "pk",
    "sk",
    "gsi1pk",
    "gsi1sk",
    "gsi2pk",
    "gsi2sk",
    "expires_at",
];

/// The primary key of an item.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ItemKey {
    /// Partition key.
    pub pk: String,
    /// Sort key.
    pub sk: String,
}

impl ItemKey {
    /// A key from its two parts.
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
}

/// An item's key in one secondary index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IndexKey {
    /// Index partition key.
    pub pk: String,
    /// Index sort key.
    pub sk: String,
}

impl IndexKey {
    /// An index key from its two parts.
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
}

/// The two secondary indexes every table has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Index {
    /// `gsi1` (attributes `gsi1pk`, `gsi1sk`).
    Gsi1,
    /// `gsi2` (attributes `gsi2pk`, `gsi2sk`).
    Gsi2,
}

impl Index {
    /// The index name as provisioned.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gsi1 => "gsi1",
            Self::Gsi2 => "gsi2",
        }
    }
}

/// One stored item.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Primary key.
    pub key: ItemKey,
    /// Key in `gsi1`, if the item is indexed there.
    pub gsi1: Option<IndexKey>,
    /// Key in `gsi2`, if the item is indexed there.
    pub gsi2: Option<IndexKey>,
    /// Version number, set by the writer (see the module docs).
    pub version: u64,
    /// When the item stops being visible (whole seconds are kept).
    pub expires_at: Option<OffsetDateTime>,
    /// Named attributes. Names must not start with `_` nor be one of
    /// [`RESERVED_ATTRIBUTES`]; numbers used with [`Table::add`] must be integers.
    pub attrs: Map<String, Value>,
    /// An optional binary payload (at most 300 KiB, so that the item fits DynamoDB's 400 KB).
    pub bytes: Option<Bytes>,
}

impl Item {
    /// A new item with version 1 and no attributes.
    pub fn new(key: ItemKey) -> Self {
        Self {
            key,
            gsi1: None,
            gsi2: None,
            version: 1,
            expires_at: None,
            attrs: Map::new(),
            bytes: None,
        }
    }

    /// Sets one attribute (builder style).
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.attrs.insert(name.to_owned(), value.into());
        self
    }

    /// Whether the item is expired at `now`.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// An attribute as a string.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).and_then(Value::as_str)
    }

    /// An attribute as an integer.
    pub fn int(&self, name: &str) -> Option<i64> {
        self.attrs.get(name).and_then(Value::as_i64)
    }
}

/// What must hold of the stored item for a write to happen. An expired item
/// counts as absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// No requirement.
    None,
    /// No (live) item has this key.
    NotExists,
    /// A live item has this key.
    Exists,
    /// A live item has this key and its version is this.
    VersionEquals(u64),
}

/// A sort-key condition for a query. Comparisons are by UTF-8 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortKey {
    /// Every sort key in the partition.
    All,
    /// Sort keys starting with this.
    Prefix(String),
    /// Sort keys from `from` to `to`, both inclusive.
    Between {
        /// Lower bound, inclusive.
        from: String,
        /// Upper bound, inclusive.
        to: String,
    },
    /// Sort keys `>=` this.
    AtLeast(String),
    /// Sort keys `<=` this.
    AtMost(String),
}

/// A query of one partition of the table or of a secondary index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The index to query, or `None` for the table itself.
    pub index: Option<Index>,
    /// The partition (of the table or of the index).
    pub pk: String,
    /// Which sort keys.
    pub sort: SortKey,
    /// Newest-first (descending sort key) when true.
    pub descending: bool,
    /// The most items to return (1..=[`MAX_QUERY_LIMIT`]).
    pub limit: u32,
    /// A cursor returned by an earlier page of the same query.
    pub cursor: Option<String>,
}

impl Query {
    /// An ascending query of a whole table partition, 100 items a page.
    pub fn partition(pk: impl Into<String>) -> Self {
        Self {
            index: None,
            pk: pk.into(),
            sort: SortKey::All,
            descending: false,
            limit: 100,
            cursor: None,
        }
    }
}

/// One page of a query or scan.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Live items: in sort-key order for a query, in the backend's order for a scan.
    pub items: Vec<Item>,
    /// An opaque, tamper-evident cursor for the next page; `None` when there is none.
    pub next_cursor: Option<String>,
}

/// An atomic addition to an integer attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Add {
    /// The item; created if absent (or expired), starting from 0.
    pub key: ItemKey,
    /// The attribute to change.
    pub field: String,
    /// The amount to add (negative to subtract).
    pub delta: i64,
    /// The result must not go below this; otherwise [`StoreError::ConditionFailed`] and nothing changes.
    pub floor: Option<i64>,
    /// The expiry given to the item when this addition creates it (existing items keep theirs).
    pub expires_at: Option<OffsetDateTime>,
}

/// One write inside a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Store an item.
    Put {
        /// The item as it is to be stored.
        item: Item,
        /// What must hold first.
        condition: Condition,
    },
    /// Remove an item.
    Delete {
        /// The key to remove.
        key: ItemKey,
        /// What must hold first.
        condition: Condition,
    },
    /// Write nothing, but require a condition.
    Check {
        /// The key to check.
        key: ItemKey,
        /// What must hold.
        condition: Condition,
    },
}

/// Why a table operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A write's condition did not hold; for a transaction, `index` names the write.
    #[error("condition failed{}", index.map(|i| format!(" (write {i})")).unwrap_or_default())]
    ConditionFailed {
        /// Which write of a transaction failed, when known.
        index: Option<usize>,
    },
    /// The cursor was not issued by this table for this query, or was altered.
    #[error("invalid cursor")]
    InvalidCursor,
    /// The request itself is malformed (a caller bug, or input that slipped through).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A concurrent transaction touched the same items (DynamoDB's
    /// `TransactionConflict`): nothing was written; re-read and retry
    /// (see [`crate::retry`]).
    #[error("conflicting concurrent write")]
    Conflict(#[source] anyhow::Error),
    /// The backend is throttling or briefly unreachable; retrying may succeed.
    #[error("storage temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else from the backend.
    #[error("storage backend error")]
    Backend(#[source] anyhow::Error),
}

impl StoreError {
    /// Whether retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Conflict(_))
    }

    /// A condition failure outside a transaction.
    pub fn condition_failed() -> Self {
        Self::ConditionFailed { index: None }
    }
}

/// A DynamoDB-shaped table.
#[async_trait]
pub trait Table: Send + Sync + std::fmt::Debug {
    /// The live item with this key.
    async fn get(&self, key: &ItemKey) -> Result<Option<Item>, StoreError>;

    /// Stores `item` (replacing any item with its key) if `condition` holds.
    async fn put(&self, item: &Item, condition: Condition) -> Result<(), StoreError>;

    /// Removes the item if `condition` holds; returns it if it was live.
    async fn delete(&self, key: &ItemKey, condition: Condition)
    -> Result<Option<Item>, StoreError>;

    /// One page of a partition query.
    async fn query(&self, query: &Query) -> Result<Page, StoreError>;

    /// Adds to an integer attribute atomically, bumping the item's version;
    /// returns the new value.
    async fn add(&self, add: &Add) -> Result<i64, StoreError>;

    /// Stores `item` whatever is stored under its key now (last writer
    /// wins), with the next version: the live item's version + 1, or 1 when
    /// there is none (an expired item counts as none). `item.version` is
    /// ignored. Returns the version stored. The version is incremented
    /// atomically by the backend, so a concurrent writer never makes an
    /// upsert fail.
    async fn upsert(&self, item: &Item) -> Result<u64, StoreError>;

    /// Applies all writes or none (at most [`MAX_TRANSACTION_WRITES`], distinct keys).
    async fn transact(&self, writes: &[Write]) -> Result<(), StoreError>;

    /// One page of every live item of the table, in an order the backend
    /// chooses (stable for a given cursor: following `next_cursor` to the
    /// end visits every item present throughout exactly once); `limit`
    /// 1..=[`MAX_QUERY_LIMIT`]. The cursor is sealed like a query's and
    /// bound to "scan of this table": it continues no query, and no query's
    /// cursor continues a scan.
    ///
    /// A page may hold fewer than `limit` items, even none, while
    /// `next_cursor` is `Some`: on DynamoDB `limit` bounds the items one
    /// `Scan` reads, and expired items are dropped after reading. Only
    /// `next_cursor == None` means the end.
    async fn scan(&self, limit: u32, cursor: Option<String>) -> Result<Page, StoreError>;

    /// Stores every item unconditionally (last writer wins; each item's
    /// `version` as given, as [`Table::put`] with [`Condition::None`]), at
    /// most [`MAX_BATCH_PUT`] distinct keys per call; an empty slice does
    /// nothing. Not atomic: on an error some items may have been written,
    /// and calling again with the same items is safe (it is idempotent).
    ///
    /// The AWS adapter sends one `BatchWriteItem` and re-sends the items
    /// DynamoDB leaves unprocessed with jittered exponential backoff, a
    /// bounded number of times, then answers [`StoreError::Unavailable`];
    /// the local adapter writes the batch in one transaction.
    async fn put_batch(&self, items: &[Item]) -> Result<(), StoreError>;
}

/// Checks what both adapters require of an item before writing it.
pub fn validate_item(item: &Item) -> Result<(), StoreError> {
    if item.key.pk.is_empty() || item.key.sk.is_empty() {
        return Err(StoreError::Invalid("empty partition or sort key".into()));
    }
    for name in item.attrs.keys() {
        if name.starts_with('_') || RESERVED_ATTRIBUTES.contains(&name.as_str()) || name.is_empty()
        {
            return Err(StoreError::Invalid(format!(
                "attribute name `{name}` is reserved"
            )));
        }
    }
    if item.bytes.as_ref().is_some_and(|b| b.len() > 300 * 1024) {
        return Err(StoreError::Invalid("binary payload over 300 KiB".into()));
    }
    Ok(())
}

/// Checks what both adapters require of a transaction before running it.
pub fn validate_transaction(writes: &[Write]) -> Result<(), StoreError> {
    if writes.is_empty() || writes.len() > MAX_TRANSACTION_WRITES {
        return Err(StoreError::Invalid(format!(
            "a transaction takes 1 to {MAX_TRANSACTION_WRITES} writes, not {}",
            writes.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for write in writes {
        let key = match write {
            Write::Put { item, .. } => {
                validate_item(item)?;
                &item.key
            }
            Write::Delete { key, .. } | Write::Check { key, .. } => key,
        };
        if !seen.insert(key) {
            return Err(StoreError::Invalid(
                "a transaction may touch each key only once".into(),
            ));
        }
    }
    Ok(())
}

/// Checks what both adapters require of a batch put: at most
/// [`MAX_BATCH_PUT`] valid items with distinct keys (none is fine).
pub fn validate_batch(items: &[Item]) -> Result<(), StoreError> {
    if items.len() > MAX_BATCH_PUT {
        return Err(StoreError::Invalid(format!(
            "a batch takes at most {MAX_BATCH_PUT} items, not {}",
            items.len()
        )));
    }
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    for item in items {
        validate_item(item)?;
        if !seen.insert(&item.key) {
            return Err(StoreError::Invalid(
                "a batch may hold each key only once".into(),
            ));
        }
    }
    Ok(())
}

/// Checks a query's limit.
pub fn validate_query(query: &Query) -> Result<(), StoreError> {
    validate_limit(query.limit)
}

/// Checks a page size: 1..=[`MAX_QUERY_LIMIT`].
pub fn validate_limit(limit: u32) -> Result<(), StoreError> {
    if limit == 0 || limit > MAX_QUERY_LIMIT {
        return Err(StoreError::Invalid(format!(
            "page limit must be 1 to {MAX_QUERY_LIMIT}"
        )));
    }
    Ok(())
}
