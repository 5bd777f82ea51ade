//! `constellation serve`: the whole system in one process.
//!
//! Everything here loops over the one list of services ([`crate::SERVICES`]):
//! each service's resources are resolved (or provisioned), its app is mounted
//! at `/v1/<name>` as API Gateway routes `/v1/<name>/{proxy+}` to its
//! function, the bus routes its subscriptions, each consumer runs over its
//! queue with the same batch handler Lambda calls, and each schedule runs at
//! the expression template.yaml gives EventBridge Scheduler.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use constellation_auth::signing::{SigningConfig, ensure_keys};
use constellation_platform::QueueAdmin;
use constellation_platform::aws::AwsBackend;
use constellation_platform::clock::SystemClock;
use constellation_platform::config::{BackendKind, Platform};
use constellation_platform::events::Route;
use constellation_platform::observe::{MetricsSink, error_chain};
use constellation_platform::prometheus::{Gauge, Registry};
use constellation_platform::runner::{run_consumer, run_schedule};
use constellation_platform::schedule::ScheduleExpr;
use constellation_platform::tokens::VerifierConfig;
use constellation_web::ServiceDef;
use constellation_web::error::{ProblemType, problem_response};
use constellation_web::host::{self, Context, EVENT_BUS_VAR, ResourceKind, Resources};
use constellation_web::throttle::{PLATFORM_LIMITS, Throttle};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt as _;

/// How `serve` runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Where to listen.
    pub addr: SocketAddr,
    /// Which backend.
    pub backend: BackendKind,
    /// The local data directory.
    pub data_dir: PathBuf,
    /// Create missing AWS resources first (`--backend aws` only).
    pub provision: bool,
    /// Talk to this AWS endpoint (an emulator) instead of the configured one.
    pub aws_endpoint: Option<String>,
    /// Print CloudWatch EMF metric lines to stdout (`GET /metrics` shows
    /// the same metrics either way).
    pub emf: bool,
    /// Apply API Gateway's route limits per caller ([`PLATFORM_LIMITS`]).
    pub rate_limits: bool,
}

/// A bound, ready server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    app: axum::Router,
    /// Checkpointed at shutdown (the local backend).
    platform: Platform,
    background: JoinSet<()>,
    stop: watch::Sender<bool>,
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
}

/// The platform `config` asks for; `public_url` is where local presigned
/// blob URLs point.
pub async fn platform(config: &ServeConfig, public_url: String) -> anyhow::Result<Platform> {
    let clock = Arc::new(SystemClock);
    Ok(match config.backend {
        BackendKind::Local => Platform::local(config.data_dir.clone(), public_url, clock)?,
        BackendKind::Aws => Platform::aws(
            AwsBackend::connect(config.aws_endpoint.as_deref()).await,
            clock,
        ),
    })
}

/// The resources of `service` from the environment (defaults locally).
pub fn resources(platform: &Platform, service: &ServiceDef) -> anyhow::Result<Resources> {
    Ok(Resources::from_env(service.resources, platform.kind())?)
}

/// What `--provision` creates in AWS before anything runs: the token
/// signing keys (`tokens` names their secrets), every resource of
/// `services` under its default name ([`host::provision`]), and the bus's
/// rules routing each subscription to its queue. Returns each service's
/// resources, in the order of `services`.
pub async fn provision(
    aws: &AwsBackend,
    services: &[&ServiceDef],
    tokens: &VerifierConfig,
) -> anyhow::Result<Vec<Resources>> {
    let signing = SigningConfig::for_verifier(tokens.clone())?;
    ensure_keys(&aws.secrets(), &signing, &SystemClock).await?;
    let mut all = Vec::with_capacity(services.len());
    let mut routes = Vec::new();
    let mut bus = None;
    for service in services {
        service.validate()?;
        let resources = host::provision(aws, service.resources)
            .await
            .with_context(|| format!("provisioning {}", service.name))?;
        routes.extend(service.routes(&resources)?);
        if let Ok(name) = resources.get(EVENT_BUS_VAR) {
            bus = Some(name.to_owned());
        }
        all.push(resources);
    }
    if let Some(bus) = &bus {
        aws.ensure_routes(bus, &routes).await?;
    }
    Ok(all)
}

