//! The orders contract on both backends. Catalog does not run here: the
//! tests answer `order.placed` as catalog would, by publishing
//! `stock.reserved` / `stock.rejected` on the bus and pumping the orders
//! worker. A probe service subscribes a queue to every `order.*` event, so
//! the tests read what orders published exactly as catalog would receive it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use constellation_core::auth::Role;
use constellation_core::orders::events;
use constellation_platform::DomainEvent;
use constellation_platform::queue::QueueReceiver;
use constellation_testkit::http::{Reply, TestApp, TestPlatform};
use constellation_testkit::services::TestServices;
use constellation_web::host::{
    BoxFuture, Context, EVENT_BUS, ResourceDef, ResourceKind, ServiceDef, SubscriptionDef,
};
use http::StatusCode;
use serde_json::{Value, json};

constellation_testkit::on_both_backends! {
    app = crate::spawn;
    bad_orders_name_the_field_and_place_nothing,
    placing_needs_an_idempotency_key_and_replays_the_first_answer,
    placing_commits_order_placed_with_the_order,
    members_see_their_own_and_staff_the_organizations,
    a_reservation_confirms_with_exact_prices_and_totals,
    a_rejection_keeps_catalogs_reason_and_product,
    cancel_and_ship_move_along_and_publish,
    every_illegal_transition_is_an_invalid_transition,
    duplicate_and_late_stock_events_change_nothing,
    a_reservation_after_a_cancel_is_released,
    wait_answers_as_soon_as_catalog_has,
    the_service_describes_itself,
    the_event_drafts_drive_the_functions,
}

const ORG: &str = "org-ord";

// ---------------------------------------------------------------------------
// The probe: a queue subscribed to what orders publishes.

const PROBE_QUEUE: &str = "ORDERS_TEST_PROBE_QUEUE_URL";
const PROBE_DLQ: &str = "ORDERS_TEST_PROBE_DLQ_URL";

const PROBE_RESOURCES: &[ResourceDef] = &[
    ResourceDef {
        var: PROBE_QUEUE,
        default: "orders-probe",
        kind: ResourceKind::Queue {
            visibility_timeout_secs: 30,
            max_receives: 5,
        },
    },
    ResourceDef {
        var: PROBE_DLQ,
        default: "orders-probe-dlq",
        kind: ResourceKind::DeadLetterQueue { of: PROBE_QUEUE },
    },
    EVENT_BUS,
];

const PROBE: ServiceDef = ServiceDef {
    name: "probe",
    resources: PROBE_RESOURCES,
    app: probe_app,
    consumers: &[],
    schedules: &[],
    subscriptions: &[SubscriptionDef {
        queue: PROBE_QUEUE,
        events: &[
            events::PLACED,
            events::CONFIRMED,
            events::REJECTED,
            events::CANCELLED,
            events::SHIPPED,
        ],
    }],
    openapi: utoipa::openapi::OpenApi::default,
};

fn probe_app(_: &Context) -> BoxFuture<'_, anyhow::Result<axum::Router>> {
    Box::pin(async { Ok(axum::Router::new()) })
}

#[derive(Debug)]
struct Harness {
    services: TestServices,
    probe: Arc<dyn QueueReceiver>,
}

type OrdersApp = TestApp<Harness>;

async fn spawn(env: TestPlatform) -> OrdersApp {
    let services = TestServices::start(&env, &[&constellation_orders::SERVICE, &PROBE])
        .await
        .unwrap();
    let ctx = services.context("probe");
    let name = ctx.resources.queue_name(PROBE_QUEUE).unwrap();
    let spec = PROBE_RESOURCES[0].queue_spec(name).unwrap();
    let probe = env
        .platform
        .receiver(&spec, ctx.resource(PROBE_QUEUE).unwrap())
        .await
        .unwrap();
    let router = services.router();
    TestApp::new(env, router, Harness { services, probe })
}

/// Everything orders published since the last call, in no particular order.
async fn published(app: &OrdersApp) -> Vec<DomainEvent> {
    let mut out = Vec::new();
    loop {
        let batch = app
            .service
            .probe
            .receive(10, Duration::from_millis(300))
            .await
            .unwrap();
        if batch.is_empty() {
            return out;
        }
        for m in batch {
            app.service.probe.delete(&m.receipt_handle).await.unwrap();
            out.push(DomainEvent::from_queue_body(&m.body).unwrap());
        }
    }
}

