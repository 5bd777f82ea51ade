//! One fresh set of adapters per test, for either backend.
//!
//! The local fixture opens a new data directory and serves its presigned blob
//! URLs on a loopback port. The AWS fixture talks to the moto server named by
//! `CONSTELLATION_TEST_AWS_ENDPOINT` (started by `scripts/test`) through an
//! [`S3Gate`], which checks presigned URLs the way S3 does, and provisions
//! uniquely named resources so tests never share state.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use constellation_platform::aws::AwsBackend;
use constellation_platform::local::LocalBackend;
use constellation_platform::outbox::Outbox;
use constellation_platform::{
    BlobStore, Clock, EventBus, ManualClock, Queue, QueueAdmin, QueueReceiver, QueueSpec, Route,
    SecretValue, Secrets, Table,
};

use crate::s3_gate::S3Gate;

/// The environment variable that names the moto endpoint for AWS-backend tests.
pub const AWS_ENDPOINT_VAR: &str = "CONSTELLATION_TEST_AWS_ENDPOINT";

/// The event type the fixture's bus routes to the fixture's queue.
pub const FX_ROUTED_EVENT: &str = "conformance.tested";
/// An event type no route matches.
pub const FX_UNROUTED_EVENT: &str = "conformance.ignored";

/// How the conformance queue is shaped: short enough for tests to watch redelivery.
pub fn fx_queue_spec(name: &str) -> QueueSpec {
    QueueSpec::with_dlq(name, Duration::from_secs(1), 2)
}

/// Every port, freshly provisioned for one test.
#[derive(Debug)]
pub struct Fixture {
    /// Which backend this is (`local` or `aws`), for messages.
    pub backend: &'static str,
    /// A table.
    pub table: Arc<dyn Table>,
    /// A bucket.
    pub blobs: Arc<dyn BlobStore>,
    /// A queue with a DLQ (see [`fx_queue_spec`]).
    pub queue: Arc<dyn Queue>,
    /// The consuming side of `queue`.
    pub receiver: Arc<dyn QueueReceiver>,
    /// The consuming side of `queue`'s dead-letter queue.
    pub dead_letters: Arc<dyn QueueReceiver>,
    /// The sending side of `queue`'s dead-letter queue (where workers move
    /// permanent failures).
    pub dead_letter_queue: Arc<dyn Queue>,
    /// The queue's name.
    pub queue_name: String,
    /// Its dead-letter queue's name.
    pub dead_letter_name: String,
    /// Operators' view of the queues.
    pub admin: Arc<dyn QueueAdmin>,
    /// A bus routing [`FX_ROUTED_EVENT`] to `queue`.
    pub bus: Arc<dyn EventBus>,
    /// Secrets.
    pub secrets: Arc<dyn Secrets>,
    /// The clock the table's TTL reads.
    pub clock: Arc<ManualClock>,
    /// The outbox of `table` on `bus` as the platform builds it: atomic
    /// locally, records and a relay in AWS.
    pub outbox: Outbox,
    _keep: Keep,
}

#[derive(Debug)]
enum Keep {
    Local {
        _dir: tempfile::TempDir,
        _server: AbortOnDrop,
    },
    Aws {
        _gate: S3Gate,
    },
}

