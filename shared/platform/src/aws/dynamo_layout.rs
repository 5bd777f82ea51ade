//! The attribute layout of DynamoDB items and the expressions over it, for
//! the Table adapter in `dynamo.rs` (see its module docs for the layout):
//! items to and from attribute maps, keys, and condition expressions whose
//! placeholders are handed out only when used.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::cursor::Position;
use crate::table::{Condition, Index, IndexKey, Item, ItemKey, SortKey, StoreError};

pub(super) const PK: &str = "pk";
pub(super) const SK: &str = "sk";
pub(super) const VERSION: &str = "_v";
pub(super) const EXPIRES: &str = "expires_at";
pub(super) const BYTES: &str = "_b";

pub(super) type Record = HashMap<String, AttributeValue>;

/// Collects expression placeholders, handing out only those that are used.
#[derive(Default)]
pub(super) struct Expr {
    names: HashMap<String, String>,
    values: Record,
}

impl Expr {
    /// The placeholder for attribute `attr` (the same one each time).
    pub(super) fn name(&mut self, attr: &str) -> String {
        if let Some((placeholder, _)) = self.names.iter().find(|(_, a)| a.as_str() == attr) {
            return placeholder.clone();
        }
        let placeholder = format!("#n{}", self.names.len());
        self.names.insert(placeholder.clone(), attr.to_owned());
        placeholder
    }

    pub(super) fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    pub(super) fn number(&mut self, n: impl ToString) -> String {
        self.value(AttributeValue::N(n.to_string()))
    }

    pub(super) fn string(&mut self, s: &str) -> String {
        self.value(AttributeValue::S(s.to_owned()))
    }

