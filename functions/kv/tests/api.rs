//! The kv HTTP contract, exercised through the real router on both backends
//! (SQLite locally, DynamoDB and SQS on moto): what a client sees (status,
//! headers, body) and what is left in the store and on the change queue.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{KvApp, ORG};
use constellation_core::auth::Role;
use constellation_testkit::http::Reply;
use http::StatusCode;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

constellation_testkit::on_both_backends! {
    app = crate::common::spawn;
    put_creates_then_replaces_and_get_returns_the_stored_bytes,
    conditional_reads_and_writes,
    if_match_compares_strongly_and_if_none_match_weakly,
    concurrent_compare_and_swap_has_one_winner,
    concurrent_unconditional_puts_all_succeed_last_writer_wins,
    ttl_sets_expires_at_to_now_plus_ttl_and_hides_the_value_after_it,
    listing_pages_through_keys_in_byte_order,
    bad_input_is_a_problem_naming_the_field_and_writes_nothing,
    keys_may_hold_encoded_slashes_and_unicode,
    every_write_and_delete_publishes_a_change_event_in_order,
    value_reads_are_never_rendered_as_active_content,
    health_openapi_request_ids_and_unknown_routes,
    every_kv_route_requires_a_valid_token,
    members_read_and_staff_write,
    another_organizations_keys_answer_404,
}

fn rfc3339(raw: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(raw.as_str().unwrap_or_default(), &Rfc3339)
        .unwrap_or_else(|e| panic!("{raw} is not an RFC 3339 time: {e}"))
}

