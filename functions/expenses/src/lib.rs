//! The expenses service: expenses in exact money, reviewed along a state
//! machine (draft → submitted → approved → reimbursed, or rejected and
//! edited back to draft), with receipts uploaded through media, summaries
//! and a CSV export.
//!
//! [`domain`] holds the rules that need no storage; [`store`] the rules
//! over platform ports; [`http`] the contract; [`worker`] media's events.

pub mod config;
pub mod domain;
pub mod http;
pub mod store;
pub mod worker;

use std::sync::Arc;

use constellation_core::media::events as media_events;
use constellation_platform::observe::MetricsSink;
use constellation_platform::outbox::OutboxRelay;
use constellation_platform::schedule::ScheduledHandler;
use constellation_platform::tokens::TokenVerifier;
use constellation_platform::worker::{Events, RecordHandler};
use constellation_platform::{Clock, Table};
use constellation_web::host::{
    BoxFuture, ConsumerDef, Context, ScheduleDef, ServiceDef, SubscriptionDef,
};

pub use config::ExpensesResources;
pub use store::{ExpenseImport, ExpenseStore};

/// The service name: its path prefix is `/v1/expenses`.
pub const NAME: &str = "expenses";
/// The worker's name (its Lambda binary).
pub const WORKER: &str = "expenses-worker";
/// The outbox relay schedule's name (its Lambda binary).
pub const RELAY: &str = "expenses-outbox";

/// expenses as every host sees it.
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
    schedules: &[ScheduleDef {
        name: RELAY,
        function: RELAY,
        expression: "rate(1 minute)",
        handler: build_relay,
    }],
    subscriptions: &[SubscriptionDef {
        queue: config::QUEUE_VAR,
        events: &[
            media_events::READY,
            media_events::REJECTED,
            media_events::DELETED,
        ],
    }],
    openapi,
};

fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    http::ApiDoc::openapi()
}

/// The store and its table (which also keeps `Idempotency-Key` records).
pub async fn store(ctx: &Context) -> anyhow::Result<(ExpenseStore, Arc<dyn Table>)> {
    let r = ExpensesResources::from_resources(&ctx.resources)?;
    let platform = &ctx.platform;
    let table = platform.table_on_first_use(&r.table, &r.cursor_secret);
    let outbox = ctx.outbox(NAME, &r.table, table.clone(), &r.event_bus);
    let bucket = platform.blob_store(&r.media_bucket).await?;
    Ok((
        ExpenseStore::new(table.clone(), outbox, bucket, platform.clock()),
        table,
    ))
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
        Ok(Arc::new(Events(worker::ReceiptUpdates(Arc::new(store)))) as Arc<dyn RecordHandler>)
    })
}

fn build_relay(ctx: &Context) -> BoxFuture<'_, anyhow::Result<Arc<dyn ScheduledHandler>>> {
    Box::pin(async move {
        let (store, _) = store(ctx).await?;
        Ok(Arc::new(OutboxRelay(store.outbox().clone())) as Arc<dyn ScheduledHandler>)
    })
}

/// The complete expenses HTTP application over an existing store.
pub fn app_with(
    store: Arc<ExpenseStore>,
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
