//! The expense rules that need no storage: the fields' validation, the
//! state machine, and who may move an expense along it.

use crate::ValidationError;
use crate::auth::{Principal, Role};
use crate::money::{Currency, Money};
use time::{Date, Duration, OffsetDateTime};

/// The longest category, in characters.
pub const MAX_CATEGORY_CHARS: usize = 64;
/// The longest merchant, in characters.
pub const MAX_MERCHANT_CHARS: usize = 200;
/// The longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1000;
/// The longest rejection reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// How far back `incurred_on` may be, in days.
pub const MAX_AGE_DAYS: i64 = 365;
/// Expenses of at least this many major units need a ready receipt to be submitted.
pub const RECEIPT_THRESHOLD_MAJOR: i64 = 75;
/// The most receipts one expense holds.
pub const MAX_RECEIPTS: usize = 10;

/// Where an expense is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// Being written by its submitter.
    Draft,
    /// Waiting for an admin.
    Submitted,
    /// Approved by an admin.
    Approved,
    /// Sent back by an admin, with a reason; editable again.
    Rejected,
    /// Paid out.
    Reimbursed,
}

impl Status {
    /// Every status, as the wire spells them.
    pub const ALL: [&'static str; 5] = ["draft", "submitted", "approved", "rejected", "reimbursed"];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Submitted => "submitted",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Reimbursed => "reimbursed",
        }
    }

    /// Parses a status; `field` names the input in the error.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, ValidationError> {
        Ok(match raw {
            "draft" => Self::Draft,
            "submitted" => Self::Submitted,
            "approved" => Self::Approved,
            "rejected" => Self::Rejected,
            "reimbursed" => Self::Reimbursed,
            _ => {
                return Err(ValidationError::new(
                    field,
                    "must be one of draft, submitted, approved, rejected, reimbursed",
                ));
            }
        })
    }
}

/// A move along the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// draft → submitted (the submitter).
    Submit,
    /// submitted → approved (an admin, not the submitter).
    Approve,
    /// submitted → rejected (an admin, not the submitter).
    Reject,
    /// approved → reimbursed (an admin).
    Reimburse,
    /// rejected → draft, by editing (the submitter).
    Edit,
}

impl Transition {
    /// The status it leaves from and the one it arrives at.
    pub fn edge(self) -> (Status, Status) {
        match self {
            Self::Submit => (Status::Draft, Status::Submitted),
            Self::Approve => (Status::Submitted, Status::Approved),
            Self::Reject => (Status::Submitted, Status::Rejected),
            Self::Reimburse => (Status::Approved, Status::Reimbursed),
            Self::Edit => (Status::Rejected, Status::Draft),
        }
    }

    /// The event it publishes.
    pub fn event_type(self) -> Option<&'static str> {
        match self {
            Self::Submit => Some("expense.submitted"),
            Self::Approve => Some("expense.approved"),
            Self::Reject => Some("expense.rejected"),
            Self::Reimburse => Some("expense.reimbursed"),
            Self::Edit => None,
        }
    }

    /// Whether `actor` may make this move on an expense `submitter` filed;
    /// `Err` says why not (a 403).
    pub fn authorize(self, actor: &Principal, submitter: &str) -> Result<(), &'static str> {
        let own = actor.account.as_str() == submitter;
        let admin = actor.role.allows(Role::Admin);
        match self {
            Self::Submit | Self::Edit if own => Ok(()),
            Self::Submit | Self::Edit => Err("only the submitter may do this"),
            Self::Approve | Self::Reject if own => {
                Err("nobody approves or rejects their own expense")
            }
            Self::Approve | Self::Reject | Self::Reimburse if admin => Ok(()),
            Self::Approve | Self::Reject | Self::Reimburse => {
                Err("only an admin or owner may do this")
            }
        }
    }
}

/// The editable fields of an expense, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Details {
    /// The amount, exact.
    pub amount: Money,
    /// A free category (`travel`, `meals`...), 1 to 64 characters.
    pub category: String,
    /// Who was paid, 1 to 200 characters.
    pub merchant: String,
    /// What for, up to 1000 characters.
    pub description: String,
    /// The day it was spent.
    pub incurred_on: Date,
}

pub use crate::validation::trimmed_text as text;

/// The date format on the wire.
pub const DATE_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

/// Parses a `YYYY-MM-DD` date; `field` names the input.
pub fn date(field: &'static str, raw: &str) -> Result<Date, ValidationError> {
    if raw.len() != 10 {
        return Err(ValidationError::new(field, "must be a date as YYYY-MM-DD"));
    }
    Date::parse(raw, DATE_FORMAT)
        .map_err(|_| ValidationError::new(field, "must be a date as YYYY-MM-DD"))
}

