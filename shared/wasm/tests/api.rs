//! The case table's request bodies posted to the services themselves
//! (expenses, catalog, orders and comms on the local backend): every body
//! the package refuses, the route refuses with the same problem (`type` and
//! `field`, and for a rule's refusal the same `detail`), and every body the
//! package accepts, the route does not refuse as invalid. This keeps the
//! package's order of checks the handlers' order.
//!
//! The table's `now` is a fixed day; the services' clock only moves
//! forward, so it is set to the same time of day some whole days later and
//! every date in the bodies moves by as many days.

// Native only: the services do not build for wasm32.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use constellation_core::auth::Role;
use constellation_platform::Clock as _;
use constellation_testkit::http::TestPlatform;
use constellation_testkit::services::TestServices;
use constellation_wasm::rules;
use serde_json::Value;
use time::{Date, Duration, OffsetDateTime};

const ORG: &str = "org-wasm";

/// The route each validator of a request body stands for.
fn route(call: &str) -> Option<&'static str> {
    Some(match call {
        "validateExpense" => "/v1/expenses",
        "validateProduct" => "/v1/catalog/products",
        "validateOrder" => "/v1/orders",
        "validateAnnouncement" => "/v1/comms/announcements",
        _ => return None,
    })
}

/// `value` with every date and date-time string moved by `days`.
fn shifted(value: &Value, days: i64) -> Value {
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    match value {
        Value::String(s) => {
            if let Ok(d) = Date::parse(s, date_format) {
                let d = d + Duration::days(days);
                return Value::String(d.format(date_format).unwrap());
            }
            if let Ok(t) = OffsetDateTime::parse(s, rfc3339) {
                let t = t + Duration::days(days);
                return Value::String(t.format(rfc3339).unwrap());
            }
            value.clone()
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| shifted(v, days)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), shifted(v, days)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[tokio::test]
async fn the_services_answer_the_table_s_bodies_as_the_package_does() {
    let table: Value = serde_json::from_str(include_str!("cases.json")).unwrap();
    let table_now = table["now"].as_i64().unwrap();

    let env = TestPlatform::local().await;
    let days = (env.clock.now().unix_timestamp() - table_now) / 86_400 + 1;
    let now = OffsetDateTime::from_unix_timestamp(table_now).unwrap() + Duration::days(days);
    env.clock.advance(now - env.clock.now());
    let services = TestServices::start(
        &env,
        &[
            &constellation_expenses::SERVICE,
            &constellation_catalog::SERVICE,
            &constellation_orders::SERVICE,
            &constellation_comms::SERVICE,
        ],
    )
    .await
    .unwrap();
    let owner = services.tokens.token(ORG, Role::Owner);
    let app = constellation_testkit::http::TestApp::new(env, services.router(), services)
        .with_bearer(owner);

    let mut posted = 0;
    for (i, case) in table["cases"].as_array().unwrap().iter().enumerate() {
        let name = case["call"].as_str().unwrap();
        let Some(path) = route(name) else { continue };
        if case.get("throws").is_some() {
            continue;
        }
        let args = case["args"].as_array().unwrap();
        // The package's answer at the table's now; the route's at the moved one.
        let ours = match name {
            "validateExpense" => rules::expense(&args[0], table_now as f64).unwrap(),
            "validateAnnouncement" => rules::announcement(&args[0], table_now as f64).unwrap(),
            "validateProduct" => rules::product(&args[0]),
            _ => rules::order(&args[0]),
        };
        // The same body, its dates moved with the clock.
        let body = shifted(&args[0], days);
        let reply = app
            .post(path)
            .header("idempotency-key", &format!("wasm-parity-{i}"))
            .json(&body)
            .send()
            .await;
        posted += 1;
        let at = format!("case {i}: POST {path} {body}");
        if ours["ok"] == true {
            assert!(
                reply.status.is_success() || reply.status.as_u16() == 409,
                "{at}: the package accepts it, the route answered {} {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            );
            continue;
        }
        let api = reply.json();
        let problem = &ours["problem"];
        assert_eq!(reply.status.as_u16(), 400, "{at}: {api}");
        assert_eq!(api["type"], problem["type"], "{at}: {api}");
        assert_eq!(api["field"], problem["field"], "{at}: {api}");
        if problem["type"] == rules::INVALID_INPUT {
            assert_eq!(api["detail"], problem["detail"], "{at}: {api}");
        }
    }
    assert!(posted > 30, "only {posted} bodies posted");
}
