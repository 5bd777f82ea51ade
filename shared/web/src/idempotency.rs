//! The `Idempotency-Key` layer: a client that retries a non-idempotent
//! request (a POST that creates or changes something) with the same key gets
//! the first response again instead of a second effect.
//!
//! One layer, [`IdempotencyLayer`], put on the routes that want it (with
//! `MethodRouter::layer` or `Router::route_layer`, so the route template is
//! known). Its contract, which clients depend on:
//!
//! - **The key** is the `Idempotency-Key` header: 1 to 255 characters from
//!   `!` to `~` (printable ASCII without spaces: keys are machine-made, UUIDs
//!   or random tokens, and a space invites proxies and clients to trim or
//!   fold differently). Anything else, or the header twice, is a 400 naming
//!   the header. Without the header the request runs as if the layer were not
//!   there, unless the route requires a key ([`IdempotencyOptions::required`]):
//!   then 428.
//! - **Scope**: the organization and account of the verified access token,
//!   the method, the route template (`/v1/orders/{id}/cancel`) and the key.
//!   A key with a header needs a valid token (401 otherwise); two accounts
//!   never see each other's responses.
//! - **Fingerprint**: SHA-256 over the method, route, actual path, query,
//!   `Content-Type` and body. The body is read within the route's
//!   `DefaultBodyLimit` (413 past it), never unbounded. The same key with a
//!   different fingerprint is a 422.
//! - **First request** records "in progress" with a conditional put (the key
//!   must not exist), so of two concurrent requests exactly one runs the
//!   handler; the other gets a 409 with `Retry-After: 1`. An "in progress"
//!   record older than the lock timeout (60 s; its handler crashed) is taken
//!   over by the next retry, conditionally on its version.
//! - **Completion**: a successful response (2xx or 3xx) is stored with its
//!   status, its headers but the per-response
//!   ones (`Date`, `X-Request-Id`, `Set-Cookie`, hop-by-hop headers) and its
//!   body, for [`IdempotencyOptions::retention`] (24 h) from then; every retry
//!   in that time gets it back with `Idempotent-Replayed: true` and the
//!   handler does not run. After that, the key is new again.
//! - **Failures do not poison the key**: a 4xx (the client may correct the
//!   request and send it again with the same key), a 5xx, a panic, a dropped
//!   (cancelled) request, or a body that fails to stream removes the record
//!   (only if it is still this request's), so a retry runs the handler again.
//! - **Large responses**: a body over [`MAX_STORED_BODY_BYTES`] (300 KiB, what
//!   a table item's payload holds) is answered but not stored: the record is
//!   removed and a warning logged, so a retry runs the handler again. Routes
//!   whose answers can be that large should not rely on this layer.
//! - **Storage failures** answer 503 with `Retry-After` before the handler
//!   runs. After it ran, a failure to store the response is logged and the
//!   response is still sent (the effect happened); the "in progress" record
//!   then blocks retries until the lock timeout and is taken over after it.
//!
//! Put it on each non-idempotent route, after the route's method (so it does
//! not wrap the 405 fallback), inside `with_auth` and `service`:
//!
//! ```
//! use std::sync::Arc;
//! use axum::{Router, routing::post};
//! use constellation_platform::{Clock, Table};
//! use constellation_web::{IdempotencyLayer, IdempotencyOptions};
//!
//! fn routes(table: Arc<dyn Table>, clock: Arc<dyn Clock>) -> Router {
//!     let idempotent = IdempotencyLayer::new(table, clock, IdempotencyOptions::required());
//!     Router::new().route(
//!         "/v1/orders/{id}/cancel",
//!         post(|| async { "cancelled" }).route_layer(idempotent),
//!     )
//! }
//! ```
//!
//! Records live in the service's own table (`pk = IDEM#<org>#<account>`,
//! `sk = <METHOD> <route>#<key>`) with `expires_at`, so the TTL removes them
//! on both backends, and time comes from the platform [`Clock`].

use std::convert::Infallible;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use constellation_core::auth::Principal;
use constellation_platform::Clock;
use constellation_platform::table::{Condition, Item, ItemKey, StoreError, Table};
use futures::FutureExt as _;
use http_body_util::BodyExt as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use time::{Duration, OffsetDateTime};
use tower::{Layer, Service, ServiceExt as _};

