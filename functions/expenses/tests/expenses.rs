//! The expenses contract on both backends, with media running beside it
//! (receipts are real uploads checked by media's worker): money, tenancy,
//! the state machine, receipts, idempotency, summaries and the CSV export.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use constellation_core::auth::Role;
use constellation_testkit::http::{Reply, TestApp, TestPlatform};
use constellation_testkit::services::TestServices;
use http::StatusCode;
use serde_json::{Value, json};

constellation_testkit::on_both_backends! {
    app = crate::spawn;
    amounts_are_exact_and_answered_with_the_currencys_decimals,
    bad_expenses_name_the_field_and_store_nothing,
    members_see_their_own_and_admins_the_organizations,
    patch_needs_if_match_and_returns_a_rejected_expense_to_draft,
    every_illegal_transition_is_an_invalid_transition,
    nobody_approves_their_own_and_members_approve_nothing,
    large_expenses_need_a_ready_receipt,
    create_and_reimburse_honour_idempotency_keys,
    concurrent_reviews_have_one_winner,
    summaries_are_exact_per_group_and_currency,
    the_csv_export_is_rfc4180_and_formula_safe,
    delete_only_drafts_of_ones_own,
    deleting_a_draft_deletes_its_receipts,
}

const ORG: &str = "org-exp";

type ExpensesApp = TestApp<TestServices>;

async fn spawn(env: TestPlatform) -> ExpensesApp {
    let services = TestServices::start(
        &env,
        &[
            &constellation_media::SERVICE,
            &constellation_expenses::SERVICE,
        ],
    )
    .await
    .unwrap();
    let router = services.router();
    TestApp::new(env, router, services)
}

fn token(app: &ExpensesApp, role: Role) -> String {
    app.service.tokens.token(ORG, role)
}

fn today(app: &ExpensesApp) -> String {
    app.now().date().to_string()
}

fn body(app: &ExpensesApp, amount: &str, currency: &str) -> Value {
    json!({
        "amount": amount, "currency": currency, "category": "meals",
        "merchant": "Café Zentral", "description": "team lunch", "incurred_on": today(app),
    })
}

async fn create(app: &ExpensesApp, token: &str, body: &Value) -> Reply {
    app.post("/v1/expenses").bearer(token).json(body).await
}

