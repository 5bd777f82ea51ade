//! Verifying access tokens in every service: the public key set read over
//! the Secrets port, cached, and re-read when it may have changed.
//!
//! The token format and its rules are `constellation_core::token`; this
//! module adds only what needs I/O: where the public key set lives
//! ([`VerifierConfig`]), reading and writing it ([`read_public_keys`],
//! [`write_public_keys`]), and a [`TokenVerifier`] that holds it in memory.
//! Signing and key rotation are the auth function's (`constellation_auth::signing`):
//! nothing here reads, or knows the name of, the private signing key.
//!
//! Keys rotate while services run. A verifier re-reads the public set
//! (uncached, at most every [`KEY_REFRESH_INTERVAL`]) when a token names a
//! key it does not know, so a new key is accepted at once, and when its copy
//! is older than [`KEY_SET_MAX_AGE`], so retired keys lapse without a cold
//! start. The set is JSON, `constellation_core::token::PublicKeySet`.
//!
//! A service's verifier reads the set on its first use
//! ([`TokenVerifier::on_first_use`]), not at cold start: a Lambda answers a
//! health check, or a request without a token, without a Secrets Manager
//! round trip. Until a first read succeeds, verification fails as
//! [`TokenError::Unavailable`] (503), the failure is logged, and the next
//! request tries again.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use constellation_core::auth::Claims;
use constellation_core::token::{
    Expected, Jwks, PublicKey, PublicKeyEntry, PublicKeySet, Rejection, UnverifiedToken,
};
use sha2::{Digest as _, Sha256};
use time::{Duration, OffsetDateTime};

use crate::clock::Clock;
use crate::config::{BackendKind, ConfigError, Platform};
use crate::secrets::{SecretValue, Secrets, validate_secret_name};

/// The secret holding the public key set: every service reads it.
pub const DEFAULT_PUBLIC_KEYS_SECRET: &str = "constellation/auth/public-keys";
/// A verifier re-reads the public key set for an unknown `kid` at most this often.
pub const KEY_REFRESH_INTERVAL: Duration = Duration::seconds(30);
/// A verifier re-reads the public key set when its copy is older than this
/// (so retirements and prunes reach it without a cold start).
pub const KEY_SET_MAX_AGE: Duration = Duration::minutes(5);
/// How many verified tokens a verifier remembers (about 3 MB at most).
pub const VERIFIED_CACHE_ENTRIES: usize = 10_000;

/// Environment variable naming the token issuer (`iss`).
pub const ISSUER_VAR: &str = "AUTH_ISSUER";
/// Environment variable naming the token audience (`aud`).
pub const AUDIENCE_VAR: &str = "AUTH_AUDIENCE";
/// Environment variable naming the public-key secret.
pub const PUBLIC_KEYS_SECRET_VAR: &str = "AUTH_PUBLIC_KEYS_SECRET_ID";

/// Which tokens a service accepts, and where their public keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierConfig {
    /// The required `iss`.
    pub issuer: String,
    /// The required `aud`.
    pub audience: String,
    /// The secret holding the public key set.
    pub public_keys_secret: String,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        Self {
            issuer: "constellation".to_owned(),
            audience: "constellation-api".to_owned(),
            public_keys_secret: DEFAULT_PUBLIC_KEYS_SECRET.to_owned(),
        }
    }
}

