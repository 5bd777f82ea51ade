//! Extractors that turn rejections into problem+json.
//!
//! [`Json`] parses a body into a DTO (declare DTOs with
//! `#[serde(deny_unknown_fields)]`) and names the field at fault, for unknown
//! fields as for wrong types. [`LimitedBody`] reads a raw body and answers
//! 413 past the route's limit.

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequest, Query, Request};
use axum::http::header;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ProblemType};

/// A JSON body parsed strictly.
#[derive(Debug, Clone)]
pub struct Json<T>(pub T);

fn body_rejection(e: BytesRejection) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::client(
            ProblemType::PayloadTooLarge,
            "the body is larger than this route accepts",
        )
    } else {
        ApiError::client(ProblemType::MalformedBody, "the body could not be read")
    }
}

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                let m = m.trim();
                m.eq_ignore_ascii_case("application/json") || m.ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::client(
                ProblemType::UnsupportedMediaType,
                "send the body as application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        // Every body is an object: serde would also read a struct from an
        // array of its fields in order, which no client means.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::Client {
                problem: ProblemType::MalformedBody,
                detail: "body: must be a JSON object".into(),
                field: Some("body".into()),
            });
        }
        parse_json(&bytes).map(Json)
    }
}

/// Parses JSON, naming the path of the field at fault.
///
/// The body must be exactly one JSON value: anything but whitespace after it
/// (`{..}GARBAGE`, a second document) is a 400 `invalid-input` naming
/// `body`, so that a proxy or a client that concatenates requests can never
/// have half of what it sent silently dropped.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = deserialize_with_path(de)?;
    de.end()
        .map_err(|_| ApiError::invalid("body", "has data after the JSON value"))?;
    Ok(value)
}

fn deserialize_with_path<'de, T: DeserializeOwned>(
    de: &mut serde_json::Deserializer<serde_json::de::SliceRead<'de>>,
) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        // serde names an unknown or missing field in its message; surface
        // it as the field (under the path of the object that lacks it).
        let named = message
            .strip_prefix("unknown field `")
            .or_else(|| message.strip_prefix("missing field `"))
            .and_then(|rest| rest.split('`').next());
        let field = match named {
            Some(name) if path == "." => Some(name.to_owned()),
            Some(name) if message.starts_with("missing") => Some(format!("{path}.{name}")),
            Some(name) => Some(name.to_owned()),
            None if path != "." => Some(path),
            None => None,
        };
        // Strip serde's " at line N column M" so the detail reads as a sentence.
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_owned();
        ApiError::Client {
            problem: ProblemType::MalformedBody,
            detail: match &field {
                Some(f) => format!("{f}: {message}"),
                None => message,
            },
            field,
        }
    })
}

/// A query string parsed strictly: a parameter the route does not take is a
/// 400 naming it. Handlers take `Result<Query<Vec<(String, String)>>,
/// QueryRejection>` and pass it here with the names they accept.
pub fn query_params(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    allowed: &[&str],
) -> Result<Vec<(String, String)>, ApiError> {
    let Query(pairs) =
        query.map_err(|_| ApiError::invalid("query", "is not a valid query string"))?;
    if let Some((name, _)) = pairs.iter().find(|(n, _)| !allowed.contains(&n.as_str())) {
        return Err(ApiError::invalid(
            name.clone(),
            "is not a parameter of this route",
        ));
    }
    // Every parameter is single-valued: `?limit=1&limit=1000` is refused
    // rather than read as one of them (which one would be a guess).
    for (i, (name, _)) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|(n, _)| n == name) {
            return Err(ApiError::invalid(name.clone(), "is given more than once"));
        }
    }
    Ok(pairs)
}

/// The value of query parameter `name`, if present.
pub fn query_param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A raw body, refused with 413 past the limit set on the route with
/// `axum::extract::DefaultBodyLimit`.
#[derive(Debug, Clone)]
pub struct LimitedBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for LimitedBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(LimitedBody)
            .map_err(body_rejection)
    }
}

/// Deserializes a JSON number that is a whole number into a `u64`: an
/// integer, or a number without fractional part (`404.0` is the integer
/// 404 to JSON Schema, so to clients that generate requests from the
/// OpenAPI document). Use with `#[serde(deserialize_with = ...)]`.
pub fn whole_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = whole(d)?;
    u64::try_from(n).map_err(|_| {
        serde::de::Error::custom("invalid value: expected a whole number of at least 0")
    })
}

/// [`whole_u64`] for signed numbers.
pub fn whole_i64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    whole(d)
}