async fn create_ok(app: &ExpensesApp, token: &str, amount: &str, currency: &str) -> Value {
    let r = create(app, token, &body(app, amount, currency)).await;
    r.assert_status(StatusCode::CREATED);
    r.json()
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

async fn act(app: &ExpensesApp, token: &str, id: &str, action: &str) -> Reply {
    let call = app
        .post(&format!("/v1/expenses/{id}/{action}"))
        .bearer(token);
    if action == "reject" {
        call.json(&json!({"reason": "missing itemised bill"})).await
    } else {
        call.await
    }
}

async fn amounts_are_exact_and_answered_with_the_currencys_decimals(app: ExpensesApp) {
    let me = token(&app, Role::Member);
    for (amount, currency, answered) in [
        ("5", "USD", "5.00"),
        ("5.5", "EUR", "5.50"),
        ("0.01", "USD", "0.01"),
        ("1000000", "USD", "1000000.00"),
        ("1234", "JPY", "1234"),
        ("1.5", "KWD", "1.500"),
        ("07.10", "GBP", "7.10"),
    ] {
        let r = create(&app, &me, &body(&app, amount, currency)).await;
        r.assert_status(StatusCode::CREATED);
        let v = r.json();
        assert_eq!(v["amount"], answered, "{amount} {currency}");
        assert_eq!(v["currency"], currency);
        assert_eq!(v["status"], "draft");
        assert_eq!(v["history"][0]["status"], "draft");
        let etag = r.header("etag").unwrap().to_owned();
        let got = app
            .get(&format!("/v1/expenses/{}", id(&v)))
            .bearer(&me)
            .await;
        got.assert_status(StatusCode::OK);
        assert_eq!(got.header("etag"), Some(etag.as_str()));
        assert_eq!(got.json()["amount"], answered);
    }
}

async fn bad_expenses_name_the_field_and_store_nothing(app: ExpensesApp) {
    let me = token(&app, Role::Member);
    let tomorrow = (app.now().date() + time::Duration::days(1)).to_string();
    let too_late = (app.now().date() + time::Duration::days(2)).to_string();
    let too_old = (app.now().date() - time::Duration::days(366)).to_string();
    let ok = body(&app, "10", "USD");
    let mut tomorrow_ok = ok.clone();
    tomorrow_ok["incurred_on"] = json!(tomorrow);
    create(&app, &me, &tomorrow_ok)
        .await
        .assert_status(StatusCode::CREATED);
    for (field, value) in [
        ("amount", json!("5.555")),
        ("amount", json!("0")),
        ("amount", json!("0.00")),
        ("amount", json!("-5")),
        ("amount", json!("5e2")),
        ("amount", json!("1000000.01")),
        ("amount", json!(" 5")),
        ("amount", json!(5)),
        ("amount", json!("99999999999999999999999999")),
        ("currency", json!("usd")),
        ("currency", json!("XXX")),
        ("currency", json!("EURO")),
        ("category", json!("")),
        ("category", json!("x".repeat(65))),
        ("merchant", json!("   ")),
        ("incurred_on", json!(too_late)),
        ("incurred_on", json!(too_old)),
        ("incurred_on", json!("2026-02-30")),
        ("incurred_on", json!("yesterday")),
    ] {
        let mut b = ok.clone();
        b[field] = value.clone();
        let r = create(&app, &me, &b).await;
        r.assert_status(StatusCode::BAD_REQUEST);
        assert_eq!(r.field().as_deref(), Some(field), "{field} = {value}");
    }
    let mut jpy = ok.clone();
    jpy["currency"] = json!("JPY");
    jpy["amount"] = json!("5.5");
    let r = create(&app, &me, &jpy).await;
    assert_eq!(r.field().as_deref(), Some("amount"));
    let list = app.get("/v1/expenses").bearer(&me).await.json();
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        1,
        "only the valid one was stored"
    );
}

async fn members_see_their_own_and_admins_the_organizations(app: ExpensesApp) {
    let alice = token(&app, Role::Member);
    let bob = token(&app, Role::Member);
    let admin = token(&app, Role::Admin);
    let outsider = app.service.tokens.token("org-other", Role::Owner);
    let a = create_ok(&app, &alice, "10", "EUR").await;
    app.advance(time::Duration::milliseconds(5));
    let b = create_ok(&app, &bob, "20", "EUR").await;
    let path = format!("/v1/expenses/{}", id(&a));
    app.get(&path)
        .bearer(&bob)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    app.get(&path)
        .bearer(&outsider)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    app.get(&path)
        .bearer(&admin)
        .await
        .assert_status(StatusCode::OK);

    let ids = |v: Value| -> Vec<String> { v["items"].as_array().unwrap().iter().map(id).collect() };
    assert_eq!(
        ids(app.get("/v1/expenses").bearer(&alice).await.json()),
        [id(&a)]
    );
    let all = ids(app.get("/v1/expenses").bearer(&admin).await.json());
    assert_eq!(all, [id(&b), id(&a)], "newest first");
    let bobs = b["submitter"].as_str().unwrap();
    app.get(&format!("/v1/expenses?submitter={bobs}"))
        .bearer(&alice)
        .await
        .assert_status(StatusCode::FORBIDDEN);
    assert_eq!(
        ids(app
            .get(&format!("/v1/expenses?submitter={bobs}"))
            .bearer(&admin)
            .await
            .json()),
        [id(&b)]
    );
    assert!(ids(app.get("/v1/expenses").bearer(&outsider).await.json()).is_empty());
    act(&app, &alice, &id(&a), "submit")
        .await
        .assert_status(StatusCode::OK);
    assert_eq!(
        ids(app
            .get("/v1/expenses?status=submitted")
            .bearer(&admin)
            .await
            .json()),
        [id(&a)]
    );
    assert!(
        ids(app
            .get("/v1/expenses?category=travel")
            .bearer(&admin)
            .await
            .json())
        .is_empty()
    );
    let later = (app.now().date() + time::Duration::days(1)).to_string();
    assert!(
        ids(app
            .get(&format!("/v1/expenses?from={later}"))
            .bearer(&admin)
            .await
            .json())
        .is_empty()
    );
    let r = app.get("/v1/expenses?status=paid").bearer(&admin).await;
    assert_eq!(r.field().as_deref(), Some("status"));
    let r = app.get("/v1/expenses?sort=amount").bearer(&admin).await;
    assert_eq!(r.field().as_deref(), Some("sort"));
}

