//! The catalog HTTP contract, mapped onto [`CatalogStore`]. Members read;
//! staff and above write. Another organization's ids answer 404.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use constellation_core::auth::{Email, Role};
use constellation_core::etag::Precondition;
use constellation_platform::{Clock, Table};
use constellation_web::extract::PathId;
use constellation_web::extract::{query_param, query_params};
use constellation_web::openapi::{
    Conventions, IdempotentDef, PageQuery, RequiredPatchHeader, id_link, openapi_route,
};
use constellation_web::pagination::RawPageParams;
use constellation_web::{
    ApiError, Authenticated, IdempotencyLayer, IdempotencyOptions, Json, PageParams,
};
use utoipa::OpenApi;

use crate::domain::{self, MAX_DESCRIPTION_CHARS, Reason};
use crate::store::{CatalogStore, Product, ProductFields, ProductFilter, SupplierFields, is_id};

mod dto;

pub use dto::*;

type Reply<T> = Result<T, ApiError>;

/// The largest request body catalog accepts. It holds the longest body the
/// OpenAPI document allows, written the longest way JSON can write it
/// (each character a 12-byte `\uXXXX\uXXXX` escape, which is how
/// `json.dumps` sends an emoji), with room to spare; `tests/openapi.rs`
/// sends that body to every route.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

const READ: Role = Role::Member;
const WRITE: Role = Role::Staff;

/// The catalog routes (without the shared layers; see [`crate::app_with`]).
pub fn router(store: Arc<CatalogStore>, table: Arc<dyn Table>, clock: Arc<dyn Clock>) -> Router {
    let idempotent = IdempotencyLayer::new(table, clock, IdempotencyOptions::optional());
    Router::new()
        .route(
            "/v1/catalog/suppliers",
            post(create_supplier).get(list_suppliers),
        )
        .route(
            "/v1/catalog/suppliers/{id}",
            get(get_supplier)
                .patch(patch_supplier)
                .delete(delete_supplier),
        )
        .route(
            "/v1/catalog/products",
            post(create_product).get(list_products),
        )
        .route(
            "/v1/catalog/products/{id}",
            get(get_product).patch(patch_product).delete(delete_product),
        )
        .route("/v1/catalog/products/{id}/stock", get(get_stock))
        .route(
            "/v1/catalog/products/{id}/stock/adjustments",
            post(adjust_stock).route_layer(idempotent),
        )
        .route(
            "/v1/catalog/products/{id}/stock/movements",
            get(list_movements),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(store)
        .merge(openapi_route("/v1/catalog/openapi.json", ApiDoc::openapi))
}

/// The catalog part of the OpenAPI document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Constellation catalog",
        description = "Suppliers, products and stock; stock is reserved for orders through the order saga."
    ),
    paths(
        create_supplier, list_suppliers, get_supplier, patch_supplier, delete_supplier,
        create_product, list_products, get_product, patch_product, delete_product, get_stock,
        adjust_stock, list_movements
    ),
    components(schemas(
        MoneyBody, SupplierForCreate, SupplierForPatch, SupplierView, SupplierList,
        ProductForCreate, ProductForPatch, ProductView, ProductList, StockView, AdjustmentBody,
        MovementView, MovementList
    )),
    modifiers(&CONVENTIONS, &PATCH_NEEDS_IF_MATCH)
)]
pub struct ApiDoc;

/// `If-Match` is required on `PATCH /v1/catalog/products/{id}`.
const PATCH_NEEDS_IF_MATCH: RequiredPatchHeader = RequiredPatchHeader {
    path: "/v1/catalog/products/{id}",
    header: "If-Match",
};

