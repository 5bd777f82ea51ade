//! The `constellation` command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use constellation::migrate;
use constellation::serve::{self, ServeConfig, Server, shutdown_signal};
use constellation::services::SERVICES;
use constellation_auth::signing::{SigningConfig, rotate_keys};
use constellation_auth::{AuditAction, AuditEvent, AuthResources, record_audit};
use constellation_platform::QueueStats;
use constellation_platform::config::{BackendKind, Platform};
use constellation_platform::observe::{
    MetricsSink, init_tracing, init_tracing_in_background_with, init_tracing_stderr,
};
use constellation_platform::schedule::ScheduledEvent;
use constellation_platform::tokens::VerifierConfig;
use constellation_web::host::{Context, ResourceKind, Resources};

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

/// Where the data lives: the flags every command that touches it shares.
#[derive(Debug, Clone, Args)]
struct BackendArgs {
    /// Storage backend: `local` (SQLite and files in the data directory) or
    /// `aws` (DynamoDB, S3, SQS, EventBridge, Secrets Manager; honours AWS_ENDPOINT_URL).
    #[arg(
        long,
        env = "CONSTELLATION_BACKEND",
        default_value = "local",
        global = true
    )]
    backend: BackendKind,
    /// Where local data lives.
    #[arg(
        long,
        env = "CONSTELLATION_DATA_DIR",
        default_value = ".constellation",
        global = true
    )]
    data_dir: PathBuf,
    /// With `--backend aws`: the endpoint of an emulator such as moto or
    /// LocalStack (the SDK also reads AWS_ENDPOINT_URL).
    #[arg(long, global = true)]
    aws_endpoint_url: Option<String>,
}