    pub(super) fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    pub(super) fn values(&self) -> Option<Record> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

/// "A live item has this key": present and not expired at `now`.
pub(super) fn live_expr(e: &mut Expr, now: OffsetDateTime) -> String {
    format!(
        "(attribute_exists({pk}) AND (attribute_not_exists({exp}) OR {exp} > {now}))",
        pk = e.name(PK),
        exp = e.name(EXPIRES),
        now = e.number(now.unix_timestamp()),
    )
}

/// The condition expression for `condition`, expired items counting as absent.
pub(super) fn condition_expr(
    e: &mut Expr,
    condition: Condition,
    now: OffsetDateTime,
) -> Option<String> {
    match condition {
        Condition::None => None,
        Condition::NotExists => Some(format!(
            "attribute_not_exists({pk}) OR {exp} <= {now}",
            pk = e.name(PK),
            exp = e.name(EXPIRES),
            now = e.number(now.unix_timestamp()),
        )),
        Condition::Exists => Some(live_expr(e, now)),
        Condition::VersionEquals(version) => {
            let live = live_expr(e, now);
            Some(format!(
                "{live} AND {} = {}",
                e.name(VERSION),
                e.number(version)
            ))
        }
    }
}

/// A sort-key condition DynamoDB accepts (no empty strings, no inverted range),
/// or `None` when nothing can match.
pub(super) enum SortRange<'a> {
    All,
    Prefix(&'a str),
    Between(&'a str, &'a str),
    AtLeast(&'a str),
    AtMost(&'a str),
}

impl<'a> SortRange<'a> {
    pub(super) fn of(sort: &'a SortKey) -> Option<Self> {
        Some(match sort {
            SortKey::All => Self::All,
            SortKey::Prefix(p) if p.is_empty() => Self::All,
            SortKey::Prefix(p) => Self::Prefix(p),
            SortKey::AtLeast(from) if from.is_empty() => Self::All,
            SortKey::AtLeast(from) => Self::AtLeast(from),
            // Sort keys are never empty, so nothing is `<= ""`.
            SortKey::AtMost(to) if to.is_empty() => return None,
            SortKey::AtMost(to) => Self::AtMost(to),
            SortKey::Between { from, to } if from > to || to.is_empty() => return None,
            SortKey::Between { from, to } if from.is_empty() => Self::AtMost(to),
            SortKey::Between { from, to } => Self::Between(from, to),
        })
    }
}

pub(super) fn key_attributes(index: Option<Index>) -> (&'static str, &'static str) {
    match index {
        None => (PK, SK),
        Some(Index::Gsi1) => ("gsi1pk", "gsi1sk"),
        Some(Index::Gsi2) => ("gsi2pk", "gsi2sk"),
    }
}

pub(super) fn index_key(item: &Item, index: Index) -> Option<&IndexKey> {
    match index {
        Index::Gsi1 => item.gsi1.as_ref(),
        Index::Gsi2 => item.gsi2.as_ref(),
    }
}

pub(super) fn key_record(key: &ItemKey) -> Record {
    HashMap::from([
        (PK.to_owned(), AttributeValue::S(key.pk.clone())),
        (SK.to_owned(), AttributeValue::S(key.sk.clone())),
    ])
}

/// The `ExclusiveStartKey` that continues after `position`.
pub(super) fn start_record(index: Option<Index>, position: Position) -> Record {
    let mut record = key_record(&ItemKey::new(position.pk, position.sk));
    if let Some(index) = index {
        let (ipk, isk) = key_attributes(Some(index));
        record.insert(
            ipk.to_owned(),
            AttributeValue::S(position.ipk.unwrap_or_default()),
        );
        record.insert(
            isk.to_owned(),
            AttributeValue::S(position.isk.unwrap_or_default()),
        );
    }
    record
}

/// An item as DynamoDB stores it (see the module docs for the layout).
pub(super) fn to_record(item: &Item) -> Result<Record, StoreError> {
    let mut record: Record = serde_dynamo::to_item(&item.attrs)
        .map_err(|e| StoreError::Invalid(format!("attributes not storable: {e}")))?;
    record.extend(key_record(&item.key));
    for (index, key) in [(Index::Gsi1, &item.gsi1), (Index::Gsi2, &item.gsi2)] {
        if let Some(key) = key {
            if key.pk.is_empty() || key.sk.is_empty() {
                return Err(StoreError::Invalid(format!(
                    "empty key for index {}",
                    index.name()
                )));
            }
            let (ipk, isk) = key_attributes(Some(index));
            record.insert(ipk.to_owned(), AttributeValue::S(key.pk.clone()));
            record.insert(isk.to_owned(), AttributeValue::S(key.sk.clone()));
        }
    }
    record.insert(
        VERSION.to_owned(),
        AttributeValue::N(item.version.to_string()),
    );
    if let Some(at) = item.expires_at {
        record.insert(
            EXPIRES.to_owned(),
            AttributeValue::N(at.unix_timestamp().to_string()),
        );
    }
    if let Some(bytes) = &item.bytes {
        record.insert(
            BYTES.to_owned(),
            AttributeValue::B(Blob::new(bytes.to_vec())),
        );
    }
    Ok(record)
}

pub(super) fn take_string(record: &mut Record, name: &str) -> Result<Option<String>, String> {
    match record.remove(name) {
        None => Ok(None),
        Some(AttributeValue::S(s)) => Ok(Some(s)),
        Some(_) => Err(format!("`{name}` is not a string")),
    }
}

pub(super) fn read_version(record: &Record) -> Result<u64, String> {
    match record.get(VERSION) {
        None => Ok(0),
        Some(AttributeValue::N(n)) => n.parse().map_err(|_| format!("bad version {n:?}")),
        Some(_) => Err("`_v` is not a number".into()),
    }
}

pub(super) fn read_expiry(record: &Record) -> Result<Option<OffsetDateTime>, String> {
    match record.get(EXPIRES) {
        None => Ok(None),
        Some(AttributeValue::N(n)) => n
            .parse::<i64>()
            .ok()
            .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
            .map(Some)
            .ok_or_else(|| format!("bad expiry {n:?}")),
        Some(_) => Err("`expires_at` is not a number".into()),
    }
}

/// An item from DynamoDB's representation.
pub(super) fn from_record(mut record: Record) -> Result<Item, String> {
    let pk = take_string(&mut record, PK)?.ok_or("no `pk`")?;
    let sk = take_string(&mut record, SK)?.ok_or("no `sk`")?;
    let mut index_keys = Vec::with_capacity(2);
    for index in [Index::Gsi1, Index::Gsi2] {
        let (ipk, isk) = key_attributes(Some(index));
        let key = match (
            take_string(&mut record, ipk)?,
            take_string(&mut record, isk)?,
        ) {
            (Some(pk), Some(sk)) => Some(IndexKey { pk, sk }),
            _ => None,
        };
        index_keys.push(key);
    }
    let gsi2 = index_keys.pop().flatten();
    let gsi1 = index_keys.pop().flatten();
    let version = read_version(&record)?;
    let expires_at = read_expiry(&record)?;
    let bytes = match record.remove(BYTES) {
        None => None,
        Some(AttributeValue::B(blob)) => Some(Bytes::from(blob.into_inner())),
        Some(_) => return Err("`_b` is not binary".into()),
    };
    let mut attrs = Map::new();
    for (name, value) in record {
        if name.starts_with('_') || name == EXPIRES {
            continue;
        }
        let value: Value = serde_dynamo::from_attribute_value(value)
            .map_err(|e| format!("attribute `{name}`: {e}"))?;
        attrs.insert(name, value);
    }
    Ok(Item {
        key: ItemKey { pk, sk },
        gsi1,
        gsi2,
        version,
        expires_at,
        attrs,
        bytes,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_through_the_attribute_layout() {
        let mut item = Item::new(ItemKey::new("org#1", "expense#9"))
            .with("amount", 1250)
            .with("note", "lunch")
            .with("tags", serde_json::json!(["a", {"b": null}]))
            .with("ok", true);
        item.version = 7;
        item.gsi1 = Some(IndexKey::new("cat#x", "2026-01-01"));
        item.expires_at = Some(OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap());
        item.bytes = Some(Bytes::from_static(b"\x00\x01"));
        let record = to_record(&item).unwrap();
        assert_eq!(record.get("_v"), Some(&AttributeValue::N("7".into())));
        assert_eq!(
            record.get("expires_at"),
            Some(&AttributeValue::N("1900000000".into()))
        );
        assert_eq!(
            record.get("gsi1pk"),
            Some(&AttributeValue::S("cat#x".into()))
        );
        assert!(!record.contains_key("gsi2pk"));
        assert_eq!(from_record(record).unwrap(), item);
    }

    #[test]
    fn expressions_name_every_attribute_and_send_only_used_placeholders() {
        let mut e = Expr::default();
        let now = OffsetDateTime::from_unix_timestamp(100).unwrap();
        let cond = condition_expr(&mut e, Condition::VersionEquals(3), now).unwrap();
        assert_eq!(
            cond,
            "(attribute_exists(#n0) AND (attribute_not_exists(#n1) OR #n1 > :v0)) AND #n2 = :v1"
        );
        assert_eq!(e.names().unwrap().len(), 3);
        assert_eq!(e.values().unwrap().len(), 2);
        let mut none = Expr::default();
        assert!(condition_expr(&mut none, Condition::None, now).is_none());
        assert!(none.names().is_none() && none.values().is_none());
    }

    #[test]
    fn sort_ranges_avoid_what_dynamodb_rejects() {
        assert!(matches!(
            SortRange::of(&SortKey::Prefix(String::new())),
            Some(SortRange::All)
        ));
        assert!(SortRange::of(&SortKey::AtMost(String::new())).is_none());
        let inverted = SortKey::Between {
            from: "b".into(),
            to: "a".into(),
        };
        assert!(SortRange::of(&inverted).is_none());
    }
}
