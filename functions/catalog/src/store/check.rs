//! Whether an item is a catalog record this build can serve: the check an
//! import of an export runs on each record before writing it, with the
//! rules the API applies (names and descriptions within their lengths, a
//! SKU as the pattern says, a price valid for its currency, stock levels
//! that hold, ids as issued), except those relative to now.

use constellation_core::OrgId;
use constellation_core::ValidationError;
use constellation_core::auth::{AccountId, Email};
use constellation_core::money::{Currency, Money};
use constellation_core::orders::{MAX_LINES, MAX_QUANTITY};
use constellation_platform::StoreError;
use constellation_platform::table::Item;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::stock::{Movement, Reservation};
use super::{is_id, product_from, supplier_from};
use crate::domain::{self, MAX_DESCRIPTION_CHARS, MAX_LEAD_TIME_DAYS};

/// The reasons a movement records.
const MOVEMENT_REASONS: [&str; 8] = [
    "received", "count", "damaged", "returned", "reserved", "released", "shipped", "import",
];
/// The states of a reservation record.
const RESERVATION_STATES: [&str; 5] = ["reserved", "rejected", "released", "shipped", "cancelled"];

/// `Ok` when `item` is a valid catalog record, or why it is not (naming the
/// field at fault).
pub fn check_item(item: &Item) -> Result<(), String> {
    let (pk, sk) = (item.key.pk.as_str(), item.key.sk.as_str());
    let segments: Vec<&str> = pk.split('#').collect();
    match segments.as_slice() {
        ["SUP", org] => {
            org_id(org)?;
            supplier(item)
        }
        ["PROD", org] => product(&org_id(org)?, item),
        ["SKUIDX", org] => {
            org_id(org)?;
            domain::sku(sk).map_err(invalid)?;
            id("product", item.str("product").unwrap_or_default())
        }
        ["MOV", org, product] => {
            org_id(org)?;
            id("product", product)?;
            movement(item)
        }
        ["RES", org] => {
            org_id(org)?;
            id("order_id", sk)?;
            reservation(item)
        }
        _ => Err(format!("`{pk}` is not a catalog record")),
    }
}

fn invalid(e: ValidationError) -> String {
    e.to_string()
}

/// A reader's error as `<field>: ...` (the readers name the attribute).
fn unreadable(e: StoreError) -> String {
    // The readers say what is wrong in the backend error's message.
    let message = match &e {
        StoreError::Backend(inner) => inner.to_string(),
        other => other.to_string(),
    };
    match message.rsplit_once("catalog record has a bad ") {
        Some((_, field)) => format!("{field}: not as the catalog stores it"),
        None => message,
    }
}

fn org_id(raw: &str) -> Result<OrgId, String> {
    OrgId::parse(raw).map_err(|e| format!("org: {}", e.reason))
}

fn id(field: &str, raw: &str) -> Result<(), String> {
    if is_id(raw) {
        Ok(())
    } else {
        Err(format!("{field}: must be an id as issued"))
    }
}

fn time(field: &str, raw: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(raw, &Rfc3339).map_err(|_| format!("{field}: must be an RFC 3339 time"))
}

/// `raw` as the API keeps it: `check` accepts it and leaves it unchanged.
fn kept(
    field: &str,
    raw: &str,
    check: impl FnOnce(&str) -> Result<String, ValidationError>,
) -> Result<(), String> {
    if check(raw).map_err(invalid)? == raw {
        Ok(())
    } else {
        Err(format!("{field}: not as the API keeps it (trimmed)"))
    }
}

fn supplier(item: &Item) -> Result<(), String> {
    id("id", &item.key.sk)?;
    let s = supplier_from(item).map_err(unreadable)?;
    kept("name", &s.name, |v| domain::name("name", v))?;
    let email = Email::parse(&s.email).map_err(invalid)?;
    if email.as_str() != s.email {
        return Err("email: not as the API keeps it".to_owned());
    }
    kept("phone", &s.phone, domain::phone)?;
    if s.lead_time_days > MAX_LEAD_TIME_DAYS {
        return Err(format!("lead_time_days: must be 0 to {MAX_LEAD_TIME_DAYS}"));
    }
    if s.updated_at < s.created_at {
        return Err("updated_at: must not be before created_at".to_owned());
    }
    Ok(())
}

