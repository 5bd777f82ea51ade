//! Signing keys on Secrets Manager (moto): in AWS the key secrets must exist
//! before the auth function starts; once created (`ensure_keys`, as
//! `serve --provision` does) tokens issue and verify, and a rotation run by
//! another process (`constellation keys rotate`) reaches the running issuer
//! through the secrets cache and the running verifier at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use constellation_auth::signing::{SigningConfig, ensure_keys, load_issuer, rotate_keys};
use constellation_auth::store::{AuthError, OrgName, Registration};
use constellation_auth::{AuthResources, AuthSettings, ClientAddr, PasswordHasherParams};
use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Email, Password, Principal, Role};
use constellation_core::token::{ACCESS_TOKEN_TTL, CLOCK_LEEWAY, Rejection};
use constellation_platform::StoreError;
use constellation_platform::config::SECRETS_CACHE_TTL;
use constellation_platform::observe::MetricsSink;
use constellation_platform::tokens::{TokenError, load_verifier};
use constellation_platform::{Clock as _, SecretValue};
use constellation_testkit::http::TestPlatform;

fn fx_config(env: &TestPlatform) -> SigningConfig {
    SigningConfig {
        signing_keys_secret: env.name("tokens/signing-keys"),
        public_keys_secret: env.name("tokens/public-keys"),
        ..SigningConfig::default()
    }
}

fn fx_principal() -> Principal {
    Principal {
        account: AccountId::from_bytes([3; 16]),
        org: OrgId::parse("acme").unwrap(),
        role: Role::Owner,
    }
}

#[tokio::test]
async fn keys_must_exist_in_aws_then_issue_verify_and_rotate() {
    let env = TestPlatform::aws().await;
    let (platform, clock) = (&env.platform, &env.clock);
    let cfg = fx_config(&env);

    // Nothing is generated in AWS: missing secrets fail start-up, naming them.
    let err = load_issuer(platform, &cfg).await.unwrap_err();
    assert!(
        format!("{err:#}").contains(&cfg.signing_keys_secret),
        "{err:#}"
    );

    // A template-created placeholder counts as no key yet.
    let secrets = platform.secrets();
    for name in [&cfg.signing_keys_secret, &cfg.public_keys_secret] {
        secrets.put(name, &SecretValue::new("{}")).await.unwrap();
    }
    let err = load_issuer(platform, &cfg).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("holds no signing key"),
        "{err:#}"
    );
    ensure_keys(secrets.as_ref(), &cfg, clock.as_ref())
        .await
        .unwrap();

    let issuer = load_issuer(platform, &cfg).await.unwrap();
    let verifier = load_verifier(platform, &cfg.verifier()).await.unwrap();
    let old = issuer.issue(&fx_principal(), clock.now());
    assert_eq!(verifier.verify(&old.token).await.unwrap(), old.claims);

    // Rotate (as `constellation keys rotate` would, from another process).
    let other = TestPlatform::aws().await;
    let kid = rotate_keys(other.platform.secrets().as_ref(), &cfg, clock.as_ref())
        .await
        .unwrap();
    // The issuer reads through the 5-minute secrets cache.
    issuer.reload().await.unwrap();
    assert_ne!(issuer.kid(), kid);
    clock.advance(SECRETS_CACHE_TTL);
    issuer.reload().await.unwrap();
    assert_eq!(issuer.kid(), kid);
    let new = issuer.issue(&fx_principal(), clock.now());
    assert_eq!(verifier.verify(&new.token).await.unwrap(), new.claims);
    assert!(verifier.verify(&old.token).await.is_ok());
    assert_eq!(verifier.jwks().await.unwrap().keys.len(), 2);

    clock.advance(ACCESS_TOKEN_TTL - SECRETS_CACHE_TTL + CLOCK_LEEWAY);
    assert!(matches!(
        verifier.verify(&old.token).await,
        Err(TokenError::Rejected(Rejection::Expired))
    ));
}

#[tokio::test]
async fn an_issuer_refuses_a_key_the_public_set_lacks() {
    let env = TestPlatform::aws().await;
    let cfg = fx_config(&env);
    let secrets = env.platform.secrets();
    ensure_keys(secrets.as_ref(), &cfg, env.clock.as_ref())
        .await
        .unwrap();
    // The public set lost the current key (a hand edit, a half-done restore):
    // tokens would not verify, so the function does not start.
    secrets
        .put(&cfg.public_keys_secret, &SecretValue::new(r#"{"keys":[]}"#))
        .await
        .unwrap();
    let err = load_issuer(&env.platform, &cfg).await.unwrap_err();
    let shown = format!("{err:#}");
    assert!(
        shown.contains(&cfg.public_keys_secret) && shown.contains("lacks the current signing key"),
        "{shown}"
    );
}

fn fx_registration(n: usize) -> Registration {
    let email = Email::parse(&format!("owner{n}@example.com")).unwrap();
    Registration {
        organization: OrgName::parse(&format!("Org {n}")).unwrap(),
        password: Password::new_for("a long and unusual passphrase", &email).unwrap(),
        email,
    }
}

/// In AWS the auth function's start-up reads no key (its health check and
/// JWKS need none): the first token it signs reads the private key. A flow
/// whose key cannot be read fails before writing, and later calls (racing
/// ones too) read it again and sign tokens that verify.
#[tokio::test]
async fn the_auth_store_reads_no_key_until_it_signs_a_token() {
    let env = TestPlatform::aws().await;
    let aws = env.aws_backend().unwrap();
    let resources = AuthResources {
        table: env.name("auth-lazy"),
        cursor_secret: env.name("auth-lazy/cursor-key"),
        event_bus: env.name("bus"),
        tokens: fx_config(&env),
        settings: AuthSettings::default(),
    };
    let cursor_key = SecretValue::new("k".repeat(64));
    tokio::try_join!(
        aws.ensure_table(&resources.table),
        aws.ensure_event_bus(&resources.event_bus),
        aws.ensure_secret(&resources.cursor_secret, &cursor_key),
    )
    .unwrap();
    // No key secret exists, yet the store builds: nothing was read.
    let store = constellation_auth::store(
        &env.platform,
        &resources,
        PasswordHasherParams::insecure_fast_for_tests(),
        MetricsSink::from_fn(|_| {}),
    )
    .await
    .unwrap();

    let ip = ClientAddr::unknown();
    // No key is not a passing outage: a 500, not a 503.
    let err = store.register(fx_registration(0), &ip).await.unwrap_err();
    assert!(
        matches!(err, AuthError::Store(StoreError::Backend(_))),
        "{err:?}"
    );
    // Nothing was written: the same registration succeeds once keys exist,
    // written by another process (`keys rotate`), without waiting out the
    // secrets cache.
    ensure_keys(
        env.platform.uncached_secrets().as_ref(),
        &resources.tokens,
        env.clock.as_ref(),
    )
    .await
    .unwrap();
    let sessions =
        futures::future::join_all((0..6).map(|n| store.register(fx_registration(n), &ip))).await;
    let verifier = load_verifier(&env.platform, &resources.tokens.verifier())
        .await
        .unwrap();
    let mut kids = std::collections::BTreeSet::new();
    for session in sessions {
        let session = session.unwrap();
        let claims = verifier.verify(&session.access.token).await.unwrap();
        assert_eq!(claims.sub, session.account.id);
        let header = session.access.token.split('.').next().unwrap().to_owned();
        kids.insert(header);
    }
    assert_eq!(
        kids.len(),
        1,
        "the racing first calls signed with different keys"
    );
}
