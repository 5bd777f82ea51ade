//! The Secrets port over a `secrets` table in the local database. Values are
//! stored as given (the data directory is the trust boundary locally) and
//! never logged: only names reach spans and errors.

use async_trait::async_trait;
use rusqlite::{OptionalExtension as _, params};

use super::LocalBackend;
use crate::secrets::{SecretValue, Secrets, SecretsError, validate_secret_name};

/// Named secrets in the local database.
#[derive(Debug, Clone)]
pub struct SqliteSecrets {
    backend: LocalBackend,
}

impl SqliteSecrets {
    pub(super) fn new(backend: LocalBackend) -> Self {
        Self { backend }
    }

    /// The value of secret `name`, storing `value` first if it has none: in
    /// one transaction, so processes generating the same secret at once all
    /// end up with the one stored first.
    #[tracing::instrument(skip(self, value))]
    pub async fn get_or_insert(
        &self,
        name: &str,
        value: &SecretValue,
    ) -> Result<SecretValue, SecretsError> {
        self.store("get or insert secret", name, value, false).await
    }

    /// Writes `value` as secret `name`, over any value it has when
    /// `replace`, else only if it has none; returns the value then stored.
    async fn store(
        &self,
        op: &'static str,
        name: &str,
        value: &SecretValue,
        replace: bool,
    ) -> Result<SecretValue, SecretsError> {
        validate_secret_name(name)?;
        let (name, value) = (name.to_owned(), value.clone());
        let now = self.backend.now().unix_timestamp();
        self.backend
            .write(op, move |tx| {
                let sql = if replace {
                    "INSERT INTO secrets (name, value, updated_at) VALUES (?, ?, ?) \
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value, \
                     updated_at = excluded.updated_at"
                } else {
                    "INSERT INTO secrets (name, value, updated_at) VALUES (?, ?, ?) \
                     ON CONFLICT (name) DO NOTHING"
                };
                tx.prepare_cached(sql)?
                    .execute(params![name, value.expose(), now])?;
                if replace {
                    return Ok(value);
                }
                let stored = tx
                    .prepare_cached("SELECT value FROM secrets WHERE name = ?")?
                    .query_row(params![name], |row| row.get::<_, String>(0))?;
                Ok(SecretValue::new(stored))
            })
            .await
    }
}

#[async_trait]
impl Secrets for SqliteSecrets {
    #[tracing::instrument(skip(self))]
    async fn get(&self, name: &str) -> Result<Option<SecretValue>, SecretsError> {
        validate_secret_name(name)?;
        let name = name.to_owned();
        self.backend.read_now("get secret", move |conn| {
            let value = conn
                .prepare_cached("SELECT value FROM secrets WHERE name = ?")?
                .query_row(params![name], |row| row.get::<_, String>(0))
                .optional()?;
            Ok(value.map(SecretValue::new))
        })
    }

    #[tracing::instrument(skip(self, value))]
    async fn put(&self, name: &str, value: &SecretValue) -> Result<(), SecretsError> {
        self.store("put secret", name, value, true).await.map(drop)
    }
}
