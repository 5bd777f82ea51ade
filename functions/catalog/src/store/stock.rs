//! Stock: manual adjustments, movements, and the order saga's side —
//! reserve every line of an order or none, release, ship — each applied at
//! most once per order whatever the delivery count.
//!
//! Every order the worker sees gets one reservation record (`RES#<org>` /
//! order id, put with "must not exist" in the same commit as its effect):
//! `reserved` (with each line's SKU and price then), `rejected` (with the
//! reason), `released`, `shipped`, or `cancelled` (a cancellation that
//! arrived before its order: the order is then never reserved). A duplicate
//! delivery finds the record and changes nothing. Stock changes are
//! version-conditioned writes of the product items, in the same transaction
//! as the record and the events, retried when another order won the race;
//! so `reserved` can never exceed `on_hand`.
//!
//! Movements of order effects are written after their commit, keyed by the
//! order and the effect, so a redelivery that finds the record writes any
//! it missed and never writes one twice.
//!
//! A confirmed order imported from elsewhere gets the same `reserved`
//! record from [`CatalogStore::import_reservation`](super::import), so its
//! shipping or cancelling settles like a live order's.

use std::collections::HashSet;

use constellation_core::OrgId;
use constellation_core::orders::{
    MAX_LINES, MAX_QUANTITY, OrderPlaced, ReservedLine, StockRejected, StockReserved, WireMoney,
    events,
};
use constellation_platform::DomainEvent;
use constellation_platform::retry::backoff;
use constellation_platform::table::{
    Condition, Item, ItemKey, MAX_TRANSACTION_WRITES, Query, Write,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{
    ATTEMPTS, CatalogError, CatalogStore, Product, corrupt, product_from, product_item,
    product_key, rfc3339,
};
use crate::domain::{Levels, Reason, crosses_low};
use constellation_platform::StoreError;

/// One change of a product's stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Movement {
    /// When.
    pub at: String,
    /// `received`, `count`, `damaged`, `returned`, `reserved`, `released`,
    /// `shipped` or `import` (the level a product was imported with).
    pub reason: String,
    /// Change of `on_hand`.
    pub on_hand_delta: i64,
    /// Change of `reserved`.
    pub reserved_delta: i64,
    /// The account that adjusted (manual changes).
    pub actor: Option<String>,
    /// The order (order effects).
    pub order_id: Option<String>,
}

/// What the worker did with one order event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every line reserved.
    Reserved,
    /// Refused, with the reason.
    Rejected(String),
    /// Reservation released.
    Released,
    /// Reserved stock left the warehouse.
    Shipped,
    /// Nothing to do (a duplicate, or nothing reserved).
    Unchanged,
}

/// An order's reservation record (`RES#<org>` / order id).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Reservation {
    pub(super) state: String,
    pub(super) lines: Vec<ReservedLine>,
    pub(super) reason: Option<String>,
    pub(super) product_id: Option<String>,
    pub(super) reserved_at: Option<String>,
    pub(super) ended_at: Option<String>,
}

impl Reservation {
    /// `lines` reserved at `at`, as `reserve` records them and `settle`
    /// ends them.
    pub(super) fn reserved(lines: Vec<ReservedLine>, at: OffsetDateTime) -> Self {
        Self {
            state: "reserved".into(),
            lines,
            reason: None,
            product_id: None,
            reserved_at: Some(rfc3339(at)),
            ended_at: None,
        }
    }
}

/// `quantity` of `p` as a reservation line: its SKU and price now.
pub(super) fn reserved_line(p: &Product, quantity: u32) -> ReservedLine {
    ReservedLine {
        product_id: p.id.clone(),
        sku: p.sku.clone(),
        quantity,
        unit_price: WireMoney {
            amount: p.price.amount_string(),
            currency: p.price.currency().code().to_owned(),
        },
    }
}

fn reservation_key(org: &OrgId, order: &str) -> ItemKey {
    ItemKey::new(format!("RES#{org}"), order)
}

fn movement_key(org: &OrgId, product: &str, sort: &str) -> ItemKey {
    ItemKey::new(format!("MOV#{org}#{product}"), sort)
}

/// A fixed-width, sortable time for movement keys.
pub(super) fn stamp(t: OffsetDateTime) -> String {
    format!("{:020}", t.unix_timestamp_nanos().max(0))
}

pub(super) fn movement_item(org: &OrgId, product: &str, sort: &str, m: &Movement) -> Item {
    let mut item = Item::new(movement_key(org, product, sort));
    if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(m) {
        item.attrs = map;
    }
    item
}

