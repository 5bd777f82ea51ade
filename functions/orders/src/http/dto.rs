//! The documented shapes of the orders contract: request bodies, answers,
//! parameters, and the problem each store error answers with.

use constellation_core::money::format_minor;
use constellation_core::orders::{MAX_LINES, MAX_QUANTITY};
use constellation_web::ApiError;
use constellation_web::error::ProblemType;
use constellation_web::openapi::{integer, one_of, plain_text_pattern, text};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{Object, SchemaType, Type};
use utoipa::{IntoParams, ToSchema};

use crate::domain::{MAX_NOTE_CHARS, MAX_PRODUCT_ID_CHARS, MAX_WAIT_SECS, Status};
use crate::store::{ORDER_ID_PATTERN, Order, OrderError, OrderLine};

// ---------------------------------------------------------------------------
// Documented inputs

pub(super) fn product_id_schema() -> Object {
    text()
        .pattern(Some(format!("^[A-Za-z0-9_-]{{1,{MAX_PRODUCT_ID_CHARS}}}$")))
        .description(Some("A catalog product id"))
        .build()
}

pub(super) fn quantity_schema() -> Object {
    integer(1, u64::from(MAX_QUANTITY))
        .description(Some(format!("How many, 1 to {MAX_QUANTITY}")))
        .build()
}

pub(super) fn note_schema() -> Object {
    // `null` is no note, as answers write it.
    text()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .max_length(Some(MAX_NOTE_CHARS))
        .pattern(Some(plain_text_pattern(false)))
        .description(Some(format!(
            "A note for whoever handles the order: up to {MAX_NOTE_CHARS} characters, no \
             control characters (trimmed; blank is none)"
        )))
        .build()
}

pub(super) fn status_schema() -> Object {
    one_of(Status::ALL).build()
}

pub(super) fn order_id_schema() -> Object {
    text()
        .pattern(Some(ORDER_ID_PATTERN))
        .description(Some("An order id as issued"))
        .build()
}

pub(super) fn wait_schema() -> Object {
    integer(0, MAX_WAIT_SECS)
        .description(Some(format!(
            "Hold the answer until the order leaves `pending` or this many seconds pass \
             (0 to {MAX_WAIT_SECS}; default 0)"
        )))
        .build()
}

/// One line of `POST /v1/orders`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineForCreate {
    /// The product.
    #[schema(schema_with = product_id_schema)]
    pub product_id: String,
    /// How many.
    #[schema(schema_with = quantity_schema)]
    pub quantity: serde_json::Number,
}

impl LineForCreate {
    /// The quantity as a whole number, if it is one: `3` or `3.0` (the
    /// integer 3 to JSON Schema, so to clients generated from the document).
    pub fn whole_quantity(&self) -> Option<i64> {
        if let Some(q) = self.quantity.as_i64() {
            return Some(q);
        }
        // Whole numbers below 2^53 are exact as f64; larger ones are out of range anyway.
        match self.quantity.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 =>
            {
                #[allow(clippy::cast_possible_truncation)]
                Some(f as i64)
            }
            _ => None,
        }
    }
}

/// `POST /v1/orders`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderForCreate {
    /// 1 to 50 lines, each of a different product.
    #[schema(min_items = 1, max_items = 50)]
    pub lines: Vec<LineForCreate>,
    /// An optional note.
    #[schema(schema_with = note_schema)]
    #[serde(default)]
    pub note: Option<String>,
}

// The documented bounds are the enforced ones.
const _: () = assert!(MAX_LINES == 50);

// ---------------------------------------------------------------------------
// Answers

/// An exact amount of money.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct MoneyView {
    /// A decimal string with exactly the currency's decimals (`"59.98"`).
    pub amount: String,
    /// The ISO 4217 currency (`"EUR"`).
    pub currency: String,
}

