//! The `Idempotency-Key` layer as a client sees it, on both storage backends:
//! replays, the 422 for a reused key, the 409 while in progress (raced for
//! real), failures that do not poison a key, the 24 h retention, header
//! validation, required keys, and the takeover of a stale lock.
//!
//! Every case runs on a real router (`service` + `with_auth`) with tokens from
//! a real `TokenVerifier`, and handlers that count their runs. The layer and
//! its table share one `ManualClock`; tokens are signed on a second clock that
//! stands still, so moving storage time by a day does not expire them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Principal, Role};
use constellation_platform::config::Platform;
use constellation_platform::observe::MetricsSink;
use constellation_platform::table::{
    Add, Condition, Item, ItemKey, Page, Query, StoreError, Table, Write,
};
use constellation_platform::tokens::{TokenVerifier, VerifierConfig, load_verifier};
use constellation_platform::{Clock, ManualClock};
use constellation_testkit::http::{TestPlatform, TestTokens};
use constellation_web::idempotency::MAX_STORED_BODY_BYTES;
use constellation_web::{
    ApiError, IdempotencyLayer, IdempotencyOptions, ServiceInfo, service, with_auth,
};
use http::{HeaderMap, Request};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use time::Duration;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

constellation_testkit::on_both_backends! {
    app = crate::fx;
    a_retry_replays_the_first_response_without_running_the_handler,
    the_same_key_for_a_different_request_is_422,
    keys_are_scoped_to_account_and_route,
    two_concurrent_requests_with_one_key_run_the_handler_once,
    a_server_error_does_not_poison_the_key,
    a_refused_request_can_be_corrected_and_sent_again_with_its_key,
    a_panic_does_not_poison_the_key,
    a_cancelled_request_does_not_poison_the_key,
    the_key_is_free_again_after_24_hours,
    invalid_keys_are_400_naming_the_header,
    a_required_key_missing_is_428,
    a_key_without_a_token_is_401,
    a_stale_in_progress_record_is_taken_over_by_one_retry,
    a_response_too_large_to_store_is_answered_and_not_replayed,
    a_body_over_the_route_limit_is_413_and_not_recorded,
}

/// What the demo handlers share: how often they ran, and a gate the slow
/// one waits at.
#[derive(Clone)]
struct Demo {
    runs: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
}

impl Demo {
    fn run(&self) -> usize {
        self.runs.fetch_add(1, Ordering::SeqCst) + 1
    }
}

struct Fx {
    app: Router,
    /// The clock of the layer and its table.
    clock: Arc<ManualClock>,
    table: Arc<dyn Table>,
    tokens: TestTokens,
    verifier: Arc<TokenVerifier>,
    demo: Demo,
    _dirs: Vec<tempfile::TempDir>,
    _env: TestPlatform,
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn replayed(&self) -> bool {
        self.headers
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true")
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    /// Asserts a problem of `kind` with `status`, naming the key header.
    fn assert_key_problem(&self, status: StatusCode, kind: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.header("content-type"), "application/problem+json");
        let problem = self.json();
        assert_eq!(problem["type"], format!("urn:constellation:problem:{kind}"));
        assert_eq!(problem["status"], status.as_u16());
        assert_eq!(problem["field"], "Idempotency-Key", "{}", self.body);
        assert!(!self.replayed());
    }
}

/// The demo routes' body limit, which the layer must read within.
const BODY_LIMIT: usize = 16 * 1024;

const ALICE: u8 = 0xab;
const BOB: u8 = 0xcd;

fn account(who: u8) -> AccountId {
    AccountId::from_bytes([who; 16])
}

