//! The comms HTTP contract, mapped onto [`CommsStore`].
//!
//! Announcements are written by staff and above and read by whom they
//! address; every account has its own inbox and email preferences;
//! reminders are staff's; reports are admins'. Anything of another
//! organization answers 404.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use constellation_core::auth::Role;
use constellation_platform::{Clock, Table};
use constellation_web::extract::{PathId, query_param, query_params};
use constellation_web::openapi::{
    Conventions, IdempotentDef, PageQuery, TimeOrderedIdPath, id_link, openapi_route,
};
use constellation_web::pagination::RawPageParams;
use constellation_web::{
    ApiError, Authenticated, IdempotencyLayer, IdempotencyOptions, Json, PageParams,
};
use utoipa::{IntoParams, OpenApi};

use crate::domain::{self, Repeat};
use crate::store::CommsStore;
use crate::store::announce::{NewAnnouncement, NewReminder};

mod dto;

pub use dto::*;

type Reply<T> = Result<T, ApiError>;

/// The largest request body comms accepts. It holds the longest body the
/// OpenAPI document allows, written the longest way JSON can write it
/// (each character a 12-byte `\uXXXX\uXXXX` escape, which is how
/// `json.dumps` sends an emoji), with room to spare; `tests/openapi.rs`
/// sends that body to every route.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The comms routes (without the shared layers; see [`crate::app_with`]).
pub fn router(store: Arc<CommsStore>, table: Arc<dyn Table>, clock: Arc<dyn Clock>) -> Router {
    let idempotent = IdempotencyLayer::new(table, clock, IdempotencyOptions::optional());
    Router::new()
        .route(
            "/v1/comms/announcements",
            post(announce)
                .route_layer(idempotent.clone())
                .get(list_announcements),
        )
        .route(
            "/v1/comms/announcements/{id}",
            get(get_announcement).delete(retract),
        )
        .route("/v1/comms/notifications", get(list_notifications))
        .route("/v1/comms/notifications/{id}/read", post(read))
        .route("/v1/comms/notifications/read-all", post(read_all))
        .route(
            "/v1/comms/preferences",
            get(get_preferences).put(put_preferences),
        )
        .route(
            "/v1/comms/reminders",
            post(remind).route_layer(idempotent).get(list_reminders),
        )
        .route(
            "/v1/comms/reminders/{id}",
            axum::routing::delete(delete_reminder),
        )
        .route("/v1/comms/reports", get(list_reports))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(store)
        .merge(openapi_route("/v1/comms/openapi.json", ApiDoc::openapi))
}

/// The comms part of the OpenAPI document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Constellation comms",
        description = "Announcements, inboxes, email preferences, reminders and daily reports."
    ),
    paths(
        announce, list_announcements, get_announcement, retract, list_notifications, read,
        read_all, get_preferences, put_preferences, remind, list_reminders, delete_reminder,
        list_reports
    ),
    components(schemas(
        AnnouncementForCreate, AnnouncementView, AnnouncementList, AttachmentView,
        NotificationView, NotificationList, ReadAllView, PreferencesBody, EmailPreferences,
        ReminderForCreate, ReminderView, ReminderList, ReportView, ReportList
    )),
    modifiers(&CONVENTIONS)
)]
pub struct ApiDoc;

const CONVENTIONS: Conventions = Conventions {
    service: crate::NAME,
    links: &[
        id_link("announce", 201, "get_announcement"),
        id_link("announce", 201, "retract"),
        id_link("remind", 201, "delete_reminder"),
    ],
    idempotent: &[
        IdempotentDef {
            operation: "announce",
            required: false,
        },
        IdempotentDef {
            operation: "remind",
            required: false,
        },
    ],
};

