//! The tools against real processes and servers: `coldstart` runs the
//! `hello` binary through the fake Runtime API, `loadgen` loads a small
//! in-process server that fails some requests on purpose.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use constellation_benches::coldstart::{ColdStartConfig, measure, parse_expect};
use constellation_benches::loadgen::{LoadConfig, Op, run};

fn hello_config(expect: &str) -> ColdStartConfig {
    let event = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../events/kv-health.json"
    ))
    .unwrap();
    ColdStartConfig {
        bootstrap: PathBuf::from(env!("CARGO_BIN_EXE_hello")),
        name: "hello".to_owned(),
        event: event.into(),
        runs: 3,
        warmup: 0,
        timeout: Duration::from_secs(10),
        expect: vec![parse_expect(expect).unwrap()],
        memory_mb: 128,
        log: std::env::temp_dir().join(format!("coldstart-test-{}.log", std::process::id())),
    }
}

#[tokio::test]
async fn coldstart_times_every_run_of_a_real_bootstrap() {
    let report = measure(&hello_config("statusCode=200")).await.unwrap();
    assert_eq!(report.runs.len(), 3);
    for run in &report.runs {
        assert!(run.init > Duration::ZERO && run.cold >= run.init, "{run:?}");
        assert!(run.peak_rss_kib > 100, "{run:?}");
    }
    assert!(
        report.row().starts_with("| hello | 3 |"),
        "{}",
        report.row()
    );
}

#[tokio::test]
async fn coldstart_fails_when_the_answer_is_not_the_expected_one() {
    let err = measure(&hello_config("statusCode=404")).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("run 1 failed") && text.contains("statusCode"),
        "{text}"
    );
}

#[derive(Clone, Default)]
struct Counts {
    gets: Arc<AtomicU64>,
    puts: Arc<AtomicU64>,
}

/// A kv stand-in: GETs answer 200 (500 for key k0), PUTs 201; both need a token.
fn stand_in(counts: Counts) -> Router {
    async fn get_key(
        State(c): State<Counts>,
        Path((_, key)): Path<(String, String)>,
        headers: HeaderMap,
    ) -> StatusCode {
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer t0k") {
            return StatusCode::UNAUTHORIZED;
        }
        c.gets.fetch_add(1, Ordering::Relaxed);
        if key == "k0" {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        }
    }
    async fn put_key(State(c): State<Counts>, body: String) -> StatusCode {
        assert_eq!(body.len(), 16);
        c.puts.fetch_add(1, Ordering::Relaxed);
        StatusCode::CREATED
    }
    Router::new()
        .route("/v1/kv/{ns}/{key}", get(get_key).put(put_key))
        .with_state(counts)
}

#[tokio::test]
async fn loadgen_sends_each_rate_and_counts_failures() {
    let counts = Counts::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, stand_in(counts.clone())).into_future());

    let cfg = LoadConfig {
        authority: addr.to_string(),
        token: Some("t0k".to_owned()),
        namespace: "bench".to_owned(),
        keys: 2,
        get_rate: 200.0,
        put_rate: 50.0,
        duration: Duration::from_secs(1),
        connections: 4,
        value_size: 16,
        timeout: Duration::from_secs(5),
    };
    let report = run(cfg, true).await.unwrap();
    let get = &report.ops[&Op::Get];
    let put = &report.ops[&Op::Put];
    assert_eq!((get.scheduled, put.scheduled), (200, 50));
    // Every scheduled GET was answered; those of k0 (about half) with a 500.
    assert_eq!(get.ok + get.non_2xx(), 200);
    let failed = get.statuses.get(&500).copied().unwrap_or(0);
    assert!((50..150).contains(&failed), "{:?}", get.statuses);
    assert_eq!(get.errors(), failed);
    assert_eq!((put.ok, put.errors()), (50, 0));
    // The server saw them all, plus the two prefill PUTs.
    assert_eq!(counts.gets.load(Ordering::Relaxed), 200);
    assert_eq!(counts.puts.load(Ordering::Relaxed), 52);
    assert_eq!(put.latency.len(), 50);
    assert!(
        report.table().contains("| GET | 200 |"),
        "{}",
        report.table()
    );
}
