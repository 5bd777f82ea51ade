//! The kv HTTP contract, mapped onto [`KvStore`].
//!
//! Handlers are thin: check the caller's token and role, parse the path,
//! headers and query into domain types (answering 400 naming the input at
//! fault), call one store method with the caller's organization, and render
//! the result. Every route is under `/v1/kv`, as API Gateway routes it.
//! Namespaces belong to organizations: the same name in two organizations is
//! two stores, and another organization's keys answer 404.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use constellation_core::auth::Role;
use constellation_core::kv::{
    ETAG_HEX_DIGITS, IF_NONE_MATCH_WRITE_PATTERN, IfNoneMatch, Key, KeyPrefix, MAX_KEY_BYTES,
    MAX_TTL_SECONDS, MAX_VALUE_BYTES, MIN_TTL_SECONDS, Namespace, Precondition, Ttl,
    etag_list_pattern, key_text_pattern, namespace_pattern,
};
use constellation_core::media::MediaType;
use constellation_web::error::ProblemType;
use constellation_web::extract::{query_param, query_params};
use constellation_web::openapi::{Conventions, LinkDef, PageQuery, integer, openapi_route, text};
use constellation_web::pagination::RawPageParams;
use constellation_web::{ApiError, Authenticated, LimitedBody, PageParams};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::openapi::schema::Object;
use utoipa::{IntoParams, OpenApi, PartialSchema, ToSchema};

use crate::store::{Entry, EntryForPut, KvError, KvStore};

/// The kv routes over `store` (without the shared layers; see [`crate::app`]).
///
/// The key is the rest of the path, so a key may contain `/` whether or not
/// the client percent-encodes it: API Gateway decodes `%2F` before the
/// function sees the path, and both spellings must name the same key.
pub fn router(store: Arc<KvStore>) -> Router {
    Router::new()
        .route("/v1/kv/{namespace}", get(list_entries))
        .route(
            "/v1/kv/{namespace}/{*key}",
            get(get_entry).put(put_entry).delete(delete_entry),
        )
        .layer(DefaultBodyLimit::max(MAX_VALUE_BYTES))
        .with_state(store)
        .merge(openapi_route("/v1/kv/openapi.json", ApiDoc::openapi))
}

/// The kv part of the OpenAPI document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Constellation kv",
        description = "Namespaced key-value store with versions, compare-and-swap, TTL and change events."
    ),
    paths(put_entry, get_entry, delete_entry, list_entries),
    components(schemas(EntryView, EntryList, EtagValue)),
    modifiers(&CONVENTIONS)
)]
pub struct ApiDoc;

/// The shared conventions, and the links that chain a write to what can
/// follow it: read, list, delete, or compare-and-swap with its `ETag`.
const CONVENTIONS: Conventions = Conventions {
    service: crate::NAME,
    links: &[
        entry_link(201, "get_entry", None),
        entry_link(200, "get_entry", None),
        entry_link(201, "delete_entry", Some("If-Match")),
        entry_link(200, "delete_entry", Some("If-Match")),
        entry_link(201, "put_entry", Some("If-Match")),
        entry_link(200, "put_entry", Some("If-Match")),
        LinkDef {
            from: "put_entry",
            status: 201,
            to: "list_entries",
            parameters: &[("namespace", "$request.path.namespace")],
            body: &[],
        },
    ],
    idempotent: &[],
};

/// After a write answered `status`, call `to` on the same key, with the
/// answer's `ETag` in `header` if given.
const fn entry_link(status: u16, to: &'static str, header: Option<&'static str>) -> LinkDef {
    LinkDef {
        from: "put_entry",
        status,
        to,
        parameters: match header {
            Some(_) => &[
                ("namespace", "$request.path.namespace"),
                ("key", "$request.path.key"),
                ("header.If-Match", "$response.header.ETag"),
            ],
            None => &[
                ("namespace", "$request.path.namespace"),
                ("key", "$request.path.key"),
            ],
        },
        body: &[],
    }
}

