//! The orders HTTP contract, mapped onto [`OrderStore`].
//!
//! Placing an order answers `202 Accepted`: the order is pending until
//! catalog answers on the bus, which `GET /v1/orders/{id}?wait=N` can wait
//! for. Placing needs an `Idempotency-Key` (428 without one), so a retried
//! request never places twice; cancel and ship honour one when sent.
//! Members see and cancel their own orders (404 for others'); staff and
//! above see and manage the organization's.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use constellation_core::auth::Role;
use constellation_platform::{Clock, Table};
use constellation_web::extract::{FromPathId, PathId};
use constellation_web::extract::{query_param, query_params};
use constellation_web::openapi::{Conventions, IdempotentDef, PageQuery, id_link, openapi_route};
use constellation_web::pagination::RawPageParams;
use constellation_web::{
    ApiError, Authenticated, IdempotencyLayer, IdempotencyOptions, Json, PageParams,
};
use utoipa::OpenApi;

use crate::domain::{self, Action, Status};
use crate::store::{Filter, Order, OrderId, OrderStore};

mod dto;

pub use dto::*;

type Reply<T> = Result<T, ApiError>;

/// The largest request body orders accepts. It holds the longest body the
/// OpenAPI document allows, written the longest way JSON can write it
/// (each character a 12-byte `\uXXXX\uXXXX` escape, which is how
/// `json.dumps` sends an emoji), with room to spare; `tests/openapi.rs`
/// sends that body to every route.
pub const MAX_BODY_BYTES: usize = 128 * 1024;
/// How often `?wait=` reads the order again.
pub const WAIT_POLL: Duration = Duration::from_millis(100);

/// The orders routes (without the shared layers; see [`crate::app_with`]).
/// `table` and `clock` keep `Idempotency-Key` records.
pub fn router(store: Arc<OrderStore>, table: Arc<dyn Table>, clock: Arc<dyn Clock>) -> Router {
    let required =
        IdempotencyLayer::new(table.clone(), clock.clone(), IdempotencyOptions::required());
    let optional = IdempotencyLayer::new(table, clock, IdempotencyOptions::optional());
    Router::new()
        .route(
            "/v1/orders",
            post(create_order).route_layer(required).get(list_orders),
        )
        .route("/v1/orders/{id}", get(get_order))
        .route(
            "/v1/orders/{id}/cancel",
            post(cancel_order).route_layer(optional.clone()),
        )
        .route(
            "/v1/orders/{id}/ship",
            post(ship_order).route_layer(optional),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(store)
        .merge(openapi_route("/v1/orders/openapi.json", ApiDoc::openapi))
}

/// The orders part of the OpenAPI document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Constellation orders",
        description = "Orders confirmed or rejected by catalog's stock reservation (a saga over the event bus), then cancelled or shipped."
    ),
    paths(create_order, list_orders, get_order, cancel_order, ship_order),
    components(schemas(OrderForCreate, LineForCreate, OrderView, LineView, MoneyView, OrderList)),
    modifiers(&CONVENTIONS)
)]
pub struct ApiDoc;

const CONVENTIONS: Conventions = Conventions {
    service: crate::NAME,
    links: &[
        id_link("create_order", 202, "get_order"),
        id_link("create_order", 202, "cancel_order"),
        id_link("get_order", 200, "ship_order"),
        id_link("get_order", 200, "cancel_order"),
    ],
    idempotent: &[
        IdempotentDef {
            operation: "create_order",
            required: true,
        },
        IdempotentDef {
            operation: "cancel_order",
            required: false,
        },
        IdempotentDef {
            operation: "ship_order",
            required: false,
        },
    ],
};

impl FromPathId for OrderId {
    fn from_path_id(raw: &str) -> Result<Self, constellation_core::ValidationError> {
        Self::parse(raw)
    }
}

