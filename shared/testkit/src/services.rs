//! Whole services on one test platform, from their descriptions: every
//! resource a [`ServiceDef`] declares is created (on AWS under names unique
//! to the test; locally under its default names in the test's fresh data
//! directory), the bus routes and bucket notifications are set as `serve`
//! sets them, each service's app is built, and [`TestServices::pump`]
//! drives every consumer until its queue is quiet, the way the runner or an
//! SQS event source mapping would, but deterministically.
//!
//! Services that share a resource (expenses uploads into media's bucket)
//! share it here too: a default name maps to the same resource for every
//! service of the platform.

use std::collections::BTreeMap;
use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context as _;
use constellation_platform::SecretValue;
use constellation_platform::observe::MetricsSink;
use constellation_platform::queue::QueueReceiver;
use constellation_platform::runner::to_sqs_event;
use constellation_platform::worker::Worker;
use constellation_web::ServiceDef;
use constellation_web::host::{Context, EVENT_BUS_VAR, ResourceKind, Resources};
use std::sync::Arc;
use tower::ServiceExt as _;

use crate::http::{TestPlatform, TestTokens};

/// One consumer, ready to be pumped.
#[derive(Debug)]
struct Consumer {
    name: &'static str,
    batch_size: u32,
    worker: Worker,
    receiver: Arc<dyn QueueReceiver>,
}

/// Services built on one test platform.
#[derive(Debug)]
pub struct TestServices {
    /// Each service's context, by service name.
    pub contexts: BTreeMap<&'static str, Context>,
    /// Each service's complete app, by service name.
    pub apps: BTreeMap<&'static str, axum::Router>,
    /// Tokens the apps accept.
    pub tokens: TestTokens,
    consumers: Vec<Consumer>,
}

/// The name a resource's default gets on this platform.
fn resolved(env: &TestPlatform, default: &str) -> String {
    match env.aws_backend() {
        None => default.to_owned(),
        Some(_) => env.name(default),
    }
}

impl TestServices {
    /// Creates every resource of `services` on `env` and builds their apps and workers.
    pub async fn start(env: &TestPlatform, services: &[&ServiceDef]) -> anyhow::Result<Self> {
        let tokens = TestTokens::new(env).await;
        let mut contexts = BTreeMap::new();
        let mut routes = Vec::new();
        let mut bus = None;
        let mut notifications: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        let mut made: HashSet<String> = HashSet::new();
        for def in services {
            def.validate()?;
            let mut resources = Resources::default();
            for r in def.resources {
                let name = resolved(env, r.default);
                let value = match (env.aws_backend(), r.kind) {
                    (_, ResourceKind::DeadLetterQueue { .. }) => continue,
                    // An address, not a name to make unique.
                    (None, ResourceKind::MailSender) => r.default.to_owned(),
                    (Some(aws), ResourceKind::MailSender) => {
                        if made.insert(format!("MailSender/{}", r.default)) {
                            aws.ensure_email_identity(r.default).await?;
                        }
                        r.default.to_owned()
                    }
                    (None, _) => name.clone(),
                    (Some(aws), kind) => {
                        let first = made.insert(format!("{kind:?}/{name}"));
                        match kind {
                            ResourceKind::Table if first => {
                                aws.ensure_table(&name).await?;
                                name.clone()
                            }
                            ResourceKind::Queue { .. } => match r.queue_spec(&name) {
                                Some(spec) => aws.ensure_queue(&spec).await?,
                                None => continue,
                            },
                            ResourceKind::GeneratedSecret if first => {
                                aws.ensure_secret(&name, &SecretValue::new(env.name("key")))
                                    .await?;
                                name.clone()
                            }
                            ResourceKind::EventBus if first => {
                                aws.ensure_event_bus(&name).await?;
                                name.clone()
                            }
                            ResourceKind::Bucket { .. } if first => {
                                aws.ensure_bucket(&name).await?;
                                name.clone()
                            }
                            _ => name.clone(),
                        }
                    }
                };
                resources.set(r.var, value);
            }
            for r in def.resources {
                if let ResourceKind::DeadLetterQueue { of } = r.kind {
                    let source = def
                        .resources
                        .iter()
                        .find(|s| s.var == of)
                        .context("a dead-letter queue of an undeclared queue")?;
                    let name = format!("{}-dlq", resolved(env, source.default));
                    let value = match env.aws_backend() {
                        None => name,
                        Some(aws) => aws.queue_url(&name).await?,
                    };
                    resources.set(r.var, value);
                }
            }
            routes.extend(def.routes(&resources)?);
            if let Ok(name) = resources.get(EVENT_BUS_VAR) {
                bus = Some(name.to_owned());
            }
            for (bucket, list) in def.bucket_notifications(&resources)? {
                notifications.entry(bucket).or_default().extend(list);
            }
            let ctx = Context::new(
                env.platform.clone(),
                resources,
                MetricsSink::discard(),
                tokens.config.clone(),
            );
            contexts.insert(def.name, ctx);
        }
        match env.aws_backend() {
            None => {
                let local = env
                    .platform
                    .local_backend()
                    .context("a local platform without its backend")?;
                if let Some(bus) = &bus {
                    local.set_routes(bus, &routes).await?;
                }
                for (bucket, list) in &notifications {
                    let by_name: Vec<(String, String)> = list.clone();
                    local.set_bucket_notifications(bucket, &by_name).await?;
                }
            }
            Some(aws) => {
                if let Some(bus) = &bus {
                    aws.ensure_routes(bus, &routes).await?;
                }
                for (bucket, list) in &notifications {
                    aws.ensure_bucket_notifications(bucket, list).await?;
                }
            }
        }
        let mut apps = BTreeMap::new();
        let mut consumers = Vec::new();
        for def in services {
            let ctx = &contexts[def.name];
            apps.insert(
                def.name,
                (def.app)(ctx)
                    .await
                    .with_context(|| format!("building {}", def.name))?,
            );
            for c in def.consumers {
                let spec = def
                    .resources
                    .iter()
                    .find(|r| r.var == c.queue)
                    .and_then(|r| r.queue_spec(ctx.resources.queue_name(c.queue).unwrap_or("")))
                    .context("a consumer of a queue that is not one")?;
                consumers.push(Consumer {
                    name: c.name,
                    batch_size: c.batch_size,
                    worker: ctx.worker(c).await?,
                    receiver: env.platform.receiver(&spec, ctx.resource(c.queue)?).await?,
                });
            }
        }
        Ok(Self {
            contexts,
            apps,
            tokens,
            consumers,
        })
    }