const CONVENTIONS: Conventions = Conventions {
    service: crate::NAME,
    links: &[
        id_link("create_supplier", 201, "get_supplier"),
        id_link("create_supplier", 201, "patch_supplier"),
        id_link("create_supplier", 201, "delete_supplier"),
        id_link("create_product", 201, "get_product"),
        id_link("create_product", 201, "get_stock"),
        id_link("create_product", 201, "adjust_stock"),
        id_link("create_product", 201, "list_movements"),
        id_link("create_product", 201, "delete_product"),
    ],
    idempotent: &[IdempotentDef {
        operation: "adjust_stock",
        required: false,
    }],
};

fn page(pairs: &[(String, String)]) -> Result<PageParams, ApiError> {
    PageParams::parse(RawPageParams {
        limit: query_param(pairs, "limit").map(str::to_owned),
        cursor: query_param(pairs, "cursor").map(str::to_owned),
    })
}

fn with_etag(status: StatusCode, p: &Product) -> Response {
    let mut r = (status, axum::Json(ProductView::from(p))).into_response();
    if let Ok(v) = HeaderValue::from_str(&p.etag.quoted()) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

// ---------------------------------------------------------------- suppliers

/// Creates a supplier (staff+).
#[utoipa::path(post, path = "/v1/catalog/suppliers", request_body = SupplierForCreate,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The supplier", body = SupplierView),
        (status = 400, description = "An invalid field, or a malformed body; `field` names it"),
        (status = 403, description = "Members read only"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    ))]
async fn create_supplier(
    State(store): State<Arc<CatalogStore>>,
    auth: Authenticated,
    Json(body): Json<SupplierForCreate>,
) -> Reply<Response> {
    let p = auth.require(WRITE)?;
    let fields = SupplierFields {
        name: name("name", &body.name)?,
        email: Email::parse(&body.email)?,
        phone: domain::phone(&body.phone)?,
        lead_time_days: lead_time(body.lead_time_days)?,
    };
    let s = store.create_supplier(&p.org, fields).await?;
    Ok((StatusCode::CREATED, axum::Json(SupplierView::from(&s))).into_response())
}

/// The organization's suppliers.
#[utoipa::path(get, path = "/v1/catalog/suppliers", params(PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page", body = SupplierList),
        (status = 400, description = "Invalid limit or cursor, or a parameter this route does not take; `field` names it"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    ))]
async fn list_suppliers(
    State(store): State<Arc<CatalogStore>>,
    auth: Authenticated,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Reply<axum::Json<SupplierList>> {
    let p = auth.require(READ)?;
    let pairs = query_params(query, &["limit", "cursor"])?;
    let page = page(&pairs)?;
    let (items, next_cursor) = store.suppliers(&p.org, page.limit, page.cursor).await?;
    Ok(axum::Json(SupplierList {
        items: items.iter().map(SupplierView::from).collect(),
        next_cursor,
    }))
}

/// A supplier.
#[utoipa::path(get, path = "/v1/catalog/suppliers/{id}", params(IdPath),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The supplier", body = SupplierView),
        (status = 400, description = "Malformed id; `field` names it"),
        (status = 404, description = "No such supplier in the caller's organization"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    ))]
async fn get_supplier(
    State(store): State<Arc<CatalogStore>>,
    auth: Authenticated,
    PathId(id): PathId<String>,
) -> Reply<axum::Json<SupplierView>> {
    let p = auth.require(READ)?;
    Ok(axum::Json(SupplierView::from(
        &store.supplier(&p.org, &id).await?,
    )))
}

/// Changes a supplier (staff+).
#[utoipa::path(patch, path = "/v1/catalog/suppliers/{id}", params(IdPath),
    request_body = SupplierForPatch, security(("bearer" = [])),
    responses(
        (status = 200, description = "The supplier", body = SupplierView),
        (status = 400, description = "An invalid field, a malformed id, or a malformed body; `field` names it"),
        (status = 403, description = "Members read only"),
        (status = 404, description = "No such supplier in the caller's organization"),
        (status = 409, description = "Changed concurrently; retry"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    ))]
