//! Who a failed login is counted against: the connection's peer (or API
//! Gateway's `sourceIp`), never an `X-Forwarded-For` value the client chose,
//! IPv6 clients per /64, and a per-address limit of its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{AuthApp, AuthFixtures as _, CallFrom as _, PASSWORD, access};
use constellation_auth::AuthSettings;
use http::StatusCode;
use serde_json::{Value, json};

/// A per-address limit low enough to reach in a test.
const LOW: AuthSettings = AuthSettings {
    trusted_proxies: 0,
    login_address_limit: 5,
    hash_concurrency: 4,
    hash_wait: std::time::Duration::from_millis(1500),
};

constellation_testkit::on_both_backends! {
    app = crate::common::spawn_with(LOW);
    forged_forwarded_for_values_from_one_peer_share_its_counter,
    a_forged_header_cannot_lock_a_victim_address,
    ipv6_addresses_in_one_64_share_a_counter,
    failures_from_one_address_lock_that_address_at_its_own_limit,
    under_lambda_the_source_ip_is_the_client,
}

constellation_testkit::on_both_backends! {
    app = crate::common::spawn_with(AuthSettings { trusted_proxies: 1, ..LOW });
    a_trusted_proxy_vouches_for_the_hop_it_appended,
}

constellation_testkit::on_both_backends! {
    app = crate::common::spawn;
    the_default_address_limit_is_well_above_the_account_limit,
}

async fn wrong_login(
    app: &AuthApp,
    peer: &str,
    forwarded: Option<&str>,
    email: &str,
) -> StatusCode {
    let mut call = app
        .post("/v1/auth/login")
        .json(&json!({"email": email, "password": "wrong password here"}))
        .ip(peer);
    if let Some(f) = forwarded {
        call = call.forwarded_for(f);
    }
    call.await.status
}

async fn forged_forwarded_for_values_from_one_peer_share_its_counter(app: AuthApp) {
    app.fx_register("ada@example.com").await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        // Another forged address and another email every time.
        let forged = format!("198.51.100.{i}, 10.9.9.{i}");
        statuses.push(
            wrong_login(
                &app,
                "203.0.113.9",
                Some(&forged),
                &format!("u{i}@example.com"),
            )
            .await,
        );
    }
    let unauthorized = StatusCode::UNAUTHORIZED;
    let limited = StatusCode::TOO_MANY_REQUESTS;
    assert_eq!(
        statuses,
        [
            unauthorized,
            unauthorized,
            unauthorized,
            unauthorized,
            unauthorized,
            limited,
            limited,
            limited
        ]
    );
    // The right password from that peer is refused too, whatever it forges...
    let r = app
        .post("/v1/auth/login")
        .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
        .ip("203.0.113.9")
        .forwarded_for("192.0.2.200")
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.header("retry-after").is_some());
    // ...and accepted from another peer.
    let ok = app
        .login_from("203.0.113.10", "ada@example.com", PASSWORD)
        .await;
    assert_eq!(ok.status, StatusCode::OK);
}

async fn a_forged_header_cannot_lock_a_victim_address(app: AuthApp) {
    app.fx_register("ada@example.com").await;
    let victim = "192.0.2.50";
    for i in 0..10 {
        wrong_login(
            &app,
            "203.0.113.66",
            Some(victim),
            &format!("x{i}@example.com"),
        )
        .await;
    }
    let ok = app.login_from(victim, "ada@example.com", PASSWORD).await;
    assert_eq!(
        ok.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&ok.body)
    );

    // The audit log names the peer, not the forged address.
    let wrong = app
        .post("/v1/auth/login")
        .json(&json!({"email": "ada@example.com", "password": "wrong password here"}))
        .ip("203.0.113.77")
        .forwarded_for(victim)
        .await;
    wrong.assert_unauthorized();
    let audit = app.audit(access(&ok.json())).await;
    let failed: Vec<&Value> = audit
        .iter()
        .filter(|e| e["action"] == "login_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{audit:#?}");
    assert_eq!(failed[0]["ip"], "203.0.113.77");
    let succeeded: Vec<&Value> = audit
        .iter()
        .filter(|e| e["action"] == "login_succeeded")
        .collect();
    assert_eq!(succeeded.len(), 1, "{audit:#?}");
    assert_eq!(succeeded[0]["ip"], victim);
}

async fn ipv6_addresses_in_one_64_share_a_counter(app: AuthApp) {
    app.fx_register("ada@example.com").await;
    for i in 1..=5 {
        let peer = format!("2001:db8:1:2:{i:x}::{i:x}");
        assert_eq!(
            wrong_login(&app, &peer, None, &format!("v{i}@example.com")).await,
            StatusCode::UNAUTHORIZED
        );
    }
    let same_64 = app
        .login_from(
            "2001:db8:1:2:ffff:ffff:ffff:fffe",
            "ada@example.com",
            PASSWORD,
        )
        .await;
    assert_eq!(same_64.status, StatusCode::TOO_MANY_REQUESTS);
    let next_64 = app
        .login_from("2001:db8:1:3::1", "ada@example.com", PASSWORD)
        .await;
    assert_eq!(next_64.status, StatusCode::OK);
    // An IPv4-mapped address is its IPv4 address.
    for i in 0..5 {
        wrong_login(&app, "198.51.100.200", None, &format!("w{i}@example.com")).await;
    }
    let mapped = app
        .login_from("::ffff:198.51.100.200", "ada@example.com", PASSWORD)
        .await;
    assert_eq!(mapped.status, StatusCode::TOO_MANY_REQUESTS);
}

