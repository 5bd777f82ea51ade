//! The auth HTTP contract at large, through the real router on both backends
//! (SQLite locally, DynamoDB and Secrets Manager on moto): registration and
//! the login → me → refresh → logout flow, bad input naming its field, the
//! audit log, the public key set, health and OpenAPI. Sessions, lockout,
//! accounts, invites, client addresses and hashing have files of their own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

use base64::Engine as _;
use common::{AuthApp, AuthFixtures as _, PASSWORD, access, account_id, refresh_token};
use constellation_testkit::http::Reply;
use http::StatusCode;
use serde_json::{Value, json};
use time::Duration;

constellation_testkit::on_both_backends! {
    app = crate::common::spawn;
    register_login_me_refresh_logout,
    audit_log_is_for_admins_newest_first,
    bad_input_gets_a_4xx_naming_the_field,
    jwks_publishes_the_key_that_signs_access_tokens,
}

fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn register_login_me_refresh_logout(app: AuthApp) {
    let reg = app
        .post("/v1/auth/register")
        .json(&json!({"organization": "Acme", "email": "  Ada@Example.COM ", "password": PASSWORD}))
        .await;
    assert_eq!(reg.status, StatusCode::CREATED);
    assert_eq!(reg.header("cache-control"), Some("no-store"));
    let tokens = reg.json();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    assert_eq!(tokens["account"]["email"], "ada@example.com");
    assert_eq!(tokens["account"]["role"], "owner");
    assert!(is_hex32(tokens["account"]["org"].as_str().unwrap()));
    assert!(is_hex32(account_id(&tokens)));
    assert_eq!(access(&tokens).split('.').count(), 3);
    let claims = access(&tokens).split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    let now = app.now().unix_timestamp();
    assert_eq!(claims["iat"].as_i64(), Some(now), "{claims}");
    assert_eq!(claims["exp"].as_i64(), Some(now + 900), "{claims}");
    assert_eq!(refresh_token(&tokens).len(), 43);
    let keys: HashSet<&str> = tokens
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        HashSet::from([
            "access_token",
            "refresh_token",
            "token_type",
            "expires_in",
            "account"
        ])
    );

    let me = app.get("/v1/auth/me").bearer(access(&tokens)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json(), tokens["account"]);

    app.get("/v1/auth/me").await.assert_unauthorized();
    app.get("/v1/auth/me")
        .bearer("not.a.token")
        .await
        .assert_unauthorized();

    let wrong = app
        .login("ada@example.com", "not the password at all")
        .await;
    wrong.assert_unauthorized();
    assert_eq!(
        wrong.problem()["type"],
        "urn:constellation:problem:unauthorized"
    );

    let login = app.login("ADA@example.com", PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK);
    let session = login.json();
    assert_eq!(session["account"], tokens["account"]);

    let refreshed = app.refresh(refresh_token(&session)).await;
    assert_eq!(refreshed.status, StatusCode::OK);
    let refreshed = refreshed.json();
    assert_ne!(refresh_token(&refreshed), refresh_token(&session));
    assert_eq!(refreshed["account"], tokens["account"]);
    let me = app.get("/v1/auth/me").bearer(access(&refreshed)).await;
    assert_eq!(me.status, StatusCode::OK);

    let out = app
        .post("/v1/auth/logout")
        .json(&json!({"refresh_token": refresh_token(&refreshed)}))
        .bearer(access(&refreshed))
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    app.refresh(refresh_token(&refreshed))
        .await
        .assert_unauthorized();
    // Logout needs an access token.
    app.post("/v1/auth/logout")
        .json(&json!({"refresh_token": refresh_token(&tokens)}))
        .await
        .assert_unauthorized();
    // The registration's own session is a different family: still alive.
    assert_eq!(
        app.refresh(refresh_token(&tokens)).await.status,
        StatusCode::OK
    );
}

