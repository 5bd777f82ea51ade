//! The issuer: signs access tokens with the current private key, and picks
//! up a rotated key by itself.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context as _;
use constellation_core::auth::{Claims, Principal};
use constellation_core::token::{ACCESS_TOKEN_TTL, Expected, SigningKey, access_claims};
use constellation_platform::config::{BackendKind, Platform};
use constellation_platform::secrets::Secrets;
use constellation_platform::tokens::read_public_keys;
use rand::RngCore as _;
use time::OffsetDateTime;

use super::rotation::ensure_signing_key;
use super::{ISSUER_RELOAD_INTERVAL, SigningConfig, read_signing};

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

struct IssuerInner {
    issuer: String,
    audience: String,
    current: RwLock<SigningKey>,
    secrets: Arc<dyn Secrets>,
    secret_name: String,
    last_check: Mutex<OffsetDateTime>,
    reloading: AtomicBool,
}

/// Signs access tokens with the current private key. Only the auth function
/// builds one. It picks up a rotated key by itself: when its last look at the
/// signing secret is older than [`ISSUER_RELOAD_INTERVAL`], `issue` starts a
/// background re-read (the token being issued still uses the key in hand,
/// whose public half stays valid through [`super::ROTATION_GRACE`]).
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

impl TokenIssuer {
    /// Signs a token for `principal`, valid from `now` for [`ACCESS_TOKEN_TTL`].
    pub fn issue(&self, principal: &Principal, now: OffsetDateTime) -> IssuedToken {
        let mut jti = [0_u8; 16];
        rand::rng().fill_bytes(&mut jti);
        let scope = Expected {
            issuer: &self.inner.issuer,
            audience: &self.inner.audience,
        };
        let claims = access_claims(scope, principal, now, hex::encode(jti));
        let token = self
            .inner
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .sign(&claims);
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
            .kid()
            .to_owned()
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
        if current.kid() != doc.kid {
            *current = doc.key()?;
            tracing::info!(kid = %current.kid(), "now signing with a rotated key");
        }
        Ok(())
    }
}

/// The issuer as the auth store holds it: already loaded, or loaded from the
/// signing secret when the first token is signed, so that the auth
/// function's cold start (and a health check, or a JWKS request) reads no
/// private key. Racing first users share one load; a failed load is an error
/// for its callers, and the next call tries again.
pub struct LazyIssuer {
    cell: tokio::sync::OnceCell<TokenIssuer>,
    source: Option<(Platform, SigningConfig)>,
}

impl fmt::Debug for LazyIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyIssuer")
            .field("loaded", &self.cell.get())
            .finish_non_exhaustive()
    }
}

impl LazyIssuer {
    /// An issuer loaded already.
    pub fn ready(issuer: TokenIssuer) -> Self {
        Self {
            cell: tokio::sync::OnceCell::new_with(Some(issuer)),
            source: None,
        }
    }

    /// An issuer [`load_issuer`] builds from `platform` and `cfg` on first use.
    pub fn on_first_use(platform: Platform, cfg: SigningConfig) -> Self {
        Self {
            cell: tokio::sync::OnceCell::new(),
            source: Some((platform, cfg)),
        }
    }

    /// The issuer, loading it first if no call has yet.
    pub async fn get(&self) -> anyhow::Result<&TokenIssuer> {
        self.cell
            .get_or_try_init(|| async {
                let (platform, cfg) = self
                    .source
                    .as_ref()
                    .context("the issuer has nothing to load from")?;
                load_issuer(platform, cfg).await
            })
            .await
    }
}

/// Builds the issuer from the signing secret. Locally, keys are generated on
/// first start; in AWS both secrets must already hold keys (created by
/// `constellation keys rotate` or `serve --provision`).
pub async fn load_issuer(platform: &Platform, cfg: &SigningConfig) -> anyhow::Result<TokenIssuer> {
    let secrets = platform.secrets();
    let clock = platform.clock();
    let ensured = if platform.kind() == BackendKind::Local {
        Some(ensure_signing_key(secrets.as_ref(), cfg, clock.as_ref()).await?)
    } else {
        None
    };
    // The first reads go to the backend, not through the 5-minute cache: a
    // lazy load that found no key (before the first rotation in AWS) must
    // not keep failing for minutes after the rotation that fixes it.
    let fresh = platform.uncached_secrets();
    let doc = read_signing(fresh.as_ref(), &cfg.signing_keys_secret)
        .await?
        .with_context(|| {
            format!(
                "secret {} holds no signing key; create one with `constellation keys rotate`",
                cfg.signing_keys_secret
            )
        })?;
    // Read again in case another process made the first key meanwhile;
    // when it is the document just ensured, so is its key (deriving it
    // again is a scalar multiplication and a hash).
    let key = match ensured {
        Some((seen, key)) if seen == doc => key,
        _ => doc.key()?,
    };
    let public = read_public_keys(fresh.as_ref(), &cfg.public_keys_secret)
        .await?
        .unwrap_or_default();
    anyhow::ensure!(
        public.contains(&doc.kid),
        "the public key set {} lacks the current signing key {}; tokens would not verify",
        cfg.public_keys_secret,
        doc.kid
    );
    Ok(TokenIssuer {
        inner: Arc::new(IssuerInner {
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            current: RwLock::new(key),
            secrets,
            secret_name: cfg.signing_keys_secret.clone(),
            last_check: Mutex::new(clock.now()),
            reloading: AtomicBool::new(false),
        }),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::{Value, json};

    use super::super::rotate_keys;
    use super::super::tests::{fx, fx_principal};
    use super::*;

    #[tokio::test]
    async fn issue_then_verify_round_trips() {
        let fx = fx().await;
        let issued = fx.issue();
        assert_eq!(issued.expires_in, 900);
        assert_eq!(issued.claims.exp - issued.claims.iat, 900);
        assert_eq!(issued.claims.iat, fx.now().unix_timestamp());
        assert_eq!(issued.token.split('.').count(), 3);
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(issued.token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            header,
            json!({"alg": "EdDSA", "typ": "at+jwt", "kid": fx.issuer.kid()})
        );
        let claims = fx.verify(&issued.token).await.unwrap();
        assert_eq!(claims, issued.claims);
        assert_eq!(Principal::from(&claims), fx_principal());
        // Two tokens never share a jti.
        assert_ne!(fx.issue().claims.jti, issued.claims.jti);
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
    async fn debug_output_carries_no_key_material_or_token() {
        let fx = fx().await;
        let private = fx.signing_key().await;
        let issued = fx.issue();
        let public = private.public_key().to_base64url();
        let shown = format!("{:?} {:?} {:?}", fx.issuer, fx.verifier, issued);
        assert!(shown.contains(&fx.issuer.kid()), "{shown}");
        for secret in [private.to_base64url(), public, issued.token.clone()] {
            assert!(!shown.contains(&secret), "{shown}");
        }
    }
}
