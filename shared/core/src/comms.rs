//! The rules of comms that need no storage: who an audience addresses,
//! what a notification of each event says, which email preference it
//! falls under, when a reminder comes next, and the daily counters.

use crate::ValidationError;
use crate::auth::Role;
use crate::validation::trimmed_text;
use serde::{Deserialize, Serialize};
use time::{Date, Duration, OffsetDateTime};

/// The longest announcement or notification title.
pub const MAX_TITLE_CHARS: usize = 200;
/// The longest announcement body.
pub const MAX_BODY_CHARS: usize = 10_000;
/// The longest reminder message.
pub const MAX_MESSAGE_CHARS: usize = 1_000;
/// The most attachments of one announcement.
pub const MAX_ATTACHMENTS: usize = 10;
/// The most accounts one reminder names.
pub const MAX_REMINDER_ACCOUNTS: usize = 50;
/// How far ahead something may be scheduled.
pub const MAX_SCHEDULE_AHEAD: Duration = Duration::days(366);

/// Who something is addressed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Every enabled account of the organization.
    All,
    /// Accounts holding one of these roles or a higher one (`staff`
    /// addresses staff, admins and owners).
    Roles {
        /// The roles named.
        roles: Vec<Role>,
    },
    /// These accounts.
    Accounts {
        /// Their ids.
        accounts: Vec<String>,
    },
}

impl Audience {
    /// Whether an account holding `role` is addressed (for `Accounts`, the
    /// caller checks the id).
    pub fn addresses_role(&self, role: Role) -> bool {
        match self {
            Self::All => true,
            Self::Roles { roles } => roles.iter().any(|r| role.allows(*r)),
            Self::Accounts { .. } => false,
        }
    }

    /// Whether the account `id` holding `role` is addressed.
    pub fn addresses(&self, id: &str, role: Role) -> bool {
        match self {
            Self::Accounts { accounts } => accounts.iter().any(|a| a == id),
            other => other.addresses_role(role),
        }
    }

    /// The audience as the wire spells it.
    pub fn wire(&self) -> serde_json::Value {
        match self {
            Self::All => serde_json::Value::String("all".into()),
            Self::Roles { roles } => serde_json::json!({
                "roles": roles.iter().map(|r| r.as_str()).collect::<Vec<_>>()
            }),
            Self::Accounts { accounts } => serde_json::json!({ "accounts": accounts }),
        }
    }
}

/// Parses a list of roles for `field`: 1 to 4 distinct known roles.
pub fn roles(field: &'static str, raw: &[String]) -> Result<Vec<Role>, ValidationError> {
    if raw.is_empty() || raw.len() > Role::ALL.len() {
        return Err(ValidationError::new(
            field,
            "must list 1 to 4 of owner, admin, staff, member",
        ));
    }
    let mut out = Vec::with_capacity(raw.len());
    for r in raw {
        let role = Role::parse(field, r)?;
        if !out.contains(&role) {
            out.push(role);
        }
    }
    Ok(out)
}

/// A title: trimmed, 1 to [`MAX_TITLE_CHARS`] characters.
pub fn title(field: &'static str, raw: &str) -> Result<String, ValidationError> {
    trimmed_text(field, raw, 1, MAX_TITLE_CHARS)
}

/// A body: 1 to [`MAX_BODY_CHARS`] characters; line breaks and tabs are
/// kept, other control characters refused.
pub fn body(field: &'static str, raw: &str, max: usize) -> Result<String, ValidationError> {
    let value = raw.trim();
    let chars = value.chars().count();
    if chars == 0
        || chars > max
        || value
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\t'))
    {
        return Err(ValidationError::new(
            field,
            format!(
                "must be 1 to {max} characters; no control characters but line breaks and tabs"
            ),
        ));
    }
    Ok(value.to_owned())
}

/// A time on the wire.
pub fn timestamp(field: &'static str, raw: &str) -> Result<OffsetDateTime, ValidationError> {
    OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map_err(|_| ValidationError::new(field, "must be an RFC 3339 date-time"))
}

/// A time to schedule at: after `now`, within [`MAX_SCHEDULE_AHEAD`].
pub fn future(
    field: &'static str,
    raw: &str,
    now: OffsetDateTime,
) -> Result<OffsetDateTime, ValidationError> {
    let at = timestamp(field, raw)?;
    // Stored to the second, as it is shown.
    let at = at.replace_nanosecond(0).unwrap_or(at);
    if at <= now {
        return Err(ValidationError::new(field, "must be in the future"));
    }
    if at > now + MAX_SCHEDULE_AHEAD {
        return Err(ValidationError::new(field, "must be within a year"));
    }
    Ok(at)
}