fn whole<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    use serde::Deserialize as _;
    let n = serde_json::Number::deserialize(d)?;
    if let Some(n) = n.as_i64() {
        return Ok(n);
    }
    match n.as_f64() {
        // Within ±2^53 every whole f64 is exact.
        Some(f) if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 =>
        {
            #[allow(clippy::cast_possible_truncation)]
            Ok(f as i64)
        }
        _ => Err(serde::de::Error::custom(
            "invalid value: expected a whole number",
        )),
    }
}

/// Deserializes an optional field that, when present, must not be `null`
/// (a merge patch's `null` would remove a field that cannot be removed):
/// use with `#[serde(default, deserialize_with = "not_null")]`.
pub fn not_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// What a `{id}` path parameter parses into (400 naming `id` otherwise).
pub trait FromPathId: Sized {
    /// Parses the raw path segment.
    fn from_path_id(raw: &str) -> Result<Self, constellation_core::ValidationError>;
}

/// A time-ordered record id (`constellation_core::ids::time_ordered_id`), kept as text.
impl FromPathId for String {
    fn from_path_id(raw: &str) -> Result<Self, constellation_core::ValidationError> {
        if constellation_core::ids::is_time_ordered_id(raw) {
            Ok(raw.to_owned())
        } else {
            Err(constellation_core::ValidationError::new(
                "id",
                "must be an id as issued",
            ))
        }
    }
}

impl FromPathId for constellation_core::media::MediaId {
    fn from_path_id(raw: &str) -> Result<Self, constellation_core::ValidationError> {
        Self::parse(raw)
    }
}

/// The `{id}` path parameter, parsed as `T`: a 400 naming `id` when it is
/// not one, before the handler runs.
#[derive(Debug, Clone)]
pub struct PathId<T>(pub T);

impl<S: Send + Sync, T: FromPathId> axum::extract::FromRequestParts<S> for PathId<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::invalid("id", "must be an id as issued"))?;
        Ok(Self(T::from_path_id(&raw)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct ThingForCreate {
        name: String,
        size: u32,
    }

    fn field_of(body: &str) -> Option<String> {
        match parse_json::<ThingForCreate>(body.as_bytes()) {
            Err(ApiError::Client { field, .. }) => field,
            other => panic!("expected a client error, got {other:?}"),
        }
    }

    #[test]
    fn query_parameters_are_known_and_single() {
        let q = |pairs: &[(&str, &str)]| {
            Ok(Query(
                pairs
                    .iter()
                    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                    .collect(),
            ))
        };
        let field = |r: Result<Vec<(String, String)>, ApiError>| match r {
            Err(ApiError::Client { field, .. }) => field,
            other => panic!("expected a client error, got {other:?}"),
        };
        assert!(query_params(q(&[("limit", "1"), ("cursor", "c")]), &["limit", "cursor"]).is_ok());
        assert_eq!(
            field(query_params(
                q(&[("limit", "1"), ("limit", "1000")]),
                &["limit"]
            ))
            .as_deref(),
            Some("limit")
        );
        assert_eq!(
            field(query_params(
                q(&[("limit", "1"), ("colour", "red")]),
                &["limit"]
            ))
            .as_deref(),
            Some("colour")
        );
    }

    #[test]
    fn json_errors_name_the_field() {
        assert_eq!(
            field_of(r#"{"name":"a","size":1,"colour":"red"}"#).as_deref(),
            Some("colour")
        );
        assert_eq!(
            field_of(r#"{"name":"a","size":"big"}"#).as_deref(),
            Some("size")
        );
        assert_eq!(
            field_of(r#"{"name":"a"}"#).as_deref(),
            Some("size"),
            "a missing field is named"
        );
        assert!(parse_json::<ThingForCreate>(br#"{"name":"a","size":2}"#).is_ok());
    }

    #[derive(Debug, serde::Deserialize)]
    struct Sized {
        #[serde(deserialize_with = "whole_u64")]
        size: u64,
        #[serde(deserialize_with = "whole_i64")]
        delta: i64,
    }

    #[test]
    fn whole_numbers_may_be_written_as_floats() {
        let ok: Sized = parse_json(br#"{"size":404.0,"delta":-3}"#).unwrap();
        assert_eq!((ok.size, ok.delta), (404, -3));
        for bad in [
            r#"{"size":1.5,"delta":1}"#,
            r#"{"size":-1,"delta":1}"#,
            r#"{"size":1,"delta":"1"}"#,
            r#"{"size":1e300,"delta":1}"#,
        ] {
            assert!(parse_json::<Sized>(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_whitespace_may_follow_the_value() {
        assert_eq!(
            field_of(r#"{"name":"a","size":1}GARBAGE"#).as_deref(),
            Some("body")
        );
        assert_eq!(
            field_of(r#"{"name":"a","size":1} []"#).as_deref(),
            Some("body")
        );
        assert!(parse_json::<ThingForCreate>(b"{\"name\":\"a\",\"size\":2}\n\t ").is_ok());
    }
}
