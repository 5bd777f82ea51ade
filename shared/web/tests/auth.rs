//! Authentication as a client sees it: the bearer-token extractor's 401s and
//! their `WWW-Authenticate` challenges, the 403 of a role check, and the API
//! Gateway authorizer fed the sample events in `events/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use aws_lambda_events::event::apigw::ApiGatewayV2CustomAuthorizerV2Request;
use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::routing::{get, post};
use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Principal, Role};
use constellation_core::token::{ACCESS_TOKEN_TTL, CLOCK_LEEWAY};
use constellation_platform::observe::MetricsSink;
use constellation_platform::tokens::{TokenVerifier, VerifierConfig, load_verifier};
use constellation_platform::{ManualClock, config::Platform};
use constellation_testkit::http::TestTokens;
use constellation_web::authorizer::authorize;
use constellation_web::{ApiError, Authenticated, ServiceInfo, service, with_auth};
use http::Request;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

struct Fx {
    _dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    tokens: TestTokens,
    verifier: Arc<TokenVerifier>,
    app: Router,
}

async fn fx() -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    let platform = Platform::local(dir.path().to_path_buf(), String::new(), clock.clone()).unwrap();
    let cfg = VerifierConfig::default();
    let tokens = TestTokens::on_platform(&platform, clock.clone(), cfg.clone()).await;
    let verifier = load_verifier(&platform, &cfg).await.unwrap();
    let routes = Router::new()
        .route(
            "/v1/demo/me",
            get(|Authenticated(p): Authenticated| async move {
                axum::Json(json!({
                    "account": p.account.as_str(), "org": p.org.as_str(), "role": p.role.as_str(),
                }))
            }),
        )
        .route(
            "/v1/demo/admin-only",
            post(|auth: Authenticated| async move {
                auth.require(Role::Admin)?;
                Ok::<_, ApiError>(StatusCode::NO_CONTENT)
            }),
        );
    let app = service(
        ServiceInfo {
            name: "demo",
            metrics: MetricsSink::from_fn(|_| {}),
        },
        with_auth(routes, verifier.clone()),
    );
    Fx {
        _dir: dir,
        clock,
        tokens,
        verifier,
        app,
    }
}

fn fx_principal(role: Role) -> Principal {
    Principal {
        account: AccountId::from_bytes([0xab; 16]),
        org: OrgId::parse("acme").unwrap(),
        role,
    }
}

impl Fx {
    fn token(&self, role: Role) -> String {
        self.tokens.token_for(&fx_principal(role))
    }

    async fn call(&self, req: Request<Body>) -> (StatusCode, http::HeaderMap, String) {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    async fn get_me(&self, authorization: Option<&str>) -> (StatusCode, http::HeaderMap, String) {
        let mut req = Request::get("/v1/demo/me");
        if let Some(value) = authorization {
            req = req.header("authorization", value);
        }
        self.call(req.body(Body::empty()).unwrap()).await
    }
}

fn assert_unauthorized(status: StatusCode, headers: &http::HeaderMap, body: &str) -> Value {
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");
    let problem: Value = serde_json::from_str(body).unwrap();
    assert_eq!(problem["type"], "urn:constellation:problem:unauthorized");
    assert_eq!(problem["status"], 401);
    problem
}

#[tokio::test]
async fn a_missing_token_answers_401_with_a_bare_bearer_challenge() {
    let fx = fx().await;
    for authorization in [
        None,
        Some("Basic YWRhOmh1bnRlcjI="),
        Some("Bearer "),
        Some(""),
    ] {
        let (status, headers, body) = fx.get_me(authorization).await;
        assert_unauthorized(status, &headers, &body);
        assert_eq!(
            headers["www-authenticate"], r#"Bearer realm="constellation""#,
            "{authorization:?}"
        );
    }
}

#[tokio::test]
async fn a_garbage_token_answers_401_invalid_token() {
    let fx = fx().await;
    let garbage = "eyJhbGciOiJub25lIn0.e30.";
    let (status, headers, body) = fx.get_me(Some(&format!("Bearer {garbage}"))).await;
    let problem = assert_unauthorized(status, &headers, &body);
    assert_eq!(
        headers["www-authenticate"],
        r#"Bearer realm="constellation", error="invalid_token", error_description="the access token's algorithm is not accepted""#
    );
    assert_eq!(
        problem["detail"],
        "the access token's algorithm is not accepted"
    );
    assert!(!body.contains(garbage));

    for bad in [
        "Bearer not-a-token",
        "Bearer a.b.c.d",
        "bearer opaque-refresh-token",
    ] {
        let (status, headers, body) = fx.get_me(Some(bad)).await;
        assert_unauthorized(status, &headers, &body);
        let challenge = headers["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.starts_with(
                r#"Bearer realm="constellation", error="invalid_token", error_description=""#
            ),
            "{challenge}"
        );
    }
}

#[tokio::test]
async fn an_expired_token_answers_401_saying_so() {
    let fx = fx().await;
    let token = fx.token(Role::Member);
    fx.clock.advance(ACCESS_TOKEN_TTL + CLOCK_LEEWAY);
    let (status, headers, body) = fx.get_me(Some(&format!("Bearer {token}"))).await;
    assert_unauthorized(status, &headers, &body);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .ends_with(r#"error_description="the access token has expired""#)
    );
    assert!(!body.contains(&token));
}

