//! Whether an item is an order record this build can serve: the check an
//! import of an export runs on each record before writing it. An order is
//! read as the store reads it, then held to the rules an imported order is
//! ([`super::import`]: lines, prices in one currency, note, rejection,
//! placer, times), which are the API's; a `pending` order (which an import
//! from a legacy database refuses, but a live export may hold) has no
//! prices and no rejection yet.

use constellation_core::OrgId;
use constellation_platform::StoreError;
use constellation_platform::table::Item;

use super::import::checked;
use super::{OrderImport, by_placer, from_item};
use crate::domain::Status;

/// `Ok` when `item` is a valid order record, or why it is not (naming the
/// field at fault).
pub fn check_item(item: &Item) -> Result<(), String> {
    let Some(org) = item.key.pk.strip_prefix("ORD#") else {
        return Err(format!("`{}` is not an orders record", item.key.pk));
    };
    let org = OrgId::parse(org).map_err(|e| format!("org: {}", e.reason))?;
    let order = from_item(&org, item).map_err(|e| {
        // The readers say what is wrong in the backend error's message.
        let message = match &e {
            StoreError::Backend(inner) => inner.to_string(),
            other => other.to_string(),
        };
        match message.rsplit_once("order record has a bad ") {
            Some((_, field)) => format!("{field}: not as an order stores it"),
            None => message,
        }
    })?;
    let mut status = order.status;
    if status == Status::Pending {
        if let Some(i) = order.lines.iter().position(|l| l.price.is_some()) {
            return Err(format!(
                "lines[{i}].price: a pending order is not priced yet"
            ));
        }
        if order.rejection.is_some() {
            return Err("rejection: only a rejected order has a rejection".to_owned());
        }
        // Otherwise held to the rules of an order whose lines may be unpriced.
        status = Status::Cancelled;
    }
    let expected = checked(
        &org,
        OrderImport {
            id: order.id.clone(),
            placed_by: order.placed_by.clone(),
            lines: order.lines.clone(),
            note: order.note.clone(),
            status,
            rejection: order.rejection.clone(),
            created_at: order.created_at,
            updated_at: order.updated_at,
        },
    )
    .map_err(|e| e.to_string())?;
    if expected.note != order.note {
        return Err("note: not as the API keeps it (trimmed, blank is none)".to_owned());
    }
    if item.gsi1.as_ref().map(|k| (k.pk.as_str(), k.sk.as_str()))
        != Some((
            by_placer(&org, &order.placed_by).as_str(),
            order.id.as_str(),
        ))
    {
        return Err("placed_by: the by-placer index entry is missing or wrong".to_owned());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use constellation_core::money::{Currency, Money};
    use time::macros::datetime;

    use super::super::{Order, OrderId, OrderLine, Rejection, to_item};
    use super::*;
    use crate::domain::Price;

    fn order(status: Status) -> Order {
        let at = datetime!(2024-03-01 10:00 UTC);
        let priced = matches!(status, Status::Confirmed | Status::Shipped);
        Order {
            id: OrderId::at(at, 7),
            org: OrgId::parse("acme").unwrap(),
            placed_by: "ab".repeat(16),
            lines: vec![OrderLine {
                product_id: "p-1".to_owned(),
                quantity: 2,
                price: priced.then(|| Price {
                    sku: "BOLT-10".to_owned(),
                    unit_price: Money::from_minor(250, Currency::parse("c", "EUR").unwrap())
                        .unwrap(),
                }),
            }],
            note: Some("ring twice".to_owned()),
            status,
            rejection: (status == Status::Rejected).then(|| Rejection {
                reason: "insufficient-stock".to_owned(),
                product_id: Some("p-1".to_owned()),
            }),
            created_at: at,
            updated_at: at,
            version: 1,
        }
    }

    fn fails_on(item: &Item, field: &str) {
        let err = check_item(item).expect_err("a corrupted order passed");
        assert!(err.starts_with(&format!("{field}:")), "{field}: {err}");
    }

    #[test]
    fn an_order_in_every_status_passes() {
        for status in [
            Status::Pending,
            Status::Confirmed,
            Status::Rejected,
            Status::Cancelled,
            Status::Shipped,
        ] {
            check_item(&to_item(&order(status)).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", status.as_str()));
        }
    }

    #[test]
    fn a_corrupted_order_fails_naming_the_field() {
        let item = to_item(&order(Status::Confirmed)).unwrap();
        fails_on(&item.clone().with("status", "lost"), "status");
        fails_on(&item.clone().with("placed_by", "bob"), "placed_by");
        fails_on(&item.clone().with("note", "x".repeat(501)), "note");
        fails_on(&item.clone().with("note", " padded "), "note");
        fails_on(&item.clone().with("currency", "EURO"), "currency");
        fails_on(
            &item.clone().with("created_at", "2030-01-01T00:00:00Z"),
            "updated_at",
        );
        let mut lines = item.attrs["lines"].clone();
        lines[0]["quantity"] = 0.into();
        fails_on(&item.clone().with("lines", lines), "lines[0].quantity");
        let mut lines = item.attrs["lines"].clone();
        lines[0]["unit_price"] = (-5).into();
        fails_on(&item.clone().with("lines", lines), "unit price");
        fails_on(&item.clone().with("lines", serde_json::json!([])), "lines");
        let mut bad_id = item.clone();
        bad_id.key.sk = "o-1".to_owned();
        fails_on(&bad_id, "id");
        let mut no_index = item.clone();
        no_index.gsi1 = None;
        fails_on(&no_index, "placed_by");
        let rejected = to_item(&order(Status::Rejected)).unwrap();
        let mut no_reason = rejected.clone();
        no_reason.attrs.remove("reason");
        fails_on(&no_reason, "rejection");
        let pending = to_item(&order(Status::Pending)).unwrap();
        fails_on(&item.clone().with("status", "pending"), "lines[0].price");
        assert!(check_item(&pending).is_ok());
        let mut other = item;
        other.key.pk = "PLC#acme".to_owned();
        assert_eq!(
            check_item(&other).unwrap_err(),
            "`PLC#acme` is not an orders record"
        );
    }
}