fn created(location: String, body: impl serde::Serialize) -> Response {
    let mut response = (StatusCode::CREATED, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

fn page(pairs: &[(String, String)]) -> Result<PageParams, ApiError> {
    PageParams::parse(RawPageParams {
        limit: query_param(pairs, "limit").map(str::to_owned),
        cursor: query_param(pairs, "cursor").map(str::to_owned),
    })
}

/// Announces (staff+; `Idempotency-Key` honoured): published now, or at
/// `publish_at`, to every enabled account the audience addresses.
#[utoipa::path(
    post,
    path = "/v1/comms/announcements",
    request_body = AnnouncementForCreate,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The announcement, `published` or `scheduled`", body = AnnouncementView,
            headers(("Location" = String, description = "The announcement's URL"))),
        (status = 400, description = "An invalid field (an attachment that is not a ready attachment of the organization, a past `publish_at`); `field` names it"),
        (status = 403, description = "Members cannot announce"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn announce(
    State(store): State<Arc<CommsStore>>,
    auth: Authenticated,
    Json(body): Json<AnnouncementForCreate>,
) -> Reply<Response> {
    let p = auth.require(Role::Staff)?;
    let mut attachments: Vec<String> = Vec::new();
    if body.attachments.len() > domain::MAX_ATTACHMENTS {
        return Err(ApiError::invalid(
            "attachments",
            format!("at most {} attachments", domain::MAX_ATTACHMENTS),
        ));
    }
    for a in &body.attachments {
        if !constellation_core::ids::is_time_ordered_id(a) {
            return Err(ApiError::invalid("attachments", "must hold media ids"));
        }
        if !attachments.contains(a) {
            attachments.push(a.clone());
        }
    }
    let new = NewAnnouncement {
        title: domain::title("title", &body.title)?,
        body: domain::body("body", &body.body, domain::MAX_BODY_CHARS)?,
        audience: audience(&body.audience)?,
        attachments,
        publish_at: body
            .publish_at
            .as_deref()
            .map(|t| domain::future("publish_at", t, store.now()))
            .transpose()?,
    };
    let a = store.announce(p, new).await?;
    Ok(created(
        format!("/v1/comms/announcements/{}", a.id),
        AnnouncementView::of(&a, &[]),
    ))
}

/// The announcements the caller may see, newest first: staff and above
/// all of them, members the published ones addressed to them.
#[utoipa::path(
    get,
    path = "/v1/comms/announcements",
    params(PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page; it may hold fewer than `limit` items", body = AnnouncementList),
        (status = 400, description = "An invalid parameter; `field` names it"),
    )
)]
async fn list_announcements(
    State(store): State<Arc<CommsStore>>,
    auth: Authenticated,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Reply<axum::Json<AnnouncementList>> {
    let p = auth.require(Role::Member)?;
    let pairs = query_params(query, &["limit", "cursor"])?;
    let page = page(&pairs)?;
    let (items, next_cursor) = store.announcements(p, page.limit, page.cursor).await?;
    Ok(axum::Json(AnnouncementList {
        items: items.iter().map(|a| AnnouncementView::of(a, &[])).collect(),
        next_cursor,
    }))
}

/// One announcement, with 5-minute download URLs of its attachments.
#[utoipa::path(
    get,
    path = "/v1/comms/announcements/{id}",
    params(TimeOrderedIdPath),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The announcement", body = AnnouncementView),
        (status = 400, description = "The id is not one as issued; `field` names it"),
        (status = 404, description = "No such announcement the caller may see"),
    )
)]
async fn get_announcement(
    State(store): State<Arc<CommsStore>>,
    auth: Authenticated,
    PathId(id): PathId<String>,
) -> Reply<axum::Json<AnnouncementView>> {
    let p = auth.require(Role::Member)?;
    let (a, links) = store.announcement(p, &id).await?;
    Ok(axum::Json(AnnouncementView::of(&a, &links)))
}

