//! Request and response bodies of the comms contract.

use std::collections::BTreeMap;

use constellation_core::auth::Role;
use constellation_core::money::{Currency, format_minor};
use constellation_web::ApiError;
use constellation_web::error::ProblemType;
use constellation_web::openapi::{one_of, plain_text_pattern, text};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    ArrayBuilder, Object, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};

use crate::domain::{
    self, Audience, MAX_ATTACHMENTS, MAX_BODY_CHARS, MAX_MESSAGE_CHARS, MAX_REMINDER_ACCOUNTS,
    MAX_TITLE_CHARS, Preferences, Repeat,
};
use crate::store::CommsError;
use crate::store::announce::{Announcement, AttachmentLink, Reminder};
use crate::store::deliver::Notification;
use crate::store::report::Report;

fn time_string(t: OffsetDateTime) -> String {
    crate::store::rfc3339(t)
}

pub(super) fn title_schema() -> Object {
    text()
        .min_length(Some(1))
        .max_length(Some(MAX_TITLE_CHARS))
        .pattern(Some(plain_text_pattern(true)))
        .build()
}

/// Text that may hold line breaks and tabs but no other control character,
/// and not only whitespace.
fn multiline(max: usize) -> Object {
    let control = r"\u0000-\u0008\u000b-\u001f\u007f-\u009f";
    text()
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(format!(
            r"^[^{control}]*[^\s\u0000-\u001f\u007f-\u009f][^{control}]*$"
        )))
        .build()
}

pub(super) fn body_schema() -> Object {
    multiline(MAX_BODY_CHARS)
}

pub(super) fn message_schema() -> Object {
    multiline(MAX_MESSAGE_CHARS)
}

fn date_time() -> Object {
    text()
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::DateTime,
        )))
        .build()
}

fn roles_schema(name: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::Object))
        .property(
            name,
            ArrayBuilder::new()
                .items(one_of(Role::ALL.map(Role::as_str)))
                .min_items(Some(1))
                .max_items(Some(4)),
        )
        .required(name)
        .additional_properties(Some(
            utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
        ))
        .build()
}

fn audience_schema() -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(one_of(["all"]))
        .item(roles_schema("roles"))
        .description(Some(
            "`\"all\"`, or `{\"roles\":[...]}`: a role addresses its holders and every stronger role",
        ))
        .into()
}

fn recipients_schema() -> RefOr<Schema> {
    let accounts = ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::Object))
        .property(
            "accounts",
            ArrayBuilder::new()
                .items(text().pattern(Some(constellation_core::auth::account_id_pattern())))
                .min_items(Some(1))
                .max_items(Some(MAX_REMINDER_ACCOUNTS)),
        )
        .required("accounts")
        .additional_properties(Some(
            utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
        ));
    OneOfBuilder::new()
        .item(accounts)
        .item(roles_schema("roles"))
        .into()
}

fn repeat_schema() -> Object {
    one_of(Repeat::ALL).default(Some("none".into())).build()
}

fn attachments_schema() -> RefOr<Schema> {
    ArrayBuilder::new()
        .items(text().pattern(Some(constellation_core::ids::TIME_ORDERED_ID_PATTERN)))
        .max_items(Some(MAX_ATTACHMENTS))
        .into()
}

/// Parses `audience`.
pub fn audience(v: &Value) -> Result<Audience, ApiError> {
    match v {
        Value::String(s) if s == "all" => Ok(Audience::All),
        Value::Object(m) if m.len() == 1 && m.contains_key("roles") => Ok(Audience::Roles {
            roles: role_list("audience.roles", &m["roles"])?,
        }),
        _ => Err(ApiError::invalid(
            "audience",
            "must be \"all\" or {\"roles\":[...]}",
        )),
    }
}

fn role_list(field: &'static str, v: &Value) -> Result<Vec<Role>, ApiError> {
    let raw: Vec<String> = v
        .as_array()
        .and_then(|a| {
            a.iter()
                .map(|r| r.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| ApiError::invalid(field, "must be a list of roles"))?;
    Ok(domain::roles(field, &raw)?)
}

/// Parses a reminder's `to`.
pub fn recipients(v: &Value) -> Result<Audience, ApiError> {
    match v {
        Value::Object(m) if m.len() == 1 && m.contains_key("roles") => Ok(Audience::Roles {
            roles: role_list("to.roles", &m["roles"])?,
        }),
        Value::Object(m) if m.len() == 1 && m.contains_key("accounts") => {
            let list = m["accounts"]
                .as_array()
                .filter(|a| !a.is_empty() && a.len() <= MAX_REMINDER_ACCOUNTS)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "to.accounts",
                        format!("must list 1 to {MAX_REMINDER_ACCOUNTS} account ids"),
                    )
                })?;
            let mut accounts = Vec::with_capacity(list.len());
            for a in list {
                let id = a
                    .as_str()
                    .and_then(|s| constellation_core::auth::AccountId::parse(s).ok())
                    .ok_or_else(|| ApiError::invalid("to.accounts", "must hold account ids"))?;
                let id = id.as_str().to_owned();
                if !accounts.contains(&id) {
                    accounts.push(id);
                }
            }
            Ok(Audience::Accounts { accounts })
        }
        _ => Err(ApiError::invalid(
            "to",
            "must be {\"accounts\":[...]} or {\"roles\":[...]}",
        )),
    }
}

