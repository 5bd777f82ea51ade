//! `constellation serve`: the whole system in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use constellation_auth::{AuthResources, PasswordHasherParams};
use constellation_kv::{KvResources, KvStore};
use constellation_platform::SecretValue;
use constellation_platform::aws::AwsBackend;
use constellation_platform::clock::SystemClock;
use constellation_platform::config::{BackendKind, Platform};
use constellation_platform::observe::MetricsSink;
use constellation_platform::tokens::{self, TokenConfig};
use constellation_web::error::{ProblemType, problem_response};

use rand::RngCore as _;
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
    /// Print CloudWatch EMF metric lines to stdout.
    pub emf: bool,
    /// How often the kv outbox relay looks for unsent change events.
    pub relay_every: Duration,
}

/// A bound, ready server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    app: axum::Router,
    background: JoinSet<()>,
    stop: watch::Sender<bool>,
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
}

/// Provisions every service's AWS resources with the shape template.yaml
/// gives them (and a first token signing key if there is none), under the
/// local default names, and returns the resource references to use.
async fn provision(aws: &AwsBackend) -> anyhow::Result<(KvResources, AuthResources)> {
    let kv = KvResources::from_env(BackendKind::Local)?;
    let auth = AuthResources::from_env(BackendKind::Local)?;
    aws.ensure_table(&kv.table).await?;
    aws.ensure_table(&auth.table).await?;
    let queue_name = kv
        .changes_queue
        .rsplit('/')
        .next()
        .unwrap_or(&kv.changes_queue)
        .to_owned();
    let url = aws
        .ensure_queue(&KvResources::changes_queue_spec(&queue_name))
        .await?;
    let mut raw = [0_u8; 32];
    rand::rng().fill_bytes(&mut raw);
    aws.ensure_secret(&kv.cursor_secret, &SecretValue::new(hex::encode(raw)))
        .await?;
    tokens::ensure_keys(&aws.secrets(), &auth.tokens, &SystemClock).await?;
    Ok((
        KvResources {
            changes_queue: url,
            ..kv
        },
        auth,
    ))
}

impl Server {
    /// Opens the backend, builds every service and binds the listener.
    pub async fn bind(config: &ServeConfig) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("bind {}", config.addr))?;
        let local_addr = listener.local_addr()?;
        let clock = Arc::new(SystemClock);
        let (platform, kv_resources, auth_resources) = match config.backend {
            BackendKind::Local => {
                let platform = Platform::local(
                    config.data_dir.clone(),
                    format!("http://{local_addr}"),
                    clock,
                )?;
                let kv = KvResources::from_env(BackendKind::Local)?;
                let auth = AuthResources::from_env(BackendKind::Local)?;
                (platform, kv, auth)
            }
            BackendKind::Aws => {
                let aws = AwsBackend::connect(config.aws_endpoint.as_deref()).await;
                let (kv, auth) = if config.provision {
                    provision(&aws).await?
                } else {
                    (
                        KvResources::from_env(BackendKind::Aws)?,
                        AuthResources::from_env(BackendKind::Aws)?,
                    )
                };
                (Platform::aws(aws, clock), kv, auth)
            }
        };

        let metrics = if config.emf {
            MetricsSink::stdout()
        } else {
            MetricsSink::discard()
        };
        let kv = Arc::new(constellation_kv::store(&platform, &kv_resources).await?);
        // One verifier for every service in the process, as one Lambda has one.
        let verifier = tokens::load_verifier(&platform, &TokenConfig::from_env()?).await?;
        let auth = constellation_auth::store(
            &platform,
            &auth_resources,
            PasswordHasherParams::owasp(),
            metrics.clone(),
        )
        .await?;
        let mut app = mount([
            (
                constellation_auth::SERVICE,
                constellation_auth::app_with(Arc::new(auth), verifier.clone(), metrics.clone()),
            ),
            (
                constellation_kv::SERVICE,
                constellation_kv::app_with(kv.clone(), verifier.clone(), metrics.clone()),
            ),
        ]);
        if let Some(blobs) = platform.local_blob_router().await? {
            app = app.merge(blobs);
        }

        let (stop, stopped) = watch::channel(false);
        let mut background = JoinSet::new();
        background.spawn(relay_outbox(kv, config.relay_every, stopped));

        Ok(Self {
            listener,
            app,
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

/// Sends change events whose inline publish failed, until told to stop.
async fn relay_outbox(kv: Arc<KvStore>, every: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = constellation_kv::relay::relay(&kv).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "kv outbox relay failed; will retry"
            );
        }
    }
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