// Local only: moto runs concurrent DynamoDB transactions without isolation
// (it checks and writes item by item and rolls back by restoring a table
// snapshot), so races that DynamoDB serialises can interleave there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registrations_of_one_email_exactly_one_wins() {
    let app = common::spawn_local().await;
    let attempts = ["dup@example.com", "DUP@example.com", " dup@Example.com"]
        .iter()
        .cycle()
        .take(12)
        .map(|email| {
            app.post("/v1/auth/register")
                .json(&json!({"organization": "Race", "email": email, "password": PASSWORD}))
                .send()
        });
    let replies = futures::future::join_all(attempts).await;
    let created = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    let conflicts: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.status == StatusCode::CONFLICT)
        .collect();
    assert_eq!(created, 1, "{replies:#?}");
    assert_eq!(conflicts.len(), 11);
    for c in conflicts {
        assert_eq!(c.field().as_deref(), Some("email"));
    }
    assert_eq!(
        app.login("dup@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
}

async fn audit_log_is_for_admins_newest_first(app: AuthApp) {
    let owner = app.fx_register("owner@example.com").await;
    let admin = app
        .fx_member(access(&owner), "admin@example.com", "admin")
        .await;
    let member = app
        .fx_member(access(&owner), "member@example.com", "member")
        .await;
    app.clock.advance(Duration::seconds(1));
    app.login("member@example.com", "wrong password here")
        .await
        .assert_unauthorized();
    app.clock.advance(Duration::seconds(1));
    app.login("member@example.com", PASSWORD).await;

    let r = app.get("/v1/auth/audit").bearer(access(&member)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    app.get("/v1/auth/audit").await.assert_unauthorized();

    let first = app
        .get("/v1/auth/audit?limit=2")
        .bearer(access(&admin))
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let first = first.json();
    let items = first["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["action"], "login_succeeded");
    assert_eq!(items[0]["target"], account_id(&member));
    assert_eq!(items[1]["action"], "login_failed");
    assert_eq!(items[1]["detail"], "wrong password");
    let cursor = first["next_cursor"].as_str().unwrap();
    let rest = app
        .get(&format!("/v1/auth/audit?cursor={cursor}"))
        .bearer(access(&admin))
        .await
        .json();
    let actions: Vec<&str> = rest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.last(), Some(&"register"), "{actions:?}");
    assert!(actions.contains(&"invite_accepted"));
}

async fn bad_input_gets_a_4xx_naming_the_field(app: AuthApp) {
    let register = |body: Value| app.post("/v1/auth/register").json(&body).send();
    let cases = [
        (
            json!({"organization": "A", "email": "nope", "password": PASSWORD}),
            "email",
        ),
        (
            json!({"organization": "A", "email": "a@example.com", "password": "short"}),
            "password",
        ),
        (
            json!({"organization": "A", "email": "a@example.com", "password": "password1234"}),
            "password",
        ),
        (
            json!({"organization": "A", "email": "abcdefghijkl@example.com", "password": "abcdefghijkl"}),
            "password",
        ),
        (
            json!({"organization": "", "email": "a@example.com", "password": PASSWORD}),
            "organization",
        ),
        (
            json!({"organization": "A", "email": "a@example.com", "password": PASSWORD, "admin": true}),
            "admin",
        ),
        (
            json!({"organization": "A", "email": 5, "password": PASSWORD}),
            "email",
        ),
    ];
    for (body, field) in cases {
        let r = register(body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.field().as_deref(), Some(field), "{body}");
    }
    let missing = register(json!({"email": "a@example.com", "password": PASSWORD})).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    let form = app
        .post("/v1/auth/register")
        .body("application/x-www-form-urlencoded", "email=a")
        .await;
    assert_eq!(form.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Nothing was half-written: the email is still free.
    let owner = app.fx_register("a@example.com").await;

    let login = app
        .post("/v1/auth/login")
        .json(&json!({"email": "bad", "password": "x"}))
        .await;
    assert_eq!(login.field().as_deref(), Some("email"));
    let login = app
        .post("/v1/auth/login")
        .json(&json!({"email": "a@example.com", "password": "x".repeat(129)}))
        .await;
    assert_eq!(login.field().as_deref(), Some("password"));

    let invite = app
        .post("/v1/auth/invites")
        .json(&json!({"email": "b@example.com", "role": "root"}))
        .bearer(access(&owner))
        .await;
    assert_eq!(invite.field().as_deref(), Some("role"));
    let patch = app
        .patch("/v1/auth/accounts/not-an-id")
        .json(&json!({"role": "member"}))
        .bearer(access(&owner))
        .await;
    assert_eq!(patch.field().as_deref(), Some("id"));
    let empty = app
        .patch(&format!("/v1/auth/accounts/{}", account_id(&owner)))
        .json(&json!({}))
        .bearer(access(&owner))
        .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    let limit = app
        .get("/v1/auth/accounts?limit=0")
        .bearer(access(&owner))
        .await;
    assert_eq!(limit.field().as_deref(), Some("limit"));
    let unknown = app
        .get("/v1/auth/audit?colour=red")
        .bearer(access(&owner))
        .await;
    assert_eq!(unknown.field().as_deref(), Some("colour"));
    let logout = app
        .post("/v1/auth/logout")
        .json(&json!({"refresh_token": "nope"}))
        .bearer(access(&owner))
        .await;
    assert_eq!(logout.field().as_deref(), Some("refresh_token"));
}

async fn jwks_publishes_the_key_that_signs_access_tokens(app: AuthApp) {
    let owner = app.fx_register("a@example.com").await;
    let r = app.get("/v1/auth/.well-known/jwks.json").await;
    assert_eq!(r.status, StatusCode::OK);
    let jwks = r.json();
    let keys = jwks["keys"].as_array().unwrap();
    assert!(!keys.is_empty());
    for k in keys {
        assert_eq!(k["kty"], "OKP");
        assert_eq!(k["crv"], "Ed25519");
        assert!(k.get("d").is_none(), "no private key material");
    }
    let header = access(&owner).split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert!(keys.iter().any(|k| k["kid"] == header["kid"]));

    // Access tokens expire after 15 minutes (plus the verifier's leeway).
    app.advance(Duration::minutes(16));
    app.get("/v1/auth/me")
        .bearer(access(&owner))
        .await
        .assert_unauthorized();

    let health = app.get("/v1/auth/health").await;
    assert_eq!(health.status, StatusCode::OK);
    let doc = app.get("/v1/auth/openapi.json").await.json();
    for path in [
        "/v1/auth/register",
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/auth/logout",
        "/v1/auth/me",
        "/v1/auth/invites",
        "/v1/auth/invites/{id}",
        "/v1/auth/accept-invite",
        "/v1/auth/accounts",
        "/v1/auth/accounts/{id}",
        "/v1/auth/audit",
        "/v1/auth/.well-known/jwks.json",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from OpenAPI"
        );
    }
}
