//! The API Gateway HTTP API Lambda authorizer (payload 2.0, simple
//! responses): the same token verification as every service, answered as
//! `isAuthorized` plus the caller's `account`, `org` and `role` as context.
//!
//! It lives here, beside the extractor, so that both run exactly the same
//! checks; the `authorizer` binary only loads a verifier and calls
//! [`authorize`]. API Gateway caches the answer per token for the authorizer's
//! TTL, so a token may pass the gateway for that long past its expiry: every
//! service checks the token again ([`crate::auth::Authenticated`]).

use aws_lambda_events::event::apigw::{
    ApiGatewayV2CustomAuthorizerSimpleResponse, ApiGatewayV2CustomAuthorizerV2Request,
};
use axum::http::header::AUTHORIZATION;
use constellation_platform::tokens::TokenVerifier;
use serde_json::{Value, json};

use crate::auth::parse_bearer;

/// Decides one authorizer request. Never panics and never fails: a missing,
/// invalid or unverifiable token (keys unavailable included) is denied.
pub async fn authorize(
    verifier: &TokenVerifier,
    request: ApiGatewayV2CustomAuthorizerV2Request,
) -> ApiGatewayV2CustomAuthorizerSimpleResponse<Value> {
    let mut response = ApiGatewayV2CustomAuthorizerSimpleResponse::<Value>::default();
    response.is_authorized = false;
    response.context = json!({});
    let route = request.route_arn.as_deref().unwrap_or_default();
    let Some(credential) = credential(&request) else {
        tracing::info!(route, reason = "no bearer token", "authorizer denied");
        return response;
    };
    match verifier.verify(credential).await {
        Ok(claims) => {
            response.is_authorized = true;
            response.context = json!({
                "account": claims.sub.as_str(),
                "org": claims.org.as_str(),
                "role": claims.role.as_str(),
            });
        }
        Err(e) => tracing::info!(route, reason = %e, "authorizer denied"),
    }
    response
}

/// The bearer token: the identity source API Gateway extracted (the
/// `Authorization` header), or that header itself.
fn credential(request: &ApiGatewayV2CustomAuthorizerV2Request) -> Option<&str> {
    let from_source = request
        .identity_source
        .as_ref()
        .and_then(|sources| sources.first())
        .map(String::as_str);
    let from_header = || {
        let mut values = request.headers.get_all(AUTHORIZATION).iter();
        match (values.next(), values.next()) {
            (Some(v), None) => v.to_str().ok(),
            _ => None,
        }
    };
    from_source.or_else(from_header).and_then(parse_bearer)
}
