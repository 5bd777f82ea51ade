//! The catalog contract on both backends: suppliers, products, stock, and
//! the saga's stock side driven by order events on the bus (50 orders
//! racing for 10 units, every event delivered twice).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use constellation_core::auth::Role;
use constellation_core::orders::{OrderPlaced, OrderRef, PlacedLine, events};
use constellation_platform::DomainEvent;
use constellation_testkit::http::{Reply, TestApp, TestPlatform};
use constellation_testkit::services::TestServices;
use constellation_web::host::{
    BoxFuture, Context, EVENT_BUS, ResourceDef, ResourceKind, ServiceDef, SubscriptionDef,
};
use http::StatusCode;
use serde_json::{Value, json};

constellation_testkit::on_both_backends! {
    app = crate::spawn;
    suppliers_are_managed_by_staff_and_kept_while_named,
    products_have_unique_skus_even_under_concurrent_creates,
    bad_products_name_the_field_and_store_nothing,
    product_edits_need_if_match_and_listings_filter,
    stock_adjustments_never_go_below_reserved_and_are_idempotent,
    fifty_orders_for_ten_units_never_oversell_even_delivered_twice,
    orders_are_all_or_nothing_with_a_reason_naming_the_product,
    another_organizations_catalog_answers_404,
}

const ORG: &str = "org-cat";

/// A service that only listens: its queue receives the saga's answers and
/// low-stock alerts, so the tests can read what catalog published.
const PROBE: ServiceDef = ServiceDef {
    name: "probe",
    resources: &[
        ResourceDef {
            var: "PROBE_QUEUE_URL",
            default: "constellation-probe",
            kind: ResourceKind::Queue {
                visibility_timeout_secs: 30,
                max_receives: 5,
            },
        },
        EVENT_BUS,
    ],
    app: probe_app,
    consumers: &[],
    schedules: &[],
    subscriptions: &[SubscriptionDef {
        queue: "PROBE_QUEUE_URL",
        events: &[
            events::STOCK_RESERVED,
            events::STOCK_REJECTED,
            events::INVENTORY_LOW,
        ],
    }],
    openapi: utoipa::openapi::OpenApi::default,
};

fn probe_app(_: &Context) -> BoxFuture<'_, anyhow::Result<axum::Router>> {
    Box::pin(async { Ok(axum::Router::new()) })
}

type CatalogApp = TestApp<TestServices>;

async fn spawn(env: TestPlatform) -> CatalogApp {
    let services = TestServices::start(&env, &[&constellation_catalog::SERVICE, &PROBE])
        .await
        .unwrap();
    let router = services.router();
    let staff = services.tokens.token(ORG, Role::Staff);
    TestApp::new(env, router, services).with_bearer(staff)
}

fn token(app: &CatalogApp, role: Role) -> String {
    app.service.tokens.token(ORG, role)
}

/// Every event on the probe queue, consumed: `(type, data)`.
async fn published(app: &CatalogApp) -> Vec<(String, Value)> {
    let ctx = app.service.context("probe");
    let spec = PROBE.resources[0]
        .queue_spec(ctx.resources.queue_name("PROBE_QUEUE_URL").unwrap())
        .unwrap();
    let receiver = app
        .platform
        .receiver(&spec, ctx.resource("PROBE_QUEUE_URL").unwrap())
        .await
        .unwrap();
    let mut out = Vec::new();
    loop {
        let batch = receiver
            .receive(10, std::time::Duration::from_millis(300))
            .await
            .unwrap();
        if batch.is_empty() {
            return out;
        }
        for m in batch {
            let e = DomainEvent::from_queue_body(&m.body).unwrap();
            out.push((e.event_type, e.data));
            receiver.delete(&m.receipt_handle).await.unwrap();
        }
    }
}

/// Publishes order events as the orders service would.
async fn publish(app: &CatalogApp, events: Vec<(&str, Value)>) {
    let bus = app.service.context("catalog").event_bus().unwrap();
    let batch: Vec<DomainEvent> = events
        .into_iter()
        .map(|(t, data)| DomainEvent::new(t, ORG, app.now(), data).unwrap())
        .collect();
    for chunk in batch.chunks(10) {
        bus.publish(chunk).await.unwrap();
    }
}