async fn patch_needs_if_match_and_returns_a_rejected_expense_to_draft(app: ExpensesApp) {
    let me = token(&app, Role::Member);
    let admin = token(&app, Role::Admin);
    let created = create(&app, &me, &body(&app, "10", "USD")).await;
    let etag = created.header("etag").unwrap().to_owned();
    let path = format!("/v1/expenses/{}", id(&created.json()));
    let change = json!({"amount": "12.5", "merchant": "Kiosk"});
    let r = app.patch(&path).bearer(&me).json(&change).await;
    r.assert_status(StatusCode::PRECONDITION_REQUIRED);
    assert_eq!(
        r.problem()["type"],
        "urn:constellation:problem:precondition-required"
    );
    app.patch(&path)
        .bearer(&me)
        .header("if-match", &format!("\"{}\"", "0".repeat(32)))
        .json(&change)
        .await
        .assert_status(StatusCode::PRECONDITION_FAILED);
    app.patch(&path)
        .bearer(&admin)
        .header("if-match", &etag)
        .json(&change)
        .await
        .assert_status(StatusCode::FORBIDDEN);
    let r = app
        .patch(&path)
        .bearer(&me)
        .header("if-match", &etag)
        .json(&change)
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(
        (r.json()["amount"].as_str(), r.json()["merchant"].as_str()),
        (Some("12.50"), Some("Kiosk"))
    );
    let etag2 = r.header("etag").unwrap().to_owned();
    assert_ne!(etag2, etag);
    app.patch(&path)
        .bearer(&me)
        .header("if-match", &etag)
        .json(&change)
        .await
        .assert_status(StatusCode::PRECONDITION_FAILED);
    let r = app
        .patch(&path)
        .bearer(&me)
        .header("if-match", &etag2)
        .json(&json!({"currency": "JPY"}))
        .await;
    assert_eq!(
        r.field().as_deref(),
        Some("currency"),
        "12.50 has no JPY spelling"
    );
    let r = app
        .patch(&path)
        .bearer(&me)
        .header("if-match", &etag2)
        .json(&json!({}))
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(
        r.header("etag"),
        Some(etag2.as_str()),
        "an empty patch changes nothing"
    );

    let id_ = path.rsplit('/').next().unwrap().to_owned();
    act(&app, &me, &id_, "submit")
        .await
        .assert_status(StatusCode::OK);
    let r = app
        .patch(&path)
        .bearer(&me)
        .header("if-match", "*")
        .json(&change)
        .await;
    r.assert_status(StatusCode::PRECONDITION_REQUIRED);
    let submitted_tag = app
        .get(&path)
        .bearer(&me)
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let r = app
        .patch(&path)
        .bearer(&me)
        .header("if-match", &submitted_tag)
        .json(&change)
        .await;
    r.assert_status(StatusCode::CONFLICT);
    assert_eq!(
        r.problem()["type"],
        "urn:constellation:problem:invalid-transition"
    );
    assert_eq!(r.problem()["current_status"], "submitted");
    let rejected = act(&app, &admin, &id_, "reject").await;
    rejected.assert_status(StatusCode::OK);
    assert_eq!(
        rejected.json()["history"][2]["reason"],
        "missing itemised bill"
    );
    let r = app
        .patch(&path)
        .bearer(&me)
        .header("if-match", rejected.header("etag").unwrap())
        .json(&json!({"description": "itemised bill attached"}))
        .await;
    r.assert_status(StatusCode::OK);
    let v = r.json();
    assert_eq!(v["status"], "draft");
    let statuses: Vec<&str> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["draft", "submitted", "rejected", "draft"]);
}

