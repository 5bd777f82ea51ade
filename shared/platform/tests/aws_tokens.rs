//! The public key set on Secrets Manager (a moto server, see `common/mod.rs`):
//! in AWS it must exist before a service starts; once a key is published
//! tokens verify, and a key published later by another process (a rotation)
//! reaches an already running verifier at once. Signing and rotation
//! themselves are the auth function's (`functions/auth/tests/aws_signing.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Principal, Role};
use constellation_core::token::{
    ACCESS_TOKEN_TTL, CLOCK_LEEWAY, PublicKeyEntry, PublicKeySet, Rejection, SigningKey,
    access_claims,
};
use constellation_platform::config::Platform;
use constellation_platform::tokens::{
    KEY_REFRESH_INTERVAL, TokenError, VerifierConfig, load_verifier, write_public_keys,
};
use constellation_platform::{Clock, ManualClock, SecretValue};
use time::Duration;

async fn fx_platform(clock: Arc<ManualClock>) -> Platform {
    Platform::aws(common::fx_backend().await, clock)
}

fn fx_config() -> VerifierConfig {
    VerifierConfig {
        public_keys_secret: format!("{}/public-keys", common::unique("tokens")),
        ..VerifierConfig::default()
    }
}

fn fx_principal() -> Principal {
    Principal {
        account: AccountId::from_bytes([3; 16]),
        org: OrgId::parse("acme").unwrap(),
        role: Role::Owner,
    }
}

fn fx_token(cfg: &VerifierConfig, key: &SigningKey, clock: &ManualClock) -> String {
    key.sign(&access_claims(
        cfg.expected(),
        &fx_principal(),
        clock.now(),
        "fx".to_owned(),
    ))
}

#[tokio::test]
async fn the_key_set_must_exist_in_aws_then_verifies_and_follows_rotation() {
    let clock = Arc::new(ManualClock::starting_now());
    let platform = fx_platform(clock.clone()).await;
    let cfg = fx_config();

    // Nothing is assumed in AWS: a missing set fails start-up, naming it.
    let err = load_verifier(&platform, &cfg).await.unwrap_err();
    assert!(
        format!("{err:#}").contains(&cfg.public_keys_secret),
        "{err:#}"
    );

    // A template-created placeholder is an empty set: no token verifies yet.
    let secrets = platform.secrets();
    secrets
        .put(&cfg.public_keys_secret, &SecretValue::new("{}"))
        .await
        .unwrap();
    let verifier = load_verifier(&platform, &cfg).await.unwrap();
    assert!(verifier.jwks().await.unwrap().keys.is_empty());

    // Auth publishes its first key (from another process): the verifier
    // re-reads the set for the unknown kid and accepts it.
    let other = fx_platform(clock.clone()).await;
    let old = SigningKey::from_seed([1; 32]);
    let mut set = PublicKeySet::of(&old.public_key(), clock.now());
    write_public_keys(other.secrets().as_ref(), &cfg.public_keys_secret, &set)
        .await
        .unwrap();
    let old_token = fx_token(&cfg, &old, &clock);
    assert_eq!(verifier.verify(&old_token).await.unwrap().jti, "fx");

    // A rotation: the old key retired (valid for its tokens' lifetime), a new
    // one current. The running verifier takes both.
    clock.advance(KEY_REFRESH_INTERVAL);
    let new = SigningKey::from_seed([2; 32]);
    set.keys[0].not_after =
        Some((clock.now() + ACCESS_TOKEN_TTL + Duration::minutes(10)).unix_timestamp());
    set.keys
        .push(PublicKeyEntry::new(&new.public_key(), clock.now()));
    write_public_keys(other.secrets().as_ref(), &cfg.public_keys_secret, &set)
        .await
        .unwrap();
    let new_token = fx_token(&cfg, &new, &clock);
    assert_eq!(verifier.verify(&new_token).await.unwrap().jti, "fx");
    assert!(verifier.verify(&old_token).await.is_ok());
    let kids: Vec<String> = verifier
        .jwks()
        .await
        .unwrap()
        .keys
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, [old.kid(), new.kid()]);

    clock.advance(ACCESS_TOKEN_TTL + CLOCK_LEEWAY - KEY_REFRESH_INTERVAL);
    assert!(matches!(
        verifier.verify(&old_token).await,
        Err(TokenError::Rejected(Rejection::Expired))
    ));
    assert!(verifier.verify(&new_token).await.is_ok());
}