/// Retracts an announcement (staff+): gone for everyone, its delivery
/// stops, and its unread notifications are removed.
#[utoipa::path(
    delete,
    path = "/v1/comms/announcements/{id}",
    params(TimeOrderedIdPath),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Retracted"),
        (status = 400, description = "The id is not one as issued; `field` names it"),
        (status = 403, description = "Members cannot retract"),
        (status = 404, description = "No such announcement"),
    )
)]
async fn retract(
    State(store): State<Arc<CommsStore>>,
    auth: Authenticated,
    PathId(id): PathId<String>,
) -> Reply<StatusCode> {
    let p = auth.require(Role::Staff)?;
    store.retract(p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The parameters of the inbox.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InboxQuery {
    /// `true`: only unread notifications.
    pub unread: Option<bool>,
}

/// The caller's notifications, newest first, with their unread count.
#[utoipa::path(
    get,
    path = "/v1/comms/notifications",
    params(InboxQuery, PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page", body = NotificationList),
        (status = 400, description = "An invalid parameter; `field` names it"),
    )
)]
async fn list_notifications(
    State(store): State<Arc<CommsStore>>,
    auth: Authenticated,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Reply<axum::Json<NotificationList>> {
    let p = auth.require(Role::Member)?;
    let pairs = query_params(query, &["unread", "limit", "cursor"])?;
    let unread = match query_param(&pairs, "unread") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::invalid("unread", "must be true or false")),
    };
    let page = page(&pairs)?;
    let account = p.account.as_str();
    let (items, next_cursor) = store
        .notifications(&p.org, account, unread, page.limit, page.cursor)
        .await?;
    Ok(axum::Json(NotificationList {
        items: items.iter().map(NotificationView::from).collect(),
        unread_count: store.unread_count(&p.org, account).await?,
        next_cursor,
    }))
}

/// Marks one of the caller's notifications read.
#[utoipa::path(
    post,
    path = "/v1/comms/notifications/{id}/read",
    params(TimeOrderedIdPath),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The notification, read", body = NotificationView),
        (status = 400, description = "The id is not one as issued; `field` names it"),
        (status = 404, description = "No such notification in the caller's inbox"),
    )
)]
async fn read(
    State(store): State<Arc<CommsStore>>,
    auth: Authenticated,
    PathId(id): PathId<String>,
) -> Reply<axum::Json<NotificationView>> {
    let p = auth.require(Role::Member)?;
    let n = store.mark_read(&p.org, p.account.as_str(), &id).await?;
    Ok(axum::Json(NotificationView::from(&n)))
}

/// Marks every notification of the caller read.
#[utoipa::path(
    post,
    path = "/v1/comms/notifications/read-all",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "How many were marked", body = ReadAllView),
    )
)]
async fn read_all(
    State(store): State<Arc<CommsStore>>,
    auth: Authenticated,
) -> Reply<axum::Json<ReadAllView>> {
    let p = auth.require(Role::Member)?;
    let account = p.account.as_str();
    let marked = store.mark_all_read(&p.org, account).await?;
    Ok(axum::Json(ReadAllView {
        marked,
        unread_count: store.unread_count(&p.org, account).await?,
    }))
}

/// The caller's email preferences (all off until set).
#[utoipa::path(
    get,
    path = "/v1/comms/preferences",
    security(("bearer" = [])),
    responses((status = 200, description = "The preferences", body = PreferencesBody))
)]
async fn get_preferences(
    State(store): State<Arc<CommsStore>>,
    auth: Authenticated,
) -> Reply<axum::Json<PreferencesBody>> {
    let p = auth.require(Role::Member)?;
    let prefs = store.preferences(&p.org, p.account.as_str()).await?;
    Ok(axum::Json(prefs.into()))
}

/// Replaces the caller's email preferences (every category is required).
#[utoipa::path(
    put,
    path = "/v1/comms/preferences",
    request_body = PreferencesBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The preferences as stored", body = PreferencesBody),
        (status = 400, description = "A missing or invalid field; `field` names it"),
    )
)]
async fn put_preferences(
    State(store): State<Arc<CommsStore>>,
    auth: Authenticated,
    Json(body): Json<PreferencesBody>,
) -> Reply<axum::Json<PreferencesBody>> {
    let p = auth.require(Role::Member)?;
    let prefs = store
        .set_preferences(&p.org, p.account.as_str(), body.into())
        .await?;
    Ok(axum::Json(prefs.into()))
}