#[tokio::test]
async fn a_valid_token_gives_the_handler_its_principal() {
    let fx = fx().await;
    let token = fx.token(Role::Staff);
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let (status, headers, body) = fx.get_me(Some(&format!("{scheme} {token}"))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(headers.get("www-authenticate").is_none());
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"account": "ab".repeat(16), "org": "acme", "role": "staff"})
        );
    }
}

#[tokio::test]
async fn require_answers_403_below_the_role_and_passes_at_or_above_it() {
    let fx = fx().await;
    let post = |token: String| {
        Request::post("/v1/demo/admin-only")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    for role in [Role::Member, Role::Staff] {
        let (status, headers, body) = fx.call(post(fx.token(role))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{role}");
        assert_eq!(headers["content-type"], "application/problem+json");
        let problem: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["type"], "urn:constellation:problem:forbidden");
        assert!(headers.get("www-authenticate").is_none());
    }
    for role in [Role::Admin, Role::Owner] {
        let (status, _, body) = fx.call(post(fx.token(role))).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{role}: {body}");
    }
    // And without a token, 401 before any role check.
    let req = Request::post("/v1/demo/admin-only")
        .body(Body::empty())
        .unwrap();
    let (status, _, _) = fx.call(req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn require_is_the_role_rule() {
    let auth = Authenticated(fx_principal(Role::Admin));
    assert_eq!(auth.require(Role::Staff).unwrap(), &auth.0);
    assert_eq!(auth.require(Role::Admin).unwrap(), &auth.0);
    let err = auth.require(Role::Owner).unwrap_err();
    assert_eq!(err.problem(), constellation_web::ProblemType::Forbidden);
}

#[tokio::test]
async fn a_router_without_a_verifier_fails_closed() {
    let fx = fx().await;
    let app = Router::new().route(
        "/v1/demo/me",
        get(|Authenticated(_): Authenticated| async { StatusCode::OK }),
    );
    let req = Request::get("/v1/demo/me")
        .header("authorization", format!("Bearer {}", fx.token(Role::Owner)))
        .body(Body::empty())
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

// --- the API Gateway authorizer -------------------------------------------

fn fx_event(name: &str) -> Value {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The allow event with its placeholder replaced by `credential`.
fn fx_allow_event(credential: &str) -> ApiGatewayV2CustomAuthorizerV2Request {
    let mut event = fx_event("authorizer-allow.json");
    assert_eq!(event["identitySource"][0], "Bearer REPLACED-BY-TEST");
    assert_eq!(event["headers"]["authorization"], "Bearer REPLACED-BY-TEST");
    event["identitySource"] = json!([credential]);
    event["headers"]["authorization"] = json!(credential);
    serde_json::from_value(event).unwrap()
}

#[tokio::test]
async fn the_authorizer_allows_a_valid_token_with_its_principal_as_context() {
    let fx = fx().await;
    let token = fx.token(Role::Admin);
    let response = authorize(&fx.verifier, fx_allow_event(&format!("Bearer {token}"))).await;
    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        json!({
            "isAuthorized": true,
            "context": {"account": "ab".repeat(16), "org": "acme", "role": "admin"},
        })
    );
}

#[tokio::test]
async fn the_authorizer_denies_the_deny_event() {
    let fx = fx().await;
    let event: ApiGatewayV2CustomAuthorizerV2Request =
        serde_json::from_value(fx_event("authorizer-deny.json")).unwrap();
    let response = authorize(&fx.verifier, event).await;
    assert!(!response.is_authorized);
    assert_eq!(response.context, json!({}));
}

#[tokio::test]
async fn the_authorizer_denies_missing_placeholder_expired_and_garbage_tokens() {
    let fx = fx().await;
    let expired = fx.token(Role::Owner);
    fx.clock.advance(ACCESS_TOKEN_TTL + CLOCK_LEEWAY);
    for credential in [
        "Bearer REPLACED-BY-TEST".to_owned(),
        format!("Bearer {expired}"),
        format!("Basic {}", fx.token(Role::Owner)),
        "Bearer ".to_owned(),
        String::new(),
    ] {
        let response = authorize(&fx.verifier, fx_allow_event(&credential)).await;
        assert!(!response.is_authorized, "{credential}");
    }
    // No identity source and no header at all.
    let mut event = fx_event("authorizer-allow.json");
    event.as_object_mut().unwrap().remove("identitySource");
    event["headers"]
        .as_object_mut()
        .unwrap()
        .remove("authorization");
    let response = authorize(&fx.verifier, serde_json::from_value(event).unwrap()).await;
    assert!(!response.is_authorized);
}

#[tokio::test]
async fn the_authorizer_falls_back_to_the_authorization_header() {
    let fx = fx().await;
    let mut event = fx_event("authorizer-allow.json");
    event.as_object_mut().unwrap().remove("identitySource");
    event["headers"]["authorization"] = json!(format!("Bearer {}", fx.token(Role::Member)));
    let response = authorize(&fx.verifier, serde_json::from_value(event).unwrap()).await;
    assert!(response.is_authorized);
    assert_eq!(response.context["role"], "member");
}