impl BackendArgs {
    fn serve_config(&self) -> ServeConfig {
        ServeConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 3000)),
            backend: self.backend,
            data_dir: self.data_dir.clone(),
            provision: false,
            aws_endpoint: self.aws_endpoint_url.clone(),
            emf: false,
            rate_limits: true,
        }
    }

    async fn platform(&self) -> anyhow::Result<Platform> {
        serve::platform(&self.serve_config(), String::new()).await
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every service, worker and schedule in one process.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "CONSTELLATION_ADDR", default_value = "127.0.0.1:3000")]
        addr: SocketAddr,
        #[command(flatten)]
        backend: BackendArgs,
        /// With `--backend aws`: create missing tables, queues, the bus and its rules, and secrets first.
        #[arg(long)]
        provision: bool,
        /// Print CloudWatch EMF metric lines.
        #[arg(long)]
        emf: bool,
        /// Do not apply API Gateway's per-route limits per caller (load tests).
        #[arg(long, env = "CONSTELLATION_NO_RATE_LIMIT")]
        no_rate_limit: bool,
        /// Export spans as OpenTelemetry traces over OTLP/HTTP to this
        /// collector (e.g. a local Jaeger: http://localhost:4318).
        #[arg(long, env = "CONSTELLATION_OTLP_ENDPOINT")]
        otlp_endpoint: Option<constellation::otlp::Endpoint>,
    },
    /// Print, as dotenv lines, the variables the Lambda functions read at
    /// start (every service's resources, the backend, token settings) for
    /// this backend: the local names and data dir, or in AWS the names
    /// `serve --provision` creates, queues as their URLs. For `cargo lambda
    /// watch --env-file` and scripts/bench; secrets are named, their values never printed.
    Env {
        #[command(flatten)]
        backend: BackendArgs,
        /// With `--backend aws`: create missing tables, queues, the bus and its rules, and secrets first (as `serve --provision` does).
        #[arg(long)]
        provision: bool,
    },
    /// Print the OpenAPI 3.1 document of every service.
    Openapi,
    /// Run one schedule now, as its timer would (e.g. `kv-outbox`).
    Run {
        /// The schedule's name.
        schedule: String,
        /// For a daily job: the day to cover (`YYYY-MM-DD`) instead of yesterday.
        #[arg(long)]
        date: Option<String>,
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// Inspect queues and redrive dead letters.
    Queue {
        #[command(subcommand)]
        action: QueueAction,
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// Manage the access-token signing keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// Operate the comms service's copy of the directory.
    Comms {
        #[command(subcommand)]
        action: CommsAction,
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// Write every service's data (secrets left out) as JSON Lines, one
    /// file per kind, with a manifest of SHA-256 sums.
    Export {
        /// The directory to write (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Only this organization's records.
        #[arg(long)]
        org: Option<String>,
        /// Also copy the bytes of every ready media (and its thumbnail)
        /// into `<out>/media/`, listed in the manifest with their SHA-256.
        #[arg(long)]
        with_media: bool,
        /// No progress lines on stderr.
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// Load an export into the backend's tables, in checkpointed batches;
    /// or, with --from, a legacy database's files through the services.
    Import {
        /// The export directory (with its manifest.json), or with --from the
        /// directory of legacy files.
        dir: PathBuf,
        /// Read legacy files instead of an export: `postgres-csv` (one
        /// `<table>.csv` per table, as `COPY ... WITH (FORMAT csv, HEADER)`
        /// writes it) or `mongo` (`mongoexport` JSON Lines).
        #[arg(long, value_enum)]
        from: Option<LegacySource>,
        /// With --from mongo: the name of the organization of users without
        /// an `organization_id`.
        #[arg(long, default_value = "Imported organization")]
        org_name: String,
        /// Validate and report, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Continue after the checkpoint an interrupted import left.
        #[arg(long)]
        resume: bool,
        /// Succeed even if some records were rejected.
        #[arg(long)]
        allow_rejects: bool,
        /// No progress lines on stderr.
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// Read the mail the local backend has sent (`<data dir>/mail`).
    Mail {
        #[command(subcommand)]
        action: MailAction,
        #[command(flatten)]
        backend: BackendArgs,
    },
}

/// The legacy formats `import --from` reads.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LegacySource {
    /// PostgreSQL `COPY` CSV files.
    PostgresCsv,
    /// `mongoexport` JSON Lines.
    Mongo,
}

#[derive(Debug, Subcommand)]
enum MailAction {
    /// Every message: id, date, recipient and subject, newest last.
    List,
    /// Print one message exactly as it was sent (RFC 5322).
    Show {
        /// The message id (as `mail list` shows it).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum QueueAction {
    /// Every queue with its depth.
    List,
    /// Show messages of a queue. Locally nothing changes; SQS has no peek, so
    /// in AWS each shown message counts as one receive.
    Peek {
        /// Queue name (e.g. constellation-kv-changes).
        name: String,
        /// How many messages to show.
        #[arg(long, default_value_t = 10)]
        limit: u32,
    },
    /// Move messages from a dead-letter queue back to its source queue.
    Redrive {
        /// The dead-letter queue (e.g. constellation-kv-changes-dlq).
        dlq: String,
        /// The queue to move them to (default: the DLQ's name without `-dlq`).
        #[arg(long)]
        to: Option<String>,
        /// The most messages to move.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// Add a new current signing key; the previous public key stays valid
    /// until the tokens it signed have expired.
    Rotate,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // `serve` logs every request: off the request path. The one-shot
    // commands write straight to stdout.
    let _log = match &cli.command {
        Command::Serve { otlp_endpoint, .. } => {
            let extra = match otlp_endpoint {
                Some(endpoint) => Some(Box::new(constellation::otlp::layer(endpoint.clone())?)
                    as constellation_platform::observe::ExtraLayer),
                None => None,
            };
            Some(init_tracing_in_background_with(extra))
        }
        // Its stdout is an env file.
        Command::Env { .. } => {
            init_tracing_stderr();
            None
        }
        _ => {
            init_tracing();
            None
        }
    };
    match cli.command {
        Command::Serve {
            addr,
            backend,
            provision,
            emf,
            no_rate_limit,
            otlp_endpoint: _,
        } => {
            let config = ServeConfig {
                addr,
                provision,
                emf,
                rate_limits: !no_rate_limit,
                ..backend.serve_config()
            };
            Server::bind(&config).await?.run(shutdown_signal()).await
        }
        Command::Env { backend, provision } => {
            anyhow::ensure!(
                !provision || backend.backend == BackendKind::Aws,
                "--provision is for --backend aws: the local backend needs nothing created"
            );
            let config = constellation::env::EnvConfig {
                backend: backend.backend,
                data_dir: &backend.data_dir,
                aws_endpoint: backend.aws_endpoint_url.as_deref(),
                provision,
            };
            // Built whole first: a failure prints nothing to stdout.
            let lines = constellation::env::env(&config, SERVICES)
                .await?
                .to_dotenv()?;
            // `env | head` closes the pipe early: not an error.
            match std::io::Write::write_all(&mut std::io::stdout().lock(), lines.as_bytes()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(()),
            }
        }
        Command::Openapi => {
            println!("{}", constellation::openapi().to_pretty_json()?);
            Ok(())
        }
        Command::Run {
            schedule,
            date,
            backend,
        } => run_schedule(&schedule, date, &backend).await,
        Command::Queue { action, backend } => queue(action, &backend).await,
        Command::Mail { action, backend } => mail(action, &backend),
        Command::Export {
            out,
            org,
            with_media,
            quiet,
            backend,
        } => export(&out, org.as_deref(), with_media, !quiet, &backend).await,
        Command::Import {
            dir,
            from: Some(from),
            org_name,
            dry_run,
            resume: _,
            allow_rejects,
            quiet,
            backend,
        } => {
            // A legacy import resumes by running again (every write is
            // skipped when already done), so --resume changes nothing.
            let source = match from {
                LegacySource::PostgresCsv => migrate::legacy::Source::PostgresCsv,
                LegacySource::Mongo => migrate::legacy::Source::Mongo,
            };
            let options = migrate::legacy::LegacyOptions {
                dry_run,
                progress: !quiet,
                default_org_name: org_name,
            };
            import_legacy(source, &dir, &options, allow_rejects, &backend).await
        }
        Command::Import {
            dir,
            from: None,
            org_name: _,
            dry_run,
            resume,
            allow_rejects,
            quiet,
            backend,
        } => {
            let options = migrate::ImportOptions {
                dry_run,
                resume,
                progress: !quiet,
                ..migrate::ImportOptions::default()
            };
            import(&dir, options, allow_rejects, &backend).await
        }
        Command::Keys {
            action: KeysAction::Rotate,
            backend,
        } => {
            let platform = backend.platform().await?;
            let config = SigningConfig::from_env()?;
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
        Command::Comms {
            action: CommsAction::Resync { org },
            backend,
        } => comms_resync(org.as_deref(), &backend).await,
    }
}

/// Runs the schedule `name` once and prints its report.
async fn run_schedule(
    name: &str,
    date: Option<String>,
    backend: &BackendArgs,
) -> anyhow::Result<()> {
    let (service, schedule) = SERVICES
        .iter()
        .find_map(|s| s.schedule(name).map(|sch| (s, sch)))
        .with_context(|| {
            let known: Vec<_> = SERVICES
                .iter()
                .flat_map(|s| s.schedules.iter().map(|sch| sch.name))
                .collect();
            format!(
                "no schedule `{name}`; the schedules are: {}",
                known.join(", ")
            )
        })?;
    let platform = backend.platform().await?;
    let resources = serve::resources(&platform, service)?;
    let ctx = Context::new(
        platform,
        resources,
        MetricsSink::discard(),
        VerifierConfig::from_env()?,
    );
    let handler = schedule.build(&ctx).await?;
    let report = handler
        .run(ScheduledEvent {
            schedule: name.to_owned(),
            scheduled_time: None,
            execution_id: Some(format!("manual-{}", uuid_like())),
            date,
        })
        .await?;
    println!("{report}");
    Ok(())
}

fn uuid_like() -> String {
    use rand::RngCore as _;
    let mut raw = [0_u8; 8];
    rand::rng().fill_bytes(&mut raw);
    hex::encode(raw)
}

/// The local names of every queue the services declare, with their
/// dead-letter queues.
fn declared_queues() -> Vec<String> {
    let mut names = Vec::new();
    for service in SERVICES {
        let Ok(resources) = Resources::from_env(service.resources, BackendKind::Local) else {
            continue;
        };
        for def in service.resources {
            if let ResourceKind::Queue { .. } | ResourceKind::DeadLetterQueue { .. } = def.kind
                && let Ok(name) = resources.queue_name(def.var)
            {
                names.push(name.to_owned());
                if matches!(def.kind, ResourceKind::Queue { .. }) {
                    names.push(format!("{name}-dlq"));
                }
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

async fn queue(action: QueueAction, backend: &BackendArgs) -> anyhow::Result<()> {
    let admin = backend.platform().await?.queue_admin();
    match action {
        QueueAction::List => {
            let mut queues = admin.list().await?;
            if backend.backend == BackendKind::Local {
                // A local queue exists once it holds a message; show every
                // queue the services declare (and its dead-letter queue) too.
                for name in declared_queues() {
                    if !queues.iter().any(|q| q.name == name) {
                        queues.push(QueueStats {
                            name,
                            visible: 0,
                            in_flight: 0,
                            oldest_age_secs: None,
                        });
                    }
                }
                queues.sort_by(|a, b| a.name.cmp(&b.name));
            }
            println!("{:<48} {:>10} {:>10}", "queue", "visible", "in flight");
            for q in queues {
                println!("{:<48} {:>10} {:>10}", q.name, q.visible, q.in_flight);
            }
        }
        QueueAction::Peek { name, limit } => {
            for m in admin.peek(&name, limit).await? {
                println!("{}", m.body);
            }
        }
        QueueAction::Redrive { dlq, to, limit } => {
            let to = match to {
                Some(to) => to,
                None => dlq
                    .strip_suffix("-dlq")
                    .with_context(|| {
                        format!("`{dlq}` does not end in -dlq: name the source queue with --to")
                    })?
                    .to_owned(),
            };
            let moved = admin.redrive(&dlq, &to, limit).await?;
            println!("moved {moved} messages from {dlq} to {to}");
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
enum CommsAction {
    /// Have auth republish a snapshot (`account.updated`, current version)
    /// of every account, which rebuilds comms' copy of the directory.
    Resync {
        /// Only this organization's accounts (default: every organization).
        #[arg(long)]
        org: Option<String>,
    },
}

/// Republishes account snapshots through auth's outbox, as auth itself
/// would (its store, its table, its bus), and prints how many.
async fn comms_resync(org: Option<&str>, backend: &BackendArgs) -> anyhow::Result<()> {
    let org = org
        .map(constellation_core::OrgId::parse)
        .transpose()
        .context("--org")?;
    let platform = backend.platform().await?;
    let service = &constellation_auth::SERVICE;
    let resources = serve::resources(&platform, service)?;
    let ctx = Context::new(
        platform,
        resources,
        MetricsSink::discard(),
        VerifierConfig::from_env()?,
    );
    let store = constellation_auth::build_store(&ctx).await?;
    let published = store.republish_accounts(org.as_ref()).await?;
    println!("published {published} account snapshots");
    Ok(())
}

/// `constellation export`: every service's table (and with `with_media`,
/// the media bucket's objects) into `out`.
async fn export(
    out: &Path,
    org: Option<&str>,
    with_media: bool,
    progress: bool,
    backend: &BackendArgs,
) -> anyhow::Result<()> {
    let org = org
        .map(constellation_core::OrgId::parse)
        .transpose()
        .context("--org")?;
    let platform = backend.platform().await?;
    let tables = migrate::open_tables(&platform, SERVICES).await?;
    let media = if with_media {
        Some(migrate::open_media_bucket(&platform).await?)
    } else {
        None
    };
    let options = migrate::ExportOptions {
        org,
        progress,
        media,
        ..migrate::ExportOptions::default()
    };
    let manifest = migrate::export(&tables, out, &options).await?;
    for f in &manifest.files {
        println!("{:<32} {:>10}", f.name, f.records);
    }
    if with_media {
        let bytes: u64 = manifest.media.iter().map(|m| m.bytes).sum();
        println!(
            "{:<32} {:>10} ({bytes} bytes)",
            "media objects",
            manifest.media.len()
        );
    }
    println!("exported to {}", out.display());
    Ok(())
}

/// `constellation import`: an export into every service's table, and its
/// media objects into the media bucket.
async fn import(
    dir: &Path,
    options: migrate::ImportOptions,
    allow_rejects: bool,
    backend: &BackendArgs,
) -> anyhow::Result<()> {
    let platform = backend.platform().await?;
    let tables = migrate::open_tables(&platform, SERVICES).await?;
    let options = migrate::ImportOptions {
        media: Some(migrate::open_media_bucket(&platform).await?),
        ..options
    };
    let report = migrate::import(&tables, dir, &options).await?;
    print!("{}", report.table());
    let rejected = report.rejected();
    if rejected > 0 && !allow_rejects {
        anyhow::bail!(
            "{rejected} records rejected (listed in {}); pass --allow-rejects to accept that",
            dir.join(migrate::import::REJECTS).display()
        );
    }
    Ok(())
}

/// `constellation import --from`: legacy files through the services.
async fn import_legacy(
    source: migrate::legacy::Source,
    dir: &Path,
    options: &migrate::legacy::LegacyOptions,
    allow_rejects: bool,
    backend: &BackendArgs,
) -> anyhow::Result<()> {
    // A dry run opens no store: it writes nothing, not even a first
    // signing key or an empty database in a fresh data dir.
    let stores = if options.dry_run {
        None
    } else {
        Some(migrate::legacy::Stores::open(&backend.platform().await?).await?)
    };
    let report = migrate::legacy::import_legacy(source, dir, stores.as_ref(), options).await?;
    print!("{}", report.table());
    let rejected = report.rejected();
    if rejected > 0 && !allow_rejects {
        let listed = if options.dry_run {
            "listed above".to_owned()
        } else {
            format!("listed in {}", dir.join(migrate::import::REJECTS).display())
        };
        anyhow::bail!("{rejected} rows rejected ({listed}); pass --allow-rejects to accept that");
    }
    Ok(())
}

/// `constellation mail`: the local mailbox, read straight from its files.
fn mail(action: MailAction, backend: &BackendArgs) -> anyhow::Result<()> {
    use constellation_platform::local::mail;
    use std::io::Write as _;
    anyhow::ensure!(
        backend.backend == BackendKind::Local,
        "`constellation mail` reads the local mailbox; with --backend aws, mail goes through SES in AWS"
    );
    let dir = backend.data_dir.join(mail::MAIL_DIR);
    match action {
        MailAction::List => {
            let messages = mail::list(&dir)?;
            if messages.is_empty() {
                println!("no mail in {}", dir.display());
                return Ok(());
            }
            println!("{:<30}  {:<20}  {:<40}  subject", "id", "date", "to");
            for m in messages {
                let date = m
                    .date
                    .and_then(|d| {
                        d.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    })
                    .unwrap_or_else(|| "-".to_owned());
                println!("{:<30}  {date:<20}  {:<40}  {}", m.id, m.to, m.subject);
            }
        }
        MailAction::Show { id } => {
            let message = mail::read(&dir, &id)?
                .with_context(|| format!("no message {id} in {}", dir.display()))?;
            std::io::stdout().write_all(&message)?;
        }
    }
    Ok(())
}