// ---------------------------------------------------------------------------
// The documented inputs, with the constraints the parsers in
// `constellation_core::kv` enforce, built from the same constants.

fn namespace_schema() -> Object {
    text()
        .pattern(Some(namespace_pattern()))
        .description(Some("The namespace"))
        .examples(["settings"])
        .build()
}

fn key_schema() -> Object {
    text()
        .pattern(Some(key_text_pattern()))
        .min_length(Some(1))
        .max_length(Some(MAX_KEY_BYTES))
        .description(Some(format!(
            "The key: 1 to {MAX_KEY_BYTES} bytes of UTF-8 without control characters; it may contain `/`, percent-encoded or not"
        )))
        .examples(["theme/dark"])
        .build()
}

fn prefix_schema() -> Object {
    text()
        .pattern(Some(key_text_pattern()))
        .max_length(Some(MAX_KEY_BYTES))
        .description(Some(format!(
            "Only keys starting with this: up to {MAX_KEY_BYTES} bytes, no control characters"
        )))
        .examples(["theme/"])
        .build()
}

fn ttl_schema() -> Object {
    integer(MIN_TTL_SECONDS, MAX_TTL_SECONDS)
        .description(Some("Seconds until the value expires (at most one year)"))
        .examples([60])
        .build()
}

fn if_match_schema() -> Object {
    text()
        .pattern(Some(etag_list_pattern()))
        .description(Some(
            "Compare-and-swap: `*` (the key exists) or a list of quoted etags, compared strongly \
             (a `W/` tag never matches)",
        ))
        .examples(["*"])
        .build()
}

fn if_none_match_write_schema() -> Object {
    text()
        .pattern(Some(IF_NONE_MATCH_WRITE_PATTERN))
        .description(Some(
            "`*`: only if the key does not exist (with `If-Match` too, never: 412)",
        ))
        .examples(["*"])
        .build()
}

fn if_none_match_read_schema() -> Object {
    text()
        .pattern(Some(etag_list_pattern()))
        .description(Some(
            "304 when `*` or one of these etags matches (weak comparison: `W/` tags match too)",
        ))
        .build()
}

fn etag_schema() -> Object {
    text()
        .pattern(Some(format!("^\"[0-9a-f]{{{ETAG_HEX_DIGITS}}}\"$")))
        .description(Some("Quoted entity tag; changes on every write"))
        .build()
}

/// The `ETag` header's value, for the documented response headers.
#[derive(Debug)]
struct EtagValue;

impl PartialSchema for EtagValue {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        etag_schema().into()
    }
}

impl ToSchema for EtagValue {
    fn name() -> std::borrow::Cow<'static, str> {
        "Etag".into()
    }
}

/// `{namespace}` and `{key}`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct EntryPathDoc {
    #[param(schema_with = namespace_schema)]
    namespace: String,
    #[param(schema_with = key_schema)]
    key: String,
}

/// `{namespace}`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct NamespacePathDoc {
    #[param(schema_with = namespace_schema)]
    namespace: String,
}

/// The query of a write.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct PutQueryDoc {
    #[param(schema_with = ttl_schema)]
    ttl: Option<u64>,
}

/// The query of a listing, besides `limit` and `cursor`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct ListQueryDoc {
    #[param(schema_with = prefix_schema)]
    prefix: Option<String>,
}

/// The conditional headers of a write.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct WriteHeadersDoc {
    #[param(rename = "If-Match", schema_with = if_match_schema)]
    if_match: Option<String>,
    #[param(rename = "If-None-Match", schema_with = if_none_match_write_schema)]
    if_none_match: Option<String>,
}

/// The conditional header of a read.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct ReadHeadersDoc {
    #[param(rename = "If-None-Match", schema_with = if_none_match_read_schema)]
    if_none_match: Option<String>,
}

