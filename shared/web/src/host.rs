//! One description per service, and the hosts that loop over them.
//!
//! Each function crate exports one [`ServiceDef`]: its name (and so its path
//! prefix `/v1/<name>`), the resources it uses (each named by the environment
//! variable template.yaml sets), how to build its router, its queue
//! consumers, its schedules, the event types routed to its queues, and its
//! OpenAPI document. `constellation serve`, `constellation openapi`,
//! `serve --provision`, `constellation run` and the tests loop over the one
//! list of these in the root crate; the Lambda `main`s call [`lambda_http`],
//! [`lambda_worker`] or [`lambda_schedule`] with the same description, so
//! a function builds exactly what `serve` builds for that part.
//!
//! A Lambda's cold start does no I/O beyond what the platform needs to open:
//! the token verifier and the tables a builder asks for read their secrets
//! on first use ([`Context::verifier`], [`Context::table`]), so a health
//! check reads none and a request reads only what it needs, concurrently
//! when it needs several. The accessors of optional ports exist with this
//! crate's feature of the same name (`table`, `blob`, `queue`, `bus`,
//! `mail`), mirroring `constellation-platform`'s; `provision` with its.
//!
//! The `main`s run on tokio's current-thread runtime. A sandbox handles one
//! invocation at a time, so a multi-thread scheduler's workers (one per
//! core, started before the first line of `main`) bought nothing but their
//! start: about 0.3 ms of every cold start. Work that blocks (password
//! hashing, image decoding, SQLite writes, file I/O) already runs on the
//! blocking pool or the writer's thread, and concurrent awaits (a relay's
//! shards, a batch's records) still overlap their I/O. `serve` keeps the
//! multi-thread runtime: it serves every caller at once.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
#[cfg(feature = "queue")]
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
#[cfg(feature = "provision")]
use constellation_platform::SecretValue;
#[cfg(feature = "provision")]
use constellation_platform::aws::AwsBackend;
use constellation_platform::config::{BackendKind, ConfigError, Platform, optional, required};
#[cfg(feature = "bus")]
use constellation_platform::events::EventBus;
use constellation_platform::events::Route;
use constellation_platform::observe::{MetricsSink, init_tracing};
#[cfg(feature = "queue")]
use constellation_platform::queue::Queue;
use constellation_platform::queue::QueueSpec;
use constellation_platform::schedule::{ScheduleExpr, ScheduledEvent, ScheduledHandler};
#[cfg(feature = "table")]
use constellation_platform::table::Table;
use constellation_platform::tokens::{TokenVerifier, VerifierConfig};
use constellation_platform::worker::RecordHandler;
#[cfg(feature = "queue")]
use constellation_platform::worker::Worker;

/// A boxed future borrowing the context, as the builders return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The variable naming the event bus every service publishes on.
pub const EVENT_BUS_VAR: &str = "EVENT_BUS_NAME";
/// The bus's local name, and the name `--provision` creates.
pub const DEFAULT_EVENT_BUS: &str = "constellation";

/// What kind of resource a variable names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    /// A DynamoDB table (a slice of the SQLite database locally).
    Table,
    /// An SQS queue with a dead-letter queue named `<name>-dlq`; the value
    /// is the queue URL in AWS, its name locally.
    Queue {
        /// How long a received message stays hidden.
        visibility_timeout_secs: u64,
        /// Receives before SQS moves a message to the dead-letter queue.
        max_receives: u32,
    },
    /// The dead-letter queue of the queue named by the variable `of`.
    DeadLetterQueue {
        /// The variable of the source queue.
        of: &'static str,
    },
    /// A Secrets Manager secret holding a random key (generated when provisioned).
    GeneratedSecret,
    /// The EventBridge bus.
    EventBus,
    /// An S3 bucket (a directory of the data dir locally).
    Bucket {
        /// Announce objects created under a prefix on a queue (S3 event
        /// notifications in AWS; the local blob store sends the same event).
        notify: Option<BucketNotify>,
    },
    /// The address mail is sent from: an SES identity in AWS (provisioned
    /// under the default address; a deployment sets its own verified
    /// address), the default locally, where mail goes to the data
    /// directory's `mail/` ([`Context::mailer`]).
    MailSender,
}

