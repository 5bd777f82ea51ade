//! The auth service: organizations, accounts and roles, sessions (access
//! tokens plus rotating refresh tokens), invites, brute-force protection, a
//! security audit log, and the public key set.
//!
//! [`mod@store`] holds the rules and speaks only to platform ports; [`http`] maps
//! the HTTP contract onto it; [`SERVICE`] describes it to every host. The same
//! router runs under Lambda (`src/bin/auth.rs`), `constellation serve`, and
//! the tests. [`signing`] holds the private signing key and its rotation:
//! only this service loads it; every service verifies with
//! `constellation_platform::tokens`.
//!
//! auth publishes the directory events of `constellation_core::directory`
//! (`account.created`, `account.updated`, `account.disabled`) through its
//! outbox, relayed by the `auth-outbox` schedule; see `store`'s `directory`.

pub mod client;
pub mod config;
pub mod http;
pub mod password;
pub mod secret;
pub mod service;
pub mod signing;
pub mod store;

use std::sync::Arc;

use constellation_core::OrgId;
use constellation_platform::config::{BackendKind, Platform};
use constellation_platform::observe::MetricsSink;
use constellation_platform::tokens::TokenVerifier;
use constellation_web::ServiceInfo;
use constellation_web::auth::with_auth;

pub use client::ClientAddr;
pub use config::{AuthResources, AuthSettings};
pub use http::{AuthState, router};
pub use password::PasswordHasherParams;
pub use service::{RELAY, SERVICE, build_store};
pub use store::{AuditAction, AuditEvent, AuthStore};

/// The service name: its path prefix is `/v1/auth`.
pub const NAME: &str = "auth";

/// Builds the auth store from the platform: its table (which reads its
/// cursor secret on first use) and that table's outbox on the event bus,
/// the token issuer (the private signing key: read now locally, on the
/// first token signed in AWS), and password
/// hashing with `params`.
pub async fn store(
    platform: &Platform,
    resources: &AuthResources,
    params: PasswordHasherParams,
    metrics: MetricsSink,
) -> anyhow::Result<AuthStore> {
    let table = platform.table_on_first_use(&resources.table, &resources.cursor_secret);
    let outbox = platform
        .outbox(&resources.table, table.clone(), &resources.event_bus)
        .with_metrics(metrics.clone(), NAME);
    let issuer = match platform.kind() {
        // The first start on a fresh data directory generates the key pair,
        // which the verifier must find: load it now (no network here).
        BackendKind::Local => {
            signing::LazyIssuer::ready(signing::load_issuer(platform, &resources.tokens).await?)
        }
        // No secret is read at cold start: the first token signed reads
        // the private key (a health check or JWKS request never does).
        BackendKind::Aws => {
            signing::LazyIssuer::on_first_use(platform.clone(), resources.tokens.clone())
        }
    };
    Ok(AuthStore::new(
        table,
        outbox,
        platform.clock(),
        issuer,
        params,
        resources.settings,
        metrics,
    ))
}

/// The complete auth HTTP application over an existing store and verifier.
pub fn app_with(
    store: Arc<AuthStore>,
    verifier: Arc<TokenVerifier>,
    metrics: MetricsSink,
) -> axum::Router {
    let routes = router(AuthState {
        trusted_proxies: store.settings().trusted_proxies,
        store,
        verifier: verifier.clone(),
    });
    constellation_web::service(
        ServiceInfo {
            name: NAME,
            metrics,
        },
        with_auth(routes, verifier),
    )
}

/// Records a security event in `org`'s audit log, or the installation's
/// when `org` is `None` — for callers outside the service, such as
/// `constellation keys rotate` recording [`AuditAction::KeyRotated`].
pub async fn record_audit(
    platform: &Platform,
    resources: &AuthResources,
    org: Option<&OrgId>,
    event: AuditEvent,
) -> anyhow::Result<()> {
    let table = platform
        .table(&resources.table, &resources.cursor_secret)
        .await?;
    store::append_audit(table.as_ref(), platform.clock().now(), org, event).await?;
    Ok(())
}