/// Members read; staff and above write.
const READ: Role = Role::Member;
/// See [`READ`].
const WRITE: Role = Role::Staff;

/// `{namespace}/{key}` parsed into domain types.
#[derive(Debug)]
struct EntryPath(Namespace, Key);

impl<S: Send + Sync> FromRequestParts<S> for EntryPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((ns, key)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::invalid("key", "is not valid percent-encoded UTF-8"))?;
        Ok(Self(Namespace::parse(&ns)?, Key::parse(&key)?))
    }
}

/// Entry metadata as the API returns it.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntryView {
    /// Namespace.
    pub namespace: String,
    /// Key.
    pub key: String,
    /// Quoted entity tag; changes on every write.
    #[schema(schema_with = etag_schema)]
    pub etag: String,
    /// 1 on creation, +1 on every write.
    #[schema(minimum = 1)]
    pub version: u64,
    /// The stored media type.
    pub content_type: String,
    /// Value size in bytes.
    pub size: u64,
    /// Last write (RFC 3339).
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// Expiry (RFC 3339), or null without TTL.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

impl From<&Entry> for EntryView {
    fn from(e: &Entry) -> Self {
        let fmt = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        Self {
            namespace: e.namespace.to_string(),
            key: e.key.to_string(),
            etag: e.etag.quoted(),
            version: e.version,
            content_type: e.content_type.clone(),
            size: e.size,
            updated_at: fmt(e.updated_at),
            expires_at: e.expires_at.map(fmt),
        }
    }
}

/// One page of a listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntryList {
    /// Entries in ascending byte order of key.
    pub items: Vec<EntryView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

impl From<KvError> for ApiError {
    fn from(e: KvError) -> Self {
        match e {
            KvError::NotFound => ApiError::not_found("no such key"),
            KvError::PreconditionFailed => ApiError::client(
                ProblemType::PreconditionFailed,
                "the key's current state does not match If-Match / If-None-Match",
            ),
            KvError::Contention => ApiError::client(
                ProblemType::Conflict,
                "the key is being written concurrently; retry",
            ),
            KvError::Store(e) => e.into(),
        }
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<Option<&'a str>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::invalid(name, "must be visible ASCII"))
        })
        .transpose()
}

fn content_type(headers: &HeaderMap) -> Result<MediaType, ApiError> {
    match header_str(headers, "content-type")? {
        None => Ok(MediaType::parse(
            "Content-Type",
            "application/octet-stream",
        )?),
        Some(ct) => Ok(MediaType::parse("Content-Type", ct)?),
    }
}

fn http_date(t: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(&fmt)
        .unwrap_or_default()
}

fn etag_header(e: &Entry) -> (header::HeaderName, HeaderValue) {
    (
        header::ETAG,
        HeaderValue::from_str(&e.etag.quoted())
            .unwrap_or_else(|_| HeaderValue::from_static("\"\"")),
    )
}

/// Media types that a browser displays inertly (as text, an image, or a
/// download), so a value of one of them may be served inline.
///
/// A stored value is bytes a client chose, with a media type the client
/// chose, served from the API's own origin: served as `text/html` or
/// `image/svg+xml` it would run the writer's script with every reader's
/// origin (stored XSS). So every value read carries
/// `X-Content-Type-Options: nosniff` (a browser never upgrades `text/plain`
/// into HTML by sniffing) and `Content-Security-Policy: sandbox` (anything
/// rendered anyway gets an opaque origin and no script), and every type
/// *not* on this list also gets `Content-Disposition: attachment`, so a
/// browser downloads it instead of rendering it. It is an allow list so that
/// types nobody thought of — `text/html`, `application/xhtml+xml`,
/// `image/svg+xml`, `text/xml`, `application/xml`, `application/pdf`,
/// `text/javascript`, `multipart/*`, anything unknown — are downloaded.
/// Compared on the essence (before any `;` parameters), case-insensitively.
pub const INLINE_MEDIA_TYPES: &[&str] = &[
    "text/plain",
    "text/csv",
    "application/json",
    "application/octet-stream",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/avif",
];