async fn every_illegal_transition_is_an_invalid_transition(app: ExpensesApp) {
    let me = token(&app, Role::Member);
    let admin = token(&app, Role::Admin);
    let e = id(&create_ok(&app, &me, "10", "USD").await);
    let expect_invalid = |r: Reply, current: &str| {
        r.assert_status(StatusCode::CONFLICT);
        assert_eq!(
            r.problem()["type"],
            "urn:constellation:problem:invalid-transition"
        );
        assert_eq!(r.problem()["current_status"], current);
    };
    // draft: only submit
    for action in ["approve", "reject", "reimburse"] {
        expect_invalid(act(&app, &admin, &e, action).await, "draft");
    }
    act(&app, &me, &e, "submit")
        .await
        .assert_status(StatusCode::OK);
    // submitted: approve or reject
    expect_invalid(act(&app, &me, &e, "submit").await, "submitted");
    expect_invalid(act(&app, &admin, &e, "reimburse").await, "submitted");
    let approved = act(&app, &admin, &e, "approve").await;
    approved.assert_status(StatusCode::OK);
    assert_eq!(approved.json()["status"], "approved");
    // approved: only reimburse
    expect_invalid(act(&app, &me, &e, "submit").await, "approved");
    expect_invalid(act(&app, &admin, &e, "approve").await, "approved");
    expect_invalid(act(&app, &admin, &e, "reject").await, "approved");
    act(&app, &admin, &e, "reimburse")
        .await
        .assert_status(StatusCode::OK);
    // reimbursed: nothing
    for (who, action) in [
        (&me, "submit"),
        (&admin, "approve"),
        (&admin, "reject"),
        (&admin, "reimburse"),
    ] {
        expect_invalid(act(&app, who, &e, action).await, "reimbursed");
    }
    let history = app
        .get(&format!("/v1/expenses/{e}"))
        .bearer(&me)
        .await
        .json()["history"]
        .clone();
    let statuses: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["draft", "submitted", "approved", "reimbursed"]);
    // rejected: only edits (back to draft)
    let r = id(&create_ok(&app, &me, "10", "USD").await);
    act(&app, &me, &r, "submit")
        .await
        .assert_status(StatusCode::OK);
    act(&app, &admin, &r, "reject")
        .await
        .assert_status(StatusCode::OK);
    for (who, action) in [
        (&me, "submit"),
        (&admin, "approve"),
        (&admin, "reject"),
        (&admin, "reimburse"),
    ] {
        expect_invalid(act(&app, who, &r, action).await, "rejected");
    }
    // a reason is 1 to 500 characters
    let s = id(&create_ok(&app, &me, "10", "USD").await);
    act(&app, &me, &s, "submit")
        .await
        .assert_status(StatusCode::OK);
    for reason in [json!(""), json!("x".repeat(501))] {
        let r = app
            .post(&format!("/v1/expenses/{s}/reject"))
            .bearer(&admin)
            .json(&json!({"reason": reason}))
            .await;
        assert_eq!(r.field().as_deref(), Some("reason"));
    }
    let r = app
        .post(&format!("/v1/expenses/{s}/reject"))
        .bearer(&admin)
        .json(&json!({}))
        .await;
    assert_eq!(r.field().as_deref(), Some("reason"));
}