fn placed(order: &str, lines: &[(&str, u32)]) -> Value {
    serde_json::to_value(OrderPlaced {
        order_id: order.to_owned(),
        placed_by: "a".repeat(32),
        lines: lines
            .iter()
            .map(|(p, q)| PlacedLine {
                product_id: (*p).to_owned(),
                quantity: *q,
            })
            .collect(),
    })
    .unwrap()
}

fn order_ref(order: &str) -> Value {
    serde_json::to_value(OrderRef {
        order_id: order.to_owned(),
    })
    .unwrap()
}

async fn product(app: &CatalogApp, sku: &str, price: &str, stock: i64) -> String {
    let r = app
        .post("/v1/catalog/products")
        .json(&json!({"sku": sku, "name": format!("Product {sku}"), "price": {"amount": price, "currency": "EUR"}, "reorder_level": 3}))
        .await;
    r.assert_status(StatusCode::CREATED);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    if stock > 0 {
        app.post(&format!("/v1/catalog/products/{id}/stock/adjustments"))
            .json(&json!({"delta": stock, "reason": "received"}))
            .await
            .assert_status(StatusCode::OK);
    }
    id
}

async fn stock(app: &CatalogApp, id: &str) -> (i64, i64, i64) {
    let s = app
        .get(&format!("/v1/catalog/products/{id}/stock"))
        .await
        .json();
    (
        s["on_hand"].as_i64().unwrap(),
        s["reserved"].as_i64().unwrap(),
        s["available"].as_i64().unwrap(),
    )
}

async fn suppliers_are_managed_by_staff_and_kept_while_named(app: CatalogApp) {
    let member = token(&app, Role::Member);
    let body = json!({"name": "Acme Parts", "email": "sales@acme.test", "phone": "+49 30 1234", "lead_time_days": 7});
    app.post("/v1/catalog/suppliers")
        .bearer(&member)
        .json(&body)
        .await
        .assert_status(StatusCode::FORBIDDEN);
    let r = app.post("/v1/catalog/suppliers").json(&body).await;
    r.assert_status(StatusCode::CREATED);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/catalog/suppliers/{id}");
    assert_eq!(
        app.get(&path).bearer(&member).await.json()["lead_time_days"],
        7
    );
    let r = app.patch(&path).json(&json!({"lead_time_days": 9.0})).await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.json()["lead_time_days"], 9);
    for (field, value) in [
        ("email", json!("not-an-email")),
        ("phone", json!("call me")),
        ("lead_time_days", json!(366)),
        ("name", json!(" ")),
    ] {
        let mut b = body.clone();
        b[field] = value;
        let r = app.post("/v1/catalog/suppliers").json(&b).await;
        assert_eq!(r.field().as_deref(), Some(field), "{r:?}");
    }
    let p = app
        .post("/v1/catalog/products")
        .json(&json!({"sku": "SUP-1", "name": "Bolt", "price": {"amount": "1", "currency": "EUR"}, "supplier_id": id}))
        .await;
    p.assert_status(StatusCode::CREATED);
    app.delete(&path).await.assert_status(StatusCode::CONFLICT);
    let by_supplier = app
        .get(&format!("/v1/catalog/products?supplier_id={id}"))
        .await
        .json();
    assert_eq!(by_supplier["items"].as_array().unwrap().len(), 1);
    let r = app
        .post("/v1/catalog/products")
        .json(&json!({"sku": "SUP-2", "name": "Nut", "price": {"amount": "1", "currency": "EUR"}, "supplier_id": "f".repeat(32)}))
        .await;
    r.assert_status(StatusCode::NOT_FOUND);
    assert_eq!(r.field().as_deref(), Some("supplier_id"));
    let lone = app.post("/v1/catalog/suppliers").json(&body).await.json();
    app.delete(&format!(
        "/v1/catalog/suppliers/{}",
        lone["id"].as_str().unwrap()
    ))
    .await
    .assert_status(StatusCode::NO_CONTENT);
    let list = app
        .get("/v1/catalog/suppliers")
        .bearer(&member)
        .await
        .json();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

