//! The S3 gate: a loopback reverse proxy that puts real S3's presigned-URL
//! checks in front of moto.
//!
//! moto (the AWS emulator the AWS adapter set is tested against) does not
//! validate S3 presigned URLs at all: a presigned PUT whose body has the wrong
//! length, whose `Content-Type` is not the signed one, or whose
//! `X-Amz-Expires` has long passed is accepted and stored. moto's IAM auth
//! mode does not help either, it fails on query-string authentication. The
//! storage conformance suite has to show that those uploads are refused on the
//! AWS backend too, so the test kit runs this gate between the code under test
//! and moto:
//!
//! * A request whose query carries `X-Amz-Algorithm` is a presigned
//!   (query-string SigV4) request. The gate verifies it the way S3 does —
//!   credential scope, expiry, the canonical request rebuilt from the request
//!   *as it actually arrived* (so a body length or content type other than the
//!   signed ones changes the signature), and the signature itself, compared in
//!   constant time — and answers `403` with an S3-style XML error when it does
//!   not hold. Requests that pass are forwarded.
//! * Every other request (the SDK's own header-authenticated calls) is
//!   forwarded unchanged.
//!
//! Forwarding keeps the method, path, query, headers (including the `Host`
//! the client sent) and body, and returns the upstream's status, headers and
//! body. Bodies are buffered in memory, up to [`MAX_BODY_BYTES`].
//!
//! Use [`S3Gate::endpoint`] as the SDK endpoint (path-style addressing), so
//! that presigned URLs name the gate.
//!
//! The gate mends one more gap of moto's, for DynamoDB: moto checks a write's
//! condition and applies the write without holding a lock across its request
//! threads, so two concurrent conditional updates of one item can both pass
//! (50 concurrent decrements of 10 with a floor of 0 let 11 through). DynamoDB
//! itself applies each conditional write atomically, so the gate forwards
//! DynamoDB writes one at a time.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, percent_encode};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime, PrimitiveDateTime};
use tokio::sync::oneshot;

mod sigv4;
#[cfg(test)]
mod tests;

use sigv4::{Verifier, query_pairs};

/// The largest request or response body the gate buffers.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// S3 refuses presigned URLs valid for longer than seven days.
const MAX_EXPIRES_SECS: i64 = 604_800;
/// S3 accepts an `X-Amz-Date` this far in the future (clock skew).
const MAX_CLOCK_SKEW: Duration = Duration::minutes(15);

/// SigV4 `UriEncode`: everything but the unreserved characters is encoded.
const SIGV4_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// The same for the canonical URI, where `/` stays as it is.
const SIGV4_ENCODE_PATH: &AsciiSet = &SIGV4_ENCODE.remove(b'/');

const AMZ_DATE_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");

type HmacSha256 = Hmac<Sha256>;

/// A running gate; dropping it stops the proxy task.
///
/// The proxy runs on the Tokio runtime that called [`S3Gate::start`], so it
/// lives at most as long as that runtime.
#[derive(Debug)]
pub struct S3Gate {
    endpoint: String,
    /// Dropping the sender starts the server's graceful shutdown.
    _shutdown: oneshot::Sender<()>,
}

impl S3Gate {
    /// Starts on 127.0.0.1:0 in front of `upstream` (e.g.
    /// `"http://127.0.0.1:5000"`), verifying presigned requests with these
    /// credentials.
    pub async fn start(
        upstream: &str,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> anyhow::Result<S3Gate> {
        let upstream_url = reqwest::Url::parse(upstream)
            .with_context(|| format!("S3 gate: invalid upstream URL {upstream:?}"))?;
        anyhow::ensure!(
            matches!(upstream_url.scheme(), "http" | "https"),
            "S3 gate: upstream {upstream:?} is not an http(s) URL"
        );
        anyhow::ensure!(
            upstream_url.query().is_none() && upstream_url.fragment().is_none(),
            "S3 gate: upstream {upstream:?} must not have a query or fragment"
        );
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("S3 gate: building the forwarding HTTP client")?;
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .context("S3 gate: binding 127.0.0.1:0")?;
        let addr = listener
            .local_addr()
            .context("S3 gate: reading the bound address")?;

        let state = Arc::new(GateState {
            verifier: Verifier {
                access_key_id: access_key_id.to_owned(),
                secret_access_key: secret_access_key.to_owned(),
            },
            upstream: upstream.trim_end_matches('/').to_owned(),
            client,
            dynamodb_writes: tokio::sync::Mutex::new(()),
        });
        let app = Router::new().fallback(handle).with_state(state);
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    // Resolves when the gate is dropped (the sender goes away).
                    let _ = shutdown_rx.await;
                })
                .await;
            if let Err(error) = served {
                tracing::warn!(%error, "S3 gate stopped with an error");
            }
        });

        Ok(S3Gate {
            endpoint: format!("http://{addr}"),
            _shutdown: shutdown_tx,
        })
    }

    /// `"http://127.0.0.1:<port>"` — use it as the SDK endpoint
    /// (`AWS_ENDPOINT_URL`) so presigned URLs name the gate's host.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

struct GateState {
    verifier: Verifier,
    /// Upstream base URL without a trailing slash.
    upstream: String,
    client: reqwest::Client,
    /// Held while a DynamoDB write is with the upstream (see the module docs).
    dynamodb_writes: tokio::sync::Mutex<()>,
}

