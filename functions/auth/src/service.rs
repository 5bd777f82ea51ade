//! auth as every host sees it: its resources and how its app is built.

use std::sync::Arc;

use constellation_web::host::{BoxFuture, Context, ResourceDef, ResourceKind, ServiceDef};

use crate::config::{
    AuthResources, AuthSettings, CURSOR_SECRET_VAR, DEFAULT_CURSOR_SECRET, DEFAULT_TABLE, TABLE_VAR,
};
use crate::signing::SigningConfig;
use crate::{NAME, PasswordHasherParams, app_with, store};

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
];

/// auth's description.
pub const SERVICE: ServiceDef = ServiceDef {
    name: NAME,
    resources: RESOURCES,
    app: build_app,
    consumers: &[],
    schedules: &[],
    subscriptions: &[],
    openapi,
};

fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    crate::http::ApiDoc::openapi()
}

fn build_app(ctx: &Context) -> BoxFuture<'_, anyhow::Result<axum::Router>> {
    Box::pin(async move {
        let resources = AuthResources {
            table: ctx.resource(TABLE_VAR)?.to_owned(),
            cursor_secret: ctx.resource(CURSOR_SECRET_VAR)?.to_owned(),
            tokens: SigningConfig::for_verifier(ctx.tokens.clone())?,
            settings: AuthSettings::from_env()?,
        };
        // In order, not at once: on a fresh local data dir the issuer creates
        // the first key pair, which the verifier must then read.
        let store = store(
            &ctx.platform,
            &resources,
            PasswordHasherParams::owasp(),
            ctx.metrics.clone(),
        )
        .await?;
        let verifier = ctx.verifier().await?;
        Ok(app_with(Arc::new(store), verifier, ctx.metrics.clone()))
    })
}
