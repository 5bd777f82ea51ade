//! The `constellation` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use constellation::serve::{ServeConfig, Server, shutdown_signal};
use constellation_auth::{AuditAction, AuditEvent, AuthResources, record_audit};
use constellation_platform::aws::AwsBackend;
use constellation_platform::clock::SystemClock;
use constellation_platform::config::{BackendKind, Platform};
use constellation_platform::observe::init_tracing;
use constellation_platform::tokens::{TokenConfig, rotate_keys};

#[derive(Debug, Parser)]
#[command(
    name = "constellation",
    version,
    about = "Run and operate Constellation locally"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Backend {
    /// SQLite and files in the data directory.
    Local,
    /// DynamoDB, S3, SQS and Secrets Manager (honours AWS_ENDPOINT_URL, e.g. for moto).
    Aws,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every service, worker and schedule in one process.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "CONSTELLATION_ADDR", default_value = "127.0.0.1:3000")]
        addr: SocketAddr,
        /// Where local data lives.
        #[arg(long, env = "CONSTELLATION_DATA_DIR", default_value = ".constellation")]
        data_dir: PathBuf,
        /// Storage backend.
        #[arg(
            long,
            env = "CONSTELLATION_BACKEND",
            value_enum,
            default_value = "local"
        )]
        backend: Backend,
        /// With `--backend aws`: create missing tables, queues and secrets first.
        #[arg(long)]
        provision: bool,
        /// With `--backend aws`: the endpoint of an emulator such as moto or
        /// LocalStack (the SDK also reads AWS_ENDPOINT_URL).
        #[arg(long)]
        aws_endpoint_url: Option<String>,
        /// Print CloudWatch EMF metric lines.
        #[arg(long)]
        emf: bool,
    },
    /// Print the OpenAPI 3.1 document of every service.
    Openapi,
    /// Manage the access-token signing keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Inspect a local queue without consuming it.
    Queue {
        /// Queue name (e.g. constellation-kv-changes).
        name: String,
        /// How many messages to show.
        #[arg(long, default_value_t = 10)]
        limit: u32,
        /// Where local data lives.
        #[arg(long, env = "CONSTELLATION_DATA_DIR", default_value = ".constellation")]
        data_dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// Add a new current signing key; the previous public key stays valid
    /// until the tokens it signed have expired.
    Rotate {
        /// Where the keys live.
        #[arg(
            long,
            env = "CONSTELLATION_BACKEND",
            value_enum,
            default_value = "local"
        )]
        backend: Backend,
        /// Where local data lives.
        #[arg(long, env = "CONSTELLATION_DATA_DIR", default_value = ".constellation")]
        data_dir: PathBuf,
        /// With `--backend aws`: an emulator endpoint (the SDK also reads AWS_ENDPOINT_URL).
        #[arg(long)]
        aws_endpoint_url: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            addr,
            data_dir,
            backend,
            provision,
            aws_endpoint_url,
            emf,
        } => {
            init_tracing();
            let backend = match backend {
                Backend::Local => BackendKind::Local,
                Backend::Aws => BackendKind::Aws,
            };
            let config = ServeConfig {
                addr,
                backend,
                data_dir,
                provision,
                aws_endpoint: aws_endpoint_url,
                emf,
                relay_every: Duration::from_secs(10),
            };
            Server::bind(&config).await?.run(shutdown_signal()).await
        }
        Command::Keys {
            action:
                KeysAction::Rotate {
                    backend,
                    data_dir,
                    aws_endpoint_url,
                },
        } => {
            init_tracing();
            let clock = std::sync::Arc::new(SystemClock);
            let platform = match backend {
                Backend::Local => Platform::local(data_dir, String::new(), clock)?,
                Backend::Aws => Platform::aws(
                    AwsBackend::connect(aws_endpoint_url.as_deref()).await,
                    clock,
                ),
            };
            let config = TokenConfig::from_env()?;
            let kid = rotate_keys(
                platform.secrets().as_ref(),
                &config,
                platform.clock().as_ref(),
            )
            .await?;
            let resources = AuthResources::from_env(platform.kind())?;
            record_audit(
                &platform,
                &resources,
                None,
                AuditEvent::new(AuditAction::KeyRotated).detail(&kid),
            )
            .await?;
            println!("{kid}");
            Ok(())
        }
        Command::Openapi => {
            println!("{}", constellation::openapi().to_pretty_json()?);
            Ok(())
        }
        Command::Queue {
            name,
            limit,
            data_dir,
        } => {
            let platform =
                Platform::local(data_dir, String::new(), std::sync::Arc::new(SystemClock))?;
            let local = platform.local_backend().context("a local data dir")?;
            for m in local.peek(&name, limit).await? {
                println!("{}", m.body);
            }
            Ok(())
        }
    }
}
