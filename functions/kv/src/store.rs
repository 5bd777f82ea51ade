//! The kv rules over the Table and Queue ports.
//!
//! Layout: one partition per (organization, namespace), `pk =
//! NS#<org>#<namespace>`, and the key itself as sort key, so a listing is
//! one partition query in byte order and no request can reach another
//! organization's keys. The value travels as the item's binary payload.
//!
//! A `PUT` without a precondition is last-writer-wins: an upsert whose
//! version the backend increments atomically, so concurrent writers of one
//! key all succeed. Conditional writes are optimistic: read the current
//! version, check the client's precondition against it, then write
//! conditioned on that version; a lost race re-reads and re-checks. Each
//! write commits its `kv.changed` event through the platform's [`Outbox`],
//! so an acknowledged write never loses its event; [`KvStore::relay_outbox`]
//! (the `kv-outbox` schedule) sends what an inline publish could not.

use std::sync::Arc;

use bytes::Bytes;
use constellation_core::OrgId;
use constellation_core::kv::{Etag, Key, KeyPrefix, Namespace, Precondition, Ttl};
use constellation_platform::outbox::{Outbox, RelayReport};
use constellation_platform::retry::{is_lost_race, retry_on_conflict};
use constellation_platform::table::{Condition, Item, ItemKey, Query, SortKey, Write};
use constellation_platform::{Clock, DomainEvent, EventBus, StoreError, Table};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::events::{CHANGED, ChangeEvent, ChangeOp};

/// A stored entry's metadata, and its value when read.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Namespace.
    pub namespace: Namespace,
    /// Key.
    pub key: Key,
    /// Changes on every write.
    pub etag: Etag,
    /// 1 on creation, +1 on every write.
    pub version: u64,
    /// The media type given on write.
    pub content_type: String,
    /// Value size in bytes.
    pub size: u64,
    /// Last write.
    pub updated_at: OffsetDateTime,
    /// When it expires, if it has a TTL.
    pub expires_at: Option<OffsetDateTime>,
    /// The value (absent in listings).
    pub value: Option<Bytes>,
}

/// A write as the client asked for it.
#[derive(Debug, Clone)]
pub struct EntryForPut {
    /// The bytes to store.
    pub value: Bytes,
    /// Their media type.
    pub content_type: String,
    /// Optional time to live.
    pub ttl: Option<Ttl>,
    /// What must hold of the current entry.
    pub precondition: Precondition,
}

/// Why a kv operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// No live entry with this key.
    #[error("no such key")]
    NotFound,
    /// The client's precondition did not hold.
    #[error("precondition failed")]
    PreconditionFailed,
    /// Too many concurrent writers; the client should retry.
    #[error("too much contention on this key")]
    Contention,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The kv store of every organization.
#[derive(Debug, Clone)]
pub struct KvStore {
    table: Arc<dyn Table>,
    outbox: Outbox,
    clock: Arc<dyn Clock>,
}

