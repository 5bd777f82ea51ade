//! The Lambda event contract: every sample event in `events/` goes through
//! `lambda_http`'s API Gateway conversion (exactly what the Lambda runtime
//! does) into the kv router over real local storage, and the response is
//! checked. The events double as `cargo lambda invoke --data-file` inputs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use constellation_auth::signing::{SigningConfig, load_issuer};
use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Principal, Role};
use constellation_kv::KvResources;
use constellation_platform::clock::SystemClock;
use constellation_platform::config::{BackendKind, Platform};
use constellation_platform::observe::MetricsSink;
use constellation_platform::schedule::ScheduledEvent;
use constellation_platform::tokens::VerifierConfig;
use constellation_web::ServiceDef;
use constellation_web::host::{Context, DEFAULT_EVENT_BUS, Resources};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;

struct Invoked {
    status: u16,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

/// A service's context on a local platform, with its bus routes stored as
/// `serve` stores them.
async fn fx_context(platform: &Platform, service: &ServiceDef) -> Context {
    let resources = Resources::from_env(service.resources, BackendKind::Local).unwrap();
    platform
        .local_backend()
        .unwrap()
        .set_routes(DEFAULT_EVENT_BUS, &service.routes(&resources).unwrap())
        .await
        .unwrap();
    Context::new(
        platform.clone(),
        resources,
        MetricsSink::discard(),
        VerifierConfig::default(),
    )
}

/// An app on a fresh local platform, and a staff token for it (kv events).
struct FxKv {
    app: axum::Router,
    token: String,
    _dir: tempfile::TempDir,
}

async fn fx_kv() -> FxKv {
    fx_app(&constellation_kv::SERVICE).await.0
}

/// Feeds `events/<event_file>` to the app. Events carry the placeholder
/// `Bearer REPLACED-BY-TEST` (a token cannot be fixed in a file: it expires);
/// it is replaced with a token issued now.
async fn invoke(fx: &FxKv, event_file: &str) -> Invoked {
    let app = &fx.app;
    let path = format!("{}/events/{event_file}", env!("CARGO_MANIFEST_DIR"));
    let raw = std::fs::read_to_string(&path)
        .unwrap()
        .replace("REPLACED-BY-TEST", &fx.token);
    let request =
        lambda_http::request::from_str(&raw).unwrap_or_else(|e| panic!("{event_file}: {e}"));
    let response = app
        .clone()
        .oneshot(request.map(axum::body::Body::new))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Invoked {
        status,
        headers,
        body,
    }
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

#[tokio::test]
async fn health_event() {
    let app = fx_kv().await;
    let r = invoke(&app, "kv-health.json").await;
    assert_eq!(r.status, 200);
    assert_eq!(json(&r.body)["service"], "kv");
}

#[tokio::test]
async fn put_get_list_delete_events_round_trip() {
    let app = fx_kv().await;
    let put = invoke(&app, "kv-put.json").await;
    assert_eq!(put.status, 201, "{}", String::from_utf8_lossy(&put.body));
    let meta = json(&put.body);
    assert_eq!(
        (meta["namespace"].as_str(), meta["key"].as_str()),
        (Some("settings"), Some("theme"))
    );
    assert!(
        meta["expires_at"].is_string(),
        "the event's ?ttl=3600 is honoured"
    );

    let get = invoke(&app, "kv-get.json").await;
    assert_eq!(get.status, 200);
    assert_eq!(json(&get.body), serde_json::json!({"mode": "dark"}));
    assert_eq!(get.headers.get("content-type").unwrap(), "application/json");
    assert_eq!(
        get.headers.get("etag").unwrap(),
        meta["etag"].as_str().unwrap()
    );

    let list = invoke(&app, "kv-list.json").await;
    assert_eq!(list.status, 200);
    let keys: Vec<_> = json(&list.body)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].clone())
        .collect();
    assert_eq!(keys, ["theme"]);

    assert_eq!(invoke(&app, "kv-delete.json").await.status, 204);
    assert_eq!(invoke(&app, "kv-get.json").await.status, 404);
    assert_eq!(invoke(&app, "kv-delete.json").await.status, 404);
}

#[tokio::test]
async fn binary_put_event_keeps_bytes_and_the_encoded_slash() {
    let app = fx_kv().await;
    let raw: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/events/kv-put-binary.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let put = invoke(&app, "kv-put-binary.json").await;
    assert_eq!(put.status, 201, "{}", String::from_utf8_lossy(&put.body));
    let meta = json(&put.body);
    assert_eq!(meta["key"], "logo/small");
    assert_eq!(meta["content_type"], "image/png");
    use base64::Engine as _;
    let sent = base64::engine::general_purpose::STANDARD
        .decode(raw["body"].as_str().unwrap())
        .unwrap();
    assert_eq!(meta["size"].as_u64(), Some(sent.len() as u64));
}