async fn fx(env: TestPlatform) -> Fx {
    let clock = env.clock.clone();
    let name = env.name("idempotency");
    let table: Arc<dyn Table> = match (env.aws_backend(), env.platform.local_backend()) {
        (Some(aws), _) => {
            aws.ensure_table(&name).await.unwrap();
            Arc::new(aws.table(&name, [1; 32], clock.clone() as Arc<dyn Clock>))
        }
        (None, Some(local)) => Arc::new(local.table(&name, [1; 32])),
        (None, None) => unreachable!("a test platform is local or aws"),
    };
    let mut dirs = Vec::new();

    let token_dir = tempfile::tempdir().unwrap();
    let token_clock = Arc::new(ManualClock::starting_now());
    let platform = Platform::local(
        token_dir.path().to_path_buf(),
        "http://127.0.0.1:9".into(),
        token_clock.clone() as Arc<dyn Clock>,
    )
    .unwrap();
    dirs.push(token_dir);
    let cfg = VerifierConfig::default();
    let tokens = TestTokens::on_platform(&platform, token_clock.clone(), cfg.clone()).await;
    let verifier = load_verifier(&platform, &cfg).await.unwrap();

    let demo = Demo {
        runs: Arc::new(AtomicUsize::new(0)),
        gate: Arc::new(Semaphore::new(0)),
    };
    let mut fx = Fx {
        app: Router::new(),
        clock,
        table: table.clone(),
        tokens,
        verifier,
        demo,
        _dirs: dirs,
        _env: env,
    };
    fx.app = fx.app_over(table);
    fx
}

fn demo_routes(table: Arc<dyn Table>, clock: Arc<ManualClock>, demo: Demo) -> Router {
    let optional = IdempotencyLayer::new(
        table.clone(),
        clock.clone() as Arc<dyn Clock>,
        IdempotencyOptions::optional(),
    );
    let required = IdempotencyLayer::new(table, clock, IdempotencyOptions::required());
    Router::new()
        .route(
            "/v1/demo/orders",
            post(create_order).route_layer(optional.clone()),
        )
        .route(
            "/v1/demo/orders/{id}/cancel",
            post(cancel_order).route_layer(required),
        )
        .route("/v1/demo/slow", post(slow).route_layer(optional.clone()))
        .route("/v1/demo/flaky", post(flaky).route_layer(optional.clone()))
        .route("/v1/demo/picky", post(picky).route_layer(optional.clone()))
        .route(
            "/v1/demo/panics",
            post(panics).route_layer(optional.clone()),
        )
        .route("/v1/demo/large", post(large).route_layer(optional))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(demo)
}

/// 201 with a body, a location, an ETag and a header of the service's own,
/// all naming the run, so that a replay is told apart from a second run.
async fn create_order(State(demo): State<Demo>, body: String) -> impl IntoResponse {
    let run = demo.run();
    (
        StatusCode::CREATED,
        [
            ("location", format!("/v1/demo/orders/{run}")),
            ("etag", format!("\"{run}\"")),
            ("x-demo-run", run.to_string()),
            ("content-type", "application/json".to_owned()),
            // Describes this transmission only: never replayed.
            ("date", "Thu, 01 Jan 2026 00:00:00 GMT".to_owned()),
        ],
        json!({ "run": run, "echo": body }).to_string(),
    )
}

async fn cancel_order(State(demo): State<Demo>) -> impl IntoResponse {
    let run = demo.run();
    axum::Json(json!({ "run": run }))
}

/// Waits at the gate until the test opens it.
async fn slow(State(demo): State<Demo>) -> impl IntoResponse {
    let run = demo.run();
    demo.gate.acquire().await.unwrap().forget();
    (StatusCode::CREATED, axum::Json(json!({ "run": run })))
}

/// Fails with a 500 on its first run only.
async fn flaky(State(demo): State<Demo>) -> Result<impl IntoResponse, ApiError> {
    let run = demo.run();
    if run == 1 {
        return Err(ApiError::internal(anyhow::anyhow!("first run fails")));
    }
    Ok((StatusCode::CREATED, axum::Json(json!({ "run": run }))))
}

/// Refuses a body of `bad` with 400; creates anything else.
async fn picky(State(demo): State<Demo>, body: String) -> Result<impl IntoResponse, ApiError> {
    let run = demo.run();
    if body == "bad" {
        return Err(ApiError::invalid("body", "must not be `bad`"));
    }
    Ok((StatusCode::CREATED, axum::Json(json!({ "run": run }))))
}

/// Panics on its first run only.
async fn panics(State(demo): State<Demo>) -> impl IntoResponse {
    let run = demo.run();
    assert!(run > 1, "first run panics");
    (StatusCode::CREATED, axum::Json(json!({ "run": run })))
}

/// A body one byte too large to store.
async fn large(State(demo): State<Demo>) -> impl IntoResponse {
    let run = demo.run();
    let mut body = vec![b'x'; MAX_STORED_BODY_BYTES + 1];
    body[0] = b'0' + u8::try_from(run % 10).unwrap();
    body
}

