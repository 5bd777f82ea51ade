//! No log line ever carries a password, an access token, a refresh token or
//! an invite token: a whole flow runs under a global subscriber at TRACE
//! (JSON lines with span fields, plus span open/close events, the most any
//! configuration would print) writing into a buffer, which is then searched.
//!
//! Its own test binary, so that the global subscriber sees only this flow,
//! once per backend: both runs write into one buffer and each searches all
//! of it for its own secrets. On AWS that includes the SDK's TRACE output.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use common::{AuthApp, AuthFixtures as _, PASSWORD, access, account_id, refresh_token};
use constellation_testkit::http::TestPlatform;
use http::StatusCode;
use serde_json::json;
use tracing_subscriber::fmt::format::FmtSpan;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

constellation_testkit::on_both_backends! {
    app = crate::spawn_captured;
    no_secret_reaches_the_logs,
}

/// The app, built with the capture already on: creating the signing keys
/// is among what must not leak.
async fn spawn_captured(env: TestPlatform) -> AuthApp {
    capture();
    common::spawn(env).await
}

/// The buffer every log line of this process goes to. The subscriber is
/// global, so it is installed once and both backends' flows write here.
fn capture() -> &'static Buffer {
    static CAPTURE: OnceLock<Buffer> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_span_events(FmtSpan::FULL)
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .init();
        buffer
    })
}

async fn no_secret_reaches_the_logs(app: AuthApp) {
    let buffer = capture();
    let mut secrets: Vec<String> = vec![PASSWORD.to_owned()];
    let wrong = "an incorrect passphrase";
    secrets.push(wrong.to_owned());

    let owner = app.fx_register("owner@example.com").await;
    let bad = app.login("owner@example.com", wrong).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    let ghost = app.login("ghost@example.com", wrong).await;
    assert_eq!(ghost.status, StatusCode::UNAUTHORIZED);
    let session = app.login("owner@example.com", PASSWORD).await.json();
    let rotated = app.refresh(refresh_token(&session)).await.json();
    // Reuse (after the grace for concurrent refreshes): revokes the family
    // and logs a security warning.
    app.advance(constellation_auth::store::REFRESH_REUSE_GRACE);
    assert_eq!(
        app.refresh(refresh_token(&session)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let invite = app
        .fx_invite(access(&owner), "member@example.com", "member")
        .await;
    let member_password = "the member's own long secret";
    let member = app
        .post("/v1/auth/accept-invite")
        .json(&json!({"invite_token": invite, "password": member_password}))
        .await
        .json();
    let r = app
        .patch(&format!("/v1/auth/accounts/{}", account_id(&member)))
        .json(&json!({"disabled": true}))
        .bearer(access(&owner))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        app.refresh(refresh_token(&member)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let out = app
        .post("/v1/auth/logout")
        .json(&json!({"refresh_token": refresh_token(&owner)}))
        .bearer(access(&owner))
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    // A forged and a tampered access token are rejected (and that is logged).
    app.get("/v1/auth/me")
        .bearer(&format!("{}x", access(&owner)))
        .await
        .assert_unauthorized();

    secrets.push(member_password.to_owned());
    // The private signing key, in every form it is stored in.
    let keys: serde_json::Value = serde_json::from_str(&app.service.signing_keys).unwrap();
    let private = keys["d"]
        .as_str()
        .expect("the signing secret holds the private key as `d`");
    assert!(private.len() >= 40, "an Ed25519 seed in base64url");
    secrets.push(private.to_owned());
    secrets.push(invite);
    for t in [&owner, &session, &rotated, &member] {
        secrets.push(access(t).to_owned());
        // The signature alone is as good as a leak.
        secrets.push(access(t).rsplit('.').next().unwrap().to_owned());
        secrets.push(refresh_token(t).to_owned());
    }

    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("login succeeded") && logs.contains("refresh token was presented again"),
        "the capture works: {logs}"
    );
    assert!(
        logs.contains(&format!(r#""account":"{}""#, account_id(&owner))),
        "the capture holds this flow's lines"
    );
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret reached the logs: {secret}"
        );
    }
    // Metrics lines carry no secrets either.
    let metrics = app.service.metrics.lock().unwrap().join("\n");
    for secret in &secrets {
        assert!(!metrics.contains(secret.as_str()));
    }
}