use crate::auth::Authenticated;
use crate::error::{ApiError, ProblemType};
use crate::extract::LimitedBody;

/// The request header carrying the key.
pub static IDEMPOTENCY_KEY_HEADER: HeaderName = HeaderName::from_static("idempotency-key");
/// The response header that marks a replayed response (value `true`).
pub static IDEMPOTENT_REPLAYED_HEADER: HeaderName = HeaderName::from_static("idempotent-replayed");
/// How clients spell the header in problem `field`s and messages.
pub const IDEMPOTENCY_KEY_FIELD: &str = "Idempotency-Key";
/// The longest key accepted, in characters.
pub const MAX_KEY_CHARS: usize = 255;
/// How long a stored response is replayed.
pub const DEFAULT_RETENTION: Duration = Duration::hours(24);
/// How long an "in progress" record blocks retries before one may take it over.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::seconds(60);
/// The largest response body stored for replay (a table item's payload limit).
pub const MAX_STORED_BODY_BYTES: usize = 300 * 1024;
/// The most header bytes (names and values) stored with a response.
const MAX_STORED_HEADER_BYTES: usize = 16 * 1024;
/// The `Retry-After` of the 409 for a request still in progress, in seconds.
const IN_PROGRESS_RETRY_AFTER: u64 = 1;
/// How often a claim retries when the record changes under it.
const CLAIM_ATTEMPTS: usize = 3;

/// Headers that describe one transmission rather than the response, and
/// so are never replayed.
const NOT_REPLAYED: &[&str] = &[
    "date",
    "x-request-id",
    "set-cookie",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "trailer",
    "te",
    "proxy-authenticate",
    "proxy-connection",
    "idempotent-replayed",
];

/// How one route uses the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdempotencyOptions {
    /// Whether a request without the header is refused with 428.
    pub required: bool,
    /// How old an "in progress" record must be before a retry may take it
    /// over. Keep it above the longest a handler can run (the function's
    /// timeout), or a slow handler's key is taken over while it still runs.
    pub lock_timeout: Duration,
    /// How long a stored response is replayed after it was stored.
    pub retention: Duration,
}

impl Default for IdempotencyOptions {
    fn default() -> Self {
        Self {
            required: false,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            retention: DEFAULT_RETENTION,
        }
    }
}

impl IdempotencyOptions {
    /// The header is optional: without it the request runs unprotected.
    pub fn optional() -> Self {
        Self::default()
    }

    /// The header is required: without it the request is refused with 428.
    pub fn required() -> Self {
        Self {
            required: true,
            ..Self::default()
        }
    }
}

/// The layer; clone it onto every route that should honour the header.
#[derive(Clone)]
pub struct IdempotencyLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for IdempotencyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyLayer")
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl IdempotencyLayer {
    /// A layer keeping its records in `table` (the service's own) and
    /// reading time from `clock`.
    pub fn new(table: Arc<dyn Table>, clock: Arc<dyn Clock>, options: IdempotencyOptions) -> Self {
        Self {
            shared: Arc::new(Shared {
                table,
                clock,
                options,
            }),
        }
    }
}

impl<S> Layer<S> for IdempotencyLayer {
    type Service = Idempotent<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Idempotent {
            shared: self.shared.clone(),
            inner,
        }
    }
}

/// The service [`IdempotencyLayer`] wraps a route in.
#[derive(Clone)]
pub struct Idempotent<S> {
    shared: Arc<Shared>,
    inner: S,
}

impl<S> fmt::Debug for Idempotent<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idempotent")
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl<S> Service<Request> for Idempotent<S>
where
    S: Service<Request, Error = Infallible> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The clone is not ready; keep the ready one (tower's usual swap).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        Box::pin(async move { Ok(shared.handle(inner, req).await) })
    }
}

struct Shared {
    table: Arc<dyn Table>,
    clock: Arc<dyn Clock>,
    options: IdempotencyOptions,
}

/// A key that passed [`IdempotencyKey::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct IdempotencyKey(String);

impl IdempotencyKey {
    fn parse(value: &HeaderValue) -> Result<Self, ApiError> {
        let bytes = value.as_bytes();
        if bytes.is_empty() || bytes.len() > MAX_KEY_CHARS {
            return Err(ApiError::invalid(
                IDEMPOTENCY_KEY_FIELD,
                format!("must be 1 to {MAX_KEY_CHARS} characters"),
            ));
        }
        if !bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
            return Err(ApiError::invalid(
                IDEMPOTENCY_KEY_FIELD,
                "may hold only printable ASCII characters without spaces",
            ));
        }
        // Every byte is ASCII, so this is lossless.
        Ok(Self(String::from_utf8_lossy(bytes).into_owned()))
    }
}

