//! Start-up configuration: which backend to use and how to reach it.
//!
//! Everything is read once, at cold start, from environment variables (the
//! names template.yaml sets), and a missing variable fails fast with its name.
//! [`Platform`] is the one object a service's `main` builds; it hands out the
//! ports, already wired to the chosen backend. Each port's accessor exists
//! when its cargo feature is on (`table`, `blob`, `queue`, `bus`, `mail`),
//! and on the AWS backend only with its client's (`dynamodb`, `s3`, `sqs`,
//! `eventbridge`, `sesv2`; see this crate's Cargo.toml), so a function that
//! forgets to name a port it uses fails to compile rather than failing in AWS.

#[cfg(feature = "local")]
use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

#[cfg(feature = "aws")]
use crate::aws::AwsBackend;
#[cfg(feature = "blob")]
use crate::blob::BlobStore;
use crate::clock::{Clock, SystemClock};
#[cfg(feature = "bus")]
use crate::events::EventBus;
#[cfg(feature = "local")]
use crate::local::LocalBackend;
#[cfg(feature = "mail")]
use crate::mail::Mailer;
#[cfg(all(feature = "table", feature = "bus"))]
use crate::outbox::Outbox;
#[cfg(feature = "queue")]
use crate::queue::{Queue, QueueAdmin, QueueReceiver, QueueSpec};
use crate::secrets::{CachedSecrets, Secrets};
#[cfg(feature = "table")]
use crate::table::Table;

/// Environment variable selecting the backend: `local` or `aws`.
pub const BACKEND_VAR: &str = "CONSTELLATION_BACKEND";
/// Environment variable naming the local data directory.
pub const DATA_DIR_VAR: &str = "CONSTELLATION_DATA_DIR";
/// Environment variable with the base URL local presigned blob URLs point at.
pub const PUBLIC_URL_VAR: &str = "CONSTELLATION_PUBLIC_URL";
/// The local data directory when none is configured.
pub const DEFAULT_DATA_DIR: &str = ".constellation";
/// How long secrets stay cached in memory.
pub const SECRETS_CACHE_TTL: time::Duration = time::Duration::minutes(5);
/// The local secret holding the key that signs local presigned blob URLs.
pub const LOCAL_BLOB_KEY_SECRET: &str = "constellation/local-blob-url-key";

/// The shortest secret [`Platform::derived_key`] derives a key from: an
/// empty or short value (set by hand) would make a guessable key. Generated
/// secrets are 44 characters (32 random bytes in base64).
pub const MIN_KEY_SECRET_LEN: usize = 16;

/// A configuration problem, naming the variable or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("missing environment variable {0}")]
    Missing(&'static str),
    /// A variable is set to something unusable.
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Why.
        reason: String,
    },
}

/// Why the platform could not be set up (at cold start: the caller's `main`
/// reports it and exits).
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The environment is incomplete or wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Reading or writing a secret failed.
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),
    /// A secret the deployment must provide does not exist.
    #[error("secret {0} does not exist")]
    MissingSecret(String),
    /// A secret a key is derived from is too short to be secret.
    #[error(
        "secret {0} is shorter than {MIN_KEY_SECRET_LEN} characters: too guessable to derive a key from"
    )]
    WeakSecret(String),
    /// The local data directory could not be opened.
    #[error("open local data dir {dir}")]
    Open {
        /// The directory.
        dir: String,
        /// Why.
        #[source]
        source: anyhow::Error,
    },
    /// Looking up a queue failed.
    #[cfg(feature = "queue")]
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
}

/// Reads a required variable.
pub fn required(name: &'static str) -> Result<String, ConfigError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(ConfigError::Missing(name)),
    }
}

/// Reads an optional variable, treating empty as unset.
pub fn optional(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Which adapter set a process uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// SQLite and files in a data directory.
    Local,
    /// DynamoDB, S3, SQS, Secrets Manager.
    Aws,
}

impl std::str::FromStr for BackendKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "local" => Ok(Self::Local),
            "aws" => Ok(Self::Aws),
            other => Err(format!("`{other}` is neither `local` nor `aws`")),
        }
    }
}

