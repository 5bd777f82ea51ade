//! AWS adapters: the ports over DynamoDB, S3, SQS, Secrets Manager,
//! EventBridge and SES v2.
//!
//! [`AwsBackend`] holds one SDK configuration and hands out adapters bound to
//! a table, bucket or queue. Each SDK client is built on first use (clients
//! share one HTTP connection pool through the configuration) and exists only
//! when its cargo feature is on: a Lambda links, and builds at cold start,
//! only the clients of the ports it uses. Provisioning (creating those
//! resources when they are missing, for tests and `serve --backend aws`)
//! lives in [`provision`]; in a deployment the SAM template creates them.
//!
//! A Lambda function's configuration ([`AwsBackend::from_lambda_env`]) comes
//! from the environment variables the Lambda service sets (`AWS_REGION`, the
//! role's `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
//! `AWS_SESSION_TOKEN`): no profile file is read and no credential or region
//! source is probed (IMDS, ECS, SSO, web identity), nor linked. `serve` and
//! the CLI load the SDK's usual chain.
//!
//! Every adapter sorts SDK failures the same way (see [`is_transient`]):
//! throttling, 5xx, timeouts and dispatch failures are "unavailable"
//! (retryable); everything else is a backend error carrying the operation and
//! resource in its context.

use std::sync::{Arc, OnceLock};

use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// An SDK call's failure, the same type for every service client.
type SdkError<E> = aws_smithy_runtime_api::client::result::SdkError<E, HttpResponse>;

#[cfg(feature = "dynamodb")]
mod dynamo;
#[cfg(feature = "dynamodb")]
mod dynamo_layout;
#[cfg(feature = "eventbridge")]
mod eventbridge;
#[cfg(feature = "provision")]
pub mod provision;
#[cfg(feature = "s3")]
mod s3;
mod secrets;
#[cfg(feature = "sesv2")]
mod ses;
#[cfg(feature = "sqs")]
mod sqs;

#[cfg(feature = "dynamodb")]
pub use dynamo::DynamoTable;
#[cfg(feature = "eventbridge")]
pub use eventbridge::EventBridgeBus;
#[cfg(feature = "s3")]
pub use s3::S3BlobStore;
pub use secrets::SecretsManagerSecrets;
#[cfg(feature = "sesv2")]
pub use ses::SesMailer;
#[cfg(feature = "sqs")]
pub use sqs::{SqsQueue, SqsReceiver};

/// One SDK configuration and, built on first use, a client for each service
/// the enabled ports use. Cloning is cheap (one shared allocation).
#[derive(Clone, Debug)]
pub struct AwsBackend {
    inner: Arc<Clients>,
}

#[derive(Debug)]
struct Clients {
    config: SdkConfig,
    #[cfg(feature = "dynamodb")]
    dynamodb: OnceLock<aws_sdk_dynamodb::Client>,
    #[cfg(feature = "s3")]
    s3: OnceLock<aws_sdk_s3::Client>,
    #[cfg(feature = "sqs")]
    sqs: OnceLock<aws_sdk_sqs::Client>,
    secrets: OnceLock<aws_sdk_secretsmanager::Client>,
    #[cfg(feature = "eventbridge")]
    eventbridge: OnceLock<aws_sdk_eventbridge::Client>,
    #[cfg(feature = "sesv2")]
    sesv2: OnceLock<aws_sdk_sesv2::Client>,
}

/// The HTTPS client every SDK configuration here is loaded with: hyper 1 +
/// rustls over ring, trusting the system's root certificates, with the SDK's
/// cipher suites. The SDK crates are built without a default client (their
/// default is rustls over aws-lc: 0.63 MB more of kv's zip), so a
/// configuration loaded without this one cannot send a request.
pub fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The SDK's configuration loader (environment, profile files, SSO, web
/// identity, IMDS...), over [`http_client`]: for `serve` and the CLI.
fn loader() -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).http_client(http_client())
}

