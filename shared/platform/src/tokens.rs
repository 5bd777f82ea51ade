//! Access tokens: Ed25519-signed JWTs (compact JWS, `alg: EdDSA`,
//! `typ: at+jwt`), their signing keys, rotation and verification.
//!
//! The JWS is hand-rolled on purpose: it is small, and it lets verification
//! accept exactly one shape — header `{"alg":"EdDSA","typ":"at+jwt","kid":..}`
//! and nothing else — instead of negotiating algorithms or following key URLs
//! named in a header (`jku`, `jwk`, `x5u`, `x5c` are rejected, never fetched).
//!
//! Keys live in two secrets. The *signing* secret holds the current private
//! key and only the auth function may read it ([`TokenIssuer`]). The *public*
//! secret holds the public key set every service reads ([`TokenVerifier`]);
//! a retired key stays in it, with a `not_after`, until every token it can
//! have signed has expired. Rotation writes the public set first and the
//! private key second, so a token never names a key verifiers cannot find;
//! verifiers re-read the public set (uncached, at most every
//! [`KEY_REFRESH_INTERVAL`]) when a token names a key they do not know.
//!
//! Secret formats (JSON; neither is ever logged):
//! - signing: `{"kid": "<kid>", "d": "<base64url 32-byte seed>", "created_at": <unix>}`
//! - public: `{"keys": [{"kid", "x": "<base64url 32-byte key>", "created_at", "not_after"?}]}`
//!
//! A secret holding `{}` counts as "no keys yet" (a placeholder a template
//! may create), which [`ensure_keys`] and [`rotate_keys`] fill in.
//! A `kid` is the key's RFC 7638 JWK thumbprint.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use constellation_core::auth::{Claims, Principal};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use time::{Duration, OffsetDateTime};

use crate::clock::Clock;
use crate::config::{BackendKind, ConfigError, Platform};
use crate::secrets::{SecretValue, Secrets, validate_secret_name};

/// How long an access token is valid.
pub const ACCESS_TOKEN_TTL: Duration = Duration::minutes(15);
/// The JWS header `typ` of an access token (RFC 9068).
pub const TOKEN_TYPE: &str = "at+jwt";
/// The one accepted JWS algorithm.
pub const ALGORITHM: &str = "EdDSA";
/// The secret holding the current private signing key: only auth reads it.
pub const DEFAULT_SIGNING_KEYS_SECRET: &str = "constellation/auth/signing-keys";
/// The secret holding the public key set: every service reads it.
pub const DEFAULT_PUBLIC_KEYS_SECRET: &str = "constellation/auth/public-keys";
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const CLOCK_LEEWAY: Duration = Duration::seconds(30);
/// A verifier re-reads the public key set for an unknown `kid` at most this often.
pub const KEY_REFRESH_INTERVAL: Duration = Duration::seconds(30);
/// A verifier re-reads the public key set when its copy is older than this
/// (so retirements and prunes reach it without a cold start).
pub const KEY_SET_MAX_AGE: Duration = Duration::minutes(5);
/// An issuer checks its signing secret for a rotated key at most this often.
pub const ISSUER_RELOAD_INTERVAL: Duration = Duration::minutes(1);
/// How long past `retired + ACCESS_TOKEN_TTL` a retired public key stays
/// valid: covers issuers that have not yet picked up the new key (they read
/// it through the 5-minute secrets cache, checking every minute) and clock leeway.
pub const ROTATION_GRACE: Duration = Duration::minutes(10);

/// Environment variable naming the token issuer (`iss`).
pub const ISSUER_VAR: &str = "AUTH_ISSUER";
/// Environment variable naming the token audience (`aud`).
pub const AUDIENCE_VAR: &str = "AUTH_AUDIENCE";
/// Environment variable naming the signing-key secret.
pub const SIGNING_KEYS_SECRET_VAR: &str = "AUTH_SIGNING_KEYS_SECRET_ID";
/// Environment variable naming the public-key secret.
pub const PUBLIC_KEYS_SECRET_VAR: &str = "AUTH_PUBLIC_KEYS_SECRET_ID";

/// Who issues tokens, for whom, and where the keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenConfig {
    /// `iss` of every token.
    pub issuer: String,
    /// `aud` of every token.
    pub audience: String,
    /// The secret holding the private signing key.
    pub signing_keys_secret: String,
    /// The secret holding the public key set.
    pub public_keys_secret: String,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            issuer: "constellation".to_owned(),
            audience: "constellation-api".to_owned(),
            signing_keys_secret: DEFAULT_SIGNING_KEYS_SECRET.to_owned(),
            public_keys_secret: DEFAULT_PUBLIC_KEYS_SECRET.to_owned(),
        }
    }
}

impl TokenConfig {
    /// Reads `AUTH_ISSUER`, `AUTH_AUDIENCE`, `AUTH_SIGNING_KEYS_SECRET_ID` and
    /// `AUTH_PUBLIC_KEYS_SECRET_ID`, each defaulting as in [`TokenConfig::default`].
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(crate::config::optional)
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let d = Self::default();
        let cfg = Self {
            issuer: var(ISSUER_VAR).unwrap_or(d.issuer),
            audience: var(AUDIENCE_VAR).unwrap_or(d.audience),
            signing_keys_secret: var(SIGNING_KEYS_SECRET_VAR).unwrap_or(d.signing_keys_secret),
            public_keys_secret: var(PUBLIC_KEYS_SECRET_VAR).unwrap_or(d.public_keys_secret),
        };
        for (name, value) in [
            (SIGNING_KEYS_SECRET_VAR, &cfg.signing_keys_secret),
            (PUBLIC_KEYS_SECRET_VAR, &cfg.public_keys_secret),
        ] {
            validate_secret_name(value).map_err(|_| ConfigError::Invalid {
                name,
                reason: "is not a valid secret name".to_owned(),
            })?;
        }
        Ok(cfg)
    }
}

