//! Access tokens as bytes: the one JWS shape Constellation signs and accepts,
//! its keys, and the key-set documents that carry them.
//!
//! An access token is a compact JWS (`alg: EdDSA`, `typ: at+jwt`) over
//! [`Claims`]. The JWS is hand-rolled on purpose: it is small, and it lets
//! verification accept exactly one shape — header
//! `{"alg":"EdDSA","typ":"at+jwt","kid":..}` and nothing else — instead of
//! negotiating algorithms or following key URLs named in a header (`jku`,
//! `jwk`, `x5u`, `x5c` are rejected, never fetched).
//!
//! Everything here is pure: signing takes a key, verifying takes a key (or a
//! key set) and the time, so the same code runs in every service, in the
//! tests, and in a WebAssembly build for clients. Where keys are stored, how
//! they are generated (randomness is the caller's) and how a key set is
//! cached or re-read belong to the callers: `shared/platform` verifies over
//! its Secrets port, the auth function signs and rotates.
//!
//! A `kid` is the key's RFC 7638 JWK thumbprint. The public key set as it is
//! stored ([`PublicKeySet`]) is
//! `{"keys": [{"kid", "x": "<base64url 32-byte key>", "created_at", "not_after"?}]}`;
//! [`Jwks`] is the RFC 7517 form served to clients.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::auth::{Claims, Principal};

mod keys;

pub use keys::{Jwk, Jwks, KeyError, PublicKey, PublicKeyEntry, PublicKeySet, SigningKey};

/// How long an access token is valid.
pub const ACCESS_TOKEN_TTL: Duration = Duration::minutes(15);
/// The JWS header `typ` of an access token (RFC 9068).
pub const TOKEN_TYPE: &str = "at+jwt";
/// The one accepted JWS algorithm.
pub const ALGORITHM: &str = "EdDSA";
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const CLOCK_LEEWAY: Duration = Duration::seconds(30);

/// Why a token was not accepted. The texts are safe to show a client and
/// never contain the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// No token was presented.
    #[error("no access token was presented")]
    Missing,
    /// Not a compact JWS of three base64url parts with the expected header and claims.
    #[error("the access token is malformed")]
    Malformed,
    /// The header's `alg` is not `EdDSA`.
    #[error("the access token's algorithm is not accepted")]
    Algorithm,
    /// The header's `typ` is not `at+jwt`.
    #[error("the token is not an access token")]
    Type,
    /// The `kid` is not in the public key set (or is missing, retired past its
    /// validity, or the header points at a key elsewhere: `jku`, `jwk`, `x5u`, `x5c`).
    #[error("the access token's signing key is not recognised")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the access token's signature is invalid")]
    Signature,
    /// `exp` has passed.
    #[error("the access token has expired")]
    Expired,
    /// `nbf` (or `iat`) is in the future.
    #[error("the access token is not valid yet")]
    NotYetValid,
    /// `iss` is not this installation.
    #[error("the access token was issued by another issuer")]
    Issuer,
    /// `aud` is not this API.
    #[error("the access token is meant for another audience")]
    Audience,
}

/// Who must have issued a token, and for whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected<'a> {
    /// The required `iss`.
    pub issuer: &'a str,
    /// The required `aud`.
    pub audience: &'a str,
}

/// The claims of an access token for `principal`, issued at `now` by
/// `scope.issuer` for `scope.audience`, valid for [`ACCESS_TOKEN_TTL`].
/// `jti` must be unique (random: the caller's).
pub fn access_claims(
    scope: Expected<'_>,
    principal: &Principal,
    now: OffsetDateTime,
    jti: String,
) -> Claims {
    let iat = now.unix_timestamp();
    Claims {
        iss: scope.issuer.to_owned(),
        aud: scope.audience.to_owned(),
        sub: principal.account.clone(),
        org: principal.org.clone(),
        role: principal.role,
        exp: iat + ACCESS_TOKEN_TTL.whole_seconds(),
        iat,
        nbf: iat,
        jti,
    }
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

/// The only header a token may carry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct StrictHeader {
    alg: String,
    typ: String,
    kid: String,
}

/// Header parameters that point at keys outside our key set.
const KEY_REFERENCE_PARAMS: &[&str] = &["jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256"];

