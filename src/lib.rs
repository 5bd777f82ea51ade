//! The `constellation` command: every service, worker and schedule in one
//! local process (`serve`), and the tools around it.
//!
//! `serve` mounts each service's router at the path API Gateway gives it,
//! runs the background work the cloud would run (queue consumers, the kv
//! outbox relay), serves local presigned blob URLs, and shuts down
//! gracefully, finishing in-flight requests first.

pub mod env;
pub mod migrate;
pub mod otlp;
pub mod serve;
pub mod services;

pub use services::SERVICES;

/// The merged OpenAPI document of every service.
pub fn openapi() -> utoipa::openapi::OpenApi {
    constellation_web::openapi::merge(SERVICES.iter().map(|s| (s.openapi)()))
}