/// Aborts a spawned task when dropped.
#[derive(Debug)]
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn fx_key(byte: u8) -> [u8; 32] {
    [byte; 32]
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A fixture over SQLite and files in a fresh temporary directory.
pub async fn local() -> anyhow::Result<Fixture> {
    let dir = tempfile::tempdir().context("temporary data dir")?;
    let clock = Arc::new(ManualClock::starting_now());
    let backend = LocalBackend::open(dir.path(), clock.clone() as Arc<dyn Clock>)?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("bind blob server")?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let router = backend.blob_router(fx_key(2));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });

    let spec = fx_queue_spec("conformance");
    let dlq = QueueSpec {
        name: spec.dead_letter.clone().unwrap_or_default(),
        visibility_timeout: spec.visibility_timeout,
        max_receives: u32::MAX,
        dead_letter: None,
    };
    backend
        .set_routes("conformance", &[Route::new(FX_ROUTED_EVENT, &spec.name)])
        .await?;
    let table: Arc<dyn Table> = Arc::new(backend.table("conformance", fx_key(1)));
    let bus: Arc<dyn EventBus> = Arc::new(backend.event_bus("conformance"));
    let outbox = Outbox::new(table.clone(), bus.clone(), clock.clone())
        .with_atomic(Arc::new(backend.outbox("conformance", "conformance")));
    Ok(Fixture {
        backend: "local",
        table,
        blobs: Arc::new(backend.blob_store("conformance", &base_url, fx_key(2))),
        queue: Arc::new(backend.queue(&spec.name)),
        receiver: Arc::new(backend.receiver(&spec)),
        dead_letters: Arc::new(backend.receiver(&dlq)),
        dead_letter_queue: Arc::new(backend.queue(&dlq.name)),
        queue_name: spec.name.clone(),
        dead_letter_name: dlq.name.clone(),
        admin: Arc::new(backend.clone()),
        bus,
        secrets: Arc::new(backend.secrets()),
        clock,
        outbox,
        _keep: Keep::Local {
            _dir: dir,
            _server: AbortOnDrop(server),
        },
    })
}

/// The SDK configuration for talking to the emulator at `endpoint`.
pub async fn emulator_sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    let credentials = aws_credential_types::Credentials::new("test", "test", None, None, "testkit");
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(constellation_platform::aws::http_client())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(credentials)
        .endpoint_url(endpoint)
        .load()
        .await
}

/// The moto endpoint, or an error that says how to get one.
pub fn aws_endpoint() -> anyhow::Result<String> {
    std::env::var(AWS_ENDPOINT_VAR).with_context(|| {
        format!(
            "{AWS_ENDPOINT_VAR} is not set: the AWS-backend tests need a moto server; \
             run them through scripts/test, which starts one"
        )
    })
}

/// A fixture over DynamoDB, S3, SQS and Secrets Manager as emulated by moto.
pub async fn aws() -> anyhow::Result<Fixture> {
    let upstream = aws_endpoint()?;
    let gate = S3Gate::start(&upstream, "test", "test").await?;
    let backend = AwsBackend::from_sdk_config(&emulator_sdk_config(gate.endpoint()).await);
    let clock = Arc::new(ManualClock::starting_now());

    let table_name = unique("conformance");
    backend.ensure_table(&table_name).await?;
    let bucket = unique("conformance");
    backend.ensure_bucket(&bucket).await?;
    let spec = fx_queue_spec(&unique("conformance"));
    let queue_url = backend.ensure_queue(&spec).await?;
    let dlq_name = spec.dead_letter.clone().unwrap_or_default();
    let dlq_url = backend.queue_url(&dlq_name).await?;
    let bus = unique("conformance");
    backend.ensure_event_bus(&bus).await?;
    backend
        .ensure_routes(&bus, &[Route::new(FX_ROUTED_EVENT, &spec.name)])
        .await?;

    let table: Arc<dyn Table> =
        Arc::new(backend.table(&table_name, fx_key(1), clock.clone() as Arc<dyn Clock>));
    let bus: Arc<dyn EventBus> = Arc::new(backend.event_bus(&bus));
    let outbox = Outbox::new(table.clone(), bus.clone(), clock.clone());
    Ok(Fixture {
        backend: "aws",
        table,
        blobs: Arc::new(backend.blob_store(&bucket)),
        queue: Arc::new(backend.queue(&queue_url)),
        receiver: Arc::new(backend.receiver(&queue_url).await?),
        dead_letters: Arc::new(backend.receiver(&dlq_url).await?),
        dead_letter_queue: Arc::new(backend.queue(&dlq_url)),
        queue_name: spec.name.clone(),
        dead_letter_name: dlq_name,
        admin: Arc::new(backend.clone()),
        bus,
        secrets: Arc::new(backend.secrets()),
        clock,
        outbox,
        _keep: Keep::Aws { _gate: gate },
    })
}

/// A secret name no other test uses.
pub fn fx_secret_name() -> String {
    unique("conformance/secret")
}

/// A secret value for tests.
pub fn fx_secret(value: &str) -> SecretValue {
    SecretValue::new(value)
}