/// One line of an order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LineView {
    /// The product.
    pub product_id: String,
    /// How many.
    pub quantity: u32,
    /// The product's SKU when catalog reserved it (null while pending).
    pub sku: Option<String>,
    /// Its unit price then (null while pending).
    pub unit_price: Option<MoneyView>,
    /// `quantity` × `unit_price`, exact (null while pending).
    pub line_total: Option<MoneyView>,
}

impl From<&OrderLine> for LineView {
    fn from(l: &OrderLine) -> Self {
        let currency = l.price.as_ref().map(|p| p.unit_price.currency());
        Self {
            product_id: l.product_id.clone(),
            quantity: l.quantity,
            sku: l.price.as_ref().map(|p| p.sku.clone()),
            unit_price: l.price.as_ref().map(|p| MoneyView {
                amount: p.unit_price.amount_string(),
                currency: p.unit_price.currency().code().to_owned(),
            }),
            line_total: l.total_minor().zip(currency).map(|(minor, c)| MoneyView {
                amount: format_minor(i128::from(minor), c),
                currency: c.code().to_owned(),
            }),
        }
    }
}

/// An order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderView {
    /// The id.
    pub id: String,
    /// `pending`, `confirmed`, `rejected`, `cancelled` or `shipped`.
    #[schema(schema_with = status_schema)]
    pub status: String,
    /// Its lines, in the order placed.
    pub lines: Vec<LineView>,
    /// The exact total (null until catalog prices the order).
    pub total: Option<MoneyView>,
    /// Why catalog rejected it (`insufficient-stock`, `unknown-product`,
    /// `archived-product`, `mixed-currencies`...; null unless rejected).
    pub reason: Option<String>,
    /// The product the rejection names (null when none).
    pub rejected_product_id: Option<String>,
    /// The placer's note.
    pub note: Option<String>,
    /// The account that placed it.
    pub placed_by: String,
    /// Placed (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

impl From<&Order> for OrderView {
    fn from(o: &Order) -> Self {
        let fmt = |t: time::OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        Self {
            id: o.id.as_str().to_owned(),
            status: o.status.as_str().to_owned(),
            lines: o.lines.iter().map(LineView::from).collect(),
            total: o.total().map(|(minor, c)| MoneyView {
                amount: format_minor(minor, c),
                currency: c.code().to_owned(),
            }),
            reason: o.rejection.as_ref().map(|r| r.reason.clone()),
            rejected_product_id: o.rejection.as_ref().and_then(|r| r.product_id.clone()),
            note: o.note.clone(),
            placed_by: o.placed_by.clone(),
            created_at: fmt(o.created_at),
            updated_at: fmt(o.updated_at),
        }
    }
}

/// One page of orders.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderList {
    /// The orders, newest first.
    pub items: Vec<OrderView>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

impl From<OrderError> for ApiError {
    fn from(e: OrderError) -> Self {
        match e {
            OrderError::NotFound => ApiError::not_found("no such order"),
            OrderError::Forbidden(why) => ApiError::client(ProblemType::Forbidden, why),
            e @ OrderError::InvalidTransition { current, .. } => ApiError::InvalidTransition {
                detail: e.to_string(),
                current_status: current.as_str().to_owned(),
            },
            e @ OrderError::Contention => ApiError::client(ProblemType::Conflict, e.to_string()),
            OrderError::Invalid(e) => ApiError::invalid(e.field, e.reason),
            OrderError::Store(e) => e.into(),
        }
    }
}

/// The `{id}` path parameter.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct OrderPath {
    /// The order id.
    #[param(schema_with = order_id_schema)]
    pub id: String,
}

/// The query of `GET /v1/orders/{id}`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Seconds to wait for the order to leave `pending`.
    #[param(schema_with = wait_schema)]
    pub wait: Option<u64>,
}

/// The filters of a listing.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this status.
    #[param(schema_with = status_schema)]
    pub status: Option<String>,
    /// Only this placer's (members: only their own account id; 403 otherwise).
    pub placed_by: Option<String>,
}