/// Why a token was not accepted. The texts are safe to show a client and
/// never contain the token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// No token was presented.
    #[error("no access token was presented")]
    Missing,
    /// Not a compact JWS of three base64url parts with the expected header and claims.
    #[error("the access token is malformed")]
    Malformed,
    /// The header's `alg` is not `EdDSA`.
    #[error("the access token's algorithm is not accepted")]
    Algorithm,
    /// The header's `typ` is not `at+jwt`.
    #[error("the token is not an access token")]
    Type,
    /// The `kid` is not in the public key set (or is missing, retired past its
    /// validity, or the header points at a key elsewhere: `jku`, `jwk`, `x5u`, `x5c`).
    #[error("the access token's signing key is not recognised")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the access token's signature is invalid")]
    Signature,
    /// `exp` has passed.
    #[error("the access token has expired")]
    Expired,
    /// `nbf` (or `iat`) is in the future.
    #[error("the access token is not valid yet")]
    NotYetValid,
    /// `iss` is not this installation.
    #[error("the access token was issued by another issuer")]
    Issuer,
    /// `aud` is not this API.
    #[error("the access token is meant for another audience")]
    Audience,
    /// The public key set could not be read; retry.
    #[error("token keys are temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
}

/// A freshly signed access token.
pub struct IssuedToken {
    /// The compact JWS. A credential: never log it.
    pub token: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// What it says.
    pub claims: Claims,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"**redacted**")
            .field("expires_in", &self.expires_in)
            .field("claims", &self.claims)
            .finish()
    }
}

// ---------------------------------------------------------------------------
// Secret formats

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SigningDoc {
    kid: String,
    /// base64url (no padding) of the 32-byte Ed25519 seed.
    d: String,
    created_at: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicDoc {
    #[serde(default)]
    keys: Vec<PublicEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicEntry {
    kid: String,
    /// base64url (no padding) of the 32-byte Ed25519 public key.
    x: String,
    created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not_after: Option<i64>,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn b64_32(field: &str, text: &str) -> anyhow::Result<[u8; 32]> {
    let raw = URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v).ok());
    raw.with_context(|| format!("`{field}` is not 32 bytes of base64url"))
}

/// The RFC 7638 thumbprint of an Ed25519 public key: its `kid`.
fn thumbprint(key: &VerifyingKey) -> String {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        b64(key.as_bytes())
    );
    b64(&Sha256::digest(canonical.as_bytes()))
}

fn generate_key() -> SigningKey {
    let mut seed = [0_u8; 32];
    rand::rng().fill_bytes(&mut seed);
    SigningKey::from_bytes(&seed)
}

fn is_placeholder(value: &serde_json::Value) -> bool {
    value.as_object().is_some_and(|o| o.is_empty())
}

impl SigningDoc {
    fn new(key: &SigningKey, now: OffsetDateTime) -> Self {
        Self {
            kid: thumbprint(&key.verifying_key()),
            d: b64(key.as_bytes()),
            created_at: now.unix_timestamp(),
        }
    }

    fn key(&self) -> anyhow::Result<SigningKey> {
        let key = SigningKey::from_bytes(&b64_32("d", &self.d)?);
        anyhow::ensure!(
            thumbprint(&key.verifying_key()) == self.kid,
            "the signing key does not match its kid"
        );
        Ok(key)
    }
}

impl PublicEntry {
    fn of(key: &VerifyingKey, now: OffsetDateTime) -> Self {
        Self {
            kid: thumbprint(key),
            x: b64(key.as_bytes()),
            created_at: now.unix_timestamp(),
            not_after: None,
        }
    }

    fn valid_at(&self, now: OffsetDateTime) -> bool {
        self.not_after.is_none_or(|t| now.unix_timestamp() < t)
    }
}

/// Reads the signing secret: `None` when absent or a `{}` placeholder.
async fn read_signing(secrets: &dyn Secrets, name: &str) -> anyhow::Result<Option<SigningDoc>> {
    let Some(value) = secrets
        .get(name)
        .await
        .with_context(|| format!("read secret {name}"))?
    else {
        return Ok(None);
    };
    // Errors name the secret, never its content.
    let json: serde_json::Value = serde_json::from_str(value.expose())
        .map_err(|_| anyhow::anyhow!("secret {name} is not JSON"))?;
    if is_placeholder(&json) {
        return Ok(None);
    }
    let doc = serde_json::from_value(json)
        .map_err(|_| anyhow::anyhow!("secret {name} is not a signing key document"))?;
    Ok(Some(doc))
}

/// Reads the public key set: `None` when the secret does not exist.
async fn read_public(secrets: &dyn Secrets, name: &str) -> anyhow::Result<Option<PublicDoc>> {
    let Some(value) = secrets
        .get(name)
        .await
        .with_context(|| format!("read secret {name}"))?
    else {
        return Ok(None);
    };
    let doc = serde_json::from_str(value.expose())
        .with_context(|| format!("secret {name} is not a public key set"))?;
    Ok(Some(doc))
}

async fn write_json<T: Serialize>(
    secrets: &dyn Secrets,
    name: &str,
    doc: &T,
) -> anyhow::Result<()> {
    let text = serde_json::to_string(doc).context("serialise key document")?;
    secrets
        .put(name, &SecretValue::new(text))
        .await
        .with_context(|| format!("write secret {name}"))
}

/// Makes `current` the one unretired key of `set`: every other key without a
/// `not_after` is retired now (valid until `now + TTL + grace`), keys past
/// their `not_after` are pruned.
fn publish(set: &mut PublicDoc, current: PublicEntry, now: OffsetDateTime) {
    let until = (now + ACCESS_TOKEN_TTL + ROTATION_GRACE).unix_timestamp();
    for key in &mut set.keys {
        if key.kid != current.kid && key.not_after.is_none() {
            key.not_after = Some(until);
        }
    }
    set.keys.retain(|k| k.kid != current.kid && k.valid_at(now));
    set.keys.push(current);
}

