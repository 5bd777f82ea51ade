//! Importing announcements from a legacy database on both backends: listed
//! and read through the API as published, delivered to nobody (no
//! notification, nothing due for the scheduler), a re-run writes nothing,
//! bad fields are named, and concurrent imports of one write it once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use constellation_comms::domain::Audience;
use constellation_comms::store::CommsError;
use constellation_comms::store::announce::{AnnouncementImport, import_id};
use constellation_comms::{CommsStore, SCHEDULER, SERVICE};
use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Principal, Role};
use constellation_core::directory::{AccountSnapshot, events as account_events};
use constellation_core::import::Imported;
use constellation_platform::DomainEvent;
use constellation_platform::schedule::ScheduledEvent;
use constellation_testkit::http::{TestApp, TestPlatform};
use constellation_testkit::services::TestServices;
use http::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;

constellation_testkit::on_both_backends! {
    app = crate::spawn;
    an_imported_announcement_is_listed_as_published_and_delivered_to_nobody,
    bad_imports_name_the_field_and_store_nothing,
    concurrent_imports_of_one_announcement_write_it_once,
}

const ORG: &str = "org-imp";
const CREATED: OffsetDateTime = datetime!(2022-09-01 07:30:00.5 UTC);
const PUBLISHED: OffsetDateTime = datetime!(2022-09-02 09:00 UTC);

type CommsApp = TestApp<TestServices>;

fn member() -> Principal {
    Principal {
        account: AccountId::from_bytes([5; 16]),
        org: OrgId::parse(ORG).unwrap(),
        role: Role::Member,
    }
}

/// Comms with one member in its directory (who would be notified).
async fn spawn(env: TestPlatform) -> CommsApp {
    let services = TestServices::start(&env, &[&SERVICE]).await.unwrap();
    let router = services.router();
    let app = TestApp::new(env, router, services);
    let m = member();
    let snapshot = serde_json::to_value(AccountSnapshot {
        account_id: m.account.as_str().to_owned(),
        email: format!("{}@{ORG}.test", m.account.as_str()),
        role: m.role.as_str().to_owned(),
        disabled: false,
        version: 1,
    })
    .unwrap();
    let event =
        DomainEvent::new(account_events::ACCOUNT_CREATED, ORG, app.now(), snapshot).unwrap();
    let bus = app.service.context("comms").event_bus().unwrap();
    bus.publish(&[event]).await.unwrap();
    app.service.pump().await.unwrap();
    app
}

async fn store(app: &CommsApp) -> CommsStore {
    constellation_comms::store(app.service.context("comms"))
        .await
        .unwrap()
        .0
}

fn org() -> &'static OrgId {
    static ORG_ID: std::sync::LazyLock<OrgId> =
        std::sync::LazyLock::new(|| OrgId::parse(ORG).unwrap());
    &ORG_ID
}

fn fx_import(seed: u128) -> AnnouncementImport {
    AnnouncementImport {
        id: import_id(CREATED, seed),
        author: AccountId::from_bytes([1; 16]).as_str().to_owned(),
        title: "Office closed".to_owned(),
        body: "The office is closed on Friday.\nEnjoy the weekend.".to_owned(),
        audience: Audience::All,
        published_at: PUBLISHED,
        created_at: CREATED,
    }
}

async fn get(app: &CommsApp, p: &Principal, path: &str) -> Value {
    let r = app.get(path).bearer(&app.service.tokens.token_for(p)).await;
    r.assert_status(StatusCode::OK);
    r.json()
}

