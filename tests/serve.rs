//! `constellation serve` as a user runs it: a real listener, real HTTP, data
//! that survives a restart, change events on the local queue, and a graceful
//! shutdown that finishes in-flight writes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use constellation::serve::{ServeConfig, Server};
use constellation_auth::signing::{SigningConfig, load_issuer};
use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Principal, Role};
use constellation_platform::QueueReceiver as _;
use constellation_platform::clock::SystemClock;
use constellation_platform::config::{BackendKind, Platform};
use tokio::sync::oneshot;

struct Running {
    base: String,
    /// A staff token, issued with the keys the server verifies with.
    bearer: String,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn spawn_serve(data_dir: &Path) -> Running {
    spawn_with(ServeConfig {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        backend: BackendKind::Local,
        data_dir: data_dir.to_path_buf(),
        provision: false,
        aws_endpoint: None,
        emf: false,
        rate_limits: true,
    })
    .await
}

async fn spawn_with(config: ServeConfig) -> Running {
    let server = Server::bind(&config).await.unwrap();
    let platform = match config.backend {
        BackendKind::Local => Platform::local(
            config.data_dir.clone(),
            String::new(),
            std::sync::Arc::new(SystemClock),
        )
        .unwrap(),
        BackendKind::Aws => Platform::aws(
            constellation_platform::aws::AwsBackend::from_sdk_config(
                &constellation_testkit::fixtures::emulator_sdk_config(
                    config.aws_endpoint.as_deref().unwrap(),
                )
                .await,
            ),
            std::sync::Arc::new(SystemClock),
        ),
    };
    let issuer = load_issuer(&platform, &SigningConfig::default())
        .await
        .unwrap();
    let principal = Principal {
        account: AccountId::from_bytes([1; 16]),
        org: OrgId::parse("org-serve").unwrap(),
        role: Role::Staff,
    };
    let bearer = format!(
        "Bearer {}",
        issuer
            .issue(&principal, time::OffsetDateTime::now_utc())
            .token
    );
    let base = format!("http://{}", server.local_addr);
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    Running {
        base,
        bearer,
        stop,
        done,
    }
}

impl Running {
    /// A client that sends this server's staff token with every request.
    fn http(&self) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("authorization", self.bearer.parse().unwrap());
        reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap()
    }

