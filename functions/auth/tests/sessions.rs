//! Sessions under concurrency and over time: every refresh rotates the
//! token and reusing a rotated one revokes the whole family, but only after
//! a short grace, so two refreshes racing with one token both keep a
//! session; a refresh token expires after 30 days and a session 90 days
//! after its login.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{AuthApp, AuthFixtures as _, PASSWORD, access, account_id, refresh_token};
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use time::Duration;
use tower::ServiceExt as _;

constellation_testkit::on_both_backends! {
    app = crate::common::spawn;
    refresh_rotates_and_reuse_revokes_the_whole_family,
    refresh_tokens_expire_after_30_days,
    a_rotated_token_is_reuse_only_after_the_grace,
    a_rotated_token_buys_one_sibling_only,
    sessions_end_90_days_after_login,
}

/// Refreshes with `token` on its own tokio task: (status, body).
fn spawn_refresh(app: &AuthApp, token: &str) -> tokio::task::JoinHandle<(StatusCode, Value)> {
    let router = app.router.clone();
    let body = json!({ "refresh_token": token }).to_string();
    tokio::spawn(async move {
        let req = Request::post("/v1/auth/refresh")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body))
            .unwrap();
        let res = router.oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    })
}

async fn assert_works(app: &AuthApp, session: &Value) {
    let me = app.get("/v1/auth/me").bearer(access(session)).await;
    assert_eq!(me.status, StatusCode::OK);
    let next = app.refresh(refresh_token(session)).await;
    assert_eq!(
        next.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&next.body)
    );
    let me = app.get("/v1/auth/me").bearer(access(&next.json())).await;
    assert_eq!(me.status, StatusCode::OK);
}

// Local only: moto runs concurrent DynamoDB transactions without isolation
// and rolls a failed one back by restoring a table snapshot, which can undo
// the winner's writes; DynamoDB serialises them. The grace itself is covered
// on both backends by `a_rotated_token_is_reuse_only_after_the_grace`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_refreshes_with_one_token_both_keep_a_session() {
    let app = common::spawn_local().await;
    app.fx_register("ada@example.com").await;
    for round in 0..5 {
        let session = app.login("ada@example.com", PASSWORD).await.json();
        let token = refresh_token(&session);
        let (a, b) = (spawn_refresh(&app, token), spawn_refresh(&app, token));
        let ((a_status, a), (b_status, b)) = (a.await.unwrap(), b.await.unwrap());
        assert_eq!(
            (a_status, b_status),
            (StatusCode::OK, StatusCode::OK),
            "round {round}: {a} {b}"
        );
        assert_ne!(refresh_token(&a), refresh_token(&b));
        assert_works(&app, &a).await;
        assert_works(&app, &b).await;
    }
    let owner = app.login("ada@example.com", PASSWORD).await.json();
    let audit = app.audit(access(&owner)).await;
    assert!(
        audit.iter().all(|e| e["action"] != "refresh_reuse"),
        "{audit:#?}"
    );
    assert_eq!(
        audit
            .iter()
            .filter(|e| e["action"] == "login_succeeded")
            .count(),
        6,
        "{audit:#?}"
    );
}

async fn refresh_rotates_and_reuse_revokes_the_whole_family(app: AuthApp) {
    let owner = app.fx_register("ada@example.com").await;
    let r0 = refresh_token(&owner).to_owned();
    let s1 = app.refresh(&r0).await.json();
    let r1 = refresh_token(&s1).to_owned();
    let s2 = app.refresh(&r1).await.json();
    let r2 = refresh_token(&s2).to_owned();

    // r0 was rotated: presenting it again after the grace for concurrent
    // refreshes is reuse.
    app.advance(Duration::seconds(10));
    app.refresh(&r0).await.assert_unauthorized();
    // The whole family is dead, the newest token too.
    app.refresh(&r2).await.assert_unauthorized();
    app.refresh(&r1).await.assert_unauthorized();
    // Unknown and malformed tokens are 401 as well.
    app.refresh(&"A".repeat(43)).await.assert_unauthorized();
    app.refresh("short").await.assert_unauthorized();

    // Another login is another family and unaffected.
    let other = app.login("ada@example.com", PASSWORD).await.json();
    let again = app.refresh(refresh_token(&other)).await;
    assert_eq!(again.status, StatusCode::OK);

    let audit = app.audit(access(&again.json())).await;
    let reuse: Vec<&Value> = audit
        .iter()
        .filter(|e| e["action"] == "refresh_reuse")
        .collect();
    assert_eq!(reuse.len(), 1, "{audit:#?}");
    assert_eq!(reuse[0]["target"], account_id(&owner));
}

