//! Signing access tokens and rotating their keys: the auth function's alone.
//!
//! Only auth may read the private signing key, so everything that touches
//! it lives here and nowhere in `shared/`: the signing secret's name
//! ([`SIGNING_KEYS_SECRET_VAR`]) and format, creating and rotating key pairs
//! ([`ensure_keys`], [`rotate_keys`]), and the [`TokenIssuer`] that signs.
//! The token format is `constellation_core::token`; the public key set
//! every service verifies with is read and written through
//! `constellation_platform::tokens`.
//!
//! Keys live in two secrets. The *signing* secret holds the current private
//! key (`{"kid": "<kid>", "d": "<base64url 32-byte seed>", "created_at": <unix>}`,
//! never logged). The *public* secret holds the public key set; a retired key
//! stays in it, with a `not_after`, until every token it can have signed has
//! expired. Rotation writes the public set first and the private key second,
//! so a token never names a key verifiers cannot find. A secret holding `{}`
//! counts as "no keys yet" (a placeholder a template may create), which
//! [`ensure_keys`] and [`rotate_keys`] fill in.

mod issuer;
mod rotation;

use anyhow::Context as _;
use constellation_core::token::SigningKey;
use constellation_platform::config::{ConfigError, optional};
use constellation_platform::secrets::{Secrets, validate_secret_name};
use constellation_platform::tokens::VerifierConfig;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

pub use issuer::{IssuedToken, LazyIssuer, TokenIssuer, load_issuer};
pub use rotation::{ensure_keys, rotate_keys};

/// The secret holding the current private signing key: only auth reads it.
pub const DEFAULT_SIGNING_KEYS_SECRET: &str = "constellation/auth/signing-keys";
/// Environment variable naming the signing-key secret.
pub const SIGNING_KEYS_SECRET_VAR: &str = "AUTH_SIGNING_KEYS_SECRET_ID";
/// An issuer checks its signing secret for a rotated key at most this often.
pub const ISSUER_RELOAD_INTERVAL: Duration = Duration::minutes(1);
/// How long past `retired + ACCESS_TOKEN_TTL` a retired public key stays
/// valid: covers issuers that have not yet picked up the new key (they read
/// it through the 5-minute secrets cache, checking every minute) and clock leeway.
pub const ROTATION_GRACE: Duration = Duration::minutes(10);

/// Who issues tokens, for whom, and where both halves of the keys are: the
/// verifier's settings plus the private key's secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningConfig {
    /// `iss` of every token.
    pub issuer: String,
    /// `aud` of every token.
    pub audience: String,
    /// The secret holding the private signing key.
    pub signing_keys_secret: String,
    /// The secret holding the public key set.
    pub public_keys_secret: String,
}

impl Default for SigningConfig {
    fn default() -> Self {
        Self::new(
            VerifierConfig::default(),
            DEFAULT_SIGNING_KEYS_SECRET.to_owned(),
        )
    }
}

impl SigningConfig {
    /// The signing side of `verifier`, with the private key in `signing_keys_secret`.
    pub fn new(verifier: VerifierConfig, signing_keys_secret: String) -> Self {
        Self {
            issuer: verifier.issuer,
            audience: verifier.audience,
            signing_keys_secret,
            public_keys_secret: verifier.public_keys_secret,
        }
    }

    /// Reads the verifier's variables (see [`VerifierConfig::from_env`]) and
    /// `AUTH_SIGNING_KEYS_SECRET_ID`, each with its default.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(optional)
    }

    /// [`SigningConfig::from_env`] through `var` (a variable's value, `None` when unset).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let verifier = VerifierConfig::from_vars(&var)?;
        Self::for_verifier_from_vars(verifier, var)
    }

    /// Pairs `verifier` (as a host already read it) with the signing secret
    /// named by `AUTH_SIGNING_KEYS_SECRET_ID`.
    pub fn for_verifier(verifier: VerifierConfig) -> Result<Self, ConfigError> {
        Self::for_verifier_from_vars(verifier, optional)
    }

    fn for_verifier_from_vars(
        verifier: VerifierConfig,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let secret =
            var(SIGNING_KEYS_SECRET_VAR).unwrap_or_else(|| DEFAULT_SIGNING_KEYS_SECRET.to_owned());
        validate_secret_name(&secret).map_err(|_| ConfigError::Invalid {
            name: SIGNING_KEYS_SECRET_VAR,
            reason: "is not a valid secret name".to_owned(),
        })?;
        Ok(Self::new(verifier, secret))
    }

    /// What every other service is told: no private key.
    pub fn verifier(&self) -> VerifierConfig {
        VerifierConfig {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            public_keys_secret: self.public_keys_secret.clone(),
        }
    }
}

/// The signing secret's content.
#[derive(Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct SigningDoc {
    kid: String,
    /// base64url (no padding) of the 32-byte Ed25519 seed.
    d: String,
    created_at: i64,
}

impl SigningDoc {
    fn new(key: &SigningKey, now: OffsetDateTime) -> Self {
        Self {
            kid: key.kid().to_owned(),
            d: key.to_base64url(),
            created_at: now.unix_timestamp(),
        }
    }