fn partition(org: &OrgId, ns: &Namespace) -> String {
    format!("NS#{org}#{ns}")
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn random_etag() -> Etag {
    Etag::from_bytes(*uuid::Uuid::new_v4().as_bytes())
}

impl KvStore {
    /// A store over `table`, publishing changes on `bus` through outbox
    /// records in `table`.
    pub fn new(table: Arc<dyn Table>, bus: Arc<dyn EventBus>, clock: Arc<dyn Clock>) -> Self {
        Self::with_outbox(table.clone(), Outbox::new(table, bus, clock.clone()), clock)
    }

    /// A store over `table` committing its changes through `outbox` (see
    /// [`constellation_platform::config::Platform::outbox`]).
    pub fn with_outbox(table: Arc<dyn Table>, outbox: Outbox, clock: Arc<dyn Clock>) -> Self {
        Self {
            table,
            outbox,
            clock,
        }
    }

    /// Reads one entry with its value.
    #[tracing::instrument(skip(self), fields(%org, %ns))]
    pub async fn get(&self, org: &OrgId, ns: &Namespace, key: &Key) -> Result<Entry, KvError> {
        let item = self
            .table
            .get(&ItemKey::new(partition(org, ns), key.as_str()))
            .await?
            .ok_or(KvError::NotFound)?;
        entry_from_item(ns, &item, true)
    }

    /// Creates or replaces an entry; returns it and whether it was created.
    #[tracing::instrument(skip(self, put), fields(%org, %ns, size = put.value.len()))]
    pub async fn put(
        &self,
        org: &OrgId,
        ns: &Namespace,
        key: &Key,
        put: EntryForPut,
    ) -> Result<(Entry, bool), KvError> {
        let item_key = ItemKey::new(partition(org, ns), key.as_str());
        if put.precondition == Precondition::None {
            return self.put_unconditionally(org, ns, key, item_key, put).await;
        }
        let attempt = || async {
            let current = self.table.get(&item_key).await?;
            let current_tag = current.as_ref().map(stored_etag).transpose()?;
            if !put.precondition.admits(current_tag.as_ref()) {
                return Err(KvError::PreconditionFailed);
            }
            let now = self.clock.now();
            let version = current.as_ref().map_or(1, |i| i.version + 1);
            let mut item = new_item(item_key.clone(), &put, now);
            item.version = version;
            let condition = match &current {
                Some(c) => Condition::VersionEquals(c.version),
                None => Condition::NotExists,
            };
            let event = self.event(org, ns, key, version, ChangeOp::Put, now)?;
            let write = Write::Put {
                item: item.clone(),
                condition,
            };
            self.commit(write, event).await?;
            Ok((entry_from_item(ns, &item, false)?, current.is_none()))
        };
        retry_on_conflict(attempt, lost_race)
            .await
            .map_err(contention)
    }

    /// Last writer wins: never a precondition failure, never a lost race.
    async fn put_unconditionally(
        &self,
        org: &OrgId,
        ns: &Namespace,
        key: &Key,
        item_key: ItemKey,
        put: EntryForPut,
    ) -> Result<(Entry, bool), KvError> {
        let now = self.clock.now();
        let mut item = new_item(item_key, &put, now);
        // The outbox sets the version the upsert gets.
        let event = self.event(org, ns, key, 0, ChangeOp::Put, now)?;
        item.version = self.outbox.upsert(item.clone(), event).await?;
        Ok((entry_from_item(ns, &item, false)?, item.version == 1))
    }

    /// Deletes an entry if it exists and the precondition holds; returns what was deleted.
    #[tracing::instrument(skip(self), fields(%org, %ns))]
    pub async fn delete(
        &self,
        org: &OrgId,
        ns: &Namespace,
        key: &Key,
        precondition: &Precondition,
    ) -> Result<Entry, KvError> {
        let item_key = ItemKey::new(partition(org, ns), key.as_str());
        let attempt = || async {
            let current = self.table.get(&item_key).await?.ok_or(KvError::NotFound)?;
            if !precondition.admits(Some(&stored_etag(&current)?)) {
                return Err(KvError::PreconditionFailed);
            }
            let now = self.clock.now();
            let event = self.event(org, ns, key, current.version + 1, ChangeOp::Delete, now)?;
            let write = Write::Delete {
                key: item_key.clone(),
                condition: Condition::VersionEquals(current.version),
            };
            self.commit(write, event).await?;
            entry_from_item(ns, &current, false)
        };
        retry_on_conflict(attempt, lost_race)
            .await
            .map_err(contention)
    }

    /// One page of the namespace's keys starting with `prefix`, in byte order.
    #[tracing::instrument(skip(self, cursor), fields(%org, %ns))]
    pub async fn list(
        &self,
        org: &OrgId,
        ns: &Namespace,
        prefix: &KeyPrefix,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<Entry>, Option<String>), KvError> {
        let query = Query {
            index: None,
            pk: partition(org, ns),
            sort: if prefix.as_str().is_empty() {
                SortKey::All
            } else {
                SortKey::Prefix(prefix.as_str().to_owned())
            },
            descending: false,
            limit,
            cursor,
        };
        let page = self.table.query(&query).await?;
        let entries = page
            .items
            .iter()
            .map(|i| entry_from_item(ns, i, false))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((entries, page.next_cursor))
    }

    fn event(
        &self,
        org: &OrgId,
        ns: &Namespace,
        key: &Key,
        version: u64,
        op: ChangeOp,
        at: OffsetDateTime,
    ) -> Result<DomainEvent, StoreError> {
        let data = ChangeEvent {
            namespace: ns.to_string(),
            key: key.to_string(),
            version,
            op,
        };
        DomainEvent::new(CHANGED, org, at, data).map_err(|e| StoreError::Invalid(e.to_string()))
    }

    /// Commits `write` with its change event (see [`Outbox::commit`]).
    async fn commit(&self, write: Write, event: DomainEvent) -> Result<(), StoreError> {
        self.outbox.commit(vec![write], &[event]).await
    }

    /// The outbox (relayed by the `kv-outbox` schedule).
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Publishes change events older than `min_age` whose inline publish
    /// failed.
    #[tracing::instrument(skip(self))]
    pub async fn relay_outbox(&self, min_age: time::Duration) -> Result<RelayReport, StoreError> {
        self.outbox.relay(min_age).await
    }
}

/// Whether a write lost a race on its item (the write is the transaction's first).
fn lost_race(e: &KvError) -> bool {
    matches!(e, KvError::Store(e) if is_lost_race(e, 0))
}

/// A race still lost after every retry is contention the client may retry.
fn contention(e: KvError) -> KvError {
    if lost_race(&e) {
        KvError::Contention
    } else {
        e
    }
}

/// The item a write stores (its version is the caller's to set).
fn new_item(key: ItemKey, put: &EntryForPut, now: OffsetDateTime) -> Item {
    let mut item = Item::new(key)
        .with("content_type", put.content_type.as_str())
        .with("etag", random_etag().as_str())
        .with("updated_at", rfc3339(now));
    item.bytes = Some(put.value.clone());
    item.expires_at = put
        .ttl
        .map(|t| now + time::Duration::seconds(i64::try_from(t.seconds()).unwrap_or(i64::MAX)));
    item
}

fn stored_etag(item: &Item) -> Result<Etag, StoreError> {
    item.str("etag")
        .and_then(|s| Etag::parse(s).ok())
        .ok_or_else(|| StoreError::Backend(anyhow::anyhow!("kv item without a valid etag")))
}

fn entry_from_item(ns: &Namespace, item: &Item, with_value: bool) -> Result<Entry, KvError> {
    let corrupt = |what: &str| {
        KvError::Store(StoreError::Backend(anyhow::anyhow!(
            "kv item {}/{} has no valid {what}",
            item.key.pk,
            item.key.sk
        )))
    };
    let key = Key::parse(&item.key.sk).map_err(|_| corrupt("key"))?;
    let updated_at = item
        .str("updated_at")
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
        .ok_or_else(|| corrupt("updated_at"))?;
    let value = item.bytes.clone().unwrap_or_default();
    Ok(Entry {
        namespace: ns.clone(),
        key,
        etag: stored_etag(item)?,
        version: item.version,
        content_type: item
            .str("content_type")
            .ok_or_else(|| corrupt("content_type"))?
            .to_owned(),
        size: value.len() as u64,
        updated_at,
        expires_at: item.expires_at,
        value: with_value.then_some(value),
    })
}

/// Whether `item` is a kv entry this build can serve (the check an import
/// of an export runs on each record): `NS#<org>#<namespace>` with a key,
/// etag, content type and update time as the API writes them, and a value
/// within [`constellation_core::kv::MAX_VALUE_BYTES`].
pub fn check_item(item: &Item) -> Result<(), String> {
    let Some(("NS", rest)) = item.key.pk.split_once('#') else {
        return Err(format!("`{}` is not a kv record", item.key.pk));
    };
    let (org, ns) = rest
        .split_once('#')
        .ok_or_else(|| format!("`{}` is not NS#<org>#<namespace>", item.key.pk))?;
    OrgId::parse(org).map_err(|e| constellation_platform::observe::error_chain(&e))?;
    let ns = Namespace::parse(ns).map_err(|e| constellation_platform::observe::error_chain(&e))?;
    let entry = entry_from_item(&ns, item, false)
        .map_err(|e| constellation_platform::observe::error_chain(&e))?;
    if entry.size > constellation_core::kv::MAX_VALUE_BYTES as u64 {
        return Err(format!(
            "value: {} bytes, more than the {} a PUT accepts",
            entry.size,
            constellation_core::kv::MAX_VALUE_BYTES
        ));
    }
    if entry.content_type.is_empty() || entry.content_type.chars().any(char::is_control) {
        return Err("content_type: must be a media type".to_owned());
    }
    Ok(())
}