/// The types of the events published since the last call about `order`.
async fn published_about(app: &OrdersApp, order: &str) -> Vec<String> {
    let mut types: Vec<String> = published(app)
        .await
        .into_iter()
        .filter(|e| e.data["order_id"] == order)
        .map(|e| e.event_type)
        .collect();
    types.sort();
    types
}

// ---------------------------------------------------------------------------
// Catalog's side, simulated.

/// Publishes `event` on the bus as catalog would, and lets the orders
/// worker run; returns how many records it took off its queue.
async fn catalog_publishes(app: &OrdersApp, event: &DomainEvent) -> usize {
    let bus = app.service.services.context("orders").event_bus().unwrap();
    bus.publish(std::slice::from_ref(event)).await.unwrap();
    app.service.services.pump().await.unwrap()
}

/// `stock.reserved` for `order`, each line priced `(amount, currency)` in turn.
fn reserved(app: &OrdersApp, order: &Value, prices: &[(&str, &str)]) -> DomainEvent {
    let lines: Vec<Value> = order["lines"]
        .as_array()
        .unwrap()
        .iter()
        .zip(prices)
        .map(|(l, (amount, currency))| {
            json!({
                "product_id": l["product_id"],
                "sku": format!("SKU-{}", l["product_id"].as_str().unwrap()),
                "quantity": l["quantity"],
                "unit_price": {"amount": amount, "currency": currency},
            })
        })
        .collect();
    DomainEvent::new(
        events::STOCK_RESERVED,
        ORG,
        app.now(),
        json!({"order_id": order["id"], "lines": lines}),
    )
    .unwrap()
}

fn rejected(app: &OrdersApp, order: &Value, reason: &str, product: &str) -> DomainEvent {
    DomainEvent::new(
        events::STOCK_REJECTED,
        ORG,
        app.now(),
        json!({"order_id": order["id"], "reason": reason, "product_id": product}),
    )
    .unwrap()
}

// ---------------------------------------------------------------------------
// Requests.

fn token(app: &OrdersApp, role: Role) -> String {
    app.service.services.tokens.token(ORG, role)
}

fn key() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn place(app: &OrdersApp, token: &str, body: &Value) -> Reply {
    app.post("/v1/orders")
        .bearer(token)
        .header("idempotency-key", &key())
        .json(body)
        .await
}

fn two_lines() -> Value {
    json!({"lines": [
        {"product_id": "prod-a", "quantity": 3},
        {"product_id": "prod-b", "quantity": 1},
    ]})
}