    /// The key, checked against its `kid`. Errors never carry the key.
    fn key(&self) -> anyhow::Result<SigningKey> {
        let key = SigningKey::from_base64url(&self.d)?;
        anyhow::ensure!(
            key.kid() == self.kid,
            "the signing key does not match its kid"
        );
        Ok(key)
    }
}

/// A new key from the operating system's random source.
fn generate_key() -> SigningKey {
    let mut seed = [0_u8; 32];
    rand::rng().fill_bytes(&mut seed);
    SigningKey::from_seed(seed)
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
    if json.as_object().is_some_and(|o| o.is_empty()) {
        return Ok(None);
    }
    let doc = serde_json::from_value(json)
        .map_err(|_| anyhow::anyhow!("secret {name} is not a signing key document"))?;
    Ok(Some(doc))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;

    use constellation_core::OrgId;
    use constellation_core::auth::{AccountId, Claims, Principal, Role};
    use constellation_core::token::access_claims;
    use constellation_platform::config::Platform;
    use constellation_platform::tokens::{TokenError, TokenVerifier, load_verifier};
    use constellation_platform::{Clock as _, ManualClock};

    use super::*;

    /// A local platform whose keys the issuer created, with both halves loaded.
    pub(super) struct Fx {
        _dir: tempfile::TempDir,
        pub(super) clock: Arc<ManualClock>,
        pub(super) platform: Platform,
        pub(super) cfg: SigningConfig,
        pub(super) issuer: TokenIssuer,
        pub(super) verifier: Arc<TokenVerifier>,
    }

    pub(super) async fn fx() -> Fx {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::starting_now());
        let platform =
            Platform::local(dir.path().to_path_buf(), String::new(), clock.clone()).unwrap();
        let cfg = SigningConfig::default();
        let issuer = load_issuer(&platform, &cfg).await.unwrap();
        let verifier = load_verifier(&platform, &cfg.verifier()).await.unwrap();
        Fx {
            _dir: dir,
            clock,
            platform,
            cfg,
            issuer,
            verifier,
        }
    }

    pub(super) fn fx_principal() -> Principal {
        Principal {
            account: AccountId::from_bytes([7; 16]),
            org: OrgId::parse("acme").unwrap(),
            role: Role::Staff,
        }
    }

    impl Fx {
        pub(super) fn now(&self) -> OffsetDateTime {
            self.clock.now()
        }

        pub(super) fn issue(&self) -> IssuedToken {
            self.issuer.issue(&fx_principal(), self.now())
        }

        /// Claims as the issuer would sign them now.
        pub(super) fn claims(&self) -> Claims {
            let scope = self.cfg.verifier();
            access_claims(scope.expected(), &fx_principal(), self.now(), "fx".into())
        }

        /// The current private key, as the auth function holds it.
        pub(super) async fn signing_key(&self) -> SigningKey {
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

        pub(super) async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
            self.verifier.verify(token).await
        }
    }

    #[test]
    fn config_reads_its_variables_with_defaults() {
        let cfg = SigningConfig::from_vars(|_| None).unwrap();
        assert_eq!(cfg, SigningConfig::default());
        assert_eq!(cfg.signing_keys_secret, "constellation/auth/signing-keys");
        assert_eq!(cfg.public_keys_secret, "constellation/auth/public-keys");
        assert_eq!(cfg.verifier(), VerifierConfig::default());
        let cfg = SigningConfig::from_vars(|name| match name {
            "AUTH_ISSUER" => Some("https://auth.example".into()),
            "AUTH_PUBLIC_KEYS_SECRET_ID" => Some("prod/public".into()),
            "AUTH_SIGNING_KEYS_SECRET_ID" => Some("prod/signing".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cfg.issuer, "https://auth.example");
        assert_eq!(cfg.audience, "constellation-api");
        assert_eq!(
            (
                cfg.signing_keys_secret.as_str(),
                cfg.public_keys_secret.as_str()
            ),
            ("prod/signing", "prod/public")
        );
        // The verifier's half carries everything but the private key's name.
        assert_eq!(
            cfg.verifier(),
            VerifierConfig {
                issuer: "https://auth.example".into(),
                audience: "constellation-api".into(),
                public_keys_secret: "prod/public".into(),
            }
        );
        let err = SigningConfig::from_vars(|name| {
            (name == "AUTH_SIGNING_KEYS_SECRET_ID").then(|| "bad name!".to_owned())
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("AUTH_SIGNING_KEYS_SECRET_ID"),
            "{err}"
        );
    }

    #[test]
    fn the_signing_document_checks_its_kid() {
        let key = SigningKey::from_seed([4; 32]);
        let now = OffsetDateTime::from_unix_timestamp(1_750_000_000).unwrap();
        let doc = SigningDoc::new(&key, now);
        assert_eq!(doc.key().unwrap().kid(), key.kid());
        let text = serde_json::to_value(&doc).unwrap();
        assert_eq!(
            text,
            serde_json::json!({"kid": key.kid(), "d": key.to_base64url(), "created_at": 1_750_000_000})
        );
        let other = SigningDoc {
            kid: SigningKey::from_seed([5; 32]).kid().to_owned(),
            ..doc
        };
        let err = other.key().err().unwrap();
        assert!(err.to_string().contains("does not match its kid"), "{err}");
        assert!(!format!("{err:#}").contains(&key.to_base64url()));
    }
}
