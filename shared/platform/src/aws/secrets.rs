//! The Secrets port over AWS Secrets Manager.
//!
//! Values are string secrets (`SecretString`). A write updates the current
//! version and creates the secret on first use. Neither errors nor tracing
//! fields ever carry a value: errors name the operation and the secret only.

use async_trait::async_trait;
use aws_sdk_secretsmanager::error::SdkError;
use aws_sdk_secretsmanager::operation::create_secret::CreateSecretError;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use aws_sdk_secretsmanager::operation::put_secret_value::PutSecretValueError;

use super::classify;
use crate::secrets::{SecretValue, Secrets, SecretsError, validate_secret_name};

/// Secrets Manager in the configured account and region. Its client is
/// built on the first read or write, not with this adapter: building it
/// sets up the HTTPS connector (loading the system's root certificates),
/// which a cold start that reads no secret should not pay.
#[derive(Clone, Debug)]
pub struct SecretsManagerSecrets {
    backend: super::AwsBackend,
}

fn fail<E>(op: &str, name: &str, err: SdkError<E>) -> SecretsError
where
    E: aws_sdk_secretsmanager::error::ProvideErrorMetadata
        + std::error::Error
        + Send
        + Sync
        + 'static,
{
    let (transient, err) = classify(err, format!("Secrets Manager {op} of {name}"));
    if transient {
        SecretsError::Unavailable(err)
    } else {
        SecretsError::Backend(err)
    }
}

impl SecretsManagerSecrets {
    pub(crate) fn new(backend: super::AwsBackend) -> Self {
        Self { backend }
    }

    fn client(&self) -> &aws_sdk_secretsmanager::Client {
        self.backend.secretsmanager()
    }

    /// Creates the secret with `value`; `Ok(false)` if it already exists.
    pub(crate) async fn create(
        &self,
        name: &str,
        value: &SecretValue,
    ) -> Result<bool, SecretsError> {
        match self
            .client()
            .create_secret()
            .name(name)
            .secret_string(value.expose())
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(CreateSecretError::ResourceExistsException(_))
                ) =>
            {
                Ok(false)
            }
            Err(err) => Err(fail("CreateSecret", name, err)),
        }
    }

    /// Sets the current value of an existing secret; `Ok(false)` if there is none.
    async fn update(&self, name: &str, value: &SecretValue) -> Result<bool, SecretsError> {
        match self
            .client()
            .put_secret_value()
            .secret_id(name)
            .secret_string(value.expose())
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(PutSecretValueError::ResourceNotFoundException(_))
                ) =>
            {
                Ok(false)
            }
            Err(err) => Err(fail("PutSecretValue", name, err)),
        }
    }
}

#[async_trait]
impl Secrets for SecretsManagerSecrets {
    #[tracing::instrument(skip(self))]
    async fn get(&self, name: &str) -> Result<Option<SecretValue>, SecretsError> {
        validate_secret_name(name)?;
        let out = match self
            .client()
            .get_secret_value()
            .secret_id(name)
            .send()
            .await
        {
            Ok(out) => out,
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(GetSecretValueError::ResourceNotFoundException(_))
                ) =>
            {
                return Ok(None);
            }
            Err(err) => return Err(fail("GetSecretValue", name, err)),
        };
        if let Some(s) = out.secret_string {
            return Ok(Some(SecretValue::new(s)));
        }
        match out.secret_binary {
            Some(blob) => String::from_utf8(blob.into_inner())
                .map(|s| Some(SecretValue::new(s)))
                .map_err(|_| {
                    SecretsError::Backend(anyhow::anyhow!("secret {name} is binary, not text"))
                }),
            None => Ok(None),
        }
    }

    #[tracing::instrument(skip(self, value))]
    async fn put(&self, name: &str, value: &SecretValue) -> Result<(), SecretsError> {
        validate_secret_name(name)?;
        if self.update(name, value).await? {
            return Ok(());
        }
        // Missing: create it; if another writer created it meanwhile, update theirs.
        if self.create(name, value).await? || self.update(name, value).await? {
            return Ok(());
        }
        Err(SecretsError::Unavailable(anyhow::anyhow!(
            "secret {name} kept appearing and disappearing"
        )))
    }
}