async fn refresh_tokens_expire_after_30_days(app: AuthApp) {
    let owner = app.fx_register("ada@example.com").await;
    app.advance(Duration::days(30) + Duration::seconds(1));
    app.refresh(refresh_token(&owner))
        .await
        .assert_unauthorized();
}

async fn a_rotated_token_is_reuse_only_after_the_grace(app: AuthApp) {
    let owner = app.fx_register("ada@example.com").await;
    let r0 = refresh_token(&owner).to_owned();
    let first = app.refresh(&r0).await.json();

    // A late second tab, 9 seconds on: still a concurrent refresh.
    app.advance(Duration::seconds(9));
    let second = app.refresh(&r0).await;
    assert_eq!(second.status, StatusCode::OK);
    let second = second.json();
    assert_ne!(refresh_token(&second), refresh_token(&first));
    let first_next = app.refresh(refresh_token(&first)).await;
    assert_eq!(first_next.status, StatusCode::OK);
    let second_next = app.refresh(refresh_token(&second)).await;
    assert_eq!(second_next.status, StatusCode::OK);

    // 10 seconds after its rotation it is reuse: the whole family goes.
    app.advance(Duration::seconds(1));
    app.refresh(&r0).await.assert_unauthorized();
    app.refresh(refresh_token(&first_next.json()))
        .await
        .assert_unauthorized();
    app.refresh(refresh_token(&second_next.json()))
        .await
        .assert_unauthorized();

    let session = app.login("ada@example.com", PASSWORD).await.json();
    let audit = app.audit(access(&session)).await;
    let reuse: Vec<&Value> = audit
        .iter()
        .filter(|e| e["action"] == "refresh_reuse")
        .collect();
    assert_eq!(reuse.len(), 1, "{audit:#?}");
}

/// Within the grace a rotated token buys one sibling; presented a third
/// time it is reuse, even within the grace, so a replayed token cannot
/// keep a chain of its own going beside the owner's.
async fn a_rotated_token_buys_one_sibling_only(app: AuthApp) {
    let owner = app.fx_register("ada@example.com").await;
    let r0 = refresh_token(&owner).to_owned();
    let first = app.refresh(&r0).await.json();
    app.advance(Duration::seconds(2));
    let sibling = app.refresh(&r0).await;
    assert_eq!(sibling.status, StatusCode::OK);
    let sibling = sibling.json();

    app.advance(Duration::seconds(2));
    app.refresh(&r0).await.assert_unauthorized();
    // That third presentation was reuse: the whole family is gone.
    app.refresh(refresh_token(&first))
        .await
        .assert_unauthorized();
    app.refresh(refresh_token(&sibling))
        .await
        .assert_unauthorized();
}

async fn sessions_end_90_days_after_login(app: AuthApp) {
    let owner = app.fx_register("ada@example.com").await;
    let mut token = refresh_token(&owner).to_owned();
    // Refreshed well within each token's 30 days, up to day 89.
    let mut day = 0;
    for next in [29, 58, 87, 89] {
        app.advance(Duration::days(next - day));
        day = next;
        let r = app.refresh(&token).await;
        assert_eq!(r.status, StatusCode::OK, "day {day}");
        token = refresh_token(&r.json()).to_owned();
    }
    // Day 90 (plus a second): the session is over, though its latest token is a day old.
    app.advance(Duration::days(1) + Duration::seconds(1));
    app.refresh(&token).await.assert_unauthorized();
    // A new login starts a new session.
    let fresh = app.login("ada@example.com", PASSWORD).await.json();
    assert_works(&app, &fresh).await;
}
