//! Token keys on Secrets Manager (a moto server, see `common/mod.rs`): in AWS
//! the key secrets must exist before the auth function starts; once created
//! (`ensure_keys`, as `serve --provision` does) tokens issue and verify, and a
//! rotation reaches an already running verifier at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Principal, Role};
use constellation_platform::config::{Platform, SECRETS_CACHE_TTL};
use constellation_platform::tokens::{
    ACCESS_TOKEN_TTL, CLOCK_LEEWAY, TokenConfig, TokenError, ensure_keys, load_issuer,
    load_verifier, rotate_keys,
};
use constellation_platform::{Clock, ManualClock, SecretValue};

async fn fx_platform(clock: Arc<ManualClock>) -> Platform {
    Platform::aws(common::fx_backend().await, clock)
}

fn fx_config() -> TokenConfig {
    let id = common::unique("tokens");
    TokenConfig {
        signing_keys_secret: format!("{id}/signing-keys"),
        public_keys_secret: format!("{id}/public-keys"),
        ..TokenConfig::default()
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
    let clock = Arc::new(ManualClock::starting_now());
    let platform = fx_platform(clock.clone()).await;
    let cfg = fx_config();

    // Nothing is generated in AWS: missing secrets fail start-up, naming them.
    let err = load_issuer(&platform, &cfg).await.unwrap_err();
    assert!(
        format!("{err:#}").contains(&cfg.signing_keys_secret),
        "{err:#}"
    );
    let err = load_verifier(&platform, &cfg).await.unwrap_err();
    assert!(
        format!("{err:#}").contains(&cfg.public_keys_secret),
        "{err:#}"
    );

    // A template-created placeholder counts as no key yet.
    let secrets = platform.secrets();
    for name in [&cfg.signing_keys_secret, &cfg.public_keys_secret] {
        secrets.put(name, &SecretValue::new("{}")).await.unwrap();
    }
    assert!(load_issuer(&platform, &cfg).await.is_err());
    ensure_keys(secrets.as_ref(), &cfg, clock.as_ref())
        .await
        .unwrap();

    let issuer = load_issuer(&platform, &cfg).await.unwrap();
    let verifier = load_verifier(&platform, &cfg).await.unwrap();
    let old = issuer.issue(&fx_principal(), clock.now());
    assert_eq!(verifier.verify(&old.token).await.unwrap(), old.claims);

    // Rotate (as `constellation keys rotate` would, from another process).
    let other = fx_platform(clock.clone()).await;
    let kid = rotate_keys(other.secrets().as_ref(), &cfg, clock.as_ref())
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
    assert_eq!(
        verifier.jwks().await.unwrap()["keys"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    clock.advance(ACCESS_TOKEN_TTL - SECRETS_CACHE_TTL + CLOCK_LEEWAY);
    assert!(matches!(
        verifier.verify(&old.token).await,
        Err(TokenError::Expired)
    ));
}
