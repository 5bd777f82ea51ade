//! The comms contract on both backends: the directory from auth's events,
//! announcements fanned out once per addressed account (every message
//! delivered twice), scheduled ones published at their time, inboxes,
//! notifications of other services' events, reminders across overlapping
//! scheduler runs, daily reports equal to the events consumed, tenancy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use constellation_comms::{DAILY_REPORT, SCHEDULER, SERVICE};
use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Principal, Role};
use constellation_core::directory::{AccountSnapshot, events as account_events};
use constellation_platform::DomainEvent;
use constellation_platform::schedule::ScheduledEvent;
use constellation_testkit::http::{TestApp, TestPlatform};
use constellation_testkit::items::{NEVER_EXPORTED, check_every_item};
use constellation_testkit::services::TestServices;
use http::StatusCode;
use serde_json::{Value, json};

constellation_testkit::on_both_backends! {
    app = crate::spawn;
    an_announcement_to_staff_reaches_every_staff_account_once_and_no_member,
    a_scheduled_announcement_publishes_at_its_time_once,
    events_of_other_services_reach_the_right_inboxes,
    reminders_fire_once_across_overlapping_scheduler_runs,
    the_daily_report_equals_the_events_consumed,
    inboxes_read_and_retractions_remove_unread_notifications,
    the_directory_keeps_the_newest_snapshot,
    bad_input_names_the_field_and_writes_nothing,
    another_organization_sees_nothing_and_members_cannot_announce,
    attachments_must_be_ready_and_come_with_download_urls,
    an_expense_submitted_reaches_the_admins_inbox_and_their_mailbox,
    a_failing_sender_opens_the_breaker_and_loses_nothing,
    mail_goes_out_once_and_never_for_a_retracted_announcement,
    a_fan_out_over_many_pages_reaches_everyone_once,
    every_stored_item_passes_the_import_check,
}

const ORG: &str = "org-comms";
const OTHER: &str = "org-other";

type CommsApp = TestApp<TestServices>;

/// The organization's people: one account per role, two staff, and a
/// disabled staff account.
#[derive(Debug, Clone)]
struct People {
    owner: Principal,
    admin: Principal,
    staff: Principal,
    staff2: Principal,
    member: Principal,
    disabled: Principal,
}

fn principal(org: &str, n: u8, role: Role) -> Principal {
    Principal {
        account: AccountId::from_bytes([n; 16]),
        org: OrgId::parse(org).unwrap(),
        role,
    }
}

fn people() -> People {
    People {
        owner: principal(ORG, 1, Role::Owner),
        admin: principal(ORG, 2, Role::Admin),
        staff: principal(ORG, 3, Role::Staff),
        staff2: principal(ORG, 4, Role::Staff),
        member: principal(ORG, 5, Role::Member),
        disabled: principal(ORG, 6, Role::Staff),
    }
}

async fn spawn(env: TestPlatform) -> CommsApp {
    let services = TestServices::start(&env, &[&constellation_expenses::SERVICE, &SERVICE])
        .await
        .unwrap();
    let router = services.router();
    let app = TestApp::new(env, router, services);
    let p = people();
    let mut events = Vec::new();
    for (who, disabled) in [
        (&p.owner, false),
        (&p.admin, false),
        (&p.staff, false),
        (&p.staff2, false),
        (&p.member, false),
        (&p.disabled, true),
    ] {
        events.push((
            account_events::ACCOUNT_CREATED,
            ORG,
            snapshot(who, 1, disabled),
        ));
    }
    let outsider = principal(OTHER, 7, Role::Owner);
    events.push((
        account_events::ACCOUNT_CREATED,
        OTHER,
        snapshot(&outsider, 1, false),
    ));
    publish(&app, events).await;
    app.service.pump().await.unwrap();
    app
}

fn snapshot(p: &Principal, version: u64, disabled: bool) -> Value {
    serde_json::to_value(AccountSnapshot {
        account_id: p.account.as_str().to_owned(),
        email: email(p),
        role: p.role.as_str().to_owned(),
        disabled,
        version,
    })
    .unwrap()
}

/// An account's address: its whole id, so mail to it is this test's only.
fn email(p: &Principal) -> String {
    format!("{}@{}.test", p.account.as_str(), p.org)
}

/// A fresh account with `role` in `org`, announced to comms as auth would.
async fn newcomer(app: &CommsApp, role: Role) -> Principal {
    let p = Principal {
        account: AccountId::from_bytes(rand::random()),
        org: OrgId::parse(ORG).unwrap(),
        role,
    };
    publish(
        app,
        vec![(account_events::ACCOUNT_CREATED, ORG, snapshot(&p, 1, false))],
    )
    .await;
    app.service.pump().await.unwrap();
    p
}

/// Opts `p` in to mail of `category`.
async fn opt_in(app: &CommsApp, p: &Principal, category: &str) {
    let mut email = json!({"announcements": false, "expenses": false, "orders": false, "inventory": false, "reminders": false});
    email[category] = json!(true);
    app.put("/v1/comms/preferences")
        .bearer(&token(app, p))
        .json(&json!({ "email": email }))
        .await
        .assert_status(StatusCode::OK);
}

/// The mail sent to `p` so far.
async fn mail_to(app: &CommsApp, p: &Principal) -> Vec<String> {
    mail_to_each(app, std::slice::from_ref(p)).await.remove(0)
}

/// The mail sent to each of `people` so far (one read of the mailbox: on
/// AWS it is moto's whole record, which grows with every test).
async fn mail_to_each(app: &CommsApp, people: &[Principal]) -> Vec<Vec<String>> {
    let sent = app.sent_mail().await;
    people
        .iter()
        .map(|p| {
            let address = email(p);
            sent.iter()
                .filter(|m| m.to.contains(&address))
                .map(|m| m.raw.clone())
                .collect()
        })
        .collect()
}

fn token(app: &CommsApp, p: &Principal) -> String {
    app.service.tokens.token_for(p)
}

/// Publishes events on the bus as their services would.
async fn publish(app: &CommsApp, events: Vec<(&str, &str, Value)>) {
    publish_at(app, events, app.now()).await;
}

async fn publish_at(app: &CommsApp, events: Vec<(&str, &str, Value)>, at: time::OffsetDateTime) {
    let bus = app.service.context("comms").event_bus().unwrap();
    let batch: Vec<DomainEvent> = events
        .into_iter()
        .map(|(t, org, data)| DomainEvent::new(t, org, at, data).unwrap())
        .collect();
    for chunk in batch.chunks(10) {
        bus.publish(chunk).await.unwrap();
    }
}

