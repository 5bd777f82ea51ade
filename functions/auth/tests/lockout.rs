//! The per-account lockout: five failed logins lock an email, whatever the
//! password and whether or not it has an account, until the window passes;
//! a burst of parallel guesses cannot slip past the count. (Who a failure
//! is counted against by address is `client_address.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{AuthApp, AuthFixtures as _, CallFrom as _, PASSWORD, access};
use http::StatusCode;
use serde_json::json;
use time::Duration;

constellation_testkit::on_both_backends! {
    app = crate::common::spawn;
    lockout_after_five_failures_whatever_the_password_then_it_expires,
}

async fn lockout_after_five_failures_whatever_the_password_then_it_expires(app: AuthApp) {
    let owner = app.fx_register("ada@example.com").await;

    // Spread over addresses: this is the per-account counter.
    for i in 0..5 {
        let r = app
            .login_from(
                &format!("198.51.100.{i}"),
                "ada@example.com",
                "wrong password here",
            )
            .await;
        r.assert_unauthorized();
    }
    let locked = app
        .login_from("198.51.100.77", "ada@example.com", PASSWORD)
        .await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        locked.problem()["type"],
        "urn:constellation:problem:too-many-requests"
    );
    let retry_after: i64 = locked.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");

    // An unknown email behaves the same.
    for i in 0..5 {
        app.login_from(
            &format!("192.0.2.{i}"),
            "ghost@example.com",
            "wrong password here",
        )
        .await
        .assert_unauthorized();
    }
    let ghost = app
        .login_from("192.0.2.77", "ghost@example.com", "wrong password here")
        .await;
    assert_eq!(ghost.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(ghost.header("retry-after").is_some());

    // Time moves on; the lock lifts.
    app.advance(Duration::minutes(5));
    let still = app.login("ada@example.com", PASSWORD).await;
    assert_eq!(still.status, StatusCode::TOO_MANY_REQUESTS);
    let later: i64 = still.header("retry-after").unwrap().parse().unwrap();
    assert_eq!(later, retry_after - 300);
    app.advance(Duration::minutes(11));
    let ok = app.login("ada@example.com", PASSWORD).await;
    assert_eq!(ok.status, StatusCode::OK);

    // One FailedLogin metric per failed attempt, locked ones included.
    assert_eq!(app.service.failed_login_metrics(), 5 + 1 + 5 + 1 + 1);

    // (The registration's access token has expired by now.)
    let _ = owner;
    let audit = app.audit(access(&ok.json())).await;
    let actions: Vec<&str> = audit
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.iter().filter(|a| **a == "lockout").count(), 1);
    assert_eq!(actions.iter().filter(|a| **a == "login_failed").count(), 7);
    assert_eq!(actions[0], "login_succeeded", "newest first: {actions:?}");
}

// Local only: moto applies concurrent UpdateItems without locking (it reads,
// copies and writes the item back in Python), so of parallel atomic adds,
// which DynamoDB serialises, one can be lost there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_parallel_guesses_gets_five_tries_at_most() {
    let app = common::spawn_local().await;
    app.fx_register("ada@example.com").await;
    let guesses = (0..20).map(|i| {
        app.post("/v1/auth/login")
            .json(&json!({"email": "ada@example.com", "password": format!("guess number {i:04}")}))
            .ip(&format!("198.51.100.{i}"))
            .send()
    });
    let replies = futures::future::join_all(guesses).await;
    let checked = replies
        .iter()
        .filter(|r| r.status == StatusCode::UNAUTHORIZED)
        .count();
    let refused = replies
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((checked, refused), (5, 15));
}
