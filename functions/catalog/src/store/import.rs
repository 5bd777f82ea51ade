//! Suppliers and products from elsewhere (a legacy database), stored as the
//! operator under ids the importer chose, so that re-running an import
//! writes nothing twice ([`Imported::AlreadyPresent`]).
//!
//! Each record is written with everything the service keeps for it in one
//! transaction, the record itself conditioned on not existing: a product
//! with its SKU claim, its indexes, the rewrite of its supplier (as
//! `create_product` does, so a racing supplier delete fails) and one stock
//! movement, reason `import`, explaining its `on_hand`: every other change
//! of `on_hand` writes a movement, so a product's movements add up to its
//! level, imported ones included. Nothing is published: historic data must
//! not start sagas or raise low-stock alerts.
//!
//! A confirmed order imported into orders still holds its units: legacy
//! `on_hand` counts them (they have not left the warehouse) but they are not
//! available. [`CatalogStore::import_reservation`] writes the reservation
//! record `reserve` would have left for it ([`super::stock`]) and raises the
//! products' `reserved`, so shipping the order later takes the units off
//! `on_hand` and cancelling it makes them available again, as for a live
//! order.

use constellation_core::OrgId;
use constellation_core::ValidationError;
use constellation_core::etag::Etag;
use constellation_core::ids::time_ordered_id_at;
use constellation_core::import::Imported;
use constellation_core::orders::{MAX_LINES, MAX_QUANTITY};
use constellation_platform::StoreError;
use constellation_platform::retry::backoff;
use constellation_platform::table::{Condition, Write};
use time::OffsetDateTime;

use super::stock::{Movement, Reservation, movement_item, reserved_line, stamp};
use super::{
    ATTEMPTS, CatalogError, CatalogStore, Product, ProductFields, Supplier, SupplierFields, is_id,
    new_product_writes, product_from, product_item, product_key, rfc3339, sku_key, supplier_item,
    supplier_key,
};
use crate::domain::{self, Levels, MAX_DESCRIPTION_CHARS, Reason};

/// The id of a supplier or product imported from elsewhere: its real
/// creation time's milliseconds, then `seed` (derived by the importer from
/// the legacy id), so a re-run makes the same id and imported records sort
/// among the others by when they were really created.
pub fn import_id(created_at: OffsetDateTime, seed: u128) -> String {
    time_ordered_id_at(created_at, seed)
}

fn check_id(id: &str) -> Result<(), ValidationError> {
    if is_id(id) {
        Ok(())
    } else {
        Err(ValidationError::new("id", "must be an id as issued"))
    }
}

fn check_times(
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
) -> Result<(), ValidationError> {
    if updated_at < created_at {
        return Err(ValidationError::new(
            "updated_at",
            "must not be before created_at",
        ));
    }
    Ok(())
}

/// The lines of an imported reservation, by `reserve`'s rules: 1 to
/// `MAX_LINES` of distinct products (ids as issued), each 1 to
/// `MAX_QUANTITY` units.
fn check_reservation_lines(lines: &[(String, u32)]) -> Result<(), ValidationError> {
    if lines.is_empty() || lines.len() > MAX_LINES {
        return Err(ValidationError::new(
            "lines",
            format!("must hold 1 to {MAX_LINES} lines"),
        ));
    }
    let mut seen = std::collections::HashSet::with_capacity(lines.len());
    for (product, quantity) in lines {
        if !is_id(product) {
            return Err(ValidationError::new(
                "product_id",
                format!("{product:?} is not a product id as issued"),
            ));
        }
        if !seen.insert(product.as_str()) {
            return Err(ValidationError::new(
                "lines",
                format!("product {product} appears on more than one line"),
            ));
        }
        if *quantity == 0 || *quantity > MAX_QUANTITY {
            return Err(ValidationError::new(
                "quantity",
                format!("product {product}: must be 1 to {MAX_QUANTITY}"),
            ));
        }
    }
    Ok(())
}