/// A calendar date `YYYY-MM-DD`.
pub fn date(field: &'static str, raw: &str) -> Result<Date, ValidationError> {
    Date::parse(
        raw,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|_| ValidationError::new(field, "must be a date YYYY-MM-DD"))
}

/// A date as `YYYY-MM-DD`.
pub fn date_string(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// How a reminder repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Once.
    None,
    /// Every day at the same time.
    Daily,
    /// Every week at the same time.
    Weekly,
}

impl Repeat {
    /// Every value, as the wire spells them.
    pub const ALL: [&'static str; 3] = ["none", "daily", "weekly"];

    /// Parses `none`, `daily` or `weekly`.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, ValidationError> {
        match raw {
            "none" => Ok(Self::None),
            "daily" => Ok(Self::Daily),
            "weekly" => Ok(Self::Weekly),
            _ => Err(ValidationError::new(
                field,
                "must be one of none, daily, weekly",
            )),
        }
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Daily => "daily",
            Self::Weekly => "weekly",
        }
    }

    /// The first time after `due` that is also after `now` (a scheduler
    /// that was down does not fire a repeating reminder once per missed
    /// day), or `None` when it does not repeat.
    pub fn next(self, due: OffsetDateTime, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let step = match self {
            Self::None => return None,
            Self::Daily => Duration::days(1),
            Self::Weekly => Duration::weeks(1),
        };
        let mut next = due + step;
        if next <= now {
            let behind = (now - next).whole_seconds() / step.whole_seconds() + 1;
            next += step * i32::try_from(behind).unwrap_or(i32::MAX);
        }
        Some(next)
    }
}

/// The email preference categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// Announcements.
    Announcements,
    /// Expense events.
    Expenses,
    /// Order events.
    Orders,
    /// Low stock.
    Inventory,
    /// Reminders.
    Reminders,
    /// Daily reports (to admins; always emailed).
    Reports,
}

impl Category {
    /// The categories a member can choose, as the wire spells them.
    pub const CHOOSABLE: [&'static str; 5] = [
        "announcements",
        "expenses",
        "orders",
        "inventory",
        "reminders",
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Announcements => "announcements",
            Self::Expenses => "expenses",
            Self::Orders => "orders",
            Self::Inventory => "inventory",
            Self::Reminders => "reminders",
            Self::Reports => "reports",
        }
    }

    /// Parses a stored spelling.
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "announcements" => Self::Announcements,
            "expenses" => Self::Expenses,
            "orders" => Self::Orders,
            "inventory" => Self::Inventory,
            "reminders" => Self::Reminders,
            "reports" => Self::Reports,
            _ => return None,
        })
    }
}

/// Email preferences of one account; all off until the account opts in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preferences {
    /// Announcements.
    pub announcements: bool,
    /// Expense events.
    pub expenses: bool,
    /// Order events.
    pub orders: bool,
    /// Low stock.
    pub inventory: bool,
    /// Reminders.
    pub reminders: bool,
}

impl Preferences {
    /// Whether mail of `category` goes out.
    pub fn wants(&self, category: Category) -> bool {
        match category {
            Category::Announcements => self.announcements,
            Category::Expenses => self.expenses,
            Category::Orders => self.orders,
            Category::Inventory => self.inventory,
            Category::Reminders => self.reminders,
            Category::Reports => true,
        }
    }
}

/// What a notification says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The event type that caused it (`announcement`, `expense.submitted`, ...).
    pub kind: String,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// The API path of what it is about.
    pub link: Option<String>,
    /// Its email preference category.
    pub category: Category,
}

/// Field of an event's data as text.
fn field<'a>(data: &'a serde_json::Value, name: &str) -> &'a str {
    data.get(name)
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
}