/// A bucket's notifications as `(prefix, queue reference)` pairs.
pub type Notifications = Vec<(String, String)>;

/// An S3 event notification: objects created under `prefix` are announced
/// on the queue named by the variable `queue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketNotify {
    /// The variable of the queue.
    pub queue: &'static str,
    /// The key prefix (`uploads/`).
    pub prefix: &'static str,
}

/// One resource a service uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceDef {
    /// The environment variable naming it (what template.yaml sets).
    pub var: &'static str,
    /// Its name locally, and the name `serve --backend aws --provision` creates.
    pub default: &'static str,
    /// What it is.
    pub kind: ResourceKind,
}

impl ResourceDef {
    /// The queue shape of a [`ResourceKind::Queue`] named `name`.
    pub fn queue_spec(&self, name: &str) -> Option<QueueSpec> {
        match self.kind {
            ResourceKind::Queue {
                visibility_timeout_secs,
                max_receives,
            } => Some(QueueSpec::with_dlq(
                name,
                Duration::from_secs(visibility_timeout_secs),
                max_receives,
            )),
            _ => None,
        }
    }
}

/// The bus resource, for services that publish.
pub const EVENT_BUS: ResourceDef = ResourceDef {
    var: EVENT_BUS_VAR,
    default: DEFAULT_EVENT_BUS,
    kind: ResourceKind::EventBus,
};

/// Event types routed to one of the service's queues (an EventBridge rule in
/// template.yaml; a stored route locally).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionDef {
    /// The variable of the queue.
    pub queue: &'static str,
    /// The event types it receives.
    pub events: &'static [&'static str],
}

/// Builds a part of a service from its context.
pub type Build<T> = for<'a> fn(&'a Context) -> BoxFuture<'a, anyhow::Result<T>>;

/// A queue consumer: a Lambda function with an SQS event source mapping in
/// AWS, a runner task in `serve`.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerDef {
    /// The worker's name: its Lambda binary in template.yaml.
    pub name: &'static str,
    /// The variable of the queue it consumes.
    pub queue: &'static str,
    /// The variable of that queue's dead-letter queue.
    pub dead_letter: &'static str,
    /// Records per batch (the event source mapping's `BatchSize`).
    pub batch_size: u32,
    /// Builds the record handler.
    pub handler: Build<Arc<dyn RecordHandler>>,
}

/// A schedule: an EventBridge Scheduler schedule in AWS, a timer in `serve`,
/// and `constellation run <name>` by hand.
#[derive(Debug, Clone, Copy)]
pub struct ScheduleDef {
    /// The schedule's name (the `schedule` of its [`ScheduledEvent`]).
    pub name: &'static str,
    /// The Lambda binary that runs it in template.yaml; one function may
    /// run several schedules of its service, told apart by the event's
    /// `schedule`.
    pub function: &'static str,
    /// `rate(...)` or `cron(...)`, exactly as template.yaml's `ScheduleExpression`.
    pub expression: &'static str,
    /// Builds the handler.
    pub handler: Build<Arc<dyn ScheduledHandler>>,
}

impl ScheduleDef {
    /// Builds the handler, counted and traced
    /// ([`constellation_platform::schedule::observed`]): what `serve`, Lambda
    /// and `constellation run` run.
    pub async fn build(&self, ctx: &Context) -> anyhow::Result<Arc<dyn ScheduledHandler>> {
        let handler = (self.handler)(ctx).await?;
        Ok(constellation_platform::schedule::observed(
            self.name,
            handler,
            ctx.metrics.clone(),
        ))
    }
}