impl CatalogStore {
    /// Stores a supplier imported from elsewhere under `id` (see
    /// [`import_id`]), with the API's field rules and the legacy times.
    /// One already stored under `id` answers [`Imported::AlreadyPresent`]
    /// and is left as it is.
    pub async fn import_supplier(
        &self,
        org: &OrgId,
        id: &str,
        fields: SupplierFields,
        created_at: OffsetDateTime,
        updated_at: OffsetDateTime,
    ) -> Result<Imported, CatalogError> {
        check_id(id)?;
        let s = Supplier {
            id: id.to_owned(),
            name: domain::name("name", &fields.name)?,
            email: fields.email.as_str().to_owned(),
            phone: domain::phone(&fields.phone)?,
            lead_time_days: domain::lead_time(u64::from(fields.lead_time_days))?,
            created_at,
            updated_at,
            version: 1,
        };
        check_times(created_at, updated_at)?;
        let key = supplier_key(org, id);
        if self.table().get(&key).await?.is_some() {
            return Ok(Imported::AlreadyPresent);
        }
        match self
            .table()
            .put(&supplier_item(org, &s), Condition::NotExists)
            .await
        {
            Ok(()) => Ok(Imported::Created),
            Err(StoreError::ConditionFailed { .. }) if self.table().get(&key).await?.is_some() => {
                Ok(Imported::AlreadyPresent)
            }
            Err(StoreError::ConditionFailed { .. }) => Err(CatalogError::Contention),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores a product imported from elsewhere under `id` (see
    /// [`import_id`]) with `on_hand` units in stock and none reserved, its
    /// SKU claimed and its supplier (which must exist in `org`:
    /// [`CatalogError::UnknownSupplier`] otherwise) rewritten, as
    /// [`CatalogStore::create_product`] does, plus one `import` movement of
    /// `on_hand` at `updated_at` when it is not 0. The fields follow the
    /// API's rules; a SKU another product holds is
    /// [`CatalogError::SkuTaken`]. One already stored under `id` answers
    /// [`Imported::AlreadyPresent`] and nothing is written.
    pub async fn import_product(
        &self,
        org: &OrgId,
        id: &str,
        fields: ProductFields,
        on_hand: i64,
        created_at: OffsetDateTime,
        updated_at: OffsetDateTime,
    ) -> Result<Imported, CatalogError> {
        check_id(id)?;
        let p = Product {
            id: id.to_owned(),
            sku: domain::sku(&fields.sku)?,
            name: domain::name("name", &fields.name)?,
            description: domain::text(
                "description",
                &fields.description,
                0,
                MAX_DESCRIPTION_CHARS,
            )?,
            price: fields.price,
            supplier_id: fields.supplier_id,
            reorder_level: domain::reorder_level(fields.reorder_level)?,
            active: fields.active,
            archived: false,
            levels: Levels {
                on_hand,
                reserved: 0,
            },
            created_at,
            updated_at,
            etag: Etag::from_bytes(uuid::Uuid::new_v4().into_bytes()),
            version: 1,
        };
        if on_hand < 0 {
            return Err(ValidationError::new("on_hand", "must not be negative").into());
        }
        if p.supplier_id.as_deref().is_some_and(|s| !is_id(s)) {
            return Err(CatalogError::UnknownSupplier);
        }
        check_times(created_at, updated_at)?;
        let mut writes = new_product_writes(org, &p);
        if on_hand > 0 {
            let movement = Movement {
                at: rfc3339(updated_at),
                reason: Reason::Import.as_str().to_owned(),
                on_hand_delta: on_hand,
                reserved_delta: 0,
                actor: None,
                order_id: None,
            };
            let sort = format!("{}#import", stamp(updated_at));
            writes.push(Write::Put {
                item: movement_item(org, id, &sort, &movement),
                condition: Condition::NotExists,
            });
        }
        for attempt in 0..ATTEMPTS {
            if self.product_exists(org, id).await? {
                return Ok(Imported::AlreadyPresent);
            }
            self.check_sku_free(org, &p.sku, id).await?;
            let mut attempt_writes = writes.clone();
            if let Some(s) = &p.supplier_id {
                // Rewritten as read: a delete racing this import fails.
                attempt_writes.push(self.touch_supplier(org, s).await?);
            }
            match self.table().transact(&attempt_writes).await {
                Ok(()) => return Ok(Imported::Created),
                // A concurrent import of the same product, another product
                // taking the SKU, or the supplier changing: the next round's
                // reads say which.
                Err(StoreError::ConditionFailed { .. } | StoreError::Conflict(_)) => {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(CatalogError::Contention)
    }

    /// Reserves stock for a confirmed order imported from elsewhere (its
    /// id `order_id`, as orders stores it): in one transaction, the
    /// reservation record `reserve` writes for a confirmed order (state
    /// `reserved`, each line with the product's SKU and price now, reserved
    /// `at`) and each product's `reserved` raised by its line's quantity,
    /// conditioned on the product as read (a lost race is retried). Then,
    /// as `reserve` does, one `reserved` movement per line at `at`. Later
    /// `order.shipped` / `order.cancelled` settle it like a live order's.
    ///
    /// The lines follow `reserve`'s rules ([`CatalogError::Invalid`] on
    /// `lines`, `product_id` or `quantity`). Every product must exist in
    /// `org` and not be archived (archiving refuses while stock is reserved,
    /// so no reservation holds an archived product); an inactive one is
    /// taken: the order was confirmed before, and deactivating a product
    /// leaves its reservations alone; so are products priced in different
    /// currencies (the order's prices are orders' record; the lines' here
    /// are kept, never used). A line beyond the product's available
    /// units (`on_hand - reserved`) is refused on `quantity`. Nothing is
    /// written when anything is refused. Nothing is published: orders
    /// already has the order confirmed, and historic data raises no
    /// low-stock alert.
    ///
    /// A record already stored for `order_id` (an earlier run, a live
    /// reservation, or a cancellation that came first) answers
    /// [`Imported::AlreadyPresent`] and stock is left as it is; only
    /// movements of that record missing after an interrupted run are
    /// written.
    pub async fn import_reservation(
        &self,
        org: &OrgId,
        order_id: &str,
        lines: &[(String, u32)],
        at: OffsetDateTime,
    ) -> Result<Imported, CatalogError> {
        if !is_id(order_id) {
            return Err(ValidationError::new("order_id", "must be an order id as issued").into());
        }
        check_reservation_lines(lines)?;
        for attempt in 0..ATTEMPTS {
            // Products first, then the reservation: a concurrent import that
            // commits between the two reads is seen as the record it wrote,
            // not as stock it took (which would refuse this one on
            // `quantity`). Both reads are strongly consistent.
            let keys: Vec<_> = lines.iter().map(|(p, _)| product_key(org, p)).collect();
            let reads = futures::future::join_all(keys.iter().map(|k| self.table().get(k))).await;
            if let Some((r, _)) = self.reservation(org, order_id).await? {
                self.ensure_movements(org, order_id, &r).await?;
                return Ok(Imported::AlreadyPresent);
            }
            let now = self.now();
            let mut writes = Vec::with_capacity(lines.len() + 1);
            let mut reserved = Vec::with_capacity(lines.len());
            for ((id, quantity), read) in lines.iter().zip(reads) {
                let Some(item) = read? else {
                    return Err(ValidationError::new(
                        "product_id",
                        format!("no product {id} in the organization"),
                    )
                    .into());
                };
                let p = product_from(&item)?;
                if p.archived {
                    return Err(ValidationError::new(
                        "product_id",
                        format!("product {id} is archived"),
                    )
                    .into());
                }
                let q = i64::from(*quantity);
                if p.levels.available() < q {
                    return Err(ValidationError::new(
                        "quantity",
                        format!(
                            "product {id}: {q} exceeds the {} available ({} on hand, {} reserved)",
                            p.levels.available(),
                            p.levels.on_hand,
                            p.levels.reserved
                        ),
                    )
                    .into());
                }
                let mut next = p.next(now);
                next.levels.reserved += q;
                writes.push(Write::Put {
                    item: product_item(org, &next),
                    condition: p.unchanged(),
                });
                reserved.push(reserved_line(&p, *quantity));
            }
            let r = Reservation::reserved(reserved, at);
            writes.push(Write::Put {
                item: Self::reservation_item(org, order_id, &r, 1),
                condition: Condition::NotExists,
            });
            match self.table().transact(&writes).await {
                Ok(()) => {
                    self.ensure_movements(org, order_id, &r).await?;
                    return Ok(Imported::Created);
                }
                // A concurrent import (or reservation) of the same order, or
                // a product changing: the next round's reads say which.
                Err(StoreError::ConditionFailed { .. } | StoreError::Conflict(_)) => {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(CatalogError::Contention)
    }

    async fn product_exists(&self, org: &OrgId, id: &str) -> Result<bool, StoreError> {
        Ok(self.table().get(&product_key(org, id)).await?.is_some())
    }

    /// [`CatalogError::SkuTaken`] when a product other than `id` claims `sku`.
    async fn check_sku_free(&self, org: &OrgId, sku: &str, id: &str) -> Result<(), CatalogError> {
        match self.table().get(&sku_key(org, sku)).await? {
            Some(claim) if claim.str("product") != Some(id) => Err(CatalogError::SkuTaken),
            _ => Ok(()),
        }
    }
}