/// A bus that is down: stands in for an EventBridge outage in this one test.
#[derive(Debug)]
struct DownBus;

#[async_trait::async_trait]
impl constellation_platform::EventBus for DownBus {
    async fn publish(
        &self,
        _: &[constellation_platform::DomainEvent],
    ) -> Result<(), constellation_platform::EventsError> {
        Err(constellation_platform::EventsError::Unavailable(
            anyhow::anyhow!("bus is down"),
        ))
    }
}

/// Runs the `kv-outbox` schedule's handler (what its Lambda function runs)
/// with the sample Scheduler event; returns how many events it sent.
async fn run_outbox(ctx: &Context, raw: &str) -> u64 {
    let schedule = constellation_kv::SERVICE.schedule("kv-outbox").unwrap();
    let handler = (schedule.handler)(ctx).await.unwrap();
    let event: ScheduledEvent = serde_json::from_str(raw).unwrap();
    assert_eq!(event.schedule, "kv-outbox");
    handler.run(event).await.unwrap()["sent"].as_u64().unwrap()
}

#[tokio::test]
async fn outbox_schedule_event_relays_events_stranded_by_a_queue_outage() {
    use constellation_core::OrgId;
    use constellation_core::kv::{Key, Namespace, Precondition};
    use constellation_kv::store::EntryForPut;
    use constellation_platform::{Clock, ManualClock};

    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    let platform = Platform::local(
        dir.path().to_path_buf(),
        String::new(),
        clock.clone() as Arc<dyn Clock>,
    )
    .unwrap();
    let res = KvResources::local();
    let table = platform
        .table(&res.table, &res.cursor_secret)
        .await
        .unwrap();
    let ctx = fx_context(&platform, &constellation_kv::SERVICE).await;
    let during_outage = constellation_kv::KvStore::new(table, Arc::new(DownBus), platform.clock());
    let put = EntryForPut {
        value: bytes::Bytes::from_static(b"v"),
        content_type: "text/plain".into(),
        ttl: None,
        precondition: Precondition::None,
    };
    let ns = Namespace::parse("ns").unwrap();
    let key = Key::parse("k").unwrap();
    during_outage
        .put(&OrgId::parse("org-events").unwrap(), &ns, &key, put)
        .await
        .expect("the write succeeds although its event could not be sent");
    let queue = platform.local_backend().unwrap();
    assert!(queue.peek(&res.changes_queue, 10).await.unwrap().is_empty());

    let raw = std::fs::read_to_string(format!(
        "{}/events/kv-outbox-schedule.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    assert_eq!(
        run_outbox(&ctx, &raw).await,
        0,
        "a record the writer may still publish is left alone"
    );

    clock.advance(time::Duration::seconds(31));
    assert_eq!(run_outbox(&ctx, &raw).await, 1);
    let events = queue.peek(&res.changes_queue, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    let body: Value = serde_json::from_str(&events[0].body).unwrap();
    assert_eq!(body["detail-type"], "kv.changed", "EventBridge's envelope");
    let data = &body["detail"]["data"];
    assert_eq!(
        (
            data["op"].as_str(),
            data["key"].as_str(),
            data["version"].as_u64()
        ),
        (Some("put"), Some("k"), Some(1))
    );
    assert_eq!(body["detail"]["org"], "org-events");
    assert_eq!(run_outbox(&ctx, &raw).await, 0, "sent once");
}

/// The `auth` function's events: register, log in, fetch the JWKS, through
/// the Lambda request conversion into the auth app (production hashing);
/// and the `auth-outbox` schedule's.
#[tokio::test]
async fn auth_events_register_login_and_publish_keys() {
    let dir = tempfile::tempdir().unwrap();
    let platform = Platform::local(
        dir.path().to_path_buf(),
        String::new(),
        Arc::new(SystemClock),
    )
    .unwrap();
    let def = &constellation_auth::SERVICE;
    let ctx = fx_context(&platform, def).await;
    let app = (def.app)(&ctx).await.unwrap();
    let fx = FxKv {
        app,
        token: String::new(),
        _dir: dir,
    };
    let registered = invoke(&fx, "auth-register.json").await;
    assert_eq!(
        registered.status,
        201,
        "{}",
        String::from_utf8_lossy(&registered.body)
    );
    assert_eq!(json(&registered.body)["account"]["role"], "owner");
    let again = invoke(&fx, "auth-register.json").await;
    assert_eq!(again.status, 409, "one email, one account");

    let login = invoke(&fx, "auth-login.json").await;
    assert_eq!(login.status, 200);
    let token = json(&login.body)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(token.split('.').count(), 3);

    let jwks = invoke(&fx, "auth-jwks.json").await;
    assert_eq!(jwks.status, 200);
    let keys = json(&jwks.body);
    assert_eq!(keys["keys"][0]["alg"], "EdDSA");
    assert!(
        keys["keys"][0].get("d").is_none(),
        "no private key material in the JWKS"
    );
    // Locally the registration's account.created was delivered in its own
    // transaction: nothing is left for the relay.
    let report = run_schedule_event(&ctx, def, "auth-outbox-schedule.json").await;
    assert_eq!(report["sent"], 0, "{report}");
}

/// A service's app on a fresh local platform, with the kv fixture's token
/// (a staff member of `org-events`), and the platform for its workers.
async fn fx_app(def: &ServiceDef) -> (FxKv, Platform) {
    let dir = tempfile::tempdir().unwrap();
    let platform = Platform::local(
        dir.path().to_path_buf(),
        "http://127.0.0.1:9".into(),
        Arc::new(SystemClock),
    )
    .unwrap();
    let app = (def.app)(&fx_context(&platform, def).await).await.unwrap();
    let issuer = load_issuer(&platform, &SigningConfig::default())
        .await
        .unwrap();
    let principal = Principal {
        account: AccountId::from_bytes([7; 16]),
        org: OrgId::parse("org-events").unwrap(),
        role: Role::Staff,
    };
    let token = issuer
        .issue(&principal, time::OffsetDateTime::now_utc())
        .token;
    (
        FxKv {
            app,
            token,
            _dir: dir,
        },
        platform,
    )
}

fn sqs_event(file: &str) -> aws_lambda_events::event::sqs::SqsEvent {
    let raw =
        std::fs::read_to_string(format!("{}/events/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{file}: {e}"))
}

async fn run_schedule_event(ctx: &Context, def: &ServiceDef, file: &str) -> Value {
    let raw =
        std::fs::read_to_string(format!("{}/events/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let event: ScheduledEvent = serde_json::from_str(&raw).unwrap();
    let schedule = def.schedule(&event.schedule).unwrap();
    (schedule.handler)(ctx)
        .await
        .unwrap()
        .run(event)
        .await
        .unwrap()
}

/// The media function's events, and its worker's: a `media.requested`
/// envelope records an upload, the SQS-wrapped S3 event of its object runs
/// the check (ten bytes that are no PNG: rejected), S3's test event is
/// accepted and ignored, and the outbox schedule runs.
#[tokio::test]
async fn media_events_through_the_function_and_the_worker() {
    let def = &constellation_media::SERVICE;
    let (fx, platform) = fx_app(def).await;
    let health = invoke(&fx, "media-health.json").await;
    assert_eq!(health.status, 200);
    assert_eq!(json(&health.body)["service"], "media");
    let created = invoke(&fx, "media-create-upload.json").await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let upload = json(&created.body);
    assert_eq!(upload["status"], "pending");
    assert_eq!(upload["upload"]["headers"]["content-type"], "image/jpeg");

    let ctx = fx_context(&platform, def).await;
    let worker = ctx
        .worker(def.consumer("media-worker").unwrap())
        .await
        .unwrap();
    let requested = worker
        .handle_batch(sqs_event("media-worker-requested.json"))
        .await;
    assert!(requested.batch_item_failures.is_empty());
    let bucket = platform.blob_store("constellation-media").await.unwrap();
    bucket
        .put(
            "uploads/org-events/0123456789abcdef0123456789abcdef",
            bytes::Bytes::from_static(b"not a png!"),
            "image/png",
        )
        .await
        .unwrap();
    let created = worker.handle_batch(sqs_event("media-worker-s3.json")).await;
    assert!(created.batch_item_failures.is_empty(), "{created:?}");
    let store = constellation_media::store(&ctx).await.unwrap();
    let principal = Principal {
        account: AccountId::from_bytes([7; 16]),
        org: OrgId::parse("org-events").unwrap(),
        role: Role::Staff,
    };
    let id = constellation_core::media::MediaId::parse("0123456789abcdef0123456789abcdef").unwrap();
    let media = store.get(&principal, &id).await.unwrap();
    assert_eq!(media.status.as_str(), "rejected");
    assert_eq!(media.reason.as_deref(), Some("type-mismatch"));
    let test_event = worker
        .handle_batch(sqs_event("media-worker-s3-test-event.json"))
        .await;
    assert!(test_event.batch_item_failures.is_empty());
    let report = run_schedule_event(&ctx, def, "media-outbox-schedule.json").await;
    assert_eq!(report["sent"], 0, "{report}");
}

/// The expenses function's events, and its worker's.
#[tokio::test]
async fn expenses_events_through_the_function_and_the_worker() {
    let def = &constellation_expenses::SERVICE;
    let (fx, platform) = fx_app(def).await;
    assert_eq!(invoke(&fx, "expenses-health.json").await.status, 200);
    let path = format!("{}/events/expenses-create.json", env!("CARGO_MANIFEST_DIR"));
    let today = time::OffsetDateTime::now_utc().date().to_string();
    let raw = std::fs::read_to_string(&path)
        .unwrap()
        .replace("REPLACED-BY-TEST", &fx.token)
        .replace("INCURRED-ON-BY-TEST", &today);
    let request = lambda_http::request::from_str(&raw).unwrap();
    let response = fx
        .app
        .clone()
        .oneshot(request.map(axum::body::Body::new))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(json(&body)["amount"], "12.50");
    let list = invoke(&fx, "expenses-list.json").await;
    assert_eq!(list.status, 200);
    assert_eq!(json(&list.body)["items"].as_array().unwrap().len(), 1);

    let ctx = fx_context(&platform, def).await;
    let worker = ctx
        .worker(def.consumer("expenses-worker").unwrap())
        .await
        .unwrap();
    let ready = worker
        .handle_batch(sqs_event("expenses-worker-media-ready.json"))
        .await;
    assert!(
        ready.batch_item_failures.is_empty(),
        "an event about an expense that is not there changes nothing"
    );
    let report = run_schedule_event(&ctx, def, "expenses-outbox-schedule.json").await;
    assert_eq!(report["sent"], 0, "{report}");
}

/// The catalog function's events, and its worker's: a product created
/// through the HTTP event, then the SQS-wrapped `order.placed` envelope for
/// an unknown product, refused (and refused once, delivered twice).
#[tokio::test]
async fn catalog_events_through_the_function_and_the_worker() {
    let def = &constellation_catalog::SERVICE;
    let (fx, platform) = fx_app(def).await;
    assert_eq!(invoke(&fx, "catalog-health.json").await.status, 200);
    let created = invoke(&fx, "catalog-create-product.json").await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    assert_eq!(json(&created.body)["price"]["amount"], "0.25");
    let ctx = fx_context(&platform, def).await;
    let worker = ctx
        .worker(def.consumer("catalog-worker").unwrap())
        .await
        .unwrap();
    for _ in 0..2 {
        let placed = worker
            .handle_batch(sqs_event("catalog-worker-order-placed.json"))
            .await;
        assert!(placed.batch_item_failures.is_empty(), "{placed:?}");
    }
    let report = run_schedule_event(&ctx, def, "catalog-outbox-schedule.json").await;
    assert_eq!(report["sent"], 0, "{report}");
}

/// The comms function's events, its worker's and its scheduler's: health
/// and an empty announcement list through the Lambda request conversion;
/// the SQS-wrapped `account.created` envelope from auth puts the account in
/// comms' directory copy (delivered twice, applied once); and both
/// Scheduler events, each picked by its `schedule`, run their handler as
/// the one `comms-scheduler` function does.
#[tokio::test]
async fn comms_events_through_the_function_the_worker_and_the_scheduler() {
    let def = &constellation_comms::SERVICE;
    let (fx, platform) = fx_app(def).await;
    let health = invoke(&fx, "comms-health.json").await;
    assert_eq!(health.status, 200);
    assert_eq!(json(&health.body)["service"], "comms");
    let list = invoke(&fx, "comms-list-announcements.json").await;
    assert_eq!(list.status, 200, "{}", String::from_utf8_lossy(&list.body));
    assert_eq!(
        json(&list.body),
        serde_json::json!({"items": [], "next_cursor": null}),
        "a fresh organization has no announcements"
    );

    let ctx = fx_context(&platform, def).await;
    let worker = ctx
        .worker(def.consumer("comms-worker").unwrap())
        .await
        .unwrap();
    for _ in 0..2 {
        let created = worker
            .handle_batch(sqs_event("comms-worker-account-created.json"))
            .await;
        assert!(created.batch_item_failures.is_empty(), "{created:?}");
    }
    let (store, _) = constellation_comms::store(&ctx).await.unwrap();
    let org = OrgId::parse("org-events").unwrap();
    let entry = store
        .entry(&org, "0a1b2c3d4e5f60718293a4b5c6d7e8f9")
        .await
        .unwrap()
        .expect("the account is in comms' directory");
    assert_eq!(entry.role, Role::Admin);
    assert_eq!(entry.email, "ada@example.com");
    assert!(!entry.disabled);

    let minutely = run_schedule_event(&ctx, def, "comms-scheduler-schedule.json").await;
    assert!(
        minutely.get("due").is_some() && minutely.get("outbox").is_some(),
        "{minutely}"
    );
    assert_eq!(minutely["outbox"]["sent"], 0, "{minutely}");
    let daily = run_schedule_event(&ctx, def, "comms-daily-report-schedule.json").await;
    assert_eq!(
        daily["date"], "2026-12-01",
        "the day before the run's scheduled_time: {daily}"
    );
    assert_eq!(daily["reports"], 0, "nothing happened that day: {daily}");
}
