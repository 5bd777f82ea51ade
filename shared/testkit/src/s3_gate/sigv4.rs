//! SigV4 query-string verification as S3 does it: the canonical request
//! rebuilt from the request as it arrived, the string to sign, the signing
//! key, and a constant-time comparison.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Checks query-string SigV4 requests against one key pair.
pub(super) struct Verifier {
    pub(super) access_key_id: String,
    pub(super) secret_access_key: String,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// The parsed `X-Amz-Credential` scope.
pub(super) struct Scope<'a> {
    pub(super) date: &'a str,
    pub(super) region: &'a str,
}

impl Verifier {
    /// Verifies a presigned request the way S3 does; `now` is the server time.
    pub(super) fn verify(
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

pub(super) fn format_timestamp(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

/// Splits a raw query into percent-decoded `(name, value)` pairs, in order.
/// `+` is kept literally, as S3 does for SigV4.
pub(super) fn query_pairs(raw_query: &str) -> impl Iterator<Item = (String, String)> + '_ {
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
pub(super) fn canonical_query(raw_query: &str) -> String {
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
pub(super) fn canonical_uri(raw_path: &str) -> String {
    if raw_path.is_empty() {
        return "/".to_owned();
    }
    let decoded: Vec<u8> = percent_decode_str(raw_path).collect();
    percent_encode(&decoded, SIGV4_ENCODE_PATH).to_string()
}

/// One signed header's canonical value: all its values, trimmed, inner runs
/// of spaces collapsed, joined with commas. `host` falls back to the URI's
/// authority (HTTP/2).
pub(super) fn canonical_header_value(
    headers: &HeaderMap,
    name: &str,
    authority: Option<&str>,
) -> String {
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
pub(super) fn canonical_request(
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

pub(super) fn string_to_sign(amz_date: &str, scope: &Scope<'_>, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{date}/{region}/s3/aws4_request\n{hash}",
        date = scope.date,
        region = scope.region,
        hash = hex::encode(Sha256::digest(canonical_request.as_bytes())),
    )
}

pub(super) fn keyed_hmac(key: &[u8]) -> HmacSha256 {
    <HmacSha256 as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
}

/// The SigV4 signing key: the HMAC chain from `"AWS4" + secret` over the
/// scope's date, region, service and terminator.
pub(super) fn signing_key(secret_access_key: &str, scope: &Scope<'_>) -> Vec<u8> {
    let mut key = format!("AWS4{secret_access_key}").into_bytes();
    for part in [scope.date, scope.region, "s3", "aws4_request"] {
        let mut mac = keyed_hmac(&key);
        mac.update(part.as_bytes());
        key = mac.finalize().into_bytes().to_vec();
    }
    key
}