async fn place_ok(app: &OrdersApp, token: &str) -> Value {
    let r = place(app, token, &two_lines()).await;
    r.assert_status(StatusCode::ACCEPTED);
    r.json()
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

async fn get(app: &OrdersApp, token: &str, order: &Value) -> Value {
    let r = app
        .get(&format!("/v1/orders/{}", id(order)))
        .bearer(token)
        .await;
    r.assert_status(StatusCode::OK);
    r.json()
}

async fn act(app: &OrdersApp, token: &str, order: &Value, action: &str) -> Reply {
    app.post(&format!("/v1/orders/{}/{action}", id(order)))
        .bearer(token)
        .await
}

/// A confirmed order of `token`'s, with the bus drained.
async fn confirmed_ok(app: &OrdersApp, token: &str) -> Value {
    let order = place_ok(app, token).await;
    catalog_publishes(
        app,
        &reserved(app, &order, &[("2.50", "EUR"), ("1", "EUR")]),
    )
    .await;
    let v = get(app, token, &order).await;
    assert_eq!(v["status"], "confirmed", "{v}");
    published(app).await;
    v
}

// ---------------------------------------------------------------------------
// The tests.

async fn bad_orders_name_the_field_and_place_nothing(app: OrdersApp) {
    let me = token(&app, Role::Member);
    let line = |p: &str, q: Value| json!({"product_id": p, "quantity": q});
    let fifty_one: Vec<Value> = (0..51).map(|i| line(&format!("p{i}"), json!(1))).collect();
    let cases = [
        ("lines", json!({"lines": []})),
        ("lines", json!({"lines": fifty_one})),
        ("lines", json!({"note": "no lines"})),
        (
            "lines",
            json!({"lines": [line("p1", json!(1)), line("p1", json!(2))]}),
        ),
        (
            "lines[0].quantity",
            json!({"lines": [line("p1", json!(0))]}),
        ),
        (
            "lines[1].quantity",
            json!({"lines": [line("p1", json!(1)), line("p2", json!(1001))]}),
        ),
        (
            "lines[0].quantity",
            json!({"lines": [line("p1", json!(-3))]}),
        ),
        (
            "lines[0].quantity",
            json!({"lines": [line("p1", json!(1.5))]}),
        ),
        (
            "lines[0].quantity",
            json!({"lines": [line("p1", json!(1e300))]}),
        ),
        (
            "lines[0].quantity",
            json!({"lines": [line("p1", json!(u64::MAX))]}),
        ),
        (
            "lines[0].quantity",
            json!({"lines": [line("p1", json!("2"))]}),
        ),
        (
            "lines[0].product_id",
            json!({"lines": [line("", json!(1))]}),
        ),
        (
            "lines[0].product_id",
            json!({"lines": [line("a b", json!(1))]}),
        ),
        (
            "lines[0].product_id",
            json!({"lines": [line(&"x".repeat(65), json!(1))]}),
        ),
        (
            "note",
            json!({"lines": [line("p1", json!(1))], "note": "é".repeat(501)}),
        ),
        (
            "note",
            json!({"lines": [line("p1", json!(1))], "note": "bell\u{7}"}),
        ),
        (
            "colour",
            json!({"lines": [line("p1", json!(1))], "colour": "red"}),
        ),
        (
            "colour",
            json!({"lines": [{"product_id": "p1", "quantity": 1, "colour": "red"}]}),
        ),
    ];
    for (field, body) in cases {
        let r = place(&app, &me, &body).await;
        r.assert_status(StatusCode::BAD_REQUEST);
        assert_eq!(r.field().as_deref(), Some(field), "{body}");
    }
    // 1000.0 is the integer 1000 to JSON Schema, and so to generated clients.
    let fifty: Vec<Value> = (0..50)
        .map(|i| line(&format!("p{i}"), json!(1000.0)))
        .collect();
    place(&app, &me, &json!({"lines": fifty, "note": "é".repeat(500)}))
        .await
        .assert_status(StatusCode::ACCEPTED);
    let list = app.get("/v1/orders").bearer(&me).await.json();
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        1,
        "only the valid one was placed"
    );
    let r = app.get("/v1/orders?sort=new").bearer(&me).await;
    r.assert_status(StatusCode::BAD_REQUEST);
    assert_eq!(r.field().as_deref(), Some("sort"));
    let r = app.get("/v1/orders?status=lost").bearer(&me).await;
    assert_eq!(r.field().as_deref(), Some("status"));
    let r = app.get("/v1/orders/not-an-id").bearer(&me).await;
    r.assert_status(StatusCode::BAD_REQUEST);
    assert_eq!(r.field().as_deref(), Some("id"));
    app.post("/v1/orders")
        .anonymous()
        .header("idempotency-key", &key())
        .json(&two_lines())
        .await
        .assert_unauthorized();
}

async fn placing_needs_an_idempotency_key_and_replays_the_first_answer(app: OrdersApp) {
    let me = token(&app, Role::Member);
    let r = app.post("/v1/orders").bearer(&me).json(&two_lines()).await;
    r.assert_status(StatusCode::PRECONDITION_REQUIRED);
    assert_eq!(
        r.problem()["type"],
        "urn:constellation:problem:idempotency-key-required"
    );

    let first = app
        .post("/v1/orders")
        .bearer(&me)
        .header("idempotency-key", "order-1")
        .json(&two_lines())
        .await;
    first.assert_status(StatusCode::ACCEPTED);
    let again = app
        .post("/v1/orders")
        .bearer(&me)
        .header("idempotency-key", "order-1")
        .json(&two_lines())
        .await;
    again.assert_status(StatusCode::ACCEPTED);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json(), first.json());
    let other = json!({"lines": [{"product_id": "prod-c", "quantity": 1}]});
    let r = app
        .post("/v1/orders")
        .bearer(&me)
        .header("idempotency-key", "order-1")
        .json(&other)
        .await;
    r.assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        r.problem()["type"],
        "urn:constellation:problem:idempotency-key-reused"
    );
    // Another account's identical key is its own.
    let you = token(&app, Role::Member);
    let yours = app
        .post("/v1/orders")
        .bearer(&you)
        .header("idempotency-key", "order-1")
        .json(&two_lines())
        .await;
    yours.assert_status(StatusCode::ACCEPTED);
    assert_ne!(id(&yours.json()), id(&first.json()));

    let mine = app.get("/v1/orders").bearer(&me).await.json();
    assert_eq!(mine["items"].as_array().unwrap().len(), 1, "placed once");
    let placed: Vec<DomainEvent> = published(&app)
        .await
        .into_iter()
        .filter(|e| e.event_type == events::PLACED)
        .collect();
    assert_eq!(placed.len(), 2, "one order.placed per order: {placed:?}");
}

