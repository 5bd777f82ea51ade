//! The axum glue every HTTP service shares: one error type mapped to
//! `application/problem+json`, request ids, a strict JSON extractor, body
//! limits, pagination parameters, `Idempotency-Key` replay, the health route, per-request logs and EMF
//! metrics, and OpenAPI serving.
//!
//! A service builds its `Router` from handlers that return
//! `Result<_, ApiError>` and then calls [`service`] to wrap it in the shared
//! layers, so every service answers errors, ids and metrics the same way.

pub mod auth;
pub mod authorizer;
pub mod error;
pub mod extract;
pub mod host;
pub mod idempotency;
pub mod layers;
pub mod openapi;
pub mod pagination;
pub mod throttle;
pub mod uploads;

pub use auth::{Authenticated, with_auth};
pub use error::{ApiError, ProblemType};
pub use extract::{Json, LimitedBody};
pub use host::{Context, ServiceDef};
pub use idempotency::{IdempotencyLayer, IdempotencyOptions};
pub use layers::{ServiceInfo, authenticated_service, current_request_id, service};
pub use pagination::PageParams;