/// The key header, if sent once; sent twice is ambiguous.
fn key_header(headers: &HeaderMap) -> Result<Option<&HeaderValue>, ApiError> {
    let mut values = headers.get_all(&IDEMPOTENCY_KEY_HEADER).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => Ok(Some(value)),
        (Some(_), Some(_)) => Err(ApiError::invalid(
            IDEMPOTENCY_KEY_FIELD,
            "must be sent at most once",
        )),
    }
}

/// What the table holds for one key (its attributes; a stored body travels
/// as the item's payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Record {
    /// A handler is running (or died) for the request with this fingerprint.
    InProgress {
        fingerprint: String,
        /// Unix seconds when the handler started.
        locked_at: i64,
    },
    /// The response to the request with this fingerprint.
    Complete {
        fingerprint: String,
        status: u16,
        headers: Vec<(String, String)>,
    },
}

impl Record {
    fn fingerprint(&self) -> &str {
        match self {
            Self::InProgress { fingerprint, .. } | Self::Complete { fingerprint, .. } => {
                fingerprint
            }
        }
    }

    fn into_item(
        self,
        key: &ItemKey,
        version: u64,
        expires_at: OffsetDateTime,
        body: Option<Bytes>,
    ) -> Result<Item, StoreError> {
        let attrs = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(attrs)) => attrs,
            Ok(_) => return Err(StoreError::Invalid("a record is not an object".into())),
            Err(e) => return Err(StoreError::Backend(e.into())),
        };
        let mut item = Item::new(key.clone());
        item.version = version;
        item.expires_at = Some(expires_at);
        item.attrs = attrs;
        item.bytes = body.filter(|b| !b.is_empty());
        Ok(item)
    }

    fn from_item(item: &Item) -> Result<Self, StoreError> {
        serde_json::from_value(serde_json::Value::Object(item.attrs.clone())).map_err(|e| {
            StoreError::Backend(anyhow::Error::new(e).context("unreadable idempotency record"))
        })
    }
}

/// What the first look at the table decided.
enum Claim {
    /// This request owns the key at this item version: run the handler.
    Owned(u64),
    /// The stored response to replay.
    Replay(Response),
    /// Another request with this key is running.
    InProgress,
    /// The key was used for a different request.
    Reused,
}

/// Everything about the request the key is checked against.
fn fingerprint(parts: &Parts, route: &str, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    for field in [
        parts.method.as_str().as_bytes(),
        route.as_bytes(),
        parts.uri.path().as_bytes(),
        parts.uri.query().unwrap_or_default().as_bytes(),
        content_type,
        body,
    ] {
        // Length-prefixed, so no two different requests hash the same input.
        hash.update((field.len() as u64).to_be_bytes());
        hash.update(field);
    }
    hex::encode(hash.finalize())
}

fn unavailable(e: StoreError) -> Response {
    ApiError::Unavailable(anyhow::Error::new(e).context("idempotency record")).into_response()
}

fn in_progress() -> Response {
    let mut res = ApiError::Client {
        problem: ProblemType::IdempotencyKeyInProgress,
        detail: format!(
            "{IDEMPOTENCY_KEY_FIELD}: a request with this key is still being handled; retry later"
        ),
        field: Some(IDEMPOTENCY_KEY_FIELD.to_owned()),
    }
    .into_response();
    res.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(IN_PROGRESS_RETRY_AFTER),
    );
    res
}

fn reused() -> Response {
    ApiError::Client {
        problem: ProblemType::IdempotencyKeyReused,
        detail: format!(
            "{IDEMPOTENCY_KEY_FIELD}: this key was already used for a different request; \
             use a new key for a new request"
        ),
        field: Some(IDEMPOTENCY_KEY_FIELD.to_owned()),
    }
    .into_response()
}

fn required() -> Response {
    ApiError::Client {
        problem: ProblemType::IdempotencyKeyRequired,
        detail: format!("{IDEMPOTENCY_KEY_FIELD}: this route requires the header"),
        field: Some(IDEMPOTENCY_KEY_FIELD.to_owned()),
    }
    .into_response()
}