async fn failures_from_one_address_lock_that_address_at_its_own_limit(app: AuthApp) {
    app.fx_register("ada@example.com").await;
    // Successes are not failures: an office behind one address logs in freely.
    for _ in 0..8 {
        let r = app
            .login_from("203.0.113.9", "ada@example.com", PASSWORD)
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    for i in 0..5 {
        app.login_from(
            "203.0.113.9",
            &format!("user{i}@example.com"),
            "wrong password here",
        )
        .await
        .assert_unauthorized();
    }
    let from_attacker = app
        .login_from("203.0.113.9", "ada@example.com", PASSWORD)
        .await;
    assert_eq!(from_attacker.status, StatusCode::TOO_MANY_REQUESTS);
    let elsewhere = app
        .login_from("203.0.113.10", "ada@example.com", PASSWORD)
        .await;
    assert_eq!(elsewhere.status, StatusCode::OK);
}

async fn a_trusted_proxy_vouches_for_the_hop_it_appended(app: AuthApp) {
    app.fx_register("ada@example.com").await;
    let proxy = "10.0.0.1";
    // The proxy appends the client (198.51.100.7) after whatever it forged.
    for i in 0..5 {
        let header = format!("6.6.6.{i}, 198.51.100.7");
        assert_eq!(
            wrong_login(&app, proxy, Some(&header), &format!("p{i}@example.com")).await,
            StatusCode::UNAUTHORIZED
        );
    }
    let same_client = app
        .post("/v1/auth/login")
        .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
        .ip(proxy)
        .forwarded_for("7.7.7.7, 198.51.100.7")
        .await;
    assert_eq!(same_client.status, StatusCode::TOO_MANY_REQUESTS);
    let other_client = app
        .post("/v1/auth/login")
        .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
        .ip(proxy)
        .forwarded_for("198.51.100.7, 198.51.100.8")
        .await;
    assert_eq!(
        other_client.status,
        StatusCode::OK,
        "the leftmost entry is not trusted"
    );
}

async fn the_default_address_limit_is_well_above_the_account_limit(app: AuthApp) {
    app.fx_register("ada@example.com").await;
    // An office: twelve people mistype their passwords behind one address.
    for i in 0..12 {
        assert_eq!(
            wrong_login(&app, "203.0.113.20", None, &format!("o{i}@example.com")).await,
            StatusCode::UNAUTHORIZED
        );
    }
    let ok = app
        .login_from("203.0.113.20", "ada@example.com", PASSWORD)
        .await;
    assert_eq!(ok.status, StatusCode::OK);
}

/// An API Gateway HTTP API event for a login from `source_ip` with a forged
/// `X-Forwarded-For` (API Gateway appends the source address to it).
fn login_event(source_ip: &str, forged: &str, email: &str, password: &str) -> Value {
    json!({
        "version": "2.0",
        "routeKey": "POST /v1/auth/login",
        "rawPath": "/v1/auth/login",
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "x-forwarded-for": format!("{forged}, {source_ip}"),
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "a1b2c3d4e5",
            "domainName": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "a1b2c3d4e5",
            "http": {
                "method": "POST",
                "path": "/v1/auth/login",
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": "test"
            },
            "requestId": "id",
            "routeKey": "POST /v1/auth/login",
            "stage": "$default",
            "time": "23/Nov/2026:12:00:01 +0000",
            "timeEpoch": 1795435201000_u64
        },
        "isBase64Encoded": false,
        "body": json!({"email": email, "password": password}).to_string()
    })
}

async fn under_lambda_the_source_ip_is_the_client(app: AuthApp) {
    app.fx_register("ada@example.com").await;
    for i in 0..5 {
        let event = login_event(
            "203.0.113.40",
            &format!("198.51.100.{i}"),
            &format!("l{i}@example.com"),
            "wrong password here",
        );
        app.send_lambda_event(&event).await.assert_unauthorized();
    }
    let locked = app
        .send_lambda_event(&login_event(
            "203.0.113.40",
            "192.0.2.1",
            "ada@example.com",
            PASSWORD,
        ))
        .await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    // Forging the locked address from elsewhere changes nothing either way.
    let ok = app
        .send_lambda_event(&login_event(
            "203.0.113.41",
            "203.0.113.40",
            "ada@example.com",
            PASSWORD,
        ))
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let audit = app.audit(access(&ok.json())).await;
    let succeeded: Vec<&Value> = audit
        .iter()
        .filter(|e| e["action"] == "login_succeeded")
        .collect();
    assert_eq!(succeeded.len(), 1, "{audit:#?}");
    assert_eq!(succeeded[0]["ip"], "203.0.113.41");
}