async fn patch_supplier(
    State(store): State<Arc<CatalogStore>>,
    auth: Authenticated,
    PathId(id): PathId<String>,
    Json(body): Json<SupplierForPatch>,
) -> Reply<axum::Json<SupplierView>> {
    let p = auth.require(WRITE)?;
    let name = body.name.as_deref().map(|n| name("name", n)).transpose()?;
    let email = body.email.as_deref().map(Email::parse).transpose()?;
    let phone = body.phone.as_deref().map(domain::phone).transpose()?;
    let lead = body.lead_time_days.map(lead_time).transpose()?;
    let s = store
        .update_supplier(&p.org, &id, |s| {
            if let Some(n) = &name {
                s.name.clone_from(n);
            }
            if let Some(e) = &email {
                s.email = e.as_str().to_owned();
            }
            if let Some(ph) = &phone {
                s.phone.clone_from(ph);
            }
            if let Some(d) = lead {
                s.lead_time_days = d;
            }
        })
        .await?;
    Ok(axum::Json(SupplierView::from(&s)))
}

/// Deletes a supplier no product names (staff+).
#[utoipa::path(delete, path = "/v1/catalog/suppliers/{id}", params(IdPath),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Malformed id; `field` names it"),
        (status = 403, description = "Members read only"),
        (status = 404, description = "No such supplier in the caller's organization"),
        (status = 409, description = "Products still name this supplier"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    ))]
async fn delete_supplier(
    State(store): State<Arc<CatalogStore>>,
    auth: Authenticated,
    PathId(id): PathId<String>,
) -> Reply<StatusCode> {
    let p = auth.require(WRITE)?;
    store.delete_supplier(&p.org, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- products

/// Creates a product with no stock (staff+); its SKU must be free.
#[utoipa::path(post, path = "/v1/catalog/products", request_body = ProductForCreate,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The product", body = ProductView,
            headers(("ETag" = String, description = "The product's entity tag"))),
        (status = 400, description = "An invalid field, or a malformed body; `field` names it"),
        (status = 404, description = "`supplier_id` names no supplier of the organization (`field` says so)"),
        (status = 403, description = "Members read only"),
        (status = 409, description = "`sku-taken`: another product has this SKU"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    ))]
async fn create_product(
    State(store): State<Arc<CatalogStore>>,
    auth: Authenticated,
    Json(body): Json<ProductForCreate>,
) -> Reply<Response> {
    let p = auth.require(WRITE)?;
    let supplier_id = match body.supplier_id {
        Some(s) if !is_id(&s) => return Err(crate::store::CatalogError::UnknownSupplier.into()),
        s => s,
    };
    let fields = ProductFields {
        sku: domain::sku(&body.sku)?,
        name: name("name", &body.name)?,
        description: domain::text("description", &body.description, 0, MAX_DESCRIPTION_CHARS)?,
        price: body.price.parse()?,
        supplier_id,
        reorder_level: reorder_level(body.reorder_level.unwrap_or(0))?,
        active: body.active.unwrap_or(true),
    };
    let product = store.create_product(&p.org, fields).await?;
    Ok(with_etag(StatusCode::CREATED, &product))
}

/// The organization's products by SKU (or a supplier's).
#[utoipa::path(get, path = "/v1/catalog/products", params(ProductQuery, PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page; filtered pages may hold fewer than `limit`", body = ProductList),
        (status = 400, description = "An invalid parameter, or one this route does not take; `field` names it"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    ))]
