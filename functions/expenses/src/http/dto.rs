//! The documented shapes of the expenses contract: request bodies, answers,
//! parameters, and the problem each store error answers with.

use constellation_core::etag::etag_list_pattern;
use constellation_core::money::Currency;
use constellation_web::ApiError;
use constellation_web::error::ProblemType;
use constellation_web::openapi::{one_of, plain_text_pattern, text};
use constellation_web::uploads::{content_type_schema, filename_schema, size_schema};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::Object;
use utoipa::{IntoParams, ToSchema};

use crate::domain::{
    self, MAX_CATEGORY_CHARS, MAX_DESCRIPTION_CHARS, MAX_MERCHANT_CHARS, MAX_REASON_CHARS, Status,
};
use crate::store::{EXPENSE_ID_PATTERN, Expense, ExpenseError, HistoryEntry, Receipt};

// ---------------------------------------------------------------------------
// Documented inputs

pub(super) fn amount_schema() -> Object {
    constellation_web::openapi::money_amount_schema()
}

pub(super) fn currency_schema() -> Object {
    one_of(Currency::all().map(|c| c.code()))
        .description(Some("An active ISO 4217 currency code"))
        .examples(["EUR"])
        .build()
}

pub(super) fn bounded_text(min: usize, max: usize, what: &str) -> Object {
    text()
        .min_length(Some(min))
        .max_length(Some(max))
        .pattern(Some(plain_text_pattern(min > 0)))
        .description(Some(format!(
            "{what}: {min} to {max} characters, no control characters (trimmed)"
        )))
        .build()
}

pub(super) fn category_schema() -> Object {
    bounded_text(1, MAX_CATEGORY_CHARS, "The category")
}

pub(super) fn merchant_schema() -> Object {
    bounded_text(1, MAX_MERCHANT_CHARS, "Who was paid")
}

pub(super) fn description_schema() -> Object {
    bounded_text(0, MAX_DESCRIPTION_CHARS, "What for")
}

pub(super) fn reason_schema() -> Object {
    bounded_text(1, MAX_REASON_CHARS, "Why")
}

pub(super) fn date_schema() -> Object {
    text()
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Date,
        )))
        .description(Some("A date as YYYY-MM-DD"))
        .build()
}

pub(super) fn incurred_on_schema() -> Object {
    text()
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Date,
        )))
        .description(Some(
            "The day it was spent (YYYY-MM-DD): not after tomorrow (UTC), at most 365 days ago",
        ))
        .build()
}

pub(super) fn status_schema() -> Object {
    one_of(Status::ALL).build()
}

pub(super) fn expense_id_schema() -> Object {
    text()
        .pattern(Some(EXPENSE_ID_PATTERN))
        .description(Some("An expense id as issued"))
        .build()
}

pub(super) fn tags_only_schema() -> Object {
    text()
        .pattern(Some(constellation_core::etag::etag_tags_pattern()))
        .description(Some("The `ETag` you read"))
        .build()
}

pub(super) fn if_match_schema() -> Object {
    text()
        .pattern(Some(etag_list_pattern()))
        .description(Some("The `ETag` you read, or `*`"))
        .build()
}

/// `POST /v1/expenses`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpenseForCreate {
    /// The amount.
    #[schema(schema_with = amount_schema)]
    pub amount: String,
    /// Its currency.
    #[schema(schema_with = currency_schema)]
    pub currency: String,
    /// The category.
    #[schema(schema_with = category_schema)]
    pub category: String,
    /// Who was paid.
    #[schema(schema_with = merchant_schema)]
    pub merchant: String,
    /// What for (optional, empty by default).
    #[schema(schema_with = description_schema)]
    #[serde(default)]
    pub description: String,
    /// When.
    #[schema(schema_with = incurred_on_schema)]
    pub incurred_on: String,
}

/// `PATCH /v1/expenses/{id}` (a JSON merge patch): the fields to change; `{}` changes nothing.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpenseForPatch {
    /// New amount.
    #[schema(schema_with = amount_schema)]
    #[serde(default, deserialize_with = "constellation_web::extract::not_null")]
    pub amount: Option<String>,
    /// New currency.
    #[schema(schema_with = currency_schema)]
    #[serde(default, deserialize_with = "constellation_web::extract::not_null")]
    pub currency: Option<String>,
    /// New category.
    #[schema(schema_with = category_schema)]
    #[serde(default, deserialize_with = "constellation_web::extract::not_null")]
    pub category: Option<String>,
    /// New merchant.
    #[schema(schema_with = merchant_schema)]
    #[serde(default, deserialize_with = "constellation_web::extract::not_null")]
    pub merchant: Option<String>,
    /// New description.
    #[schema(schema_with = description_schema)]
    #[serde(default, deserialize_with = "constellation_web::extract::not_null")]
    pub description: Option<String>,
    /// New date.
    #[schema(schema_with = incurred_on_schema)]
    #[serde(default, deserialize_with = "constellation_web::extract::not_null")]
    pub incurred_on: Option<String>,
}

/// `POST /v1/expenses/{id}/reject`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Why, 1 to 500 characters.
    #[schema(schema_with = reason_schema)]
    pub reason: String,
}