fn decode_segment(segment: &str) -> Result<Vec<u8>, Rejection> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| Rejection::Malformed)
}

/// Checks the header and returns its `kid`.
fn check_header(raw: &[u8]) -> Result<String, Rejection> {
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(raw).map_err(|_| Rejection::Malformed)?;
    match header.get("alg") {
        Some(serde_json::Value::String(alg)) if alg == ALGORITHM => {}
        _ => return Err(Rejection::Algorithm),
    }
    match header.get("typ") {
        Some(serde_json::Value::String(typ))
            if typ.eq_ignore_ascii_case(TOKEN_TYPE)
                || typ.eq_ignore_ascii_case("application/at+jwt") => {}
        _ => return Err(Rejection::Type),
    }
    if KEY_REFERENCE_PARAMS.iter().any(|p| header.contains_key(*p)) {
        return Err(Rejection::UnknownKey);
    }
    let Some(serde_json::Value::String(kid)) = header.get("kid") else {
        return Err(Rejection::UnknownKey);
    };
    let kid = kid.clone();
    // Anything else (`crit`, `b64`, duplicate names, ...) is not ours.
    serde_json::from_slice::<StrictHeader>(raw).map_err(|_| Rejection::Malformed)?;
    Ok(kid)
}

/// A token whose structure and header passed, awaiting its key: the first
/// half of [`verify`], for callers that look keys up asynchronously.
pub struct UnverifiedToken<'a> {
    /// `<header>.<payload>`, as signed.
    signing_input: &'a str,
    kid: String,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

impl fmt::Debug for UnverifiedToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnverifiedToken")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl<'a> UnverifiedToken<'a> {
    /// Checks that `token` is three base64url parts whose header is exactly
    /// `alg: EdDSA`, `typ: at+jwt` and a `kid`, and nothing else.
    pub fn parse(token: &'a str) -> Result<Self, Rejection> {
        if token.is_empty() {
            return Err(Rejection::Missing);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Rejection::Malformed);
        };
        let header = decode_segment(h)?;
        let payload = decode_segment(p)?;
        let signature = decode_segment(s)?;
        let kid = check_header(&header)?;
        Ok(Self {
            signing_input: &token[..h.len() + 1 + p.len()],
            kid,
            payload,
            signature,
        })
    }

    /// The `kid` the header names.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Checks the signature with `key` (`verify_strict`), then `iss`, `aud`,
    /// `exp`, `nbf` and `iat` at `now` with [`CLOCK_LEEWAY`] of tolerance.
    pub fn verify(
        self,
        key: &PublicKey,
        expected: Expected<'_>,
        now: OffsetDateTime,
    ) -> Result<Claims, Rejection> {
        if !key.verifies(self.signing_input.as_bytes(), &self.signature) {
            return Err(Rejection::Signature);
        }

        let claims: Claims =
            serde_json::from_slice(&self.payload).map_err(|_| Rejection::Malformed)?;
        if claims.iss != expected.issuer {
            return Err(Rejection::Issuer);
        }
        if claims.aud != expected.audience {
            return Err(Rejection::Audience);
        }
        let now = now.unix_timestamp();
        let leeway = CLOCK_LEEWAY.whole_seconds();
        if now >= claims.exp.saturating_add(leeway) {
            return Err(Rejection::Expired);
        }
        if claims.nbf > now.saturating_add(leeway) || claims.iat > now.saturating_add(leeway) {
            return Err(Rejection::NotYetValid);
        }
        Ok(claims)
    }
}

/// Verifies a compact JWS access token and returns its claims. Checks, in
/// order: three base64url parts; header exactly `alg: EdDSA`, `typ: at+jwt`,
/// a `kid` that `key_for` knows, and nothing else; the signature
/// (`verify_strict`); then `iss`, `aud`, `exp`, `nbf` and `iat` at `now` with
/// [`CLOCK_LEEWAY`] (30 s) of tolerance.
pub fn verify(
    token: &str,
    key_for: impl FnOnce(&str) -> Option<PublicKey>,
    expected: Expected<'_>,
    now: OffsetDateTime,
) -> Result<Claims, Rejection> {
    let unverified = UnverifiedToken::parse(token)?;
    let key = key_for(unverified.kid()).ok_or(Rejection::UnknownKey)?;
    unverified.verify(&key, expected, now)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
