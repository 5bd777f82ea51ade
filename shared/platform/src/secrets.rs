//! The Secrets port and its in-memory cache.
//!
//! Secret values never appear in `Debug` output or logs: [`SecretValue`]
//! redacts itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};

use crate::clock::Clock;

/// A secret's value. Its `Debug` prints `SecretValue(**redacted**)`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself; call only where it is used, never to log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(**redacted**)")
    }
}

/// Why a secrets operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The name is malformed.
    #[error("invalid secret request: {0}")]
    Invalid(String),
    /// The backend is throttling or briefly unreachable.
    #[error("secrets temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else from the backend.
    #[error("secrets backend error")]
    Backend(#[source] anyhow::Error),
}

/// Whether a failure passes by itself: `err` or an error in its chain is a
/// secrets backend that throttled or was briefly unreachable
/// ([`SecretsError::Unavailable`], directly or as a
/// [`PlatformError`](crate::config::PlatformError)). Callers answer such a
/// failure with 503 and anything else (a missing or malformed secret, access
/// denied, a broken database) with 500: it will not pass without an operator.
pub fn is_transient(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        let unavailable = matches!(
            e.downcast_ref::<SecretsError>(),
            Some(SecretsError::Unavailable(_))
        ) || matches!(
            e.downcast_ref::<crate::config::PlatformError>(),
            Some(crate::config::PlatformError::Secrets(
                SecretsError::Unavailable(_)
            ))
        );
        if unavailable {
            return true;
        }
        next = e.source();
    }
    false
}

/// Named secrets.
#[async_trait]
pub trait Secrets: Send + Sync + std::fmt::Debug {
    /// The current value of a secret, if it exists.
    async fn get(&self, name: &str) -> Result<Option<SecretValue>, SecretsError>;
    /// Sets a secret's current value, creating the secret if needed.
    async fn put(&self, name: &str, value: &SecretValue) -> Result<(), SecretsError>;
}

/// Caches another [`Secrets`] in memory for a TTL, so that a warm Lambda does
/// not call Secrets Manager on every request. Writes go through and refresh the cache.
#[derive(Debug)]
pub struct CachedSecrets {
    inner: Arc<dyn Secrets>,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    cache: Mutex<HashMap<String, (OffsetDateTime, Option<SecretValue>)>>,
}

impl CachedSecrets {
    /// Caches `inner` for `ttl`, measured by `clock`.
    pub fn new(inner: Arc<dyn Secrets>, clock: Arc<dyn Clock>, ttl: Duration) -> Self {
        Self {
            inner,
            clock,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, name: &str) -> Option<Option<SecretValue>> {
        let now = self.clock.now();
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(name)
            .filter(|(fetched, _)| now < *fetched + self.ttl)
            .map(|(_, v)| v.clone())
    }

    fn remember(&self, name: &str, value: Option<SecretValue>) {
        let now = self.clock.now();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(name.to_owned(), (now, value));
    }
}

#[async_trait]
impl Secrets for CachedSecrets {
    async fn get(&self, name: &str) -> Result<Option<SecretValue>, SecretsError> {
        if let Some(hit) = self.cached(name) {
            return Ok(hit);
        }
        let value = self.inner.get(name).await?;
        self.remember(name, value.clone());
        Ok(value)
    }

    async fn put(&self, name: &str, value: &SecretValue) -> Result<(), SecretsError> {
        self.inner.put(name, value).await?;
        self.remember(name, Some(value.clone()));
        Ok(())
    }
}

/// Checks a secret name: 1-512 characters of `[A-Za-z0-9/_+=.@-]`, as Secrets Manager allows.
pub fn validate_secret_name(name: &str) -> Result<(), SecretsError> {
    let ok = !name.is_empty()
        && name.len() <= 512
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(SecretsError::Invalid(format!("bad secret name {name:?}")))
    }
}