/// The notification of another service's event, and who it goes to; `None`
/// for events comms does not announce.
pub fn event_message(event_type: &str, data: &serde_json::Value) -> Option<(Message, Audience)> {
    let money = |amount: &str, currency: &str| format!("{amount} {currency}");
    let (title, body, link, category, audience) = match event_type {
        "expense.submitted" => (
            "An expense waits for review".to_owned(),
            format!(
                "An expense of {} ({}) was submitted and waits for approval.",
                money(field(data, "amount"), field(data, "currency")),
                field(data, "category")
            ),
            format!("/v1/expenses/{}", field(data, "id")),
            Category::Expenses,
            Audience::Roles {
                roles: vec![Role::Admin],
            },
        ),
        "expense.approved" | "expense.rejected" | "expense.reimbursed" => {
            let verb = event_type.trim_start_matches("expense.");
            (
                format!("Your expense was {verb}"),
                format!(
                    "Your expense of {} ({}) was {verb}.",
                    money(field(data, "amount"), field(data, "currency")),
                    field(data, "category")
                ),
                format!("/v1/expenses/{}", field(data, "id")),
                Category::Expenses,
                Audience::Accounts {
                    accounts: vec![field(data, "submitter").to_owned()],
                },
            )
        }
        "order.confirmed" | "order.rejected" | "order.shipped" => {
            let verb = event_type.trim_start_matches("order.");
            let total = data
                .get("total")
                .filter(|t| t.is_object())
                .map(|t| format!(" ({})", money(field(t, "amount"), field(t, "currency"))))
                .unwrap_or_default();
            let reason = match field(data, "reason") {
                "" => String::new(),
                r => format!(": {r}"),
            };
            (
                format!("Your order was {verb}"),
                format!("Your order{total} was {verb}{reason}."),
                format!("/v1/orders/{}", field(data, "order_id")),
                Category::Orders,
                Audience::Accounts {
                    accounts: vec![field(data, "placed_by").to_owned()],
                },
            )
        }
        "inventory.low" => (
            format!("Low stock: {}", field(data, "sku")),
            format!(
                "Product {} is low on stock: {} available (reorder level {}).",
                field(data, "sku"),
                data.get("available")
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                data.get("reorder_level")
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ),
            format!("/v1/catalog/products/{}", field(data, "product_id")),
            Category::Inventory,
            Audience::Roles {
                roles: vec![Role::Staff],
            },
        ),
        _ => return None,
    };
    Some((
        Message {
            kind: event_type.to_owned(),
            title,
            body,
            link: Some(link),
            category,
        },
        audience,
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_role_addresses_it_and_every_stronger_role() {
        let staff = Audience::Roles {
            roles: vec![Role::Staff],
        };
        assert!(!staff.addresses_role(Role::Member));
        for r in [Role::Staff, Role::Admin, Role::Owner] {
            assert!(staff.addresses_role(r));
        }
        assert!(Audience::All.addresses_role(Role::Member));
        let one = Audience::Accounts {
            accounts: vec!["a".into()],
        };
        assert!(one.addresses("a", Role::Member) && !one.addresses("b", Role::Owner));
    }

    #[test]
    fn repeating_reminders_skip_missed_occurrences() {
        let due = datetime!(2026-12-01 09:00 UTC);
        assert_eq!(Repeat::None.next(due, due), None);
        assert_eq!(
            Repeat::Daily.next(due, due),
            Some(datetime!(2026-12-02 09:00 UTC))
        );
        assert_eq!(
            Repeat::Daily.next(due, datetime!(2026-12-05 10:00 UTC)),
            Some(datetime!(2026-12-06 09:00 UTC))
        );
        assert_eq!(
            Repeat::Weekly.next(due, datetime!(2026-12-01 09:30 UTC)),
            Some(datetime!(2026-12-08 09:00 UTC))
        );
    }

    #[test]
    fn bodies_keep_line_breaks_but_no_other_controls() {
        assert_eq!(body("body", " a\nb\tc ", 10).unwrap(), "a\nb\tc");
        assert!(body("body", "a\r\nb", 10).is_err());
        assert_eq!(body("body", "a\u{7}", 10).unwrap_err().field, "body");
        assert!(body("body", "   ", 10).is_err());
        assert!(body("body", "abcdefghijk", 10).is_err());
    }

    #[test]
    fn schedule_times_are_future_and_within_a_year() {
        let now = datetime!(2026-12-01 09:00 UTC);
        assert!(future("publish_at", "2026-12-01T09:00:00Z", now).is_err());
        assert!(future("publish_at", "2028-01-01T00:00:00Z", now).is_err());
        assert!(future("publish_at", "tomorrow", now).is_err());
        assert!(future("publish_at", "2026-12-01T10:00:00.5+01:00", now).is_err());
        assert_eq!(
            future("publish_at", "2026-12-02T10:00:00.5Z", now).unwrap(),
            datetime!(2026-12-02 10:00 UTC)
        );
    }

    #[test]
    fn events_name_their_recipients() {
        let (m, a) = event_message(
            "expense.approved",
            &serde_json::json!({"id": "e1", "submitter": "acc", "amount": "1.00", "currency": "EUR", "category": "travel"}),
        )
        .unwrap();
        assert_eq!(m.kind, "expense.approved");
        assert_eq!(m.link.as_deref(), Some("/v1/expenses/e1"));
        assert_eq!(
            a,
            Audience::Accounts {
                accounts: vec!["acc".into()]
            }
        );
        let (_, a) = event_message("inventory.low", &serde_json::json!({})).unwrap();
        assert!(a.addresses_role(Role::Staff) && !a.addresses_role(Role::Member));
        assert!(event_message("kv.changed", &serde_json::json!({})).is_none());
    }
}
