//! The catalog service: suppliers, products and their stock. It owns stock,
//! and reserves it for orders through the order saga's events (see
//! `constellation_core::orders`): every line or none, never more than is on
//! hand, each effect at most once per order.
//!
//! [`domain`] holds the rules that need no storage; [`store`] the rules
//! over platform ports; [`http`] the contract; [`worker`] the order events.

pub mod config;
pub mod domain;
pub mod http;
pub mod store;
pub mod worker;

use std::sync::Arc;

use constellation_core::orders::events;
use constellation_platform::observe::MetricsSink;
use constellation_platform::outbox::OutboxRelay;
use constellation_platform::schedule::ScheduledHandler;
use constellation_platform::tokens::TokenVerifier;
use constellation_platform::worker::{Events, RecordHandler};
use constellation_platform::{Clock, Table};
use constellation_web::host::{
    BoxFuture, ConsumerDef, Context, ScheduleDef, ServiceDef, SubscriptionDef,
};

pub use config::CatalogResources;
pub use store::CatalogStore;

/// The service name: its path prefix is `/v1/catalog`.
pub const NAME: &str = "catalog";
/// The worker's name (its Lambda binary).
pub const WORKER: &str = "catalog-worker";
/// The outbox relay schedule's name (its Lambda binary).
pub const RELAY: &str = "catalog-outbox";

/// catalog as every host sees it.
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
        events: &[events::PLACED, events::CANCELLED, events::SHIPPED],
    }],
    openapi,
};

fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    http::ApiDoc::openapi()
}

/// The store and its table (which also keeps `Idempotency-Key` records).
pub fn store(ctx: &Context) -> anyhow::Result<(CatalogStore, Arc<dyn Table>)> {
    let r = CatalogResources::from_resources(&ctx.resources)?;
    let platform = &ctx.platform;
    let table = platform.table_on_first_use(&r.table, &r.cursor_secret);
    let outbox = ctx.outbox(NAME, &r.table, table.clone(), &r.event_bus);
    Ok((
        CatalogStore::new(table.clone(), outbox, platform.clock()),
        table,
    ))
}

fn build_app(ctx: &Context) -> BoxFuture<'_, anyhow::Result<axum::Router>> {
    Box::pin(async move {
        let verifier = ctx.verifier().await?;
        let (store, table) = store(ctx)?;
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
        let (store, _) = store(ctx)?;
        Ok(Arc::new(Events(worker::OrderEvents(Arc::new(store)))) as Arc<dyn RecordHandler>)
    })
}

fn build_relay(ctx: &Context) -> BoxFuture<'_, anyhow::Result<Arc<dyn ScheduledHandler>>> {
    Box::pin(async move {
        let (store, _) = store(ctx)?;
        Ok(Arc::new(OutboxRelay(store.outbox().clone())) as Arc<dyn ScheduledHandler>)
    })
}

/// The complete catalog HTTP application over an existing store.
pub fn app_with(
    store: Arc<CatalogStore>,
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
