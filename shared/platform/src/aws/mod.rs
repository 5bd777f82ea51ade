//! AWS adapters: the ports over DynamoDB, S3, SQS, Secrets Manager and EventBridge.
//!
//! [`AwsBackend`] holds one SDK configuration and one client per service
//! (clients are cheap to clone and share a connection pool), and hands out
//! adapters bound to a table, bucket or queue. Provisioning (creating those
//! resources when they are missing, for tests and `serve --backend aws`) lives
//! in [`provision`]; in a deployment the SAM template creates them instead.
//!
//! Every adapter sorts SDK failures the same way (see [`is_transient`]):
//! throttling, 5xx, timeouts and dispatch failures are "unavailable"
//! (retryable); everything else is a backend error carrying the operation and
//! resource in its context.

use std::sync::Arc;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use crate::clock::Clock;
use crate::queue::QueueError;

mod dynamo;
mod eventbridge;
pub mod provision;
mod s3;
mod secrets;
mod sqs;

pub use dynamo::DynamoTable;
pub use eventbridge::EventBridgeBus;
pub use s3::S3BlobStore;
pub use secrets::SecretsManagerSecrets;
pub use sqs::{SqsQueue, SqsReceiver};

/// One SDK configuration and a client for each service the ports use.
/// Cloning is cheap (one shared allocation).
#[derive(Clone, Debug)]
pub struct AwsBackend {
    inner: Arc<Clients>,
}

#[derive(Debug)]
struct Clients {
    config: SdkConfig,
    dynamodb: aws_sdk_dynamodb::Client,
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
    secrets: aws_sdk_secretsmanager::Client,
    eventbridge: aws_sdk_eventbridge::Client,
}

impl AwsBackend {
    /// Loads the configuration the way every AWS SDK does (environment,
    /// profile, Lambda's role), honouring `AWS_ENDPOINT_URL` for emulators.
    pub async fn from_env() -> Self {
        Self::connect(None).await
    }

    /// Like [`AwsBackend::from_env`], but talking to `endpoint` (an emulator
    /// such as moto or LocalStack) when one is given.
    pub async fn connect(endpoint: Option<&str>) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(url) = endpoint {
            loader = loader.endpoint_url(url);
        }
        Self::from_sdk_config(&loader.load().await)
    }

    /// Clients for an already loaded configuration. With an endpoint override
    /// (an emulator) S3 is addressed path-style, as emulators expect.
    pub fn from_sdk_config(cfg: &SdkConfig) -> Self {
        let s3_config = aws_sdk_s3::config::Builder::from(cfg)
            .force_path_style(cfg.endpoint_url().is_some())
            .build();
        Self {
            inner: Arc::new(Clients {
                config: cfg.clone(),
                dynamodb: aws_sdk_dynamodb::Client::new(cfg),
                s3: aws_sdk_s3::Client::from_conf(s3_config),
                sqs: aws_sdk_sqs::Client::new(cfg),
                secrets: aws_sdk_secretsmanager::Client::new(cfg),
                eventbridge: aws_sdk_eventbridge::Client::new(cfg),
            }),
        }
    }

    /// The configuration the clients were built from.
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.inner.config
    }

    /// The table `name`; cursors are sealed under `cursor_key`, and TTL is
    /// judged by `clock`.
    pub fn table(&self, name: &str, cursor_key: [u8; 32], clock: Arc<dyn Clock>) -> DynamoTable {
        DynamoTable::new(self.inner.dynamodb.clone(), name, cursor_key, clock)
    }

    /// The bucket `bucket`.
    pub fn blob_store(&self, bucket: &str) -> S3BlobStore {
        S3BlobStore::new(self.inner.s3.clone(), bucket)
    }

    /// The queue at `queue_url`, for sending.
    pub fn queue(&self, queue_url: &str) -> SqsQueue {
        SqsQueue::new(self.inner.sqs.clone(), queue_url)
    }

    /// The queue at `queue_url`, for receiving; looks up its ARN.
    #[tracing::instrument(skip(self))]
    pub async fn receiver(&self, queue_url: &str) -> Result<SqsReceiver, QueueError> {
        SqsReceiver::connect(self.inner.sqs.clone(), queue_url).await
    }

    /// Secrets Manager in the configured account and region.
    pub fn secrets(&self) -> SecretsManagerSecrets {
        SecretsManagerSecrets::new(self.inner.secrets.clone())
    }

    /// The URL of the queue named `name`.
    #[tracing::instrument(skip(self))]
    pub async fn queue_url(&self, name: &str) -> Result<String, QueueError> {
        sqs::queue_url(&self.inner.sqs, name).await
    }
}

/// Error codes that mean "slow down or try again", across the four services.
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TransactionConflictException",
    "TransactionInProgressException",
    "RequestTimeout",
    "RequestTimeoutException",
    "SlowDown",
    "ServiceUnavailable",
    "InternalServerError",
    "InternalFailure",
    "InternalError",
    "InternalServiceError",
    "InternalServiceErrorException",
];

/// Whether an SDK failure is worth retrying: throttling, a 5xx, a timeout, or
/// a request that never reached the service.
pub(crate) fn is_transient<E: ProvideErrorMetadata>(err: &SdkError<E>) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => true,
        SdkError::ResponseError(e) => e.raw().status().is_server_error(),
        SdkError::ServiceError(e) => {
            e.raw().status().is_server_error()
                || e.err().code().is_some_and(|c| TRANSIENT_CODES.contains(&c))
        }
        _ => false,
    }
}

/// The service's error code, if the service answered with one.
pub(crate) fn error_code<E: ProvideErrorMetadata>(err: &SdkError<E>) -> Option<&str> {
    match err {
        SdkError::ServiceError(e) => e.err().code(),
        _ => None,
    }
}

/// The HTTP status the service answered with, if it answered.
pub(crate) fn http_status<E>(err: &SdkError<E>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// Whether one SDK failure is transient, and the failure as an `anyhow` error
/// with `what` (operation and resource) as context.
pub(crate) fn classify<E>(err: SdkError<E>, what: String) -> (bool, anyhow::Error)
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let transient = is_transient(&err);
    (transient, anyhow::Error::new(err).context(what))
}