impl BackendKind {
    /// `CONSTELLATION_BACKEND`, defaulting to `aws` inside Lambda and `local` elsewhere.
    pub fn from_env() -> Result<Self, ConfigError> {
        match optional(BACKEND_VAR) {
            Some(value) => value.parse().map_err(|reason| ConfigError::Invalid {
                name: BACKEND_VAR,
                reason,
            }),
            None if optional("AWS_LAMBDA_FUNCTION_NAME").is_some() => Ok(Self::Aws),
            None => Ok(Self::Local),
        }
    }
}

#[derive(Debug, Clone)]
enum Backend {
    #[cfg(feature = "local")]
    Local {
        backend: LocalBackend,
        /// Where local presigned blob URLs point (blob stores are the `blob` feature's).
        #[cfg_attr(not(feature = "blob"), allow(dead_code))]
        public_url: String,
        /// The key local presigned blob URLs are signed with, once read:
        /// one per process, so its buckets and its blob router agree.
        #[cfg_attr(not(feature = "blob"), allow(dead_code))]
        blob_key: Arc<tokio::sync::OnceCell<[u8; 32]>>,
    },
    #[cfg(feature = "aws")]
    Aws(AwsBackend),
}

/// The ports of one process, wired to one backend.
#[derive(Debug, Clone)]
pub struct Platform {
    backend: Backend,
    clock: Arc<dyn Clock>,
    secrets: Arc<dyn Secrets>,
}

impl Platform {
    /// Builds the platform a Lambda function's environment describes (on
    /// AWS, [`AwsBackend::from_lambda_env`]'s configuration).
    pub async fn from_env() -> Result<Self, PlatformError> {
        Self::of_kind(BackendKind::from_env()?)
    }

    /// [`Platform::from_env`] once the backend is chosen: a backend this
    /// build left out fails at once, naming the variable and the build
    /// that has it.
    fn of_kind(kind: BackendKind) -> Result<Self, PlatformError> {
        match kind {
            #[cfg(feature = "local")]
            BackendKind::Local => {
                let dir = optional(DATA_DIR_VAR).unwrap_or_else(|| DEFAULT_DATA_DIR.to_owned());
                let public_url =
                    optional(PUBLIC_URL_VAR).unwrap_or_else(|| "http://127.0.0.1:3000".to_owned());
                Self::over_local(
                    PathBuf::from(dir),
                    public_url,
                    Arc::new(SystemClock),
                    open_function_backend,
                )
            }
            // A function's deployed build (its default features) has no
            // local backend: a build with its `local` feature has.
            #[cfg(not(feature = "local"))]
            BackendKind::Local => Err(ConfigError::Invalid {
                name: BACKEND_VAR,
                reason: "it asks for the local backend (`local` is also the default outside \
                         Lambda), which this binary was built without: set it to `aws`, or build \
                         with `--features local` (`cargo lambda watch --no-default-features \
                         --features local` builds the local backend alone)"
                    .to_owned(),
            }
            .into()),
            #[cfg(feature = "aws")]
            BackendKind::Aws => Ok(Self::aws(
                AwsBackend::from_lambda_env(),
                Arc::new(SystemClock),
            )),
            // A local-only build (`cargo lambda watch --no-default-features
            // --features local`) links no AWS SDK.
            #[cfg(not(feature = "aws"))]
            BackendKind::Aws => Err(ConfigError::Invalid {
                name: BACKEND_VAR,
                reason: "it asks for the AWS backend (the default inside Lambda), which this \
                         binary was built without: set it to `local`, or build with the \
                         function's default features"
                    .to_owned(),
            }
            .into()),
        }
    }