async fn products_have_unique_skus_even_under_concurrent_creates(app: CatalogApp) {
    let replies = futures::future::join_all((0..8).map(|i| {
        app.post("/v1/catalog/products")
            .json(&json!({"sku": "RACE-1", "name": format!("n{i}"), "price": {"amount": "2.50", "currency": "EUR"}}))
            .send()
    }))
    .await;
    let created = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    assert_eq!(
        created,
        1,
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in replies.iter().filter(|r| r.status != StatusCode::CREATED) {
        r.assert_status(StatusCode::CONFLICT);
        assert_eq!(r.problem()["type"], "urn:constellation:problem:sku-taken");
    }
    let list = app.get("/v1/catalog/products?sku_prefix=RACE").await.json();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        list["items"][0]["price"],
        json!({"amount": "2.50", "currency": "EUR"})
    );
}

async fn bad_products_name_the_field_and_store_nothing(app: CatalogApp) {
    let good =
        json!({"sku": "OK-1", "name": "Widget", "price": {"amount": "9.99", "currency": "EUR"}});
    for (field, patch) in [
        ("sku", json!({"sku": "bad sku"})),
        ("sku", json!({"sku": "-A"})),
        (
            "price.amount",
            json!({"price": {"amount": "9.999", "currency": "EUR"}}),
        ),
        (
            "price.amount",
            json!({"price": {"amount": "0", "currency": "EUR"}}),
        ),
        (
            "price.currency",
            json!({"price": {"amount": "9", "currency": "eur"}}),
        ),
        ("reorder_level", json!({"reorder_level": -1})),
        ("colour", json!({"colour": "red"})),
        ("name", json!({"name": ""})),
    ] {
        let mut b = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            b[k] = v.clone();
        }
        let r = app.post("/v1/catalog/products").json(&b).await;
        assert!(r.status.is_client_error(), "{field}: {}", r.status);
        assert_eq!(r.field().as_deref(), Some(field), "{b}");
    }
    let list = app.get("/v1/catalog/products").await.json();
    assert!(list["items"].as_array().unwrap().is_empty());
}

async fn product_edits_need_if_match_and_listings_filter(app: CatalogApp) {
    let id = product(&app, "EDIT-1", "5", 0).await;
    let path = format!("/v1/catalog/products/{id}");
    let r = app.get(&path).await;
    let etag = r.header("etag").unwrap().to_owned();
    let change = json!({"name": "Renamed", "active": false});
    app.patch(&path)
        .json(&change)
        .await
        .assert_status(StatusCode::PRECONDITION_REQUIRED);
    app.patch(&path)
        .header("if-match", "*")
        .json(&change)
        .await
        .assert_status(StatusCode::PRECONDITION_REQUIRED);
    let r = app
        .patch(&path)
        .header("if-match", &etag)
        .json(&change)
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.json()["name"], "Renamed");
    app.patch(&path)
        .header("if-match", &etag)
        .json(&change)
        .await
        .assert_status(StatusCode::PRECONDITION_FAILED);
    product(&app, "EDIT-2", "5", 0).await;
    let taken = app
        .patch(&path)
        .header("if-match", r.header("etag").unwrap())
        .json(&json!({"sku": "EDIT-2"}))
        .await;
    assert_eq!(
        taken.problem()["type"],
        "urn:constellation:problem:sku-taken"
    );
    let inactive = app.get("/v1/catalog/products?active=false").await.json();
    assert_eq!(inactive["items"].as_array().unwrap().len(), 1);
    let members = app
        .patch(&path)
        .bearer(&token(&app, Role::Member))
        .header("if-match", &etag)
        .json(&change)
        .await;
    members.assert_status(StatusCode::FORBIDDEN);
}