impl Fx {
    /// The demo service with its idempotency records in `table`.
    fn app_over(&self, table: Arc<dyn Table>) -> Router {
        service(
            ServiceInfo {
                name: "demo",
                metrics: MetricsSink::from_fn(|_| {}),
            },
            with_auth(
                demo_routes(table, self.clock.clone(), self.demo.clone()),
                self.verifier.clone(),
            ),
        )
    }

    /// The idempotency record of `who` under `sort_key` (`<METHOD> <route>#<key>`).
    async fn record(&self, who: u8, sort_key: &str) -> Option<Item> {
        let pk = format!("IDEM#acme#{}", account(who).as_str());
        self.table.get(&ItemKey::new(pk, sort_key)).await.unwrap()
    }

    fn runs(&self) -> usize {
        self.demo.runs.load(Ordering::SeqCst)
    }

    fn token(&self, who: u8) -> String {
        let principal = Principal {
            account: account(who),
            org: OrgId::parse("acme").unwrap(),
            role: Role::Member,
        };
        self.tokens.token_for(&principal)
    }

    /// A POST from `who` with `key` (bytes, so invalid ones can be sent) and a JSON body.
    fn request(&self, path: &str, who: u8, key: Option<&[u8]>, body: &str) -> Request<Body> {
        let mut req = Request::post(path)
            .header("authorization", format!("Bearer {}", self.token(who)))
            .header("content-type", "application/json");
        if let Some(key) = key {
            req = req.header("idempotency-key", HeaderValue::from_bytes(key).unwrap());
        }
        req.body(Body::from(body.to_owned())).unwrap()
    }

    async fn send(&self, req: Request<Body>) -> Reply {
        send(self.app.clone(), req).await
    }

    async fn post(&self, path: &str, who: u8, key: Option<&str>, body: &str) -> Reply {
        self.send(self.request(path, who, key.map(str::as_bytes), body))
            .await
    }
}

async fn send(app: Router, req: Request<Body>) -> Reply {
    let res = app.oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

/// How many requests race for one key.
const RACERS: usize = 8;

impl Fx {
    /// Sends [`RACERS`] identical requests from Alice with `key`, released at once.
    fn race(&self, path: &str, key: &str) -> Vec<tokio::task::JoinHandle<Reply>> {
        let start = Arc::new(tokio::sync::Barrier::new(RACERS));
        (0..RACERS)
            .map(|_| {
                let req = self.request(path, ALICE, Some(key.as_bytes()), "{}");
                let (app, start) = (self.app.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    send(app, req).await
                })
            })
            .collect()
    }
}

/// The one 201 of a race, and the other replies.
async fn finish(racers: Vec<tokio::task::JoinHandle<Reply>>) -> (Reply, Vec<Reply>) {
    let mut won = None;
    let mut lost = Vec::new();
    for racer in racers {
        let reply = racer.await.unwrap();
        if reply.status == StatusCode::CREATED {
            assert!(won.is_none(), "two requests ran: {}", reply.body);
            won = Some(reply);
        } else {
            lost.push(reply);
        }
    }
    (won.expect("one request ran"), lost)
}

/// Waits (up to 10 s) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(10);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
}