/// A Lambda function's configuration, from the variables the Lambda service
/// sets (`var` reads one): region from `AWS_REGION`, credentials from the
/// role's `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`,
/// and, when set, `AWS_ENDPOINT_URL` (an emulator), `AWS_USE_FIPS_ENDPOINT`,
/// `AWS_USE_DUALSTACK_ENDPOINT` and `AWS_MAX_ATTEMPTS`. Built by hand rather
/// than by the loader, which probes nothing in Lambda either but links every
/// provider it could probe: STS, SSO, IMDS, ECS and the profile parser were
/// about a quarter of a megabyte of each function. What the loader would
/// default is set explicitly, not left to the behaviour version: standard
/// retries (3 attempts), a 3.1 s connect timeout, tokio's sleep, the system
/// clock. Other `AWS_*` settings (per-service `AWS_ENDPOINT_URL_<SERVICE>`,
/// `AWS_RETRY_MODE`, profiles) are not read: template.yaml sets none.
fn lambda_config(var: impl Fn(&str) -> Option<String>) -> SdkConfig {
    use aws_config::Region;
    use aws_config::environment::EnvironmentVariableCredentialsProvider;
    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;
    use aws_credential_types::provider::SharedCredentialsProvider;
    use aws_smithy_async::rt::sleep::TokioSleep;
    use aws_smithy_async::time::SystemTimeSource;
    let flag = |name: &str| var(name).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let attempts = var("AWS_MAX_ATTEMPTS")
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|n| (1..=10).contains(n))
        .unwrap_or(3);
    let mut config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http_client())
        .credentials_provider(SharedCredentialsProvider::new(
            EnvironmentVariableCredentialsProvider::new(),
        ))
        .retry_config(RetryConfig::standard().with_max_attempts(attempts))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(std::time::Duration::from_millis(3100))
                .build(),
        )
        .sleep_impl(TokioSleep::new())
        .time_source(SystemTimeSource::new())
        .use_fips(flag("AWS_USE_FIPS_ENDPOINT"))
        .use_dual_stack(flag("AWS_USE_DUALSTACK_ENDPOINT"));
    if let Some(region) = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")) {
        config = config.region(Region::new(region));
    }
    if let Some(url) = var("AWS_ENDPOINT_URL") {
        config = config.endpoint_url(url);
    }
    config.build()
}

impl AwsBackend {
    /// The backend of a Lambda function: its configuration comes from the
    /// variables the Lambda service sets and nothing else (no profile file,
    /// no credential or region source probed).
    pub fn from_lambda_env() -> Self {
        Self::from_sdk_config(&lambda_config(crate::config::optional))
    }

    /// Loads the configuration the way every AWS SDK does (environment,
    /// profile, the instance's role), for `serve` and the CLI, talking to
    /// `endpoint` (an emulator such as moto or LocalStack) when one is given.
    pub async fn connect(endpoint: Option<&str>) -> Self {
        let mut loader = loader();
        if let Some(url) = endpoint {
            loader = loader.endpoint_url(url);
        }
        Self::from_sdk_config(&loader.load().await)
    }

    /// A backend over an already loaded configuration; its clients are built
    /// when first used. With an endpoint override (an emulator) S3 is
    /// addressed path-style, as emulators expect.
    pub fn from_sdk_config(cfg: &SdkConfig) -> Self {
        Self {
            inner: Arc::new(Clients {
                config: cfg.clone(),
                #[cfg(feature = "dynamodb")]
                dynamodb: OnceLock::new(),
                #[cfg(feature = "s3")]
                s3: OnceLock::new(),
                #[cfg(feature = "sqs")]
                sqs: OnceLock::new(),
                secrets: OnceLock::new(),
                #[cfg(feature = "eventbridge")]
                eventbridge: OnceLock::new(),
                #[cfg(feature = "sesv2")]
                sesv2: OnceLock::new(),
            }),
        }
    }

    /// The configuration the clients are built from.
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.inner.config
    }

    #[cfg(feature = "dynamodb")]
    fn dynamodb(&self) -> &aws_sdk_dynamodb::Client {
        self.inner
            .dynamodb
            .get_or_init(|| aws_sdk_dynamodb::Client::new(&self.inner.config))
    }

    #[cfg(feature = "s3")]
    fn s3(&self) -> &aws_sdk_s3::Client {
        self.inner.s3.get_or_init(|| {
            let cfg = &self.inner.config;
            let s3_config = aws_sdk_s3::config::Builder::from(cfg)
                .force_path_style(cfg.endpoint_url().is_some())
                .build();
            aws_sdk_s3::Client::from_conf(s3_config)
        })
    }

    #[cfg(feature = "sqs")]
    fn sqs(&self) -> &aws_sdk_sqs::Client {
        self.inner
            .sqs
            .get_or_init(|| aws_sdk_sqs::Client::new(&self.inner.config))
    }

    fn secretsmanager(&self) -> &aws_sdk_secretsmanager::Client {
        self.inner
            .secrets
            .get_or_init(|| aws_sdk_secretsmanager::Client::new(&self.inner.config))
    }

    #[cfg(feature = "eventbridge")]
    fn eventbridge(&self) -> &aws_sdk_eventbridge::Client {
        self.inner
            .eventbridge
            .get_or_init(|| aws_sdk_eventbridge::Client::new(&self.inner.config))
    }

    #[cfg(feature = "sesv2")]
    fn sesv2(&self) -> &aws_sdk_sesv2::Client {
        self.inner
            .sesv2
            .get_or_init(|| aws_sdk_sesv2::Client::new(&self.inner.config))
    }

    /// The table `name`; cursors are sealed under `cursor_key`, and TTL is
    /// judged by `clock`.
    #[cfg(feature = "dynamodb")]
    pub fn table(
        &self,
        name: &str,
        cursor_key: [u8; 32],
        clock: Arc<dyn crate::clock::Clock>,
    ) -> DynamoTable {
        DynamoTable::new(self.clone(), name, cursor_key, clock)
    }

    /// The bucket `bucket`.
    #[cfg(feature = "s3")]
    pub fn blob_store(&self, bucket: &str) -> S3BlobStore {
        S3BlobStore::new(self.clone(), bucket)
    }

    /// The queue at `queue_url`, for sending.
    #[cfg(feature = "sqs")]
    pub fn queue(&self, queue_url: &str) -> SqsQueue {
        SqsQueue::new(self.clone(), queue_url)
    }

    /// The queue at `queue_url`, for receiving; looks up its ARN.
    #[cfg(feature = "sqs")]
    #[tracing::instrument(skip(self))]
    pub async fn receiver(&self, queue_url: &str) -> Result<SqsReceiver, crate::queue::QueueError> {
        SqsReceiver::connect(self.sqs().clone(), queue_url).await
    }

    /// The URL of the queue named `name`.
    #[cfg(feature = "sqs")]
    #[tracing::instrument(skip(self))]
    pub async fn queue_url(&self, name: &str) -> Result<String, crate::queue::QueueError> {
        sqs::queue_url(self.sqs(), name).await
    }

    /// The URL of the queue named `name`, or `None` when it does not exist.
    #[cfg(feature = "sqs")]
    #[tracing::instrument(skip(self))]
    pub async fn find_queue_url(
        &self,
        name: &str,
    ) -> Result<Option<String>, crate::queue::QueueError> {
        sqs::find_queue_url(self.sqs(), name).await
    }

    /// SES v2 in the configured account and region; messages are dated by `clock`.
    #[cfg(feature = "sesv2")]
    pub fn mailer(&self, clock: Arc<dyn crate::clock::Clock>) -> SesMailer {
        SesMailer::new(self.clone(), clock)
    }

    /// Secrets Manager in the configured account and region.
    pub fn secrets(&self) -> SecretsManagerSecrets {
        SecretsManagerSecrets::new(self.clone())
    }
}