/// An order as JSON with `status`.
fn answer(status: StatusCode, o: &Order) -> Response {
    let mut response = (status, axum::Json(OrderView::from(o))).into_response();
    if status == StatusCode::ACCEPTED
        && let Ok(v) = HeaderValue::from_str(&format!("/v1/orders/{}", o.id.as_str()))
    {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// Places an order (`Idempotency-Key` required): it is pending until
/// catalog reserves every line (→ `confirmed`, priced) or cannot (→
/// `rejected`, with `reason`).
#[utoipa::path(
    post,
    path = "/v1/orders",
    request_body = OrderForCreate,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "The pending order; poll `GET /v1/orders/{id}?wait=N` for catalog's answer", body = OrderView,
            headers(("Location" = String, description = "The order's URL"))),
        (status = 400, description = "An invalid field (`lines[0].quantity`, a product listed twice in `lines`...), or a malformed body; `field` names it"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn create_order(
    State(store): State<Arc<OrderStore>>,
    auth: Authenticated,
    Json(body): Json<OrderForCreate>,
) -> Reply<Response> {
    let p = auth.require(Role::Member)?;
    let raw: Vec<(String, Option<i64>)> = body
        .lines
        .into_iter()
        .map(|l| {
            let quantity = l.whole_quantity();
            (l.product_id, quantity)
        })
        .collect();
    let lines = domain::lines(&raw).map_err(|e| ApiError::invalid(e.field, e.reason))?;
    let note = domain::note(body.note.as_deref())?;
    let o = store.place(p, lines, note).await?;
    Ok(answer(StatusCode::ACCEPTED, &o))
}

/// The caller's orders (members) or the organization's (staff and above).
#[utoipa::path(
    get,
    path = "/v1/orders",
    params(ListQuery, PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page, newest first; a page may hold fewer than `limit` items when filtered by status", body = OrderList),
        (status = 400, description = "An invalid parameter, or one this route does not take; `field` names it"),
        (status = 403, description = "A member asked for someone else's orders"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn list_orders(
    State(store): State<Arc<OrderStore>>,
    auth: Authenticated,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Reply<axum::Json<OrderList>> {
    let p = auth.require(Role::Member)?;
    let pairs = query_params(query, &["status", "placed_by", "limit", "cursor"])?;
    let filter = Filter {
        status: query_param(&pairs, "status")
            .map(|s| Status::parse("status", s))
            .transpose()?,
        placed_by: query_param(&pairs, "placed_by").map(str::to_owned),
    };
    let page = PageParams::parse(RawPageParams {
        limit: query_param(&pairs, "limit").map(str::to_owned),
        cursor: query_param(&pairs, "cursor").map(str::to_owned),
    })?;
    let (items, next_cursor) = store.list(p, filter, page.limit, page.cursor).await?;
    Ok(axum::Json(OrderList {
        items: items.iter().map(OrderView::from).collect(),
        next_cursor,
    }))
}

/// An order; with `?wait=N`, answered as soon as it leaves `pending`, or
/// after N seconds as it is then.
#[utoipa::path(
    get,
    path = "/v1/orders/{id}",
    params(OrderPath, WaitQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 400, description = "Malformed id or `wait`; `field` names it"),
        (status = 404, description = "No such order the caller may see"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn get_order(
    State(store): State<Arc<OrderStore>>,
    auth: Authenticated,
    PathId(id): PathId<OrderId>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Reply<Response> {
    let p = auth.require(Role::Member)?;
    let pairs = query_params(query, &["wait"])?;
    let wait = query_param(&pairs, "wait")
        .map(domain::wait)
        .transpose()?
        .unwrap_or(0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let mut o = store.get(p, &id).await?;
    // Read again every WAIT_POLL until catalog has answered or time is up;
    // the wait never outlasts the deadline by more than one read.
    while o.status == Status::Pending {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            break;
        }
        tokio::time::sleep(WAIT_POLL.min(deadline - now)).await;
        o = store.get(p, &id).await?;
    }
    Ok(answer(StatusCode::OK, &o))
}

async fn act(
    store: &OrderStore,
    auth: &Authenticated,
    id: &OrderId,
    action: Action,
) -> Reply<Response> {
    let p = auth.require(Role::Member)?;
    let o = store.act(p, id, action).await?;
    Ok(answer(StatusCode::OK, &o))
}

/// Cancels a pending or confirmed order (its placer, or staff and above);
/// catalog releases what it reserved (`order.cancelled`).
#[utoipa::path(
    post,
    path = "/v1/orders/{id}/cancel",
    params(OrderPath),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Cancelled", body = OrderView),
        (status = 400, description = "Malformed id; `field` names it"),
        (status = 404, description = "No such order the caller may see"),
        (status = 409, description = "`invalid-transition`: not pending or confirmed; `current_status` names its status"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn cancel_order(
    State(store): State<Arc<OrderStore>>,
    auth: Authenticated,
    PathId(id): PathId<OrderId>,
) -> Reply<Response> {
    act(&store, &auth, &id, Action::Cancel).await
}

/// Ships a confirmed order (staff and above); catalog takes the reserved
/// stock off hand (`order.shipped`).
#[utoipa::path(
    post,
    path = "/v1/orders/{id}/ship",
    params(OrderPath),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Shipped", body = OrderView),
        (status = 400, description = "Malformed id; `field` names it"),
        (status = 403, description = "Not staff"),
        (status = 404, description = "No such order the caller may see"),
        (status = 409, description = "`invalid-transition`: not confirmed; `current_status` names its status"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn ship_order(
    State(store): State<Arc<OrderStore>>,
    auth: Authenticated,
    PathId(id): PathId<OrderId>,
) -> Reply<Response> {
    act(&store, &auth, &id, Action::Ship).await
}