/// `POST /v1/comms/announcements`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnnouncementForCreate {
    /// Title.
    #[schema(schema_with = title_schema)]
    pub title: String,
    /// Body (line breaks kept).
    #[schema(schema_with = body_schema)]
    pub body: String,
    /// Who it addresses.
    #[schema(schema_with = audience_schema)]
    pub audience: Value,
    /// Ready attachments (media of purpose `attachment`) of the organization.
    #[serde(default)]
    #[schema(schema_with = attachments_schema)]
    pub attachments: Vec<String>,
    /// When to publish (future, within a year); now when absent.
    #[serde(default, deserialize_with = "constellation_web::extract::not_null")]
    #[schema(schema_with = date_time)]
    pub publish_at: Option<String>,
}

/// An attachment of an announcement.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttachmentView {
    /// The media id.
    pub id: String,
    /// Its checked type (while it exists).
    pub content_type: Option<String>,
    /// The name it downloads under.
    pub filename: Option<String>,
    /// A 5-minute download URL (single announcements only, while it exists).
    pub download_url: Option<String>,
    /// When the URL stops working.
    pub expires_at: Option<String>,
}

impl From<&AttachmentLink> for AttachmentView {
    fn from(l: &AttachmentLink) -> Self {
        Self {
            id: l.id.clone(),
            content_type: l.content_type.clone(),
            filename: l.filename.clone(),
            download_url: l.download_url.clone(),
            expires_at: l.expires_at.map(time_string),
        }
    }
}

/// An announcement.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnnouncementView {
    /// Its id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Who it addresses.
    #[schema(schema_with = audience_schema)]
    pub audience: Value,
    /// Its attachments.
    pub attachments: Vec<AttachmentView>,
    /// `scheduled` or `published`.
    pub status: String,
    /// When it is to be published, if it was scheduled.
    pub publish_at: Option<String>,
    /// When it was published.
    pub published_at: Option<String>,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: String,
}

impl AnnouncementView {
    /// The view of `a`, with `links` for its attachments (ids only when empty).
    pub fn of(a: &Announcement, links: &[AttachmentLink]) -> Self {
        let attachments = if links.is_empty() {
            a.attachments
                .iter()
                .map(|id| AttachmentView {
                    id: id.clone(),
                    content_type: None,
                    filename: None,
                    download_url: None,
                    expires_at: None,
                })
                .collect()
        } else {
            links.iter().map(AttachmentView::from).collect()
        };
        Self {
            id: a.id.clone(),
            title: a.title.clone(),
            body: a.body.clone(),
            audience: a.audience.wire(),
            attachments,
            status: a.status.as_str().to_owned(),
            publish_at: a.publish_at.map(time_string),
            published_at: a.published_at.map(time_string),
            created_by: a.created_by.clone(),
            created_at: time_string(a.created_at),
        }
    }
}

/// A page of announcements.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnnouncementList {
    /// Newest first.
    pub items: Vec<AnnouncementView>,
    /// The next page's cursor.
    pub next_cursor: Option<String>,
}

/// A notification.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationView {
    /// Its id.
    pub id: String,
    /// The event type that caused it (`announcement`, `expense.submitted`, `reminder`, ...).
    pub kind: String,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// The API path of what it is about.
    pub link: Option<String>,
    /// When it was created.
    pub created_at: String,
    /// When it was read.
    pub read_at: Option<String>,
}

impl From<&Notification> for NotificationView {
    fn from(n: &Notification) -> Self {
        Self {
            id: n.id.clone(),
            kind: n.kind.clone(),
            title: n.title.clone(),
            body: n.body.clone(),
            link: n.link.clone(),
            created_at: time_string(n.created_at),
            read_at: n.read_at.map(time_string),
        }
    }
}

/// A page of the caller's inbox.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationList {
    /// Newest first.
    pub items: Vec<NotificationView>,
    /// How many of the caller's notifications are unread.
    pub unread_count: u64,
    /// The next page's cursor.
    pub next_cursor: Option<String>,
}

/// The answer of read-all.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadAllView {
    /// How many were marked read.
    pub marked: u64,
    /// How many are unread now.
    pub unread_count: u64,
}

/// Email preferences: which notifications also come by mail.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailPreferences {
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

