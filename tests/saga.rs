//! The order saga over real HTTP on both backends: orders and catalog
//! running side by side, agreeing only through the bus. No oversell: 50
//! concurrent orders of 1 against a stock of 10 settle to exactly 10
//! confirmed and 40 rejected; cancellations and shipments move the stock
//! exactly; and every event delivered twice changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use constellation_core::auth::Role;
use constellation_testkit::http::{TestApp, TestPlatform};
use constellation_testkit::services::TestServices;
use http::StatusCode;
use serde_json::{Value, json};

constellation_testkit::on_both_backends! {
    app = crate::spawn;
    fifty_orders_for_ten_units_settle_to_ten_confirmed,
    the_same_race_with_every_event_delivered_twice,
    a_retried_order_is_one_order_and_one_reservation,
}

const ORG: &str = "org-saga";

type SagaApp = TestApp<TestServices>;

async fn spawn(env: TestPlatform) -> SagaApp {
    let services = TestServices::start(
        &env,
        &[
            &constellation_catalog::SERVICE,
            &constellation_orders::SERVICE,
        ],
    )
    .await
    .unwrap();
    let router = services.router();
    let staff = services.tokens.token(ORG, Role::Staff);
    TestApp::new(env, router, services).with_bearer(staff)
}

async fn product(app: &SagaApp, stock: i64) -> String {
    let r = app
        .post("/v1/catalog/products")
        .json(&json!({"sku": "SAGA-1", "name": "The last ones", "price": {"amount": "19.99", "currency": "EUR"}}))
        .await;
    r.assert_status(StatusCode::CREATED);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    app.post(&format!("/v1/catalog/products/{id}/stock/adjustments"))
        .json(&json!({"delta": stock, "reason": "received"}))
        .await
        .assert_status(StatusCode::OK);
    id
}

async fn stock(app: &SagaApp, id: &str) -> Value {
    app.get(&format!("/v1/catalog/products/{id}/stock"))
        .await
        .json()
}

/// Pumps every queue until quiet; with `twice`, every message is handled
/// twice (a redelivery after the first handling) before it is deleted.
async fn settle(app: &SagaApp, twice: bool) {
    if twice {
        app.service.pump_twice().await.unwrap();
    } else {
        let runs = futures::future::join_all((0..3).map(|_| app.service.pump())).await;
        for r in runs {
            r.unwrap();
        }
        app.service.pump().await.unwrap();
    }
}

async fn order_statuses(app: &SagaApp, ids: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for id in ids {
        let o = app.get(&format!("/v1/orders/{id}")).await.json();
        out.push(o["status"].as_str().unwrap().to_owned());
    }
    out
}

async fn run_race(app: &SagaApp, twice: bool) {
    let product_id = product(app, 10).await;
    let members: Vec<String> = (0..50)
        .map(|_| app.service.tokens.token(ORG, Role::Member))
        .collect();
    let started = Instant::now();
    let placed = futures::future::join_all(members.iter().enumerate().map(|(i, t)| {
        app.post("/v1/orders")
            .bearer(t)
            .header("idempotency-key", &format!("race-{i}"))
            .json(&json!({"lines": [{"product_id": product_id, "quantity": 1}]}))
            .send()
    }))
    .await;
    let ids: Vec<String> = placed
        .iter()
        .map(|r| {
            r.assert_status(StatusCode::ACCEPTED);
            r.json()["id"].as_str().unwrap().to_owned()
        })
        .collect();
    settle(app, twice).await;
    eprintln!(
        "{} ({}): 50 orders for 10 units settled in {:?}",
        app.label(),
        if twice { "every event twice" } else { "once" },
        started.elapsed()
    );
    let statuses = order_statuses(app, &ids).await;
    let confirmed: Vec<&String> = ids
        .iter()
        .zip(&statuses)
        .filter(|(_, s)| *s == "confirmed")
        .map(|(id, _)| id)
        .collect();
    let rejected = statuses.iter().filter(|s| *s == "rejected").count();
    assert_eq!((confirmed.len(), rejected), (10, 40), "{statuses:?}");
    assert_eq!(
        stock(app, &product_id).await,
        json!({"on_hand": 10, "reserved": 10, "available": 0})
    );
    let sample = app
        .get(&format!("/v1/orders/{}", confirmed[0]))
        .await
        .json();
    assert_eq!(
        sample["total"],
        json!({"amount": "19.99", "currency": "EUR"})
    );

    for id in &confirmed[..3] {
        app.post(&format!("/v1/orders/{id}/cancel"))
            .await
            .assert_status(StatusCode::OK);
    }
    settle(app, twice).await;
    assert_eq!(stock(app, &product_id).await["available"], 3);
    for id in &confirmed[3..5] {
        app.post(&format!("/v1/orders/{id}/ship"))
            .await
            .assert_status(StatusCode::OK);
    }
    settle(app, twice).await;
    assert_eq!(
        stock(app, &product_id).await,
        json!({"on_hand": 8, "reserved": 5, "available": 3})
    );
}

async fn fifty_orders_for_ten_units_settle_to_ten_confirmed(app: SagaApp) {
    run_race(&app, false).await;
}

async fn the_same_race_with_every_event_delivered_twice(app: SagaApp) {
    run_race(&app, true).await;
}

async fn a_retried_order_is_one_order_and_one_reservation(app: SagaApp) {
    let product_id = product(&app, 5).await;
    let body = json!({"lines": [{"product_id": product_id, "quantity": 2}], "note": "rush"});
    let first = app
        .post("/v1/orders")
        .header("idempotency-key", "retry-1")
        .json(&body)
        .await;
    first.assert_status(StatusCode::ACCEPTED);
    let again = app
        .post("/v1/orders")
        .header("idempotency-key", "retry-1")
        .json(&body)
        .await;
    assert_eq!(again.json()["id"], first.json()["id"]);
    let mut other = body.clone();
    other["lines"][0]["quantity"] = json!(3);
    app.post("/v1/orders")
        .header("idempotency-key", "retry-1")
        .json(&other)
        .await
        .assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    settle(&app, true).await;
    assert_eq!(
        stock(&app, &product_id).await,
        json!({"on_hand": 5, "reserved": 2, "available": 3})
    );
    let id = first.json()["id"].as_str().unwrap().to_owned();
    let order = app.get(&format!("/v1/orders/{id}")).await.json();
    assert_eq!(order["status"], "confirmed");
    assert_eq!(
        order["total"],
        json!({"amount": "39.98", "currency": "EUR"})
    );
}
