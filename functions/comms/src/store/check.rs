//! Whether an item is a comms record this build can serve: the check an
//! import of an export runs on each record before writing it. Each kind of
//! the layout ([`super`]) is read by the reader the service reads it with,
//! then held to the rules the API (or the event that made it) applies:
//! titles, bodies and messages within their lengths, audiences as the API
//! takes them, ids as issued, statuses known, times and dates that parse,
//! counters that do not go negative. Rules relative to now (a schedule in
//! the future) are not applied: exports hold old records.
//!
//! `RETRACT#<org>` (how far a retraction's cleanup got) is checked too;
//! `REPORTRUN` (the installation's report run) is never exported.

use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Email, Role};
use constellation_core::ids::is_time_ordered_id;
use constellation_core::money::Currency;
use constellation_platform::StoreError;
use constellation_platform::table::Item;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::announce::{announcement_of, reminder_of};
use super::deliver::{delivery_of, notification_of};
use super::report::{COUNTERS, MAX_LOW_LISTED, report_object, stats_of};
use super::{entry_of, stamp};
use crate::domain::{
    self, Audience, MAX_ATTACHMENTS, MAX_BODY_CHARS, MAX_MESSAGE_CHARS, MAX_REMINDER_ACCOUNTS,
    MAX_TITLE_CHARS, Preferences,
};

/// The longest account or media id comms takes from another service.
const MAX_FOREIGN_ID: usize = 64;

/// `Ok` when `item` is a valid comms record, or why it is not (naming the
/// field at fault).
pub fn check_item(item: &Item) -> Result<(), String> {
    let (pk, sk) = (item.key.pk.as_str(), item.key.sk.as_str());
    let segments: Vec<&str> = pk.split('#').collect();
    match segments.as_slice() {
        ["DIR", org] => {
            org_id(org)?;
            directory_entry(item)
        }
        ["PREF", org] => {
            org_id(org)?;
            foreign_id("account", sk)?;
            preferences(item)
        }
        ["MEDIA", org] => {
            org_id(org)?;
            foreign_id("id", sk)?;
            attachment(item)
        }
        ["ANN", org] => announcement(&org_id(org)?, item),
        ["REM", org] => reminder(&org_id(org)?, item),
        ["DELIV", org] => {
            org_id(org)?;
            delivery(item)
        }
        ["NOTE", org, account] => {
            let org = org_id(org)?;
            foreign_id("account", account)?;
            notification(&org, account, item)
        }
        ["UNREADN", org] => {
            org_id(org)?;
            foreign_id("account", sk)?;
            match item.int("n") {
                Some(n) if n >= 0 => Ok(()),
                _ => Err("n: an unread count must be a whole number, not negative".to_owned()),
            }
        }
        ["STATS", org] => {
            let org = org_id(org)?;
            date(sk)?;
            day_counters(item)?;
            if item.gsi1.as_ref().map(|k| (k.pk.clone(), k.sk.clone()))
                != Some((format!("ACTIVE#{sk}"), org.as_str().to_owned()))
            {
                return Err("date: the active-day index entry is missing or wrong".to_owned());
            }
            Ok(())
        }
        ["REPORT", org] => {
            let org = org_id(org)?;
            date(sk)?;
            day_counters(item)?;
            if item.str("object") != Some(report_object(&org, sk).as_str()) {
                return Err("object: not where the report's CSV is written".to_owned());
            }
            time("created_at", item.str("created_at"))?;
            Ok(())
        }
        ["SENT", org] => {
            org_id(org)?;
            mail_sent(item)
        }
        ["RETRACT", org] => {
            org_id(org)?;
            issued("announcement_id", sk)?;
            match item.attrs.get("cursor") {
                None | Some(Value::Null | Value::String(_)) => Ok(()),
                Some(_) => Err("cursor: must be a cursor or null".to_owned()),
            }
        }
        _ => Err(format!("`{pk}` is not a comms record")),
    }
}

fn org_id(raw: &str) -> Result<OrgId, String> {
    OrgId::parse(raw).map_err(|e| format!("org: {}", e.reason))
}

/// An account or media id as comms takes one from an event: 1 to 64
/// characters without control characters.
fn foreign_id(field: &str, raw: &str) -> Result<(), String> {
    if (1..=MAX_FOREIGN_ID).contains(&raw.len()) && !raw.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(format!("{field}: must be 1 to {MAX_FOREIGN_ID} characters"))
    }
}