/// Formats a date as `YYYY-MM-DD`.
pub fn format_date(d: Date) -> String {
    d.format(DATE_FORMAT).unwrap_or_default()
}

/// Checks `incurred_on` against today (UTC): not after tomorrow, not more
/// than [`MAX_AGE_DAYS`] days old.
pub fn incurred_on(raw: &str, now: OffsetDateTime) -> Result<Date, ValidationError> {
    let d = date("incurred_on", raw)?;
    let today = now.to_offset(time::UtcOffset::UTC).date();
    if d > today + Duration::days(1) {
        return Err(ValidationError::new(
            "incurred_on",
            "must not be after tomorrow (UTC)",
        ));
    }
    if d < today - Duration::days(MAX_AGE_DAYS) {
        return Err(ValidationError::new(
            "incurred_on",
            format!("must not be more than {MAX_AGE_DAYS} days ago"),
        ));
    }
    Ok(d)
}

/// Parses an amount in a currency, both as sent.
pub fn money(amount: &str, currency: &str) -> Result<Money, ValidationError> {
    let currency = Currency::parse("currency", currency)?;
    Money::parse("amount", amount, currency)
}

/// Whether an amount needs a ready receipt before it is submitted.
pub fn needs_receipt(amount: &Money) -> bool {
    let scale = 10_i64.pow(u32::from(amount.currency().exponent()));
    amount.minor() >= RECEIPT_THRESHOLD_MAJOR.saturating_mul(scale)
}

/// A rejection reason: 1 to 500 characters.
pub fn reason(raw: &str) -> Result<String, ValidationError> {
    text("reason", raw, 1, MAX_REASON_CHARS)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn principal(role: Role, id: u8) -> Principal {
        crate::auth::test_principal(role, id)
    }

    #[test]
    fn the_receipt_threshold_is_75_major_units_in_any_currency() {
        for (amount, currency, needs) in [
            ("74.99", "USD", false),
            ("75", "USD", true),
            ("75.00", "EUR", true),
            ("74", "JPY", false),
            ("75", "JPY", true),
            ("74.999", "KWD", false),
            ("75.000", "KWD", true),
        ] {
            assert_eq!(
                needs_receipt(&money(amount, currency).unwrap()),
                needs,
                "{amount} {currency}"
            );
        }
    }

    #[test]
    fn incurred_on_is_bounded_by_tomorrow_and_a_year_ago() {
        let now = time::macros::datetime!(2026-03-10 23:30 UTC);
        assert!(incurred_on("2026-03-11", now).is_ok());
        assert_eq!(
            incurred_on("2026-03-12", now).unwrap_err().field,
            "incurred_on"
        );
        assert!(incurred_on("2025-03-10", now).is_ok());
        assert!(incurred_on("2025-03-09", now).is_err());
        for bad in [
            "2026-3-1",
            "2026-02-30",
            "10.03.2026",
            "",
            "2026-03-10T00:00:00Z",
        ] {
            assert_eq!(
                incurred_on(bad, now).unwrap_err().field,
                "incurred_on",
                "{bad}"
            );
        }
    }

    #[test]
    fn who_may_move_an_expense() {
        let member = principal(Role::Member, 1);
        let admin = principal(Role::Admin, 2);
        let owner = principal(Role::Owner, 3);
        let me = member.account.as_str();
        assert!(Transition::Submit.authorize(&member, me).is_ok());
        assert!(Transition::Submit.authorize(&admin, me).is_err());
        assert!(Transition::Approve.authorize(&admin, me).is_ok());
        assert!(Transition::Approve.authorize(&owner, me).is_ok());
        assert!(Transition::Approve.authorize(&member, me).is_err());
        let admins_own = admin.account.as_str();
        assert!(Transition::Approve.authorize(&admin, admins_own).is_err());
        assert!(Transition::Reject.authorize(&admin, admins_own).is_err());
        assert!(Transition::Reimburse.authorize(&admin, me).is_ok());
        assert!(
            Transition::Reimburse
                .authorize(&principal(Role::Staff, 4), me)
                .is_err()
        );
    }

    #[test]
    fn free_text_is_trimmed_and_bounded() {
        assert_eq!(text("merchant", "  Café  ", 1, 200).unwrap(), "Café");
        assert!(text("merchant", "   ", 1, 200).is_err());
        assert!(text("merchant", "a\u{0}b", 1, 200).is_err());
        assert!(text("merchant", &"x".repeat(201), 1, 200).is_err());
        assert!(reason(&"é".repeat(500)).is_ok());
        assert!(reason(&"é".repeat(501)).is_err());
    }
}
