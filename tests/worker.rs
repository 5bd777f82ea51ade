//! A sample worker path end to end through `serve`, on both backends: a
//! sample service (declared like any other, with a table, a queue with its
//! dead-letter queue, a subscription and a consumer) publishes an event from
//! an HTTP write through its outbox; the bus routes it to the queue; serve's
//! runner hands it to the worker's batch handler; the effect is applied once
//! even when the event is delivered twice; a permanent failure lands in the
//! dead-letter queue at once, a retryable one after the max receives, and
//! `redrive` brings it back to be processed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use constellation::serve::{ServeConfig, Server};
use constellation_platform::config::{BackendKind, Platform};
use constellation_platform::inbox::Inbox;
use constellation_platform::outbox::Outbox;
use constellation_platform::table::{Condition, Item, ItemKey, Query, Write};
use constellation_platform::worker::{EventHandler, Events, RecordError, RecordHandler};
use constellation_platform::{DomainEvent, QueueAdmin, Table};
use constellation_web::host::{
    BoxFuture, ConsumerDef, Context, EVENT_BUS, ResourceDef, ResourceKind, ServiceDef,
    SubscriptionDef,
};
use constellation_web::{ServiceInfo, service};
use serde_json::{Value, json};
use tokio::sync::oneshot;

const TABLE: &str = "SAMPLE_TABLE_NAME";
const QUEUE: &str = "SAMPLE_QUEUE_URL";
const DLQ: &str = "SAMPLE_DLQ_URL";
const CURSOR: &str = "SAMPLE_CURSOR_SECRET_ID";
const HAPPENED: &str = "sample.happened";

/// While false, records whose `mode` is `retry` fail retryably.
static RETRY_SUCCEEDS: AtomicBool = AtomicBool::new(false);
/// The two backends' runs share `RETRY_SUCCEEDS`, so they take turns.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const SAMPLE: ServiceDef = ServiceDef {
    name: "sample",
    resources: &[
        ResourceDef {
            var: TABLE,
            default: "constellation-sample",
            kind: ResourceKind::Table,
        },
        ResourceDef {
            var: QUEUE,
            default: "constellation-sample-events",
            kind: ResourceKind::Queue {
                visibility_timeout_secs: 1,
                max_receives: 2,
            },
        },
        ResourceDef {
            var: DLQ,
            default: "constellation-sample-events-dlq",
            kind: ResourceKind::DeadLetterQueue { of: QUEUE },
        },
        ResourceDef {
            var: CURSOR,
            default: "constellation/sample-cursor-key",
            kind: ResourceKind::GeneratedSecret,
        },
        EVENT_BUS,
    ],
    app: sample_app,
    consumers: &[ConsumerDef {
        name: "sample-worker",
        queue: QUEUE,
        dead_letter: DLQ,
        batch_size: 10,
        handler: sample_handler,
    }],
    schedules: &[],
    subscriptions: &[SubscriptionDef {
        queue: QUEUE,
        events: &[HAPPENED],
    }],
    openapi: utoipa::openapi::OpenApi::default,
};

#[derive(Clone)]
struct Sample {
    table: Arc<dyn Table>,
    outbox: Outbox,
    ctx: Context,
}

fn sample_app(ctx: &Context) -> BoxFuture<'_, anyhow::Result<Router>> {
    Box::pin(async move {
        let table = ctx.table(TABLE, CURSOR).await?;
        let outbox = Outbox::new(table.clone(), ctx.event_bus()?, ctx.platform.clock());
        let state = Sample {
            table,
            outbox,
            ctx: ctx.clone(),
        };
        let routes = Router::new()
            .route("/v1/sample/happenings/{mode}", post(happen))
            .route("/v1/sample/effects", get(effects))
            .with_state(state);
        Ok(service(
            ServiceInfo {
                name: "sample",
                metrics: ctx.metrics.clone(),
            },
            routes,
        ))
    })
}

/// Records a happening and publishes its event with it.
async fn happen(
    State(s): State<Sample>,
    axum::extract::Path(mode): axum::extract::Path<String>,
) -> axum::Json<Value> {
    let now = s.ctx.platform.clock().now();
    let event = DomainEvent::new(HAPPENED, "org-sample", now, json!({ "mode": mode })).unwrap();
    let write = Write::Put {
        item: Item::new(ItemKey::new("HAPPENING", &event.id)).with("mode", mode.as_str()),
        condition: Condition::NotExists,
    };
    s.outbox
        .commit(vec![write], std::slice::from_ref(&event))
        .await
        .unwrap();
    axum::Json(serde_json::to_value(&event).unwrap())
}