async fn put_creates_then_replaces_and_get_returns_the_stored_bytes(app: KvApp) {
    let created = app
        .put("/v1/kv/settings/theme")
        .body("application/json", br#"{"mode":"dark"}"#.as_slice())
        .await;
    created.assert_status(StatusCode::CREATED);
    let meta = created.json();
    assert_eq!(meta["namespace"], "settings");
    assert_eq!(meta["key"], "theme");
    assert_eq!(meta["version"], 1);
    assert_eq!(meta["size"], 15);
    assert_eq!(meta["content_type"], "application/json");
    assert!(meta["expires_at"].is_null());
    assert_eq!(rfc3339(&meta["updated_at"]), app.now());
    let etag1 = created.header("etag").unwrap().to_owned();
    assert_eq!(meta["etag"], etag1.as_str());
    assert!(etag1.starts_with('"') && etag1.ends_with('"'));

    let replaced = app
        .put("/v1/kv/settings/theme")
        .body("text/plain", "light")
        .await;
    replaced.assert_status(StatusCode::OK);
    assert_eq!(replaced.json()["version"], 2);
    let etag2 = replaced.header("etag").unwrap().to_owned();
    assert_ne!(etag1, etag2, "the etag changes on every write");

    let got = app.get("/v1/kv/settings/theme").await;
    got.assert_status(StatusCode::OK);
    assert_eq!(got.body, b"light");
    assert_eq!(got.header("content-type"), Some("text/plain"));
    assert_eq!(got.header("etag"), Some(etag2.as_str()));
    assert!(got.header("last-modified").unwrap().ends_with(" GMT"));

    let same = app
        .put("/v1/kv/settings/theme")
        .body("text/plain", "light")
        .await;
    assert_ne!(
        same.header("etag"),
        Some(etag2.as_str()),
        "even an identical write changes the etag"
    );
}

async fn conditional_reads_and_writes(app: KvApp) {
    let first = app
        .put("/v1/kv/ns/k")
        .header("if-none-match", "*")
        .raw("1")
        .await;
    first.assert_status(StatusCode::CREATED);
    let etag = first.header("etag").unwrap().to_owned();

    let again = app
        .put("/v1/kv/ns/k")
        .header("if-none-match", "*")
        .raw("2")
        .await;
    again.assert_status(StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        again.problem()["type"],
        "urn:constellation:problem:precondition-failed"
    );

    let cached = app.get("/v1/kv/ns/k").header("if-none-match", &etag).await;
    cached.assert_status(StatusCode::NOT_MODIFIED);
    assert!(cached.body.is_empty());

    let swapped = app
        .put("/v1/kv/ns/k")
        .header("if-match", &etag)
        .raw("3")
        .await;
    swapped.assert_status(StatusCode::OK);
    let stale = app
        .put("/v1/kv/ns/k")
        .header("if-match", &etag)
        .raw("4")
        .await;
    stale.assert_status(StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        app.get("/v1/kv/ns/k").await.body,
        b"3",
        "a failed CAS writes nothing"
    );

    let new_tag = swapped.header("etag").unwrap().to_owned();
    app.delete("/v1/kv/ns/k")
        .header("if-match", &etag)
        .await
        .assert_status(StatusCode::PRECONDITION_FAILED);
    app.get("/v1/kv/ns/k").await.assert_status(StatusCode::OK);
    app.delete("/v1/kv/ns/k")
        .header("if-match", &new_tag)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    app.get("/v1/kv/ns/k")
        .await
        .assert_status(StatusCode::NOT_FOUND);
    app.delete("/v1/kv/ns/k")
        .await
        .assert_status(StatusCode::NOT_FOUND);

    app.put("/v1/kv/ns/k")
        .header("if-match", "*")
        .raw("5")
        .await
        .assert_status(StatusCode::PRECONDITION_FAILED);
}

/// RFC 9110 §13.1.1: `If-Match` uses the strong comparison, so a weak tag
/// never matches, even with the current opaque value; `If-None-Match` uses
/// the weak comparison, so a weak tag still revalidates a read.
async fn if_match_compares_strongly_and_if_none_match_weakly(app: KvApp) {
    let created = app.put("/v1/kv/ns/k").raw("original").await;
    created.assert_status(StatusCode::CREATED);
    let etag = created.header("etag").unwrap().to_owned();
    let weak = format!("W/{etag}");

    let put = app
        .put("/v1/kv/ns/k")
        .header("if-match", &weak)
        .raw("x")
        .await;
    put.assert_status(StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        put.problem()["type"],
        "urn:constellation:problem:precondition-failed"
    );
    app.delete("/v1/kv/ns/k")
        .header("if-match", &weak)
        .await
        .assert_status(StatusCode::PRECONDITION_FAILED);
    let got = app.get("/v1/kv/ns/k").await;
    assert_eq!(got.body, b"original", "a weak If-Match changed the value");
    assert_eq!(got.header("etag"), Some(etag.as_str()));

    // A list that holds the strong tag as well does match.
    app.put("/v1/kv/ns/k")
        .header("if-match", &format!("{weak}, {etag}"))
        .raw("swapped")
        .await
        .assert_status(StatusCode::OK);
    let current = app.get("/v1/kv/ns/k").await;
    assert_eq!(current.body, b"swapped");
    let current_tag = current.header("etag").unwrap();

    let revalidated = app
        .get("/v1/kv/ns/k")
        .header("if-none-match", &format!("W/{current_tag}"))
        .await;
    revalidated.assert_status(StatusCode::NOT_MODIFIED);
    assert!(revalidated.body.is_empty());
    app.get("/v1/kv/ns/k")
        .header("if-none-match", &weak)
        .await
        .assert_status(StatusCode::OK);
}

async fn concurrent_compare_and_swap_has_one_winner(app: KvApp) {
    let etag = app
        .put("/v1/kv/ns/counter")
        .raw("0")
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let attempts = (0..10).map(|i| {
        app.put("/v1/kv/ns/counter")
            .header("if-match", &etag)
            .raw(format!("{i}"))
            .send()
    });
    let replies = futures::future::join_all(attempts).await;
    let statuses: Vec<StatusCode> = replies.iter().map(|r| r.status).collect();
    let winners: Vec<usize> = (0..10).filter(|i| statuses[*i] == StatusCode::OK).collect();
    let lost = statuses
        .iter()
        .filter(|s| **s == StatusCode::PRECONDITION_FAILED)
        .count();
    assert_eq!((winners.len(), lost), (1, 9), "{statuses:?}");
    let stored = app.get("/v1/kv/ns/counter").await;
    assert_eq!(
        stored.body,
        format!("{}", winners[0]).as_bytes(),
        "the winner's value is stored"
    );
    assert_eq!(stored.header("etag"), replies[winners[0]].header("etag"));
}

/// Forty clients write one key without a precondition at once: every write
/// succeeds (one creates it, 201; the rest replace it, 200), each gets its own
/// version, the stored entry is the one with the highest, and every write
/// published its change event with its version.
async fn concurrent_unconditional_puts_all_succeed_last_writer_wins(app: KvApp) {
    let writers = 40_u64;
    let replies = futures::future::join_all(
        (0..writers).map(|i| app.put("/v1/kv/ns/hot").raw(format!("{i}")).send()),
    )
    .await;
    let statuses: Vec<StatusCode> = replies.iter().map(|r| r.status).collect();
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let replaced = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!((created, replaced), (1, 39), "{statuses:?}");
    let mut versions: Vec<u64> = replies
        .iter()
        .map(|r| r.json()["version"].as_u64().unwrap())
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, (1..=writers).collect::<Vec<_>>());

    let last = replies
        .iter()
        .find(|r| r.json()["version"] == writers)
        .unwrap();
    let stored = app.get("/v1/kv/ns/hot").await;
    stored.assert_status(StatusCode::OK);
    assert_eq!(stored.header("etag"), last.header("etag"));
    let head = app.get("/v1/kv/ns").await.json();
    assert_eq!(head["items"][0]["version"], writers, "{head}");

    let events = app.service.change_events().await;
    let mut published: Vec<u64> = events
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    published.sort_unstable();
    assert_eq!(published, (1..=writers).collect::<Vec<_>>());
}

