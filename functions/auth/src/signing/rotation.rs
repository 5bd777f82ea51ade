//! Creating and rotating the key pair: the public set first, then the
//! private key, so a token never names a key verifiers cannot find.

use anyhow::Context as _;
use constellation_core::token::{ACCESS_TOKEN_TTL, PublicKeyEntry, PublicKeySet, SigningKey};
use constellation_platform::Clock;
use constellation_platform::SecretValue;
use constellation_platform::secrets::Secrets;
use constellation_platform::tokens::{read_public_keys, write_public_keys};
use time::OffsetDateTime;

use super::{ROTATION_GRACE, SigningConfig, SigningDoc, generate_key, read_signing};

/// Makes `current` the one unretired key of `set`: every other key without a
/// `not_after` is retired now (valid until `now + TTL + grace`), keys past
/// their `not_after` are pruned.
fn publish(set: &mut PublicKeySet, current: PublicKeyEntry, now: OffsetDateTime) {
    let until = (now + ACCESS_TOKEN_TTL + ROTATION_GRACE).unix_timestamp();
    for key in &mut set.keys {
        if key.kid != current.kid && key.not_after.is_none() {
            key.not_after = Some(until);
        }
    }
    set.keys.retain(|k| k.kid != current.kid && k.valid_at(now));
    set.keys.push(current);
}

async fn write_signing(secrets: &dyn Secrets, name: &str, doc: &SigningDoc) -> anyhow::Result<()> {
    let text = serde_json::to_string(doc).context("serialise the signing key document")?;
    secrets
        .put(name, &SecretValue::new(text))
        .await
        .with_context(|| format!("write secret {name}"))
}

/// Generates a key pair, makes it the current key of `public` and writes
/// both secrets (the public set first); returns the signing document and
/// its key.
async fn install_new_key(
    secrets: &dyn Secrets,
    cfg: &SigningConfig,
    public: &mut PublicKeySet,
    now: OffsetDateTime,
) -> anyhow::Result<(SigningDoc, SigningKey)> {
    let key = generate_key();
    let doc = SigningDoc::new(&key, now);
    publish(public, PublicKeyEntry::new(&key.public_key(), now), now);
    // Public first: a token must never name a key verifiers cannot find.
    write_public_keys(secrets, &cfg.public_keys_secret, public).await?;
    write_signing(secrets, &cfg.signing_keys_secret, &doc).await?;
    Ok((doc, key))
}

/// Creates a first key pair if there is none (used locally on first start and
/// by `serve --provision`), and repairs a public set missing the current key.
pub async fn ensure_keys(
    secrets: &dyn Secrets,
    cfg: &SigningConfig,
    clock: &dyn Clock,
) -> anyhow::Result<()> {
    ensure_signing_key(secrets, cfg, clock).await.map(drop)
}

/// [`ensure_keys`], returning the signing document it found or made and its
/// key, so that a caller reading the document again need not derive the
/// key again when the document is the same.
pub(super) async fn ensure_signing_key(
    secrets: &dyn Secrets,
    cfg: &SigningConfig,
    clock: &dyn Clock,
) -> anyhow::Result<(SigningDoc, SigningKey)> {
    let now = clock.now();
    let signing = read_signing(secrets, &cfg.signing_keys_secret).await?;
    let mut public = read_public_keys(secrets, &cfg.public_keys_secret)
        .await?
        .unwrap_or_default();
    match signing {
        Some(doc) => {
            let key = doc.key()?;
            if !public.contains(&doc.kid) {
                publish(
                    &mut public,
                    PublicKeyEntry::new(&key.public_key(), now),
                    now,
                );
                write_public_keys(secrets, &cfg.public_keys_secret, &public).await?;
                tracing::warn!(kid = %doc.kid, "public key set lacked the current key; added it");
            }
            Ok((doc, key))
        }
        None => {
            let made = install_new_key(secrets, cfg, &mut public, now).await?;
            tracing::info!(kid = %made.0.kid, "created the first token signing key");
            Ok(made)
        }
    }
}

