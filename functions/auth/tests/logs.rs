//! No log line ever carries a password, an access token, a refresh token or
//! an invite token, and no line of auth's own a password hash (an imported
//! bcrypt one included): a whole flow runs under a global subscriber at TRACE
//! (the binaries' JSON lines, plus a line for every span's fields as they are
//! recorded, the most any configuration would print) writing into a buffer,
//! which is then searched.
//!
//! Its own test binary, so that the global subscriber sees only this flow,
//! once per backend: both runs write into one buffer and each searches all
//! of it for its own secrets. On AWS that includes the SDK's TRACE output.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use common::{AuthApp, AuthFixtures as _, PASSWORD, access, account_id, refresh_token};
use constellation_auth::password::validate_legacy_hash;
use constellation_auth::store::AccountForImport;
use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Email, Role};
use constellation_platform::jsonlog::JsonLine;
use constellation_platform::table::{Condition, ItemKey};
use constellation_testkit::http::TestPlatform;
use http::StatusCode;
use serde_json::json;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;

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
        // The binaries' own JSON format at every level, with each line's
        // target (to tell the SDK's lines from auth's below), and a line
        // for every span's fields as they are recorded: what a format that
        // prints span events would print, even for a span no event is in.
        tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::TRACE)
            .with(
                constellation_platform::observe::json_format(move || writer.clone())
                    .event_format(JsonLine::with_target()),
            )
            .with(SpanFields(buffer.clone()))
            .init();
        buffer
    })
}

/// Writes a line for every span's fields when it is made and when a value
/// is recorded on it later.
struct SpanFields(Buffer);

impl SpanFields {
    fn line(&self, meta: &tracing::Metadata<'_>, record: impl FnOnce(&mut dyn Visit)) {
        let mut line = format!(r#"span {} "target":"{}""#, meta.name(), meta.target());
        record(&mut AllFields(&mut line));
        line.push('\n');
        self.0.0.lock().unwrap().extend_from_slice(line.as_bytes());
    }
}

impl<S> tracing_subscriber::Layer<S> for SpanFields
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        self.line(attrs.metadata(), |visit| attrs.record(visit));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            self.line(span.metadata(), |visit| values.record(visit));
        }
    }
}

/// Every field as `name=value` (`Debug`; a `%` field's is its `Display`).
struct AllFields<'a>(&'a mut String);

impl Visit for AllFields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
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
    // An imported account: its legacy hash, the argon2id hash that replaces
    // it at login, and a malformed hash that is refused (an error is logged).
    let legacy_password = "the legacy account's old secret";
    let legacy = bcrypt::hash_with_result(legacy_password, 4)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoB);
    let org = OrgId::parse(owner["account"]["org"].as_str().unwrap()).unwrap();
    let imported_id = AccountId::from_bytes([7; 16]);
    app.service
        .store
        .import_account(
            &org,
            AccountForImport {
                id: imported_id.clone(),
                email: Email::parse("legacy@example.com").unwrap(),
                role: Role::Member,
                password_hash: validate_legacy_hash(&legacy).unwrap(),
                created_at: time::OffsetDateTime::now_utc(),
            },
        )
        .await
        .unwrap();
    app.login("legacy@example.com", wrong)
        .await
        .assert_unauthorized();
    app.login("legacy@example.com", legacy_password)
        .await
        .assert_status(StatusCode::OK);
    let key = ItemKey::new(format!("ORG#{org}"), format!("ACCOUNT#{imported_id}"));
    let mut item = app.service.table.get(&key).await.unwrap().unwrap();
    let rehash = item.attrs["password_hash"].as_str().unwrap().to_owned();
    assert!(rehash.starts_with("$argon2id$"), "{rehash}");
    let read = item.version;
    item.attrs.insert(
        "password_hash".into(),
        json!(legacy.replacen("$2b$", "$2x$", 1)),
    );
    item.version = read + 1;
    app.service
        .table
        .put(&item, Condition::VersionEquals(read))
        .await
        .unwrap();
    app.login("legacy@example.com", legacy_password)
        .await
        .assert_unauthorized();
    secrets.push(legacy_password.to_owned());
    // The salt and digest whatever the prefix, and the new digest.
    let hashes = [
        legacy[7..].to_owned(),
        rehash.rsplit('$').next().unwrap().to_owned(),
    ];

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
        logs.contains("login succeeded")
            && logs.contains("refresh token was presented again")
            && logs.contains("legacy password hash replaced with argon2id")
            && logs.contains("stored password hash is not verified"),
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
    // Nor does auth ever log a password hash. (The AWS SDK's own TRACE
    // lines print whole DynamoDB items, stored hashes included, as they
    // always have for argon2id ones: TRACE for `aws_*` is not for production.)
    let ours: Vec<&str> = logs
        .lines()
        .filter(|l| !l.contains(r#""target":"aws_"#))
        .collect();
    for hash in &hashes {
        assert!(
            !ours.iter().any(|l| l.contains(hash.as_str())),
            "a password hash reached the logs: {hash}"
        );
    }
    // Metrics lines carry no secrets either.
    let metrics = app.service.metrics.lock().unwrap().join("\n");
    for secret in &secrets {
        assert!(!metrics.contains(secret.as_str()));
    }
}