async fn ttl_sets_expires_at_to_now_plus_ttl_and_hides_the_value_after_it(app: KvApp) {
    let written_at = app.now();
    let put = app.put("/v1/kv/sessions/abc?ttl=60").raw("{}").await;
    put.assert_status(StatusCode::CREATED);
    let expires_at = rfc3339(&put.json()["expires_at"]);
    assert_eq!(
        expires_at,
        written_at + time::Duration::seconds(60),
        "expires_at is the write time plus the ttl"
    );
    let listed = app.get("/v1/kv/sessions").await.json();
    assert_eq!(rfc3339(&listed["items"][0]["expires_at"]), expires_at);

    app.advance(time::Duration::seconds(59));
    app.get("/v1/kv/sessions/abc")
        .await
        .assert_status(StatusCode::OK);
    app.advance(time::Duration::seconds(2));
    app.get("/v1/kv/sessions/abc")
        .await
        .assert_status(StatusCode::NOT_FOUND);
    let listed = app.get("/v1/kv/sessions").await.json();
    assert_eq!(listed["items"], Value::Array(vec![]));
    // An expired key can be created again with a create-only write.
    let again = app
        .put("/v1/kv/sessions/abc")
        .header("if-none-match", "*")
        .raw("{}")
        .await;
    again.assert_status(StatusCode::CREATED);
    assert_eq!(again.json()["version"], 1);
    assert!(again.json()["expires_at"].is_null());

    for bad in ["0", "-5", "soon", "31536001"] {
        let r = app
            .put(&format!("/v1/kv/sessions/x?ttl={bad}"))
            .raw("{}")
            .await;
        r.assert_status(StatusCode::BAD_REQUEST);
        assert_eq!(r.field().as_deref(), Some("ttl"), "ttl={bad}");
    }
}

async fn listing_pages_through_keys_in_byte_order(app: KvApp) {
    let mut keys: Vec<String> = (0..25).map(|i| format!("user/{i:02}")).collect();
    keys.push("other".into());
    for k in &keys {
        let path = format!("/v1/kv/ns/{}", k.replace('/', "%2F"));
        app.put(&path)
            .raw("v")
            .await
            .assert_status(StatusCode::CREATED);
    }
    let mut seen = Vec::new();
    let mut url = "/v1/kv/ns?prefix=user%2F&limit=10".to_owned();
    let mut pages = 0;
    loop {
        let page = app.get(&url).await;
        page.assert_status(StatusCode::OK);
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
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).map(|i| format!("user/{i:02}")).collect();
    assert_eq!(seen, expected);

    let all = app.get("/v1/kv/ns").await.json();
    assert_eq!(all["items"].as_array().unwrap().len(), 26);
    assert_eq!(all["items"][0]["key"], "other");
}