/// Rebuilds a stored response, marked as a replay.
fn replay(status: u16, headers: &[(String, String)], body: Option<Bytes>) -> Response {
    let mut res = Response::new(Body::from(body.unwrap_or_default()));
    *res.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            res.headers_mut().append(name, value);
        }
    }
    res.headers_mut().insert(
        IDEMPOTENT_REPLAYED_HEADER.clone(),
        HeaderValue::from_static("true"),
    );
    res
}

/// The headers of `headers` worth replaying, or `None` when they are too
/// large to store.
fn replayable_headers(headers: &HeaderMap) -> Option<Vec<(String, String)>> {
    let mut kept = Vec::new();
    let mut size = 0;
    for (name, value) in headers {
        if NOT_REPLAYED.contains(&name.as_str()) {
            continue;
        }
        let Ok(value) = std::str::from_utf8(value.as_bytes()) else {
            tracing::warn!(header = %name, "response header is not UTF-8; not replayed");
            continue;
        };
        size += name.as_str().len() + value.len();
        kept.push((name.as_str().to_owned(), value.to_owned()));
    }
    (size <= MAX_STORED_HEADER_BYTES).then_some(kept)
}

/// A response body read up to a limit.
enum Buffered {
    /// The whole body.
    Whole(Bytes),
    /// Past the limit: what was read, followed by the rest, unread.
    TooLarge(Body),
}

async fn buffer_body(body: Body, limit: usize) -> Result<Buffered, axum::Error> {
    let mut body = body;
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        // Trailers are not part of what is replayed.
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        if buf.len() > limit {
            let head =
                futures::stream::once(futures::future::ready(Ok::<_, axum::Error>(buf.freeze())));
            let rest = futures::StreamExt::chain(head, body.into_data_stream());
            return Ok(Buffered::TooLarge(Body::from_stream(rest)));
        }
    }
    Ok(Buffered::Whole(buf.freeze()))
}

/// Removes this request's "in progress" record if the request ends without
/// completing it: explicitly on a failure, from `Drop` when cancelled.
struct Lock {
    shared: Arc<Shared>,
    key: ItemKey,
    version: u64,
    held: bool,
}

impl Lock {
    /// The response is stored (or the record is someone else's): keep it.
    fn keep(mut self) {
        self.held = false;
    }

    async fn release(mut self) {
        self.held = false;
        release(&self.shared, &self.key, self.version).await;
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        // Cancelled mid-request: release from a task, as `drop` cannot wait.
        let (shared, key, version) = (self.shared.clone(), self.key.clone(), self.version);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { release(&shared, &key, version).await });
            }
            Err(_) => tracing::warn!(
                "idempotency record left in progress; it will be taken over after the lock timeout"
            ),
        }
    }
}

/// Deletes the record at `version`; a newer version is someone else's.
async fn release(shared: &Shared, key: &ItemKey, version: u64) {
    match shared
        .table
        .delete(key, Condition::VersionEquals(version))
        .await
    {
        Ok(_) | Err(StoreError::ConditionFailed { .. }) => {}
        Err(e) => tracing::warn!(
            error = format!("{:#}", anyhow::Error::new(e)),
            "could not release an idempotency key; it will be taken over after the lock timeout"
        ),
    }
}

