//! Authentication for every service: the [`Authenticated`] extractor turns an
//! `Authorization: Bearer <access token>` header into the caller's
//! [`Principal`], and [`Authenticated::require`] is the one place a role is
//! checked.
//!
//! Services verify the token themselves even behind the API Gateway
//! authorizer (defence in depth: the gateway caches its answers for minutes).
//! The verifier is shared through a request extension ([`with_auth`]) rather
//! than each service's state, so one extractor serves every router. Tokens
//! are never logged; rejections log only their reason.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::{Extension, Router};
use constellation_core::auth::{Principal, Role};
use constellation_core::token::Rejection;
use constellation_platform::tokens::{TokenError, TokenVerifier};

use crate::error::{ApiError, ProblemType};

/// The verified caller of a request. As a handler argument it answers 401
/// (with `WWW-Authenticate`) unless the request carries a valid access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated(pub Principal);

impl Authenticated {
    /// The caller, if their role is at least `role`; otherwise 403.
    pub fn require(&self, role: Role) -> Result<&Principal, ApiError> {
        if self.0.role.allows(role) {
            Ok(&self.0)
        } else {
            Err(ApiError::client(
                ProblemType::Forbidden,
                format!("this action requires the {role} role or higher"),
            ))
        }
    }
}

/// Makes `verifier` available to the [`Authenticated`] extractor of every
/// route in `router`.
pub fn with_auth(router: Router, verifier: Arc<TokenVerifier>) -> Router {
    router.layer(Extension(verifier))
}

/// The token of an `Authorization: Bearer <token>` header, if there is one
/// (the scheme is case-insensitive; any other scheme counts as no token).
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, TokenError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        // None at all is no token; several are ambiguous.
        if headers.contains_key(AUTHORIZATION) {
            return Err(Rejection::Malformed.into());
        }
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| TokenError::from(Rejection::Malformed))?;
    Ok(parse_bearer(value))
}

/// The token of a `Bearer <token>` credential, if it is one.
pub fn parse_bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// What a failed verification answers.
pub fn rejection(error: TokenError) -> ApiError {
    match error {
        TokenError::Rejected(Rejection::Missing) => ApiError::Unauthenticated { description: None },
        TokenError::Unavailable(cause) => ApiError::Unavailable(cause),
        TokenError::Rejected(other) => {
            tracing::info!(reason = %other, "access token rejected");
            ApiError::Unauthenticated {
                description: Some(other.to_string()),
            }
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let verifier = parts
            .extensions
            .get::<Arc<TokenVerifier>>()
            .cloned()
            .ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!(
                    "no TokenVerifier in the request extensions: wrap the router with `with_auth`"
                ))
            })?;
        let token = bearer_token(&parts.headers)
            .map_err(rejection)?
            .ok_or(ApiError::Unauthenticated { description: None })?;
        let claims = verifier.verify(token).await.map_err(rejection)?;
        Ok(Self(Principal::from(&claims)))
    }
}