async fn bad_input_is_a_problem_naming_the_field_and_writes_nothing(app: KvApp) {
    let long_key = format!("/v1/kv/ns/{}", "k".repeat(1025));
    let cases: Vec<(Reply, StatusCode, &str)> = vec![
        (
            app.put("/v1/kv/Bad_NS/k").raw("v").await,
            StatusCode::BAD_REQUEST,
            "namespace",
        ),
        (
            app.put(&long_key).raw("v").await,
            StatusCode::BAD_REQUEST,
            "key",
        ),
        (
            app.put("/v1/kv/ns/a%0Ab").raw("v").await,
            StatusCode::BAD_REQUEST,
            "key",
        ),
        (
            app.put("/v1/kv/ns/a%FFb").raw("v").await,
            StatusCode::BAD_REQUEST,
            "key",
        ),
        (
            app.put("/v1/kv/ns/k")
                .header("if-match", "not-an-etag")
                .raw("v")
                .await,
            StatusCode::BAD_REQUEST,
            "If-Match",
        ),
        (
            app.put("/v1/kv/ns/k")
                .header("if-match", "\"abc\"")
                .raw("v")
                .await,
            StatusCode::BAD_REQUEST,
            "If-Match",
        ),
        (
            app.put("/v1/kv/ns/k").body("nonsense", "v").await,
            StatusCode::BAD_REQUEST,
            "Content-Type",
        ),
        (
            app.put("/v1/kv/ns/k?color=red").raw("v").await,
            StatusCode::BAD_REQUEST,
            "color",
        ),
        (
            app.put("/v1/kv/ns/k").raw(vec![b'x'; 256 * 1024 + 1]).await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "value",
        ),
        (
            app.get("/v1/kv/ns?limit=1001").await,
            StatusCode::BAD_REQUEST,
            "limit",
        ),
        (
            app.get("/v1/kv/ns?cursor=forged").await,
            StatusCode::BAD_REQUEST,
            "cursor",
        ),
        (
            app.get("/v1/kv/ns?prefix=%07").await,
            StatusCode::BAD_REQUEST,
            "prefix",
        ),
        (
            app.get("/v1/kv/ns/k")
                .header("if-none-match", "garbage")
                .await,
            StatusCode::BAD_REQUEST,
            "If-None-Match",
        ),
    ];
    for (i, (reply, status, field)) in cases.iter().enumerate() {
        assert_eq!(reply.status, *status, "case {i}: {}", reply.text());
        let p = reply.problem();
        assert_eq!(p["field"], *field, "case {i}: {p}");
        assert!(
            p["detail"].as_str().unwrap().contains(field),
            "case {i}: {p}"
        );
        assert!(p["request_id"].is_string(), "case {i}");
    }
    let listed = app.get("/v1/kv/ns").await.json();
    assert_eq!(
        listed["items"],
        Value::Array(vec![]),
        "no bad request wrote anything"
    );
    assert!(
        app.service.change_events().await.is_empty(),
        "no bad request published an event"
    );

    // Exactly at the limit is fine.
    app.put("/v1/kv/ns/big")
        .raw(vec![b'x'; 256 * 1024])
        .await
        .assert_status(StatusCode::CREATED);
}

async fn keys_may_hold_encoded_slashes_and_unicode(app: KvApp) {
    let put = app
        .put("/v1/kv/files/logo%2Fsmall%20%C3%BC.png")
        .body("image/png", "png")
        .await;
    put.assert_status(StatusCode::CREATED);
    assert_eq!(put.json()["key"], "logo/small ü.png");
    let got = app.get("/v1/kv/files/logo%2Fsmall%20%C3%BC.png").await;
    assert_eq!(got.body, b"png");
    assert_eq!(got.header("content-type"), Some("image/png"));
    // The decoded spelling (what API Gateway hands the function) is the same key.
    let decoded = app.get("/v1/kv/files/logo/small%20%C3%BC.png").await;
    assert_eq!(decoded.body, b"png");
}

