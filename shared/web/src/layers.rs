//! The layers every service router gets: request ids, one log line and one
//! EMF record per request, the health route, problem+json for unknown routes,
//! wrong methods and panics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use constellation_platform::observe::{Metric, MetricsSink};
use constellation_platform::trace;
use serde_json::{Value, json};
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument as _;

use crate::error::{ProblemType, problem_response};

/// The header carrying the request id, in and out.
pub static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
pub use constellation_platform::observe::METRICS_NAMESPACE;
/// The X-Ray trace header, in (see [`constellation_platform::trace`]) and
/// out (its root, so a caller can find the request's log lines).
pub static TRACE_HEADER: HeaderName = HeaderName::from_static("x-amzn-trace-id");

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled on this task, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// What the shared layers need to know about a service.
#[derive(Debug, Clone)]
pub struct ServiceInfo {
    /// The service name (`kv`), which is also its path prefix `/v1/<name>`.
    pub name: &'static str,
    /// Where metrics go.
    pub metrics: MetricsSink,
}

/// A service whose routes check tokens: `router` with the verifier its
/// `Authenticated` extractor reads, under [`service`]'s shared layers. The
/// whole application of every service that answers signed-in callers.
pub fn authenticated_service(
    name: &'static str,
    metrics: MetricsSink,
    verifier: Arc<constellation_platform::tokens::TokenVerifier>,
    router: Router,
) -> Router {
    service(
        ServiceInfo { name, metrics },
        crate::auth::with_auth(router, verifier),
    )
}

/// Wraps a service router in the shared layers and adds `GET /v1/<name>/health`.
pub fn service(info: ServiceInfo, router: Router) -> Router {
    let info = Arc::new(info);
    let health_info = info.clone();
    // One router is built per process (per Lambda execution environment), so
    // its first request is the cold start.
    let cold = Arc::new(AtomicBool::new(true));
    router
        .route(
            &format!("/v1/{}/health", info.name),
            get(move || {
                let name = health_info.name;
                async move {
                    axum::Json(json!({
                        "status": "ok",
                        "service": name,
                        "version": env!("CARGO_PKG_VERSION"),
                    }))
                }
            }),
        )
        .fallback(|| async { problem_response(ProblemType::NotFound, Some("no such route"), None) })
        .method_not_allowed_fallback(|| async {
            problem_response(
                ProblemType::MethodNotAllowed,
                Some("this route does not take that method"),
                None,
            )
        })
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                tracing::error!("handler panicked");
                problem_response(ProblemType::Internal, None, None)
            },
        ))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            observe(info.clone(), cold.clone(), req, next)
        }))
}

fn request_id_from(req: &Request) -> String {
    req.headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_owned)
        // A v4 UUID from the thread's id generator: no system call per
        // request (see `constellation_platform::ids`).
        .unwrap_or_else(|| {
            uuid::Builder::from_random_bytes(constellation_platform::ids::unique())
                .into_uuid()
                .to_string()
        })
}

/// The method as a metric label: any method outside the standard ones is
/// `OTHER`, so a client cannot mint a series per made-up method.
fn metric_method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

async fn observe(
    info: Arc<ServiceInfo>,
    cold: Arc<AtomicBool>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = request_id_from(&req);
    let method: Method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    // In Lambda the invocation's trace (the runtime sets the variable for
    // each event) is the truth; in `serve` the caller's header when it is
    // well formed, else a new trace.
    let invocation = std::env::var("_X_AMZN_TRACE_ID").ok();
    let work = trace::Work::start([
        invocation.as_deref(),
        req.headers()
            .get(&TRACE_HEADER)
            .and_then(|v| v.to_str().ok()),
    ]);
    let trace_id = work.trace_id.clone();
    let span = tracing::info_span!(
        "request",
        service = info.name,
        request_id = %request_id,
        trace_id = %trace_id,
        span_id = %work.span_id,
        parent_id = work.parent_id.as_deref(),
        method = %method,
        route = %route,
    );

    let mut response = REQUEST_ID
        .scope(request_id.clone(), trace::scope(work.header, next.run(req)))
        .instrument(span.clone())
        .await
        .into_response();

    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let status = response.status().as_u16();
    span.in_scope(|| {
        tracing::info!(status, latency_ms, "{method} {route} {status}");
    });
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER.clone(), v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("Root={trace_id}")) {
        response.headers_mut().insert(TRACE_HEADER.clone(), v);
    }

    if !info.metrics.is_enabled() {
        return response;
    }
    let route_label = format!("{} {route}", metric_method(&method));
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    info.metrics.emit(
        METRICS_NAMESPACE,
        &[("Service", info.name), ("Route", &route_label)],
        &[
            Metric {
                name: "Requests",
                value: 1.0,
                unit: "Count",
            },
            Metric {
                name: "Latency",
                value: latency_ms,
                unit: "Milliseconds",
            },
            Metric {
                name: "ClientErrors",
                value: flag((400..500).contains(&status)),
                unit: "Count",
            },
            Metric {
                name: "Errors",
                value: flag(status >= 500),
                unit: "Count",
            },
        ],
        &[
            ("request_id", Value::from(request_id.clone())),
            ("status", Value::from(status)),
        ],
    );
    if cold.swap(false, Ordering::Relaxed) {
        info.metrics.emit(
            METRICS_NAMESPACE,
            &[("Service", info.name)],
            &[Metric {
                name: "ColdStart",
                value: 1.0,
                unit: "Count",
            }],
            &[("request_id", Value::from(request_id))],
        );
    }
    response
}
