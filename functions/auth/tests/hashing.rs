//! Password hashing: production uses OWASP's Argon2id parameters, and it is
//! bounded: over the bound a request is answered 503 with `Retry-After`
//! instead of queueing 19 MiB hashes without limit, and a locked-out login
//! is refused without hashing at all.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{AuthApp, AuthFixtures as _, PASSWORD};
use constellation_auth::{AuthSettings, PasswordHasherParams};
use http::StatusCode;
use serde_json::json;

/// One hashing slot, and a short wait for it.
const ONE_SLOT: AuthSettings = AuthSettings {
    trusted_proxies: 0,
    login_address_limit: 50,
    hash_concurrency: 1,
    hash_wait: Duration::from_millis(200),
};

constellation_testkit::on_both_backends! {
    app = crate::common::spawn_with(ONE_SLOT);
    over_the_hashing_bound_requests_get_503_with_retry_after,
    locked_out_logins_are_refused_without_hashing,
}

constellation_testkit::on_both_backends! {
    app = crate::common::spawn_hashing_with(PasswordHasherParams::default());
    production_password_parameters_are_owasps,
}

async fn over_the_hashing_bound_requests_get_503_with_retry_after(app: AuthApp) {
    app.fx_register("ada@example.com").await;
    let hasher = app.service.store.password_hasher();

    // A slow hash holds the only slot.
    let held = hasher.reserve().await.unwrap();
    let runs = hasher.runs();
    for _ in 0..6 {
        let busy = app.login("ada@example.com", PASSWORD).await;
        assert_eq!(busy.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            busy.problem()["type"],
            "urn:constellation:problem:unavailable"
        );
        let retry: u64 = busy.header("retry-after").unwrap().parse().unwrap();
        assert!(retry >= 1);
    }
    let reg = app
        .post("/v1/auth/register")
        .json(&json!({"organization": "B", "email": "bob@example.com", "password": PASSWORD}))
        .await;
    assert_eq!(reg.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reg.header("retry-after").is_some());
    assert_eq!(hasher.runs(), runs, "nothing was hashed over the bound");

    // The slot frees: the refused attempts were not counted as failures
    // (six of them would have locked the account).
    drop(held);
    let ok = app.login("ada@example.com", PASSWORD).await;
    assert_eq!(
        ok.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&ok.body)
    );
    // Nothing of the refused registration was written.
    app.fx_register("bob@example.com").await;
}

async fn locked_out_logins_are_refused_without_hashing(app: AuthApp) {
    app.fx_register("ada@example.com").await;
    for _ in 0..5 {
        app.login("ada@example.com", "wrong password here")
            .await
            .assert_unauthorized();
    }
    let hasher = app.service.store.password_hasher();
    let before = hasher.runs();
    for email in ["ada@example.com", "ada@example.com"] {
        let locked = app.login(email, PASSWORD).await;
        assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(hasher.runs(), before, "a locked-out login hashed");
    // Even with the only slot taken, a locked-out login is answered 429, not 503.
    let _held = hasher.reserve().await.unwrap();
    let locked = app.login("ada@example.com", PASSWORD).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
}

/// The whole flow on the production parameters, which are OWASP's.
async fn production_password_parameters_are_owasps(app: AuthApp) {
    let params = PasswordHasherParams::default();
    assert_eq!(params, PasswordHasherParams::OWASP);
    assert_eq!(
        (params.m_cost_kib, params.t_cost, params.p_cost),
        (19_456, 2, 1)
    );
    app.fx_register("a@example.com").await;
    assert_eq!(
        app.login("a@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
    // That an unknown email costs the same hash is checked without timing, in
    // password.rs (`unknown_accounts_verify_against_a_hash_with_the_same_parameters`).
    app.login("nobody@example.com", PASSWORD)
        .await
        .assert_unauthorized();
}