/// Everything the hosts need to know about one service.
#[derive(Debug, Clone, Copy)]
pub struct ServiceDef {
    /// The name; the routes live under `/v1/<name>`.
    pub name: &'static str,
    /// Every resource it uses.
    pub resources: &'static [ResourceDef],
    /// Builds the complete HTTP application (with the shared layers).
    pub app: Build<axum::Router>,
    /// Its queue consumers.
    pub consumers: &'static [ConsumerDef],
    /// Its schedules.
    pub schedules: &'static [ScheduleDef],
    /// The event types routed to its queues.
    pub subscriptions: &'static [SubscriptionDef],
    /// Its OpenAPI document.
    pub openapi: fn() -> utoipa::openapi::OpenApi,
}

/// Resolved resource references, by variable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources(BTreeMap<&'static str, String>);

impl Resources {
    /// Reads `defs` from the environment: in AWS every variable is required;
    /// locally each falls back to its default.
    pub fn from_env(defs: &[ResourceDef], kind: BackendKind) -> Result<Self, ConfigError> {
        let mut map = BTreeMap::new();
        for def in defs {
            let value = match kind {
                BackendKind::Aws => required(def.var)?,
                BackendKind::Local => optional(def.var).unwrap_or_else(|| local_name(def, defs)),
            };
            map.insert(def.var, value);
        }
        Ok(Self(map))
    }

    /// Sets one reference (tests and provisioning).
    pub fn set(&mut self, var: &'static str, value: impl Into<String>) {
        self.0.insert(var, value.into());
    }

    /// The reference named by `var`.
    pub fn get(&self, var: &'static str) -> Result<&str, ConfigError> {
        self.0
            .get(var)
            .map(String::as_str)
            .ok_or(ConfigError::Missing(var))
    }

    /// The queue's name: the last segment of a queue URL, or the name itself.
    pub fn queue_name(&self, var: &'static str) -> Result<&str, ConfigError> {
        let value = self.get(var)?;
        Ok(value.rsplit('/').next().unwrap_or(value))
    }
}

/// The local name of `def`: its default, or for a dead-letter queue the
/// source queue's name with `-dlq`.
fn local_name(def: &ResourceDef, defs: &[ResourceDef]) -> String {
    match def.kind {
        ResourceKind::DeadLetterQueue { of } => {
            let source = defs
                .iter()
                .find(|d| d.var == of)
                .map(|d| optional(d.var).unwrap_or_else(|| d.default.to_owned()))
                .unwrap_or_else(|| def.default.to_owned());
            format!("{source}-dlq")
        }
        _ => def.default.to_owned(),
    }
}

/// What every part of a service is built from.
#[derive(Debug, Clone)]
pub struct Context {
    /// The ports.
    pub platform: Platform,
    /// The service's resources.
    pub resources: Resources,
    /// Where metrics go.
    pub metrics: MetricsSink,
    /// Which tokens the services accept, and where the public keys are.
    pub tokens: VerifierConfig,
    verifier: Arc<OnceLock<Arc<TokenVerifier>>>,
}

impl Context {
    /// A context over `platform` with `resources`.
    pub fn new(
        platform: Platform,
        resources: Resources,
        metrics: MetricsSink,
        tokens: VerifierConfig,
    ) -> Self {
        Self {
            platform,
            resources,
            metrics,
            tokens,
            verifier: Arc::default(),
        }
    }

    /// The same context for another service's resources, sharing the verifier
    /// (one process verifies with one key set, as one Lambda does).
    pub fn for_service(&self, resources: Resources) -> Self {
        Self {
            resources,
            ..self.clone()
        }
    }

    /// The token verifier, one per context and the services sharing it. It
    /// reads the public key set when it first verifies a token
    /// ([`TokenVerifier::on_first_use`]), so getting it does no I/O and
    /// cannot fail; the `Result` keeps builders' `?` unchanged.
    pub async fn verifier(&self) -> anyhow::Result<Arc<TokenVerifier>> {
        Ok(self
            .verifier
            .get_or_init(|| TokenVerifier::on_first_use(&self.platform, &self.tokens))
            .clone())
    }

    /// The reference named by `var`.
    pub fn resource(&self, var: &'static str) -> Result<&str, ConfigError> {
        self.resources.get(var)
    }