/// Whether a value of `content_type` may be shown inline (see [`INLINE_MEDIA_TYPES`]).
pub fn served_inline(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    INLINE_MEDIA_TYPES
        .iter()
        .any(|safe| safe.eq_ignore_ascii_case(essence))
}

/// The headers that keep a browser from running a stored value (see
/// [`INLINE_MEDIA_TYPES`]).
fn value_safety_headers(headers: &mut HeaderMap, content_type: &str) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    if !served_inline(content_type) {
        headers.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment"),
        );
    }
}

/// Creates or replaces a value.
#[utoipa::path(
    put,
    path = "/v1/kv/{namespace}/{key}",
    params(EntryPathDoc, PutQueryDoc, WriteHeadersDoc),
    request_body(
        content = Option<serde_json::Value>,
        description = "The value: any bytes, at most 256 KiB, stored with the request's \
                       Content-Type (a media type of at most 255 characters; \
                       application/octet-stream without one)",
        content_type = "*/*"
    ),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = EntryView,
            headers(("ETag" = EtagValue, description = "The new entity tag"))),
        (status = 200, description = "Replaced", body = EntryView,
            headers(("ETag" = EtagValue, description = "The new entity tag"))),
        (status = 400, description = "Invalid namespace, key, ttl, If-Match, If-None-Match or Content-Type; `field` names it"),
        (status = 403, description = "Writing needs the staff role or higher"),
        (status = 404, description = "The key is empty: there is no such route"),
        (status = 409, description = "The key is being written concurrently; retry"),
        (status = 412, description = "If-Match or If-None-Match did not hold"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn put_entry(
    State(store): State<Arc<KvStore>>,
    auth: Authenticated,
    EntryPath(ns, key): EntryPath,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
    body: Result<LimitedBody, ApiError>,
) -> Result<Response, ApiError> {
    let org = &auth.require(WRITE)?.org;
    let pairs = query_params(query, &["ttl"])?;
    let ttl = query_param(&pairs, "ttl").map(Ttl::parse).transpose()?;
    let precondition = Precondition::from_headers(
        header_str(&headers, "if-match")?,
        header_str(&headers, "if-none-match")?,
    )?;
    let content_type = content_type(&headers)?;
    let LimitedBody(value) = body.map_err(|e| match e.problem() {
        ProblemType::PayloadTooLarge => ApiError::Client {
            problem: ProblemType::PayloadTooLarge,
            detail: format!("value: is larger than {MAX_VALUE_BYTES} bytes"),
            field: Some("value".into()),
        },
        _ => e,
    })?;
    let put = EntryForPut {
        value,
        content_type: content_type.to_string(),
        ttl,
        precondition,
    };
    let (entry, created) = store.put(org, &ns, &key, put).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        [etag_header(&entry)],
        axum::Json(EntryView::from(&entry)),
    )
        .into_response())
}

