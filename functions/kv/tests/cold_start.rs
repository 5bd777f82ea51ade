//! What kv's Lambda does at cold start, on both backends: building the app
//! (exactly as the `kv` binary does, through `SERVICE.app`) reads no secret,
//! so a health check answers without one; the first request that needs the
//! public keys or the table reads them then, and while a secret cannot be
//! read the request answers 503 problem+json and the next one tries again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Principal, Role};
use constellation_core::token::{SigningKey, access_claims};
use constellation_kv::config::{CURSOR_SECRET_VAR, TABLE_VAR};
use constellation_platform::SecretValue;
use constellation_platform::config::BackendKind;
use constellation_platform::observe::MetricsSink;
use constellation_platform::schedule::{ScheduledEvent, ScheduledHandler};
use constellation_platform::tokens::VerifierConfig;
use constellation_testkit::http::{TestApp, TestPlatform, TestTokens};
use constellation_web::host::{Context, EVENT_BUS_VAR, Resources};
use http::StatusCode;
use std::sync::Arc;

constellation_testkit::on_both_backends! {
    app = crate::spawn;
    a_cold_start_reads_no_secret_until_a_request_needs_one,
    the_outbox_relay_reads_no_cursor_secret,
}

/// What the test reaches past HTTP.
#[derive(Debug)]
struct Cold {
    tokens: VerifierConfig,
    cursor_secret: String,
    /// The outbox relay, built as the `kv-outbox` binary builds it.
    relay: Arc<dyn ScheduledHandler>,
}

/// kv built as its Lambda builds it, over resources whose secrets do not
/// exist yet (on AWS: a fresh table and bus, no cursor secret, no public keys).
async fn spawn(env: TestPlatform) -> TestApp<Cold> {
    let mut resources =
        Resources::from_env(constellation_kv::SERVICE.resources, BackendKind::Local).unwrap();
    let tokens = VerifierConfig {
        public_keys_secret: env.name("cold/public-keys"),
        ..VerifierConfig::default()
    };
    let cursor_secret = env.name("cold/cursor-key");
    resources.set(CURSOR_SECRET_VAR, cursor_secret.clone());
    if let Some(aws) = env.aws_backend() {
        let table = env.name("kv-cold");
        let bus = env.name("kv-cold-bus");
        tokio::try_join!(aws.ensure_table(&table), aws.ensure_event_bus(&bus)).unwrap();
        resources.set(TABLE_VAR, table);
        resources.set(EVENT_BUS_VAR, bus);
    }
    let ctx = Context::new(
        env.platform.clone(),
        resources,
        MetricsSink::discard(),
        tokens.clone(),
    );
    let router = (constellation_kv::SERVICE.app)(&ctx).await.unwrap();
    let relay = constellation_kv::SERVICE.schedules[0]
        .build(&ctx)
        .await
        .unwrap();
    TestApp::new(
        env,
        router,
        Cold {
            tokens,
            cursor_secret,
            relay,
        },
    )
}

async fn secret_exists(app: &TestApp<Cold>, name: &str) -> bool {
    app.platform
        .uncached_secrets()
        .get(name)
        .await
        .unwrap()
        .is_some()
}

async fn a_cold_start_reads_no_secret_until_a_request_needs_one(app: TestApp<Cold>) {
    let cold = &app.service;
    let (keys, cursor) = (&cold.tokens.public_keys_secret, &cold.cursor_secret);

    app.get("/v1/kv/health")
        .anonymous()
        .await
        .assert_status(StatusCode::OK);
    // Locally a missing cursor secret is generated when the table opens: it
    // is still missing, so nothing opened the table.
    assert!(!secret_exists(&app, cursor).await);

    let kind = app.kind;
    if kind == BackendKind::Aws {
        // The public key set does not exist: the request cannot be verified
        // yet, which is the service's fault, not the caller's.
        let principal = Principal {
            account: AccountId::from_bytes([1; 16]),
            org: OrgId::parse("org-a").unwrap(),
            role: Role::Staff,
        };
        let claims = access_claims(cold.tokens.expected(), &principal, app.now(), "j".into());
        let token = SigningKey::from_seed([9; 32]).sign(&claims);
        let reply = app.get("/v1/kv/settings/theme").bearer(&token).await;
        reply.assert_status(StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(
            reply.json()["type"],
            "urn:constellation:problem:unavailable"
        );
    }

    // Keys published: the next request reads them. Reading and writing one
    // key seals no cursor, so the table's cursor secret is not read (on AWS
    // it does not even exist yet).
    let tokens =
        TestTokens::on_platform(&app.platform, app.clock.clone(), cold.tokens.clone()).await;
    let token = tokens.token("org-a", Role::Staff);
    app.get("/v1/kv/settings/theme")
        .bearer(&token)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    app.put("/v1/kv/settings/theme")
        .bearer(&token)
        .body("text/plain", "dark")
        .await
        .assert_status(StatusCode::CREATED);
    assert_eq!(
        app.get("/v1/kv/settings/theme").bearer(&token).await.text(),
        "dark"
    );
    assert!(secret_exists(&app, keys).await);
    assert!(!secret_exists(&app, cursor).await);

    // A list pages with sealed cursors: it reads the cursor secret. On AWS,
    // while that is missing, the store answers 503.
    if kind == BackendKind::Aws {
        let reply = app.get("/v1/kv/settings").bearer(&token).await;
        reply.assert_status(StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            reply.json()["type"],
            "urn:constellation:problem:unavailable"
        );
        app.platform
            .secrets()
            .put(cursor, &SecretValue::new("cold-start-cursor-key"))
            .await
            .unwrap();
    }

    // Everything readable: the same instance now serves, without a restart.
    let list = app.get("/v1/kv/settings").bearer(&token).await;
    list.assert_status(StatusCode::OK);
    assert!(list.text().contains("theme"), "{}", list.text());
    assert!(secret_exists(&app, keys).await && secret_exists(&app, cursor).await);
}

/// The relay pages the outbox's shards with cursors that never leave its
/// process: it reads no cursor secret, so a relay's cold start makes no
/// Secrets Manager call, and it runs while the secret does not exist.
async fn the_outbox_relay_reads_no_cursor_secret(app: TestApp<Cold>) {
    let cold = &app.service;
    let tokens =
        TestTokens::on_platform(&app.platform, app.clock.clone(), cold.tokens.clone()).await;
    let token = tokens.token("org-a", Role::Staff);
    app.put("/v1/kv/settings/theme")
        .bearer(&token)
        .body("text/plain", "dark")
        .await
        .assert_status(StatusCode::CREATED);

    let report = cold
        .relay
        .run(ScheduledEvent {
            schedule: constellation_kv::SERVICE.schedules[0].name.to_owned(),
            ..ScheduledEvent::default()
        })
        .await
        .unwrap();
    assert_eq!(report["refused"], 0, "{report}");
    assert!(!secret_exists(&app, &cold.cursor_secret).await);
}