async fn stock_adjustments_never_go_below_reserved_and_are_idempotent(app: CatalogApp) {
    let id = product(&app, "STK-1", "1", 0).await;
    let adj = format!("/v1/catalog/products/{id}/stock/adjustments");
    let first = app
        .post(&adj)
        .header("idempotency-key", "recv-1")
        .json(&json!({"delta": 5, "reason": "received"}))
        .await;
    first.assert_status(StatusCode::OK);
    let again = app
        .post(&adj)
        .header("idempotency-key", "recv-1")
        .json(&json!({"delta": 5, "reason": "received"}))
        .await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(stock(&app, &id).await, (5, 0, 5), "applied once");
    app.advance(time::Duration::milliseconds(1));
    publish(&app, vec![(events::PLACED, placed("o-1", &[(&id, 4)]))]).await;
    app.service.pump().await.unwrap();
    assert_eq!(stock(&app, &id).await, (5, 4, 1));
    app.advance(time::Duration::milliseconds(1));
    let r = app
        .post(&adj)
        .json(&json!({"delta": -2, "reason": "damaged"}))
        .await;
    r.assert_status(StatusCode::CONFLICT);
    assert_eq!(
        r.problem()["type"],
        "urn:constellation:problem:insufficient-stock"
    );
    app.post(&adj)
        .json(&json!({"delta": -1, "reason": "damaged"}))
        .await
        .assert_status(StatusCode::OK);
    for (field, body) in [
        ("delta", json!({"delta": 0, "reason": "count"})),
        ("reason", json!({"delta": 1, "reason": "shipped"})),
        ("delta", json!({"delta": 1.5, "reason": "count"})),
    ] {
        assert_eq!(
            app.post(&adj).json(&body).await.field().as_deref(),
            Some(field),
            "{body}"
        );
    }
    app.delete(&format!("/v1/catalog/products/{id}"))
        .await
        .assert_status(StatusCode::CONFLICT);
    let moves = app
        .get(&format!("/v1/catalog/products/{id}/stock/movements"))
        .await
        .json();
    let reasons: Vec<&str> = moves["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["damaged", "reserved", "received"], "newest first");
    assert_eq!(moves["items"][1]["order_id"], "o-1");
    // available went 5 → 1 (below 3) once: one alert.
    let lows: Vec<_> = published(&app)
        .await
        .into_iter()
        .filter(|(t, _)| t == events::INVENTORY_LOW)
        .collect();
    assert_eq!(lows.len(), 1, "{lows:?}");
}

async fn fifty_orders_for_ten_units_never_oversell_even_delivered_twice(app: CatalogApp) {
    let id = product(&app, "HOT-1", "3.50", 10).await;
    let orders: Vec<String> = (0..50).map(|i| format!("order-{i:02}")).collect();
    let placements: Vec<(&str, Value)> = orders
        .iter()
        .flat_map(|o| {
            let e = placed(o, &[(&id, 1)]);
            [(events::PLACED, e.clone()), (events::PLACED, e)]
        })
        .collect();
    let started = std::time::Instant::now();
    publish(&app, placements).await;
    let pumps = futures::future::join_all((0..3).map(|_| app.service.pump())).await;
    for p in pumps {
        p.unwrap();
    }
    app.service.pump().await.unwrap();
    eprintln!(
        "{}: 50 orders (each delivered twice) settled in {:?}",
        app.label(),
        started.elapsed()
    );
    assert_eq!(stock(&app, &id).await, (10, 10, 0));
    let answers = published(&app).await;
    let reserved = answers
        .iter()
        .filter(|(t, _)| t == events::STOCK_RESERVED)
        .count();
    let rejected: Vec<_> = answers
        .iter()
        .filter(|(t, _)| t == events::STOCK_REJECTED)
        .collect();
    assert_eq!((reserved, rejected.len()), (10, 40), "one answer per order");
    assert!(
        rejected
            .iter()
            .all(|(_, d)| d["reason"] == "insufficient-stock" && d["product_id"] == id.as_str())
    );
    let winners: Vec<String> = answers
        .iter()
        .filter(|(t, _)| t == events::STOCK_RESERVED)
        .map(|(_, d)| d["order_id"].as_str().unwrap().to_owned())
        .collect();
    let cancel: Vec<(&str, Value)> = winners[..3]
        .iter()
        .flat_map(|o| {
            [
                (events::CANCELLED, order_ref(o)),
                (events::CANCELLED, order_ref(o)),
            ]
        })
        .collect();
    publish(&app, cancel).await;
    app.service.pump().await.unwrap();
    assert_eq!(stock(&app, &id).await, (10, 7, 3));
    let ship: Vec<(&str, Value)> = winners[3..5]
        .iter()
        .flat_map(|o| {
            [
                (events::SHIPPED, order_ref(o)),
                (events::SHIPPED, order_ref(o)),
            ]
        })
        .collect();
    publish(&app, ship).await;
    app.service.pump().await.unwrap();
    assert_eq!(stock(&app, &id).await, (8, 5, 3));
}

async fn orders_are_all_or_nothing_with_a_reason_naming_the_product(app: CatalogApp) {
    let a = product(&app, "A-1", "1.00", 5).await;
    let b = product(&app, "B-1", "2.00", 1).await;
    let usd = {
        let r = app
            .post("/v1/catalog/products")
            .json(
                &json!({"sku": "USD-1", "name": "x", "price": {"amount": "1", "currency": "USD"}}),
            )
            .await;
        r.json()["id"].as_str().unwrap().to_owned()
    };
    let ghost = "e".repeat(32);
    // A cancellation that arrives before its order: the order is never reserved.
    publish(
        &app,
        vec![
            (events::CANCELLED, order_ref("early")),
            (events::PLACED, placed("early", &[(&a, 1)])),
        ],
    )
    .await;
    app.service.pump().await.unwrap();
    publish(
        &app,
        vec![
            (events::PLACED, placed("too-many", &[(&a, 2), (&b, 2)])),
            (events::PLACED, placed("ghost", &[(&a, 1), (&ghost, 1)])),
            (events::PLACED, placed("mixed", &[(&a, 1), (&usd, 1)])),
            (events::PLACED, placed("fits", &[(&a, 2), (&b, 1)])),
        ],
    )
    .await;
    app.service.pump().await.unwrap();
    assert_eq!(
        stock(&app, &a).await,
        (5, 2, 3),
        "only the order that fits holds stock"
    );
    assert_eq!(stock(&app, &b).await, (1, 1, 0));
    let answers = published(&app).await;
    let find = |order: &str| {
        answers
            .iter()
            .find(|(_, d)| d["order_id"] == order)
            .cloned()
            .unwrap()
    };
    assert_eq!(find("too-many").1["reason"], "insufficient-stock");
    assert_eq!(find("too-many").1["product_id"], b.as_str());
    assert_eq!(
        (
            find("ghost").1["reason"].as_str(),
            find("ghost").1["product_id"].as_str()
        ),
        (Some("unknown-product"), Some(ghost.as_str()))
    );
    assert_eq!(find("mixed").1["reason"], "mixed-currencies");
    let (t, fits) = find("fits");
    assert_eq!(t, events::STOCK_RESERVED);
    assert_eq!(
        fits["lines"][0],
        json!({"product_id": a, "sku": "A-1", "quantity": 2, "unit_price": {"amount": "1.00", "currency": "EUR"}})
    );
    assert!(answers.iter().all(|(_, d)| d["order_id"] != "early"));
}

async fn another_organizations_catalog_answers_404(app: CatalogApp) {
    let id = product(&app, "MINE-1", "1", 2).await;
    let other = app.service.tokens.token("org-other", Role::Owner);
    for path in [
        format!("/v1/catalog/products/{id}"),
        format!("/v1/catalog/products/{id}/stock"),
        format!("/v1/catalog/products/{id}/stock/movements"),
    ] {
        app.get(&path)
            .bearer(&other)
            .await
            .assert_status(StatusCode::NOT_FOUND);
    }
    let r: Reply = app
        .post(&format!("/v1/catalog/products/{id}/stock/adjustments"))
        .bearer(&other)
        .json(&json!({"delta": 1, "reason": "count"}))
        .await;
    r.assert_status(StatusCode::NOT_FOUND);
    assert!(
        app.get("/v1/catalog/products").bearer(&other).await.json()["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}