impl VerifierConfig {
    /// Reads `AUTH_ISSUER`, `AUTH_AUDIENCE` and `AUTH_PUBLIC_KEYS_SECRET_ID`,
    /// each defaulting as in [`VerifierConfig::default`].
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(crate::config::optional)
    }

    /// [`VerifierConfig::from_env`] through `var` (a variable's value, `None` when unset).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let d = Self::default();
        let cfg = Self {
            issuer: var(ISSUER_VAR).unwrap_or(d.issuer),
            audience: var(AUDIENCE_VAR).unwrap_or(d.audience),
            public_keys_secret: var(PUBLIC_KEYS_SECRET_VAR).unwrap_or(d.public_keys_secret),
        };
        validate_secret_name(&cfg.public_keys_secret).map_err(|_| ConfigError::Invalid {
            name: PUBLIC_KEYS_SECRET_VAR,
            reason: "is not a valid secret name".to_owned(),
        })?;
        Ok(cfg)
    }

    /// The issuer and audience a token must name.
    pub fn expected(&self) -> Expected<'_> {
        Expected {
            issuer: &self.issuer,
            audience: &self.audience,
        }
    }
}

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token breaks a rule; the text is safe to show a client and never
    /// contains the token.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The public key set could not be read; retry.
    #[error("token keys are temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
}

/// Reads the public key set: `None` when the secret does not exist. Errors
/// name the secret, never its content.
pub async fn read_public_keys(
    secrets: &dyn Secrets,
    name: &str,
) -> anyhow::Result<Option<PublicKeySet>> {
    let Some(value) = secrets
        .get(name)
        .await
        .with_context(|| format!("read secret {name}"))?
    else {
        return Ok(None);
    };
    let set = serde_json::from_str(value.expose())
        .map_err(|_| anyhow::anyhow!("secret {name} is not a public key set"))?;
    Ok(Some(set))
}

/// Writes the public key set, creating the secret if needed.
pub async fn write_public_keys(
    secrets: &dyn Secrets,
    name: &str,
    set: &PublicKeySet,
) -> anyhow::Result<()> {
    let text = serde_json::to_string(set).context("serialise the public key set")?;
    secrets
        .put(name, &SecretValue::new(text))
        .await
        .with_context(|| format!("write secret {name}"))
}

#[derive(Clone)]
struct KnownKey {
    entry: PublicKeyEntry,
    key: PublicKey,
}

#[derive(Default)]
struct KeyRing {
    keys: Vec<KnownKey>,
    loaded_at: Option<OffsetDateTime>,
}

impl KeyRing {
    fn from_set(set: PublicKeySet, now: OffsetDateTime) -> Self {
        let mut keys = Vec::with_capacity(set.keys.len());
        for entry in set.keys {
            match entry.public_key() {
                Ok(key) => keys.push(KnownKey { entry, key }),
                Err(_) => tracing::warn!(kid = %entry.kid, "skipping an unusable public key"),
            }
        }
        Self {
            keys,
            loaded_at: Some(now),
        }
    }

    fn find(&self, kid: &str, now: OffsetDateTime) -> Option<PublicKey> {
        self.keys
            .iter()
            .find(|k| k.entry.kid == kid && k.entry.valid_at(now))
            .map(|k| k.key)
    }
}

