//! The expenses HTTP contract, mapped onto [`ExpenseStore`].
//!
//! Money is a decimal string with an ISO 4217 currency, answered with
//! exactly the currency's decimals. Single expenses answer with an `ETag`;
//! `PATCH` requires `If-Match` (428 without, 412 on mismatch); other
//! changes honour it when sent. Members see their own expenses only (404
//! for others'); admins and owners see the organization's.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use constellation_core::auth::Role;
use constellation_core::etag::Precondition;
use constellation_core::money::format_minor;
use constellation_platform::{Clock, Table};
use constellation_web::error::ProblemType;
use constellation_web::extract::{FromPathId, PathId};
use constellation_web::extract::{parse_json, query_param, query_params};
use constellation_web::openapi::{
    Conventions, IdempotentDef, PageQuery, RequiredPatchHeader, id_link, one_of, openapi_route,
};
use constellation_web::pagination::RawPageParams;
use constellation_web::uploads::{PresignedView, UploadView};
use constellation_web::{
    ApiError, Authenticated, IdempotencyLayer, IdempotencyOptions, Json, LimitedBody, PageParams,
};
use utoipa::openapi::schema::Object;
use utoipa::{IntoParams, OpenApi};

use crate::domain::{
    self, Details, MAX_CATEGORY_CHARS, MAX_DESCRIPTION_CHARS, MAX_MERCHANT_CHARS, Status,
    Transition,
};
use crate::store::{Expense, ExpenseId, ExpenseStore, Filter, GroupBy, MAX_SCAN, Patch};

mod dto;

pub use dto::*;

type Reply<T> = Result<T, ApiError>;

/// The largest request body expenses accepts. It holds the longest body the
/// OpenAPI document allows, written the longest way JSON can write it
/// (each character a 12-byte `\uXXXX\uXXXX` escape, which is how
/// `json.dumps` sends an emoji), with room to spare; `tests/openapi.rs`
/// sends that body to every route.
pub const MAX_BODY_BYTES: usize = 32 * 1024;

/// The expenses routes (without the shared layers; see [`crate::app_with`]).
/// `table` and `clock` keep `Idempotency-Key` records.
pub fn router(store: Arc<ExpenseStore>, table: Arc<dyn Table>, clock: Arc<dyn Clock>) -> Router {
    let idempotent = IdempotencyLayer::new(table, clock, IdempotencyOptions::optional());
    Router::new()
        .route(
            "/v1/expenses",
            post(create_expense)
                .route_layer(idempotent.clone())
                .get(list_expenses),
        )
        .route("/v1/expenses/summary", get(summary))
        .route("/v1/expenses/export", get(export))
        .route(
            "/v1/expenses/{id}",
            get(get_expense).patch(patch_expense).delete(delete_expense),
        )
        .route("/v1/expenses/{id}/submit", post(submit))
        .route("/v1/expenses/{id}/approve", post(approve))
        .route("/v1/expenses/{id}/reject", post(reject))
        .route(
            "/v1/expenses/{id}/reimburse",
            post(reimburse).route_layer(idempotent),
        )
        .route("/v1/expenses/{id}/receipts", post(add_receipt))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(store)
        .merge(openapi_route("/v1/expenses/openapi.json", ApiDoc::openapi))
}

/// The expenses part of the OpenAPI document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Constellation expenses",
        description = "Expenses with exact money, a review state machine, receipts, summaries and CSV export."
    ),
    paths(
        create_expense, list_expenses, summary, export, get_expense, patch_expense,
        delete_expense, submit, approve, reject, reimburse, add_receipt
    ),
    components(schemas(
        ExpenseForCreate, ExpenseForPatch, ReasonBody, ApprovalBody, ReceiptForCreate, ExpenseView,
        ExpenseList, ReceiptView, HistoryView, SummaryView, GroupView, UploadView, PresignedView
    )),
    modifiers(&CONVENTIONS, &PATCH_NEEDS_IF_MATCH)
)]
pub struct ApiDoc;

/// `If-Match` is required on `PATCH /v1/expenses/{id}`.
const PATCH_NEEDS_IF_MATCH: RequiredPatchHeader = RequiredPatchHeader {
    path: "/v1/expenses/{id}",
    header: "If-Match",
};

