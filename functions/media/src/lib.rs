//! The media service: files for every other service. A client asks for an
//! upload and PUTs the bytes to a presigned URL; the bucket's event wakes
//! the worker, which checks the bytes against what was declared, strips
//! images' metadata, writes a thumbnail and makes the media `ready` (or
//! `rejected`, deleting the bytes); clients download through 5-minute
//! presigned URLs.
//!
//! [`store`] holds the rules over platform ports; [`http`] the contract;
//! [`worker`] the queue's records; [`inspect`] the checks of the bytes.

pub mod config;
pub mod http;
pub mod inspect;
pub mod sample;
pub mod store;
pub mod worker;

use std::sync::Arc;

use constellation_core::media::events;
use constellation_platform::observe::MetricsSink;
use constellation_platform::outbox::OutboxRelay;
use constellation_platform::schedule::ScheduledHandler;
use constellation_platform::tokens::TokenVerifier;
use constellation_platform::worker::RecordHandler;
use constellation_web::host::{
    BoxFuture, ConsumerDef, Context, ScheduleDef, ServiceDef, SubscriptionDef,
};

pub use config::MediaResources;
pub use store::MediaStore;

/// The service name: its path prefix is `/v1/media`.
pub const NAME: &str = "media";
/// The worker's name (its Lambda binary).
pub const WORKER: &str = "media-worker";
/// The outbox relay schedule's name (its Lambda binary).
pub const RELAY: &str = "media-outbox";

/// media as every host sees it.
pub const SERVICE: ServiceDef = ServiceDef {
    name: NAME,
    resources: config::RESOURCES,
    app: build_app,
    consumers: &[ConsumerDef {
        name: WORKER,
        queue: config::QUEUE_VAR,
        dead_letter: config::DLQ_VAR,
        // Images are checked one at a time per process anyway (see
        // `MediaStore`); a small batch keeps a slow one from holding many.
        batch_size: 2,
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
        events: &[events::REQUESTED, events::EXPENSE_DELETED],
    }],
    openapi,
};

fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    http::ApiDoc::openapi()
}

/// Builds the media store from a service context. The table reads its
/// cursor secret on first use; locally the bucket derives its URL key now.
pub async fn store(ctx: &Context) -> anyhow::Result<MediaStore> {
    let r = MediaResources::from_resources(&ctx.resources)?;
    let platform = &ctx.platform;
    let table = platform.table_on_first_use(&r.table, &r.cursor_secret);
    let outbox = ctx.outbox(NAME, &r.table, table.clone(), &r.event_bus);
    let blobs = platform.blob_store(&r.bucket).await?;
    Ok(MediaStore::new(table, outbox, blobs, platform.clock()))
}

fn build_app(ctx: &Context) -> BoxFuture<'_, anyhow::Result<axum::Router>> {
    Box::pin(async move {
        let verifier = ctx.verifier().await?;
        let store = store(ctx).await?;
        Ok(app_with(Arc::new(store), verifier, ctx.metrics.clone()))
    })
}

fn build_worker(ctx: &Context) -> BoxFuture<'_, anyhow::Result<Arc<dyn RecordHandler>>> {
    Box::pin(async move {
        let store = store(ctx).await?;
        Ok(Arc::new(worker::MediaWorker(Arc::new(store))) as Arc<dyn RecordHandler>)
    })
}

fn build_relay(ctx: &Context) -> BoxFuture<'_, anyhow::Result<Arc<dyn ScheduledHandler>>> {
    Box::pin(async move {
        let store = store(ctx).await?;
        Ok(Arc::new(OutboxRelay(store.outbox().clone())) as Arc<dyn ScheduledHandler>)
    })
}

/// The complete media HTTP application over an existing store.
pub fn app_with(
    store: Arc<MediaStore>,
    verifier: Arc<TokenVerifier>,
    metrics: MetricsSink,
) -> axum::Router {
    constellation_web::authenticated_service(NAME, metrics, verifier, http::router(store))
}
