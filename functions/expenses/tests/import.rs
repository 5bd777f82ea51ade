//! Importing expenses from a legacy database on both backends: what is
//! stored reads back through the API as it was, a re-run writes nothing,
//! bad fields are named, and concurrent imports of one record write it once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Principal, Role};
use constellation_core::import::Imported;
use constellation_core::money::{Currency, Money};
use constellation_expenses::ExpenseStore;
use constellation_expenses::domain::{Details, Status};
use constellation_expenses::store::ExpenseError;
use constellation_expenses::store::{ExpenseId, ExpenseImport};
use constellation_testkit::http::{TestApp, TestPlatform};
use constellation_testkit::items::{NEVER_EXPORTED, check_every_item};
use constellation_testkit::services::TestServices;
use http::StatusCode;
use time::macros::{date, datetime};

constellation_testkit::on_both_backends! {
    app = crate::spawn;
    an_imported_expense_reads_back_as_it_was_and_a_rerun_writes_nothing,
    bad_imports_name_the_field_and_store_nothing,
    concurrent_imports_of_one_expense_write_it_once,
    every_stored_item_passes_the_import_check,
}

const ORG: &str = "org-imp";

type ExpensesApp = TestApp<TestServices>;

async fn spawn(env: TestPlatform) -> ExpensesApp {
    let services = TestServices::start(&env, &[&constellation_expenses::SERVICE])
        .await
        .unwrap();
    let router = services.router();
    TestApp::new(env, router, services)
}

async fn store(app: &ExpensesApp) -> ExpenseStore {
    constellation_expenses::store(app.service.context("expenses"))
        .await
        .unwrap()
        .0
}

fn org() -> &'static OrgId {
    static ORG_ID: std::sync::LazyLock<OrgId> =
        std::sync::LazyLock::new(|| OrgId::parse(ORG).unwrap());
    &ORG_ID
}

fn fx_import(seed: u128) -> ExpenseImport {
    let created_at = datetime!(2019-05-02 09:30:00.123 UTC);
    ExpenseImport {
        id: ExpenseId::at(created_at, seed),
        submitter: AccountId::from_bytes([7; 16]).as_str().to_owned(),
        details: Details {
            amount: Money::parse("amount", "1234.50", Currency::parse("c", "EUR").unwrap())
                .unwrap(),
            category: "travel".to_owned(),
            merchant: "Deutsche Bahn".to_owned(),
            description: "Berlin, 2019".to_owned(),
            incurred_on: date!(2019 - 04 - 30),
        },
        status: Status::Reimbursed,
        created_at,
        updated_at: datetime!(2019-05-20 17:00 UTC),
    }
}

fn submitter(app: &ExpensesApp, account: &str) -> String {
    app.service.tokens.token_for(&Principal {
        account: AccountId::parse(account).unwrap(),
        org: org().clone(),
        role: Role::Member,
    })
}

async fn an_imported_expense_reads_back_as_it_was_and_a_rerun_writes_nothing(app: ExpensesApp) {
    let store = store(&app).await;
    let fx = fx_import(42);
    assert!(
        fx.id.as_str().starts_with("016a77e1123b"),
        "{}",
        fx.id.as_str()
    );
    assert_eq!(
        store.import_expense(org(), fx.clone()).await.unwrap(),
        Imported::Created
    );
    let token = submitter(&app, &fx.submitter);
    let path = format!("/v1/expenses/{}", fx.id.as_str());
    let got = app.get(&path).bearer(&token).await;
    got.assert_status(StatusCode::OK);
    let etag = got.header("etag").unwrap().to_owned();
    let v = got.json();
    assert_eq!(v["submitter"], fx.submitter);
    assert_eq!(v["amount"], "1234.50");
    assert_eq!(v["currency"], "EUR");
    assert_eq!(v["merchant"], "Deutsche Bahn");
    assert_eq!(v["incurred_on"], "2019-04-30");
    assert_eq!(v["status"], "reimbursed");
    assert_eq!(v["created_at"], "2019-05-02T09:30:00.123Z");
    assert_eq!(v["updated_at"], "2019-05-20T17:00:00Z");
    assert_eq!(v["receipts"], serde_json::json!([]));
    let history: Vec<_> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["status"].as_str().unwrap(), h["at"].as_str().unwrap()))
        .collect();
    assert_eq!(
        history,
        [
            ("draft", "2019-05-02T09:30:00.123Z"),
            ("reimbursed", "2019-05-20T17:00:00Z")
        ]
    );
    // Listed too, and a re-run (even with changed fields) leaves it as it is.
    let list = app.get("/v1/expenses").bearer(&token).await.json();
    assert_eq!(list["items"][0]["id"], fx.id.as_str());
    let mut again = fx.clone();
    again.details.merchant = "Changed".to_owned();
    assert_eq!(
        store.import_expense(org(), again).await.unwrap(),
        Imported::AlreadyPresent
    );
    let got = app.get(&path).bearer(&token).await;
    assert_eq!(got.header("etag"), Some(etag.as_str()));
    assert_eq!(got.json()["merchant"], "Deutsche Bahn");
}

