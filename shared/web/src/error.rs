//! The one error type of the HTTP boundary and its problem+json rendering.
//!
//! Each variant documents its status. Client errors carry a detail the
//! client can act on (and the field at fault); server errors carry nothing
//! but the request id: their cause chain is logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use constellation_core::ValidationError;
use constellation_platform::StoreError;
use serde::Serialize;

use crate::layers::current_request_id;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The stable `type` of a problem, one per kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemType {
    /// 400: an input failed validation.
    InvalidInput,
    /// 400: a pagination cursor was not issued for this query.
    InvalidCursor,
    /// 400: the body is not valid JSON for this route.
    MalformedBody,
    /// 401: no valid credentials.
    Unauthorized,
    /// 403: authenticated, but not allowed.
    Forbidden,
    /// 404: no such resource (or not yours).
    NotFound,
    /// 405: the route exists but not with this method.
    MethodNotAllowed,
    /// 409: the request conflicts with the current state.
    Conflict,
    /// 412: a precondition header did not hold.
    PreconditionFailed,
    /// 413: the body is too large.
    PayloadTooLarge,
    /// 415: the body's media type is not accepted.
    UnsupportedMediaType,
    /// 429: too many requests.
    TooManyRequests,
    /// 409: a request with this `Idempotency-Key` is still being handled; retry after `Retry-After`.
    IdempotencyKeyInProgress,
    /// 422: this `Idempotency-Key` was already used for a different request.
    IdempotencyKeyReused,
    /// 428: this route requires an `Idempotency-Key` header.
    IdempotencyKeyRequired,
    /// 406: none of the media types in `Accept` can be produced.
    NotAcceptable,
    /// 409: the resource's state does not allow this move (`current_status` names the state).
    InvalidTransition,
    /// 422: an expense this large needs a ready receipt before it is submitted.
    ReceiptRequired,
    /// 428: this route needs `If-Match` (send the `ETag` you read).
    PreconditionRequired,
    /// 409: another product of the organization has this SKU.
    SkuTaken,
    /// 409: the change would leave less stock on hand than is reserved.
    InsufficientStock,
    /// 500: an unexpected failure.
    Internal,
    /// 503: a dependency is briefly unavailable; retry.
    Unavailable,
}

