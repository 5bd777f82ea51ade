//! The order rules that need no storage: what a valid order is, the state
//! machine and who may move an order along it, and how catalog's
//! reservation prices an order (exactly, in minor units).

use crate::ValidationError;
use crate::auth::{Principal, Role};
use crate::money::{Currency, Money};
use crate::orders::{MAX_LINES, MAX_QUANTITY, PlacedLine, ReservedLine, WireMoney};
use crate::validation::trimmed_text;

/// The longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 500;
/// The longest product id, in characters.
pub const MAX_PRODUCT_ID_CHARS: usize = 64;
/// The longest `?wait=`, in seconds.
pub const MAX_WAIT_SECS: u64 = 20;
/// The longest SKU or rejection reason taken from catalog, in characters.
const MAX_CATALOG_TEXT_CHARS: usize = 200;

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Placed; catalog has not answered yet.
    Pending,
    /// Every line reserved and priced by catalog.
    Confirmed,
    /// Catalog could not reserve it (`reason` says why).
    Rejected,
    /// Cancelled by its placer or staff.
    Cancelled,
    /// Shipped by staff.
    Shipped,
}

impl Status {
    /// Every status, as the wire spells them.
    pub const ALL: [&'static str; 5] = ["pending", "confirmed", "rejected", "cancelled", "shipped"];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
            Self::Shipped => "shipped",
        }
    }

    /// Parses a status; `field` names the input in the error.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, ValidationError> {
        Ok(match raw {
            "pending" => Self::Pending,
            "confirmed" => Self::Confirmed,
            "rejected" => Self::Rejected,
            "cancelled" => Self::Cancelled,
            "shipped" => Self::Shipped,
            _ => {
                return Err(ValidationError::new(
                    field,
                    "must be one of pending, confirmed, rejected, cancelled, shipped",
                ));
            }
        })
    }
}

/// A move a person makes (catalog's answers move pending orders; see the store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// pending or confirmed → cancelled (the placer, or staff and above).
    Cancel,
    /// confirmed → shipped (staff and above).
    Ship,
}

impl Action {
    /// The verb, for messages.
    pub fn verb(self) -> &'static str {
        match self {
            Self::Cancel => "cancel",
            Self::Ship => "ship",
        }
    }

    /// Whether the move leaves from `status`.
    pub fn leaves_from(self, status: Status) -> bool {
        match self {
            Self::Cancel => matches!(status, Status::Pending | Status::Confirmed),
            Self::Ship => status == Status::Confirmed,
        }
    }

    /// Where it arrives.
    pub fn target(self) -> Status {
        match self {
            Self::Cancel => Status::Cancelled,
            Self::Ship => Status::Shipped,
        }
    }

    /// The event it publishes.
    pub fn event_type(self) -> &'static str {
        use crate::orders::events;
        match self {
            Self::Cancel => events::CANCELLED,
            Self::Ship => events::SHIPPED,
        }
    }

    /// Whether `actor` may make this move on an order `placed_by` placed;
    /// `Err` says why not (a 403).
    pub fn authorize(self, actor: &Principal, placed_by: &str) -> Result<(), &'static str> {
        match self {
            Self::Cancel if is_staff(actor) || actor.account.as_str() == placed_by => Ok(()),
            Self::Cancel => Err("only the placer or staff may cancel an order"),
            Self::Ship if is_staff(actor) => Ok(()),
            Self::Ship => Err("only staff may ship an order"),
        }
    }
}

/// Whether `p` sees and manages the whole organization's orders.
pub fn is_staff(p: &Principal) -> bool {
    p.role.allows(Role::Staff)
}

/// An input at fault, named by its path (`lines[2].quantity`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    /// The input's path as the client sent it.
    pub field: String,
    /// A sentence the client can act on.
    pub reason: String,
}

impl Invalid {
    /// An input at fault: its path and a sentence the client can act on.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<ValidationError> for Invalid {
    fn from(e: ValidationError) -> Self {
        Self::new(e.field, e.reason)
    }
}

/// A product id as sent: 1 to 64 ASCII letters, digits, `-` or `_`
/// (catalog decides whether the product exists).
pub fn product_id(field: &str, raw: &str) -> Result<String, Invalid> {
    let ok = (1..=MAX_PRODUCT_ID_CHARS).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(Invalid::new(
            field,
            format!(
                "must be a product id: 1 to {MAX_PRODUCT_ID_CHARS} ASCII letters, digits, '-' or '_'"
            ),
        ))
    }
}

