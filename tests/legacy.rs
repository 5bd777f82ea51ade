//! `constellation import --from postgres-csv|mongo`: the sample sets in
//! tests/fixtures/legacy import with the expected counts on both backends,
//! each bad row (bad email, negative amount, unknown foreign key, malformed
//! date...) is listed with its line and the rest imports, a legacy user
//! logs in with the old password and is argon2id afterwards, a second run
//! (or a concurrent one) writes nothing twice, and a dry run writes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use constellation::migrate::import::{ImportReport, KindCounts};
use constellation::migrate::legacy::{LegacyOptions, Source, Stores, import_legacy};
use constellation_auth::signing::{SigningConfig, ensure_keys};
use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Principal, Role};
use constellation_platform::tokens::VerifierConfig;
use constellation_testkit::http::{TestApp, TestPlatform};
use constellation_testkit::services::TestServices;
use constellation_web::ServiceDef;
use http::StatusCode;
use serde_json::{Value, json};

const SERVICES: &[&ServiceDef] = &[
    &constellation_auth::SERVICE,
    &constellation_expenses::SERVICE,
    &constellation_catalog::SERVICE,
    &constellation_orders::SERVICE,
    &constellation_comms::SERVICE,
];

type App = TestApp<TestServices>;

constellation_testkit::on_both_backends! {
    app = crate::fx_app;
    postgres_csv_imports_the_sample_set_and_lists_each_bad_row,
    mongoexport_imports_the_sample_set_and_lists_each_bad_row,
    a_legacy_user_logs_in_with_the_old_password_and_is_argon2id_after,
    a_second_and_a_concurrent_run_write_nothing_twice,
    a_dry_run_writes_nothing,
}

async fn fx_app(env: TestPlatform) -> App {
    if env.aws_backend().is_some() {
        // auth signs the tokens a login answers; locally it makes its first
        // key itself, in AWS the deployment does (`constellation keys rotate`).
        let config = SigningConfig::for_verifier(VerifierConfig {
            public_keys_secret: env.name("test/public-keys"),
            ..VerifierConfig::default()
        })
        .unwrap();
        ensure_keys(env.platform.secrets().as_ref(), &config, env.clock.as_ref())
            .await
            .unwrap();
    }
    let services = TestServices::start(&env, SERVICES).await.unwrap();
    let router = services.router();
    TestApp::new(env, router, services)
}

async fn stores(app: &App) -> Stores {
    Stores::build(|def| Ok(app.service.context(def.name).clone()))
        .await
        .unwrap()
}

/// A copy of the fixture set `name` (the import writes rejects.jsonl beside
/// the files).
fn fx_dir(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/legacy")
        .join(name);
    for entry in fs::read_dir(&from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
    }
    let dir = tmp.path().to_owned();
    (tmp, dir)
}

async fn run(app: &App, source: Source, dir: &Path) -> ImportReport {
    import_legacy(
        source,
        dir,
        Some(&stores(app).await),
        &LegacyOptions::default(),
    )
    .await
    .unwrap()
}

fn counts(read: u64, written: u64, skipped: u64, rejected: u64) -> KindCounts {
    KindCounts {
        read,
        written,
        skipped,
        rejected,
    }
}

