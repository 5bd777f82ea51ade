//! The kv HTTP contract, exercised through the real router over real SQLite
//! storage: what a client sees (status, headers, body) and what is left in
//! the store and on the change queue.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Principal, Role};
use constellation_kv::{KvResources, KvStore};
use constellation_platform::config::Platform;
use constellation_platform::observe::MetricsSink;
use constellation_platform::tokens::{TokenConfig, TokenIssuer, load_issuer, load_verifier};
use constellation_platform::{Clock, ManualClock, QueueReceiver};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;

struct TestApp {
    router: Router,
    clock: Arc<ManualClock>,
    changes: Arc<dyn QueueReceiver>,
    store: Arc<KvStore>,
    issuer: TokenIssuer,
    /// A staff member of `org-a`, used by requests that bring no token of their own.
    token: String,
    _dir: tempfile::TempDir,
}

async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    let platform = Platform::local(
        dir.path().to_path_buf(),
        "http://127.0.0.1:9".into(),
        clock.clone() as Arc<dyn Clock>,
    )
    .unwrap();
    let res = KvResources::local();
    platform
        .local_backend()
        .unwrap()
        .set_routes(
            &res.event_bus,
            &[constellation_platform::Route::new(
                constellation_kv::events::CHANGED,
                &res.changes_queue,
            )],
        )
        .await
        .unwrap();
    let store = Arc::new(constellation_kv::store(&platform, &res).await.unwrap());
    let config = TokenConfig::default();
    let issuer = load_issuer(&platform, &config).await.unwrap();
    let verifier = load_verifier(&platform, &config).await.unwrap();
    let changes = platform
        .receiver(
            &KvResources::changes_queue_spec(&res.changes_queue),
            &res.changes_queue,
        )
        .await
        .unwrap();
    let token = fx_token(&issuer, &clock, "org-a", Role::Staff);
    TestApp {
        router: constellation_kv::app_with(store.clone(), verifier, MetricsSink::discard()),
        clock,
        changes,
        store,
        issuer,
        token,
        _dir: dir,
    }
}

fn fx_token(issuer: &TokenIssuer, clock: &ManualClock, org: &str, role: Role) -> String {
    let principal = Principal {
        account: AccountId::from_bytes(*uuid::Uuid::new_v4().as_bytes()),
        org: OrgId::parse(org).unwrap(),
        role,
    };
    issuer.issue(&principal, clock.now()).token
}

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn problem(&self) -> Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        let p = self.json();
        assert_eq!(p["status"].as_u64(), Some(u64::from(self.status.as_u16())));
        p
    }
}

impl TestApp {
    fn token_for(&self, org: &str, role: Role) -> String {
        fx_token(&self.issuer, &self.clock, org, role)
    }

