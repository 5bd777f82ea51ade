//! The documented shapes of the catalog contract, and the problem each
//! store error answers with.

use constellation_core::money::{Currency, Money};
use constellation_web::ApiError;
use constellation_web::error::ProblemType;
use constellation_web::openapi::{integer, one_of, plain_text_pattern, text};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::Object;
use utoipa::{IntoParams, ToSchema};

use crate::domain::{
    Levels, MAX_DELTA, MAX_DESCRIPTION_CHARS, MAX_LEAD_TIME_DAYS, MAX_NAME_CHARS, MAX_PHONE_CHARS,
    MAX_REORDER_LEVEL, Reason, SKU_PATTERN,
};
pub use crate::domain::{lead_time, name, reorder_level};
use crate::store::stock::Movement;
use crate::store::{CatalogError, Product, Supplier, rfc3339};

pub(super) fn name_schema() -> Object {
    text()
        .min_length(Some(1))
        .max_length(Some(MAX_NAME_CHARS))
        .pattern(Some(plain_text_pattern(true)))
        .build()
}

pub(super) fn description_schema() -> Object {
    text()
        .max_length(Some(MAX_DESCRIPTION_CHARS))
        .pattern(Some(plain_text_pattern(false)))
        .build()
}

pub(super) fn email_schema() -> Object {
    text()
        .pattern(Some(constellation_core::auth::email_pattern()))
        .max_length(Some(254))
        .build()
}

pub(super) fn phone_schema() -> Object {
    text()
        .min_length(Some(1))
        .max_length(Some(MAX_PHONE_CHARS))
        .pattern(Some("^[0-9 +().-]*[0-9][0-9 +().-]*$"))
        .build()
}

pub(super) fn lead_time_schema() -> Object {
    integer(0, u64::from(MAX_LEAD_TIME_DAYS)).build()
}

pub(super) fn reorder_schema() -> Object {
    integer(0, MAX_REORDER_LEVEL.unsigned_abs()).build()
}

pub(super) fn sku_schema() -> Object {
    text().pattern(Some(SKU_PATTERN)).build()
}

pub(super) fn sku_prefix_schema() -> Object {
    text().pattern(Some("^[A-Z0-9-]{0,32}$")).build()
}

pub(super) use constellation_web::openapi::time_ordered_id_schema as id_schema;

pub(super) fn amount_schema() -> Object {
    constellation_web::openapi::money_amount_schema()
}

pub(super) fn currency_schema() -> Object {
    one_of(Currency::all().map(|c| c.code())).build()
}

pub(super) fn delta_schema() -> utoipa::openapi::schema::Schema {
    let range = |min: i64, max: i64| {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Integer)
            .minimum(Some(min))
            .maximum(Some(max))
    };
    utoipa::openapi::schema::OneOfBuilder::new()
        .item(range(-MAX_DELTA, -1))
        .item(range(1, MAX_DELTA))
        .description(Some("Units to add (negative to remove); never 0"))
        .build()
        .into()
}

pub(super) fn reason_schema() -> Object {
    one_of(Reason::MANUAL).build()
}

/// Money: a decimal string and its currency.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoneyBody {
    /// The amount.
    #[schema(schema_with = amount_schema)]
    pub amount: String,
    /// The currency.
    #[schema(schema_with = currency_schema)]
    pub currency: String,
}

impl MoneyBody {
    /// The exact money, naming `price.amount` / `price.currency` when invalid.
    pub fn parse(&self) -> Result<Money, constellation_core::ValidationError> {
        let currency = Currency::parse("price.currency", &self.currency)?;
        Money::parse("price.amount", &self.amount, currency)
    }

    fn of(m: &Money) -> Self {
        Self {
            amount: m.amount_string(),
            currency: m.currency().code().to_owned(),
        }
    }
}

/// `POST /v1/catalog/suppliers`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SupplierForCreate {
    /// Name.
    #[schema(schema_with = name_schema)]
    pub name: String,
    /// Contact e-mail.
    #[schema(schema_with = email_schema)]
    pub email: String,
    /// Contact phone.
    #[schema(schema_with = phone_schema)]
    pub phone: String,
    /// Days from order to delivery, 0 to 365.
    #[schema(schema_with = lead_time_schema)]
    #[serde(deserialize_with = "constellation_web::extract::whole_u64")]
    pub lead_time_days: u64,
}