fn event(
    event_type: &str,
    org: &OrgId,
    now: OffsetDateTime,
    data: impl Serialize,
) -> Result<DomainEvent, StoreError> {
    DomainEvent::new(event_type, org, now, data).map_err(|e| StoreError::Invalid(e.to_string()))
}

fn low_event(
    org: &OrgId,
    now: OffsetDateTime,
    p: &Product,
    after: Levels,
) -> Result<DomainEvent, StoreError> {
    event(
        events::INVENTORY_LOW,
        org,
        now,
        serde_json::json!({
            "product_id": p.id, "sku": p.sku, "available": after.available(),
            "reorder_level": p.reorder_level, "supplier_id": p.supplier_id,
        }),
    )
}

impl CatalogStore {
    /// Adds `delta` to `on_hand` (staff+): never below what is reserved.
    pub async fn adjust(
        &self,
        org: &OrgId,
        id: &str,
        delta: i64,
        reason: Reason,
        actor: &str,
    ) -> Result<Product, CatalogError> {
        for attempt in 0..ATTEMPTS {
            let current = self.product(org, id).await?;
            if current.archived {
                return Err(CatalogError::NotFound("product"));
            }
            let after = Levels {
                on_hand: current.levels.on_hand.saturating_add(delta),
                reserved: current.levels.reserved,
            };
            if !after.valid() {
                return Err(CatalogError::InsufficientStock {
                    reserved: current.levels.reserved,
                    would_be: after.on_hand,
                });
            }
            let now = self.now();
            let mut next = current.next(now);
            next.levels = after;
            let movement = Movement {
                at: rfc3339(now),
                reason: reason.as_str().to_owned(),
                on_hand_delta: delta,
                reserved_delta: 0,
                actor: Some(actor.to_owned()),
                order_id: None,
            };
            let sort = format!("{}#{}", stamp(now), uuid::Uuid::new_v4().simple());
            let writes = vec![
                Write::Put {
                    item: product_item(org, &next),
                    condition: current.unchanged(),
                },
                Write::Put {
                    item: movement_item(org, id, &sort, &movement),
                    condition: Condition::NotExists,
                },
            ];
            let mut events = Vec::new();
            if crosses_low(current.levels, after, current.reorder_level) {
                events.push(low_event(org, now, &current, after)?);
            }
            match self.outbox().commit(writes, &events).await {
                Ok(()) => return Ok(next),
                Err(StoreError::ConditionFailed { .. }) => {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(CatalogError::Contention)
    }

    /// A product's movements, newest first.
    pub async fn movements(
        &self,
        org: &OrgId,
        id: &str,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<Movement>, Option<String>), CatalogError> {
        self.product(org, id).await?;
        let mut q = Query::partition(format!("MOV#{org}#{id}"));
        q.descending = true;
        q.limit = limit;
        q.cursor = cursor;
        let page = self.table().query(&q).await?;
        let items = page
            .items
            .iter()
            .map(|i| {
                serde_json::from_value(serde_json::Value::Object(i.attrs.clone()))
                    .map_err(|_| corrupt("movement"))
            })
            .collect::<Result<_, _>>()?;
        Ok((items, page.next_cursor))
    }

    pub(super) async fn reservation(
        &self,
        org: &OrgId,
        order: &str,
    ) -> Result<Option<(Reservation, u64)>, StoreError> {
        match self.table().get(&reservation_key(org, order)).await? {
            None => Ok(None),
            Some(item) => {
                let r = serde_json::from_value(serde_json::Value::Object(item.attrs.clone()))
                    .map_err(|_| corrupt("reservation"))?;
                Ok(Some((r, item.version)))
            }
        }
    }

    pub(super) fn reservation_item(
        org: &OrgId,
        order: &str,
        r: &Reservation,
        version: u64,
    ) -> Item {
        let mut item = Item::new(reservation_key(org, order));
        if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(r) {
            item.attrs = map;
        }
        item.version = version;
        item
    }

    /// Writes the movements of an order effect that are not there yet.
    pub(super) async fn ensure_movements(
        &self,
        org: &OrgId,
        order: &str,
        r: &Reservation,
    ) -> Result<(), StoreError> {
        let effects: Vec<(&str, &Option<String>)> = match r.state.as_str() {
            "reserved" => vec![("reserved", &r.reserved_at)],
            "released" => vec![("reserved", &r.reserved_at), ("released", &r.ended_at)],
            "shipped" => vec![("reserved", &r.reserved_at), ("shipped", &r.ended_at)],
            _ => Vec::new(),
        };
        for (kind, at) in effects {
            let Some(at) = at else { continue };
            let when = OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
                .map_err(|_| corrupt("reservation time"))?;
            for line in &r.lines {
                let q = i64::from(line.quantity);
                let (on_hand_delta, reserved_delta) = match kind {
                    "reserved" => (0, q),
                    "released" => (0, -q),
                    _ => (-q, -q),
                };
                let m = Movement {
                    at: at.clone(),
                    reason: kind.to_owned(),
                    on_hand_delta,
                    reserved_delta,
                    actor: None,
                    order_id: Some(order.to_owned()),
                };
                let sort = format!("{}#{order}#{kind}", stamp(when));
                match self
                    .table()
                    .put(
                        &movement_item(org, &line.product_id, &sort, &m),
                        Condition::NotExists,
                    )
                    .await
                {
                    Ok(()) | Err(StoreError::ConditionFailed { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Records `order` refused for `reason` (once) and tells orders.
    async fn refuse(
        &self,
        org: &OrgId,
        order: &str,
        reason: &str,
        product: Option<&str>,
    ) -> Result<Outcome, StoreError> {
        let r = Reservation {
            state: "rejected".into(),
            lines: Vec::new(),
            reason: Some(reason.to_owned()),
            product_id: product.map(str::to_owned),
            reserved_at: None,
            ended_at: Some(rfc3339(self.now())),
        };
        let e = event(
            events::STOCK_REJECTED,
            org,
            self.now(),
            StockRejected {
                order_id: order.to_owned(),
                reason: reason.to_owned(),
                product_id: product.map(str::to_owned),
            },
        )?;
        let write = Write::Put {
            item: Self::reservation_item(org, order, &r, 1),
            condition: Condition::NotExists,
        };
        match self.outbox().commit(vec![write], &[e]).await {
            Ok(()) => Ok(Outcome::Rejected(reason.to_owned())),
            Err(StoreError::ConditionFailed { .. }) => Ok(Outcome::Unchanged),
            Err(e) => Err(e),
        }
    }

    /// `order.placed`: reserves every line or none.
    pub async fn reserve(&self, org: &OrgId, placed: &OrderPlaced) -> Result<Outcome, StoreError> {
        let order = placed.order_id.as_str();
        let distinct: HashSet<&str> = placed.lines.iter().map(|l| l.product_id.as_str()).collect();
        if placed.lines.is_empty()
            || placed.lines.len() > MAX_LINES
            || distinct.len() != placed.lines.len()
            || placed
                .lines
                .iter()
                .any(|l| l.quantity == 0 || l.quantity > MAX_QUANTITY)
        {
            return self.refuse(org, order, "invalid-order", None).await;
        }
        for attempt in 0..ATTEMPTS {
            if let Some((r, _)) = self.reservation(org, order).await? {
                self.ensure_movements(org, order, &r).await?;
                return Ok(Outcome::Unchanged);
            }
            let keys: Vec<_> = placed
                .lines
                .iter()
                .map(|l| product_key(org, &l.product_id))
                .collect();
            let reads = futures::future::join_all(keys.iter().map(|k| self.table().get(k))).await;
            let mut products = Vec::with_capacity(reads.len());
            for (line, read) in placed.lines.iter().zip(reads) {
                let found = match read? {
                    Some(item) if super::is_id(&line.product_id) => Some(product_from(&item)?),
                    _ => None,
                };
                let Some(p) = found else {
                    return self
                        .refuse(org, order, "unknown-product", Some(&line.product_id))
                        .await;
                };
                if p.archived || !p.active {
                    return self
                        .refuse(org, order, "archived-product", Some(&p.id))
                        .await;
                }
                products.push(p);
            }
            let currency = products[0].price.currency();
            if let Some(p) = products.iter().find(|p| p.price.currency() != currency) {
                return self
                    .refuse(org, order, "mixed-currencies", Some(&p.id))
                    .await;
            }
            for (line, p) in placed.lines.iter().zip(&products) {
                if p.levels.available() < i64::from(line.quantity) {
                    return self
                        .refuse(org, order, "insufficient-stock", Some(&p.id))
                        .await;
                }
            }
            let now = self.now();
            let mut writes = Vec::with_capacity(products.len() + 1);
            let mut lows = Vec::new();
            let mut lines = Vec::with_capacity(products.len());
            for (line, p) in placed.lines.iter().zip(&products) {
                let mut next = p.next(now);
                next.levels.reserved += i64::from(line.quantity);
                if crosses_low(p.levels, next.levels, p.reorder_level) {
                    lows.push(low_event(org, now, p, next.levels)?);
                }
                writes.push(Write::Put {
                    item: product_item(org, &next),
                    condition: p.unchanged(),
                });
                lines.push(reserved_line(p, line.quantity));
            }
            let r = Reservation::reserved(lines.clone(), now);
            let record_index = writes.len();
            writes.push(Write::Put {
                item: Self::reservation_item(org, order, &r, 1),
                condition: Condition::NotExists,
            });
            let mut evs = vec![event(
                events::STOCK_RESERVED,
                org,
                now,
                StockReserved {
                    order_id: order.to_owned(),
                    lines,
                },
            )?];
            // Low-stock events ride along while they fit the transaction;
            // any beyond follow in commits of their own.
            let room = MAX_TRANSACTION_WRITES.saturating_sub(writes.len() + evs.len());
            let later = lows.split_off(lows.len().min(room));
            evs.extend(lows);
            match self.outbox().commit(writes, &evs).await {
                Ok(()) => {
                    for e in later {
                        self.outbox().commit(Vec::new(), &[e]).await?;
                    }
                    self.ensure_movements(org, order, &r).await?;
                    return Ok(Outcome::Reserved);
                }
                Err(StoreError::ConditionFailed { index: Some(i) }) if i == record_index => {
                    return Ok(Outcome::Unchanged);
                }
                Err(StoreError::ConditionFailed { .. }) => {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict(anyhow::anyhow!(
            "order {order}: its products kept changing while reserving"
        )))
    }

    /// `order.cancelled` (`ship == false`) or `order.shipped`: ends the
    /// order's reservation once. A cancellation that comes first leaves a
    /// record so the order is never reserved.
    pub async fn settle(
        &self,
        org: &OrgId,
        order: &str,
        ship: bool,
    ) -> Result<Outcome, StoreError> {
        for attempt in 0..ATTEMPTS {
            let Some((r, version)) = self.reservation(org, order).await? else {
                if ship {
                    return Ok(Outcome::Unchanged);
                }
                let tombstone = Reservation {
                    state: "cancelled".into(),
                    lines: Vec::new(),
                    reason: None,
                    product_id: None,
                    reserved_at: None,
                    ended_at: Some(rfc3339(self.now())),
                };
                match self
                    .table()
                    .put(
                        &Self::reservation_item(org, order, &tombstone, 1),
                        Condition::NotExists,
                    )
                    .await
                {
                    Ok(()) => return Ok(Outcome::Unchanged),
                    Err(StoreError::ConditionFailed { .. }) => continue,
                    Err(e) => return Err(e),
                }
            };
            if r.state != "reserved" {
                self.ensure_movements(org, order, &r).await?;
                return Ok(Outcome::Unchanged);
            }
            let now = self.now();
            let keys: Vec<_> = r
                .lines
                .iter()
                .map(|l| product_key(org, &l.product_id))
                .collect();
            let reads = futures::future::join_all(keys.iter().map(|k| self.table().get(k))).await;
            let mut writes = Vec::with_capacity(r.lines.len() + 1);
            for (line, read) in r.lines.iter().zip(reads) {
                let p = product_from(&read?.ok_or_else(|| corrupt("reserved product"))?)?;
                let q = i64::from(line.quantity);
                let mut next = p.next(now);
                next.levels.reserved -= q;
                if ship {
                    next.levels.on_hand -= q;
                }
                writes.push(Write::Put {
                    item: product_item(org, &next),
                    condition: p.unchanged(),
                });
            }
            let mut ended = r.clone();
            ended.state = if ship { "shipped" } else { "released" }.into();
            ended.ended_at = Some(rfc3339(now));
            writes.push(Write::Put {
                item: Self::reservation_item(org, order, &ended, version + 1),
                condition: Condition::VersionEquals(version),
            });
            match self.outbox().commit(writes, &[]).await {
                Ok(()) => {
                    self.ensure_movements(org, order, &ended).await?;
                    return Ok(if ship {
                        Outcome::Shipped
                    } else {
                        Outcome::Released
                    });
                }
                Err(StoreError::ConditionFailed { .. }) => {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict(anyhow::anyhow!(
            "order {order}: its products kept changing while settling"
        )))
    }
}