async fn placing_commits_order_placed_with_the_order(app: OrdersApp) {
    let me = token(&app, Role::Member);
    let r = place(
        &app,
        &me,
        &json!({"lines": [{"product_id": "prod-a", "quantity": 3}], "note": "  leave at the door "}),
    )
    .await;
    r.assert_status(StatusCode::ACCEPTED);
    let v = r.json();
    assert_eq!(
        r.header("location"),
        Some(format!("/v1/orders/{}", id(&v)).as_str())
    );
    let id_ = id(&v);
    assert_eq!(id_.len(), 32);
    assert!(
        id_.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(v["status"], "pending");
    assert_eq!(v["note"], "leave at the door");
    assert_eq!(v["total"], Value::Null);
    assert_eq!(v["reason"], Value::Null);
    assert_eq!(
        v["lines"],
        json!([{"product_id": "prod-a", "quantity": 3, "sku": null, "unit_price": null, "line_total": null}])
    );
    for field in ["placed_by", "created_at", "updated_at"] {
        assert!(v[field].is_string(), "{field}: {v}");
    }
    assert_eq!(get(&app, &me, &v).await, v);

    let events = published(&app).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.event_type, events::PLACED);
    assert_eq!(e.org, ORG);
    assert_eq!(
        e.data,
        json!({"order_id": id_, "placed_by": v["placed_by"], "lines": [{"product_id": "prod-a", "quantity": 3}]})
    );
}