/// `PATCH /v1/catalog/suppliers/{id}` (a merge patch).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SupplierForPatch {
    /// Name.
    #[schema(schema_with = name_schema)]
    #[serde(default, deserialize_with = "constellation_web::extract::not_null")]
    pub name: Option<String>,
    /// Contact e-mail.
    #[schema(schema_with = email_schema)]
    #[serde(default, deserialize_with = "constellation_web::extract::not_null")]
    pub email: Option<String>,
    /// Contact phone.
    #[schema(schema_with = phone_schema)]
    #[serde(default, deserialize_with = "constellation_web::extract::not_null")]
    pub phone: Option<String>,
    /// Days from order to delivery.
    #[schema(schema_with = lead_time_schema)]
    #[serde(default, deserialize_with = "some_whole_u64")]
    pub lead_time_days: Option<u64>,
}

fn some_whole_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    constellation_web::extract::whole_u64(d).map(Some)
}

fn some_whole_i64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    constellation_web::extract::whole_i64(d).map(Some)
}

/// A supplier.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SupplierView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// E-mail.
    pub email: String,
    /// Phone.
    pub phone: String,
    /// Days from order to delivery.
    pub lead_time_days: u32,
    /// Created.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

impl From<&Supplier> for SupplierView {
    fn from(s: &Supplier) -> Self {
        Self {
            id: s.id.clone(),
            name: s.name.clone(),
            email: s.email.clone(),
            phone: s.phone.clone(),
            lead_time_days: s.lead_time_days,
            created_at: rfc3339(s.created_at),
            updated_at: rfc3339(s.updated_at),
        }
    }
}

/// One page of suppliers.
#[derive(Debug, Serialize, ToSchema)]
pub struct SupplierList {
    /// Suppliers.
    pub items: Vec<SupplierView>,
    /// For the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// `POST /v1/catalog/products`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductForCreate {
    /// Unique per organization: `[A-Z0-9][A-Z0-9-]{0,31}`.
    #[schema(schema_with = sku_schema)]
    pub sku: String,
    /// Name.
    #[schema(schema_with = name_schema)]
    pub name: String,
    /// Description (empty by default).
    #[schema(schema_with = description_schema)]
    #[serde(default)]
    pub description: String,
    /// Unit price.
    pub price: MoneyBody,
    /// The supplier (optional).
    #[schema(schema_with = id_schema)]
    #[serde(default, deserialize_with = "constellation_web::extract::not_null")]
    pub supplier_id: Option<String>,
    /// `inventory.low` when available stock falls below this (default 0).
    #[schema(schema_with = reorder_schema)]
    #[serde(default, deserialize_with = "some_whole_i64")]
    pub reorder_level: Option<i64>,
    /// Orderable (default true).
    #[schema(nullable = false)]
    #[serde(default, deserialize_with = "constellation_web::extract::not_null")]
    pub active: Option<bool>,
}

/// `PATCH /v1/catalog/products/{id}` (a merge patch; `If-Match` required).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductForPatch {
    /// SKU.
    #[schema(schema_with = sku_schema)]
    #[serde(default, deserialize_with = "constellation_web::extract::not_null")]
    pub sku: Option<String>,
    /// Name.
    #[schema(schema_with = name_schema)]
    #[serde(default, deserialize_with = "constellation_web::extract::not_null")]
    pub name: Option<String>,
    /// Description.
    #[schema(schema_with = description_schema)]
    #[serde(default, deserialize_with = "constellation_web::extract::not_null")]
    pub description: Option<String>,
    /// Unit price.
    #[schema(nullable = false)]
    #[serde(default, deserialize_with = "constellation_web::extract::not_null")]
    pub price: Option<MoneyBody>,
    /// The supplier.
    #[schema(schema_with = id_schema)]
    #[serde(default, deserialize_with = "constellation_web::extract::not_null")]
    pub supplier_id: Option<String>,
    /// Reorder level.
    #[schema(schema_with = reorder_schema)]
    #[serde(default, deserialize_with = "some_whole_i64")]
    pub reorder_level: Option<i64>,
    /// Orderable.
    #[schema(nullable = false)]
    #[serde(default, deserialize_with = "constellation_web::extract::not_null")]
    pub active: Option<bool>,
}

/// Stock levels.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StockView {
    /// Units in the warehouse.
    pub on_hand: i64,
    /// Units held for orders.
    pub reserved: i64,
    /// `on_hand - reserved`, never negative.
    pub available: i64,
}

