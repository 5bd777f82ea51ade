//! The order rules over the Table and outbox ports.
//!
//! Layout: one item per order, `pk = ORD#<org>`, `sk = <id>`, indexed in
//! `gsi1` by placer (`PLC#<org>#<account>`, same sort key). Ids begin with
//! their creation time in milliseconds, so both listings are newest first by
//! reading backwards. The item's attributes are one serde record; prices
//! are integer minor units with the order's one currency. [`check_item`]
//! checks one such item, as an import of an export does.
//!
//! Every write is optimistic (conditioned on the version read, retried on a
//! lost race) and every status change commits its `order.*` event with it
//! through the outbox, so an acknowledged change is never missing from the
//! bus. Catalog's answers move only pending orders: a duplicate or late
//! answer finds the order moved on and changes nothing. The one exception is
//! a reservation for an order cancelled while it was pending: catalog holds
//! stock for it, so `order.cancelled` goes out again (once per reservation
//! event, claimed in the inbox) and catalog releases it.

mod check;
mod import;

use std::sync::Arc;

use constellation_core::OrgId;
use constellation_core::auth::Principal;
use constellation_core::ids::TIME_ORDERED_ID_PATTERN;
use constellation_core::money::{Currency, Money};
use constellation_core::orders::{
    OrderChanged, OrderConfirmed, OrderRejected, PlacedLine, StockRejected, StockReserved,
    WireMoney, events,
};
use constellation_platform::inbox::Inbox;
use constellation_platform::outbox::Outbox;
use constellation_platform::retry::{is_lost_race, retry_on_conflict};
use constellation_platform::table::{Condition, Index, IndexKey, Item, ItemKey, Query, Write};
use constellation_platform::{Clock, DomainEvent, StoreError, Table};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::domain::{self, Action, Mismatch, Price, Status, is_staff};

pub use check::check_item;
pub use import::{OrderImport, check_import};

/// The consumer name the worker claims events under (its inbox).
pub const CONSUMER: &str = "orders-worker";

constellation_core::time_ordered_id_type!(
    /// An order id: 32 lowercase hex digits, the first 12 its creation time in
    /// milliseconds.
    OrderId,
    "an order"
);

impl OrderId {
    fn new(now: OffsetDateTime) -> Self {
        Self::at(now, uuid::Uuid::new_v4().as_u128())
    }
}

/// The pattern of an order id (for the OpenAPI document).
pub const ORDER_ID_PATTERN: &str = TIME_ORDERED_ID_PATTERN;

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    /// The product.
    pub product_id: String,
    /// How many.
    pub quantity: u32,
    /// Catalog's SKU and price, once it reserved the line.
    pub price: Option<Price>,
}

impl OrderLine {
    /// `quantity` × unit price, once priced.
    pub fn total_minor(&self) -> Option<i64> {
        self.price
            .as_ref()
            .map(|p| p.line_total_minor(self.quantity))
    }
}

/// Why catalog rejected an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Catalog's reason (`insufficient-stock`, `unknown-product`...).
    pub reason: String,
    /// The product at fault, when catalog names one.
    pub product_id: Option<String>,
}

/// One order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Its id.
    pub id: OrderId,
    /// Its organization.
    pub org: OrgId,
    /// The account that placed it.
    pub placed_by: String,
    /// Its lines, as placed (and priced once confirmed).
    pub lines: Vec<OrderLine>,
    /// The placer's note.
    pub note: Option<String>,
    /// Where it is.
    pub status: Status,
    /// Why it was rejected.
    pub rejection: Option<Rejection>,
    /// Placed.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
    version: u64,
}

impl Order {
    /// The exact total in minor units and its currency, once every line is priced.
    pub fn total(&self) -> Option<(i128, Currency)> {
        let mut currency = None;
        let mut sum = 0_i128;
        for line in &self.lines {
            let price = line.price.as_ref()?;
            currency = Some(price.unit_price.currency());
            sum += i128::from(price.line_total_minor(line.quantity));
        }
        currency.map(|c| (sum, c))
    }