/// The effects applied so far: `{"<event id>": <mode>}`.
async fn effects(State(s): State<Sample>) -> axum::Json<Value> {
    let page = s.table.query(&Query::partition("EFFECT")).await.unwrap();
    let map: serde_json::Map<String, Value> = page
        .items
        .iter()
        .map(|i| {
            (
                i.key.sk.clone(),
                Value::from(i.str("mode").unwrap_or_default()),
            )
        })
        .collect();
    axum::Json(Value::Object(map))
}

#[derive(Debug)]
struct Apply {
    table: Arc<dyn Table>,
    inbox: Inbox,
}

#[async_trait]
impl EventHandler for Apply {
    async fn handle(&self, event: DomainEvent) -> Result<(), RecordError> {
        let mode = event.data["mode"].as_str().unwrap_or_default().to_owned();
        match mode.as_str() {
            "poison" => return Err(RecordError::permanent(anyhow::anyhow!("poison"))),
            "retry" if !RETRY_SUCCEEDS.load(Ordering::SeqCst) => {
                return Err(RecordError::retryable(anyhow::anyhow!("not yet")));
            }
            _ => {}
        }
        let effect = Write::Put {
            item: Item::new(ItemKey::new("EFFECT", &event.id)).with("mode", mode),
            condition: Condition::None,
        };
        match self
            .table
            .transact(&[self.inbox.claim(&event.id), effect])
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if Inbox::is_duplicate(&e, 0) => Ok(()),
            Err(e) => Err(RecordError::retryable(e)),
        }
    }
}

fn sample_handler(ctx: &Context) -> BoxFuture<'_, anyhow::Result<Arc<dyn RecordHandler>>> {
    Box::pin(async move {
        let table = ctx.table(TABLE, CURSOR).await?;
        let inbox = Inbox::new("sample-worker", ctx.platform.clock());
        Ok(Arc::new(Events(Apply { table, inbox })) as Arc<dyn RecordHandler>)
    })
}