async fn nobody_approves_their_own_and_members_approve_nothing(app: ExpensesApp) {
    let admin = token(&app, Role::Admin);
    let owner = token(&app, Role::Owner);
    let member = token(&app, Role::Member);
    let staff = token(&app, Role::Staff);
    let own = id(&create_ok(&app, &admin, "10", "USD").await);
    act(&app, &admin, &own, "submit")
        .await
        .assert_status(StatusCode::OK);
    act(&app, &admin, &own, "approve")
        .await
        .assert_status(StatusCode::FORBIDDEN);
    act(&app, &admin, &own, "reject")
        .await
        .assert_status(StatusCode::FORBIDDEN);
    let theirs = id(&create_ok(&app, &member, "10", "USD").await);
    act(&app, &owner, &theirs, "submit")
        .await
        .assert_status(StatusCode::FORBIDDEN);
    act(&app, &member, &theirs, "submit")
        .await
        .assert_status(StatusCode::OK);
    act(&app, &member, &theirs, "approve")
        .await
        .assert_status(StatusCode::FORBIDDEN);
    act(&app, &staff, &theirs, "approve")
        .await
        .assert_status(StatusCode::FORBIDDEN);
    let r = app
        .post(&format!("/v1/expenses/{own}/approve"))
        .bearer(&owner)
        .json(&json!({"reason": ""}))
        .await;
    assert_eq!(
        r.field().as_deref(),
        Some("reason"),
        "an approval note is 1 to 500 characters"
    );
    let approved = app
        .post(&format!("/v1/expenses/{own}/approve"))
        .bearer(&owner)
        .json(&json!({"reason": "within budget"}))
        .await;
    approved.assert_status(StatusCode::OK);
    assert_eq!(approved.json()["history"][2]["reason"], "within budget");
    let again = act(&app, &owner, &own, "approve").await;
    again.assert_status(StatusCode::CONFLICT);
    assert_eq!(again.problem()["current_status"], "approved");
}

async fn large_expenses_need_a_ready_receipt(app: ExpensesApp) {
    let me = token(&app, Role::Member);
    let small = id(&create_ok(&app, &me, "74.99", "USD").await);
    act(&app, &me, &small, "submit")
        .await
        .assert_status(StatusCode::OK);
    let large = id(&create_ok(&app, &me, "75", "USD").await);
    let r = act(&app, &me, &large, "submit").await;
    r.assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        r.problem()["type"],
        "urn:constellation:problem:receipt-required"
    );

    let photo = constellation_media::sample::jpeg_with_gps_exif(320, 240);
    let r = app
        .post(&format!("/v1/expenses/{large}/receipts"))
        .bearer(&me)
        .json(&json!({"content_type": "image/jpeg", "size": photo.len(), "filename": "bill.jpg"}))
        .await;
    r.assert_status(StatusCode::CREATED);
    let upload = r.json();
    assert_eq!(upload["status"], "pending");
    let media_id = id(&upload);
    // media learns of the upload from its event before the bytes arrive.
    app.service.pump().await.unwrap();
    let e = app
        .get(&format!("/v1/expenses/{large}"))
        .bearer(&me)
        .await
        .json();
    assert_eq!(
        e["receipts"],
        json!([{"media_id": media_id, "status": "pending"}])
    );
    act(&app, &me, &large, "submit")
        .await
        .assert_status(StatusCode::UNPROCESSABLE_ENTITY);

    let mut put = reqwest::Client::new().put(upload["upload"]["url"].as_str().unwrap());
    put = put.header("content-type", "image/jpeg");
    assert_eq!(put.body(photo).send().await.unwrap().status().as_u16(), 200);
    app.service.pump().await.unwrap();
    let e = app
        .get(&format!("/v1/expenses/{large}"))
        .bearer(&me)
        .await
        .json();
    assert_eq!(e["receipts"][0]["status"], "ready", "{e}");
    let m = app
        .get(&format!("/v1/media/{media_id}"))
        .bearer(&me)
        .await
        .json();
    assert_eq!(m["purpose"], "receipt");
    assert_eq!(m["status"], "ready");
    act(&app, &me, &large, "submit")
        .await
        .assert_status(StatusCode::OK);
    let r = app
        .post(&format!("/v1/expenses/{large}/receipts"))
        .bearer(&me)
        .json(&json!({"content_type": "image/jpeg", "size": 10, "filename": "late.jpg"}))
        .await;
    r.assert_status(StatusCode::CONFLICT);

    // A rejected upload keeps the rule: a PNG sent as PDF.
    let other = id(&create_ok(&app, &me, "80", "EUR").await);
    let png = constellation_media::sample::png(16, 16);
    let r = app
        .post(&format!("/v1/expenses/{other}/receipts"))
        .bearer(&me)
        .json(
            &json!({"content_type": "application/pdf", "size": png.len(), "filename": "bill.pdf"}),
        )
        .await;
    let upload = r.json();
    app.service.pump().await.unwrap();
    let put = reqwest::Client::new()
        .put(upload["upload"]["url"].as_str().unwrap())
        .header("content-type", "application/pdf");
    assert_eq!(put.body(png).send().await.unwrap().status().as_u16(), 200);
    app.service.pump().await.unwrap();
    let e = app
        .get(&format!("/v1/expenses/{other}"))
        .bearer(&me)
        .await
        .json();
    assert_eq!(e["receipts"][0]["status"], "rejected");
    act(&app, &me, &other, "submit")
        .await
        .assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .post(&format!("/v1/expenses/{other}/receipts"))
        .bearer(&token(&app, Role::Admin))
        .json(&json!({"content_type": "image/jpeg", "size": 10, "filename": "x.jpg"}))
        .await;
    r.assert_status(StatusCode::FORBIDDEN);
    let r = app
        .post(&format!("/v1/expenses/{other}/receipts"))
        .bearer(&me)
        .json(&json!({"content_type": "image/gif", "size": 10, "filename": "x.gif"}))
        .await;
    assert_eq!(r.field().as_deref(), Some("content_type"));
}

