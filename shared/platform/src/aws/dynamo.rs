//! The Table port over DynamoDB.
//!
//! Attribute layout (the SAM template and [`super::provision`] depend on it):
//! `pk`, `sk`, `gsi1pk`, `gsi1sk`, `gsi2pk`, `gsi2sk` (S) for the keys, `_v`
//! (N) for the version, `expires_at` (N, unix seconds; the table's TTL
//! attribute), `_b` (B) for [`Item::bytes`], and every entry of
//! [`Item::attrs`] as a top-level attribute converted by `serde_dynamo`.
//!
//! DynamoDB removes expired items lazily (up to days later), so expiry is
//! judged here against the injected clock: an expired item is filtered out of
//! reads and counts as absent in every condition expression. Every attribute
//! name goes through `ExpressionAttributeNames`, and only placeholders that
//! an expression uses are sent (DynamoDB rejects unused ones).
//!
//! A scan is one `Scan` call per page: `Limit` bounds the items DynamoDB
//! reads, the expiry filter drops some of those afterwards, and the page's
//! `LastEvaluatedKey` becomes its cursor, so a page can be short or empty
//! and still have a next one. A batch put is one `BatchWriteItem`, whose
//! `UnprocessedItems` are sent again by [`resend_unprocessed`].

use std::sync::Arc;

use anyhow::anyhow;
use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, Put, PutRequest, ReturnValue,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem, WriteRequest,
};
use serde_json::Value;
use time::OffsetDateTime;

use super::dynamo_layout::{
    BYTES, EXPIRES, Expr, PK, Record, SK, SortRange, VERSION, condition_expr, from_record,
    index_key, key_attributes, key_record, live_expr, read_expiry, read_version, start_record,
    take_string, to_record,
};
use super::{classify, error_code};
use crate::clock::Clock;
use crate::cursor::{CursorSealer, Position};
use crate::retry::{Backoff, resend_unprocessed};
use crate::table::{
    Add, Condition, Index, Item, ItemKey, Page, Query, RESERVED_ATTRIBUTES, StoreError, Table,
    Write, validate_batch, validate_item, validate_limit, validate_query, validate_transaction,
};

/// How often [`Table::add`] and [`Table::upsert`] retry when other writers
/// keep changing the item between their steps (only around an item's expiry
/// for an upsert).
const MAX_ADD_ATTEMPTS: usize = 8;

/// How [`Table::put_batch`] re-sends what `BatchWriteItem` leaves
/// unprocessed: 8 sends in all, pauses from 50 ms doubling to 1 s (jittered
/// up to twice that), so it gives up after 3.5 to 7 s of throttling.
/// The SDK's own retries of a wholly refused request come on top.
const BATCH_RESEND: Backoff = Backoff {
    attempts: 8,
    base: std::time::Duration::from_millis(50),
    cap: std::time::Duration::from_secs(1),
};

/// A DynamoDB table shaped as [`super::provision`] creates it.
#[derive(Clone, Debug)]
pub struct DynamoTable {
    /// Its client is built on first use, not with the adapter (see
    /// [`super::AwsBackend`]): a cold start that does not use it
    /// does not set up the HTTPS connector.
    backend: super::AwsBackend,
    name: String,
    sealer: CursorSealer,
    clock: Arc<dyn Clock>,
}

impl DynamoTable {
    fn client(&self) -> &aws_sdk_dynamodb::Client {
        self.backend.dynamodb()
    }

