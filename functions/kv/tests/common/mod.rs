//! kv's part of the shared HTTP harness: how to build the kv app on a test
//! platform (on AWS: a fresh table, change queue and cursor secret), and the
//! handles its tests reach past HTTP (the store, the change queue).

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::sync::Arc;
use std::time::Duration;

use constellation_core::auth::Role;
use constellation_kv::events::CHANGED;
use constellation_kv::{KvResources, KvStore};
use constellation_platform::observe::MetricsSink;
use constellation_platform::{QueueReceiver, Route, SecretValue};
use constellation_testkit::http::{TestApp, TestPlatform, TestTokens};
use serde_json::Value;

/// The organization of the default caller.
pub const ORG: &str = "org-a";

/// The kv app; requests carry a staff member of [`ORG`] unless they say otherwise.
pub type KvApp = TestApp<Kv>;

/// What kv's tests reach past HTTP.
#[derive(Debug)]
pub struct Kv {
    /// The store behind the router.
    pub store: Arc<KvStore>,
    /// The consuming side of the change queue.
    pub changes: Arc<dyn QueueReceiver>,
    /// Tokens for any organization and role.
    pub tokens: TestTokens,
}

/// Builds the kv app on `env`.
pub async fn spawn(env: TestPlatform) -> KvApp {
    let resources = match env.aws_backend() {
        None => {
            let resources = KvResources::local();
            let route = Route::new(CHANGED, &resources.changes_queue);
            env.platform
                .local_backend()
                .unwrap()
                .set_routes(&resources.event_bus, &[route])
                .await
                .unwrap();
            resources
        }
        Some(aws) => {
            let cursor_secret = env.name("kv-test/cursor-key");
            aws.ensure_secret(&cursor_secret, &SecretValue::new(env.name("cursor")))
                .await
                .unwrap();
            let queue = env.name("kv-test-changes");
            let spec = KvResources::changes_queue_spec(&queue);
            let table = env.name("kv-test");
            let bus = env.name("kv-test-bus");
            let (queue_url, (), ()) = tokio::try_join!(
                aws.ensure_queue(&spec),
                aws.ensure_table(&table),
                aws.ensure_event_bus(&bus)
            )
            .unwrap();
            aws.ensure_routes(&bus, &[Route::new(CHANGED, &queue)])
                .await
                .unwrap();
            KvResources {
                table,
                changes_queue: queue_url,
                cursor_secret,
                event_bus: bus,
            }
        }
    };
    let tokens = TestTokens::new(&env).await;
    let store = Arc::new(
        constellation_kv::store(&env.platform, &resources)
            .await
            .unwrap(),
    );
    let changes = env
        .platform
        .receiver(
            &KvResources::changes_queue_spec(&resources.changes_queue),
            &resources.changes_queue,
        )
        .await
        .unwrap();
    let router = constellation_kv::app_with(
        store.clone(),
        tokens.verifier(&env.platform).await,
        MetricsSink::discard(),
    );
    let staff = tokens.token(ORG, Role::Staff);
    TestApp::new(
        env,
        router,
        Kv {
            store,
            changes,
            tokens,
        },
    )
    .with_bearer(staff)
}

impl Kv {
    /// A token of a new account with `role` in `org`.
    pub fn token(&self, org: &str, role: Role) -> String {
        self.tokens.token(org, role)
    }

    /// Every change event on the queue, consumed.
    pub async fn change_events(&self) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let batch = self
                .changes
                .receive(10, Duration::from_millis(200))
                .await
                .unwrap();
            if batch.is_empty() {
                return events;
            }
            for m in batch {
                // The bus's envelope around the domain event, flattened to
                // the event's data plus its id, org and time.
                let envelope: Value = serde_json::from_str(&m.body).unwrap();
                assert_eq!(envelope["detail-type"], CHANGED);
                let event = &envelope["detail"];
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