    /// The table named by `var`, with cursors sealed by the secret named by
    /// `cursor_var`; the secret is read by the table's first query or scan
    /// ([`Platform::table_on_first_use`]), so only a missing variable fails here.
    #[cfg(feature = "table")]
    pub async fn table(
        &self,
        var: &'static str,
        cursor_var: &'static str,
    ) -> anyhow::Result<Arc<dyn Table>> {
        Ok(self
            .platform
            .table_on_first_use(self.resource(var)?, self.resource(cursor_var)?))
    }

    /// The queue named by `var`.
    #[cfg(feature = "queue")]
    pub fn queue(&self, var: &'static str) -> anyhow::Result<Arc<dyn Queue>> {
        Ok(self.platform.queue(self.resource(var)?))
    }

    /// The bucket named by `var`.
    #[cfg(feature = "blob")]
    pub async fn blob_store(
        &self,
        var: &'static str,
    ) -> anyhow::Result<Arc<dyn constellation_platform::blob::BlobStore>> {
        Ok(self.platform.blob_store(self.resource(var)?).await?)
    }

    /// The mailer (SES v2 in AWS, the data directory's `mail/` locally);
    /// the sender address is the service's [`ResourceKind::MailSender`].
    #[cfg(feature = "mail")]
    pub fn mailer(&self) -> Arc<dyn constellation_platform::mail::Mailer> {
        self.platform.mailer()
    }

    /// The event bus (the service must list [`EVENT_BUS`]).
    #[cfg(feature = "bus")]
    pub fn event_bus(&self) -> anyhow::Result<Arc<dyn EventBus>> {
        Ok(self.platform.event_bus(self.resource(EVENT_BUS_VAR)?))
    }

    /// The outbox of `service`'s table (opened as `table_name`) publishing
    /// on `bus`, counting the events it commits in this context's metrics.
    #[cfg(all(feature = "table", feature = "bus"))]
    pub fn outbox(
        &self,
        service: &'static str,
        table_name: &str,
        table: Arc<dyn Table>,
        bus: &str,
    ) -> constellation_platform::outbox::Outbox {
        self.platform
            .outbox(table_name, table, bus)
            .with_metrics(self.metrics.clone(), service)
    }

    /// The worker of `consumer`, ready for batches.
    #[cfg(feature = "queue")]
    pub async fn worker(&self, consumer: &ConsumerDef) -> anyhow::Result<Worker> {
        let handler = (consumer.handler)(self).await?;
        Ok(Worker::new(
            consumer.name,
            handler,
            self.queue(consumer.dead_letter)?,
            self.metrics.clone(),
        ))
    }
}

impl ServiceDef {
    /// The consumer named `name`.
    pub fn consumer(&self, name: &str) -> Option<&ConsumerDef> {
        self.consumers.iter().find(|c| c.name == name)
    }

    /// The schedule named `name`.
    pub fn schedule(&self, name: &str) -> Option<&ScheduleDef> {
        self.schedules.iter().find(|s| s.name == name)
    }

    /// The routes of its subscriptions, with queue names from `resources`.
    pub fn routes(&self, resources: &Resources) -> Result<Vec<Route>, ConfigError> {
        let mut routes = Vec::new();
        for sub in self.subscriptions {
            let queue = resources.queue_name(sub.queue)?;
            routes.extend(sub.events.iter().map(|e| Route::new(*e, queue)));
        }
        Ok(routes)
    }

    /// The event notifications of its buckets: for each bucket, its name and
    /// its `(prefix, queue reference)` pairs, resolved from `resources`.
    pub fn bucket_notifications(
        &self,
        resources: &Resources,
    ) -> Result<Vec<(String, Notifications)>, ConfigError> {
        let mut out = Vec::new();
        for def in self.resources {
            if let ResourceKind::Bucket { notify: Some(n) } = def.kind {
                out.push((
                    resources.get(def.var)?.to_owned(),
                    vec![(n.prefix.to_owned(), resources.get(n.queue)?.to_owned())],
                ));
            }
        }
        Ok(out)
    }