fn issued(field: &str, raw: &str) -> Result<(), String> {
    if is_time_ordered_id(raw) {
        Ok(())
    } else {
        Err(format!("{field}: must be an id as issued"))
    }
}

fn account(field: &str, raw: &str) -> Result<(), String> {
    AccountId::parse(raw)
        .map(|_| ())
        .map_err(|_| format!("{field}: must be an account id"))
}

fn time(field: &str, raw: Option<&str>) -> Result<OffsetDateTime, String> {
    raw.and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
        .ok_or_else(|| format!("{field}: must be an RFC 3339 time"))
}

fn date(raw: &str) -> Result<(), String> {
    match domain::date("date", raw) {
        Ok(d) if domain::date_string(d) == raw => Ok(()),
        _ => Err("date: must be a date YYYY-MM-DD".to_owned()),
    }
}

/// A reader's error as `<field>: ...` where the reader names the field.
fn unreadable(e: StoreError) -> String {
    // The readers say what is wrong in the backend error's message.
    let message = match &e {
        StoreError::Backend(inner) => inner.to_string(),
        other => other.to_string(),
    };
    if let Some(field) = message
        .split_once("stored `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(field, _)| field)
    {
        return format!("{field}: {message}");
    }
    if let Some((_, rest)) = message.rsplit_once(": stored ")
        && let Some(field) = rest.strip_suffix(" is malformed")
    {
        return format!("{field}: {message}");
    }
    if let Some((_, field)) = message.rsplit_once(": ")
        && !field.contains(' ')
    {
        return format!("{field}: {message}");
    }
    format!("record: {message}")
}

/// `raw` as the API keeps it: `check` accepts it unchanged.
fn kept(
    field: &str,
    raw: &str,
    check: impl FnOnce(&str) -> Result<String, constellation_core::ValidationError>,
) -> Result<(), String> {
    match check(raw) {
        Ok(v) if v == raw => Ok(()),
        Ok(_) => Err(format!("{field}: not as the API keeps it (trimmed)")),
        Err(e) => Err(format!("{field}: {}", e.reason)),
    }
}

/// Text a notification shows: 1 to `max` characters, no control
/// characters but line breaks and tabs.
fn shown(field: &str, raw: &str, max: usize) -> Result<(), String> {
    let chars = raw.chars().count();
    if chars == 0
        || chars > max
        || raw
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\t'))
    {
        return Err(format!(
            "{field}: must be 1 to {max} characters without control characters"
        ));
    }
    Ok(())
}

fn audience(field: &str, a: &Audience, accounts_allowed: bool) -> Result<(), String> {
    match a {
        Audience::All => Ok(()),
        Audience::Roles { roles } if !roles.is_empty() && roles.len() <= Role::ALL.len() => Ok(()),
        Audience::Roles { .. } => Err(format!("{field}: must name 1 to 4 roles")),
        Audience::Accounts { accounts } if accounts_allowed => {
            if accounts.is_empty() {
                return Err(format!("{field}: must name at least one account"));
            }
            accounts.iter().try_for_each(|a| foreign_id(field, a))
        }
        Audience::Accounts { .. } => Err(format!("{field}: must be \"all\" or roles")),
    }
}

fn directory_entry(item: &Item) -> Result<(), String> {
    foreign_id("account_id", &item.key.sk)?;
    let Some(entry) = entry_of(item) else {
        let field = ["email", "role", "disabled"]
            .into_iter()
            .find(|f| match *f {
                "role" => item
                    .str("role")
                    .is_none_or(|r| Role::parse("role", r).is_err()),
                "disabled" => item.attrs.get(*f).and_then(Value::as_bool).is_none(),
                _ => item.str(f).is_none(),
            })
            .unwrap_or("record");
        return Err(format!("{field}: not as a directory entry stores it"));
    };
    Email::parse(&entry.email).map_err(|e| e.to_string())?;
    match item.int("auth_version") {
        Some(v) if v >= 0 => Ok(()),
        _ => Err("auth_version: must be auth's version of the account".to_owned()),
    }
}

fn preferences(item: &Item) -> Result<(), String> {
    let email = item.attrs.get("email").cloned().unwrap_or_default();
    serde_json::from_value::<Preferences>(email).map_err(|e| format!("email: {e}"))?;
    time("updated_at", item.str("updated_at"))?;
    Ok(())
}

fn attachment(item: &Item) -> Result<(), String> {
    match item.str("status") {
        Some("ready") => {
            for field in ["stored_key", "download_name", "content_type"] {
                match item.str(field) {
                    Some(v) if !v.is_empty() && !v.chars().any(char::is_control) => {}
                    _ => return Err(format!("{field}: a ready attachment has one")),
                }
            }
            Ok(())
        }
        Some("gone") => Ok(()),
        _ => Err("status: must be ready or gone".to_owned()),
    }
}

fn announcement(org: &OrgId, item: &Item) -> Result<(), String> {
    issued("id", &item.key.sk)?;
    let status = item.str("status").unwrap_or_default();
    let a = if status == "retracted" {
        // Retracted: the record as it was, plus who retracted it and when.
        account("retracted_by", item.str("retracted_by").unwrap_or_default())?;
        time("retracted_at", item.str("retracted_at"))?;
        let was = if item.str("published_at").is_some() {
            "published"
        } else {
            "scheduled"
        };
        announcement_of(&item.clone().with("status", was)).map_err(unreadable)?
    } else {
        announcement_of(item).map_err(unreadable)?
    };
    kept("title", &a.title, |v| domain::title("title", v))?;
    kept("body", &a.body, |v| domain::body("body", v, MAX_BODY_CHARS))?;
    audience("audience", &a.audience, false)?;
    if a.attachments.len() > MAX_ATTACHMENTS {
        return Err(format!("attachments: at most {MAX_ATTACHMENTS}"));
    }
    a.attachments
        .iter()
        .try_for_each(|m| foreign_id("attachments", m))?;
    account("created_by", &a.created_by)?;
    for field in ["publish_at", "published_at"] {
        if !matches!(item.attrs.get(field), None | Some(Value::Null)) {
            time(field, item.str(field))?;
        }
    }
    match status {
        "published" if a.published_at.is_none() => {
            Err("published_at: a published announcement has one".to_owned())
        }
        "scheduled" => {
            let Some(at) = a.publish_at else {
                return Err("publish_at: a scheduled announcement has one".to_owned());
            };
            let due = format!("{}#{org}#ANN#{}", stamp(at), a.id);
            if item.gsi1.as_ref().map(|k| (k.pk.as_str(), k.sk.as_str())) != Some(("DUE", &due)) {
                return Err("publish_at: the due index entry is missing or wrong".to_owned());
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn reminder(org: &OrgId, item: &Item) -> Result<(), String> {
    issued("id", &item.key.sk)?;
    let r = reminder_of(item).map_err(unreadable)?;
    kept("message", &r.message, |v| {
        domain::body("message", v, MAX_MESSAGE_CHARS)
    })?;
    audience("to", &r.to, true)?;
    if let Audience::Accounts { accounts } = &r.to
        && accounts.len() > MAX_REMINDER_ACCOUNTS
    {
        return Err(format!("to: at most {MAX_REMINDER_ACCOUNTS} accounts"));
    }
    if item.str("repeat").is_none() {
        return Err("repeat: must be one of none, daily, weekly".to_owned());
    }
    if r.sent < 0 || item.int("sent").is_none() {
        return Err("sent: must be a whole number, not negative".to_owned());
    }
    account("created_by", &r.created_by)?;
    match item.str("status") {
        Some("pending") => {
            let due = format!("{}#{org}#REM#{}", stamp(r.remind_at), r.id);
            if item.gsi1.as_ref().map(|k| (k.pk.as_str(), k.sk.as_str())) != Some(("DUE", &due)) {
                return Err("remind_at: the due index entry is missing or wrong".to_owned());
            }
            Ok(())
        }
        Some("done") => Ok(()),
        _ => Err("status: must be pending or done".to_owned()),
    }
}

fn delivery(item: &Item) -> Result<(), String> {
    issued("id", &item.key.sk)?;
    let d = delivery_of(item).map_err(unreadable)?;
    message(
        &d.message.kind,
        &d.message.title,
        &d.message.body,
        d.message.link.as_deref(),
    )?;
    audience("audience", &d.audience, true)?;
    if let Some(a) = &d.announcement {
        issued("announcement", a)?;
    }
    Ok(())
}

fn message(kind: &str, title: &str, body: &str, link: Option<&str>) -> Result<(), String> {
    if kind.is_empty() || kind.len() > MAX_FOREIGN_ID || !kind.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err("kind: must be an event type".to_owned());
    }
    shown("title", title, MAX_TITLE_CHARS)?;
    shown("body", body, MAX_BODY_CHARS)?;
    if let Some(link) = link
        && (!link.starts_with("/v1/") || link.chars().any(|c| c.is_control() || c == ' '))
    {
        return Err("link: must be an API path".to_owned());
    }
    Ok(())
}

fn notification(org: &OrgId, account: &str, item: &Item) -> Result<(), String> {
    issued("id", &item.key.sk)?;
    let n = notification_of(item).map_err(unreadable)?;
    message(&n.kind, &n.title, &n.body, n.link.as_deref())?;
    if item.attrs.contains_key("read_at") {
        time("read_at", item.str("read_at"))?;
    }
    let unread = format!("UNREAD#{org}#{account}");
    match (&item.gsi1, n.read_at) {
        (Some(k), None) if k.pk == unread && k.sk == n.id => {}
        (None, Some(_)) => {}
        _ => return Err("read_at: the unread index entry does not match".to_owned()),
    }
    if item.gsi2.as_ref().map(|k| (k.pk.clone(), k.sk.as_str()))
        != Some((format!("SRC#{org}#{}", n.id), account))
    {
        return Err("id: the by-delivery index entry is missing or wrong".to_owned());
    }
    Ok(())
}

/// The counters of a day (`STATS`) or its report (`REPORT`).
fn day_counters(item: &Item) -> Result<(), String> {
    let counts = match item.attrs.get("counts") {
        Some(Value::Object(c)) => c,
        _ => return Err("counts: must be an object of counters".to_owned()),
    };
    for (name, n) in counts {
        if !COUNTERS.contains(&name.as_str()) || n.as_i64().is_none_or(|n| n < 0) {
            return Err(format!("counts: `{name}` is not a counter with a count"));
        }
    }
    let totals = match item.attrs.get("totals") {
        Some(Value::Object(t)) => t,
        _ => return Err("totals: must be an object of counters".to_owned()),
    };
    for (name, per) in totals {
        let Value::Object(per) = per else {
            return Err(format!("totals: `{name}` is not per currency"));
        };
        if !COUNTERS.contains(&name.as_str()) {
            return Err(format!("totals: `{name}` is not a counter"));
        }
        for (currency, minor) in per {
            Currency::parse("totals", currency).map_err(|e| e.to_string())?;
            if minor
                .as_str()
                .and_then(|m| m.parse::<i128>().ok())
                .is_none_or(|m| m < 0)
            {
                return Err(format!("totals: `{name}` in {currency} is not an amount"));
            }
        }
    }
    match item.attrs.get("low") {
        Some(Value::Array(low))
            if low.len() <= MAX_LOW_LISTED && low.iter().all(Value::is_string) => {}
        _ => return Err(format!("low: at most {MAX_LOW_LISTED} SKUs")),
    }
    // As the report reads them: every SKU listed is one.
    if stats_of(item)
        .low
        .iter()
        .any(|sku| sku.is_empty() || sku.len() > 32)
    {
        return Err("low: every entry must be a SKU".to_owned());
    }
    Ok(())
}

fn mail_sent(item: &Item) -> Result<(), String> {
    let (delivery, account) = item
        .key
        .sk
        .split_once('#')
        .ok_or_else(|| "id: must be <delivery>#<account>".to_owned())?;
    issued("delivery_id", delivery)?;
    foreign_id("account_id", account)?;
    match item.str("status") {
        Some("sending") => time("claimed_at", item.str("claimed_at")).map(|_| ()),
        Some("sent" | "refused") => {
            if item.str("message_id").is_none() {
                return Err("message_id: a sent mail records one".to_owned());
            }
            time("at", item.str("at")).map(|_| ())
        }
        _ => Err("status: must be sending, sent or refused".to_owned()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use constellation_platform::table::{IndexKey, ItemKey};
    use serde_json::json;
    use time::macros::datetime;

    use super::super::announce::{
        Announcement, AnnouncementStatus, Reminder, announcement_item, reminder_item,
    };
    use super::super::{dir_key, rfc3339};
    use super::*;
    use crate::domain::Repeat;

    const AT: OffsetDateTime = datetime!(2024-03-01 10:00 UTC);

    fn org() -> OrgId {
        OrgId::parse("acme").unwrap()
    }

    fn acct() -> String {
        "ab".repeat(16)
    }

    fn id(seed: u128) -> String {
        super::super::announce::import_id(AT, seed)
    }

    fn announcement_fx(status: AnnouncementStatus) -> Item {
        let scheduled = status == AnnouncementStatus::Scheduled;
        announcement_item(
            &org(),
            &Announcement {
                id: id(1),
                title: "Plan".to_owned(),
                body: "See the plan.\nThanks".to_owned(),
                audience: Audience::Roles {
                    roles: vec![Role::Staff],
                },
                attachments: vec!["cd".repeat(16)],
                status,
                publish_at: scheduled.then_some(AT),
                published_at: (!scheduled).then_some(AT),
                created_by: acct(),
                created_at: AT,
            },
        )
    }

    fn reminder_fx(status: &'static str) -> Item {
        reminder_item(
            &org(),
            &Reminder {
                id: id(2),
                message: "Timesheets".to_owned(),
                remind_at: AT,
                to: Audience::Accounts {
                    accounts: vec![acct()],
                },
                repeat: Repeat::Daily,
                status,
                sent: 1,
                created_by: acct(),
                created_at: AT,
            },
        )
    }

    fn delivery_fx() -> Item {
        Item::new(ItemKey::new("DELIV#acme", id(3)))
            .with("kind", "expense.submitted")
            .with("title", "An expense waits for review")
            .with("body", "An expense of 1.00 EUR (travel) was submitted.")
            .with("category", "expenses")
            .with("audience", json!({"roles": ["admin"]}))
            .with("inbox", true)
            .with("created_at", rfc3339(AT))
            .with("done", false)
            .with("link", "/v1/expenses/e1")
    }

    fn note_fx(read: bool) -> Item {
        let mut item = Item::new(ItemKey::new(format!("NOTE#acme#{}", acct()), id(3)))
            .with("kind", "announcement")
            .with("title", "Plan")
            .with("body", "See the plan.")
            .with("created_at", rfc3339(AT));
        if read {
            item = item.with("read_at", rfc3339(AT));
        } else {
            item.gsi1 = Some(IndexKey::new(format!("UNREAD#acme#{}", acct()), id(3)));
        }
        item.gsi2 = Some(IndexKey::new(format!("SRC#acme#{}", id(3)), acct()));
        item
    }

    fn stats_fx() -> Item {
        let mut item = Item::new(ItemKey::new("STATS#acme", "2024-03-01"))
            .with(
                "counts",
                json!({"expenses_submitted": 2, "products_low": 1}),
            )
            .with("totals", json!({"expenses_submitted": {"EUR": "1250"}}))
            .with("low", json!(["SKU-1"]));
        item.gsi1 = Some(IndexKey::new("ACTIVE#2024-03-01", "acme"));
        item
    }

    fn report_fx() -> Item {
        let mut item = stats_fx();
        item.key = ItemKey::new("REPORT#acme", "2024-03-01");
        item.gsi1 = None;
        item.with("object", "reports/acme/2024-03-01.csv")
            .with("created_at", rfc3339(AT))
    }

    fn every_kind() -> Vec<Item> {
        vec![
            Item::new(dir_key(&org(), &acct()))
                .with("email", "a@acme.test")
                .with("role", "staff")
                .with("disabled", false)
                .with("auth_version", 3),
            Item::new(ItemKey::new("PREF#acme", acct()))
                .with(
                    "email",
                    serde_json::to_value(Preferences::default()).unwrap(),
                )
                .with("updated_at", rfc3339(AT)),
            Item::new(ItemKey::new("MEDIA#acme", "cd".repeat(16)))
                .with("status", "ready")
                .with("stored_key", "media/acme/x/0")
                .with("download_name", "plan.pdf")
                .with("content_type", "application/pdf"),
            Item::new(ItemKey::new("MEDIA#acme", "ef".repeat(16))).with("status", "gone"),
            announcement_fx(AnnouncementStatus::Published),
            announcement_fx(AnnouncementStatus::Scheduled),
            announcement_fx(AnnouncementStatus::Published)
                .with("status", "retracted")
                .with("retracted_by", acct())
                .with("retracted_at", rfc3339(AT)),
            reminder_fx("pending"),
            reminder_fx("done"),
            delivery_fx(),
            note_fx(false),
            note_fx(true),
            Item::new(ItemKey::new("UNREADN#acme", acct())).with("n", 2),
            stats_fx(),
            report_fx(),
            Item::new(ItemKey::new("SENT#acme", format!("{}#{}", id(3), acct())))
                .with("status", "sent")
                .with("message_id", "m-1")
                .with("at", rfc3339(AT)),
            Item::new(ItemKey::new("SENT#acme", format!("{}#{}", id(3), acct())))
                .with("status", "sending")
                .with("claimed_at", rfc3339(AT)),
            Item::new(ItemKey::new("RETRACT#acme", id(1))).with("cursor", Value::Null),
        ]
    }

    fn fails_on(item: &Item, field: &str) {
        let err = check_item(item).expect_err("a corrupted record passed");
        assert!(err.starts_with(&format!("{field}:")), "{field}: {err}");
    }

    #[test]
    fn every_kind_as_stored_passes() {
        for item in every_kind() {
            check_item(&item).unwrap_or_else(|e| panic!("{} / {}: {e}", item.key.pk, item.key.sk));
        }
    }

    #[test]
    fn corrupted_records_fail_naming_the_field() {
        let ann = announcement_fx(AnnouncementStatus::Published);
        fails_on(&ann.clone().with("title", "x".repeat(201)), "title");
        fails_on(&ann.clone().with("body", " padded "), "body");
        fails_on(&ann.clone().with("status", "draft"), "status");
        fails_on(
            &ann.clone().with("audience", json!({"accounts": [acct()]})),
            "audience",
        );
        fails_on(&ann.clone().with("created_by", "bob"), "created_by");
        let mut unindexed = announcement_fx(AnnouncementStatus::Scheduled);
        unindexed.gsi1 = None;
        fails_on(&unindexed, "publish_at");
        let rem = reminder_fx("pending");
        fails_on(&rem.clone().with("message", ""), "message");
        fails_on(&rem.clone().with("repeat", "hourly"), "repeat");
        fails_on(&rem.clone().with("remind_at", "soon"), "remind_at");
        fails_on(&rem.clone().with("status", "sleeping"), "status");
        fails_on(&delivery_fx().with("title", "a\u{7}b"), "title");
        fails_on(&delivery_fx().with("category", "gossip"), "category");
        fails_on(&delivery_fx().with("link", "https://evil.test"), "link");
        fails_on(&note_fx(true).with("read_at", "later"), "read_at");
        fails_on(&note_fx(false).with("read_at", rfc3339(AT)), "read_at");
        fails_on(
            &Item::new(ItemKey::new("UNREADN#acme", acct())).with("n", -1),
            "n",
        );
        fails_on(&stats_fx().with("counts", json!({"bogus": 1})), "counts");
        fails_on(
            &stats_fx().with("totals", json!({"expenses_submitted": {"EURO": "1"}})),
            "totals",
        );
        let mut bad_day = report_fx();
        bad_day.key.sk = "2024-02-30".to_owned();
        fails_on(&bad_day, "date");
        fails_on(&report_fx().with("object", "elsewhere.csv"), "object");
        fails_on(
            &Item::new(dir_key(&org(), &acct()))
                .with("email", "nobody")
                .with("role", "staff")
                .with("disabled", false)
                .with("auth_version", 1),
            "email",
        );
        fails_on(
            &Item::new(ItemKey::new("PREF#acme", acct()))
                .with("email", json!({"announcements": 1})),
            "email",
        );
        fails_on(
            &Item::new(ItemKey::new("MEDIA#acme", "cd".repeat(16))).with("status", "ready"),
            "stored_key",
        );
        fails_on(
            &Item::new(ItemKey::new("SENT#acme", "no-account")).with("status", "sent"),
            "id",
        );
        fails_on(
            &Item::new(ItemKey::new("RETRACT#acme", id(1))).with("cursor", 3),
            "cursor",
        );
        assert_eq!(
            check_item(&Item::new(ItemKey::new("CHAT#acme", "x"))).unwrap_err(),
            "`CHAT#acme` is not a comms record"
        );
    }
}