const CONVENTIONS: Conventions = Conventions {
    service: crate::NAME,
    links: &[
        id_link("create_expense", 201, "get_expense"),
        id_link("create_expense", 201, "submit"),
        id_link("create_expense", 201, "delete_expense"),
        id_link("create_expense", 201, "add_receipt"),
        id_link("submit", 200, "approve"),
        id_link("submit", 200, "reject"),
        id_link("approve", 200, "reimburse"),
    ],
    idempotent: &[
        IdempotentDef {
            operation: "create_expense",
            required: false,
        },
        IdempotentDef {
            operation: "reimburse",
            required: false,
        },
    ],
};

impl FromPathId for ExpenseId {
    fn from_path_id(raw: &str) -> Result<Self, constellation_core::ValidationError> {
        Self::parse(raw)
    }
}

fn precondition(headers: &HeaderMap) -> Result<Precondition, ApiError> {
    let value = headers
        .get(header::IF_MATCH)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::invalid("If-Match", "must be visible ASCII"))
        })
        .transpose()?;
    Ok(Precondition::from_headers(value, None)?)
}

/// An expense with its `ETag`.
fn answer(status: StatusCode, e: &Expense) -> Response {
    let mut response = (status, axum::Json(ExpenseView::from(e))).into_response();
    if let Ok(v) = HeaderValue::from_str(&e.etag.quoted()) {
        response.headers_mut().insert(header::ETAG, v);
    }
    if status == StatusCode::CREATED
        && let Ok(v) = HeaderValue::from_str(&format!("/v1/expenses/{}", e.id.as_str()))
    {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// Files a draft expense (`Idempotency-Key` honoured).
#[utoipa::path(
    post,
    path = "/v1/expenses",
    request_body = ExpenseForCreate,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The draft", body = ExpenseView,
            headers(("ETag" = String, description = "The expense's entity tag"),
                    ("Location" = String, description = "The expense's URL"))),
        (status = 400, description = "An invalid field, or a malformed body; `field` names it"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn create_expense(
    State(store): State<Arc<ExpenseStore>>,
    auth: Authenticated,
    Json(body): Json<ExpenseForCreate>,
) -> Reply<Response> {
    let p = auth.require(Role::Member)?;
    let details = Details {
        amount: domain::money(&body.amount, &body.currency)?,
        category: domain::text("category", &body.category, 1, MAX_CATEGORY_CHARS)?,
        merchant: domain::text("merchant", &body.merchant, 1, MAX_MERCHANT_CHARS)?,
        description: domain::text("description", &body.description, 0, MAX_DESCRIPTION_CHARS)?,
        incurred_on: domain::incurred_on(&body.incurred_on, store.now())?,
    };
    let e = store.create(p, details).await?;
    Ok(answer(StatusCode::CREATED, &e))
}

/// The filters of a listing.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this status.
    #[param(schema_with = status_schema)]
    pub status: Option<String>,
    /// Only this category.
    #[param(schema_with = category_schema)]
    pub category: Option<String>,
    /// Only this submitter's (members: only their own id).
    pub submitter: Option<String>,
    /// Incurred on or after this date.
    #[param(schema_with = date_schema)]
    pub from: Option<String>,
    /// Incurred on or before this date.
    #[param(schema_with = date_schema)]
    pub to: Option<String>,
}

fn dates(pairs: &[(String, String)]) -> Result<(Option<time::Date>, Option<time::Date>), ApiError> {
    let from = query_param(pairs, "from")
        .map(|d| domain::date("from", d))
        .transpose()?;
    let to = query_param(pairs, "to")
        .map(|d| domain::date("to", d))
        .transpose()?;
    // `from` after `to` is an empty range: nothing matches it.
    Ok((from, to))
}

/// The caller's expenses (members) or the organization's (admins, owners).
#[utoipa::path(
    get,
    path = "/v1/expenses",
    params(ListQuery, PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page, newest first; a page may hold fewer than `limit` items when filtered", body = ExpenseList),
        (status = 400, description = "An invalid parameter, or one this route does not take; `field` names it"),
        (status = 403, description = "A member asked for someone else's expenses"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn list_expenses(
    State(store): State<Arc<ExpenseStore>>,
    auth: Authenticated,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Reply<axum::Json<ExpenseList>> {
    let p = auth.require(Role::Member)?;
    let pairs = query_params(
        query,
        &[
            "status",
            "category",
            "submitter",
            "from",
            "to",
            "limit",
            "cursor",
        ],
    )?;
    let (from, to) = dates(&pairs)?;
    let filter = Filter {
        status: query_param(&pairs, "status")
            .map(|s| Status::parse("status", s))
            .transpose()?,
        category: query_param(&pairs, "category")
            .map(|c| domain::text("category", c, 1, crate::domain::MAX_CATEGORY_CHARS))
            .transpose()?,
        submitter: query_param(&pairs, "submitter").map(str::to_owned),
        from,
        to,
    };
    let page = PageParams::parse(RawPageParams {
        limit: query_param(&pairs, "limit").map(str::to_owned),
        cursor: query_param(&pairs, "cursor").map(str::to_owned),
    })?;
    let (items, next_cursor) = store.list(p, filter, page.limit, page.cursor).await?;
    Ok(axum::Json(ExpenseList {
        items: items.iter().map(ExpenseView::from).collect(),
        next_cursor,
    }))
}

/// The parameters of a summary.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    /// Incurred on or after this date.
    #[param(schema_with = date_schema)]
    pub from: Option<String>,
    /// Incurred on or before this date.
    #[param(schema_with = date_schema)]
    pub to: Option<String>,
    /// `category` (default), `submitter`, `month` or `status`.
    #[param(schema_with = group_by_schema)]
    pub group_by: Option<String>,
}

fn group_by_schema() -> Object {
    one_of(["category", "submitter", "month", "status"]).build()
}

/// Exact totals per group and currency (members: their own; admins: the organization's).
#[utoipa::path(
    get,
    path = "/v1/expenses/summary",
    params(SummaryQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The groups", body = SummaryView),
        (status = 400, description = "An invalid parameter, or too many expenses in the range; `field` names it"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn summary(
    State(store): State<Arc<ExpenseStore>>,
    auth: Authenticated,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Reply<axum::Json<SummaryView>> {
    let p = auth.require(Role::Member)?;
    let pairs = query_params(query, &["from", "to", "group_by"])?;
    let (from, to) = dates(&pairs)?;
    let group_by = match query_param(&pairs, "group_by").unwrap_or("category") {
        "category" => GroupBy::Category,
        "submitter" => GroupBy::Submitter,
        "month" => GroupBy::Month,
        "status" => GroupBy::Status,
        _ => {
            return Err(ApiError::invalid(
                "group_by",
                "must be one of category, submitter, month, status",
            ));
        }
    };
    let filter = Filter {
        from,
        to,
        ..Filter::default()
    };
    let groups = store.summary(p, filter, group_by).await?;
    Ok(axum::Json(SummaryView {
        groups: groups
            .into_iter()
            .map(|g| GroupView {
                key: g.key,
                currency: g.currency.code().to_owned(),
                count: g.count,
                total: format_minor(g.total_minor, g.currency),
            })
            .collect(),
    }))
}

/// The parameters of an export.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// Incurred on or after this date.
    #[param(schema_with = date_schema)]
    pub from: Option<String>,
    /// Incurred on or before this date.
    #[param(schema_with = date_schema)]
    pub to: Option<String>,
}

/// Whether `Accept` admits `text/csv` (absent means anything).
fn accepts_csv(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return headers.get(header::ACCEPT).is_none();
    };
    accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let refused = parts.any(|p| {
            let p = p.trim().replace(' ', "");
            p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
        });
        !refused && matches!(media.as_str(), "text/csv" | "text/*" | "*/*")
    })
}

/// What the export stream sends next.
enum Chunk {
    /// The header and first page, then the page at the cursor if any.
    First(String, Option<String>),
    /// The page at this cursor.
    Page(String),
    /// Nothing more.
    Done,
}

/// The CSV columns, in order.
pub const CSV_HEADER: [&str; 12] = [
    "id",
    "submitter",
    "status",
    "incurred_on",
    "amount",
    "currency",
    "category",
    "merchant",
    "description",
    "receipts",
    "created_at",
    "updated_at",
];

fn csv_rows(out: &mut String, page: &[Expense]) {
    for e in page {
        let v = ExpenseView::from(e);
        let receipts = v.receipts.len().to_string();
        constellation_core::csv::write_row(
            out,
            &[
                &v.id,
                &v.submitter,
                &v.status,
                &v.incurred_on,
                &v.amount,
                &v.currency,
                &v.category,
                &v.merchant,
                &v.description,
                &receipts,
                &v.created_at,
                &v.updated_at,
            ],
        );
    }
}

/// The organization's expenses as RFC 4180 CSV (admins and owners), one
/// row per expense, streamed page by page; cells that a spreadsheet would
/// run as a formula are prefixed with `'`.
#[utoipa::path(
    get,
    path = "/v1/expenses/export",
    params(ExportQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The CSV", content_type = "text/csv", body = String),
        (status = 400, description = "An invalid parameter; `field` names it"),
        (status = 403, description = "Not an admin"),
        (status = 406, description = "`Accept` does not admit text/csv"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn export(
    State(store): State<Arc<ExpenseStore>>,
    auth: Authenticated,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Reply<Response> {
    let p = auth.require(Role::Admin)?.clone();
    let pairs = query_params(query, &["from", "to"])?;
    let (from, to) = dates(&pairs)?;
    if !accepts_csv(&headers) {
        return Err(ApiError::client(
            ProblemType::NotAcceptable,
            "this export is text/csv; send Accept: text/csv",
        ));
    }
    let filter = Filter {
        from,
        to,
        ..Filter::default()
    };
    // The first page is read before answering, so a storage failure is
    // still a proper 503; later pages stream, and a failure there ends the
    // body early (the client sees a truncated transfer, never a short file
    // that looks complete).
    let (first, cursor, read) = store.read_page(&p, filter.clone(), 500, None).await?;
    let mut head = String::new();
    constellation_core::csv::write_row(&mut head, &CSV_HEADER);
    csv_rows(&mut head, &first);
    let stream = futures::stream::unfold(
        (store, p, filter, Chunk::First(head, cursor), read),
        |(store, p, filter, next, mut read)| async move {
            let (chunk, then) = match next {
                Chunk::First(head, Some(c)) => (Ok(head), Chunk::Page(c)),
                Chunk::First(head, None) => (Ok(head), Chunk::Done),
                Chunk::Page(_) if read > MAX_SCAN => {
                    tracing::warn!(read, "expense export stopped at its read limit");
                    (
                        Err(std::io::Error::other(
                            "export too large; narrow from and to",
                        )),
                        Chunk::Done,
                    )
                }
                Chunk::Page(c) => match store.read_page(&p, filter.clone(), 500, Some(c)).await {
                    Ok((items, next, n)) => {
                        read += n;
                        let mut rows = String::new();
                        csv_rows(&mut rows, &items);
                        (Ok(rows), next.map_or(Chunk::Done, Chunk::Page))
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "expense export failed mid-stream");
                        (Err(std::io::Error::other("export failed")), Chunk::Done)
                    }
                },
                Chunk::Done => return None,
            };
            Some((chunk, (store, p, filter, then, read)))
        },
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"expenses.csv\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// An expense.
#[utoipa::path(
    get,
    path = "/v1/expenses/{id}",
    params(ExpensePath),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The expense", body = ExpenseView,
            headers(("ETag" = String, description = "The expense's entity tag"))),
        (status = 400, description = "Malformed id; `field` names it"),
        (status = 404, description = "No such expense the caller may see"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn get_expense(
    State(store): State<Arc<ExpenseStore>>,
    auth: Authenticated,
    PathId(id): PathId<ExpenseId>,
) -> Reply<Response> {
    let p = auth.require(Role::Member)?;
    let e = store.get(p, &id).await?;
    Ok(answer(StatusCode::OK, &e))
}

/// Edits a draft or rejected expense (its submitter); a rejected one returns to draft.
#[utoipa::path(
    patch,
    path = "/v1/expenses/{id}",
    params(ExpensePath, RequiredIfMatch),
    request_body = ExpenseForPatch,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The expense", body = ExpenseView,
            headers(("ETag" = String, description = "The new entity tag"))),
        (status = 400, description = "An invalid field, or a malformed body; `field` names it"),
        (status = 403, description = "Not the submitter"),
        (status = 404, description = "No such expense the caller may see"),
        (status = 409, description = "`invalid-transition`: not draft or rejected"),
        (status = 412, description = "`If-Match` does not match"),
        (status = 428, description = "`If-Match` is missing"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn patch_expense(
    State(store): State<Arc<ExpenseStore>>,
    auth: Authenticated,
    PathId(id): PathId<ExpenseId>,
    headers: HeaderMap,
    Json(body): Json<ExpenseForPatch>,
) -> Reply<Response> {
    let p = auth.require(Role::Member)?;
    let precondition = precondition(&headers)?;
    let patch = Patch {
        amount: body.amount,
        currency: body.currency,
        category: body.category,
        merchant: body.merchant,
        description: body.description,
        incurred_on: body.incurred_on,
    };
    let e = store.patch(p, &id, &precondition, &patch).await?;
    Ok(answer(StatusCode::OK, &e))
}

/// Deletes a draft (its submitter).
#[utoipa::path(
    delete,
    path = "/v1/expenses/{id}",
    params(ExpensePath, IfMatchHeader),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Malformed id or If-Match; `field` names it"),
        (status = 403, description = "Not the submitter"),
        (status = 404, description = "No such expense the caller may see"),
        (status = 409, description = "`invalid-transition`: not a draft"),
        (status = 412, description = "`If-Match` does not match"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn delete_expense(
    State(store): State<Arc<ExpenseStore>>,
    auth: Authenticated,
    PathId(id): PathId<ExpenseId>,
    headers: HeaderMap,
) -> Reply<StatusCode> {
    let p = auth.require(Role::Member)?;
    store.delete(p, &id, &precondition(&headers)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn move_along(
    store: &ExpenseStore,
    auth: &Authenticated,
    id: &ExpenseId,
    headers: &HeaderMap,
    transition: Transition,
    reason: Option<String>,
) -> Reply<Response> {
    let p = auth.require(Role::Member)?;
    let e = store
        .transition(p, id, transition, reason, &precondition(headers)?)
        .await?;
    Ok(answer(StatusCode::OK, &e))
}

/// Submits a draft (its submitter); 75 or more major units need a ready receipt.
#[utoipa::path(
    post,
    path = "/v1/expenses/{id}/submit",
    params(ExpensePath, IfMatchHeader),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Submitted", body = ExpenseView,
            headers(("ETag" = String, description = "The new entity tag"))),
        (status = 400, description = "Malformed id or If-Match; `field` names it"),
        (status = 403, description = "Not the submitter"),
        (status = 404, description = "No such expense the caller may see"),
        (status = 409, description = "`invalid-transition`: not a draft; `current_status` names its status"),
        (status = 412, description = "`If-Match` does not match"),
        (status = 422, description = "`receipt-required`: 75 or more and no ready receipt"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn submit(
    State(store): State<Arc<ExpenseStore>>,
    auth: Authenticated,
    PathId(id): PathId<ExpenseId>,
    headers: HeaderMap,
) -> Reply<Response> {
    move_along(&store, &auth, &id, &headers, Transition::Submit, None).await
}

/// Approves a submitted expense (admins and owners, never their own),
/// optionally with `{"reason"}` (1 to 500 characters), kept in its history.
#[utoipa::path(
    post,
    path = "/v1/expenses/{id}/approve",
    params(ExpensePath, IfMatchHeader),
    request_body(content = Option<ApprovalBody>, description = "Optional: a note kept in the history"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Approved", body = ExpenseView,
            headers(("ETag" = String, description = "The new entity tag"))),
        (status = 400, description = "Malformed id or If-Match; `field` names it"),
        (status = 403, description = "Not an admin, or one's own expense"),
        (status = 404, description = "No such expense the caller may see"),
        (status = 409, description = "`invalid-transition`: not submitted; `current_status` names its status"),
        (status = 412, description = "`If-Match` does not match"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn approve(
    State(store): State<Arc<ExpenseStore>>,
    auth: Authenticated,
    PathId(id): PathId<ExpenseId>,
    headers: HeaderMap,
    body: LimitedBody,
) -> Reply<Response> {
    let reason = if body.0.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let body: Option<ApprovalBody> = parse_json(&body.0)?;
        body.and_then(|b| b.reason)
            .as_deref()
            .map(domain::reason)
            .transpose()?
    };
    move_along(&store, &auth, &id, &headers, Transition::Approve, reason).await
}

/// Rejects a submitted expense with a reason (admins and owners, never their own).
#[utoipa::path(
    post,
    path = "/v1/expenses/{id}/reject",
    params(ExpensePath, IfMatchHeader),
    request_body = ReasonBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Rejected", body = ExpenseView,
            headers(("ETag" = String, description = "The new entity tag"))),
        (status = 400, description = "Invalid reason, or a malformed body; `field` names it"),
        (status = 403, description = "Not an admin, or one's own expense"),
        (status = 404, description = "No such expense the caller may see"),
        (status = 409, description = "`invalid-transition`: not submitted; `current_status` names its status"),
        (status = 412, description = "`If-Match` does not match"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn reject(
    State(store): State<Arc<ExpenseStore>>,
    auth: Authenticated,
    PathId(id): PathId<ExpenseId>,
    headers: HeaderMap,
    Json(body): Json<ReasonBody>,
) -> Reply<Response> {
    let reason = domain::reason(&body.reason)?;
    move_along(
        &store,
        &auth,
        &id,
        &headers,
        Transition::Reject,
        Some(reason),
    )
    .await
}

/// Marks an approved expense reimbursed (admins and owners; `Idempotency-Key` honoured).
#[utoipa::path(
    post,
    path = "/v1/expenses/{id}/reimburse",
    params(ExpensePath, IfMatchHeader),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Reimbursed", body = ExpenseView,
            headers(("ETag" = String, description = "The new entity tag"))),
        (status = 400, description = "Malformed id or If-Match; `field` names it"),
        (status = 403, description = "Not an admin"),
        (status = 404, description = "No such expense the caller may see"),
        (status = 409, description = "`invalid-transition`: not approved; `current_status` names its status"),
        (status = 412, description = "`If-Match` does not match"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn reimburse(
    State(store): State<Arc<ExpenseStore>>,
    auth: Authenticated,
    PathId(id): PathId<ExpenseId>,
    headers: HeaderMap,
) -> Reply<Response> {
    move_along(&store, &auth, &id, &headers, Transition::Reimburse, None).await
}

/// Adds a receipt: answers a pending media upload (the same body as
/// `POST /v1/media/uploads`), listed on the expense with its status.
#[utoipa::path(
    post,
    path = "/v1/expenses/{id}/receipts",
    params(ExpensePath),
    request_body = ReceiptForCreate,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The pending receipt and where to PUT its bytes", body = UploadView),
        (status = 400, description = "Invalid type, size or file name, too many receipts, or a malformed body; `field` names it"),
        (status = 403, description = "Not the submitter"),
        (status = 404, description = "No such expense the caller may see"),
        (status = 409, description = "`invalid-transition`: not draft or rejected"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn add_receipt(
    State(store): State<Arc<ExpenseStore>>,
    auth: Authenticated,
    PathId(id): PathId<ExpenseId>,
    Json(body): Json<ReceiptForCreate>,
) -> Reply<Response> {
    let p = auth.require(Role::Member)?;
    let view = store
        .add_receipt(p, &id, &body.content_type, body.size, &body.filename)
        .await?;
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(view),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_must_admit_csv() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                header::ACCEPT,
                HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("x")),
            );
            accepts_csv(&h)
        };
        assert!(accepts_csv(&HeaderMap::new()));
        assert!(with("text/csv"));
        assert!(with("application/json, text/csv;q=0.5"));
        assert!(with("*/*"));
        assert!(with("text/*"));
        assert!(!with("application/json"));
        assert!(!with("text/csv;q=0"));
    }
}