impl Shared {
    async fn handle<S>(self: Arc<Self>, inner: S, req: Request) -> Response
    where
        S: Service<Request, Error = Infallible> + Send + 'static,
        S::Response: IntoResponse,
        S::Future: Send + 'static,
    {
        let header = match key_header(req.headers()) {
            Ok(header) => header.cloned(),
            Err(e) => return e.into_response(),
        };
        if header.is_none() && !self.options.required {
            return run(inner, req).await;
        }

        let (mut parts, body) = req.into_parts();
        let principal = match Authenticated::from_request_parts(&mut parts, &()).await {
            Ok(Authenticated(principal)) => principal,
            Err(e) => return e.into_response(),
        };
        let key = match header.as_ref().map(IdempotencyKey::parse) {
            None => return required(),
            Some(Err(e)) => return e.into_response(),
            Some(Ok(key)) => key,
        };
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map(|m| m.as_str().to_owned())
            // Outside a router (no template), the path itself scopes the key.
            .unwrap_or_else(|| parts.uri.path().to_owned());
        // Read the body within the route's own limit (413 past it).
        let body =
            match LimitedBody::from_request(Request::from_parts(parts.clone(), body), &()).await {
                Ok(LimitedBody(body)) => body,
                Err(e) => return e.into_response(),
            };

        let item_key = scope(&principal, parts.method.as_str(), &route, &key);
        let fingerprint = fingerprint(&parts, &route, &body);
        let version = match self.claim(&item_key, &fingerprint).await {
            Ok(Claim::Owned(version)) => version,
            Ok(Claim::Replay(response)) => return response,
            Ok(Claim::InProgress) => return in_progress(),
            Ok(Claim::Reused) => return reused(),
            Err(e) => return unavailable(e),
        };
        let lock = Lock {
            shared: self.clone(),
            key: item_key,
            version,
            held: true,
        };

        let req = Request::from_parts(parts, Body::from(body));
        let response = match AssertUnwindSafe(run(inner, req)).catch_unwind().await {
            Ok(response) => response,
            Err(panic) => {
                lock.release().await;
                // The service's panic layer answers it as usual.
                std::panic::resume_unwind(panic)
            }
        };
        self.complete(lock, fingerprint, response).await
    }

    /// Stores `response` for replay, or releases the key when it must not be
    /// replayed; answers `response` either way.
    async fn complete(&self, lock: Lock, fingerprint: String, response: Response) -> Response {
        let status = response.status();
        // Only a success is kept: a refused request (4xx) may be corrected
        // and sent again with the same key, and a 5xx or 429 asks for a retry.
        if !(status.is_success() || status.is_redirection()) {
            lock.release().await;
            return response;
        }
        let (parts, body) = response.into_parts();
        let body = match buffer_body(body, MAX_STORED_BODY_BYTES).await {
            Ok(Buffered::Whole(body)) => body,
            Ok(Buffered::TooLarge(body)) => {
                tracing::warn!(
                    limit = MAX_STORED_BODY_BYTES,
                    "response too large to store for idempotent replay; the key is released"
                );
                lock.release().await;
                return Response::from_parts(parts, body);
            }
            Err(e) => {
                lock.release().await;
                return ApiError::internal(e).into_response();
            }
        };
        let Some(headers) = replayable_headers(&parts.headers) else {
            tracing::warn!("response headers too large to store for idempotent replay");
            lock.release().await;
            return Response::from_parts(parts, Body::from(body));
        };

        let record = Record::Complete {
            fingerprint,
            status: status.as_u16(),
            headers,
        };
        let stored = match record.into_item(
            &lock.key,
            lock.version + 1,
            self.clock.now() + self.options.retention,
            Some(body.clone()),
        ) {
            Ok(item) => {
                self.table
                    .put(&item, Condition::VersionEquals(lock.version))
                    .await
            }
            Err(e) => Err(e),
        };
        match stored {
            Ok(()) => lock.keep(),
            Err(StoreError::ConditionFailed { .. }) => {
                tracing::warn!(
                    "idempotency key was taken over while its handler ran (past the lock timeout); \
                     this response is not stored"
                );
                lock.keep();
            }
            Err(e) => {
                // The effect happened: answer it. The record stays "in
                // progress" and is taken over after the lock timeout.
                tracing::error!(
                    error = format!("{:#}", anyhow::Error::new(e)),
                    "could not store a response for idempotent replay"
                );
                lock.keep();
            }
        }
        Response::from_parts(parts, Body::from(body))
    }