fn product(org: &OrgId, item: &Item) -> Result<(), String> {
    id("id", &item.key.sk)?;
    let p = product_from(item).map_err(unreadable)?;
    kept("sku", &p.sku, domain::sku)?;
    kept("name", &p.name, |v| domain::name("name", v))?;
    kept("description", &p.description, |v| {
        domain::text("description", v, 0, MAX_DESCRIPTION_CHARS)
    })?;
    domain::reorder_level(p.reorder_level).map_err(invalid)?;
    if !p.levels.valid() {
        return Err(format!(
            "reserved: {} reserved of {} on hand (never negative, never more than on hand)",
            p.levels.reserved, p.levels.on_hand
        ));
    }
    if p.updated_at < p.created_at {
        return Err("updated_at: must not be before created_at".to_owned());
    }
    if item.gsi1.as_ref().map(|k| (k.pk.as_str(), k.sk.as_str()))
        != Some((format!("SKU#{org}").as_str(), p.sku.as_str()))
    {
        return Err("sku: the by-SKU index entry is missing or wrong".to_owned());
    }
    let by_supplier = item.gsi2.as_ref().map(|k| (k.pk.clone(), k.sk.clone()));
    match &p.supplier_id {
        Some(s) => {
            id("supplier_id", s)?;
            if by_supplier != Some((format!("PSUP#{org}#{s}"), p.id.clone())) {
                return Err("supplier_id: the by-supplier index entry is missing or wrong".into());
            }
        }
        None if by_supplier.is_some() => {
            return Err("supplier_id: a by-supplier index entry without a supplier".into());
        }
        None => {}
    }
    Ok(())
}

fn movement(item: &Item) -> Result<(), String> {
    let stamp = item.key.sk.split('#').next().unwrap_or_default();
    if stamp.len() != 20 || !stamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err("at: the sort key must begin with the movement's time".to_owned());
    }
    let m: Movement = serde_json::from_value(serde_json::Value::Object(item.attrs.clone()))
        .map_err(|e| format!("movement: {e}"))?;
    time("at", &m.at)?;
    if !MOVEMENT_REASONS.contains(&m.reason.as_str()) {
        return Err(format!(
            "reason: `{}` is not one of {}",
            m.reason,
            MOVEMENT_REASONS.join(", ")
        ));
    }
    if let Some(actor) = &m.actor {
        AccountId::parse(actor).map_err(|_| "actor: must be an account id".to_owned())?;
    }
    if let Some(order) = &m.order_id {
        id("order_id", order)?;
    }
    Ok(())
}