/// The lines of a new order, each `(product_id, quantity)` as sent (a
/// quantity that is not a whole number is `None`): 1 to [`MAX_LINES`] lines
/// of distinct products, each quantity 1 to [`MAX_QUANTITY`].
pub fn lines(raw: &[(String, Option<i64>)]) -> Result<Vec<PlacedLine>, Invalid> {
    if raw.is_empty() || raw.len() > MAX_LINES {
        return Err(Invalid::new(
            "lines",
            format!("must hold 1 to {MAX_LINES} lines"),
        ));
    }
    let mut out: Vec<PlacedLine> = Vec::with_capacity(raw.len());
    for (i, (product, quantity)) in raw.iter().enumerate() {
        let product_id = product_id(&format!("lines[{i}].product_id"), product)?;
        let quantity = quantity
            .and_then(|q| u32::try_from(q).ok())
            .filter(|q| (1..=MAX_QUANTITY).contains(q))
            .ok_or_else(|| {
                Invalid::new(
                    format!("lines[{i}].quantity"),
                    format!("must be a whole number from 1 to {MAX_QUANTITY}"),
                )
            })?;
        if let Some(first) = out.iter().position(|l| l.product_id == product_id) {
            return Err(Invalid::new(
                "lines",
                format!(
                    "lists product {product_id} twice (lines[{first}] and lines[{i}]); \
                     put the whole quantity on one line"
                ),
            ));
        }
        out.push(PlacedLine {
            product_id,
            quantity,
        });
    }
    Ok(out)
}

/// The optional note: at most [`MAX_NOTE_CHARS`] characters; blank is none.
pub fn note(raw: Option<&str>) -> Result<Option<String>, ValidationError> {
    let Some(raw) = raw else { return Ok(None) };
    let note = trimmed_text("note", raw, 0, MAX_NOTE_CHARS)?;
    Ok((!note.is_empty()).then_some(note))
}

/// `?wait=`: a whole number of seconds from 0 to [`MAX_WAIT_SECS`].
pub fn wait(raw: &str) -> Result<u64, ValidationError> {
    raw.parse::<u64>()
        .ok()
        .filter(|s| raw.bytes().all(|b| b.is_ascii_digit()) && *s <= MAX_WAIT_SECS)
        .ok_or_else(|| {
            ValidationError::new(
                "wait",
                format!("must be a whole number of seconds from 0 to {MAX_WAIT_SECS}"),
            )
        })
}

/// Why catalog's answer cannot apply to the order it names: the event breaks
/// the saga's contract (retrying cannot help).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("catalog's answer does not fit the order: {0}")]
pub struct Mismatch(pub String);

/// One line as catalog priced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    /// The product's SKU when it was reserved.
    pub sku: String,
    /// Its unit price then.
    pub unit_price: Money,
}

impl Price {
    /// `quantity` × the unit price, in minor units (at most 10^13: no overflow).
    pub fn line_total_minor(&self, quantity: u32) -> i64 {
        self.unit_price.minor().saturating_mul(i64::from(quantity))
    }
}

fn catalog_text(what: &str, raw: &str) -> Result<String, Mismatch> {
    let ok = !raw.trim().is_empty()
        && raw.chars().count() <= MAX_CATALOG_TEXT_CHARS
        && !raw.chars().any(char::is_control);
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(Mismatch(format!("a malformed {what}: {raw:?}")))
    }
}

fn money(m: &WireMoney) -> Result<Money, Mismatch> {
    let currency = Currency::parse("currency", &m.currency).map_err(|e| Mismatch(e.to_string()))?;
    Money::parse("amount", &m.amount, currency).map_err(|e| Mismatch(e.to_string()))
}

/// Prices `placed` from catalog's reserved lines: every placed line must be
/// reserved once, with its quantity, all in one currency. Returns the
/// prices in the order's line order.
pub fn price(placed: &[PlacedLine], reserved: &[ReservedLine]) -> Result<Vec<Price>, Mismatch> {
    if placed.len() != reserved.len() {
        return Err(Mismatch(format!(
            "{} lines reserved for an order of {}",
            reserved.len(),
            placed.len()
        )));
    }
    let mut currency: Option<Currency> = None;
    let mut out = Vec::with_capacity(placed.len());
    for line in placed {
        let Some(r) = reserved.iter().find(|r| r.product_id == line.product_id) else {
            return Err(Mismatch(format!(
                "product {} was not reserved",
                line.product_id
            )));
        };
        if r.quantity != line.quantity {
            return Err(Mismatch(format!(
                "product {} reserved {} times, ordered {}",
                line.product_id, r.quantity, line.quantity
            )));
        }
        let unit_price = money(&r.unit_price)?;
        match currency {
            Some(c) if c != unit_price.currency() => {
                return Err(Mismatch(format!(
                    "prices in {c} and {}",
                    unit_price.currency()
                )));
            }
            _ => currency = Some(unit_price.currency()),
        }
        out.push(Price {
            sku: catalog_text("sku", &r.sku)?,
            unit_price,
        });
    }
    Ok(out)
}