async fn members_see_their_own_and_staff_the_organizations(app: OrdersApp) {
    let alice = token(&app, Role::Member);
    let bob = token(&app, Role::Member);
    let staff = token(&app, Role::Staff);
    let outsider = app.service.services.tokens.token("org-other", Role::Owner);
    let a = place_ok(&app, &alice).await;
    app.advance(time::Duration::milliseconds(5));
    let b = place_ok(&app, &bob).await;
    app.advance(time::Duration::milliseconds(5));
    let a2 = place_ok(&app, &alice).await;
    catalog_publishes(&app, &rejected(&app, &a2, "insufficient-stock", "prod-a")).await;

    let path = format!("/v1/orders/{}", id(&a));
    for (who, status) in [
        (&bob, StatusCode::NOT_FOUND),
        (&outsider, StatusCode::NOT_FOUND),
        (&staff, StatusCode::OK),
        (&alice, StatusCode::OK),
    ] {
        app.get(&path).bearer(who).await.assert_status(status);
    }
    act(&app, &bob, &a, "cancel")
        .await
        .assert_status(StatusCode::NOT_FOUND);
    act(&app, &outsider, &a, "cancel")
        .await
        .assert_status(StatusCode::NOT_FOUND);
    act(&app, &outsider, &a, "ship")
        .await
        .assert_status(StatusCode::NOT_FOUND);

    let ids = |v: Value| -> Vec<String> { v["items"].as_array().unwrap().iter().map(id).collect() };
    assert_eq!(
        ids(app.get("/v1/orders").bearer(&alice).await.json()),
        [id(&a2), id(&a)],
        "newest first"
    );
    assert_eq!(
        ids(app.get("/v1/orders").bearer(&staff).await.json()),
        [id(&a2), id(&b), id(&a)]
    );
    assert!(ids(app.get("/v1/orders").bearer(&outsider).await.json()).is_empty());
    let alices = a["placed_by"].as_str().unwrap();
    let bobs = b["placed_by"].as_str().unwrap();
    let r = app
        .get(&format!("/v1/orders?placed_by={bobs}"))
        .bearer(&alice)
        .await;
    r.assert_status(StatusCode::FORBIDDEN);
    r.problem();
    assert_eq!(
        ids(app
            .get(&format!("/v1/orders?placed_by={alices}"))
            .bearer(&alice)
            .await
            .json()),
        [id(&a2), id(&a)]
    );
    assert_eq!(
        ids(app
            .get(&format!("/v1/orders?placed_by={bobs}"))
            .bearer(&staff)
            .await
            .json()),
        [id(&b)]
    );
    assert_eq!(
        ids(app
            .get("/v1/orders?status=rejected")
            .bearer(&staff)
            .await
            .json()),
        [id(&a2)]
    );
    assert_eq!(
        ids(app
            .get(&format!("/v1/orders?status=pending&placed_by={alices}"))
            .bearer(&staff)
            .await
            .json()),
        [id(&a)]
    );

    // Pages follow the cursor to the end.
    let mut seen = Vec::new();
    let mut next = "/v1/orders?limit=2".to_owned();
    loop {
        let page = app.get(&next).bearer(&staff).await.json();
        seen.extend(ids(page.clone()));
        match page["next_cursor"].as_str() {
            Some(c) => next = format!("/v1/orders?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, [id(&a2), id(&b), id(&a)]);
    let r = app.get("/v1/orders?cursor=forged").bearer(&staff).await;
    r.assert_status(StatusCode::BAD_REQUEST);
    assert_eq!(r.field().as_deref(), Some("cursor"));
}

async fn a_reservation_confirms_with_exact_prices_and_totals(app: OrdersApp) {
    let me = token(&app, Role::Member);
    let order = place_ok(&app, &me).await;
    published(&app).await;
    catalog_publishes(
        &app,
        &reserved(&app, &order, &[("19.99", "EUR"), ("0.01", "EUR")]),
    )
    .await;
    let v = get(&app, &me, &order).await;
    assert_eq!(v["status"], "confirmed");
    assert_eq!(v["total"], json!({"amount": "59.98", "currency": "EUR"}));
    assert_eq!(v["reason"], Value::Null);
    assert_eq!(
        v["lines"],
        json!([
            {"product_id": "prod-a", "quantity": 3, "sku": "SKU-prod-a",
             "unit_price": {"amount": "19.99", "currency": "EUR"},
             "line_total": {"amount": "59.97", "currency": "EUR"}},
            {"product_id": "prod-b", "quantity": 1, "sku": "SKU-prod-b",
             "unit_price": {"amount": "0.01", "currency": "EUR"},
             "line_total": {"amount": "0.01", "currency": "EUR"}},
        ])
    );
    let events = published(&app).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event_type, events::CONFIRMED);
    assert_eq!(events[0].data["order_id"], id(&order));
    assert_eq!(
        events[0].data["total"],
        json!({"amount": "59.98", "currency": "EUR"})
    );

    // Currencies keep their own decimals, and large totals stay exact.
    let big = place(
        &app,
        &me,
        &json!({"lines": [
            {"product_id": "k1", "quantity": 1000},
            {"product_id": "k2", "quantity": 7},
        ]}),
    )
    .await
    .json();
    catalog_publishes(
        &app,
        &reserved(&app, &big, &[("1000000", "KWD"), ("0.005", "KWD")]),
    )
    .await;
    let v = get(&app, &me, &big).await;
    assert_eq!(
        v["total"],
        json!({"amount": "1000000000.035", "currency": "KWD"})
    );
    assert_eq!(v["lines"][0]["unit_price"]["amount"], "1000000.000");
    assert_eq!(v["lines"][1]["line_total"]["amount"], "0.035");
}

async fn a_rejection_keeps_catalogs_reason_and_product(app: OrdersApp) {
    let me = token(&app, Role::Member);
    let order = place_ok(&app, &me).await;
    published(&app).await;
    catalog_publishes(
        &app,
        &rejected(&app, &order, "insufficient-stock", "prod-b"),
    )
    .await;
    let v = get(&app, &me, &order).await;
    assert_eq!(v["status"], "rejected");
    assert_eq!(v["reason"], "insufficient-stock");
    assert_eq!(v["rejected_product_id"], "prod-b");
    assert_eq!(v["total"], Value::Null);
    assert_eq!(v["lines"][0]["unit_price"], Value::Null);
    let events = published(&app).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event_type, events::REJECTED);
    assert_eq!(events[0].data["reason"], "insufficient-stock");
    assert_eq!(events[0].data["product_id"], "prod-b");
}

async fn cancel_and_ship_move_along_and_publish(app: OrdersApp) {
    let me = token(&app, Role::Member);
    let staff = token(&app, Role::Staff);

    // The placer cancels a pending order.
    let pending = place_ok(&app, &me).await;
    published(&app).await;
    let r = act(&app, &me, &pending, "cancel").await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.json()["status"], "cancelled");
    assert_eq!(get(&app, &me, &pending).await["status"], "cancelled");
    assert_eq!(
        published_about(&app, &id(&pending)).await,
        [events::CANCELLED]
    );

    // Staff cancel someone's confirmed order; its prices stay.
    let confirmed = confirmed_ok(&app, &me).await;
    let r = act(&app, &staff, &confirmed, "cancel").await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.json()["status"], "cancelled");
    assert_eq!(
        r.json()["total"],
        json!({"amount": "8.50", "currency": "EUR"})
    );
    assert_eq!(
        published_about(&app, &id(&confirmed)).await,
        [events::CANCELLED]
    );

    // Only staff ship, and only confirmed orders.
    let confirmed = confirmed_ok(&app, &me).await;
    let r = act(&app, &me, &confirmed, "ship").await;
    r.assert_status(StatusCode::FORBIDDEN);
    r.problem();
    let r = act(&app, &token(&app, Role::Admin), &confirmed, "ship").await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.json()["status"], "shipped");
    assert_eq!(get(&app, &me, &confirmed).await["status"], "shipped");
    let events = published(&app).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event_type, events::SHIPPED);
    // The shipped event names the placer and the exact total (for comms'
    // notification and daily report), besides the order catalog reads.
    assert_eq!(
        events[0].data,
        json!({"order_id": id(&confirmed), "placed_by": confirmed["placed_by"], "total": confirmed["total"]})
    );

    // An Idempotency-Key on ship replays the first answer.
    let confirmed = confirmed_ok(&app, &me).await;
    let path = format!("/v1/orders/{}/ship", id(&confirmed));
    let first = app
        .post(&path)
        .bearer(&staff)
        .header("idempotency-key", "ship-1")
        .await;
    first.assert_status(StatusCode::OK);
    let again = app
        .post(&path)
        .bearer(&staff)
        .header("idempotency-key", "ship-1")
        .await;
    again.assert_status(StatusCode::OK);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(published(&app).await.len(), 1, "shipped once");
}

