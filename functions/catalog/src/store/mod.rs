//! The catalog rules over the Table port and the outbox.
//!
//! Layout (one table, every key starting with the organization):
//! - supplier: `SUP#<org>` / id;
//! - product: `PROD#<org>` / id, indexed by SKU in `gsi1` (`SKU#<org>` /
//!   sku) and by supplier in `gsi2` (`PSUP#<org>#<supplier>` / id), with its
//!   stock levels (`on_hand`, `reserved`) on the item itself, so every stock
//!   change is one conditional write of the product;
//! - SKU claim: `SKUIDX#<org>` / sku, put with the product (must not exist):
//!   two concurrent creates of one SKU cannot both commit;
//! - stock movement: `MOV#<org>#<product>` / time;
//! - order reservation: `RES#<org>` / order id ([`stock`]).
//!
//! [`check_item`] checks one item of each of these kinds, as an import does.
//!
//! Records imported from elsewhere keep the same layout ([`import`]).
//!
//! A product naming a supplier rewrites the supplier (a new version) in its
//! commit, and deleting a supplier is conditioned on the version it read
//! after finding no product: a product created in between makes the delete
//! fail, so no product ever names a deleted supplier.

pub mod check;
pub mod import;
pub mod stock;

pub use check::check_item;
pub use import::import_id;

use std::sync::Arc;

use constellation_core::OrgId;
use constellation_core::auth::Email;
use constellation_core::etag::{Etag, Precondition};
use constellation_core::ids::{is_time_ordered_id, time_ordered_id_at};
use constellation_core::money::{Currency, Money};
use constellation_platform::outbox::Outbox;
use constellation_platform::retry::backoff;
use constellation_platform::table::{
    Condition, Index, IndexKey, Item, ItemKey, Query, SortKey, Write,
};
use constellation_platform::{Clock, StoreError, Table};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::domain::Levels;

/// How many times a write that lost a race is tried again.
pub const ATTEMPTS: usize = 25;

/// A supplier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Supplier {
    /// Its id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Contact e-mail.
    pub email: String,
    /// Contact phone.
    pub phone: String,
    /// Days from order to delivery.
    pub lead_time_days: u32,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
    version: u64,
}

/// The editable fields of a supplier, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupplierFields {
    /// Name.
    pub name: String,
    /// Contact e-mail.
    pub email: Email,
    /// Contact phone.
    pub phone: String,
    /// Days from order to delivery.
    pub lead_time_days: u32,
}

/// A product and its stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// Its id.
    pub id: String,
    /// Unique per organization.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Unit price.
    pub price: Money,
    /// The supplier, if any.
    pub supplier_id: Option<String>,
    /// `inventory.low` when `available` falls below it.
    pub reorder_level: i64,
    /// Orderable.
    pub active: bool,
    /// Deleted (kept for history; never orderable).
    pub archived: bool,
    /// Stock.
    pub levels: Levels,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
    /// Changes on every write.
    pub etag: Etag,
    version: u64,
}

/// The editable fields of a product, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductFields {
    /// SKU.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Unit price.
    pub price: Money,
    /// The supplier, if any.
    pub supplier_id: Option<String>,
    /// Reorder level.
    pub reorder_level: i64,
    /// Orderable.
    pub active: bool,
}