async fn list_products(
    State(store): State<Arc<CatalogStore>>,
    auth: Authenticated,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Reply<axum::Json<ProductList>> {
    let p = auth.require(READ)?;
    let pairs = query_params(
        query,
        &["sku_prefix", "supplier_id", "active", "limit", "cursor"],
    )?;
    let filter = ProductFilter {
        sku_prefix: query_param(&pairs, "sku_prefix")
            .map(domain::sku_prefix)
            .transpose()?,
        supplier_id: match query_param(&pairs, "supplier_id") {
            Some(s) if is_id(s) => Some(s.to_owned()),
            Some(_) => return Err(ApiError::invalid("supplier_id", "must be an id as issued")),
            None => None,
        },
        active: match query_param(&pairs, "active") {
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(_) => return Err(ApiError::invalid("active", "must be true or false")),
            None => None,
        },
    };
    let page = page(&pairs)?;
    let (items, next_cursor) = store
        .products(&p.org, &filter, page.limit, page.cursor)
        .await?;
    Ok(axum::Json(ProductList {
        items: items.iter().map(ProductView::from).collect(),
        next_cursor,
    }))
}

/// A product with its stock.
#[utoipa::path(get, path = "/v1/catalog/products/{id}", params(IdPath),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The product", body = ProductView,
            headers(("ETag" = String, description = "The product's entity tag"))),
        (status = 400, description = "Malformed id; `field` names it"),
        (status = 404, description = "No such product in the caller's organization"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    ))]
async fn get_product(
    State(store): State<Arc<CatalogStore>>,
    auth: Authenticated,
    PathId(id): PathId<String>,
) -> Reply<Response> {
    let p = auth.require(READ)?;
    Ok(with_etag(
        StatusCode::OK,
        &store.product(&p.org, &id).await?,
    ))
}

/// Changes a product (staff+, `If-Match` required).
#[utoipa::path(patch, path = "/v1/catalog/products/{id}", params(IdPath, IfMatchHeader),
    request_body = ProductForPatch, security(("bearer" = [])),
    responses(
        (status = 200, description = "The product", body = ProductView,
            headers(("ETag" = String, description = "The new entity tag"))),
        (status = 400, description = "An invalid field, a malformed id or If-Match, or a malformed body; `field` names it"),
        (status = 403, description = "Members read only"),
        (status = 404, description = "No such product in the caller's organization, or `supplier_id` names no supplier (`field` says so)"),
        (status = 409, description = "`sku-taken`, or changed concurrently"),
        (status = 412, description = "`If-Match` does not match"),
        (status = 428, description = "`If-Match` is missing (or `*`)"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    ))]
async fn patch_product(
    State(store): State<Arc<CatalogStore>>,
    auth: Authenticated,
    PathId(id): PathId<String>,
    headers: HeaderMap,
    Json(body): Json<ProductForPatch>,
) -> Reply<Response> {
    let p = auth.require(WRITE)?;
    let if_match = headers
        .get(header::IF_MATCH)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::invalid("If-Match", "must be visible ASCII"))
        })
        .transpose()?;
    let precondition = Precondition::from_headers(if_match, None)?;
    let sku = body.sku.as_deref().map(domain::sku).transpose()?;
    let name = body.name.as_deref().map(|n| name("name", n)).transpose()?;
    let description = body
        .description
        .as_deref()
        .map(|d| domain::text("description", d, 0, MAX_DESCRIPTION_CHARS))
        .transpose()?;
    let price = body.price.as_ref().map(MoneyBody::parse).transpose()?;
    if body.supplier_id.as_deref().is_some_and(|s| !is_id(s)) {
        return Err(crate::store::CatalogError::UnknownSupplier.into());
    }
    let reorder = body.reorder_level.map(reorder_level).transpose()?;
    let product = store
        .update_product(&p.org, &id, &precondition, |f| {
            if let Some(v) = &sku {
                f.sku.clone_from(v);
            }
            if let Some(v) = &name {
                f.name.clone_from(v);
            }
            if let Some(v) = &description {
                f.description.clone_from(v);
            }
            if let Some(v) = price {
                f.price = v;
            }
            if let Some(v) = &body.supplier_id {
                f.supplier_id = Some(v.clone());
            }
            if let Some(v) = reorder {
                f.reorder_level = v;
            }
            if let Some(v) = body.active {
                f.active = v;
            }
        })
        .await?;
    Ok(with_etag(StatusCode::OK, &product))
}