/// `POST /v1/expenses/{id}/approve` (the body is optional).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalBody {
    /// A note, 1 to 500 characters.
    #[schema(schema_with = reason_schema)]
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /v1/expenses/{id}/receipts`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiptForCreate {
    /// The file's media type.
    #[schema(schema_with = content_type_schema)]
    pub content_type: String,
    /// Its exact size.
    #[schema(schema_with = size_schema)]
    #[serde(deserialize_with = "constellation_web::extract::whole_u64")]
    pub size: u64,
    /// Its name.
    #[schema(schema_with = filename_schema)]
    pub filename: String,
}

// ---------------------------------------------------------------------------
// Answers

/// A receipt of an expense.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReceiptView {
    /// The media id (`GET /v1/media/{id}`).
    pub media_id: String,
    /// `pending`, `ready` or `rejected`.
    pub status: String,
}

/// One step of an expense's history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HistoryView {
    /// The status it arrived at.
    pub status: String,
    /// When.
    pub at: String,
    /// Who.
    pub by: String,
    /// Why (rejections).
    pub reason: Option<String>,
}

/// An expense.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExpenseView {
    /// The id.
    pub id: String,
    /// Who filed it.
    pub submitter: String,
    /// The amount with exactly the currency's decimals.
    pub amount: String,
    /// The currency.
    pub currency: String,
    /// The category.
    pub category: String,
    /// Who was paid.
    pub merchant: String,
    /// What for.
    pub description: String,
    /// The day it was spent.
    pub incurred_on: String,
    /// `draft`, `submitted`, `approved`, `rejected` or `reimbursed`.
    #[schema(schema_with = status_schema)]
    pub status: String,
    /// Its receipts.
    pub receipts: Vec<ReceiptView>,
    /// Every status it has had.
    pub history: Vec<HistoryView>,
    /// Filed.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

impl From<&Expense> for ExpenseView {
    fn from(e: &Expense) -> Self {
        let fmt = |t: time::OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        Self {
            id: e.id.as_str().to_owned(),
            submitter: e.submitter.clone(),
            amount: e.details.amount.amount_string(),
            currency: e.details.amount.currency().code().to_owned(),
            category: e.details.category.clone(),
            merchant: e.details.merchant.clone(),
            description: e.details.description.clone(),
            incurred_on: domain::format_date(e.details.incurred_on),
            status: e.status.as_str().to_owned(),
            receipts: e
                .receipts
                .iter()
                .map(|Receipt { media_id, status }| ReceiptView {
                    media_id: media_id.clone(),
                    status: status.clone(),
                })
                .collect(),
            history: e
                .history
                .iter()
                .map(
                    |HistoryEntry {
                         status,
                         at,
                         by,
                         reason,
                     }| HistoryView {
                        status: status.clone(),
                        at: at.clone(),
                        by: by.clone(),
                        reason: reason.clone(),
                    },
                )
                .collect(),
            created_at: fmt(e.created_at),
            updated_at: fmt(e.updated_at),
        }
    }
}

/// One page of expenses.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExpenseList {
    /// The expenses, newest first.
    pub items: Vec<ExpenseView>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// One group of a summary.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GroupView {
    /// The category, submitter, month (`YYYY-MM`) or status.
    pub key: String,
    /// The currency of this group's expenses.
    pub currency: String,
    /// How many.
    pub count: u64,
    /// Their exact total, with the currency's decimals.
    pub total: String,
}

/// `GET /v1/expenses/summary`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SummaryView {
    /// One group per key and currency, by key then currency.
    pub groups: Vec<GroupView>,
}

impl From<ExpenseError> for ApiError {
    fn from(e: ExpenseError) -> Self {
        match e {
            ExpenseError::NotFound => ApiError::not_found("no such expense"),
            ExpenseError::Forbidden(why) => ApiError::client(ProblemType::Forbidden, why),
            e @ ExpenseError::InvalidTransition { current, .. } => ApiError::InvalidTransition {
                detail: e.to_string(),
                current_status: current.as_str().to_owned(),
            },
            e @ ExpenseError::ReceiptRequired => {
                ApiError::client(ProblemType::ReceiptRequired, e.to_string())
            }
            e @ ExpenseError::PreconditionRequired => ApiError::Client {
                problem: ProblemType::PreconditionRequired,
                detail: e.to_string(),
                field: Some("If-Match".to_owned()),
            },
            e @ ExpenseError::PreconditionFailed => ApiError::Client {
                problem: ProblemType::PreconditionFailed,
                detail: e.to_string(),
                field: Some("If-Match".to_owned()),
            },
            e @ ExpenseError::Contention => ApiError::client(ProblemType::Conflict, e.to_string()),
            ExpenseError::Invalid(v) => v.into(),
            ExpenseError::TooLarge(why) => ApiError::client(ProblemType::InvalidInput, why),
            ExpenseError::Store(e) => e.into(),
            ExpenseError::Blob(e) => e.into(),
        }
    }
}

/// The `{id}` path parameter.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ExpensePath {
    /// The expense id.
    #[param(schema_with = expense_id_schema)]
    pub id: String,
}

/// The optional `If-Match` header.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfMatchHeader {
    /// Change only if the expense still has this `ETag`.
    #[param(rename = "If-Match", schema_with = if_match_schema)]
    pub if_match: Option<String>,
}

/// The required `If-Match` header of `PATCH`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct RequiredIfMatch {
    /// The `ETag` you read (`*` is refused with 428: it would not protect the edit).
    #[param(rename = "If-Match", schema_with = tags_only_schema, required = true)]
    pub if_match: String,
}