/// Creates a first key pair if there is none (used locally on first start and
/// by `serve --provision`), and repairs a public set missing the current key.
pub async fn ensure_keys(
    secrets: &dyn Secrets,
    cfg: &TokenConfig,
    clock: &dyn Clock,
) -> anyhow::Result<()> {
    let now = clock.now();
    let signing = read_signing(secrets, &cfg.signing_keys_secret).await?;
    let mut public = read_public(secrets, &cfg.public_keys_secret)
        .await?
        .unwrap_or_default();
    match signing {
        Some(doc) => {
            let key = doc.key()?;
            if !public.keys.iter().any(|k| k.kid == doc.kid) {
                publish(&mut public, PublicEntry::of(&key.verifying_key(), now), now);
                write_json(secrets, &cfg.public_keys_secret, &public).await?;
                tracing::warn!(kid = %doc.kid, "public key set lacked the current key; added it");
            }
        }
        None => {
            let key = generate_key();
            let doc = SigningDoc::new(&key, now);
            publish(&mut public, PublicEntry::of(&key.verifying_key(), now), now);
            // Public first: a token must never name a key verifiers cannot find.
            write_json(secrets, &cfg.public_keys_secret, &public).await?;
            write_json(secrets, &cfg.signing_keys_secret, &doc).await?;
            tracing::info!(kid = %doc.kid, "created the first token signing key");
        }
    }
    Ok(())
}

/// Adds a new current signing key and returns its `kid`. Previous keys' public
/// halves stay valid until every token they can have signed has expired
/// (retired time + [`ACCESS_TOKEN_TTL`] + [`ROTATION_GRACE`]); keys past that
/// are pruned; the private half of the previous key is dropped. Creates the
/// first key when there is none. Do not run two rotations at once.
pub async fn rotate_keys(
    secrets: &dyn Secrets,
    cfg: &TokenConfig,
    clock: &dyn Clock,
) -> anyhow::Result<String> {
    let now = clock.now();
    let previous = read_signing(secrets, &cfg.signing_keys_secret).await?;
    let mut public = read_public(secrets, &cfg.public_keys_secret)
        .await?
        .unwrap_or_default();
    if let Some(prev) = &previous {
        let prev_key = prev.key()?;
        if !public.keys.iter().any(|k| k.kid == prev.kid) {
            public
                .keys
                .push(PublicEntry::of(&prev_key.verifying_key(), now));
        }
    }
    let key = generate_key();
    let doc = SigningDoc::new(&key, now);
    publish(&mut public, PublicEntry::of(&key.verifying_key(), now), now);
    write_json(secrets, &cfg.public_keys_secret, &public).await?;
    write_json(secrets, &cfg.signing_keys_secret, &doc).await?;
    tracing::info!(
        kid = %doc.kid,
        previous = previous.as_ref().map(|p| p.kid.as_str()),
        "rotated the token signing key"
    );
    Ok(doc.kid)
}

// ---------------------------------------------------------------------------
// Issuing

struct CurrentKey {
    kid: String,
    key: SigningKey,
}

struct IssuerInner {
    issuer: String,
    audience: String,
    current: RwLock<CurrentKey>,
    secrets: Arc<dyn Secrets>,
    secret_name: String,
    last_check: Mutex<OffsetDateTime>,
    reloading: AtomicBool,
}

/// Signs access tokens with the current private key. Only the auth function
/// builds one. It picks up a rotated key by itself: when its last look at the
/// signing secret is older than [`ISSUER_RELOAD_INTERVAL`], `issue` starts a
/// background re-read (the token being issued still uses the key in hand,
/// whose public half stays valid through [`ROTATION_GRACE`]).
#[derive(Clone)]
pub struct TokenIssuer {
    inner: Arc<IssuerInner>,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .field("kid", &self.kid())
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

impl TokenIssuer {
    /// Signs a token for `principal`, valid from `now` for [`ACCESS_TOKEN_TTL`].
    pub fn issue(&self, principal: &Principal, now: OffsetDateTime) -> IssuedToken {
        let mut jti = [0_u8; 16];
        rand::rng().fill_bytes(&mut jti);
        let iat = now.unix_timestamp();
        let claims = Claims {
            iss: self.inner.issuer.clone(),
            aud: self.inner.audience.clone(),
            sub: principal.account.clone(),
            org: principal.org.clone(),
            role: principal.role,
            exp: iat + ACCESS_TOKEN_TTL.whole_seconds(),
            iat,
            nbf: iat,
            jti: hex::encode(jti),
        };
        let token = {
            let current = self.inner.current.read().unwrap_or_else(|p| p.into_inner());
            let header = Header {
                alg: ALGORITHM,
                typ: TOKEN_TYPE,
                kid: &current.kid,
            };
            // Serialising these plain structs cannot fail; were it to, the
            // token would be empty JSON and fail verification (closed).
            let input = format!(
                "{}.{}",
                b64(&serde_json::to_vec(&header).unwrap_or_default()),
                b64(&serde_json::to_vec(&claims).unwrap_or_default())
            );
            let signature = current.key.sign(input.as_bytes());
            format!("{input}.{}", b64(&signature.to_bytes()))
        };
        self.reload_in_background(now);
        IssuedToken {
            token,
            expires_in: ACCESS_TOKEN_TTL.whole_seconds(),
            claims,
        }
    }

    /// The `kid` of the key tokens are signed with now.
    pub fn kid(&self) -> String {
        self.inner
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .kid
            .clone()
    }

    /// Re-reads the signing secret now and switches to the key it holds;
    /// `issue` does this by itself in the background every minute, so calling
    /// it is optional (e.g. right before issuing, to never sign with a key
    /// rotated away more than a minute ago).
    pub async fn reload(&self) -> anyhow::Result<()> {
        self.inner.reload().await
    }