async fn every_illegal_transition_is_an_invalid_transition(app: OrdersApp) {
    let me = token(&app, Role::Member);
    let staff = token(&app, Role::Staff);
    let pending = place_ok(&app, &me).await;
    let rejected_ = place_ok(&app, &me).await;
    catalog_publishes(
        &app,
        &rejected(&app, &rejected_, "unknown-product", "prod-a"),
    )
    .await;
    let cancelled = place_ok(&app, &me).await;
    act(&app, &me, &cancelled, "cancel")
        .await
        .assert_status(StatusCode::OK);
    let shipped = confirmed_ok(&app, &me).await;
    act(&app, &staff, &shipped, "ship")
        .await
        .assert_status(StatusCode::OK);
    published(&app).await;

    for (order, status, action) in [
        (&pending, "pending", "ship"),
        (&rejected_, "rejected", "cancel"),
        (&rejected_, "rejected", "ship"),
        (&cancelled, "cancelled", "cancel"),
        (&cancelled, "cancelled", "ship"),
        (&shipped, "shipped", "cancel"),
        (&shipped, "shipped", "ship"),
    ] {
        let r = act(&app, &staff, order, action).await;
        r.assert_status(StatusCode::CONFLICT);
        let p = r.problem();
        assert_eq!(
            p["type"], "urn:constellation:problem:invalid-transition",
            "{action} {status}"
        );
        assert_eq!(p["current_status"], status, "{action} {status}");
        assert_eq!(get(&app, &me, order).await["status"], status, "unchanged");
    }
    assert!(published(&app).await.is_empty(), "nothing published");
}