/// Why a catalog operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// No such supplier or product in the caller's organization.
    #[error("no such {0}")]
    NotFound(&'static str),
    /// Another product has this SKU.
    #[error("sku: another product has this SKU")]
    SkuTaken,
    /// Stock would fall below what is reserved.
    #[error("on_hand may not fall below reserved ({reserved}); it would be {would_be}")]
    InsufficientStock {
        /// Reserved now.
        reserved: i64,
        /// What on_hand would become.
        would_be: i64,
    },
    /// `supplier_id` names no supplier of the organization.
    #[error("supplier_id: no such supplier")]
    UnknownSupplier,
    /// The resource is still in use.
    #[error("{0}")]
    InUse(&'static str),
    /// `If-Match` is required here.
    #[error("send If-Match with the ETag you read (not *)")]
    PreconditionRequired,
    /// `If-Match` did not match.
    #[error("the product changed since you read it")]
    PreconditionFailed,
    /// Too many concurrent writers.
    #[error("changed concurrently too often; retry")]
    Contention,
    /// An input is invalid.
    #[error(transparent)]
    Invalid(#[from] constellation_core::ValidationError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The catalog service's rules.
#[derive(Debug, Clone)]
pub struct CatalogStore {
    table: Arc<dyn Table>,
    outbox: Outbox,
    clock: Arc<dyn Clock>,
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Backend(anyhow::anyhow!("catalog record has a bad {what}"))
}

/// A time-ordered id for a new record.
pub(crate) fn new_id(now: OffsetDateTime) -> String {
    time_ordered_id_at(now, uuid::Uuid::new_v4().as_u128())
}

/// Whether `raw` is an id as issued.
pub fn is_id(raw: &str) -> bool {
    is_time_ordered_id(raw)
}

fn supplier_key(org: &OrgId, id: &str) -> ItemKey {
    ItemKey::new(format!("SUP#{org}"), id)
}

pub(crate) fn product_key(org: &OrgId, id: &str) -> ItemKey {
    ItemKey::new(format!("PROD#{org}"), id)
}

fn sku_key(org: &OrgId, sku: &str) -> ItemKey {
    ItemKey::new(format!("SKUIDX#{org}"), sku)
}

fn supplier_item(org: &OrgId, s: &Supplier) -> Item {
    let mut item = Item::new(supplier_key(org, &s.id))
        .with("name", s.name.as_str())
        .with("email", s.email.as_str())
        .with("phone", s.phone.as_str())
        .with("lead_time_days", s.lead_time_days)
        .with("created_at", rfc3339(s.created_at))
        .with("updated_at", rfc3339(s.updated_at));
    item.version = s.version;
    item
}

fn supplier_from(item: &Item) -> Result<Supplier, StoreError> {
    let text = |n: &str| item.str(n).map(str::to_owned).ok_or_else(|| corrupt(n));
    let time = |n: &str| OffsetDateTime::parse(&text(n)?, &Rfc3339).map_err(|_| corrupt(n));
    Ok(Supplier {
        id: item.key.sk.clone(),
        name: text("name")?,
        email: text("email")?,
        phone: text("phone")?,
        lead_time_days: item
            .int("lead_time_days")
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| corrupt("lead_time_days"))?,
        created_at: time("created_at")?,
        updated_at: time("updated_at")?,
        version: item.version,
    })
}

/// The writes that create product `p`: the product and the claim of its
/// SKU, each only if absent (index 1 failing means the SKU is taken).
pub(crate) fn new_product_writes(org: &OrgId, p: &Product) -> Vec<Write> {
    vec![
        Write::Put {
            item: product_item(org, p),
            condition: Condition::NotExists,
        },
        Write::Put {
            item: Item::new(sku_key(org, &p.sku)).with("product", p.id.as_str()),
            condition: Condition::NotExists,
        },
    ]
}

pub(crate) fn product_item(org: &OrgId, p: &Product) -> Item {
    let mut item = Item::new(product_key(org, &p.id))
        .with("sku", p.sku.as_str())
        .with("name", p.name.as_str())
        .with("description", p.description.as_str())
        .with("price", p.price.minor())
        .with("currency", p.price.currency().code())
        .with("reorder_level", p.reorder_level)
        .with("active", p.active)
        .with("archived", p.archived)
        .with("on_hand", p.levels.on_hand)
        .with("reserved", p.levels.reserved)
        .with("etag", p.etag.as_str())
        .with("created_at", rfc3339(p.created_at))
        .with("updated_at", rfc3339(p.updated_at));
    if let Some(s) = &p.supplier_id {
        item = item.with("supplier_id", s.as_str());
        item.gsi2 = Some(IndexKey::new(format!("PSUP#{org}#{s}"), p.id.as_str()));
    }
    item.gsi1 = Some(IndexKey::new(format!("SKU#{org}"), p.sku.as_str()));
    item.version = p.version;
    item
}

pub(crate) fn product_from(item: &Item) -> Result<Product, StoreError> {
    let text = |n: &str| item.str(n).map(str::to_owned).ok_or_else(|| corrupt(n));
    let time = |n: &str| OffsetDateTime::parse(&text(n)?, &Rfc3339).map_err(|_| corrupt(n));
    let int = |n: &str| item.int(n).ok_or_else(|| corrupt(n));
    let flag = |n: &str| {
        item.attrs
            .get(n)
            .and_then(serde_json::Value::as_bool)
            .ok_or_else(|| corrupt(n))
    };
    let currency =
        Currency::parse("currency", &text("currency")?).map_err(|_| corrupt("currency"))?;
    Ok(Product {
        id: item.key.sk.clone(),
        sku: text("sku")?,
        name: text("name")?,
        description: text("description")?,
        price: Money::from_minor(int("price")?, currency).ok_or_else(|| corrupt("price"))?,
        supplier_id: item.str("supplier_id").map(str::to_owned),
        reorder_level: int("reorder_level")?,
        active: flag("active")?,
        archived: flag("archived")?,
        levels: Levels {
            on_hand: int("on_hand")?,
            reserved: int("reserved")?,
        },
        created_at: time("created_at")?,
        updated_at: time("updated_at")?,
        etag: Etag::parse(&text("etag")?).map_err(|_| corrupt("etag"))?,
        version: item.version,
    })
}

impl Product {
    /// This product as rewritten by a change: next version, new tag, now.
    pub(crate) fn next(&self, now: OffsetDateTime) -> Product {
        let mut p = self.clone();
        p.version = self.version + 1;
        p.etag = Etag::from_bytes(uuid::Uuid::new_v4().into_bytes());
        p.updated_at = now;
        p
    }

    /// The condition that it is still as read.
    pub(crate) fn unchanged(&self) -> Condition {
        Condition::VersionEquals(self.version)
    }
}

/// What a product listing keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductFilter {
    /// SKUs starting with this.
    pub sku_prefix: Option<String>,
    /// Only this supplier's.
    pub supplier_id: Option<String>,
    /// Only active (or inactive) ones.
    pub active: Option<bool>,
}

impl CatalogStore {
    /// The store over its ports.
    pub fn new(table: Arc<dyn Table>, outbox: Outbox, clock: Arc<dyn Clock>) -> Self {
        Self {
            table,
            outbox,
            clock,
        }
    }

    /// The outbox (relayed by the `catalog-outbox` schedule).
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The table.
    pub fn table(&self) -> &Arc<dyn Table> {
        &self.table
    }

    /// Now, by the store's clock.
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    // ------------------------------------------------------------ suppliers

    /// Creates a supplier.
    pub async fn create_supplier(
        &self,
        org: &OrgId,
        fields: SupplierFields,
    ) -> Result<Supplier, CatalogError> {
        let now = self.clock.now();
        let s = Supplier {
            id: new_id(now),
            name: fields.name,
            email: fields.email.as_str().to_owned(),
            phone: fields.phone,
            lead_time_days: fields.lead_time_days,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        self.table
            .put(&supplier_item(org, &s), Condition::NotExists)
            .await?;
        Ok(s)
    }

    /// A supplier.
    pub async fn supplier(&self, org: &OrgId, id: &str) -> Result<Supplier, CatalogError> {
        match self.table.get(&supplier_key(org, id)).await? {
            Some(item) => Ok(supplier_from(&item)?),
            None => Err(CatalogError::NotFound("supplier")),
        }
    }

    /// One page of suppliers, oldest first.
    pub async fn suppliers(
        &self,
        org: &OrgId,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<Supplier>, Option<String>), CatalogError> {
        let mut q = Query::partition(format!("SUP#{org}"));
        q.limit = limit;
        q.cursor = cursor;
        let page = self.table.query(&q).await?;
        let items = page
            .items
            .iter()
            .map(supplier_from)
            .collect::<Result<_, _>>()?;
        Ok((items, page.next_cursor))
    }

    /// Replaces a supplier's fields (absent fields stay).
    pub async fn update_supplier(
        &self,
        org: &OrgId,
        id: &str,
        change: impl Fn(&mut Supplier),
    ) -> Result<Supplier, CatalogError> {
        for attempt in 0..ATTEMPTS {
            let current = self.supplier(org, id).await?;
            let mut next = current.clone();
            change(&mut next);
            next.version = current.version + 1;
            next.updated_at = self.clock.now();
            match self
                .table
                .put(
                    &supplier_item(org, &next),
                    Condition::VersionEquals(current.version),
                )
                .await
            {
                Ok(()) => return Ok(next),
                Err(StoreError::ConditionFailed { .. }) => {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(CatalogError::Contention)
    }

    /// Deletes a supplier no product names (409 otherwise).
    pub async fn delete_supplier(&self, org: &OrgId, id: &str) -> Result<(), CatalogError> {
        for attempt in 0..ATTEMPTS {
            let current = self.supplier(org, id).await?;
            let mut q = Query::partition(format!("PSUP#{org}#{id}"));
            q.index = Some(Index::Gsi2);
            q.limit = 1;
            if !self.table.query(&q).await?.items.is_empty() {
                return Err(CatalogError::InUse("products still name this supplier"));
            }
            match self
                .table
                .delete(
                    &supplier_key(org, id),
                    Condition::VersionEquals(current.version),
                )
                .await
            {
                Ok(_) => return Ok(()),
                // A product naming it was created (or it changed) meanwhile.
                Err(StoreError::ConditionFailed { .. }) => {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(CatalogError::Contention)
    }

    // ------------------------------------------------------------ products

    /// The writes that make `product` name `supplier_id`: the supplier is
    /// rewritten as read (a new version), so a delete racing this fails.
    async fn touch_supplier(&self, org: &OrgId, supplier_id: &str) -> Result<Write, CatalogError> {
        let s = self.supplier(org, supplier_id).await.map_err(|e| match e {
            CatalogError::NotFound(_) => CatalogError::UnknownSupplier,
            e => e,
        })?;
        let mut touched = s.clone();
        touched.version = s.version + 1;
        Ok(Write::Put {
            item: supplier_item(org, &touched),
            condition: Condition::VersionEquals(s.version),
        })
    }

    /// Creates a product with no stock; its SKU must be free.
    pub async fn create_product(
        &self,
        org: &OrgId,
        fields: ProductFields,
    ) -> Result<Product, CatalogError> {
        for attempt in 0..ATTEMPTS {
            let now = self.clock.now();
            let p = Product {
                id: new_id(now),
                sku: fields.sku.clone(),
                name: fields.name.clone(),
                description: fields.description.clone(),
                price: fields.price,
                supplier_id: fields.supplier_id.clone(),
                reorder_level: fields.reorder_level,
                active: fields.active,
                archived: false,
                levels: Levels {
                    on_hand: 0,
                    reserved: 0,
                },
                created_at: now,
                updated_at: now,
                etag: Etag::from_bytes(uuid::Uuid::new_v4().into_bytes()),
                version: 1,
            };
            let mut writes = new_product_writes(org, &p);
            if let Some(s) = &p.supplier_id {
                writes.push(self.touch_supplier(org, s).await?);
            }
            match self.table.transact(&writes).await {
                Ok(()) => return Ok(p),
                Err(StoreError::ConditionFailed { index: Some(1) }) => {
                    return Err(CatalogError::SkuTaken);
                }
                Err(StoreError::ConditionFailed { .. }) => {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(CatalogError::Contention)
    }

    /// A product (archived ones too).
    pub async fn product(&self, org: &OrgId, id: &str) -> Result<Product, CatalogError> {
        if !is_id(id) {
            return Err(CatalogError::NotFound("product"));
        }
        match self.table.get(&product_key(org, id)).await? {
            Some(item) => Ok(product_from(&item)?),
            None => Err(CatalogError::NotFound("product")),
        }
    }

    /// One page of products: by SKU (with `sku_prefix`), or by supplier.
    /// Filters the page it reads, so a page may hold fewer than `limit`.
    pub async fn products(
        &self,
        org: &OrgId,
        filter: &ProductFilter,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<Product>, Option<String>), CatalogError> {
        let mut q = match &filter.supplier_id {
            Some(s) => {
                let mut q = Query::partition(format!("PSUP#{org}#{s}"));
                q.index = Some(Index::Gsi2);
                q
            }
            None => {
                let mut q = Query::partition(format!("SKU#{org}"));
                q.index = Some(Index::Gsi1);
                if let Some(prefix) = filter.sku_prefix.as_deref().filter(|p| !p.is_empty()) {
                    q.sort = SortKey::Prefix(prefix.to_owned());
                }
                q
            }
        };
        q.limit = limit;
        q.cursor = cursor;
        let page = self.table.query(&q).await?;
        let mut items = Vec::with_capacity(page.items.len());
        for item in &page.items {
            let p = product_from(item)?;
            let keep = filter.active.is_none_or(|a| a == p.active)
                && filter
                    .sku_prefix
                    .as_deref()
                    .is_none_or(|prefix| p.sku.starts_with(prefix));
            if keep {
                items.push(p);
            }
        }
        Ok((items, page.next_cursor))
    }

    /// Changes a product (`If-Match` required): a new SKU must be free, a
    /// new supplier must exist.
    pub async fn update_product(
        &self,
        org: &OrgId,
        id: &str,
        precondition: &Precondition,
        change: impl Fn(&mut ProductFields),
    ) -> Result<Product, CatalogError> {
        if matches!(precondition, Precondition::None | Precondition::Exists) {
            return Err(CatalogError::PreconditionRequired);
        }
        let current = self.product(org, id).await?;
        if !precondition.admits(Some(&current.etag)) {
            return Err(CatalogError::PreconditionFailed);
        }
        let mut fields = ProductFields {
            sku: current.sku.clone(),
            name: current.name.clone(),
            description: current.description.clone(),
            price: current.price,
            supplier_id: current.supplier_id.clone(),
            reorder_level: current.reorder_level,
            active: current.active,
        };
        change(&mut fields);
        let mut next = current.next(self.clock.now());
        next.sku = fields.sku;
        next.name = fields.name;
        next.description = fields.description;
        next.price = fields.price;
        next.supplier_id = fields.supplier_id;
        next.reorder_level = fields.reorder_level;
        next.active = fields.active && !current.archived;
        let mut writes = vec![Write::Put {
            item: product_item(org, &next),
            condition: current.unchanged(),
        }];
        let sku_index = if next.sku != current.sku {
            writes.push(Write::Put {
                item: Item::new(sku_key(org, &next.sku)).with("product", next.id.as_str()),
                condition: Condition::NotExists,
            });
            writes.push(Write::Delete {
                key: sku_key(org, &current.sku),
                condition: Condition::None,
            });
            Some(1)
        } else {
            None
        };
        if let Some(s) = next
            .supplier_id
            .as_ref()
            .filter(|s| Some(*s) != current.supplier_id.as_ref())
        {
            writes.push(self.touch_supplier(org, s).await?);
        }
        match self.table.transact(&writes).await {
            Ok(()) => Ok(next),
            Err(StoreError::ConditionFailed { index }) if index.is_some() && index == sku_index => {
                Err(CatalogError::SkuTaken)
            }
            Err(StoreError::ConditionFailed { index: Some(0) }) => {
                Err(CatalogError::PreconditionFailed)
            }
            Err(StoreError::ConditionFailed { .. }) => Err(CatalogError::Contention),
            Err(e) => Err(e.into()),
        }
    }

    /// Archives a product (never orderable again; its SKU stays taken);
    /// refused while any of its stock is reserved.
    pub async fn archive_product(&self, org: &OrgId, id: &str) -> Result<(), CatalogError> {
        for attempt in 0..ATTEMPTS {
            let current = self.product(org, id).await?;
            if current.archived {
                return Err(CatalogError::NotFound("product"));
            }
            if current.levels.reserved > 0 {
                return Err(CatalogError::InUse(
                    "stock of this product is reserved for orders",
                ));
            }
            let mut next = current.next(self.clock.now());
            next.archived = true;
            next.active = false;
            match self
                .table
                .put(&product_item(org, &next), current.unchanged())
                .await
            {
                Ok(()) => return Ok(()),
                Err(StoreError::ConditionFailed { .. }) => {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(CatalogError::Contention)
    }
}