    /// A local platform over `data_dir`; presigned blob URLs point at `public_url`.
    #[cfg(feature = "local")]
    pub fn local(
        data_dir: PathBuf,
        public_url: String,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, PlatformError> {
        Self::over_local(data_dir, public_url, clock, LocalBackend::open)
    }

    /// A local platform over the backend `open` makes of `data_dir`.
    #[cfg(feature = "local")]
    fn over_local(
        data_dir: PathBuf,
        public_url: String,
        clock: Arc<dyn Clock>,
        open: fn(&std::path::Path, Arc<dyn Clock>) -> anyhow::Result<LocalBackend>,
    ) -> Result<Self, PlatformError> {
        let backend = open(&data_dir, clock.clone()).map_err(|source| PlatformError::Open {
            dir: data_dir.display().to_string(),
            source,
        })?;
        let secrets = Arc::new(CachedSecrets::new(
            Arc::new(backend.secrets()),
            clock.clone(),
            SECRETS_CACHE_TTL,
        ));
        Ok(Self {
            backend: Backend::Local {
                backend,
                public_url: public_url.trim_end_matches('/').to_owned(),
                blob_key: Arc::default(),
            },
            clock,
            secrets,
        })
    }

    /// An AWS platform.
    #[cfg(feature = "aws")]
    pub fn aws(backend: AwsBackend, clock: Arc<dyn Clock>) -> Self {
        let secrets = Arc::new(CachedSecrets::new(
            Arc::new(backend.secrets()),
            clock.clone(),
            SECRETS_CACHE_TTL,
        ));
        Self {
            backend: Backend::Aws(backend),
            clock,
            secrets,
        }
    }

    /// Which backend this is.
    pub fn kind(&self) -> BackendKind {
        match self.backend {
            #[cfg(feature = "local")]
            Backend::Local { .. } => BackendKind::Local,
            #[cfg(feature = "aws")]
            Backend::Aws(_) => BackendKind::Aws,
        }
    }

    /// The clock.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Secrets, cached for [`SECRETS_CACHE_TTL`].
    pub fn secrets(&self) -> Arc<dyn Secrets> {
        self.secrets.clone()
    }

    /// Secrets read straight from the backend, for the rare reader that must
    /// see a change at once (the token verifier after a key rotation).
    pub fn uncached_secrets(&self) -> Arc<dyn Secrets> {
        match &self.backend {
            #[cfg(feature = "local")]
            Backend::Local { backend, .. } => Arc::new(backend.secrets()),
            #[cfg(feature = "aws")]
            Backend::Aws(b) => Arc::new(b.secrets()),
        }
    }

    /// The local backend, when this is one (for `serve`'s blob routes and the CLI).
    #[cfg(feature = "local")]
    pub fn local_backend(&self) -> Option<&LocalBackend> {
        match &self.backend {
            Backend::Local { backend, .. } => Some(backend),
            #[cfg(feature = "aws")]
            Backend::Aws(_) => None,
        }
    }

    /// A 32-byte key derived from the secret `name`. Locally a missing secret is
    /// generated (the first start of a data dir), atomically: processes
    /// generating it at once all derive the one stored first. In AWS it must
    /// exist.
    pub async fn derived_key(&self, name: &str) -> Result<[u8; 32], PlatformError> {
        let value = match (self.secrets.get(name).await?, &self.backend) {
            (Some(v), _) => v,
            #[cfg(feature = "local")]
            (None, Backend::Local { backend, .. }) => {
                use base64::Engine as _;
                use rand::RngCore as _;
                let mut raw = [0_u8; 32];
                rand::rng().fill_bytes(&mut raw);
                let v = crate::secrets::SecretValue::new(
                    base64::engine::general_purpose::STANDARD.encode(raw),
                );
                backend.secrets().get_or_insert(name, &v).await?
            }
            #[cfg(feature = "aws")]
            (None, _) => return Err(PlatformError::MissingSecret(name.to_owned())),
        };
        if value.expose().len() < MIN_KEY_SECRET_LEN {
            return Err(PlatformError::WeakSecret(name.to_owned()));
        }
        Ok(Sha256::digest(value.expose().as_bytes()).into())
    }

    /// The table `name`, with cursors signed by a key derived from the secret
    /// `cursor_secret`, which is read now: a failure to read it is this call's.
    #[cfg(feature = "table")]
    pub async fn table(
        &self,
        name: &str,
        cursor_secret: &str,
    ) -> Result<Arc<dyn Table>, PlatformError> {
        let key = self.derived_key(cursor_secret).await?;
        Ok(self.table_with_key(name, key))
    }

    /// The table `name` with cursors sealed by a random key of this
    /// process's (no I/O): for callers whose cursors never leave the
    /// process, which so need no cursor secret.
    #[cfg(feature = "table")]
    pub(crate) fn process_table(&self, name: &str) -> Arc<dyn Table> {
        self.table_with_key(name, process_key())
    }

    /// The table `name` with cursors sealed by `key` (no I/O).
    #[cfg(feature = "table")]
    pub(crate) fn table_with_key(&self, name: &str, key: [u8; 32]) -> Arc<dyn Table> {
        match &self.backend {
            #[cfg(feature = "local")]
            Backend::Local { backend, .. } => Arc::new(backend.table(name, key)),
            #[cfg(feature = "dynamodb")]
            Backend::Aws(b) => Arc::new(b.table(name, key, self.clock.clone())),
        }
    }

    /// The table `name` like [`Platform::table`], but the secret
    /// `cursor_secret` is read by its first query or scan (the operations
    /// that seal cursors), not now, so a Lambda cold start, a health check
    /// and operations on one key read no secret. Until the secret is read,
    /// each query or scan tries again and fails as
    /// [`StoreError::Unavailable`](crate::table::StoreError::Unavailable),
    /// which a service answers with 503; the failure is logged.
    #[cfg(feature = "table")]
    pub fn table_on_first_use(&self, name: &str, cursor_secret: &str) -> Arc<dyn Table> {
        Arc::new(crate::lazy::LazyTable::new(
            self.clone(),
            name.to_owned(),
            cursor_secret.to_owned(),
        ))
    }

    /// The queue `reference` (a queue URL in AWS, a queue name locally).
    #[cfg(feature = "queue")]
    pub fn queue(&self, reference: &str) -> Arc<dyn Queue> {
        match &self.backend {
            #[cfg(feature = "local")]
            Backend::Local { backend, .. } => Arc::new(backend.queue(reference)),
            #[cfg(feature = "sqs")]
            Backend::Aws(b) => Arc::new(b.queue(reference)),
        }
    }

    /// The consuming side of a queue: `spec` shapes the local queue; in AWS
    /// `reference` is the queue URL and the queue's own attributes apply.
    #[cfg(feature = "queue")]
    #[cfg_attr(not(all(feature = "local", feature = "aws")), allow(unused_variables))]
    pub async fn receiver(
        &self,
        spec: &QueueSpec,
        reference: &str,
    ) -> Result<Arc<dyn QueueReceiver>, PlatformError> {
        Ok(match &self.backend {
            #[cfg(feature = "local")]
            Backend::Local { backend, .. } => Arc::new(backend.receiver(spec)),
            #[cfg(feature = "sqs")]
            Backend::Aws(b) => Arc::new(b.receiver(reference).await?),
        })
    }

    /// The operator's view of every queue (`constellation queue`).
    #[cfg(feature = "queue")]
    pub fn queue_admin(&self) -> Arc<dyn QueueAdmin> {
        match &self.backend {
            #[cfg(feature = "local")]
            Backend::Local { backend, .. } => Arc::new(backend.clone()),
            #[cfg(feature = "sqs")]
            Backend::Aws(b) => Arc::new(b.clone()),
        }
    }

    /// The event bus `name` (an EventBridge bus name in AWS).
    #[cfg(feature = "bus")]
    pub fn event_bus(&self, name: &str) -> Arc<dyn EventBus> {
        match &self.backend {
            #[cfg(feature = "local")]
            Backend::Local { backend, .. } => Arc::new(backend.event_bus(name)),
            #[cfg(feature = "eventbridge")]
            Backend::Aws(b) => Arc::new(b.event_bus(name)),
        }
    }

    /// The outbox of `table` (opened as table `table_name`) publishing on bus
    /// `bus`. Locally, writes and their events commit in one transaction.
    #[cfg(all(feature = "table", feature = "bus"))]
    #[cfg_attr(not(all(feature = "local", feature = "aws")), allow(unused_variables))]
    pub fn outbox(&self, table_name: &str, table: Arc<dyn Table>, bus: &str) -> Outbox {
        let outbox = Outbox::new(table, self.event_bus(bus), self.clock.clone());
        match &self.backend {
            // The relay reads its shards one at a time, each page on its
            // own thread (see `SqliteTable::reading_pages_here`).
            #[cfg(feature = "local")]
            Backend::Local { backend, .. } => outbox
                .with_relay_table(Arc::new(
                    backend
                        .table(table_name, process_key())
                        .reading_pages_here(),
                ))
                .with_atomic(Arc::new(backend.outbox(table_name, bus)))
                .with_relay_concurrency(1),
            #[cfg(feature = "aws")]
            Backend::Aws(_) => outbox.with_relay_table(self.process_table(table_name)),
        }
    }

    /// The mailer: SES v2 in AWS; locally, the data directory's `mail/`
    /// (see [`crate::local::mail`]).
    #[cfg(feature = "mail")]
    pub fn mailer(&self) -> Arc<dyn Mailer> {
        match &self.backend {
            #[cfg(feature = "local")]
            Backend::Local { backend, .. } => Arc::new(backend.mailer()),
            #[cfg(feature = "sesv2")]
            Backend::Aws(b) => Arc::new(b.mailer(self.clock.clone())),
        }
    }

    /// The bucket `name`. Nothing is read now (locally, the URL signing key
    /// is read when the store first presigns).
    #[cfg(feature = "blob")]
    pub async fn blob_store(&self, name: &str) -> Result<Arc<dyn BlobStore>, PlatformError> {
        Ok(match &self.backend {
            // The key presigned URLs are signed with is read when the store
            // first presigns one: a cold start (and a health check) opens no
            // database for it.
            #[cfg(feature = "local")]
            Backend::Local {
                backend,
                public_url,
                blob_key,
            } => {
                let platform = self.clone();
                let cell = blob_key.clone();
                let bucket = name.to_owned();
                let source: crate::local::SigningKeySource = Arc::new(move || {
                    let platform = platform.clone();
                    let cell = cell.clone();
                    let bucket = bucket.clone();
                    Box::pin(async move {
                        platform.local_blob_key(&cell).await.map_err(|e| {
                            let transient = crate::secrets::is_transient(&e);
                            let e = anyhow::Error::new(e).context("read the blob URL signing key");
                            tracing::error!(
                                error = format!("{e:#}"),
                                bucket = %bucket,
                                "presigning failed: the signing key cannot be read"
                            );
                            if transient {
                                crate::blob::BlobError::Unavailable(e)
                            } else {
                                crate::blob::BlobError::Backend(e)
                            }
                        })
                    })
                });
                Arc::new(backend.blob_store_on_first_use(name, public_url, source))
            }
            #[cfg(feature = "s3")]
            Backend::Aws(b) => Arc::new(b.blob_store(name)),
        })
    }

    /// The key local presigned blob URLs are signed with, kept in `cell`
    /// (the local backend's own): read (or, on a new data directory,
    /// generated) once per process.
    #[cfg(all(feature = "blob", feature = "local"))]
    async fn local_blob_key(
        &self,
        cell: &tokio::sync::OnceCell<[u8; 32]>,
    ) -> Result<[u8; 32], PlatformError> {
        cell.get_or_try_init(|| self.derived_key(LOCAL_BLOB_KEY_SECRET))
            .await
            .copied()
    }

    /// The router serving local presigned blob URLs (`None` in AWS, where S3 serves them).
    #[cfg(feature = "blob")]
    pub async fn local_blob_router(&self) -> Result<Option<axum::Router>, PlatformError> {
        match &self.backend {
            #[cfg(feature = "local")]
            Backend::Local {
                backend, blob_key, ..
            } => {
                let key = self.local_blob_key(blob_key).await?;
                Ok(Some(backend.blob_router(key)))
            }
            #[cfg(feature = "aws")]
            Backend::Aws(_) => Ok(None),
        }
    }
}

/// The local backend of a function process ([`Platform::from_env`]):
/// opened on first use, so its cold start (and a health check) opens no
/// SQLite connection; and, since a function handles one invocation at a
/// time, its tables read query and scan pages on its own thread.
#[cfg(feature = "local")]
fn open_function_backend(
    dir: &std::path::Path,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<LocalBackend> {
    LocalBackend::open_on_first_use(dir, clock).map(LocalBackend::reading_pages_here)
}

/// A random key of this process's, for cursors that never leave it.
/// Straight from the OS: every function builds one at cold start, and the
/// thread generator's first use costs a CPU feature probe (see
/// [`crate::ids`]).
#[cfg(feature = "table")]
fn process_key() -> [u8; 32] {
    use rand::{RngCore as _, TryRngCore as _};
    let mut key = [0_u8; 32];
    rand::rngs::OsRng.unwrap_err().fill_bytes(&mut key);
    key
}

#[cfg(all(test, feature = "local"))]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A function process's backend opens nothing until used, and its
    /// tables read their pages on the caller's thread: a query outside any
    /// runtime is ready at the first poll (a hop to the blocking pool
    /// would panic there).
    #[test]
    fn a_function_backend_reads_its_pages_here() {
        use crate::table::{Query, Table as _};
        let dir = tempfile::tempdir().unwrap();
        let backend = open_function_backend(dir.path(), Arc::new(SystemClock)).unwrap();
        assert!(!dir.path().join("constellation.db").exists());
        let table = backend.table("t", [1; 32]);
        let query = Query::partition("p");
        let mut read = std::pin::pin!(table.query(&query));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::future::Future::poll(read.as_mut(), &mut cx) {
            std::task::Poll::Ready(page) => assert!(page.unwrap().items.is_empty()),
            std::task::Poll::Pending => panic!("a function's page went to the blocking pool"),
        }
    }

    /// Processes that find a local secret missing and generate it at once
    /// (functions starting together on a new data directory) all derive
    /// the key of the value stored first, not each its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn platforms_generating_a_missing_key_at_once_derive_the_same_one() {
        let dir = tempfile::tempdir().unwrap();
        let platforms: Vec<Platform> = (0..8)
            .map(|_| {
                Platform::local(
                    dir.path().to_owned(),
                    "http://127.0.0.1:3000".to_owned(),
                    Arc::new(SystemClock),
                )
                .unwrap()
            })
            .collect();
        let keys = futures::future::join_all(platforms.iter().map(|p| {
            let p = p.clone();
            tokio::spawn(async move { p.derived_key("race/key").await.unwrap() })
        }))
        .await;
        let keys: Vec<[u8; 32]> = keys.into_iter().map(Result::unwrap).collect();
        assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
        let stored = platforms[0]
            .uncached_secrets()
            .get("race/key")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            <[u8; 32]>::from(Sha256::digest(stored.expose().as_bytes())),
            keys[0]
        );
    }

    /// A key is never derived from an empty or short secret (one set by
    /// hand), which would make it guessable.
    #[tokio::test]
    async fn no_key_is_derived_from_a_short_secret() {
        let dir = tempfile::tempdir().unwrap();
        let platform = Platform::local(
            dir.path().to_owned(),
            "http://127.0.0.1:3000".to_owned(),
            Arc::new(SystemClock),
        )
        .unwrap();
        let secrets = platform.uncached_secrets();
        // One name per value: the platform caches what it read.
        for (i, short) in ["", "x", "fifteen-chars.."].into_iter().enumerate() {
            let name = format!("short/key-{i}");
            secrets
                .put(&name, &crate::secrets::SecretValue::new(short))
                .await
                .unwrap();
            let err = platform.derived_key(&name).await.unwrap_err();
            assert!(
                matches!(err, PlatformError::WeakSecret(_)),
                "{short:?}: {err}"
            );
        }
        secrets
            .put(
                "long/key",
                &crate::secrets::SecretValue::new("sixteen-chars..."),
            )
            .await
            .unwrap();
        platform.derived_key("long/key").await.unwrap();
    }
}

/// A local-only build (`--no-default-features --features local`, which
/// scripts/test runs this crate's unit tests in).
#[cfg(all(test, not(feature = "aws")))]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod local_only_tests {
    use super::*;

    /// Asked for the AWS backend, a build without it stops at start,
    /// naming the variable and the build that has the backend.
    #[test]
    fn the_aws_backend_is_refused_by_name() {
        let err = Platform::of_kind(BackendKind::Aws).unwrap_err();
        match err {
            PlatformError::Config(ConfigError::Invalid { name, reason }) => {
                assert_eq!(name, BACKEND_VAR);
                assert!(reason.contains("AWS backend"), "{reason}");
                assert!(reason.contains("default features"), "{reason}");
            }
            other => panic!("{other}"),
        }
    }
}