/// `rejects.jsonl` as `(file, line, reason)`.
fn rejects(dir: &Path) -> Vec<(String, u64, String)> {
    fs::read_to_string(dir.join("rejects.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["file"].as_str().unwrap().to_owned(),
                v["line"].as_u64().unwrap(),
                v["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Asserts the rejects are exactly `expected` (file, line, a word of the
/// reason), in file and line order.
fn assert_rejects(dir: &Path, expected: &[(&str, u64, &str)]) {
    let mut got = rejects(dir);
    got.sort();
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    for ((file, line, reason), (efile, eline, eword)) in got.iter().zip(expected) {
        assert_eq!((file.as_str(), *line), (*efile, *eline), "{got:#?}");
        assert!(
            reason.contains(eword),
            "{file}:{line}: `{reason}` lacks `{eword}`"
        );
    }
}

/// Logs in as `email` (which must succeed) and answers a token for the
/// account the login names, signed by the test's key (the one every
/// service's verifier here trusts).
async fn token(app: &App, email: &str, password: &str) -> String {
    let (status, session) = login(app, email, password).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let account = &session["account"];
    app.service.tokens.token_for(&Principal {
        account: AccountId::parse(account["id"].as_str().unwrap()).unwrap(),
        org: OrgId::parse(account["org"].as_str().unwrap()).unwrap(),
        role: Role::parse("role", account["role"].as_str().unwrap()).unwrap(),
    })
}

/// Logs in; the response's JSON.
async fn login(app: &App, email: &str, password: &str) -> (StatusCode, Value) {
    let r = app
        .post("/v1/auth/login")
        .anonymous()
        .json(&json!({"email": email, "password": password}))
        .await;
    (r.status, r.json())
}

async fn postgres_csv_imports_the_sample_set_and_lists_each_bad_row(app: App) {
    let (_tmp, dir) = fx_dir("postgres");
    let report = run(&app, Source::PostgresCsv, &dir).await;
    for (kind, expected) in [
        ("organizations", counts(3, 2, 0, 1)),
        ("users", counts(7, 5, 0, 2)),
        ("suppliers", counts(3, 2, 0, 1)),
        ("inventory", counts(5, 2, 0, 3)),
        ("products", counts(6, 3, 0, 3)),
        ("order_items", counts(11, 4, 0, 7)),
        ("orders", counts(8, 3, 0, 5)),
        ("expenses", counts(9, 3, 0, 6)),
        ("announcements", counts(4, 2, 0, 2)),
    ] {
        assert_eq!(report.kinds[kind], expected, "{kind}");
    }
    assert_rejects(
        &dir,
        &[
            ("announcements.csv", 5, "title"),
            ("announcements.csv", 6, "author_id"),
            // A record over two lines (a quoted line break, which the API
            // refuses in a description): its first line is named, and the
            // lines after it keep their numbers.
            ("expenses.csv", 3, "description"),
            ("expenses.csv", 5, "amount"),
            ("expenses.csv", 6, "user_id"),
            ("expenses.csv", 7, "incurred_on"),
            // User 4 was rejected, so its expense has no user.
            ("expenses.csv", 9, "user_id"),
            // A legacy id seen before is refused, not skipped unseen.
            ("expenses.csv", 11, "appears twice"),
            ("inventory.csv", 4, "quantity"),
            ("inventory.csv", 5, "product 99"),
            // Its product was rejected (a SKU already taken).
            ("inventory.csv", 6, "product 13"),
            ("order_items.csv", 6, "quantity"),
            ("order_items.csv", 7, "order 503"),
            ("order_items.csv", 8, "order 504"),
            ("order_items.csv", 9, "order 505"),
            ("order_items.csv", 10, "order 506"),
            // Its order was refused by catalog: 6 pens, 5 in stock.
            ("order_items.csv", 11, "orders.csv line 8"),
            ("order_items.csv", 12, "order 508"),
            ("orders.csv", 5, "order_items.csv line 6"),
            ("orders.csv", 6, "product_id"),
            ("orders.csv", 7, "pending"),
            ("orders.csv", 8, "quantity"),
            // Refused before its reservation is written: no units stay
            // held for an order that is not there.
            ("orders.csv", 9, "note"),
            ("organizations.csv", 4, "name"),
            ("products.csv", 4, "inventory.csv line 4"),
            ("products.csv", 5, "sku"),
            ("products.csv", 7, "supplier_id"),
            ("suppliers.csv", 3, "email"),
            ("users.csv", 5, "email"),
            ("users.csv", 6, "organization_id"),
        ],
    );

    // The owner of Acme sees the organization's expense as it was: amount
    // exact, the quoted description whole, status kept.
    let token = &token(&app, "owner@acme.example", "legacy owner password").await;
    let r = app.get("/v1/expenses").bearer(token).await;
    r.assert_status(StatusCode::OK);
    let items = r.json()["items"].as_array().unwrap().clone();
    let mut seen: Vec<(String, String, String, String)> = items
        .iter()
        .map(|e| {
            (
                e["amount"].as_str().unwrap().to_owned(),
                e["currency"].as_str().unwrap().to_owned(),
                e["status"].as_str().unwrap().to_owned(),
                e["description"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![(
            "12.50".to_owned(),
            "USD".to_owned(),
            "submitted".to_owned(),
            "Team lunch, with \"quotes\"".to_owned()
        ),]
    );
    // The accounts are listed with their roles (`user` became member).
    let r = app.get("/v1/auth/accounts").bearer(token).await;
    r.assert_status(StatusCode::OK);
    let mut roles: Vec<(String, String)> = r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["email"].as_str().unwrap().to_owned(),
                a["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    roles.sort();
    assert_eq!(
        roles,
        [
            ("clerk@acme.example", "member"),
            ("member@acme.example", "member"),
            ("owner@acme.example", "owner"),
        ]
        .map(|(e, r)| (e.to_owned(), r.to_owned()))
    );

    assert_acme_catalog_orders_and_announcements(&app, token).await;
}

/// The Acme owner's view of what the import wrote beyond accounts and
/// expenses: products with their stock, orders with their lines and exact
/// totals, announcements with their multi-line bodies.
async fn assert_acme_catalog_orders_and_announcements(app: &App, token: &str) {
    let r = app.get("/v1/catalog/products").bearer(token).await;
    r.assert_status(StatusCode::OK);
    let mut products: Vec<(String, String, i64, i64)> = r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["sku"].as_str().unwrap().to_owned(),
                p["price"]["amount"].as_str().unwrap().to_owned(),
                p["stock"]["on_hand"].as_i64().unwrap(),
                p["stock"]["reserved"].as_i64().unwrap(),
            )
        })
        .collect();
    products.sort();
    assert_eq!(
        products,
        // The confirmed order holds its sheet of paper, as a live one would.
        [("PAPER-A4", "4.99", 100, 1), ("PEN-BLUE", "1.20", 5, 0)].map(|(s, p, h, r)| (
            s.to_owned(),
            p.to_owned(),
            h,
            r
        ))
    );

    let r = app.get("/v1/orders").bearer(token).await;
    r.assert_status(StatusCode::OK);
    let mut orders: Vec<(String, usize, String, Value)> = r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["status"].as_str().unwrap().to_owned(),
                o["lines"].as_array().unwrap().len(),
                o["total"]["amount"].as_str().unwrap().to_owned(),
                o["note"].clone(),
            )
        })
        .collect();
    orders.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        orders,
        vec![
            ("confirmed".to_owned(), 1, "4.99".to_owned(), Value::Null),
            (
                "shipped".to_owned(),
                2,
                "21.98".to_owned(),
                json!("Rush please")
            ),
        ]
    );

    let r = app.get("/v1/comms/announcements").bearer(token).await;
    r.assert_status(StatusCode::OK);
    let titles: Vec<(String, String)> = r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["title"].as_str().unwrap().to_owned(),
                a["body"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        titles,
        vec![(
            "Welcome".to_owned(),
            "Hello team,\nthis is our new system.".to_owned()
        )]
    );
}

async fn mongoexport_imports_the_sample_set_and_lists_each_bad_row(app: App) {
    let (_tmp, dir) = fx_dir("mongo");
    let report = run(&app, Source::Mongo, &dir).await;
    assert_eq!(report.kinds["organizations"], counts(1, 1, 0, 0));
    assert_eq!(report.kinds["users"], counts(3, 2, 0, 1));
    assert_eq!(report.kinds["expenses"], counts(6, 3, 0, 3));
    assert_rejects(
        &dir,
        &[
            ("expenses.json", 3, "amount"),
            ("expenses.json", 4, "user_id"),
            ("expenses.json", 5, "incurred_on"),
            ("users.json", 3, "email"),
        ],
    );
    let token = &token(&app, "ada@mongo.example", "mongo user password").await;
    let r = app.get("/v1/expenses").bearer(token).await;
    r.assert_status(StatusCode::OK);
    let mut seen: Vec<(String, String, String)> = r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["amount"].as_str().unwrap().to_owned(),
                e["currency"].as_str().unwrap().to_owned(),
                e["incurred_on"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    // Decimal128, a string and a $numberLong, each exact; `$date`s by
    // their UTC day (canonical and relaxed).
    assert_eq!(
        seen,
        [
            ("2500", "JPY", "2024-04-06"),
            ("42.10", "USD", "2024-04-01"),
            ("7.50", "EUR", "2024-04-02"),
        ]
        .map(|(a, c, d)| (a.to_owned(), c.to_owned(), d.to_owned()))
    );
}

async fn a_legacy_user_logs_in_with_the_old_password_and_is_argon2id_after(app: App) {
    let (_tmp, dir) = fx_dir("postgres");
    run(&app, Source::PostgresCsv, &dir).await;
    let stored_hash = |email: &'static str| {
        let app = &app;
        async move {
            let ctx = app.service.context("auth");
            let (table, cursor) =
                constellation::migrate::table_vars(&constellation_auth::SERVICE).unwrap();
            let table = ctx.table(table, cursor).await.unwrap();
            let claim = table
                .get(&constellation_platform::table::ItemKey::new(
                    format!("EMAIL#{email}"),
                    "EMAIL",
                ))
                .await
                .unwrap()
                .unwrap();
            let org = claim.str("org").unwrap().to_owned();
            let account = claim.str("account").unwrap().to_owned();
            let item = table
                .get(&constellation_platform::table::ItemKey::new(
                    format!("ORG#{org}"),
                    format!("ACCOUNT#{account}"),
                ))
                .await
                .unwrap()
                .unwrap();
            item.str("password_hash").unwrap().to_owned()
        }
    };
    assert!(
        stored_hash("member@acme.example")
            .await
            .starts_with("$2b$04$")
    );
    let (status, _) = login(&app, "member@acme.example", "not the password").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The email was stored as the API stores it: lower case.
    let (status, body) = login(&app, "MEMBER@acme.example", "legacy member password").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        stored_hash("member@acme.example")
            .await
            .starts_with("$argon2id$")
    );
    let (status, _) = login(&app, "member@acme.example", "legacy member password").await;
    assert_eq!(status, StatusCode::OK);
}