/// Error codes that mean "slow down or try again", across the services.
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
#[cfg(feature = "dynamodb")]
pub(crate) fn error_code<E: ProvideErrorMetadata>(err: &SdkError<E>) -> Option<&str> {
    match err {
        SdkError::ServiceError(e) => e.err().code(),
        _ => None,
    }
}

/// The HTTP status the service answered with, if it answered.
#[cfg(feature = "s3")]
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

#[cfg(test)]
mod tests {
    use super::*;

    // The SDK crates are built without a default HTTP client: a
    // configuration that missed ours would fail its first request at run
    // time, not at build time.
    #[tokio::test]
    async fn every_loaded_configuration_has_the_https_client() {
        let cfg = loader().load().await;
        assert!(cfg.http_client().is_some());
        let backend = AwsBackend::connect(Some("http://127.0.0.1:9")).await;
        assert!(backend.sdk_config().http_client().is_some());
        assert!(lambda_config(|_| None).http_client().is_some());
    }

    #[test]
    fn a_lambda_configuration_comes_from_lambdas_variables() {
        let vars = [
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ];
        let var = |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        };
        let cfg = lambda_config(var);
        assert_eq!(cfg.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(cfg.endpoint_url(), Some("http://127.0.0.1:9"));
        assert!(cfg.credentials_provider().is_some());
        assert!(cfg.behavior_version().is_some());
        // What the loader would default, set rather than left to the
        // behaviour version.
        assert!(cfg.sleep_impl().is_some() && cfg.time_source().is_some());
        assert_eq!(cfg.retry_config().map(|r| r.max_attempts()), Some(3));
        assert_eq!(
            cfg.timeout_config().and_then(|t| t.connect_timeout()),
            Some(std::time::Duration::from_millis(3100))
        );
        assert_eq!(cfg.use_fips(), Some(false));
        let bare =
            lambda_config(|name| (name == "AWS_DEFAULT_REGION").then(|| "us-east-1".to_owned()));
        assert_eq!(bare.region().map(|r| r.as_ref()), Some("us-east-1"));
        assert_eq!(bare.endpoint_url(), None);

        let tuned = lambda_config(|name| match name {
            "AWS_USE_FIPS_ENDPOINT" => Some("true".to_owned()),
            "AWS_USE_DUALSTACK_ENDPOINT" => Some("TRUE".to_owned()),
            "AWS_MAX_ATTEMPTS" => Some("5".to_owned()),
            _ => None,
        });
        assert_eq!(tuned.use_fips(), Some(true));
        assert_eq!(tuned.use_dual_stack(), Some(true));
        assert_eq!(tuned.retry_config().map(|r| r.max_attempts()), Some(5));
        let nonsense = lambda_config(|name| (name == "AWS_MAX_ATTEMPTS").then(|| "0".to_owned()));
        assert_eq!(nonsense.retry_config().map(|r| r.max_attempts()), Some(3));
    }
}