/// Sets a reminder (staff+; `Idempotency-Key` honoured).
#[utoipa::path(
    post,
    path = "/v1/comms/reminders",
    request_body = ReminderForCreate,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The reminder", body = ReminderView,
            headers(("Location" = String, description = "The reminder's URL"))),
        (status = 400, description = "An invalid field (an account not of the organization, a past `remind_at`); `field` names it"),
        (status = 403, description = "Members cannot set reminders"),
    )
)]
async fn remind(
    State(store): State<Arc<CommsStore>>,
    auth: Authenticated,
    Json(body): Json<ReminderForCreate>,
) -> Reply<Response> {
    let p = auth.require(Role::Staff)?;
    let new = NewReminder {
        message: domain::body("message", &body.message, domain::MAX_MESSAGE_CHARS)?,
        remind_at: domain::future("remind_at", &body.remind_at, store.now())?,
        to: recipients(&body.to)?,
        repeat: Repeat::parse("repeat", body.repeat.as_deref().unwrap_or("none"))?,
    };
    let r = store.remind(p, new).await?;
    Ok(created(
        format!("/v1/comms/reminders/{}", r.id),
        ReminderView::from(&r),
    ))
}

/// The organization's reminders (staff+), newest first.
#[utoipa::path(
    get,
    path = "/v1/comms/reminders",
    params(PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page", body = ReminderList),
        (status = 400, description = "An invalid parameter, or one this route does not take; `field` names it"),
        (status = 403, description = "Members cannot list reminders"),
    )
)]
async fn list_reminders(
    State(store): State<Arc<CommsStore>>,
    auth: Authenticated,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Reply<axum::Json<ReminderList>> {
    let p = auth.require(Role::Staff)?;
    let pairs = query_params(query, &["limit", "cursor"])?;
    let page = page(&pairs)?;
    let (items, next_cursor) = store.reminders(p, page.limit, page.cursor).await?;
    Ok(axum::Json(ReminderList {
        items: items.iter().map(ReminderView::from).collect(),
        next_cursor,
    }))
}

/// Deletes a reminder (staff+).
#[utoipa::path(
    delete,
    path = "/v1/comms/reminders/{id}",
    params(TimeOrderedIdPath),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The id is not one as issued; `field` names it"),
        (status = 403, description = "Members cannot delete reminders"),
        (status = 404, description = "No such reminder"),
    )
)]
async fn delete_reminder(
    State(store): State<Arc<CommsStore>>,
    auth: Authenticated,
    PathId(id): PathId<String>,
) -> Reply<StatusCode> {
    let p = auth.require(Role::Staff)?;
    store.delete_reminder(p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The range of a report listing.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// From this day (`YYYY-MM-DD`), inclusive.
    #[param(format = Date)]
    pub from: Option<String>,
    /// To this day, inclusive.
    #[param(format = Date)]
    pub to: Option<String>,
}

/// The organization's daily reports (admin+), newest first, with 5-minute CSV URLs.
#[utoipa::path(
    get,
    path = "/v1/comms/reports",
    params(ReportQuery, PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page", body = ReportList),
        (status = 400, description = "An invalid parameter; `field` names it"),
        (status = 403, description = "Only admins and owners read reports"),
    )
)]
async fn list_reports(
    State(store): State<Arc<CommsStore>>,
    auth: Authenticated,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Reply<axum::Json<ReportList>> {
    let p = auth.require(Role::Admin)?;
    let pairs = query_params(query, &["from", "to", "limit", "cursor"])?;
    let from = query_param(&pairs, "from")
        .map(|d| domain::date("from", d))
        .transpose()?;
    let to = query_param(&pairs, "to")
        .map(|d| domain::date("to", d))
        .transpose()?;
    let page = page(&pairs)?;
    let (items, next_cursor) = store.reports(p, from, to, page.limit, page.cursor).await?;
    Ok(axum::Json(ReportList {
        items: items.iter().map(ReportView::from).collect(),
        next_cursor,
    }))
}