    fn reload_in_background(&self, now: OffsetDateTime) {
        {
            let mut last = self
                .inner
                .last_check
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if now - *last < ISSUER_RELOAD_INTERVAL {
                return;
            }
            *last = now;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.inner.reloading.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = self.inner.clone();
        runtime.spawn(async move {
            if let Err(e) = inner.reload().await {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "re-reading the signing key failed"
                );
            }
            inner.reloading.store(false, Ordering::Release);
        });
    }
}

impl IssuerInner {
    async fn reload(&self) -> anyhow::Result<()> {
        let doc = read_signing(self.secrets.as_ref(), &self.secret_name)
            .await?
            .with_context(|| format!("secret {} holds no signing key", self.secret_name))?;
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if current.kid != doc.kid {
            *current = CurrentKey {
                key: doc.key()?,
                kid: doc.kid,
            };
            tracing::info!(kid = %current.kid, "now signing with a rotated key");
        }
        Ok(())
    }
}

/// Builds the issuer from the signing secret. Locally, keys are generated on
/// first start; in AWS both secrets must already hold keys (created by
/// `constellation keys rotate` or `serve --provision`).
pub async fn load_issuer(platform: &Platform, cfg: &TokenConfig) -> anyhow::Result<TokenIssuer> {
    let secrets = platform.secrets();
    let clock = platform.clock();
    if platform.kind() == BackendKind::Local {
        ensure_keys(secrets.as_ref(), cfg, clock.as_ref()).await?;
    }
    let doc = read_signing(secrets.as_ref(), &cfg.signing_keys_secret)
        .await?
        .with_context(|| {
            format!(
                "secret {} holds no signing key; create one with `constellation keys rotate`",
                cfg.signing_keys_secret
            )
        })?;
    let key = doc.key()?;
    let public = read_public(secrets.as_ref(), &cfg.public_keys_secret)
        .await?
        .unwrap_or_default();
    anyhow::ensure!(
        public.keys.iter().any(|k| k.kid == doc.kid),
        "the public key set {} lacks the current signing key {}; tokens would not verify",
        cfg.public_keys_secret,
        doc.kid
    );
    Ok(TokenIssuer {
        inner: Arc::new(IssuerInner {
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            current: RwLock::new(CurrentKey { kid: doc.kid, key }),
            secrets,
            secret_name: cfg.signing_keys_secret.clone(),
            last_check: Mutex::new(clock.now()),
            reloading: AtomicBool::new(false),
        }),
    })
}

// ---------------------------------------------------------------------------
// Verifying

#[derive(Clone)]
struct KnownKey {
    entry: PublicEntry,
    key: VerifyingKey,
}

#[derive(Default)]
struct KeyRing {
    keys: Vec<KnownKey>,
    loaded_at: Option<OffsetDateTime>,
}

impl KeyRing {
    fn from_doc(doc: PublicDoc, now: OffsetDateTime) -> Self {
        let mut keys = Vec::with_capacity(doc.keys.len());
        for entry in doc.keys {
            let key = b64_32("x", &entry.x)
                .ok()
                .and_then(|x| VerifyingKey::from_bytes(&x).ok());
            match key {
                Some(key) => keys.push(KnownKey { entry, key }),
                None => tracing::warn!(kid = %entry.kid, "skipping an unusable public key"),
            }
        }
        Self {
            keys,
            loaded_at: Some(now),
        }
    }

    fn find(&self, kid: &str, now: OffsetDateTime) -> Option<VerifyingKey> {
        self.keys
            .iter()
            .find(|k| k.entry.kid == kid && k.entry.valid_at(now))
            .map(|k| k.key)
    }
}

/// Verifies access tokens against the public key set. Holds public keys only.
pub struct TokenVerifier {
    issuer: String,
    audience: String,
    ring: RwLock<KeyRing>,
    /// Read uncached, so a rotated key is visible at once.
    source: Arc<dyn Secrets>,
    secret_name: String,
    clock: Arc<dyn Clock>,
    /// When the public set was last (re-)read on demand.
    last_refresh: tokio::sync::Mutex<Option<OffsetDateTime>>,
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
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("kids", &kids)
            .finish_non_exhaustive()
    }
}

/// The only header a token may carry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct StrictHeader {
    alg: String,
    typ: String,
    kid: String,
}

/// Header parameters that point at keys outside our key set.
const KEY_REFERENCE_PARAMS: &[&str] = &["jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256"];

fn decode_segment(segment: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Malformed)
}

/// Checks the header and returns its `kid`.
fn check_header(raw: &[u8]) -> Result<String, TokenError> {
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(raw).map_err(|_| TokenError::Malformed)?;
    match header.get("alg") {
        Some(serde_json::Value::String(alg)) if alg == ALGORITHM => {}
        _ => return Err(TokenError::Algorithm),
    }
    match header.get("typ") {
        Some(serde_json::Value::String(typ))
            if typ.eq_ignore_ascii_case(TOKEN_TYPE)
                || typ.eq_ignore_ascii_case("application/at+jwt") => {}
        _ => return Err(TokenError::Type),
    }
    if KEY_REFERENCE_PARAMS.iter().any(|p| header.contains_key(*p)) {
        return Err(TokenError::UnknownKey);
    }
    let Some(serde_json::Value::String(kid)) = header.get("kid") else {
        return Err(TokenError::UnknownKey);
    };
    let kid = kid.clone();
    // Anything else (`crit`, `b64`, duplicate names, ...) is not ours.
    serde_json::from_slice::<StrictHeader>(raw).map_err(|_| TokenError::Malformed)?;
    Ok(kid)
}

impl TokenVerifier {
    /// Verifies a compact JWS access token and returns its claims. Checks, in
    /// order: three base64url parts; header exactly `alg: EdDSA`, `typ: at+jwt`,
    /// a known `kid` and nothing else; the signature (`verify_strict`); then
    /// `iss`, `aud`, `exp`, `nbf` and `iat` against the clock with
    /// [`CLOCK_LEEWAY`] (30 s) of tolerance.
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header = decode_segment(h)?;
        let payload = decode_segment(p)?;
        let signature = decode_segment(s)?;