impl ProblemType {
    /// The `type` URI.
    pub fn uri(self) -> &'static str {
        match self {
            Self::InvalidInput => "urn:constellation:problem:invalid-input",
            Self::InvalidCursor => "urn:constellation:problem:invalid-cursor",
            Self::MalformedBody => "urn:constellation:problem:malformed-body",
            Self::Unauthorized => "urn:constellation:problem:unauthorized",
            Self::Forbidden => "urn:constellation:problem:forbidden",
            Self::NotFound => "urn:constellation:problem:not-found",
            Self::MethodNotAllowed => "urn:constellation:problem:method-not-allowed",
            Self::Conflict => "urn:constellation:problem:conflict",
            Self::PreconditionFailed => "urn:constellation:problem:precondition-failed",
            Self::PayloadTooLarge => "urn:constellation:problem:payload-too-large",
            Self::UnsupportedMediaType => "urn:constellation:problem:unsupported-media-type",
            Self::TooManyRequests => "urn:constellation:problem:too-many-requests",
            Self::IdempotencyKeyInProgress => {
                "urn:constellation:problem:idempotency-key-in-progress"
            }
            Self::IdempotencyKeyReused => "urn:constellation:problem:idempotency-key-reused",
            Self::IdempotencyKeyRequired => "urn:constellation:problem:idempotency-key-required",
            Self::NotAcceptable => "urn:constellation:problem:not-acceptable",
            Self::InvalidTransition => "urn:constellation:problem:invalid-transition",
            Self::ReceiptRequired => "urn:constellation:problem:receipt-required",
            Self::PreconditionRequired => "urn:constellation:problem:precondition-required",
            Self::SkuTaken => "urn:constellation:problem:sku-taken",
            Self::InsufficientStock => "urn:constellation:problem:insufficient-stock",
            Self::Internal => "urn:constellation:problem:internal",
            Self::Unavailable => "urn:constellation:problem:unavailable",
        }
    }

    /// The human title.
    pub fn title(self) -> &'static str {
        match self {
            Self::InvalidInput => "Invalid input",
            Self::InvalidCursor => "Invalid cursor",
            Self::MalformedBody => "Malformed request body",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden => "Forbidden",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::Conflict => "Conflict",
            Self::PreconditionFailed => "Precondition failed",
            Self::PayloadTooLarge => "Payload too large",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::TooManyRequests => "Too many requests",
            Self::IdempotencyKeyInProgress => "Request with this idempotency key in progress",
            Self::IdempotencyKeyReused => "Idempotency key reused",
            Self::IdempotencyKeyRequired => "Idempotency key required",
            Self::NotAcceptable => "Not acceptable",
            Self::InvalidTransition => "Invalid transition",
            Self::ReceiptRequired => "Receipt required",
            Self::PreconditionRequired => "Precondition required",
            Self::SkuTaken => "SKU taken",
            Self::InsufficientStock => "Insufficient stock",
            Self::Internal => "Internal server error",
            Self::Unavailable => "Service unavailable",
        }
    }

    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidInput | Self::InvalidCursor | Self::MalformedBody => {
                StatusCode::BAD_REQUEST
            }
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict => StatusCode::CONFLICT,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Self::IdempotencyKeyInProgress => StatusCode::CONFLICT,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::IdempotencyKeyRequired => StatusCode::PRECONDITION_REQUIRED,
            Self::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            Self::InvalidTransition => StatusCode::CONFLICT,
            Self::ReceiptRequired => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            Self::SkuTaken | Self::InsufficientStock => StatusCode::CONFLICT,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// An error answered to a client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 (or the given problem's status): a client error with a detail, and the field at fault.
    #[error("{detail}")]
    Client {
        /// Which problem.
        problem: ProblemType,
        /// What the client did wrong, in a sentence.
        detail: String,
        /// The input at fault, when there is one.
        field: Option<String>,
    },
    /// 401 with `WWW-Authenticate: Bearer realm="constellation"`: no token was
    /// presented (`description` is `None`), or the one presented was rejected
    /// (then also `error="invalid_token", error_description="<description>"`).
    #[error("unauthenticated")]
    Unauthenticated {
        /// Why the token was rejected, safe to show the client; `None` when there was no token.
        description: Option<String>,
    },
    /// 409 `invalid-transition`: the move is not possible from the
    /// resource's current status, which the problem names in `current_status`.
    #[error("{detail}")]
    InvalidTransition {
        /// What was refused, in a sentence.
        detail: String,
        /// The status the resource is in.
        current_status: String,
    },
    /// 429, with `Retry-After` seconds.
    #[error("too many requests")]
    TooManyRequests {
        /// Seconds until a retry may succeed.
        retry_after: u64,
    },
    /// 503, with `Retry-After`: a dependency is throttling or down; the cause is logged.
    #[error("dependency unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// 500: anything unexpected; the cause is logged, not sent.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// A client error of `problem` with `detail`.
    pub fn client(problem: ProblemType, detail: impl Into<String>) -> Self {
        Self::Client {
            problem,
            detail: detail.into(),
            field: None,
        }
    }

    /// 404 for `what`.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::client(ProblemType::NotFound, what)
    }

    /// 400 naming `field`.
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        let field = field.into();
        Self::Client {
            problem: ProblemType::InvalidInput,
            detail: format!("{field}: {}", detail.into()),
            field: Some(field),
        }
    }

    /// 500 for an unexpected error.
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Self::Internal(e.into())
    }

    /// The problem this error renders as.
    pub fn problem(&self) -> ProblemType {
        match self {
            Self::Client { problem, .. } => *problem,
            Self::Unauthenticated { .. } => ProblemType::Unauthorized,
            Self::InvalidTransition { .. } => ProblemType::InvalidTransition,
            Self::TooManyRequests { .. } => ProblemType::TooManyRequests,
            Self::Unavailable(_) => ProblemType::Unavailable,
            Self::Internal(_) => ProblemType::Internal,
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self::Client {
            problem: ProblemType::InvalidInput,
            detail: e.to_string(),
            field: Some(e.field.to_owned()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidCursor => Self::Client {
                problem: ProblemType::InvalidCursor,
                detail: "cursor: was not issued for this listing, or was altered".into(),
                field: Some("cursor".into()),
            },
            StoreError::ConditionFailed { .. } | StoreError::Conflict(_) => {
                Self::client(ProblemType::Conflict, "the resource changed; retry")
            }
            e @ StoreError::Unavailable(_) => Self::Unavailable(e.into()),
            e => Self::Internal(e.into()),
        }
    }
}

impl From<constellation_platform::BlobError> for ApiError {
    fn from(e: constellation_platform::BlobError) -> Self {
        match e {
            e @ constellation_platform::BlobError::Unavailable(_) => Self::Unavailable(e.into()),
            e => Self::Internal(e.into()),
        }
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    current_status: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

/// Renders a problem response.
pub fn problem_response(
    problem: ProblemType,
    detail: Option<&str>,
    field: Option<&str>,
) -> Response {
    render(problem, detail, field, None)
}

fn render(
    problem: ProblemType,
    detail: Option<&str>,
    field: Option<&str>,
    current_status: Option<&str>,
) -> Response {
    let status = problem.status();
    let body = Problem {
        kind: problem.uri(),
        title: problem.title(),
        status: status.as_u16(),
        detail,
        field,
        current_status,
        request_id: current_request_id(),
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut res = (status, bytes).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if problem == ProblemType::Unauthorized {
        // RFC 9110: every 401 names a scheme the client can answer.
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(BEARER_CHALLENGE),
        );
    }
    res
}

/// The challenge of a 401 without a token.
pub const BEARER_CHALLENGE: &str = r#"Bearer realm="constellation""#;

/// The challenge of a 401 for a rejected token (RFC 6750 section 3); the
/// description is reduced to the characters a quoted `error_description` allows.
pub fn invalid_token_challenge(description: &str) -> HeaderValue {
    let safe: String = description
        .chars()
        .filter(|c| matches!(c, ' '..='~') && *c != '"' && *c != '\\')
        .collect();
    HeaderValue::from_str(&format!(
        r#"{BEARER_CHALLENGE}, error="invalid_token", error_description="{safe}""#
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(BEARER_CHALLENGE))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Client {
                problem,
                detail,
                field,
            } => problem_response(*problem, Some(detail), field.as_deref()),
            Self::InvalidTransition {
                detail,
                current_status,
            } => render(
                ProblemType::InvalidTransition,
                Some(detail),
                None,
                Some(current_status),
            ),
            Self::Unauthenticated { description: None } => problem_response(
                ProblemType::Unauthorized,
                Some("a bearer access token is required"),
                None,
            ),
            Self::Unauthenticated {
                description: Some(description),
            } => {
                let mut res = problem_response(ProblemType::Unauthorized, Some(description), None);
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    invalid_token_challenge(description),
                );
                res
            }
            Self::TooManyRequests { retry_after } => {
                let mut res = problem_response(
                    ProblemType::TooManyRequests,
                    Some("slow down and retry later"),
                    None,
                );
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
                res
            }
            Self::Unavailable(cause) => {
                tracing::warn!(error = format!("{cause:#}"), "dependency unavailable");
                let mut res = problem_response(ProblemType::Unavailable, None, None);
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                res
            }
            Self::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "request failed");
                problem_response(ProblemType::Internal, None, None)
            }
        }
    }
}