impl Server {
    /// Opens the backend, builds every service and binds the listener.
    pub async fn bind(config: &ServeConfig) -> anyhow::Result<Self> {
        Self::bind_services(config, crate::SERVICES).await
    }

    /// [`Server::bind`] over another list of services (tests add sample ones).
    pub async fn bind_services(
        config: &ServeConfig,
        services: &[&ServiceDef],
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("bind {}", config.addr))?;
        let local_addr = listener.local_addr()?;
        let platform = platform(config, format!("http://{local_addr}")).await?;
        let token_config = VerifierConfig::from_env()?;
        let provisioned = match config.backend {
            BackendKind::Aws if config.provision => {
                let aws = AwsBackend::connect(config.aws_endpoint.as_deref()).await;
                Some(provision(&aws, services, &token_config).await?)
            }
            _ => None,
        };
        let registry = Arc::new(Registry::new());
        let metrics = if config.emf {
            MetricsSink::stdout()
        } else {
            MetricsSink::discard()
        }
        .with_registry(registry.clone());
        let base = Context::new(
            platform.clone(),
            Resources::default(),
            metrics,
            token_config,
        );

        let mut contexts = Vec::with_capacity(services.len());
        let mut routes: Vec<Route> = Vec::new();
        let mut bus = None;
        for (i, service) in services.iter().enumerate() {
            service.validate()?;
            let resources = match provisioned.as_ref().and_then(|p| p.get(i)) {
                Some(provisioned) => provisioned.clone(),
                None => resources(&platform, service)?,
            };
            let ctx = base.for_service(resources);
            routes.extend(service.routes(&ctx.resources)?);
            if let Some(local) = platform.local_backend() {
                for (bucket, notifications) in service.bucket_notifications(&ctx.resources)? {
                    let by_name = notifications
                        .into_iter()
                        .map(|(prefix, queue)| {
                            let name = queue.rsplit('/').next().unwrap_or(&queue).to_owned();
                            (prefix, name)
                        })
                        .collect::<Vec<_>>();
                    local.set_bucket_notifications(&bucket, &by_name).await?;
                }
            }
            if let Ok(name) = ctx.resources.get(EVENT_BUS_VAR) {
                bus = Some(name.to_owned());
            }
            contexts.push((*service, ctx));
        }
        // In AWS, `provision` has made the bus's rules (or they exist).
        if let Some(bus) = &bus
            && let Some(local) = platform.local_backend()
        {
            local.set_routes(bus, &routes).await?;
        }

        let mut apps = Vec::with_capacity(contexts.len());
        for (service, ctx) in &contexts {
            let app = (service.app)(ctx)
                .await
                .with_context(|| format!("building {}", service.name))?;
            apps.push((service.name, app));
        }
        // Every queue a service declares (kv's change queue has no
        // consumer here: its readers are the users' own).
        let mut queues = Vec::new();
        for (service, ctx) in &contexts {
            for def in service.resources {
                if let ResourceKind::Queue { .. } | ResourceKind::DeadLetterQueue { .. } = def.kind
                {
                    queues.push(ctx.resources.queue_name(def.var)?.to_owned());
                }
            }
        }
        queues.sort();
        queues.dedup();
        let mut app = mount(apps).merge(metrics_route(registry, platform.queue_admin(), queues));
        if config.rate_limits {
            let throttle = Throttle::new(PLATFORM_LIMITS);
            app = app.layer(axum::middleware::from_fn(move |req, next| {
                constellation_web::throttle::throttle(throttle.clone(), req, next)
            }));
        }
        if let Some(blobs) = platform.local_blob_router().await? {
            app = app.merge(blobs);
        }

