//! Catalog rules that need no storage: field validation, SKUs, stock
//! adjustments and the once-per-crossing low-stock rule.

use crate::ValidationError;

/// The longest supplier or product name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// The longest product description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
/// The longest phone number, in characters.
pub const MAX_PHONE_CHARS: usize = 40;
/// The longest lead time, in days.
pub const MAX_LEAD_TIME_DAYS: u32 = 365;
/// The highest reorder level.
pub const MAX_REORDER_LEVEL: i64 = 1_000_000;
/// The largest stock adjustment, either way.
pub const MAX_DELTA: i64 = 1_000_000;
/// The pattern of a SKU.
pub const SKU_PATTERN: &str = "^[A-Z0-9][A-Z0-9-]{0,31}$";

pub use crate::validation::trimmed_text as text;

/// A SKU: `[A-Z0-9][A-Z0-9-]{0,31}`.
pub fn sku(raw: &str) -> Result<String, ValidationError> {
    let ok = (1..=32).contains(&raw.len())
        && raw
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        && raw
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(ValidationError::new(
            "sku",
            "must match [A-Z0-9][A-Z0-9-]{0,31}",
        ))
    }
}

/// A SKU prefix for listings: the characters a SKU may hold, at most 32.
pub fn sku_prefix(raw: &str) -> Result<String, ValidationError> {
    if raw.len() <= 32
        && raw
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
    {
        Ok(raw.to_owned())
    } else {
        Err(ValidationError::new(
            "sku_prefix",
            "must be the start of a SKU: A-Z, 0-9 and -, at most 32",
        ))
    }
}

/// A product's reorder level: 0 to [`MAX_REORDER_LEVEL`].
pub fn reorder_level(raw: i64) -> Result<i64, ValidationError> {
    if (0..=MAX_REORDER_LEVEL).contains(&raw) {
        Ok(raw)
    } else {
        Err(ValidationError::new(
            "reorder_level",
            format!("must be 0 to {MAX_REORDER_LEVEL}"),
        ))
    }
}

/// A supplier's lead time: 0 to [`MAX_LEAD_TIME_DAYS`] days.
pub fn lead_time(raw: u64) -> Result<u32, ValidationError> {
    u32::try_from(raw)
        .ok()
        .filter(|d| *d <= MAX_LEAD_TIME_DAYS)
        .ok_or_else(|| {
            ValidationError::new(
                "lead_time_days",
                format!("must be 0 to {MAX_LEAD_TIME_DAYS}"),
            )
        })
}

/// A supplier's or product's name: trimmed, 1 to [`MAX_NAME_CHARS`].
pub fn name(field: &'static str, raw: &str) -> Result<String, ValidationError> {
    text(field, raw, 1, MAX_NAME_CHARS)
}

/// A phone number: digits, spaces and `+()-.`, with at least one digit.
pub fn phone(raw: &str) -> Result<String, ValidationError> {
    let value = raw.trim();
    let ok = !value.is_empty()
        && value.chars().count() <= MAX_PHONE_CHARS
        && value.chars().any(|c| c.is_ascii_digit())
        && value
            .chars()
            .all(|c| c.is_ascii_digit() || " +()-.".contains(c));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(ValidationError::new(
            "phone",
            "must be 1 to 40 characters of digits, spaces and + ( ) - .",
        ))
    }
}

/// Why stock changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Goods arrived.
    Received,
    /// A stock count corrected the level.
    Count,
    /// Goods were damaged.
    Damaged,
    /// Goods came back.
    Returned,
    /// An order reserved stock.
    Reserved,
    /// An order's reservation was released.
    Released,
    /// An order shipped.
    Shipped,
    /// The level a product was imported with (from a legacy database).
    Import,
}

impl Reason {
    /// The reasons a client may give an adjustment.
    pub const MANUAL: [&'static str; 4] = ["received", "count", "damaged", "returned"];

    /// Parses a manual reason.
    pub fn parse_manual(raw: &str) -> Result<Self, ValidationError> {
        Ok(match raw {
            "received" => Self::Received,
            "count" => Self::Count,
            "damaged" => Self::Damaged,
            "returned" => Self::Returned,
            _ => {
                return Err(ValidationError::new(
                    "reason",
                    "must be one of received, count, damaged, returned",
                ));
            }
        })
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Count => "count",
            Self::Damaged => "damaged",
            Self::Returned => "returned",
            Self::Reserved => "reserved",
            Self::Released => "released",
            Self::Shipped => "shipped",
            Self::Import => "import",
        }
    }
}

/// A manual adjustment's delta: non-zero, at most [`MAX_DELTA`] either way.
pub fn delta(raw: i64) -> Result<i64, ValidationError> {
    if raw == 0 || raw.abs() > MAX_DELTA {
        return Err(ValidationError::new(
            "delta",
            format!("must be a non-zero whole number from -{MAX_DELTA} to {MAX_DELTA}"),
        ));
    }
    Ok(raw)
}

/// Stock levels of one product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Levels {
    /// Units in the warehouse.
    pub on_hand: i64,
    /// Units held for orders.
    pub reserved: i64,
}

impl Levels {
    /// What can still be reserved; never negative.
    pub fn available(self) -> i64 {
        (self.on_hand - self.reserved).max(0)
    }

    /// Whether the levels hold: nothing negative, nothing reserved that is not on hand.
    pub fn valid(self) -> bool {
        self.on_hand >= 0 && self.reserved >= 0 && self.reserved <= self.on_hand
    }
}

/// Whether moving from `before` to `after` takes `available` below
/// `reorder_level` (a crossing: `inventory.low` is published once for it).
pub fn crosses_low(before: Levels, after: Levels, reorder_level: i64) -> bool {
    before.available() >= reorder_level && after.available() < reorder_level
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skus_follow_the_pattern() {
        for ok in ["A", "0", "ABC-123", &"A".repeat(32)] {
            assert!(sku(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-A", "a", "AB_C", "ÄB", &"A".repeat(33), "A B"] {
            assert_eq!(sku(bad).map_err(|e| e.field), Err("sku"), "{bad}");
        }
    }

    #[test]
    fn low_stock_is_a_crossing_not_a_level() {
        let at = |on_hand, reserved| Levels { on_hand, reserved };
        assert!(crosses_low(at(10, 0), at(10, 6), 5));
        assert!(!crosses_low(at(10, 6), at(10, 7), 5), "already below");
        assert!(
            !crosses_low(at(10, 0), at(10, 5), 5),
            "at the level is not below"
        );
        assert!(crosses_low(at(10, 5), at(10, 6), 5));
        assert_eq!(at(3, 5).available(), 0);
        assert!(!at(3, 5).valid());
    }

    #[test]
    fn adjustments_are_bounded_and_non_zero() {
        assert!(delta(0).is_err());
        assert!(delta(MAX_DELTA + 1).is_err());
        assert!(delta(-MAX_DELTA).is_ok());
        assert_eq!(
            Reason::parse_manual("shipped").map_err(|e| e.field),
            Err("reason")
        );
        assert!(phone("+49 (30) 123-45.6").is_ok());
        assert_eq!(reorder_level(MAX_REORDER_LEVEL), Ok(MAX_REORDER_LEVEL));
        assert_eq!(
            reorder_level(-1).unwrap_err().reason,
            "must be 0 to 1000000"
        );
        assert!(phone("call me").is_err());
    }
}
