//! The key-value service: namespaced keys with versions, compare-and-swap,
//! TTL, and a change event for every write.
//!
//! [`store`] holds the rules and speaks only to platform ports; [`http`] maps
//! the HTTP contract onto it; [`SERVICE`] describes the service to every host
//! (`serve`, the Lambda mains in `src/bin/`, the tests).

pub mod config;
pub mod events;
pub mod http;
pub mod relay;
pub mod store;

use std::sync::Arc;

use constellation_platform::config::Platform;
use constellation_platform::observe::MetricsSink;
use constellation_platform::outbox::OutboxRelay;
use constellation_platform::schedule::ScheduledHandler;
use constellation_platform::tokens::TokenVerifier;
use constellation_web::host::{BoxFuture, Context, ScheduleDef, ServiceDef, SubscriptionDef};
use constellation_web::{ServiceInfo, with_auth};

pub use config::KvResources;
pub use http::router;
pub use store::KvStore;

/// The service name: its path prefix is `/v1/kv`.
pub const NAME: &str = "kv";

/// kv as every host sees it.
pub const SERVICE: ServiceDef = ServiceDef {
    name: NAME,
    resources: config::RESOURCES,
    app: build_app,
    consumers: &[],
    schedules: &[ScheduleDef {
        name: relay::SCHEDULE,
        function: relay::SCHEDULE,
        expression: relay::EXPRESSION,
        handler: build_relay,
    }],
    subscriptions: &[SubscriptionDef {
        queue: config::CHANGES_QUEUE_VAR,
        events: &[events::CHANGED],
    }],
    openapi,
};

fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    http::ApiDoc::openapi()
}

/// Builds the kv store from the platform and the resources it should use.
/// Nothing is read yet: the table reads its cursor secret on first use.
pub async fn store(platform: &Platform, resources: &KvResources) -> anyhow::Result<KvStore> {
    let table = platform.table_on_first_use(&resources.table, &resources.cursor_secret);
    let outbox = platform.outbox(&resources.table, table.clone(), &resources.event_bus);
    Ok(KvStore::with_outbox(table, outbox, platform.clock()))
}

/// The store of a host's context: as [`store`], its events counted in the
/// context's metrics.
async fn context_store(ctx: &Context) -> anyhow::Result<KvStore> {
    let resources = KvResources::from_resources(&ctx.resources)?;
    let table = ctx
        .platform
        .table_on_first_use(&resources.table, &resources.cursor_secret);
    let outbox = ctx.outbox(NAME, &resources.table, table.clone(), &resources.event_bus);
    Ok(KvStore::with_outbox(table, outbox, ctx.platform.clock()))
}

fn build_app(ctx: &Context) -> BoxFuture<'_, anyhow::Result<axum::Router>> {
    Box::pin(async move {
        // No I/O here: the verifier's public keys and the table's cursor
        // secret are read on first use, so a cold start answers a health
        // check without a secret read, and a first request reads both at once.
        let verifier = ctx.verifier().await?;
        let store = context_store(ctx).await?;
        Ok(app_with(Arc::new(store), verifier, ctx.metrics.clone()))
    })
}

fn build_relay(ctx: &Context) -> BoxFuture<'_, anyhow::Result<Arc<dyn ScheduledHandler>>> {
    Box::pin(async move {
        let store = context_store(ctx).await?;
        Ok(Arc::new(OutboxRelay(store.outbox().clone())) as Arc<dyn ScheduledHandler>)
    })
}

/// The complete kv HTTP application over an existing store, verifying
/// tokens with `verifier`.
pub fn app_with(
    store: Arc<KvStore>,
    verifier: Arc<TokenVerifier>,
    metrics: MetricsSink,
) -> axum::Router {
    constellation_web::service(
        ServiceInfo {
            name: NAME,
            metrics,
        },
        with_auth(router(store), verifier),
    )
}
