//! The shared layers as a client sees them: problem bodies, opaque 5xx,
//! request ids, and one EMF record per request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use constellation_platform::observe::MetricsSink;
use constellation_web::{ApiError, Json, ServiceInfo, service};
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde::Deserialize;
use tower::ServiceExt as _;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct WidgetForCreate {
    name: String,
}

fn fx_app(lines: Arc<Mutex<Vec<String>>>) -> Router {
    let routes = Router::new()
        .route(
            "/v1/demo/boom",
            get(|| async {
                Err::<(), _>(ApiError::internal(anyhow::anyhow!(
                    "connection to db-7.internal:5432 refused (password=hunter2)"
                )))
            }),
        )
        .route(
            "/v1/demo/panic",
            get(|| async {
                if "always".starts_with('a') {
                    panic!("secret internals");
                }
                StatusCode::OK
            }),
        )
        .route(
            "/v1/demo/widgets",
            post(|Json(_w): Json<WidgetForCreate>| async { StatusCode::CREATED }),
        );
    service(
        ServiceInfo {
            name: "demo",
            metrics: MetricsSink::from_fn(move |l| lines.lock().unwrap().push(l)),
        },
        routes,
    )
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, http::HeaderMap, String) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body =
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    (status, headers, body)
}

#[tokio::test]
async fn server_errors_are_opaque_problems_with_the_request_id() {
    let app = fx_app(Arc::default());
    for path in ["/v1/demo/boom", "/v1/demo/panic"] {
        let (status, headers, body) = call(
            &app,
            Request::get(path)
                .header("x-request-id", "rid-1")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        assert_eq!(headers["content-type"], "application/problem+json");
        assert_eq!(headers["x-request-id"], "rid-1");
        let p: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(p["type"], "urn:constellation:problem:internal");
        assert_eq!(p["request_id"], "rid-1", "{path}");
        for leak in ["db-7", "hunter2", "secret internals", "refused"] {
            assert!(!body.contains(leak), "{path} leaked {leak}: {body}");
        }
    }
}

#[tokio::test]
async fn json_bodies_are_strict_and_errors_name_the_field() {
    let app = fx_app(Arc::default());
    let post = |body: &'static str, ct: &'static str| {
        Request::post("/v1/demo/widgets")
            .header("content-type", ct)
            .body(Body::from(body))
            .unwrap()
    };
    let (status, _, _) = call(&app, post(r#"{"name":"a"}"#, "application/json")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, body) = call(
        &app,
        post(r#"{"name":"a","admin":true}"#, "application/json"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let p: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(p["field"], "admin");
    let (status, _, _) = call(&app, post(r#"{"name":"a"}"#, "text/plain")).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _, body) = call(&app, post("{not json", "application/json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("malformed-body"));
}

#[tokio::test]
async fn json_bodies_with_bytes_after_the_value_are_refused() {
    let app = fx_app(Arc::default());
    let post = |body: &'static str| {
        Request::post("/v1/demo/widgets")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    for body in [
        r#"{"name":"a"}GARBAGE"#,
        r#"{"name":"a"}{"name":"b"}"#,
        r#"{"name":"a"} x"#,
        "{\"name\":\"a\"}\n\u{0}",
    ] {
        let (status, headers, text) = call(&app, post(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}: {text}");
        assert_eq!(headers["content-type"], "application/problem+json");
        let p: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(p["type"], "urn:constellation:problem:invalid-input", "{p}");
        assert_eq!(p["field"], "body", "{p}");
        assert!(p["detail"].as_str().unwrap().starts_with("body: "), "{p}");
    }
    // Whitespace after the value is not trailing data.
    let (status, _, text) = call(&app, post("{\"name\":\"a\"} \r\n\t ")).await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
}

#[tokio::test]
async fn every_request_emits_one_emf_record_and_the_first_a_cold_start() {
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let app = fx_app(lines.clone());
    call(
        &app,
        Request::get("/v1/demo/health").body(Body::empty()).unwrap(),
    )
    .await;
    call(
        &app,
        Request::get("/v1/demo/boom").body(Body::empty()).unwrap(),
    )
    .await;
    let records: Vec<serde_json::Value> = lines
        .lock()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let requests: Vec<_> = records
        .iter()
        .filter(|r| r.get("Requests").is_some())
        .collect();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0]["Route"], "GET /v1/demo/health");
    assert_eq!(requests[0]["Errors"], 0.0);
    assert_eq!(requests[1]["Route"], "GET /v1/demo/boom");
    assert_eq!(requests[1]["Errors"], 1.0);
    assert!(requests[1]["Latency"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        requests[1]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "Constellation"
    );
    let cold: Vec<_> = records
        .iter()
        .filter(|r| r.get("ColdStart").is_some())
        .collect();
    assert_eq!(cold.len(), 1, "exactly one ColdStart per process");
}