        let (stop, stopped) = watch::channel(false);
        let mut background = JoinSet::new();
        for (service, ctx) in &contexts {
            for consumer in service.consumers {
                let worker = ctx.worker(consumer).await?;
                let queue = ctx.resource(consumer.queue)?;
                let spec = service
                    .resources
                    .iter()
                    .find(|r| r.var == consumer.queue)
                    .and_then(|r| {
                        r.queue_spec(ctx.resources.queue_name(consumer.queue).unwrap_or(queue))
                    })
                    .with_context(|| {
                        format!("{}: {} is not a queue", service.name, consumer.queue)
                    })?;
                let receiver = platform.receiver(&spec, queue).await?;
                background.spawn(run_consumer(
                    receiver,
                    consumer.batch_size,
                    move |event| {
                        let worker = worker.clone();
                        async move { Ok(worker.handle_batch(event).await) }
                    },
                    stopped.clone(),
                ));
            }
            for schedule in service.schedules {
                let expr: ScheduleExpr = schedule.expression.parse()?;
                let handler = schedule.build(ctx).await?;
                background.spawn(run_schedule(
                    schedule.name.to_owned(),
                    expr,
                    handler,
                    stopped.clone(),
                ));
            }
        }

        Ok(Self {
            listener,
            app,
            platform,
            background,
            stop,
            local_addr,
        })
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish
    /// and stops the background tasks.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr, "constellation listening on http://{}", self.local_addr);
        // Peer addresses feed auth's per-address login throttling, as
        // API Gateway's sourceIp does in AWS.
        let app = self.app.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .context("http server")?;
        let _ = self.stop.send(true);
        while self.background.join_next().await.is_some() {}
        // Leave the database whole: the next process to open it (a function
        // under `cargo lambda watch`, the next serve) reads no log back.
        if let Some(local) = self.platform.local_backend() {
            match local.checkpoint().await {
                Ok(true) => {}
                Ok(false) => tracing::info!(
                    "another process is using the database; its write-ahead log is checkpointed later"
                ),
                Err(e) => {
                    tracing::warn!(error = %error_chain(&*e), "checkpoint at shutdown failed")
                }
            }
        }
        tracing::info!("constellation stopped");
        Ok(())
    }
}

/// Mounts each service's complete app at `/v1/<name>`, as API Gateway routes
/// `/v1/<name>/{proxy+}` to its function: the app sees the request exactly
/// as sent (no outer routing, no stripped prefix) and answers its own unknown
/// routes; any other path gets a 404 problem.
fn mount(services: impl IntoIterator<Item = (&'static str, axum::Router)>) -> axum::Router {
    let services: Arc<Vec<(String, axum::Router)>> = Arc::new(
        services
            .into_iter()
            .map(|(name, app)| (format!("/v1/{name}"), app))
            .collect(),
    );
    let dispatch = tower::service_fn(move |req: axum::extract::Request| {
        let services = services.clone();
        async move {
            let path = req.uri().path();
            let owner = services.iter().find(|(prefix, _)| {
                path.strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            });
            match owner {
                Some((_, app)) => app.clone().oneshot(req).await,
                None => Ok(problem_response(
                    ProblemType::NotFound,
                    Some("no such route"),
                    None,
                )),
            }
        }
    });
    axum::Router::new().fallback_service(dispatch)
}

/// How long queue depths read for `/metrics` are reused: scrapes (or a
/// caller hammering the route) cost the backend at most one read of each
/// queue per this period.
const QUEUE_GAUGES_TTL: Duration = Duration::from_secs(5);

/// Queue gauges and when they were read.
type CachedGauges = (Instant, Arc<Vec<Gauge>>);

/// `GET /metrics`: everything emitted since start in Prometheus' text
/// format ([`Registry`]), then, for each queue of `queues` (every queue the
/// services declare), the gauges AWS/SQS has under the same names, read at
/// most once per [`QUEUE_GAUGES_TTL`]. A queue that could not be read has
/// no gauges (absent, not 0: a backlog must never look empty). The age of
/// the oldest message is there where the backend can tell (locally; SQS's
/// API does not: CloudWatch has it).
fn metrics_route(
    registry: Arc<Registry>,
    admin: Arc<dyn QueueAdmin>,
    queues: Vec<String>,
) -> axum::Router {
    let cache: Arc<tokio::sync::Mutex<Option<CachedGauges>>> = Arc::default();
    let handler = move || {
        let (registry, admin, queues, cache) = (
            registry.clone(),
            admin.clone(),
            queues.clone(),
            cache.clone(),
        );
        async move {
            let gauges = {
                // Held across the read: concurrent scrapes wait for one read.
                let mut cached = cache.lock().await;
                match &*cached {
                    Some((at, gauges)) if at.elapsed() < QUEUE_GAUGES_TTL => gauges.clone(),
                    _ => {
                        let gauges = Arc::new(queue_gauges(&*admin, &queues).await);
                        *cached = Some((Instant::now(), gauges.clone()));
                        gauges
                    }
                }
            };
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                registry.render(&gauges),
            )
        }
    };
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(handler).fallback(|| async {
            problem_response(
                ProblemType::MethodNotAllowed,
                Some("/metrics takes GET"),
                None,
            )
        }),
    )
}