/// Verifies access tokens against the public key set. Holds public keys only.
pub struct TokenVerifier {
    config: VerifierConfig,
    ring: RwLock<KeyRing>,
    /// Read uncached, so a rotated key is visible at once.
    source: Arc<dyn Secrets>,
    clock: Arc<dyn Clock>,
    /// When the public set was last (re-)read on demand; held while reading.
    last_refresh: tokio::sync::Mutex<Option<OffsetDateTime>>,
    /// Whether a missing secret is an error (AWS, where auth's keys are
    /// provisioned before any service starts) or an empty set (local).
    require_secret: bool,
    /// Tokens already verified, by the SHA-256 of the token, until their
    /// expiry: each token is checked once per instance, not per request.
    verified: std::sync::Mutex<HashMap<[u8; 32], Claims>>,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<String> = self
            .ring
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys
            .iter()
            .map(|k| k.entry.kid.clone())
            .collect();
        f.debug_struct("TokenVerifier")
            .field("issuer", &self.config.issuer)
            .field("audience", &self.config.audience)
            .field("kids", &kids)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// Verifies a compact JWS access token and returns its claims, by the
    /// rules of `constellation_core::token::verify` at the clock's now: the
    /// header's `kid` must be in the public key set (re-read once if it is
    /// not, at most every [`KEY_REFRESH_INTERVAL`]) and valid now.
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = self.cached(&digest) {
            return Ok(claims);
        }
        let unverified = UnverifiedToken::parse(token)?;
        self.ensure_loaded().await?;
        self.refresh_if_stale(self.clock.now()).await;
        let key = self.key_for(unverified.kid()).await?;
        let claims = unverified.verify(&key, self.config.expected(), self.clock.now())?;
        self.remember(digest, &claims);
        Ok(claims)
    }

    /// The claims of a token verified before, while it has not expired (the
    /// verification leeway is not granted again: past `exp` it is checked anew).
    fn cached(&self, digest: &[u8; 32]) -> Option<Claims> {
        let now = self.clock.now().unix_timestamp();
        let cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(digest).filter(|c| c.exp > now).cloned()
    }

    /// Keeps `claims` for [`TokenVerifier::cached`]; the cache is bounded to
    /// [`VERIFIED_CACHE_ENTRIES`]: expired entries go first, and if every
    /// entry is live the cache starts over.
    fn remember(&self, digest: [u8; 32], claims: &Claims) {
        let now = self.clock.now().unix_timestamp();
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= VERIFIED_CACHE_ENTRIES {
            cache.retain(|_, c| c.exp > now);
            if cache.len() >= VERIFIED_CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(digest, claims.clone());
    }

    /// The public key set as an RFC 7517 JWKS: every key still valid now.
    pub async fn jwks(&self) -> Result<Jwks, TokenError> {
        self.ensure_loaded().await?;
        let now = self.clock.now();
        self.refresh_if_stale(now).await;
        let ring = self.ring.read().unwrap_or_else(|p| p.into_inner());
        let keys = ring
            .keys
            .iter()
            .filter(|k| k.entry.valid_at(now))
            .map(|k| k.entry.jwk())
            .collect();
        Ok(Jwks { keys })
    }

    async fn key_for(&self, kid: &str) -> Result<PublicKey, TokenError> {
        let now = self.clock.now();
        if let Some(key) = self.find(kid, now) {
            return Ok(key);
        }
        let mut last = self.last_refresh.lock().await;
        // Someone else may have refreshed while this request waited.
        if let Some(key) = self.find(kid, now) {
            return Ok(key);
        }
        if last.is_some_and(|t| now - t < KEY_REFRESH_INTERVAL) {
            return Err(Rejection::UnknownKey.into());
        }
        self.refresh(&mut last, now).await?;
        self.find(kid, now)
            .ok_or_else(|| Rejection::UnknownKey.into())
    }

    /// Re-reads the key set when the copy in memory is older than
    /// [`KEY_SET_MAX_AGE`] (unless another request is already at it, or the
    /// last attempt was under [`KEY_REFRESH_INTERVAL`] ago); on failure the
    /// keys in memory stay in use.
    async fn refresh_if_stale(&self, now: OffsetDateTime) {
        let stale = |ring: &KeyRing| ring.loaded_at.is_none_or(|t| now - t >= KEY_SET_MAX_AGE);
        if !stale(&self.ring.read().unwrap_or_else(|p| p.into_inner())) {
            return;
        }
        let Ok(mut last) = self.last_refresh.try_lock() else {
            return;
        };
        if last.is_some_and(|t| now - t < KEY_REFRESH_INTERVAL)
            || !stale(&self.ring.read().unwrap_or_else(|p| p.into_inner()))
        {
            return;
        }
        if let Err(e) = self.refresh(&mut last, now).await {
            tracing::warn!(
                error = format!("{:#}", anyhow::Error::from(e)),
                "re-reading the public key set failed; keeping the keys in memory"
            );
        }
    }

    /// Reads the public key set if it never was. Concurrent first callers
    /// share one read; a failure is logged and returned, and the next caller
    /// tries again.
    async fn ensure_loaded(&self) -> Result<(), TokenError> {
        let loaded = |v: &Self| {
            v.ring
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .loaded_at
                .is_some()
        };
        if loaded(self) {
            return Ok(());
        }
        // The refresh lock serialises first readers; a first read is not a
        // refresh, so it leaves the refresh interval's timer alone.
        let _reading = self.last_refresh.lock().await;
        if loaded(self) {
            return Ok(());
        }
        let now = self.clock.now();
        let secret = &self.config.public_keys_secret;
        let result = match read_public_keys(self.source.as_ref(), secret).await {
            Ok(Some(set)) => Ok(set),
            Ok(None) if !self.require_secret => Ok(PublicKeySet::default()),
            Ok(None) => Err(anyhow::anyhow!("secret {secret} does not exist")),
            Err(e) => Err(e),
        };
        let set = result.map_err(|e| {
            tracing::error!(
                error = format!("{e:#}"),
                secret = %secret,
                "reading the public key set failed"
            );
            TokenError::Unavailable(e)
        })?;
        if set.keys.is_empty() {
            tracing::warn!(
                secret = %secret,
                "the public key set is empty: no token verifies until a key is created"
            );
        }
        *self.ring.write().unwrap_or_else(|p| p.into_inner()) = KeyRing::from_set(set, now);
        Ok(())
    }

    fn find(&self, kid: &str, now: OffsetDateTime) -> Option<PublicKey> {
        self.ring
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .find(kid, now)
    }

    async fn refresh(
        &self,
        last: &mut Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Result<(), TokenError> {
        *last = Some(now);
        let set = read_public_keys(self.source.as_ref(), &self.config.public_keys_secret)
            .await
            .map_err(TokenError::Unavailable)?
            .unwrap_or_default();
        *self.ring.write().unwrap_or_else(|p| p.into_inner()) = KeyRing::from_set(set, now);
        Ok(())
    }
}

impl TokenVerifier {
    /// A verifier that reads the public key set (never the private secret)
    /// when it first verifies a token or lists the keys; nothing is read
    /// now. In AWS the secret must exist (auth's keys are provisioned before
    /// any service starts). Locally a missing set counts as empty: the auth
    /// service creates the first key pair when it starts, possibly after this
    /// service, and the first token naming it makes the verifier re-read the
    /// set. It is re-read, uncached, when a token names an unknown `kid` (at
    /// most every [`KEY_REFRESH_INTERVAL`]), so a new key is accepted at once,
    /// and when its copy is older than [`KEY_SET_MAX_AGE`] (one request then
    /// pays one read), so retired keys lapse without a cold start.
    pub fn on_first_use(platform: &Platform, cfg: &VerifierConfig) -> Arc<Self> {
        Self::over(
            cfg,
            platform.uncached_secrets(),
            platform.clock(),
            platform.kind() == BackendKind::Aws,
        )
    }

    fn over(
        cfg: &VerifierConfig,
        source: Arc<dyn Secrets>,
        clock: Arc<dyn Clock>,
        require_secret: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            config: cfg.clone(),
            ring: RwLock::new(KeyRing::default()),
            source,
            clock,
            last_refresh: tokio::sync::Mutex::new(None),
            require_secret,
            verified: std::sync::Mutex::default(),
        })
    }
}