        let kid = check_header(&header)?;
        self.refresh_if_stale(self.clock.now()).await;
        let key = self.key_for(&kid).await?;
        let signature =
            <[u8; 64]>::try_from(signature.as_slice()).map_err(|_| TokenError::Signature)?;
        let signing_input = &token[..h.len() + 1 + p.len()];
        key.verify_strict(signing_input.as_bytes(), &Signature::from_bytes(&signature))
            .map_err(|_| TokenError::Signature)?;

        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if claims.iss != self.issuer {
            return Err(TokenError::Issuer);
        }
        if claims.aud != self.audience {
            return Err(TokenError::Audience);
        }
        let now = self.clock.now().unix_timestamp();
        let leeway = CLOCK_LEEWAY.whole_seconds();
        if now >= claims.exp.saturating_add(leeway) {
            return Err(TokenError::Expired);
        }
        if claims.nbf > now.saturating_add(leeway) || claims.iat > now.saturating_add(leeway) {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }

    /// The public key set as an RFC 7517 JWKS: every key still valid now.
    pub async fn jwks(&self) -> Result<serde_json::Value, TokenError> {
        let now = self.clock.now();
        self.refresh_if_stale(now).await;
        let ring = self.ring.read().unwrap_or_else(|p| p.into_inner());
        let keys: Vec<serde_json::Value> = ring
            .keys
            .iter()
            .filter(|k| k.entry.valid_at(now))
            .map(|k| {
                serde_json::json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": k.entry.x,
                    "kid": k.entry.kid,
                    "use": "sig",
                    "alg": ALGORITHM,
                })
            })
            .collect();
        Ok(serde_json::json!({ "keys": keys }))
    }

    async fn key_for(&self, kid: &str) -> Result<VerifyingKey, TokenError> {
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
            return Err(TokenError::UnknownKey);
        }
        self.refresh(&mut last, now).await?;
        self.find(kid, now).ok_or(TokenError::UnknownKey)
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

    fn find(&self, kid: &str, now: OffsetDateTime) -> Option<VerifyingKey> {
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
        let doc = read_public(self.source.as_ref(), &self.secret_name)
            .await
            .map_err(TokenError::Unavailable)?
            .unwrap_or_default();
        *self.ring.write().unwrap_or_else(|p| p.into_inner()) = KeyRing::from_doc(doc, now);
        Ok(())
    }
}