async fn duplicate_and_late_stock_events_change_nothing(app: OrdersApp) {
    let me = token(&app, Role::Member);
    let order = place_ok(&app, &me).await;
    let reservation = reserved(&app, &order, &[("19.99", "EUR"), ("0.01", "EUR")]);
    catalog_publishes(&app, &reservation).await;
    let confirmed = get(&app, &me, &order).await;
    assert_eq!(confirmed["status"], "confirmed");
    published(&app).await;

    // The same event again, a second reservation at other prices, a late rejection.
    catalog_publishes(&app, &reservation).await;
    catalog_publishes(&app, &reserved(&app, &order, &[("1", "EUR"), ("1", "EUR")])).await;
    catalog_publishes(
        &app,
        &rejected(&app, &order, "insufficient-stock", "prod-a"),
    )
    .await;
    assert_eq!(get(&app, &me, &order).await, confirmed);
    assert!(published(&app).await.is_empty(), "nothing published");

    // A rejected order stays rejected, whatever comes after.
    let other = place_ok(&app, &me).await;
    let rejection = rejected(&app, &other, "archived-product", "prod-b");
    catalog_publishes(&app, &rejection).await;
    let was = get(&app, &me, &other).await;
    published(&app).await;
    catalog_publishes(&app, &rejection).await;
    catalog_publishes(&app, &reserved(&app, &other, &[("1", "EUR"), ("1", "EUR")])).await;
    assert_eq!(get(&app, &me, &other).await, was);
    assert!(published(&app).await.is_empty(), "nothing published");

    // Answers about orders that do not exist are dropped, not retried.
    let ghost = json!({"id": "0".repeat(32), "lines": [{"product_id": "p", "quantity": 1}]});
    assert_eq!(
        catalog_publishes(&app, &reserved(&app, &ghost, &[("1", "EUR")])).await,
        1
    );
}

async fn a_reservation_after_a_cancel_is_released(app: OrdersApp) {
    let me = token(&app, Role::Member);
    let order = place_ok(&app, &me).await;
    act(&app, &me, &order, "cancel")
        .await
        .assert_status(StatusCode::OK);
    assert_eq!(
        published_about(&app, &id(&order)).await,
        [events::CANCELLED, events::PLACED]
    );

    // Catalog reserved before it saw the cancel: orders hands the stock back.
    let late = reserved(&app, &order, &[("19.99", "EUR"), ("0.01", "EUR")]);
    catalog_publishes(&app, &late).await;
    let v = get(&app, &me, &order).await;
    assert_eq!(v["status"], "cancelled");
    assert_eq!(v["total"], Value::Null, "a cancelled order is not priced");
    assert_eq!(
        published_about(&app, &id(&order)).await,
        [events::CANCELLED]
    );
    // A redelivery of that reservation releases nothing twice.
    catalog_publishes(&app, &late).await;
    assert!(published(&app).await.is_empty());

    // A duplicate reservation of an order cancelled after it was
    // confirmed: the cancel already released it.
    let confirmed = confirmed_ok(&app, &me).await;
    act(&app, &me, &confirmed, "cancel")
        .await
        .assert_status(StatusCode::OK);
    published(&app).await;
    catalog_publishes(
        &app,
        &reserved(&app, &confirmed, &[("2.50", "EUR"), ("1", "EUR")]),
    )
    .await;
    assert!(published(&app).await.is_empty());
}

async fn wait_answers_as_soon_as_catalog_has(app: OrdersApp) {
    let me = token(&app, Role::Member);
    let order = place_ok(&app, &me).await;
    let path = format!("/v1/orders/{}", id(&order));
    for bad in ["21", "-1", "1.5", "soon", ""] {
        let r = app.get(&format!("{path}?wait={bad}")).bearer(&me).await;
        r.assert_status(StatusCode::BAD_REQUEST);
        assert_eq!(r.field().as_deref(), Some("wait"), "wait={bad}");
    }

    // Without an answer, the wait ends after N seconds with the order pending.
    let started = Instant::now();
    let r = app.get(&format!("{path}?wait=1")).bearer(&me).await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.json()["status"], "pending");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_secs(3),
        "{waited:?}"
    );

    // Catalog answers 300 ms into a 20-second wait: the GET answers then.
    let started = Instant::now();
    let (r, ()) = tokio::join!(
        async { app.get(&format!("{path}?wait=20")).bearer(&me).await },
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let reservation = reserved(&app, &order, &[("19.99", "EUR"), ("0.01", "EUR")]);
            catalog_publishes(&app, &reservation).await;
        }
    );
    let waited = started.elapsed();
    r.assert_status(StatusCode::OK);
    assert_eq!(r.json()["status"], "confirmed");
    assert_eq!(r.json()["total"]["amount"], "59.98");
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(2),
        "{waited:?}"
    );

    // An order that has left pending answers at once.
    let started = Instant::now();
    let r = app.get(&format!("{path}?wait=20")).bearer(&me).await;
    assert_eq!(r.json()["status"], "confirmed");
    assert!(started.elapsed() < Duration::from_secs(1));
    // Waiting does not open other people's orders.
    app.get(&format!("{path}?wait=1"))
        .bearer(&token(&app, Role::Member))
        .await
        .assert_status(StatusCode::NOT_FOUND);
}

