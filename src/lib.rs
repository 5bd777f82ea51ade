//! The `constellation` command: every service, worker and schedule in one
//! local process (`serve`), and the tools around it.
//!
//! `serve` mounts each service's router at the path API Gateway gives it,
//! runs the background work the cloud would run (queue consumers, the kv
//! outbox relay), serves local presigned blob URLs, and shuts down
//! gracefully, finishing in-flight requests first.

pub mod serve;

/// The merged OpenAPI document of every service.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    constellation_web::openapi::merge([
        constellation_auth::http::ApiDoc::openapi(),
        constellation_kv::http::ApiDoc::openapi(),
    ])
}
