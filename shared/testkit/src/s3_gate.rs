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

/// Checks query-string SigV4 requests against one key pair.
struct Verifier {
    access_key_id: String,
    secret_access_key: String,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// The parsed `X-Amz-Credential` scope.
struct Scope<'a> {
    date: &'a str,
    region: &'a str,
}

impl Verifier {
    /// Verifies a presigned request the way S3 does; `now` is the server time.
    fn verify(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        now: OffsetDateTime,
    ) -> Result<(), Rejection> {
        let raw_query = uri.query().unwrap_or("");
        let pairs: Vec<(String, String)> = query_pairs(raw_query).collect();
        let param = |name: &str| {
            pairs
                .iter()
                .find(|(candidate, _)| candidate == name)
                .map(|(_, value)| value.as_str())
        };
        let required = |name: &'static str| {
            param(name).ok_or_else(|| {
                Rejection::query_parameters(format!(
                    "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters ({name} is missing)."
                ))
            })
        };

        if headers.contains_key(header::AUTHORIZATION) {
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified",
            ));
        }

        let algorithm = required("X-Amz-Algorithm")?;
        if algorithm != ALGORITHM {
            return Err(Rejection::query_parameters(format!(
                "X-Amz-Algorithm only supports \"{ALGORITHM}\""
            )));
        }

        let credential = required("X-Amz-Credential")?;
        let malformed_credential = || {
            Rejection::query_parameters(
                "Error parsing the X-Amz-Credential parameter; the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".",
            )
        };
        let credential_parts: Vec<&str> = credential.split('/').collect();
        let [key_id, scope_date, region, service, terminator] = credential_parts.as_slice() else {
            return Err(malformed_credential());
        };
        if *key_id != self.access_key_id {
            return Err(Rejection::new(
                StatusCode::FORBIDDEN,
                "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist in our records.",
            )
            .with("AWSAccessKeyId", *key_id));
        }
        if *service != "s3" {
            return Err(Rejection::query_parameters(format!(
                "Error parsing the X-Amz-Credential parameter; incorrect service \"{service}\". This endpoint belongs to \"s3\"."
            )));
        }
        if *terminator != "aws4_request" {
            return Err(Rejection::query_parameters(format!(
                "Error parsing the X-Amz-Credential parameter; incorrect terminal \"{terminator}\". This endpoint uses \"aws4_request\"."
            )));
        }
        if region.is_empty() {
            return Err(malformed_credential());
        }

        let amz_date = required("X-Amz-Date")?;
        let signed_at = PrimitiveDateTime::parse(amz_date, AMZ_DATE_FORMAT)
            .map_err(|_| {
                Rejection::query_parameters(
                    "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
                )
            })?
            .assume_utc();
        if amz_date.get(..8) != Some(*scope_date) {
            return Err(Rejection::query_parameters(format!(
                "Error parsing the X-Amz-Credential parameter; incorrect date \"{scope_date}\". This date in the credential must be in the format \"yyyyMMdd\" and match X-Amz-Date."
            )));
        }

        let expires = required("X-Amz-Expires")?;
        let expires_secs: i64 = expires
            .parse()
            .map_err(|_| Rejection::query_parameters("X-Amz-Expires should be a number"))?;
        if expires_secs < 0 {
            return Err(Rejection::query_parameters(
                "X-Amz-Expires must be non-negative",
            ));
        }
        if expires_secs > MAX_EXPIRES_SECS {
            return Err(Rejection::query_parameters(format!(
                "X-Amz-Expires must be less than a week (in seconds) that is; {MAX_EXPIRES_SECS}"
            )));
        }

        let signed_headers = required("X-Amz-SignedHeaders")?;
        let signed_names: Vec<&str> = signed_headers.split(';').collect();
        if !signed_names.contains(&"host") {
            return Err(Rejection::query_parameters(
                "X-Amz-SignedHeaders must include the host header",
            ));
        }
        let signature = required("X-Amz-Signature")?;

        if signed_at - now > MAX_CLOCK_SKEW {
            return Err(Rejection::new(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "Request is not valid yet",
            ));
        }
        let expires_at = signed_at + Duration::seconds(expires_secs);
        if now > expires_at {
            return Err(Rejection::new(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "Request has expired",
            )
            .with("X-Amz-Expires", expires)
            .with("Expires", format_timestamp(expires_at))
            .with("ServerTime", format_timestamp(now)));
        }

        // With query-string auth S3 refuses x-amz-* headers that are not signed.
        let mut unsigned: Vec<&str> = headers
            .keys()
            .map(HeaderName::as_str)
            .filter(|name| name.starts_with("x-amz-") && !signed_names.contains(name))
            .collect();
        if !unsigned.is_empty() {
            unsigned.sort_unstable();
            unsigned.dedup();
            return Err(Rejection::new(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "There were headers present in the request which were not signed",
            )
            .with("HeadersNotSigned", unsigned.join(", ")));
        }

        let payload_hash = param("X-Amz-Content-Sha256").unwrap_or(UNSIGNED_PAYLOAD);
        let canonical = canonical_request(
            method.as_str(),
            uri.path(),
            raw_query,
            headers,
            uri.authority().map(|authority| authority.as_str()),
            signed_headers,
            payload_hash,
        );
        let scope = Scope {
            date: scope_date,
            region,
        };
        let to_sign = string_to_sign(amz_date, &scope, &canonical);
        let provided = hex::decode(signature).unwrap_or_default();
        let mut mac = keyed_hmac(&signing_key(&self.secret_access_key, &scope));
        mac.update(to_sign.as_bytes());
        if mac.verify_slice(&provided).is_err() {
            return Err(Rejection::new(
                StatusCode::FORBIDDEN,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
            )
            .with("AWSAccessKeyId", *key_id)
            .with("StringToSign", to_sign)
            .with("SignatureProvided", signature)
            .with("CanonicalRequest", canonical));
        }

        if payload_hash != UNSIGNED_PAYLOAD {
            let actual = hex::encode(Sha256::digest(body));
            if !payload_hash.eq_ignore_ascii_case(&actual) {
                return Err(Rejection::new(
                    StatusCode::BAD_REQUEST,
                    "XAmzContentSHA256Mismatch",
                    "The provided 'x-amz-content-sha256' header does not match what was computed.",
                )
                .with("ClientComputedContentSHA256", payload_hash)
                .with("S3ComputedContentSHA256", actual));
            }
        }
        Ok(())
    }
}

