//! `constellation serve`: the whole system in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use constellation_kv::{KvResources, KvStore};
use constellation_platform::SecretValue;
use constellation_platform::aws::AwsBackend;
use constellation_platform::clock::SystemClock;
use constellation_platform::config::{BackendKind, Platform};
use constellation_platform::observe::MetricsSink;
use constellation_platform::tokens::{self, TokenConfig};
use rand::RngCore as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

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

/// Provisions kv's AWS resources with the shape template.yaml gives them
/// (and a first token signing key if there is none), and returns the
/// resource references to use.
async fn provision_kv(aws: &AwsBackend, wanted: &KvResources) -> anyhow::Result<KvResources> {
    aws.ensure_table(&wanted.table).await?;
    let queue_name = wanted
        .changes_queue
        .rsplit('/')
        .next()
        .unwrap_or(&wanted.changes_queue)
        .to_owned();
    let url = aws
        .ensure_queue(&KvResources::changes_queue_spec(&queue_name))
        .await?;
    let mut raw = [0_u8; 32];
    rand::rng().fill_bytes(&mut raw);
    aws.ensure_secret(&wanted.cursor_secret, &SecretValue::new(hex::encode(raw)))
        .await?;
    tokens::ensure_keys(&aws.secrets(), &TokenConfig::from_env()?, &SystemClock).await?;
    Ok(KvResources {
        changes_queue: url,
        ..wanted.clone()
    })
}

impl Server {
    /// Opens the backend, builds every service and binds the listener.
    pub async fn bind(config: &ServeConfig) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("bind {}", config.addr))?;
        let local_addr = listener.local_addr()?;
        let clock = Arc::new(SystemClock);
        let (platform, kv_resources) = match config.backend {
            BackendKind::Local => {
                let platform = Platform::local(
                    config.data_dir.clone(),
                    format!("http://{local_addr}"),
                    clock,
                )?;
                let res = KvResources::from_env(BackendKind::Local)?;
                (platform, res)
            }
            BackendKind::Aws => {
                let aws = match &config.aws_endpoint {
                    Some(url) => AwsBackend::from_sdk_config(
                        &aws_config::defaults(aws_config::BehaviorVersion::latest())
                            .endpoint_url(url)
                            .load()
                            .await,
                    ),
                    None => AwsBackend::from_env().await,
                };
                let res = if config.provision {
                    let wanted = KvResources::from_env(BackendKind::Local)?;
                    provision_kv(&aws, &wanted).await?
                } else {
                    KvResources::from_env(BackendKind::Aws)?
                };
                (Platform::aws(aws, clock), res)
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
        let mut app = axum::Router::new().merge(constellation_kv::app_with(
            kv.clone(),
            verifier.clone(),
            metrics.clone(),
        ));
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
        axum::serve(self.listener, self.app)
            .with_graceful_shutdown(shutdown)
            .await
            .context("http server")?;
        let _ = self.stop.send(true);
        while self.background.join_next().await.is_some() {}
        tracing::info!("constellation stopped");
        Ok(())
    }
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