/// Runs a schedule of comms as its timer would.
async fn run(app: &CommsApp, name: &str, date: Option<&str>) -> Value {
    let schedule = SERVICE.schedule(name).unwrap();
    let handler = (schedule.handler)(app.service.context("comms"))
        .await
        .unwrap();
    handler
        .run(ScheduledEvent {
            schedule: name.to_owned(),
            date: date.map(str::to_owned),
            ..ScheduledEvent::default()
        })
        .await
        .unwrap()
}

async fn inbox(app: &CommsApp, p: &Principal) -> Value {
    let r = app
        .get("/v1/comms/notifications?limit=100")
        .bearer(&token(app, p))
        .await;
    r.assert_status(StatusCode::OK);
    r.json()
}

fn kinds(inbox: &Value) -> Vec<String> {
    inbox["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap().to_owned())
        .collect()
}

/// The kinds, sorted (notifications made at one instant have no order).
fn sorted_kinds(inbox: &Value) -> Vec<String> {
    let mut k = kinds(inbox);
    k.sort();
    k
}

async fn announce(app: &CommsApp, by: &Principal, body: Value) -> Value {
    let r = app
        .post("/v1/comms/announcements")
        .bearer(&token(app, by))
        .json(&body)
        .await;
    r.assert_status(StatusCode::CREATED);
    r.json()
}

async fn an_announcement_to_staff_reaches_every_staff_account_once_and_no_member(app: CommsApp) {
    let p = people();
    let a = announce(
        &app,
        &p.staff,
        json!({"title": "Fire drill", "body": "Thursday 10:00.\nMeet outside.", "audience": {"roles": ["staff"]}}),
    )
    .await;
    assert_eq!(a["status"], "published");
    assert_eq!(a["audience"], json!({"roles": ["staff"]}));
    let id = a["id"].as_str().unwrap();
    // Every message twice, as SQS may deliver it.
    app.service.pump_twice().await.unwrap();
    for who in [&p.owner, &p.admin, &p.staff, &p.staff2] {
        let inbox = inbox(&app, who).await;
        assert_eq!(kinds(&inbox), ["announcement"], "{who:?}");
        let n = &inbox["items"][0];
        assert_eq!(n["title"], "Fire drill");
        assert_eq!(n["body"], "Thursday 10:00.\nMeet outside.");
        assert_eq!(n["link"], format!("/v1/comms/announcements/{id}"));
        assert_eq!(n["read_at"], Value::Null);
        assert_eq!(inbox["unread_count"], 1);
    }
    for who in [&p.member, &p.disabled] {
        let inbox = inbox(&app, who).await;
        assert!(kinds(&inbox).is_empty(), "{who:?}");
        assert_eq!(inbox["unread_count"], 0);
    }
    // Members do not see it listed or by id; staff do.
    let listed = app
        .get("/v1/comms/announcements")
        .bearer(&token(&app, &p.member))
        .await
        .json();
    assert_eq!(listed["items"], json!([]));
    app.get(&format!("/v1/comms/announcements/{id}"))
        .bearer(&token(&app, &p.member))
        .await
        .assert_status(StatusCode::NOT_FOUND);
    let seen = app
        .get(&format!("/v1/comms/announcements/{id}"))
        .bearer(&token(&app, &p.admin))
        .await;
    seen.assert_status(StatusCode::OK);
    assert_eq!(seen.json()["title"], "Fire drill");

    // "all" reaches the member too, once, even when created twice with
    // one Idempotency-Key.
    let body = json!({"title": "Welcome", "body": "Hello all", "audience": "all"});
    let first = app
        .post("/v1/comms/announcements")
        .bearer(&token(&app, &p.admin))
        .header("Idempotency-Key", "welcome-1")
        .json(&body)
        .await;
    first.assert_status(StatusCode::CREATED);
    let again = app
        .post("/v1/comms/announcements")
        .bearer(&token(&app, &p.admin))
        .header("Idempotency-Key", "welcome-1")
        .json(&body)
        .await;
    assert_eq!(again.json()["id"], first.json()["id"]);
    app.service.pump_twice().await.unwrap();
    assert_eq!(kinds(&inbox(&app, &p.member).await), ["announcement"]);
    assert_eq!(
        kinds(&inbox(&app, &p.staff).await),
        ["announcement", "announcement"]
    );
    let listed = app
        .get("/v1/comms/announcements")
        .bearer(&token(&app, &p.member))
        .await
        .json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
}

async fn a_scheduled_announcement_publishes_at_its_time_once(app: CommsApp) {
    let p = people();
    let at = app.now() + time::Duration::hours(1);
    let a = announce(
        &app,
        &p.staff,
        json!({"title": "Later", "body": "Soon", "audience": "all",
               "publish_at": at.format(&time::format_description::well_known::Rfc3339).unwrap()}),
    )
    .await;
    assert_eq!(a["status"], "scheduled");
    let id = a["id"].as_str().unwrap().to_owned();
    let report = run(&app, SCHEDULER, None).await;
    assert_eq!(report["due"]["announcements"], 0);
    app.service.pump().await.unwrap();
    assert!(kinds(&inbox(&app, &p.member).await).is_empty());
    app.get(&format!("/v1/comms/announcements/{id}"))
        .bearer(&token(&app, &p.member))
        .await
        .assert_status(StatusCode::NOT_FOUND);

    app.advance(time::Duration::minutes(61));
    // Two scheduler runs at once: one publishes it.
    let (a1, a2) = tokio::join!(run(&app, SCHEDULER, None), run(&app, SCHEDULER, None));
    let published =
        a1["due"]["announcements"].as_u64().unwrap() + a2["due"]["announcements"].as_u64().unwrap();
    assert_eq!(published, 1, "{a1} {a2}");
    assert_eq!(run(&app, SCHEDULER, None).await["due"]["announcements"], 0);
    app.service.pump_twice().await.unwrap();
    for who in [&p.member, &p.owner] {
        assert_eq!(kinds(&inbox(&app, who).await), ["announcement"]);
    }
    let seen = app
        .get(&format!("/v1/comms/announcements/{id}"))
        .bearer(&token(&app, &p.member))
        .await;
    seen.assert_status(StatusCode::OK);
    assert_eq!(seen.json()["status"], "published");
}

async fn events_of_other_services_reach_the_right_inboxes(app: CommsApp) {
    let p = people();
    let expense = json!({"id": "e1", "submitter": p.member.account.as_str(), "by": p.member.account.as_str(),
        "status": "submitted", "amount": "12.50", "currency": "EUR", "category": "travel"});
    let order = json!({"order_id": "o1", "placed_by": p.staff.account.as_str(), "total": {"amount": "9.99", "currency": "EUR"}});
    publish(
        &app,
        vec![
            ("expense.submitted", ORG, expense.clone()),
            ("expense.approved", ORG, expense.clone()),
            ("order.shipped", ORG, order),
            (
                "inventory.low",
                ORG,
                json!({"product_id": "p1", "sku": "SKU-1", "available": 2, "reorder_level": 5}),
            ),
            ("kv.changed", ORG, json!({"key": "x"})),
        ],
    )
    .await;
    app.service.pump_twice().await.unwrap();
    // expense.submitted → admins and owners; approved → the submitter;
    // order.shipped → the placer; inventory.low → staff and above.
    for who in [&p.admin, &p.owner] {
        assert_eq!(
            sorted_kinds(&inbox(&app, who).await),
            ["expense.submitted", "inventory.low"]
        );
    }
    assert_eq!(kinds(&inbox(&app, &p.member).await), ["expense.approved"]);
    assert_eq!(
        sorted_kinds(&inbox(&app, &p.staff).await),
        ["inventory.low", "order.shipped"]
    );
    assert_eq!(kinds(&inbox(&app, &p.staff2).await), ["inventory.low"]);
    let of_kind = |inbox: Value, kind: &str| {
        inbox["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["kind"] == kind)
            .cloned()
            .unwrap()
    };
    let submitted = of_kind(inbox(&app, &p.admin).await, "expense.submitted");
    assert_eq!(submitted["link"], "/v1/expenses/e1");
    assert!(submitted["body"].as_str().unwrap().contains("12.50 EUR"));
    let shipped = of_kind(inbox(&app, &p.staff).await, "order.shipped");
    assert!(shipped["body"].as_str().unwrap().contains("9.99 EUR"));
}

async fn reminders_fire_once_across_overlapping_scheduler_runs(app: CommsApp) {
    let p = people();
    let at = app.now() + time::Duration::minutes(5);
    let rfc = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let r = app
        .post("/v1/comms/reminders")
        .bearer(&token(&app, &p.staff))
        .json(&json!({"message": "Submit your timesheet", "remind_at": rfc(at),
            "to": {"accounts": [p.member.account.as_str(), p.admin.account.as_str()]}, "repeat": "daily"}))
        .await;
    r.assert_status(StatusCode::CREATED);
    let daily = r.json()["id"].as_str().unwrap().to_owned();
    let once = app
        .post("/v1/comms/reminders")
        .bearer(&token(&app, &p.staff))
        .json(
            &json!({"message": "Staff meeting", "remind_at": rfc(at), "to": {"roles": ["admin"]}}),
        )
        .await;
    once.assert_status(StatusCode::CREATED);
    assert_eq!(once.json()["repeat"], "none");

    app.advance(time::Duration::minutes(6));
    let runs = futures::future::join_all((0..3).map(|_| run(&app, SCHEDULER, None))).await;
    let fired: u64 = runs
        .iter()
        .map(|r| r["due"]["reminders"].as_u64().unwrap())
        .sum();
    assert_eq!(fired, 2, "{runs:?}");
    app.service.pump_twice().await.unwrap();
    assert_eq!(kinds(&inbox(&app, &p.member).await), ["reminder"]);
    assert_eq!(
        kinds(&inbox(&app, &p.admin).await),
        ["reminder", "reminder"]
    );
    assert!(kinds(&inbox(&app, &p.staff).await).is_empty());
    let member = inbox(&app, &p.member).await;
    assert_eq!(member["items"][0]["body"], "Submit your timesheet");

    // The daily one comes back tomorrow; the other is done.
    let listed = app
        .get("/v1/comms/reminders")
        .bearer(&token(&app, &p.staff))
        .await
        .json();
    let by_id = |id: &str| {
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_id(&daily)["status"], "pending");
    assert_eq!(
        by_id(&daily)["remind_at"],
        rfc(at + time::Duration::days(1))
    );
    assert_eq!(by_id(once.json()["id"].as_str().unwrap())["status"], "done");
    app.advance(time::Duration::days(1));
    assert_eq!(run(&app, SCHEDULER, None).await["due"]["reminders"], 1);
    app.service.pump().await.unwrap();
    assert_eq!(kinds(&inbox(&app, &p.member).await).len(), 2);
    // Deleted: it never fires again.
    app.delete(&format!("/v1/comms/reminders/{daily}"))
        .bearer(&token(&app, &p.staff))
        .await
        .assert_status(StatusCode::NO_CONTENT);
    app.advance(time::Duration::days(1));
    assert_eq!(run(&app, SCHEDULER, None).await["due"]["reminders"], 0);
    app.delete(&format!("/v1/comms/reminders/{daily}"))
        .bearer(&token(&app, &p.staff))
        .await
        .assert_status(StatusCode::NOT_FOUND);
}

async fn the_daily_report_equals_the_events_consumed(app: CommsApp) {
    let p = people();
    let yesterday = app.now() - time::Duration::days(1);
    let day = format!(
        "{:04}-{:02}-{:02}",
        yesterday.year(),
        u8::from(yesterday.month()),
        yesterday.day()
    );
    let expense = |id: &str, amount: &str, currency: &str| {
        json!({"id": id, "submitter": p.member.account.as_str(), "by": p.member.account.as_str(),
            "status": "submitted", "amount": amount, "currency": currency, "category": "travel"})
    };
    let order = |id: &str, amount: &str| json!({"order_id": id, "placed_by": p.staff.account.as_str(), "total": {"amount": amount, "currency": "EUR"}});
    publish_at(
        &app,
        vec![
            ("expense.submitted", ORG, expense("e1", "10.05", "EUR")),
            ("expense.submitted", ORG, expense("e2", "2.50", "EUR")),
            ("expense.submitted", ORG, expense("e3", "1000", "JPY")),
            ("expense.approved", ORG, expense("e1", "10.05", "EUR")),
            ("order.confirmed", ORG, order("o1", "20.00")),
            ("order.confirmed", ORG, order("o2", "0.01")),
            ("order.rejected", ORG, json!({"order_id": "o3", "placed_by": p.staff.account.as_str(), "reason": "insufficient-stock"})),
            ("order.shipped", ORG, order("o1", "20.00")),
            ("inventory.low", ORG, json!({"product_id": "p1", "sku": "SKU-1", "available": 1, "reorder_level": 3})),
            ("expense.submitted", OTHER, expense("x1", "99.00", "EUR")),
        ],
        yesterday,
    )
    .await;
    // Delivered twice: counted once.
    app.service.pump_twice().await.unwrap();
    let report = run(&app, DAILY_REPORT, None).await;
    assert_eq!(report["date"], day.as_str());
    assert_eq!(report["reports"], 2, "both organizations had activity");
    // The scheduled run queues one step per organization; the worker writes.
    assert_eq!(
        app.get("/v1/comms/reports")
            .bearer(&token(&app, &p.admin))
            .await
            .json()["items"],
        json!([])
    );
    app.service.pump().await.unwrap();

    let admin = token(&app, &p.admin);
    let listed = app
        .get(&format!("/v1/comms/reports?from={day}&to={day}"))
        .bearer(&admin)
        .await;
    listed.assert_status(StatusCode::OK);
    let items = listed.json()["items"].clone();
    assert_eq!(items.as_array().unwrap().len(), 1);
    let r = &items[0];
    assert_eq!(r["date"], day.as_str());
    assert_eq!(r["counts"]["expenses_submitted"], 3);
    assert_eq!(r["counts"]["expenses_approved"], 1);
    assert_eq!(r["counts"]["expenses_reimbursed"], 0);
    assert_eq!(r["counts"]["orders_confirmed"], 2);
    assert_eq!(r["counts"]["orders_rejected"], 1);
    assert_eq!(r["counts"]["orders_shipped"], 1);
    assert_eq!(r["counts"]["products_low"], 1);
    assert_eq!(
        r["totals"]["expenses_submitted"],
        json!({"EUR": "12.55", "JPY": "1000"})
    );
    assert_eq!(r["totals"]["orders_confirmed"], json!({"EUR": "20.01"}));
    assert_eq!(r["totals"]["orders_shipped"], json!({"EUR": "20.00"}));
    assert_eq!(r["low_products"], json!(["SKU-1"]));
    assert!(r["download_url"].as_str().unwrap().starts_with("http"));
    // The CSV in the bucket says the same.
    let bucket = app
        .service
        .context("comms")
        .blob_store(constellation_comms::config::MEDIA_BUCKET_VAR)
        .await
        .unwrap();
    let (_, csv) = bucket
        .get(&format!("reports/{ORG}/{day}.csv"))
        .await
        .unwrap()
        .unwrap();
    let csv = String::from_utf8(csv.to_vec()).unwrap();
    assert!(
        csv.contains(&format!("{day},expenses_submitted,EUR,3,12.55")),
        "{csv}"
    );
    assert!(
        csv.contains(&format!("{day},orders_shipped,EUR,1,20.00")),
        "{csv}"
    );
    // Members and staff do not read reports.
    app.get("/v1/comms/reports")
        .bearer(&token(&app, &p.staff))
        .await
        .assert_status(StatusCode::FORBIDDEN);
    // By hand for another day: written before the command returns.
    let before = yesterday - time::Duration::days(1);
    let earlier = format!(
        "{:04}-{:02}-{:02}",
        before.year(),
        u8::from(before.month()),
        before.day()
    );
    publish_at(&app, vec![("order.rejected", ORG, json!({"order_id": "o9", "placed_by": p.staff.account.as_str(), "reason": "insufficient-stock"}))], before).await;
    app.service.pump().await.unwrap();
    assert_eq!(run(&app, DAILY_REPORT, Some(&earlier)).await["reports"], 1);
    let by_hand = app
        .get(&format!("/v1/comms/reports?from={earlier}&to={earlier}"))
        .bearer(&admin)
        .await
        .json();
    assert_eq!(by_hand["items"][0]["counts"]["orders_rejected"], 1);
    // Run again by hand for the day: the same report, no second one.
    assert_eq!(run(&app, DAILY_REPORT, Some(&day)).await["reports"], 2);
    app.service.pump_twice().await.unwrap();
    let again = app.get("/v1/comms/reports").bearer(&admin).await.json();
    let dates: Vec<&str> = again["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["date"].as_str().unwrap())
        .collect();
    assert_eq!(
        dates,
        [day.as_str(), earlier.as_str()],
        "newest first, one per day"
    );
    assert_eq!(again["items"][0]["counts"], r["counts"]);
}

async fn inboxes_read_and_retractions_remove_unread_notifications(app: CommsApp) {
    let p = people();
    let mut ids = Vec::new();
    for title in ["One", "Two", "Three"] {
        app.advance(time::Duration::seconds(1));
        ids.push(
            announce(
                &app,
                &p.admin,
                json!({"title": title, "body": "b", "audience": "all"}),
            )
            .await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    app.service.pump().await.unwrap();
    let member = token(&app, &p.member);
    let inbox_now = inbox(&app, &p.member).await;
    assert_eq!(inbox_now["unread_count"], 3);
    let titles: Vec<&str> = inbox_now["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Three", "Two", "One"], "newest first");
    let first = inbox_now["items"][2]["id"].as_str().unwrap().to_owned();
    let read = app
        .post(&format!("/v1/comms/notifications/{first}/read"))
        .bearer(&member)
        .await;
    read.assert_status(StatusCode::OK);
    assert!(read.json()["read_at"].is_string());
    // Reading twice changes nothing.
    app.post(&format!("/v1/comms/notifications/{first}/read"))
        .bearer(&member)
        .await
        .assert_status(StatusCode::OK);
    assert_eq!(inbox(&app, &p.member).await["unread_count"], 2);
    let unread = app
        .get("/v1/comms/notifications?unread=true")
        .bearer(&member)
        .await
        .json();
    assert_eq!(unread["items"].as_array().unwrap().len(), 2);
    // The same id in another inbox is that inbox's own notification.
    app.post(&format!("/v1/comms/notifications/{first}/read"))
        .bearer(&token(&app, &p.staff2))
        .await
        .assert_status(StatusCode::OK);
    app.post(&format!("/v1/comms/notifications/{}/read", "0".repeat(32)))
        .bearer(&member)
        .await
        .assert_status(StatusCode::NOT_FOUND);

    // Retract "One" (read by the member) and "Two" (unread): the member
    // keeps the read one; everyone loses the unread ones.
    for id in &ids[..2] {
        app.delete(&format!("/v1/comms/announcements/{id}"))
            .bearer(&token(&app, &p.staff))
            .await
            .assert_status(StatusCode::NO_CONTENT);
    }
    app.delete(&format!("/v1/comms/announcements/{}", ids[0]))
        .bearer(&token(&app, &p.staff))
        .await
        .assert_status(StatusCode::NOT_FOUND);
    app.service.pump_twice().await.unwrap();
    let after = inbox(&app, &p.member).await;
    let titles: Vec<&str> = after["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Three", "One"]);
    assert_eq!(after["unread_count"], 1);
    let owner = inbox(&app, &p.owner).await;
    assert_eq!(owner["unread_count"], 1);
    assert_eq!(owner["items"].as_array().unwrap().len(), 1);
    app.get(&format!("/v1/comms/announcements/{}", ids[1]))
        .bearer(&token(&app, &p.admin))
        .await
        .assert_status(StatusCode::NOT_FOUND);

    // Read-all, raced by two clients: everything read, counted once.
    let (a, b) = tokio::join!(
        app.post("/v1/comms/notifications/read-all")
            .bearer(&member)
            .send(),
        app.post("/v1/comms/notifications/read-all")
            .bearer(&member)
            .send()
    );
    a.assert_status(StatusCode::OK);
    b.assert_status(StatusCode::OK);
    assert_eq!(
        a.json()["marked"].as_u64().unwrap() + b.json()["marked"].as_u64().unwrap(),
        1
    );
    assert_eq!(inbox(&app, &p.member).await["unread_count"], 0);
}

async fn the_directory_keeps_the_newest_snapshot(app: CommsApp) {
    let p = people();
    // The member became staff (version 3), then a stale version 2 (still
    // member) arrives late; the admin is disabled.
    let mut promoted = p.member.clone();
    promoted.role = Role::Staff;
    publish(
        &app,
        vec![
            (
                account_events::ACCOUNT_UPDATED,
                ORG,
                snapshot(&promoted, 3, false),
            ),
            (
                account_events::ACCOUNT_UPDATED,
                ORG,
                snapshot(&p.member, 2, false),
            ),
            (
                account_events::ACCOUNT_DISABLED,
                ORG,
                snapshot(&p.admin, 2, true),
            ),
        ],
    )
    .await;
    app.service.pump_twice().await.unwrap();
    announce(
        &app,
        &p.owner,
        json!({"title": "Staff only", "body": "b", "audience": {"roles": ["staff"]}}),
    )
    .await;
    app.service.pump().await.unwrap();
    assert_eq!(kinds(&inbox(&app, &p.member).await), ["announcement"]);
    assert!(kinds(&inbox(&app, &p.admin).await).is_empty(), "disabled");
}

async fn bad_input_names_the_field_and_writes_nothing(app: CommsApp) {
    let p = people();
    let staff = token(&app, &p.staff);
    let past = "2000-01-01T00:00:00Z";
    for (body, field) in [
        (
            json!({"title": " ", "body": "b", "audience": "all"}),
            "title",
        ),
        (
            json!({"title": "t", "body": "a\u{7}b", "audience": "all"}),
            "body",
        ),
        (
            json!({"title": "t", "body": "b", "audience": "everyone"}),
            "audience",
        ),
        (
            json!({"title": "t", "body": "b", "audience": {"roles": ["boss"]}}),
            "audience.roles",
        ),
        (
            json!({"title": "t", "body": "b", "audience": "all", "publish_at": past}),
            "publish_at",
        ),
        (
            json!({"title": "t", "body": "b", "audience": "all", "publish_at": "2099-01-01T00:00:00Z"}),
            "publish_at",
        ),
        (
            json!({"title": "t", "body": "b", "audience": "all", "attachments": ["0".repeat(32)]}),
            "attachments",
        ),
        (json!({"title": "t", "body": "b"}), "audience"),
        (
            json!({"title": "t", "body": "b", "audience": "all", "colour": 1}),
            "colour",
        ),
    ] {
        let r = app
            .post("/v1/comms/announcements")
            .bearer(&staff)
            .json(&body)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.field().as_deref(), Some(field), "{body}");
    }
    let soon = (app.now() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let stranger = principal(OTHER, 7, Role::Owner);
    for (body, field) in [
        (
            json!({"message": "m", "remind_at": past, "to": {"roles": ["staff"]}}),
            "remind_at",
        ),
        (
            json!({"message": "m", "remind_at": soon, "to": {"accounts": [stranger.account.as_str()]}}),
            "to.accounts",
        ),
        (
            json!({"message": "m", "remind_at": soon, "to": {"accounts": ["nope"]}}),
            "to.accounts",
        ),
        (json!({"message": "m", "remind_at": soon, "to": {}}), "to"),
        (
            json!({"message": "m", "remind_at": soon, "to": {"roles": ["staff"]}, "repeat": "hourly"}),
            "repeat",
        ),
        (
            json!({"message": "", "remind_at": soon, "to": {"roles": ["staff"]}}),
            "message",
        ),
    ] {
        let r = app
            .post("/v1/comms/reminders")
            .bearer(&staff)
            .json(&body)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.field().as_deref(), Some(field), "{body}");
    }
    let r = app
        .put("/v1/comms/preferences")
        .bearer(&staff)
        .json(&json!({"email": {"announcements": true, "expenses": true, "orders": true, "inventory": true}}))
        .await;
    assert_eq!(r.field().as_deref(), Some("email.reminders"), "{r:?}");
    // Nothing was written.
    assert_eq!(
        app.get("/v1/comms/announcements")
            .bearer(&staff)
            .await
            .json()["items"],
        json!([])
    );
    assert_eq!(
        app.get("/v1/comms/reminders").bearer(&staff).await.json()["items"],
        json!([])
    );
    assert_eq!(
        app.get("/v1/comms/preferences").bearer(&staff).await.json(),
        json!({"email": {"announcements": false, "expenses": false, "orders": false, "inventory": false, "reminders": false}})
    );
    let prefs = json!({"email": {"announcements": true, "expenses": false, "orders": true, "inventory": false, "reminders": true}});
    let r = app
        .put("/v1/comms/preferences")
        .bearer(&staff)
        .json(&prefs)
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(
        app.get("/v1/comms/preferences").bearer(&staff).await.json(),
        prefs
    );
    app.get("/v1/comms/notifications?unread=maybe")
        .bearer(&staff)
        .await
        .assert_status(StatusCode::BAD_REQUEST);
}

async fn another_organization_sees_nothing_and_members_cannot_announce(app: CommsApp) {
    let p = people();
    let r = app
        .post("/v1/comms/announcements")
        .bearer(&token(&app, &p.member))
        .json(&json!({"title": "t", "body": "b", "audience": "all"}))
        .await;
    r.assert_status(StatusCode::FORBIDDEN);
    app.post("/v1/comms/reminders")
        .bearer(&token(&app, &p.member))
        .json(&json!({"message": "m", "remind_at": "2099-01-01T00:00:00Z", "to": {"roles": ["staff"]}}))
        .await
        .assert_status(StatusCode::FORBIDDEN);
    let a = announce(
        &app,
        &p.staff,
        json!({"title": "Ours", "body": "b", "audience": "all"}),
    )
    .await;
    let id = a["id"].as_str().unwrap();
    app.service.pump().await.unwrap();
    let note = inbox(&app, &p.member).await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let stranger = token(&app, &principal(OTHER, 7, Role::Owner));
    app.get(&format!("/v1/comms/announcements/{id}"))
        .bearer(&stranger)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    app.delete(&format!("/v1/comms/announcements/{id}"))
        .bearer(&stranger)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    app.post(&format!("/v1/comms/notifications/{note}/read"))
        .bearer(&stranger)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    assert_eq!(
        app.get("/v1/comms/announcements")
            .bearer(&stranger)
            .await
            .json()["items"],
        json!([])
    );
    assert!(kinds(&inbox(&app, &principal(OTHER, 7, Role::Owner)).await).is_empty());
    app.get("/v1/comms/notifications")
        .anonymous()
        .await
        .assert_unauthorized();
}

async fn attachments_must_be_ready_and_come_with_download_urls(app: CommsApp) {
    let p = people();
    let ready = "0123456789abcdef0123456789abcdef";
    let pending = "fedcba9876543210fedcba9876543210";
    let stored = format!("media/{ORG}/{ready}/0011223344556677");
    let bucket = app
        .service
        .context("comms")
        .blob_store(constellation_comms::config::MEDIA_BUCKET_VAR)
        .await
        .unwrap();
    bucket
        .put(
            &stored,
            bytes::Bytes::from_static(b"%PDF-1.4 plan"),
            "application/pdf",
        )
        .await
        .unwrap();
    let media = |id: &str, status: &str| {
        let mut m = json!({"id": id, "status": status, "purpose": "attachment", "uploader": p.staff.account.as_str()});
        if status == "ready" {
            m["stored_key"] = json!(stored);
            m["download_name"] = json!("plan.pdf");
            m["content_type"] = json!("application/pdf");
        }
        m
    };
    publish(&app, vec![("media.ready", ORG, media(ready, "ready"))]).await;
    app.service.pump().await.unwrap();
    let r = app
        .post("/v1/comms/announcements")
        .bearer(&token(&app, &p.staff))
        .json(&json!({"title": "Plan", "body": "b", "audience": "all", "attachments": [ready, pending]}))
        .await;
    assert_eq!(r.field().as_deref(), Some("attachments"));
    let a = announce(
        &app,
        &p.staff,
        json!({"title": "Plan", "body": "b", "audience": "all", "attachments": [ready]}),
    )
    .await;
    let id = a["id"].as_str().unwrap();
    let got = app
        .get(&format!("/v1/comms/announcements/{id}"))
        .bearer(&token(&app, &p.member))
        .await
        .json();
    let att = &got["attachments"][0];
    assert_eq!(att["id"], ready);
    assert_eq!(att["filename"], "plan.pdf");
    assert_eq!(att["content_type"], "application/pdf");
    assert!(att["download_url"].as_str().unwrap().starts_with("http"));
    // Deleted media: no longer attachable, and no URL.
    publish(&app, vec![("media.deleted", ORG, media(ready, "deleted"))]).await;
    app.service.pump().await.unwrap();
    let got = app
        .get(&format!("/v1/comms/announcements/{id}"))
        .bearer(&token(&app, &p.member))
        .await
        .json();
    assert_eq!(got["attachments"][0]["download_url"], Value::Null);
    let r = app
        .post("/v1/comms/announcements")
        .bearer(&token(&app, &p.staff))
        .json(&json!({"title": "Plan", "body": "b", "audience": "all", "attachments": [ready]}))
        .await;
    assert_eq!(r.field().as_deref(), Some("attachments"));
    // A late `ready` does not bring it back.
    publish(&app, vec![("media.ready", ORG, media(ready, "ready"))]).await;
    app.service.pump().await.unwrap();
    let r = app
        .post("/v1/comms/announcements")
        .bearer(&token(&app, &p.staff))
        .json(&json!({"title": "Plan", "body": "b", "audience": "all", "attachments": [ready]}))
        .await;
    assert_eq!(r.field().as_deref(), Some("attachments"));
}

async fn an_expense_submitted_reaches_the_admins_inbox_and_their_mailbox(app: CommsApp) {
    let admin = newcomer(&app, Role::Admin).await;
    let quiet_admin = newcomer(&app, Role::Admin).await;
    let member = newcomer(&app, Role::Member).await;
    opt_in(&app, &admin, "expenses").await;
    // The member files and submits an expense with the expenses service;
    // its outbox puts expense.submitted on the bus, which routes it to comms.
    let r = app
        .post("/v1/expenses")
        .bearer(&token(&app, &member))
        .json(&json!({"amount": "42.00", "currency": "EUR", "category": "travel", "merchant": "Rail <Co>",
            "description": "Train to the fair", "incurred_on": format!("{}", app.now().date())}))
        .await;
    r.assert_status(StatusCode::CREATED);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    app.post(&format!("/v1/expenses/{id}/submit"))
        .bearer(&token(&app, &member))
        .await
        .assert_status(StatusCode::OK);
    app.service.pump_twice().await.unwrap();
    for who in [&admin, &quiet_admin] {
        let inbox = inbox(&app, who).await;
        assert_eq!(kinds(&inbox), ["expense.submitted"], "{who:?}");
        assert_eq!(inbox["items"][0]["link"], format!("/v1/expenses/{id}"));
        assert!(
            inbox["items"][0]["body"]
                .as_str()
                .unwrap()
                .contains("42.00 EUR")
        );
    }
    assert!(kinds(&inbox(&app, &member).await).is_empty());
    // Mail only to the admin who opted in, once though delivered twice.
    let mail = mail_to(&app, &admin).await;
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert!(
        mail[0].contains("Subject: An expense waits for review"),
        "{}",
        mail[0]
    );
    assert!(mail[0].contains("Content-Type: text/html"), "{}", mail[0]);
    assert!(mail_to(&app, &quiet_admin).await.is_empty());
    // Approving it tells the submitter (who did not opt in: no mail).
    app.post(&format!("/v1/expenses/{id}/approve"))
        .bearer(&token(&app, &admin))
        .json(&json!({}))
        .await
        .assert_status(StatusCode::OK);
    app.service.pump().await.unwrap();
    assert_eq!(kinds(&inbox(&app, &member).await), ["expense.approved"]);
    assert!(mail_to(&app, &member).await.is_empty());
}

/// The real mailer of the platform, made to fail while `failing` is set:
/// a failure injected in front of the adapter (the breaker, queue and
/// worker above it are the real ones).
#[derive(Debug)]
struct Flaky {
    real: std::sync::Arc<dyn constellation_platform::mail::Mailer>,
    failing: std::sync::atomic::AtomicBool,
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl constellation_platform::mail::Mailer for Flaky {
    async fn send(
        &self,
        mail: &constellation_platform::mail::OutgoingMail,
    ) -> Result<String, constellation_platform::mail::MailError> {
        use std::sync::atomic::Ordering;
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(constellation_platform::mail::MailError::Unavailable(
                anyhow::anyhow!("injected outage"),
            ));
        }
        self.real.send(mail).await
    }
}

/// comms' worker as production builds it, but over a [`Flaky`] mailer, and
/// a receiver of comms' queue to hand it records one by one.
struct OwnWorker {
    flaky: std::sync::Arc<Flaky>,
    breaker: constellation_platform::breaker::CircuitBreaker,
    worker: constellation_platform::worker::Worker,
    receiver: std::sync::Arc<dyn constellation_platform::queue::QueueReceiver>,
}

impl OwnWorker {
    async fn start(app: &CommsApp) -> Self {
        let ctx = app.service.context("comms");
        let flaky = std::sync::Arc::new(Flaky {
            real: ctx.mailer(),
            failing: std::sync::atomic::AtomicBool::new(false),
            calls: std::sync::atomic::AtomicUsize::new(0),
        });
        let breaker = constellation_platform::breaker::CircuitBreaker::new(
            "comms-mail",
            constellation_comms::mail::FAILURES,
            constellation_comms::mail::OPEN_FOR,
            ctx.platform.clock(),
            constellation_platform::observe::MetricsSink::discard(),
        );
        let mail = constellation_comms::mail::Mail::new(
            flaky.clone(),
            breaker.clone(),
            ctx.resource(constellation_comms::config::MAIL_SENDER_VAR)
                .unwrap(),
        );
        let (store, _) = constellation_comms::store(ctx).await.unwrap();
        let worker = constellation_platform::worker::Worker::new(
            "comms-worker",
            std::sync::Arc::new(constellation_platform::worker::Events(
                constellation_comms::worker::CommsWorker {
                    store: std::sync::Arc::new(store),
                    mail: std::sync::Arc::new(mail),
                },
            )),
            ctx.queue(constellation_comms::config::DLQ_VAR).unwrap(),
            constellation_platform::observe::MetricsSink::discard(),
        );
        let queue = ctx
            .resource(constellation_comms::config::QUEUE_VAR)
            .unwrap();
        let spec = constellation_comms::config::RESOURCES[1]
            .queue_spec(
                ctx.resources
                    .queue_name(constellation_comms::config::QUEUE_VAR)
                    .unwrap(),
            )
            .unwrap();
        let receiver = app.platform.receiver(&spec, queue).await.unwrap();
        Self {
            flaky,
            breaker,
            worker,
            receiver,
        }
    }

    /// Handles every record on the queue one at a time, except those
    /// `hold` picks (left on the queue, in flight) and those that fail;
    /// returns both kinds.
    async fn drain(
        &self,
        hold: impl Fn(&DomainEvent) -> bool,
    ) -> Vec<constellation_platform::queue::ReceivedMessage> {
        let mut held = Vec::new();
        loop {
            let batch = self
                .receiver
                .receive(1, std::time::Duration::from_millis(300))
                .await
                .unwrap();
            let Some(m) = batch.into_iter().next() else {
                return held;
            };
            if hold(&DomainEvent::from_queue_body(&m.body).unwrap()) {
                held.push(m);
                continue;
            }
            let response = self.handle(std::slice::from_ref(&m)).await;
            if response.batch_item_failures.is_empty() {
                self.receiver.delete(&m.receipt_handle).await.unwrap();
            } else {
                held.push(m);
            }
        }
    }

    /// Hands `messages` to the worker as one SQS batch.
    async fn handle(
        &self,
        messages: &[constellation_platform::queue::ReceivedMessage],
    ) -> aws_lambda_events::event::sqs::SqsBatchResponse {
        let event =
            constellation_platform::runner::to_sqs_event(self.receiver.source_arn(), messages);
        self.worker.handle_batch(event).await
    }
}

async fn a_failing_sender_opens_the_breaker_and_loses_nothing(app: CommsApp) {
    use std::sync::atomic::Ordering;
    let ctx = app.service.context("comms");
    let mut people = Vec::new();
    for _ in 0..6 {
        let p = newcomer(&app, Role::Staff).await;
        opt_in(&app, &p, "announcements").await;
        people.push(p);
    }
    let own = OwnWorker::start(&app).await;
    own.flaky.failing.store(true, Ordering::SeqCst);
    let a = announce(
        &app,
        &people[0],
        json!({"title": "Outage drill", "body": "b", "audience": {"roles": ["staff"]}}),
    )
    .await;
    assert_eq!(a["status"], "published");
    // One record at a time, as a worker with batch size 1 would: the
    // fan-out succeeds; each mail fails until the breaker opens.
    let held = own.drain(|_| false).await;
    // Six mails held back, reported as failures (left on the queue, not
    // dead-lettered); five reached the sender before the breaker opened.
    assert_eq!(held.len(), 6);
    assert_eq!(own.flaky.calls.load(Ordering::SeqCst), 5);
    assert!(own.breaker.is_open());
    for mail in mail_to_each(&app, &people).await {
        assert!(mail.is_empty());
    }
    let dlq = app
        .platform
        .queue_admin()
        .list()
        .await
        .unwrap()
        .into_iter()
        .find(|q| {
            ctx.resource(constellation_comms::config::DLQ_VAR)
                .unwrap()
                .ends_with(&q.name)
        })
        .map_or(0, |q| q.visible);
    assert_eq!(dlq, 0, "nothing was dead-lettered");

    // The sender recovers; after the breaker's 30 s the held records come
    // back (as SQS redelivers them) and every mail goes out once, even when
    // each is redelivered once more.
    own.flaky.failing.store(false, Ordering::SeqCst);
    app.advance(time::Duration::seconds(31));
    for _ in 0..2 {
        let response = own.handle(&held).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
    }
    for m in &held {
        own.receiver.delete(&m.receipt_handle).await.unwrap();
    }
    assert!(!own.breaker.is_open());
    assert_eq!(own.flaky.calls.load(Ordering::SeqCst), 5 + 6);
    for (p, mail) in people.iter().zip(mail_to_each(&app, &people).await) {
        assert_eq!(mail.len(), 1, "{p:?}");
        assert!(mail[0].contains("Subject: Outage drill"));
    }
}

async fn mail_goes_out_once_and_never_for_a_retracted_announcement(app: CommsApp) {
    use std::sync::atomic::Ordering;
    let reader = newcomer(&app, Role::Member).await;
    opt_in(&app, &reader, "announcements").await;
    let own = OwnWorker::start(&app).await;
    let is_mail = |e: &DomainEvent| e.event_type == "comms.email";

    // Two copies of one mail record handled at once: one sends.
    announce(
        &app,
        &people().admin,
        json!({"title": "Once", "body": "b", "audience": "all"}),
    )
    .await;
    let mail = own.drain(is_mail).await;
    assert_eq!(mail.len(), 1);
    let (a, b) = tokio::join!(own.handle(&mail), own.handle(&mail));
    let failed = a.batch_item_failures.len() + b.batch_item_failures.len();
    assert!(failed <= 1, "{a:?} {b:?}");
    let again = own.handle(&mail).await;
    assert!(again.batch_item_failures.is_empty(), "{again:?}");
    own.receiver.delete(&mail[0].receipt_handle).await.unwrap();
    assert_eq!(own.flaky.calls.load(Ordering::SeqCst), 1);
    assert_eq!(mail_to(&app, &reader).await.len(), 1);

    // Retracted while its mail waits in the queue: the mail is not sent.
    let b = announce(
        &app,
        &people().admin,
        json!({"title": "Oops", "body": "b", "audience": "all"}),
    )
    .await;
    let mail = own.drain(is_mail).await;
    assert_eq!(mail.len(), 1);
    app.delete(&format!(
        "/v1/comms/announcements/{}",
        b["id"].as_str().unwrap()
    ))
    .bearer(&token(&app, &people().admin))
    .await
    .assert_status(StatusCode::NO_CONTENT);
    let response = own.handle(&mail).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    own.receiver.delete(&mail[0].receipt_handle).await.unwrap();
    assert_eq!(own.flaky.calls.load(Ordering::SeqCst), 1);
    let got = mail_to(&app, &reader).await;
    assert_eq!(got.len(), 1);
    assert!(!got[0].contains("Subject: Oops"));
}

async fn a_fan_out_over_many_pages_reaches_everyone_once(app: CommsApp) {
    // 60 more accounts: with the six of `people()`, 66 in the directory,
    // three pages of 25.
    let crowd: Vec<Principal> = (0..60)
        .map(|_| Principal {
            account: AccountId::from_bytes(rand::random()),
            org: OrgId::parse(ORG).unwrap(),
            role: Role::Member,
        })
        .collect();
    publish(
        &app,
        crowd
            .iter()
            .map(|p| (account_events::ACCOUNT_CREATED, ORG, snapshot(p, 1, false)))
            .collect(),
    )
    .await;
    app.service.pump().await.unwrap();
    let own = OwnWorker::start(&app).await;
    announce(
        &app,
        &people().staff,
        json!({"title": "Everyone", "body": "b", "audience": "all"}),
    )
    .await;
    // The first page's step handled twice at once (a redelivery while the
    // first delivery is still running), then a worker that dies after its
    // page committed: the step is handled again on the next receive.
    let first = own
        .receiver
        .receive(1, std::time::Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    let (a, b) = tokio::join!(own.handle(&first), own.handle(&first));
    assert!(a.batch_item_failures.len() + b.batch_item_failures.len() <= 1);
    let again = own.handle(&first).await;
    assert!(again.batch_item_failures.is_empty(), "{again:?}");
    own.receiver.delete(&first[0].receipt_handle).await.unwrap();
    app.service.pump_twice().await.unwrap();
    for p in crowd.iter().chain([&people().member, &people().owner]) {
        let inbox = inbox(&app, p).await;
        assert_eq!(kinds(&inbox), ["announcement"], "{p:?}");
        assert_eq!(inbox["unread_count"], 1, "{p:?}");
    }
    assert!(kinds(&inbox(&app, &people().disabled).await).is_empty());
}

/// Every kind of record comms keeps, made through the API, the bus and
/// the schedules (directory, preferences, attachments, announcements
/// published, scheduled and retracted, reminders pending and done,
/// deliveries, notifications read and unread, unread counts, day counters,
/// a report, mail sent, a retraction's progress): each item of the table
/// passes `check_item` (what `constellation import` runs on an export),
/// except the kinds never exported.
async fn every_stored_item_passes_the_import_check(app: CommsApp) {
    let p = people();
    let rfc = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    opt_in(&app, &p.member, "announcements").await;
    let media = |id: &str, status: &str| {
        let mut m = json!({"id": id, "status": status, "purpose": "attachment", "uploader": p.staff.account.as_str()});
        if status == "ready" {
            m["stored_key"] = json!(format!("media/{ORG}/{id}/00"));
            m["download_name"] = json!("plan.pdf");
            m["content_type"] = json!("application/pdf");
        }
        m
    };
    let ready = "0123456789abcdef0123456789abcdef";
    publish(
        &app,
        vec![
            ("media.ready", ORG, media(ready, "ready")),
            ("media.deleted", ORG, media(&"e".repeat(32), "deleted")),
        ],
    )
    .await;
    app.service.pump().await.unwrap();
    announce(
        &app,
        &p.staff,
        json!({"title": "Plan", "body": "See the plan.\nThanks", "audience": "all", "attachments": [ready]}),
    )
    .await;
    announce(
        &app,
        &p.staff,
        json!({"title": "Later", "body": "Soon", "audience": {"roles": ["staff"]},
               "publish_at": rfc(app.now() + time::Duration::hours(1))}),
    )
    .await;
    let gone = announce(
        &app,
        &p.staff,
        json!({"title": "Oops", "body": "Wrong", "audience": "all"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.service.pump().await.unwrap();
    let first = inbox(&app, &p.member).await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post(&format!("/v1/comms/notifications/{first}/read"))
        .bearer(&token(&app, &p.member))
        .await
        .assert_status(StatusCode::OK);
    app.delete(&format!("/v1/comms/announcements/{gone}"))
        .bearer(&token(&app, &p.staff))
        .await
        .assert_status(StatusCode::NO_CONTENT);
    for (message, at, to) in [
        ("Soon", 5, json!({"accounts": [p.member.account.as_str()]})),
        ("Later", 120, json!({"roles": ["admin"]})),
    ] {
        app.post("/v1/comms/reminders")
            .bearer(&token(&app, &p.staff))
            .json(&json!({"message": message, "remind_at": rfc(app.now() + time::Duration::minutes(at)), "to": to, "repeat": "none"}))
            .await
            .assert_status(StatusCode::CREATED);
    }
    app.advance(time::Duration::minutes(6));
    run(&app, SCHEDULER, None).await;
    let yesterday = app.now() - time::Duration::days(1);
    publish_at(
        &app,
        vec![
            (
                "expense.submitted",
                ORG,
                json!({"id": "e1", "submitter": p.member.account.as_str(),
                "by": p.member.account.as_str(), "status": "submitted", "amount": "10.05",
                "currency": "EUR", "category": "travel"}),
            ),
            (
                "order.rejected",
                ORG,
                json!({"order_id": "o3", "placed_by": p.staff.account.as_str(),
                "reason": "insufficient-stock"}),
            ),
            (
                "inventory.low",
                ORG,
                json!({"product_id": "p1", "sku": "SKU-1", "available": 1,
                "reorder_level": 3}),
            ),
        ],
        yesterday,
    )
    .await;
    app.service.pump_twice().await.unwrap();
    run(&app, DAILY_REPORT, None).await;
    app.service.pump_twice().await.unwrap();

    let (_, table) = constellation_comms::store(app.service.context("comms"))
        .await
        .unwrap();
    let skip = [NEVER_EXPORTED, &["REPORTRUN"]].concat();
    let kinds = check_every_item(
        table.as_ref(),
        &skip,
        constellation_comms::store::check_item,
    )
    .await;
    for kind in [
        "ANN:published",
        "ANN:scheduled",
        "ANN:retracted",
        "DELIV:-",
        "DIR:-",
        "MEDIA:ready",
        "MEDIA:gone",
        "NOTE:-",
        "PREF:-",
        "REM:pending",
        "REM:done",
        "REPORT:-",
        "RETRACT:-",
        "SENT:sent",
        "STATS:-",
        "UNREADN:-",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }
}