/// Reads a value.
#[utoipa::path(
    get,
    path = "/v1/kv/{namespace}/{key}",
    params(EntryPathDoc, ReadHeadersDoc),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The stored bytes with their Content-Type; always `X-Content-Type-Options: nosniff` and `Content-Security-Policy: sandbox`, and `Content-Disposition: attachment` unless the type is text/plain, text/csv, application/json, application/octet-stream or a PNG, JPEG, GIF, WebP or AVIF image",
            body = serde_json::Value, content_type = "*/*",
            headers(
                ("ETag" = EtagValue, description = "The entity tag"),
                ("Last-Modified" = String, description = "The last write, as an HTTP date"),
                ("Cache-Control" = String, description = "`private, no-cache`"),
                ("X-Content-Type-Options" = String, description = "`nosniff`"),
                ("Content-Security-Policy" = String, description = "`sandbox`"),
                ("Content-Disposition" = String, description = "`attachment` for types a browser should not render"),
            )),
        (status = 304, description = "Not modified: If-None-Match matched",
            headers(
                ("ETag" = EtagValue, description = "The entity tag"),
                ("Last-Modified" = String, description = "The last write, as an HTTP date"),
            )),
        (status = 400, description = "Invalid namespace, key or If-None-Match; `field` names it"),
        (status = 404, description = "No such key: absent, expired, or the key is empty"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn get_entry(
    State(store): State<Arc<KvStore>>,
    auth: Authenticated,
    EntryPath(ns, key): EntryPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let org = &auth.require(READ)?.org;
    let if_none_match = header_str(&headers, "if-none-match")?
        .map(IfNoneMatch::parse)
        .transpose()?;
    let entry = store.get(org, &ns, &key).await?;
    let mut common = HeaderMap::new();
    let (name, value) = etag_header(&entry);
    common.insert(name, value);
    common.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    if let Ok(v) = HeaderValue::from_str(&http_date(entry.updated_at)) {
        common.insert(header::LAST_MODIFIED, v);
    }
    value_safety_headers(&mut common, &entry.content_type);
    if if_none_match.is_some_and(|inm| inm.matches(&entry.etag)) {
        return Ok((StatusCode::NOT_MODIFIED, common).into_response());
    }
    if let Ok(v) = HeaderValue::from_str(&entry.content_type) {
        common.insert(header::CONTENT_TYPE, v);
    }
    Ok((StatusCode::OK, common, entry.value.unwrap_or_default()).into_response())
}

/// Deletes a value.
#[utoipa::path(
    delete,
    path = "/v1/kv/{namespace}/{key}",
    params(EntryPathDoc, WriteHeadersDoc),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid namespace, key, If-Match or If-None-Match; `field` names it"),
        (status = 403, description = "Deleting needs the staff role or higher"),
        (status = 404, description = "No such key: absent, expired, or the key is empty"),
        (status = 409, description = "The key is being written concurrently; retry"),
        (status = 412, description = "If-Match or If-None-Match did not hold"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn delete_entry(
    State(store): State<Arc<KvStore>>,
    auth: Authenticated,
    EntryPath(ns, key): EntryPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let org = &auth.require(WRITE)?.org;
    let precondition = Precondition::from_headers(
        header_str(&headers, "if-match")?,
        header_str(&headers, "if-none-match")?,
    )?;
    store.delete(org, &ns, &key, &precondition).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Lists a namespace's keys with their metadata.
#[utoipa::path(
    get,
    path = "/v1/kv/{namespace}",
    params(NamespacePathDoc, ListQueryDoc, PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page", body = EntryList),
        (status = 400, description = "Invalid namespace, prefix, limit or cursor, or a parameter this route does not take; `field` names it"),
        (status = 404, description = "The namespace is empty: there is no such route"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn list_entries(
    State(store): State<Arc<KvStore>>,
    auth: Authenticated,
    Path(ns): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<axum::Json<EntryList>, ApiError> {
    let org = &auth.require(READ)?.org;
    let ns = Namespace::parse(&ns)?;
    let pairs = query_params(query, &["prefix", "limit", "cursor"])?;
    let prefix = KeyPrefix::parse(query_param(&pairs, "prefix").unwrap_or(""))?;
    let page = PageParams::parse(RawPageParams {
        limit: query_param(&pairs, "limit").map(str::to_owned),
        cursor: query_param(&pairs, "cursor").map(str::to_owned),
    })?;
    let (entries, next_cursor) = store
        .list(org, &ns, &prefix, page.limit, page.cursor)
        .await?;
    Ok(axum::Json(EntryList {
        items: entries.iter().map(EntryView::from).collect(),
        next_cursor,
    }))
}