/// `GET`/`PUT /v1/comms/preferences`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferencesBody {
    /// Email, per category (all off until set).
    pub email: EmailPreferences,
}

impl From<Preferences> for PreferencesBody {
    fn from(p: Preferences) -> Self {
        Self {
            email: EmailPreferences {
                announcements: p.announcements,
                expenses: p.expenses,
                orders: p.orders,
                inventory: p.inventory,
                reminders: p.reminders,
            },
        }
    }
}

impl From<PreferencesBody> for Preferences {
    fn from(b: PreferencesBody) -> Self {
        Self {
            announcements: b.email.announcements,
            expenses: b.email.expenses,
            orders: b.email.orders,
            inventory: b.email.inventory,
            reminders: b.email.reminders,
        }
    }
}

/// `POST /v1/comms/reminders`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReminderForCreate {
    /// What it says.
    #[schema(schema_with = message_schema)]
    pub message: String,
    /// When (future, within a year).
    #[schema(schema_with = date_time)]
    pub remind_at: String,
    /// `{"accounts":[...]}` or `{"roles":[...]}`.
    #[schema(schema_with = recipients_schema)]
    pub to: Value,
    /// `none` (default), `daily` or `weekly`.
    #[serde(default, deserialize_with = "constellation_web::extract::not_null")]
    #[schema(schema_with = repeat_schema)]
    pub repeat: Option<String>,
}

/// A reminder.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReminderView {
    /// Its id.
    pub id: String,
    /// What it says.
    pub message: String,
    /// When it is due next (or was last, once done).
    pub remind_at: String,
    /// Who gets it.
    #[schema(schema_with = recipients_schema)]
    pub to: Value,
    /// `none`, `daily` or `weekly`.
    pub repeat: String,
    /// `pending` or `done`.
    pub status: String,
    /// How many times it fired.
    pub sent: i64,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: String,
}

impl From<&Reminder> for ReminderView {
    fn from(r: &Reminder) -> Self {
        Self {
            id: r.id.clone(),
            message: r.message.clone(),
            remind_at: time_string(r.remind_at),
            to: r.to.wire(),
            repeat: r.repeat.as_str().to_owned(),
            status: r.status.to_owned(),
            sent: r.sent,
            created_by: r.created_by.clone(),
            created_at: time_string(r.created_at),
        }
    }
}

/// A page of reminders.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReminderList {
    /// Newest first.
    pub items: Vec<ReminderView>,
    /// The next page's cursor.
    pub next_cursor: Option<String>,
}

/// A daily report.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportView {
    /// The day it covers.
    pub date: String,
    /// Count per counter (`expenses_submitted`, `orders_shipped`, `products_low`, ...).
    pub counts: BTreeMap<String, i64>,
    /// Exact totals per counter and currency.
    pub totals: BTreeMap<String, BTreeMap<String, String>>,
    /// SKUs that went low that day.
    pub low_products: Vec<String>,
    /// A 5-minute URL of the CSV.
    pub download_url: Option<String>,
    /// When the URL stops working.
    pub expires_at: Option<String>,
    /// When the report was written.
    pub created_at: String,
}

impl From<&Report> for ReportView {
    fn from(r: &Report) -> Self {
        let mut counts: BTreeMap<String, i64> = crate::store::report::COUNTERS
            .iter()
            .map(|c| ((*c).to_owned(), 0))
            .collect();
        counts.extend(r.stats.counts.clone());
        Self {
            date: r.date.clone(),
            counts,
            totals: r
                .stats
                .totals
                .iter()
                .map(|(k, per)| {
                    let per = per
                        .iter()
                        .filter_map(|(cur, minor)| {
                            Currency::parse("currency", cur)
                                .ok()
                                .map(|c| (cur.clone(), format_minor(*minor, c)))
                        })
                        .collect();
                    (k.clone(), per)
                })
                .collect(),
            low_products: r.stats.low.clone(),
            download_url: r.download_url.clone(),
            expires_at: r.expires_at.map(time_string),
            created_at: time_string(r.created_at),
        }
    }
}

/// A page of reports.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportList {
    /// Newest first.
    pub items: Vec<ReportView>,
    /// The next page's cursor.
    pub next_cursor: Option<String>,
}

impl From<CommsError> for ApiError {
    fn from(e: CommsError) -> Self {
        match e {
            CommsError::NotFound(what) => ApiError::not_found(format!("no such {what}")),
            CommsError::Forbidden(why) => ApiError::client(ProblemType::Forbidden, why),
            e @ CommsError::Contention(_) => ApiError::client(ProblemType::Conflict, e.to_string()),
            CommsError::Invalid(v) => v.into(),
            CommsError::Store(e) => e.into(),
            CommsError::Blob(e) => e.into(),
        }
    }
}