struct Running {
    base: String,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn spawn(config: &ServeConfig) -> Running {
    let server = Server::bind_services(config, &[&SAMPLE]).await.unwrap();
    let base = format!("http://{}", server.local_addr);
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    Running { base, stop, done }
}

async fn effects_now(http: &reqwest::Client, base: &str) -> serde_json::Map<String, Value> {
    let text = http
        .get(format!("{base}/v1/sample/effects"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_object()
        .cloned()
        .unwrap()
}

/// Waits until `check` holds of the effects, or fails after `within`.
async fn wait_for(
    http: &reqwest::Client,
    base: &str,
    within: Duration,
    what: &str,
    check: impl Fn(&serde_json::Map<String, Value>) -> bool,
) -> serde_json::Map<String, Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let now = effects_now(http, base).await;
        if check(&now) {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: effects are {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn happen_now(http: &reqwest::Client, base: &str, mode: &str) -> DomainEvent {
    let text = http
        .post(format!("{base}/v1/sample/happenings/{mode}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

async fn the_worker_path(config: ServeConfig, platform: Platform) {
    let _turn = ONE_AT_A_TIME.lock().await;
    RETRY_SUCCEEDS.store(false, Ordering::SeqCst);
    let admin = platform.queue_admin();
    let running = spawn(&config).await;
    let (http, base) = (reqwest::Client::new(), running.base.clone());

    // An event from an HTTP write reaches the worker through the bus.
    let ok = happen_now(&http, &base, "ok").await;
    wait_for(&http, &base, Duration::from_secs(15), "applied", |e| {
        e.get(&ok.id) == Some(&json!("ok"))
    })
    .await;

    // Delivered again (at least once): applied once.
    platform
        .queue(&config_queue(&platform, &config).await)
        .send_batch(&[serde_json::to_string(&ok).unwrap()])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let effects = effects_now(&http, &base).await;
    assert_eq!(
        effects.len(),
        1,
        "a duplicate delivery added an effect: {effects:?}"
    );

    // A permanent failure goes to the dead-letter queue at once.
    let poison = happen_now(&http, &base, "poison").await;
    let dlq = "constellation-sample-events-dlq";
    let dead = wait_dead(&*admin, dlq, 1, Duration::from_secs(10)).await;
    assert_eq!(
        DomainEvent::from_queue_body(&dead[0]).unwrap().id,
        poison.id
    );
    // Drop it so the next step sees only its own dead letter.
    let drained = drain(&platform, &config, dlq).await;
    assert_eq!(drained, 1);

    // A retryable failure: after 2 receives SQS (or the local queue) moves
    // it to the dead-letter queue; redrive brings it back, and now it works.
    let retry = happen_now(&http, &base, "retry").await;
    let dead = wait_dead(&*admin, dlq, 1, Duration::from_secs(20)).await;
    assert_eq!(DomainEvent::from_queue_body(&dead[0]).unwrap().id, retry.id);
    assert!(!effects_now(&http, &base).await.contains_key(&retry.id));
    RETRY_SUCCEEDS.store(true, Ordering::SeqCst);
    assert_eq!(
        admin
            .redrive(dlq, "constellation-sample-events", 100)
            .await
            .unwrap(),
        1
    );
    wait_for(
        &http,
        &base,
        Duration::from_secs(15),
        "redriven and applied",
        |e| e.get(&retry.id) == Some(&json!("retry")),
    )
    .await;

    running.stop.send(()).unwrap();
    running.done.await.unwrap().unwrap();
}

/// The sample queue's reference on this platform (a URL in AWS).
async fn config_queue(platform: &Platform, config: &ServeConfig) -> String {
    match config.backend {
        BackendKind::Local => "constellation-sample-events".to_owned(),
        BackendKind::Aws => aws(platform, config)
            .await
            .queue_url("constellation-sample-events")
            .await
            .unwrap(),
    }
}

async fn aws(
    _platform: &Platform,
    config: &ServeConfig,
) -> constellation_platform::aws::AwsBackend {
    constellation_platform::aws::AwsBackend::from_sdk_config(
        &constellation_testkit::fixtures::emulator_sdk_config(
            config.aws_endpoint.as_deref().unwrap(),
        )
        .await,
    )
}

/// Waits until queue `name` shows `n` messages; returns their bodies.
async fn wait_dead(admin: &dyn QueueAdmin, name: &str, n: usize, within: Duration) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let bodies: Vec<String> = admin
            .peek(name, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.body)
            .collect();
        if bodies.len() >= n {
            return bodies;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} holds {bodies:?}, not {n} messages"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Receives and deletes everything in queue `name`; returns how many.
async fn drain(platform: &Platform, config: &ServeConfig, name: &str) -> usize {
    let reference = match config.backend {
        BackendKind::Local => name.to_owned(),
        BackendKind::Aws => aws(platform, config).await.queue_url(name).await.unwrap(),
    };
    let spec = constellation_platform::QueueSpec {
        name: name.to_owned(),
        visibility_timeout: Duration::from_secs(30),
        max_receives: u32::MAX,
        dead_letter: None,
    };
    let receiver = platform.receiver(&spec, &reference).await.unwrap();
    let mut n = 0;
    loop {
        let got = receiver
            .receive(10, Duration::from_millis(500))
            .await
            .unwrap();
        if got.is_empty() {
            return n;
        }
        for m in got {
            receiver.delete(&m.receipt_handle).await.unwrap();
            n += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_worker_path_on_the_local_backend() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServeConfig {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        backend: BackendKind::Local,
        data_dir: dir.path().to_path_buf(),
        provision: false,
        aws_endpoint: None,
        emf: false,
        rate_limits: true,
    };
    let platform = constellation::serve::platform(&config, String::new())
        .await
        .unwrap();
    the_worker_path(config, platform).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_worker_path_on_the_aws_backend() {
    let endpoint = constellation_testkit::fixtures::aws_endpoint().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = ServeConfig {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        backend: BackendKind::Aws,
        data_dir: dir.path().to_path_buf(),
        provision: true,
        aws_endpoint: Some(endpoint),
        emf: false,
        rate_limits: true,
    };
    let platform = constellation::serve::platform(&config, String::new())
        .await
        .unwrap();
    the_worker_path(config, platform).await;
}