    fn placed_lines(&self) -> Vec<PlacedLine> {
        self.lines
            .iter()
            .map(|l| PlacedLine {
                product_id: l.product_id.clone(),
                quantity: l.quantity,
            })
            .collect()
    }
}

/// What to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this status.
    pub status: Option<Status>,
    /// Only this placer's.
    pub placed_by: Option<String>,
}

/// Why an order operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// No such order that the caller may see.
    #[error("no such order")]
    NotFound,
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// Not possible from the current status.
    #[error("cannot {} an order that is {}", action.verb(), current.as_str())]
    InvalidTransition {
        /// What was asked.
        action: Action,
        /// Where the order is.
        current: Status,
    },
    /// Too much concurrent change.
    #[error("the order is being changed concurrently; retry")]
    Contention,
    /// An input is invalid (`field` names it: `status`, `lines[2].quantity`...).
    #[error(transparent)]
    Invalid(#[from] domain::Invalid),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why catalog's answer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    /// The answer breaks the contract: retrying cannot help.
    #[error(transparent)]
    Mismatch(#[from] Mismatch),
    /// Storage failed (a lost race after every retry included).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What catalog's answer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A pending order was confirmed.
    Confirmed,
    /// A pending order was rejected.
    Rejected,
    /// A reservation of an order cancelled while pending was handed back
    /// (`order.cancelled` published again).
    Released,
    /// Nothing changed: no such order, or it had moved on (a duplicate or
    /// late answer).
    Ignored,
}

/// The record every order item holds (its attributes).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    placed_by: String,
    status: String,
    lines: Vec<LineRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    /// The currency of every unit price (set once priced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rejected_product_id: Option<String>,
    created_at: String,
    updated_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LineRecord {
    product_id: String,
    quantity: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sku: Option<String>,
    /// Minor units of the order's currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unit_price: Option<i64>,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Backend(anyhow::anyhow!("order record has a bad {what}"))
}

fn item_key(org: &OrgId, id: &str) -> ItemKey {
    ItemKey::new(format!("ORD#{org}"), id)
}

fn by_placer(org: &OrgId, account: &str) -> String {
    format!("PLC#{org}#{account}")
}

fn to_item(o: &Order) -> Result<Item, StoreError> {
    let record = Record {
        placed_by: o.placed_by.clone(),
        status: o.status.as_str().to_owned(),
        lines: o
            .lines
            .iter()
            .map(|l| LineRecord {
                product_id: l.product_id.clone(),
                quantity: l.quantity,
                sku: l.price.as_ref().map(|p| p.sku.clone()),
                unit_price: l.price.as_ref().map(|p| p.unit_price.minor()),
            })
            .collect(),
        note: o.note.clone(),
        currency: o.total().map(|(_, c)| c.code().to_owned()),
        reason: o.rejection.as_ref().map(|r| r.reason.clone()),
        rejected_product_id: o.rejection.as_ref().and_then(|r| r.product_id.clone()),
        created_at: rfc3339(o.created_at),
        updated_at: rfc3339(o.updated_at),
    };
    let serde_json::Value::Object(attrs) = serde_json::to_value(&record)
        .map_err(|e| StoreError::Invalid(format!("order record: {e}")))?
    else {
        return Err(StoreError::Invalid("order record is not an object".into()));
    };
    let mut item = Item::new(item_key(&o.org, o.id.as_str()));
    item.attrs = attrs;
    item.gsi1 = Some(IndexKey::new(
        by_placer(&o.org, &o.placed_by),
        o.id.as_str(),
    ));
    item.version = o.version;
    Ok(item)
}

fn from_item(org: &OrgId, item: &Item) -> Result<Order, StoreError> {
    let record: Record = serde_json::from_value(serde_json::Value::Object(item.attrs.clone()))
        .map_err(|_| corrupt("record"))?;
    let time =
        |raw: &str, name: &str| OffsetDateTime::parse(raw, &Rfc3339).map_err(|_| corrupt(name));
    let currency = record
        .currency
        .as_deref()
        .map(|c| Currency::parse("currency", c).map_err(|_| corrupt("currency")))
        .transpose()?;
    let lines = record
        .lines
        .into_iter()
        .map(|l| {
            let price = match (l.sku, l.unit_price, currency) {
                (Some(sku), Some(minor), Some(currency)) => Some(Price {
                    sku,
                    unit_price: Money::from_minor(minor, currency)
                        .ok_or_else(|| corrupt("unit price"))?,
                }),
                (None, None, _) => None,
                _ => return Err(corrupt("line price")),
            };
            Ok(OrderLine {
                product_id: l.product_id,
                quantity: l.quantity,
                price,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Order {
        id: OrderId::parse(&item.key.sk).map_err(|_| corrupt("id"))?,
        org: org.clone(),
        placed_by: record.placed_by,
        lines,
        note: record.note,
        status: Status::parse("status", &record.status).map_err(|_| corrupt("status"))?,
        rejection: record.reason.map(|reason| Rejection {
            reason,
            product_id: record.rejected_product_id,
        }),
        created_at: time(&record.created_at, "created_at")?,
        updated_at: time(&record.updated_at, "updated_at")?,
        version: item.version,
    })
}

/// Whether `p` may see `o`: its placer, or staff and above.
fn visible(p: &Principal, o: &Order) -> bool {
    o.placed_by == p.account.as_str() || is_staff(p)
}

fn lost_race(e: &OrderError) -> bool {
    matches!(e, OrderError::Store(e) if is_lost_race(e, 0))
}

/// The order service's rules.
#[derive(Debug, Clone)]
pub struct OrderStore {
    table: Arc<dyn Table>,
    outbox: Outbox,
    clock: Arc<dyn Clock>,
    inbox: Inbox,
}

impl OrderStore {
    /// The store over its ports.
    pub fn new(table: Arc<dyn Table>, outbox: Outbox, clock: Arc<dyn Clock>) -> Self {
        let inbox = Inbox::new(CONSUMER, clock.clone());
        Self {
            table,
            outbox,
            clock,
            inbox,
        }
    }

    /// The outbox (relayed by the `orders-outbox` schedule).
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    fn event(
        &self,
        event_type: &str,
        org: &OrgId,
        data: impl Serialize,
    ) -> Result<DomainEvent, StoreError> {
        DomainEvent::new(event_type, org, self.clock.now(), data)
            .map_err(|e| StoreError::Invalid(e.to_string()))
    }

    fn order_ref(&self, event_type: &str, o: &Order) -> Result<DomainEvent, StoreError> {
        self.event(
            event_type,
            &o.org,
            OrderChanged {
                order_id: o.id.as_str().to_owned(),
                placed_by: o.placed_by.clone(),
                total: o.total().map(|(total, currency)| WireMoney {
                    amount: constellation_core::money::format_minor(total, currency),
                    currency: currency.code().to_owned(),
                }),
            },
        )
    }

    /// Places a pending order for `p` and commits `order.placed` with it.
    #[tracing::instrument(skip_all, fields(org = %p.org, lines = lines.len()))]
    pub async fn place(
        &self,
        p: &Principal,
        lines: Vec<PlacedLine>,
        note: Option<String>,
    ) -> Result<Order, OrderError> {
        let now = self.clock.now();
        let order = Order {
            id: OrderId::new(now),
            org: p.org.clone(),
            placed_by: p.account.as_str().to_owned(),
            lines: lines
                .iter()
                .map(|l| OrderLine {
                    product_id: l.product_id.clone(),
                    quantity: l.quantity,
                    price: None,
                })
                .collect(),
            note,
            status: Status::Pending,
            rejection: None,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let placed = self.event(
            events::PLACED,
            &order.org,
            constellation_core::orders::OrderPlaced {
                order_id: order.id.as_str().to_owned(),
                placed_by: order.placed_by.clone(),
                lines,
            },
        )?;
        let write = Write::Put {
            item: to_item(&order)?,
            condition: Condition::NotExists,
        };
        self.outbox.commit(vec![write], &[placed]).await?;
        Ok(order)
    }

    async fn find(&self, org: &OrgId, id: &str) -> Result<Option<Order>, StoreError> {
        match self.table.get(&item_key(org, id)).await? {
            Some(item) => Ok(Some(from_item(org, &item)?)),
            None => Ok(None),
        }
    }

    /// The order `id`, if `p` may see it.
    #[tracing::instrument(skip_all, fields(org = %p.org, id = id.as_str()))]
    pub async fn get(&self, p: &Principal, id: &OrderId) -> Result<Order, OrderError> {
        match self.find(&p.org, id.as_str()).await? {
            Some(o) if visible(p, &o) => Ok(o),
            _ => Err(OrderError::NotFound),
        }
    }

    /// One page of the orders `p` may see that `filter` admits, newest
    /// first: members their own (asking for someone else's is 403), staff
    /// and above the organization's. A page may hold fewer than `limit`
    /// items when filtered by status; follow `next_cursor` to the end.
    #[tracing::instrument(skip_all, fields(org = %p.org))]
    pub async fn list(
        &self,
        p: &Principal,
        mut filter: Filter,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<Order>, Option<String>), OrderError> {
        if !is_staff(p) {
            match filter.placed_by.as_deref() {
                Some(a) if a != p.account.as_str() => {
                    return Err(OrderError::Forbidden("members see only their own orders"));
                }
                _ => filter.placed_by = Some(p.account.as_str().to_owned()),
            }
        }
        let mut query = match &filter.placed_by {
            Some(a) => {
                let mut q = Query::partition(by_placer(&p.org, a));
                q.index = Some(Index::Gsi1);
                q
            }
            None => Query::partition(format!("ORD#{}", p.org)),
        };
        query.descending = true;
        query.limit = limit;
        query.cursor = cursor;
        let page = self.table.query(&query).await?;
        let mut items = Vec::with_capacity(page.items.len());
        for item in &page.items {
            let o = from_item(&p.org, item)?;
            if filter.status.is_none_or(|s| s == o.status) {
                items.push(o);
            }
        }
        Ok((items, page.next_cursor))
    }

    /// Writes `changed` over `current` with `events`; a lost race is
    /// [`StoreError::ConditionFailed`] (write 0) for the caller to retry.
    async fn replace(
        &self,
        current: &Order,
        mut changed: Order,
        events: &[DomainEvent],
    ) -> Result<Order, StoreError> {
        changed.version = current.version + 1;
        changed.updated_at = self.clock.now();
        self.outbox
            .commit(
                vec![Write::Put {
                    item: to_item(&changed)?,
                    condition: Condition::VersionEquals(current.version),
                }],
                events,
            )
            .await?;
        Ok(changed)
    }

    /// Moves `id` along `action` for `p`, publishing the action's event in
    /// the same commit.
    #[tracing::instrument(skip_all, fields(org = %p.org, id = id.as_str(), action = action.verb()))]
    pub async fn act(
        &self,
        p: &Principal,
        id: &OrderId,
        action: Action,
    ) -> Result<Order, OrderError> {
        if action == Action::Ship && !is_staff(p) {
            // The same answer whatever the id: nothing about it leaks.
            return Err(OrderError::Forbidden("only staff may ship an order"));
        }
        let attempt = || async {
            let current = self.get(p, id).await?;
            action
                .authorize(p, &current.placed_by)
                .map_err(OrderError::Forbidden)?;
            if !action.leaves_from(current.status) {
                return Err(OrderError::InvalidTransition {
                    action,
                    current: current.status,
                });
            }
            let mut changed = current.clone();
            changed.status = action.target();
            let event = self.order_ref(action.event_type(), &changed)?;
            Ok(self.replace(&current, changed, &[event]).await?)
        };
        retry_on_conflict(attempt, lost_race).await.map_err(|e| {
            if lost_race(&e) {
                OrderError::Contention
            } else {
                e
            }
        })
    }

    /// Applies catalog's `stock.reserved` (event `event_id`) to the order it
    /// names: a pending order is priced and confirmed (`order.confirmed`);
    /// one cancelled while pending has its reservation released
    /// (`order.cancelled` again); anything else is a duplicate or late
    /// answer and changes nothing.
    #[tracing::instrument(skip_all, fields(%org, order = %reserved.order_id))]
    pub async fn apply_reserved(
        &self,
        org: &OrgId,
        event_id: &str,
        reserved: &StockReserved,
    ) -> Result<Applied, SagaError> {
        let attempt = || async {
            let Some(current) = self.find(org, &reserved.order_id).await? else {
                return Ok(Applied::Ignored);
            };
            match current.status {
                Status::Pending => {}
                Status::Cancelled if current.total().is_none() => {
                    return self.release(&current, event_id).await;
                }
                _ => return Ok(Applied::Ignored),
            }
            let prices = domain::price(&current.placed_lines(), &reserved.lines)?;
            let mut changed = current.clone();
            changed.status = Status::Confirmed;
            for (line, price) in changed.lines.iter_mut().zip(prices) {
                line.price = Some(price);
            }
            let Some((total, currency)) = changed.total() else {
                return Err(Mismatch("no line was priced".into()).into());
            };
            let event = self.event(
                events::CONFIRMED,
                org,
                OrderConfirmed {
                    order_id: changed.id.as_str().to_owned(),
                    placed_by: changed.placed_by.clone(),
                    total: WireMoney {
                        amount: constellation_core::money::format_minor(total, currency),
                        currency: currency.code().to_owned(),
                    },
                },
            )?;
            self.replace(&current, changed, &[event]).await?;
            Ok(Applied::Confirmed)
        };
        retry_on_conflict(
            attempt,
            |e| matches!(e, SagaError::Store(e) if is_lost_race(e, 0)),
        )
        .await
    }

    /// Publishes `order.cancelled` again for `order`, once per reservation
    /// event (the claim commits with it; a redelivery finds it claimed).
    async fn release(&self, order: &Order, event_id: &str) -> Result<Applied, SagaError> {
        let cancelled = self.order_ref(events::CANCELLED, order)?;
        match self
            .outbox
            .commit(vec![self.inbox.claim(event_id)], &[cancelled])
            .await
        {
            Ok(()) => {
                tracing::info!(
                    order = order.id.as_str(),
                    "reservation of a cancelled order released"
                );
                Ok(Applied::Released)
            }
            Err(e) if Inbox::is_duplicate(&e, 0) => Ok(Applied::Ignored),
            Err(e) => Err(e.into()),
        }
    }

    /// Applies catalog's `stock.rejected`: a pending order is rejected with
    /// catalog's reason (`order.rejected`); anything else changes nothing.
    #[tracing::instrument(skip_all, fields(%org, order = %rejected.order_id))]
    pub async fn apply_rejected(
        &self,
        org: &OrgId,
        rejected: &StockRejected,
    ) -> Result<Applied, SagaError> {
        let reason = domain::rejection_reason(&rejected.reason)?;
        let product_id = rejected
            .product_id
            .as_deref()
            .map(|p| domain::product_id("product_id", p))
            .transpose()
            .map_err(|e| Mismatch(e.to_string()))?;
        let attempt = || async {
            let Some(current) = self.find(org, &rejected.order_id).await? else {
                return Ok(Applied::Ignored);
            };
            if current.status != Status::Pending {
                return Ok(Applied::Ignored);
            }
            let mut changed = current.clone();
            changed.status = Status::Rejected;
            changed.rejection = Some(Rejection {
                reason: reason.clone(),
                product_id: product_id.clone(),
            });
            let event = self.event(
                events::REJECTED,
                org,
                OrderRejected {
                    order_id: changed.id.as_str().to_owned(),
                    placed_by: changed.placed_by.clone(),
                    reason: reason.clone(),
                    product_id: product_id.clone(),
                },
            )?;
            self.replace(&current, changed, &[event]).await?;
            Ok(Applied::Rejected)
        };
        retry_on_conflict(
            attempt,
            |e| matches!(e, SagaError::Store(e) if is_lost_race(e, 0)),
        )
        .await
    }
}