    /// Checks the description itself: every variable a consumer, schedule or
    /// subscription names is a resource, and every expression parses.
    pub fn validate(&self) -> anyhow::Result<()> {
        let known = |var: &str| self.resources.iter().any(|r| r.var == var);
        for c in self.consumers {
            anyhow::ensure!(
                known(c.queue) && known(c.dead_letter),
                "{}: consumer {} names an undeclared queue",
                self.name,
                c.name
            );
            anyhow::ensure!(
                (1..=10).contains(&c.batch_size),
                "{}: batch size of {} must be 1 to 10",
                self.name,
                c.name
            );
        }
        for s in self.schedules {
            s.expression
                .parse::<ScheduleExpr>()
                .with_context(|| format!("{}: schedule {}", self.name, s.name))?;
        }
        for def in self.resources {
            if let ResourceKind::Bucket { notify: Some(n) } = def.kind {
                anyhow::ensure!(
                    known(n.queue),
                    "{}: bucket {} notifies an undeclared queue {}",
                    self.name,
                    def.var,
                    n.queue
                );
            }
        }
        for sub in self.subscriptions {
            anyhow::ensure!(
                known(sub.queue),
                "{}: a subscription names an undeclared queue {}",
                self.name,
                sub.queue
            );
        }
        Ok(())
    }
}

/// Creates every resource of `defs` that is missing, under its default
/// name, in the shape template.yaml gives it, and returns the references
/// (queue URLs) to use. Existing resources are left as they are.
#[cfg(feature = "provision")]
pub async fn provision(aws: &AwsBackend, defs: &[ResourceDef]) -> anyhow::Result<Resources> {
    let mut out = Resources::default();
    for def in defs {
        let value = match def.kind {
            ResourceKind::Table => {
                aws.ensure_table(def.default).await?;
                def.default.to_owned()
            }
            ResourceKind::Queue { .. } => match def.queue_spec(def.default) {
                Some(spec) => aws.ensure_queue(&spec).await?,
                None => continue,
            },
            ResourceKind::DeadLetterQueue { .. } => continue,
            ResourceKind::GeneratedSecret => {
                let key = hex_key();
                aws.ensure_secret(def.default, &SecretValue::new(key))
                    .await?;
                def.default.to_owned()
            }
            ResourceKind::EventBus => {
                aws.ensure_event_bus(def.default).await?;
                def.default.to_owned()
            }
            ResourceKind::Bucket { .. } => {
                aws.ensure_bucket(def.default).await?;
                def.default.to_owned()
            }
            ResourceKind::MailSender => {
                aws.ensure_email_identity(def.default).await?;
                def.default.to_owned()
            }
        };
        out.set(def.var, value);
    }
    // Notifications name queues, which exist by now.
    for def in defs {
        if let ResourceKind::Bucket { notify: Some(n) } = def.kind {
            let url = out.get(n.queue)?.to_owned();
            aws.ensure_bucket_notifications(def.default, &[(n.prefix.to_owned(), url)])
                .await?;
        }
    }
    // Dead-letter queues exist once their source queue does.
    for def in defs {
        if let ResourceKind::DeadLetterQueue { .. } = def.kind {
            let name = provisioned_name(def, defs);
            out.set(def.var, aws.queue_url(&name).await?);
        }
    }
    Ok(out)
}

/// The references [`provision`] would return, creating nothing: every
/// resource of `defs` under the name `provision` gives it, queues and
/// dead-letter queues as their URLs (looked up in the account). A missing
/// queue is an error naming it; other kinds are not looked up.
#[cfg(feature = "provision")]
pub async fn look_up(aws: &AwsBackend, defs: &[ResourceDef]) -> anyhow::Result<Resources> {
    let mut out = Resources::default();
    for def in defs {
        let name = provisioned_name(def, defs);
        let value = match def.kind {
            ResourceKind::Queue { .. } | ResourceKind::DeadLetterQueue { .. } => aws
                .find_queue_url(&name)
                .await
                .with_context(|| format!("looking up the URL of queue {name}"))?
                .with_context(|| {
                    format!(
                        "there is no SQS queue {name} in this account and region: \
                         `--provision` creates the missing resources"
                    )
                })?,
            _ => name,
        };
        out.set(def.var, value);
    }
    Ok(out)
}