async fn create_and_reimburse_honour_idempotency_keys(app: ExpensesApp) {
    let me = token(&app, Role::Member);
    let admin = token(&app, Role::Admin);
    let b = body(&app, "42", "EUR");
    let first = app
        .post("/v1/expenses")
        .bearer(&me)
        .header("idempotency-key", "create-1")
        .json(&b)
        .await;
    first.assert_status(StatusCode::CREATED);
    let again = app
        .post("/v1/expenses")
        .bearer(&me)
        .header("idempotency-key", "create-1")
        .json(&b)
        .await;
    again.assert_status(StatusCode::CREATED);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(id(&again.json()), id(&first.json()));
    let mut other = b.clone();
    other["amount"] = json!("43");
    app.post("/v1/expenses")
        .bearer(&me)
        .header("idempotency-key", "create-1")
        .json(&other)
        .await
        .assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    let list = app.get("/v1/expenses").bearer(&me).await.json();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    let e = id(&first.json());
    act(&app, &me, &e, "submit")
        .await
        .assert_status(StatusCode::OK);
    act(&app, &admin, &e, "approve")
        .await
        .assert_status(StatusCode::OK);
    let path = format!("/v1/expenses/{e}/reimburse");
    let paid = app
        .post(&path)
        .bearer(&admin)
        .header("idempotency-key", "pay-1")
        .await;
    paid.assert_status(StatusCode::OK);
    let replay = app
        .post(&path)
        .bearer(&admin)
        .header("idempotency-key", "pay-1")
        .await;
    replay.assert_status(StatusCode::OK);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.json(), paid.json());
    let r = app
        .post(&path)
        .bearer(&admin)
        .header("idempotency-key", "pay-2")
        .await;
    r.assert_status(StatusCode::CONFLICT);
    assert_eq!(r.problem()["current_status"], "reimbursed");
}