    /// The app of service `name`.
    pub fn app(&self, name: &str) -> axum::Router {
        self.apps
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("no service {name} was started"))
    }

    /// One router for every started service, each app seeing the requests
    /// under its `/v1/<name>` prefix exactly as sent (as `serve` mounts them).
    pub fn router(&self) -> axum::Router {
        let apps: Arc<Vec<(String, axum::Router)>> = Arc::new(
            self.apps
                .iter()
                .map(|(name, app)| (format!("/v1/{name}"), app.clone()))
                .collect(),
        );
        let dispatch = tower::service_fn(move |req: axum::extract::Request| {
            let apps = apps.clone();
            async move {
                let path = req.uri().path().to_owned();
                let owner = apps.iter().find(|(prefix, _)| {
                    path.strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
                });
                match owner {
                    Some((_, app)) => app.clone().oneshot(req).await,
                    None => Ok(axum::response::IntoResponse::into_response(
                        http::StatusCode::NOT_FOUND,
                    )),
                }
            }
        });
        axum::Router::new().fallback_service(dispatch)
    }

    /// The context of service `name`.
    pub fn context(&self, name: &str) -> &Context {
        self.contexts
            .get(name)
            .unwrap_or_else(|| panic!("no service {name} was started"))
    }

    /// Hands every consumer its queue's messages, batch by batch, deleting
    /// what the worker did not report as failed, until a whole round finds
    /// every queue empty. Returns how many messages were handled; failed
    /// ones stay (hidden for the queue's visibility timeout).
    pub async fn pump(&self) -> anyhow::Result<usize> {
        self.pump_times(1).await
    }

    /// [`TestServices::pump`], handing every batch to its worker twice
    /// before deleting it: every message is delivered twice, as SQS may.
    pub async fn pump_twice(&self) -> anyhow::Result<usize> {
        self.pump_times(2).await
    }

    async fn pump_times(&self, deliveries: usize) -> anyhow::Result<usize> {
        let mut handled = 0;
        for _round in 0..50 {
            let mut got_any = false;
            for c in &self.consumers {
                let messages = c
                    .receiver
                    .receive(c.batch_size, Duration::from_millis(200))
                    .await?;
                if messages.is_empty() {
                    continue;
                }
                got_any = true;
                let mut failed: HashSet<String> = HashSet::new();
                for _ in 0..deliveries {
                    let event = to_sqs_event(c.receiver.source_arn(), &messages);
                    let response = c.worker.handle_batch(event).await;
                    failed.extend(
                        response
                            .batch_item_failures
                            .into_iter()
                            .map(|f| f.item_identifier),
                    );
                }
                for m in &messages {
                    if failed.contains(&m.message_id) {
                        tracing::info!(consumer = c.name, id = %m.message_id, "record failed; left for redelivery");
                    } else {
                        c.receiver.delete(&m.receipt_handle).await?;
                        handled += 1;
                    }
                }
            }
            if !got_any {
                return Ok(handled);
            }
        }
        anyhow::bail!("the queues did not go quiet after 50 rounds")
    }
}