/// Builds a verifier like [`TokenVerifier::on_first_use`] and reads the
/// public key set now, failing if it cannot be read (or, in AWS, does not
/// exist): for hosts whose only work is verifying (the authorizer), where
/// the start is the right place to fail.
pub async fn load_verifier(
    platform: &Platform,
    cfg: &VerifierConfig,
) -> anyhow::Result<Arc<TokenVerifier>> {
    let verifier = TokenVerifier::on_first_use(platform, cfg);
    verifier.ensure_loaded().await.map_err(|e| match e {
        TokenError::Unavailable(cause) => cause,
        other => other.into(),
    })?;
    Ok(verifier)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use constellation_core::OrgId;
    use constellation_core::auth::{AccountId, Principal, Role};
    use constellation_core::token::{ACCESS_TOKEN_TTL, CLOCK_LEEWAY, SigningKey, access_claims};

    struct Fx {
        _dir: tempfile::TempDir,
        clock: Arc<ManualClock>,
        platform: Platform,
        cfg: VerifierConfig,
    }

    /// A fresh local platform with no key set yet.
    fn fx() -> Fx {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::starting_now());
        let platform =
            Platform::local(dir.path().to_path_buf(), String::new(), clock.clone()).unwrap();
        Fx {
            _dir: dir,
            clock,
            platform,
            cfg: VerifierConfig::default(),
        }
    }

    fn fx_key(n: u8) -> SigningKey {
        SigningKey::from_seed([n; 32])
    }

    fn fx_principal() -> Principal {
        Principal {
            account: AccountId::from_bytes([7; 16]),
            org: OrgId::parse("acme").unwrap(),
            role: Role::Staff,
        }
    }

    impl Fx {
        /// Publishes `keys` as the public key set, the first ones retired
        /// (valid for `retired_for` more) and the last one current.
        async fn publish(&self, keys: &[&SigningKey], retired_for: Duration) {
            let now = self.clock.now();
            let mut set = PublicKeySet::default();
            for (i, key) in keys.iter().enumerate() {
                let mut entry = PublicKeyEntry::new(&key.public_key(), now);
                if i + 1 < keys.len() {
                    entry.not_after = Some((now + retired_for).unix_timestamp());
                }
                set.keys.push(entry);
            }
            write_public_keys(
                self.platform.secrets().as_ref(),
                &self.cfg.public_keys_secret,
                &set,
            )
            .await
            .unwrap();
        }

        fn token(&self, key: &SigningKey) -> (String, Claims) {
            let claims = access_claims(
                self.cfg.expected(),
                &fx_principal(),
                self.clock.now(),
                "fx".to_owned(),
            );
            (key.sign(&claims), claims)
        }

        async fn verifier(&self) -> Arc<TokenVerifier> {
            load_verifier(&self.platform, &self.cfg).await.unwrap()
        }
    }

    fn kids(jwks: &Jwks) -> Vec<String> {
        jwks.keys.iter().map(|k| k.kid.clone()).collect()
    }

    #[tokio::test]
    async fn verifies_tokens_of_the_published_keys_by_the_core_rules() {
        let fx = fx();
        let key = fx_key(1);
        fx.publish(&[&key], Duration::ZERO).await;
        let verifier = fx.verifier().await;
        let (token, claims) = fx.token(&key);
        assert_eq!(verifier.verify(&token).await.unwrap(), claims);
        assert!(matches!(
            verifier.verify("").await,
            Err(TokenError::Rejected(Rejection::Missing))
        ));
        let foreign = VerifierConfig {
            audience: "another-api".to_owned(),
            ..VerifierConfig::default()
        };
        let claims = access_claims(
            foreign.expected(),
            &fx_principal(),
            fx.clock.now(),
            "fx".to_owned(),
        );
        assert!(matches!(
            verifier.verify(&key.sign(&claims)).await,
            Err(TokenError::Rejected(Rejection::Audience))
        ));
        let (token, _) = fx.token(&fx_key(2));
        assert!(matches!(
            verifier.verify(&token).await,
            Err(TokenError::Rejected(Rejection::UnknownKey))
        ));
        let (token, _) = fx.token(&key);
        fx.clock.advance(ACCESS_TOKEN_TTL + CLOCK_LEEWAY);
        assert!(matches!(
            verifier.verify(&token).await,
            Err(TokenError::Rejected(Rejection::Expired))
        ));
    }

    #[tokio::test]
    async fn a_verified_token_is_remembered_until_it_expires_and_no_longer() {
        let fx = fx();
        let key = fx_key(1);
        fx.publish(&[&key], Duration::ZERO).await;
        let verifier = fx.verifier().await;
        let (token, claims) = fx.token(&key);
        assert_eq!(verifier.verify(&token).await.unwrap(), claims);

        // The key set is gone from storage and from memory: only the cache
        // can still vouch for the token.
        fx.publish(&[&fx_key(2)], Duration::ZERO).await;
        fx.clock.advance(KEY_SET_MAX_AGE + Duration::seconds(1));
        assert!(
            matches!(
                verifier.verify(&fx.token(&key).0).await,
                Err(TokenError::Rejected(Rejection::UnknownKey))
            ),
            "a new token of the old key is checked, and refused"
        );
        assert_eq!(
            verifier.verify(&token).await.unwrap(),
            claims,
            "the token verified before is served from the cache"
        );
        let mut tampered = token.clone();
        tampered.push('A');
        assert!(
            verifier.verify(&tampered).await.is_err(),
            "a different string is never a cache hit"
        );

        // At its expiry it is checked again (and the key is unknown now).
        fx.clock
            .advance(ACCESS_TOKEN_TTL - KEY_SET_MAX_AGE - Duration::seconds(1));
        assert!(verifier.verify(&token).await.is_err());
    }

    #[tokio::test]
    async fn unknown_kids_reread_the_key_set_at_most_every_30_seconds() {
        let fx = fx();
        let (first, second, third) = (fx_key(1), fx_key(2), fx_key(3));
        fx.publish(&[&first], Duration::ZERO).await;
        let verifier = fx.verifier().await;
        // Another process rotates: the first unknown kid re-reads at once.
        fx.publish(&[&first, &second], Duration::minutes(25)).await;
        assert!(verifier.verify(&fx.token(&second).0).await.is_ok());
        // A second rotation right after is not seen until 30 s have passed.
        fx.publish(&[&first, &second, &third], Duration::minutes(25))
            .await;
        let (token, _) = fx.token(&third);
        assert!(matches!(
            verifier.verify(&token).await,
            Err(TokenError::Rejected(Rejection::UnknownKey))
        ));
        fx.clock.advance(KEY_REFRESH_INTERVAL);
        assert!(verifier.verify(&token).await.is_ok());
    }

    #[tokio::test]
    async fn the_key_set_is_reread_when_older_than_its_max_age() {
        let fx = fx();
        let (old, new) = (fx_key(1), fx_key(2));
        fx.publish(&[&old], Duration::ZERO).await;
        let verifier = fx.verifier().await;
        let (old_token, _) = fx.token(&old);
        fx.publish(&[&old, &new], KEY_SET_MAX_AGE + Duration::minutes(1))
            .await;
        // The copy in memory serves until it is KEY_SET_MAX_AGE old...
        let jwks = verifier.jwks().await.unwrap();
        assert_eq!(kids(&jwks), [old.kid()]);
        fx.clock.advance(KEY_SET_MAX_AGE - Duration::seconds(1));
        assert_eq!(kids(&verifier.jwks().await.unwrap()), [old.kid()]);
        // ...then one request re-reads it: the JWKS lists both keys.
        fx.clock.advance(Duration::seconds(1));
        let jwks = verifier.jwks().await.unwrap();
        assert_eq!(kids(&jwks), [old.kid(), new.kid()]);
        assert_eq!(
            jwks.keys[1],
            PublicKeyEntry::new(&new.public_key(), fx.clock.now()).jwk()
        );
        // Past its not_after the retired key is refused and no longer listed.
        fx.clock.advance(Duration::minutes(1));
        assert_eq!(kids(&verifier.jwks().await.unwrap()), [new.kid()]);
        assert!(matches!(
            verifier.verify(&fx.token(&old).0).await,
            Err(TokenError::Rejected(Rejection::UnknownKey))
        ));
        assert!(matches!(
            verifier.verify(&old_token).await,
            Err(TokenError::Rejected(Rejection::UnknownKey))
        ));
    }

    #[tokio::test]
    async fn a_local_verifier_started_before_any_key_accepts_the_first_one() {
        let fx = fx();
        // Locally a service may start before auth has created the keys.
        let verifier = fx.verifier().await;
        assert!(verifier.jwks().await.unwrap().keys.is_empty());
        let key = fx_key(1);
        fx.publish(&[&key], Duration::ZERO).await;
        let (token, claims) = fx.token(&key);
        assert_eq!(verifier.verify(&token).await.unwrap(), claims);
    }

    #[tokio::test]
    async fn an_unreadable_key_set_is_unavailable_not_a_rejection() {
        let fx = fx();
        let key = fx_key(1);
        fx.publish(&[&key], Duration::ZERO).await;
        let verifier = fx.verifier().await;
        fx.platform
            .secrets()
            .put(&fx.cfg.public_keys_secret, &SecretValue::new("not json"))
            .await
            .unwrap();
        let (token, _) = fx.token(&fx_key(2));
        let err = verifier.verify(&token).await.unwrap_err();
        assert!(matches!(err, TokenError::Unavailable(_)), "{err:?}");
        let cause = format!("{:#}", anyhow::Error::from(err));
        assert!(cause.contains(&fx.cfg.public_keys_secret), "{cause}");
        assert!(!cause.contains("not json"), "{cause}");
        // The keys in memory still verify.
        assert!(verifier.verify(&fx.token(&key).0).await.is_ok());
        // And a cold start fails naming the secret, not its content.
        let err = load_verifier(&fx.platform, &fx.cfg).await.unwrap_err();
        assert!(
            format!("{err:#}").contains("is not a public key set"),
            "{err:#}"
        );
    }

    #[tokio::test]
    async fn debug_output_carries_no_key_material() {
        let fx = fx();
        let key = fx_key(1);
        fx.publish(&[&key], Duration::ZERO).await;
        let verifier = fx.verifier().await;
        let shown = format!("{verifier:?}");
        assert!(shown.contains(key.kid()), "{shown}");
        assert!(!shown.contains(&key.public_key().to_base64url()), "{shown}");
    }

    #[test]
    fn config_reads_its_variables_with_defaults() {
        let cfg = VerifierConfig::from_vars(|_| None).unwrap();
        assert_eq!(cfg, VerifierConfig::default());
        assert_eq!(cfg.public_keys_secret, "constellation/auth/public-keys");
        assert_eq!(
            (cfg.issuer.as_str(), cfg.audience.as_str()),
            ("constellation", "constellation-api")
        );
        let cfg = VerifierConfig::from_vars(|name| match name {
            "AUTH_ISSUER" => Some("https://auth.example".into()),
            "AUTH_PUBLIC_KEYS_SECRET_ID" => Some("prod/public".into()),
            // Not this side's business: never read.
            "AUTH_SIGNING_KEYS_SECRET_ID" => panic!("the verifier read the signing secret's name"),
            _ => None,
        })
        .unwrap();
        assert_eq!(cfg.issuer, "https://auth.example");
        assert_eq!(cfg.public_keys_secret, "prod/public");
        assert_eq!(cfg.audience, "constellation-api");
        let err = VerifierConfig::from_vars(|name| {
            (name == "AUTH_PUBLIC_KEYS_SECRET_ID").then(|| "bad name!".to_owned())
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("AUTH_PUBLIC_KEYS_SECRET_ID"),
            "{err}"
        );
    }

    /// A secret store that counts reads, fails the first `fail_first` of
    /// them, and takes a moment per read so that concurrent readers overlap.
    #[derive(Debug)]
    struct Counted {
        inner: Arc<dyn Secrets>,
        reads: std::sync::atomic::AtomicUsize,
        fail_first: usize,
    }

    impl Counted {
        fn over(platform: &Platform, fail_first: usize) -> Arc<Self> {
            Arc::new(Self {
                inner: platform.uncached_secrets(),
                reads: std::sync::atomic::AtomicUsize::new(0),
                fail_first,
            })
        }

        fn reads(&self) -> usize {
            self.reads.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[async_trait::async_trait]
    impl Secrets for Counted {
        async fn get(&self, name: &str) -> Result<Option<SecretValue>, crate::SecretsError> {
            let n = self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            if n < self.fail_first {
                return Err(crate::SecretsError::Unavailable(anyhow::anyhow!(
                    "secrets store down"
                )));
            }
            self.inner.get(name).await
        }

        async fn put(&self, name: &str, value: &SecretValue) -> Result<(), crate::SecretsError> {
            self.inner.put(name, value).await
        }
    }

    #[tokio::test]
    async fn a_verifier_reads_its_keys_once_when_the_first_tokens_arrive_together() {
        let fx = fx();
        let key = fx_key(1);
        fx.publish(&[&key], Duration::ZERO).await;
        let source = Counted::over(&fx.platform, 0);
        let verifier = TokenVerifier::over(&fx.cfg, source.clone(), fx.clock.clone(), true);
        assert_eq!(source.reads(), 0, "building the verifier read the secret");

        // A request without a token needs no keys.
        assert!(matches!(
            verifier.verify("").await,
            Err(TokenError::Rejected(Rejection::Missing))
        ));
        assert_eq!(source.reads(), 0);

        // Twenty first requests at once (distinct tokens, so none is served
        // from the verified-token cache): one read between them.
        let tokens: Vec<(String, Claims)> = (0..20)
            .map(|i| {
                let claims = access_claims(
                    fx.cfg.expected(),
                    &fx_principal(),
                    fx.clock.now(),
                    format!("fx-{i}"),
                );
                (key.sign(&claims), claims)
            })
            .collect();
        let results =
            futures::future::join_all(tokens.iter().map(|(t, _)| verifier.verify(t))).await;
        for (result, (_, claims)) in results.into_iter().zip(&tokens) {
            assert_eq!(&result.unwrap(), claims);
        }
        assert_eq!(source.reads(), 1);
    }

    #[tokio::test]
    async fn a_failed_first_read_answers_unavailable_and_the_next_request_reads_again() {
        let fx = fx();
        let key = fx_key(1);
        fx.publish(&[&key], Duration::ZERO).await;
        let source = Counted::over(&fx.platform, 1);
        let verifier = TokenVerifier::over(&fx.cfg, source.clone(), fx.clock.clone(), true);
        let (token, claims) = fx.token(&key);
        assert!(matches!(
            verifier.verify(&token).await,
            Err(TokenError::Unavailable(_))
        ));
        assert!(verifier.jwks().await.is_ok());
        assert_eq!(verifier.verify(&token).await.unwrap(), claims);
        assert_eq!(source.reads(), 2);
    }

    #[tokio::test]
    async fn a_missing_key_set_is_unavailable_where_it_must_exist_and_empty_locally() {
        let fx = fx();
        let key = fx_key(1);
        let (token, _) = fx.token(&key);
        let strict = TokenVerifier::over(
            &fx.cfg,
            fx.platform.uncached_secrets(),
            fx.clock.clone(),
            true,
        );
        match strict.verify(&token).await {
            Err(TokenError::Unavailable(e)) => {
                assert!(
                    format!("{e:#}").contains(&fx.cfg.public_keys_secret),
                    "{e:#}"
                )
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        // Locally (the platform of `fx` is local) a missing set is empty.
        let lenient = TokenVerifier::on_first_use(&fx.platform, &fx.cfg);
        assert!(matches!(
            lenient.verify(&token).await,
            Err(TokenError::Rejected(Rejection::UnknownKey))
        ));
        assert!(lenient.jwks().await.unwrap().keys.is_empty());
    }
}
