//! Orders from elsewhere (a legacy database), stored as the operator under
//! ids the importer chose ([`OrderId::at`]), so that re-running an
//! import writes nothing twice ([`Imported::AlreadyPresent`]).
//!
//! An imported order must leave nothing the saga cannot finish. Catalog
//! knows nothing of it (no `order.placed` is published, so no stock is
//! reserved for it), so:
//! - a `pending` order is refused: it waits for an answer catalog will
//!   never send; finish it in the legacy system first;
//! - a `confirmed` one may still be cancelled or shipped through the API.
//!   Its units are still in legacy `on_hand` but not available: the
//!   importer reserves them with catalog's `import_reservation` (the
//!   reservation record `reserve` would have written, with the order's
//!   lines), so its `order.cancelled` / `order.shipped` settle it like a
//!   live order's (releasing, or taking the units off `on_hand`). Without
//!   it catalog finds no reservation and changes no stock. Reserve it
//!   before the order can be shipped: a ship that finds no reservation
//!   leaves no record, so a reservation imported after it would never be
//!   settled;
//! - `shipped`, `cancelled` and `rejected` ones are final.
//!
//! Nothing is published: historic orders must not start sagas or notify
//! anybody.

use constellation_core::auth::AccountId;
use constellation_core::import::Imported;
use constellation_core::validation::trimmed_text;

use super::{
    Order, OrderError, OrderId, OrderLine, OrderStore, Rejection, StoreError, Write, to_item,
};
use crate::domain::{self, Invalid, Status};
use constellation_core::OrgId;
use constellation_platform::table::Condition;
use time::OffsetDateTime;

/// The longest SKU taken from a legacy order, in characters (as from catalog).
const MAX_SKU_CHARS: usize = 200;

/// An order from elsewhere, as [`OrderStore::import_order`] stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderImport {
    /// Its id, chosen by the importer ([`OrderId::at`]).
    pub id: OrderId,
    /// The account that placed it: an account id (32 lowercase hex
    /// digits) of the organization (the importer makes sure it exists).
    pub placed_by: String,
    /// Its lines: 1 to `MAX_LINES` of distinct products, quantities 1 to
    /// `MAX_QUANTITY`, each priced (SKU and unit price, all in one
    /// currency); a rejected or cancelled order's may all be unpriced.
    pub lines: Vec<OrderLine>,
    /// The placer's note.
    pub note: Option<String>,
    /// Where it is: `confirmed`, `shipped`, `cancelled` or `rejected`.
    pub status: Status,
    /// Why it was rejected: given exactly when `status` is `rejected`.
    pub rejection: Option<Rejection>,
    /// When it was placed.
    pub created_at: OffsetDateTime,
    /// When it last changed.
    pub updated_at: OffsetDateTime,
}

/// `import` as the order it stores, checked by the API's rules.
pub(super) fn checked(org: &OrgId, import: OrderImport) -> Result<Order, Invalid> {
    if import.status == Status::Pending {
        return Err(Invalid::new(
            "status",
            "a pending order cannot be imported; finish it in the legacy system",
        ));
    }
    let raw: Vec<(String, Option<i64>)> = import
        .lines
        .iter()
        .map(|l| (l.product_id.clone(), Some(i64::from(l.quantity))))
        .collect();
    domain::lines(&raw)?;
    let priced = import.lines.iter().filter(|l| l.price.is_some()).count();
    let must_be_priced = matches!(import.status, Status::Confirmed | Status::Shipped);
    if priced != import.lines.len() && (priced > 0 || must_be_priced) {
        let i = import
            .lines
            .iter()
            .position(|l| l.price.is_none())
            .unwrap_or(0);
        return Err(Invalid::new(
            format!("lines[{i}].price"),
            if must_be_priced {
                "every line of a confirmed or shipped order must be priced"
            } else {
                "price every line or none"
            },
        ));
    }
    let mut currency = None;
    for (i, line) in import.lines.iter().enumerate() {
        let Some(price) = &line.price else { continue };
        trimmed_text("sku", &price.sku, 1, MAX_SKU_CHARS)
            .map_err(|e| Invalid::new(format!("lines[{i}].price.sku"), e.reason))?;
        let c = price.unit_price.currency();
        match currency {
            Some(first) if first != c => {
                return Err(Invalid::new(
                    format!("lines[{i}].price.unit_price"),
                    format!("must be in the order's one currency ({first})"),
                ));
            }
            _ => currency = Some(c),
        }
    }
    let rejection = match (import.status, import.rejection) {
        (Status::Rejected, Some(r)) => Some(Rejection {
            reason: domain::rejection_reason(&r.reason)
                .map_err(|e| Invalid::new("rejection.reason", e.0))?,
            product_id: r
                .product_id
                .as_deref()
                .map(|p| domain::product_id("rejection.product_id", p))
                .transpose()?,
        }),
        (Status::Rejected, None) => {
            return Err(Invalid::new(
                "rejection",
                "a rejected order needs catalog's reason",
            ));
        }
        (_, Some(_)) => {
            return Err(Invalid::new(
                "rejection",
                "only a rejected order has a rejection",
            ));
        }
        (_, None) => None,
    };
    let placed_by = AccountId::parse(&import.placed_by).map_err(|_| {
        Invalid::new(
            "placed_by",
            "must be an account id: 32 lowercase hex digits",
        )
    })?;
    if import.updated_at < import.created_at {
        return Err(Invalid::new("updated_at", "must not be before created_at"));
    }
    Ok(Order {
        id: import.id,
        org: org.clone(),
        placed_by: placed_by.as_str().to_owned(),
        lines: import.lines,
        note: domain::note(import.note.as_deref())?,
        status: import.status,
        rejection,
        created_at: import.created_at,
        updated_at: import.updated_at,
        version: 1,
    })
}

/// Whether `import` passes the rules [`OrderStore::import_order`] applies,
/// without storing anything: an importer checks an order before it writes
/// what the order depends on elsewhere (its reservation in catalog).
pub fn check_import(org: &OrgId, import: &OrderImport) -> Result<(), Invalid> {
    checked(org, import.clone()).map(|_| ())
}

impl OrderStore {
    /// Stores an order imported from elsewhere, as the operator, with its
    /// legacy times and version 1, publishing nothing (see the module
    /// documentation for which statuses are taken and why `pending` is
    /// not). The API's rules apply to the lines, prices, note and
    /// rejection; [`OrderError::Invalid`] names the field at fault. An
    /// order already stored under its id answers
    /// [`Imported::AlreadyPresent`] and is left as it is.
    #[tracing::instrument(skip_all, fields(%org, id = import.id.as_str()))]
    pub async fn import_order(
        &self,
        org: &OrgId,
        import: OrderImport,
    ) -> Result<Imported, OrderError> {
        let order = checked(org, import)?;
        if self.find(org, order.id.as_str()).await?.is_some() {
            return Ok(Imported::AlreadyPresent);
        }
        let write = Write::Put {
            item: to_item(&order)?,
            condition: Condition::NotExists,
        };
        match self.outbox.commit(vec![write], &[]).await {
            Ok(()) => Ok(Imported::Created),
            // A concurrent import of the same order won.
            Err(StoreError::ConditionFailed { .. } | StoreError::Conflict(_)) => {
                match self.find(org, order.id.as_str()).await? {
                    Some(_) => Ok(Imported::AlreadyPresent),
                    None => Err(OrderError::Contention),
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}