fn reservation(item: &Item) -> Result<(), String> {
    let r: Reservation = serde_json::from_value(serde_json::Value::Object(item.attrs.clone()))
        .map_err(|e| format!("reservation: {e}"))?;
    if !RESERVATION_STATES.contains(&r.state.as_str()) {
        return Err(format!(
            "state: `{}` is not one of {}",
            r.state,
            RESERVATION_STATES.join(", ")
        ));
    }
    if r.lines.len() > MAX_LINES {
        return Err(format!("lines: at most {MAX_LINES}"));
    }
    for line in &r.lines {
        id("lines", &line.product_id)?;
        domain::sku(&line.sku).map_err(|e| format!("lines: {e}"))?;
        if !(1..=MAX_QUANTITY).contains(&line.quantity) {
            return Err(format!("lines: quantity must be 1 to {MAX_QUANTITY}"));
        }
        let currency = Currency::parse("currency", &line.unit_price.currency)
            .map_err(|e| format!("lines: {e}"))?;
        Money::parse("unit_price", &line.unit_price.amount, currency)
            .map_err(|e| format!("lines: {e}"))?;
    }
    if let Some(product) = &r.product_id {
        id("product_id", product)?;
    }
    for (field, at) in [("reserved_at", &r.reserved_at), ("ended_at", &r.ended_at)] {
        if let Some(at) = at {
            time(field, at)?;
        }
    }
    if let Some(reason) = &r.reason
        && reason.chars().any(char::is_control)
    {
        return Err("reason: has control characters".to_owned());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use constellation_core::etag::Etag;
    use constellation_core::orders::{ReservedLine, WireMoney};
    use time::macros::datetime;

    use super::super::stock::{movement_item, stamp};
    use super::super::{
        CatalogStore, Product, Supplier, product_item, product_key, rfc3339, sku_key, supplier_item,
    };
    use super::*;
    use crate::domain::Levels;

    const AT: OffsetDateTime = datetime!(2024-03-01 10:00 UTC);

    fn org() -> OrgId {
        OrgId::parse("acme").unwrap()
    }

    fn new_id(seed: u128) -> String {
        super::super::import_id(AT, seed)
    }

    fn supplier_fx() -> Supplier {
        Supplier {
            id: new_id(1),
            name: "Acme Parts".to_owned(),
            email: "parts@acme.test".to_owned(),
            phone: "+1 555 0100".to_owned(),
            lead_time_days: 7,
            created_at: AT,
            updated_at: AT,
            version: 1,
        }
    }

    fn product_fx() -> Product {
        Product {
            id: new_id(2),
            sku: "BOLT-10".to_owned(),
            name: "Bolt".to_owned(),
            description: String::new(),
            price: Money::from_minor(250, Currency::parse("c", "EUR").unwrap()).unwrap(),
            supplier_id: Some(new_id(1)),
            reorder_level: 5,
            active: true,
            archived: false,
            levels: Levels {
                on_hand: 10,
                reserved: 2,
            },
            created_at: AT,
            updated_at: AT,
            etag: Etag::from_bytes([1; 16]),
            version: 2,
        }
    }

    fn movement_fx() -> Item {
        let m = Movement {
            at: rfc3339(AT),
            reason: "received".to_owned(),
            on_hand_delta: 10,
            reserved_delta: 0,
            actor: Some("ab".repeat(16)),
            order_id: None,
        };
        movement_item(&org(), &new_id(2), &format!("{}#x", stamp(AT)), &m)
    }

    fn reservation_fx() -> Item {
        let line = ReservedLine {
            product_id: new_id(2),
            sku: "BOLT-10".to_owned(),
            quantity: 2,
            unit_price: WireMoney {
                amount: "2.50".to_owned(),
                currency: "EUR".to_owned(),
            },
        };
        CatalogStore::reservation_item(
            &org(),
            &new_id(3),
            &Reservation::reserved(vec![line], AT),
            1,
        )
    }

    fn fails_on(item: &Item, field: &str) {
        let err = check_item(item).expect_err("a corrupted record passed");
        assert!(err.starts_with(&format!("{field}:")), "{field}: {err}");
    }

    #[test]
    fn every_kind_as_stored_passes() {
        let p = product_fx();
        for item in [
            supplier_item(&org(), &supplier_fx()),
            product_item(&org(), &p),
            Item::new(sku_key(&org(), &p.sku)).with("product", p.id.as_str()),
            movement_fx(),
            reservation_fx(),
        ] {
            check_item(&item).unwrap_or_else(|e| panic!("{}: {e}", item.key.pk));
        }
    }

    #[test]
    fn corrupted_records_fail_naming_the_field() {
        let s = supplier_item(&org(), &supplier_fx());
        fails_on(&s.clone().with("email", "nobody"), "email");
        fails_on(&s.clone().with("phone", "call me"), "phone");
        fails_on(&s.clone().with("name", ""), "name");
        fails_on(&s.clone().with("lead_time_days", 400), "lead_time_days");
        let p = product_item(&org(), &product_fx());
        fails_on(&p.clone().with("price", -1), "price");
        fails_on(&p.clone().with("sku", "bolt"), "sku");
        fails_on(&p.clone().with("reserved", 11), "reserved");
        fails_on(&p.clone().with("reorder_level", -1), "reorder_level");
        fails_on(
            &p.clone().with("description", "x".repeat(2001)),
            "description",
        );
        fails_on(&p.clone().with("supplier_id", "s1"), "supplier_id");
        let mut bad_id = p.clone();
        bad_id.key = product_key(&org(), "p1");
        fails_on(&bad_id, "id");
        fails_on(
            &Item::new(sku_key(&org(), "x y")).with("product", new_id(2)),
            "sku",
        );
        fails_on(&movement_fx().with("reason", "lost"), "reason");
        fails_on(&movement_fx().with("at", "yesterday"), "at");
        let r = reservation_fx();
        fails_on(&r.clone().with("state", "pending"), "state");
        let mut lines = r.attrs["lines"].clone();
        lines[0]["quantity"] = 0.into();
        fails_on(&r.clone().with("lines", lines), "lines");
        let mut bad_order = r;
        bad_order.key.sk = "o-1".to_owned();
        fails_on(&bad_order, "order_id");
        assert_eq!(
            check_item(&Item::new(constellation_platform::table::ItemKey::new(
                "CART#acme",
                "x"
            )))
            .unwrap_err(),
            "`CART#acme` is not a catalog record"
        );
    }
}