    async fn shutdown(self) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.done)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_round_trip_survives_restart_and_publishes_changes() {
    let dir = tempfile::tempdir().unwrap();
    let first = spawn_serve(dir.path()).await;
    // The token stays good across the restart: the keys live in the data dir.
    let http = first.http();
    let put = http
        .put(format!("{}/v1/kv/app/greeting", first.base))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let etag = put.headers()["etag"].to_str().unwrap().to_owned();
    let put2 = http
        .put(format!("{}/v1/kv/app/other", first.base))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(put2.status(), 201);
    let del = http
        .delete(format!("{}/v1/kv/app/other", first.base))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    first.shutdown().await;

    let second = spawn_serve(dir.path()).await;
    let got = http
        .get(format!("{}/v1/kv/app/greeting", second.base))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(got.text().await.unwrap(), "hello");
    let list: serde_json::Value = serde_json::from_str(
        &http
            .get(format!("{}/v1/kv/app", second.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    second.shutdown().await;

    let platform = Platform::local(
        dir.path().to_path_buf(),
        String::new(),
        std::sync::Arc::new(SystemClock),
    )
    .unwrap();
    let events = platform
        .local_backend()
        .unwrap()
        .peek("constellation-kv-changes", 10)
        .await
        .unwrap();
    let ops: Vec<(String, String)> = events
        .iter()
        .map(|m| {
            let v: serde_json::Value = serde_json::from_str(&m.body).unwrap();
            assert_eq!(v["detail-type"], "kv.changed");
            let data = &v["detail"]["data"];
            (
                data["op"].as_str().unwrap().to_owned(),
                data["key"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        ops,
        [
            ("put".into(), "greeting".into()),
            ("put".into(), "other".into()),
            ("delete".into(), "other".into())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_acknowledged_writes() {
    let dir = tempfile::tempdir().unwrap();
    let running = spawn_serve(dir.path()).await;
    let http = running.http();
    let writes: Vec<_> = (0..20)
        .map(|i| {
            let http = http.clone();
            let url = format!("{}/v1/kv/load/k{i}", running.base);
            tokio::spawn(async move {
                http.put(url)
                    .body(vec![b'x'; 1024])
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    // Shut down with writes in flight, once at least one has been answered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !writes.iter().any(|w| w.is_finished()) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    running.shutdown().await;
    let mut acknowledged = Vec::new();
    let mut unanswered = Vec::new();
    for (i, w) in writes.into_iter().enumerate() {
        match w.await.unwrap() {
            Ok(201) => acknowledged.push(format!("k{i}")),
            Ok(status) => panic!("k{i}: shutting down answered {status}"),
            // Refused once the listener closed: never sent, so never acknowledged.
            Err(e) if e.is_connect() => {}
            // A connection accepted but not yet read is closed as idle by a
            // graceful shutdown: the client sees an error, and the write
            // must then not have happened (checked after the restart).
            Err(_) => unanswered.push(format!("k{i}")),
        }
    }
    assert!(
        !acknowledged.is_empty(),
        "no write was acknowledged before shutdown"
    );
    let again = spawn_serve(dir.path()).await;
    for key in &acknowledged {
        let r = http
            .get(format!("{}/v1/kv/load/{key}", again.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "acknowledged write {key} was lost");
    }
    for key in &unanswered {
        let r = http
            .get(format!("{}/v1/kv/load/{key}", again.base))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            404,
            "write {key} was applied but its answer was cut off by the shutdown"
        );
    }
    again.shutdown().await;
}

/// A clean shutdown leaves the database whole: its write-ahead log is
/// empty, and the database file alone holds every acknowledged write (so
/// the next process to open it, a function on its cold start, reads no log
/// back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_the_log_checkpointed() {
    let dir = tempfile::tempdir().unwrap();
    let running = spawn_serve(dir.path()).await;
    let http = running.http();
    for i in 0..5 {
        let r = http
            .put(format!("{}/v1/kv/ckpt/k{i}", running.base))
            .body(format!("value {i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let wal = dir.path().join("constellation.db-wal");
    assert!(
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) > 0,
        "the writes went to the log"
    );
    running.shutdown().await;
    assert_eq!(
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0),
        0,
        "the log still holds frames after shutdown"
    );

    // The database file alone, without its log: every write is there.
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.path().join("constellation.db"),
        copy.path().join("constellation.db"),
    )
    .unwrap();
    let again = spawn_serve(copy.path()).await;
    for i in 0..5 {
        let r = again
            .http()
            .get(format!("{}/v1/kv/ckpt/k{i}", again.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "k{i}");
        assert_eq!(r.text().await.unwrap(), format!("value {i}"));
    }
    again.shutdown().await;
}

#[test]
fn openapi_document_covers_every_service() {
    let doc = constellation::openapi();
    let json = serde_json::to_value(&doc).unwrap();
    assert!(json["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(json["paths"]["/v1/kv/{namespace}"]["get"].is_object());
    assert!(json["components"]["schemas"]["EntryView"].is_object());
}

/// `serve --backend aws --provision` against moto: the same process creates
/// its tables, queue (with DLQ), secrets, event bus and rule, then serves kv
/// from DynamoDB and its change events reach SQS through EventBridge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_provisions_and_runs_on_the_aws_backend() {
    let endpoint = constellation_testkit::fixtures::aws_endpoint().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let running = spawn_with(ServeConfig {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        backend: BackendKind::Aws,
        data_dir: dir.path().to_path_buf(),
        provision: true,
        aws_endpoint: Some(endpoint.clone()),
        emf: false,
        rate_limits: true,
    })
    .await;
    let http = running.http();
    let key = format!("k-{}", uuid::Uuid::new_v4().simple());
    let url = format!("{}/v1/kv/aws-e2e/{key}", running.base);
    let put = http
        .put(&url)
        .header("content-type", "text/plain")
        .body("on dynamodb")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let got = http.get(&url).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.text().await.unwrap(), "on dynamodb");
    assert_eq!(http.delete(&url).send().await.unwrap().status(), 204);
    assert_eq!(http.get(&url).send().await.unwrap().status(), 404);
    running.shutdown().await;

    let aws = constellation_platform::aws::AwsBackend::from_sdk_config(
        &constellation_testkit::fixtures::emulator_sdk_config(&endpoint).await,
    );
    let queue_url = aws
        .queue_url(constellation_kv::config::DEFAULT_CHANGES_QUEUE)
        .await
        .unwrap();
    let receiver = aws.receiver(&queue_url).await.unwrap();
    let mut ops = Vec::new();
    for _ in 0..10 {
        for m in receiver
            .receive(10, Duration::from_millis(200))
            .await
            .unwrap()
        {
            let v: serde_json::Value = serde_json::from_str(&m.body).unwrap();
            let data = &v["detail"]["data"];
            if data["key"] == key.as_str() {
                ops.push(data["op"].as_str().unwrap().to_owned());
            }
            receiver.delete(&m.receipt_handle).await.unwrap();
        }
        if ops.len() == 2 {
            break;
        }
    }
    ops.sort();
    assert_eq!(ops, ["delete", "put"]);
}

/// The flow a new user follows with curl: register, log in, use the access
/// token on kv, refresh, log out; all against `serve` over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_login_use_kv_refresh_logout() {
    let dir = tempfile::tempdir().unwrap();
    let running = spawn_serve(dir.path()).await;
    let http = reqwest::Client::new();
    let base = &running.base;
    let post = |path: &str, body: serde_json::Value| {
        http.post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let json = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        (status, v)
    };

    let (status, registered) = json(
        post("/v1/auth/register", serde_json::json!({"organization": "Acme", "email": "Ada@Example.com", "password": "correct horse battery"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{registered}");
    assert_eq!(registered["token_type"], "Bearer");
    assert_eq!(registered["account"]["email"], "ada@example.com");
    assert_eq!(registered["account"]["role"], "owner");

    let (status, login) = json(
        post(
            "/v1/auth/login",
            serde_json::json!({"email": "ada@example.com", "password": "correct horse battery"}),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{login}");
    let access = login["access_token"].as_str().unwrap().to_owned();
    let refresh = login["refresh_token"].as_str().unwrap().to_owned();

    let put = http
        .put(format!("{base}/v1/kv/notes/first"))
        .bearer_auth(&access)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let anonymous = http
        .get(format!("{base}/v1/kv/notes/first"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().contains_key("www-authenticate"));

    let (status, me) = json(
        http.get(format!("{base}/v1/auth/me"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(me["org"], registered["account"]["org"]);

    let (status, refreshed) = json(
        post(
            "/v1/auth/refresh",
            serde_json::json!({"refresh_token": refresh}),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{refreshed}");
    let new_refresh = refreshed["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(new_refresh, refresh);
    let got = http
        .get(format!("{base}/v1/kv/notes/first"))
        .bearer_auth(refreshed["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(got.text().await.unwrap(), "hello");

    let logout = http
        .post(format!("{base}/v1/auth/logout"))
        .bearer_auth(&access)
        .header("content-type", "application/json")
        .body(serde_json::json!({"refresh_token": new_refresh}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    let (status, _) = json(
        post(
            "/v1/auth/refresh",
            serde_json::json!({"refresh_token": new_refresh}),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 401, "a logged-out session cannot refresh");

    let jwks: serde_json::Value = serde_json::from_str(
        &http
            .get(format!("{base}/v1/auth/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
    running.shutdown().await;
}

/// `serve` applies API Gateway's route limits per caller: past the burst,
/// 429 problems with `Retry-After`; another caller is not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_past_their_limit_get_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let running = spawn_serve(dir.path()).await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/kv/health", running.base);
    let replies = futures::future::join_all((0..300).map(|_| {
        client
            .get(&url)
            .header("authorization", "Bearer caller-a")
            .send()
    }))
    .await;
    let limited: Vec<_> = replies
        .into_iter()
        .map(Result::unwrap)
        .filter(|r| r.status() == 429)
        .collect();
    assert!(
        !limited.is_empty(),
        "300 requests at once exceed the burst of 200"
    );
    let first = &limited[0];
    assert!(first.headers().get("retry-after").is_some());
    assert_eq!(first.headers()["content-type"], "application/problem+json");
    let other = client
        .get(&url)
        .header("authorization", "Bearer caller-b")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200, "another caller has its own budget");
    running.shutdown().await;
}