async fn the_service_describes_itself(app: OrdersApp) {
    let health = app.get("/v1/orders/health").anonymous().await;
    health.assert_status(StatusCode::OK);
    assert_eq!(health.json()["service"], "orders");
    let doc = app.get("/v1/orders/openapi.json").anonymous().await;
    doc.assert_status(StatusCode::OK);
    let doc = doc.json();
    let create = &doc["paths"]["/v1/orders"]["post"];
    assert_eq!(create["operationId"], "orders_create_order");
    let key = create["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Idempotency-Key")
        .expect("create_order documents Idempotency-Key");
    assert_eq!(key["required"], true);
    for status in ["202", "400", "401", "422", "428"] {
        assert!(create["responses"][status].is_object(), "{status}");
    }
    for (path, method) in [
        ("/v1/orders", "get"),
        ("/v1/orders/{id}", "get"),
        ("/v1/orders/{id}/cancel", "post"),
        ("/v1/orders/{id}/ship", "post"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(
            op["operationId"].as_str().unwrap().starts_with("orders_"),
            "{path}"
        );
        assert!(
            op["responses"]["409"].is_object() || method == "get",
            "{path}"
        );
    }
    let view = &doc["components"]["schemas"]["OrderView"]["properties"];
    for field in [
        "id",
        "status",
        "lines",
        "total",
        "reason",
        "placed_by",
        "created_at",
        "updated_at",
    ] {
        assert!(view[field].is_object(), "OrderView.{field}");
    }
}

/// The repository's sample Lambda events (`events/orders-*.json`)
/// drive the HTTP function and the worker as the Lambda runtime would.
async fn the_event_drafts_drive_the_functions(app: OrdersApp) {
    let draft = |name: &str| {
        std::fs::read_to_string(format!(
            "{}/../../events/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let staff = app.service.services.tokens.token("org-events", Role::Staff);
    let raw = draft("orders-create.json").replace("REPLACED-BY-TEST", &staff);
    let request = lambda_http::request::from_str(&raw).unwrap();
    let reply = app.send_request(request.map(axum::body::Body::new)).await;
    reply.assert_status(StatusCode::ACCEPTED);
    let order = reply.json();
    assert_eq!(order["note"], "rush");
    let health = lambda_http::request::from_str(&draft("orders-health.json")).unwrap();
    app.send_request(health.map(axum::body::Body::new))
        .await
        .assert_status(StatusCode::OK);

    // The draft's reservation, for the order just placed.
    let raw = draft("orders-worker-stock-reserved.json")
        .replace("89abcdef0123456789abcdef01234567", &id(&order));
    let event: aws_lambda_events::event::sqs::SqsEvent = serde_json::from_str(&raw).unwrap();
    let ctx = app.service.services.context("orders");
    let worker = ctx
        .worker(&constellation_orders::SERVICE.consumers[0])
        .await
        .unwrap();
    let response = worker.handle_batch(event).await;
    assert!(response.batch_item_failures.is_empty());
    let v = app
        .get(&format!("/v1/orders/{}", id(&order)))
        .bearer(&staff)
        .await
        .json();
    assert_eq!(v["status"], "confirmed");
    assert_eq!(v["total"], json!({"amount": "0.50", "currency": "EUR"}));
    assert_eq!(v["lines"][0]["sku"], "BOLT-M8");

    let schedule: constellation_platform::schedule::ScheduledEvent =
        serde_json::from_str(&draft("orders-outbox-schedule.json")).unwrap();
    let relay = constellation_orders::SERVICE
        .schedule(constellation_orders::RELAY)
        .unwrap();
    let report = (relay.handler)(ctx)
        .await
        .unwrap()
        .run(schedule)
        .await
        .unwrap();
    assert_eq!(report["refused"], 0, "{report}");
}