fn format_timestamp(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

/// Splits a raw query into percent-decoded `(name, value)` pairs, in order.
/// `+` is kept literally, as S3 does for SigV4.
fn query_pairs(raw_query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    raw_query
        .split('&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            let (name, value) = segment.split_once('=').unwrap_or((segment, ""));
            (
                percent_decode_str(name).decode_utf8_lossy().into_owned(),
                percent_decode_str(value).decode_utf8_lossy().into_owned(),
            )
        })
}

/// The SigV4 canonical query string: every parameter but `X-Amz-Signature`,
/// names and values URI-encoded, sorted by name and then value.
fn canonical_query(raw_query: &str) -> String {
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|segment| !segment.is_empty())
        .filter_map(|segment| {
            let (name, value) = segment.split_once('=').unwrap_or((segment, ""));
            let name: Vec<u8> = percent_decode_str(name).collect();
            if name == b"X-Amz-Signature" {
                return None;
            }
            let value: Vec<u8> = percent_decode_str(value).collect();
            Some((
                percent_encode(&name, SIGV4_ENCODE).to_string(),
                percent_encode(&value, SIGV4_ENCODE).to_string(),
            ))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The canonical URI for S3: the path URI-encoded once. The raw path is
/// decoded and re-encoded so that a client's choice of escaping for
/// characters such as `!` or `(` does not matter (S3 does not double-encode).
fn canonical_uri(raw_path: &str) -> String {
    if raw_path.is_empty() {
        return "/".to_owned();
    }
    let decoded: Vec<u8> = percent_decode_str(raw_path).collect();
    percent_encode(&decoded, SIGV4_ENCODE_PATH).to_string()
}

/// One signed header's canonical value: all its values, trimmed, inner runs
/// of spaces collapsed, joined with commas. `host` falls back to the URI's
/// authority (HTTP/2).
fn canonical_header_value(headers: &HeaderMap, name: &str, authority: Option<&str>) -> String {
    let values: Vec<String> = headers
        .get_all(name)
        .iter()
        .map(|value| {
            String::from_utf8_lossy(value.as_bytes())
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    if values.is_empty() && name == "host" {
        return authority.unwrap_or_default().to_owned();
    }
    values.join(",")
}

/// Builds the SigV4 canonical request from the request as received.
fn canonical_request(
    method: &str,
    raw_path: &str,
    raw_query: &str,
    headers: &HeaderMap,
    authority: Option<&str>,
    signed_headers: &str,
    payload_hash: &str,
) -> String {
    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(&canonical_header_value(
            headers,
            &name.to_ascii_lowercase(),
            authority,
        ));
        canonical_headers.push('\n');
    }
    format!(
        "{method}\n{uri}\n{query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
        uri = canonical_uri(raw_path),
        query = canonical_query(raw_query),
    )
}

fn string_to_sign(amz_date: &str, scope: &Scope<'_>, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{date}/{region}/s3/aws4_request\n{hash}",
        date = scope.date,
        region = scope.region,
        hash = hex::encode(Sha256::digest(canonical_request.as_bytes())),
    )
}

fn keyed_hmac(key: &[u8]) -> HmacSha256 {
    <HmacSha256 as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
}

/// The SigV4 signing key: the HMAC chain from `"AWS4" + secret` over the
/// scope's date, region, service and terminator.
fn signing_key(secret_access_key: &str, scope: &Scope<'_>) -> Vec<u8> {
    let mut key = format!("AWS4{secret_access_key}").into_bytes();
    for part in [scope.date, scope.region, "s3", "aws4_request"] {
        let mut mac = keyed_hmac(&key);
        mac.update(part.as_bytes());
        key = mac.finalize().into_bytes().to_vec();
    }
    key
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    use std::sync::Mutex;
    use std::time::{Duration as StdDuration, SystemTime};

    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    use aws_sdk_s3::presigning::PresigningConfig;

    const EXAMPLE_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
    const EXAMPLE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const EXAMPLE_HOST: &str = "examplebucket.s3.amazonaws.com";
    /// AWS's published presigned GET example ("Authenticating Requests: Using
    /// Query Parameters (AWS Signature Version 4)", Amazon S3 API Reference).
    const EXAMPLE_QUERY: &str = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host";
    const EXAMPLE_SIGNATURE: &str =
        "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

    fn example_verifier() -> Verifier {
        Verifier {
            access_key_id: EXAMPLE_KEY_ID.to_owned(),
            secret_access_key: EXAMPLE_SECRET.to_owned(),
        }
    }

    fn host_headers(host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        headers
    }

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    /// 2013-05-24T00:00:00Z, the example's X-Amz-Date.
    const EXAMPLE_SIGNED_AT: i64 = 1_369_353_600;

    fn example_uri(signature: &str) -> Uri {
        format!("/test.txt?{EXAMPLE_QUERY}&X-Amz-Signature={signature}")
            .parse()
            .unwrap()
    }

    #[test]
    fn canonical_request_matches_the_aws_published_presigned_example() {
        let uri = example_uri(EXAMPLE_SIGNATURE);
        let canonical = canonical_request(
            "GET",
            uri.path(),
            uri.query().unwrap(),
            &host_headers(EXAMPLE_HOST),
            None,
            "host",
            UNSIGNED_PAYLOAD,
        );
        assert_eq!(
            canonical,
            format!(
                "GET\n/test.txt\n{EXAMPLE_QUERY}\nhost:{EXAMPLE_HOST}\n\nhost\nUNSIGNED-PAYLOAD"
            )
        );
        let scope = Scope {
            date: "20130524",
            region: "us-east-1",
        };
        let to_sign = string_to_sign("20130524T000000Z", &scope, &canonical);
        assert_eq!(
            to_sign,
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04"
        );
        let mut mac = keyed_hmac(&signing_key(EXAMPLE_SECRET, &scope));
        mac.update(to_sign.as_bytes());
        assert_eq!(hex::encode(mac.finalize().into_bytes()), EXAMPLE_SIGNATURE);
    }

    #[test]
    fn accepts_the_aws_published_presigned_url_until_it_expires() {
        let verifier = example_verifier();
        let uri = example_uri(EXAMPLE_SIGNATURE);
        let headers = host_headers(EXAMPLE_HOST);
        for now in [
            EXAMPLE_SIGNED_AT,
            EXAMPLE_SIGNED_AT + 3600,
            EXAMPLE_SIGNED_AT + 86_400,
        ] {
            verifier
                .verify(&Method::GET, &uri, &headers, b"", at(now))
                .unwrap();
        }
        let expired = verifier
            .verify(
                &Method::GET,
                &uri,
                &headers,
                b"",
                at(EXAMPLE_SIGNED_AT + 86_401),
            )
            .unwrap_err();
        assert_eq!(expired.status, StatusCode::FORBIDDEN);
        assert_eq!(expired.code, "AccessDenied");
        assert_eq!(expired.message, "Request has expired");
        assert!(
            expired
                .body()
                .contains("<Code>AccessDenied</Code><Message>Request has expired</Message>")
        );

        let early = verifier
            .verify(
                &Method::GET,
                &uri,
                &headers,
                b"",
                at(EXAMPLE_SIGNED_AT - 3600),
            )
            .unwrap_err();
        assert_eq!(early.message, "Request is not valid yet");
    }

    #[test]
    fn refuses_anything_that_differs_from_what_was_signed() {
        let verifier = example_verifier();
        let now = at(EXAMPLE_SIGNED_AT + 60);
        let headers = host_headers(EXAMPLE_HOST);
        let mismatch = |method: &Method, uri: &Uri, headers: &HeaderMap| {
            let rejection = verifier.verify(method, uri, headers, b"", now).unwrap_err();
            assert_eq!(rejection.status, StatusCode::FORBIDDEN, "{rejection:?}");
            assert_eq!(rejection.code, "SignatureDoesNotMatch", "{rejection:?}");
        };

        let mut tampered = EXAMPLE_SIGNATURE.to_owned();
        tampered.replace_range(0..1, "b");
        mismatch(&Method::GET, &example_uri(&tampered), &headers);
        mismatch(&Method::GET, &example_uri("not-hex"), &headers);
        mismatch(&Method::PUT, &example_uri(EXAMPLE_SIGNATURE), &headers);
        mismatch(
            &Method::GET,
            &format!("/other.txt?{EXAMPLE_QUERY}&X-Amz-Signature={EXAMPLE_SIGNATURE}")
                .parse()
                .unwrap(),
            &headers,
        );
        mismatch(
            &Method::GET,
            &format!("/test.txt?{EXAMPLE_QUERY}&versionId=1&X-Amz-Signature={EXAMPLE_SIGNATURE}")
                .parse()
                .unwrap(),
            &headers,
        );
        mismatch(
            &Method::GET,
            &example_uri(EXAMPLE_SIGNATURE),
            &host_headers("otherbucket.s3.amazonaws.com"),
        );

        let wrong_secret = Verifier {
            access_key_id: EXAMPLE_KEY_ID.to_owned(),
            secret_access_key: "not-the-secret".to_owned(),
        };
        let rejection = wrong_secret
            .verify(
                &Method::GET,
                &example_uri(EXAMPLE_SIGNATURE),
                &headers,
                b"",
                now,
            )
            .unwrap_err();
        assert_eq!(rejection.code, "SignatureDoesNotMatch");
        assert!(
            rejection
                .body()
                .contains("<CanonicalRequest>GET\n/test.txt\n")
        );

        let other_key = Verifier {
            access_key_id: "AKIDOTHER".to_owned(),
            secret_access_key: EXAMPLE_SECRET.to_owned(),
        };
        let rejection = other_key
            .verify(
                &Method::GET,
                &example_uri(EXAMPLE_SIGNATURE),
                &headers,
                b"",
                now,
            )
            .unwrap_err();
        assert_eq!(rejection.code, "InvalidAccessKeyId");

        let mut with_amz_header = headers.clone();
        with_amz_header.insert("x-amz-meta-owner", HeaderValue::from_static("mallory"));
        let rejection = verifier
            .verify(
                &Method::GET,
                &example_uri(EXAMPLE_SIGNATURE),
                &with_amz_header,
                b"",
                now,
            )
            .unwrap_err();
        assert_eq!(rejection.code, "AccessDenied");
        assert!(
            rejection
                .body()
                .contains("<HeadersNotSigned>x-amz-meta-owner</HeadersNotSigned>")
        );
    }

    #[test]
    fn refuses_malformed_authentication_parameters() {
        let verifier = example_verifier();
        let now = at(EXAMPLE_SIGNED_AT + 60);
        let headers = host_headers(EXAMPLE_HOST);
        for query in [
            EXAMPLE_QUERY.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1"),
            EXAMPLE_QUERY.replace("%2Fs3%2F", "%2Fsqs%2F"),
            EXAMPLE_QUERY.replace("%2F20130524%2F", "%2F20130525%2F"),
            EXAMPLE_QUERY.replace("%2Faws4_request", ""),
            EXAMPLE_QUERY.replace("X-Amz-Expires=86400", "X-Amz-Expires=604801"),
            EXAMPLE_QUERY.replace("X-Amz-Expires=86400", "X-Amz-Expires=soon"),
            EXAMPLE_QUERY.replace("X-Amz-Date=20130524T000000Z", "X-Amz-Date=2013-05-24"),
            EXAMPLE_QUERY.replace("&X-Amz-SignedHeaders=host", ""),
        ] {
            let uri: Uri = format!("/test.txt?{query}&X-Amz-Signature={EXAMPLE_SIGNATURE}")
                .parse()
                .unwrap();
            let rejection = verifier
                .verify(&Method::GET, &uri, &headers, b"", now)
                .unwrap_err();
            assert_eq!(
                rejection.status,
                StatusCode::BAD_REQUEST,
                "{query}: {rejection:?}"
            );
        }
        let unsigned: Uri = format!("/test.txt?{EXAMPLE_QUERY}").parse().unwrap();
        let rejection = verifier
            .verify(&Method::GET, &unsigned, &headers, b"", now)
            .unwrap_err();
        assert_eq!(rejection.code, "AuthorizationQueryParametersError");
    }

    #[test]
    fn canonicalisation_follows_sigv4_encoding_rules() {
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/b/a%20b/c"), "/b/a%20b/c");
        // A client may leave sub-delimiters unescaped; S3 still encodes them once.
        assert_eq!(canonical_uri("/b/it's(1)!"), "/b/it%27s%281%29%21");
        assert_eq!(canonical_uri("/b/%C3%A9~x"), "/b/%C3%A9~x");
        assert_eq!(
            canonical_query("uploads&b=2&a=%2F+x&X-Amz-Signature=ff&a=1"),
            "a=%2F%2Bx&a=1&b=2&uploads="
        );
        let mut headers = HeaderMap::new();
        headers.append("x-amz-meta-a", HeaderValue::from_static("  one   two  "));
        headers.append("x-amz-meta-a", HeaderValue::from_static("three"));
        assert_eq!(
            canonical_header_value(&headers, "x-amz-meta-a", None),
            "one two,three"
        );
        assert_eq!(canonical_header_value(&headers, "host", Some("h:1")), "h:1");
    }

    // --- Through the running gate, signed by the real SDK presigner --------

    const KEY_ID: &str = "gate-test-key";
    const SECRET: &str = "gate-test-secret";

    #[derive(Debug, Clone)]
    struct Seen {
        method: Method,
        uri: String,
        host: Option<String>,
        content_type: Option<String>,
        body: Bytes,
    }

    /// A stand-in upstream that records what reaches it.
    async fn fake_upstream() -> (String, Arc<Mutex<Vec<Seen>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = Arc::clone(&seen);
        let app = Router::new().fallback(move |request: Request| {
            let recorder = Arc::clone(&recorder);
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, MAX_BODY_BYTES).await.unwrap();
                let get_header = |name: header::HeaderName| {
                    parts
                        .headers
                        .get(name)
                        .map(|value| value.to_str().unwrap().to_owned())
                };
                recorder.lock().unwrap().push(Seen {
                    method: parts.method.clone(),
                    uri: parts.uri.to_string(),
                    host: get_header(header::HOST),
                    content_type: get_header(header::CONTENT_TYPE),
                    body: body.clone(),
                });
                let status = if parts.uri.path() == "/missing" {
                    StatusCode::NOT_FOUND
                } else {
                    StatusCode::OK
                };
                (status, [("x-upstream", "moto-stand-in")], body)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}"), seen)
    }

    fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(KEY_ID, SECRET, None, None, "test"))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    async fn presign_put(client: &aws_sdk_s3::Client, presigning: PresigningConfig) -> String {
        client
            .put_object()
            .bucket("bucket")
            .key("dir/photo (1).png")
            .content_length(5)
            .content_type("image/png")
            .presigned(presigning)
            .await
            .unwrap()
            .uri()
            .to_owned()
    }

    #[tokio::test]
    async fn gate_enforces_sdk_presigned_puts_and_forwards_the_rest() {
        let (upstream, seen) = fake_upstream().await;
        let gate = S3Gate::start(&upstream, KEY_ID, SECRET).await.unwrap();
        let client = s3_client(gate.endpoint());
        let url = presign_put(
            &client,
            PresigningConfig::expires_in(StdDuration::from_secs(300)).unwrap(),
        )
        .await;
        assert!(
            url.starts_with(&format!(
                "{}/bucket/dir/photo%20%281%29.png?",
                gate.endpoint()
            )),
            "{url}"
        );
        assert!(
            url.contains("X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost"),
            "{url}"
        );
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let put = |content_type: &'static str, body: &'static [u8]| {
            http.put(&url)
                .header(header::CONTENT_TYPE, content_type)
                .body(body)
                .send()
        };

        let ok = put("image/png", b"12345").await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()["x-upstream"], "moto-stand-in");
        {
            let seen = seen.lock().unwrap();
            assert_eq!(seen.len(), 1);
            assert_eq!(seen[0].method, Method::PUT);
            assert!(
                seen[0].uri.starts_with("/bucket/dir/photo%20%281%29.png?"),
                "{:?}",
                seen[0]
            );
            assert_eq!(
                seen[0].host.as_deref(),
                Some(gate.endpoint().trim_start_matches("http://"))
            );
            assert_eq!(seen[0].content_type.as_deref(), Some("image/png"));
            assert_eq!(seen[0].body.as_ref(), b"12345");
        }

        for (content_type, body) in [
            ("image/png", &b"123456"[..]),
            ("image/png", &b"1234"[..]),
            ("text/html", &b"12345"[..]),
        ] {
            let refused = put(content_type, body).await.unwrap();
            assert_eq!(refused.status(), StatusCode::FORBIDDEN);
            let text = refused.text().await.unwrap();
            assert!(
                text.contains("<Code>SignatureDoesNotMatch</Code>"),
                "{text}"
            );
        }

        let expired_url = presign_put(
            &client,
            PresigningConfig::builder()
                .start_time(SystemTime::now() - StdDuration::from_secs(120))
                .expires_in(StdDuration::from_secs(60))
                .build()
                .unwrap(),
        )
        .await;
        let expired = http
            .put(&expired_url)
            .header(header::CONTENT_TYPE, "image/png")
            .body(&b"12345"[..])
            .send()
            .await
            .unwrap();
        assert_eq!(expired.status(), StatusCode::FORBIDDEN);
        let text = expired.text().await.unwrap();
        assert!(
            text.contains("<Error><Code>AccessDenied</Code><Message>Request has expired</Message>"),
            "{text}"
        );
        assert_eq!(
            seen.lock().unwrap().len(),
            1,
            "refused requests must not reach the upstream"
        );

        // Presigned GET: only `host` is signed.
        let get_url = client
            .get_object()
            .bucket("bucket")
            .key("k")
            .presigned(PresigningConfig::expires_in(StdDuration::from_secs(60)).unwrap())
            .await
            .unwrap()
            .uri()
            .to_owned();
        assert_eq!(
            http.get(&get_url).send().await.unwrap().status(),
            StatusCode::OK
        );

        // Not presigned: forwarded as it is, status and body included.
        let plain = http
            .post(format!("{}/missing?x=1", gate.endpoint()))
            .header(header::CONTENT_TYPE, "text/plain")
            .body("hello")
            .send()
            .await
            .unwrap();
        assert_eq!(plain.status(), StatusCode::NOT_FOUND);
        assert_eq!(plain.headers()["x-upstream"], "moto-stand-in");
        assert_eq!(plain.text().await.unwrap(), "hello");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[2].method, Method::POST);
        assert_eq!(seen[2].uri, "/missing?x=1");
        assert_eq!(seen[2].body.as_ref(), b"hello");
    }

    #[tokio::test]
    async fn dropping_the_gate_stops_it() {
        let (upstream, _seen) = fake_upstream().await;
        let gate = S3Gate::start(&upstream, KEY_ID, SECRET).await.unwrap();
        let endpoint = gate.endpoint().to_owned();
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        assert_eq!(
            http.get(&endpoint).send().await.unwrap().status(),
            StatusCode::OK
        );
        drop(gate);
        tokio::time::sleep(StdDuration::from_millis(200)).await;
        assert!(http.get(&endpoint).send().await.is_err());
    }

    #[tokio::test]
    async fn start_rejects_a_bad_upstream() {
        assert!(S3Gate::start("not a url", KEY_ID, SECRET).await.is_err());
        assert!(
            S3Gate::start("ftp://127.0.0.1:1", KEY_ID, SECRET)
                .await
                .is_err()
        );
    }
}