/// Catalog's reason for a rejection, checked to be plain text.
pub fn rejection_reason(raw: &str) -> Result<String, Mismatch> {
    catalog_text("reason", raw)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn principal(role: Role, id: u8) -> Principal {
        crate::auth::test_principal(role, id)
    }

    fn raw(lines: &[(&str, i64)]) -> Vec<(String, Option<i64>)> {
        lines
            .iter()
            .map(|(p, q)| ((*p).to_owned(), Some(*q)))
            .collect()
    }

    fn reserved(product: &str, quantity: u32, amount: &str, currency: &str) -> ReservedLine {
        ReservedLine {
            product_id: product.to_owned(),
            sku: format!("SKU-{product}"),
            quantity,
            unit_price: WireMoney {
                amount: amount.to_owned(),
                currency: currency.to_owned(),
            },
        }
    }

    #[test]
    fn lines_name_the_field_at_fault() {
        assert_eq!(lines(&raw(&[("p1", 1), ("p2", 1000)])).unwrap().len(), 2);
        let field = |l: &[(&str, i64)]| lines(&raw(l)).unwrap_err().field;
        assert_eq!(field(&[]), "lines");
        assert_eq!(field(&[("p1", 0)]), "lines[0].quantity");
        assert_eq!(field(&[("p1", 1), ("p2", 1001)]), "lines[1].quantity");
        assert_eq!(field(&[("p1", -1)]), "lines[0].quantity");
        assert_eq!(field(&[("p1", 1), ("", 1)]), "lines[1].product_id");
        assert_eq!(field(&[("p 1", 1)]), "lines[0].product_id");
        assert_eq!(field(&[("p1", 1), ("p2", 1), ("p1", 2)]), "lines");
        assert_eq!(
            lines(&[("p1".to_owned(), None)]).unwrap_err().field,
            "lines[0].quantity"
        );
        let many: Vec<(String, Option<i64>)> = (0..=MAX_LINES)
            .map(|i| (format!("p{i}"), Some(1)))
            .collect();
        assert_eq!(lines(&many).unwrap_err().field, "lines");
        assert!(lines(&many[..MAX_LINES]).is_ok());
    }

    #[test]
    fn notes_and_waits_are_bounded() {
        assert_eq!(note(None).unwrap(), None);
        assert_eq!(note(Some("  ")).unwrap(), None);
        assert_eq!(
            note(Some(" ring twice ")).unwrap().as_deref(),
            Some("ring twice")
        );
        assert!(note(Some(&"é".repeat(500))).is_ok());
        assert_eq!(note(Some(&"é".repeat(501))).unwrap_err().field, "note");
        assert_eq!(note(Some("a\u{7}b")).unwrap_err().field, "note");
        assert_eq!(wait("0").unwrap(), 0);
        assert_eq!(wait("20").unwrap(), 20);
        for bad in [
            "21",
            "-1",
            "+1",
            "1.5",
            "",
            "ten",
            "99999999999999999999999",
        ] {
            assert_eq!(wait(bad).unwrap_err().field, "wait", "{bad}");
        }
    }

    #[test]
    fn who_may_move_an_order() {
        let member = principal(Role::Member, 1);
        let other = principal(Role::Member, 2);
        let staff = principal(Role::Staff, 3);
        let mine = member.account.as_str();
        assert!(Action::Cancel.authorize(&member, mine).is_ok());
        assert!(Action::Cancel.authorize(&other, mine).is_err());
        assert!(Action::Cancel.authorize(&staff, mine).is_ok());
        assert!(Action::Ship.authorize(&member, mine).is_err());
        assert!(Action::Ship.authorize(&staff, mine).is_ok());
        assert!(
            Action::Ship
                .authorize(&principal(Role::Owner, 4), mine)
                .is_ok()
        );
        assert!(Action::Cancel.leaves_from(Status::Pending));
        assert!(Action::Cancel.leaves_from(Status::Confirmed));
        assert!(!Action::Cancel.leaves_from(Status::Shipped));
        assert!(Action::Ship.leaves_from(Status::Confirmed));
        assert!(!Action::Ship.leaves_from(Status::Pending));
    }

    #[test]
    fn prices_are_exact_and_must_fit_the_order() {
        let placed = lines(&raw(&[("a", 3), ("b", 1)])).unwrap();
        // Catalog may answer in any line order; prices follow the order's.
        let prices = price(
            &placed,
            &[
                reserved("b", 1, "0.01", "EUR"),
                reserved("a", 3, "19.99", "EUR"),
            ],
        )
        .unwrap();
        let totals: Vec<i64> = prices
            .iter()
            .zip(&placed)
            .map(|(p, l)| p.line_total_minor(l.quantity))
            .collect();
        assert_eq!(totals, [5997, 1]);
        assert_eq!(prices[0].sku, "SKU-a");

        let mismatch = |r: &[ReservedLine]| price(&placed, r).is_err();
        assert!(mismatch(&[reserved("a", 3, "19.99", "EUR")]));
        assert!(mismatch(&[
            reserved("a", 2, "19.99", "EUR"),
            reserved("b", 1, "0.01", "EUR")
        ]));
        assert!(mismatch(&[
            reserved("a", 3, "19.99", "EUR"),
            reserved("c", 1, "0.01", "EUR")
        ]));
        assert!(mismatch(&[
            reserved("a", 3, "19.99", "EUR"),
            reserved("b", 1, "0.01", "USD")
        ]));
        assert!(mismatch(&[
            reserved("a", 3, "19.999", "EUR"),
            reserved("b", 1, "0.01", "EUR")
        ]));
        assert!(rejection_reason("insufficient-stock").is_ok());
        assert!(rejection_reason("").is_err());
    }
}