/// The clock moves between writes, so each event's time is the time of its
/// own write, and ordering by time gives the order of the writes.
async fn every_write_and_delete_publishes_a_change_event_in_order(app: KvApp) {
    let mut written_at = Vec::new();
    written_at.push(app.now());
    app.put("/v1/kv/ns/a")
        .raw("1")
        .await
        .assert_status(StatusCode::CREATED);
    app.advance(time::Duration::seconds(1));
    written_at.push(app.now());
    app.put("/v1/kv/ns/a")
        .raw("2")
        .await
        .assert_status(StatusCode::OK);
    app.advance(time::Duration::seconds(1));
    written_at.push(app.now());
    app.delete("/v1/kv/ns/a")
        .await
        .assert_status(StatusCode::NO_CONTENT);
    app.advance(time::Duration::seconds(1));
    app.put("/v1/kv/ns/a")
        .header("if-match", "\"00000000000000000000000000000000\"")
        .raw("bad")
        .await
        .assert_status(StatusCode::PRECONDITION_FAILED);

    let mut events = app.service.change_events().await;
    assert_eq!(events.len(), 3, "{events:?}");
    // The queue does not promise order; the event time does.
    events.sort_by_key(|e| rfc3339(&e["time"]));
    let summary: Vec<(&str, u64, OffsetDateTime)> = events
        .iter()
        .map(|e| {
            (
                e["op"].as_str().unwrap(),
                e["version"].as_u64().unwrap(),
                rfc3339(&e["time"]),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("put", 1, written_at[0]),
            ("put", 2, written_at[1]),
            ("delete", 3, written_at[2]),
        ],
        "a delete is a version of its own"
    );
    let mut ids: Vec<&str> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3, "every event has its own id");
    for e in &events {
        assert_eq!(e["namespace"], "ns");
        assert_eq!(e["key"], "a");
        assert_eq!(e["org"], ORG);
    }
    assert_eq!(
        app.service
            .store
            .relay_outbox(time::Duration::ZERO)
            .await
            .unwrap()
            .sent,
        0,
        "published events leave the outbox"
    );
}

/// Stored values are client bytes of a client-chosen type served from the
/// API's origin: a read must never let a browser run them.
async fn value_reads_are_never_rendered_as_active_content(app: KvApp) {
    let cases = [
        ("text/html", "<script>alert(1)</script>", true),
        ("text/html; charset=utf-8", "<b>x</b>", true),
        ("TEXT/HTML", "<b>x</b>", true),
        ("image/svg+xml", "<svg onload=alert(1)/>", true),
        ("application/xhtml+xml", "<html/>", true),
        ("text/xml", "<x/>", true),
        ("application/xml", "<x/>", true),
        ("application/pdf", "%PDF-1.7", true),
        ("text/javascript", "alert(1)", true),
        ("application/x-unknown", "?", true),
        ("text/plain", "<script>alert(1)</script>", false),
        ("text/plain; charset=utf-8", "hi", false),
        ("application/json", "{}", false),
        ("image/png", "png", false),
        ("application/octet-stream", "bytes", false),
    ];
    for (i, (content_type, body, attachment)) in cases.iter().enumerate() {
        let path = format!("/v1/kv/ns/value-{i}");
        app.put(&path)
            .body(content_type, *body)
            .await
            .assert_status(StatusCode::CREATED);
        let got = app.get(&path).await;
        got.assert_status(StatusCode::OK);
        assert_eq!(got.body, body.as_bytes(), "{content_type}");
        assert_eq!(got.header("content-type"), Some(*content_type));
        assert_eq!(
            got.header("x-content-type-options"),
            Some("nosniff"),
            "{content_type}"
        );
        assert_eq!(
            got.header("content-security-policy"),
            Some("sandbox"),
            "{content_type}"
        );
        assert_eq!(
            got.header("content-disposition"),
            attachment.then_some("attachment"),
            "{content_type}"
        );
    }
}

async fn health_openapi_request_ids_and_unknown_routes(app: KvApp) {
    let health = app
        .get("/v1/kv/health")
        .header("x-request-id", "req-123")
        .await;
    health.assert_status(StatusCode::OK);
    assert_eq!(health.json()["service"], "kv");
    assert_eq!(health.header("x-request-id"), Some("req-123"));
    let generated = app.get("/v1/kv/health").await;
    assert_eq!(generated.header("x-request-id").map(str::len), Some(36));

    let doc = app.get("/v1/kv/openapi.json").await.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["paths"]["/v1/kv/{namespace}/{key}"]["put"].is_object());

    let missing = app.get("/v1/nowhere").header("x-request-id", "req-9").await;
    missing.assert_status(StatusCode::NOT_FOUND);
    assert_eq!(missing.problem()["request_id"], "req-9");
    let wrong_method = app.post("/v1/kv/ns/k").await;
    wrong_method.assert_status(StatusCode::METHOD_NOT_ALLOWED);
    wrong_method.problem();
}