impl From<Levels> for StockView {
    fn from(l: Levels) -> Self {
        Self {
            on_hand: l.on_hand,
            reserved: l.reserved,
            available: l.available(),
        }
    }
}

/// A product.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProductView {
    /// Id.
    pub id: String,
    /// SKU.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Unit price.
    pub price: MoneyBody,
    /// The supplier.
    pub supplier_id: Option<String>,
    /// Reorder level.
    pub reorder_level: i64,
    /// Orderable.
    pub active: bool,
    /// Deleted (kept for history).
    pub archived: bool,
    /// Stock.
    pub stock: StockView,
    /// Created.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

impl From<&Product> for ProductView {
    fn from(p: &Product) -> Self {
        Self {
            id: p.id.clone(),
            sku: p.sku.clone(),
            name: p.name.clone(),
            description: p.description.clone(),
            price: MoneyBody::of(&p.price),
            supplier_id: p.supplier_id.clone(),
            reorder_level: p.reorder_level,
            active: p.active,
            archived: p.archived,
            stock: p.levels.into(),
            created_at: rfc3339(p.created_at),
            updated_at: rfc3339(p.updated_at),
        }
    }
}

/// One page of products.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductList {
    /// Products, by SKU (or by id within a supplier).
    pub items: Vec<ProductView>,
    /// For the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// `POST .../stock/adjustments`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentBody {
    /// Units to add (negative to remove), not 0.
    #[schema(schema_with = delta_schema)]
    #[serde(deserialize_with = "constellation_web::extract::whole_i64")]
    pub delta: i64,
    /// `received`, `count`, `damaged` or `returned`.
    #[schema(schema_with = reason_schema)]
    pub reason: String,
}

/// A stock movement.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MovementView {
    /// When.
    pub at: String,
    /// Why.
    pub reason: String,
    /// Change of `on_hand`.
    pub on_hand_delta: i64,
    /// Change of `reserved`.
    pub reserved_delta: i64,
    /// Who adjusted (manual changes).
    pub actor: Option<String>,
    /// The order (order effects).
    pub order_id: Option<String>,
}

impl From<&Movement> for MovementView {
    fn from(m: &Movement) -> Self {
        Self {
            at: m.at.clone(),
            reason: m.reason.clone(),
            on_hand_delta: m.on_hand_delta,
            reserved_delta: m.reserved_delta,
            actor: m.actor.clone(),
            order_id: m.order_id.clone(),
        }
    }
}

/// One page of movements, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct MovementList {
    /// Movements.
    pub items: Vec<MovementView>,
    /// For the next page; absent on the last.
    pub next_cursor: Option<String>,
}

pub use constellation_web::openapi::TimeOrderedIdPath as IdPath;

/// Product listing filters.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProductQuery {
    /// SKUs starting with this.
    #[param(schema_with = sku_prefix_schema)]
    pub sku_prefix: Option<String>,
    /// Only this supplier's.
    #[param(schema_with = id_schema)]
    pub supplier_id: Option<String>,
    /// Only active (`true`) or inactive (`false`) ones.
    pub active: Option<bool>,
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            e @ CatalogError::NotFound(_) => ApiError::not_found(e.to_string()),
            e @ CatalogError::SkuTaken => ApiError::Client {
                problem: ProblemType::SkuTaken,
                detail: e.to_string(),
                field: Some("sku".into()),
            },
            e @ CatalogError::InsufficientStock { .. } => ApiError::Client {
                problem: ProblemType::InsufficientStock,
                detail: e.to_string(),
                field: Some("delta".into()),
            },
            e @ CatalogError::UnknownSupplier => ApiError::Client {
                problem: ProblemType::NotFound,
                detail: e.to_string(),
                field: Some("supplier_id".into()),
            },
            CatalogError::InUse(why) => ApiError::client(ProblemType::Conflict, why),
            e @ CatalogError::PreconditionRequired => ApiError::Client {
                problem: ProblemType::PreconditionRequired,
                detail: e.to_string(),
                field: Some("If-Match".into()),
            },
            e @ CatalogError::PreconditionFailed => ApiError::Client {
                problem: ProblemType::PreconditionFailed,
                detail: e.to_string(),
                field: Some("If-Match".into()),
            },
            e @ CatalogError::Contention => ApiError::client(ProblemType::Conflict, e.to_string()),
            CatalogError::Invalid(v) => v.into(),
            CatalogError::Store(e) => e.into(),
        }
    }
}