/// Adds a new current signing key and returns its `kid`. Previous keys' public
/// halves stay valid until every token they can have signed has expired
/// (retired time + [`ACCESS_TOKEN_TTL`] + [`ROTATION_GRACE`]); keys past that
/// are pruned; the private half of the previous key is dropped. Creates the
/// first key when there is none. Do not run two rotations at once.
pub async fn rotate_keys(
    secrets: &dyn Secrets,
    cfg: &SigningConfig,
    clock: &dyn Clock,
) -> anyhow::Result<String> {
    let now = clock.now();
    let previous = read_signing(secrets, &cfg.signing_keys_secret).await?;
    let mut public = read_public_keys(secrets, &cfg.public_keys_secret)
        .await?
        .unwrap_or_default();
    if let Some(prev) = &previous {
        let prev_key = prev.key()?;
        if !public.contains(&prev.kid) {
            public
                .keys
                .push(PublicKeyEntry::new(&prev_key.public_key(), now));
        }
    }
    let kid = install_new_key(secrets, cfg, &mut public, now).await?.0.kid;
    tracing::info!(
        %kid,
        previous = previous.as_ref().map(|p| p.kid.as_str()),
        "rotated the token signing key"
    );
    Ok(kid)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;

    use constellation_core::token::{CLOCK_LEEWAY, PublicKey, Rejection};
    use constellation_platform::ManualClock;
    use constellation_platform::config::Platform;
    use constellation_platform::tokens::{KEY_SET_MAX_AGE, TokenError, load_verifier};
    use serde_json::{Value, json};
    use time::Duration;

    use super::super::tests::{fx, fx_principal};
    use super::super::{load_issuer, read_signing};
    use super::*;

    #[tokio::test]
    async fn rotation_keeps_old_tokens_valid_until_expiry_and_new_tokens_verify() {
        let fx = fx().await;
        let old_kid = fx.issuer.kid();
        let old = fx.issue();
        fx.clock.advance(Duration::minutes(5));

        let secrets = fx.platform.secrets();
        let new_kid = rotate_keys(secrets.as_ref(), &fx.cfg, fx.clock.as_ref())
            .await
            .unwrap();
        assert_ne!(new_kid, old_kid);
        fx.issuer.reload().await.unwrap();
        assert_eq!(fx.issuer.kid(), new_kid);

        let new = fx.issue();
        // The verifier learns the new kid on first sight, and still knows the old one.
        assert_eq!(fx.verify(&new.token).await.unwrap(), new.claims);
        assert_eq!(fx.verify(&old.token).await.unwrap(), old.claims);

        // The old token lives out its 15 minutes, then expires.
        fx.clock
            .advance(Duration::minutes(10) - Duration::seconds(1));
        assert!(fx.verify(&old.token).await.is_ok());
        fx.clock.advance(Duration::seconds(1) + CLOCK_LEEWAY);
        assert!(matches!(
            fx.verify(&old.token).await,
            Err(TokenError::Rejected(Rejection::Expired))
        ));
        assert!(fx.verify(&new.token).await.is_ok());

        // A fresh verifier (another service's cold start) also takes both.
        let other = load_verifier(&fx.platform, &fx.cfg.verifier())
            .await
            .unwrap();
        assert!(other.verify(&new.token).await.is_ok());

        // Past retire + TTL + grace the JWKS lists the new key only.
        fx.clock.advance(ACCESS_TOKEN_TTL + ROTATION_GRACE);
        let jwks = other.jwks().await.unwrap();
        let kids: Vec<&str> = jwks.keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, [new_kid.as_str()]);
    }

    #[tokio::test]
    async fn rotation_prunes_expired_keys_and_drops_old_private_halves() {
        let fx = fx().await;
        let secrets = fx.platform.secrets();
        let first = fx.issuer.kid();
        let second = rotate_keys(secrets.as_ref(), &fx.cfg, fx.clock.as_ref())
            .await
            .unwrap();
        fx.clock
            .advance(ACCESS_TOKEN_TTL + ROTATION_GRACE + Duration::seconds(1));
        let third = rotate_keys(secrets.as_ref(), &fx.cfg, fx.clock.as_ref())
            .await
            .unwrap();
        let public = read_public_keys(secrets.as_ref(), &fx.cfg.public_keys_secret)
            .await
            .unwrap()
            .unwrap();
        let kids: Vec<&str> = public.keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, [second.as_str(), third.as_str()], "{first} pruned");
        assert!(public.keys[0].not_after.is_some() && public.keys[1].not_after.is_none());
        let private = secrets
            .get(&fx.cfg.signing_keys_secret)
            .await
            .unwrap()
            .unwrap();
        let private: Value = serde_json::from_str(private.expose()).unwrap();
        assert_eq!(private["kid"], json!(third));
        assert_eq!(
            private.as_object().unwrap().len(),
            3,
            "one key only: {:?}",
            private.as_object().unwrap().keys()
        );
    }

    #[tokio::test]
    async fn a_signature_by_a_retired_key_is_refused_after_its_grace() {
        let fx = fx().await;
        let old_key = fx.signing_key().await;
        let secrets = fx.platform.secrets();
        rotate_keys(secrets.as_ref(), &fx.cfg, fx.clock.as_ref())
            .await
            .unwrap();
        // A stale issuer still signing with the old key: fine for a while...
        let token = old_key.sign(&fx.claims());
        assert!(fx.verify(&token).await.is_ok());
        // ...but not once every token of that key must have expired.
        fx.clock.advance(ACCESS_TOKEN_TTL + ROTATION_GRACE);
        let token = old_key.sign(&fx.claims());
        assert!(matches!(
            fx.verify(&token).await,
            Err(TokenError::Rejected(Rejection::UnknownKey))
        ));
    }

    #[tokio::test]
    async fn jwks_lists_the_current_and_still_valid_previous_keys() {
        let fx = fx().await;
        let first = fx.issuer.kid();
        let secrets = fx.platform.secrets();
        let second = rotate_keys(secrets.as_ref(), &fx.cfg, fx.clock.as_ref())
            .await
            .unwrap();
        // The JWKS in memory is refreshed once it is older than KEY_SET_MAX_AGE.
        fx.clock.advance(KEY_SET_MAX_AGE);
        let jwks = serde_json::to_value(fx.verifier.jwks().await.unwrap()).unwrap();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2, "{jwks}");
        for key in keys {
            let mut fields: Vec<&str> = key
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            fields.sort_unstable();
            assert_eq!(fields, ["alg", "crv", "kid", "kty", "use", "x"]);
            assert_eq!(
                (&key["kty"], &key["crv"], &key["use"], &key["alg"]),
                (
                    &json!("OKP"),
                    &json!("Ed25519"),
                    &json!("sig"),
                    &json!("EdDSA")
                )
            );
            let x = PublicKey::from_base64url(key["x"].as_str().unwrap()).unwrap();
            assert_eq!(key["kid"], json!(x.kid()));
        }
        let kids: Vec<&Value> = keys.iter().map(|k| &k["kid"]).collect();
        assert_eq!(kids, [&json!(first), &json!(second)]);
    }

    #[tokio::test]
    async fn ensure_keys_fills_a_placeholder_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::starting_now());
        let platform =
            Platform::local(dir.path().to_path_buf(), String::new(), clock.clone()).unwrap();
        let cfg = SigningConfig::default();
        let secrets = platform.secrets();
        for name in [&cfg.signing_keys_secret, &cfg.public_keys_secret] {
            secrets.put(name, &SecretValue::new("{}")).await.unwrap();
        }
        ensure_keys(secrets.as_ref(), &cfg, clock.as_ref())
            .await
            .unwrap();
        let first = secrets.get(&cfg.signing_keys_secret).await.unwrap();
        ensure_keys(secrets.as_ref(), &cfg, clock.as_ref())
            .await
            .unwrap();
        assert_eq!(secrets.get(&cfg.signing_keys_secret).await.unwrap(), first);
        let issuer = load_issuer(&platform, &cfg).await.unwrap();
        let verifier = load_verifier(&platform, &cfg.verifier()).await.unwrap();
        let token = issuer.issue(&fx_principal(), clock.now()).token;
        assert!(verifier.verify(&token).await.is_ok());
    }

    #[tokio::test]
    async fn ensure_keys_repairs_a_public_set_missing_the_current_key() {
        let fx = fx().await;
        let secrets = fx.platform.secrets();
        let retired = read_public_keys(secrets.as_ref(), &fx.cfg.public_keys_secret)
            .await
            .unwrap()
            .unwrap();
        // The public set lost the current key (a hand edit, a half-done restore).
        let stranger = PublicKeySet::of(
            &constellation_core::token::SigningKey::from_seed([9; 32]).public_key(),
            fx.now(),
        );
        write_public_keys(secrets.as_ref(), &fx.cfg.public_keys_secret, &stranger)
            .await
            .unwrap();
        let private = read_signing(secrets.as_ref(), &fx.cfg.signing_keys_secret)
            .await
            .unwrap()
            .unwrap();
        ensure_keys(secrets.as_ref(), &fx.cfg, fx.clock.as_ref())
            .await
            .unwrap();
        let public = read_public_keys(secrets.as_ref(), &fx.cfg.public_keys_secret)
            .await
            .unwrap()
            .unwrap();
        // The current key is back as the one unretired key; the private key is untouched.
        let current: Vec<&str> = public
            .keys
            .iter()
            .filter(|k| k.not_after.is_none())
            .map(|k| k.kid.as_str())
            .collect();
        assert_eq!(current, [fx.issuer.kid().as_str()]);
        assert_eq!(public.keys.len(), 2);
        assert_eq!(retired.keys[0].kid, fx.issuer.kid());
        let after = read_signing(secrets.as_ref(), &fx.cfg.signing_keys_secret)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((after.kid, after.d), (private.kid, private.d));
        let fresh = load_verifier(&fx.platform, &fx.cfg.verifier())
            .await
            .unwrap();
        assert!(fresh.verify(&fx.issue().token).await.is_ok());
    }
}