    pub(crate) fn new(
        backend: super::AwsBackend,
        name: &str,
        cursor_key: [u8; 32],
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            backend,
            name: name.to_owned(),
            sealer: CursorSealer::new(cursor_key, name),
            clock,
        }
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Maps an SDK failure of `op`: a failed condition, a transient failure,
    /// or a backend error naming the operation and table.
    fn fail<E>(&self, op: &str, err: SdkError<E>) -> StoreError
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata
            + std::error::Error
            + Send
            + Sync
            + 'static,
    {
        match error_code(&err) {
            Some("ConditionalCheckFailedException") => return StoreError::condition_failed(),
            // A single write that met a transaction in progress on its item.
            Some("TransactionConflictException") => {
                return StoreError::Conflict(
                    anyhow::Error::new(err)
                        .context(format!("DynamoDB {op} on table {}", self.name)),
                );
            }
            _ => {}
        }
        let (transient, err) = classify(err, format!("DynamoDB {op} on table {}", self.name));
        if transient {
            StoreError::Unavailable(err)
        } else {
            StoreError::Backend(err)
        }
    }

    fn malformed(&self, what: impl std::fmt::Display) -> StoreError {
        StoreError::Backend(anyhow!("malformed item in table {}: {what}", self.name))
    }

    /// Stores a fresh item holding only `add.field = add.delta`, in place of an
    /// absent item (`replacing: None`) or of an expired one with that version.
    /// `Ok(false)` when the item changed meanwhile.
    async fn create_for_add(
        &self,
        add: &Add,
        replacing: Option<u64>,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut item = Item::new(add.key.clone());
        item.expires_at = add.expires_at;
        item.attrs.insert(add.field.clone(), Value::from(add.delta));
        self.replace_absent(&item, replacing, now, "PutItem (add)")
            .await
    }