async fn concurrent_reviews_have_one_winner(app: ExpensesApp) {
    let me = token(&app, Role::Member);
    let admins: Vec<String> = (0..6).map(|_| token(&app, Role::Admin)).collect();
    let e = id(&create_ok(&app, &me, "30", "USD").await);
    act(&app, &me, &e, "submit")
        .await
        .assert_status(StatusCode::OK);
    let replies = futures::future::join_all(admins.iter().enumerate().map(|(i, t)| {
        let action = if i % 2 == 0 { "approve" } else { "reject" };
        act(&app, t, &e, action)
    }))
    .await;
    let ok = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    assert_eq!(
        ok,
        1,
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(
        replies
            .iter()
            .all(|r| r.status == StatusCode::OK || r.status == StatusCode::CONFLICT)
    );
    let v = app
        .get(&format!("/v1/expenses/{e}"))
        .bearer(&me)
        .await
        .json();
    assert_eq!(
        v["history"].as_array().unwrap().len(),
        3,
        "one review recorded: {v}"
    );

    // Two edits from the same read: one wins, the other is told it is stale.
    let d = create(&app, &me, &body(&app, "5", "USD")).await;
    let etag = d.header("etag").unwrap().to_owned();
    let path = format!("/v1/expenses/{}", id(&d.json()));
    let edits = futures::future::join_all((0..4).map(|i| {
        app.patch(&path)
            .bearer(&me)
            .header("if-match", &etag)
            .json(&json!({"merchant": format!("m{i}")}))
            .send()
    }))
    .await;
    assert_eq!(
        edits.iter().filter(|r| r.status == StatusCode::OK).count(),
        1
    );
    assert!(
        edits
            .iter()
            .all(|r| r.status == StatusCode::OK || r.status == StatusCode::PRECONDITION_FAILED)
    );
}

async fn summaries_are_exact_per_group_and_currency(app: ExpensesApp) {
    let me = token(&app, Role::Member);
    let admin = token(&app, Role::Admin);
    let mut expected_meals = 0_i64;
    for i in 0..45 {
        let amount = if i % 3 == 0 {
            "0.10"
        } else if i % 3 == 1 {
            "0.20"
        } else {
            "33.33"
        };
        expected_meals += match amount {
            "0.10" => 10,
            "0.20" => 20,
            _ => 3333,
        };
        create_ok(&app, &me, amount, "USD").await;
    }
    let mut travel = body(&app, "999999.99", "USD");
    travel["category"] = json!("travel");
    for _ in 0..3 {
        create(&app, &me, &travel)
            .await
            .assert_status(StatusCode::CREATED);
    }
    create_ok(&app, &admin, "0.1", "EUR").await;
    create_ok(&app, &admin, "1.005", "KWD").await;
    let groups = app
        .get("/v1/expenses/summary?group_by=category")
        .bearer(&admin)
        .await;
    groups.assert_status(StatusCode::OK);
    let groups = groups.json()["groups"].clone();
    let find = |key: &str, currency: &str| -> Value {
        groups
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["key"] == key && g["currency"] == currency)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let meals = find("meals", "USD");
    assert_eq!(meals["count"], 45);
    assert_eq!(
        meals["total"],
        format!("{}.{:02}", expected_meals / 100, expected_meals % 100)
    );
    assert_eq!(find("travel", "USD")["total"], "2999999.97");
    assert_eq!(find("meals", "EUR")["total"], "0.10");
    assert_eq!(find("meals", "KWD")["total"], "1.005");
    let mine = app
        .get("/v1/expenses/summary?group_by=submitter")
        .bearer(&me)
        .await
        .json();
    assert_eq!(
        mine["groups"].as_array().unwrap().len(),
        1,
        "a member sums their own: {mine}"
    );
    let month = app
        .get("/v1/expenses/summary?group_by=month")
        .bearer(&admin)
        .await
        .json();
    assert_eq!(month["groups"][0]["key"].as_str().unwrap().len(), 7);
    let status = app
        .get("/v1/expenses/summary?group_by=status")
        .bearer(&admin)
        .await
        .json();
    assert!(
        status["groups"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["key"] == "draft")
    );
    let r = app
        .get("/v1/expenses/summary?group_by=colour")
        .bearer(&admin)
        .await;
    assert_eq!(r.field().as_deref(), Some("group_by"));
    let tomorrow = (app.now().date() + time::Duration::days(1)).to_string();
    let none = app
        .get(&format!("/v1/expenses/summary?from={tomorrow}"))
        .bearer(&admin)
        .await
        .json();
    assert!(none["groups"].as_array().unwrap().is_empty());
}

async fn the_csv_export_is_rfc4180_and_formula_safe(app: ExpensesApp) {
    let me = token(&app, Role::Member);
    let admin = token(&app, Role::Admin);
    let mut b = body(&app, "12.5", "EUR");
    b["merchant"] = json!("=HYPERLINK(\"http://evil\",\"x\")");
    b["description"] = json!("line one, with \"quotes\"");
    b["category"] = json!("@SUM(A1)");
    create(&app, &me, &b)
        .await
        .assert_status(StatusCode::CREATED);
    create_ok(&app, &me, "1", "USD").await;

    app.get("/v1/expenses/export")
        .bearer(&me)
        .header("accept", "text/csv")
        .await
        .assert_status(StatusCode::FORBIDDEN);
    app.get("/v1/expenses/export")
        .bearer(&admin)
        .header("accept", "application/json")
        .await
        .assert_status(StatusCode::NOT_ACCEPTABLE);
    let r = app
        .get("/v1/expenses/export")
        .bearer(&admin)
        .header("accept", "text/csv")
        .await;
    r.assert_status(StatusCode::OK);
    assert!(r.header("content-type").unwrap().starts_with("text/csv"));
    let csv = r.text();
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(
        lines.len(),
        4,
        "header, two rows, and the final CRLF: {csv:?}"
    );
    assert!(lines[0].starts_with("id,submitter,status"));
    assert_eq!(lines[3], "");
    let dangerous = lines.iter().find(|l| l.contains("HYPERLINK")).unwrap();
    assert!(
        dangerous.contains(r#""'=HYPERLINK(""http://evil"",""x"")""#),
        "{dangerous}"
    );
    assert!(dangerous.contains(",'@SUM(A1),"), "{dangerous}");
    assert!(
        dangerous.contains(r#""line one, with ""quotes""""#),
        "{dangerous}"
    );
    assert!(dangerous.contains(",12.50,EUR,"), "{dangerous}");
    let tomorrow = (app.now().date() + time::Duration::days(1)).to_string();
    let empty = app
        .get(&format!("/v1/expenses/export?from={tomorrow}"))
        .bearer(&admin)
        .header("accept", "text/csv")
        .await;
    assert_eq!(empty.text().split("\r\n").count(), 2, "the header alone");
}

async fn delete_only_drafts_of_ones_own(app: ExpensesApp) {
    let me = token(&app, Role::Member);
    let admin = token(&app, Role::Admin);
    let other = token(&app, Role::Member);
    let d = id(&create_ok(&app, &me, "3", "USD").await);
    let path = format!("/v1/expenses/{d}");
    app.delete(&path)
        .bearer(&other)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    app.delete(&path)
        .bearer(&admin)
        .await
        .assert_status(StatusCode::FORBIDDEN);
    app.delete(&path)
        .bearer(&me)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    app.get(&path)
        .bearer(&me)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    let s = id(&create_ok(&app, &me, "3", "USD").await);
    act(&app, &me, &s, "submit")
        .await
        .assert_status(StatusCode::OK);
    let r = app.delete(&format!("/v1/expenses/{s}")).bearer(&me).await;
    r.assert_status(StatusCode::CONFLICT);
    assert_eq!(r.problem()["current_status"], "submitted");
}

async fn deleting_a_draft_deletes_its_receipts(app: ExpensesApp) {
    let me = token(&app, Role::Member);
    let e = id(&create_ok(&app, &me, "80", "EUR").await);
    let pdf = constellation_media::sample::pdf();
    let upload = app
        .post(&format!("/v1/expenses/{e}/receipts"))
        .bearer(&me)
        .json(
            &json!({"content_type": "application/pdf", "size": pdf.len(), "filename": "bill.pdf"}),
        )
        .await
        .json();
    app.service.pump().await.unwrap();
    let put = reqwest::Client::new()
        .put(upload["upload"]["url"].as_str().unwrap())
        .header("content-type", "application/pdf");
    assert_eq!(put.body(pdf).send().await.unwrap().status().as_u16(), 200);
    app.service.pump().await.unwrap();
    let media = format!("/v1/media/{}", id(&upload));
    let ready = app.get(&media).bearer(&me).await.json();
    assert_eq!(ready["status"], "ready");
    let download = ready["download_url"].as_str().unwrap().to_owned();

    app.delete(&format!("/v1/expenses/{e}"))
        .bearer(&me)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    app.service.pump().await.unwrap();
    app.get(&media)
        .bearer(&me)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    let gone = reqwest::get(&download).await.unwrap().status().as_u16();
    assert!(
        gone == 404 || gone == 403,
        "the receipt's bytes are gone: {gone}"
    );
}
