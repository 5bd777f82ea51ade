//! auth as every host sees it: its resources, its outbox relay schedule,
//! and how its app is built.

use std::sync::Arc;

use constellation_platform::outbox::OutboxRelay;
use constellation_platform::schedule::ScheduledHandler;
use constellation_web::host::{
    BoxFuture, Context, EVENT_BUS, EVENT_BUS_VAR, ResourceDef, ResourceKind, ScheduleDef,
    ServiceDef,
};

use crate::config::{
    AuthResources, AuthSettings, CURSOR_SECRET_VAR, DEFAULT_CURSOR_SECRET, DEFAULT_TABLE, TABLE_VAR,
};
use crate::signing::SigningConfig;
use crate::{AuthStore, NAME, PasswordHasherParams, app_with, store};

/// The outbox relay schedule's name (its Lambda binary).
pub const RELAY: &str = "auth-outbox";

/// Every resource auth uses. The token key secrets are named apart
/// (`AUTH_PUBLIC_KEYS_SECRET_ID`, which every service reads, see
/// `constellation_platform::tokens::VerifierConfig`, and auth's own
/// `AUTH_SIGNING_KEYS_SECRET_ID`, see [`SigningConfig`]) and provisioned
/// with keys in them.
pub const RESOURCES: &[ResourceDef] = &[
    ResourceDef {
        var: TABLE_VAR,
        default: DEFAULT_TABLE,
        kind: ResourceKind::Table,
    },
    ResourceDef {
        var: CURSOR_SECRET_VAR,
        default: DEFAULT_CURSOR_SECRET,
        kind: ResourceKind::GeneratedSecret,
    },
    // Account events (constellation_core::directory) go out on the bus.
    EVENT_BUS,
];

/// auth's description.
pub const SERVICE: ServiceDef = ServiceDef {
    name: NAME,
    resources: RESOURCES,
    app: build_app,
    consumers: &[],
    schedules: &[ScheduleDef {
        name: RELAY,
        function: RELAY,
        expression: "rate(1 minute)",
        handler: build_relay,
    }],
    subscriptions: &[],
    openapi,
};

fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    crate::http::ApiDoc::openapi()
}

/// auth's resources and settings as a host resolved them for `ctx`.
fn resources(ctx: &Context) -> anyhow::Result<AuthResources> {
    Ok(AuthResources {
        table: ctx.resource(TABLE_VAR)?.to_owned(),
        cursor_secret: ctx.resource(CURSOR_SECRET_VAR)?.to_owned(),
        event_bus: ctx.resource(EVENT_BUS_VAR)?.to_owned(),
        tokens: SigningConfig::for_verifier(ctx.tokens.clone())?,
        settings: AuthSettings::from_env()?,
    })
}

/// The auth store as the auth function builds it (production password
/// hashing), for the tools that act as auth outside a request, such as
/// `constellation comms resync`. It reads the private signing key.
pub async fn build_store(ctx: &Context) -> anyhow::Result<AuthStore> {
    store(
        &ctx.platform,
        &resources(ctx)?,
        PasswordHasherParams::owasp(),
        ctx.metrics.clone(),
    )
    .await
}

fn build_app(ctx: &Context) -> BoxFuture<'_, anyhow::Result<axum::Router>> {
    Box::pin(async move {
        // In order, not at once: on a fresh local data dir the issuer creates
        // the first key pair, which the verifier must then read.
        let store = build_store(ctx).await?;
        let verifier = ctx.verifier().await?;
        Ok(app_with(Arc::new(store), verifier, ctx.metrics.clone()))
    })
}

/// The relay needs only the table and the bus: it never reads the signing
/// key (its function is not allowed to).
fn build_relay(ctx: &Context) -> BoxFuture<'_, anyhow::Result<Arc<dyn ScheduledHandler>>> {
    Box::pin(async move {
        let table_name = ctx.resource(TABLE_VAR)?;
        let table = ctx
            .platform
            .table_on_first_use(table_name, ctx.resource(CURSOR_SECRET_VAR)?);
        let outbox = ctx
            .platform
            .outbox(table_name, table, ctx.resource(EVENT_BUS_VAR)?);
        Ok(Arc::new(OutboxRelay(outbox)) as Arc<dyn ScheduledHandler>)
    })
}