/// Archives a product (staff+); refused while its stock is reserved.
#[utoipa::path(delete, path = "/v1/catalog/products/{id}", params(IdPath),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Archived"),
        (status = 400, description = "Malformed id; `field` names it"),
        (status = 403, description = "Members read only"),
        (status = 404, description = "No such product in the caller's organization (or archived already)"),
        (status = 409, description = "Stock of it is reserved"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    ))]
async fn delete_product(
    State(store): State<Arc<CatalogStore>>,
    auth: Authenticated,
    PathId(id): PathId<String>,
) -> Reply<StatusCode> {
    let p = auth.require(WRITE)?;
    store.archive_product(&p.org, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- stock

/// A product's stock.
#[utoipa::path(get, path = "/v1/catalog/products/{id}/stock", params(IdPath),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The levels", body = StockView),
        (status = 400, description = "Malformed id; `field` names it"),
        (status = 404, description = "No such product in the caller's organization"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    ))]
async fn get_stock(
    State(store): State<Arc<CatalogStore>>,
    auth: Authenticated,
    PathId(id): PathId<String>,
) -> Reply<axum::Json<StockView>> {
    let p = auth.require(READ)?;
    Ok(axum::Json(store.product(&p.org, &id).await?.levels.into()))
}

/// Adjusts `on_hand` (staff+, `Idempotency-Key` honoured); it never falls below `reserved`.
#[utoipa::path(post, path = "/v1/catalog/products/{id}/stock/adjustments", params(IdPath),
    request_body = AdjustmentBody, security(("bearer" = [])),
    responses(
        (status = 200, description = "The new levels", body = StockView),
        (status = 400, description = "An invalid delta or reason, a malformed id, or a malformed body; `field` names it"),
        (status = 403, description = "Members read only"),
        (status = 404, description = "No such product in the caller's organization"),
        (status = 409, description = "`insufficient-stock`: on_hand would fall below reserved"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    ))]
async fn adjust_stock(
    State(store): State<Arc<CatalogStore>>,
    auth: Authenticated,
    PathId(id): PathId<String>,
    Json(body): Json<AdjustmentBody>,
) -> Reply<axum::Json<StockView>> {
    let p = auth.require(WRITE)?;
    let delta = domain::delta(body.delta)?;
    let reason = Reason::parse_manual(&body.reason)?;
    let product = store
        .adjust(&p.org, &id, delta, reason, p.account.as_str())
        .await?;
    Ok(axum::Json(product.levels.into()))
}

/// A product's stock movements, newest first.
#[utoipa::path(get, path = "/v1/catalog/products/{id}/stock/movements", params(IdPath, PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page", body = MovementList),
        (status = 400, description = "Malformed id, limit or cursor, or a parameter this route does not take; `field` names it"),
        (status = 404, description = "No such product in the caller's organization"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    ))]
async fn list_movements(
    State(store): State<Arc<CatalogStore>>,
    auth: Authenticated,
    PathId(id): PathId<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Reply<axum::Json<MovementList>> {
    let p = auth.require(READ)?;
    let pairs = query_params(query, &["limit", "cursor"])?;
    let page = page(&pairs)?;
    let (items, next_cursor) = store
        .movements(&p.org, &id, page.limit, page.cursor)
        .await?;
    Ok(axum::Json(MovementList {
        items: items.iter().map(MovementView::from).collect(),
        next_cursor,
    }))
}

/// The `If-Match` header of `PATCH` (required; documented so by `PATCH_NEEDS_IF_MATCH`).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfMatchHeader {
    /// The `ETag` you read.
    #[param(rename = "If-Match", schema_with = if_match_schema)]
    pub if_match: Option<String>,
}

fn if_match_schema() -> utoipa::openapi::schema::Object {
    constellation_web::openapi::text()
        .pattern(Some(constellation_core::etag::etag_tags_pattern()))
        .build()
}