/// The name [`provision`] gives `def`: its default, or for a dead-letter
/// queue its source queue's default with `-dlq` (never the environment's
/// value, which in AWS is a URL).
#[cfg(feature = "provision")]
fn provisioned_name(def: &ResourceDef, defs: &[ResourceDef]) -> String {
    match def.kind {
        ResourceKind::DeadLetterQueue { of } => defs
            .iter()
            .find(|d| d.var == of)
            .and_then(|d| d.queue_spec(d.default))
            .and_then(|spec| spec.dead_letter)
            .unwrap_or_else(|| def.default.to_owned()),
        _ => def.default.to_owned(),
    }
}

#[cfg(feature = "provision")]
fn hex_key() -> String {
    use rand::RngCore as _;
    let mut raw = [0_u8; 32];
    rand::rng().fill_bytes(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds what every Lambda main needs: tracing, the platform from the
/// environment, and the service's context.
async fn lambda_context(def: &ServiceDef) -> anyhow::Result<Context> {
    init_tracing();
    let platform = Platform::from_env().await?;
    let resources = Resources::from_env(def.resources, platform.kind())?;
    Ok(Context::new(
        platform,
        resources,
        MetricsSink::stdout(),
        VerifierConfig::from_env()?,
    ))
}

/// The `main` of a service's HTTP function: builds its app once at cold
/// start and serves API Gateway events with it.
pub async fn lambda_http(def: &ServiceDef) -> Result<(), lambda_http::Error> {
    let ctx = lambda_context(def).await?;
    let app = (def.app)(&ctx).await?;
    lambda_http::run(app).await
}

/// The `main` of a worker function: SQS batches in, partial batch failures out.
#[cfg(feature = "queue")]
pub async fn lambda_worker(def: &ServiceDef, name: &str) -> Result<(), lambda_runtime::Error> {
    let consumer = def
        .consumer(name)
        .with_context(|| format!("{} has no consumer {name}", def.name))?;
    let ctx = lambda_context(def).await?;
    let worker = &ctx.worker(consumer).await?;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<SqsEvent>| async move {
            Ok::<SqsBatchResponse, lambda_runtime::Error>(worker.handle_batch(event.payload).await)
        },
    ))
    .await
}

/// The `main` of a scheduled function: runs, for each EventBridge
/// Scheduler invocation, the handler of the schedule the event names (one
/// function may run several schedules; an event naming none goes to the
/// function's only schedule). An error fails the invocation (and Scheduler
/// retries it).
pub async fn lambda_schedule(
    def: &ServiceDef,
    function: &str,
) -> Result<(), lambda_runtime::Error> {
    let schedules: Vec<&ScheduleDef> = def
        .schedules
        .iter()
        .filter(|s| s.function == function)
        .collect();
    if schedules.is_empty() {
        return Err(format!("{} has no schedule run by {function}", def.name).into());
    }
    let ctx = lambda_context(def).await?;
    let mut handlers = Vec::with_capacity(schedules.len());
    for s in &schedules {
        handlers.push((s.name, s.build(&ctx).await?));
    }
    let handlers = &handlers;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<ScheduledEvent>| async move {
            let handler = match (event.payload.schedule.as_str(), handlers.as_slice()) {
                ("", [(_, only)]) => only,
                (name, _) => {
                    &handlers
                        .iter()
                        .find(|(n, _)| *n == name)
                        .ok_or_else(|| -> lambda_runtime::Error {
                            format!("this function runs no schedule `{name}`").into()
                        })?
                        .1
                }
            };
            handler
                .run(event.payload)
                .await
                .map_err(|e| -> lambda_runtime::Error { e.into() })
        },
    ))
    .await
}
