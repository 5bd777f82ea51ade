//! The comms service: announcements, inboxes, email, reminders and daily
//! reports, fed by every other service's events.
//!
//! comms keeps its own copy of who is in each organization (from auth's
//! `account.*` events; it never reads auth's table), of the attachments it
//! may show (from media's events), and of each day's activity (from the
//! expense, order and stock events it consumes). Everything a person is
//! told is a delivery fanned out by the worker ([`store::deliver`]); mail
//! goes through the [`mail`] sender behind a circuit breaker.
//!
//! [`domain`] holds the rules that need no storage; [`store`] the rules
//! over platform ports; [`http`] the contract; [`worker`] the queue;
//! [`scheduler`] the two schedules.

pub mod config;
pub mod domain;
pub mod http;
pub mod mail;
pub mod scheduler;
pub mod store;
pub mod worker;

use std::sync::Arc;

use constellation_core::directory::events as account_events;
use constellation_core::media::events as media_events;
use constellation_core::orders::events as order_events;
use constellation_platform::breaker::CircuitBreaker;
use constellation_platform::observe::MetricsSink;
use constellation_platform::schedule::ScheduledHandler;
use constellation_platform::tokens::TokenVerifier;
use constellation_platform::worker::{Events, RecordHandler};
use constellation_platform::{Clock, Table};
use constellation_web::host::{
    BoxFuture, ConsumerDef, Context, ScheduleDef, ServiceDef, SubscriptionDef,
};

pub use config::CommsResources;
pub use store::CommsStore;

/// The service name: its path prefix is `/v1/comms`.
pub const NAME: &str = "comms";
/// The worker's name (its Lambda binary).
pub const WORKER: &str = "comms-worker";
/// The scheduler's name (its Lambda binary, and its every-minute schedule).
pub const SCHEDULER: &str = "comms-scheduler";
/// The daily report's schedule (run by the scheduler's function).
pub const DAILY_REPORT: &str = "comms-daily-report";

/// Every event type routed to comms' queue.
pub const SUBSCRIBED: &[&str] = &[
    account_events::ACCOUNT_CREATED,
    account_events::ACCOUNT_UPDATED,
    account_events::ACCOUNT_DISABLED,
    media_events::READY,
    media_events::REJECTED,
    media_events::DELETED,
    "expense.submitted",
    "expense.approved",
    "expense.rejected",
    "expense.reimbursed",
    order_events::CONFIRMED,
    order_events::REJECTED,
    order_events::SHIPPED,
    order_events::INVENTORY_LOW,
    store::deliver::events::DELIVER,
    store::deliver::events::EMAIL,
    store::deliver::events::RETRACT,
    store::deliver::events::REPORT,
];

/// comms as every host sees it.
pub const SERVICE: ServiceDef = ServiceDef {
    name: NAME,
    resources: config::RESOURCES,
    app: build_app,
    consumers: &[ConsumerDef {
        name: WORKER,
        queue: config::QUEUE_VAR,
        dead_letter: config::DLQ_VAR,
        batch_size: 10,
        handler: build_worker,
    }],
    schedules: &[
        ScheduleDef {
            name: SCHEDULER,
            function: SCHEDULER,
            expression: "rate(1 minute)",
            handler: build_minutely,
        },
        ScheduleDef {
            name: DAILY_REPORT,
            function: SCHEDULER,
            expression: "cron(0 7 * * ? *)",
            handler: build_daily_report,
        },
    ],
    subscriptions: &[SubscriptionDef {
        queue: config::QUEUE_VAR,
        events: SUBSCRIBED,
    }],
    openapi,
};

fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    http::ApiDoc::openapi()
}

/// The store and its table (which also keeps `Idempotency-Key` records).
pub async fn store(ctx: &Context) -> anyhow::Result<(CommsStore, Arc<dyn Table>)> {
    let r = CommsResources::from_resources(&ctx.resources)?;
    let platform = &ctx.platform;
    let table = platform.table_on_first_use(&r.table, &r.cursor_secret);
    let outbox = ctx.outbox(NAME, &r.table, table.clone(), &r.event_bus);
    let bucket = platform.blob_store(&r.media_bucket).await?;
    Ok((
        CommsStore::new(table.clone(), outbox, bucket, platform.clock()),
        table,
    ))
}

/// The mail sender of a context: its mailer behind a fresh breaker.
pub fn mail(ctx: &Context) -> anyhow::Result<mail::Mail> {
    let r = CommsResources::from_resources(&ctx.resources)?;
    let breaker = CircuitBreaker::new(
        "comms-mail",
        mail::FAILURES,
        mail::OPEN_FOR,
        ctx.platform.clock(),
        ctx.metrics.clone(),
    );
    Ok(mail::Mail::new(ctx.mailer(), breaker, &r.mail_sender))
}

fn build_app(ctx: &Context) -> BoxFuture<'_, anyhow::Result<axum::Router>> {
    Box::pin(async move {
        let verifier = ctx.verifier().await?;
        let (store, table) = store(ctx).await?;
        Ok(app_with(
            Arc::new(store),
            table,
            ctx.platform.clock(),
            verifier,
            ctx.metrics.clone(),
        ))
    })
}

fn build_worker(ctx: &Context) -> BoxFuture<'_, anyhow::Result<Arc<dyn RecordHandler>>> {
    Box::pin(async move {
        let (store, _) = store(ctx).await?;
        Ok(Arc::new(Events(worker::CommsWorker {
            store: Arc::new(store),
            mail: Arc::new(mail(ctx)?),
        })) as Arc<dyn RecordHandler>)
    })
}

fn build_minutely(ctx: &Context) -> BoxFuture<'_, anyhow::Result<Arc<dyn ScheduledHandler>>> {
    Box::pin(async move {
        let (store, _) = store(ctx).await?;
        Ok(Arc::new(scheduler::Minutely(Arc::new(store))) as Arc<dyn ScheduledHandler>)
    })
}

fn build_daily_report(ctx: &Context) -> BoxFuture<'_, anyhow::Result<Arc<dyn ScheduledHandler>>> {
    Box::pin(async move {
        let (store, _) = store(ctx).await?;
        Ok(Arc::new(scheduler::DailyReport(Arc::new(store))) as Arc<dyn ScheduledHandler>)
    })
}

/// The complete comms HTTP application over an existing store.
pub fn app_with(
    store: Arc<CommsStore>,
    table: Arc<dyn Table>,
    clock: Arc<dyn Clock>,
    verifier: Arc<TokenVerifier>,
    metrics: MetricsSink,
) -> axum::Router {
    constellation_web::authenticated_service(
        NAME,
        metrics,
        verifier,
        http::router(store, table, clock),
    )
}