async fn a_retry_replays_the_first_response_without_running_the_handler(fx: Fx) {
    let first = fx
        .post("/v1/demo/orders", ALICE, Some("order-1"), r#"{"sku":"A"}"#)
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert!(!first.replayed());
    assert_eq!(first.json()["run"], 1);

    let retry = fx
        .post("/v1/demo/orders", ALICE, Some("order-1"), r#"{"sku":"A"}"#)
        .await;
    assert_eq!(fx.runs(), 1, "the retry must not run the handler");
    assert_eq!(retry.status, StatusCode::CREATED);
    assert!(retry.replayed());
    assert_eq!(retry.body, first.body);
    for name in ["content-type", "location", "etag", "x-demo-run"] {
        assert_eq!(retry.header(name), first.header(name), "{name}");
    }
    // Per-response headers are the replay's own, not the first response's.
    assert_ne!(retry.header("x-request-id"), first.header("x-request-id"));
    assert!(first.headers.contains_key("date"));
    assert!(!retry.headers.contains_key("date"));

    // Stored under the documented key, for 24 h from the first response.
    let stored = fx
        .record(ALICE, "POST /v1/demo/orders#order-1")
        .await
        .expect("the response is stored");
    assert_eq!(stored.str("state"), Some("complete"));
    let mut stored_headers: Vec<&str> = stored.attrs["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| pair[0].as_str().unwrap())
        .collect();
    stored_headers.sort_unstable();
    assert_eq!(
        stored_headers,
        ["content-type", "etag", "location", "x-demo-run"]
    );
    assert_eq!(
        stored.expires_at,
        Some(fx.clock.now() + Duration::hours(24))
    );

    // Without a key, the handler runs every time.
    for expected in [2, 3] {
        let plain = fx
            .post("/v1/demo/orders", ALICE, None, r#"{"sku":"A"}"#)
            .await;
        assert_eq!(plain.status, StatusCode::CREATED);
        assert!(!plain.replayed());
        assert_eq!(plain.json()["run"], expected);
    }
}

async fn the_same_key_for_a_different_request_is_422(fx: Fx) {
    let first = fx
        .post("/v1/demo/orders", ALICE, Some("k"), r#"{"sku":"A"}"#)
        .await;
    assert_eq!(first.status, StatusCode::CREATED);

    let other_body = fx
        .post("/v1/demo/orders", ALICE, Some("k"), r#"{"sku":"B"}"#)
        .await;
    other_body.assert_key_problem(StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused");
    let other_query = fx
        .post(
            "/v1/demo/orders?draft=1",
            ALICE,
            Some("k"),
            r#"{"sku":"A"}"#,
        )
        .await;
    other_query.assert_key_problem(StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused");
    assert_eq!(fx.runs(), 1);

    // One route template, two resources: the same key for another id is reused.
    let cancel = fx
        .post("/v1/demo/orders/1/cancel", ALICE, Some("c"), "{}")
        .await;
    assert_eq!(cancel.status, StatusCode::OK);
    let cancel_other = fx
        .post("/v1/demo/orders/2/cancel", ALICE, Some("c"), "{}")
        .await;
    cancel_other.assert_key_problem(StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused");
    assert_eq!(fx.runs(), 2);

    // The original request still replays.
    let retry = fx
        .post("/v1/demo/orders", ALICE, Some("k"), r#"{"sku":"A"}"#)
        .await;
    assert!(retry.replayed());
    assert_eq!(retry.body, first.body);
}

async fn keys_are_scoped_to_account_and_route(fx: Fx) {
    let alice = fx
        .post("/v1/demo/orders", ALICE, Some("shared"), r#"{"sku":"A"}"#)
        .await;
    let bob = fx
        .post("/v1/demo/orders", BOB, Some("shared"), r#"{"sku":"A"}"#)
        .await;
    assert_eq!(
        (alice.status, bob.status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert!(!bob.replayed(), "bob must not see alice's response");
    assert_eq!(alice.json()["run"], 1);
    assert_eq!(bob.json()["run"], 2);

    // Another route with the same key is another key.
    let cancel = fx
        .post("/v1/demo/orders/1/cancel", ALICE, Some("shared"), "{}")
        .await;
    assert_eq!(cancel.status, StatusCode::OK);
    assert!(!cancel.replayed());
    assert_eq!(fx.runs(), 3);

    // Each replays its own.
    let alice_again = fx
        .post("/v1/demo/orders", ALICE, Some("shared"), r#"{"sku":"A"}"#)
        .await;
    let bob_again = fx
        .post("/v1/demo/orders", BOB, Some("shared"), r#"{"sku":"A"}"#)
        .await;
    assert!(alice_again.replayed() && bob_again.replayed());
    assert_eq!(alice_again.json()["run"], 1);
    assert_eq!(bob_again.json()["run"], 2);
    assert_eq!(fx.runs(), 3);
}

async fn two_concurrent_requests_with_one_key_run_the_handler_once(fx: Fx) {
    let racers = fx.race("/v1/demo/slow", "race");
    // The winner waits at the gate; every other request must answer without
    // running. Were two let through, both would wait and this would time out.
    until("one request ran and the others were refused", || {
        fx.runs() == 1 && racers.iter().filter(|r| r.is_finished()).count() == RACERS - 1
    })
    .await;

    // While the winner is in progress, a retry is refused too.
    let during = fx.post("/v1/demo/slow", ALICE, Some("race"), "{}").await;
    during.assert_key_problem(StatusCode::CONFLICT, "idempotency-key-in-progress");
    assert_eq!(during.header("retry-after"), "1");

    fx.demo.gate.add_permits(RACERS);
    let (won, lost) = finish(racers).await;
    assert_eq!(fx.runs(), 1, "exactly one handler run");
    assert_eq!(won.json()["run"], 1);
    for reply in &lost {
        reply.assert_key_problem(StatusCode::CONFLICT, "idempotency-key-in-progress");
        assert_eq!(reply.header("retry-after"), "1");
    }

    // After completion, a retry gets the winner's response.
    let retry = fx.post("/v1/demo/slow", ALICE, Some("race"), "{}").await;
    assert_eq!(retry.status, StatusCode::CREATED);
    assert!(retry.replayed());
    assert_eq!(retry.body, won.body);
    assert_eq!(fx.runs(), 1);
}

async fn a_server_error_does_not_poison_the_key(fx: Fx) {
    let first = fx.post("/v1/demo/flaky", ALICE, Some("f"), "{}").await;
    assert_eq!(first.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        fx.record(ALICE, "POST /v1/demo/flaky#f").await,
        None,
        "released before the 500 is answered"
    );

    let retry = fx.post("/v1/demo/flaky", ALICE, Some("f"), "{}").await;
    assert_eq!(retry.status, StatusCode::CREATED, "{}", retry.body);
    assert!(!retry.replayed());
    assert_eq!(retry.json()["run"], 2);

    let again = fx.post("/v1/demo/flaky", ALICE, Some("f"), "{}").await;
    assert!(again.replayed());
    assert_eq!(again.body, retry.body);
    assert_eq!(fx.runs(), 2);
}

async fn a_refused_request_can_be_corrected_and_sent_again_with_its_key(fx: Fx) {
    let refused = fx.post("/v1/demo/picky", 1, Some("k-picky"), "bad").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let corrected = fx.post("/v1/demo/picky", 1, Some("k-picky"), "good").await;
    assert_eq!(
        corrected.status,
        StatusCode::CREATED,
        "a 4xx is not stored, so the corrected request runs: {}",
        corrected.body
    );
    assert!(!corrected.replayed());
    let again = fx.post("/v1/demo/picky", 1, Some("k-picky"), "good").await;
    assert!(again.replayed(), "the success is what a retry replays");
    assert_eq!(fx.demo.runs.load(Ordering::SeqCst), 2);
}

async fn a_panic_does_not_poison_the_key(fx: Fx) {
    let first = fx.post("/v1/demo/panics", ALICE, Some("p"), "{}").await;
    assert_eq!(first.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        first.json()["type"],
        "urn:constellation:problem:internal",
        "the service's panic layer still answers"
    );
    assert_eq!(
        fx.record(ALICE, "POST /v1/demo/panics#p").await,
        None,
        "released before the 500 is answered"
    );

    let retry = fx.post("/v1/demo/panics", ALICE, Some("p"), "{}").await;
    assert_eq!(retry.status, StatusCode::CREATED, "{}", retry.body);
    assert_eq!(retry.json()["run"], 2);
    let again = fx.post("/v1/demo/panics", ALICE, Some("p"), "{}").await;
    assert!(again.replayed());
    assert_eq!(fx.runs(), 2);
}

async fn a_cancelled_request_does_not_poison_the_key(fx: Fx) {
    // The client goes away while the handler runs: the request future is dropped.
    let gone = tokio::spawn(send(
        fx.app.clone(),
        fx.request("/v1/demo/slow", ALICE, Some(b"gone"), "{}"),
    ));
    until("the handler runs", || fx.runs() == 1).await;
    assert!(fx.record(ALICE, "POST /v1/demo/slow#gone").await.is_some());
    gone.abort();
    assert!(gone.await.unwrap_err().is_cancelled());

    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(10);
    while fx.record(ALICE, "POST /v1/demo/slow#gone").await.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the key was never released"
        );
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    fx.demo.gate.add_permits(1);
    let retry = fx.post("/v1/demo/slow", ALICE, Some("gone"), "{}").await;
    assert_eq!(retry.status, StatusCode::CREATED, "{}", retry.body);
    assert_eq!(retry.json()["run"], 2);
}

async fn the_key_is_free_again_after_24_hours(fx: Fx) {
    let first = fx
        .post("/v1/demo/orders", ALICE, Some("day"), r#"{"sku":"A"}"#)
        .await;
    assert_eq!(first.status, StatusCode::CREATED);

    fx.clock.advance(Duration::hours(24) - Duration::seconds(1));
    let late = fx
        .post("/v1/demo/orders", ALICE, Some("day"), r#"{"sku":"A"}"#)
        .await;
    assert!(late.replayed(), "still replayed a second before 24 h");
    assert_eq!(fx.runs(), 1);

    fx.clock.advance(Duration::seconds(1));
    let next_day = fx
        .post("/v1/demo/orders", ALICE, Some("day"), r#"{"sku":"B"}"#)
        .await;
    assert_eq!(next_day.status, StatusCode::CREATED, "{}", next_day.body);
    assert!(!next_day.replayed());
    assert_eq!(next_day.json()["run"], 2);
    assert_eq!(fx.runs(), 2);
}

async fn invalid_keys_are_400_naming_the_header(fx: Fx) {
    let too_long = "k".repeat(256);
    for key in [
        &b""[..],
        too_long.as_bytes(),
        b"tab\there",
        b"inner space",
        b"caf\xc3\xa9",
    ] {
        let reply = fx
            .send(fx.request("/v1/demo/orders", ALICE, Some(key), "{}"))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{key:?}: {}",
            reply.body
        );
        let problem = reply.json();
        assert_eq!(problem["type"], "urn:constellation:problem:invalid-input");
        assert_eq!(problem["field"], "Idempotency-Key", "{key:?}");
    }

    let mut twice = fx.request("/v1/demo/orders", ALICE, Some(b"one"), "{}");
    twice
        .headers_mut()
        .append("idempotency-key", HeaderValue::from_static("two"));
    let reply = fx.send(twice).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["field"], "Idempotency-Key");
    assert_eq!(fx.runs(), 0, "no invalid key runs the handler");

    let longest = "k".repeat(255);
    let ok = fx
        .post("/v1/demo/orders", ALICE, Some(&longest), "{}")
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
    let ok = fx
        .post("/v1/demo/orders", ALICE, Some("!~#%/:=+"), "{}")
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
}

async fn a_required_key_missing_is_428(fx: Fx) {
    let missing = fx.post("/v1/demo/orders/1/cancel", ALICE, None, "{}").await;
    missing.assert_key_problem(
        StatusCode::PRECONDITION_REQUIRED,
        "idempotency-key-required",
    );
    assert_eq!(fx.runs(), 0);

    let with_key = fx
        .post("/v1/demo/orders/1/cancel", ALICE, Some("c1"), "{}")
        .await;
    assert_eq!(with_key.status, StatusCode::OK, "{}", with_key.body);
    assert_eq!(fx.runs(), 1);
}

async fn a_key_without_a_token_is_401(fx: Fx) {
    let req = Request::post("/v1/demo/orders")
        .header("idempotency-key", "k")
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    let reply = fx.send(req).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.json()["type"],
        "urn:constellation:problem:unauthorized"
    );
    assert_eq!(
        reply.header("www-authenticate"),
        r#"Bearer realm="constellation""#
    );
    assert_eq!(fx.runs(), 0);
}

async fn a_stale_in_progress_record_is_taken_over_by_one_retry(fx: Fx) {
    // The first handler hangs (as if its host died mid-request).
    let stuck = tokio::spawn(send(
        fx.app.clone(),
        fx.request("/v1/demo/slow", ALICE, Some(b"stuck"), "{}"),
    ));
    until("the first handler runs", || fx.runs() == 1).await;

    fx.clock.advance(Duration::seconds(59));
    let early = fx.post("/v1/demo/slow", ALICE, Some("stuck"), "{}").await;
    early.assert_key_problem(StatusCode::CONFLICT, "idempotency-key-in-progress");

    // Past the lock timeout, retries race to take it over: one wins.
    fx.clock.advance(Duration::seconds(2));
    let racers = fx.race("/v1/demo/slow", "stuck");
    until("one retry took over and the others were refused", || {
        fx.runs() == 2 && racers.iter().filter(|r| r.is_finished()).count() == RACERS - 1
    })
    .await;

    fx.demo.gate.add_permits(RACERS + 1);
    let (won, lost) = finish(racers).await;
    let stuck = stuck.await.unwrap();
    assert_eq!(fx.runs(), 2, "one takeover, not two");
    assert_eq!(won.json()["run"], 2);
    for reply in &lost {
        reply.assert_key_problem(StatusCode::CONFLICT, "idempotency-key-in-progress");
    }
    // The first request still answers its client, but its result is not the
    // one kept: the key belongs to the takeover now.
    assert_eq!(stuck.status, StatusCode::CREATED);
    assert_eq!(stuck.json()["run"], 1);

    let retry = fx.post("/v1/demo/slow", ALICE, Some("stuck"), "{}").await;
    assert!(retry.replayed());
    assert_eq!(retry.body, won.body);
    assert_eq!(fx.runs(), 2);
}

async fn a_response_too_large_to_store_is_answered_and_not_replayed(fx: Fx) {
    let first = fx.post("/v1/demo/large", ALICE, Some("big"), "{}").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body.len(), MAX_STORED_BODY_BYTES + 1);
    assert!(first.body.starts_with('1'));

    let retry = fx.post("/v1/demo/large", ALICE, Some("big"), "{}").await;
    assert_eq!(retry.status, StatusCode::OK);
    assert!(!retry.replayed());
    assert_eq!(retry.body.len(), MAX_STORED_BODY_BYTES + 1);
    assert!(retry.body.starts_with('2'), "the handler ran again");
    assert_eq!(fx.runs(), 2);
}

/// A table whose every call fails as a throttled or unreachable backend does.
#[derive(Debug)]
struct UnavailableTable;

fn down() -> StoreError {
    StoreError::Unavailable(anyhow::anyhow!("throttled"))
}

#[async_trait]
impl Table for UnavailableTable {
    async fn get(&self, _: &ItemKey) -> Result<Option<Item>, StoreError> {
        Err(down())
    }
    async fn put(&self, _: &Item, _: Condition) -> Result<(), StoreError> {
        Err(down())
    }
    async fn delete(&self, _: &ItemKey, _: Condition) -> Result<Option<Item>, StoreError> {
        Err(down())
    }
    async fn query(&self, _: &Query) -> Result<Page, StoreError> {
        Err(down())
    }
    async fn add(&self, _: &Add) -> Result<i64, StoreError> {
        Err(down())
    }
    async fn upsert(&self, _: &Item) -> Result<u64, StoreError> {
        Err(down())
    }
    async fn transact(&self, _: &[Write]) -> Result<(), StoreError> {
        Err(down())
    }
    async fn scan(&self, _: u32, _: Option<String>) -> Result<Page, StoreError> {
        Err(down())
    }
    async fn put_batch(&self, _: &[Item]) -> Result<(), StoreError> {
        Err(down())
    }
}

/// Not a storage behaviour (no backend is involved), so it runs once.
#[tokio::test]
async fn a_storage_failure_is_503_and_the_handler_does_not_run() {
    let mut fx = fx(TestPlatform::local().await).await;
    fx.app = fx.app_over(Arc::new(UnavailableTable));
    let reply = fx.post("/v1/demo/orders", ALICE, Some("k"), "{}").await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert_eq!(
        reply.json()["type"],
        "urn:constellation:problem:unavailable"
    );
    assert_eq!(reply.header("retry-after"), "1");
    assert!(!reply.body.contains("throttled"), "no internal detail");
    assert_eq!(fx.runs(), 0);
}

async fn a_body_over_the_route_limit_is_413_and_not_recorded(fx: Fx) {
    let body = format!(r#"{{"note":"{}"}}"#, "x".repeat(BODY_LIMIT));
    let reply = fx.post("/v1/demo/orders", ALICE, Some("huge"), &body).await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.body
    );
    assert_eq!(
        reply.json()["type"],
        "urn:constellation:problem:payload-too-large"
    );
    assert_eq!(fx.runs(), 0);
    assert_eq!(fx.record(ALICE, "POST /v1/demo/orders#huge").await, None);

    // Within the limit, the same key is still free.
    let ok = fx
        .post("/v1/demo/orders", ALICE, Some("huge"), r#"{"note":"x"}"#)
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
}