async fn an_imported_announcement_is_listed_as_published_and_delivered_to_nobody(app: CommsApp) {
    let store = store(&app).await;
    let fx = fx_import(1);
    assert!(fx.id.starts_with("0182f7f4eeb4"), "{}", fx.id);
    assert_eq!(
        store.import_announcement(org(), fx.clone()).await.unwrap(),
        Imported::Created
    );
    let list = get(&app, &member(), "/v1/comms/announcements").await;
    let a = &list["items"][0];
    assert_eq!(a["id"], fx.id.as_str());
    assert_eq!(a["title"], "Office closed");
    assert_eq!(a["body"], fx.body.as_str());
    assert_eq!(a["audience"], "all");
    assert_eq!(a["status"], "published");
    assert_eq!(a["publish_at"], Value::Null);
    assert_eq!(a["published_at"], "2022-09-02T09:00:00Z");
    assert_eq!(a["created_by"], fx.author);
    assert_eq!(a["created_at"], "2022-09-01T07:30:00.5Z");
    let path = format!("/v1/comms/announcements/{}", fx.id);
    let one = get(&app, &member(), &path).await;

    // Delivered to nobody, and nothing due.
    assert_eq!(app.service.pump().await.unwrap(), 0);
    let inbox = get(&app, &member(), "/v1/comms/notifications").await;
    assert_eq!(inbox["items"], json!([]));
    let handler = (SERVICE.schedule(SCHEDULER).unwrap().handler)(app.service.context("comms"))
        .await
        .unwrap();
    let report = handler
        .run(ScheduledEvent {
            schedule: SCHEDULER.to_owned(),
            ..ScheduledEvent::default()
        })
        .await
        .unwrap();
    assert_eq!(report["due"]["announcements"], 0);

    // A re-run (even with changed fields) leaves it as it is.
    let mut again = fx.clone();
    again.title = "Changed".to_owned();
    assert_eq!(
        store.import_announcement(org(), again).await.unwrap(),
        Imported::AlreadyPresent
    );
    assert_eq!(get(&app, &member(), &path).await, one);
}

async fn bad_imports_name_the_field_and_store_nothing(app: CommsApp) {
    let store = store(&app).await;
    let mut cases = Vec::new();
    let mut fx = fx_import(10);
    fx.title = "  ".to_owned();
    cases.push(("title", fx));
    let mut fx = fx_import(11);
    fx.body = "x".repeat(10_001);
    cases.push(("body", fx));
    let mut fx = fx_import(12);
    fx.audience = Audience::Accounts {
        accounts: vec![member().account.as_str().to_owned()],
    };
    cases.push(("audience", fx));
    let mut fx = fx_import(13);
    fx.audience = Audience::Roles { roles: Vec::new() };
    cases.push(("audience.roles", fx));
    let mut fx = fx_import(14);
    fx.published_at = CREATED - time::Duration::seconds(1);
    cases.push(("published_at", fx));
    let mut fx = fx_import(17);
    fx.author = "nobody".to_owned();
    cases.push(("author", fx));
    let mut fx = fx_import(15);
    fx.id = "legacy-15".to_owned();
    cases.push(("id", fx));
    let staff = Principal {
        role: Role::Staff,
        ..member()
    };
    for (field, fx) in cases {
        let id = fx.id.clone();
        match store.import_announcement(org(), fx).await {
            Err(CommsError::Invalid(e)) => assert_eq!(e.field, field),
            other => panic!("{field}: {other:?}"),
        }
        let r = app
            .get(&format!("/v1/comms/announcements/{id}"))
            .bearer(&app.service.tokens.token_for(&staff))
            .await;
        assert!(
            matches!(r.status, StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST),
            "{field}"
        );
    }
    // An audience of roles is kept, and the API shows it to them only.
    let mut fx = fx_import(16);
    fx.audience = Audience::Roles {
        roles: vec![Role::Staff],
    };
    store.import_announcement(org(), fx.clone()).await.unwrap();
    let list = get(&app, &member(), "/v1/comms/announcements").await;
    assert_eq!(list["items"], json!([]));
    let list = get(&app, &staff, "/v1/comms/announcements").await;
    assert_eq!(list["items"][0]["audience"], json!({"roles": ["staff"]}));
}

async fn concurrent_imports_of_one_announcement_write_it_once(app: CommsApp) {
    let store = store(&app).await;
    let fx = fx_import(30);
    let (a, b) = tokio::join!(
        store.import_announcement(org(), fx.clone()),
        store.import_announcement(org(), fx.clone())
    );
    let mut outcomes = [a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|o| o.created());
    assert_eq!(outcomes, [Imported::AlreadyPresent, Imported::Created]);
}
