//! The key-value service: namespaced keys with versions, compare-and-swap,
//! TTL, and a change event for every write.
//!
//! [`store`] holds the rules and speaks only to platform ports; [`http`] maps
//! the HTTP contract onto it; [`app`] wires both to a [`Platform`]. The same
//! router runs under Lambda (`src/bin/kv.rs`), `constellation serve`, and the
//! tests.

pub mod config;
pub mod events;
pub mod http;
pub mod relay;
pub mod store;

use std::sync::Arc;

use constellation_platform::config::Platform;
use constellation_platform::observe::MetricsSink;
use constellation_platform::tokens::{TokenConfig, TokenVerifier, load_verifier};
use constellation_web::{ServiceInfo, with_auth};

pub use config::KvResources;
pub use http::router;
pub use store::KvStore;

/// The service name: its path prefix is `/v1/kv`.
pub const SERVICE: &str = "kv";

/// Builds the kv store from the platform and the resources it should use.
pub async fn store(platform: &Platform, resources: &KvResources) -> anyhow::Result<KvStore> {
    let table = platform
        .table(&resources.table, &resources.cursor_secret)
        .await?;
    let changes = platform.queue(&resources.changes_queue);
    Ok(KvStore::new(table, changes, platform.clock()))
}

/// The complete kv HTTP application over the platform, with the shared layers.
pub async fn app(
    platform: &Platform,
    resources: &KvResources,
    metrics: MetricsSink,
) -> anyhow::Result<axum::Router> {
    let tokens = TokenConfig::from_env()?;
    // Independent secret reads: at cold start, do them at once.
    let (verifier, store) =
        tokio::try_join!(load_verifier(platform, &tokens), store(platform, resources))?;
    Ok(app_with(Arc::new(store), verifier, metrics))
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
            name: SERVICE,
            metrics,
        },
        with_auth(router(store), verifier),
    )
}