/// Builds a verifier from the public key set (never the private secret).
/// Locally, keys are generated if missing (first start); in AWS the public
/// secret must exist. It is re-read, uncached, when a token names an unknown
/// `kid` (at most every [`KEY_REFRESH_INTERVAL`]), so a new key is accepted
/// at once, and when its copy is older than [`KEY_SET_MAX_AGE`] (one request
/// then pays one read), so retired keys lapse without a cold start.
pub async fn load_verifier(
    platform: &Platform,
    cfg: &TokenConfig,
) -> anyhow::Result<Arc<TokenVerifier>> {
    let clock = platform.clock();
    let source = platform.uncached_secrets();
    let now = clock.now();
    let mut doc = read_public(source.as_ref(), &cfg.public_keys_secret).await?;
    if platform.kind() == BackendKind::Local && doc.as_ref().is_none_or(|d| d.keys.is_empty()) {
        ensure_keys(platform.secrets().as_ref(), cfg, clock.as_ref()).await?;
        doc = read_public(source.as_ref(), &cfg.public_keys_secret).await?;
    }
    let doc = doc.with_context(|| format!("secret {} does not exist", cfg.public_keys_secret))?;
    if doc.keys.is_empty() {
        tracing::warn!(
            secret = %cfg.public_keys_secret,
            "the public key set is empty: no token verifies until a key is created"
        );
    }
    Ok(Arc::new(TokenVerifier {
        issuer: cfg.issuer.clone(),
        audience: cfg.audience.clone(),
        ring: RwLock::new(KeyRing::from_doc(doc, now)),
        source,
        secret_name: cfg.public_keys_secret.clone(),
        clock,
        last_refresh: tokio::sync::Mutex::new(None),
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use constellation_core::OrgId;
    use constellation_core::auth::{AccountId, Role};
    use hmac::{Hmac, Mac as _};
    use serde_json::{Value, json};

    struct Fx {
        _dir: tempfile::TempDir,
        clock: Arc<ManualClock>,
        platform: Platform,
        cfg: TokenConfig,
        issuer: TokenIssuer,
        verifier: Arc<TokenVerifier>,
    }

    async fn fx() -> Fx {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::starting_now());
        let platform =
            Platform::local(dir.path().to_path_buf(), String::new(), clock.clone()).unwrap();
        let cfg = TokenConfig::default();
        let issuer = load_issuer(&platform, &cfg).await.unwrap();
        let verifier = load_verifier(&platform, &cfg).await.unwrap();
        Fx {
            _dir: dir,
            clock,
            platform,
            cfg,
            issuer,
            verifier,
        }
    }

    fn fx_principal() -> Principal {
        Principal {
            account: AccountId::from_bytes([7; 16]),
            org: OrgId::parse("acme").unwrap(),
            role: Role::Staff,
        }
    }

    impl Fx {
        fn now(&self) -> OffsetDateTime {
            self.clock.now()
        }

        fn issue(&self) -> IssuedToken {
            self.issuer.issue(&fx_principal(), self.now())
        }

        /// The current private key, as the auth function holds it.
        async fn signing_key(&self) -> SigningKey {
            read_signing(
                self.platform.secrets().as_ref(),
                &self.cfg.signing_keys_secret,
            )
            .await
            .unwrap()
            .unwrap()
            .key()
            .unwrap()
        }

        fn header(&self) -> Value {
            json!({"alg": "EdDSA", "typ": "at+jwt", "kid": self.issuer.kid()})
        }

        fn claims(&self) -> Value {
            let now = self.now().unix_timestamp();
            json!({
                "iss": "constellation", "aud": "constellation-api",
                "sub": "07070707070707070707070707070707", "org": "acme", "role": "staff",
                "exp": now + 900, "iat": now, "nbf": now, "jti": "fx",
            })
        }

        /// A token signed with the real key over `header` and `claims`.
        async fn forge(&self, header: Value, claims: Value) -> String {
            sign_with(&self.signing_key().await, &header, &claims)
        }

        async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
            self.verifier.verify(token).await
        }
    }

    fn sign_with(key: &SigningKey, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        format!("{input}.{}", b64(&key.sign(input.as_bytes()).to_bytes()))
    }

    fn with(mut value: Value, key: &str, new: Value) -> Value {
        value[key] = new;
        value
    }

    fn without(mut value: Value, key: &str) -> Value {
        value.as_object_mut().unwrap().remove(key);
        value
    }

    #[tokio::test]
    async fn issue_then_verify_round_trips() {
        let fx = fx().await;
        let issued = fx.issue();
        assert_eq!(issued.expires_in, 900);
        assert_eq!(issued.claims.exp - issued.claims.iat, 900);
        assert_eq!(issued.token.split('.').count(), 3);
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(issued.token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header, fx.header());
        let claims = fx.verify(&issued.token).await.unwrap();
        assert_eq!(claims, issued.claims);
        assert_eq!(Principal::from(&claims), fx_principal());
        // Two tokens never share a jti.
        assert_ne!(fx.issue().claims.jti, issued.claims.jti);
    }

    #[tokio::test]
    async fn a_forged_token_with_valid_parts_verifies() {
        // The control for every rejection below: the forging helper is sound.
        let fx = fx().await;
        let token = fx.forge(fx.header(), fx.claims()).await;
        assert_eq!(fx.verify(&token).await.unwrap().jti, "fx");
    }

    #[tokio::test]
    async fn rejects_a_missing_token() {
        let fx = fx().await;
        assert!(matches!(fx.verify("").await, Err(TokenError::Missing)));
    }

    #[tokio::test]
    async fn rejects_alg_none_in_any_casing() {
        let fx = fx().await;
        for alg in ["none", "None", "NONE", "nOnE"] {
            let header = with(fx.header(), "alg", json!(alg));
            let unsigned = format!(
                "{}.{}.",
                b64(header.to_string().as_bytes()),
                b64(fx.claims().to_string().as_bytes())
            );
            assert!(
                matches!(fx.verify(&unsigned).await, Err(TokenError::Algorithm)),
                "{alg} unsigned"
            );
            let signed = fx.forge(header, fx.claims()).await;
            assert!(
                matches!(fx.verify(&signed).await, Err(TokenError::Algorithm)),
                "{alg} signed"
            );
        }
    }

    #[tokio::test]
    async fn rejects_any_algorithm_but_eddsa() {
        let fx = fx().await;
        for alg in [
            json!("HS256"),
            json!("RS256"),
            json!("ES256"),
            json!("Ed25519"),
            json!("eddsa"),
            json!("EDDSA"),
            json!("EdDSA "),
            json!(["EdDSA"]),
            json!(null),
        ] {
            let token = fx
                .forge(with(fx.header(), "alg", alg.clone()), fx.claims())
                .await;
            assert!(
                matches!(fx.verify(&token).await, Err(TokenError::Algorithm)),
                "{alg}"
            );
        }
        let token = fx.forge(without(fx.header(), "alg"), fx.claims()).await;
        assert!(matches!(
            fx.verify(&token).await,
            Err(TokenError::Algorithm)
        ));
    }

    #[tokio::test]
    async fn rejects_hs256_signed_with_the_public_key() {
        let fx = fx().await;
        let public = fx.signing_key().await.verifying_key();
        let header = with(fx.header(), "alg", json!("HS256"));
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(fx.claims().to_string().as_bytes())
        );
        // As raw key bytes, and as the JWKS `x` text some libraries use.
        for secret in [
            public.as_bytes().to_vec(),
            b64(public.as_bytes()).into_bytes(),
        ] {
            let mut mac = Hmac::<Sha256>::new_from_slice(&secret).unwrap();
            mac.update(input.as_bytes());
            let token = format!("{input}.{}", b64(&mac.finalize().into_bytes()));
            assert!(matches!(
                fx.verify(&token).await,
                Err(TokenError::Algorithm)
            ));
        }
    }

    #[tokio::test]
    async fn rejects_a_bad_signature() {
        let fx = fx().await;
        let token = fx.issue().token;
        let (input, sig) = token.rsplit_once('.').unwrap();
        let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        sig[5] ^= 0x01;
        let flipped = format!("{input}.{}", b64(&sig));
        assert!(matches!(
            fx.verify(&flipped).await,
            Err(TokenError::Signature)
        ));

        // Claims changed after signing (a member promoting themselves).
        let (h, rest) = token.split_once('.').unwrap();
        let (_, s) = rest.split_once('.').unwrap();
        let owner = with(fx.claims(), "role", json!("owner"));
        let tampered = format!("{h}.{}.{s}", b64(owner.to_string().as_bytes()));
        assert!(matches!(
            fx.verify(&tampered).await,
            Err(TokenError::Signature)
        ));

        // Signed by another key under our kid.
        let other = sign_with(&generate_key(), &fx.header(), &fx.claims());
        assert!(matches!(
            fx.verify(&other).await,
            Err(TokenError::Signature)
        ));

        // A signature of the wrong length, and an empty one.
        let short = format!("{input}.{}", b64(&sig[..63]));
        assert!(matches!(
            fx.verify(&short).await,
            Err(TokenError::Signature)
        ));
        assert!(matches!(
            fx.verify(&format!("{input}.")).await,
            Err(TokenError::Signature)
        ));
    }

    #[tokio::test]
    async fn rejects_a_wrong_issuer() {
        let fx = fx().await;
        let token = fx
            .forge(fx.header(), with(fx.claims(), "iss", json!("evil")))
            .await;
        assert!(matches!(fx.verify(&token).await, Err(TokenError::Issuer)));
    }

    #[tokio::test]
    async fn rejects_a_wrong_audience() {
        let fx = fx().await;
        let token = fx
            .forge(fx.header(), with(fx.claims(), "aud", json!("another-api")))
            .await;
        assert!(matches!(fx.verify(&token).await, Err(TokenError::Audience)));
    }

    #[tokio::test]
    async fn rejects_a_wrong_type() {
        let fx = fx().await;
        for typ in [json!("JWT"), json!("refresh+jwt"), json!(""), json!(1)] {
            let token = fx
                .forge(with(fx.header(), "typ", typ.clone()), fx.claims())
                .await;
            assert!(
                matches!(fx.verify(&token).await, Err(TokenError::Type)),
                "{typ}"
            );
        }
        let token = fx.forge(without(fx.header(), "typ"), fx.claims()).await;
        assert!(matches!(fx.verify(&token).await, Err(TokenError::Type)));
        // RFC 9068 also allows the media-type spelling.
        let token = fx
            .forge(
                with(fx.header(), "typ", json!("application/at+jwt")),
                fx.claims(),
            )
            .await;
        assert!(fx.verify(&token).await.is_ok());
    }

    #[tokio::test]
    async fn rejects_an_expired_token() {
        let fx = fx().await;
        let token = fx.issue().token;
        fx.clock.advance(ACCESS_TOKEN_TTL - Duration::seconds(1));
        assert!(fx.verify(&token).await.is_ok(), "valid to the last second");
        fx.clock.advance(Duration::seconds(1) + CLOCK_LEEWAY);
        assert!(matches!(fx.verify(&token).await, Err(TokenError::Expired)));
    }

    #[tokio::test]
    async fn rejects_a_token_not_yet_valid() {
        let fx = fx().await;
        let later = fx.now().unix_timestamp() + 120;
        let token = fx
            .forge(fx.header(), with(fx.claims(), "nbf", json!(later)))
            .await;
        assert!(matches!(
            fx.verify(&token).await,
            Err(TokenError::NotYetValid)
        ));
        let token = fx
            .forge(fx.header(), with(fx.claims(), "iat", json!(later)))
            .await;
        assert!(matches!(
            fx.verify(&token).await,
            Err(TokenError::NotYetValid)
        ));
        // Within the leeway is accepted.
        let soon = fx.now().unix_timestamp() + 10;
        let token = fx
            .forge(fx.header(), with(fx.claims(), "nbf", json!(soon)))
            .await;
        assert!(fx.verify(&token).await.is_ok());
    }

    #[tokio::test]
    async fn rejects_an_unknown_kid() {
        let fx = fx().await;
        let stranger = generate_key();
        let kid = thumbprint(&stranger.verifying_key());
        let token = sign_with(
            &stranger,
            &with(fx.header(), "kid", json!(kid)),
            &fx.claims(),
        );
        assert!(matches!(
            fx.verify(&token).await,
            Err(TokenError::UnknownKey)
        ));
        // Our own key under a made-up kid, and no kid at all.
        let token = fx
            .forge(with(fx.header(), "kid", json!("made-up")), fx.claims())
            .await;
        assert!(matches!(
            fx.verify(&token).await,
            Err(TokenError::UnknownKey)
        ));
        let token = fx.forge(without(fx.header(), "kid"), fx.claims()).await;
        assert!(matches!(
            fx.verify(&token).await,
            Err(TokenError::UnknownKey)
        ));
    }

    #[tokio::test]
    async fn rejects_key_references_in_the_header() {
        let fx = fx().await;
        // The attacker signs with their own key and points at it; nothing is
        // fetched or trusted, whatever the parameter.
        let attacker = generate_key();
        let jwk =
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64(attacker.verifying_key().as_bytes())});
        for (param, value) in [
            ("jku", json!("https://evil.example/jwks.json")),
            ("jwk", jwk),
            ("x5u", json!("https://evil.example/cert.pem")),
            ("x5c", json!(["MIIBszCCAVmgAwIBAgIU"])),
        ] {
            let header = with(fx.header(), param, value);
            let token = sign_with(&attacker, &header, &fx.claims());
            assert!(
                matches!(fx.verify(&token).await, Err(TokenError::UnknownKey)),
                "{param} with the attacker's key"
            );
            let token = fx.forge(header, fx.claims()).await;
            assert!(
                matches!(fx.verify(&token).await, Err(TokenError::UnknownKey)),
                "{param} even with our key"
            );
        }
    }

    #[tokio::test]
    async fn rejects_other_header_parameters_and_claims() {
        let fx = fx().await;
        let token = fx
            .forge(with(fx.header(), "crit", json!(["exp"])), fx.claims())
            .await;
        assert!(matches!(
            fx.verify(&token).await,
            Err(TokenError::Malformed)
        ));
        let token = fx
            .forge(fx.header(), with(fx.claims(), "admin", json!(true)))
            .await;
        assert!(matches!(
            fx.verify(&token).await,
            Err(TokenError::Malformed)
        ));
        let token = fx.forge(fx.header(), without(fx.claims(), "org")).await;
        assert!(matches!(
            fx.verify(&token).await,
            Err(TokenError::Malformed)
        ));
    }

    #[tokio::test]
    async fn rejects_extra_or_missing_segments() {
        let fx = fx().await;
        let token = fx.issue().token;
        let sig = token.rsplit('.').next().unwrap();
        for bad in [
            format!("{token}.{sig}"),
            format!("{token}."),
            format!("{token}.a.b"),
            token.rsplit_once('.').unwrap().0.to_owned(),
            "a.b".to_owned(),
            ".".to_owned(),
            "..".to_owned(),
        ] {
            assert!(
                matches!(fx.verify(&bad).await, Err(TokenError::Malformed)),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn rejects_non_base64url() {
        let fx = fx().await;
        let token = fx.issue().token;
        let parts: Vec<&str> = token.split('.').collect();
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let sig = parts[2];
        // 64 bytes end in a character carrying 2 unused bits, which must be zero.
        let last = ALPHABET
            .iter()
            .position(|&c| c == *sig.as_bytes().last().unwrap())
            .unwrap();
        assert_eq!(last & 0b11, 0);
        let non_canonical = format!("{}{}", &sig[..sig.len() - 1], ALPHABET[last | 1] as char);
        for bad in [
            // Padding, the standard alphabet, stray characters.
            format!("{}=.{}.{}", parts[0], parts[1], sig),
            format!("{}.{}==.{}", parts[0], parts[1], sig),
            format!("{}.{}.+{}", parts[0], parts[1], &sig[1..]),
            format!("{}.{}./{}", parts[0], parts[1], &sig[1..]),
            format!("{}.{}!.{}", parts[0], parts[1], sig),
            format!("{} .{}.{}", parts[0], parts[1], sig),
            // Non-zero trailing bits (decodes to the same bytes when lenient).
            format!("{}.{}.{}", parts[0], parts[1], non_canonical),
            // Decodes, but not to a JSON object.
            format!("{}.{}.{}", b64(b"[1,2]"), parts[1], sig),
        ] {
            assert_ne!(bad, token);
            assert!(
                matches!(fx.verify(&bad).await, Err(TokenError::Malformed)),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn rejects_a_refresh_token_presented_as_an_access_token() {
        let fx = fx().await;
        // An opaque refresh token: 256 random bits, base64url, no dots.
        let mut raw = [0_u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let refresh = b64(&raw);
        assert!(matches!(
            fx.verify(&refresh).await,
            Err(TokenError::Malformed)
        ));
        assert!(matches!(
            fx.verify(&hex::encode(raw)).await,
            Err(TokenError::Malformed)
        ));
    }

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
            Err(TokenError::Expired)
        ));
        assert!(fx.verify(&new.token).await.is_ok());

        // A fresh verifier (another service's cold start) also takes both.
        let other = load_verifier(&fx.platform, &fx.cfg).await.unwrap();
        assert!(other.verify(&new.token).await.is_ok());

        // Past retire + TTL + grace the JWKS lists the new key only.
        fx.clock.advance(ACCESS_TOKEN_TTL + ROTATION_GRACE);
        let jwks = other.jwks().await.unwrap();
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
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
        let public = read_public(secrets.as_ref(), &fx.cfg.public_keys_secret)
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
        let token = sign_with(&old_key, &fx.header(), &fx.claims());
        assert!(fx.verify(&token).await.is_ok());
        // ...but not once every token of that key must have expired.
        fx.clock.advance(ACCESS_TOKEN_TTL + ROTATION_GRACE);
        let token = sign_with(&old_key, &fx.header(), &fx.claims());
        assert!(matches!(
            fx.verify(&token).await,
            Err(TokenError::UnknownKey)
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
        let jwks = fx.verifier.jwks().await.unwrap();
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
            let x = b64_32("x", key["x"].as_str().unwrap()).unwrap();
            assert_eq!(
                key["kid"],
                json!(thumbprint(&VerifyingKey::from_bytes(&x).unwrap()))
            );
        }
        let kids: Vec<&Value> = keys.iter().map(|k| &k["kid"]).collect();
        assert_eq!(kids, [&json!(first), &json!(second)]);
    }

    #[tokio::test]
    async fn unknown_kids_reread_the_key_set_at_most_every_30_seconds() {
        let fx = fx().await;
        let secrets = fx.platform.secrets();
        // Another process rotates: the first unknown kid re-reads at once.
        rotate_keys(secrets.as_ref(), &fx.cfg, fx.clock.as_ref())
            .await
            .unwrap();
        fx.issuer.reload().await.unwrap();
        assert!(fx.verify(&fx.issue().token).await.is_ok());
        // A second rotation right after is not seen until 30 s have passed.
        rotate_keys(secrets.as_ref(), &fx.cfg, fx.clock.as_ref())
            .await
            .unwrap();
        fx.issuer.reload().await.unwrap();
        let token = fx.issue().token;
        assert!(matches!(
            fx.verify(&token).await,
            Err(TokenError::UnknownKey)
        ));
        fx.clock.advance(KEY_REFRESH_INTERVAL);
        assert!(fx.verify(&token).await.is_ok());
    }

    #[tokio::test]
    async fn the_issuer_picks_up_a_rotated_key_by_itself() {
        let fx = fx().await;
        let secrets = fx.platform.secrets();
        let new_kid = rotate_keys(secrets.as_ref(), &fx.cfg, fx.clock.as_ref())
            .await
            .unwrap();
        fx.clock.advance(ISSUER_RELOAD_INTERVAL);
        let _ = fx.issue(); // starts the background re-read
        for _ in 0..100 {
            if fx.issuer.kid() == new_kid {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the issuer kept the old key");
    }

    #[tokio::test]
    async fn ensure_keys_fills_a_placeholder_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::starting_now());
        let platform =
            Platform::local(dir.path().to_path_buf(), String::new(), clock.clone()).unwrap();
        let cfg = TokenConfig::default();
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
        let verifier = load_verifier(&platform, &cfg).await.unwrap();
        let token = issuer.issue(&fx_principal(), clock.now()).token;
        assert!(verifier.verify(&token).await.is_ok());
    }

    #[tokio::test]
    async fn debug_output_carries_no_key_material_or_token() {
        let fx = fx().await;
        let private = fx.signing_key().await;
        let issued = fx.issue();
        let public = b64(private.verifying_key().as_bytes());
        let shown = format!("{:?} {:?} {:?}", fx.issuer, fx.verifier, issued);
        assert!(shown.contains(&fx.issuer.kid()), "{shown}");
        for secret in [b64(private.as_bytes()), public, issued.token.clone()] {
            assert!(!shown.contains(&secret), "{shown}");
        }
    }

    #[test]
    fn config_reads_its_variables_with_defaults() {
        let cfg = TokenConfig::from_vars(|_| None).unwrap();
        assert_eq!(cfg, TokenConfig::default());
        assert_eq!(cfg.public_keys_secret, "constellation/auth/public-keys");
        let cfg = TokenConfig::from_vars(|name| match name {
            "AUTH_ISSUER" => Some("https://auth.example".into()),
            "AUTH_PUBLIC_KEYS_SECRET_ID" => Some("prod/public".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cfg.issuer, "https://auth.example");
        assert_eq!(cfg.public_keys_secret, "prod/public");
        assert_eq!(cfg.audience, "constellation-api");
        let err = TokenConfig::from_vars(|name| {
            (name == "AUTH_SIGNING_KEYS_SECRET_ID").then(|| "bad name!".to_owned())
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("AUTH_SIGNING_KEYS_SECRET_ID"),
            "{err}"
        );
    }
}