async fn queue_gauges(admin: &dyn QueueAdmin, queues: &[String]) -> Vec<Gauge> {
    let mut gauges = Vec::with_capacity(queues.len() * 3);
    for (name, stat) in queues.iter().zip(admin.stats(queues).await) {
        let stat = match stat {
            Ok(stat) => stat,
            Err(e) => {
                tracing::warn!(queue = %name, error = %error_chain(&e), "queue depth unavailable for /metrics");
                continue;
            }
        };
        let label = || vec![("QueueName", name.clone())];
        gauges.push(Gauge {
            name: "ApproximateNumberOfMessagesVisible",
            help: "Messages waiting to be received.",
            labels: label(),
            value: stat.visible as f64,
        });
        gauges.push(Gauge {
            name: "ApproximateNumberOfMessagesNotVisible",
            help: "Messages received and not yet deleted.",
            labels: label(),
            value: stat.in_flight as f64,
        });
        if let Some(age) = stat.oldest_age_secs {
            gauges.push(Gauge {
                name: "ApproximateAgeOfOldestMessage",
                help: "Seconds since the oldest message in the queue was sent.",
                labels: label(),
                value: age as f64,
            });
        }
    }
    gauges
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use async_trait::async_trait;
    use constellation_platform::{QueueError, QueueStats, ReceivedMessage};

    use super::*;

    /// Reads queue `ok` and fails on every other one.
    #[derive(Debug)]
    struct HalfBroken;

    #[async_trait]
    impl QueueAdmin for HalfBroken {
        async fn list(&self) -> Result<Vec<QueueStats>, QueueError> {
            unreachable!("a scrape reads only the declared queues")
        }

        async fn stats(&self, names: &[String]) -> Vec<Result<QueueStats, QueueError>> {
            names
                .iter()
                .map(|n| match n.as_str() {
                    "ok" => Ok(QueueStats {
                        name: n.clone(),
                        visible: 7,
                        in_flight: 1,
                        oldest_age_secs: None,
                    }),
                    _ => Err(QueueError::Unavailable(anyhow::anyhow!("throttled"))),
                })
                .collect()
        }

        async fn peek(&self, _: &str, _: u32) -> Result<Vec<ReceivedMessage>, QueueError> {
            unreachable!()
        }

        async fn redrive(&self, _: &str, _: &str, _: u32) -> Result<u64, QueueError> {
            unreachable!()
        }
    }

    #[tokio::test]
    async fn a_queue_that_cannot_be_read_has_no_gauges_rather_than_zeros() {
        let gauges = queue_gauges(&HalfBroken, &["ok".into(), "broken".into()]).await;
        let shown: Vec<(&str, &str, f64)> = gauges
            .iter()
            .map(|g| (g.name, g.labels[0].1.as_str(), g.value))
            .collect();
        assert_eq!(
            shown,
            [
                ("ApproximateNumberOfMessagesVisible", "ok", 7.0),
                ("ApproximateNumberOfMessagesNotVisible", "ok", 1.0),
            ]
        );
    }
}