    /// Stores `item` in place of an absent item (`replacing: None`) or of an
    /// expired one with that version. `Ok(false)` when the item changed meanwhile.
    async fn replace_absent(
        &self,
        item: &Item,
        replacing: Option<u64>,
        now: OffsetDateTime,
        op: &str,
    ) -> Result<bool, StoreError> {
        let mut e = Expr::default();
        let condition = match replacing {
            None => format!("attribute_not_exists({})", e.name(PK)),
            Some(version) => format!(
                "{v} = {old} AND {exp} <= {now}",
                v = e.name(VERSION),
                old = e.number(version),
                exp = e.name(EXPIRES),
                now = e.number(now.unix_timestamp()),
            ),
        };
        let result = self
            .client()
            .put_item()
            .table_name(&self.name)
            .set_item(Some(to_record(item)?))
            .condition_expression(condition)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) => match self.fail(op, err) {
                StoreError::ConditionFailed { .. } => Ok(false),
                other => Err(other),
            },
        }
    }

    /// Overwrites the item unless it is expired, adding 1 to its version in
    /// the same update; `Done(version)` or `Expired(old version)`.
    async fn upsert_live(
        &self,
        item: &Item,
        now: OffsetDateTime,
    ) -> Result<UpsertStep, StoreError> {
        let mut record = to_record(item)?;
        for attr in [PK, SK, VERSION] {
            record.remove(attr);
        }
        let mut e = Expr::default();
        let mut sets = Vec::with_capacity(record.len());
        for (attr, value) in record.iter() {
            sets.push(format!("{} = {}", e.name(attr), e.value(value.clone())));
        }
        let mut update = String::new();
        if !sets.is_empty() {
            update.push_str(&format!("SET {} ", sets.join(", ")));
        }
        update.push_str(&format!("ADD {} {}", e.name(VERSION), e.number(1)));
        let absent: Vec<String> = [EXPIRES, BYTES, "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"]
            .into_iter()
            .filter(|attr| !record.contains_key(*attr))
            .map(|attr| e.name(attr))
            .collect();
        if !absent.is_empty() {
            update.push_str(&format!(" REMOVE {}", absent.join(", ")));
        }
        let condition = format!(
            "attribute_not_exists({pk}) OR attribute_not_exists({exp}) OR {exp} > {now}",
            pk = e.name(PK),
            exp = e.name(EXPIRES),
            now = e.number(now.unix_timestamp()),
        );
        let updated = self
            .conditional_update(
                "UpdateItem (upsert)",
                &item.key,
                update,
                condition,
                &e,
                ReturnValue::AllOld,
            )
            .await?;
        match updated {
            Updated::Done(old) => {
                let version = read_version(&old).map_err(|e| self.malformed(e))? + 1;
                // Attributes of the old item that the new one lacks.
                let stale: Vec<&String> = old
                    .keys()
                    .filter(|a| {
                        !record.contains_key(*a) && !matches!(a.as_str(), PK | SK | VERSION)
                    })
                    .collect();
                if !stale.is_empty() {
                    self.remove_stale(&item.key, &stale, version).await?;
                }
                Ok(UpsertStep::Done(version))
            }
            Updated::Refused(old) => {
                let version = read_version(&old).map_err(|e| self.malformed(e))?;
                Ok(UpsertStep::Expired(version))
            }
        }
    }

    /// One UpdateItem whose failed condition is an outcome, not an error:
    /// `Done` with the attributes `returns` asks for, or `Refused` with the
    /// item the condition saw (empty when there was none).
    async fn conditional_update(
        &self,
        op: &str,
        key: &ItemKey,
        update: String,
        condition: String,
        e: &Expr,
        returns: ReturnValue,
    ) -> Result<Updated, StoreError> {
        let result = self
            .client()
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key_record(key)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .return_values(returns)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => Ok(Updated::Done(out.attributes.unwrap_or_default())),
            Err(SdkError::ServiceError(se))
                if matches!(
                    se.err(),
                    UpdateItemError::ConditionalCheckFailedException(_)
                ) =>
            {
                let old = match se.err() {
                    UpdateItemError::ConditionalCheckFailedException(ccf) => ccf.item().cloned(),
                    _ => None,
                };
                Ok(Updated::Refused(old.unwrap_or_default()))
            }
            Err(err) => Err(self.fail(op, err)),
        }
    }

    /// Removes attributes an upsert left from the item it replaced, unless a
    /// later write has replaced the item again (its own upsert cleans up).
    async fn remove_stale(
        &self,
        key: &ItemKey,
        stale: &[&String],
        version: u64,
    ) -> Result<(), StoreError> {
        let mut e = Expr::default();
        let names: Vec<String> = stale.iter().map(|a| e.name(a)).collect();
        let update = format!("REMOVE {}", names.join(", "));
        let condition = format!("{} = {}", e.name(VERSION), e.number(version));
        // A refused condition means a later write replaced the item.
        self.conditional_update(
            "UpdateItem (upsert cleanup)",
            key,
            update,
            condition,
            &e,
            ReturnValue::None,
        )
        .await
        .map(|_| ())
    }

    /// Adds to a live item. On a failed condition, says why from the old item.
    async fn add_to_live(&self, add: &Add, now: OffsetDateTime) -> Result<AddStep, StoreError> {
        let mut e = Expr::default();
        let f = e.name(&add.field);
        let v = e.name(VERSION);
        let update = format!(
            "SET {f} = if_not_exists({f}, {zero}) + {d} ADD {v} {one}",
            zero = e.number(0),
            d = e.number(add.delta),
            one = e.number(1),
        );
        let mut condition = live_expr(&mut e, now);
        if let Some(floor) = add.floor {
            // new = old + delta >= floor  <=>  old >= floor - delta (in i128: no overflow).
            let bound = e.number(i128::from(floor) - i128::from(add.delta));
            let absent_ok = if add.delta >= floor {
                format!(" OR attribute_not_exists({f})")
            } else {
                String::new()
            };
            condition = format!("{condition} AND ({f} >= {bound}{absent_ok})");
        }
        let updated = self
            .conditional_update(
                "UpdateItem (add)",
                &add.key,
                update,
                condition,
                &e,
                ReturnValue::UpdatedNew,
            )
            .await?;
        match updated {
            Updated::Done(attrs) => {
                let value = attrs
                    .get(&add.field)
                    .ok_or_else(|| self.malformed("add returned no value"))?;
                let n = match value {
                    AttributeValue::N(n) => n.parse::<i64>().ok(),
                    _ => None,
                };
                n.map(AddStep::Done)
                    .ok_or_else(|| self.malformed(format!("`{}` is not an integer", add.field)))
            }
            Updated::Refused(old) if old.is_empty() => Ok(AddStep::Absent),
            Updated::Refused(old) => {
                let expires = read_expiry(&old).map_err(|e| self.malformed(e))?;
                if expires.is_some_and(|at| at <= now) {
                    let version = read_version(&old).map_err(|e| self.malformed(e))?;
                    Ok(AddStep::Expired(version))
                } else {
                    Ok(AddStep::FloorViolated)
                }
            }
        }
    }

    /// One `BatchWriteItem` of `requests`; the requests DynamoDB left unprocessed.
    async fn batch_write(
        &self,
        requests: Vec<WriteRequest>,
    ) -> Result<Vec<WriteRequest>, StoreError> {
        let out = self
            .client()
            .batch_write_item()
            .request_items(&self.name, requests)
            .send()
            .await
            .map_err(|e| self.fail("BatchWriteItem", e))?;
        Ok(out
            .unprocessed_items
            .and_then(|mut tables| tables.remove(&self.name))
            .unwrap_or_default())
    }

    fn decode(&self, record: Record) -> Result<Item, StoreError> {
        from_record(record).map_err(|e| self.malformed(e))
    }

    fn position(&self, index: Option<Index>, item: &Item) -> Result<Position, StoreError> {
        let (ipk, isk) = match index {
            None => (None, None),
            Some(i) => {
                let key = index_key(item, i).ok_or_else(|| {
                    self.malformed(format!("item in {} without its index key", i.name()))
                })?;
                (Some(key.pk.clone()), Some(key.sk.clone()))
            }
        };
        Ok(Position {
            pk: item.key.pk.clone(),
            sk: item.key.sk.clone(),
            ipk,
            isk,
        })
    }
}