async fn every_kv_route_requires_a_valid_token(app: KvApp) {
    for (method, path) in [
        (http::Method::GET, "/v1/kv/ns/k"),
        (http::Method::PUT, "/v1/kv/ns/k"),
        (http::Method::DELETE, "/v1/kv/ns/k"),
        (http::Method::GET, "/v1/kv/ns"),
    ] {
        for auth in [None, Some("Bearer not-a-jwt"), Some("Basic dXNlcjpwdw==")] {
            let call = app.call(method.clone(), path);
            let r = match auth {
                None => call.anonymous().await,
                Some(value) => call.header("authorization", value).await,
            };
            r.assert_unauthorized();
        }
    }
    // A token of another deployment's keys is no token.
    let foreign = constellation_testkit::http::TestTokens::new(
        &constellation_testkit::http::TestPlatform::local().await,
    )
    .await
    .token(ORG, Role::Owner);
    app.get("/v1/kv/ns/k")
        .bearer(&foreign)
        .await
        .assert_unauthorized();
    app.get("/v1/kv/health")
        .anonymous()
        .await
        .assert_status(StatusCode::OK);
}

async fn members_read_and_staff_write(app: KvApp) {
    app.put("/v1/kv/ns/k")
        .raw("v")
        .await
        .assert_status(StatusCode::CREATED);
    let member = app.service.token(ORG, Role::Member);
    app.get("/v1/kv/ns/k")
        .bearer(&member)
        .await
        .assert_status(StatusCode::OK);
    app.get("/v1/kv/ns")
        .bearer(&member)
        .await
        .assert_status(StatusCode::OK);
    let denied = app.put("/v1/kv/ns/k").bearer(&member).raw("w").await;
    denied.assert_status(StatusCode::FORBIDDEN);
    assert_eq!(
        denied.problem()["type"],
        "urn:constellation:problem:forbidden"
    );
    app.delete("/v1/kv/ns/k")
        .bearer(&member)
        .await
        .assert_status(StatusCode::FORBIDDEN);
    assert_eq!(
        app.get("/v1/kv/ns/k").await.body,
        b"v",
        "a refused write changed nothing"
    );
    for role in [Role::Admin, Role::Owner] {
        let token = app.service.token(ORG, role);
        let r = app.put("/v1/kv/ns/k").bearer(&token).raw("x").await;
        assert_eq!(r.status, StatusCode::OK, "{role}: {}", r.text());
    }
}

async fn another_organizations_keys_answer_404(app: KvApp) {
    app.put("/v1/kv/shared/secret")
        .raw("org-a's")
        .await
        .assert_status(StatusCode::CREATED);
    let b = app.service.token("org-b", Role::Owner);
    app.get("/v1/kv/shared/secret")
        .bearer(&b)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    app.delete("/v1/kv/shared/secret")
        .bearer(&b)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    let listed = app.get("/v1/kv/shared").bearer(&b).await.json();
    assert_eq!(listed["items"], Value::Array(vec![]), "list");
    let etag_a = app
        .get("/v1/kv/shared/secret")
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    app.put("/v1/kv/shared/secret")
        .bearer(&b)
        .header("if-match", &etag_a)
        .raw("hijack")
        .await
        .assert_status(StatusCode::PRECONDITION_FAILED);
    // The same namespace name in org B is a different store.
    app.put("/v1/kv/shared/secret")
        .bearer(&b)
        .raw("org-b's")
        .await
        .assert_status(StatusCode::CREATED);
    assert_eq!(app.get("/v1/kv/shared/secret").await.body, b"org-a's");
    assert_eq!(
        app.get("/v1/kv/shared/secret").bearer(&b).await.body,
        b"org-b's"
    );
}