    /// Sends `req`, as the default staff member unless it carries its own
    /// `authorization` (an empty one means: send no token at all).
    async fn call(&self, mut req: Request<Body>) -> Reply {
        let headers = req.headers_mut();
        match headers.get("authorization").map(|v| v.is_empty()) {
            None => {
                let bearer = format!("Bearer {}", self.token);
                headers.insert("authorization", bearer.parse().unwrap());
            }
            Some(true) => {
                headers.remove("authorization");
            }
            Some(false) => {}
        }
        let res: Response<Body> = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn put(&self, path: &str, body: &[u8], headers: &[(&str, &str)]) -> Reply {
        let mut req = Request::put(path);
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            req = req.header("content-type", "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.call(req.body(Body::from(body.to_vec())).unwrap())
            .await
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = Request::get(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.call(req.body(Body::empty()).unwrap()).await
    }

    async fn delete(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = Request::delete(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.call(req.body(Body::empty()).unwrap()).await
    }

    async fn change_events(&self) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let batch = self
                .changes
                .receive(10, Duration::from_millis(100))
                .await
                .unwrap();
            if batch.is_empty() {
                return events;
            }
            for m in batch {
                // The bus's envelope around the domain event; flattened here.
                let envelope: Value = serde_json::from_str(&m.body).unwrap();
                let event = &envelope["detail"];
                assert_eq!(event["type"], "kv.changed");
                let mut flat = event["data"].clone();
                flat["org"] = event["org"].clone();
                flat["time"] = event["time"].clone();
                flat["event_id"] = event["id"].clone();
                events.push(flat);
                self.changes.delete(&m.receipt_handle).await.unwrap();
            }
        }
    }
}

#[tokio::test]
async fn put_creates_then_replaces_and_get_returns_the_stored_bytes() {
    let app = spawn_app().await;
    let created = app
        .put("/v1/kv/settings/theme", br#"{"mode":"dark"}"#, &[])
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let meta = created.json();
    assert_eq!(meta["namespace"], "settings");
    assert_eq!(meta["key"], "theme");
    assert_eq!(meta["version"], 1);
    assert_eq!(meta["size"], 15);
    assert_eq!(meta["content_type"], "application/json");
    assert!(meta["expires_at"].is_null());
    assert!(meta["updated_at"].as_str().unwrap().contains('T'));
    let etag1 = created.header("etag").unwrap().to_owned();
    assert_eq!(meta["etag"], etag1.as_str());
    assert!(etag1.starts_with('"') && etag1.ends_with('"'));

    let replaced = app
        .put(
            "/v1/kv/settings/theme",
            b"light",
            &[("content-type", "text/plain")],
        )
        .await;
    assert_eq!(replaced.status, StatusCode::OK);
    assert_eq!(replaced.json()["version"], 2);
    let etag2 = replaced.header("etag").unwrap().to_owned();
    assert_ne!(etag1, etag2, "the etag changes on every write");

    let got = app.get("/v1/kv/settings/theme", &[]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, b"light");
    assert_eq!(got.header("content-type"), Some("text/plain"));
    assert_eq!(got.header("etag"), Some(etag2.as_str()));
    assert!(got.header("last-modified").unwrap().ends_with(" GMT"));

    let same = app
        .put(
            "/v1/kv/settings/theme",
            b"light",
            &[("content-type", "text/plain")],
        )
        .await;
    assert_ne!(
        same.header("etag"),
        Some(etag2.as_str()),
        "even an identical write changes the etag"
    );
}

#[tokio::test]
async fn conditional_reads_and_writes() {
    let app = spawn_app().await;
    let first = app
        .put("/v1/kv/ns/k", b"1", &[("if-none-match", "*")])
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let etag = first.header("etag").unwrap().to_owned();

    let again = app
        .put("/v1/kv/ns/k", b"2", &[("if-none-match", "*")])
        .await;
    assert_eq!(again.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        again.problem()["type"],
        "urn:constellation:problem:precondition-failed"
    );

    let cached = app.get("/v1/kv/ns/k", &[("if-none-match", &etag)]).await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
    assert!(cached.body.is_empty());

    let swapped = app.put("/v1/kv/ns/k", b"3", &[("if-match", &etag)]).await;
    assert_eq!(swapped.status, StatusCode::OK);
    let stale = app.put("/v1/kv/ns/k", b"4", &[("if-match", &etag)]).await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        app.get("/v1/kv/ns/k", &[]).await.body,
        b"3",
        "a failed CAS writes nothing"
    );

    let new_tag = swapped.header("etag").unwrap().to_owned();
    let wrong_delete = app.delete("/v1/kv/ns/k", &[("if-match", &etag)]).await;
    assert_eq!(wrong_delete.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(app.get("/v1/kv/ns/k", &[]).await.status, StatusCode::OK);
    let deleted = app.delete("/v1/kv/ns/k", &[("if-match", &new_tag)]).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/v1/kv/ns/k", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete("/v1/kv/ns/k", &[]).await.status,
        StatusCode::NOT_FOUND
    );

    let must_exist = app.put("/v1/kv/ns/k", b"5", &[("if-match", "*")]).await;
    assert_eq!(must_exist.status, StatusCode::PRECONDITION_FAILED);
}

#[tokio::test]
async fn concurrent_compare_and_swap_has_one_winner() {
    let app = spawn_app().await;
    let etag = app
        .put("/v1/kv/ns/counter", b"0", &[])
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let attempts = (0..10).map(|i| {
        let app_router = app.router.clone();
        let etag = etag.clone();
        let token = app.token.clone();
        async move {
            let req = Request::put("/v1/kv/ns/counter")
                .header("authorization", format!("Bearer {token}"))
                .header("if-match", etag)
                .body(Body::from(format!("{i}")))
                .unwrap();
            app_router.oneshot(req).await.unwrap().status()
        }
    });
    let statuses = futures::future::join_all(attempts).await;
    let wins = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let lost = statuses
        .iter()
        .filter(|s| **s == StatusCode::PRECONDITION_FAILED)
        .count();
    assert_eq!((wins, lost), (1, 9), "{statuses:?}");
}

#[tokio::test]
async fn ttl_expires_values() {
    let app = spawn_app().await;
    let put = app.put("/v1/kv/sessions/abc?ttl=60", b"{}", &[]).await;
    assert_eq!(put.status, StatusCode::CREATED);
    assert!(put.json()["expires_at"].is_string());
    assert_eq!(
        app.get("/v1/kv/sessions/abc", &[]).await.status,
        StatusCode::OK
    );
    app.clock.advance(time::Duration::seconds(61));
    assert_eq!(
        app.get("/v1/kv/sessions/abc", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    let listed = app.get("/v1/kv/sessions", &[]).await.json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 0);
    // An expired key can be created again with a create-only write.
    let again = app
        .put("/v1/kv/sessions/abc", b"{}", &[("if-none-match", "*")])
        .await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.json()["version"], 1);

    for bad in ["0", "-5", "soon", "31536001"] {
        let r = app
            .put(&format!("/v1/kv/sessions/x?ttl={bad}"), b"{}", &[])
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "ttl={bad}");
        assert_eq!(r.problem()["field"], "ttl");
    }
}

#[tokio::test]
async fn listing_pages_through_keys_in_byte_order() {
    let app = spawn_app().await;
    let mut keys: Vec<String> = (0..25).map(|i| format!("user/{i:02}")).collect();
    keys.push("other".into());
    for k in &keys {
        let path = format!("/v1/kv/ns/{}", k.replace('/', "%2F"));
        assert_eq!(
            app.put(&path, b"v", &[]).await.status,
            StatusCode::CREATED,
            "{k}"
        );
    }
    let mut seen = Vec::new();
    let mut url = "/v1/kv/ns?prefix=user%2F&limit=10".to_owned();
    let mut pages = 0;
    loop {
        let page = app.get(&url, &[]).await;
        assert_eq!(page.status, StatusCode::OK);
        let body = page.json();
        pages += 1;
        for item in body["items"].as_array().unwrap() {
            seen.push(item["key"].as_str().unwrap().to_owned());
            assert_eq!(item["size"], 1);
        }
        match body["next_cursor"].as_str() {
            Some(c) => url = format!("/v1/kv/ns?prefix=user%2F&limit=10&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).map(|i| format!("user/{i:02}")).collect();
    assert_eq!(seen, expected);

    let all = app.get("/v1/kv/ns", &[]).await.json();
    assert_eq!(all["items"].as_array().unwrap().len(), 26);
    assert_eq!(all["items"][0]["key"], "other");
}

#[tokio::test]
async fn bad_input_is_a_problem_naming_the_field_and_writes_nothing() {
    let app = spawn_app().await;
    let cases: Vec<(Reply, StatusCode, &str)> = vec![
        (
            app.put("/v1/kv/Bad_NS/k", b"v", &[]).await,
            StatusCode::BAD_REQUEST,
            "namespace",
        ),
        (
            app.put(&format!("/v1/kv/ns/{}", "k".repeat(1025)), b"v", &[])
                .await,
            StatusCode::BAD_REQUEST,
            "key",
        ),
        (
            app.put("/v1/kv/ns/a%0Ab", b"v", &[]).await,
            StatusCode::BAD_REQUEST,
            "key",
        ),
        (
            app.put("/v1/kv/ns/a%FFb", b"v", &[]).await,
            StatusCode::BAD_REQUEST,
            "key",
        ),
        (
            app.put("/v1/kv/ns/k", b"v", &[("if-match", "not-an-etag")])
                .await,
            StatusCode::BAD_REQUEST,
            "If-Match",
        ),
        (
            app.put("/v1/kv/ns/k", b"v", &[("if-match", "\"abc\"")])
                .await,
            StatusCode::BAD_REQUEST,
            "If-Match",
        ),
        (
            app.put("/v1/kv/ns/k", b"v", &[("content-type", "nonsense")])
                .await,
            StatusCode::BAD_REQUEST,
            "Content-Type",
        ),
        (
            app.put("/v1/kv/ns/k?color=red", b"v", &[]).await,
            StatusCode::BAD_REQUEST,
            "color",
        ),
        (
            app.put("/v1/kv/ns/k", &vec![b'x'; 256 * 1024 + 1], &[])
                .await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "value",
        ),
        (
            app.get("/v1/kv/ns?limit=1001", &[]).await,
            StatusCode::BAD_REQUEST,
            "limit",
        ),
        (
            app.get("/v1/kv/ns?cursor=forged", &[]).await,
            StatusCode::BAD_REQUEST,
            "cursor",
        ),
        (
            app.get("/v1/kv/ns?prefix=%07", &[]).await,
            StatusCode::BAD_REQUEST,
            "prefix",
        ),
        (
            app.get("/v1/kv/ns/k", &[("if-none-match", "garbage")])
                .await,
            StatusCode::BAD_REQUEST,
            "If-None-Match",
        ),
    ];
    for (i, (reply, status, field)) in cases.iter().enumerate() {
        assert_eq!(
            reply.status,
            *status,
            "case {i}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        let p = reply.problem();
        assert_eq!(p["field"], *field, "case {i}: {p}");
        assert!(
            p["detail"].as_str().unwrap().contains(field),
            "case {i}: {p}"
        );
        assert!(p["request_id"].is_string(), "case {i}");
    }
    let listed = app.get("/v1/kv/ns", &[]).await.json();
    assert_eq!(
        listed["items"],
        Value::Array(vec![]),
        "no bad request wrote anything"
    );
    assert!(
        app.change_events().await.is_empty(),
        "no bad request published an event"
    );

    // Exactly at the limit is fine.
    let max = app.put("/v1/kv/ns/big", &vec![b'x'; 256 * 1024], &[]).await;
    assert_eq!(max.status, StatusCode::CREATED);
}

#[tokio::test]
async fn keys_may_hold_encoded_slashes_and_unicode() {
    let app = spawn_app().await;
    let put = app
        .put(
            "/v1/kv/files/logo%2Fsmall%20%C3%BC.png",
            b"png",
            &[("content-type", "image/png")],
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED);
    assert_eq!(put.json()["key"], "logo/small ü.png");
    let got = app.get("/v1/kv/files/logo%2Fsmall%20%C3%BC.png", &[]).await;
    assert_eq!(got.body, b"png");
    assert_eq!(got.header("content-type"), Some("image/png"));
    // The decoded spelling (what API Gateway hands the function) is the same key.
    let decoded = app.get("/v1/kv/files/logo/small%20%C3%BC.png", &[]).await;
    assert_eq!(decoded.body, b"png");
}

#[tokio::test]
async fn every_write_and_delete_publishes_a_change_event() {
    let app = spawn_app().await;
    app.put("/v1/kv/ns/a", b"1", &[]).await;
    app.put("/v1/kv/ns/a", b"2", &[]).await;
    app.delete("/v1/kv/ns/a", &[]).await;
    app.put(
        "/v1/kv/ns/a",
        b"bad",
        &[("if-match", "\"00000000000000000000000000000000\"")],
    )
    .await;
    let mut events = app.change_events().await;
    events.sort_by_key(|e| {
        (
            e["time"].as_str().unwrap_or_default().to_owned(),
            e["version"].as_u64(),
        )
    });
    let summary: Vec<(String, u64)> = events
        .iter()
        .map(|e| {
            (
                e["op"].as_str().unwrap().to_owned(),
                e["version"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [("put".into(), 1), ("put".into(), 2), ("delete".into(), 3)],
        "a delete is a version of its own"
    );
    for e in &events {
        assert_eq!(e["namespace"], "ns");
        assert_eq!(e["key"], "a");
        assert_eq!(e["org"], "org-a");
        assert!(e["event_id"].is_string());
    }
    assert_eq!(
        app.store.relay_outbox(time::Duration::ZERO).await.unwrap(),
        0,
        "published events leave the outbox"
    );
}

#[tokio::test]
async fn health_openapi_request_ids_and_unknown_routes() {
    let app = spawn_app().await;
    let health = app
        .get("/v1/kv/health", &[("x-request-id", "req-123")])
        .await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json()["service"], "kv");
    assert_eq!(health.header("x-request-id"), Some("req-123"));
    let generated = app.get("/v1/kv/health", &[]).await;
    assert_eq!(generated.header("x-request-id").map(str::len), Some(36));

    let doc = app.get("/v1/kv/openapi.json", &[]).await.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["paths"]["/v1/kv/{namespace}/{key}"]["put"].is_object());

    let missing = app.get("/v1/nowhere", &[("x-request-id", "req-9")]).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.problem()["request_id"], "req-9");
    let wrong_method = app
        .call(Request::post("/v1/kv/ns/k").body(Body::empty()).unwrap())
        .await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    wrong_method.problem();
}

#[tokio::test]
async fn every_kv_route_requires_a_valid_token() {
    let app = spawn_app().await;
    for (method, path) in [
        ("GET", "/v1/kv/ns/k"),
        ("PUT", "/v1/kv/ns/k"),
        ("DELETE", "/v1/kv/ns/k"),
        ("GET", "/v1/kv/ns"),
    ] {
        for auth in ["", "Bearer not-a-jwt", "Basic dXNlcjpwdw=="] {
            let req = Request::builder()
                .method(method)
                .uri(path)
                .header("authorization", auth)
                .body(Body::empty())
                .unwrap();
            let r = app.call(req).await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {auth:?}"
            );
            assert!(
                r.header("www-authenticate").unwrap().starts_with("Bearer"),
                "{method} {path}"
            );
            r.problem();
        }
    }
    assert_eq!(
        app.get("/v1/kv/health", &[("authorization", "")])
            .await
            .status,
        StatusCode::OK,
        "health is public"
    );
}

#[tokio::test]
async fn members_read_and_staff_write() {
    let app = spawn_app().await;
    assert_eq!(
        app.put("/v1/kv/ns/k", b"v", &[]).await.status,
        StatusCode::CREATED
    );
    let member = format!("Bearer {}", app.token_for("org-a", Role::Member));
    assert_eq!(
        app.get("/v1/kv/ns/k", &[("authorization", &member)])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/v1/kv/ns", &[("authorization", &member)])
            .await
            .status,
        StatusCode::OK
    );
    let denied = app
        .put("/v1/kv/ns/k", b"w", &[("authorization", &member)])
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(
        denied.problem()["type"],
        "urn:constellation:problem:forbidden"
    );
    assert_eq!(
        app.delete("/v1/kv/ns/k", &[("authorization", &member)])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get("/v1/kv/ns/k", &[]).await.body,
        b"v",
        "a refused write changed nothing"
    );
    for role in [Role::Admin, Role::Owner] {
        let bearer = format!("Bearer {}", app.token_for("org-a", role));
        assert_eq!(
            app.put("/v1/kv/ns/k", b"x", &[("authorization", &bearer)])
                .await
                .status,
            StatusCode::OK,
            "{role}"
        );
    }
}

#[tokio::test]
async fn another_organizations_keys_answer_404() {
    let app = spawn_app().await;
    app.put("/v1/kv/shared/secret", b"org-a's", &[]).await;
    let b = format!("Bearer {}", app.token_for("org-b", Role::Owner));
    let as_b = [("authorization", b.as_str())];
    assert_eq!(
        app.get("/v1/kv/shared/secret", &as_b).await.status,
        StatusCode::NOT_FOUND,
        "read"
    );
    assert_eq!(
        app.delete("/v1/kv/shared/secret", &as_b).await.status,
        StatusCode::NOT_FOUND,
        "delete"
    );
    let listed = app.get("/v1/kv/shared", &as_b).await.json();
    assert_eq!(listed["items"], Value::Array(vec![]), "list");
    let etag_a = app
        .get("/v1/kv/shared/secret", &[])
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let cas = app
        .put(
            "/v1/kv/shared/secret",
            b"hijack",
            &[("authorization", b.as_str()), ("if-match", &etag_a)],
        )
        .await;
    assert_eq!(
        cas.status,
        StatusCode::PRECONDITION_FAILED,
        "CAS against another org's etag"
    );
    // The same namespace name in org B is a different store.
    assert_eq!(
        app.put("/v1/kv/shared/secret", b"org-b's", &as_b)
            .await
            .status,
        StatusCode::CREATED,
        "write"
    );
    assert_eq!(app.get("/v1/kv/shared/secret", &[]).await.body, b"org-a's");
    assert_eq!(
        app.get("/v1/kv/shared/secret", &as_b).await.body,
        b"org-b's"
    );
}