    /// Records "in progress" for this request, or says why it may not run.
    async fn claim(&self, key: &ItemKey, fingerprint: &str) -> Result<Claim, StoreError> {
        for _ in 0..CLAIM_ATTEMPTS {
            let now = self.clock.now();
            let in_progress = |version| {
                Record::InProgress {
                    fingerprint: fingerprint.to_owned(),
                    locked_at: now.unix_timestamp(),
                }
                .into_item(key, version, now + self.options.retention, None)
            };
            match self.table.put(&in_progress(1)?, Condition::NotExists).await {
                Ok(()) => return Ok(Claim::Owned(1)),
                Err(StoreError::ConditionFailed { .. }) => {}
                Err(e) => return Err(e),
            }
            let Some(item) = self.table.get(key).await? else {
                // Released or expired since the put: try again.
                continue;
            };
            let record = Record::from_item(&item)?;
            if record.fingerprint() != fingerprint {
                return Ok(Claim::Reused);
            }
            match record {
                Record::Complete {
                    status, headers, ..
                } => return Ok(Claim::Replay(replay(status, &headers, item.bytes))),
                Record::InProgress { locked_at, .. } => {
                    let age = now.unix_timestamp().saturating_sub(locked_at);
                    if age < self.options.lock_timeout.whole_seconds() {
                        return Ok(Claim::InProgress);
                    }
                    let version = item.version + 1;
                    match self
                        .table
                        .put(
                            &in_progress(version)?,
                            Condition::VersionEquals(item.version),
                        )
                        .await
                    {
                        Ok(()) => {
                            tracing::warn!(
                                age_seconds = age,
                                "took over a stale idempotency key whose handler did not finish"
                            );
                            return Ok(Claim::Owned(version));
                        }
                        Err(StoreError::ConditionFailed { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        // The record kept changing under us: another request is at it.
        Ok(Claim::InProgress)
    }
}

/// The table key of one scoped idempotency key.
fn scope(principal: &Principal, method: &str, route: &str, key: &IdempotencyKey) -> ItemKey {
    ItemKey::new(
        format!(
            "IDEM#{}#{}",
            principal.org.as_str(),
            principal.account.as_str()
        ),
        format!("{method} {route}#{}", key.0),
    )
}

async fn run<S>(inner: S, req: Request) -> Response
where
    S: Service<Request, Error = Infallible>,
    S::Response: IntoResponse,
{
    match inner.oneshot(req).await {
        Ok(response) => response.into_response(),
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<IdempotencyKey, ApiError> {
        IdempotencyKey::parse(&HeaderValue::from_bytes(raw).unwrap())
    }

    #[test]
    fn keys_are_1_to_255_printable_ascii_characters() {
        assert!(parse(b"a").is_ok());
        assert!(parse("k".repeat(255).as_bytes()).is_ok());
        assert!(parse(b"!~0aZ-_.:/+=").is_ok());
        for bad in [
            &b""[..],
            "k".repeat(256).as_bytes(),
            b"a b",
            b"a\tb",
            b"caf\xc3\xa9",
        ] {
            match parse(bad) {
                Err(ApiError::Client { field, .. }) => {
                    assert_eq!(field.as_deref(), Some(IDEMPOTENCY_KEY_FIELD));
                }
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn records_round_trip_through_an_item() {
        let key = ItemKey::new("IDEM#acme#a", "POST /v1/x#k");
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let record = Record::Complete {
            fingerprint: "f".into(),
            status: 201,
            headers: vec![("location".into(), "/v1/x/1".into())],
        };
        let item = record
            .clone()
            .into_item(&key, 2, at, Some(Bytes::from_static(b"{}")))
            .unwrap();
        assert_eq!(item.str("state"), Some("complete"));
        assert_eq!(item.version, 2);
        assert_eq!(item.expires_at, Some(at));
        assert_eq!(Record::from_item(&item).unwrap(), record);
    }

    #[test]
    fn the_fingerprint_covers_path_query_type_and_body() {
        let parts = |uri: &str, ct: &str| {
            let (parts, ()) = axum::http::Request::post(uri)
                .header("content-type", ct)
                .body(())
                .unwrap()
                .into_parts();
            parts
        };
        let base = fingerprint(
            &parts("/v1/o/1?a=1", "application/json"),
            "/v1/o/{id}",
            b"{}",
        );
        for other in [
            fingerprint(
                &parts("/v1/o/2?a=1", "application/json"),
                "/v1/o/{id}",
                b"{}",
            ),
            fingerprint(
                &parts("/v1/o/1?a=2", "application/json"),
                "/v1/o/{id}",
                b"{}",
            ),
            fingerprint(&parts("/v1/o/1?a=1", "text/plain"), "/v1/o/{id}", b"{}"),
            fingerprint(
                &parts("/v1/o/1?a=1", "application/json"),
                "/v1/o/{id}",
                b"{ }",
            ),
        ] {
            assert_ne!(base, other);
        }
        assert_eq!(
            base,
            fingerprint(
                &parts("/v1/o/1?a=1", "application/json"),
                "/v1/o/{id}",
                b"{}"
            )
        );
    }
}