async fn bad_imports_name_the_field_and_store_nothing(app: ExpensesApp) {
    let store = store(&app).await;
    let mut cases = Vec::new();
    let mut fx = fx_import(1);
    fx.details.category = " ".to_owned();
    cases.push(("category", fx));
    let mut fx = fx_import(2);
    fx.details.merchant = "x".repeat(201);
    cases.push(("merchant", fx));
    let mut fx = fx_import(3);
    fx.details.description = "a\u{0}b".to_owned();
    cases.push(("description", fx));
    let mut fx = fx_import(5);
    fx.submitter = "legacy-user-7".to_owned();
    let legacy = fx.submitter.clone();
    match store.import_expense(org(), fx).await {
        Err(ExpenseError::Invalid(e)) => assert_eq!(e.field, "submitter"),
        other => panic!("submitter {legacy}: {other:?}"),
    }
    let mut fx = fx_import(4);
    fx.updated_at = fx.created_at - time::Duration::seconds(1);
    cases.push(("updated_at", fx));
    for (field, fx) in cases {
        let id = fx.id.clone();
        let account = fx.submitter.clone();
        match store.import_expense(org(), fx).await {
            Err(ExpenseError::Invalid(e)) => assert_eq!(e.field, field),
            other => panic!("{field}: {other:?}"),
        }
        let token = submitter(&app, &account);
        app.get(&format!("/v1/expenses/{}", id.as_str()))
            .bearer(&token)
            .await
            .assert_status(StatusCode::NOT_FOUND);
    }
}

async fn concurrent_imports_of_one_expense_write_it_once(app: ExpensesApp) {
    let store = store(&app).await;
    let fx = fx_import(7);
    let (a, b) = tokio::join!(
        store.import_expense(org(), fx.clone()),
        store.import_expense(org(), fx.clone())
    );
    let mut outcomes = [a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|o| o.created());
    assert_eq!(outcomes, [Imported::AlreadyPresent, Imported::Created]);
}

/// What the service writes through its API and its importer, every item
/// of the table: each must pass `check_item` (what `constellation import`
/// runs on an export), except the kinds never exported.
async fn every_stored_item_passes_the_import_check(app: ExpensesApp) {
    use constellation_core::etag::Precondition;
    use constellation_expenses::domain::Transition;
    let (store, table) = constellation_expenses::store(app.service.context("expenses"))
        .await
        .unwrap();
    store.import_expense(org(), fx_import(9)).await.unwrap();
    let member = Principal {
        account: AccountId::from_bytes([3; 16]),
        org: org().clone(),
        role: Role::Member,
    };
    let admin = Principal {
        account: AccountId::from_bytes([4; 16]),
        role: Role::Admin,
        ..member.clone()
    };
    let details = fx_import(10).details;
    let cheap = Details {
        amount: Money::parse("amount", "12.5", Currency::parse("c", "USD").unwrap()).unwrap(),
        ..details.clone()
    };
    let e = store.create(&member, cheap).await.unwrap();
    store
        .add_receipt(&member, &e.id, "image/png", 1000, "taxi.png")
        .await
        .unwrap();
    store
        .transition(
            &member,
            &e.id,
            Transition::Submit,
            None,
            &Precondition::None,
        )
        .await
        .unwrap();
    store
        .transition(
            &admin,
            &e.id,
            Transition::Reject,
            Some("which trip?".to_owned()),
            &Precondition::None,
        )
        .await
        .unwrap();
    store.create(&member, details).await.unwrap();
    let checked = check_every_item(
        table.as_ref(),
        NEVER_EXPORTED,
        constellation_expenses::store::check_item,
    )
    .await
    .len();
    assert_eq!(checked, 3);
}