/// Whether a request is a DynamoDB write, which DynamoDB applies atomically.
fn is_dynamodb_write(headers: &HeaderMap) -> bool {
    headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix("DynamoDB_20120810."))
        .is_some_and(|op| {
            matches!(
                op,
                "PutItem" | "UpdateItem" | "DeleteItem" | "TransactWriteItems" | "BatchWriteItem"
            )
        })
}

async fn handle(State(gate): State<Arc<GateState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();

    let declared_length = match declared_content_length(&parts.headers) {
        Ok(length) => length,
        Err(rejection) => return rejection.into_response(),
    };
    if declared_length.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "EntityTooLarge",
            format!("The S3 gate buffers at most {MAX_BODY_BYTES} bytes"),
        )
        .into_response();
    }
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(error) => {
            return Rejection::new(
                StatusCode::BAD_REQUEST,
                "IncompleteBody",
                format!("Could not read the request body (the gate buffers at most {MAX_BODY_BYTES} bytes): {error}"),
            )
            .into_response();
        }
    };
    if let Some(declared) = declared_length
        && declared != body.len() as u64
    {
        return Rejection::new(
            StatusCode::FORBIDDEN,
            "IncompleteBody",
            format!(
                "You did not provide the number of bytes specified by the Content-Length HTTP header ({declared} declared, {} received)",
                body.len()
            ),
        )
        .into_response();
    }

    if is_presigned(&parts.uri) {
        let verified = gate.verifier.verify(
            &parts.method,
            &parts.uri,
            &parts.headers,
            &body,
            OffsetDateTime::now_utc(),
        );
        if let Err(rejection) = verified {
            tracing::debug!(
                method = %parts.method,
                uri = %parts.uri,
                code = rejection.code,
                message = %rejection.message,
                "S3 gate refused a presigned request"
            );
            return rejection.into_response();
        }
    }

    forward(&gate, parts, body).await
}

/// Whether the request uses query-string (presigned) SigV4 authentication.
fn is_presigned(uri: &Uri) -> bool {
    uri.query()
        .is_some_and(|query| query_pairs(query).any(|(name, _)| name == "X-Amz-Algorithm"))
}

fn declared_content_length(headers: &HeaderMap) -> Result<Option<u64>, Rejection> {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    let invalid = || {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "The Content-Length header is not a single valid length",
        )
    };
    if values.next().is_some() {
        return Err(invalid());
    }
    first
        .to_str()
        .ok()
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(invalid)
}

/// Connection-level headers a proxy must not pass on.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

async fn forward(gate: &GateState, parts: http::request::Parts, body: Bytes) -> Response {
    let _one_write_at_a_time = if is_dynamodb_write(&parts.headers) {
        Some(gate.dynamodb_writes.lock().await)
    } else {
        None
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |path_and_query| path_and_query.as_str());
    let url = format!("{}{}", gate.upstream, path_and_query);

    let mut headers = HeaderMap::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        if !is_hop_by_hop(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let mut upstream_request = gate
        .client
        .request(parts.method.clone(), &url)
        .headers(headers);
    if !body.is_empty() || parts.headers.contains_key(header::CONTENT_LENGTH) {
        upstream_request = upstream_request.body(body);
    }

    let upstream_response = match upstream_request.send().await {
        Ok(response) => response,
        Err(error) => {
            return Rejection::new(
                StatusCode::BAD_GATEWAY,
                "BadGateway",
                format!("S3 gate could not reach the upstream at {url}: {error}"),
            )
            .into_response();
        }
    };
    let status = upstream_response.status();
    let upstream_headers = upstream_response.headers().clone();
    let upstream_body = match upstream_response.bytes().await {
        Ok(bytes) => bytes,
        Err(error) => {
            return Rejection::new(
                StatusCode::BAD_GATEWAY,
                "BadGateway",
                format!("S3 gate could not read the upstream response from {url}: {error}"),
            )
            .into_response();
        }
    };

    let mut response = Response::new(Body::from(upstream_body));
    *response.status_mut() = status;
    let response_headers = response.headers_mut();
    for (name, value) in &upstream_headers {
        // Content-Length is kept: for HEAD it is the object's size, not the
        // (empty) body's.
        if !is_hop_by_hop(name) {
            response_headers.append(name.clone(), value.clone());
        }
    }
    response
}

/// An S3-style error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rejection {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Extra elements after `<Message>`, as S3 adds them (name, text).
    details: Vec<(&'static str, String)>,
}

impl Rejection {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    fn with(mut self, element: &'static str, text: impl Into<String>) -> Self {
        self.details.push((element, text.into()));
        self
    }

    fn query_parameters(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "AuthorizationQueryParametersError",
            message,
        )
    }

    fn body(&self) -> String {
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>");
        push_element(&mut xml, "Code", self.code);
        push_element(&mut xml, "Message", &self.message);
        for (element, text) in &self.details {
            push_element(&mut xml, element, text);
        }
        xml.push_str("</Error>");
        xml
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body()));
        *response.status_mut() = self.status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        response
    }
}

fn push_element(xml: &mut String, element: &str, text: &str) {
    xml.push('<');
    xml.push_str(element);
    xml.push('>');
    for character in text.chars() {
        match character {
            '&' => xml.push_str("&amp;"),
            '<' => xml.push_str("&lt;"),
            '>' => xml.push_str("&gt;"),
            '"' => xml.push_str("&quot;"),
            '\'' => xml.push_str("&apos;"),
            other => xml.push(other),
        }
    }
    xml.push_str("</");
    xml.push_str(element);
    xml.push('>');
}