async fn a_second_and_a_concurrent_run_write_nothing_twice(app: App) {
    let (_tmp, dir) = fx_dir("postgres");
    let first = run(&app, Source::PostgresCsv, &dir).await;
    let again = run(&app, Source::PostgresCsv, &dir).await;
    for (kind, c) in &first.kinds {
        let a = again.kinds[kind];
        assert_eq!(
            (a.read, a.written, a.skipped, a.rejected),
            (c.read, 0, c.written, c.rejected),
            "{kind}"
        );
    }
    // Two imports of one set at once (two copies of the files, as two
    // operators would run it): each record is written by exactly one.
    let (_tmp_a, a) = fx_dir("mongo");
    let (_tmp_b, b) = fx_dir("mongo");
    let (ra, rb) = tokio::join!(run(&app, Source::Mongo, &a), run(&app, Source::Mongo, &b));
    for kind in ["organizations", "users", "expenses"] {
        let (x, y) = (ra.kinds[kind], rb.kinds[kind]);
        assert_eq!(
            x.written + y.written + x.skipped + y.skipped,
            x.read - x.rejected + y.read - y.rejected,
            "{kind}"
        );
        assert_eq!(x.rejected, y.rejected, "{kind}");
    }
    assert_eq!(ra.kinds["users"].written + rb.kinds["users"].written, 2);
    assert_eq!(
        ra.kinds["expenses"].written + rb.kinds["expenses"].written,
        3
    );
    assert_eq!(
        ra.kinds["organizations"].written + rb.kinds["organizations"].written,
        1
    );
}

async fn a_dry_run_writes_nothing(app: App) {
    let (_tmp, dir) = fx_dir("postgres");
    let options = LegacyOptions {
        dry_run: true,
        ..LegacyOptions::default()
    };
    let report = import_legacy(Source::PostgresCsv, &dir, None, &options)
        .await
        .unwrap();
    // It reports what would be written and rejected...
    assert_eq!(report.kinds["users"], counts(7, 5, 0, 2));
    assert_eq!(report.rejected(), 28);
    // ...and writes nothing: no rejects file, no account.
    assert!(!dir.join("rejects.jsonl").exists());
    let (status, _) = login(&app, "owner@acme.example", "legacy owner password").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