/// What a conditional UpdateItem came to (see `DynamoTable::conditional_update`).
enum Updated {
    /// Applied; the attributes asked for.
    Done(Record),
    /// The condition failed; the item it saw (empty: none).
    Refused(Record),
}

/// What one attempt of [`Table::upsert`] found.
enum UpsertStep {
    /// Stored with this version.
    Done(u64),
    /// An expired item with this version: replace it.
    Expired(u64),
}

/// What one attempt of [`Table::add`] found.
enum AddStep {
    /// Added; the new value.
    Done(i64),
    /// No item: create one.
    Absent,
    /// An expired item with this version: replace it.
    Expired(u64),
    /// A live item whose value would go below the floor.
    FloorViolated,
}

#[async_trait]
impl Table for DynamoTable {
    #[tracing::instrument(skip(self, key), fields(table = %self.name))]
    async fn get(&self, key: &ItemKey) -> Result<Option<Item>, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(&self.name)
            .set_key(Some(key_record(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.fail("GetItem", e))?;
        let now = self.clock.now();
        match out.item.filter(|r| !r.is_empty()) {
            None => Ok(None),
            Some(record) => Ok(Some(self.decode(record)?).filter(|i| !i.is_expired(now))),
        }
    }

    #[tracing::instrument(
        skip(self, item),
        fields(table = %self.name, ?condition)
    )]
    async fn put(&self, item: &Item, condition: Condition) -> Result<(), StoreError> {
        validate_item(item)?;
        let mut e = Expr::default();
        let cond = condition_expr(&mut e, condition, self.clock.now());
        self.client()
            .put_item()
            .table_name(&self.name)
            .set_item(Some(to_record(item)?))
            .set_condition_expression(cond)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .send()
            .await
            .map_err(|e| self.fail("PutItem", e))?;
        Ok(())
    }

    #[tracing::instrument(
        skip(self, key),
        fields(table = %self.name, ?condition)
    )]
    async fn delete(
        &self,
        key: &ItemKey,
        condition: Condition,
    ) -> Result<Option<Item>, StoreError> {
        let now = self.clock.now();
        let mut e = Expr::default();
        let cond = condition_expr(&mut e, condition, now);
        let out = self
            .client()
            .delete_item()
            .table_name(&self.name)
            .set_key(Some(key_record(key)))
            .set_condition_expression(cond)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| self.fail("DeleteItem", e))?;
        match out.attributes.filter(|r| !r.is_empty()) {
            None => Ok(None),
            Some(record) => Ok(Some(self.decode(record)?).filter(|i| !i.is_expired(now))),
        }
    }

    #[tracing::instrument(
        skip(self, query),
        fields(table = %self.name, index = ?query.index.map(Index::name), limit = query.limit)
    )]
    async fn query(&self, query: &Query) -> Result<Page, StoreError> {
        validate_query(query)?;
        let start = match &query.cursor {
            Some(cursor) => Some(self.sealer.open(query, cursor)?),
            None => None,
        };
        let (pk_attr, sk_attr) = key_attributes(query.index);
        let Some(range) = SortRange::of(&query.sort) else {
            return Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            });
        };

        let now = self.clock.now();
        let mut e = Expr::default();
        let mut key_condition = format!("{} = {}", e.name(pk_attr), e.string(&query.pk));
        let range_condition = match range {
            SortRange::All => None,
            SortRange::Prefix(p) => {
                Some(format!("begins_with({}, {})", e.name(sk_attr), e.string(p)))
            }
            SortRange::Between(from, to) => Some(format!(
                "{} BETWEEN {} AND {}",
                e.name(sk_attr),
                e.string(from),
                e.string(to)
            )),
            SortRange::AtLeast(from) => Some(format!("{} >= {}", e.name(sk_attr), e.string(from))),
            SortRange::AtMost(to) => Some(format!("{} <= {}", e.name(sk_attr), e.string(to))),
        };
        if let Some(range_condition) = range_condition {
            key_condition = format!("{key_condition} AND {range_condition}");
        }
        // Saves reading expired items back; correctness rests on the check below.
        let filter = format!(
            "attribute_not_exists({exp}) OR {exp} > {now}",
            exp = e.name(EXPIRES),
            now = e.number(now.unix_timestamp()),
        );

        let limit = query.limit as usize;
        let wanted = limit + 1;
        let mut start_key = start.map(|p| start_record(query.index, p));
        let mut live = Vec::with_capacity(wanted);
        loop {
            let out = self
                .client()
                .query()
                .table_name(&self.name)
                .set_index_name(query.index.map(|i| i.name().to_owned()))
                .key_condition_expression(&key_condition)
                .filter_expression(&filter)
                .set_expression_attribute_names(e.names())
                .set_expression_attribute_values(e.values())
                .scan_index_forward(!query.descending)
                .limit(i32::try_from(wanted).unwrap_or(i32::MAX))
                .set_consistent_read(query.index.is_none().then_some(true))
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .map_err(|e| self.fail("Query", e))?;
            for record in out.items.unwrap_or_default() {
                let item = self.decode(record)?;
                if !item.is_expired(now) {
                    live.push(item);
                }
            }
            match out.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(key) if live.len() < wanted => start_key = Some(key),
                _ => break,
            }
        }

        let more = live.len() > limit;
        live.truncate(limit);
        let next_cursor = match live.last() {
            Some(last) if more => Some(self.sealer.seal(query, &self.position(query.index, last)?)),
            _ => None,
        };
        Ok(Page {
            items: live,
            next_cursor,
        })
    }

    #[tracing::instrument(
        skip(self, add),
        fields(table = %self.name, field = %add.field, delta = add.delta)
    )]
    async fn add(&self, add: &Add) -> Result<i64, StoreError> {
        if add.key.pk.is_empty() || add.key.sk.is_empty() {
            return Err(StoreError::Invalid("empty partition or sort key".into()));
        }
        if add.field.is_empty()
            || add.field.starts_with('_')
            || RESERVED_ATTRIBUTES.contains(&add.field.as_str())
        {
            return Err(StoreError::Invalid(format!(
                "attribute name `{}` is reserved",
                add.field
            )));
        }
        let below_floor_from_zero = add.floor.is_some_and(|floor| add.delta < floor);
        for _ in 0..MAX_ADD_ATTEMPTS {
            let now = self.clock.now();
            let replacing = match self.add_to_live(add, now).await? {
                AddStep::Done(value) => return Ok(value),
                AddStep::FloorViolated => return Err(StoreError::condition_failed()),
                AddStep::Absent => None,
                AddStep::Expired(version) => Some(version),
            };
            if below_floor_from_zero {
                return Err(StoreError::condition_failed());
            }
            if self.create_for_add(add, replacing, now).await? {
                return Ok(add.delta);
            }
        }
        Err(StoreError::Unavailable(anyhow!(
            "add on table {} kept racing with other writers",
            self.name
        )))
    }

    #[tracing::instrument(skip(self, item), fields(table = %self.name))]
    async fn upsert(&self, item: &Item) -> Result<u64, StoreError> {
        validate_item(item)?;
        for _ in 0..MAX_ADD_ATTEMPTS {
            let now = self.clock.now();
            match self.upsert_live(item, now).await? {
                UpsertStep::Done(version) => return Ok(version),
                UpsertStep::Expired(old) => {
                    // An expired item counts as none: start again at 1.
                    let fresh = Item {
                        version: 1,
                        ..item.clone()
                    };
                    if self
                        .replace_absent(&fresh, Some(old), now, "PutItem (upsert)")
                        .await?
                    {
                        return Ok(1);
                    }
                }
            }
        }
        Err(StoreError::Unavailable(anyhow!(
            "upsert on table {} kept racing with items expiring",
            self.name
        )))
    }

    #[tracing::instrument(skip(self, cursor), fields(table = %self.name))]
    async fn scan(&self, limit: u32, cursor: Option<String>) -> Result<Page, StoreError> {
        validate_limit(limit)?;
        let start = match &cursor {
            Some(cursor) => Some(start_record(None, self.sealer.open_scan(cursor)?)),
            None => None,
        };
        let now = self.clock.now();
        let mut e = Expr::default();
        // Saves reading expired items back; correctness rests on the check below.
        let filter = format!(
            "attribute_not_exists({exp}) OR {exp} > {now}",
            exp = e.name(EXPIRES),
            now = e.number(now.unix_timestamp()),
        );
        let out = self
            .client()
            .scan()
            .table_name(&self.name)
            .filter_expression(filter)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| self.fail("Scan", e))?;
        let mut items = Vec::with_capacity(out.items.as_ref().map_or(0, Vec::len));
        for record in out.items.unwrap_or_default() {
            let item = self.decode(record)?;
            if !item.is_expired(now) {
                items.push(item);
            }
        }
        let next_cursor = match out.last_evaluated_key.filter(|k| !k.is_empty()) {
            None => None,
            Some(mut key) => {
                let pk = take_string(&mut key, PK).map_err(|e| self.malformed(e))?;
                let sk = take_string(&mut key, SK).map_err(|e| self.malformed(e))?;
                let (Some(pk), Some(sk)) = (pk, sk) else {
                    return Err(self.malformed("LastEvaluatedKey without pk and sk"));
                };
                Some(self.sealer.seal_scan(&Position {
                    pk,
                    sk,
                    ipk: None,
                    isk: None,
                }))
            }
        };
        Ok(Page { items, next_cursor })
    }

    #[tracing::instrument(skip(self, items), fields(table = %self.name, items = items.len()))]
    async fn put_batch(&self, items: &[Item]) -> Result<(), StoreError> {
        validate_batch(items)?;
        let mut requests = Vec::with_capacity(items.len());
        for item in items {
            let put = PutRequest::builder()
                .set_item(Some(to_record(item)?))
                .build()
                .map_err(|e| {
                    StoreError::Backend(anyhow::Error::new(e).context("building a batch"))
                })?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        resend_unprocessed(
            requests,
            BATCH_RESEND,
            |pending| self.batch_write(pending),
            |left| {
                StoreError::Unavailable(anyhow!(
                    "DynamoDB BatchWriteItem on table {} left {} of {} items unprocessed \
                     after {} attempts",
                    self.name,
                    left.len(),
                    items.len(),
                    BATCH_RESEND.attempts
                ))
            },
        )
        .await
    }

    #[tracing::instrument(skip(self, writes), fields(table = %self.name, writes = writes.len()))]
    async fn transact(&self, writes: &[Write]) -> Result<(), StoreError> {
        validate_transaction(writes)?;
        let now = self.clock.now();
        let build = |e: aws_sdk_dynamodb::error::BuildError| {
            StoreError::Backend(anyhow::Error::new(e).context("building a transaction"))
        };
        let mut items = Vec::with_capacity(writes.len());
        for write in writes {
            let mut e = Expr::default();
            let item = match write {
                Write::Put { item, condition } => {
                    let cond = condition_expr(&mut e, *condition, now);
                    let put = Put::builder()
                        .table_name(&self.name)
                        .set_item(Some(to_record(item)?))
                        .set_condition_expression(cond)
                        .set_expression_attribute_names(e.names())
                        .set_expression_attribute_values(e.values())
                        .build()
                        .map_err(build)?;
                    TransactWriteItem::builder().put(put).build()
                }
                Write::Delete { key, condition } => {
                    let cond = condition_expr(&mut e, *condition, now);
                    let delete = Delete::builder()
                        .table_name(&self.name)
                        .set_key(Some(key_record(key)))
                        .set_condition_expression(cond)
                        .set_expression_attribute_names(e.names())
                        .set_expression_attribute_values(e.values())
                        .build()
                        .map_err(build)?;
                    TransactWriteItem::builder().delete(delete).build()
                }
                Write::Check { key, condition } => {
                    // A check must carry an expression; `None` gets one that always holds.
                    let cond = condition_expr(&mut e, *condition, now).unwrap_or_else(|| {
                        let pk = e.name(PK);
                        format!("attribute_exists({pk}) OR attribute_not_exists({pk})")
                    });
                    let check = ConditionCheck::builder()
                        .table_name(&self.name)
                        .set_key(Some(key_record(key)))
                        .condition_expression(cond)
                        .set_expression_attribute_names(e.names())
                        .set_expression_attribute_values(e.values())
                        .build()
                        .map_err(build)?;
                    TransactWriteItem::builder().condition_check(check).build()
                }
            };
            items.push(item);
        }
        let result = self
            .client()
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(()),
            Err(err) => err,
        };
        if let Some(TransactWriteItemsError::TransactionCanceledException(cancel)) =
            err.as_service_error()
        {
            let reasons = cancel.cancellation_reasons();
            let code_is = |wanted: &[&str]| {
                reasons
                    .iter()
                    .position(|r| r.code().is_some_and(|c| wanted.contains(&c)))
            };
            if let Some(index) = code_is(&["ConditionalCheckFailed"]) {
                return Err(StoreError::ConditionFailed { index: Some(index) });
            }
            if code_is(&["TransactionConflict"]).is_some() {
                return Err(StoreError::Conflict(anyhow::Error::new(err).context(
                    format!("DynamoDB TransactWriteItems on table {}", self.name),
                )));
            }
            if code_is(&[
                "ThrottlingError",
                "ProvisionedThroughputExceeded",
                "RequestLimitExceeded",
            ])
            .is_some()
            {
                return Err(StoreError::Unavailable(anyhow::Error::new(err).context(
                    format!("DynamoDB TransactWriteItems on table {}", self.name),
                )));
            }
        }
        Err(self.fail("TransactWriteItems", err))
    }
}
